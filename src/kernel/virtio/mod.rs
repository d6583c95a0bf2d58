//! virtio-net discovery on PCI (modern and legacy) and MMIO (microvm), in
//! the order QEMU's command line gave the NICs (discovery order: the core
//! names them from it and the MAC bindings, `unifw_core::firewall::plan`).

pub mod buffers;
mod hal;
mod legacy_pci;
pub mod net;
mod ring;
mod transport;

pub use hal::KernelHal;
pub use transport::AnyTransport;
use transport::{Inner, ReceiveVector};

use crate::kernel::arch::{apic, idt::NIC_VECTOR};
use crate::kernel::pci::{self, BarAllocator, PortCam};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;
use legacy_pci::LegacyPciTransport;
use net::NetDriver;
use unifw_core::cmdline::MmioDevice;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::{DeviceType, Transport};

/// Descriptors per virtqueue at most: each queue takes the device's size
/// up to this (QEMU's virtio-net offers 256, or its `rx_queue_size` up to
/// 1024); legacy PCI devices fix theirs.
pub const MAX_QUEUE_SIZE: u32 = 1024;
const MSIX_ENTRY: u16 = 0;
/// microvm's virtio-mmio transports when QEMU did not list them on the command line.
const MMIO_SCAN: (u64, u64, usize) = (0xfeb0_0000, 0x200, 24);
/// GSI of the first scanned transport (microvm with ACPI: second IOAPIC).
const MMIO_SCAN_FIRST_GSI: u32 = 24;

/// A discovered, initialised NIC.
pub struct FoundNic {
    /// The driver.
    pub driver: NetDriver,
    /// Where it is, for the boot log.
    pub location: String,
    /// Whether its receive interrupts can wake the CPU.
    pub can_wake: bool,
}

/// Finds and initialises every virtio-net device, in discovery order.
pub fn discover(mmio_devices: &[MmioDevice], wanted: u64) -> Vec<FoundNic> {
    let mut nics = discover_pci(wanted);
    if nics.is_empty() {
        nics = discover_mmio(mmio_devices, wanted);
    }
    nics
}

fn discover_pci(wanted: u64) -> Vec<FoundNic> {
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
        match init_pci(&mut root, df, wanted) {
            Ok(nic) => nics.push(nic),
            Err(e) => log::error!("pci {df}: {e}; NIC skipped"),
        }
    }
    nics
}

fn init_pci(root: &mut PciRoot<PortCam>, df: DeviceFunction, wanted: u64) -> Result<FoundNic, String> {
    let msix = pci::enable_msix(root, df, MSIX_ENTRY, NIC_VECTOR, apic::lapic_id());
    let (inner, kind, vector) = match PciTransport::new::<KernelHal, _>(root, df) {
        Ok(t) => {
            let common_cfg = transport::modern_common_cfg(root, df);
            (Inner::Pci(t), "modern", common_cfg.map(ReceiveVector::Modern))
        }
        Err(_) => {
            let io = pci::io_bar_address(df, 0).ok_or("neither modern capabilities nor a legacy I/O BAR")?;
            let mut legacy = LegacyPciTransport::new(io, DeviceType::Network, msix);
            // Legacy devices fix the queue size and the ring layout follows
            // from it: a size the driver cannot take cannot be driven.
            for queue in 0..2 {
                let size = legacy.max_queue_size(queue);
                if !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
                    return Err(format!(
                        "legacy queue {queue} has {size} entries; a power of two up to {MAX_QUEUE_SIZE} is supported"
                    ));
                }
            }
            (Inner::Legacy(legacy), "legacy", Some(ReceiveVector::Legacy))
        }
    };
    let vector = if msix { vector.map(|v| (v, MSIX_ENTRY)) } else { None };
    let driver =
        NetDriver::new(AnyTransport::new(inner, vector), wanted).map_err(|e| format!("virtio-net init: {e:?}"))?;
    let can_wake = driver.transport().receive_vector_set();
    Ok(FoundNic { driver, location: format!("pci {df} {kind}"), can_wake })
}

fn discover_mmio(listed: &[MmioDevice], wanted: u64) -> Vec<FoundNic> {
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
        let transport = AnyTransport::new(Inner::Mmio(transport), None);
        match NetDriver::new(transport, wanted) {
            Ok(driver) => {
                let can_wake = dev.irq != 0 && apic::route_gsi(dev.irq, NIC_VECTOR);
                let location = format!("mmio {:#x} irq {}", dev.base, dev.irq);
                nics.push(FoundNic { driver, location, can_wake });
            }
            Err(e) => log::error!("mmio {:#x}: virtio-net init: {e:?}; NIC skipped", dev.base),
        }
    }
    nics
}
