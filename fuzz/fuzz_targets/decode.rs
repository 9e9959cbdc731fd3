//! Fuzz target: `momoko::fuzzing::decode` on arbitrary bytes (see src/fuzzing.rs for what it
//! feeds and which invariants it asserts).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| momoko::fuzzing::decode(data));
