//! Authentication during startup: cleartext, MD5, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS.
//!
//! This module answers the server's Authentication requests and nothing else. It refuses
//! methods it does not speak with an error naming them, refuses a server that ends SCRAM
//! without proving it knows the password, and bounds the number of rounds so that a server
//! asking forever cannot keep a connection in startup.
//!
//! Channel binding follows libpq's `channel_binding` setting. Over TLS, with the server's
//! `tls-server-end-point` data at hand, SCRAM-SHA-256-PLUS is chosen whenever the server
//! offers it (unless `disable`); `require` refuses every way of logging in that does not end
//! in a channel-bound SCRAM exchange, before anything is sent (libpq's
//! `check_expected_areq` and `pg_SASL_init`).

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use crate::error::Error;

pub(crate) use crate::conninfo::ChannelBinding;

/// Who we log in as, and how the login may be bound to the TLS channel.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: Option<Vec<u8>>,
    pub(crate) channel_binding: ChannelBinding,
    /// The `tls-server-end-point` channel binding data of this connection (RFC 5929: the
    /// hash of the server's certificate, see [`tls_server_end_point`]); None when the
    /// connection is not TLS, or when the data cannot be computed (see
    /// [`Credentials::set_server_certificate`]).
    ///
    /// [`tls_server_end_point`]: super::cert_hash::tls_server_end_point
    pub(crate) tls_server_end_point: Option<Vec<u8>>,
}

impl Credentials {
    /// After the TLS handshake, before the startup: takes the channel binding data from the
    /// server's end-entity certificate (`cert_der`, DER, as the handshake delivered it).
    ///
    /// A certificate whose binding cannot be computed (Ed25519, Ed448, unsupported or
    /// malformed) leaves the data unset: with `channel_binding=prefer` the login then
    /// proceeds as a client without channel binding support (`n,,`, which the server accepts;
    /// PostgreSQL's own server cannot bind such certificates either), and with `require` this
    /// fails at once.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn set_server_certificate(&mut self, cert_der: &[u8]) -> Result<(), Error> {
        match super::cert_hash::tls_server_end_point(cert_der) {
            Ok(data) => {
                self.tls_server_end_point = Some(data);
                Ok(())
            }
            Err(e) => {
                self.tls_server_end_point = None;
                if self.channel_binding == ChannelBinding::Require {
                    return Err(Error::connection(format!(
                        "channel binding is required, but client does not support it \
                         with this server's certificate: {e}"
                    )));
                }
                log::debug!("no channel binding on this connection: {e}");
                Ok(())
            }
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("channel_binding", &self.channel_binding)
            .field(
                "tls_server_end_point",
                &self.tls_server_end_point.as_ref().map(|d| d.len()),
            )
            .finish()
    }
}

/// libpq's messages for `channel_binding=require`, word for word.
pub(super) const CB_NOT_SUPPORTED_BY_REQUEST: &str =
    "channel binding required but not supported by server's authentication request";
pub(super) const CB_SERVER_DID_NOT_BIND: &str =
    "channel binding required, but server authenticated client without channel binding";
pub(super) const CB_NO_TLS: &str = "channel binding required, but SSL not in use";
pub(super) const CB_NOT_OFFERED: &str = "channel binding is required, but server did not offer \
     an authentication method that supports channel binding";

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
    /// `channel_bound`: the mechanism is SCRAM-SHA-256-PLUS.
    Scram {
        scram: Box<sasl::ScramSha256>,
        channel_bound: bool,
    },
    ScramDone {
        channel_bound: bool,
    },
}

/// The authentication exchange of one startup.
pub(crate) struct Auth {
    creds: Credentials,
    step: Step,
    rounds: u32,
    /// The method the server asked for (`trust` until it asks for one): for spans.
    method: &'static str,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self.step {
            Step::Waiting => "Waiting",
            Step::PasswordSent => "PasswordSent",
            Step::Scram { .. } => "Scram",
            Step::ScramDone { .. } => "ScramDone",
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
            method: "trust",
        }
    }

    /// The authentication method the server asked for, as pg_hba.conf names it (`trust`,
    /// `password`, `md5`) or the SASL mechanism chosen (`SCRAM-SHA-256`, `-PLUS`).
    pub(crate) fn method(&self) -> &'static str {
        self.method
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
        // With channel_binding=require, answer nothing but SASL: a password sent to a server
        // not yet authenticated is a password given away (libpq's check_expected_areq).
        if self.creds.channel_binding == ChannelBinding::Require
            && !matches!(
                msg,
                Message::AuthenticationSasl(_)
                    | Message::AuthenticationSaslContinue(_)
                    | Message::AuthenticationSaslFinal(_)
            )
        {
            return Err(Error::connection(CB_NOT_SUPPORTED_BY_REQUEST));
        }
        match msg {
            Message::AuthenticationCleartextPassword => {
                self.expect_waiting("cleartext")?;
                self.method = "password";
                let pw = self.password("cleartext password")?;
                frontend::password_message(pw, out).map_err(enc)?;
                self.step = Step::PasswordSent;
            }
            Message::AuthenticationMd5Password(body) => {
                self.expect_waiting("MD5")?;
                self.method = "md5";
                let pw = self.password("MD5")?;
                let hash = md5_hash(self.creds.user.as_bytes(), pw, body.salt());
                frontend::password_message(hash.as_bytes(), out).map_err(enc)?;
                self.step = Step::PasswordSent;
            }
            Message::AuthenticationSasl(body) => {
                self.expect_waiting("SASL")?;
                let require = self.creds.channel_binding == ChannelBinding::Require;
                if require && self.creds.tls_server_end_point.is_none() {
                    return Err(Error::connection(CB_NO_TLS));
                }
                let mut mechanisms = Vec::new();
                let mut it = body.mechanisms();
                while let Some(m) = it
                    .next()
                    .map_err(|e| Error::protocol(format!("malformed SASL mechanism list: {e}")))?
                {
                    mechanisms.push(m.to_owned());
                }
                let (mechanism, binding) = self.choose_mechanism(&mechanisms)?;
                let channel_bound = mechanism == sasl::SCRAM_SHA_256_PLUS;
                self.method = mechanism;
                let pw = self.password(mechanism)?;
                let scram = sasl::ScramSha256::new(pw, binding);
                frontend::sasl_initial_response(mechanism, scram.message(), out).map_err(enc)?;
                self.step = Step::Scram {
                    scram: Box::new(scram),
                    channel_bound,
                };
            }
            Message::AuthenticationSaslContinue(body) => {
                let Step::Scram { scram, .. } = &mut self.step else {
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
                let Step::Scram {
                    scram,
                    channel_bound,
                } = &mut self.step
                else {
                    return Err(Error::protocol("SASLFinal outside a SASL exchange"));
                };
                scram.finish(body.data()).map_err(|e| {
                    Error::connection(format!(
                        "SCRAM authentication failed: the server's signature is invalid ({e})"
                    ))
                })?;
                self.step = Step::ScramDone {
                    channel_bound: *channel_bound,
                };
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

    /// The SASL mechanism to answer `offered` with, and its gs2 channel binding flag, as
    /// libpq's pg_SASL_init and build_client_first_message choose them.
    fn choose_mechanism(
        &self,
        offered: &[String],
    ) -> Result<(&'static str, sasl::ChannelBinding), Error> {
        let offers = |name: &str| offered.iter().any(|m| m == name);
        let cb = self.creds.channel_binding;
        let data = self.creds.tls_server_end_point.as_ref();
        if let Some(data) = data {
            if offers(sasl::SCRAM_SHA_256_PLUS) && cb != ChannelBinding::Disable {
                // gs2 header "p=tls-server-end-point,,", the data in c= of the final message.
                return Ok((
                    sasl::SCRAM_SHA_256_PLUS,
                    sasl::ChannelBinding::tls_server_end_point(data.clone()),
                ));
            }
        }
        if !offers(sasl::SCRAM_SHA_256) {
            let why = if !offers(sasl::SCRAM_SHA_256_PLUS) {
                ""
            } else if cb == ChannelBinding::Disable {
                " (SCRAM-SHA-256-PLUS is excluded by channel_binding=disable)"
            } else {
                " (SCRAM-SHA-256-PLUS needs TLS channel binding data, which this connection \
                 does not have)"
            };
            return Err(Error::connection(format!(
                "the server offers only SASL mechanisms momoko does not support: {}{why}",
                offered.join(", ")
            )));
        }
        if cb == ChannelBinding::Require {
            return Err(Error::connection(CB_NOT_OFFERED));
        }
        let binding = if data.is_some() && cb != ChannelBinding::Disable {
            // "y,,": we could bind but the server did not offer to; if it actually can (a
            // man in the middle removed PLUS from the list), it refuses this as a downgrade.
            sasl::ChannelBinding::unrequested()
        } else {
            // "n,,": no channel binding on this connection, or disabled.
            sasl::ChannelBinding::unsupported()
        };
        Ok((sasl::SCRAM_SHA_256, binding))
    }

    fn expect_waiting(&self, method: &str) -> Result<(), Error> {
        match self.step {
            Step::Waiting => Ok(()),
            _ => Err(Error::protocol(format!(
                "the server asked for {method} authentication in the middle of another exchange"
            ))),
        }
    }

    /// AuthenticationOk arrived: refuse it if a SCRAM exchange did not verify the server, or
    /// if channel binding is required and the login was not channel-bound (trust, or a
    /// server that skipped the exchange).
    pub(crate) fn finish(&self) -> Result<(), Error> {
        match self.step {
            Step::Scram { .. } => Err(Error::connection(
                "the server ended SCRAM authentication without proving it knows the password",
            )),
            Step::ScramDone {
                channel_bound: true,
            } => Ok(()),
            _ if self.creds.channel_binding == ChannelBinding::Require => {
                Err(Error::connection(CB_SERVER_DID_NOT_BIND))
            }
            _ => Ok(()),
        }
    }
}

fn unsupported(method: &str) -> Error {
    Error::connection(format!(
        "the server asks for {method} authentication, which momoko does not support"
    ))
}
