//! The split virtqueue (virtio 1.x, 2.7) as the NIC driver uses it: one
//! descriptor per buffer, notification suppression both ways, and
//! `VIRTIO_F_EVENT_IDX` with the wrapping comparison the specification
//! gives ([`need_event`]).
//!
//! The queue's memory is shared with the device, so the kernel owns it and
//! reaches it through [`RingMemory`] (atomic loads and stores at byte
//! offsets this module computes); everything else, the indices, the free
//! list, which buffers the device holds and whether to notify, is here,
//! where host tests drive it against a model device past the 16-bit index
//! wrap (`tests/virtqueue.rs`).
//!
//! Why not virtio-drivers' `VirtQueue`: with event indices its
//! `should_notify` compares the wrapping indices with `>=`, so after 65,536
//! buffers it stops notifying and the queue stalls; it also rewrites
//! `used_event` on every pop, which asks for an interrupt per buffer while
//! the driver polls with interrupts off.

use alloc::vec;
use alloc::vec::Vec;

/// Descriptor flag: the device writes this buffer (receive).
const DESC_F_WRITE: u16 = 2;
/// `avail.flags`: the driver does not want interrupts (without event indices).
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `used.flags`: the device does not want notifications (without event indices).
const USED_F_NO_NOTIFY: u16 = 1;
/// The legacy interface aligns the used ring to this, and so do we (it
/// suits modern transports too: their alignment needs are smaller).
const USED_ALIGN: usize = 4096;
/// Largest queue size the specification allows.
pub const MAX_SIZE: u16 = 32_768;

/// Whether the other side asked to be told about index `new`, when it was
/// last told about `old`: true if `event` lies in `[old, new)`, comparing
/// 16-bit indices that wrap (virtio 1.x 2.7.10, Linux's `vring_need_event`).
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Where the parts of a queue of `size` entries lie in its memory: the
/// descriptor table at 0, the available ring after it, the used ring on the
/// next 4 KiB boundary (the legacy layout, which modern devices accept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Entries (a power of two, at most [`MAX_SIZE`]).
    pub size: u16,
    /// Offset of the available ring (the driver area).
    pub avail: usize,
    /// Offset of the used ring (the device area).
    pub used: usize,
    /// Bytes in all, a multiple of 4 KiB.
    pub bytes: usize,
}

impl Layout {
    /// The layout for `size` entries; `None` unless a power of two in
    /// `1..=MAX_SIZE`.
    pub fn new(size: u16) -> Option<Layout> {
        if !size.is_power_of_two() || size > MAX_SIZE {
            return None;
        }
        let n = usize::from(size);
        let avail = 16 * n;
        let used = align_up(avail + 6 + 2 * n, USED_ALIGN);
        let bytes = used + align_up(6 + 8 * n, USED_ALIGN);
        Some(Layout { size, avail, used, bytes })
    }

    fn descriptor(&self, index: u16) -> usize {
        16 * usize::from(index)
    }
    fn avail_flags(&self) -> usize {
        self.avail
    }
    fn avail_idx(&self) -> usize {
        self.avail + 2
    }
    fn avail_ring(&self, slot: u16) -> usize {
        self.avail + 4 + 2 * usize::from(slot)
    }
    /// `used_event`, after the available ring.
    fn used_event(&self) -> usize {
        self.avail + 4 + 2 * usize::from(self.size)
    }
    fn used_flags(&self) -> usize {
        self.used
    }
    fn used_idx(&self) -> usize {
        self.used + 2
    }
    fn used_ring(&self, slot: u16) -> usize {
        self.used + 4 + 8 * usize::from(slot)
    }
    /// `avail_event`, after the used ring.
    fn avail_event(&self) -> usize {
        self.used + 4 + 8 * usize::from(self.size)
    }

    /// Offsets of each field, for a device model (tests, fuzzers).
    pub fn fields(&self) -> Fields {
        Fields {
            avail_flags: self.avail_flags(),
            avail_idx: self.avail_idx(),
            avail_ring: self.avail_ring(0),
            used_event: self.used_event(),
            used_flags: self.used_flags(),
            used_idx: self.used_idx(),
            used_ring: self.used_ring(0),
            avail_event: self.avail_event(),
        }
    }
}

/// Field offsets of a [`Layout`] (ring entries are `ring + entry size * slot`).
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    /// `avail.flags` (u16).
    pub avail_flags: usize,
    /// `avail.idx` (u16).
    pub avail_idx: usize,
    /// `avail.ring[0]` (u16 entries).
    pub avail_ring: usize,
    /// `avail.used_event` (u16).
    pub used_event: usize,
    /// `used.flags` (u16).
    pub used_flags: usize,
    /// `used.idx` (u16).
    pub used_idx: usize,
    /// `used.ring[0]` (entries of id u32, len u32).
    pub used_ring: usize,
    /// `used.avail_event` (u16).
    pub avail_event: usize,
}

fn align_up(value: usize, align: usize) -> usize {
    value.div_ceil(align) * align
}

/// The queue's shared memory, [`Layout::bytes`] long. Offsets come from
/// the layout and are in bounds and aligned for their width; an
/// implementation may still check them and ignore what is not.
pub trait RingMemory {
    /// Loads a little-endian u16 (acquire: what the device wrote before it
    /// is visible after).
    fn load_u16(&self, offset: usize) -> u16;
    /// Loads a little-endian u32.
    fn load_u32(&self, offset: usize) -> u32;
    /// Stores a little-endian u16 (release: what the driver wrote before it
    /// is visible to the device first).
    fn store_u16(&mut self, offset: usize, value: u16);
    /// Writes a descriptor: address, length, flags, next (16 bytes).
    fn store_descriptor(&mut self, offset: usize, address: u64, len: u32, flags: u16);
    /// A full fence: the driver's index store is visible before it loads
    /// the device's event index or flags (the device does the converse).
    fn fence(&self);
}

/// What went wrong with the device's side of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfStep {
    /// The used ring names a descriptor that does not exist or that the
    /// device does not hold.
    UnknownDescriptor(u32),
}

/// A split virtqueue with one descriptor per buffer. Tokens are descriptor
/// indices: the caller keeps what each token's buffer is.
#[derive(Debug)]
pub struct SplitQueue<M: RingMemory> {
    memory: M,
    layout: Layout,
    /// Descriptors the driver may use (a stack).
    free: Vec<u16>,
    /// Whether the device holds each descriptor.
    held: Vec<bool>,
    /// The next available index (published to `avail.idx` at each add).
    avail_idx: u16,
    /// `avail_idx` when the driver last decided whether to notify.
    notified_idx: u16,
    /// The next used index to read.
    last_used: u16,
    event_idx: bool,
    interrupts: bool,
    notifications: u64,
    suppressed: u64,
}

impl<M: RingMemory> SplitQueue<M> {
    /// A queue over zeroed `memory` laid out as `layout`, with interrupts
    /// off. `event_idx`: whether `VIRTIO_F_EVENT_IDX` was negotiated.
    pub fn new(memory: M, layout: Layout, event_idx: bool) -> SplitQueue<M> {
        let mut queue = SplitQueue {
            memory,
            layout,
            free: (0..layout.size).rev().collect(),
            held: vec![false; usize::from(layout.size)],
            avail_idx: 0,
            notified_idx: 0,
            last_used: 0,
            event_idx,
            interrupts: true,
            notifications: 0,
            suppressed: 0,
        };
        queue.set_interrupts(false);
        queue
    }

    /// The layout (its size and where its parts are).
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Descriptors free for [`SplitQueue::add`].
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Offers the device one buffer at `address`, `len` bytes, which it
    /// writes when `device_writes` (receive) or reads (transmit). Returns
    /// its token, or `None` if every descriptor is in use.
    pub fn add(&mut self, address: u64, len: u32, device_writes: bool) -> Option<u16> {
        let id = self.free.pop()?;
        if let Some(held) = self.held.get_mut(usize::from(id)) {
            *held = true;
        }
        let flags = if device_writes { DESC_F_WRITE } else { 0 };
        self.memory.store_descriptor(self.layout.descriptor(id), address, len, flags);
        let slot = self.avail_idx & (self.layout.size - 1);
        self.memory.store_u16(self.layout.avail_ring(slot), id);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.memory.store_u16(self.layout.avail_idx(), self.avail_idx);
        Some(id)
    }

    /// Where in the ring memory the device writes its used index.
    pub fn used_index_offset(&self) -> usize {
        self.layout.used_idx()
    }

    /// The used index up to which entries were taken.
    pub fn last_used(&self) -> u16 {
        self.last_used
    }

    /// Whether the device has returned a buffer not yet taken.
    pub fn can_take(&self) -> bool {
        self.memory.load_u16(self.layout.used_idx()) != self.last_used
    }

    /// Takes the next buffer the device returned: its token and the bytes
    /// the device wrote. `Err` if the device names a descriptor it does not
    /// hold (the entry is skipped).
    pub fn take(&mut self) -> Result<Option<(u16, u32)>, OutOfStep> {
        if !self.can_take() {
            return Ok(None);
        }
        let entry = self.layout.used_ring(self.last_used & (self.layout.size - 1));
        let id = self.memory.load_u32(entry);
        let len = self.memory.load_u32(entry + 4);
        self.last_used = self.last_used.wrapping_add(1);
        if self.event_idx {
            // With interrupts on: the next buffer interrupts. Off: an
            // index behind the device's, reached only after a wrap.
            let event = if self.interrupts { self.last_used } else { self.last_used.wrapping_sub(1) };
            self.memory.store_u16(self.layout.used_event(), event);
        }
        let held = u16::try_from(id).ok().and_then(|index| Some((index, self.held.get_mut(usize::from(index))?)));
        match held {
            Some((index, held)) if *held => {
                *held = false;
                self.free.push(index);
                Ok(Some((index, len)))
            }
            _ => Err(OutOfStep::UnknownDescriptor(id)),
        }
    }

    /// Turns the device's interrupts for this queue on or off. Turning
    /// them on returns whether buffers came back meanwhile (the caller
    /// takes them rather than wait for an interrupt that may not come).
    pub fn set_interrupts(&mut self, on: bool) -> bool {
        self.interrupts = on;
        if self.event_idx {
            let event = if on { self.last_used } else { self.last_used.wrapping_sub(1) };
            self.memory.store_u16(self.layout.used_event(), event);
        } else {
            self.memory.store_u16(self.layout.avail_flags(), if on { 0 } else { AVAIL_F_NO_INTERRUPT });
        }
        if on {
            self.memory.fence();
            self.can_take()
        } else {
            false
        }
    }

    /// Whether to notify the device of the buffers added since the last
    /// call: some were, and the device asked to hear of them (its
    /// `avail_event` among them, or without event indices its flags allow
    /// it). Call once per batch.
    pub fn should_notify(&mut self) -> bool {
        let (old, new) = (self.notified_idx, self.avail_idx);
        if old == new {
            return false;
        }
        self.notified_idx = new;
        self.memory.fence();
        let notify = if self.event_idx {
            need_event(self.memory.load_u16(self.layout.avail_event()), new, old)
        } else {
            self.memory.load_u16(self.layout.used_flags()) & USED_F_NO_NOTIFY == 0
        };
        if notify {
            self.notifications += 1;
        } else {
            self.suppressed += 1;
        }
        notify
    }

    /// Batches notified and batches whose notification the device
    /// suppressed, since boot.
    pub fn notification_counts(&self) -> (u64, u64) {
        (self.notifications, self.suppressed)
    }

    /// The memory (for a device model in tests).
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// The memory, mutably (for a device model in tests).
    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.memory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_event_wraps() {
        // The device asked at 5; the driver moved from 3 to 7: tell it.
        assert!(need_event(5, 7, 3));
        assert!(need_event(3, 7, 3), "the first new index counts");
        assert!(!need_event(7, 7, 3), "the event is the next one, not yet reached");
        assert!(!need_event(2, 7, 3), "already told");
        // Across the wrap: from 65,534 to 2, event 65,535 and 0 and 1 inside.
        for event in [65_534u16, 65_535, 0, 1] {
            assert!(need_event(event, 2, 65_534), "event {event}");
        }
        assert!(!need_event(2, 2, 65_534));
        assert!(!need_event(65_533, 2, 65_534));
        // virtio-drivers 0.13 compares `new >= event + 1`: after the wrap
        // (new 2, event 65,530) it says no, and the device waits forever.
        let (new, event, old) = (2u16, 65_530u16, 65_528u16);
        let old_rule = new >= event.wrapping_add(1);
        assert!(!old_rule, "the old rule misses the event across the wrap");
        assert!(need_event(event, new, old), "the wrapping comparison sees it");
    }

    #[test]
    fn layout_is_legacy_compatible() {
        let layout = Layout::new(256).expect("power of two");
        assert_eq!((layout.avail, layout.used, layout.bytes), (4096, 8192, 12_288));
        let fields = layout.fields();
        assert_eq!((fields.used_event, fields.avail_event), (4096 + 4 + 512, 8192 + 4 + 2048));
        assert!(Layout::new(0).is_none());
        assert!(Layout::new(100).is_none());
        assert!(Layout::new(65_535).is_none());
        assert_eq!(Layout::new(MAX_SIZE).map(|l| l.bytes % 4096), Some(0));
    }
}
