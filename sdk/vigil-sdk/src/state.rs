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

/// Marks a tagged snapshot (bytes written before tags existed have none).
const MAGIC: &[u8; 4] = b"VGS1";

fn identity<T: crate::Detector>() -> (&'static str, &'static str) {
    (std::any::type_name::<T>(), T::STATE_FORMAT)
}

/// Prefixes snapshot bytes with the detector type and
/// [`STATE_FORMAT`](crate::Detector::STATE_FORMAT) that wrote them.
pub fn tag<T: crate::Detector>(payload: &[u8]) -> Vec<u8> {
    let (ty, format) = identity::<T>();
    let mut out = Vec::with_capacity(payload.len() + ty.len() + format.len() + 8);
    out.extend_from_slice(MAGIC);
    for part in [ty, format] {
        // Type paths and format strings are short; longer ones are cut,
        // which only makes the comparison stricter.
        let b = &part.as_bytes()[..part.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(b.len() as u16).to_le_bytes());
        out.extend_from_slice(b);
    }
    out.extend_from_slice(payload);
    out
}

/// The payload of a snapshot this detector can restore: tagged with its own
/// type and state format, or untagged (older SDKs, restored as before).
/// `None`: written by another detector or state format.
pub fn untag<T: crate::Detector>(bytes: &[u8]) -> Option<&[u8]> {
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Some(bytes);
    };
    let (ty, format) = identity::<T>();
    for want in [ty, format] {
        let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
        let got = rest.get(2..2 + len)?;
        if got != &want.as_bytes()[..want.len().min(u16::MAX as usize)] {
            return None;
        }
        rest = &rest[2 + len..];
    }
    Some(rest)
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

    struct A;
    struct B;
    impl crate::Detector for A {
        type Config = ();
        fn new(_: ()) -> crate::Result<Self> {
            Ok(A)
        }
        fn process(&mut self, _: &crate::Batch, _: &mut crate::Alerts) -> crate::Result<()> {
            Ok(())
        }
    }
    impl crate::Detector for B {
        type Config = ();
        const STATE_FORMAT: &'static str = "2";
        fn new(_: ()) -> crate::Result<Self> {
            Ok(B)
        }
        fn process(&mut self, _: &crate::Batch, _: &mut crate::Alerts) -> crate::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn tags_decline_other_detectors_and_formats() {
        let t = super::tag::<A>(b"state");
        assert_eq!(super::untag::<A>(&t), Some(&b"state"[..]));
        assert_eq!(super::untag::<B>(&t), None, "another type must be declined");
        // Untagged (pre-tag SDK) bytes pass through unchanged.
        assert_eq!(super::untag::<B>(b"raw"), Some(&b"raw"[..]));
        // A truncated tag is declined, not misread.
        for cut in 4..t.len() - 5 {
            assert_eq!(super::untag::<A>(&t[..cut]), None, "cut at {cut}");
        }
    }
}
