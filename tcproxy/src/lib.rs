//! tcproxy: a TCP relay with fault injection, used by momoko's tests to take the server
//! away. It is built in its own issue; this crate is a placeholder until then.
