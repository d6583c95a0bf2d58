//! The body of the `rules_parse` fuzz target, shared with the stable test
//! harness `tests/rules_fuzz.rs`: compile any bytes, and read any bytes as
//! an image; neither may panic.

use unifw_core::flow::{Chain, CtState, PacketKey};

use super::compiler::compile;
use unifw_core::image::Image;

const INCLUDED: &[u8] =
    b"*filter\n:FORWARD DROP [0:0]\n-A FORWARD -s 10.1.0.0/24 -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";

/// The body of the `rules_include` fuzz target: `data` is up to eight
/// files separated by NUL bytes (`f0.rules` is the main one), which may
/// include each other in any graph (cycles, fan-outs, missing files). The
/// compiler must end without a panic and follow at most
/// [`MAX_INCLUDES`](super::limits::MAX_INCLUDES) includes.
pub fn fuzz_includes(data: &[u8]) {
    let files: alloc::vec::Vec<&[u8]> = data.split(|&b| b == 0).take(8).collect();
    let mut loads = 0usize;
    let mut load = |p: &str| {
        loads += 1;
        let i = p.strip_prefix('f').and_then(|r| r.strip_suffix(".rules")).and_then(|n| n.parse::<usize>().ok());
        match i.and_then(|i| files.get(i)) {
            Some(text) => Ok(text.to_vec()),
            None => Err("absent".into()),
        }
    };
    let main = files.first().copied().unwrap_or(&[]);
    let _ = compile("f0.rules", main, &mut load);
    assert!(loads <= super::limits::MAX_INCLUDES, "{loads} includes followed");
}

/// Feeds `data` to the compiler (as a rules file) and to the image reader.
pub fn fuzz_one(data: &[u8]) {
    let mut load = |p: &str| {
        if p.len().is_multiple_of(2) {
            Ok(INCLUDED.to_vec())
        } else {
            Err("absent".into())
        }
    };
    if let Ok(c) = compile("fuzz.rules", data, &mut load) {
        if let Ok(image) = Image::from_bytes(&c.image) {
            exercise(&image, data);
        }
    }
    if let Ok(image) = Image::from_bytes(data) {
        exercise(&image, data);
    }
}

fn exercise(image: &Image, data: &[u8]) {
    let word = |i: usize| data.get(i..i + 4).map_or(0x0a01_0002, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    for (i, p) in [6u8, 17, 1, 47].into_iter().enumerate() {
        let key = PacketKey {
            proto: p,
            src: word(i * 4),
            dst: word(i * 4 + 16),
            src_port: word(i) as u16,
            dst_port: (word(i + 2) >> 8) as u16,
            icmp_type: 8,
            icmp_code: 0,
            in_if: i as u8,
            out_if: 1,
            state: CtState::New,
            extra: Default::default(),
        };
        for chain in [Chain::Input, Chain::Forward] {
            let v = image.classify(chain, &key);
            if let Some(r) = v.rule {
                let _ = image.rule_line(r);
            }
        }
    }
    let _ = (image.interfaces().count(), image.routes().count(), image.conntrack_capacity());
}
