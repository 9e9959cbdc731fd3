//! The certificates of the TLS test server, made afresh for every cluster (a few
//! milliseconds with ECDSA P-256 keys), and their description in [`TlsInfo`]. It owns the
//! `tls/` directory inside a cluster's directory: what is in it, under which names, owned by
//! whom and with which modes. It must never write anywhere else, nor reuse keys between
//! clusters.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::conninfo::quote;
use crate::server::{DBNAME, USER};

/// Logs in with a client certificate (pg_hba `cert`, over TLS only); the CN of
/// [`TlsInfo::client_cert`].
pub const CERT_USER: &str = "momoko_cert";
/// Password login checked with SCRAM-SHA-256, over TLS only.
pub const SCRAM_TLS_USER: &str = "momoko_scram_tls";
/// `SCRAM_TLS_USER`'s password.
pub const SCRAM_TLS_PASSWORD: &str = "scramtlspass";
/// Trust login over TLS only: plain-text logins are rejected.
pub const TLS_ONLY_USER: &str = "momoko_tls_only";
/// Trust login without TLS only: TLS logins are rejected.
pub const PLAIN_ONLY_USER: &str = "momoko_plain_only";
/// The only name in [`TlsInfo::wrong_host_cert`].
pub const WRONG_HOST_NAME: &str = "wrong.example";
/// The names the server's certificate is valid for (its subjectAltNames; the CN is the
/// first).
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// The name of the directory, in a cluster's directory, holding the certificates.
pub(crate) const TLS_DIR: &str = "tls";

/// How to reach a test server over TLS and the certificates to do it with.
///
/// Every file is PEM: certificates as `CERTIFICATE`, keys as PKCS#8 `PRIVATE KEY`
/// (ECDSA P-256). The certificates are X.509 v3 with subjectAltNames, key usages and
/// extended key usages (serverAuth or clientAuth) as webpki and OpenSSL expect; the CAs
/// are self-signed with `CA:true`. The files live in [`TlsInfo::dir`] inside the cluster's
/// directory and go away with it. Keys are mode 0600 and owned by the user who started the
/// server (who should run the tests), except [`TlsInfo::server_key`], which is owned by the
/// account the server runs as (`postgres` when started as root), as PostgreSQL demands.
///
/// The server itself uses [`TlsInfo::server_cert`] (valid for [`SERVER_NAMES`]) and trusts
/// client certificates signed by [`TlsInfo::ca_file`]. The other certificates are for
/// negative tests: against the server ([`TlsInfo::other_ca_file`],
/// [`TlsInfo::expired_client_cert`], [`TlsInfo::other_ca_client_cert`]) or for a test's own
/// TLS listener ([`TlsInfo::wrong_host_cert`], [`TlsInfo::expired_server_cert`]).
///
/// The DSNs are keyword form; later keywords override earlier ones, so a test appends
/// `user=...`, `sslmode=...`, `host=...` to change one. They connect to `hostaddr=127.0.0.1`
/// and name `host=localhost`, so that name is the one checked by `verify-full` (append
/// `host=wrong.example` to see a mismatch, or `host=127.0.0.1 hostaddr=` to check the IP
/// address SAN instead).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The directory holding every file below (`tls/` in the cluster's directory).
    pub dir: PathBuf,
    /// `ca.crt`: the CA that signed the server's certificate and the client certificates;
    /// the server's `ssl_ca_file`. `sslrootcert` for `verify-ca` and `verify-full`.
    pub ca_file: PathBuf,
    /// `ca.key`: that CA's key, for a test that needs to sign more certificates.
    pub ca_key: PathBuf,
    /// `other_ca.crt`: an unrelated CA that signed nothing the server uses: as
    /// `sslrootcert`, `verify-ca` and `verify-full` must fail.
    pub other_ca_file: PathBuf,
    /// `server.crt`: the server's certificate (CN `localhost`, SANs DNS `localhost` and IP
    /// `127.0.0.1`), signed by `ca_file`.
    pub server_cert: PathBuf,
    /// `server.key`: its key, owned by the server's account.
    pub server_key: PathBuf,
    /// `client.crt`: CN = [`TlsInfo::cert_user`], signed by `ca_file`: logs in as that user.
    pub client_cert: PathBuf,
    /// `client.key`: its key.
    pub client_key: PathBuf,
    /// `expired_client.crt`: like `client.crt` but valid only in the year 2000: the server
    /// refuses the handshake.
    pub expired_client_cert: PathBuf,
    /// `expired_client.key`: its key.
    pub expired_client_key: PathBuf,
    /// `other_ca_client.crt`: CN = `cert_user` but signed by `other_ca_file`: the server
    /// refuses the handshake (unknown CA).
    pub other_ca_client_cert: PathBuf,
    /// `other_ca_client.key`: its key.
    pub other_ca_client_key: PathBuf,
    /// `wrong_host.crt`: a server certificate signed by `ca_file` that is valid only for
    /// [`WRONG_HOST_NAME`], for a test's own TLS listener (the test server does not use it).
    pub wrong_host_cert: PathBuf,
    /// `wrong_host.key`: its key.
    pub wrong_host_key: PathBuf,
    /// `expired_server.crt`: a server certificate for [`SERVER_NAMES`] signed by `ca_file`
    /// but valid only in the year 2000, for a test's own TLS listener.
    pub expired_server_cert: PathBuf,
    /// `expired_server.key`: its key.
    pub expired_server_key: PathBuf,
    /// [`CERT_USER`]: may log in only over TLS and only with a client certificate whose CN
    /// is its name (pg_hba `cert`).
    pub cert_user: String,
    /// [`SCRAM_TLS_USER`]: may log in only over TLS, with SCRAM-SHA-256 and
    /// [`TlsInfo::scram_tls_password`].
    pub scram_tls_user: String,
    /// [`SCRAM_TLS_PASSWORD`].
    pub scram_tls_password: String,
    /// [`TLS_ONLY_USER`]: trust, but only over TLS; without TLS the server answers
    /// `pg_hba.conf rejects connection`. Shows whether `sslmode=allow` ended up on TLS.
    pub tls_only_user: String,
    /// [`PLAIN_ONLY_USER`]: trust, but only without TLS; over TLS the server answers
    /// `pg_hba.conf rejects connection`. Shows whether `sslmode=prefer` fell back.
    pub plain_only_user: String,
    /// Trust login as `momoko` (superuser) over TLS, certificate checked:
    /// `host=localhost hostaddr=127.0.0.1 port=N dbname=momoko_test user=momoko
    /// sslmode=verify-full sslrootcert=CA_FILE`. The base for the other TLS logins.
    pub dsn: String,
    /// `dsn` as `cert_user` with `sslcert=CLIENT_CERT sslkey=CLIENT_KEY`.
    pub cert_dsn: String,
    /// `dsn` as `scram_tls_user`, password included.
    pub scram_tls_dsn: String,
}

impl TlsInfo {
    /// The description of the files a cluster keeps in `dir`, for its server on
    /// 127.0.0.1:`port`.
    pub(crate) fn in_dir(dir: &Path, port: u16) -> TlsInfo {
        let file = |name: &str| dir.join(name);
        let q = |p: &Path| quote(&p.to_string_lossy());
        let ca_file = file("ca.crt");
        let client_cert = file("client.crt");
        let client_key = file("client.key");
        let dsn_as = |user: &str| {
            format!(
                "host=localhost hostaddr=127.0.0.1 port={port} dbname={DBNAME} user={user} \
                 sslmode=verify-full sslrootcert={}",
                q(&ca_file)
            )
        };
        TlsInfo {
            dir: dir.to_path_buf(),
            ca_key: file("ca.key"),
            other_ca_file: file("other_ca.crt"),
            server_cert: file("server.crt"),
            server_key: file("server.key"),
            expired_client_cert: file("expired_client.crt"),
            expired_client_key: file("expired_client.key"),
            other_ca_client_cert: file("other_ca_client.crt"),
            other_ca_client_key: file("other_ca_client.key"),
            wrong_host_cert: file("wrong_host.crt"),
            wrong_host_key: file("wrong_host.key"),
            expired_server_cert: file("expired_server.crt"),
            expired_server_key: file("expired_server.key"),
            cert_user: CERT_USER.to_owned(),
            scram_tls_user: SCRAM_TLS_USER.to_owned(),
            scram_tls_password: SCRAM_TLS_PASSWORD.to_owned(),
            tls_only_user: TLS_ONLY_USER.to_owned(),
            plain_only_user: PLAIN_ONLY_USER.to_owned(),
            dsn: dsn_as(USER),
            cert_dsn: format!(
                "{} sslcert={} sslkey={}",
                dsn_as(CERT_USER),
                q(&client_cert),
                q(&client_key)
            ),
            scram_tls_dsn: format!(
                "{} password={}",
                dsn_as(SCRAM_TLS_USER),
                quote(SCRAM_TLS_PASSWORD)
            ),
            ca_file,
            client_cert,
            client_key,
        }
    }
}

fn tls_error(what: &str, e: rcgen::Error) -> io::Error {
    io::Error::other(format!("could not make the {what} certificate: {e}"))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "momoko-testpg");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A self-signed CA: its certificate and key (PEM), and the issuer that signs with it.
fn make_ca(cn: &str) -> io::Result<(String, String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate().map_err(|e| tls_error(cn, e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(|e| tls_error(cn, e))?;
    let key_pem = key.serialize_pem();
    Ok((cert.pem(), key_pem, Issuer::new(params, key)))
}

#[derive(Clone, Copy)]
enum Role {
    Server,
    Client,
}

/// One certificate to make, with its key: where they go, what it is for, who signs it.
struct Leaf<'a> {
    cert: &'a Path,
    key: &'a Path,
    role: Role,
    cn: &'a str,
    sans: &'a [&'a str],
    /// Valid only in the year 2000.
    expired: bool,
    issuer: &'a Issuer<'static, KeyPair>,
}

impl Leaf<'_> {
    fn write(&self) -> io::Result<()> {
        let what = self.cert.file_name().unwrap_or_default().to_string_lossy();
        let err = |e| tls_error(&what, e);
        let key = KeyPair::generate().map_err(err)?;
        let sans: Vec<String> = self.sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).map_err(err)?;
        params.distinguished_name = dn(self.cn);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match self.role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        if self.expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, self.issuer).map_err(err)?;
        write_file(self.cert, &cert.pem(), false)?;
        write_file(self.key, &key.serialize_pem(), true)
    }
}

/// Writes a new file: mode 0644, or 0600 for a key.
fn write_file(path: &Path, text: &str, secret: bool) -> io::Result<()> {
    let mode = if secret { 0o600 } else { 0o644 };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("could not create {}: {e}", path.display()),
            )
        })?;
    f.write_all(text.as_bytes())?;
    // The mode given to open is filtered through the umask.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Creates `dir` (mode 0755) and every file [`TlsInfo`] names in it. `server_ids` is the
/// uid and gid of the server's account when it is not us (we are root): the server's key
/// is handed to it.
pub(crate) fn write_files(dir: &Path, server_ids: Option<(u32, u32)>) -> io::Result<()> {
    fs::create_dir(dir).map_err(|e| {
        io::Error::new(e.kind(), format!("could not create {}: {e}", dir.display()))
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    let info = TlsInfo::in_dir(dir, 0);

    let (ca_pem, ca_key, ca) = make_ca("momoko-testpg CA")?;
    write_file(&info.ca_file, &ca_pem, false)?;
    write_file(&info.ca_key, &ca_key, true)?;
    let (other_pem, _, other_ca) = make_ca("momoko-testpg other CA")?;
    write_file(&info.other_ca_file, &other_pem, false)?;

    let server = Leaf {
        cert: &info.server_cert,
        key: &info.server_key,
        role: Role::Server,
        cn: SERVER_NAMES[0],
        sans: &SERVER_NAMES,
        expired: false,
        issuer: &ca,
    };
    let client = Leaf {
        cert: &info.client_cert,
        key: &info.client_key,
        role: Role::Client,
        cn: CERT_USER,
        sans: &[],
        expired: false,
        issuer: &ca,
    };
    for leaf in [
        Leaf {
            cert: &info.expired_client_cert,
            key: &info.expired_client_key,
            expired: true,
            ..client
        },
        Leaf {
            cert: &info.other_ca_client_cert,
            key: &info.other_ca_client_key,
            issuer: &other_ca,
            ..client
        },
        Leaf {
            cert: &info.wrong_host_cert,
            key: &info.wrong_host_key,
            cn: WRONG_HOST_NAME,
            sans: &[WRONG_HOST_NAME],
            ..server
        },
        Leaf {
            cert: &info.expired_server_cert,
            key: &info.expired_server_key,
            expired: true,
            ..server
        },
        server,
        client,
    ] {
        leaf.write()?;
    }
    if let Some((uid, gid)) = server_ids {
        std::os::unix::fs::chown(&info.server_key, Some(uid), Some(gid)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("chown {}: {e}", info.server_key.display()),
            )
        })?;
    }
    Ok(())
}

/// Copies the files `write_files` made in `from` into a new directory `to` (a standby's
/// own copy of its primary's certificates: one CA then verifies both servers), with the
/// same modes; the server's key is handed to the server's account as in `write_files`.
pub(crate) fn copy_files(from: &Path, to: &Path, server_ids: Option<(u32, u32)>) -> io::Result<()> {
    fs::create_dir(to)
        .map_err(|e| io::Error::new(e.kind(), format!("could not create {}: {e}", to.display())))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        // fs::copy carries the mode over (0600 for keys).
        fs::copy(entry.path(), &target).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("could not copy {}: {e}", entry.path().display()),
            )
        })?;
    }
    if let Some((uid, gid)) = server_ids {
        let key = TlsInfo::in_dir(to, 0).server_key;
        std::os::unix::fs::chown(&key, Some(uid), Some(gid))
            .map_err(|e| io::Error::new(e.kind(), format!("chown {}: {e}", key.display())))?;
    }
    Ok(())
}
