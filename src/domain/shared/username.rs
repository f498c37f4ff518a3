//! Usernames, normalized the same way wherever they enter: on issue, on
//! authenticate and in resource names.
//!
//! Normalization is trim, NFKC, Unicode default case folding, NFKC again
//! (case folding can denormalize), so "Alice@Example.com", "ａｌｉｃｅ@example.com"
//! and " alice@example.com" are one account. Usernames must also be usable
//! inside a resource name (`accounts/{username}`) and unambiguous on a review
//! page, so whitespace, `/`, control characters and invisible formatting
//! characters are refused rather than silently dropped.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::limits::{USERNAME_INPUT_MAX_BYTES, USERNAME_MAX_BYTES};

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() > USERNAME_INPUT_MAX_BYTES {
            return Err(format!("must be at most {USERNAME_MAX_BYTES} bytes"));
        }
        let composed: String = raw.trim().nfkc().collect();
        let folded: String = caseless::default_case_fold_str(&composed).nfkc().collect();
        if folded.is_empty() {
            return Err("is required".to_owned());
        }
        if folded.len() > USERNAME_MAX_BYTES {
            return Err(format!("must be at most {USERNAME_MAX_BYTES} bytes"));
        }
        if let Some(c) = folded.chars().find(|&c| is_refused(c)) {
            return Err(format!(
                "must not contain whitespace, '/', control or invisible characters (found U+{:04X})",
                u32::from(c)
            ));
        }
        Ok(Self(folded))
    }

    /// A name no account can have (`parse` refuses `/`): a login read by
    /// it finds no account, at the cost of reading one.
    pub(crate) fn nobody() -> Self {
        Self("/".to_owned())
    }

    /// A username read back from storage, where only parsed ones are written.
    pub(crate) fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

fn is_refused(c: char) -> bool {
    c.is_whitespace() || c.is_control() || c == '/' || is_invisible(c)
}

/// Default-ignorable and formatting code points (Unicode's
/// Default_Ignorable_Code_Point plus bidi controls): they render as nothing,
/// so two usernames differing only by them would look identical.
fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_from_other_scripts_stay_apart() {
        // A Cyrillic а (U+0430) is not a Latin a: another account. The
        // README says why latchkey does not fold confusables.
        let latin = Username::parse("alice").unwrap();
        let cyrillic = Username::parse("\u{430}lice").unwrap();
        assert_ne!(latin, cyrillic);
        assert_eq!(Username::parse("ＡＬＩＣＥ").unwrap(), latin);
    }

    fn norm(raw: &str) -> String {
        Username::parse(raw).unwrap().0
    }

    #[test]
    fn case_width_and_composition_variants_are_one_account() {
        assert_eq!(norm("  Alice@Example.COM "), "alice@example.com");
        assert_eq!(norm("ａｌｉｃｅ@example.com"), "alice@example.com");
        assert_eq!(norm("Stra\u{00DF}e"), "strasse");
        assert_eq!(norm("Jose\u{0301}"), norm("Jos\u{00E9}"));
        assert_eq!(norm("ÅNGSTRÖM"), norm("\u{212B}ngstr\u{00F6}m"));
    }

    #[test]
    fn empty_invisible_and_separator_usernames_are_refused() {
        for raw in [
            "",
            "   ",
            "a b",
            "a/b",
            "a\0b",
            "a\u{7}",
            "a\u{200B}b",
            "\u{202E}abc",
            "a\tb",
        ] {
            assert!(Username::parse(raw).is_err(), "{raw:?} was accepted");
        }
        assert!(Username::parse(&"a".repeat(257)).is_err());
        assert!(Username::parse(&"a".repeat(256)).is_ok());
        assert!(Username::parse(&"a".repeat(2000)).is_err());
    }
}
