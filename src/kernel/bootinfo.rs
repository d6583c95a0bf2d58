//! What the loader tells the kernel: the command line and the RAM map, from
//! a PVH `hvm_start_info` or a Multiboot2 information structure. Both are
//! copied into fixed buffers before the heap takes the free RAM.

use core::ptr::read_unaligned;
use unifw_core::acpi::{RSDP_V1_LEN, RSDP_V2_LEN};

/// EAX/EDI value on PVH entry (set by the trampoline) and in `hvm_start_info.magic`.
pub const PVH_MAGIC: u32 = 0x336e_c578;
/// EAX value on Multiboot2 entry.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;

const MAX_CMDLINE: usize = 4096;
const MAX_REGIONS: usize = 32;
const E820_RAM: u32 = 1;

/// How the kernel was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// PVH (QEMU `-kernel`).
    Pvh,
    /// Multiboot2 (GRUB).
    Multiboot2,
}

/// A range of usable RAM, `[start, end)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// The loader's information, copied out.
pub struct BootInfo {
    /// Entry protocol.
    pub protocol: Protocol,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    /// Whether the command line was longer than the buffer (it was cut).
    pub cmdline_truncated: bool,
    regions: [Region; MAX_REGIONS],
    region_count: usize,
    /// The ACPI RSDP, copied (Multiboot2 hands a copy; PVH its address).
    rsdp: Option<[u8; RSDP_V2_LEN]>,
}

fn read<T: Copy>(addr: u64) -> T {
    // SAFETY: the loader's structures lie in RAM below 4 GiB, which the boot
    // page tables identity-map; callers only read addresses the loader gave.
    unsafe { read_unaligned(addr as usize as *const T) }
}

impl BootInfo {
    /// Reads the loader's structures. `magic` and `info` are what the
    /// trampoline passed. Returns `None` for an unknown protocol.
    pub fn parse(magic: u32, info: u32) -> Option<BootInfo> {
        let protocol = match magic {
            PVH_MAGIC => Protocol::Pvh,
            MULTIBOOT2_MAGIC => Protocol::Multiboot2,
            _ => return None,
        };
        let mut boot = BootInfo {
            protocol,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
            cmdline_truncated: false,
            regions: [Region::default(); MAX_REGIONS],
            region_count: 0,
            rsdp: None,
        };
        match protocol {
            Protocol::Pvh => boot.parse_pvh(u64::from(info)),
            Protocol::Multiboot2 => boot.parse_multiboot2(u64::from(info)),
        }
        Some(boot)
    }

    fn parse_pvh(&mut self, info: u64) {
        if read::<u32>(info) != PVH_MAGIC {
            return;
        }
        let version = read::<u32>(info + 4);
        self.copy_cmdline(read::<u64>(info + 24));
        let rsdp = read::<u64>(info + 32);
        if rsdp != 0 {
            self.rsdp = Some(read(rsdp));
        }
        if version >= 1 {
            let map = read::<u64>(info + 40);
            let entries = read::<u32>(info + 48);
            for i in 0..u64::from(entries) {
                let entry = map + i * 24;
                let (addr, size, kind) = (read::<u64>(entry), read::<u64>(entry + 8), read::<u32>(entry + 16));
                self.add_region(addr, size, kind);
            }
        }
    }

    fn parse_multiboot2(&mut self, info: u64) {
        let total = u64::from(read::<u32>(info));
        let mut tag = info + 8;
        while tag + 8 <= info + total {
            let (kind, size) = (read::<u32>(tag), u64::from(read::<u32>(tag + 4)));
            match kind {
                0 => break,
                1 => self.copy_cmdline(tag + 8),
                // The RSDP, copied by the loader: ACPI 1.0 (20 bytes) or 2.0.
                14 | 15 if size >= 8 + RSDP_V1_LEN as u64 => {
                    let mut copy = [0u8; RSDP_V2_LEN];
                    for (i, byte) in copy.iter_mut().enumerate().take((size - 8) as usize) {
                        *byte = read::<u8>(tag + 8 + i as u64);
                    }
                    self.rsdp = Some(copy);
                }
                6 => {
                    let entry_size = u64::from(read::<u32>(tag + 8)).max(24);
                    let mut entry = tag + 16;
                    while entry + 24 <= tag + size {
                        let (addr, len, kind) = (read::<u64>(entry), read::<u64>(entry + 8), read::<u32>(entry + 16));
                        self.add_region(addr, len, kind);
                        entry += entry_size;
                    }
                }
                _ => {}
            }
            tag += (size + 7) & !7;
            if size < 8 {
                break;
            }
        }
    }

    fn copy_cmdline(&mut self, addr: u64) {
        if addr == 0 {
            return;
        }
        for i in 0..MAX_CMDLINE {
            let byte = read::<u8>(addr + i as u64);
            if byte == 0 {
                return;
            }
            self.cmdline[i] = byte;
            self.cmdline_len = i + 1;
        }
        self.cmdline_truncated = read::<u8>(addr + MAX_CMDLINE as u64) != 0;
    }

    fn add_region(&mut self, addr: u64, size: u64, kind: u32) {
        if kind == E820_RAM && size > 0 && self.region_count < MAX_REGIONS {
            self.regions[self.region_count] = Region { start: addr, end: addr.saturating_add(size) };
            self.region_count += 1;
        }
    }

    /// The kernel command line (lossy: non-UTF-8 bytes end it early).
    pub fn cmdline(&self) -> &str {
        let bytes = &self.cmdline[..self.cmdline_len];
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// The ACPI RSDP the loader gave, if any (else the kernel scans the
    /// BIOS area for one).
    pub fn rsdp(&self) -> Option<&[u8; RSDP_V2_LEN]> {
        self.rsdp.as_ref()
    }

    /// Usable RAM regions.
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.region_count]
    }
}
