//! The compiled rules image: its binary layout ([`format`]), shared with the
//! compiler (`unifw-compiler`, which writes it at build time), and the reader
//! that classifies packets in place: no allocation, no parsing that grows
//! with the rule count, no panics on any bytes.

pub mod format;

use crate::flow::{mask, proto, state_bit, Action, Chain, PacketKey, Verdict};

pub use format::FormatError;
use format::*;

/// How an interface gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfAddr {
    /// A fixed address and prefix length.
    Static {
        /// Address, host order.
        addr: u32,
        /// Prefix length.
        prefix_len: u8,
    },
    /// DHCP.
    Dhcp,
    /// Up, without an address.
    Unconfigured,
}

/// One interface of the rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// 0 = eth0.
    pub index: u8,
    /// Its address.
    pub addr: IfAddr,
}

/// One static route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination network, host order.
    pub dest: u32,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Next hop, host order.
    pub gateway: u32,
}

/// Work done by one lookup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Hash tables probed.
    pub tuples: u32,
    /// Occupied slots compared.
    pub slots: u32,
    /// Entries checked.
    pub entries: u32,
}

/// A tuple record, decoded at load time.
#[derive(Debug, Clone, Copy, Default)]
struct Tuple {
    src_mask: u32,
    dst_mask: u32,
    min_rule: u32,
    slot_start: u32,
    slot_count: u32,
    port_keyed: bool,
}

/// A chain record, decoded at load time.
#[derive(Debug, Clone, Copy)]
struct ChainInfo {
    rules: u32,
    all: u128,
    tuples: [Tuple; MAX_TUPLES],
    shift: u32,
    entry_start: u32,
    entry_count: u32,
    dst: Side,
    src: Side,
}

/// One side (destination or source) of a chain's cell index.
#[derive(Debug, Clone, Copy)]
struct Side {
    unindexed: u128,
    index: u32,
    mask_start: u32,
}

/// A validated rules image, read in place.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    sections: [&'a [u8]; SECTIONS],
    rule_count: u32,
    conntrack_max: u32,
    policies: [u8; 2],
    chains: [ChainInfo; 2],
}

const NONE: u32 = u32::MAX;

impl<'a> Image<'a> {
    /// Checks the header, the sections and the chain and tuple records
    /// (O(sections + tuples)); entries are bounds-checked as they are read.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Image<'a>, FormatError> {
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated);
        }
        if bytes[0..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(FormatError::BadVersion(version));
        }
        let total = u32_at(bytes, 12) as usize;
        if total > bytes.len() || u32_at(bytes, 28) as usize != SECTIONS {
            return Err(FormatError::Truncated);
        }
        let mut sections: [&[u8]; SECTIONS] = [&[]; SECTIONS];
        for (i, s) in sections.iter_mut().enumerate() {
            let off = u32_at(bytes, 32 + i * 8) as usize;
            let len = u32_at(bytes, 36 + i * 8) as usize;
            let end = off.checked_add(len).ok_or(FormatError::BadSection(i))?;
            if off < HEADER_LEN || end > total || !len.is_multiple_of(RECORD[i]) {
                return Err(FormatError::BadSection(i));
            }
            *s = &bytes[off..end];
        }
        let rule_count = u32_at(bytes, 16);
        if sections[sec::LINES].len() / 4 != rule_count as usize || sections[sec::ACTIONS].len() != rule_count as usize
        {
            return Err(FormatError::BadSection(sec::LINES));
        }
        if sections[sec::CHAINS].len() != 2 * CHAIN_LEN {
            return Err(FormatError::BadChain);
        }
        let chains = [chain_info(&sections, 0)?, chain_info(&sections, 1)?];
        Ok(Image { sections, rule_count, conntrack_max: u32_at(bytes, 20), policies: [bytes[24], bytes[25]], chains })
    }

    /// The interfaces the rules file configures.
    pub fn interfaces(&self) -> impl Iterator<Item = InterfaceSpec> + '_ {
        self.sections[sec::IFACES].chunks_exact(8).map(|c| InterfaceSpec {
            index: c[0],
            addr: match c[1] {
                0 => IfAddr::Static { addr: u32_at(c, 4), prefix_len: c[2].min(32) },
                1 => IfAddr::Dhcp,
                _ => IfAddr::Unconfigured,
            },
        })
    }

    /// The static routes.
    pub fn routes(&self) -> impl Iterator<Item = RouteSpec> + '_ {
        self.sections[sec::ROUTES].chunks_exact(12).map(|c| RouteSpec {
            dest: u32_at(c, 0),
            prefix_len: c[4].min(32),
            gateway: u32_at(c, 8),
        })
    }

    /// The default policy of a chain.
    pub fn policy(&self, chain: Chain) -> Action {
        action_of(self.policies[chain_no(chain)])
    }

    /// Capacity of the connection-tracking table.
    pub fn conntrack_capacity(&self) -> u32 {
        self.conntrack_max
    }

    /// Rules in a chain.
    pub fn rule_count(&self, chain: Chain) -> u32 {
        self.chains[chain_no(chain)].rules
    }

    /// Rules in both chains.
    pub fn total_rules(&self) -> u32 {
        self.rule_count
    }

    /// 1-based source line of a rule (0 if there is no such rule).
    pub fn rule_line(&self, rule: u32) -> u32 {
        u32_at(self.sections[sec::LINES], rule as usize * 4)
    }

    /// Bytes of lookup tables (everything but the header, interfaces and routes).
    pub fn table_bytes(&self) -> usize {
        self.sections.iter().skip(sec::LINES).map(|s| s.len()).sum()
    }

    /// The verdict for `key` in `chain`: that of the first matching rule in
    /// file order, or the chain's policy.
    pub fn classify(&self, chain: Chain, key: &PacketKey) -> Verdict {
        self.classify_counting::<false>(chain, key, &mut Cost::default())
    }

    /// [`Image::classify`], also counting the work done (for `explain` and tuning).
    pub fn classify_cost(&self, chain: Chain, key: &PacketKey) -> (Verdict, Cost) {
        let mut cost = Cost::default();
        (self.classify_counting::<true>(chain, key, &mut cost), cost)
    }

    #[inline]
    fn classify_counting<const COUNT: bool>(&self, chain: Chain, key: &PacketKey, cost: &mut Cost) -> Verdict {
        let c = &self.chains[chain_no(chain)];
        let (p1, p2) = port_fields(key);
        let mut todo = (self.cell_mask(c, &c.dst, key.dst) & self.cell_mask(c, &c.src, key.src)) & c.all;
        let mut best = NONE;
        while todo != 0 {
            let t = todo.trailing_zeros() as usize;
            todo &= todo - 1;
            let Some(tuple) = c.tuples.get(t) else { break };
            if tuple.min_rule >= best {
                break;
            }
            best = self.probe::<COUNT>(tuple, key, p1, p2, best, cost);
        }
        self.verdict(chain, best)
    }

    /// The same verdict by a linear scan of every entry of the chain (for tests
    /// and as the benchmark's baseline). Entries are grouped by tuple, not in
    /// rule order, so every one is checked: what a first-match scan costs when
    /// the last rule matches.
    pub fn classify_linear(&self, chain: Chain, key: &PacketKey) -> Verdict {
        let c = &self.chains[chain_no(chain)];
        let (p1, p2) = port_fields(key);
        let mut best = NONE;
        for e in c.entry_start..c.entry_start.saturating_add(c.entry_count) {
            let Some(b) = self.entry(e) else { break };
            let rule = u32::from_le_bytes([b[16], b[17], b[18], 0]);
            if rule < best && entry_matches(b, key, p1, p2) {
                best = rule;
            }
        }
        self.verdict(chain, best)
    }

    fn verdict(&self, chain: Chain, best: u32) -> Verdict {
        match self.sections[sec::ACTIONS].get(best as usize) {
            Some(&a) if best != NONE => Verdict { action: action_of(a), rule: Some(best), log: a & LOG != 0 },
            _ => Verdict { action: self.policy(chain), rule: None, log: false },
        }
    }

    /// Tuples that may hold a match for `addr` on one side.
    #[inline]
    fn cell_mask(&self, c: &ChainInfo, side: &Side, addr: u32) -> u128 {
        if side.index == NO_INDEX {
            return side.unindexed;
        }
        let cell = addr.checked_shr(c.shift).unwrap_or(0) as usize;
        let n = u16_at(self.sections[sec::INDEX], (side.index as usize).saturating_add(cell) * 2);
        side.unindexed
            | u128_at(self.sections[sec::MASKS], (side.mask_start as usize).saturating_add(usize::from(n)) * 16)
    }

    #[inline]
    fn probe<const COUNT: bool>(
        &self,
        t: &Tuple,
        key: &PacketKey,
        p1: u16,
        p2: u16,
        best: u32,
        cost: &mut Cost,
    ) -> u32 {
        if COUNT {
            cost.tuples += 1;
        }
        let (ks, kd) = (key.src & t.src_mask, key.dst & t.dst_mask);
        let slots = self.sections[sec::SLOTS];
        let mut i = slot_of(ks, if t.port_keyed { kd ^ port_mix(p2) } else { kd }, t.slot_count);
        for _ in 0..t.slot_count {
            let e = u32_at(slots, (t.slot_start as usize + i as usize) * 4);
            let Some(b) = self.entry(e) else { return best };
            if COUNT {
                cost.slots += 1;
            }
            if u32_at(b, 0) & t.src_mask == ks
                && u32_at(b, 4) & t.dst_mask == kd
                && (!t.port_keyed || u16_at(b, 12) == p2)
            {
                return self.scan::<COUNT>(e, key, p1, p2, best, cost);
            }
            i += 1;
            if i == t.slot_count {
                i = 0;
            }
        }
        best
    }

    #[inline]
    fn entry(&self, e: u32) -> Option<&'a [u8; ENTRY_LEN]> {
        let at = (e as usize).checked_mul(ENTRY_LEN)?;
        self.sections[sec::ENTRIES].get(at..at + ENTRY_LEN)?.try_into().ok()
    }

    /// Walks the run of entries from `e`; returns the first matching rule below `best`.
    fn scan<const COUNT: bool>(
        &self,
        mut e: u32,
        key: &PacketKey,
        p1: u16,
        p2: u16,
        best: u32,
        cost: &mut Cost,
    ) -> u32 {
        while let Some(b) = self.entry(e) {
            if COUNT {
                cost.entries += 1;
            }
            let rule = u32::from_le_bytes([b[16], b[17], b[18], 0]);
            if rule >= best {
                return best;
            }
            if entry_matches(b, key, p1, p2) {
                return rule;
            }
            if b[22] & E_LAST != 0 {
                return best;
            }
            e = e.wrapping_add(1);
        }
        best
    }
}

/// The two 16-bit fields entries match: ports, or ICMP type and code.
#[inline]
fn port_fields(key: &PacketKey) -> (u16, u16) {
    if key.proto == proto::ICMP {
        (u16::from(key.icmp_type), u16::from(key.icmp_code))
    } else {
        (key.src_port, key.dst_port)
    }
}

#[inline]
fn entry_matches(b: &[u8; ENTRY_LEN], key: &PacketKey, p1: u16, p2: u16) -> bool {
    let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let half = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let (sl, dl) = (b[20] & 0x3f, b[21] & 0x3f);
    if (key.src ^ word(0)) & mask(sl) != 0 || (key.dst ^ word(4)) & mask(dl) != 0 {
        return false;
    }
    if p1 < half(8) || p1 > half(10) || p2 < half(12) || p2 > half(14) {
        return false;
    }
    if b[21] & E_PROTO_ANY == 0 && ((key.proto == b[19]) == (b[21] & E_PROTO_NEG != 0)) {
        return false;
    }
    if b[22] & state_bit(key.state) == 0 {
        return false;
    }
    let (in_if, out_if) = (b[23] & 0x0f, b[23] >> 4);
    (in_if == 0x0f || (key.in_if == in_if) != (b[20] & E_NEG_IN != 0))
        && (out_if == 0x0f || (key.out_if == out_if) != (b[20] & E_NEG_OUT != 0))
}

fn chain_no(chain: Chain) -> usize {
    match chain {
        Chain::Input => 0,
        Chain::Forward => 1,
    }
}

fn chain_info(s: &[&[u8]; SECTIONS], n: usize) -> Result<ChainInfo, FormatError> {
    let c = s[sec::CHAINS].get(n * CHAIN_LEN..(n + 1) * CHAIN_LEN).ok_or(FormatError::BadChain)?;
    let w = |i: usize| u32_at(c, i * 4);
    let (tuple_start, tuple_count) = (w(1) as usize, w(2) as usize);
    let slots = s[sec::SLOTS].len() / 4;
    if tuple_count > MAX_TUPLES || tuple_start + tuple_count > s[sec::TUPLES].len() / 16 {
        return Err(FormatError::BadChain);
    }
    let mut tuples = [Tuple::default(); MAX_TUPLES];
    for (i, t) in tuples.iter_mut().enumerate().take(tuple_count) {
        let r = &s[sec::TUPLES][(tuple_start + i) * 16..(tuple_start + i + 1) * 16];
        *t = Tuple {
            src_mask: mask(r[0]),
            dst_mask: mask(r[1]),
            min_rule: u32_at(r, 4),
            slot_start: u32_at(r, 8),
            slot_count: u32_at(r, 12),
            port_keyed: r[2] & 1 != 0,
        };
        if t.slot_count == 0 || t.slot_start as usize + t.slot_count as usize > slots {
            return Err(FormatError::BadChain);
        }
    }
    let all = if tuple_count == 128 { u128::MAX } else { (1u128 << tuple_count) - 1 };
    let side = |i: usize| {
        let u = u128::from(w(i))
            | (u128::from(w(i + 1)) << 32)
            | (u128::from(w(i + 2)) << 64)
            | (u128::from(w(i + 3)) << 96);
        Side { unindexed: u & all, index: w(i + 4), mask_start: w(i + 5) }
    };
    let info = ChainInfo {
        rules: w(0),
        all,
        tuples,
        shift: 32 - w(3).min(MAX_INDEX_BITS),
        entry_start: w(16),
        entry_count: w(17),
        dst: side(4),
        src: side(10),
    };
    let index_len = s[sec::INDEX].len() / 2;
    for ix in [info.dst.index, info.src.index] {
        if ix != NO_INDEX && ix as usize + (1usize << (32 - info.shift)) > index_len {
            return Err(FormatError::BadChain);
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(Image::from_bytes(&[]).unwrap_err(), FormatError::Truncated);
        assert_eq!(Image::from_bytes(&[0u8; 200]).unwrap_err(), FormatError::BadMagic);
        let mut b = alloc::vec![0u8; 200];
        b[..8].copy_from_slice(&MAGIC);
        b[8] = 9;
        assert_eq!(Image::from_bytes(&b).unwrap_err(), FormatError::BadVersion(9));
    }
}
