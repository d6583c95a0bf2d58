//! Interface MTUs and IPv4 fragmentation of a packet too large for its
//! output interface (RFC 791), cut as Linux's `ip_do_fragment` cuts it.

use super::checksum;

/// An interface's MTU unless the rules file, the command line or DHCP say
/// otherwise (Ethernet's, as Linux gives an Ethernet device).
pub const DEFAULT_MTU: u16 = 1500;
/// The smallest MTU an interface may have (RFC 791: every host must take
/// 68-byte datagrams; Linux's `IPV4_MIN_MTU`).
pub const MIN_MTU: u16 = 68;
/// The largest MTU an interface may have: a jumbo frame. The transmit
/// buffers that carry fragments and segments are sized for it.
pub const MAX_MTU: u16 = 9000;

const FLAG_DF: u8 = 0x40;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;
const MIN_HEADER: usize = 20;
/// IP option type bytes: end of list, no-op, and the "copied" flag that
/// says an option goes into every fragment (RFC 791).
const OPTION_END: u8 = 0;
const OPTION_NOP: u8 = 1;
const OPTION_COPIED: u8 = 0x80;

/// Whether the IPv4 header at the start of `ip` has Don't Fragment set.
pub fn dont_fragment(ip: &[u8]) -> bool {
    ip.get(6).is_some_and(|flags| flags & FLAG_DF != 0)
}

/// The MTU an interface ends up with: `wanted` (the rules file, the command
/// line or DHCP) brought into [`MIN_MTU`]..=[`MAX_MTU`], [`DEFAULT_MTU`]
/// when nothing says.
pub fn clamp_mtu(wanted: Option<u16>) -> u16 {
    wanted.map_or(DEFAULT_MTU, |mtu| mtu.clamp(MIN_MTU, MAX_MTU))
}

/// How one IPv4 packet is cut into fragments that fit an MTU: every
/// fragment but the last carries the same multiple of 8 payload bytes.
/// Later fragments keep the header's length, with the options RFC 791 does
/// not copy turned into no-ops (Linux's `ip_options_fragment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragmenter {
    header_len: usize,
    payload_len: usize,
    /// Payload bytes per fragment (a multiple of 8).
    chunk: usize,
    /// Offset of the packet's payload in its datagram (it may be a
    /// fragment itself), in bytes.
    base: usize,
    /// Whether the packet itself had More Fragments.
    more_after: bool,
}

impl Fragmenter {
    /// The plan for the IPv4 packet at the start of `ip` (its header and
    /// total length must be consistent) and `mtu`; `None` if the packet is
    /// malformed or its header leaves no room for 8 payload bytes.
    pub fn new(ip: &[u8], mtu: u16) -> Option<Fragmenter> {
        let header_len = usize::from(ip.first()? & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
        if header_len < MIN_HEADER || total < header_len || total > ip.len() {
            return None;
        }
        let chunk = usize::from(mtu).checked_sub(header_len)? & !7;
        let field = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
        (chunk > 0).then_some(Fragmenter {
            header_len,
            payload_len: total - header_len,
            chunk,
            base: usize::from(field & OFFSET_MASK) * 8,
            more_after: field & FLAG_MF != 0,
        })
    }

    /// The number of fragments.
    pub fn count(&self) -> usize {
        self.payload_len.div_ceil(self.chunk).max(1)
    }

    /// The length of the largest fragment (the first).
    pub fn max_len(&self) -> usize {
        self.header_len + self.chunk.min(self.payload_len)
    }

    /// Writes fragment `index` of the packet `ip` into `out` and returns its
    /// length; `None` past the last fragment, when `out` is too short, or
    /// when an offset would not fit the 13-bit field.
    pub fn write(&self, ip: &[u8], index: usize, out: &mut [u8]) -> Option<usize> {
        let start = index.checked_mul(self.chunk)?;
        if index >= self.count() {
            return None;
        }
        let end = start.saturating_add(self.chunk).min(self.payload_len);
        let len = self.header_len + (end - start);
        let offset = (self.base + start) / 8;
        if offset > usize::from(OFFSET_MASK) {
            return None;
        }
        let more = end < self.payload_len || self.more_after;
        let (header, payload) = out.get_mut(..len)?.split_at_mut(self.header_len);
        header.copy_from_slice(ip.get(..self.header_len)?);
        payload.copy_from_slice(ip.get(self.header_len + start..self.header_len + end)?);
        if index > 0 {
            blank_uncopied_options(header.get_mut(MIN_HEADER..)?);
        }
        let field = offset as u16 | if more { FLAG_MF } else { 0 };
        put_u16(header, 2, len as u16)?;
        put_u16(header, 6, field)?;
        refresh_header_checksum(header)?;
        Some(len)
    }
}

/// Turns the options without the "copied" flag into no-ops, keeping the
/// header's length (Linux's `ip_options_fragment`). A malformed option
/// list is left as it is from there on.
fn blank_uncopied_options(options: &mut [u8]) {
    let mut at = 0;
    while let Some(&kind) = options.get(at) {
        match kind {
            OPTION_END => return,
            OPTION_NOP => at += 1,
            _ => {
                let len = usize::from(options.get(at + 1).copied().unwrap_or(0));
                let Some(option) = options.get_mut(at..at + len).filter(|_| len >= 2) else {
                    return;
                };
                if kind & OPTION_COPIED == 0 {
                    option.fill(OPTION_NOP);
                }
                at += len;
            }
        }
    }
}

/// Writes `value` big-endian at `at`.
pub(super) fn put_u16(bytes: &mut [u8], at: usize, value: u16) -> Option<()> {
    bytes.get_mut(at..at + 2)?.copy_from_slice(&value.to_be_bytes());
    Some(())
}

/// Recomputes the checksum of the IPv4 header `header` (all of it).
pub(super) fn refresh_header_checksum(header: &mut [u8]) -> Option<()> {
    put_u16(header, 10, 0)?;
    let sum = checksum::checksum(header);
    put_u16(header, 10, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20-byte header (plus `options`) and `payload_len` bytes counting up.
    fn packet(options: &[u8], payload_len: usize, field: u16) -> Vec<u8> {
        let header_len = 20 + options.len();
        let total = header_len + payload_len;
        let mut p = vec![0x40 | (header_len / 4) as u8, 0];
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&[0x12, 0x34]);
        p.extend_from_slice(&field.to_be_bytes());
        p.extend_from_slice(&[64, 17, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2]);
        p.extend_from_slice(options);
        p.extend((0..payload_len).map(|i| i as u8));
        refresh_header_checksum(&mut p[..header_len]).unwrap();
        p
    }

    fn fragments(ip: &[u8], mtu: u16) -> Vec<Vec<u8>> {
        let plan = Fragmenter::new(ip, mtu).unwrap();
        let mut out = vec![0u8; 9100];
        (0..plan.count())
            .map(|i| {
                let len = plan.write(ip, i, &mut out).unwrap();
                out[..len].to_vec()
            })
            .collect()
    }

    #[test]
    fn cuts_on_8_byte_boundaries_with_offsets_flags_and_checksums() {
        let ip = packet(&[], 1430, 0);
        let parts = fragments(&ip, 1000);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [996, 20 + 1430 - 976]);
        assert_eq!(u16::from_be_bytes([parts[0][6], parts[0][7]]), FLAG_MF);
        assert_eq!(u16::from_be_bytes([parts[1][6], parts[1][7]]), 976 / 8);
        for part in &parts {
            assert_eq!(checksum::checksum(&part[..20]), 0, "header checksum verifies");
            assert_eq!(part[4..6], [0x12, 0x34], "same identification");
        }
        assert!(Fragmenter::new(&ip, 1000).unwrap().write(&ip, 2, &mut [0; 2000]).is_none());
        // A fragment refragmented keeps its place and its More Fragments.
        let middle = packet(&[], 96, FLAG_MF | 100);
        let parts = fragments(&middle, 68);
        assert_eq!(parts.len(), 2);
        assert_eq!(u16::from_be_bytes([parts[1][6], parts[1][7]]), FLAG_MF | (100 + 6));
    }

    #[test]
    fn later_fragments_keep_only_copied_options() {
        // Record route (7, not copied), then a copied option (0x94, router
        // alert), then end of list.
        let options = [7, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0, 0];
        let ip = packet(&options, 40, 0);
        let parts = fragments(&ip, 48);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0][20..32], options, "the first fragment has them all");
        for part in &parts[1..] {
            assert_eq!(part[20..32], [1, 1, 1, 1, 1, 1, 1, 0x94, 4, 0, 0, 0]);
            assert_eq!(checksum::checksum(&part[..32]), 0);
        }
        // RFC 791's 68: a 60-byte header and 8 bytes of payload.
        assert_eq!(Fragmenter::new(&packet(&[0; 40], 16, 0), 68).map(|f| f.count()), Some(2));
        assert!(Fragmenter::new(&packet(&[0; 40], 8, 0), 67).is_none(), "no room for 8 bytes");
    }

    #[test]
    fn refuses_what_it_cannot_cut() {
        let ip = packet(&[], 100, 0);
        assert!(Fragmenter::new(&ip[..50], 68).is_none(), "total length beyond the bytes");
        assert!(Fragmenter::new(&[0x44; 40], 68).is_none(), "IHL below 5");
        let late = packet(&[], 64, OFFSET_MASK);
        let plan = Fragmenter::new(&late, 68).unwrap();
        assert_eq!(plan.write(&late, 1, &mut [0; 100]), None, "offset past 13 bits");
        assert!(dont_fragment(&packet(&[], 0, 0x4000)) && !dont_fragment(&ip));
        assert_eq!((clamp_mtu(None), clamp_mtu(Some(20)), clamp_mtu(Some(65000))), (1500, 68, 9000));
    }
}
