//! The SDK's error type: a message, because everything a detector reports
//! ends up as text in the host's logs and API responses.

use std::fmt;

/// Result type of detector code; the error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A detector error: a human-readable message the host reports for the
/// failing call (`set_error`).
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    msg: String,
}

impl Error {
    /// An error with message `m`.
    pub fn msg(m: impl fmt::Display) -> Self {
        Error { msg: m.to_string() }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.msg
    }

    /// Prefixes the message with `context: `, for errors that travel up.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error {
            msg: format!("{context}: {}", self.msg),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl fmt::Debug for Error {
    // Debug prints the bare message so `unwrap()` failures in tests read well.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?})", self.msg)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::msg(e)
    }
}

impl From<postcard::Error> for Error {
    fn from(e: postcard::Error) -> Self {
        Error::msg(format!("state encoding: {e}"))
    }
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::msg(e)
    }
}

impl From<vigil_abi::AbiError> for Error {
    fn from(e: vigil_abi::AbiError) -> Self {
        Error::msg(e)
    }
}

impl From<String> for Error {
    fn from(msg: String) -> Self {
        Error { msg }
    }
}

impl From<&str> for Error {
    fn from(msg: &str) -> Self {
        Error::msg(msg)
    }
}

/// Returns early with an [`Error`] built like `format!`:
/// `bail!("threshold must be positive, got {t}")`.
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => {
        return ::core::result::Result::Err($crate::Error::msg(::std::format!($($t)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(x: i32) -> Result<i32> {
        if x < 0 {
            crate::bail!("negative: {x}");
        }
        Ok(x)
    }

    #[test]
    fn bail_and_conversions() {
        assert_eq!(fails(-2).unwrap_err().to_string(), "negative: -2");
        assert_eq!(fails(3).unwrap(), 3);
        let e: Error = "plain".into();
        assert_eq!(e.message(), "plain");
        let e: Error = String::from("owned").into();
        assert_eq!(format!("{e:?}"), "Error(\"owned\")");
        let json: Error = serde_json::from_str::<u8>("x").unwrap_err().into();
        assert!(json.to_string().contains("line 1"), "{json}");
        assert_eq!(
            Error::msg("inner").context("outer").to_string(),
            "outer: inner"
        );
    }
}
