//! The firewall's own packets through Linux's OUTPUT path, and the raw
//! and mangle tables' work on received packets.
//!
//! Every IPv4 packet the firewall originates (its stacks' echo replies,
//! TCP answers of `/metrics`, DHCP; the data plane's ICMP errors and
//! REJECT answers) is judged here before it leaves, as Linux's
//! `ip_local_out` judges it: raw OUTPUT (`NOTRACK`), connection tracking
//! (an ICMP error is RELATED to the flow it quotes, else INVALID; a RST
//! answering a packet is RELATED to that packet's connection, as
//! `nf_ct_attach` makes it; the stacks' packets are tracked like any other,
//! so a ping reply is ESTABLISHED), then filter OUTPUT with its policy. A
//! refused packet is dropped and counted on its output interface
//! (`rule_drop`, or `rule_reject`: REJECT in OUTPUT answers the firewall
//! itself, so nothing leaves). What received packets meet first, raw
//! PREROUTING, and what a forwarded TCP SYN meets last, the mangle
//! table's TCPMSS, are here too.

use super::counters::DropReason;
use super::dataplane::{Classifier, Dataplane};
use super::forward::{Packet, Seen};
use super::mss::clamp_mss;
use super::nat_path::NatView;
use super::parse::{
    parse_ethernet, parse_ipv4, tcp_flags, EtherPayload, EthernetInfo, Ipv4Meta, ETHERNET_HEADER_LEN, L4,
};
use crate::flow::{Action, Chain, CtState, IfIndex, NO_IF};
use crate::image::format::ct_tuple::CtTuples;
use crate::image::Marks;

impl Dataplane {
    /// Judges `frame` (from its Ethernet header), which the firewall sends
    /// out of `out_if`, as Linux's OUTPUT path does. `state`: the state
    /// Linux gives it (a RST answering a packet), or `None` to ask the
    /// connection table. `Ok` to send it (a new flow of its own is then
    /// tracked); `Err` when refused, counted here. Frames that are not
    /// IPv4 (ARP) pass.
    pub fn judge_own<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        out_if: IfIndex,
        frame: &[u8],
        state: Option<CtState>,
        classifier: &C,
    ) -> Result<(), DropReason> {
        let Some((eth, meta)) = own_ipv4(frame) else { return Ok(()) };
        let mut untracked = false;
        if classifier.uses(Chain::RawOutput) {
            let seen = Seen {
                eth: &eth,
                meta: &meta,
                in_if: NO_IF,
                out_if,
                state: CtState::Invalid,
                nat: None,
                ct_status: 0,
                ct_tuples: None,
            };
            let (verdict, marks) = self.run_chain(now_ms, Chain::RawOutput, &seen, frame, classifier);
            if verdict.action != Action::Accept {
                self.counters.count_drop(out_if, DropReason::RuleDrop);
                return Err(DropReason::RuleDrop);
            }
            untracked = marks.notrack;
        }
        let tracked = match (untracked, state) {
            (true, _) => None,
            (false, Some(_)) => None,
            (false, None) if meta.frag_offset != 0 => None,
            (false, None) => Some(self.conntrack.track(&meta, now_ms)),
        };
        let state = match (untracked, state, &tracked) {
            (true, _, _) => CtState::Untracked,
            (false, Some(s), _) => s,
            (false, None, Some(t)) => t.state,
            (false, None, None) => CtState::Invalid,
        };
        if classifier.uses(Chain::Output) {
            let ct_tuples = tracked.as_ref().and_then(|t| t.ct_tuples());
            let seen = Seen { eth: &eth, meta: &meta, in_if: NO_IF, out_if, state, nat: None, ct_status: 0, ct_tuples };
            let (verdict, _) = self.run_chain(now_ms, Chain::Output, &seen, frame, classifier);
            let reason = match verdict.action {
                Action::Accept => None,
                Action::Drop => Some(DropReason::RuleDrop),
                Action::Reject(_) => Some(DropReason::RuleReject),
            };
            if let Some(reason) = reason {
                self.counters.count_drop(out_if, reason);
                return Err(reason);
            }
        }
        if let Some(tracked) = tracked {
            // A full table leaves the flow untracked; the packet still goes.
            let _ = self.conntrack.confirm(&tracked, now_ms);
        }
        Ok(())
    }

    /// raw PREROUTING for a received packet: `Ok(true)` when a `NOTRACK`
    /// rule exempts it from tracking, `Err` with the verdict when a DROP
    /// rule drops it (counted as the rule's). It sees no output interface
    /// and no state yet.
    pub(super) fn raw_prerouting<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        classifier: &C,
    ) -> Result<bool, Action> {
        if !classifier.uses(Chain::RawPrerouting) {
            return Ok(false);
        }
        let seen = Seen {
            eth: &packet.eth,
            meta: &packet.meta,
            in_if: packet.in_if,
            out_if: NO_IF,
            state: CtState::Invalid,
            nat: None,
            ct_status: 0,
            ct_tuples: None,
        };
        let (verdict, marks) = self.run_chain(now_ms, Chain::RawPrerouting, &seen, packet.frame, classifier);
        if verdict.action != Action::Accept {
            return Err(verdict.action);
        }
        Ok(marks.notrack)
    }

    /// The mangle table's TCPMSS on a forwarded TCP SYN (`ip` is its IPv4
    /// packet, with room after it): PREROUTING, FORWARD and POSTROUTING in
    /// turn, each rule lowering the MSS option (or adding one) as Linux's
    /// `xt_TCPMSS` does; `--clamp-mss-to-pmtu` takes the lower of the two
    /// interfaces' MTUs. Returns the packet's new total length.
    pub(super) fn mangle_mss<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &mut Packet<'_>,
        (out_if, state, nat, (ct_status, ct_tuples)): (IfIndex, CtState, Option<NatView>, (u8, Option<CtTuples>)),
        classifier: &C,
    ) -> usize {
        let (meta, in_if) = (&packet.meta, packet.in_if);
        let L4::Tcp { segment, .. } = meta.l4 else { return meta.total_len };
        let chains = [Chain::ManglePrerouting, Chain::MangleForward, Chain::ManglePostrouting];
        if segment.flags & tcp_flags::SYN == 0 || !chains.iter().any(|&c| classifier.uses(c)) {
            return meta.total_len;
        }
        let mut marks = Marks::default();
        for chain in chains.into_iter().filter(|&c| classifier.uses(c)) {
            let out = if chain == Chain::ManglePrerouting { NO_IF } else { out_if };
            let seen = Seen { eth: &packet.eth, meta, in_if, out_if: out, state, nat, ct_status, ct_tuples };
            let (_, m) = self.run_chain(now_ms, chain, &seen, packet.frame, classifier);
            marks.clamp_to_pmtu |= m.clamp_to_pmtu;
            marks.set_mss = match (marks.set_mss, m.set_mss) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let mtu_of = |i: IfIndex| self.interfaces.get(usize::from(i)).map_or(super::mtu::DEFAULT_MTU, |c| c.mtu);
        let Some(mss) = marks.mss(mtu_of(in_if).min(mtu_of(out_if))) else { return meta.total_len };
        let partial = packet.offload.partial.is_some();
        let Some(ip) = packet.frame.get_mut(ETHERNET_HEADER_LEN..) else { return meta.total_len };
        // A SYN whose header cannot be read was refused by the parser.
        clamp_mss(ip, (meta.header_len, meta.total_len), mss, partial).map_or(meta.total_len, |(_, total)| total)
    }
}

/// The Ethernet and IPv4 headers of a frame the firewall sends, if it is IPv4.
fn own_ipv4(frame: &[u8]) -> Option<(EthernetInfo, Ipv4Meta)> {
    let eth = parse_ethernet(frame).ok()?;
    if eth.payload != EtherPayload::Ipv4 {
        return None;
    }
    Some((eth, frame.get(ETHERNET_HEADER_LEN..).map(parse_ipv4)?.ok()?))
}
