//! The runtime tables of `-m hashlimit` (Linux's `xt_hashlimit`, revision
//! 3, packet rates), allocated at boot from what the image's rules ask:
//! one table per `--hashlimit-name`, each with room for its `max` entries
//! and a power-of-two bucket array at least that long. Nothing is
//! allocated per packet and a packet costs O(1): a hash lookup, and the
//! garbage collection is done lazily from the least recently used end.
//!
//! Linux's garbage collection runs every `gc_interval` ms and frees the
//! entries whose `expires` (last packet + `expire`) has come. Here it is
//! modelled as running exactly at `start + k * gc_interval` (the tables'
//! creation at boot): before each packet the entries that such a run
//! would have freed by now are freed, oldest first. An entry's expiry is
//! its last packet plus the table's `expire`, the same for every entry,
//! so the oldest entry is the first to expire and the list in last-packet
//! order is an expiry queue.

use alloc::vec::Vec;

use super::format::{HashlimitSpec, HASHLIMIT_CREDITS_PER_JIFFY, HL_DIP, HL_DPT, HL_SIP, HL_SPT, MAX_HASHLIMIT_TOTAL};
use crate::flow::PacketKey;

/// No entry (list ends).
const NIL: u32 = u32::MAX;

/// One tracked source/destination (`struct dsthash_ent`).
#[derive(Debug, Clone, Copy)]
struct Entry {
    src: u32,
    dst: u32,
    /// Source port << 16 | destination port.
    ports: u32,
    credit: u64,
    /// The last packet (ms): `rateinfo.prev`, and `expires - expire`.
    prev: u64,
    /// Next in the bucket's chain (or in the free list).
    next: u32,
    /// Neighbours in last-packet order (`older` towards the oldest).
    older: u32,
    newer: u32,
}

const EMPTY: Entry = Entry { src: 0, dst: 0, ports: 0, credit: 0, prev: 0, next: NIL, older: NIL, newer: NIL };

/// One table (`struct xt_hashlimit_htable`): its configuration is that of
/// the first rule naming it.
#[derive(Debug, Clone)]
struct Table {
    cfg: HashlimitSpec,
    buckets: Vec<u32>,
    entries: Vec<Entry>,
    free: u32,
    count: u32,
    oldest: u32,
    newest: u32,
}

/// `maskl` of `xt_hashlimit.c` on a host-order address.
fn maskl(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len.min(32))))
    }
}

impl Table {
    fn new(cfg: HashlimitSpec) -> Table {
        let max = cfg.max.max(1);
        let buckets = max.next_power_of_two() as usize;
        let mut entries = alloc::vec![EMPTY; max as usize];
        for (i, e) in entries.iter_mut().enumerate() {
            e.next = if i + 1 < max as usize { i as u32 + 1 } else { NIL };
        }
        Table { cfg, buckets: alloc::vec![NIL; buckets], entries, free: 0, count: 0, oldest: NIL, newest: NIL }
    }

    fn get(&self, i: u32) -> Entry {
        self.entries.get(i as usize).copied().unwrap_or(EMPTY)
    }

    fn edit(&mut self, i: u32, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.entries.get_mut(i as usize) {
            f(e);
        }
    }

    fn bucket(&self, seed: u64, src: u32, dst: u32, ports: u32) -> usize {
        let mut h = seed ^ (u64::from(src) << 32 | u64::from(dst));
        h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= u64::from(ports).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        (h as usize) & self.buckets.len().saturating_sub(1)
    }

    /// Takes `i` out of the last-packet list.
    fn unlink_age(&mut self, i: u32) {
        let e = self.get(i);
        if e.older == NIL {
            self.oldest = e.newer;
        } else {
            self.edit(e.older, |o| o.newer = e.newer);
        }
        if e.newer == NIL {
            self.newest = e.older;
        } else {
            self.edit(e.newer, |n| n.older = e.older);
        }
    }

    /// Puts `i` at the newest end of the last-packet list.
    fn push_newest(&mut self, i: u32) {
        let newest = self.newest;
        self.edit(i, |e| {
            e.older = newest;
            e.newer = NIL;
        });
        if newest == NIL {
            self.oldest = i;
        } else {
            self.edit(newest, |n| n.newer = i);
        }
        self.newest = i;
    }

    /// `dsthash_free`: out of its bucket and the list, onto the free list.
    fn free(&mut self, seed: u64, i: u32) {
        let e = self.get(i);
        let b = self.bucket(seed, e.src, e.dst, e.ports);
        let mut at = self.buckets.get(b).copied().unwrap_or(NIL);
        if at == i {
            if let Some(head) = self.buckets.get_mut(b) {
                *head = e.next;
            }
        } else {
            // The chain is walked to the entry's predecessor: chains are
            // short (at most `max` entries in at least `max` buckets).
            while at != NIL {
                let next = self.get(at).next;
                if next == i {
                    self.edit(at, |p| p.next = e.next);
                    break;
                }
                at = next;
            }
        }
        self.unlink_age(i);
        let free = self.free;
        self.edit(i, |x| *x = Entry { next: free, ..EMPTY });
        self.free = i;
        self.count = self.count.saturating_sub(1);
    }

    /// The garbage collection runs up to `now` (see the module comment):
    /// frees the entries whose expiry came at or before the last run.
    fn collect(&mut self, seed: u64, start: u64, now: u64) {
        let gc = u64::from(self.cfg.gc_interval.max(1));
        let runs = now.saturating_sub(start) / gc;
        if runs == 0 {
            return;
        }
        let last_run = start.saturating_add(runs.saturating_mul(gc));
        let expire = u64::from(self.cfg.expire);
        while self.oldest != NIL {
            let old = self.oldest;
            if self.get(old).prev.saturating_add(expire) > last_run {
                break;
            }
            self.free(seed, old);
        }
    }

    /// `hashlimit_mt_common` for a packet rate: `Some(holds)`, or `None`
    /// when the entry is new and the table is full (Linux drops the packet:
    /// `hotdrop`).
    fn check(&mut self, seed: u64, start: u64, key: &PacketKey, invert: bool, now: u64) -> Option<bool> {
        self.collect(seed, start, now);
        let cfg = self.cfg;
        let src = if cfg.mode & HL_SIP != 0 { maskl(key.src, cfg.srcmask) } else { 0 };
        let dst = if cfg.mode & HL_DIP != 0 { maskl(key.dst, cfg.dstmask) } else { 0 };
        // Ports as `proto_ports_offset` finds them: unifw's key has the
        // TCP and UDP ones (0 for other protocols).
        let sport = if cfg.mode & HL_SPT != 0 { u32::from(key.src_port) } else { 0 };
        let dport = if cfg.mode & HL_DPT != 0 { u32::from(key.dst_port) } else { 0 };
        let ports = sport << 16 | dport;
        let b = self.bucket(seed, src, dst, ports);
        let mut at = self.buckets.get(b).copied().unwrap_or(NIL);
        while at != NIL {
            let e = self.get(at);
            if e.src == src && e.dst == dst && e.ports == ports {
                break;
            }
            at = e.next;
        }
        let cap = cfg.cap();
        if at == NIL {
            // `dsthash_alloc_init`: a full table is a hot drop.
            if self.count >= cfg.max || self.free == NIL {
                return None;
            }
            at = self.free;
            let head = self.buckets.get(b).copied().unwrap_or(NIL);
            self.free = self.get(at).next;
            // `rateinfo_init`: full credit, last packet now.
            self.edit(at, |e| *e = Entry { src, dst, ports, credit: cap, prev: now, next: head, ..EMPTY });
            if let Some(h) = self.buckets.get_mut(b) {
                *h = at;
            }
            self.count += 1;
        } else {
            // `rateinfo_recalc`: one credit step per jiffy (ms) passed,
            // wrapping as Linux's u64 does, capped.
            self.unlink_age(at);
            self.edit(at, |e| {
                let delta = now.wrapping_sub(e.prev);
                if delta != 0 {
                    e.prev = now;
                    e.credit = e.credit.wrapping_add(delta.wrapping_mul(HASHLIMIT_CREDITS_PER_JIFFY));
                    if e.credit > cap {
                        e.credit = cap;
                    }
                }
            });
        }
        self.push_newest(at);
        let cost = cfg.cost();
        let mut under = false;
        self.edit(at, |e| {
            if e.credit >= cost {
                e.credit -= cost;
                under = true;
            }
        });
        Some(under != invert)
    }
}

/// The `-m hashlimit` tables of an image (see
/// [`super::Image::hashlimit_tables`]).
#[derive(Debug, Clone, Default)]
pub struct HashlimitTables {
    tables: Vec<Table>,
    seed: u64,
    /// When the tables were made (ms): the garbage collection's phase.
    start: u64,
    /// Packets dropped because their table was full (Linux's hot drop).
    pub full_drops: u64,
}

impl HashlimitTables {
    /// Tables with the given configurations (by table number), all memory
    /// allocated now; `seed` keys the hash, `now` (ms) starts the
    /// garbage-collection clock. Configurations past
    /// [`MAX_HASHLIMIT_TOTAL`] entries in all (a hand-made image) get no
    /// table: their rules hold as under the limit.
    pub fn new(configs: &[HashlimitSpec], seed: u64, now: u64) -> HashlimitTables {
        let mut total = 0u32;
        let mut tables = Vec::new();
        for cfg in configs {
            total = total.saturating_add(cfg.max);
            if total > MAX_HASHLIMIT_TOTAL {
                break;
            }
            tables.push(Table::new(*cfg));
        }
        HashlimitTables { tables, seed, start: now, full_drops: 0 }
    }

    /// Tables allocated.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Entries table `t` holds now (after the garbage collection up to `now`).
    pub fn entries(&mut self, t: usize, now: u64) -> u32 {
        let (seed, start) = (self.seed, self.start);
        self.tables.get_mut(t).map_or(0, |x| {
            x.collect(seed, start, now);
            x.count
        })
    }

    /// Whether `spec` holds for `key` at `now` (ms): `Some(holds)`, or
    /// `None` when the packet is to be dropped (its table is full; counted
    /// in [`HashlimitTables::full_drops`]). Without its table the match
    /// holds as under the limit.
    pub fn check(&mut self, spec: &HashlimitSpec, key: &PacketKey, now: u64) -> Option<bool> {
        let (seed, start) = (self.seed, self.start);
        let Some(t) = self.tables.get_mut(usize::from(spec.table)) else { return Some(!spec.invert) };
        let r = t.check(seed, start, key, spec.invert, now);
        if r.is_none() {
            self.full_drops = self.full_drops.wrapping_add(1);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::format::{hashlimit_user2credits, HASHLIMIT_SCALE};

    fn spec(avg: u64, burst: u32, expire: u32, max: u32) -> HashlimitSpec {
        HashlimitSpec {
            mode: HL_SIP,
            srcmask: 32,
            dstmask: 32,
            avg,
            burst,
            expire,
            gc_interval: 1000,
            max,
            ..Default::default()
        }
    }

    fn from(src: u32) -> PacketKey {
        PacketKey {
            proto: 1,
            src,
            dst: 0x0a02_0002,
            src_port: 0,
            dst_port: 0,
            icmp_type: 8,
            icmp_code: 0,
            in_if: 0,
            out_if: crate::flow::NO_IF,
            state: crate::flow::CtState::New,
            extra: Default::default(),
        }
    }

    #[test]
    fn credits_are_linux_values() {
        // HZ 1000: CREDITS_PER_JIFFY = 2^37; user2credits(x) = x * 137438953.
        assert_eq!(hashlimit_user2credits(1), 137_438_953);
        let avg = HASHLIMIT_SCALE * 60; // 1/minute
        assert_eq!(spec(avg, 10, 60_000, 8).cost(), 8_246_337_180_000_000);
        assert_eq!(spec(avg, 10, 60_000, 8).cap(), 82_463_371_800_000_000);
        // 1/day with burst 1000 wraps (iptables and the kernel accept it).
        let day = spec(HASHLIMIT_SCALE * 86_400, 1000, 1000, 8);
        assert_eq!(day.cap(), (86_400_000_000u64 * 1000).wrapping_mul(137_438_953));
    }

    #[test]
    fn burst_then_rate_per_source() {
        // 1/s, burst 3, per source: three pass, the fourth waits a second.
        let s = spec(HASHLIMIT_SCALE, 3, 10_000, 8);
        let mut t = HashlimitTables::new(&[s], 7, 0);
        let got: Vec<bool> = (0..4).map(|_| t.check(&s, &from(1), 100).unwrap_or(false)).collect();
        assert_eq!(got, [true, true, true, false]);
        assert_eq!(t.check(&s, &from(2), 100), Some(true), "another source has its own bucket");
        assert_eq!(t.check(&s, &from(1), 1099), Some(false));
        assert_eq!(t.check(&s, &from(1), 1100), Some(true), "1000 jiffies x 2^37 >= cost");
        let above = HashlimitSpec { invert: true, ..s };
        assert_eq!(t.check(&above, &from(1), 1100), Some(true), "over the limit: --hashlimit-above holds");
    }

    #[test]
    fn full_table_drops_until_collected() {
        let s = spec(HASHLIMIT_SCALE, 1, 1500, 2);
        let mut t = HashlimitTables::new(&[s], 1, 0);
        assert_eq!(t.check(&s, &from(1), 0), Some(true));
        assert_eq!(t.check(&s, &from(2), 10), Some(true));
        assert_eq!(t.check(&s, &from(3), 20), None, "third source: table full, hot drop");
        assert_eq!(t.full_drops, 1);
        assert_eq!(t.check(&s, &from(1), 1400), Some(true), "known entries still work");
        // Source 2 expires at 1510; the collection at 2000 frees it, not the one at 1000.
        assert_eq!(t.check(&s, &from(3), 1999), None);
        assert_eq!(t.entries(0, 1999), 2);
        assert_eq!(t.check(&s, &from(3), 2000), Some(true));
        assert_eq!(t.entries(0, 2000), 2);
        assert_eq!(t.full_drops, 2);
    }

    #[test]
    fn expired_entries_start_full_again() {
        // 1/minute, burst 1, expire 1 s: after the collection frees it,
        // the entry comes back with its whole burst.
        let s = spec(HASHLIMIT_SCALE * 60, 1, 1000, 8);
        let mut t = HashlimitTables::new(&[s], 3, 0);
        assert_eq!(t.check(&s, &from(9), 500), Some(true));
        assert_eq!(t.check(&s, &from(9), 1400), Some(false), "refreshed at 500 + 1000 > the run at 1000");
        assert_eq!(t.check(&s, &from(9), 2399), Some(false), "expires 2400: the run at 2000 keeps it");
        assert_eq!(t.entries(0, 3999), 1, "expires 3399: the run at 3000 keeps it");
        assert_eq!(t.check(&s, &from(9), 4000), Some(true), "freed by the run at 4000: full again");
    }

    #[test]
    fn masks_group_sources() {
        let s = HashlimitSpec { srcmask: 24, ..spec(HASHLIMIT_SCALE, 1, 10_000, 8) };
        let mut t = HashlimitTables::new(&[s], 5, 0);
        assert_eq!(t.check(&s, &from(0x0a01_0002), 0), Some(true));
        assert_eq!(t.check(&s, &from(0x0a01_00fe), 0), Some(false), "same /24");
        assert_eq!(t.check(&s, &from(0x0a01_0102), 0), Some(true), "another /24");
    }
}
