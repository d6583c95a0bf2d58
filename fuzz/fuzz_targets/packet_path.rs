//! Fuzzes the data plane's packet path with sequences of arbitrary frames.
//!
//! Input format (shared with `tests/net_fuzz.rs`): records of
//! `[len_hi, len_lo, in_if, selector, step, frame bytes...]`; `selector`
//! steers the fake classifier and `step` advances the clock, so one input
//! can open, use and tear down flows. The harness asserts well-formed
//! output frames and bounded tables after every frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/net_fuzz_driver/mod.rs"]
mod net_fuzz_driver;

fuzz_target!(|data: &[u8]| {
    let mut harness = net_fuzz_driver::Harness::new();
    harness.run_input(data);
});
