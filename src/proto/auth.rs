//! Authentication during startup: cleartext, MD5 and SCRAM-SHA-256.
//!
//! This module answers the server's Authentication requests and nothing else. It refuses
//! methods it does not speak with an error naming them, refuses a server that ends SCRAM
//! without proving it knows the password, and bounds the number of rounds so that a server
//! asking forever cannot keep a connection in startup.

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use crate::error::Error;

/// Who we log in as.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// More rounds than any real method needs (SCRAM takes three).
const MAX_ROUNDS: u32 = 8;

/// The most PBKDF2 iterations a server may ask of SCRAM: the key is derived synchronously
/// on the loop's thread (about 0.4 s for this many in a release build), and the count comes
/// from the server, unauthenticated. PostgreSQL's default is 4096; without a bound a hostile
/// server (or anyone on the unencrypted path) could send 2^32-1 and block the loop, with
/// every other connection and timer on it, for half an hour.
pub(crate) const MAX_SCRAM_ITERATIONS: u64 = 1_000_000;

/// The iteration count of a SCRAM server-first-message (`r=…,s=…,i=4096`), when it has one.
fn scram_iterations(server_first: &[u8]) -> Option<u64> {
    server_first
        .split(|&b| b == b',')
        .find_map(|attr| attr.strip_prefix(b"i="))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
}

/// Where the exchange stands.
///
/// ```text
///   Waiting ──Cleartext/MD5──▶ PasswordSent ──AuthenticationOk──▶ (done)
///      │
///      └──SASL──▶ Scram ──SASLContinue──▶ Scram ──SASLFinal──▶ ScramDone ──Ok──▶ (done)
/// ```
enum Step {
    Waiting,
    PasswordSent,
    Scram(Box<sasl::ScramSha256>),
    ScramDone,
}

/// The authentication exchange of one startup.
pub(crate) struct Auth {
    creds: Credentials,
    step: Step,
    rounds: u32,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self.step {
            Step::Waiting => "Waiting",
            Step::PasswordSent => "PasswordSent",
            Step::Scram(_) => "Scram",
            Step::ScramDone => "ScramDone",
        };
        f.debug_struct("Auth")
            .field("creds", &self.creds)
            .field("step", &step)
            .finish()
    }
}

impl Auth {
    pub(crate) fn new(creds: Credentials) -> Auth {
        Auth {
            creds,
            step: Step::Waiting,
            rounds: 0,
        }
    }

    fn password(&self, method: &str) -> Result<&[u8], Error> {
        self.creds.password.as_deref().ok_or_else(|| {
            Error::connection(format!(
                "the server asked for a password ({method} authentication) but none was given"
            ))
        })
    }

    /// Answers one Authentication request, appending the reply to `out`.
    pub(crate) fn handle(&mut self, msg: Message, out: &mut BytesMut) -> Result<(), Error> {
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return Err(Error::protocol(
                "the server kept asking for authentication: giving up",
            ));
        }
        let enc = |e: std::io::Error| Error::usage(format!("cannot send the password: {e}"));
        match msg {
            Message::AuthenticationCleartextPassword => {
                self.expect_waiting("cleartext")?;
                let pw = self.password("cleartext password")?;
                frontend::password_message(pw, out).map_err(enc)?;
                self.step = Step::PasswordSent;
            }
            Message::AuthenticationMd5Password(body) => {
                self.expect_waiting("MD5")?;
                let pw = self.password("MD5")?;
                let hash = md5_hash(self.creds.user.as_bytes(), pw, body.salt());
                frontend::password_message(hash.as_bytes(), out).map_err(enc)?;
                self.step = Step::PasswordSent;
            }
            Message::AuthenticationSasl(body) => {
                self.expect_waiting("SASL")?;
                let mut mechanisms = Vec::new();
                let mut it = body.mechanisms();
                while let Some(m) = it
                    .next()
                    .map_err(|e| Error::protocol(format!("malformed SASL mechanism list: {e}")))?
                {
                    mechanisms.push(m.to_owned());
                }
                if !mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256) {
                    return Err(Error::connection(format!(
                        "the server offers only SASL mechanisms momoko does not support: {}",
                        mechanisms.join(", ")
                    )));
                }
                let pw = self.password("SCRAM-SHA-256")?;
                // Without TLS there is no channel to bind to.
                let scram = sasl::ScramSha256::new(pw, sasl::ChannelBinding::unsupported());
                frontend::sasl_initial_response(sasl::SCRAM_SHA_256, scram.message(), out)
                    .map_err(enc)?;
                self.step = Step::Scram(Box::new(scram));
            }
            Message::AuthenticationSaslContinue(body) => {
                let Step::Scram(scram) = &mut self.step else {
                    return Err(Error::protocol("SASLContinue outside a SASL exchange"));
                };
                // Checked before the key derivation, which would block for that long.
                if let Some(n) = scram_iterations(body.data()) {
                    if n > MAX_SCRAM_ITERATIONS {
                        return Err(Error::connection(format!(
                            "SCRAM authentication refused: the server asks for {n} iterations, \
                             more than momoko's bound of {MAX_SCRAM_ITERATIONS}"
                        )));
                    }
                }
                scram
                    .update(body.data())
                    .map_err(|e| Error::connection(format!("SCRAM authentication failed: {e}")))?;
                frontend::sasl_response(scram.message(), out).map_err(enc)?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let Step::Scram(scram) = &mut self.step else {
                    return Err(Error::protocol("SASLFinal outside a SASL exchange"));
                };
                scram.finish(body.data()).map_err(|e| {
                    Error::connection(format!(
                        "SCRAM authentication failed: the server's signature is invalid ({e})"
                    ))
                })?;
                self.step = Step::ScramDone;
            }
            Message::AuthenticationGss | Message::AuthenticationGssContinue(_) => {
                return Err(unsupported("GSSAPI"))
            }
            Message::AuthenticationSspi => return Err(unsupported("SSPI")),
            Message::AuthenticationKerberosV5 => return Err(unsupported("Kerberos V5")),
            Message::AuthenticationScmCredential => return Err(unsupported("SCM credential")),
            _ => return Err(Error::protocol("unexpected message during authentication")),
        }
        Ok(())
    }

    fn expect_waiting(&self, method: &str) -> Result<(), Error> {
        match self.step {
            Step::Waiting => Ok(()),
            _ => Err(Error::protocol(format!(
                "the server asked for {method} authentication in the middle of another exchange"
            ))),
        }
    }

    /// AuthenticationOk arrived: refuse it if a SCRAM exchange did not verify the server.
    pub(crate) fn finish(&self) -> Result<(), Error> {
        match self.step {
            Step::Scram(_) => Err(Error::connection(
                "the server ended SCRAM authentication without proving it knows the password",
            )),
            _ => Ok(()),
        }
    }
}

fn unsupported(method: &str) -> Error {
    Error::connection(format!(
        "the server asks for {method} authentication, which momoko does not support"
    ))
}
