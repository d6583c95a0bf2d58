//! Helpers shared by the rules integration tests: random rulesets and packets.
#![allow(dead_code)]

use unifw_compiler::{self as rules, AddrMatch, IcmpMatch, IfMatch, PortMatch, Prefix, ProtoMatch, Rng, Rule, Ruleset};
use unifw_core::flow::{proto, Action, Chain, PacketKey, RejectWith};

/// Addresses come from a few /16s so that rules overlap.
const BASES: [u32; 4] = [0x0a01_0000, 0x0a02_0000, 0xc0a8_0000, 0x0a01_8000];

pub fn random_prefix(rng: &mut Rng) -> Prefix {
    let len = [0u8, 8, 12, 16, 20, 24, 26, 28, 30, 31, 32][rng.below(11) as usize];
    let addr = BASES[rng.below(4) as usize] | (rng.next_u64() as u32 & 0x0000_03ff);
    Prefix::new(addr, len)
}

fn addr_match(rng: &mut Rng, iptables: bool) -> Option<AddrMatch> {
    if rng.pct(30) {
        return None;
    }
    let n = if rng.pct(80) { 1 } else { 2 + rng.below(3) as usize };
    let negated = rng.pct(20) && !(iptables && n > 1);
    Some(AddrMatch { negated, prefixes: (0..n).map(|_| random_prefix(rng)).collect() })
}

fn port(rng: &mut Rng) -> u16 {
    [0, 1, 22, 53, 79, 80, 81, 443, 1023, 1024, 65534, 65535][rng.below(12) as usize]
}

fn port_match(rng: &mut Rng) -> Option<PortMatch> {
    if rng.pct(40) {
        return None;
    }
    let n = if rng.pct(70) { 1 } else { 2 + rng.below(3) as usize };
    let ranges = (0..n)
        .map(|_| {
            let (a, b) = (port(rng), port(rng));
            if rng.pct(50) {
                (a, a)
            } else {
                (a.min(b), a.max(b))
            }
        })
        .collect();
    Some(PortMatch { negated: rng.pct(20), ranges })
}

/// A random rule; `iptables` keeps to what iptables-save can say.
pub fn random_rule(rng: &mut Rng, iptables: bool) -> Rule {
    let chain = if rng.pct(30) { Chain::Input } else { Chain::Forward };
    let action = match rng.below(4) {
        0 => Action::Accept,
        1 => Action::Drop,
        2 => Action::Reject(RejectWith::AdminProhibited),
        _ => Action::Reject(RejectWith::PortUnreachable),
    };
    let mut r = Rule::any(chain, action);
    r.src = addr_match(rng, iptables);
    r.dst = addr_match(rng, iptables);
    match rng.below(7) {
        0 => {}
        1 | 2 => {
            r.proto = ProtoMatch::OneOf(vec![if rng.pct(50) { proto::TCP } else { proto::UDP }]);
            r.sport = port_match(rng);
            r.dport = port_match(rng);
            if iptables
                && r.sport.as_ref().is_some_and(|m| m.ranges.len() > 1)
                    != r.dport.as_ref().is_some_and(|m| m.ranges.len() > 1)
            {
                // multiport needs both or neither to be lists when both are present: keep it simple
                r.sport = None;
            }
        }
        3 if !iptables => {
            r.proto = ProtoMatch::OneOf(vec![proto::TCP, proto::UDP]);
            r.dport = port_match(rng);
        }
        4 => {
            r.proto = ProtoMatch::OneOf(vec![proto::ICMP]);
            if rng.pct(70) {
                let code = rng.pct(40).then(|| rng.below(4) as u8);
                r.icmp = Some(IcmpMatch { negated: rng.pct(25), icmp_type: [0, 3, 8][rng.below(3) as usize], code });
            }
        }
        5 => r.proto = ProtoMatch::Not([proto::TCP, proto::UDP, proto::ICMP][rng.below(3) as usize]),
        _ => r.proto = ProtoMatch::OneOf(vec![47]),
    }
    if rng.pct(20) {
        r.in_if = Some(IfMatch::one(rng.pct(30), rng.below(3) as u8));
    }
    // iptables refuses `-o` in INPUT.
    if rng.pct(20) && !(iptables && chain == Chain::Input) {
        r.out_if = Some(IfMatch::one(rng.pct(30), rng.below(3) as u8));
    }
    if rng.pct(25) {
        r.states = 1 + rng.below(15) as u8;
    }
    r.log = !iptables && rng.pct(10);
    r
}

/// A random ruleset of `n` rules with the lab interfaces and eth2.
pub fn random_ruleset(rng: &mut Rng, n: usize, iptables: bool) -> Ruleset {
    let mut set = Ruleset { interfaces: Ruleset::lab_interfaces(), ..Ruleset::default() };
    set.interfaces.push(unifw_core::image::InterfaceSpec::new(2, unifw_core::image::IfAddr::Dhcp));
    set.set_policy(Chain::Forward, if rng.pct(50) { Action::Drop } else { Action::Accept });
    set.set_policy(Chain::Input, Action::Drop);
    set.files.push("random".into());
    set.rules = (0..n).map(|_| random_rule(rng, iptables)).collect();
    set
}

/// Packets: mostly inside some rule's box, some random, some near the bases.
pub fn packets(rng: &mut Rng, set: &Ruleset, n: usize) -> Vec<PacketKey> {
    (0..n)
        .map(|_| {
            let mut k = if !set.rules.is_empty() && rng.pct(75) {
                rules::point_in(&set.rules[rng.below(set.rules.len() as u64) as usize], rng)
            } else {
                rules::random_key(rng)
            };
            if rng.pct(30) {
                k.src = random_prefix(rng).addr | (rng.next_u64() as u32 & 0x3ff);
            }
            k
        })
        .collect()
}

/// Gives some TCP/UDP rules of an iptables-expressible ruleset a
/// `-m multiport [!] --ports` list (up to 15 ports, a range counting two).
pub fn with_either_ports(rng: &mut Rng, set: &mut Ruleset) {
    for r in &mut set.rules {
        if !r.proto.has_ports() || !rng.pct(50) {
            continue;
        }
        let Some(m) = port_match(rng) else { continue };
        r.ports = Some(m);
    }
}

/// "iptables accepts it", in [`SyntaxCase`]s.
pub const OK: Option<&str> = None;

/// One iptables-save line: (the line, iptables-legacy 1.8.9's refusal on
/// Linux 6.x in a scratch namespace or [`OK`], what unifw says: "" loads,
/// else part of its error, in any case).
pub type SyntaxCase = (&'static str, Option<&'static str>, &'static str);

/// `body` as a filter table with its three built-in chains.
pub fn ipt_file(body: &str) -> String {
    format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{body}\nCOMMIT\n")
}

/// Compiles iptables-save `text` read directly (no includes).
pub fn compile_ipt(text: &str) -> Result<rules::Compiled, rules::Diagnostics> {
    rules::compile("t.ipt", text.as_bytes(), &mut |_| Err("no includes".into()))
}

/// Loads each case's line through `file` and checks unifw's verdict: it
/// loads what the case says loads, and otherwise one of its errors says
/// what the case expects; never more lenient than iptables.
pub fn check_syntax_cases(cases: &[SyntaxCase], file: impl Fn(&str) -> String) {
    let mut failures = Vec::new();
    for &(line, linux, unifw) in cases {
        let got = compile_ipt(&file(line));
        let ok = match (&got, unifw) {
            (Ok(_), "") => true,
            (Err(d), want) if !want.is_empty() => {
                d.errors.iter().any(|e| e.message.to_lowercase().contains(&want.to_lowercase()))
            }
            _ => false,
        };
        if !ok {
            let got = got.map(|_| String::from("loads")).unwrap_or_else(|d| d.to_string());
            failures.push(format!("{line}\n  iptables: {linux:?}\n  unifw: {got}\n  expected: {unifw:?}"));
        }
        assert!(linux.is_none() || !unifw.is_empty(), "{line}: iptables refuses it, so must unifw");
    }
    assert!(failures.is_empty(), "{} cases differ:\n{}", failures.len(), failures.join("\n"));
}
