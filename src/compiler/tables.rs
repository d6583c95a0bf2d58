//! Builds the lookup tables of one chain and writes the whole image.
//!
//! A chain is a tuple space: every entry falls in a tuple (source level,
//! destination level), where a level is one of up to 8 prefix lengths chosen
//! per chain; an entry with a /28 source sits in the tuple of the longest level
//! <= 28. Each tuple is an open-addressed hash table (linear probing, load
//! <= 1/2) keyed by the masked (source, destination) pair; a slot points to a
//! run of entries with that key, sorted by rule. Tuples are numbered by their
//! first rule, so a lookup stops once the best match found beats every tuple
//! left. A cell index on the top 16 bits of the destination (tuples with a
//! destination level >= 16) and of the source (the rest with a source level
//! >= 16) tells which tuples can hold a match for a packet at all.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::ast::{mask, Ruleset};
use super::expand::{Entry, PROTO_ANY, PROTO_NEG};
use unifw_core::flow::{Action, Chain};
use unifw_core::image::format::*;
use unifw_core::image::InterfaceSpec;

/// Most levels per dimension (11 x 11 pairs, each keyed on ports or not, fit a
/// u8 tuple number; at most [`MAX_TUPLES`] tuples are used).
const LEVELS: usize = 11;
/// A chain with fewer tuples than this is searched without a cell index.
const INDEX_MIN_TUPLES: usize = 4;
/// Fewest and most address bits a cell index uses (2^bits cells of 2 bytes).
const INDEX_BITS: (u32, u32) = (8, 16);

/// The tables of one chain, with offsets relative to its own arrays (the
/// cell index sides' starts are relative to the chain's index and masks).
#[derive(Default)]
struct ChainTables {
    tuples: Vec<TupleRecord>,
    slots: Vec<u32>,
    /// Encoded already: a million-rule chain holds millions of them.
    entries: Vec<[u8; EntryRecord::LEN]>,
    index: Vec<u16>,
    masks: Vec<u128>,
    dst: CellIndexSide,
    src: CellIndexSide,
    rules: u32,
    bits: u32,
}

/// Sizes worth reporting about a built image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Entries per chain (input, forward).
    pub entries: [usize; 2],
    /// Tuples per chain.
    pub tuples: [usize; 2],
}

fn choose_levels(lens: impl Iterator<Item = u8>) -> Vec<u8> {
    let mut count = [0usize; 33];
    for l in lens {
        count[usize::from(l.min(32))] += 1;
    }
    let mut by_use: Vec<usize> = (1..33).filter(|&l| count[l] > 0).collect();
    by_use.sort_by_key(|&l| core::cmp::Reverse((count[l], l)));
    let mut levels: Vec<u8> = core::iter::once(0).chain(by_use.into_iter().take(LEVELS - 1).map(|l| l as u8)).collect();
    levels.sort_unstable();
    levels
}

fn level_of(levels: &[u8], len: u8) -> usize {
    levels.iter().rposition(|&l| l <= len).unwrap_or(0)
}

/// The record of an entry; `last` ends its run of equal hash keys.
fn entry_record(e: &Entry, last: bool) -> EntryRecord {
    EntryRecord {
        src: e.src.addr,
        src_len: e.src.len,
        dst: e.dst.addr,
        dst_len: e.dst.len,
        p1: e.p1,
        p2: e.p2,
        rule: e.rule,
        proto: e.proto,
        proto_any: e.proto_flags & PROTO_ANY != 0,
        proto_neg: e.proto_flags & PROTO_NEG != 0,
        states: e.states,
        last,
        in_if: e.in_if,
        out_if: e.out_if,
        in_neg: e.in_neg,
        out_neg: e.out_neg,
    }
}

/// A list longer than this makes its tuple also key on the destination port.
const PORT_KEY_RUN: usize = 4;

/// Tuple number: `pair * 2 + port_keyed`, pair = source level * LEVELS + destination level.
type TupleNo = u8;

/// The (source, destination) prefix lengths of a tuple number.
fn lens_of(src_levels: &[u8], dst_levels: &[u8], t: TupleNo) -> (u8, u8) {
    let pair = usize::from(t >> 1);
    (src_levels[pair / LEVELS], dst_levels[pair % LEVELS])
}

/// Which (source, destination) pairs also key on the destination port: those
/// with long runs of one key, most first, while the tuple count stays <= 64.
fn port_keyed_pairs(
    entries: &mut [Entry],
    pair_of: &dyn Fn(&Entry) -> u8,
    key_of: &dyn Fn(&Entry, TupleNo) -> (u32, u32, u16),
) -> u128 {
    entries.sort_unstable_by_key(|e| (pair_of(e), key_of(e, pair_of(e) << 1), e.rule));
    let mut longest = [0usize; LEVELS * LEVELS];
    let mut present = 0u128;
    let mut run = 0;
    for (i, e) in entries.iter().enumerate() {
        let p = pair_of(e);
        present |= 1 << p;
        let same = i > 0 && pair_of(&entries[i - 1]) == p && key_of(&entries[i - 1], p << 1) == key_of(e, p << 1);
        run = if same { run + 1 } else { 1 };
        longest[usize::from(p)] = longest[usize::from(p)].max(run);
    }
    let mut candidates: Vec<usize> = (0..LEVELS * LEVELS).filter(|&p| longest[p] > PORT_KEY_RUN).collect();
    candidates.sort_by_key(|&p| core::cmp::Reverse(longest[p]));
    let mut tuples = present.count_ones() as usize;
    let mut keyed = 0u128;
    for p in candidates {
        if tuples < MAX_TUPLES {
            keyed |= 1 << p;
            tuples += 1;
        }
    }
    keyed
}

/// Builds one chain's tables from its entries (any order).
fn build_chain(mut entries: Vec<Entry>, rules: u32) -> ChainTables {
    let src_levels = choose_levels(entries.iter().map(|e| e.src.len));
    let dst_levels = choose_levels(entries.iter().map(|e| e.dst.len));
    let pair_of = |e: &Entry| (level_of(&src_levels, e.src.len) * LEVELS + level_of(&dst_levels, e.dst.len)) as u8;
    let key_of = |e: &Entry, t: TupleNo| {
        let (s, d) = lens_of(&src_levels, &dst_levels, t);
        (e.src.addr & mask(s), e.dst.addr & mask(d), if t & 1 != 0 { e.p2.0 } else { 0 })
    };
    let keyed = port_keyed_pairs(&mut entries, &pair_of, &key_of);
    let tuple_of = |e: &Entry| {
        let p = pair_of(e);
        (p << 1) | u8::from(keyed & (1 << p) != 0 && e.p2.0 == e.p2.1)
    };
    entries.sort_unstable_by_key(|e| {
        let t = tuple_of(e);
        (t, key_of(e, t), e.rule)
    });
    // Tuples in order of their first rule.
    let mut first: BTreeMap<TupleNo, u32> = BTreeMap::new();
    for e in &entries {
        let m = first.entry(tuple_of(e)).or_insert(u32::MAX);
        *m = (*m).min(e.rule);
    }
    let mut order: Vec<(u32, TupleNo)> = first.iter().map(|(&t, &r)| (r, t)).collect();
    order.sort_unstable();
    let id_of: BTreeMap<TupleNo, usize> = order.iter().enumerate().map(|(i, &(_, t))| (t, i)).collect();
    let mut ct = ChainTables { rules, ..Default::default() };
    ct.tuples = alloc::vec![TupleRecord::default(); order.len()];
    ct.entries.reserve(entries.len());
    let mut i = 0;
    while i < entries.len() {
        let t = tuple_of(&entries[i]);
        let end = i + entries[i..].iter().position(|e| tuple_of(e) != t).unwrap_or(entries.len() - i);
        let record = build_tuple(&mut ct, &entries[i..end], t, &key_of, lens_of(&src_levels, &dst_levels, t));
        let id = id_of.get(&t).copied().unwrap_or(0);
        ct.tuples[id] = TupleRecord { min_rule: order[id].0, ..record };
        i = end;
    }
    let lens = |e: &Entry| lens_of(&src_levels, &dst_levels, tuple_of(e));
    build_index(&mut ct, &entries, &|e| id_of.get(&tuple_of(e)).copied().unwrap_or(0), &lens);
    ct
}

fn build_tuple(
    ct: &mut ChainTables,
    group: &[Entry],
    t: TupleNo,
    key_of: &dyn Fn(&Entry, TupleNo) -> (u32, u32, u16),
    lens: (u8, u8),
) -> TupleRecord {
    let mut keys = Vec::new();
    let base = ct.entries.len() as u32;
    for (j, e) in group.iter().enumerate() {
        let k = key_of(e, t);
        let last = group.get(j + 1).is_none_or(|n| key_of(n, t) != k);
        if j == 0 || key_of(&group[j - 1], t) != k {
            keys.push((k, base + j as u32));
        }
        ct.entries.push(entry_record(e, last).encode());
    }
    let count = (keys.len() * 3).max(1) as u32;
    let start = ct.slots.len();
    ct.slots.resize(start + count as usize, EMPTY);
    for ((s, d, port), at) in keys {
        let mut i = slot_of(s, d ^ port_mix(port), count) as usize;
        while ct.slots[start + i] != EMPTY {
            i = if i + 1 == count as usize { 0 } else { i + 1 };
        }
        ct.slots[start + i] = at;
    }
    TupleRecord {
        src_len: lens.0,
        dst_len: lens.1,
        port_keyed: t & 1 != 0,
        min_rule: 0, // set by the caller, which knows the tuple order
        slot_start: start as u32,
        slot_count: count,
    }
}

fn build_index(
    ct: &mut ChainTables,
    entries: &[Entry],
    id: &dyn Fn(&Entry) -> usize,
    lens: &dyn Fn(&Entry) -> (u8, u8),
) {
    let all = if ct.tuples.len() >= 128 { u128::MAX } else { (1u128 << ct.tuples.len()) - 1 };
    (ct.dst.unindexed, ct.src.unindexed) = (all, all);
    if ct.tuples.len() < INDEX_MIN_TUPLES {
        return;
    }
    // About four cells per entry, within INDEX_BITS.
    let bits = (usize::BITS + 2 - entries.len().leading_zeros()).clamp(INDEX_BITS.0, INDEX_BITS.1);
    ct.bits = bits;
    let mut cells = [alloc::vec![0u128; 1 << bits], alloc::vec![0u128; 1 << bits]];
    let mut unindexed = [0u128; 2];
    for e in entries {
        let (src_len, dst_len) = lens(e);
        let bit = 1u128 << id(e);
        for (side, len, addr) in [(0, dst_len, e.dst.addr), (1, src_len, e.src.addr)] {
            if u32::from(len) >= bits {
                cells[side][(addr >> (32 - bits)) as usize] |= bit;
            } else {
                unindexed[side] |= bit;
            }
        }
    }
    for (side, cells) in cells.iter().enumerate() {
        if unindexed[side] == all {
            continue; // no tuple is indexed on this side
        }
        let mut ids: BTreeMap<u128, u16> = BTreeMap::new();
        let index_start = ct.index.len() as u32;
        for &m in cells.iter() {
            let next = ids.len() as u16; // <= 2^16 cells, so <= 2^16 distinct masks
            ct.index.push(*ids.entry(m).or_insert(next));
        }
        let mask_start = ct.masks.len();
        ct.masks.resize(mask_start + ids.len(), 0);
        for (m, n) in ids {
            ct.masks[mask_start + usize::from(n)] = m;
        }
        let ci =
            CellIndexSide { unindexed: unindexed[side], index_start: Some(index_start), mask_start: mask_start as u32 };
        if side == 0 {
            ct.dst = ci;
        } else {
            ct.src = ci;
        }
    }
}

/// Writes the image of `set` from each chain's entries (input, forward,
/// then the user chains).
pub fn write_image(set: &Ruleset, entries: Vec<Vec<Entry>>) -> (Vec<u8>, TableStats) {
    let len = |n: usize| entries.get(n).map_or(0, Vec::len);
    let stats = TableStats { entries: [len(0), len(1)], tuples: [0, 0] };
    let mut counts = alloc::vec![0u32; entries.len()];
    for r in &set.rules {
        if let Some(c) = counts.get_mut(r.chain.number()) {
            *c += 1;
        }
    }
    let chains: Vec<ChainTables> = entries.into_iter().zip(counts).map(|(e, n)| build_chain(e, n)).collect();
    let stats = TableStats { tuples: [chains[0].tuples.len(), chains[1].tuples.len()], ..stats };
    let mut sections: [Vec<u8>; SECTIONS] = Default::default();
    for record in set.interfaces.iter().flat_map(InterfaceSpec::records) {
        sections[sec::IFACES].extend_from_slice(&record.encode());
    }
    for r in &set.routes {
        sections[sec::ROUTES].extend_from_slice(&r.encode());
    }
    for r in &set.rules {
        sections[sec::LINES].extend_from_slice(&r.line.to_le_bytes());
        sections[sec::ACTIONS].push(RuleAction { action: r.action, log: r.log }.encode());
    }
    let extras =
        !set.nats.is_empty() || set.rules.iter().any(|r| r.log_target.is_some() || r.image_residual().is_some());
    if extras || set.rules.iter().any(|r| r.jump.is_some()) {
        let mut logs = 0u32;
        for r in &set.rules {
            let t = match r.log_target {
                Some(_) => {
                    logs += 1;
                    Target::Log(logs - 1)
                }
                None => target(r),
            };
            sections[sec::LINES].extend_from_slice(&t.encode().to_le_bytes());
        }
    }
    if extras {
        write_extras(set, &mut sections[sec::LINES]);
    }
    for (n, ct) in chains.iter().enumerate() {
        let policy = Chain::from_index(n).map_or(Action::Accept, |c| set.policy(c));
        write_chain(&mut sections, ct, policy);
    }
    for m in &set.metrics {
        for p in &m.from {
            let from = unifw_core::net::addr::Cidr { addr: p.addr, prefix_len: p.len };
            let record = unifw_core::image::MetricsSource { interface: m.interface, port: m.port, from };
            sections[sec::METRICS].extend_from_slice(&record.encode());
        }
    }
    (assemble(set, &sections), stats)
}

/// The rule extras after the target words ([`NO_RESIDUAL`]): each rule's
/// residual number, the counts, the residual records (limits numbered in
/// rule order), the log records and the NAT records.
fn write_extras(set: &Ruleset, out: &mut Vec<u8>) {
    let mut residuals: Vec<Residual> = Vec::new();
    let mut strings: Vec<unifw_core::image::format::StringSpec> = Vec::new();
    let mut limits = 0u32;
    let mut connlimits = 0u16;
    // Each `-m recent` table's timestamp ring: for the largest hit count
    // of the rules naming it.
    let mut stamps: alloc::collections::BTreeMap<u16, u16> = Default::default();
    for rc in set.rules.iter().filter_map(|r| r.residual.recent) {
        let m = stamps.entry(rc.table).or_insert(0);
        *m = (*m).max(unifw_core::image::format::recent_stamps_mask(rc.hitcount));
    }
    for r in &set.rules {
        let n = match r.image_residual() {
            Some(mut res) => {
                if let Some(l) = res.limit.as_mut() {
                    l.slot = limits;
                    limits += 1;
                }
                if let Some(c) = res.connlimit.as_mut() {
                    c.slot = connlimits;
                    connlimits = connlimits.saturating_add(1);
                }
                if let Some(rc) = res.recent.as_mut() {
                    rc.stamps_mask = stamps.get(&rc.table).copied().unwrap_or(31);
                }
                // One string record per rule (the parser bounds their number).
                if let Some(spec) = r.string {
                    res.string = Some(strings.len() as u16);
                    strings.push(spec);
                }
                residuals.push(res);
                residuals.len() as u32 - 1
            }
            None => NO_RESIDUAL,
        };
        out.extend_from_slice(&n.to_le_bytes());
    }
    let logs: Vec<LogRecord> = set.rules.iter().filter_map(|r| r.log_target).collect();
    for w in [residuals.len() as u32, logs.len() as u32, limits, strings.len() as u32] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    for r in &residuals {
        out.extend_from_slice(&r.encode());
    }
    for l in &logs {
        out.extend_from_slice(&l.encode());
    }
    for spec in &strings {
        out.extend_from_slice(&spec.encode());
    }
    for nat in &set.nats {
        out.extend_from_slice(&nat.encode());
    }
}

/// A rule's target word (user chain `n` is image chain
/// [`super::ast::user_chain_number`]).
fn target(r: &super::ast::Rule) -> Target {
    use super::ast::{user_chain_number, Jump};
    let chain = |n: u16| user_chain_number(n) as u32;
    match r.jump {
        None => Target::Verdict,
        Some(Jump::Call(n)) => Target::Jump(chain(n)),
        Some(Jump::Goto(n)) => Target::Goto(chain(n)),
        Some(Jump::Return) => Target::Return,
        Some(Jump::NoTrack) => Target::NoTrack,
        Some(Jump::TcpMss(mss)) => Target::TcpMss(mss),
        Some(Jump::Nat(n)) => Target::Nat(n),
        Some(Jump::Continue) => Target::Continue,
    }
}

/// Appends one chain's tables to the sections, and its chain record.
fn write_chain(s: &mut [Vec<u8>; SECTIONS], ct: &ChainTables, policy: Action) {
    let count = |s: &[Vec<u8>; SECTIONS], n: usize| (s[n].len() / RECORD[n]) as u32;
    let tuple_start = count(s, sec::TUPLES);
    let slot_base = count(s, sec::SLOTS);
    let entry_base = count(s, sec::ENTRIES);
    let index_base = count(s, sec::INDEX);
    let mask_base = count(s, sec::MASKS);
    for t in &ct.tuples {
        let t = TupleRecord { slot_start: t.slot_start + slot_base, ..*t };
        s[sec::TUPLES].extend_from_slice(&t.encode());
    }
    for &slot in &ct.slots {
        let v = if slot == EMPTY { EMPTY } else { slot + entry_base };
        s[sec::SLOTS].extend_from_slice(&v.to_le_bytes());
    }
    for e in &ct.entries {
        s[sec::ENTRIES].extend_from_slice(e);
    }
    for &i in &ct.index {
        s[sec::INDEX].extend_from_slice(&i.to_le_bytes());
    }
    for &m in &ct.masks {
        s[sec::MASKS].extend_from_slice(&m.to_le_bytes());
    }
    let side = |c: &CellIndexSide| CellIndexSide {
        unindexed: c.unindexed,
        index_start: c.index_start.map(|i| i + index_base),
        mask_start: c.mask_start + mask_base,
    };
    let chain = ChainRecord {
        rules: ct.rules,
        tuple_start,
        tuple_count: ct.tuples.len() as u32,
        index_bits: ct.bits,
        dst: side(&ct.dst),
        src: side(&ct.src),
        entry_start: entry_base,
        entry_count: ct.entries.len() as u32,
        policy,
    };
    s[sec::CHAINS].extend_from_slice(&chain.encode());
}

/// The header, then each section 64-byte aligned.
fn assemble(set: &Ruleset, sections: &[Vec<u8>; SECTIONS]) -> Vec<u8> {
    let mut out = alloc::vec![0u8; HEADER_LEN];
    let mut places = [Section::default(); SECTIONS];
    for (s, place) in sections.iter().zip(places.iter_mut()) {
        while !out.len().is_multiple_of(64) {
            out.push(0);
        }
        *place = Section { offset: out.len() as u32, len: s.len() as u32 };
        out.extend_from_slice(s);
    }
    let header = Header {
        total_len: out.len() as u32,
        rule_count: set.rules.len() as u32,
        conntrack_max: set.conntrack_max,
        sections: places,
        tables_hash: 0,
    };
    out[..HEADER_LEN].copy_from_slice(&header.encode());
    let hash = tables_hash(&out);
    out[..HEADER_LEN].copy_from_slice(&Header { tables_hash: hash, ..header }.encode());
    out
}

#[cfg(test)]
mod tests {
    use unifw_core::flow::{Action, Chain, PacketKey, Verdict};
    use unifw_core::image::{IfAddr, Image, InterfaceSpec, RouteSpec};
    use unifw_core::net::addr::Cidr;

    #[test]
    fn reads_what_the_compiler_wrote() {
        let text = b"interface eth0 10.1.0.1/24\ninterface eth2 dhcp\nroute default via 10.1.0.254\nconntrack max 99\npolicy forward reject\nforward drop tcp port 22 log\n";
        let c = crate::compile("t", text, &mut |p| Err(p.into())).expect("compiles");
        let img = Image::from_bytes(&c.image).expect("valid");
        let ifs: alloc::vec::Vec<_> = img.interfaces().collect();
        assert_eq!(ifs[0], InterfaceSpec::new(0, IfAddr::Static(Cidr { addr: 0x0a01_0001, prefix_len: 24 })));
        assert_eq!(ifs[1], InterfaceSpec::new(2, IfAddr::Dhcp));
        assert_eq!(img.routes().next(), Some(RouteSpec { dest: 0, prefix_len: 0, gateway: 0x0a01_00fe }));
        assert!(ifs.iter().all(|i| i.mac.is_none() && i.fallback.is_none()));
        assert_eq!(img.conntrack_capacity(), 99);
        assert_eq!((img.rule_count(Chain::Forward), img.rule_count(Chain::Input), img.rule_line(0)), (1, 0, 6));
        let key = PacketKey {
            proto: 6,
            src: 1,
            dst: 2,
            src_port: 9,
            dst_port: 22,
            icmp_type: 0,
            icmp_code: 0,
            in_if: 0,
            out_if: 1,
            state: unifw_core::flow::CtState::New,
            extra: Default::default(),
        };
        assert_eq!(img.classify(Chain::Forward, &key), Verdict { action: Action::Drop, rule: Some(0), log: true });
        let other = PacketKey { dst_port: 23, ..key };
        assert_eq!(img.classify(Chain::Forward, &other).action, img.policy(Chain::Forward));
    }

    #[test]
    fn mac_bindings_and_fallbacks_reach_the_image_and_print_back() {
        use unifw_core::image::Fallback;
        use unifw_core::net::ReversePathFilter;
        let text = "interface eth1 mac 52:54:00:AB:00:01 10.2.0.1/24\n\
                    interface eth0 mac 52:54:00:ab:00:02 none\n\
                    interface eth2 mac 52:54:00:ab:00:03 dhcp fallback 10.3.0.5/24 after 20s\n\
                    interface eth3 dhcp fallback 10.4.0.5/16 rpfilter loose\n\
                    interface eth4 10.5.0.1/24 rpfilter off\n\
                    interface eth5 10.6.0.1/24 rpfilter strict\n";
        let set = crate::parse("t", text.as_bytes(), &mut |p| Err(p.into())).expect("parses");
        let c = crate::compile_ruleset(set.clone()).expect("compiles");
        let img = Image::from_bytes(&c.image).expect("valid");
        let ifs: alloc::vec::Vec<_> = img.interfaces().collect();
        assert_eq!(ifs, set.interfaces, "the image gives back what the file says");
        let want = [
            InterfaceSpec { mac: Some([0x52, 0x54, 0, 0xab, 0, 2]), ..InterfaceSpec::new(0, IfAddr::Unconfigured) },
            InterfaceSpec {
                mac: Some([0x52, 0x54, 0, 0xab, 0, 1]),
                ..InterfaceSpec::new(1, IfAddr::Static(Cidr { addr: 0x0a02_0001, prefix_len: 24 }))
            },
            InterfaceSpec {
                mac: Some([0x52, 0x54, 0, 0xab, 0, 3]),
                fallback: Some(Fallback { addr: Cidr { addr: 0x0a03_0005, prefix_len: 24 }, after_seconds: 20 }),
                ..InterfaceSpec::new(2, IfAddr::Dhcp)
            },
            InterfaceSpec {
                fallback: Some(Fallback {
                    addr: Cidr { addr: 0x0a04_0005, prefix_len: 16 },
                    after_seconds: unifw_core::image::DEFAULT_FALLBACK_SECONDS,
                }),
                reverse_path: ReversePathFilter::Loose,
                ..InterfaceSpec::new(3, IfAddr::Dhcp)
            },
            InterfaceSpec {
                reverse_path: ReversePathFilter::Off,
                ..InterfaceSpec::new(4, IfAddr::Static(Cidr { addr: 0x0a05_0001, prefix_len: 24 }))
            },
            InterfaceSpec::new(5, IfAddr::Static(Cidr { addr: 0x0a06_0001, prefix_len: 24 })),
        ];
        assert_eq!(ifs, want);
        let printed = crate::render(&set, crate::Format::Unifw).expect("renders");
        assert!(
            printed.contains("interface eth2 mac 52:54:00:ab:00:03 dhcp fallback 10.3.0.5/24 after 20\n"),
            "{printed}"
        );
        assert!(printed.contains("interface eth3 dhcp fallback 10.4.0.5/16 after 10 rpfilter loose\n"), "{printed}");
        assert!(printed.contains("interface eth4 10.5.0.1/24 rpfilter off\n"), "{printed}");
        assert!(printed.contains("interface eth5 10.6.0.1/24\n"), "{printed}");
        let again = crate::parse("t", printed.as_bytes(), &mut |p| Err(p.into())).expect("parses");
        assert_eq!(again.interfaces, set.interfaces);
    }

    #[test]
    fn wire_pairs_reach_the_image_and_print_back() {
        let text = "interface eth0 10.9.0.1/24\ninterface eth1 none mtu 9000\nwire eth1 eth2\n\
                    forward accept in eth1 out eth2\n";
        let set = crate::parse("t", text.as_bytes(), &mut |p| Err(p.into())).expect("parses");
        let c = crate::compile_ruleset(set.clone()).expect("compiles");
        let img = Image::from_bytes(&c.image).expect("valid");
        let ifs: alloc::vec::Vec<_> = img.interfaces().collect();
        assert_eq!(ifs, set.interfaces);
        let peers: alloc::vec::Vec<_> = ifs.iter().map(|i| (i.index, i.wire_peer, i.mtu)).collect();
        assert_eq!(peers, [(0, None, None), (1, Some(2), Some(9000)), (2, Some(1), None)]);
        let printed = crate::render(&set, crate::Format::Unifw).expect("renders");
        assert!(printed.contains("interface eth2 none\nwire eth1 eth2\n"), "{printed}");
        let again = crate::parse("t", printed.as_bytes(), &mut |p| Err(p.into())).expect("parses");
        assert_eq!(again.interfaces, set.interfaces);
    }

    #[test]
    fn mtus_reach_the_image_and_print_back() {
        let text = "interface eth0 10.1.0.1/24 mtu 9000\n\
                    interface eth1 mac 52:54:00:ab:00:01 10.2.0.1/24 mtu 1400\n\
                    interface eth2 dhcp fallback 10.3.0.5/24 mtu 68\n\
                    interface eth3 none mtu 1500\n\
                    interface eth4 dhcp\n";
        let set = crate::parse("t", text.as_bytes(), &mut |p| Err(p.into())).expect("parses");
        let mtus: alloc::vec::Vec<_> = set.interfaces.iter().map(|i| i.mtu).collect();
        assert_eq!(mtus, [Some(9000), Some(1400), Some(68), Some(1500), None]);
        let c = crate::compile_ruleset(set.clone()).expect("compiles");
        let img = Image::from_bytes(&c.image).expect("valid");
        let ifs: alloc::vec::Vec<_> = img.interfaces().collect();
        assert_eq!(ifs, set.interfaces, "the image gives back what the file says");
        let printed = crate::render(&set, crate::Format::Unifw).expect("renders");
        assert!(printed.contains("interface eth1 mac 52:54:00:ab:00:01 10.2.0.1/24 mtu 1400\n"), "{printed}");
        assert!(printed.contains("interface eth4 dhcp\n"), "{printed}");
        let again = crate::parse("t", printed.as_bytes(), &mut |p| Err(p.into())).expect("parses");
        assert_eq!(again.interfaces, set.interfaces);
    }
}

/// The image bytes of fixed inputs, pinned by hash: a change to how records
/// are written must not change a single byte. Version 2 only added the
/// tables hash to the header, version 3 two interface record kinds (MAC
/// binding, DHCP fallback) that these inputs do not use, and version 4 the
/// metrics section after the others, so an image read back as version 1
/// (see `as_version_1`) must still be
/// byte-identical to the pins.
#[cfg(test)]
mod pinned {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use crate::{classbench_to_native, compile, compile_ruleset, scenario, ScenarioOptions};

    /// FNV-1a, 64 bits.
    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
    }

    fn image_of_file(name: &str) -> Vec<u8> {
        let path = format!("{}/../../{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        compile(name, &text, &mut |p| Err(p.into())).expect("compiles").image
    }

    fn image_of_classbench(name: &str) -> Vec<u8> {
        let path = format!("{}/../../tests/classbench/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let native: String = classbench_to_native(&text).expect("converts");
        compile(name, native.as_bytes(), &mut |p| Err(p.into())).expect("compiles").image
    }

    fn image_of_scenario(rules: usize) -> Vec<u8> {
        compile_ruleset(scenario(ScenarioOptions { rules, seed: 1 })).expect("compiles").image
    }

    /// The image as layout version 1 wrote it. Version 2 changed the header
    /// (version 1 had zeros from 112 to 128, where the section table's 11th
    /// entry and the tables hash are now, and a section count of 10) and
    /// appended the metrics section, which for these inputs is empty.
    /// Version 7 moved the input and forward policies from the header
    /// (bytes 24 and 25) into their chain records (byte 72) and added ten
    /// more built-in chain records, empty for these inputs, after the two:
    /// undone here, the sections laid out again 64-byte aligned as the
    /// writer does. (Header field offsets: total length at 12, section
    /// count at 28, section table at 32.)
    fn as_version_1(image: Vec<u8>) -> Vec<u8> {
        use unifw_core::image::format::{sec, tables_hash, ChainRecord, Header, HEADER_LEN};
        let stored = u64::from_le_bytes(image[Header::HASH..Header::HASH + 8].try_into().unwrap());
        assert_eq!(stored, tables_hash(&image), "the header carries the image's own hash");
        let header = Header::decode(&image).expect("a header");
        let bytes = |n: usize| {
            let s = header.sections[n];
            image[s.offset as usize..(s.offset + s.len) as usize].to_vec()
        };
        assert_eq!(bytes(sec::METRICS), Vec::<u8>::new(), "an empty metrics section");
        let mut chains = bytes(sec::CHAINS);
        for extra in chains[2 * ChainRecord::LEN..].chunks(ChainRecord::LEN) {
            let c = ChainRecord::decode(extra).expect("a chain record");
            assert_eq!((c.rules, c.tuple_count, c.entry_count), (0, 0, 0), "an empty built-in chain");
        }
        chains.truncate(2 * ChainRecord::LEN);
        let policies = [chains[72], chains[ChainRecord::LEN + 72]];
        chains[72] = 0;
        chains[ChainRecord::LEN + 72] = 0;
        let mut out = image[..HEADER_LEN].to_vec();
        for n in 0..sec::METRICS {
            let section = if n == sec::CHAINS { chains.clone() } else { bytes(n) };
            if n > 0 {
                out.resize(out.len().next_multiple_of(64), 0);
            }
            let (at, offset) = (32 + n * 8, out.len() as u32);
            out[at..at + 4].copy_from_slice(&offset.to_le_bytes());
            out[at + 4..at + 8].copy_from_slice(&(section.len() as u32).to_le_bytes());
            out.extend_from_slice(&section);
        }
        let end = out.len() as u32;
        out[8..12].copy_from_slice(&1u32.to_le_bytes());
        out[12..16].copy_from_slice(&end.to_le_bytes());
        out[24..26].copy_from_slice(&policies);
        out[28..32].copy_from_slice(&10u32.to_le_bytes());
        out[112..128].fill(0);
        out
    }

    fn fnv_v1(image: Vec<u8>) -> u64 {
        fnv(&as_version_1(image))
    }

    /// A MAC binding and a fallback add records to the interface section
    /// and change nothing else: with the section's two new records (it
    /// stays inside its 64 bytes), the header's length and hash aside, the
    /// image is the pinned one.
    #[test]
    fn version_3_records_change_only_the_interface_section() {
        use unifw_core::image::format::{sec, Header, InterfaceRecord};
        let plain = std::fs::read_to_string(format!("{}/../../tests/pinned/default.rules", env!("CARGO_MANIFEST_DIR")))
            .expect("tests/pinned/default.rules");
        let bound = plain
            .replace("interface eth0 10.1.0.1/24", "interface eth0 mac 52:54:00:00:01:00 10.1.0.1/24")
            .replace("interface eth2 dhcp", "interface eth2 dhcp fallback 10.3.0.5/24");
        assert_ne!(bound, plain);
        let (a, b) = (image_of_text(&plain), image_of_text(&bound));
        let (ha, hb) = (Header::decode(&a).unwrap(), Header::decode(&b).unwrap());
        let ifaces = |h: &Header| h.sections[sec::IFACES];
        assert_eq!(ifaces(&hb).len, ifaces(&ha).len + 2 * InterfaceRecord::LEN as u32);
        assert_eq!(a.len(), b.len(), "the section still fits its 64 bytes");
        for s in 0..ha.sections.len() {
            assert_eq!(ha.sections[s].offset, hb.sections[s].offset, "section {s}");
            if s != sec::IFACES {
                let range =
                    |h: &Header| h.sections[s].offset as usize..(h.sections[s].offset + h.sections[s].len) as usize;
                assert_eq!(a[range(&ha)], b[range(&hb)], "section {s}");
            }
        }
        let at = ifaces(&ha).offset as usize;
        assert_eq!(a[at..at + 8], b[at..at + 8], "eth0's address record first, unchanged");
        assert_eq!(fnv_v1(a), 0xf594_e798_3bb5_b1a4, "the plain file is still the pinned image");
    }

    fn image_of_text(text: &str) -> Vec<u8> {
        compile("t.rules", text.as_bytes(), &mut |p| Err(p.into())).expect("compiles").image
    }

    #[test]
    fn images_are_byte_identical_to_version_1() {
        let fnv = fnv_v1;
        let got = [
            ("rules/default.rules", fnv(image_of_file("tests/pinned/default.rules"))),
            ("rules/example.rules", fnv(image_of_file("rules/example.rules"))),
            ("scenario 1", fnv(image_of_scenario(1))),
            ("scenario 1000", fnv(image_of_scenario(1000))),
            ("scenario 20000", fnv(image_of_scenario(20000))),
            ("acl1_1k", fnv(image_of_classbench("acl1_1k"))),
            ("fw1_1k", fnv(image_of_classbench("fw1_1k"))),
            ("ipc1_1k", fnv(image_of_classbench("ipc1_1k"))),
        ];
        // FNV-1a of the images written before the records had one definition.
        let want: [(&str, u64); 8] = [
            ("rules/default.rules", 0xf594_e798_3bb5_b1a4),
            ("rules/example.rules", 0xbd7d_3ee1_0966_07a6),
            ("scenario 1", 0xddd2_7d50_8e74_2d6b),
            ("scenario 1000", 0x28b7_5339_4ca7_a47b),
            ("scenario 20000", 0xfda8_d6fb_38bb_17c9),
            ("acl1_1k", 0x99aa_b42a_f48d_4b7b),
            ("fw1_1k", 0xbe1a_1966_a5ab_eec1),
            ("ipc1_1k", 0x302b_e84c_d61d_d2f5),
        ];
        assert_eq!(got, want);
    }
}
