//! The rule-count scenarios of CONVENTIONS.md: N forward rules that look like
//! a real ACL, none of which matches the lab's benchmark traffic, then one
//! last rule that lets the lab (10.0.0.0/8, both ways) through.

use alloc::vec::Vec;

use unifw_core::flow::{proto, Action, Chain, RejectWith};

use super::ast::{state_bit, AddrMatch, IcmpMatch, PortMatch, Prefix, ProtoMatch, Rule, Ruleset};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioOptions {
    /// Forward rules, including the final lab rule (at least 1).
    pub rules: usize,
    /// PRNG seed.
    pub seed: u64,
}

/// A small deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// True with probability `pct`/100.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

const SERVICES: &[u16] = &[
    22, 25, 53, 80, 110, 123, 143, 389, 443, 445, 465, 587, 993, 995, 1433, 1521, 3306, 3389, 5432, 5900, 6379, 8080,
    8443, 9200,
];

/// The lab's benchmark-traffic rule: 10.0.0.0/8 to 10.0.0.0/8, accept.
pub fn lab_rule() -> Rule {
    let lab = || Some(AddrMatch { negated: false, prefixes: alloc::vec![Prefix::new(0x0a00_0000, 8)].into() });
    Rule { src: lab(), dst: lab(), ..Rule::any(Chain::Forward, Action::Accept) }
}

/// The scenario ruleset for `opts`: lab interfaces, `policy input drop`,
/// `policy forward drop`, input rules for ping and DHCP, N forward rules.
pub fn scenario(opts: ScenarioOptions) -> Ruleset {
    let mut set = Ruleset { interfaces: Ruleset::lab_interfaces(), ..Ruleset::default() };
    set.set_policy(Chain::Input, Action::Drop);
    set.set_policy(Chain::Forward, Action::Drop);
    set.files.push("scenario".into());
    let icmp = || ProtoMatch::OneOf(alloc::vec![proto::ICMP]);
    let ping = Rule {
        proto: icmp(),
        icmp: Some(IcmpMatch { negated: false, icmp_type: 8, code: None }),
        ..Rule::any(Chain::Input, Action::Accept)
    };
    let back = Rule {
        states: state_bit(unifw_core::flow::CtState::Established) | state_bit(unifw_core::flow::CtState::Related),
        ..Rule::any(Chain::Input, Action::Accept)
    };
    let dhcp = Rule {
        proto: ProtoMatch::OneOf(alloc::vec![proto::UDP]),
        sport: Some(PortMatch { negated: false, ranges: alloc::vec![(67, 67)] }),
        dport: Some(PortMatch { negated: false, ranges: alloc::vec![(68, 68)] }),
        ..Rule::any(Chain::Input, Action::Accept)
    };
    set.rules = alloc::vec![ping, back, dhcp];
    let mut rng = Rng::new(opts.seed);
    let sites: Vec<u32> = (0..1024).map(|_| outside_lab(&mut rng) & 0xffff_0000).collect();
    for _ in 1..opts.rules.max(1) {
        set.rules.push(random_rule(&mut rng, &sites));
    }
    set.rules.push(lab_rule());
    for (i, r) in set.rules.iter_mut().enumerate() {
        r.line = i as u32 + 1;
    }
    set
}

/// A random address whose first octet is neither 0, 10, 127 nor >= 224.
fn outside_lab(rng: &mut Rng) -> u32 {
    let octet =
        [11u32, 23, 37, 45, 62, 81, 91, 100, 128, 141, 152, 163, 172, 185, 192, 198, 203, 212][rng.below(18) as usize];
    (octet << 24) | (rng.next_u64() as u32 & 0x00ff_ffff)
}

/// A prefix near one of the sites; `len` 0 means "any" (None).
fn prefix(rng: &mut Rng, sites: &[u32], len: u8) -> Option<AddrMatch> {
    if len == 0 {
        return None;
    }
    let base = sites[rng.below(sites.len() as u64) as usize] | (rng.next_u64() as u32 & 0xffff);
    Some(AddrMatch { negated: false, prefixes: alloc::vec![Prefix::new(base, len)].into() })
}

fn random_rule(rng: &mut Rng, sites: &[u32]) -> Rule {
    let pick = |rng: &mut Rng, table: &[(u64, u8)]| {
        let mut x = rng.below(100);
        for &(p, v) in table {
            if x < p {
                return v;
            }
            x -= p;
        }
        table[0].1
    };
    let src_len = pick(rng, &[(35, 32), (25, 24), (10, 16), (8, 8), (22, 0)]);
    let dst_len = match pick(rng, &[(45, 32), (30, 24), (10, 16), (5, 8), (10, 0)]) {
        l if l < 16 && src_len < 16 => 32, // never both wide: the lab must stay unmatched
        l => l,
    };
    let action = match rng.below(100) {
        0..=54 => Action::Accept,
        55..=94 => Action::Drop,
        _ => Action::Reject(RejectWith::AdminProhibited),
    };
    let mut r = Rule::any(Chain::Forward, action);
    r.src = prefix(rng, sites, src_len);
    r.dst = prefix(rng, sites, dst_len);
    if rng.pct(1) {
        if let Some(m) = r.src.as_mut().filter(|_| dst_len >= 16) {
            m.negated = true;
            m.prefixes = alloc::vec![Prefix::new(m.prefixes[0].addr, 16)].into();
        }
    }
    match rng.below(100) {
        0..=54 => ports(rng, &mut r, proto::TCP),
        55..=79 => ports(rng, &mut r, proto::UDP),
        80..=89 => {
            r.proto = ProtoMatch::OneOf(alloc::vec![proto::ICMP]);
            if rng.pct(70) {
                let t = if rng.pct(70) { 8 } else { 3 };
                r.icmp = Some(IcmpMatch { negated: false, icmp_type: t, code: None });
            }
        }
        _ => {}
    }
    if rng.pct(10) {
        r.states = state_bit(unifw_core::flow::CtState::New);
    } else if rng.pct(5) {
        r.states = state_bit(unifw_core::flow::CtState::Established) | state_bit(unifw_core::flow::CtState::Related);
    }
    if rng.pct(5) {
        r.in_if = Some(super::ast::IfMatch::one(false, 0));
    } else if rng.pct(5) {
        r.out_if = Some(super::ast::IfMatch::one(false, 1));
    }
    r
}

fn ports(rng: &mut Rng, r: &mut Rule, p: u8) {
    r.proto = ProtoMatch::OneOf(alloc::vec![p]);
    let service = |rng: &mut Rng| {
        if rng.pct(70) {
            SERVICES[rng.below(SERVICES.len() as u64) as usize]
        } else {
            1 + rng.below(65535) as u16
        }
    };
    let one = |ranges| Some(PortMatch { negated: false, ranges });
    r.dport = match rng.below(100) {
        0..=54 => one(alloc::vec![(service(rng), service(rng))]).map(|mut m| {
            m.ranges[0].1 = m.ranges[0].0;
            m
        }),
        55..=69 => {
            let lo = 1024 + rng.below(60000) as u16;
            one(alloc::vec![(lo, lo.saturating_add(rng.below(1000) as u16))])
        }
        70..=77 => {
            let (a, b) = (service(rng), service(rng));
            one(if a == b { alloc::vec![(a, a)] } else { alloc::vec![(a.min(b), a.min(b)), (a.max(b), a.max(b))] })
        }
        _ => None,
    };
    if rng.pct(10) {
        r.sport = one(alloc::vec![(1024, 65535)]);
    }
}

/// A random packet (any protocol among TCP, UDP, ICMP, GRE; any state and interfaces).
pub fn random_key(rng: &mut Rng) -> unifw_core::flow::PacketKey {
    let p = [proto::TCP, proto::UDP, proto::ICMP, 47][rng.below(4) as usize];
    let mut k = unifw_core::flow::PacketKey {
        proto: p,
        src: rng.next_u64() as u32,
        dst: rng.next_u64() as u32,
        src_port: 0,
        dst_port: 0,
        icmp_type: 0,
        icmp_code: 0,
        in_if: [0, 1, 2, unifw_core::flow::NO_IF][rng.below(4) as usize],
        out_if: [0, 1, 2, unifw_core::flow::NO_IF][rng.below(4) as usize],
        state: [
            unifw_core::flow::CtState::New,
            unifw_core::flow::CtState::Established,
            unifw_core::flow::CtState::Related,
            unifw_core::flow::CtState::Invalid,
        ][rng.below(4) as usize],
        extra: Default::default(),
    };
    match p {
        proto::TCP | proto::UDP => {
            k.src_port = rng.next_u64() as u16;
            k.dst_port = rng.next_u64() as u16;
        }
        proto::ICMP => {
            k.icmp_type = [0, 3, 8, 11, rng.next_u64() as u8][rng.below(5) as usize];
            k.icmp_code = [0, 1, 3, rng.next_u64() as u8][rng.below(4) as usize];
        }
        _ => {}
    }
    k
}

/// A packet that lies inside (or at the edge of) one box of `r`, where that is easy; random elsewhere.
pub fn point_in(r: &Rule, rng: &mut Rng) -> unifw_core::flow::PacketKey {
    let mut k = random_key(rng);
    let inside = |m: &AddrMatch, rng: &mut Rng, ip: u32| match m
        .prefixes
        .get(rng.below(m.prefixes.len().max(1) as u64) as usize)
    {
        Some(p) if !m.negated => p.addr | (ip & !super::ast::mask(p.len)),
        _ => ip,
    };
    if let Some(m) = &r.src {
        k.src = inside(m, rng, k.src);
    }
    if let Some(m) = &r.dst {
        k.dst = inside(m, rng, k.dst);
    }
    if let ProtoMatch::OneOf(l) = &r.proto {
        k.proto = l.get(rng.below(l.len().max(1) as u64) as usize).copied().unwrap_or(k.proto);
    }
    let port = |m: &Option<PortMatch>, rng: &mut Rng, v: u16| match m
        .as_ref()
        .and_then(|m| m.ranges.get(rng.below(m.ranges.len().max(1) as u64) as usize))
    {
        Some(&(lo, hi)) => [lo, hi, lo + (rng.below(u64::from(hi - lo) + 1) as u16)][rng.below(3) as usize],
        None => v,
    };
    if k.proto == proto::TCP || k.proto == proto::UDP {
        let (a, b) = (rng.next_u64() as u16, rng.next_u64() as u16);
        k.src_port = port(&r.sport, rng, a);
        k.dst_port = port(&r.dport, rng, b);
        // `--ports`: one of the two ports in the list (or both, by chance).
        if r.ports.as_ref().is_some_and(|m| !m.negated) {
            if rng.below(2) == 0 {
                k.src_port = port(&r.ports, rng, k.src_port);
            } else {
                k.dst_port = port(&r.ports, rng, k.dst_port);
            }
        }
        (k.icmp_type, k.icmp_code) = (0, 0);
    } else {
        (k.src_port, k.dst_port) = (0, 0);
        if let (proto::ICMP, Some(m)) = (k.proto, r.icmp) {
            k.icmp_type = m.icmp_type;
            k.icmp_code = m.code.unwrap_or(k.icmp_code);
        } else if k.proto != proto::ICMP {
            (k.icmp_type, k.icmp_code) = (0, 0);
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use unifw_core::flow::{CtState, PacketKey, NO_IF};

    #[test]
    fn only_the_last_rule_matches_the_lab() {
        let set = scenario(ScenarioOptions { rules: 3000, seed: 1 });
        let mut rng = Rng::new(2);
        let last = set.rules.len() as u32 - 1;
        for _ in 0..200 {
            let p = [proto::TCP, proto::UDP, proto::ICMP][rng.below(3) as usize];
            let (a, b) = (rng.next_u64() as u16, rng.next_u64() as u16);
            let (sp, dp, t) = if p == proto::ICMP { (0, 0, 8) } else { (a, b, 0) };
            let state = [CtState::New, CtState::Established][rng.below(2) as usize];
            for (src, dst, i, o) in [(0x0a01_0002, 0x0a02_0002, 0, 1), (0x0a02_0002, 0x0a01_0002, 1, 0)] {
                let key = PacketKey {
                    proto: p,
                    src,
                    dst,
                    src_port: sp,
                    dst_port: dp,
                    icmp_type: t,
                    icmp_code: 0,
                    in_if: i,
                    out_if: o,
                    state,
                    extra: Default::default(),
                };
                assert_eq!(set.classify_linear(Chain::Forward, &key).rule, Some(last), "{key:?}");
            }
        }
        let ping = PacketKey {
            proto: proto::ICMP,
            src: 0x0a01_0002,
            dst: 0x0a01_0001,
            src_port: 0,
            dst_port: 0,
            icmp_type: 8,
            icmp_code: 0,
            in_if: 0,
            out_if: NO_IF,
            state: CtState::New,
            extra: Default::default(),
        };
        assert_eq!(set.classify_linear(Chain::Input, &ping).action, Action::Accept);
    }

    #[test]
    fn same_seed_same_rules() {
        let a = scenario(ScenarioOptions { rules: 100, seed: 9 });
        assert_eq!(a, scenario(ScenarioOptions { rules: 100, seed: 9 }));
        assert_ne!(a, scenario(ScenarioOptions { rules: 100, seed: 10 }));
    }
}
