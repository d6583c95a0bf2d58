//! PCI: configuration access through ports 0xCF8/0xCFC, enumeration of
//! bus 0 and of the buses behind the bridges the firmware numbered, BAR
//! assignment where the firmware left BARs unassigned (qboot assigns none),
//! mappings for BARs the firmware put above 4 GiB, and MSI-X setup.

use crate::kernel::arch::paging;
use crate::kernel::arch::port::{inl, outl};
use alloc::vec::Vec;
use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, DeviceFunctionInfo, HeaderType, MemoryBarType, PciRoot,
};

/// Capability ID of MSI-X.
const PCI_CAP_ID_MSIX: u8 = 0x11;
/// Where we place memory BARs the firmware did not assign: inside the PCI
/// hole of both q35 (above its MMCONFIG window, 0xB0000000-0xBFFFFFFF) and
/// pc (which starts at the top of RAM below 4 GiB), below the IOAPIC.
const MEMORY_WINDOW: (u64, u64) = (0xe000_0000, 0xfec0_0000);
/// The boot page tables identity-map this much.
const MAPPED_LIMIT: u64 = 1 << 32;
/// I/O port window for unassigned I/O BARs.
const IO_WINDOW: (u32, u32) = (0xc000, 0x1_0000);

/// Configuration access through the legacy 0xCF8/0xCFC port pair (PCI
/// configuration mechanism #1), which every x86 PC machine type offers.
pub struct PortCam;

fn address(df: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000
        | u32::from(df.bus) << 16
        | u32::from(df.device) << 11
        | u32::from(df.function) << 8
        | u32::from(offset & 0xfc)
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        outl(0xcf8, address(df, offset));
        inl(0xcfc)
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        outl(0xcf8, address(df, offset));
        outl(0xcfc, data);
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// Bridge configuration: primary, secondary and subordinate bus numbers.
const BRIDGE_BUSES: u8 = 0x18;

/// Every function of bus 0 and, depth first, of the buses behind its
/// PCI-PCI bridges (each listed after its bridge), as the firmware numbered
/// them: on q35 under libvirt every device sits behind its own PCI Express
/// root port, in the order of the domain's interfaces. A bridge the
/// firmware left unnumbered (qboot numbers none) hides nothing we can use.
pub fn functions(root: &PciRoot<PortCam>) -> Vec<(DeviceFunction, DeviceFunctionInfo)> {
    let mut found = Vec::new();
    walk(root, 0, &mut found);
    found
}

/// Appends bus `bus`'s functions and those behind its bridges. Secondary
/// buses are only followed upward (`secondary > bus`), so the recursion
/// ends within 255 levels even with bad bridge registers.
fn walk(root: &PciRoot<PortCam>, bus: u8, found: &mut Vec<(DeviceFunction, DeviceFunctionInfo)>) {
    let on_bus: Vec<(DeviceFunction, DeviceFunctionInfo)> = root.enumerate_bus(bus).collect();
    for (df, info) in on_bus {
        let bridge = info.header_type == HeaderType::PciPciBridge;
        found.push((df, info));
        if bridge {
            let secondary = (PortCam.read_word(df, BRIDGE_BUSES) >> 8) as u8;
            if secondary > bus {
                walk(root, secondary, found);
            }
        }
    }
}

/// Hands out addresses for unassigned BARs.
pub struct BarAllocator {
    next_memory: u64,
    next_io: u32,
}

impl BarAllocator {
    /// An allocator that places new BARs above every BAR the firmware
    /// already assigned (SeaBIOS and OVMF assign them; qboot does not) on
    /// the devices of `functions` (bridges, whose BAR registers overlap
    /// their bus numbers, are left alone).
    pub fn new(root: &mut PciRoot<PortCam>, functions: &[(DeviceFunction, DeviceFunctionInfo)]) -> Self {
        let mut allocator = BarAllocator { next_memory: MEMORY_WINDOW.0, next_io: IO_WINDOW.0 };
        for (df, info) in functions {
            if info.header_type != HeaderType::Standard {
                continue;
            }
            let Ok(bars) = root.bars(*df) else { continue };
            for bar in bars.iter().flatten() {
                match *bar {
                    BarInfo::Memory { address, size, .. } if address != 0 && address + size <= MAPPED_LIMIT => {
                        allocator.next_memory = allocator.next_memory.max(address + size);
                    }
                    BarInfo::IO { address, size } if address != 0 => {
                        allocator.next_io = allocator.next_io.max(address + size);
                    }
                    _ => {}
                }
            }
        }
        allocator
    }

    /// Makes every BAR of `df` reachable: assigns the unassigned ones (on
    /// bus 0 only: behind a bridge an address must also lie in the bridge's
    /// window, which only the firmware sets up), maps those the firmware
    /// put above 4 GiB where they are, and enables I/O, memory decoding and
    /// bus mastering. Returns why not.
    pub fn assign(&mut self, root: &mut PciRoot<PortCam>, df: DeviceFunction) -> Result<(), &'static str> {
        let bars = root.bars(df).map_err(|_| "unreadable BARs")?;
        for (index, bar) in bars.iter().enumerate() {
            match bar {
                Some(BarInfo::Memory { address: 0, size, address_type, .. }) if *size > 0 => {
                    if df.bus != 0 {
                        return Err("unassigned BAR behind a bridge (firmware did not configure it)");
                    }
                    self.assign_memory(root, df, index as u8, *size, *address_type)?;
                }
                Some(BarInfo::Memory { address, size, .. }) if *size > 0 && address + size > MAPPED_LIMIT => {
                    if !paging::map_mmio(*address, *size) {
                        return Err("cannot map a BAR above 4 GiB");
                    }
                    log::debug!("pci {df}: BAR{index} memory {address:#x} size {size:#x} mapped");
                }
                Some(BarInfo::IO { address: 0, size }) if *size > 0 => {
                    if df.bus != 0 {
                        return Err("unassigned I/O BAR behind a bridge (firmware did not configure it)");
                    }
                    self.assign_io(root, df, index as u8, *size)?;
                }
                _ => {}
            }
        }
        root.set_command(df, Command::IO_SPACE | Command::MEMORY_SPACE | Command::BUS_MASTER);
        Ok(())
    }

    fn assign_memory(
        &mut self,
        root: &mut PciRoot<PortCam>,
        df: DeviceFunction,
        index: u8,
        size: u64,
        kind: MemoryBarType,
    ) -> Result<(), &'static str> {
        let base = (self.next_memory + size - 1) & !(size - 1);
        if base + size > MEMORY_WINDOW.1 {
            return Err("no room left in the memory window for its BARs");
        }
        self.next_memory = base + size;
        match kind {
            MemoryBarType::Width64 => root.set_bar_64(df, index, base),
            _ => root.set_bar_32(df, index, base as u32),
        }
        log::debug!("pci {df}: BAR{index} memory {base:#x} size {size:#x}");
        Ok(())
    }

    fn assign_io(
        &mut self,
        root: &mut PciRoot<PortCam>,
        df: DeviceFunction,
        index: u8,
        size: u32,
    ) -> Result<(), &'static str> {
        let base = (self.next_io + size - 1) & !(size - 1);
        if base + size > IO_WINDOW.1 {
            return Err("no room left in the I/O window for its BARs");
        }
        self.next_io = base + size;
        root.set_bar_32(df, index, base | 1);
        log::debug!("pci {df}: BAR{index} io {base:#x} size {size:#x}");
        Ok(())
    }
}

/// Reads the address of memory BAR `index` (either width) from configuration space.
pub fn memory_bar_address(df: DeviceFunction, index: u8) -> Option<u64> {
    let cam = PortCam;
    let low = cam.read_word(df, 0x10 + 4 * index);
    if low & 1 != 0 {
        return None;
    }
    let high = if (low >> 1) & 3 == 2 { cam.read_word(df, 0x14 + 4 * index) } else { 0 };
    Some(u64::from(high) << 32 | u64::from(low & !0xf))
}

/// Reads the address of I/O BAR `index`.
pub fn io_bar_address(df: DeviceFunction, index: u8) -> Option<u16> {
    let low = PortCam.read_word(df, 0x10 + 4 * index);
    (low & 1 != 0).then_some((low & !3) as u16)
}

/// One entry of a device's MSI-X table, where its message goes.
#[derive(Debug, Clone, Copy)]
pub struct MsixEntry {
    /// The entry's address, in one of the device's memory BARs.
    address: usize,
}

impl MsixEntry {
    /// Points the entry at `vector` on the CPU with local APIC `apic_id`
    /// (fixed delivery, edge), masked while it changes: a message raised
    /// meanwhile stays pending and goes to the new CPU when unmasked
    /// (PCI Local Bus 3.0, 6.8.2.9).
    pub fn aim(self, vector: u8, apic_id: u8) {
        // SAFETY: `address` is an MSI-X table entry inside one of the
        // device's memory BARs, which `BarAllocator::assign` made reachable
        // (inside the identity-mapped PCI hole, or mapped where the
        // firmware put it) and which stays so; each entry is 16 bytes:
        // address low, address high, data, vector control.
        unsafe {
            let p = self.address as *mut u32;
            p.add(3).write_volatile(1); // masked
            p.write_volatile(0xfee0_0000 | u32::from(apic_id) << 12);
            p.add(1).write_volatile(0);
            p.add(2).write_volatile(u32::from(vector));
            p.add(3).write_volatile(0); // unmasked
        }
    }
}

/// Enables MSI-X on `df` and points table entry `entry` at `vector` on the
/// CPU with local APIC `apic_id` ([`MsixEntry::aim`]). None when the
/// device has no MSI-X capability or the entry does not exist.
pub fn enable_msix(
    root: &mut PciRoot<PortCam>,
    df: DeviceFunction,
    entry: u16,
    vector: u8,
    apic_id: u8,
) -> Option<MsixEntry> {
    let cap = root.capabilities(df).find(|c| c.id == PCI_CAP_ID_MSIX)?;
    let mut cam = PortCam;
    let header = cam.read_word(df, cap.offset);
    let table_size = ((header >> 16) & 0x7ff) as u16 + 1;
    if entry >= table_size {
        return None;
    }
    let table = cam.read_word(df, cap.offset + 4);
    let bar = memory_bar_address(df, (table & 7) as u8)?;
    let msix = MsixEntry { address: (bar + u64::from(table & !7) + 16 * u64::from(entry)) as usize };
    msix.aim(vector, apic_id);
    // Message control: enable (bit 15), function mask off (bit 14).
    let control = ((header >> 16) as u16 | 1 << 15) & !(1 << 14);
    cam.write_word(df, cap.offset, (header & 0xffff) | u32::from(control) << 16);
    Some(msix)
}
