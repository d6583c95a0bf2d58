//! NAT rewriting, byte-exact: a packet translated in place equals the same
//! packet built from scratch with the new addresses, ports or ids, whether
//! its transport checksum was complete or partial (offloaded); ICMP errors
//! get their quoted packet translated back.

mod net_common;

use net_common::*;
use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
use unifw_core::net::checksum::{self, complete_partial};
use unifw_core::net::nat::{rewrite_icmp_error, rewrite_packet, Endpoint, Rewrite};
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
}
