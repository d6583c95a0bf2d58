//! The serial console: a 16550 UART on COM1 (port 0x3f8).

use crate::kernel::arch::port::{inb, outb};
use core::fmt;

const COM1: u16 = 0x3f8;
const LINE_STATUS: u16 = 5;
const TRANSMIT_EMPTY: u8 = 1 << 5;

/// A handle to COM1. Writing is safe from anywhere; callers serialise lines
/// through the logger's lock (the panic handler writes without it).
pub struct Serial;

impl Serial {
    /// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init() {
        outb(COM1 + 1, 0x00); // no UART interrupts
        outb(COM1 + 3, 0x80); // DLAB on
        outb(COM1, 0x01); // divisor 1: 115200 baud
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1, DLAB off
        outb(COM1 + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
        outb(COM1 + 4, 0x03); // DTR, RTS
    }

    fn write_byte(byte: u8) {
        // Bounded wait: a missing UART reads 0xff (transmit empty), and a
        // stuck one must not hang the firewall.
        for _ in 0..100_000 {
            if inb(COM1 + LINE_STATUS) & TRANSMIT_EMPTY != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        outb(COM1, byte);
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                Self::write_byte(b'\r');
            }
            Self::write_byte(byte);
        }
        Ok(())
    }
}
