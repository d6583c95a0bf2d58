//! More than one vCPU. Each NIC has a queue pair per vCPU (virtio-net
//! multiqueue; the host steers each flow to one queue, both directions
//! alike), and each vCPU past the first runs a [`Worker`] on its own pairs:
//! receive, the packet path, transmit, buffers home, all on its own
//! queues. What they share is [`Shared`]: the rules (read-only) and the
//! packet path's state (connection tracking, NAT, neighbours, limits,
//! counters) behind one lock, taken per frame. The firewall's own IP
//! stacks stay on vCPU 0 ([`super::Firewall`]): a worker copies a frame
//! for them into the hand-off queue, which vCPU 0 drains each pass.
//!
//! Order within a flow holds because one queue is served by one vCPU, in
//! order, from receive to transmit; the lock makes the state changes of
//! two vCPUs' frames happen one after the other, as on one vCPU.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, MutexGuard};

use super::bounce::Bounce;
use super::nics::{Buffer, NetDevice, NicSet};
use super::RX_BUDGET;
use crate::flow::IfIndex;
use crate::image::Image;
use crate::net::{Dataplane, Disposition, DropReason, Offload};
use crate::profile::Step;
use crate::virtio_net;

/// Local frames waiting for vCPU 0's stacks, at most: past this a worker
/// drops them (counted, `local_handoff_full`), as a full socket queue would.
pub const HANDOFF_FRAMES: usize = 256;

/// What every vCPU's packet path shares.
pub struct Shared<'a> {
    /// Connection tracking, NAT, neighbours, limits and counters.
    pub(super) dataplane: Mutex<Dataplane>,
    /// The compiled rules.
    pub(super) image: Image<'a>,
    /// By interface index: whether it is up (has a stack).
    pub(super) up: Vec<bool>,
    /// The profile's clock when the packet path is profiled
    /// (`unifw.profile=on`).
    pub(super) clock: Option<crate::profile::Clock>,
    /// Local frames received by workers (interface, frame), for vCPU 0.
    pub(super) handoff: Mutex<VecDeque<(IfIndex, Vec<u8>)>>,
    /// Frames each worker received (index: vCPU - 1), and the
    /// notifications its queues sent and were spared, for the report.
    pub(super) workers: [WorkerCounts; MAX_WORKERS],
}

/// Workers at most (vCPUs 1..=7).
pub const MAX_WORKERS: usize = 7;

/// A worker's counts, published once per pass.
#[derive(Default)]
pub struct WorkerCounts {
    pub(super) received: AtomicU64,
    /// Frames for which it waited for the path's lock.
    pub(super) waits: AtomicU64,
    pub(super) notified: AtomicU64,
    pub(super) spared: AtomicU64,
}

impl Shared<'_> {
    /// Frames each worker received, and for how many it waited for the
    /// path's lock, for workers that exist (vCPU 1 first).
    pub(super) fn worker_frames(&self, workers: usize) -> Vec<(u64, u64)> {
        self.workers
            .iter()
            .take(workers)
            .map(|w| (w.received.load(Ordering::Relaxed), w.waits.load(Ordering::Relaxed)))
            .collect()
    }

    /// Notifications of all workers' queues.
    pub(super) fn worker_notifications(&self) -> super::Notifications {
        let (sent, suppressed) = self
            .workers
            .iter()
            .fold((0, 0), |(s, p), w| (s + w.notified.load(Ordering::Relaxed), p + w.spared.load(Ordering::Relaxed)));
        super::Notifications { sent, suppressed }
    }
}

/// What serving one frame of a queue came to.
pub(super) enum Served<B> {
    /// The queue had no frame.
    Empty,
    /// Forwarded, dropped or queued: done with.
    Done,
    /// For the firewall itself: this buffer, frame at this range.
    Local(B, Range<usize>),
}

/// What one vCPU keeps between the frames it serves: the outcome of the
/// last frame it handed to a NIC outside the lock, counted the next time
/// it holds the lock (at the latest at the end of its pass:
/// [`Lane::settle`]), and how often it waited for the lock.
#[derive(Debug, Default)]
pub(super) struct Lane {
    unsent: Option<Sent>,
    /// Frames for which the path's lock was taken by another vCPU.
    pub(super) waits: u64,
}

/// A frame handed to NIC `out_if` (from `in_if`), not yet counted.
#[derive(Debug, Clone, Copy)]
struct Sent {
    in_if: IfIndex,
    out_if: IfIndex,
    len: usize,
    result: Result<(), DropReason>,
    /// On the bounce path, which counts `forwarded_out` here (the packet
    /// path counts its own).
    bounced: bool,
}

impl Lane {
    /// Counts what is still uncounted into `dataplane`'s counters.
    pub(super) fn settle(&mut self, dataplane: &mut Dataplane) {
        if let Some(sent) = self.unsent.take() {
            let counters = dataplane.counters_mut();
            if sent.bounced {
                if let Some(out) = counters.interface_mut(sent.out_if) {
                    out.forwarded_out += 1;
                }
            }
            counters.count_transmit(sent.in_if, sent.out_if, sent.len, sent.result);
        }
    }

    /// [`Lane::settle`], taking the lock only if there is anything.
    pub(super) fn settle_now(&mut self, shared: &Shared<'_>) {
        if self.unsent.is_some() {
            self.settle(&mut shared.dataplane.lock());
        }
    }

    /// The path's lock, counting a wait when another vCPU holds it (and
    /// timing it, when profiling).
    fn lock<'s>(&mut self, shared: &'s Shared<'_>) -> MutexGuard<'s, Dataplane> {
        if let Some(guard) = shared.dataplane.try_lock() {
            return guard;
        }
        self.waits += 1;
        let started = clock_now(shared);
        let mut guard = shared.dataplane.lock();
        let ended = clock_now(shared);
        guard.profile_mut().record(Step::PathWait, started, ended);
        guard
    }
}

/// A clock reading to begin (or end) a profiled span, or 0 when profiling
/// is off. Taken without the lock, so that a span holds only its own work.
pub(super) fn clock_now(shared: &Shared<'_>) -> u64 {
    shared.clock.map_or(0, |clock| (clock.read)())
}

/// Ends a span begun at [`clock_now`]: the clock is read before taking
/// the lock to record it (counted if the profile's pass is timed).
pub(super) fn span_stop(shared: &Shared<'_>, step: Step, started: u64) {
    if let Some(clock) = shared.clock {
        let ended = (clock.read)();
        shared.dataplane.lock().profile_mut().record(step, started, ended);
    }
}

/// Takes the next frame of NIC `index`'s queue in `nics` through the
/// packet path. The lock is held for the packet path only: taking the
/// frame from its queue, putting it on the output NIC's queue and
/// returning its buffer are this vCPU's own queues' work.
pub(super) fn serve_one<D: NetDevice>(
    shared: &Shared<'_>,
    lane: &mut Lane,
    nics: &mut NicSet<D>,
    bounce: Option<&mut Bounce>,
    index: usize,
    now_ms: u64,
) -> Served<D::Buffer> {
    let started = clock_now(shared);
    let Some((buffer, frame)) = nics.receive(index) else {
        return Served::Empty;
    };
    span_stop(shared, Step::Receive, started);
    match handle_frame(shared, lane, nics, bounce, index, buffer, frame, now_ms) {
        Some((buffer, frame)) => Served::Local(buffer, frame),
        None => Served::Done,
    }
}

/// One frame through the packet path, then out or back to its NIC. A
/// frame for the firewall itself comes back (checksum completed) for the
/// caller's stacks.
#[allow(clippy::too_many_arguments)]
fn handle_frame<D: NetDevice>(
    shared: &Shared<'_>,
    lane: &mut Lane,
    nics: &mut NicSet<D>,
    bounce: Option<&mut Bounce>,
    index: usize,
    mut buffer: D::Buffer,
    frame: Range<usize>,
    now_ms: u64,
) -> Option<(D::Buffer, Range<usize>)> {
    let in_if = index as IfIndex;
    let offload = virtio_net::Header::new(buffer.bytes_mut(), frame.start)
        .map(|h| Offload { partial: h.partial_checksum(), segment_size: h.tcp_segment_size() })
        .unwrap_or_default();
    let mut dataplane = lane.lock(shared);
    lane.settle(&mut dataplane);
    let counters = dataplane.counters_mut();
    counters.count_received(in_if, frame.len());
    if !shared.up.get(index).copied().unwrap_or(false) {
        counters.count_drop(in_if, DropReason::InterfaceDown);
        drop(dataplane);
        nics.recycle(buffer);
        return None;
    }
    let Some(bytes) = buffer.bytes_mut().get_mut(frame.clone()) else {
        counters.count_drop(in_if, DropReason::BadLength);
        drop(dataplane);
        nics.recycle(buffer);
        return None;
    };
    let (disposition, bounced) = match bounce.and_then(|bounce| {
        let interfaces = dataplane.interfaces();
        let own = |addr: u32| interfaces.iter().any(|i| i.ip() == Some(addr));
        bounce.bounce(index, bytes, own)
    }) {
        Some(out) => (Disposition::Forward { out_if: out as IfIndex, len: bytes.len() }, true),
        None => {
            let started = dataplane.profile_mut().start();
            let disposition = dataplane.handle_offloaded_frame(now_ms, in_if, bytes, offload, &shared.image, nics);
            dataplane.profile_mut().stop(Step::Path, started);
            (disposition, false)
        }
    };
    drop(dataplane);
    match disposition {
        Disposition::Forward { out_if, len } => {
            let started = clock_now(shared);
            let result = nics.forward(usize::from(out_if), buffer, len);
            span_stop(shared, Step::Enqueue, started);
            lane.unsent = Some(Sent { in_if, out_if, len, result, bounced });
            None
        }
        Disposition::Local => {
            // smoltcp verifies checksums; offsets outside the frame
            // leave it as it is, and smoltcp drops it.
            virtio_net::complete_checksum(buffer.bytes_mut(), frame.start, frame.clone());
            Some((buffer, frame))
        }
        Disposition::Queued | Disposition::Drop(_) => {
            nics.recycle(buffer);
            None
        }
    }
}

/// The packet path on one more vCPU: its own queue pair of every NIC.
pub struct Worker<'a, D: NetDevice> {
    shared: Arc<Shared<'a>>,
    nics: NicSet<D>,
    bounce: Option<Bounce>,
    /// Its slot in `Shared::workers`.
    slot: usize,
    received: u64,
    lane: Lane,
}

impl<'a, D: NetDevice> Worker<'a, D> {
    /// With `bounce` when the firewall is on the bounce path.
    pub(super) fn new(shared: Arc<Shared<'a>>, nics: NicSet<D>, bounce: Option<Bounce>, slot: usize) -> Self {
        Worker { shared, nics, bounce, slot, received: 0, lane: Lane::default() }
    }

    /// Its queues (for what only the kernel does: interrupts, buffer growth).
    pub fn nics_mut(&mut self) -> &mut NicSet<D> {
        &mut self.nics
    }

    /// Serves its queues once at time `now_us`; true if there was anything
    /// to do.
    pub fn poll_once(&mut self, now_us: u64) -> bool {
        let now_ms = now_us / 1000;
        let mut work = false;
        for index in 0..self.nics.len() {
            for _ in 0..RX_BUDGET {
                match serve_one(&self.shared, &mut self.lane, &mut self.nics, self.bounce.as_mut(), index, now_ms) {
                    Served::Empty => break,
                    Served::Done => {}
                    Served::Local(buffer, frame) => self.hand_off(index, buffer, frame),
                }
                work = true;
                self.received += 1;
            }
        }
        self.lane.settle_now(&self.shared);
        self.nics.reclaim();
        self.nics.notify();
        if work {
            self.publish();
        }
        work
    }

    fn publish(&self) {
        if let Some(counts) = self.shared.workers.get(self.slot) {
            let notifications = self.nics.notifications();
            counts.received.store(self.received, Ordering::Relaxed);
            counts.waits.store(self.lane.waits, Ordering::Relaxed);
            counts.notified.store(notifications.sent, Ordering::Relaxed);
            counts.spared.store(notifications.suppressed, Ordering::Relaxed);
        }
    }

    /// Copies a local frame for vCPU 0's stack, and sends the buffer home.
    fn hand_off(&mut self, index: usize, buffer: D::Buffer, frame: Range<usize>) {
        let bytes = buffer.bytes().get(frame).unwrap_or(&[]);
        let mut handoff = self.shared.handoff.lock();
        if handoff.len() < HANDOFF_FRAMES {
            handoff.push_back((index as IfIndex, bytes.to_vec()));
            drop(handoff);
        } else {
            drop(handoff);
            let mut dataplane = self.lane.lock(&self.shared);
            self.lane.settle(&mut dataplane);
            dataplane.counters_mut().count_drop(index as IfIndex, DropReason::LocalHandoffFull);
        }
        self.nics.recycle(buffer);
    }

    /// Frames for which it found the packet path's lock taken by another
    /// vCPU, and waited.
    pub fn path_waits(&self) -> u64 {
        self.lane.waits
    }

    /// Notifications sent and suppressed by its queues.
    pub fn notifications(&self) -> super::Notifications {
        self.nics.notifications()
    }
}
