//! Finding version 2 app passwords in text, with no database: what
//! `latchkey scan` runs, and what contrib/secret-scanning's detect-secrets
//! plugin and gitleaks rule do the same way (one vector file,
//! contrib/secret-scanning/vectors.txt, pins all three).
//!
//! A candidate is `lk` (any case) at a word's start, then 34 more letters,
//! either all together or in groups of four each after one space or one
//! dash (the same separator throughout, as a secret is shown or typed),
//! then a word's end. "Word" is RE2's and Python's ASCII `\w`: letters,
//! digits and `_`. So `=lk…`, `"lk…"` and `:lk…` start a candidate;
//! `xlk…`, `9lk…` and `_lk…` do not. A candidate is
//! a find only if its check letters hold (`format::check_of`): one random
//! candidate in 456,976 passes.

use super::format::{check_of, MARKER, V2_LEN};

const GROUP_LEN: usize = 4;
const GROUPS: usize = V2_LEN / GROUP_LEN;
/// The longest candidate: 36 letters and 8 separators.
pub const MAX_CANDIDATE_LEN: usize = V2_LEN + GROUPS - 1;

/// A candidate found in text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its first byte's offset in the text scanned.
    pub start: usize,
    /// How many bytes of text it covers, separators included.
    pub len: usize,
    /// Whether its check letters hold: a version 2 secret, or one changed
    /// letter away from one (one in 456,976 random candidates also holds).
    pub checks: bool,
    /// Its public id (`lk` and the selector, lowercase): public, and what
    /// a finding is reported by. Never the rest of the secret.
    pub public_id: String,
    letters: zeroize::Zeroizing<[u8; V2_LEN]>,
}

impl Candidate {
    /// The candidate's 36 letters, lowercase, for a report of the leak.
    pub fn letters(&self) -> &[u8] {
        &self.letters[..]
    }
}

/// The candidates in `text` that start in `from..to`. Bytes outside that
/// range are read as context (the byte before, the letters after), so a
/// long text can be scanned in overlapping chunks: a chunk's `to` is its
/// length less [`MAX_CANDIDATE_LEN`], and the next chunk starts one byte
/// before it.
pub fn candidates(text: &[u8], from: usize, to: usize) -> Vec<Candidate> {
    let mut found = Vec::new();
    let to = to.min(text.len());
    let mut at = from;
    while at + 1 < text.len() && at < to {
        let Some(offset) = memchr_marker(&text[at..to.min(text.len())]) else {
            break;
        };
        let start = at + offset;
        if start > 0 && is_word(text[start - 1]) {
            at = start + 1;
            continue;
        }
        match read_at(text, start) {
            Some(candidate) => {
                at = start + candidate.len;
                found.push(candidate);
            }
            None => at = start + 1,
        }
    }
    found
}

/// A byte of a word, as RE2's and Python's ASCII `\b` see it.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The offset of the next `l` or `L`.
fn memchr_marker(text: &[u8]) -> Option<usize> {
    text.iter().position(|&b| b == b'l' || b == b'L')
}

/// A candidate starting exactly at `start`, in one of the three forms.
fn read_at(text: &[u8], start: usize) -> Option<Candidate> {
    let marker = MARKER.as_bytes();
    if text.len() < start + V2_LEN || !text[start + 1].eq_ignore_ascii_case(&marker[1]) {
        return None;
    }
    [None, Some(b' '), Some(b'-')]
        .into_iter()
        .find_map(|separator| read_form(text, start, separator))
}

fn read_form(text: &[u8], start: usize, separator: Option<u8>) -> Option<Candidate> {
    let mut letters = zeroize::Zeroizing::new([0u8; V2_LEN]);
    let mut at = start;
    for (i, slot) in letters.iter_mut().enumerate() {
        if i > 0 && i % GROUP_LEN == 0 {
            if let Some(separator) = separator {
                if text.get(at) != Some(&separator) {
                    return None;
                }
                at += 1;
            }
        }
        let b = *text.get(at)?;
        if !b.is_ascii_alphabetic() {
            return None;
        }
        *slot = b.to_ascii_lowercase();
        at += 1;
    }
    if text.get(at).copied().is_some_and(is_word) {
        return None;
    }
    if letters[..2] != *MARKER.as_bytes() {
        return None;
    }
    let (body, check) = letters.split_at(V2_LEN - 4);
    let checks = check_of(body) == check;
    let public_id = String::from_utf8_lossy(&letters[..8]).into_owned();
    Some(Candidate {
        start,
        len: at - start,
        checks,
        public_id,
        letters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::secrets::format::Secret;

    const VALID: &str = "lkaaaaaabbbbccccddddeeeeffffggggqyqi";

    fn found(text: &str) -> Vec<(usize, bool)> {
        candidates(text.as_bytes(), 0, text.len())
            .into_iter()
            .map(|c| (c.start, c.checks))
            .collect()
    }

    #[test]
    fn finds_the_three_forms_at_word_boundaries() {
        let spaced = Secret::parse(VALID).unwrap().display().to_string();
        let dashed = spaced.replace(' ', "-");
        for form in [VALID.to_owned(), spaced, dashed, VALID.to_uppercase()] {
            for (text, start) in [
                (form.clone(), 0),
                (format!("APP_PASSWORD={form}\n"), 13),
                (format!("password: \"{form}\""), 11),
                (format!("use {form}."), 4),
            ] {
                assert_eq!(found(&text), vec![(start, true)], "{text}");
            }
        }
    }

    #[test]
    fn near_misses_are_not_finds() {
        // Inside a word, before or after.
        assert!(found(&format!("x{VALID}")).is_empty());
        assert!(found(&format!("{VALID}9")).is_empty());
        assert!(found(&format!("KEY_{VALID}")).is_empty());
        // Mixed separators, a lost letter, a wrong marker.
        let spaced = Secret::parse(VALID).unwrap().display().to_string();
        let mixed = spaced.replacen(' ', "-", 1);
        assert!(found(&mixed).is_empty());
        assert!(found(&VALID[1..]).is_empty());
        assert!(found(&VALID.replacen("lk", "lj", 1)).is_empty());
        // One changed letter: a candidate whose check fails.
        let changed = VALID.replacen("bbbb", "bbbc", 1);
        assert_eq!(found(&changed), vec![(0, false)]);
    }

    #[test]
    fn chunks_that_overlap_find_what_the_whole_text_has() {
        let secret = Secret::generate().unwrap().display().to_string();
        let text = format!("{}{secret} and {}", "words ".repeat(50), "x".repeat(80));
        let whole = found(&text);
        assert_eq!(whole.len(), 1);
        for chunk in [40, 64, 100] {
            let bytes = text.as_bytes();
            let mut from = 0;
            let mut seen = Vec::new();
            while from < bytes.len() {
                let end = (from + chunk + MAX_CANDIDATE_LEN).min(bytes.len());
                let to = if end == bytes.len() {
                    end
                } else {
                    end - MAX_CANDIDATE_LEN
                };
                seen.extend(
                    candidates(&bytes[..end], from, to)
                        .into_iter()
                        .map(|c| c.start),
                );
                from = to;
            }
            assert_eq!(seen, vec![whole[0].0], "chunk {chunk}");
        }
    }
}
