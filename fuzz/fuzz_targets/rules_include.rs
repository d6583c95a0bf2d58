//! cargo-fuzz target: the rules compiler on graphs of files that include
//! each other (cycles, fan-outs, missing files), NUL-separated in the input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| unifw_compiler::fuzz_includes(data));
