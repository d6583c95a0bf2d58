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
use super::tcp::{Direction, TcpConn, TcpState, TcpUpdate};
use super::timeouts;
use crate::flow::{proto, CtState};
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
    key: FlowKey,
    /// Which side of `key` opened the connection.
    original_side: Side,
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
    new_flow: Option<Flow>,
}

impl Tracked {
    fn of(state: CtState) -> Tracked {
        Tracked { state, new_flow: None }
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
    let slot = core::mem::size_of::<Option<Flow>>() + core::mem::size_of::<u32>();
    let bucket = core::mem::size_of::<(FlowKey, u32)>() + 1;
    slot + bucket * 46 / 10
}

/// The connection table is full and no entry could be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// A bounded connection-tracking table.
pub struct ConnTrack {
    index: HashMap<FlowKey, u32, SeededHasher>,
    /// Flow slots; allocated for `capacity` at start but filled only as
    /// flows arrive, so boot does not pay for clearing the whole table.
    slots: Vec<Option<Flow>>,
    capacity: usize,
    free: Vec<u32>,
    sweep_cursor: usize,
    evict_cursor: usize,
    early_drops: u64,
}

impl ConnTrack {
    /// A table for at most `capacity` flows (at least 1), hashing with
    /// `hash_seed`. Panics if the allocator fails: the host and tests only;
    /// boot uses [`ConnTrack::within`].
    pub fn new(capacity: usize, hash_seed: u64) -> ConnTrack {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        let hasher = SeededHasher { seed: hash_seed, inner: DefaultHashBuilder::default() };
        ConnTrack {
            index: HashMap::with_capacity_and_hasher(capacity.saturating_mul(2), hasher),
            slots: Vec::with_capacity(capacity),
            capacity,
            free: Vec::with_capacity(capacity),
            sweep_cursor: 0,
            evict_cursor: 0,
            early_drops: 0,
        }
    }

    /// A table for `capacity` flows, or fewer: as many as `budget` bytes
    /// hold ([`bytes_per_flow`]), halved again while the allocator refuses
    /// (fallible allocation: never a panic), down to [`MIN_FLOWS`] or even
    /// 1 when memory is that short. [`ConnTrack::capacity`] says what was
    /// granted.
    pub fn within(capacity: usize, hash_seed: u64, budget: usize) -> ConnTrack {
        let wanted = capacity.clamp(1, u32::MAX as usize);
        let mut granted = wanted.min(budget / bytes_per_flow()).max(MIN_FLOWS.min(wanted));
        loop {
            if let Some(table) = Self::try_new(granted, hash_seed) {
                return table;
            }
            if granted == 1 {
                // Not even one flow: an empty table that tracks nothing.
                return Self::try_new(0, hash_seed).unwrap_or_else(|| Self::new(1, hash_seed));
            }
            granted /= 2;
        }
    }

    fn try_new(capacity: usize, hash_seed: u64) -> Option<ConnTrack> {
        let hasher = SeededHasher { seed: hash_seed, inner: DefaultHashBuilder::default() };
        let mut index = HashMap::with_hasher(hasher);
        index.try_reserve(capacity.saturating_mul(2)).ok()?;
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity).ok()?;
        let mut free = Vec::new();
        free.try_reserve_exact(capacity).ok()?;
        Some(ConnTrack { index, slots, capacity, free, sweep_cursor: 0, evict_cursor: 0, early_drops: 0 })
    }

    /// Number of tracked flows.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Maximum number of flows.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes allocated by the index (constant over the table's life).
    pub fn index_allocation(&self) -> usize {
        self.index.allocation_size()
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
            L4::IcmpError { quoted, .. } => Tracked::of(self.related(meta, quoted, now_ms)),
            L4::IcmpOther { .. } | L4::LaterFragment => Tracked::of(CtState::Invalid),
            _ => {
                let (key, side) = FlowKey::of(meta.proto, meta.src, meta.dst, meta.l4.transport());
                match self.lookup(&key, now_ms) {
                    Some(slot) => self.update(slot, side, meta, now_ms),
                    None => new_flow(key, side, meta, now_ms),
                }
            }
        }
    }

    /// Inserts the new flow of an accepted packet (no-op for packets of
    /// existing flows). When full, evicts an unassured or expired entry.
    pub fn confirm(&mut self, tracked: &Tracked, now_ms: u64) -> Result<(), TableFull> {
        let Some(flow) = tracked.new_flow else {
            return Ok(());
        };
        if let Some(slot) = self.lookup(&flow.key, now_ms) {
            // Confirmed twice (or raced by the other direction): keep the first.
            let _ = slot;
            return Ok(());
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
        }
        Ok(())
    }

    /// Frees up to `budget` expired entries, resuming where the last sweep stopped.
    pub fn sweep(&mut self, now_ms: u64, budget: usize) {
        let len = self.slots.len();
        for _ in 0..budget.min(len) {
            let slot = self.sweep_cursor;
            self.sweep_cursor = (slot + 1) % len;
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

    fn live(&self, key: &FlowKey, now_ms: u64) -> Option<&Flow> {
        let slot = *self.index.get(key)?;
        self.slots.get(slot as usize)?.as_ref().filter(|f| f.expires_ms > now_ms)
    }

    fn remove(&mut self, slot: u32) {
        if let Some(entry) = self.slots.get_mut(slot as usize) {
            if let Some(flow) = entry.take() {
                self.index.remove(&flow.key);
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

    fn update(&mut self, slot: u32, side: Side, meta: &Ipv4Meta, now_ms: u64) -> Tracked {
        let Some(Some(flow)) = self.slots.get_mut(slot as usize) else {
            return Tracked::of(CtState::Invalid);
        };
        let dir = if side == flow.original_side { Direction::Original } else { Direction::Reply };
        if let (Proto::Tcp(conn), L4::Tcp { segment, .. }) = (&mut flow.proto, &meta.l4) {
            match conn.update(dir, segment) {
                TcpUpdate::Invalid => return Tracked::of(CtState::Invalid),
                TcpUpdate::Ignored => return Tracked::of(packet_state(flow, dir)),
                TcpUpdate::Reopen => {
                    self.remove(slot);
                    let (key, side) = FlowKey::of(meta.proto, meta.src, meta.dst, meta.l4.transport());
                    return new_flow(key, side, meta, now_ms);
                }
                TcpUpdate::Accepted => {
                    flow.assured |= conn.state() == TcpState::Established;
                }
            }
        } else if dir == Direction::Reply && !matches!(flow.proto, Proto::Icmp) {
            flow.assured = true;
        }
        if dir == Direction::Reply {
            flow.seen_reply = true;
        }
        flow.expires_ms = now_ms.saturating_add(flow.timeout_ms());
        Tracked::of(packet_state(flow, dir))
    }

    /// RELATED when the quoted packet belongs to a live flow and the error
    /// travels back towards the quoted packet's sender; else INVALID.
    fn related(&self, meta: &Ipv4Meta, quoted: Option<Quoted>, now_ms: u64) -> CtState {
        let Some(quoted) = quoted else {
            return CtState::Invalid;
        };
        let (key, _) = FlowKey::of(quoted.proto, quoted.src, quoted.dst, quoted.transport);
        if quoted.src == meta.dst && self.live(&key, now_ms).is_some() {
            CtState::Related
        } else {
            CtState::Invalid
        }
    }
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
    Tracked { state: CtState::New, new_flow: Some(flow) }
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
