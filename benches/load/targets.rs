//! What the run is judged by: the targets, each met or missed, and the
//! summary above the table.

use std::time::Duration;

use latchkey::domain::secrets::hashing::HashParams;

use crate::bench::CHANNELS;
use crate::bulk::Bulk;
use crate::drive::Run;
use crate::options::Options;
use crate::report::{ms, Report};
use crate::scale::{Memory, Scale};
use crate::scenarios::Scenarios;

/// Everything the run measured.
pub struct Measured {
    pub options: Options,
    /// argon2 verifications/s on one thread, and on the hashing pool.
    pub one_thread: f64,
    pub pool: f64,
    pub no_op: Run,
    pub sqlite: Scenarios,
    /// App passwords stored for the SQLite scenarios.
    pub stored: i64,
    pub memory: Memory,
    pub scale: Option<Scale>,
    pub postgres: Option<Scenarios>,
    pub bulk: Option<Bulk>,
}

pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The bound on the server's peak memory: 64 MiB, and half again each
/// hashing worker's argon2 memory.
pub fn memory_limit_mib() -> f64 {
    let memory_cost_mib = f64::from(HashParams::default().memory_kib) / 1024.0;
    64.0 + 1.5 * workers() as f64 * memory_cost_mib
}

/// Adds a row to `report` for each target.
pub fn check(report: &mut Report, measured: &Measured) {
    let Measured {
        options,
        pool,
        no_op,
        sqlite,
        memory,
        ..
    } = measured;
    let pool = *pool;
    let cold_rate = sqlite.cold.rate();
    report.check(
        "cold ≥ 0.85 × pool argon2 rate",
        format!(
            "{cold_rate:.1}/s vs {:.1}/s = {:.2}×",
            pool,
            cold_rate / pool
        ),
        cold_rate >= 0.85 * pool,
    );
    let warm = &sqlite.warm;
    report.check(
        "warm ≥ 100 × cold (SQLite)",
        format!("{:.0}×", warm.rate() / cold_rate),
        warm.rate() >= 100.0 * cold_rate,
    );
    report.check(
        "warm ≥ 0.3 × no-op RPC (SQLite)",
        format!(
            "{:.0}/s vs {:.0}/s = {:.3}×",
            warm.rate(),
            no_op.rate(),
            warm.rate() / no_op.rate()
        ),
        warm.rate() >= 0.3 * no_op.rate(),
    );
    report.check(
        &format!(
            "warm p99 < 5 ms at concurrency {} (SQLite)",
            options.concurrency
        ),
        ms(warm.quantile(0.99)),
        warm.quantile(0.99) < Duration::from_millis(5),
    );
    let cold_median = sqlite.cold.quantile(0.5).as_secs_f64();
    for (name, run) in [
        ("unknown user", &sqlite.unknown),
        ("wrong password", &sqlite.wrong),
    ] {
        let ratio = run.quantile(0.5).as_secs_f64() / cold_median;
        report.check(
            &format!("{name} median within 5% of cold"),
            format!("{ratio:.3}× cold"),
            (ratio - 1.0).abs() <= 0.05,
        );
    }
    report.check(
        "throttled ≥ warm rate",
        format!("{:.0}/s vs {:.0}/s", sqlite.throttled.rate(), warm.rate()),
        sqlite.throttled.rate() >= warm.rate(),
    );
    if let Some(scale) = &measured.scale {
        for (name, small, large) in [
            ("cold", &sqlite.cold, &scale.cold),
            ("warm", &sqlite.warm, &scale.warm),
        ] {
            let ratio = large.quantile(0.5).as_secs_f64() / small.quantile(0.5).as_secs_f64();
            report.check(
                &format!(
                    "{name} median, {} vs {} stored ≤ 1.2×",
                    scale.stored, measured.stored
                ),
                format!(
                    "{} vs {} = {ratio:.2}×",
                    ms(large.quantile(0.5)),
                    ms(small.quantile(0.5))
                ),
                ratio <= 1.2,
            );
        }
    }
    let workers = workers();
    let limit_mib = memory_limit_mib();
    let peak_mib = memory.peak_kib as f64 / 1024.0;
    report.check(
        "peak RSS, 1,000 concurrent cold < 64 MiB + 1.5 × workers × argon2 memory",
        format!(
            "{peak_mib:.1} MiB vs {limit_mib:.1} MiB ({workers} workers); after: {:.1} MiB \
             anonymous, {:.1} MiB file-backed",
            memory.anon_kib as f64 / 1024.0,
            memory.file_kib as f64 / 1024.0
        ),
        peak_mib < limit_mib,
    );
    if let Some(postgres) = &measured.postgres {
        let ratio = postgres.cold.rate() / pool;
        report.check(
            "cold ≥ 0.85 × pool argon2 rate (PostgreSQL)",
            format!("{ratio:.2}×"),
            ratio >= 0.85,
        );
    }
    if let Some(bulk) = &measured.bulk {
        bulk.checks(report, memory_limit_mib());
    }
}

/// The machine and the load's shape.
pub fn setup(options: &Options) -> String {
    let defaults = HashParams::default();
    format!(
        "{} cores; argon2id m={} KiB t={} p={}; concurrency {} over {CHANNELS} HTTP/2 \
         connections; {} s per scenario",
        workers(),
        defaults.memory_kib,
        defaults.iterations,
        defaults.parallelism,
        options.concurrency,
        options.duration.as_secs(),
    )
}

/// The lines above the table: the machine, the parameters, the floors.
pub fn summary(measured: &Measured) -> String {
    let Measured {
        options,
        one_thread,
        pool,
        no_op,
        stored,
        ..
    } = measured;
    let workers = workers();
    format!(
        "{}; {stored} app passwords stored for the SQLite scenarios.\n\n\
         Floors: argon2id verifications/s on one thread {one_thread:.1}, on the hashing pool \
         ({workers} workers, no gRPC) {pool:.1}; no-op unary RPC {:.0}/s.\n\n",
        setup(options),
        no_op.rate()
    )
}
