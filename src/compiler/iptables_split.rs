//! Rules whose stateful match comes before other matches, read in Linux's
//! order by splitting them in two.
//!
//! Linux checks a rule's matches in the order the line gives them, so
//! `-m limit --limit 5/s -m conntrack --ctstate NEW -j ACCEPT` spends a
//! token on every packet, NEW or not, and `-m recent --set` before
//! `--dport 22` records every address that reaches it. unifw checks a
//! rule's stateful match (`-m limit`, `-m recent` that changes its table,
//! `-m hashlimit`, `-m connlimit`) after the others, so such a rule is
//! read as two:
//!
//! ```text
//! -A INPUT -p tcp -m limit --limit 5/s -j 12:after-limit
//! -A 12:after-limit -p tcp -m conntrack --ctstate NEW -j ACCEPT
//! ```
//!
//! The first half holds the rule options (`-p`, `-s`, `-d`, `-i`, `-o`,
//! `-f`: Linux checks them before any match, wherever they stand) and the
//! matches up to the stateful one, and jumps to a new user chain named
//! after the line; the second half, the only rule of that chain, repeats
//! the rule options (so `--dport` still finds its `-p tcp`) and holds the
//! remaining matches and the target. A packet the second half refuses
//! returns to the rule after the first half, as it would pass the rule in
//! Linux. Not split, so still refused: a target of `RETURN` or a `-g`
//! (both would act on the new chain instead of the rule's), a rule
//! without target, rules outside the filter table, a second half with
//! `-m hashlimit` (its table is tied to the line), and lines that mix
//! matches into the target's options.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::iptables::Word;

/// The options every rule has, and whether each takes an argument.
const RULE_OPTIONS: &[(&str, bool)] = &[
    ("-p", true),
    ("--protocol", true),
    ("-s", true),
    ("--source", true),
    ("--src", true),
    ("-d", true),
    ("--destination", true),
    ("--dst", true),
    ("-i", true),
    ("--in-interface", true),
    ("-o", true),
    ("--out-interface", true),
    ("-f", false),
    ("--fragment", false),
];

fn rule_option(w: &str) -> Option<bool> {
    RULE_OPTIONS.iter().find(|(n, _)| *n == w).map(|&(_, arg)| arg)
}

/// How many words the rule option starting at `w[k]` takes (its `!` and
/// argument included), if one starts there.
fn rule_option_at(w: &[Word], k: usize) -> Option<usize> {
    let neg = usize::from(w.get(k)?.text == "!");
    let arg = rule_option(w.get(k + neg)?.text)?;
    Some(neg + 1 + usize::from(arg))
}

fn is_target(w: &str) -> bool {
    matches!(w, "-j" | "--jump" | "-g" | "--goto")
}

fn is_match(w: &str) -> bool {
    matches!(w, "-m" | "--match")
}

/// Whether `o` is an option of stateful module `module`.
fn module_option(module: &str, o: &str) -> bool {
    match module {
        "limit" => matches!(o, "--limit" | "--limit-burst"),
        "recent" => super::iptables_recent::option_name(o).is_some(),
        "hashlimit" => super::iptables_hashlimit::option_name(o).is_some(),
        "connlimit" => super::iptables_connlimit::option_name(o).is_some(),
        _ => false,
    }
}

/// Where a rule splits: its words `w` (from the chain on) up to `end`
/// form the first half; the stateful match is `module`.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    /// Words `w[..end]` (chain, options, matches up to the stateful one's options).
    pub end: usize,
    /// The stateful module's name (`limit`, `recent`, ...).
    pub module: &'static str,
    /// The offset of its `-m`, for errors about the split.
    pub at: usize,
    /// Where the rule's target (`-j`) starts; `None` without one: the
    /// second half would decide nothing, so there is none (and no new chain).
    pub target: Option<usize>,
}

/// The end of the options of module `module` whose `-m` is at `w[i]`.
fn module_end(w: &[Word], i: usize, module: &str) -> usize {
    let mut j = i + 2;
    while j < w.len() {
        // A rule option amid the module's (`-m limit -f --limit 9/s`).
        if let Some(n) = rule_option_at(w, j) {
            j += n;
            continue;
        }
        let k = if w[j].text == "!" { j + 1 } else { j };
        match w.get(k) {
            Some(o) if o.text.starts_with("--") && module_option(module, o.text) => j = k + 1,
            // An option's argument (never an option itself).
            Some(o) if k == j && !o.text.starts_with('-') && o.text != "!" => j += 1,
            _ => break,
        }
    }
    j
}

/// Whether `w` (words after the stateful match, before the target) hold
/// a match other than `-m comment`.
fn holds_matches(w: &[Word]) -> bool {
    let mut k = 0;
    while k < w.len() {
        if let Some(n) = rule_option_at(w, k) {
            k += n;
            continue;
        }
        match w.get(k).map(|x| x.text) {
            Some(m) if is_match(m) && w.get(k + 1).is_some_and(|x| x.text == "comment") => {
                k += 2;
                while w.get(k).is_some_and(|x| x.text == "--comment") {
                    k += 2;
                }
            }
            _ => return true,
        }
    }
    false
}

/// Where the `-A` rule `w` (from its chain on) of table `table` splits,
/// if it has a stateful match before other matches and can be split.
pub fn find(table: &str, w: &[Word]) -> Option<Split> {
    if table != "filter" {
        return None;
    }
    let mut i = 1;
    while i < w.len() {
        if is_target(w[i].text) {
            return None;
        }
        let module = match w.get(i + 1).map(|x| x.text) {
            Some("limit") => "limit",
            Some("recent") => "recent",
            Some("hashlimit") => "hashlimit",
            Some("connlimit") => "connlimit",
            _ => {
                i += 1;
                continue;
            }
        };
        if !is_match(w[i].text) {
            i += 1;
            continue;
        }
        let end = module_end(w, i, module);
        let changes = module != "recent"
            || w[i + 2..end].iter().any(|x| matches!(x.text, "--set" | "--update" | "--remove" | "--reap"));
        let t = w[end..].iter().position(|x| is_target(x.text)).map_or(w.len(), |t| end + t);
        if !changes || !holds_matches(&w[end..t]) {
            i = end;
            continue;
        }
        // The target and its options: nothing else may follow it.
        let target = &w[t..];
        let plain = target.is_empty()
            || target.len() >= 2
                && matches!(target[0].text, "-j" | "--jump")
                && target[1].text != "RETURN"
                && !target.iter().any(|x| is_match(x.text) || rule_option(x.text).is_some());
        let second_hashlimit = w[end..t].windows(2).any(|p| is_match(p[0].text) && p[1].text == "hashlimit");
        if !plain || second_hashlimit {
            return None;
        }
        return Some(Split { end, module, at: w[i].at, target: (t < w.len()).then_some(t) });
    }
    None
}

/// `w` split into its rule options (each with its `!` and argument) and
/// the other words, each in order.
fn partition<'a>(w: &[Word<'a>]) -> (Vec<Word<'a>>, Vec<Word<'a>>) {
    let (mut options, mut others) = (Vec::new(), Vec::new());
    let mut k = 0;
    while k < w.len() {
        match rule_option_at(w, k) {
            Some(n) => {
                options.extend_from_slice(&w[k..(k + n).min(w.len())]);
                k += n;
            }
            None => {
                others.push(w[k]);
                k += 1;
            }
        }
    }
    (options, others)
}

impl Split {
    /// The name of the chain of the second half: `LINE:after-MODULE`,
    /// with `-2`, `-3`, ... if `taken` says the name is in use.
    pub fn chain_name(&self, line: u32, taken: &dyn Fn(&str) -> bool) -> String {
        let base = format!("{line}:after-{}", self.module);
        let mut name = base.clone();
        let mut n = 2;
        while taken(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        name
    }

    /// The first half of a rule without target (as [`find`] read `w`).
    pub fn first_only<'a>(&self, w: &[Word<'a>]) -> Vec<Word<'a>> {
        let mut first: Vec<Word> = w[..self.end].to_vec();
        first.extend(partition(&w[self.end..]).0);
        first
    }

    /// The two halves of `w` (as [`find`] read it), the second in chain `chain`.
    pub fn halves<'a>(&self, w: &[Word<'a>], chain: &'a str) -> (Vec<Word<'a>>, Vec<Word<'a>>) {
        let t = self.target.unwrap_or(w.len()).min(w.len());
        let (after_options, after_others) = partition(&w[self.end..t]);
        let all_options = partition(&w[1..t]).0;
        let jump = [Word { text: "-j", at: self.at }, Word { text: chain, at: self.at }];
        let mut first: Vec<Word> = w[..self.end].to_vec();
        first.extend(after_options);
        first.extend_from_slice(&jump);
        let mut second = alloc::vec![Word { text: chain, at: self.at }];
        second.extend(all_options);
        second.extend(after_others);
        second.extend_from_slice(&w[t..]);
        (first, second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<Word<'_>> {
        let mut at = 0;
        s.split(' ')
            .map(|t| {
                let w = Word { text: t, at };
                at += t.len() + 1;
                w
            })
            .collect()
    }

    fn texts(w: &[Word]) -> String {
        w.iter().map(|x| x.text).collect::<Vec<_>>().join(" ")
    }

    fn split(s: &str) -> Option<(String, String)> {
        let w = words(s);
        let sp = find("filter", &w)?;
        let (a, b) = sp.halves(&w, "C");
        Some((texts(&a), texts(&b)))
    }

    #[test]
    fn a_limit_before_a_state_match_splits_with_the_rule_options_in_both_halves() {
        let got = split("INPUT -p tcp -m limit --limit 5/s --limit-burst 9 -s 10.0.0.0/8 --dport 22 -m state --state NEW -j LOG --log-prefix x");
        assert_eq!(
            got,
            Some((
                "INPUT -p tcp -m limit --limit 5/s --limit-burst 9 -s 10.0.0.0/8 -j C".into(),
                "C -p tcp -s 10.0.0.0/8 --dport 22 -m state --state NEW -j LOG --log-prefix x".into()
            ))
        );
    }

    #[test]
    fn negated_rule_options_and_fragments_go_to_both_halves() {
        let got =
            split("INPUT -m connlimit --connlimit-above 3 ! -i eth0 -f -m mac --mac-source 00:11:22:33:44:55 -j DROP");
        assert_eq!(
            got,
            Some((
                "INPUT -m connlimit --connlimit-above 3 ! -i eth0 -f -j C".into(),
                "C ! -i eth0 -f -m mac --mac-source 00:11:22:33:44:55 -j DROP".into()
            ))
        );
    }

    #[test]
    fn rules_that_need_no_split_or_cannot_be_split_are_left_whole() {
        for s in [
            "INPUT -p tcp --dport 22 -m limit --limit 5/s -j ACCEPT",
            "INPUT -m limit --limit 5/s -m comment --comment hi -s 1.2.3.4 -j ACCEPT",
            "INPUT -m recent --rcheck --name x ! --rsource --dport 22 -j ACCEPT",
            "INPUT -m limit --limit 5/s --dport 22 -j RETURN",
            "INPUT -m limit --limit 5/s --dport 22 -g X",
            "INPUT -m limit --limit 5/s -m hashlimit --hashlimit-upto 1/s --hashlimit-name h -j ACCEPT",
            "INPUT -j ACCEPT -m limit --limit 5/s -m state --state NEW",
        ] {
            assert_eq!(split(s), None, "{s}");
        }
        assert_eq!(find("mangle", &words("PREROUTING -m limit --limit 1/s -m state --state NEW -j ACCEPT")), None);
    }

    #[test]
    fn a_changing_recent_splits_after_its_negated_options() {
        let got = split("INPUT -m recent --set --name ssh --rsource -p tcp --dport 22 -j ACCEPT");
        assert_eq!(
            got,
            Some((
                "INPUT -m recent --set --name ssh --rsource -p tcp -j C".into(),
                "C -p tcp --dport 22 -j ACCEPT".into()
            ))
        );
        let rcheck_then_limit =
            split("INPUT -m recent --rcheck --name a -m limit --limit 1/s -m state --state NEW -j DROP");
        assert_eq!(
            rcheck_then_limit,
            Some((
                "INPUT -m recent --rcheck --name a -m limit --limit 1/s -j C".into(),
                "C -m state --state NEW -j DROP".into()
            ))
        );
    }

    #[test]
    fn rule_options_amid_the_modules_options_stay_in_the_first_half() {
        let got = split("INPUT -m limit -f --limit 9/s ! -s 1.2.3.4 --limit-burst 3 -m state --state NEW -j DROP");
        assert_eq!(
            got,
            Some((
                "INPUT -m limit -f --limit 9/s ! -s 1.2.3.4 --limit-burst 3 -j C".into(),
                "C -f ! -s 1.2.3.4 -m state --state NEW -j DROP".into()
            ))
        );
    }

    #[test]
    fn a_rule_without_target_keeps_only_its_first_half() {
        let w = words("INPUT -m recent --set --name n -p udp -m udp --dport 123");
        let sp = find("filter", &w).expect("splits");
        assert!(sp.target.is_none());
        assert_eq!(texts(&sp.first_only(&w)), "INPUT -m recent --set --name n -p udp");
    }

    #[test]
    fn chain_names_avoid_names_in_use() {
        let sp = Split { end: 0, module: "limit", at: 0, target: Some(0) };
        assert_eq!(sp.chain_name(7, &|_| false), "7:after-limit");
        assert_eq!(sp.chain_name(7, &|n| n == "7:after-limit"), "7:after-limit-2");
    }
}
