//! Legacy (virtio 0.9.5) PCI transport over an I/O-port BAR, for devices
//! with `disable-modern=on`; virtio-drivers only has the modern one.

use crate::kernel::arch::port::{inb, inl, inw, outb, outl, outw};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const HOST_FEATURES: u16 = 0x00;
const GUEST_FEATURES: u16 = 0x04;
const QUEUE_PFN: u16 = 0x08;
const QUEUE_SIZE: u16 = 0x0c;
const QUEUE_SELECT: u16 = 0x0e;
const QUEUE_NOTIFY: u16 = 0x10;
const DEVICE_STATUS: u16 = 0x12;
const ISR_STATUS: u16 = 0x13;
const MSIX_QUEUE_VECTOR: u16 = 0x16;
const CONFIG_NO_MSIX: u16 = 0x14;
const CONFIG_WITH_MSIX: u16 = 0x18;
/// Bytes of device configuration we allow access to (virtio-net uses 10).
const CONFIG_LEN: usize = 64;

/// A legacy virtio-pci device behind I/O BAR0.
pub struct LegacyPciTransport {
    io_base: u16,
    device_type: DeviceType,
    msix_enabled: bool,
}

impl LegacyPciTransport {
    /// Wraps the device at `io_base`. `msix_enabled` must say whether MSI-X
    /// is on, which moves the device configuration from 0x14 to 0x18.
    pub fn new(io_base: u16, device_type: DeviceType, msix_enabled: bool) -> Self {
        LegacyPciTransport { io_base, device_type, msix_enabled }
    }

    /// The `QUEUE_NOTIFY` port (a queue's doorbell: write its index).
    pub fn notify_port(&self) -> u16 {
        self.io_base + QUEUE_NOTIFY
    }

    /// The ISR status port (reading acknowledges the interrupt).
    pub fn isr_port(&self) -> u16 {
        self.io_base + ISR_STATUS
    }

    fn config_base(&self) -> u16 {
        self.io_base + if self.msix_enabled { CONFIG_WITH_MSIX } else { CONFIG_NO_MSIX }
    }

    /// Points `queue`'s interrupts at MSI-X table entry `entry`; returns
    /// whether the device accepted it.
    pub fn set_queue_msix_vector(&mut self, queue: u16, entry: u16) -> bool {
        outw(self.io_base + QUEUE_SELECT, queue);
        outw(self.io_base + MSIX_QUEUE_VECTOR, entry);
        inw(self.io_base + MSIX_QUEUE_VECTOR) == entry
    }
}

impl Transport for LegacyPciTransport {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn read_device_features(&mut self) -> u64 {
        u64::from(inl(self.io_base + HOST_FEATURES))
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        outl(self.io_base + GUEST_FEATURES, driver_features as u32);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        outw(self.io_base + QUEUE_SELECT, queue);
        u32::from(inw(self.io_base + QUEUE_SIZE))
    }

    fn notify(&mut self, queue: u16) {
        outw(self.io_base + QUEUE_NOTIFY, queue);
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(u32::from(inb(self.io_base + DEVICE_STATUS)))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        outb(self.io_base + DEVICE_STATUS, status.bits() as u8);
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {
        // Legacy PCI has a fixed 4 KiB page size.
    }

    fn requires_legacy_layout(&self) -> bool {
        true
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        _driver_area: PhysAddr,
        _device_area: PhysAddr,
    ) {
        // The legacy layout puts the rings right after the descriptors, and
        // the device fixes the size: virtio-drivers asks max_queue_size first.
        let _ = size;
        outw(self.io_base + QUEUE_SELECT, queue);
        outl(self.io_base + QUEUE_PFN, (descriptors / PAGE_SIZE as u64) as u32);
    }

    fn queue_unset(&mut self, queue: u16) {
        outw(self.io_base + QUEUE_SELECT, queue);
        outl(self.io_base + QUEUE_PFN, 0);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        outw(self.io_base + QUEUE_SELECT, queue);
        inl(self.io_base + QUEUE_PFN) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        // Reading the ISR acknowledges it.
        InterruptStatus::from_bits_truncate(u32::from(inb(self.io_base + ISR_STATUS)))
    }

    fn read_config_generation(&self) -> u32 {
        0
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        let size = core::mem::size_of::<T>();
        if offset + size > CONFIG_LEN {
            return Err(Error::ConfigSpaceTooSmall);
        }
        let mut bytes = [0u8; CONFIG_LEN];
        for (i, byte) in bytes[..size].iter_mut().enumerate() {
            *byte = inb(self.config_base() + (offset + i) as u16);
        }
        T::read_from_bytes(&bytes[..size]).map_err(|_| Error::ConfigSpaceTooSmall)
    }

    fn write_config_space<T: IntoBytes + Immutable>(&mut self, offset: usize, value: T) -> Result<(), Error> {
        let bytes = value.as_bytes();
        if offset + bytes.len() > CONFIG_LEN {
            return Err(Error::ConfigSpaceTooSmall);
        }
        for (i, byte) in bytes.iter().enumerate() {
            outb(self.config_base() + (offset + i) as u16, *byte);
        }
        Ok(())
    }
}
