//! `vigil user create|delete|list`: SCRAM users through the Kafka API
//! (AlterUserScramCredentials, DescribeUserScramCredentials), over any
//! listener: TLS and SASL as the flags say. The new password is salted here;
//! only the salt and the salted password go to the broker, which keeps keys
//! derived from them.
//!
//! Secrets never come from a flag's echo: the new password is read from
//! `--password-file`, `VIGIL_USER_PASSWORD` or a prompt without echo; the
//! login password from `--sasl-password-file` or `VIGIL_SASL_PASSWORD`.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, DescribeUserScramCredentialsRequest, RequestKind,
    ResponseKind, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Serialize;
use vigil_auth::scram::{self, ClientExchange};
use vigil_auth::Mechanism;

use crate::client::KafkaClient;
use crate::output::OutputArgs;

/// How to reach and log in to the broker.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Kafka listener address (host:port).
    #[arg(
        long,
        env = "VIGIL_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap: String,
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    #[arg(
        long,
        env = "VIGIL_CLIENT_SECURITY_PROTOCOL",
        default_value = "PLAINTEXT",
        global = true
    )]
    pub security_protocol: String,
    /// PEM CA certificate(s) to verify the broker's TLS certificate.
    #[arg(long, env = "VIGIL_CLIENT_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate (mTLS).
    #[arg(long, env = "VIGIL_CLIENT_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM key of `--tls-cert`.
    #[arg(long, env = "VIGIL_CLIENT_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// SASL mechanism to log in with: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN.
    #[arg(
        long,
        env = "VIGIL_SASL_MECHANISM",
        default_value = "SCRAM-SHA-512",
        global = true
    )]
    pub sasl_mechanism: String,
    /// User to log in as (a super user).
    #[arg(long, env = "VIGIL_SASL_USERNAME", global = true)]
    pub sasl_username: Option<String>,
    /// File holding the login password (else `VIGIL_SASL_PASSWORD`).
    #[arg(long, env = "VIGIL_SASL_PASSWORD_FILE", global = true)]
    pub sasl_password_file: Option<PathBuf>,
}

/// `vigil user` commands.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user, or set a user's password (SCRAM credentials).
    Create {
        /// User name.
        name: String,
        /// Mechanisms to store credentials for (default: both).
        #[arg(long, value_delimiter = ',')]
        mechanism: Vec<String>,
        /// PBKDF2 iterations (4096..=16384).
        #[arg(long, default_value_t = scram::MIN_ITERATIONS)]
        iterations: u32,
        /// File holding the new password (else `VIGIL_USER_PASSWORD`, else
        /// a prompt without echo, else one line of standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Delete a user's SCRAM credentials.
    Delete {
        /// User name.
        name: String,
        /// Mechanisms to delete (default: every one the user has).
        #[arg(long, value_delimiter = ',')]
        mechanism: Vec<String>,
    },
    /// List users and their SCRAM mechanisms.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Runs a `vigil user` command.
pub async fn run(conn: &ConnArgs, command: UserCommand) -> anyhow::Result<()> {
    let mut client = connect(conn).await?;
    match command {
        UserCommand::Create {
            name,
            mechanism,
            iterations,
            password_file,
        } => {
            let password = new_password(password_file.as_ref())?;
            let mut upsertions = Vec::new();
            for m in mechanisms(&mechanism)? {
                let salt = scram::new_salt();
                let salted = scram::salted_password(m, &password, &salt, iterations)?;
                upsertions.push(
                    ScramCredentialUpsertion::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_mechanism(m.kafka_code())
                        .with_iterations(i32::try_from(iterations).unwrap_or(i32::MAX))
                        .with_salt(Bytes::from(salt))
                        .with_salted_password(Bytes::from(salted)),
                );
            }
            let req = AlterUserScramCredentialsRequest::default().with_upsertions(upsertions);
            alter(&mut client, req).await?;
            println!("user {name}: credentials set");
        }
        UserCommand::Delete { name, mechanism } => {
            let list = if mechanism.is_empty() {
                let users = describe(&mut client).await?;
                let Some(u) = users.into_iter().find(|u| u.user == name) else {
                    bail!("user {name:?} has no SCRAM credentials");
                };
                u.mechanisms
                    .iter()
                    .filter_map(|m| Mechanism::from_name(&m.mechanism))
                    .collect()
            } else {
                mechanisms(&mechanism)?
            };
            let deletions = list
                .into_iter()
                .map(|m| {
                    ScramCredentialDeletion::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_mechanism(m.kafka_code())
                })
                .collect();
            let req = AlterUserScramCredentialsRequest::default().with_deletions(deletions);
            alter(&mut client, req).await?;
            println!("user {name}: credentials deleted");
        }
        UserCommand::List { output } => {
            let users = describe(&mut client).await?;
            output.print(&users, || {
                for u in &users {
                    let m: Vec<String> = u
                        .mechanisms
                        .iter()
                        .map(|m| format!("{} ({} iterations)", m.mechanism, m.iterations))
                        .collect();
                    println!("{:<24} {}", u.user, m.join(", "));
                }
            })?;
        }
    }
    Ok(())
}

fn mechanisms(names: &[String]) -> anyhow::Result<Vec<Mechanism>> {
    if names.is_empty() {
        return Ok(Mechanism::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            Mechanism::from_name(n)
                .with_context(|| format!("{n:?} is not SCRAM-SHA-256 or SCRAM-SHA-512"))
        })
        .collect()
}

/// One user in `vigil user list`.
#[derive(Debug, Serialize)]
struct UserInfo {
    user: String,
    mechanisms: Vec<MechanismInfo>,
}

#[derive(Debug, Serialize)]
struct MechanismInfo {
    mechanism: String,
    iterations: i32,
}

async fn alter(
    client: &mut KafkaClient,
    req: AlterUserScramCredentialsRequest,
) -> anyhow::Result<()> {
    let resp = client
        .call(
            ApiKey::AlterUserScramCredentials,
            0,
            RequestKind::AlterUserScramCredentials(req),
        )
        .await?;
    let ResponseKind::AlterUserScramCredentials(resp) = resp else {
        bail!("the broker answered AlterUserScramCredentials with another response");
    };
    for r in resp.results {
        if r.error_code != 0 {
            bail!(
                "user {}: error {} ({})",
                r.user,
                r.error_code,
                r.error_message.as_deref().unwrap_or("no message")
            );
        }
    }
    Ok(())
}

async fn describe(client: &mut KafkaClient) -> anyhow::Result<Vec<UserInfo>> {
    let resp = client
        .call(
            ApiKey::DescribeUserScramCredentials,
            0,
            RequestKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsRequest::default().with_users(None),
            ),
        )
        .await?;
    let ResponseKind::DescribeUserScramCredentials(resp) = resp else {
        bail!("the broker answered DescribeUserScramCredentials with another response");
    };
    if resp.error_code != 0 {
        bail!(
            "cannot list users: error {} ({})",
            resp.error_code,
            resp.error_message.as_deref().unwrap_or("no message")
        );
    }
    Ok(resp
        .results
        .into_iter()
        .map(|r| UserInfo {
            user: r.user.to_string(),
            mechanisms: r
                .credential_infos
                .into_iter()
                .map(|c| MechanismInfo {
                    mechanism: Mechanism::from_kafka_code(c.mechanism)
                        .map_or_else(|| format!("unknown({})", c.mechanism), |m| m.name().into()),
                    iterations: c.iterations,
                })
                .collect(),
        })
        .collect())
}

/// The new user's password: file, variable, prompt (twice, no echo) or a
/// line of standard input.
fn new_password(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let password = if let Some(f) = file {
        read_secret_file(f)?
    } else if let Ok(p) = std::env::var("VIGIL_USER_PASSWORD") {
        p
    } else if std::io::stdin().is_terminal() {
        let first = prompt("New password: ")?;
        if prompt("Again: ")? != first {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

fn read_secret_file(path: &PathBuf) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

/// Reads a line from the terminal with echo off (`stty -echo`), restoring
/// the terminal afterwards.
fn prompt(text: &str) -> anyhow::Result<String> {
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
    };
    let off = stty("-echo").map(|s| s.success()).unwrap_or(false);
    if !off {
        bail!("cannot turn off terminal echo; use --password-file or VIGIL_USER_PASSWORD");
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    let _ = stty("echo");
    eprintln!();
    read.context("cannot read the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Connects (TLS if the protocol says so) and logs in (SASL if it says so).
async fn connect(conn: &ConnArgs) -> anyhow::Result<KafkaClient> {
    let protocol = conn.security_protocol.to_ascii_uppercase();
    let (tls, sasl) = match protocol.as_str() {
        "PLAINTEXT" => (false, false),
        "SSL" => (true, false),
        "SASL_PLAINTEXT" => (false, true),
        "SASL_SSL" => (true, true),
        other => {
            bail!("--security-protocol {other:?} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        }
    };
    let addr: SocketAddr = conn
        .bootstrap
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", conn.bootstrap))?
        .next()
        .with_context(|| format!("{} resolves to no address", conn.bootstrap))?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let mut client = if tls {
        let host = conn
            .bootstrap
            .rsplit_once(':')
            .map_or(conn.bootstrap.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = ServerName::try_from(host.clone())
            .with_context(|| format!("{host:?} is not a TLS server name"))?;
        let config = tls_config(conn)?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .with_context(|| format!("TLS handshake with {addr} failed"))?;
        KafkaClient::over(addr, Box::new(stream))
    } else {
        KafkaClient::over(addr, Box::new(stream))
    };
    if sasl {
        login(&mut client, conn).await?;
    }
    Ok(client)
}

fn tls_config(conn: &ConnArgs) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let Some(ca) = &conn.tls_ca else {
        bail!("TLS needs --tls-ca (the CA that signed the broker's certificate)");
    };
    for c in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("cannot read {}", ca.display()))?
    {
        roots
            .add(c.with_context(|| format!("bad PEM in {}", ca.display()))?)
            .with_context(|| format!("bad CA certificate in {}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match (&conn.tls_cert, &conn.tls_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("cannot read {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("bad PEM in {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("cannot read the key {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("--tls-cert and --tls-key go together"),
    })
}

async fn login(client: &mut KafkaClient, conn: &ConnArgs) -> anyhow::Result<()> {
    let Some(user) = &conn.sasl_username else {
        bail!("SASL needs --sasl-username (or VIGIL_SASL_USERNAME)");
    };
    let password = match &conn.sasl_password_file {
        Some(f) => read_secret_file(f)?,
        None => std::env::var("VIGIL_SASL_PASSWORD")
            .context("SASL needs --sasl-password-file or VIGIL_SASL_PASSWORD")?,
    };
    let mech = conn.sasl_mechanism.to_ascii_uppercase();
    let resp = client
        .call(
            ApiKey::SaslHandshake,
            1,
            RequestKind::SaslHandshake(
                SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mech.clone())),
            ),
        )
        .await?;
    let ResponseKind::SaslHandshake(h) = resp else {
        bail!("the broker answered SaslHandshake with another response");
    };
    if h.error_code != 0 {
        let offered: Vec<String> = h.mechanisms.iter().map(|m| m.to_string()).collect();
        bail!(
            "the broker refused SASL mechanism {mech} (error {}; it offers {offered:?})",
            h.error_code
        );
    }
    if mech == "PLAIN" {
        step(client, vigil_auth::plain::encode(user, &password)).await?;
        return Ok(());
    }
    let m =
        Mechanism::from_name(&mech).with_context(|| format!("unknown SASL mechanism {mech}"))?;
    let (exchange, first) = ClientExchange::new(m, user, &password);
    let server_first = step(client, first).await?;
    let (verifier, last) = exchange.respond(&server_first)?;
    let server_final = step(client, last).await?;
    verifier.verify(&server_final)?;
    Ok(())
}

/// One SaslAuthenticate round trip.
async fn step(client: &mut KafkaClient, bytes: Vec<u8>) -> anyhow::Result<Bytes> {
    let resp = client
        .call(
            ApiKey::SaslAuthenticate,
            1,
            RequestKind::SaslAuthenticate(
                SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
            ),
        )
        .await?;
    let ResponseKind::SaslAuthenticate(r) = resp else {
        bail!("the broker answered SaslAuthenticate with another response");
    };
    if r.error_code != 0 {
        bail!(
            "authentication failed: {}",
            r.error_message.as_deref().unwrap_or("no message")
        );
    }
    Ok(r.auth_bytes)
}
