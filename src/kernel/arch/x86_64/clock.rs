//! The monotonic clock: the time stamp counter, calibrated at boot.
//!
//! The TSC frequency comes from the hypervisor's timing leaf (CPUID
//! 0x40000010, when QEMU offers it) or else from counting TSC cycles over
//! 5 ms of the 8254 PIT (channel 0, read by latching, so no speaker port is
//! needed). The local APIC timer is calibrated over the same window.

use super::apic;
use super::cpu::{cpuid, rdtsc};
use super::port::{inb, outb};
use core::sync::atomic::{AtomicU64, Ordering};

const PIT_HZ: u64 = 1_193_182;
const CALIBRATION_US: u64 = 5_000;
/// Assumed TSC rate when no time source answers (logged loudly).
const FALLBACK_TSC_KHZ: u64 = 2_000_000;

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
/// (2^32 * 1000) / TSC kHz: microseconds per TSC cycle in 32.32 fixed point.
static US_PER_CYCLE_FP: AtomicU64 = AtomicU64::new(0);

/// Records the boot instant. Call first thing, so log times count from entry.
pub fn mark_boot() {
    BOOT_TSC.store(rdtsc(), Ordering::Relaxed);
}

/// Where the TSC frequency came from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// CPUID 0x40000010 (hypervisor timing information).
    Hypervisor,
    /// Counted against the PIT.
    Pit,
    /// Nothing answered; a guess.
    Fallback,
}

/// Calibrates the TSC and the local APIC timer. Returns the TSC kHz and the source.
pub fn init() -> (u64, Source) {
    let (max_hv_leaf, ..) = cpuid(0x4000_0000);
    let hv_khz = if (0x4000_0010..0x4001_0000).contains(&max_hv_leaf) { u64::from(cpuid(0x4000_0010).0) } else { 0 };
    let (khz, source) = if hv_khz > 0 {
        set_khz(hv_khz);
        let start = rdtsc();
        apic::timer_calibration_start();
        while rdtsc() - start < hv_khz * CALIBRATION_US / 1000 {
            core::hint::spin_loop();
        }
        apic::timer_calibration_end(CALIBRATION_US);
        (hv_khz, Source::Hypervisor)
    } else {
        match pit_calibrate() {
            Some(khz) => (khz, Source::Pit),
            None => (FALLBACK_TSC_KHZ, Source::Fallback),
        }
    };
    set_khz(khz);
    (khz, source)
}

fn set_khz(khz: u64) {
    US_PER_CYCLE_FP.store((1000u64 << 32) / khz.max(1), Ordering::Relaxed);
}

fn pit_read_channel0() -> u16 {
    outb(0x43, 0x00); // latch channel 0
    let lo = inb(0x40);
    let hi = inb(0x40);
    u16::from_le_bytes([lo, hi])
}

/// Counts TSC cycles over `CALIBRATION_US` of PIT channel 0 ticks.
fn pit_calibrate() -> Option<u64> {
    outb(0x43, 0x34); // channel 0, lobyte/hibyte, mode 2, binary
    outb(0x40, 0);
    outb(0x40, 0); // reload 65536
    let target_ticks = PIT_HZ * CALIBRATION_US / 1_000_000;
    let give_up = rdtsc() + 4 * FALLBACK_TSC_KHZ * 1000; // ~4 s at worst
    let mut prev = pit_read_channel0();
    // Wait for the first tick edge so the window starts on a boundary.
    while pit_read_channel0() == prev {
        if rdtsc() > give_up {
            return None;
        }
    }
    prev = pit_read_channel0();
    let start = rdtsc();
    apic::timer_calibration_start();
    let mut ticks = 0u64;
    while ticks < target_ticks {
        let now = pit_read_channel0();
        ticks += u64::from(prev.wrapping_sub(now));
        prev = now;
        if rdtsc() > give_up {
            return None;
        }
    }
    let cycles = rdtsc() - start;
    // Leave channel 0 in one-shot mode so it stops ticking.
    outb(0x43, 0x30);
    outb(0x40, 0);
    outb(0x40, 0);
    let elapsed_us = ticks * 1_000_000 / PIT_HZ;
    apic::timer_calibration_end(elapsed_us);
    let khz = cycles * 1000 / elapsed_us.max(1);
    (khz > 0).then_some(khz)
}

/// Microseconds since `mark_boot`.
pub fn now_us() -> u64 {
    let cycles = rdtsc().wrapping_sub(BOOT_TSC.load(Ordering::Relaxed));
    ((u128::from(cycles) * u128::from(US_PER_CYCLE_FP.load(Ordering::Relaxed))) >> 32) as u64
}
