//! cargo-fuzz target: the rules compiler and the image reader on any bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| unifw_compiler::fuzz_one(data));
