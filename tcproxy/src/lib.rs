//! tcproxy: a TCP relay with fault injection on momoko-loop, used by momoko's tests to take
//! the server away (the Rust form of the C tcproxy Momoko's tests ran).
//!
//! This crate root only declares the modules and re-exports the public surface.
//! [`Proxy::start`] runs a relay on a thread of its own and returns a [`ProxyHandle`] whose
//! every call returns once the relay applied it: `stop`/`start` (server down, server
//! restart), faults switchable at run time and cleared by `heal` (reset, blackhole, latency
//! with jitter, bandwidth, cut after N bytes, close one direction) and counters. The `tcproxy` binary
//! runs one relay from Momoko's policy syntax (`"127.0.0.1:15432 -> 127.0.0.1:5432"`, see
//! [`Policy`]) until SIGINT or SIGTERM. The relay never buffers more than 64 KiB per
//! direction of a connection: a slow reader slows the writer on the other side.
//! [`TlsRelay`] is the other tool: a TLS end point in front of a plain-text server, for
//! what PostgreSQL 15 cannot be made to do (direct TLS that requires ALPN, a server
//! certificate that is expired or names another host).
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//!
//! let server = TcpListener::bind("127.0.0.1:0").unwrap();
//! let proxy =
//!     tcproxy::Proxy::start("127.0.0.1:0".parse().unwrap(), server.local_addr().unwrap())
//!         .unwrap();
//! let mut client = TcpStream::connect(proxy.local_addr()).unwrap();
//! let (mut upstream, _) = server.accept().unwrap();
//! upstream.write_all(b"hello").unwrap();
//! let mut buf = [0; 5];
//! client.read_exact(&mut buf).unwrap();
//! assert_eq!(&buf, b"hello");
//!
//! proxy.stop(); // the relayed connection is closed, new connects are refused
//! assert_eq!(client.read(&mut buf).unwrap(), 0);
//! assert!(TcpStream::connect(proxy.local_addr()).is_err());
//! proxy.start().unwrap(); // same address again
//! assert!(TcpStream::connect(proxy.local_addr()).is_ok());
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod handle;
mod latency;
mod policy;
mod relay;
mod tls;

pub use handle::{Direction, Proxy, ProxyHandle, Stats};
pub use policy::{Policy, PolicyError};
pub use tls::{Negotiation, TlsRelay, TlsStats};
