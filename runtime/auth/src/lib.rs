//! Authentication for vigil, free of I/O so that the broker and the CLI
//! share one implementation and it can be tested against the RFC vectors:
//!
//! - [`scram`]: SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the
//!   server side of an exchange, the client side (for `vigil user`), and the
//!   salted [`Credential`](scram::Credential) the broker stores instead of a
//!   password;
//! - [`plain`]: the SASL PLAIN message (RFC 4616), checked against the same
//!   salted credentials;
//! - [`x509`]: the subject of a TLS client certificate, as the principal name
//!   Kafka gives it (RFC 2253 form);
//! - [`limiter`]: failed-login accounting per source address;
//! - [`acl`]: Kafka ACL bindings, filters and the allow/deny decision.

pub mod acl;
pub mod limiter;
pub mod plain;
pub mod scram;
pub mod x509;

pub use limiter::LoginLimiter;
pub use scram::{Credential, Mechanism, ScramError};
