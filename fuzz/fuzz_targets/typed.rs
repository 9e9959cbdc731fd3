//! Fuzz target: `momoko::fuzzing::typed` on arbitrary bytes: every typed decoder (Interval,
//! Inet/Cidr, Range, the special-value wrappers, chrono, time, uuid, rust_decimal, serde
//! rows) in both formats (see src/fuzzing.rs for the invariants it asserts).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| momoko::fuzzing::typed(data));
