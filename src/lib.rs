//! unifw's host-testable core: the rule language and its compiler, the
//! lookup tables the kernel reads in place, and packet and flow logic.
//! Everything here is `no_std + alloc` and free of `unsafe`; the kernel
//! (`src/main.rs`, `src/kernel/`) wires hardware to it.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cmdline;
pub mod flow;
pub mod net;
pub mod rules;
pub mod virtio_net;
