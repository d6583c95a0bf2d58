//! Bump-in-the-wire mode: two address-less interfaces paired, every frame
//! from one side judged by the FORWARD chain and sent out of the other
//! unchanged (no routing, no ARP, no TTL decrement, MACs kept), as a
//! service function in a chain (networking-sfc) or a filtering bridge.
//!
//! What passes, as a Linux bridge with `br_netfilter` would: ARP unchanged
//! (the chain's endpoints resolve each other through it); IPv4 judged with
//! connection tracking. Other EtherTypes are dropped (`ether_type`): the
//! rules judge IPv4 only, so passing IPv6 or tagged frames would let them
//! round the firewall. Fragments are held until their datagram is whole,
//! judged once and sent to the peer unchanged (defrag.rs), as in routed
//! mode. A frame
//! larger than the peer's MTU is dropped (`wire_oversize`) without an ICMP
//! error, as a bridge drops what the egress port cannot carry
//! (`is_skb_forwardable`). REJECT answers back out of the ingress side with
//! the frame's MACs swapped and, for an ICMP error, the packet's destination
//! as source, as nftables' bridge `reject` does (`nft_reject_bridge.c`): the
//! wire has no address of its own.

use super::counters::DropReason;
use super::dataplane::{Classifier, Dataplane, Disposition};
use super::forward::Packet;
use super::options::Ipv4Options;
use super::parse::{parse_ethernet, parse_ipv4, EtherPayload, ETHERNET_HEADER_LEN};
use super::reply::{build_icmp_error, build_tcp_reset, may_send_icmp_error, IcmpError, ReplyFrom};
use super::sink::FrameSink;
use super::split::Offload;
use crate::flow::{proto, Action, Chain, IfIndex, RejectWith};

/// Why two interfaces cannot be paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// An interface index the data plane does not have.
    UnknownInterface(IfIndex),
    /// Both sides are the same interface.
    SameInterface(IfIndex),
    /// The interface is already in a pair.
    AlreadyPaired(IfIndex),
    /// The interface has an address (a wire side is invisible at the IP layer).
    HasAddress(IfIndex),
}

impl Dataplane {
    /// Pairs `a` and `b`: what arrives on one leaves by the other, judged
    /// by the FORWARD chain. Both must exist, differ, have no address and
    /// be in no other pair.
    pub fn set_wire(&mut self, a: IfIndex, b: IfIndex) -> Result<(), WireError> {
        if a == b {
            return Err(WireError::SameInterface(a));
        }
        for side in [a, b] {
            let interface = self.interfaces.get(usize::from(side)).ok_or(WireError::UnknownInterface(side))?;
            if interface.addr.is_some() {
                return Err(WireError::HasAddress(side));
            }
            if self.wire_peer(side).is_some() {
                return Err(WireError::AlreadyPaired(side));
            }
        }
        self.wires.resize(self.interfaces.len(), None);
        for (side, peer) in [(a, b), (b, a)] {
            if let Some(slot) = self.wires.get_mut(usize::from(side)) {
                *slot = Some(peer);
            }
        }
        Ok(())
    }

    /// The other side of `interface`'s pair, if it is a wire side.
    pub fn wire_peer(&self, interface: IfIndex) -> Option<IfIndex> {
        self.wires.get(usize::from(interface)).copied().flatten()
    }

    /// The path of a frame received on a wire side whose peer is `peer`.
    pub(super) fn wire<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        (in_if, offload): (IfIndex, Offload),
        peer: IfIndex,
        frame: &mut [u8],
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Disposition {
        let eth = match parse_ethernet(frame) {
            Ok(eth) => eth,
            Err(reason) => return Disposition::Drop(reason),
        };
        if !self.forwarding {
            return Disposition::Drop(DropReason::NotReady);
        }
        if let EtherPayload::Arp(_) = eth.payload {
            return self.wire_pass(peer, frame.len());
        }
        let meta = match frame.get(ETHERNET_HEADER_LEN..).map(parse_ipv4) {
            Some(Ok(meta)) => meta,
            Some(Err(reason)) => return Disposition::Drop(reason),
            None => return Disposition::Drop(DropReason::Ipv4Truncated),
        };
        let len = ETHERNET_HEADER_LEN + meta.total_len;
        let mut packet = Packet { in_if, offload, frame, eth, meta, options: Ipv4Options::default() };
        if packet.meta.is_fragment() {
            // Held until whole and judged once, as in routed mode (defrag.rs).
            return self.forward_fragment(now_ms, &mut packet, Some(peer), classifier, out);
        }
        let mtu = self.interfaces.get(usize::from(peer)).map_or(0, |i| usize::from(i.mtu));
        if offload.segment_size.is_none() && packet.meta.total_len > mtu {
            return Disposition::Drop(DropReason::WireOversize);
        }
        match self.wire_verdict(now_ms, &packet, peer, classifier, out) {
            Ok(()) => self.wire_pass(peer, len),
            Err(reason) => Disposition::Drop(reason),
        }
    }

    /// Conntrack and the FORWARD chain (output `peer`) for a packet or
    /// whole datagram from a wire side; a rejection is answered back out
    /// of the ingress side.
    pub(super) fn wire_verdict<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        peer: IfIndex,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Result<(), DropReason> {
        match self.judge(now_ms, packet, Chain::Forward, peer, classifier) {
            Ok(()) => Ok(()),
            Err(Ok(Action::Reject(with))) => {
                self.wire_reject(now_ms, packet, with, out);
                Err(DropReason::RuleReject)
            }
            Err(Ok(_)) => Err(DropReason::RuleDrop),
            Err(Err(reason)) => Err(reason),
        }
    }

    /// Sends the first `len` bytes of the frame, unchanged, out of `peer`.
    fn wire_pass(&mut self, peer: IfIndex, len: usize) -> Disposition {
        if let Some(counters) = self.counters.interface_mut(peer) {
            counters.forwarded_out += 1;
        }
        Disposition::Forward { out_if: peer, len }
    }

    /// Answers a rejected packet back out of its ingress side, MACs swapped.
    fn wire_reject(&mut self, now_ms: u64, packet: &Packet<'_>, with: RejectWith, out: &mut dyn FrameSink) {
        let (meta, own_mac) = (&packet.meta, packet.eth.dst);
        let error = match (with, meta.proto) {
            (RejectWith::TcpReset, proto::TCP) => {
                if let Ok(len) = build_tcp_reset(packet.frame, meta, own_mac, &mut self.scratch) {
                    self.wire_emit(packet.in_if, len, out);
                    self.counters.events.tcp_resets_sent += 1;
                }
                return;
            }
            (RejectWith::TcpReset, _) => IcmpError::for_reject(RejectWith::PortUnreachable),
            (with, _) => IcmpError::for_reject(with),
        };
        let Some(error) = error else { return };
        if !may_send_icmp_error(meta, packet.eth.dst, false) {
            self.counters.events.icmp_errors_suppressed += 1;
            return;
        }
        if !self.icmp_limit.try_take(now_ms) {
            self.counters.events.icmp_errors_rate_limited += 1;
            return;
        }
        let from = ReplyFrom { mac: own_mac, addr: meta.dst };
        if let Ok(len) = build_icmp_error(packet.frame, meta, error, from, &mut self.scratch) {
            self.wire_emit(packet.in_if, len, out);
            self.counters.events.icmp_errors_sent += 1;
        }
    }

    fn wire_emit(&mut self, out_if: IfIndex, len: usize, out: &mut dyn FrameSink) {
        let result = match self.scratch.get(..len) {
            Some(reply) => out.send(out_if, reply),
            None => Err(DropReason::TransmitTooLarge),
        };
        self.counters.count_transmit(out_if, out_if, len, result);
    }
}
