//! Little-endian reader/writer for the ABI's framing.

use crate::AbiError;

/// Marks an absent optional byte string.
pub(crate) const ABSENT: u32 = u32::MAX;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], AbiError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(AbiError::Truncated {
                at: self.pos,
                needed: n,
                len: self.buf.len(),
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AbiError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, AbiError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, AbiError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, AbiError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, AbiError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub(crate) fn f64(&mut self) -> Result<f64, AbiError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    pub(crate) fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, AbiError> {
        match self.u32()? {
            ABSENT => Ok(None),
            n => self.take(n as usize).map(Some),
        }
    }

    pub(crate) fn str32(&mut self, what: &'static str) -> Result<&'a str, AbiError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| AbiError::Utf8(what))
    }

    pub(crate) fn str16(&mut self, what: &'static str) -> Result<&'a str, AbiError> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| AbiError::Utf8(what))
    }
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn len32(n: usize, what: &'static str) -> Result<u32, AbiError> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n != ABSENT)
        .ok_or(AbiError::TooLarge(what))
}

pub(crate) fn put_opt_bytes(
    out: &mut Vec<u8>,
    b: Option<&[u8]>,
    what: &'static str,
) -> Result<(), AbiError> {
    match b {
        None => put_u32(out, ABSENT),
        Some(b) => {
            put_u32(out, len32(b.len(), what)?);
            out.extend_from_slice(b);
        }
    }
    Ok(())
}

pub(crate) fn put_str16(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), AbiError> {
    let n = u16::try_from(s.len()).map_err(|_| AbiError::TooLarge(what))?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}
