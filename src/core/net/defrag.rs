//! Forwarding a fragmented datagram: its fragments are held until it is
//! whole (fragment.rs), then it is judged once and every fragment follows.
//!
//! As Linux, which reassembles before conntrack (`nf_defrag_ipv4`) and
//! routes, checks the TTL of, and judges the reassembled datagram: the key
//! is built from the first fragment's header (ports, ICMP type) and the
//! whole datagram's length (a TCP segment's sequence length), conntrack and
//! the FORWARD chain see it once, and the verdict applies to every
//! fragment. Accepted fragments leave in offset order, unchanged but for
//! TTL (the first fragment's, minus one, as Linux refragments with the
//! reassembled header), checksum and MACs. Refused: the fragment that
//! completed the datagram counts under the refusal's reason (`rule_drop`,
//! `no_route`, ...), the others as `fragment_of_dropped`.

use super::counters::DropReason;
use super::dataplane::{Classifier, Dataplane, Disposition};
use super::forward::{set_ttl, Packet};
use super::fragment::{Complete, Held};
use super::neighbour::Resolution;
use super::options::Ipv4Options;
use super::parse::{parse_ethernet, parse_ipv4, Ipv4Meta, ETHERNET_HEADER_LEN, L4};
use super::reply::IcmpError;
use super::route::NextHop;
use super::sink::FrameSink;
use super::split::Offload;
use crate::flow::Chain;

impl Dataplane {
    /// The FORWARD path of a fragment: held (`Queued`, the buffer is free)
    /// until its datagram is whole, then the datagram is judged and its
    /// fragments are sent through `out`. Later MTU work can split each
    /// held fragment in `send_held`.
    pub(super) fn forward_fragment<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: Packet<'_>,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Disposition {
        let held = self.fragments.hold(
            now_ms,
            &packet.meta,
            (packet.in_if, packet.offload.partial),
            packet.frame,
            &mut self.counters,
        );
        let done = match held {
            Ok(Held::Waiting) => return Disposition::Queued,
            Ok(Held::Complete(done)) => done,
            Err(reason) => return Disposition::Drop(reason),
        };
        let mut pool = self.fragments.take_pool();
        let disposition = match self.judge_datagram(now_ms, &done, &mut pool, classifier, out) {
            Ok((hop, ttl)) => {
                self.send_held(now_ms, &done, &mut pool, (hop, ttl), out);
                Disposition::Queued
            }
            Err(reason) => {
                self.count_held_drops(&done);
                Disposition::Drop(reason)
            }
        };
        self.fragments.restore_pool(pool);
        self.fragments.finish(&done);
        disposition
    }

    /// Route, TTL and FORWARD chain for a whole datagram, from its first
    /// fragment: the next hop and the TTL its fragments leave with, or why
    /// it is dropped (ICMP errors and RSTs already sent).
    fn judge_datagram<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        done: &Complete,
        pool: &mut [u8],
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Result<(NextHop, u8), DropReason> {
        let first = self.fragments.held(done.head).ok_or(DropReason::FragmentOverlap)?;
        let frame = pool.get_mut(first.range).ok_or(DropReason::FragmentOverlap)?;
        let eth = parse_ethernet(frame)?;
        let meta = frame.get(ETHERNET_HEADER_LEN..).map(parse_ipv4).ok_or(DropReason::Ipv4Truncated)??;
        let meta = datagram_meta(meta, done.payload_len);
        let (offload, options) = (Offload::default(), Ipv4Options::default());
        let packet = Packet { in_if: first.in_if, offload, frame, eth, meta, options };
        let Some(hop) = self.routes.lookup(meta.dst) else {
            self.send_icmp_error(now_ms, &packet, IcmpError::NET_UNREACHABLE, out);
            return Err(DropReason::NoRoute);
        };
        if meta.ttl <= 1 {
            self.send_icmp_error(now_ms, &packet, IcmpError::TTL_EXCEEDED, out);
            return Err(DropReason::TtlExpired);
        }
        if let Err(action) = self.judge(now_ms, &packet, Chain::Forward, hop.out_if, classifier) {
            return match self.refuse(now_ms, &packet, action, out) {
                Disposition::Drop(reason) => Err(reason),
                _ => Err(DropReason::RuleDrop),
            };
        }
        Ok((hop, meta.ttl - 1))
    }

    /// Sends every fragment of an accepted datagram, in offset order, as
    /// `transmit` sends a packet: TTL, MACs, neighbour resolution.
    fn send_held(
        &mut self,
        now_ms: u64,
        done: &Complete,
        pool: &mut [u8],
        (hop, ttl): (NextHop, u8),
        out: &mut dyn FrameSink,
    ) {
        let Some(mac) = self.interfaces.get(usize::from(hop.out_if)).map(|i| i.mac) else {
            return self.count_held_drops_all(done, DropReason::UnknownInterface);
        };
        let mut next = Some(done.head);
        while let Some(held) = next.and_then(|slot| self.fragments.held(slot)) {
            next = held.next;
            let Some(frame) = pool.get_mut(held.range) else { continue };
            set_ttl(frame, ttl);
            if let Some(src) = frame.get_mut(6..12) {
                src.copy_from_slice(&mac);
            }
            let who = (held.in_if, hop.out_if, hop.addr);
            let resolved =
                self.neighbours.resolve(now_ms, who, (&*frame, None), &self.interfaces, &mut self.counters, out);
            match resolved {
                Ok(Resolution::Mac(next_mac)) => {
                    if let Some(dst) = frame.get_mut(..6) {
                        dst.copy_from_slice(&next_mac);
                    }
                    let result = out.send(hop.out_if, frame);
                    self.counters.count_transmit(held.in_if, hop.out_if, frame.len(), result);
                }
                Ok(Resolution::Queued) => {}
                Err(reason) => {
                    self.counters.count_drop(held.in_if, reason);
                    continue;
                }
            }
            if let Some(counters) = self.counters.interface_mut(hop.out_if) {
                counters.forwarded_out += 1;
            }
        }
    }

    /// Counts the held fragments of a refused datagram, but the current
    /// one (the caller counts it under the refusal's reason).
    fn count_held_drops(&mut self, done: &Complete) {
        let mut next = Some(done.head);
        while let Some(slot) = next {
            let Some(held) = self.fragments.held(slot) else { break };
            if slot != done.current {
                self.counters.count_drop(held.in_if, DropReason::FragmentOfDropped);
            }
            next = held.next;
        }
    }

    /// Counts every fragment of a datagram as dropped for `reason`.
    fn count_held_drops_all(&mut self, done: &Complete, reason: DropReason) {
        let mut next = Some(done.head);
        while let Some(held) = next.and_then(|slot| self.fragments.held(slot)) {
            self.counters.count_drop(held.in_if, reason);
            next = held.next;
        }
    }
}

/// The whole datagram's view of its first fragment: not a fragment, and a
/// TCP segment as long as the datagram (`total_len` stays the fragment's,
/// which is what its frame holds, for the quote of an ICMP error).
fn datagram_meta(first: Ipv4Meta, payload_len: u32) -> Ipv4Meta {
    let first_len = first.total_len.saturating_sub(first.header_len) as u32;
    let rest = payload_len.saturating_sub(first_len);
    let l4 = match first.l4 {
        L4::Tcp { ports, mut segment } => {
            segment.seq_len = segment.seq_len.saturating_add(rest);
            L4::Tcp { ports, segment }
        }
        other => other,
    };
    Ipv4Meta { more_fragments: false, frag_offset: 0, l4, ..first }
}
