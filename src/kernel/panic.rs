//! Panic policy: write an epitaph (location and message) to the serial
//! console, then halt (the default) or reset the machine when the command
//! line says `unifw.panic=reset` (QEMU then restarts the guest unless run
//! with `-no-reboot`). A panic inside the panic handler skips the message
//! formatting and halts at once.

use crate::kernel::arch::{clock, cpu};
use crate::kernel::serial::Serial;
use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

static PANICKING: AtomicBool = AtomicBool::new(false);
static RESET_ON_PANIC: AtomicBool = AtomicBool::new(false);

/// Chooses reset (true) or halt (false) after a panic.
pub fn set_reset_on_panic(reset: bool) {
    RESET_ON_PANIC.store(reset, Ordering::Relaxed);
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cpu::disable_interrupts();
    if PANICKING.swap(true, Ordering::SeqCst) {
        let _ = Serial.write_str("\nunifw: panic inside the panic handler; halting\n");
        cpu::halt_forever();
    }
    let us = clock::now_us();
    // The logger's lock may be held by the code that panicked: write directly.
    let _ = write!(Serial, "\n[{:5}.{:06}] PANIC ", us / 1_000_000, us % 1_000_000);
    if let Some(location) = info.location() {
        let _ = write!(Serial, "at {}:{}: ", location.file(), location.line());
    }
    let _ = writeln!(Serial, "{}", info.message());
    if RESET_ON_PANIC.load(Ordering::Relaxed) {
        let _ = writeln!(Serial, "unifw: resetting");
        cpu::reset();
    }
    let _ = writeln!(Serial, "unifw: halted");
    cpu::halt_forever();
}
