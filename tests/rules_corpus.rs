//! The corpus of real-world iptables-save files (tests/corpus/iptables,
//! sources, licences and the rule that picked them in SOURCES.md): each
//! file either loads, or fails only on features unifw leaves unsupported,
//! each error saying so. Prints the figures issue 11 asks for: files, rules,
//! files that load, files whose filter table loads (the file reduced to its
//! `*filter` ... `COMMIT`), both as percentages, and each blocker with the
//! number of files it blocks and of rules that use it.

use std::collections::BTreeMap;

use unifw_compiler as rules;

/// Whether the native file may declare `name` with `interface ... name`:
/// what Linux takes as a device name (1-15 bytes, no `.`/`..`, `/`, `:` or
/// blank), not `lo`, not empty. Other names (`venet0:0`, an alias label no
/// device has) stay undeclared and match nothing, as in Linux.
fn declarable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name != "lo"
        && !name.bytes().any(|b| matches!(b, b'/' | b':' | b'+') || b.is_ascii_whitespace())
}

/// A native file declaring the interfaces `ipt` names: `ethN` (N up to 14)
/// as itself, any other name Linux allows (a wildcard by its stem: `ppp+`
/// declares `ppp`) on a NIC of its own, while NICs last.
fn wrapper(ipt: &str) -> String {
    let mut eth_max = 1u8;
    let mut others: Vec<String> = Vec::new();
    let words: Vec<&str> = ipt.split_whitespace().collect();
    for pair in words.windows(2) {
        if !matches!(pair[0], "-i" | "-o" | "--in-interface" | "--out-interface") {
            continue;
        }
        let name = pair[1].trim_end_matches('+');
        // `ethN` exactly (not `eth01`, an alias Linux allows).
        let nic = name.strip_prefix("eth").and_then(|n| n.parse::<u8>().ok()).filter(|n| format!("eth{n}") == name);
        match nic {
            Some(n) if n <= 14 => eth_max = eth_max.max(n),
            _ if declarable(name) && !others.iter().any(|o| o == name) => others.push(name.into()),
            _ => {}
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

/// The file reduced to its filter table: every line from a `*filter` line
/// to the next `COMMIT`, both kept; `None` without a `*filter` line.
fn filter_table(ipt: &str) -> Option<String> {
    let (mut out, mut inside, mut found) = (String::new(), false, false);
    for line in ipt.lines() {
        let word = line.trim();
        if word == "*filter" {
            inside = true;
            found = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
        if inside && word == "COMMIT" {
            inside = false;
        }
    }
    found.then_some(out)
}

/// Rule lines: `-A`/`--append` and `-I`/`--insert` (iptables-restore takes both).
fn rule_lines(ipt: &str) -> usize {
    ipt.lines()
        .map(str::trim_start)
        .filter(|l| ["-A ", "--append ", "-I ", "--insert "].iter().any(|p| l.starts_with(p)))
        .count()
}

/// Loads `ipt` through its wrapper.
fn load(ipt: &str) -> Result<(), rules::Diagnostics> {
    let main = wrapper(ipt);
    rules::compile("main.rules", main.as_bytes(), &mut |_| Ok(ipt.as_bytes().to_vec())).map(|_| ())
}

/// Errors in corpus files that name no unsupported feature, each known
/// and explained: (file, a piece of the error, why). Every other such error
/// fails the test, and so does an entry here that no longer occurs (remove
/// it once the compiler reads the line or says "not supported").
const KNOWN: &[(&str, &str, &str)] = &[
    // Refused as Linux refuses it: `-A -I INPUT 1 ...` (iptables-restore:
    // "Bad argument `INPUT'", line 34).
    ("dansku-tor-relay-bootstrap.v4", "chain `-I` is not declared", "Linux refuses the line too"),
    // `-A POSTROUTING -i enp2s0 -j MASQUERADE`: iptables: "Can't use -i with POSTROUTING".
    ("YovanggaAnandhika-DKAFramework-Typescript.v4", "Can't use -i with POSTROUTING", "Linux refuses the line too"),
    // The last line is `COMMIT` without a newline: iptables-restore reads it
    // as a rule ("Bad argument `COMMIT'"); the filter table alone loads.
    ("ShiftSad-Firewall-Defender.v4", "Bad argument `COMMIT'", "Linux refuses the line too"),
    ("DevinWhitten-sftp.v4", "Bad argument `COMMIT'", "Linux refuses the line too"),
    // Refused by design (issue 11): unifw resolves no host names.
    ("ustclug-liimstrap.v4", "host name `", "host names are refused by design"),
];

/// Figures of one run (whole files, or their filter tables).
#[derive(Default)]
struct Tally {
    tried: usize,
    loaded: usize,
    blockers: BTreeMap<String, (usize, usize)>,
    /// Each file that does not load, with what blocks it.
    failed: Vec<(String, Vec<String>)>,
}

impl Tally {
    /// Counts one load; errors that name no unsupported feature go to `stray`.
    fn add(&mut self, what: &str, got: Result<(), rules::Diagnostics>, stray: &mut Vec<String>) {
        self.tried += 1;
        match got {
            Ok(()) => self.loaded += 1,
            Err(d) => {
                let mut why: Vec<String> = d.unsupported.iter().map(|(f, _)| f.clone()).collect();
                if d.unsupported.is_empty() {
                    why.push(String::from("(errors only)"));
                }
                self.failed.push((String::from(what), why));
                for e in d.errors.iter().filter(|e| !e.message.contains("not supported")) {
                    stray.push(format!("{what}: {e}"));
                }
                for (feature, n) in &d.unsupported {
                    let b = self.blockers.entry(feature.clone()).or_default();
                    b.0 += 1;
                    b.1 += n;
                }
            }
        }
    }

    fn percent(&self) -> f64 {
        if self.tried == 0 {
            0.0
        } else {
            100.0 * self.loaded as f64 / self.tried as f64
        }
    }

    /// Blockers, most files first; those in a single file and naming a
    /// user chain (`chain NAME`, `-j NAME`) summed in one line.
    fn print_blockers(&self, label: &str) {
        let mut list: Vec<_> = self.blockers.iter().collect();
        list.sort_by(|a, b| (b.1).0.cmp(&(a.1).0).then((b.1).1.cmp(&(a.1).1)).then(a.0.cmp(b.0)));
        let single_chain = |f: &str, files: usize| {
            files == 1
                && (f.starts_with("chain ") || (f.starts_with("-j ") && f[3..].chars().any(|c| c.is_lowercase())))
        };
        let mut folded = 0;
        for (feature, (files, n)) in &list {
            if single_chain(feature, *files) {
                folded += 1;
            } else {
                println!("  {label} {feature}: {files} files, {n} rules");
            }
        }
        if folded > 0 {
            println!("  ... and {folded} more, each a user chain (`chain NAME`) or a jump to one (`-j name`) in a single file");
        }
    }
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
    let mut rules_total = 0;
    let (mut whole, mut filter) = (Tally::default(), Tally::default());
    let mut stray = Vec::new();
    let linux = linux_verdicts(dir);
    let (mut linux_ok, mut both_ok, mut only_unifw) = (0, 0, Vec::new());
    for path in &names {
        let text = std::fs::read_to_string(path).expect("readable");
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        rules_total += rule_lines(&text);
        let (whole_by_linux, by_linux) =
            linux.get(&file).unwrap_or_else(|| panic!("{file} is not in LINUX.tsv: run scripts/corpus-linux"));
        let got = load(&text);
        if got.is_ok() && whole_by_linux != "ok" {
            only_unifw.push(format!("{file} (whole file): Linux: {whole_by_linux}"));
        }
        whole.add(&file, got, &mut stray);
        if let Some(table) = filter_table(&text) {
            let loaded = load(&table).is_ok();
            linux_ok += usize::from(by_linux == "ok");
            both_ok += usize::from(by_linux == "ok" && loaded);
            if loaded && by_linux != "ok" {
                only_unifw.push(format!("{file}: Linux: {by_linux}"));
            }
            filter.add(&format!("{file} (filter table)"), load(&table), &mut stray);
        }
    }
    println!(
        "corpus: {} files, {rules_total} rules, {} files load ({:.1}%)",
        names.len(),
        whole.loaded,
        whole.percent()
    );
    println!("filter tables: {} files have one, {} load ({:.1}%)", filter.tried, filter.loaded, filter.percent());
    println!(
        "filter tables Linux loads (iptables-legacy-restore --test, LINUX.tsv): {linux_ok}; unifw loads {both_ok} of them ({:.1}%)",
        100.0 * both_ok as f64 / linux_ok.max(1) as f64
    );
    whole.print_blockers("blocker");
    filter.print_blockers("filter-table blocker");
    for (file, why) in &filter.failed {
        println!("  not loaded: {file}: {}", why.join(", "));
    }
    let known = |e: &String, k: &(&str, &str, &str)| e.starts_with(k.0) && e.contains(k.1);
    for k in KNOWN {
        let n = stray.iter().filter(|e| known(e, k)).count();
        println!("  known error {}: `{}...`: {n} (whole file and filter table; {})", k.0, k.1, k.2);
    }
    let stale: Vec<_> = KNOWN.iter().filter(|k| !stray.iter().any(|e| known(e, k))).collect();
    assert!(stale.is_empty(), "KNOWN entries that no longer occur (remove them): {stale:?}");
    stray.retain(|e| !KNOWN.iter().any(|k| known(e, k)));
    assert!(stray.is_empty(), "errors that name no unsupported feature:\n{}", stray.join("\n"));
    assert!(only_unifw.is_empty(), "files or filter tables unifw loads and Linux refuses:\n{}", only_unifw.join("\n"));
}

/// What Linux said of each file, whole and its filter table (LINUX.tsv,
/// written by scripts/corpus-linux): `ok` or iptables-restore's error.
fn linux_verdicts(dir: &str) -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(format!("{dir}/LINUX.tsv")).expect("LINUX.tsv (scripts/corpus-linux writes it)");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split('\t');
            Some((cols.next()?.to_string(), (cols.next()?.to_string(), cols.next()?.to_string())))
        })
        .collect()
}

#[test]
fn filter_table_keeps_only_the_filter_block() {
    let ipt = "# c\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j DNAT --to 1.2.3.4\nCOMMIT\n*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n*raw\nCOMMIT\n";
    assert_eq!(filter_table(ipt).as_deref(), Some("*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"));
    assert_eq!(filter_table("*nat\nCOMMIT\n"), None);
    assert_eq!(rule_lines("-A INPUT -j DROP\n  --append INPUT -j DROP\n-I OUTPUT -j DROP\n-N x\n"), 3);
}

#[test]
fn wrapper_declares_names_linux_allows() {
    let w = wrapper("-A INPUT -i eth3 -j DROP\n-A INPUT -i ppp+ -j DROP\n-A INPUT -o venet0:0 -j DROP\n-A INPUT -i lo -j DROP\n-A FORWARD -i wlan0 -o ppp0 -j DROP\n");
    assert!(w.contains("interface eth3 10.4.0.1/24\n"), "{w}");
    assert!(w.contains("name ppp\n") && w.contains("name wlan0\n") && w.contains("name ppp0\n"), "{w}");
    assert!(!w.contains("venet0") && !w.contains("name lo"), "{w}");
}
