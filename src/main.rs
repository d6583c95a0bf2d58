//! unifw, the kernel: a bootable unikernel firewall for QEMU/KVM.
//! Built for `x86_64-unknown-none`; see README.md.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod kernel;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("unifw is a kernel: build it with `cargo build --release` (target x86_64-unknown-none) and boot it with scripts/run");
    std::process::exit(2);
}
