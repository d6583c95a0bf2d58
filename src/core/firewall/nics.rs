//! All NICs and their buffers. Received buffers go back to their NIC's
//! receive queue once the frame is done with, or after another NIC sent
//! them (zero-copy forwarding); frames the firewall makes itself (its IP
//! stack's replies, ICMP errors, ARP) come from a small transmit pool per
//! NIC. Every failure to send is returned as a [`DropReason`] for the
//! caller to count, and every buffer is always somewhere: in a receive
//! queue, a transmit queue, a pool, or the caller's hands.
//!
//! The device is a trait ([`NetDevice`]) so that this accounting is tested
//! on the host against a fake device; the kernel's virtio-net driver
//! implements it with DMA buffers.

use alloc::vec::Vec;
use core::ops::Range;

use crate::flow::IfIndex;
use crate::net::parse::ETHERNET_HEADER_LEN;
use crate::net::segment::Segmenter;
use crate::net::{DropReason, FrameSink};
use crate::virtio_net::{self, feature, Header, GSO_NONE};

/// A NIC's receive buffers fill its ring ([`NetDevice::receive_ring_size`])
/// up to this many: 64 KiB ones are posted a few at
/// start, then grown in steps by [`NicSet::grow`], so that boot does not
/// wait for megabytes to be cleared; 2 KiB ones all at start. 64 buffers
/// held 64-byte frames at 74,478 frames/s, a ring of 256 at 92,492-107,635
/// (README, "Receive buffers").
pub const RECEIVE_BUFFERS_BIG: usize = 256;
/// Of those, the ones every NIC gets however short memory is (failing to
/// get them is an error); growing past them waits until the kernel says
/// memory is to spare, and stops quietly when it is not.
pub const RECEIVE_BUFFERS_BIG_ASSURED: usize = 64;
/// 64 KiB receive buffers posted at start.
pub const RECEIVE_BUFFERS_BIG_AT_BOOT: usize = 8;
/// 64 KiB receive buffers added per [`NicSet::grow`].
pub const RECEIVE_BUFFERS_BIG_STEP: usize = 8;
/// The same with 2 KiB buffers.
pub const RECEIVE_BUFFERS_SMALL: usize = RECEIVE_BUFFERS_BIG;
/// Transmit-pool buffers per NIC, for frames the firewall makes itself:
/// a 64 KiB TCP segment cut in software toward a NIC without TSO is 46
/// frames, sent before the device has returned any (97 KiB at MTU 1500).
pub const TRANSMIT_POOL: usize = 64;
/// Largest frame the firewall makes itself (Ethernet header + 1500).
pub const TRANSMIT_BUFFER: usize = 1514;

/// Where a buffer returns after use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// The receive queue of this NIC.
    Receive(IfIndex),
    /// The transmit pool of this NIC (frames the firewall makes itself).
    TransmitPool(IfIndex),
}

impl Home {
    /// The NIC the buffer belongs to.
    pub fn nic(self) -> usize {
        let (Home::Receive(index) | Home::TransmitPool(index)) = self;
        usize::from(index)
    }
}

/// A packet buffer: a virtio-net header's room followed by one frame. The
/// value is the exclusive right to the memory; it moves into a device queue
/// and comes back.
pub trait Buffer: Sized {
    /// `count` buffers of at least `size` bytes returning to `home`; fewer
    /// (possibly none) when memory is short.
    fn carve(size: usize, count: usize, home: Home) -> Vec<Self>;
    /// The whole buffer.
    fn bytes(&self) -> &[u8];
    /// The whole buffer, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Where it returns.
    fn home(&self) -> Home;
}

/// A NIC's queues, as the firewall uses them.
pub trait NetDevice {
    /// Its buffers.
    type Buffer: Buffer;
    /// The MAC address.
    fn mac(&self) -> [u8; 6];
    /// Negotiated virtio-net feature bits.
    fn features(&self) -> u64;
    /// Posts an empty buffer to the receive queue; gives it back if full.
    fn post_receive(&mut self, buffer: Self::Buffer) -> Result<(), Self::Buffer>;
    /// The next received frame: its buffer and the bytes the device wrote
    /// (virtio header included).
    fn receive(&mut self) -> Option<(Self::Buffer, usize)>;
    /// Queues `buffer[..len]` (header and frame) for sending; gives the
    /// buffer back if the queue is full.
    fn transmit(&mut self, buffer: Self::Buffer, len: usize) -> Result<(), Self::Buffer>;
    /// Hands each buffer the device has finished sending to `done`.
    fn reclaim_transmitted(&mut self, done: &mut dyn FnMut(Self::Buffer));
    /// Tells the device about everything queued since the last flush.
    fn flush(&mut self);
    /// How many buffers the receive queue holds (a full ring is each
    /// NIC's goal); [`RECEIVE_BUFFERS_BIG`] unless the device says.
    fn receive_ring_size(&self) -> usize {
        RECEIVE_BUFFERS_BIG
    }
    /// Notifications sent and suppressed so far (none by default).
    fn notifications(&self) -> Notifications {
        Notifications::default()
    }
}

/// How often a driver told its device about new buffers, and how often it
/// had some but the device had asked not to be told (it was still working).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notifications {
    /// Batches the device was notified of.
    pub sent: u64,
    /// Batches it was not, at its request.
    pub suppressed: u64,
}

/// One NIC: its device, transmit pool and receive-buffer goal.
struct Nic<D: NetDevice> {
    device: D,
    pool: Vec<D::Buffer>,
    header_len: usize,
    /// The largest frame a transmit-pool buffer holds.
    frame_size: usize,
    /// Receive buffers allocated so far, the goal, and how many of them
    /// are assured (see [`RECEIVE_BUFFERS_BIG_ASSURED`]).
    receive_buffers: usize,
    receive_goal: usize,
    receive_assured: usize,
    /// Whether growth past the assured buffers is waiting for memory (said
    /// once on the console each time it starts waiting).
    held_back: bool,
}

impl<D: NetDevice> Nic<D> {
    /// Allocates up to `count` more receive buffers and posts them.
    fn add_receive_buffers(&mut self, index: IfIndex, count: usize) {
        let count = count.min(self.receive_goal.saturating_sub(self.receive_buffers));
        let size = self.header_len + virtio_net::buffer_size(self.device.features());
        let buffers = D::Buffer::carve(size, count, Home::Receive(index));
        if buffers.len() < count {
            let got = self.receive_buffers + buffers.len();
            if got < self.receive_assured {
                log::error!("eth{index}: out of memory for receive buffers ({got} of {})", self.receive_goal);
            } else {
                log::info!("eth{index}: {got} receive buffers of {} (memory is short)", self.receive_goal);
            }
            self.receive_goal = got;
        }
        for buffer in buffers {
            if self.device.post_receive(buffer).is_err() {
                log::error!("eth{index}: receive queue refused a new buffer");
                self.receive_goal = self.receive_buffers;
                break;
            }
            self.receive_buffers += 1;
        }
        self.device.flush();
    }
}

/// A transmit-pool buffer holding room for one frame of a fixed length
/// after the NIC's virtio header.
pub struct OutFrame<B: Buffer> {
    buffer: B,
    header: usize,
    len: usize,
}

impl<B: Buffer> OutFrame<B> {
    /// The frame's bytes (exactly the length asked for).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let range = self.header..self.header + self.len;
        // `take_frame` checked that the range fits the buffer.
        self.buffer.bytes_mut().get_mut(range).unwrap_or(&mut [])
    }

    /// The buffer and where the frame lies in it (to hand the frame to a
    /// stack as if received; it returns to its pool when done with).
    pub fn into_parts(self) -> (B, Range<usize>) {
        (self.buffer, self.header..self.header + self.len)
    }
}

/// Every NIC, by interface index. An index may have no NIC (a name bound
/// to a MAC address that no NIC has): it receives nothing, and sending
/// there fails with [`DropReason::UnknownInterface`].
pub struct NicSet<D: NetDevice> {
    nics: Vec<Option<Nic<D>>>,
    /// Buffers whose device is done with them, waiting to go home.
    returned: Vec<D::Buffer>,
}

impl<D: NetDevice> NicSet<D> {
    /// Takes the devices (eth0 first), allocates their buffers and fills
    /// their receive queues.
    pub fn new(devices: Vec<D>) -> NicSet<D> {
        NicSet::with_slots(devices.into_iter().map(Some).collect())
    }

    /// [`NicSet::new`] for devices by interface index, with gaps.
    pub fn with_slots(devices: Vec<Option<D>>) -> NicSet<D> {
        NicSet::with_slots_and_mtus(devices, &[])
    }

    /// [`NicSet::with_slots`] for interfaces with MTUs (by index; 1500
    /// where none is given): the transmit pool, which carries fragments
    /// and software segments, holds a frame of the interface's MTU.
    pub fn with_slots_and_mtus(devices: Vec<Option<D>>, mtus: &[u16]) -> NicSet<D> {
        let mut nics = Vec::with_capacity(devices.len());
        for (index, device) in devices.into_iter().enumerate() {
            let index = index as IfIndex;
            let Some(device) = device else {
                nics.push(None);
                continue;
            };
            let header_len = virtio_net::header_len(device.features());
            let big = virtio_net::buffer_size(device.features()) > 4096;
            // A ring larger than 256 (virtio-mmio offers 1,024) gets 256
            // buffers: 1,024 held no more 64-byte frames (README).
            let ring = device.receive_ring_size().clamp(1, RECEIVE_BUFFERS_BIG);
            let (at_boot, assured, goal) = if big {
                (RECEIVE_BUFFERS_BIG_AT_BOOT.min(ring), RECEIVE_BUFFERS_BIG_ASSURED.min(ring), ring)
            } else {
                (ring, ring, ring)
            };
            let mtu = mtus.get(usize::from(index)).map_or(0, |&mtu| usize::from(mtu));
            let frame_size = TRANSMIT_BUFFER.max(ETHERNET_HEADER_LEN + mtu);
            let pool = D::Buffer::carve(header_len + frame_size, TRANSMIT_POOL, Home::TransmitPool(index));
            let mut nic = Nic {
                device,
                pool,
                header_len,
                frame_size,
                receive_buffers: 0,
                receive_goal: goal,
                receive_assured: assured,
                held_back: false,
            };
            nic.add_receive_buffers(index, at_boot);
            nics.push(Some(nic));
        }
        // Every buffer there is could come back in one reclaim.
        let capacity = nics.iter().flatten().map(|nic| nic.receive_goal + TRANSMIT_POOL).sum();
        NicSet { nics, returned: Vec::with_capacity(capacity) }
    }

    /// Adds a step of receive buffers to the first NIC below its goal (64
    /// KiB buffers are allocated a few at a time after start), past the
    /// assured ones only with `spare_memory`. Returns whether it added any.
    /// A NIC held at its assured buffers for want of spare memory is said
    /// on the console (once, until it grows again): a small VM is not
    /// silently at fewer buffers than its ring holds.
    pub fn grow(&mut self, spare_memory: bool) -> bool {
        for (index, nic) in self.nics.iter_mut().enumerate() {
            let Some(nic) = nic else { continue };
            let limit = if spare_memory { nic.receive_goal } else { nic.receive_goal.min(nic.receive_assured) };
            if nic.receive_buffers < limit {
                nic.add_receive_buffers(index as IfIndex, RECEIVE_BUFFERS_BIG_STEP);
                nic.held_back = false;
                return true;
            }
            if nic.receive_buffers < nic.receive_goal && !nic.held_back {
                nic.held_back = true;
                log::info!(
                    "eth{index}: {} receive buffers of {} for now (the heap keeps its reserve; more when memory is spare)",
                    nic.receive_buffers,
                    nic.receive_goal
                );
            }
        }
        false
    }

    /// Whether NIC `index`'s receive buffers wait below their goal for
    /// spare memory (see [`NicSet::grow`]).
    pub fn held_back(&self, index: usize) -> bool {
        self.nics.get(index).and_then(Option::as_ref).is_some_and(|nic| nic.held_back)
    }

    /// Number of interface indices (NICs and gaps).
    pub fn len(&self) -> usize {
        self.nics.len()
    }

    /// Whether there are no NICs.
    pub fn is_empty(&self) -> bool {
        self.nics.is_empty()
    }

    /// The device of NIC `index` (for what only the kernel does with it:
    /// interrupts).
    pub fn device_mut(&mut self, index: usize) -> Option<&mut D> {
        self.nic_mut(index).map(|nic| &mut nic.device)
    }

    /// The device of NIC `index`.
    pub fn device(&self, index: usize) -> Option<&D> {
        self.nic(index).map(|nic| &nic.device)
    }

    fn nic(&self, index: usize) -> Option<&Nic<D>> {
        self.nics.get(index).and_then(Option::as_ref)
    }

    fn nic_mut(&mut self, index: usize) -> Option<&mut Nic<D>> {
        self.nics.get_mut(index).and_then(Option::as_mut)
    }

    /// Receive buffers allocated for NIC `index`, and its goal.
    pub fn receive_buffers(&self, index: usize) -> Option<(usize, usize)> {
        self.nic(index).map(|nic| (nic.receive_buffers, nic.receive_goal))
    }

    /// The largest frame (Ethernet header on) NIC `index`'s transmit pool
    /// holds; 0 without a NIC.
    pub fn largest_frame(&self, index: usize) -> usize {
        self.nic(index).map_or(0, |nic| nic.frame_size)
    }

    /// Free buffers in NIC `index`'s transmit pool.
    pub fn pool_free(&self, index: usize) -> usize {
        self.nic(index).map_or(0, |nic| nic.pool.len())
    }

    /// The next received frame on NIC `index`: the buffer and the frame's
    /// range in it (after the virtio header). The range may extend past the
    /// buffer when the device claims more bytes than it holds; the caller
    /// checks it.
    pub fn receive(&mut self, index: usize) -> Option<(D::Buffer, Range<usize>)> {
        let nic = self.nic_mut(index)?;
        let header = nic.header_len;
        let (buffer, written) = nic.device.receive()?;
        Some((buffer, header..written.max(header)))
    }

    /// Sends the received frame in `buffer` (frame bytes `frame_len` long,
    /// rewritten in place) out of NIC `out`, without copying. A partial
    /// checksum toward a NIC that did not negotiate checksum offload is
    /// completed here, in software. On failure the buffer has gone home and
    /// the reason is returned.
    pub fn forward(&mut self, out: usize, mut buffer: D::Buffer, frame_len: usize) -> Result<(), DropReason> {
        let Some(nic) = self.nics.get_mut(out).and_then(Option::as_mut) else {
            self.recycle(buffer);
            return Err(DropReason::UnknownInterface);
        };
        let header_len = nic.header_len;
        let Some(mut header) = Header::new(buffer.bytes_mut(), header_len) else {
            self.recycle(buffer);
            return Err(DropReason::TransmitTooLarge);
        };
        header.prepare_forward();
        let (flags, gso_type, features) = (header.flags(), header.gso_type(), nic.device.features());
        let segment_size = header.tcp_segment_size();
        let frame = header_len..header_len.saturating_add(frame_len);
        // What the NIC cannot offload is done here: a checksum is
        // completed, a TCP segmentation done in software.
        let sendable = virtio_net::can_transmit(features, flags, gso_type);
        if !sendable && gso_type != GSO_NONE {
            if let Some(mss) = segment_size {
                return self.segment_in_software(out, buffer, frame, mss);
            }
        }
        let sendable = sendable
            || (features & feature::CSUM == 0
                && gso_type == GSO_NONE
                && virtio_net::complete_checksum(buffer.bytes_mut(), header_len, frame));
        if !sendable {
            self.recycle(buffer);
            return Err(DropReason::OffloadMissing);
        }
        let result = nic.device.transmit(buffer, header_len + frame_len);
        self.after_transmit(result)
    }

    /// Sends the TCP segmentation offload in `buffer[frame]` out of NIC
    /// `out` as the segments of `mss` bytes a NIC with TSO would have made
    /// (a NIC without TSO behind one with it), each copied into a
    /// transmit-pool buffer with its checksums complete. The buffer goes
    /// home; the first failure, if any, is returned (later segments are
    /// still tried: TCP recovers lost ones).
    fn segment_in_software(
        &mut self,
        out: usize,
        buffer: D::Buffer,
        frame: Range<usize>,
        mss: u16,
    ) -> Result<(), DropReason> {
        let bytes = buffer.bytes().get(frame).unwrap_or(&[]);
        let Some(plan) = Segmenter::new(bytes, mss) else {
            self.recycle(buffer);
            return Err(DropReason::OffloadMissing);
        };
        let mut result = Ok(());
        for index in 0..plan.count() {
            let sent = self.send_segment(out, &plan, bytes, index);
            result = result.and(sent);
        }
        self.recycle(buffer);
        result
    }

    /// Writes segment `index` of `plan` into a pool buffer of NIC `out` and sends it.
    fn send_segment(&mut self, out: usize, plan: &Segmenter, frame: &[u8], index: usize) -> Result<(), DropReason> {
        let len = ETHERNET_HEADER_LEN + plan.max_ip_len();
        let mut buffer = self.take_frame(out, len)?;
        match plan.write(frame, index, buffer.bytes_mut()) {
            Some(written) => {
                buffer.len = written;
                self.send_frame(out, buffer)
            }
            None => {
                self.recycle(buffer.buffer);
                Err(DropReason::TransmitTooLarge)
            }
        }
    }

    /// A free buffer of NIC `out`'s transmit pool, for a frame of `len`
    /// bytes; the reason if the pool is empty or the frame too large.
    pub fn take_frame(&mut self, out: usize, len: usize) -> Result<OutFrame<D::Buffer>, DropReason> {
        let Some(nic) = self.nics.get_mut(out).and_then(Option::as_mut) else {
            return Err(DropReason::UnknownInterface);
        };
        if nic.pool.is_empty() {
            reclaim_into(nic, &mut self.returned);
        }
        let Some(buffer) = nic.pool.pop() else {
            return Err(DropReason::TransmitPoolEmpty);
        };
        let header = nic.header_len;
        if header + len > buffer.bytes().len() {
            nic.pool.push(buffer);
            return Err(DropReason::TransmitTooLarge);
        }
        Ok(OutFrame { buffer, header, len })
    }

    /// Gives a frame from `take_frame` back unsent (the OUTPUT chain refused it).
    pub fn discard(&mut self, frame: OutFrame<D::Buffer>) {
        self.recycle(frame.buffer);
    }

    /// Sends a frame from `take_frame` out of NIC `out`, with a plain (no
    /// offload) virtio header.
    pub fn send_frame(&mut self, out: usize, frame: OutFrame<D::Buffer>) -> Result<(), DropReason> {
        let OutFrame { mut buffer, header, len } = frame;
        let Some(nic) = self.nics.get_mut(out).and_then(Option::as_mut) else {
            self.recycle(buffer);
            return Err(DropReason::UnknownInterface);
        };
        if let Some(mut view) = Header::new(buffer.bytes_mut(), header) {
            view.clear();
        }
        let result = nic.device.transmit(buffer, header + len);
        self.after_transmit(result)
    }

    /// Sends a copy of `frame` out of NIC `out`.
    pub fn send_copy(&mut self, out: usize, frame: &[u8]) -> Result<(), DropReason> {
        let mut buffer = self.take_frame(out, frame.len())?;
        buffer.bytes_mut().copy_from_slice(frame);
        self.send_frame(out, buffer)
    }

    fn after_transmit(&mut self, result: Result<(), D::Buffer>) -> Result<(), DropReason> {
        result.map_err(|buffer| {
            self.recycle(buffer);
            DropReason::TransmitQueueFull
        })
    }

    /// Returns every finished buffer home and tells the devices about
    /// everything queued since the last flush.
    pub fn reclaim_and_flush(&mut self) {
        self.reclaim();
        self.notify();
    }

    /// Returns every finished buffer home (receive queues refilled).
    pub fn reclaim(&mut self) {
        for nic in self.nics.iter_mut().flatten() {
            reclaim_into(nic, &mut self.returned);
        }
        // Take the list (it keeps its capacity: no allocation) so that
        // `recycle` can reach the NICs.
        let mut returned = core::mem::take(&mut self.returned);
        for buffer in returned.drain(..) {
            self.recycle(buffer);
        }
        self.returned = returned;
    }

    /// Notifications sent and suppressed, all NICs.
    pub fn notifications(&self) -> Notifications {
        self.nics.iter().flatten().map(|nic| nic.device.notifications()).fold(Notifications::default(), |a, b| {
            Notifications { sent: a.sent + b.sent, suppressed: a.suppressed + b.suppressed }
        })
    }

    /// Tells the devices about everything queued since the last call.
    pub fn notify(&mut self) {
        for nic in self.nics.iter_mut().flatten() {
            nic.device.flush();
        }
    }

    /// Sends a buffer home: its NIC's receive queue or transmit pool.
    pub fn recycle(&mut self, buffer: D::Buffer) {
        let home = buffer.home();
        let Some(nic) = self.nic_mut(home.nic()) else {
            return;
        };
        match home {
            Home::TransmitPool(_) => nic.pool.push(buffer),
            Home::Receive(index) => {
                if nic.device.post_receive(buffer).is_err() {
                    // Cannot happen while every buffer is accounted for: a
                    // NIC's queue holds all of its receive buffers.
                    log::error!("eth{index}: receive queue full while returning a buffer; buffer lost");
                    nic.receive_buffers = nic.receive_buffers.saturating_sub(1);
                }
            }
        }
    }
}

/// Collects `nic`'s finished transmissions; pool buffers go straight back,
/// received buffers (other NICs' too) wait in `returned`.
fn reclaim_into<D: NetDevice>(nic: &mut Nic<D>, returned: &mut Vec<D::Buffer>) {
    let pool = &mut nic.pool;
    nic.device.reclaim_transmitted(&mut |buffer| match buffer.home() {
        Home::TransmitPool(_) => pool.push(buffer),
        Home::Receive(_) => returned.push(buffer),
    });
}

impl<D: NetDevice> FrameSink for NicSet<D> {
    fn send(&mut self, out_if: IfIndex, frame: &[u8]) -> Result<(), DropReason> {
        self.send_copy(usize::from(out_if), frame)
    }
}
