//! unifw's core: everything the kernel does that is not hardware, tested on
//! the host. The packet path (`net`), the compiled rules image and its
//! reader (`image`), the kernel command line (`cmdline`) and the virtio-net
//! feature logic (`virtio_net`). `no_std + alloc`, free of `unsafe`; the
//! kernel (`src/main.rs`, `src/kernel/`) wires hardware to it, and the rule
//! compiler (`unifw-compiler`) writes the images it reads.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cmdline;
pub mod firewall;
pub mod flow;
pub mod image;
pub mod net;
pub mod virtio_net;
