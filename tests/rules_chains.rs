//! User chains: random rulesets with jumps, gotos and RETURN against the
//! reference evaluator (iptables' semantics), through the compiled image
//! and through iptables-save text; and the errors for what iptables or
//! unifw refuse (undeclared chains, loops, nesting past the cap).

mod rules_common;

use rules_common::{packets, random_rule, random_ruleset};
use unifw_compiler::{self as rules, compile_ruleset, render, Format, Jump, Rng, RuleChain, Ruleset, UserChain};
use unifw_core::flow::{Action, Chain, BUILTIN_CHAINS};
use unifw_core::image::format::MAX_CALL_DEPTH;
use unifw_core::image::Image;

fn no_includes(p: &str) -> Result<Vec<u8>, String> {
    Err(format!("no includes here ({p})"))
}

/// A random ruleset with up to 5 user chains; jumps and gotos go only to
/// later chains (no loops), some rules return.
fn chained(rng: &mut Rng, n: usize, iptables: bool) -> Ruleset {
    let mut set = random_ruleset(rng, n, iptables);
    let chains = rng.below(6) as u16;
    set.chains = (0..chains).map(|i| UserChain { name: format!("C{i}"), file: 0, line: 1 }).collect();
    // At most 3 jumps or gotos per chain: the worst case stays well within MAX_LOOKUPS.
    let mut jumps = [0u8; BUILTIN_CHAINS + 6];
    for r in &mut set.rules {
        r.log = false;
        let here = if chains > 0 && rng.pct(50) { Some(rng.below(u64::from(chains)) as u16) } else { None };
        if let Some(c) = here {
            r.chain = RuleChain::User(c);
        }
        let first = here.map_or(0, |c| c + 1);
        let room = jumps[r.chain.number()] < 3;
        r.jump = match rng.below(10) {
            0..=2 if first < chains && room => Some(Jump::Call(first + rng.below(u64::from(chains - first)) as u16)),
            3 if first < chains && room => Some(Jump::Goto(first + rng.below(u64::from(chains - first)) as u16)),
            4 => Some(Jump::Return),
            _ => None,
        };
        if matches!(r.jump, Some(Jump::Call(_) | Jump::Goto(_))) {
            jumps[r.chain.number()] += 1;
        }
    }
    // iptables-save lists each chain's rules together: so does the printer.
    set.rules.sort_by_key(|r| r.chain.number());
    set
}

#[test]
fn chains_equal_the_reference() {
    let mut rng = Rng::new(1101);
    for round in 0..300 {
        let set = chained(&mut rng, [3, 10, 40, 150][round % 4], false);
        let compiled = compile_ruleset(set.clone()).expect("compiles");
        let image = Image::from_bytes(&compiled.image).expect("valid image");
        assert_eq!(image.chain_count() as usize, BUILTIN_CHAINS + set.chains.len());
        for k in packets(&mut rng, &set, 200) {
            for chain in [Chain::Input, Chain::Forward] {
                let want = set.classify_linear(chain, &k);
                assert_eq!(image.classify(chain, &k), want, "round {round}, {chain:?}, {k:?}");
                assert_eq!(image.classify_linear(chain, &k), want, "linear image scan, round {round}");
            }
        }
    }
}

#[test]
fn chains_read_from_iptables_save_equal_the_reference() {
    let mut rng = Rng::new(1102);
    for _ in 0..100 {
        let set = chained(&mut rng, 30, true);
        let text = render(&set, Format::Iptables).expect("iptables can express these rules");
        let c = rules::compile("t.ipt", text.as_bytes(), &mut no_includes).unwrap_or_else(|d| panic!("{d}\n{text}"));
        assert_eq!(c.ruleset.chains.len(), set.chains.len());
        let image = Image::from_bytes(&c.image).expect("valid");
        for k in packets(&mut rng, &set, 200) {
            for chain in [Chain::Input, Chain::Forward] {
                let (got, want) = (image.classify(chain, &k), set.classify_linear(chain, &k));
                assert_eq!((got.action, got.rule), (want.action, want.rule), "{text}\n{k:?}");
            }
        }
    }
}

fn verdict(text: &str, chain: Chain, key: &unifw_core::flow::PacketKey) -> (Action, Option<u32>) {
    let c = rules::compile("t.ipt", text.as_bytes(), &mut no_includes).unwrap_or_else(|d| panic!("{d}\n{text}"));
    let v = Image::from_bytes(&c.image).expect("valid").classify(chain, key);
    assert_eq!(v, c.ruleset.classify_linear(chain, key));
    (v.action, v.rule)
}

#[test]
fn jump_goto_and_return_as_iptables() {
    let mut rng = Rng::new(3);
    let mut k = rules::random_key(&mut rng);
    k.proto = 6;
    k.dst_port = 22;
    let head = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n";
    // A jump comes back to the next rule: FORWARD's rule 2 accepts.
    let t =
        format!("{head}-A FORWARD -j A\n-A FORWARD -p tcp -j ACCEPT\n-A A -p tcp -j RETURN\n-A A -j DROP\nCOMMIT\n");
    assert_eq!(verdict(&t, Chain::Forward, &k), (Action::Accept, Some(1)));
    // Falling off a user chain's end returns too.
    let t = format!("{head}-A FORWARD -j A\n-A FORWARD -p tcp -j ACCEPT\n-A A -p udp -j DROP\nCOMMIT\n");
    assert_eq!(verdict(&t, Chain::Forward, &k), (Action::Accept, Some(1)));
    // A goto's return goes to the caller's caller: from FORWARD, the policy.
    let t = format!("{head}-A FORWARD -g A\n-A FORWARD -p tcp -j ACCEPT\n-A A -p tcp -j RETURN\nCOMMIT\n");
    assert_eq!(verdict(&t, Chain::Forward, &k), (Action::Drop, None));
    // A -> (goto) B -> RETURN: back in FORWARD after A's jump... A was called, B's return ends A.
    let t = format!("{head}-A FORWARD -j A\n-A FORWARD -j REJECT\n-A A -g B\n-A A -j ACCEPT\n-A B -j RETURN\nCOMMIT\n");
    assert_eq!(verdict(&t, Chain::Forward, &k).1, Some(1), "B's return skips the rest of A");
    // RETURN in a built-in chain: its policy.
    let t = format!("{head}-A FORWARD -j RETURN\n-A FORWARD -j ACCEPT\nCOMMIT\n");
    assert_eq!(verdict(&t, Chain::Forward, &k), (Action::Drop, None));
    // -N declares a chain as `:NAME -` does.
    let t = "*filter\n:FORWARD ACCEPT [0:0]\n-N X\n-A FORWARD -j X\n-A X -p tcp -j DROP\nCOMMIT\n";
    assert_eq!(verdict(t, Chain::Forward, &k), (Action::Drop, Some(1)));
}

fn error(text: &str) -> String {
    match rules::compile("t.ipt", text.as_bytes(), &mut no_includes) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(d) => d.to_string(),
    }
}

#[test]
fn refusals_name_the_chains() {
    let head = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n";
    let e = error(&format!("{head}-A FORWARD -j NOPE\nCOMMIT\n"));
    assert!(e.contains("t.ipt:4:") && e.contains("`NOPE`") && e.contains("not supported"), "{e}");
    let e = error(&format!("{head}-A FORWARD -g NOPE\nCOMMIT\n"));
    assert!(e.contains("no chain `NOPE` is declared"), "{e}");
    let e = error(&format!("{head}-A NOPE -j ACCEPT\nCOMMIT\n"));
    assert!(e.contains("chain `NOPE` is not declared"), "{e}");
    let e = error(&format!("{head}:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -g A\nCOMMIT\n"));
    assert!(e.contains("loop: A -> B -> A") || e.contains("loop: B -> A -> B"), "{e}");
    let e = error(&format!("{head}:A - [0:0]\n:A - [0:0]\nCOMMIT\n"));
    assert!(e.contains("declared twice"), "{e}");
    let e = error(&format!("{head}-A FORWARD -j INPUT\nCOMMIT\n"));
    assert!(e.contains("built-in chain `INPUT`"), "{e}");
    let e = error(&format!("{head}:{} - [0:0]\nCOMMIT\n", "X".repeat(29)));
    assert!(e.contains("1 to 28 characters"), "{e}");
    let e = error(&format!("{head}:FORWARD - [0:0]\nCOMMIT\n"));
    assert!(e.contains("needs a policy"), "{e}");
    // Nesting: a chain of MAX_CALL_DEPTH jumps loads, one more is refused.
    let deep = |n: usize| {
        let mut t = String::from(head);
        for i in 0..n {
            t.push_str(&format!(":C{i} - [0:0]\n"));
        }
        t.push_str("-A FORWARD -j C0\n");
        for i in 0..n - 1 {
            t.push_str(&format!("-A C{i} -j C{}\n", i + 1));
        }
        t + "COMMIT\n"
    };
    rules::compile("t.ipt", deep(MAX_CALL_DEPTH).as_bytes(), &mut no_includes).expect("the cap loads");
    let e = error(&deep(MAX_CALL_DEPTH + 1));
    assert!(e.contains("nest 17 chains deep") && e.contains("FORWARD -> C0 -> C1"), "{e}");
    // Lookups: 11 rules jumping to a chain of 11 rules jumping to ... explodes.
    let mut t = String::from(head);
    for i in 0..4 {
        t.push_str(&format!(":C{i} - [0:0]\n"));
    }
    for i in 0..4 {
        let from = if i == 0 { "FORWARD".to_string() } else { format!("C{}", i - 1) };
        for _ in 0..11 {
            t.push_str(&format!("-A {from} -j C{i}\n"));
        }
    }
    let e = error(&(t + "COMMIT\n"));
    assert!(e.contains("lookups per packet, more than 1024"), "{e}");
}

#[test]
fn random_rules_in_chains_without_jumps_equal_plain_rules() {
    // A ruleset whose only user chain nobody jumps to classifies as without it.
    let mut rng = Rng::new(77);
    let mut set = random_ruleset(&mut rng, 50, false);
    set.chains.push(UserChain { name: "UNUSED".into(), file: 0, line: 1 });
    let mut r = random_rule(&mut rng, false);
    r.chain = RuleChain::User(0);
    set.rules.push(r);
    let image_bytes = compile_ruleset(set.clone()).expect("compiles").image;
    let image = Image::from_bytes(&image_bytes).expect("valid");
    for k in packets(&mut rng, &set, 500) {
        assert_eq!(image.classify(Chain::Forward, &k), set.classify_linear(Chain::Forward, &k));
    }
}

/// The INPUT chain `body` with policy DROP, compiled.
fn compile_input(body: &str) -> Result<rules::Compiled, rules::Diagnostics> {
    let text = format!("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{body}COMMIT\n");
    rules::compile("t.ipt", text.as_bytes(), &mut |_| Err("no includes".into()))
}

#[test]
fn rules_that_let_matching_go_on_count_towards_the_lookup_bound() {
    // Each LOG rule a packet passes costs the walk one lookup. 1021 of
    // them, then a jump to a chain that never returns (one LOG, then
    // ACCEPT: two lookups) make exactly 1024 lookups, the most allowed:
    // the packet reaches its ACCEPT in the image and in the reference.
    // One more LOG rule is refused when compiled, where the data path
    // would have had to stop with a drop.
    let body = |logs: usize| {
        let mut b = String::from(":E - [0:0]\n");
        b.push_str(&"-A INPUT -j LOG\n".repeat(logs));
        b.push_str(&"-A INPUT -j E\n".repeat(3));
        b.push_str("-A E -j LOG\n-A E -j ACCEPT\n");
        b
    };
    let c = compile_input(&body(1021)).unwrap_or_else(|d| panic!("{d}"));
    let image = Image::from_bytes(&c.image).expect("valid image");
    let k = rules::random_key(&mut Rng::new(1));
    let mut lookup = unifw_core::image::Lookup::new(0, &mut []);
    let got = image.classify_with(Chain::Input, &k, &mut lookup);
    let mut st = rules::RefState::default();
    let want = c.ruleset.classify_reference(Chain::Input, &k, &mut st);
    assert_eq!((got.action, want.action), (Action::Accept, Action::Accept), "{got:?} {want:?}");
    assert_eq!(st.logged.len(), 1022, "every LOG rule passed");
    let d = compile_input(&body(1022)).map(|_| ()).unwrap_err();
    assert!(d.to_string().contains("may take 1025 lookups per packet, more than 1024"), "{d}");
    // A chain that can return (here by RETURN) costs its lookups and one
    // more for each jump to it.
    let returning = ":E - [0:0]\n-A E -p tcp -j RETURN\n-A E -j ACCEPT\n".to_string() + &"-A INPUT -j E\n".repeat(512);
    let d = compile_input(&returning).map(|_| ()).unwrap_err();
    assert!(d.to_string().contains("may take 1025 lookups"), "{d}");
}
