//! NAT rewriting, byte-exact: a packet translated in place equals the same
//! packet built from scratch with the new addresses, ports or ids, whether
//! its transport checksum was complete or partial (offloaded); ICMP errors
//! get their quoted packet translated back.

mod net_common;

use net_common::*;
use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
use unifw_core::net::checksum::{self, complete_partial};
use unifw_core::net::nat::{rewrite_icmp_error, rewrite_packet, Endpoint, NatError, Rewrite};
use unifw_core::net::parse::parse_ipv4;

const PUBLIC: u32 = 0x0a02_0001;
const SERVER: u32 = 0x0a09_0909;

fn ep(addr: u32, port: u16) -> Endpoint {
    Endpoint { addr, port }
}

/// Rewrites the IP part of `frame` to `to`; `partial` as the offload says.
fn translated(frame: &[u8], to: Rewrite, partial: bool) -> Vec<u8> {
    let mut out = frame.to_vec();
    let meta = parse_ipv4(&out[ETH_LEN..]).unwrap();
    rewrite_packet(&mut out[ETH_LEN..], &meta, to, partial).unwrap();
    out
}

#[test]
fn tcp_source_nat_is_byte_exact() {
    let original = Tcp::new(SENDER, SERVER, 40000, 443).ack(1, 2).payload(333).frame();
    let to = Rewrite { src: ep(PUBLIC, 61000), dst: ep(SERVER, 443) };
    let expected = Tcp::new(PUBLIC, SERVER, 61000, 443).ack(1, 2).payload(333).frame();
    assert_eq!(translated(&original, to, false)[ETH_LEN..], expected[ETH_LEN..]);
    // And back: the reply direction's inverse.
    let reply = Tcp::new(SERVER, PUBLIC, 443, 61000).ack(2, 334).frame();
    let back = Rewrite { src: ep(SERVER, 443), dst: ep(SENDER, 40000) };
    let want = Tcp::new(SERVER, SENDER, 443, 40000).ack(2, 334).frame();
    assert_eq!(translated(&reply, back, false)[ETH_LEN..], want[ETH_LEN..]);
}

/// Puts the pseudo-header sum in the TCP checksum field, as a sender with
/// checksum offload leaves it.
fn make_partial(frame: &mut [u8]) {
    let ip = Ipv4Packet::new_checked(&frame[ETH_LEN..]).unwrap();
    let len = ip.payload().len() as u16;
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip.src_addr().octets());
    pseudo.extend_from_slice(&ip.dst_addr().octets());
    pseudo.extend_from_slice(&[0, u8::from(ip.next_header())]);
    pseudo.extend_from_slice(&len.to_be_bytes());
    let sum = !checksum::checksum(&pseudo);
    frame[ETH_LEN + 20 + 16..ETH_LEN + 20 + 18].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn a_partial_checksum_gets_the_addresses_and_is_completed_right() {
    let mut original = Tcp::new(SENDER, SERVER, 40000, 80).ack(9, 9).payload(1000).frame();
    make_partial(&mut original);
    let to = Rewrite { src: ep(PUBLIC, 61001), dst: ep(SERVER, 8080) };
    let mut out = translated(&original, to, true);
    let mut still_partial = Tcp::new(PUBLIC, SERVER, 61001, 8080).ack(9, 9).payload(1000).frame();
    make_partial(&mut still_partial);
    assert_eq!(out[ETH_LEN..], still_partial[ETH_LEN..], "the field holds the new pseudo-header sum");
    assert!(complete_partial(&mut out, ETH_LEN + 20, 16));
    let expected = Tcp::new(PUBLIC, SERVER, 61001, 8080).ack(9, 9).payload(1000).frame();
    assert_eq!(out[ETH_LEN..], expected[ETH_LEN..]);
    let ip = Ipv4Packet::new_checked(&out[ETH_LEN..]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(&IpAddress::Ipv4(ip.src_addr()), &IpAddress::Ipv4(ip.dst_addr())));
}

#[test]
fn udp_with_and_without_a_checksum() {
    let original = udp_frame(SENDER, SERVER, 5353, 53, 40);
    let to = Rewrite { src: ep(PUBLIC, 1024), dst: ep(SERVER, 53) };
    let expected = udp_frame(PUBLIC, SERVER, 1024, 53, 40);
    assert_eq!(translated(&original, to, false)[ETH_LEN..], expected[ETH_LEN..]);
    // Checksum 0 (none computed) stays 0.
    let mut none = original.clone();
    none[ETH_LEN + 26..ETH_LEN + 28].copy_from_slice(&[0, 0]);
    let out = translated(&none, to, false);
    assert_eq!(&out[ETH_LEN + 26..ETH_LEN + 28], &[0, 0]);
    assert_eq!(&out[ETH_LEN + 20..ETH_LEN + 24], &[4, 0, 0, 53]);
    assert!(ip_checksum_ok(&out));
}

#[test]
fn an_echo_request_gets_the_new_id_and_its_reply_the_old_one() {
    let request = echo_frame(SENDER, SERVER, true, 7, 1, 64);
    let to = Rewrite { src: ep(PUBLIC, 900), dst: ep(SERVER, 0) };
    let expected = echo_frame(PUBLIC, SERVER, true, 900, 1, 64);
    assert_eq!(translated(&request, to, false)[ETH_LEN..], expected[ETH_LEN..]);
    let reply = echo_frame(SERVER, PUBLIC, false, 900, 1, 64);
    let back = Rewrite { src: ep(SERVER, 0), dst: ep(SENDER, 7) };
    let want = echo_frame(SERVER, SENDER, false, 7, 1, 64);
    assert_eq!(translated(&reply, back, false)[ETH_LEN..], want[ETH_LEN..]);
}

/// A port unreachable from SERVER to `to` quoting the first `quote` bytes of `about`'s IP packet.
fn port_unreachable(to: u32, about: &[u8], quote: usize) -> Vec<u8> {
    let mut message = vec![3, 3, 0, 0, 0, 0, 0, 0];
    message.extend_from_slice(&about[ETH_LEN..ETH_LEN + quote]);
    let sum = checksum::checksum(&message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    let (l4_len, body) = (message.len(), message.clone());
    ipv4_frame((RECEIVER_MAC, FW1_MAC), (SERVER, to), smoltcp::wire::IpProtocol::Icmp, 64, l4_len, |buf| {
        buf.copy_from_slice(&body)
    })
}

#[test]
fn an_icmp_error_is_translated_back_with_its_quote() {
    let to_inner = |src: Endpoint| Rewrite { src, dst: ep(SERVER, 53) };
    // UDP, quoted whole (its checksum updated), and TCP, quoted with only
    // 8 bytes (no checksum to update) or with its whole header.
    let cases = [
        (udp_frame(SENDER, SERVER, 5353, 53, 20), udp_frame(PUBLIC, SERVER, 1024, 53, 20), 28),
        (Tcp::new(SENDER, SERVER, 40000, 53).syn(5).frame(), Tcp::new(PUBLIC, SERVER, 1024, 53).syn(5).frame(), 28),
        (Tcp::new(SENDER, SERVER, 40000, 53).syn(5).frame(), Tcp::new(PUBLIC, SERVER, 1024, 53).syn(5).frame(), 40),
    ];
    for (original, on_the_wire, quote) in cases {
        let error = port_unreachable(PUBLIC, &on_the_wire, quote);
        let mut out = error.clone();
        let meta = parse_ipv4(&out[ETH_LEN..]).unwrap();
        let outer = Rewrite { src: ep(SERVER, 0), dst: ep(SENDER, 0) };
        let port = u16::from_be_bytes([original[ETH_LEN + 20], original[ETH_LEN + 21]]);
        rewrite_icmp_error(&mut out[ETH_LEN..], &meta, outer, to_inner(ep(SENDER, port))).unwrap();
        let expected = port_unreachable(SENDER, &original, quote);
        assert_eq!(out[ETH_LEN..], expected[ETH_LEN..], "quote of {quote} bytes");
    }
    // Not an ICMP error: refused, the packet untouched.
    let mut udp = udp_frame(SENDER, SERVER, 1, 2, 8);
    let before = udp.clone();
    let meta = parse_ipv4(&udp[ETH_LEN..]).unwrap();
    let any = Rewrite { src: ep(PUBLIC, 1), dst: ep(SERVER, 2) };
    assert_eq!(rewrite_icmp_error(&mut udp[ETH_LEN..], &meta, any, any), Err(NatError::NotIcmpError));
    assert_eq!(udp, before);
}

mod tracked {
    use super::*;
    use unifw_core::flow::CtState;
    use unifw_core::net::conntrack::{ConnTrack, Manip, NatExhausted};
    use unifw_core::net::nat::PortPolicy;

    const ROUTER: u32 = 0x0a02_00fe;

    fn meta(frame: &[u8]) -> unifw_core::net::parse::Ipv4Meta {
        parse_ipv4(&frame[ETH_LEN..]).unwrap()
    }

    /// Tracks and confirms a new flow for `frame`, translating its source to
    /// `PUBLIC` with ports from `range`.
    fn masquerade(ct: &mut ConnTrack, frame: &[u8], range: Option<(u16, u16)>) -> Result<Rewrite, NatExhausted> {
        let mut tracked = ct.track(&meta(frame), 0);
        assert_eq!(tracked.state, CtState::New);
        let to = ct.translate(&mut tracked, Manip::Source, PUBLIC, range, (PortPolicy::Preserve, 1), 0)?;
        ct.confirm(&tracked, 0).unwrap();
        Ok(to)
    }

    #[test]
    fn both_directions_of_a_source_nat_flow_are_found_and_rewritten() {
        let mut ct = ConnTrack::new_for_nat(64, 1);
        let syn = Tcp::new(SENDER, SERVER, 40000, 80).syn(1).frame();
        let to = masquerade(&mut ct, &syn, None).unwrap();
        assert_eq!(to, Rewrite { src: ep(PUBLIC, 40000), dst: ep(SERVER, 80) }, "the port is kept when free");
        let syn_ack = Tcp::new(SERVER, PUBLIC, 80, 40000).syn(9).ack(9, 2).frame();
        let reply = ct.track(&meta(&syn_ack), 1);
        assert_eq!(reply.state, CtState::Established);
        assert_eq!(reply.rewrite(), Some(Rewrite { src: ep(SERVER, 80), dst: ep(SENDER, 40000) }));
        let ack = Tcp::new(SENDER, SERVER, 40000, 80).ack(2, 10).frame();
        let next = ct.track(&meta(&ack), 2);
        assert_eq!((next.state, next.rewrite()), (CtState::Established, Some(to)));
        // The untranslated reverse tuple is not this flow's.
        let stray = Tcp::new(SERVER, SENDER, 80, 40000).ack(10, 2).frame();
        assert_eq!(ct.track(&meta(&stray), 3).state, CtState::Invalid);
        assert_eq!(ct.len(), 1, "one flow, two keys");
        // A table built without NAT room refuses to translate.
        let mut plain = ConnTrack::new(64, 1);
        let mut other = plain.track(&meta(&Tcp::new(SENDER, SERVER, 1, 2).syn(1).frame()), 0);
        let refused = plain.translate(&mut other, Manip::Source, PUBLIC, None, (PortPolicy::Preserve, 1), 0);
        assert_eq!(refused, Err(NatExhausted));
    }

    #[test]
    fn a_second_host_with_the_same_port_gets_another_and_exhaustion_is_an_error() {
        let mut ct = ConnTrack::new_for_nat(64, 1);
        let from = |host: u32| udp_frame(host, SERVER, 5000, 53, 10);
        let first = masquerade(&mut ct, &from(SENDER), Some((5000, 5001))).unwrap();
        let second = masquerade(&mut ct, &from(SENDER + 1), Some((5000, 5001))).unwrap();
        assert_eq!((first.src.port, second.src.port), (5000, 5001));
        let mut third = ct.track(&meta(&from(SENDER + 2)), 0);
        let result = ct.translate(&mut third, Manip::Source, PUBLIC, Some((5000, 5001)), (PortPolicy::Preserve, 1), 0);
        assert_eq!(result, Err(NatExhausted));
        // The second flow's reply finds the second host.
        let reply = udp_frame(SERVER, PUBLIC, 53, 5001, 10);
        assert_eq!(ct.track(&meta(&reply), 1).rewrite().unwrap().dst, ep(SENDER + 1, 5000));
    }

    #[test]
    fn destination_nat_and_an_echo_query_id() {
        let mut ct = ConnTrack::new_for_nat(64, 1);
        // A port forward: PUBLIC:80 -> RECEIVER:8080.
        let syn = Tcp::new(SERVER, PUBLIC, 33000, 80).syn(1).frame();
        let mut tracked = ct.track(&meta(&syn), 0);
        let to = ct
            .translate(&mut tracked, Manip::Destination, RECEIVER, Some((8080, 8080)), (PortPolicy::Preserve, 1), 0)
            .unwrap();
        ct.confirm(&tracked, 0).unwrap();
        assert_eq!(to, Rewrite { src: ep(SERVER, 33000), dst: ep(RECEIVER, 8080) });
        let syn_ack = Tcp::new(RECEIVER, SERVER, 8080, 33000).syn(5).ack(5, 2).frame();
        let reply = ct.track(&meta(&syn_ack), 1);
        assert_eq!(reply.rewrite(), Some(Rewrite { src: ep(PUBLIC, 80), dst: ep(SERVER, 33000) }));
        // Two hosts pinging with id 7 through one address: distinct ids out.
        let a = masquerade(&mut ct, &echo_frame(SENDER, SERVER, true, 7, 1, 64), None).unwrap();
        let b = masquerade(&mut ct, &echo_frame(SENDER + 1, SERVER, true, 7, 1, 64), None).unwrap();
        assert_eq!(a.src.port, 7);
        assert_ne!(b.src.port, 7);
        let pong = echo_frame(SERVER, PUBLIC, false, b.src.port, 1, 64);
        let back = ct.track(&meta(&pong), 1);
        assert_eq!((back.state, back.rewrite().unwrap().dst), (CtState::Established, ep(SENDER + 1, 7)));
    }

    #[test]
    fn an_icmp_error_about_a_translated_packet_is_related_with_its_rewrites() {
        let mut ct = ConnTrack::new_for_nat(64, 1);
        let out = udp_frame(SENDER, SERVER, 5353, 53, 10);
        let to = masquerade(&mut ct, &out, Some((1024, 1024))).unwrap();
        let on_the_wire = udp_frame(PUBLIC, SERVER, 1024, 53, 10);
        let mut error = port_unreachable(PUBLIC, &on_the_wire, 28);
        // From a router on the way, not the server.
        error[ETH_LEN + 12..ETH_LEN + 16].copy_from_slice(&ROUTER.to_be_bytes());
        refresh_ip_checksum(&mut error);
        let tracked = ct.track(&meta(&error), 1);
        assert_eq!(tracked.state, CtState::Related);
        let (outer, inner) = tracked.error_rewrite().unwrap();
        assert_eq!((outer.src.addr, outer.dst.addr), (ROUTER, SENDER), "only the SNAT end changes outside");
        assert_eq!(inner, Rewrite { src: ep(SENDER, 5353), dst: ep(SERVER, 53) });
        assert_eq!(to.src, ep(PUBLIC, 1024));
    }
}
