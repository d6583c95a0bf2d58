//! iptables-restore's commands besides `-A` and `-N`: `-I CHAIN [N] RULE`,
//! `-D CHAIN N` and `-D CHAIN RULE`, `-F [CHAIN]`, `-X [CHAIN]`, `-P CHAIN
//! POLICY` and `-Z [CHAIN [N]]`. Each acts on the chains as they stand at
//! its line (rules read before it, an including native file's too), with
//! iptables' meaning, and what iptables refuses is refused with its reason.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::ast::{Jump, Rule, RuleChain};
use super::diag::Diagnostic;
use super::iptables::{self, Line, Word, BUILTIN_CHAINS};
use super::iptables_target;
use super::source::Ctx;

/// Whether `word` is one of the commands this file reads.
pub fn is_command(word: &str) -> bool {
    matches!(
        word,
        "-I" | "--insert"
            | "-D"
            | "--delete"
            | "-F"
            | "--flush"
            | "-X"
            | "--delete-chain"
            | "-P"
            | "--policy"
            | "-Z"
            | "--zero"
    )
}

/// Carries out the command line `w` (its first word is the command) of table `table`.
pub fn command(
    ctx: &mut Ctx,
    file: u16,
    line: &Line,
    table: &str,
    w: &[Word],
    offset: usize,
) -> Result<(), Diagnostic> {
    let Some(cmd) = w.first() else { return Ok(()) };
    let c = Cmd { file, line, table, offset };
    match cmd.text {
        "-I" | "--insert" => c.insert(ctx, w),
        "-D" | "--delete" => c.delete(ctx, w),
        "-F" | "--flush" => c.flush(ctx, w),
        "-X" | "--delete-chain" => c.delete_chain(ctx, w),
        "-P" | "--policy" => c.policy(ctx, w),
        _ => c.zero(ctx, w),
    }
}

/// A chain named by a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Named {
    /// A chain whose rules unifw keeps.
    Kept(RuleChain),
    /// A built-in chain of a table unifw reads no rules of (always empty here).
    Empty,
}

/// One command line.
struct Cmd<'l, 'a> {
    file: u16,
    line: &'l Line<'a>,
    table: &'l str,
    offset: usize,
}

impl Cmd<'_, '_> {
    fn err(&self, at: usize, msg: String) -> Diagnostic {
        self.line.diag(at, msg)
    }

    /// The chain `name` of this table; an error when the table has none.
    fn chain(&self, ctx: &Ctx, name: &Word) -> Result<Named, Diagnostic> {
        if matches!(self.table, "filter" | "raw" | "mangle") {
            return match iptables_target::rule_chain(ctx, self.file, self.table, name.text) {
                Ok(c) => Ok(Named::Kept(c)),
                Err(_) if builtin_chains(self.table).contains(&name.text) => Ok(Named::Empty),
                Err(_) => Err(self.err(name.at, no_chain(name.text, self.table))),
            };
        }
        // Another table's rules are refused and its user chains not kept:
        // a built-in chain of another table is the only name known missing.
        if BUILTIN_CHAINS.contains(&name.text) && !builtin_chains(self.table).contains(&name.text) {
            return Err(self.err(name.at, no_chain(name.text, self.table)));
        }
        Ok(Named::Empty)
    }

    /// `-I CHAIN [N] RULE`: the rule becomes rule N of CHAIN (default 1).
    fn insert(&self, ctx: &mut Ctx, w: &[Word]) -> Result<(), Diagnostic> {
        let chain = w.get(1).ok_or_else(|| self.err(self.offset, "`-I` needs a chain".into()))?;
        let (number, spec_from) = match w.get(2) {
            Some(n) if is_number_word(n) => (rule_number(self, n)?, 3),
            _ => (1, 2),
        };
        let mut spec = alloc::vec![*chain];
        spec.extend_from_slice(w.get(spec_from..).unwrap_or(&[]));
        let Some(rule) = iptables::table_rule(ctx, self.file, self.line, self.table, &spec, self.offset)? else {
            return Ok(());
        };
        let positions = rules_of(ctx, rule.chain);
        if number > positions.len() + 1 {
            let n = positions.len();
            return Err(self.err(
                w.get(2).map_or(chain.at, |x| x.at),
                format!("`-I {} {number}`: the chain has {n} rules (iptables: Index of insertion too big)", chain.text),
            ));
        }
        remember_signature(ctx, &rule, &spec);
        match positions.get(number - 1) {
            Some(&at) => ctx.set.rules.insert(at, rule),
            None => ctx.set.rules.push(rule),
        }
        Ok(())
    }

    /// `-D CHAIN N` (rule N) or `-D CHAIN RULE` (the first rule of CHAIN
    /// that is RULE: the same matches, comments and target).
    fn delete(&self, ctx: &mut Ctx, w: &[Word]) -> Result<(), Diagnostic> {
        let chain = w.get(1).ok_or_else(|| self.err(self.offset, "`-D` needs a chain".into()))?;
        if let Some(n) = w.get(2).filter(|n| is_number_word(n)) {
            let number = rule_number(self, n)?;
            if let Some(extra) = w.get(3) {
                return Err(self.err(extra.at, format!("option `{}` is not allowed with `-D CHAIN N`", extra.text)));
            }
            let Named::Kept(c) = self.chain(ctx, chain)? else {
                return Err(self.err(n.at, too_big(chain.text, number, 0)));
            };
            let positions = rules_of(ctx, c);
            let at = positions
                .get(number - 1)
                .ok_or_else(|| self.err(n.at, too_big(chain.text, number, positions.len())))?;
            ctx.set.rules.remove(*at);
            return Ok(());
        }
        let spec = w.get(1..).unwrap_or(&[]);
        let rule = iptables::table_rule(ctx, self.file, self.line, self.table, spec, self.offset)?;
        let signature = signature_of(spec);
        let found = rule.as_ref().and_then(|rule| {
            rules_of(ctx, rule.chain).into_iter().find(|&at| {
                ctx.set.rules.get(at).is_some_and(|r| same_rule(r, rule) && stored_signature(ctx, r) == &signature)
            })
        });
        match found {
            Some(at) => {
                ctx.set.rules.remove(at);
                Ok(())
            }
            None => Err(self.err(
                self.offset,
                format!(
                    "no such rule in chain `{}` to delete (iptables: Bad rule (does a matching rule exist in that \
                     chain?)){}",
                    chain.text,
                    if rule.is_none() { "; unifw keeps no rule without a target" } else { "" }
                ),
            )),
        }
    }

    /// `-F [CHAIN]`: removes the rules of CHAIN, or of every chain of the table.
    fn flush(&self, ctx: &mut Ctx, w: &[Word]) -> Result<(), Diagnostic> {
        self.no_more(w, 2)?;
        let chain = match w.get(1) {
            Some(name) => match self.chain(ctx, name)? {
                Named::Kept(c) => Some(c),
                Named::Empty => return Ok(()),
            },
            None => None,
        };

        let keep: Vec<bool> = ctx
            .set
            .rules
            .iter()
            .map(|r| match chain {
                Some(c) => r.chain != c,
                None => !in_table(ctx, r.chain, self.table, self.file),
            })
            .collect();
        let mut keep = keep.into_iter();
        ctx.set.rules.retain(|_| keep.next().unwrap_or(true));
        Ok(())
    }

    /// `-X [CHAIN]`: deletes user chain CHAIN, or every user chain of the
    /// table (of this file); each must be empty and no rule's target.
    fn delete_chain(&self, ctx: &mut Ctx, w: &[Word]) -> Result<(), Diagnostic> {
        self.no_more(w, 2)?;
        let Some(name) = w.get(1) else {
            if self.table != "filter" {
                return Ok(());
            }
            let mine: Vec<u16> = (0..ctx.set.chains.len() as u16)
                .filter(|&n| ctx.set.chains.get(usize::from(n)).is_some_and(|c| c.file == self.file))
                .collect();
            for &n in &mine {
                self.deletable(ctx, n, self.offset)?;
            }
            for &n in mine.iter().rev() {
                remove_chain(ctx, n);
            }
            return Ok(());
        };
        match self.chain(ctx, name)? {
            Named::Kept(RuleChain::User(n)) => {
                self.deletable(ctx, n, name.at)?;
                remove_chain(ctx, n);
                Ok(())
            }
            _ => Err(self.err(name.at, format!("cannot delete built-in chain `{}` (iptables refuses it)", name.text))),
        }
    }

    /// Whether user chain `n` may be deleted: no rules, no rule jumping to it.
    fn deletable(&self, ctx: &Ctx, n: u16, at: usize) -> Result<(), Diagnostic> {
        let name = ctx.set.chains.get(usize::from(n)).map_or("", |c| c.name.as_str());
        let rules = rules_of(ctx, RuleChain::User(n)).len();
        if rules > 0 {
            return Err(self.err(
                at,
                format!(
                    "chain `{name}` has {rules} rules: flush it first (`-F {name}`; iptables: Directory not empty)"
                ),
            ));
        }
        let links =
            ctx.set.rules.iter().filter(|r| matches!(r.jump, Some(Jump::Call(t) | Jump::Goto(t)) if t == n)).count();
        if links > 0 {
            return Err(
                self.err(at, format!("chain `{name}` is the target of {links} rules (iptables: Too many links)"))
            );
        }
        Ok(())
    }

    /// `-P CHAIN POLICY`: a built-in chain's policy, as `:CHAIN POLICY` sets it.
    fn policy(&self, ctx: &mut Ctx, w: &[Word]) -> Result<(), Diagnostic> {
        let (Some(chain), Some(policy)) = (w.get(1), w.get(2)) else {
            return Err(self.err(self.offset, "`-P` requires a chain and a policy".into()));
        };
        self.no_more(w, 3)?;
        if !builtin_chains(self.table).contains(&chain.text) {
            return Err(self.err(
                chain.at,
                format!(
                    "`-P` needs a built-in chain of table `{}`, not `{}` (iptables: Bad built-in chain name)",
                    self.table, chain.text
                ),
            ));
        }
        iptables::set_policy(ctx, self.line, self.table, chain.text, policy)
    }

    /// `-Z [CHAIN [N]]`: zeroes counters, which a compiled image starts
    /// with anyway: only checked.
    fn zero(&self, ctx: &mut Ctx, w: &[Word]) -> Result<(), Diagnostic> {
        self.no_more(w, 3)?;
        let Some(name) = w.get(1) else { return Ok(()) };
        let named = self.chain(ctx, name)?;
        let Some(n) = w.get(2) else { return Ok(()) };
        let number = rule_number(self, n)?;
        let count = match named {
            Named::Kept(c) => rules_of(ctx, c).len(),
            Named::Empty => 0,
        };
        if number > count {
            return Err(self.err(n.at, too_big(name.text, number, count)));
        }
        Ok(())
    }

    /// An error at the first word past `count` words.
    fn no_more(&self, w: &[Word], count: usize) -> Result<(), Diagnostic> {
        match w.get(count) {
            Some(extra) => Err(self.err(extra.at, format!("bad argument `{}` (iptables refuses it)", extra.text))),
            None => Ok(()),
        }
    }
}

/// The built-in chains of `table` (iptables' tables; none for another).
fn builtin_chains(table: &str) -> &'static [&'static str] {
    match table {
        "filter" | "security" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        "mangle" => BUILTIN_CHAINS,
        _ => &[],
    }
}

/// Whether a rule of `chain` is in the filter table as file `file` sees
/// it: the built-in chains (every file's rules) and the file's user chains.
fn in_table(ctx: &Ctx, chain: RuleChain, table: &str, file: u16) -> bool {
    match chain {
        RuleChain::Builtin(c) => c.table().name() == table,
        RuleChain::User(n) => ctx.set.chains.get(usize::from(n)).is_some_and(|c| c.file == file),
    }
}

/// Whether `w` is a rule number where one may stand: iptables takes any
/// word not starting with `-` or `!` there.
fn is_number_word(w: &Word) -> bool {
    !w.text.starts_with('-') && !w.text.starts_with('!')
}

/// A rule number, 1 or more.
fn rule_number(c: &Cmd, w: &Word) -> Result<usize, Diagnostic> {
    match w.text.parse::<u32>() {
        Ok(n) if n >= 1 && n <= i32::MAX as u32 => Ok(n as usize),
        _ => Err(c.err(w.at, format!("invalid rule number `{}` (1 or more)", w.text))),
    }
}

fn too_big(chain: &str, number: usize, count: usize) -> String {
    format!("chain `{chain}` has {count} rules, no rule {number} (iptables: Index of deletion too big)")
}

fn no_chain(name: &str, table: &str) -> String {
    format!("no chain `{name}` in table `{table}` (iptables: No chain/target/match by that name)")
}

/// The places in `ctx.set.rules` of the rules of `chain`, in order.
fn rules_of(ctx: &Ctx, chain: RuleChain) -> Vec<usize> {
    ctx.set.rules.iter().enumerate().filter(|(_, r)| r.chain == chain).map(|(i, _)| i).collect()
}

/// Whether two rules are the same rule (matches, chain and target), wherever they stand.
fn same_rule(a: &Rule, b: &Rule) -> bool {
    let mut b = b.clone();
    (b.file, b.line, b.column) = (a.file, a.line, a.column);
    *a == b
}

/// What iptables compares of a rule beyond its meaning: the `--comment`
/// texts, and which of the `-m` matches that unifw reads alike were named
/// (`-m state` and `-m conntrack` are different rules to iptables; the
/// protocol matches are the same whether loaded by `-p` or `-m`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Signature {
    comments: Vec<String>,
    modules: Vec<String>,
}

/// The [`Signature`] of a rule's words.
fn signature_of(w: &[Word]) -> Signature {
    let mut out = Signature::default();
    let mut words = w.iter();
    while let Some(word) = words.next() {
        match word.text {
            "--comment" => out.comments.extend(words.next().map(|x| String::from(x.text))),
            "-m" | "--match" => {
                let module = words.next().map_or("", |x| x.text);
                if !matches!(module, "tcp" | "udp" | "icmp" | "comment") {
                    out.modules.push(String::from(module));
                }
            }
            _ => {}
        }
    }
    out.modules.sort();
    out
}

/// Keeps what a later `-D` compares of a rule that `-A` or `-I` kept.
pub fn remember_signature(ctx: &mut Ctx, rule: &Rule, w: &[Word]) {
    let signature = signature_of(w);
    if signature != Signature::default() {
        ctx.rule_signatures.insert((rule.file, rule.line), signature);
    }
}

fn stored_signature<'c>(ctx: &'c Ctx, r: &Rule) -> &'c Signature {
    const NONE: &Signature = &Signature { comments: Vec::new(), modules: Vec::new() };
    ctx.rule_signatures.get(&(r.file, r.line)).unwrap_or(NONE)
}

/// Removes user chain `n`, renumbering the later chains in every rule.
fn remove_chain(ctx: &mut Ctx, n: u16) {
    if usize::from(n) >= ctx.set.chains.len() {
        return;
    }
    ctx.set.chains.remove(usize::from(n));
    let shift = |c: u16| if c > n { c - 1 } else { c };
    for r in &mut ctx.set.rules {
        if let RuleChain::User(c) = r.chain {
            r.chain = RuleChain::User(shift(c));
        }
        r.jump = match r.jump {
            Some(Jump::Call(c)) => Some(Jump::Call(shift(c))),
            Some(Jump::Goto(c)) => Some(Jump::Goto(shift(c))),
            other => other,
        };
    }
}
