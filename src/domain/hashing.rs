//! argon2id hashing of app password secrets, off the async runtime.
//!
//! One verification costs tens of milliseconds of one core at the default
//! parameters; run on a tokio worker it would stall every other request
//! sharing that worker, so every hash and verification goes to the blocking
//! pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::secret::Secret;

/// argon2id cost parameters. The defaults are OWASP's recommendation for
/// argon2id (Password Storage Cheat Sheet: m=19 MiB, t=2, p=1). Hashes carry
/// their parameters in the PHC string, so changing these affects new hashes
/// only and old ones keep verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    argon2: Argon2<'static>,
    /// argon2 verifications run so far, dummy ones included.
    verifications: Arc<AtomicU64>,
    /// A valid hash of a random secret nobody knows, with the configured
    /// parameters: verified against when there is no real candidate, so an
    /// unknown user costs what a wrong password costs.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

impl Hasher {
    pub async fn new(params: HashParams) -> Result<Self> {
        let argon2_params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|error| Error::internal(format!("invalid argon2 parameters: {error}")))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params);
        let dummy_hash = hash_blocking(argon2.clone(), Secret::generate()).await?;
        Ok(Self {
            argon2,
            verifications: Arc::new(AtomicU64::new(0)),
            dummy_hash: dummy_hash.into(),
        })
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
        let configured = self.argon2.params();
        let weaker = |name: &str, wanted: u32| {
            hash.params
                .get_decimal(name)
                .is_none_or(|value| value < wanted)
        };
        hash.algorithm.as_str() != "argon2id"
            || weaker("m", configured.m_cost())
            || weaker("t", configured.t_cost())
    }

    /// argon2 verifications run since start.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Hashes a new secret into a PHC string (`$argon2id$v=19$m=…`).
    pub async fn hash(&self, secret: Secret) -> Result<String> {
        hash_blocking(self.argon2.clone(), secret).await
    }

    /// Runs exactly one argon2 verification. With no stored hash, or no
    /// well-formed secret, it verifies against the dummy hash instead and
    /// returns `false`, at the same cost.
    pub async fn verify(&self, stored: Option<String>, secret: Option<Secret>) -> Result<bool> {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let argon2 = self.argon2.clone();
        let dummy_hash = Arc::clone(&self.dummy_hash);
        tokio::task::spawn_blocking(move || {
            let real = stored.is_some() && secret.is_some();
            let secret = secret.unwrap_or_else(Secret::generate);
            let stored = stored.as_deref().unwrap_or(&dummy_hash);
            let matches = match PasswordHash::new(stored) {
                Ok(hash) => argon2.verify_password(secret.canonical(), &hash).is_ok(),
                Err(error) => {
                    tracing::error!(%error, "stored app password hash is not a valid PHC string");
                    if let Ok(hash) = PasswordHash::new(&dummy_hash) {
                        let _ = argon2.verify_password(secret.canonical(), &hash);
                    }
                    false
                }
            };
            real && matches
        })
        .await
        .map_err(|error| Error::Internal(error.into()))
    }
}

async fn hash_blocking(argon2: Argon2<'static>, secret: Secret) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        OsRng
            .unwrap_err()
            .try_fill_bytes(&mut salt)
            .map_err(|error| Error::Internal(error.into()))?;
        let salt =
            SaltString::encode_b64(&salt).map_err(|error| Error::internal(error.to_string()))?;
        argon2
            .hash_password(secret.canonical(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| Error::internal(format!("argon2 hashing failed: {error}")))
    })
    .await
    .map_err(|error| Error::Internal(error.into()))?
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
        let hasher = Hasher::new(SMALL).await.unwrap();
        let secret = Secret::generate();
        let hash = hasher.hash(secret.clone()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(hasher
            .verify(Some(hash.clone()), Some(secret))
            .await
            .unwrap());
        assert!(!hasher
            .verify(Some(hash.clone()), Some(Secret::generate()))
            .await
            .unwrap());
        assert!(!hasher.verify(Some(hash), None).await.unwrap());
        assert!(!hasher.verify(None, Some(Secret::generate())).await.unwrap());
        assert!(!hasher
            .verify(Some("not a hash".into()), Some(Secret::generate()))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_are_outdated() {
        let small = Hasher::new(SMALL).await.unwrap();
        let larger = Hasher::new(HashParams {
            memory_kib: 128,
            ..SMALL
        })
        .await
        .unwrap();
        let hash = small.hash(Secret::generate()).await.unwrap();
        assert!(!small.is_outdated(&hash));
        assert!(larger.is_outdated(&hash));
        let strong = larger.hash(Secret::generate()).await.unwrap();
        assert!(
            !small.is_outdated(&strong),
            "a stronger hash is not downgraded"
        );
        assert!(!larger.is_outdated("not a hash"), "garbage is not upgraded");
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
