//! The tuples `-m conntrack --ctorig*/--ctrepl*/--ctdir` read, as Linux's
//! conntrack holds them: a flow's original tuple (how its first packet
//! arrived) and its reply tuple (the inverse of how that packet leaves,
//! so NAT changes it), and the direction of the packet at hand.

use super::key::Side;
use super::nat::FlowNat;
use super::table::Flow;
use crate::flow::proto;
use crate::image::format::ct_tuple::CtTuples;
use crate::net::nat::{Endpoint, Rewrite};

/// What a tracked packet knows of its connection's tuples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    /// The original tuple as it arrived (`os -> od`).
    original: (Endpoint, Endpoint),
    /// How the original direction leaves (`ts -> td`), if translated.
    translated: Option<Rewrite>,
    /// The packet travels in the reply direction.
    reply: bool,
    /// For an ICMP query flow: its request type.
    icmp_request: Option<u8>,
}

impl Conn {
    /// The tuples of `flow` (translated by `nat`) for a packet going in the
    /// reply direction or not.
    pub(super) fn of(flow: &Flow, nat: Option<FlowNat>, reply: bool) -> Conn {
        let icmp_request = (flow.key.proto == proto::ICMP).then(|| flow.key.ports.get(1).copied().unwrap_or(0) as u8);
        Conn { original: flow.original_tuple(), translated: nat.map(|n| n.original), reply, icmp_request }
    }

    /// The tuples, with `new_nat` the translation a new flow has been given
    /// so far (in FORWARD its DNAT, not yet its SNAT, as in Linux).
    pub(super) fn tuples(&self, new_nat: Option<FlowNat>) -> CtTuples {
        let (os, od) = self.original;
        let Rewrite { src: ts, dst: td } =
            self.translated.or(new_nat.map(|n| n.original)).unwrap_or(Rewrite { src: os, dst: od });
        let mut t = CtTuples::of_first((os.addr, os.port), (od.addr, od.port));
        t.repl = (td.addr, ts.addr);
        t.repl_ports = (td.port, ts.port);
        if let Some(request) = self.icmp_request {
            // Linux's ICMP tuple: the id as source "port", `type << 8 | code`
            // as destination "port" (the flow key keeps no code: 0).
            t.orig_ports = (os.port, u16::from(request) << 8);
            t.repl_ports = (ts.port, u16::from(icmp_inverse(request)) << 8);
        }
        t.reply = self.reply;
        t
    }
}

/// The reply type of an ICMP query type, and back (Linux's `invmap`).
pub fn icmp_inverse(t: u8) -> u8 {
    match t {
        8 => 0,
        0 => 8,
        13 => 14,
        14 => 13,
        15 => 16,
        16 => 15,
        17 => 18,
        18 => 17,
        t => t,
    }
}

/// For an ICMP error about the quoted packet `(key, side)` of `flow`:
/// whether the error travels in the reply direction, which it does when
/// the quoted packet went in the original direction (as it arrived, or as
/// it left translated).
pub(super) fn error_is_reply(flow: &Flow, nat: Option<FlowNat>, key: super::key::FlowKey, side: Side) -> bool {
    if key == flow.key {
        side == flow.original_side
    } else {
        nat.is_some_and(|n| key == n.reply_key && side != n.reply_side)
    }
}
