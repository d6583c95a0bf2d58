//! Finds the machine's CPUs in ACPI's MADT: from the RSDP the loader gave
//! (PVH's `rsdp_paddr`, Multiboot2's RSDP tags) or, failing that, the one
//! the BIOS (SeaBIOS, qboot) left in its area below 1 MiB. The tables are
//! read where the firmware put them (ACPI memory, never the heap's RAM);
//! `unifw_core::acpi` checks every byte before it is believed.

use alloc::vec::Vec;
use unifw_core::acpi::{self, Root, RSDP_V2_LEN, SDT_HEADER_LEN};

/// The BIOS read-only area searched for an RSDP, on 16-byte boundaries.
const BIOS_AREA: (u64, u64) = (0xe_0000, 0x10_0000);
/// The BIOS data area's pointer to the extended BIOS data area (a segment),
/// whose first KiB is searched first.
const EBDA_POINTER: u64 = 0x40e;
/// Tables past this size are not believed (a MADT for 8 CPUs is ~100 bytes).
const MAX_TABLE: usize = 64 << 10;
/// The page tables map only the first 4 GiB.
const MAPPED_LIMIT: u64 = 1 << 32;

fn bytes(addr: u64, len: usize) -> Option<&'static [u8]> {
    if addr == 0 || addr.checked_add(len as u64)? > MAPPED_LIMIT {
        return None;
    }
    // SAFETY: the range is below 4 GiB, which the boot page tables
    // identity-map; it is firmware memory (the BIOS area or ACPI tables,
    // which the RAM map keeps out of the heap) and only read.
    Some(unsafe { core::slice::from_raw_parts(addr as usize as *const u8, len) })
}

fn scan(start: u64, end: u64) -> Option<Root> {
    (start..end).step_by(16).find_map(|addr| acpi::rsdp(bytes(addr, RSDP_V2_LEN.min((end - addr) as usize))?))
}

/// A whole table at `addr` with signature `signature`, checksum checked.
fn table(addr: u64, signature: &[u8; 4]) -> Option<&'static [u8]> {
    let len = acpi::table_length(bytes(addr, SDT_HEADER_LEN)?, signature)?;
    let table = bytes(addr, len).filter(|_| len <= MAX_TABLE)?;
    acpi::checksum_ok(table).then_some(table)
}

/// The local APIC IDs of the enabled CPUs, or why they could not be read.
pub fn cpus(loader_rsdp: Option<&[u8; RSDP_V2_LEN]>) -> Result<Vec<u32>, &'static str> {
    let root = match loader_rsdp.and_then(|r| acpi::rsdp(r)) {
        Some(root) => root,
        None => {
            let ebda = bytes(EBDA_POINTER, 2).map_or(0, |b| u64::from(u16::from_le_bytes([b[0], b[1]])) << 4);
            let in_ebda = (0x8_0000..0xa_0000).contains(&ebda).then(|| scan(ebda, ebda + 1024)).flatten();
            in_ebda.or_else(|| scan(BIOS_AREA.0, BIOS_AREA.1)).ok_or("no ACPI RSDP")?
        }
    };
    let entries = match root {
        Root::Rsdt(addr) => acpi::root_entries(table(addr, b"RSDT").ok_or("bad RSDT")?, false),
        Root::Xsdt(addr) => acpi::root_entries(table(addr, b"XSDT").ok_or("bad XSDT")?, true),
    };
    let madt = entries.iter().find_map(|&addr| table(addr, b"APIC")).ok_or("no MADT")?;
    Ok(acpi::madt_cpus(madt))
}
