//! SCRAM (RFC 5802) with SHA-256 and SHA-512 (RFC 7677), as Kafka uses it:
//! no channel binding, iterations between 4096 and 16384, extensions in the
//! client-first message tolerated.
//!
//! The broker keeps a [`Credential`] per user and mechanism: the salt, the
//! iteration count, `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`. Neither the password nor
//! the salted password is kept, so a leaked credential does not let anyone
//! log in.

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2, rand};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Fewest iterations accepted for a credential (Kafka's minimum).
pub const MIN_ITERATIONS: u32 = 4096;
/// Most iterations accepted for a credential (Kafka's maximum).
pub const MAX_ITERATIONS: u32 = 16384;
/// Salt length of credentials made here, in bytes.
const SALT_LEN: usize = 24;
/// Random bytes in a nonce (base64 makes it printable and comma-free).
const NONCE_LEN: usize = 24;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mechanism {
    /// SCRAM-SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    /// Both mechanisms, strongest first.
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha512, Mechanism::ScramSha256];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The code Kafka's AlterUserScramCredentials and
    /// DescribeUserScramCredentials use (1 = SHA-256, 2 = SHA-512).
    pub fn kafka_code(self) -> i8 {
        match self {
            Mechanism::ScramSha256 => 1,
            Mechanism::ScramSha512 => 2,
        }
    }

    /// The mechanism with Kafka code `code`.
    pub fn from_kafka_code(code: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.kafka_code() == code)
    }

    fn algo(self) -> Algo {
        match self {
            Mechanism::ScramSha256 => Algo::Sha256,
            Mechanism::ScramSha512 => Algo::Sha512,
        }
    }
}

/// The hash under a mechanism. SHA-1 exists only to check the exchange
/// against RFC 5802's own test vector.
#[derive(Debug, Clone, Copy)]
enum Algo {
    #[cfg(test)]
    Sha1,
    Sha256,
    Sha512,
}

impl Algo {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            #[cfg(test)]
            Algo::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algo::Sha256 => hmac::HMAC_SHA256,
            Algo::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            #[cfg(test)]
            Algo::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
            Algo::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Algo::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            #[cfg(test)]
            Algo::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Algo::Sha256 => &digest::SHA256,
            Algo::Sha512 => &digest::SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest().output_len()
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.len()];
        // Callers check the iteration count; 0 would be the only failure.
        let n = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(self.pbkdf2(), n, salt, password, &mut out);
        out
    }
}

/// Why an exchange or a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow RFC 5802's grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    /// The client asked for channel binding, which Kafka does not offer.
    #[error("SCRAM channel binding is not supported")]
    ChannelBinding,
    /// The client-final nonce is not the one the server sent.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// Wrong password, or no such user (not told apart, on purpose).
    #[error("authentication failed: invalid credentials")]
    InvalidCredentials,
    /// The server's signature did not verify (client side).
    #[error("the server's SCRAM signature is invalid")]
    BadServerSignature,
    /// The server answered `e=...`.
    #[error("the server refused the SCRAM exchange: {0}")]
    ServerError(String),
    /// An iteration count outside [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    #[error("{0} iterations is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u32),
    /// A salted password of the wrong length for the mechanism.
    #[error("salted password of {got} bytes; {mechanism} needs {want}")]
    SaltedLength {
        /// Mechanism name.
        mechanism: &'static str,
        /// Bytes given.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// An empty salt.
    #[error("the salt must not be empty")]
    EmptySalt,
}

/// What the broker stores for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The mechanism this credential is for.
    pub mechanism: Mechanism,
    /// PBKDF2 salt (base64 in JSON).
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    /// `H(ClientKey)` (base64 in JSON).
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")` (base64 in JSON).
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

mod b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

fn check_iterations(iterations: u32) -> Result<(), ScramError> {
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        Ok(())
    } else {
        Err(ScramError::Iterations(iterations))
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    // The system RNG failing leaves zeros; aws-lc aborts rather than return
    // an error on Linux, so this is not reached in practice.
    let _ = rand::fill(&mut out);
    out
}

/// `SaltedPassword = Hi(password, salt, iterations)` (client side of
/// AlterUserScramCredentials: the password never leaves the client).
pub fn salted_password(
    mechanism: Mechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<Vec<u8>, ScramError> {
    check_iterations(iterations)?;
    if salt.is_empty() {
        return Err(ScramError::EmptySalt);
    }
    Ok(mechanism
        .algo()
        .salted_password(password.as_bytes(), salt, iterations))
}

/// A fresh random salt.
pub fn new_salt() -> Vec<u8> {
    random(SALT_LEN)
}

fn keys(algo: Algo, salted: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let client_key = algo.mac(salted, b"Client Key");
    (algo.hash(&client_key), algo.mac(salted, b"Server Key"))
}

impl Credential {
    /// The credential for a salted password (what AlterUserScramCredentials
    /// carries).
    pub fn from_salted_password(
        mechanism: Mechanism,
        salt: Vec<u8>,
        salted: &[u8],
        iterations: u32,
    ) -> Result<Credential, ScramError> {
        check_iterations(iterations)?;
        if salt.is_empty() {
            return Err(ScramError::EmptySalt);
        }
        let want = mechanism.algo().len();
        if salted.len() != want {
            return Err(ScramError::SaltedLength {
                mechanism: mechanism.name(),
                got: salted.len(),
                want,
            });
        }
        let (stored_key, server_key) = keys(mechanism.algo(), salted);
        Ok(Credential {
            mechanism,
            salt,
            stored_key,
            server_key,
            iterations,
        })
    }

    /// A credential for `password` with a fresh salt.
    pub fn new(
        mechanism: Mechanism,
        password: &str,
        iterations: u32,
    ) -> Result<Credential, ScramError> {
        let salt = new_salt();
        let salted = salted_password(mechanism, password, &salt, iterations)?;
        Credential::from_salted_password(mechanism, salt, &salted, iterations)
    }

    /// Whether `password` is the one this credential was made from (SASL
    /// PLAIN). Costs one PBKDF2 run; compares in constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let algo = self.mechanism.algo();
        let salted = algo.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let (stored_key, _) = keys(algo, &salted);
        constant_time::verify_slices_are_equal(&stored_key, &self.stored_key).is_ok()
    }

    /// A credential nobody can log in with, for users that do not exist, so
    /// that an unknown user fails at the same step as a wrong password.
    fn decoy(mechanism: Mechanism) -> Credential {
        let n = mechanism.algo().len();
        Credential {
            mechanism,
            salt: random(SALT_LEN),
            stored_key: random(n),
            server_key: random(n),
            iterations: MIN_ITERATIONS,
        }
    }
}

/// Decodes a `saslname` (`=2C` is a comma, `=3D` an equals sign).
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed(format!("bad escape in name {s:?}"))),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Encodes a `saslname`.
fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// The value of attribute `name` (`name=value`) in `part`.
fn attr(part: Option<&str>, name: char) -> Result<&str, ScramError> {
    part.and_then(|p| p.strip_prefix(name))
        .and_then(|p| p.strip_prefix('='))
        .ok_or_else(|| ScramError::Malformed(format!("expected attribute {name}=")))
}

fn text(message: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8".into()))
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// The server's side of one exchange, between its first and final message.
#[derive(Debug)]
pub struct ServerExchange {
    algo: Algo,
    username: String,
    credential: Credential,
    known: bool,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl ServerExchange {
    /// Reads the client-first message and answers with the server-first
    /// message. `lookup` finds the user's credential; an unknown user gets
    /// a decoy and fails only at [`finish`](ServerExchange::finish).
    pub fn start(
        mechanism: Mechanism,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Result<(ServerExchange, Vec<u8>), ScramError> {
        let nonce = B64.encode(random(NONCE_LEN));
        Self::start_with(mechanism.algo(), client_first, lookup, &nonce, || {
            Credential::decoy(mechanism)
        })
    }

    fn start_with(
        algo: Algo,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
        server_nonce: &str,
        decoy: impl FnOnce() -> Credential,
    ) -> Result<(ServerExchange, Vec<u8>), ScramError> {
        let msg = text(client_first)?;
        // gs2-header: cbind flag, optional authzid, then the bare message.
        let mut parts = msg.splitn(3, ',');
        match parts.next() {
            Some("n") | Some("y") => {}
            Some(p) if p.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad gs2 header".into())),
        }
        let authzid = parts
            .next()
            .ok_or_else(|| ScramError::Malformed("missing authzid field".into()))?;
        let bare = parts
            .next()
            .ok_or_else(|| ScramError::Malformed("missing client-first-bare".into()))?;
        let mut attrs = bare.split(',');
        if attrs.clone().next().is_some_and(|a| a.starts_with("m=")) {
            return Err(ScramError::Malformed(
                "mandatory extension not supported".into(),
            ));
        }
        let username = decode_saslname(attr(attrs.next(), 'n')?)?;
        if !authzid.is_empty() && decode_saslname(attr(Some(authzid), 'a')?)? != username {
            return Err(ScramError::Malformed(
                "authorization id differs from the user name".into(),
            ));
        }
        let client_nonce = attr(attrs.next(), 'r')?;
        if username.is_empty() || client_nonce.is_empty() {
            return Err(ScramError::Malformed("empty user name or nonce".into()));
        }
        let (credential, known) = match lookup(&username) {
            Some(c) => (c, true),
            None => (decoy(), false),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        Ok((
            ServerExchange {
                algo,
                username,
                credential,
                known,
                nonce,
                client_first_bare: bare.to_string(),
                server_first,
            },
            reply,
        ))
    }

    /// The user name the client gave.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks the client's proof; on success, the server-final message.
    pub fn finish(self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg = text(client_final)?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| ScramError::Malformed("missing proof".into()))?;
        let mut attrs = without_proof.split(',');
        let binding = attr(attrs.next(), 'c')?;
        // Only "n,," / "y,," (no binding data) can be valid here.
        let binding = B64
            .decode(binding)
            .map_err(|_| ScramError::Malformed("channel binding is not base64".into()))?;
        if !(binding.starts_with(b"n,") || binding.starts_with(b"y,")) {
            return Err(ScramError::ChannelBinding);
        }
        if attr(attrs.next(), 'r')? != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64".into()))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let c = &self.credential;
        let signature = self.algo.mac(&c.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::InvalidCredentials);
        }
        let client_key = xor(&proof, &signature);
        let ok =
            constant_time::verify_slices_are_equal(&self.algo.hash(&client_key), &c.stored_key)
                .is_ok();
        if !ok || !self.known {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = self.algo.mac(&c.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// The client's side of an exchange (used by `vigil user` and tests).
#[derive(Debug)]
pub struct ClientExchange {
    algo: Algo,
    password: String,
    client_nonce: String,
    client_first_bare: String,
}

/// The client after its final message: checks the server's signature.
#[derive(Debug)]
pub struct ClientVerifier {
    expected: Vec<u8>,
}

impl ClientExchange {
    /// Starts an exchange; returns the client-first message to send.
    pub fn new(mechanism: Mechanism, username: &str, password: &str) -> (ClientExchange, Vec<u8>) {
        let nonce = B64.encode(random(NONCE_LEN));
        Self::with_nonce(mechanism.algo(), username, password, &nonce)
    }

    fn with_nonce(
        algo: Algo,
        username: &str,
        password: &str,
        nonce: &str,
    ) -> (ClientExchange, Vec<u8>) {
        let bare = format!("n={},r={nonce}", encode_saslname(username));
        let first = format!("n,,{bare}").into_bytes();
        (
            ClientExchange {
                algo,
                password: password.to_string(),
                client_nonce: nonce.to_string(),
                client_first_bare: bare,
            },
            first,
        )
    }

    /// Reads the server-first message; returns the client-final message.
    pub fn respond(self, server_first: &[u8]) -> Result<(ClientVerifier, Vec<u8>), ScramError> {
        let msg = text(server_first)?;
        if let Some(e) = msg.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let mut attrs = msg.split(',');
        let nonce = attr(attrs.next(), 'r')?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = B64
            .decode(attr(attrs.next(), 's')?)
            .map_err(|_| ScramError::Malformed("salt is not base64".into()))?;
        let iterations: u32 = attr(attrs.next(), 'i')?
            .parse()
            .map_err(|_| ScramError::Malformed("bad iteration count".into()))?;
        // A server asking for fewer iterations than the minimum is not one
        // to hand a proof to.
        if iterations < MIN_ITERATIONS {
            return Err(ScramError::Iterations(iterations));
        }
        let salted = self
            .algo
            .salted_password(self.password.as_bytes(), &salt, iterations);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{msg},{without_proof}", self.client_first_bare);
        let client_key = self.algo.mac(&salted, b"Client Key");
        let stored_key = self.algo.hash(&client_key);
        let signature = self.algo.mac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &signature);
        let server_key = self.algo.mac(&salted, b"Server Key");
        let expected = self.algo.mac(&server_key, auth_message.as_bytes());
        let final_message = format!("{without_proof},p={}", B64.encode(proof)).into_bytes();
        Ok((ClientVerifier { expected }, final_message))
    }
}

impl ClientVerifier {
    /// Checks the server-final message.
    pub fn verify(self, server_final: &[u8]) -> Result<(), ScramError> {
        let msg = text(server_final)?;
        if let Some(e) = msg.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let v = B64
            .decode(attr(msg.split(',').next(), 'v')?)
            .map_err(|_| ScramError::Malformed("server signature is not base64".into()))?;
        constant_time::verify_slices_are_equal(&v, &self.expected)
            .map_err(|_| ScramError::BadServerSignature)
    }
}

#[cfg(test)]
mod tests;
