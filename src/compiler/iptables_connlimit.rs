//! `-m connlimit` as iptables (libxt_connlimit, revision 1) accepts it:
//! exactly one of `--connlimit-upto N` and `--connlimit-above N` (either
//! may be inverted: `! --connlimit-upto` is `--connlimit-above`),
//! `--connlimit-mask PREFIX` (default 32), and one of `--connlimit-saddr`
//! (default) and `--connlimit-daddr`; each option at most once.

use alloc::format;
use alloc::vec::Vec;

use unifw_core::image::format::{ConnlimitSpec, MAX_CONNLIMIT_RULES};

use super::iptables::Word;
use super::iptables_match::Fault;

/// What one `-m connlimit` has said so far.
#[derive(Debug, Clone)]
pub struct ConnlimitOpts {
    /// Where `-m connlimit` is.
    pub at: usize,
    /// The limit and whether the match holds at or below it.
    limit: Option<(u32, bool)>,
    mask: Option<u32>,
    dest: bool,
    given: Vec<&'static str>,
}

impl ConnlimitOpts {
    /// A fresh `-m connlimit` at byte `at`.
    pub fn new(at: usize) -> ConnlimitOpts {
        ConnlimitOpts { at, limit: None, mask: None, dest: false, given: Vec::new() }
    }
}

const OPTIONS: [&str; 5] =
    ["--connlimit-upto", "--connlimit-above", "--connlimit-mask", "--connlimit-saddr", "--connlimit-daddr"];

/// The canonical name of a `-m connlimit` option, if it is one.
pub fn option_name(o: &str) -> Option<&'static str> {
    OPTIONS.into_iter().find(|n| *n == o)
}

/// Whether option `o` takes an argument.
pub fn takes_argument(o: &str) -> bool {
    matches!(o, "--connlimit-upto" | "--connlimit-above" | "--connlimit-mask")
}

/// Applies option `o` (canonical) with its argument, refusing what
/// iptables refuses, with its words.
pub fn option(
    c: &mut ConnlimitOpts,
    o: &'static str,
    at: usize,
    arg: Option<&Word>,
    negated: bool,
) -> Result<(), Fault> {
    let exclusive = match o {
        "--connlimit-upto" => Some("--connlimit-above"),
        "--connlimit-above" => Some("--connlimit-upto"),
        "--connlimit-saddr" => Some("--connlimit-daddr"),
        "--connlimit-daddr" => Some("--connlimit-saddr"),
        _ => None,
    };
    if let Some(other) = exclusive.filter(|x| c.given.contains(x)) {
        return Err((
            at,
            format!("connlimit: option \"{o}\" cannot be used together with \"{other}\" (iptables refuses it)"),
        ));
    }
    if c.given.contains(&o) {
        return Err((at, format!("connlimit: option \"{o}\" can only be used once (iptables refuses it)")));
    }
    let limit = o == "--connlimit-upto" || o == "--connlimit-above";
    if negated && !limit {
        return Err((at, format!("connlimit: option \"{o}\" cannot be inverted (iptables refuses `!` here)")));
    }
    c.given.push(o);
    let a = || arg.ok_or_else(|| (at, format!("option \"{o}\" requires an argument")));
    match o {
        "--connlimit-upto" | "--connlimit-above" => {
            let w = a()?;
            let n = strtoui(w.text).ok_or_else(|| {
                (w.at, format!("connlimit: bad value for option \"{o}\", or out of range (0-4294967295): `{}`", w.text))
            })?;
            // XT_CONNLIMIT_INVERT: `--connlimit-upto`, or `! --connlimit-above`.
            c.limit = Some((n, (o == "--connlimit-upto") != negated));
        }
        "--connlimit-mask" => {
            let w = a()?;
            c.mask = Some(mask(w.text).ok_or_else(|| {
                (
                    w.at,
                    format!(
                        "connlimit: bad value for option \"--connlimit-mask\", neither a valid network mask nor \
                         valid CIDR (0-32): `{}` (unifw takes a prefix length 0-32 or a contiguous dotted mask; \
                         iptables reads other forms as odd masks)",
                        w.text
                    ),
                )
            })?);
        }
        "--connlimit-daddr" => c.dest = true,
        _ => c.dest = false,
    }
    Ok(())
}

/// A number as `xtables_strtoui` reads it (`+`, `0x` hex, leading-0 octal).
fn strtoui(s: &str) -> Option<u32> {
    let s = s.strip_prefix('+').unwrap_or(s);
    super::iptables_folded::strtoul(s, u64::from(u32::MAX)).map(|n| n as u32)
}

/// `--connlimit-mask`: a prefix length 0-32 (read as `xtables_strtoui`
/// does, after the blanks `strtoul` skips), or a dotted mask of four
/// decimal parts whose ones are contiguous.
fn mask(s: &str) -> Option<u32> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if let Some(p) = strtoui(t) {
        return match p {
            0 => Some(0),
            1..=32 => Some(u32::MAX << (32 - p)),
            _ => None,
        };
    }
    let parts: Vec<u32> = s.split('.').map(|p| p.parse::<u8>().ok().map(u32::from)).collect::<Option<_>>()?;
    let [a, b, c, d] = parts[..] else { return None };
    let m = a << 24 | b << 16 | c << 8 | d;
    (m.leading_ones() + m.trailing_zeros() == 32 || m == 0).then_some(m)
}

/// Checks a finished `-m connlimit` and gives its record (the slot is the
/// image writer's). `names.connlimits`: connlimit rules so far (bounded at
/// [`MAX_CONNLIMIT_RULES`]); `names.unsupported` names what unifw refuses.
pub fn finish(
    c: &ConnlimitOpts,
    later_matches: bool,
    names: &mut super::iptables_recent::RecentNames,
) -> Result<ConnlimitSpec, Fault> {
    let Some((limit, invert)) = c.limit else {
        return Err((
            c.at,
            "connlimit: you must specify \"--connlimit-above\" or \"--connlimit-upto\" (iptables refuses it)".into(),
        ));
    };
    if later_matches {
        names.unsupported = Some("-m connlimit before other matches".into());
        return Err((c.at, "`-m connlimit` before other matches is not supported by unifw (it must be the rule's last match: Linux counts the connection before the matches after it are checked, even for packets they refuse; move it after them)".into()));
    }
    if names.connlimits >= MAX_CONNLIMIT_RULES {
        return Err((c.at, format!("connlimit: more than {MAX_CONNLIMIT_RULES} rules with `-m connlimit` (unifw's bound: each tracked connection keeps a counter per connlimit rule, allocated at boot)")));
    }
    names.connlimits += 1;
    Ok(ConnlimitSpec { slot: 0, limit, mask: c.mask.unwrap_or(u32::MAX), dest: c.dest, invert })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_read_as_prefixes_or_contiguous_dotted_masks() {
        assert_eq!(mask("24"), Some(0xffff_ff00));
        assert_eq!(mask("024"), Some(0xffff_f000)); // octal 20, as iptables reads it
        assert_eq!(mask("0x18"), Some(0xffff_ff00));
        assert_eq!(mask(" 8"), Some(0xff00_0000));
        assert_eq!(mask("0"), Some(0));
        assert_eq!(mask("32"), Some(u32::MAX));
        assert_eq!(mask("255.255.255.0"), Some(0xffff_ff00));
        assert_eq!(mask("0.0.0.0"), Some(0));
        assert_eq!(mask("33"), None);
        assert_eq!(mask("255.0.255.0"), None);
        assert_eq!(mask("8x"), None);
        assert_eq!(mask("24/"), None);
    }
}
