//! How frames leave and enter the NICs: `NicSink` sends frames the packet
//! path produced (forwarded, ICMP errors, ARP) out of any NIC, and
//! `StackPort` is a NIC as the firewall's own IP stack (smoltcp) sees it:
//! frames the packet path judged local are handed over one at a time, and
//! the stack's own frames go out through the NIC and are shown to the
//! connection tracker.

use crate::kernel::virtio::NetDevice;
use alloc::boxed::Box;
use core::cell::RefCell;
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use unifw::flow::IfIndex;
use unifw::net::{Dataplane, FrameSink};
use virtio_drivers::device::net::RxBuffer;

/// Largest frame the stack may send (Ethernet header + 1500).
const MTU: usize = 1514;

/// A NIC's driver, shared by the receive loop, the sink and the stack.
pub type SharedDevice = RefCell<Box<NetDevice>>;

/// Transmit counters of one NIC.
#[derive(Debug, Default, Clone, Copy)]
pub struct TxStats {
    /// Frames sent.
    pub sent: u64,
    /// Frames the NIC refused (queue full or device error); dropped.
    pub errors: u64,
}

/// Sends `frame` on `device`, copying it into a transmit buffer.
pub fn transmit(device: &SharedDevice, stats: &RefCell<TxStats>, frame: &[u8]) -> bool {
    let mut device = device.borrow_mut();
    let mut buffer = device.new_tx_buffer(frame.len());
    buffer.packet_mut().copy_from_slice(frame);
    let ok = device.send(buffer).is_ok();
    let mut stats = stats.borrow_mut();
    if ok {
        stats.sent += 1;
    } else {
        stats.errors += 1;
    }
    ok
}

/// Gives a receive buffer back to the NIC's queue.
pub fn recycle(device: &SharedDevice, frame: RxBuffer) {
    if let Err(e) = device.borrow_mut().recycle_rx_buffer(frame) {
        log::error!("virtio-net: could not recycle a receive buffer: {e:?}");
    }
}

/// The packet path's way out: any NIC by index.
pub struct NicSink<'a> {
    /// Drivers by interface index.
    pub devices: &'a [SharedDevice],
    /// Transmit counters by interface index.
    pub stats: &'a [RefCell<TxStats>],
}

impl FrameSink for NicSink<'_> {
    fn send(&mut self, out_if: IfIndex, frame: &[u8]) -> bool {
        let index = usize::from(out_if);
        match (self.devices.get(index), self.stats.get(index)) {
            (Some(device), Some(stats)) => transmit(device, stats, frame),
            _ => false,
        }
    }
}

/// One NIC as the IP stack sees it.
pub struct StackPort<'a> {
    device: &'a SharedDevice,
    stats: &'a RefCell<TxStats>,
    dataplane: &'a RefCell<Dataplane>,
    now_ms: u64,
    pending: Option<RxBuffer>,
}

impl<'a> StackPort<'a> {
    /// A port on `device` with no frame pending.
    pub fn new(
        device: &'a SharedDevice,
        stats: &'a RefCell<TxStats>,
        dataplane: &'a RefCell<Dataplane>,
        now_ms: u64,
    ) -> Self {
        StackPort {
            device,
            stats,
            dataplane,
            now_ms,
            pending: None,
        }
    }

    /// Hands one received frame to the stack; the next `Interface::poll`
    /// takes it.
    pub fn deliver(&mut self, frame: RxBuffer) {
        if let Some(old) = self.pending.replace(frame) {
            recycle(self.device, old);
        }
    }
}

impl Drop for StackPort<'_> {
    /// A frame the stack did not take goes back to the NIC.
    fn drop(&mut self) {
        if let Some(frame) = self.pending.take() {
            recycle(self.device, frame);
        }
    }
}

/// A received frame on its way into the stack.
pub struct PortRxToken<'a> {
    device: &'a SharedDevice,
    frame: RxBuffer,
}

/// Permission to send one frame.
pub struct PortTxToken<'a> {
    device: &'a SharedDevice,
    stats: &'a RefCell<TxStats>,
    dataplane: &'a RefCell<Dataplane>,
    now_ms: u64,
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
        // The firewall's own traffic: track it so replies are "established".
        self.dataplane
            .borrow_mut()
            .track_local_output(self.now_ms, buffer.packet());
        let ok = device.send(buffer).is_ok();
        let mut stats = self.stats.borrow_mut();
        if ok {
            stats.sent += 1;
        } else {
            stats.errors += 1;
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
        Some((
            PortRxToken {
                device: self.device,
                frame,
            },
            PortTxToken {
                device: self.device,
                stats: self.stats,
                dataplane: self.dataplane,
                now_ms: self.now_ms,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(PortTxToken {
            device: self.device,
            stats: self.stats,
            dataplane: self.dataplane,
            now_ms: self.now_ms,
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
