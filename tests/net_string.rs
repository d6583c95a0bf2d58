//! `-m string` through the data plane with compiled iptables-save rules:
//! the pattern is searched in the packet from its IP header, as Linux's
//! `xt_string` does, and a fragmented datagram is searched once whole.

mod net_common;

use net_common::*;
use unifw_core::image::Image;
use unifw_core::net::{Disposition, DropReason, VecSink};

fn compiled(ipt: &str) -> Vec<u8> {
    let text = format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{ipt}COMMIT\n");
    unifw_compiler::compile("t.ipt", text.as_bytes(), &mut |p| Err(p.into())).unwrap_or_else(|d| panic!("{d}")).image
}

/// A UDP datagram frame from the sender carrying `payload` (at IP byte 28).
fn udp_with(payload: &[u8]) -> Vec<u8> {
    let mut frame = udp_frame(SENDER, RECEIVER, 5000, 53, payload.len());
    frame[ETH_LEN + 28..].copy_from_slice(payload);
    frame[ETH_LEN + 26..ETH_LEN + 28].copy_from_slice(&[0, 0]); // no UDP checksum
    frame
}

fn send(image: &Image, frames: &[Vec<u8>]) -> Vec<Disposition> {
    send_counting(image, frames).0
}

/// The dispositions, and how many frames left by eth1 (a datagram in
/// fragments leaves, or not, once whole).
fn send_counting(image: &Image, frames: &[Vec<u8>]) -> (Vec<Disposition>, usize) {
    let mut dp = lab_resolved(64);
    let mut sink = VecSink::default();
    let got = frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            dp.handle_frame(0, 0, &mut f, image, &mut sink)
        })
        .collect();
    (got, sink.frames.iter().filter(|(out_if, _)| *out_if == 1).count())
}

fn passed(d: Disposition) -> bool {
    matches!(d, Disposition::Forward { .. } | Disposition::Queued)
}

#[test]
fn a_datagram_holding_the_pattern_is_dropped() {
    let bytes = compiled("-A FORWARD -p udp -m string --algo bm --string \"facebook.com\" -j DROP\n");
    let image = Image::from_bytes(&bytes).unwrap();
    let hit = udp_with(b"\x08facebook\x03com..www.facebook.com.");
    assert_eq!(send(&image, &[hit]), [Disposition::Drop(DropReason::RuleDrop)]);
    assert!(passed(send(&image, &[udp_with(b"\x08facebook\x03com")])[0]));
}

#[test]
fn from_and_to_count_from_the_ip_header() {
    // "XYZ" at IP bytes 28..31: found in [28, 31), not in [0, 30) nor from 29.
    let bytes = compiled(
        "-A FORWARD -p udp -m string --algo kmp --string XYZ --to 30 -j DROP\n\
         -A FORWARD -p udp -m string --algo kmp --string XYZ --from 29 -j DROP\n\
         -A FORWARD -p udp -m string --algo bm --string xyz --icase --from 28 --to 31 -j REJECT\n",
    );
    let image = Image::from_bytes(&bytes).unwrap();
    assert_eq!(send(&image, &[udp_with(b"XYZ")]), [Disposition::Drop(DropReason::RuleReject)]);
    assert_eq!(send(&image, &[udp_with(b"-XYZ")]), [Disposition::Drop(DropReason::RuleDrop)], "from 29");
    assert!(passed(send(&image, &[udp_with(b"-xyz")])[0]), "at 29..32: past the third rule's --to 31");
}

#[test]
fn a_fragmented_datagram_is_searched_whole() {
    let bytes = compiled("-A FORWARD -p udp -m string --algo bm --string NEEDLE -j DROP\n");
    let image = Image::from_bytes(&bytes).unwrap();
    // The pattern straddles the two fragments (UDP bytes 0..16 | 16..).
    let mut payload = vec![b'.'; 40];
    payload[5..11].copy_from_slice(b"NEEDLE");
    let whole = udp_with(&payload);
    let train = [piece(&whole, 0, 16, true), piece(&whole, 16, 48, false)];
    let dropped = vec![Disposition::Queued, Disposition::Drop(DropReason::RuleDrop)];
    assert_eq!(send_counting(&image, &train), (dropped, 0), "dropped whole");
    // The same train without the pattern leaves, both fragments.
    let clean = train.map(|mut f| {
        for b in f.iter_mut().skip(ETH_LEN + 20) {
            if b"NEEDLE".contains(b) {
                *b = b'.';
            }
        }
        f
    });
    assert_eq!(send_counting(&image, &clean), (vec![Disposition::Queued; 2], 2));
}
