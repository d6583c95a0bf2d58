//! NAT on the packet path, from a compiled iptables-save `*nat` table:
//! masquerade (TCP, UDP, ping, ICMP errors back through it, fragments),
//! DNAT port forwarding with the FORWARD chain seeing the translated
//! destination, a SNAT port range that runs out (counted, never shared),
//! and partial checksums kept partial. Every forwarded frame is compared
//! byte for byte with the same packet built from scratch.

mod net_common;

use net_common::*;
use unifw_core::image::Image;
use unifw_core::net::counters::DropReason;
use unifw_core::net::{Dataplane, DataplaneConfig, Disposition, VecSink};

const SERVER: u32 = 0x0a02_0009;

fn image(text: &str) -> Vec<u8> {
    unifw_compiler::compile("t.rules", text.as_bytes(), &mut |p| Err(p.into())).expect("compiles").image
}

const MASQUERADE: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth1 -p tcp --dport 2222 -j DNAT --to-destination 10.1.0.2:22
-A POSTROUTING -s 10.1.0.0/24 -o eth1 -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -s 10.1.0.0/24 -j ACCEPT
-A FORWARD -d 10.1.0.2/32 -p tcp --dport 22 -j ACCEPT
COMMIT
";

/// A resolved lab data plane with a connection table built for NAT.
fn nat_lab() -> Dataplane {
    let mut config = DataplaneConfig::new(lab_interfaces(), vec![], 64, 1024);
    config.nat = true;
    let mut dp = Dataplane::new(config).unwrap();
    let mut sink = VecSink::default();
    for (i, mac, addr, fw) in [(0, SENDER_MAC, SENDER, FW0), (1, RECEIVER_MAC, SERVER, FW1)] {
        let mut arp = arp_frame(smoltcp::wire::ArpOperation::Request, mac, addr, [0xff; 6], fw);
        assert_eq!(dp.handle_frame(0, i, &mut arp, &accept_all, &mut sink), Disposition::Local);
    }
    dp
}

/// The frame `dp` sends for `frame` in on `in_if`, from `out`.
fn pass(dp: &mut Dataplane, image: &Image, in_if: u8, mut frame: Vec<u8>) -> (Disposition, Vec<u8>) {
    let mut sink = VecSink::default();
    let d = dp.handle_frame(1, in_if, &mut frame, image, &mut sink);
    match d {
        Disposition::Forward { len, .. } => (d, frame[..len].to_vec()),
        _ => (d, sink.frames.first().map(|f| f.1.clone()).unwrap_or_default()),
    }
}

/// `frame`'s IP packet with TTL one less (as forwarded).
fn ip_of(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let ttl = f[ETH_LEN + 8];
    f[ETH_LEN + 8] = ttl - 1;
    refresh_ip_checksum(&mut f);
    f[ETH_LEN..].to_vec()
}

#[test]
fn masquerade_tcp_both_ways_byte_exact() {
    let bytes = image(MASQUERADE);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = nat_lab();
    let syn = Tcp::new(SENDER, SERVER, 40000, 80).syn(100).frame();
    let (d, out) = pass(&mut dp, &image, 0, syn);
    assert!(matches!(d, Disposition::Forward { out_if: 1, .. }), "{d:?}");
    // Linux keeps the source port when it is free.
    assert_eq!(out[ETH_LEN..], ip_of(&Tcp::new(FW1, SERVER, 40000, 80).syn(100).frame()));
    assert_eq!(dp.counters().events.nat_translations, 1);
    assert_eq!(dp.conntrack().translations(), 1);
    // The reply, to the firewall's own address, goes back to the sender.
    let syn_ack = Tcp::new(SERVER, FW1, 80, 40000).syn(500).ack(500, 101).frame();
    let (d, out) = pass(&mut dp, &image, 1, syn_ack);
    assert!(matches!(d, Disposition::Forward { out_if: 0, .. }), "{d:?}");
    assert_eq!(out[ETH_LEN..], ip_of(&Tcp::new(SERVER, SENDER, 80, 40000).syn(500).ack(500, 101).frame()));
    let data = Tcp::new(SENDER, SERVER, 40000, 80).ack(101, 501).payload(700).frame();
    let (_, out) = pass(&mut dp, &image, 0, data);
    assert_eq!(out[ETH_LEN..], ip_of(&Tcp::new(FW1, SERVER, 40000, 80).ack(101, 501).payload(700).frame()));
}

#[test]
fn a_clashing_source_port_is_moved_and_udp_and_ping_are_translated() {
    let bytes = image(MASQUERADE);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = nat_lab();
    let other = SENDER + 1;
    let mut arp = arp_frame(smoltcp::wire::ArpOperation::Request, [2, 0, 0, 0, 1, 3], other, [0xff; 6], FW0);
    dp.handle_frame(0, 0, &mut arp, &accept_all, &mut VecSink::default());
    let (_, first) = pass(&mut dp, &image, 0, udp_frame(SENDER, SERVER, 5000, 53, 20));
    assert_eq!(first[ETH_LEN..], ip_of(&udp_frame(FW1, SERVER, 5000, 53, 20)));
    // A second client with the same port gets another one, in 1024-65535.
    let mut frame = udp_frame(other, SERVER, 5000, 53, 20);
    frame[..6].copy_from_slice(&FW0_MAC);
    let (d, second) = pass(&mut dp, &image, 0, frame);
    assert!(matches!(d, Disposition::Forward { out_if: 1, .. }), "{d:?}");
    let port = u16::from_be_bytes([second[ETH_LEN + 20], second[ETH_LEN + 21]]);
    assert_ne!(port, 5000);
    assert!(port >= 1024);
    assert_eq!(second[ETH_LEN..], ip_of(&udp_frame(FW1, SERVER, port, 53, 20)));
    // Its reply finds it.
    let (d, back) = pass(&mut dp, &image, 1, udp_frame(SERVER, FW1, 53, port, 9));
    assert!(matches!(d, Disposition::Forward { out_if: 0, .. }), "{d:?}");
    assert_eq!(back[ETH_LEN..], ip_of(&udp_frame(SERVER, other, 53, 5000, 9)));
    // Ping: the id is the query's "port".
    let (_, ping) = pass(&mut dp, &image, 0, echo_frame(SENDER, SERVER, true, 77, 1, 64));
    assert_eq!(ping[ETH_LEN..], ip_of(&echo_frame(FW1, SERVER, true, 77, 1, 64)));
    let (_, pong) = pass(&mut dp, &image, 1, echo_frame(SERVER, FW1, false, 77, 1, 64));
    assert_eq!(pong[ETH_LEN..], ip_of(&echo_frame(SERVER, SENDER, false, 77, 1, 64)));
}

#[test]
fn dnat_forwards_a_port_and_forward_sees_the_new_destination() {
    let bytes = image(MASQUERADE);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = nat_lab();
    // From the receiver side to the firewall's eth1 address, port 2222.
    let syn = Tcp::new(SERVER, FW1, 33000, 2222).syn(1).frame();
    let (d, out) = pass(&mut dp, &image, 1, syn);
    assert!(matches!(d, Disposition::Forward { out_if: 0, .. }), "{d:?}");
    assert_eq!(out[ETH_LEN..], ip_of(&Tcp::new(SERVER, SENDER, 33000, 22).syn(1).frame()));
    let reply = Tcp::new(SENDER, SERVER, 22, 33000).syn(9).ack(9, 2).frame();
    let (d, out) = pass(&mut dp, &image, 0, reply);
    assert!(matches!(d, Disposition::Forward { out_if: 1, .. }), "{d:?}");
    assert_eq!(out[ETH_LEN..], ip_of(&Tcp::new(FW1, SERVER, 2222, 33000).syn(9).ack(9, 2).frame()));
    // The client's next segments, to the firewall's address, follow.
    let ack = Tcp::new(SERVER, FW1, 33000, 2222).ack(2, 10).payload(5).frame();
    let (d, out) = pass(&mut dp, &image, 1, ack);
    assert!(matches!(d, Disposition::Forward { out_if: 0, .. }), "{d:?}");
    assert_eq!(out[ETH_LEN..], ip_of(&Tcp::new(SERVER, SENDER, 33000, 22).ack(2, 10).payload(5).frame()));
    // Another port to the firewall is not forwarded (INPUT drops it).
    let (d, _) = pass(&mut dp, &image, 1, Tcp::new(SERVER, FW1, 33001, 2223).syn(1).frame());
    assert_eq!(d, Disposition::Drop(DropReason::RuleDrop));
}

#[test]
fn a_fragmented_reply_to_the_masquerade_address_is_reassembled_and_translated() {
    let bytes = image(MASQUERADE);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = nat_lab();
    let (d, _) = pass(&mut dp, &image, 0, udp_frame(SENDER, SERVER, 7000, 5001, 10));
    assert!(matches!(d, Disposition::Forward { .. }), "{d:?}");
    let reply = udp_frame(SERVER, FW1, 5001, 7000, 2000);
    let mut sink = VecSink::default();
    for (offset, more, len) in [(0u16, true, 1480usize), (1480, false, 528)] {
        let mut piece = fragment_of(&reply, offset, more, len);
        let d = dp.handle_frame(2, 1, &mut piece, &image, &mut sink);
        assert_eq!(d, Disposition::Queued, "held, then sent as fragments");
    }
    assert_eq!(sink.frames.len(), 2, "both fragments leave");
    let want = udp_frame(SERVER, SENDER, 5001, 7000, 2000);
    for (i, (out_if, frame)) in sink.frames.iter().enumerate() {
        assert_eq!(*out_if, 0);
        assert_eq!(&frame[ETH_LEN + 12..ETH_LEN + 20], &want[ETH_LEN + 12..ETH_LEN + 20], "addresses of fragment {i}");
        assert!(ip_checksum_ok(frame));
    }
    let first = &sink.frames[0].1;
    // Ports and the UDP checksum (over the whole datagram) of the first.
    assert_eq!(&first[ETH_LEN + 20..ETH_LEN + 28], &want[ETH_LEN + 20..ETH_LEN + 28]);
}

#[test]
fn icmp_errors_are_translated_back() {
    let bytes = image(MASQUERADE);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = nat_lab();
    // Port unreachable, a traceroute's time exceeded from a router past
    // the firewall, and path-MTU discovery's fragmentation needed.
    for (n, (icmp_type, code)) in [(3u8, 3u8), (11, 0), (3, 4)].into_iter().enumerate() {
        let probe = udp_frame(SENDER, SERVER, 6000 + n as u16, 33434, 10);
        let (_, sent) = pass(&mut dp, &image, 0, probe.clone());
        // The error comes to the firewall's address, quoting the translated probe.
        let error = icmp_error_frame(SERVER, FW1, icmp_type, code, &sent[ETH_LEN..]);
        let (d, back) = pass(&mut dp, &image, 1, error);
        assert!(matches!(d, Disposition::Forward { out_if: 0, .. }), "{icmp_type}/{code}: {d:?}");
        // What arrives quotes the probe as the sender sent it (TTL as it left).
        let mut original = probe.clone();
        original[ETH_LEN + 8] -= 1;
        refresh_ip_checksum(&mut original);
        let want = icmp_error_frame(SERVER, SENDER, icmp_type, code, &original[ETH_LEN..]);
        assert_eq!(back[ETH_LEN..], ip_of(&want), "{icmp_type}/{code}");
    }
}

#[test]
fn a_snat_range_that_runs_out_is_counted_never_shared() {
    let rules = "\
*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o eth1 -p udp -j SNAT --to-source 10.2.0.1:7000-7003
COMMIT
*filter
:FORWARD ACCEPT [0:0]
COMMIT
";
    let bytes = image(rules);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = nat_lab();
    let mut ports = Vec::new();
    for n in 0..4u16 {
        let (d, out) = pass(&mut dp, &image, 0, udp_frame(SENDER, SERVER, 9000 + n, 53, 4));
        assert!(matches!(d, Disposition::Forward { .. }), "{d:?}");
        ports.push(u16::from_be_bytes([out[ETH_LEN + 20], out[ETH_LEN + 21]]));
    }
    ports.sort();
    assert_eq!(ports, [7000, 7001, 7002, 7003]);
    let (d, _) = pass(&mut dp, &image, 0, udp_frame(SENDER, SERVER, 9100, 53, 4));
    assert_eq!(d, Disposition::Drop(DropReason::NatExhausted));
    assert_eq!(dp.counters().events.nat_allocation_failures, 1);
    // Another destination has its own tuples: the ports are free there.
    let (d, _) = pass(&mut dp, &image, 0, udp_frame(SENDER, SERVER + 1, 9100, 53, 4));
    assert_eq!(d, Disposition::Queued, "sent once ARP resolves");
}

#[test]
fn a_partial_checksum_stays_partial_with_the_new_addresses() {
    use unifw_core::net::checksum::PartialChecksum;
    use unifw_core::net::split::Offload;
    let bytes = image(MASQUERADE);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = nat_lab();
    let mut frame = Tcp::new(SENDER, SERVER, 41000, 80).syn(5).payload(1200).frame();
    let pseudo = |f: &mut Vec<u8>| {
        let ip = &f[ETH_LEN..];
        let len = (ip.len() - 20) as u16;
        let mut p = Vec::new();
        p.extend_from_slice(&ip[12..20]);
        p.extend_from_slice(&[0, 6]);
        p.extend_from_slice(&len.to_be_bytes());
        let sum = !unifw_core::net::checksum::checksum(&p);
        f[ETH_LEN + 36..ETH_LEN + 38].copy_from_slice(&sum.to_be_bytes());
    };
    pseudo(&mut frame);
    let partial = PartialChecksum { start: ETH_LEN + 20, offset: 16 };
    let mut sink = VecSink::default();
    let d = dp.handle_offloaded_frame(
        1,
        0,
        &mut frame,
        Offload { partial: Some(partial), segment_size: None },
        &image,
        &mut sink,
    );
    let Disposition::Forward { len, .. } = d else { panic!("{d:?}") };
    let mut want = Tcp::new(FW1, SERVER, 41000, 80).syn(5).payload(1200).frame();
    pseudo(&mut want);
    assert_eq!(frame[ETH_LEN..len], ip_of(&want));
}

/// An ICMP error (`icmp_type`, `code`) from `src` to `dst` quoting `about`
/// (an IP packet) whole.
fn icmp_error_frame(src: u32, dst: u32, icmp_type: u8, code: u8, about: &[u8]) -> Vec<u8> {
    let mut message = vec![icmp_type, code, 0, 0, 0, 0, 0, 0];
    message.extend_from_slice(about);
    let sum = unifw_core::net::checksum::checksum(&message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    let (l4_len, body) = (message.len(), message.clone());
    ipv4_frame((RECEIVER_MAC, FW1_MAC), (src, dst), smoltcp::wire::IpProtocol::Icmp, 64, l4_len, |buf| {
        buf.copy_from_slice(&body)
    })
}

#[test]
fn native_statements_translate_as_the_iptables_table() {
    let native = "\
interface eth0 10.1.0.1/24
interface eth1 10.2.0.1/24
policy forward drop
masquerade from 10.1.0.0/24 out eth1
dnat 10.1.0.2:22 tcp dport 2222 in eth1
forward accept state established,related
forward accept from 10.1.0.0/24
forward accept tcp to 10.1.0.2 dport 22
";
    let bytes = image(native);
    let image = Image::from_bytes(&bytes).unwrap();
    assert!(image.has_nat());
    let mut dp = nat_lab();
    let (_, out) = pass(&mut dp, &image, 0, udp_frame(SENDER, SERVER, 5555, 53, 12));
    assert_eq!(out[ETH_LEN..], ip_of(&udp_frame(FW1, SERVER, 5555, 53, 12)));
    let (d, out) = pass(&mut dp, &image, 1, Tcp::new(SERVER, FW1, 33000, 2222).syn(1).frame());
    assert!(matches!(d, Disposition::Forward { out_if: 0, .. }), "{d:?}");
    assert_eq!(out[ETH_LEN..], ip_of(&Tcp::new(SERVER, SENDER, 33000, 22).syn(1).frame()));
    // Per-rule hits: the masquerade and dnat statements are rules 0 and 1.
    assert_eq!(dp.counters().rule_hits[..2], [1, 1]);
}

#[test]
fn an_image_without_nat_rules_translates_nothing() {
    let bytes = image("interface eth0 10.1.0.1/24\ninterface eth1 10.2.0.1/24\nforward accept\n");
    let image = Image::from_bytes(&bytes).unwrap();
    assert!(!image.has_nat());
    let mut dp = nat_lab();
    let (_, out) = pass(&mut dp, &image, 0, udp_frame(SENDER, SERVER, 5555, 53, 12));
    assert_eq!(out[ETH_LEN..], ip_of(&udp_frame(SENDER, SERVER, 5555, 53, 12)));
    assert_eq!(dp.conntrack().translations(), 0);
}

#[test]
fn nat_targets_compile_to_their_records() {
    use unifw_core::image::format::{NatKind, NatRecord};
    let rules = "\
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -j DNAT --to-destination 10.1.0.2-10.1.0.4:8000-8010 --persistent
-A POSTROUTING -p udp -j SNAT --to-source 10.2.0.1:1024-2047 --random-fully
-A POSTROUTING -j MASQUERADE --random
-A POSTROUTING -p tcp -j MASQUERADE --to-ports 5000-6000
COMMIT
";
    let bytes = image(rules);
    let image = Image::from_bytes(&bytes).unwrap();
    let plain = NatRecord {
        kind: NatKind::Snat,
        addrs: (0, 0),
        ports: None,
        random: false,
        random_fully: false,
        persistent: false,
    };
    let want = [
        NatRecord {
            kind: NatKind::Dnat,
            addrs: (0x0a01_0002, 0x0a01_0004),
            ports: Some((8000, 8010)),
            persistent: true,
            ..plain
        },
        NatRecord { addrs: (0x0a02_0001, 0x0a02_0001), ports: Some((1024, 2047)), random_fully: true, ..plain },
        NatRecord { kind: NatKind::Masquerade, random: true, ..plain },
        NatRecord { kind: NatKind::Masquerade, ports: Some((5000, 6000)), ..plain },
    ];
    let got: Vec<_> = (0..4).map(|rule| image.nat_of_rule(rule)).collect();
    assert_eq!(got, want.map(Some));
}

#[test]
fn dnat_without_a_port_keeps_it() {
    let native = "\
interface eth0 10.1.0.1/24
interface eth1 10.2.0.1/24
dnat 10.1.0.2 tcp dport 80,443 in eth1
forward accept
";
    let bytes = image(native);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = nat_lab();
    for (client, port) in [(33000, 80), (33001, 443), (33000, 443)] {
        let (d, out) = pass(&mut dp, &image, 1, Tcp::new(SERVER, FW1, client, port).syn(1).frame());
        assert!(matches!(d, Disposition::Forward { out_if: 0, .. }), "{d:?}");
        assert_eq!(out[ETH_LEN..], ip_of(&Tcp::new(SERVER, SENDER, client, port).syn(1).frame()));
    }
}

#[test]
fn ctstate_dnat_and_snat_see_the_connections_translation_as_linux_does() {
    // FORWARD accepts only DNATed connections (both directions: the status
    // is the connection's); SNAT is decided after FORWARD, so a new
    // masqueraded connection is not SNAT there yet, as in Linux.
    let text = MASQUERADE.replace(
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -s 10.1.0.0/24 -j ACCEPT\n-A FORWARD -d 10.1.0.2/32 -p tcp --dport 22 -j ACCEPT\n",
        "-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT\n-A FORWARD -m conntrack ! --ctstate SNAT -j REJECT\n",
    );
    let bytes = image(&text);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = nat_lab();
    let (d, _) = pass(&mut dp, &image, 1, Tcp::new(SERVER, FW1, 33000, 2222).syn(1).frame());
    assert!(matches!(d, Disposition::Forward { out_if: 0, .. }), "DNAT: {d:?}");
    let reply = Tcp::new(SENDER, SERVER, 22, 33000).syn(9).ack(9, 2).frame();
    let (d, _) = pass(&mut dp, &image, 0, reply);
    assert!(matches!(d, Disposition::Forward { out_if: 1, .. }), "the reply of a DNAT connection: {d:?}");
    // A new masqueraded connection: not DNAT, not yet SNAT in FORWARD.
    let (d, _) = pass(&mut dp, &image, 0, udp_frame(SENDER, SERVER, 4000, 53, 10));
    assert_eq!(d, Disposition::Drop(DropReason::RuleReject), "! --ctstate SNAT rejects it");
}

#[test]
fn a_new_address_forgets_the_connections_masqueraded_from_the_old_one() {
    use unifw_core::net::addr::Cidr;
    let bytes = image(MASQUERADE);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = nat_lab();
    let (d, _) = pass(&mut dp, &image, 0, Tcp::new(SENDER, SERVER, 40000, 80).syn(100).frame());
    assert!(matches!(d, Disposition::Forward { out_if: 1, .. }), "{d:?}");
    // The same address again (a renewed lease) keeps it.
    let same = Cidr { addr: FW1, prefix_len: 24 };
    dp.set_interface_address(1, Some(same)).unwrap();
    assert_eq!((dp.conntrack().translations(), dp.counters().events.masquerade_flushed), (1, 0));
    // A new lease's address: the connection from the old one is gone (Linux's
    // masquerade forgets it), and a new one leaves from the new address.
    let new = FW1 + 50;
    dp.set_interface_address(1, Some(Cidr { addr: new, prefix_len: 24 })).unwrap();
    assert_eq!((dp.conntrack().translations(), dp.counters().events.masquerade_flushed), (0, 1));
    let (d, out) = pass(&mut dp, &image, 0, Tcp::new(SENDER, SERVER, 40001, 80).syn(100).frame());
    assert!(matches!(d, Disposition::Forward { out_if: 1, .. }), "{d:?}");
    assert_eq!(out[ETH_LEN..], ip_of(&Tcp::new(new, SERVER, 40001, 80).syn(100).frame()));
}

#[test]
fn conntrack_tuples_are_the_connections_before_and_after_nat() {
    // FORWARD sees the DNATed packet; --ctorigdstport is the port the
    // client asked for, the reply tuple names the DNAT target, and a new
    // masqueraded flow's reply tuple has no SNAT yet (POSTROUTING comes
    // after), while its replies see the masquerade address, as in Linux.
    let filter = "\
-A FORWARD -m conntrack --ctdir ORIGINAL --ctorigdstport 2222 --ctorigdst 10.2.0.1 --ctreplsrc 10.1.0.2 --ctreplsrcport 22 -j ACCEPT
-A FORWARD -m conntrack --ctdir REPLY --ctorigdstport 2222 -j ACCEPT
-A FORWARD -s 10.1.0.0/24 -m conntrack --ctstate NEW --ctrepldst 10.1.0.2 ! --ctorigdstport 2222 -j ACCEPT
-A FORWARD -d 10.1.0.0/24 -m conntrack --ctdir REPLY --ctrepldst 10.2.0.1 --ctorigsrc 10.1.0.2 -j ACCEPT
";
    let text = MASQUERADE.replace(
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -s 10.1.0.0/24 -j ACCEPT\n-A FORWARD -d 10.1.0.2/32 -p tcp --dport 22 -j ACCEPT\n",
        filter,
    );
    let bytes = image(&text);
    let image = Image::from_bytes(&bytes).unwrap();
    let mut dp = nat_lab();
    let (d, out) = pass(&mut dp, &image, 1, Tcp::new(SERVER, FW1, 33000, 2222).syn(1).frame());
    assert!(matches!(d, Disposition::Forward { out_if: 0, .. }), "DNAT, original direction: {d:?}");
    assert_eq!(out[ETH_LEN..], ip_of(&Tcp::new(SERVER, SENDER, 33000, 22).syn(1).frame()));
    let reply = Tcp::new(SENDER, SERVER, 22, 33000).syn(9).ack(9, 2).frame();
    let (d, _) = pass(&mut dp, &image, 0, reply);
    assert!(matches!(d, Disposition::Forward { out_if: 1, .. }), "its reply: {d:?}");
    // The same service asked for directly: its original port is 22.
    let (d, _) = pass(&mut dp, &image, 1, Tcp::new(SERVER, SENDER, 33001, 22).syn(1).frame());
    assert!(!matches!(d, Disposition::Forward { .. }), "not DNATed: {d:?}");
    // Masquerade: FORWARD sees the reply tuple before SNAT ...
    let (d, out) = pass(&mut dp, &image, 0, udp_frame(SENDER, SERVER, 4000, 53, 10));
    assert!(matches!(d, Disposition::Forward { out_if: 1, .. }), "new masqueraded flow: {d:?}");
    assert_eq!(out[ETH_LEN..], ip_of(&udp_frame(FW1, SERVER, 4000, 53, 10)));
    // ... and its replies the one after it.
    let (d, _) = pass(&mut dp, &image, 1, udp_frame(SERVER, FW1, 53, 4000, 10));
    assert!(matches!(d, Disposition::Forward { out_if: 0, .. }), "its reply: {d:?}");
}
