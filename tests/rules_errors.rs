//! Bad rules files: every error reported as FILE:LINE:COLUMN with the
//! offending text, up to a cap, and never a panic.

use unifw_compiler::{self as rules, Diagnostics, MAX_ERRORS};
use unifw_core::flow::{Action, Chain};
use unifw_core::image::Image;

fn load(p: &str) -> Result<Vec<u8>, String> {
    match p {
        "dir/lab.ipt" => Ok(b"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n-A FORWARD -s 10.1.0.0/24 -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n".to_vec()),
        "dir/loop.rules" => Ok(b"include \"loop.rules\"\n".to_vec()),
        _ => Err("no such file".into()),
    }
}

fn errors(text: &[u8]) -> Diagnostics {
    match rules::compile("dir/t.rules", text, &mut load) {
        Ok(_) => panic!("expected errors for {:?}", String::from_utf8_lossy(&text[..text.len().min(200)])),
        Err(d) => d,
    }
}

fn first(text: &str) -> String {
    errors(text.as_bytes()).errors[0].to_string()
}

#[test]
fn messages_name_file_line_column_and_text() {
    let e = first("policy forward drop\nforward accept from 10.0.0.0/33\n");
    assert!(e.starts_with("dir/t.rules:2:21: bad prefix length `/33`"), "{e}");
    assert!(e.contains("forward accept from 10.0.0.0/33\n"), "{e}");
    let e = first("forward accept tcp port 70000\n");
    assert!(e.starts_with("dir/t.rules:1:25: bad port: 70000 is out of range"), "{e}");
    let e = first("forward accept in eth3\n");
    assert!(e.contains("unknown interface eth3"), "{e}");
    let e = first("forward accept from $nope\n");
    assert!(e.contains("unknown set `$nope`"), "{e}");
    let e = first("forward accept port 80\n");
    assert!(e.contains("port matches need `tcp` or `udp`"), "{e}");
    let e = first("forward frobnicate\n");
    assert!(e.contains("unknown action `frobnicate`"), "{e}");
}

#[test]
fn all_errors_are_reported_up_to_the_cap() {
    let d = errors(b"forward accept from 1.2.3.4/40\nforward accept to 300.1.1.1\nforward bogus\n");
    assert_eq!(d.count(), 3, "{d}");
    let many = "forward accept from 1.2.3.4/99\n".repeat(500);
    let d = errors(many.as_bytes());
    assert_eq!(d.errors.len(), MAX_ERRORS);
    assert_eq!(d.count(), MAX_ERRORS);
    assert!(d.to_string().contains("stopped after 50 errors"), "{d}");
}

#[test]
fn hostile_input_never_panics() {
    assert!(errors(b"").errors[0].to_string().contains("empty"));
    assert!(errors(b"# only a comment\n\n").errors[0].to_string().contains("no statements"));
    let long = format!("forward accept from {}\n", "1".repeat(10 << 20));
    assert!(errors(long.as_bytes()).count() >= 1);
    assert!(errors(b"forward accept from \xff\xfe 1.2.3.4\n").errors[0].to_string().contains("not UTF-8"));
    assert!(errors(b"set s { 10.0.0.0/8,\n 11.0.0.0/8").errors[0].to_string().contains("never closed"));
    assert!(errors(b"forward accept tcp from 10.1.").count() >= 1);
    assert!(errors(b"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n").errors[0].to_string().contains("no COMMIT"));
    // iptables-restore ends a table only at a line exactly "COMMIT\n".
    for end in ["COMMIT", "COMMIT \n", " COMMIT\n", "COMMIT\r\n", "COMMIT\t\n"] {
        let d = errors(format!("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n{end}").as_bytes());
        assert_eq!(d.count(), 1, "{end:?}: {d:?}");
        assert!(d.errors[0].to_string().contains("Bad argument `COMMIT'"), "{end:?}: {}", d.errors[0]);
    }
    assert!(errors(b"include \"loop.rules\"\n").errors.iter().any(|d| d.message.contains("nest")));
}

#[test]
fn iptables_unsupported_things_are_named() {
    let ipt = |body: &str| format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n{body}\nCOMMIT\n");
    let e = first(&ipt("-A FORWARD -m time --timestart 01:00 -j DROP"));
    assert!(e.contains("match `-m time` is not supported") && e.contains(":4:"), "{e}");
    let e = first(&ipt("-A FORWARD -j NFQUEUE"));
    assert!(e.contains("target `NFQUEUE` is not supported"), "{e}");
    let e = first(&ipt("-A FORWARD -m conntrack --ctexpire 10 -j DROP"));
    assert!(e.contains("option `--ctexpire`"), "{e}");
    let e = first(&ipt("-A OUTPUT -j MARK --set-mark 1"));
    assert!(e.contains("target `MARK` is not supported") && e.contains("marks"), "{e}");
    let e = first("*raw\n-A PREROUTING -j CT --zone 1\nCOMMIT\n");
    assert!(e.contains("option `--zone` of `-j CT` is not supported"), "{e}");
    let e = first(":MYCHAIN - [0:0]\n");
    assert!(e.contains("expected a table"), "{e}");
    let e = first("*security\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j ACCEPT\nCOMMIT\n");
    assert!(e.contains("table `security` is not supported"), "{e}");
    let e = first("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j REDIRECT --to-ports 8080\nCOMMIT\n");
    assert!(e.contains("target `REDIRECT` (to the firewall itself) is not supported"), "{e}");
    let e = first("*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j DNAT --to 1.2.3.4\nCOMMIT\n");
    assert!(e.contains("nat table's OUTPUT chain are not supported"), "{e}");
}

#[test]
fn native_file_includes_iptables_save() {
    let text = b"interface eth0 10.1.0.1/24\ninterface eth1 10.2.0.1/24\npolicy forward drop\nforward drop tcp port 23\ninclude \"lab.ipt\"\nforward accept\n";
    let c = rules::compile("dir/t.rules", text, &mut load).expect("compiles");
    let image = Image::from_bytes(&c.image).expect("valid");
    assert_eq!(image.rule_count(Chain::Forward), 3);
    assert_eq!(image.policy(Chain::Forward), Action::Drop, "the include's FORWARD policy applies");
    assert_eq!(image.rule_line(1), 4, "included rules keep their own line numbers");
}

#[test]
fn a_match_given_twice_is_an_error() {
    assert!(first("forward accept tcp udp\n").contains("`udp` is given twice"));
    assert!(first("forward accept tcp port 1 dport 2\n").contains("`dport` is given twice"));
}

#[test]
fn interface_mac_and_fallback_errors() {
    let e = first("interface eth0 mac 52:54:00:12:34 10.1.0.1/24\n");
    assert!(e.starts_with("dir/t.rules:1:20: bad MAC address `52:54:00:12:34`"), "{e}");
    let e = first("interface eth0 mac 01:00:5e:00:00:01 10.1.0.1/24\n");
    assert!(e.contains("group (multicast) address"), "{e}");
    let e = first("interface eth0 mac 52:54:00:12:34:56 10.1.0.1/24\ninterface eth1 mac 52:54:00:12:34:56 dhcp\n");
    assert!(e.starts_with("dir/t.rules:2:20: MAC 52:54:00:12:34:56 is already bound to eth0"), "{e}");
    // Case does not make another MAC.
    let e = first("interface eth0 mac 52:54:00:ab:cd:ef none\ninterface eth3 mac 52:54:00:AB:CD:EF none\n");
    assert!(e.contains("already bound to eth0"), "{e}");
    let e = first("interface eth0 mac\n");
    assert!(e.contains("expected a MAC address"), "{e}");
    let e = first("interface eth0 mac 52:54:00:12:34:56\n");
    assert!(e.contains("expected an address like 10.1.0.1/24, `dhcp` or `none`"), "{e}");
    let e = first("interface eth0 10.1.0.1/24 fallback 10.1.0.5/24\n");
    assert!(e.starts_with("dir/t.rules:1:28: only a `dhcp` interface has a fallback"), "{e}");
    let e = first("interface eth0 none fallback 10.1.0.5/24\n");
    assert!(e.contains("only a `dhcp` interface has a fallback"), "{e}");
    let e = first("interface eth2 dhcp fallback\n");
    assert!(e.contains("expected a fallback address"), "{e}");
    let e = first("interface eth2 dhcp fallback 10.3.0.5\n");
    assert!(e.contains("needs a prefix length"), "{e}");
    for bad in ["0", "256", "10m", "-1", "s"] {
        let e = first(&format!("interface eth2 dhcp fallback 10.3.0.5/24 after {bad}\n"));
        assert!(e.contains(&format!("bad fallback delay `{bad}`: 1 to 255 seconds")), "{e}");
    }
    let e = first("interface eth2 dhcp after 10\n");
    assert!(e.contains("expected end of line, found `after`"), "{e}");
    let e = first("interface eth2 mac 52:54:00:12:34:56 mac 52:54:00:12:34:57 dhcp\n");
    assert!(e.starts_with("dir/t.rules:1:38: `mac` is given twice"), "{e}");
}

#[test]
fn reverse_path_filter_errors() {
    let e = first("interface eth0 10.1.0.1/24 rpfilter\n");
    assert!(e.starts_with("dir/t.rules:1:36: expected a reverse-path filter mode: strict, loose or off"), "{e}");
    let e = first("interface eth0 10.1.0.1/24 rpfilter 1\n");
    assert!(e.starts_with("dir/t.rules:1:37: unknown reverse-path filter mode `1` (strict, loose or off)"), "{e}");
    let e = first("interface eth0 10.1.0.1/24 rpfilter loose rpfilter off\n");
    assert!(e.starts_with("dir/t.rules:1:43: this interface option is given twice"), "{e}");
    let e = first("interface eth0 rpfilter off 10.1.0.1/24\n");
    assert!(e.starts_with("dir/t.rules:1:16: an interface address needs a prefix length"), "{e}");
}

#[test]
fn interface_mtu_errors() {
    for bad in ["67", "9001", "0", "1500b", "-1", "65536"] {
        let e = first(&format!("interface eth0 10.1.0.1/24 mtu {bad}\n"));
        assert!(e.starts_with(&format!("dir/t.rules:1:32: bad MTU `{bad}`: 68 to 9000 bytes")), "{e}");
    }
    let e = first("interface eth0 dhcp mtu\n");
    assert!(e.contains("expected an MTU in bytes, like 1500"), "{e}");
    let e = first("interface eth0 10.1.0.1/24 mtu 1400 mtu 1300\n");
    assert!(e.contains("this interface option is given twice"), "{e}");
    let e = first("interface eth2 dhcp mtu 1400 fallback 10.3.0.5/24\n");
    assert!(e.contains("expected end of line, found `fallback`"), "{e}");
}

#[test]
fn bad_metrics_statements_are_errors_at_their_place() {
    let head = "interface eth0 10.1.0.1/24\n";
    let cases = [
        ("metrics eth1 from 10.1.0.2\n", "2:9: unknown interface eth1 (declare it first"),
        ("metrics eth0\n", "2:13: expected `from` and the sources that may scrape"),
        ("metrics eth0 port 9100\n", "2:23: expected `from` and the sources"),
        ("metrics eth0 from !10.1.0.2\n", "2:19: `!` is not allowed here"),
        ("metrics eth0 port 0 from 10.1.0.2\n", "2:19: bad port `0` (1-65535)"),
        ("metrics eth0 port 70000 from 10.1.0.2\n", "2:19: bad port `70000`"),
        ("metrics eth0 port 1 port 2 from 10.1.0.2\n", "2:21: `port` is given twice"),
        ("metrics eth0 from 10.1.0.2 from 10.1.0.3\n", "2:28: `from` is given twice"),
        ("metrics eth0 from 10.1.0.2 log\n", "2:28: expected end of line, found `log`"),
        ("metrics eth0 from 10.1.0.1/24\n", "2:19: "),
        ("metrics eth0 from 10.1.0.2\nmetrics eth0 from 10.1.0.3\n", "3:1: metrics on eth0 is given twice"),
        ("metrics from 10.1.0.2\n", "2:9: bad interface name `from`"),
    ];
    for (text, want) in cases {
        let e = first(&format!("{head}{text}"));
        assert!(e.starts_with(&format!("dir/t.rules:{want}")), "{text:?}: {e}");
    }
}

#[test]
fn wire_pair_errors() {
    let e = first("wire eth1 eth1\n");
    assert!(e.starts_with("dir/t.rules:1:1: a wire pairs two interfaces, not eth1 with itself"), "{e}");
    let e = first("interface eth1 10.1.0.1/24\nwire eth1 eth2\n");
    assert!(e.contains("eth1 has an address: a wire side has none (`interface eth1 none`)"), "{e}");
    let e = first("interface eth2 dhcp\nwire eth1 eth2\n");
    assert!(e.contains("eth2 has an address"), "{e}");
    let e = first("wire eth1 eth2\nwire eth3 eth2\n");
    assert!(e.starts_with("dir/t.rules:2:1: eth2 is already in a wire pair with eth1"), "{e}");
    let e = first("wire eth1 eth2\ninterface eth1 10.1.0.1/24\n");
    assert!(e.contains("eth1 is already a wire side; declare `interface eth1 none ...` before"), "{e}");
    let e = first("wire eth1 eth2\nmetrics eth2 port 9100 from 10.0.0.0/8\n");
    assert!(e.contains("eth2 is a wire side: it has no address to serve metrics on"), "{e}");
    let e = first("wire eth1\n");
    assert!(e.contains("expected an interface name like eth1"), "{e}");
}
