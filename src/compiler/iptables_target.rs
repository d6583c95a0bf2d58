//! The targets of an iptables-save rule (`-j`, `-g`) and the user chains
//! they name: declarations (`:NAME -`, `-N NAME`), jumps, gotos and
//! `RETURN`. Called from the option parser in `iptables.rs`.

use alloc::format;
use alloc::string::String;

use unifw_core::flow::{Action, RejectWith, BUILTIN_CHAINS};
use unifw_core::image::format::MAX_CHAINS;

use super::ast::{Jump, LogRecord, Rule, RuleChain, UserChain};
use super::chains::MAX_CHAIN_NAME;
use super::source::Ctx;

/// Targets iptables knows that are not chain names.
const BUILTIN_TARGETS: &[&str] = &["ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "LOG", "NFLOG"];

/// User chain `name` of file `file`, if declared.
pub fn find(ctx: &Ctx, file: u16, name: &str) -> Option<u16> {
    ctx.set.chains.iter().position(|c| c.file == file && c.name == name).map(|n| n as u16)
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

/// Declares user chain `name` (`:NAME -` or `-N NAME`) of file `file`.
pub fn declare(ctx: &mut Ctx, file: u16, line: u32, name: &str) -> Result<(), String> {
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
    if find(ctx, file, name).is_some() {
        return Err(format!("chain `{name}` is declared twice (iptables: chain already exists)"));
    }
    if ctx.set.chains.len() + BUILTIN_CHAINS >= MAX_CHAINS {
        return Err(format!("more than {} user chains (the most an image may have)", MAX_CHAINS - BUILTIN_CHAINS));
    }
    ctx.set.chains.push(UserChain { name: name.into(), file, line });
    Ok(())
}

/// iptables' default `--log-level` (warning).
pub const LOG_DEFAULT_LEVEL: u8 = 4;
/// The level NFLOG lines are written at (NFLOG has none; [`log_kind`] tells
/// the two apart by it, as LOG levels are 0-7).
pub const NFLOG_LEVEL: u8 = 8;

/// The options of the LOG and NFLOG targets: name, target, takes an argument.
pub const LOG_OPTIONS: &[(&str, &str, bool)] = &[
    ("--log-prefix", "LOG", true),
    ("--log-level", "LOG", true),
    ("--log-tcp-sequence", "LOG", false),
    ("--log-tcp-options", "LOG", false),
    ("--log-ip-options", "LOG", false),
    ("--log-uid", "LOG", false),
    ("--log-macdecode", "LOG", false),
    ("--nflog-group", "NFLOG", true),
    ("--nflog-prefix", "NFLOG", true),
    ("--nflog-range", "NFLOG", true),
    ("--nflog-size", "NFLOG", true),
    ("--nflog-threshold", "NFLOG", true),
];

/// The target (`LOG` or `NFLOG`) of a log option, and whether it takes an argument.
pub fn log_option(o: &str) -> Option<(&'static str, bool)> {
    LOG_OPTIONS.iter().find(|(n, _, _)| *n == o).map(|&(_, t, a)| (t, a))
}

/// Which log target a rule has.
pub fn log_kind(r: &Rule) -> Option<&'static str> {
    r.log_target.map(|l| if l.level == NFLOG_LEVEL { "NFLOG" } else { "LOG" })
}

/// Applies a LOG/NFLOG option (`arg` for those that take one) as iptables
/// checks it. `--log-tcp-sequence`, `--log-tcp-options`, `--log-ip-options`,
/// `--log-uid`, `--log-macdecode` and NFLOG's group, range, size and
/// threshold are accepted and change nothing in the line unifw writes.
pub fn apply_log_option(r: &mut Rule, o: &str, arg: Option<&str>) -> Result<(), String> {
    let Some(record) = r.log_target.as_mut() else { return Err(format!("`{o}` needs a LOG or NFLOG target")) };
    let a = arg.unwrap_or("");
    match o {
        "--log-prefix" | "--nflog-prefix" => {
            // iptables cuts a longer prefix to what the kernel keeps: 29
            // bytes for LOG, 63 for NFLOG (unifw's record keeps 30).
            if a.is_empty() {
                return Err(format!("`{o}` needs a prefix of at least 1 character (iptables refuses an empty one)"));
            }
            let max = if o == "--log-prefix" { 29 } else { LogRecord::PREFIX };
            let keep = a.len().min(max);
            let mut cut = keep;
            while !a.is_char_boundary(cut) {
                cut -= 1;
            }
            record.prefix = [0; LogRecord::PREFIX];
            record.prefix[..cut].copy_from_slice(&a.as_bytes()[..cut]);
            record.prefix_len = cut as u8;
        }
        "--log-level" => {
            record.level = match a.to_ascii_lowercase().as_str() {
                "emerg" | "panic" => 0,
                "alert" => 1,
                "crit" => 2,
                "error" => 3,
                "warning" => 4,
                "notice" => 5,
                "info" => 6,
                "debug" => 7,
                n => match n.parse::<u8>() {
                    Ok(l) if l <= 7 => l,
                    _ => {
                        return Err(format!(
                        "log level `{a}` unknown (0-7, emerg, panic, alert, crit, error, warning, notice, info, debug)"
                    ))
                    }
                },
            }
        }
        "--nflog-group" | "--nflog-range" | "--nflog-size" => {
            let max = if o == "--nflog-group" { u64::from(u16::MAX) } else { u64::from(u32::MAX) };
            a.parse::<u64>().ok().filter(|&n| n <= max).ok_or_else(|| format!("`{o}`: bad value `{a}` (0-{max})"))?;
        }
        "--nflog-threshold" => {
            a.parse::<u16>().map_err(|_| format!("`{o}`: bad value `{a}` (0-65535)"))?;
        }
        _ => {}
    }
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
        // Non-terminating: logged, then the next rule (iptables' LOG; NFLOG
        // sends to a netlink group, which unifw writes to its console).
        "LOG" => r.log_target = Some(LogRecord { level: LOG_DEFAULT_LEVEL, ..LogRecord::default() }),
        "NFLOG" => r.log_target = Some(LogRecord { level: NFLOG_LEVEL, ..LogRecord::default() }),
        "INPUT" | "FORWARD" | "OUTPUT" | "PREROUTING" | "POSTROUTING" => {
            return Err(format!("cannot jump to built-in chain `{name}` (iptables refuses it)"))
        }
        t => match find(ctx, r.file, t) {
            Some(n) => r.jump = Some(Jump::Call(n)),
            None => {
                return Err(format!(
                    "target `{t}` is not supported by unifw, nor is it a chain declared before this line \
                     (ACCEPT, DROP, REJECT, RETURN, LOG, NFLOG or a user chain)"
                ))
            }
        },
    }
    Ok(())
}
