//! Fuzz target: `momoko::fuzzing::pgoutput` on arbitrary bytes: a replication session through
//! the CopyBoth parser, the pgoutput decoder and the feedback rule (see
//! src/replication/fuzz.rs for the input's framing and the invariants it asserts).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| momoko::fuzzing::pgoutput(data));
