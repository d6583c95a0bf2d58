//! Parser for `iptables-save` output: the filter table's INPUT and FORWARD
//! chains and its user chains (targets in `iptables_target.rs`). Whatever unifw cannot honour is an error naming it and its line.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use unifw_core::flow::{proto, Action, Chain, RejectWith};

use super::ast::{state_bit, AddrMatch, IcmpMatch, IfMatch, PortMatch, ProtoMatch, Rule, ANY_STATE};
use super::diag::Diagnostic;
use super::iptables_target;
use super::names;
use super::source::{trim, Ctx};

/// A word of a rule line and its byte offset in the file.
#[derive(Clone, Copy)]
struct Word<'a> {
    text: &'a str,
    at: usize,
}

struct Line<'a> {
    name: &'a str,
    src: &'a [u8],
    no: u32,
    start: usize,
}

impl Line<'_> {
    fn diag(&self, at: usize, msg: String) -> Diagnostic {
        Diagnostic::at(self.name, self.src, self.no, self.start, at, msg)
    }
}

/// Parses an iptables-save file into `ctx`; returns the number of statements.
pub fn parse(ctx: &mut Ctx, file: u16, name: &str, src: &[u8]) -> usize {
    let mut table: Option<String> = None;
    let mut statements = 0;
    let mut start = 0;
    for (i, raw) in src.split(|&b| b == b'\n').enumerate() {
        // Past MAX_ERRORS nothing more is reported: stop, in linear time.
        if ctx.diags.is_full() {
            return statements.max(1);
        }
        let line = Line { name, src, no: (i + 1).min(u32::MAX as usize) as u32, start };
        start += raw.len() + 1;
        let body = trim(raw);
        if body.is_empty() || body.first() == Some(&b'#') {
            continue;
        }
        statements += 1;
        let offset = line.start + (body.as_ptr() as usize - raw.as_ptr() as usize);
        let Ok(text) = core::str::from_utf8(body) else {
            let bad = core::str::from_utf8(body).err().map_or(0, |e| e.valid_up_to());
            ctx.diags.push(line.diag(offset + bad, "bytes that are not UTF-8".into()));
            continue;
        };
        if let Err(d) = statement(ctx, file, &line, &mut table, text, offset) {
            ctx.diags.push(d);
        }
    }
    if let Some(t) = table {
        let no = src.split(|&b| b == b'\n').count() as u32;
        ctx.diags.push(Diagnostic::plain(name, no, 1, format!("table `{t}` has no COMMIT (truncated file?)")));
    }
    statements
}

fn statement(
    ctx: &mut Ctx,
    file: u16,
    line: &Line,
    table: &mut Option<String>,
    text: &str,
    offset: usize,
) -> Result<(), Diagnostic> {
    if let Some(t) = text.strip_prefix('*') {
        if let Some(open) = table {
            return Err(line.diag(offset, format!("table `{t}` starts before table `{open}` has its COMMIT")));
        }
        *table = Some(t.into());
        return Ok(());
    }
    if text == "COMMIT" {
        return match table.take() {
            Some(_) => Ok(()),
            None => Err(line.diag(offset, "COMMIT outside a table".into())),
        };
    }
    let Some(t) = table.as_deref() else {
        return Err(line.diag(offset, "expected a table (`*filter`) first".into()));
    };
    let words = split(text, offset).map_err(|at| line.diag(at, "unterminated quote".into()))?;
    if text.starts_with(':') {
        return chain_policy(ctx, file, line, t, &words);
    }
    let mut w = words.as_slice();
    if w.first().is_some_and(|x| x.text.starts_with('[')) {
        w = &w[1..]; // packet and byte counters of `iptables-save -c`
    }
    match w.first().map(|x| x.text) {
        Some("-A") | Some("--append") if t != "filter" => Err(line.diag(
            offset,
            format!("table `{t}` is not supported (unifw implements only the filter table's INPUT and FORWARD chains)"),
        )),
        Some("-A") | Some("--append") => {
            let rule = rule(ctx, file, line, &w[1..], offset)?;
            ctx.set.rules.push(rule);
            Ok(())
        }
        Some("-N") | Some("--new-chain") => match (w.get(1), w.get(2)) {
            (Some(name), None) if t == "filter" => {
                iptables_target::declare(ctx, file, line.no, name.text).map_err(|e| line.diag(name.at, e))
            }
            (Some(_), None) => Ok(()), // an empty chain in a table unifw does not read
            (_, extra) => Err(line.diag(extra.map_or(offset, |x| x.at), "expected `-N CHAIN`".into())),
        },
        _ => Err(line.diag(
            offset,
            format!(
                "unsupported command `{}` (iptables-save has only `*table`, `:CHAIN`, `-A` and COMMIT lines; `-N` is read too)",
                text
            ),
        )),
    }
}

/// Splits a line into words, honouring double quotes. Err = offset of a stray quote.
fn split(text: &str, base: usize) -> Result<Vec<Word<'_>>, usize> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if b[i] == b'"' {
            let close = b[i + 1..].iter().position(|&c| c == b'"').ok_or(base + i)?;
            out.push(Word { text: &text[i + 1..i + 1 + close], at: base + i });
            i += close + 2;
            continue;
        }
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        out.push(Word { text: &text[start..i], at: base + start });
    }
    Ok(out)
}

fn chain_policy(ctx: &mut Ctx, file: u16, line: &Line, table: &str, w: &[Word]) -> Result<(), Diagnostic> {
    let (Some(name), Some(policy)) = (w.first(), w.get(1)) else {
        return Err(
            line.diag(w.first().map_or(line.start, |x| x.at), "expected `:CHAIN POLICY [packets:bytes]`".into())
        );
    };
    let chain = &name.text[1..];
    let action = match policy.text {
        "ACCEPT" => Action::Accept,
        "DROP" => Action::Drop,
        "-" if BUILTIN_CHAINS.contains(&chain) => {
            return Err(line.diag(policy.at, format!("built-in chain `{chain}` needs a policy (ACCEPT or DROP)")))
        }
        "-" if table == "filter" => {
            return iptables_target::declare(ctx, file, line.no, chain).map_err(|e| line.diag(name.at, e))
        }
        "-" => return Ok(()), // a user chain of a table unifw does not read: its rules are refused
        p => return Err(line.diag(policy.at, format!("unsupported chain policy `{p}` (ACCEPT or DROP)"))),
    };
    match (table, chain) {
        ("filter", "INPUT") => ctx.set.policy_input = action,
        ("filter", "FORWARD") => ctx.set.policy_forward = action,
        (_, _) if action == Action::Accept => {} // an empty chain that accepts changes nothing
        (t, c) => return Err(line.diag(policy.at, format!("policy DROP for {t} chain {c} is not supported"))),
    }
    Ok(())
}

/// The built-in chains of iptables' tables.
const BUILTIN_CHAINS: &[&str] = &["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"];

/// What one `-A` line has said so far.
struct Opts {
    rule: Rule,
    target: bool,
}

fn rule(ctx: &Ctx, file: u16, line: &Line, w: &[Word], offset: usize) -> Result<Rule, Diagnostic> {
    let chain = match w.first() {
        Some(c) => iptables_target::rule_chain(ctx, file, c.text).map_err(|e| line.diag(c.at, e))?,
        None => return Err(line.diag(offset, "`-A` needs a chain".into())),
    };
    let mut o = Opts { rule: Rule { chain, ..Rule::any(Chain::Input, Action::Accept) }, target: false };
    o.rule.file = file;
    o.rule.line = line.no;
    o.rule.column = (offset - line.start) as u32 + 1;
    let mut i = 1;
    while i < w.len() {
        let negated = w[i].text == "!";
        if negated {
            i += 1;
        }
        let opt = w.get(i).ok_or_else(|| line.diag(w[i - 1].at, "`!` at the end of the line".into()))?;
        let arg = w.get(i + 1);
        let used = option(ctx, &mut o, line, opt, arg, negated)?;
        i += 1 + used;
    }
    if !o.target {
        return Err(
            line.diag(offset, "rule without `-j` target (unifw needs ACCEPT, DROP, REJECT, RETURN or a chain)".into())
        );
    }
    check(&o.rule, line, offset)?;
    Ok(o.rule)
}

/// Applies one option; returns how many argument words it used.
fn option(
    ctx: &Ctx,
    o: &mut Opts,
    line: &Line,
    opt: &Word,
    arg: Option<&Word>,
    negated: bool,
) -> Result<usize, Diagnostic> {
    let need = || arg.ok_or_else(|| line.diag(opt.at, format!("`{}` needs an argument", opt.text)));
    let bad = |w: &Word, e: String| line.diag(w.at, e);
    let no_neg = |what: &str| {
        if negated {
            Err(line.diag(opt.at, format!("`!` is not allowed before `{what}`")))
        } else {
            Ok(())
        }
    };
    let r = &mut o.rule;
    match opt.text {
        "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
            let a = need()?;
            let prefixes =
                a.text.split(',').map(names::prefix).collect::<Result<Vec<_>, _>>().map_err(|e| bad(a, e))?;
            if negated && prefixes.len() > 1 {
                return Err(line.diag(opt.at, "`!` is not allowed with several addresses".into()));
            }
            let m = Some(AddrMatch { negated, prefixes: prefixes.into() });
            if opt.text.starts_with("-s") || opt.text.starts_with("--s") {
                r.src = m
            } else {
                r.dst = m
            }
        }
        "-p" | "--protocol" => {
            let a = need()?;
            r.proto = match (a.text, negated) {
                ("all", false) => ProtoMatch::Any,
                (p, neg) => {
                    let n = names::protocol(p).map_err(|e| bad(a, e))?;
                    if neg {
                        ProtoMatch::Not(n)
                    } else {
                        ProtoMatch::OneOf(alloc::vec![n])
                    }
                }
            };
        }
        "-i" | "--in-interface" | "-o" | "--out-interface" => {
            let a = need()?;
            let index = names::interface(a.text).map_err(|e| bad(a, e))?;
            if !ctx.interface_known(index) {
                return Err(bad(
                    a,
                    format!("unknown interface {} (declare it in the native file before the include)", a.text),
                ));
            }
            let m = Some(IfMatch { negated, index });
            if opt.text.starts_with("-i") || opt.text.starts_with("--in") {
                r.in_if = m
            } else {
                r.out_if = m
            }
        }
        "-m" | "--match" => {
            no_neg("-m")?;
            let a = need()?;
            if !matches!(a.text, "tcp" | "udp" | "icmp" | "multiport" | "conntrack" | "state" | "comment") {
                return Err(bad(a, format!("match `-m {}` is not supported by unifw", a.text)));
            }
        }
        "--comment" => return need().map(|_| 1), // a remark: no effect on matching
        "--sport"
        | "--source-port"
        | "--dport"
        | "--destination-port"
        | "--sports"
        | "--source-ports"
        | "--dports"
        | "--destination-ports" => {
            let a = need()?;
            let list = opt.text.ends_with('s');
            let ranges =
                a.text.split(',').map(names::port_range).collect::<Result<Vec<_>, _>>().map_err(|e| bad(a, e))?;
            if !list && ranges.len() > 1 {
                return Err(bad(a, format!("`{}` takes one port or range (use -m multiport for lists)", opt.text)));
            }
            let m = Some(PortMatch { negated, ranges });
            if opt.text.starts_with("--s") {
                r.sport = m
            } else {
                r.dport = m
            }
        }
        "--state" | "--ctstate" => {
            let a = need()?;
            let bits = a
                .text
                .split(',')
                .map(names::state)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(a, e))?
                .into_iter()
                .fold(0, |m, s| m | state_bit(s));
            r.states = if negated { ANY_STATE & !bits } else { bits };
        }
        "--icmp-type" => {
            let a = need()?;
            r.icmp = match a.text {
                "any" => None,
                t => {
                    let (icmp_type, code) = names::icmp_type(t).map_err(|e| bad(a, e))?;
                    Some(IcmpMatch { negated, icmp_type, code })
                }
            };
        }
        "-j" | "--jump" | "-g" | "--goto" => {
            no_neg(opt.text)?;
            let a = need()?;
            iptables_target::target(ctx, r, a.text, opt.text.starts_with("-g") || opt.text == "--goto")
                .map_err(|e| bad(a, e))?;
            o.target = true;
        }
        "--reject-with" => {
            let a = need()?;
            match r.action {
                Action::Reject(_) => r.action = Action::Reject(names::reject_with(a.text).map_err(|e| bad(a, e))?),
                _ => return Err(line.diag(opt.at, "`--reject-with` needs `-j REJECT` first".into())),
            }
        }
        _ => return Err(line.diag(opt.at, format!("option `{}` is not supported by unifw", opt.text))),
    }
    Ok(1)
}

fn check(r: &Rule, line: &Line, offset: usize) -> Result<(), Diagnostic> {
    if (r.sport.is_some() || r.dport.is_some()) && !r.proto.has_ports() {
        return Err(line.diag(offset, "port matches need `-p tcp` or `-p udp`".into()));
    }
    if r.icmp.is_some() && !r.proto.is_icmp() {
        return Err(line.diag(offset, "`--icmp-type` needs `-p icmp`".into()));
    }
    if r.action == Action::Reject(RejectWith::TcpReset) && r.proto != ProtoMatch::OneOf(alloc::vec![proto::TCP]) {
        return Err(line.diag(offset, "`--reject-with tcp-reset` needs `-p tcp`".into()));
    }
    Ok(())
}
