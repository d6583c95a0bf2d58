//! A virtio-net driver with checksum and TCP segmentation offloads and
//! notification suppression, on virtio-drivers' `Transport` and unifw's own
//! split virtqueue (`unifw_core::virtqueue`: virtio-drivers' `VirtQueue`
//! stalls after 65,536 buffers with event indices; its own `VirtIONet`
//! negotiates no offloads and copies every frame).
//!
//! With `GUEST_TSO4`/`HOST_TSO4` the host hands the firewall whole TCP
//! segments of up to 64 KiB and takes them back the same way, so one
//! forwarding decision moves up to 64 KiB: receive buffers are large enough
//! for such segments ("big packets" mode, no `MRG_RXBUF`). Buffers are
//! `Slot`s: posted to a queue, returned when the device is done, and never
//! copied on the forwarding path. Receive interrupts stay off while the
//! loop polls and notifications go out once per pass, only when the device
//! asked for them (`RING_EVENT_IDX` when negotiated, the rings' flags
//! otherwise).

use super::buffers::Slot;
use super::ring::KernelRing;
use super::{AnyTransport, MAX_QUEUE_SIZE};
use alloc::vec::Vec;
use unifw_core::firewall::{Buffer, NetDevice, Notifications};
use unifw_core::virtio_net::{feature, negotiate};
use unifw_core::virtqueue::{Layout, SplitQueue};
use virtio_drivers::transport::{DeviceStatus, InterruptStatus, Transport};
use virtio_drivers::Error;

const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;

/// One virtio-net device.
pub struct NetDriver {
    transport: AnyTransport,
    rx: SplitQueue<KernelRing>,
    tx: SplitQueue<KernelRing>,
    /// The buffer the device holds under each receive and transmit token.
    rx_slots: Vec<Option<Slot>>,
    tx_slots: Vec<Option<Slot>>,
    mac: [u8; 6],
    features: u64,
    /// Used-ring entries that named no buffer the device held.
    out_of_step: u64,
}

/// Sets up queue `index` with the device's size, at most `MAX_QUEUE_SIZE`
/// (the largest power of two within both).
fn queue(transport: &mut AnyTransport, index: u16, event_idx: bool) -> Result<SplitQueue<KernelRing>, Error> {
    if transport.queue_used(index) {
        return Err(Error::AlreadyUsed);
    }
    let offered = transport.max_queue_size(index).min(MAX_QUEUE_SIZE);
    if offered == 0 {
        return Err(Error::InvalidParam);
    }
    let size = 1u32 << offered.ilog2();
    let layout = u16::try_from(size).ok().and_then(Layout::new).ok_or(Error::InvalidParam)?;
    let memory = KernelRing::allocate(layout).ok_or(Error::DmaError)?;
    let base = memory.address();
    transport.queue_set(index, size, base, base + layout.avail as u64, base + layout.used as u64);
    Ok(SplitQueue::new(memory, layout, event_idx))
}

fn slots(queue: &SplitQueue<KernelRing>) -> Vec<Option<Slot>> {
    (0..queue.layout().size).map(|_| None).collect()
}

impl NetDriver {
    /// Resets and initialises the device, negotiating `wanted` offloads
    /// and `RING_EVENT_IDX` (of `feature::OFFLOADS | RING_EVENT_IDX`) where
    /// the device offers them.
    pub fn new(mut transport: AnyTransport, wanted: u64) -> Result<NetDriver, Error> {
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let offered = transport.read_device_features();
        let features = negotiate(offered, wanted);
        transport.write_driver_features(features);
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            transport.set_status(DeviceStatus::FAILED);
            return Err(Error::Unsupported);
        }
        transport.set_guest_page_size(4096);
        let mac = if features & feature::MAC != 0 { transport.read_config_space::<[u8; 6]>(0)? } else { [0; 6] };
        let event_idx = features & feature::RING_EVENT_IDX != 0;
        let rx = queue(&mut transport, RECEIVE_QUEUE, event_idx)?;
        let mut tx = queue(&mut transport, TRANSMIT_QUEUE, event_idx)?;
        // Transmit completions keep their interrupts: the CPU never takes
        // them while it polls (interrupts masked), and with them off the
        // 64-byte rate fell from 74,478 to 59,973 frames/s (event index)
        // and 29,707 (flags) while notifying cost 9.9 us a frame instead
        // of 1.1 (README, "Notification suppression").
        tx.set_interrupts(true);
        transport.finish_init();
        let (rx_slots, tx_slots) = (slots(&rx), slots(&tx));
        Ok(NetDriver { transport, rx, tx, rx_slots, tx_slots, mac, features, out_of_step: 0 })
    }

    /// The transport.
    pub fn transport(&self) -> &AnyTransport {
        &self.transport
    }

    /// Whether a received frame is waiting.
    pub fn can_receive(&self) -> bool {
        self.rx.can_take()
    }

    /// Asks for (or stops) receive interrupts; on, returns whether a frame
    /// arrived meanwhile.
    pub fn set_receive_interrupts(&mut self, enable: bool) -> bool {
        self.rx.set_interrupts(enable)
    }

    /// The transmit queue's size.
    pub fn transmit_ring_size(&self) -> usize {
        usize::from(self.tx.layout().size)
    }

    /// Acknowledges the device's interrupt line (lowers it).
    pub fn ack_interrupt(&mut self) -> InterruptStatus {
        self.transport.ack_interrupt()
    }

    fn note_out_of_step(&mut self, queue: &str) {
        self.out_of_step += 1;
        // The count says how often; the log says it happened.
        if self.out_of_step.is_power_of_two() {
            log::error!("virtio-net: {queue} queue out of step ({} entries so far)", self.out_of_step);
        }
    }
}

impl NetDevice for NetDriver {
    type Buffer = Slot;

    /// The MAC address.
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Negotiated feature bits.
    fn features(&self) -> u64 {
        self.features
    }

    /// Posts an empty buffer to the receive queue; gives it back if full.
    fn post_receive(&mut self, mut slot: Slot) -> Result<(), Slot> {
        let bytes = slot.bytes_mut();
        let (address, len) = (bytes.as_mut_ptr() as u64, bytes.len() as u32);
        // The slot stays in `rx_slots[token]` until the device returns it,
        // so its memory is the device's alone meanwhile.
        let Some(token) = self.rx.add(address, len, true) else {
            return Err(slot);
        };
        match self.rx_slots.get_mut(usize::from(token)) {
            Some(entry) => *entry = Some(slot),
            None => return Err(slot),
        }
        Ok(())
    }

    /// Takes the next received frame: its buffer and the bytes the device
    /// wrote (virtio header included).
    fn receive(&mut self) -> Option<(Slot, usize)> {
        loop {
            match self.rx.take() {
                Ok(Some((token, len))) => match self.rx_slots.get_mut(usize::from(token)).and_then(Option::take) {
                    Some(slot) => {
                        let len = (len as usize).min(slot.bytes().len());
                        return Some((slot, len));
                    }
                    None => self.note_out_of_step("receive"),
                },
                Ok(None) => return None,
                Err(_) => self.note_out_of_step("receive"),
            }
        }
    }

    /// Queues `slot[..len]` (header and frame) for transmission; gives the
    /// slot back if the queue is full.
    fn transmit(&mut self, slot: Slot, len: usize) -> Result<(), Slot> {
        let Some(bytes) = slot.bytes().get(..len) else {
            return Err(slot);
        };
        let address = bytes.as_ptr() as u64;
        let Some(token) = self.tx.add(address, len as u32, false) else {
            return Err(slot);
        };
        match self.tx_slots.get_mut(usize::from(token)) {
            Some(entry) => *entry = Some(slot),
            None => return Err(slot),
        }
        Ok(())
    }

    /// Hands each buffer the device has finished sending to `done`.
    fn reclaim_transmitted(&mut self, done: &mut dyn FnMut(Slot)) {
        loop {
            match self.tx.take() {
                Ok(Some((token, _))) => match self.tx_slots.get_mut(usize::from(token)).and_then(Option::take) {
                    Some(slot) => done(slot),
                    None => self.note_out_of_step("transmit"),
                },
                Ok(None) => return,
                Err(_) => self.note_out_of_step("transmit"),
            }
        }
    }

    /// Tells the device about posted buffers, once per batch, if it asked.
    fn flush(&mut self) {
        if self.tx.should_notify() {
            self.transport.notify(TRANSMIT_QUEUE);
        }
        if self.rx.should_notify() {
            self.transport.notify(RECEIVE_QUEUE);
        }
    }

    /// The receive queue's size.
    fn receive_ring_size(&self) -> usize {
        usize::from(self.rx.layout().size)
    }

    /// Batches notified and suppressed, both queues.
    fn notifications(&self) -> Notifications {
        let (tx_sent, tx_suppressed) = self.tx.notification_counts();
        let (rx_sent, rx_suppressed) = self.rx.notification_counts();
        Notifications { sent: tx_sent + rx_sent, suppressed: tx_suppressed + rx_suppressed }
    }
}
