//! Memory types. Without firmware (qboot, PVH) nobody programs the MTRRs,
//! and their reset state makes all of RAM uncacheable: memory ran at about
//! 28 MB/s here until this was set. We make write-back the default and keep
//! the MMIO hole at 3-4 GiB (PCI BARs, virtio-mmio, IOAPIC, LAPIC)
//! uncacheable with one variable-range MTRR.

use super::cpu::cpuid;
use x86_64::registers::model_specific::Msr;

const IA32_MTRRCAP: u32 = 0xfe;
const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
const IA32_MTRR_PHYSBASE0: u32 = 0x200;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_VALID: u64 = 1 << 11;
const TYPE_UC: u64 = 0;
const TYPE_WB: u64 = 6;
const MMIO_HOLE: (u64, u64) = (0xc000_0000, 0x4000_0000);
const CPUID_EDX_MTRR: u32 = 1 << 12;

/// Programs the MTRRs: RAM write-back, the 3-4 GiB hole uncacheable.
/// Returns false when the CPU has no MTRRs (nothing to do).
pub fn init() -> bool {
    if cpuid(1).3 & CPUID_EDX_MTRR == 0 {
        return false;
    }
    let phys_bits = if cpuid(0x8000_0000).0 >= 0x8000_0008 { cpuid(0x8000_0008).0 & 0xff } else { 36 };
    let phys_mask = (1u64 << phys_bits) - 1;
    // SAFETY: MTRR MSRs exist (CPUID says so); variable ranges are written
    // within the count MTRRCAP reports. The kernel runs identity-mapped on
    // one CPU with nothing cached that the new types could corrupt: RAM
    // stays write-back and the MMIO hole was never cached.
    unsafe {
        let ranges = (Msr::new(IA32_MTRRCAP).read() & 0xff) as u32;
        if ranges == 0 {
            return false;
        }
        Msr::new(IA32_MTRR_DEF_TYPE).write(0);
        for i in 0..ranges {
            Msr::new(IA32_MTRR_PHYSBASE0 + 2 * i + 1).write(0);
        }
        Msr::new(IA32_MTRR_PHYSBASE0).write(MMIO_HOLE.0 | TYPE_UC);
        Msr::new(IA32_MTRR_PHYSBASE0 + 1).write((!(MMIO_HOLE.1 - 1) & phys_mask) | MTRR_VALID);
        Msr::new(IA32_MTRR_DEF_TYPE).write(MTRR_ENABLE | TYPE_WB);
        core::arch::asm!("wbinvd", options(nostack));
    }
    true
}
