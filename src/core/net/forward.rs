//! The per-frame path: validate, track, classify, then forward (route, TTL,
//! MAC rewrite, ARP), deliver locally, or drop and answer.
//!
//! Order of checks for a forwarded packet follows Linux: conntrack
//! (PREROUTING), route lookup (no route: ICMP net unreachable), TTL
//! (expiry: ICMP time exceeded; both before the FORWARD chain, as in
//! `ip_forward`), the FORWARD chain, then the new flow is confirmed.
//! Packets for the firewall's own addresses, broadcasts and multicast are
//! judged by the INPUT chain and handed to the local stack. With NAT
//! rules, nat PREROUTING and POSTROUTING surround the route lookup and
//! the FORWARD chain (nat_path.rs).

use smoltcp::wire::ArpRepr;

use super::addr::{is_limited_broadcast, is_multicast, is_unspecified, mac_is_group};
use super::checksum;
use super::conntrack::Tracked;
use super::counters::DropReason;
use super::dataplane::{Classifier, Dataplane, Disposition, SWEEP_PER_FRAME};
use super::mtu::DEFAULT_MTU;
use super::nat_path::NatView;
use super::neighbour::Resolution;
use super::options::{self, Ipv4Options, OptionsError};
use super::parse::{
    parse_ethernet, parse_ipv4, EtherPayload, EthernetInfo, Ipv4Meta, Ports, ETHERNET_HEADER_LEN, IPV4_MIN_HEADER_LEN,
    L4,
};
use super::reply::{build_icmp_error, build_tcp_reset, may_send_icmp_error, IcmpError, ReplyFrom};
use super::route::{is_martian_destination, is_martian_source, NextHop};
use super::sink::FrameSink;
use super::split::{refused_by_mtu, Offload};
use crate::flow::{
    addr_type, proto, Action, Chain, CtState, IfIndex, KeyExtra, PacketKey, PktType, RejectWith, Verdict, NO_IF,
};
use crate::image::format::ct_tuple::CtTuples;
use crate::image::{HotDrop, Lookup, Marks};
use crate::profile::Step;

/// The received frame and what is known about it.
pub(super) struct Packet<'f> {
    pub(super) in_if: IfIndex,
    /// What its sender offloaded: partial checksum, TCP segmentation.
    pub(super) offload: Offload,
    pub(super) frame: &'f mut [u8],
    pub(super) eth: EthernetInfo,
    pub(super) meta: Ipv4Meta,
    /// What forwarding writes into its IP options.
    pub(super) options: Ipv4Options,
}

/// A packet as a chain sees it: headers, interfaces, connection state.
pub(super) struct Seen<'p> {
    pub(super) eth: &'p EthernetInfo,
    pub(super) meta: &'p Ipv4Meta,
    pub(super) in_if: IfIndex,
    pub(super) out_if: IfIndex,
    pub(super) state: CtState,
    /// What NAT changed of where it goes (the rules see the translated destination).
    pub(super) nat: Option<NatView>,
    /// Its connection's NAT status (`--ctstate SNAT`, `DNAT`).
    pub(super) ct_status: u8,
    /// Its connection's tuples (`--ctorigdstport`, ...); `None`: those of
    /// a connection this packet would open (nat PREROUTING, raw, own packets).
    pub(super) ct_tuples: Option<CtTuples>,
}

impl Dataplane {
    /// Decides and carries out what happens to one received frame. `frame`
    /// starts at the Ethernet header. After the call it is unchanged for
    /// `Local`, rewritten for `Forward`, and free for reuse (contents
    /// unspecified) for `Queued` and `Drop`. Generated frames (ICMP errors,
    /// RSTs, ARP requests, frames released by ARP) go to `out` during the
    /// call. Never allocates, never panics; every drop is counted on `in_if`.
    pub fn handle_frame<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        in_if: IfIndex,
        frame: &mut [u8],
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Disposition {
        self.handle_offloaded_frame(now_ms, in_if, frame, None, classifier, out)
    }

    /// [`Dataplane::handle_frame`] for a frame whose sender left work to
    /// the NIC: its transport checksum partial (virtio-net `NEEDS_CSUM`)
    /// and perhaps a TCP segmentation (`GSO_TCPV4`, judged against the
    /// output MTU by its segment size). A forwarded frame keeps both (the
    /// output NIC does them), but one that must wait for ARP is copied into
    /// the neighbour queue without its virtio header, so its checksum is
    /// completed there (and an offloaded segmentation is done first).
    pub fn handle_offloaded_frame<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        in_if: IfIndex,
        frame: &mut [u8],
        offload: impl Into<Offload>,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Disposition {
        let disposition = self.process(now_ms, (in_if, offload.into()), frame, classifier, out);
        match disposition {
            Disposition::Drop(reason) => self.counters.count_drop(in_if, reason),
            Disposition::Local => {
                if let Some(counters) = self.counters.interface_mut(in_if) {
                    counters.local += 1;
                }
            }
            Disposition::Forward { .. } | Disposition::Queued => {}
        }
        self.conntrack.sweep(now_ms, SWEEP_PER_FRAME);
        self.sync_events();
        disposition
    }

    fn process<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        (in_if, offload): (IfIndex, Offload),
        frame: &mut [u8],
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Disposition {
        let Some(interface) = self.interfaces.get(usize::from(in_if)).copied() else {
            return Disposition::Drop(DropReason::UnknownInterface);
        };
        if let Some(peer) = self.wire_peer(in_if) {
            return self.wire(now_ms, (in_if, offload), peer, frame, classifier, out);
        }
        let eth = match parse_ethernet(frame) {
            Ok(eth) => eth,
            Err(reason) => return Disposition::Drop(reason),
        };
        let link_group = mac_is_group(&eth.dst);
        if eth.dst != interface.mac && !link_group {
            return Disposition::Drop(DropReason::NotOurMac);
        }
        let EtherPayload::Arp(arp) = eth.payload else {
            let parsed = frame.get(ETHERNET_HEADER_LEN..).map(parse_ipv4);
            let meta = match parsed {
                Some(Ok(meta)) => meta,
                Some(Err(reason)) => return Disposition::Drop(reason),
                None => return Disposition::Drop(DropReason::Ipv4Truncated),
            };
            let options = Ipv4Options::default();
            let mut packet = Packet { in_if, offload, frame, eth, meta, options };
            return self.ipv4(now_ms, &mut packet, classifier, out);
        };
        self.arp(now_ms, in_if, arp, out);
        Disposition::Local
    }

    /// Learns from ARP on `in_if`: senders on the interface's subnet, with
    /// unicast MACs; a new entry only when the ARP was aimed at us.
    fn arp(&mut self, now_ms: u64, in_if: IfIndex, arp: ArpRepr, out: &mut dyn FrameSink) {
        let ArpRepr::EthernetIpv4 { source_hardware_addr, source_protocol_addr, target_protocol_addr, .. } = arp else {
            return;
        };
        let Some(interface) = self.interfaces.get(usize::from(in_if)).copied() else {
            return;
        };
        let Some(own) = interface.addr else { return };
        let sender = u32::from(source_protocol_addr);
        let on_link = own.contains(sender) && sender != own.addr;
        if !on_link || mac_is_group(&source_hardware_addr.0) {
            return;
        }
        let for_us = u32::from(target_protocol_addr) == own.addr;
        let learnt = (in_if, sender, source_hardware_addr.0);
        self.neighbours.learn(now_ms, learnt, for_us, &mut self.counters, out);
    }

    fn ipv4<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &mut Packet<'_>,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Disposition {
        // Answers sent before a chain judges this packet are RELATED to it.
        self.last_state = CtState::New;
        let meta = &packet.meta;
        let dhcp_discover = is_unspecified(meta.src) && is_limited_broadcast(meta.dst);
        if (is_martian_source(meta.src) && !dhcp_discover) || is_martian_destination(meta.dst) {
            return Disposition::Drop(DropReason::Martian);
        }
        // An interface without an address yet (DHCP in progress) acts as a
        // host: what arrives there goes to the firewall's own stack (the
        // DHCP offer is unicast to the address being offered).
        let unaddressed = self.interfaces.get(usize::from(packet.in_if)).is_some_and(|i| i.addr.is_none());
        // The same for DHCP replies on an interface with a DHCP client: an
        // offer of a new address arrives while it has its fallback.
        let dhcp_reply = self.is_dhcp_client(packet.in_if) && is_dhcp_reply(meta);
        // Linux's routing input (source validation) then ip_rcv_options.
        if !dhcp_discover {
            let exempt = unaddressed || dhcp_reply;
            if let Err(reason) = self.validate_source(packet.in_if, meta.src, exempt) {
                return Disposition::Drop(reason);
            }
        }
        match self.check_options(now_ms, packet, classifier, out) {
            Ok(options) => packet.options = options,
            Err(reason) => return Disposition::Drop(reason),
        }
        let meta = &packet.meta;
        // A packet of a translated flow to a firewall address (a reply to
        // SNAT or MASQUERADE, a DNAT port forward, an ICMP error about
        // them) is forwarded once translated, as Linux translates in
        // PREROUTING, before its route lookup.
        if self.conntrack.translates() && self.forwarding && self.is_own_address(meta.dst) {
            // Fragments are reassembled first (defrag.rs), and what is not
            // translated is then dropped as a fragment to the firewall.
            if meta.is_fragment() || self.conntrack.is_translated(meta, now_ms) {
                return self.forward(now_ms, packet, classifier, out);
            }
            // A new flow to the firewall's address that nat PREROUTING
            // sends elsewhere (DNAT port forwarding). `track` changes
            // nothing for a packet without a flow.
            if !self.conntrack.has_flow(meta, now_ms) {
                let mut tracked = match self.track_raw(now_ms, packet, classifier) {
                    Ok(t) => t,
                    Err(reason) => return Disposition::Drop(reason),
                };
                if let Err(reason) = self.nat_prerouting(now_ms, packet, &mut tracked, classifier) {
                    return Disposition::Drop(reason);
                }
                if tracked.rewrite().is_some() {
                    return self.forward_tracked(now_ms, packet, tracked, classifier, out);
                }
            }
        }
        if self.is_local(meta.dst) || unaddressed || dhcp_reply {
            return self.input(now_ms, packet, classifier, out);
        }
        if mac_is_group(&packet.eth.dst) {
            // Linux forwards only frames sent to its own MAC (PACKET_HOST).
            return Disposition::Drop(DropReason::NotOurMac);
        }
        if !self.forwarding {
            return Disposition::Drop(DropReason::NotReady);
        }
        self.forward(now_ms, packet, classifier, out)
    }

    /// The packet's IP options as Linux's `ip_rcv_options` judges them:
    /// malformed ones get a parameter problem, source routes are dropped.
    fn check_options<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Result<Ipv4Options, DropReason> {
        if packet.meta.header_len <= IPV4_MIN_HEADER_LEN {
            return Ok(Ipv4Options::default());
        }
        let header = packet.frame.get(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + packet.meta.header_len);
        match options::check(header.unwrap_or(&[])) {
            Ok(options) => Ok(options),
            Err(OptionsError::SourceRoute) => Err(DropReason::SourceRoute),
            Err(OptionsError::Malformed(pointer)) => {
                self.send_icmp_error(now_ms, packet, IcmpError::parameter_problem(pointer), classifier, out);
                Err(DropReason::Ipv4Options)
            }
        }
    }

    /// Whether `dst` is for the firewall: its addresses, broadcasts of its
    /// subnets, limited broadcast and multicast.
    fn is_local(&self, dst: u32) -> bool {
        is_multicast(dst) || self.is_broadcast(dst) || self.is_own_address(dst)
    }

    /// Whether `dst` is the address of one of the firewall's interfaces.
    pub(super) fn is_own_address(&self, dst: u32) -> bool {
        self.interfaces.iter().any(|i| i.ip() == Some(dst))
    }

    /// The limited broadcast, or the directed broadcast of one of its subnets.
    pub(super) fn is_broadcast(&self, dst: u32) -> bool {
        is_limited_broadcast(dst)
            || self.interfaces.iter().any(|i| i.addr.and_then(|cidr| cidr.broadcast()) == Some(dst))
    }

    /// INPUT chain, then the local stack.
    fn input<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Disposition {
        if packet.meta.is_fragment() {
            // smoltcp is built without `proto-ipv4-fragmentation`.
            return Disposition::Drop(DropReason::FragmentToLocal);
        }
        match self.judge(now_ms, packet, Chain::Input, NO_IF, classifier) {
            // Linux's icmp_rcv, after the INPUT chain: with
            // icmp_echo_ignore_broadcasts (default 1) echo and timestamp
            // requests to a broadcast or multicast address are ignored, and
            // so is every other ICMP type there but address mask requests and
            // replies, which it discards (no smurf amplifier, RFC 2644).
            Ok(()) if packet.meta.proto == proto::ICMP && self.is_group_address(packet.meta.dst) => {
                Disposition::Drop(DropReason::BroadcastIcmp)
            }
            Ok(()) => Disposition::Local,
            Err(action) => self.refuse(now_ms, packet, action, classifier, out),
        }
    }

    /// Whether `dst` reaches more than the firewall: a broadcast of its
    /// subnets, the limited broadcast, or a multicast group.
    fn is_group_address(&self, dst: u32) -> bool {
        is_multicast(dst) || self.is_broadcast(dst)
    }

    /// Route, TTL, FORWARD chain, then rewrite and send.
    fn forward<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &mut Packet<'_>,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Disposition {
        if packet.meta.is_fragment() {
            // Held until whole, then judged once (defrag.rs).
            return self.forward_fragment(now_ms, packet, None, classifier, out);
        }
        let tracked = match self.track_raw(now_ms, packet, classifier) {
            Ok(t) => t,
            Err(reason) => return Disposition::Drop(reason),
        };
        self.forward_tracked(now_ms, packet, tracked, classifier, out)
    }

    /// raw PREROUTING, then connection tracking (none for a packet a
    /// NOTRACK rule exempts). Err: a raw DROP (silent, whatever the answer
    /// a filter REJECT would give).
    pub(super) fn track_raw<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        classifier: &C,
    ) -> Result<Tracked, DropReason> {
        let tracked = match self.raw_prerouting(now_ms, packet, classifier) {
            Ok(true) => {
                self.conntrack.untracked();
                Tracked::of(CtState::Untracked)
            }
            Ok(false) => {
                let started = self.profile.start();
                let tracked = self.conntrack.track(&packet.meta, now_ms);
                self.profile.stop(Step::Conntrack, started);
                tracked
            }
            Err(_) => return Err(DropReason::RuleDrop),
        };
        self.last_state = tracked.state;
        Ok(tracked)
    }

    /// [`Self::forward`] once conntrack has seen the packet: nat
    /// PREROUTING (a new flow's DNAT) before the route lookup, the FORWARD
    /// chain on the translated destination, mangle TCPMSS, nat POSTROUTING
    /// (SNAT, MASQUERADE) after it, then the rewrite (nat_path.rs).
    fn forward_tracked<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &mut Packet<'_>,
        mut tracked: Tracked,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Disposition {
        let nat = self.conntrack.translates();
        if nat {
            if let Err(reason) = self.nat_prerouting(now_ms, packet, &mut tracked, classifier) {
                return Disposition::Drop(reason);
            }
        }
        let view = NatView::of(&packet.meta, &tracked);
        let Some(hop) = self.routes.lookup(view.dst) else {
            self.send_icmp_error(now_ms, packet, IcmpError::NET_UNREACHABLE, classifier, out);
            return Disposition::Drop(DropReason::NoRoute);
        };
        if packet.meta.ttl <= 1 {
            self.send_icmp_error(now_ms, packet, IcmpError::TTL_EXCEEDED, classifier, out);
            return Disposition::Drop(DropReason::TtlExpired);
        }
        let mtu = self.interfaces.get(usize::from(hop.out_if)).map_or(DEFAULT_MTU, |i| i.mtu);
        if let Some(mtu) = refused_by_mtu(packet.frame, &packet.meta, packet.offload.segment_size, mtu) {
            // Linux answers PMTU discovery without its ICMP rate limit
            // (`icmpv4_mask_allow`: "Don't limit PMTU discovery").
            self.send_icmp_error_limited(
                now_ms,
                packet,
                IcmpError::fragmentation_needed(mtu),
                (false, classifier),
                out,
            );
            return Disposition::Drop(DropReason::FragmentationNeeded);
        }
        if let Err(action) = self.classify_tracked(now_ms, packet, &tracked, (Chain::Forward, hop.out_if), classifier) {
            return self.refuse(now_ms, packet, action, classifier, out);
        }
        let who = (hop.out_if, tracked.state, Some(view), (tracked.nat_status(), tracked.ct_tuples()));
        packet.meta.total_len = self.mangle_mss(now_ms, packet, who, classifier);
        if nat {
            if let Err(reason) = self.nat_postrouting(now_ms, packet, &mut tracked, hop.out_if, classifier) {
                return Disposition::Drop(reason);
            }
        }
        let started = self.profile.start();
        let confirmed = self.conntrack.confirm(&tracked, now_ms);
        self.profile.stop(Step::Conntrack, started);
        if confirmed.is_err() {
            return Disposition::Drop(DropReason::ConntrackFull);
        }
        if nat {
            if let Err(reason) = Self::apply_nat(packet, &tracked) {
                return Disposition::Drop(reason);
            }
        }
        let started = self.profile.start();
        let disposition = self.transmit(now_ms, packet, hop, out);
        self.profile.stop(Step::Rewrite, started);
        disposition
    }

    /// Conntrack + rules for a packet with a transport header. `Ok` when
    /// accepted (new flow confirmed); `Err` with the refusing action.
    pub(super) fn judge<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        chain: Chain,
        out_if: IfIndex,
        classifier: &C,
    ) -> Result<(), Result<Action, DropReason>> {
        let tracked = self.track_raw(now_ms, packet, classifier).map_err(Err)?;
        self.classify_tracked(now_ms, packet, &tracked, (chain, out_if), classifier)?;
        self.conntrack.confirm(&tracked, now_ms).map_err(|_| Err(DropReason::ConntrackFull))
    }

    /// The rules of `chain` for a tracked packet leaving by `out_if`, as
    /// they see it (the translated destination of a NATed flow). `Ok`
    /// when accepted (nothing confirmed yet); `Err` with the refusing action.
    pub(super) fn classify_tracked<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        tracked: &Tracked,
        (chain, out_if): (Chain, IfIndex),
        classifier: &C,
    ) -> Result<(), Result<Action, DropReason>> {
        let meta = &packet.meta;
        let nat = Some(NatView::of(meta, tracked));
        let (state, ct_status) = (tracked.state, tracked.nat_status());
        let ct_tuples = tracked.ct_tuples();
        let seen = Seen { eth: &packet.eth, meta, in_if: packet.in_if, out_if, state, nat, ct_status, ct_tuples };
        let (verdict, _) = self.run_chain(now_ms, chain, &seen, packet.frame, classifier);
        match verdict.action {
            Action::Accept => Ok(()),
            refused => Err(Ok(refused)),
        }
    }

    /// Drops a refused packet, answering it for a reject.
    pub(super) fn refuse<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        action: Result<Action, DropReason>,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> Disposition {
        match action {
            Ok(Action::Reject(with)) => {
                self.reject(now_ms, packet, with, classifier, out);
                Disposition::Drop(DropReason::RuleReject)
            }
            Ok(_) => Disposition::Drop(DropReason::RuleDrop),
            Err(reason) => Disposition::Drop(reason),
        }
    }

    fn reject<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        with: RejectWith,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) {
        let error = match (with, packet.meta.proto) {
            (RejectWith::TcpReset, proto::TCP) => return self.send_reset(now_ms, packet, classifier, out),
            // iptables refuses tcp-reset for other protocols; answer as port unreachable.
            (RejectWith::TcpReset, _) => IcmpError::for_reject(RejectWith::PortUnreachable),
            (with, _) => IcmpError::for_reject(with),
        };
        if let Some(error) = error {
            self.send_icmp_error(now_ms, packet, error, classifier, out);
        }
    }

    /// The state of an answer (ICMP error, RST) to the packet at hand:
    /// Linux attaches it to the packet's connection (`nf_ct_attach`), so it
    /// is RELATED unless the packet had none (INVALID, untracked). Before
    /// the chain judged it, the packet has the state conntrack gave it at
    /// PREROUTING, which is a connection's ([`Dataplane::ipv4`] resets it).
    fn answer_state(&self) -> CtState {
        match self.last_state {
            CtState::Invalid | CtState::Untracked => CtState::Invalid,
            _ => CtState::Related,
        }
    }

    /// Answers `packet` with a RST.
    fn send_reset<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) {
        let Some(interface) = self.interfaces.get(usize::from(packet.in_if)) else {
            return;
        };
        if mac_is_group(&packet.eth.dst) || self.is_broadcast(packet.meta.dst) || is_multicast(packet.meta.dst) {
            return;
        }
        if let Ok(len) = build_tcp_reset(packet.frame, &packet.meta, interface.mac, &mut self.scratch) {
            let state = self.answer_state();
            if !self.emit_own(now_ms, (packet.in_if, len), Some(state), classifier, out) {
                return;
            }
            self.counters.events.tcp_resets_sent += 1;
        }
    }

    /// Sends an ICMP error about `packet` back out of its input interface,
    /// unless RFC 1122 forbids it or the rate limit says no.
    pub(super) fn send_icmp_error<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        error: IcmpError,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) {
        self.send_icmp_error_limited(now_ms, packet, error, (true, classifier), out);
    }

    /// [`Self::send_icmp_error`], rate-limited or not (`limited`).
    pub(super) fn send_icmp_error_limited<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        error: IcmpError,
        (limited, classifier): (bool, &C),
        out: &mut dyn FrameSink,
    ) {
        let Some(interface) = self.interfaces.get(usize::from(packet.in_if)).copied() else {
            return;
        };
        let meta = &packet.meta;
        let source = if self.is_own_address(meta.dst) { Some(meta.dst) } else { interface.ip() };
        let allowed = may_send_icmp_error(meta, packet.eth.dst, self.is_broadcast(meta.dst));
        let events = &mut self.counters.events;
        let Some(source) = source.filter(|_| allowed) else {
            events.icmp_errors_suppressed += 1;
            return;
        };
        if limited && !self.icmp_limit.try_take(now_ms) {
            events.icmp_errors_rate_limited += 1;
            return;
        }
        let from = ReplyFrom { mac: interface.mac, addr: source };
        if let Ok(len) = build_icmp_error(packet.frame, meta, error, from, &mut self.scratch) {
            let state = self.answer_state();
            if !self.emit_own(now_ms, (packet.in_if, len), Some(state), classifier, out) {
                return;
            }
            self.counters.events.icmp_errors_sent += 1;
        }
    }

    /// Sends the reply built in the scratch buffer, `len` bytes, out of
    /// `out_if` if the OUTPUT path lets it ([`Dataplane::judge_own`], with
    /// `state` as there); false if it refused it.
    fn emit_own<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        (out_if, len): (IfIndex, usize),
        state: Option<CtState>,
        classifier: &C,
        out: &mut dyn FrameSink,
    ) -> bool {
        let frame = self.scratch;
        if self.judge_own(now_ms, out_if, frame.get(..len).unwrap_or(&[]), state, classifier).is_err() {
            return false;
        }
        self.emit(out_if, len, out);
        true
    }

    fn emit(&mut self, out_if: IfIndex, len: usize, out: &mut dyn FrameSink) {
        let result = match self.scratch.get(..len) {
            Some(reply) => out.send(out_if, reply),
            None => Err(DropReason::TransmitTooLarge),
        };
        self.counters.count_transmit(out_if, out_if, len, result);
    }

    /// TTL decrement, MAC rewrite, and neighbour resolution.
    fn transmit(&mut self, now_ms: u64, packet: &mut Packet<'_>, hop: NextHop, out: &mut dyn FrameSink) -> Disposition {
        let len = ETHERNET_HEADER_LEN + packet.meta.total_len;
        let (Some(frame), Some(interface)) =
            (packet.frame.get_mut(..len), self.interfaces.get(usize::from(hop.out_if)))
        else {
            return Disposition::Drop(DropReason::Ipv4TotalLength);
        };
        if let Some(header) = frame.get_mut(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + packet.meta.header_len) {
            let own = |addr: u32| self.interfaces.iter().any(|i| i.ip() == Some(addr));
            options::stamp(header, packet.options, interface.ip().unwrap_or(0), now_ms, own);
        }
        if !decrement_ttl(frame) {
            return Disposition::Drop(DropReason::Ipv4Truncated);
        }
        if let Some(src) = frame.get_mut(6..12) {
            src.copy_from_slice(&interface.mac);
        }
        let mtu = interface.mtu;
        if self.must_split(frame, &packet.meta, packet.offload, hop, mtu) {
            if let Some(counters) = self.counters.interface_mut(hop.out_if) {
                counters.forwarded_out += 1;
            }
            return self.transmit_split(now_ms, (packet.in_if, hop, mtu), frame, packet.offload, out);
        }
        let who = (packet.in_if, hop.out_if, hop.addr);
        let queued = (&*frame, packet.offload.partial);
        let disposition = match self.neighbours.resolve(now_ms, who, queued, &self.interfaces, &mut self.counters, out)
        {
            Ok(Resolution::Mac(mac)) => {
                if let Some(dst) = frame.get_mut(..6) {
                    dst.copy_from_slice(&mac);
                }
                Disposition::Forward { out_if: hop.out_if, len }
            }
            Ok(Resolution::Queued) => Disposition::Queued,
            Err(reason) => return Disposition::Drop(reason),
        };
        if let Some(counters) = self.counters.interface_mut(hop.out_if) {
            counters.forwarded_out += 1;
        }
        disposition
    }
}

/// Decrements the TTL of the IPv4 header at `frame[14..]` and patches the
/// header checksum incrementally (RFC 1624), touching nothing else.
fn decrement_ttl(frame: &mut [u8]) -> bool {
    let Some(&ttl) = frame.get(ETHERNET_HEADER_LEN + 8) else { return false };
    set_ttl(frame, ttl.saturating_sub(1))
}

/// Sets the TTL of the IPv4 header at `frame[14..]`, patching the header
/// checksum incrementally (RFC 1624); `false` when the frame is too short.
pub(super) fn set_ttl(frame: &mut [u8], new_ttl: u8) -> bool {
    let ttl_at = ETHERNET_HEADER_LEN + 8;
    let sum_at = ETHERNET_HEADER_LEN + 10;
    let (Some(&[ttl, proto]), Some(&[hi, lo])) = (frame.get(ttl_at..ttl_at + 2), frame.get(sum_at..sum_at + 2)) else {
        return false;
    };
    let old_word = u16::from_be_bytes([ttl, proto]);
    let new_word = u16::from_be_bytes([new_ttl, proto]);
    let sum = checksum::update(u16::from_be_bytes([hi, lo]), old_word, new_word);
    if let Some(byte) = frame.get_mut(ttl_at) {
        *byte = new_ttl;
    }
    if let Some(field) = frame.get_mut(sum_at..sum_at + 2) {
        field.copy_from_slice(&sum.to_be_bytes());
    }
    true
}

/// A DHCP server's reply to a client: UDP from port 67 to port 68.
fn is_dhcp_reply(meta: &Ipv4Meta) -> bool {
    meta.proto == proto::UDP && meta.l4.ports().is_some_and(|p| p.src == 67 && p.dst == 68)
}

impl Dataplane {
    /// What residual matches read of a packet: TCP flags and options, TTL,
    /// length, link-layer addressing, and the address types as seen from
    /// the firewall's current addresses (DHCP may change them).
    /// Runs built-in `chain` for a packet as the rules see it (`frame`
    /// from its Ethernet header, for LOG lines): `-m limit` buckets spent,
    /// `LOG` lines written, the verdict counted. Returns the verdict and
    /// what NOTRACK and TCPMSS rules asked.
    pub(super) fn run_chain<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        chain: Chain,
        seen: &Seen<'_>,
        frame: &[u8],
        classifier: &C,
    ) -> (Verdict, Marks) {
        let mut key = packet_key(seen.meta, seen.in_if, seen.out_if, seen.state);
        if let Some(view) = seen.nat {
            key = view.key(key);
        }
        if classifier.wants_extra() {
            key.extra = self.key_extra(seen);
        }
        // What `-m string` searches: the IP packet as the frame holds it
        // (from its header to its total length).
        // (A fragmented datagram's rules get its first fragment's frame:
        // they search the datagram copied whole, `whole_of`.)
        let ip_end = ETHERNET_HEADER_LEN.saturating_add(seen.meta.total_len);
        let packet = match self.whole_of {
            (len, at) if len > 0 && at == frame.as_ptr() as usize => self.whole.get(..len).unwrap_or(&[]),
            _ => frame.get(ETHERNET_HEADER_LEN..ip_end).or_else(|| frame.get(ETHERNET_HEADER_LEN..)).unwrap_or(&[]),
        };
        let mut lookup = Lookup::new(now_ms, &mut self.limits)
            .with_recent(&mut self.recent)
            .with_hashlimit(&mut self.hashlimit)
            .with_connlimit(self.conntrack.connlimit_mut())
            .with_packet(packet);
        let started = self.profile.start();
        let verdict = classifier.classify_with(chain, &key, &mut lookup);
        self.profile.stop(Step::Lookup, started);
        let marks = lookup.marks;
        for &rule in lookup.logged() {
            let record = classifier.log_record(rule).unwrap_or_default();
            let ip = frame.get(ETHERNET_HEADER_LEN..).unwrap_or(&[]);
            if !self.logger.log_packet(now_ms, &record, &key, seen.eth, ip) {
                self.counters.events.log_suppressed += 1;
            }
        }
        self.counters.events.log_suppressed += u64::from(lookup.logs_dropped);
        // A hot drop (a full `-m hashlimit` table, no `-m connlimit`
        // counter) is neither a rule's nor the policy's decision.
        match lookup.hotdrop {
            Some(HotDrop::Hashlimit) => self.counters.events.hashlimit_full += 1,
            Some(HotDrop::Connlimit) => self.counters.events.connlimit_full += 1,
            None => self.counters.count_verdict(chain, &verdict),
        }
        if verdict.log && !self.logger.log(now_ms, chain, &key, &verdict) {
            self.counters.events.log_suppressed += 1;
        }
        (verdict, marks)
    }

    fn key_extra(&self, seen: &Seen<'_>) -> KeyExtra {
        let (meta, eth, in_if, out_if) = (seen.meta, seen.eth, seen.in_if, seen.out_if);
        let (tcp_flags, tcp_options, tcp_mss) = match &meta.l4 {
            L4::Tcp { segment, .. } => (segment.all_flags, segment.options, segment.mss),
            _ => (0, [0; 4], None),
        };
        let dst_mac = eth.dst;
        let pkt_type = if dst_mac == [0xff; 6] {
            PktType::Broadcast
        } else if dst_mac[0] & 1 != 0 {
            PktType::Multicast
        } else {
            PktType::Unicast
        };
        let own = || {
            self.interfaces
                .iter()
                .enumerate()
                .filter_map(|(n, i)| Some((n as IfIndex, i.addr?.addr, i.addr?.prefix_len)))
        };
        let on = |addr: u32, dev: IfIndex| addr_type(addr, own(), Some(dev));
        KeyExtra {
            tcp_flags,
            // Linux lowers a routed packet's TTL before FORWARD
            // (`ip_forward`), so FORWARD and POSTROUTING see one less; a
            // wire pair (a bridge) lowers nothing.
            ttl: if in_if != NO_IF && out_if != NO_IF && self.wire_peer(in_if).is_none() {
                meta.ttl.saturating_sub(1)
            } else {
                meta.ttl
            },
            len: meta.total_len.min(usize::from(u16::MAX)) as u16,
            pkt_type,
            src_mac: eth.src,
            // The firewall's own packets have no source MAC yet (iptables
            // allows -m mac only where one was received).
            has_mac: in_if != NO_IF,
            src_type: addr_type(meta.src, own(), None),
            dst_type: addr_type(meta.dst, own(), None),
            src_type_in: on(meta.src, in_if),
            dst_type_in: on(meta.dst, in_if),
            src_type_out: on(meta.src, out_if),
            dst_type_out: on(meta.dst, out_if),
            tcp_options,
            ct_status: seen.ct_status,
            tcp_mss,
            ct_proto: match (seen.state, &meta.l4) {
                (CtState::Related, L4::IcmpError { quoted: Some(q), .. }) => q.proto,
                _ => meta.proto,
            },
            ct_tuples: seen.ct_tuples.unwrap_or_else(|| first_tuples(meta)),
        }
    }
}

/// The tuples of the connection `meta` would open, untranslated.
fn first_tuples(meta: &Ipv4Meta) -> CtTuples {
    match meta.l4 {
        L4::IcmpQuery { icmp_type, code, id, .. } => {
            let mut t = CtTuples::of_first((meta.src, id), (meta.dst, u16::from(icmp_type) << 8 | u16::from(code)));
            let inverse = crate::net::conntrack::tuples::icmp_inverse(icmp_type);
            t.repl_ports = (id, u16::from(inverse) << 8 | u16::from(code));
            t
        }
        _ => {
            let ports = meta.l4.ports().unwrap_or(Ports { src: 0, dst: 0 });
            CtTuples::of_first((meta.src, ports.src), (meta.dst, ports.dst))
        }
    }
}

/// The rules' view of a packet.
pub fn packet_key(meta: &Ipv4Meta, in_if: IfIndex, out_if: IfIndex, state: CtState) -> PacketKey {
    let ports = meta.l4.ports().unwrap_or(Ports { src: 0, dst: 0 });
    let (icmp_type, icmp_code) = meta.l4.icmp().unwrap_or((0, 0));
    PacketKey {
        proto: meta.proto,
        src: meta.src,
        dst: meta.dst,
        src_port: ports.src,
        dst_port: ports.dst,
        icmp_type,
        icmp_code,
        in_if,
        out_if,
        state,
        extra: KeyExtra::default(),
    }
}
