//! The binary image layout (version 1), shared by the writer and the reader.
//!
//! All integers are little-endian. The image starts with a header:
//!
//! | offset | field |
//! |---|---|
//! | 0  | magic `UNIFWRT\0` |
//! | 8  | version (u32) |
//! | 12 | total length (u32) |
//! | 16 | rule count (u32) |
//! | 20 | conntrack capacity (u32) |
//! | 24 | input policy, forward policy (action codes, u8 each), 2 bytes zero |
//! | 28 | section count (u32) = [`SECTIONS`] |
//! | 32 | per section: offset (u32), length (u32) |
//!
//! Sections (record sizes in bytes): interfaces (8), routes (12), rule lines
//! (4), rule actions (1), chains (80), tuples (16), slots (4), entries (24),
//! cell index (2), cell masks (16). See `tables.rs` for what they hold.

use core::fmt;

use crate::flow::{Action, RejectWith};

/// First bytes of every image.
pub const MAGIC: [u8; 8] = *b"UNIFWRT\0";
/// Layout version this code reads and writes.
pub const VERSION: u32 = 1;
/// Bytes before the first section.
pub const HEADER_LEN: usize = 128;
/// Number of sections.
pub const SECTIONS: usize = 10;

/// Section numbers.
pub mod sec {
    /// Interfaces: index u8, kind u8 (0 static, 1 dhcp, 2 none), prefix length u8, 0, address u32.
    pub const IFACES: usize = 0;
    /// Routes: destination u32, prefix length u8, 3 zero bytes, gateway u32.
    pub const ROUTES: usize = 1;
    /// Source line of each rule (u32).
    pub const LINES: usize = 2;
    /// Action code of each rule (u8, bit 7 = log).
    pub const ACTIONS: usize = 3;
    /// Input and forward chain records.
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
}

/// Record size of each section.
pub const RECORD: [usize; SECTIONS] = [8, 12, 4, 1, CHAIN_LEN, 16, 4, ENTRY_LEN, 2, 16];
/// Bytes per chain record.
pub const CHAIN_LEN: usize = 80;
/// Bytes per entry.
pub const ENTRY_LEN: usize = 24;
/// Most tuples a chain may have (one bit each in a u128 mask).
pub const MAX_TUPLES: usize = 128;
/// Most address bits a cell index uses.
pub const MAX_INDEX_BITS: u32 = 16;
/// An empty hash slot.
pub const EMPTY: u32 = u32::MAX;
/// "No index" in a chain record.
pub const NO_INDEX: u32 = u32::MAX;
/// Most rules an image can hold (entries keep 24 bits of rule index).
pub const MAX_RULES: usize = 1 << 24;

/// Entry byte 20 (source length) flag: input interface negated.
pub const E_NEG_IN: u8 = 0x40;
/// Entry byte 20 flag: output interface negated.
pub const E_NEG_OUT: u8 = 0x80;
/// Entry byte 21 (destination length) flag: any protocol.
pub const E_PROTO_ANY: u8 = 0x40;
/// Entry byte 21 flag: protocol negated.
pub const E_PROTO_NEG: u8 = 0x80;
/// Entry byte 22 (states) flag: last entry of its hash list.
pub const E_LAST: u8 = 0x10;
/// Action byte flag: log.
pub const LOG: u8 = 0x80;

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

/// Little-endian u16 at `at` (0 if out of bounds).
pub fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).and_then(|s| s.try_into().ok()).map_or(0, u16::from_le_bytes)
}

/// Little-endian u32 at `at` (0 if out of bounds).
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes)
}

/// Little-endian u128 at `at` (0 if out of bounds).
pub fn u128_at(b: &[u8], at: usize) -> u128 {
    b.get(at..at + 16).and_then(|s| s.try_into().ok()).map_or(0, u128::from_le_bytes)
}

/// The byte code of an action (bits 0-2).
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
    }
}

/// The action of a byte code (bits 0-2; unknown codes drop).
pub fn action_of(code: u8) -> Action {
    match code & 7 {
        0 => Action::Accept,
        2 => Action::Reject(RejectWith::PortUnreachable),
        3 => Action::Reject(RejectWith::AdminProhibited),
        4 => Action::Reject(RejectWith::NetUnreachable),
        5 => Action::Reject(RejectWith::HostUnreachable),
        6 => Action::Reject(RejectWith::ProtoUnreachable),
        7 => Action::Reject(RejectWith::TcpReset),
        _ => Action::Drop,
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
