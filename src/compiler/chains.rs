//! Checks on the user chains of a ruleset: no loops (iptables refuses them
//! too), jumps nested at most [`MAX_CALL_DEPTH`] deep, and at most
//! [`MAX_LOOKUPS`] chain lookups per packet on any path, so the data
//! path's walk stays bounded.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use unifw_core::flow::{Chain, BUILTIN_CHAINS};
use unifw_core::image::format::{MAX_CALL_DEPTH, MAX_LOOKUPS};

use super::ast::{user_chain_number, Jump, RuleChain, Ruleset};

/// Longest user chain name iptables accepts (`XT_EXTENSION_MAXNAMELEN` - 1).
pub const MAX_CHAIN_NAME: usize = 28;

/// One jump or goto: the rule, its chain's number and the target's.
#[derive(Clone, Copy)]
struct Edge {
    rule: usize,
    to: usize,
    call: bool,
}

fn name(set: &Ruleset, n: usize) -> String {
    match Chain::from_index(n) {
        Some(c) => c.name().into(),
        None => set.chains.get(n - BUILTIN_CHAINS).map_or_else(|| format!("#{n}"), |c| c.name.clone()),
    }
}

/// Ok, or the index of the rule to blame and why.
pub fn check(set: &Ruleset) -> Result<(), (usize, String)> {
    let n = BUILTIN_CHAINS + set.chains.len();
    let mut edges: Vec<Vec<Edge>> = (0..n).map(|_| Vec::new()).collect();
    for (i, r) in set.rules.iter().enumerate() {
        let (to, call) = match r.jump {
            Some(Jump::Call(t)) => (user_chain_number(t), true),
            Some(Jump::Goto(t)) => (user_chain_number(t), false),
            _ => continue,
        };
        if let Some(list) = edges.get_mut(r.chain.number()) {
            list.push(Edge { rule: i, to: to.min(n - 1), call });
        }
    }
    let order = topological(&edges).map_err(|rest| loop_error(set, &edges, rest))?;
    hooks(set, &edges, &order)?;
    // Worst case per chain, callees first: nested calls and lookups.
    let mut depth = alloc::vec![0usize; n];
    let mut lookups = alloc::vec![1u64; n];
    for &c in order.iter().rev() {
        for e in &edges[c] {
            depth[c] = depth[c].max(depth[e.to] + usize::from(e.call));
            lookups[c] = lookups[c].saturating_add(lookups[e.to] + u64::from(e.call));
        }
    }
    for root in Chain::ALL {
        let root = RuleChain::Builtin(root).number();
        if depth[root] > MAX_CALL_DEPTH {
            let path = deepest(set, &edges, &depth, root);
            return Err((
                path.0,
                format!(
                    "jumps nest {} chains deep, more than {MAX_CALL_DEPTH} (the most unifw follows): {}",
                    depth[root], path.1
                ),
            ));
        }
        if lookups[root] > u64::from(MAX_LOOKUPS) {
            let heavy = edges[root].iter().max_by_key(|e| lookups[e.to]).map_or(0, |e| e.rule);
            return Err((
                heavy,
                format!(
                "the chains reached from {} may take {} lookups per packet, more than {MAX_LOOKUPS} (fewer jumps to \
                 the same chains)",
                name(set, root),
                lookups[root]
            ),
            ));
        }
    }
    Ok(())
}

/// Matches the kernel allows only at some hooks, in user chains: the
/// hooks whose built-in chains reach the chain must all allow them (`-m
/// mac` and `--limit-iface-in`: PREROUTING, INPUT, FORWARD;
/// `--limit-iface-out`: FORWARD, OUTPUT, POSTROUTING), as iptables-restore
/// fails otherwise. Built-in chains' rules are checked as they are read.
fn hooks(set: &Ruleset, edges: &[Vec<Edge>], order: &[usize]) -> Result<(), (usize, String)> {
    let mut reached = alloc::vec![0u32; edges.len()];
    for c in Chain::ALL {
        reached[c.index()] |= 1 << c.index();
    }
    for &c in order {
        for e in &edges[c] {
            reached[e.to] |= reached[c];
        }
    }
    for (i, r) in set.rules.iter().enumerate() {
        let RuleChain::User(_) = r.chain else { continue };
        let (ok, what): (&[&str], &str) = if r.residual.mac.is_some() {
            (&["PREROUTING", "INPUT", "FORWARD"], "mac match")
        } else if r.folded.iter().any(|f| matches!(f, super::iptables_folded::Folded::Owner(_))) {
            (&["OUTPUT", "POSTROUTING"], "owner match")
        } else if r.residual.type_iface == 1 {
            (&["PREROUTING", "INPUT", "FORWARD"], "`--limit-iface-in`")
        } else if r.residual.type_iface == 2 {
            (&["OUTPUT", "FORWARD", "POSTROUTING"], "`--limit-iface-out`")
        } else {
            continue;
        };
        let roots = reached.get(r.chain.number()).copied().unwrap_or(0);
        if let Some(bad) = Chain::ALL.into_iter().find(|c| roots >> c.index() & 1 != 0 && !ok.contains(&c.name())) {
            return Err((
                i,
                format!(
                    "the {what} works only in {}, and this chain is reached from {} {} (the kernel refuses it)",
                    ok.join(", "),
                    bad.table().name(),
                    bad.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Chains in an order where every jump goes forward, or the chains no
/// order can place (on a loop or after one).
fn topological(edges: &[Vec<Edge>]) -> Result<Vec<usize>, Vec<usize>> {
    let mut indegree = alloc::vec![0usize; edges.len()];
    for e in edges.iter().flatten() {
        indegree[e.to] += 1;
    }
    let mut ready: Vec<usize> = (0..edges.len()).filter(|&c| indegree[c] == 0).collect();
    let mut order = Vec::with_capacity(edges.len());
    while let Some(c) = ready.pop() {
        order.push(c);
        for e in &edges[c] {
            indegree[e.to] -= 1;
            if indegree[e.to] == 0 {
                ready.push(e.to);
            }
        }
    }
    let rest: Vec<usize> = (0..edges.len()).filter(|&c| indegree[c] > 0).collect();
    if rest.is_empty() {
        Ok(order)
    } else {
        Err(rest)
    }
}

/// A loop among the chains `rest` left by [`topological`]: each has a jump
/// from another of them, so walking jumps backwards from any comes round.
/// The rule that closes the loop, and the chains' names in jump order.
fn loop_error(set: &Ruleset, edges: &[Vec<Edge>], rest: Vec<usize>) -> (usize, String) {
    let from = |to: usize| rest.iter().find_map(|&p| edges[p].iter().find(|e| e.to == to).map(|e| (p, e.rule)));
    let mut c = rest.first().copied().unwrap_or(0);
    let mut path = alloc::vec![c];
    let mut rule = 0;
    for _ in 0..edges.len() + 1 {
        let Some((p, r)) = from(c) else { break };
        rule = r;
        if let Some(at) = path.iter().position(|&x| x == p) {
            path.drain(..at);
            path.push(p);
            break;
        }
        path.push(p);
        c = p;
    }
    path.reverse();
    let names: Vec<String> = path.iter().map(|&c| name(set, c)).collect();
    (rule, format!("chains jump in a loop: {} (iptables refuses loops too)", names.join(" -> ")))
}

/// The deepest path of calls from `root`: its first jump and its names.
fn deepest(set: &Ruleset, edges: &[Vec<Edge>], depth: &[usize], root: usize) -> (usize, String) {
    let mut names = alloc::vec![name(set, root)];
    let mut first = None;
    let mut c = root;
    while depth[c] > 0 {
        let Some(e) = edges[c].iter().find(|e| depth[e.to] + usize::from(e.call) == depth[c]) else { break };
        first.get_or_insert(e.rule);
        names.push(name(set, e.to));
        c = e.to;
    }
    (first.unwrap_or(0), names.join(" -> "))
}
