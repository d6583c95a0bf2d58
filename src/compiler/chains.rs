//! Checks on the user chains of a ruleset: no loops (iptables refuses them
//! too), jumps nested at most [`MAX_CALL_DEPTH`] deep, and at most
//! [`MAX_LOOKUPS`] chain lookups per packet on any path, so the data
//! path's walk stays bounded.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use unifw_core::flow::{Chain, BUILTIN_CHAINS};
use unifw_core::image::format::{MAX_CALL_DEPTH, MAX_LOOKUPS};

use super::ast::{user_chain_number, Jump, ProtoMatch, Rule, RuleChain, Ruleset, ANY_STATE};

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
    let lookups = lookups(set, &edges, &order);
    let mut depth = alloc::vec![0usize; n];
    for &c in order.iter().rev() {
        for e in &edges[c] {
            depth[c] = depth[c].max(depth[e.to] + usize::from(e.call));
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
                    "the chains reached from {} may take {} lookups per packet, more than {MAX_LOOKUPS} (each jump to \
                 a chain that can return, and each rule that lets matching go on: LOG, NFLOG, NOTRACK, TCPMSS, \
                 rules without target, and rules with -m limit, recent, hashlimit or connlimit, can take one)",
                    name(set, root),
                    lookups[root]
                ),
            ));
        }
    }
    Ok(())
}

/// Whether rule `r` matches every packet and has no stateful match.
fn unconditional(r: &Rule) -> bool {
    r.proto == ProtoMatch::Any
        && r.src.is_none()
        && r.dst.is_none()
        && r.sport.is_none()
        && r.dport.is_none()
        && r.ports.is_none()
        && r.icmp.is_none()
        && r.in_if.is_none()
        && r.out_if.is_none()
        && r.states == ANY_STATE
        && r.image_residual().is_none()
}

/// Whether matching may go on past rule `r` once its tuple matched: a
/// non-terminating target, or a stateful match that may not hold. Each
/// such rule can cost the walk one more lookup (the data path's walk and
/// the reference evaluator both count it).
fn goes_on(r: &Rule) -> bool {
    let x = &r.residual;
    r.log_target.is_some()
        || matches!(r.jump, Some(Jump::NoTrack | Jump::TcpMss(_) | Jump::Continue))
        || x.limit.is_some()
        || x.recent.is_some()
        || x.hashlimit.is_some()
        || x.connlimit.is_some()
}

/// The most chain lookups a packet can take from each chain on, callees
/// first in `order`: one, plus one per rule that lets matching go on,
/// plus for each jump to a chain that can return the callee's worst case
/// and one more lookup after it; then the worst of the transfers that
/// never come back (a goto, or a jump to a chain that never returns),
/// since at most one of them is taken, last. A chain never returns when
/// it has no `RETURN`, its gotos all go to such chains, and some rule
/// matching everything decides (a verdict, or a jump or goto to such a
/// chain).
fn lookups(set: &Ruleset, edges: &[Vec<Edge>], order: &[usize]) -> Vec<u64> {
    let n = edges.len();
    let mut steps = alloc::vec![0u64; n];
    let mut rules: Vec<Vec<usize>> = (0..n).map(|_| Vec::new()).collect();
    for (i, r) in set.rules.iter().enumerate() {
        if let Some(list) = rules.get_mut(r.chain.number()) {
            list.push(i);
            steps[r.chain.number()] += u64::from(goes_on(r));
        }
    }
    let mut ends = alloc::vec![false; n];
    let mut lookups = alloc::vec![1u64; n];
    for &c in order.iter().rev() {
        let to_end = |j: Option<Jump>| match j {
            Some(Jump::Call(t) | Jump::Goto(t)) => ends.get(user_chain_number(t)).copied().unwrap_or(false),
            _ => false,
        };
        let can_return = rules[c].iter().any(|&i| match set.rules[i].jump {
            Some(Jump::Return) => true,
            j @ Some(Jump::Goto(_)) => !to_end(j),
            _ => false,
        });
        let decides = rules[c].iter().any(|&i| {
            let r = &set.rules[i];
            unconditional(r)
                && r.log_target.is_none()
                && (matches!(r.jump, None | Some(Jump::Nat(_))) || to_end(r.jump))
        });
        let (mut sum, mut last) = (1u64.saturating_add(steps[c]), 0u64);
        for e in &edges[c] {
            if e.call && !ends[e.to] {
                sum = sum.saturating_add(lookups[e.to]).saturating_add(1);
            } else {
                last = last.max(lookups[e.to]);
            }
        }
        lookups[c] = sum.saturating_add(last);
        ends[c] = decides && !can_return;
    }
    lookups
}

/// Matches the kernel allows only at some hooks, in user chains: the
/// hooks whose built-in chains reach the chain must all allow them (`-m
/// mac` and `--limit-iface-in`: PREROUTING, INPUT, FORWARD; `-m physdev`
/// naming the output port without `--physdev-is-bridged`: not OUTPUT;
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
        } else if r.folded.iter().any(|f| matches!(f, super::iptables_folded::Folded::Physdev(p) if p.out_unbridged()))
        {
            // physdev_mt_check: the output bridge port never at LOCAL_OUT
            // without a plain `--physdev-is-bridged`.
            (
                &["PREROUTING", "INPUT", "FORWARD", "POSTROUTING"],
                "physdev match's `--physdev-out`/`--physdev-is-out` (without `--physdev-is-bridged`)",
            )
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
