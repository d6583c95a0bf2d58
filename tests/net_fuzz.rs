//! Deterministic mini-fuzz of the whole packet path, beside the cargo-fuzz
//! target `packet_path` that scripts/test runs: ~100 000 random and mutated real frames through parse,
//! conntrack, classification, rewrite and ICMP generation, asserting no
//! panic, well-formed output and bounded tables. Also writes and replays
//! the seed corpus in `fuzz/seeds/packet_path/`.

mod net_common;
mod net_fuzz_driver;

use net_common::*;
use net_fuzz_driver::Harness;
use smoltcp::wire::{ArpOperation, TcpControl};
use unifw_core::net::DropReason;

/// xorshift64*: tiny, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Real frames (as a host would send them), with their input interface.
fn seed_frames() -> Vec<(u8, Vec<u8>)> {
    let c = Tcp::new(SENDER, RECEIVER, 40000, 80);
    let s = Tcp::new(RECEIVER, SENDER, 80, 40000);
    let udp = udp_frame(SENDER, RECEIVER, 5000, 53, 1200);
    let mut frames = vec![
        (0, arp_frame(ArpOperation::Request, SENDER_MAC, SENDER, [0; 6], FW0)),
        (1, arp_frame(ArpOperation::Reply, RECEIVER_MAC, RECEIVER, FW1_MAC, FW1)),
        (1, arp_frame(ArpOperation::Request, RECEIVER_MAC, RECEIVER, [0; 6], FW1)),
        (0, echo_frame(SENDER, RECEIVER, true, 9, 1, 64)),
        (1, echo_frame(RECEIVER, SENDER, false, 9, 1, 64)),
        (0, echo_frame(SENDER, FW0, true, 9, 2, 64)),
        (0, c.syn(100).frame()),
        (1, s.control(TcpControl::Syn).ack(5000, 101).frame()),
        (0, c.ack(101, 5001).payload(100).frame()),
        (1, s.control(TcpControl::Fin).ack(5001, 201).frame()),
        (0, c.control(TcpControl::Rst).ack(201, 5002).frame()),
        (0, c.syn(7).ttl(1).frame()),
        (0, udp.clone()),
        (1, udp_frame(RECEIVER, SENDER, 53, 5000, 40)),
        (0, udp_frame(SENDER, 0x0808_0808, 5000, 53, 40)),
        (0, fragment_of(&udp, 0, true, 600)),
    ];
    let mut tail = udp[..ETH_LEN + 20].to_vec();
    tail.extend_from_slice(&udp[ETH_LEN + 20 + 600..]);
    frames.push((0, fragment_of_at(tail, 600, false)));
    // Trains held until whole: a middle piece, one overlapping the first,
    // and a TCP first fragment with its rest.
    let piece = |start: usize, end: usize, more: bool| {
        let mut frame = udp[..ETH_LEN + 20].to_vec();
        frame.extend_from_slice(&udp[ETH_LEN + 20 + start..ETH_LEN + 20 + end]);
        fragment_of_at(frame, start as u16, more)
    };
    frames.push((0, piece(600, 1000, true)));
    frames.push((0, piece(592, 1000, true)));
    let tcp = c.ack(101, 5001).payload(300).frame();
    frames.push((0, fragment_of(&tcp, 0, true, 160)));
    let mut rest = tcp[..ETH_LEN + 20].to_vec();
    rest.extend_from_slice(&tcp[ETH_LEN + 20 + 160..]);
    frames.push((0, fragment_of_at(rest, 160, false)));
    // IP options: record route, timestamp, a source route, a malformed
    // pointer; and spoofed sources (the firewall's own, the other side's).
    for options in [&[7u8, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0][..], &[68, 12, 5, 1], &[131, 7, 4, 10, 2, 0, 9], &[7, 7, 3]] {
        frames.push((0, with_options(&udp_frame(SENDER, RECEIVER, 5000, 53, 40), options)));
    }
    let mut spoofed = udp_frame(FW1, RECEIVER, 5000, 53, 40);
    spoofed[..12].copy_from_slice(&udp[..12]);
    frames.push((0, spoofed));
    frames
}

fn fragment_of_at(mut frame: Vec<u8>, offset: u16, more: bool) -> Vec<u8> {
    let len = (frame.len() - ETH_LEN) as u16;
    let mut packet = smoltcp::wire::Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..]);
    packet.set_total_len(len);
    packet.set_frag_offset(offset);
    packet.set_more_frags(more);
    packet.fill_checksum();
    frame
}

/// Encodes frames as one fuzz input (the harness's record format).
fn record(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (in_if, frame) in frames {
        out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        out.extend_from_slice(&[*in_if, 1, 3]);
        out.extend_from_slice(frame);
    }
    out
}

fn seed_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/packet_path")
}

fn mutate(rng: &mut Rng, frame: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 | 1 if !frame.is_empty() => {
                let at = rng.below(frame.len());
                frame[at] ^= 1 << rng.below(8);
            }
            2 if !frame.is_empty() => {
                let at = rng.below(frame.len());
                frame[at] = [0, 0xff, 1, 5, 0x45, 0x80][rng.below(6)];
            }
            3 => {
                let len = rng.below(frame.len() + 1);
                frame.truncate(len);
            }
            4 => frame.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            _ if frame.len() > ETH_LEN + 20 => {
                // Mutate inside the IP/L4 headers, then often repair the IP
                // checksum so the deeper layers see the mutation.
                let at = ETH_LEN + rng.below(frame.len() - ETH_LEN).min(60);
                frame[at] = rng.next() as u8;
            }
            _ => {}
        }
    }
    if rng.below(2) == 0 && frame.len() >= ETH_LEN + 20 {
        let ihl = usize::from(frame[ETH_LEN] & 0x0f) * 4;
        if ihl >= 20 && frame.len() >= ETH_LEN + ihl {
            frame[ETH_LEN + 10] = 0;
            frame[ETH_LEN + 11] = 0;
            let sum = unifw_core::net::checksum::checksum(&frame[ETH_LEN..ETH_LEN + ihl]);
            frame[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&sum.to_be_bytes());
        }
    }
}

#[test]
fn mini_fuzz_packet_path() {
    let seeds = seed_frames();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut harness = Harness::new();
    let iterations = 100_000;
    for i in 0..iterations {
        let (in_if, mut frame) = if rng.below(10) < 3 {
            let len = rng.below(200);
            let mut frame: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if frame.len() >= 14 && rng.below(2) == 0 {
                frame[12..14].copy_from_slice(&[0x08, 0x00]);
            }
            (rng.below(4) as u8, frame)
        } else {
            let (in_if, frame) = &seeds[rng.below(seeds.len())];
            let mut frame = frame.clone();
            if rng.below(4) != 0 {
                mutate(&mut rng, &mut frame);
            }
            (*in_if, frame)
        };
        let step = [0, 1, 10, 1000, 31_000][rng.below(5)];
        harness.run(in_if, &mut frame, (i % 256) as u8, step);
    }
    let counters = harness.dataplane.counters();
    let drops: u64 = counters.interfaces.iter().map(|c| c.total_drops()).sum();
    let forwarded: u64 = counters.interfaces.iter().map(|c| c.forwarded_out).sum();
    println!("drops {drops} forwarded {forwarded} generated {}", harness.sink.frames);
    assert!(drops > 10_000 && forwarded > 1_000, "the fuzz reaches both outcomes");
}

/// The same with rules that translate: SNAT (a small port range, soon
/// exhausted), MASQUERADE and DNAT on the paths of forwarded packets,
/// replies, ICMP errors and fragments.
#[test]
fn mini_fuzz_packet_path_with_nat() {
    let seeds = seed_frames();
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    let mut harness = Harness::new_nat();
    let mut max_nat = 0;
    for i in 0..50_000 {
        // Many new UDP flows (ports from a small set) to fill the SNAT range.
        let (in_if, mut frame) = if rng.below(3) == 0 {
            (0, udp_frame(SENDER, RECEIVER, 1024 + rng.below(64) as u16, 53, 8))
        } else {
            let (in_if, frame) = &seeds[rng.below(seeds.len())];
            (*in_if, frame.clone())
        };
        if rng.below(4) == 0 {
            mutate(&mut rng, &mut frame);
        }
        let step = [0, 0, 1, 10, 1000, 31_000][rng.below(6)];
        harness.run(in_if, &mut frame, (i % 256) as u8, step);
        max_nat = max_nat.max(harness.dataplane.conntrack().translations());
    }
    println!("most translations at once: {max_nat}");
    let counters = harness.dataplane.counters();
    let forwarded: u64 = counters.interfaces.iter().map(|c| c.forwarded_out).sum();
    let exhausted: u64 = counters.interfaces.iter().map(|c| c.drop_count(DropReason::NatExhausted)).sum();
    println!("forwarded {forwarded}, nat_exhausted {exhausted}, failures {}", counters.events.nat_allocation_failures);
    assert!(forwarded > 1_000, "the fuzz forwards");
    assert!(exhausted > 0 && exhausted == counters.events.nat_allocation_failures, "the SNAT range runs out, counted");
}

#[test]
fn seed_corpus_replays_cleanly() {
    let dir = seed_dir();
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("seed corpus directory") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let mut harness = Harness::new();
        harness.run_input(&data);
        Harness::new_nat().run_input(&data);
        count += 1;
    }
    assert!(count >= 6, "seed corpus present ({count} files)");
}

/// Regenerates `fuzz/seeds/packet_path/` (run with `--ignored` after
/// changing the frame builders).
#[test]
#[ignore]
fn write_seed_corpus() {
    let dir = seed_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let seeds = seed_frames();
    let files: [(&str, &[usize]); 9] = [
        ("arp", &[0, 1, 2]),
        ("icmp_echo", &[3, 4, 5]),
        ("tcp_session", &[6, 7, 8, 9, 10]),
        ("tcp_ttl1", &[11]),
        ("udp", &[12, 13, 14]),
        ("fragments", &[15, 16]),
        ("fragment_trains", &[16, 17, 15, 17, 15, 18, 20, 19, 16, 15]),
        ("everything", &[0, 2, 6, 7, 8, 3, 4, 12, 13, 15, 16, 11, 9, 10]),
        ("options_and_spoofing", &[21, 22, 23, 24, 25]),
    ];
    for (name, picks) in files {
        let frames: Vec<_> = picks.iter().map(|&i| seeds[i].clone()).collect();
        std::fs::write(dir.join(name), record(&frames)).unwrap();
    }
}
