//! Fuzz target: `momoko::fuzzing::ssl_negotiation` on arbitrary bytes: the server's answer
//! to the SSLRequest and its side of the TLS handshake (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| momoko::fuzzing::ssl_negotiation(data));
