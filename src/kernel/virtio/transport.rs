//! One transport type for every NIC (MMIO, modern PCI, legacy PCI). It
//! also points receive queues' interrupts at MSI-X entries (virtio-drivers
//! leaves MSI-X vectors alone) and hands out each queue's doorbell and the
//! interrupt acknowledge register (`doorbell.rs`), which the queue pairs
//! use on their data path instead of the transport.

use super::doorbell::{Doorbell, InterruptAck};
use super::legacy_pci::LegacyPciTransport;
use crate::kernel::pci::{memory_bar_address, PortCam};
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const PCI_CAP_ID_VNDR: u8 = 0x09;
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
/// Offsets in the modern common configuration structure.
const COMMON_QUEUE_SELECT: usize = 0x16;
const COMMON_QUEUE_MSIX_VECTOR: usize = 0x1a;
const COMMON_QUEUE_NOTIFY_OFF: usize = 0x1e;

/// The concrete transports.
pub enum Inner {
    /// virtio-mmio (microvm), at this base address.
    Mmio(MmioTransport<'static>, usize),
    /// Modern virtio-pci, with where its registers are.
    Pci(PciTransport, ModernRegisters),
    /// Legacy virtio-pci.
    Legacy(LegacyPciTransport),
}

/// Where a modern virtio-pci device's structures are (identity-mapped
/// addresses inside its assigned memory BARs).
#[derive(Clone, Copy, Debug)]
pub struct ModernRegisters {
    /// The common configuration structure.
    common: usize,
    /// The notify region, and the multiplier of queues' notify offsets.
    notify: usize,
    notify_multiplier: u32,
    /// The ISR status byte.
    isr: usize,
}

/// A transport of any kind, with MSI-X set-up for the receive queues.
pub struct AnyTransport {
    inner: Inner,
    /// MSI-X entries 0..N that point at the NIC vector (pair k's receive
    /// queue takes entry k when it exists, entry 0 otherwise).
    msix_entries: u16,
}

impl AnyTransport {
    /// Wraps `inner`. `msix_entries`: how many MSI-X entries, from 0, the
    /// caller pointed at the NIC vector (0: MSI-X is off).
    pub fn new(inner: Inner, msix_entries: u16) -> Self {
        AnyTransport { inner, msix_entries }
    }

    /// Whether the device fixes each queue's size (legacy virtio-pci: the
    /// ring layout follows from the size, which the driver cannot change).
    pub fn fixed_queue_size(&self) -> bool {
        matches!(self.inner, Inner::Legacy(_))
    }

    /// Points receive queue `queue` of pair `pair` at its MSI-X entry;
    /// returns whether the device accepted it (false without MSI-X: then
    /// the queue interrupts through the device's line, if any).
    pub fn set_receive_vector(&mut self, queue: u16, pair: u16) -> bool {
        if self.msix_entries == 0 {
            return false;
        }
        let entry = if pair < self.msix_entries { pair } else { 0 };
        match &mut self.inner {
            Inner::Legacy(t) => t.set_queue_msix_vector(queue, entry),
            Inner::Pci(_, registers) => {
                // SAFETY: `common` is the device's common configuration
                // structure inside an assigned, identity-mapped memory BAR;
                // both registers are 16-bit and 2-byte aligned. `&mut self`
                // keeps the select-then-write pair from interleaving.
                unsafe {
                    let select = (registers.common + COMMON_QUEUE_SELECT) as *mut u16;
                    let vector = (registers.common + COMMON_QUEUE_MSIX_VECTOR) as *mut u16;
                    select.write_volatile(queue);
                    vector.write_volatile(entry);
                    vector.read_volatile() == entry
                }
            }
            Inner::Mmio(..) => false,
        }
    }

    /// The doorbell of `queue` (set up already: a modern device says its
    /// notify offset per queue).
    pub fn doorbell(&mut self, queue: u16) -> Doorbell {
        match &mut self.inner {
            // SAFETY: the transport owns the virtio-mmio window at `base`
            // and is kept alive (the device's `Arc`) as long as the pairs
            // holding its doorbells.
            Inner::Mmio(_, base) => unsafe { Doorbell::mmio(*base, queue) },
            Inner::Pci(_, registers) => {
                // SAFETY: as in `set_receive_vector`; `queue_notify_off` is
                // 16-bit at 0x1e.
                let offset = unsafe {
                    ((registers.common + COMMON_QUEUE_SELECT) as *mut u16).write_volatile(queue);
                    ((registers.common + COMMON_QUEUE_NOTIFY_OFF) as *const u16).read_volatile()
                };
                let address = registers.notify + usize::from(offset) * registers.notify_multiplier as usize;
                // SAFETY: the notify address virtio 1.x 4.1.4.4 gives for
                // the queue, inside the notify region of an assigned BAR;
                // the multiplier is even (virtio-drivers checked), so it is
                // 2-byte aligned.
                unsafe { Doorbell::modern_pci(address, queue) }
            }
            Inner::Legacy(t) => Doorbell::legacy_pci(t.notify_port(), queue),
        }
    }

    /// How the device's interrupt is acknowledged.
    pub fn interrupt_ack(&self) -> InterruptAck {
        match &self.inner {
            // SAFETY: as in `doorbell`.
            Inner::Mmio(_, base) => unsafe { InterruptAck::mmio(*base) },
            // SAFETY: the ISR capability's byte in an assigned BAR.
            Inner::Pci(_, registers) => unsafe { InterruptAck::isr(registers.isr) },
            Inner::Legacy(t) => InterruptAck::Port(t.isr_port()),
        }
    }
}

/// The identity-mapped address of the first vendor capability of type
/// `cfg_type`, and the capability's offset in configuration space.
fn modern_structure(root: &mut PciRoot<PortCam>, df: DeviceFunction, cfg_type: u8) -> Option<(usize, u8)> {
    let cap = root.capabilities(df).find(|c| c.id == PCI_CAP_ID_VNDR && (c.private_header >> 8) as u8 == cfg_type)?;
    let cam = PortCam;
    let bar = cam.read_word(df, cap.offset + 4) as u8;
    let offset = cam.read_word(df, cap.offset + 8);
    let base = memory_bar_address(df, bar)?;
    Some(((base + u64::from(offset)) as usize, cap.offset))
}

/// Finds a modern device's common configuration, notify region and ISR
/// status (the first capability of each type, as virtio-drivers takes them).
pub fn modern_registers(root: &mut PciRoot<PortCam>, df: DeviceFunction) -> Option<ModernRegisters> {
    let (common, _) = modern_structure(root, df, VIRTIO_PCI_CAP_COMMON_CFG)?;
    let (notify, cap) = modern_structure(root, df, VIRTIO_PCI_CAP_NOTIFY_CFG)?;
    let notify_multiplier = PortCam.read_word(df, cap + 16);
    let (isr, _) = modern_structure(root, df, VIRTIO_PCI_CAP_ISR_CFG)?;
    Some(ModernRegisters { common, notify, notify_multiplier, isr })
}

macro_rules! each {
    ($self:expr, $t:ident => $e:expr) => {
        match $self {
            Inner::Mmio($t, _) => $e,
            Inner::Pci($t, _) => $e,
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
        each!(&mut self.inner, t => t.queue_set(queue, size, descriptors, driver_area, device_area))
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
