//! `-m hashlimit` as iptables 1.8 (libxt_hashlimit, revision 3) and the
//! kernel (`xt_hashlimit`'s checkentry) accept it, for packet rates:
//! `--hashlimit-upto`/`--hashlimit` or `--hashlimit-above` (`!` swaps
//! them), `--hashlimit-burst`, `--hashlimit-mode`, `--hashlimit-srcmask`,
//! `--hashlimit-dstmask`, `--hashlimit-name` (required; tables are shared
//! by name), `--hashlimit-htable-size/-max/-expire/-gcinterval`. Byte
//! rates (`1kb/s`) and `--hashlimit-rate-match`/`--hashlimit-rate-interval`
//! are refused by name.
//!
//! Linux gives a table the configuration of the first rule that names it
//! (`htable_find_get` finds it and the later rule's own rate, burst, mode,
//! masks and expiry are never looked at again; only its inversion is its
//! own). Rules are checked in the order of the kernel's blob, table by
//! table as iptables-restore commits them (file order): the built-in
//! chains first in hook order, then the user chains by name (libiptc keeps
//! them sorted), each in rule order. unifw takes the first rule in file
//! order, and refuses a second configuration for a table from a rule that
//! Linux would have checked before the first one (an earlier chain of the
//! same table in that order, written later in the file).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use unifw_core::image::format::{
    hashlimit_user2credits, HashlimitSpec, HASHLIMIT_DEFAULT_SIZE, HASHLIMIT_SCALE, HL_DIP, HL_DPT, HL_SIP, HL_SPT,
    MAX_HASHLIMIT_ENTRIES, MAX_HASHLIMIT_TABLES, MAX_HASHLIMIT_TOTAL,
};

use super::iptables::Word;
use super::iptables_match::Fault;

/// `HASHLIMIT_MAX_SIZE` of `xt_hashlimit.c`: larger sizes are cut to it.
const KERNEL_MAX_SIZE: u32 = 1_048_576;
/// `XT_HASHLIMIT_BURST_MAX` (revisions 2 and 3).
const BURST_MAX: u64 = 1_000_000;

/// What one `-m hashlimit` has said so far.
#[derive(Debug, Clone)]
pub struct HashlimitOpts {
    /// Where `-m hashlimit` is.
    pub at: usize,
    /// `(option given, avg, unit in seconds, inverted)`.
    rate: Option<(&'static str, u64, u32, bool)>,
    burst: Option<u64>,
    mode: u8,
    srcmask: u8,
    dstmask: u8,
    name: Option<String>,
    size: u32,
    max: u32,
    gc_interval: u32,
    expire: Option<u32>,
    given: Vec<&'static str>,
}

impl HashlimitOpts {
    /// A fresh `-m hashlimit` at byte `at` (iptables' defaults).
    pub fn new(at: usize) -> HashlimitOpts {
        HashlimitOpts {
            at,
            rate: None,
            burst: None,
            mode: 0,
            srcmask: 32,
            dstmask: 32,
            name: None,
            size: 0,
            max: 0,
            gc_interval: 1000,
            expire: None,
            given: Vec::new(),
        }
    }
}

const OPTIONS: [&str; 14] = [
    "--hashlimit-upto",
    "--hashlimit-above",
    "--hashlimit",
    "--hashlimit-srcmask",
    "--hashlimit-dstmask",
    "--hashlimit-burst",
    "--hashlimit-htable-size",
    "--hashlimit-htable-max",
    "--hashlimit-htable-gcinterval",
    "--hashlimit-htable-expire",
    "--hashlimit-mode",
    "--hashlimit-name",
    "--hashlimit-rate-match",
    "--hashlimit-rate-interval",
];

/// The canonical name of a `-m hashlimit` option, if it is one.
pub fn option_name(o: &str) -> Option<&'static str> {
    OPTIONS.into_iter().find(|n| *n == o)
}

/// Whether option `o` takes an argument.
pub fn takes_argument(o: &str) -> bool {
    o != "--hashlimit-rate-match"
}

/// A number as `xtables_strtoui` reads it (all of it, base 0).
fn strtoui(s: &str) -> Option<u32> {
    super::iptables_folded::strtoul(s.strip_prefix('+').unwrap_or(s), u64::from(u32::MAX)).map(|n| n as u32)
}

/// `atoll`: leading blanks, a sign, the digits that follow (0 if none).
fn atoll(s: &str) -> u64 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for c in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(c - b'0'));
    }
    (if neg { n.wrapping_neg() } else { n }) as u64
}

/// `parse_rate` of libxt_hashlimit (revision 2 scale): `avg` and the unit
/// in seconds, or `None` for a bad value; `Err` for a rate too fast.
fn parse_rate(s: &str) -> Result<Option<(u64, u32)>, String> {
    let mut mult = 1u32;
    if let Some((_, unit)) = s.split_once('/') {
        if unit.is_empty() {
            return Ok(None);
        }
        let is = |full: &str| unit.len() <= full.len() && full[..unit.len()].eq_ignore_ascii_case(unit);
        mult = if is("second") {
            1
        } else if is("minute") {
            60
        } else if is("hour") {
            3600
        } else if is("day") {
            86400
        } else {
            return Ok(None);
        };
    }
    let r = atoll(s);
    if r == 0 {
        return Ok(None);
    }
    let avg = HASHLIMIT_SCALE * u64::from(mult) / r;
    if avg == 0 {
        return Err(format!("hashlimit: rate too fast \"{s}\" (iptables refuses it)"));
    }
    Ok(Some((avg, mult)))
}

/// `parse_burst` (revision 2): a number (base 0) of at most 1,000,000,
/// times 1024 or 1048576 after `k` or `m` (which iptables allows, then
/// checks the product).
fn parse_burst(s: &str) -> Option<u64> {
    let (digits, radix, rest) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        let n = h.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(h.len());
        (&h[..n], 16, &h[n..])
    } else if s.starts_with('0') {
        let n = s.find(|c: char| !('0'..='7').contains(&c)).unwrap_or(s.len());
        (&s[..n], 8, &s[n..])
    } else {
        let n = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        (&s[..n], 10, &s[n..])
    };
    let v = u64::from_str_radix(digits, radix).ok().filter(|&v| v >= 1)?;
    if rest.is_empty() && v > BURST_MAX {
        return None;
    }
    let factor = match rest.bytes().next() {
        Some(b'm') => 1024 * 1024,
        Some(b'k') => 1024,
        _ => 1,
    };
    let v = v.checked_mul(factor)?;
    (v <= BURST_MAX).then_some(v)
}

/// Applies option `o` (canonical) with its argument.
pub fn option(
    h: &mut HashlimitOpts,
    o: &'static str,
    at: usize,
    arg: Option<&Word>,
    negated: bool,
) -> Result<(), Fault> {
    fn id(x: &str) -> &str {
        if x == "--hashlimit" {
            "--hashlimit-upto"
        } else {
            x
        }
    }
    if h.given.iter().any(|g| id(g) == id(o)) {
        return Err((at, format!("hashlimit: option \"{}\" can only be used once (iptables refuses it)", id(o))));
    }
    if let Some((other, ..)) = h.rate.filter(|_| matches!(o, "--hashlimit-upto" | "--hashlimit-above" | "--hashlimit"))
    {
        return Err((
            at,
            format!(
                "hashlimit: option \"{}\" cannot be used together with \"{}\" (iptables refuses it)",
                id(other),
                id(o)
            ),
        ));
    }
    let rated = matches!(o, "--hashlimit-upto" | "--hashlimit-above" | "--hashlimit");
    if negated && !rated {
        return Err((at, format!("hashlimit: option \"{o}\" cannot be inverted (iptables refuses `!` here)")));
    }
    h.given.push(o);
    if o == "--hashlimit-rate-match" || o == "--hashlimit-rate-interval" {
        return Err((
            at,
            format!("`{o}` of `-m hashlimit` is not supported by unifw (only the token-bucket limit is)"),
        ));
    }
    let w = arg.ok_or_else(|| (at, format!("`{o}` needs an argument")))?;
    let bad =
        |o: &str| (w.at, format!("hashlimit: bad value for \"{o}\" option: \"{}\" (iptables refuses it)", w.text));
    match o {
        "--hashlimit-upto" | "--hashlimit-above" | "--hashlimit" => {
            let t = w.text;
            if t.find("b/s").is_some_and(|i| i > 0) {
                return Err((
                    w.at,
                    format!("byte rates (`{t}`) of `-m hashlimit` are not supported by unifw (only packet rates are)"),
                ));
            }
            let (avg, mult) = parse_rate(t).map_err(|e| (w.at, e))?.ok_or_else(|| bad(id(o)))?;
            let invert = (o == "--hashlimit-above") != negated;
            h.rate = Some((o, avg, mult, invert));
        }
        "--hashlimit-burst" => {
            let v = parse_burst(w.text).ok_or_else(|| {
                (
                    w.at,
                    format!(
                        "hashlimit: bad value for option \"--hashlimit-burst\", or out of range (1-{BURST_MAX}): `{}`",
                        w.text
                    ),
                )
            })?;
            h.burst = Some(v);
        }
        "--hashlimit-mode" => {
            for tok in w.text.split([',', '|']).filter(|t| !t.is_empty()) {
                h.mode |= match tok {
                    "dstip" => HL_DIP,
                    "srcip" => HL_SIP,
                    "srcport" => HL_SPT,
                    "dstport" => HL_DPT,
                    _ => return Err(bad(o)),
                };
            }
        }
        "--hashlimit-srcmask" | "--hashlimit-dstmask" => {
            let v = strtoui(w.text).filter(|&v| v <= 32).ok_or_else(|| {
                (w.at, format!("hashlimit: bad value for option \"{o}\", or out of range (0-32): `{}`", w.text))
            })? as u8;
            if o == "--hashlimit-srcmask" {
                h.srcmask = v;
            } else {
                h.dstmask = v;
            }
        }
        "--hashlimit-name" => {
            if w.text.is_empty() {
                return Err((w.at, "hashlimit: `--hashlimit-name` needs at least one character".into()));
            }
            h.name = Some(w.text.into());
        }
        _ => {
            let v = strtoui(w.text).ok_or_else(|| {
                (w.at, format!("hashlimit: bad value for option \"{o}\", or out of range (0-4294967295): `{}`", w.text))
            })?;
            match o {
                "--hashlimit-htable-size" => h.size = v,
                "--hashlimit-htable-max" => h.max = v,
                "--hashlimit-htable-gcinterval" => h.gc_interval = v,
                _ => h.expire = Some(v),
            }
        }
    }
    Ok(())
}

/// The tables named so far across the whole ruleset: name, configuration
/// (the first rule's), the chain of that rule.
#[derive(Debug, Clone, Default)]
pub struct HashlimitNames {
    tables: Vec<(String, HashlimitSpec, String)>,
    /// The unsupported feature the last refusal was for (to count it).
    pub unsupported: Option<String>,
    /// A warning for the rule just finished (its own configuration is
    /// ignored: the table has the first rule's).
    pub warning: Option<(usize, String)>,
    /// Each rule's own configuration by (file, line), and the iptables
    /// tables in the order they were first seen, for [`check_first`].
    own: alloc::collections::BTreeMap<(u16, u32), HashlimitSpec>,
    order: Vec<String>,
    /// The own configuration of the rule just finished.
    last_own: Option<HashlimitSpec>,
}

impl HashlimitNames {
    /// Notes the own configuration of the rule just finished, read at
    /// `file`:`line`.
    pub fn remember(&mut self, file: u16, line: u32) {
        if let Some(own) = self.last_own.take() {
            self.own.insert((file, line), own);
        }
    }
}

/// After the whole ruleset is read (`-I` and `-D` included): the rule
/// Linux loads first among those naming each table must be the one whose
/// configuration the table was given (file order); an error for each
/// table where it is not.
pub fn check_first(names: &HashlimitNames, set: &super::ast::Ruleset) -> Vec<(u16, u32, String)> {
    use super::ast::RuleChain;
    let mut out = Vec::new();
    for (t, (name, cfg, _)) in names.tables.iter().enumerate() {
        let ranked = set.rules.iter().enumerate().filter_map(|(i, r)| {
            let hl = r.residual.hashlimit.filter(|h| usize::from(h.table) == t)?;
            let label = match r.chain {
                RuleChain::Builtin(c) => format!("{} {}", c.table().name(), c.name()),
                RuleChain::User(n) => {
                    format!("filter {}", set.chains.get(usize::from(n)).map_or("", |c| c.name.as_str()))
                }
            };
            let (table, rank, chain) = blob_rank(&label);
            let commit = names.order.iter().position(|o| o == table).unwrap_or(usize::MAX);
            Some(((commit, rank, String::from(chain), i), r, hl))
        });
        let Some((_, r, _)) = ranked.min_by(|a, b| a.0.cmp(&b.0)) else { continue };
        let own = names.own.get(&(r.file, r.line)).copied();
        if own.is_some_and(|o| o != *cfg) {
            out.push((r.file, r.line, format!("hashlimit: Linux would give table `{name}` the configuration of the rule at line {} (the first it loads once `-I` and `-D` are done), not the one unifw took from the first rule written: give every rule naming it the same options", r.line)));
        }
    }
    out
}

/// Where chain `table chain` comes in its table's blob: built-in chains in
/// hook order, then user chains by name.
fn blob_rank(label: &str) -> (&str, u8, &str) {
    let (table, chain) = label.split_once(' ').unwrap_or((label, ""));
    match ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"].iter().position(|b| *b == chain) {
        Some(hook) => (table, hook as u8, ""),
        None => (table, 5, chain),
    }
}

/// Checks a finished `-m hashlimit` as iptables and the kernel do and gives
/// its record (the table's configuration, the rule's inversion). `chain`
/// names the rule's chain; `later_matches`: whether other matches follow it.
pub fn finish(
    h: &HashlimitOpts,
    names: &mut HashlimitNames,
    chain: &str,
    later_matches: bool,
) -> Result<HashlimitSpec, Fault> {
    let at = h.at;
    let Some(name) = h.name.clone() else {
        return Err((
            at,
            "hashlimit: option \"--hashlimit-name\" must be specified (iptables refuses the match without it)".into(),
        ));
    };
    let Some((_, avg, mult, invert)) = h.rate else {
        return Err((at, "hashlimit: you have to specify `--hashlimit-upto` or `--hashlimit-above` (iptables refuses the match without it)".into()));
    };
    let burst = h.burst.unwrap_or(5);
    let expire = h.expire.unwrap_or(mult.saturating_mul(1000));
    // The kernel's checkentry.
    if h.gc_interval == 0 || expire == 0 {
        return Err((at, "hashlimit: `--hashlimit-htable-gcinterval` and `--hashlimit-htable-expire` must not be 0 (the kernel refuses them: Invalid argument)".into()));
    }
    if name == "." || name == ".." || name.contains('/') {
        return Err((at, format!("hashlimit: table name `{name}` is refused by the kernel (its /proc/net/ipt_hashlimit file cannot have that name)")));
    }
    if hashlimit_user2credits(avg.wrapping_mul(burst)) < hashlimit_user2credits(avg) {
        return Err((
            at,
            format!(
                "hashlimit: burst {burst} with this rate overflows (the kernel refuses it: \"overflow, try lower\")"
            ),
        ));
    }
    if later_matches {
        names.unsupported = Some("-m hashlimit before other matches".into());
        return Err((at, "`-m hashlimit` before other matches is not supported by unifw (it must be the rule's last match: Linux spends the packet's credit before the matches after it are checked, even for packets they refuse; move it after them, or write the protocol's match (`-m udp --dport 53`) before it)".into()));
    }
    let size = match h.size.min(KERNEL_MAX_SIZE) {
        0 => HASHLIMIT_DEFAULT_SIZE,
        s => s,
    };
    let max = match h.max.min(KERNEL_MAX_SIZE) {
        0 => size.saturating_mul(8),
        m => m.max(size),
    };
    if max > MAX_HASHLIMIT_ENTRIES {
        return Err((at, format!("hashlimit: table `{name}` would hold up to {max} entries (`--hashlimit-htable-max`, else 8 x `--hashlimit-htable-size`), above unifw's bound of {MAX_HASHLIMIT_ENTRIES} (its memory is allocated at boot)")));
    }
    let spec = HashlimitSpec {
        table: 0,
        mode: h.mode,
        srcmask: h.srcmask,
        dstmask: h.dstmask,
        avg,
        burst: burst as u32,
        expire,
        gc_interval: h.gc_interval,
        max,
        invert: false,
    };
    let table = match names.tables.iter().position(|(n, ..)| *n == name) {
        Some(t) => {
            if let Some((_, first, first_chain)) = names.tables.get(t) {
                let (t0, r0, n0) = blob_rank(first_chain);
                let (t1, r1, n1) = blob_rank(chain);
                let linux_first_here = t0 == t1 && (r1, n1) < (r0, n0);
                if *first != (HashlimitSpec { table: first.table, ..spec }) && linux_first_here {
                    return Err((at, format!("hashlimit: table `{name}` is given another configuration (rate, burst, mode, masks or htable options) than in chain {first_chain}, written earlier; Linux keeps the configuration of the rule it loads first, and it loads this chain first (built-in chains in hook order, then user chains by name), which unifw does not reproduce: give every rule naming it the same options, or write this rule first")));
                }
                if *first != (HashlimitSpec { table: first.table, ..spec }) {
                    names.warning = Some((at, format!("warning: hashlimit table `{name}` keeps the configuration of the first rule naming it: this rule's rate, burst, mode, masks and htable options are ignored, as in Linux (only its `--hashlimit-above`/`!` counts)")));
                }
            }
            t
        }
        None => {
            if names.tables.len() >= MAX_HASHLIMIT_TABLES {
                return Err((
                    at,
                    format!("hashlimit: more than {MAX_HASHLIMIT_TABLES} tables are not supported by unifw"),
                ));
            }
            let total: u32 = names.tables.iter().map(|(_, c, _)| c.max).sum::<u32>().saturating_add(max);
            if total > MAX_HASHLIMIT_TOTAL {
                return Err((at, format!("hashlimit: the tables' entries ({total} in all) exceed unifw's bound of {MAX_HASHLIMIT_TOTAL} (their memory is allocated at boot); use smaller `--hashlimit-htable-max` or fewer tables")));
            }
            let t = names.tables.len();
            names.tables.push((name, HashlimitSpec { table: t as u8, ..spec }, chain.into()));
            t
        }
    };
    let commit = blob_rank(chain).0;
    if !names.order.iter().any(|o| o == commit) {
        names.order.push(commit.into());
    }
    names.last_own = Some(HashlimitSpec { table: table as u8, ..spec });
    let first = names.tables.get(table).map_or(spec, |(_, c, _)| *c);
    Ok(HashlimitSpec { invert, ..first })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_libxt_hashlimit_does() {
        assert_eq!(parse_rate("1/m"), Ok(Some((60_000_000, 60))));
        assert_eq!(parse_rate("30/min"), Ok(Some((2_000_000, 60))));
        assert_eq!(parse_rate("3/S"), Ok(Some((333_333, 1))));
        assert_eq!(parse_rate("+3/s"), Ok(Some((333_333, 1))));
        assert_eq!(parse_rate("1/day"), Ok(Some((86_400_000_000, 86400))));
        assert_eq!(parse_rate("7"), Ok(Some((142_857, 1))));
        assert_eq!(parse_rate("1/x"), Ok(None));
        assert_eq!(parse_rate("0/s"), Ok(None));
        assert_eq!(parse_rate("1/"), Ok(None));
        assert!(parse_rate("2000000/s").is_err());
    }

    #[test]
    fn bursts_read_as_libxt_hashlimit_does() {
        assert_eq!(parse_burst("10"), Some(10));
        assert_eq!(parse_burst("10k"), Some(10240));
        assert_eq!(parse_burst("5x"), Some(5));
        assert_eq!(parse_burst("0"), None);
        assert_eq!(parse_burst("1000001"), None);
        assert_eq!(parse_burst("1000000"), Some(1_000_000));
        assert_eq!(parse_burst("1m"), None);
    }
}
