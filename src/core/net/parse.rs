//! Validation and parsing of received frames into what conntrack, the rules
//! and the forwarder need, with smoltcp's checked wire views.
//!
//! Nothing here panics on any input: every length is checked before a view
//! is built, and every failure maps to a `DropReason`. Transport checksums
//! are not verified: a router forwards segments with bad checksums and the
//! end host drops them (verifying them would cost a pass over every payload).

use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, Icmpv4Packet, Ipv4Packet, TcpOption, TcpPacket, UdpPacket,
};

use super::checksum;
use super::counters::DropReason;
use crate::flow::proto;

/// Length of an Ethernet II header.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Length of an IPv4 header without options.
pub const IPV4_MIN_HEADER_LEN: usize = 20;
const TCP_MIN_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const ICMP_HEADER_LEN: usize = 8;

/// TCP flag bits as they sit in byte 13 of the TCP header.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
}

/// What a frame carries, after the Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtherPayload {
    /// An Ethernet/IPv4 ARP request or reply.
    Arp(ArpRepr),
    /// An IPv4 packet starting at `ETHERNET_HEADER_LEN`.
    Ipv4,
}

/// The Ethernet header fields the data plane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetInfo {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// The payload kind.
    pub payload: EtherPayload,
}

/// The transport view of a packet used to find its flow ([`L4::transport`],
/// and that of a packet quoted in an ICMP error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP or UDP ports.
    Ports {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// An ICMP query (echo, timestamp, information, address mask).
    IcmpQuery {
        /// Request type of the query pair (8 for echo), whatever the direction.
        request_type: u8,
        /// Query identifier.
        id: u16,
        /// Whether this packet is the request (else the reply).
        is_request: bool,
    },
    /// Nothing to tell flows of this protocol apart by.
    None,
}

/// The header of a packet quoted inside an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    /// IP protocol of the quoted packet.
    pub proto: u8,
    /// Source address of the quoted packet, host order.
    pub src: u32,
    /// Destination address of the quoted packet, host order.
    pub dst: u32,
    /// Transport fields of the quoted packet.
    pub transport: Transport,
}

/// TCP header fields conntrack needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Raw (unscaled) window.
    pub window: u16,
    /// Flag bits (`tcp_flags`).
    pub flags: u8,
    /// Segment length in sequence space: data bytes, plus one each for SYN and FIN.
    pub seq_len: u32,
    /// Window-scale option, if present (SYN segments).
    pub window_scale: Option<u8>,
    /// The whole flags byte, ECE and CWR included (`--tcp-flags`).
    pub all_flags: u8,
    /// Option kinds present (bit N of word N/64), found as Linux's
    /// `tcp_find_option` walks them (`--tcp-option`).
    pub options: [u64; 4],
    /// The MSS option's value, found as Linux's `xt_tcpmss` walks the
    /// options (`-m tcpmss`).
    pub mss: Option<u16>,
}

/// The option kinds of a TCP header's options, walked as Linux's
/// `xt_tcpudp` `tcp_find_option` does: kinds 0 and 1 take one byte, the
/// others their length byte (0 counts as 1), to the end of the header.
pub fn tcp_option_kinds(options: &[u8]) -> [u64; 4] {
    let mut kinds = [0u64; 4];
    let mut i = 0usize;
    while let Some(&kind) = options.get(i) {
        if let Some(w) = kinds.get_mut(usize::from(kind / 64)) {
            *w |= 1 << (kind % 64);
        }
        i += if kind < 2 { 1 } else { usize::from(options.get(i + 1).copied().unwrap_or(1)).max(1) };
    }
    kinds
}

/// The MSS option's value as Linux's `xt_tcpmss` finds it: the first
/// option of kind 2 and length 4 that fits; kinds 0 and 1 take one byte,
/// the others their length byte (0 counts as 1), to the end of the header.
pub fn tcp_mss_option(options: &[u8]) -> Option<u16> {
    let mut i = 0usize;
    while let Some(&kind) = options.get(i) {
        let len = options.get(i + 1).copied();
        if kind == 2 && len == Some(4) {
            if let (Some(&hi), Some(&lo)) = (options.get(i + 2), options.get(i + 3)) {
                return Some(u16::from_be_bytes([hi, lo]));
            }
        }
        i += if kind < 2 { 1 } else { usize::from(len.unwrap_or(1)).max(1) };
    }
    None
}

/// Source and destination ports of a TCP or UDP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Source port.
    pub src: u16,
    /// Destination port.
    pub dst: u16,
}

/// The layer-4 part of an IPv4 packet: the one place its transport header
/// is described (ports, ICMP type and code, query identity, TCP segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP.
    Tcp {
        /// Its ports.
        ports: Ports,
        /// What conntrack and RSTs need of its header.
        segment: TcpSegment,
    },
    /// UDP.
    Udp {
        /// Its ports.
        ports: Ports,
    },
    /// ICMP query (echo, timestamp, information, address mask; [`icmp_query_pair`]).
    IcmpQuery {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
        /// Request type of the query pair (8 for echo), whatever the direction.
        request_type: u8,
        /// Query identifier.
        id: u16,
        /// Whether this packet is the request (else the reply).
        is_request: bool,
    },
    /// ICMP error ([`is_icmp_error`]).
    IcmpError {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
        /// The packet the error is about; `None` when the quoted header is unusable.
        quoted: Option<Quoted>,
    },
    /// Other ICMP messages (router advertisements, ...).
    IcmpOther {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
    /// Another IP protocol.
    Other,
    /// A fragment without a whole transport header: a later one, or a
    /// first one that cuts it (the datagram's is read once it is whole).
    LaterFragment,
}

impl L4 {
    /// What tells this packet's flow apart from others of its protocol and addresses.
    pub fn transport(&self) -> Transport {
        match *self {
            L4::Tcp { ports, .. } | L4::Udp { ports } => Transport::Ports { src_port: ports.src, dst_port: ports.dst },
            L4::IcmpQuery { request_type, id, is_request, .. } => Transport::IcmpQuery { request_type, id, is_request },
            _ => Transport::None,
        }
    }

    /// TCP or UDP ports.
    pub fn ports(&self) -> Option<Ports> {
        match *self {
            L4::Tcp { ports, .. } | L4::Udp { ports } => Some(ports),
            _ => None,
        }
    }

    /// ICMP type and code (of a first fragment).
    pub fn icmp(&self) -> Option<(u8, u8)> {
        match *self {
            L4::IcmpQuery { icmp_type, code, .. }
            | L4::IcmpError { icmp_type, code, .. }
            | L4::IcmpOther { icmp_type, code } => Some((icmp_type, code)),
            _ => None,
        }
    }
}

/// A validated IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Meta {
    /// Header length in bytes (IHL * 4).
    pub header_len: usize,
    /// Total length in bytes (header + payload), within the frame.
    pub total_len: usize,
    /// Source address, host order.
    pub src: u32,
    /// Destination address, host order.
    pub dst: u32,
    /// IP protocol.
    pub proto: u8,
    /// Time to live.
    pub ttl: u8,
    /// Identification (for fragments).
    pub ident: u16,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// More-fragments flag.
    pub more_fragments: bool,
    /// The transport header.
    pub l4: L4,
}

impl Ipv4Meta {
    /// Whether this packet is a fragment (first or later).
    pub fn is_fragment(&self) -> bool {
        self.more_fragments || self.frag_offset != 0
    }
}

/// Parses the Ethernet header and, for ARP, the ARP packet.
pub fn parse_ethernet(frame: &[u8]) -> Result<EthernetInfo, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::EthernetTruncated)?;
    let payload = match eth.ethertype() {
        EthernetProtocol::Ipv4 => EtherPayload::Ipv4,
        EthernetProtocol::Arp => {
            let packet = ArpPacket::new_checked(eth.payload()).map_err(|_| DropReason::ArpMalformed)?;
            EtherPayload::Arp(ArpRepr::parse(&packet).map_err(|_| DropReason::ArpMalformed)?)
        }
        _ => return Err(DropReason::EtherType),
    };
    Ok(EthernetInfo { dst: eth.dst_addr().0, src: eth.src_addr().0, payload })
}

/// Validates an IPv4 header (version, IHL, total length, checksum) at the
/// start of `packet` and parses its transport header.
pub fn parse_ipv4(packet: &[u8]) -> Result<Ipv4Meta, DropReason> {
    let (header_len, total_len) = check_ipv4_header(packet)?;
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| DropReason::Ipv4TotalLength)?;
    let payload = packet.get(header_len..total_len).ok_or(DropReason::Ipv4TotalLength)?;
    let frag_offset = ip.frag_offset() / 8;
    let more_fragments = ip.more_frags();
    // "Ping of death": a fragment reaching past the 65535-byte datagram limit.
    if usize::from(ip.frag_offset()) + payload.len() > 65535 {
        return Err(DropReason::Ipv4TotalLength);
    }
    let mut meta = Ipv4Meta {
        header_len,
        total_len,
        src: u32::from(ip.src_addr()),
        dst: u32::from(ip.dst_addr()),
        proto: u8::from(ip.next_header()),
        ttl: ip.hop_limit(),
        ident: ip.ident(),
        frag_offset,
        more_fragments,
        l4: L4::LaterFragment,
    };
    // A first fragment that cuts its transport header (RFC 1858 3.1) stays
    // `LaterFragment`: as Linux, which reassembles first, the header is read
    // from the whole datagram (`parse_transport`, defrag.rs).
    if frag_offset == 0 && (parse_l4(&mut meta, payload).is_err() && !more_fragments) {
        return Err(DropReason::L4Malformed);
    }
    Ok(meta)
}

/// Fills the transport fields of a reassembled datagram's `meta` from
/// `head`, the first bytes of its payload (at most a buffer's worth);
/// `Err(TinyFragment)` when even the whole datagram cuts the header.
pub fn parse_transport(meta: &mut Ipv4Meta, head: &[u8]) -> Result<(), DropReason> {
    // `more_fragments` keeps UDP's length field from being checked
    // against the partial `head`.
    let mut partial = Ipv4Meta { more_fragments: true, ..*meta };
    parse_l4(&mut partial, head).map_err(|()| DropReason::TinyFragment)?;
    meta.l4 = partial.l4;
    Ok(())
}

/// Checks version, IHL, total length and checksum; returns (header, total) lengths.
fn check_ipv4_header(packet: &[u8]) -> Result<(usize, usize), DropReason> {
    let first = *packet.first().ok_or(DropReason::Ipv4Truncated)?;
    if packet.len() < IPV4_MIN_HEADER_LEN {
        return Err(DropReason::Ipv4Truncated);
    }
    if first >> 4 != 4 {
        return Err(DropReason::Ipv4Version);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN || header_len > packet.len() {
        return Err(DropReason::Ipv4HeaderLength);
    }
    let total_len = match (packet.get(2), packet.get(3)) {
        (Some(&hi), Some(&lo)) => usize::from(u16::from_be_bytes([hi, lo])),
        _ => return Err(DropReason::Ipv4Truncated),
    };
    if total_len < header_len || total_len > packet.len() {
        return Err(DropReason::Ipv4TotalLength);
    }
    let header = packet.get(..header_len).ok_or(DropReason::Ipv4HeaderLength)?;
    if checksum::checksum(header) != 0 {
        return Err(DropReason::Ipv4Checksum);
    }
    Ok((header_len, total_len))
}

/// Fills the transport fields of `meta` from the first fragment's payload;
/// `Err` when the transport header is incomplete.
fn parse_l4(meta: &mut Ipv4Meta, payload: &[u8]) -> Result<(), ()> {
    meta.l4 = match meta.proto {
        proto::TCP => parse_tcp(payload)?,
        proto::UDP => {
            if payload.len() < UDP_HEADER_LEN {
                return Err(());
            }
            let udp = UdpPacket::new_unchecked(payload);
            // A whole datagram's length field must fit; a first fragment's cannot.
            if !meta.more_fragments && UdpPacket::new_checked(payload).is_err() {
                return Err(());
            }
            L4::Udp { ports: Ports { src: udp.src_port(), dst: udp.dst_port() } }
        }
        proto::ICMP => parse_icmp(payload)?,
        _ => L4::Other,
    };
    Ok(())
}

fn parse_tcp(payload: &[u8]) -> Result<L4, ()> {
    let tcp = TcpPacket::new_checked(payload).map_err(|_| ())?;
    if usize::from(tcp.header_len()) < TCP_MIN_HEADER_LEN {
        return Err(());
    }
    let all_flags = payload.get(13).copied().ok_or(())?;
    let flags = all_flags & 0x3f;
    let data_len = payload.len().saturating_sub(usize::from(tcp.header_len()));
    let seq_len = data_len as u32 + u32::from(tcp.syn()) + u32::from(tcp.fin());
    let window_scale = if tcp.syn() { window_scale(tcp.options()) } else { None };
    let ports = Ports { src: tcp.src_port(), dst: tcp.dst_port() };
    let segment = TcpSegment {
        seq: tcp.seq_number().0 as u32,
        ack: tcp.ack_number().0 as u32,
        window: tcp.window_len(),
        flags,
        seq_len,
        window_scale,
        all_flags,
        options: tcp_option_kinds(tcp.options()),
        mss: tcp_mss_option(tcp.options()),
    };
    Ok(L4::Tcp { ports, segment })
}

/// The window-scale option in a SYN's options, capped at 14 (RFC 7323).
fn window_scale(mut options: &[u8]) -> Option<u8> {
    while !options.is_empty() {
        let (rest, option) = TcpOption::parse(options).ok()?;
        match option {
            TcpOption::WindowScale(shift) => return Some(shift.min(14)),
            TcpOption::EndOfList => return None,
            _ => options = rest,
        }
    }
    None
}

fn parse_icmp(payload: &[u8]) -> Result<L4, ()> {
    if payload.len() < ICMP_HEADER_LEN {
        return Err(());
    }
    let icmp = Icmpv4Packet::new_checked(payload).map_err(|_| ())?;
    let icmp_type = payload.first().copied().ok_or(())?;
    let code = icmp.msg_code();
    Ok(if let Some((request_type, is_request)) = icmp_query_pair(icmp_type) {
        L4::IcmpQuery { icmp_type, code, request_type, id: icmp.echo_ident(), is_request }
    } else if is_icmp_error(icmp_type) {
        let quoted = payload.get(ICMP_HEADER_LEN..).and_then(parse_quoted);
        L4::IcmpError { icmp_type, code, quoted }
    } else {
        L4::IcmpOther { icmp_type, code }
    })
}

/// For an ICMP query type, its pair's request type and whether it is the request.
pub fn icmp_query_pair(icmp_type: u8) -> Option<(u8, bool)> {
    match icmp_type {
        8 | 13 | 15 | 17 => Some((icmp_type, true)),
        0 => Some((8, false)),
        14 | 16 | 18 => Some((icmp_type - 1, false)),
        _ => None,
    }
}

/// Whether `icmp_type` is an error message (RFC 792/1812): destination
/// unreachable, source quench, redirect, time exceeded, parameter problem.
pub fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
}

/// Parses the IP header + 8 bytes quoted in an ICMP error. The quoted
/// checksum is not checked (routers may have changed TTL on the way).
fn parse_quoted(quoted: &[u8]) -> Option<Quoted> {
    let first = *quoted.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < IPV4_MIN_HEADER_LEN {
        return None;
    }
    let ip = Ipv4Packet::new_unchecked(quoted.get(..header_len)?);
    if ip.frag_offset() != 0 {
        return None;
    }
    let l4 = quoted.get(header_len..)?;
    let proto = u8::from(ip.next_header());
    let transport = match proto {
        proto::TCP | proto::UDP => Transport::Ports {
            src_port: u16::from_be_bytes([*l4.first()?, *l4.get(1)?]),
            dst_port: u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]),
        },
        proto::ICMP => {
            let (request_type, is_request) = icmp_query_pair(*l4.first()?)?;
            let id = u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]);
            Transport::IcmpQuery { request_type, id, is_request }
        }
        _ => Transport::None,
    };
    Some(Quoted { proto, src: u32::from(ip.src_addr()), dst: u32::from(ip.dst_addr()), transport })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mss_option_is_found_as_xt_tcpmss_walks() {
        assert_eq!(tcp_mss_option(&[2, 4, 5, 0xb4]), Some(1460));
        // NOPs and EOL take one byte each; the walk goes on past EOL.
        assert_eq!(tcp_mss_option(&[1, 0, 1, 2, 4, 2, 0x18]), Some(536));
        // A kind-2 option of another length is skipped, the next one read.
        assert_eq!(tcp_mss_option(&[2, 3, 0, 2, 4, 0, 1]), Some(1));
        // Cut by the header's end, or none at all.
        assert_eq!(tcp_mss_option(&[1, 2, 4, 5]), None);
        assert_eq!(tcp_mss_option(&[8, 10, 2, 4, 5, 0xb4, 0, 0, 0, 0]), None);
        assert_eq!(tcp_mss_option(&[]), None);
    }

    /// A valid IPv4 header (20 bytes) for `proto` carrying `payload`.
    fn ipv4(proto: u8, flags_offset: u16, payload: &[u8]) -> alloc::vec::Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut packet = alloc::vec![0x45, 0, 0, 0, 0, 7, 0, 0, 64, proto, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2];
        packet[2..4].copy_from_slice(&total.to_be_bytes());
        packet[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        let sum = checksum::checksum(&packet);
        packet[10..12].copy_from_slice(&sum.to_be_bytes());
        packet.extend_from_slice(payload);
        packet
    }

    #[test]
    fn syn_window_scale_is_parsed() {
        // SYN, data offset 7 (28 bytes): NOP, WSCALE 9, then MSS.
        let mut tcp = [0u8; 28];
        tcp[0..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        tcp[12] = 7 << 4;
        tcp[13] = tcp_flags::SYN;
        tcp[20..28].copy_from_slice(&[1, 3, 3, 9, 2, 4, 5, 0xb4]);
        let meta = parse_ipv4(&ipv4(proto::TCP, 0, &tcp)).unwrap();
        let L4::Tcp { ports, segment } = meta.l4 else { panic!("tcp") };
        assert_eq!(segment.window_scale, Some(9));
        assert_eq!(segment.seq_len, 1);
        assert_eq!(ports, Ports { src: 40000, dst: 80 });
        assert_eq!(meta.l4.ports(), Some(ports));
        assert_eq!(meta.l4.transport(), Transport::Ports { src_port: 40000, dst_port: 80 });
        assert_eq!(meta.l4.icmp(), None);
    }

    #[test]
    fn icmp_error_quotes_are_parsed() {
        let inner = ipv4(proto::UDP, 0, &[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        let mut icmp = alloc::vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&inner);
        let meta = parse_ipv4(&ipv4(proto::ICMP, 0, &icmp)).unwrap();
        let L4::IcmpError { quoted: Some(quoted), .. } = meta.l4 else { panic!("error") };
        assert_eq!(quoted.transport, Transport::Ports { src_port: 5000, dst_port: 53 });
        assert_eq!((meta.l4.icmp(), meta.l4.transport(), meta.l4.ports()), (Some((3, 3)), Transport::None, None));
        // Cut inside the quoted ports: still an error, but unusable for RELATED.
        let meta = parse_ipv4(&ipv4(proto::ICMP, 0, &icmp[..30])).unwrap();
        assert_eq!(meta.l4, L4::IcmpError { icmp_type: 3, code: 3, quoted: None });
    }

    #[test]
    fn icmp_queries_and_others() {
        let reply = parse_ipv4(&ipv4(proto::ICMP, 0, &[0, 0, 0, 0, 0x12, 0x34, 0, 1])).unwrap();
        let query = L4::IcmpQuery { icmp_type: 0, code: 0, request_type: 8, id: 0x1234, is_request: false };
        assert_eq!(reply.l4, query);
        assert_eq!(reply.l4.transport(), Transport::IcmpQuery { request_type: 8, id: 0x1234, is_request: false });
        let advert = parse_ipv4(&ipv4(proto::ICMP, 0, &[9, 0, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!((advert.l4, advert.l4.icmp()), (L4::IcmpOther { icmp_type: 9, code: 0 }, Some((9, 0))));
        let udp = parse_ipv4(&ipv4(proto::UDP, 0, &[0x13, 0x88, 0, 53, 0, 8, 0, 0])).unwrap();
        assert_eq!(udp.l4, L4::Udp { ports: Ports { src: 5000, dst: 53 } });
        let gre = parse_ipv4(&ipv4(47, 0, &[0; 4])).unwrap();
        assert_eq!((gre.l4, gre.l4.transport(), gre.l4.icmp()), (L4::Other, Transport::None, None));
    }

    #[test]
    fn fragments_and_truncation() {
        let more_fragments = 0x2000;
        let tiny = parse_ipv4(&ipv4(proto::TCP, more_fragments, &[0; 12])).unwrap();
        assert_eq!((tiny.l4, tiny.frag_offset, tiny.more_fragments), (L4::LaterFragment, 0, true));
        let mut whole = tiny;
        assert_eq!(parse_transport(&mut whole, &[0; 12]), Err(DropReason::TinyFragment));
        let mut header = [0u8; 20];
        header[..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        header[12] = 0x50;
        parse_transport(&mut whole, &header).unwrap();
        assert_eq!(whole.l4.ports(), Some(Ports { src: 40000, dst: 80 }));
        assert_eq!(parse_ipv4(&ipv4(proto::TCP, 0, &[0; 12])), Err(DropReason::L4Malformed));
        let later = parse_ipv4(&ipv4(proto::TCP, 3, &[0; 4])).unwrap();
        assert_eq!((later.l4, later.frag_offset), (L4::LaterFragment, 3));
        // Offset 8184 * 8 + 100 bytes reaches past 65535.
        assert_eq!(parse_ipv4(&ipv4(proto::UDP, 8184, &[0; 100])), Err(DropReason::Ipv4TotalLength));
        assert_eq!(parse_ipv4(&[0x45]), Err(DropReason::Ipv4Truncated));
        assert_eq!(parse_ipv4(&[]), Err(DropReason::Ipv4Truncated));
    }

    #[test]
    fn non_ipv4_ethertypes_and_bad_arp() {
        let mut frame = [0u8; 60];
        frame[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(parse_ethernet(&frame), Err(DropReason::EtherType));
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse_ethernet(&frame), Err(DropReason::ArpMalformed));
        assert_eq!(parse_ethernet(&frame[..13]), Err(DropReason::EthernetTruncated));
    }
}
