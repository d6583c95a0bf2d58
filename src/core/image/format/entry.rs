//! The entry record, the one the lookup reads per packet: its owned form
//! for the writer and a zero-copy view for the reader, sharing one set of
//! named offsets.

use super::{get_u16, get_u32, head, put};

/// An entry record: one box of one rule.
///
/// | offset | field |
/// |---|---|
/// | 0  | source address (u32) |
/// | 4  | destination address (u32) |
/// | 8  | first range: source ports or ICMP types (u16 low, u16 high) |
/// | 12 | second range: destination ports or ICMP codes (u16 low, u16 high) |
/// | 16 | rule number (24 bits), protocol (u8) |
/// | 20 | source prefix length (bits 0-5), 0x40 input interface negated, 0x80 output interface negated |
/// | 21 | destination prefix length (bits 0-5), 0x40 any protocol, 0x80 protocol negated |
/// | 22 | connection states (bits 0-3, `flow::state_bit`), 0x10 last entry of its hash run, 0x20 does not match UNTRACKED (inverted, so images without UNTRACKED matches keep their bytes for "any state") |
/// | 23 | input interface (bits 0-3), output interface (bits 4-7); [`super::ANY_IF`] = any |
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryRecord {
    /// Source address.
    pub src: u32,
    /// Source prefix length (0-32).
    pub src_len: u8,
    /// Destination address.
    pub dst: u32,
    /// Destination prefix length (0-32).
    pub dst_len: u8,
    /// Source port range, or ICMP type range for ICMP rules.
    pub p1: (u16, u16),
    /// Destination port range, or ICMP code range for ICMP rules.
    pub p2: (u16, u16),
    /// Rule number (below [`super::MAX_RULES`]; higher bits are not kept).
    pub rule: u32,
    /// Protocol number.
    pub proto: u8,
    /// Matches any protocol.
    pub proto_any: bool,
    /// Matches every protocol but `proto`.
    pub proto_neg: bool,
    /// Connection-state bits (`flow::state_bit`) it matches.
    pub states: u8,
    /// Last entry of its run of equal hash keys.
    pub last: bool,
    /// Input interface, or [`super::ANY_IF`].
    pub in_if: u8,
    /// Output interface, or [`super::ANY_IF`].
    pub out_if: u8,
    /// Input interface negated.
    pub in_neg: bool,
    /// Output interface negated.
    pub out_neg: bool,
}

/// Byte offsets and flags of an entry record, named once for [`EntryRecord::encode`] and [`EntryView`].
mod at {
    pub const SRC: usize = 0;
    pub const DST: usize = 4;
    pub const P1: usize = 8;
    pub const P2: usize = 12;
    pub const RULE: usize = 16;
    pub const PROTO: usize = 19;
    pub const SRC_LEN: usize = 20;
    pub const DST_LEN: usize = 21;
    pub const STATES: usize = 22;
    pub const IFACES: usize = 23;
    /// Prefix length bits of bytes 20 and 21.
    pub const LEN_BITS: u8 = 0x3f;
    /// Byte 20: input interface negated.
    pub const NEG_IN: u8 = 0x40;
    /// Byte 20: output interface negated.
    pub const NEG_OUT: u8 = 0x80;
    /// Byte 21: any protocol.
    pub const PROTO_ANY: u8 = 0x40;
    /// Byte 21: protocol negated.
    pub const PROTO_NEG: u8 = 0x80;
    /// State bits of byte 22 (UNTRACKED's inverted).
    pub const STATE_BITS: u8 = 0x2f;
    /// The UNTRACKED state bit, stored inverted.
    pub const UNTRACKED: u8 = 0x20;
    /// Byte 22: last entry of its hash run.
    pub const LAST: u8 = 0x10;
}

impl EntryRecord {
    /// Bytes per record.
    pub const LEN: usize = 24;

    /// The record's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        use at::*;
        let flag = |set: bool, bit: u8| if set { bit } else { 0 };
        let mut b = [0u8; Self::LEN];
        put(&mut b, SRC, &self.src.to_le_bytes());
        put(&mut b, DST, &self.dst.to_le_bytes());
        put(&mut b, P1, &self.p1.0.to_le_bytes());
        put(&mut b, P1 + 2, &self.p1.1.to_le_bytes());
        put(&mut b, P2, &self.p2.0.to_le_bytes());
        put(&mut b, P2 + 2, &self.p2.1.to_le_bytes());
        put(&mut b, RULE, &(self.rule & 0x00ff_ffff).to_le_bytes()[..3]);
        b[PROTO] = self.proto;
        b[SRC_LEN] = (self.src_len & LEN_BITS) | flag(self.in_neg, NEG_IN) | flag(self.out_neg, NEG_OUT);
        b[DST_LEN] = (self.dst_len & LEN_BITS) | flag(self.proto_any, PROTO_ANY) | flag(self.proto_neg, PROTO_NEG);
        b[STATES] = ((self.states ^ UNTRACKED) & STATE_BITS) | flag(self.last, LAST);
        b[IFACES] = (self.in_if & 0x0f) | (self.out_if << 4);
        b
    }

    /// Reads a record.
    pub fn decode(bytes: &[u8]) -> Option<EntryRecord> {
        EntryView::from_slice(bytes).map(EntryView::record)
    }
}

/// An entry record read in place: each accessor is one or two loads, so the
/// lookup's inner loop costs what hand-written offsets would.
#[derive(Debug, Clone, Copy)]
pub struct EntryView<'a>(&'a [u8; EntryRecord::LEN]);

impl<'a> EntryView<'a> {
    /// A view of `b`.
    #[inline(always)]
    pub fn new(b: &'a [u8; EntryRecord::LEN]) -> EntryView<'a> {
        EntryView(b)
    }

    /// A view of the record at the start of `bytes`, if it is long enough.
    #[inline(always)]
    pub fn from_slice(bytes: &'a [u8]) -> Option<EntryView<'a>> {
        head(bytes).map(EntryView)
    }

    /// Source address.
    #[inline(always)]
    pub fn src(self) -> u32 {
        get_u32(self.0, at::SRC)
    }

    /// Source prefix length.
    #[inline(always)]
    pub fn src_len(self) -> u8 {
        self.0[at::SRC_LEN] & at::LEN_BITS
    }

    /// Destination address.
    #[inline(always)]
    pub fn dst(self) -> u32 {
        get_u32(self.0, at::DST)
    }

    /// Destination prefix length.
    #[inline(always)]
    pub fn dst_len(self) -> u8 {
        self.0[at::DST_LEN] & at::LEN_BITS
    }

    /// Source port (or ICMP type) range.
    #[inline(always)]
    pub fn p1(self) -> (u16, u16) {
        (get_u16(self.0, at::P1), get_u16(self.0, at::P1 + 2))
    }

    /// Destination port (or ICMP code) range.
    #[inline(always)]
    pub fn p2(self) -> (u16, u16) {
        (get_u16(self.0, at::P2), get_u16(self.0, at::P2 + 2))
    }

    /// Rule number.
    #[inline(always)]
    pub fn rule(self) -> u32 {
        let b = self.0;
        u32::from_le_bytes([b[at::RULE], b[at::RULE + 1], b[at::RULE + 2], 0])
    }

    /// Protocol number.
    #[inline(always)]
    pub fn proto(self) -> u8 {
        self.0[at::PROTO]
    }

    /// Matches any protocol.
    #[inline(always)]
    pub fn proto_any(self) -> bool {
        self.0[at::DST_LEN] & at::PROTO_ANY != 0
    }

    /// Protocol negated.
    #[inline(always)]
    pub fn proto_neg(self) -> bool {
        self.0[at::DST_LEN] & at::PROTO_NEG != 0
    }

    /// Connection-state bits.
    #[inline(always)]
    pub fn states(self) -> u8 {
        (self.0[at::STATES] ^ at::UNTRACKED) & at::STATE_BITS
    }

    /// Last entry of its hash run.
    #[inline(always)]
    pub fn last(self) -> bool {
        self.0[at::STATES] & at::LAST != 0
    }

    /// Input interface, or [`super::ANY_IF`].
    #[inline(always)]
    pub fn in_if(self) -> u8 {
        self.0[at::IFACES] & 0x0f
    }

    /// Output interface, or [`super::ANY_IF`].
    #[inline(always)]
    pub fn out_if(self) -> u8 {
        self.0[at::IFACES] >> 4
    }

    /// Input interface negated.
    #[inline(always)]
    pub fn in_neg(self) -> bool {
        self.0[at::SRC_LEN] & at::NEG_IN != 0
    }

    /// Output interface negated.
    #[inline(always)]
    pub fn out_neg(self) -> bool {
        self.0[at::SRC_LEN] & at::NEG_OUT != 0
    }

    /// The whole record.
    pub fn record(self) -> EntryRecord {
        EntryRecord {
            src: self.src(),
            src_len: self.src_len(),
            dst: self.dst(),
            dst_len: self.dst_len(),
            p1: self.p1(),
            p2: self.p2(),
            rule: self.rule(),
            proto: self.proto(),
            proto_any: self.proto_any(),
            proto_neg: self.proto_neg(),
            states: self.states(),
            last: self.last(),
            in_if: self.in_if(),
            out_if: self.out_if(),
            in_neg: self.in_neg(),
            out_neg: self.out_neg(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::format::ANY_IF;

    fn entry() -> EntryRecord {
        EntryRecord {
            src: 0x0a01_0002,
            src_len: 32,
            dst: 0xc0a8_0000,
            dst_len: 16,
            p1: (1024, 65535),
            p2: (80, 80),
            rule: 7,
            proto: 6,
            states: 0x01,
            in_if: 0,
            out_if: ANY_IF,
            ..EntryRecord::default()
        }
    }

    #[test]
    fn entries_round_trip() {
        let edges = [
            entry(),
            EntryRecord { rule: 0xff_ffff, proto: 0xff, states: 0x0f, last: true, ..entry() },
            EntryRecord { proto_any: true, in_neg: true, out_neg: true, in_if: 3, out_if: 14, ..entry() },
            EntryRecord { proto_neg: true, src_len: 0, dst_len: 0, src: u32::MAX, dst: u32::MAX, ..entry() },
            EntryRecord { p1: (0, 0), p2: (u16::MAX, u16::MAX), in_if: ANY_IF, states: 0, ..entry() },
            EntryRecord::default(),
        ];
        for e in edges {
            let bytes = e.encode();
            assert_eq!(EntryRecord::decode(&bytes), Some(e));
            assert_eq!(EntryView::new(&bytes).record(), e);
        }
        for bit in [1, 2, 4, 8, 0x20] {
            let e = EntryRecord { states: bit, ..entry() };
            assert_eq!(EntryView::new(&e.encode()).states(), bit);
        }
    }

    #[test]
    fn entry_bytes_are_where_the_layout_says() {
        let e = EntryRecord { rule: 0x12_3456, proto: 17, last: true, in_neg: true, proto_neg: true, ..entry() };
        let b = e.encode();
        assert_eq!(b[0..4], 0x0a01_0002u32.to_le_bytes());
        assert_eq!(b[16..20], [0x56, 0x34, 0x12, 17]);
        // NEW only: 0x20 (does not match UNTRACKED, stored inverted) | NEW | last.
        assert_eq!([b[20], b[21], b[22], b[23]], [32 | 0x40, 16 | 0x80, 0x31, 0xf0]);
        let any = EntryRecord { states: crate::flow::ANY_STATE, last: false, ..e }.encode();
        assert_eq!(any[22], 0x0f, "any state keeps layout 6's byte");
        // The rule number keeps 24 bits.
        assert_eq!(EntryRecord::decode(&EntryRecord { rule: 0x0100_0001, ..e }.encode()).map(|d| d.rule), Some(1));
    }
}
