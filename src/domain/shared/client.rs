//! How a client identified itself at sign-in (an IMAP ID's name and
//! version, an HTTP User-Agent), recorded with an app password's last use so
//! a person reviewing their app passwords recognises "Thunderbird 115".
//! It is what the client says, not a proof of anything.

use std::fmt;

use super::limits::check_text;

/// A client's self-description: trimmed, at most 128 characters, no
/// control characters (it is shown on review pages and written to logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientName(String);

impl ClientName {
    pub const MAX_CHARS: usize = 128;

    /// `None` for an empty one.
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        check_text(trimmed, Self::MAX_CHARS)?;
        Ok(Some(Self(trimmed.to_owned())))
    }

    /// A name from a header the end user writes (an HTTP `User-Agent`),
    /// made fit to show instead of refused: it only labels a use on review
    /// pages, so a sign-in is never refused for it. Bytes that are not
    /// UTF-8 become U+FFFD, control characters a space; the result is
    /// trimmed and, past [`Self::MAX_CHARS`] characters, cut, ending in
    /// "…". `None` when nothing is left.
    pub fn from_header(raw: &[u8]) -> Option<Self> {
        let text: String = String::from_utf8_lossy(raw)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return None;
        }
        if trimmed.chars().count() <= Self::MAX_CHARS {
            return Some(Self(trimmed.to_owned()));
        }
        let mut cut: String = trimmed.chars().take(Self::MAX_CHARS - 1).collect();
        cut.truncate(cut.trim_end().len());
        cut.push('…');
        Some(Self(cut))
    }

    /// A name read back from storage, where only parsed ones are written.
    pub(crate) fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::ClientName;

    #[test]
    fn bounded_and_printable() {
        assert_eq!(
            ClientName::parse("  Thunderbird 115.3 ")
                .unwrap()
                .unwrap()
                .as_str(),
            "Thunderbird 115.3"
        );
        assert_eq!(ClientName::parse("").unwrap(), None);
        assert!(ClientName::parse("a\\nb").is_ok(), "a backslash is text");
        assert!(ClientName::parse("a\nb").is_err());
        assert!(ClientName::parse("\u{7}").is_err());
        assert!(ClientName::parse(&"x".repeat(129)).is_err());
        assert!(ClientName::parse(&"é".repeat(128)).is_ok());
    }

    #[test]
    fn a_header_is_cleaned_and_cut_never_refused() {
        let shown = |raw: &[u8]| ClientName::from_header(raw).map(|c| c.0);
        assert_eq!(shown(b" DAVx5/4.3 ").as_deref(), Some("DAVx5/4.3"));
        assert_eq!(shown(b"   "), None);
        assert_eq!(
            shown("Mail/1 (ünï)".as_bytes()).as_deref(),
            Some("Mail/1 (ünï)")
        );
        assert_eq!(
            shown(b"Mail/1 (\xe9t\xe9)").as_deref(),
            Some("Mail/1 (\u{fffd}t\u{fffd})")
        );
        assert_eq!(shown(b"a\tb\x7fc").as_deref(), Some("a b c"));
        let long = shown("é".repeat(300).as_bytes()).unwrap();
        assert_eq!(long.chars().count(), ClientName::MAX_CHARS);
        assert!(long.ends_with("é…"));
        let exact = "x".repeat(ClientName::MAX_CHARS);
        assert_eq!(shown(exact.as_bytes()), Some(exact));
        for raw in [&b"\xff\xfe"[..], b"a\x01b", &[b'y'; 5000][..]] {
            let name = ClientName::from_header(raw).unwrap();
            assert!(
                ClientName::parse(name.as_str()).unwrap().is_some(),
                "{raw:?}"
            );
        }
    }
}
