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
}
