//! The virtio-net control queue, which carries one command at boot:
//! `VQ_PAIRS_SET` (how many queue pairs the device uses). The command's
//! bytes and its answer are `unifw_core::virtio_net::SetQueuePairs` and
//! `decode_ack`.
//!
//! A command is a chain of two descriptors (the device reads the command,
//! writes its status byte), which unifw's own queue (one descriptor per
//! buffer) does not do; virtio-drivers' `VirtQueue` does, and its flaw
//! (event indices compared without wrapping, `unifw_core::virtqueue`)
//! needs 65,536 buffers to show, so it serves here.

use super::{AnyTransport, KernelHal};
use alloc::boxed::Box;
use core::fmt;
use unifw_core::virtio_net::{decode_ack, MultiqueueError, SetQueuePairs};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;

/// Entries of the control queue (QEMU's is 64; a legacy device fixes it).
const SIZE: usize = 64;
/// How long the device may take to answer (QEMU answers within the
/// notifying write).
const ANSWER_TIMEOUT_US: u64 = 100_000;

/// Why a control command did not take effect.
#[derive(Debug)]
pub enum ControlError {
    /// The queue could not be set up.
    Setup(virtio_drivers::Error),
    /// The device's queue size does not suit this driver.
    Size(u32),
    /// The queue refused the command's buffers.
    Queue(virtio_drivers::Error),
    /// No answer within the timeout (the buffers stay the device's).
    Timeout,
    /// The device answered with an error, or wrote no status.
    Device(MultiqueueError),
    /// An earlier command never came back: the queue is not used again.
    Stuck,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Setup(e) => write!(f, "control queue set-up failed ({e:?})"),
            ControlError::Size(size) => write!(f, "control queue of {size} entries (this driver needs {SIZE})"),
            ControlError::Queue(e) => write!(f, "control queue refused the command ({e:?})"),
            ControlError::Timeout => write!(f, "no answer within {} ms", ANSWER_TIMEOUT_US / 1000),
            ControlError::Device(MultiqueueError::Refused(status)) => write!(f, "the device answered {status}, not OK"),
            ControlError::Device(e) => write!(f, "{e:?}"),
            ControlError::Stuck => write!(f, "an earlier command is still outstanding"),
        }
    }
}

/// The control queue and the buffers of its one command in flight.
pub struct ControlQueue {
    queue: VirtQueue<KernelHal, SIZE>,
    index: u16,
    /// Heap buffers, so that they stay put while the device holds them
    /// (also after a timeout, when this queue is kept and never used again).
    command: Box<[u8; SetQueuePairs::LEN]>,
    status: Box<[u8; 1]>,
    stuck: bool,
}

impl ControlQueue {
    /// Sets up queue `index` as the control queue (before `DRIVER_OK`).
    pub fn new(transport: &mut AnyTransport, index: u16, event_idx: bool) -> Result<ControlQueue, ControlError> {
        let size = transport.max_queue_size(index);
        if size < SIZE as u32 || (transport.fixed_queue_size() && size != SIZE as u32) {
            return Err(ControlError::Size(size));
        }
        let queue = VirtQueue::new(transport, index, false, event_idx).map_err(ControlError::Setup)?;
        Ok(ControlQueue {
            queue,
            index,
            command: Box::new([0; SetQueuePairs::LEN]),
            status: Box::new([0xff]),
            stuck: false,
        })
    }

    /// Asks the device to use `pairs` queue pairs and waits for its answer
    /// (after `DRIVER_OK`: the device serves the control queue only then).
    pub fn set_queue_pairs(&mut self, transport: &mut AnyTransport, pairs: u16) -> Result<(), ControlError> {
        if self.stuck {
            return Err(ControlError::Stuck);
        }
        *self.command = SetQueuePairs(pairs).encode();
        *self.status = [0xff];
        // SAFETY: both buffers are heap blocks owned by `self`, which is
        // never dropped while the device holds them: on success they come
        // back through `pop_used` below; on a timeout `stuck` keeps them
        // out of use and the queue lives as long as the device (its `Arc`).
        let token = unsafe { self.queue.add(&[&self.command[..]], &mut [&mut self.status[..]]) }
            .map_err(ControlError::Queue)?;
        if self.queue.should_notify() {
            transport.notify(self.index);
        }
        let start = crate::kernel::arch::clock::now_us();
        while !self.queue.can_pop() {
            if crate::kernel::arch::clock::now_us().saturating_sub(start) > ANSWER_TIMEOUT_US {
                self.stuck = true;
                return Err(ControlError::Timeout);
            }
            core::hint::spin_loop();
        }
        // SAFETY: the same buffers as given to `add` with this token.
        let written = unsafe { self.queue.pop_used(token, &[&self.command[..]], &mut [&mut self.status[..]]) }
            .map_err(ControlError::Queue)?;
        // SAFETY: a byte the device wrote by DMA: read it from memory, not
        // from what the compiler last knew.
        let status = unsafe { core::ptr::read_volatile(&self.status[0]) };
        if written < 1 {
            return Err(ControlError::Device(MultiqueueError::Refused(status)));
        }
        decode_ack(status).map_err(ControlError::Device)
    }
}
