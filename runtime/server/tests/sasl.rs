//! SASL on a live broker, over the wire: the gate before authentication,
//! SCRAM and PLAIN logins against bootstrapped and API-created users,
//! failures closing the connection, super-user-only user management, and
//! credentials surviving a restart (they live in the log's state).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use vigil_auth::scram::{self, ClientExchange};
use vigil_auth::Mechanism;
use vigil_server::server::{self, Running};
use vigil_server::{Components, Settings};

use crate::common;

use common::Client;

const ADMIN_PW: &str = "bootstrap-pw";

async fn start(dir: &std::path::Path) -> Running {
    let pw = dir.join("bootstrap-password");
    std::fs::write(&pw, format!("{ADMIN_PW}\n")).expect("write password file");
    let mut settings = Settings::embedded(dir.join("data"));
    settings.security.listener = vec!["SASL_PLAINTEXT://127.0.0.1:0".into()];
    settings.security.sasl_mechanisms = vec![
        "PLAIN".into(),
        "SCRAM-SHA-256".into(),
        "SCRAM-SHA-512".into(),
    ];
    settings.security.superuser = vec!["admin".into()];
    settings.security.bootstrap_password_file = Some(pw);
    let components = Components::from_settings(&settings).expect("components");
    server::start(settings, components).await.expect("start")
}

async fn handshake(c: &mut Client, mechanism: &str) -> SaslHandshakeResponse {
    let req =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into()));
    match c
        .call(ApiKey::SaslHandshake, 1, RequestKind::SaslHandshake(req))
        .await
    {
        ResponseKind::SaslHandshake(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

async fn authenticate(c: &mut Client, bytes: Vec<u8>) -> SaslAuthenticateResponse {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
    match c
        .call(
            ApiKey::SaslAuthenticate,
            2,
            RequestKind::SaslAuthenticate(req),
        )
        .await
    {
        ResponseKind::SaslAuthenticate(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

/// A full SCRAM login; `Err(error code)` if the broker refused it.
async fn scram_login(c: &mut Client, m: Mechanism, user: &str, pw: &str) -> Result<(), i16> {
    assert_eq!(handshake(c, m.name()).await.error_code, 0);
    let (client, first) = ClientExchange::new(m, user, pw);
    let r = authenticate(c, first).await;
    assert_eq!(
        r.error_code, 0,
        "client-first refused: {:?}",
        r.error_message
    );
    let (verifier, last) = client.respond(&r.auth_bytes).expect("server-first");
    let r = authenticate(c, last).await;
    if r.error_code != 0 {
        return Err(r.error_code);
    }
    verifier.verify(&r.auth_bytes).expect("server signature");
    Ok(())
}

async fn metadata(c: &mut Client) -> MetadataResponse {
    match c
        .call(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default()),
        )
        .await
    {
        ResponseKind::Metadata(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

async fn closed(c: &mut Client) -> bool {
    tokio::time::timeout(Duration::from_secs(10), c.recv_raw())
        .await
        .expect("the broker neither answered nor closed")
        .is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_gate_logins_and_user_management() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let sasl = broker.kafka_addrs[1];

    // Before authentication: ApiVersions is answered, Metadata closes.
    let mut c = Client::connect(sasl).await;
    let v = c
        .call(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await;
    assert!(matches!(v, ResponseKind::ApiVersions(r) if r.error_code == 0));
    let frame = common::request_frame(
        ApiKey::Metadata,
        12,
        99,
        &RequestKind::Metadata(MetadataRequest::default()),
    );
    c.send_raw(&frame).await;
    assert!(closed(&mut c).await, "Metadata before SASL was answered");

    // The bootstrapped super user logs in with SCRAM-SHA-512; metadata then
    // advertises the SASL listener itself.
    let mut admin = Client::connect(sasl).await;
    scram_login(&mut admin, Mechanism::ScramSha512, "admin", ADMIN_PW)
        .await
        .expect("admin login");
    let md = metadata(&mut admin).await;
    assert_eq!(md.brokers[0].port, i32::from(sasl.port()));

    // The super user creates bob (SCRAM-SHA-256 only) from a salted password.
    let salt = scram::new_salt();
    let salted =
        scram::salted_password(Mechanism::ScramSha256, "bob-pw", &salt, 8192).expect("salt");
    let up = ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_static_str("bob"))
        .with_mechanism(Mechanism::ScramSha256.kafka_code())
        .with_iterations(8192)
        .with_salt(Bytes::from(salt))
        .with_salted_password(Bytes::from(salted));
    let bad = up
        .clone()
        .with_name(StrBytes::from_static_str("carol"))
        .with_iterations(10);
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![up, bad]);
    let resp = match admin
        .call(
            ApiKey::AlterUserScramCredentials,
            0,
            RequestKind::AlterUserScramCredentials(req),
        )
        .await
    {
        ResponseKind::AlterUserScramCredentials(r) => r,
        other => panic!("unexpected {other:?}"),
    };
    let codes: Vec<(String, i16)> = resp
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect();
    assert!(codes.contains(&("bob".into(), 0)), "{codes:?}");
    assert!(
        codes.contains(&("carol".into(), ResponseError::UnacceptableCredential.code())),
        "{codes:?}"
    );

    // bob: right password works with SCRAM-SHA-256 and PLAIN; SCRAM-SHA-512
    // has no credential; a wrong password fails and closes the connection.
    let mut bob = Client::connect(sasl).await;
    scram_login(&mut bob, Mechanism::ScramSha256, "bob", "bob-pw")
        .await
        .expect("bob login");
    assert!(metadata(&mut bob).await.brokers.len() == 1);
    // bob is no super user.
    let req = DescribeUserScramCredentialsRequest::default().with_users(None);
    match bob
        .call(
            ApiKey::DescribeUserScramCredentials,
            0,
            RequestKind::DescribeUserScramCredentials(req),
        )
        .await
    {
        ResponseKind::DescribeUserScramCredentials(r) => {
            assert_eq!(
                r.error_code,
                ResponseError::ClusterAuthorizationFailed.code()
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut plain = Client::connect(sasl).await;
    assert_eq!(handshake(&mut plain, "PLAIN").await.error_code, 0);
    assert_eq!(
        authenticate(&mut plain, vigil_auth::plain::encode("bob", "bob-pw"))
            .await
            .error_code,
        0
    );
    let mut wrong = Client::connect(sasl).await;
    assert_eq!(
        scram_login(&mut wrong, Mechanism::ScramSha256, "bob", "guess").await,
        Err(ResponseError::SaslAuthenticationFailed.code())
    );
    assert!(
        closed(&mut wrong).await,
        "a failed login left the connection open"
    );
    let mut other = Client::connect(sasl).await;
    assert_eq!(
        scram_login(&mut other, Mechanism::ScramSha512, "bob", "bob-pw").await,
        Err(ResponseError::SaslAuthenticationFailed.code())
    );

    // Credentials live in the log's state: after a restart bob still logs in,
    // and admin lists him.
    broker.shutdown().await;
    let broker = start(dir.path()).await;
    let sasl = broker.kafka_addrs[1];
    let mut bob = Client::connect(sasl).await;
    scram_login(&mut bob, Mechanism::ScramSha256, "bob", "bob-pw")
        .await
        .expect("bob after restart");
    let mut admin = Client::connect(sasl).await;
    scram_login(&mut admin, Mechanism::ScramSha512, "admin", ADMIN_PW)
        .await
        .expect("admin");
    let req = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
        UserName::default().with_name(StrBytes::from_static_str("bob")),
    ]));
    match admin
        .call(
            ApiKey::DescribeUserScramCredentials,
            0,
            RequestKind::DescribeUserScramCredentials(req),
        )
        .await
    {
        ResponseKind::DescribeUserScramCredentials(r) => {
            assert_eq!(r.results.len(), 1);
            let info = &r.results[0].credential_infos;
            assert_eq!(info.len(), 1);
            assert_eq!((info[0].mechanism, info[0].iterations), (1, 8192));
        }
        other => panic!("unexpected {other:?}"),
    }
    broker.shutdown().await;
}
