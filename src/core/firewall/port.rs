//! A NIC as the firewall's own IP stack (smoltcp) sees it: frames the
//! packet path judged local are handed over one at a time, and the stack's
//! own frames go out through the NIC's transmit pool and are shown to the
//! connection tracker.
//!
//! The port borrows the NICs and the data plane mutably for one stack poll;
//! smoltcp's receive and transmit tokens split that borrow (the receive
//! token owns its buffer and parks it in the port when done), so no borrow
//! is checked at run time.

use core::ops::Range;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;

use super::nics::{Buffer, NetDevice, NicSet};
use crate::flow::IfIndex;
use crate::image::Image;
use crate::net::Dataplane;

/// Largest frame the stack may send (Ethernet header + 1500).
const MTU: usize = 1514;

/// One NIC as the IP stack sees it, for one poll.
pub struct StackPort<'a, D: NetDevice> {
    nics: &'a mut NicSet<D>,
    dataplane: &'a mut Dataplane,
    /// The rules, for the OUTPUT chain.
    rules: &'a Image<'a>,
    index: usize,
    now_ms: u64,
    /// A received frame waiting for the stack.
    pending: Option<(D::Buffer, Range<usize>)>,
    /// A buffer the stack has read, waiting to go home.
    consumed: Option<D::Buffer>,
}

impl<'a, D: NetDevice> StackPort<'a, D> {
    /// A port on NIC `index` with no frame pending.
    pub fn new(
        (nics, dataplane, rules): (&'a mut NicSet<D>, &'a mut Dataplane, &'a Image<'a>),
        index: usize,
        now_ms: u64,
    ) -> Self {
        StackPort { nics, dataplane, rules, index, now_ms, pending: None, consumed: None }
    }

    /// Hands one received frame (`buffer[frame]`) to the stack; the next
    /// `Interface::poll` takes it.
    pub fn deliver(&mut self, buffer: D::Buffer, frame: Range<usize>) {
        if let Some((old, _)) = self.pending.replace((buffer, frame)) {
            self.nics.recycle(old);
        }
    }
}

impl<D: NetDevice> Drop for StackPort<'_, D> {
    /// Buffers the stack read or did not take go back to their NIC.
    fn drop(&mut self) {
        if let Some((buffer, _)) = self.pending.take() {
            self.nics.recycle(buffer);
        }
        if let Some(buffer) = self.consumed.take() {
            self.nics.recycle(buffer);
        }
    }
}

/// A received frame on its way into the stack.
pub struct PortRxToken<'a, B: Buffer> {
    buffer: B,
    frame: Range<usize>,
    consumed: &'a mut Option<B>,
}

/// Permission to send one frame.
pub struct PortTxToken<'a, D: NetDevice> {
    nics: &'a mut NicSet<D>,
    dataplane: &'a mut Dataplane,
    rules: &'a Image<'a>,
    index: usize,
    now_ms: u64,
}

impl<B: Buffer> RxToken for PortRxToken<'_, B> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(self.buffer.bytes().get(self.frame.clone()).unwrap_or(&[]));
        // The port holds at most one frame per poll: the spot is free.
        *self.consumed = Some(self.buffer);
        result
    }
}

impl<D: NetDevice> TxToken for PortTxToken<'_, D> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let index = self.index as IfIndex;
        let mut frame = match self.nics.take_frame(self.index, len) {
            Ok(frame) => frame,
            Err(reason) => {
                // No buffer (counted): let smoltcp build the frame in
                // scratch space and drop it, as a full queue would.
                self.dataplane.counters_mut().count_drop(index, reason);
                let mut scratch = [0u8; MTU];
                return f(scratch.get_mut(..len).unwrap_or(&mut []));
            }
        };
        let result = f(frame.bytes_mut());
        // The firewall's own traffic: the OUTPUT chain judges it (a refusal
        // is counted there), and what leaves is tracked so that replies are
        // ESTABLISHED.
        if self.dataplane.judge_own(self.now_ms, index, frame.bytes_mut(), None, self.rules).is_err() {
            self.nics.discard(frame);
            return result;
        }
        let sent = self.nics.send_frame(self.index, frame);
        self.dataplane.counters_mut().count_transmit(index, index, len, sent);
        result
    }
}

impl<D: NetDevice> Device for StackPort<'_, D> {
    type RxToken<'b>
        = PortRxToken<'b, D::Buffer>
    where
        Self: 'b;
    type TxToken<'b>
        = PortTxToken<'b, D>
    where
        Self: 'b;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (buffer, frame) = self.pending.take()?;
        if let Some(old) = self.consumed.take() {
            self.nics.recycle(old);
        }
        let StackPort { nics, dataplane, rules, index, now_ms, consumed, .. } = self;
        let tx = PortTxToken { nics, dataplane, rules, index: *index, now_ms: *now_ms };
        Some((PortRxToken { buffer, frame, consumed }, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let StackPort { nics, dataplane, rules, index, now_ms, .. } = self;
        Some(PortTxToken { nics, dataplane, rules, index: *index, now_ms: *now_ms })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // The interface's MTU, so that the stack's own packets (metrics,
        // replies) fit it; never above the transmit buffers' 1514.
        let mtu = self.dataplane.interfaces().get(self.index).map_or(MTU, |i| usize::from(i.mtu) + 14);
        caps.max_transmission_unit = mtu.min(MTU);
        caps.max_burst_size = Some(1);
        caps
    }
}
