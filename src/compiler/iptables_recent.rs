//! `-m recent` as iptables (libxt_recent) and the kernel (`xt_recent`'s
//! checkentry) accept it: exactly one of `--set`, `--rcheck`, `--update`,
//! `--remove` (which `!` inverts), `--name` (DEFAULT; tables are shared by
//! name across every rule and table), `--rsource`/`--rdest` (the later
//! wins), `--mask`, and for `--rcheck`/`--update` only `--seconds`,
//! `--hitcount`, `--rttl`, `--reap` (which needs `--seconds`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use unifw_core::image::format::{
    recent_stamps_mask, RecentSpec, MAX_RECENT_STAMPS, RECENT_ENTRIES, RECENT_RCHECK, RECENT_REMOVE, RECENT_SET,
    RECENT_UPDATE,
};

use super::iptables::Word;
use super::iptables_match::Fault;

/// `XT_RECENT_NAME_LEN` less the terminating NUL: iptables cuts longer names.
const NAME_MAX: usize = 199;
/// `XT_RECENT_MAX_NSTAMPS` of Linux 6.11 and later: the kernel refuses a
/// `--hitcount` at or above it.
const MAX_NSTAMPS: u32 = 65536;

/// What one `-m recent` has said so far.
#[derive(Debug, Clone)]
pub struct RecentOpts {
    /// Where `-m recent` is.
    pub at: usize,
    cmd: Option<(&'static str, u8, bool)>,
    name: Option<String>,
    dest: bool,
    mask: Option<u32>,
    seconds: Option<u32>,
    hitcount: Option<u32>,
    rttl: bool,
    reap: bool,
    /// Options given, for "only once".
    given: Vec<&'static str>,
}

impl RecentOpts {
    /// A fresh `-m recent` at byte `at`.
    pub fn new(at: usize) -> RecentOpts {
        RecentOpts {
            at,
            cmd: None,
            name: None,
            dest: false,
            mask: None,
            seconds: None,
            hitcount: None,
            rttl: false,
            reap: false,
            given: Vec::new(),
        }
    }
}

/// The canonical name of a `-m recent` option, if it is one.
pub fn option_name(o: &str) -> Option<&'static str> {
    [
        "--set",
        "--rcheck",
        "--update",
        "--remove",
        "--name",
        "--rsource",
        "--rdest",
        "--mask",
        "--seconds",
        "--reap",
        "--hitcount",
        "--rttl",
    ]
    .into_iter()
    .find(|n| *n == o)
}

/// Whether option `o` takes an argument.
pub fn takes_argument(o: &str) -> bool {
    matches!(o, "--name" | "--mask" | "--seconds" | "--hitcount")
}

/// Applies option `o` (canonical) with its argument.
pub fn option(r: &mut RecentOpts, o: &'static str, at: usize, arg: Option<&Word>, negated: bool) -> Result<(), Fault> {
    let cmds = ["--set", "--rcheck", "--update", "--remove"];
    if cmds.contains(&o) {
        if let Some((other, _, _)) = r.cmd {
            let msg = if other == o {
                format!("recent: option \"{o}\" can only be used once (iptables refuses it)")
            } else {
                format!("recent: option \"{o}\" cannot be used together with \"{other}\" (iptables refuses it)")
            };
            return Err((at, msg));
        }
        let cmd = match o {
            "--set" => RECENT_SET,
            "--rcheck" => RECENT_RCHECK,
            "--update" => RECENT_UPDATE,
            _ => RECENT_REMOVE,
        };
        r.cmd = Some((o, cmd, negated));
        return Ok(());
    }
    if negated {
        return Err((at, format!("recent: option \"{o}\" cannot be inverted (iptables refuses `!` here)")));
    }
    let twice = r.given.contains(&o) && o != "--rsource" && o != "--rdest";
    if twice || (r.given.contains(&o) && (o == "--rsource" || o == "--rdest")) {
        return Err((at, format!("recent: option \"{o}\" can only be used once (iptables refuses it)")));
    }
    r.given.push(o);
    let a = || arg.ok_or_else(|| (at, format!("`{o}` needs an argument")));
    match o {
        "--name" => {
            let w = a()?;
            let cut = w.text.char_indices().take_while(|(i, c)| i + c.len_utf8() <= NAME_MAX).count();
            let name: String = w.text.chars().take(cut).collect();
            r.name = Some(name);
        }
        "--rsource" => r.dest = false,
        "--rdest" => r.dest = true,
        "--mask" => {
            let w = a()?;
            r.mask = Some(inet_aton(w.text).ok_or_else(|| {
                (
                    w.at,
                    format!(
                        "recent: bad `--mask` `{}` (an IPv4 address such as 255.255.255.0; unifw resolves no names)",
                        w.text
                    ),
                )
            })?);
        }
        "--seconds" => {
            let w = a()?;
            let bad = || {
                (
                    w.at,
                    format!("recent: bad value for option \"--seconds\", or out of range (1-4294967295): `{}`", w.text),
                )
            };
            r.seconds = Some(strtoui(w.text).filter(|&s| s >= 1).ok_or_else(bad)?);
        }
        "--hitcount" => {
            let w = a()?;
            let bad = || {
                (
                    w.at,
                    format!(
                        "recent: bad value for option \"--hitcount\", or out of range (0-4294967295): `{}`",
                        w.text
                    ),
                )
            };
            r.hitcount = Some(strtoui(w.text).ok_or_else(bad)?);
        }
        "--rttl" => r.rttl = true,
        _ => r.reap = true,
    }
    Ok(())
}

/// A number as `xtables_strtoui` reads it: `+` allowed, `0x` hex, a
/// leading `0` octal, all of it digits, at most 2^32 - 1.
fn strtoui(s: &str) -> Option<u32> {
    let s = s.strip_prefix('+').unwrap_or(s);
    super::iptables_folded::strtoul(s, u64::from(u32::MAX)).map(|n| n as u32)
}

/// An address as `inet_aton` reads it (`a`, `a.b`, `a.b.c`, `a.b.c.d`,
/// each part decimal, octal or hex; the last part fills the rest).
pub(super) fn inet_aton(s: &str) -> Option<u32> {
    let parts: Vec<u32> =
        s.split('.').map(|p| if p.starts_with('+') { None } else { strtoui(p) }).collect::<Option<_>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 || head.iter().any(|&p| p > 255) {
        return None;
    }
    let bits = 32 - 8 * head.len() as u32;
    if bits < 32 && *last >= 1u32 << bits {
        return None;
    }
    let mut out = *last;
    for (i, &p) in head.iter().enumerate() {
        out |= p << (24 - 8 * i as u32);
    }
    Some(out)
}

/// The tables named so far across the whole ruleset: name, number, mask.
#[derive(Debug, Clone, Default)]
pub struct RecentNames {
    tables: Vec<(String, u32)>,
    /// Largest timestamp mask per table, for the memory bound.
    stamps: Vec<u16>,
    /// The unsupported feature the last refusal was for (to count it).
    pub unsupported: Option<String>,
    /// Rules with `-m connlimit` so far (iptables_connlimit.rs bounds them).
    pub connlimits: usize,
    /// Rules with `-m string` so far (iptables_string.rs bounds them).
    pub strings: usize,
}

/// Checks a finished `-m recent` as iptables and the kernel do and gives
/// its record. `later_matches`: whether other matches follow it in the rule
/// (a command that changes the table must be the last).
pub fn finish(r: &RecentOpts, names: &mut RecentNames, later_matches: bool) -> Result<RecentSpec, Fault> {
    let at = r.at;
    let Some((cmd_name, cmd, invert)) = r.cmd else {
        return Err((at, "recent: you must specify one of `--set', `--rcheck' `--update' or `--remove' (iptables refuses the match without it)".into()));
    };
    if r.reap && r.seconds.is_none() {
        return Err((at, "recent: option \"--reap\" also requires \"--seconds\" (iptables refuses it)".into()));
    }
    if r.rttl && (cmd == RECENT_SET || cmd == RECENT_REMOVE) {
        return Err((
            at,
            format!("recent: option \"--rttl\" cannot be used together with \"{cmd_name}\" (iptables refuses it)"),
        ));
    }
    if (cmd == RECENT_SET || cmd == RECENT_REMOVE)
        && (r.seconds.is_some() || r.hitcount.is_some_and(|h| h > 0) || r.reap)
    {
        return Err((at, format!("recent: `--seconds`, `--hitcount` and `--reap` only go with `--rcheck` or `--update`; the kernel refuses them with `{cmd_name}`")));
    }
    let hitcount = r.hitcount.unwrap_or(0);
    if hitcount >= MAX_NSTAMPS {
        return Err((
            at,
            format!(
                "recent: hitcount ({hitcount}) is larger than allowed maximum ({}) (the kernel refuses it)",
                MAX_NSTAMPS - 1
            ),
        ));
    }
    let name = r.name.clone().unwrap_or_else(|| "DEFAULT".into());
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err((at, format!("recent: table name `{name}` is refused by the kernel (its /proc/net/xt_recent file cannot have that name)")));
    }
    let mutates = cmd != RECENT_RCHECK || r.reap;
    if mutates && later_matches {
        names.unsupported = Some("-m recent before other matches".into());
        return Err((at, format!("`-m recent {cmd_name}{}` before other matches is not supported by unifw (it must be the rule's last match: Linux changes the table before the matches after it are checked, even for packets they refuse; move it after them)", if r.reap { " --reap" } else { "" })));
    }
    let mask = r.mask.unwrap_or(u32::MAX);
    let table = match names.tables.iter().position(|(n, _)| *n == name) {
        Some(t) => {
            if names.tables.get(t).is_some_and(|&(_, m)| m != mask) {
                return Err((at, format!("recent: table `{name}` is given two different `--mask`s; Linux keeps the first rule's (in its own load order), which unifw does not reproduce: give every rule naming it the same mask")));
            }
            t
        }
        None => {
            names.tables.push((name.clone(), mask));
            names.stamps.push(0);
            names.tables.len() - 1
        }
    };
    let table16 = u16::try_from(table).map_err(|_| (at, "recent: too many tables".into()))?;
    let hitcount = hitcount as u16;
    if let Some(s) = names.stamps.get_mut(table) {
        *s = (*s).max(recent_stamps_mask(hitcount));
    }
    let total: usize = names.stamps.iter().map(|&m| RECENT_ENTRIES * (usize::from(m) + 1)).sum();
    if total > MAX_RECENT_STAMPS {
        return Err((at, format!("recent: the tables' timestamps ({total}: {RECENT_ENTRIES} addresses a table, the next power of two at or above the largest `--hitcount` each) exceed unifw's bound of {MAX_RECENT_STAMPS} (their memory is allocated at boot); use fewer tables or smaller hit counts")));
    }
    Ok(RecentSpec {
        table: table16,
        cmd,
        dest: r.dest,
        rttl: r.rttl,
        reap: r.reap,
        invert,
        mask,
        seconds: r.seconds.unwrap_or(0),
        hitcount,
        stamps_mask: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_xtables_does() {
        assert_eq!(strtoui("0x10"), Some(16));
        assert_eq!(strtoui("010"), Some(8));
        assert_eq!(strtoui("+5"), Some(5));
        assert_eq!(strtoui("0"), Some(0));
        assert_eq!(strtoui("4294967296"), None);
        assert_eq!(strtoui("08"), None);
        assert_eq!(strtoui(" 5"), None);
        assert_eq!(strtoui("-1"), None);
    }

    #[test]
    fn masks_read_as_inet_aton_does() {
        assert_eq!(inet_aton("16"), Some(16));
        assert_eq!(inet_aton("10.1"), Some(0x0a00_0001));
        assert_eq!(inet_aton("255.255.0.0"), Some(0xffff_0000));
        assert_eq!(inet_aton("255.255.255.0/24"), None);
        assert_eq!(inet_aton("256.0.0.0"), None);
    }
}
