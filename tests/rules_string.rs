//! `-m physdev` and `-m string` lines against what iptables does with them
//! (iptables-legacy 1.8.9 on Linux 6.18, `iptables-restore` in a scratch
//! network namespace, then `iptables-save`), and what an accepted line
//! means in the image and in the reference evaluator.

#[path = "rules_common/mod.rs"]
mod rules_common;

use rules_common::{check_syntax_cases, compile_ipt as compile, ipt_file as file, SyntaxCase, OK};
use unifw_compiler as rules;
use unifw_core::flow::{proto, Action, Chain, CtState, PacketKey};
use unifw_core::image::{Image, Lookup};

/// `(rule line, iptables' error or OK, unifw's error or "" for loads)`.
const PHYSDEV: &[SyntaxCase] = &[
    ("-A FORWARD -m physdev --physdev-in eth0 -j ACCEPT", OK, ""),
    ("-A INPUT -m physdev --physdev-out eth0 -j ACCEPT", OK, ""),
    ("-A FORWARD -m physdev ! --physdev-in eth0 -j ACCEPT", OK, ""),
    ("-A FORWARD -m physdev --physdev-in eth+ -j ACCEPT", OK, ""),
    ("-A FORWARD -m physdev --physdev-in 0123456789abcde -j ACCEPT", OK, ""),
    ("-A FORWARD -m physdev --physdev-in \"\" -j ACCEPT", OK, ""),
    ("-A FORWARD -m physdev --physdev-is-bridged --physdev-in \"a b\" -j ACCEPT", OK, ""),
    ("-A FORWARD -m physdev ! --physdev-is-in -j ACCEPT", OK, ""),
    (
        "-A FORWARD -m physdev ! --physdev-is-bridged ! --physdev-is-in ! --physdev-is-out ! --physdev-in a \
         ! --physdev-out b -j ACCEPT",
        OK,
        "",
    ),
    ("-A FORWARD -m physdev --physdev-is-bridged -m physdev --physdev-in eth0 -j ACCEPT", OK, ""),
    // physdev_mt_check: the output port at LOCAL_OUT only with a plain --physdev-is-bridged.
    ("-A OUTPUT -m physdev --physdev-is-bridged --physdev-out eth0 -j ACCEPT", OK, ""),
    ("-A OUTPUT -m physdev --physdev-is-bridged --physdev-is-out -j ACCEPT", OK, ""),
    ("-A OUTPUT -m physdev --physdev-in eth0 -j ACCEPT", OK, ""),
    (
        "-A OUTPUT -m physdev --physdev-out eth0 -j ACCEPT",
        Some("iptables-restore: line 5 failed"),
        "need `--physdev-is-bridged`",
    ),
    (
        "-A OUTPUT -m physdev --physdev-is-out -j ACCEPT",
        Some("iptables-restore: line 5 failed"),
        "need `--physdev-is-bridged`",
    ),
    (
        "-A OUTPUT -m physdev ! --physdev-is-bridged --physdev-out eth0 -j ACCEPT",
        Some("iptables-restore: line 5 failed"),
        "need `--physdev-is-bridged`",
    ),
    // The same check in a user chain, by the hooks that reach it.
    ("-N X\n-A X -m physdev --physdev-out eth0 -j ACCEPT\n-A FORWARD -j X", OK, ""),
    (
        "-N X\n-A X -m physdev --physdev-out eth0 -j ACCEPT\n-A OUTPUT -j X",
        Some("iptables-restore: line 8 failed"),
        "reached from filter OUTPUT",
    ),
    ("-N X\n-A X -m physdev --physdev-is-bridged --physdev-is-out -j ACCEPT\n-A OUTPUT -j X", OK, ""),
    ("-A FORWARD -m physdev -j ACCEPT", Some("PHYSDEV: no physdev option specified"), "no physdev option specified"),
    ("-A FORWARD -m physdev --physdev-in ! eth0 -j ACCEPT", Some("Bad argument `eth0'"), "eth0"),
    (
        "-A FORWARD -m physdev --physdev-in eth0 --physdev-in eth1 -j ACCEPT",
        Some("physdev: option \"--physdev-in\" can only be used once."),
        "can only be used once",
    ),
    (
        "-A FORWARD -m physdev --physdev-is-in --physdev-is-in -j ACCEPT",
        Some("physdev: option \"--physdev-is-in\" can only be used once."),
        "can only be used once",
    ),
    (
        "-A FORWARD -m physdev --physdev-in 0123456789abcdef -j ACCEPT",
        Some("interface name `0123456789abcdef' must be shorter than IFNAMSIZ (15)"),
        "must be shorter than IFNAMSIZ",
    ),
    ("-A FORWARD -m physdev --physdev-in -j ACCEPT", Some("Bad argument `ACCEPT'"), "ACCEPT"),
    ("-A FORWARD -m physdev --physdev-is-bridged eth0 -j ACCEPT", Some("Bad argument `eth0'"), "eth0"),
    ("-A FORWARD --physdev-in eth0 -j ACCEPT", Some("unknown option \"--physdev-in\""), "--physdev-in"),
];

#[test]
fn physdev_lines_are_read_as_iptables_reads_them() {
    check_syntax_cases(PHYSDEV, file);
}

fn key(chain_in: bool) -> PacketKey {
    PacketKey {
        src: 0x0a01_0002,
        dst: 0x0a02_0002,
        src_port: 40000,
        dst_port: 80,
        proto: proto::TCP,
        in_if: 0,
        out_if: if chain_in { unifw_core::flow::NO_IF } else { 1 },
        state: CtState::New,
        icmp_type: 0,
        icmp_code: 0,
        extra: Default::default(),
    }
}

/// FORWARD's verdict for a packet, from the image and from the reference.
fn forward(body: &str) -> Action {
    let compiled = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    let image = Image::from_bytes(&compiled.image).unwrap();
    let k = key(false);
    let got = image.classify(Chain::Forward, &k).action;
    let want = compiled.ruleset.classify_reference(Chain::Forward, &k, &mut rules::RefState::default()).action;
    assert_eq!(got, want, "{body}: image and reference");
    got
}

#[test]
fn physdev_holds_only_when_every_option_is_negated() {
    // Linux's physdev_mt for a packet that was not bridged (no unifw packet is).
    for (body, drop) in [
        ("-A FORWARD -m physdev --physdev-in eth0 -j DROP", false),
        ("-A FORWARD -m physdev --physdev-is-bridged -j DROP", false),
        ("-A FORWARD -m physdev ! --physdev-is-bridged -j DROP", true),
        ("-A FORWARD -m physdev ! --physdev-in eth0 ! --physdev-is-out -j DROP", true),
        ("-A FORWARD -m physdev ! --physdev-in eth0 --physdev-is-out -j DROP", false),
        ("-A FORWARD -m physdev ! --physdev-in eth0 -m physdev --physdev-is-in -j DROP", false),
    ] {
        assert_eq!(forward(body) == Action::Drop, drop, "{body}");
    }
}

#[test]
fn physdev_warns_that_it_never_matches_and_prints_back() {
    let body = "-A FORWARD -m physdev --physdev-is-bridged ! --physdev-out b --physdev-is-out ! --physdev-in a \
                --physdev-is-in -j ACCEPT";
    let compiled = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    let warnings = compiled.ruleset.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("\n");
    assert!(warnings.contains("never matches: unifw routes and bridges nothing"), "{warnings}");
    let text = rules::render(&compiled.ruleset, rules::Format::Iptables).expect("renders");
    // As iptables-save writes it:
    let saved = "-m physdev --physdev-is-in ! --physdev-in a --physdev-is-out ! --physdev-out b --physdev-is-bridged";
    assert!(text.contains(saved), "{text}");
    let again = compile(&text).unwrap_or_else(|d| panic!("{d}\n{text}"));
    let strip = |set: &rules::Ruleset| {
        set.rules.iter().map(|r| rules::Rule { line: 0, column: 0, ..r.clone() }).collect::<Vec<_>>()
    };
    assert_eq!(strip(&compiled.ruleset), strip(&again.ruleset), "{text}");
}

/// `-m string` lines (iptables-save's form back in the comments where it differs).
const STRING: &[SyntaxCase] = &[
    ("-A INPUT -m string --algo bm --string \"facebook.com\" -j DROP", OK, ""),
    // Single quotes are not iptables-restore's: they are pattern bytes (saved `|270000ff000127|`).
    ("-A INPUT -p udp --dport 53 -m string --from 50 --algo bm --hex-string '|0000FF0001|' -j DROP", OK, ""),
    ("-A INPUT -m string --algo kmp ! --string abc --icase --from 10 --to 20 -j DROP", OK, ""),
    ("-A INPUT -m string --algo kmp --string abc --to 65535 -j DROP", OK, ""),
    ("-A INPUT -m string --algo kmp --string abc --from 0x10 --to +020 -j DROP", OK, ""),
    ("-A INPUT -m string --algo bm --string abc --from 5 --to 5 -j DROP", OK, ""),
    ("-A INPUT -m string --algo bm ! --hex-string \"|41|\" -j DROP", OK, ""),
    ("-A INPUT -m string --algo bm --hex-string \"x|41 42|y\" -j DROP", OK, ""),
    ("-A INPUT -m string --algo bm --hex-string \"|41||42|\" -j DROP", OK, ""),
    ("-A INPUT -m string --algo bm --string \"a\\\"b\" -j DROP", OK, ""),
    (
        "-A INPUT -m string --string abc -j DROP",
        Some("string: option \"--algo\" must be specified"),
        "\"--algo\" must be specified",
    ),
    (
        "-A INPUT -m string --algo bm -j DROP",
        Some("STRING match: You must specify `--string' or `--hex-string'"),
        "you must specify `--string'",
    ),
    (
        "-A INPUT -m string --algo fsm --string abc -j DROP",
        Some("iptables-restore: line 6 failed"),
        "refused by the kernel",
    ),
    (
        "-A INPUT -m string --algo foo --string abc -j DROP",
        Some("iptables-restore: line 6 failed"),
        "refused by the kernel",
    ),
    ("-A INPUT -m string --algo kmp --string \"\" -j DROP", Some("iptables-restore: line 6 failed"), "empty pattern"),
    (
        "-A INPUT -m string --algo kmp --hex-string \"\" -j DROP",
        Some("STRING must contain at least one char"),
        "at least one char",
    ),
    (
        "-A INPUT -m string --algo bm --hex-string \"|\" -j DROP",
        Some("iptables-restore: line 6 failed"),
        "empty pattern",
    ),
    (
        "-A INPUT -m string --algo kmp --string abc --from 20 --to 10 -j DROP",
        Some("iptables-restore: line 6 failed"),
        "is past `--to 10`",
    ),
    (
        "-A INPUT -m string --algo kmp --string abc --to 65536 -j DROP",
        Some("string: bad value for option \"--to\", or out of range (0-65535)."),
        "bad value for option \"--to\"",
    ),
    (
        "-A INPUT -m string --algo kmp --string abc --from -1 -j DROP",
        Some("string: bad value for option \"--from\", or out of range (0-65535)."),
        "bad value for option \"--from\"",
    ),
    (
        "-A INPUT -m string --algo kmp --string abc --string def -j DROP",
        Some("string: option \"--string\" can only be used once."),
        "can only be used once",
    ),
    (
        "-A INPUT -m string --algo kmp --string abc --hex-string \"|41|\" -j DROP",
        Some("string: option \"--string\" cannot be used together with \"--hex-string\"."),
        "cannot be used together",
    ),
    (
        "-A INPUT -m string --algo kmp --string abc --icase --icase -j DROP",
        Some("string: option \"--icase\" can only be used once."),
        "can only be used once",
    ),
    (
        "-A INPUT -m string --algo kmp --string abc --algo bm -j DROP",
        Some("string: option \"--algo\" can only be used once."),
        "can only be used once",
    ),
    (
        "-A INPUT -m string --algo kmp ! --icase --string abc -j DROP",
        Some("string: option \"--icase\" cannot be inverted."),
        "cannot be inverted",
    ),
    (
        "-A INPUT -m string ! --algo kmp --string abc -j DROP",
        Some("string: option \"--algo\" cannot be inverted."),
        "cannot be inverted",
    ),
    (
        "-A INPUT -m string --algo kmp --string abc ! --from 3 -j DROP",
        Some("string: option \"--from\" cannot be inverted."),
        "cannot be inverted",
    ),
    ("-A INPUT -m string --algo bm --hex-string \"|414|\" -j DROP", Some("Invalid hex block"), "Invalid hex block"),
    (
        "-A INPUT -m string --algo bm --hex-string \"|4g|\" -j DROP",
        Some("Invalid hex char 'g'"),
        "Invalid hex char 'g'",
    ),
    (
        "-A INPUT -m string --algo bm --hex-string \"||\" -j DROP",
        Some("Odd number of hex digits"),
        "Odd number of hex digits",
    ),
    ("-A INPUT --string abc -j DROP", Some("unknown option \"--string\""), "--string"),
    // Linux takes two; unifw one per rule.
    ("-A INPUT -m string --algo bm --string abc -m string --algo kmp --string def -j DROP", OK, "several `-m string`"),
];

#[test]
fn string_lines_are_read_as_iptables_reads_them() {
    check_syntax_cases(STRING, file);
    let long = |n: usize| format!("-A INPUT -m string --algo bm --string {} -j DROP", "a".repeat(n));
    let hex = |n: usize| format!("-A INPUT -m string --algo bm --hex-string \"|{}|\" -j DROP", "41".repeat(n));
    // Measured: 128 bytes load, 129 do not ("STRING too long"); nor do 128
    // hex bytes with the closing `|` after them (libxt_string's loop).
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let (l128, l129, h127, h128) = (leak(long(128)), leak(long(129)), leak(hex(127)), leak(hex(128)));
    let cases: &[SyntaxCase] = &[
        (l128, OK, ""),
        (l129, Some("STRING too long"), "too long"),
        (h127, OK, ""),
        (h128, Some("STRING too long"), "too long"),
    ];
    check_syntax_cases(cases, file);
}

/// An IPv4/UDP packet (20 + 8 header bytes) carrying `payload`.
fn udp_packet(payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2];
    p.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p
}

/// FORWARD's verdict for `packet`, from the image (with the packet in the
/// lookup) and from the reference.
fn forward_packet(body: &str, packet: &[u8]) -> Action {
    let compiled = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    let image = Image::from_bytes(&compiled.image).unwrap();
    let k = PacketKey { proto: proto::UDP, dst_port: 53, ..key(false) };
    let mut lookup = Lookup::new(0, &mut []).with_packet(packet);
    let got = image.classify_with(Chain::Forward, &k, &mut lookup).action;
    let mut st = rules::RefState { packet: packet.to_vec(), ..Default::default() };
    let want = compiled.ruleset.classify_reference(Chain::Forward, &k, &mut st).action;
    assert_eq!(got, want, "{body}: image and reference");
    got
}

#[test]
fn string_searches_the_packet_from_its_ip_header_as_linux_does() {
    // "XYZ" at bytes 28..31, as in the measurement (Linux 6.18, lo, OUTPUT).
    let packet = udp_packet(b"XYZ");
    for (opts, drop) in [
        ("--algo bm --string XYZ", true),
        ("--algo kmp --string XYZ --to 31", true),
        ("--algo bm --string XYZ --to 30", false),
        ("--algo bm --string XYZ --from 28", true),
        ("--algo bm --string XYZ --from 29", false),
        ("--algo bm --string xyz", false),
        ("--algo bm --string xyz --icase", true),
        ("--algo bm ! --string xyz", true),
        ("--algo bm ! --string XYZ", false),
        ("--algo kmp --hex-string \"|58 59|Z\"", true),
        ("--algo kmp --hex-string \"|0a010002|\"", true), // the source address: the IP header is searched
        ("--algo bm --string XYZ --from 40", false),
    ] {
        let body = format!("-A FORWARD -p udp -m string {opts} -j DROP");
        assert_eq!(forward_packet(&body, &packet) == Action::Drop, drop, "{body}");
    }
    // Without the packet's bytes (the `explain` tool) no pattern is found.
    let compiled = compile(&file("-A FORWARD -m string --algo bm ! --string XYZ -j DROP")).unwrap();
    let image = Image::from_bytes(&compiled.image).unwrap();
    assert_eq!(image.classify(Chain::Forward, &key(false)).action, Action::Drop);
}

#[test]
fn string_rules_go_on_to_the_next_rule_and_print_back() {
    let body = "-A FORWARD -p udp -m string --algo bm --string XYZ -j DROP\n\
                -A FORWARD -p udp -m string --algo kmp ! --hex-string \"|00ff|\" --from 20 --to 1000 --icase -j REJECT\n\
                -A FORWARD -j ACCEPT";
    assert!(matches!(forward_packet(body, &udp_packet(b"abc")), Action::Reject(_)));
    assert_eq!(forward_packet(body, &udp_packet(b"\x00\xff")), Action::Accept);
    assert_eq!(forward_packet(body, &udp_packet(b"..XYZ..")), Action::Drop);
    let compiled = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    let text = rules::render(&compiled.ruleset, rules::Format::Iptables).expect("renders");
    assert!(text.contains("-m string --string \"XYZ\" --algo bm -j DROP"), "{text}");
    assert!(
        text.contains("-m string ! --hex-string \"|00ff|\" --algo kmp --from 20 --to 1000 --icase -j REJECT"),
        "{text}"
    );
    let again = compile(&text).unwrap_or_else(|d| panic!("{d}\n{text}"));
    let strip = |set: &rules::Ruleset| {
        set.rules.iter().map(|r| rules::Rule { line: 0, column: 0, ..r.clone() }).collect::<Vec<_>>()
    };
    assert_eq!(strip(&compiled.ruleset), strip(&again.ruleset), "{text}");
}

#[test]
fn any_pattern_prints_back_to_itself() {
    // Random patterns (printable, quotes, backslashes, any byte), written
    // in hex, printed as iptables-save would (`--string` or `--hex-string`),
    // read again: the same record.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        // At most 127: 128 bytes in one hex block are "too long" for iptables.
        let len = (next() % 127 + 1) as usize;
        let pick = [b'a', b'"', b'\\', b' ', b'|', 0x00, 0xff, b'Z'];
        let pattern: Vec<u8> = (0..len)
            .map(|_| if next() % 3 == 0 { (next() % 256) as u8 } else { pick[(next() % 8) as usize] })
            .collect();
        let hex: String = pattern.iter().map(|b| format!("{b:02x}")).collect();
        let neg = if next() % 2 == 0 { "! " } else { "" };
        let body = format!("-A FORWARD -m string --algo kmp {neg}--hex-string \"|{hex}|\" --from 3 -j DROP");
        let first = compile(&file(&body)).unwrap_or_else(|d| panic!("{d}"));
        let text = rules::render(&first.ruleset, rules::Format::Iptables).expect("renders");
        let again = compile(&text).unwrap_or_else(|d| panic!("{d}\n{text}"));
        let spec = first.ruleset.rules[0].string.expect("a string match");
        assert_eq!(spec.pattern(), pattern.as_slice());
        assert_eq!(again.ruleset.rules[0].string, Some(spec), "{text}");
    }
}
