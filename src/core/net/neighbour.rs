//! The neighbour (ARP) table: learning, resolution with retries, bounded
//! queues of frames waiting for resolution, and ARP request frames.
//!
//! Entry life (Linux's neighbour states, simplified):
//! - `Incomplete`: a frame needed this neighbour; up to `MAX_PROBES` ARP
//!   requests go out `RETRY_MS` apart while up to `QUEUE_LEN` frames wait
//!   in a preallocated pool. An answer flushes them; silence after the last
//!   probe drops them (`NeighbourUnreachable`) and forgets the entry.
//! - `Reachable`: learnt MAC, trusted for `REACHABLE_MS`.
//! - `Probing`: past that, the MAC is still used while up to `MAX_PROBES`
//!   requests re-confirm it (so an active flow never stalls on re-ARP);
//!   without an answer the entry is forgotten.

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

/// Frames queued per unresolved neighbour.
pub const QUEUE_LEN: usize = 4;
/// ARP requests sent before giving up.
pub const MAX_PROBES: u8 = 3;
/// Interval between ARP requests.
pub const RETRY_MS: u64 = 1000;
/// How long an answer is trusted.
pub const REACHABLE_MS: u64 = 60_000;
/// Length of an ARP frame, padded to the Ethernet minimum (without FCS).
pub const ARP_FRAME_LEN: usize = 60;

/// Sizes of the neighbour table, fixed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourLimits {
    /// Neighbours remembered at once.
    pub capacity: usize,
    /// Neighbours that may await resolution (with queued frames) at once.
    pub max_pending: usize,
    /// Largest frame a queue slot holds.
    pub frame_size: usize,
}

impl Default for NeighbourLimits {
    fn default() -> NeighbourLimits {
        NeighbourLimits { capacity: 256, max_pending: 16, frame_size: 1518 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Incomplete { probes: u8, next_probe_ms: u64, queue: [Option<u16>; QUEUE_LEN] },
    Reachable { mac: [u8; 6], expires_ms: u64 },
    Probing { mac: [u8; 6], probes: u8, next_probe_ms: u64 },
}

/// One slot of the pool of queued frames.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    len: usize,
    in_if: IfIndex,
}

/// The outcome of resolving a next hop for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Known: write this destination MAC and send.
    Mac([u8; 6]),
    /// Copied into the neighbour's queue; an ARP request is out.
    Queued,
}

/// The ARP cache and its queues.
pub struct NeighbourTable {
    entries: HashMap<(IfIndex, u32), State>,
    limits: NeighbourLimits,
    pending: usize,
    pool: Vec<u8>,
    slots: Vec<Slot>,
    free_slots: Vec<u16>,
    requests_sent: u64,
}

impl NeighbourTable {
    /// A table with `limits`, all memory allocated now.
    pub fn new(limits: NeighbourLimits) -> NeighbourTable {
        let limits = NeighbourLimits {
            capacity: limits.capacity.max(1),
            max_pending: limits.max_pending.clamp(1, usize::from(u16::MAX) / QUEUE_LEN),
            frame_size: limits.frame_size.max(ETHERNET_HEADER_LEN),
        };
        let slot_count = limits.max_pending * QUEUE_LEN;
        NeighbourTable {
            entries: HashMap::with_capacity(limits.capacity * 2),
            limits,
            pending: 0,
            pool: vec![0; slot_count * limits.frame_size],
            slots: vec![Slot::default(); slot_count],
            free_slots: (0..slot_count as u16).rev().collect(),
            requests_sent: 0,
        }
    }

    /// Neighbours known or being resolved.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Neighbours awaiting resolution.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Frames waiting in queues.
    pub fn queued_frames(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }

    /// The MAC of `addr` on `out_if`, if resolved (reachable or being re-probed).
    pub fn lookup(&self, out_if: IfIndex, addr: u32) -> Option<[u8; 6]> {
        match self.entries.get(&(out_if, addr))? {
            State::Reachable { mac, .. } | State::Probing { mac, .. } => Some(*mac),
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
    /// checksum is completed in it.
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
        match self.entries.get(&key).copied() {
            Some(State::Reachable { mac, expires_ms }) => {
                if expires_ms <= now_ms {
                    let next_probe_ms = now_ms.saturating_add(RETRY_MS);
                    self.entries.insert(key, State::Probing { mac, probes: 1, next_probe_ms });
                    self.request(interfaces, key, counters, out);
                }
                Ok(Resolution::Mac(mac))
            }
            Some(State::Probing { mac, .. }) => Ok(Resolution::Mac(mac)),
            Some(State::Incomplete { .. }) => self.enqueue(key, in_if, frame, partial).map(|()| Resolution::Queued),
            None => {
                self.start_resolution(now_ms, key)?;
                let queued = self.enqueue(key, in_if, frame, partial);
                self.request(interfaces, key, counters, out);
                queued.map(|()| Resolution::Queued)
            }
        }
    }

    /// Learns `mac` for `addr` on `in_if` from an ARP packet. Existing
    /// entries are always refreshed (flushing their queues); a new entry is
    /// created only when `create` (the ARP was addressed to us).
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
        match self.entries.get(&key).copied() {
            Some(State::Incomplete { queue, .. }) => {
                self.entries.insert(key, reachable);
                self.pending = self.pending.saturating_sub(1);
                self.flush(in_if, mac, &queue, counters, out);
            }
            Some(_) => {
                self.entries.insert(key, reachable);
            }
            None if create && self.make_room(now_ms) => {
                self.entries.insert(key, reachable);
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
        let mut requests = 0;
        let mut failed_pending = 0;
        let Self { entries, slots, free_slots, .. } = self;
        entries.retain(|&(out_if, addr), state| {
            let (keep, deadline) = match state {
                State::Incomplete { probes, next_probe_ms, queue } if *next_probe_ms <= now_ms => {
                    if *probes >= MAX_PROBES {
                        release_failed(queue, slots, free_slots, counters);
                        failed_pending += 1;
                        (false, None)
                    } else {
                        requests += u64::from(send_request(interfaces, out_if, addr, counters, out));
                        *probes += 1;
                        *next_probe_ms = now_ms.saturating_add(RETRY_MS);
                        (true, Some(*next_probe_ms))
                    }
                }
                State::Probing { probes, next_probe_ms, .. } if *next_probe_ms <= now_ms => {
                    if *probes >= MAX_PROBES {
                        (false, None)
                    } else {
                        requests += u64::from(send_request(interfaces, out_if, addr, counters, out));
                        *probes += 1;
                        *next_probe_ms = now_ms.saturating_add(RETRY_MS);
                        (true, Some(*next_probe_ms))
                    }
                }
                State::Incomplete { next_probe_ms, .. } | State::Probing { next_probe_ms, .. } => {
                    (true, Some(*next_probe_ms))
                }
                // Forget entries unused for a whole extra reachable period.
                State::Reachable { expires_ms, .. } => (expires_ms.saturating_add(REACHABLE_MS) > now_ms, None),
            };
            if let Some(deadline) = deadline {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
            keep
        });
        self.requests_sent += requests;
        self.pending = self.pending.saturating_sub(failed_pending);
        next
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

    /// Creates an `Incomplete` entry (first request counts as probe 1).
    fn start_resolution(&mut self, now_ms: u64, key: (IfIndex, u32)) -> Result<(), DropReason> {
        if self.pending >= self.limits.max_pending || !self.make_room(now_ms) {
            return Err(DropReason::NeighbourPendingFull);
        }
        let next_probe_ms = now_ms.saturating_add(RETRY_MS);
        self.entries.insert(key, State::Incomplete { probes: 1, next_probe_ms, queue: [None; QUEUE_LEN] });
        self.pending += 1;
        Ok(())
    }

    /// Ensures room for one more entry, evicting the resolved entry that
    /// expires first; false when every entry is awaiting resolution.
    fn make_room(&mut self, _now_ms: u64) -> bool {
        if self.entries.len() < self.limits.capacity {
            return true;
        }
        let victim = self
            .entries
            .iter()
            .filter_map(|(key, state)| match state {
                State::Reachable { expires_ms, .. } => Some((*expires_ms, *key)),
                State::Probing { next_probe_ms, .. } => Some((*next_probe_ms, *key)),
                State::Incomplete { .. } => None,
            })
            .min();
        match victim {
            Some((_, key)) => self.entries.remove(&key).is_some(),
            None => false,
        }
    }

    /// Copies `frame` into a pool slot on the queue of `key`.
    fn enqueue(
        &mut self,
        key: (IfIndex, u32),
        in_if: IfIndex,
        frame: &[u8],
        partial: Option<PartialChecksum>,
    ) -> Result<(), DropReason> {
        if frame.len() > self.limits.frame_size {
            return Err(DropReason::NeighbourFrameTooLarge);
        }
        let Some(State::Incomplete { queue, .. }) = self.entries.get_mut(&key) else {
            return Err(DropReason::NeighbourPendingFull);
        };
        let free_entry = queue.iter_mut().find(|entry| entry.is_none()).ok_or(DropReason::NeighbourQueueFull)?;
        let slot = self.free_slots.pop().ok_or(DropReason::NeighbourQueueFull)?;
        let start = usize::from(slot) * self.limits.frame_size;
        let stored = self.pool.get_mut(start..start + frame.len()).zip(self.slots.get_mut(usize::from(slot)));
        let Some((bytes, meta)) = stored else {
            self.free_slots.push(slot);
            return Err(DropReason::NeighbourQueueFull);
        };
        bytes.copy_from_slice(frame);
        if let Some(PartialChecksum { start, offset }) = partial {
            complete_partial(bytes, start, offset);
        }
        *meta = Slot { len: frame.len(), in_if };
        *free_entry = Some(slot);
        Ok(())
    }

    /// Sends the queued frames of a neighbour that just resolved to `mac`.
    fn flush(
        &mut self,
        out_if: IfIndex,
        mac: [u8; 6],
        queue: &[Option<u16>; QUEUE_LEN],
        counters: &mut Counters,
        out: &mut dyn FrameSink,
    ) {
        for slot in queue.iter().flatten().copied() {
            let Some(meta) = self.slots.get(usize::from(slot)).copied() else {
                continue;
            };
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
}

/// Frees the queue of a neighbour that never answered, counting each frame.
fn release_failed(
    queue: &[Option<u16>; QUEUE_LEN],
    slots: &[Slot],
    free_slots: &mut Vec<u16>,
    counters: &mut Counters,
) {
    for slot in queue.iter().flatten().copied() {
        if let Some(meta) = slots.get(usize::from(slot)) {
            counters.count_drop(meta.in_if, DropReason::NeighbourUnreachable);
        }
        free_slots.push(slot);
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
