//! The firewall's own IP stack sees a NIC through a `StackPort`: frames
//! that the packet path decided are for the firewall are handed over one at
//! a time, and the stack's replies go straight out of the NIC.

use crate::kernel::virtio::NetDevice;
use alloc::boxed::Box;
use core::cell::RefCell;
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use virtio_drivers::device::net::RxBuffer;

/// Largest frame the stack may send (Ethernet header + 1500).
const MTU: usize = 1514;

/// Counters of what the stack sent and failed to send.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortStats {
    /// Frames handed to the stack.
    pub received: u64,
    /// Frames the stack sent.
    pub transmitted: u64,
    /// Frames the NIC refused (queue full or device error).
    pub transmit_errors: u64,
}

/// One NIC as the IP stack sees it.
pub struct StackPort<'a> {
    device: &'a RefCell<Box<NetDevice>>,
    pending: Option<RxBuffer>,
    stats: &'a RefCell<PortStats>,
}

impl<'a> StackPort<'a> {
    /// A port on `device` with no frame pending.
    pub fn new(device: &'a RefCell<Box<NetDevice>>, stats: &'a RefCell<PortStats>) -> Self {
        StackPort {
            device,
            pending: None,
            stats,
        }
    }

    /// Hands one received frame to the stack; the next `Interface::poll`
    /// takes it. A frame still pending is recycled.
    pub fn deliver(&mut self, frame: RxBuffer) {
        if let Some(old) = self.pending.replace(frame) {
            recycle(self.device, old);
        }
    }

    /// Returns a frame the stack did not take to the NIC.
    pub fn flush(&mut self) {
        if let Some(old) = self.pending.take() {
            recycle(self.device, old);
        }
    }
}

/// Gives a receive buffer back to the NIC's queue.
pub fn recycle(device: &RefCell<Box<NetDevice>>, frame: RxBuffer) {
    if let Err(e) = device.borrow_mut().recycle_rx_buffer(frame) {
        log::error!("virtio-net: could not recycle a receive buffer: {e:?}");
    }
}

/// A received frame on its way into the stack.
pub struct PortRxToken<'a> {
    device: &'a RefCell<Box<NetDevice>>,
    frame: RxBuffer,
}

/// Permission to send one frame.
pub struct PortTxToken<'a> {
    device: &'a RefCell<Box<NetDevice>>,
    stats: &'a RefCell<PortStats>,
}

impl RxToken for PortRxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(self.frame.packet());
        recycle(self.device, self.frame);
        result
    }
}

impl TxToken for PortTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut device = self.device.borrow_mut();
        let mut buffer = device.new_tx_buffer(len);
        let result = f(buffer.packet_mut());
        let mut stats = self.stats.borrow_mut();
        match device.send(buffer) {
            Ok(()) => stats.transmitted += 1,
            Err(_) => stats.transmit_errors += 1,
        }
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
        let frame = self.pending.take()?;
        self.stats.borrow_mut().received += 1;
        Some((
            PortRxToken {
                device: self.device,
                frame,
            },
            PortTxToken {
                device: self.device,
                stats: self.stats,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(PortTxToken {
            device: self.device,
            stats: self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }
}
