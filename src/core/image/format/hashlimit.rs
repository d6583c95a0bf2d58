//! `-m hashlimit` in the image (Linux's `xt_hashlimit`, revision 3 as
//! iptables 1.8 uses it, packet rates only): residual bytes 96..116 and
//! `has`/`neg` bit 14. Every rule naming a table carries the TABLE's
//! configuration (Linux's `hinfo->cfg`: the first rule naming it, resolved
//! by the compiler); only the inversion (`--hashlimit-above`, `!`) is the
//! rule's own. The runtime tables are [`crate::image::HashlimitTables`].

/// `XT_HASHLIMIT_SCALE_v2`: `avg` is `SCALE * unit / rate` (revisions 2, 3).
pub const HASHLIMIT_SCALE: u64 = 1_000_000;
/// `CREDITS_PER_JIFFY` of `xt_hashlimit.c` (64-bit credits) for HZ 1000:
/// the power of two at or below `u64::MAX / (HZ * 60 * 60 * 24)`.
pub const HASHLIMIT_CREDITS_PER_JIFFY: u64 = 1 << 37;
/// Most entries one unifw hashlimit table holds (`--hashlimit-htable-max`
/// above it is refused; Linux allows 1,048,576).
pub const MAX_HASHLIMIT_ENTRIES: u32 = 65_536;
/// Most entries all hashlimit tables together hold (their memory, about
/// 44 bytes an entry, is allocated at boot).
pub const MAX_HASHLIMIT_TOTAL: u32 = 1 << 17;
/// unifw's `--hashlimit-htable-size` default (Linux's comes from the RAM:
/// 1024 is what a host with 128 MiB gets); the entry bound defaults to 8
/// times it, as in Linux.
pub const HASHLIMIT_DEFAULT_SIZE: u32 = 1024;
/// Most tables (`--hashlimit-name`s) one ruleset may name.
pub const MAX_HASHLIMIT_TABLES: usize = 256;

/// Mode bits (`XT_HASHLIMIT_HASH_*`).
pub const HL_DIP: u8 = 1;
/// `XT_HASHLIMIT_HASH_DPT`.
pub const HL_DPT: u8 = 2;
/// `XT_HASHLIMIT_HASH_SIP`.
pub const HL_SIP: u8 = 4;
/// `XT_HASHLIMIT_HASH_SPT`.
pub const HL_SPT: u8 = 8;

/// `user2credits` of `xt_hashlimit.c` (revision 2 and 3, HZ 1000), with
/// its wrapping u64 arithmetic.
pub fn hashlimit_user2credits(user: u64) -> u64 {
    let per_sec = 1000u64.wrapping_mul(HASHLIMIT_CREDITS_PER_JIFFY);
    user.wrapping_mul(per_sec / HASHLIMIT_SCALE)
}

/// A rule's `-m hashlimit`: its table's configuration and its inversion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashlimitSpec {
    /// The table (0..[`MAX_HASHLIMIT_TABLES`]).
    pub table: u8,
    /// `--hashlimit-mode` bits ([`HL_SIP`], ...).
    pub mode: u8,
    /// `--hashlimit-srcmask` (0..=32).
    pub srcmask: u8,
    /// `--hashlimit-dstmask` (0..=32).
    pub dstmask: u8,
    /// `avg`: [`HASHLIMIT_SCALE`] x seconds per packet (below 2^37).
    pub avg: u64,
    /// `--hashlimit-burst` (1..=1,000,000).
    pub burst: u32,
    /// `--hashlimit-htable-expire` (ms).
    pub expire: u32,
    /// `--hashlimit-htable-gcinterval` (ms, at least 1).
    pub gc_interval: u32,
    /// Entries the table holds (1..=[`MAX_HASHLIMIT_ENTRIES`]).
    pub max: u32,
    /// `--hashlimit-above` (or `!`): the match holds over the limit.
    pub invert: bool,
}

impl HashlimitSpec {
    /// Credits one packet costs.
    pub fn cost(&self) -> u64 {
        hashlimit_user2credits(self.avg)
    }

    /// Credits a new entry starts with, and the most it holds.
    pub fn cap(&self) -> u64 {
        hashlimit_user2credits(self.avg.wrapping_mul(u64::from(self.burst)))
    }

    /// Writes it into residual bytes 96..116 (the caller sets bit 14).
    pub(super) fn put(&self, b: &mut [u8]) {
        let masks = u64::from(self.srcmask.min(32)) * 33 + u64::from(self.dstmask.min(32));
        let packed = (self.avg & ((1 << 37) - 1)) | (u64::from(self.burst) & 0xf_ffff) << 37 | (masks >> 4) << 57;
        let max = self.max.clamp(1, MAX_HASHLIMIT_ENTRIES) - 1;
        let fields: [(usize, &[u8]); 6] = [
            (96, &(max as u16).to_le_bytes()),
            (98, &[self.table]),
            (99, &[self.mode & 0xf | ((masks & 0xf) as u8) << 4]),
            (100, &self.expire.to_le_bytes()),
            (104, &self.gc_interval.to_le_bytes()),
            (108, &packed.to_le_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = b.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
    }

    /// Reads it from a residual record's bytes.
    pub(super) fn get(b: &[u8], invert: bool) -> HashlimitSpec {
        let byte = |at: usize| b.get(at).copied().unwrap_or(0);
        let u32_at = |at: usize| b.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes);
        let packed = b.get(108..116).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes);
        let masks = u64::from(byte(99) >> 4) | (packed >> 57) << 4;
        HashlimitSpec {
            table: byte(98),
            mode: byte(99) & 0xf,
            srcmask: (masks / 33).min(32) as u8,
            dstmask: (masks % 33) as u8,
            avg: packed & ((1 << 37) - 1),
            burst: (packed >> 37 & 0xf_ffff) as u32,
            expire: u32_at(100),
            gc_interval: u32_at(104),
            max: u32::from(u16::from_le_bytes([byte(96), byte(97)])) + 1,
            invert,
        }
    }
}
