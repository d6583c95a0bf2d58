//! CPU primitives: halting, interrupt flag, time stamp counter, CPUID, reset.

use core::arch::asm;

/// Reads the time stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads a counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Returns CPUID leaf `leaf`, subleaf 0, as (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Disables interrupts.
#[inline]
pub fn disable_interrupts() {
    x86_64::instructions::interrupts::disable();
}

/// Enables interrupts and halts until the next one, atomically: an interrupt
/// that arrives between the two instructions still wakes the `hlt`
/// (`sti` takes effect after the following instruction).
#[inline]
pub fn enable_interrupts_and_halt() {
    x86_64::instructions::interrupts::enable_and_hlt();
}

/// Halts forever with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        disable_interrupts();
        x86_64::instructions::hlt();
    }
}

/// Resets the machine through the keyboard controller, then by a triple
/// fault if that did not work. QEMU restarts the guest unless `-no-reboot`.
pub fn reset() -> ! {
    super::port::outb(0x64, 0xfe);
    // SAFETY: loading an empty IDT and raising an exception triple-faults,
    // which is the intent: nothing runs after this.
    unsafe {
        let empty: [u64; 2] = [0; 2];
        asm!("lidt [{}]", "int3", in(reg) &empty, options(noreturn));
    }
}

/// A spin-loop hint for busy polling.
#[inline]
pub fn relax() {
    core::hint::spin_loop();
}

/// A seed for hash tables: RDRAND when the CPU has it, else the TSC.
pub fn random_seed() -> u64 {
    const CPUID_ECX_RDRAND: u32 = 1 << 30;
    if cpuid(1).2 & CPUID_ECX_RDRAND != 0 {
        for _ in 0..10 {
            let mut value = 0u64;
            // SAFETY: CPUID says RDRAND exists; the intrinsic only writes `value`.
            if unsafe { rdrand64(&mut value) } == 1 {
                return value;
            }
        }
    }
    rdtsc().wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// # Safety
/// The CPU must support RDRAND (CPUID.1:ECX bit 30).
#[target_feature(enable = "rdrand")]
unsafe fn rdrand64(value: &mut u64) -> i32 {
    core::arch::x86_64::_rdrand64_step(value)
}
