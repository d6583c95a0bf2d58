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
