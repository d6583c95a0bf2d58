//! Address translation on the forwarding path, as Linux's `nf_nat`
//! hooks: on a connection's first packet the nat `PREROUTING` chain may
//! give it a new destination (DNAT) before the route lookup, and the nat
//! `POSTROUTING` chain a new source (SNAT, MASQUERADE) once the FORWARD
//! chain accepted it; the translation is kept in the connection tracker
//! (`conntrack/nat.rs`) and every later packet of both directions, and
//! ICMP errors about them, are rewritten from there (`nat/rewrite.rs`).
//! The FORWARD chain sees the translated destination and the original
//! source, as in Linux.
//!
//! A table built without NAT records never gets here: its connection
//! table keeps one key per flow and the path is unchanged.

use super::conntrack::{Manip, Tracked};
use super::counters::DropReason;
use super::dataplane::{Classifier, Dataplane};
use super::forward::{packet_key, Packet, Seen};
use super::nat::{rewrite_icmp_error, rewrite_packet, PortPolicy, Rewrite};
use super::parse::{parse_ipv4, Ipv4Meta, ETHERNET_HEADER_LEN, L4};
use crate::flow::{Chain, CtState, IfIndex, PacketKey, NO_IF};
use crate::image::format::{NatKind, NatRecord};

/// Addresses of a SNAT or DNAT range tried, from the one a client's hash
/// picks, before a new connection is refused for want of a port.
const MAX_ADDRESS_TRIES: u32 = 8;

/// Where a packet goes and what the FORWARD chain sees of it: the
/// destination (and port) after DNAT or the reverse of SNAT.
#[derive(Debug, Clone, Copy)]
pub(super) struct NatView {
    pub(super) dst: u32,
    pub(super) dst_port: Option<u16>,
}

impl NatView {
    /// The packet's view: its own destination, or the translated one.
    pub(super) fn of(meta: &Ipv4Meta, tracked: &Tracked) -> NatView {
        if let Some(to) = tracked.rewrite() {
            let ports = matches!(meta.l4, L4::Tcp { .. } | L4::Udp { .. });
            return NatView { dst: to.dst.addr, dst_port: ports.then_some(to.dst.port) };
        }
        if let Some((outer, _)) = tracked.error_rewrite() {
            return NatView { dst: outer.dst.addr, dst_port: None };
        }
        NatView { dst: meta.dst, dst_port: None }
    }

    /// `key` as the rules see the translated packet.
    pub(super) fn key(self, mut key: PacketKey) -> PacketKey {
        key.dst = self.dst;
        if let Some(port) = self.dst_port {
            key.dst_port = port;
        }
        key
    }
}

impl Dataplane {
    /// nat `PREROUTING` for a packet that opens a flow: a DNAT rule gives
    /// the flow its new destination. Err: no port was free (counted).
    pub(super) fn nat_prerouting<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        tracked: &mut Tracked,
        classifier: &C,
    ) -> Result<(), DropReason> {
        if !tracked.is_new_flow() || tracked.rewrite().is_some() {
            // Not a new flow, or one nat PREROUTING already translated.
            return Ok(());
        }
        let seen = Seen {
            eth: &packet.eth,
            meta: &packet.meta,
            in_if: packet.in_if,
            out_if: NO_IF,
            state: CtState::New,
            nat: None,
            ct_status: 0,
            ct_tuples: None,
        };
        self.nat_chain(now_ms, Chain::NatPrerouting, (&seen, packet.frame), tracked, classifier)
    }

    /// nat `POSTROUTING` for a packet that opens a flow, leaving by
    /// `out_if`: a SNAT or MASQUERADE rule gives the flow its new source.
    pub(super) fn nat_postrouting<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        packet: &Packet<'_>,
        tracked: &mut Tracked,
        out_if: IfIndex,
        classifier: &C,
    ) -> Result<(), DropReason> {
        if !tracked.is_new_flow() {
            return Ok(());
        }
        let nat = Some(NatView::of(&packet.meta, tracked));
        let ct_status = tracked.nat_status();
        let seen = Seen {
            eth: &packet.eth,
            meta: &packet.meta,
            in_if: packet.in_if,
            out_if,
            state: CtState::New,
            nat,
            ct_status,
            ct_tuples: tracked.ct_tuples(),
        };
        self.nat_chain(now_ms, Chain::NatPostrouting, (&seen, packet.frame), tracked, classifier)
    }

    fn nat_chain<C: Classifier + ?Sized>(
        &mut self,
        now_ms: u64,
        chain: Chain,
        (seen, frame): (&Seen<'_>, &[u8]),
        tracked: &mut Tracked,
        classifier: &C,
    ) -> Result<(), DropReason> {
        let (verdict, _) = self.run_chain(now_ms, chain, seen, frame, classifier);
        let out_if = seen.out_if;
        let mut key = packet_key(seen.meta, seen.in_if, out_if, seen.state);
        if let Some(view) = seen.nat {
            key = view.key(key);
        }
        let Some(record) = verdict.rule.and_then(|rule| classifier.nat(rule)) else {
            return Ok(());
        };
        let (manip, addrs) = match (chain, record.kind) {
            (Chain::NatPrerouting, NatKind::Dnat) => (Manip::Destination, record.addrs),
            (Chain::NatPostrouting, NatKind::Snat) => (Manip::Source, record.addrs),
            (Chain::NatPostrouting, NatKind::Masquerade) => {
                // The output interface's address now (DHCP may change it).
                let Some(addr) = self.interfaces.get(usize::from(out_if)).and_then(|i| i.ip()) else {
                    return Err(self.nat_failed());
                };
                (Manip::Source, (addr, addr))
            }
            // The compiler puts each kind in its chain only.
            _ => return Ok(()),
        };
        match self.translate(now_ms, &key, tracked, manip, addrs, &record) {
            Some(_) => {
                if record.kind == NatKind::Masquerade {
                    tracked.set_masquerade();
                }
                Ok(())
            }
            None => Err(self.nat_failed()),
        }
    }

    fn nat_failed(&mut self) -> DropReason {
        self.counters.events.nat_allocation_failures += 1;
        DropReason::NatExhausted
    }

    /// Gives the new flow an address of `addrs` (the one the client's
    /// hash picks first, as Linux's `find_best_ips_proto`; the next ones
    /// when its ports are all taken) and a free port.
    fn translate(
        &mut self,
        now_ms: u64,
        key: &PacketKey,
        tracked: &mut Tracked,
        manip: Manip,
        (low, high): (u32, u32),
        record: &NatRecord,
    ) -> Option<Rewrite> {
        let (low, high) = (low.min(high), low.max(high));
        let span = u64::from(high - low) + 1;
        // Linux hashes the source, and the destination unless --persistent.
        let client =
            if record.persistent { mix(self.nat_seed, key.src, 0) } else { mix(self.nat_seed, key.src, key.dst) };
        let first = u64::from(client) % span;
        let policy = if record.random || record.random_fully { PortPolicy::Random } else { PortPolicy::Preserve };
        let seed = mix(client, u32::from(key.src_port) << 16 | u32::from(key.dst_port), u32::from(key.proto));
        // DNAT without ports keeps the port (Linux's `nf_nat_l4proto_unique_tuple`:
        // "if it's dst rewrite, can't change port"); a clash finds no port.
        let ports = match (record.ports, manip) {
            (None, Manip::Destination) => Some((key.dst_port, key.dst_port)),
            (ports, _) => ports,
        };
        let tries = span.min(u64::from(MAX_ADDRESS_TRIES));
        (0..tries).find_map(|step| {
            let addr = low.wrapping_add(((first + step) % span) as u32);
            self.conntrack.translate(tracked, manip, addr, ports, (policy, seed), now_ms).ok()
        })
    }

    /// Rewrites the packet of a translated flow (or an ICMP error about
    /// one) in place and re-reads its header into `packet.meta`; nothing
    /// when it has no translation. The transport checksum of a partial
    /// (offloaded) packet stays partial, so a TSO segment is rewritten once.
    pub(super) fn apply_nat(packet: &mut Packet<'_>, tracked: &Tracked) -> Result<(), DropReason> {
        let end = ETHERNET_HEADER_LEN + packet.meta.total_len;
        let ip = packet.frame.get_mut(ETHERNET_HEADER_LEN..end).ok_or(DropReason::NatRewrite)?;
        let done = if let Some(to) = tracked.rewrite() {
            rewrite_packet(ip, &packet.meta, to, packet.offload.partial.is_some())
        } else if let Some((outer, inner)) = tracked.error_rewrite() {
            rewrite_icmp_error(ip, &packet.meta, outer, inner)
        } else {
            return Ok(());
        };
        done.map_err(|_| DropReason::NatRewrite)?;
        packet.meta = parse_ipv4(ip).map_err(|_| DropReason::NatRewrite)?;
        Ok(())
    }
}

/// A 32-bit mix of a seed and two words (a multiply-xorshift, enough to
/// spread clients over a range and ports over their start).
fn mix(seed: u32, a: u32, b: u32) -> u32 {
    let mut x = u64::from(seed) ^ (u64::from(a) << 32 | u64::from(b));
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    (x ^ (x >> 33)) as u32
}
