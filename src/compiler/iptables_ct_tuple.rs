//! `-m conntrack --ctorigsrc/--ctorigdst/--ctreplsrc/--ctrepldst ADDR[/MASK]`,
//! `--ctorigsrcport/--ctorigdstport/--ctreplsrcport/--ctrepldstport
//! PORT[:PORT]` (each with `!`) and `--ctdir ORIGINAL|REPLY`, read as
//! iptables 1.8.9 reads them (measured in a namespace): addresses as
//! `getaddrinfo` takes them (`10.1` is 10.0.0.1, unlike `-s`), a port or a
//! service name of any protocol, a reversed range accepted (it holds for
//! no port). The tests go into the rule's residual record
//! ([`CtTupleSpec`]); Linux's `xt_conntrack` checks them only for packets
//! with a connection (`iptables_match::finish` narrows the states).

use alloc::format;
use alloc::string::String;

use unifw_core::flow::mask;
use unifw_core::image::format::ct_tuple::{CtField, CtTest, CtTupleSpec};

use super::names;

/// The field an option name tests, if it is one of the eight.
pub fn field(o: &str) -> Option<CtField> {
    Some(match o {
        "--ctorigsrc" => CtField::OrigSrc,
        "--ctorigdst" => CtField::OrigDst,
        "--ctreplsrc" => CtField::ReplSrc,
        "--ctrepldst" => CtField::ReplDst,
        "--ctorigsrcport" => CtField::OrigSrcPort,
        "--ctorigdstport" => CtField::OrigDstPort,
        "--ctreplsrcport" => CtField::ReplSrcPort,
        "--ctrepldstport" => CtField::ReplDstPort,
        _ => return None,
    })
}

/// The option name of a field (for printing).
pub fn option_name(f: CtField) -> &'static str {
    match f {
        CtField::OrigSrc => "--ctorigsrc",
        CtField::OrigDst => "--ctorigdst",
        CtField::ReplSrc => "--ctreplsrc",
        CtField::ReplDst => "--ctrepldst",
        CtField::OrigSrcPort => "--ctorigsrcport",
        CtField::OrigDstPort => "--ctorigdstport",
        CtField::ReplSrcPort => "--ctreplsrcport",
        CtField::ReplDstPort => "--ctrepldstport",
    }
}

/// What went wrong: the reason, and whether it is a limit of unifw's
/// (counted as unsupported) rather than a line iptables refuses too.
pub type Refusal = (String, bool);

/// Adds the test `field` (negated) with argument `arg` to `spec`.
pub fn test(spec: &mut Option<CtTupleSpec>, field: CtField, negated: bool, arg: &str) -> Result<(), Refusal> {
    let (value, high) = if field.is_port() { port_range(arg)? } else { address(arg)? };
    let spec = spec.get_or_insert_with(CtTupleSpec::default);
    if !spec.push(CtTest { field, negated, value, high }) {
        let why = format!(
            "more than {} `--ctorig*`/`--ctrepl*` options in one rule are not supported by unifw",
            CtTupleSpec::MAX
        );
        return Err((why, true));
    }
    Ok(())
}

/// `--ctdir ORIGINAL|REPLY` (iptables refuses `!`).
pub fn direction(spec: &mut Option<CtTupleSpec>, negated: bool, arg: &str) -> Result<(), Refusal> {
    if negated {
        return Err(("option `--ctdir` cannot be inverted (iptables refuses it)".into(), false));
    }
    let reply = match arg.to_ascii_uppercase().as_str() {
        "ORIGINAL" => false,
        "REPLY" => true,
        _ => return Err((format!("bad `--ctdir` value `{arg}` (ORIGINAL or REPLY)"), false)),
    };
    let spec = spec.get_or_insert_with(CtTupleSpec::default);
    if spec.dir.is_some_and(|d| d != reply) {
        // Two conntrack matches asking for both directions: nothing holds.
        return Err(("`--ctdir ORIGINAL` and `--ctdir REPLY` in one rule never match".into(), false));
    }
    spec.dir = Some(reply);
    Ok(())
}

/// `ADDR[/LEN|/MASK]` as the address and its prefix length.
fn address(s: &str) -> Result<(u32, u16), Refusal> {
    let (a, m) = s.split_once('/').map_or((s, None), |(a, m)| (a, Some(m)));
    let addr = super::iptables_recent::inet_aton(a).ok_or_else(|| {
        let why = if a.bytes().any(|b| b.is_ascii_alphabetic()) {
            format!("host name `{a}` refused: unifw resolves no names at build time; write its address")
        } else {
            format!("bad IPv4 address `{a}`")
        };
        (why, false)
    })?;
    let len = match m {
        None => 32,
        Some(m) if m.contains('.') => {
            let bits = names::ipv4(m).map_err(|e| (e, false))?;
            let len = bits.leading_ones();
            if bits.checked_shl(len).unwrap_or(0) != 0 {
                return Err((format!("netmask `{m}` is not contiguous: not supported by unifw"), true));
            }
            len
        }
        Some(m) => names::number(m, 32).map_err(|_| (format!("invalid mask `{m}` specified (0-32)"), false))?,
    };
    Ok((addr & mask(len as u8), len as u16))
}

/// `P`, `P:Q`, `:Q`, `P:` (a number or a service name); a reversed range
/// is accepted, as iptables accepts it.
fn port_range(s: &str) -> Result<(u32, u16), Refusal> {
    let port = |p: &str| -> Result<u16, Refusal> {
        let bad = || (format!("invalid port/service `{p}` (a number 0-65535 or a name of /etc/services)"), false);
        if p.bytes().all(|b| b.is_ascii_digit()) {
            return names::number(p, 65535).map(|n| n as u16).map_err(|_| bad());
        }
        names::service(p, 3).ok_or_else(bad)
    };
    let (lo, hi) = match s.split_once(':') {
        Some((lo, hi)) => (if lo.is_empty() { 0 } else { port(lo)? }, if hi.is_empty() { u16::MAX } else { port(hi)? }),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    Ok((u32::from(lo), hi))
}

/// The options of `spec` as iptables-save writes them.
pub fn render(spec: &CtTupleSpec) -> String {
    let mut s = String::new();
    if let Some(reply) = spec.dir {
        s.push_str(if reply { " --ctdir REPLY" } else { " --ctdir ORIGINAL" });
    }
    for t in spec.tests.iter().flatten() {
        let bang = if t.negated { "! " } else { "" };
        let value = if t.field.is_port() && t.value == u32::from(t.high) {
            format!("{}", t.high)
        } else if t.field.is_port() {
            format!("{}:{}", t.value, t.high)
        } else {
            format!("{}/{}", names::dotted(t.value), t.high)
        };
        s.push_str(&format!(" {bang}{} {value}", option_name(t.field)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_read_as_iptables_reads_them() {
        assert_eq!(address("10.1"), Ok((0x0a00_0001, 32)), "getaddrinfo's short form");
        assert_eq!(address("10.1.2.3/24"), Ok((0x0a01_0200, 24)), "host bits cleared");
        assert_eq!(address("10.1.2.3/255.255.0.0"), Ok((0x0a01_0000, 16)));
        assert_eq!(address("0/0"), Ok((0, 0)));
        assert!(address("10.0.0.1/0.255.0.0").is_err_and(|e| e.1), "non-contiguous: unsupported");
        assert!(address("localhost").is_err_and(|e| !e.1 && e.0.contains("host name")));
        assert!(address("10.1.2.3,10.2.0.0/16").is_err());
        assert_eq!(port_range("25"), Ok((25, 25)));
        assert_eq!(port_range("smtp"), Ok((25, 25)));
        assert_eq!(port_range(":25"), Ok((0, 25)));
        assert_eq!(port_range("25:"), Ok((25, 65535)));
        assert_eq!(port_range("30:25"), Ok((30, 25)), "reversed: accepted, holds nothing");
        assert!(port_range("25,26").is_err() && port_range("65536").is_err());
    }

    #[test]
    fn five_tests_fit_a_sixth_is_unsupported_and_ctdir_takes_no_bang() {
        let mut spec = None;
        for f in [CtField::OrigSrc, CtField::OrigDst, CtField::ReplSrc, CtField::ReplDst, CtField::OrigDstPort] {
            let arg = if f.is_port() { "25" } else { "10.0.0.0/8" };
            assert_eq!(test(&mut spec, f, false, arg), Ok(()));
        }
        assert!(test(&mut spec, CtField::ReplSrcPort, false, "25").is_err_and(|e| e.1));
        assert!(direction(&mut spec, true, "REPLY").is_err_and(|e| !e.1));
        assert_eq!(direction(&mut spec, false, "reply"), Ok(()));
        assert!(direction(&mut spec, false, "ORIGINAL").is_err());
        let text = render(&spec.unwrap_or_default());
        assert!(text.starts_with(" --ctdir REPLY --ctorigsrc 10.0.0.0/8"), "{text}");
        assert!(text.ends_with(" --ctorigdstport 25"), "{text}");
    }
}
