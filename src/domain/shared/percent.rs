//! Percent-decoding as a URL's query carries text: `%XX` escapes decoded
//! and `+` read as a space; a malformed escape is kept as it is. For
//! finding a secret in text that may be URL-encoded (a database URL's
//! query, a leak report's source), never for parsing a request.

/// `text`, decoded (bytes: an escape may make invalid UTF-8).
pub fn decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn escapes_and_pluses_are_decoded_and_malformed_ones_kept() {
        assert_eq!(decode("a%41+%2"), b"aA %2");
        assert_eq!(decode("%zz%4"), b"%zz%4");
        assert_eq!(decode("%C3%A9"), "é".as_bytes());
    }
}
