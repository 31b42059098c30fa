//! One connection's SASL state (SaslHandshake v1 + SaslAuthenticate, as
//! Kafka 1.0+ clients speak it) and its KIP-368 session lifetime.
//!
//! On a SASL listener only ApiVersions, SaslHandshake and SaslAuthenticate
//! are served before authentication; anything else closes the connection,
//! as Kafka does. A failed authentication is answered with
//! SASL_AUTHENTICATION_FAILED and then the connection is closed. Once the
//! session's lifetime (`connections-max-reauth-ms`) has passed, a request
//! other than a re-authentication closes the connection (KIP-368); the
//! client learns the lifetime from SaslAuthenticate v1+.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use vigil_auth::scram::ServerExchange;
use vigil_auth::{plain, Mechanism};

use super::Security;

/// What the connection does with a request, by API.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Dispatch it.
    Pass,
    /// It is SaslHandshake or SaslAuthenticate: [`Session::handshake`] /
    /// [`Session::authenticate`].
    Sasl,
    /// Close the connection without answering.
    Refuse(&'static str),
}

/// What the connection does after a SASL response.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    /// Go on reading.
    Continue,
    /// Write the response, then close.
    Close,
}

#[derive(Debug)]
enum Mech {
    Plain,
    Scram(Mechanism),
}

#[derive(Debug)]
enum State {
    /// Waiting for SaslHandshake.
    Idle,
    /// Handshake done: the first SaslAuthenticate comes next.
    Chosen(Mech),
    /// SCRAM server-first sent: the client-final comes next.
    Scram(Box<ServerExchange>, Mechanism),
}

/// One connection's authentication.
#[derive(Debug)]
pub struct Session {
    sasl: bool,
    state: State,
    user: Option<String>,
    expires_at: Option<Instant>,
}

impl Session {
    /// A session on a listener that requires SASL (`sasl`) or not.
    pub fn new(sasl: bool) -> Session {
        Session {
            sasl,
            state: State::Idle,
            user: None,
            expires_at: None,
        }
    }

    /// Whether `api` may be served now.
    pub fn gate(&self, api: ApiKey, now: Instant) -> Gate {
        match api {
            ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => Gate::Sasl,
            ApiKey::ApiVersions => Gate::Pass,
            _ if !self.sasl => Gate::Pass,
            _ if self.user.is_none() => Gate::Refuse("request before SASL authentication"),
            _ if self.expires_at.is_some_and(|t| now >= t) => {
                Gate::Refuse("SASL session expired (KIP-368) without re-authentication")
            }
            _ => Gate::Pass,
        }
    }

    /// Answers SaslHandshake: picks the mechanism for the exchange.
    pub fn handshake(
        &mut self,
        r: SaslHandshakeRequest,
        security: &Security,
    ) -> (SaslHandshakeResponse, After) {
        let offered: Vec<StrBytes> = security
            .settings()
            .sasl_mechanisms
            .iter()
            .map(|m| StrBytes::from_string(m.to_ascii_uppercase()))
            .collect();
        let resp = SaslHandshakeResponse::default().with_mechanisms(offered);
        if !self.sasl {
            // As Kafka on a listener without SASL: an error, not a hang-up.
            let code = ResponseError::IllegalSaslState.code();
            return (resp.with_error_code(code), After::Continue);
        }
        if !matches!(self.state, State::Idle) {
            let code = ResponseError::IllegalSaslState.code();
            return (resp.with_error_code(code), After::Close);
        }
        let name = r.mechanism.to_string();
        let mech = match Mechanism::from_name(&name) {
            Some(m) if security.settings().offers(&name) => Mech::Scram(m),
            None if name.eq_ignore_ascii_case("PLAIN") && security.settings().offers(&name) => {
                Mech::Plain
            }
            _ => {
                let code = ResponseError::UnsupportedSaslMechanism.code();
                return (resp.with_error_code(code), After::Close);
            }
        };
        self.state = State::Chosen(mech);
        (resp, After::Continue)
    }

    /// Answers SaslAuthenticate: one step of the exchange. On success the
    /// returned user is the connection's new principal.
    pub async fn authenticate(
        &mut self,
        r: SaslAuthenticateRequest,
        version: i16,
        security: &Security,
        peer: SocketAddr,
    ) -> (SaslAuthenticateResponse, After, Option<String>) {
        let state = std::mem::replace(&mut self.state, State::Idle);
        let (mech_name, step) = match state {
            State::Idle => {
                let code = ResponseError::IllegalSaslState.code();
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate without a SaslHandshake first",
                    )));
                let after = if self.sasl {
                    After::Close
                } else {
                    After::Continue
                };
                return (resp, after, None);
            }
            State::Chosen(mech) => {
                if let Err(wait) = security.login_allowed(peer) {
                    security.login_failed(peer, "?", mech_label(&mech), "rate limited");
                    return failure(format!(
                        "too many failed logins from this address; retry in {wait} s"
                    ));
                }
                match mech {
                    Mech::Plain => ("PLAIN", self.plain(r.auth_bytes, security).await),
                    Mech::Scram(m) => {
                        let store = &security.credentials;
                        match ServerExchange::start(m, &r.auth_bytes, |u| store.get(u, m)) {
                            Ok((exchange, first)) => {
                                self.state = State::Scram(Box::new(exchange), m);
                                let resp = SaslAuthenticateResponse::default()
                                    .with_auth_bytes(Bytes::from(first));
                                return (resp, After::Continue, None);
                            }
                            Err(e) => (m.name(), Err(("?".to_string(), e.to_string()))),
                        }
                    }
                }
            }
            State::Scram(exchange, m) => {
                let user = exchange.username().to_string();
                match exchange.finish(&r.auth_bytes) {
                    Ok(last) => (m.name(), Ok((user, Bytes::from(last)))),
                    Err(e) => (m.name(), Err((user, e.to_string()))),
                }
            }
        };
        match step {
            Ok((user, bytes)) => {
                if let Some(before) = &self.user {
                    if *before != user {
                        // KIP-368: re-authentication may not change who
                        // the connection is.
                        security.login_failed(
                            peer,
                            &user,
                            mech_name,
                            "re-authentication as another user",
                        );
                        return failure("re-authentication must keep the same user".into());
                    }
                }
                let lifetime = security.settings().session_lifetime();
                self.expires_at = lifetime.map(|d| Instant::now() + d);
                self.user = Some(user.clone());
                let ms = lifetime.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                let mut resp = SaslAuthenticateResponse::default().with_auth_bytes(bytes);
                if version >= 1 {
                    resp = resp.with_session_lifetime_ms(ms);
                }
                tracing::debug!(%peer, %user, mechanism = mech_name, "SASL authentication succeeded");
                (resp, After::Continue, Some(user))
            }
            Err((user, why)) => {
                security.login_failed(peer, &user, mech_name, &why);
                failure(format!(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism {mech_name}"
                ))
            }
        }
    }

    /// Checks a PLAIN message against the user's salted credential (one
    /// PBKDF2 run, off the async workers).
    async fn plain(
        &mut self,
        message: Bytes,
        security: &Security,
    ) -> Result<(String, Bytes), (String, String)> {
        let parsed = plain::parse(&message).map_err(|e| ("?".to_string(), e.to_string()))?;
        let user = parsed.username.to_string();
        let password = parsed.password.to_string();
        let Some(cred) = security.credentials.any(&user) else {
            return Err((user, "no such user".into()));
        };
        let ok = tokio::task::spawn_blocking(move || cred.verify_password(&password))
            .await
            .unwrap_or(false);
        if ok {
            Ok((user, Bytes::new()))
        } else {
            Err((user, "wrong password".into()))
        }
    }
}

fn mech_label(m: &Mech) -> &'static str {
    match m {
        Mech::Plain => "PLAIN",
        Mech::Scram(m) => m.name(),
    }
}

fn failure(message: String) -> (SaslAuthenticateResponse, After, Option<String>) {
    let resp = SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::SaslAuthenticationFailed.code())
        .with_error_message(Some(StrBytes::from_string(message)));
    (resp, After::Close, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_on_sasl_and_plain_listeners() {
        let now = Instant::now();
        let plain = Session::new(false);
        assert_eq!(plain.gate(ApiKey::Produce, now), Gate::Pass);
        let mut s = Session::new(true);
        assert_eq!(s.gate(ApiKey::ApiVersions, now), Gate::Pass);
        assert_eq!(s.gate(ApiKey::SaslHandshake, now), Gate::Sasl);
        assert!(matches!(s.gate(ApiKey::Metadata, now), Gate::Refuse(_)));
        s.user = Some("alice".into());
        assert_eq!(s.gate(ApiKey::Metadata, now), Gate::Pass);
        s.expires_at = Some(now + std::time::Duration::from_secs(1));
        assert_eq!(s.gate(ApiKey::Fetch, now), Gate::Pass);
        assert!(matches!(
            s.gate(ApiKey::Fetch, now + std::time::Duration::from_secs(2)),
            Gate::Refuse(_)
        ));
        // Re-authentication is still possible after expiry.
        assert_eq!(
            s.gate(
                ApiKey::SaslAuthenticate,
                now + std::time::Duration::from_secs(2)
            ),
            Gate::Sasl
        );
    }
}
