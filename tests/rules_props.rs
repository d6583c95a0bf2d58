//! Property tests: compiled tables against the linear-scan reference, on
//! random rulesets of every field kind and random packets, and the native
//! and iptables-save texts of the same rules against each other.

mod rules_common;

use rules_common::{packets, random_ruleset};
use unifw_compiler::{self as rules, compile_ruleset, render, Format, Rng};
use unifw_core::flow::Chain;
use unifw_core::image::Image;

fn no_includes(p: &str) -> Result<Vec<u8>, String> {
    Err(format!("no includes here ({p})"))
}

#[test]
fn tables_equal_linear_scan() {
    let mut rng = Rng::new(42);
    for round in 0..300 {
        let n = [1, 2, 5, 20, 100, 400][round % 6];
        let set = random_ruleset(&mut rng, n, false);
        let compiled = compile_ruleset(set.clone()).expect("compiles");
        let image = Image::from_bytes(&compiled.image).expect("valid image");
        for k in packets(&mut rng, &set, 300) {
            for chain in [Chain::Input, Chain::Forward] {
                let want = set.classify_linear(chain, &k);
                assert_eq!(image.classify(chain, &k), want, "round {round}, chain {chain:?}, key {k:?}");
                assert_eq!(image.classify_linear(chain, &k), want, "linear image scan, round {round}");
            }
        }
    }
}

#[test]
fn large_ruleset_with_cell_index_equals_linear_scan() {
    let mut rng = Rng::new(7);
    let set = random_ruleset(&mut rng, 5000, false);
    let compiled = compile_ruleset(set.clone()).expect("compiles");
    let image = Image::from_bytes(&compiled.image).expect("valid image");
    for k in packets(&mut rng, &set, 3000) {
        assert_eq!(image.classify(Chain::Forward, &k), set.classify_linear(Chain::Forward, &k), "key {k:?}");
    }
}

#[test]
fn native_text_round_trips() {
    let mut rng = Rng::new(5);
    for _ in 0..100 {
        let set = random_ruleset(&mut rng, 30, false);
        let text = render(&set, Format::Unifw).expect("renders");
        let parsed =
            rules::parse("t.rules", text.as_bytes(), &mut no_includes).unwrap_or_else(|d| panic!("{d}\n{text}"));
        let compiled = compile_ruleset(parsed).expect("compiles");
        let image = Image::from_bytes(&compiled.image).expect("valid");
        for k in packets(&mut rng, &set, 200) {
            for chain in [Chain::Input, Chain::Forward] {
                let want = set.classify_linear(chain, &k);
                let got = image.classify(chain, &k);
                assert_eq!((got.action, got.rule, got.log), (want.action, want.rule, want.log), "{text}\n{k:?}");
            }
        }
    }
}

#[test]
fn iptables_save_equals_native() {
    let mut rng = Rng::new(9);
    for _ in 0..100 {
        let set = random_ruleset(&mut rng, 30, true);
        let ipt = render(&set, Format::Iptables).expect("iptables can express these rules");
        let native = render(&set, Format::Unifw).expect("renders");
        let a = rules::compile("t.ipt", ipt.as_bytes(), &mut no_includes).unwrap_or_else(|d| panic!("{d}\n{ipt}"));
        let b =
            rules::compile("t.rules", native.as_bytes(), &mut no_includes).unwrap_or_else(|d| panic!("{d}\n{native}"));
        let (ia, ib) = (Image::from_bytes(&a.image).expect("valid"), Image::from_bytes(&b.image).expect("valid"));
        assert_eq!(ia.interfaces().collect::<Vec<_>>(), unifw_compiler::Ruleset::lab_interfaces());
        for k in packets(&mut rng, &set, 200) {
            for chain in [Chain::Input, Chain::Forward] {
                assert_eq!(ia.classify(chain, &k), ib.classify(chain, &k), "{ipt}\n{k:?}");
            }
        }
    }
}

#[test]
fn either_ports_equal_reference_and_print_back() {
    let mut rng = Rng::new(11);
    for round in 0..150 {
        let n = [1, 3, 10, 40, 200][round % 5];
        let mut set = random_ruleset(&mut rng, n, true);
        rules_common::with_either_ports(&mut rng, &mut set);
        let compiled = compile_ruleset(set.clone()).expect("compiles");
        let image = Image::from_bytes(&compiled.image).expect("valid image");
        let ipt = render(&set, Format::Iptables).expect("iptables can express these rules");
        let back = rules::compile("t.ipt", ipt.as_bytes(), &mut no_includes).unwrap_or_else(|d| panic!("{d}\n{ipt}"));
        let reread = Image::from_bytes(&back.image).expect("valid");
        for k in packets(&mut rng, &set, 300) {
            for chain in [Chain::Input, Chain::Forward] {
                let want = set.classify_linear(chain, &k);
                assert_eq!(image.classify(chain, &k), want, "round {round}, chain {chain:?}, key {k:?}");
                assert_eq!(image.classify_linear(chain, &k), want, "linear image scan, round {round}");
                let got = reread.classify(chain, &k);
                assert_eq!((got.action, got.rule), (want.action, want.rule), "{ipt}\n{k:?}");
            }
        }
    }
}

/// Random residual matches, `LOG` rules and limits on a random ruleset.
fn with_residuals(rng: &mut Rng, set: &mut unifw_compiler::Ruleset) {
    use unifw_compiler::{LimitSpec, LogRecord, Residual};
    use unifw_core::image::format::{user2credits, XT_LIMIT_SCALE};
    for r in &mut set.rules {
        let mut x = Residual::default();
        if rng.pct(15) {
            let mask = [0x17u8, 0x3f, 0xff, 0x02, 0x12][rng.below(5) as usize];
            let comp = [0x02u8, 0x00, 0x12, 0x3f][rng.below(4) as usize] & if rng.pct(80) { mask } else { 0xff };
            x.tcp_flags = Some((mask, comp, rng.pct(30)));
        }
        if rng.pct(8) {
            x.tcp_option = Some(([2u8, 3, 4, 8, 200][rng.below(5) as usize], rng.pct(30)));
        }
        if rng.pct(10) {
            let op = 1 + rng.below(3) as u8;
            x.ttl = Some((op, [0u8, 1, 63, 64, 65, 255][rng.below(6) as usize], op == 1 && rng.pct(30)));
        }
        if rng.pct(10) {
            let (a, b) =
                ([0u16, 40, 60, 1500][rng.below(4) as usize], [40u16, 100, 1500, 65535][rng.below(4) as usize]);
            x.len = Some((a, b, rng.pct(30)));
        }
        if rng.pct(8) {
            x.pkt_types = Some(rng.below(8) as u8);
        }
        if rng.pct(8) {
            x.mac = Some(([2, 0, 0, 0, 0, rng.below(3) as u8], rng.pct(30)));
        }
        if rng.pct(10) {
            x.src_type = Some((1 << [1u16, 2, 3, 5][rng.below(4) as usize], rng.pct(30)));
        }
        if rng.pct(10) {
            x.dst_type = Some((1 << [1u16, 2, 3, 5][rng.below(4) as usize] | 1 << 2, rng.pct(30)));
            x.type_iface = rng.below(3) as u8;
        }
        if rng.pct(10) {
            let rate = [1u32, 2, 10, 50][rng.below(4) as usize];
            let avg = XT_LIMIT_SCALE / rate;
            let burst = 1 + rng.below(4) as u32;
            x.limit = Some(LimitSpec { cost: user2credits(avg), cap: user2credits(avg * burst), slot: 0 });
        }
        if rng.pct(8) {
            let (a, b) = ([0u16, 536, 1400, 1460][rng.below(4) as usize], [536u16, 1460, 65535][rng.below(3) as usize]);
            x.tcp_mss = Some((a, b, rng.pct(30)));
        }
        x.never = rng.pct(3);
        if rng.pct(8) {
            x.ct_proto = Some(([0u8, 1, 6, 17][rng.below(4) as usize], rng.pct(30)));
        }
        if rng.pct(10) {
            use unifw_core::image::format::ct_tuple::{CtField, CtTest, CtTupleSpec};
            let mut spec =
                CtTupleSpec { dir: [None, Some(false), Some(true)][rng.below(3) as usize], ..CtTupleSpec::default() };
            for _ in 0..rng.below(4) {
                let field = CtField::ALL[rng.below(8) as usize];
                let (value, high) = if field.is_port() {
                    let lo = [0u16, 25, 53, 2222][rng.below(4) as usize];
                    (u32::from(lo), [25u16, 53, 2222, 65535][rng.below(4) as usize])
                } else {
                    (rules_common::random_prefix(rng).addr & 0xffff_ff00, [0u16, 8, 16, 24][rng.below(4) as usize])
                };
                let len_mask = if field.is_port() { u32::MAX } else { unifw_core::flow::mask(high as u8) };
                spec.push(CtTest { field, negated: rng.pct(30), value: value & len_mask, high });
            }
            x.ct_tuple = Some(spec);
        }
        if rng.pct(8) {
            r.log_target = Some(LogRecord { level: 4, ..LogRecord::default() });
        }
        if rng.pct(10) {
            r.states = 1 + rng.below(31) as u8; // UNTRACKED included
        }
        r.residual = x;
    }
}

/// A packet's residual fields, from small sets so that rules hit.
fn random_extra(rng: &mut Rng, k: &mut unifw_core::flow::PacketKey) {
    use unifw_core::flow::{CtState, PktType};
    let x = &mut k.extra;
    x.tcp_flags = [0x02u8, 0x12, 0x10, 0x11, 0x04, 0x00, 0x3f, 0xff, 0xc2][rng.below(9) as usize];
    for kind in [2u8, 3, 4, 8, 200] {
        if rng.pct(40) {
            x.tcp_options[usize::from(kind / 64)] |= 1 << (kind % 64);
        }
    }
    x.ttl = [0u8, 1, 63, 64, 65, 255][rng.below(6) as usize];
    x.len = [20u16, 40, 60, 100, 1500, 65535][rng.below(6) as usize];
    x.pkt_type = [PktType::Unicast, PktType::Broadcast, PktType::Multicast][rng.below(3) as usize];
    x.has_mac = rng.pct(90);
    x.src_mac = [2, 0, 0, 0, 0, rng.below(3) as u8];
    let t = |rng: &mut Rng| 1u16 << [1u16, 2, 3, 5][rng.below(4) as usize];
    (x.src_type, x.dst_type) = (t(rng), t(rng));
    (x.src_type_in, x.dst_type_in, x.src_type_out, x.dst_type_out) = (t(rng), t(rng), t(rng), t(rng));
    x.tcp_mss = [None, Some(536), Some(1400), Some(1460), Some(65535)][rng.below(5) as usize];
    x.ct_proto = if rng.pct(70) { k.proto } else { [1u8, 6, 17][rng.below(3) as usize] };
    let (src, dst) = (k.src, k.dst);
    let port = |rng: &mut Rng| [0u16, 25, 53, 2222, 40000][rng.below(5) as usize];
    x.ct_tuples = unifw_core::image::format::ct_tuple::CtTuples {
        orig: (src, if rng.pct(50) { dst } else { rules_common::random_prefix(rng).addr }),
        orig_ports: (port(rng), port(rng)),
        repl: (if rng.pct(50) { dst } else { rules_common::random_prefix(rng).addr }, src),
        repl_ports: (port(rng), port(rng)),
        reply: rng.pct(40),
    };
    if rng.pct(15) {
        k.state = CtState::Untracked;
    }
}

#[test]
fn residuals_logs_and_limits_equal_reference() {
    use unifw_compiler::RefState;
    use unifw_core::image::{LimitBucket, Lookup};
    let mut rng = Rng::new(11);
    for round in 0..200 {
        let n = [1, 3, 10, 40, 150][round % 5];
        let mut set = random_ruleset(&mut rng, n, false);
        with_residuals(&mut rng, &mut set);
        let compiled = compile_ruleset(set.clone()).expect("compiles");
        let image = Image::from_bytes(&compiled.image).expect("valid image");
        let start = 1_000 + rng.below(1000);
        let mut buckets = vec![LimitBucket::default(); image.limit_count() as usize];
        image.init_limits(&mut buckets, start);
        let mut reference = RefState { now_ms: Some(start), start, ..RefState::default() };
        let mut now = start;
        for mut k in packets(&mut rng, &set, 300) {
            random_extra(&mut rng, &mut k);
            now += [0, 0, 1, 5, 30, 200, 1000][rng.below(7) as usize];
            for chain in [Chain::Input, Chain::Forward] {
                reference.now_ms = Some(now);
                reference.logged.clear();
                let want = set.classify_reference(chain, &k, &mut reference);
                let mut lookup = Lookup::new(now, &mut buckets);
                let got = image.classify_with(chain, &k, &mut lookup);
                assert_eq!(got, want, "round {round}, chain {chain:?}, at {now}, key {k:?}");
                assert_eq!(lookup.logged(), &reference.logged[..], "logged rules, round {round}");
                let stateless = set.classify_linear(chain, &k);
                assert_eq!(image.classify(chain, &k), stateless, "stateless, round {round}");
                assert_eq!(image.classify_linear(chain, &k), stateless, "linear image scan, round {round}");
            }
        }
    }
}

#[test]
fn limit_spends_tokens_as_xt_limit() {
    // `-m limit --limit 2/second --limit-burst 3` then DROP: the first
    // three packets at one instant match, the fourth goes on to the
    // policy; 500 ms later one token has come back (avg 5000 = 0.5 s).
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                -A FORWARD -m limit --limit 2/second --limit-burst 3 -j DROP\nCOMMIT\n";
    let c = rules::compile("t.ipt", text.as_bytes(), &mut no_includes).expect("compiles");
    let image = Image::from_bytes(&c.image).expect("valid image");
    let mut buckets = vec![unifw_core::image::LimitBucket::default(); image.limit_count() as usize];
    image.init_limits(&mut buckets, 0);
    let k = rules::random_key(&mut Rng::new(1));
    let mut at = |now: u64| {
        let mut lookup = unifw_core::image::Lookup::new(now, &mut buckets);
        image.classify_with(Chain::Forward, &k, &mut lookup).action
    };
    use unifw_core::flow::Action::{Accept, Drop};
    assert_eq!([at(0), at(0), at(0), at(0)], [Drop, Drop, Drop, Accept]);
    assert_eq!([at(499), at(500), at(500)], [Accept, Drop, Accept], "one token per 500 ms");
    assert_eq!([at(10_000), at(10_000), at(10_000), at(10_000)], [Drop, Drop, Drop, Accept], "capped at the burst");
}

/// Random `-m recent` matches on some rules (a few tables, every command
/// and option), some of them on rules without a target (matching goes on).
fn with_recent(rng: &mut Rng, set: &mut unifw_compiler::Ruleset, pct: u32) {
    use unifw_compiler::{Jump, RecentSpec};
    for r in &mut set.rules {
        if !rng.pct(pct.into()) {
            continue;
        }
        let cmd = rng.below(4) as u8;
        let checks = cmd == 1 || cmd == 2;
        let seconds = if checks { [0u32, 1, 2, 5][rng.below(4) as usize] } else { 0 };
        r.residual.recent = Some(RecentSpec {
            table: rng.below(3) as u16,
            cmd,
            dest: rng.pct(30),
            rttl: checks && rng.pct(20),
            reap: seconds > 0 && rng.pct(60),
            invert: rng.pct(15),
            mask: [u32::MAX, 0xffff_ff00, 0xffff_0000][rng.below(3) as usize],
            seconds,
            hitcount: if checks { [0u16, 1, 2, 3, 5, 40][rng.below(6) as usize] } else { 0 },
            stamps_mask: 0,
        });
        // Where every rule has one, `--set` goes on (else the first
        // `--set` would decide every packet and hide the tables).
        if r.jump.is_none() && (rng.pct(40) || pct == 100 && cmd == 0) {
            r.jump = Some(Jump::Continue);
        }
    }
}

#[test]
fn recent_tables_equal_reference() {
    use unifw_compiler::RefState;
    use unifw_core::image::{LimitBucket, Lookup};
    let mut rng = Rng::new(23);
    for round in 0..200 {
        let n = [1, 3, 10, 40][round % 4];
        let mut set = random_ruleset(&mut rng, n, false);
        if round % 2 == 0 {
            // Rules matching every packet: each recent match is met often.
            use unifw_core::flow::Action;
            let actions = [Action::Accept, Action::Drop];
            set.rules = (0..2 + rng.below(6))
                .map(|i| {
                    let chain = if rng.pct(50) { Chain::Input } else { Chain::Forward };
                    rules::Rule { line: i as u32 + 1, ..rules::Rule::any(chain, actions[rng.below(2) as usize]) }
                })
                .collect();
        }
        with_recent(&mut rng, &mut set, if round % 2 == 0 { 100 } else { 35 });
        let compiled = compile_ruleset(set.clone()).expect("compiles");
        let image = Image::from_bytes(&compiled.image).expect("valid image");
        let mut buckets = vec![LimitBucket::default(); image.limit_count() as usize];
        let mut tables = image.recent_tables();
        let mut reference = RefState { now_ms: Some(0), ..RefState::default() };
        // Few addresses (hits), or many (tables fill up and evict).
        let pool = [2u32, 6, 110, 130, 400][rng.below(5) as usize];
        let mut now = 0;
        for mut k in packets(&mut rng, &set, 1500) {
            k.src = 0x0a01_0000 + rng.below(u64::from(pool)) as u32 * 37;
            if rng.pct(50) {
                k.dst = 0x0a02_0000 + rng.below(u64::from(pool)) as u32 * 91;
            }
            k.extra.ttl = [0u8, 63, 64][rng.below(3) as usize];
            now += [0, 1, 200, 999, 1000, 1001, 3000][rng.below(7) as usize];
            for chain in [Chain::Input, Chain::Forward] {
                reference.now_ms = Some(now);
                let want = set.classify_reference(chain, &k, &mut reference);
                let mut lookup = Lookup::new(now, &mut buckets).with_recent(&mut tables);
                let got = image.classify_with(chain, &k, &mut lookup);
                assert_eq!(got, want, "round {round}, chain {chain:?}, at {now}, key {k:?}");
                let stateless = set.classify_linear(chain, &k);
                assert_eq!(image.classify(chain, &k), stateless, "stateless, round {round}");
            }
        }
    }
}
