//! Turns a rule into table entries: boxes of one source prefix, one
//! destination prefix, one protocol and one port (or ICMP type/code) range
//! pair. Lists expand into several entries; negations into their complements.

use alloc::vec::Vec;

use super::ast::{AddrMatch, IcmpMatch, IfMatch, PortMatch, Prefix, ProtoMatch, Rule};

/// Entry flag: the protocol field is ignored.
pub const PROTO_ANY: u8 = 1;
/// Entry flag: the protocol must differ from the field.
pub const PROTO_NEG: u8 = 2;
/// Interface field value meaning "any interface" (the image's).
pub const IF_ANY: u8 = unifw_core::image::format::ANY_IF;

/// One box of a rule, as the tables store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Source prefix.
    pub src: Prefix,
    /// Destination prefix.
    pub dst: Prefix,
    /// Source port range, or ICMP type range for ICMP rules.
    pub p1: (u16, u16),
    /// Destination port range, or ICMP code range for ICMP rules.
    pub p2: (u16, u16),
    /// Protocol number (see `proto_flags`).
    pub proto: u8,
    /// [`PROTO_ANY`] / [`PROTO_NEG`].
    pub proto_flags: u8,
    /// Input interface or [`IF_ANY`].
    pub in_if: u8,
    /// Output interface or [`IF_ANY`].
    pub out_if: u8,
    /// Whether the input interface is negated.
    pub in_neg: bool,
    /// Whether the output interface is negated.
    pub out_neg: bool,
    /// Connection-state mask.
    pub states: u8,
    /// Rule index.
    pub rule: u32,
}

const FULL: (u16, u16) = (0, u16::MAX);

/// Expands `rule` (with index `index`) into `out`; Err(n) if it would need
/// more than `cap` entries (nothing is added then).
pub fn expand(rule: &Rule, index: u32, cap: usize, out: &mut Vec<Entry>) -> Result<(), usize> {
    let srcs = addresses(rule.src.as_ref());
    let dsts = addresses(rule.dst.as_ref());
    let protos = protocols(&rule.proto);
    let boxes = port_boxes(rule);
    let (ins, outs) = (interfaces(rule.in_if), interfaces(rule.out_if));
    let n = [dsts.len(), protos.len(), boxes.len(), ins.len(), outs.len()]
        .into_iter()
        .fold(srcs.len(), usize::saturating_mul);
    if n > cap {
        return Err(n);
    }
    out.reserve(n);
    for (&src, &dst) in srcs.iter().flat_map(|s| dsts.iter().map(move |d| (s, d))) {
        for &(proto, proto_flags) in &protos {
            for &(p1, p2) in &boxes {
                for (&(in_if, in_neg), &(out_if, out_neg)) in ins.iter().flat_map(|i| outs.iter().map(move |o| (i, o)))
                {
                    out.push(Entry {
                        src,
                        dst,
                        p1,
                        p2,
                        proto,
                        proto_flags,
                        in_if,
                        out_if,
                        in_neg,
                        out_neg,
                        // UNTRACKED is no entry bit: such rules take every
                        // tracked state here and their residual the rest.
                        states: if rule.states & unifw_core::flow::UNTRACKED_BIT != 0 { 0x0f } else { rule.states },
                        rule: index,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The (interface, negated) pairs an interface match stands for: one per
/// interface of a set, none for an empty set (it matches nothing), one
/// negated entry for `!` one interface, and the complement over eth0..eth14
/// for `!` several (an entry holds one interface).
pub fn interfaces(m: Option<IfMatch>) -> Vec<(u8, bool)> {
    let Some(m) = m else { return alloc::vec![(IF_ANY, false)] };
    match (m.negated, m.set.count_ones()) {
        (false, _) => m.indexes().map(|i| (i, false)).collect(),
        (true, 0) => alloc::vec![(IF_ANY, false)],
        (true, 1) => m.indexes().map(|i| (i, true)).collect(),
        (true, _) => (0..IF_ANY).filter(|i| m.set & (1 << i) == 0).map(|i| (i, false)).collect(),
    }
}

/// The prefixes an address match stands for (complemented if negated).
pub fn addresses(m: Option<&AddrMatch>) -> Vec<Prefix> {
    let Some(m) = m else {
        return alloc::vec![Prefix::new(0, 0)];
    };
    let mut iv: Vec<(u64, u64)> = m
        .prefixes
        .iter()
        .map(|p| (u64::from(p.addr), u64::from(p.addr) + (1u64 << (32 - p.len.min(32))) - 1))
        .collect();
    iv = merge(iv);
    if m.negated {
        iv = complement(&iv, u64::from(u32::MAX));
    }
    let mut out = Vec::new();
    for (lo, hi) in iv {
        to_prefixes(lo, hi, &mut out);
    }
    out
}

/// Sorts and merges overlapping or adjacent inclusive intervals.
pub fn merge(mut iv: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    iv.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(iv.len());
    for (lo, hi) in iv {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The complement of merged intervals within `0..=max`.
pub fn complement(iv: &[(u64, u64)], max: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut next = 0u64;
    for &(lo, hi) in iv {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi + 1;
    }
    if next <= max {
        out.push((next, max));
    }
    out
}

/// Appends the fewest prefixes that cover `lo..=hi` exactly.
pub fn to_prefixes(mut lo: u64, hi: u64, out: &mut Vec<Prefix>) {
    while lo <= hi {
        let mut size = if lo == 0 { 1u64 << 32 } else { 1u64 << lo.trailing_zeros().min(32) };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push(Prefix::new(lo as u32, (32 - size.trailing_zeros()) as u8));
        lo += size;
    }
}

fn protocols(m: &ProtoMatch) -> Vec<(u8, u8)> {
    match m {
        ProtoMatch::Any => alloc::vec![(0, PROTO_ANY)],
        ProtoMatch::Not(p) => alloc::vec![(*p, PROTO_NEG)],
        ProtoMatch::OneOf(list) => {
            let mut l: Vec<(u8, u8)> = list.iter().map(|&p| (p, 0)).collect();
            l.sort_unstable();
            l.dedup();
            l
        }
    }
}

/// The ranges a port match stands for (complemented if negated).
pub fn port_ranges(m: Option<&PortMatch>) -> Vec<(u16, u16)> {
    let Some(m) = m else { return alloc::vec![FULL] };
    let mut iv = merge(m.ranges.iter().map(|&(a, b)| (u64::from(a), u64::from(b))).collect());
    if m.negated {
        iv = complement(&iv, u64::from(u16::MAX));
    }
    iv.into_iter().map(|(a, b)| (a as u16, b as u16)).collect()
}

fn port_boxes(rule: &Rule) -> Vec<((u16, u16), (u16, u16))> {
    if let Some(icmp) = rule.icmp {
        return icmp_boxes(icmp);
    }
    let sports = port_ranges(rule.sport.as_ref());
    let dports = port_ranges(rule.dport.as_ref());
    let Some(either) = rule.ports.as_ref() else { return product(&sports, &dports) };
    // `--ports L`: (S∩L × D) ∪ (S∖L × D∩L), disjoint; `! --ports L`:
    // S∖L × D∖L (xt_multiport: neither port in L).
    let list = port_ranges(Some(&PortMatch { negated: false, ranges: either.ranges.clone() }));
    let outside = port_ranges(Some(&PortMatch { negated: true, ranges: either.ranges.clone() }));
    let (s_out, d_out) = (meet(&sports, &outside), meet(&dports, &outside));
    if either.negated {
        return product(&s_out, &d_out);
    }
    let mut out = product(&meet(&sports, &list), &dports);
    out.extend(product(&s_out, &meet(&dports, &list)));
    out
}

/// Every pair of a source and a destination range.
fn product(sports: &[(u16, u16)], dports: &[(u16, u16)]) -> Vec<((u16, u16), (u16, u16))> {
    let mut out = Vec::with_capacity(sports.len() * dports.len());
    for &s in sports {
        for &d in dports {
            out.push((s, d));
        }
    }
    out
}

/// The intersection of two sorted lists of disjoint port ranges.
fn meet(a: &[(u16, u16)], b: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for &(alo, ahi) in a {
        for &(blo, bhi) in b {
            let (lo, hi) = (alo.max(blo), ahi.min(bhi));
            if lo <= hi {
                out.push((lo, hi));
            }
        }
    }
    out
}

fn icmp_boxes(m: IcmpMatch) -> Vec<((u16, u16), (u16, u16))> {
    let t = u16::from(m.icmp_type);
    let code = m.code.map(u16::from);
    if !m.negated {
        return alloc::vec![((t, t), code.map_or(FULL, |c| (c, c)))];
    }
    let mut out = Vec::new();
    let around = |v: u16| [(v > 0).then(|| (0, v - 1)), (v < u16::MAX).then(|| (v + 1, u16::MAX))];
    for r in around(t).into_iter().flatten() {
        out.push((r, FULL));
    }
    if let Some(c) = code {
        for r in around(c).into_iter().flatten() {
            out.push(((t, t), r));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negated_prefix_becomes_its_complement() {
        let m = AddrMatch { negated: true, prefixes: alloc::vec![Prefix::new(0x0a00_0000, 8)].into() };
        let out = addresses(Some(&m));
        assert_eq!(out.len(), 8);
        assert!(out.iter().all(|p| !p.contains(0x0a01_0002)));
        assert!(out.iter().any(|p| p.contains(0x0b00_0000)) && out.iter().any(|p| p.contains(0)));
        let all = AddrMatch { negated: true, prefixes: alloc::vec![Prefix::new(0, 0)].into() };
        assert!(addresses(Some(&all)).is_empty());
    }

    #[test]
    fn negated_ports_become_ranges_around_them() {
        let m = PortMatch { negated: true, ranges: alloc::vec![(80, 80), (0, 10), (65535, 65535)] };
        assert_eq!(port_ranges(Some(&m)), alloc::vec![(11, 79), (81, 65534)]);
    }

    #[test]
    fn either_port_becomes_two_disjoint_boxes_and_negated_one() {
        let mut r = Rule::any(unifw_core::flow::Chain::Forward, unifw_core::flow::Action::Accept);
        r.proto = ProtoMatch::OneOf(alloc::vec![6]);
        r.sport = Some(PortMatch { negated: false, ranges: alloc::vec![(1000, 3000)] });
        r.ports = Some(PortMatch { negated: false, ranges: alloc::vec![(22, 22), (2000, 2100)] });
        let boxes = port_boxes(&r);
        let full = (0, u16::MAX);
        let want = alloc::vec![
            ((2000, 2100), full),
            ((1000, 1999), (22, 22)),
            ((1000, 1999), (2000, 2100)),
            ((2101, 3000), (22, 22)),
            ((2101, 3000), (2000, 2100)),
        ];
        assert_eq!(boxes, want);
        r.ports = Some(PortMatch { negated: true, ranges: alloc::vec![(22, 22)] });
        let boxes = port_boxes(&r);
        assert_eq!(boxes, alloc::vec![((1000, 3000), (0, 21)), ((1000, 3000), (23, u16::MAX))]);
    }

    #[test]
    fn lists_merge_before_expansion() {
        let m = AddrMatch {
            negated: false,
            prefixes: alloc::vec![Prefix::new(0x0a01_0000, 25), Prefix::new(0x0a01_0080, 25)].into(),
        };
        assert_eq!(addresses(Some(&m)), alloc::vec![Prefix::new(0x0a01_0000, 24)]);
    }
}
