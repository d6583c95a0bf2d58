//! Rejects: TCP RSTs with RFC 793 sequence numbers and ICMP unreachables
//! quoting the offending header plus 8 bytes, all checksums valid.

mod net_common;

use net_common::*;
use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Packet, TcpControl, TcpPacket};
use unifw_core::flow::RejectWith;
use unifw_core::net::{checksum, Disposition, DropReason, VecSink};

fn reject(frame: &mut [u8], with: RejectWith) -> (Disposition, VecSink) {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let disposition = dp.handle_frame(0, 0, frame, &reject_with(with), &mut sink);
    (disposition, sink)
}

fn reset_of(frame: &[u8]) -> TcpPacket<Vec<u8>> {
    assert_eq!(&frame[0..6], &SENDER_MAC);
    assert_eq!(&frame[6..12], &FW0_MAC);
    let ip = Ipv4Packet::new_checked(&frame[ETH_LEN..]).unwrap();
    assert!(ip.verify_checksum());
    // The RST appears to come from the connection's destination.
    assert_eq!(u32::from(ip.src_addr()), RECEIVER);
    assert_eq!(u32::from(ip.dst_addr()), SENDER);
    let tcp = TcpPacket::new_checked(ip.payload().to_vec()).unwrap();
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
    assert!(tcp.verify_checksum(&src, &dst));
    assert!(tcp.rst());
    assert_eq!((tcp.src_port(), tcp.dst_port()), (80, 40000));
    tcp
}

#[test]
fn reset_for_a_syn_acks_it() {
    let mut frame = Tcp::new(SENDER, RECEIVER, 40000, 80).syn(1000).frame();
    let (disposition, sink) = reject(&mut frame, RejectWith::TcpReset);
    assert_eq!(disposition, Disposition::Drop(DropReason::RuleReject));
    let [(0, reply)] = &sink.frames[..] else { panic!("one RST out of eth0 expected") };
    let tcp = reset_of(reply);
    // No ACK in the segment: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; SYN counts 1.
    assert_eq!(tcp.seq_number().0, 0);
    assert!(tcp.ack());
    assert_eq!(tcp.ack_number().0 as u32, 1001);
}

#[test]
fn reset_for_data_with_ack_uses_its_ack() {
    let mut frame = Tcp::new(SENDER, RECEIVER, 40000, 80).ack(5000, 777_777).payload(100).frame();
    let (_, sink) = reject(&mut frame, RejectWith::TcpReset);
    let tcp = reset_of(&sink.frames[0].1);
    // ACK set: <SEQ=SEG.ACK><CTL=RST>.
    assert_eq!(tcp.seq_number().0 as u32, 777_777);
    assert!(!tcp.ack());
}

#[test]
fn reset_with_fin_counts_the_fin() {
    let mut frame = Tcp::new(SENDER, RECEIVER, 40000, 80).control(TcpControl::Fin).payload(10).frame();
    // A FIN without ACK (unusual but legal to answer): ack = seq + 10 + 1.
    let (_, sink) = reject(&mut frame, RejectWith::TcpReset);
    let tcp = reset_of(&sink.frames[0].1);
    assert_eq!(tcp.ack_number().0 as u32, 1000 + 11);
}

#[test]
fn no_reset_answers_a_reset() {
    let mut frame = Tcp::new(SENDER, RECEIVER, 40000, 80).control(TcpControl::Rst).frame();
    let (disposition, sink) = reject(&mut frame, RejectWith::TcpReset);
    assert_eq!(disposition, Disposition::Drop(DropReason::RuleReject));
    assert!(sink.frames.is_empty());
}

fn check_unreachable(with: RejectWith, code: u8, frame: Vec<u8>) {
    let mut received = frame.clone();
    let (_, sink) = reject(&mut received, with);
    let [(0, reply)] = &sink.frames[..] else { panic!("one ICMP error expected") };
    let ip = Ipv4Packet::new_checked(&reply[ETH_LEN..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.next_header(), smoltcp::wire::IpProtocol::Icmp);
    assert_eq!(ip.src_addr(), Ipv4Address::from(FW0));
    assert_eq!(ip.dst_addr(), Ipv4Address::from(SENDER));
    let icmp = ip.payload();
    assert_eq!(checksum::checksum(icmp), 0, "ICMP checksum");
    assert_eq!((icmp[0], icmp[1]), (3, code));
    assert_eq!(&icmp[4..8], &[0; 4]);
    // Linux's icmp_send quotes the datagram up to a 576-byte error.
    let total = usize::from(u16::from_be_bytes([frame[ETH_LEN + 2], frame[ETH_LEN + 3]]));
    let quoted = total.min(576 - 20 - 8);
    assert_eq!(icmp.len(), 8 + quoted);
    assert_eq!(&icmp[8..], &frame[ETH_LEN..ETH_LEN + quoted], "the datagram quoted as Linux quotes it");
}

#[test]
fn icmp_unreachables_quote_as_linux_does() {
    let udp = udp_frame(SENDER, RECEIVER, 5000, 53, 100);
    check_unreachable(RejectWith::PortUnreachable, 3, udp.clone());
    check_unreachable(RejectWith::AdminProhibited, 13, udp.clone());
    check_unreachable(RejectWith::HostUnreachable, 1, udp.clone());
    check_unreachable(RejectWith::NetUnreachable, 0, udp.clone());
    check_unreachable(RejectWith::ProtoUnreachable, 2, udp.clone());
    // iptables' icmp-net-prohibited and icmp-host-prohibited (RFC 1122 codes 9 and 10).
    check_unreachable(RejectWith::NetProhibited, 9, udp.clone());
    check_unreachable(RejectWith::HostProhibited, 10, udp);
    check_unreachable(RejectWith::HostProhibited, 10, Tcp::new(SENDER, RECEIVER, 1, 2).syn(5).frame());
    // tcp-reset on UDP degrades to port unreachable.
    check_unreachable(RejectWith::TcpReset, 3, udp_frame(SENDER, RECEIVER, 5000, 53, 4));
    check_unreachable(RejectWith::AdminProhibited, 13, Tcp::new(SENDER, RECEIVER, 1, 2).syn(5).frame());
    // A large datagram: 548 bytes of it, so the error is 576 bytes long.
    check_unreachable(RejectWith::PortUnreachable, 3, udp_frame(SENDER, RECEIVER, 5000, 53, 1400));
}

#[test]
fn short_payload_is_quoted_whole() {
    let udp = udp_frame(SENDER, RECEIVER, 5000, 53, 0);
    let mut received = udp.clone();
    let (_, sink) = reject(&mut received, RejectWith::PortUnreachable);
    let ip = Ipv4Packet::new_checked(&sink.frames[0].1[ETH_LEN..]).unwrap();
    assert_eq!(ip.payload().len(), 8 + 28);
}
