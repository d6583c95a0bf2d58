//! The neighbour (ARP) table: learning, resolution with retries, bounded
//! queues of frames waiting for resolution, and ARP request frames.
//!
//! Entry life (Linux's neighbour states, simplified):
//! - `Incomplete`: a frame needed this neighbour; up to `MAX_PROBES` ARP
//!   requests go out `RETRY_MS` apart while up to `QUEUE_LEN` frames wait
//!   in a preallocated pool shared by all pending neighbours (a full queue
//!   drops its oldest frame, as Linux's `unres_qlen_bytes`). An answer
//!   flushes them in order; silence after the last probe drops them
//!   (`NeighbourUnreachable`) and forgets the entry.
//! - `Reachable`: learnt MAC, trusted for `REACHABLE_MS`.
//! - `Probing`: past that, the MAC is still used while up to `MAX_PROBES`
//!   requests re-confirm it (so an active flow never stalls on re-ARP);
//!   without an answer the entry is forgotten.
//!
//! Floods: pending resolutions are bounded per interface and in all, and a
//! new one replaces the oldest pending one (its frames are dropped as
//! `NeighbourPendingReplaced`) rather than being refused, so spoofed
//! sources cannot block resolution of new neighbours for long. When the
//! table is full, the eviction victim is the least recently used of
//! `EVICT_SAMPLE` entries at a clock hand (see `evict`), never a pending
//! one nor one used for forwarding in the last `KEEP_USED_MS`.

use alloc::vec;
use alloc::vec::Vec;

use hashbrown::HashMap;
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr};

use super::checksum::{complete_partial, PartialChecksum};
use super::counters::{Counters, DropReason};
use super::parse::ETHERNET_HEADER_LEN;
use super::route::InterfaceConfig;
use super::sink::FrameSink;
use crate::flow::IfIndex;

/// Frames queued per unresolved neighbour: a 64 KiB TSO segment cut at an
/// MSS of 1448 is 46 frames (Linux queues 212,992 bytes of them,
/// `unres_qlen_bytes`).
pub const QUEUE_LEN: usize = 64;
/// Pool slots per possible pending neighbour: the pool holds
/// `max_pending * POOL_PER_PENDING` frames (256 by default, 380 KiB), so one
/// neighbour may queue `QUEUE_LEN` while a flood's pending entries hold one
/// each.
pub const POOL_PER_PENDING: usize = 8;
/// ARP requests sent before giving up.
pub const MAX_PROBES: u8 = 3;
/// Interval between ARP requests.
pub const RETRY_MS: u64 = 1000;
/// How long an answer is trusted.
pub const REACHABLE_MS: u64 = 60_000;
/// Entries one eviction looks at, from the clock hand onwards: the cost of
/// making room in a full table is this many slot reads, never a scan.
pub const EVICT_SAMPLE: usize = 8;
/// An entry used for forwarding this recently is not evicted, as Linux's
/// forced GC (`neigh_forced_gc`) spares entries younger than 5 s.
pub const KEEP_USED_MS: u64 = 5000;
/// Length of an ARP frame, padded to the Ethernet minimum (without FCS).
pub const ARP_FRAME_LEN: usize = 60;

/// Sizes of the neighbour table, fixed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourLimits {
    /// Neighbours remembered at once.
    pub capacity: usize,
    /// Neighbours that may await resolution (with queued frames) at once.
    pub max_pending: usize,
    /// Of those, on one interface (so a flood on one cannot starve another).
    pub max_pending_per_interface: usize,
    /// Largest frame a queue slot holds.
    pub frame_size: usize,
}

impl Default for NeighbourLimits {
    fn default() -> NeighbourLimits {
        NeighbourLimits { capacity: 256, max_pending: 32, max_pending_per_interface: 16, frame_size: 1518 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Incomplete { probes: u8, next_probe_ms: u64, since_ms: u64, queue: Queue },
    Reachable { mac: [u8; 6], expires_ms: u64 },
    Probing { mac: [u8; 6], probes: u8, next_probe_ms: u64 },
}

/// One neighbour: its key, state and when forwarding last used it (`None`:
/// never, e.g. learnt from an ARP request and not used since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    key: (IfIndex, u32),
    state: State,
    used_ms: Option<u64>,
}

/// The frames waiting for one neighbour: a list of pool slots in arrival order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Queue {
    head: Option<u16>,
    tail: Option<u16>,
    len: usize,
}

/// One slot of the pool of queued frames.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    len: usize,
    in_if: IfIndex,
    /// The next frame of the same queue.
    next: Option<u16>,
}

/// The outcome of resolving a next hop for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Known: write this destination MAC and send.
    Mac([u8; 6]),
    /// Copied into the neighbour's queue; an ARP request is out.
    Queued,
}

/// The ARP cache and its queues. Entries live in a preallocated slot array
/// found through `index`; `pending` lists the slots awaiting resolution.
pub struct NeighbourTable {
    index: HashMap<(IfIndex, u32), usize>,
    entries: Vec<Option<Entry>>,
    free_entries: Vec<usize>,
    hand: usize,
    pending: Vec<usize>,
    limits: NeighbourLimits,
    pool: Vec<u8>,
    slots: Vec<Slot>,
    free_slots: Vec<u16>,
    requests_sent: u64,
    evictions: u64,
}

impl NeighbourTable {
    /// A table with `limits`, all memory allocated now.
    pub fn new(limits: NeighbourLimits) -> NeighbourTable {
        let capacity = limits.capacity.max(1);
        let max_pending = limits.max_pending.clamp(1, (usize::from(u16::MAX) / POOL_PER_PENDING).min(capacity));
        let limits = NeighbourLimits {
            capacity,
            max_pending,
            max_pending_per_interface: limits.max_pending_per_interface.clamp(1, max_pending),
            frame_size: limits.frame_size.max(ETHERNET_HEADER_LEN),
        };
        let slot_count = limits.max_pending * POOL_PER_PENDING;
        NeighbourTable {
            index: HashMap::with_capacity(capacity * 2),
            entries: vec![None; capacity],
            free_entries: (0..capacity).rev().collect(),
            hand: 0,
            pending: Vec::with_capacity(max_pending),
            limits,
            pool: vec![0; slot_count * limits.frame_size],
            slots: vec![Slot::default(); slot_count],
            free_slots: (0..slot_count as u16).rev().collect(),
            requests_sent: 0,
            evictions: 0,
        }
    }

    /// Neighbours known or being resolved.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Neighbours remembered at most.
    pub fn capacity(&self) -> usize {
        self.limits.capacity
    }

    /// Neighbours awaiting resolution.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Neighbours awaiting resolution on `out_if`.
    pub fn pending_on(&self, out_if: IfIndex) -> usize {
        self.pending.iter().filter(|&&at| self.entry(at).is_some_and(|e| e.key.0 == out_if)).count()
    }

    /// Frames waiting in queues.
    pub fn queued_frames(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }

    /// Resolved entries evicted to make room for others.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// The MAC of `addr` on `out_if`, if resolved (reachable or being re-probed).
    pub fn lookup(&self, out_if: IfIndex, addr: u32) -> Option<[u8; 6]> {
        let at = *self.index.get(&(out_if, addr))?;
        match self.entry(at)?.state {
            State::Reachable { mac, .. } | State::Probing { mac, .. } => Some(mac),
            State::Incomplete { .. } => None,
        }
    }

    /// ARP requests sent so far.
    pub fn requests_sent(&self) -> u64 {
        self.requests_sent
    }

    /// Resolves `addr` on `out_if` for `frame` (received on `in_if`), queueing
    /// a copy and sending an ARP request when the MAC is not known yet. The
    /// copy leaves later without the frame's virtio header, so a `partial`
    /// checksum is completed in it. Using an entry refreshes its recency
    /// (one store; nothing is reordered per frame).
    pub fn resolve(
        &mut self,
        now_ms: u64,
        (in_if, out_if, addr): (IfIndex, IfIndex, u32),
        (frame, partial): (&[u8], Option<PartialChecksum>),
        interfaces: &[InterfaceConfig],
        counters: &mut Counters,
        out: &mut dyn FrameSink,
    ) -> Result<Resolution, DropReason> {
        let key = (out_if, addr);
        let Some(at) = self.index.get(&key).copied() else {
            let at = self.start_resolution(now_ms, key, counters)?;
            let queued = self.enqueue(at, (in_if, frame, partial), counters);
            self.request(interfaces, key, counters, out);
            return queued.map(|()| Resolution::Queued);
        };
        let Some(Some(entry)) = self.entries.get_mut(at) else {
            return Err(DropReason::NeighbourPendingFull);
        };
        entry.used_ms = Some(now_ms);
        match entry.state {
            State::Reachable { mac, expires_ms } => {
                if expires_ms <= now_ms {
                    let next_probe_ms = now_ms.saturating_add(RETRY_MS);
                    entry.state = State::Probing { mac, probes: 1, next_probe_ms };
                    self.request(interfaces, key, counters, out);
                }
                Ok(Resolution::Mac(mac))
            }
            State::Probing { mac, .. } => Ok(Resolution::Mac(mac)),
            State::Incomplete { .. } => {
                self.enqueue(at, (in_if, frame, partial), counters).map(|()| Resolution::Queued)
            }
        }
    }

    /// Learns `mac` for `addr` on `in_if` from an ARP packet. Existing
    /// entries are always refreshed (flushing their queues); a new entry is
    /// created only when `create` (the ARP was addressed to us, as Linux's
    /// `arp_process` does), and it is the first to go when room is needed
    /// until forwarding uses it.
    pub fn learn(
        &mut self,
        now_ms: u64,
        (in_if, addr, mac): (IfIndex, u32, [u8; 6]),
        create: bool,
        counters: &mut Counters,
        out: &mut dyn FrameSink,
    ) {
        let key = (in_if, addr);
        let reachable = State::Reachable { mac, expires_ms: now_ms.saturating_add(REACHABLE_MS) };
        match self.index.get(&key).copied() {
            Some(at) => {
                let Some(Some(entry)) = self.entries.get_mut(at) else { return };
                let old = core::mem::replace(&mut entry.state, reachable);
                if let State::Incomplete { queue, .. } = old {
                    self.pending.retain(|&p| p != at);
                    self.flush(in_if, mac, queue, counters, out);
                }
            }
            None if create => {
                if let Some(at) = self.allocate(now_ms) {
                    self.place(at, Entry { key, state: reachable, used_ms: None });
                }
            }
            None => {}
        }
    }

    /// Sends due ARP retries and gives up on silent neighbours (dropping
    /// their queued frames); returns the earliest time it needs calling again.
    pub fn poll(
        &mut self,
        now_ms: u64,
        interfaces: &[InterfaceConfig],
        counters: &mut Counters,
        out: &mut dyn FrameSink,
    ) -> Option<u64> {
        let mut next: Option<u64> = None;
        for at in 0..self.entries.len() {
            let Some(Some(entry)) = self.entries.get(at).copied() else { continue };
            let (state, deadline) = self.advance(now_ms, entry, interfaces, counters, out);
            match (state, self.entries.get_mut(at)) {
                (Some(state), Some(Some(slot))) => slot.state = state,
                _ => self.forget(at, DropReason::NeighbourUnreachable, counters),
            }
            if let Some(deadline) = deadline {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        next
    }

    /// The state of `entry` at `now_ms` (`None`: forget it) and when it
    /// needs polling again, sending a due ARP request.
    fn advance(
        &mut self,
        now_ms: u64,
        entry: Entry,
        interfaces: &[InterfaceConfig],
        counters: &mut Counters,
        out: &mut dyn FrameSink,
    ) -> (Option<State>, Option<u64>) {
        let retry = now_ms.saturating_add(RETRY_MS);
        match entry.state {
            State::Incomplete { probes, next_probe_ms, .. } | State::Probing { probes, next_probe_ms, .. }
                if next_probe_ms <= now_ms =>
            {
                if probes >= MAX_PROBES {
                    return (None, None);
                }
                self.request(interfaces, entry.key, counters, out);
                let state = match entry.state {
                    State::Incomplete { since_ms, queue, .. } => {
                        State::Incomplete { probes: probes + 1, next_probe_ms: retry, since_ms, queue }
                    }
                    State::Probing { mac, .. } | State::Reachable { mac, .. } => {
                        State::Probing { mac, probes: probes + 1, next_probe_ms: retry }
                    }
                };
                (Some(state), Some(retry))
            }
            State::Incomplete { next_probe_ms, .. } | State::Probing { next_probe_ms, .. } => {
                (Some(entry.state), Some(next_probe_ms))
            }
            // Forget entries unused for a whole extra reachable period.
            State::Reachable { expires_ms, .. } => {
                let keep = expires_ms.saturating_add(REACHABLE_MS) > now_ms;
                (keep.then_some(entry.state), None)
            }
        }
    }

    fn request(
        &mut self,
        interfaces: &[InterfaceConfig],
        (out_if, addr): (IfIndex, u32),
        counters: &mut Counters,
        out: &mut dyn FrameSink,
    ) {
        self.requests_sent += u64::from(send_request(interfaces, out_if, addr, counters, out));
    }

    fn entry(&self, at: usize) -> Option<&Entry> {
        self.entries.get(at)?.as_ref()
    }

    /// Creates an `Incomplete` entry (first request counts as probe 1). When
    /// its interface, or the table, has all the pending resolutions it may,
    /// the oldest of those is dropped to make way: under a flood of
    /// unanswered destinations each still gets its `RETRY_MS` of probing
    /// until `max_pending_per_interface` newer ones arrive, and other
    /// interfaces are not affected. (Linux bounds only the whole table,
    /// `gc_thresh3`; this table is smaller, so it bounds per interface.)
    fn start_resolution(
        &mut self,
        now_ms: u64,
        key: (IfIndex, u32),
        counters: &mut Counters,
    ) -> Result<usize, DropReason> {
        let replace = if self.pending_on(key.0) >= self.limits.max_pending_per_interface {
            self.oldest_pending(Some(key.0))
        } else if self.pending.len() >= self.limits.max_pending {
            self.oldest_pending(None)
        } else {
            None
        };
        if let Some(at) = replace {
            self.forget(at, DropReason::NeighbourPendingReplaced, counters);
        }
        if self.pending.len() >= self.limits.max_pending {
            return Err(DropReason::NeighbourPendingFull);
        }
        let at = self.allocate(now_ms).ok_or(DropReason::NeighbourPendingFull)?;
        let next_probe_ms = now_ms.saturating_add(RETRY_MS);
        let state = State::Incomplete { probes: 1, next_probe_ms, since_ms: now_ms, queue: Queue::default() };
        self.place(at, Entry { key, state, used_ms: Some(now_ms) });
        self.pending.push(at);
        Ok(at)
    }

    /// The slot of the longest-pending resolution (on `only_if`, if given).
    fn oldest_pending(&self, only_if: Option<IfIndex>) -> Option<usize> {
        let candidates = self.pending.iter().filter_map(|&at| match self.entry(at)? {
            Entry { key, state: State::Incomplete { since_ms, .. }, .. } if only_if.is_none_or(|i| i == key.0) => {
                Some((*since_ms, at))
            }
            _ => None,
        });
        candidates.min().map(|(_, at)| at)
    }

    fn place(&mut self, at: usize, entry: Entry) {
        if let Some(slot) = self.entries.get_mut(at) {
            self.index.insert(entry.key, at);
            *slot = Some(entry);
        }
    }

    /// Removes the entry in slot `at`, dropping its queued frames for `reason`.
    fn forget(&mut self, at: usize, reason: DropReason, counters: &mut Counters) {
        let Some(entry) = self.entries.get_mut(at).and_then(Option::take) else { return };
        self.index.remove(&entry.key);
        self.free_entries.push(at);
        if let State::Incomplete { queue, .. } = entry.state {
            self.pending.retain(|&p| p != at);
            self.release(queue, reason, counters);
        }
    }

    /// A free entry slot, evicting a resolved entry if the table is full.
    fn allocate(&mut self, now_ms: u64) -> Option<usize> {
        self.free_entries.pop().or_else(|| self.evict(now_ms))
    }

    /// Approximate LRU in constant time: of the `EVICT_SAMPLE` slots from
    /// the clock hand on, evicts the one used least recently (never-used
    /// entries first), skipping pending ones and those used in the last
    /// `KEEP_USED_MS`. The hand moves on either way, so successive calls
    /// look at the whole table in turn; `None` when nothing in the sample
    /// may go (the caller refuses, as Linux does on "neighbour table
    /// overflow"). Cost: `EVICT_SAMPLE` slot reads and one hash removal.
    fn evict(&mut self, now_ms: u64) -> Option<usize> {
        let count = self.entries.len();
        let mut victim: Option<(Option<u64>, usize)> = None;
        for _ in 0..EVICT_SAMPLE.min(count) {
            let at = self.hand;
            self.hand = (self.hand + 1) % count;
            let Some(entry) = self.entry(at) else { continue };
            let recent = entry.used_ms.is_some_and(|used| used.saturating_add(KEEP_USED_MS) > now_ms);
            if recent || matches!(entry.state, State::Incomplete { .. }) {
                continue;
            }
            if victim.is_none_or(|(used, _)| entry.used_ms < used) {
                victim = Some((entry.used_ms, at));
            }
        }
        let (_, at) = victim?;
        let entry = self.entries.get_mut(at)?.take()?;
        self.index.remove(&entry.key);
        self.evictions += 1;
        Some(at)
    }

    /// Copies `frame` into a pool slot at the end of the queue of the entry
    /// in slot `at`; a queue already `QUEUE_LEN` long drops its oldest
    /// frame first (`NeighbourQueueFull`, as Linux). When the shared pool
    /// is empty, `frame` is refused.
    fn enqueue(
        &mut self,
        at: usize,
        (in_if, frame, partial): (IfIndex, &[u8], Option<PartialChecksum>),
        counters: &mut Counters,
    ) -> Result<(), DropReason> {
        if frame.len() > self.limits.frame_size {
            return Err(DropReason::NeighbourFrameTooLarge);
        }
        let Some(Some(Entry { state: State::Incomplete { queue, .. }, .. })) = self.entries.get(at) else {
            return Err(DropReason::NeighbourPendingFull);
        };
        let mut queue = *queue;
        if queue.len >= QUEUE_LEN {
            if let Some(oldest) = queue.head.and_then(|slot| Some((slot, *self.slots.get(usize::from(slot))?))) {
                let (slot, meta) = oldest;
                queue.head = meta.next;
                queue.len -= 1;
                if queue.head.is_none() {
                    queue.tail = None;
                }
                counters.count_drop(meta.in_if, DropReason::NeighbourQueueFull);
                self.free_slots.push(slot);
            }
        }
        let slot = self.free_slots.pop().ok_or(DropReason::NeighbourQueueFull)?;
        let start = usize::from(slot) * self.limits.frame_size;
        let Some(bytes) = self.pool.get_mut(start..start + frame.len()) else {
            self.free_slots.push(slot);
            return Err(DropReason::NeighbourQueueFull);
        };
        bytes.copy_from_slice(frame);
        if let Some(PartialChecksum { start, offset }) = partial {
            complete_partial(bytes, start, offset);
        }
        if let Some(meta) = self.slots.get_mut(usize::from(slot)) {
            *meta = Slot { len: frame.len(), in_if, next: None };
        }
        match queue.tail.and_then(|tail| self.slots.get_mut(usize::from(tail))) {
            Some(tail) => tail.next = Some(slot),
            None => queue.head = Some(slot),
        }
        queue.tail = Some(slot);
        queue.len += 1;
        if let Some(Some(Entry { state: State::Incomplete { queue: stored, .. }, .. })) = self.entries.get_mut(at) {
            *stored = queue;
        }
        Ok(())
    }

    /// Sends the queued frames of a neighbour that just resolved to `mac`, in order.
    fn flush(&mut self, out_if: IfIndex, mac: [u8; 6], queue: Queue, counters: &mut Counters, out: &mut dyn FrameSink) {
        let mut next = queue.head;
        while let Some(slot) = next {
            let Some(meta) = self.slots.get(usize::from(slot)).copied() else { break };
            next = meta.next;
            let start = usize::from(slot) * self.limits.frame_size;
            if let Some(frame) = self.pool.get_mut(start..start + meta.len) {
                if let Some(dst) = frame.get_mut(..6) {
                    dst.copy_from_slice(&mac);
                }
                counters.count_transmit(meta.in_if, out_if, frame.len(), out.send(out_if, frame));
            }
            self.free_slots.push(slot);
        }
    }

    /// Frees the queue of a neighbour given up on, counting each frame as `reason`.
    fn release(&mut self, queue: Queue, reason: DropReason, counters: &mut Counters) {
        let mut next = queue.head;
        while let Some(slot) = next {
            let Some(meta) = self.slots.get(usize::from(slot)).copied() else { break };
            next = meta.next;
            counters.count_drop(meta.in_if, reason);
            self.free_slots.push(slot);
        }
    }
}

/// Sends a broadcast ARP request for `target` out of `out_if`, counting
/// it as sent or dropped there; true if it was sent.
fn send_request(
    interfaces: &[InterfaceConfig],
    out_if: IfIndex,
    target: u32,
    counters: &mut Counters,
    out: &mut dyn FrameSink,
) -> bool {
    let Some(interface) = interfaces.get(usize::from(out_if)) else {
        return false;
    };
    let mut frame = [0u8; ARP_FRAME_LEN];
    let result = match build_arp_request(interface, target, &mut frame) {
        Some(_) => out.send(out_if, &frame),
        None => Err(DropReason::TransmitTooLarge),
    };
    counters.count_transmit(out_if, out_if, frame.len(), result);
    result.is_ok()
}

/// Writes a broadcast ARP request for `target` from `interface` into `out`
/// (padded to 60 bytes); returns its length, or `None` if `out` is too short.
pub fn build_arp_request(interface: &InterfaceConfig, target: u32, out: &mut [u8]) -> Option<usize> {
    let frame = out.get_mut(..ARP_FRAME_LEN)?;
    frame.fill(0);
    let eth = EthernetRepr {
        src_addr: EthernetAddress(interface.mac),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(interface.mac),
        source_protocol_addr: interface.ip().unwrap_or(0).into(),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target.into(),
    };
    let mut eth_frame = EthernetFrame::new_unchecked(&mut *frame);
    eth.emit(&mut eth_frame);
    let arp_buf = frame.get_mut(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + arp.buffer_len())?;
    arp.emit(&mut ArpPacket::new_unchecked(arp_buf));
    Some(ARP_FRAME_LEN)
}
