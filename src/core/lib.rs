//! unifw's core: everything the kernel does that is not hardware, tested on
//! the host. The packet path (`net`), the compiled rules image and its
//! reader (`image`), the kernel command line (`cmdline`) and the virtio-net
//! feature logic (`virtio_net`). `no_std + alloc`, free of `unsafe`; the
//! kernel (`src/main.rs`, `src/kernel/`) wires hardware to it, and the rule
//! compiler (`unifw-compiler`) writes the images it reads.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
// The data path is panic-free by lint, not by discipline: no indexing or
// slicing that can fail, no unwrap/expect, no panic!. (The workspace lints in
// Cargo.toml apply too; these are the core's own, and tests are exempt.)
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic))]

extern crate alloc;

pub mod acpi;
pub mod cmdline;
pub mod firewall;
pub mod flow;
pub mod image;
pub mod net;
pub mod profile;
pub mod virtio_net;
pub mod virtqueue;
