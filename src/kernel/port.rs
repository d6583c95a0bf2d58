//! A NIC as the firewall's own IP stack (smoltcp) sees it: frames the
//! packet path judged local are handed over one at a time, and the stack's
//! own frames go out through the NIC's transmit pool and are shown to the
//! connection tracker.

use crate::kernel::nics::NicSet;
use crate::kernel::virtio::buffers::Slot;
use core::cell::RefCell;
use core::ops::Range;
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use unifw_core::net::Dataplane;

/// Largest frame the stack may send (Ethernet header + 1500).
const MTU: usize = 1514;

/// One NIC as the IP stack sees it.
pub struct StackPort<'a> {
    nics: &'a NicSet,
    index: usize,
    dataplane: &'a RefCell<Dataplane>,
    now_ms: u64,
    pending: Option<(Slot, Range<usize>)>,
}

impl<'a> StackPort<'a> {
    /// A port on NIC `index` with no frame pending.
    pub fn new(nics: &'a NicSet, index: usize, dataplane: &'a RefCell<Dataplane>, now_ms: u64) -> Self {
        StackPort { nics, index, dataplane, now_ms, pending: None }
    }

    /// Hands one received frame (`slot[frame]`) to the stack; the next
    /// `Interface::poll` takes it.
    pub fn deliver(&mut self, slot: Slot, frame: Range<usize>) {
        if let Some((old, _)) = self.pending.replace((slot, frame)) {
            self.nics.recycle(old);
        }
    }

    fn tx_token(&self) -> PortTxToken<'a> {
        PortTxToken { nics: self.nics, index: self.index, dataplane: self.dataplane, now_ms: self.now_ms }
    }
}

impl Drop for StackPort<'_> {
    /// A frame the stack did not take goes back to its NIC.
    fn drop(&mut self) {
        if let Some((slot, _)) = self.pending.take() {
            self.nics.recycle(slot);
        }
    }
}

/// A received frame on its way into the stack.
pub struct PortRxToken<'a> {
    nics: &'a NicSet,
    slot: Slot,
    frame: Range<usize>,
}

/// Permission to send one frame.
pub struct PortTxToken<'a> {
    nics: &'a NicSet,
    index: usize,
    dataplane: &'a RefCell<Dataplane>,
    now_ms: u64,
}

impl RxToken for PortRxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(self.slot.bytes().get(self.frame.clone()).unwrap_or(&[]));
        self.nics.recycle(self.slot);
        result
    }
}

impl TxToken for PortTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let Some(mut frame) = self.nics.take_frame(self.index, len) else {
            // No buffer (counted in the NIC's stats): let smoltcp build the
            // frame in scratch space and drop it, as a full queue would.
            let mut scratch = [0u8; MTU];
            return f(scratch.get_mut(..len).unwrap_or(&mut []));
        };
        let result = f(frame.bytes_mut());
        // The firewall's own traffic: track it so replies are "established".
        self.dataplane.borrow_mut().track_local_output(self.now_ms, frame.bytes_mut());
        self.nics.send_frame(self.index, frame);
        result
    }
}

impl Device for StackPort<'_> {
    type RxToken<'b>
        = PortRxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = PortTxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (slot, frame) = self.pending.take()?;
        Some((PortRxToken { nics: self.nics, slot, frame }, self.tx_token()))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(self.tx_token())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }
}
