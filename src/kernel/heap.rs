//! The kernel heap: power-of-two size classes with a free list each, carved
//! from the RAM above the kernel image.
//!
//! Every block is naturally aligned to its size (up to 2 MiB), so a freed
//! block can serve any later request of its class whatever the alignment.
//! Allocation and free are O(1). Large blocks (over 512 KiB: packet buffer
//! pools, connection and rule tables) are instead carved to the page, not
//! to the next power of two, which would waste up to half of them; freed
//! large blocks are reused for the same size. Memory is never returned to
//! the bump region, which is what a firewall wants: it allocates its tables
//! once at boot and recycles fixed-size buffers after that.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;
use spin::Mutex;

const MIN_BLOCK: usize = 16;
const MAX_NATURAL_ALIGN: usize = 2 << 20;
const CLASSES: usize = usize::BITS as usize;
const LARGE: usize = 512 << 10;
const PAGE: usize = 4096;

/// RAM regions the heap carves from (UEFI firmware leaves RAM in pieces).
pub const MAX_HEAP_REGIONS: usize = 16;

struct Heap {
    /// Per region: the next byte never carved, and the region's end.
    regions: [(usize, usize); MAX_HEAP_REGIONS],
    region_count: usize,
    free: [usize; CLASSES],
    /// Freed large blocks: each holds (next block, its size) at its start.
    large_free: usize,
    in_use: usize,
}

/// The global allocator.
pub struct KernelHeap(Mutex<Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Heap {
    regions: [(0, 0); MAX_HEAP_REGIONS],
    region_count: 0,
    free: [0; CLASSES],
    large_free: 0,
    in_use: 0,
}));

/// Hands the region `[start, end)` to the heap (up to
/// [`MAX_HEAP_REGIONS`]; returns false when it is full). New blocks come
/// from the first region they fit in.
///
/// # Safety
/// The region must be RAM that is mapped, unused by anything else, and stays
/// so for the rest of the kernel's life.
pub unsafe fn add_region(start: usize, end: usize) -> bool {
    let mut heap = HEAP.0.lock();
    let count = heap.region_count;
    if count == MAX_HEAP_REGIONS {
        return false;
    }
    heap.regions[count] = (start, end);
    heap.region_count = count + 1;
    true
}

/// Heap statistics: (bytes in use, bytes never yet carved).
pub fn stats() -> (usize, usize) {
    let heap = HEAP.0.lock();
    let never = heap.regions[..heap.region_count].iter().map(|(next, end)| end.saturating_sub(*next)).sum();
    (heap.in_use, never)
}

/// Page-rounded size of a large allocation, or `None` for the size classes.
fn large_size(layout: Layout) -> Option<usize> {
    (layout.size() > LARGE && layout.align() <= PAGE).then(|| (layout.size() + PAGE - 1) & !(PAGE - 1))
}

fn block_size(layout: Layout) -> Option<usize> {
    layout.size().max(layout.align()).max(MIN_BLOCK).checked_next_power_of_two()
}

impl Heap {
    fn carve(&mut self, size: usize) -> usize {
        self.carve_aligned(size, size.min(MAX_NATURAL_ALIGN))
    }

    /// A large block: a freed one of exactly this size, or a new one.
    fn alloc_large(&mut self, size: usize) -> usize {
        let mut link: *mut usize = &mut self.large_free;
        // SAFETY: the list holds only freed large blocks, each starting with
        // (next, size) written by `free_large`; `link` always points at the
        // list head or at a block's `next` word.
        unsafe {
            while *link != 0 {
                let block = *link;
                let next = *(block as *const usize);
                if *((block + 8) as *const usize) == size {
                    *link = next;
                    return block;
                }
                link = block as *mut usize;
            }
        }
        self.carve_aligned(size, PAGE)
    }

    /// Puts a large block on the free list.
    ///
    /// # Safety
    /// `block` must be a large block of `size` bytes that is no longer used.
    unsafe fn free_large(&mut self, block: usize, size: usize) {
        // SAFETY: per the contract, the block is ours and over 512 KiB.
        unsafe {
            *(block as *mut usize) = self.large_free;
            *((block + 8) as *mut usize) = size;
        }
        self.large_free = block;
    }

    fn carve_aligned(&mut self, size: usize, align: usize) -> usize {
        for (next, end) in self.regions[..self.region_count].iter_mut() {
            let Some(start) = next.checked_add(align - 1).map(|a| a & !(align - 1)) else {
                continue;
            };
            if let Some(stop) = start.checked_add(size).filter(|stop| stop <= end) {
                *next = stop;
                return start;
            }
        }
        0
    }
}

// SAFETY: blocks are handed out at most once until freed (free lists and the
// bump pointer never overlap), each is at least `layout.size()` bytes and
// aligned to `layout.align()` (natural alignment of a power-of-two block,
// `MAX_NATURAL_ALIGN` at most, larger alignments are refused; large blocks
// are page-aligned and only used for alignments up to a page).
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(size) = large_size(layout) {
            let mut heap = self.0.lock();
            let block = heap.alloc_large(size);
            if block != 0 {
                heap.in_use += size;
            }
            return block as *mut u8;
        }
        let Some(size) = block_size(layout) else {
            return null_mut();
        };
        if layout.align() > MAX_NATURAL_ALIGN {
            return null_mut();
        }
        let class = size.trailing_zeros() as usize;
        let mut heap = self.0.lock();
        let head = heap.free[class];
        let block = if head != 0 {
            // SAFETY: `head` is a freed block of this class; its first word
            // holds the next free block, written by `dealloc`.
            heap.free[class] = unsafe { *(head as *const usize) };
            head
        } else {
            heap.carve(size)
        };
        if block != 0 {
            heap.in_use += size;
        }
        block as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(size) = large_size(layout) {
            let mut heap = self.0.lock();
            // SAFETY: `ptr` came from `alloc` with this (large) layout.
            unsafe { heap.free_large(ptr as usize, size) };
            heap.in_use -= size;
            return;
        }
        let Some(size) = block_size(layout) else {
            return;
        };
        let class = size.trailing_zeros() as usize;
        let mut heap = self.0.lock();
        // SAFETY: `ptr` came from `alloc` with this layout, so it is a block
        // of at least 16 bytes, aligned for a usize, and no longer used.
        unsafe { *(ptr as *mut usize) = heap.free[class] };
        heap.free[class] = ptr as usize;
        heap.in_use -= size;
    }
}
