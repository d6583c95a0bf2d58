//! Translated flows in the connection table: a flow with NAT is found by
//! its original tuple and by its reply tuple (two index keys, one slot),
//! so both directions need one lookup, as in Linux's conntrack hash of
//! both tuples. A new flow gets its translation (`ConnTrack::translate`)
//! between `track` and `confirm`, with a port chosen so that no two flows
//! share a reply tuple.
//!
//! Tuples: `os -> od` is the original direction as it arrived, `ts -> td`
//! the same packets as they leave (the flow's `Rewrite`); replies arrive
//! as `td -> ts` and leave as `od -> os`.

use super::key::{FlowKey, Side};
use super::table::{ConnTrack, Flow, Tracked};
use super::tcp::Direction;
use crate::flow::proto;
use crate::net::nat::{allocate_port, Endpoint, PortPolicy, Rewrite};
use crate::net::parse::{Ipv4Meta, Transport, L4};

/// What NAT made of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowNat {
    /// The original direction's packets leave as this (`ts -> td`).
    pub original: Rewrite,
    /// The key replies arrive with (`td -> ts`), and their side of it.
    pub reply_key: FlowKey,
    /// Which side of `reply_key` replies come from.
    pub reply_side: Side,
    /// Translated by MASQUERADE (to an interface's address of the moment).
    pub masquerade: bool,
}

/// The NAT status bits of a translated flow (`--ctstate SNAT`, `DNAT`):
/// which ends of its original tuple the translation changes.
pub(super) fn status(flow: &Flow, nat: FlowNat) -> u8 {
    let (os, od) = flow.original_tuple();
    let snat = if nat.original.src != os { crate::flow::CT_SNAT } else { 0 };
    let dnat = if nat.original.dst != od { crate::flow::CT_DNAT } else { 0 };
    snat | dnat
}

/// Which end of a new flow a translation changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manip {
    /// The source (SNAT, MASQUERADE).
    Source,
    /// The destination (DNAT, REDIRECT).
    Destination,
}

/// No port (or ICMP id) was free for a new translation: the packet is
/// dropped and counted, never given a tuple another flow uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatExhausted;

impl Flow {
    /// The original direction's tuple as it arrived (`os`, `od`).
    pub(super) fn original_tuple(&self) -> (Endpoint, Endpoint) {
        let side = usize::from(self.original_side.min(1));
        let other = 1 - side;
        let at = |i: usize| Endpoint {
            addr: self.key.addrs.get(i).copied().unwrap_or(0),
            port: self.key.ports.get(i).copied().unwrap_or(0),
        };
        let (os, od) = (at(side), at(other));
        if self.key.proto == proto::ICMP {
            // Query keys hold (id, request type) as "ports": the id is the
            // requester's, the responder has none.
            let id = self.key.ports.first().copied().unwrap_or(0);
            return (Endpoint { port: id, ..os }, Endpoint { port: 0, ..od });
        }
        (os, od)
    }
}

/// The direction of a packet (its key and side) in `flow`, and its rewrite;
/// `None` when it fits neither of a translated flow's tuples (a packet
/// from the original destination straight to the untranslated source).
pub(super) fn direction(
    flow: &Flow,
    nat: Option<FlowNat>,
    key: FlowKey,
    side: Side,
) -> Option<(Direction, Option<Rewrite>)> {
    let Some(nat) = nat else {
        let dir = if side == flow.original_side { Direction::Original } else { Direction::Reply };
        return Some((dir, None));
    };
    if key == flow.key && side == flow.original_side {
        return Some((Direction::Original, Some(nat.original)));
    }
    if key == nat.reply_key && side == nat.reply_side {
        let (os, od) = flow.original_tuple();
        return Some((Direction::Reply, Some(Rewrite { src: od, dst: os })));
    }
    None
}

/// The rewrites of an ICMP error (parsed as `meta`) whose quoted packet
/// has `quoted` (key, side) in `flow`, as Linux's
/// `nf_nat_icmp_reply_translation`: the quote back to how that packet
/// looked on the error's side, the outer source and destination changed
/// only where the flow's NAT changes them in the error's direction.
pub(super) fn error_rewrites(
    flow: &Flow,
    nat: FlowNat,
    (key, side): (FlowKey, Side),
    meta: &Ipv4Meta,
) -> Option<(Rewrite, Rewrite)> {
    let (os, od) = flow.original_tuple();
    let Rewrite { src: ts, dst: td } = nat.original;
    let (snat, dnat) = (ts != os, td != od);
    if key == nat.reply_key && side != nat.reply_side {
        // About `ts -> td`, travelling back to the original sender.
        let outer_src = if dnat { od.addr } else { meta.src };
        let outer_dst = if snat { os.addr } else { meta.dst };
        let outer = Rewrite { src: Endpoint { addr: outer_src, port: 0 }, dst: Endpoint { addr: outer_dst, port: 0 } };
        return Some((outer, Rewrite { src: os, dst: od }));
    }
    if key == flow.key && side != flow.original_side {
        // About a reply `od -> os`, travelling in the original direction.
        let outer_src = if snat { ts.addr } else { meta.src };
        let outer_dst = if dnat { td.addr } else { meta.dst };
        let outer = Rewrite { src: Endpoint { addr: outer_src, port: 0 }, dst: Endpoint { addr: outer_dst, port: 0 } };
        return Some((outer, Rewrite { src: td, dst: ts }));
    }
    None
}

/// The reply tuple's key of a flow whose original direction leaves as `to`.
fn reply_key(protocol: u8, to: Rewrite) -> (FlowKey, Side) {
    let transport = if protocol == proto::ICMP {
        // A reply comes from the responder to the requester's id; the
        // request type is the flow key's, kept by the caller.
        Transport::IcmpQuery { request_type: 0, id: to.src.port, is_request: false }
    } else if to.src.port != 0 || to.dst.port != 0 {
        Transport::Ports { src_port: to.dst.port, dst_port: to.src.port }
    } else {
        Transport::None
    };
    FlowKey::of(protocol, to.dst.addr, to.src.addr, transport)
}

/// Linux's default source-port ranges when a rule gives none: a port below
/// 512 stays below 512, one below 1024 stays below 1024 (from 600), others
/// take 1024-65535 (`nf_nat_l4proto_unique_tuple`).
pub fn default_port_range(port: u16) -> (u16, u16) {
    match port {
        0..512 => (1, 511),
        512..1024 => (600, 1023),
        _ => (1024, 65535),
    }
}

impl ConnTrack {
    /// Gives the new flow in `tracked` (a packet `track` called NEW) a
    /// translation of its `manip` end to `addr`, with the port (ICMP: the
    /// id; only for the source) chosen in `ports` (or the default range
    /// around the original port) so that its reply tuple is unused, by
    /// `policy`, starting from `seed`. Called once per end: DNAT, then
    /// SNAT. Err when no port is free, or the table was not built for NAT
    /// ([`ConnTrack::new_for_nat`]).
    pub fn translate(
        &self,
        tracked: &mut Tracked,
        manip: Manip,
        addr: u32,
        ports: Option<(u16, u16)>,
        (policy, seed): (PortPolicy, u32),
        now_ms: u64,
    ) -> Result<Rewrite, NatExhausted> {
        // A table built without room for reply keys never translates (its
        // index would have to grow on the data path).
        let Some(flow) = tracked.new_flow.filter(|_| self.keys_per_flow >= 2) else {
            return Err(NatExhausted);
        };
        let (os, od) = flow.original_tuple();
        let mut to = tracked.new_nat.map_or(Rewrite { src: os, dst: od }, |n| n.original);
        let protocol = flow.key.proto;
        let request_type = if protocol == proto::ICMP { flow.key.ports.get(1).copied().unwrap_or(8) } else { 0 };
        let has_ports =
            matches!(protocol, proto::TCP | proto::UDP) || (protocol == proto::ICMP && manip == Manip::Source);
        let end = match manip {
            Manip::Source => &mut to.src,
            Manip::Destination => &mut to.dst,
        };
        end.addr = addr;
        let original_port = end.port;
        let key_of = |to: Rewrite| {
            let (mut key, side) = reply_key(protocol, to);
            if protocol == proto::ICMP {
                key.ports[1] = request_type;
            }
            (key, side)
        };
        if has_ports {
            let range = ports.unwrap_or_else(|| default_port_range(original_port));
            let taken = |port: u16| {
                let mut candidate = to;
                match manip {
                    Manip::Source => candidate.src.port = port,
                    Manip::Destination => candidate.dst.port = port,
                }
                self.live(&key_of(candidate).0, now_ms).is_some()
            };
            let port = allocate_port(original_port, range, policy, seed, taken).ok_or(NatExhausted)?;
            match manip {
                Manip::Source => to.src.port = port,
                Manip::Destination => to.dst.port = port,
            }
        }
        let (reply_key, reply_side) = key_of(to);
        tracked.new_nat = (to != Rewrite { src: os, dst: od }).then_some(FlowNat {
            original: to,
            reply_key,
            reply_side,
            masquerade: false,
        });
        Ok(to)
    }

    /// Whether `meta` belongs to a translated flow (either direction), or
    /// is an ICMP error about one of its packets (read only: `track` does
    /// the update).
    pub fn is_translated(&self, meta: &Ipv4Meta, now_ms: u64) -> bool {
        let (key, _) = match meta.l4 {
            L4::IcmpError { quoted: Some(q), .. } => FlowKey::of(q.proto, q.src, q.dst, q.transport),
            L4::IcmpError { .. } | L4::IcmpOther { .. } | L4::LaterFragment => return false,
            _ => FlowKey::of(meta.proto, meta.src, meta.dst, meta.l4.transport()),
        };
        let Some(&slot) = self.index.get(&key) else { return false };
        self.nat_of(slot).is_some() && self.live(&key, now_ms).is_some()
    }

    /// Whether `meta` belongs to a tracked flow (read only).
    pub fn has_flow(&self, meta: &Ipv4Meta, now_ms: u64) -> bool {
        let (key, _) = FlowKey::of(meta.proto, meta.src, meta.dst, meta.l4.transport());
        self.live(&key, now_ms).is_some()
    }

    /// The translation of the flow in `slot`, if any.
    pub(super) fn nat_of(&self, slot: u32) -> Option<FlowNat> {
        self.nats.get(slot as usize).copied().flatten()
    }

    /// Records the translation of the flow just put in `slot` (the side
    /// array grows with `slots`, within its reserved capacity).
    pub(super) fn set_nat(&mut self, slot: u32, nat: Option<FlowNat>) {
        if self.keys_per_flow < 2 {
            return;
        }
        let at = slot as usize;
        while self.nats.len() <= at && self.nats.len() < self.nats.capacity() {
            self.nats.push(None);
        }
        if let Some(entry) = self.nats.get_mut(at) {
            self.translations =
                (self.translations + usize::from(nat.is_some())).saturating_sub(usize::from(entry.is_some()));
            *entry = nat;
        }
    }
}
