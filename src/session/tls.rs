//! TLS for a session, on rustls 0.23 with the ring provider: libpq's sslmode decided per
//! connect attempt, the rustls client configuration built from libpq's keywords, and the
//! attributes libpq's `PQsslAttribute` reports.
//!
//! It owns the trust decisions (which verifier each sslmode gets, which files are read and
//! how a client key's permissions are checked); it never touches a socket: the transport
//! (`transport.rs`) moves the bytes. Every refusal is an error that names the file, the mode or
//! the certificate problem; nothing here blocks longer than reading a few small files.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::conninfo::{Config, RootCert, SslMode, TlsVersion};
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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::connection(format!("{what}: {e}"))
}

/// The plan for a TCP attempt to `host` under `config`. `second_try` is the same target
/// tried again because the server refused the first attempt's choice: allow's TLS try after
/// plain text was refused, prefer's plain-text try after the server refused the TLS session.
pub(crate) fn plan(config: &Config, host: &str, second_try: bool) -> Result<Plan, Error> {
    let want = config.get_ssl_mode();
    let fallback = match want {
        SslMode::Disable => return Ok(Plan::Plain),
        SslMode::Allow if !second_try => return Ok(Plan::Plain),
        SslMode::Prefer if second_try => return Ok(Plan::Plain),
        SslMode::Prefer => true,
        _ => false,
    };
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
    let provider = provider();
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
    let direct = tls.negotiation() == crate::conninfo::SslNegotiation::Direct;
    if direct {
        client.alpn_protocols = vec![ALPN.to_vec()];
    }
    let name = ServerName::try_from(host.to_owned())
        .or_else(|_| ServerName::try_from("localhost".to_owned()))
        .map_err(|e| tls_error("invalid host name for TLS", e))?;
    Ok(Plan::Tls {
        config: Arc::new(client),
        name,
        fallback,
        mode: effective,
        direct,
    })
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
        _ => None,
    }
}
