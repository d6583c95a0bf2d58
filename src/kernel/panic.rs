//! Panic policy: stop the other vCPUs (a panic on one stops them all: none
//! goes on serving its share of the flows while another's share is lost),
//! write an epitaph (location and message) to the serial console, then
//! halt (the default) or reset the machine when the command line says
//! `unifw.panic=reset` (QEMU then restarts the guest unless run with
//! `-no-reboot`). A panic inside the panic handler skips the message
//! formatting and halts at once; a vCPU that panics while another is
//! already panicking halts without a word (it is being stopped anyway).

use crate::kernel::arch::{apic, clock, cpu, smp};
use crate::kernel::serial::Serial;
use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

static PANICKING: AtomicBool = AtomicBool::new(false);
/// How long the panic handler gives the other vCPUs' NMIs to land.
const STOP_WAIT_US: u64 = 1_000;
/// The local APIC id of the vCPU that panicked first.
static PANICKED_CPU: AtomicU32 = AtomicU32::new(u32::MAX);
static RESET_ON_PANIC: AtomicBool = AtomicBool::new(false);

/// The vCPU `unifw.crashtest` names (`u8::MAX`: none).
static CRASH_TEST: AtomicU8 = AtomicU8::new(u8::MAX);

/// `unifw.crashtest=N`: vCPU `cpu` panics when it starts serving.
pub fn set_crash_test(cpu: Option<u8>) {
    CRASH_TEST.store(cpu.unwrap_or(u8::MAX), Ordering::Relaxed);
}

/// Panics if `unifw.crashtest` names vCPU `cpu` (called as it starts
/// serving its queues), to test the panic policy on any vCPU.
#[track_caller]
pub fn crash_test(cpu: usize) {
    if usize::from(CRASH_TEST.load(Ordering::Relaxed)) == cpu {
        panic!("unifw.crashtest={cpu}: vCPU {cpu} panics, as the command line asks");
    }
}

/// Whether a panic is under way (an NMI then means: stop).
pub fn stopping() -> bool {
    PANICKING.load(Ordering::SeqCst)
}

/// Chooses reset (true) or halt (false) after a panic.
pub fn set_reset_on_panic(reset: bool) {
    RESET_ON_PANIC.store(reset, Ordering::Relaxed);
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cpu::disable_interrupts();
    let me = u32::from(apic::lapic_id());
    if PANICKING.swap(true, Ordering::SeqCst) {
        if PANICKED_CPU.load(Ordering::SeqCst) == me {
            let _ = Serial.write_str("\nunifw: panic inside the panic handler; halting\n");
        }
        cpu::halt_forever();
    }
    PANICKED_CPU.store(me, Ordering::SeqCst);
    // The others first, so that none writes into the epitaph (and none
    // goes on serving meanwhile); a moment for their NMIs to land.
    let others = smp::online() > 1;
    if others {
        smp::stop_others();
        let until = clock::now_us() + STOP_WAIT_US;
        while clock::now_us() < until {
            core::hint::spin_loop();
        }
    }
    let us = clock::now_us();
    // The logger's lock may be held by the code that panicked: write directly.
    let _ = write!(Serial, "\n[{:5}.{:06}] PANIC ", us / 1_000_000, us % 1_000_000);
    if let Some(location) = info.location() {
        let _ = write!(Serial, "at {}:{}: ", location.file(), location.line());
    }
    let _ = writeln!(Serial, "{}", info.message());
    if others {
        let _ = writeln!(Serial, "unifw: the other vCPUs are stopped");
    }
    if RESET_ON_PANIC.load(Ordering::Relaxed) {
        let _ = writeln!(Serial, "unifw: resetting");
        cpu::reset();
    }
    let _ = writeln!(Serial, "unifw: halted");
    cpu::halt_forever();
}
