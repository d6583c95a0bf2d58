//! `-m connlimit` lines against what iptables does with them (iptables-legacy
//! 1.8.9 on Linux 6.18, `iptables-restore` in a scratch network namespace,
//! then `iptables-save`), and what an accepted line means: the image and
//! the reference evaluator give the same verdicts for the same counts.

#[path = "rules_common/mod.rs"]
mod rules_common;

use rules_common::{check_syntax_cases, compile_ipt as compile, ipt_file as file, SyntaxCase, OK};
use unifw_compiler as rules;
use unifw_core::flow::{proto, Action, Chain, CtState, PacketKey};
use unifw_core::image::{ConnLimits, Image, Lookup};

/// `(rule line, iptables' error or OK, unifw's error or "" for loads)`.
const CASES: &[SyntaxCase] = &[
    // Saved back as `--connlimit-above 2 --connlimit-mask 32 --connlimit-saddr`.
    ("-A INPUT -p tcp -m connlimit --connlimit-above 2 -j REJECT --reject-with tcp-reset", OK, ""),
    ("-A INPUT -p tcp --syn --dport 80 -m connlimit --connlimit-above 15 --connlimit-mask 32 -j DROP", OK, ""),
    // `! --connlimit-upto 2` is saved as `--connlimit-above 2`, and back.
    ("-A INPUT -m connlimit ! --connlimit-upto 2 --connlimit-daddr --connlimit-mask 0 -j DROP", OK, ""),
    ("-A INPUT -m connlimit ! --connlimit-above 2 -j DROP", OK, ""),
    ("-A INPUT -m connlimit --connlimit-upto 0 -j DROP", OK, ""),
    // Numbers as xtables_strtoui reads them: 0x10 is 16, mask 024 is 20.
    ("-A INPUT -m connlimit --connlimit-above 0x10 --connlimit-mask 024 -j DROP", OK, ""),
    ("-A INPUT -m connlimit --connlimit-above 4294967295 -j DROP", OK, ""),
    ("-A INPUT -m connlimit --connlimit-above 1 --connlimit-mask 255.255.255.0 -j DROP", OK, ""),
    ("-A INPUT -m connlimit --connlimit-above 1 --connlimit-mask +8 -j DROP", OK, ""),
    ("-A INPUT -m connlimit --connlimit-above 1 --connlimit-saddr -j DROP", OK, ""),
    ("-A INPUT -m connlimit --connlimit-above 1 -m comment --comment x -j DROP", OK, ""),
    (
        "-A INPUT -m connlimit --connlimit-above 2 --connlimit-upto 3 -j DROP",
        Some("connlimit: option \"--connlimit-upto\" cannot be used together with \"--connlimit-above\"."),
        "cannot be used together with \"--connlimit-above\"",
    ),
    (
        "-A INPUT -m connlimit --connlimit-mask 24 -j DROP",
        Some("You must specify \"--connlimit-above\" or \"--connlimit-upto\"."),
        "you must specify \"--connlimit-above\" or \"--connlimit-upto\"",
    ),
    (
        "-A INPUT -m connlimit ! --connlimit-mask 24 --connlimit-above 1 -j DROP",
        Some("connlimit: option \"--connlimit-mask\" cannot be inverted."),
        "cannot be inverted",
    ),
    (
        "-A INPUT -m connlimit --connlimit-above 1 ! --connlimit-daddr -j DROP",
        Some("connlimit: option \"--connlimit-daddr\" cannot be inverted."),
        "cannot be inverted",
    ),
    (
        "-A INPUT -m connlimit --connlimit-above 2 --connlimit-saddr --connlimit-daddr -j DROP",
        Some("connlimit: option \"--connlimit-saddr\" cannot be used together with \"--connlimit-daddr\"."),
        "cannot be used together",
    ),
    (
        "-A INPUT -m connlimit --connlimit-above 2 --connlimit-above 3 -j DROP",
        Some("connlimit: option \"--connlimit-above\" can only be used once."),
        "can only be used once",
    ),
    (
        "-A INPUT -m connlimit --connlimit-above 1 --connlimit-saddr --connlimit-saddr -j DROP",
        Some("connlimit: option \"--connlimit-saddr\" can only be used once."),
        "can only be used once",
    ),
    (
        "-A INPUT -m connlimit --connlimit-above 1 --connlimit-mask 24 --connlimit-mask 16 -j DROP",
        Some("connlimit: option \"--connlimit-mask\" can only be used once."),
        "can only be used once",
    ),
    (
        "-A INPUT -m connlimit --connlimit-above 4294967296 -j DROP",
        Some("connlimit: bad value for option \"--connlimit-above\", or out of range (0-4294967295)."),
        "bad value for option \"--connlimit-above\"",
    ),
    (
        "-A INPUT -m connlimit --connlimit-above -1 -j DROP",
        Some("connlimit: bad value for option \"--connlimit-above\", or out of range (0-4294967295)."),
        "bad value",
    ),
    (
        "-A INPUT -m connlimit --connlimit-mask 24/ --connlimit-above 1 -j DROP",
        Some(
            "connlimit: bad value for option \"--connlimit-mask\", neither a valid network mask nor valid CIDR (0-32).",
        ),
        "neither a valid network mask nor valid CIDR",
    ),
    (
        "-A INPUT -m connlimit --connlimit-above 1 --connlimit-mask 8x -j DROP",
        Some(
            "connlimit: bad value for option \"--connlimit-mask\", neither a valid network mask nor valid CIDR (0-32).",
        ),
        "neither a valid network mask nor valid CIDR",
    ),
    ("-A INPUT -m connlimit --connlimit-above 1 --connlimit-mask -j DROP", Some("requires an argument"), "bad value"),
    // iptables reads 33 as the dotted mask 0.0.0.33 and saves it as 32; an
    // odd mask unifw does not guess at.
    ("-A INPUT -m connlimit --connlimit-above 1 --connlimit-mask 33 -j DROP", OK, "unifw takes a prefix length"),
    ("-A INPUT -m connlimit --connlimit-above 1 --connlimit-mask 255.0.255.0 -j DROP", OK, "unifw takes a prefix"),
    // Limits of unifw's own.
    ("-A INPUT -m connlimit --connlimit-above 1 -m connlimit --connlimit-above 2 -j DROP", OK, ""),
    // Split in two (rules/README.md, "Stateful matches before other matches").
    ("-A INPUT -m connlimit --connlimit-above 1 -p tcp -m tcp --dport 22 -j DROP", OK, ""),
    ("-A INPUT -m connlimit --connlimit-above 1 -m limit --limit 1/s -j DROP", OK, ""),
    (
        "-A INPUT -m connlimit --connlimit-above 1 -p tcp -m tcp --dport 22 -j RETURN",
        OK,
        "must be the rule's last match",
    ),
    ("-A INPUT -m connlimit --connlimit-above 1 --connlimit-foo -j DROP", Some("unknown option"), "`--connlimit-foo`"),
];

#[test]
fn unifw_refuses_what_iptables_refuses_and_reads_what_it_accepts() {
    check_syntax_cases(CASES, file);
}

#[test]
fn errors_point_at_the_match() {
    let text = file("-A INPUT -m connlimit --connlimit-mask 24 -j DROP");
    let d = compile(&text).unwrap_err();
    let e = &d.errors[0];
    assert_eq!((e.line, e.column), (5, 13), "{d}");
}

#[test]
fn more_connlimit_rules_than_the_bound_are_refused() {
    let lines = |n: usize| -> String {
        (0..n)
            .map(|i| format!("-A INPUT -p tcp --dport {} -m connlimit --connlimit-above 1 -j DROP\n", i + 1))
            .collect()
    };
    let max = unifw_core::image::format::MAX_CONNLIMIT_RULES;
    let ok = compile(&file(&lines(max))).expect("the bound itself loads");
    let image = Image::from_bytes(&ok.image).unwrap();
    assert_eq!(image.connlimit_rules(), max, "one counter set per rule");
    let d = compile(&file(&lines(max + 1))).unwrap_err();
    assert!(d.errors.iter().any(|e| e.message.contains("more than 16 rules with `-m connlimit`")), "{d}");
}

fn key(src: u32, dst: u32, state: CtState) -> PacketKey {
    PacketKey {
        src,
        dst,
        src_port: 40000,
        dst_port: 80,
        proto: proto::TCP,
        in_if: 0,
        out_if: unifw_core::flow::NO_IF,
        state,
        icmp_type: 0,
        icmp_code: 0,
        extra: Default::default(),
    }
}

/// Verdicts of INPUT for `key` with the packet's connection counting
/// `count` (its own included), from the image (ConnLimits fed `count - 1`
/// other connections through confirmed flows) and from the reference.
fn both(body: &str, k: &PacketKey, count: u32) -> (Action, Action) {
    let compiled = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    let image = Image::from_bytes(&compiled.image).unwrap();
    let mut counts = ConnLimits::new(image.connlimit_rules(), 64, 7);
    // `count - 1` confirmed connections from the same address, each counted
    // by the rule (a new connection counted when conntrack confirms it).
    for slot in 0..count.saturating_sub(1) {
        counts.begin(None, true);
        let mut lookup = Lookup::new(0, &mut []).with_connlimit(&mut counts);
        image.classify_with(Chain::Input, &key(k.src, k.dst, CtState::New), &mut lookup);
        counts.confirmed(slot, u64::MAX);
    }
    counts.begin(None, true);
    let mut lookup = Lookup::new(0, &mut []).with_connlimit(&mut counts);
    let got = image.classify_with(Chain::Input, k, &mut lookup).action;
    let mut st = rules::RefState::default();
    let set = &compiled.ruleset;
    let rule = set.rules.iter().position(|r| r.residual.connlimit.is_some()).unwrap();
    let c = set.rules[rule].residual.connlimit.unwrap();
    let addr = if c.dest { k.dst } else { k.src } & c.mask;
    st.connections.insert((rule, addr), count);
    let want = set.classify_reference(Chain::Input, k, &mut st).action;
    (got, want)
}

#[test]
fn above_upto_and_inversion_mean_what_they_mean_in_linux() {
    let k = key(0x0a01_0002, 0x0a01_0001, CtState::New);
    let drop = |body: &str, count: u32| {
        let (got, want) = both(body, &k, count);
        assert_eq!(got, want, "{body} with {count} connections: image and reference");
        got == Action::Drop
    };
    let above = "-A INPUT -p tcp -m connlimit --connlimit-above 2 -j DROP";
    assert!(!drop(above, 1) && !drop(above, 2) && drop(above, 3), "above 2: the third is over");
    let upto = "-A INPUT -p tcp -m connlimit --connlimit-upto 2 -j DROP";
    assert!(drop(upto, 1) && drop(upto, 2) && !drop(upto, 3), "upto 2: up to the second");
    let not_above = "-A INPUT -p tcp -m connlimit ! --connlimit-above 2 -j DROP";
    assert!(drop(not_above, 2) && !drop(not_above, 3), "! above is upto");
    let not_upto = "-A INPUT -p tcp -m connlimit ! --connlimit-upto 2 -j DROP";
    assert!(!drop(not_upto, 2) && drop(not_upto, 3), "! upto is above");
    let zero = "-A INPUT -p tcp -m connlimit --connlimit-above 0 -j DROP";
    assert!(drop(zero, 1), "above 0: every connection, the first too");
    let daddr = "-A INPUT -p tcp -m connlimit --connlimit-above 1 --connlimit-daddr --connlimit-mask 24 -j DROP";
    assert!(!drop(daddr, 1) && drop(daddr, 2));
}

#[test]
fn without_counts_a_packet_is_its_connection_alone() {
    let compiled = compile(&file(
        "-A INPUT -m connlimit --connlimit-above 0 -j DROP\n-A INPUT -m connlimit --connlimit-upto 0 -j REJECT",
    ))
    .unwrap();
    let image = Image::from_bytes(&compiled.image).unwrap();
    let k = key(1, 2, CtState::New);
    assert_eq!(image.classify(Chain::Input, &k).action, Action::Drop);
    assert_eq!(compiled.ruleset.classify_linear(Chain::Input, &k).action, Action::Drop);
}

#[test]
fn connlimit_prints_back_as_iptables_save_writes_it() {
    let body = "-A INPUT -p tcp -m connlimit ! --connlimit-upto 111 -j REJECT --reject-with tcp-reset\n\
                -A FORWARD -p tcp --syn --dport 80 -m connlimit --connlimit-upto 0x10 --connlimit-mask 024 \
                --connlimit-daddr -j DROP";
    let first = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    let text = rules::render(&first.ruleset, rules::Format::Iptables).expect("renders");
    // iptables-save writes these two as:
    assert!(text.contains("-m connlimit --connlimit-above 111 --connlimit-mask 32 --connlimit-saddr"), "{text}");
    assert!(text.contains("-m connlimit --connlimit-upto 16 --connlimit-mask 20 --connlimit-daddr"), "{text}");
    let again = compile(&text).unwrap_or_else(|d| panic!("{d}\n{text}"));
    let strip = |set: &rules::Ruleset| {
        set.rules.iter().map(|r| rules::Rule { line: 0, column: 0, ..r.clone() }).collect::<Vec<_>>()
    };
    assert_eq!(strip(&first.ruleset), strip(&again.ruleset), "{text}");
}

#[test]
fn connlimit_before_other_matches_is_counted_as_unsupported_where_no_split_can_keep_the_order() {
    let d = compile(&file("-A INPUT -m connlimit --connlimit-above 1 -p tcp -m tcp --dport 22 -j RETURN")).unwrap_err();
    assert!(d.to_string().contains("unsupported: -m connlimit before other matches (1 rule)"), "{d}");
}
