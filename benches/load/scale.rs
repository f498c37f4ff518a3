//! The server at size: its peak memory under 1,000 concurrent cold logins,
//! and cold and warm logins with 1,000,000 app passwords stored.

use std::time::Instant;

use crate::bench::{authenticate, Bench, CHANNELS};
use crate::drive::Run;
use crate::report::Report;
use crate::seed::{count_passwords, seed_million};
use crate::BoxError;

pub const MEMORY_CONCURRENCY: usize = 1_000;

/// 1,000 cold logins at once on a fresh process, and what that process
/// held, in KiB.
pub struct Memory {
    pub peak_kib: u64,
    /// Resident after: anonymous, and file-backed.
    pub anon_kib: u64,
    pub file_kib: u64,
}

/// Sends 1,000 cold logins at once to a fresh process; reports their
/// answers and returns the process's peak RSS, and its anonymous and
/// file-backed RSS after.
pub async fn memory(bench: &mut Bench, report: &mut Report) -> Result<Memory, BoxError> {
    bench.restart().await?;
    let started = Instant::now();
    let tasks: Vec<_> = bench
        .logins
        .iter()
        .take(MEMORY_CONCURRENCY)
        .enumerate()
        .map(|(i, login)| {
            let channel = bench.channels[i % CHANNELS].clone();
            let (key, login) = (bench.authenticator.clone(), login.clone());
            tokio::spawn(async move {
                let sent = Instant::now();
                let ip = "10.1.0.1".to_owned();
                let outcome = authenticate(channel, &key, login.username, login.secret, ip).await;
                (outcome, sent.elapsed())
            })
        })
        .collect();
    let mut run = Run::default();
    for task in tasks {
        let (outcome, latency) = task.await?;
        run.latencies.push(latency);
        *run.outcomes.entry(outcome).or_default() += 1;
    }
    run.elapsed = started.elapsed();
    let peak_kib = bench.server.peak_rss_kib()?;
    let (anon_kib, file_kib) = bench.server.rss_anon_and_file_kib()?;
    // Past the hashing queue's bound, RESOURCE_EXHAUSTED at once, by design.
    report.row(
        "1,000 concurrent cold (memory)",
        "SQLite",
        &run,
        &["success", "ResourceExhausted"],
    );
    Ok(Memory {
        peak_kib,
        anon_kib,
        file_kib,
    })
}

/// Cold and warm logins with 1,000,000 app passwords stored.
pub struct Scale {
    pub stored: i64,
    pub cold: Run,
    pub warm: Run,
}

/// Seeds 1,000,000 app passwords into the stopped server's SQLite
/// database, restarts it, and runs cold and warm logins again.
pub async fn scale(
    bench: &mut Bench,
    sqlite_url: &str,
    report: &mut Report,
) -> Result<Scale, BoxError> {
    bench.server.stop()?;
    seed_million(sqlite_url).await?;
    let stored = count_passwords(sqlite_url).await?;
    bench.restart().await?;
    let cold = bench.cold().await;
    let warm = bench.warm().await;
    report.row(
        &format!("cold, {stored} stored"),
        "SQLite",
        &cold,
        &["success"],
    );
    report.row(
        &format!("warm, {stored} stored"),
        "SQLite",
        &warm,
        &["success"],
    );
    Ok(Scale { stored, cold, warm })
}
