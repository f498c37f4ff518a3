//! Lowercase hexadecimal, for the SHA-256 digests that key stored rows.
//! Written out by hand because it runs on every request, where formatting
//! each byte through `format!` showed up in profiles.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

pub fn lower_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::lower_hex;

    #[test]
    fn matches_the_formatter() {
        let bytes: Vec<u8> = (0..=255).collect();
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(lower_hex(&bytes), expected);
        assert_eq!(lower_hex(&[]), "");
    }
}
