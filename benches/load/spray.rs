//! The spray: distinct wrong passwords from many networks, past every bound
//! of what failed logins leave behind (README, "What failed logins leave
//! behind"), and the server's memory against the stated bound.
//!
//! A fresh SQLite server with the default memory bounds, but two settings
//! that make the spray reach them in a minute instead of hours: argon2 at
//! its cheapest (8 MiB, one pass: the spray's cost is argon2, and what is
//! measured is what a failure leaves, not argon2's buffers, which are
//! bounded by the workers anyway), and `throttle.source_limit` 1, so that
//! each failure from a new network leaves a block too (the worst case for
//! memory). Half the failures are for accounts that do not exist, half for
//! 1,000 that do (fewer than their account limit each); each from a
//! network of its own, IPv4 addresses and IPv6 /64s in turn. RSS and the
//! gauges are sampled every tenth of the spray.

use std::sync::Arc;
use std::time::Duration;

use crate::bench::{authenticate, Bench};
use crate::drive::{Run, Until};
use crate::options::Options;
use crate::report::Report;
use crate::server::{metric, Server};
use crate::BoxError;

/// Existing accounts the spray guesses at.
const ACCOUNTS: usize = 1_000;
/// The stated bound on what failures leave behind with the default
/// configuration, in MiB (README): the parts' figures (about 75 MiB) and
/// the allocator's own overhead on them, measured.
pub const BOUND_MIB: f64 = 100.0;

/// The gauges the spray reads, by their names in `/metrics`.
const GAUGES: [&str; 6] = [
    "latchkey_remembered_guesses",
    "latchkey_remembered_guesses_capacity",
    "latchkey_remembered_blocks",
    "latchkey_remembered_blocks_capacity",
    "latchkey_throttled_kinds_pending",
    "latchkey_coalesced_events_pending",
];

/// What the spray measured.
pub struct Spray {
    pub failures: u64,
    pub run: Run,
    /// RSS before the spray, at its end, and the peak, in KiB.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub peak_kib: u64,
    /// After each tenth of the spray: failures sent, RSS in KiB, and the
    /// remembered guesses then.
    pub samples: Vec<(u64, u64, f64)>,
    /// The gauges at the end, as `GAUGES` names them.
    pub gauges: Vec<(&'static str, f64)>,
}

/// A network of its own for failure `n`: an IPv4 address or an IPv6 /64.
fn network(n: u64) -> String {
    if n % 2 == 0 {
        let v4 = 0x0b00_0000 + (n / 2);
        format!(
            "{}.{}.{}.{}",
            (v4 >> 24) & 255,
            (v4 >> 16) & 255,
            (v4 >> 8) & 255,
            v4 & 255
        )
    } else {
        format!("2001:db8:{:x}:{:x}::1", (n >> 16) & 0xffff, n & 0xffff)
    }
}

/// A well-formed secret that matches nothing, distinct for `n`.
fn wrong_secret(n: u64) -> String {
    format!("{n:0>28}")
        .bytes()
        .map(|digit| char::from(b'a' + (digit - b'0')))
        .collect()
}

pub async fn spray(options: &Options, dir: &std::path::Path) -> Result<Spray, BoxError> {
    let url = format!("sqlite://{}?mode=rwc", dir.join("spray.db").display());
    let env = [
        ("LATCHKEY_ARGON2__MEMORY_KIB", "8192"),
        ("LATCHKEY_ARGON2__ITERATIONS", "1"),
        ("LATCHKEY_THROTTLE__SOURCE_LIMIT", "1"),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .to_vec();
    let server = Server::start_with(&url, dir, env).await?;
    let mut bench = Bench::new(options.clone(), server).await?;
    bench.top_up(ACCOUNTS).await;
    let accounts: Arc<Vec<String>> =
        Arc::new(bench.logins.iter().map(|l| l.username.clone()).collect());
    let rss_before_kib = bench.server.rss_kib()?;
    let failures = options.spray_failures;
    let tenth = (failures / 10).max(1);
    let mut run = Run::default();
    let mut samples = Vec::new();
    let metrics = bench.server.metrics_addr.clone();
    let mut from = 0;
    while from < failures {
        let to = (from + tenth).min(failures);
        let (key, accounts) = (bench.authenticator.clone(), Arc::clone(&accounts));
        let part = bench
            .run_until(
                Until::Elapsed(Duration::from_secs(3600)),
                move |i, channel| {
                    let (key, accounts) = (key.clone(), Arc::clone(&accounts));
                    async move {
                        let n = from + i;
                        if n >= to {
                            return None;
                        }
                        let user = if n % 4 < 2 {
                            format!("nobody-{n}")
                        } else {
                            accounts[(n as usize / 4) % accounts.len()].clone()
                        };
                        Some(authenticate(channel, &key, user, wrong_secret(n), network(n)).await)
                    }
                },
            )
            .await;
        run.absorb(part);
        let guesses = metric(&metrics, "latchkey_remembered_guesses").await?;
        samples.push((to, bench.server.rss_kib()?, guesses));
        eprintln!(
            "  {to} failures: RSS {} KiB, {guesses} guesses remembered",
            samples[samples.len() - 1].1
        );
        from = to;
    }
    let mut gauges = Vec::new();
    for name in GAUGES {
        gauges.push((name, metric(&metrics, name).await?));
    }
    let spray = Spray {
        failures,
        run,
        rss_before_kib,
        rss_after_kib: bench.server.rss_kib()?,
        peak_kib: bench.server.peak_rss_kib()?,
        samples,
        gauges,
    };
    bench.server.stop()?;
    Ok(spray)
}

impl Spray {
    fn gauge(&self, name: &str) -> f64 {
        self.gauges
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(f64::NAN, |(_, v)| *v)
    }

    /// RSS growth from before the spray to `kib`, in MiB.
    fn growth_mib(&self, kib: u64) -> f64 {
        (kib as f64 - self.rss_before_kib as f64) / 1024.0
    }

    pub fn rows(&self, report: &mut Report) {
        report.row(
            &format!("spray: {} distinct failures", self.failures),
            "SQLite",
            &self.run,
            &["failure_reason_invalid_credentials"],
        );
    }

    pub fn checks(&self, report: &mut Report) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let (guesses, guesses_capacity) = (
            self.gauge("latchkey_remembered_guesses"),
            self.gauge("latchkey_remembered_guesses_capacity"),
        );
        let (blocks, blocks_capacity) = (
            self.gauge("latchkey_remembered_blocks"),
            self.gauge("latchkey_remembered_blocks_capacity"),
        );
        report.check(
            "spray: remembered guesses and blocks at their bounds, not past",
            format!(
                "guesses {guesses:.0} / {guesses_capacity:.0}, blocks {blocks:.0} / \
                 {blocks_capacity:.0}, throttled kinds pending {:.0} / 1000, coalesced events \
                 pending {:.0}",
                self.gauge("latchkey_throttled_kinds_pending"),
                self.gauge("latchkey_coalesced_events_pending"),
            ),
            guesses <= guesses_capacity && blocks <= blocks_capacity,
        );
        let peak_growth = self.growth_mib(self.peak_kib);
        report.check(
            &format!("spray: RSS growth ≤ the stated {BOUND_MIB:.0} MiB"),
            format!(
                "RSS {:.1} MiB before, {:.1} after, peak {:.1}: +{peak_growth:.1} MiB at the peak",
                mib(self.rss_before_kib),
                mib(self.rss_after_kib),
                mib(self.peak_kib),
            ),
            peak_growth <= BOUND_MIB,
        );
        // Past the bounds, memory stops growing with failures: over the
        // last 30% of the spray (all past them), at most 5% of the bound.
        let settled = self.samples.len() * 7 / 10;
        let (text, met) = match (
            self.samples.get(settled.saturating_sub(1)),
            self.samples.last(),
        ) {
            (Some(&(from, kib, guesses)), Some(&(last, last_kib, _))) => {
                let growth = (last_kib as f64 - kib as f64) / 1024.0;
                (
                    format!(
                        "{:+.1} MiB from failure {from} ({guesses:.0} guesses) to {last}; \
                         before: {:.0} B per failure",
                        growth,
                        (kib as f64 - self.rss_before_kib as f64) * 1024.0 / from as f64
                    ),
                    guesses >= guesses_capacity && growth <= BOUND_MIB / 20.0,
                )
            }
            _ => ("no samples".to_owned(), false),
        };
        report.check("spray: past the bound, RSS stops growing", text, met);
    }
}
