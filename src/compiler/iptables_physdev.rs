//! `-m physdev` as iptables (libxt_physdev) and the kernel (`xt_physdev`)
//! take it: `--physdev-in NAME`, `--physdev-out NAME`, `--physdev-is-in`,
//! `--physdev-is-out`, `--physdev-is-bridged`, each at most once and each
//! with `!` before it, at least one of them. unifw routes and bridges
//! nothing, so every packet is one without bridge information: Linux's
//! `physdev_mt` then holds exactly when every option given is negated.

use alloc::format;
use alloc::string::String;

use super::iptables::Word;
use super::iptables_match::Fault;

/// `IFNAMSIZ` less the terminating zero: the longest name iptables takes.
const MAX_NAME: usize = 15;

const OPTIONS: [&str; 5] =
    ["--physdev-in", "--physdev-out", "--physdev-is-in", "--physdev-is-out", "--physdev-is-bridged"];

/// One `-m physdev` as the rule wrote it (kept in [`super::Folded`] so
/// that `-D` compares it and the printer writes it back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhysdevMatch {
    /// The options given: bit N is [`OPTIONS`]`[N]`.
    pub given: u8,
    /// Those of them negated.
    pub invert: u8,
    /// `--physdev-in`'s name (its first `in_len` bytes).
    pub in_name: [u8; MAX_NAME],
    /// Bytes of `in_name`.
    pub in_len: u8,
    /// `--physdev-out`'s name.
    pub out_name: [u8; MAX_NAME],
    /// Bytes of `out_name`.
    pub out_len: u8,
}

impl PhysdevMatch {
    fn has(&self, o: usize) -> bool {
        self.given >> o & 1 != 0
    }

    fn negated(&self, o: usize) -> bool {
        self.invert >> o & 1 != 0
    }

    /// Whether the match holds for a packet without bridge information
    /// (every packet unifw sees): only when every option is negated.
    pub fn holds(&self) -> bool {
        self.given & !self.invert == 0
    }

    /// Whether it names the output bridge port (`--physdev-out`,
    /// `--physdev-is-out`) without a plain `--physdev-is-bridged`, which
    /// the kernel's `physdev_mt_check` refuses at LOCAL_OUT.
    pub fn out_unbridged(&self) -> bool {
        let bridged = self.has(BRIDGED) && !self.negated(BRIDGED);
        (self.has(OUT) || self.has(IS_OUT)) && !bridged
    }

    /// The match as iptables-save writes it (` -m physdev --physdev-is-in
    /// ! --physdev-in a ...`).
    pub fn render(&self) -> String {
        let mut s = String::from(" -m physdev");
        let name = |b: &[u8], n: u8| String::from_utf8_lossy(b.get(..usize::from(n)).unwrap_or(&[])).into_owned();
        for o in [IS_IN, IN, IS_OUT, OUT, BRIDGED] {
            if !self.has(o) {
                continue;
            }
            s.push_str(if self.negated(o) { " ! " } else { " " });
            s.push_str(OPTIONS[o]);
            match o {
                IN => s.push_str(&format!(" {}", quoted(&name(&self.in_name, self.in_len)))),
                OUT => s.push_str(&format!(" {}", quoted(&name(&self.out_name, self.out_len)))),
                _ => {}
            }
        }
        s
    }
}

/// A name as one word of an iptables-save line (quoted when empty or blank).
fn quoted(n: &str) -> String {
    if n.is_empty() || n.bytes().any(|b| b.is_ascii_whitespace() || b == b'"') {
        format!("\"{}\"", n.replace('"', "\\\""))
    } else {
        n.into()
    }
}

const IN: usize = 0;
const OUT: usize = 1;
const IS_IN: usize = 2;
const IS_OUT: usize = 3;
const BRIDGED: usize = 4;

/// What one `-m physdev` has said so far.
#[derive(Debug, Clone)]
pub struct PhysdevOpts {
    /// Where `-m physdev` is.
    pub at: usize,
    /// Its options so far.
    pub m: PhysdevMatch,
}

impl PhysdevOpts {
    /// A fresh `-m physdev` at byte `at`.
    pub fn new(at: usize) -> PhysdevOpts {
        PhysdevOpts { at, m: PhysdevMatch::default() }
    }
}

/// The canonical name of a `-m physdev` option, if it is one.
pub fn option_name(o: &str) -> Option<&'static str> {
    OPTIONS.into_iter().find(|n| *n == o)
}

/// Whether option `o` takes an argument.
pub fn takes_argument(o: &str) -> bool {
    matches!(o, "--physdev-in" | "--physdev-out")
}

/// Applies option `o` (canonical) with its argument, refusing what
/// iptables refuses, with its words. The names are not resolved: they
/// are bridge ports, which unifw has none of.
pub fn option(p: &mut PhysdevOpts, o: &'static str, at: usize, arg: Option<&Word>, negated: bool) -> Result<(), Fault> {
    let n =
        OPTIONS.iter().position(|x| *x == o).ok_or_else(|| (at, format!("internal: `{o}` is no physdev option")))?;
    if p.m.has(n) {
        return Err((at, format!("physdev: option \"{o}\" can only be used once (iptables refuses it)")));
    }
    if takes_argument(o) {
        let w = arg.ok_or_else(|| (at, format!("option \"{o}\" requires an argument")))?;
        if w.text.len() > MAX_NAME {
            return Err((
                w.at,
                format!("interface name `{}` must be shorter than IFNAMSIZ ({MAX_NAME}) (iptables refuses it)", w.text),
            ));
        }
        let (name, len) =
            if n == IN { (&mut p.m.in_name, &mut p.m.in_len) } else { (&mut p.m.out_name, &mut p.m.out_len) };
        if let Some(dst) = name.get_mut(..w.text.len()) {
            dst.copy_from_slice(w.text.as_bytes());
        }
        *len = w.text.len() as u8;
    }
    p.m.given |= 1 << n;
    p.m.invert |= u8::from(negated) << n;
    Ok(())
}

/// Checks a finished `-m physdev`: at least one option.
pub fn finish(p: &PhysdevOpts) -> Result<(), Fault> {
    if p.m.given == 0 {
        return Err((p.at, "PHYSDEV: no physdev option specified (iptables refuses the match without one)".into()));
    }
    Ok(())
}
