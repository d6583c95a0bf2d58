//! `-m connlimit` through the data plane with compiled iptables-save rules:
//! each rule counts the live connections of a masked address (opened
//! through it, not closed, not expired), as Linux's `xt_connlimit` does;
//! a full counter table drops and counts the drop.

mod net_common;

use net_common::*;
use smoltcp::wire::TcpControl;
use unifw_core::image::Image;
use unifw_core::net::{Dataplane, Disposition, DropReason, VecSink};

fn compiled(ipt: &str) -> Vec<u8> {
    let text = format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{ipt}COMMIT\n");
    unifw_compiler::compile("t.ipt", text.as_bytes(), &mut |p| Err(p.into())).unwrap_or_else(|d| panic!("{d}")).image
}

/// A lab data plane counting for `image`'s connlimit rules.
fn plane(image: &Image) -> Dataplane {
    let mut dp = lab_resolved(64);
    dp.set_connlimit(image.connlimit_rules());
    dp
}

fn send(dp: &mut Dataplane, image: &Image, now: u64, frame: Vec<u8>) -> Disposition {
    let in_if = if frame[6..12] == SENDER_MAC { 0 } else { 1 };
    let mut frame = frame;
    dp.handle_frame(now, in_if, &mut frame, image, &mut VecSink::default())
}

fn passed(d: Disposition) -> bool {
    matches!(d, Disposition::Forward { .. } | Disposition::Queued)
}

fn syn(sport: u16) -> Vec<u8> {
    Tcp::new(SENDER, RECEIVER, sport, 80).syn(100).frame()
}

const ABOVE_2: &str = "-A FORWARD -p tcp --syn -m connlimit --connlimit-above 2 -j REJECT --reject-with tcp-reset\n";

#[test]
fn the_third_connection_is_refused_until_one_closes_or_expires() {
    let bytes = compiled(ABOVE_2);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = plane(&image);
    assert!(passed(send(&mut dp, &image, 0, syn(40001))));
    assert!(passed(send(&mut dp, &image, 0, syn(40002))));
    assert_eq!(send(&mut dp, &image, 0, syn(40003)), Disposition::Drop(DropReason::RuleReject), "3 > 2");
    assert_eq!(dp.conntrack().connlimit().count(0, SENDER), 2, "the refused one is not counted");
    // A retransmitted SYN of a counted connection is not counted twice.
    assert!(passed(send(&mut dp, &image, 1, syn(40002))));
    assert_eq!(dp.conntrack().connlimit().count(0, SENDER), 2);
    // The first connection completes its handshake, then closes by RST.
    let server = Tcp::new(RECEIVER, SENDER, 80, 40001);
    assert!(passed(send(&mut dp, &image, 2, server.control(TcpControl::Syn).ack(5000, 101).frame())));
    let client = Tcp::new(SENDER, RECEIVER, 40001, 80);
    assert!(passed(send(&mut dp, &image, 3, client.ack(101, 5001).frame())));
    assert!(passed(send(&mut dp, &image, 4, client.control(TcpControl::Rst).ack(101, 5001).frame())));
    assert_eq!(dp.conntrack().connlimit().count(0, SENDER), 1, "a closed connection is not counted");
    assert!(passed(send(&mut dp, &image, 5, syn(40004))), "room again");
    assert_eq!(send(&mut dp, &image, 6, syn(40005)), Disposition::Drop(DropReason::RuleReject));
    // SYN_SENT lasts 120 s: after it the two are gone, swept or not.
    assert!(passed(send(&mut dp, &image, 5 + 120_000, syn(40006))), "expired connections are not counted");
    assert!(passed(send(&mut dp, &image, 5 + 120_000, syn(40007))));
    assert_eq!(send(&mut dp, &image, 5 + 120_000, syn(40008)), Disposition::Drop(DropReason::RuleReject));
    assert_eq!(dp.conntrack().connlimit().count(0, SENDER), 2);
}

#[test]
fn established_packets_count_their_connection_once() {
    // No --syn: every packet of a connection reaches the rule.
    let bytes = compiled("-A FORWARD -p tcp -m connlimit --connlimit-above 1 -j DROP\n");
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = plane(&image);
    assert!(passed(send(&mut dp, &image, 0, syn(40001))));
    let server = Tcp::new(RECEIVER, SENDER, 80, 40001);
    // The reply's key is its source, the receiver: a count of its own.
    assert!(passed(send(&mut dp, &image, 1, server.control(TcpControl::Syn).ack(5000, 101).frame())));
    let client = Tcp::new(SENDER, RECEIVER, 40001, 80);
    for t in 2..10 {
        assert!(passed(send(&mut dp, &image, t, client.ack(101, 5001).payload(10).frame())), "packet at {t}");
    }
    assert_eq!(dp.conntrack().connlimit().count(0, SENDER), 1);
    assert_eq!(send(&mut dp, &image, 10, syn(40002)), Disposition::Drop(DropReason::RuleDrop), "a second one");
}

#[test]
fn the_mask_and_daddr_group_addresses() {
    let rule =
        "-A FORWARD -p tcp --syn -m connlimit --connlimit-above 1 --connlimit-mask 24 --connlimit-daddr -j DROP\n";
    let bytes = compiled(rule);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = plane(&image);
    assert!(passed(send(&mut dp, &image, 0, syn(40001))));
    // Another host of the receiver's /24: the same count.
    let other = Tcp::new(SENDER, RECEIVER + 1, 40002, 80).syn(100).frame();
    assert_eq!(send(&mut dp, &image, 0, other), Disposition::Drop(DropReason::RuleDrop));
    assert_eq!(dp.conntrack().connlimit().count(0, RECEIVER & 0xffff_ff00), 1);
    // With /32 each destination has its own.
    let bytes = compiled(&rule.replace("--connlimit-mask 24", "--connlimit-mask 32"));
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = plane(&image);
    assert!(passed(send(&mut dp, &image, 0, syn(40001))));
    let other = Tcp::new(SENDER, RECEIVER + 1, 40002, 80).syn(100).frame();
    assert!(passed(send(&mut dp, &image, 0, other)));
}

#[test]
fn upto_holds_up_to_the_limit() {
    let bytes = compiled(
        "-A FORWARD -p tcp --syn -m connlimit --connlimit-upto 2 -j ACCEPT\n-A FORWARD -p tcp --syn -j DROP\n",
    );
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = plane(&image);
    assert!(passed(send(&mut dp, &image, 0, syn(40001))));
    assert!(passed(send(&mut dp, &image, 0, syn(40002))));
    assert_eq!(send(&mut dp, &image, 0, syn(40003)), Disposition::Drop(DropReason::RuleDrop));
}

#[test]
fn a_full_counter_table_drops_and_counts_the_drop() {
    let bytes = compiled("-A FORWARD -p tcp --syn -m connlimit --connlimit-above 5 --connlimit-daddr -j DROP\n");
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = lab_resolved(64);
    dp.set_connlimit_counters(image.connlimit_rules(), 1);
    assert!(passed(send(&mut dp, &image, 0, syn(40001))));
    // The one counter counts the receiver: another destination finds none.
    let other = Tcp::new(SENDER, RECEIVER + 1, 40002, 80).syn(100).frame();
    assert_eq!(send(&mut dp, &image, 0, other.clone()), Disposition::Drop(DropReason::RuleDrop));
    assert_eq!(dp.counters().events.connlimit_full, 1);
    assert_eq!(
        dp.counters().policy_hits.iter().sum::<u64>(),
        1,
        "the first SYN's only: a hot drop is not the policy's"
    );
    // Once the receiver's connection expired (SYN_SENT: 120 s), the full
    // table's probes find it and free its counter.
    assert!(passed(send(&mut dp, &image, 121_000, other)));
    assert_eq!(dp.counters().events.connlimit_full, 1);
    assert_eq!(dp.conntrack().connlimit().count(0, RECEIVER + 1), 1);
}

#[test]
fn an_untracked_packet_counts_itself() {
    // Linux (iptables-legacy 1.8.9, Linux 6.18): NOTRACKed UDP never
    // matches `--connlimit-upto 0` (its own tuple is counted), nor does a
    // tracked one.
    let bytes = compiled(
        "-A FORWARD -p udp -m connlimit --connlimit-upto 0 -j DROP\nCOMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\n\
         -A PREROUTING -p udp --dport 9999 -j NOTRACK\n",
    );
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = plane(&image);
    for sport in 1..4 {
        assert!(passed(send(&mut dp, &image, 0, udp_frame(SENDER, RECEIVER, sport, 9999, 10))), "untracked");
        assert!(passed(send(&mut dp, &image, 0, udp_frame(SENDER, RECEIVER, sport, 9998, 10))), "tracked");
    }
    assert_eq!(dp.conntrack().connlimit().count(0, SENDER), 3, "the tracked ones only");
}
