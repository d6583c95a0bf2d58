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
use super::mtu::{dont_fragment, DEFAULT_MTU};
use super::nat::{rewrite_packet, Rewrite};
use super::nat_path::NatView;
use super::options::{self, Ipv4Options};
use super::parse::{parse_ethernet, parse_ipv4, parse_transport, Ipv4Meta, ETHERNET_HEADER_LEN, L4};
use super::reply::IcmpError;
use super::route::NextHop;
use super::sink::FrameSink;
use super::split::Offload;
use crate::flow::{Chain, IfIndex};

/// Bytes of a datagram's start read when its first fragment cuts the
/// transport header: a TCP header with options (60), or an ICMP error's
/// type, code, quoted IPv4 header with options and 8 bytes (8 + 60 + 8).
const DATAGRAM_HEAD: usize = 76;

/// Where an accepted datagram's fragments go.
enum Egress {
    /// To a routed next hop, with the TTL they leave with and the
    /// translation of their flow, if any.
    Routed((NextHop, u8), Option<Rewrite>),
    /// Unchanged out of this wire peer.
    Wire(IfIndex),
}

impl Dataplane {
    /// The FORWARD path of a fragment: held (`Queued`, the buffer is free)
    /// until its datagram is whole, then the datagram is judged and its
    /// fragments are sent through `out` (each cut again if it is larger
    /// than the output MTU).
    /// `wire`: the packet arrived on a wire side whose peer this is; the
    /// datagram is then judged and its fragments sent as the wire sends
    /// (wire.rs): no route, no TTL, unchanged.
    pub(super) fn forward_fragment<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &mut Packet<'_>,
        wire: Option<IfIndex>,
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
        if classifier.searches_packets() {
            self.whole_of = self.copy_whole(&done, &pool);
        }
        let judged = match wire {
            Some(peer) => {
                self.judge_wire_datagram(now_ms, &done, &mut pool, peer, classifier, out).map(|()| Egress::Wire(peer))
            }
            None => self.judge_datagram(now_ms, &done, &mut pool, classifier, out).map(|(h, r)| Egress::Routed(h, r)),
        };
        self.whole_of = (0, 0);
        let disposition = match judged {
            Ok(Egress::Routed(hop_ttl, rewrite)) => {
                self.send_held(now_ms, &done, &mut pool, (hop_ttl, rewrite), out);
                Disposition::Queued
            }
            Ok(Egress::Wire(peer)) => {
                self.send_held_to_wire(&done, &pool, peer, out);
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
    /// fragment, as `forward_tracked` judges a packet (with NAT rules, nat
    /// PREROUTING and POSTROUTING around them): the next hop, the TTL its
    /// fragments leave with and the flow's rewrite (every fragment follows
    /// it), or why it is dropped (ICMP errors and RSTs already sent).
    fn judge_datagram<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        done: &Complete,
        pool: &mut [u8],
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Result<((NextHop, u8), Option<Rewrite>), DropReason> {
        let packet = self.datagram_packet(done, pool)?;
        let meta = packet.meta;
        let nat = self.conntrack.translates();
        let mut tracked = self.track_raw(now_ms, &packet, classifier)?;
        if nat {
            self.nat_prerouting(now_ms, &packet, &mut tracked, classifier)?;
            let translated = tracked.rewrite().is_some() || tracked.error_rewrite().is_some();
            if !translated && self.is_own_address(meta.dst) {
                // To the firewall itself (ipv4() sends it here only with NAT).
                return Err(DropReason::FragmentToLocal);
            }
        }
        let view = NatView::of(&meta, &tracked);
        let Some(hop) = self.routes.lookup(view.dst) else {
            self.send_icmp_error(now_ms, &packet, IcmpError::NET_UNREACHABLE, classifier, out);
            return Err(DropReason::NoRoute);
        };
        if meta.ttl <= 1 {
            self.send_icmp_error(now_ms, &packet, IcmpError::TTL_EXCEEDED, classifier, out);
            return Err(DropReason::TtlExpired);
        }
        let mtu = self.interfaces.get(usize::from(hop.out_if)).map_or(DEFAULT_MTU, |i| i.mtu);
        if dont_fragment(packet.frame.get(ETHERNET_HEADER_LEN..).unwrap_or(&[]))
            && self.largest_fragment(done) > usize::from(mtu)
        {
            // Linux's ip_forward: DF and a fragment over the MTU.
            self.send_icmp_error_limited(
                now_ms,
                &packet,
                IcmpError::fragmentation_needed(mtu),
                (false, classifier),
                out,
            );
            return Err(DropReason::FragmentationNeeded);
        }
        if let Err(action) = self.classify_tracked(now_ms, &packet, &tracked, (Chain::Forward, hop.out_if), classifier)
        {
            return match self.refuse(now_ms, &packet, action, classifier, out) {
                Disposition::Drop(reason) => Err(reason),
                _ => Err(DropReason::RuleDrop),
            };
        }
        if nat {
            self.nat_postrouting(now_ms, &packet, &mut tracked, hop.out_if, classifier)?;
            if tracked.error_rewrite().is_some() {
                // A fragmented ICMP error: its checksum spans fragments.
                return Err(DropReason::NatRewrite);
            }
        }
        self.conntrack.confirm(&tracked, now_ms).map_err(|_| DropReason::ConntrackFull)?;
        Ok(((hop, meta.ttl - 1), tracked.rewrite()))
    }

    /// The whole datagram as the rules see it: its first fragment's frame
    /// with the datagram's transport header and length.
    fn datagram_packet<'p>(&self, done: &Complete, pool: &'p mut [u8]) -> Result<Packet<'p>, DropReason> {
        let first = self.fragments.held(done.head).ok_or(DropReason::FragmentOverlap)?;
        let frame = pool.get(first.range.clone()).ok_or(DropReason::FragmentOverlap)?;
        let eth = parse_ethernet(frame)?;
        let mut meta = frame.get(ETHERNET_HEADER_LEN..).map(parse_ipv4).ok_or(DropReason::Ipv4Truncated)??;
        let mut parsed = meta.total_len.saturating_sub(meta.header_len) as u32;
        if meta.l4 == L4::LaterFragment {
            // The first fragment cuts the transport header: read it from
            // the datagram's first bytes, across fragments.
            let mut head = [0u8; DATAGRAM_HEAD];
            let len = self.datagram_head(done, pool, &mut head);
            parse_transport(&mut meta, head.get(..len).unwrap_or(&[]))?;
            parsed = len as u32;
        }
        let meta = datagram_meta(meta, done.payload_len, parsed);
        let frame = pool.get_mut(first.range).ok_or(DropReason::FragmentOverlap)?;
        let (offload, options) = (Offload::default(), Ipv4Options::default());
        Ok(Packet { in_if: first.in_if, offload, frame, eth, meta, options })
    }

    /// The FORWARD chain for a whole datagram that arrived on a wire side
    /// (no route, no TTL): `Ok` to send its fragments to `peer` unchanged.
    /// A fragment larger than the peer's MTU drops the datagram, as the
    /// wire drops such a frame.
    fn judge_wire_datagram<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        done: &Complete,
        pool: &mut [u8],
        peer: IfIndex,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Result<(), DropReason> {
        let mtu = self.interfaces.get(usize::from(peer)).map_or(0, |i| usize::from(i.mtu));
        if self.largest_fragment(done) > mtu {
            return Err(DropReason::WireOversize);
        }
        let packet = self.datagram_packet(done, pool)?;
        self.wire_verdict(now_ms, &packet, peer, classifier, out)
    }

    /// Sends every fragment of a datagram accepted on a wire side out of
    /// `peer`, in offset order and unchanged.
    fn send_held_to_wire(&mut self, done: &Complete, pool: &[u8], peer: IfIndex, out: &mut dyn FrameSink) {
        let mut next = Some(done.head);
        while let Some(held) = next.and_then(|slot| self.fragments.held(slot)) {
            next = held.next;
            let Some(frame) = pool.get(held.range) else { continue };
            let sent = out.send(peer, frame);
            self.counters.count_transmit(held.in_if, peer, frame.len(), sent);
            if let Some(counters) = self.counters.interface_mut(peer) {
                counters.forwarded_out += 1;
            }
        }
    }

    /// Sends every fragment of an accepted datagram, in offset order, as
    /// `transmit` sends a packet: TTL, MACs, neighbour resolution.
    fn send_held(
        &mut self,
        now_ms: u64,
        done: &Complete,
        pool: &mut [u8],
        ((hop, ttl), rewrite): ((NextHop, u8), Option<Rewrite>),
        out: &mut dyn FrameSink,
    ) {
        let Some(interface) = self.interfaces.get(usize::from(hop.out_if)) else {
            return self.count_held_drops_all(done, DropReason::UnknownInterface);
        };
        let (mac, mtu, out_addr) = (interface.mac, interface.mtu, interface.ip().unwrap_or(0));
        let mut next = Some(done.head);
        let mut first = true;
        while let Some(held) = next.and_then(|slot| self.fragments.held(slot)) {
            next = held.next;
            let Some(frame) = pool.get_mut(held.range) else { continue };
            if let Some(to) = rewrite {
                if let Err(reason) = rewrite_fragment(frame, to) {
                    self.counters.count_drop(held.in_if, reason);
                    continue;
                }
            }
            if core::mem::take(&mut first) {
                self.stamp_options(frame, out_addr, now_ms);
            }
            set_ttl(frame, ttl);
            if let Some(src) = frame.get_mut(6..12) {
                src.copy_from_slice(&mac);
            }
            // A fragment larger than the output MTU is cut again (its
            // offset and More Fragments kept), as Linux refragments.
            self.send_fragmented(now_ms, (held.in_if, hop, mtu), frame, out);
            if let Some(counters) = self.counters.interface_mut(hop.out_if) {
                counters.forwarded_out += 1;
            }
        }
    }

    /// Record route and timestamp options of a datagram's first fragment
    /// get the firewall's entry, as Linux's `ip_forward_options` gives them
    /// to the reassembled header before refragmenting (later fragments
    /// carry only copied options, which these are not).
    fn stamp_options(&self, frame: &mut [u8], out_addr: u32, now_ms: u64) {
        let Some(header_len) = frame.get(ETHERNET_HEADER_LEN).map(|b| usize::from(b & 0x0f) * 4) else { return };
        let Some(header) = frame.get_mut(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + header_len) else { return };
        if let Ok(found) = options::check(header) {
            let own = |addr: u32| self.interfaces.iter().any(|i| i.ip() == Some(addr));
            options::stamp(header, found, out_addr, now_ms, own);
        }
    }

    /// The largest fragment of a datagram, in IP bytes (Linux's
    /// `frag_max_size`, which its forwarding path compares to the MTU).
    fn largest_fragment(&self, done: &Complete) -> usize {
        let mut largest = 0;
        let mut next = Some(done.head);
        while let Some(held) = next.and_then(|slot| self.fragments.held(slot)) {
            largest = largest.max(held.range.len().saturating_sub(ETHERNET_HEADER_LEN));
            next = held.next;
        }
        largest
    }

    /// Copies the first bytes of a whole datagram's payload into `head`
    /// from its fragments (in offset order, contiguous, no overlaps: the
    /// table checked); returns how many.
    fn datagram_head(&self, done: &Complete, pool: &[u8], head: &mut [u8]) -> usize {
        let mut filled = 0;
        let mut next = Some(done.head);
        while let Some(held) = next.and_then(|slot| self.fragments.held(slot)) {
            next = held.next;
            let Some(packet) = pool.get(held.range).and_then(|f| f.get(ETHERNET_HEADER_LEN..)) else { break };
            let Ok(meta) = parse_ipv4(packet) else { break };
            let payload = packet.get(meta.header_len..meta.total_len).unwrap_or(&[]);
            let take = payload.len().min(head.len().saturating_sub(filled));
            if let (Some(to), Some(from)) = (head.get_mut(filled..filled + take), payload.get(..take)) {
                to.copy_from_slice(from);
            }
            filled += take;
            if filled == head.len() {
                break;
            }
        }
        filled
    }

    /// Copies a whole datagram into [`Dataplane::whole`] as Linux's
    /// `ip_frag_reasm` leaves it for the rules: the first fragment's header
    /// (total length the datagram's, no fragment offset or MF), then every
    /// fragment's payload in offset order. Returns its length (0 when it
    /// does not fit) and the address of the first fragment's frame in `pool`.
    fn copy_whole(&mut self, done: &Complete, pool: &[u8]) -> (usize, usize) {
        let Some(first) = self.fragments.held(done.head) else { return (0, 0) };
        let at = pool.get(first.range.clone()).map_or(0, |f| f.as_ptr() as usize);
        let mut filled = 0;
        let mut next = Some(done.head);
        while let Some(held) = next.and_then(|slot| self.fragments.held(slot)) {
            next = held.next;
            let Some(packet) = pool.get(held.range).and_then(|f| f.get(ETHERNET_HEADER_LEN..)) else { return (0, 0) };
            let Ok(meta) = parse_ipv4(packet) else { return (0, 0) };
            let from = if filled == 0 { 0 } else { meta.header_len };
            let part = packet.get(from..meta.total_len).unwrap_or(&[]);
            let Some(to) = self.whole.get_mut(filled..filled + part.len()) else { return (0, 0) };
            to.copy_from_slice(part);
            filled += part.len();
        }
        let total = (filled as u16).to_be_bytes();
        if let Some(len) = self.whole.get_mut(2..4) {
            len.copy_from_slice(&total);
        }
        if let Some(flags) = self.whole.get_mut(6..8) {
            let df = flags.first().copied().unwrap_or(0) & 0x40;
            flags.copy_from_slice(&[df, 0]);
        }
        (filled, at)
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
/// `parsed` is how many payload bytes its transport header was parsed from.
fn datagram_meta(first: Ipv4Meta, payload_len: u32, parsed: u32) -> Ipv4Meta {
    let rest = payload_len.saturating_sub(parsed);
    let l4 = match first.l4 {
        L4::Tcp { ports, mut segment } => {
            segment.seq_len = segment.seq_len.saturating_add(rest);
            L4::Tcp { ports, segment }
        }
        other => other,
    };
    Ipv4Meta { more_fragments: false, frag_offset: 0, l4, ..first }
}

/// One fragment of a translated datagram: addresses in each, ports and
/// the transport checksum (which covers the whole datagram, so an
/// incremental update of it holds) in the first. A first fragment that
/// cuts its ports is dropped rather than sent half translated.
fn rewrite_fragment(frame: &mut [u8], to: Rewrite) -> Result<(), DropReason> {
    let ip = frame.get_mut(ETHERNET_HEADER_LEN..).ok_or(DropReason::NatRewrite)?;
    let meta = parse_ipv4(ip).map_err(|_| DropReason::NatRewrite)?;
    if meta.frag_offset == 0 && meta.l4 == L4::LaterFragment {
        return Err(DropReason::NatRewrite);
    }
    rewrite_packet(ip, &meta, to, false).map_err(|_| DropReason::NatRewrite)
}
