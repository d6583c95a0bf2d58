//! iptables matches whose result unifw knows when it compiles: `-f` (unifw
//! judges whole datagrams, as Linux does with connection tracking),
//! `-m owner` (unifw's own packets are the kernel's, with no user), `-m
//! mark` and `-m connmark` (nothing sets a mark, so every mark is 0). Each
//! becomes "always" (nothing to check) or "never" ([`Residual::never`]),
//! and the rule keeps what it said ([`Folded`]) so that `-D` compares it as
//! iptables does and user chains are checked at the hooks the kernel allows.
//!
//! [`Residual::never`]: unifw_core::image::format::Residual::never

use alloc::format;
use alloc::string::String;

/// A folded match, as the rule said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folded {
    /// `-f` (`negated`: `! -f`).
    Fragment {
        /// `! -f`.
        negated: bool,
    },
    /// `-m owner`.
    Owner(OwnerMatch),
    /// `-m mark --mark` (`conn`: `-m connmark --mark`).
    Mark {
        /// `-m connmark`: the connection's mark.
        conn: bool,
        /// The value compared.
        value: u32,
        /// The mask applied first.
        mask: u32,
        /// `!`.
        negated: bool,
    },
    /// `-m physdev` (no packet unifw sees was bridged).
    Physdev(super::iptables_physdev::PhysdevMatch),
}

/// The options of one `-m owner` match: each an inclusive id range and `!`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnerMatch {
    /// `--uid-owner A[-B]`.
    pub uid: Option<(u32, u32, bool)>,
    /// `--gid-owner A[-B]`.
    pub gid: Option<(u32, u32, bool)>,
    /// `--socket-exists`, negated.
    pub socket: Option<bool>,
    /// `--suppl-groups`.
    pub suppl: bool,
}

impl OwnerMatch {
    /// Whether the match holds for unifw's own packets. Linux sends its
    /// own (ICMP errors, resets, echo replies) from kernel control sockets:
    /// a socket with no file, hence no user. `xt_owner` then holds when
    /// `--socket-exists` is not negated and every `--uid-owner` and
    /// `--gid-owner` is (`--suppl-groups` is not read). Measured with
    /// iptables-legacy 1.8.9 in a namespace: `--socket-exists`, `!
    /// --uid-owner 0` and `! --gid-owner 0 --suppl-groups` count every
    /// reply, `! --socket-exists` and `--uid-owner 0` none.
    pub fn holds_for_own_packets(&self) -> bool {
        self.socket != Some(true)
            && self.uid.is_none_or(|(_, _, negated)| negated)
            && self.gid.is_none_or(|(_, _, negated)| negated)
    }

    /// Takes one option (`o` is its name, `arg` its argument); returns how
    /// many argument words it used.
    pub fn option(&mut self, o: &str, arg: Option<&str>, negated: bool) -> Result<usize, String> {
        let need = || arg.ok_or_else(|| format!("`{o}` needs an argument"));
        match o {
            "--uid-owner" | "--gid-owner" => {
                let (lo, hi) = id_range(need()?, if o == "--uid-owner" { "user" } else { "group" })?;
                let v = Some((lo, hi, negated));
                if o == "--uid-owner" {
                    self.uid = v
                } else {
                    self.gid = v
                }
                Ok(1)
            }
            "--socket-exists" => {
                self.socket = Some(negated);
                Ok(0)
            }
            _ => {
                if negated {
                    return Err("owner: option `--suppl-groups` cannot be inverted (iptables refuses it)".into());
                }
                if self.gid.is_none() {
                    return Err("owner: `--suppl-groups` needs `--gid-owner` first (iptables refuses it)".into());
                }
                self.suppl = true;
                Ok(0)
            }
        }
    }
}

/// `--uid-owner`/`--gid-owner`'s `A` or `A-B` (0 to 4294967294). Names are
/// refused: unifw reads no user database at build time.
fn id_range(s: &str, what: &str) -> Result<(u32, u32), String> {
    let id = |t: &str| -> Result<u32, String> {
        if !t.is_empty()
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            && !t.bytes().all(|b| b.is_ascii_digit())
            && !t.starts_with("0x")
        {
            return Err(format!(
                "{what} name `{t}` refused: unifw reads no user database at build time; write its number"
            ));
        }
        strtoul(t, u64::from(u32::MAX - 1))
            .map(|n| n as u32)
            .ok_or_else(|| format!("bad {what} id `{t}` (0-4294967294, as iptables)"))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (id(a)?, id(b)?),
        None => {
            let n = id(s)?;
            (n, n)
        }
    };
    if lo > hi {
        return Err(format!("{what} range `{s}` is reversed (the kernel refuses it)"));
    }
    Ok((lo, hi))
}

/// `--mark VALUE[/MASK]` (numbers as C's `strtoul` with base 0 reads them:
/// `0x` hex, a leading `0` octal; the mask defaults to 0xffffffff).
pub fn mark(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("bad mark `{s}` (VALUE[/MASK], each 0-0xffffffff)");
    let (v, m) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let value = strtoul(v, u64::from(u32::MAX)).ok_or_else(bad)? as u32;
    let mask = match m {
        Some(m) => strtoul(m, u64::from(u32::MAX)).ok_or_else(bad)? as u32,
        None => u32::MAX,
    };
    Ok((value, mask))
}

/// Whether a mark match holds for mark 0, the only mark unifw's packets
/// and connections have (no target sets one): `(0 & mask) == value`.
pub fn mark_holds(value: u32, negated: bool) -> bool {
    (value == 0) != negated
}

/// `-m tcpmss --mss A[:B]` (`:B` from 0, `A:` to 65535; numbers as
/// `strtoul` base 0 reads them); a reversed range is refused as iptables
/// refuses it.
pub fn mss_range(s: &str) -> Result<(u16, u16), String> {
    let n = |t: &str, default: u16| -> Result<u16, String> {
        if t.is_empty() {
            return Ok(default);
        }
        strtoul(t, 65535).map(|n| n as u16).ok_or_else(|| format!("bad MSS `{t}` in `{s}` (0-65535)"))
    };
    let (lo, hi) = match s.split_once(':') {
        Some((a, b)) => (n(a, 0)?, n(b, u16::MAX)?),
        None if s.is_empty() => return Err("`--mss` needs a value".into()),
        None => {
            let v = n(s, 0)?;
            (v, v)
        }
    };
    if lo > hi {
        return Err(format!("tcpmss: invalid range `{s}` (iptables refuses it)"));
    }
    Ok((lo, hi))
}

/// An unsigned number as C's `strtoul(s, &end, 0)` reads a whole word:
/// `0x`/`0X` hex, a leading `0` octal, else decimal; at most `max`.
pub fn strtoul(s: &str, max: u64) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok().filter(|&n| n <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_strtoul_base_0() {
        assert_eq!(strtoul("010", 100), Some(8));
        assert_eq!(strtoul("0x1F", 100), Some(31));
        assert_eq!(strtoul("0", 100), Some(0));
        assert_eq!(strtoul("101", 100), None);
        assert_eq!(strtoul("08", 100), None);
        assert_eq!(strtoul("-1", 100), None);
        assert_eq!(mark("0xe1f1"), Ok((0xe1f1, u32::MAX)));
        assert_eq!(mark("1/0x3"), Ok((1, 3)));
        assert!(mark("1/").is_err() && mark("0x100000000").is_err());
        assert_eq!(mss_range(":50"), Ok((0, 50)));
        assert_eq!(mss_range("50:"), Ok((50, 65535)));
        assert!(mss_range("100:50").is_err() && mss_range("1-5").is_err() && mss_range("65536").is_err());
    }

    #[test]
    fn owner_holds_only_without_a_user_asked_for() {
        let mut o = OwnerMatch::default();
        assert_eq!(o.option("--socket-exists", None, false), Ok(0));
        assert!(o.holds_for_own_packets());
        o.option("--uid-owner", Some("1000"), false).unwrap();
        assert!(!o.holds_for_own_packets());
        o.option("--uid-owner", Some("1000"), true).unwrap();
        assert!(o.holds_for_own_packets());
        o.option("--socket-exists", None, true).unwrap();
        assert!(!o.holds_for_own_packets());
        assert!(id_range("root", "user").is_err());
        assert!(id_range("5-3", "user").is_err());
        assert_eq!(id_range("0-100", "user"), Ok((0, 100)));
        assert!(id_range("4294967295", "user").is_err());
    }
}
