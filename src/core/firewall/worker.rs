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

use spin::Mutex;

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
    pub(super) notified: AtomicU64,
    pub(super) spared: AtomicU64,
}

impl Shared<'_> {
    /// Frames each worker received, for workers that exist (vCPU 1 first).
    pub(super) fn worker_frames(&self, workers: usize) -> Vec<u64> {
        self.workers.iter().take(workers).map(|w| w.received.load(Ordering::Relaxed)).collect()
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

/// Takes the next frame of NIC `index`'s queue in `nics` through the
/// packet path, the lock held from its receive to its transmit.
pub(super) fn serve_one<D: NetDevice>(
    shared: &Shared<'_>,
    nics: &mut NicSet<D>,
    bounce: Option<&mut Bounce>,
    index: usize,
    now_ms: u64,
) -> Served<D::Buffer> {
    let mut dataplane = shared.dataplane.lock();
    let started = dataplane.profile_mut().start();
    let Some((buffer, frame)) = nics.receive(index) else {
        return Served::Empty;
    };
    dataplane.profile_mut().stop(Step::Receive, started);
    match handle_frame(shared, &mut dataplane, nics, bounce, index, buffer, frame, now_ms) {
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
    dataplane: &mut Dataplane,
    nics: &mut NicSet<D>,
    bounce: Option<&mut Bounce>,
    index: usize,
    mut buffer: D::Buffer,
    frame: Range<usize>,
    now_ms: u64,
) -> Option<(D::Buffer, Range<usize>)> {
    let in_if = index as IfIndex;
    let counters = dataplane.counters_mut();
    counters.count_received(in_if, frame.len());
    if !shared.up.get(index).copied().unwrap_or(false) {
        counters.count_drop(in_if, DropReason::InterfaceDown);
        nics.recycle(buffer);
        return None;
    }
    let offload = virtio_net::Header::new(buffer.bytes_mut(), frame.start)
        .map(|h| Offload { partial: h.partial_checksum(), segment_size: h.tcp_segment_size() })
        .unwrap_or_default();
    let Some(bytes) = buffer.bytes_mut().get_mut(frame.clone()) else {
        counters.count_drop(in_if, DropReason::BadLength);
        nics.recycle(buffer);
        return None;
    };
    if let Some(bounce) = bounce {
        let len = bytes.len();
        let interfaces = dataplane.interfaces();
        let own = |addr: u32| interfaces.iter().any(|i| i.ip() == Some(addr));
        if let Some(out) = bounce.bounce(index, bytes, own) {
            let started = dataplane.profile_mut().start();
            let sent = nics.forward(out, buffer, len);
            dataplane.profile_mut().stop(Step::Enqueue, started);
            let counters = dataplane.counters_mut();
            if let Some(out_counters) = counters.interface_mut(out as IfIndex) {
                out_counters.forwarded_out += 1;
            }
            counters.count_transmit(in_if, out as IfIndex, len, sent);
            return None;
        }
    }
    let started = dataplane.profile_mut().start();
    let disposition = dataplane.handle_offloaded_frame(now_ms, in_if, bytes, offload, &shared.image, nics);
    dataplane.profile_mut().stop(Step::Path, started);
    match disposition {
        Disposition::Forward { out_if, len } => {
            let started = dataplane.profile_mut().start();
            let sent = nics.forward(usize::from(out_if), buffer, len);
            dataplane.profile_mut().stop(Step::Enqueue, started);
            dataplane.counters_mut().count_transmit(in_if, out_if, len, sent);
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
}

impl<'a, D: NetDevice> Worker<'a, D> {
    /// With `bounce` when the firewall is on the bounce path.
    pub(super) fn new(shared: Arc<Shared<'a>>, nics: NicSet<D>, bounce: Option<Bounce>, slot: usize) -> Self {
        Worker { shared, nics, bounce, slot, received: 0 }
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
                match serve_one(&self.shared, &mut self.nics, self.bounce.as_mut(), index, now_ms) {
                    Served::Empty => break,
                    Served::Done => {}
                    Served::Local(buffer, frame) => self.hand_off(index, buffer, frame),
                }
                work = true;
                self.received += 1;
            }
        }
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
            self.shared.dataplane.lock().counters_mut().count_drop(index as IfIndex, DropReason::LocalHandoffFull);
        }
        self.nics.recycle(buffer);
    }

    /// Notifications sent and suppressed by its queues.
    pub fn notifications(&self) -> super::Notifications {
        self.nics.notifications()
    }
}
