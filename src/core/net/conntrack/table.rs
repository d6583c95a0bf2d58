//! The bounded connection table: lookups, classification, confirmation,
//! early drop when full, and lazy plus incremental expiry.
//!
//! Memory: entries live in a slab of `capacity` slots allocated once; the
//! `hashbrown` index maps a `FlowKey` to a slot. The index is created with
//! room for twice the capacity and never holds more than `capacity` keys,
//! so when deletions leave tombstones hashbrown rehashes in place (it does
//! so while items <= half its capacity) instead of allocating.

use alloc::vec::Vec;
use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap};

use super::key::{FlowKey, Side};
use super::nat::{direction, error_rewrites, status, FlowNat};
use super::tcp::{Direction, TcpConn, TcpState, TcpUpdate};
use super::timeouts;
use super::tuples::Conn;
use crate::flow::{proto, CtState};
use crate::net::nat::Rewrite;
use crate::net::parse::{Ipv4Meta, Quoted, L4};

/// How many slots a full table scans for an entry to evict (Linux scans
/// up to 8 entries of one hash chain; a slab scan is cheaper per entry).
pub const EARLY_DROP_SCAN: usize = 32;

/// Hashes flow keys with a per-boot secret, so that remote hosts cannot
/// aim many flows at one probe sequence (`foldhash` alone has a fixed seed
/// on `no_std`).
#[derive(Clone, Default)]
pub struct SeededHasher {
    seed: u64,
    inner: DefaultHashBuilder,
}

impl BuildHasher for SeededHasher {
    type Hasher = <DefaultHashBuilder as BuildHasher>::Hasher;

    fn build_hasher(&self) -> Self::Hasher {
        use core::hash::Hasher;
        let mut hasher = self.inner.build_hasher();
        hasher.write_u64(self.seed);
        hasher
    }
}

/// Per-protocol state of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp(TcpConn),
    Udp,
    Icmp,
    Other,
}

/// One tracked connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub(super) key: FlowKey,
    /// Which side of `key` opened the connection.
    pub(super) original_side: Side,
    seen_reply: bool,
    /// Never evicted early (TCP established, or any other flow with a reply).
    assured: bool,
    expires_ms: u64,
    proto: Proto,
}

impl Flow {
    fn timeout_ms(&self) -> u64 {
        match self.proto {
            Proto::Tcp(conn) => conn.state().timeout_ms(),
            Proto::Udp if self.seen_reply => timeouts::UDP_REPLIED_MS,
            Proto::Udp => timeouts::UDP_UNREPLIED_MS,
            Proto::Icmp => timeouts::ICMP_MS,
            Proto::Other => timeouts::GENERIC_MS,
        }
    }
}

/// The outcome of `ConnTrack::track`: the packet's state and, for a new
/// flow, the entry to insert once the rules accept the packet (Linux's
/// unconfirmed conntrack, confirmed at POSTROUTING).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    /// The state rules match on.
    pub state: CtState,
    pub(super) new_flow: Option<Flow>,
    /// The translation `ConnTrack::translate` gave the new flow.
    pub(super) new_nat: Option<FlowNat>,
    /// How NAT rewrites this packet (of a translated flow), if it does.
    pub(super) rewrite: Option<Rewrite>,
    /// For an ICMP error about a translated flow: its outer and quoted
    /// packets' rewrites.
    pub(super) error_rewrite: Option<(Rewrite, Rewrite)>,
    /// The NAT status of the packet's (or the quoted packet's) connection.
    pub(super) status: u8,
    /// The tuples of the packet's (or the quoted packet's) connection.
    pub(super) conn: Option<super::tuples::Conn>,
}

impl Tracked {
    pub(crate) fn of(state: CtState) -> Tracked {
        Tracked { state, new_flow: None, new_nat: None, rewrite: None, error_rewrite: None, status: 0, conn: None }
    }

    /// How NAT rewrites this packet: the translation of its flow in its
    /// direction, or the one just given to a new flow (`ConnTrack::translate`).
    pub fn rewrite(&self) -> Option<Rewrite> {
        self.rewrite.or_else(|| self.new_nat.map(|n| n.original))
    }

    /// For an ICMP error about a translated flow: how its outer header and
    /// its quoted packet are rewritten.
    pub fn error_rewrite(&self) -> Option<(Rewrite, Rewrite)> {
        self.error_rewrite
    }

    /// The NAT status bits of the packet's connection as `--ctstate SNAT`
    /// and `DNAT` read them ([`crate::flow::CT_SNAT`], [`crate::flow::CT_DNAT`]):
    /// a new flow has those of the translations given so far.
    pub fn nat_status(&self) -> u8 {
        let new = match (self.new_flow, self.new_nat) {
            (Some(flow), Some(nat)) => status(&flow, nat),
            _ => 0,
        };
        self.status | new
    }

    /// Marks the new flow's source translation as MASQUERADE's: flushed
    /// when the interface's address changes ([`ConnTrack::forget_masqueraded`]).
    pub fn set_masquerade(&mut self) {
        if let Some(nat) = self.new_nat.as_mut() {
            nat.masquerade = true;
        }
    }

    /// The tuples `-m conntrack --ctorig*/--ctrepl*/--ctdir` read: the
    /// connection's original and reply tuples (a new flow's reply tuple
    /// has the translations given so far) and the packet's direction.
    pub fn ct_tuples(&self) -> Option<crate::image::format::ct_tuple::CtTuples> {
        self.conn.map(|c| c.tuples(self.new_nat))
    }

    /// Whether this packet would open a new flow.
    pub fn is_new_flow(&self) -> bool {
        self.new_flow.is_some()
    }
}

/// The most flows `conntrack max` may ask for (16 times the default): at
/// [`bytes_per_flow`] each (164 bytes on x86_64) some 164 MiB, the largest
/// connection table the build accepts. At boot the table still shrinks to
/// what the guest's memory holds ([`ConnTrack::within`]).
pub const MAX_CONNTRACK: u32 = 1 << 20;

/// The fewest flows a table shrinks to while the budget allows more.
pub const MIN_FLOWS: usize = 1024;

/// Bytes one flow of capacity costs: its slot, its free-list entry, and
/// the index's share (twice the capacity in buckets, rounded up to a power
/// of two by hashbrown after its 7/8 load factor: up to 4.6 buckets).
pub const fn bytes_per_flow() -> usize {
    bytes_per_flow_with(1)
}

/// [`bytes_per_flow`] for a table whose flows may each hold `keys` index
/// keys (2 when NAT is configured: original and reply tuple).
pub const fn bytes_per_flow_with(keys: usize) -> usize {
    let slot = core::mem::size_of::<Option<Flow>>() + core::mem::size_of::<u32>();
    let bucket = core::mem::size_of::<(FlowKey, u32)>() + 1;
    slot + keys * bucket * 46 / 10
}

/// The connection table is full and no entry could be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// A bounded connection-tracking table.
pub struct ConnTrack {
    /// Flow keys to slots: one key per flow, two for a translated flow
    /// (its original and its reply tuple).
    pub(super) index: HashMap<FlowKey, u32, SeededHasher>,
    /// Flow slots; allocated for `capacity` at start but filled only as
    /// flows arrive, so boot does not pay for clearing the whole table.
    pub(super) slots: Vec<Option<Flow>>,
    capacity: usize,
    /// Index keys a flow may hold: 2 in a table built for NAT, else 1.
    pub(super) keys_per_flow: usize,
    /// Translations by slot, beside `slots` so that a table without NAT
    /// does not pay for them (empty unless built for NAT).
    pub(super) nats: Vec<Option<FlowNat>>,
    free: Vec<u32>,
    sweep_cursor: usize,
    evict_cursor: usize,
    early_drops: u64,
    /// Flows with a translation now.
    pub(super) translations: usize,
    /// The `-m connlimit` counts, kept in step with the flows
    /// ([`ConnTrack::set_connlimit`]; empty by default).
    connlimit: crate::image::ConnLimits,
}

impl ConnTrack {
    /// A table for at most `capacity` flows (at least 1), hashing with
    /// `hash_seed`. Panics if the allocator fails: the host and tests only;
    /// boot uses [`ConnTrack::within`].
    pub fn new(capacity: usize, hash_seed: u64) -> ConnTrack {
        Self::new_with(capacity, hash_seed, 1)
    }

    /// [`ConnTrack::new`] for a table whose flows may be translated (two
    /// index keys each): the index gets room for both.
    pub fn new_for_nat(capacity: usize, hash_seed: u64) -> ConnTrack {
        Self::new_with(capacity, hash_seed, 2)
    }

    fn new_with(capacity: usize, hash_seed: u64, keys_per_flow: usize) -> ConnTrack {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        let hasher = SeededHasher { seed: hash_seed, inner: DefaultHashBuilder::default() };
        ConnTrack {
            index: HashMap::with_capacity_and_hasher(capacity.saturating_mul(2 * keys_per_flow), hasher),
            slots: Vec::with_capacity(capacity),
            capacity,
            keys_per_flow,
            nats: Vec::with_capacity(if keys_per_flow > 1 { capacity } else { 0 }),
            free: Vec::with_capacity(capacity),
            sweep_cursor: 0,
            evict_cursor: 0,
            early_drops: 0,
            translations: 0,
            connlimit: Default::default(),
        }
    }

    /// A table for `capacity` flows, or fewer: as many as `budget` bytes
    /// hold ([`bytes_per_flow`]), halved again while the allocator refuses
    /// (fallible allocation: never a panic), down to [`MIN_FLOWS`] or even
    /// 1 when memory is that short. [`ConnTrack::capacity`] says what was
    /// granted.
    pub fn within(capacity: usize, hash_seed: u64, budget: usize) -> ConnTrack {
        Self::within_with(capacity, hash_seed, budget, false)
    }

    /// [`ConnTrack::within`], for a table built for NAT when `nat`
    /// ([`ConnTrack::new_for_nat`]; [`bytes_per_flow_with`] 2 keys).
    pub fn within_with(capacity: usize, hash_seed: u64, budget: usize, nat: bool) -> ConnTrack {
        let keys = if nat { 2 } else { 1 };
        let wanted = capacity.clamp(1, u32::MAX as usize);
        let mut granted = wanted.min(budget / bytes_per_flow_with(keys)).max(MIN_FLOWS.min(wanted));
        loop {
            if let Some(table) = Self::try_new(granted, hash_seed, keys) {
                return table;
            }
            if granted == 1 {
                // Not even one flow: an empty table that tracks nothing.
                return Self::try_new(0, hash_seed, keys).unwrap_or_else(|| Self::new_with(1, hash_seed, keys));
            }
            granted /= 2;
        }
    }

    fn try_new(capacity: usize, hash_seed: u64, keys_per_flow: usize) -> Option<ConnTrack> {
        let hasher = SeededHasher { seed: hash_seed, inner: DefaultHashBuilder::default() };
        let mut index = HashMap::with_hasher(hasher);
        index.try_reserve(capacity.saturating_mul(2 * keys_per_flow)).ok()?;
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity).ok()?;
        let mut free = Vec::new();
        free.try_reserve_exact(capacity).ok()?;
        let mut nats = Vec::new();
        nats.try_reserve_exact(if keys_per_flow > 1 { capacity } else { 0 }).ok()?;
        Some(ConnTrack {
            index,
            slots,
            capacity,
            keys_per_flow,
            nats,
            free,
            sweep_cursor: 0,
            evict_cursor: 0,
            early_drops: 0,
            translations: 0,
            connlimit: Default::default(),
        })
    }

    /// Number of tracked flows (a translated flow has two index keys but
    /// counts once).
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Maximum number of flows.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes allocated by the index (constant over the table's life).
    pub fn index_allocation(&self) -> usize {
        self.index.allocation_size()
    }

    /// Flows with an address translation now.
    pub fn translations(&self) -> usize {
        self.translations
    }

    /// Whether the table keeps reply keys for translated flows
    /// ([`ConnTrack::new_for_nat`]).
    pub fn translates(&self) -> bool {
        self.keys_per_flow > 1
    }

    /// Forgets the masqueraded flows whose translated source is `addr`, an
    /// address the firewall no longer has (a DHCP lease changed), as
    /// Linux's masquerade does when an interface loses its address: their
    /// packets would leave from an address nobody answers. Returns how
    /// many. Scans the table (only on an address change).
    pub fn forget_masqueraded(&mut self, addr: u32) -> usize {
        let mut gone = 0;
        for slot in 0..self.nats.len() {
            let stale =
                self.nats.get(slot).copied().flatten().is_some_and(|n| n.masquerade && n.original.src.addr == addr);
            if stale {
                self.remove(slot as u32);
                gone += 1;
            }
        }
        gone
    }

    /// Counts connections for `rules` `-m connlimit` rules from now on,
    /// with `counters` (rule, address) counters (memory for every slot of
    /// the table reserved now; see [`crate::image::ConnLimits`]).
    pub fn set_connlimit(&mut self, rules: usize, counters: usize) {
        let seed = self.index.hasher().seed.rotate_left(17) ^ 0x636f_6e6e_6c69_6d69;
        self.connlimit = crate::image::ConnLimits::with_counters(rules, self.capacity, seed, counters);
    }

    /// The `-m connlimit` counts.
    pub fn connlimit(&self) -> &crate::image::ConnLimits {
        &self.connlimit
    }

    /// The `-m connlimit` counts, for a lookup.
    pub fn connlimit_mut(&mut self) -> &mut crate::image::ConnLimits {
        &mut self.connlimit
    }

    /// A packet the tracker does not see (NOTRACK): no connection to count.
    pub fn untracked(&mut self) {
        self.connlimit.begin(None, false);
    }

    /// Entries evicted early so far.
    pub fn early_drops(&self) -> u64 {
        self.early_drops
    }

    /// The TCP state of the flow `meta` belongs to, if tracked (for tests and diagnostics).
    pub fn tcp_state(&self, meta: &Ipv4Meta, now_ms: u64) -> Option<TcpState> {
        let (key, _) = FlowKey::of(meta.proto, meta.src, meta.dst, meta.l4.transport());
        let flow = self.live(&key, now_ms)?;
        match flow.proto {
            Proto::Tcp(conn) => Some(conn.state()),
            _ => None,
        }
    }

    /// Classifies `meta` and updates the state of its flow if it has one. A
    /// would-be new flow is returned in `Tracked` for `confirm`.
    pub fn track(&mut self, meta: &Ipv4Meta, now_ms: u64) -> Tracked {
        match meta.l4 {
            L4::IcmpError { quoted, .. } => {
                self.connlimit.begin(None, false);
                self.related(meta, quoted, now_ms)
            }
            L4::IcmpOther { .. } | L4::LaterFragment => {
                self.connlimit.begin(None, false);
                Tracked::of(CtState::Invalid)
            }
            _ => {
                let (key, side) = FlowKey::of(meta.proto, meta.src, meta.dst, meta.l4.transport());
                let (tracked, slot) = match self.lookup(&key, now_ms) {
                    Some(slot) => (self.update(slot, (key, side), meta, now_ms), Some(slot)),
                    None => (new_flow(key, side, meta, now_ms), None),
                };
                // `-m connlimit` counts this packet's connection: a live
                // one not closed, or the new one once confirmed.
                let fresh = tracked.new_flow.is_some();
                let countable = slot.filter(|&s| !fresh && self.counts(s));
                self.connlimit.begin(countable, fresh);
                tracked
            }
        }
    }

    /// Whether the flow in `slot` may be counted by `-m connlimit`: it is
    /// there and, for TCP, not closed (`nf_conncount`'s `already_closed`).
    fn counts(&self, slot: u32) -> bool {
        match self.slots.get(slot as usize) {
            Some(Some(flow)) => !matches!(flow.proto, Proto::Tcp(c) if closed(c.state())),
            _ => false,
        }
    }

    /// Inserts the new flow of an accepted packet (no-op for packets of
    /// existing flows). When full, evicts an unassured or expired entry.
    pub fn confirm(&mut self, tracked: &Tracked, now_ms: u64) -> Result<(), TableFull> {
        let Some(flow) = tracked.new_flow else {
            return Ok(());
        };
        if self.lookup(&flow.key, now_ms).is_some() {
            // Confirmed twice (or raced by the other direction): keep the first.
            return Ok(());
        }
        let nat = tracked.new_nat.filter(|_| self.keys_per_flow > 1);
        let reply_key = nat.map(|n| n.reply_key);
        if reply_key.is_some_and(|key| self.lookup(&key, now_ms).is_some()) {
            // `translate` chose a free reply tuple; taken since: refuse
            // rather than let two flows share it.
            return Err(TableFull);
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            // Within the reserved capacity: no reallocation.
            None if self.slots.len() < self.capacity => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
            None => self.evict(now_ms).ok_or(TableFull)?,
        };
        if let Some(entry) = self.slots.get_mut(slot as usize) {
            *entry = Some(flow);
            self.index.insert(flow.key, slot);
            if let Some(key) = reply_key {
                self.index.insert(key, slot);
            }
            self.set_nat(slot, nat);
            self.connlimit.confirmed(slot, flow.expires_ms);
        }
        Ok(())
    }

    /// Frees up to `budget` expired entries, resuming where the last sweep stopped.
    pub fn sweep(&mut self, now_ms: u64, budget: usize) {
        let len = self.slots.len();
        for _ in 0..budget.min(len) {
            let slot = self.sweep_cursor;
            // No division per frame (a helper call under TCG).
            self.sweep_cursor = if slot + 1 >= len { 0 } else { slot + 1 };
            if matches!(self.slots.get(slot), Some(Some(flow)) if flow.expires_ms <= now_ms) {
                self.remove(slot as u32);
            }
        }
    }

    /// The slot of the live flow `key`, removing it if it has expired.
    fn lookup(&mut self, key: &FlowKey, now_ms: u64) -> Option<u32> {
        let slot = *self.index.get(key)?;
        match self.slots.get(slot as usize) {
            Some(Some(flow)) if flow.expires_ms > now_ms => Some(slot),
            _ => {
                self.remove(slot);
                None
            }
        }
    }

    pub(super) fn live(&self, key: &FlowKey, now_ms: u64) -> Option<&Flow> {
        let slot = *self.index.get(key)?;
        self.slots.get(slot as usize)?.as_ref().filter(|f| f.expires_ms > now_ms)
    }

    fn remove(&mut self, slot: u32) {
        if let Some(entry) = self.slots.get_mut(slot as usize) {
            if let Some(flow) = entry.take() {
                self.connlimit.forget(slot);
                self.index.remove(&flow.key);
                if let Some(nat) = self.nats.get_mut(slot as usize).and_then(Option::take) {
                    self.index.remove(&nat.reply_key);
                    self.translations = self.translations.saturating_sub(1);
                }
                self.free.push(slot);
            }
        }
    }

    /// Linux's early_drop: scans up to `EARLY_DROP_SCAN` slots for an
    /// expired or unassured entry, frees it and returns its slot.
    fn evict(&mut self, now_ms: u64) -> Option<u32> {
        let len = self.slots.len();
        for _ in 0..EARLY_DROP_SCAN.min(len) {
            let slot = self.evict_cursor;
            self.evict_cursor = (slot + 1) % len;
            let evictable = match self.slots.get(slot) {
                Some(Some(flow)) => flow.expires_ms <= now_ms || !flow.assured,
                _ => false,
            };
            if evictable {
                self.remove(slot as u32);
                self.early_drops += 1;
                return self.free.pop();
            }
        }
        None
    }

    fn update(&mut self, slot: u32, (key, side): (FlowKey, Side), meta: &Ipv4Meta, now_ms: u64) -> Tracked {
        let nat = self.nat_of(slot);
        let Some(Some(flow)) = self.slots.get_mut(slot as usize) else {
            return Tracked::of(CtState::Invalid);
        };
        let nat_status = nat.map_or(0, |n| status(flow, n));
        let Some((dir, rewrite)) = direction(flow, nat, key, side) else {
            return Tracked::of(CtState::Invalid);
        };
        if let (Proto::Tcp(conn), L4::Tcp { segment, .. }) = (&mut flow.proto, &meta.l4) {
            match conn.update(dir, segment) {
                TcpUpdate::Invalid => return Tracked::of(CtState::Invalid),
                TcpUpdate::Ignored => {
                    let tuples = Some(Conn::of(flow, nat, dir == Direction::Reply));
                    return Tracked {
                        rewrite,
                        status: nat_status,
                        conn: tuples,
                        ..Tracked::of(packet_state(flow, dir))
                    };
                }
                TcpUpdate::Reopen => {
                    self.remove(slot);
                    let (key, side) = FlowKey::of(meta.proto, meta.src, meta.dst, meta.l4.transport());
                    return new_flow(key, side, meta, now_ms);
                }
                TcpUpdate::Accepted => {
                    flow.assured |= conn.state() == TcpState::Established;
                    if closed(conn.state()) {
                        // Closed: no longer counted by `-m connlimit`.
                        self.connlimit.forget(slot);
                    }
                }
            }
        } else if dir == Direction::Reply && !matches!(flow.proto, Proto::Icmp) {
            flow.assured = true;
        }
        if dir == Direction::Reply {
            flow.seen_reply = true;
        }
        flow.expires_ms = now_ms.saturating_add(flow.timeout_ms());
        self.connlimit.expires(slot, flow.expires_ms);
        let conn = Some(Conn::of(flow, nat, dir == Direction::Reply));
        Tracked { rewrite, status: nat_status, conn, ..Tracked::of(packet_state(flow, dir)) }
    }

    /// RELATED when the quoted packet belongs to a live flow and the error
    /// travels back towards the quoted packet's sender; else INVALID. An
    /// error about a translated flow also gets its rewrites (`nat.rs`).
    fn related(&self, meta: &Ipv4Meta, quoted: Option<Quoted>, now_ms: u64) -> Tracked {
        let Some(quoted) = quoted else {
            return Tracked::of(CtState::Invalid);
        };
        let (key, side) = FlowKey::of(quoted.proto, quoted.src, quoted.dst, quoted.transport);
        let slot = self.index.get(&key).copied().unwrap_or(u32::MAX);
        match self.live(&key, now_ms) {
            Some(flow) if quoted.src == meta.dst => {
                let nat = self.nat_of(slot);
                let error_rewrite = nat.and_then(|nat| error_rewrites(flow, nat, (key, side), meta));
                let status = nat.map_or(0, |n| status(flow, n));
                let conn = Some(Conn::of(flow, nat, super::tuples::error_is_reply(flow, nat, key, side)));
                Tracked { error_rewrite, status, conn, ..Tracked::of(CtState::Related) }
            }
            _ => Tracked::of(CtState::Invalid),
        }
    }
}

/// `already_closed` of Linux's `nf_conncount.c`: a TCP connection in
/// TIME_WAIT or CLOSE is no longer counted.
fn closed(state: TcpState) -> bool {
    matches!(state, TcpState::TimeWait | TcpState::Close)
}

/// Linux's ctinfo: packets of a flow that has seen a reply, and replies
/// themselves, are ESTABLISHED; more packets from the originator before
/// any reply are still NEW.
fn packet_state(flow: &Flow, dir: Direction) -> CtState {
    if flow.seen_reply || dir == Direction::Reply {
        CtState::Established
    } else {
        CtState::New
    }
}

/// The state of a packet without a flow, and the flow it would open.
fn new_flow(key: FlowKey, side: Side, meta: &Ipv4Meta, now_ms: u64) -> Tracked {
    let proto = match (meta.proto, &meta.l4) {
        (proto::TCP, L4::Tcp { segment, .. }) => match TcpConn::open(segment) {
            Some(conn) => Proto::Tcp(conn),
            None => return Tracked::of(CtState::Invalid),
        },
        (proto::UDP, _) => Proto::Udp,
        (proto::ICMP, L4::IcmpQuery { .. }) if side == 0 => Proto::Icmp,
        (proto::ICMP, _) => return Tracked::of(CtState::Invalid),
        _ => Proto::Other,
    };
    let mut flow = Flow { key, original_side: side, seen_reply: false, assured: false, expires_ms: 0, proto };
    flow.expires_ms = now_ms.saturating_add(flow.timeout_ms());
    Tracked { new_flow: Some(flow), conn: Some(Conn::of(&flow, None, false)), ..Tracked::of(CtState::New) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_shrinks_to_its_byte_budget() {
        let full = ConnTrack::within(65536, 1, usize::MAX);
        assert_eq!(full.capacity(), 65536);
        let budget = 10_000 * bytes_per_flow();
        assert_eq!(ConnTrack::within(65536, 1, budget).capacity(), 10_000);
        // A tiny budget still gets a usable table, never more than asked.
        assert_eq!(ConnTrack::within(65536, 1, 0).capacity(), MIN_FLOWS);
        assert_eq!(ConnTrack::within(10, 1, 0).capacity(), 10);
    }

    #[test]
    fn the_build_time_maximum_fits_its_documented_budget() {
        assert!(bytes_per_flow() <= 200, "{} bytes per flow", bytes_per_flow());
        assert!(MAX_CONNTRACK as usize * bytes_per_flow() <= 200 << 20);
    }
}
