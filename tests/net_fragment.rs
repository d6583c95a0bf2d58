//! Fragments: held until their datagram is whole (any order, duplicates
//! ignored), judged once, then all forwarded or all dropped; overlapping,
//! inconsistent, tiny and incomplete trains never pass; the pool is
//! bounded per source and in total.

mod net_common;

use net_common::*;
use unifw_core::flow::{Action, Chain, PacketKey, RejectWith, Verdict};
use unifw_core::net::{Dataplane, DataplaneConfig, Disposition, DropReason, FragmentLimits, VecSink};

/// A 2000-byte UDP datagram from `src`, with IP id `ident`.
fn datagram(src: u32, ident: u16) -> Vec<u8> {
    let mut udp = udp_frame(src, RECEIVER, 5000, 6000, 1992);
    udp[..6].copy_from_slice(&FW0_MAC);
    udp[6..12].copy_from_slice(&SENDER_MAC);
    udp[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&ident.to_be_bytes());
    refresh_ip_checksum(&mut udp);
    udp
}

/// The datagram's three fragments, in offset order.
fn train(whole: &[u8]) -> [Vec<u8>; 3] {
    [piece(whole, 0, 800, true), piece(whole, 800, 1600, true), piece(whole, 1600, 2000, false)]
}

fn run(
    dp: &mut Dataplane,
    sink: &mut VecSink,
    frame: &[u8],
    classify: &dyn Fn(Chain, &PacketKey) -> Verdict,
) -> Disposition {
    run_at(dp, sink, 0, frame, classify)
}

fn run_at(
    dp: &mut Dataplane,
    sink: &mut VecSink,
    now_ms: u64,
    frame: &[u8],
    classify: &dyn Fn(Chain, &PacketKey) -> Verdict,
) -> Disposition {
    let mut frame = frame.to_vec();
    dp.handle_frame(now_ms, 0, &mut frame, &classify, sink)
}

/// Fragment offsets (bytes) of the frames sent out of eth1.
fn sent_offsets(sink: &VecSink) -> Vec<usize> {
    sink.frames
        .iter()
        .filter(|(out_if, _)| *out_if == 1)
        .map(|(_, f)| usize::from(u16::from_be_bytes([f[ETH_LEN + 6], f[ETH_LEN + 7]]) & 0x1fff) * 8)
        .collect()
}

#[test]
fn in_order_datagram_is_judged_once_and_forwarded_whole() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let [a, b, c] = train(&datagram(SENDER, 7));
    assert_eq!(run(&mut dp, &mut sink, &a, &accept_all), Disposition::Queued);
    assert_eq!(run(&mut dp, &mut sink, &b, &accept_all), Disposition::Queued);
    assert!(sink.frames.is_empty(), "nothing leaves before the datagram is whole");
    assert_eq!(dp.counters().events.fragments_held, 2);
    assert_eq!(run(&mut dp, &mut sink, &c, &accept_all), Disposition::Queued);
    assert_eq!(sent_offsets(&sink), [0, 800, 1600]);
    for ((_, out), original) in sink.frames.iter().zip([&a, &b, &c]) {
        assert_eq!(&out[..6], &RECEIVER_MAC);
        assert_eq!(&out[6..12], &FW1_MAC);
        assert_eq!(out[ETH_LEN + 8], original[ETH_LEN + 8] - 1, "TTL decremented");
        assert!(ip_checksum_ok(out));
        assert_eq!(&out[ETH_LEN + 20..], &original[ETH_LEN + 20..], "payload untouched");
    }
    assert_eq!(dp.counters().rule_hits[0], 1, "judged once");
    assert!(dp.fragments().is_empty());
    assert_eq!((dp.fragments().held_fragments(), dp.fragments().held_bytes()), (0, 0));
    assert_eq!(dp.counters().interfaces[1].forwarded_out, 3);
    assert_eq!(dp.conntrack().len(), 1, "the datagram's flow is tracked");
}

#[test]
fn any_order_and_exact_duplicates_are_accepted() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let [a, b, c] = train(&datagram(SENDER, 1));
    for frame in [&c, &b, &a] {
        run(&mut dp, &mut sink, frame, &accept_all);
    }
    assert_eq!(sent_offsets(&sink), [0, 800, 1600], "reverse order, sent by offset");
    let mut sink = VecSink::default();
    let [a, b, c] = train(&datagram(SENDER, 2));
    run(&mut dp, &mut sink, &a, &accept_all);
    run(&mut dp, &mut sink, &b, &accept_all);
    assert_eq!(run(&mut dp, &mut sink, &b, &accept_all), Disposition::Drop(DropReason::FragmentDuplicate));
    run(&mut dp, &mut sink, &c, &accept_all);
    assert_eq!(sent_offsets(&sink), [0, 800, 1600], "a duplicated middle fragment leaves once");
}

#[test]
fn a_refused_datagram_drops_every_fragment() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let [a, b, c] = train(&datagram(SENDER, 3));
    run(&mut dp, &mut sink, &b, &drop_all);
    run(&mut dp, &mut sink, &a, &drop_all);
    assert_eq!(run(&mut dp, &mut sink, &c, &drop_all), Disposition::Drop(DropReason::RuleDrop));
    assert!(sink.frames.is_empty());
    let counters = dp.counters();
    assert_eq!((counters.drops_for(DropReason::FragmentOfDropped), counters.policy_hits[1]), (2, 1));
    // Rejected: one ICMP error for the datagram, quoting the first fragment.
    let [a, b, c] = train(&datagram(SENDER, 4));
    let reject = reject_with(RejectWith::PortUnreachable);
    run(&mut dp, &mut sink, &a, &reject);
    run(&mut dp, &mut sink, &c, &reject);
    assert_eq!(run(&mut dp, &mut sink, &b, &reject), Disposition::Drop(DropReason::RuleReject));
    assert_eq!(sink.frames.len(), 1);
    assert_eq!((sink.frames[0].0, sink.frames[0].1[ETH_LEN + 20]), (0, 3), "ICMP unreachable to the sender");
}

#[test]
fn overlapping_and_inconsistent_trains_are_dropped_whole() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let whole = datagram(SENDER, 5);
    run(&mut dp, &mut sink, &piece(&whole, 0, 800, true), &accept_all);
    run(&mut dp, &mut sink, &piece(&whole, 800, 1600, true), &accept_all);
    let overlap = piece(&whole, 792, 1000, true);
    assert_eq!(run(&mut dp, &mut sink, &overlap, &accept_all), Disposition::Drop(DropReason::FragmentOverlap));
    assert_eq!(dp.counters().drops_for(DropReason::FragmentOverlap), 3, "held fragments go too");
    assert!(dp.fragments().is_empty());
    // The rest starts a new train that never completes.
    assert_eq!(run(&mut dp, &mut sink, &piece(&whole, 1600, 2000, false), &accept_all), Disposition::Queued);
    // Two last fragments with different ends.
    let whole = datagram(SENDER, 6);
    run(&mut dp, &mut sink, &piece(&whole, 1600, 2000, false), &accept_all);
    let short_end = piece(&whole, 1600, 1992, false);
    assert_eq!(run(&mut dp, &mut sink, &short_end, &accept_all), Disposition::Drop(DropReason::FragmentOverlap));
    // A non-last fragment whose length is not a multiple of 8.
    let odd = piece(&datagram(SENDER, 8), 0, 801, true);
    assert_eq!(run(&mut dp, &mut sink, &odd, &accept_all), Disposition::Drop(DropReason::FragmentOverlap));
    assert!(sink.frames.is_empty());
}

#[test]
fn a_first_fragment_cutting_the_tcp_header_is_judged_on_the_whole_datagram() {
    // Linux reassembles before the rules, so the header cut at 16 bytes
    // (RFC 1858 3.1) is read whole: the ports decide, as for any datagram.
    let seen = std::cell::Cell::new(None);
    let port_80_only = |_: Chain, key: &PacketKey| {
        seen.set(Some((key.src_port, key.dst_port)));
        let action = if key.dst_port == 80 { Action::Accept } else { Action::Drop };
        Verdict { action, rule: None, log: false }
    };
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let web = Tcp::new(SENDER, RECEIVER, 40000, 80).ack(1, 1).payload(100).frame();
    assert_eq!(run(&mut dp, &mut sink, &piece(&web, 0, 16, true), &port_80_only), Disposition::Queued);
    assert_eq!(run(&mut dp, &mut sink, &piece(&web, 16, 120, false), &port_80_only), Disposition::Queued);
    assert_eq!((seen.get(), sent_offsets(&sink)), (Some((40000, 80)), vec![0, 16]));
    // The same cut toward port 81: both fragments dropped.
    let mut sink = VecSink::default();
    let other = Tcp::new(SENDER, RECEIVER, 40001, 81).ack(1, 1).payload(100).frame();
    run(&mut dp, &mut sink, &piece(&other, 0, 16, true), &port_80_only);
    assert_eq!(
        run(&mut dp, &mut sink, &piece(&other, 16, 120, false), &port_80_only),
        Disposition::Drop(DropReason::RuleDrop)
    );
    assert!(sink.frames.is_empty());
    // A datagram too short for its own header (data offset 60 in 40 bytes).
    let mut short = Tcp::new(SENDER, RECEIVER, 40002, 80).ack(1, 1).payload(20).frame();
    short[ETH_LEN + 20 + 12] = 0xf0;
    run(&mut dp, &mut sink, &piece(&short, 0, 16, true), &accept_all);
    assert_eq!(
        run(&mut dp, &mut sink, &piece(&short, 16, 40, false), &accept_all),
        Disposition::Drop(DropReason::TinyFragment)
    );
    assert!(sink.frames.is_empty());
}

#[test]
fn a_tcp_fragment_at_offset_8_never_passes() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    // A TCP fragment at offset 8 rewrites the flags (RFC 1858 3.2): an overlap.
    let syn = Tcp::new(SENDER, RECEIVER, 40000, 80).syn(1).payload(100).frame();
    assert_eq!(run(&mut dp, &mut sink, &piece(&syn, 0, 24, true), &accept_all), Disposition::Queued);
    let rewrite = piece(&syn, 8, 40, true);
    assert_eq!(run(&mut dp, &mut sink, &rewrite, &accept_all), Disposition::Drop(DropReason::FragmentOverlap));
    run(&mut dp, &mut sink, &piece(&syn, 24, 120, false), &accept_all);
    assert!(sink.frames.is_empty());
}

#[test]
fn incomplete_trains_time_out_after_30_s() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let [a, _, c] = train(&datagram(SENDER, 9));
    run_at(&mut dp, &mut sink, 1000, &a, &accept_all);
    run_at(&mut dp, &mut sink, 2000, &c, &accept_all);
    assert_eq!(dp.poll(30_999, &mut sink), Some(31_000));
    assert_eq!(dp.fragments().len(), 1);
    dp.poll(31_000, &mut sink);
    assert!(dp.fragments().is_empty() && sink.frames.is_empty());
    assert_eq!(dp.counters().drops_for(DropReason::FragmentTimeout), 2);
    assert_eq!(dp.counters().events.fragment_timeouts, 1);
    assert_eq!(dp.counters().events.fragments_held, 0);
}

#[test]
fn other_sources_first_fragments_do_not_push_a_datagram_out() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let [a, b, c] = train(&datagram(SENDER, 10));
    run(&mut dp, &mut sink, &a, &accept_all);
    for n in 0..200u16 {
        let other = 0x0a01_0003 + u32::from(n % 7);
        run(&mut dp, &mut sink, &piece(&datagram(other, n), 0, 800, true), &accept_all);
    }
    run(&mut dp, &mut sink, &b, &accept_all);
    run(&mut dp, &mut sink, &c, &accept_all);
    assert_eq!(sent_offsets(&sink), [0, 800, 1600]);
    assert_eq!(dp.fragments().len(), 200);
    // One source flooding first fragments only recycles its own share.
    let mut sink = VecSink::default();
    let [a, b, c] = train(&datagram(SENDER, 11));
    run(&mut dp, &mut sink, &a, &accept_all);
    for n in 0..1000u16 {
        run(&mut dp, &mut sink, &piece(&datagram(0x0a01_0003, n), 0, 800, true), &accept_all);
    }
    run(&mut dp, &mut sink, &c, &accept_all);
    run(&mut dp, &mut sink, &b, &accept_all);
    assert_eq!(sent_offsets(&sink), [0, 800, 1600]);
    assert!(dp.counters().events.fragment_evictions > 900);
    assert_eq!(dp.fragments().held_fragments(), dp.fragments().len());
    assert!(dp.fragments().held_fragments() <= 200 + 64);
}

#[test]
fn the_pool_is_bounded() {
    let mut config = DataplaneConfig::new(lab_interfaces(), vec![], 16, 64);
    config.fragments = FragmentLimits { slots: 4, slot_size: 1518, per_source: 2 };
    let mut dp = Dataplane::new(config).unwrap();
    let mut sink = VecSink::default();
    // A datagram in more fragments than a source's share is refused.
    let [a, b, _] = train(&datagram(SENDER, 1));
    run(&mut dp, &mut sink, &a, &accept_all);
    run(&mut dp, &mut sink, &b, &accept_all);
    let rest = piece(&datagram(SENDER, 1), 1600, 1608, true);
    assert_eq!(run(&mut dp, &mut sink, &rest, &accept_all), Disposition::Drop(DropReason::FragmentSourceLimit));
    assert!(dp.fragments().is_empty());
    // Two sources fill the pool with a train of two fragments each; the
    // next fragment of either is refused (neither holds more than the other).
    let mut config = DataplaneConfig::new(lab_interfaces(), vec![], 16, 64);
    config.fragments = FragmentLimits { slots: 4, slot_size: 1518, per_source: 4 };
    let mut dp = Dataplane::new(config).unwrap();
    for src in [0x0a01_0003, 0x0a01_0004] {
        let [a, b, _] = train(&datagram(src, 1));
        run(&mut dp, &mut sink, &a, &accept_all);
        assert_eq!(run(&mut dp, &mut sink, &b, &accept_all), Disposition::Queued);
    }
    let more = piece(&datagram(0x0a01_0004, 1), 1600, 1608, true);
    assert_eq!(run(&mut dp, &mut sink, &more, &accept_all), Disposition::Drop(DropReason::FragmentPoolFull));
    assert_eq!(dp.fragments().held_bytes(), 4 * (ETH_LEN + 20 + 800));
    // A third source holding nothing takes the oldest train of a larger holder.
    let third = piece(&datagram(0x0a01_0009, 1), 0, 800, true);
    assert_eq!(run(&mut dp, &mut sink, &third, &accept_all), Disposition::Queued);
    assert_eq!((dp.fragments().len(), dp.counters().drops_for(DropReason::FragmentEvicted)), (2, 2));
}

#[test]
fn fragments_for_the_firewall_are_dropped() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let mut udp = udp_frame(SENDER, FW0, 5000, 6000, 1992);
    refresh_ip_checksum(&mut udp);
    let first = piece(&udp, 0, 800, true);
    assert_eq!(run(&mut dp, &mut sink, &first, &accept_all), Disposition::Drop(DropReason::FragmentToLocal));
}

#[test]
fn held_fragments_larger_than_the_output_mtu_are_cut_again() {
    // A 2960-byte datagram in two 1480-byte fragments toward eth1 at MTU
    // 1000: each is cut again, offsets and More Fragments kept, so the
    // receiver reassembles the same datagram (Linux refragments too).
    let mut dp = lab_resolved(64);
    dp.set_interface_mtu(1, 1000);
    let mut sink = VecSink::default();
    let mut whole = udp_frame(SENDER, RECEIVER, 5000, 6000, 2952);
    whole[..6].copy_from_slice(&FW0_MAC);
    whole[6..12].copy_from_slice(&SENDER_MAC);
    refresh_ip_checksum(&mut whole);
    run(&mut dp, &mut sink, &piece(&whole, 0, 1480, true), &accept_all);
    run(&mut dp, &mut sink, &piece(&whole, 1480, 2960, false), &accept_all);
    assert_eq!(sent_offsets(&sink), [0, 976, 1480, 2456]);
    let mut payload = vec![0u8; 2960];
    for (i, (_, f)) in sink.frames.iter().enumerate() {
        assert!(f.len() - ETH_LEN <= 1000);
        let ip = smoltcp::wire::Ipv4Packet::new_checked(&f[ETH_LEN..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.more_frags(), i < 3, "fragment {i}");
        let at = usize::from(ip.frag_offset());
        payload[at..at + ip.payload().len()].copy_from_slice(ip.payload());
    }
    assert_eq!(payload, whole[ETH_LEN + 20..]);
}

#[test]
fn a_df_datagram_with_a_fragment_over_the_mtu_gets_fragmentation_needed() {
    let mut dp = lab_resolved(64);
    dp.set_interface_mtu(1, 1000);
    let mut sink = VecSink::default();
    let whole = datagram(SENDER, 11);
    let first = {
        let mut f = piece(&whole, 0, 1200, true);
        f[ETH_LEN + 6] |= 0x40;
        let mut ip = smoltcp::wire::Ipv4Packet::new_unchecked(&mut f[ETH_LEN..]);
        ip.fill_checksum();
        f
    };
    run(&mut dp, &mut sink, &first, &accept_all);
    assert_eq!(
        run(&mut dp, &mut sink, &piece(&whole, 1200, 2000, false), &accept_all),
        Disposition::Drop(DropReason::FragmentationNeeded)
    );
    let [(out_if, icmp)] = &sink.frames[..] else { panic!("one ICMP error, got {:?}", sink.frames.len()) };
    assert_eq!(*out_if, 0);
    let ip = smoltcp::wire::Ipv4Packet::new_checked(&icmp[ETH_LEN..]).unwrap();
    assert_eq!(&ip.payload()[..2], &[3, 4], "destination unreachable, fragmentation needed");
    assert_eq!(u16::from_be_bytes([ip.payload()[6], ip.payload()[7]]), 1000);
}

#[test]
fn the_first_fragment_gets_the_record_route_entry() {
    // Linux stamps the reassembled header and refragments: the first
    // fragment carries the option with 10.2.0.1 in it; later ones have
    // none (record route is not a copied option).
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let whole = datagram(SENDER, 12);
    let record_route = [7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0];
    let first = with_options(&piece(&whole, 0, 800, true), &record_route);
    run(&mut dp, &mut sink, &first, &accept_all);
    run(&mut dp, &mut sink, &piece(&whole, 800, 2000, false), &accept_all);
    let [(_, a), (_, b)] = &sink.frames[..] else { panic!("two fragments, got {}", sink.frames.len()) };
    let ip = smoltcp::wire::Ipv4Packet::new_checked(&a[ETH_LEN..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(&a[ETH_LEN + 20..ETH_LEN + 31], &[7, 11, 8, 10, 2, 0, 1, 0, 0, 0, 0]);
    assert_eq!(a[ETH_LEN + 20 + 12..], first[ETH_LEN + 20 + 12..], "payload unchanged");
    assert_eq!(b[ETH_LEN + 20..], piece(&whole, 800, 2000, false)[ETH_LEN + 20..]);
}
