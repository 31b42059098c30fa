//! The subject of an X.509 certificate as a string in RFC 2253 form
//! (`CN=client,O=Example,C=DE`), which is the principal name Kafka's default
//! principal builder gives a TLS client. Only the DER path to the subject is
//! walked; the certificate itself has already been verified by rustls.

/// Why a subject could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the certificate subject: {0}")]
pub struct X509Error(&'static str);

/// One DER element: tag, contents, and what follows it.
fn element(der: &[u8]) -> Result<(u8, &[u8], &[u8]), X509Error> {
    let (&tag, rest) = der.split_first().ok_or(X509Error("truncated"))?;
    let (&first, rest) = rest.split_first().ok_or(X509Error("truncated length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(X509Error("bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(X509Error("truncated contents"));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// The contents of the element at the front of `der`, which must have `tag`.
fn expect(der: &[u8], tag: u8) -> Result<(&[u8], &[u8]), X509Error> {
    let (t, contents, rest) = element(der)?;
    if t != tag {
        return Err(X509Error("unexpected tag"));
    }
    Ok((contents, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject of a DER certificate, RFC 2253 style.
pub fn subject(cert_der: &[u8]) -> Result<String, X509Error> {
    let (cert, _) = expect(cert_der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    // Optional explicit [0] version.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, then the subject.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (name, _) = expect(rest, SEQUENCE)?;
    format_name(name)
}

/// RDNs in reverse order (RFC 2253), multi-valued ones joined by `+`.
fn format_name(mut name: &[u8]) -> Result<String, X509Error> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (mut set, rest) = expect(name, SET)?;
        name = rest;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (atv, rest) = expect(set, SEQUENCE)?;
            set = rest;
            let (oid, value) = expect(atv, OID)?;
            let (tag, contents, _) = element(value)?;
            let key = oid_name(oid);
            let text = match string_value(tag, contents) {
                Some(s) => escape(&s),
                // Not a string: RFC 2253 writes the DER as hex.
                None => {
                    let der = &value[..value.len() - element(value)?.2.len()];
                    format!("#{}", hex(der))
                }
            };
            parts.push(format!("{key}={text}"));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn string_value(tag: u8, contents: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, T61String, IA5String
        0x0c | 0x13 | 0x14 | 0x16 => std::str::from_utf8(contents).ok().map(str::to_string),
        // BMPString (UTF-16BE)
        0x1e => {
            let units: Vec<u16> = contents
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 2253 escaping of an attribute value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The short name of an attribute type, or its dotted OID.
fn oid_name(oid: &[u8]) -> String {
    let dotted = dotted(oid);
    let short = match dotted.as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        _ => return dotted,
    };
    short.to_string()
}

fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if contents.len() < 0x80 {
            out.push(contents.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(contents.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(contents);
        out
    }

    fn atv(oid: &[u8], tag: u8, value: &str) -> Vec<u8> {
        tlv(
            SET,
            &tlv(
                SEQUENCE,
                &[tlv(OID, oid), tlv(tag, value.as_bytes())].concat(),
            ),
        )
    }

    /// A certificate skeleton: only the fields before the subject matter.
    fn cert(subject: Vec<u8>) -> Vec<u8> {
        let tbs = [
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[1; 20]),
            tlv(SEQUENCE, &tlv(OID, &[0x2a, 0x86, 0x48])),
            tlv(SEQUENCE, &atv(&[0x55, 4, 3], 0x0c, "issuer")),
            tlv(SEQUENCE, &[tlv(0x17, b"x"), tlv(0x17, b"y")].concat()),
            tlv(SEQUENCE, &subject),
            tlv(SEQUENCE, &[0; 200]),
        ]
        .concat();
        tlv(SEQUENCE, &tlv(SEQUENCE, &tbs))
    }

    #[test]
    fn subject_in_rfc2253_order_with_escapes() {
        let subject = [
            atv(&[0x55, 4, 6], 0x13, "DE"),
            atv(&[0x55, 4, 10], 0x0c, "Acme, Inc"),
            atv(&[0x55, 4, 3], 0x0c, "client-1"),
        ]
        .concat();
        assert_eq!(subject_of(&cert(subject)), "CN=client-1,O=Acme\\, Inc,C=DE");
    }

    #[test]
    fn unknown_attributes_keep_their_oid() {
        let subject = atv(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 1], 0x16, "a@b");
        assert_eq!(subject_of(&cert(subject)), "1.2.840.113549.1.9.1=a@b");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(subject(&[]).is_err());
        assert!(subject(&[0x30, 0x05, 0x30]).is_err());
        assert!(subject(&tlv(SEQUENCE, &tlv(SEQUENCE, &[0x02, 0x01, 0x01]))).is_err());
    }

    fn subject_of(der: &[u8]) -> String {
        subject(der).expect("subject")
    }
}
