//! x86_64 support: the boot trampoline, descriptor tables, interrupts,
//! interrupt controllers, the clock and port I/O.

pub mod apic;
pub mod clock;
pub mod cpu;
pub mod gdt;
pub mod idt;
pub mod mtrr;
pub mod port;

// The 32-bit PVH/Multiboot2 entry, page tables and the switch to long mode.
core::arch::global_asm!(include_str!("../../../../boot/entry.S"), options(att_syntax));
