//! The firewall's one set of counters: per interface (frames received,
//! sent, forwarded, local, and drops by reason), per rule, and events; and
//! the rate-limited log of matches of rules that carry the `log` flag.

use alloc::vec;
use alloc::vec::Vec;

use super::token_bucket::TokenBucket;
use crate::flow::{Action, Chain, IfIndex, PacketKey, Verdict, BUILTIN_CHAINS};

/// Why a frame was dropped. Every drop is counted under exactly one
/// reason, on the interface the frame arrived on (for the firewall's own
/// frames: the interface they were to leave by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    EthernetTruncated,
    /// Destination MAC is neither ours, broadcast nor multicast.
    NotOurMac,
    /// EtherType other than IPv4 and ARP (IPv6, VLAN tags, ...).
    EtherType,
    /// ARP packet that is not Ethernet/IPv4 or is truncated.
    ArpMalformed,
    /// Shorter than a minimal IPv4 header.
    Ipv4Truncated,
    /// IP version field is not 4.
    Ipv4Version,
    /// IHL below 5 or beyond the frame.
    Ipv4HeaderLength,
    /// Total length beyond the frame or below the header length.
    Ipv4TotalLength,
    /// Header checksum does not verify.
    Ipv4Checksum,
    /// Source or destination address that must never be routed (RFC 1812
    /// 5.3.7: 0/8, 127/8, multicast or broadcast source, class E).
    Martian,
    /// Source address is one of the firewall's own addresses (spoofed; Linux
    /// drops it whatever `rp_filter` says, unless `accept_local`).
    OwnAddressSource,
    /// Fails the input interface's reverse-path filter (`rpfilter strict`
    /// or `loose`, Linux's `rp_filter` 1 and 2): no route back to the
    /// source (by this interface, when strict), or the source is one of
    /// the firewall's subnet broadcasts.
    ReversePath,
    /// Carries an IP option that is malformed (an ICMP parameter problem
    /// is sent, as Linux's `ip_options_compile` does).
    Ipv4Options,
    /// Carries a loose or strict source route (LSRR/SSRR), which Linux
    /// drops by default (`accept_source_route = 0`).
    SourceRoute,
    /// ICMP to a broadcast or multicast address: ignored, as Linux does
    /// with `icmp_echo_ignore_broadcasts = 1` (no smurf amplification).
    BroadcastIcmp,
    /// TCP, UDP or ICMP header truncated or inconsistent.
    L4Malformed,
    /// A fragmented datagram too short, even whole, to hold its transport header.
    TinyFragment,
    /// Fragment overlapping another of its datagram, or inconsistent with
    /// it (a second end, data past the end, a bad length): the whole
    /// datagram is dropped (RFC 1858, RFC 5722, Linux `ip_frag_queue`).
    FragmentOverlap,
    /// Exact copy (same offset and length) of a fragment already held.
    FragmentDuplicate,
    /// Held fragment of a datagram that was refused (rules, route, TTL);
    /// the fragment that completed it counts under the refusal's reason.
    FragmentOfDropped,
    /// Held fragment of a datagram still incomplete after 30 s (`ipfrag_time`).
    FragmentTimeout,
    /// Held fragment of an older datagram of a source that reached its
    /// share of the fragment pool.
    FragmentEvicted,
    /// Fragment of a datagram larger than one source's share of the pool.
    FragmentSourceLimit,
    /// Fragment pool full (or fragment larger than a pool slot).
    FragmentPoolFull,
    /// Fragment for the firewall itself, whose stack does not reassemble.
    FragmentToLocal,
    /// TTL would reach zero (an ICMP time exceeded is sent).
    TtlExpired,
    /// No route to the destination (an ICMP net unreachable is sent).
    NoRoute,
    /// Larger than the output interface's MTU with Don't Fragment set (an
    /// ICMP "fragmentation needed" with the MTU is sent, RFC 1191).
    FragmentationNeeded,
    /// A rule or chain policy said drop.
    RuleDrop,
    /// A rule said reject (an ICMP error or RST is sent, rate limits allowing).
    RuleReject,
    /// Connection table full and nothing could be evicted.
    ConntrackFull,
    /// Neighbour table full: every entry sampled for eviction was awaiting
    /// resolution or in recent use (Linux: "neighbour table overflow").
    NeighbourPendingFull,
    /// Queued for a neighbour whose resolution was replaced by a newer one
    /// (too many resolutions pending on its interface or in all).
    NeighbourPendingReplaced,
    /// Per-neighbour queue of frames awaiting resolution is full.
    NeighbourQueueFull,
    /// Frame larger than a neighbour-queue slot.
    NeighbourFrameTooLarge,
    /// ARP resolution failed after all retries; queued frames dropped.
    NeighbourUnreachable,
    /// The output NIC's transmit queue was full.
    TransmitQueueFull,
    /// The output NIC's pool for the firewall's own frames was empty.
    TransmitPoolEmpty,
    /// Larger than a transmit buffer, or no room for the virtio-net header.
    TransmitTooLarge,
    /// Needs TCP segmentation the output NIC did not negotiate (a partial
    /// checksum is completed in software instead), or carries a partial
    /// checksum whose offsets fall outside the frame.
    OffloadMissing,
    /// Received on an interface that is down (no address plan).
    InterfaceDown,
    /// To be forwarded before forwarding started: some interface that
    /// should have an address (static, DHCP or fallback) has none yet
    /// (fail closed).
    NotReady,
    /// The device reported more bytes than the receive buffer holds.
    BadLength,
    /// Input interface index unknown to the data plane.
    UnknownInterface,
    /// Larger than the wire peer's MTU: dropped as a bridge drops what its
    /// egress port cannot carry (no ICMP error: the wire has no address).
    WireOversize,
    /// A new connection's NAT rule found no free port (or ICMP id) for
    /// its translation: dropped rather than given a tuple in use.
    NatExhausted,
    /// A translated packet too short for its rewrite.
    NatRewrite,
    /// For the firewall itself, received by another vCPU than the first
    /// (whose stacks answer), while the hand-off queue to it was full.
    LocalHandoffFull,
}

impl DropReason {
    /// The reasons a frame could not be sent.
    pub const TRANSMIT: [DropReason; 4] = [
        DropReason::TransmitQueueFull,
        DropReason::TransmitPoolEmpty,
        DropReason::TransmitTooLarge,
        DropReason::OffloadMissing,
    ];

    /// Number of reasons: the length of a per-interface counter array.
    pub const COUNT: usize = DropReason::LocalHandoffFull as usize + 1;

    /// All reasons, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::EthernetTruncated,
        DropReason::NotOurMac,
        DropReason::EtherType,
        DropReason::ArpMalformed,
        DropReason::Ipv4Truncated,
        DropReason::Ipv4Version,
        DropReason::Ipv4HeaderLength,
        DropReason::Ipv4TotalLength,
        DropReason::Ipv4Checksum,
        DropReason::Martian,
        DropReason::OwnAddressSource,
        DropReason::ReversePath,
        DropReason::Ipv4Options,
        DropReason::SourceRoute,
        DropReason::BroadcastIcmp,
        DropReason::L4Malformed,
        DropReason::TinyFragment,
        DropReason::FragmentOverlap,
        DropReason::FragmentDuplicate,
        DropReason::FragmentOfDropped,
        DropReason::FragmentTimeout,
        DropReason::FragmentEvicted,
        DropReason::FragmentSourceLimit,
        DropReason::FragmentPoolFull,
        DropReason::FragmentToLocal,
        DropReason::TtlExpired,
        DropReason::NoRoute,
        DropReason::FragmentationNeeded,
        DropReason::RuleDrop,
        DropReason::RuleReject,
        DropReason::ConntrackFull,
        DropReason::NeighbourPendingFull,
        DropReason::NeighbourPendingReplaced,
        DropReason::NeighbourQueueFull,
        DropReason::NeighbourFrameTooLarge,
        DropReason::NeighbourUnreachable,
        DropReason::TransmitQueueFull,
        DropReason::TransmitPoolEmpty,
        DropReason::TransmitTooLarge,
        DropReason::OffloadMissing,
        DropReason::InterfaceDown,
        DropReason::NotReady,
        DropReason::BadLength,
        DropReason::UnknownInterface,
        DropReason::WireOversize,
        DropReason::NatExhausted,
        DropReason::NatRewrite,
        DropReason::LocalHandoffFull,
    ];

    /// The reason's name in snake case (`not_our_mac`), as `/metrics`
    /// labels it.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::EthernetTruncated => "ethernet_truncated",
            DropReason::NotOurMac => "not_our_mac",
            DropReason::EtherType => "ether_type",
            DropReason::ArpMalformed => "arp_malformed",
            DropReason::Ipv4Truncated => "ipv4_truncated",
            DropReason::Ipv4Version => "ipv4_version",
            DropReason::Ipv4HeaderLength => "ipv4_header_length",
            DropReason::Ipv4TotalLength => "ipv4_total_length",
            DropReason::Ipv4Checksum => "ipv4_checksum",
            DropReason::Martian => "martian",
            DropReason::OwnAddressSource => "own_address_source",
            DropReason::ReversePath => "reverse_path",
            DropReason::Ipv4Options => "ipv4_options",
            DropReason::SourceRoute => "source_route",
            DropReason::BroadcastIcmp => "broadcast_icmp",
            DropReason::L4Malformed => "l4_malformed",
            DropReason::TinyFragment => "tiny_fragment",
            DropReason::FragmentOverlap => "fragment_overlap",
            DropReason::FragmentDuplicate => "fragment_duplicate",
            DropReason::FragmentOfDropped => "fragment_of_dropped",
            DropReason::FragmentTimeout => "fragment_timeout",
            DropReason::FragmentEvicted => "fragment_evicted",
            DropReason::FragmentSourceLimit => "fragment_source_limit",
            DropReason::FragmentPoolFull => "fragment_pool_full",
            DropReason::FragmentToLocal => "fragment_to_local",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoRoute => "no_route",
            DropReason::FragmentationNeeded => "fragmentation_needed",
            DropReason::RuleDrop => "rule_drop",
            DropReason::RuleReject => "rule_reject",
            DropReason::ConntrackFull => "conntrack_full",
            DropReason::NeighbourPendingFull => "neighbour_pending_full",
            DropReason::NeighbourPendingReplaced => "neighbour_pending_replaced",
            DropReason::NeighbourQueueFull => "neighbour_queue_full",
            DropReason::NeighbourFrameTooLarge => "neighbour_frame_too_large",
            DropReason::NeighbourUnreachable => "neighbour_unreachable",
            DropReason::TransmitQueueFull => "transmit_queue_full",
            DropReason::TransmitPoolEmpty => "transmit_pool_empty",
            DropReason::TransmitTooLarge => "transmit_too_large",
            DropReason::OffloadMissing => "offload_missing",
            DropReason::InterfaceDown => "interface_down",
            DropReason::NotReady => "not_ready",
            DropReason::BadLength => "bad_length",
            DropReason::UnknownInterface => "unknown_interface",
            DropReason::WireOversize => "wire_oversize",
            DropReason::NatExhausted => "nat_exhausted",
            DropReason::NatRewrite => "nat_rewrite",
            DropReason::LocalHandoffFull => "local_handoff_full",
        }
    }
}

/// Per-interface packet counters.
#[derive(Debug, Clone)]
pub struct InterfaceCounters {
    /// Frames the NIC received.
    pub received: u64,
    /// Bytes of the frames the NIC received (Ethernet header on, virtio
    /// header and FCS off; an offloaded TCP segment counts as its size).
    pub received_bytes: u64,
    /// Frames handed to the NIC for sending (forwarded, local replies,
    /// ICMP errors, RSTs, ARP).
    pub sent: u64,
    /// Bytes of the frames handed to the NIC, counted as `received_bytes`.
    pub sent_bytes: u64,
    /// Drops by reason, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    /// Frames forwarded out of this interface (sent or queued for ARP).
    pub forwarded_out: u64,
    /// Frames handed to the local stack from this interface.
    pub local: u64,
}

// By hand: `Default` is derived for arrays of at most 32.
impl Default for InterfaceCounters {
    fn default() -> Self {
        InterfaceCounters {
            received: 0,
            sent: 0,
            received_bytes: 0,
            sent_bytes: 0,
            drops: [0; DropReason::COUNT],
            forwarded_out: 0,
            local: 0,
        }
    }
}

impl InterfaceCounters {
    /// The drop count for `reason`.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops.get(reason as usize).copied().unwrap_or(0)
    }

    /// Sum of all drop counts.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Frames that could not be sent (the transmit reasons).
    pub fn not_sent(&self) -> u64 {
        DropReason::TRANSMIT.iter().map(|&reason| self.drop_count(reason)).sum()
    }
}

/// Counters of events that are not per-interface drops.
#[derive(Debug, Clone, Default)]
pub struct EventCounters {
    /// ICMP errors sent (time exceeded, unreachable).
    pub icmp_errors_sent: u64,
    /// ICMP errors suppressed by the rate limit.
    pub icmp_errors_rate_limited: u64,
    /// ICMP errors not sent because RFC 1122 forbids answering the packet.
    pub icmp_errors_suppressed: u64,
    /// TCP RSTs sent for `reject with tcp-reset`.
    pub tcp_resets_sent: u64,
    /// ARP requests sent (first tries and retries).
    pub arp_requests_sent: u64,
    /// Connection-table entries evicted early to make room.
    pub conntrack_early_drops: u64,
    /// Fragment trains evicted because their source held its share of the pool.
    pub fragment_evictions: u64,
    /// Fragment trains dropped incomplete after 30 s.
    pub fragment_timeouts: u64,
    /// Fragments held now, awaiting the rest of their datagram (a gauge).
    pub fragments_held: u64,
    /// Bytes of the fragments held now (a gauge).
    pub fragment_bytes_held: u64,
    /// Log lines suppressed by the log rate limit.
    pub log_suppressed: u64,
    /// Packets dropped because their `-m hashlimit` table was full (Linux
    /// drops them too: `hotdrop` at `--hashlimit-htable-max`).
    pub hashlimit_full: u64,
    /// Connections with an address translation now (a gauge).
    pub nat_translations: u64,
    /// New connections a NAT rule found no free port or id for.
    pub nat_allocation_failures: u64,
    /// Masqueraded connections forgotten because their interface's
    /// address changed (a new DHCP lease).
    pub masquerade_flushed: u64,
    /// Packets dropped because a `-m connlimit` rule found no free counter
    /// for their address (Linux hot-drops a packet it cannot count).
    pub connlimit_full: u64,
}

/// Every counter of the data plane, allocated once at start.
#[derive(Debug, Clone)]
pub struct Counters {
    /// One entry per interface, plus a last one for unknown input interfaces.
    pub interfaces: Vec<InterfaceCounters>,
    /// Hits per rule index of the compiled image.
    pub rule_hits: Vec<u64>,
    /// Hits of a rule index beyond `rule_hits` (a classifier/image mismatch).
    pub rule_hits_out_of_range: u64,
    /// Packets decided by the chain policy: `[input, forward]`.
    pub policy_hits: [u64; BUILTIN_CHAINS],
    /// Other events.
    pub events: EventCounters,
}

impl Counters {
    /// Counters for `interface_count` interfaces and `rule_count` rules.
    pub fn new(interface_count: usize, rule_count: usize) -> Counters {
        Counters {
            interfaces: vec![InterfaceCounters::default(); interface_count + 1],
            rule_hits: vec![0; rule_count],
            rule_hits_out_of_range: 0,
            policy_hits: [0; BUILTIN_CHAINS],
            events: EventCounters::default(),
        }
    }

    /// The counters of `interface` (unknown indices share the last slot).
    pub fn interface_mut(&mut self, interface: IfIndex) -> Option<&mut InterfaceCounters> {
        let last = self.interfaces.len().checked_sub(1)?;
        let index = usize::from(interface).min(last);
        self.interfaces.get_mut(index)
    }

    /// The counters of `interface`, if it exists.
    pub fn interface(&self, interface: IfIndex) -> Option<&InterfaceCounters> {
        self.interfaces.get(usize::from(interface))
    }

    /// Counts one drop for `reason` on `interface`.
    pub fn count_drop(&mut self, interface: IfIndex, reason: DropReason) {
        if let Some(counters) = self.interface_mut(interface) {
            if let Some(slot) = counters.drops.get_mut(reason as usize) {
                *slot = slot.wrapping_add(1);
            }
        }
    }

    /// Counts a frame of `bytes` received on `interface`.
    pub fn count_received(&mut self, interface: IfIndex, bytes: usize) {
        if let Some(counters) = self.interface_mut(interface) {
            counters.received = counters.received.wrapping_add(1);
            counters.received_bytes = counters.received_bytes.wrapping_add(bytes as u64);
        }
    }

    /// Counts the outcome of handing a frame of `bytes` to NIC `out_if`:
    /// sent there, or dropped (on `in_if`) for the returned reason.
    pub fn count_transmit(&mut self, in_if: IfIndex, out_if: IfIndex, bytes: usize, result: Result<(), DropReason>) {
        match result {
            Ok(()) => {
                if let Some(counters) = self.interface_mut(out_if) {
                    counters.sent = counters.sent.wrapping_add(1);
                    counters.sent_bytes = counters.sent_bytes.wrapping_add(bytes as u64);
                }
            }
            Err(reason) => self.count_drop(in_if, reason),
        }
    }

    /// Total drops for `reason` over all interfaces.
    pub fn drops_for(&self, reason: DropReason) -> u64 {
        self.interfaces.iter().map(|c| c.drop_count(reason)).sum()
    }

    /// Counts a verdict against its rule, or against the chain policy.
    pub fn count_verdict(&mut self, chain: Chain, verdict: &Verdict) {
        let slot = match verdict.rule {
            Some(rule) => match self.rule_hits.get_mut(rule as usize) {
                Some(slot) => slot,
                None => &mut self.rule_hits_out_of_range,
            },
            None => match self.policy_hits.get_mut(chain.index()) {
                Some(slot) => slot,
                None => &mut self.rule_hits_out_of_range,
            },
        };
        *slot = slot.wrapping_add(1);
    }
}

/// Logs matches of rules with the `log` flag through `log::info!`, at most
/// `rate_per_sec` lines per second (burst `burst`); the rest are counted.
#[derive(Debug, Clone)]
pub struct RuleLogger {
    bucket: TokenBucket,
}

impl RuleLogger {
    /// A logger with the given rate limit.
    pub fn new(rate_per_sec: u32, burst: u32) -> RuleLogger {
        RuleLogger { bucket: TokenBucket::new(rate_per_sec, burst) }
    }

    /// Logs `key` and `verdict` if the verdict asks for it and the rate
    /// limit allows; returns whether a line was written.
    pub fn log(&mut self, now_ms: u64, chain: Chain, key: &PacketKey, verdict: &Verdict) -> bool {
        if !verdict.log || !self.bucket.try_take(now_ms) {
            return false;
        }
        let action = match verdict.action {
            Action::Accept => "accept",
            Action::Drop => "drop",
            Action::Reject(_) => "reject",
        };
        let src = core::net::Ipv4Addr::from(key.src);
        let dst = core::net::Ipv4Addr::from(key.dst);
        log::info!(
            "unifw {:?} rule {:?} {} proto {} {}:{} -> {}:{} icmp {}/{} in {} out {} {:?}",
            chain,
            verdict.rule,
            action,
            key.proto,
            src,
            key.src_port,
            dst,
            key.dst_port,
            key.icmp_type,
            key.icmp_code,
            key.in_if,
            key.out_if,
            key.state
        );
        true
    }
}

impl RuleLogger {
    /// Logs a packet a `LOG`/`NFLOG` rule passed, as Linux's `nf_log`
    /// writes it (`PREFIX IN=eth0 OUT=eth1 MAC=... SRC=... DST=... LEN=...
    /// TOS=... PREC=... TTL=... ID=... PROTO=TCP SPT=... DPT=... ...`), if
    /// the rate limit allows; returns whether a line was written. `ip` is
    /// the packet from its IP header on.
    pub fn log_packet(
        &mut self,
        now_ms: u64,
        record: &crate::image::format::LogRecord,
        key: &PacketKey,
        eth: &super::parse::EthernetInfo,
        ip: &[u8],
    ) -> bool {
        if !self.bucket.try_take(now_ms) {
            return false;
        }
        let line = LogLine { prefix: record.prefix(), key, eth, ip };
        match record.level {
            0..=3 => log::error!("{line}"),
            4 | 8 => log::warn!("{line}"), // 8: NFLOG, written like LOG's default
            5 | 6 => log::info!("{line}"),
            _ => log::debug!("{line}"),
        }
        true
    }
}

/// One `LOG` line, formatted when written.
pub struct LogLine<'a> {
    /// `--log-prefix`.
    pub prefix: &'a str,
    /// The rules' view of the packet.
    pub key: &'a PacketKey,
    /// Its Ethernet header.
    pub eth: &'a super::parse::EthernetInfo,
    /// The packet from its IP header on.
    pub ip: &'a [u8],
}

impl core::fmt::Display for LogLine<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (k, ip) = (self.key, self.ip);
        let b = |i: usize| ip.get(i).copied().unwrap_or(0);
        let w = |i: usize| u16::from_be_bytes([b(i), b(i + 1)]);
        let name = |i: u8, f: &mut core::fmt::Formatter<'_>| {
            if i == crate::flow::NO_IF {
                Ok(())
            } else {
                write!(f, "eth{i}")
            }
        };
        write!(f, "{}IN=", self.prefix)?;
        name(k.in_if, f)?;
        write!(f, " OUT=")?;
        name(k.out_if, f)?;
        if k.in_if != crate::flow::NO_IF {
            let (d, s) = (self.eth.dst, self.eth.src);
            write!(f, " MAC=")?;
            for (i, byte) in d.iter().chain(s.iter()).enumerate() {
                write!(f, "{}{byte:02x}", if i == 0 { "" } else { ":" })?;
            }
            write!(f, ":08:00")?;
        }
        let tos = b(1);
        // A forwarded packet's TTL is lowered before FORWARD (ip_forward).
        let forwarded = k.in_if != crate::flow::NO_IF && k.out_if != crate::flow::NO_IF;
        let ttl = if forwarded { b(8).saturating_sub(1) } else { b(8) };
        write!(
            f,
            " SRC={} DST={} LEN={} TOS=0x{:02X} PREC=0x{:02X} TTL={} ID={} ",
            core::net::Ipv4Addr::from(k.src),
            core::net::Ipv4Addr::from(k.dst),
            w(2),
            tos & 0x1e,
            tos & 0xe0,
            ttl,
            w(4)
        )?;
        let frag = w(6);
        if frag & 0x8000 != 0 {
            write!(f, "CE ")?;
        }
        if frag & 0x4000 != 0 {
            write!(f, "DF ")?;
        }
        if frag & 0x2000 != 0 {
            write!(f, "MF ")?;
        }
        if frag & 0x1fff != 0 {
            write!(f, "FRAG:{} PROTO=", frag & 0x1fff)?;
            return match proto_name(k.proto) {
                "" => write!(f, "{} ", k.proto),
                n => write!(f, "{n}"),
            };
        }
        let l4 = ip.get(usize::from(b(0) & 0x0f) * 4..).unwrap_or(&[]);
        let t = |i: usize| l4.get(i).copied().unwrap_or(0);
        let tw = |i: usize| u16::from_be_bytes([t(i), t(i + 1)]);
        match k.proto {
            crate::flow::proto::TCP => {
                write!(
                    f,
                    "PROTO=TCP SPT={} DPT={} WINDOW={} RES=0x{:02x} ",
                    tw(0),
                    tw(2),
                    tw(14),
                    (t(12) & 0x0f) << 2
                )?;
                let flags = t(13);
                for (bit, n) in [
                    (0x80, "CWR"),
                    (0x40, "ECE"),
                    (0x20, "URG"),
                    (0x10, "ACK"),
                    (0x08, "PSH"),
                    (0x04, "RST"),
                    (0x02, "SYN"),
                    (0x01, "FIN"),
                ] {
                    if flags & bit != 0 {
                        write!(f, "{n} ")?;
                    }
                }
                write!(f, "URGP={} ", tw(18))
            }
            crate::flow::proto::UDP => write!(f, "PROTO=UDP SPT={} DPT={} LEN={} ", tw(0), tw(2), tw(4)),
            crate::flow::proto::ICMP => {
                write!(f, "PROTO=ICMP TYPE={} CODE={} ", t(0), t(1))?;
                if matches!(t(0), 0 | 8) {
                    write!(f, "ID={} SEQ={} ", tw(4), tw(6))?;
                }
                Ok(())
            }
            p => write!(f, "PROTO={p} "),
        }
    }
}

/// `PROTO=` of a fragment: Linux prints the number unless TCP/UDP/ICMP.
fn proto_name(p: u8) -> &'static str {
    match p {
        crate::flow::proto::TCP => "TCP ",
        crate::flow::proto::UDP => "UDP ",
        crate::flow::proto::ICMP => "ICMP ",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{CtState, NO_IF};

    #[test]
    fn reason_table_is_in_discriminant_order() {
        for (index, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index);
        }
    }

    #[test]
    fn reason_names_are_distinct_snake_case() {
        let names: alloc::collections::BTreeSet<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
        assert!(names.iter().all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')));
        assert_eq!(DropReason::NotOurMac.name(), "not_our_mac");
    }

    #[test]
    fn frames_and_bytes_are_counted_both_ways() {
        let mut counters = Counters::new(2, 0);
        counters.count_received(0, 1514);
        counters.count_received(0, 60);
        counters.count_transmit(0, 1, 1514, Ok(()));
        counters.count_transmit(0, 1, 99, Err(DropReason::TransmitPoolEmpty));
        let (eth0, eth1) = (&counters.interfaces[0], &counters.interfaces[1]);
        assert_eq!((eth0.received, eth0.received_bytes, eth0.drop_count(DropReason::TransmitPoolEmpty)), (2, 1574, 1));
        assert_eq!((eth1.sent, eth1.sent_bytes), (1, 1514));
    }

    #[test]
    fn drops_are_counted_per_interface_and_unknown_shares_last() {
        let mut counters = Counters::new(2, 3);
        counters.count_drop(0, DropReason::Ipv4Checksum);
        counters.count_drop(1, DropReason::Ipv4Checksum);
        counters.count_drop(200, DropReason::UnknownInterface);
        assert_eq!(counters.drops_for(DropReason::Ipv4Checksum), 2);
        assert_eq!(counters.interfaces[2].drop_count(DropReason::UnknownInterface), 1);
    }

    #[test]
    fn verdicts_count_rules_and_policy() {
        let mut counters = Counters::new(1, 2);
        let rule = |r| Verdict { action: Action::Accept, rule: r, log: false };
        counters.count_verdict(Chain::Forward, &rule(Some(1)));
        counters.count_verdict(Chain::Forward, &rule(Some(7)));
        counters.count_verdict(Chain::Input, &rule(None));
        assert_eq!(counters.rule_hits, [0, 1]);
        assert_eq!(counters.rule_hits_out_of_range, 1);
        assert_eq!(counters.policy_hits[..2], [1, 0]);
    }

    #[test]
    fn log_lines_have_linux_log_format() {
        use crate::net::parse::{EtherPayload, EthernetInfo};
        // IPv4 + TCP SYN 10.1.0.2:40000 -> 10.2.0.2:22, DF, TTL 64, ID 7.
        let mut ip = [0u8; 40];
        ip[..20].copy_from_slice(&[0x45, 0, 0, 40, 0, 7, 0x40, 0, 64, 6, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2]);
        ip[20..24].copy_from_slice(&[0x9c, 0x40, 0, 22]);
        ip[32] = 0x50;
        ip[33] = 0x02;
        ip[34..36].copy_from_slice(&64240u16.to_be_bytes());
        let key = PacketKey {
            proto: 6,
            src: 0x0a01_0002,
            dst: 0x0a02_0002,
            src_port: 40000,
            dst_port: 22,
            icmp_type: 0,
            icmp_code: 0,
            in_if: 0,
            out_if: 1,
            state: CtState::New,
            extra: Default::default(),
        };
        let eth = EthernetInfo { dst: [2, 0, 0, 0, 0, 1], src: [2, 0, 0, 0, 0, 2], payload: EtherPayload::Ipv4 };
        let line = alloc::format!("{}", LogLine { prefix: "fw: ", key: &key, eth: &eth, ip: &ip });
        assert_eq!(
            line,
            "fw: IN=eth0 OUT=eth1 MAC=02:00:00:00:00:01:02:00:00:00:00:02:08:00 SRC=10.1.0.2 DST=10.2.0.2 LEN=40 \
             TOS=0x00 PREC=0x00 TTL=63 ID=7 DF PROTO=TCP SPT=40000 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0 ",
            "forwarded: the TTL one less, as FORWARD sees it"
        );
        let mut out = key;
        out.in_if = NO_IF;
        let line = alloc::format!("{}", LogLine { prefix: "", key: &out, eth: &eth, ip: &ip });
        assert!(line.starts_with("IN= OUT=eth1 SRC=10.1.0.2 ") && line.contains(" TTL=64 "), "{line}");
    }

    #[test]
    fn logger_is_rate_limited() {
        let mut logger = RuleLogger::new(1, 2);
        let key = PacketKey {
            proto: 6,
            src: 1,
            dst: 2,
            src_port: 3,
            dst_port: 4,
            icmp_type: 0,
            icmp_code: 0,
            in_if: 0,
            out_if: NO_IF,
            state: CtState::New,
            extra: Default::default(),
        };
        let verdict = Verdict { action: Action::Drop, rule: Some(0), log: true };
        let written = (0..10).filter(|_| logger.log(0, Chain::Input, &key, &verdict)).count();
        assert_eq!(written, 2);
        let quiet = Verdict { log: false, ..verdict };
        assert!(!logger.log(10_000, Chain::Input, &key, &quiet));
    }
}
