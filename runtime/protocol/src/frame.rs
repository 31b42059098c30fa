//! Length-prefixed framing: every Kafka request and response is a big-endian
//! `i32` size followed by that many bytes.

use bytes::{Buf, Bytes, BytesMut};

/// Largest request frame accepted by a [`FrameDecoder::default`]: Kafka's
/// `socket.request.max.bytes`. The broker passes its own, lower limit
/// (derived from `message.max.bytes`); this default serves tools and tests.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Why a byte stream could not be split into frames. Both variants mean the
/// stream is unusable: the connection must be closed, since there is no way to
/// find the start of the next frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The size prefix is larger than the configured limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes (socket.request.max.bytes); closing the connection")]
    TooLarge {
        /// Declared size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The size prefix is negative.
    #[error("frame size {0} is negative; the stream is not Kafka protocol")]
    Negative(i32),
}

/// What the front of a read buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Nothing, or part of a frame: `total` (prefix included) once the size
    /// prefix is in.
    Partial {
        /// Bytes of the whole frame, prefix included, if known yet.
        total: Option<usize>,
    },
    /// A whole frame, ready for [`FrameDecoder::decode`].
    Complete,
}

/// Incremental frame splitter over a growing read buffer.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FrameDecoder {
    /// A decoder that rejects frames larger than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// Bytes still needed before the next frame is complete, if the prefix is
    /// known; lets the caller reserve buffer space once instead of growing it
    /// in small steps.
    pub fn pending_len(&self, buf: &[u8]) -> Option<usize> {
        if buf.len() < 4 {
            return None;
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        usize::try_from(size).ok().map(|s| s + 4)
    }

    /// Whether `buf` starts with a whole frame, checking the size prefix as
    /// soon as it is in, so that a hostile size is refused before its body.
    pub fn head(&self, buf: &[u8]) -> Result<Head, FrameError> {
        if buf.len() < 4 {
            return Ok(Head::Partial { total: None });
        }
        let size = self.checked_size(buf)?;
        if buf.len() < 4 + size {
            return Ok(Head::Partial {
                total: Some(4 + size),
            });
        }
        Ok(Head::Complete)
    }

    fn checked_size(&self, buf: &[u8]) -> Result<usize, FrameError> {
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let size = usize::try_from(size).map_err(|_| FrameError::Negative(size))?;
        if size > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                size,
                limit: self.max_frame_bytes,
            });
        }
        Ok(size)
    }

    /// Splits one complete frame (without its size prefix) off the front of
    /// `buf`, or returns `Ok(None)` when more bytes are needed. A bad prefix is
    /// reported before its body arrives, so a hostile size never makes the
    /// caller buffer gigabytes.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let size = self.checked_size(buf)?;
        if buf.len() < 4 + size {
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(size).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_and_waits_for_more() {
        let d = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&[0, 0, 0, 3, b'a', b'b'][..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&[b'c', 0, 0, 0, 1]);
        assert_eq!(d.decode(&mut buf), Ok(Some(Bytes::from_static(b"abc"))));
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"z");
        assert_eq!(d.decode(&mut buf), Ok(Some(Bytes::from_static(b"z"))));
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_oversized_and_negative_prefixes_before_the_body() {
        let d = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::TooLarge {
                size: 0x7fff_ffff,
                limit: 16
            })
        );
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert_eq!(d.decode(&mut buf), Err(FrameError::Negative(-2)));
    }

    #[test]
    fn head_tells_partial_from_complete_and_checks_the_prefix_early() {
        let d = FrameDecoder::new(16);
        assert_eq!(d.head(&[0, 0]), Ok(Head::Partial { total: None }));
        assert_eq!(
            d.head(&[0, 0, 0, 3, b'a']),
            Ok(Head::Partial { total: Some(7) })
        );
        assert_eq!(d.head(&[0, 0, 0, 1, b'a', 0]), Ok(Head::Complete));
        assert_eq!(
            d.head(&[0, 0, 0, 17]),
            Err(FrameError::TooLarge {
                size: 17,
                limit: 16
            })
        );
        assert_eq!(
            d.head(&[0x80, 0, 0, 0]),
            Err(FrameError::Negative(i32::MIN))
        );
    }
}
