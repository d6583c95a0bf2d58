//! One transport type for every NIC (MMIO, modern PCI, legacy PCI), which
//! also points the receive queue's interrupts at an MSI-X entry while the
//! queue is being set up (virtio-drivers leaves MSI-X vectors alone).

use super::legacy_pci::LegacyPciTransport;
use crate::kernel::pci::{memory_bar_address, PortCam};
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const RECEIVE_QUEUE: u16 = 0;
const PCI_CAP_ID_VNDR: u8 = 0x09;
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// Offsets in the modern common configuration structure.
const COMMON_QUEUE_SELECT: usize = 0x16;
const COMMON_QUEUE_MSIX_VECTOR: usize = 0x1a;

/// The concrete transports.
pub enum Inner {
    /// virtio-mmio (microvm).
    Mmio(MmioTransport<'static>),
    /// Modern virtio-pci.
    Pci(PciTransport),
    /// Legacy virtio-pci.
    Legacy(LegacyPciTransport),
}

/// How to set the receive queue's MSI-X vector.
#[derive(Clone, Copy)]
pub enum ReceiveVector {
    /// Through the modern common configuration at this address.
    Modern(usize),
    /// Through the legacy I/O registers.
    Legacy,
}

/// A transport of any kind, with MSI-X set-up for the receive queue.
pub struct AnyTransport {
    inner: Inner,
    vector: Option<(ReceiveVector, u16)>,
    /// Whether the device accepted the receive queue's MSI-X vector.
    receive_vector_set: bool,
}

impl AnyTransport {
    /// Wraps `inner`. With `vector`, the receive queue's interrupts go to
    /// that MSI-X entry (see `receive_vector_set`).
    pub fn new(inner: Inner, vector: Option<(ReceiveVector, u16)>) -> Self {
        AnyTransport { inner, vector, receive_vector_set: false }
    }

    /// Whether receive interrupts reach their MSI-X vector (the device
    /// accepted it when the queue was set up).
    pub fn receive_vector_set(&self) -> bool {
        self.receive_vector_set
    }

    fn set_receive_vector(&mut self) {
        let Some((how, entry)) = self.vector else {
            return;
        };
        let accepted = match (how, &mut self.inner) {
            (ReceiveVector::Legacy, Inner::Legacy(t)) => t.set_queue_msix_vector(RECEIVE_QUEUE, entry),
            (ReceiveVector::Modern(common), Inner::Pci(_)) => {
                // SAFETY: `common` is the device's common configuration
                // structure inside an assigned, identity-mapped memory BAR;
                // both registers are 16-bit and 2-byte aligned.
                unsafe {
                    let select = (common + COMMON_QUEUE_SELECT) as *mut u16;
                    let vector = (common + COMMON_QUEUE_MSIX_VECTOR) as *mut u16;
                    select.write_volatile(RECEIVE_QUEUE);
                    vector.write_volatile(entry);
                    vector.read_volatile() == entry
                }
            }
            _ => false,
        };
        self.receive_vector_set = accepted;
    }
}

/// Finds the address of a modern device's common configuration structure.
pub fn modern_common_cfg(root: &mut PciRoot<PortCam>, df: DeviceFunction) -> Option<usize> {
    let cap = root
        .capabilities(df)
        .find(|c| c.id == PCI_CAP_ID_VNDR && (c.private_header >> 8) as u8 == VIRTIO_PCI_CAP_COMMON_CFG)?;
    let cam = PortCam;
    let bar = cam.read_word(df, cap.offset + 4) as u8;
    let offset = cam.read_word(df, cap.offset + 8);
    let base = memory_bar_address(df, bar)?;
    Some((base + u64::from(offset)) as usize)
}

macro_rules! each {
    ($self:expr, $t:ident => $e:expr) => {
        match $self {
            Inner::Mmio($t) => $e,
            Inner::Pci($t) => $e,
            Inner::Legacy($t) => $e,
        }
    };
}

impl Transport for AnyTransport {
    fn device_type(&self) -> DeviceType {
        each!(&self.inner, t => t.device_type())
    }
    fn read_device_features(&mut self) -> u64 {
        each!(&mut self.inner, t => t.read_device_features())
    }
    fn write_driver_features(&mut self, features: u64) {
        each!(&mut self.inner, t => t.write_driver_features(features))
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        each!(&mut self.inner, t => t.max_queue_size(queue))
    }
    fn notify(&mut self, queue: u16) {
        each!(&mut self.inner, t => t.notify(queue))
    }
    fn get_status(&self) -> DeviceStatus {
        each!(&self.inner, t => t.get_status())
    }
    fn set_status(&mut self, status: DeviceStatus) {
        each!(&mut self.inner, t => t.set_status(status))
    }
    fn set_guest_page_size(&mut self, size: u32) {
        each!(&mut self.inner, t => t.set_guest_page_size(size))
    }
    fn requires_legacy_layout(&self) -> bool {
        each!(&self.inner, t => t.requires_legacy_layout())
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        each!(&mut self.inner, t => t.queue_set(queue, size, descriptors, driver_area, device_area));
        if queue == RECEIVE_QUEUE {
            self.set_receive_vector();
        }
    }
    fn queue_unset(&mut self, queue: u16) {
        each!(&mut self.inner, t => t.queue_unset(queue))
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        each!(&mut self.inner, t => t.queue_used(queue))
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        each!(&mut self.inner, t => t.ack_interrupt())
    }
    fn read_config_generation(&self) -> u32 {
        each!(&self.inner, t => t.read_config_generation())
    }
    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        each!(&self.inner, t => t.read_config_space(offset))
    }
    fn write_config_space<T: IntoBytes + Immutable>(&mut self, offset: usize, value: T) -> Result<(), Error> {
        each!(&mut self.inner, t => t.write_config_space(offset, value))
    }
}
