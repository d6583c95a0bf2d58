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
    /// Control virtqueue (after every receive/transmit pair's queues).
    pub const CTRL_VQ: u64 = 1 << 17;
    /// Multiple receive/transmit queue pairs, steered by the device;
    /// needs [`CTRL_VQ`] (the driver sets the pair count through it).
    pub const MQ: u64 = 1 << 22;
    /// Notification suppression with event indices.
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// Virtio 1.x (modern) device.
    pub const VERSION_1: u64 = 1 << 32;
    /// Every offload this driver knows.
    pub const OFFLOADS: u64 = CSUM | GUEST_CSUM | GUEST_TSO4 | GUEST_ECN | HOST_TSO4 | HOST_ECN;
    /// Multiqueue, with the control queue it needs.
    pub const MULTIQUEUE: u64 = MQ | CTRL_VQ;
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

/// The features to accept: the basics plus the wanted offloads,
/// `RING_EVENT_IDX` and `MULTIQUEUE` the device offers, dropping any whose
/// prerequisite is missing (virtio 5.1.3.1).
pub fn negotiate(offered: u64, wanted: u64) -> u64 {
    use feature::*;
    // RING_EVENT_IDX when wanted: unifw's own queue (`crate::virtqueue`)
    // compares the wrapping indices correctly (virtio-drivers 0.13's
    // `should_notify` does not: its queues stalled after 65,536 buffers).
    let basic = MAC | STATUS | VERSION_1;
    let mut features = offered & (basic | (wanted & (OFFLOADS | RING_EVENT_IDX | MULTIQUEUE)));
    // MQ needs the control queue; the control queue serves nothing else
    // here, so both or neither.
    if features & MULTIQUEUE != MULTIQUEUE {
        features &= !MULTIQUEUE;
    }
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

/// Offsets in the device configuration (virtio 1.x, 5.1.4).
pub mod config {
    /// `mac` (6 bytes), with `feature::MAC`.
    pub const MAC: usize = 0;
    /// `max_virtqueue_pairs` (le16), with `feature::MQ`.
    pub const MAX_VIRTQUEUE_PAIRS: usize = 8;
}

/// The most queue pairs a device may offer (virtio 1.x, 5.1.4.1: 0x8000).
pub const MAX_QUEUE_PAIRS: u16 = 0x8000;

/// The receive queue of pair `pair` (receiveq1 is queue 0, receiveqN is
/// 2(N-1)).
pub fn receive_queue(pair: u16) -> u16 {
    pair.saturating_mul(2)
}

/// The transmit queue of pair `pair` (right after its receive queue).
pub fn transmit_queue(pair: u16) -> u16 {
    receive_queue(pair).saturating_add(1)
}

/// The control queue's index: after every pair the device offers, used or
/// not (2 * `max_virtqueue_pairs` with `MQ`, else 2; virtio 1.x, 5.1.2).
/// `None` if that is past the last 16-bit queue index (0x8000 pairs, which
/// the specification allows but no queue number can follow).
pub fn control_queue(features: u64, max_pairs: u16) -> Option<u16> {
    if features & feature::MQ != 0 {
        max_pairs.checked_mul(2)
    } else {
        Some(2)
    }
}

/// The queue pairs the device offers, for the boot log: its
/// `max_virtqueue_pairs` when it offers `MQ` (negotiated or not; QEMU
/// shows the field whenever it offers the feature) and the value is valid,
/// else 1.
pub fn offered_pairs(offered: u64, max_pairs: u16) -> u16 {
    if offered & feature::MQ != 0 && (1..=MAX_QUEUE_PAIRS).contains(&max_pairs) {
        max_pairs
    } else {
        1
    }
}

/// Which queues a device with `features` negotiated gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePlan {
    /// Pairs the device offers (`max_virtqueue_pairs`, 1 without `MQ`).
    pub offered: u16,
    /// Pairs to set up and ask for: the wanted ones, at most `offered`,
    /// at least 1.
    pub pairs: u16,
    /// The control queue, with `MQ` negotiated.
    pub control: Option<u16>,
}

/// Why a device keeps one queue pair although more were wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiqueueError {
    /// `max_virtqueue_pairs` is outside 1..=0x8000.
    BadMaxPairs(u16),
    /// The device answered `VQ_PAIRS_SET` with this status, not `OK`.
    Refused(u8),
}

/// The queues to set up for `wanted` pairs on a device that negotiated
/// `features` and says `max_pairs` (read only with `MQ`). `Err` when `MQ`
/// was negotiated but `max_pairs` is invalid: then no control command can
/// be addressed and the device stays at its one pair.
pub fn plan_queues(features: u64, wanted: u16, max_pairs: u16) -> Result<QueuePlan, MultiqueueError> {
    if features & feature::MQ == 0 {
        return Ok(QueuePlan { offered: 1, pairs: 1, control: None });
    }
    let control = control_queue(features, max_pairs);
    if max_pairs == 0 || max_pairs > MAX_QUEUE_PAIRS || control.is_none() {
        return Err(MultiqueueError::BadMaxPairs(max_pairs));
    }
    Ok(QueuePlan { offered: max_pairs, pairs: wanted.clamp(1, max_pairs), control })
}

/// Control queue classes, commands and answers (virtio 1.x, 5.1.6.5).
pub mod control {
    /// `VIRTIO_NET_CTRL_MQ`.
    pub const CLASS_MQ: u8 = 4;
    /// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`.
    pub const MQ_VQ_PAIRS_SET: u8 = 0;
    /// `VIRTIO_NET_OK`.
    pub const OK: u8 = 0;
    /// `VIRTIO_NET_ERR`.
    pub const ERR: u8 = 1;
}

/// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`: the device-readable part of the
/// control command (the device writes one status byte into a separate
/// buffer, see [`decode_ack`]).
///
/// | offset | field |
/// |---|---|
/// | 0 | class (`control::CLASS_MQ`) |
/// | 1 | command (`control::MQ_VQ_PAIRS_SET`) |
/// | 2 | virtqueue_pairs (le16) |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetQueuePairs(pub u16);

impl SetQueuePairs {
    /// Bytes of the encoded command.
    pub const LEN: usize = 4;

    /// The command's bytes.
    pub fn encode(self) -> [u8; Self::LEN] {
        let [low, high] = self.0.to_le_bytes();
        [control::CLASS_MQ, control::MQ_VQ_PAIRS_SET, low, high]
    }

    /// The command in `bytes`, if they are one.
    pub fn decode(bytes: &[u8]) -> Option<SetQueuePairs> {
        match *bytes {
            [control::CLASS_MQ, control::MQ_VQ_PAIRS_SET, low, high] => {
                Some(SetQueuePairs(u16::from_le_bytes([low, high])))
            }
            _ => None,
        }
    }
}

/// The device's answer to a control command: `OK`, or what it said.
pub fn decode_ack(ack: u8) -> Result<(), MultiqueueError> {
    if ack == control::OK {
        Ok(())
    } else {
        Err(MultiqueueError::Refused(ack))
    }
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

    #[test]
    fn multiqueue_is_negotiated_only_with_its_control_queue() {
        let offered = QEMU | MQ;
        assert_eq!(negotiate(offered, MULTIQUEUE) & MULTIQUEUE, MULTIQUEUE);
        assert_eq!(negotiate(offered, 0) & MULTIQUEUE, 0, "one pair wanted: neither");
        assert_eq!(negotiate(offered & !CTRL_VQ, MULTIQUEUE) & MULTIQUEUE, 0, "MQ needs CTRL_VQ");
        assert_eq!(negotiate(QEMU, MULTIQUEUE) & MULTIQUEUE, 0, "no MQ: no lone CTRL_VQ");
        assert_eq!(negotiate(offered, MULTIQUEUE | OFFLOADS) & OFFLOADS, OFFLOADS);
    }

    #[test]
    fn queue_indices_follow_the_specification() {
        assert_eq!((receive_queue(0), transmit_queue(0)), (0, 1));
        assert_eq!((receive_queue(3), transmit_queue(3)), (6, 7));
        // The control queue comes after all the pairs the device offers.
        assert_eq!(control_queue(MQ, 4), Some(8));
        assert_eq!(control_queue(0, 4), Some(2), "without MQ, after the one pair");
        assert_eq!(control_queue(MQ, 0x7fff), Some(0xfffe));
        assert_eq!(control_queue(MQ, MAX_QUEUE_PAIRS), None, "queue 0x10000 does not exist");
    }

    #[test]
    fn plan_takes_what_is_wanted_within_what_is_offered() {
        let plan = |wanted, max| plan_queues(MQ | CTRL_VQ, wanted, max);
        assert_eq!(plan(2, 4), Ok(QueuePlan { offered: 4, pairs: 2, control: Some(8) }));
        assert_eq!(plan(8, 4), Ok(QueuePlan { offered: 4, pairs: 4, control: Some(8) }));
        assert_eq!(plan(0, 4).map(|p| p.pairs), Ok(1));
        assert_eq!(plan(2, 0), Err(MultiqueueError::BadMaxPairs(0)));
        assert_eq!(plan(2, 0x8001), Err(MultiqueueError::BadMaxPairs(0x8001)));
        assert_eq!(plan(2, MAX_QUEUE_PAIRS), Err(MultiqueueError::BadMaxPairs(0x8000)), "no control queue index");
        assert_eq!(plan_queues(0, 4, 4), Ok(QueuePlan { offered: 1, pairs: 1, control: None }));
        assert_eq!(offered_pairs(QEMU | MQ, 4), 4);
        assert_eq!(offered_pairs(QEMU, 4), 1, "no MQ offered: the field means nothing");
        assert_eq!(offered_pairs(QEMU | MQ, 0), 1);
    }

    #[test]
    fn set_queue_pairs_round_trips_and_acks_decode() {
        assert_eq!(SetQueuePairs(2).encode(), [4, 0, 2, 0]);
        assert_eq!(SetQueuePairs(0x0102).encode(), [4, 0, 2, 1], "le16");
        for pairs in [1, 2, 4, 0x8000] {
            assert_eq!(SetQueuePairs::decode(&SetQueuePairs(pairs).encode()), Some(SetQueuePairs(pairs)));
        }
        assert_eq!(SetQueuePairs::decode(&[4, 1, 2, 0]), None, "another command");
        assert_eq!(SetQueuePairs::decode(&[4, 0, 2]), None, "short");
        assert_eq!(decode_ack(control::OK), Ok(()));
        assert_eq!(decode_ack(control::ERR), Err(MultiqueueError::Refused(1)));
        assert_eq!(decode_ack(0xff), Err(MultiqueueError::Refused(0xff)));
    }
}
