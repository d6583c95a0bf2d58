//! Builders of the answers the firewall sends for a received frame: ICMP
//! errors (time exceeded, destination unreachable) and TCP RSTs, written
//! into a caller-provided buffer.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber as SeqNumber,
};

use super::addr::{is_multicast, mac_is_group};
use super::parse::{tcp_flags, Ipv4Meta, TcpSegment, ETHERNET_HEADER_LEN, IPV4_MIN_HEADER_LEN, L4};
use super::route::is_martian_source;
use crate::flow::RejectWith;

/// TTL of packets the firewall originates (Linux's default).
pub const REPLY_TTL: u8 = 64;
/// Most bytes of the offending datagram (its IP header included) an ICMP
/// error quotes: as much as keeps the error within 576 bytes (RFC 1812
/// 4.3.2.3), which is what Linux's `icmp_send` quotes, so that rules that
/// look at an error's length (`-m length` in OUTPUT) see Linux's lengths.
pub const MAX_QUOTED_LEN: usize = 576 - IPV4_MIN_HEADER_LEN - ICMP_HEADER_LEN;
/// Largest reply frame: Ethernet + IP + ICMP header + the quoted bytes.
pub const MAX_REPLY_LEN: usize = ETHERNET_HEADER_LEN + 576;

const ICMP_HEADER_LEN: usize = 8;
const TCP_HEADER_LEN: usize = 20;

/// Why no reply was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// The output buffer cannot hold the reply.
    BufferTooSmall,
    /// RFC 1122 3.2.2 / RFC 1812 4.3.2.7 forbid answering this packet
    /// (an ICMP error, a later fragment, a broadcast, a martian source), or
    /// a RST was asked for a packet that is not a plain TCP segment (or is a RST).
    NotAnswerable,
}

/// An ICMP error: type, code and the word after the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// ICMP type (3 = destination unreachable, 11 = time exceeded,
    /// 12 = parameter problem).
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
    /// The header's second word (RFC 792): zero, or a parameter problem's
    /// pointer in its top byte.
    pub rest: u32,
}

impl IcmpError {
    /// Time exceeded in transit (type 11, code 0).
    pub const TTL_EXCEEDED: IcmpError = IcmpError { icmp_type: 11, code: 0, rest: 0 };
    /// Destination net unreachable (type 3, code 0).
    pub const NET_UNREACHABLE: IcmpError = IcmpError { icmp_type: 3, code: 0, rest: 0 };

    /// Parameter problem (type 12, code 0) pointing at byte `pointer` of
    /// the quoted IP header.
    pub fn parameter_problem(pointer: u8) -> IcmpError {
        IcmpError { icmp_type: 12, code: 0, rest: u32::from(pointer) << 24 }
    }

    /// Fragmentation needed and DF set (type 3, code 4) with the MTU of
    /// the interface the packet would have left by (RFC 1191: the low 16
    /// bits of the second word).
    pub fn fragmentation_needed(mtu: u16) -> IcmpError {
        IcmpError { icmp_type: 3, code: 4, rest: u32::from(mtu) }
    }

    /// The ICMP error for a reject; `None` for `TcpReset`.
    pub fn for_reject(with: RejectWith) -> Option<IcmpError> {
        let code = match with {
            RejectWith::NetUnreachable => 0,
            RejectWith::HostUnreachable => 1,
            RejectWith::ProtoUnreachable => 2,
            RejectWith::PortUnreachable => 3,
            RejectWith::NetProhibited => 9,
            RejectWith::HostProhibited => 10,
            RejectWith::AdminProhibited => 13,
            RejectWith::TcpReset => return None,
        };
        Some(IcmpError { icmp_type: 3, code, rest: 0 })
    }
}

/// The interface a reply leaves by: its MAC and IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyFrom {
    /// Source MAC of the reply.
    pub mac: [u8; 6],
    /// Source address of an ICMP error, host order.
    pub addr: u32,
}

/// Whether RFC 1122/1812 allow an ICMP error about `meta`, received with
/// link-layer destination `eth_dst`.
pub fn may_send_icmp_error(meta: &Ipv4Meta, eth_dst: [u8; 6], ip_dst_is_broadcast: bool) -> bool {
    let about_error = matches!(meta.l4, L4::IcmpError { .. });
    let later_fragment = meta.frag_offset != 0;
    let link_broadcast = mac_is_group(&eth_dst);
    let ip_multicast = is_multicast(meta.dst);
    let refused = about_error || later_fragment || link_broadcast || ip_dst_is_broadcast || ip_multicast;
    !refused && !is_martian_source(meta.src)
}

/// Writes into `out` an ICMP error about the packet in `frame` (which
/// starts at its Ethernet header and was parsed into `meta`): Ethernet back
/// to the sender's MAC, IP from `from.addr` to the packet's source, and the
/// offending datagram, at most [`MAX_QUOTED_LEN`] bytes of it, as Linux
/// quotes (RFC 792 asks for the header and 8 bytes at least). Returns the
/// frame length.
pub fn build_icmp_error(
    frame: &[u8],
    meta: &Ipv4Meta,
    error: IcmpError,
    from: ReplyFrom,
    out: &mut [u8],
) -> Result<usize, ReplyError> {
    let ip_start = ETHERNET_HEADER_LEN;
    // What the frame holds of the datagram, without Ethernet padding. (A
    // datagram judged whole after reassembly is quoted from its first
    // fragment, header included; Linux quotes the reassembled datagram.)
    let held = frame.len().saturating_sub(ip_start).min(meta.total_len);
    let quoted_len = held.min(MAX_QUOTED_LEN).max(meta.header_len);
    let quoted = frame.get(ip_start..ip_start + quoted_len).ok_or(ReplyError::NotAnswerable)?;
    let icmp_len = ICMP_HEADER_LEN + quoted_len;
    let ip = Ipv4Repr {
        src_addr: Ipv4Address::from(from.addr),
        dst_addr: Ipv4Address::from(meta.src),
        next_header: IpProtocol::Icmp,
        payload_len: icmp_len,
        hop_limit: REPLY_TTL,
    };
    let icmp_out = emit_headers(frame, from.mac, &ip, out)?;
    let icmp_buf = icmp_out.get_mut(..icmp_len).ok_or(ReplyError::BufferTooSmall)?;
    icmp_buf.fill(0);
    let (header, data) = icmp_buf.split_at_mut(ICMP_HEADER_LEN);
    data.copy_from_slice(quoted);
    if let Some(icmp_type) = header.first_mut() {
        *icmp_type = error.icmp_type;
    }
    if let Some(rest) = header.get_mut(4..8) {
        rest.copy_from_slice(&error.rest.to_be_bytes());
    }
    let mut icmp = Icmpv4Packet::new_unchecked(icmp_buf);
    icmp.set_msg_code(error.code);
    icmp.fill_checksum();
    Ok(ETHERNET_HEADER_LEN + IPV4_MIN_HEADER_LEN + icmp_len)
}

/// Writes into `out` a TCP RST answering the segment in `frame`, as RFC 793
/// ("Reset Generation") says: if the segment has ACK, the RST carries
/// `seq = SEG.ACK` and no ACK; else `seq = 0`, ACK set and `ack = SEG.SEQ +
/// SEG.LEN`. It appears to come from the segment's destination.
pub fn build_tcp_reset(frame: &[u8], meta: &Ipv4Meta, from_mac: [u8; 6], out: &mut [u8]) -> Result<usize, ReplyError> {
    let L4::Tcp { ports, segment } = meta.l4 else {
        return Err(ReplyError::NotAnswerable);
    };
    if segment.flags & tcp_flags::RST != 0 || meta.is_fragment() {
        return Err(ReplyError::NotAnswerable);
    }
    let (seq, ack) = reset_numbers(&segment);
    let tcp = TcpRepr {
        src_port: ports.dst,
        dst_port: ports.src,
        control: TcpControl::Rst,
        seq_number: SeqNumber(seq as i32),
        ack_number: ack.map(|a| SeqNumber(a as i32)),
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: Ipv4Address::from(meta.dst),
        dst_addr: Ipv4Address::from(meta.src),
        next_header: IpProtocol::Tcp,
        payload_len: TCP_HEADER_LEN,
        hop_limit: REPLY_TTL,
    };
    let tcp_out = emit_headers(frame, from_mac, &ip, out)?;
    let tcp_buf = tcp_out.get_mut(..TCP_HEADER_LEN).ok_or(ReplyError::BufferTooSmall)?;
    let mut packet = TcpPacket::new_unchecked(tcp_buf);
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr), IpAddress::Ipv4(ip.dst_addr));
    tcp.emit(&mut packet, &src, &dst, &ChecksumCapabilities::default());
    Ok(ETHERNET_HEADER_LEN + IPV4_MIN_HEADER_LEN + TCP_HEADER_LEN)
}

/// RFC 793 reset numbers: (seq, Some(ack) when ACK is set).
fn reset_numbers(segment: &TcpSegment) -> (u32, Option<u32>) {
    if segment.flags & tcp_flags::ACK != 0 {
        (segment.ack, None)
    } else {
        (0, Some(segment.seq.wrapping_add(segment.seq_len)))
    }
}

/// Emits the Ethernet header (back to `frame`'s source MAC) and `ip` into
/// `out`; returns the rest of `out` after the IP header.
fn emit_headers<'o>(
    frame: &[u8],
    from_mac: [u8; 6],
    ip: &Ipv4Repr,
    out: &'o mut [u8],
) -> Result<&'o mut [u8], ReplyError> {
    let total = ETHERNET_HEADER_LEN + IPV4_MIN_HEADER_LEN + ip.payload_len;
    if out.len() < total {
        return Err(ReplyError::BufferTooSmall);
    }
    let sender = frame.get(6..12).ok_or(ReplyError::NotAnswerable)?;
    let eth = EthernetRepr {
        src_addr: EthernetAddress(from_mac),
        dst_addr: EthernetAddress::from_bytes(sender),
        ethertype: EthernetProtocol::Ipv4,
    };
    let (eth_buf, rest) = out.split_at_mut(ETHERNET_HEADER_LEN);
    eth.emit(&mut EthernetFrame::new_unchecked(eth_buf));
    let (ip_buf, rest) = rest.split_at_mut(IPV4_MIN_HEADER_LEN);
    ip.emit(&mut Ipv4Packet::new_unchecked(ip_buf), &ChecksumCapabilities::default());
    Ok(rest)
}
