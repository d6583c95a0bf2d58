//! cargo-fuzz target: the rules compiler and the image reader on any bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| unifw::rules::fuzz_one(data));
