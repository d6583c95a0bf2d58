//! Interface names as rules name them: `ethN` is always NIC N, and
//! `interface ethN ... name NAME` gives NIC N more names, so an included
//! iptables-save file may say `-i wan0`. A name in `-i`/`-o` stands for a
//! set of NICs, as iptables reads it: a trailing `+` matches every name with
//! that prefix, `lo` and names no NIC has match nothing.

use alloc::format;
use alloc::string::String;

use super::diag::Diagnostic;
use super::names::{self, MAX_IF};
use super::source::Ctx;

/// Longest interface name Linux allows (IFNAMSIZ - 1; iptables refuses longer).
pub const MAX_NAME: usize = 15;

/// Checks a name given by `interface ... name NAME` as Linux's
/// `dev_valid_name` does (1-15 bytes, not `.` or `..`, no `/`, `:` or
/// blank), and refuses what would be read otherwise: `ethN` (always NIC N),
/// `lo`, and `+` (iptables' wildcard).
pub fn check_alias(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Err(format!("bad interface name `{s}`: 1 to {MAX_NAME} characters, as Linux allows"));
    }
    if s == "." || s == ".." || s.bytes().any(|b| matches!(b, b'/' | b':' | b'+') || b.is_ascii_whitespace()) {
        return Err(format!(
            "bad interface name `{s}`: Linux refuses `.`, `..`, `/`, `:` and blanks; `+` is iptables' wildcard"
        ));
    }
    if s == "lo" {
        return Err("`lo` is the loopback interface, not a NIC".into());
    }
    if let Ok(i) = names::interface(s) {
        return Err(format!("`{s}` always names NIC {i}; give another name"));
    }
    Ok(())
}

/// The NICs a name stands for (bit i = eth<i>): exact, or every name with
/// its prefix when it ends with `+`.
pub fn lookup(ctx: &Ctx, name: &str) -> u16 {
    let (stem, wild) = match name.strip_suffix('+') {
        Some(stem) => (stem, true),
        None => (name, false),
    };
    let hit = |n: &str| if wild { n.starts_with(stem) } else { n == stem };
    let mut set = 0u16;
    for i in 0..=MAX_IF {
        if ctx.interface_known(i) && hit(&format!("eth{i}")) {
            set |= 1 << i;
        }
    }
    for (alias, i) in &ctx.if_names {
        if hit(alias) {
            set |= 1u16 << (*i).min(15);
        }
    }
    set
}

/// The NICs `name` (given to `-i`/`-o` at `at`) stands for. A name no NIC
/// has is a warning and `lo` a note, each once per compilation: rules
/// naming them match nothing (negated: everything), as Linux does for an
/// interface that is not there (no loopback traffic crosses unifw).
pub fn resolve(ctx: &mut Ctx, name: &str, at: &dyn Fn(String) -> Diagnostic) -> Result<u16, String> {
    if name.len() > MAX_NAME {
        return Err(format!("interface name `{name}` is longer than {MAX_NAME} characters (iptables refuses it too)"));
    }
    let set = lookup(ctx, name);
    if set != 0 || ctx.warned_ifs.iter().any(|w| w == name) {
        return Ok(set);
    }
    ctx.warned_ifs.push(name.into());
    let msg = if name == "lo" {
        "note: `lo` is the loopback interface: no loopback traffic crosses unifw, so rules with `-i lo`/`-o lo` match nothing and with `! -i lo` everything".into()
    } else {
        format!(
            "warning: interface `{name}` is no NIC of unifw (name one with `interface ethN ... name {}`): rules naming it match nothing, as in Linux for an absent interface",
            name.trim_end_matches('+')
        )
    };
    ctx.set.warnings.push(at(msg));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_follow_linux_rules() {
        assert!(check_alias("wan0").is_ok() && check_alias("br-lan.10").is_ok() && check_alias("x").is_ok());
        assert!(check_alias("0123456789abcde").is_ok());
        for bad in ["", "0123456789abcdef", ".", "..", "a/b", "a:b", "a b", "wan+", "lo", "eth3"] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
        assert!(check_alias("eth15").is_ok() && check_alias("eth01").is_ok(), "not NIC names: allowed");
    }
}
