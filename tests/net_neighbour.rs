//! ARP resolution: queues per unresolved neighbour, retries, failure,
//! flush on resolution, overflow, and re-probing of stale entries.

mod net_common;

use net_common::*;
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetFrame, Ipv4Packet};
use unifw_core::net::neighbour::{MAX_PROBES, QUEUE_LEN, REACHABLE_MS, RETRY_MS};
use unifw_core::net::{Dataplane, DataplaneConfig, Disposition, DropReason, NeighbourLimits, VecSink};

fn arp_requests(sink: &VecSink) -> Vec<u32> {
    sink.frames
        .iter()
        .filter_map(|(_, frame)| {
            let eth = EthernetFrame::new_checked(&frame[..]).ok()?;
            let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
            match arp {
                ArpRepr::EthernetIpv4 { operation: ArpOperation::Request, target_protocol_addr, .. } => {
                    Some(u32::from(target_protocol_addr))
                }
                _ => None,
            }
        })
        .collect()
}

fn send(dp: &mut Dataplane, now: u64, port: u16, sink: &mut VecSink) -> Disposition {
    let mut frame = udp_frame(SENDER, RECEIVER, port, 53, 10);
    dp.handle_frame(now, 0, &mut frame, &accept_all, sink)
}

#[test]
fn frames_wait_for_arp_and_flush_on_reply() {
    let mut dp = lab(64);
    let mut sink = VecSink::default();
    for port in 0..QUEUE_LEN as u16 {
        assert_eq!(send(&mut dp, 0, port, &mut sink), Disposition::Queued);
    }
    assert_eq!(send(&mut dp, 0, 99, &mut sink), Disposition::Drop(DropReason::NeighbourQueueFull));
    assert_eq!(arp_requests(&sink), vec![RECEIVER], "one request, not one per frame");
    let (out_if, request) = &sink.frames[0];
    assert_eq!(*out_if, 1);
    assert_eq!(&request[0..6], &[0xff; 6]);
    assert_eq!(&request[6..12], &FW1_MAC);
    assert_eq!(request.len(), 60);
    sink.frames.clear();

    let mut reply = arp_frame(ArpOperation::Reply, RECEIVER_MAC, RECEIVER, FW1_MAC, FW1);
    assert_eq!(dp.handle_frame(10, 1, &mut reply, &accept_all, &mut sink), Disposition::Local);
    assert_eq!(sink.frames.len(), QUEUE_LEN);
    for (port, (out_if, frame)) in sink.frames.iter().enumerate() {
        assert_eq!(*out_if, 1);
        assert_eq!(&frame[0..6], &RECEIVER_MAC);
        assert_eq!(&frame[6..12], &FW1_MAC);
        let ip = Ipv4Packet::new_checked(&frame[ETH_LEN..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.hop_limit(), 63);
        assert_eq!(u16::from_be_bytes([frame[ETH_LEN + 20], frame[ETH_LEN + 21]]), port as u16, "in order");
    }
    assert_eq!(dp.neighbours().queued_frames(), 0);
    assert!(matches!(send(&mut dp, 11, 7, &mut VecSink::default()), Disposition::Forward { .. }));
}

#[test]
fn retries_then_failure_drops_the_queue() {
    let mut dp = lab(64);
    let mut sink = VecSink::default();
    send(&mut dp, 0, 1, &mut sink);
    send(&mut dp, 0, 2, &mut sink);
    let mut now = 0;
    let mut next = dp.poll(now, &mut sink);
    assert_eq!(next, Some(RETRY_MS));
    while let Some(at) = next {
        now = at;
        next = dp.poll(now, &mut sink);
    }
    assert_eq!(arp_requests(&sink).len(), usize::from(MAX_PROBES));
    assert_eq!(now, u64::from(MAX_PROBES) * RETRY_MS);
    assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::NeighbourUnreachable), 2);
    assert_eq!(dp.neighbours().queued_frames(), 0);
    assert_eq!(dp.neighbours().pending(), 0);
    assert_eq!(dp.counters().events.arp_requests_sent, 3);
}

#[test]
fn pending_neighbours_are_bounded() {
    let interfaces = lab_interfaces();
    let mut config = DataplaneConfig::new(interfaces, vec![], 1, 64);
    config.neighbour = NeighbourLimits { capacity: 8, max_pending: 2, frame_size: 1518 };
    let mut dp = Dataplane::new(config).unwrap();
    let mut sink = VecSink::default();
    for host in 2..6u32 {
        let mut frame = udp_frame(SENDER, 0x0a02_0000 + host, 1, 2, 3);
        let d = dp.handle_frame(0, 0, &mut frame, &accept_all, &mut sink);
        let expected = if host < 4 { Disposition::Queued } else { Disposition::Drop(DropReason::NeighbourPendingFull) };
        assert_eq!(d, expected, "host {host}");
    }
    // Over the MTU, a datagram is fragmented and the fragments queue.
    let mut big = udp_frame(SENDER, 0x0a02_0002, 1, 2, 1600);
    assert_eq!(dp.handle_frame(0, 0, &mut big, &accept_all, &mut sink), Disposition::Queued);
    assert_eq!(dp.neighbours().queued_frames(), 4, "two queued before, two fragments now");
    // Within a jumbo MTU, it is one frame too large for a queue slot.
    dp.set_interface_mtu(1, 9000);
    let mut big = udp_frame(SENDER, 0x0a02_0003, 1, 2, 1600);
    assert_eq!(
        dp.handle_frame(0, 0, &mut big, &accept_all, &mut sink),
        Disposition::Drop(DropReason::NeighbourFrameTooLarge)
    );
}

#[test]
fn stale_entries_keep_forwarding_while_reprobed() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let later = REACHABLE_MS + 1;
    assert!(matches!(send(&mut dp, later, 1, &mut sink), Disposition::Forward { .. }));
    assert_eq!(arp_requests(&sink), vec![RECEIVER]);
    // No answer: after the probes the entry is forgotten and frames queue again.
    let mut now = later;
    while let Some(at) = dp.poll(now, &mut sink) {
        now = at;
    }
    assert_eq!(dp.neighbours().lookup(1, RECEIVER), None);
    assert_eq!(send(&mut dp, now, 2, &mut sink), Disposition::Queued);
}

#[test]
fn arp_learning_is_limited_to_the_subnet_and_to_requests_for_us() {
    let mut dp = lab(64);
    let mut sink = VecSink::default();
    // A request for another host creates nothing.
    let mut other = arp_frame(ArpOperation::Request, RECEIVER_MAC, RECEIVER, [0; 6], 0x0a02_0009);
    dp.handle_frame(0, 1, &mut other, &accept_all, &mut sink);
    assert_eq!(dp.neighbours().lookup(1, RECEIVER), None);
    // A sender outside the interface's subnet is not learnt.
    let mut foreign = arp_frame(ArpOperation::Request, RECEIVER_MAC, 0x0b00_0001, [0; 6], FW1);
    dp.handle_frame(0, 1, &mut foreign, &accept_all, &mut sink);
    assert!(dp.neighbours().is_empty());
    let mut ours = arp_frame(ArpOperation::Request, RECEIVER_MAC, RECEIVER, [0; 6], FW1);
    dp.handle_frame(0, 1, &mut ours, &accept_all, &mut sink);
    assert_eq!(dp.neighbours().lookup(1, RECEIVER), Some(RECEIVER_MAC));
    assert!(sink.frames.is_empty());
}

#[test]
fn transmit_failures_are_counted() {
    let mut dp = lab(64);
    let mut refusing = VecSink { refuse: true, ..VecSink::default() };
    assert_eq!(send(&mut dp, 0, 1, &mut refusing), Disposition::Queued);
    let mut reply = arp_frame(ArpOperation::Reply, RECEIVER_MAC, RECEIVER, FW1_MAC, FW1);
    dp.handle_frame(1, 1, &mut reply, &accept_all, &mut refusing);
    assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::TransmitQueueFull), 1);
}
