//! The nat table of an iptables-save file: its chains (`PREROUTING`,
//! `POSTROUTING`, user chains; `INPUT` and `OUTPUT` refused with the
//! reason), its targets (`DNAT`, `SNAT`, `MASQUERADE`; `REDIRECT` refused
//! with the reason) and their options, read as iptables reads them.
//! Matches are the filter table's (`iptables_match.rs`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use unifw_core::flow::{proto, Action, Chain};
use unifw_core::image::format::{NatKind, NatRecord};

use super::ast::{user_chain_number, Jump, ProtoMatch, Rule, RuleChain, Ruleset};
use super::iptables_target::find_in;
use super::names;
use super::source::Ctx;

/// Why the nat table's INPUT and OUTPUT chains take no rules.
const LOCAL_CHAINS: &str = "the firewall's own connections are not translated (its stack only serves \
                            /metrics and DHCP); unifw translates forwarded traffic, in PREROUTING and POSTROUTING";

/// The chain of `-A NAME` in the nat table.
pub fn rule_chain(ctx: &Ctx, file: u16, name: &str) -> Result<RuleChain, String> {
    match name {
        "PREROUTING" => Ok(RuleChain::Builtin(Chain::NatPrerouting)),
        "POSTROUTING" => Ok(RuleChain::Builtin(Chain::NatPostrouting)),
        "INPUT" | "OUTPUT" => Err(format!("rules in the nat table's {name} chain are not supported: {LOCAL_CHAINS}")),
        "FORWARD" => Err("the nat table has no FORWARD chain (iptables: no chain by that name)".into()),
        n => find_in(ctx, file, n, true)
            .map(RuleChain::User)
            .ok_or_else(|| format!("chain `{n}` is not declared in the nat table (`:{n} - [0:0]` before its rules)")),
    }
}

/// Applies `-j TARGET` (`goto` false) or `-g CHAIN` in the nat table.
pub fn target(ctx: &mut Ctx, r: &mut Rule, name: &str, goto: bool) -> Result<(), String> {
    let chain = |ctx: &Ctx| {
        find_in(ctx, r.file, name, true)
            .ok_or_else(|| format!("no chain `{name}` is declared in the nat table before this line"))
    };
    if goto {
        r.jump = Some(Jump::Goto(chain(ctx)?));
        return Ok(());
    }
    let kind = match name {
        "ACCEPT" => {
            r.action = Action::Accept;
            return Ok(());
        }
        "RETURN" => {
            r.jump = Some(Jump::Return);
            return Ok(());
        }
        "DROP" | "REJECT" => {
            return Err(format!(
                "target `{name}` in the nat table: the kernel refuses it (the nat table does not filter)"
            ))
        }
        "REDIRECT" => {
            return Err("target `REDIRECT` (to the firewall itself) is not supported: the firewall's own stack serves \
                        only /metrics and DHCP, so a redirected connection would find no service; DNAT to a host \
                        instead"
                .into())
        }
        "DNAT" => NatKind::Dnat,
        "SNAT" => NatKind::Snat,
        "MASQUERADE" => NatKind::Masquerade,
        "INPUT" | "OUTPUT" | "PREROUTING" | "POSTROUTING" => {
            return Err(format!("cannot jump to built-in chain `{name}` (iptables refuses it)"))
        }
        _ => {
            r.jump = Some(Jump::Call(chain(ctx).map_err(|_| {
                format!(
                    "target `{name}` is not supported in the nat table, nor is it a chain declared there before \
                     this line (DNAT, SNAT, MASQUERADE, ACCEPT, RETURN or a user chain)"
                )
            })?));
            return Ok(());
        }
    };
    let record = NatRecord { kind, addrs: (0, 0), ports: None, random: false, random_fully: false, persistent: false };
    r.jump = Some(Jump::Nat(ctx.set.nats.len() as u32));
    r.action = Action::Accept;
    ctx.set.nats.push(record);
    Ok(())
}

/// Whether `opt` is an option of the NAT targets.
pub fn is_target_option(opt: &str) -> bool {
    matches!(
        opt,
        "--to" | "--to-destination" | "--to-source" | "--to-ports" | "--random" | "--random-fully" | "--persistent"
    )
}

/// Applies a NAT target's option to the rule's record; returns how many
/// argument words it used.
pub fn option(ctx: &mut Ctx, r: &Rule, opt: &str, arg: Option<&str>) -> Result<usize, String> {
    let Some(Jump::Nat(n)) = r.jump else {
        return Err(format!("`{opt}` needs `-j DNAT`, `-j SNAT` or `-j MASQUERADE` first"));
    };
    let Some(record) = ctx.set.nats.get_mut(n as usize) else {
        return Err(format!("`{opt}` needs a NAT target first"));
    };
    let kind = record.kind;
    // iptables reads options with getopt_long: `--to` is the one `--to-*`
    // option of each target.
    let opt = match (opt, kind) {
        ("--to", NatKind::Dnat) => "--to-destination",
        ("--to", NatKind::Snat) => "--to-source",
        ("--to", NatKind::Masquerade) => "--to-ports",
        _ => opt,
    };
    let need = || arg.ok_or_else(|| format!("`{opt}` needs an argument"));
    let wrong = || format!("`{opt}` is not an option of {}", kind_name(kind));
    match opt {
        "--to-destination" | "--to-source" => {
            let right = if opt == "--to-destination" { kind == NatKind::Dnat } else { kind == NatKind::Snat };
            if !right {
                return Err(wrong());
            }
            if record.addrs != (0, 0) {
                // Several --to-source: kernels since 2.6.11 refuse them.
                return Err(format!("`{opt}` given twice (the kernel takes one range)"));
            }
            let (addrs, ports) = range(need()?)?;
            record.addrs = addrs;
            record.ports = ports;
            Ok(1)
        }
        "--to-ports" => {
            if kind != NatKind::Masquerade {
                return Err(wrong());
            }
            record.ports = Some(names::port_range(need()?)?);
            Ok(1)
        }
        "--random" => {
            record.random = true;
            Ok(0)
        }
        "--random-fully" => {
            record.random_fully = true;
            Ok(0)
        }
        "--persistent" if kind != NatKind::Masquerade => {
            record.persistent = true;
            Ok(0)
        }
        _ => Err(wrong()),
    }
}

fn kind_name(kind: NatKind) -> &'static str {
    match kind {
        NatKind::Dnat => "DNAT",
        NatKind::Snat => "SNAT",
        NatKind::Masquerade => "MASQUERADE",
    }
}

/// An inclusive address range and, if given, an inclusive port range.
pub type NatRange = ((u32, u32), Option<(u16, u16)>);

/// `A[-B][:P[-Q]]` of `--to-destination` and `--to-source`.
pub fn range(s: &str) -> Result<NatRange, String> {
    let (addrs, ports) = match s.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    if addrs.is_empty() {
        return Err(format!(
            "`{s}`: a port without an address (keep the address, change the port) is not supported: give the address"
        ));
    }
    let (low, high) = match addrs.split_once('-') {
        Some((a, b)) => (names::ipv4(a)?, names::ipv4(b)?),
        None => {
            let a = names::ipv4(addrs)?;
            (a, a)
        }
    };
    if low > high {
        return Err(format!(
            "address range `{addrs}` runs backwards (iptables loads it, but it names no addresses): write it low-high"
        ));
    }
    let ports = ports.map(names::port_range).transpose()?;
    if ports.is_some_and(|(low, _)| low == 0) {
        return Err(format!("`{s}`: translating to port 0 is not supported (no connection can use it)"));
    }
    Ok(((low, high), ports))
}

/// A finished nat rule: DNAT and SNAT need their `--to-*`; ports only
/// with `-p tcp` or `-p udp` (as iptables: "Need TCP, UDP, SCTP or DCCP
/// with port specification").
pub fn finish(set: &Ruleset, r: &Rule) -> Result<(), String> {
    if r.chain == Chain::NatPostrouting && r.in_if.is_some() {
        return Err(
            "`-i` cannot match in POSTROUTING (iptables refuses it: the input interface is not known there)".into()
        );
    }
    if r.chain == Chain::NatPrerouting && r.out_if.is_some() {
        return Err("`-o` cannot match in PREROUTING (iptables refuses it: it comes before the route lookup)".into());
    }
    let Some(Jump::Nat(n)) = r.jump else { return Ok(()) };
    let Some(record) = set.nats.get(n as usize) else { return Ok(()) };
    let to = match record.kind {
        NatKind::Dnat => "--to-destination",
        NatKind::Snat => "--to-source",
        NatKind::Masquerade => "",
    };
    if !to.is_empty() && record.addrs == (0, 0) {
        return Err(format!("{} needs `{to}`", kind_name(record.kind)));
    }
    let ports_ok = match &r.proto {
        ProtoMatch::OneOf(p) => !p.is_empty() && p.iter().all(|&p| p == proto::TCP || p == proto::UDP),
        _ => false,
    };
    if record.ports.is_some() && !ports_ok {
        return Err(format!(
            "{} with ports needs `-p tcp` or `-p udp` (iptables refuses it otherwise)",
            kind_name(record.kind)
        ));
    }
    Ok(())
}

/// The kernel's hook check: DNAT only in PREROUTING, SNAT and MASQUERADE
/// only in POSTROUTING, also through the user chains each reaches. Ok,
/// or the index of the rule to blame and why.
pub fn check_hooks(set: &Ruleset) -> Result<(), (usize, String)> {
    for (start, allowed) in [(Chain::NatPrerouting, NatKind::Dnat), (Chain::NatPostrouting, NatKind::Snat)] {
        let mut reached: Vec<usize> = alloc::vec![start.index()];
        let mut todo = reached.clone();
        while let Some(chain) = todo.pop() {
            for (i, r) in set.rules.iter().enumerate().filter(|(_, r)| r.chain.number() == chain) {
                match r.jump {
                    Some(Jump::Call(t) | Jump::Goto(t)) if !reached.contains(&user_chain_number(t)) => {
                        reached.push(user_chain_number(t));
                        todo.push(user_chain_number(t));
                    }
                    Some(Jump::Nat(n)) => {
                        let kind = set.nats.get(n as usize).map(|x| x.kind);
                        let fits = match allowed {
                            NatKind::Dnat => kind == Some(NatKind::Dnat),
                            _ => matches!(kind, Some(NatKind::Snat | NatKind::Masquerade)),
                        };
                        if !fits {
                            let what = kind.map_or("NAT", kind_name);
                            let hook = start.name();
                            let want = if allowed == NatKind::Dnat { "PREROUTING" } else { "POSTROUTING" };
                            let other = if want == "PREROUTING" {
                                "SNAT and MASQUERADE in POSTROUTING"
                            } else {
                                "DNAT in PREROUTING"
                            };
                            return Err((
                                i,
                                format!("{what} reached from the nat table's {hook} chain: the kernel refuses it ({other} only)"),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}
