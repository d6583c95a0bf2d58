//! The two registers a queue pair touches on its data path, located once
//! while the device is set up: the doorbell that notifies one queue and the
//! interrupt status that acknowledges the device's interrupt. Cached so
//! that the queue pairs of one device, driven from different CPUs, share
//! no transport and take no lock.
//!
//! Why this is safe without a lock: ringing a doorbell is one write of the
//! queue's index to a register whose address depends only on that queue
//! (MMIO `QueueNotify`, the modern PCI notify address of the queue, the
//! legacy `QUEUE_NOTIFY` port); nothing is selected first, so writes from
//! two CPUs cannot interleave into a wrong notification (virtio-drivers'
//! `PciTransport::notify` selects the queue in the common configuration and
//! reads its notify offset: two CPUs doing that at once could notify the
//! wrong queue, hence the cache). Acknowledging reads the device-wide
//! interrupt status (which clears it on PCI; MMIO writes the bits read back
//! to `InterruptACK`): another pair may clear a bit meant for this one,
//! which loses nothing, because each pair looks at its own used ring after
//! acknowledging and before it halts (`kernel::firewall::sleep`).

use crate::kernel::arch::port::{inb, outw};
use virtio_drivers::transport::InterruptStatus;

/// `QueueNotify` and the interrupt registers of a virtio-mmio transport
/// (legacy and modern alike).
const MMIO_QUEUE_NOTIFY: usize = 0x50;
const MMIO_INTERRUPT_STATUS: usize = 0x60;
const MMIO_INTERRUPT_ACK: usize = 0x64;

#[derive(Clone, Copy, Debug)]
enum Register {
    /// A 32-bit MMIO register (virtio-mmio `QueueNotify`).
    Mmio32(usize),
    /// A 16-bit MMIO register (modern virtio-pci notify address).
    Mmio16(usize),
    /// An I/O port (legacy virtio-pci `QUEUE_NOTIFY`).
    Port(u16),
}

/// Notifies one queue: `Copy`, and usable from any CPU.
#[derive(Clone, Copy, Debug)]
pub struct Doorbell {
    register: Register,
    queue: u16,
}

impl Doorbell {
    /// The doorbell of `queue` on the virtio-mmio transport at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be an identity-mapped virtio-mmio transport that this
    /// driver owns for as long as any copy of the doorbell lives.
    pub unsafe fn mmio(base: usize, queue: u16) -> Doorbell {
        Doorbell { register: Register::Mmio32(base + MMIO_QUEUE_NOTIFY), queue }
    }

    /// The doorbell of `queue` at its modern virtio-pci notify `address`.
    ///
    /// # Safety
    ///
    /// `address` must be the queue's notify address inside the device's
    /// assigned, identity-mapped notify region, 2-byte aligned, valid for
    /// as long as any copy of the doorbell lives.
    pub unsafe fn modern_pci(address: usize, queue: u16) -> Doorbell {
        Doorbell { register: Register::Mmio16(address), queue }
    }

    /// The doorbell of `queue` behind the legacy `QUEUE_NOTIFY` `port`
    /// (port I/O cannot touch memory, so this is safe).
    pub fn legacy_pci(port: u16, queue: u16) -> Doorbell {
        Doorbell { register: Register::Port(port), queue }
    }

    /// Tells the device that the queue has new buffers.
    pub fn ring(&self) {
        match self.register {
            // SAFETY: a device register per the constructor's contract,
            // aligned for its width; a volatile write of the queue index is
            // what the transport specifies.
            Register::Mmio32(address) => unsafe { (address as *mut u32).write_volatile(u32::from(self.queue)) },
            // SAFETY: as above, 16 bits wide.
            Register::Mmio16(address) => unsafe { (address as *mut u16).write_volatile(self.queue) },
            Register::Port(port) => outw(port, self.queue),
        }
    }
}

/// Acknowledges a device's interrupt: `Copy`, and usable from any CPU.
#[derive(Clone, Copy, Debug)]
pub enum InterruptAck {
    /// virtio-mmio: read `InterruptStatus`, write the bits to `InterruptACK`.
    Mmio(usize),
    /// Modern virtio-pci: the ISR status byte (reading clears it).
    Isr(usize),
    /// Legacy virtio-pci: the ISR status port (reading clears it).
    Port(u16),
}

impl InterruptAck {
    /// Acknowledging the virtio-mmio transport at `base`.
    ///
    /// # Safety
    ///
    /// As for [`Doorbell::mmio`].
    pub unsafe fn mmio(base: usize) -> InterruptAck {
        InterruptAck::Mmio(base)
    }

    /// Acknowledging through the modern ISR status byte at `address`.
    ///
    /// # Safety
    ///
    /// `address` must be the device's ISR status byte in an assigned,
    /// identity-mapped BAR, valid for as long as any copy lives.
    pub unsafe fn isr(address: usize) -> InterruptAck {
        InterruptAck::Isr(address)
    }

    /// Acknowledges (lowers) the device's interrupt; returns what it said.
    pub fn ack(&self) -> InterruptStatus {
        let bits = match *self {
            InterruptAck::Mmio(base) => {
                // SAFETY: the transport's registers per `mmio`'s contract,
                // 4-byte aligned.
                unsafe {
                    let status = ((base + MMIO_INTERRUPT_STATUS) as *const u32).read_volatile();
                    if status != 0 {
                        ((base + MMIO_INTERRUPT_ACK) as *mut u32).write_volatile(status);
                    }
                    status
                }
            }
            // SAFETY: the ISR byte per `isr`'s contract.
            InterruptAck::Isr(address) => u32::from(unsafe { (address as *const u8).read_volatile() }),
            InterruptAck::Port(port) => u32::from(inb(port)),
        };
        InterruptStatus::from_bits_truncate(bits)
    }
}
