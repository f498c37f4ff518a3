//! App password secrets: generated, parsed and formatted.
//!
//! A secret is 28 lowercase letters, shown as seven groups of four. The first
//! group is the *selector*: it is stored in plain text, unique within its
//! account, and leads Authenticate to the one record to verify, so a login
//! costs one argon2 verification whatever the number of passwords. The other
//! 24 letters carry 24 × log2(26) ≈ 112.8 bits that even someone who knows
//! the selector must guess, meeting the brief's 112-bit floor on their own.
//! Lowercase letters are what a person can type on a phone keyboard without
//! switching layouts.

use std::fmt;

use zeroize::Zeroizing;

use crate::domain::shared::error::Result;
use crate::domain::shared::random;

const ALPHABET: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
pub const SELECTOR_LEN: usize = 4;
pub const SECRET_LEN: usize = 28;
const GROUP_LEN: usize = 4;

/// A well-formed app password. Its memory is wiped on drop and its `Debug`
/// shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Draws a fresh secret from the operating system's CSPRNG; every
    /// letter is exactly uniform (`random::pick` rejects biased draws).
    pub fn generate() -> Result<Self> {
        let mut letters = Zeroizing::new(String::with_capacity(SECRET_LEN));
        random::pick(ALPHABET, SECRET_LEN, &mut letters)?;
        Ok(Self(letters))
    }

    /// Reads a secret as a person typed it: spaces, dashes and letter case
    /// are ignored. `None` for anything that cannot be an app password.
    pub fn parse(input: &str) -> Option<Self> {
        let mut letters = Zeroizing::new(String::with_capacity(SECRET_LEN));
        for c in input.chars() {
            if c == '-' || c.is_ascii_whitespace() {
                continue;
            }
            if !c.is_ascii_alphabetic() || letters.len() == SECRET_LEN {
                return None;
            }
            letters.push(c.to_ascii_lowercase());
        }
        (letters.len() == SECRET_LEN).then_some(Self(letters))
    }

    pub fn selector(&self) -> &str {
        &self.0[..SELECTOR_LEN]
    }

    /// The canonical form that is hashed; only the hashing code reads it.
    pub(crate) fn canonical(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The form shown to the user once: groups of four, space-separated.
    pub fn display(&self) -> Zeroizing<String> {
        let mut shown = Zeroizing::new(String::with_capacity(SECRET_LEN + SECRET_LEN / GROUP_LEN));
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % GROUP_LEN == 0 {
                shown.push(' ');
            }
            shown.push(c);
        }
        shown
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_back_from_their_display_form() {
        let secret = Secret::generate().unwrap();
        let shown = secret.display();
        assert_eq!(shown.len(), 34);
        assert_eq!(shown.split(' ').count(), 7);
        assert_eq!(Secret::parse(&shown), Some(secret.clone()));
        let dashed = shown.replace(' ', "-").to_uppercase();
        assert_eq!(Secret::parse(&dashed), Some(secret));
    }

    #[test]
    fn malformed_input_is_not_a_secret() {
        assert!(Secret::parse("").is_none());
        assert!(Secret::parse("abcd efgh").is_none());
        assert!(Secret::parse(&"a".repeat(29)).is_none());
        assert!(Secret::parse(&format!("{}1", "a".repeat(27))).is_none());
        assert!(Secret::parse(&format!("{}é", "a".repeat(27))).is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::generate().unwrap();
        let printed = format!("{secret:?}");
        assert!(!printed.contains(secret.selector()));
    }

    #[test]
    fn letters_are_spread_over_the_whole_alphabet() {
        let mut seen = [0u32; 26];
        for _ in 0..200 {
            for b in Secret::generate().unwrap().canonical() {
                seen[usize::from(b - b'a')] += 1;
            }
        }
        // 5600 letters: each of the 26 expected ~215 times.
        assert!(seen.iter().all(|&n| (120..320).contains(&n)), "{seen:?}");
    }
}
