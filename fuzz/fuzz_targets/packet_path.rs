//! Fuzzes the data plane's packet path with sequences of arbitrary frames.
//!
//! Input format (shared with `tests/net_fuzz.rs`): records of
//! `[len_hi, len_lo, in_if, selector, step, frame bytes...]`; `selector`
//! steers the fake classifier and `step` advances the clock, so one input
//! can open, use and tear down flows. The harness asserts well-formed
//! output frames and bounded tables after every frame, once with plain
//! rules and once with rules that translate addresses (NAT).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/net_fuzz_driver/mod.rs"]
mod net_fuzz_driver;

fuzz_target!(|data: &[u8]| {
    // The same frames without and with address translation.
    net_fuzz_driver::Harness::new().run_input(data);
    net_fuzz_driver::Harness::new_nat().run_input(data);
});
