//! The one source of randomness: the operating system's CSPRNG, and the
//! one rule for when it fails.
//!
//! - Keys made at start (the HMAC keys of the verified-secret cache and of
//!   the repeated-guess memory) come from [`key`]; if the OS cannot supply
//!   them the server refuses to start. It never runs with a zero key.
//! - Draws while serving (a new secret, a salt, a caller key) come from
//!   [`fill`]; a failure refuses that one request as an internal error.
//!   Nothing falls back to a weaker source, and nothing panics.

use rand::rngs::OsRng;
use rand::TryRngCore;

use super::error::{Error, Result};

/// Fills `bytes` from the operating system's CSPRNG.
pub fn fill(bytes: &mut [u8]) -> Result<()> {
    OsRng.try_fill_bytes(bytes).map_err(|error| {
        Error::internal(format!(
            "the operating system's random number generator failed: {error}"
        ))
    })
}

/// A fresh 256-bit key, for a keyed digest that lives as long as the
/// process.
pub fn key() -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    fill(&mut key)?;
    Ok(key)
}

/// The fewest bytes a key file may hold (the warm verifiers', the OAuth
/// tokens'): 256 bits, as `head -c 32 /dev/urandom > FILE` makes.
pub const KEY_FILE_MIN_BYTES: usize = 32;

/// Whether a key file's bytes are enough to be a key; `Err` says why not,
/// as the end of a sentence that names the file.
pub fn check_key_material(material: &[u8]) -> std::result::Result<(), String> {
    if material.len() < KEY_FILE_MIN_BYTES {
        return Err(format!(
            "holds {} bytes; at least {KEY_FILE_MIN_BYTES} random bytes are needed \
             (head -c 32 /dev/urandom > FILE)",
            material.len()
        ));
    }
    Ok(())
}

/// Draws `count` characters uniformly from `alphabet` (at most 256
/// entries), by rejection sampling random bytes: a byte past the largest
/// multiple of the alphabet's size is drawn again, so no character is more
/// likely than another.
pub fn pick(alphabet: &[u8], count: usize, out: &mut String) -> Result<()> {
    let size = alphabet.len();
    if size == 0 || size > 256 {
        return Err(Error::internal("an alphabet must have 1 to 256 entries"));
    }
    let limit = 256 - 256 % size;
    let mut pool = [0u8; 64];
    let mut next = pool.len();
    let mut picked = 0;
    while picked < count {
        if next == pool.len() {
            fill(&mut pool)?;
            next = 0;
        }
        let byte = usize::from(pool[next]);
        next += 1;
        if byte < limit {
            out.push(char::from(alphabet[byte % size]));
            picked += 1;
        }
    }
    pool.fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_spread_over_the_whole_alphabet() {
        let mut drawn = String::new();
        pick(b"abcdefghijklmnopqrstuvwxyz", 26_000, &mut drawn).unwrap();
        let mut seen = [0u32; 26];
        for b in drawn.bytes() {
            seen[usize::from(b - b'a')] += 1;
        }
        // Each letter is expected 1,000 times; 5 standard deviations is ±155.
        assert!(seen.iter().all(|&n| (845..1155).contains(&n)), "{seen:?}");
    }

    #[test]
    fn keys_differ() {
        assert_ne!(key().unwrap(), key().unwrap());
        assert_ne!(key().unwrap(), [0u8; 32]);
    }
}
