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
    // A full queue drops its oldest frame for the new one, as Linux.
    assert_eq!(send(&mut dp, 0, 99, &mut sink), Disposition::Queued);
    assert_eq!(dp.counters().drops_for(DropReason::NeighbourQueueFull), 1);
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
        let want = if port + 1 == QUEUE_LEN { 99 } else { port as u16 + 1 };
        assert_eq!(u16::from_be_bytes([frame[ETH_LEN + 20], frame[ETH_LEN + 21]]), want, "in order");
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

fn limited(limits: NeighbourLimits) -> Dataplane {
    let mut config = DataplaneConfig::new(lab_interfaces(), vec![], 1, 64);
    config.neighbour = limits;
    Dataplane::new(config).unwrap()
}

fn forward_to(dp: &mut Dataplane, now: u64, in_if: u8, dst: u32, sink: &mut VecSink) -> Disposition {
    let src = if in_if == 0 { SENDER } else { RECEIVER };
    let mut frame = udp_frame(src, dst, 1, 2, 3);
    dp.handle_frame(now, in_if, &mut frame, &accept_all, sink)
}

#[test]
fn a_new_resolution_replaces_the_oldest_pending_one() {
    let limits = NeighbourLimits { capacity: 8, max_pending: 3, max_pending_per_interface: 2, frame_size: 1518 };
    let mut dp = limited(limits);
    let mut sink = VecSink::default();
    for host in 2..6u32 {
        assert_eq!(forward_to(&mut dp, u64::from(host), 0, 0x0a02_0000 + host, &mut sink), Disposition::Queued);
    }
    // Two may pend on eth1: 10.2.0.2 and .3 were replaced, oldest first.
    assert_eq!(dp.neighbours().pending_on(1), 2);
    assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::NeighbourPendingReplaced), 2);
    assert_eq!(arp_requests(&sink), vec![0x0a02_0002, 0x0a02_0003, 0x0a02_0004, 0x0a02_0005]);
    // The flood on eth1 leaves eth0 its own resolutions; the third in all
    // fits, a fourth replaces the oldest anywhere.
    assert_eq!(forward_to(&mut dp, 10, 1, 0x0a01_0007, &mut sink), Disposition::Queued);
    assert_eq!(forward_to(&mut dp, 11, 1, 0x0a01_0008, &mut sink), Disposition::Queued);
    assert_eq!(dp.neighbours().pending(), 3);
    assert_eq!(dp.neighbours().pending_on(0), 2);
    // The survivors still resolve and flush.
    let mut reply = arp_frame(ArpOperation::Reply, SENDER_MAC, 0x0a01_0007, FW0_MAC, FW0);
    sink.frames.clear();
    dp.handle_frame(12, 0, &mut reply, &accept_all, &mut sink);
    assert_eq!(sink.frames.len(), 1);
    assert_eq!(dp.neighbours().pending(), 2);
    // Over the MTU, a datagram is fragmented and its fragments queue.
    let mut big = udp_frame(SENDER, 0x0a02_0009, 1, 2, 1600);
    assert_eq!(dp.handle_frame(13, 0, &mut big, &accept_all, &mut sink), Disposition::Queued);
    // Within a jumbo MTU, it is one frame too large for a queue slot.
    dp.set_interface_mtu(1, 9000);
    let mut big = udp_frame(SENDER, 0x0a02_000a, 1, 2, 1600);
    assert_eq!(
        dp.handle_frame(13, 0, &mut big, &accept_all, &mut sink),
        Disposition::Drop(DropReason::NeighbourFrameTooLarge)
    );
}

#[test]
fn a_flood_of_unanswered_destinations_does_not_block_a_new_neighbour() {
    // Replies to spoofed on-link sources of a SYN flood (eth1) while a new
    // host on eth0 must be resolved.
    let mut dp = lab(64);
    let mut sink = VecSink::default();
    let mut now = 0;
    for round in 0..2000u32 {
        now = u64::from(round / 10);
        forward_to(&mut dp, now, 0, 0x0a02_0064 + round % 151, &mut sink);
        if round % 100 == 0 {
            dp.poll(now, &mut sink);
        }
    }
    sink.frames.clear();
    assert_eq!(forward_to(&mut dp, now, 1, 0x0a01_0007, &mut sink), Disposition::Queued);
    assert_eq!(arp_requests(&sink), vec![0x0a01_0007]);
    let mut reply = arp_frame(ArpOperation::Reply, SENDER_MAC, 0x0a01_0007, FW0_MAC, FW0);
    dp.handle_frame(now + 1, 0, &mut reply, &accept_all, &mut sink);
    assert!(matches!(forward_to(&mut dp, now + 2, 1, 0x0a01_0007, &mut sink), Disposition::Forward { .. }));
}

#[test]
fn an_arp_flood_from_20000_senders_keeps_the_busy_neighbour() {
    // eth1 on a /16, so that 20,000 distinct senders are on-link.
    let mut interfaces = lab_interfaces();
    interfaces[1].addr = unifw_core::net::addr::Cidr::new(FW1, 16);
    let mut dp = Dataplane::new(DataplaneConfig::new(interfaces, vec![], 1, 64)).unwrap();
    let mut sink = VecSink::default();
    let mut arp = arp_frame(ArpOperation::Request, RECEIVER_MAC, RECEIVER, [0xff; 6], FW1);
    dp.handle_frame(0, 1, &mut arp, &accept_all, &mut sink);
    let capacity = dp.neighbours().capacity();
    // 10 s: 20,000 ARP requests for us from distinct senders on eth1
    // (10.2.x.y), with the flow's frames to the receiver every 5 ms.
    for i in 0..20_000u32 {
        let now = u64::from(i) / 2;
        let sender = 0x0a02_0000 + 3 + i;
        let mac = [2, 0x10, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let mut request = arp_frame(ArpOperation::Request, mac, sender, [0; 6], FW1);
        let mut ours = VecSink::default();
        dp.handle_frame(now, 1, &mut request, &accept_all, &mut ours);
        if i % 10 == 0 {
            assert!(matches!(send(&mut dp, now, 1, &mut sink), Disposition::Forward { .. }), "frame {i}");
            dp.poll(now, &mut sink);
        }
    }
    assert_eq!(arp_requests(&sink), Vec::<u32>::new(), "the busy neighbour was never re-resolved");
    assert_eq!(dp.neighbours().lookup(1, RECEIVER), Some(RECEIVER_MAC));
    assert_eq!(dp.neighbours().len(), capacity);
    assert!(dp.neighbours().evictions() > 19_000);
}

#[test]
fn a_full_table_evicts_the_least_recently_used() {
    let limits = NeighbourLimits { capacity: 4, max_pending: 2, max_pending_per_interface: 2, frame_size: 1518 };
    let mut dp = limited(limits);
    let mut sink = VecSink::default();
    let hosts = [0x0a02_0002, 0x0a02_0003, 0x0a02_0004, 0x0a02_0005];
    for (i, &host) in hosts.iter().enumerate() {
        forward_to(&mut dp, i as u64, 0, host, &mut sink);
        let mac = [2, 0, 0, 0, 2, i as u8];
        let mut reply = arp_frame(ArpOperation::Reply, mac, host, FW1_MAC, FW1);
        dp.handle_frame(i as u64, 1, &mut reply, &accept_all, &mut sink);
    }
    assert_eq!(dp.neighbours().len(), 4);
    // Long after: everyone but 10.2.0.2 is used again, then a new host comes.
    let later = 100_000;
    for &host in &hosts[1..] {
        assert!(matches!(forward_to(&mut dp, later, 0, host, &mut sink), Disposition::Forward { .. }));
    }
    assert_eq!(forward_to(&mut dp, later, 0, 0x0a02_0009, &mut sink), Disposition::Queued);
    assert_eq!(dp.neighbours().lookup(1, hosts[0]), None, "the least recently used went");
    for &host in &hosts[1..] {
        assert!(dp.neighbours().lookup(1, host).is_some());
    }
    // Everything in recent use or pending: a newcomer is refused, not evicting.
    assert_eq!(
        forward_to(&mut dp, later, 0, 0x0a02_000a, &mut sink),
        Disposition::Drop(DropReason::NeighbourPendingFull)
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
