//! Where the data plane sends the frames it originates or releases: ICMP
//! errors, RSTs, ARP requests and frames that waited for ARP.

use alloc::vec::Vec;

use super::counters::DropReason;
use crate::flow::IfIndex;

/// The transmit side of the NICs, as the data plane sees it. `frame`
/// starts at the Ethernet header and is only borrowed: the implementation
/// copies it into a transmit buffer before returning.
pub trait FrameSink {
    /// Sends `frame` out of `out_if`; if it could not be queued, why (the
    /// data plane counts that drop).
    fn send(&mut self, out_if: IfIndex, frame: &[u8]) -> Result<(), DropReason>;
}

/// A sink that keeps every frame, for host tests and tools (it allocates
/// per frame, so the kernel never uses it).
#[derive(Debug, Default)]
pub struct VecSink {
    /// Frames sent, with their output interface, oldest first.
    pub frames: Vec<(IfIndex, Vec<u8>)>,
    /// When set, `send` refuses every frame (to test transmit failures).
    pub refuse: bool,
}

impl FrameSink for VecSink {
    fn send(&mut self, out_if: IfIndex, frame: &[u8]) -> Result<(), DropReason> {
        if self.refuse {
            return Err(DropReason::TransmitQueueFull);
        }
        self.frames.push((out_if, frame.to_vec()));
        Ok(())
    }
}

/// A sink that discards every frame (and accepts it).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl FrameSink for NullSink {
    fn send(&mut self, _out_if: IfIndex, _frame: &[u8]) -> Result<(), DropReason> {
        Ok(())
    }
}
