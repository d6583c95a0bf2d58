//! The runtime tables of `-m recent` (Linux's `xt_recent`), allocated at
//! boot from what the image's rules ask: one table per `--name`, each of
//! [`RECENT_ENTRIES`] addresses with a ring of `stamps_mask + 1`
//! timestamps (ms). Nothing is allocated per packet; a table is scanned
//! whole (100 entries) per check.

use alloc::vec::Vec;

use super::format::{RecentSpec, RECENT_ENTRIES, RECENT_REMOVE, RECENT_SET, RECENT_UPDATE};
use crate::flow::PacketKey;

/// One remembered address (`struct recent_entry`).
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    live: bool,
    addr: u32,
    ttl: u8,
    /// Where the next timestamp goes (1 after the first; wraps by the mask).
    index: u16,
    /// Timestamps held.
    nstamps: u16,
    /// Least-recently-updated order: the smallest live one is the oldest.
    lru: u64,
}

/// One table (`struct recent_table`).
#[derive(Debug, Clone, Default)]
struct Table {
    mask: u16,
    entries: Vec<Entry>,
    /// `entries.len() * (mask + 1)` timestamps, entry by entry.
    stamps: Vec<u64>,
    /// The next LRU sequence number.
    clock: u64,
}

/// `time_after(a, b)` of Linux on a 64-bit clock: `a` is later than `b`.
fn after(a: u64, b: u64) -> bool {
    (b.wrapping_sub(a) as i64) < 0
}

impl Table {
    fn stamp(&self, e: usize, i: usize) -> u64 {
        let at = e.saturating_mul(usize::from(self.mask) + 1).saturating_add(i);
        self.stamps.get(at).copied().unwrap_or(0)
    }

    fn set_stamp(&mut self, e: usize, i: usize, now: u64) {
        let at = e.saturating_mul(usize::from(self.mask) + 1).saturating_add(i);
        if let Some(s) = self.stamps.get_mut(at) {
            *s = now;
        }
    }

    /// `recent_entry_lookup`: the entry for `addr` (a TTL of 0 on either
    /// side matches any).
    fn find(&self, addr: u32, ttl: u8) -> Option<usize> {
        self.entries.iter().position(|e| e.live && e.addr == addr && (ttl == 0 || e.ttl == 0 || e.ttl == ttl))
    }

    /// The least recently updated entry (the head of Linux's LRU list).
    fn oldest(&self) -> Option<usize> {
        let live = self.entries.iter().enumerate().filter(|(_, e)| e.live);
        live.min_by_key(|(_, e)| e.lru).map(|(n, _)| n)
    }

    fn touch(&mut self, e: usize) {
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        if let Some(x) = self.entries.get_mut(e) {
            x.lru = clock;
        }
    }

    fn remove(&mut self, e: usize) {
        if let Some(x) = self.entries.get_mut(e) {
            x.live = false;
        }
    }

    /// `recent_entry_init`: a new entry stamped `now`, the oldest one
    /// evicted when the table is full.
    fn insert(&mut self, addr: u32, ttl: u8, now: u64) {
        let slot = match self.entries.iter().position(|e| !e.live) {
            Some(free) => free,
            None => match self.oldest() {
                Some(old) => old,
                None => return,
            },
        };
        if let Some(x) = self.entries.get_mut(slot) {
            *x = Entry { live: true, addr, ttl, index: 1, nstamps: 1, lru: 0 };
        }
        self.set_stamp(slot, 0, now);
        self.touch(slot);
    }

    /// `recent_entry_update`: a timestamp into the ring, and the entry
    /// becomes the most recent.
    fn update(&mut self, e: usize, now: u64) {
        let mask = self.mask;
        let Some(x) = self.entries.get_mut(e) else { return };
        x.index &= mask;
        let i = usize::from(x.index);
        x.index = x.index.wrapping_add(1);
        x.nstamps = x.nstamps.max(x.index);
        self.set_stamp(e, i, now);
        self.touch(e);
    }

    /// `recent_entry_reap`: the oldest entry goes if its latest timestamp
    /// is before `time`, unless it is `working` and about to be updated.
    fn reap(&mut self, time: u64, working: usize, updating: bool) {
        let Some(head) = self.oldest() else { return };
        if head == working && updating {
            return;
        }
        let last = self.entries.get(head).map_or(1, |e| e.index).saturating_sub(1);
        if after(time, self.stamp(head, usize::from(last))) {
            self.remove(head);
        }
    }
}

/// The `-m recent` tables of an image (see [`super::Image::recent_tables`]).
#[derive(Debug, Clone, Default)]
pub struct RecentTables {
    tables: Vec<Table>,
}

impl RecentTables {
    /// Tables with the given timestamp masks (by table number), all memory
    /// allocated now.
    pub fn new(masks: &[u16]) -> RecentTables {
        let tables = masks
            .iter()
            .map(|&mask| Table {
                mask,
                entries: alloc::vec![Entry::default(); RECENT_ENTRIES],
                stamps: alloc::vec![0; RECENT_ENTRIES * (usize::from(mask) + 1)],
                clock: 0,
            })
            .collect();
        RecentTables { tables }
    }

    /// Tables allocated.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// `recent_mt` of Linux's `xt_recent.c` at `now` (ms): whether the
    /// match holds for `key`, changing the table as the command says. The
    /// TTL is the one the packet arrived with (Linux adds back the
    /// forwarding decrement in FORWARD and POSTROUTING). Without its table
    /// (a classification without runtime state) `--set` holds and nothing
    /// is remembered.
    pub fn check(&mut self, rc: &RecentSpec, key: &PacketKey, now: u64) -> bool {
        let mut ret = rc.invert;
        let Some(t) = self.tables.get_mut(usize::from(rc.table)) else {
            return ret ^ (rc.cmd == RECENT_SET);
        };
        let addr = if rc.dest { key.dst } else { key.src } & rc.mask;
        // xt_recent uses the TTL as received: a forwarded packet's is one
        // less in FORWARD and POSTROUTING, so one is added back.
        let forwarded = key.in_if != crate::flow::NO_IF && key.out_if != crate::flow::NO_IF;
        let ttl = if forwarded { key.extra.ttl.wrapping_add(1) } else { key.extra.ttl };
        let Some(e) = t.find(addr, if rc.rttl { ttl } else { 0 }) else {
            if rc.cmd == RECENT_SET {
                t.insert(addr, ttl, now);
                return !ret;
            }
            return ret;
        };
        if rc.cmd == RECENT_SET {
            ret = !ret;
        } else if rc.cmd == RECENT_REMOVE {
            t.remove(e);
            return !ret;
        } else {
            let time = now.wrapping_sub(u64::from(rc.seconds).wrapping_mul(1000));
            let nstamps = t.entries.get(e).map_or(0, |x| x.nstamps);
            let mut hits = 0u32;
            for i in 0..usize::from(nstamps) {
                if rc.seconds != 0 && after(time, t.stamp(e, i)) {
                    continue;
                }
                hits = hits.saturating_add(1);
                if rc.hitcount == 0 || hits >= u32::from(rc.hitcount) {
                    ret = !ret;
                    break;
                }
            }
            if rc.reap {
                t.reap(time, e, rc.cmd == RECENT_UPDATE && ret);
            }
        }
        if rc.cmd == RECENT_SET || (rc.cmd == RECENT_UPDATE && ret) {
            t.update(e, now);
            if let Some(x) = t.entries.get_mut(e) {
                x.ttl = ttl;
            }
        }
        ret
    }
}
