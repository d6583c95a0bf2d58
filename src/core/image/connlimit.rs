//! The runtime counts of `-m connlimit` (Linux's `xt_connlimit` on
//! `nf_conncount`), allocated at boot from what the image's rules ask.
//!
//! Linux keeps, per rule, a tree of masked addresses each with a list of
//! connection tuples; a packet adds its connection's tuple to its address's
//! list (once), the list drops tuples whose conntrack entry is gone or, for
//! TCP, closed (TIME_WAIT or CLOSE), and the match compares the list's
//! length with the limit. unifw keeps the same numbers:
//!
//! - a table of [`CONNLIMIT_KEYS`] counters keyed by (rule, masked
//!   address), open addressing with at most [`PROBES`] probes from a
//!   per-boot seeded hash: a key finds its counter, or a never-used or
//!   zero counter to take, in O(1);
//! - per tracked connection (by conntrack slot) and per connlimit rule, the
//!   counter counting it and its neighbours in that counter's list: a
//!   packet of a connection already counted adds nothing, a later packet
//!   of a confirmed connection not yet counted adds it at once, a new
//!   connection is added when conntrack confirms it (Linux's unconfirmed
//!   tuple leaves the list at its next walk when the packet was dropped);
//! - [`ConnLimits::forget`], called where conntrack forgets an entry
//!   (expiry, early drop, a TCP reopen, a flush) or a TCP connection closes,
//!   takes the connection out of its counters in O(1);
//! - connections that expired but that conntrack has not swept yet leave
//!   when a packet finds its count over the limit: it walks its counter's
//!   list from the oldest, forgetting the expired ones, until `limit + 1`
//!   live ones are seen (Linux walks the whole list on every packet).
//!   Each expiry is handled once, so the cost per packet is O(1) amortised
//!   plus at most `limit + 1` steps for a packet over its limit.
//!
//! A packet without a countable connection (untracked, invalid, related,
//! or of a closed TCP connection) counts itself on top of its address's
//! counter, as Linux adds its tuple for the one check.
//!
//! Memory, allocated at boot only when the image has connlimit rules
//! (nothing per packet): [`CONNLIMIT_KEYS`] counters of 20 bytes
//! (1.25 MiB), plus per conntrack slot 8 bytes and 12 bytes per connlimit
//! rule (at most [`MAX_CONNLIMIT_RULES`]). A key that finds no counter
//! within its probes (the table crowded around it) makes the packet drop,
//! as Linux hot-drops a packet it cannot count; the data path counts those
//! drops (`unifw_connlimit_full_drops_total`).
//!
//! One difference: a connection is counted by a rule under one address
//! only (the first it was counted under). Linux would count it again under
//! another address if packets of it with another masked address reached
//! the rule (its reply direction in the same rule).

use alloc::vec::Vec;

use super::format::{ConnlimitSpec, CONNLIMIT_KEYS, MAX_CONNLIMIT_RULES};
use crate::flow::{CtState, PacketKey};

/// Most counters a key looks at from its hash.
pub const PROBES: usize = 32;

/// Most connections of each probed counter a key with no free counter
/// looks at for expired ones (Linux's `CONNCOUNT_GC_MAX_NODES`).
pub const GC_NODES: usize = 8;

/// No connection (the end of a counter's list).
const NONE: u32 = u32::MAX;

/// One counter: a (rule, masked address), the connections it counts, and
/// their list (conntrack slots, oldest counted first).
#[derive(Debug, Clone, Copy)]
struct Counter {
    /// Ever taken (a counter at zero may be taken by another key; a
    /// never-used one ends a probe sequence).
    used: bool,
    rule: u16,
    addr: u32,
    count: u32,
    head: u32,
    tail: u32,
}

impl Default for Counter {
    fn default() -> Counter {
        Counter { used: false, rule: 0, addr: 0, count: 0, head: NONE, tail: NONE }
    }
}

/// One connection's place under one rule: the counter counting it (plus
/// 1; 0: none) and its neighbours in that counter's list.
#[derive(Debug, Clone, Copy)]
struct Row {
    counter: u32,
    prev: u32,
    next: u32,
}

impl Default for Row {
    fn default() -> Row {
        Row { counter: 0, prev: NONE, next: NONE }
    }
}

/// The `-m connlimit` state of a data plane (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct ConnLimits {
    /// Counter sets (connlimit rules); 0: none, nothing allocated.
    rules: usize,
    /// Whether the memory could not be had: every check drops.
    failed: bool,
    counters: Vec<Counter>,
    seed: u64,
    /// Per conntrack slot, `rules` rows.
    rows: Vec<Row>,
    /// Per conntrack slot, when its connection expires (ms), as conntrack
    /// last set it.
    expires: Vec<u64>,
    /// Conntrack slots `rows` may grow to.
    slots: usize,
    /// The connection of the packet being judged, when countable.
    current: Option<u32>,
    /// Whether the packet being judged opens a new connection.
    fresh: bool,
    /// A new connection's counts, kept until conntrack confirms it: rule,
    /// address and counter.
    pending: [(u16, u32, u32); MAX_CONNLIMIT_RULES],
    pending_len: usize,
}

/// A key's hash: the rule and address mixed with the boot's seed.
fn hash(seed: u64, rule: u16, addr: u32) -> usize {
    let mut x = seed ^ (u64::from(rule) << 32 | u64::from(addr));
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    (x ^ (x >> 33)) as usize
}

impl ConnLimits {
    /// Counts for `rules` connlimit rules over a connection table of
    /// `slots` entries, hashing with `seed`, with [`CONNLIMIT_KEYS`]
    /// counters; all memory reserved now (fallibly: without it every
    /// connlimit check drops). No rules: nothing.
    pub fn new(rules: usize, slots: usize, seed: u64) -> ConnLimits {
        Self::with_counters(rules, slots, seed, CONNLIMIT_KEYS)
    }

    /// [`ConnLimits::new`] with `counters` counters (tests fill a small table).
    pub fn with_counters(rules: usize, slots: usize, seed: u64, counters: usize) -> ConnLimits {
        let rules = rules.min(MAX_CONNLIMIT_RULES);
        let mut c = ConnLimits { rules, seed, slots, ..ConnLimits::default() };
        if rules == 0 {
            return c;
        }
        let counters = counters.max(1);
        if c.counters.try_reserve_exact(counters).is_err()
            || c.rows.try_reserve_exact(slots.saturating_mul(rules)).is_err()
            || c.expires.try_reserve_exact(slots).is_err()
        {
            c.failed = true;
            return c;
        }
        c.counters.resize(counters, Counter::default());
        c
    }

    /// Of `budget` bytes for a connection table of `per_flow` bytes a
    /// flow, what the table may take so that the counts for `rules`
    /// connlimit rules fit beside it: the counters, and per flow 8 bytes
    /// plus 12 per rule.
    pub fn budget(budget: usize, per_flow: usize, rules: usize) -> usize {
        if rules == 0 {
            return budget;
        }
        let rules = rules.min(MAX_CONNLIMIT_RULES);
        let extra = core::mem::size_of::<u64>() + core::mem::size_of::<Row>() * rules;
        let rest = budget.saturating_sub(CONNLIMIT_KEYS * core::mem::size_of::<Counter>());
        (rest / per_flow.saturating_add(extra).max(1)).saturating_mul(per_flow)
    }

    /// Connlimit rules counted for.
    pub fn rules(&self) -> usize {
        self.rules
    }

    /// Connections counted by `rule` for masked address `addr` (tests and
    /// diagnostics; expired ones leave at the next check over the limit).
    pub fn count(&self, rule: u16, addr: u32) -> u32 {
        self.find(rule, addr).and_then(|k| self.counters.get(k)).map_or(0, |c| c.count)
    }

    /// Counters in use (counting at least one connection).
    pub fn keys_in_use(&self) -> usize {
        self.counters.iter().filter(|c| c.count > 0).count()
    }

    fn probe(&self, rule: u16, addr: u32) -> impl Iterator<Item = usize> {
        let (start, len) = (hash(self.seed, rule, addr), self.counters.len().max(1));
        (0..PROBES.min(len)).map(move |i| start.wrapping_add(i) % len)
    }

    fn find(&self, rule: u16, addr: u32) -> Option<usize> {
        for k in self.probe(rule, addr) {
            let c = self.counters.get(k)?;
            if !c.used {
                return None;
            }
            if c.rule == rule && c.addr == addr {
                return Some(k);
            }
        }
        None
    }

    /// The counter of (`rule`, `addr`), taking a free one if it has none
    /// (when none is free within its probes, the expired connections of
    /// the counters probed leave first: at most [`GC_NODES`] of each list
    /// are looked at); `None` when none is free.
    fn find_or_take(&mut self, rule: u16, addr: u32, now_ms: u64) -> Option<usize> {
        if let Some(k) = self.find(rule, addr) {
            return Some(k);
        }
        let is_free = |c: &Counter| !c.used || c.count == 0;
        if !self.probe(rule, addr).any(|k| self.counters.get(k).is_some_and(is_free)) {
            let (start, len) = (hash(self.seed, rule, addr), self.counters.len().max(1));
            for i in 0..PROBES.min(len) {
                let k = start.wrapping_add(i) % len;
                let rule_of = self.counters.get(k).map_or(0, |c| c.rule);
                self.reap(k, rule_of, now_ms, (u32::MAX, GC_NODES));
            }
        }
        let free = self.probe(rule, addr).find(|&k| self.counters.get(k).is_some_and(is_free))?;
        let c = self.counters.get_mut(free)?;
        *c = Counter { used: true, rule, addr, ..Counter::default() };
        Some(free)
    }

    fn at(&self, slot: u32, rule: u16) -> usize {
        (slot as usize).saturating_mul(self.rules).saturating_add(usize::from(rule))
    }

    fn row(&self, slot: u32, rule: u16) -> Row {
        self.rows.get(self.at(slot, rule)).copied().unwrap_or_default()
    }

    fn set_row(&mut self, slot: u32, rule: u16, row: Row) {
        let at = self.at(slot, rule);
        if let Some(r) = self.rows.get_mut(at) {
            *r = row;
        }
    }

    /// Counts connection `slot` in counter `k` for `rule`, at the end of
    /// its list.
    fn attach(&mut self, slot: u32, rule: u16, k: usize) {
        if slot as usize >= self.slots || usize::from(rule) >= self.rules || self.row(slot, rule).counter != 0 {
            return;
        }
        let end = (slot as usize + 1).saturating_mul(self.rules);
        if self.rows.len() < end {
            // Within the capacity reserved at boot: no allocation.
            self.rows.resize(end, Row::default());
        }
        let Some(&Counter { tail, .. }) = self.counters.get(k) else { return };
        self.set_row(slot, rule, Row { counter: k as u32 + 1, prev: tail, next: NONE });
        if tail == NONE {
            if let Some(c) = self.counters.get_mut(k) {
                c.head = slot;
            }
        } else {
            let mut t = self.row(tail, rule);
            t.next = slot;
            self.set_row(tail, rule, t);
        }
        if let Some(c) = self.counters.get_mut(k) {
            c.tail = slot;
            c.count = c.count.saturating_add(1);
        }
    }

    /// Takes connection `slot` out of `rule`'s counter.
    fn detach(&mut self, slot: u32, rule: u16) {
        let row = self.row(slot, rule);
        let Some(k) = (row.counter as usize).checked_sub(1) else { return };
        if row.prev == NONE {
            if let Some(c) = self.counters.get_mut(k) {
                c.head = row.next;
            }
        } else {
            let mut p = self.row(row.prev, rule);
            p.next = row.next;
            self.set_row(row.prev, rule, p);
        }
        if row.next == NONE {
            if let Some(c) = self.counters.get_mut(k) {
                c.tail = row.prev;
            }
        } else {
            let mut n = self.row(row.next, rule);
            n.prev = row.prev;
            self.set_row(row.next, rule, n);
        }
        if let Some(c) = self.counters.get_mut(k) {
            c.count = c.count.saturating_sub(1);
        }
        self.set_row(slot, rule, Row::default());
    }

    /// The packet about to be judged: its countable connection's conntrack
    /// slot, or whether it opens one (counted if conntrack confirms it).
    pub fn begin(&mut self, slot: Option<u32>, fresh: bool) {
        self.current = slot;
        self.fresh = fresh;
        self.pending_len = 0;
    }

    /// Conntrack set when connection `slot` expires (ms).
    pub fn expires(&mut self, slot: u32, at_ms: u64) {
        if self.rules == 0 || slot as usize >= self.slots {
            return;
        }
        if self.expires.len() <= slot as usize {
            // Within the capacity reserved at boot: no allocation.
            self.expires.resize(slot as usize + 1, 0);
        }
        if let Some(e) = self.expires.get_mut(slot as usize) {
            *e = at_ms;
        }
    }

    /// `connlimit_mt` for `key` at `now_ms`: whether the match holds (the
    /// count above the limit, inverted for `upto`); `None`: no counter for
    /// its address (the packet is dropped).
    pub fn check(&mut self, spec: &ConnlimitSpec, key: &PacketKey, now_ms: u64) -> Option<bool> {
        if self.failed || usize::from(spec.slot) >= self.rules {
            return None;
        }
        let addr = if spec.dest { key.dst } else { key.src } & spec.mask;
        let k = self.find_or_take(spec.slot, addr, now_ms)?;
        let tracked = matches!(key.state, CtState::New | CtState::Established);
        // Whether the packet's own connection is in the counter.
        let mut own = false;
        match self.current.filter(|_| tracked) {
            Some(slot) => match self.row(slot, spec.slot).counter {
                0 => {
                    self.attach(slot, spec.slot, k);
                    own = true;
                }
                w => own = w as usize == k + 1,
            },
            None if tracked && self.fresh => {
                if let Some(p) = self.pending.get_mut(self.pending_len) {
                    *p = (spec.slot, addr, k as u32);
                    self.pending_len += 1;
                }
            }
            None => {}
        }
        let count = |me: &ConnLimits| {
            let n = me.counters.get(k).map_or(0, |c| c.count);
            if own {
                n
            } else {
                n.saturating_add(1)
            }
        };
        if count(self) > spec.limit {
            // Over the limit as counted: the connections that expired
            // since leave first (Linux finds them gone from conntrack),
            // until enough live ones are seen.
            self.reap(k, spec.slot, now_ms, (spec.limit, usize::MAX));
        }
        Some((count(self) > spec.limit) != spec.invert)
    }

    /// Walks counter `k` (of `rule`)'s list from its oldest connection,
    /// forgetting the expired ones, until it has seen more than `limit`
    /// live ones, `nodes` in all, or the end: each expired connection is
    /// forgotten once.
    fn reap(&mut self, k: usize, rule: u16, now_ms: u64, (limit, nodes): (u32, usize)) {
        let mut node = self.counters.get(k).map_or(NONE, |c| c.head);
        let (mut live, mut seen) = (0u32, 0usize);
        while node != NONE && live <= limit && seen < nodes {
            let next = self.row(node, rule).next;
            if self.expires.get(node as usize).is_some_and(|&e| e <= now_ms) {
                self.forget(node);
            } else {
                live = live.saturating_add(1);
            }
            seen += 1;
            node = next;
        }
    }

    /// Conntrack confirmed the judged packet's new connection in `slot`,
    /// expiring at `expires_ms`: the rules that saw it count it now.
    pub fn confirmed(&mut self, slot: u32, expires_ms: u64) {
        self.expires(slot, expires_ms);
        let pending = self.pending;
        for &(rule, addr, k) in pending.iter().take(self.pending_len) {
            // Its counter, unless another key took it at zero meanwhile.
            let same = self.counters.get(k as usize).is_some_and(|c| c.used && c.rule == rule && c.addr == addr);
            let k = if same { Some(k as usize) } else { self.find_or_take(rule, addr, 0) };
            if let Some(k) = k {
                self.attach(slot, rule, k);
            }
        }
        self.pending_len = 0;
        self.fresh = false;
    }

    /// Conntrack forgets connection `slot`, or it closed: out of every
    /// counter counting it.
    pub fn forget(&mut self, slot: u32) {
        if self.rules == 0 || self.rows.len() <= self.at(slot, 0) {
            return;
        }
        for rule in 0..self.rules as u16 {
            self.detach(slot, rule);
        }
        if self.current == Some(slot) {
            self.current = None;
        }
    }

    /// The result without counts (a classification without runtime state):
    /// the packet's own connection only.
    pub fn alone(spec: &ConnlimitSpec) -> bool {
        (1 > spec.limit) != spec.invert
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{KeyExtra, NO_IF};

    fn key(src: u32, state: CtState) -> PacketKey {
        PacketKey {
            src,
            dst: 0x0a02_0002,
            src_port: 1,
            dst_port: 80,
            proto: 6,
            icmp_type: 0,
            icmp_code: 0,
            in_if: 0,
            out_if: NO_IF,
            state,
            extra: KeyExtra::default(),
        }
    }

    #[test]
    fn the_counts_fit_beside_the_table_in_its_budget() {
        assert_eq!(ConnLimits::budget(1 << 30, 164, 0), 1 << 30);
        for rules in [1, 2, 16] {
            let table = ConnLimits::budget(1 << 30, 164, rules);
            let flows = table / 164;
            let extra = 8 + 12 * rules;
            assert!(flows * (164 + extra) + CONNLIMIT_KEYS * 20 <= 1 << 30, "{rules} rules");
            assert!(
                flows * (164 + extra) + CONNLIMIT_KEYS * 20 + 2 * (164 + extra) > 1 << 30,
                "{rules}: not too small"
            );
        }
        assert_eq!(core::mem::size_of::<Counter>(), 20);
        assert_eq!(core::mem::size_of::<Row>(), 12);
    }

    /// Random opens (through the check and confirm), closes and expiries
    /// against a plain model: per address, the set of live counted slots.
    #[test]
    fn counts_follow_a_model_through_opens_closes_and_expiry() {
        let spec = ConnlimitSpec { slot: 0, limit: 3, mask: 0xffff_fff0, dest: false, invert: false };
        let mut c = ConnLimits::with_counters(1, 256, 99, 64);
        let mut model: Vec<Option<(u32, u64)>> = vec![None; 256]; // slot -> (masked addr, expires)
        let mut x = 12345u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for now in 0..20_000u64 {
            let slot = rnd(256) as u32;
            let addr = 0x0a01_0000 | rnd(64) as u32;
            match rnd(3) {
                0 if model[slot as usize].is_none() => {
                    let live = |m: &Vec<Option<(u32, u64)>>| {
                        m.iter().flatten().filter(|(a, e)| *a == addr & spec.mask && *e > now).count() as u32
                    };
                    let want = live(&model) + 1 > spec.limit;
                    c.begin(None, true);
                    assert_eq!(c.check(&spec, &key(addr, CtState::New), now), Some(want), "at {now}");
                    if !want {
                        let expires = now + 1 + rnd(500);
                        c.confirmed(slot, expires);
                        model[slot as usize] = Some((addr & spec.mask, expires));
                    }
                }
                1 => {
                    c.forget(slot);
                    model[slot as usize] = None;
                }
                _ => {}
            }
            // Expired ones conntrack forgets at its own pace.
            if rnd(10) == 0 {
                let s = rnd(256) as usize;
                if model[s].is_some_and(|(_, e)| e <= now) {
                    c.forget(s as u32);
                    model[s] = None;
                }
            }
        }
        // Every counter's list holds exactly its count.
        for (k, counter) in c.counters.iter().enumerate() {
            let mut n = 0;
            let mut node = counter.head;
            while node != NONE {
                assert_eq!(c.row(node, 0).counter as usize, k + 1);
                n += 1;
                node = c.row(node, 0).next;
            }
            assert_eq!(n, counter.count);
        }
    }
}
