//! Names and numbers shared by both input formats: protocols, ICMP types,
//! reject kinds, states, interfaces, addresses and ports.

use alloc::format;
use alloc::string::String;

use unifw_core::flow::{CtState, RejectWith};

use super::ast::Prefix;

/// Protocol names iptables knows without the C library, and those unifw
/// prints (`/etc/protocols` has the rest, see [`super::services`]).
const PROTOCOLS: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("icmpv6", 58),
    ("ospf", 89),
    ("sctp", 132),
    ("mh", 135),
    ("udplite", 136),
];

/// A protocol by name (`tcp`, either case, as in `/etc/protocols`) or number (`6`).
pub fn protocol(s: &str) -> Result<u8, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(&(_, n)) = PROTOCOLS.iter().find(|(name, _)| *name == lower) {
        return Ok(n);
    }
    if let Ok(i) = super::services::PROTOCOLS.binary_search_by(|(name, _)| (*name).cmp(lower.as_str())) {
        return Ok(super::services::PROTOCOLS[i].1);
    }
    number(s, 255)
        .map(|n| n as u8)
        .map_err(|_| format!("unknown protocol `{s}` (a name such as tcp, udp, icmp, or a number 0-255)"))
}

/// The name of a protocol number, if it has one.
pub fn protocol_name(p: u8) -> Option<&'static str> {
    PROTOCOLS.iter().find(|(_, n)| *n == p).map(|(name, _)| *name)
}

/// A tcp (bit 0) or udp (bit 1) service's port by its `/etc/services` name
/// (case matters, as in the C library), if `protos` includes its protocol.
pub fn service(s: &str, protos: u8) -> Option<u16> {
    let services = super::services::SERVICES;
    let i = services.binary_search_by(|(name, _, _)| (*name).cmp(s)).ok()?;
    services.get(i).filter(|(_, _, p)| p & protos != 0).map(|(_, port, _)| *port)
}

/// ICMP type names as iptables lists them (`iptables -p icmp -h`), with the
/// code where the name implies one; aliases (`ping`) follow their type.
pub const ICMP_TYPES: &[(&str, u8, Option<u8>)] = &[
    ("echo-reply", 0, None),
    ("pong", 0, None),
    ("destination-unreachable", 3, None),
    ("network-unreachable", 3, Some(0)),
    ("host-unreachable", 3, Some(1)),
    ("protocol-unreachable", 3, Some(2)),
    ("port-unreachable", 3, Some(3)),
    ("fragmentation-needed", 3, Some(4)),
    ("source-route-failed", 3, Some(5)),
    ("network-unknown", 3, Some(6)),
    ("host-unknown", 3, Some(7)),
    ("network-prohibited", 3, Some(9)),
    ("host-prohibited", 3, Some(10)),
    ("TOS-network-unreachable", 3, Some(11)),
    ("TOS-host-unreachable", 3, Some(12)),
    ("communication-prohibited", 3, Some(13)),
    ("host-precedence-violation", 3, Some(14)),
    ("precedence-cutoff", 3, Some(15)),
    ("source-quench", 4, None),
    ("redirect", 5, None),
    ("network-redirect", 5, Some(0)),
    ("host-redirect", 5, Some(1)),
    ("TOS-network-redirect", 5, Some(2)),
    ("TOS-host-redirect", 5, Some(3)),
    ("echo-request", 8, None),
    ("ping", 8, None),
    ("router-advertisement", 9, None),
    ("router-solicitation", 10, None),
    ("time-exceeded", 11, None),
    ("ttl-exceeded", 11, None),
    ("ttl-zero-during-transit", 11, Some(0)),
    ("ttl-zero-during-reassembly", 11, Some(1)),
    ("parameter-problem", 12, None),
    ("ip-header-bad", 12, Some(0)),
    ("required-option-missing", 12, Some(1)),
    ("timestamp-request", 13, None),
    ("timestamp-reply", 14, None),
    ("address-mask-request", 17, None),
    ("address-mask-reply", 18, None),
];

/// An ICMP type by name or number (`8`, `echo-request`, `3/3` for type/code).
pub fn icmp_type(s: &str) -> Result<(u8, Option<u8>), String> {
    if let Some(&(_, t, c)) = ICMP_TYPES.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(s)) {
        return Ok((t, c));
    }
    icmp_number(s)
}

fn icmp_number(s: &str) -> Result<(u8, Option<u8>), String> {
    let bad = || format!("unknown ICMP type `{s}` (a name such as echo-request, or a number 0-255, or TYPE/CODE)");
    match s.split_once('/') {
        Some((t, c)) => Ok((number(t, 255).map_err(|_| bad())? as u8, Some(number(c, 255).map_err(|_| bad())? as u8))),
        None => Ok((number(s, 255).map_err(|_| bad())? as u8, None)),
    }
}

/// An ICMP type as iptables reads `--icmp-type`: a name or an unambiguous
/// beginning of one (either case; `echo-req`), or `TYPE[/CODE]`.
pub fn icmp_type_iptables(s: &str) -> Result<(u8, Option<u8>), String> {
    if let Some(&(_, t, c)) = ICMP_TYPES.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(s)) {
        return Ok((t, c));
    }
    let starts = |n: &str| n.len() > s.len() && n.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes());
    let mut hits = ICMP_TYPES.iter().filter(|(n, _, _)| !s.is_empty() && starts(n));
    match (hits.next(), hits.next()) {
        (Some(&(_, t, c)), None) => Ok((t, c)),
        (Some(a), Some(b)) => Err(format!("ambiguous ICMP type `{s}`: `{}` or `{}`?", a.0, b.0)),
        _ => icmp_number(s),
    }
}

/// A reject kind by its native name (`port-unreachable`) or iptables name (`icmp-port-unreachable`).
pub fn reject_with(s: &str) -> Result<RejectWith, String> {
    let bare = s.strip_prefix("icmp-").unwrap_or(s);
    Ok(match bare {
        "port-unreachable" => RejectWith::PortUnreachable,
        "admin-prohibited" => RejectWith::AdminProhibited,
        "net-unreachable" => RejectWith::NetUnreachable,
        "host-unreachable" => RejectWith::HostUnreachable,
        "proto-unreachable" => RejectWith::ProtoUnreachable,
        "net-prohibited" => RejectWith::NetProhibited,
        "host-prohibited" => RejectWith::HostProhibited,
        "tcp-reset" if s == bare => RejectWith::TcpReset,
        _ => {
            return Err(format!(
                "unsupported reject kind `{s}` (port-unreachable, admin-prohibited, net-unreachable, host-unreachable, proto-unreachable, net-prohibited, host-prohibited, tcp-reset)"
            ))
        }
    })
}

/// The reject kinds of iptables' REJECT target (`--reject-with`), each with
/// its short alias, exactly as iptables accepts them.
const IPTABLES_REJECT: &[(&str, &str, RejectWith)] = &[
    ("icmp-net-unreachable", "net-unreach", RejectWith::NetUnreachable),
    ("icmp-host-unreachable", "host-unreach", RejectWith::HostUnreachable),
    ("icmp-proto-unreachable", "proto-unreach", RejectWith::ProtoUnreachable),
    ("icmp-port-unreachable", "port-unreach", RejectWith::PortUnreachable),
    ("icmp-net-prohibited", "net-prohib", RejectWith::NetProhibited),
    ("icmp-host-prohibited", "host-prohib", RejectWith::HostProhibited),
    ("tcp-reset", "tcp-rst", RejectWith::TcpReset),
    ("icmp-admin-prohibited", "admin-prohib", RejectWith::AdminProhibited),
];

/// A `--reject-with` kind, as iptables reads it.
pub fn reject_with_iptables(s: &str) -> Result<RejectWith, String> {
    IPTABLES_REJECT.iter().find(|(long, short, _)| s == *long || s == *short).map(|r| r.2).ok_or_else(|| {
        let kinds: alloc::vec::Vec<&str> = IPTABLES_REJECT.iter().map(|r| r.0).collect();
        format!("unknown reject type `{s}` (iptables knows {} and their short forms)", kinds.join(", "))
    })
}

/// The native name of a reject kind.
pub fn reject_name(r: RejectWith) -> &'static str {
    match r {
        RejectWith::PortUnreachable => "port-unreachable",
        RejectWith::AdminProhibited => "admin-prohibited",
        RejectWith::NetUnreachable => "net-unreachable",
        RejectWith::HostUnreachable => "host-unreachable",
        RejectWith::ProtoUnreachable => "proto-unreachable",
        RejectWith::NetProhibited => "net-prohibited",
        RejectWith::HostProhibited => "host-prohibited",
        RejectWith::TcpReset => "tcp-reset",
    }
}

/// A connection state by name (either case).
pub fn state(s: &str) -> Result<CtState, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "new" => CtState::New,
        "established" => CtState::Established,
        "related" => CtState::Related,
        "invalid" => CtState::Invalid,
        "untracked" => CtState::Untracked,
        _ => return Err(format!("unknown connection state `{s}` (new, established, related, invalid, untracked)")),
    })
}

/// Highest interface index a rule can name (eth0 ..= eth14).
pub const MAX_IF: u8 = 14;

/// An interface name `ethN` -> N.
pub fn interface(s: &str) -> Result<u8, String> {
    let bad = || format!("bad interface name `{s}`: unifw names its interfaces eth0 to eth{MAX_IF}");
    let n = s.strip_prefix("eth").ok_or_else(bad)?;
    if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0')) {
        return Err(bad());
    }
    let i = number(n, u32::from(MAX_IF)).map_err(|_| bad())?;
    Ok(i as u8)
}

/// A decimal number no greater than `max`.
pub fn number(s: &str, max: u32) -> Result<u32, String> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a number, found `{s}`"));
    }
    match s.parse::<u64>() {
        Ok(n) if n <= u64::from(max) => Ok(n as u32),
        _ => Err(format!("{s} is out of range (0-{max})")),
    }
}

/// A dotted-quad IPv4 address.
pub fn ipv4(s: &str) -> Result<u32, String> {
    let mut out = 0u32;
    let mut parts = 0;
    for part in s.split('.') {
        parts += 1;
        if parts > 4 || part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad IPv4 address `{s}`"));
        }
        let n: u32 = part.parse().map_err(|_| format!("bad IPv4 address `{s}`"))?;
        if n > 255 {
            return Err(format!("bad IPv4 address `{s}`: {n} is more than 255"));
        }
        out = (out << 8) | n;
    }
    if parts != 4 {
        return Err(format!("bad IPv4 address `{s}` (expected four numbers like 10.1.0.2)"));
    }
    Ok(out)
}

/// An address or prefix: `10.1.0.2`, `10.1.0.0/24`, `10.1.0.0/255.255.255.0`.
/// Host bits past the prefix are an error (they are usually a typo).
pub fn prefix(s: &str) -> Result<Prefix, String> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr = ipv4(a)?;
    let len = match l {
        None => 32,
        Some(l) if l.contains('.') => {
            netmask_len(ipv4(l)?).ok_or_else(|| format!("netmask `{l}` is not contiguous"))?
        }
        Some(l) => number(l, 32).map_err(|_| format!("bad prefix length `/{l}` (0-32)"))? as u8,
    };
    let p = Prefix::new(addr, len);
    if p.addr != addr {
        return Err(format!("`{s}` has host bits set past /{len} (did you mean {}/{len}?)", dotted(p.addr)));
    }
    Ok(p)
}

fn netmask_len(m: u32) -> Option<u8> {
    let len = m.leading_ones();
    (m.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

/// `a.b.c.d` of a host-order address.
pub fn dotted(a: u32) -> String {
    format!("{}.{}.{}.{}", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255)
}

/// `a.b.c.d/len`, or just `a.b.c.d` for /32.
pub fn prefix_text(p: &Prefix) -> String {
    if p.len == 32 {
        dotted(p.addr)
    } else {
        format!("{}/{}", dotted(p.addr), p.len)
    }
}

/// A MAC address: six two-digit hex bytes separated by colons
/// (`52:54:00:12:34:56`, either case). A group (multicast) address is an
/// error: no NIC has one.
pub fn mac(s: &str) -> Result<[u8; 6], String> {
    let out = unifw_core::cmdline::parse_mac(s)
        .ok_or_else(|| format!("bad MAC address `{s}` (expected six hex bytes like 52:54:00:12:34:56)"))?;
    if out[0] & 1 != 0 {
        return Err(format!("`{s}` is a group (multicast) address; a NIC's MAC address is unicast"));
    }
    Ok(out)
}

/// `52:54:00:12:34:56` of a MAC address.
pub fn mac_text(m: &[u8; 6]) -> String {
    format!("{}", unifw_core::net::addr::MacAddr(*m))
}

/// A port range `80`, `1024-65535` or `1024:65535` (`sep` lists the accepted separators).
pub fn port_range(s: &str) -> Result<(u16, u16), String> {
    let port = |t: &str| number(t, 65535).map(|n| n as u16).map_err(|e| format!("bad port: {e}"));
    match s.split_once(['-', ':']) {
        Some((lo, hi)) => {
            let lo = if lo.is_empty() { 0 } else { port(lo)? };
            let hi = if hi.is_empty() { 65535 } else { port(hi)? };
            if lo > hi {
                return Err(format!("port range `{s}` is empty ({lo} > {hi})"));
            }
            Ok((lo, hi))
        }
        None => port(s).map(|p| (p, p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ports() {
        assert_eq!(prefix("10.1.0.0/24"), Ok(Prefix::new(0x0a01_0000, 24)));
        assert_eq!(prefix("10.1.0.0/255.255.0.0"), Ok(Prefix::new(0x0a01_0000, 16)));
        assert!(prefix("10.1.0.1/24").unwrap_err().contains("did you mean 10.1.0.0/24"));
        assert!(prefix("10.1.0.0/33").is_err() && prefix("10.1.0").is_err() && prefix("10.1.0.256").is_err());
        assert_eq!(port_range("1024:65535"), Ok((1024, 65535)));
        assert!(port_range("70000").is_err() && port_range("90-80").is_err());
        assert_eq!(interface("eth14"), Ok(14));
        assert!(interface("eth15").is_err() && interface("eth01").is_err() && interface("wlan0").is_err());
        assert_eq!(icmp_type("3/4"), Ok((3, Some(4))));
        assert_eq!(reject_with("icmp-admin-prohibited"), Ok(RejectWith::AdminProhibited));
        assert!(reject_with("icmp-tcp-reset").is_err());
        assert_eq!(reject_with("host-prohibited"), Ok(RejectWith::HostProhibited));
        assert_eq!(reject_with_iptables("host-prohib"), Ok(RejectWith::HostProhibited));
        assert_eq!(reject_with_iptables("icmp-net-prohibited"), Ok(RejectWith::NetProhibited));
        assert_eq!(reject_with_iptables("tcp-rst"), Ok(RejectWith::TcpReset));
        assert!(reject_with_iptables("port-unreachable").is_err(), "iptables refuses it");
    }

    #[test]
    fn iptables_names() {
        assert_eq!(protocol("IPV6-ICMP"), Ok(58));
        assert_eq!(protocol("icmpv6"), Ok(58));
        assert_eq!(protocol("vrrp"), Ok(112));
        assert!(protocol("256").is_err() && protocol("nosuch").is_err());
        assert_eq!(service("ssh", 1), Some(22));
        assert_eq!(service("www", 3), Some(80));
        assert_eq!(service("bootps", 1), None, "bootps is a udp service only");
        assert_eq!(service("bootps", 2), Some(67));
        assert_eq!(service("SSH", 3), None, "case matters");
        assert_eq!(icmp_type_iptables("ping"), Ok((8, None)));
        assert_eq!(icmp_type_iptables("echo-req"), Ok((8, None)));
        assert_eq!(icmp_type_iptables("HOST-PROHIBITED"), Ok((3, Some(10))));
        assert!(icmp_type_iptables("echo").unwrap_err().contains("ambiguous"));
        assert_eq!(icmp_type_iptables("3/13"), Ok((3, Some(13))));
        assert!(icmp_type_iptables("256").is_err() && icmp_type_iptables("3/300").is_err());
        assert!(icmp_type_iptables("8/").is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(mac("52:54:00:12:34:5F"), Ok([0x52, 0x54, 0, 0x12, 0x34, 0x5f]));
        assert_eq!(mac_text(&[0x52, 0x54, 0, 0x12, 0x34, 0x5f]), "52:54:00:12:34:5f");
        for bad in [
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52-54-00-12-34-56",
            "52:54:0:12:34:56",
            "52:54:00:12:34:xy",
            "+2:54:00:12:34:56",
            "",
        ] {
            assert!(mac(bad).unwrap_err().contains("bad MAC address"), "{bad}");
        }
        assert!(mac("01:00:5e:00:00:01").unwrap_err().contains("group"));
    }
}
