//! The optional `vigil.detector` custom section: JSON
//! `{"name": .., "version": .., "sdk": ..}` the SDK's macro embeds.
//!
//! wasmtime does not expose custom sections, so this walks the section list
//! itself. It is best effort: anything malformed yields no metadata (the
//! compiler reports malformed modules).

/// Name of the custom section.
pub const SECTION: &str = "vigil.detector";

/// What the custom section says.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct Meta {
    pub(crate) name: Option<String>,
    pub(crate) version: Option<String>,
    #[allow(dead_code)]
    pub(crate) sdk: Option<String>,
}

fn leb_u32(b: &[u8], pos: &mut usize) -> Option<u32> {
    let mut v: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The payload of the first custom section called `name`.
fn custom_section<'a>(wasm: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut pos = 8; // magic + version
    while pos < wasm.len() {
        let id = wasm[pos];
        pos += 1;
        let size = leb_u32(wasm, &mut pos)? as usize;
        let end = pos.checked_add(size).filter(|e| *e <= wasm.len())?;
        if id == 0 {
            let mut p = pos;
            let n = leb_u32(wasm, &mut p)? as usize;
            let name_end = p.checked_add(n).filter(|e| *e <= end)?;
            if &wasm[p..name_end] == name.as_bytes() {
                return Some(&wasm[name_end..end]);
            }
        }
        pos = end;
    }
    None
}

/// Reads the metadata section, if present and valid JSON.
pub(crate) fn read(wasm: &[u8]) -> Meta {
    custom_section(wasm, SECTION)
        .and_then(|payload| serde_json::from_slice(payload).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_section_and_ignores_garbage() {
        let wasm = wat::parse_str(
            r#"(module (@custom "vigil.detector" "{\"name\":\"zscore\",\"version\":\"1.2.0\",\"sdk\":\"0.1.0\"}"))"#,
        )
        .unwrap();
        let m = read(&wasm);
        assert_eq!(m.name.as_deref(), Some("zscore"));
        assert_eq!(m.version.as_deref(), Some("1.2.0"));
        assert_eq!(read(b"\0asm\x01\0\0\0\0\xff\xff"), Meta::default());
        assert_eq!(read(&wat::parse_str("(module)").unwrap()), Meta::default());
    }
}
