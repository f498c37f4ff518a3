//! argon2id hashing of app password secrets, off the async runtime.
//!
//! One verification costs tens of milliseconds of one core at the default
//! parameters; run on a tokio worker it would stall every other request
//! sharing that worker, so every hash and verification goes to the blocking
//! pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::format::Secret;
use super::pool::{Admission, HashPool, HashPoolConfig};
use crate::domain::shared::error::{Error, Result};
use crate::domain::shared::random;

/// argon2id cost parameters. The defaults are OWASP's recommendation for
/// argon2id (Password Storage Cheat Sheet: m=19 MiB, t=2, p=1). Hashes carry
/// their parameters in the PHC string, so changing these affects new hashes
/// only and old ones keep verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    pool: Arc<HashPool>,
    /// argon2 verifications run so far, dummy ones included.
    verifications: Arc<AtomicU64>,
    /// A valid hash of a random secret nobody knows, with the configured
    /// parameters: verified against when there is no real candidate, so an
    /// unknown user costs what a wrong password costs.
    dummy_hash: Arc<str>,
    /// What is verified when the typed password is not shaped like a secret:
    /// another random secret, so the work is the same as for any other.
    dummy_secret: Secret,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

impl Hasher {
    pub async fn new(params: HashParams, pool: HashPoolConfig) -> Result<Self> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|error| Error::internal(format!("invalid argon2 parameters: {error}")))?;
        let pool = Arc::new(HashPool::new(pool)?);
        let dummy_params = params.clone();
        let unknown = Secret::generate()?;
        let dummy_hash = pool
            .run(
                Admission {
                    wait: Duration::MAX,
                    ticket: None,
                },
                move |buffer| hash_with(&dummy_params, &unknown, buffer),
            )
            .await??;
        Ok(Self {
            params,
            pool,
            verifications: Arc::new(AtomicU64::new(0)),
            dummy_hash: dummy_hash.into(),
            dummy_secret: Secret::generate()?,
        })
    }

    /// argon2 verifications run since start.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The hashing pool, for its queue depth and busy workers.
    pub fn pool(&self) -> &HashPool {
        &self.pool
    }

    /// Whether a stored hash is weaker than the configured parameters (less
    /// memory or fewer passes, or not argon2id), and so should be re-made
    /// the next time its secret is known. Stronger hashes are left alone:
    /// lowering the cost must not weaken existing hashes, and replicas
    /// mid-way through a rolling change must not re-hash back and forth.
    pub fn is_outdated(&self, stored: &str) -> bool {
        let Ok(hash) = PasswordHash::new(stored) else {
            return false;
        };
        let weaker = |name: &str, wanted: u32| {
            hash.params
                .get_decimal(name)
                .is_none_or(|value| value < wanted)
        };
        hash.algorithm.as_str() != "argon2id"
            || weaker("m", self.params.m_cost())
            || weaker("t", self.params.t_cost())
    }

    /// What a caller that sets no deadline is admitted on.
    pub fn default_admission(&self) -> Admission {
        Admission {
            wait: self.pool.default_wait(),
            ticket: None,
        }
    }

    /// Hashes a new secret into a PHC string (`$argon2id$v=19$m=…`).
    pub async fn hash(&self, secret: Secret, admission: Admission) -> Result<String> {
        let params = self.params.clone();
        self.pool
            .run(admission, move |buffer| hash_with(&params, &secret, buffer))
            .await?
    }

    /// Runs exactly one argon2 verification (counted when a thread runs
    /// it, not when it is asked for). With no stored hash, or no
    /// well-formed secret, it verifies against the dummy hash instead and
    /// returns `false`, at the same cost.
    pub async fn verify(
        &self,
        stored: Option<String>,
        secret: Option<Secret>,
        admission: Admission,
    ) -> Result<bool> {
        let dummy_hash = Arc::clone(&self.dummy_hash);
        let dummy_secret = self.dummy_secret.clone();
        let verifications = Arc::clone(&self.verifications);
        self.pool
            .run(admission, move |buffer| {
                verifications.fetch_add(1, Ordering::Relaxed);
                let real = stored.is_some() && secret.is_some();
                let secret = secret.unwrap_or(dummy_secret);
                let matches =
                    match verify_with(stored.as_deref().unwrap_or(&dummy_hash), &secret, buffer) {
                        Some(matches) => matches,
                        None => {
                            tracing::error!(
                                "stored app password hash is not a valid argon2 PHC string"
                            );
                            let _ = verify_with(&dummy_hash, &secret, buffer);
                            false
                        }
                    };
                real && matches
            })
            .await
    }
}

/// The buffer, grown if needed, cut to the blocks `params` uses.
fn blocks<'a>(buffer: &'a mut Vec<Block>, params: &Params) -> &'a mut [Block] {
    let needed = params.block_count();
    if buffer.len() < needed {
        buffer.resize(needed, Block::default());
    }
    &mut buffer[..needed]
}

/// argon2id with the pool thread's buffer, written as a PHC string.
fn hash_with(params: &Params, secret: &Secret, buffer: &mut Vec<Block>) -> Result<String> {
    let mut salt = [0u8; 16];
    random::fill(&mut salt)?;
    let mut output = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            secret.canonical(),
            &salt,
            &mut output,
            blocks(buffer, params),
        )
        .map_err(|error| Error::internal(format!("argon2 hashing failed: {error}")))?;
    // PHC strings use standard base64 without padding.
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(output)
    ))
}

/// Verifies `secret` against a PHC string with the parameters it carries,
/// comparing in constant time. `None` if the string is not a usable hash.
fn verify_with(stored: &str, secret: &Secret, buffer: &mut Vec<Block>) -> Option<bool> {
    let hash = PasswordHash::new(stored).ok()?;
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = match hash.version {
        Some(version) => Version::try_from(version).ok()?,
        None => Version::V0x13,
    };
    let params = Params::try_from(&hash).ok()?;
    let expected = hash.hash?;
    let mut salt = [0u8; 64];
    let salt = hash.salt?.decode_b64(&mut salt).ok()?;
    let mut output = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(
            secret.canonical(),
            salt,
            &mut output,
            blocks(buffer, &params),
        )
        .ok()?;
    Some(output.ct_eq(expected.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[tokio::test]
    async fn a_hash_verifies_its_secret_and_nothing_else() {
        let hasher = Hasher::new(SMALL, HashPoolConfig::default()).await.unwrap();
        let secret = Secret::generate().unwrap();
        let hash = hasher
            .hash(secret.clone(), hasher.default_admission())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(hasher
            .verify(Some(hash.clone()), Some(secret), hasher.default_admission())
            .await
            .unwrap());
        assert!(!hasher
            .verify(
                Some(hash.clone()),
                Some(Secret::generate().unwrap()),
                hasher.default_admission()
            )
            .await
            .unwrap());
        assert!(!hasher
            .verify(Some(hash), None, hasher.default_admission())
            .await
            .unwrap());
        assert!(!hasher
            .verify(
                None,
                Some(Secret::generate().unwrap()),
                hasher.default_admission()
            )
            .await
            .unwrap());
        assert!(!hasher
            .verify(
                Some("not a hash".into()),
                Some(Secret::generate().unwrap()),
                hasher.default_admission()
            )
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_are_outdated() {
        let small = Hasher::new(SMALL, HashPoolConfig::default()).await.unwrap();
        let larger = Hasher::new(
            HashParams {
                memory_kib: 128,
                ..SMALL
            },
            HashPoolConfig::default(),
        )
        .await
        .unwrap();
        let hash = small
            .hash(Secret::generate().unwrap(), small.default_admission())
            .await
            .unwrap();
        assert!(!small.is_outdated(&hash));
        assert!(larger.is_outdated(&hash));
        let strong = larger
            .hash(Secret::generate().unwrap(), larger.default_admission())
            .await
            .unwrap();
        assert!(
            !small.is_outdated(&strong),
            "a stronger hash is not downgraded"
        );
        assert!(!larger.is_outdated("not a hash"), "garbage is not upgraded");
    }

    #[test]
    fn pool_hashes_are_standard_phc_strings_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
        let params =
            Params::new(SMALL.memory_kib, SMALL.iterations, SMALL.parallelism, None).unwrap();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let secret = Secret::generate().unwrap();
        let mut buffer = Vec::new();
        // Ours verifies with the argon2 crate's own verifier...
        let ours = hash_with(&params, &secret, &mut buffer).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2.verify_password(secret.canonical(), &parsed).is_ok());
        // ...and the crate's verifies with ours, with a buffer of another size.
        let salt = SaltString::encode_b64(b"sixteen byte sal").unwrap();
        let theirs = argon2
            .hash_password(secret.canonical(), &salt)
            .unwrap()
            .to_string();
        let mut big = vec![Block::default(); 1024];
        assert_eq!(verify_with(&theirs, &secret, &mut big), Some(true));
        assert_eq!(
            verify_with(&theirs, &Secret::generate().unwrap(), &mut big),
            Some(false)
        );
        assert_eq!(verify_with("$argon2id$garbage", &secret, &mut big), None);
    }

    #[test]
    fn defaults_are_owasp_argon2id() {
        assert_eq!(
            HashParams::default(),
            HashParams {
                memory_kib: 19_456,
                iterations: 2,
                parallelism: 1
            }
        );
    }
}
