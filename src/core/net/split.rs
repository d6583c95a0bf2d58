//! The output MTU on the forwarding path: which packets it refuses (Don't
//! Fragment set: ICMP "fragmentation needed"), and the software split of
//! the others into pieces that fit (TCP segmentation of an offloaded
//! segment, then IPv4 fragmentation), each resolved and sent on its own.
//!
//! As Linux (`ip_forward` → `ip_exceeds_mtu`, `ip_finish_output_gso`): a
//! TCP segmentation offload is judged by its segment size, not its length.

use alloc::vec;
use alloc::vec::Vec;

use super::checksum::{complete_partial, PartialChecksum};
use super::counters::DropReason;
use super::dataplane::{Dataplane, Disposition};
use super::mtu::{dont_fragment, Fragmenter, MAX_MTU};
use super::neighbour::Resolution;
use super::parse::{Ipv4Meta, ETHERNET_HEADER_LEN};
use super::route::NextHop;
use super::segment::Segmenter;
use super::sink::FrameSink;
use crate::flow::IfIndex;

/// Bytes of a piece's scratch buffer: an Ethernet frame of the largest MTU.
/// A segment needs room for its headers too (60 bytes of IP, 60 of TCP).
pub(super) const FRAGMENT_SCRATCH: usize = ETHERNET_HEADER_LEN + MAX_MTU as usize;
pub(super) const SEGMENT_SCRATCH: usize = FRAGMENT_SCRATCH + 120;

/// The preallocated buffers the split writes its pieces into.
pub(super) struct SplitScratch {
    segment: Vec<u8>,
    fragment: Vec<u8>,
}

impl SplitScratch {
    pub(super) fn new() -> SplitScratch {
        SplitScratch { segment: vec![0; SEGMENT_SCRATCH], fragment: vec![0; FRAGMENT_SCRATCH] }
    }
}

/// What a frame's sender left to the NIC (its virtio-net header): a
/// partial checksum, and the segment size of a TCP segmentation offload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offload {
    /// The transport checksum to complete, if partial.
    pub partial: Option<PartialChecksum>,
    /// `gso_size` of a TCP/IPv4 segmentation offload (`GSO_TCPV4`).
    pub segment_size: Option<u16>,
}

impl From<Option<PartialChecksum>> for Offload {
    fn from(partial: Option<PartialChecksum>) -> Offload {
        Offload { partial, segment_size: None }
    }
}

/// The IP length the MTU judges for the packet in `frame`: its total
/// length, or for a segmentation offload the length of its largest segment.
pub(super) fn judged_len(frame: &[u8], meta: &Ipv4Meta, segment_size: Option<u16>) -> usize {
    segment_size.and_then(|mss| Segmenter::new(frame, mss)).map_or(meta.total_len, |plan| plan.max_ip_len())
}

/// The output MTU when the packet in `frame` exceeds it with Don't
/// Fragment set (it is refused with "fragmentation needed").
pub(super) fn refused_by_mtu(frame: &[u8], meta: &Ipv4Meta, segment_size: Option<u16>, mtu: u16) -> Option<u16> {
    let ip = frame.get(ETHERNET_HEADER_LEN..)?;
    (dont_fragment(ip) && judged_len(frame, meta, segment_size) > usize::from(mtu)).then_some(mtu)
}

impl Dataplane {
    /// Whether the packet in `frame` (headers rewritten) leaves in pieces:
    /// larger than `mtu`, or a segmentation offload whose next hop is not
    /// resolved (the neighbour queue holds frames, not offloads).
    pub(super) fn must_split(&self, frame: &[u8], meta: &Ipv4Meta, offload: Offload, hop: NextHop, mtu: u16) -> bool {
        let too_large = judged_len(frame, meta, offload.segment_size) > usize::from(mtu);
        let offloaded = offload.segment_size.is_some() && Segmenter::new(frame, 1).is_some();
        too_large || (offloaded && self.neighbours.lookup(hop.out_if, hop.addr).is_none())
    }

    /// Sends the packet in `frame` (headers rewritten, TTL decremented) in
    /// pieces: segments of its offload, each cut into fragments of at most
    /// `mtu`. The buffer is free afterwards; each piece is counted as sent
    /// on `hop.out_if` or dropped on `in_if`.
    pub(super) fn transmit_split(
        &mut self,
        now_ms: u64,
        (in_if, hop, mtu): (IfIndex, NextHop, u16),
        frame: &mut [u8],
        offload: Offload,
        out: &mut dyn FrameSink,
    ) -> Disposition {
        let plan = offload.segment_size.and_then(|mss| Segmenter::new(frame, mss));
        let Some(plan) = plan else {
            if let Some(PartialChecksum { start, offset }) = offload.partial {
                complete_partial(frame, start, offset);
            }
            self.send_fragmented(now_ms, (in_if, hop, mtu), frame, out);
            return Disposition::Queued;
        };
        // Taken out (no allocation) so that `self` stays free to borrow.
        let mut segment = core::mem::take(&mut self.split.segment);
        for index in 0..plan.count() {
            match plan.write(frame, index, &mut segment).and_then(|len| segment.get_mut(..len)) {
                Some(piece) => self.send_fragmented(now_ms, (in_if, hop, mtu), piece, out),
                None => self.counters.count_drop(in_if, DropReason::TransmitTooLarge),
            }
        }
        self.split.segment = segment;
        Disposition::Queued
    }

    /// Sends `frame` whole if it fits `mtu`, else as IPv4 fragments.
    pub(super) fn send_fragmented(
        &mut self,
        now_ms: u64,
        (in_if, hop, mtu): (IfIndex, NextHop, u16),
        frame: &mut [u8],
        out: &mut dyn FrameSink,
    ) {
        if frame.len() <= ETHERNET_HEADER_LEN + usize::from(mtu) {
            return self.send_piece(now_ms, (in_if, hop), frame, out);
        }
        let (Some(eth), Some(ip)) = (frame.get(..ETHERNET_HEADER_LEN), frame.get(ETHERNET_HEADER_LEN..)) else {
            return;
        };
        let Some(plan) = Fragmenter::new(ip, mtu) else {
            return self.counters.count_drop(in_if, DropReason::TransmitTooLarge);
        };
        let mut scratch = core::mem::take(&mut self.split.fragment);
        for index in 0..plan.count() {
            let written = scratch.split_at_mut_checked(ETHERNET_HEADER_LEN).and_then(|(head, rest)| {
                head.copy_from_slice(eth);
                plan.write(ip, index, rest)
            });
            match written.and_then(|len| scratch.get_mut(..ETHERNET_HEADER_LEN + len)) {
                Some(piece) => self.send_piece(now_ms, (in_if, hop), piece, out),
                None => self.counters.count_drop(in_if, DropReason::TransmitTooLarge),
            }
        }
        self.split.fragment = scratch;
    }

    /// Resolves the next hop for one piece and sends it (or queues it).
    fn send_piece(&mut self, now_ms: u64, (in_if, hop): (IfIndex, NextHop), piece: &mut [u8], out: &mut dyn FrameSink) {
        let who = (in_if, hop.out_if, hop.addr);
        let resolved = self.neighbours.resolve(now_ms, who, (piece, None), &self.interfaces, &mut self.counters, out);
        match resolved {
            Ok(Resolution::Mac(mac)) => {
                if let Some(dst) = piece.get_mut(..6) {
                    dst.copy_from_slice(&mac);
                }
                let sent = out.send(hop.out_if, piece);
                self.counters.count_transmit(in_if, hop.out_if, piece.len(), sent);
            }
            Ok(Resolution::Queued) => {}
            Err(reason) => self.counters.count_drop(in_if, reason),
        }
    }
}
