//! Identity mappings for device memory above the 4 GiB that the boot page
//! tables map (boot/entry.S).
//!
//! Firmware places 64-bit PCI BARs high: SeaBIOS and OVMF both put the
//! 64-bit window above RAM, and behind a PCI Express root port (where
//! libvirt puts every device on q35) such a BAR cannot be moved into the
//! 32-bit hole without reprogramming the bridge. Instead, the pages holding
//! it are mapped where the firmware put them: 2 MiB pages, uncached,
//! identity, with table pages taken from the heap once. Nothing is ever
//! unmapped; the data path never calls this.

use alloc::alloc::{alloc_zeroed, Layout};
use x86_64::registers::control::Cr3;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const NO_CACHE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
const PAGE_2M: u64 = 2 << 20;
/// x86_64's architectural limit on physical addresses (52 bits).
const PHYS_LIMIT: u64 = 1 << 52;

/// Maps `[start, start + len)` identity, uncached, unless already mapped.
/// Returns false if the range is beyond what x86_64 can address or a table
/// page could not be allocated.
pub fn map_mmio(start: u64, len: u64) -> bool {
    let Some(end) = start.checked_add(len) else { return false };
    if len == 0 || end > PHYS_LIMIT {
        return false;
    }
    let mut page = start & !(PAGE_2M - 1);
    while page < end {
        // SAFETY: CR3 holds the boot PML4, identity-mapped like every table
        // page below it (the boot tables in .bss, ours from the heap);
        // entries are only added, never changed, so no live mapping moves.
        if !unsafe { map_2m(page) } {
            return false;
        }
        page += PAGE_2M;
    }
    true
}

/// Maps the 2 MiB page at `page` unless a mapping covers it.
///
/// # Safety
/// The current page tables are identity-mapped.
unsafe fn map_2m(page: u64) -> bool {
    let pml4 = Cr3::read().0.start_address().as_u64() as *mut u64;
    let indices = [(page >> 39) & 511, (page >> 30) & 511];
    let mut table = pml4;
    for index in indices {
        // SAFETY: `table` is a 512-entry table page; index < 512.
        let entry = unsafe { table.add(index as usize) };
        // SAFETY: as above.
        let value = unsafe { entry.read_volatile() };
        if value & PRESENT != 0 && value & HUGE != 0 {
            return true; // a 1 GiB page already maps it
        }
        table = if value & PRESENT != 0 {
            (value & ADDRESS) as *mut u64
        } else {
            let Some(next) = table_page() else { return false };
            // SAFETY: as above; the new table is zeroed, so it maps nothing yet.
            unsafe { entry.write_volatile(next | PRESENT | WRITABLE) };
            next as *mut u64
        };
    }
    // SAFETY: `table` is now the page directory covering `page`.
    let entry = unsafe { table.add(((page >> 21) & 511) as usize) };
    // SAFETY: as above.
    if unsafe { entry.read_volatile() } & PRESENT == 0 {
        // SAFETY: as above; the entry was empty, so no TLB entry exists.
        unsafe { entry.write_volatile(page | PRESENT | WRITABLE | WRITE_THROUGH | NO_CACHE | HUGE) };
    }
    true
}

/// A zeroed, page-aligned table page from the heap (identity-mapped RAM).
fn table_page() -> Option<u64> {
    let layout = Layout::from_size_align(4096, 4096).ok()?;
    // SAFETY: the layout is non-zero; the page is never freed.
    let page = unsafe { alloc_zeroed(layout) };
    (!page.is_null()).then_some(page as u64)
}
