//! RFC 5802 (SHA-1) and RFC 7677 (SHA-256) test vectors, both sides, and
//! the failure cases.

use super::*;

/// One RFC example: password, salt, iterations, nonces and every message.
struct Vector {
    algo: Algo,
    salt: &'static str,
    client_nonce: &'static str,
    server_nonce: &'static str,
    client_first: &'static str,
    server_first: &'static str,
    client_final: &'static str,
    server_final: &'static str,
}

const RFC5802: Vector = Vector {
    algo: Algo::Sha1,
    salt: "QSXCR+Q6sek8bf92",
    client_nonce: "fyko+d2lbbFgONRv9qkxdawL",
    server_nonce: "3rfcNHYJY1ZVvWVs7j",
    client_first: "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    server_first: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    client_final:
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    server_final: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

const RFC7677: Vector = Vector {
    algo: Algo::Sha256,
    salt: "W22ZaJ0SNY7soEsUEjb6gQ==",
    client_nonce: "rOprNGfwEbeRWgbNEkqO",
    server_nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    client_first: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    client_final: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    server_final: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

/// The credential the server would store for the vector's "pencil".
fn stored(v: &Vector) -> Credential {
    let salt = B64.decode(v.salt).expect("vector salt");
    let salted = v.algo.salted_password(b"pencil", &salt, 4096);
    let (stored_key, server_key) = keys(v.algo, &salted);
    Credential {
        // The field only labels the credential; the exchange uses `algo`.
        mechanism: Mechanism::ScramSha256,
        salt,
        stored_key,
        server_key,
        iterations: 4096,
    }
}

fn server(v: &Vector, lookup: Option<Credential>) -> (ServerExchange, Vec<u8>) {
    ServerExchange::start_with(
        v.algo,
        v.client_first.as_bytes(),
        |user| {
            assert_eq!(user, "user");
            lookup
        },
        v.server_nonce,
        || Credential::decoy(Mechanism::ScramSha256),
    )
    .expect("client-first accepted")
}

fn check_server_side(v: &Vector) {
    let (exchange, first) = server(v, Some(stored(v)));
    assert_eq!(String::from_utf8(first).expect("utf8"), v.server_first);
    assert_eq!(exchange.username(), "user");
    let last = exchange
        .finish(v.client_final.as_bytes())
        .expect("proof accepted");
    assert_eq!(String::from_utf8(last).expect("utf8"), v.server_final);
}

fn check_client_side(v: &Vector) {
    let (client, first) = ClientExchange::with_nonce(v.algo, "user", "pencil", v.client_nonce);
    assert_eq!(String::from_utf8(first).expect("utf8"), v.client_first);
    let (verifier, last) = client
        .respond(v.server_first.as_bytes())
        .expect("server-first accepted");
    assert_eq!(String::from_utf8(last).expect("utf8"), v.client_final);
    verifier
        .verify(v.server_final.as_bytes())
        .expect("server signature verifies");
}

#[test]
fn rfc5802_sha1_vector_both_sides() {
    check_server_side(&RFC5802);
    check_client_side(&RFC5802);
}

#[test]
fn rfc7677_sha256_vector_both_sides() {
    check_server_side(&RFC7677);
    check_client_side(&RFC7677);
}

#[test]
fn wrong_proof_and_unknown_user_fail_alike() {
    let v = &RFC7677;
    let tampered = v.client_final.replace("p=dHzb", "p=eHzb");
    let (exchange, _) = server(v, Some(stored(v)));
    assert_eq!(
        exchange.finish(tampered.as_bytes()),
        Err(ScramError::InvalidCredentials)
    );
    // Unknown user: a server-first is still sent (no user enumeration),
    // and the right-looking proof fails at the end.
    let (exchange, first) = server(v, None);
    assert!(String::from_utf8(first).expect("utf8").starts_with("r="));
    assert_eq!(
        exchange.finish(v.client_final.as_bytes()),
        Err(ScramError::InvalidCredentials)
    );
}

#[test]
fn nonce_and_binding_are_checked() {
    let v = &RFC7677;
    let (exchange, _) = server(v, Some(stored(v)));
    let other_nonce = v.client_final.replace("k0,p=", "k1,p=");
    assert_eq!(
        exchange.finish(other_nonce.as_bytes()),
        Err(ScramError::NonceMismatch)
    );
    let cbind = ServerExchange::start(Mechanism::ScramSha256, b"p=tls-unique,,n=u,r=x", |_| None);
    assert!(matches!(cbind, Err(ScramError::ChannelBinding)));
    for bad in [
        "",
        "n,,",
        "n,,r=abc",
        "n,,n=u",
        "x,,n=u,r=a",
        "n,,n=a=41,r=x",
    ] {
        assert!(
            ServerExchange::start(Mechanism::ScramSha256, bad.as_bytes(), |_| None).is_err(),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn generated_credentials_log_in_with_both_mechanisms() {
    for mech in Mechanism::ALL {
        let cred = Credential::new(mech, "s3cret,=pw", MIN_ITERATIONS).expect("credential");
        assert!(cred.verify_password("s3cret,=pw"));
        assert!(!cred.verify_password("s3cret,=pW"));
        let (client, first) = ClientExchange::new(mech, "we,ird=name", "s3cret,=pw");
        let (server, reply) = ServerExchange::start(mech, &first, |u| {
            assert_eq!(u, "we,ird=name");
            Some(cred.clone())
        })
        .expect("start");
        let (verifier, last) = client.respond(&reply).expect("respond");
        let done = server.finish(&last).expect("finish");
        verifier.verify(&done).expect("verify");
        // The wrong password fails the same exchange.
        let (client, first) = ClientExchange::new(mech, "we,ird=name", "guess");
        let (server, reply) =
            ServerExchange::start(mech, &first, |_| Some(cred.clone())).expect("start");
        let (_, last) = client.respond(&reply).expect("respond");
        assert_eq!(server.finish(&last), Err(ScramError::InvalidCredentials));
    }
}

#[test]
fn credentials_from_salted_passwords_are_checked_and_round_trip_as_json() {
    let salt = new_salt();
    let salted =
        salted_password(Mechanism::ScramSha512, "pw", &salt, MIN_ITERATIONS).expect("salted");
    assert_eq!(salted.len(), 64);
    let cred =
        Credential::from_salted_password(Mechanism::ScramSha512, salt.clone(), &salted, 4096)
            .expect("credential");
    assert!(cred.verify_password("pw"));
    let json = serde_json::to_string(&cred).expect("json");
    assert!(!json.contains("\"pw\""));
    assert_eq!(
        serde_json::from_str::<Credential>(&json).expect("parse"),
        cred
    );
    assert!(matches!(
        Credential::from_salted_password(Mechanism::ScramSha256, salt.clone(), &salted, 4096),
        Err(ScramError::SaltedLength { .. })
    ));
    assert_eq!(
        Credential::from_salted_password(Mechanism::ScramSha512, salt.clone(), &salted, 100),
        Err(ScramError::Iterations(100))
    );
    assert_eq!(
        Credential::from_salted_password(Mechanism::ScramSha512, vec![], &salted, 4096),
        Err(ScramError::EmptySalt)
    );
}

#[test]
fn mechanism_names_and_kafka_codes() {
    for m in Mechanism::ALL {
        assert_eq!(Mechanism::from_name(m.name()), Some(m));
        assert_eq!(Mechanism::from_kafka_code(m.kafka_code()), Some(m));
    }
    assert_eq!(
        Mechanism::from_name("scram-sha-512"),
        Some(Mechanism::ScramSha512)
    );
    assert_eq!(Mechanism::from_name("PLAIN"), None);
    assert_eq!(Mechanism::from_kafka_code(0), None);
}
