//! The targets of an iptables-save rule (`-j`, `-g`) and the user chains
//! they name: declarations (`:NAME -`, `-N NAME`), jumps, gotos and
//! `RETURN`. Called from the option parser in `iptables.rs`.

use alloc::format;
use alloc::string::String;

use unifw_core::flow::{proto, Action, Chain, RejectWith, Table, BUILTIN_CHAINS};
use unifw_core::image::format::MAX_CHAINS;

use super::ast::{Jump, LogRecord, ProtoMatch, Rule, RuleChain, UserChain};
use super::chains::MAX_CHAIN_NAME;
use super::iptables::Word;
use super::source::Ctx;

/// Targets iptables knows that are not chain names.
const BUILTIN_TARGETS: &[&str] = &["ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "LOG", "NFLOG"];

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

/// The table named `name` (`filter`, `nat`, `raw`, `mangle`), if unifw has it.
pub fn table_of(name: &str) -> Option<Table> {
    Some(match name {
        "filter" => Table::Filter,
        "nat" => Table::Nat,
        "raw" => Table::Raw,
        "mangle" => Table::Mangle,
        _ => return None,
    })
}

/// The chain of `-A NAME` in table `table`: one of its built-in chains or
/// (in the filter and nat tables, each with its own) a declared user chain.
pub fn rule_chain(ctx: &Ctx, file: u16, table: &str, name: &str) -> Result<RuleChain, String> {
    let t = table_of(table).ok_or_else(|| format!("table `{table}` is not supported"))?;
    if t == Table::Nat {
        return super::iptables_nat::rule_chain(ctx, file, name);
    }
    if let Some(c) = Chain::of(t, name) {
        return Ok(RuleChain::Builtin(c));
    }
    if BUILTIN_CHAIN_NAMES.contains(&name) {
        return Err(format!("table `{table}` has no chain `{name}` (iptables: No chain/target/match by that name)"));
    }
    if t != Table::Filter {
        return Err(format!(
            "user chains of table `{table}` are not supported (unifw reads the built-in chains of raw and mangle)"
        ));
    }
    find(ctx, file, name)
        .map(RuleChain::User)
        .ok_or_else(|| format!("chain `{name}` is not declared (`:{name} - [0:0]` or `-N {name}` before its rules)"))
}

/// iptables' built-in chain names, of every table.
const BUILTIN_CHAIN_NAMES: &[&str] = &["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"];

/// Targets of the mangle table (and others) that change marks or header
/// fields nothing in unifw reads yet: refused by name.
const MARK_TARGETS: &[&str] = &[
    "MARK",
    "TTL",
    "DSCP",
    "TOS",
    "CLASSIFY",
    "ECN",
    "CHECKSUM",
    "SECMARK",
    "CONNSECMARK",
    "TPROXY",
    "HMARK",
    "TEE",
    "IDLETIMER",
    "LED",
    "SET",
];

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
pub fn target(ctx: &Ctx, r: &mut Rule, table: &str, name: &str, goto: bool) -> Result<(), String> {
    if goto {
        let n = find(ctx, r.file, name)
            .ok_or_else(|| format!("`-g` needs a user chain, and no chain `{name}` is declared before this line"))?;
        r.jump = Some(Jump::Goto(n));
        return Ok(());
    }
    match name {
        "ACCEPT" => r.action = Action::Accept,
        "DROP" if table == "mangle" => {
            return Err("target `DROP` in the `mangle` table is not supported by unifw (drop in the filter or raw table)".into())
        }
        "DROP" => r.action = Action::Drop,
        "REJECT" if table != "filter" => {
            return Err(format!(
                "REJECT is valid only in the filter table, not `{table}` (the kernel refuses it: REJECT target: only valid in filter table)"
            ))
        }
        "REJECT" => r.action = Action::Reject(RejectWith::PortUnreachable),
        "NOTRACK" | "CT" if table != "raw" => {
            return Err(format!("{name} is valid only in the raw table, not `{table}` (the kernel refuses it)"))
        }
        // `-j CT` needs `--notrack` (checked when the line ends).
        "NOTRACK" | "CT" => r.jump = Some(Jump::NoTrack),
        "TCPMSS" if table != "mangle" => {
            return Err(format!(
                "target `TCPMSS` in the `{table}` table is not supported by unifw (iptables allows it): \
                 put it in *mangle FORWARD or POSTROUTING"
            ))
        }
        // The MSS comes with the target's option (checked when the line ends).
        "TCPMSS" => r.jump = Some(Jump::TcpMss(0)),
        // Copying one mark to the other: every mark is 0 in unifw (nothing
        // sets one), so `--save-mark`/`--restore-mark` change nothing; the
        // rule is kept as non-terminating, as CONNMARK is in Linux.
        "CONNMARK" => r.jump = Some(Jump::Continue),
        t if MARK_TARGETS.contains(&t) => {
            return Err(format!(
                "target `{t}` is not supported by unifw: it sets marks or header fields that nothing in unifw reads yet \
                 (of the mangle targets unifw implements TCPMSS)"
            ))
        }
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

/// An option of the `CT` or `TCPMSS` target (`target`); the argument
/// words it used, or the error and where. Of TCPMSS's two options the
/// later one wins, as in iptables.
pub fn target_option(
    ctx: &mut Ctx,
    r: &mut Rule,
    target: &str,
    opt: &Word,
    arg: Option<&Word>,
) -> Result<usize, (usize, String)> {
    match (target, opt.text) {
        ("CT", "--notrack") => Ok(0),
        ("CONNMARK", "--save-mark" | "--restore-mark") => Ok(0),
        ("CONNMARK", "--nfmask" | "--ctmask" | "--mask") => {
            let a = arg.ok_or((opt.at, format!("`{}` needs a value", opt.text)))?;
            let t = a.text;
            if super::iptables_folded::strtoul(t, u64::from(u32::MAX)).is_none() {
                return Err((a.at, format!("CONNMARK: bad value `{t}` for `{}` (a 32-bit mask)", opt.text)));
            }
            Ok(1)
        }
        ("CONNMARK", o) => {
            ctx.count_unsupported(format!("-j CONNMARK {o}"));
            Err((
                opt.at,
                format!(
                    "option `{o}` of `-j CONNMARK` is not supported by unifw (only `--save-mark` and \
                     `--restore-mark`, which change nothing while every mark is 0)"
                ),
            ))
        }
        ("TCPMSS", "--clamp-mss-to-pmtu") if r.jump == Some(Jump::TcpMss(TCPMSS_CLAMP_GIVEN)) => {
            Err((opt.at, "TCPMSS: option `--clamp-mss-to-pmtu` can only be used once (iptables)".into()))
        }
        ("TCPMSS", "--set-mss") if !matches!(r.jump, Some(Jump::TcpMss(0 | TCPMSS_CLAMP_GIVEN))) => {
            Err((opt.at, "TCPMSS: option `--set-mss` can only be used once (iptables)".into()))
        }
        ("TCPMSS", "--clamp-mss-to-pmtu") => {
            r.jump = Some(Jump::TcpMss(TCPMSS_CLAMP_GIVEN));
            Ok(0)
        }
        ("TCPMSS", "--set-mss") => {
            let a = arg.ok_or((opt.at, "`--set-mss` needs a value".into()))?;
            match a.text.parse::<u16>() {
                Ok(0) => Err((a.at, "`--set-mss 0` is not supported by unifw (an MSS of 1 or more)".into())),
                Ok(mss) => {
                    r.jump = Some(Jump::TcpMss(mss));
                    Ok(1)
                }
                Err(_) => Err((a.at, format!("bad `--set-mss` value `{}` (0-65535)", a.text))),
            }
        }
        (_, o) => {
            ctx.count_unsupported(format!("-j {target} {o}"));
            Err((opt.at, format!("option `{o}` of `-j {target}` is not supported by unifw (CT: only `--notrack`)")))
        }
    }
}

/// `--clamp-mss-to-pmtu` while the line is read (`TcpMss(0)` is "no
/// option yet"); [`check_target`] makes it 0.
const TCPMSS_CLAMP_GIVEN: u16 = u16::MAX;

/// What the kernel checks of a CT or TCPMSS rule once its line is read:
/// `CT` needs `--notrack` here; TCPMSS needs one of its options, `-p tcp`,
/// a match of SYN (`--syn`, or `--tcp-flags` with SYN set), and
/// `--clamp-mss-to-pmtu` a FORWARD, OUTPUT or POSTROUTING chain.
pub fn check_target(r: &mut Rule, target: &str, w: &[Word]) -> Result<(), String> {
    match target {
        "CONNMARK" if !w.iter().any(|x| matches!(x.text, "--save-mark" | "--restore-mark")) => {
            Err("CONNMARK needs `--save-mark` or `--restore-mark` (iptables: CONNMARK target: No operation specified)"
                .into())
        }
        "CONNMARK" if w.iter().any(|x| x.text == "--save-mark") && w.iter().any(|x| x.text == "--restore-mark") => {
            Err("CONNMARK: `--save-mark` cannot be used together with `--restore-mark` (iptables refuses it)".into())
        }
        "CT" if !w.iter().any(|x| x.text == "--notrack") => {
            Err("`-j CT` without `--notrack` is not supported by unifw (only `CT --notrack`)".into())
        }
        "TCPMSS" => {
            let clamp = match r.jump {
                Some(Jump::TcpMss(0)) => return Err(
                    "TCPMSS needs `--set-mss` or `--clamp-mss-to-pmtu` (iptables: At least one parameter is required)"
                        .into(),
                ),
                Some(Jump::TcpMss(TCPMSS_CLAMP_GIVEN)) => true,
                _ => false,
            };
            if r.proto != ProtoMatch::OneOf(alloc::vec![proto::TCP]) {
                return Err("TCPMSS needs `-p tcp` (the kernel refuses it otherwise)".into());
            }
            if !has_syn_match(w) {
                return Err("TCPMSS needs a match of SYN: `--syn` or `--tcp-flags SYN,RST SYN` (the kernel: Only works on TCP SYN packets)".into());
            }
            let hook_ok = match r.chain {
                RuleChain::Builtin(c) => matches!(
                    c,
                    Chain::Forward
                        | Chain::Output
                        | Chain::MangleForward
                        | Chain::MangleOutput
                        | Chain::ManglePostrouting
                ),
                RuleChain::User(_) => true,
            };
            if clamp && !hook_ok {
                return Err(
                    "`--clamp-mss-to-pmtu` works only in FORWARD, OUTPUT and POSTROUTING (the kernel refuses it)"
                        .into(),
                );
            }
            if matches!(r.chain, RuleChain::Builtin(Chain::MangleInput | Chain::MangleOutput)) {
                return Err("TCPMSS in mangle INPUT or OUTPUT is not supported by unifw (it clamps forwarded SYNs: \
                            PREROUTING, FORWARD, POSTROUTING)"
                    .into());
            }
            if clamp {
                r.jump = Some(Jump::TcpMss(0));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether the words hold a tcp match of SYN as the kernel's TCPMSS check
/// wants it: `--syn`, or `--tcp-flags MASK COMP` with SYN in COMP, neither negated.
fn has_syn_match(w: &[Word]) -> bool {
    w.iter().enumerate().any(|(i, x)| {
        let negated = i > 0 && w.get(i - 1).is_some_and(|p| p.text == "!");
        let syn = match x.text {
            "--syn" => true,
            "--tcp-flags" => w.get(i + 2).is_some_and(|comp| {
                comp.text.split(',').any(|f| f.eq_ignore_ascii_case("SYN") || f.eq_ignore_ascii_case("ALL"))
            }),
            _ => false,
        };
        syn && !negated
    })
}
