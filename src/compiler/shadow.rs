//! Warnings for rules that can never match because one earlier rule covers
//! them. Affordable, not complete: each rule is compared with the 64 rules
//! before it in its chain and with up to 64 earlier broad rules (both
//! addresses /8 or wider), and only rules whose matches are single boxes
//! (one prefix per address, one port range, no negation) take part.
//! A jump (`-j CHAIN`) hides nothing, since evaluation comes back after
//! it; a goto or `RETURN` hides what it covers, as a verdict does.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec::Vec;

use unifw_core::flow::Chain;

use super::ast::{IcmpMatch, IfMatch, Jump, Prefix, ProtoMatch, Rule, RuleChain, Ruleset};
use super::diag::Diagnostic;

const WINDOW: usize = 64;
const BROAD: usize = 64;

/// A rule reduced to one box, when it is one.
#[derive(Clone, Copy)]
struct Box1 {
    rule: u32,
    proto: Option<u8>,
    src: Prefix,
    dst: Prefix,
    sport: (u16, u16),
    dport: (u16, u16),
    icmp: Option<IcmpMatch>,
    in_if: Option<IfMatch>,
    out_if: Option<IfMatch>,
    states: u8,
}

fn single_prefix(m: Option<&super::ast::AddrMatch>) -> Option<Prefix> {
    match m {
        None => Some(Prefix::new(0, 0)),
        Some(m) if !m.negated && m.prefixes.len() == 1 => m.prefixes.first().copied(),
        _ => None,
    }
}

fn single_range(m: Option<&super::ast::PortMatch>) -> Option<(u16, u16)> {
    match m {
        None => Some((0, u16::MAX)),
        Some(m) if !m.negated && m.ranges.len() == 1 => m.ranges.first().copied(),
        _ => None,
    }
}

fn box_of(r: &Rule, i: u32) -> Option<Box1> {
    let proto = match &r.proto {
        ProtoMatch::Any => None,
        ProtoMatch::OneOf(l) if l.len() == 1 => l.first().copied(),
        _ => return None,
    };
    if r.icmp.is_some_and(|m| m.negated) {
        return None;
    }
    Some(Box1 {
        rule: i,
        proto,
        src: single_prefix(r.src.as_ref())?,
        dst: single_prefix(r.dst.as_ref())?,
        sport: single_range(r.sport.as_ref())?,
        dport: single_range(r.dport.as_ref())?,
        icmp: r.icmp,
        in_if: r.in_if,
        out_if: r.out_if,
        states: r.states,
    })
}

fn within(inner: (u16, u16), outer: (u16, u16)) -> bool {
    outer.0 <= inner.0 && inner.1 <= outer.1
}

/// Whether every packet `b` matches also matches `a`.
fn covers(a: &Box1, b: &Box1) -> bool {
    (a.proto.is_none() || a.proto == b.proto)
        && a.src.covers(&b.src)
        && a.dst.covers(&b.dst)
        && within(b.sport, a.sport)
        && within(b.dport, a.dport)
        && match (a.icmp, b.icmp) {
            (None, _) => true,
            (Some(x), Some(y)) => x.icmp_type == y.icmp_type && (x.code.is_none() || x.code == y.code),
            _ => false,
        }
        && (a.in_if.is_none() || a.in_if == b.in_if)
        && (a.out_if.is_none() || a.out_if == b.out_if)
        && b.states & !a.states == 0
}

/// Warnings for rules covered by one earlier rule of the same chain.
pub fn shadowed(set: &Ruleset) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let user = (0..set.chains.len()).map(|n| RuleChain::User(n.min(usize::from(u16::MAX)) as u16));
    for chain in [RuleChain::Builtin(Chain::Input), RuleChain::Builtin(Chain::Forward)].into_iter().chain(user) {
        let mut recent: VecDeque<Box1> = VecDeque::with_capacity(WINDOW);
        let mut broad: Vec<Box1> = Vec::new();
        for (i, r) in set.rules.iter().enumerate().filter(|(_, r)| r.chain == chain) {
            let Some(b) = box_of(r, i as u32) else {
                continue;
            };
            if let Some(a) = broad.iter().chain(recent.iter()).find(|a| covers(a, &b)) {
                let earlier = &set.rules[a.rule as usize];
                let file = set.files.get(usize::from(r.file)).map_or("?", |f| f.as_str());
                let efile = set.files.get(usize::from(earlier.file)).map_or("?", |f| f.as_str());
                let msg = format!(
                    "warning: rule can never match: the rule at {efile}:{} matches every packet it would",
                    earlier.line
                );
                out.push(Diagnostic::plain(file, r.line, r.column, msg));
                continue;
            }
            if matches!(r.jump, Some(Jump::Call(_) | Jump::Continue))
                || r.residual.recent.is_some()
                || r.residual.connlimit.is_some()
            {
                // Evaluation comes back to the next rule, or `-m recent`
                // may not hold: it hides nothing.
                continue;
            }
            if b.src.len <= 8 && b.dst.len <= 8 && broad.len() < BROAD {
                broad.push(b);
            }
            if recent.len() == WINDOW {
                recent.pop_front();
            }
            recent.push_back(b);
        }
    }
    out
}
