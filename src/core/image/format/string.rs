//! `-m string` in the image (Linux's `xt_string`, revision 1): one
//! [`StringSpec`] record per rule in the rule extras' string table, which
//! the rule's residual names by number (bytes 22..24, present and negated
//! by byte 46). The search is on the packet from its IP header: Linux's
//! `skb_find_text` over `[from, to)` at the IP hooks, where `skb->data` is
//! the network header.

use super::{get_u16, head, put};

/// `XT_STRING_MAX_PATTERN_SIZE`: the longest pattern iptables and the
/// kernel take.
pub const XT_STRING_MAX_PATTERN_SIZE: usize = 128;
/// Most `-m string` rules an image may have (the residual names its
/// record with a u16).
pub const MAX_STRING_RULES: usize = 65_535;

/// One rule's `-m string`: where to search, what, how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringSpec {
    /// `--from`: the first byte searched, from the IP header (default 0).
    pub from: u16,
    /// `--to`: the search ends before this byte (default 65535: the whole
    /// packet); a match must lie wholly before it, as in Linux 6.x.
    pub to: u16,
    /// `--icase`: bytes compared after Linux's `toupper` (Latin-1).
    pub icase: bool,
    /// `!`: the match holds when the pattern is not found.
    pub invert: bool,
    /// `--algo kmp` (else `bm`): both give the same answers here; kept so
    /// the rule prints back as it was written.
    pub kmp: bool,
    /// Bytes of `pattern` used (1..=128; 0 only in a hand-made image,
    /// which then finds nothing).
    pub len: u8,
    /// The pattern (`--string` or `--hex-string`), `len` bytes of it.
    pub pattern: [u8; XT_STRING_MAX_PATTERN_SIZE],
}

impl Default for StringSpec {
    fn default() -> Self {
        StringSpec {
            from: 0,
            to: u16::MAX,
            icase: false,
            invert: false,
            kmp: false,
            len: 0,
            pattern: [0; XT_STRING_MAX_PATTERN_SIZE],
        }
    }
}

/// Linux's `toupper` (lib/ctype.c, Latin-1): `a`-`z` and the Latin-1
/// lower-case letters (0xDF-0xFF but 0xF7) lose 0x20. So `ß` (0xDF)
/// becomes `¿` (0xBF), as measured with `--icase` on Linux 6.18.
#[inline]
pub fn linux_toupper(c: u8) -> u8 {
    if c.is_ascii_lowercase() || (c >= 0xDF && c != 0xF7) {
        c - 0x20
    } else {
        c
    }
}

impl StringSpec {
    /// Bytes per record: from u16, to u16, flags u8 (1 icase, 2 invert,
    /// 4 kmp), length u8, two zero bytes, then the 128 pattern bytes.
    pub const LEN: usize = 8 + XT_STRING_MAX_PATTERN_SIZE;

    /// The pattern's bytes.
    pub fn pattern(&self) -> &[u8] {
        self.pattern.get(..usize::from(self.len)).unwrap_or(&self.pattern)
    }

    /// A record for `pattern` (at most 128 bytes: more is cut) with the
    /// defaults (`--from 0 --to 65535`, bm, case matters, not negated).
    pub fn new(pattern: &[u8]) -> StringSpec {
        let mut s = StringSpec::default();
        let n = pattern.len().min(XT_STRING_MAX_PATTERN_SIZE);
        if let (Some(dst), Some(src)) = (s.pattern.get_mut(..n), pattern.get(..n)) {
            dst.copy_from_slice(src);
        }
        s.len = n as u8;
        s
    }

    /// The record's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        put(&mut b, 0, &self.from.to_le_bytes());
        put(&mut b, 2, &self.to.to_le_bytes());
        let flags = u8::from(self.icase) | u8::from(self.invert) << 1 | u8::from(self.kmp) << 2;
        put(&mut b, 4, &[flags, self.len.min(XT_STRING_MAX_PATTERN_SIZE as u8)]);
        put(&mut b, 8, &self.pattern);
        b
    }

    /// Reads a record (`None` if `b` is short; a length past 128 is 128).
    pub fn decode(b: &[u8]) -> Option<StringSpec> {
        let b: &[u8; Self::LEN] = head(b)?;
        let mut pattern = [0u8; XT_STRING_MAX_PATTERN_SIZE];
        pattern.copy_from_slice(b.get(8..)?);
        let flags = b[4];
        Some(StringSpec {
            from: get_u16(b, 0),
            to: get_u16(b, 2),
            icase: flags & 1 != 0,
            invert: flags & 2 != 0,
            kmp: flags & 4 != 0,
            len: b[5].min(XT_STRING_MAX_PATTERN_SIZE as u8),
            pattern,
        })
    }

    /// Whether the match holds for `packet` (from its IP header to its
    /// end): the pattern found wholly within bytes `[from, to)`, XOR `!`.
    pub fn holds(&self, packet: &[u8]) -> bool {
        self.found(packet) != self.invert
    }

    /// Whether the pattern occurs wholly within `packet[from..to]`.
    /// Knuth-Morris-Pratt: at most 2 x (window) byte comparisons plus the
    /// pattern's table (at most 128 bytes, on the stack): bounded, no
    /// allocation, whatever the pattern.
    pub fn found(&self, packet: &[u8]) -> bool {
        let pattern = self.pattern();
        let end = usize::from(self.to).min(packet.len());
        let (Some(window), false) = (packet.get(usize::from(self.from)..end), pattern.is_empty()) else {
            return false;
        };
        let fold = |c: u8| if self.icase { linux_toupper(c) } else { c };
        // failure[i]: the longest proper border of pattern[..=i].
        let mut failure = [0u8; XT_STRING_MAX_PATTERN_SIZE];
        let mut k = 0usize;
        for i in 1..pattern.len() {
            let c = fold(pattern.get(i).copied().unwrap_or(0));
            while k > 0 && fold(pattern.get(k).copied().unwrap_or(0)) != c {
                k = usize::from(failure.get(k - 1).copied().unwrap_or(0));
            }
            if fold(pattern.get(k).copied().unwrap_or(0)) == c {
                k += 1;
            }
            if let Some(f) = failure.get_mut(i) {
                *f = k as u8;
            }
        }
        let mut q = 0usize;
        for &t in window {
            let c = fold(t);
            while q > 0 && fold(pattern.get(q).copied().unwrap_or(0)) != c {
                q = usize::from(failure.get(q - 1).copied().unwrap_or(0));
            }
            if fold(pattern.get(q).copied().unwrap_or(0)) == c {
                q += 1;
            }
            if q == pattern.len() {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious search, for comparison.
    fn naive(s: &StringSpec, packet: &[u8]) -> bool {
        let end = usize::from(s.to).min(packet.len());
        let p: alloc::vec::Vec<u8> = s.pattern().iter().map(|&c| if s.icase { linux_toupper(c) } else { c }).collect();
        let Some(w) = packet.get(usize::from(s.from)..end) else { return false };
        let w: alloc::vec::Vec<u8> = w.iter().map(|&c| if s.icase { linux_toupper(c) } else { c }).collect();
        !p.is_empty() && w.windows(p.len()).any(|x| x == p.as_slice())
    }

    #[test]
    fn records_round_trip() {
        let mut s = StringSpec::new(b"facebook.com");
        for (from, to, icase, invert, kmp) in [(0, u16::MAX, false, false, false), (50, 1000, true, true, true)] {
            s = StringSpec { from, to, icase, invert, kmp, ..s };
            assert_eq!(StringSpec::decode(&s.encode()), Some(s));
        }
        let full = StringSpec::new(&[0xab; 200]);
        assert_eq!(full.len, 128);
        assert_eq!(StringSpec::decode(&full.encode()), Some(full));
        assert_eq!(StringSpec::decode(&[0; StringSpec::LEN - 1]), None);
    }

    #[test]
    fn the_pattern_must_lie_wholly_within_from_to() {
        // Measured on Linux 6.18: "XYZ" at bytes 28..31 of a UDP datagram
        // matches with --to 31 and more, not with --to 30; --from 28, not 29.
        let mut packet = [0u8; 31];
        packet[28..].copy_from_slice(b"XYZ");
        let s = StringSpec::new(b"XYZ");
        let packet: &[u8] = &packet;
        let with = |from: u16, to: u16| {
            let mut t = s;
            t.from = from;
            t.to = to;
            t.found(packet)
        };
        assert!(with(0, 31) && with(0, 32) && with(0, u16::MAX) && !with(0, 30) && !with(0, 28));
        assert!(with(28, 31) && !with(29, u16::MAX) && !with(31, u16::MAX) && !with(40, 50));
        assert!(StringSpec { invert: true, to: 30, ..s }.holds(packet));
        assert!(!StringSpec { invert: true, ..s }.holds(packet));
        assert!(!StringSpec { len: 0, ..s }.found(packet), "an empty pattern finds nothing");
    }

    #[test]
    fn icase_folds_as_linux_toupper() {
        let s = StringSpec { icase: true, ..StringSpec::new(b"aB") };
        assert!(s.found(b"xxAbx") && !StringSpec { icase: false, ..s }.found(b"xxAbx"));
        // Measured: |df| --icase finds 0xbf, |e9| finds 0xc9; |ff| not 0xdf, |f7| not 0xd7.
        let one = |p: u8, t: u8| StringSpec { icase: true, ..StringSpec::new(&[p]) }.found(&[t]);
        assert!(one(0xdf, 0xbf) && one(0xe9, 0xc9) && !one(0xff, 0xdf) && !one(0xf7, 0xd7));
    }

    #[test]
    fn kmp_agrees_with_the_obvious_search() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let alphabet = [b'a', b'b', b'A', 0xdf, 0xbf][..(next() % 4 + 2) as usize].to_vec();
            let pick = |r: u64| alphabet[(r % alphabet.len() as u64) as usize];
            let plen = (next() % 6 + 1) as usize;
            let pattern: alloc::vec::Vec<u8> = (0..plen).map(|_| pick(next())).collect();
            let packet: alloc::vec::Vec<u8> = (0..(next() % 40) as usize).map(|_| pick(next())).collect();
            let s = StringSpec {
                from: (next() % 12) as u16,
                to: if next() % 2 == 0 { u16::MAX } else { (next() % 44) as u16 },
                icase: next() % 2 == 0,
                ..StringSpec::new(&pattern)
            };
            assert_eq!(s.found(&packet), naive(&s, &packet), "{s:?} in {packet:?}");
        }
    }
}
