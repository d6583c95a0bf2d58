//! IP fragments: held in a preallocated pool until their datagram is whole.
//!
//! Linux's connection tracker reassembles a datagram before conntrack and
//! the rules see it (`nf_defrag_ipv4`), so only whole datagrams are judged.
//! unifw does the same without building the datagram: it holds the
//! fragments, as they arrived, until the train is complete, and the data
//! plane (`defrag.rs`) then judges the datagram once and forwards or drops
//! every fragment. The policy, after Linux's `ip_fragment.c`:
//! - Fragments are keyed on (src, dst, proto, id) and may arrive in any
//!   order. An exact duplicate (same offset and end) is dropped and the
//!   train kept (`FragmentDuplicate`); any other overlap, a second last
//!   fragment with another end, data past the end, an empty fragment or a
//!   non-last one whose length is not a multiple of 8 drops the whole train
//!   (`FragmentOverlap`; RFC 1858 section 4, RFC 5722, Linux since 4.19).
//!   A TCP fragment at offset 8 always overlaps the first (RFC 1858 3.2).
//! - A first fragment that cannot hold its transport header (RFC 1858
//!   3.1) is held like any other; the data plane reads the header from
//!   the whole datagram, as Linux does after reassembly.
//! - A train incomplete after 30 s (`ipfrag_time`) is dropped
//!   (`FragmentTimeout`), without an ICMP error (Linux sends none for
//!   conntrack's reassembly queues).
//! - Memory: a pool of `slots` frames of `slot_size` bytes, allocated at
//!   start (default 256 x 1518 B, about 380 KiB: Linux's
//!   `ipfrag_high_thresh` of 4 MiB scaled to a guest of tens of MiB).
//!   When it is full, the source holding the most fragments loses its
//!   oldest train (`FragmentEvicted`) if it holds at least as many as the
//!   newcomer's source; else the new fragment is refused
//!   (`FragmentPoolFull`, as Linux refuses above the threshold). The
//!   search is quadratic in the trains held (at most 256), and only runs
//!   while the pool is full. One source holds at most
//!   `per_source` fragments (default 64, a 64 KiB datagram at MTU 1500
//!   needs 45): beyond that its oldest other train is evicted
//!   (`FragmentEvicted`, as Linux's `ipfrag_max_dist` drops a source's
//!   stale queue), or, if the train itself is that large, the train is
//!   dropped (`FragmentSourceLimit`). So one host's fragments never push
//!   out another host's datagram.

use alloc::vec;
use alloc::vec::Vec;

use super::checksum::{complete_partial, PartialChecksum};
use super::conntrack::timeouts::FRAGMENT_MS;
use super::counters::{Counters, DropReason};
use super::parse::{Ipv4Meta, ETHERNET_HEADER_LEN};
use crate::flow::IfIndex;

/// End of a slot chain.
const NONE: u16 = u16::MAX;

/// Sizes of the fragment pool, fixed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentLimits {
    /// Fragments held at once (pool slots).
    pub slots: usize,
    /// Largest frame a slot holds (Ethernet header on).
    pub slot_size: usize,
    /// Fragments one source address may hold at once.
    pub per_source: usize,
}

impl Default for FragmentLimits {
    fn default() -> FragmentLimits {
        FragmentLimits { slots: 256, slot_size: 1518, per_source: 64 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DatagramId {
    src: u32,
    dst: u32,
    proto: u8,
    ident: u16,
}

/// One held fragment: where its frame is and which bytes it carries.
#[derive(Debug, Clone, Copy)]
struct Slot {
    len: u16,
    in_if: IfIndex,
    /// Byte range `[start, end)` of the datagram's payload.
    start: u32,
    end: u32,
    /// Next slot of the train, by offset.
    next: u16,
}

/// A datagram whose fragments are being collected.
#[derive(Debug, Clone, Copy)]
struct Train {
    id: DatagramId,
    /// First slot, the one with the lowest offset.
    head: u16,
    fragments: u16,
    /// Payload bytes held (fragments never overlap, so whole when = total).
    payload: u32,
    /// Frame bytes held.
    bytes: u32,
    /// Payload length, once the last fragment (MF clear) arrived.
    total: Option<u32>,
    expires_ms: u64,
}

/// A whole datagram, out of the table; its fragments stay in their slots
/// until [`FragmentTable::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complete {
    /// The slot of the first fragment (offset 0); the others follow by offset.
    pub head: u16,
    /// The slot of the fragment that completed the datagram.
    pub current: u16,
    /// The datagram's payload length (without the IP header).
    pub payload_len: u32,
}

/// What became of a fragment handed to [`FragmentTable::hold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Copied into the pool; its datagram is still incomplete.
    Waiting,
    /// Copied into the pool, and its datagram is now whole.
    Complete(Complete),
}

/// A held fragment, as the data plane sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldFrame {
    /// Its bytes in the pool.
    pub range: core::ops::Range<usize>,
    /// The interface it arrived on.
    pub in_if: IfIndex,
    /// The next fragment's slot, if any.
    pub next: Option<u16>,
}

/// The pool of held fragments and the trains they belong to.
pub struct FragmentTable {
    limits: FragmentLimits,
    pool: Vec<u8>,
    slots: Vec<Slot>,
    free: Vec<u16>,
    trains: Vec<Train>,
    held_bytes: usize,
    evictions: u64,
    timeouts: u64,
}

/// Byte range `[start, end)` of the datagram a fragment carries.
fn byte_range(meta: &Ipv4Meta) -> (u32, u32) {
    let start = u32::from(meta.frag_offset) * 8;
    let len = meta.total_len.saturating_sub(meta.header_len) as u32;
    (start, start + len)
}

/// A fragment no sender makes: empty, or not the last and not a multiple
/// of 8 bytes long (Linux drops such a fragment's queue).
fn malformed((start, end): (u32, u32), more: bool) -> bool {
    end == start || (more && (end - start) % 8 != 0)
}

impl FragmentTable {
    /// A table with `limits`, all memory allocated now.
    pub fn new(limits: FragmentLimits) -> FragmentTable {
        let limits = FragmentLimits {
            slots: limits.slots.clamp(1, usize::from(NONE)),
            slot_size: limits.slot_size.clamp(ETHERNET_HEADER_LEN, usize::from(u16::MAX)),
            per_source: limits.per_source.max(1),
        };
        FragmentTable {
            pool: vec![0; limits.slots * limits.slot_size],
            slots: vec![Slot { len: 0, in_if: 0, start: 0, end: 0, next: NONE }; limits.slots],
            free: (0..limits.slots as u16).rev().collect(),
            trains: Vec::with_capacity(limits.slots),
            limits,
            held_bytes: 0,
            evictions: 0,
            timeouts: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> FragmentLimits {
        self.limits
    }

    /// Datagrams being collected.
    pub fn len(&self) -> usize {
        self.trains.len()
    }

    /// Whether no datagram is being collected.
    pub fn is_empty(&self) -> bool {
        self.trains.is_empty()
    }

    /// Fragments held in the pool.
    pub fn held_fragments(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Frame bytes held in the pool.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Trains evicted because their source held its maximum.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Trains dropped because they stayed incomplete for 30 s.
    pub fn timeouts(&self) -> u64 {
        self.timeouts
    }

    /// Copies the fragment in `frame` (parsed into `meta`, received on
    /// `in_if`, with its `partial` checksum completed) into the pool.
    /// `Err` says why this fragment is dropped; fragments of its train
    /// dropped with it are counted in `counters`.
    pub fn hold(
        &mut self,
        now_ms: u64,
        meta: &Ipv4Meta,
        (in_if, partial): (IfIndex, Option<PartialChecksum>),
        frame: &[u8],
        counters: &mut Counters,
    ) -> Result<Held, DropReason> {
        self.expire(now_ms, counters);
        let id = DatagramId { src: meta.src, dst: meta.dst, proto: meta.proto, ident: meta.ident };
        let frame = frame.get(..ETHERNET_HEADER_LEN + meta.total_len).ok_or(DropReason::Ipv4TotalLength)?;
        if frame.len() > self.limits.slot_size {
            return Err(DropReason::FragmentPoolFull);
        }
        let range = byte_range(meta);
        let position = self.trains.iter().position(|t| t.id == id);
        if let Some(index) = position {
            if let Err(reason) = self.check(index, range, meta.more_fragments) {
                if reason == DropReason::FragmentOverlap {
                    self.discard(index, reason, counters);
                }
                return Err(reason);
            }
        } else if malformed(range, meta.more_fragments) {
            return Err(DropReason::FragmentOverlap);
        }
        self.make_room(id, counters)?;
        self.share_pool(id, counters)?;
        let position = self.trains.iter().position(|t| t.id == id);
        let slot = self.free.pop().ok_or(DropReason::FragmentPoolFull)?;
        self.store(slot, frame, in_if, range, partial);
        let index = match position {
            Some(index) => index,
            None => {
                let train = Train { id, head: NONE, fragments: 0, payload: 0, bytes: 0, total: None, expires_ms: 0 };
                self.trains.push(Train { expires_ms: now_ms.saturating_add(FRAGMENT_MS), ..train });
                self.trains.len() - 1
            }
        };
        self.link(index, slot, frame.len() as u32, (!meta.more_fragments).then_some(range.1));
        Ok(self.completed(index, slot))
    }

    /// Where a held fragment is, and the one after it.
    pub fn held(&self, slot: u16) -> Option<HeldFrame> {
        let meta = self.slots.get(usize::from(slot))?;
        let start = usize::from(slot) * self.limits.slot_size;
        let next = (meta.next != NONE).then_some(meta.next);
        Some(HeldFrame { range: start..start + usize::from(meta.len), in_if: meta.in_if, next })
    }

    /// Lends the pool, so that the data plane can send held frames while
    /// it updates its other tables; give it back with `restore_pool`.
    pub fn take_pool(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.pool)
    }

    /// Gives the pool back after `take_pool`.
    pub fn restore_pool(&mut self, pool: Vec<u8>) {
        self.pool = pool;
    }

    /// Frees the slots of a datagram that was released or dropped.
    pub fn finish(&mut self, done: &Complete) {
        self.free_chain(done.head, None);
    }

    /// Drops the trains older than 30 s, counting their fragments; returns
    /// the time the next one expires, if any.
    pub fn expire(&mut self, now_ms: u64, counters: &mut Counters) -> Option<u64> {
        while let Some(index) = self.trains.iter().position(|t| t.expires_ms <= now_ms) {
            self.timeouts += 1;
            self.discard(index, DropReason::FragmentTimeout, counters);
        }
        self.trains.iter().map(|t| t.expires_ms).min()
    }

    /// Checks a fragment against its train: `FragmentDuplicate` keeps the
    /// train, `FragmentOverlap` drops it (Linux `ip_frag_queue`).
    fn check(&self, index: usize, (start, end): (u32, u32), more: bool) -> Result<(), DropReason> {
        let train = self.trains.get(index).ok_or(DropReason::FragmentOverlap)?;
        let inconsistent = match (more, train.total) {
            _ if malformed((start, end), more) => true,
            (true, Some(total)) => end > total,
            (false, Some(total)) => end != total,
            (false, None) => end < self.max_end(train.head),
            (true, None) => false,
        };
        if inconsistent {
            return Err(DropReason::FragmentOverlap);
        }
        let mut cursor = train.head;
        while let Some(slot) = self.slots.get(usize::from(cursor)) {
            if slot.start == start && slot.end == end {
                return Err(DropReason::FragmentDuplicate);
            }
            if start < slot.end && slot.start < end {
                return Err(DropReason::FragmentOverlap);
            }
            cursor = slot.next;
        }
        Ok(())
    }

    /// Highest end held in a chain (the last slot's, as chains are sorted).
    fn max_end(&self, head: u16) -> u32 {
        let mut cursor = head;
        let mut end = 0;
        while let Some(slot) = self.slots.get(usize::from(cursor)) {
            end = slot.end;
            cursor = slot.next;
        }
        end
    }

    /// Keeps the source of `id` within its share of the pool, evicting its
    /// oldest other train, or dropping `id`'s train if it alone is too large.
    fn make_room(&mut self, id: DatagramId, counters: &mut Counters) -> Result<(), DropReason> {
        while self.held_by(id.src) >= self.limits.per_source {
            if !self.evict_oldest_of(id.src, id, counters) {
                if let Some(index) = self.trains.iter().position(|t| t.id == id) {
                    self.discard(index, DropReason::FragmentSourceLimit, counters);
                }
                return Err(DropReason::FragmentSourceLimit);
            }
        }
        Ok(())
    }

    /// When the pool is full, the source holding the most fragments gives
    /// up its oldest train (not `id`'s) if it holds at least as many as
    /// the source of `id`: so a busy source recycles its own memory, and
    /// many sources share the pool rather than the first ones keeping it.
    fn share_pool(&mut self, id: DatagramId, counters: &mut Counters) -> Result<(), DropReason> {
        while self.free.is_empty() {
            let largest = self.trains.iter().map(|t| (self.held_by(t.id.src), t.id.src)).max();
            let Some((held, src)) = largest else { break };
            let fair = held > self.held_by(id.src) || src == id.src;
            if !(fair && self.evict_oldest_of(src, id, counters)) {
                return Err(DropReason::FragmentPoolFull);
            }
        }
        Ok(())
    }

    /// Fragments held for source `src`.
    fn held_by(&self, src: u32) -> usize {
        self.trains.iter().filter(|t| t.id.src == src).map(|t| usize::from(t.fragments)).sum()
    }

    /// Evicts the oldest train of `src` other than `keep`; false if none.
    fn evict_oldest_of(&mut self, src: u32, keep: DatagramId, counters: &mut Counters) -> bool {
        let oldest = self.trains.iter().enumerate().filter(|(_, t)| t.id.src == src && t.id != keep);
        let Some(victim) = oldest.min_by_key(|(_, t)| t.expires_ms).map(|(index, _)| index) else {
            return false;
        };
        self.evictions += 1;
        self.discard(victim, DropReason::FragmentEvicted, counters);
        true
    }

    /// Copies a frame into `slot`.
    fn store(&mut self, slot: u16, frame: &[u8], in_if: IfIndex, range: (u32, u32), partial: Option<PartialChecksum>) {
        let start = usize::from(slot) * self.limits.slot_size;
        if let Some(bytes) = self.pool.get_mut(start..start + frame.len()) {
            bytes.copy_from_slice(frame);
            if let Some(PartialChecksum { start, offset }) = partial {
                complete_partial(bytes, start, offset);
            }
        }
        if let Some(meta) = self.slots.get_mut(usize::from(slot)) {
            *meta = Slot { len: frame.len() as u16, in_if, start: range.0, end: range.1, next: NONE };
        }
        self.held_bytes += frame.len();
    }

    /// Inserts `slot` into train `index`'s chain, sorted by offset.
    fn link(&mut self, index: usize, slot: u16, bytes: u32, total: Option<u32>) {
        let Some(train) = self.trains.get_mut(index) else { return };
        let Some(start) = self.slots.get(usize::from(slot)).map(|s| s.start) else { return };
        let mut previous = NONE;
        let mut cursor = train.head;
        while let Some(held) = self.slots.get(usize::from(cursor)) {
            if held.start > start {
                break;
            }
            previous = cursor;
            cursor = held.next;
        }
        if let Some(new) = self.slots.get_mut(usize::from(slot)) {
            new.next = cursor;
            train.payload += new.end - new.start;
        }
        match self.slots.get_mut(usize::from(previous)) {
            Some(before) => before.next = slot,
            None => train.head = slot,
        }
        train.fragments += 1;
        train.bytes += bytes;
        train.total = train.total.or(total);
    }

    /// Takes train `index` out of the table if it is whole.
    fn completed(&mut self, index: usize, current: u16) -> Held {
        match self.trains.get(index) {
            Some(train) if train.total == Some(train.payload) => {
                let done = Complete { head: train.head, current, payload_len: train.payload };
                self.trains.swap_remove(index);
                Held::Complete(done)
            }
            _ => Held::Waiting,
        }
    }

    /// Drops train `index`, counting each fragment under `reason`.
    fn discard(&mut self, index: usize, reason: DropReason, counters: &mut Counters) {
        if index < self.trains.len() {
            let train = self.trains.swap_remove(index);
            self.free_chain(train.head, Some((reason, counters)));
        }
    }

    /// Returns a chain's slots to the free list, counting them if asked.
    fn free_chain(&mut self, head: u16, mut count: Option<(DropReason, &mut Counters)>) {
        let mut cursor = head;
        while let Some(slot) = self.slots.get_mut(usize::from(cursor)) {
            if let Some((reason, counters)) = count.as_mut() {
                counters.count_drop(slot.in_if, *reason);
            }
            self.held_bytes = self.held_bytes.saturating_sub(usize::from(slot.len));
            self.free.push(cursor);
            cursor = core::mem::replace(&mut slot.next, NONE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::proto;
    use crate::net::parse::{Ports, L4};

    /// A UDP fragment from `src` carrying payload bytes `[start, start + len)`.
    fn fragment(src: u32, start: u16, len: usize, more: bool) -> (Ipv4Meta, alloc::vec::Vec<u8>) {
        let l4 = if start == 0 { L4::Udp { ports: Ports { src: 1, dst: 2 } } } else { L4::LaterFragment };
        let meta = Ipv4Meta {
            header_len: 20,
            total_len: 20 + len,
            src,
            dst: 2,
            proto: proto::UDP,
            ttl: 64,
            ident: 9,
            frag_offset: start / 8,
            more_fragments: more,
            l4,
        };
        (meta, vec![0; ETHERNET_HEADER_LEN + 20 + len])
    }

    fn hold(
        table: &mut FragmentTable,
        now: u64,
        (meta, frame): (Ipv4Meta, alloc::vec::Vec<u8>),
    ) -> Result<Held, DropReason> {
        table.hold(now, &meta, (0, None), &frame, &mut Counters::new(1, 0))
    }

    #[test]
    fn chains_are_sorted_and_complete_in_any_order() {
        let mut table = FragmentTable::new(FragmentLimits::default());
        assert_eq!(hold(&mut table, 0, fragment(1, 16, 4, false)), Ok(Held::Waiting));
        assert_eq!(hold(&mut table, 0, fragment(1, 0, 8, true)), Ok(Held::Waiting));
        assert_eq!(hold(&mut table, 0, fragment(1, 0, 8, true)), Err(DropReason::FragmentDuplicate));
        let Ok(Held::Complete(done)) = hold(&mut table, 0, fragment(1, 8, 8, true)) else { panic!("whole") };
        assert_eq!(done.payload_len, 20);
        let mut offsets = alloc::vec::Vec::new();
        let mut next = Some(done.head);
        while let Some(held) = next.and_then(|slot| table.held(slot)) {
            offsets.push(table.slots[usize::from(next.unwrap())].start);
            next = held.next;
        }
        assert_eq!(offsets, [0, 8, 16]);
        assert_eq!(table.held_fragments(), 3, "held until finished");
        table.finish(&done);
        assert_eq!((table.held_fragments(), table.held_bytes(), table.len()), (0, 0, 0));
    }

    #[test]
    fn inconsistent_trains_are_dropped_whole() {
        let mut table = FragmentTable::new(FragmentLimits::default());
        hold(&mut table, 0, fragment(1, 0, 16, true)).unwrap();
        assert_eq!(hold(&mut table, 0, fragment(1, 8, 16, true)), Err(DropReason::FragmentOverlap));
        assert!(table.is_empty());
        hold(&mut table, 0, fragment(1, 16, 8, false)).unwrap();
        assert_eq!(hold(&mut table, 0, fragment(1, 0, 32, true)), Err(DropReason::FragmentOverlap), "past the end");
        hold(&mut table, 0, fragment(1, 16, 8, false)).unwrap();
        assert_eq!(hold(&mut table, 0, fragment(1, 8, 4, false)), Err(DropReason::FragmentOverlap), "end moved");
        assert_eq!(hold(&mut table, 0, fragment(1, 8, 0, true)), Err(DropReason::FragmentOverlap), "empty");
        assert_eq!(table.held_fragments(), 0);
    }

    #[test]
    fn sources_are_bounded_and_trains_expire() {
        let limits = FragmentLimits { slots: 8, slot_size: 1518, per_source: 3 };
        let mut table = FragmentTable::new(limits);
        hold(&mut table, 0, fragment(2, 0, 8, true)).unwrap();
        for ident in 0..10u16 {
            let (mut meta, frame) = fragment(1, 0, 8, true);
            meta.ident = ident;
            hold(&mut table, u64::from(ident), (meta, frame)).unwrap();
        }
        assert_eq!((table.len(), table.evictions()), (4, 7), "source 1 keeps 3, source 2 its one");
        assert_eq!(table.expire(FRAGMENT_MS, &mut Counters::new(1, 0)), Some(FRAGMENT_MS + 7));
        assert_eq!((table.len(), table.timeouts()), (3, 1));
        table.expire(u64::MAX, &mut Counters::new(1, 0));
        assert_eq!((table.len(), table.held_bytes()), (0, 0));
    }
}
