//! Snapshot encoding for detector state.
//!
//! [postcard](https://docs.rs/postcard) is compact and deterministic, and its
//! format is the same natively and in wasm, so a snapshot taken by one
//! module build restores in the next as long as the state type is
//! unchanged. Add new fields at the end, wrapped in a versioned enum, if the
//! state must evolve.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Result;

/// Encodes `v` for [`Detector::snapshot`](crate::Detector::snapshot).
pub fn to_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    Ok(postcard::to_allocvec(v)?)
}

/// Decodes what [`to_bytes`] produced, for
/// [`Detector::restore`](crate::Detector::restore).
pub fn from_bytes<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    Ok(postcard::from_bytes(b)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_garbage() {
        let v = (1u32, String::from("x"), vec![1.5f64, -0.0]);
        let b = super::to_bytes(&v).unwrap();
        let back: (u32, String, Vec<f64>) = super::from_bytes(&b).unwrap();
        assert_eq!(back, v);
        let err = super::from_bytes::<(u32, String)>(&[0xff]).unwrap_err();
        assert!(err.to_string().starts_with("state encoding"), "{err}");
    }
}
