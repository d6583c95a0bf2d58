//! The packet-path harness shared by the stable mini-fuzz test
//! (`tests/net_fuzz.rs`) and the cargo-fuzz target
//! (`fuzz/fuzz_targets/packet_path.rs`): a small lab data plane with tiny
//! tables, a classifier steered by the input, and a sink that checks every
//! generated frame.
#![allow(dead_code)]

use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet};
use unifw_core::flow::{Action, Chain, PacketKey, RejectWith, Verdict};
use unifw_core::image::format::{NatKind, NatRecord};
use unifw_core::net::addr::Cidr;
use unifw_core::net::{
    Classifier, Dataplane, DataplaneConfig, Disposition, DropReason, FragmentLimits, FrameSink, InterfaceConfig,
    NeighbourLimits, StaticRoute,
};

/// Table sizes small enough that the harness fills them quickly.
pub const CONNTRACK_CAPACITY: usize = 64;
pub const FRAGMENTS: FragmentLimits = FragmentLimits { slots: 8, slot_size: 1518, per_source: 4 };
pub const NEIGHBOURS: NeighbourLimits =
    NeighbourLimits { capacity: 8, max_pending: 4, max_pending_per_interface: 2, frame_size: 1518 };

/// Checks that generated frames are well-formed; keeps only counts.
#[derive(Default)]
pub struct CheckingSink {
    pub frames: u64,
    pub refuse_every: u64,
}

impl FrameSink for CheckingSink {
    fn send(&mut self, out_if: u8, frame: &[u8]) -> Result<(), DropReason> {
        self.frames += 1;
        assert!(out_if < 3, "sent out of a non-existent interface");
        let eth = EthernetFrame::new_checked(frame).expect("generated frame has an Ethernet header");
        if eth.ethertype() == EthernetProtocol::Ipv4 {
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("generated IPv4 parses");
            assert!(ip.verify_checksum(), "generated IPv4 checksum");
        }
        if self.refuse_every == 0 || !self.frames.is_multiple_of(self.refuse_every) {
            Ok(())
        } else {
            Err(DropReason::TransmitQueueFull)
        }
    }
}

/// Interfaces: the lab's two plus an unaddressed management one.
pub fn interfaces() -> Vec<InterfaceConfig> {
    vec![
        InterfaceConfig::new([2, 0, 0, 0, 0, 1], Cidr::new(0x0a01_0001, 24)),
        InterfaceConfig::new([2, 0, 0, 0, 0, 2], Cidr::new(0x0a02_0001, 24)),
        InterfaceConfig::new([2, 0, 0, 0, 0, 3], None),
    ]
}

/// A classifier whose verdict depends on the packet and a selector byte.
pub fn classifier(selector: u8) -> impl Fn(Chain, &PacketKey) -> Verdict {
    move |chain, key| {
        let mix = (key.src ^ key.dst.rotate_left(7) ^ u32::from(key.src_port) ^ u32::from(key.dst_port) << 16)
            .wrapping_mul(0x9e37_79b9)
            ^ u32::from(selector)
            ^ (chain == Chain::Input) as u32;
        let action = match mix % 12 {
            0..=5 => Action::Accept,
            6 | 7 => Action::Drop,
            8 => Action::Reject(RejectWith::TcpReset),
            9 => Action::Reject(RejectWith::PortUnreachable),
            10 => Action::Reject(RejectWith::AdminProhibited),
            _ => Action::Reject(RejectWith::HostUnreachable),
        };
        let rule = if mix & 0x100 != 0 { None } else { Some(mix >> 20) };
        Verdict { action, rule, log: mix & 0x200 != 0 }
    }
}

/// [`classifier`], whose rules in the nat chains also translate (in a
/// harness built for NAT): by the rule number, none, SNAT to eth1's
/// address with 2 ports (soon exhausted), MASQUERADE, or DNAT to a host
/// on eth0 (a port range, or the port kept).
pub struct FuzzClassifier {
    pub selector: u8,
    pub nat: bool,
}

impl Classifier for FuzzClassifier {
    fn classify(&self, chain: Chain, key: &PacketKey) -> Verdict {
        classifier(self.selector)(chain, key)
    }

    fn nat(&self, rule: u32) -> Option<NatRecord> {
        let record = |kind, addrs, ports| NatRecord {
            kind,
            addrs,
            ports,
            random: rule & 0x10 != 0,
            random_fully: false,
            persistent: rule & 0x20 != 0,
        };
        match (self.nat, rule % 5) {
            (false, _) | (_, 0) => None,
            (_, 1) => Some(record(NatKind::Snat, (0x0a02_0001, 0x0a02_0001), Some((7000, 7001)))),
            (_, 2) => Some(record(NatKind::Masquerade, (0, 0), None)),
            (_, 3) => Some(record(NatKind::Dnat, (0x0a01_0002, 0x0a01_0003), Some((22, 23)))),
            _ => Some(record(NatKind::Dnat, (0x0a01_0002, 0x0a01_0002), None)),
        }
    }
}

/// The data plane under test, its sink and clock.
pub struct Harness {
    pub dataplane: Dataplane,
    pub sink: CheckingSink,
    pub now_ms: u64,
    /// Whether its connection table translates (`Harness::new_nat`).
    pub nat: bool,
}

impl Harness {
    pub fn new() -> Harness {
        Self::with_nat(false)
    }

    /// A harness whose rules translate addresses ([`FuzzClassifier`]).
    pub fn new_nat() -> Harness {
        Self::with_nat(true)
    }

    fn with_nat(nat: bool) -> Harness {
        let routes = vec![StaticRoute { prefix: 0, prefix_len: 0, gateway: 0x0a02_00fe }];
        let mut config = DataplaneConfig::new(interfaces(), routes, 1000, CONNTRACK_CAPACITY);
        config.fragments = FRAGMENTS;
        config.neighbour = NEIGHBOURS;
        config.nat = nat;
        Harness {
            dataplane: Dataplane::new(config).expect("harness configuration"),
            sink: CheckingSink { frames: 0, refuse_every: 17 },
            now_ms: 0,
            nat,
        }
    }

    /// Runs one frame; `selector` steers the classifier, `step_ms` the clock.
    pub fn run(&mut self, in_if: u8, frame: &mut [u8], selector: u8, step_ms: u64) -> Disposition {
        self.now_ms += step_ms;
        let before = frame.to_vec();
        let classify = FuzzClassifier { selector, nat: self.nat };
        let disposition = self.dataplane.handle_frame(self.now_ms, in_if, frame, &classify, &mut self.sink);
        match disposition {
            Disposition::Forward { out_if, len } => {
                assert!(len <= frame.len() && out_if < 3);
                let ip = Ipv4Packet::new_checked(&frame[14..len]).expect("forwarded IPv4 parses");
                assert!(ip.verify_checksum(), "forwarded checksum");
                assert_eq!(ip.hop_limit().checked_add(1), Some(before[22]), "TTL decremented");
                // Record route and timestamp options may take an entry.
                // NAT rewrites ports, ids, checksums and ICMP errors' quotes.
                let payload_at = 14 + usize::from(before[14] & 0x0f) * 4;
                if !self.nat {
                    assert_eq!(&frame[payload_at..len], &before[payload_at..len], "payload untouched");
                }
            }
            Disposition::Local => assert_eq!(frame, &before[..], "local frames are not modified"),
            Disposition::Queued | Disposition::Drop(_) => {}
        }
        if selector.is_multiple_of(16) {
            self.dataplane.track_local_output(self.now_ms, frame);
        }
        if selector.is_multiple_of(8) {
            self.dataplane.poll(self.now_ms, &mut self.sink);
        }
        self.check_invariants();
        disposition
    }

    /// Tables never exceed their bounds.
    pub fn check_invariants(&self) {
        let dp = &self.dataplane;
        assert!(dp.conntrack().len() <= CONNTRACK_CAPACITY);
        assert!(dp.conntrack().translations() <= dp.conntrack().len());
        let fragments = dp.fragments();
        assert!(fragments.len() <= fragments.held_fragments() && fragments.held_fragments() <= FRAGMENTS.slots);
        assert!(fragments.held_bytes() <= fragments.held_fragments() * FRAGMENTS.slot_size);
        assert_eq!(fragments.held_fragments() == 0, fragments.held_bytes() == 0);
        assert!(dp.neighbours().len() <= NEIGHBOURS.capacity);
        assert!(dp.neighbours().pending() <= NEIGHBOURS.max_pending);
        let neighbours = dp.neighbours();
        assert!(neighbours.queued_frames() <= neighbours.pending() * unifw_core::net::neighbour::QUEUE_LEN);
        for out_if in 0..3 {
            assert!(neighbours.pending_on(out_if) <= NEIGHBOURS.max_pending_per_interface);
        }
    }

    /// Feeds a fuzz input: records of `[len_hi, len_lo, in_if, selector, step, frame...]`.
    pub fn run_input(&mut self, mut data: &[u8]) {
        while data.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([data[0], data[1]])) % 2048;
            let (in_if, selector, step) = (data[2] % 4, data[3], u64::from(data[4]) * 37);
            let rest = &data[5..];
            let take = len.min(rest.len());
            let mut frame = rest[..take].to_vec();
            self.run(in_if, &mut frame, selector, step);
            data = &rest[take..];
        }
    }
}
