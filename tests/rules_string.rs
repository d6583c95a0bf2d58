//! `-m physdev` and `-m string` lines against what iptables does with them
//! (iptables-legacy 1.8.9 on Linux 6.18, `iptables-restore` in a scratch
//! network namespace, then `iptables-save`), and what an accepted line
//! means in the image and in the reference evaluator.

#[path = "rules_common/mod.rs"]
mod rules_common;

use rules_common::{check_syntax_cases, compile_ipt as compile, ipt_file as file, SyntaxCase, OK};
use unifw_compiler as rules;
use unifw_core::flow::{proto, Action, Chain, CtState, PacketKey};
use unifw_core::image::Image;

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
