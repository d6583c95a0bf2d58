//! Shared helpers of the `net_*` integration tests: the lab's addresses,
//! frame builders (smoltcp `Repr::emit`) and fake classifiers.
#![allow(dead_code)]

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket,
    UdpRepr,
};
use unifw_core::flow::{Action, Chain, CtState, PacketKey, RejectWith, Verdict};
use unifw_core::net::addr::Cidr;
use unifw_core::net::{Dataplane, DataplaneConfig, InterfaceConfig, VecSink};

pub const FW0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const FW1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const SENDER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
pub const RECEIVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
pub const FW0: u32 = 0x0a01_0001;
pub const FW1: u32 = 0x0a02_0001;
pub const SENDER: u32 = 0x0a01_0002;
pub const RECEIVER: u32 = 0x0a02_0002;
pub const ETH_LEN: usize = 14;

/// The lab's two data interfaces.
pub fn lab_interfaces() -> Vec<InterfaceConfig> {
    vec![InterfaceConfig::new(FW0_MAC, Cidr::new(FW0, 24)), InterfaceConfig::new(FW1_MAC, Cidr::new(FW1, 24))]
}

/// A lab data plane with `capacity` flows and 16 rules.
pub fn lab(capacity: usize) -> Dataplane {
    Dataplane::new(DataplaneConfig::new(lab_interfaces(), vec![], 16, capacity)).unwrap()
}

/// A lab data plane whose neighbours (sender, receiver) are already resolved.
pub fn lab_resolved(capacity: usize) -> Dataplane {
    let mut dp = lab(capacity);
    let mut sink = VecSink::default();
    let mut arp = arp_frame(ArpOperation::Request, SENDER_MAC, SENDER, [0xff; 6], FW0);
    assert_eq!(dp.handle_frame(0, 0, &mut arp, &accept_all, &mut sink), unifw_core::net::Disposition::Local);
    let mut arp = arp_frame(ArpOperation::Request, RECEIVER_MAC, RECEIVER, [0xff; 6], FW1);
    assert_eq!(dp.handle_frame(0, 1, &mut arp, &accept_all, &mut sink), unifw_core::net::Disposition::Local);
    assert!(sink.frames.is_empty());
    dp
}

pub fn verdict(action: Action, rule: Option<u32>) -> Verdict {
    Verdict { action, rule, log: false }
}

pub fn accept_all(_: Chain, _: &PacketKey) -> Verdict {
    verdict(Action::Accept, Some(0))
}

pub fn drop_all(_: Chain, _: &PacketKey) -> Verdict {
    verdict(Action::Drop, None)
}

/// Default-drop forward policy with `ESTABLISHED,RELATED` accepted and new
/// connections allowed only from eth0 to eth1 (rule 1); input accepts.
pub fn stateful(chain: Chain, key: &PacketKey) -> Verdict {
    match (chain, key.state) {
        (Chain::Input, _) => verdict(Action::Accept, Some(3)),
        (_, CtState::Established | CtState::Related) => verdict(Action::Accept, Some(0)),
        (_, CtState::New) if key.in_if == 0 && key.out_if == 1 => verdict(Action::Accept, Some(1)),
        (_, CtState::Invalid) => verdict(Action::Drop, Some(2)),
        _ => verdict(Action::Drop, None),
    }
}

pub fn reject_with(with: RejectWith) -> impl Fn(Chain, &PacketKey) -> Verdict {
    move |_, _| verdict(Action::Reject(with), Some(5))
}

fn ethernet(src: [u8; 6], dst: [u8; 6], ethertype: EthernetProtocol, payload_len: usize) -> Vec<u8> {
    let mut frame = vec![0u8; ETH_LEN + payload_len];
    let repr = EthernetRepr { src_addr: EthernetAddress(src), dst_addr: EthernetAddress(dst), ethertype };
    repr.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    frame
}

/// An IPv4 frame around an L4 payload produced by `emit_l4`.
pub fn ipv4_frame(
    macs: ([u8; 6], [u8; 6]),
    (src, dst): (u32, u32),
    protocol: IpProtocol,
    ttl: u8,
    l4_len: usize,
    emit_l4: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut frame = ethernet(macs.0, macs.1, EthernetProtocol::Ipv4, 20 + l4_len);
    let ip = Ipv4Repr {
        src_addr: src.into(),
        dst_addr: dst.into(),
        next_header: protocol,
        payload_len: l4_len,
        hop_limit: ttl,
    };
    let mut packet = Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..]);
    ip.emit(&mut packet, &ChecksumCapabilities::default());
    // smoltcp sets DF; forwarding tests want a plain datagram with an id.
    packet.set_dont_frag(false);
    packet.set_ident(0x1234);
    packet.fill_checksum();
    emit_l4(&mut frame[ETH_LEN + 20..]);
    frame
}

/// TCP segment parameters.
#[derive(Clone, Copy)]
pub struct Tcp {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub control: TcpControl,
    pub seq: u32,
    pub ack: Option<u32>,
    pub window: u16,
    pub payload_len: usize,
    pub ttl: u8,
    pub mss: Option<u16>,
}

impl Tcp {
    pub fn new(src: u32, dst: u32, sport: u16, dport: u16) -> Tcp {
        Tcp {
            src,
            dst,
            sport,
            dport,
            control: TcpControl::None,
            seq: 1000,
            ack: None,
            window: 64000,
            payload_len: 0,
            ttl: 64,
            mss: None,
        }
    }
    pub fn syn(mut self, seq: u32) -> Tcp {
        self.control = TcpControl::Syn;
        self.seq = seq;
        self
    }
    pub fn ack(mut self, seq: u32, ack: u32) -> Tcp {
        self.seq = seq;
        self.ack = Some(ack);
        self
    }
    pub fn control(mut self, control: TcpControl) -> Tcp {
        self.control = control;
        self
    }
    pub fn payload(mut self, len: usize) -> Tcp {
        self.payload_len = len;
        self
    }
    pub fn ttl(mut self, ttl: u8) -> Tcp {
        self.ttl = ttl;
        self
    }
    /// With an MSS option.
    pub fn mss(mut self, mss: u16) -> Tcp {
        self.mss = Some(mss);
        self
    }
    /// The frame, with MACs for the direction implied by the source address.
    pub fn frame(&self) -> Vec<u8> {
        let macs = if self.src == SENDER { (SENDER_MAC, FW0_MAC) } else { (RECEIVER_MAC, FW1_MAC) };
        let payload = vec![0xabu8; self.payload_len];
        let repr = TcpRepr {
            src_port: self.sport,
            dst_port: self.dport,
            control: self.control,
            seq_number: TcpSeqNumber(self.seq as i32),
            ack_number: self.ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: self.window,
            window_scale: None,
            max_seg_size: self.mss,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &payload,
        };
        let (src, dst) = (
            IpAddress::from(smoltcp::wire::Ipv4Address::from(self.src)),
            IpAddress::from(smoltcp::wire::Ipv4Address::from(self.dst)),
        );
        ipv4_frame(macs, (self.src, self.dst), IpProtocol::Tcp, self.ttl, repr.buffer_len(), |buf| {
            repr.emit(&mut TcpPacket::new_unchecked(buf), &src, &dst, &ChecksumCapabilities::default());
        })
    }
}

/// A UDP datagram frame.
pub fn udp_frame(src: u32, dst: u32, sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    let macs = if src == SENDER { (SENDER_MAC, FW0_MAC) } else { (RECEIVER_MAC, FW1_MAC) };
    let payload = vec![0x5au8; payload_len];
    let repr = UdpRepr { src_port: sport, dst_port: dport };
    let (s, d) = (
        IpAddress::from(smoltcp::wire::Ipv4Address::from(src)),
        IpAddress::from(smoltcp::wire::Ipv4Address::from(dst)),
    );
    ipv4_frame(macs, (src, dst), IpProtocol::Udp, 64, 8 + payload_len, |buf| {
        repr.emit(
            &mut UdpPacket::new_unchecked(buf),
            &s,
            &d,
            payload_len,
            |p| p.copy_from_slice(&payload),
            &ChecksumCapabilities::default(),
        );
    })
}

/// An ICMP echo request (or reply) frame.
pub fn echo_frame(src: u32, dst: u32, request: bool, ident: u16, seq_no: u16, ttl: u8) -> Vec<u8> {
    let macs = if src == SENDER { (SENDER_MAC, FW0_MAC) } else { (RECEIVER_MAC, FW1_MAC) };
    let data = [0x11u8; 16];
    let repr = if request {
        Icmpv4Repr::EchoRequest { ident, seq_no, data: &data }
    } else {
        Icmpv4Repr::EchoReply { ident, seq_no, data: &data }
    };
    ipv4_frame(macs, (src, dst), IpProtocol::Icmp, ttl, repr.buffer_len(), |buf| {
        repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &ChecksumCapabilities::default());
    })
}

/// An ARP frame (requests go to broadcast).
pub fn arp_frame(
    operation: ArpOperation,
    sender_mac: [u8; 6],
    sender: u32,
    target_mac: [u8; 6],
    target: u32,
) -> Vec<u8> {
    let dst = if operation == ArpOperation::Request { [0xff; 6] } else { target_mac };
    let repr = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: EthernetAddress(sender_mac),
        source_protocol_addr: sender.into(),
        target_hardware_addr: EthernetAddress(target_mac),
        target_protocol_addr: target.into(),
    };
    let mut frame = ethernet(sender_mac, dst, EthernetProtocol::Arp, repr.buffer_len());
    repr.emit(&mut ArpPacket::new_unchecked(&mut frame[ETH_LEN..]));
    frame
}

/// Recomputes the IPv4 header checksum after a test edits the header.
pub fn refresh_ip_checksum(frame: &mut [u8]) {
    let mut packet = Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..]);
    packet.fill_checksum();
}

/// Whether the IPv4 header checksum of `frame` verifies.
pub fn ip_checksum_ok(frame: &[u8]) -> bool {
    Ipv4Packet::new_checked(&frame[ETH_LEN..]).map(|p| p.verify_checksum()).unwrap_or(false)
}

/// Turns `frame` into a fragment: offset in bytes (multiple of 8) and MF;
/// the payload is cut to `payload_len` bytes.
pub fn fragment_of(frame: &[u8], offset: u16, more: bool, payload_len: usize) -> Vec<u8> {
    let header_len = 20;
    let mut out = frame[..ETH_LEN + header_len].to_vec();
    let payload = &frame[ETH_LEN + header_len..];
    let take = payload_len.min(payload.len());
    out.extend_from_slice(&payload[..take]);
    let mut packet = Ipv4Packet::new_unchecked(&mut out[ETH_LEN..]);
    packet.set_total_len((header_len + take) as u16);
    packet.set_frag_offset(offset);
    packet.set_more_frags(more);
    packet.fill_checksum();
    out
}

/// Payload bytes `[start, end)` of `whole` as a fragment at offset `start`
/// (MF `more`), header copied from `whole`.
pub fn piece(whole: &[u8], start: usize, end: usize, more: bool) -> Vec<u8> {
    let mut frame = whole[..ETH_LEN + 20].to_vec();
    frame.extend_from_slice(&whole[ETH_LEN + 20 + start..ETH_LEN + 20 + end]);
    let len = frame.len() - ETH_LEN;
    let mut packet = Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..]);
    packet.set_total_len(len as u16);
    packet.set_frag_offset(start as u16);
    packet.set_more_frags(more);
    packet.fill_checksum();
    frame
}

/// `frame` with IP `options` (padded to a multiple of 4 with END) after
/// its 20-byte header: IHL, total length and checksum fixed.
pub fn with_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    let mut padded = options.to_vec();
    padded.resize(options.len().div_ceil(4) * 4, 0);
    let mut out = frame[..ETH_LEN + 20].to_vec();
    out.extend_from_slice(&padded);
    out.extend_from_slice(&frame[ETH_LEN + 20..]);
    let ihl = (20 + padded.len()) / 4;
    out[ETH_LEN] = 0x40 | ihl as u8;
    let total = (out.len() - ETH_LEN) as u16;
    out[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&total.to_be_bytes());
    refresh_ip_checksum(&mut out);
    out
}
