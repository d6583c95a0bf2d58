//! iptables-save lines against what iptables itself does with them: each
//! case gives the verdict of iptables 1.8.9 (nf_tables) on this project's
//! machines, measured by loading the line in a scratch network namespace
//! (`ip netns exec NS iptables-restore < f`; `--test` alone misses the
//! kernel's checks, marked "kernel"), and unifw's verdict. unifw refuses
//! every line iptables refuses, and accepts every line iptables accepts
//! unless it names a feature unifw leaves unsupported (its error says so).
//! The cases are written for unifw, not taken from iptables' own tests.

#[path = "rules_common/mod.rs"]
mod rules_common;

use rules_common::{check_syntax_cases, compile_ipt as compile, ipt_file as file, SyntaxCase, OK};
use unifw_compiler as rules;
use unifw_core::flow::{proto, Action, Chain, CtState, PacketKey, RejectWith};
use unifw_core::image::Image;

/// `(rule line, iptables' error or OK, unifw's error or "" for loads)`.
const CASES: &[SyntaxCase] = &[
    // Protocols: 0 and `all` are every protocol; names as /etc/protocols.
    ("-A INPUT -p 0 -j DROP", OK, ""),
    ("-A INPUT ! -p 0 -j DROP", Some("rule would never match protocol"), "would never match"),
    ("-A INPUT -p all -j DROP", OK, ""),
    ("-A INPUT -p ALL -j DROP", OK, ""),
    ("-A INPUT ! -p all -j DROP", Some("rule would never match protocol"), "would never match"),
    ("-A INPUT -p TCP -j DROP", OK, ""),
    ("-A INPUT -p ipv6-icmp -j DROP", OK, ""),
    ("-A INPUT -p icmpv6 -j DROP", OK, ""),
    ("-A INPUT -p 256 -j DROP", Some("unknown protocol \"256\" specified"), "unknown protocol"),
    ("-A INPUT -p tcp -p udp -j DROP", Some("multiple -p flags not allowed"), "multiple -p flags"),
    // Repeated flags and options.
    ("-A INPUT -s 10.0.0.1 -s 10.0.0.2 -j ACCEPT", Some("multiple -s flags not allowed"), "multiple -s flags"),
    ("-A INPUT -i eth0 -i eth1 -j ACCEPT", Some("multiple -i flags not allowed"), "multiple -i flags"),
    ("-A INPUT -p tcp --sport 1 --sport 2 -j ACCEPT", Some("Only one `--source-port' allowed"), "given twice"),
    ("-A INPUT -m state --state NEW --state RELATED -j ACCEPT", Some("can only be used once"), "given twice"),
    ("-A INPUT -m conntrack --ctstate NEW --ctstate RELATED -j ACCEPT", Some("can only be used once"), "given twice"),
    ("-A INPUT -m comment --comment a --comment b -j ACCEPT", Some("can only be used once"), "given twice"),
    // Several matches of one module: all must hold.
    ("-A INPUT -m state --state NEW -m state --state ESTABLISHED -j ACCEPT", OK, ""),
    ("-A INPUT -m comment --comment a -m comment --comment b -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp -m multiport --dports 1,2 -m multiport --sports 3 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp -m tcp --dport 22 -m tcp --sport 5 -j ACCEPT", OK, ""),
    // A match without its required option.
    ("-A INPUT -m state -j ACCEPT", Some("state: option \"--state\" must be specified"), "must be specified"),
    ("-A INPUT -m conntrack -j ACCEPT", Some("conntrack: At least one option is required"), "at least one option"),
    ("-A INPUT -p tcp -m multiport -j ACCEPT", Some("multiport expection an option"), "is required"),
    ("-A INPUT -p icmp -m icmp -j ACCEPT", Some("icmp: option \"--icmp-type\" must be specified"), "must be specified"),
    ("-A INPUT -m comment -j ACCEPT", Some("comment: option \"--comment\" must be specified"), "must be specified"),
    ("-A INPUT -m iprange -j ACCEPT", Some("You must specify `--src-range' or `--dst-range'"), "must be specified"),
    // Ports: a:b, names of /etc/services, nothing else.
    ("-A INPUT -p tcp --dport -1 -j ACCEPT", Some("invalid port/service `-1' specified"), "invalid port/service"),
    ("-A INPUT -p tcp --dport 80-90 -j ACCEPT", Some("invalid port/service `80-90' specified"), "invalid port/service"),
    ("-A INPUT -p tcp --dport 65536 -j ACCEPT", Some("invalid port/service `65536' specified"), "invalid port/service"),
    ("-A INPUT -p tcp --dport 22,23 -j ACCEPT", Some("invalid port/service `22,23' specified"), "invalid port/service"),
    ("-A INPUT -p tcp --dport ! 22 -j ACCEPT", Some("invalid port/service `!' specified"), "invalid port/service"),
    ("-A INPUT -p tcp --dport 90:80 -j ACCEPT", Some("invalid portrange (min > max)"), "min > max"),
    ("-A INPUT -p tcp --dport 80:90 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp --dport :90 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp --dport 80: -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp --dport 0 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp ! --dport 22 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp --dport ssh -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp --dport ssh:http -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp --dport www -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp --dport SSH -j ACCEPT", Some("invalid port/service `SSH' specified"), "invalid port/service"),
    (
        "-A INPUT -p tcp --dport bootps -j ACCEPT",
        Some("invalid port/service `bootps' specified"),
        "invalid port/service",
    ),
    ("-A INPUT -p udp --dport bootps -j ACCEPT", OK, ""),
    ("-A INPUT -p udp --dport http -j ACCEPT", OK, ""),
    (
        "-A INPUT -p tcp --dport nosuchsvc -j ACCEPT",
        Some("invalid port/service `nosuchsvc' specified"),
        "invalid port/service",
    ),
    ("-A INPUT -p 6 --dport 22 -j ACCEPT", OK, ""),
    ("-A INPUT -p 17 -m udp --dport 22 -j ACCEPT", OK, ""),
    // Options only after their match (or the -p that loads it).
    ("-A INPUT --dport 22 -j ACCEPT", Some("unknown option \"--dport\""), "unknown option `--dport`"),
    ("-A INPUT --dport 22 -p tcp -j ACCEPT", Some("unknown option \"--dport\""), "unknown option `--dport`"),
    ("-A INPUT --state NEW -j ACCEPT", Some("unknown option \"--state\""), "unknown option `--state`"),
    ("-A INPUT -m state --ctstate NEW -j ACCEPT", Some("unknown option \"--ctstate\""), "unknown option `--ctstate`"),
    ("-A INPUT --icmp-type 8 -j ACCEPT", Some("unknown option \"--icmp-type\""), "unknown option"),
    ("-A INPUT -m tcp --dport 22 -j ACCEPT", Some("TCP match requires '-p tcp'"), "needs `-p tcp`"),
    ("-A INPUT -p udp -m tcp --dport 22 -j ACCEPT", Some("TCP match requires '-p tcp'"), "needs `-p tcp`"),
    ("-A INPUT -m tcp -p tcp --dport 22 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp -m tcp -j ACCEPT", OK, ""),
    (
        "-A INPUT -m icmp --icmp-type 8 -j ACCEPT",
        Some("kernel: RULE_APPEND failed (Invalid argument)"),
        "needs `-p icmp`",
    ),
    (
        "-A INPUT -p tcp -m icmp --icmp-type 8 -j ACCEPT",
        Some("kernel: RULE_APPEND failed (Invalid argument)"),
        "needs `-p icmp`",
    ),
    // Multiport.
    (
        "-A INPUT -m multiport --dports 1,2 -j ACCEPT",
        Some("multiport needs `-p tcp', `-p udp', ..."),
        "multiport needs",
    ),
    (
        "-A INPUT -p all -m multiport --dports 1,2 -j ACCEPT",
        Some("multiport needs `-p tcp', `-p udp', ..."),
        "multiport needs",
    ),
    ("-A INPUT -p tcp -m multiport --dports 1,2 --sports 3 -j ACCEPT", Some("cannot be used together"), "given twice"),
    ("-A INPUT -p tcp -m multiport --dports 1:5,8 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp -m multiport --dports ssh,domain -j ACCEPT", OK, ""),
    (
        "-A INPUT -p udp -m multiport --dports ssh,domain -j ACCEPT",
        Some("invalid port/service `ssh' specified"),
        "invalid port/service",
    ),
    ("-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j ACCEPT", OK, ""),
    (
        "-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -j ACCEPT",
        Some("too many ports specified"),
        "too many ports",
    ),
    (
        "-A INPUT -p tcp -m multiport --dports 1:2,3:4,5:6,7:8,9:10,11:12,13:14,15:16 -j ACCEPT",
        Some("too many ports specified"),
        "too many ports",
    ),
    // -m conntrack's tuples (iptables reads addresses as getaddrinfo does).
    ("-A FORWARD -m conntrack --ctorigdstport 25 -j ACCEPT", OK, ""),
    ("-A FORWARD -m conntrack ! --ctorigdstport 25:30 ! --ctorigsrc 10.0.0.0/8 -j ACCEPT", OK, ""),
    ("-A FORWARD -m conntrack --ctrepldst 10.1.2.3/255.255.0.0 --ctreplsrcport smtp -j ACCEPT", OK, ""),
    ("-A FORWARD -m conntrack --ctorigdstport 30:25 -j ACCEPT", OK, ""),
    ("-A FORWARD -m conntrack --ctorigdstport :25 --ctorigsrcport 1024: -j ACCEPT", OK, ""),
    ("-A FORWARD -m conntrack --ctorigsrc 10.1 --ctreplsrc 0/0 -j ACCEPT", OK, ""),
    ("-A FORWARD -m conntrack --ctdir ORIGINAL -j ACCEPT", OK, ""),
    ("-A FORWARD -m conntrack --ctstate NEW --ctdir reply -j ACCEPT", OK, ""),
    (
        "-A FORWARD -m conntrack ! --ctdir REPLY -j ACCEPT",
        Some("option \"--ctdir\" cannot be inverted"),
        "cannot be inverted",
    ),
    (
        "-A FORWARD -m conntrack --ctorigdstport 25,26 -j ACCEPT",
        Some("Port \"25,26\" does not resolve"),
        "invalid port",
    ),
    (
        "-A FORWARD -m conntrack --ctorigsrc 10.1.2.3,10.2.0.0/16 -j ACCEPT",
        Some("getaddrinfo: Name or service not known"),
        "bad IPv4",
    ),
    ("-A FORWARD -m conntrack --ctorigsrc localhost -j ACCEPT", OK, "host name `localhost` refused"),
    (
        "-A FORWARD -m conntrack --ctorigdstport 25 --ctorigdstport 26 -j ACCEPT",
        Some("option \"--ctorigdstport\" can only be used once"),
        "given twice",
    ),
    ("-A FORWARD -m conntrack --ctorigdstport 25 -m conntrack --ctorigdstport 20:30 -j ACCEPT", OK, ""),
    ("-A FORWARD -m conntrack --ctorigdst 10.0.0.1/0.255.0.0 -j ACCEPT", OK, "not contiguous"),
    ("-A FORWARD -m conntrack --ctexpire 10 -j ACCEPT", OK, "not supported by unifw"),
    // --ports: the source or the destination port, same list rules.
    ("-A INPUT -p tcp -m multiport --ports 1,2 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp -m multiport ! --ports 22,80:90 -j ACCEPT", OK, ""),
    ("-A INPUT -p udp -m multiport --ports domain -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp -m multiport --ports ssh,http -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp -m multiport --ports 1,2,3,4,5,6,7,8,9,10,11,12,13,14:15 -j ACCEPT", OK, ""),
    (
        "-A INPUT -p tcp -m multiport --ports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -j ACCEPT",
        Some("too many ports specified"),
        "too many ports",
    ),
    ("-A INPUT -p tcp -m multiport --ports 90:80 -j ACCEPT", Some("invalid portrange specified"), "min >= max"),
    ("-A INPUT -p tcp -m multiport --ports 80:80 -j ACCEPT", Some("invalid portrange specified"), "min >= max"),
    ("-A INPUT -p tcp -m multiport --dports 0:0 -j ACCEPT", Some("invalid portrange specified"), "min >= max"),
    ("-A INPUT -p tcp --dport 5:5 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp -m multiport --ports :80 -j ACCEPT", Some("invalid port/service `'"), "invalid port"),
    ("-A INPUT -m multiport --ports 22 -j ACCEPT", Some("multiport needs `-p tcp', ..."), "multiport needs"),
    (
        "-A INPUT -p tcp -m multiport --ports 22 --sports 80 -j ACCEPT",
        Some("\"--source-ports\" cannot be used together with \"--ports\""),
        "given twice",
    ),
    (
        "-A INPUT -p tcp -m multiport --ports 22 -m multiport --ports 80 -j ACCEPT",
        OK,
        "several `--ports` matches in one rule are not supported",
    ),
    ("-A INPUT -p tcp -m multiport --ports 22 -m multiport --dports 80 -j ACCEPT", OK, ""),
    // ICMP types as iptables names them.
    ("-A INPUT -p icmp --icmp-type ping -j ACCEPT", OK, ""),
    ("-A INPUT -p icmp --icmp-type echo-req -j ACCEPT", OK, ""),
    ("-A INPUT -p icmp --icmp-type ECHO-REQUEST -j ACCEPT", OK, ""),
    ("-A INPUT -p icmp --icmp-type any -j ACCEPT", OK, ""),
    ("-A INPUT -p icmp -m icmp --icmp-type host-prohibited -j ACCEPT", OK, ""),
    ("-A INPUT -p icmp --icmp-type 3/13 -j ACCEPT", OK, ""),
    ("-A INPUT -p icmp ! --icmp-type 8 -j ACCEPT", OK, ""),
    ("-A INPUT -p icmp --icmp-type echo -j ACCEPT", Some("Ambiguous ICMP type `echo'"), "ambiguous ICMP type"),
    ("-A INPUT -p icmp --icmp-type 256 -j ACCEPT", Some("Unknown ICMP type `256'"), "unknown ICMP type"),
    ("-A INPUT -p icmp --icmp-type 3/300 -j ACCEPT", Some("Unknown ICMP code `3/300'"), "unknown ICMP type"),
    ("-A INPUT -p icmp --icmp-type 8/ -j ACCEPT", Some("Unknown ICMP code `8/'"), "unknown ICMP type"),
    // Addresses.
    ("-A INPUT -s 0/0 -j ACCEPT", OK, ""),
    ("-A INPUT -s 0.0.0.0/0 -j ACCEPT", OK, ""),
    ("-A INPUT -s 10.1.0.1/24 -j ACCEPT", OK, ""),
    ("-A INPUT -s 10.1 -j ACCEPT", OK, ""),
    ("-A INPUT -s 10.1.0.0/255.255.0.0 -j ACCEPT", OK, ""),
    ("-A INPUT -s 10.1.0.0/33 -j ACCEPT", Some("invalid mask `33' specified"), "invalid mask"),
    (
        "-A INPUT ! -s 10.0.0.1,10.0.0.2 -j ACCEPT",
        Some("! not allowed with multiple source or destination IP addresses"),
        "not allowed with several",
    ),
    ("-A INPUT -s localhost -j ACCEPT", OK, "host name `localhost` refused"),
    ("-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.9 -j ACCEPT", OK, ""),
    ("-A INPUT -m iprange ! --dst-range 10.0.0.1-10.0.0.9 -j ACCEPT", OK, ""),
    ("-A INPUT -m iprange --src-range 10.0.0.1 -j ACCEPT", OK, ""),
    (
        "-A INPUT -m iprange --src-range 10.0.0.9-10.0.0.1 -j ACCEPT",
        Some("kernel: xt_iprange: range is reversed and will never match"),
        "reversed",
    ),
    // States.
    ("-A INPUT -m state --state new -j ACCEPT", OK, ""),
    ("-A INPUT -m state ! --state NEW -j ACCEPT", OK, ""),
    ("-A INPUT -m state --state NEW,BOGUS -j ACCEPT", Some("Bad state \"BOGUS\""), "bad state `BOGUS`"),
    ("-A INPUT -m conntrack --ctstate NEW,RELATED -j ACCEPT", OK, ""),
    ("-A INPUT -m state --state UNTRACKED -j ACCEPT", OK, ""),
    ("-A INPUT -m conntrack --ctstate DNAT -j ACCEPT", OK, ""),
    ("-A INPUT -m state --state DNAT -j ACCEPT", Some("Bad state \"DNAT\""), "bad state `DNAT`"),
    ("-A INPUT -m conntrack --ctstatus CONFIRMED -j ACCEPT", OK, "`--ctstatus` is not supported by unifw"),
    // Interfaces.
    ("-A INPUT -i 0123456789abcde -j ACCEPT", OK, ""),
    ("-A INPUT -i 0123456789abcdef -j ACCEPT", Some("must be shorter than IFNAMSIZ (15)"), "longer than 15"),
    ("-A INPUT -i eth+ -j ACCEPT", OK, ""),
    ("-A INPUT -i + -j ACCEPT", OK, ""),
    ("-A INPUT -i lo -j ACCEPT", OK, ""),
    ("-A INPUT ! -i lo -j ACCEPT", OK, ""),
    // Reject kinds and their short forms.
    ("-A INPUT -p tcp -j REJECT --reject-with tcp-reset", OK, ""),
    ("-A INPUT -p tcp -j REJECT --reject-with tcp-rst", OK, ""),
    (
        "-A INPUT -j REJECT --reject-with tcp-reset",
        Some("kernel: RULE_APPEND failed (Invalid argument)"),
        "needs `-p tcp`",
    ),
    ("-A INPUT -j REJECT --reject-with icmp-net-prohibited", OK, ""),
    ("-A INPUT -j REJECT --reject-with icmp-host-prohibited", OK, ""),
    ("-A INPUT -j REJECT --reject-with icmp-admin-prohibited", OK, ""),
    ("-A INPUT -j REJECT --reject-with net-unreach", OK, ""),
    ("-A INPUT -j REJECT --reject-with host-unreach", OK, ""),
    ("-A INPUT -j REJECT --reject-with port-unreach", OK, ""),
    ("-A INPUT -j REJECT --reject-with proto-unreach", OK, ""),
    ("-A INPUT -j REJECT --reject-with net-prohib", OK, ""),
    ("-A INPUT -j REJECT --reject-with host-prohib", OK, ""),
    ("-A INPUT -j REJECT --reject-with admin-prohib", OK, ""),
    (
        "-A INPUT -j REJECT --reject-with port-unreachable",
        Some("unknown reject type \"port-unreachable\""),
        "unknown reject type",
    ),
    ("-A INPUT -j REJECT --reject-with bogus", Some("unknown reject type \"bogus\""), "unknown reject type"),
    ("-A INPUT -j ACCEPT --reject-with tcp-reset", Some("unknown option \"--reject-with\""), "needs `-j REJECT`"),
    // iptables-save escapes quotes inside a quoted comment.
    ("-A INPUT -m comment --comment \"say \\\"hi\\\" \\\\\" -j ACCEPT", OK, ""),
    // TCP flags and options (checked with iptables-legacy 1.8.9 in a netns).
    ("-A INPUT -p tcp --syn -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp ! --syn -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp --tcp-flags syn,ack syn -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp --tcp-flags ALL NONE -j DROP", OK, ""),
    ("-A INPUT -p tcp ! --tcp-flags ALL ALL -j DROP", OK, ""),
    ("-A INPUT -p tcp --tcp-flags SYN -j ACCEPT", Some("--tcp-flags requires two args."), "needs two arguments"),
    ("-A INPUT -p tcp --tcp-flags SYN,FOO SYN -j ACCEPT", Some("Unknown TCP flag `FOO'"), "unknown TCP flag"),
    (
        "-A INPUT -p tcp --syn --tcp-flags ALL NONE -j ACCEPT",
        Some("Only one of `--syn' or `--tcp-flags'  allowed"),
        "only one of `--syn`",
    ),
    (
        "-A INPUT -p tcp --tcp-flags ALL NONE --tcp-flags ALL ALL -j ACCEPT",
        Some("Only one of `--syn' or `--tcp-flags'  allowed"),
        "only one of `--syn`",
    ),
    ("-A INPUT --syn -j ACCEPT", Some("unknown option \"--syn\""), "unknown option `--syn`"),
    ("-A INPUT -p udp --syn -j ACCEPT", Some("unknown option \"--syn\""), "unknown option `--syn`"),
    ("-A INPUT -p tcp --tcp-option 8 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp ! --tcp-option 255 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp --tcp-option 0 -j DROP", Some("Bad TCP option \"0\""), "bad TCP option"),
    ("-A INPUT -p tcp --tcp-option 256 -j DROP", Some("Bad TCP option \"256\""), "bad TCP option"),
    (
        "-A INPUT -p tcp --tcp-option 8 ! --tcp-option 3 -j ACCEPT",
        Some("Only one `--tcp-option' allowed"),
        "only one `--tcp-option`",
    ),
    // Address types.
    ("-A INPUT -m addrtype --dst-type LOCAL -j ACCEPT", OK, ""),
    ("-A INPUT -m addrtype --src-type local,UNICAST -j ACCEPT", OK, ""),
    ("-A INPUT -m addrtype ! --dst-type BROADCAST,MULTICAST -j ACCEPT", OK, ""),
    ("-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT", OK, ""),
    ("-A FORWARD -m addrtype --dst-type LOCAL --limit-iface-out -j ACCEPT", OK, ""),
    (
        "-A INPUT -m addrtype --dst-type LOCAL --limit-iface-out -j ACCEPT",
        Some("kernel: line failed"),
        "works only in OUTPUT, FORWARD, POSTROUTING",
    ),
    (
        "-A FORWARD -m addrtype --dst-type LOCAL --limit-iface-in --limit-iface-out -j ACCEPT",
        Some("option \"--limit-iface-in\" cannot be used together with \"--limit-iface-out\""),
        "cannot be used together",
    ),
    (
        "-A INPUT -m addrtype --limit-iface-in -j ACCEPT",
        Some("addrtype: you must specify --src-type or --dst-type"),
        "must specify `--src-type`",
    ),
    (
        "-A INPUT -m addrtype -j ACCEPT",
        Some("addrtype: you must specify --src-type or --dst-type"),
        "must specify `--src-type`",
    ),
    ("-A INPUT -m addrtype --src-type local,FOO -j ACCEPT", Some("addrtype: bad type \"FOO\""), "bad address type"),
    ("-A INPUT -m addrtype --dst-type ANYCAST -j ACCEPT", OK, ""),
    ("-A INPUT -m addrtype --dst-type UNSPEC,LOCAL -j ACCEPT", OK, ""),
    ("-A INPUT -m addrtype ! --dst-type BLACKHOLE -j ACCEPT", OK, ""),
    // MAC, length, TTL, packet type.
    ("-A INPUT -m mac --mac-source 00:11:22:33:44:55 -j ACCEPT", OK, ""),
    ("-A INPUT -m mac ! --mac-source 00:11:22:33:44:55 -j ACCEPT", OK, ""),
    ("-A FORWARD -m mac --mac-source 0:1:2:3:4:5 -j ACCEPT", OK, ""),
    (
        "-A INPUT -m mac --mac-source 00:11:22:33:44 -j ACCEPT",
        Some("Invalid MAC address specified."),
        "invalid MAC address",
    ),
    (
        "-A INPUT -m mac --mac-source 00:11:22:33:44:5G -j ACCEPT",
        Some("Invalid MAC address specified."),
        "invalid MAC address",
    ),
    ("-A INPUT -m mac -j ACCEPT", Some("mac: option \"--mac-source\" must be specified"), "must be specified"),
    ("-A INPUT -m length --length 100 -j ACCEPT", OK, ""),
    ("-A INPUT -m length --length :5 -j ACCEPT", OK, ""),
    ("-A INPUT -m length --length 5: -j ACCEPT", OK, ""),
    ("-A INPUT -m length ! --length 5 -j ACCEPT", OK, ""),
    ("-A INPUT -m length --length 10:5 -j ACCEPT", OK, ""),
    ("-A INPUT -m length --length 65536 -j ACCEPT", Some("length: bad value for option \"--length\""), "65535"),
    ("-A INPUT -m length -j ACCEPT", Some("length: option \"--length\" must be specified"), "must be specified"),
    ("-A INPUT -m ttl --ttl-eq 64 -j ACCEPT", OK, ""),
    ("-A INPUT -m ttl ! --ttl-eq 5 -j ACCEPT", OK, ""),
    ("-A INPUT -m ttl --ttl-lt 5 -j ACCEPT", OK, ""),
    ("-A INPUT -m ttl --ttl-gt 5 -j ACCEPT", OK, ""),
    (
        "-A INPUT -m ttl ! --ttl-lt 5 -j ACCEPT",
        Some("ttl: option \"--ttl-lt\" cannot be inverted."),
        "only allowed with `--ttl-eq`",
    ),
    (
        "-A INPUT -m ttl --ttl-lt 5 --ttl-gt 3 -j ACCEPT",
        Some("option \"--ttl-lt\" cannot be used together with \"--ttl-gt\""),
        "only one of",
    ),
    ("-A INPUT -m ttl --ttl-eq 256 -j ACCEPT", Some("ttl: bad value for option \"--ttl-eq\""), "invalid TTL"),
    ("-A INPUT -m pkttype --pkt-type unicast -j ACCEPT", OK, ""),
    ("-A INPUT -m pkttype --pkt-type host -j ACCEPT", OK, ""),
    ("-A INPUT -m pkttype --pkt-type Multicast -j ACCEPT", OK, ""),
    ("-A INPUT -m pkttype ! --pkt-type broadcast -j ACCEPT", OK, ""),
    ("-A INPUT -m pkttype --pkt-type otherhost -j ACCEPT", OK, ""),
    ("-A INPUT -m pkttype --pkt-type foo -j ACCEPT", Some("Bad packet type 'foo'"), "bad packet type"),
    // States: UNTRACKED (raw NOTRACK) is a state.
    ("-A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT", OK, ""),
    ("-A INPUT -m state --state NEW,UNTRACKED -j ACCEPT", OK, ""),
    ("-A INPUT -m conntrack ! --ctstate UNTRACKED -j ACCEPT", OK, ""),
    // Limits.
    ("-A INPUT -m limit -j ACCEPT", OK, ""),
    ("-A INPUT -m limit --limit 3/min --limit-burst 10 -j ACCEPT", OK, ""),
    ("-A INPUT -m limit --limit 5 -j ACCEPT", OK, ""),
    ("-A INPUT -m limit --limit 1/sec -j ACCEPT", OK, ""),
    ("-A INPUT -m limit --limit 1/m -j ACCEPT", OK, ""),
    ("-A INPUT -m limit --limit 10000/s --limit-burst 10000 -j ACCEPT", OK, ""),
    ("-A INPUT -p tcp --dport 22 -m state --state NEW -m limit --limit 3/min -j ACCEPT", OK, ""),
    ("-A INPUT -m limit --limit 1/minutes -j ACCEPT", Some("bad rate \"1/minutes\"'"), "bad rate"),
    ("-A INPUT -m limit --limit 0/s -j ACCEPT", Some("bad rate \"0/s\"'"), "bad rate"),
    ("-A INPUT -m limit --limit 10001/s -j ACCEPT", Some("Rate too fast \"10001/s\""), "rate too fast"),
    (
        "-A INPUT -m limit ! --limit 5 -j ACCEPT",
        Some("limit: option \"--limit\" cannot be inverted."),
        "does not support invert",
    ),
    (
        "-A INPUT -m limit --limit 1/s --limit-burst 10001 -j ACCEPT",
        Some("limit: bad value for option \"--limit-burst\""),
        "invalid burst",
    ),
    ("-A INPUT -m limit --limit 1/s --limit-burst 0 -j ACCEPT", Some("kernel: line failed"), "overflows"),
    ("-A INPUT -m limit --limit 1/d --limit-burst 10000 -j ACCEPT", Some("kernel: line failed"), "overflows"),
    ("-A INPUT -m limit --limit 1/s -p tcp --dport 22 -j ACCEPT", OK, ""),
    ("-A INPUT -m limit --limit 1/s -p tcp --dport 22 -j RETURN", OK, "must be the rule's last match"),
    ("-N C\n-A INPUT -m limit --limit 1/s -p tcp --dport 22 -g C", OK, "must be the rule's last match"),
    // -m recent (iptables-legacy 1.8.9 on Linux 6.18, in a scratch namespace).
    ("-A INPUT -m recent --set -j DROP", OK, ""),
    ("-A INPUT -m recent --rcheck -j DROP", OK, ""),
    ("-A INPUT -m recent ! --rcheck --seconds 0x10 --hitcount 010 -j DROP", OK, ""),
    ("-A INPUT -m recent --update --seconds 60 --hitcount 4 --rttl --name SSH --rdest -j DROP", OK, ""),
    ("-A INPUT -m recent --rcheck --reap --seconds 3 -j DROP", OK, ""),
    ("-A INPUT -m recent --remove --name x -j ACCEPT", OK, ""),
    ("-A INPUT -m recent --set --mask 255.255.0.0 --rsource --rdest -j DROP", OK, ""),
    ("-A INPUT -m recent --set --mask 16 --name a.b -j DROP", OK, ""),
    ("-A INPUT -m recent --rcheck --hitcount 1000 -j DROP", OK, ""),
    ("-A INPUT -m recent --rcheck --hitcount 65535 -j DROP", OK, "exceed unifw's bound"),
    ("-A INPUT -m recent --rcheck --hitcount 65536 -j DROP", Some("kernel: line failed"), "larger than allowed"),
    ("-A INPUT -m recent -j DROP", Some("recent: you must specify one of `--set'"), "you must specify one of"),
    (
        "-A INPUT -m recent --set --rcheck -j DROP",
        Some("option \"--set\" cannot be used together with \"--rcheck\""),
        "cannot be used together",
    ),
    ("-A INPUT -m recent --set --seconds 5 -j DROP", Some("kernel: line failed"), "only go with `--rcheck`"),
    ("-A INPUT -m recent --remove --hitcount 2 -j DROP", Some("kernel: line failed"), "only go with `--rcheck`"),
    (
        "-A INPUT -m recent --rcheck --reap -j DROP",
        Some("option \"--reap\" also requires \"--seconds\""),
        "also requires",
    ),
    ("-A INPUT -m recent --rcheck --seconds 0 -j DROP", Some("bad value for option \"--seconds\""), "bad value"),
    ("-A INPUT -m recent --rcheck --seconds 1x -j DROP", Some("bad value for option \"--seconds\""), "bad value"),
    ("-A INPUT -m recent --rcheck --hitcount -1 -j DROP", Some("bad value for option \"--hitcount\""), "bad value"),
    (
        "-A INPUT -m recent --set --rttl -j DROP",
        Some("option \"--rttl\" cannot be used together with \"--set\""),
        "cannot be used together",
    ),
    (
        "-A INPUT -m recent --rcheck ! --rttl -j DROP",
        Some("option \"--rttl\" cannot be inverted"),
        "cannot be inverted",
    ),
    ("-A INPUT -m recent --set ! --name x -j DROP", Some("option \"--name\" cannot be inverted"), "cannot be inverted"),
    (
        "-A INPUT -m recent --set --name x --name y -j DROP",
        Some("option \"--name\" can only be used once"),
        "only be used once",
    ),
    (
        "-A INPUT -m recent --set --rdest --rdest -j DROP",
        Some("option \"--rdest\" can only be used once"),
        "only be used once",
    ),
    ("-A INPUT -m recent --set --name a/b -j DROP", Some("kernel: line failed"), "refused by the kernel"),
    ("-A INPUT -m recent --set --name .. -j DROP", Some("kernel: line failed"), "refused by the kernel"),
    ("-A INPUT ! -m recent --set -j DROP", Some("unexpected ! flag before --match"), "not allowed before `-m`"),
    ("-A INPUT -m recent --set -m recent --rcheck -j DROP", OK, ""),
    ("-A INPUT -m recent --set -m recent --rcheck -m recent --rcheck -j DROP", OK, "several `-m recent`"),
    ("-A INPUT -p tcp -m recent --set -m tcp --dport 22 -j DROP", OK, ""),
    ("-A INPUT -m recent --rcheck --seconds 5 -p tcp -m tcp --dport 22 -j DROP", OK, ""),
    ("-A INPUT -m recent --rcheck --seconds 5 --reap -m tcp -p tcp --dport 22 -j DROP", OK, ""),
    ("-A INPUT -m recent --rcheck -m limit --limit 1/s -j DROP", OK, ""),
    ("-A INPUT -m recent --set -m limit --limit 1/s -j DROP", OK, ""),
    // LOG and NFLOG.
    ("-A INPUT -j LOG", OK, ""),
    ("-A INPUT -j LOG --log-prefix \"IPT: \" --log-level 7", OK, ""),
    ("-A INPUT -j LOG --log-level warning --log-tcp-sequence --log-tcp-options --log-ip-options --log-uid", OK, ""),
    ("-A INPUT -j LOG --log-prefix 1234567890123456789012345678901234567890", OK, ""),
    ("-A INPUT -j LOG --log-level panic", OK, ""),
    (
        "-A INPUT -j LOG --log-prefix \"\"",
        Some("Argument must have a minimum length of 1 characters"),
        "at least 1 character",
    ),
    ("-A INPUT -j LOG --log-level 8", Some("log level \"8\" unknown"), "log level `8` unknown"),
    ("-A INPUT -j LOG --log-level warn", Some("log level \"warn\" unknown"), "unknown"),
    ("-A INPUT -j LOG --log-level err", Some("log level \"err\" unknown"), "unknown"),
    ("-A INPUT --log-prefix x -j LOG", Some("unknown option \"--log-prefix\""), "unknown option `--log-prefix`"),
    (
        "-A INPUT -j LOG --log-prefix a --log-prefix b",
        Some("LOG: option \"--log-prefix\" can only be used once."),
        "given twice",
    ),
    ("-A INPUT -j NFLOG --nflog-group 5 --nflog-prefix x --nflog-threshold 0", OK, ""),
    ("-A INPUT -j NFLOG --nflog-group 70000", Some("NFLOG: bad value for option \"--nflog-group\""), "bad value"),
    ("-A INPUT -j LOG --nflog-group 5", Some("unknown option \"--nflog-group\""), "unknown option `--nflog-group`"),
    // Fragments: judged whole, so `-f` never matches (Linux with conntrack).
    ("-A INPUT -f -j DROP", OK, ""),
    ("-A INPUT ! -f -j DROP", OK, ""),
    ("-A INPUT --fragment -j DROP", OK, ""),
    ("-A INPUT -p tcp -f --dport 22 -j DROP", OK, ""),
    ("-A INPUT -f -f -j DROP", Some("multiple -f flags not allowed"), "multiple -f flags"),
    ("-A INPUT -f ! -f -j DROP", Some("multiple -f flags not allowed"), "multiple -f flags"),
    // Owner: OUTPUT (and POSTROUTING) only, as the kernel checks.
    ("-A OUTPUT -m owner --uid-owner 1000 -j REJECT", OK, ""),
    ("-A OUTPUT -m owner ! --uid-owner 0-100 -j DROP", OK, ""),
    ("-A OUTPUT -m owner --gid-owner 5 --suppl-groups -j DROP", OK, ""),
    ("-A OUTPUT -m owner --socket-exists -j DROP", OK, ""),
    ("-A OUTPUT -m owner ! --socket-exists -j DROP", OK, ""),
    ("-A OUTPUT -m owner --gid-owner 5 ! --uid-owner 3 -j DROP", OK, ""),
    ("-A OUTPUT -m owner --uid-owner 4294967294 -j DROP", OK, ""),
    ("-A INPUT -m owner --uid-owner 0 -j DROP", Some("kernel: line failed"), "works only in OUTPUT, POSTROUTING"),
    ("-A FORWARD -m owner --uid-owner 0 -j DROP", Some("kernel: line failed"), "works only in OUTPUT, POSTROUTING"),
    ("-N X\n-A X -m owner --uid-owner 0 -j DROP\n-A INPUT -j X", Some("kernel: line failed"), "reached from"),
    ("-N X\n-A X -m owner --uid-owner 0 -j DROP\n-A OUTPUT -j X", OK, ""),
    ("-A OUTPUT -m owner --uid-owner 5-3 -j DROP", Some("kernel: line failed"), "reversed"),
    (
        "-A OUTPUT -m owner -j DROP",
        Some("owner: At least one of --uid-owner, --gid-owner or --socket-exists is required"),
        "at least one of",
    ),
    (
        "-A OUTPUT -m owner --suppl-groups -j DROP",
        Some("you need to use --gid-owner first"),
        "needs `--gid-owner` first",
    ),
    (
        "-A OUTPUT -m owner --gid-owner 0 ! --suppl-groups -j DROP",
        Some("option \"--suppl-groups\" cannot be inverted"),
        "cannot be inverted",
    ),
    (
        "-A OUTPUT -m owner --uid-owner 0 --uid-owner 1 -j DROP",
        Some("option \"--uid-owner\" can only be used once"),
        "given twice",
    ),
    ("-A OUTPUT -m owner --uid-owner 4294967295 -j DROP", Some("Bad value for \"--uid-owner\" option"), "bad user id"),
    // iptables resolves names with getpwnam; unifw reads no user database.
    ("-A OUTPUT -m owner --uid-owner root -j DROP", OK, "user name `root` refused"),
    // Marks: every mark is 0 in unifw (nothing sets one).
    ("-A INPUT -m mark --mark 1 -j DROP", OK, ""),
    ("-A INPUT -m mark --mark 1/0x3 -j DROP", OK, ""),
    ("-A INPUT -m mark ! --mark 0x1/0x3 -j DROP", OK, ""),
    ("-A INPUT -m mark --mark 010 -j DROP", OK, ""),
    ("-A INPUT -m mark --mark 3/1 -j DROP", OK, ""),
    ("-A INPUT -m connmark --mark 0xe1f1 -j DROP", OK, ""),
    ("-A INPUT -m mark -j DROP", Some("mark: option \"--mark\" must be specified"), "must be specified"),
    ("-A INPUT -m connmark -j DROP", Some("connmark: option \"--mark\" must be specified"), "must be specified"),
    ("-A INPUT -m mark --mark 0x100000000 -j DROP", Some("mark: bad integer value for option \"--mark\""), "bad mark"),
    ("-A INPUT -m mark --mark foo -j DROP", Some("mark: bad integer value for option \"--mark\""), "bad mark"),
    ("-A INPUT -m mark --mark 1/ -j DROP", Some("mark: bad integer value for option \"--mark\""), "bad mark"),
    ("-A INPUT -m mark --mark -1 -j DROP", Some("mark: bad integer value for option \"--mark\""), "bad mark"),
    // TCP MSS: `-p tcp` required by the kernel.
    ("-A INPUT -p tcp -m tcpmss --mss 100 -j DROP", OK, ""),
    ("-A INPUT -p tcp -m tcpmss --mss :50 -j DROP", OK, ""),
    ("-A INPUT -p tcp -m tcpmss --mss 50: -j DROP", OK, ""),
    ("-A INPUT -p tcp -m tcpmss --mss 0x10 -j DROP", OK, ""),
    ("-A INPUT -p tcp -m tcpmss ! --mss 536:65535 -j DROP", OK, ""),
    ("-A INPUT -m tcpmss --mss 100 -j DROP", Some("kernel: line failed"), "needs `-p tcp`"),
    ("-A INPUT -p udp -m tcpmss --mss 100 -j DROP", Some("kernel: line failed"), "needs `-p tcp`"),
    ("-A INPUT -p tcp -m tcpmss --mss 100:50 -j DROP", Some("tcpmss: invalid range given"), "invalid range"),
    ("-A INPUT -p tcp -m tcpmss --mss 65536 -j DROP", Some("tcpmss: bad value for option \"--mss\""), "bad MSS"),
    ("-A INPUT -p tcp -m tcpmss --mss 1-5 -j DROP", Some("Argument to \"--mss\" has unexpected characters"), "bad MSS"),
    ("-A INPUT -p tcp -m tcpmss -j DROP", Some("tcpmss: option \"--mss\" must be specified"), "must be specified"),
    // The connection's protocol (NAT-free: the tuples' options stay refused).
    ("-A INPUT -m conntrack --ctproto tcp -j DROP", OK, ""),
    ("-A INPUT -m conntrack --ctproto 6 -j DROP", OK, ""),
    ("-A INPUT -m conntrack ! --ctproto 6 -j DROP", OK, ""),
    ("-A INPUT -m conntrack --ctproto 0 -j DROP", OK, ""),
    ("-A INPUT -m conntrack ! --ctproto 0 -j DROP", OK, ""),
    ("-A INPUT -m conntrack --ctproto all -j DROP", OK, ""),
    ("-A INPUT -m conntrack --ctproto TCP -j DROP", OK, ""),
    ("-A INPUT -m conntrack --ctproto vrrp -j DROP", OK, ""),
    ("-A INPUT -m conntrack --ctstate NEW --ctproto tcp -j DROP", OK, ""),
    ("-A INPUT -m conntrack --ctproto 256 -j DROP", Some("unknown protocol \"256\" specified"), "unknown protocol"),
    (
        "-A INPUT -m conntrack --ctproto tcp --ctproto udp -j DROP",
        Some("option \"--ctproto\" can only be used once"),
        "given twice",
    ),
    ("-A INPUT -m conntrack --ctproto tcp -m conntrack --ctproto udp -j DROP", OK, "several `--ctproto`"),
    ("-A INPUT -m conntrack --ctorigdstport 53 -j DROP", OK, ""),
    // Unsupported features: accepted by iptables, refused by name.
    ("-A INPUT -m time --timestart 01:00 -j DROP", OK, "match `-m time` is not supported"),
];

#[test]
fn unifw_refuses_what_iptables_refuses_and_reads_what_it_accepts() {
    check_syntax_cases(CASES, file);
}

fn key(proto: u8, dst_port: u16, state: CtState) -> PacketKey {
    PacketKey {
        proto,
        src: 0x0a01_0002,
        dst: 0x0a02_0002,
        src_port: 40000,
        dst_port,
        icmp_type: 8,
        icmp_code: 0,
        in_if: 0,
        out_if: 1,
        state,
        extra: Default::default(),
    }
}

fn verdict(body: &str, k: &PacketKey) -> Action {
    let c = compile(&file(body)).unwrap_or_else(|d| panic!("{body}: {d}"));
    let image = Image::from_bytes(&c.image).expect("valid image");
    assert_eq!(image.classify(Chain::Forward, k), c.ruleset.classify_linear(Chain::Forward, k), "{body}");
    image.classify(Chain::Forward, k).action
}

#[test]
fn accepted_lines_mean_what_they_mean_in_linux() {
    let new_udp = key(proto::UDP, 53, CtState::New);
    assert_eq!(verdict("-A FORWARD -p 0 -j DROP", &new_udp), Action::Drop, "-p 0 is every protocol");
    let two = "-A FORWARD -m state --state NEW,ESTABLISHED -m state --state ESTABLISHED -j DROP";
    assert_eq!(verdict(two, &new_udp), Action::Accept, "both state matches must hold");
    assert_eq!(verdict(two, &key(proto::UDP, 53, CtState::Established)), Action::Drop);
    let two = "-A FORWARD -m state --state ESTABLISHED -m conntrack --ctstate NEW,ESTABLISHED -j DROP";
    assert_eq!(verdict(two, &new_udp), Action::Accept, "the last state match does not replace the first");
    let ports = "-A FORWARD -p udp -m multiport --dports 50:60 -m multiport ! --dports 53 -j DROP";
    assert_eq!(verdict(ports, &new_udp), Action::Accept);
    assert_eq!(verdict(ports, &key(proto::UDP, 54, CtState::New)), Action::Drop);
    // xt_multiport's XT_MULTIPORT_EITHER: the source or the destination port.
    let either = "-A FORWARD -p udp -m multiport --ports 53,100:110 -j DROP";
    let mut reply = key(proto::UDP, 40000, CtState::Established);
    reply.src_port = 53;
    assert_eq!(verdict(either, &new_udp), Action::Drop, "destination port in the list");
    assert_eq!(verdict(either, &reply), Action::Drop, "source port in the list");
    reply.src_port = 105;
    assert_eq!(verdict(either, &reply), Action::Drop, "source port in a range of the list");
    reply.src_port = 111;
    assert_eq!(verdict(either, &reply), Action::Accept, "neither");
    let neither = "-A FORWARD -p udp -m multiport ! --ports 53,100:110 -j DROP";
    assert_eq!(verdict(neither, &reply), Action::Drop, "negated: neither port in the list");
    assert_eq!(verdict(neither, &new_udp), Action::Accept, "negated: the destination port is in it");
    reply.src_port = 100;
    assert_eq!(verdict(neither, &reply), Action::Accept, "negated: the source port is in it");
    let both = "-A FORWARD -p udp -m multiport --ports 53 -m multiport --sports 100:200 -j DROP";
    assert_eq!(verdict(both, &reply), Action::Accept, "--sports holds, --ports does not");
    reply.dst_port = 53;
    assert_eq!(verdict(both, &reply), Action::Drop, "--sports holds and the destination is in --ports");
    assert_eq!(verdict("-A FORWARD -p udp --dport domain -j DROP", &new_udp), Action::Drop);
    assert_eq!(verdict("-A FORWARD -d 10.2 -j DROP", &new_udp), Action::Accept, "10.2 is 10.2.0.0/32");
    assert_eq!(verdict("-A FORWARD -d 10.2.0.9/16 -j DROP", &new_udp), Action::Drop, "host bits are cleared");
    let range = "-A FORWARD -s 10.1.0.0/24 -m iprange --src-range 10.1.0.2-10.1.0.9 -j DROP";
    assert_eq!(verdict(range, &new_udp), Action::Drop);
    let range = "-A FORWARD -m iprange ! --src-range 10.1.0.2-10.1.0.9 -j DROP";
    assert_eq!(verdict(range, &new_udp), Action::Accept);
    let reject = "-A FORWARD -j REJECT --reject-with host-prohib";
    assert_eq!(verdict(reject, &new_udp), Action::Reject(RejectWith::HostProhibited));
    let mut ping = key(proto::ICMP, 0, CtState::New);
    assert_eq!(verdict("-A FORWARD -p icmp --icmp-type ping -j DROP", &ping), Action::Drop);
    ping.icmp_type = 3;
    ping.icmp_code = 10;
    assert_eq!(verdict("-A FORWARD -p icmp --icmp-type host-prohibited -j DROP", &ping), Action::Drop);
    assert_eq!(verdict("-A FORWARD -i lo -j DROP", &new_udp), Action::Accept, "lo matches nothing");
    assert_eq!(verdict("-A FORWARD ! -i lo -j DROP", &new_udp), Action::Drop, "! lo matches everything");
    assert_eq!(verdict("-A FORWARD -i eth+ -o eth1 -j DROP", &new_udp), Action::Drop);
    assert_eq!(verdict("-A FORWARD -i docker0 -j DROP", &new_udp), Action::Accept, "an absent interface");
}

#[test]
fn interface_names_and_their_warnings() {
    let ipt = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -i wan+ -o lan0 -j ACCEPT\n-A FORWARD -i docker0 -j ACCEPT\n-A FORWARD -o docker0 -j ACCEPT\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n";
    let main = "interface eth0 10.1.0.1/24 name wan0,uplink\ninterface eth1 10.2.0.1/24 name lan0\ninclude \"r.ipt\"\n";
    let c = rules::compile("t.rules", main.as_bytes(), &mut |_| Ok(ipt.as_bytes().to_vec())).expect("compiles");
    let image = Image::from_bytes(&c.image).expect("valid");
    let mut k = key(proto::TCP, 80, CtState::New);
    assert_eq!(image.classify(Chain::Forward, &k).action, Action::Accept, "wan+ is eth0, lan0 is eth1");
    k.in_if = 1;
    k.out_if = 0;
    assert_eq!(image.classify(Chain::Forward, &k).action, Action::Drop);
    let warnings: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.iter().filter(|w| w.contains("`docker0` is no NIC of unifw")).count(), 1, "{warnings:?}");
    assert!(
        warnings.iter().any(|w| w.starts_with("r.ipt:6:") && w.contains("note: `lo` is the loopback")),
        "{warnings:?}"
    );
    let bad = |m: &str| rules::compile("t.rules", m.as_bytes(), &mut |_| Err("none".into())).unwrap_err().to_string();
    assert!(bad("interface eth0 10.1.0.1/24 name eth1\n").contains("always names NIC 1"));
    assert!(bad("interface eth0 10.1.0.1/24 name wan0\ninterface eth1 10.2.0.1/24 name wan0\n")
        .contains("already names eth0"));
    assert!(bad("interface eth0 10.1.0.1/24 name a/b\n").contains("bad interface name"));
    assert!(bad("interface eth0 10.1.0.1/24\nforward accept in wan0\n").contains("unknown interface `wan0`"));
    let native =
        "interface eth0 10.1.0.1/24 name wan0\ninterface eth1 10.2.0.1/24\nforward drop in wan0,eth1 out !eth0\n";
    let c = rules::compile("t.rules", native.as_bytes(), &mut |_| Err("none".into())).expect("compiles");
    assert_eq!(c.ruleset.rules[0].in_if.map(|m| m.set), Some(0b11));
}

#[test]
fn unsupported_features_are_counted_over_the_whole_file() {
    let mut body = String::new();
    for i in 0..120 {
        body.push_str(&format!("-A INPUT -s 10.0.0.{} -m time --timestart 01:00 -j DROP\n", i % 200));
    }
    for _ in 0..3 {
        body.push_str("-A INPUT -m set --match-set x src -j DROP\n-A INPUT -j NFQUEUE\n");
    }
    let d = compile(&file(&body)).unwrap_err();
    let text = d.to_string();
    assert!(text.contains("unsupported: -m time (120 rules), -j NFQUEUE (3 rules), -m set (3 rules)"), "{text}");
    assert_eq!(d.errors.len(), rules::MAX_ERRORS);
}

#[test]
fn a_rule_without_a_target_counts_in_iptables_and_is_left_out_with_a_note() {
    let c = compile(&file("-A FORWARD -s 10.1.0.2/32\n-A FORWARD -p tcp --dport 22 -j DROP\n-A FORWARD -d 10.2.0.2"))
        .unwrap();
    assert_eq!(c.ruleset.rules.len(), 1, "only the DROP rule decides anything");
    let notes: Vec<String> = c.warnings.iter().map(|w| w.to_string()).filter(|w| w.contains("without `-j`")).collect();
    assert_eq!(notes.len(), 1, "one note, at the first such rule: {notes:?}");
    assert_eq!(
        verdict("-A FORWARD -p tcp -m tcp --dport 22\n-A FORWARD -p tcp --dport 22 -j DROP", &key(6, 22, CtState::New)),
        Action::Drop
    );
}

#[test]
fn residual_matches_and_log_mean_what_they_mean_in_linux() {
    use unifw_core::flow::{addrtype, PktType};
    let mut syn = key(proto::TCP, 22, CtState::New);
    syn.extra.tcp_flags = 0x02;
    let mut syn_ack = syn;
    syn_ack.extra.tcp_flags = 0x12;
    let mut syn_ece = syn;
    syn_ece.extra.tcp_flags = 0xc2; // ECE and CWR are outside --syn's mask
    assert_eq!(verdict("-A FORWARD -p tcp --syn -j DROP", &syn), Action::Drop);
    assert_eq!(verdict("-A FORWARD -p tcp --syn -j DROP", &syn_ack), Action::Accept);
    assert_eq!(verdict("-A FORWARD -p tcp --syn -j DROP", &syn_ece), Action::Drop);
    assert_eq!(verdict("-A FORWARD -p tcp ! --syn -j DROP", &syn_ack), Action::Drop);
    assert_eq!(verdict("-A FORWARD -p tcp --tcp-flags ALL SYN -j DROP", &syn_ece), Action::Accept, "ALL sees ECE, CWR");
    assert_eq!(verdict("-A FORWARD -p tcp --tcp-flags ALL NONE -j DROP", &syn), Action::Accept);
    let mut opt = syn;
    opt.extra.tcp_options[0] = 1 << 8;
    assert_eq!(verdict("-A FORWARD -p tcp --tcp-option 8 -j DROP", &opt), Action::Drop);
    assert_eq!(verdict("-A FORWARD -p tcp --tcp-option 8 -j DROP", &syn), Action::Accept);
    // A failed residual goes on to the next rule, not to the policy.
    let two = "-A FORWARD -p tcp --syn -j ACCEPT\n-A FORWARD -p tcp -j REJECT --reject-with tcp-reset";
    assert_eq!(verdict(two, &syn_ack), Action::Reject(RejectWith::TcpReset));
    let mut k = key(proto::UDP, 53, CtState::New);
    k.extra.dst_type = addrtype::LOCAL;
    k.extra.dst_type_in = addrtype::UNICAST;
    assert_eq!(verdict("-A FORWARD -m addrtype --dst-type LOCAL -j DROP", &k), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m addrtype ! --dst-type LOCAL -j DROP", &k), Action::Accept);
    assert_eq!(verdict("-A FORWARD -m addrtype --dst-type LOCAL --limit-iface-in -j DROP", &k), Action::Accept);
    assert_eq!(verdict("-A FORWARD -m addrtype --dst-type ANYCAST -j DROP", &k), Action::Accept, "never an IPv4 type");
    assert_eq!(verdict("-A FORWARD -m addrtype ! --dst-type ANYCAST -j DROP", &k), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m addrtype --dst-type ANYCAST,LOCAL -j DROP", &k), Action::Drop);
    let warned = compile(&file("-A FORWARD -m addrtype --dst-type ANYCAST -j DROP")).expect("loads");
    assert!(warned.ruleset.warnings.iter().any(|w| w.message.contains("never matches")), "with a warning");
    k.extra.ttl = 64;
    k.extra.len = 100;
    assert_eq!(verdict("-A FORWARD -m ttl --ttl-lt 65 -j DROP", &k), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m ttl --ttl-gt 64 -j DROP", &k), Action::Accept);
    assert_eq!(verdict("-A FORWARD -m ttl ! --ttl-eq 64 -j DROP", &k), Action::Accept);
    assert_eq!(verdict("-A FORWARD -m length --length 100:200 -j DROP", &k), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m length --length 200:100 -j DROP", &k), Action::Accept, "reversed: nothing");
    k.extra.pkt_type = PktType::Broadcast;
    assert_eq!(verdict("-A FORWARD -m pkttype --pkt-type broadcast -j DROP", &k), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m pkttype ! --pkt-type broadcast -j DROP", &k), Action::Accept);
    k.extra.src_mac = [0, 0x11, 0x22, 0x33, 0x44, 0x55];
    k.extra.has_mac = true;
    assert_eq!(verdict("-A FORWARD -m mac --mac-source 00:11:22:33:44:55 -j DROP", &k), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m mac ! --mac-source 00:11:22:33:44:55 -j DROP", &k), Action::Accept);
    let untracked = key(proto::UDP, 53, CtState::Untracked);
    assert_eq!(verdict("-A FORWARD -m conntrack --ctstate UNTRACKED -j DROP", &untracked), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m conntrack --ctstate NEW -j DROP", &untracked), Action::Accept);
    let all4 = "-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED,RELATED,INVALID -j DROP";
    assert_eq!(verdict(all4, &untracked), Action::Accept, "the four tracked states are not UNTRACKED");
    assert_eq!(verdict("-A FORWARD -j DROP", &untracked), Action::Drop, "no state match: every state");
    // --ctstate SNAT/DNAT: the state and the connection's NAT status
    // together against the list, then the negation (xt_conntrack).
    let mut dnat = key(proto::TCP, 22, CtState::Established);
    dnat.extra.ct_status = unifw_core::flow::CT_DNAT;
    let plain = key(proto::TCP, 22, CtState::Established);
    assert_eq!(verdict("-A FORWARD -m conntrack --ctstate DNAT -j DROP", &dnat), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m conntrack --ctstate DNAT -j DROP", &plain), Action::Accept);
    assert_eq!(verdict("-A FORWARD -m conntrack ! --ctstate DNAT -j DROP", &dnat), Action::Accept);
    assert_eq!(verdict("-A FORWARD -m conntrack ! --ctstate DNAT -j DROP", &plain), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m conntrack --ctstate SNAT,ESTABLISHED -j DROP", &plain), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m conntrack ! --ctstate ESTABLISHED,DNAT -j DROP", &dnat), Action::Accept);
    assert_eq!(verdict("-A FORWARD -m state --state NEW -m conntrack --ctstate dnat -j DROP", &dnat), Action::Accept);
    let e = compile(&file("-A FORWARD -m state --state SNAT -j DROP")).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("bad state `SNAT`"), "-m state has no SNAT (iptables: Bad state): {e}");
    // LOG goes on: the next rule decides, and the LOG rule is recorded.
    let text = file("-A FORWARD -j LOG --log-prefix \"fw: \"\n-A FORWARD -j DROP");
    let c = compile(&text).expect("compiles");
    let image = Image::from_bytes(&c.image).expect("valid image");
    let mut lookup = unifw_core::image::Lookup::stateless();
    let v = image.classify_with(Chain::Forward, &k, &mut lookup);
    assert_eq!((v.action, v.rule, lookup.logged()), (Action::Drop, Some(1), &[0u32][..]));
    assert_eq!(image.rule_log(0).map(|l| String::from(l.prefix())), Some(String::from("fw: ")));
}

/// `(body lines, iptables' error or OK, unifw's error or "", INPUT rules afterwards)`.
type RestoreCase = (&'static [&'static str], Option<&'static str>, &'static str, &'static [u32]);

/// iptables-restore's commands besides `-A` and `-N`, measured as above
/// (iptables-legacy 1.8.9, `iptables-restore` in a scratch namespace):
/// `(body lines, iptables' error or OK, unifw's error or "", the INPUT
/// chain afterwards as the body lines of its rules, in order)`.
const RESTORE_CASES: &[RestoreCase] = &[
    // -I CHAIN [N]: rule N (default 1), at most one past the end.
    (&["-A INPUT -p tcp --dport 22 -j ACCEPT", "-I INPUT -p tcp --dport 23 -j ACCEPT"], OK, "", &[2, 1]),
    (&["-A INPUT -j ACCEPT", "-A INPUT -j DROP", "-I INPUT 2 -p udp -j DROP"], OK, "", &[1, 3, 2]),
    (&["-A INPUT -j ACCEPT", "-I INPUT 2 -p udp -j DROP"], OK, "", &[1, 2]),
    (&["-A INPUT -j ACCEPT", "-I INPUT 3 -j DROP"], Some("line 3 failed"), "Index of insertion too big", &[]),
    (&["-I INPUT 0 -j DROP"], Some("Invalid rule number `0'"), "invalid rule number", &[]),
    (&["-I INPUT x -j DROP"], Some("Invalid rule number `x'"), "invalid rule number", &[]),
    (&["-I INPUT 1 2 -j DROP"], Some("Bad argument `2'"), "bad argument `2`", &[]),
    (&[":A -", "-A A -j DROP", "-I A -j ACCEPT", "-A INPUT -j A"], OK, "", &[4]),
    // -D CHAIN N, -D CHAIN RULE (the first one that is the same rule).
    (&["-A INPUT -j ACCEPT", "-A INPUT -j DROP", "-D INPUT 1"], OK, "", &[2]),
    (&["-A INPUT -j ACCEPT", "-D INPUT 2"], Some("line 2 failed"), "Index of deletion too big", &[]),
    (&["-A INPUT -j ACCEPT", "-D INPUT 1 -p tcp"], Some("Illegal option `-p' with this command"), "not allowed", &[]),
    (
        &[
            "-A INPUT -p tcp --dport 23 -j ACCEPT",
            "-A INPUT -p tcp --dport 24 -j ACCEPT",
            "-A INPUT -p tcp --dport 23 -j ACCEPT",
            "-D INPUT -p tcp -m tcp --dport 23 -j ACCEPT",
        ],
        OK,
        "",
        &[2, 3],
    ),
    (&["-A INPUT -s 10.0.0.1 -j ACCEPT", "-D INPUT -s 10.0.0.1/32 -j ACCEPT"], OK, "", &[]),
    (
        &["-A INPUT -s 10.0.0.1 -j ACCEPT", "-D INPUT -s 10.0.0.1/32 -j DROP"],
        Some("line 2 failed"),
        "no such rule",
        &[],
    ),
    (
        &["-A INPUT -p tcp --dport 22 -j ACCEPT", "-D INPUT -p tcp --dport 22"],
        Some("line 2 failed"),
        "no such rule",
        &[],
    ),
    (&["-A INPUT -j ACCEPT", "-D INPUT"], Some("line 2 failed"), "no such rule", &[]),
    (
        &["-A INPUT -s 10.0.0.1 -m comment --comment a -j ACCEPT", "-D INPUT -s 10.0.0.1/32 -j ACCEPT"],
        Some("line 2 failed"),
        "no such rule",
        &[],
    ),
    (&["-A INPUT -m comment --comment a -j ACCEPT", "-D INPUT -m comment --comment a -j ACCEPT"], OK, "", &[]),
    (
        &["-A INPUT -m state --state NEW -j ACCEPT", "-D INPUT -m conntrack --ctstate NEW -j ACCEPT"],
        Some("line 2 failed"),
        "no such rule",
        &[],
    ),
    // -F [CHAIN], -X [CHAIN], -Z.
    (&[":A -", "-A INPUT -j A", "-A A -j DROP", "-A FORWARD -j DROP", "-F INPUT"], OK, "", &[]),
    (&[":A -", "-A INPUT -j A", "-A A -j DROP", "-F", "-X", "-A INPUT -j DROP"], OK, "", &[6]),
    (&[":A -", "-A A -j DROP", "-F A", "-X A", "-N A", "-A INPUT -j A"], OK, "", &[6]),
    (&[":A -", "-A INPUT -j A", "-X A"], Some("line 3 failed"), "Too many links", &[]),
    (&[":A -", "-A A -j DROP", "-X A"], Some("line 3 failed"), "Directory not empty", &[]),
    (&[":A -", ":B -", "-A A -j B", "-X"], Some("line 4 failed"), "Directory not empty", &[]),
    (&["-X INPUT"], Some("line 1 failed"), "built-in chain", &[]),
    (&["-X C"], Some("line 1 failed"), "no chain `C`", &[]),
    (&["-F C"], Some("line 1 failed"), "no chain `C`", &[]),
    (&["-F PREROUTING"], Some("line 1 failed"), "no chain `PREROUTING`", &[]),
    (&["-F INPUT x"], Some("Bad argument `x'"), "bad argument `x`", &[]),
    (&["-F OUTPUT", "-X", "-F", "-Z", "-Z INPUT"], OK, "", &[]),
    (&["-A INPUT -j ACCEPT", "-Z INPUT 2"], Some("line 2 failed"), "no rule 2", &[]),
    // -P CHAIN POLICY: a built-in chain, ACCEPT or DROP.
    (&["-P FORWARD DROP", "-P INPUT ACCEPT"], OK, "", &[]),
    (&[":A -", "-P A DROP"], Some("line 2 failed"), "Bad built-in chain name", &[]),
    (&["-P INPUT RETURN"], Some("line 1 failed"), "unsupported chain policy", &[]),
    (&["-P INPUT REJECT"], Some("line 1 failed"), "unsupported chain policy", &[]),
    (&["-P INPUT"], Some("-P requires a chain and a policy"), "requires a chain and a policy", &[]),
    (&["-P INPUT DROP x"], Some("Bad argument `x'"), "bad argument `x`", &[]),
];

#[test]
fn restore_commands_act_as_in_iptables_restore() {
    let mut failures = Vec::new();
    for &(body, linux, unifw, input) in RESTORE_CASES {
        let text = file(&body.join("\n"));
        let got = compile(&text);
        let ok = match (&got, unifw) {
            (Ok(c), "") => {
                let lines: Vec<u32> =
                    c.ruleset.rules.iter().filter(|r| r.chain == Chain::Input).map(|r| r.line - 4).collect();
                lines == input
            }
            (Err(d), want) if !want.is_empty() => d.errors.iter().any(|e| e.message.contains(want)),
            _ => false,
        };
        if !ok {
            let got = match got {
                Ok(c) => format!("loads, INPUT {:?}", c.ruleset.rules.iter().map(|r| r.line - 4).collect::<Vec<_>>()),
                Err(d) => d.to_string(),
            };
            failures.push(format!("{body:?}\n  iptables: {linux:?}\n  unifw: {got}\n  expected: {unifw:?} {input:?}"));
        }
        assert!(linux.is_none() || !unifw.is_empty(), "{body:?}: iptables refuses it, so must unifw");
    }
    assert!(failures.is_empty(), "{} cases differ:\n{}", failures.len(), failures.join("\n"));
}

/// Lines of the raw and mangle tables and of filter OUTPUT, measured as
/// above: `(table, line, iptables' error or OK, unifw's error or "")`.
const TABLE_CASES: &[(&str, &str, Option<&str>, &str)] = &[
    ("raw", "-A PREROUTING -p udp -j NOTRACK", OK, ""),
    ("raw", "-A OUTPUT -j CT --notrack", OK, ""),
    ("raw", "-A PREROUTING -j CT --zone 1", OK, "option `--zone` of `-j CT` is not supported"),
    ("raw", "-A PREROUTING -j CT", OK, "without `--notrack` is not supported"),
    ("raw", "-A INPUT -j NOTRACK", Some("line 2 failed"), "has no chain `INPUT`"),
    ("filter", "-A INPUT -j NOTRACK", Some("line 2 failed"), "valid only in the raw table"),
    ("mangle", "-A FORWARD -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu", OK, ""),
    ("mangle", "-A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400", OK, ""),
    (
        "mangle",
        "-A FORWARD -p tcp --tcp-flags SYN,RST RST -j TCPMSS --set-mss 1400",
        Some("line 2 failed"),
        "needs a match of SYN",
    ),
    ("mangle", "-A FORWARD -p tcp -j TCPMSS --clamp-mss-to-pmtu", Some("line 2 failed"), "needs a match of SYN"),
    ("mangle", "-A FORWARD -j TCPMSS --set-mss 1400", Some("line 2 failed"), "needs `-p tcp`"),
    (
        "mangle",
        "-A FORWARD -p tcp -j TCPMSS",
        Some("TCPMSS target: At least one parameter is required"),
        "At least one parameter",
    ),
    (
        "mangle",
        "-A FORWARD -p tcp -j TCPMSS --set-mss 1 --set-mss 2",
        Some("option \"--set-mss\" can only be used once"),
        "can only be used once",
    ),
    ("mangle", "-A FORWARD -j REJECT", Some("line 2 failed"), "valid only in the filter table"),
    ("mangle", "-A FORWARD -j MARK --set-mark 1", OK, "target `MARK` is not supported"),
    // Every mark is 0 in unifw: copying one to the other changes nothing.
    ("mangle", "-A FORWARD -j CONNMARK --save-mark", OK, ""),
    ("filter", "-A OUTPUT -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff", OK, ""),
    ("mangle", "-A FORWARD -j CONNMARK --restore-mark --mask 0xff", OK, ""),
    ("mangle", "-A FORWARD -j CONNMARK", Some("CONNMARK target: No operation specified"), "No operation specified"),
    (
        "mangle",
        "-A FORWARD -j CONNMARK --save-mark --restore-mark",
        Some("CONNMARK: option \"--save-mark\" cannot be used together with \"--restore-mark\"."),
        "cannot be used together",
    ),
    ("mangle", "-A FORWARD -j CONNMARK --set-mark 1", OK, "option `--set-mark` of `-j CONNMARK` is not supported"),
    ("mangle", "-A PREROUTING -j ACCEPT", OK, ""),
    ("raw", "-A PREROUTING -p udp --dport 7 -j DROP", OK, ""),
    ("mangle", "-A FORWARD -j DROP", OK, "`DROP` in the `mangle` table is not supported"),
    ("filter", "-A OUTPUT -o eth0 -m state --state UNTRACKED -j ACCEPT", OK, ""),
    ("filter", "-A OUTPUT -p icmp -j DROP", OK, ""),
    ("filter", "-A OUTPUT -j REJECT", OK, ""),
    ("filter", "-A OUTPUT -i eth0 -j DROP", Some("Can't use -i with OUTPUT"), "Can't use -i with OUTPUT"),
    ("filter", "-A INPUT -o eth0 -j DROP", Some("Can't use -o with INPUT"), "Can't use -o with INPUT"),
    ("filter", "-P OUTPUT DROP", OK, ""),
    ("filter", "-A FORWARD -p tcp -j TCPMSS --set-mss 1400", Some("line 2 failed"), "TCPMSS"),
];

#[test]
fn raw_mangle_and_output_lines_read_as_iptables_reads_them() {
    let mut failures = Vec::new();
    for &(table, line, linux, unifw) in TABLE_CASES {
        let text = format!("*{table}\n{line}\nCOMMIT\n");
        let got = compile(&text);
        let ok = match (&got, unifw) {
            (Ok(_), "") => true,
            (Err(d), want) if !want.is_empty() => d.errors.iter().any(|e| e.message.contains(want)),
            _ => false,
        };
        if !ok {
            let got = got.map(|_| String::from("loads")).unwrap_or_else(|d| d.to_string());
            failures.push(format!("*{table} {line}\n  iptables: {linux:?}\n  unifw: {got}\n  expected: {unifw:?}"));
        }
        assert!(linux.is_none() || !unifw.is_empty(), "{line}: iptables refuses it, so must unifw");
    }
    assert!(failures.is_empty(), "{} cases differ:\n{}", failures.len(), failures.join("\n"));
    let c = compile("*filter\n:OUTPUT DROP [0:0]\n-A OUTPUT -p icmp -j ACCEPT\nCOMMIT\n").unwrap();
    let image = Image::from_bytes(&c.image).unwrap();
    assert_eq!(image.policy(Chain::Output), Action::Drop);
    let mut k = key(proto::ICMP, 0, CtState::Untracked);
    k.in_if = unifw_core::flow::NO_IF;
    assert_eq!(image.classify(Chain::Output, &k).action, Action::Accept);
    k.proto = proto::UDP;
    assert_eq!(image.classify(Chain::Output, &k).action, Action::Drop);
}

fn verdict_in(chain: Chain, body: &str, k: &PacketKey) -> Action {
    let c = compile(&file(body)).unwrap_or_else(|d| panic!("{body}: {d}"));
    let image = Image::from_bytes(&c.image).expect("valid image");
    assert_eq!(image.classify(chain, k), c.ruleset.classify_linear(chain, k), "{body}");
    image.classify(chain, k).action
}

#[test]
fn folded_matches_and_tcpmss_mean_what_they_mean_in_linux() {
    let k = key(proto::TCP, 22, CtState::New);
    // Fragments are judged whole: `-f` never matches, `! -f` always.
    assert_eq!(verdict("-A FORWARD -f -j DROP", &k), Action::Accept);
    assert_eq!(verdict("-A FORWARD ! -f -j DROP", &k), Action::Drop);
    let warned = compile(&file("-A FORWARD -f -j DROP")).expect("loads");
    assert!(warned.ruleset.warnings.iter().any(|w| w.message.contains("`-f` never matches")), "with a warning");
    // Owner: unifw's own packets are the kernel's (a socket, no user).
    let out = PacketKey { in_if: unifw_core::flow::NO_IF, ..k };
    let own = |body: &str| verdict_in(Chain::Output, body, &out);
    assert_eq!(own("-A OUTPUT -m owner --uid-owner 1000 -j DROP"), Action::Accept);
    assert_eq!(own("-A OUTPUT -m owner ! --uid-owner 1000 -j DROP"), Action::Drop);
    assert_eq!(own("-A OUTPUT -m owner --socket-exists -j DROP"), Action::Drop);
    assert_eq!(own("-A OUTPUT -m owner ! --socket-exists -j DROP"), Action::Accept);
    assert_eq!(own("-A OUTPUT -m owner ! --gid-owner 0 --suppl-groups -j DROP"), Action::Drop);
    assert_eq!(own("-A OUTPUT -m owner --socket-exists ! --uid-owner 0 --gid-owner 1 -j DROP"), Action::Accept);
    // Marks are 0: `(0 & mask) == value`, `!` inverts.
    assert_eq!(verdict("-A FORWARD -m mark --mark 0 -j DROP", &k), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m mark --mark 1 -j DROP", &k), Action::Accept);
    assert_eq!(verdict("-A FORWARD -m mark ! --mark 1/0x3 -j DROP", &k), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m mark --mark 0/0xff -j DROP", &k), Action::Drop);
    // connmark: no connection (INVALID, UNTRACKED), no match, `!` or not.
    assert_eq!(verdict("-A FORWARD -m connmark ! --mark 1 -j DROP", &k), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m connmark --mark 0xe1f1 -j DROP", &k), Action::Accept);
    for state in [CtState::Invalid, CtState::Untracked] {
        let none = key(proto::TCP, 22, state);
        assert_eq!(verdict("-A FORWARD -m connmark ! --mark 1 -j DROP", &none), Action::Accept, "{state:?}");
        assert_eq!(verdict("-A FORWARD -m connmark --mark 0 -j DROP", &none), Action::Accept, "{state:?}");
    }
    // tcpmss: the MSS option's value in range; without one, `!`'s result.
    let mut syn = k;
    syn.extra.tcp_mss = Some(1460);
    let bare = k;
    assert_eq!(verdict("-A FORWARD -p tcp -m tcpmss --mss 1000:1500 -j DROP", &syn), Action::Drop);
    assert_eq!(verdict("-A FORWARD -p tcp -m tcpmss --mss 1461: -j DROP", &syn), Action::Accept);
    assert_eq!(verdict("-A FORWARD -p tcp -m tcpmss ! --mss 536:65535 -j DROP", &syn), Action::Accept);
    assert_eq!(verdict("-A FORWARD -p tcp -m tcpmss --mss 0:65535 -j DROP", &bare), Action::Accept);
    assert_eq!(verdict("-A FORWARD -p tcp -m tcpmss ! --mss 536:65535 -j DROP", &bare), Action::Drop);
}

#[test]
fn ctproto_is_the_connections_protocol_and_needs_one() {
    let mut k = key(proto::UDP, 53, CtState::New);
    k.extra.ct_proto = proto::UDP;
    assert_eq!(verdict("-A FORWARD -m conntrack --ctproto udp -j DROP", &k), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m conntrack --ctproto 6 -j DROP", &k), Action::Accept);
    assert_eq!(verdict("-A FORWARD -m conntrack ! --ctproto 6 -j DROP", &k), Action::Drop);
    // An ICMP error RELATED to a TCP connection is of that connection.
    let mut error = key(proto::ICMP, 0, CtState::Related);
    error.extra.ct_proto = proto::TCP;
    assert_eq!(verdict("-A FORWARD -m conntrack --ctproto tcp -j DROP", &error), Action::Drop);
    assert_eq!(verdict("-A FORWARD -m conntrack --ctproto icmp -j DROP", &error), Action::Accept);
    // No connection (INVALID, UNTRACKED): xt_conntrack holds only by a
    // `--ctstate` of the same match, whatever `--ctproto` says.
    for state in [CtState::Invalid, CtState::Untracked] {
        let none = key(proto::UDP, 53, state);
        assert_eq!(verdict("-A FORWARD -m conntrack --ctproto udp -j DROP", &none), Action::Accept, "{state:?}");
        assert_eq!(verdict("-A FORWARD -m conntrack ! --ctproto udp -j DROP", &none), Action::Accept, "{state:?}");
        let both = "-A FORWARD -m conntrack --ctstate INVALID,UNTRACKED --ctproto tcp -j DROP";
        assert_eq!(verdict(both, &none), Action::Drop, "{state:?}");
        let apart = "-A FORWARD -m conntrack --ctstate INVALID,UNTRACKED -m conntrack --ctproto tcp -j DROP";
        assert_eq!(verdict(apart, &none), Action::Accept, "{state:?}");
    }
}

#[test]
fn new_matches_print_back_as_iptables_save_reads_them() {
    let body = "-A FORWARD -f -j DROP\n-A FORWARD ! -f -p tcp -m tcpmss ! --mss 536:1460 -j DROP\n\
                -A FORWARD -m mark ! --mark 0x1/0x3 -m connmark --mark 0 -j ACCEPT\n\
                -A FORWARD -m conntrack --ctstate INVALID --ctproto tcp -j DROP\n\
                -A FORWARD -m conntrack ! --ctproto udp -j REJECT\n\
                -A OUTPUT -m owner ! --uid-owner 5-9 --gid-owner 3 --suppl-groups --socket-exists -j DROP\n\
                -A OUTPUT -m owner ! --socket-exists -j DROP";
    let first = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    let text = rules::render(&first.ruleset, rules::Format::Iptables).expect("renders");
    let again = compile(&text).unwrap_or_else(|d| panic!("{d}\n{text}"));
    let strip = |set: &rules::Ruleset| {
        set.rules.iter().map(|r| rules::Rule { line: 0, column: 0, ..r.clone() }).collect::<Vec<_>>()
    };
    assert_eq!(strip(&first.ruleset), strip(&again.ruleset), "{text}");
    assert!(text.contains("--ctstate INVALID --ctproto 6"), "{text}");
}

#[test]
fn recent_means_what_it_means_in_linux() {
    // The classic SSH guard: the fourth new connection from one address
    // within 60 s is dropped (each packet both sets and updates, so the
    // table holds two stamps per dropped packet), other addresses are not.
    let body = "-A INPUT -p tcp --dport 22 -m state --state NEW -m recent --set --name SSH\n\
                -A INPUT -p tcp --dport 22 -m state --state NEW -m recent --update --seconds 60 --hitcount 4 --name SSH -j DROP\n\
                -A INPUT -p tcp --dport 22 -j ACCEPT";
    let c = compile(&file(body)).expect("loads");
    assert_eq!(c.ruleset.rules.len(), 3, "the rule without -j stays: it changes the table");
    let image = Image::from_bytes(&c.image).expect("valid image");
    let mut tables = image.recent_tables();
    let k = key(proto::TCP, 22, CtState::New);
    let mut other = k;
    other.src ^= 1;
    let mut at = |now: u64, k: &PacketKey| {
        let mut lookup = unifw_core::image::Lookup::new(now, &mut []).with_recent(&mut tables);
        image.classify_with(Chain::Input, k, &mut lookup).action
    };
    use Action::{Accept, Drop};
    assert_eq!([at(0, &k), at(1000, &k), at(2000, &k), at(3000, &k)], [Accept, Accept, Accept, Drop]);
    assert_eq!(at(3000, &other), Accept, "another address has its own entry");
    // 60 s after the fourth: only the new stamp is within --seconds.
    assert_eq!(at(63_001, &k), Accept);
    // --rcheck without --seconds: in the table at all; --remove forgets.
    let body = "-A INPUT -m recent --rcheck --name SSH -j DROP\n-A INPUT -m recent --remove --name SSH -j ACCEPT\n\
                -A INPUT -m recent --set --name SSH -j ACCEPT";
    let c = compile(&file(body)).expect("loads");
    let image = Image::from_bytes(&c.image).expect("valid image");
    let mut tables = image.recent_tables();
    let mut at = |now: u64| {
        let mut lookup = unifw_core::image::Lookup::new(now, &mut []).with_recent(&mut tables);
        image.classify_with(Chain::Input, &k, &mut lookup)
    };
    assert_eq!(at(0).rule, Some(2), "not yet seen: --set");
    assert_eq!(at(1).rule, Some(0), "seen: --rcheck holds");
}

#[test]
fn stateful_matches_before_other_matches_act_in_linux_order() {
    use unifw_core::image::{LimitBucket, Lookup};
    use Action::{Accept, Drop};
    // Linux spends the limit's only token on the ESTABLISHED packet that
    // the state match then refuses: the NEW packet after it finds none.
    let body =
        "-A INPUT -p tcp -m limit --limit 1/hour --limit-burst 1 -m state --state NEW -j ACCEPT\n-A INPUT -j DROP";
    let c = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(c.ruleset.chains.len(), 1, "split into a chain: {:?}", c.ruleset.chains);
    assert_eq!(c.ruleset.chains[0].name, "5:after-limit");
    let image = Image::from_bytes(&c.image).expect("valid image");
    let run = |states: &[CtState]| {
        let mut buckets = vec![LimitBucket::default(); image.limit_count() as usize];
        image.init_limits(&mut buckets, 0);
        let mut st = rules::RefState { now_ms: Some(0), ..rules::RefState::default() };
        let mut out = Vec::new();
        for (t, &state) in states.iter().enumerate() {
            let k = key(proto::TCP, 22, state);
            st.now_ms = Some(t as u64);
            let want = c.ruleset.classify_reference(Chain::Input, &k, &mut st).action;
            let got = image.classify_with(Chain::Input, &k, &mut Lookup::new(t as u64, &mut buckets)).action;
            assert_eq!(got, want, "image and reference, packet {t}");
            out.push(got);
        }
        out
    };
    assert_eq!(run(&[CtState::New, CtState::New]), [Accept, Drop], "one token");
    assert_eq!(run(&[CtState::Established, CtState::New]), [Drop, Drop], "the ESTABLISHED packet spent it");
    // `-m recent --set` before `--dport 22` records every address that
    // reaches it, port 22 or not, as Linux does.
    let body = "-A INPUT -p tcp -m recent --set --name s -m tcp --dport 22 -j ACCEPT\n\
                -A INPUT -m recent --rcheck --name s -j DROP";
    let c = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    let image = Image::from_bytes(&c.image).expect("valid image");
    let mut tables = image.recent_tables();
    let mut at = |port: u16| {
        let mut lookup = Lookup::new(0, &mut []).with_recent(&mut tables);
        image.classify_with(Chain::Input, &key(proto::TCP, port, CtState::New), &mut lookup).action
    };
    assert_eq!([at(80), at(22)], [Drop, Accept], "port 80 was recorded, then refused by --rcheck");
    // Without a target only the first half is kept: the table still changes.
    let c = compile(&file(
        "-A INPUT -p udp -m recent --set --name n -m udp --dport 123\n-A INPUT -m recent --rcheck --name n -j DROP",
    ))
    .unwrap_or_else(|d| panic!("{d}"));
    assert!(c.ruleset.chains.is_empty(), "no chain for a rule without target");
    assert_eq!(c.ruleset.rules.len(), 2);
    // The split shows in the printed ruleset, and reads back the same.
    let c = compile(&file("-A INPUT -m connlimit --connlimit-above 2 -p tcp --syn -j REJECT --reject-with tcp-reset"))
        .unwrap_or_else(|d| panic!("{d}"));
    let text = rules::render(&c.ruleset, rules::Format::Iptables).expect("prints");
    assert!(text.contains(":5:after-connlimit - [0:0]") && text.contains("-j 5:after-connlimit"), "{text}");
    let again = compile(&text).unwrap_or_else(|d| panic!("{d}\n{text}"));
    assert_eq!(again.ruleset.rules.len(), c.ruleset.rules.len(), "{text}");
}

#[test]
fn ports_rules_hide_and_are_hidden_exactly() {
    let warnings = |body: &str| {
        let c = compile(&file(body)).unwrap_or_else(|d| panic!("{body}: {d}"));
        c.warnings.iter().filter(|w| w.to_string().contains("can never match")).count()
    };
    // `--ports 22` covers `--dport 22` and `--sport 22`, not `--dport 23`.
    let hidden = "-A FORWARD -p tcp -m multiport --ports 22 -j DROP\n-A FORWARD -p tcp --dport 22 -j ACCEPT\n\
                  -A FORWARD -p tcp --sport 22 -j ACCEPT";
    assert_eq!(warnings(hidden), 2);
    assert_eq!(
        warnings("-A FORWARD -p tcp -m multiport --ports 22 -j DROP\n-A FORWARD -p tcp --dport 23 -j ACCEPT"),
        0
    );
    // `--dport 22` covers only half of `--ports 22`; `-p tcp` all of it.
    assert_eq!(
        warnings("-A FORWARD -p tcp --dport 22 -j DROP\n-A FORWARD -p tcp -m multiport --ports 22 -j ACCEPT"),
        0
    );
    assert_eq!(warnings("-A FORWARD -p tcp -j DROP\n-A FORWARD -p tcp -m multiport --ports 22 -j ACCEPT"), 1);
    // `--ports 20:30` covers `--ports 22`; a negated list takes no part.
    let wider =
        "-A FORWARD -p tcp -m multiport --ports 20:30 -j DROP\n-A FORWARD -p tcp -m multiport --ports 22 -j ACCEPT";
    assert_eq!(warnings(wider), 1);
    let neg = "-A FORWARD -p tcp -m multiport ! --ports 22 -j DROP\n-A FORWARD -p tcp --dport 80 -j ACCEPT";
    assert_eq!(warnings(neg), 0);
    // A residual match may not hold: such a rule hides nothing.
    let ct = "-A FORWARD -p tcp -m conntrack --ctorigdstport 22 -j DROP\n-A FORWARD -p tcp --dport 22 -j ACCEPT";
    assert_eq!(warnings(ct), 0);
    assert_eq!(warnings("-A FORWARD -p tcp --syn -j DROP\n-A FORWARD -p tcp -j ACCEPT"), 0);
}

#[test]
fn conntrack_tuples_mean_what_they_mean_in_linux() {
    use unifw_core::image::format::ct_tuple::CtTuples;
    // 10.1.0.2:40000 -> 10.2.0.1:25 DNATed to 10.2.0.9:2525: FORWARD sees
    // the translated packet; the original tuple keeps the port asked for.
    let mut k = key(proto::TCP, 2525, CtState::New);
    k.src_port = 40000;
    k.extra.ct_proto = proto::TCP;
    k.extra.ct_tuples = CtTuples {
        orig: (0x0a01_0002, 0x0a02_0001),
        orig_ports: (40000, 25),
        repl: (0x0a02_0009, 0x0a01_0002),
        repl_ports: (2525, 40000),
        reply: false,
    };
    let v = |body: &str, k: &PacketKey| verdict(body, k);
    assert_eq!(v("-A FORWARD -m conntrack --ctorigdstport 25 -j DROP", &k), Action::Drop);
    assert_eq!(v("-A FORWARD -p tcp --dport 25 -j DROP", &k), Action::Accept, "the packet's port is 2525");
    assert_eq!(v("-A FORWARD -m conntrack ! --ctorigdstport 25 -j DROP", &k), Action::Accept);
    assert_eq!(v("-A FORWARD -m conntrack --ctreplsrcport 2525 --ctreplsrc 10.2.0.9 -j DROP", &k), Action::Drop);
    assert_eq!(v("-A FORWARD -m conntrack --ctorigdst 10.2.0.0/24 --ctrepldst 10.1.0.2 -j DROP", &k), Action::Drop);
    assert_eq!(v("-A FORWARD -m conntrack ! --ctorigsrc 10.1.0.0/24 -j DROP", &k), Action::Accept);
    assert_eq!(v("-A FORWARD -m conntrack --ctorigdstport 30:25 -j DROP", &k), Action::Accept, "reversed range");
    assert_eq!(v("-A FORWARD -m conntrack --ctdir ORIGINAL -j DROP", &k), Action::Drop);
    assert_eq!(v("-A FORWARD -m conntrack --ctdir REPLY -j DROP", &k), Action::Accept);
    let both = "-A FORWARD -m conntrack --ctorigdstport 20:30 -m conntrack ! --ctorigdstport 25 -j DROP";
    assert_eq!(v(both, &k), Action::Accept, "both conntrack matches must hold");
    // No connection: the match fails, negated or not, unless a --ctstate
    // of the same match lets it through (then the tuples are not read).
    for state in [CtState::Invalid, CtState::Untracked] {
        let none = PacketKey { state, ..k };
        assert_eq!(v("-A FORWARD -m conntrack ! --ctorigdstport 1 -j DROP", &none), Action::Accept, "{state:?}");
        assert_eq!(v("-A FORWARD -m conntrack --ctdir ORIGINAL -j DROP", &none), Action::Accept, "{state:?}");
        let with_state = "-A FORWARD -m conntrack --ctstate INVALID,UNTRACKED --ctorigdstport 1 -j DROP";
        assert_eq!(v(with_state, &none), Action::Drop, "{state:?}");
        let other = "-A FORWARD -m conntrack --ctstate INVALID,UNTRACKED -m conntrack --ctorigdstport 1 -j DROP";
        assert_eq!(v(other, &none), Action::Accept, "{state:?}: a separate match needs a connection");
    }
    // Printed back as iptables-save, the rules read the same.
    for body in [
        "-A FORWARD -m conntrack ! --ctorigdstport 20:30 --ctorigsrc 10.1.0.0/16 --ctdir ORIGINAL -j DROP",
        "-A FORWARD -m conntrack --ctstate NEW,INVALID ! --ctrepldst 10.1.0.2 --ctreplsrcport 2525 -j DROP",
    ] {
        let c = compile(&file(body)).unwrap_or_else(|d| panic!("{body}: {d}"));
        let text = rules::render(&c.ruleset, rules::Format::Iptables).expect("prints");
        let again = compile(&text).unwrap_or_else(|d| panic!("{text}: {d}"));
        assert_eq!(again.ruleset.rules[0].residual, c.ruleset.rules[0].residual, "{text}");
        assert_eq!(again.ruleset.rules[0].states, c.ruleset.rules[0].states, "{text}");
    }
}
