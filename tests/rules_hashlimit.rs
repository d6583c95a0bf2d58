//! `-m hashlimit` (Linux's `xt_hashlimit`, revision 3 as iptables 1.8.9
//! uses it): what iptables and the kernel accept and refuse, the token
//! bucket per entry against hand-computed Linux values, tables shared by
//! name with the first rule's configuration, expiry, the full table's hot
//! drop, and the image against the reference evaluator on random rulesets.

#[path = "rules_common/mod.rs"]
mod rules_common;

use rules_common::{check_syntax_cases, compile_ipt as compile, packets, random_ruleset, SyntaxCase, OK};
use unifw_compiler::{self as rules, compile_ruleset, RefState, Rng};
use unifw_core::flow::{proto, Action, Chain, CtState, PacketKey, NO_IF};
use unifw_core::image::format::{HashlimitSpec, HASHLIMIT_SCALE, HL_SIP};
use unifw_core::image::{HashlimitTables, Image, LimitBucket, Lookup};

/// (line, iptables-legacy 1.8.9's refusal on Linux 6.x in a scratch
/// namespace or `OK`, what unifw says: "" loads, else part of its error).
const CASES: &[SyntaxCase] = &[
    ("-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s -j ACCEPT", OK, ""),
    ("-A INPUT -m hashlimit --hashlimit-name a --hashlimit 1/m --hashlimit-burst 10 -j ACCEPT", OK, ""),
    ("-A INPUT -m hashlimit --hashlimit-name b --hashlimit-above 3/S --hashlimit-mode srcip,dstport -j DROP", OK, ""),
    ("-A INPUT -m hashlimit --hashlimit-name c ! --hashlimit-above 3/h --hashlimit-srcmask 0x10 -j DROP", OK, ""),
    ("-A INPUT -m hashlimit --hashlimit-name d --hashlimit-upto 1/s --hashlimit-mode srcip||dstip -j DROP", OK, ""),
    ("-A INPUT -m hashlimit --hashlimit-name e --hashlimit-upto 1/s --hashlimit-mode \"\" -j DROP", OK, ""),
    ("-A INPUT -m hashlimit --hashlimit-name f --hashlimit-upto +3/s --hashlimit-burst 10k -j DROP", OK, ""),
    ("-A INPUT -m hashlimit --hashlimit-name g --hashlimit-upto 3x/s --hashlimit-burst 5x -j DROP", OK, ""),
    ("-A INPUT -m hashlimit --hashlimit-name h --hashlimit-upto 1000000/s --hashlimit-burst 010 -j DROP", OK, ""),
    ("-A INPUT -m hashlimit --hashlimit-name i --hashlimit-upto 1/day --hashlimit-burst 1000 -j DROP", OK, ""),
    ("-A INPUT -m hashlimit --hashlimit-name j --hashlimit-upto 1/h --hashlimit-burst 100000 -j DROP", OK, ""),
    (
        "-A INPUT -m hashlimit --hashlimit-name k --hashlimit-upto 7/m --hashlimit-htable-size 2048 \
         --hashlimit-htable-max 100 --hashlimit-htable-expire 5 --hashlimit-htable-gcinterval 7 -j DROP",
        OK,
        "",
    ),
    ("-A INPUT -p tcp --dport 22 -m hashlimit --hashlimit-name l --hashlimit-upto 1/s -j DROP", OK, ""),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-burst 0 -j DROP",
        Some("bad value for option \"--hashlimit-burst\", or out of range (1-1000000)."),
        "out of range (1-1000000)",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-burst 1000001 -j DROP",
        Some("bad value for option \"--hashlimit-burst\", or out of range (1-1000000)."),
        "out of range (1-1000000)",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/x -j DROP",
        Some("hashlimit: Bad value for \"--hashlimit-upto\" option: \"1/x\""),
        "bad value for \"--hashlimit-upto\"",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 0/s -j DROP",
        Some("hashlimit: Bad value for \"--hashlimit-upto\" option: \"0/s\""),
        "bad value",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1000001/s -j DROP",
        Some("Rate too fast \"1000001/s\""),
        "rate too fast",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-above 1/s -j DROP",
        Some("option \"--hashlimit-upto\" cannot be used together with \"--hashlimit-above\"."),
        "cannot be used together",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit 1/s -j DROP",
        Some("option \"--hashlimit-upto\" can only be used once."),
        "can only be used once",
    ),
    ("-A INPUT -m hashlimit --hashlimit-name a -j DROP", Some("You have to specify --hashlimit"), "you have to specify"),
    (
        "-A INPUT -m hashlimit --hashlimit-upto 1/s -j DROP",
        Some("option \"--hashlimit-name\" must be specified"),
        "must be specified",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-name b -j DROP",
        Some("option \"--hashlimit-name\" can only be used once."),
        "can only be used once",
    ),
    (
        "-A INPUT -m hashlimit ! --hashlimit-name a --hashlimit-upto 1/s -j DROP",
        Some("option \"--hashlimit-name\" cannot be inverted."),
        "cannot be inverted",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s ! --hashlimit-burst 3 -j DROP",
        Some("option \"--hashlimit-burst\" cannot be inverted."),
        "cannot be inverted",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-mode srcip,foo -j DROP",
        Some("hashlimit: Bad value for \"--hashlimit-mode\" option: \"srcip,foo\""),
        "bad value for \"--hashlimit-mode\"",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-srcmask 33 -j DROP",
        Some("iptables: Invalid argument."),
        "out of range (0-32)",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-htable-expire 0 -j DROP",
        Some("iptables: Invalid argument."),
        "must not be 0",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-htable-gcinterval 0 -j DROP",
        Some("iptables: Invalid argument."),
        "must not be 0",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-htable-size -1 -j DROP",
        Some("bad value for option \"--hashlimit-htable-size\", or out of range (0-4294967295)."),
        "out of range (0-4294967295)",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name x2 --hashlimit-upto 1/day --hashlimit-burst 1000000 -j DROP",
        Some("iptables: Numerical result out of range."),
        "overflows",
    ),
    ("-A INPUT -m hashlimit --hashlimit-name c/d --hashlimit-upto 1/s -j DROP", Some("Invalid argument"), "refused by the kernel"),
    (
        "-A INPUT -m hashlimit --hashlimit-name \"\" --hashlimit-upto 1/s -j DROP",
        Some("Argument must have a minimum length of 1 characters"),
        "at least one character",
    ),
    // Accepted by Linux, refused by unifw (with the reason).
    ("-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1kb/s -j DROP", OK, "byte rates"),
    ("-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-rate-match -j DROP", Some("iptables: Invalid argument."), "not supported by unifw"),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-rate-interval 5 -j DROP",
        OK,
        "not supported by unifw",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-htable-max 70000 -j DROP",
        OK,
        "above unifw's bound of 65536",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s --hashlimit-htable-size 8193 -j DROP",
        OK,
        "above unifw's bound of 65536",
    ),
    (
        "-A INPUT -p udp -m hashlimit --hashlimit-name e --hashlimit-upto 3/h --dport 53 -j DROP",
        OK,
        "",
    ),
    (
        "-A INPUT -p udp -m hashlimit --hashlimit-name e --hashlimit-upto 3/h --dport 53 -j RETURN",
        OK,
        "before other matches",
    ),
    (
        "-A INPUT -m hashlimit --hashlimit-name a --hashlimit-upto 1/s -m hashlimit --hashlimit-name b --hashlimit-upto 1/s -j DROP",
        OK,
        "several `-m hashlimit`",
    ),
];

fn file(body: &str) -> String {
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:user - [0:0]\n{body}\nCOMMIT\n"
    )
}

#[test]
fn unifw_refuses_what_iptables_refuses_and_reads_what_it_accepts() {
    check_syntax_cases(CASES, file);
}

fn ping(src: u32) -> PacketKey {
    PacketKey {
        proto: proto::ICMP,
        src,
        dst: 0x0a02_0001,
        src_port: 0,
        dst_port: 0,
        icmp_type: 8,
        icmp_code: 0,
        in_if: 0,
        out_if: NO_IF,
        state: CtState::New,
        extra: Default::default(),
    }
}

/// Classifies `k` in INPUT at `now` with the image's tables.
fn at(image: &Image, tables: &mut HashlimitTables, now: u64, k: &PacketKey) -> (Action, bool) {
    let mut lookup = Lookup::new(now, &mut []).with_hashlimit(tables);
    let v = image.classify_with(Chain::Input, k, &mut lookup);
    (v.action, lookup.hotdrop.is_some())
}

#[test]
fn jumpaku_icmp_guard_spends_as_xt_hashlimit() {
    // tests/corpus/iptables/Jumpaku-Services.v4: 1/m, burst 10, per source.
    let body = "-A INPUT -p icmp --icmp-type echo-request -m hashlimit --hashlimit-name t_icmp --hashlimit 1/m \
                --hashlimit-burst 10 --hashlimit-mode srcip --hashlimit-htable-expire 120000 -j ACCEPT\n\
                -A INPUT -j DROP";
    let c = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    let hl = c.ruleset.rules[0].residual.hashlimit.expect("hashlimit");
    // avg = 10^6 * 60 / 1; cost = avg * (HZ * 2^37 / 10^6) = avg * 137438953.
    assert_eq!((hl.avg, hl.burst, hl.expire, hl.gc_interval, hl.max), (60_000_000, 10, 120_000, 1000, 8192));
    assert_eq!(hl.cost(), 60_000_000 * 137_438_953);
    assert_eq!(hl.cap(), 600_000_000 * 137_438_953);
    let image = Image::from_bytes(&c.image).expect("valid image");
    let mut tables = image.hashlimit_tables(1, 0);
    let (a, b) = (ping(0x0a01_0002), ping(0x0a01_0003));
    for i in 0..10 {
        assert_eq!(at(&image, &mut tables, i, &a).0, Action::Accept, "burst packet {i}");
    }
    assert_eq!(at(&image, &mut tables, 10, &a).0, Action::Drop, "burst spent");
    assert_eq!(at(&image, &mut tables, 10, &b).0, Action::Accept, "another source");
    // Credit accrues 2^37 a jiffy (ms) from the entry's first packet at 0:
    // after the ten spends it holds t * 2^37, a packet's cost at
    // t = cost / 2^37 = 59,999.98 ms.
    assert_eq!(at(&image, &mut tables, 59_999, &a).0, Action::Drop);
    assert_eq!(at(&image, &mut tables, 60_000, &a).0, Action::Accept);
    assert_eq!(at(&image, &mut tables, 60_001, &a).0, Action::Drop);
}

#[test]
fn a_table_keeps_the_first_rules_configuration() {
    // Two rules name one table: the second's rate, burst and mode are
    // ignored (xt_hashlimit's htable_find_get); its `--hashlimit-above` is its own.
    let body = "-A INPUT -s 10.9.0.0/16 -m hashlimit --hashlimit-name s --hashlimit-upto 1/s --hashlimit-burst 2 \
                --hashlimit-mode srcip -j ACCEPT\n\
                -A INPUT -m hashlimit --hashlimit-name s --hashlimit-above 100/s --hashlimit-burst 50 \
                --hashlimit-mode dstip -j DROP\n\
                -A INPUT -j ACCEPT";
    let c = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    let warned = c.ruleset.warnings.iter().filter(|w| w.message.contains("keeps the configuration of the first rule"));
    assert_eq!(warned.map(|w| w.line).collect::<Vec<_>>(), [7], "the second rule is told its options are ignored");
    let (first, second) =
        (c.ruleset.rules[0].residual.hashlimit.unwrap(), c.ruleset.rules[1].residual.hashlimit.unwrap());
    assert_eq!(second, HashlimitSpec { invert: true, ..first });
    assert_eq!((second.avg, second.burst, second.mode), (HASHLIMIT_SCALE, 2, HL_SIP));
    let image = Image::from_bytes(&c.image).expect("valid image");
    let mut tables = image.hashlimit_tables(9, 0);
    let (inside, outside) = (ping(0x0a09_0001), ping(0x0a01_0005));
    // The second rule spends from the first's bucket of `outside` (burst 2, 1/s).
    assert_eq!(at(&image, &mut tables, 0, &outside).0, Action::Accept, "under: above does not hold");
    assert_eq!(at(&image, &mut tables, 0, &outside).0, Action::Accept);
    assert_eq!(at(&image, &mut tables, 0, &outside).0, Action::Drop, "over the first rule's limit");
    // Both rules share one entry per source: `inside` spends in rule 0 first.
    assert_eq!(at(&image, &mut tables, 0, &inside).0, Action::Accept);
    assert_eq!(at(&image, &mut tables, 0, &inside).0, Action::Accept);
    assert_eq!(at(&image, &mut tables, 0, &inside).0, Action::Drop, "rule 0 over, rule 1 over too");
    assert_eq!(at(&image, &mut tables, 1000, &inside).0, Action::Accept, "one second: one credit");
    // Another configuration from a chain Linux loads first (built-in
    // chains in hook order, then user chains by name; checked with
    // /proc/net/ipt_hashlimit on Linux 6.x): refused, as file order is not
    // Linux's. From a chain Linux loads later: the first one holds.
    for (first, then, refused) in [("user", "INPUT", true), ("OUTPUT", "INPUT", true), ("INPUT", "user", false)] {
        let body = format!(
            "-A {first} -m hashlimit --hashlimit-name s --hashlimit-upto 1/s -j ACCEPT\n\
             -A {then} -m hashlimit --hashlimit-name s --hashlimit-upto 2/s -j ACCEPT"
        );
        match compile(&file(&body)) {
            Err(e) => assert!(refused && e.to_string().contains("another configuration"), "{first} {then}: {e}"),
            Ok(_) => assert!(!refused, "{first} then {then} loads"),
        }
    }
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:zz - [0:0]\n:aa - [0:0]\n\
                -A zz -m hashlimit --hashlimit-name s --hashlimit-upto 1/s -j ACCEPT\n\
                -A aa -m hashlimit --hashlimit-name s --hashlimit-upto 2/s -j ACCEPT\nCOMMIT\n";
    assert!(compile(text).is_err(), "aa comes before zz in Linux's blob");
    // `-I` and `-D` change which rule Linux loads first.
    let one = "-A INPUT -m hashlimit --hashlimit-name s --hashlimit-upto 1/s -j ACCEPT";
    let two = "-m hashlimit --hashlimit-name s --hashlimit-upto 2/s -j DROP";
    for (body, ok) in [
        (format!("{one}\n-I INPUT {two}"), false),
        (format!("{one}\n-I INPUT 2 {two}"), true),
        (format!("{one}\n-A INPUT {two}\n-D INPUT 1"), false),
        (format!("{one}\n-A INPUT {two}\n-D INPUT 2"), true),
    ] {
        match compile(&file(&body)) {
            Err(e) => assert!(!ok && e.to_string().contains("Linux would give table `s`"), "{body}: {e}"),
            Ok(_) => assert!(ok, "{body} loads"),
        }
    }
    let same = "-A user -m hashlimit --hashlimit-name s --hashlimit-upto 1/s -j ACCEPT\n\
                -A INPUT -m hashlimit --hashlimit-name s ! --hashlimit-upto 1/s -j ACCEPT";
    compile(&file(same)).unwrap_or_else(|d| panic!("{d}"));
}

#[test]
fn a_rule_without_a_target_still_spends() {
    // No `-j`: Linux decides nothing but the packet spends its credit.
    let body =
        "-A INPUT -m hashlimit --hashlimit-name n --hashlimit-upto 1/h --hashlimit-burst 2 --hashlimit-mode srcip\n\
                -A INPUT -m hashlimit --hashlimit-name n --hashlimit-upto 1/h -j ACCEPT\n-A INPUT -j DROP";
    let c = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(c.ruleset.rules.len(), 3, "kept: it changes its table");
    let image = Image::from_bytes(&c.image).expect("valid image");
    let mut tables = image.hashlimit_tables(2, 0);
    let a = ping(0x0a01_0002);
    assert_eq!(at(&image, &mut tables, 0, &a).0, Action::Accept, "two credits: one per rule");
    assert_eq!(at(&image, &mut tables, 1, &a).0, Action::Drop, "the first rule took the last one");
}

#[test]
fn a_full_table_drops_new_entries_until_collected() {
    // size 1, max 1: one entry. A second source is dropped whatever the
    // later rules say (Linux's hotdrop) until the garbage collection
    // (every 100 ms) frees the first entry (expire 250 ms).
    let body = "-A INPUT -m hashlimit --hashlimit-name f --hashlimit-upto 10/s --hashlimit-mode srcip \
                --hashlimit-htable-size 1 --hashlimit-htable-max 1 --hashlimit-htable-expire 250 \
                --hashlimit-htable-gcinterval 100 -j ACCEPT\n-A INPUT -j ACCEPT";
    let c = compile(&file(body)).unwrap_or_else(|d| panic!("{d}"));
    let image = Image::from_bytes(&c.image).expect("valid image");
    let mut tables = image.hashlimit_tables(3, 0);
    let (a, b) = (ping(0x0a01_0002), ping(0x0a01_0003));
    assert_eq!(at(&image, &mut tables, 0, &a), (Action::Accept, false));
    assert_eq!(at(&image, &mut tables, 50, &b), (Action::Drop, true), "full: hot drop");
    assert_eq!(at(&image, &mut tables, 299, &b), (Action::Drop, true), "a expires at 250, collected at 300");
    assert_eq!(at(&image, &mut tables, 300, &b), (Action::Accept, false));
    assert_eq!(tables.full_drops, 2);
    // The reference evaluator agrees.
    let mut st = RefState { now_ms: Some(0), ..RefState::default() };
    let mut refd = |now: u64, k: &PacketKey| {
        st.now_ms = Some(now);
        c.ruleset.classify_reference(Chain::Input, k, &mut st).action
    };
    assert_eq!(
        [refd(0, &a), refd(50, &b), refd(299, &b), refd(300, &b)],
        [Action::Accept, Action::Drop, Action::Drop, Action::Accept]
    );
}

/// Random `-m hashlimit` matches on some rules: a few tables, each with
/// one configuration (as the compiler makes them), inversions per rule.
fn with_hashlimit(rng: &mut Rng, set: &mut rules::Ruleset) {
    let configs: Vec<HashlimitSpec> = (0..3u8)
        .map(|table| HashlimitSpec {
            table,
            mode: rng.below(16) as u8,
            srcmask: [32u8, 24, 0, 31][rng.below(4) as usize],
            dstmask: [32u8, 16, 1][rng.below(3) as usize],
            avg: HASHLIMIT_SCALE * [1u64, 60][rng.below(2) as usize] / [1u64, 3, 50, 1000][rng.below(4) as usize],
            burst: [1u32, 2, 5][rng.below(3) as usize],
            expire: [1u32, 500, 1000, 10_000][rng.below(4) as usize],
            gc_interval: [1u32, 300, 1000][rng.below(3) as usize],
            max: [1u32, 3, 8, 50][rng.below(4) as usize],
            invert: false,
        })
        .collect();
    for r in &mut set.rules {
        if rng.pct(50) {
            let c = configs[rng.below(3) as usize];
            r.residual.hashlimit = Some(HashlimitSpec { invert: rng.pct(30), ..c });
        }
    }
}

#[test]
fn hashlimit_tables_equal_reference() {
    let mut rng = Rng::new(41);
    let (mut hot, mut decided) = (0, 0);
    for round in 0..150 {
        let n = [1, 3, 10, 40][round % 4];
        let mut set = random_ruleset(&mut rng, n, false);
        if round % 2 == 0 {
            let actions = [Action::Accept, Action::Drop];
            set.rules = (0..2 + rng.below(6))
                .map(|i| {
                    let chain = if rng.pct(50) { Chain::Input } else { Chain::Forward };
                    rules::Rule { line: i as u32 + 1, ..rules::Rule::any(chain, actions[rng.below(2) as usize]) }
                })
                .collect();
        }
        with_hashlimit(&mut rng, &mut set);
        let compiled = compile_ruleset(set.clone()).expect("compiles");
        let image = Image::from_bytes(&compiled.image).expect("valid image");
        let mut buckets = vec![LimitBucket::default(); image.limit_count() as usize];
        let mut tables = image.hashlimit_tables(rng.below(1 << 40), 0);
        let mut reference = RefState { now_ms: Some(0), ..RefState::default() };
        let pool = [2u32, 6, 60][rng.below(3) as usize];
        let mut now = 0;
        for mut k in packets(&mut rng, &set, 1500) {
            k.src = 0x0a01_0000 + rng.below(u64::from(pool)) as u32 * 37;
            if rng.pct(50) {
                k.dst = 0x0a02_0000 + rng.below(u64::from(pool)) as u32 * 91;
            }
            now += [0, 1, 2, 50, 299, 300, 1000, 1001][rng.below(8) as usize];
            for chain in [Chain::Input, Chain::Forward] {
                reference.now_ms = Some(now);
                let want = set.classify_reference(chain, &k, &mut reference);
                let mut lookup = Lookup::new(now, &mut buckets).with_hashlimit(&mut tables);
                let got = image.classify_with(chain, &k, &mut lookup);
                assert_eq!(got, want, "round {round}, chain {chain:?}, at {now}, key {k:?}");
                assert_eq!(image.classify(chain, &k), set.classify_linear(chain, &k), "stateless, round {round}");
                decided += usize::from(got.rule.is_some_and(|r| set.rules[r as usize].residual.hashlimit.is_some()));
            }
        }
        assert_eq!(tables.full_drops, reference.hotdrops, "round {round}");
        hot += tables.full_drops;
    }
    assert!(hot > 100 && decided > 1000, "the tables fill up ({hot} hot drops) and decide ({decided})");
}
