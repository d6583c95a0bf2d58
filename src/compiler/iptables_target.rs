//! The targets of an iptables-save rule (`-j`, `-g`) and the user chains
//! they name: declarations (`:NAME -`, `-N NAME`), jumps, gotos and
//! `RETURN`. Called from the option parser in `iptables.rs`.

use alloc::format;
use alloc::string::String;

use unifw_core::flow::{Action, RejectWith, BUILTIN_CHAINS};
use unifw_core::image::format::MAX_CHAINS;

use super::ast::{Jump, Rule, RuleChain, UserChain};
use super::chains::MAX_CHAIN_NAME;
use super::source::Ctx;

/// Targets iptables knows that are not chain names.
const BUILTIN_TARGETS: &[&str] = &["ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE"];

/// User chain `name` of file `file`, if declared (in the filter table).
pub fn find(ctx: &Ctx, file: u16, name: &str) -> Option<u16> {
    find_in(ctx, file, name, false)
}

/// User chain `name` of file `file` in the nat table (`nat`) or the
/// filter table: each table has its own chains, as in iptables.
pub fn find_in(ctx: &Ctx, file: u16, name: &str, nat: bool) -> Option<u16> {
    let in_nat = |n: usize| ctx.set.nat_chains.contains(&(n as u16));
    let found =
        ctx.set.chains.iter().enumerate().position(|(n, c)| c.file == file && c.name == name && in_nat(n) == nat);
    found.map(|n| n as u16)
}

/// The chain of `-A NAME`: a built-in chain unifw filters or a declared user chain.
pub fn rule_chain(ctx: &Ctx, file: u16, name: &str) -> Result<RuleChain, String> {
    use unifw_core::flow::Chain;
    match name {
        "INPUT" => Ok(RuleChain::Builtin(Chain::Input)),
        "FORWARD" => Ok(RuleChain::Builtin(Chain::Forward)),
        "OUTPUT" | "PREROUTING" | "POSTROUTING" => {
            Err(format!("chain `{name}` is not supported (unifw filters INPUT, FORWARD and user chains)"))
        }
        n => find(ctx, file, n)
            .map(RuleChain::User)
            .ok_or_else(|| format!("chain `{n}` is not declared (`:{n} - [0:0]` or `-N {n}` before its rules)")),
    }
}

/// Declares user chain `name` (`:NAME -` or `-N NAME`) of file `file`, in
/// the nat table when `nat`, else the filter table (each has its own chains).
pub fn declare_in(ctx: &mut Ctx, file: u16, line: u32, name: &str, nat: bool) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_CHAIN_NAME {
        return Err(format!("chain name `{name}` must have 1 to {MAX_CHAIN_NAME} characters (as iptables)"));
    }
    if name.starts_with('-') || name.starts_with('!') || name.chars().any(|c| c.is_whitespace()) {
        return Err(format!("invalid chain name `{name}` (iptables refuses it)"));
    }
    if BUILTIN_TARGETS.contains(&name) || matches!(name, "INPUT" | "FORWARD" | "OUTPUT" | "PREROUTING" | "POSTROUTING")
    {
        return Err(format!("chain name `{name}` is a built-in chain or target (iptables refuses it)"));
    }
    if find_in(ctx, file, name, nat).is_some() {
        return Err(format!("chain `{name}` is declared twice (iptables: chain already exists)"));
    }
    if ctx.set.chains.len() + BUILTIN_CHAINS >= MAX_CHAINS {
        return Err(format!("more than {} user chains (the most an image may have)", MAX_CHAINS - BUILTIN_CHAINS));
    }
    if nat {
        ctx.set.nat_chains.push(ctx.set.chains.len() as u16);
    }
    ctx.set.chains.push(UserChain { name: name.into(), file, line });
    Ok(())
}

/// Applies `-j TARGET` (`goto` false) or `-g CHAIN` (`goto` true) to `r`.
pub fn target(ctx: &Ctx, r: &mut Rule, name: &str, goto: bool) -> Result<(), String> {
    if goto {
        let n = find(ctx, r.file, name)
            .ok_or_else(|| format!("`-g` needs a user chain, and no chain `{name}` is declared before this line"))?;
        r.jump = Some(Jump::Goto(n));
        return Ok(());
    }
    match name {
        "ACCEPT" => r.action = Action::Accept,
        "DROP" => r.action = Action::Drop,
        "REJECT" => r.action = Action::Reject(RejectWith::PortUnreachable),
        "RETURN" => r.jump = Some(Jump::Return),
        "INPUT" | "FORWARD" | "OUTPUT" | "PREROUTING" | "POSTROUTING" => {
            return Err(format!("cannot jump to built-in chain `{name}` (iptables refuses it)"))
        }
        t => match find(ctx, r.file, t) {
            Some(n) => r.jump = Some(Jump::Call(n)),
            None => {
                return Err(format!(
                    "target `{t}` is not supported by unifw, nor is it a chain declared before this line \
                     (ACCEPT, DROP, REJECT, RETURN or a user chain)"
                ))
            }
        },
    }
    Ok(())
}
