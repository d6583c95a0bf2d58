//! Hostile rules input (issue 13, item 9): every input ends quickly with
//! bounded memory, each refusal names its cap at FILE:LINE:COL, and errors
//! quote little of the offending line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use unifw_compiler::{self as rules, Diagnostics, MAX_ERRORS, MAX_INCLUDES, MAX_QUOTE, MAX_TOTAL_ADDRESSES};

fn no_files(_: &str) -> Result<Vec<u8>, String> {
    Err("no such file".into())
}

fn errors_with(text: &[u8], load: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>) -> Diagnostics {
    match rules::compile("t.rules", text, load) {
        Ok(_) => panic!("expected errors"),
        Err(d) => d,
    }
}

/// Runs `f`, failing if it takes longer than `limit` (generous: debug
/// builds and a loaded machine; the quadratic versions took 8 to 34 s).
fn quick<T>(limit: Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < limit, "took {:?}", start.elapsed());
    out
}

#[test]
fn many_errors_on_one_line_take_linear_time() {
    for item in ["x", "10.0.0.1/33"] {
        let line = format!("set s {{ {} }}\n", vec![item; 80_000].join(", "));
        let d = quick(Duration::from_secs(2), || errors_with(line.as_bytes(), &mut no_files));
        assert_eq!(d.errors.len(), MAX_ERRORS);
        assert!(d.to_string().contains("stopped after 50 errors"), "{d}");
        assert!(d.errors.iter().all(|e| e.text.len() <= MAX_QUOTE + 6), "{d}");
    }
}

#[test]
fn self_doubling_sets_fail_fast_at_the_list_cap() {
    let mut text = String::from("set a0 { 10.0.0.0/8 }\n");
    for i in 1..=40 {
        text += &format!("set a{i} {{ $a{}, $a{} }}\n", i - 1, i - 1);
    }
    text += "forward accept from $a40\n";
    let d = quick(Duration::from_secs(2), || errors_with(text.as_bytes(), &mut no_files));
    let e = d.errors[0].to_string();
    assert!(e.starts_with("t.rules:18:18: more than 65536 addresses in one list"), "{e}");
}

#[test]
fn a_set_is_shared_by_the_rules_that_name_it() {
    let set: Vec<String> = (0..1000).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)).collect();
    let text = format!("set big {{ {} }}\n", set.join(", ")) + &"forward accept from $big\n".repeat(100);
    let parsed = rules::parse("t.rules", text.as_bytes(), &mut no_files).unwrap();
    let first = &parsed.rules[0].src.as_ref().unwrap().prefixes;
    assert_eq!(first.len(), 1000);
    assert!(parsed.rules.iter().all(|r| Arc::ptr_eq(&r.src.as_ref().unwrap().prefixes, first)));
}

#[test]
fn every_use_of_a_set_counts_toward_the_total() {
    let set: Vec<String> = (0..65536u32).map(|i| format!("10.{}.{}.0/24", i >> 8, i & 255)).collect();
    let uses = MAX_TOTAL_ADDRESSES / 65536;
    let text = format!("set big {{ {} }}\n", set.join(",")) + &"forward accept to $big\n".repeat(uses);
    let d = quick(Duration::from_secs(20), || rules::parse("t.rules", text.as_bytes(), &mut no_files).unwrap_err());
    let e = d.errors[0].to_string();
    let line = uses + 1;
    assert!(e.starts_with(&format!("t.rules:{line}:20: the sets and rules name more than 16777216")), "{e}");
}

#[test]
fn include_fan_out_stops_at_the_include_cap() {
    let mut loads = 0;
    // 40 includes of x, each including y 40 times: 1,640 files to read.
    let mut load = |p: &str| {
        loads += 1;
        Ok(if p == "x.rules" { "include \"y.rules\"\n".repeat(40) } else { "forward accept\n".into() }.into_bytes())
    };
    let main = "include \"x.rules\"\n".repeat(40);
    let d = quick(Duration::from_secs(5), || errors_with(main.as_bytes(), &mut load));
    assert!(loads <= MAX_INCLUDES, "{loads}");
    assert!(d.to_string().contains(&format!("more than {MAX_INCLUDES} includes in all")), "{d}");
}

#[test]
fn total_input_is_capped_across_files() {
    let mut load = |_: &str| Ok(vec![b'#'; rules::MAX_INPUT_BYTES - 10]);
    let d = errors_with(b"include \"a.rules\"\n", &mut load);
    let e = d.errors[0].to_string();
    assert!(e.starts_with("t.rules:1:10: cannot include `a.rules`: larger than 268435456 bytes"), "{e}");
}

#[test]
fn an_included_file_that_is_not_rules_is_not_copied_into_the_log() {
    let shadow = "root:$6$abcdefgh$0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV:19000:0:99999:7:::\nalice:$6$salt$secrethashsecrethashsecrethash:19000:0:99999:7:::\n";
    let mut load = |_: &str| Ok(shadow.as_bytes().to_vec());
    let d = errors_with(b"include \"/etc/shadow\"\n", &mut load);
    let text = d.to_string();
    assert!(!text.contains("alice") && !text.contains("0123456789ABCDEF"), "{text}");
    assert!(text.contains("/etc/shadow:1:1: `/etc/shadow` does not look like a rules file"), "{text}");
}

#[test]
fn long_words_are_quoted_short() {
    let word = "a".repeat(1 << 20);
    let d = errors_with(format!("forward accept from {word}\n").as_bytes(), &mut no_files);
    let e = d.errors[0].to_string();
    assert!(e.len() < 400, "{} bytes", e.len());
}

#[test]
fn conntrack_max_is_bounded_by_the_memory_budget() {
    let max = unifw_core::net::conntrack::MAX_CONNTRACK;
    assert!(rules::compile("t.rules", format!("conntrack max {max}\n").as_bytes(), &mut no_files).is_ok());
    let d = errors_with(format!("conntrack max {}\n", max + 1).as_bytes(), &mut no_files);
    let e = d.errors[0].to_string();
    assert!(e.starts_with("t.rules:1:15: ") && e.contains(&format!("at most {max}")), "{e}");
}
