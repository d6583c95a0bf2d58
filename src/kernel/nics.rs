//! All NICs and their buffers. Received buffers go back to their NIC's
//! receive queue once the frame is done with, or after another NIC sent
//! them (zero-copy forwarding); frames the firewall makes itself (its IP
//! stack's replies, ICMP errors, ARP) come from a small transmit pool per
//! NIC. Every failure to send is counted.

use crate::kernel::virtio::buffers::{carve, Home, Slot};
use crate::kernel::virtio::net::{NetDriver, HDR_NEEDS_CSUM};
use alloc::vec::Vec;
use core::cell::RefCell;
use unifw_core::flow::IfIndex;
use unifw_core::net::FrameSink;

/// Receive buffers per NIC with 64 KiB buffers (posted at boot, then grown
/// in steps by `grow`, so that boot does not wait for megabytes to be
/// cleared), and with 2 KiB ones (all at boot).
const RECEIVE_BUFFERS_BIG: usize = 64;
const RECEIVE_BUFFERS_BIG_AT_BOOT: usize = 8;
const RECEIVE_BUFFERS_BIG_STEP: usize = 8;
const RECEIVE_BUFFERS_SMALL: usize = 256;
/// Transmit-pool buffers per NIC, for frames the firewall makes itself
/// (at most a full Ethernet frame).
const TRANSMIT_POOL: usize = 32;
const TRANSMIT_BUFFER: usize = 1514;

/// Per-NIC traffic counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct NicStats {
    /// Frames received.
    pub received: u64,
    /// Frames handed to the device for sending.
    pub sent: u64,
    /// Frames not sent: transmit queue full.
    pub queue_full: u64,
    /// Frames not sent: the transmit pool was empty.
    pub pool_empty: u64,
    /// Frames not sent: they need an offload this NIC did not negotiate.
    pub offload_missing: u64,
    /// Frames not sent: too large for the buffer.
    pub too_large: u64,
    /// Frames dropped on receive: the device reported more bytes than the buffer holds.
    pub bad_length: u64,
}

/// One NIC: driver, transmit pool and counters.
pub struct Nic {
    /// The driver.
    pub driver: NetDriver,
    pool: Vec<Slot>,
    /// Receive buffers allocated so far, and the goal.
    receive_buffers: usize,
    receive_goal: usize,
    /// Counters.
    pub stats: NicStats,
}

impl Nic {
    /// Allocates up to `count` more receive buffers and posts them.
    fn add_receive_buffers(&mut self, index: u8, count: usize) {
        let count = count.min(self.receive_goal - self.receive_buffers);
        let size = self.driver.header_len() + self.driver.buffer_size();
        let slots = carve(size, count, Home::Receive(index));
        if slots.len() < count {
            log::error!(
                "eth{index}: out of memory for receive buffers ({} of {})",
                self.receive_buffers,
                self.receive_goal
            );
            self.receive_goal = self.receive_buffers;
        }
        for slot in slots {
            if self.driver.post_receive(slot).is_err() {
                log::error!("eth{index}: receive queue refused a new buffer");
                break;
            }
            self.receive_buffers += 1;
        }
        self.driver.flush();
    }
}

/// A transmit-pool buffer holding room for one frame of a fixed length
/// after the NIC's virtio header.
pub struct OutFrame {
    slot: Slot,
    header: usize,
    len: usize,
}

impl OutFrame {
    /// The frame's bytes (exactly the length asked for).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let range = self.header..self.header + self.len;
        // `take_frame` checked the range fits the buffer.
        self.slot.bytes_mut().get_mut(range).unwrap_or(&mut [])
    }
}

/// Every NIC, by interface index.
pub struct NicSet {
    nics: Vec<RefCell<Nic>>,
    /// Buffers whose device is done with them, waiting to go home.
    returned: RefCell<Vec<Slot>>,
}

impl NicSet {
    /// Takes the drivers (eth0 first), allocates their buffers and fills
    /// their receive queues.
    pub fn new(drivers: Vec<NetDriver>) -> NicSet {
        let mut nics = Vec::with_capacity(drivers.len());
        for (index, driver) in drivers.into_iter().enumerate() {
            let index = index as u8;
            let header = driver.header_len();
            let big = driver.buffer_size() > 4096;
            let (at_boot, goal) = if big {
                (RECEIVE_BUFFERS_BIG_AT_BOOT, RECEIVE_BUFFERS_BIG)
            } else {
                (RECEIVE_BUFFERS_SMALL, RECEIVE_BUFFERS_SMALL)
            };
            let pool = carve(header + TRANSMIT_BUFFER, TRANSMIT_POOL, Home::TransmitPool(index));
            let mut nic = Nic { driver, pool, receive_buffers: 0, receive_goal: goal, stats: NicStats::default() };
            nic.add_receive_buffers(index, at_boot);
            nics.push(RefCell::new(nic));
        }
        let capacity = nics.len() * (RECEIVE_BUFFERS_SMALL + TRANSMIT_POOL);
        NicSet { nics, returned: RefCell::new(Vec::with_capacity(capacity)) }
    }

    /// Adds a step of receive buffers to NICs below their goal (64 KiB
    /// buffers are allocated a few at a time after boot).
    /// Returns whether it added any.
    pub fn grow(&self) -> bool {
        for (index, cell) in self.nics.iter().enumerate() {
            let mut nic = cell.borrow_mut();
            if nic.receive_buffers < nic.receive_goal {
                nic.add_receive_buffers(index as u8, RECEIVE_BUFFERS_BIG_STEP);
                return true;
            }
        }
        false
    }

    /// Number of NICs.
    pub fn len(&self) -> usize {
        self.nics.len()
    }

    /// The NIC at `index`.
    pub fn nic(&self, index: usize) -> Option<&RefCell<Nic>> {
        self.nics.get(index)
    }

    /// The next received frame on NIC `index`: the buffer and the frame's
    /// range in it (after the virtio header).
    pub fn receive(&self, index: usize) -> Option<(Slot, core::ops::Range<usize>)> {
        let mut nic = self.nics.get(index)?.borrow_mut();
        let header = nic.driver.header_len();
        let (slot, written) = nic.driver.receive()?;
        nic.stats.received += 1;
        Some((slot, header..written.max(header)))
    }

    /// Sends the received frame in `slot` (frame bytes `frame_len` long,
    /// rewritten in place) out of NIC `out`, without copying.
    pub fn forward(&self, out: usize, mut slot: Slot, frame_len: usize) {
        let Some(cell) = self.nics.get(out) else {
            self.recycle(slot);
            return;
        };
        let mut nic = cell.borrow_mut();
        let header = nic.driver.header_len();
        // DATA_VALID and num_buffers mean nothing on transmit.
        let Some(hdr) = slot.bytes_mut().get_mut(..header) else {
            drop(nic);
            self.recycle(slot);
            return;
        };
        hdr[0] &= HDR_NEEDS_CSUM;
        if let Some(num_buffers) = hdr.get_mut(10..12) {
            num_buffers.fill(0);
        }
        let (flags, gso_type) = (hdr[0], hdr[1]);
        if !nic.driver.can_transmit(flags, gso_type) {
            nic.stats.offload_missing += 1;
            drop(nic);
            self.recycle(slot);
            return;
        }
        let result = nic.driver.transmit(slot, header + frame_len);
        self.after_transmit(nic, result);
    }

    /// A free buffer of NIC `out`'s transmit pool, for a frame of `len`
    /// bytes; `None` (counted) if the pool is empty or the frame too large.
    pub fn take_frame(&self, out: usize, len: usize) -> Option<OutFrame> {
        let mut nic = self.nics.get(out)?.borrow_mut();
        if nic.pool.is_empty() {
            self.reclaim_into(&mut nic);
        }
        let Some(slot) = nic.pool.pop() else {
            nic.stats.pool_empty += 1;
            return None;
        };
        let header = nic.driver.header_len();
        if header + len > slot.capacity() {
            nic.stats.too_large += 1;
            nic.pool.push(slot);
            return None;
        }
        Some(OutFrame { slot, header, len })
    }

    /// Sends a frame from `take_frame` out of NIC `out`, with a plain (no
    /// offload) virtio header.
    pub fn send_frame(&self, out: usize, frame: OutFrame) {
        let OutFrame { mut slot, header, len } = frame;
        let Some(cell) = self.nics.get(out) else {
            self.recycle(slot);
            return;
        };
        if let Some(room) = slot.bytes_mut().get_mut(..header) {
            room.fill(0);
        }
        let mut nic = cell.borrow_mut();
        let result = nic.driver.transmit(slot, header + len);
        self.after_transmit(nic, result);
    }

    /// Sends a copy of `frame` out of NIC `out`; false (counted) if it could not.
    pub fn send_copy(&self, out: usize, frame: &[u8]) -> bool {
        let Some(mut buffer) = self.take_frame(out, frame.len()) else {
            return false;
        };
        buffer.bytes_mut().copy_from_slice(frame);
        self.send_frame(out, buffer);
        true
    }

    fn after_transmit(&self, mut nic: core::cell::RefMut<Nic>, result: Result<(), Slot>) {
        match result {
            Ok(()) => nic.stats.sent += 1,
            Err(slot) => {
                nic.stats.queue_full += 1;
                drop(nic);
                self.recycle(slot);
            }
        }
    }

    /// Collects `nic`'s finished transmissions; pool buffers go straight
    /// back, received buffers wait in `returned` for `reclaim`.
    fn reclaim_into(&self, nic: &mut Nic) {
        let mut returned = self.returned.borrow_mut();
        let pool = &mut nic.pool;
        nic.driver.reclaim_transmitted(|slot| match slot.home() {
            Home::TransmitPool(_) => pool.push(slot),
            Home::Receive(_) => returned.push(slot),
        });
    }

    /// Returns every finished buffer home and tells the devices about
    /// everything queued since the last flush.
    pub fn reclaim_and_flush(&self) {
        for cell in &self.nics {
            self.reclaim_into(&mut cell.borrow_mut());
        }
        // Swap the list out (no allocation: it keeps its capacity) so that
        // `recycle` can borrow the NICs freely.
        let mut returned = core::mem::take(&mut *self.returned.borrow_mut());
        for slot in returned.drain(..) {
            self.recycle(slot);
        }
        *self.returned.borrow_mut() = returned;
        for cell in &self.nics {
            cell.borrow_mut().driver.flush();
        }
    }

    /// Sends a buffer home: its NIC's receive queue or transmit pool.
    pub fn recycle(&self, slot: Slot) {
        let (Home::Receive(index) | Home::TransmitPool(index)) = slot.home();
        let Some(cell) = self.nics.get(usize::from(index)) else {
            return;
        };
        let mut nic = cell.borrow_mut();
        match slot.home() {
            Home::TransmitPool(_) => nic.pool.push(slot),
            Home::Receive(_) => {
                if nic.driver.post_receive(slot).is_err() {
                    log::error!("eth{index}: receive queue full while returning a buffer; buffer lost");
                }
            }
        }
    }
}

impl FrameSink for &NicSet {
    fn send(&mut self, out_if: IfIndex, frame: &[u8]) -> bool {
        self.send_copy(usize::from(out_if), frame)
    }
}
