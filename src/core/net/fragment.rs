//! IP fragment policy: later fragments follow their first fragment's verdict.
//!
//! unifw forwards fragments without reassembling them. The policy, which
//! keeps connection tracking and rules consistent:
//! - The first fragment (offset 0, MF set) carries the transport header; it
//!   is tracked and classified like any packet. It must hold the whole
//!   transport header (TCP: 20 bytes + options, UDP and ICMP: 8), else it
//!   is dropped as a tiny fragment (RFC 1858, section 3.1); `parse` does that.
//! - Its verdict is stored in a bounded table keyed on (src, dst, proto, id)
//!   for 30 s (Linux `ipfrag_time`). Later fragments of an accepted datagram
//!   are forwarded without classification; those of a dropped or rejected
//!   one are dropped.
//! - A fragment overlapping bytes already seen poisons its datagram: it and
//!   all later ones are dropped (RFC 1858 section 4; RFC 5722 does the same
//!   for IPv6). A TCP fragment at offset 8 is always such an overlap attempt.
//! - Later fragments that arrive before their first fragment are dropped:
//!   holding them would need buffers per datagram, and Linux's own
//!   forwarding (which reassembles under conntrack) would not forward them
//!   before the first either. The sender's transport retransmits.
//! - When the table is full the entry closest to expiry is evicted.

use alloc::vec::Vec;

use super::conntrack::timeouts::FRAGMENT_MS;
use super::counters::DropReason;
use super::parse::Ipv4Meta;
use crate::flow::proto;

/// How many disjoint byte ranges of one datagram are remembered.
const MAX_RANGES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DatagramId {
    src: u32,
    dst: u32,
    proto: u8,
    ident: u16,
}

impl DatagramId {
    fn of(meta: &Ipv4Meta) -> DatagramId {
        DatagramId { src: meta.src, dst: meta.dst, proto: meta.proto, ident: meta.ident }
    }
}

#[derive(Debug, Clone)]
struct Datagram {
    id: DatagramId,
    /// Whether later fragments are forwarded.
    accepted: bool,
    /// Byte ranges seen, sorted and merged.
    ranges: [(u32, u32); MAX_RANGES],
    range_count: usize,
    /// End of the datagram, once the last fragment (MF clear) was seen.
    total: Option<u32>,
    expires_ms: u64,
}

/// Bounded table of datagrams whose first fragment was seen.
pub struct FragmentTable {
    datagrams: Vec<Datagram>,
    capacity: usize,
    evictions: u64,
}

/// Byte range `[start, end)` of the datagram a fragment carries.
fn byte_range(meta: &Ipv4Meta) -> (u32, u32) {
    let start = u32::from(meta.frag_offset) * 8;
    let len = meta.total_len.saturating_sub(meta.header_len) as u32;
    (start, start + len)
}

impl FragmentTable {
    /// A table for `capacity` datagrams (at least 1), allocated now.
    pub fn new(capacity: usize) -> FragmentTable {
        let capacity = capacity.max(1);
        FragmentTable { datagrams: Vec::with_capacity(capacity), capacity, evictions: 0 }
    }

    /// Datagrams currently tracked.
    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// Whether no datagram is tracked.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Entries evicted to make room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Checks a first fragment before classification: a second "first
    /// fragment" of a tracked datagram overlaps and poisons it.
    pub fn check_first(&mut self, meta: &Ipv4Meta, now_ms: u64) -> Result<(), DropReason> {
        self.expire(now_ms);
        match self.find(DatagramId::of(meta)) {
            Some(datagram) => {
                datagram.accepted = false;
                Err(DropReason::FragmentOverlap)
            }
            None => Ok(()),
        }
    }

    /// Records the verdict of a first fragment for the later ones.
    pub fn record_first(&mut self, meta: &Ipv4Meta, accepted: bool, now_ms: u64) {
        self.expire(now_ms);
        if self.datagrams.len() >= self.capacity {
            self.evict_oldest();
        }
        let mut ranges = [(0, 0); MAX_RANGES];
        ranges[0] = byte_range(meta);
        self.datagrams.push(Datagram {
            id: DatagramId::of(meta),
            accepted,
            ranges,
            range_count: 1,
            total: None,
            expires_ms: now_ms.saturating_add(FRAGMENT_MS),
        });
    }

    /// Decides a later fragment: `Ok` to forward it, or why it is dropped.
    pub fn check_later(&mut self, meta: &Ipv4Meta, now_ms: u64) -> Result<(), DropReason> {
        self.expire(now_ms);
        let position =
            self.datagrams.iter().position(|d| d.id == DatagramId::of(meta)).ok_or(DropReason::FragmentWithoutFirst)?;
        let datagram = self.datagrams.get_mut(position).ok_or(DropReason::FragmentWithoutFirst)?;
        if !datagram.accepted {
            return Err(DropReason::FragmentOfDropped);
        }
        let range = byte_range(meta);
        // RFC 1858: a TCP fragment at offset 8 can only rewrite the flags.
        let tcp_flag_rewrite = meta.proto == proto::TCP && meta.frag_offset == 1;
        if tcp_flag_rewrite || datagram.overlaps(range) {
            datagram.accepted = false;
            return Err(DropReason::FragmentOverlap);
        }
        if !datagram.insert(range) {
            datagram.accepted = false;
            return Err(DropReason::FragmentTooManyHoles);
        }
        if !meta.more_fragments {
            datagram.total = Some(range.1);
        }
        if datagram.complete() {
            self.datagrams.swap_remove(position);
        }
        Ok(())
    }

    fn find(&mut self, id: DatagramId) -> Option<&mut Datagram> {
        self.datagrams.iter_mut().find(|d| d.id == id)
    }

    fn expire(&mut self, now_ms: u64) {
        self.datagrams.retain(|d| d.expires_ms > now_ms);
    }

    fn evict_oldest(&mut self) {
        let oldest = self.datagrams.iter().enumerate().min_by_key(|(_, d)| d.expires_ms).map(|(index, _)| index);
        if let Some(index) = oldest {
            self.datagrams.swap_remove(index);
            self.evictions += 1;
        }
    }
}

impl Datagram {
    fn seen(&self) -> &[(u32, u32)] {
        self.ranges.get(..self.range_count).unwrap_or(&[])
    }

    fn overlaps(&self, (start, end): (u32, u32)) -> bool {
        let past_total = matches!(self.total, Some(total) if end > total);
        past_total || self.seen().iter().any(|&(s, e)| start < e && s < end)
    }

    /// Adds a non-overlapping range, merging neighbours; false when out of room.
    fn insert(&mut self, range: (u32, u32)) -> bool {
        let mut merged = range;
        let mut kept = [(0, 0); MAX_RANGES];
        let mut count = 0;
        for &(s, e) in self.seen() {
            if e == merged.0 || s == merged.1 {
                merged = (merged.0.min(s), merged.1.max(e));
            } else if let Some(slot) = kept.get_mut(count) {
                *slot = (s, e);
                count += 1;
            }
        }
        let Some(slot) = kept.get_mut(count) else {
            return false;
        };
        *slot = merged;
        count += 1;
        if let Some(used) = kept.get_mut(..count) {
            used.sort_unstable();
        }
        self.ranges = kept;
        self.range_count = count;
        true
    }

    fn complete(&self) -> bool {
        matches!((self.total, self.seen()), (Some(total), [(0, end)]) if *end == total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::parse::{Ports, L4};

    fn fragment(offset_bytes: u16, len: usize, more: bool) -> Ipv4Meta {
        Ipv4Meta {
            header_len: 20,
            total_len: 20 + len,
            src: 1,
            dst: 2,
            proto: proto::UDP,
            ttl: 64,
            ident: 9,
            frag_offset: offset_bytes / 8,
            more_fragments: more,
            l4: if offset_bytes == 0 { L4::Udp { ports: Ports { src: 1, dst: 2 } } } else { L4::LaterFragment },
        }
    }

    #[test]
    fn out_of_order_later_fragments_merge_and_complete() {
        let mut table = FragmentTable::new(4);
        table.record_first(&fragment(0, 504, true), true, 0);
        assert_eq!(table.check_later(&fragment(1512, 100, false), 1), Ok(()));
        assert_eq!(table.check_later(&fragment(504, 504, true), 1), Ok(()));
        assert_eq!(table.len(), 1, "hole at [1008, 1512)");
        assert_eq!(table.check_later(&fragment(1008, 504, true), 1), Ok(()));
        assert!(table.is_empty(), "complete");
    }

    #[test]
    fn beyond_the_last_fragment_is_an_overlap() {
        let mut table = FragmentTable::new(4);
        table.record_first(&fragment(0, 504, true), true, 0);
        assert_eq!(table.check_later(&fragment(1008, 8, false), 0), Ok(()));
        assert_eq!(table.check_later(&fragment(1016, 8, true), 0), Err(DropReason::FragmentOverlap));
        assert_eq!(table.check_later(&fragment(504, 8, true), 0), Err(DropReason::FragmentOfDropped));
    }

    #[test]
    fn too_many_holes_and_expiry() {
        let mut table = FragmentTable::new(4);
        table.record_first(&fragment(0, 8, true), true, 0);
        for hole in 1..MAX_RANGES as u16 {
            assert_eq!(table.check_later(&fragment(hole * 16, 8, true), 0), Ok(()));
        }
        let last = MAX_RANGES as u16 * 16;
        assert_eq!(table.check_later(&fragment(last, 8, true), 0), Err(DropReason::FragmentTooManyHoles));
        assert_eq!(table.check_later(&fragment(8, 8, true), FRAGMENT_MS), Err(DropReason::FragmentWithoutFirst));
        assert!(table.is_empty());
    }
}
