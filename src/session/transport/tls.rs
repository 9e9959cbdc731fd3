//! TLS for a session, on rustls 0.23 with the process's crypto provider (ring unless the
//! application installed another): libpq's sslmode decided per
//! connect attempt, the rustls client configuration built from libpq's keywords, and the
//! attributes libpq's `PQsslAttribute` reports.
//!
//! It owns the trust decisions (which verifier each sslmode gets, which files are read and
//! how a client key's permissions are checked) and the two exchanges before PostgreSQL's own
//! bytes: the answer to the SSLRequest and the handshake, each run on whatever non-blocking
//! `Read + Write` it is handed (the transport's socket, or a scripted exchange in tests and
//! fuzzing). It never owns a socket and never keeps state between calls: the transport
//! (`transport/mod.rs`) holds the socket and the rustls session together. Every refusal is an
//! error that names the file, the mode or the certificate problem; nothing here blocks longer
//! than reading a few small files.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::conninfo::{Config, RootCert, SslMode, TlsSettings, TlsVersion};
use crate::error::Error;

/// Whether and how one connect attempt uses TLS.
pub(crate) enum Plan {
    /// Plain text (sslmode=disable, a Unix socket, or allow's first try).
    Plain,
    /// An SSLRequest, then TLS with this configuration; `fallback` allows plain text when
    /// the server answers `N` (prefer, allow's second try).
    Tls {
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        fallback: bool,
        mode: SslMode,
        /// sslnegotiation=direct: the handshake at once, no SSLRequest, ALPN `postgresql`.
        direct: bool,
    },
}

/// The ALPN protocol of direct TLS (PostgreSQL 17).
pub(crate) const ALPN: &[u8] = b"postgresql";

/// The process's rustls CryptoProvider: the one the application installed
/// (`CryptoProvider::install_default`, aws-lc-rs for post-quantum key exchange, say), else the
/// one rustls's crate features name, ring (momoko's `tls` feature turns it on), which rustls
/// then installs as the process default. rustls 0.23.48 deprecated naming ring's provider
/// directly (`ring::default_provider()`), for its lack of post-quantum key exchange.
fn provider() -> Result<Arc<CryptoProvider>, Error> {
    if let Some(p) = CryptoProvider::get_default() {
        return Ok(p.clone());
    }
    // With two providers compiled in (another crate turned on rustls's aws_lc_rs too) and
    // none installed, rustls cannot choose and panics: that is the application's decision,
    // so it is asked for in an error instead.
    std::panic::catch_unwind(|| ClientConfig::builder().crypto_provider().clone()).map_err(|_| {
        Error::usage(
            "rustls has more than one crypto provider compiled in and none installed: call \
             rustls::crypto::CryptoProvider::install_default() before connecting with TLS",
        )
    })
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::connection(format!("{what}: {e}"))
}

/// The rustls client configuration of one connection configuration (a pool's template, a
/// connection's options), built on first use and then shared by every connection made from
/// it, their reconnects and their cancel requests: one session cache for all of them, so a
/// reconnect resumes the TLS session (TLS 1.3 tickets, TLS 1.2 session ids) where the
/// server allows it. It is rebuilt when a setting it was built from changed, or one of
/// its files (sslrootcert, sslcert, sslkey) changed on disk, as libpq reads them per connect.
#[derive(Clone, Default)]
pub(crate) struct ConfigCache(Arc<Mutex<Option<Cached>>>);

/// A client configuration with what it was built from.
struct Cached {
    key: CacheKey,
    config: Arc<ClientConfig>,
    /// The sslmode in force (a root file makes the weaker modes verify).
    effective: SslMode,
}

/// Everything the client configuration depends on.
#[derive(PartialEq)]
struct CacheKey {
    mode: SslMode,
    tls: TlsSettings,
    files: Vec<Option<FileStamp>>,
}

/// What says a file changed: its inode, size and modification time.
#[derive(PartialEq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        inode: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
    })
}

impl std::fmt::Debug for ConfigCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = self.0.lock().map(|c| c.is_some()).unwrap_or(false);
        f.debug_struct("ConfigCache")
            .field("built", &built)
            .finish()
    }
}

impl ConfigCache {
    /// The client configuration for `config`, from the cache when nothing it depends on
    /// changed. A failure is not kept: the next attempt tries again.
    fn get(&self, config: &Config) -> Result<(Arc<ClientConfig>, SslMode), Error> {
        let tls = config.get_tls();
        let files = [
            match tls.root_cert() {
                RootCert::File { path, .. } => Some(path.as_path()),
                _ => None,
            },
            tls.cert().map(|(p, _)| p),
            tls.key().map(|(p, _)| p),
        ];
        let key = CacheKey {
            mode: config.get_ssl_mode(),
            tls: tls.clone(),
            files: files.iter().map(|p| p.and_then(stamp)).collect(),
        };
        // A poisoned lock only means another thread panicked while building: rebuild.
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref().filter(|c| c.key == key) {
            return Ok((c.config.clone(), c.effective));
        }
        let (config, effective) = client_config(config)?;
        *slot = Some(Cached {
            key,
            config: config.clone(),
            effective,
        });
        Ok((config, effective))
    }
}

/// How many TLS sessions one client configuration remembers for resumption (per server
/// name; rustls's default too).
const RESUMPTION_SESSIONS: usize = 256;

/// The plan for a TCP attempt to `host` under `config`, its client configuration from
/// `cache`. `second_try` is the same target tried again because the server refused the
/// first attempt's choice: allow's TLS try after plain text was refused, prefer's
/// plain-text try after the server refused the TLS session.
pub(crate) fn plan(
    config: &Config,
    host: &str,
    second_try: bool,
    cache: &ConfigCache,
) -> Result<Plan, Error> {
    let want = config.get_ssl_mode();
    let fallback = match want {
        SslMode::Disable => return Ok(Plan::Plain),
        SslMode::Allow if !second_try => return Ok(Plan::Plain),
        SslMode::Prefer if second_try => return Ok(Plan::Plain),
        SslMode::Prefer => true,
        _ => false,
    };
    let (client, effective) = cache.get(config)?;
    let direct = config.get_tls().negotiation() == crate::conninfo::SslNegotiation::Direct;
    // The session cache is keyed by server name: each host of a list resumes its own.
    let name = ServerName::try_from(host.to_owned())
        .or_else(|_| ServerName::try_from("localhost".to_owned()))
        .map_err(|e| tls_error("invalid host name for TLS", e))?;
    Ok(Plan::Tls {
        config: client,
        name,
        fallback,
        mode: effective,
        direct,
    })
}

/// Builds the client configuration `config`'s TLS settings call for, and the sslmode in
/// force.
fn client_config(config: &Config) -> Result<(Arc<ClientConfig>, SslMode), Error> {
    let want = config.get_ssl_mode();
    let tls = config.get_tls();
    // Which certificates are trusted, and the sslmode that is really in force: a root
    // certificate file present makes the weaker modes verify as verify-ca, as libpq does.
    let roots = match tls.root_cert() {
        RootCert::System => Some(system_roots()?),
        RootCert::File { path, .. } => {
            if path.exists() {
                Some(file_roots(path)?)
            } else if matches!(want, SslMode::VerifyCa | SslMode::VerifyFull) {
                return Err(Error::connection(format!(
                    "root certificate file \"{}\" does not exist\nEither provide the file, \
                     use the system's trusted roots with sslrootcert=system, or change \
                     sslmode to disable server certificate verification.",
                    path.display()
                )));
            } else {
                None
            }
        }
        RootCert::None => {
            if matches!(want, SslMode::VerifyCa | SslMode::VerifyFull) {
                return Err(Error::connection(
                    "could not get home directory to locate root certificate file\nEither \
                     provide the file, use the system's trusted roots with sslrootcert=system, \
                     or change sslmode to disable server certificate verification.",
                ));
            }
            None
        }
    };
    let effective = match (want, &roots) {
        (SslMode::Require | SslMode::Prefer | SslMode::Allow, Some(_)) => SslMode::VerifyCa,
        (m, _) => m,
    };
    let provider = provider()?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::V1_2, &rustls::version::TLS12),
        (TlsVersion::V1_3, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| *v >= tls.min_version() && tls.max_version().is_none_or(|max| *v <= max))
    .map(|(_, p)| p)
    .collect();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| tls_error("cannot configure TLS", e))?;
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        Some(roots) => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| tls_error("cannot configure certificate verification", e))?;
            match effective {
                SslMode::VerifyFull => webpki,
                _ => Arc::new(IgnoreName(webpki)),
            }
        }
        None => Arc::new(NoVerification(provider.clone())),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut client = match client_identity(config)? {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_error("the client certificate and key do not match", e))?,
        None => builder.with_no_client_auth(),
    };
    // SNI for host names only, never for address literals (rustls never sends one for an
    // IP address either).
    client.enable_sni = tls.sni();
    if tls.negotiation() == crate::conninfo::SslNegotiation::Direct {
        client.alpn_protocols = vec![ALPN.to_vec()];
    }
    client.resumption = Resumption::in_memory_sessions(RESUMPTION_SESSIONS);
    Ok((Arc::new(client), effective))
}

fn system_roots() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "the store is empty".to_owned());
        return Err(Error::connection(format!(
            "sslrootcert=system: no trusted root certificate could be loaded ({why})"
        )));
    }
    Ok(roots)
}

fn file_roots(path: &Path) -> Result<RootCertStore, Error> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::connection(format!(
            "could not read root certificate file \"{}\": {e}",
            path.display()
        ))
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(&e))?;
        roots.add(cert).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(bad(&"no certificate in the file"));
    }
    Ok(roots)
}

/// The client certificate chain and key: the files named, or the defaults when both exist.
#[allow(clippy::type_complexity)]
fn client_identity(
    config: &Config,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, Error> {
    let tls = config.get_tls();
    let Some((cert, cert_named)) = tls.cert() else {
        return Ok(None);
    };
    if !cert.exists() {
        if cert_named {
            return Err(Error::connection(format!(
                "could not open certificate file \"{}\": No such file or directory",
                cert.display()
            )));
        }
        return Ok(None);
    }
    let Some((key, _)) = tls.key() else {
        return Err(Error::connection(
            "a client certificate was given but no key file (sslkey)",
        ));
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::connection(format!(
                "could not read certificate file \"{}\": {e}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(Error::connection(format!(
            "could not read certificate file \"{}\": no certificate in it",
            cert.display()
        )));
    }
    check_key_permissions(key)?;
    let text = std::fs::read_to_string(key).map_err(|e| {
        Error::connection(format!(
            "could not open private key file \"{}\": {e}",
            key.display()
        ))
    })?;
    if text.contains("ENCRYPTED") {
        return Err(Error::connection(format!(
            "private key file \"{}\" is encrypted: momoko reads only unencrypted keys \
             (sslpassword is not supported)",
            key.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| {
        Error::connection(format!(
            "could not load private key file \"{}\": {e}",
            key.display()
        ))
    })?;
    Ok(Some((chain, key_der)))
}

/// libpq refuses a key readable by others: 0600 or less when owned by the user, 0640 or
/// less when owned by root.
fn check_key_permissions(key: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key).map_err(|e| {
        Error::connection(format!(
            "could not open private key file \"{}\": {e}",
            key.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(Error::connection(format!(
            "private key file \"{}\" is not a regular file",
            key.display()
        )));
    }
    let mode = meta.mode() & 0o777;
    let too_open = if meta.uid() == 0 {
        mode & 0o037 != 0
    } else {
        mode & 0o077 != 0
    };
    if too_open {
        return Err(Error::connection(format!(
            "private key file \"{}\" has group or world access; file must have permissions \
             u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) \
             or less if owned by root",
            key.display()
        )));
    }
    Ok(())
}

/// verify-ca: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct IgnoreName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError;
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// require (with no root certificate): any certificate, but the handshake's signatures are
/// still checked, so the peer holds the key of the certificate it showed.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What the server's answer to the SSLRequest leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslAnswer {
    /// `S`: the TLS handshake comes next.
    Tls,
    /// `N` where the sslmode allows plain text: the startup packet comes next.
    Plain,
}

/// Reads the server's one-byte answer to the SSLRequest from `socket` (non-blocking: `Ok(None)`
/// when nothing has arrived). `fallback`: an `N` may continue in plain text.
pub(crate) fn read_ssl_answer<S: Read>(
    socket: &mut S,
    fallback: bool,
    mode: SslMode,
) -> Result<Option<SslAnswer>, Error> {
    let mut answer = [0u8; 1];
    let n = loop {
        match socket.read(&mut answer) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("could not receive the SSL negotiation answer", e)),
        }
    };
    if n == 0 {
        return Err(Error::connection(
            "the server closed the connection during the SSL negotiation",
        ));
    }
    match answer[0] {
        b'S' => {
            // CVE-2021-23222: nothing may follow the S before our ClientHello; bytes that
            // do were put there by someone else.
            let mut extra = [0u8; 1];
            loop {
                match socket.read(&mut extra) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Some(SslAnswer::Tls))
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(0) => {
                        return Err(Error::connection(
                            "the server closed the connection right after accepting SSL",
                        ))
                    }
                    Ok(_) => {
                        return Err(Error::protocol(
                            "received unencrypted data after SSL response (a man in the \
                             middle may be injecting data: CVE-2021-23222)",
                        ))
                    }
                    Err(e) => return Err(Error::io("the SSL negotiation failed", e)),
                }
            }
        }
        b'N' if fallback => Ok(Some(SslAnswer::Plain)),
        b'N' => Err(Error::connection(format!(
            "server does not support SSL, but SSL was required (sslmode={})",
            mode.as_str()
        ))),
        b'E' => Err(Error::connection(
            "the server answered the SSL negotiation with an error (a server older than \
             PostgreSQL 7.0, or not PostgreSQL)",
        )),
        other => Err(Error::protocol(format!(
            "received invalid response to SSL negotiation: {:?}",
            other as char
        ))),
    }
}

/// Where a handshake stands after [`drive_handshake`].
#[derive(Debug)]
pub(crate) enum Handshake {
    /// Waiting for the socket: readable, or writable when `on_write`.
    Blocked { on_write: bool },
    /// Complete and acceptable; the server's leaf certificate (DER) for channel binding.
    Done { server_cert: Option<Vec<u8>> },
}

/// Runs the TLS handshake on `socket` as far as it allows without blocking. `direct`:
/// sslnegotiation=direct, where only a server that chose ALPN `postgresql` is PostgreSQL.
pub(crate) fn drive_handshake<S: Read + Write>(
    socket: &mut S,
    conn: &mut rustls::ClientConnection,
    direct: bool,
) -> Result<Handshake, Error> {
    loop {
        while conn.wants_write() {
            match conn.write_tls(socket) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Handshake::Blocked { on_write: true })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("the TLS handshake failed", e)),
            }
        }
        if !conn.is_handshaking() {
            break;
        }
        match conn.read_tls(socket) {
            Ok(0) => {
                return Err(Error::connection(
                    "the server closed the connection during the TLS handshake",
                ))
            }
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    // Tell the server why (an alert), then give up.
                    let _ = conn.write_tls(socket);
                    return Err(Error::connection(super::tls_failure(&e)));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Handshake::Blocked { on_write: false })
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("the TLS handshake failed", e)),
        }
    }
    // Direct TLS is PostgreSQL's only if the server chose its ALPN protocol: anything else
    // may be another service on the port.
    if direct && conn.alpn_protocol() != Some(ALPN) {
        return Err(Error::connection(
            "direct TLS: the server did not select the ALPN protocol \"postgresql\" \
             (sslnegotiation=direct needs PostgreSQL 17 or later)",
        ));
    }
    let server_cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    Ok(Handshake::Done { server_cert })
}

/// libpq's `PQsslAttribute` for an established connection.
pub(crate) fn attribute(conn: &rustls::ClientConnection, name: &str) -> Option<String> {
    match name {
        "library" => Some("rustls".to_owned()),
        "protocol" => conn.protocol_version().map(|v| {
            match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
                _ => "unknown",
            }
            .to_owned()
        }),
        "cipher" => conn.negotiated_cipher_suite().map(|s| {
            let name = s.suite().as_str().unwrap_or("unknown");
            // TLS 1.3 suites by their IANA names, as OpenSSL reports them.
            name.replacen("TLS13_", "TLS_", 1)
        }),
        "key_bits" => conn.negotiated_cipher_suite().map(|s| {
            let name = format!("{:?}", s.suite());
            if name.contains("AES_128") {
                "128"
            } else {
                "256"
            }
            .to_owned()
        }),
        "compression" => Some("off".to_owned()),
        // libpq 17: the ALPN protocol chosen, empty when the server chose none.
        "alpn" => Some(
            conn.alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn the_crypto_provider_is_the_process_default() {
        let first = provider().unwrap();
        let installed = CryptoProvider::get_default().expect("installed by the first call");
        assert!(Arc::ptr_eq(&first, installed));
        assert!(Arc::ptr_eq(&provider().unwrap(), installed));
        // ring's suites, as momoko's tls feature asks for.
        assert!(!first.cipher_suites.is_empty());
        assert!(first
            .kx_groups
            .iter()
            .any(|g| g.name() == rustls::NamedGroup::X25519));
    }

    /// What a non-blocking socket shows: `arrived` in one read, then WouldBlock, or end of
    /// stream when `closed`.
    struct Arrived {
        data: Vec<u8>,
        closed: bool,
    }

    impl Read for Arrived {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return if self.closed {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data.drain(..n);
            Ok(n)
        }
    }

    impl Write for Arrived {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn answer(data: &[u8], closed: bool, fallback: bool) -> Result<Option<SslAnswer>, Error> {
        let mut s = Arrived {
            data: data.to_vec(),
            closed,
        };
        read_ssl_answer(&mut s, fallback, SslMode::Require)
    }

    #[test]
    fn an_s_alone_starts_tls_and_nothing_yet_is_not_an_answer() {
        assert_eq!(answer(b"S", false, false).unwrap(), Some(SslAnswer::Tls));
        assert_eq!(answer(b"", false, false).unwrap(), None);
    }

    #[test]
    fn bytes_after_the_s_are_refused_as_cve_2021_23222() {
        let e = answer(b"SR", false, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(e.to_string().contains("CVE-2021-23222"), "{e}");
    }

    #[test]
    fn an_n_is_plain_text_only_where_the_sslmode_falls_back() {
        assert_eq!(answer(b"N", false, true).unwrap(), Some(SslAnswer::Plain));
        let e = answer(b"N", false, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert_eq!(
            e.to_string(),
            "connection error: server does not support SSL, but SSL was required (sslmode=require)"
        );
    }

    #[test]
    fn an_e_another_byte_or_a_close_fail_with_their_reason() {
        assert!(answer(b"E", false, true)
            .unwrap_err()
            .to_string()
            .contains("older than PostgreSQL 7.0"));
        let e = answer(b"X", false, true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(
            e.to_string()
                .contains("invalid response to SSL negotiation: 'X'"),
            "{e}"
        );
        assert!(answer(b"", true, true)
            .unwrap_err()
            .to_string()
            .contains("closed the connection during the SSL negotiation"));
        assert!(answer(b"S", true, true)
            .unwrap_err()
            .to_string()
            .contains("closed the connection right after accepting SSL"));
    }

    fn client() -> rustls::ClientConnection {
        let config =
            Config::parse("host=localhost sslmode=require sslrootcert=/nonexistent/r.crt").unwrap();
        let Plan::Tls { config, name, .. } =
            plan(&config, "localhost", false, &ConfigCache::default()).unwrap()
        else {
            panic!("require plans TLS")
        };
        rustls::ClientConnection::new(config, name).unwrap()
    }

    #[test]
    fn a_handshake_waits_for_the_server_then_reports_its_alert() {
        let mut conn = client();
        let mut s = Arrived {
            data: Vec::new(),
            closed: false,
        };
        assert!(matches!(
            drive_handshake(&mut s, &mut conn, false).unwrap(),
            Handshake::Blocked { on_write: false }
        ));
        // A fatal handshake_failure alert in answer to the ClientHello.
        s.data = vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];
        let e = drive_handshake(&mut s, &mut conn, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert_eq!(
            e.to_string(),
            "connection error: the server ended the TLS handshake: HandshakeFailure"
        );
    }

    #[test]
    fn a_server_that_closes_mid_handshake_is_an_error_not_a_wait() {
        let mut conn = client();
        let mut s = Arrived {
            data: Vec::new(),
            closed: true,
        };
        let e = drive_handshake(&mut s, &mut conn, true).unwrap_err();
        assert!(e.to_string().contains("during the TLS handshake"), "{e}");
    }
}
