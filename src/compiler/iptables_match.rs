//! The match options of an iptables `-A` line, read as iptables reads them:
//! an option belongs to the latest match that defines it (`-p tcp` loads
//! the tcp match when one of its options follows), each match takes each of
//! its options once and must have its required ones, several matches must
//! all hold (two `-m state` ask for both), and `-s`/`-d`/`-p`/`-i`/`-o` come
//! at most once. What iptables refuses is refused with its reason.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use unifw_core::flow::{proto, CtState, PktType, CT_DNAT, CT_SNAT};
use unifw_core::image::format::{user2credits, XT_LIMIT_SCALE};

use super::ast::{state_bit, AddrMatch, IcmpMatch, IfMatch, PortMatch, Prefix, ProtoMatch, Rule, ANY_STATE};
use super::diag::Diagnostic;
use super::expand::{addresses, merge, port_ranges};
use super::iptables::Word;
use super::iptables_folded::{self, Folded, OwnerMatch};
use super::names;
use super::source::Ctx;

/// An error: the byte offset it is about and what is wrong.
pub type Fault = (usize, String);

/// Match modules unifw implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Module {
    Tcp,
    Udp,
    Icmp,
    Multiport,
    State,
    Conntrack,
    Comment,
    Iprange,
    Length,
    Ttl,
    Pkttype,
    Limit,
    Mac,
    Addrtype,
    Owner,
    Mark,
    Connmark,
    Tcpmss,
    Recent,
    Hashlimit,
    Connlimit,
    Physdev,
    String,
}

/// The options of those modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Sport,
    Dport,
    Sports,
    Dports,
    Ports,
    State,
    CtState,
    CtStatus,
    IcmpType,
    Comment,
    SrcRange,
    DstRange,
    Syn,
    TcpFlags,
    Length,
    TtlEq,
    TtlLt,
    TtlGt,
    PktType,
    Limit,
    LimitBurst,
    TcpOption,
    MacSource,
    SrcType,
    DstType,
    LimitIfaceIn,
    LimitIfaceOut,
    UidOwner,
    GidOwner,
    SocketExists,
    SupplGroups,
    Mark,
    Mss,
    CtProto,
    /// `--ctorigsrc` ... `--ctrepldstport` (the field's number).
    CtTuple(u8),
    CtDir,
    /// One of `-m recent`'s (iptables_recent.rs reads them).
    Recent,
    /// One of `-m hashlimit`'s (iptables_hashlimit.rs reads them).
    Hashlimit,
    /// One of `-m connlimit`'s (iptables_connlimit.rs reads them).
    Connlimit,
    /// One of `-m physdev`'s (iptables_physdev.rs reads them).
    Physdev,
    /// One of `-m string`'s (iptables_string.rs reads them).
    String,
    /// An option iptables has that unifw does not implement (yet).
    Unsupported,
}

impl Module {
    fn by_name(s: &str) -> Option<Module> {
        Some(match s {
            "tcp" => Module::Tcp,
            "udp" => Module::Udp,
            "icmp" => Module::Icmp,
            "multiport" => Module::Multiport,
            "state" => Module::State,
            "conntrack" => Module::Conntrack,
            "comment" => Module::Comment,
            "iprange" => Module::Iprange,
            "length" => Module::Length,
            "ttl" => Module::Ttl,
            "pkttype" => Module::Pkttype,
            "limit" => Module::Limit,
            "mac" => Module::Mac,
            "addrtype" => Module::Addrtype,
            "owner" => Module::Owner,
            "mark" => Module::Mark,
            "connmark" => Module::Connmark,
            "tcpmss" => Module::Tcpmss,
            "recent" => Module::Recent,
            "hashlimit" => Module::Hashlimit,
            "connlimit" => Module::Connlimit,
            "physdev" => Module::Physdev,
            "string" => Module::String,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Module::Tcp => "tcp",
            Module::Udp => "udp",
            Module::Icmp => "icmp",
            Module::Multiport => "multiport",
            Module::State => "state",
            Module::Conntrack => "conntrack",
            Module::Comment => "comment",
            Module::Iprange => "iprange",
            Module::Length => "length",
            Module::Ttl => "ttl",
            Module::Pkttype => "pkttype",
            Module::Limit => "limit",
            Module::Mac => "mac",
            Module::Addrtype => "addrtype",
            Module::Owner => "owner",
            Module::Mark => "mark",
            Module::Connmark => "connmark",
            Module::Tcpmss => "tcpmss",
            Module::Recent => "recent",
            Module::Hashlimit => "hashlimit",
            Module::Connlimit => "connlimit",
            Module::Physdev => "physdev",
            Module::String => "string",
        }
    }

    /// The option `o` of this module, if it has one.
    fn option(self, o: &str) -> Option<Opt> {
        Some(match (self, o) {
            (Module::Tcp | Module::Udp, "--sport" | "--source-port") => Opt::Sport,
            (Module::Tcp | Module::Udp, "--dport" | "--destination-port") => Opt::Dport,
            // The engine branch implements these (TCP flags).
            (Module::Tcp, "--syn") => Opt::Syn,
            (Module::Tcp, "--tcp-flags") => Opt::TcpFlags,
            (Module::Tcp, "--tcp-option") => Opt::TcpOption,
            (Module::Mac, "--mac-source") => Opt::MacSource,
            (Module::Addrtype, "--src-type") => Opt::SrcType,
            (Module::Addrtype, "--dst-type") => Opt::DstType,
            (Module::Addrtype, "--limit-iface-in") => Opt::LimitIfaceIn,
            (Module::Addrtype, "--limit-iface-out") => Opt::LimitIfaceOut,
            (Module::Length, "--length") => Opt::Length,
            (Module::Owner, "--uid-owner") => Opt::UidOwner,
            (Module::Owner, "--gid-owner") => Opt::GidOwner,
            (Module::Owner, "--socket-exists") => Opt::SocketExists,
            (Module::Owner, "--suppl-groups") => Opt::SupplGroups,
            (Module::Mark | Module::Connmark, "--mark") => Opt::Mark,
            (Module::Tcpmss, "--mss") => Opt::Mss,
            (Module::Ttl, "--ttl-eq") => Opt::TtlEq,
            (Module::Ttl, "--ttl-lt") => Opt::TtlLt,
            (Module::Ttl, "--ttl-gt") => Opt::TtlGt,
            (Module::Pkttype, "--pkt-type") => Opt::PktType,
            (Module::Limit, "--limit") => Opt::Limit,
            (Module::Limit, "--limit-burst") => Opt::LimitBurst,
            (Module::Multiport, "--sports" | "--source-ports") => Opt::Sports,
            (Module::Multiport, "--dports" | "--destination-ports") => Opt::Dports,
            (Module::Multiport, "--ports") => Opt::Ports,
            (Module::State, "--state") => Opt::State,
            (Module::Conntrack, "--ctstate") => Opt::CtState,
            (Module::Conntrack, "--ctstatus") => Opt::CtStatus,
            (Module::Conntrack, "--ctproto") => Opt::CtProto,
            (Module::Conntrack, o) if super::iptables_ct_tuple::field(o).is_some() => {
                Opt::CtTuple(super::iptables_ct_tuple::field(o).map_or(0, |f| f as u8))
            }
            (Module::Conntrack, "--ctdir") => Opt::CtDir,
            (Module::Conntrack, "--ctexpire") => Opt::Unsupported,
            (Module::Icmp, "--icmp-type") => Opt::IcmpType,
            (Module::Comment, "--comment") => Opt::Comment,
            (Module::Iprange, "--src-range") => Opt::SrcRange,
            (Module::Iprange, "--dst-range") => Opt::DstRange,
            (Module::Recent, o) if super::iptables_recent::option_name(o).is_some() => Opt::Recent,
            (Module::Hashlimit, o) if super::iptables_hashlimit::option_name(o).is_some() => Opt::Hashlimit,
            (Module::Connlimit, o) if super::iptables_connlimit::option_name(o).is_some() => Opt::Connlimit,
            (Module::Physdev, o) if super::iptables_physdev::option_name(o).is_some() => Opt::Physdev,
            (Module::String, o) if super::iptables_string::option_name(o).is_some() => Opt::String,
            _ => return None,
        })
    }

    /// The module `-p` loads by itself when one of its options follows.
    fn of_protocol(p: u8) -> Option<Module> {
        match p {
            proto::TCP => Some(Module::Tcp),
            proto::UDP => Some(Module::Udp),
            proto::ICMP => Some(Module::Icmp),
            _ => None,
        }
    }
}

/// One loaded match: its module, the options it has taken, where it was loaded.
struct Instance {
    module: Module,
    given: Vec<Opt>,
    explicit: bool,
    at: usize,
    /// `-m owner`'s options.
    owner: OwnerMatch,
}

/// What the match options of one line have said so far.
#[derive(Default)]
pub struct Matches {
    instances: Vec<Instance>,
    /// `-s`, `-d`, `-p`, `-i`, `-o` seen (each at most once).
    seen: Vec<&'static str>,
    src: Vec<AddrMatch>,
    dst: Vec<AddrMatch>,
    sport: Vec<PortMatch>,
    dport: Vec<PortMatch>,
    icmp: Vec<IcmpMatch>,
    /// The word after an option's argument (`--tcp-flags MASK COMP`).
    pub second: Option<(usize, String)>,
    /// `--limit` (avg) and `--limit-burst` of the `-m limit` seen.
    limit: Option<(u32, u32)>,
    /// The `-m recent` seen.
    recent: Option<super::iptables_recent::RecentOpts>,
    /// The `-m multiport --ports` seen (at most one).
    either: Vec<PortMatch>,
    /// The `-m hashlimit` seen.
    hashlimit: Option<super::iptables_hashlimit::HashlimitOpts>,
    /// The rule's table and chain (`filter INPUT`), for `-m hashlimit`.
    pub chain: String,
    /// The `-m connlimit` seen.
    connlimit: Option<super::iptables_connlimit::ConnlimitOpts>,
    /// The `-m physdev` matches seen (several may be given, each its own match).
    physdev: Vec<super::iptables_physdev::PhysdevOpts>,
    /// The `-m string` seen.
    string: Option<super::iptables_string::StringOpts>,
    /// Whether the word after the option is double-quoted (iptables-restore
    /// reads `\X` as `X` inside quotes).
    pub quoted: bool,
}

impl Matches {
    /// Whether the rule has loaded `-m string` (whose `--to` is not NAT's).
    pub fn has_string(&self) -> bool {
        self.string.is_some()
    }
}

/// Whether `opt` is an option this module reads; then applies it and
/// returns how many argument words it took.
pub fn option(
    ctx: &mut Ctx,
    m: &mut Matches,
    rule: &mut Rule,
    (opt, arg, negated): (&Word, Option<&Word>, bool),
    at: &dyn Fn(usize, String) -> Diagnostic,
) -> Result<Option<usize>, Fault> {
    let need = || arg.ok_or_else(|| (opt.at, format!("`{}` needs an argument", opt.text)));
    match opt.text {
        "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
            let src = opt.text.starts_with("-s") || opt.text.starts_with("--s");
            once(m, if src { "-s" } else { "-d" }, opt)?;
            let a = need()?;
            if a.text == "!" {
                // Old iptables-save output (before 1.4.3); iptables-restore 1.8 refuses it.
                ctx.count_unsupported("intrapositioned negation (`-d ! ADDR`)".into());
                let msg = format!(
                    "`{} ! ADDR` (negation after the option, iptables before 1.4.3) is not supported, nor by \
                     iptables-restore 1.8: write `! {} ADDR`",
                    opt.text, opt.text
                );
                return Err((a.at, msg));
            }
            let prefixes = a.text.split(',').map(address).collect::<Result<Vec<_>, _>>().map_err(|e| (a.at, e))?;
            if negated && prefixes.len() > 1 {
                return Err((opt.at, "`!` is not allowed with several addresses (iptables refuses it too)".into()));
            }
            let am = AddrMatch { negated, prefixes: prefixes.into() };
            if src {
                m.src.push(am)
            } else {
                m.dst.push(am)
            }
        }
        "-p" | "--protocol" => {
            once(m, "-p", opt)?;
            let a = need()?;
            let p =
                if a.text.eq_ignore_ascii_case("all") { 0 } else { names::protocol(a.text).map_err(|e| (a.at, e))? };
            rule.proto = match (p, negated) {
                (0, true) => {
                    return Err((opt.at, format!("`! -p {}` would never match (iptables refuses it)", a.text)))
                }
                (0, false) => ProtoMatch::Any, // iptables: 0 and `all` mean every protocol
                (p, true) => ProtoMatch::Not(p),
                (p, false) => ProtoMatch::OneOf(alloc::vec![p]),
            };
        }
        "-i" | "--in-interface" | "-o" | "--out-interface" => {
            let input = opt.text.starts_with("-i") || opt.text.starts_with("--in");
            once(m, if input { "-i" } else { "-o" }, opt)?;
            let a = need()?;
            let set = super::ifnames::resolve(ctx, a.text, &|msg| at(a.at, msg)).map_err(|e| (a.at, e))?;
            let im = Some(IfMatch { negated, set });
            if input {
                rule.in_if = im
            } else {
                rule.out_if = im
            }
        }
        "-m" | "--match" => {
            if negated {
                return Err((opt.at, "`!` is not allowed before `-m`".into()));
            }
            let a = need()?;
            let Some(module) = Module::by_name(a.text) else {
                return Err(unsupported(
                    ctx,
                    a.at,
                    format!("-m {}", a.text),
                    format!("match `-m {}` is not supported by unifw", a.text),
                ));
            };
            if module == Module::Limit {
                if m.limit.is_some() {
                    return Err((a.at, "several `-m limit` matches in one rule are not supported by unifw (each would spend its own bucket)".into()));
                }
                m.limit = Some(LIMIT_DEFAULT); // iptables: 3/hour, burst 5
            }
            if module == Module::Tcpmss && m.instances.iter().any(|i| i.module == Module::Tcpmss) {
                return Err((a.at, "several `-m tcpmss` matches in one rule are not supported by unifw".into()));
            }
            if module == Module::Recent {
                if m.recent.is_some() {
                    return Err((a.at, "several `-m recent` matches in one rule are not supported by unifw".into()));
                }
                m.recent = Some(super::iptables_recent::RecentOpts::new(a.at));
            }
            if module == Module::Hashlimit {
                if m.hashlimit.is_some() {
                    return Err((a.at, "several `-m hashlimit` matches in one rule are not supported by unifw".into()));
                }
                m.hashlimit = Some(super::iptables_hashlimit::HashlimitOpts::new(a.at));
            }
            if module == Module::Connlimit {
                if m.connlimit.is_some() {
                    return Err((a.at, "several `-m connlimit` matches in one rule are not supported by unifw".into()));
                }
                m.connlimit = Some(super::iptables_connlimit::ConnlimitOpts::new(a.at));
            }
            if module == Module::Physdev {
                m.physdev.push(super::iptables_physdev::PhysdevOpts::new(a.at));
            }
            if module == Module::String {
                if m.string.is_some() {
                    let what = "several `-m string` matches in one rule".into();
                    let why = "several `-m string` matches in one rule are not supported by unifw".into();
                    return Err(unsupported(ctx, a.at, what, why));
                }
                m.string = Some(super::iptables_string::StringOpts::new(a.at));
            }
            m.instances.push(Instance {
                module,
                given: Vec::new(),
                explicit: true,
                at: a.at,
                owner: OwnerMatch::default(),
            });
        }
        "-f" | "--fragment" => {
            once(m, "-f", opt)?;
            rule.folded.push(Folded::Fragment { negated });
            if !negated {
                ctx.set.warnings.push(at(opt.at, "warning: `-f` never matches: unifw judges a fragmented datagram once it is whole, as Linux does with connection tracking (`nf_defrag_ipv4` reassembles before every table)".into()));
                rule.residual.never = true;
            }
            return Ok(Some(0));
        }
        o if o.starts_with("--") => return module_option(ctx, m, rule, (opt, arg, negated), at),
        _ => return Ok(None),
    }
    Ok(Some(1))
}

/// Counts an unsupported feature and returns its error.
fn unsupported(ctx: &mut Ctx, at: usize, feature: String, msg: String) -> Fault {
    ctx.count_unsupported(feature);
    (at, msg)
}

fn once(m: &mut Matches, flag: &'static str, opt: &Word) -> Result<(), Fault> {
    if m.seen.contains(&flag) {
        return Err((opt.at, format!("multiple {flag} flags are not allowed (iptables refuses them too)")));
    }
    m.seen.push(flag);
    Ok(())
}

/// An option of a match module: the latest loaded match that has it takes
/// it, else the match of the `-p` protocol given before it.
fn module_option(
    ctx: &mut Ctx,
    m: &mut Matches,
    rule: &mut Rule,
    (opt, arg, negated): (&Word, Option<&Word>, bool),
    at: &dyn Fn(usize, String) -> Diagnostic,
) -> Result<Option<usize>, Fault> {
    let o = opt.text;
    let found = m.instances.iter().rposition(|i| i.module.option(o).is_some());
    let index = match found {
        Some(i) => i,
        None => {
            let implicit = match &rule.proto {
                ProtoMatch::OneOf(l) => l.first().and_then(|&p| Module::of_protocol(p)),
                _ => None,
            };
            match implicit.filter(|md| md.option(o).is_some()) {
                Some(module) => {
                    m.instances.push(Instance {
                        module,
                        given: Vec::new(),
                        explicit: false,
                        at: opt.at,
                        owner: OwnerMatch::default(),
                    });
                    m.instances.len() - 1
                }
                None => return unknown_option(opt).map(|()| None),
            }
        }
    };
    let Some(inst) = m.instances.get_mut(index) else { return Err((opt.at, "internal: no match".into())) };
    let (module, kind) = (inst.module, inst.module.option(o).unwrap_or(Opt::Unsupported));
    if kind == Opt::Unsupported {
        let feature = format!("{} {o}", if module == Module::Tcp { "-p tcp" } else { "-m conntrack" });
        return Err(unsupported(
            ctx,
            opt.at,
            feature,
            format!("option `{o}` of the {} match is not supported by unifw yet", module.name()),
        ));
    }
    if kind == Opt::Recent {
        let name = super::iptables_recent::option_name(o).unwrap_or("--set");
        let Some(r) = m.recent.as_mut() else { return Err((opt.at, "internal: no recent match".into())) };
        super::iptables_recent::option(r, name, opt.at, arg, negated)?;
        return Ok(Some(usize::from(super::iptables_recent::takes_argument(name))));
    }
    if kind == Opt::Hashlimit {
        let name = super::iptables_hashlimit::option_name(o).unwrap_or("--hashlimit-name");
        let Some(h) = m.hashlimit.as_mut() else { return Err((opt.at, "internal: no hashlimit match".into())) };
        super::iptables_hashlimit::option(h, name, opt.at, arg, negated)?;
        return Ok(Some(usize::from(super::iptables_hashlimit::takes_argument(name))));
    }
    if kind == Opt::Connlimit {
        let name = super::iptables_connlimit::option_name(o).unwrap_or("--connlimit-above");
        let Some(c) = m.connlimit.as_mut() else { return Err((opt.at, "internal: no connlimit match".into())) };
        super::iptables_connlimit::option(c, name, opt.at, arg, negated)?;
        return Ok(Some(usize::from(super::iptables_connlimit::takes_argument(name))));
    }
    if kind == Opt::String {
        let name = super::iptables_string::option_name(o).unwrap_or("--string");
        let Some(st) = m.string.as_mut() else { return Err((opt.at, "internal: no string match".into())) };
        super::iptables_string::option(st, name, opt.at, (arg, m.quoted), negated)?;
        return Ok(Some(usize::from(super::iptables_string::takes_argument(name))));
    }
    if kind == Opt::Physdev {
        let name = super::iptables_physdev::option_name(o).unwrap_or("--physdev-in");
        // The latest `-m physdev` takes it (an option goes to the latest match that has it).
        let Some(p) = m.physdev.last_mut() else { return Err((opt.at, "internal: no physdev match".into())) };
        super::iptables_physdev::option(p, name, opt.at, arg, negated)?;
        if !negated && !rule.residual.never {
            ctx.set.warnings.push(at(opt.at, format!("warning: `{o}` without `!` never matches: unifw routes and bridges nothing, so no packet has a bridge port (Linux's physdev match fails every packet that was not bridged); the rule matches nothing")));
        }
        rule.residual.never |= !negated;
        return Ok(Some(usize::from(super::iptables_physdev::takes_argument(name))));
    }
    let multi = [Opt::Sports, Opt::Dports, Opt::Ports];
    let flags = [Opt::Syn, Opt::TcpFlags];
    if flags.contains(&kind) && inst.given.iter().any(|g| flags.contains(g)) {
        return Err((opt.at, "only one of `--syn` or `--tcp-flags` per tcp match (iptables refuses more)".into()));
    }
    if kind == Opt::TcpOption && inst.given.contains(&kind) {
        return Err((opt.at, "only one `--tcp-option` per tcp match (iptables refuses more)".into()));
    }
    let iface = [Opt::LimitIfaceIn, Opt::LimitIfaceOut];
    if iface.contains(&kind) && inst.given.iter().any(|g| iface.contains(g)) {
        return Err((
            opt.at,
            "`--limit-iface-in` cannot be used together with `--limit-iface-out` (iptables refuses it)".into(),
        ));
    }
    if inst.given.contains(&kind) || (multi.contains(&kind) && inst.given.iter().any(|g| multi.contains(g))) {
        return Err((
            opt.at,
            format!(
                "`{o}` is given twice in one {} match (iptables refuses it too; a second `-m {}` adds another match)",
                module.name(),
                module.name()
            ),
        ));
    }
    inst.given.push(kind);
    if module == Module::Owner {
        let used = inst.owner.option(o, arg.map(|a| a.text), negated).map_err(|e| (opt.at, e))?;
        return Ok(Some(used));
    }
    if kind == Opt::Syn {
        rule.residual.tcp_flags = Some((0x17, 0x02, negated));
        return Ok(Some(0));
    }
    if kind == Opt::LimitIfaceIn || kind == Opt::LimitIfaceOut {
        if negated {
            return Err((opt.at, format!("`!` is not allowed before `{o}` (iptables refuses it)")));
        }
        rule.residual.type_iface = if kind == Opt::LimitIfaceIn { 1 } else { 2 };
        return Ok(Some(0));
    }
    if kind == Opt::TcpFlags {
        let a = arg.ok_or_else(|| (opt.at, "`--tcp-flags` needs two arguments: MASK COMP".into()))?;
        let Some((at2, comp)) = m.second.clone().filter(|(_, w)| !w.starts_with('-') && w != "!") else {
            return Err((opt.at, "`--tcp-flags` needs two arguments: MASK COMP".into()));
        };
        let mask = tcp_flag_list(a.text).map_err(|e| (a.at, e))?;
        let comp = tcp_flag_list(&comp).map_err(|e| (at2, e))?;
        rule.residual.tcp_flags = Some((mask, comp, negated));
        return Ok(Some(2));
    }
    if module == Module::Limit && negated {
        return Err((opt.at, "limit does not support invert (iptables refuses `!` here)".into()));
    }
    if kind == Opt::Comment {
        if negated {
            return Err((opt.at, "`!` is not allowed before `--comment`".into()));
        }
        return arg.map(|_| Some(1)).ok_or((opt.at, "`--comment` needs an argument".into()));
    }
    let a = arg.ok_or_else(|| (opt.at, format!("`{o}` needs an argument")))?;
    apply(ctx, m, rule, (module, kind, negated), a, at).map(|()| Some(1))
}

/// An option no loaded match has: the error if a match unifw knows has it
/// (iptables refuses it there too); Ok if it is none of theirs (a target's).
fn unknown_option(opt: &Word) -> Result<(), Fault> {
    let o = opt.text;
    let known = [
        Module::Tcp,
        Module::Multiport,
        Module::State,
        Module::Conntrack,
        Module::Icmp,
        Module::Comment,
        Module::Iprange,
        Module::Length,
        Module::Ttl,
        Module::Pkttype,
        Module::Limit,
        Module::Mac,
        Module::Addrtype,
        Module::Owner,
        Module::Mark,
        Module::Tcpmss,
        Module::Recent,
        Module::Hashlimit,
        Module::Connlimit,
        Module::Physdev,
        Module::String,
    ]
    .into_iter()
    .find(|md| md.option(o).is_some());
    match known {
        Some(md) => Err((opt.at, format!("unknown option `{o}` here: it belongs to the {} match, which this rule has not loaded before it (with `-m {}`{}), as iptables requires", md.name(), md.name(), if matches!(md, Module::Tcp | Module::Icmp) { " or `-p`" } else { "" }))),
        None => Ok(()),
    }
}

fn apply(
    ctx: &mut Ctx,
    m: &mut Matches,
    rule: &mut Rule,
    (module, kind, negated): (Module, Opt, bool),
    a: &Word,
    at: &dyn Fn(usize, String) -> Diagnostic,
) -> Result<(), Fault> {
    let bad = |e: String| (a.at, e);
    match kind {
        Opt::Sport | Opt::Dport => {
            let protos = if module == Module::Tcp { 1 } else { 3 };
            let range = port_range(a.text, protos).map_err(bad)?;
            let pm = PortMatch { negated, ranges: alloc::vec![range] };
            if kind == Opt::Sport {
                m.sport.push(pm)
            } else {
                m.dport.push(pm)
            }
        }
        Opt::Sports | Opt::Dports => {
            let protos = match &rule.proto {
                ProtoMatch::OneOf(l) if l.as_slice() == [proto::UDP] => 2,
                _ => 1,
            };
            let ranges = multiport(a.text, protos).map_err(bad)?;
            let pm = PortMatch { negated, ranges };
            if kind == Opt::Sports {
                m.sport.push(pm)
            } else {
                m.dport.push(pm)
            }
        }
        Opt::Ports => {
            if !m.either.is_empty() {
                let what = "two `-m multiport --ports` in one rule".into();
                let why = "several `--ports` matches in one rule are not supported by unifw (each is a source-or-destination test; merge their lists or split the rule)".into();
                return Err(unsupported(ctx, a.at, what, why));
            }
            let protos = match &rule.proto {
                ProtoMatch::OneOf(l) if l.as_slice() == [proto::UDP] => 2,
                _ => 1,
            };
            m.either.push(PortMatch { negated, ranges: multiport(a.text, protos).map_err(bad)? });
        }
        Opt::State | Opt::CtState => {
            let (mut bits, mut status) = (0, 0);
            for s in a.text.split(',') {
                match s.to_ascii_uppercase().as_str() {
                    "SNAT" if kind == Opt::CtState => status |= CT_SNAT,
                    "DNAT" if kind == Opt::CtState => status |= CT_DNAT,
                    _ => bits |= state_bit(ct_state(s).map_err(bad)?),
                }
            }
            if status == 0 {
                rule.states &= if negated { ANY_STATE & !bits } else { bits };
            } else if rule.residual.states.is_some() {
                let what = "two `--ctstate` matches with SNAT or DNAT".into();
                return Err(unsupported(
                    ctx,
                    a.at,
                    what,
                    "one `--ctstate` with SNAT or DNAT per rule is supported".into(),
                ));
            } else {
                // Linux tests the state and the NAT status bits together
                // against the list: checked after the lookup, exactly.
                rule.residual.states = Some(bits | status | if negated { 0x80 } else { 0 });
            }
        }
        Opt::CtStatus => {
            return Err(unsupported(ctx, a.at, "-m conntrack --ctstatus".into(), "`--ctstatus` is not supported by unifw: its connection table keeps no status bits (EXPECTED, SEEN_REPLY, ASSURED, CONFIRMED)".into()));
        }
        Opt::IcmpType => {
            if a.text == "any" {
                return Ok(()); // iptables: every type
            }
            let (icmp_type, code) = names::icmp_type_iptables(a.text).map_err(bad)?;
            m.icmp.push(IcmpMatch { negated, icmp_type, code });
        }
        Opt::SrcRange | Opt::DstRange => {
            let prefixes = ip_range(a.text).map_err(bad)?;
            let am = AddrMatch { negated, prefixes: prefixes.into() };
            if kind == Opt::SrcRange {
                m.src.push(am)
            } else {
                m.dst.push(am)
            }
        }
        Opt::Length => {
            let (lo, hi) = match a.text.split_once(':') {
                Some((lo, hi)) => (
                    if lo.is_empty() { 0 } else { names::number(lo, 65535).map_err(bad)? as u16 },
                    if hi.is_empty() { u16::MAX } else { names::number(hi, 65535).map_err(bad)? as u16 },
                ),
                None => {
                    let n = names::number(a.text, 65535).map_err(bad)? as u16;
                    (n, n)
                }
            };
            // A reversed range is accepted, as by iptables, and matches
            // nothing (negated: everything).
            rule.residual.len = Some((lo, hi, negated));
        }
        Opt::TtlEq | Opt::TtlLt | Opt::TtlGt => {
            if rule.residual.ttl.is_some() {
                return Err(bad(
                    "only one of `--ttl-eq`, `--ttl-lt`, `--ttl-gt` per ttl match (iptables refuses more)".into(),
                ));
            }
            let v =
                names::number(a.text, 255).map_err(|_| format!("invalid TTL `{}` (0-255)", a.text)).map_err(bad)? as u8;
            let op = match kind {
                Opt::TtlEq => 1,
                Opt::TtlLt => 2,
                _ => 3,
            };
            if negated && op != 1 {
                return Err(bad(
                    "`!` is only allowed with `--ttl-eq` (iptables refuses it with --ttl-lt/--ttl-gt)".into()
                ));
            }
            rule.residual.ttl = Some((op, v, negated));
        }
        Opt::PktType => {
            let t = match a.text.to_ascii_lowercase().as_str() {
                "unicast" | "host" => 1u8 << PktType::Unicast as u8,
                "broadcast" => 1 << PktType::Broadcast as u8,
                "multicast" => 1 << PktType::Multicast as u8,
                // Frames for other hosts' MACs are dropped before the rules
                // (`not_our_mac`), and unifw has no loopback: no packet
                // the rules see has these types.
                "otherhost" | "outgoing" | "loopback" => 0,
                _ => {
                    return Err(bad(format!(
                        "bad packet type `{}` (unicast, broadcast, multicast, host, otherhost, outgoing, loopback)",
                        a.text
                    )))
                }
            };
            rule.residual.pkt_types = Some(if negated { 0x07 & !t } else { t });
        }
        Opt::Limit => {
            let avg = limit_rate(a.text).map_err(bad)?;
            if let Some(l) = m.limit.as_mut() {
                l.0 = avg;
            }
        }
        Opt::LimitBurst => {
            let b = names::number(a.text, 10_000)
                .map_err(|_| format!("invalid burst `{}` (0-10000)", a.text))
                .map_err(bad)?;
            if let Some(l) = m.limit.as_mut() {
                l.1 = b;
            }
        }
        Opt::TcpOption => {
            let n = names::number(a.text, 255)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| bad(format!("bad TCP option `{}` (1-255, as iptables)", a.text)))?;
            rule.residual.tcp_option = Some((n as u8, negated));
        }
        Opt::Mark => {
            let (value, mask) = iptables_folded::mark(a.text).map_err(bad)?;
            let conn = module == Module::Connmark;
            rule.folded.push(Folded::Mark { conn, value, mask, negated });
            if !iptables_folded::mark_holds(value, negated) {
                rule.residual.never = true;
            } else if conn {
                // Linux's xt_connmark: no connection, no match (`!` or not).
                rule.states &= state_bit(CtState::New) | state_bit(CtState::Established) | state_bit(CtState::Related);
            }
        }
        Opt::CtProto => {
            if rule.residual.ct_proto.is_some() {
                return Err(bad("several `--ctproto` matches in one rule are not supported by unifw".into()));
            }
            let p = if a.text.eq_ignore_ascii_case("all") { 0 } else { names::protocol(a.text).map_err(bad)? };
            rule.residual.ct_proto = Some((p, negated));
        }
        Opt::CtTuple(_) | Opt::CtDir => {
            let spec = &mut rule.residual.ct_tuple;
            let done = match kind {
                Opt::CtTuple(n) => {
                    let field = unifw_core::image::format::ct_tuple::CtField::ALL.get(usize::from(n)).copied();
                    let field = field.ok_or_else(|| bad("internal: no such conntrack field".into()))?;
                    super::iptables_ct_tuple::test(spec, field, negated, a.text)
                }
                _ => super::iptables_ct_tuple::direction(spec, negated, a.text),
            };
            if let Err((why, unsupported_here)) = done {
                if unsupported_here {
                    ctx.count_unsupported("-m conntrack tuple options beyond unifw's limits".into());
                }
                return Err(bad(why));
            }
        }
        Opt::Mss => {
            rule.residual.tcp_mss =
                Some(iptables_folded::mss_range(a.text).map(|(lo, hi)| (lo, hi, negated)).map_err(bad)?)
        }
        Opt::MacSource => rule.residual.mac = Some((mac_address(a.text).map_err(bad)?, negated)),
        Opt::SrcType | Opt::DstType => {
            let mut bits = 0u16;
            for t in a.text.split(',') {
                match addr_type_name(t).map_err(bad)? {
                    Ok(b) => bits |= b,
                    Err(why) => ctx.set.warnings.push(at(a.at, why)),
                }
            }
            if kind == Opt::SrcType {
                rule.residual.src_type = Some((bits, negated));
            } else {
                rule.residual.dst_type = Some((bits, negated));
            }
        }
        Opt::Syn
        | Opt::TcpFlags
        | Opt::LimitIfaceIn
        | Opt::LimitIfaceOut
        | Opt::Comment
        | Opt::Recent
        | Opt::Hashlimit
        | Opt::Connlimit
        | Opt::Physdev
        | Opt::String
        | Opt::Unsupported => {}
        Opt::UidOwner | Opt::GidOwner | Opt::SocketExists | Opt::SupplGroups => {}
    }
    Ok(())
}

/// `XX:XX:XX:XX:XX:XX` (1 or 2 hex digits a part, as iptables reads it).
fn mac_address(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("invalid MAC address `{s}` (six hex bytes with `:`)");
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in mac.iter_mut() {
        let p = parts.next().filter(|p| (1..=2).contains(&p.len())).ok_or_else(bad)?;
        *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// An `-m addrtype` type name (either case): its bit, or (Ok(Err)) the
/// warning for a type Linux never gives an IPv4 address as unifw sees it,
/// which adds nothing to the match (as in Linux, the rule holds for the
/// other types listed; with none, never; negated, always).
fn addr_type_name(t: &str) -> Result<Result<u16, String>, String> {
    use unifw_core::flow::addrtype;
    let never = |why: &str| Ok(Err(format!("warning: address type `{t}` {why}: it never matches here (as in Linux)")));
    Ok(Ok(match t.to_ascii_uppercase().as_str() {
        "UNICAST" => addrtype::UNICAST,
        "LOCAL" => addrtype::LOCAL,
        "BROADCAST" => addrtype::BROADCAST,
        "MULTICAST" => addrtype::MULTICAST,
        "UNSPEC" => return never("is no IPv4 address's type in Linux (0.0.0.0/8 is BROADCAST)"),
        "ANYCAST" => return never("is IPv6's: Linux gives no IPv4 address that type"),
        "BLACKHOLE" | "UNREACHABLE" | "PROHIBIT" | "THROW" | "NAT" | "XRESOLVE" => {
            return never("comes from routes of that type in Linux's local table, which unifw has none of")
        }
        _ => return Err(format!("bad address type `{t}` (UNICAST, LOCAL, BROADCAST, MULTICAST, ...)")),
    }))
}

/// `-m limit`'s defaults: `--limit 3/hour --limit-burst 5`.
const LIMIT_DEFAULT: (u32, u32) = (XT_LIMIT_SCALE * 3600 / 3, 5);

/// `--limit RATE[/second|/minute|/hour|/day]` as iptables' `parse_rate`
/// reads it (a unit may be abbreviated; seconds by default): `avg` in
/// 1/10000 s per packet.
fn limit_rate(s: &str) -> Result<u32, String> {
    let bad = || format!("bad rate `{s}` (NUMBER/second, /minute, /hour or /day)");
    let (n, unit) = s.split_once('/').unwrap_or((s, "second"));
    let mult = ["second", "minute", "hour", "day"]
        .iter()
        .zip([1u32, 60, 3600, 86400])
        .find(|(name, _)| !unit.is_empty() && name.len() >= unit.len() && name[..unit.len()].eq_ignore_ascii_case(unit))
        .map(|(_, m)| m)
        .ok_or_else(bad)?;
    let digits: &str = &n[..n.bytes().take_while(u8::is_ascii_digit).count()];
    let r: u32 = digits.parse().ok().filter(|&r| r > 0).ok_or_else(bad)?;
    let avg = (u64::from(XT_LIMIT_SCALE) * u64::from(mult) / u64::from(r)) as u32;
    if avg == 0 {
        return Err(format!("rate too fast `{s}` (iptables refuses it)"));
    }
    Ok(avg)
}

/// A `--tcp-flags` list: SYN, ACK, FIN, RST, URG, PSH, ECE, CWR, ALL, NONE, comma-separated.
fn tcp_flag_list(s: &str) -> Result<u8, String> {
    let mut bits = 0u8;
    for f in s.split(',') {
        bits |= match f.to_ascii_uppercase().as_str() {
            "FIN" => 0x01,
            "SYN" => 0x02,
            "RST" => 0x04,
            "PSH" => 0x08,
            "ACK" => 0x10,
            "URG" => 0x20,
            "ECE" => 0x40,
            "CWR" => 0x80,
            "ALL" => 0xff,
            "NONE" => 0,
            _ => return Err(format!("unknown TCP flag `{f}` (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, ALL, NONE)")),
        };
    }
    Ok(bits)
}

/// A connection state as `--state`/`--ctstate` take it (either case);
/// `--ctstate`'s SNAT and DNAT are read by the caller (`-m state` has none:
/// iptables says "Bad state").
fn ct_state(s: &str) -> Result<CtState, String> {
    match s.to_ascii_uppercase().as_str() {
        "UNTRACKED" => Ok(CtState::Untracked),
        _ => names::state(s).map_err(|_| {
            format!("bad state `{s}` (NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED; --ctstate also SNAT, DNAT)")
        }),
    }
}

/// Checks what only the whole line shows and puts the matches into `rule`.
pub fn finish(
    m: Matches,
    rule: &mut Rule,
    recent: &mut super::iptables_recent::RecentNames,
    hashlimit: &mut super::iptables_hashlimit::HashlimitNames,
) -> Result<(), Fault> {
    for inst in &m.instances {
        required(inst)?;
        let proto_is = |p: u8| rule.proto == ProtoMatch::OneOf(alloc::vec![p]);
        let ok = match inst.module {
            Module::Tcp => proto_is(proto::TCP),
            Module::Udp => proto_is(proto::UDP),
            Module::Icmp => proto_is(proto::ICMP),
            Module::Multiport => proto_is(proto::TCP) || proto_is(proto::UDP),
            Module::Tcpmss => proto_is(proto::TCP),
            _ => true,
        };
        let needs_ct = |g: &Opt| matches!(g, Opt::CtProto | Opt::CtTuple(_) | Opt::CtDir);
        if inst.module == Module::Conntrack && inst.given.iter().any(needs_ct) && !inst.given.contains(&Opt::CtState) {
            // Linux's xt_conntrack: without a connection (INVALID,
            // UNTRACKED) the match holds only by its `--ctstate`.
            rule.states &= state_bit(CtState::New) | state_bit(CtState::Established) | state_bit(CtState::Related);
        }
        if inst.module == Module::Owner {
            rule.folded.push(Folded::Owner(inst.owner));
            rule.residual.never |= !inst.owner.holds_for_own_packets();
        }
        if !ok && inst.explicit {
            let why = match inst.module {
                Module::Tcpmss => "the tcpmss match needs `-p tcp` (the kernel refuses it otherwise)".into(),
                Module::Multiport => "multiport needs `-p tcp` or `-p udp` (iptables also takes udplite, sctp and dccp, whose ports unifw does not read)".into(),
                md => format!("the {0} match needs `-p {0}` (iptables refuses it too)", md.name()),
            };
            return Err((inst.at, why));
        }
    }
    for p in &m.physdev {
        super::iptables_physdev::finish(p)?;
        rule.folded.push(Folded::Physdev(p.m));
    }
    hooks(&m, rule)?;
    let untracked_states = rule.states & unifw_core::flow::UNTRACKED_BIT != 0 || rule.states == 0x0f;
    if rule.residual.states.is_some() && rule.states != ANY_STATE && untracked_states {
        let at = m.instances.first().map_or(0, |i| i.at);
        return Err((at, "a `--ctstate` with SNAT or DNAT beside a state match naming UNTRACKED (or all four tracked states) is not supported by unifw".into()));
    }
    if let Some(r) = &m.recent {
        let at = m.instances.iter().position(|i| i.module == Module::Recent).unwrap_or(0);
        let later = m.instances.iter().skip(at + 1).any(|i| !matches!(i.module, Module::Comment | Module::Limit));
        let limit_after = m.instances.iter().skip(at + 1).any(|i| i.module == Module::Limit);
        let spec = super::iptables_recent::finish(r, recent, later)?;
        if limit_after && (spec.reap || spec.cmd != unifw_core::image::format::RECENT_RCHECK) {
            return Err((r.at, "`-m recent` that changes its table before `-m limit` is not supported by unifw (both change state and must be the rule's last match)".into()));
        }
        rule.residual.recent = Some(spec);
    }
    if let Some(h) = &m.hashlimit {
        let at = m.instances.iter().position(|i| i.module == Module::Hashlimit).unwrap_or(0);
        let later = m.instances.iter().skip(at + 1).any(|i| i.module != Module::Comment);
        rule.residual.hashlimit = Some(super::iptables_hashlimit::finish(h, hashlimit, &m.chain, later)?);
    }
    if let Some(st) = &m.string {
        rule.string = Some(super::iptables_string::finish(st, recent)?);
    }
    if let Some(c) = &m.connlimit {
        let at = m.instances.iter().position(|i| i.module == Module::Connlimit).unwrap_or(0);
        let later = m.instances.iter().skip(at + 1).any(|i| i.module != Module::Comment);
        rule.residual.connlimit = Some(super::iptables_connlimit::finish(c, later, recent)?);
    }
    if let Some((avg, burst)) = m.limit {
        let at = m.instances.iter().position(|i| i.module == Module::Limit).unwrap_or(0);
        let limit_at = m.instances.get(at).map_or(0, |i| i.at);
        if m.instances.iter().skip(at + 1).any(|i| i.module != Module::Comment) {
            recent.unsupported = Some("-m limit before other matches".into());
            return Err((limit_at, "`-m limit` before other matches is not supported by unifw (it must be the rule's last match: iptables spends its token before the matches after it, even on packets they refuse; move it after them)".into()));
        }
        let cost = user2credits(avg);
        let cap = user2credits(avg.wrapping_mul(burst));
        if burst == 0 || cap < cost {
            return Err((
                limit_at,
                format!(
                    "limit: burst {burst} with this rate overflows (the kernel refuses it: \"Overflow, try lower\")"
                ),
            ));
        }
        rule.residual.limit = Some(unifw_core::image::format::LimitSpec { cost, cap, slot: 0 });
    }
    rule.src = both_addrs(m.src);
    rule.dst = both_addrs(m.dst);
    rule.sport = both_ports(m.sport);
    rule.dport = both_ports(m.dport);
    rule.ports = m.either.into_iter().next();
    rule.icmp = match m.icmp.as_slice() {
        [] => None,
        [one] => Some(*one),
        [first, rest @ ..] if rest.iter().all(|x| x == first) => Some(*first),
        _ => {
            return Err((
                m.instances.last().map_or(0, |i| i.at),
                "several different `--icmp-type` matches in one rule are not supported by unifw".into(),
            ))
        }
    };
    Ok(())
}

/// Matches the kernel allows only at some hooks (`-m mac`: PREROUTING,
/// INPUT, FORWARD; `--limit-iface-in` the same; `--limit-iface-out`:
/// FORWARD, OUTPUT, POSTROUTING). Built-in chains are checked here; a user
/// chain is checked where the kernel checks it, by the hooks reaching it
/// (see `chains.rs`).
fn hooks(m: &Matches, rule: &Rule) -> Result<(), Fault> {
    let super::ast::RuleChain::Builtin(chain) = rule.chain else { return Ok(()) };
    // Linux's physdev_mt_check: `--physdev-out`/`--physdev-is-out` at
    // LOCAL_OUT need a plain `--physdev-is-bridged`.
    if let Some(p) = m.physdev.iter().find(|p| p.m.out_unbridged()).filter(|_| chain.name() == "OUTPUT") {
        let why = "`--physdev-out` and `--physdev-is-out` need `--physdev-is-bridged` in OUTPUT (the kernel refuses them there otherwise)";
        return Err((p.at, why.into()));
    }
    for inst in &m.instances {
        let (ok, what): (&[&str], &str) = match inst.module {
            Module::Mac => (&["PREROUTING", "INPUT", "FORWARD"], "mac match"),
            Module::Owner => (&["OUTPUT", "POSTROUTING"], "owner match"),
            Module::Addrtype if rule.residual.type_iface == 1 => {
                (&["PREROUTING", "INPUT", "FORWARD"], "`--limit-iface-in`")
            }
            Module::Addrtype if rule.residual.type_iface == 2 => {
                (&["OUTPUT", "FORWARD", "POSTROUTING"], "`--limit-iface-out`")
            }
            _ => continue,
        };
        if !ok.contains(&chain.name()) {
            return Err((
                inst.at,
                format!("the {what} works only in {} (the kernel refuses it in {})", ok.join(", "), chain.name()),
            ));
        }
    }
    Ok(())
}

fn required(inst: &Instance) -> Result<(), Fault> {
    let name = inst.module.name();
    let missing = match inst.module {
        Module::State if !inst.given.contains(&Opt::State) => "option `--state` must be specified",
        Module::Conntrack if inst.given.is_empty() => "at least one option is required",
        Module::Multiport if inst.given.is_empty() => "one of `--sports`, `--dports` or `--ports` is required",
        Module::Icmp if !inst.given.contains(&Opt::IcmpType) => "option `--icmp-type` must be specified",
        Module::Comment if !inst.given.contains(&Opt::Comment) => "option `--comment` must be specified",
        Module::Iprange if inst.given.is_empty() => "`--src-range` or `--dst-range` must be specified",
        Module::Length if inst.given.is_empty() => "option `--length` must be specified",
        Module::Ttl if inst.given.is_empty() => "one of `--ttl-eq`, `--ttl-lt`, `--ttl-gt` must be specified",
        Module::Pkttype if inst.given.is_empty() => "option `--pkt-type` must be specified",
        Module::Mac if inst.given.is_empty() => "option `--mac-source` must be specified",
        Module::Owner if !inst.given.iter().any(|g| matches!(g, Opt::UidOwner | Opt::GidOwner | Opt::SocketExists)) => {
            "at least one of `--uid-owner`, `--gid-owner` or `--socket-exists` is required"
        }
        Module::Mark | Module::Connmark if inst.given.is_empty() => "option `--mark` must be specified",
        Module::Tcpmss if inst.given.is_empty() => "option `--mss` must be specified",
        Module::Addrtype if !inst.given.iter().any(|g| matches!(g, Opt::SrcType | Opt::DstType)) => {
            "you must specify `--src-type` or `--dst-type`"
        }
        _ => return Ok(()),
    };
    Err((inst.at, format!("{name}: {missing} (iptables refuses the match without it)")))
}

/// Several address matches of one side: all must hold.
fn both_addrs(list: Vec<AddrMatch>) -> Option<AddrMatch> {
    if list.len() <= 1 {
        return list.into_iter().next();
    }
    let mut iv: Vec<(u64, u64)> = alloc::vec![(0, u64::from(u32::MAX))];
    for am in &list {
        let other: Vec<(u64, u64)> = addresses(Some(am)).iter().map(|p| span(*p)).collect();
        iv = intersect(&iv, &merge(other));
    }
    let mut prefixes = Vec::new();
    for (lo, hi) in iv {
        super::expand::to_prefixes(lo, hi, &mut prefixes);
    }
    Some(AddrMatch { negated: false, prefixes: prefixes.into() })
}

/// Several port matches of one side: all must hold (no range left: the
/// rule matches nothing).
fn both_ports(list: Vec<PortMatch>) -> Option<PortMatch> {
    if list.len() <= 1 {
        return list.into_iter().next();
    }
    let mut iv: Vec<(u64, u64)> = alloc::vec![(0, u64::from(u16::MAX))];
    for pm in &list {
        let other: Vec<(u64, u64)> = port_ranges(Some(pm)).iter().map(|&(a, b)| (u64::from(a), u64::from(b))).collect();
        iv = intersect(&iv, &other);
    }
    Some(PortMatch { negated: false, ranges: iv.into_iter().map(|(a, b)| (a as u16, b as u16)).collect() })
}

fn span(p: Prefix) -> (u64, u64) {
    let lo = u64::from(p.addr);
    (lo, lo + (1u64 << (32 - u32::from(p.len.min(32)))) - 1)
}

/// The intersection of two sorted lists of disjoint inclusive intervals.
fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while let (Some(&(alo, ahi)), Some(&(blo, bhi))) = (a.get(i), b.get(j)) {
        let (lo, hi) = (alo.max(blo), ahi.min(bhi));
        if lo <= hi {
            out.push((lo, hi));
        }
        if ahi < bhi {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// An address as iptables reads `-s`: dotted quad with up to four parts
/// (`10.1` = 10.1.0.0), `/LEN` or `/MASK`, host bits cleared (`0/0` is
/// any). Host names are refused: iptables would ask DNS, once, at load.
pub fn address(s: &str) -> Result<Prefix, String> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr = short_ipv4(a).ok_or_else(|| {
        if a.bytes().any(|b| b.is_ascii_alphabetic()) {
            format!("host name `{a}` refused: unifw resolves no names at build time (iptables would ask DNS once, at load); write its address")
        } else {
            format!("bad IPv4 address `{a}`")
        }
    })?;
    let len = match l {
        None => 32,
        Some(l) if l.contains('.') => {
            let m = names::ipv4(l)?;
            let len = m.leading_ones();
            if m.checked_shl(len).unwrap_or(0) != 0 {
                return Err(format!("netmask `{l}` is not contiguous"));
            }
            len as u8
        }
        Some(l) => names::number(l, 32).map_err(|_| format!("invalid mask `{l}` specified (0-32)"))? as u8,
    };
    Ok(Prefix::new(addr, len))
}

/// `a.b.c.d`, or fewer parts with the missing ones zero (`10.1`, `0`), as
/// iptables' own parser reads them.
fn short_ipv4(s: &str) -> Option<u32> {
    let mut out = 0u32;
    for (i, part) in s.split('.').enumerate() {
        if i == 4 || part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = part.parse().ok().filter(|&n| n <= 255)?;
        out |= n << (24 - 8 * i);
    }
    Some(out)
}

/// `A-B` of `-m iprange` as prefixes (a single `A` is the range A-A).
fn ip_range(s: &str) -> Result<Vec<Prefix>, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (lo, hi) = (names::ipv4(a)?, names::ipv4(b)?);
    if lo > hi {
        return Err(format!("range `{s}` is reversed and would never match (the kernel refuses it)"));
    }
    let mut out = Vec::new();
    super::expand::to_prefixes(u64::from(lo), u64::from(hi), &mut out);
    Ok(out)
}

/// A port as iptables reads it: a number 0-65535 or a service name of
/// `/etc/services` for `protos` (bit 0 tcp, bit 1 udp).
fn port(s: &str, protos: u8) -> Result<u16, String> {
    let bad = || format!("invalid port/service `{s}` (a number 0-65535 or a name of /etc/services)");
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return names::number(s, 65535).map(|n| n as u16).map_err(|_| bad());
    }
    names::service(s, protos).ok_or_else(bad)
}

/// `--sport`/`--dport`: `P`, `P:Q`, `:Q` or `P:` (iptables writes ranges
/// with `:`; `80-90` is refused as it refuses it).
fn port_range(s: &str, protos: u8) -> Result<(u16, u16), String> {
    let (lo, hi) = match s.split_once(':') {
        Some((lo, hi)) => (
            if lo.is_empty() { 0 } else { port(lo, protos)? },
            if hi.is_empty() { u16::MAX } else { port(hi, protos)? },
        ),
        None => {
            let p = port(s, protos)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("invalid port range `{s}` (min > max)"));
    }
    Ok((lo, hi))
}

/// Most ports of one multiport list (a range counts two), as in iptables.
const MULTIPORT_MAX: usize = 15;

fn multiport(s: &str, protos: u8) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    let mut count = 0;
    for item in s.split(',') {
        let (lo, hi) = match item.split_once(':') {
            Some((lo, hi)) => (port(lo, protos)?, port(hi, protos)?),
            None => {
                let p = port(item, protos)?;
                (p, p)
            }
        };
        let range = item.contains(':');
        if lo > hi || (range && lo == hi) {
            // xt_multiport ranges need min < max (iptables: "invalid portrange").
            return Err(format!("invalid port range `{item}` (min >= max; a multiport range needs min < max)"));
        }
        count += if range { 2 } else { 1 };
        out.push((lo, hi));
    }
    if count > MULTIPORT_MAX {
        return Err(format!(
            "too many ports in `{s}` (at most {MULTIPORT_MAX}, a range counts two; iptables refuses it too)"
        ));
    }
    Ok(out)
}
