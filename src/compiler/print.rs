//! Writes rules back out as text, in the native language or as iptables-save.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use unifw_core::flow::{Action, Chain};

use super::ast::{AddrMatch, Jump, PortMatch, ProtoMatch, Rule, RuleChain, Ruleset, ANY_STATE};
use super::names::{dotted, mac_text, prefix_text, protocol_name, reject_name};
use unifw_core::image::IfAddr;
use unifw_core::net::addr::Cidr;
use unifw_core::net::ReversePathFilter;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The native rules language.
    Unifw,
    /// `iptables-save` (loadable by `iptables-restore`).
    Iptables,
}

/// The whole ruleset as text; Err names the first rule iptables cannot express.
pub fn render(set: &Ruleset, format: Format) -> Result<String, String> {
    let mut out = render_head(set, format)?;
    for r in &set.rules {
        out.push_str(&render_rule_of(set, r, format)?);
        out.push('\n');
    }
    out.push_str(render_tail(format));
    Ok(out)
}

/// Everything before the rules.
pub fn render_head(set: &Ruleset, format: Format) -> Result<String, String> {
    let mut s = String::new();
    let policy = |a: Action| match a {
        Action::Accept => Ok("accept"),
        Action::Drop => Ok("drop"),
        Action::Reject(_) if format == Format::Unifw => Ok("reject"),
        Action::Reject(_) => Err(String::from("iptables chain policies cannot be REJECT")),
    };
    if format == Format::Iptables {
        if let Some(m) = set.metrics.first() {
            return Err(format!("iptables-save has no `metrics` statement (metrics on eth{})", m.interface));
        }
        let up = |a| policy(a).map(str::to_ascii_uppercase);
        let _ = write!(
            s,
            "*filter\n:INPUT {} [0:0]\n:FORWARD {} [0:0]\n:OUTPUT {} [0:0]\n",
            up(set.policy(Chain::Input))?,
            up(set.policy(Chain::Forward))?,
            up(set.policy(Chain::Output))?
        );
        for c in &set.chains {
            let _ = writeln!(s, ":{} - [0:0]", c.name);
        }
        return Ok(s);
    }
    for i in &set.interfaces {
        let mac = i.mac.map(|m| format!(" mac {}", mac_text(&m))).unwrap_or_default();
        let addr = match (i.addr, i.fallback) {
            (IfAddr::Static(Cidr { addr, prefix_len }), _) => format!("{}/{prefix_len}", dotted(addr)),
            (IfAddr::Dhcp, Some(f)) => {
                format!("dhcp fallback {}/{} after {}", dotted(f.addr.addr), f.addr.prefix_len, f.after_seconds)
            }
            (IfAddr::Dhcp, None) => "dhcp".into(),
            (IfAddr::Unconfigured, _) => "none".into(),
        };
        let mtu = i.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
        let reverse_path = match i.reverse_path {
            ReversePathFilter::Strict => String::new(),
            mode => format!(" rpfilter {}", mode.name()),
        };
        let _ = writeln!(s, "interface eth{}{mac} {addr}{mtu}{reverse_path}", i.index);
    }
    for i in set.interfaces.iter().filter(|i| i.wire_peer.is_some_and(|peer| peer > i.index)) {
        let _ = writeln!(s, "wire eth{} eth{}", i.index, i.wire_peer.unwrap_or(i.index));
    }
    for r in &set.routes {
        let _ = writeln!(s, "route {}/{} via {}", dotted(r.dest), r.prefix_len, dotted(r.gateway));
    }
    let _ = writeln!(
        s,
        "policy input {}\npolicy forward {}",
        policy(set.policy(Chain::Input))?,
        policy(set.policy(Chain::Forward))?
    );
    if set.policy(Chain::Output) != Action::Accept {
        let _ = writeln!(s, "policy output {}", policy(set.policy(Chain::Output))?);
    }
    if set.conntrack_max != super::ast::DEFAULT_CONNTRACK_MAX {
        let _ = writeln!(s, "conntrack max {}", set.conntrack_max);
    }
    for m in &set.metrics {
        let from: Vec<String> = m.from.iter().map(prefix_text).collect();
        let _ = writeln!(s, "metrics eth{} port {} from {}", m.interface, m.port, from.join(","));
    }
    Ok(s)
}

/// Everything after the rules.
pub fn render_tail(format: Format) -> &'static str {
    match format {
        Format::Unifw => "",
        Format::Iptables => "COMMIT\n",
    }
}

fn addrs(m: &AddrMatch) -> String {
    let list: Vec<String> = m.prefixes.iter().map(prefix_text).collect();
    list.join(",")
}

fn ports(m: &PortMatch, sep: char) -> String {
    let list: Vec<String> =
        m.ranges.iter().map(|&(a, b)| if a == b { format!("{a}") } else { format!("{a}{sep}{b}") }).collect();
    list.join(",")
}

fn bang(neg: bool) -> &'static str {
    if neg {
        "!"
    } else {
        ""
    }
}

fn state_list(bits: u8, upper: bool) -> String {
    let names = ["new", "established", "related", "invalid", "untracked", "snat", "dnat"];
    let list: Vec<String> = (0..7)
        .filter(|i| bits & (1 << i) != 0)
        .map(|i| if upper { names[i].to_ascii_uppercase() } else { names[i].into() })
        .collect();
    list.join(",")
}

fn proto_word(p: u8) -> String {
    protocol_name(p).map_or_else(|| format!("{p}"), String::from)
}

/// One rule of a built-in chain as a line (without the newline); rules of
/// user chains and jumps need their ruleset ([`render_rule_of`]).
pub fn render_rule(r: &Rule, format: Format) -> Result<String, String> {
    render_rule_of(&Ruleset::default(), r, format)
}

/// One rule of `set` as a line (without the newline).
pub fn render_rule_of(set: &Ruleset, r: &Rule, format: Format) -> Result<String, String> {
    let name = |n: u16| set.chains.get(usize::from(n)).map(|c| c.name.as_str()).ok_or("an undeclared user chain");
    if format == Format::Unifw && (r.jump.is_some() || matches!(r.chain, RuleChain::User(_))) {
        return Err(format!("user chains, jumps and RETURN exist only in iptables-save (the rule at line {})", r.line));
    }
    if let RuleChain::Builtin(c) = r.chain {
        if !matches!(c, Chain::Input | Chain::Forward | Chain::Output) {
            let what = format!("{} {}", c.table().name(), c.name());
            return Err(format!("rules of {what} cannot be printed yet (the rule at line {})", r.line));
        }
    }
    if r.residual.recent.is_some() {
        return Err(format!("rules with `-m recent` cannot be printed yet (the rule at line {})", r.line));
    }
    if format == Format::Unifw && r.ports.is_some() {
        return Err(format!("`-m multiport --ports` exists only in iptables-save (the rule at line {})", r.line));
    }
    if r.residual.hashlimit.is_some() {
        return Err(format!("rules with `-m hashlimit` cannot be printed yet (the rule at line {})", r.line));
    }
    let residual = r.residual != super::ast::Residual::default() || r.log_target.is_some() || r.string.is_some();
    if format == Format::Unifw && (residual || r.states & unifw_core::flow::UNTRACKED_BIT != 0 && r.states != ANY_STATE)
    {
        return Err(format!(
            "TCP flags, addrtype, mac, length, ttl, pkttype, limit, string, UNTRACKED and LOG exist only in iptables-save (the rule at line {})",
            r.line
        ));
    }
    match format {
        Format::Unifw => Ok(native_rule(r)),
        Format::Iptables => {
            let chain = match r.chain {
                RuleChain::Builtin(c) => c.name(),
                RuleChain::User(n) => name(n)?,
            };
            let target = match r.jump {
                None => None,
                Some(Jump::Call(n)) => Some(format!(" -j {}", name(n)?)),
                Some(Jump::Goto(n)) => Some(format!(" -g {}", name(n)?)),
                Some(Jump::Return) => Some(String::from(" -j RETURN")),
                Some(Jump::NoTrack) => Some(String::from(" -j NOTRACK")),
                Some(Jump::Continue) => Some(String::new()),
                Some(Jump::TcpMss(0)) => Some(String::from(" -j TCPMSS --clamp-mss-to-pmtu")),
                Some(Jump::TcpMss(mss)) => Some(format!(" -j TCPMSS --set-mss {mss}")),
                Some(Jump::Nat(_)) => {
                    return Err(format!("NAT rules cannot be printed yet (the rule at line {})", r.line))
                }
            };
            iptables_rule(r, chain, target)
        }
    }
}

fn native_rule(r: &Rule) -> String {
    let mut s = String::from(match r.chain {
        RuleChain::Builtin(Chain::Input) => "input ",
        RuleChain::Builtin(Chain::Output) => "output ",
        _ => "forward ",
    });
    s.push_str(match r.action {
        Action::Accept => "accept",
        Action::Drop => "drop",
        Action::Reject(_) => "reject",
    });
    if let Action::Reject(w) = r.action {
        let _ = write!(s, " with {}", reject_name(w));
    }
    match &r.proto {
        ProtoMatch::Any => {}
        ProtoMatch::OneOf(l)
            if l.len() == 1 && protocol_name(l[0]).is_some_and(|n| matches!(n, "tcp" | "udp" | "icmp")) =>
        {
            let _ = write!(s, " {}", proto_word(l[0]));
        }
        ProtoMatch::OneOf(l) => {
            let list: Vec<String> = l.iter().map(|&p| proto_word(p)).collect();
            let _ = write!(s, " proto {}", list.join(","));
        }
        ProtoMatch::Not(p) => {
            let _ = write!(s, " proto !{}", proto_word(*p));
        }
    }
    let parts: [(&str, Option<String>); 4] = [
        ("from", r.src.as_ref().map(|m| format!("{}{}", bang(m.negated), addrs(m)))),
        ("to", r.dst.as_ref().map(|m| format!("{}{}", bang(m.negated), addrs(m)))),
        ("sport", r.sport.as_ref().map(|m| format!("{}{}", bang(m.negated), ports(m, '-')))),
        ("dport", r.dport.as_ref().map(|m| format!("{}{}", bang(m.negated), ports(m, '-')))),
    ];
    for (kw, v) in parts {
        if let Some(v) = v {
            let _ = write!(s, " {kw} {v}");
        }
    }
    if let Some(m) = r.icmp {
        let name =
            super::names::ICMP_TYPES.iter().find(|(_, t, c)| *t == m.icmp_type && c.is_none()).map(|(n, _, _)| *n);
        let _ = match name {
            Some(n) => write!(s, " type {}{n}", bang(m.negated)),
            None => write!(s, " type {}{}", bang(m.negated), m.icmp_type),
        };
        if let Some(c) = m.code {
            let _ = write!(s, " code {c}");
        }
    }
    for (kw, m) in [("in", r.in_if), ("out", r.out_if)] {
        if let Some(m) = m {
            // An empty set (a name no NIC has) reads back as `lo`, which matches nothing too.
            let names: Vec<String> = m.indexes().map(|i| format!("eth{i}")).collect();
            let list = if names.is_empty() { String::from("lo") } else { names.join(",") };
            let _ = write!(s, " {kw} {}{list}", bang(m.negated));
        }
    }
    if r.states != ANY_STATE {
        let _ = write!(s, " state {}", state_list(r.states, false));
    }
    if r.log {
        s.push_str(" log");
    }
    s
}

/// The matches decided at compile time, as the rule wrote them.
fn folded_options(r: &Rule, s: &mut String) {
    use super::iptables_folded::Folded;
    let neg = |n: bool| if n { "! " } else { "" };
    let ids = |(lo, hi, _): (u32, u32, bool)| if lo == hi { format!("{lo}") } else { format!("{lo}-{hi}") };
    for f in &r.folded {
        let _ = match *f {
            Folded::Fragment { negated } => write!(s, " {}-f", neg(negated)),
            Folded::Physdev(p) => write!(s, "{}", p.render()),
            Folded::Mark { conn, value, mask, negated } => {
                write!(s, " -m {} {}--mark {value:#x}/{mask:#x}", if conn { "connmark" } else { "mark" }, neg(negated))
            }
            Folded::Owner(o) => {
                s.push_str(" -m owner");
                if let Some(u) = o.uid {
                    let _ = write!(s, " {}--uid-owner {}", neg(u.2), ids(u));
                }
                if let Some(g) = o.gid {
                    let _ = write!(s, " {}--gid-owner {}", neg(g.2), ids(g));
                }
                if o.suppl {
                    s.push_str(" --suppl-groups");
                }
                match o.socket {
                    Some(n) => write!(s, " {}--socket-exists", neg(n)),
                    None => Ok(()),
                }
            }
        };
    }
}

/// The residual matches as iptables-save writes them (`-m limit` last).
fn residual_options(r: &Rule, s: &mut String) {
    use unifw_core::flow::addrtype;
    let x = &r.residual;
    let neg = |n: bool| if n { "! " } else { "" };
    if let Some(st) = x.states.filter(|st| st & (unifw_core::flow::CT_SNAT | unifw_core::flow::CT_DNAT) != 0) {
        let _ = write!(s, " -m conntrack {}--ctstate {}", neg(st & 0x80 != 0), state_list(st & 0x7f, true));
    }
    let flags = |b: u8| {
        let names = [
            (0x01, "FIN"),
            (0x02, "SYN"),
            (0x04, "RST"),
            (0x08, "PSH"),
            (0x10, "ACK"),
            (0x20, "URG"),
            (0x40, "ECE"),
            (0x80, "CWR"),
        ];
        let l: Vec<&str> = names.iter().filter(|(bit, _)| b & bit != 0).map(|(_, n)| *n).collect();
        if l.is_empty() {
            String::from("NONE")
        } else {
            l.join(",")
        }
    };
    if let Some((mask, comp, n)) = x.tcp_flags {
        let _ = write!(s, " -m tcp {}--tcp-flags {} {}", neg(n), flags(mask), flags(comp));
    }
    if let Some((kind, n)) = x.tcp_option {
        let _ = write!(s, " -m tcp {}--tcp-option {kind}", neg(n));
    }
    if let Some((m, n)) = x.mac {
        let _ = write!(s, " -m mac {}--mac-source {}", neg(n), super::names::mac_text(&m).to_ascii_uppercase());
    }
    let types = |t: u16| {
        let names = [
            (addrtype::UNICAST, "UNICAST"),
            (addrtype::LOCAL, "LOCAL"),
            (addrtype::BROADCAST, "BROADCAST"),
            (addrtype::MULTICAST, "MULTICAST"),
        ];
        names.iter().filter(|(bit, _)| t & bit != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(",")
    };
    if x.src_type.is_some() || x.dst_type.is_some() {
        s.push_str(" -m addrtype");
        if let Some((t, n)) = x.src_type {
            let _ = write!(s, " {}--src-type {}", neg(n), types(t));
        }
        if let Some((t, n)) = x.dst_type {
            let _ = write!(s, " {}--dst-type {}", neg(n), types(t));
        }
        s.push_str(match x.type_iface {
            1 => " --limit-iface-in",
            2 => " --limit-iface-out",
            _ => "",
        });
    }
    if let Some((lo, hi, n)) = x.len {
        let _ = write!(s, " -m length {}--length {lo}:{hi}", neg(n));
    }
    if let Some((op, v, n)) = x.ttl {
        let _ =
            write!(s, " -m ttl {}--ttl-{} {v}", neg(n), ["eq", "eq", "lt", "gt"].get(usize::from(op)).unwrap_or(&"eq"));
    }
    if let Some(t) = x.pkt_types {
        // The allowed types, or the one left out when two are allowed.
        let names = ["unicast", "broadcast", "multicast"];
        let (negated, bits) = if t.count_ones() == 2 { (true, 0x07 & !t) } else { (false, t) };
        if let Some(i) = (0..3).find(|i| bits >> i & 1 != 0) {
            let _ = write!(s, " -m pkttype {}--pkt-type {}", neg(negated), names[i]);
        } else {
            let _ = write!(s, " -m pkttype {}--pkt-type otherhost", neg(t == 0x07));
        }
    }
    if let Some((lo, hi, n)) = x.tcp_mss {
        let _ = write!(s, " -m tcpmss {}--mss {lo}:{hi}", neg(n));
    }
    if let Some(spec) = &r.string {
        s.push_str(&super::iptables_string::render(spec));
    }
    folded_options(r, s);
    if let Some(l) = x.limit {
        // The rate back from the cost (avg * 3.2 credits), in the first
        // unit that states it exactly, as iptables-save picks its unit.
        let avg = (u64::from(l.cost) * 10 + 16) / 32;
        let burst = l.cap.checked_div(l.cost).unwrap_or(1);
        let units = [(1u64, "second"), (60, "minute"), (3600, "hour"), (86_400, "day")];
        let (rate, unit) = units
            .iter()
            .map(|&(m, u)| (10_000 * m / avg.max(1), u, 10_000 * m % avg.max(1) == 0))
            .find(|&(r, _, exact)| r >= 1 && exact)
            .map_or((1, "day"), |(r, u, _)| (r, u));
        let _ = write!(s, " -m limit --limit {rate}/{unit} --limit-burst {burst}");
    }
    if let Some(c) = x.connlimit {
        // As libxt_connlimit saves it (the parser keeps masks contiguous).
        let bound = if c.invert { "upto" } else { "above" };
        let side = if c.dest { "daddr" } else { "saddr" };
        let mask = c.mask.leading_ones();
        let _ = write!(s, " -m connlimit --connlimit-{bound} {} --connlimit-mask {mask} --connlimit-{side}", c.limit);
    }
}

fn iptables_rule(r: &Rule, chain: &str, target: Option<String>) -> Result<String, String> {
    let mut s = format!("-A {chain}");
    for (opt, m) in [("-s", &r.src), ("-d", &r.dst)] {
        if let Some(m) = m {
            if m.negated && m.prefixes.len() != 1 {
                return Err("iptables cannot negate an address list".into());
            }
            let _ = write!(s, " {}{opt} {}", if m.negated { "! " } else { "" }, addrs(m));
        }
    }
    for (opt, m) in [("-i", r.in_if), ("-o", r.out_if)] {
        if let Some(m) = m {
            let name = match (m.set.count_ones(), m.indexes().next()) {
                (0, _) => String::from("lo"),
                (1, Some(i)) => format!("eth{i}"),
                _ => return Err("iptables names one interface per rule".into()),
            };
            let _ = write!(s, " {}{opt} {name}", if m.negated { "! " } else { "" });
        }
    }
    let p = match &r.proto {
        ProtoMatch::Any => None,
        ProtoMatch::OneOf(l) if l.len() == 1 => Some(l[0]),
        ProtoMatch::OneOf(_) => return Err("iptables cannot match a protocol list".into()),
        ProtoMatch::Not(p) => {
            let _ = write!(s, " ! -p {}", proto_word(*p));
            None
        }
    };
    if let Some(p) = p {
        let name = proto_word(p);
        let _ = write!(s, " -p {name}");
        if r.sport.is_some() || r.dport.is_some() || r.icmp.is_some() {
            let _ = write!(s, " -m {name}");
        }
    }
    if let Some(m) = &r.ports {
        let _ = write!(s, " -m multiport {}--ports {}", if m.negated { "! " } else { "" }, ports(m, ':'));
    }
    // A list needs its own `-m multiport` (one multiport may not hold both --sports and --dports).
    for (one, many, m) in [("--sport", "--sports", &r.sport), ("--dport", "--dports", &r.dport)] {
        if let Some(m) = m {
            let neg = if m.negated { "! " } else { "" };
            let _ = if m.ranges.len() > 1 {
                write!(s, " -m multiport {neg}{many} {}", ports(m, ':'))
            } else {
                write!(s, " {neg}{one} {}", ports(m, ':'))
            };
        }
    }
    if let Some(m) = r.icmp {
        let code = m.code.map(|c| format!("/{c}")).unwrap_or_default();
        let _ = write!(s, " {}--icmp-type {}{code}", if m.negated { "! " } else { "" }, m.icmp_type);
    }
    // `--ctproto` shares its match with the states: a packet without a
    // connection passes it by them alone (xt_conntrack).
    if r.states != ANY_STATE || r.residual.ct_proto.is_some() || r.residual.ct_tuple.is_some() {
        let _ = write!(s, " -m conntrack --ctstate {}", state_list(r.states, true));
        if let Some((p, negated)) = r.residual.ct_proto {
            let _ = write!(s, " {}--ctproto {p}", if negated { "! " } else { "" });
        }
        if let Some(t) = &r.residual.ct_tuple {
            s.push_str(&super::iptables_ct_tuple::render(t));
        }
    }
    residual_options(r, &mut s);
    if r.log {
        return Err("iptables-save has no log flag (LOG is a separate target)".into());
    }
    if let Some(l) = r.log_target {
        let nflog = l.level > 7;
        let _ = write!(s, " -j {}", if nflog { "NFLOG" } else { "LOG" });
        if l.prefix_len > 0 {
            let _ = write!(s, " --{}-prefix \"{}\"", if nflog { "nflog" } else { "log" }, l.prefix());
        }
        if !nflog && l.level != 4 {
            let _ = write!(s, " --log-level {}", l.level);
        }
        return Ok(s);
    }
    if let Some(t) = target {
        s.push_str(&t);
        return Ok(s);
    }
    let _ = match r.action {
        Action::Accept => write!(s, " -j ACCEPT"),
        Action::Drop => write!(s, " -j DROP"),
        Action::Reject(w) => {
            let kind = if w == unifw_core::flow::RejectWith::TcpReset {
                String::from("tcp-reset")
            } else {
                format!("icmp-{}", reject_name(w))
            };
            write!(s, " -j REJECT --reject-with {kind}")
        }
    };
    Ok(s)
}
