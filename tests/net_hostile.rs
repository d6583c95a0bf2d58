//! Hostile traffic that Linux refuses: spoofed sources (the firewall's own
//! addresses, reverse-path filtering), IP options (source routes, malformed
//! options, record route) and ICMP to broadcast or multicast addresses.

mod net_common;

use net_common::*;
use unifw_core::net::addr::Cidr;
use unifw_core::net::{
    Dataplane, DataplaneConfig, Disposition, DropReason, InterfaceConfig, ReversePathFilter, StaticRoute, VecSink,
};

/// Handles `frame` as received on `in_if` (from the sender on eth0, the
/// receiver on eth1, whatever its source address says).
fn handle(dp: &mut Dataplane, in_if: u8, frame: &mut [u8]) -> (Disposition, VecSink) {
    let (to, from) = if in_if == 0 { (FW0_MAC, SENDER_MAC) } else { (FW1_MAC, RECEIVER_MAC) };
    frame[..6].copy_from_slice(&to);
    frame[6..12].copy_from_slice(&from);
    let mut sink = VecSink::default();
    let disposition = dp.handle_frame(1_000, in_if, frame, &accept_all, &mut sink);
    (disposition, sink)
}

/// The lab with every interface filtered by `mode`, a third interface
/// (10.3.0.1/24) and a route to 10.9.0.0/16 via the receiver's side.
fn lab_with(mode: ReversePathFilter) -> Dataplane {
    let mut interfaces = lab_interfaces();
    interfaces.push(InterfaceConfig::new([2, 0, 0, 0, 0, 3], Cidr::new(0x0a03_0001, 24)));
    for interface in &mut interfaces {
        interface.reverse_path = mode;
    }
    let routes = vec![StaticRoute { prefix: 0x0a09_0000, prefix_len: 16, gateway: 0x0a02_00fe }];
    let mut dp = Dataplane::new(DataplaneConfig::new(interfaces, routes, 16, 64)).unwrap();
    resolve(&mut dp);
    dp
}

/// Teaches `dp` the sender's and the receiver's MACs.
fn resolve(dp: &mut Dataplane) {
    use smoltcp::wire::ArpOperation;
    let mut sink = VecSink::default();
    for (in_if, mac, addr, own) in [(0, SENDER_MAC, SENDER, FW0), (1, RECEIVER_MAC, RECEIVER, FW1)] {
        let mut arp = arp_frame(ArpOperation::Request, mac, addr, [0xff; 6], own);
        dp.handle_frame(0, in_if, &mut arp, &accept_all, &mut sink);
    }
}

const OTHER_SUBNET: u32 = 0x0a03_0007;
const BEHIND_RECEIVER: u32 = 0x0a09_0001;
const NOWHERE: u32 = 0xc633_6401; // 198.51.100.1: no route back.

#[test]
fn the_firewalls_own_addresses_are_never_a_source_from_outside() {
    for mode in [ReversePathFilter::Strict, ReversePathFilter::Loose, ReversePathFilter::Off] {
        let mut dp = lab_with(mode);
        for own in [FW0, FW1, 0x0a03_0001] {
            let mut frame = udp_frame(own, RECEIVER, 1000, 53, 10);
            let (disposition, sink) = handle(&mut dp, 0, &mut frame);
            assert_eq!(disposition, Disposition::Drop(DropReason::OwnAddressSource), "{own:#x} {mode:?}");
            assert!(sink.frames.is_empty(), "silent");
            // To the firewall itself too (Linux validates the source of local traffic).
            let mut echo = echo_frame(own, FW0, true, 1, 1, 64);
            assert_eq!(handle(&mut dp, 0, &mut echo).0, Disposition::Drop(DropReason::OwnAddressSource));
        }
        assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::OwnAddressSource), 6);
    }
}

/// The disposition of a UDP datagram from `src` to the receiver arriving on eth0.
fn from_sender_side(dp: &mut Dataplane, src: u32) -> Disposition {
    handle(dp, 0, &mut udp_frame(src, RECEIVER, 1000, 53, 10)).0
}

#[test]
fn strict_mode_wants_the_route_back_by_the_input_interface() {
    let mut dp = lab_with(ReversePathFilter::Strict);
    assert!(matches!(from_sender_side(&mut dp, SENDER), Disposition::Forward { out_if: 1, .. }));
    for spoofed in [RECEIVER, 0x0a02_0009, BEHIND_RECEIVER, OTHER_SUBNET, NOWHERE] {
        assert_eq!(from_sender_side(&mut dp, spoofed), Disposition::Drop(DropReason::ReversePath), "{spoofed:#x}");
    }
    // The subnets' broadcasts are not sources either.
    assert_eq!(from_sender_side(&mut dp, 0x0a01_00ff), Disposition::Drop(DropReason::ReversePath));
    // The receiver's side: its own subnet and what is routed behind it.
    let (disposition, _) = handle(&mut dp, 1, &mut udp_frame(BEHIND_RECEIVER, SENDER, 1000, 53, 10));
    assert!(matches!(disposition, Disposition::Forward { out_if: 0, .. }));
    // Local traffic is filtered as well.
    let (disposition, _) = handle(&mut dp, 0, &mut echo_frame(RECEIVER, FW0, true, 1, 1, 64));
    assert_eq!(disposition, Disposition::Drop(DropReason::ReversePath));
    assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::ReversePath), 7);
}

#[test]
fn loose_mode_wants_some_route_back_and_off_wants_none() {
    let mut dp = lab_with(ReversePathFilter::Loose);
    for routed in [SENDER, RECEIVER, BEHIND_RECEIVER, OTHER_SUBNET] {
        assert!(matches!(from_sender_side(&mut dp, routed), Disposition::Forward { .. }), "{routed:#x}");
    }
    assert_eq!(from_sender_side(&mut dp, NOWHERE), Disposition::Drop(DropReason::ReversePath));
    assert_eq!(from_sender_side(&mut dp, 0x0a02_00ff), Disposition::Drop(DropReason::ReversePath));
    let mut dp = lab_with(ReversePathFilter::Off);
    for any in [RECEIVER, NOWHERE, 0x0a02_00ff] {
        assert!(matches!(from_sender_side(&mut dp, any), Disposition::Forward { .. }), "{any:#x}");
    }
}

#[test]
fn modes_are_per_interface() {
    let mut dp = lab_with(ReversePathFilter::Strict);
    let mut interfaces = lab_interfaces();
    interfaces[0].reverse_path = ReversePathFilter::Off;
    let mut off_on_eth0 = Dataplane::new(DataplaneConfig::new(interfaces, vec![], 16, 64)).unwrap();
    resolve(&mut off_on_eth0);
    assert!(matches!(from_sender_side(&mut off_on_eth0, RECEIVER), Disposition::Forward { .. }));
    let (disposition, _) = handle(&mut off_on_eth0, 1, &mut udp_frame(SENDER, RECEIVER, 1, 2, 10));
    assert_eq!(disposition, Disposition::Drop(DropReason::ReversePath), "eth1 is still strict");
    assert_eq!(from_sender_side(&mut dp, RECEIVER), Disposition::Drop(DropReason::ReversePath));
}

#[test]
fn icmp_to_broadcast_and_multicast_addresses_is_ignored() {
    let mut dp = lab_with(ReversePathFilter::Strict);
    // Directed and limited broadcast, and multicast (all hosts): no echo
    // reply from the stack, whatever the link-layer destination.
    for group in [0x0a01_00ff, u32::MAX, 0xe000_0001] {
        let mut echo = echo_frame(SENDER, group, true, 7, 1, 64);
        let (disposition, sink) = handle(&mut dp, 0, &mut echo);
        assert_eq!(disposition, Disposition::Drop(DropReason::BroadcastIcmp), "{group:#x}");
        assert!(sink.frames.is_empty());
        let mut to_all = echo_frame(SENDER, group, true, 7, 1, 64);
        to_all[..6].copy_from_slice(&[0xff; 6]);
        let mut sink = VecSink::default();
        let disposition = dp.handle_frame(1_000, 0, &mut to_all, &accept_all, &mut sink);
        assert_eq!(disposition, Disposition::Drop(DropReason::BroadcastIcmp), "{group:#x} to ff:ff:..");
    }
    assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::BroadcastIcmp), 6);
    // A ping to the firewall's own address is answered (by the stack),
    // even inside a link-layer broadcast; UDP to the broadcast still is local.
    let mut echo = echo_frame(SENDER, FW0, true, 7, 1, 64);
    assert_eq!(handle(&mut dp, 0, &mut echo).0, Disposition::Local);
    let mut echo = echo_frame(SENDER, FW0, true, 7, 1, 64);
    echo[..6].copy_from_slice(&[0xff; 6]);
    let mut sink = VecSink::default();
    assert_eq!(dp.handle_frame(1_000, 0, &mut echo, &accept_all, &mut sink), Disposition::Local);
    let mut udp = udp_frame(SENDER, 0x0a01_00ff, 5000, 5000, 10);
    assert_eq!(handle(&mut dp, 0, &mut udp).0, Disposition::Local);
}

/// A UDP datagram sender -> receiver on eth0 with `options`.
fn optioned(dp: &mut Dataplane, options: &[u8]) -> (Disposition, VecSink, Vec<u8>) {
    let mut frame = with_options(&udp_frame(SENDER, RECEIVER, 1000, 53, 10), options);
    let (disposition, sink) = handle(dp, 0, &mut frame);
    (disposition, sink, frame)
}

#[test]
fn source_routed_packets_are_dropped_silently() {
    let mut dp = lab_with(ReversePathFilter::Strict);
    // LSRR and SSRR through 10.2.0.9, to the receiver and to the firewall.
    for kind in [131u8, 137] {
        let (disposition, sink, _) = optioned(&mut dp, &[1, kind, 7, 4, 10, 2, 0, 9]);
        assert_eq!(disposition, Disposition::Drop(DropReason::SourceRoute), "option {kind}");
        assert!(sink.frames.is_empty());
        let mut local = with_options(&echo_frame(SENDER, FW0, true, 1, 1, 64), &[kind, 7, 4, 10, 2, 0, 9]);
        assert_eq!(handle(&mut dp, 0, &mut local).0, Disposition::Drop(DropReason::SourceRoute));
    }
    assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::SourceRoute), 4);
}

#[test]
fn malformed_options_get_a_parameter_problem_pointing_at_them() {
    let mut dp = lab_with(ReversePathFilter::Strict);
    // (options, pointer into the IP header), as Linux's ip_options_compile.
    let cases: [(&[u8], u8); 8] = [
        (&[7], 20),                       // a lone kind byte: no length
        (&[1, 7, 1, 0], 21),              // length below 2
        (&[7, 12, 4, 0], 20),             // longer than the options
        (&[7, 7, 3, 0, 0, 0, 0], 22),     // record route pointer below 4
        (&[7, 6, 4, 0, 0, 0], 22),        // pointer whose slot is cut short
        (&[68, 8, 5, 1, 0, 0, 0, 0], 22), // timestamp with address: no room for both
        (&[68, 4, 5, 0xf0], 23),          // full timestamp whose overflow count would wrap
        (&[148, 2, 1, 1], 21),            // router alert shorter than 4
    ];
    for (options, pointer) in cases {
        let (disposition, sink, frame) = optioned(&mut dp, options);
        assert_eq!(disposition, Disposition::Drop(DropReason::Ipv4Options), "{options:?}");
        let [(0, reply)] = &sink.frames[..] else { panic!("one parameter problem for {options:?}") };
        let ip = smoltcp::wire::Ipv4Packet::new_checked(&reply[ETH_LEN..]).unwrap();
        assert_eq!(u32::from(ip.src_addr()), FW0);
        let icmp = ip.payload();
        assert_eq!((icmp[0], icmp[1], icmp[4]), (12, 0, pointer), "{options:?}");
        assert_eq!(unifw_core::net::checksum::checksum(icmp), 0);
        // It quotes the offending header, options and all.
        let header_len = usize::from(frame[ETH_LEN] & 0xf) * 4;
        assert_eq!(&icmp[8..8 + header_len], &frame[ETH_LEN..ETH_LEN + header_len]);
    }
}

#[test]
fn other_options_pass_and_record_route_gets_the_output_address() {
    let mut dp = lab_with(ReversePathFilter::Strict);
    // Router alert, a no-op, an unknown option: forwarded unchanged.
    let (disposition, _, frame) = optioned(&mut dp, &[148, 4, 0, 0, 1, 0x99, 3, 0]);
    assert!(matches!(disposition, Disposition::Forward { out_if: 1, .. }));
    assert_eq!(&frame[ETH_LEN + 20..ETH_LEN + 28], &[148, 4, 0, 0, 1, 0x99, 3, 0]);
    assert!(ip_checksum_ok(&frame));
    // Record route with room for two addresses: the first slot gets eth1's.
    let (disposition, _, frame) = optioned(&mut dp, &[7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(disposition, Disposition::Forward { out_if: 1, .. }));
    assert_eq!(&frame[ETH_LEN + 20..ETH_LEN + 31], &[7, 11, 8, 10, 2, 0, 1, 0, 0, 0, 0]);
    assert!(ip_checksum_ok(&frame));
    assert_eq!(frame[ETH_LEN + 8], 63, "and the TTL went down");
    // A full record route passes unchanged.
    let (_, _, frame) = optioned(&mut dp, &[7, 7, 8, 10, 1, 0, 2]);
    assert_eq!(&frame[ETH_LEN + 20..ETH_LEN + 27], &[7, 7, 8, 10, 1, 0, 2]);
    // Timestamp with addresses: eth1's address and a time with the
    // high-order bit set (no UT clock).
    let (_, _, frame) = optioned(&mut dp, &[68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    let ts = &frame[ETH_LEN + 20..ETH_LEN + 32];
    assert_eq!(&ts[..8], &[68, 12, 13, 1, 10, 2, 0, 1]);
    assert_eq!(u32::from_be_bytes(ts[8..12].try_into().unwrap()), 0x8000_0000 | 1_000);
    assert!(ip_checksum_ok(&frame));
    // Prespecified addresses: stamped only at the firewall's own.
    let (_, _, frame) = optioned(&mut dp, &[68, 12, 5, 3, 10, 2, 0, 1, 0, 0, 0, 0]);
    assert_eq!(frame[ETH_LEN + 22], 13);
    assert_eq!(u32::from_be_bytes(frame[ETH_LEN + 28..ETH_LEN + 32].try_into().unwrap()), 0x8000_0000 | 1_000);
    let (_, _, frame) = optioned(&mut dp, &[68, 12, 5, 3, 10, 2, 0, 9, 0, 0, 0, 0]);
    assert_eq!(&frame[ETH_LEN + 20..ETH_LEN + 32], &[68, 12, 5, 3, 10, 2, 0, 9, 0, 0, 0, 0]);
    // A full timestamp counts an overflow.
    let (_, _, frame) = optioned(&mut dp, &[68, 4, 5, 0x10]);
    assert_eq!(&frame[ETH_LEN + 20..ETH_LEN + 24], &[68, 4, 5, 0x20]);
    // Bytes after the end of options are cleared, as Linux does.
    let (_, _, frame) = optioned(&mut dp, &[0, 7, 3, 9]);
    assert_eq!(&frame[ETH_LEN + 20..ETH_LEN + 24], &[0, 0, 0, 0]);
    assert!(ip_checksum_ok(&frame));
}
