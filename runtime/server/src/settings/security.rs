//! TLS, SASL and listeners per security protocol (`[security]`, issue 13;
//! docs/design/0015-security.md).
//!
//! The Kafka listener at `listen` speaks `security-protocol` (PLAINTEXT by
//! default, as before); each `listener` adds one more Kafka listener,
//! written `PROTOCOL://host:port`, optionally `@advertised-host:port`. A
//! client is told the address of the listener it connected to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ServerSettings, SettingsError};

/// Security settings. Every field is also a `vigil serve` flag of the same
/// name (kebab-case), a `VIGIL_*` variable and a TOML key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecuritySettings {
    /// Security protocol of the `listen` listener: PLAINTEXT, SSL,
    /// SASL_PLAINTEXT or SASL_SSL.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_SECURITY_PROTOCOL"))]
    pub security_protocol: String,
    /// A further Kafka listener, `PROTOCOL://host:port` or
    /// `PROTOCOL://host:port@advertised-host:port` (repeatable; the variable
    /// takes a comma-separated list).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_LISTENER", value_delimiter = ',')
    )]
    pub listener: Vec<String>,
    /// PEM certificate chain for TLS listeners (SSL, SASL_SSL, admin TLS).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_TLS_CERT"))]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls-cert`.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_TLS_KEY"))]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates for client certificates (mTLS): SSL listeners
    /// then require a client certificate signed by one of them, and the
    /// principal is the certificate's subject; SASL_SSL listeners accept
    /// one but authenticate with SASL.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_TLS_CLIENT_CA"))]
    pub tls_client_ca: Option<PathBuf>,
    /// Require HTTP Basic credentials (a SCRAM user) on the admin API:
    /// any user may read, only super users may change anything. `/healthz`
    /// stays open.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_ADMIN_AUTH", action = clap::ArgAction::Set)
    )]
    pub admin_auth: bool,
    /// Serve `/metrics` (and `/healthz`) without credentials on this
    /// address too, apart from the admin API.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_METRICS_LISTEN"))]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the admin HTTP API over TLS (with `tls-cert`/`tls-key`).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_ADMIN_TLS", action = clap::ArgAction::Set)
    )]
    pub admin_tls: bool,
    /// SASL mechanisms offered on SASL listeners: PLAIN, SCRAM-SHA-256,
    /// SCRAM-SHA-512 (comma-separated in the variable).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_SASL_MECHANISMS", value_delimiter = ',')
    )]
    pub sasl_mechanisms: Vec<String>,
    /// A super user (repeatable): a SASL user name, or the subject of a
    /// TLS client certificate (`CN=client,O=Example`). Super users may
    /// manage SCRAM credentials; with `VIGIL_BOOTSTRAP_PASSWORD` or
    /// `bootstrap-password-file`, each one without credentials gets them at
    /// startup. The variable separates names with `;` (Kafka's
    /// `super.users` style), as subjects contain commas.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VIGIL_SUPERUSER", value_delimiter = ';')
    )]
    pub superuser: Vec<String>,
    /// File holding the bootstrap password of the super users (instead of
    /// the `VIGIL_BOOTSTRAP_PASSWORD` variable; one line, trailing newline
    /// ignored).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_BOOTSTRAP_PASSWORD_FILE"))]
    pub bootstrap_password_file: Option<PathBuf>,
    /// Longest a SASL session lasts (ms) before the client must
    /// re-authenticate (KIP-368, Kafka's `connections.max.reauth.ms`);
    /// 0: sessions do not expire.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_CONNECTIONS_MAX_REAUTH_MS"))]
    pub connections_max_reauth_ms: u64,
    /// Failed logins one source address may make per
    /// `failed-login-window-ms`; further attempts are refused until the
    /// window ends.
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_MAX_FAILED_LOGINS"))]
    pub max_failed_logins: u32,
    /// The window of `max-failed-logins` (ms).
    #[cfg_attr(feature = "cli", arg(long, env = "VIGIL_FAILED_LOGIN_WINDOW_MS"))]
    pub failed_login_window_ms: u64,
    /// Enforce Kafka ACLs (`on`/`off`): every API checks the principal's
    /// ACLs (super users pass); CreateAcls/DescribeAcls/DeleteAcls manage
    /// them. Off: everyone may do everything, as before.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "VIGIL_AUTHORIZER",
            action = clap::ArgAction::Set,
            value_parser = clap::builder::BoolishValueParser::new()
        )
    )]
    pub authorizer: bool,
}

impl Default for SecuritySettings {
    /// Plaintext, no further listeners, SCRAM offered on SASL listeners
    /// (PLAIN only when asked for: it sends the password itself), sessions
    /// without expiry, 10 failed logins per address per minute.
    fn default() -> Self {
        SecuritySettings {
            security_protocol: "PLAINTEXT".into(),
            listener: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            admin_tls: false,
            admin_auth: false,
            metrics_listen: None,
            sasl_mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()],
            superuser: Vec::new(),
            bootstrap_password_file: None,
            connections_max_reauth_ms: 0,
            max_failed_logins: 10,
            failed_login_window_ms: 60_000,
            authorizer: false,
        }
    }
}

/// Kafka's security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    /// No TLS, no SASL.
    Plaintext,
    /// TLS (principal from the client certificate, if any).
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    fn parse(s: &str) -> Option<SecurityProtocol> {
        [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(s))
    }

    /// Whether connections are wrapped in TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL first.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One Kafka listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// What it speaks.
    pub protocol: SecurityProtocol,
    /// Where it binds (port 0: a free port).
    pub bind: SocketAddr,
    /// `host:port` to advertise, if not derived from `bind`.
    pub advertised: Option<String>,
}

impl ListenerSpec {
    /// The `listener` setting for this listener bound at `addr` (port 0
    /// resolved, so that it is advertised).
    pub fn bound_to(&self, addr: SocketAddr) -> String {
        let mut s = format!("{}://{addr}", self.protocol.name());
        if let Some(a) = &self.advertised {
            s.push('@');
            s.push_str(a);
        }
        s
    }
}

/// SASL mechanisms the broker knows.
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

impl SecuritySettings {
    /// Rejects values that cannot work, naming the setting.
    pub fn validate(&self, server: &ServerSettings) -> Result<(), SettingsError> {
        let listeners = self.kafka_listeners(server)?;
        let needs_tls = listeners.iter().any(|l| l.protocol.tls()) || self.admin_tls;
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(SettingsError::new("tls-key", "tls-cert needs tls-key")),
            (None, Some(_)) => {
                return Err(SettingsError::new("tls-cert", "tls-key needs tls-cert"))
            }
            (None, None) if needs_tls => {
                return Err(SettingsError::new(
                    "tls-cert",
                    "a TLS listener (SSL, SASL_SSL or admin-tls) needs tls-cert and tls-key",
                ))
            }
            _ => {}
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(SettingsError::new(
                "tls-client-ca",
                "needs tls-cert and tls-key",
            ));
        }
        if self.sasl_mechanisms.is_empty() {
            return Err(SettingsError::new(
                "sasl-mechanisms",
                "must name at least one",
            ));
        }
        for m in &self.sasl_mechanisms {
            if !SASL_MECHANISMS.iter().any(|k| k.eq_ignore_ascii_case(m)) {
                return Err(SettingsError::new(
                    "sasl-mechanisms",
                    format!("{m:?} is not one of {}", SASL_MECHANISMS.join(", ")),
                ));
            }
        }
        if self.superuser.iter().any(|u| u.is_empty()) {
            return Err(SettingsError::new("superuser", "empty user name"));
        }
        if self.bootstrap_password_file.is_some() && self.superuser.is_empty() {
            return Err(SettingsError::new(
                "bootstrap-password-file",
                "needs a superuser to bootstrap",
            ));
        }
        if self.max_failed_logins == 0 || self.failed_login_window_ms == 0 {
            return Err(SettingsError::new(
                "max-failed-logins",
                "max-failed-logins and failed-login-window-ms must be greater than zero",
            ));
        }
        Ok(())
    }

    /// Every Kafka listener: `listen` first, then each `listener`.
    pub fn kafka_listeners(
        &self,
        server: &ServerSettings,
    ) -> Result<Vec<ListenerSpec>, SettingsError> {
        let protocol = SecurityProtocol::parse(&self.security_protocol).ok_or_else(|| {
            SettingsError::new(
                "security-protocol",
                format!(
                    "{:?} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                    self.security_protocol
                ),
            )
        })?;
        let mut out = vec![ListenerSpec {
            protocol,
            bind: server.listen,
            advertised: server.advertised_listener.clone(),
        }];
        for spec in &self.listener {
            out.push(parse_listener(spec)?);
        }
        Ok(out)
    }

    /// Whether `name` is offered (case-insensitive).
    pub fn offers(&self, name: &str) -> bool {
        self.sasl_mechanisms
            .iter()
            .any(|m| m.eq_ignore_ascii_case(name))
    }

    /// The failed-login window.
    pub fn failed_login_window(&self) -> Duration {
        Duration::from_millis(self.failed_login_window_ms)
    }

    /// How long a SASL session lasts, if it expires.
    pub fn session_lifetime(&self) -> Option<Duration> {
        (self.connections_max_reauth_ms > 0)
            .then(|| Duration::from_millis(self.connections_max_reauth_ms))
    }
}

fn parse_listener(spec: &str) -> Result<ListenerSpec, SettingsError> {
    let bad = |why: &str| SettingsError::new("listener", format!("{spec:?}: {why}"));
    let (proto, rest) = spec
        .split_once("://")
        .ok_or_else(|| bad("expected PROTOCOL://host:port"))?;
    let protocol = SecurityProtocol::parse(proto)
        .ok_or_else(|| bad("protocol is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))?;
    let (bind, advertised) = match rest.split_once('@') {
        Some((b, a)) => {
            super::server::parse_host_port(a)
                .ok_or_else(|| bad("advertised part is not host:port"))?;
            (b, Some(a.to_string()))
        }
        None => (rest, None),
    };
    let bind = bind
        .parse()
        .map_err(|_| bad("bind address is not ip:port"))?;
    Ok(ListenerSpec {
        protocol,
        bind,
        advertised,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_and_tls_needs_a_certificate() {
        let server = ServerSettings::default();
        let mut s = SecuritySettings {
            listener: vec![
                "SASL_SSL://0.0.0.0:9093@broker-1.example:19093".into(),
                "ssl://127.0.0.1:0".into(),
            ],
            ..SecuritySettings::default()
        };
        let l = s.kafka_listeners(&server).expect("listeners");
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(l[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(l[1].advertised.as_deref(), Some("broker-1.example:19093"));
        assert_eq!(l[2].protocol, SecurityProtocol::Ssl);
        assert_eq!(
            s.validate(&server).expect_err("no cert").setting,
            "tls-cert"
        );
        s.tls_cert = Some("c.pem".into());
        s.tls_key = Some("k.pem".into());
        s.validate(&server).expect("valid with a certificate");
        for bad in [
            "9093",
            "TLS://1.2.3.4:1",
            "SSL://host:1",
            "SSL://1.2.3.4:1@nope",
        ] {
            s.listener = vec![bad.into()];
            assert_eq!(s.validate(&server).expect_err(bad).setting, "listener");
        }
    }

    #[test]
    fn mechanisms_and_bootstrap_are_checked() {
        let server = ServerSettings::default();
        let mut s = SecuritySettings {
            sasl_mechanisms: vec!["GSSAPI".into()],
            ..SecuritySettings::default()
        };
        assert_eq!(
            s.validate(&server).expect_err("gssapi").setting,
            "sasl-mechanisms"
        );
        s.sasl_mechanisms = vec!["plain".into()];
        assert!(s.offers("PLAIN") && !s.offers("SCRAM-SHA-256"));
        s.bootstrap_password_file = Some("pw".into());
        assert_eq!(
            s.validate(&server).expect_err("no superuser").setting,
            "bootstrap-password-file"
        );
        s.superuser = vec!["admin".into()];
        s.validate(&server).expect("valid");
    }
}
