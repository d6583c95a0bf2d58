//! Parser for `iptables-save` output: the filter table's INPUT and FORWARD
//! chains and its user chains (targets in `iptables_target.rs`). Whatever unifw cannot honour is an error naming it and its line.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use unifw_core::flow::{proto, Action, Chain, RejectWith};

use super::ast::{ProtoMatch, Rule, RuleChain};
use super::diag::Diagnostic;
use super::iptables_commands;
use super::iptables_match::{self, Matches};
use super::iptables_nat;
use super::iptables_split;
use super::iptables_target;
use super::names;
use super::source::{trim, Ctx};

/// A word of a rule line and its byte offset in the file.
#[derive(Clone, Copy)]
pub struct Word<'a> {
    /// The word (without its quotes).
    pub text: &'a str,
    /// Byte offset in the file.
    pub at: usize,
}

/// One line of the file, for diagnostics.
pub(super) struct Line<'a> {
    name: &'a str,
    src: &'a [u8],
    /// 1-based line number.
    pub(super) no: u32,
    /// Byte offset of the line in the file.
    pub(super) start: usize,
}

impl Line<'_> {
    /// An error at byte offset `at` of the file.
    pub(super) fn diag(&self, at: usize, msg: String) -> Diagnostic {
        Diagnostic::at(self.name, self.src, self.no, self.start, at, msg)
    }
}

/// Parses an iptables-save file into `ctx`; returns the number of statements.
pub fn parse(ctx: &mut Ctx, file: u16, name: &str, src: &[u8]) -> usize {
    let mut table: Option<String> = None;
    let mut statements = 0;
    let mut start = 0;
    for (i, raw) in src.split(|&b| b == b'\n').enumerate() {
        // Past MAX_ERRORS nothing more is reported, but each line is still
        // read (in linear time) to count the unsupported features it uses.
        let counting = ctx.diags.is_full();
        let line = Line { name, src, no: (i + 1).min(u32::MAX as usize) as u32, start };
        start += raw.len() + 1;
        let body = trim(raw);
        if body.is_empty() || body.first() == Some(&b'#') {
            continue;
        }
        statements += 1;
        let offset = line.start + (body.as_ptr() as usize - raw.as_ptr() as usize);
        // iptables-restore ends a table only at a line that is exactly
        // "COMMIT\n": with spaces around it, a carriage return, or as the
        // last line without a newline, it reads COMMIT as a rule and fails.
        // The table is still closed there, so no "no COMMIT" error follows.
        if body == b"COMMIT" && (raw != b"COMMIT" || start > src.len()) && !counting {
            let why = if raw == b"COMMIT" { "no newline after it" } else { "spaces or a carriage return around it" };
            ctx.diags.push(line.diag(
                offset,
                format!("COMMIT with {why}: iptables-restore reads only a line that is exactly `COMMIT` and a newline as the end of a table, and refuses this one (Bad argument `COMMIT')"),
            ));
        }
        let Ok(text) = core::str::from_utf8(body) else {
            let bad = core::str::from_utf8(body).err().map_or(0, |e| e.valid_up_to());
            ctx.diags.push(line.diag(offset + bad, "bytes that are not UTF-8".into()));
            continue;
        };
        match statement(ctx, file, &line, &mut table, text, offset) {
            Err(d) if !counting => ctx.diags.push(d),
            _ => {}
        }
    }
    if let (Some(t), false) = (table, ctx.diags.is_full()) {
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
        Some("-A") | Some("--append") => append(ctx, file, line, t, &w[1..], offset),
        Some(command) if iptables_commands::is_command(command) => {
            iptables_commands::command(ctx, file, line, t, w, offset)
        }
        Some("-N") | Some("--new-chain") => match (w.get(1), w.get(2)) {
            (Some(name), None) if t == "filter" || t == "nat" => {
                iptables_target::declare_in(ctx, file, line.no, name.text, t == "nat").map_err(|e| line.diag(name.at, e))
            }
            (Some(_), None) => Ok(()), // an empty chain in a table unifw does not read
            (_, extra) => Err(line.diag(extra.map_or(offset, |x| x.at), "expected `-N CHAIN`".into())),
        },
        _ => Err(line.diag(
            offset,
            format!(
                "unsupported command `{}` (unifw reads `*table`, `:CHAIN`, COMMIT and the commands -A, -I, -D, -N, -F, -X, -P and -Z)",
                text
            ),
        )),
    }
}

/// Appends the rule of an `-A` line (`w` from its chain on); a rule whose
/// stateful match comes before other matches is split in two
/// (`iptables_split.rs`), each half appended in turn.
fn append(ctx: &mut Ctx, file: u16, line: &Line, table: &str, w: &[Word], offset: usize) -> Result<(), Diagnostic> {
    if let Some(split) = iptables_split::find(table, w) {
        if split.target.is_none() {
            return append(ctx, file, line, table, &split.first_only(w), offset);
        }
        let name = split.chain_name(line.no, &|n| iptables_target::find_in(ctx, file, n, false).is_some());
        iptables_target::declare_in(ctx, file, line.no, &name, false).map_err(|e| line.diag(split.at, e))?;
        let (first, second) = split.halves(w, &name);
        append(ctx, file, line, table, &first, offset)?;
        return append(ctx, file, line, table, &second, offset);
    }
    if let Some(rule) = table_rule(ctx, file, line, table, w, offset)? {
        iptables_commands::remember_signature(ctx, &rule, w);
        ctx.set.rules.push(rule);
    }
    Ok(())
}

/// The offset of the quote that ends a quoted word: iptables-save escapes
/// `"` and `\` inside one with a backslash (`--comment "say \"hi\""`), so an
/// escaped character never ends it. The word keeps its backslashes (only
/// comments are quoted words unifw reads, and they have no effect).
fn closing_quote(rest: &[u8]) -> Option<usize> {
    let mut escaped = false;
    for (at, &c) in rest.iter().enumerate() {
        match c {
            b'"' if !escaped => return Some(at),
            b'\\' => escaped = !escaped,
            _ => escaped = false,
        }
    }
    None
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
            let close = closing_quote(&b[i + 1..]).ok_or(base + i)?;
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
    match policy.text {
        "-" if BUILTIN_CHAINS.contains(&chain) => {
            Err(line.diag(policy.at, format!("built-in chain `{chain}` needs a policy (ACCEPT or DROP)")))
        }
        "-" if table == "filter" || table == "nat" => {
            iptables_target::declare_in(ctx, file, line.no, chain, table == "nat").map_err(|e| line.diag(name.at, e))
        }
        "-" => Ok(()), // a user chain of a table unifw does not read: its rules are refused
        _ => set_policy(ctx, line, table, chain, policy),
    }
}

/// Sets the policy of built-in `chain` of `table` (`:CHAIN POLICY` or `-P CHAIN POLICY`).
pub(super) fn set_policy(
    ctx: &mut Ctx,
    line: &Line,
    table: &str,
    chain: &str,
    policy: &Word,
) -> Result<(), Diagnostic> {
    let action = match policy.text {
        "ACCEPT" => Action::Accept,
        "DROP" => Action::Drop,
        p => return Err(line.diag(policy.at, format!("unsupported chain policy `{p}` (ACCEPT or DROP)"))),
    };
    match (table, chain) {
        ("filter", "INPUT") => ctx.set.set_policy(Chain::Input, action),
        ("filter", "FORWARD") => ctx.set.set_policy(Chain::Forward, action),
        ("filter", "OUTPUT") => ctx.set.set_policy(Chain::Output, action),
        (_, _) if action == Action::Accept => {} // an empty chain that accepts changes nothing
        (t, c) => {
            ctx.count_unsupported(format!("policy DROP of {t} {c}"));
            return Err(line.diag(policy.at, format!("policy DROP for {t} chain {c} is not supported")));
        }
    }
    Ok(())
}

/// The built-in chains of iptables' tables.
pub(super) const BUILTIN_CHAINS: &[&str] = &["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"];

/// What one `-A` line has said so far.
struct Opts<'t> {
    rule: Rule,
    /// A rule of the nat table.
    nat: bool,
    target: bool,
    matches: Matches,
    /// Target options given so far (each at most once, as iptables).
    target_opts: Vec<&'static str>,
    /// The table the rule is in.
    table: &'t str,
    /// The `-j` target's name, once given.
    target_name: &'t str,
}

/// The rule of an `-A`, `-I` or `-D` line of table `table` (`w` starts
/// at its chain); `None` for a rule without a target, which in iptables
/// only counts the packets it matches and changes no verdict: unifw leaves
/// it out, with a note.
pub(super) fn table_rule(
    ctx: &mut Ctx,
    file: u16,
    line: &Line,
    table: &str,
    w: &[Word],
    offset: usize,
) -> Result<Option<Rule>, Diagnostic> {
    if !matches!(table, "filter" | "nat" | "raw" | "mangle") {
        ctx.count_unsupported(format!("*{table} table"));
        return Err(line.diag(
            offset,
            format!("table `{table}` is not supported (unifw implements the filter, nat, raw and mangle tables)"),
        ));
    }
    let chain = match w.first() {
        Some(c) => iptables_target::rule_chain(ctx, file, table, c.text).map_err(|e| {
            if table == "nat" && matches!(c.text, "INPUT" | "OUTPUT") {
                ctx.count_unsupported(format!("nat chain {}", c.text));
            }
            line.diag(c.at, e)
        })?,
        None => return Err(line.diag(offset, "`-A` needs a chain".into())),
    };
    let rule = Rule { chain, ..Rule::any(Chain::Input, Action::Accept) };
    let nat = table == "nat";
    let mut o =
        Opts { rule, nat, target: false, matches: Matches::default(), target_opts: Vec::new(), table, target_name: "" };
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
        o.matches.second = w.get(i + 2).map(|w| (w.at, String::from(w.text)));
        o.matches.quoted = arg.is_some_and(|a| line.src.get(a.at) == Some(&b'"'));
        let used = option(ctx, &mut o, line, opt, arg, negated)?;
        i += 1 + used;
    }
    o.matches.chain = format!("{table} {}", w.first().map_or("", |c| c.text));
    let done = iptables_match::finish(o.matches, &mut o.rule, &mut ctx.recent, &mut ctx.hashlimit);
    if let Some(feature) = ctx.recent.unsupported.take() {
        ctx.count_unsupported(feature);
    }
    if let Some(feature) = ctx.hashlimit.unsupported.take() {
        ctx.count_unsupported(feature);
    }
    ctx.hashlimit.remember(file, line.no);
    if let Some((at, warning)) = ctx.hashlimit.warning.take() {
        ctx.set.warnings.push(line.diag(at, warning));
    }
    done.map_err(|(at, e)| line.diag(at, e))?;
    check(&o.rule, line, offset)?;
    iptables_target::check_target(&mut o.rule, o.target_name, w).map_err(|e| line.diag(offset, e))?;
    iptables_nat::finish(&ctx.set, &o.rule).map_err(|e| line.diag(offset, e))?;
    if !o.target && (o.rule.residual.recent.is_some() || o.rule.residual.hashlimit.is_some()) {
        // No `-j`: nothing decided, but the recent or hashlimit table
        // changes as in Linux.
        o.rule.jump = Some(super::ast::Jump::Continue);
        o.target = true;
    }
    if !o.target {
        const NOTE: &str = "note: a rule without `-j` only counts packets in iptables and decides nothing; unifw leaves it (and any later one) out";
        if !ctx.set.warnings.iter().any(|d| d.message == NOTE) {
            ctx.set.warnings.push(line.diag(offset, NOTE.into()));
        }
        return Ok(None);
    }
    Ok(Some(o.rule))
}

/// Applies one option; returns how many argument words it used.
fn option<'t>(
    ctx: &mut Ctx,
    o: &mut Opts<'t>,
    line: &Line,
    opt: &Word<'t>,
    arg: Option<&Word<'t>>,
    negated: bool,
) -> Result<usize, Diagnostic> {
    // `--to` before a NAT target is `-m string`'s when one is loaded.
    let string_to =
        opt.text == "--to" && o.matches.has_string() && !matches!(o.rule.jump, Some(super::ast::Jump::Nat(_)));
    if iptables_nat::is_target_option(opt.text) && !string_to {
        if negated {
            return Err(line.diag(opt.at, format!("`!` is not allowed before `{}`", opt.text)));
        }
        return iptables_nat::option(ctx, &o.rule, opt.text, arg.map(|a| a.text)).map_err(|e| line.diag(opt.at, e));
    }
    // Options after `-j CT` or `-j TCPMSS` are the target's.
    if opt.text != "--reject-with" && !matches!(o.target_name, "CT" | "TCPMSS" | "CONNMARK") {
        let at = |at: usize, msg: String| line.diag(at, msg);
        let r = iptables_match::option(ctx, &mut o.matches, &mut o.rule, (opt, arg, negated), &at);
        if let Some(used) = r.map_err(|(at, e)| line.diag(at, e))? {
            return Ok(used);
        }
    }
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
        "-j" | "--jump" | "-g" | "--goto" => {
            no_neg(opt.text)?;
            let a = need()?;
            let goto = opt.text.starts_with("-g") || opt.text == "--goto";
            if o.nat {
                iptables_nat::target(ctx, r, a.text, goto).map_err(|e| bad(a, e))?;
                o.target = true;
                return Ok(1);
            }
            if matches!(a.text, "DNAT" | "SNAT" | "MASQUERADE" | "REDIRECT") {
                return Err(bad(a, format!("target `{}` is valid only in the nat table (`*nat`)", a.text)));
            }
            if let Err(e) = iptables_target::target(ctx, r, o.table, a.text, goto) {
                if e.starts_with("target `") {
                    ctx.count_unsupported(format!("-j {}", a.text));
                }
                return Err(bad(a, e));
            }
            o.target = true;
            o.target_name = a.text;
        }
        t if matches!(o.target_name, "CT" | "TCPMSS" | "CONNMARK") => {
            no_neg(t)?;
            return iptables_target::target_option(ctx, r, o.target_name, opt, arg).map_err(|(at, e)| line.diag(at, e));
        }
        "--reject-with" => {
            let a = need()?;
            match r.action {
                Action::Reject(_) if o.target => {
                    r.action = Action::Reject(names::reject_with_iptables(a.text).map_err(|e| bad(a, e))?)
                }
                _ => return Err(line.diag(opt.at, "`--reject-with` needs `-j REJECT` first".into())),
            }
        }
        text if iptables_target::log_option(text).is_some() => {
            let Some((kind, takes_arg)) = iptables_target::log_option(text) else { return Ok(1) };
            if iptables_target::log_kind(r) != Some(kind) || !o.target {
                return Err(line.diag(
                    opt.at,
                    format!("unknown option `{text}`: it belongs to the {kind} target, which `-j {kind}` must load before it (as iptables requires)"),
                ));
            }
            no_neg(text)?;
            if o.target_opts.contains(&text) {
                return Err(line.diag(opt.at, format!("`{text}` is given twice (iptables refuses it too)")));
            }
            let a = if takes_arg { Some(need()?) } else { None };
            iptables_target::apply_log_option(r, text, a.map(|a| a.text)).map_err(|e| bad(a.unwrap_or(opt), e))?;
            if let Some(known) = iptables_target::LOG_OPTIONS.iter().find(|(n, _, _)| *n == text) {
                o.target_opts.push(known.0);
            }
            return Ok(usize::from(takes_arg));
        }
        t if !t.starts_with('-') => {
            return Err(line.diag(opt.at, format!("bad argument `{t}` (iptables refuses it)")));
        }
        _ => {
            ctx.count_unsupported(String::from(opt.text));
            return Err(line.diag(opt.at, format!("option `{}` is not supported by unifw", opt.text)));
        }
    }
    Ok(1)
}

fn check(r: &Rule, line: &Line, offset: usize) -> Result<(), Diagnostic> {
    if let RuleChain::Builtin(c) = r.chain {
        let (no_in, no_out) = match c.name() {
            "OUTPUT" | "POSTROUTING" => (true, false),
            "INPUT" | "PREROUTING" => (false, true),
            _ => (false, false),
        };
        if (no_in && r.in_if.is_some()) || (no_out && r.out_if.is_some()) {
            let flag = if no_in { "-i" } else { "-o" };
            return Err(line.diag(offset, format!("iptables: Can't use {flag} with {}", c.name())));
        }
    }
    if r.action == Action::Reject(RejectWith::TcpReset) && r.proto != ProtoMatch::OneOf(alloc::vec![proto::TCP]) {
        return Err(
            line.diag(offset, "`--reject-with tcp-reset` needs `-p tcp` (the kernel refuses it otherwise)".into())
        );
    }
    Ok(())
}
