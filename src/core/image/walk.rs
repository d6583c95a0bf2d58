//! The chain walk: jumps, gotos and `RETURN` across user chains, with a
//! fixed-size stack of return points (iptables' semantics, Linux's
//! `ipt_do_table`). Each step asks one chain for its first matching rule
//! at or after a rule number; images without jumps never get here.

use super::format::{u32_item, ChainRecord, Target, TupleRecord, MAX_CALL_DEPTH, MAX_LOOKUPS};
use super::{head_of, sec, tuple_of, ChainHead, Cost, Image, Lookup, NONE};
use crate::flow::{Action, Chain, PacketKey, Verdict};

/// Where a jump returns to: a chain and the rule after the jump.
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    chain: u32,
    from: u32,
}

impl<'a> Image<'a> {
    /// The verdict of built-in `chain` whose first match is `first`:
    /// terminal targets decide, a jump pushes the next rule and enters its
    /// chain, a goto enters its chain without a return point, `RETURN` and
    /// the end of a chain go back to the last return point, and with none
    /// left the built-in chain's policy decides. `find(chain, from, cost)`
    /// is the first match of a chain at or after a rule.
    pub(super) fn walk<F: Fn(u32, u32, &mut Cost) -> u32>(
        &self,
        (chain, key): (Chain, &PacketKey),
        first: u32,
        find: F,
        cost: &mut Cost,
        lookup: &mut Lookup<'_>,
    ) -> Verdict {
        let policy = Verdict { action: self.policy(chain), rule: None, log: false };
        let mut stack = [Frame::default(); MAX_CALL_DEPTH];
        let mut depth = 0usize;
        let mut current = chain.index() as u32;
        let mut hit = first;
        for _ in 0..MAX_LOOKUPS {
            // A rule whose `-m recent` does not hold, or over its
            // `-m limit`, does not match: on to the next.
            if !self.stateful_ok(hit, key, lookup) {
                if lookup.hotdrop.is_some() {
                    return Verdict { action: Action::Drop, rule: None, log: false };
                }
                hit = find(current, hit.saturating_add(1), cost);
                continue;
            }
            let next = match self.target(hit) {
                None | Some(Target::Return) => None,
                Some(Target::Verdict) => return self.verdict(chain, hit),
                // LOG and NFLOG do not terminate: recorded, then the next rule.
                Some(Target::Log(_)) => {
                    lookup.log(hit);
                    Some(Frame { chain: current, from: hit.saturating_add(1) })
                }
                // NOTRACK and TCPMSS are non-terminating (XT_CONTINUE):
                // note what they ask and go on with the next rule.
                // A rule without a target (its `-m recent` has done its work).
                Some(Target::Continue) => Some(Frame { chain: current, from: hit.saturating_add(1) }),
                Some(t @ (Target::NoTrack | Target::TcpMss(_))) => {
                    lookup.marks.note(t);
                    Some(Frame { chain: current, from: hit.saturating_add(1) })
                }
                // Kind 5 (NAT) is not written by this compiler yet: the
                // rule's action decides, as for a verdict.
                Some(Target::Nat(_)) => return self.verdict(chain, hit),
                Some(Target::Jump(to)) => {
                    let Some(slot) = stack.get_mut(depth) else { break };
                    *slot = Frame { chain: current, from: hit.saturating_add(1) };
                    depth += 1;
                    Some(Frame { chain: to, from: 0 })
                }
                Some(Target::Goto(to)) => Some(Frame { chain: to, from: 0 }),
            };
            let Frame { chain: to, from } = match next {
                Some(f) => f,
                None if depth == 0 => return policy,
                None => {
                    depth -= 1;
                    let Some(&f) = stack.get(depth) else { break };
                    f
                }
            };
            current = to;
            hit = find(to, from, cost);
        }
        // Deeper or longer than the compiler allows: a hand-made image.
        Verdict { action: Action::Drop, rule: None, log: false }
    }

    /// Whether rule `rule`'s packet and stateful matches hold now: its
    /// `-m string` (on [`super::Lookup::packet`]), its `-m recent`
    /// (changing its table as the command says), then its `-m limit`
    /// (spending a token when it has room; no bucket for it: room), then its
    /// `-m connlimit` (counting the packet's connection). They are the
    /// rule's last matches, `-m limit` after `-m recent --rcheck`.
    fn stateful_ok(&self, rule: u32, key: &PacketKey, lookup: &mut Lookup<'_>) -> bool {
        if rule == NONE {
            return true;
        }
        let Some(r) = self.residual(rule) else { return true };
        // `-m string` first: it reads the packet and changes nothing, and
        // the stateful matches are the rule's last.
        if let Some(n) = r.string {
            // A record the image lacks (a hand-made image): the match fails.
            if !self.string_spec(n).is_some_and(|s| s.holds(lookup.packet)) {
                return false;
            }
        }
        let now = lookup.now_ms;
        if let Some(rc) = r.recent {
            let hit = match lookup.recent.as_deref_mut() {
                Some(tables) => tables.check(&rc, key, now),
                None => super::RecentTables::default().check(&rc, key, now),
            };
            if !hit {
                return false;
            }
        }
        if let Some(hl) = r.hashlimit {
            let holds = match lookup.hashlimit.as_deref_mut() {
                Some(tables) => tables.check(&hl, key, now),
                None => Some(!hl.invert),
            };
            match holds {
                Some(true) => {}
                Some(false) => return false,
                None => {
                    lookup.hotdrop = Some(super::HotDrop::Hashlimit);
                    return false;
                }
            }
        }
        if let Some(l) = r.limit {
            if !lookup.limits.get_mut(l.slot as usize).is_none_or(|b| b.take(&l, now)) {
                return false;
            }
        }
        // `-m connlimit`, the rule's last match (after `-m limit`).
        let Some(c) = r.connlimit else { return true };
        let held = match lookup.connlimit.as_deref_mut() {
            Some(counts) => counts.check(&c, key, now),
            None => Some(super::ConnLimits::alone(&c)),
        };
        if held.is_none() {
            lookup.hotdrop = Some(super::HotDrop::Connlimit);
        }
        held.unwrap_or(false)
    }

    /// The log record of a `LOG`/`NFLOG` rule.
    pub fn rule_log(&self, rule: u32) -> Option<super::format::LogRecord> {
        match self.target(rule)? {
            Target::Log(n) => self.log_record(n),
            _ => None,
        }
    }

    /// The target of rule `rule` (`None` for [`NONE`]: no rule matched).
    #[inline]
    fn target(&self, rule: u32) -> Option<Target> {
        if rule == NONE || self.targets.is_empty() {
            return None;
        }
        Some(Target::decode(u32_item(self.targets, rule as usize)))
    }

    /// Chain `n`'s head (built-in or user), read from its record.
    pub(super) fn head(&self, n: u32) -> Option<ChainHead> {
        if let Some(c) = self.chains.get(n as usize) {
            return Some(c.head);
        }
        if n >= self.chain_count {
            return None;
        }
        let at = (n as usize).checked_mul(ChainRecord::LEN)?;
        let record = ChainRecord::decode(self.sections[sec::CHAINS].get(at..)?)?;
        Some(head_of(&record))
    }

    /// The first match in chain `n` at or after rule `from` (tuple records
    /// decoded as probed: user chains keep no decoded copy).
    #[inline]
    pub(super) fn first_match_in<const COUNT: bool>(&self, n: u32, key: &PacketKey, from: u32, cost: &mut Cost) -> u32 {
        if let Some(c) = self.chains.get(n as usize) {
            return self.first_match::<COUNT, _>(&c.head, |t| c.tuples.get(t).copied(), key, from, cost);
        }
        let Some(c) = self.head(n) else { return NONE };
        let tuples = self.sections[sec::TUPLES];
        let tuple = |t: usize| {
            let at = (c.tuple_start as usize).checked_add(t)?.checked_mul(TupleRecord::LEN)?;
            TupleRecord::decode(tuples.get(at..)?).map(tuple_of)
        };
        self.first_match::<COUNT, _>(&c, tuple, key, from, cost)
    }

    /// Chains in the image, the built-in ones included.
    pub fn chain_count(&self) -> u32 {
        self.chain_count
    }
}
