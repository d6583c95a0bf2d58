//! The ClassBench filter sets, converted (see src/rules/classbench.rs),
//! against the linear-scan reference on generated traces.

mod rules_common;

use unifw_compiler::{self as rules, Rng};
use unifw_core::flow::Chain;
use unifw_core::image::Image;

fn check(name: &str, packets: usize) {
    // The sets are in the repository (tests/classbench); a missing one is a
    // failure, never a silent pass.
    let path = format!("{}/../../tests/classbench/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{name}: cannot read {path}: {e} (the ClassBench sets are in tests/classbench)"));
    let native = rules::classbench_to_native(&text).expect("converts");
    let compiled =
        rules::compile(name, native.as_bytes(), &mut |p| Err(p.to_string())).unwrap_or_else(|d| panic!("{d}"));
    let image = Image::from_bytes(&compiled.image).expect("valid");
    let set = &compiled.ruleset;
    let mut rng = Rng::new(3);
    for k in rules_common::packets(&mut rng, set, packets) {
        assert_eq!(image.classify(Chain::Forward, &k), set.classify_linear(Chain::Forward, &k), "{name}: {k:?}");
    }
}

#[test]
fn acl1() {
    check("acl1_1k", 20_000);
    check("acl1_10k", 5_000);
}

#[test]
fn fw1() {
    check("fw1_1k", 20_000);
    check("fw1_10k", 5_000);
}

#[test]
fn ipc1() {
    check("ipc1_1k", 20_000);
    check("ipc1_10k", 5_000);
}
