//! Rewriting a packet for NAT in place: IPv4 addresses, TCP/UDP ports and
//! ICMP query ids, with every checksum they enter updated incrementally
//! (RFC 1624), as Linux's `nf_nat_ipv4_manip_pkt` does; and ICMP errors,
//! whose quoted packet is translated back too (`nf_nat_icmp_reply_translation`).
//!
//! Offloads: a frame with a partial checksum (virtio-net `NEEDS_CSUM`,
//! Linux `CHECKSUM_PARTIAL`) holds the pseudo-header sum, not a checksum,
//! in its TCP/UDP checksum field. Address changes enter that sum; port
//! changes do not (the device sums the ports with the data), as in
//! Linux's `inet_proto_csum_replace4`. A 64 KiB TSO segment is so
//! rewritten once.

use super::Rewrite;
use crate::flow::proto;
use crate::net::checksum::{self, finish, sum_words};
use crate::net::parse::{Ipv4Meta, L4};

/// Why a packet could not be rewritten (it is dropped, counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatError {
    /// The bytes do not hold what `meta` describes.
    Truncated,
    /// `rewrite_icmp_error` was given a packet that is no ICMP error.
    NotIcmpError,
}

const SRC_AT: usize = 12;
const DST_AT: usize = 16;
const IP_SUM_AT: usize = 10;
const TCP_SUM_AT: usize = 16;
const UDP_SUM_AT: usize = 6;
const ICMP_SUM_AT: usize = 2;
const ICMP_ID_AT: usize = 4;
/// ICMP error: type, code, checksum, 4 unused bytes, then the quoted packet.
const ICMP_QUOTE_AT: usize = 8;

/// Rewrites the IPv4 packet at the start of `ip`, as `meta` parsed it, to
/// leave from `to.src` to `to.dst`. TCP and UDP ports follow the
/// endpoints; an ICMP query's id becomes the requester's port (`to.src`'s
/// for a request, `to.dst`'s for a reply); a later fragment has only its
/// addresses (the transport checksum is in the first). `partial`: the
/// transport checksum field holds a partial (offloaded) sum.
pub fn rewrite_packet(ip: &mut [u8], meta: &Ipv4Meta, to: Rewrite, partial: bool) -> Result<(), NatError> {
    let header_len = meta.header_len;
    let (header, payload) = ip.split_at_mut_checked(header_len).ok_or(NatError::Truncated)?;
    let old_src = get_u32(header, SRC_AT)?;
    let old_dst = get_u32(header, DST_AT)?;
    replace_u32(header, SRC_AT, IP_SUM_AT, to.src.addr)?;
    replace_u32(header, DST_AT, IP_SUM_AT, to.dst.addr)?;
    let addresses = [(old_src, to.src.addr), (old_dst, to.dst.addr)];
    match meta.l4 {
        L4::Tcp { .. } => rewrite_ports(payload, TCP_SUM_AT, addresses, to, partial),
        L4::Udp { .. } => {
            // UDP checksum 0: the sender computed none, and none is added.
            if get_u16(payload, UDP_SUM_AT)? == 0 && !partial {
                return set_ports(payload, to);
            }
            rewrite_ports(payload, UDP_SUM_AT, addresses, to, partial)?;
            // A computed 0 is sent as 0xffff (RFC 768), as Linux's CSUM_MANGLED_0.
            if !partial && get_u16(payload, UDP_SUM_AT)? == 0 {
                put_u16(payload, UDP_SUM_AT, 0xffff)?;
            }
            Ok(())
        }
        L4::IcmpQuery { is_request, .. } => {
            let id = if is_request { to.src.port } else { to.dst.port };
            let old = get_u16(payload, ICMP_ID_AT)?;
            put_u16(payload, ICMP_ID_AT, id)?;
            let sum = checksum::update(get_u16(payload, ICMP_SUM_AT)?, old, id);
            put_u16(payload, ICMP_SUM_AT, sum)
        }
        _ => Ok(()),
    }
}

/// Rewrites an ICMP error (at the start of `ip`, parsed as `meta`): the
/// outer header to `outer`, and the quoted packet to `inner` (its
/// addresses, its IP header checksum, its ports or query id, and its
/// transport checksum when the quote reaches it); the ICMP checksum is
/// then computed anew over the message, as Linux does.
pub fn rewrite_icmp_error(ip: &mut [u8], meta: &Ipv4Meta, outer: Rewrite, inner: Rewrite) -> Result<(), NatError> {
    let L4::IcmpError { .. } = meta.l4 else {
        return Err(NatError::NotIcmpError);
    };
    let header_len = meta.header_len;
    let message_len = meta.total_len.checked_sub(header_len).ok_or(NatError::Truncated)?;
    let (header, payload) = ip.split_at_mut_checked(header_len).ok_or(NatError::Truncated)?;
    replace_u32(header, SRC_AT, IP_SUM_AT, outer.src.addr)?;
    replace_u32(header, DST_AT, IP_SUM_AT, outer.dst.addr)?;
    let message = payload.get_mut(..message_len).ok_or(NatError::Truncated)?;
    let quote = message.get_mut(ICMP_QUOTE_AT..).ok_or(NatError::Truncated)?;
    rewrite_quote(quote, inner)?;
    put_u16(message, ICMP_SUM_AT, 0)?;
    let sum = checksum::checksum(message);
    put_u16(message, ICMP_SUM_AT, sum)
}

/// The quoted packet of an ICMP error: as much of it as the error holds.
fn rewrite_quote(quote: &mut [u8], to: Rewrite) -> Result<(), NatError> {
    let header_len = usize::from(quote.first().ok_or(NatError::Truncated)? & 0x0f) * 4;
    let protocol = *quote.get(9).ok_or(NatError::Truncated)?;
    let (header, rest) = quote.split_at_mut_checked(header_len).ok_or(NatError::Truncated)?;
    let old_src = get_u32(header, SRC_AT)?;
    let old_dst = get_u32(header, DST_AT)?;
    replace_u32(header, SRC_AT, IP_SUM_AT, to.src.addr)?;
    replace_u32(header, DST_AT, IP_SUM_AT, to.dst.addr)?;
    let addresses = [(old_src, to.src.addr), (old_dst, to.dst.addr)];
    match protocol {
        proto::TCP | proto::UDP => {
            let sum_at = if protocol == proto::TCP { TCP_SUM_AT } else { UDP_SUM_AT };
            // Linux updates the quoted checksum only when it is quoted
            // (and, for UDP, not 0).
            let quoted = get_u16(rest, sum_at).is_ok_and(|sum| sum != 0 || protocol == proto::TCP);
            if quoted {
                rewrite_ports(rest, sum_at, addresses, to, false)
            } else {
                set_ports(rest, to)
            }
        }
        proto::ICMP => {
            // A quoted echo request: its id is the requester's (the source's).
            let id = to.src.port;
            let old = get_u16(rest, ICMP_ID_AT)?;
            put_u16(rest, ICMP_ID_AT, id)?;
            if let Ok(sum) = get_u16(rest, ICMP_SUM_AT) {
                put_u16(rest, ICMP_SUM_AT, checksum::update(sum, old, id))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// TCP/UDP: new ports, and the checksum at `sum_at` updated for the
/// pseudo header's addresses and (unless `partial`) the ports.
fn rewrite_ports(
    l4: &mut [u8],
    sum_at: usize,
    addresses: [(u32, u32); 2],
    to: Rewrite,
    partial: bool,
) -> Result<(), NatError> {
    let old_ports = [get_u16(l4, 0)?, get_u16(l4, 2)?];
    set_ports(l4, to)?;
    let mut sum = get_u16(l4, sum_at)?;
    // A partial field holds the folded pseudo-header sum itself, not its
    // complement: update its complement and complement back.
    if partial {
        sum = !sum;
    }
    for (old, new) in addresses {
        sum = update_u32(sum, old, new);
    }
    if !partial {
        sum = checksum::update(sum, old_ports[0], to.src.port);
        sum = checksum::update(sum, old_ports[1], to.dst.port);
    }
    put_u16(l4, sum_at, if partial { !sum } else { sum })
}

fn set_ports(l4: &mut [u8], to: Rewrite) -> Result<(), NatError> {
    put_u16(l4, 0, to.src.port)?;
    put_u16(l4, 2, to.dst.port)
}

/// Writes `value` at `at` and updates the checksum at `sum_at` of the same slice.
fn replace_u32(bytes: &mut [u8], at: usize, sum_at: usize, value: u32) -> Result<(), NatError> {
    let old = get_u32(bytes, at)?;
    let field = bytes.get_mut(at..at + 4).ok_or(NatError::Truncated)?;
    field.copy_from_slice(&value.to_be_bytes());
    let sum = update_u32(get_u16(bytes, sum_at)?, old, value);
    put_u16(bytes, sum_at, sum)
}

/// RFC 1624 for a 32-bit field: both of its words at once.
fn update_u32(sum: u16, old: u32, new: u32) -> u16 {
    let folded = sum_words(u32::from(!sum), &(!old).to_be_bytes());
    finish(sum_words(folded, &new.to_be_bytes()))
}

fn get_u16(bytes: &[u8], at: usize) -> Result<u16, NatError> {
    match bytes.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(NatError::Truncated),
    }
}

fn get_u32(bytes: &[u8], at: usize) -> Result<u32, NatError> {
    match bytes.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(NatError::Truncated),
    }
}

fn put_u16(bytes: &mut [u8], at: usize, value: u16) -> Result<(), NatError> {
    bytes.get_mut(at..at + 2).ok_or(NatError::Truncated)?.copy_from_slice(&value.to_be_bytes());
    Ok(())
}
