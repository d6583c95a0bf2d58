//! The firewall's own packets through OUTPUT (ICMP errors and REJECT
//! answers here; the stacks' replies in tests/firewall.rs), raw NOTRACK
//! and mangle TCPMSS, with compiled iptables-save rules: each as Linux
//! does it (iptables-legacy 1.8.9 in a namespace: with `:OUTPUT DROP` and
//! `-A OUTPUT -m state --state ESTABLISHED,RELATED -j ACCEPT`, a REJECT's
//! ICMP port unreachable and RST both leave, counted RELATED).

mod net_common;

use net_common::*;
use smoltcp::wire::{Ipv4Packet, TcpPacket};
use unifw_core::image::{Image, Marks};
use unifw_core::net::{Disposition, DropReason, VecSink};

fn compiled(ipt: &str) -> Vec<u8> {
    let text = format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n{ipt}");
    unifw_compiler::compile("t.ipt", text.as_bytes(), &mut |p| Err(p.into())).unwrap_or_else(|d| panic!("{d}")).image
}

/// Sends `frame` in on eth0 through `rules`; the disposition and what left.
fn run(rules: &[u8], frame: &mut [u8]) -> (Disposition, VecSink, unifw_core::net::Dataplane) {
    let image = Image::from_bytes(rules).expect("valid image");
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let d = dp.handle_frame(0, 0, frame, &image, &mut sink);
    (d, sink, dp)
}

const ESTABLISHED_OUT: &str = ":OUTPUT DROP [0:0]\n-A OUTPUT -m state --state ESTABLISHED,RELATED -j ACCEPT\n";

#[test]
fn reject_answers_are_related_and_pass_an_output_that_accepts_established() {
    let rules = compiled(&format!(
        "{ESTABLISHED_OUT}-A INPUT -p udp --dport 9 -j REJECT\n-A INPUT -p tcp --dport 9 -j REJECT --reject-with tcp-reset\nCOMMIT\n"
    ));
    let (d, sink, _) = run(&rules, &mut udp_frame(SENDER, FW0, 4000, 9, 10));
    assert_eq!(d, Disposition::Drop(DropReason::RuleReject));
    assert_eq!(sink.frames.len(), 1, "the port unreachable leaves");
    let (_, sink, _) = run(&rules, &mut Tcp::new(SENDER, FW0, 4000, 9).syn(1).frame());
    let reset = Ipv4Packet::new_checked(&sink.frames[0].1[ETH_LEN..]).unwrap();
    assert!(TcpPacket::new_checked(reset.payload()).unwrap().rst(), "the RST leaves");
}

#[test]
fn output_drops_reject_answers_and_counts_them() {
    let rules = compiled(":OUTPUT ACCEPT [0:0]\n-A INPUT -p udp -j REJECT\n-A OUTPUT -p icmp -j DROP\nCOMMIT\n");
    let (d, sink, dp) = run(&rules, &mut udp_frame(SENDER, FW0, 4000, 9, 10));
    assert_eq!(d, Disposition::Drop(DropReason::RuleReject));
    assert!(sink.frames.is_empty(), "OUTPUT dropped the port unreachable");
    assert_eq!(dp.counters().interfaces[0].drop_count(DropReason::RuleDrop), 1, "counted on its way out");
    // A policy DROP without an ESTABLISHED rule stops RSTs too, and a
    // REJECT in OUTPUT sends nothing (it would answer the firewall itself).
    for out in [":OUTPUT DROP [0:0]\n", ":OUTPUT ACCEPT [0:0]\n-A OUTPUT -j REJECT\n"] {
        let rules = compiled(&format!("{out}-A INPUT -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n"));
        let (_, sink, _) = run(&rules, &mut Tcp::new(SENDER, FW0, 4000, 9).syn(1).frame());
        assert!(sink.frames.is_empty(), "{out}");
    }
}

#[test]
fn icmp_errors_of_forwarding_pass_output_as_related() {
    // TTL exceeded: sent before FORWARD judges the packet, RELATED to it.
    let rules = compiled(&format!("{ESTABLISHED_OUT}COMMIT\n"));
    let (d, sink, _) = run(&rules, &mut Tcp::new(SENDER, RECEIVER, 4000, 53).syn(1).ttl(1).frame());
    assert_eq!(d, Disposition::Drop(DropReason::TtlExpired));
    assert_eq!(sink.frames.len(), 1);
    let rules = compiled(":OUTPUT ACCEPT [0:0]\n-A OUTPUT -m state --state RELATED -j DROP\nCOMMIT\n");
    let (_, sink, _) = run(&rules, &mut Tcp::new(SENDER, RECEIVER, 4000, 53).syn(1).ttl(1).frame());
    assert!(sink.frames.is_empty(), "the time exceeded is RELATED");
}

#[test]
fn raw_notrack_leaves_no_flow_and_matches_untracked() {
    let rules = "*raw\n-A PREROUTING -p udp --dport 56 -j DROP\n-A PREROUTING -p udp --dport 53 -j NOTRACK\n-A PREROUTING -p udp --dport 54 -j CT --notrack\nCOMMIT\n\
                 *filter\n:FORWARD DROP [0:0]\n-A FORWARD -m conntrack --ctstate UNTRACKED -j ACCEPT\nCOMMIT\n";
    let image = unifw_compiler::compile("t.ipt", rules.as_bytes(), &mut |p| Err(p.into())).unwrap().image;
    for port in [53, 54] {
        let (d, _, dp) = run(&image, &mut udp_frame(SENDER, RECEIVER, 4000, port, 10));
        assert!(matches!(d, Disposition::Forward { .. }), "{port}: {d:?}");
        assert_eq!(dp.conntrack().len(), 0, "not tracked");
    }
    let (d, _, _) = run(&image, &mut udp_frame(SENDER, RECEIVER, 4000, 55, 10));
    assert_eq!(d, Disposition::Drop(DropReason::RuleDrop), "a tracked packet is NEW, not UNTRACKED");
    let (d, sink, dp) = run(&image, &mut udp_frame(SENDER, RECEIVER, 4000, 56, 10));
    assert_eq!(d, Disposition::Drop(DropReason::RuleDrop), "raw DROP, before tracking");
    assert!(sink.frames.is_empty() && dp.conntrack().is_empty());
}

fn mss_of(frame: &[u8]) -> Option<u16> {
    let ip = Ipv4Packet::new_checked(&frame[ETH_LEN..]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    let options = tcp.options();
    options.windows(4).find(|w| w[0] == 2 && w[1] == 4).map(|w| u16::from_be_bytes([w[2], w[3]]))
}

#[test]
fn tcpmss_lowers_a_forwarded_syn_and_leaves_other_segments() {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let rules = compiled("COMMIT\n*mangle\n-A FORWARD -p tcp --syn -j TCPMSS --set-mss 1200\nCOMMIT\n");
    let set = Image::from_bytes(&rules).expect("valid image");
    let mut syn = Tcp::new(SENDER, RECEIVER, 4000, 80).syn(1).frame();
    syn.resize(60, 0); // Ethernet's minimum: the padding has room for the option
    let d = dp.handle_frame(0, 0, &mut syn, &set, &mut sink);
    let Disposition::Forward { len, .. } = d else { panic!("{d:?}") };
    assert_eq!(
        mss_of(&syn[..len]),
        Some(536),
        "a SYN without MSS gets one, at most 536 (Linux), though 1200 was asked"
    );
    assert!(ip_checksum_ok(&syn[..len]));
    let mut ack = Tcp::new(SENDER, RECEIVER, 4000, 80).ack(2, 1).frame();
    let before = ack.clone();
    dp.handle_frame(0, 0, &mut ack, &set, &mut sink);
    assert_eq!(ack[ETH_LEN + 20..], before[ETH_LEN + 20..], "not a SYN: unchanged");
    let mut syn = Tcp::new(SENDER, RECEIVER, 4001, 80).syn(1).mss(1460).frame();
    let Disposition::Forward { len, .. } = dp.handle_frame(0, 0, &mut syn, &set, &mut sink) else { panic!() };
    assert_eq!(mss_of(&syn[..len]), Some(1200), "an MSS above --set-mss is lowered");
    assert!(ip_checksum_ok(&syn[..len]));
    assert_eq!(Marks { clamp_to_pmtu: true, ..Marks::default() }.mss(1400), Some(1360));
    assert_eq!(Marks { clamp_to_pmtu: true, set_mss: Some(1300), ..Marks::default() }.mss(1500), Some(1300));
}

#[test]
fn forward_rules_see_the_ttl_already_lowered_as_in_linux() {
    // ip_forward lowers the TTL before the FORWARD hook: a TTL 64 packet
    // is 63 there, still 64 in INPUT (measured with -m ttl in a namespace).
    let rules = compiled(
        ":OUTPUT ACCEPT [0:0]\n-A FORWARD -m ttl --ttl-eq 63 -j DROP\n-A INPUT -m ttl --ttl-eq 64 -j DROP\nCOMMIT\n",
    );
    let (d, _, _) = run(&rules, &mut udp_frame(SENDER, RECEIVER, 4000, 53, 10));
    assert_eq!(d, Disposition::Drop(DropReason::RuleDrop), "FORWARD sees 63");
    let (d, _, _) = run(&rules, &mut udp_frame(SENDER, FW0, 4000, 53, 10));
    assert_eq!(d, Disposition::Drop(DropReason::RuleDrop), "INPUT sees 64");
}

#[test]
fn tcpmss_ctproto_and_owner_read_packets_as_linux_does() {
    let forwarded = |d: &Disposition| matches!(d, Disposition::Forward { .. });
    // -m tcpmss reads the SYN's MSS option; none: no match (not negated).
    let rules = compiled(":OUTPUT ACCEPT [0:0]\n-A FORWARD -p tcp -m tcpmss --mss 1400:1500 -j DROP\nCOMMIT\n");
    let (d, _, _) = run(&rules, &mut Tcp::new(SENDER, RECEIVER, 4000, 80).syn(1).mss(1460).frame());
    assert_eq!(d, Disposition::Drop(DropReason::RuleDrop));
    let (d, _, _) = run(&rules, &mut Tcp::new(SENDER, RECEIVER, 4000, 80).syn(1).mss(536).frame());
    assert!(forwarded(&d), "{d:?}");
    let (d, _, _) = run(&rules, &mut Tcp::new(SENDER, RECEIVER, 4000, 80).syn(1).frame());
    assert!(forwarded(&d), "no MSS option: {d:?}");
    // The time exceeded about a TCP SYN is RELATED to, and of, its TCP connection.
    let ttl_exceeded = |out: &str| {
        let rules = compiled(&format!(":OUTPUT ACCEPT [0:0]\n{out}\nCOMMIT\n"));
        let (_, sink, _) = run(&rules, &mut Tcp::new(SENDER, RECEIVER, 4000, 53).syn(1).ttl(1).frame());
        sink.frames.len()
    };
    assert_eq!(ttl_exceeded("-A OUTPUT -m conntrack --ctproto tcp -j DROP"), 0);
    assert_eq!(ttl_exceeded("-A OUTPUT -m conntrack --ctproto icmp -j DROP"), 1);
    // The firewall's own packets have a socket and no user, as Linux's kernel's.
    assert_eq!(ttl_exceeded("-A OUTPUT -m owner --socket-exists -j DROP"), 0);
    assert_eq!(ttl_exceeded("-A OUTPUT -m owner --uid-owner 0 -j DROP"), 1);
    assert_eq!(ttl_exceeded("-A OUTPUT -m owner ! --uid-owner 0 -j DROP"), 0);
}
