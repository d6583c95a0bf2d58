//! The kernel heap: power-of-two size classes with a free list each, carved
//! from the RAM above the kernel image.
//!
//! Every block is naturally aligned to its size (up to 2 MiB), so a freed
//! block can serve any later request of its class whatever the alignment.
//! Allocation and free are O(1). Memory is never returned to the bump
//! region, which is what a firewall wants: it allocates its tables once at
//! boot and recycles fixed-size buffers after that.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;
use spin::Mutex;

const MIN_BLOCK: usize = 16;
const MAX_NATURAL_ALIGN: usize = 2 << 20;
const CLASSES: usize = usize::BITS as usize;

struct Heap {
    next: usize,
    end: usize,
    free: [usize; CLASSES],
    in_use: usize,
    peak: usize,
}

/// The global allocator.
pub struct KernelHeap(Mutex<Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Heap {
    next: 0,
    end: 0,
    free: [0; CLASSES],
    in_use: 0,
    peak: 0,
}));

/// Hands the region `[start, end)` to the heap.
///
/// # Safety
/// The region must be RAM that is mapped, unused by anything else, and stays
/// so for the rest of the kernel's life.
pub unsafe fn init(start: usize, end: usize) {
    let mut heap = HEAP.0.lock();
    heap.next = start;
    heap.end = end;
}

/// Heap statistics: (bytes in use, peak bytes in use, bytes never yet carved).
pub fn stats() -> (usize, usize, usize) {
    let heap = HEAP.0.lock();
    (heap.in_use, heap.peak, heap.end.saturating_sub(heap.next))
}

fn block_size(layout: Layout) -> Option<usize> {
    layout
        .size()
        .max(layout.align())
        .max(MIN_BLOCK)
        .checked_next_power_of_two()
}

impl Heap {
    fn carve(&mut self, size: usize) -> usize {
        let align = size.min(MAX_NATURAL_ALIGN);
        let Some(start) = self.next.checked_add(align - 1).map(|a| a & !(align - 1)) else {
            return 0;
        };
        match start.checked_add(size) {
            Some(end) if end <= self.end => {
                self.next = end;
                start
            }
            _ => 0,
        }
    }
}

// SAFETY: blocks are handed out at most once until freed (free lists and the
// bump pointer never overlap), each is at least `layout.size()` bytes and
// aligned to `layout.align()` (natural alignment of a power-of-two block,
// `MAX_NATURAL_ALIGN` at most; larger alignments are refused).
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
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
            heap.peak = heap.peak.max(heap.in_use);
        }
        block as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
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
