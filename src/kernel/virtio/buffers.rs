//! Packet buffers shared with the NICs. Each buffer ("slot") is a fixed
//! block of DMA-able memory holding a virtio-net header followed by one
//! Ethernet frame. A `Slot` value is the exclusive right to a buffer: it
//! moves into a virtqueue when posted and comes back when the device is
//! done, so a frame received on one NIC can be sent by another without
//! copying, and every buffer is always accounted for.

use alloc::alloc::{alloc_zeroed, Layout};
use alloc::vec::Vec;
use core::ptr::NonNull;
use unifw_core::firewall::{Buffer, Home};

/// Exclusive ownership of one packet buffer.
pub struct Slot {
    ptr: NonNull<u8>,
    len: usize,
    home: Home,
}

// SAFETY: a Slot is the unique handle to its memory (see `carve`); moving
// it between owners moves that right with it.
unsafe impl Send for Slot {}

impl Buffer for Slot {
    fn carve(size: usize, count: usize, home: Home) -> Vec<Slot> {
        carve(size, count, home)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is a live, never-freed allocation this Slot
        // exclusively owns; the device does not touch it while we hold it.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`, and `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    fn home(&self) -> Home {
        self.home
    }
}

/// Allocates `count` buffers of `size` bytes in one zeroed, page-aligned
/// block that is never freed, all returning to `home`. Returns an empty
/// vector if memory is short.
pub fn carve(size: usize, count: usize, home: Home) -> Vec<Slot> {
    let size = (size + 63) & !63;
    let Ok(layout) = Layout::from_size_align(size.saturating_mul(count).max(1), 4096) else {
        return Vec::new();
    };
    // SAFETY: the layout has a non-zero size.
    let Some(base) = NonNull::new(unsafe { alloc_zeroed(layout) }) else {
        return Vec::new();
    };
    (0..count)
        .map(|i| Slot {
            // SAFETY: `i * size` stays inside the block of `count * size` bytes.
            ptr: unsafe { base.add(i * size) },
            len: size,
            home,
        })
        .collect()
}
