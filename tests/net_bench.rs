//! A small host benchmark of `Dataplane::handle_frame` (ignored by default):
//! `cargo test --release --target x86_64-unknown-linux-gnu --test net_bench -- --ignored --nocapture`.

mod net_common;

use std::hint::black_box;
use std::time::Instant;

use net_common::*;
use smoltcp::wire::TcpControl;
use unifw_core::flow::{Chain, PacketKey, Verdict};
use unifw_core::net::{Classifier, Dataplane, Disposition, NullSink};

/// Median ns per call of `handle_frame` on copies of `template` (only the
/// 34 header bytes the forwarder rewrites are restored between calls).
fn time_forward(dp: &mut Dataplane, template: &[u8], rounds: usize) -> f64 {
    time_forward_with(dp, template, rounds, &accept_all)
}

fn time_forward_with(dp: &mut Dataplane, template: &[u8], rounds: usize, classifier: &dyn Classifier) -> f64 {
    let mut frame = template.to_vec();
    let mut samples = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        for _ in 0..rounds {
            frame[..34].copy_from_slice(&template[..34]);
            let d = dp.handle_frame(1, 0, black_box(&mut frame), classifier, &mut NullSink);
            assert!(matches!(d, Disposition::Forward { .. }));
        }
        samples.push(start.elapsed().as_nanos() as f64 / rounds as f64);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[3]
}

fn established(dp: &mut Dataplane, port: u16) {
    let c = Tcp::new(SENDER, RECEIVER, port, 80);
    let s = Tcp::new(RECEIVER, SENDER, 80, port);
    for (in_if, mut frame) in
        [(0, c.syn(100).frame()), (1, s.control(TcpControl::Syn).ack(5000, 101).frame()), (0, c.ack(101, 5001).frame())]
    {
        let d = dp.handle_frame(0, in_if, &mut frame, &accept_all, &mut NullSink);
        assert!(matches!(d, Disposition::Forward { .. }));
    }
}

#[test]
#[ignore]
fn bench_forward_established_tcp() {
    let mut dp = lab_resolved(65_536);
    established(&mut dp, 40_000);
    // 1448-byte segments: the window is ~64 kB, so stay at one in-window sequence.
    let data = Tcp::new(SENDER, RECEIVER, 40_000, 80).ack(101, 5001).payload(1448).frame();
    let one_flow = time_forward(&mut dp, &data, 200_000);
    for port in 1..10_000u16 {
        established(&mut dp, port);
    }
    let many_flows = time_forward(&mut dp, &data, 200_000);
    let udp = udp_frame(SENDER, RECEIVER, 5000, 6000, 1472);
    let udp_new = time_forward(&mut dp, &udp, 200_000);
    println!("handle_frame, forwarded established TCP 1500 B: {one_flow:.0} ns (1 flow), {many_flows:.0} ns (10k flows); UDP same flow: {udp_new:.0} ns");
}

/// 64-byte frames (18-byte UDP payloads, as `scripts/bench-forward`'s
/// `small`) of one flow. Under callgrind it gives instructions per frame by
/// function (README, "Where a 64-byte frame's time goes"):
/// `valgrind --tool=callgrind target/x86_64-unknown-linux-gnu/release/deps/net_bench-* --ignored --exact bench_forward_small_udp`
#[test]
#[ignore]
fn bench_forward_small_udp() {
    let mut dp = lab_resolved(65_536);
    let udp = udp_frame(SENDER, RECEIVER, 5000, 6000, 18);
    assert_eq!(udp.len(), 60);
    let ns = time_forward_with(&mut dp, &udp, 20_000, &AcceptWithoutResiduals);
    println!("handle_frame, forwarded 64-byte UDP frames of one flow: {ns:.0} ns");
}

/// Accepts everything, like a compiled image without residual matches
/// (`-m addrtype`, `-m mac`, ...): the data path then skips `KeyExtra`.
struct AcceptWithoutResiduals;

impl Classifier for AcceptWithoutResiduals {
    fn classify(&self, chain: Chain, key: &PacketKey) -> Verdict {
        accept_all(chain, key)
    }
    fn wants_extra(&self) -> bool {
        false
    }
}
