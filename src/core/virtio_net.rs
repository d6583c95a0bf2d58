//! virtio-net feature negotiation, what a negotiated set can transmit, and
//! the per-frame virtio-net header: the pure logic of the kernel's driver
//! (`src/kernel/virtio/net.rs`), here so that host tests cover it.

/// Feature bits (virtio 1.x, 5.1.3).
pub mod feature {
    /// Device handles partial checksums on transmit.
    pub const CSUM: u64 = 1 << 0;
    /// Driver handles partial checksums on receive.
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// Device has a MAC address.
    pub const MAC: u64 = 1 << 5;
    /// Driver takes TCP/IPv4 segments on receive.
    pub const GUEST_TSO4: u64 = 1 << 7;
    /// Driver takes ECN-marked segments on receive.
    pub const GUEST_ECN: u64 = 1 << 9;
    /// Device segments TCP/IPv4 on transmit.
    pub const HOST_TSO4: u64 = 1 << 11;
    /// Device segments ECN-marked TCP on transmit.
    pub const HOST_ECN: u64 = 1 << 13;
    /// Device reports link status.
    pub const STATUS: u64 = 1 << 16;
    /// Notification suppression with event indices.
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// Virtio 1.x (modern) device.
    pub const VERSION_1: u64 = 1 << 32;
    /// Every offload this driver knows.
    pub const OFFLOADS: u64 = CSUM | GUEST_CSUM | GUEST_TSO4 | GUEST_ECN | HOST_TSO4 | HOST_ECN;
}

/// `virtio_net_hdr.flags`: the checksum at csum_start/csum_offset is partial.
pub const HDR_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.gso_type` values.
pub const GSO_NONE: u8 = 0;
/// TCP over IPv4 segmentation.
pub const GSO_TCPV4: u8 = 1;
/// ECN bit of `gso_type`.
pub const GSO_ECN: u8 = 0x80;

/// Frame buffer size without receive segmentation offload.
pub const SMALL_BUFFER: usize = 2048;
/// Frame buffer size with it: a 64 KiB IP packet, Ethernet and virtio headers.
pub const BIG_BUFFER: usize = 65_535 + 14 + 12 + 64;

/// Bytes of virtio-net header before each frame: 12 on modern (virtio 1.x)
/// devices, which add `num_buffers`; 10 on legacy ones.
pub fn header_len(features: u64) -> usize {
    if features & feature::VERSION_1 != 0 {
        12
    } else {
        10
    }
}

/// The buffer size a NIC with `features` needs: big when it may receive
/// 64 KiB segments (`GUEST_TSO4`, "big packets" mode, no `MRG_RXBUF`).
pub fn buffer_size(features: u64) -> usize {
    if features & feature::GUEST_TSO4 != 0 {
        BIG_BUFFER
    } else {
        SMALL_BUFFER
    }
}

/// The negotiated offloads in words, for the boot log.
pub fn describe_offloads(features: u64) -> &'static str {
    let rx = features & feature::GUEST_TSO4 != 0;
    let tx = features & feature::HOST_TSO4 != 0;
    match (rx, tx, features & (feature::CSUM | feature::GUEST_CSUM) != 0) {
        (true, true, _) => "csum+tso4 both ways",
        (true, false, _) => "csum+tso4 receive only",
        (false, true, _) => "csum+tso4 transmit only",
        (false, false, true) => "checksum only",
        (false, false, false) => "none",
    }
}

/// The virtio-net header in front of every frame (virtio 1.x, 5.1.6): the
/// one definition of its fields, as a view over a buffer's first bytes.
/// All fields are little-endian.
///
/// | offset | field |
/// |---|---|
/// | 0 | flags (`HDR_NEEDS_CSUM`, `DATA_VALID`) |
/// | 1 | gso_type |
/// | 2 | hdr_len (u16) |
/// | 4 | gso_size (u16) |
/// | 6 | csum_start (u16) |
/// | 8 | csum_offset (u16) |
/// | 10 | num_buffers (u16, modern devices only) |
#[derive(Debug)]
pub struct Header<'a> {
    bytes: &'a mut [u8],
}

impl<'a> Header<'a> {
    /// The header at the start of `buffer`, `len` bytes long (10 or 12,
    /// see [`header_len`]); `None` if the buffer is shorter.
    pub fn new(buffer: &'a mut [u8], len: usize) -> Option<Header<'a>> {
        let bytes = buffer.get_mut(..len.max(10))?;
        Some(Header { bytes })
    }

    fn u16_at(&self, at: usize) -> u16 {
        self.bytes.get(at..at + 2).and_then(|b| b.try_into().ok()).map_or(0, u16::from_le_bytes)
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(0)
    }

    /// The GSO type (`GSO_*`, with `GSO_ECN`).
    pub fn gso_type(&self) -> u8 {
        self.bytes.get(1).copied().unwrap_or(0)
    }

    /// The segment size of a TCP/IPv4 segmentation offload (`gso_size`
    /// when `gso_type` is [`GSO_TCPV4`]); `None` for a single frame.
    pub fn tcp_segment_size(&self) -> Option<u16> {
        let size = self.u16_at(4);
        (self.gso_type() & !GSO_ECN == GSO_TCPV4 && size > 0).then_some(size)
    }

    /// Whether the frame carries a partial checksum to complete.
    pub fn needs_csum(&self) -> bool {
        self.flags() & HDR_NEEDS_CSUM != 0
    }

    /// Where checksumming starts and where the checksum goes, relative to
    /// that start (meaningful with [`Header::needs_csum`]).
    pub fn csum(&self) -> (usize, usize) {
        (usize::from(self.u16_at(6)), usize::from(self.u16_at(8)))
    }

    /// The frame's partial checksum, when the header says it has one.
    pub fn partial_checksum(&self) -> Option<PartialChecksum> {
        let (start, offset) = self.csum();
        self.needs_csum().then_some(PartialChecksum { start, offset })
    }

    /// Turns a received header into a transmit one for the same frame: the
    /// offload fields stay, `DATA_VALID` and `num_buffers` (meaningless on
    /// transmit) are cleared.
    pub fn prepare_forward(&mut self) {
        if let Some(flags) = self.bytes.first_mut() {
            *flags &= HDR_NEEDS_CSUM;
        }
        if let Some(num_buffers) = self.bytes.get_mut(10..12) {
            num_buffers.fill(0);
        }
    }

    /// A header that asks for nothing: a complete frame.
    pub fn clear(&mut self) {
        self.bytes.fill(0);
    }
}

/// Completes the partial checksum of a frame when its header asks for it
/// (the sender offloaded it: `NEEDS_CSUM`), and clears the header's flags
/// so that it asks for nothing more. A frame for the firewall's own stack
/// must be complete (smoltcp verifies checksums), and so must one leaving
/// by a NIC without checksum offload. `buffer` holds the `header_len`-byte
/// header, then the frame at `frame`. False if the checksum's offsets fall
/// outside the frame (nothing is changed then).
pub fn complete_checksum(buffer: &mut [u8], header_len: usize, frame: core::ops::Range<usize>) -> bool {
    let Some(PartialChecksum { start, offset }) = Header::new(buffer, header_len).and_then(|h| h.partial_checksum())
    else {
        return true;
    };
    if !buffer.get_mut(frame).is_some_and(|frame| complete_partial(frame, start, offset)) {
        return false;
    }
    if let Some(mut header) = Header::new(buffer, header_len) {
        header.clear();
    }
    true
}

use crate::net::checksum::{complete_partial, PartialChecksum};

/// The features to accept: the basics plus the wanted offloads and
/// `RING_EVENT_IDX` the device offers, dropping any whose prerequisite is missing (virtio 5.1.3.1).
pub fn negotiate(offered: u64, wanted: u64) -> u64 {
    use feature::*;
    // RING_EVENT_IDX when wanted: unifw's own queue (`crate::virtqueue`)
    // compares the wrapping indices correctly (virtio-drivers 0.13's
    // `should_notify` does not: its queues stalled after 65,536 buffers).
    let basic = MAC | STATUS | VERSION_1;
    let mut features = offered & (basic | (wanted & (OFFLOADS | RING_EVENT_IDX)));
    if features & GUEST_CSUM == 0 {
        features &= !(GUEST_TSO4 | GUEST_ECN);
    }
    if features & GUEST_TSO4 == 0 {
        features &= !GUEST_ECN;
    }
    if features & CSUM == 0 {
        features &= !(HOST_TSO4 | HOST_ECN);
    }
    if features & HOST_TSO4 == 0 {
        features &= !HOST_ECN;
    }
    features
}

/// Whether a NIC with `features` negotiated can transmit a frame whose
/// virtio header says `flags`/`gso_type` (an offload it did not negotiate
/// cannot be sent).
pub fn can_transmit(features: u64, flags: u8, gso_type: u8) -> bool {
    let csum_ok = flags & HDR_NEEDS_CSUM == 0 || features & feature::CSUM != 0;
    let gso_ok = match gso_type & !GSO_ECN {
        GSO_NONE => true,
        GSO_TCPV4 => features & feature::HOST_TSO4 != 0,
        _ => false,
    };
    let ecn_ok = gso_type & GSO_ECN == 0 || features & feature::HOST_ECN != 0;
    csum_ok && gso_ok && ecn_ok
}

#[cfg(test)]
mod tests {
    use super::feature::*;
    use super::*;

    /// What QEMU's virtio-net offers (seen in the boot log), EVENT_IDX included.
    const QEMU: u64 = CSUM
        | GUEST_CSUM
        | MAC
        | GUEST_TSO4
        | GUEST_ECN
        | HOST_TSO4
        | HOST_ECN
        | STATUS
        | RING_EVENT_IDX
        | VERSION_1
        | (1 << 2)
        | (1 << 15)
        | (1 << 17);

    #[test]
    fn header_view_reads_and_prepares() {
        let mut buffer = [0u8; 16];
        buffer[0] = HDR_NEEDS_CSUM | 2; // NEEDS_CSUM | DATA_VALID
        buffer[1] = GSO_TCPV4;
        buffer[6..8].copy_from_slice(&34u16.to_le_bytes());
        buffer[8..10].copy_from_slice(&16u16.to_le_bytes());
        buffer[10..12].copy_from_slice(&1u16.to_le_bytes());
        let mut header = Header::new(&mut buffer, 12).expect("fits");
        assert!(header.needs_csum());
        assert_eq!((header.gso_type(), header.csum()), (GSO_TCPV4, (34, 16)));
        assert_eq!(header.tcp_segment_size(), None, "gso_size 0");
        header.prepare_forward();
        assert_eq!((header.flags(), header.gso_type()), (HDR_NEEDS_CSUM, GSO_TCPV4));
        assert_eq!(buffer[10..12], [0, 0]);
        assert!(Header::new(&mut [0u8; 9], 10).is_none());
        assert_eq!(header_len(VERSION_1), 12);
        assert_eq!(header_len(0), 10);
        assert_eq!(buffer_size(GUEST_TSO4), BIG_BUFFER);
        assert_eq!(describe_offloads(negotiate(QEMU, OFFLOADS)), "csum+tso4 both ways");
        assert_eq!(describe_offloads(negotiate(QEMU, CSUM | GUEST_CSUM)), "checksum only");
        assert_eq!(describe_offloads(0), "none");
    }

    #[test]
    fn partial_checksum_is_completed_only_when_asked() {
        // A UDP datagram from 10.1.0.2:1000 to 10.1.0.1:2000 whose checksum
        // field holds only the pseudo-header sum, as a Linux sender leaves it.
        let mut frame = [0u8; 14 + 20 + 8 + 4];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = [0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 0, 2, 10, 1, 0, 1];
        frame[14..34].copy_from_slice(&ip);
        frame[34..42].copy_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 12, 0, 0]);
        frame[42..].copy_from_slice(b"ping");
        let mut buffer = [0u8; 12 + 46];
        buffer[12..].copy_from_slice(&frame);
        let untouched = buffer;
        assert!(complete_checksum(&mut buffer, 12, 12..58));
        assert_eq!(buffer, untouched, "no NEEDS_CSUM: nothing changes");
        buffer[0] = HDR_NEEDS_CSUM;
        buffer[6..8].copy_from_slice(&34u16.to_le_bytes());
        buffer[8..10].copy_from_slice(&6u16.to_le_bytes());
        assert!(complete_checksum(&mut buffer, 12, 12..58));
        assert_ne!(buffer[12 + 40..12 + 42], [0, 0], "the UDP checksum is filled in");
        assert_eq!(buffer[0], 0, "and the header asks for nothing more");
        buffer[0] = HDR_NEEDS_CSUM;
        buffer[8..10].copy_from_slice(&60u16.to_le_bytes());
        assert!(!complete_checksum(&mut buffer, 12, 12..58), "offsets outside the frame");
    }

    #[test]
    fn takes_offloads_basics_and_event_idx_when_wanted() {
        assert_eq!(negotiate(QEMU, OFFLOADS), OFFLOADS | MAC | STATUS | VERSION_1);
        assert_eq!(negotiate(QEMU, RING_EVENT_IDX), RING_EVENT_IDX | MAC | STATUS | VERSION_1);
        assert_eq!(negotiate(QEMU & !RING_EVENT_IDX, RING_EVENT_IDX), MAC | STATUS | VERSION_1);
        assert_eq!(negotiate(QEMU, 0), MAC | STATUS | VERSION_1);
        assert_eq!(negotiate(QEMU & !VERSION_1, 0), MAC | STATUS);
    }

    #[test]
    fn drops_offloads_whose_prerequisite_is_missing() {
        assert_eq!(negotiate(QEMU & !GUEST_CSUM, OFFLOADS) & (GUEST_TSO4 | GUEST_ECN), 0);
        assert_eq!(negotiate(QEMU & !CSUM, OFFLOADS) & (HOST_TSO4 | HOST_ECN), 0);
        assert_eq!(negotiate(QEMU & !HOST_TSO4, OFFLOADS) & HOST_ECN, 0);
        assert_eq!(negotiate(QEMU & !GUEST_TSO4, OFFLOADS) & GUEST_ECN, 0);
        assert_eq!(negotiate(QEMU, CSUM | HOST_ECN), CSUM | MAC | STATUS | VERSION_1);
    }

    #[test]
    fn transmits_only_what_was_negotiated() {
        let all = negotiate(QEMU, OFFLOADS);
        let none = negotiate(QEMU, 0);
        for features in [all, none] {
            assert!(can_transmit(features, 0, GSO_NONE));
        }
        assert!(can_transmit(all, HDR_NEEDS_CSUM, GSO_TCPV4 | GSO_ECN));
        assert!(!can_transmit(none, HDR_NEEDS_CSUM, GSO_NONE));
        assert!(!can_transmit(none, 0, GSO_TCPV4));
        assert!(!can_transmit(all & !HOST_ECN, HDR_NEEDS_CSUM, GSO_TCPV4 | GSO_ECN));
        assert!(!can_transmit(all, HDR_NEEDS_CSUM, 3), "UDP segmentation is never negotiated");
    }
}
