//! App password secrets: generated, read and formatted, in two versions
//! (docs/secret-format-v2.md has the decision and its reasons).
//!
//! - **Version 2**, issued since issue 26: 36 lowercase letters, shown as
//!   nine groups of four. Letters 1–2 are the marker `lk`, which scanners
//!   anchor on; 3–8 the deployment-wide selector; 9–32 the secret's 24
//!   random letters (24 × log2(26) ≈ 112.8 bits, the brief's floor on
//!   their own); 33–36 a check over the first 32, which lets anyone
//!   confirm a candidate and lets a login refuse a mistyped secret before
//!   any argon2 run.
//! - **Version 1**, issued before: 28 letters, seven groups; the first
//!   four are the selector (unique within the account only), the other 24
//!   the random letters. Still read, never issued.
//!
//! The *selector* is what a login reads the one record to verify by, so a
//! login costs one argon2 verification whatever the number of passwords.
//! A version 2 selector is stored with its marker (`lk` and six letters),
//! so it is never equal to a version 1 selector of four. Lowercase letters
//! are what a person types on a phone keyboard without switching layouts;
//! spaces, dashes and letter case are ignored when read.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::domain::shared::error::Result;
use crate::domain::shared::random;

const ALPHABET: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
const GROUP_LEN: usize = 4;
/// Version 1: 28 letters, the first four the selector.
pub const V1_LEN: usize = 28;
const V1_SELECTOR_LEN: usize = 4;
/// Version 2: 36 letters, `lk`, six selector letters, 24 random, 4 check.
pub const V2_LEN: usize = 36;
/// What every version 2 secret begins with.
pub const MARKER: &str = "lk";
const V2_SELECTOR_LEN: usize = 8;
const RANDOM_LEN: usize = 24;
const CHECK_LEN: usize = 4;
/// What the check hashes before the letters, so that it is latchkey's
/// version 2 check and no other SHA-256 of the same letters.
const CHECK_DOMAIN: &[u8] = b"latchkey app password v2\0";
/// The most letters any version has: a reader stops past it.
const MAX_LEN: usize = V2_LEN;

/// Which format a secret is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    One,
    Two,
}

/// What a typed password is, read from its text alone.
#[derive(Debug, PartialEq, Eq)]
pub enum Reading {
    /// A well-formed secret of either version (a version 2 one whose check
    /// passed).
    Secret(Secret),
    /// 36 letters beginning `lk` whose check letters are wrong: a mistyped
    /// version 2 secret, or a guess.
    CheckFailed,
    /// Anything else.
    NotASecret,
}

/// A well-formed app password. Its memory is wiped on drop and its `Debug`
/// shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Draws a fresh version 2 secret from the operating system's CSPRNG:
    /// the marker, 30 letters each exactly uniform (`random::pick` rejects
    /// biased draws), and their check.
    pub fn generate() -> Result<Self> {
        let mut letters = Zeroizing::new(String::with_capacity(V2_LEN));
        letters.push_str(MARKER);
        random::pick(
            ALPHABET,
            V2_SELECTOR_LEN - MARKER.len() + RANDOM_LEN,
            &mut letters,
        )?;
        let check = check_of(letters.as_bytes());
        letters.extend(check.iter().map(|&b| char::from(b)));
        Ok(Self(letters))
    }

    /// Draws a version 1 secret. Nothing issues them any more: this is for
    /// the tests and benchmarks that show version 1 passwords, issued
    /// before version 2, keep working.
    pub fn generate_version_1() -> Result<Self> {
        let mut letters = Zeroizing::new(String::with_capacity(V1_LEN));
        random::pick(ALPHABET, V1_LEN, &mut letters)?;
        Ok(Self(letters))
    }

    /// Reads what a person typed: spaces, dashes and letter case are
    /// ignored. 28 letters are a version 1 secret; 36 beginning `lk` a
    /// version 2 one, if their check holds.
    pub fn read(input: &str) -> Reading {
        let mut letters = Zeroizing::new(String::with_capacity(MAX_LEN));
        for c in input.chars() {
            if c == '-' || c.is_ascii_whitespace() {
                continue;
            }
            if !c.is_ascii_alphabetic() || letters.len() == MAX_LEN {
                return Reading::NotASecret;
            }
            letters.push(c.to_ascii_lowercase());
        }
        match letters.len() {
            V1_LEN => Reading::Secret(Self(letters)),
            V2_LEN if letters.starts_with(MARKER) => {
                let (body, check) = letters.as_bytes().split_at(V2_LEN - CHECK_LEN);
                if check_of(body) == check {
                    Reading::Secret(Self(letters))
                } else {
                    Reading::CheckFailed
                }
            }
            _ => Reading::NotASecret,
        }
    }

    /// A well-formed secret of either version, or `None`.
    pub fn parse(input: &str) -> Option<Self> {
        match Self::read(input) {
            Reading::Secret(secret) => Some(secret),
            Reading::CheckFailed | Reading::NotASecret => None,
        }
    }

    pub fn version(&self) -> Version {
        if self.0.len() == V2_LEN {
            Version::Two
        } else {
            Version::One
        }
    }

    /// What the login reads the record by: version 1's first group, or
    /// version 2's marker and six selector letters.
    pub fn selector(&self) -> &str {
        match self.version() {
            Version::One => &self.0[..V1_SELECTOR_LEN],
            Version::Two => &self.0[..V2_SELECTOR_LEN],
        }
    }

    /// The selector that names this password across the deployment, with
    /// no username: only version 2 has one.
    pub fn public_id(&self) -> Option<&str> {
        (self.version() == Version::Two).then(|| self.selector())
    }

    /// The canonical form that is hashed; only the hashing code reads it.
    pub(crate) fn canonical(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The form shown to the user once: groups of four, space-separated.
    pub fn display(&self) -> Zeroizing<String> {
        Zeroizing::new(grouped(&self.0))
    }
}

impl std::hash::Hash for Secret {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The hint a password is shown by (`secret_prefix`): its selector in the
/// groups it was shown in, "tijc" for version 1, "lkab cdef" for version
/// 2. Public: it is stored in clear and carries none of the random bits.
pub fn hint(selector: &str) -> String {
    grouped(selector)
}

/// Whether `selector` is a version 2 one: the marker and six letters.
pub fn is_public_id(selector: &str) -> bool {
    selector.len() == V2_SELECTOR_LEN
        && selector.starts_with(MARKER)
        && selector.bytes().all(|b| b.is_ascii_lowercase())
}

/// The four check letters of a version 2 secret's first 32 letters: the
/// first eight bytes of SHA-256 over [`CHECK_DOMAIN`] and the letters, as a
/// big-endian integer, modulo 26⁴, written as four base-26 letters (`a` =
/// 0), most significant first. Public on purpose, so any scanner can
/// compute it (contrib/secret-scanning does, in Python).
pub fn check_of(body: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Sha256::new()
        .chain_update(CHECK_DOMAIN)
        .chain_update(body)
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let mut value = u64::from_be_bytes(first) % 26u64.pow(CHECK_LEN as u32);
    let mut check = [0u8; CHECK_LEN];
    for slot in check.iter_mut().rev() {
        *slot = ALPHABET[(value % 26) as usize];
        value /= 26;
    }
    check
}

fn grouped(letters: &str) -> String {
    let mut shown = String::with_capacity(letters.len() + letters.len() / GROUP_LEN);
    for (i, c) in letters.chars().enumerate() {
        if i > 0 && i % GROUP_LEN == 0 {
            shown.push(' ');
        }
        shown.push(c);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_back_from_their_display_form() {
        let secret = Secret::generate().unwrap();
        assert_eq!(secret.version(), Version::Two);
        let shown = secret.display();
        assert_eq!(shown.len(), 44);
        assert_eq!(shown.split(' ').count(), 9);
        assert!(shown.starts_with("lk"));
        assert_eq!(Secret::parse(&shown), Some(secret.clone()));
        let dashed = shown.replace(' ', "-").to_uppercase();
        assert_eq!(Secret::parse(&dashed), Some(secret.clone()));
        assert_eq!(secret.selector().len(), 8);
        assert_eq!(secret.public_id(), Some(secret.selector()));
        assert!(is_public_id(secret.selector()));
        assert_eq!(hint(secret.selector()), shown[..9]);
    }

    #[test]
    fn version_1_secrets_are_still_read() {
        let secret = Secret::generate_version_1().unwrap();
        assert_eq!(secret.version(), Version::One);
        let shown = secret.display();
        assert_eq!(shown.len(), 34);
        assert_eq!(Secret::parse(&shown), Some(secret.clone()));
        assert_eq!(secret.selector(), &shown[..4]);
        assert_eq!(secret.public_id(), None);
        assert!(!is_public_id(secret.selector()));
    }

    #[test]
    fn a_changed_or_swapped_letter_fails_the_check() {
        let secret = Secret::generate().unwrap();
        let letters = secret.canonical().to_vec();
        let read = |bytes: &[u8]| Secret::read(std::str::from_utf8(bytes).unwrap());
        // Each change keeps the check once in 456,976 times: at most one of
        // these 34 may pass (a chance of 7 in 100,000 that one does).
        let mut failed = 0;
        for at in 2..V2_LEN {
            let mut changed = letters.clone();
            changed[at] = if changed[at] == b'z' {
                b'a'
            } else {
                changed[at] + 1
            };
            failed += usize::from(read(&changed) == Reading::CheckFailed);
        }
        assert!(failed >= V2_LEN - 3, "{failed}");
        let (mut swaps, mut failed) = (0, 0);
        for at in 2..V2_LEN - 1 {
            let mut swapped = letters.clone();
            swapped.swap(at, at + 1);
            if swapped != letters {
                swaps += 1;
                failed += usize::from(read(&swapped) == Reading::CheckFailed);
            }
        }
        assert!(failed + 1 >= swaps, "{failed} of {swaps}");
        // The marker changed: not a version 2 secret at all.
        let mut unmarked = letters.clone();
        unmarked[1] = b'j';
        assert_eq!(read(&unmarked), Reading::NotASecret);
    }

    #[test]
    fn the_check_matches_the_pinned_vectors() {
        // Pinned in contrib/secret-scanning/vectors.txt too: the Python
        // detector and the gitleaks rule are tested on the same letters.
        let body = b"lkaaaaaabbbbccccddddeeeeffffgggg";
        assert_eq!(&check_of(body), b"qyqi");
        assert_eq!(&check_of(b"lkquickbrownfoxjumpsoverthelazyd"), b"hdhc");
        let whole = "lkaaaaaabbbbccccddddeeeeffffggggqyqi".to_owned();
        assert!(matches!(Secret::read(&whole), Reading::Secret(_)));
        let mut wrong = whole.into_bytes();
        wrong[35] = if wrong[35] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            Secret::read(std::str::from_utf8(&wrong).unwrap()),
            Reading::CheckFailed
        );
    }

    #[test]
    fn malformed_input_is_not_a_secret() {
        for typed in [
            String::new(),
            "abcd efgh".to_owned(),
            "a".repeat(29),
            "a".repeat(37),
            format!("{}1", "a".repeat(27)),
            format!("{}é", "a".repeat(27)),
            // 36 letters without the marker.
            "a".repeat(36),
            // 35 letters with it: a lost letter.
            format!("lk{}", "a".repeat(33)),
        ] {
            assert_eq!(Secret::read(&typed), Reading::NotASecret, "{typed}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::generate().unwrap();
        let printed = format!("{secret:?}");
        assert!(!printed.contains(&secret.canonical_str()[8..16]));
    }

    #[test]
    fn letters_are_spread_over_the_whole_alphabet() {
        let mut seen = [0u32; 26];
        for _ in 0..200 {
            // The random letters only: not the marker, not the check.
            for b in &Secret::generate().unwrap().canonical()[2..32] {
                seen[usize::from(b - b'a')] += 1;
            }
        }
        // 6000 letters: each of the 26 expected ~231 times.
        assert!(seen.iter().all(|&n| (130..340).contains(&n)), "{seen:?}");
    }

    impl Secret {
        fn canonical_str(&self) -> &str {
            &self.0
        }
    }
}
