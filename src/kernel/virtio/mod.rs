//! virtio-net discovery on PCI (modern and legacy) and MMIO (microvm), in
//! the order QEMU's command line gave the NICs (discovery order: the core
//! names them from it and the MAC bindings, `unifw_core::firewall::plan`).

pub mod buffers;
mod control;
mod doorbell;
mod hal;
mod legacy_pci;
pub mod net;
mod ring;
mod setup;
mod transport;

pub use hal::KernelHal;
pub use transport::AnyTransport;
use transport::Inner;

use crate::kernel::arch::{apic, idt::NIC_VECTOR};
use crate::kernel::pci::{self, BarAllocator, PortCam};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;
use legacy_pci::LegacyPciTransport;
use net::NetDriver;
use setup::Initialised;
use unifw_core::cmdline::MmioDevice;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::{DeviceType, Transport};

/// Descriptors per virtqueue at most: each queue takes the device's size
/// up to this (QEMU's virtio-net offers 256, or its `rx_queue_size` up to
/// 1024); legacy PCI devices fix theirs.
pub const MAX_QUEUE_SIZE: u32 = 1024;
/// microvm's virtio-mmio transports when QEMU did not list them on the command line.
const MMIO_SCAN: (u64, u64, usize) = (0xfeb0_0000, 0x200, 24);
/// GSI of the first scanned transport (microvm with ACPI: second IOAPIC).
const MMIO_SCAN_FIRST_GSI: u32 = 24;

/// A discovered, initialised NIC.
pub struct FoundNic {
    /// The driver of its first queue pair (the only one without multiqueue).
    pub driver: NetDriver,
    /// Its other queue pairs (1.., in order), each a driver of its own that
    /// may run on another CPU; empty without `VIRTIO_NET_F_MQ`.
    pub more: Vec<NetDriver>,
    /// Queue pairs the device offers (`max_virtqueue_pairs`, 1 without MQ).
    pub offered_pairs: u16,
    /// Where it is, for the boot log.
    pub location: String,
    /// Whether every pair's receive interrupts can wake the CPU (all go to
    /// the boot CPU's NIC vector: on PCI pair k through MSI-X entry k when
    /// the device has it, else entry 0; on MMIO through the device's line).
    pub can_wake: bool,
}

impl FoundNic {
    fn new(found: Initialised, location: String, can_wake: bool) -> Option<FoundNic> {
        let mut pairs = found.pairs.into_iter();
        let driver = pairs.next()?;
        Some(FoundNic { driver, more: pairs.collect(), offered_pairs: found.offered_pairs, location, can_wake })
    }
}

/// Finds and initialises every virtio-net device, in discovery order, each
/// with up to `queue_pairs` queue pairs (1: no multiqueue negotiated).
pub fn discover(mmio_devices: &[MmioDevice], wanted: u64, queue_pairs: u16) -> Vec<FoundNic> {
    let queue_pairs = queue_pairs.max(1);
    let mut nics = discover_pci(wanted, queue_pairs);
    if nics.is_empty() {
        nics = discover_mmio(mmio_devices, wanted, queue_pairs);
    }
    nics
}

fn discover_pci(wanted: u64, queue_pairs: u16) -> Vec<FoundNic> {
    let mut root = PciRoot::new(PortCam);
    let functions = pci::functions(&root);
    let mut bars = BarAllocator::new(&mut root, &functions);
    // Bus 0 in slot order is QEMU's command-line order for devices without
    // an explicit `addr=`; a device behind a bridge comes at its bridge's
    // place (libvirt's q35 root ports follow the domain's interface order).
    let found: Vec<DeviceFunction> = functions
        .iter()
        .filter(|(_, info)| virtio_device_type(info) == Some(DeviceType::Network))
        .map(|(df, _)| *df)
        .collect();
    let mut nics = Vec::new();
    for df in found {
        if let Err(e) = bars.assign(&mut root, df) {
            log::error!("pci {df}: {e}; NIC skipped");
            continue;
        }
        match init_pci(&mut root, df, wanted, queue_pairs) {
            Ok(nic) => nics.push(nic),
            Err(e) => log::error!("pci {df}: {e}; NIC skipped"),
        }
    }
    nics
}

fn init_pci(
    root: &mut PciRoot<PortCam>,
    df: DeviceFunction,
    wanted: u64,
    queue_pairs: u16,
) -> Result<FoundNic, String> {
    // MSI-X entry k for pair k's receive queue, all at the NIC vector on
    // this CPU until the CPU that serves pair k aims its entry at itself;
    // entry 0 serves the pairs beyond the device's table.
    let mut entries = Vec::new();
    while entries.len() < usize::from(queue_pairs) {
        match pci::enable_msix(root, df, entries.len() as u16, NIC_VECTOR, apic::lapic_id()) {
            Some(entry) => entries.push(entry),
            None => break,
        }
    }
    let msix = !entries.is_empty();
    let msix_entries = entries.len() as u16;
    let (inner, kind) = match PciTransport::new::<KernelHal, _>(root, df) {
        Ok(t) => {
            let registers = transport::modern_registers(root, df).ok_or("modern capabilities unreadable")?;
            (Inner::Pci(t, registers), "modern")
        }
        Err(_) => {
            let io = pci::io_bar_address(df, 0).ok_or("neither modern capabilities nor a legacy I/O BAR")?;
            (Inner::Legacy(LegacyPciTransport::new(io, DeviceType::Network, msix)), "legacy")
        }
    };
    let mut found = setup::initialise(AnyTransport::new(inner, msix_entries), wanted, queue_pairs)
        .map_err(|e| format!("virtio-net init: {e:?}"))?;
    // A pair with an entry of its own can have its interrupts aimed at
    // the CPU that serves it (`NetDriver::aim_receive_interrupts_here`).
    for (pair, entry) in found.pairs.iter_mut().zip(&entries) {
        if pair.receive_vector_set() {
            pair.set_receive_entry(*entry);
        }
    }
    let can_wake = found.pairs.iter().all(NetDriver::receive_vector_set);
    FoundNic::new(found, format!("pci {df} {kind}"), can_wake).ok_or_else(|| String::from("no queue pair"))
}

fn discover_mmio(listed: &[MmioDevice], wanted: u64, queue_pairs: u16) -> Vec<FoundNic> {
    let mut candidates: Vec<MmioDevice> = listed.to_vec();
    if candidates.is_empty() {
        // With ACPI on (the default), QEMU lists nothing on the command
        // line: it has 24 transports whose interrupts start at GSI 24 on
        // the second IOAPIC. (With acpi=off it lists 8, from GSI 5.)
        let (base, stride, count) = MMIO_SCAN;
        candidates = (0..count as u64)
            .map(|i| MmioDevice { base: base + i * stride, size: stride, irq: MMIO_SCAN_FIRST_GSI + i as u32 })
            .collect();
    }
    // QEMU's microvm plugs the first NIC of its command line into the
    // transport with the highest address.
    candidates.sort_by_key(|d| core::cmp::Reverse(d.base));
    let mut nics = Vec::new();
    for dev in candidates {
        let Some(header) = NonNull::new(dev.base as usize as *mut VirtIOHeader) else {
            continue;
        };
        // SAFETY: the virtio-mmio window lies in the identity-mapped MMIO
        // hole and belongs to this driver alone from now on.
        let Ok(transport) = (unsafe { MmioTransport::new(header, dev.size as usize) }) else {
            continue;
        };
        if transport.device_type() != DeviceType::Network {
            continue;
        }
        let transport = AnyTransport::new(Inner::Mmio(transport, dev.base as usize), 0);
        match setup::initialise(transport, wanted, queue_pairs) {
            Ok(found) => {
                let can_wake = dev.irq != 0 && apic::route_gsi(dev.irq, NIC_VECTOR);
                let location = format!("mmio {:#x} irq {}", dev.base, dev.irq);
                nics.extend(FoundNic::new(found, location, can_wake));
            }
            Err(e) => log::error!("mmio {:#x}: virtio-net init: {e:?}; NIC skipped", dev.base),
        }
    }
    nics
}
