//! The floors the server is judged against: argon2 alone, on one thread
//! and on the server's own hashing pool, with no gRPC around it.

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use latchkey::domain::secrets::format::Secret;
use latchkey::domain::secrets::hashing::{HashParams, Hasher};
use latchkey::domain::secrets::pool::HashPoolConfig;

use crate::BoxError;

/// Verifications per second of default-cost argon2id on this thread, with
/// one reused buffer, as a pool worker runs them.
pub fn argon2_one_thread(duration: Duration) -> Result<f64, BoxError> {
    let defaults = HashParams::default();
    let params = Params::new(
        defaults.memory_kib,
        defaults.iterations,
        defaults.parallelism,
        None,
    )
    .map_err(|error| error.to_string())?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut blocks = vec![Block::default(); params.block_count()];
    let mut out = [0u8; 32];
    let started = Instant::now();
    let mut done = 0u32;
    while started.elapsed() < duration {
        argon2
            .hash_password_into_with_memory(
                b"abcdabcdabcdabcdabcdabcdabcd",
                b"saltsaltsaltsalt",
                &mut out,
                &mut blocks,
            )
            .map_err(|error| error.to_string())?;
        done += 1;
    }
    Ok(f64::from(done) / started.elapsed().as_secs_f64())
}

/// Verifications per second through the server's own hashing pool (one
/// worker per core, default parameters), kept full, with no gRPC.
pub async fn argon2_pool(concurrency: usize, duration: Duration) -> Result<f64, BoxError> {
    let hasher = Hasher::new(HashParams::default(), HashPoolConfig::default()).await?;
    let secret = Secret::generate()?;
    let hash = hasher
        .hash(secret.clone(), hasher.default_admission())
        .await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (hasher, hash, secret) = (hasher.clone(), hash.clone(), secret.clone());
            tokio::spawn(async move {
                let mut done = 0u32;
                while started.elapsed() < duration {
                    if hasher
                        .verify(
                            Some(hash.clone()),
                            Some(secret.clone()),
                            hasher.default_admission(),
                        )
                        .await
                        .is_ok()
                    {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let mut done = 0u32;
    for task in tasks {
        done += task.await?;
    }
    Ok(f64::from(done) / started.elapsed().as_secs_f64())
}
