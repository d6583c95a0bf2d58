//! The memory of a virtqueue: a zeroed, page-aligned block shared with the
//! device, reached with atomic loads and stores. The queue's logic (indices,
//! free list, notification suppression) is `unifw_core::virtqueue`.

use alloc::alloc::{alloc_zeroed, Layout as AllocLayout};
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU16, AtomicU32, Ordering};
use unifw_core::virtqueue::{Layout, RingMemory};

/// A queue's shared memory, allocated once and never freed (a NIC's queues
/// live as long as the kernel).
pub struct KernelRing {
    base: NonNull<u8>,
    bytes: usize,
}

// SAFETY: the block is owned by the one queue holding this value (never
// shared, never freed); moving it to another CPU moves that ownership, and
// the device's concurrent access goes through atomics and fences.
unsafe impl Send for KernelRing {}

impl KernelRing {
    /// Zeroed memory for `layout`; `None` if memory is short.
    pub fn allocate(layout: Layout) -> Option<KernelRing> {
        let alloc_layout = AllocLayout::from_size_align(layout.bytes, 4096).ok()?;
        // SAFETY: `layout.bytes` is a non-zero multiple of 4 KiB.
        let base = NonNull::new(unsafe { alloc_zeroed(alloc_layout) })?;
        Some(KernelRing { base, bytes: layout.bytes })
    }

    /// The block's physical address (memory is identity-mapped).
    pub fn address(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// The address of `offset`, if `width` bytes from it are inside the
    /// block and aligned to `width`.
    fn at(&self, offset: usize, width: usize) -> Option<*mut u8> {
        (offset.checked_add(width)? <= self.bytes && offset.is_multiple_of(width))
            .then(|| self.base.as_ptr().wrapping_add(offset))
    }
}

impl RingMemory for KernelRing {
    fn load_u16(&self, offset: usize) -> u16 {
        // SAFETY: in bounds and 2-aligned (`at`, and the base is page-
        // aligned); the device writes it concurrently, hence the atomic.
        self.at(offset, 2).map_or(0, |p| u16::from_le(unsafe { AtomicU16::from_ptr(p.cast()) }.load(Ordering::Acquire)))
    }

    fn load_u32(&self, offset: usize) -> u32 {
        // SAFETY: as for `load_u16`, 4-aligned.
        self.at(offset, 4).map_or(0, |p| u32::from_le(unsafe { AtomicU32::from_ptr(p.cast()) }.load(Ordering::Acquire)))
    }

    fn store_u16(&mut self, offset: usize, value: u16) {
        if let Some(p) = self.at(offset, 2) {
            // SAFETY: as for `load_u16`.
            unsafe { AtomicU16::from_ptr(p.cast()) }.store(value.to_le(), Ordering::Release);
        }
    }

    fn store_descriptor(&mut self, offset: usize, address: u64, len: u32, flags: u16) {
        if let Some(p) = self.at(offset, 16) {
            // SAFETY: 16 bytes in bounds and 16-aligned; the device does
            // not read a descriptor until the available ring names it,
            // which a later release store publishes.
            unsafe {
                p.cast::<u64>().write_volatile(address.to_le());
                p.add(8).cast::<u32>().write_volatile(len.to_le());
                p.add(12).cast::<u16>().write_volatile(flags.to_le());
                p.add(14).cast::<u16>().write_volatile(0);
            }
        }
    }

    fn fence(&self) {
        fence(Ordering::SeqCst);
    }
}
