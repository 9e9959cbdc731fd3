//! Fuzz target: `momoko::fuzzing::cert_hash` on arbitrary bytes (see src/fuzzing.rs for what it
//! feeds and which invariants it asserts).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| momoko::fuzzing::cert_hash(data));
