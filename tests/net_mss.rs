//! MSS clamping (`TCPMSS`), byte-exact against SYNs built with the
//! expected option, with full and partial (offloaded) checksums.

mod net_common;

use net_common::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};
use unifw_core::net::checksum::{self, complete_partial};
use unifw_core::net::mss::{clamp_mss, MssChange, MssError};

/// A SYN from the sender with these options (and `data` bytes).
fn syn(mss: Option<u16>, window_scale: Option<u8>, data: usize) -> Vec<u8> {
    let payload = vec![0x42u8; data];
    let repr = TcpRepr {
        src_port: 40000,
        dst_port: 80,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 64240,
        window_scale,
        max_seg_size: mss,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &payload,
    };
    let (src, dst) = (
        IpAddress::from(smoltcp::wire::Ipv4Address::from(SENDER)),
        IpAddress::from(smoltcp::wire::Ipv4Address::from(RECEIVER)),
    );
    ipv4_frame((SENDER_MAC, FW0_MAC), (SENDER, RECEIVER), IpProtocol::Tcp, 64, repr.buffer_len(), |buf| {
        repr.emit(&mut TcpPacket::new_unchecked(buf), &src, &dst, &ChecksumCapabilities::default())
    })
}

/// Clamps the IP packet of `frame` (with 8 spare bytes behind it).
fn clamp(frame: &[u8], mss: u16, partial: bool) -> (Result<(MssChange, usize), MssError>, Vec<u8>) {
    let total = frame.len() - ETH_LEN;
    let mut buffer = frame[ETH_LEN..].to_vec();
    buffer.extend_from_slice(&[0; 8]);
    let result = clamp_mss(&mut buffer, (20, total), mss, partial);
    let len = result.map_or(total, |(_, len)| len);
    buffer.truncate(len);
    let mut out = frame[..ETH_LEN].to_vec();
    out.extend_from_slice(&buffer);
    (result, out)
}

fn checksums_ok(frame: &[u8]) -> bool {
    let ip = Ipv4Packet::new_checked(&frame[ETH_LEN..]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    ip.verify_checksum() && tcp.verify_checksum(&IpAddress::Ipv4(ip.src_addr()), &IpAddress::Ipv4(ip.dst_addr()))
}

/// The pseudo-header sum in the TCP checksum field, as an offloading sender leaves it.
fn make_partial(frame: &mut [u8]) {
    let ip = Ipv4Packet::new_checked(&frame[ETH_LEN..]).unwrap();
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip.src_addr().octets());
    pseudo.extend_from_slice(&ip.dst_addr().octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(ip.payload().len() as u16).to_be_bytes());
    let sum = !checksum::checksum(&pseudo);
    frame[ETH_LEN + 36..ETH_LEN + 38].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn a_larger_mss_is_lowered_and_a_smaller_one_kept() {
    let original = syn(Some(1460), Some(7), 0);
    let (result, out) = clamp(&original, 1360, false);
    assert_eq!(result, Ok((MssChange::Lowered(1460), original.len() - ETH_LEN)));
    assert_eq!(out, syn(Some(1360), Some(7), 0));
    let small = syn(Some(1200), None, 0);
    assert_eq!(clamp(&small, 1360, false), (Ok((MssChange::Unchanged, small.len() - ETH_LEN)), small.clone()));
}

#[test]
fn a_syn_without_mss_gets_one_of_at_most_536() {
    let bare = syn(None, Some(7), 0);
    let (result, out) = clamp(&bare, 1360, false);
    assert_eq!(result, Ok((MssChange::Added, bare.len() - ETH_LEN + 4)));
    assert!(checksums_ok(&out));
    assert_eq!(out, syn(Some(536), Some(7), 0), "inserted first, as Linux and smoltcp order it");
    // Below 536 the rule's value wins.
    assert_eq!(clamp(&bare, 500, false).1, syn(Some(500), Some(7), 0));
    // With data after the header nothing can be inserted.
    let with_data = syn(None, None, 10);
    assert_eq!(clamp(&with_data, 1360, false).1, with_data);
}

#[test]
fn partial_checksums_stay_partial_and_complete_right() {
    for (original, mss, want) in [
        (syn(Some(1460), None, 0), 1360, syn(Some(1360), None, 0)),
        (syn(None, None, 0), 1360, syn(Some(536), None, 0)),
    ] {
        let mut partial = original.clone();
        make_partial(&mut partial);
        let (_, mut out) = clamp(&partial, mss, true);
        assert!(complete_partial(&mut out, ETH_LEN + 20, 16));
        assert_eq!(out, want);
    }
}

#[test]
fn a_broken_data_offset_is_an_error() {
    let mut bad = syn(Some(1460), None, 0);
    bad[ETH_LEN + 32] = 0x10; // 4 bytes: shorter than a TCP header
    assert_eq!(clamp(&bad, 1360, false).0, Err(MssError));
    bad[ETH_LEN + 32] = 0xf0; // 60 bytes: longer than the segment
    assert_eq!(clamp(&bad, 1360, false).0, Err(MssError));
}
