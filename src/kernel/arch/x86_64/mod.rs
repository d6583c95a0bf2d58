//! x86_64 support: the boot trampoline, descriptor tables, interrupts,
//! interrupt controllers, the clock, port I/O and late MMIO mappings.

pub mod apic;
pub mod clock;
pub mod cpu;
pub mod gdt;
pub mod idt;
pub mod mtrr;
pub mod paging;
pub mod port;
pub mod smp;

// The 32-bit PVH/Multiboot2 entry, page tables and the switch to long mode.
core::arch::global_asm!(include_str!("../../../../boot/entry.S"), options(att_syntax));
