//! Bump-in-the-wire pairs: frames judged by the FORWARD chain with
//! connection tracking and sent out of the other side byte for byte (no
//! routing, no ARP, no TTL change, MACs kept), drops counted.

mod net_common;

use net_common::*;
use smoltcp::wire::{ArpOperation, Icmpv4Packet, Ipv4Packet, TcpControl, TcpPacket};
use unifw_core::flow::{Action, Chain, CtState, PacketKey, RejectWith, Verdict};
use unifw_core::net::addr::Cidr;
use unifw_core::net::{Dataplane, DataplaneConfig, Disposition, DropReason, InterfaceConfig, VecSink, WireError};

const MGMT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x09];
const MGMT: u32 = 0xc0a8_0901;

/// eth0: management (an address); eth1 (sender side) and eth2 (receiver
/// side): a wire pair. The flows' addresses are on no subnet of ours.
fn wire_lab() -> Dataplane {
    let interfaces = vec![
        InterfaceConfig::new(MGMT_MAC, Cidr::new(MGMT, 24)),
        InterfaceConfig::new(FW0_MAC, None),
        InterfaceConfig::new(FW1_MAC, None),
    ];
    let mut dp = Dataplane::new(DataplaneConfig::new(interfaces, vec![], 16, 64)).unwrap();
    dp.set_wire(1, 2).unwrap();
    dp
}

/// Replies only: NEW only from eth1 to eth2.
fn reply_only(_: Chain, key: &PacketKey) -> Verdict {
    match key.state {
        CtState::Established | CtState::Related => verdict(Action::Accept, Some(0)),
        CtState::New if key.in_if == 1 && key.out_if == 2 => verdict(Action::Accept, Some(1)),
        _ => verdict(Action::Drop, None),
    }
}

/// Sends `frame` in on `in_if`; asserts it leaves by `out_if` unchanged.
fn passes(dp: &mut Dataplane, in_if: u8, out_if: u8, frame: &[u8]) {
    let mut buf = frame.to_vec();
    let mut sink = VecSink::default();
    let disposition = dp.handle_frame(0, in_if, &mut buf, &reply_only, &mut sink);
    assert_eq!(disposition, Disposition::Forward { out_if, len: frame.len() });
    assert_eq!(&buf[..], frame, "the frame leaves byte for byte");
    assert!(sink.frames.is_empty(), "no ARP, no ICMP: {:?}", sink.frames);
}

fn dropped(
    dp: &mut Dataplane,
    in_if: u8,
    frame: &[u8],
    classifier: &impl Fn(Chain, &PacketKey) -> Verdict,
) -> (Disposition, VecSink) {
    let mut buf = frame.to_vec();
    let mut sink = VecSink::default();
    let disposition = dp.handle_frame(0, in_if, &mut buf, classifier, &mut sink);
    (disposition, sink)
}

#[test]
fn a_tcp_flow_crosses_both_ways_unchanged() {
    let mut dp = wire_lab();
    passes(&mut dp, 1, 2, &Tcp::new(SENDER, RECEIVER, 40000, 80).syn(1000).frame());
    let syn_ack = Tcp::new(RECEIVER, SENDER, 80, 40000).syn(5000).ack(5000, 1001).frame();
    passes(&mut dp, 2, 1, &syn_ack);
    passes(&mut dp, 1, 2, &Tcp::new(SENDER, RECEIVER, 40000, 80).ack(1001, 5001).payload(100).frame());
    // TTL 1 is not ours to check: a bump in the wire is no hop.
    passes(&mut dp, 1, 2, &Tcp::new(SENDER, RECEIVER, 40000, 80).ack(1101, 5001).ttl(1).frame());
    let counters = dp.counters();
    assert_eq!(counters.interface(2).unwrap().forwarded_out, 3);
    assert_eq!(counters.interface(1).unwrap().forwarded_out, 1);
    assert_eq!(dp.conntrack().len(), 1);
    assert!(dp.neighbours().is_empty(), "no neighbour learnt or resolved");
}

#[test]
fn udp_and_icmp_replies_follow_their_flow() {
    let mut dp = wire_lab();
    passes(&mut dp, 1, 2, &udp_frame(SENDER, RECEIVER, 5000, 53, 20));
    passes(&mut dp, 2, 1, &udp_frame(RECEIVER, SENDER, 53, 5000, 40));
    passes(&mut dp, 1, 2, &echo_frame(SENDER, RECEIVER, true, 7, 1, 64));
    passes(&mut dp, 2, 1, &echo_frame(RECEIVER, SENDER, false, 7, 1, 64));
}

#[test]
fn new_connections_from_the_receiver_side_are_refused_and_counted() {
    let mut dp = wire_lab();
    let syn = Tcp::new(RECEIVER, SENDER, 40000, 22).syn(1).frame();
    let (disposition, sink) = dropped(&mut dp, 2, &syn, &reply_only);
    assert_eq!(disposition, Disposition::Drop(DropReason::RuleDrop));
    assert!(sink.frames.is_empty());
    // A mid-stream segment is INVALID (nf_conntrack_tcp_loose=0): refused.
    let ack = Tcp::new(SENDER, RECEIVER, 40001, 80).ack(1, 1).frame();
    assert_eq!(dropped(&mut dp, 1, &ack, &reply_only).0, Disposition::Drop(DropReason::RuleDrop));
    assert_eq!(dp.counters().interface(2).unwrap().drop_count(DropReason::RuleDrop), 1);
    assert_eq!(dp.counters().interface(1).unwrap().drop_count(DropReason::RuleDrop), 1);
}

#[test]
fn arp_passes_as_through_a_bridge_and_is_not_learnt() {
    let mut dp = wire_lab();
    let request = arp_frame(ArpOperation::Request, SENDER_MAC, SENDER, [0; 6], RECEIVER);
    passes(&mut dp, 1, 2, &request);
    let reply = arp_frame(ArpOperation::Reply, RECEIVER_MAC, RECEIVER, SENDER_MAC, SENDER);
    passes(&mut dp, 2, 1, &reply);
    assert!(dp.neighbours().is_empty());
}

#[test]
fn other_ethertypes_and_oversized_frames_are_dropped_and_counted() {
    let mut dp = wire_lab();
    let mut ipv6 = udp_frame(SENDER, RECEIVER, 1, 2, 10);
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(dropped(&mut dp, 1, &ipv6, &reply_only).0, Disposition::Drop(DropReason::EtherType));
    let big = udp_frame(SENDER, RECEIVER, 5000, 53, 1600);
    assert_eq!(dropped(&mut dp, 1, &big, &reply_only).0, Disposition::Drop(DropReason::WireOversize));
    let eth1 = dp.counters().interface(1).unwrap();
    assert_eq!(eth1.drop_count(DropReason::EtherType), 1);
    assert_eq!(eth1.drop_count(DropReason::WireOversize), 1);
    assert_eq!(dp.counters().interface(2).unwrap().forwarded_out, 0);
}

#[test]
fn reject_answers_out_of_the_ingress_side_with_the_macs_swapped() {
    let mut dp = wire_lab();
    let syn = Tcp::new(SENDER, RECEIVER, 40000, 80).syn(1000).control(TcpControl::Syn).frame();
    let (disposition, sink) = dropped(&mut dp, 1, &syn, &reject_with(RejectWith::TcpReset));
    assert_eq!(disposition, Disposition::Drop(DropReason::RuleReject));
    let [(1, rst)] = &sink.frames[..] else { panic!("one RST out of eth1: {:?}", sink.frames) };
    assert_eq!((&rst[0..6], &rst[6..12]), (&SENDER_MAC[..], &FW0_MAC[..]));
    let ip = Ipv4Packet::new_checked(&rst[ETH_LEN..]).unwrap();
    assert_eq!((u32::from(ip.src_addr()), u32::from(ip.dst_addr())), (RECEIVER, SENDER));
    assert!(TcpPacket::new_checked(ip.payload()).unwrap().rst());
    let udp = udp_frame(SENDER, RECEIVER, 5000, 53, 20);
    let (_, sink) = dropped(&mut dp, 1, &udp, &reject_with(RejectWith::PortUnreachable));
    let [(1, error)] = &sink.frames[..] else { panic!("one ICMP error out of eth1") };
    assert_eq!((&error[0..6], &error[6..12]), (&SENDER_MAC[..], &FW0_MAC[..]));
    let ip = Ipv4Packet::new_checked(&error[ETH_LEN..]).unwrap();
    assert!(ip.verify_checksum());
    // The wire has no address: the error comes from the packet's destination.
    assert_eq!((u32::from(ip.src_addr()), u32::from(ip.dst_addr())), (RECEIVER, SENDER));
    assert_eq!(Icmpv4Packet::new_checked(ip.payload()).unwrap().msg_type(), 3.into());
}

#[test]
fn routed_interfaces_keep_working_beside_a_wire() {
    let mut dp = wire_lab();
    let mut ping = echo_frame(MGMT + 1, MGMT, true, 1, 1, 64);
    ping[0..6].copy_from_slice(&MGMT_MAC);
    let (disposition, _) = dropped(&mut dp, 0, &ping, &accept_all);
    assert_eq!(disposition, Disposition::Local);
    // Nothing routes to a wire side: it has no subnet.
    let mut stray = udp_frame(MGMT + 1, RECEIVER, 1, 2, 8);
    stray[0..6].copy_from_slice(&MGMT_MAC);
    assert_eq!(dropped(&mut dp, 0, &stray, &reply_only).0, Disposition::Drop(DropReason::NoRoute));
}

#[test]
fn pairs_are_checked() {
    let mut dp = wire_lab();
    assert_eq!(dp.set_wire(1, 1), Err(WireError::SameInterface(1)));
    assert_eq!(dp.set_wire(0, 1), Err(WireError::HasAddress(0)));
    assert_eq!(dp.set_wire(7, 2), Err(WireError::UnknownInterface(7)));
    let interfaces = vec![InterfaceConfig::new(FW0_MAC, None); 3];
    let mut dp = Dataplane::new(DataplaneConfig::new(interfaces, vec![], 16, 64)).unwrap();
    dp.set_wire(0, 1).unwrap();
    assert_eq!(dp.set_wire(1, 2), Err(WireError::AlreadyPaired(1)));
    assert_eq!((dp.wire_peer(0), dp.wire_peer(1), dp.wire_peer(2)), (Some(1), Some(0), None));
}

#[test]
fn fragments_are_held_judged_whole_and_sent_to_the_peer_unchanged() {
    let mut dp = wire_lab();
    let whole = udp_frame(SENDER, RECEIVER, 5000, 53, 100);
    let (a, b) = (piece(&whole, 0, 64, true), piece(&whole, 64, 108, false));
    let (first, sink) = dropped(&mut dp, 1, &b, &reply_only);
    assert_eq!((first, sink.frames.len()), (Disposition::Queued, 0), "held, in any order");
    let (last, sink) = dropped(&mut dp, 1, &a, &reply_only);
    assert_eq!(last, Disposition::Queued);
    assert_eq!(sink.frames, vec![(2, a.clone()), (2, b.clone())], "in offset order, byte for byte, out of eth2");
    // A new flow from the receiver side: judged whole, refused, nothing passes.
    let back = udp_frame(RECEIVER, SENDER, 6000, 53, 100);
    dropped(&mut dp, 2, &piece(&back, 0, 64, true), &reply_only);
    let (refused, sink) = dropped(&mut dp, 2, &piece(&back, 64, 108, false), &reply_only);
    assert_eq!((refused, sink.frames.len()), (Disposition::Drop(DropReason::RuleDrop), 0));
    assert_eq!(dp.counters().interface(2).unwrap().drop_count(DropReason::FragmentOfDropped), 1);
}

#[test]
fn forward_rules_see_the_ttl_unlowered_on_a_wire() {
    // A bridge lowers no TTL (routed forwarding does, before FORWARD).
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m ttl --ttl-eq 64 -j DROP\nCOMMIT\n";
    let bytes = unifw_compiler::compile("t.ipt", text.as_bytes(), &mut |p| Err(p.into())).expect("compiles").image;
    let image = unifw_core::image::Image::from_bytes(&bytes).unwrap();
    let mut dp = wire_lab();
    let mut frame = udp_frame(SENDER, RECEIVER, 4000, 53, 10);
    let d = dp.handle_frame(0, 1, &mut frame, &image, &mut VecSink::default());
    assert_eq!(d, Disposition::Drop(DropReason::RuleDrop), "the wire's FORWARD sees TTL 64");
}
