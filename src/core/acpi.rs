//! The few ACPI tables the kernel reads to find its CPUs: the RSDP, the
//! RSDT or XSDT it points to, and the MADT ("APIC") that lists each CPU's
//! local APIC. The kernel finds the bytes (the loader's pointer, or a scan
//! of the BIOS area) and reads them through these functions; everything is
//! checked (signature, length, checksum) before it is believed.

use alloc::vec::Vec;

/// Bytes of an ACPI 1.0 RSDP; 2.0 and later have 36.
pub const RSDP_V1_LEN: usize = 20;
/// Bytes of an ACPI 2.0 RSDP.
pub const RSDP_V2_LEN: usize = 36;
/// Bytes of a system description table's header.
pub const SDT_HEADER_LEN: usize = 36;

/// Where the RSDP says the root table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// 32-bit entries (ACPI 1.0).
    Rsdt(u64),
    /// 64-bit entries (ACPI 2.0 and later).
    Xsdt(u64),
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Reads an RSDP (`bytes` holds at least its first 20 bytes, 36 when it is
/// version 2): the root table it names, the XSDT when it has one.
pub fn rsdp(bytes: &[u8]) -> Option<Root> {
    let v1 = bytes.get(..RSDP_V1_LEN)?;
    if v1.get(..8)? != b"RSD PTR " || sum(v1) != 0 {
        return None;
    }
    let revision = *v1.get(15)?;
    if revision >= 2 {
        if let Some(v2) = bytes.get(..RSDP_V2_LEN) {
            let xsdt = u64_at(v2, 24)?;
            if sum(v2) == 0 && xsdt != 0 {
                return Some(Root::Xsdt(xsdt));
            }
        }
    }
    Some(Root::Rsdt(u64::from(u32_at(v1, 16)?)))
}

/// A table's length from its header (`header` holds at least 36 bytes),
/// if the header has the signature `signature`.
pub fn table_length(header: &[u8], signature: &[u8; 4]) -> Option<usize> {
    if header.get(..4)? != signature {
        return None;
    }
    let length = u32_at(header, 4)? as usize;
    (length >= SDT_HEADER_LEN).then_some(length)
}

/// Whether `table` (all of it) sums to zero, as every ACPI table must.
pub fn checksum_ok(table: &[u8]) -> bool {
    sum(table) == 0
}

/// The table addresses an RSDT (4-byte entries) or XSDT (8-byte entries)
/// lists; `table` is the whole root table.
pub fn root_entries(table: &[u8], wide: bool) -> Vec<u64> {
    let body = table.get(SDT_HEADER_LEN..).unwrap_or(&[]);
    if wide {
        body.chunks_exact(8).filter_map(|c| u64_at(c, 0)).collect()
    } else {
        body.chunks_exact(4).filter_map(|c| u32_at(c, 0).map(u64::from)).collect()
    }
}

const MADT_ENTRIES: usize = SDT_HEADER_LEN + 8;
const MADT_LOCAL_APIC: u8 = 0;
const MADT_LOCAL_X2APIC: u8 = 9;
const LAPIC_ENABLED: u32 = 1;

/// The local APIC IDs of the CPUs a MADT (the whole table) says are
/// enabled, in the table's order (the first is usually the boot CPU).
/// CPUs that are only "online capable" (hot-pluggable, not yet present)
/// are left out.
pub fn madt_cpus(madt: &[u8]) -> Vec<u32> {
    let mut cpus = Vec::new();
    let mut at = MADT_ENTRIES;
    while let (Some(&kind), Some(&len)) = (madt.get(at), madt.get(at + 1)) {
        let len = usize::from(len);
        let Some(entry) = madt.get(at..at + len).filter(|_| len >= 2) else {
            break;
        };
        let found = match kind {
            MADT_LOCAL_APIC if len >= 8 => {
                u32_at(entry, 4).filter(|f| f & LAPIC_ENABLED != 0).and(entry.get(3).map(|&id| u32::from(id)))
            }
            MADT_LOCAL_X2APIC if len >= 16 => u32_at(entry, 8).filter(|f| f & LAPIC_ENABLED != 0).and(u32_at(entry, 4)),
            _ => None,
        };
        if let Some(id) = found.filter(|id| !cpus.contains(id)) {
            cpus.push(id);
        }
        at += len;
    }
    cpus
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        bytes[at] = 0u8.wrapping_sub(sum(bytes));
    }

    fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; RSDP_V2_LEN];
        bytes[..8].copy_from_slice(b"RSD PTR ");
        bytes[15] = 2;
        bytes[16..20].copy_from_slice(&rsdt.to_le_bytes());
        bytes[20..24].copy_from_slice(&(RSDP_V2_LEN as u32).to_le_bytes());
        bytes[24..32].copy_from_slice(&xsdt.to_le_bytes());
        fix_checksum(&mut bytes[..RSDP_V1_LEN], 8);
        fix_checksum(&mut bytes, 32);
        bytes
    }

    fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; SDT_HEADER_LEN];
        bytes[..4].copy_from_slice(signature);
        bytes.extend_from_slice(body);
        let len = bytes.len() as u32;
        bytes[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut bytes, 9);
        bytes
    }

    fn madt(entries: &[&[u8]]) -> Vec<u8> {
        let mut body = vec![0u8; 8]; // local APIC address, flags
        for entry in entries {
            body.extend_from_slice(entry);
        }
        table(b"APIC", &body)
    }

    #[test]
    fn rsdp_prefers_the_xsdt_and_checks_both_checksums() {
        let bytes = rsdp_v2(0x1000, 0x2000);
        assert_eq!(rsdp(&bytes), Some(Root::Xsdt(0x2000)));
        // A version-1 reader (20 bytes only) still gets the RSDT.
        assert_eq!(rsdp(&bytes[..RSDP_V1_LEN]), Some(Root::Rsdt(0x1000)));
        let mut bad = bytes.clone();
        bad[33] ^= 1; // extended checksum broken: fall back to the RSDT
        assert_eq!(rsdp(&bad), Some(Root::Rsdt(0x1000)));
        let mut bad = bytes.clone();
        bad[9] ^= 1; // first checksum broken: not an RSDP
        assert_eq!(rsdp(&bad), None);
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(rsdp(&bad), None);
    }

    #[test]
    fn root_tables_list_their_entries() {
        let rsdt = table(b"RSDT", &[0x00, 0x10, 0, 0, 0x00, 0x20, 0, 0]);
        assert!(checksum_ok(&rsdt));
        assert_eq!(table_length(&rsdt, b"RSDT"), Some(rsdt.len()));
        assert_eq!(table_length(&rsdt, b"XSDT"), None);
        assert_eq!(root_entries(&rsdt, false), vec![0x1000, 0x2000]);
        let xsdt = table(b"XSDT", &0x1_0000_0000u64.to_le_bytes());
        assert_eq!(root_entries(&xsdt, true), vec![0x1_0000_0000]);
        let mut broken = xsdt;
        broken[40] ^= 1;
        assert!(!checksum_ok(&broken));
    }

    #[test]
    fn madt_lists_enabled_cpus_only_once_each() {
        let cpu = |acpi: u8, apic: u8, flags: u32| {
            let mut e = vec![0u8, 8, acpi, apic];
            e.extend_from_slice(&flags.to_le_bytes());
            e
        };
        let x2 = |apic: u32, flags: u32| {
            let mut e = vec![9u8, 16, 0, 0];
            e.extend_from_slice(&apic.to_le_bytes());
            e.extend_from_slice(&flags.to_le_bytes());
            e.extend_from_slice(&0u32.to_le_bytes());
            e
        };
        let ioapic = [1u8, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0];
        let table =
            madt(&[&cpu(0, 0, 1), &ioapic, &cpu(1, 1, 1), &cpu(2, 2, 2), &cpu(3, 1, 1), &x2(300, 1), &x2(301, 0)]);
        // CPU 2 is only online-capable, 301 disabled, the second APIC 1 a repeat.
        assert_eq!(madt_cpus(&table), vec![0, 1, 300]);
    }

    #[test]
    fn madt_stops_at_a_truncated_or_zero_length_entry() {
        let table = madt(&[&[0u8, 8, 0, 0, 1, 0, 0, 0], &[0u8, 0, 1, 1]]);
        assert_eq!(madt_cpus(&table), vec![0]);
        let mut cut = madt(&[&[0u8, 8, 0, 0, 1, 0, 0, 0], &[0u8, 8, 1, 1, 1, 0, 0, 0]]);
        cut.truncate(cut.len() - 2);
        assert_eq!(madt_cpus(&cut), vec![0]);
    }
}
