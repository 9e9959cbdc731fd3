//! The TLS-terminating relay: direct TLS that requires ALPN `postgresql` as PostgreSQL 17
//! does, PostgreSQL's own SSLRequest negotiation, and plain text to the upstream. Uses the
//! certificates of momoko-testpg's shared server (skipped without them).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tcproxy::{Negotiation, TlsRelay, TlsStats};

fn certs() -> Option<&'static momoko_testpg::TlsInfo> {
    let t = momoko_testpg::TestServer::shared().tls.as_ref();
    if t.is_none() {
        eprintln!("no momoko-testpg certificates (MOMOKO_TEST_TLS_DIR unset): skipped");
    }
    t
}

/// An upstream that echoes every byte back, one connection at a time.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn relay(t: &momoko_testpg::TlsInfo, negotiation: Negotiation) -> TlsRelay {
    TlsRelay::start(
        "127.0.0.1:0".parse().unwrap(),
        echo_server(),
        &std::fs::read(&t.server_cert).unwrap(),
        &std::fs::read(&t.server_key).unwrap(),
        negotiation,
    )
    .unwrap()
}

fn client_config(t: &momoko_testpg::TlsInfo, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&t.ca_file).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

fn tls_client(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, TcpStream> {
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    StreamOwned::new(ClientConnection::new(config, name).unwrap(), tcp)
}

fn echo_once(s: &mut StreamOwned<ClientConnection, TcpStream>) -> std::io::Result<Vec<u8>> {
    s.write_all(b"through the relay")?;
    s.flush()?;
    let mut got = vec![0; 17];
    s.read_exact(&mut got)?;
    Ok(got)
}

#[test]
fn direct_tls_with_alpn_postgresql_is_relayed_in_plain_text() {
    let Some(t) = certs() else { return };
    let relay = relay(t, Negotiation::Direct);
    let tcp = TcpStream::connect(relay.local_addr()).unwrap();
    let mut s = tls_client(tcp, client_config(t, &[b"postgresql"]));
    assert_eq!(echo_once(&mut s).unwrap(), b"through the relay");
    assert_eq!(s.conn.alpn_protocol(), Some(&b"postgresql"[..]));
    let st = relay.stats();
    assert_eq!((st.accepted, st.established, st.refused_alpn), (1, 1, 0));
}

#[test]
fn direct_tls_without_alpn_gets_the_no_application_protocol_alert() {
    let Some(t) = certs() else { return };
    let relay = relay(t, Negotiation::Direct);
    let tcp = TcpStream::connect(relay.local_addr()).unwrap();
    let mut s = tls_client(tcp, client_config(t, &[]));
    let err = echo_once(&mut s).unwrap_err();
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a TLS error: {err:?}"));
    assert_eq!(
        inner,
        &rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
    );
    let st = relay.stats();
    assert_eq!(
        st,
        TlsStats {
            accepted: 1,
            established: 0,
            refused_alpn: 1,
            failed: 0
        }
    );
}

#[test]
fn postgres_negotiation_answers_s_then_relays_and_refuses_anything_else_with_n() {
    let Some(t) = certs() else { return };
    let relay = relay(t, Negotiation::Postgres);
    let mut tcp = TcpStream::connect(relay.local_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .unwrap();
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"S");
    let mut s = tls_client(tcp, client_config(t, &[]));
    assert_eq!(echo_once(&mut s).unwrap(), b"through the relay");

    // A startup packet instead of an SSLRequest: refused as a TLS-only server refuses.
    let mut plain = TcpStream::connect(relay.local_addr()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain.write_all(&[0, 0, 0, 8, 0, 3, 0, 0]).unwrap();
    let mut rest = Vec::new();
    plain.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"N");
    assert_eq!(relay.stats().established, 1);
}

#[test]
fn a_relay_refuses_a_key_that_is_not_pem_with_a_clear_error() {
    let Some(t) = certs() else { return };
    let err = TlsRelay::start(
        "127.0.0.1:0".parse().unwrap(),
        echo_server(),
        &std::fs::read(&t.server_cert).unwrap(),
        b"not a key",
        Negotiation::Direct,
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().starts_with("private key:"), "{err}");
}
