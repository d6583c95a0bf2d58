//! The output MTU on the forwarding path: Don't Fragment over the MTU gets
//! ICMP "fragmentation needed" with the MTU (RFC 1191), other packets are
//! fragmented, and a TCP segmentation offload is judged by its segment size
//! and segmented in software when it must wait for ARP.

mod net_common;

use net_common::*;
use smoltcp::wire::{Icmpv4Packet, IpAddress, Ipv4Packet, TcpPacket};
use unifw_core::net::{Dataplane, Disposition, DropReason, Offload, VecSink};

/// The lab with eth1 at MTU 1400 and both neighbours resolved.
fn lab_1400() -> Dataplane {
    let mut dp = lab_resolved(64);
    dp.set_interface_mtu(1, 1400);
    dp
}

fn with_df(mut frame: Vec<u8>) -> Vec<u8> {
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..]);
    ip.set_dont_frag(true);
    ip.fill_checksum();
    frame
}

#[test]
fn df_over_the_mtu_gets_fragmentation_needed_with_the_mtu() {
    let mut dp = lab_1400();
    let mut sink = VecSink::default();
    let original = with_df(udp_frame(SENDER, RECEIVER, 1000, 53, 1450 - 28));
    let mut frame = original.clone();
    let d = dp.handle_frame(0, 0, &mut frame, &accept_all, &mut sink);
    assert_eq!(d, Disposition::Drop(DropReason::FragmentationNeeded));
    assert_eq!(dp.counters().drops_for(DropReason::FragmentationNeeded), 1);
    assert_eq!(sink.frames.len(), 1);
    let (out_if, reply) = &sink.frames[0];
    assert_eq!(*out_if, 0, "back to the sender");
    let ip = Ipv4Packet::new_checked(&reply[ETH_LEN..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((u32::from(ip.src_addr()), u32::from(ip.dst_addr())), (FW0, SENDER));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.msg_type().into(), icmp.msg_code()), (3u8, 4u8));
    assert_eq!(&ip.payload()[6..8], &1400u16.to_be_bytes(), "the next-hop MTU (RFC 1191)");
    assert_eq!(&ip.payload()[8..], &original[ETH_LEN..ETH_LEN + 548], "the datagram as received, 548 bytes of it");
    // Exactly the MTU passes whole; Linux decides before the FORWARD chain.
    let mut fits = with_df(udp_frame(SENDER, RECEIVER, 1000, 53, 1400 - 28));
    assert!(matches!(dp.handle_frame(0, 0, &mut fits, &accept_all, &mut sink), Disposition::Forward { .. }));
    let mut refused = with_df(udp_frame(SENDER, RECEIVER, 1000, 53, 1401 - 28));
    assert_eq!(
        dp.handle_frame(0, 0, &mut refused, &drop_all, &mut sink),
        Disposition::Drop(DropReason::FragmentationNeeded)
    );
}

/// Puts fragments back together: the header of the first, the payloads at
/// their offsets.
fn reassemble(fragments: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = Vec::new();
    let mut header = Vec::new();
    for (i, frame) in fragments.iter().enumerate() {
        let ip = Ipv4Packet::new_checked(&frame[ETH_LEN..]).unwrap();
        assert!(ip.verify_checksum(), "fragment {i}");
        assert_eq!(ip.more_frags(), i + 1 < fragments.len(), "fragment {i}");
        let at = usize::from(ip.frag_offset());
        if payload.len() < at + ip.payload().len() {
            payload.resize(at + ip.payload().len(), 0);
        }
        payload[at..at + ip.payload().len()].copy_from_slice(ip.payload());
        if i == 0 {
            header = frame[..ETH_LEN + 20].to_vec();
        }
    }
    let mut whole = header;
    whole.extend_from_slice(&payload);
    let mut ip = Ipv4Packet::new_unchecked(&mut whole[ETH_LEN..]);
    ip.set_total_len((20 + payload.len()) as u16);
    ip.set_more_frags(false);
    ip.fill_checksum();
    whole
}

#[test]
fn a_datagram_without_df_is_fragmented_byte_exact() {
    let mut dp = lab_1400();
    let mut sink = VecSink::default();
    let original = udp_frame(SENDER, RECEIVER, 1000, 53, 3000);
    let mut frame = original.clone();
    assert_eq!(dp.handle_frame(0, 0, &mut frame, &accept_all, &mut sink), Disposition::Queued);
    let fragments: Vec<Vec<u8>> = sink.frames.iter().map(|(out_if, f)| (assert_eq!(*out_if, 1), f.clone()).1).collect();
    assert_eq!(fragments.iter().map(Vec::len).collect::<Vec<_>>(), [14 + 1396, 14 + 1396, 14 + 20 + 3008 - 2752]);
    for f in &fragments {
        assert_eq!((&f[..6], &f[6..12]), (&RECEIVER_MAC[..], &FW1_MAC[..]));
        assert!(f.len() - ETH_LEN <= 1400);
    }
    // The original as forwarded whole would have been: MACs and TTL rewritten.
    let mut want = original.clone();
    want[..6].copy_from_slice(&RECEIVER_MAC);
    want[6..12].copy_from_slice(&FW1_MAC);
    let mut ip = Ipv4Packet::new_unchecked(&mut want[ETH_LEN..]);
    ip.set_hop_limit(63);
    ip.fill_checksum();
    assert_eq!(reassemble(&fragments), want);
    assert_eq!(dp.counters().interface(1).unwrap().sent, 3);
    assert_eq!(dp.counters().interface(1).unwrap().forwarded_out, 1);
}

/// A TCP segmentation offload of `segments` full segments of `mss` bytes,
/// with DF as Linux sends it.
fn offloaded_tcp(mss: usize, segments: usize) -> Vec<u8> {
    with_df(Tcp::new(SENDER, RECEIVER, 40000, 5201).ack(7000, 1).payload(mss * segments).frame())
}

#[test]
fn an_offloaded_segment_is_judged_by_its_segment_size() {
    let mut dp = lab_1400();
    let mut sink = VecSink::default();
    // 1360 + 40 = 1400: each segment fits, though the frame is 13 KB.
    let mut frame = offloaded_tcp(1360, 10);
    let offload = Offload { partial: None, segment_size: Some(1360) };
    let d = dp.handle_offloaded_frame(0, 0, &mut frame, offload, &accept_all, &mut sink);
    assert_eq!(d, Disposition::Forward { out_if: 1, len: frame.len() }, "forwarded whole, for the NIC to cut");
    // 1361 + 40 is one byte too many.
    let mut frame = offloaded_tcp(1361, 10);
    let offload = Offload { partial: None, segment_size: Some(1361) };
    let d = dp.handle_offloaded_frame(0, 0, &mut frame, offload, &accept_all, &mut sink);
    assert_eq!(d, Disposition::Drop(DropReason::FragmentationNeeded));
    let (_, reply) = sink.frames.last().unwrap();
    assert_eq!(&reply[ETH_LEN + 20 + 6..ETH_LEN + 20 + 8], &1400u16.to_be_bytes());
}

#[test]
fn an_offloaded_segment_waiting_for_arp_is_segmented_into_the_queue() {
    let mut dp = lab(64);
    let mut sink = VecSink::default();
    // A whole 64 KiB offload: 45 segments, all queued (QUEUE_LEN 64).
    let original = offloaded_tcp(1448, 45);
    let mut frame = original.clone();
    let offload = Offload { partial: None, segment_size: Some(1448) };
    let d = dp.handle_offloaded_frame(0, 0, &mut frame, offload, &accept_all, &mut sink);
    assert_eq!(d, Disposition::Queued);
    assert_eq!(dp.neighbours().queued_frames(), 45, "45 segments, not one frame too large for a slot");
    let mut arp = arp_frame(smoltcp::wire::ArpOperation::Reply, RECEIVER_MAC, RECEIVER, FW1_MAC, FW1);
    sink.frames.clear();
    dp.handle_frame(0, 1, &mut arp, &accept_all, &mut sink);
    assert_eq!(sink.frames.len(), 45);
    let mut stream = Vec::new();
    for (i, (_, f)) in sink.frames.iter().enumerate() {
        let ip = Ipv4Packet::new_checked(&f[ETH_LEN..]).unwrap();
        assert!(ip.verify_checksum());
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
        assert!(tcp.verify_checksum(&src, &dst));
        assert_eq!(tcp.seq_number().0 as u32, 7000 + 1448 * i as u32);
        stream.extend_from_slice(tcp.payload());
    }
    assert_eq!(stream, original[ETH_LEN + 40..]);
}
