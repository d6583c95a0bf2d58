//! The fragment policy: first fragments are classified, later ones follow
//! their verdict; tiny, overlapping and orphan fragments are dropped.

mod net_common;

use net_common::*;
use unifw_core::flow::{Action, Chain, PacketKey};
use unifw_core::net::{Dataplane, Disposition, DropReason, VecSink};

fn big_udp() -> Vec<u8> {
    udp_frame(SENDER, RECEIVER, 5000, 6000, 2000)
}

fn run(
    dp: &mut Dataplane,
    frame: &[u8],
    classifier: &dyn Fn(Chain, &PacketKey) -> unifw_core::flow::Verdict,
) -> Disposition {
    let mut frame = frame.to_vec();
    dp.handle_frame(0, 0, &mut frame, &classifier, &mut VecSink::default())
}

fn forwarded(d: Disposition) -> bool {
    matches!(d, Disposition::Forward { .. })
}

#[test]
fn later_fragments_follow_the_first() {
    let mut dp = lab_resolved(64);
    let udp = big_udp();
    // [0, 1000) with MF, then [1000, 2008) last.
    let first = fragment_of(&udp, 0, true, 1000);
    let tail = piece(&udp, 1000, 2008, false);
    assert!(forwarded(run(&mut dp, &first, &accept_all)));
    assert_eq!(dp.fragments().len(), 1);
    assert!(forwarded(run(&mut dp, &tail, &drop_all)), "later fragments are not classified");
    assert!(dp.fragments().is_empty(), "complete datagram forgotten");
    assert_eq!(dp.counters().rule_hits[0], 1);
}

/// Rewrites a frame's fragment fields and total length.
fn reoffset(mut frame: Vec<u8>, offset: u16, more: bool) -> Vec<u8> {
    let len = frame.len() - ETH_LEN;
    let mut packet = smoltcp::wire::Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..]);
    packet.set_total_len(len as u16);
    packet.set_frag_offset(offset);
    packet.set_more_frags(more);
    packet.fill_checksum();
    frame
}

fn piece(udp: &[u8], start: usize, end: usize, more: bool) -> Vec<u8> {
    let mut frame = udp[..ETH_LEN + 20].to_vec();
    frame.extend_from_slice(&udp[ETH_LEN + 20 + start..ETH_LEN + 20 + end]);
    reoffset(frame, start as u16, more)
}

#[test]
fn fragments_of_a_dropped_datagram_are_dropped() {
    let mut dp = lab_resolved(64);
    let udp = big_udp();
    assert_eq!(run(&mut dp, &piece(&udp, 0, 1000, true), &drop_all), Disposition::Drop(DropReason::RuleDrop));
    assert_eq!(
        run(&mut dp, &piece(&udp, 1000, 2008, false), &accept_all),
        Disposition::Drop(DropReason::FragmentOfDropped)
    );
}

#[test]
fn orphan_later_fragments_are_dropped() {
    let mut dp = lab_resolved(64);
    let udp = big_udp();
    assert_eq!(
        run(&mut dp, &piece(&udp, 1000, 2008, false), &accept_all),
        Disposition::Drop(DropReason::FragmentWithoutFirst)
    );
}

#[test]
fn overlapping_fragments_poison_the_datagram() {
    let mut dp = lab_resolved(64);
    let udp = big_udp();
    assert!(forwarded(run(&mut dp, &piece(&udp, 0, 1000, true), &accept_all)));
    assert!(forwarded(run(&mut dp, &piece(&udp, 1000, 1496, true), &accept_all)));
    assert_eq!(
        run(&mut dp, &piece(&udp, 992, 1200, true), &accept_all),
        Disposition::Drop(DropReason::FragmentOverlap)
    );
    assert_eq!(
        run(&mut dp, &piece(&udp, 1496, 2008, false), &accept_all),
        Disposition::Drop(DropReason::FragmentOfDropped)
    );
    // A second "first fragment" also overlaps.
    let other = udp_frame(SENDER, RECEIVER, 1, 2, 2000);
    let mut other = other;
    other[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&[0x99, 0x99]);
    refresh_ip_checksum(&mut other);
    assert!(forwarded(run(&mut dp, &piece(&other, 0, 1000, true), &accept_all)));
    assert_eq!(
        run(&mut dp, &piece(&other, 0, 1000, true), &accept_all),
        Disposition::Drop(DropReason::FragmentOverlap)
    );
}

#[test]
fn tiny_first_fragments_and_tcp_offset_8_are_dropped() {
    let mut dp = lab_resolved(64);
    let tcp = Tcp::new(SENDER, RECEIVER, 40000, 80).ack(1, 1).payload(100).frame();
    // Only 16 bytes of the 20-byte TCP header in the first fragment (RFC 1858 3.1).
    assert_eq!(run(&mut dp, &piece(&tcp, 0, 16, true), &accept_all), Disposition::Drop(DropReason::TinyFragment));
    // A TCP fragment at offset 8 rewrites flags (RFC 1858 3.2).
    let allow = |_: Chain, _: &PacketKey| verdict(Action::Accept, None);
    let mut syn = Tcp::new(SENDER, RECEIVER, 40000, 80).syn(1).payload(100).frame();
    syn[ETH_LEN + 4] = 0x42;
    refresh_ip_checksum(&mut syn);
    assert!(forwarded(run(&mut dp, &piece(&syn, 0, 24, true), &allow)));
    assert_eq!(run(&mut dp, &piece(&syn, 8, 40, true), &allow), Disposition::Drop(DropReason::FragmentOverlap));
}

#[test]
fn fragment_table_is_bounded() {
    let mut dp = lab_resolved(64);
    for id in 0..1000u16 {
        let mut udp = big_udp();
        udp[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&id.to_be_bytes());
        refresh_ip_checksum(&mut udp);
        run(&mut dp, &piece(&udp, 0, 1000, true), &accept_all);
        assert!(dp.fragments().len() <= 64);
    }
    assert_eq!(dp.counters().events.fragment_evictions, 1000 - 64);
}
