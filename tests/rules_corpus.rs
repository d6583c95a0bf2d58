//! The corpus of real-world iptables-save files (tests/corpus/iptables,
//! sources and licences in SOURCES.md): each file either loads, or fails
//! only on features unifw leaves unsupported, each error saying so. Prints
//! the figures: files, rules, files loaded, and each blocker with the
//! number of files it blocks and of rules that use it.

use std::collections::BTreeMap;

use unifw_compiler as rules;

/// A native file declaring the interfaces `ipt` names: `ethN` as itself,
/// any other name (a wildcard by its stem) on a NIC of its own.
fn wrapper(ipt: &str) -> String {
    let mut eth_max = 1u8;
    let mut others: Vec<String> = Vec::new();
    let words: Vec<&str> = ipt.split_whitespace().collect();
    for pair in words.windows(2) {
        if !matches!(pair[0], "-i" | "-o" | "--in-interface" | "--out-interface") {
            continue;
        }
        let name = pair[1].trim_end_matches('+');
        if let Some(n) = name.strip_prefix("eth").and_then(|n| n.parse::<u8>().ok()) {
            eth_max = eth_max.max(n.min(14));
        } else if !name.is_empty() && name != "lo" && !name.starts_with("eth") && !others.iter().any(|o| o == name) {
            others.push(name.into());
        }
    }
    let mut out = String::new();
    for i in 0..=eth_max {
        out.push_str(&format!("interface eth{i} 10.{}.0.1/24\n", i + 1));
    }
    for (k, name) in others.iter().enumerate().take(usize::from(14 - eth_max)) {
        let i = usize::from(eth_max) + 1 + k;
        out.push_str(&format!("interface eth{i} 10.{}.0.1/24 name {name}\n", i + 1));
    }
    out.push_str("include \"rules.ipt\"\n");
    out
}

#[test]
fn corpus_files_load_or_fail_only_on_unsupported_features() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/iptables");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "v4"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    let (mut rules_total, mut loaded) = (0, 0);
    let mut blockers: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut stray = Vec::new();
    for path in &names {
        let text = std::fs::read_to_string(path).expect("readable");
        rules_total += text.lines().filter(|l| l.trim_start().starts_with("-A ")).count();
        let main = wrapper(&text);
        let got = rules::compile("main.rules", main.as_bytes(), &mut |_| Ok(text.as_bytes().to_vec()));
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        match got {
            Ok(_) => loaded += 1,
            Err(d) => {
                for e in d.errors.iter().filter(|e| !e.message.contains("not supported")) {
                    stray.push(format!("{file}: {e}"));
                }
                for (feature, n) in &d.unsupported {
                    let b = blockers.entry(feature.clone()).or_default();
                    b.0 += 1;
                    b.1 += n;
                }
            }
        }
    }
    println!("corpus: {} files, {rules_total} rules, {loaded} files load", names.len());
    let mut list: Vec<_> = blockers.into_iter().collect();
    list.sort_by(|a, b| (b.1).0.cmp(&(a.1).0).then((b.1).1.cmp(&(a.1).1)));
    for (feature, (files, n)) in &list {
        println!("  blocker {feature}: {files} files, {n} rules");
    }
    assert!(stray.is_empty(), "errors that name no unsupported feature:\n{}", stray.join("\n"));
}
