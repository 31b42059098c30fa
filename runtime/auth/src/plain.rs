//! SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd` in one message.

/// The parts of a PLAIN message.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    /// The identity to act as (empty: the same as `username`).
    pub authzid: &'a str,
    /// Who is logging in.
    pub username: &'a str,
    /// The password, as sent.
    pub password: &'a str,
}

/// Why a PLAIN message was refused before any password was checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    /// Not three NUL-separated UTF-8 fields with a user name and password.
    #[error("malformed SASL/PLAIN message: {0}")]
    Malformed(&'static str),
    /// Acting as another user is not supported (as in Kafka).
    #[error("SASL/PLAIN authorization id {authzid:?} differs from the user name {username:?}")]
    AuthzidMismatch {
        /// The requested identity.
        authzid: String,
        /// The authenticating user.
        username: String,
    },
}

/// Parses a PLAIN message.
pub fn parse(message: &[u8]) -> Result<PlainMessage<'_>, PlainError> {
    let text = std::str::from_utf8(message).map_err(|_| PlainError::Malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed(
            "expected authzid NUL user NUL password",
        ));
    };
    if username.is_empty() {
        return Err(PlainError::Malformed("empty user name"));
    }
    if password.is_empty() {
        return Err(PlainError::Malformed("empty password"));
    }
    if !authzid.is_empty() && authzid != username {
        return Err(PlainError::AuthzidMismatch {
            authzid: authzid.to_string(),
            username: username.to_string(),
        });
    }
    Ok(PlainMessage {
        authzid,
        username,
        password,
    })
}

/// A PLAIN message for `username` and `password` (client side).
pub fn encode(username: &str, password: &str) -> Vec<u8> {
    format!("\0{username}\0{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rfc_4616_forms() {
        let m = parse(b"\0tim\0tanstaaftanstaaf").expect("valid");
        assert_eq!((m.username, m.password), ("tim", "tanstaaftanstaaf"));
        let m = parse(b"Ursel\0Ursel\0pw").expect("same authzid");
        assert_eq!(m.authzid, "Ursel");
        assert_eq!(parse(&encode("a", "b")).expect("round trip").username, "a");
    }

    #[test]
    fn refuses_malformed_and_impersonation() {
        assert!(matches!(parse(b"\0tim"), Err(PlainError::Malformed(_))));
        assert!(matches!(parse(b"\0\0pw"), Err(PlainError::Malformed(_))));
        assert!(matches!(parse(b"\0u\0"), Err(PlainError::Malformed(_))));
        assert!(matches!(parse(b"\0u\0p\0x"), Err(PlainError::Malformed(_))));
        assert!(matches!(parse(b"\0u\0\xff"), Err(PlainError::Malformed(_))));
        assert!(matches!(
            parse(b"admin\0tim\0pw"),
            Err(PlainError::AuthzidMismatch { .. })
        ));
    }
}
