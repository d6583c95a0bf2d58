//! `-m string` as iptables (libxt_string, revision 1) and the kernel
//! (`xt_string`) take it: `--algo bm|kmp` (required), `--from N`, `--to N`
//! (0-65535, read as iptables reads numbers; `--from` past `--to` is
//! refused by the kernel), one of `--string PATTERN` and `--hex-string
//! PATTERN` (either with `!` before it), `--icase`; each option once, only
//! the pattern negated. Patterns are 1 to 128 bytes
//! ([`XT_STRING_MAX_PATTERN_SIZE`]).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use unifw_core::image::format::{StringSpec, MAX_STRING_RULES, XT_STRING_MAX_PATTERN_SIZE};

use super::iptables::Word;
use super::iptables_match::Fault;

const OPTIONS: [&str; 6] = ["--algo", "--from", "--to", "--string", "--hex-string", "--icase"];

/// What one `-m string` has said so far.
#[derive(Debug, Clone)]
pub struct StringOpts {
    /// Where `-m string` is.
    pub at: usize,
    spec: StringSpec,
    given: Vec<&'static str>,
}

impl StringOpts {
    /// A fresh `-m string` at byte `at`.
    pub fn new(at: usize) -> StringOpts {
        StringOpts { at, spec: StringSpec::default(), given: Vec::new() }
    }
}

/// The canonical name of a `-m string` option, if it is one.
pub fn option_name(o: &str) -> Option<&'static str> {
    OPTIONS.into_iter().find(|n| *n == o)
}

/// Whether option `o` takes an argument.
pub fn takes_argument(o: &str) -> bool {
    o != "--icase"
}

/// Applies option `o` (canonical) with its argument, refusing what
/// iptables refuses, with its words. `quoted`: the argument was a
/// double-quoted word, in which iptables-restore reads `\X` as `X`.
pub fn option(
    s: &mut StringOpts,
    o: &'static str,
    at: usize,
    (arg, quoted): (Option<&Word>, bool),
    negated: bool,
) -> Result<(), Fault> {
    let exclusive = match o {
        "--string" => Some("--hex-string"),
        "--hex-string" => Some("--string"),
        _ => None,
    };
    if let Some(other) = exclusive.filter(|x| s.given.contains(x)) {
        return Err((
            at,
            format!("string: option \"{o}\" cannot be used together with \"{other}\" (iptables refuses it)"),
        ));
    }
    if s.given.contains(&o) {
        return Err((at, format!("string: option \"{o}\" can only be used once (iptables refuses it)")));
    }
    if negated && exclusive.is_none() {
        return Err((at, format!("string: option \"{o}\" cannot be inverted (iptables refuses `!` here)")));
    }
    s.given.push(o);
    if o == "--icase" {
        s.spec.icase = true;
        return Ok(());
    }
    let w = arg.ok_or_else(|| (at, format!("option \"{o}\" requires an argument")))?;
    let text = if quoted { unquote(w.text) } else { String::from(w.text) };
    match o {
        "--algo" => match text.as_str() {
            "bm" => s.spec.kmp = false,
            "kmp" => s.spec.kmp = true,
            other => {
                return Err((
                    w.at,
                    format!("string: text search algorithm `{other}` is refused by the kernel (`bm` or `kmp`; `fsm` takes no strings)"),
                ))
            }
        },
        "--from" | "--to" => {
            let n = text.strip_prefix('+').and_then(|t| super::iptables_folded::strtoul(t, 65_535));
            let n = n.or_else(|| super::iptables_folded::strtoul(&text, 65_535)).ok_or_else(|| {
                (w.at, format!("string: bad value for option \"{o}\", or out of range (0-65535): `{}`", w.text))
            })? as u16;
            if o == "--from" {
                s.spec.from = n;
            } else {
                s.spec.to = n;
            }
        }
        _ => {
            let pattern = if o == "--string" {
                if text.len() > XT_STRING_MAX_PATTERN_SIZE {
                    return Err((w.at, too_long(w.text)));
                }
                text.into_bytes()
            } else {
                hex_string(text.as_bytes()).map_err(|e| (w.at, e))?
            };
            if pattern.is_empty() {
                return Err((w.at, "string: an empty pattern is refused by the kernel (textsearch_prepare)".into()));
            }
            s.spec.invert = negated;
            let fresh = StringSpec::new(&pattern);
            s.spec.pattern = fresh.pattern;
            s.spec.len = fresh.len;
        }
    }
    Ok(())
}

fn too_long(text: &str) -> String {
    format!(
        "STRING too long \"{text}\" (at most {XT_STRING_MAX_PATTERN_SIZE} bytes; iptables or the kernel refuses it)"
    )
}

/// A double-quoted word as iptables-restore reads it: `\X` is `X`.
fn unquote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `--hex-string` as libxt_string's `parse_hex_string` reads it: bytes
/// outside `|...|` as they are (`\X` is `X` there), pairs of hex digits
/// inside (a blank may follow a pair, and blanks after the opening `|`
/// are skipped); the character right after a `|` is taken in the mode
/// that `|` set without being looked at as another `|` (so `|41||42|` is
/// `A|42`, as iptables saves it); an unclosed block ends the pattern.
/// Its errors are iptables'.
fn hex_string(s: &[u8]) -> Result<Vec<u8>, String> {
    if s.is_empty() {
        return Err("STRING must contain at least one char (iptables refuses an empty `--hex-string`)".into());
    }
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let (mut out, mut i, mut hex) = (Vec::new(), 0usize, false);
    while i < s.len() {
        // Measured: 128 bytes then anything left (a closing `|` too) is
        // too long; 128 bytes ending the text are not.
        if out.len() >= XT_STRING_MAX_PATTERN_SIZE {
            return Err(too_long(&String::from_utf8_lossy(s)));
        }
        let mut literal = false;
        if at(i) == b'\\' && !hex {
            literal = true;
        } else if at(i) == b'\\' {
            return Err("Cannot include literals in hex data (iptables refuses `\\` inside `|...|`)".into());
        } else if at(i) == b'|' {
            hex = !hex;
            if hex {
                while at(i + 1) == b' ' {
                    i += 1;
                }
            }
            if i + 1 >= s.len() {
                break;
            }
            i += 1;
        }
        if literal {
            if i + 1 >= s.len() {
                return Err("Bad literal placement at end of string (iptables refuses a `\\` ending it)".into());
            }
            out.push(at(i + 1));
            i += 2;
        } else if hex {
            if i + 1 >= s.len() {
                return Err("Odd number of hex digits (iptables refuses it)".into());
            }
            if i + 2 >= s.len() {
                return Err("Invalid hex block (iptables refuses it: a block must end with `|`)".into());
            }
            let digit = |c: u8| (c as char).to_digit(16).ok_or_else(|| format!("Invalid hex char '{}'", c as char));
            let byte = digit(at(i))? << 4 | digit(at(i + 1))?;
            out.push(byte as u8);
            i += if at(i + 2) == b' ' { 3 } else { 2 };
        } else {
            out.push(at(i));
            i += 1;
        }
    }
    Ok(out)
}

/// Checks a finished `-m string` (its algorithm and pattern given, `--from`
/// not past `--to`) and gives its record. `names.strings` counts the
/// string rules so far (bounded at [`MAX_STRING_RULES`]).
pub fn finish(s: &StringOpts, names: &mut super::iptables_recent::RecentNames) -> Result<StringSpec, Fault> {
    if !s.given.contains(&"--algo") {
        return Err((
            s.at,
            "string: option \"--algo\" must be specified (iptables refuses the match without it)".into(),
        ));
    }
    if !s.given.iter().any(|g| *g == "--string" || *g == "--hex-string") {
        return Err((
            s.at,
            "STRING match: You must specify `--string' or `--hex-string' (iptables refuses the match without one)"
                .into(),
        ));
    }
    if s.spec.from > s.spec.to {
        return Err((
            s.at,
            format!("string: `--from {}` is past `--to {}` (the kernel refuses it)", s.spec.from, s.spec.to),
        ));
    }
    if names.strings >= MAX_STRING_RULES {
        return Err((s.at, format!("string: more than {MAX_STRING_RULES} rules with `-m string` (unifw's bound)")));
    }
    names.strings += 1;
    Ok(s.spec)
}

/// The match as iptables-save (1.8.9) writes it: `--string "..."` when
/// every byte is printable ASCII and the last is no `\` (`"` and `\`
/// escaped), else `--hex-string "|..|"`.
pub fn render(spec: &StringSpec) -> String {
    let p = spec.pattern();
    let mut s = String::from(" -m string");
    s.push_str(if spec.invert { " ! " } else { " " });
    if p.iter().all(|&c| (0x20..0x7f).contains(&c)) && p.last() != Some(&b'\\') {
        s.push_str("--string \"");
        for &c in p {
            if c == b'"' || c == b'\\' {
                s.push('\\');
            }
            s.push(c as char);
        }
    } else {
        s.push_str("--hex-string \"|");
        for &c in p {
            s.push_str(&format!("{c:02x}"));
        }
        s.push('|');
    }
    s.push_str(if spec.kmp { "\" --algo kmp" } else { "\" --algo bm" });
    if spec.from != 0 {
        s.push_str(&format!(" --from {}", spec.from));
    }
    if spec.to != u16::MAX {
        s.push_str(&format!(" --to {}", spec.to));
    }
    if spec.icase {
        s.push_str(" --icase");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_strings_read_as_iptables_reads_them() {
        // Each as iptables 1.8.9 saved it back (see tests/rules_string.rs).
        let ok = |s: &str| hex_string(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("'|0000FF0001|'"), b"'\x00\x00\xff\x00\x01'");
        assert_eq!(ok("x|41 42|y"), b"xABy");
        assert_eq!(ok("|41 42 |"), b"AB");
        assert_eq!(ok("|  4142|"), b"AB");
        assert_eq!(ok("|41||"), b"A|");
        assert_eq!(ok("|41||42|"), b"A|42");
        assert_eq!(ok("|41|42"), b"A42");
        assert_eq!(ok("a|"), b"a");
        assert_eq!(ok("a\\\\b"), b"a\\b");
        assert_eq!(ok("|"), b"");
        for (bad, why) in [
            ("", "at least one char"),
            ("|414|", "Invalid hex block"),
            ("|4142", "Invalid hex block"),
            ("|4g|", "Invalid hex char 'g'"),
            ("ab\\", "Bad literal placement"),
            ("||", "Odd number of hex digits"),
            ("|41\\42|", "Cannot include literals"),
        ] {
            let e = hex_string(bad.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(ok(&"|41|x".repeat(64)), b"Ax".repeat(64));
        // Measured with iptables 1.8.9: 128 bytes pass unless more text follows them.
        assert_eq!(ok(&"a".repeat(128)).len(), 128);
        assert!(hex_string(&[b'a'; 129]).unwrap_err().contains("too long"));
        assert_eq!(ok(&format!("|{}|b", "41".repeat(127))).len(), 128);
        assert_eq!(ok(&format!("a|{}|b", "41".repeat(126))).len(), 128);
        for long in [format!("|{}|", "41".repeat(128)), format!("|{} 41|", "41".repeat(127))] {
            assert!(hex_string(long.as_bytes()).unwrap_err().contains("too long"), "{long}");
        }
    }

    #[test]
    fn quoted_words_lose_their_backslashes() {
        assert_eq!(unquote(r#"a\"b"#), "a\"b");
        assert_eq!(unquote(r"a\\b"), "a\\b");
        assert_eq!(unquote(r"a\nb"), "anb");
    }

    #[test]
    fn renders_as_iptables_save() {
        let s = StringSpec { invert: true, kmp: true, from: 10, to: 20, icase: true, ..StringSpec::new(b"a\"b\\c") };
        assert_eq!(render(&s), r#" -m string ! --string "a\"b\\c" --algo kmp --from 10 --to 20 --icase"#);
        let h = StringSpec { from: 50, ..StringSpec::new(b"'\x00\x00\xff\x00\x01'") };
        assert_eq!(render(&h), r#" -m string --hex-string "|270000ff000127|" --algo bm --from 50"#);
        // Measured: a pattern ending with `\` is saved in hex.
        assert_eq!(render(&StringSpec::new(b"ab\\\\")), r#" -m string --hex-string "|61625c5c|" --algo bm"#);
    }
}
