//! Forwarding decisions on hand-built frames: rewrite, TTL expiry, no
//! route, malformed headers, local delivery and the input chain.

mod net_common;

use net_common::*;
use smoltcp::wire::{Icmpv4Packet, Ipv4Packet};
use unifw_core::flow::{Action, Chain, PacketKey, RejectWith};
use unifw_core::net::addr::Cidr;
use unifw_core::net::{checksum, Dataplane, DataplaneConfig, Disposition, DropReason, StaticRoute, VecSink};

fn forward_one(dp: &mut Dataplane, frame: &mut [u8]) -> (Disposition, VecSink) {
    let mut sink = VecSink::default();
    let disposition = dp.handle_frame(1_000, 0, frame, &accept_all, &mut sink);
    (disposition, sink)
}

#[test]
fn forwarded_frame_is_rewritten_in_place() {
    let mut dp = lab_resolved(64);
    let mut frame = Tcp::new(SENDER, RECEIVER, 40000, 80).syn(7).frame();
    let original = frame.clone();
    frame.extend_from_slice(&[0; 6]); // Ethernet padding must not be forwarded.
    let (disposition, sink) = forward_one(&mut dp, &mut frame);
    assert_eq!(disposition, Disposition::Forward { out_if: 1, len: original.len() });
    assert!(sink.frames.is_empty());
    assert_eq!(&frame[0..6], &RECEIVER_MAC);
    assert_eq!(&frame[6..12], &FW1_MAC);
    assert_eq!(frame[ETH_LEN + 8], 63);
    assert!(ip_checksum_ok(&frame));
    // Only MACs, TTL and checksum changed; the payload is untouched.
    assert_eq!(&frame[ETH_LEN + 12..original.len()], &original[ETH_LEN + 12..]);
    assert_eq!(dp.counters().interfaces[1].forwarded_out, 1);
}

#[test]
fn ttl_one_gets_time_exceeded_quoting_the_datagram() {
    let mut dp = lab_resolved(64);
    let mut frame = Tcp::new(SENDER, RECEIVER, 40000, 80).syn(7).ttl(1).frame();
    let original = frame.clone();
    let (disposition, sink) = forward_one(&mut dp, &mut frame);
    assert_eq!(disposition, Disposition::Drop(DropReason::TtlExpired));
    assert_eq!(frame, original, "a dropped frame is not modified");
    let [(out_if, reply)] = &sink.frames[..] else { panic!("one reply expected") };
    assert_eq!(*out_if, 0);
    assert_eq!(&reply[0..6], &SENDER_MAC);
    assert_eq!(&reply[6..12], &FW0_MAC);
    let ip = Ipv4Packet::new_checked(&reply[ETH_LEN..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(u32::from(ip.src_addr()), FW0);
    assert_eq!(u32::from(ip.dst_addr()), SENDER);
    // The whole SYN (it is shorter than 548 bytes), as Linux quotes it.
    let quoted = original.len() - ETH_LEN;
    assert_eq!(ip.total_len() as usize, 20 + 8 + quoted);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((ip.payload()[0], icmp.msg_code()), (11, 0));
    assert_eq!(checksum::checksum(ip.payload()), 0);
    assert_eq!(&ip.payload()[8..], &original[ETH_LEN..]);
    assert_eq!(dp.counters().events.icmp_errors_sent, 1);
    assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::TtlExpired), 1);
}

#[test]
fn no_route_gets_net_unreachable() {
    let mut dp = lab_resolved(64);
    let mut frame = udp_frame(SENDER, 0x0808_0808, 5000, 53, 10);
    let (disposition, sink) = forward_one(&mut dp, &mut frame);
    assert_eq!(disposition, Disposition::Drop(DropReason::NoRoute));
    let reply = &sink.frames[0].1;
    let ip = Ipv4Packet::new_checked(&reply[ETH_LEN..]).unwrap();
    assert_eq!((ip.payload()[0], ip.payload()[1]), (3, 0));
}

#[test]
fn static_default_route_goes_via_gateway() {
    let routes = vec![StaticRoute { prefix: 0, prefix_len: 0, gateway: RECEIVER }];
    let mut dp = Dataplane::new(DataplaneConfig::new(lab_interfaces(), routes, 4, 64)).unwrap();
    let mut sink = VecSink::default();
    let mut frame = udp_frame(SENDER, 0x0808_0808, 5000, 53, 10);
    assert_eq!(dp.handle_frame(0, 0, &mut frame, &accept_all, &mut sink), Disposition::Queued);
    // The ARP request asks for the gateway, not the destination.
    let (out_if, arp) = &sink.frames[0];
    assert_eq!(*out_if, 1);
    assert_eq!(&arp[ETH_LEN + 24..ETH_LEN + 28], &RECEIVER.to_be_bytes());
}

fn drop_reason_of(mut frame: Vec<u8>) -> Disposition {
    let mut dp = lab_resolved(64);
    forward_one(&mut dp, &mut frame).0
}

#[test]
fn malformed_headers_are_counted_drops() {
    let good = udp_frame(SENDER, RECEIVER, 5000, 6000, 10);
    let mut bad_checksum = good.clone();
    bad_checksum[ETH_LEN + 10] ^= 0xff;
    assert_eq!(drop_reason_of(bad_checksum), Disposition::Drop(DropReason::Ipv4Checksum));

    let mut short_ihl = good.clone();
    short_ihl[ETH_LEN] = 0x44;
    refresh_ip_checksum(&mut short_ihl);
    assert_eq!(drop_reason_of(short_ihl), Disposition::Drop(DropReason::Ipv4HeaderLength));

    let mut version = good.clone();
    version[ETH_LEN] = 0x65;
    assert_eq!(drop_reason_of(version), Disposition::Drop(DropReason::Ipv4Version));

    let truncated = good[..good.len() - 4].to_vec();
    assert_eq!(drop_reason_of(truncated), Disposition::Drop(DropReason::Ipv4TotalLength));
    assert_eq!(drop_reason_of(good[..ETH_LEN + 12].to_vec()), Disposition::Drop(DropReason::Ipv4Truncated));
    assert_eq!(drop_reason_of(good[..10].to_vec()), Disposition::Drop(DropReason::EthernetTruncated));

    let mut total_below_header = good.clone();
    total_below_header[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&12u16.to_be_bytes());
    refresh_ip_checksum(&mut total_below_header);
    assert_eq!(drop_reason_of(total_below_header), Disposition::Drop(DropReason::Ipv4TotalLength));

    let mut ipv6 = good.clone();
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(drop_reason_of(ipv6), Disposition::Drop(DropReason::EtherType));

    let mut other_mac = good.clone();
    other_mac[0..6].copy_from_slice(&[0x02, 9, 9, 9, 9, 9]);
    assert_eq!(drop_reason_of(other_mac), Disposition::Drop(DropReason::NotOurMac));

    let mut short_udp = good.clone();
    short_udp[ETH_LEN + 20 + 4..ETH_LEN + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(drop_reason_of(short_udp), Disposition::Drop(DropReason::L4Malformed));
}

#[test]
fn drops_are_counted_per_interface_and_reason() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let mut bad = udp_frame(SENDER, RECEIVER, 5000, 6000, 10);
    bad[ETH_LEN + 10] ^= 1;
    for _ in 0..3 {
        dp.handle_frame(0, 0, &mut bad.clone(), &accept_all, &mut sink);
    }
    dp.handle_frame(0, 7, &mut bad.clone(), &accept_all, &mut sink);
    assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::Ipv4Checksum), 3);
    assert_eq!(dp.counters().interfaces[1].total_drops(), 0);
    assert_eq!(dp.counters().drops_for(DropReason::UnknownInterface), 1);
}

#[test]
fn martian_sources_are_dropped() {
    let mut frame = udp_frame(0x7f00_0001, RECEIVER, 5000, 6000, 10);
    frame[0..6].copy_from_slice(&FW0_MAC);
    assert_eq!(drop_reason_of(frame), Disposition::Drop(DropReason::Martian));
}

#[test]
fn local_traffic_is_judged_by_the_input_chain() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let mut ping = echo_frame(SENDER, FW0, true, 1, 1, 64);
    let input_only = |chain: Chain, _: &PacketKey| match chain {
        Chain::Input => verdict(Action::Accept, Some(2)),
        _ => verdict(Action::Drop, None),
    };
    assert_eq!(dp.handle_frame(0, 0, &mut ping, &input_only, &mut sink), Disposition::Local);
    assert_eq!(dp.counters().rule_hits[2], 1);
    // The firewall's other address is local too (weak host model).
    let mut ping_other = echo_frame(SENDER, FW1, true, 2, 1, 64);
    assert_eq!(dp.handle_frame(0, 0, &mut ping_other, &input_only, &mut sink), Disposition::Local);
    let mut ping = echo_frame(SENDER, FW0, true, 3, 1, 64);
    assert_eq!(dp.handle_frame(0, 0, &mut ping, &drop_all, &mut sink), Disposition::Drop(DropReason::RuleDrop));
    assert_eq!(dp.counters().policy_hits[..2], [1, 0]);
    let mut udp = udp_frame(SENDER, FW0, 5000, 161, 4);
    let reject = reject_with(RejectWith::PortUnreachable);
    assert_eq!(dp.handle_frame(0, 0, &mut udp, &reject, &mut sink), Disposition::Drop(DropReason::RuleReject));
    let reply = &sink.frames.last().unwrap().1;
    let ip = Ipv4Packet::new_checked(&reply[ETH_LEN..]).unwrap();
    assert_eq!(u32::from(ip.src_addr()), FW0);
    assert_eq!((ip.payload()[0], ip.payload()[1]), (3, 3));
}

#[test]
fn arp_and_broadcast_are_local_and_not_forwarded() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let mut broadcast = udp_frame(SENDER, u32::MAX, 68, 67, 10);
    broadcast[0..6].copy_from_slice(&[0xff; 6]);
    assert_eq!(dp.handle_frame(0, 0, &mut broadcast, &accept_all, &mut sink), Disposition::Local);
    let mut directed = udp_frame(SENDER, 0x0a01_00ff, 5000, 5000, 10);
    assert_eq!(dp.handle_frame(0, 0, &mut directed, &accept_all, &mut sink), Disposition::Local);
    // A unicast packet for someone else inside a link broadcast is not forwarded.
    let mut sneaky = udp_frame(SENDER, RECEIVER, 5000, 5000, 10);
    sneaky[0..6].copy_from_slice(&[0xff; 6]);
    assert_eq!(dp.handle_frame(0, 0, &mut sneaky, &accept_all, &mut sink), Disposition::Drop(DropReason::NotOurMac));
    assert!(sink.frames.is_empty());
}

#[test]
fn icmp_errors_are_rate_limited() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    for _ in 0..200 {
        let mut frame = udp_frame(SENDER, RECEIVER, 5000, 6000, 10);
        frame[ETH_LEN + 8] = 1;
        refresh_ip_checksum(&mut frame);
        dp.handle_frame(5, 0, &mut frame, &accept_all, &mut sink);
    }
    let events = &dp.counters().events;
    assert_eq!(events.icmp_errors_sent, 50, "burst of 50");
    assert_eq!(events.icmp_errors_rate_limited, 150);
    assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::TtlExpired), 200);
}

#[test]
fn no_icmp_error_about_an_icmp_error() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    // A port-unreachable from the sender about some packet, with TTL 1.
    let mut inner = udp_frame(RECEIVER, SENDER, 53, 5000, 8);
    let quoted = inner.split_off(ETH_LEN);
    let mut error = net_common::ipv4_frame(
        (SENDER_MAC, FW0_MAC),
        (SENDER, RECEIVER),
        smoltcp::wire::IpProtocol::Icmp,
        1,
        8 + 28,
        |buf| {
            buf[0] = 3;
            buf[1] = 3;
            buf[8..].copy_from_slice(&quoted[..28]);
            let sum = checksum::checksum(buf);
            buf[2..4].copy_from_slice(&sum.to_be_bytes());
        },
    );
    let d = dp.handle_frame(0, 0, &mut error, &accept_all, &mut sink);
    assert_eq!(d, Disposition::Drop(DropReason::TtlExpired));
    assert!(sink.frames.is_empty());
    assert_eq!(dp.counters().events.icmp_errors_suppressed, 1);
}

#[test]
fn rule_hits_and_logging_are_counted() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let logged =
        |_: Chain, _: &PacketKey| unifw_core::flow::Verdict { action: Action::Accept, rule: Some(4), log: true };
    for port in 0..100 {
        let mut frame = udp_frame(SENDER, RECEIVER, 5000 + port, 6000, 10);
        dp.handle_frame(0, 0, &mut frame, &logged, &mut sink);
    }
    assert_eq!(dp.counters().rule_hits[4], 100);
    assert_eq!(dp.counters().events.log_suppressed, 80, "burst of 20 log lines");
}

#[test]
fn interface_without_address_keeps_unicast_for_the_local_stack() {
    // eth0 waits for DHCP (no address): the offer, unicast to the address
    // being offered, must reach the firewall's own stack, not be routed.
    let mut interfaces = lab_interfaces();
    interfaces[0].addr = None;
    let mut dp = Dataplane::new(DataplaneConfig::new(interfaces, vec![], 16, 64)).unwrap();
    let mut frame = udp_frame(SENDER, 0x0a01_0032, 67, 68, 300);
    let mut sink = VecSink::default();
    let disposition = dp.handle_frame(1_000, 0, &mut frame, &accept_all, &mut sink);
    assert_eq!(disposition, Disposition::Local);
    // The input chain still decides.
    let disposition = dp.handle_frame(1_000, 0, &mut frame, &drop_all, &mut sink);
    assert_eq!(disposition, Disposition::Drop(DropReason::RuleDrop));
}

#[test]
fn a_lost_lease_leaves_the_interface_unaddressed_and_a_new_one_routes_again() {
    let mut dp = lab(64);
    let mut sink = VecSink::default();
    dp.set_interface_address(0, None).unwrap();
    assert_eq!(dp.interfaces()[0].addr, None);
    // Unaddressed: unicast for its old subnet goes to the local stack (the
    // DHCP client), and the subnet is no longer routed there.
    let mut frame = udp_frame(SENDER, 0x0a01_0032, 67, 68, 30);
    assert_eq!(dp.handle_frame(1_000, 0, &mut frame, &accept_all, &mut sink), Disposition::Local);
    let mut towards = udp_frame(RECEIVER, SENDER, 5000, 6000, 30);
    assert_eq!(dp.handle_frame(1_000, 1, &mut towards, &accept_all, &mut sink), Disposition::Drop(DropReason::NoRoute));
    dp.set_interface_address(0, Cidr::new(FW0, 24)).unwrap();
    let mut again = udp_frame(RECEIVER, SENDER, 5000, 6000, 30);
    assert_eq!(dp.handle_frame(2_000, 1, &mut again, &accept_all, &mut sink), Disposition::Queued);
    assert_eq!(
        dp.set_interface_address(0, Some(Cidr { addr: FW0, prefix_len: 33 })),
        Err(unifw_core::net::ConfigError::PrefixTooLong(0))
    );
}
