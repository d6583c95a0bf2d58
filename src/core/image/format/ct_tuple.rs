//! `-m conntrack --ctorigsrc/--ctorigdst/--ctreplsrc/--ctrepldst`, their
//! `...port` counterparts and `--ctdir`: the residual record's part for
//! them (bytes 64..96, `has` bit 13), the connection tuples a packet
//! carries for them, and the test, as Linux's `xt_conntrack` (revision 3)
//! makes it.

use super::{get_u16, get_u32, put};

/// A connection's two tuples as Linux's conntrack holds them, and the
/// packet's direction in it. The original tuple is how the connection's
/// first packet arrived; the reply tuple is what replies carry, so after
/// NAT it names the translated ends (`--ctorigdstport` is the port the
/// client asked for, before DNAT; `--ctreplsrcport` the one after it).
/// ICMP queries have the id as source "port" and `type << 8 | code` as
/// destination "port" (Linux's `u.all`); other protocols without ports 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CtTuples {
    /// Original tuple: source address, destination address (host order).
    pub orig: (u32, u32),
    /// Original tuple: source and destination port.
    pub orig_ports: (u16, u16),
    /// Reply tuple: source address, destination address.
    pub repl: (u32, u32),
    /// Reply tuple: source and destination port.
    pub repl_ports: (u16, u16),
    /// The packet travels in the reply direction (`CTINFO2DIR`).
    pub reply: bool,
}

impl CtTuples {
    /// The tuples of a connection whose first packet is this one, not
    /// translated (yet): the reply tuple is its inverse.
    pub fn of_first(src: (u32, u16), dst: (u32, u16)) -> CtTuples {
        CtTuples {
            orig: (src.0, dst.0),
            orig_ports: (src.1, dst.1),
            repl: (dst.0, src.0),
            repl_ports: (dst.1, src.1),
            reply: false,
        }
    }
}

/// Which tuple field a test reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtField {
    /// `--ctorigsrc`.
    OrigSrc = 0,
    /// `--ctorigdst`.
    OrigDst = 1,
    /// `--ctreplsrc`.
    ReplSrc = 2,
    /// `--ctrepldst`.
    ReplDst = 3,
    /// `--ctorigsrcport`.
    OrigSrcPort = 4,
    /// `--ctorigdstport`.
    OrigDstPort = 5,
    /// `--ctreplsrcport`.
    ReplSrcPort = 6,
    /// `--ctrepldstport`.
    ReplDstPort = 7,
}

impl CtField {
    /// All fields, by number.
    pub const ALL: [CtField; 8] = [
        CtField::OrigSrc,
        CtField::OrigDst,
        CtField::ReplSrc,
        CtField::ReplDst,
        CtField::OrigSrcPort,
        CtField::OrigDstPort,
        CtField::ReplSrcPort,
        CtField::ReplDstPort,
    ];

    /// Whether the field is a port (else an address).
    pub fn is_port(self) -> bool {
        self as u8 >= 4
    }
}

/// One test: an address under a prefix (`value`, `len`) or a port in the
/// inclusive range `value as u16 ..= high`, negated by `!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtTest {
    /// The field.
    pub field: CtField,
    /// `!`.
    pub negated: bool,
    /// The address (host bits cleared) or the low port.
    pub value: u32,
    /// The prefix length (addresses) or the high port.
    pub high: u16,
}

impl CtTest {
    fn holds(&self, t: &CtTuples) -> bool {
        let addr = |a: u32| (a ^ self.value) & crate::flow::mask(self.high.min(32) as u8) == 0;
        let port = |p: u16| u32::from(p) >= self.value && p <= self.high;
        let inside = match self.field {
            CtField::OrigSrc => addr(t.orig.0),
            CtField::OrigDst => addr(t.orig.1),
            CtField::ReplSrc => addr(t.repl.0),
            CtField::ReplDst => addr(t.repl.1),
            CtField::OrigSrcPort => port(t.orig_ports.0),
            CtField::OrigDstPort => port(t.orig_ports.1),
            CtField::ReplSrcPort => port(t.repl_ports.0),
            CtField::ReplDstPort => port(t.repl_ports.1),
        };
        inside != self.negated
    }
}

/// A rule's tuple tests (all must hold) and its `--ctdir`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtTupleSpec {
    /// `--ctdir`: `None`, or `Some(true)` for REPLY, `Some(false)` ORIGINAL.
    pub dir: Option<bool>,
    /// The tests, [`CtTupleSpec::MAX`] at most.
    pub tests: [Option<CtTest>; CtTupleSpec::MAX],
}

/// Where the record starts in the residual record.
pub const AT: usize = 64;
/// Bytes a test takes: field and flags, length, value (u32).
const TEST_LEN: usize = 6;

impl CtTupleSpec {
    /// Most tests one rule holds (what fits in 32 bytes).
    pub const MAX: usize = 5;

    /// Adds a test; false when there is no room.
    pub fn push(&mut self, test: CtTest) -> bool {
        match self.tests.iter_mut().find(|t| t.is_none()) {
            Some(slot) => {
                *slot = Some(test);
                true
            }
            None => false,
        }
    }

    /// Whether a packet of a connection with tuples `t` passes (Linux
    /// checks the direction, then each field).
    #[inline]
    pub fn matches(&self, t: &CtTuples) -> bool {
        self.dir.is_none_or(|reply| reply == t.reply) && self.tests.iter().flatten().all(|test| test.holds(t))
    }

    /// Writes the part (bytes 64..96) into a residual record.
    pub fn encode_into<const N: usize>(&self, b: &mut [u8; N]) {
        put(
            b,
            AT,
            &[match self.dir {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            }],
        );
        for (i, test) in self.tests.iter().enumerate() {
            let Some(t) = test else { continue };
            let at = AT + 1 + i * TEST_LEN;
            put(b, at, &[0x80 | t.field as u8 | u8::from(t.negated) << 3]);
            put(b, at + 1, &[0]);
            if t.field.is_port() {
                put(b, at + 2, &(t.value as u16).to_le_bytes());
                put(b, at + 4, &t.high.to_le_bytes());
            } else {
                put(b, at + 1, &[t.high as u8]);
                put(b, at + 2, &t.value.to_le_bytes());
            }
        }
    }

    /// Reads the part back.
    pub fn decode_from<const N: usize>(b: &[u8; N]) -> CtTupleSpec {
        let byte = |at: usize| b.get(at).copied().unwrap_or(0);
        let mut spec = CtTupleSpec {
            dir: match byte(AT) {
                1 => Some(false),
                2 => Some(true),
                _ => None,
            },
            ..CtTupleSpec::default()
        };
        for (i, slot) in spec.tests.iter_mut().enumerate() {
            let at = AT + 1 + i * TEST_LEN;
            let flags = byte(at);
            let Some(&field) = CtField::ALL.get(usize::from(flags & 7)).filter(|_| flags & 0x80 != 0) else {
                continue;
            };
            let (value, high) = if field.is_port() {
                (u32::from(get_u16(b, at + 2)), get_u16(b, at + 4))
            } else {
                (get_u32(b, at + 2), u16::from(byte(at + 1)))
            };
            *slot = Some(CtTest { field, negated: flags & 8 != 0, value, high });
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuples() -> CtTuples {
        // 10.1.0.2:40000 -> 10.2.0.1:25, DNATed to 10.2.0.2:2525.
        CtTuples {
            orig: (0x0a01_0002, 0x0a02_0001),
            orig_ports: (40000, 25),
            repl: (0x0a02_0002, 0x0a01_0002),
            repl_ports: (2525, 40000),
            reply: false,
        }
    }

    #[test]
    fn tests_read_the_right_tuple_and_negate() {
        let t = tuples();
        let test = |field, negated, value, high| {
            let mut s = CtTupleSpec::default();
            assert!(s.push(CtTest { field, negated, value, high }));
            s.matches(&t)
        };
        assert!(test(CtField::OrigDstPort, false, 25, 25), "the port asked for, before DNAT");
        assert!(!test(CtField::OrigDstPort, false, 2525, 2525));
        assert!(test(CtField::ReplSrcPort, false, 2500, 2600), "the port after DNAT");
        assert!(test(CtField::OrigDstPort, true, 26, 30));
        assert!(!test(CtField::OrigDstPort, false, 30, 25), "a reversed range holds nothing");
        assert!(test(CtField::OrigDstPort, true, 30, 25), "and negated everything");
        assert!(test(CtField::OrigDst, false, 0x0a02_0000, 16));
        assert!(!test(CtField::ReplSrc, false, 0x0a02_0001, 32), "the reply comes from the DNAT target");
        assert!(test(CtField::ReplDst, false, 0x0a01_0002, 32));
        assert!(test(CtField::OrigSrc, true, 0x0a02_0000, 24));
        assert!(test(CtField::OrigSrc, false, 0, 0), "/0 holds every address");
        let dir = |reply| CtTupleSpec { dir: Some(reply), ..CtTupleSpec::default() }.matches(&t);
        assert!(!dir(true) && dir(false));
    }

    #[test]
    fn spec_round_trips_and_holds_five_tests() {
        let mut s = CtTupleSpec { dir: Some(true), ..CtTupleSpec::default() };
        let fields = [CtField::OrigSrc, CtField::ReplDst, CtField::OrigDstPort, CtField::ReplSrcPort, CtField::OrigDst];
        for (i, field) in fields.into_iter().enumerate() {
            let (value, high) = if field.is_port() { (1000 + i as u32, 65535) } else { (0x0a00_0000 + i as u32, 8) };
            assert!(s.push(CtTest { field, negated: i % 2 == 0, value, high }));
        }
        assert!(!s.push(CtTest { field: CtField::OrigSrc, negated: false, value: 0, high: 0 }), "no sixth");
        let mut b = [0u8; 128];
        s.encode_into(&mut b);
        assert!(b[..AT].iter().all(|&x| x == 0) && b[96..].iter().all(|&x| x == 0), "only bytes 64..96");
        assert_eq!(CtTupleSpec::decode_from(&b), s);
        let empty = CtTupleSpec::default();
        let mut b = [0u8; 128];
        empty.encode_into(&mut b);
        assert_eq!(CtTupleSpec::decode_from(&b), empty);
    }
}
