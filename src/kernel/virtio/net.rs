//! A virtio-net driver with checksum and TCP segmentation offloads, built
//! on virtio-drivers' public `VirtQueue` and `Transport` (its own `VirtIONet`
//! negotiates no offloads and copies every frame).
//!
//! With `GUEST_TSO4`/`HOST_TSO4` the host hands the firewall whole TCP
//! segments of up to 64 KiB and takes them back the same way, so one
//! forwarding decision moves up to 64 KiB: receive buffers are large enough
//! for such segments ("big packets" mode, no `MRG_RXBUF`). Buffers are
//! `Slot`s: posted to a queue, returned when the device is done, and never
//! copied on the forwarding path.

use super::buffers::Slot;
use super::{AnyTransport, KernelHal, QUEUE_SIZE};
use core::array;
use unifw_core::firewall::{Buffer, NetDevice};
use unifw_core::virtio_net::{feature, negotiate};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, InterruptStatus, Transport};
use virtio_drivers::Error;

const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;

/// One virtio-net device.
pub struct NetDriver {
    transport: AnyTransport,
    rx: VirtQueue<KernelHal, QUEUE_SIZE>,
    tx: VirtQueue<KernelHal, QUEUE_SIZE>,
    rx_slots: [Option<Slot>; QUEUE_SIZE],
    tx_slots: [Option<(Slot, usize)>; QUEUE_SIZE],
    mac: [u8; 6],
    features: u64,
    notify_rx: bool,
    notify_tx: bool,
}

impl NetDriver {
    /// Resets and initialises the device, negotiating `wanted` offloads
    /// (a subset of `feature::OFFLOADS`) where the device offers them.
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
        let tx = VirtQueue::new(&mut transport, TRANSMIT_QUEUE, false, event_idx)?;
        let rx = VirtQueue::new(&mut transport, RECEIVE_QUEUE, false, event_idx)?;
        transport.finish_init();
        Ok(NetDriver {
            transport,
            rx,
            tx,
            rx_slots: array::from_fn(|_| None),
            tx_slots: array::from_fn(|_| None),
            mac,
            features,
            notify_rx: false,
            notify_tx: false,
        })
    }

    /// The transport.
    pub fn transport(&self) -> &AnyTransport {
        &self.transport
    }

    /// Whether a received frame is waiting.
    pub fn can_receive(&self) -> bool {
        self.rx.can_pop()
    }

    /// Asks for (or stops) receive interrupts.
    pub fn set_receive_interrupts(&mut self, enable: bool) {
        self.rx.set_dev_notify(enable);
    }

    /// Acknowledges the device's interrupt line (lowers it).
    pub fn ack_interrupt(&mut self) -> InterruptStatus {
        self.transport.ack_interrupt()
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
        // SAFETY: the buffer is owned by the slot, which we keep in
        // `rx_slots[token]` until `pop_used` returns it.
        let token = match unsafe { self.rx.add(&[], &mut [slot.bytes_mut()]) } {
            Ok(token) => token,
            Err(_) => return Err(slot),
        };
        match self.rx_slots.get_mut(usize::from(token)) {
            Some(entry) => *entry = Some(slot),
            None => return Err(slot),
        }
        self.notify_rx = true;
        Ok(())
    }

    /// Takes the next received frame: its buffer and the bytes the device
    /// wrote (virtio header included).
    fn receive(&mut self) -> Option<(Slot, usize)> {
        let token = self.rx.peek_used()?;
        let mut slot = self.rx_slots.get_mut(usize::from(token))?.take()?;
        // SAFETY: the same buffer that was added with this token.
        let written = unsafe { self.rx.pop_used(token, &[], &mut [slot.bytes_mut()]) };
        match written {
            Ok(len) => Some((slot, len as usize)),
            Err(_) => {
                log::error!("virtio-net: receive queue out of step; buffer dropped");
                None
            }
        }
    }

    /// Queues `slot[..len]` (header and frame) for transmission; gives the
    /// slot back if the queue is full.
    fn transmit(&mut self, slot: Slot, len: usize) -> Result<(), Slot> {
        let Some(bytes) = slot.bytes().get(..len) else {
            return Err(slot);
        };
        // SAFETY: the buffer is owned by the slot, which we keep in
        // `tx_slots[token]` until `pop_used` returns it.
        let token = match unsafe { self.tx.add(&[bytes], &mut []) } {
            Ok(token) => token,
            Err(_) => return Err(slot),
        };
        match self.tx_slots.get_mut(usize::from(token)) {
            Some(entry) => *entry = Some((slot, len)),
            None => return Err(slot),
        }
        self.notify_tx = true;
        Ok(())
    }

    /// Hands each buffer the device has finished sending to `done`.
    fn reclaim_transmitted(&mut self, done: &mut dyn FnMut(Slot)) {
        while let Some(token) = self.tx.peek_used() {
            let Some((slot, len)) = self.tx_slots.get_mut(usize::from(token)).and_then(Option::take) else {
                log::error!("virtio-net: transmit queue out of step");
                return;
            };
            let Some(bytes) = slot.bytes().get(..len) else {
                return;
            };
            // SAFETY: the same buffer that was added with this token.
            if unsafe { self.tx.pop_used(token, &[bytes], &mut []) }.is_err() {
                log::error!("virtio-net: transmit queue out of step");
                return;
            }
            done(slot);
        }
    }

    /// Tells the device about posted buffers, once per batch.
    fn flush(&mut self) {
        if self.notify_tx && self.tx.should_notify() {
            self.transport.notify(TRANSMIT_QUEUE);
        }
        if self.notify_rx && self.rx.should_notify() {
            self.transport.notify(RECEIVE_QUEUE);
        }
        self.notify_tx = false;
        self.notify_rx = false;
    }
}
