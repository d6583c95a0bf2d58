//! Connection tracking through the data plane: TCP states and windows,
//! UDP and ICMP pseudo-state, RELATED errors, timeouts, a full table,
//! early drop and established flows surviving a flood.

mod net_common;

use net_common::*;
use smoltcp::wire::TcpControl;
use unifw_core::flow::{Chain, CtState, PacketKey};
use unifw_core::net::conntrack::{ConnTrack, TcpState};
use unifw_core::net::parse::parse_ipv4;
use unifw_core::net::{checksum, Dataplane, Disposition, DropReason, VecSink};

const FWD: Disposition = Disposition::Forward { out_if: 1, len: 0 };

fn is_forward(d: Disposition) -> bool {
    matches!(d, Disposition::Forward { .. })
}

/// Runs `frame` (from the sender on eth0, or the receiver on eth1).
fn run(dp: &mut Dataplane, now: u64, frame: Vec<u8>) -> Disposition {
    let in_if = if frame[6..12] == SENDER_MAC { 0 } else { 1 };
    let mut frame = frame;
    dp.handle_frame(now, in_if, &mut frame, &stateful, &mut VecSink::default())
}

fn state_of(dp: &Dataplane, frame: &[u8], now: u64) -> Option<TcpState> {
    dp.conntrack().tcp_state(&parse_ipv4(&frame[ETH_LEN..]).unwrap(), now)
}

/// Client side (sender:40000) and server side (receiver:80) of one connection.
fn client() -> Tcp {
    Tcp::new(SENDER, RECEIVER, 40000, 80)
}
fn server() -> Tcp {
    Tcp::new(RECEIVER, SENDER, 80, 40000)
}

fn handshake(dp: &mut Dataplane, now: u64) {
    assert!(is_forward(run(dp, now, client().syn(100).frame())));
    assert_eq!(state_of(dp, &client().frame(), now), Some(TcpState::SynSent));
    assert!(is_forward(run(dp, now, server().control(TcpControl::Syn).ack(5000, 101).frame())));
    assert_eq!(state_of(dp, &client().frame(), now), Some(TcpState::SynRecv));
    assert!(is_forward(run(dp, now, client().ack(101, 5001).frame())));
    assert_eq!(state_of(dp, &client().frame(), now), Some(TcpState::Established));
}

#[test]
fn tcp_handshake_data_and_teardown() {
    let _ = FWD;
    let mut dp = lab_resolved(64);
    handshake(&mut dp, 0);
    assert!(is_forward(run(&mut dp, 1, client().ack(101, 5001).payload(200).frame())));
    assert!(is_forward(run(&mut dp, 2, server().ack(5001, 301).payload(1000).frame())));
    assert!(is_forward(run(&mut dp, 3, client().control(TcpControl::Fin).ack(301, 6001).frame())));
    assert_eq!(state_of(&dp, &client().frame(), 3), Some(TcpState::FinWait));
    assert!(is_forward(run(&mut dp, 4, server().control(TcpControl::Fin).ack(6001, 302).frame())));
    assert_eq!(state_of(&dp, &client().frame(), 4), Some(TcpState::LastAck));
    assert!(is_forward(run(&mut dp, 5, client().ack(302, 6002).frame())));
    assert_eq!(state_of(&dp, &client().frame(), 5), Some(TcpState::TimeWait));
    // TIME_WAIT lasts 120 s.
    assert_eq!(state_of(&dp, &client().frame(), 5 + 119_000), Some(TcpState::TimeWait));
    assert_eq!(state_of(&dp, &client().frame(), 5 + 120_000), None);
}

#[test]
fn unsolicited_inbound_and_stray_packets_are_refused() {
    let mut dp = lab_resolved(64);
    // A new connection from eth1 to eth0: default policy drops it.
    let inbound = Tcp::new(RECEIVER, SENDER, 5555, 22).syn(1).frame();
    assert_eq!(run(&mut dp, 0, inbound), Disposition::Drop(DropReason::RuleDrop));
    // A stray ACK without a flow is INVALID (no mid-stream pick-up).
    assert_eq!(run(&mut dp, 0, client().ack(1, 1).frame()), Disposition::Drop(DropReason::RuleDrop));
    assert_eq!(dp.counters().rule_hits[2], 1, "invalid rule hit");
    assert_eq!(dp.counters().policy_hits[1], 1);
    assert!(dp.conntrack().is_empty());
}

#[test]
fn out_of_window_segments_are_invalid() {
    let mut dp = lab_resolved(64);
    handshake(&mut dp, 0);
    let invalid = Disposition::Drop(DropReason::RuleDrop);
    // Beyond the receiver's advertised window (64000).
    assert_eq!(run(&mut dp, 1, client().ack(101 + 200_000, 5001).payload(10).frame()), invalid);
    // Acknowledging data never sent.
    assert_eq!(run(&mut dp, 1, server().ack(5001, 90_000).frame()), invalid);
    // An out-of-window RST does not tear the connection down.
    assert_eq!(run(&mut dp, 1, server().control(TcpControl::Rst).ack(3_000_000, 0).frame()), invalid);
    assert_eq!(state_of(&dp, &client().frame(), 1), Some(TcpState::Established));
    assert!(is_forward(run(&mut dp, 2, client().ack(101, 5001).payload(10).frame())));
    // An in-window RST closes it; CLOSE lasts 10 s.
    assert!(is_forward(run(&mut dp, 3, server().control(TcpControl::Rst).ack(5001, 111).frame())));
    assert_eq!(state_of(&dp, &client().frame(), 3), Some(TcpState::Close));
    assert_eq!(state_of(&dp, &client().frame(), 10_003), None);
}

#[test]
fn syn_ack_from_the_wrong_side_is_invalid() {
    let mut dp = lab_resolved(64);
    assert!(is_forward(run(&mut dp, 0, client().syn(100).frame())));
    // The SYN-ACK must acknowledge the SYN.
    let bad = server().control(TcpControl::Syn).ack(5000, 4242).frame();
    assert_eq!(run(&mut dp, 0, bad), Disposition::Drop(DropReason::RuleDrop));
    assert_eq!(state_of(&dp, &client().frame(), 0), Some(TcpState::SynSent));
}

/// An ICMP error from `from` (on `in_mac` side) quoting the first 28 bytes of `quoted`.
fn icmp_error(from: u32, to: u32, quoted: &[u8]) -> Vec<u8> {
    let macs = if from == RECEIVER { (RECEIVER_MAC, FW1_MAC) } else { (SENDER_MAC, FW0_MAC) };
    let inner = quoted[ETH_LEN..ETH_LEN + 28].to_vec();
    ipv4_frame(macs, (from, to), smoltcp::wire::IpProtocol::Icmp, 64, 8 + 28, |buf| {
        buf[0] = 3;
        buf[1] = 3;
        buf[8..].copy_from_slice(&inner);
        let sum = checksum::checksum(buf);
        buf[2..4].copy_from_slice(&sum.to_be_bytes());
    })
}

#[test]
fn icmp_errors_quoting_a_tracked_flow_are_related() {
    let mut dp = lab_resolved(64);
    let request = udp_frame(SENDER, RECEIVER, 5000, 53, 20);
    assert!(is_forward(run(&mut dp, 0, request.clone())));
    let seen = std::cell::Cell::new(None);
    let spy = |chain: Chain, key: &PacketKey| {
        seen.set(Some(key.state));
        stateful(chain, key)
    };
    let mut error = icmp_error(RECEIVER, SENDER, &request);
    assert!(is_forward(dp.handle_frame(1, 1, &mut error, &spy, &mut VecSink::default())));
    assert_eq!(seen.get(), Some(CtState::Related));
    // Quoting an untracked flow: INVALID, dropped.
    let other = udp_frame(SENDER, RECEIVER, 5001, 53, 20);
    let mut error = icmp_error(RECEIVER, SENDER, &other);
    assert_eq!(
        dp.handle_frame(1, 1, &mut error, &spy, &mut VecSink::default()),
        Disposition::Drop(DropReason::RuleDrop)
    );
    assert_eq!(seen.get(), Some(CtState::Invalid));
    // An error aimed at the wrong host (not the quoted packet's source): INVALID.
    let mut misdirected = icmp_error(RECEIVER, SENDER, &request);
    misdirected[ETH_LEN + 20 + 8 + 12..ETH_LEN + 20 + 8 + 16].copy_from_slice(&0x0a01_0063u32.to_be_bytes());
    let sum_at = ETH_LEN + 20 + 2;
    misdirected[sum_at..sum_at + 2].copy_from_slice(&[0, 0]);
    let sum = checksum::checksum(&misdirected[ETH_LEN + 20..]);
    misdirected[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
    dp.handle_frame(1, 1, &mut misdirected, &spy, &mut VecSink::default());
    assert_eq!(seen.get(), Some(CtState::Invalid));
}

#[test]
fn udp_replies_are_established_and_timeouts_follow_linux() {
    let mut dp = lab_resolved(64);
    assert!(is_forward(run(&mut dp, 0, udp_frame(SENDER, RECEIVER, 5000, 53, 8))));
    // Unreplied UDP lives 30 s: the reply at 29 s is still established.
    assert!(is_forward(run(&mut dp, 29_000, udp_frame(RECEIVER, SENDER, 53, 5000, 8))));
    // Replied UDP lives 120 s after the last packet.
    assert!(is_forward(run(&mut dp, 148_000, udp_frame(RECEIVER, SENDER, 53, 5000, 8))));
    assert_eq!(
        run(&mut dp, 268_001, udp_frame(RECEIVER, SENDER, 53, 5000, 8)),
        Disposition::Drop(DropReason::RuleDrop)
    );
    // Unreplied flow expires after 30 s.
    assert!(is_forward(run(&mut dp, 300_000, udp_frame(SENDER, RECEIVER, 7000, 53, 8))));
    assert_eq!(
        run(&mut dp, 330_000, udp_frame(RECEIVER, SENDER, 53, 7000, 8)),
        Disposition::Drop(DropReason::RuleDrop)
    );
}

#[test]
fn echo_replies_match_requests_by_id() {
    let mut dp = lab_resolved(64);
    assert!(is_forward(run(&mut dp, 0, echo_frame(SENDER, RECEIVER, true, 77, 1, 64))));
    assert!(is_forward(run(&mut dp, 1, echo_frame(RECEIVER, SENDER, false, 77, 1, 64))));
    // Reply with another id, or an unsolicited request from outside: refused.
    let refused = Disposition::Drop(DropReason::RuleDrop);
    assert_eq!(run(&mut dp, 1, echo_frame(RECEIVER, SENDER, false, 78, 1, 64)), refused);
    assert_eq!(run(&mut dp, 1, echo_frame(RECEIVER, SENDER, true, 77, 1, 64)), refused);
    // ICMP flows last 30 s.
    assert_eq!(run(&mut dp, 30_002, echo_frame(RECEIVER, SENDER, false, 77, 2, 64)), refused);
}

fn syn_from(port: u16, src: u32) -> Vec<u8> {
    Tcp::new(src, RECEIVER, port, 80).syn(1).frame()
}

#[test]
fn full_table_evicts_unreplied_and_protects_established() {
    let capacity = 8;
    let mut dp = lab_resolved(capacity);
    // Four established connections.
    for port in 0..4u16 {
        let c = Tcp::new(SENDER, RECEIVER, 1000 + port, 80);
        let s = Tcp::new(RECEIVER, SENDER, 80, 1000 + port);
        assert!(is_forward(run(&mut dp, 0, c.syn(10).frame())));
        assert!(is_forward(run(&mut dp, 0, s.control(TcpControl::Syn).ack(50, 11).frame())));
        assert!(is_forward(run(&mut dp, 0, c.ack(11, 51).frame())));
    }
    // A flood of 10 000 SYNs from many ports.
    for port in 0..10_000u16 {
        run(&mut dp, 1, syn_from(20_000 + port, SENDER));
        assert!(dp.conntrack().len() <= capacity);
    }
    assert!(dp.conntrack().early_drops() > 9_000);
    // Every established connection still passes, both ways.
    for port in 0..4u16 {
        let c = Tcp::new(SENDER, RECEIVER, 1000 + port, 80);
        let s = Tcp::new(RECEIVER, SENDER, 80, 1000 + port);
        assert!(is_forward(run(&mut dp, 2, c.ack(11, 51).payload(5).frame())), "port {port}");
        assert!(is_forward(run(&mut dp, 2, s.ack(51, 16).frame())));
    }
}

#[test]
fn full_table_of_assured_flows_drops_and_counts() {
    let mut dp = lab_resolved(2);
    for port in 0..2u16 {
        assert!(is_forward(run(&mut dp, 0, udp_frame(SENDER, RECEIVER, port, 53, 1))));
        assert!(is_forward(run(&mut dp, 0, udp_frame(RECEIVER, SENDER, 53, port, 1))));
    }
    assert_eq!(run(&mut dp, 0, udp_frame(SENDER, RECEIVER, 9, 53, 1)), Disposition::Drop(DropReason::ConntrackFull));
    assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::ConntrackFull), 1);
    // Once they expire (120 s), room is made lazily.
    assert!(is_forward(run(&mut dp, 121_000, udp_frame(SENDER, RECEIVER, 9, 53, 1))));
}

#[test]
fn memory_stays_fixed_under_churn() {
    let mut table = ConnTrack::new(100, 42);
    let allocation = table.index_allocation();
    let mut now = 0;
    for round in 0..200u32 {
        for i in 0..150u32 {
            let frame = udp_frame(SENDER, RECEIVER, (round * 150 + i) as u16, 53, 1);
            let meta = parse_ipv4(&frame[ETH_LEN..]).unwrap();
            let tracked = table.track(&meta, now);
            let _ = table.confirm(&tracked, now);
            assert!(table.len() <= 100);
        }
        now += 31_000;
        table.sweep(now, 50);
    }
    assert_eq!(table.index_allocation(), allocation, "the index never reallocates");
}

#[test]
fn the_sweep_wraps_around_the_table_and_frees_only_expired_flows() {
    // A fresh 20-entry table fills its slab in order: 10 flows at 0 ms in
    // slots 0-9 (UDP unreplied: they expire at 30 s), 10 at 20 s in 10-19.
    let mut table = ConnTrack::new(20, 42);
    for (now, ports) in [(0, 0..10u16), (20_000, 10..20)] {
        for port in ports {
            let frame = udp_frame(SENDER, RECEIVER, 1000 + port, 53, 1);
            let meta = parse_ipv4(&frame[ETH_LEN..]).unwrap();
            let tracked = table.track(&meta, now);
            table.confirm(&tracked, now).unwrap();
        }
    }
    // At 25 s nothing has expired: three sweeps of 7 go round once and
    // leave the cursor at slot 1.
    for _ in 0..3 {
        table.sweep(25_000, 7);
    }
    assert_eq!(table.len(), 20);
    // At 35 s two sweeps see slots 1-14: nine expired flows go, slot 0's
    // stays until the cursor comes round again.
    table.sweep(35_000, 7);
    table.sweep(35_000, 7);
    assert_eq!(table.len(), 11, "slots 1-9 freed, slot 0 not reached yet");
    table.sweep(35_000, 7);
    assert_eq!(table.len(), 10, "past the end of the slab the sweep starts again at slot 0");
    for _ in 0..6 {
        table.sweep(35_000, 7);
    }
    assert_eq!(table.len(), 10, "the flows of 20 s live until 50 s");
}

#[test]
fn dropped_new_packets_do_not_create_flows() {
    let mut dp = lab_resolved(64);
    let mut frame = udp_frame(SENDER, RECEIVER, 5000, 53, 1);
    dp.handle_frame(0, 0, &mut frame, &drop_all, &mut VecSink::default());
    assert!(dp.conntrack().is_empty());
}

#[test]
fn rules_see_the_connections_tuples_and_the_packets_direction() {
    use unifw_core::image::format::ct_tuple::CtTuples;
    let mut dp = lab_resolved(64);
    let seen = std::cell::Cell::new(None);
    let spy = |chain: Chain, key: &PacketKey| {
        seen.set(Some(key.extra.ct_tuples));
        stateful(chain, key)
    };
    let mut pass = |in_if: u8, mut frame: Vec<u8>| {
        assert!(is_forward(dp.handle_frame(1, in_if, &mut frame, &spy, &mut VecSink::default())));
        seen.get().expect("classified")
    };
    let request = udp_frame(SENDER, RECEIVER, 5000, 53, 20);
    let udp = CtTuples::of_first((SENDER, 5000), (RECEIVER, 53));
    assert_eq!(pass(0, request.clone()), udp);
    assert_eq!((udp.repl, udp.repl_ports), ((RECEIVER, SENDER), (53, 5000)));
    let reply = CtTuples { reply: true, ..udp };
    assert_eq!(pass(1, udp_frame(RECEIVER, SENDER, 53, 5000, 20)), reply, "the reply: same tuples");
    // An error about the request travels in the reply direction, with the
    // quoted connection's tuples (Linux's RELATED_REPLY).
    assert_eq!(pass(1, icmp_error(RECEIVER, SENDER, &request)), reply);
    // And one about the reply in the original direction.
    let answer = udp_frame(RECEIVER, SENDER, 53, 5000, 20);
    assert_eq!(pass(0, icmp_error(SENDER, RECEIVER, &answer)), udp);
    // An echo: the id as source "port", `type << 8 | code` as destination.
    let echo = pass(0, echo_frame(SENDER, RECEIVER, true, 77, 1, 64));
    assert_eq!((echo.orig_ports, echo.repl_ports, echo.reply), ((77, 8 << 8), (77, 0), false));
    let back = pass(1, echo_frame(RECEIVER, SENDER, false, 77, 1, 64));
    assert_eq!(back, CtTuples { reply: true, ..echo });
}
