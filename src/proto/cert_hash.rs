//! The `tls-server-end-point` channel binding data (RFC 5929, section 4.1): a hash of the
//! server's end-entity certificate, which SCRAM-SHA-256-PLUS mixes into the proof so that a
//! man in the middle holding another certificate cannot relay the exchange.
//!
//! The hash function is the one of the certificate's signatureAlgorithm, except that MD5 and
//! SHA-1 are replaced by SHA-256. PostgreSQL's server computes the same thing
//! (`be_tls_get_certificate_hash`, through OpenSSL's `X509_get_signature_info`) and fails for
//! algorithms without a hash of their own (Ed25519, Ed448); so does this.
//!
//! The certificate comes from the network, before anything authenticated it: the DER walk
//! below reads only the three fields of the outer `Certificate` SEQUENCE and the
//! AlgorithmIdentifier, checks every length against what is left, and fails on anything it
//! does not expect. It never panics and never allocates more than the hash.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::error::Error;

/// A hash the binding can be computed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha224 => Sha224::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha384 => Sha384::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// The channel binding data of type `tls-server-end-point` for the server's end-entity
/// certificate `cert_der` (its DER encoding, as the TLS handshake delivered it).
///
/// Fails, with a connection error, on malformed DER and on signature algorithms whose hash
/// cannot be told or is not supported (Ed25519, Ed448, SHA-3, unknown OIDs).
pub(crate) fn tls_server_end_point(cert_der: &[u8]) -> Result<Vec<u8>, Error> {
    let hash = signature_hash(cert_der).map_err(|why| {
        Error::connection(format!(
            "cannot compute the tls-server-end-point channel binding of the server's \
             certificate: {why}"
        ))
    })?;
    Ok(hash.digest(cert_der))
}

/// The hash to use for `cert_der`, or why there is none.
fn signature_hash(cert_der: &[u8]) -> Result<Hash, String> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let (cert, rest) = expect(cert_der, SEQUENCE, "Certificate")?;
    if !rest.is_empty() {
        return Err(format!(
            "data after the certificate's DER encoding ({} bytes)",
            rest.len()
        ));
    }
    let (_tbs, cert) = expect(cert, SEQUENCE, "tbsCertificate")?;
    let (alg, cert) = expect(cert, SEQUENCE, "signatureAlgorithm")?;
    let (_sig, cert) = expect(cert, BIT_STRING, "signatureValue")?;
    if !cert.is_empty() {
        return Err("unexpected data after the certificate's signatureValue".into());
    }
    // AlgorithmIdentifier ::= SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }
    let (oid, params) = expect(alg, OID, "signatureAlgorithm's OID")?;
    match oid {
        // RFC 5929: MD5 and SHA-1 are replaced by SHA-256.
        MD5_WITH_RSA | SHA1_WITH_RSA | ECDSA_WITH_SHA1 | DSA_WITH_SHA1 => Ok(Hash::Sha256),
        SHA224_WITH_RSA | ECDSA_WITH_SHA224 | DSA_WITH_SHA224 => Ok(Hash::Sha224),
        SHA256_WITH_RSA | ECDSA_WITH_SHA256 | DSA_WITH_SHA256 => Ok(Hash::Sha256),
        SHA384_WITH_RSA | ECDSA_WITH_SHA384 => Ok(Hash::Sha384),
        SHA512_WITH_RSA | ECDSA_WITH_SHA512 => Ok(Hash::Sha512),
        RSASSA_PSS => pss_hash(params),
        ED25519 | ED448 => Err(format!(
            "its signature algorithm ({}) has no hash function to bind with \
             (PostgreSQL's server cannot compute it either)",
            if oid == ED25519 { "Ed25519" } else { "Ed448" }
        )),
        _ => Err(format!(
            "unsupported signature algorithm (OID {})",
            oid_string(oid)
        )),
    }
}

/// The hash of an RSASSA-PSS signature, from its parameters (RFC 4055, section 3.1):
///
/// ```text
/// RSASSA-PSS-params ::= SEQUENCE {
///     hashAlgorithm      [0] HashAlgorithm DEFAULT sha1,
///     maskGenAlgorithm   [1] MaskGenAlgorithm DEFAULT mgf1SHA1,
///     saltLength         [2] INTEGER DEFAULT 20,
///     trailerField       [3] TrailerField DEFAULT trailerFieldBC }
/// ```
fn pss_hash(params: &[u8]) -> Result<Hash, String> {
    if params.is_empty() {
        return Err("RSASSA-PSS signature algorithm without its parameters".into());
    }
    let (seq, rest) = expect(params, SEQUENCE, "RSASSA-PSS parameters")?;
    if !rest.is_empty() {
        return Err("unexpected data after the RSASSA-PSS parameters".into());
    }
    // An absent hashAlgorithm is SHA-1, which RFC 5929 replaces by SHA-256.
    if seq.first() != Some(&PSS_HASH_TAG) {
        return Ok(Hash::Sha256);
    }
    let (explicit, _) = expect(seq, PSS_HASH_TAG, "RSASSA-PSS hashAlgorithm")?;
    let (alg, _) = expect(explicit, SEQUENCE, "RSASSA-PSS hashAlgorithm")?;
    let (oid, _) = expect(alg, OID, "RSASSA-PSS hash OID")?;
    match oid {
        SHA1 | SHA256 => Ok(Hash::Sha256),
        SHA224 => Ok(Hash::Sha224),
        SHA384 => Ok(Hash::Sha384),
        SHA512 => Ok(Hash::Sha512),
        _ => Err(format!(
            "unsupported RSASSA-PSS hash algorithm (OID {})",
            oid_string(oid)
        )),
    }
}

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
/// `[0]`, constructed, context-specific.
const PSS_HASH_TAG: u8 = 0xa0;

/// Reads one DER element whose tag must be `tag`: its contents and what follows it.
fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    let (&found, rest) = input
        .split_first()
        .ok_or_else(|| format!("truncated DER: {what} is missing"))?;
    if found != tag {
        return Err(format!(
            "malformed DER: expected {what} (tag 0x{tag:02x}), found tag 0x{found:02x}"
        ));
    }
    let (&first, mut rest) = rest
        .split_first()
        .ok_or_else(|| format!("truncated DER: the length of {what} is missing"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        // Long form: 0x81..=0x84 then that many big-endian bytes. 0x80 (indefinite) is BER,
        // not DER; more than four bytes cannot describe a certificate.
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(format!("malformed DER: bad length of {what}"));
        }
        if rest.len() < n {
            return Err(format!("truncated DER: the length of {what} is cut short"));
        }
        let (bytes, tail) = rest.split_at(n);
        rest = tail;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return Err(format!(
            "truncated DER: {what} declares {len} bytes, {} remain",
            rest.len()
        ));
    }
    Ok(rest.split_at(len))
}

/// The dotted form of an OID's DER contents, for error messages (best effort).
fn oid_string(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        if acc > u64::MAX >> 7 {
            return "(too long)".into();
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    if arcs.is_empty() || acc != 0 {
        return "(malformed)".into();
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

// Signature algorithm OIDs (DER contents of the OBJECT IDENTIFIER).
/// 1.2.840.113549.1.1.4
const MD5_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04];
/// 1.2.840.113549.1.1.5
const SHA1_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
/// 1.2.840.113549.1.1.10
const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
/// 1.2.840.113549.1.1.11
const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
/// 1.2.840.113549.1.1.12
const SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
/// 1.2.840.113549.1.1.13
const SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
/// 1.2.840.113549.1.1.14
const SHA224_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0e];
/// 1.2.840.10045.4.1
const ECDSA_WITH_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
/// 1.2.840.10045.4.3.1
const ECDSA_WITH_SHA224: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x01];
/// 1.2.840.10045.4.3.2
const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// 1.2.840.10045.4.3.3
const ECDSA_WITH_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
/// 1.2.840.10045.4.3.4
const ECDSA_WITH_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
/// 1.2.840.10040.4.3
const DSA_WITH_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03];
/// 2.16.840.1.101.3.4.3.1
const DSA_WITH_SHA224: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x01];
/// 2.16.840.1.101.3.4.3.2
const DSA_WITH_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x02];
/// 1.3.101.112
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// 1.3.101.113
const ED448: &[u8] = &[0x2b, 0x65, 0x71];

// Hash algorithm OIDs (in RSASSA-PSS parameters).
/// 1.3.14.3.2.26
const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
/// 2.16.840.1.101.3.4.2.1
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
/// 2.16.840.1.101.3.4.2.2
const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
/// 2.16.840.1.101.3.4.2.3
const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
/// 2.16.840.1.101.3.4.2.4
const SHA224: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04];

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn message(der: &[u8]) -> String {
        tls_server_end_point(der).unwrap_err().to_string()
    }

    // Self-signed certificates made with OpenSSL 3.0 for these tests, e.g.
    //   openssl req -x509 -newkey rsa:1024 -nodes -subj /CN=t -days 1 -sha256 -outform der
    //   (-sha1; -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32;
    //    -newkey ec -pkeyopt ec_paramgen_curve:P-384 -sha384; -newkey ed25519)
    // and the expected bindings with `sha256sum` / `sha384sum` of the DER file.
    pub(crate) const RSA_SHA256: &str = "\
    308201f43082015da00302010202147d03a9346379034fe0f73814ec184b797a8f8702300d06092a\
    864886f70d01010b0500300c310a300806035504030c0174301e170d323631323031323234353132\
    5a170d3236313230323232343531325a300c310a300806035504030c017430819f300d06092a8648\
    86f70d010101050003818d0030818902818100ba9619f522a92f233ce941d9cd99fcc717c8636b30\
    fa91f528e99283e48b3debf568f4869d63f63b79ae02e3282cb28dd0ebadc8a8669812995602c555\
    7c4c0e5059a2eb99be30db6067df3ff0c25d4ebdadbe5f2fda77b7a9f08ef51c0ce5a83c0928aeff\
    3ba2bf5e1d8e000be50e1a79d21503154602756aca852bac52ffe10203010001a3533051301d0603\
    551d0e041604140966f63e0cd7567c9a079b6eb6c05cc223c8e980301f0603551d23041830168014\
    0966f63e0cd7567c9a079b6eb6c05cc223c8e980300f0603551d130101ff040530030101ff300d06\
    092a864886f70d01010b05000381810062dc87afba781e94b5d5a0bb06918f24b57f19dbbfbcff3a\
    8dd16230fe325ba1e2368c89fa7979ea1ab9eed5e9e91dfa678d51b8e513159174ecaa8ac90ee08c\
    0337cb73af752de3674378ad1d5f607fe65faa696de414ae3c81c78f4736d3dcc822ce82a3428bbf\
    c10df0aa27c532648f0fcca78ba4758c086c7bfbe3dda020";
    pub(crate) const RSA_SHA1: &str = "\
    308201f43082015da003020102021434b745d601b384a354d90571ffc7aff32ae5a8b9300d06092a\
    864886f70d0101050500300c310a300806035504030c0174301e170d323631323031323234353132\
    5a170d3236313230323232343531325a300c310a300806035504030c017430819f300d06092a8648\
    86f70d010101050003818d0030818902818100ba9619f522a92f233ce941d9cd99fcc717c8636b30\
    fa91f528e99283e48b3debf568f4869d63f63b79ae02e3282cb28dd0ebadc8a8669812995602c555\
    7c4c0e5059a2eb99be30db6067df3ff0c25d4ebdadbe5f2fda77b7a9f08ef51c0ce5a83c0928aeff\
    3ba2bf5e1d8e000be50e1a79d21503154602756aca852bac52ffe10203010001a3533051301d0603\
    551d0e041604140966f63e0cd7567c9a079b6eb6c05cc223c8e980301f0603551d23041830168014\
    0966f63e0cd7567c9a079b6eb6c05cc223c8e980300f0603551d130101ff040530030101ff300d06\
    092a864886f70d010105050003818100afa6e634a196e2b95e5c2d8fceb2dd4013b155252d26075b\
    69702b869403337dd43db34bce59e5b4e2d79316b2611b5dd2a87802e5b36be3b13e55c3b778dc23\
    02c6ba62c97ef69811917e25044f38070097c0ecf02d8b5c86cf6cf5e92406052fd444bd2954f3fc\
    ddc15fb85a32693d551165d523d388cc18b6dd6c4c7fb259";
    pub(crate) const EC_SHA384: &str = "\
    308201a830820130a00302010202147b9b9ed1444c7b34f214815e8e5fd14581e0b597300a06082a\
    8648ce3d040303300c310a300806035504030c0174301e170d3236313230313232343531325a170d\
    3236313230323232343531325a300c310a300806035504030c01743076301006072a8648ce3d0201\
    06052b8104002203620004d5d2a25504c407fbc2f8174bafc5f083ad4cef63ff64241e9cca15886d\
    4ff831ed5435203f0d41979241646eab16ca8cc53137dc4e359cce9f4bd55c2ca7a9ea48c3bdaf52\
    cfaffb34e417d80f43774ad6a5bd7c25fea797c1c8563f10fb2a97a3533051301d0603551d0e0416\
    0414a264b92599ef42762e82feebc331b453d06184a3301f0603551d23041830168014a264b92599\
    ef42762e82feebc331b453d06184a3300f0603551d130101ff040530030101ff300a06082a8648ce\
    3d0403030366003063022f0f816a99c4d1bb774291ccd991d277373355fbe7b94c0cceec069b4e04\
    a2737da20dc51b4febd8bf60cece0275e60c023000a74f0823dc0eba3ef5bec21ec6a8d21f01a9c7\
    15befcecaa356ba125789b68e8e49d3b24b80c0dc8eb02c4646bd565";
    pub(crate) const RSA_PSS_SHA256: &str = "\
    3082025c30820191a00302010202141ce6b3208a4623844ac91020b070ca904dc26443304106092a\
    864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886f70d01\
    0108300d06096086480165030402010500a203020120300c310a300806035504030c0174301e170d\
    3236313230313232343531325a170d3236313230323232343531325a300c310a300806035504030c\
    017430819f300d06092a864886f70d010101050003818d0030818902818100ba9619f522a92f233c\
    e941d9cd99fcc717c8636b30fa91f528e99283e48b3debf568f4869d63f63b79ae02e3282cb28dd0\
    ebadc8a8669812995602c5557c4c0e5059a2eb99be30db6067df3ff0c25d4ebdadbe5f2fda77b7a9\
    f08ef51c0ce5a83c0928aeff3ba2bf5e1d8e000be50e1a79d21503154602756aca852bac52ffe102\
    03010001a3533051301d0603551d0e041604140966f63e0cd7567c9a079b6eb6c05cc223c8e98030\
    1f0603551d230418301680140966f63e0cd7567c9a079b6eb6c05cc223c8e980300f0603551d1301\
    01ff040530030101ff304106092a864886f70d01010a3034a00f300d060960864801650304020105\
    00a11c301a06092a864886f70d010108300d06096086480165030402010500a20302012003818100\
    1b44d7aaa7c4356528d4be610d8eaa106aa44bbf22072ddfc0f1e4d2cfb9db12103e7809d309708d\
    422e7023f1e1928a01cc363026b217c3510dfeca51258db908cb2f85e9a41167a79ca4ff4b128235\
    e0ea11e2703a95b70109c0ba49c1267fa1e93451e836303d8dde817fad5b5bcea91faafd95d64fd2\
    94b950ac823bd2d9";
    pub(crate) const ED25519_CERT: &str = "\
    3082012c3081dfa00302010202144ade16866950128ac53dc23c205329feb3fe365f300506032b65\
    70300c310a300806035504030c0174301e170d3236313230313232343531325a170d323631323032\
    3232343531325a300c310a300806035504030c0174302a300506032b65700321009d861aa89cc9c2\
    893eefdcb3a88afa2002c13f8db281c17b6833dbc9c8ef2c43a3533051301d0603551d0e04160414\
    9d5dad47e5138f331f36eb78e39db923c03cf22e301f0603551d230418301680149d5dad47e5138f\
    331f36eb78e39db923c03cf22e300f0603551d130101ff040530030101ff300506032b6570034100\
    0e4c140a7ddbea22a00ec8c5e1b97dd202d66946f117756f59354f44ad267c7a7e9befa00c32fbfc\
    eb4ddc81a0bef2ea2edc47c5e2488291375227da21a5b201";

    #[test]
    fn rsa_sha256_certificate_is_hashed_with_sha256() {
        assert_eq!(
            tls_server_end_point(&hex(RSA_SHA256)).unwrap(),
            hex("7b1ced14a2e8771b9507107ca15f735efe165718fe6fdb0364e11948ec84ac41")
        );
    }

    #[test]
    fn rsa_sha1_certificate_is_upgraded_to_sha256() {
        assert_eq!(
            tls_server_end_point(&hex(RSA_SHA1)).unwrap(),
            hex("012d38bc65661538e07fbc86f65a64b323a9b2df49e7cc3825d94677ce7027a5")
        );
    }

    #[test]
    fn ecdsa_sha384_certificate_is_hashed_with_sha384() {
        assert_eq!(
            tls_server_end_point(&hex(EC_SHA384)).unwrap(),
            hex(concat!(
                "8475d756673ae5d74be97a66931f5d72e3a81d3902d04ef7",
                "8838e121b7c6b2a14e7977fec62d32e3fdc90df83d1896d5"
            ))
        );
    }

    #[test]
    fn rsa_pss_certificate_uses_the_hash_of_its_parameters() {
        assert_eq!(
            tls_server_end_point(&hex(RSA_PSS_SHA256)).unwrap(),
            hex("e265bb3ed1ad2fe5408d434e556716f8c5f6ea8b5cc928252ee40bc420dca527")
        );
    }

    #[test]
    fn ed25519_certificate_has_no_binding() {
        let m = message(&hex(ED25519_CERT));
        assert!(m.contains("Ed25519"), "{m}");
        assert!(m.contains("tls-server-end-point"), "{m}");
    }

    /// `der` with the signatureAlgorithm OID (the last occurrence of `from`) replaced by `to`.
    fn with_oid(der: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let at = der
            .windows(from.len())
            .rposition(|w| w == from)
            .expect("the OID is in the certificate");
        let mut out = der.to_vec();
        out[at..at + to.len()].copy_from_slice(to);
        out
    }

    #[test]
    fn every_known_signature_algorithm_maps_to_its_hash() {
        // The bytes hashed are the certificate's, whatever its signature says: only the
        // choice of hash function is under test here (the signatures no longer verify).
        let rsa = hex(RSA_SHA256);
        let ec = hex(EC_SHA384);
        let rsa = (&rsa, SHA256_WITH_RSA);
        let ec = (&ec, ECDSA_WITH_SHA384);
        for ((base, from), oid, want) in [
            (rsa, MD5_WITH_RSA, Hash::Sha256),
            (rsa, SHA1_WITH_RSA, Hash::Sha256),
            (rsa, SHA224_WITH_RSA, Hash::Sha224),
            (rsa, SHA256_WITH_RSA, Hash::Sha256),
            (rsa, SHA384_WITH_RSA, Hash::Sha384),
            (rsa, SHA512_WITH_RSA, Hash::Sha512),
            (ec, ECDSA_WITH_SHA224, Hash::Sha224),
            (ec, ECDSA_WITH_SHA256, Hash::Sha256),
            (ec, ECDSA_WITH_SHA384, Hash::Sha384),
            (ec, ECDSA_WITH_SHA512, Hash::Sha512),
        ] {
            let der = with_oid(base, from, oid);
            assert_eq!(signature_hash(&der), Ok(want), "{}", oid_string(oid));
            assert_eq!(tls_server_end_point(&der).unwrap(), want.digest(&der));
        }
        let lens: Vec<usize> = [Hash::Sha224, Hash::Sha256, Hash::Sha384, Hash::Sha512]
            .iter()
            .map(|h| h.digest(b"").len())
            .collect();
        assert_eq!(lens, [28, 32, 48, 64]);
    }

    #[test]
    fn unknown_signature_algorithms_are_named() {
        // sha3-256WithRSAEncryption, 2.16.840.1.101.3.4.3.14: same length as the RSA OIDs.
        let sha3 = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x0e];
        let der = with_oid(&hex(RSA_SHA256), SHA256_WITH_RSA, &sha3);
        let m = message(&der);
        assert!(
            m.contains("unsupported signature algorithm (OID 2.16.840.1.101.3.4.3.14)"),
            "{m}"
        );
    }

    #[test]
    fn rsa_pss_hash_parameters() {
        // The parameters as they appear after the PSS OID, built by hand.
        let alg = |oid: &[u8]| {
            let mut v = vec![0x30, (oid.len() + 2) as u8, 0x06, oid.len() as u8];
            v.extend_from_slice(oid);
            v
        };
        let params = |hash: Option<&[u8]>| {
            let mut inner = Vec::new();
            if let Some(h) = hash {
                let a = alg(h);
                inner.push(0xa0);
                inner.push(a.len() as u8);
                inner.extend(a);
            }
            // saltLength [2] INTEGER 32
            inner.extend_from_slice(&[0xa2, 0x03, 0x02, 0x01, 0x20]);
            let mut v = vec![0x30, inner.len() as u8];
            v.extend(inner);
            v
        };
        assert_eq!(pss_hash(&params(Some(SHA256))), Ok(Hash::Sha256));
        assert_eq!(pss_hash(&params(Some(SHA384))), Ok(Hash::Sha384));
        assert_eq!(pss_hash(&params(Some(SHA512))), Ok(Hash::Sha512));
        assert_eq!(pss_hash(&params(Some(SHA1))), Ok(Hash::Sha256));
        // Absent hashAlgorithm: SHA-1 by default, so SHA-256.
        assert_eq!(pss_hash(&params(None)), Ok(Hash::Sha256));
        assert!(pss_hash(&[])
            .unwrap_err()
            .contains("without its parameters"));
        let md5 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05];
        assert!(pss_hash(&params(Some(&md5)))
            .unwrap_err()
            .contains("unsupported RSASSA-PSS hash algorithm (OID 1.2.840.113549.2.5)"));
        // NULL parameters (as RSA PKCS#1 v1.5 has) are not PSS parameters.
        assert!(pss_hash(&[0x05, 0x00]).is_err());
    }

    #[test]
    fn every_truncation_of_a_certificate_is_an_error() {
        for der in [hex(RSA_SHA256), hex(EC_SHA384), hex(RSA_PSS_SHA256)] {
            for n in 0..der.len() {
                let m = message(&der[..n]);
                assert!(m.contains("DER"), "{n}: {m}");
            }
        }
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let mut der = hex(RSA_SHA256);
        der.push(0);
        assert!(message(&der).contains("after the certificate's DER encoding (1 bytes)"));
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x80\x00\x00",                     // indefinite length (BER)
            b"\x30\x85\x01\x00\x00\x00\x00",         // five length bytes
            b"\x30\x84\xff\xff\xff\xff",             // longer than the input
            b"\x30\x00",                             // no tbsCertificate
            b"\x30\x02\x30\x00",                     // no signatureAlgorithm
            b"\x30\x06\x30\x00\x30\x02\x06\x00",     // no signatureValue
            b"\x30\x08\x30\x00\x30\x00\x03\x00\x00", // OID missing
            b"\x04\x03abc",                          // not a SEQUENCE
            b"-----BEGIN CERTIFICATE-----",          // PEM, not DER
        ] {
            assert!(tls_server_end_point(bad).is_err(), "{bad:?}");
        }
        // A junk signature algorithm OID is reported, not decoded wrongly.
        let der = b"\x30\x0b\x30\x00\x30\x04\x06\x02\xff\xff\x03\x01\x00";
        assert!(message(der).contains("OID (malformed)"), "{}", message(der));
        // Every byte value in every position of a small certificate: no panic.
        let small = hex(ED25519_CERT);
        for i in 0..small.len() {
            for b in [0x00, 0x7f, 0x80, 0x81, 0x84, 0xff] {
                let mut d = small.clone();
                d[i] = b;
                let _ = tls_server_end_point(&d);
            }
        }
    }

    #[test]
    fn oid_strings() {
        assert_eq!(oid_string(SHA256_WITH_RSA), "1.2.840.113549.1.1.11");
        assert_eq!(oid_string(ED25519), "1.3.101.112");
        assert_eq!(oid_string(SHA256), "2.16.840.1.101.3.4.2.1");
        assert_eq!(oid_string(&[0x88, 0x37]), "2.999");
        assert_eq!(oid_string(&[]), "(malformed)");
        assert_eq!(oid_string(&[0x86]), "(malformed)");
        assert_eq!(oid_string(&[0xff; 12]), "(too long)");
    }
}
