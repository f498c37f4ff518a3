//! The options after `--`: `--duration SECS` (10), `--concurrency N` (64),
//! `--postgres-url URL`, `--skip-scale`, `--skip-bulk`, `--bulk-only`,
//! `--bulk-per-account N` (5), `--skip-watch`, `--watch-only`,
//! `--watch-revokes N` (1000), `--mysql-url URL`, `--fleet-devices N`
//! (20000), `--fleet-duration SECS` (60), `--skip-fleet`, `--fleet-only`,
//! `--mailstack-concurrency N` (32), `--mailstack-duration SECS` (20),
//! `--skip-mailstack`, `--mailstack-only`, `--spray-failures N` (120000),
//! `--skip-spray`, `--spray-only`, `--skip-feed-writes`,
//! `--feed-writes-only`, `--perf-warm FILE` (only the no-op and warm rows, the warm one under
//! `perf record --call-graph dwarf` of the server), `--out FILE` (`target/load.md`).

use std::time::Duration;

use crate::seed::BULK_MATCHING;
use crate::BoxError;

#[derive(Clone)]
pub struct Options {
    pub duration: Duration,
    pub concurrency: usize,
    /// An admin URL: the PostgreSQL scenarios run in a fresh database made
    /// there and dropped after.
    pub postgres_url: Option<String>,
    pub skip_scale: bool,
    /// No bulk revocation (it runs on PostgreSQL only).
    pub skip_bulk: bool,
    /// Only the bulk revocation (needs `--postgres-url`).
    pub bulk_only: bool,
    /// How many of the 100,000 passwords to revoke each account has (it
    /// divides 100,000): the accounts are 100,000 / N.
    pub bulk_per_account: i64,
    /// No change feed benchmark (it runs with `--postgres-url`).
    pub skip_watch: bool,
    /// Only the change feed benchmark: on SQLite, and on PostgreSQL and
    /// MariaDB if their URLs are given.
    pub watch_only: bool,
    /// App passwords revoked in each of the change feed's latency rows.
    pub watch_revokes: usize,
    /// A MariaDB admin URL (`mysql://root@127.0.0.1:3306`): the change
    /// feed's latency rows run there too, in a fresh database dropped after.
    pub mysql_url: Option<String>,
    /// The fleet (with `--postgres-url`): devices, and the steady run's
    /// length; `--skip-fleet` leaves it out, `--fleet-only` runs it alone.
    pub fleet_devices: usize,
    pub fleet_duration: Duration,
    pub skip_fleet: bool,
    pub fleet_only: bool,
    /// The mail stack (IMAP through nginx and Dovecot, `mailstack.rs`):
    /// its IMAP clients at once, and each stack's measured time (in two
    /// halves); `--skip-mailstack` leaves it out, `--mailstack-only` runs
    /// it alone.
    pub mailstack_concurrency: usize,
    pub mailstack_duration: Duration,
    pub skip_mailstack: bool,
    pub mailstack_only: bool,
    /// The spray (`spray.rs`): distinct failures sent; `--skip-spray`
    /// leaves it out, `--spray-only` runs it alone.
    pub spray_failures: u64,
    pub skip_spray: bool,
    pub spray_only: bool,
    /// Feed writes from four replicas (`feedwrites.rs`, PostgreSQL):
    /// `--skip-feed-writes` leaves them out, `--feed-writes-only` runs them
    /// alone.
    pub skip_feed_writes: bool,
    pub feed_writes_only: bool,
    /// Only the no-op RPC and the warm scenario on SQLite, the second under
    /// `perf record --call-graph dwarf` of the server, written to this file.
    pub perf_warm: Option<String>,
    pub out: String,
}

impl Options {
    pub fn parse() -> Result<Self, BoxError> {
        let mut options = Self {
            duration: Duration::from_secs(10),
            concurrency: 64,
            postgres_url: None,
            skip_scale: false,
            skip_bulk: false,
            bulk_only: false,
            bulk_per_account: 5,
            skip_watch: false,
            watch_only: false,
            watch_revokes: 1000,
            mysql_url: None,
            fleet_devices: 20_000,
            fleet_duration: Duration::from_secs(60),
            skip_fleet: false,
            fleet_only: false,
            mailstack_concurrency: 32,
            mailstack_duration: Duration::from_secs(20),
            skip_mailstack: false,
            mailstack_only: false,
            spray_failures: 120_000,
            skip_spray: false,
            spray_only: false,
            skip_feed_writes: false,
            feed_writes_only: false,
            perf_warm: None,
            out: "target/load.md".to_owned(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--duration" => options.duration = Duration::from_secs(value()?.parse()?),
                "--concurrency" => options.concurrency = value()?.parse()?,
                "--postgres-url" => options.postgres_url = Some(value()?),
                "--out" => options.out = value()?,
                "--skip-scale" => options.skip_scale = true,
                "--skip-bulk" => options.skip_bulk = true,
                "--bulk-only" => options.bulk_only = true,
                "--bulk-per-account" => options.bulk_per_account = value()?.parse()?,
                "--skip-watch" => options.skip_watch = true,
                "--watch-only" => options.watch_only = true,
                "--watch-revokes" => options.watch_revokes = value()?.parse()?,
                "--mysql-url" => options.mysql_url = Some(value()?),
                "--fleet-devices" => options.fleet_devices = value()?.parse()?,
                "--fleet-duration" => {
                    options.fleet_duration = Duration::from_secs(value()?.parse()?)
                }
                "--skip-fleet" => options.skip_fleet = true,
                "--fleet-only" => options.fleet_only = true,
                "--mailstack-concurrency" => options.mailstack_concurrency = value()?.parse()?,
                "--mailstack-duration" => {
                    options.mailstack_duration = Duration::from_secs(value()?.parse()?)
                }
                "--skip-mailstack" => options.skip_mailstack = true,
                "--mailstack-only" => options.mailstack_only = true,
                "--spray-failures" => options.spray_failures = value()?.parse()?,
                "--skip-spray" => options.skip_spray = true,
                "--spray-only" => options.spray_only = true,
                "--skip-feed-writes" => options.skip_feed_writes = true,
                "--feed-writes-only" => options.feed_writes_only = true,
                "--perf-warm" => options.perf_warm = Some(value()?),
                "--bench" => {} // cargo bench passes it
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        if options.bulk_only && (options.skip_bulk || options.postgres_url.is_none()) {
            return Err("--bulk-only needs --postgres-url, and no --skip-bulk".into());
        }
        if options.watch_only && (options.skip_watch || options.bulk_only) {
            return Err("--watch-only goes with neither --skip-watch nor --bulk-only".into());
        }
        if options.fleet_only && (options.skip_fleet || options.postgres_url.is_none()) {
            return Err("--fleet-only needs --postgres-url, and no --skip-fleet".into());
        }
        if options.mailstack_only && options.skip_mailstack {
            return Err("--mailstack-only goes with no --skip-mailstack".into());
        }
        if options.spray_only && options.skip_spray {
            return Err("--spray-only goes with no --skip-spray".into());
        }
        if options.feed_writes_only && (options.skip_feed_writes || options.postgres_url.is_none())
        {
            return Err(
                "--feed-writes-only needs --postgres-url, and no --skip-feed-writes".into(),
            );
        }
        if options.spray_failures < 10 {
            return Err("--spray-failures must be at least 10".into());
        }
        if options.mailstack_concurrency < 1 || options.mailstack_duration.as_secs() < 2 {
            return Err(
                "--mailstack-concurrency must be 1 or more, --mailstack-duration 2 or more".into(),
            );
        }
        if options.fleet_devices < 1_000 {
            return Err("--fleet-devices must be at least 1000 (the restart burst)".into());
        }
        if options.watch_revokes < 5 {
            return Err("--watch-revokes must be at least 5".into());
        }
        let per_account = options.bulk_per_account;
        if per_account < 1 || BULK_MATCHING % per_account != 0 {
            return Err(format!("--bulk-per-account must divide {BULK_MATCHING}").into());
        }
        Ok(options)
    }
}
