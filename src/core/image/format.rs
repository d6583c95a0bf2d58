//! The binary image layout (version 10), shared by the writer and the reader:
//! one typed definition per record, each with `encode` and `decode`, so the
//! compiler (`unifw-compiler`'s `tables.rs`) and the reader (`super::Image`)
//! never name a byte offset themselves.
//!
//! All integers are little-endian. The image is a [`Header`] of
//! [`HEADER_LEN`] bytes, then [`SECTIONS`] sections, each 64-byte aligned and
//! an array of fixed-size records ([`RECORD`] gives the sizes):
//!
//! | section | record | bytes |
//! |---|---|---|
//! | [`sec::IFACES`] | [`InterfaceRecord`] | 8 |
//! | [`sec::ROUTES`] | [`RouteSpec`] | 12 |
//! | [`sec::LINES`] | source line of each rule, u32; then, in images with user chains or `RETURN`, the [`Target`] word of each rule | 4 |
//! | [`sec::ACTIONS`] | [`RuleAction`] of each rule | 1 |
//! | [`sec::CHAINS`] | [`ChainRecord`], the [`BUILTIN_CHAINS`] built-in chains in [`Chain::index`] order, then each user chain | 80 |
//! | [`sec::TUPLES`] | [`TupleRecord`] | 16 |
//! | [`sec::SLOTS`] | hash slot: entry number (u32) or [`EMPTY`] | 4 |
//! | [`sec::ENTRIES`] | [`EntryRecord`] (read in place as [`EntryView`]) | 24 |
//! | [`sec::INDEX`] | cell index: mask number (u16) | 2 |
//! | [`sec::MASKS`] | tuple mask (u128) the cell index refers to | 16 |
//! | [`sec::METRICS`] | [`MetricsSource`] (empty: no `/metrics` server) | 8 |
//!
//! Each record's own documentation gives its byte layout; the round-trip
//! tests below prove that `decode` reads what `encode` wrote. See
//! `tables.rs` in the compiler for how the lookup tables are built.

use core::fmt;

use crate::flow::{Action, RejectWith};
pub use crate::flow::{Chain, BUILTIN_CHAINS};

use super::{Fallback, IfAddr, InterfaceSpec, MetricsSource, RouteSpec};
use crate::net::addr::Cidr;
use crate::net::ReversePathFilter;

pub mod ct_tuple;
mod entry;
mod hashlimit;
mod string;

pub use entry::{EntryRecord, EntryView};
pub use hashlimit::*;
pub use string::*;

/// First bytes of every image.
pub const MAGIC: [u8; 8] = *b"UNIFWRT\0";
/// Layout version this code reads and writes.
pub const VERSION: u32 = 10;
/// Bytes before the first section.
pub const HEADER_LEN: usize = 128;
/// Number of sections.
pub const SECTIONS: usize = 11;

/// Section numbers.
pub mod sec {
    /// Interfaces ([`super::InterfaceRecord`] records).
    pub const IFACES: usize = 0;
    /// Routes ([`super::RouteSpec`] records).
    pub const ROUTES: usize = 1;
    /// Source line of each rule (u32), then (images with user chains or
    /// `RETURN` only) the [`super::Target`] word of each rule (u32).
    pub const LINES: usize = 2;
    /// Action of each rule ([`super::RuleAction`], one byte).
    pub const ACTIONS: usize = 3;
    /// Chain records: the built-in chains ([`super::Chain::ALL`]), then the
    /// user chains (chain [`super::BUILTIN_CHAINS`] on).
    pub const CHAINS: usize = 4;
    /// Tuple records.
    pub const TUPLES: usize = 5;
    /// Hash slots (u32 entry index or [`super::EMPTY`]).
    pub const SLOTS: usize = 6;
    /// Entries.
    pub const ENTRIES: usize = 7;
    /// Cell index: 2^bits u16 mask numbers per index.
    pub const INDEX: usize = 8;
    /// Tuple masks (u128) the cell index refers to.
    pub const MASKS: usize = 9;
    /// Sources allowed to scrape `/metrics` ([`super::MetricsSource`] records).
    pub const METRICS: usize = 10;
}

/// Record size of each section.
pub const RECORD: [usize; SECTIONS] = [
    InterfaceRecord::LEN,
    RouteSpec::LEN,
    4,
    1,
    ChainRecord::LEN,
    TupleRecord::LEN,
    4,
    EntryRecord::LEN,
    2,
    16,
    MetricsSource::LEN,
];
/// Most tuples a chain may have (one bit each in a u128 mask).
pub const MAX_TUPLES: usize = 128;
/// Most address bits a cell index uses.
pub const MAX_INDEX_BITS: u32 = 16;
/// An empty hash slot.
pub const EMPTY: u32 = u32::MAX;
/// "No index" on one side of a chain record (the encoding of `None`).
pub const NO_INDEX: u32 = u32::MAX;
/// Most rules an image can hold (entries keep 24 bits of rule index).
pub const MAX_RULES: usize = 1 << 24;
/// An entry's interface nibble that matches any interface.
pub const ANY_IF: u8 = 0x0f;
/// Most chains an image may have, the two built-in ones included.
pub const MAX_CHAINS: usize = 4096;
/// Most return points a lookup holds: jumps nested deeper are refused by
/// the compiler (a goto replaces its chain's return point, so it does not
/// count).
pub const MAX_CALL_DEPTH: usize = 16;
/// Most chain lookups one packet may take, in the worst case over every
/// path through the jumps (the compiler refuses rulesets that could take
/// more; the reader stops there with a drop, which only a hand-made image
/// can reach).
pub const MAX_LOOKUPS: u32 = 1024;

/// What a rule does once it matches, beyond its [`RuleAction`]: the target
/// word of the rule section's second half (u32; bits 24-31 the kind, bits
/// 0-23 the chain number of a jump or goto). Images without user chains
/// or `RETURN` have no target words: every rule is [`Target::Verdict`].
///
/// | kind | target |
/// |---|---|
/// | 0 | verdict: the [`RuleAction`] decides |
/// | 1 | jump to the chain, back at the next rule once it returns |
/// | 2 | goto the chain: its return goes to the caller's caller |
/// | 3 | return to the caller (in a built-in chain: its policy) |
/// | 4 | log (`LOG`, `NFLOG`): bits 0-23 the log record |
/// | 5 | address translation (`DNAT`, `SNAT`, `MASQUERADE`, `REDIRECT`): bits 0-23 the NAT record |
/// | 6 | `NOTRACK`: the packet is not tracked |
/// | 7 | `TCPMSS`: bits 0-15 the MSS to set, 0 = clamp to the path MTU |
///
/// Unknown kinds read as kind 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The rule's action is the verdict.
    Verdict,
    /// Call a chain (number >= 2).
    Jump(u32),
    /// Continue in a chain without a return point.
    Goto(u32),
    /// Return to the caller.
    Return,
    /// Log the packet with log record `n`.
    Log(u32),
    /// Translate with NAT record `n`.
    Nat(u32),
    /// Do not track the packet.
    NoTrack,
    /// Set a TCP SYN's MSS option (0: clamp to the path MTU).
    TcpMss(u16),
    /// Nothing: matching goes on with the next rule (an iptables rule
    /// without `-j` whose matches change state, `-m recent --set`).
    Continue,
}

impl Target {
    const CHAIN: u32 = 0x00ff_ffff;

    /// The target word.
    pub fn encode(self) -> u32 {
        match self {
            Target::Verdict => 0,
            Target::Jump(c) => 1 << 24 | (c & Self::CHAIN),
            Target::Goto(c) => 2 << 24 | (c & Self::CHAIN),
            Target::Return => 3 << 24,
            Target::Log(n) => 4 << 24 | (n & Self::CHAIN),
            Target::Nat(n) => 5 << 24 | (n & Self::CHAIN),
            Target::NoTrack => 6 << 24,
            Target::TcpMss(mss) => 7 << 24 | u32::from(mss),
            Target::Continue => 8 << 24,
        }
    }

    /// Reads a target word.
    #[inline]
    pub fn decode(w: u32) -> Target {
        match w >> 24 {
            1 => Target::Jump(w & Self::CHAIN),
            2 => Target::Goto(w & Self::CHAIN),
            3 => Target::Return,
            4 => Target::Log(w & Self::CHAIN),
            5 => Target::Nat(w & Self::CHAIN),
            6 => Target::NoTrack,
            7 => Target::TcpMss(w as u16),
            8 => Target::Continue,
            _ => Target::Verdict,
        }
    }
}

/// Why an image was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// Shorter than a header, or shorter than its stated length.
    Truncated,
    /// Wrong magic bytes.
    BadMagic,
    /// A layout version this code does not read.
    BadVersion(u32),
    /// A section or record points outside the image (section number).
    BadSection(usize),
    /// A chain or tuple record is inconsistent.
    BadChain,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated => write!(f, "rules image is truncated"),
            FormatError::BadMagic => write!(f, "not a unifw rules image (bad magic)"),
            FormatError::BadVersion(v) => write!(f, "rules image version {v}, expected {VERSION}"),
            FormatError::BadSection(s) => write!(f, "rules image section {s} is out of bounds"),
            FormatError::BadChain => {
                write!(f, "rules image has an inconsistent chain or tuple record")
            }
        }
    }
}

/// The first `N` bytes of `b`, if it has that many.
#[inline(always)]
fn head<const N: usize>(b: &[u8]) -> Option<&[u8; N]> {
    b.get(..N)?.try_into().ok()
}

#[inline(always)]
fn get_u16<const N: usize>(b: &[u8; N], at: usize) -> u16 {
    // Callers pass constant offsets: once inlined, the check folds away.
    b.get(at..at + 2).and_then(|s| s.try_into().ok()).map_or(0, u16::from_le_bytes)
}

#[inline(always)]
fn get_u32<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes)
}

fn get_u128<const N: usize>(b: &[u8; N], at: usize) -> u128 {
    let words = [get_u32(b, at), get_u32(b, at + 4), get_u32(b, at + 8), get_u32(b, at + 12)];
    words.iter().rev().fold(0, |acc, &w| (acc << 32) | u128::from(w))
}

fn put<const N: usize>(b: &mut [u8; N], at: usize, bytes: &[u8]) {
    if let Some(field) = b.get_mut(at..at + bytes.len()) {
        field.copy_from_slice(bytes);
    }
}

/// Element `i` of a section of u16s (the cell index); 0 past its end.
#[inline]
pub fn u16_item(section: &[u8], i: usize) -> u16 {
    let at = i * 2;
    section.get(at..at + 2).and_then(|s| s.try_into().ok()).map_or(0, u16::from_le_bytes)
}

/// Element `i` of a section of u32s (rule lines, hash slots); 0 past its end.
#[inline]
pub fn u32_item(section: &[u8], i: usize) -> u32 {
    let at = i * 4;
    section.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes)
}

/// Element `i` of a section of u128s (tuple masks); 0 past its end.
#[inline]
pub fn u128_item(section: &[u8], i: usize) -> u128 {
    let at = i * 16;
    section.get(at..at + 16).and_then(|s| s.try_into().ok()).map_or(0, u128::from_le_bytes)
}

/// The byte code of an action (bits 0-3).
pub fn action_code(a: Action) -> u8 {
    match a {
        Action::Accept => 0,
        Action::Drop => 1,
        Action::Reject(RejectWith::PortUnreachable) => 2,
        Action::Reject(RejectWith::AdminProhibited) => 3,
        Action::Reject(RejectWith::NetUnreachable) => 4,
        Action::Reject(RejectWith::HostUnreachable) => 5,
        Action::Reject(RejectWith::ProtoUnreachable) => 6,
        Action::Reject(RejectWith::TcpReset) => 7,
        Action::Reject(RejectWith::NetProhibited) => 8,
        Action::Reject(RejectWith::HostProhibited) => 9,
    }
}

/// The action of a byte code (bits 0-3; unknown codes drop).
pub fn action_of(code: u8) -> Action {
    match code & 0x0f {
        0 => Action::Accept,
        2 => Action::Reject(RejectWith::PortUnreachable),
        3 => Action::Reject(RejectWith::AdminProhibited),
        4 => Action::Reject(RejectWith::NetUnreachable),
        5 => Action::Reject(RejectWith::HostUnreachable),
        6 => Action::Reject(RejectWith::ProtoUnreachable),
        7 => Action::Reject(RejectWith::TcpReset),
        8 => Action::Reject(RejectWith::NetProhibited),
        9 => Action::Reject(RejectWith::HostProhibited),
        _ => Action::Drop,
    }
}

/// One section's place in the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Section {
    /// Offset from the start of the image.
    pub offset: u32,
    /// Length in bytes (a multiple of its record size).
    pub len: u32,
}

/// The image header.
///
/// | offset | field |
/// |---|---|
/// | 0  | magic [`MAGIC`] |
/// | 8  | version (u32) = [`VERSION`] |
/// | 12 | total length (u32) |
/// | 16 | rule count (u32) |
/// | 20 | conntrack capacity (u32) |
/// | 24 | 4 bytes zero (the built-in chains' policies are in their [`ChainRecord`]s) |
/// | 28 | section count (u32) = [`SECTIONS`] |
/// | 32 | per section: offset (u32), length (u32) |
/// | 120 | tables hash (u64): [`tables_hash`] of the whole image |
///
/// Version 2 added the tables hash (version 1 had zeros there); version 3
/// the interface records of kinds 3 and 4 ([`InterfaceRecord`]); version 4
/// the metrics section (the section table's 11th entry, at 112, where the
/// hash field was, which moved to 120); version 5 the interface records of
/// kinds 5 (MTU) and 6 (reverse-path filter); version 6 the user chains'
/// records after the built-in ones and the rules' [`Target`] words after
/// their lines (images without either keep version 5's bytes); version 7
/// the twelve built-in chains of four tables ([`Chain::ALL`]) with their
/// policies in their chain records (the header's policy bytes, input and
/// forward only until then, are zero), and target kinds 4-7; version 8
/// the rule extras after the target words ([`NO_RESIDUAL`]: residual
/// records, then of 64 bytes, log records and NAT records) and target kind 8
/// (continue); version 9 residual records of 128 bytes (bytes 64.. for
/// the matches that need more: `--ctorig*`, hashlimit, connlimit);
/// version 10 the string count word and the string table in the rule
/// extras ([`NO_RESIDUAL`], [`StringSpec`]), named by residual bytes 22..24
/// and 46 (`-m string`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes in the whole image.
    pub total_len: u32,
    /// Rules in both chains.
    pub rule_count: u32,
    /// Capacity of the connection-tracking table.
    pub conntrack_max: u32,
    /// Where each section is.
    pub sections: [Section; SECTIONS],
    /// The ruleset's identity: [`tables_hash`] of the image.
    pub tables_hash: u64,
}

// The section table fits the header; a chain record's fields fit it (8 spare bytes).
const _: () = assert!(Header::SECTION_TABLE + SECTIONS * 8 <= Header::HASH);
const _: () = assert!(Header::HASH + 8 <= HEADER_LEN);
const _: () = assert!(ChainRecord::ENTRIES + 8 + 8 == ChainRecord::LEN);

impl Header {
    /// Bytes of a header.
    pub const LEN: usize = HEADER_LEN;
    const MAGIC: usize = 0;
    const VERSION: usize = 8;
    const TOTAL: usize = 12;
    const RULES: usize = 16;
    const CONNTRACK: usize = 20;
    const SECTION_COUNT: usize = 28;
    const SECTION_TABLE: usize = 32;
    /// Offset of the tables hash, which [`tables_hash`] reads as zero.
    pub const HASH: usize = 120;

    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        put(&mut b, Self::MAGIC, &MAGIC);
        put(&mut b, Self::VERSION, &VERSION.to_le_bytes());
        put(&mut b, Self::TOTAL, &self.total_len.to_le_bytes());
        put(&mut b, Self::RULES, &self.rule_count.to_le_bytes());
        put(&mut b, Self::CONNTRACK, &self.conntrack_max.to_le_bytes());
        put(&mut b, Self::SECTION_COUNT, &(SECTIONS as u32).to_le_bytes());
        for (i, s) in self.sections.iter().enumerate() {
            put(&mut b, Self::SECTION_TABLE + i * 8, &s.offset.to_le_bytes());
            put(&mut b, Self::SECTION_TABLE + i * 8 + 4, &s.len.to_le_bytes());
        }
        put(&mut b, Self::HASH, &self.tables_hash.to_le_bytes());
        b
    }

    /// Reads the header at the start of `bytes` (magic, version and section
    /// count checked; the sections are the caller's to check).
    pub fn decode(bytes: &[u8]) -> Result<Header, FormatError> {
        let b: &[u8; HEADER_LEN] = head(bytes).ok_or(FormatError::Truncated)?;
        if head::<8>(b) != Some(&MAGIC) {
            return Err(FormatError::BadMagic);
        }
        let version = get_u32(b, Self::VERSION);
        if version != VERSION {
            return Err(FormatError::BadVersion(version));
        }
        if get_u32(b, Self::SECTION_COUNT) as usize != SECTIONS {
            return Err(FormatError::Truncated);
        }
        let mut sections = [Section::default(); SECTIONS];
        for (i, s) in sections.iter_mut().enumerate() {
            let at = Self::SECTION_TABLE + i * 8;
            *s = Section { offset: get_u32(b, at), len: get_u32(b, at + 4) };
        }
        Ok(Header {
            total_len: get_u32(b, Self::TOTAL),
            rule_count: get_u32(b, Self::RULES),
            conntrack_max: get_u32(b, Self::CONNTRACK),
            sections,
            tables_hash: u64::from(get_u32(b, Self::HASH)) | u64::from(get_u32(b, Self::HASH + 4)) << 32,
        })
    }
}

/// The identity of a compiled ruleset: FNV-1a (64 bits) of every byte of
/// the image, with the header's hash field read as zeros. The compiler
/// stores it in the header, `scripts/rules check` and `build-images` print
/// it, and the kernel reports it at boot (and in `/metrics`) without
/// hashing its tables again: the same rules give the same hash.
pub fn tables_hash(image: &[u8]) -> u64 {
    const BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let step = |h: u64, b: &u8| (h ^ u64::from(*b)).wrapping_mul(PRIME);
    let head = image.get(..Header::HASH).unwrap_or(image);
    let tail = image.get(Header::HASH + 8..).unwrap_or(&[]);
    let zeros = if image.len() >= Header::HASH + 8 { &[0u8; 8][..] } else { &[] };
    tail.iter().fold(zeros.iter().fold(head.iter().fold(BASIS, step), step), step)
}

/// One record of the interface section, 8 bytes, byte 0 the interface
/// index and byte 1 the kind:
///
/// | kind | record | bytes 2.. |
/// |---|---|---|
/// | 0 | address: static | prefix length u8, zero u8, address u32 |
/// | 1 | address: DHCP | zeros |
/// | 2 | address: none | zeros |
/// | 3 | MAC binding | the MAC's 6 bytes |
/// | 4 | DHCP fallback | prefix length u8, seconds before it applies u8, address u32 |
/// | 5 | MTU | MTU u16, zeros |
/// | 6 | reverse-path filter | mode u8 (1 loose, 2 off), zeros |
///
/// Each interface has one address record, which comes first, then at most
/// one record of each other kind (kinds 3 and 4 are version 3's, kinds 5
/// and 6 version 5's; an interface without a kind 5 record has the default
/// MTU, one without a kind 6 record is filtered strictly, so images that
/// set neither keep version 4's bytes).
/// An unknown kind reads as an address record of kind 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceRecord {
    /// How interface `index` gets its address.
    Address {
        /// 0 = eth0.
        index: u8,
        /// Its address.
        addr: IfAddr,
    },
    /// The NIC with this MAC is interface `index`.
    Mac {
        /// 0 = eth0.
        index: u8,
        /// The NIC's MAC address.
        mac: [u8; 6],
    },
    /// The static fallback of DHCP interface `index`.
    Fallback {
        /// 0 = eth0.
        index: u8,
        /// The fallback.
        fallback: Fallback,
    },
    /// The MTU of interface `index`.
    Mtu {
        /// 0 = eth0.
        index: u8,
        /// The MTU in bytes (IP packet, without the Ethernet header).
        mtu: u16,
    },
    /// The reverse-path filter of interface `index`, when not strict.
    ReversePath {
        /// 0 = eth0.
        index: u8,
        /// The mode.
        mode: ReversePathFilter,
    },
    /// Interface `index` is a bump-in-the-wire side paired with `peer`.
    Wire {
        /// 0 = eth0.
        index: u8,
        /// The other side.
        peer: u8,
    },
}

impl InterfaceRecord {
    /// Bytes per record.
    pub const LEN: usize = 8;
    const STATIC: u8 = 0;
    const DHCP: u8 = 1;
    const NONE: u8 = 2;
    const MAC: u8 = 3;
    const FALLBACK: u8 = 4;
    const MTU: u8 = 5;
    const REVERSE_PATH: u8 = 6;
    const WIRE: u8 = 7;

    /// The record's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        match *self {
            InterfaceRecord::Address { index, addr } => {
                let (kind, prefix_len, addr) = match addr {
                    IfAddr::Static(Cidr { addr, prefix_len }) => (Self::STATIC, prefix_len, addr),
                    IfAddr::Dhcp => (Self::DHCP, 0, 0),
                    IfAddr::Unconfigured => (Self::NONE, 0, 0),
                };
                b = [index, kind, prefix_len, 0, 0, 0, 0, 0];
                put(&mut b, 4, &addr.to_le_bytes());
            }
            InterfaceRecord::Mac { index, mac } => {
                b[0] = index;
                b[1] = Self::MAC;
                put(&mut b, 2, &mac);
            }
            InterfaceRecord::Fallback { index, fallback } => {
                b = [index, Self::FALLBACK, fallback.addr.prefix_len, fallback.after_seconds, 0, 0, 0, 0];
                put(&mut b, 4, &fallback.addr.addr.to_le_bytes());
            }
            InterfaceRecord::Mtu { index, mtu } => {
                b[0] = index;
                b[1] = Self::MTU;
                put(&mut b, 2, &mtu.to_le_bytes());
            }
            InterfaceRecord::ReversePath { index, mode } => {
                let code = match mode {
                    ReversePathFilter::Strict => 0,
                    ReversePathFilter::Loose => 1,
                    ReversePathFilter::Off => 2,
                };
                b = [index, Self::REVERSE_PATH, code, 0, 0, 0, 0, 0];
            }
            InterfaceRecord::Wire { index, peer } => b = [index, Self::WIRE, peer, 0, 0, 0, 0, 0],
        }
        b
    }

    /// Reads a record (a prefix length past 32 is 32).
    pub fn decode(bytes: &[u8]) -> Option<InterfaceRecord> {
        let b: &[u8; Self::LEN] = head(bytes)?;
        let index = b[0];
        let cidr = Cidr { addr: get_u32(b, 4), prefix_len: b[2].min(32) };
        Some(match b[1] {
            Self::STATIC => InterfaceRecord::Address { index, addr: IfAddr::Static(cidr) },
            Self::DHCP => InterfaceRecord::Address { index, addr: IfAddr::Dhcp },
            Self::MAC => InterfaceRecord::Mac { index, mac: [b[2], b[3], b[4], b[5], b[6], b[7]] },
            Self::FALLBACK => {
                InterfaceRecord::Fallback { index, fallback: Fallback { addr: cidr, after_seconds: b[3] } }
            }
            Self::MTU => InterfaceRecord::Mtu { index, mtu: u16::from_le_bytes([b[2], b[3]]) },
            // An unknown mode is the safe one.
            Self::REVERSE_PATH => InterfaceRecord::ReversePath {
                index,
                mode: match b[2] {
                    1 => ReversePathFilter::Loose,
                    2 => ReversePathFilter::Off,
                    _ => ReversePathFilter::Strict,
                },
            },
            Self::WIRE => InterfaceRecord::Wire { index, peer: b[2] },
            _ => InterfaceRecord::Address { index, addr: IfAddr::Unconfigured },
        })
    }
}

impl InterfaceSpec {
    /// The interface's records: its address, then its MAC binding, its
    /// fallback, its MTU and its reverse-path filter when it has them
    /// (strict, the default, has no record).
    pub fn records(&self) -> impl Iterator<Item = InterfaceRecord> {
        let index = self.index;
        let address = InterfaceRecord::Address { index, addr: self.addr };
        let mac = self.mac.map(|mac| InterfaceRecord::Mac { index, mac });
        let fallback = self.fallback.map(|fallback| InterfaceRecord::Fallback { index, fallback });
        let mtu = self.mtu.map(|mtu| InterfaceRecord::Mtu { index, mtu });
        let mode = self.reverse_path;
        let reverse_path = (mode != ReversePathFilter::Strict).then_some(InterfaceRecord::ReversePath { index, mode });
        let wire = self.wire_peer.map(|peer| InterfaceRecord::Wire { index, peer });
        core::iter::once(address).chain(mac).chain(fallback).chain(mtu).chain(reverse_path).chain(wire)
    }
}

/// The route record: destination u32, prefix length u8, 3 zero bytes, gateway u32.
impl RouteSpec {
    /// Bytes per record.
    pub const LEN: usize = 12;

    /// The record's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        put(&mut b, 0, &self.dest.to_le_bytes());
        b[4] = self.prefix_len;
        put(&mut b, 8, &self.gateway.to_le_bytes());
        b
    }

    /// Reads a record (a prefix length past 32 is 32).
    pub fn decode(bytes: &[u8]) -> Option<RouteSpec> {
        let b: &[u8; Self::LEN] = head(bytes)?;
        Some(RouteSpec { dest: get_u32(b, 0), prefix_len: b[4].min(32), gateway: get_u32(b, 8) })
    }
}

/// The metrics source record: interface index u8, prefix length u8, TCP
/// port u16, source prefix address u32. One record per allowed source
/// prefix; records of one interface share its port.
impl MetricsSource {
    /// Bytes per record.
    pub const LEN: usize = 8;

    /// The record's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [self.interface, self.from.prefix_len, 0, 0, 0, 0, 0, 0];
        put(&mut b, 2, &self.port.to_le_bytes());
        put(&mut b, 4, &self.from.addr.to_le_bytes());
        b
    }

    /// Reads a record (a prefix length past 32 is 32).
    pub fn decode(bytes: &[u8]) -> Option<MetricsSource> {
        let b: &[u8; Self::LEN] = head(bytes)?;
        let from = Cidr { addr: get_u32(b, 4), prefix_len: b[1].min(32) };
        Some(MetricsSource { interface: b[0], port: get_u16(b, 2), from })
    }
}

/// The rule extras: in images where some rule has a [`Residual`] or a
/// [`LogRecord`], the rule section ([`sec::LINES`]) goes on after the
/// target words with, all u32 words: one per rule, the rule's residual
/// record number or [`NO_RESIDUAL`]; the residual count R; the log record
/// count L; the limit count (runtime token buckets to allocate); the
/// string record count S (version 10); R residual records of
/// [`Residual::WORDS`] words; L log records of [`LogRecord::WORDS`] words;
/// S string records ([`StringSpec::LEN`] bytes each, a multiple of 4;
/// residuals name them); then to the section's end the NAT records
/// ([`NatRecord::WORDS`] words each) that targets of kind 5 name. Images
/// without extras (no residual, log or NAT record) end after the targets.
pub const NO_RESIDUAL: u32 = u32::MAX;

/// What Linux's `xt_limit` needs of a rule's `-m limit`, in its own units
/// (credits; [`CREDITS_PER_JIFFY`] per millisecond with HZ = 1000).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSpec {
    /// Credits one match costs (`user2credits(avg)`).
    pub cost: u32,
    /// Most credits the bucket holds, and its start (`user2credits(avg * burst)`).
    pub cap: u32,
    /// The rule's runtime bucket (0..limit count).
    pub slot: u32,
}

/// `XT_LIMIT_SCALE`: iptables' `--limit` is `avg = SCALE * unit / rate`.
pub const XT_LIMIT_SCALE: u32 = 10_000;
/// Jiffies per second of unifw's limit clock (milliseconds; Linux is built
/// with HZ 100 to 1000, Debian's kernels with 250).
pub const LIMIT_HZ: u32 = 1000;
/// `CREDITS_PER_JIFFY` of `xt_limit.c` for HZ 1000: the power of two below
/// `0xFFFFFFFF / (HZ * 60 * 60 * 24)` = 49.
pub const CREDITS_PER_JIFFY: u32 = 32;

/// `user2credits` of `xt_limit.c`: a user rate (`avg`, in 1/10000 s per
/// packet) in credits, without overflow.
pub fn user2credits(user: u32) -> u32 {
    let per_sec = u64::from(LIMIT_HZ) * u64::from(CREDITS_PER_JIFFY);
    if u64::from(user) > u64::from(u32::MAX) / per_sec {
        ((u64::from(user) / u64::from(XT_LIMIT_SCALE)) * per_sec) as u32
    } else {
        ((u64::from(user) * per_sec) / u64::from(XT_LIMIT_SCALE)) as u32
    }
}

/// What a rule's `-m recent` asks (Linux's `xt_recent`): which table, the
/// command, and its options. The runtime tables are in
/// [`crate::image::RecentTables`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentSpec {
    /// The table (`--name`; rules naming the same table share it).
    pub table: u16,
    /// [`RECENT_SET`], [`RECENT_RCHECK`], [`RECENT_UPDATE`] or [`RECENT_REMOVE`].
    pub cmd: u8,
    /// `--rdest` (else `--rsource`).
    pub dest: bool,
    /// `--rttl`.
    pub rttl: bool,
    /// `--reap`.
    pub reap: bool,
    /// `!`: the match's result inverted (what it does to the table is not).
    pub invert: bool,
    /// `--mask` (the table's: the first rule's in Linux; unifw refuses
    /// rules that give one table two masks).
    pub mask: u32,
    /// `--seconds` (0: none).
    pub seconds: u32,
    /// `--hitcount` (0: none).
    pub hitcount: u16,
    /// The table's timestamp ring mask (`nstamps_max_mask`: one less than
    /// the power of two at or above the largest `--hitcount` of the rules
    /// naming it, at least 31); written by the image writer.
    pub stamps_mask: u16,
}

/// `--set`: remember the address (the match holds).
pub const RECENT_SET: u8 = 0;
/// `--rcheck`: whether the address is in the table.
pub const RECENT_RCHECK: u8 = 1;
/// `--update`: `--rcheck`, and a new timestamp when it holds.
pub const RECENT_UPDATE: u8 = 2;
/// `--remove`: forget the address (the match holds if it was there).
pub const RECENT_REMOVE: u8 = 3;
/// `ip_list_tot`: addresses one table remembers (Linux's default).
pub const RECENT_ENTRIES: usize = 100;
/// Most timestamps all recent tables together may hold (each table has
/// [`RECENT_ENTRIES`] entries of `stamps_mask + 1`), so their memory is
/// bounded (2 MiB); the compiler refuses rulesets that need more.
pub const MAX_RECENT_STAMPS: usize = 1 << 18;

/// `nstamps_max_mask` of `xt_recent` for a rule's `--hitcount` (0: none).
pub fn recent_stamps_mask(hitcount: u16) -> u16 {
    if hitcount == 0 {
        31
    } else {
        (u32::from(hitcount).next_power_of_two() - 1) as u16
    }
}

/// What a rule's `-m connlimit` asks (Linux's `xt_connlimit`): the
/// connections counted by this rule under the packet's masked source (or
/// destination) address, compared with `limit`. The counts are in
/// [`crate::image::ConnLimits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnlimitSpec {
    /// The rule's counter set (each rule counts on its own, as each Linux
    /// rule has its own `nf_conncount_data`); written by the image writer.
    pub slot: u16,
    /// `--connlimit-above`/`--connlimit-upto`'s number.
    pub limit: u32,
    /// `--connlimit-mask` as an address mask (default all ones).
    pub mask: u32,
    /// `--connlimit-daddr` (else `--connlimit-saddr`).
    pub dest: bool,
    /// `XT_CONNLIMIT_INVERT`: `--connlimit-upto`, or `! --connlimit-above`
    /// (the match holds when the count is at most `limit`).
    pub invert: bool,
}

/// Most `-m connlimit` rules an image may have: each tracked connection
/// keeps one key per rule (see [`crate::image::ConnLimits`]).
pub const MAX_CONNLIMIT_RULES: usize = 16;
/// Addresses (rule, masked address) all `-m connlimit` rules together can
/// count connections for at once; a packet whose address finds no room
/// is dropped, as Linux hot-drops when it cannot allocate a count.
pub const CONNLIMIT_KEYS: usize = 1 << 16;

/// The matches of a rule that the tuple lookup does not index, checked once
/// one of its entries matched (`-m limit` only when the rule would decide:
/// it spends a token). Each field is `None`/absent when the rule lacks it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Residual {
    /// `--tcp-flags MASK COMP` (`--syn` is `SYN,RST,ACK,FIN SYN`), negated.
    pub tcp_flags: Option<(u8, u8, bool)>,
    /// `--tcp-option N`, negated.
    pub tcp_option: Option<(u8, bool)>,
    /// `-m ttl`: 1 `--ttl-eq`, 2 `--ttl-lt`, 3 `--ttl-gt`; the value; negated (eq only).
    pub ttl: Option<(u8, u8, bool)>,
    /// `-m length` inclusive range, negated.
    pub len: Option<(u16, u16, bool)>,
    /// `-m pkttype`: the allowed [`crate::flow::PktType`]s as bits (negation folded in).
    pub pkt_types: Option<u8>,
    /// `-m mac --mac-source`, negated.
    pub mac: Option<([u8; 6], bool)>,
    /// `-m addrtype --src-type` bits, negated.
    pub src_type: Option<(u16, bool)>,
    /// `-m addrtype --dst-type` bits, negated.
    pub dst_type: Option<(u16, bool)>,
    /// Which address types `-m addrtype` reads: 0 the firewall's, 1 only
    /// the input interface's (`--limit-iface-in`), 2 the output's.
    pub type_iface: u8,
    /// The exact connection states (five bits) when the entries cannot say
    /// (`UNTRACKED` with some but not all others, or all four tracked ones);
    /// or a `--ctstate` with SNAT/DNAT: states and status bits
    /// ([`crate::flow::CT_SNAT`], [`crate::flow::CT_DNAT`]), and bit 7 when
    /// negated (Linux tests `state | status` against the list, then negates).
    pub states: Option<u8>,
    /// `-m limit`.
    pub limit: Option<LimitSpec>,
    /// A match that never holds as unifw sees packets (`-f`: fragments are
    /// judged whole; `-m owner` asking for a user; a mark other than 0).
    pub never: bool,
    /// `-m tcpmss --mss LO:HI`, negated (TCP only; no MSS option: `negated`).
    pub tcp_mss: Option<(u16, u16, bool)>,
    /// `-m conntrack --ctproto P`, negated: checked only for packets with a
    /// connection (NEW, ESTABLISHED, RELATED); the compiler narrows the
    /// states when Linux's `xt_conntrack` fails the others.
    pub ct_proto: Option<(u8, bool)>,
    /// `-m recent`.
    pub recent: Option<RecentSpec>,
    /// `-m conntrack --ctorig*/--ctrepl*/--ctdir` (bytes 64..96, `has`
    /// bit 13): checked only for packets with a connection, like `ct_proto`.
    pub ct_tuple: Option<ct_tuple::CtTupleSpec>,
    /// `-m hashlimit`.
    pub hashlimit: Option<HashlimitSpec>,
    /// `-m connlimit`.
    pub connlimit: Option<ConnlimitSpec>,
    /// `-m string`: its [`StringSpec`] record's number in the string table
    /// (bytes 22..24; byte 46 bit 0 says it is there). Checked with the
    /// packet's bytes, which only the data path has: after the lookup,
    /// before the stateful matches (`Image::stateful_ok`).
    pub string: Option<u16>,
}

impl Residual {
    /// Words per record.
    pub const WORDS: usize = 32;
    /// Bytes per record.
    pub const LEN: usize = Self::WORDS * 4;

    /// The record's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        let (mut has, mut neg) = (0u16, 0u16);
        let mut bit = |i: u16, present: bool, negated: bool| {
            has |= u16::from(present) << i;
            neg |= u16::from(negated) << i;
        };
        bit(0, self.tcp_flags.is_some(), self.tcp_flags.is_some_and(|t| t.2));
        bit(1, self.tcp_option.is_some(), self.tcp_option.is_some_and(|t| t.1));
        bit(2, self.ttl.is_some(), self.ttl.is_some_and(|t| t.2));
        bit(3, self.len.is_some(), self.len.is_some_and(|t| t.2));
        bit(4, self.pkt_types.is_some(), false);
        bit(5, self.mac.is_some(), self.mac.is_some_and(|t| t.1));
        bit(6, self.src_type.is_some(), self.src_type.is_some_and(|t| t.1));
        bit(7, self.dst_type.is_some(), self.dst_type.is_some_and(|t| t.1));
        bit(8, self.states.is_some(), false);
        bit(9, self.limit.is_some(), false);
        bit(10, self.never, false);
        bit(11, self.tcp_mss.is_some(), self.tcp_mss.is_some_and(|t| t.2));
        put(&mut b, 0, &has.to_le_bytes());
        put(&mut b, 2, &neg.to_le_bytes());
        let (mask, comp, _) = self.tcp_flags.unwrap_or_default();
        let (ttl_op, ttl, _) = self.ttl.unwrap_or_default();
        put(&mut b, 4, &[mask, comp, self.tcp_option.unwrap_or_default().0, ttl_op]);
        put(&mut b, 8, &[ttl, self.pkt_types.unwrap_or(0), self.states.unwrap_or(0), self.type_iface]);
        let (lo, hi, _) = self.len.unwrap_or_default();
        put(&mut b, 12, &lo.to_le_bytes());
        put(&mut b, 14, &hi.to_le_bytes());
        put(&mut b, 16, &self.mac.unwrap_or_default().0);
        put(&mut b, 24, &self.src_type.unwrap_or_default().0.to_le_bytes());
        put(&mut b, 26, &self.dst_type.unwrap_or_default().0.to_le_bytes());
        let l = self.limit.unwrap_or_default();
        put(&mut b, 28, &l.cost.to_le_bytes());
        put(&mut b, 32, &l.cap.to_le_bytes());
        put(&mut b, 36, &l.slot.to_le_bytes());
        let (mss_lo, mss_hi, _) = self.tcp_mss.unwrap_or_default();
        put(&mut b, 40, &mss_lo.to_le_bytes());
        put(&mut b, 42, &mss_hi.to_le_bytes());
        if let Some((p, negated)) = self.ct_proto {
            put(&mut b, 44, &[1 | u8::from(negated) << 1, p]);
        }
        // -m string: the record number at 22..24 (after the MAC), byte 46 bit 0.
        if let Some(n) = self.string {
            put(&mut b, 22, &n.to_le_bytes());
            put(&mut b, 46, &[1]);
        }
        // -m recent: bytes 48..64, `has` bit 12.
        if let Some(rc) = self.recent {
            has |= 1 << 12;
            neg |= u16::from(rc.invert) << 12;
            put(&mut b, 0, &has.to_le_bytes());
            put(&mut b, 2, &neg.to_le_bytes());
            put(&mut b, 48, &rc.mask.to_le_bytes());
            put(&mut b, 52, &rc.seconds.to_le_bytes());
            put(&mut b, 56, &rc.table.to_le_bytes());
            put(&mut b, 58, &rc.hitcount.to_le_bytes());
            let flags = u8::from(rc.dest) | u8::from(rc.rttl) << 1 | u8::from(rc.reap) << 2;
            put(&mut b, 60, &[rc.cmd, flags]);
            put(&mut b, 62, &rc.stamps_mask.to_le_bytes());
        }
        if let Some(t) = self.ct_tuple {
            has |= 1 << 13;
            put(&mut b, 0, &has.to_le_bytes());
            t.encode_into(&mut b);
        }
        // -m hashlimit: bytes 96..116, `has` bit 14.
        if let Some(hl) = self.hashlimit {
            has |= 1 << 14;
            neg |= u16::from(hl.invert) << 14;
            put(&mut b, 0, &has.to_le_bytes());
            put(&mut b, 2, &neg.to_le_bytes());
            hl.put(&mut b);
        }
        // -m connlimit: bytes 116..128, `has` bit 15.
        if let Some(c) = self.connlimit {
            has |= 1 << 15;
            neg |= u16::from(c.invert) << 15;
            put(&mut b, 0, &has.to_le_bytes());
            put(&mut b, 2, &neg.to_le_bytes());
            put(&mut b, 116, &c.mask.to_le_bytes());
            put(&mut b, 120, &c.limit.to_le_bytes());
            put(&mut b, 124, &c.slot.to_le_bytes());
            put(&mut b, 126, &[u8::from(c.dest)]);
        }
        b
    }

    /// Reads a record (`None` if `b` is short).
    pub fn decode(b: &[u8]) -> Option<Residual> {
        let b: &[u8; Self::LEN] = head(b)?;
        let (has, neg) = (get_u16(b, 0), get_u16(b, 2));
        let on = |i: u16| has >> i & 1 != 0;
        let no = |i: u16| neg >> i & 1 != 0;
        let byte = |at: usize| b.get(at).copied().unwrap_or(0);
        let mut mac = [0u8; 6];
        mac.copy_from_slice(b.get(16..22)?);
        Some(Residual {
            tcp_flags: on(0).then(|| (byte(4), byte(5), no(0))),
            tcp_option: on(1).then(|| (byte(6), no(1))),
            ttl: on(2).then(|| (byte(7), byte(8), no(2))),
            len: on(3).then(|| (get_u16(b, 12), get_u16(b, 14), no(3))),
            pkt_types: on(4).then(|| byte(9)),
            mac: on(5).then_some((mac, no(5))),
            src_type: on(6).then(|| (get_u16(b, 24), no(6))),
            dst_type: on(7).then(|| (get_u16(b, 26), no(7))),
            type_iface: byte(11),
            states: on(8).then(|| byte(10)),
            limit: on(9).then(|| LimitSpec { cost: get_u32(b, 28), cap: get_u32(b, 32), slot: get_u32(b, 36) }),
            never: on(10),
            tcp_mss: on(11).then(|| (get_u16(b, 40), get_u16(b, 42), no(11))),
            ct_proto: (byte(44) & 1 != 0).then(|| (byte(45), byte(44) & 2 != 0)),
            string: (byte(46) & 1 != 0).then(|| get_u16(b, 22)),
            recent: on(12).then(|| RecentSpec {
                table: get_u16(b, 56),
                cmd: byte(60) & 3,
                dest: byte(61) & 1 != 0,
                rttl: byte(61) & 2 != 0,
                reap: byte(61) & 4 != 0,
                invert: no(12),
                mask: get_u32(b, 48),
                seconds: get_u32(b, 52),
                hitcount: get_u16(b, 58),
                stamps_mask: get_u16(b, 62),
            }),
            ct_tuple: on(13).then(|| ct_tuple::CtTupleSpec::decode_from(b)),
            hashlimit: on(14).then(|| HashlimitSpec::get(b, no(14))),
            connlimit: on(15).then(|| ConnlimitSpec {
                mask: get_u32(b, 116),
                limit: get_u32(b, 120),
                slot: get_u16(b, 124),
                dest: byte(126) & 1 != 0,
                invert: no(15),
            }),
        })
    }

    /// Whether `key` passes the static matches (all but the limit).
    #[inline]
    pub fn matches(&self, key: &crate::flow::PacketKey) -> bool {
        let x = &key.extra;
        if self.never {
            return false;
        }
        if let Some((lo, hi, neg)) = self.tcp_mss {
            // Linux's xt_tcpmss: the first MSS option's value in range;
            // without one, the result is `!`'s.
            let inside = x.tcp_mss.map(|m| lo <= m && m <= hi);
            if key.proto != crate::flow::proto::TCP || inside.unwrap_or(false) == neg {
                return false;
            }
        }
        if let Some((p, neg)) = self.ct_proto {
            use crate::flow::CtState;
            let tracked = matches!(key.state, CtState::New | CtState::Established | CtState::Related);
            if tracked && (x.ct_proto == p) == neg {
                return false;
            }
        }
        if let Some(t) = &self.ct_tuple {
            use crate::flow::CtState;
            let tracked = matches!(key.state, CtState::New | CtState::Established | CtState::Related);
            if tracked && !t.matches(&x.ct_tuples) {
                return false;
            }
        }
        if let Some((mask, comp, neg)) = self.tcp_flags {
            if key.proto != crate::flow::proto::TCP || ((x.tcp_flags & mask) == comp) == neg {
                return false;
            }
        }
        if let Some((n, neg)) = self.tcp_option {
            if key.proto != crate::flow::proto::TCP || x.has_tcp_option(n) == neg {
                return false;
            }
        }
        if let Some((op, v, neg)) = self.ttl {
            let hit = match op {
                1 => x.ttl == v,
                2 => x.ttl < v,
                3 => x.ttl > v,
                _ => false,
            };
            if hit == neg {
                return false;
            }
        }
        if let Some((lo, hi, neg)) = self.len {
            if (lo <= x.len && x.len <= hi) == neg {
                return false;
            }
        }
        if let Some(types) = self.pkt_types {
            if types >> (x.pkt_type as u8) & 1 == 0 {
                return false;
            }
        }
        if let Some((mac, neg)) = self.mac {
            // Linux's xt_mac: no Ethernet header, no match, negated or not.
            if !x.has_mac || (x.src_mac == mac) == neg {
                return false;
            }
        }
        let (src_type, dst_type) = match self.type_iface {
            1 => (x.src_type_in, x.dst_type_in),
            2 => (x.src_type_out, x.dst_type_out),
            _ => (x.src_type, x.dst_type),
        };
        if let Some((t, neg)) = self.src_type {
            if (src_type & t != 0) == neg {
                return false;
            }
        }
        if let Some((t, neg)) = self.dst_type {
            if (dst_type & t != 0) == neg {
                return false;
            }
        }
        if let Some(states) = self.states {
            let have = crate::flow::state_bit(key.state) | x.ct_status;
            if (have & states & 0x7f != 0) == (states & 0x80 != 0) {
                return false;
            }
        }
        true
    }
}

/// A `LOG`/`NFLOG` rule's record: `--log-prefix` (at most 29 bytes, as
/// iptables allows; NFLOG's 64-byte prefix is cut there) and the syslog level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogRecord {
    /// Prefix bytes.
    pub prefix: [u8; LogRecord::PREFIX],
    /// Prefix length.
    pub prefix_len: u8,
    /// Syslog level 0-7 (iptables' default 4, warning).
    pub level: u8,
}

impl LogRecord {
    /// Most prefix bytes kept.
    pub const PREFIX: usize = 30;
    /// Words per record.
    pub const WORDS: usize = 8;
    /// Bytes per record.
    pub const LEN: usize = Self::WORDS * 4;

    /// The record's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        put(&mut b, 0, &self.prefix);
        put(&mut b, 30, &[self.prefix_len.min(Self::PREFIX as u8), self.level]);
        b
    }

    /// Reads a record.
    pub fn decode(b: &[u8]) -> Option<LogRecord> {
        let b: &[u8; Self::LEN] = head(b)?;
        let mut prefix = [0u8; Self::PREFIX];
        prefix.copy_from_slice(b.get(..Self::PREFIX)?);
        Some(LogRecord { prefix, prefix_len: b.get(30).copied()?.min(Self::PREFIX as u8), level: b.get(31).copied()? })
    }

    /// The prefix text (bytes up to the length; non-UTF-8 reads as empty).
    pub fn prefix(&self) -> &str {
        self.prefix.get(..usize::from(self.prefix_len)).and_then(|p| core::str::from_utf8(p).ok()).unwrap_or("")
    }
}

/// What a NAT rule changes and to what (the NAT records, target kind 5;
/// iptables' `SNAT`, `MASQUERADE`, `DNAT`). They end the rule extras in
/// [`sec::LINES`] ([`NO_RESIDUAL`]), [`NatRecord::WORDS`] words each (the
/// header's section table is full).
///
/// | bytes | field |
/// |---|---|
/// | 0 | kind: 0 SNAT, 1 MASQUERADE, 2 DNAT |
/// | 1 | flags: bit 0 ports given, bit 1 `--random`, bit 2 `--random-fully`, bit 3 `--persistent` |
/// | 2-3 | zero |
/// | 4-7 | first address (u32; MASQUERADE: 0) |
/// | 8-11 | last address (u32) |
/// | 12-13 | first port |
/// | 14-15 | last port |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatRecord {
    /// What it changes.
    pub kind: NatKind,
    /// Inclusive address range (host order); unused for masquerade.
    pub addrs: (u32, u32),
    /// Inclusive port range, if the rule gives one.
    pub ports: Option<(u16, u16)>,
    /// `--random` or `--random-fully`: ports start at a random place.
    pub random: bool,
    /// `--random-fully` (recorded: the same randomisation here).
    pub random_fully: bool,
    /// `--persistent`: a client keeps its address from the range.
    pub persistent: bool,
}

/// The kind of a [`NatRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Source to the given address(es).
    Snat,
    /// Source to the output interface's current address.
    Masquerade,
    /// Destination to the given address(es) (port forwarding).
    Dnat,
}

impl NatRecord {
    /// Bytes per record.
    pub const LEN: usize = 16;
    /// Words of [`sec::LINES`] per record.
    pub const WORDS: usize = Self::LEN / 4;
    const PORTS: u8 = 1;
    const RANDOM: u8 = 2;
    const RANDOM_FULLY: u8 = 4;
    const PERSISTENT: u8 = 8;

    /// The record's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let kind = match self.kind {
            NatKind::Snat => 0,
            NatKind::Masquerade => 1,
            NatKind::Dnat => 2,
        };
        let flags = [
            (self.ports.is_some(), Self::PORTS),
            (self.random, Self::RANDOM),
            (self.random_fully, Self::RANDOM_FULLY),
            (self.persistent, Self::PERSISTENT),
        ]
        .iter()
        .fold(0, |f, &(on, bit)| if on { f | bit } else { f });
        let mut b = [0u8; Self::LEN];
        b[0] = kind;
        b[1] = flags;
        put(&mut b, 4, &self.addrs.0.to_le_bytes());
        put(&mut b, 8, &self.addrs.1.to_le_bytes());
        let (low, high) = self.ports.unwrap_or((0, 0));
        put(&mut b, 12, &low.to_le_bytes());
        put(&mut b, 14, &high.to_le_bytes());
        b
    }

    /// Reads a record (`None`: too short or an unknown kind).
    pub fn decode(bytes: &[u8]) -> Option<NatRecord> {
        let b: &[u8; Self::LEN] = head(bytes)?;
        let kind = match b[0] {
            0 => NatKind::Snat,
            1 => NatKind::Masquerade,
            2 => NatKind::Dnat,
            _ => return None,
        };
        let flags = b[1];
        let ports = (flags & Self::PORTS != 0).then(|| (get_u16(b, 12), get_u16(b, 14)));
        Some(NatRecord {
            kind,
            addrs: (get_u32(b, 4), get_u32(b, 8)),
            ports,
            random: flags & Self::RANDOM != 0,
            random_fully: flags & Self::RANDOM_FULLY != 0,
            persistent: flags & Self::PERSISTENT != 0,
        })
    }
}

/// A rule's action byte: the [`action_code`] in bits 0-3, bit 7 = log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleAction {
    /// What the rule does.
    pub action: Action,
    /// Whether its verdicts are logged.
    pub log: bool,
}

impl RuleAction {
    const LOG: u8 = 0x80;

    /// The record's byte.
    pub fn encode(self) -> u8 {
        action_code(self.action) | if self.log { Self::LOG } else { 0 }
    }

    /// Reads a record (unknown codes drop).
    #[inline]
    pub fn decode(b: u8) -> RuleAction {
        RuleAction { action: action_of(b), log: b & Self::LOG != 0 }
    }
}

/// One side (destination or source) of a chain's cell index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CellIndexSide {
    /// Tuples this side cannot rule out (their prefixes are shorter than a cell).
    pub unindexed: u128,
    /// Where its 2^bits u16 cells start in [`sec::INDEX`], if it has an index.
    pub index_start: Option<u32>,
    /// Where its masks start in [`sec::MASKS`].
    pub mask_start: u32,
}

impl CellIndexSide {
    const LEN: usize = 24;

    fn encode_into(&self, b: &mut [u8; ChainRecord::LEN], at: usize) {
        put(b, at, &self.unindexed.to_le_bytes());
        put(b, at + 16, &self.index_start.unwrap_or(NO_INDEX).to_le_bytes());
        put(b, at + 20, &self.mask_start.to_le_bytes());
    }

    fn decode_from(b: &[u8; ChainRecord::LEN], at: usize) -> CellIndexSide {
        let index_start = Some(get_u32(b, at + 16)).filter(|&i| i != NO_INDEX);
        CellIndexSide { unindexed: get_u128(b, at), index_start, mask_start: get_u32(b, at + 20) }
    }
}

/// A chain record: where a chain's tables are.
///
/// | offset | field |
/// |---|---|
/// | 0  | rules of the chain (u32) |
/// | 4  | first tuple, tuple count (u32 each) |
/// | 12 | cell index bits (u32) |
/// | 16 | destination side: unindexed tuples (u128), index start (u32, [`NO_INDEX`] = none), mask start (u32) |
/// | 40 | source side, the same |
/// | 64 | first entry, entry count (u32 each) |
/// | 72 | policy ([`action_code`], u8; built-in chains only, zero in user chains), 7 bytes zero |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainRecord {
    /// Rules of the chain.
    pub rules: u32,
    /// Its first tuple record.
    pub tuple_start: u32,
    /// Its tuples (at most [`MAX_TUPLES`]).
    pub tuple_count: u32,
    /// Address bits its cell index uses (0 without an index).
    pub index_bits: u32,
    /// Cell index on the destination address.
    pub dst: CellIndexSide,
    /// Cell index on the source address.
    pub src: CellIndexSide,
    /// Its first entry.
    pub entry_start: u32,
    /// Its entries.
    pub entry_count: u32,
    /// Its policy (a built-in chain's; user chains return instead).
    pub policy: Action,
}

impl Default for ChainRecord {
    fn default() -> ChainRecord {
        ChainRecord {
            rules: 0,
            tuple_start: 0,
            tuple_count: 0,
            index_bits: 0,
            dst: CellIndexSide::default(),
            src: CellIndexSide::default(),
            entry_start: 0,
            entry_count: 0,
            policy: Action::Accept,
        }
    }
}

impl ChainRecord {
    /// Bytes per record.
    pub const LEN: usize = 80;
    const DST: usize = 16;
    const SRC: usize = Self::DST + CellIndexSide::LEN;
    const ENTRIES: usize = Self::SRC + CellIndexSide::LEN;
    const POLICY: usize = Self::ENTRIES + 8;

    /// The record's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        put(&mut b, 0, &self.rules.to_le_bytes());
        put(&mut b, 4, &self.tuple_start.to_le_bytes());
        put(&mut b, 8, &self.tuple_count.to_le_bytes());
        put(&mut b, 12, &self.index_bits.to_le_bytes());
        self.dst.encode_into(&mut b, Self::DST);
        self.src.encode_into(&mut b, Self::SRC);
        put(&mut b, Self::ENTRIES, &self.entry_start.to_le_bytes());
        put(&mut b, Self::ENTRIES + 4, &self.entry_count.to_le_bytes());
        put(&mut b, Self::POLICY, &[action_code(self.policy)]);
        b
    }

    /// Reads a record.
    pub fn decode(bytes: &[u8]) -> Option<ChainRecord> {
        let b: &[u8; Self::LEN] = head(bytes)?;
        Some(ChainRecord {
            rules: get_u32(b, 0),
            tuple_start: get_u32(b, 4),
            tuple_count: get_u32(b, 8),
            index_bits: get_u32(b, 12),
            dst: CellIndexSide::decode_from(b, Self::DST),
            src: CellIndexSide::decode_from(b, Self::SRC),
            entry_start: get_u32(b, Self::ENTRIES),
            entry_count: get_u32(b, Self::ENTRIES + 4),
            policy: action_of(b[Self::POLICY]),
        })
    }
}

/// A tuple record: one open-addressed hash table of a chain.
///
/// | offset | field |
/// |---|---|
/// | 0  | source prefix length, destination prefix length (u8 each) |
/// | 2  | flags (u8): bit 0 = also keyed on the destination port; zero u8 |
/// | 4  | lowest rule in the tuple (u32) |
/// | 8  | first slot, slot count (u32 each) |
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TupleRecord {
    /// Source prefix length the tuple masks with.
    pub src_len: u8,
    /// Destination prefix length the tuple masks with.
    pub dst_len: u8,
    /// Whether the key also holds the destination port.
    pub port_keyed: bool,
    /// Lowest rule number of its entries.
    pub min_rule: u32,
    /// Its first hash slot.
    pub slot_start: u32,
    /// Its hash slots.
    pub slot_count: u32,
}

impl TupleRecord {
    /// Bytes per record.
    pub const LEN: usize = 16;
    const PORT_KEYED: u8 = 1;

    /// The record's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.src_len;
        b[1] = self.dst_len;
        b[2] = if self.port_keyed { Self::PORT_KEYED } else { 0 };
        put(&mut b, 4, &self.min_rule.to_le_bytes());
        put(&mut b, 8, &self.slot_start.to_le_bytes());
        put(&mut b, 12, &self.slot_count.to_le_bytes());
        b
    }

    /// Reads a record.
    pub fn decode(bytes: &[u8]) -> Option<TupleRecord> {
        let b: &[u8; Self::LEN] = head(bytes)?;
        Some(TupleRecord {
            src_len: b[0],
            dst_len: b[1],
            port_keyed: b[2] & Self::PORT_KEYED != 0,
            min_rule: get_u32(b, 4),
            slot_start: get_u32(b, 8),
            slot_count: get_u32(b, 12),
        })
    }
}

/// Folds a destination port into the destination half of a hash key
/// (tuples that key on the port hash `dst ^ port_mix(port)`).
#[inline]
pub fn port_mix(port: u16) -> u32 {
    u32::from(port).wrapping_mul(0x9e37_79b1)
}

/// The hash slot of a masked key in a table of `count` slots (`count` > 0).
#[inline]
pub fn slot_of(src: u32, dst: u32, count: u32) -> u32 {
    let x = (u64::from(src) << 32) | u64::from(dst);
    let m = u128::from(x) * 0x9e37_79b9_7f4a_7c15_u128;
    let h = (m as u64) ^ ((m >> 64) as u64);
    (((h >> 32) * u64::from(count)) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_round_trip() {
        let side = CellIndexSide { unindexed: u128::MAX - 5, index_start: Some(256), mask_start: 9 };
        let edges = [
            ChainRecord::default(),
            ChainRecord {
                rules: 100,
                tuple_start: 3,
                tuple_count: MAX_TUPLES as u32,
                index_bits: 16,
                dst: side,
                src: CellIndexSide { unindexed: 1 << 127, index_start: None, mask_start: u32::MAX },
                entry_start: 12,
                entry_count: u32::MAX,
                policy: Action::Reject(RejectWith::TcpReset),
            },
            ChainRecord { dst: CellIndexSide { index_start: Some(0), ..side }, src: side, ..ChainRecord::default() },
        ];
        for c in edges {
            assert_eq!(ChainRecord::decode(&c.encode()), Some(c));
        }
        // None is written as NO_INDEX.
        let b = ChainRecord::default().encode();
        assert_eq!((&b[32..36], &b[56..60]), (&NO_INDEX.to_le_bytes()[..], &NO_INDEX.to_le_bytes()[..]));
        assert_eq!(b[72..80], [0; 8], "policy ACCEPT is 0");
        let drop = ChainRecord { policy: Action::Drop, ..ChainRecord::default() }.encode();
        assert_eq!(drop[72..80], [1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn tuples_round_trip() {
        let edges = [
            TupleRecord::default(),
            TupleRecord {
                src_len: 32,
                dst_len: 24,
                port_keyed: true,
                min_rule: 0xff_ffff,
                slot_start: 5,
                slot_count: 3,
            },
            TupleRecord {
                src_len: 0,
                dst_len: 32,
                port_keyed: false,
                min_rule: 0,
                slot_start: u32::MAX,
                slot_count: 1,
            },
        ];
        for t in edges {
            assert_eq!(TupleRecord::decode(&t.encode()), Some(t));
        }
    }

    #[test]
    fn tables_hash_ignores_its_own_field_and_sees_every_other_byte() {
        let mut image = alloc::vec![7u8; 300];
        let hash = tables_hash(&image);
        image[Header::HASH..Header::HASH + 8].copy_from_slice(&hash.to_le_bytes());
        assert_eq!(tables_hash(&image), hash, "the stored hash is not part of the identity");
        for at in [0, Header::HASH - 1, Header::HASH + 8, 299] {
            let mut changed = image.clone();
            changed[at] ^= 1;
            assert_ne!(tables_hash(&changed), hash, "byte {at}");
        }
        assert_ne!(tables_hash(&image[..299]), hash);
        // FNV-1a's published test value: the empty input hashes to the basis.
        assert_eq!(tables_hash(&[]), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn headers_round_trip() {
        let mut sections = [Section::default(); SECTIONS];
        for (i, s) in sections.iter_mut().enumerate() {
            *s = Section { offset: 128 + 64 * i as u32, len: i as u32 * 8 };
        }
        let h = Header {
            total_len: 4096,
            rule_count: 3,
            conntrack_max: 65536,
            sections,
            tables_hash: 0x0123_4567_89ab_cdef,
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b), Ok(h));
        assert_eq!((&b[..8], b[24], b[25], b[28], b[120], b[127]), (&MAGIC[..], 0, 0, SECTIONS as u8, 0xef, 0x01));
        let mut wrong = b;
        wrong[8] = 1;
        assert_eq!(Header::decode(&wrong), Err(FormatError::BadVersion(1)));
        wrong = b;
        wrong[0] = b'X';
        assert_eq!(Header::decode(&wrong), Err(FormatError::BadMagic));
    }

    #[test]
    fn interfaces_routes_and_actions_round_trip() {
        let fallback = Fallback { addr: Cidr { addr: 0x0a03_0005, prefix_len: 24 }, after_seconds: 255 };
        let ifaces = [
            InterfaceRecord::Address { index: 0, addr: IfAddr::Static(Cidr { addr: 0x0a01_0001, prefix_len: 24 }) },
            InterfaceRecord::Address { index: 14, addr: IfAddr::Static(Cidr { addr: u32::MAX, prefix_len: 32 }) },
            InterfaceRecord::Address { index: 2, addr: IfAddr::Dhcp },
            InterfaceRecord::Address { index: 3, addr: IfAddr::Unconfigured },
            InterfaceRecord::Mac { index: 1, mac: [0x52, 0x54, 0, 0x12, 0x34, 0xff] },
            InterfaceRecord::Fallback { index: 2, fallback },
            InterfaceRecord::Mtu { index: 1, mtu: 9000 },
        ];
        for i in ifaces {
            assert_eq!(InterfaceRecord::decode(&i.encode()), Some(i));
        }
        // Version 2's address records are unchanged (kind 0 with the prefix
        // in byte 2 and the address at 4); an unknown kind is "no address".
        let b = ifaces[0].encode();
        assert_eq!(b, [0, 0, 24, 0, 1, 0, 1, 10]);
        assert_eq!(ifaces[4].encode(), [1, 3, 0x52, 0x54, 0, 0x12, 0x34, 0xff]);
        assert_eq!(ifaces[5].encode(), [2, 4, 24, 255, 5, 0, 3, 10]);
        assert_eq!(ifaces[6].encode(), [1, 5, 0x28, 0x23, 0, 0, 0, 0]);
        assert_eq!(
            InterfaceRecord::decode(&[7, 9, 1, 2, 3, 4, 5, 6]),
            Some(InterfaceRecord::Address { index: 7, addr: IfAddr::Unconfigured })
        );
        // A spec's records: the address first, then MAC and fallback.
        let spec = InterfaceSpec {
            mac: Some([2, 0, 0, 0, 0, 1]),
            fallback: Some(fallback),
            mtu: Some(1400),
            ..InterfaceSpec::new(2, IfAddr::Dhcp)
        };
        let records: alloc::vec::Vec<_> = spec.records().collect();
        assert_eq!(records.len(), 4);
        assert_eq!(records[3], InterfaceRecord::Mtu { index: 2, mtu: 1400 });
        assert_eq!(records[0], InterfaceRecord::Address { index: 2, addr: IfAddr::Dhcp });
        assert_eq!(InterfaceSpec::new(0, IfAddr::Dhcp).records().count(), 1);
        let wire = InterfaceRecord::Wire { index: 1, peer: 2 };
        assert_eq!(InterfaceRecord::decode(&wire.encode()), Some(wire));
        let routes = [
            RouteSpec { dest: 0, prefix_len: 0, gateway: 0x0a01_00fe },
            RouteSpec { dest: 0x0a09_0000, prefix_len: 16, gateway: u32::MAX },
        ];
        for r in routes {
            assert_eq!(RouteSpec::decode(&r.encode()), Some(r));
        }
        for code in 0..10 {
            for log in [false, true] {
                let a = RuleAction { action: action_of(code), log };
                assert_eq!(RuleAction::decode(a.encode()), a);
                assert_eq!(a.encode(), code | if log { 0x80 } else { 0 });
            }
        }
    }

    #[test]
    fn metrics_sources_round_trip() {
        let sources = [
            MetricsSource { interface: 2, port: 9100, from: Cidr { addr: 0x0a03_0000, prefix_len: 24 } },
            MetricsSource { interface: 14, port: u16::MAX, from: Cidr { addr: u32::MAX, prefix_len: 32 } },
            MetricsSource { interface: 0, port: 1, from: Cidr { addr: 0, prefix_len: 0 } },
        ];
        for m in sources {
            assert_eq!(MetricsSource::decode(&m.encode()), Some(m));
        }
        assert_eq!(sources[0].encode(), [2, 24, 0x8c, 0x23, 0, 0, 3, 10]);
    }

    #[test]
    fn short_input_is_refused_not_a_panic() {
        let zeros = [0u8; HEADER_LEN];
        for n in 0..HEADER_LEN {
            assert_eq!(Header::decode(&zeros[..n]), Err(FormatError::Truncated));
        }
        for n in 0..RECORD[sec::IFACES] {
            assert_eq!(InterfaceRecord::decode(&zeros[..n]), None);
        }
        for n in 0..RECORD[sec::ROUTES] {
            assert_eq!(RouteSpec::decode(&zeros[..n]), None);
        }
        for n in 0..RECORD[sec::METRICS] {
            assert_eq!(MetricsSource::decode(&zeros[..n]), None);
        }
        for n in 0..RECORD[sec::CHAINS] {
            assert_eq!(ChainRecord::decode(&zeros[..n]), None);
        }
        for n in 0..RECORD[sec::TUPLES] {
            assert_eq!(TupleRecord::decode(&zeros[..n]), None);
        }
        for n in 0..RECORD[sec::ENTRIES] {
            assert_eq!(EntryRecord::decode(&zeros[..n]), None);
            assert!(EntryView::from_slice(&zeros[..n]).is_none());
        }
        assert_eq!((u16_item(&zeros[..1], 0), u32_item(&zeros[..3], 0), u128_item(&zeros[..15], 0)), (0, 0, 0));
        // Longer input: the record at its start.
        assert_eq!(TupleRecord::decode(&zeros), Some(TupleRecord::default()));
    }

    #[test]
    fn residuals_round_trip() {
        let full = Residual {
            tcp_flags: Some((0x17, 0x02, true)),
            tcp_option: Some((8, false)),
            ttl: Some((1, 64, true)),
            len: Some((40, 1500, false)),
            pkt_types: Some(3),
            mac: Some(([2, 0, 0, 0, 0, 1], true)),
            src_type: Some((2, false)),
            dst_type: Some((4, true)),
            type_iface: 2,
            states: Some(0x11),
            limit: Some(LimitSpec { cost: 1, cap: 5, slot: 7 }),
            never: true,
            tcp_mss: Some((536, 1460, true)),
            ct_proto: Some((17, true)),
            recent: Some(RecentSpec {
                table: 3,
                cmd: 2,
                dest: true,
                rttl: true,
                reap: true,
                invert: true,
                mask: 0xffff_ff00,
                seconds: 60,
                hitcount: 4,
                stamps_mask: 31,
            }),
            ct_tuple: Some(ct_tuple::CtTupleSpec {
                dir: Some(false),
                tests: [
                    Some(ct_tuple::CtTest {
                        field: ct_tuple::CtField::OrigDstPort,
                        negated: true,
                        value: 25,
                        high: 26,
                    }),
                    None,
                    None,
                    None,
                    None,
                ],
            }),
            hashlimit: None,
            connlimit: Some(ConnlimitSpec { slot: 2, limit: 111, mask: 0xffff_ff00, dest: true, invert: true }),
            string: Some(0xfedc),
        };
        let hl = HashlimitSpec {
            table: 255,
            mode: HL_SIP | HL_DPT,
            srcmask: 24,
            dstmask: 32,
            avg: 86_400_000_000,
            burst: 1_000_000,
            expire: u32::MAX,
            gc_interval: 1,
            max: MAX_HASHLIMIT_ENTRIES,
            invert: true,
        };
        let full = Residual { hashlimit: Some(hl), ..full };
        let small = HashlimitSpec { srcmask: 0, dstmask: 17, max: 1, avg: 1, burst: 1, ..hl };
        let hl2 = Residual { hashlimit: Some(HashlimitSpec { invert: false, ..small }), ..Residual::default() };
        let mss = Residual { tcp_mss: Some((0, 65535, false)), ..Residual::default() };
        let proto = Residual { ct_proto: Some((0, false)), ..Residual::default() };
        let string = Residual { string: Some(0), ..Residual::default() };
        for r in [full, Residual::default(), mss, proto, hl2, string] {
            assert_eq!(Residual::decode(&r.encode()), Some(r));
        }
    }

    #[test]
    fn targets_round_trip() {
        let all = [
            Target::Verdict,
            Target::Jump(2),
            Target::Goto(0xff_ffff),
            Target::Return,
            Target::Log(0),
            Target::Log(0xff_ffff),
            Target::Nat(7),
            Target::NoTrack,
            Target::TcpMss(0),
            Target::TcpMss(1360),
            Target::TcpMss(u16::MAX),
            Target::Continue,
        ];
        for t in all {
            assert_eq!(Target::decode(t.encode()), t);
        }
        assert_eq!(Target::decode(9 << 24 | 5), Target::Verdict, "unknown kinds are verdicts");
    }

    #[test]
    fn nat_records_round_trip() {
        let records = [
            NatRecord {
                kind: NatKind::Snat,
                addrs: (0xc0a8_0001, 0xc0a8_00ff),
                ports: Some((1024, 65535)),
                random: true,
                random_fully: false,
                persistent: true,
            },
            NatRecord {
                kind: NatKind::Masquerade,
                addrs: (0, 0),
                ports: None,
                random: true,
                random_fully: true,
                persistent: false,
            },
            NatRecord {
                kind: NatKind::Dnat,
                addrs: (0x0a00_0002, 0x0a00_0002),
                ports: Some((8080, 8080)),
                random: false,
                random_fully: false,
                persistent: false,
            },
        ];
        for r in records {
            assert_eq!(NatRecord::decode(&r.encode()), Some(r));
        }
        let mut bad = records[0].encode();
        bad[0] = 9;
        assert_eq!(NatRecord::decode(&bad), None, "unknown kinds are refused");
        assert_eq!(NatRecord::decode(&bad[..15]), None);
    }

    #[test]
    fn record_sizes_match_the_section_table() {
        assert_eq!(RECORD, [8, 12, 4, 1, 80, 16, 4, 24, 2, 16, 8]);
    }
}
