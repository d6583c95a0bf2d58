//! virtio-net feature negotiation and what a negotiated set can transmit:
//! the pure logic of the kernel's driver (`src/kernel/virtio/net.rs`), here
//! so that host tests cover it.

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

/// The features to accept: the basics plus the wanted offloads the device
/// offers, dropping any whose prerequisite is missing (virtio 5.1.3.1).
pub fn negotiate(offered: u64, wanted: u64) -> u64 {
    use feature::*;
    // Not RING_EVENT_IDX: virtio-drivers 0.13's `VirtQueue::should_notify`
    // compares the wrapping 16-bit ring indices with `>=`, so after 65,536
    // buffers it stops notifying the device and the queue stalls (seen here
    // as a TCP stream freezing after ~65,500 frames); and with event indices
    // `set_dev_notify` no longer suppresses interrupts. Plain flags work.
    let basic = MAC | STATUS | VERSION_1;
    let mut features = offered & (basic | (wanted & OFFLOADS));
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
    fn takes_offloads_and_basics_but_never_event_idx() {
        assert_eq!(negotiate(QEMU, OFFLOADS), OFFLOADS | MAC | STATUS | VERSION_1);
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
