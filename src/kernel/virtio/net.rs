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
//!
//! With `VIRTIO_NET_F_MQ` a device has several receive/transmit queue
//! pairs; each is a `NetDriver` of its own (set up in `setup.rs`).

use super::buffers::Slot;
use super::control::ControlQueue;
use super::doorbell::{Doorbell, InterruptAck};
use super::ring::KernelRing;
use super::AnyTransport;
use crate::kernel::arch::{apic, idt::NIC_VECTOR};
use crate::kernel::pci::MsixEntry;
use alloc::sync::Arc;
use alloc::vec::Vec;
use unifw_core::firewall::{Buffer, NetDevice, Notifications};
use unifw_core::virtqueue::SplitQueue;
use virtio_drivers::transport::InterruptStatus;

/// What the queue pairs of one device share: held, not used on the data
/// path. Dropping the transport resets the device, and the control queue's
/// memory must outlive the device's use of it, so both live as long as
/// the last pair. Behind locks, so that a pair on any CPU may hold them.
pub struct Device {
    transport: spin::Mutex<AnyTransport>,
    control: spin::Mutex<Option<ControlQueue>>,
}

impl Device {
    /// The device's transport and control queue, to share among its pairs.
    pub fn new(transport: AnyTransport, control: Option<ControlQueue>) -> Arc<Device> {
        Arc::new(Device { transport: spin::Mutex::new(transport), control: spin::Mutex::new(control) })
    }
}

/// One queue pair of a virtio-net device (pair 0 is the only one without
/// `VIRTIO_NET_F_MQ`). Each pair owns its queues and buffers and reaches
/// the device through its cached doorbells and interrupt register
/// (`doorbell.rs`), so pairs of one device may run on different CPUs.
pub struct NetDriver {
    /// Held so that the device outlives its last pair.
    _device: Arc<Device>,
    pair: u16,
    rx: SplitQueue<KernelRing>,
    tx: SplitQueue<KernelRing>,
    rx_doorbell: Doorbell,
    tx_doorbell: Doorbell,
    interrupt: InterruptAck,
    /// The buffer the device holds under each receive and transmit token.
    rx_slots: Vec<Option<Slot>>,
    tx_slots: Vec<Option<Slot>>,
    mac: [u8; 6],
    features: u64,
    /// Whether the receive queue's MSI-X vector was accepted.
    receive_vector: bool,
    /// The MSI-X entry only this pair's receive queue uses, if it has one.
    receive_entry: Option<MsixEntry>,
    /// Whether that entry is aimed at the CPU serving this pair (not the
    /// boot CPU).
    interrupts_here: bool,
    /// Used-ring entries that named no buffer the device held.
    out_of_step: u64,
}

/// A pair may be handed to another CPU.
const _: () = {
    const fn send<T: Send>() {}
    send::<NetDriver>()
};

/// The parts of one queue pair, set up (`setup.rs`).
pub struct PairParts {
    /// Receive and transmit queues.
    pub rx: SplitQueue<KernelRing>,
    /// The transmit queue.
    pub tx: SplitQueue<KernelRing>,
    /// Their doorbells.
    pub rx_doorbell: Doorbell,
    /// The transmit queue's doorbell.
    pub tx_doorbell: Doorbell,
    /// Whether the receive queue's MSI-X vector was accepted.
    pub receive_vector: bool,
}

fn slots(queue: &SplitQueue<KernelRing>) -> Vec<Option<Slot>> {
    (0..queue.layout().size).map(|_| None).collect()
}

impl NetDriver {
    /// Pair `pair` of `device`, from its set-up queues.
    pub fn new(
        device: Arc<Device>,
        pair: u16,
        parts: PairParts,
        interrupt: InterruptAck,
        mac: [u8; 6],
        features: u64,
    ) -> NetDriver {
        let PairParts { rx, tx, rx_doorbell, tx_doorbell, receive_vector } = parts;
        let (rx_slots, tx_slots) = (slots(&rx), slots(&tx));
        NetDriver {
            _device: device,
            pair,
            rx,
            tx,
            rx_doorbell,
            tx_doorbell,
            interrupt,
            rx_slots,
            tx_slots,
            mac,
            features,
            receive_vector,
            receive_entry: None,
            interrupts_here: false,
            out_of_step: 0,
        }
    }

    /// Asks the device to use `pairs` queue pairs from now on (after
    /// start: fewer than it was given at discovery); false, logged, if it
    /// has no control queue or did not say OK.
    pub fn set_queue_pairs(&mut self, pairs: u16) -> bool {
        let mut control = self._device.control.lock();
        let Some(control) = control.as_mut() else {
            return false;
        };
        let mut transport = self._device.transport.lock();
        match control.set_queue_pairs(&mut transport, pairs) {
            Ok(()) => true,
            Err(e) => {
                log::error!("virtio-net: VQ_PAIRS_SET {pairs}: {e:?}");
                false
            }
        }
    }

    /// Where the device writes the receive queue's used index, and the
    /// value the driver last took: a CPU that sleeps on this pair
    /// publishes both, and whoever sees the index move wakes it.
    pub fn receive_watch(&self) -> (usize, u16) {
        (self.rx.memory().address() as usize + self.rx.used_index_offset(), self.rx.last_used())
    }

    /// Which queue pair of its device this is (0 is the first).
    pub fn pair(&self) -> u16 {
        self.pair
    }

    /// Whether this pair's receive interrupts reach their MSI-X vector (the
    /// device accepted it); false on transports without MSI-X.
    pub fn receive_vector_set(&self) -> bool {
        self.receive_vector
    }

    /// Gives this pair's receive queue MSI-X entry `entry`, its own.
    pub fn set_receive_entry(&mut self, entry: MsixEntry) {
        self.receive_entry = Some(entry);
    }

    /// Aims this pair's receive interrupts at the CPU calling it (a CPU
    /// serving the pair, so that a frame wakes it directly); false when
    /// the pair shares its MSI-X entry or has none (then the boot CPU
    /// takes them and passes the wake-up on).
    pub fn aim_receive_interrupts_here(&mut self) -> bool {
        if let Some(entry) = self.receive_entry {
            entry.aim(NIC_VECTOR, apic::lapic_id());
            self.interrupts_here = true;
        }
        self.interrupts_here
    }

    /// Whether this pair's receive interrupts reach the CPU serving it
    /// ([`Self::aim_receive_interrupts_here`]).
    pub fn receive_interrupts_here(&self) -> bool {
        self.interrupts_here
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

    /// Acknowledges the device's interrupt line (lowers it). The status is
    /// the device's, shared by its pairs (see `doorbell.rs`).
    pub fn ack_interrupt(&mut self) -> InterruptStatus {
        self.interrupt.ack()
    }

    fn note_out_of_step(&mut self, queue: &str) {
        self.out_of_step += 1;
        // The count says how often; the log says it happened.
        if self.out_of_step.is_power_of_two() {
            log::error!(
                "virtio-net: pair {} {queue} queue out of step ({} entries so far)",
                self.pair,
                self.out_of_step
            );
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
            self.tx_doorbell.ring();
        }
        if self.rx.should_notify() {
            self.rx_doorbell.ring();
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
