//! The load benchmark: how fast latchkey answers, against the floors it is
//! judged by. Run with `cargo bench --bench load` (release build); options
//! after `--`: `--duration SECS` (10), `--concurrency N` (64),
//! `--postgres-url URL` (an admin URL: the PostgreSQL scenarios run in a
//! fresh database made there and dropped after), `--skip-scale`,
//! `--skip-bulk`, `--bulk-only`, and `--out FILE` (`target/load.md`). The
//! table is printed and written there.
//!
//! The real `latchkey` binary serves in its own process with its defaults
//! (default argon2id parameters, one request log line each, written to a
//! file) on a temporary SQLite database; this process is the load, over
//! real gRPC, sharing the machine's cores with it, as a proxy on the same
//! host would. Scenarios: IssueAppPassword; Authenticate cold (each secret
//! once: argon2 every time), warm (64 secrets repeated: the verified-secret
//! cache), unknown user and wrong password (each from its own address, so
//! throttling stays out of the way: the cost of a failure is measured, not
//! the throttle), and a throttled source. Floors, in the same run: argon2
//! on one thread and on the hashing pool with no gRPC around it, and a
//! no-op unary RPC (grpc.health.v1 Check) over the same stack. Then the
//! 1,000,000-row scale check and the peak memory under 1,000 concurrent
//! cold logins. With PostgreSQL, last, a bulk revocation of 100,000 app
//! passwords (20,000 accounts × 5) while warm logins go on: its time, the
//! logins' rate and latency meanwhile, the server's memory, and the
//! database counted after (`bulk.rs`). With PostgreSQL, then, the change
//! feed across two replicas (`watch.rs`): revoke → event latency on SQLite,
//! PostgreSQL and (`--mysql-url`) MariaDB, and the drain of a 100,000-event
//! backlog on PostgreSQL; `--skip-watch` leaves it out, `--watch-only` runs
//! it alone. Last, with PostgreSQL, the fleet (`fleet.rs`): three
//! replicas, `--fleet-devices` devices signing in round-robin over them, a
//! rolling restart, with warm verifiers and without, and a restart burst;
//! `--skip-fleet` leaves it out, `--fleet-only` runs it alone. Last, the
//! mail stack (`mailstack.rs`): IMAP logins through real nginx and Dovecot,
//! nginx asking latchkey, beside the same stack with nginx answering its
//! `auth_http` itself; `--skip-mailstack` leaves it out, `--mailstack-only`
//! runs it alone. Last, the spray (`spray.rs`): `--spray-failures` distinct
//! wrong passwords from as many networks, past every bound of what failures
//! leave behind, with the server's RSS and memory gauges against the stated
//! bound; `--skip-spray` leaves it out, `--spray-only` runs it alone. With
//! `--postgres-url`, feed writes (`feedwrites.rs`): revokes through four
//! replicas, each one change-feed event, against 5,000 events/s;
//! `--skip-feed-writes` leaves them out, `--feed-writes-only` runs them
//! alone.

#[path = "../../tests/it/common/bearer.rs"]
mod bearer;

mod bench;
mod bulk;
mod drive;
mod feedwrites;
mod fleet;
mod floors;
mod mailstack;
mod options;
mod program;
mod report;
mod scale;
mod scenarios;
mod seed;
mod server;
mod spray;
mod targets;
mod watch;

use std::time::Duration;

use bench::Bench;
use bulk::bulk;
use feedwrites::{feed_writes_compared, FeedWritesCompared};
use fleet::fleet;
use floors::{argon2_one_thread, argon2_pool};
use mailstack::{mailstack, Mailstack};
use options::Options;
use report::Report;
use scale::{memory, scale, MEMORY_CONCURRENCY};
use scenarios::{postgres_scenarios, Scenarios};
use seed::count_passwords;
use server::Server;
use spray::{spray, Spray};
use targets::Measured;
use watch::{watch, Watch};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = Options::parse()?;
    let dir = tempfile::tempdir()?;
    if options.bulk_only {
        return bulk_only(&options, dir.path()).await;
    }
    if options.watch_only {
        return watch_only(&options, dir.path()).await;
    }
    if options.fleet_only {
        return fleet_only(&options, dir.path()).await;
    }
    if options.mailstack_only {
        return mailstack_only(&options, dir.path()).await;
    }
    if options.spray_only {
        return spray_only(&options, dir.path()).await;
    }
    if options.feed_writes_only {
        return feed_writes_only(&options, dir.path()).await;
    }
    if let Some(out) = &options.perf_warm {
        return perf_warm(&options, dir.path(), out).await;
    }
    let sqlite_url = format!("sqlite://{}?mode=rwc", dir.path().join("load.db").display());
    let mut report = Report::default();

    eprintln!("floors: argon2 on one thread, then on the pool");
    let one_thread = argon2_one_thread(Duration::from_secs(3))?;
    let pool = argon2_pool(options.concurrency, options.duration / 2).await?;

    let server = Server::start(&sqlite_url, dir.path()).await?;
    let mut bench = Bench::new(options.clone(), server).await?;
    eprintln!("no-op RPC");
    let no_op = bench.no_op().await;
    report.row("no-op RPC (health Check)", "-", &no_op, &["success"]);
    eprintln!("SQLite scenarios");
    let sqlite = Scenarios::run(&mut bench, pool).await;
    sqlite.report(&mut report, "SQLite");
    let stored = count_passwords(&sqlite_url).await?;

    eprintln!("memory: {MEMORY_CONCURRENCY} concurrent cold logins on a fresh process");
    let memory = memory(&mut bench, &mut report).await?;
    let scale = if options.skip_scale {
        None
    } else {
        eprintln!("scale: seeding 1,000,000 app passwords");
        Some(scale(&mut bench, &sqlite_url, &mut report).await?)
    };
    bench.server.stop()?;

    let postgres = match &options.postgres_url {
        Some(admin) => {
            eprintln!("PostgreSQL scenarios");
            Some(postgres_scenarios(admin, &options, dir.path(), &mut report, pool).await?)
        }
        None => None,
    };
    let bulk = match &options.postgres_url {
        Some(admin) if !options.skip_bulk => {
            eprintln!("bulk revocation on PostgreSQL");
            let bulk = bulk(admin, &options, dir.path()).await?;
            bulk.rows(&mut report);
            Some(bulk)
        }
        _ => None,
    };
    let watch = match &options.postgres_url {
        Some(_) if !options.skip_watch => {
            eprintln!("the change feed across two replicas");
            Some(watch(&options, dir.path()).await?)
        }
        _ => None,
    };

    let fleet = match &options.postgres_url {
        Some(_) if !options.skip_fleet => Some(fleet(&options, dir.path()).await?),
        _ => None,
    };
    let mailstack = if options.skip_mailstack {
        None
    } else {
        eprintln!("the mail stack: IMAP through nginx and Dovecot");
        Some(mailstack(&options, dir.path()).await?)
    };
    let feed = match &options.postgres_url {
        Some(_) if !options.skip_feed_writes => {
            eprintln!(
                "feed writes: revokes through {} replicas",
                feedwrites::REPLICAS
            );
            Some(feed_writes_compared(&options, dir.path()).await?)
        }
        _ => None,
    };
    let spray = if options.skip_spray {
        None
    } else {
        eprintln!("the spray: distinct failures from many networks");
        Some(spray(&options, dir.path()).await?)
    };

    let out = options.out.clone();
    let measured = Measured {
        options,
        one_thread,
        pool,
        no_op,
        sqlite,
        stored,
        memory,
        scale,
        postgres,
        bulk,
    };
    targets::check(&mut report, &measured);
    if let Some(watch) = &watch {
        watch.checks(&mut report);
    }
    if let Some(fleet) = &fleet {
        fleet.rows(&mut report);
        fleet.checks(&mut report);
    }
    if let Some(mailstack) = &mailstack {
        mailstack.rows(&mut report);
        mailstack.checks(&mut report);
    }
    if let Some(feed) = &feed {
        feed.rows(&mut report);
        feed.checks(&mut report);
    }
    if let Some(spray) = &spray {
        spray.rows(&mut report);
        spray.checks(&mut report);
    }
    report.publish(&targets::summary(&measured), &out)?;
    measured.bulk.as_ref().map_or(Ok(()), bulk::Bulk::verify)?;
    watch.as_ref().map_or(Ok(()), Watch::verify)?;
    mailstack.as_ref().map_or(Ok(()), Mailstack::verify)
}

/// `--bulk-only`: the bulk revocation alone, and its report.
async fn bulk_only(options: &Options, dir: &std::path::Path) -> Result<(), BoxError> {
    let admin = options.postgres_url.as_deref().ok_or("no --postgres-url")?;
    let bulk = bulk(admin, options, dir).await?;
    let mut report = Report::default();
    bulk.rows(&mut report);
    bulk.checks(&mut report, targets::memory_limit_mib());
    let summary = format!("{}; the bulk revocation only.\n\n", targets::setup(options));
    report.publish(&summary, &options.out)?;
    bulk.verify()
}

/// `--fleet-only`: the fleet alone (PostgreSQL), and its report.
async fn fleet_only(options: &Options, dir: &std::path::Path) -> Result<(), BoxError> {
    let fleet = fleet(options, dir).await?;
    let mut report = Report::default();
    fleet.rows(&mut report);
    fleet.checks(&mut report);
    let summary = format!("{}; the fleet only.\n\n", targets::setup(options));
    report.publish(&summary, &options.out)?;
    Ok(())
}

/// `--mailstack-only`: the mail stack alone, and its report.
async fn mailstack_only(options: &Options, dir: &std::path::Path) -> Result<(), BoxError> {
    let mailstack = mailstack(options, dir).await?;
    let mut report = Report::default();
    mailstack.rows(&mut report);
    mailstack.checks(&mut report);
    let summary = format!("{} cores; the mail stack only.\n\n", targets::workers());
    report.publish(&summary, &options.out)?;
    mailstack.verify()
}

/// `--perf-warm FILE`: the no-op RPC, then the warm scenario with the
/// server under `perf record --call-graph dwarf` (from 2 s into it, for all but the last
/// second, so the untimed first verifications stay out), and both rows.
async fn perf_warm(options: &Options, dir: &std::path::Path, out: &str) -> Result<(), BoxError> {
    let sqlite_url = format!("sqlite://{}?mode=rwc", dir.join("load.db").display());
    let server = Server::start(&sqlite_url, dir).await?;
    let mut bench = Bench::new(options.clone(), server).await?;
    bench.top_up(scenarios::WARM_SECRETS).await;
    let no_op = bench.no_op().await;
    let pid = bench.server.pid()?.to_string();
    let seconds = options
        .duration
        .as_secs()
        .saturating_sub(3)
        .max(1)
        .to_string();
    let out = out.to_owned();
    let perf = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        std::process::Command::new("perf")
            .args([
                "record",
                "--call-graph",
                "dwarf,32768",
                "-F",
                "499",
                "-p",
                &pid,
                "-o",
                &out,
            ])
            .args(["--", "sleep", &seconds])
            .status()
    });
    let warm = bench.warm().await;
    let recorded = perf.await?;
    if !recorded.is_ok_and(|status| status.success()) {
        return Err("perf record failed".into());
    }
    bench.server.stop()?;
    let mut report = Report::default();
    report.row("no-op RPC (health Check)", "-", &no_op, &["success"]);
    report.row(
        "Authenticate warm (under perf)",
        "SQLite",
        &warm,
        &["success"],
    );
    let summary = format!("{}; the warm path under perf.\n\n", targets::setup(options));
    report.publish(&summary, &options.out)?;
    Ok(())
}

/// `--feed-writes-only`: the feed writes alone, and their report.
async fn feed_writes_only(options: &Options, dir: &std::path::Path) -> Result<(), BoxError> {
    let feed: FeedWritesCompared = feed_writes_compared(options, dir).await?;
    let mut report = Report::default();
    feed.rows(&mut report);
    feed.checks(&mut report);
    let summary = format!(
        "{}; feed writes only: revokes through {} replicas on PostgreSQL.\n\n",
        targets::setup(options),
        feedwrites::REPLICAS
    );
    report.publish(&summary, &options.out)?;
    Ok(())
}

/// `--spray-only`: the spray alone, and its report.
async fn spray_only(options: &Options, dir: &std::path::Path) -> Result<(), BoxError> {
    let spray: Spray = spray(options, dir).await?;
    let mut report = Report::default();
    spray.rows(&mut report);
    spray.checks(&mut report);
    let summary = format!(
        "{} cores; the spray only (argon2 m=8192 KiB t=1, throttle.source_limit 1, \
         concurrency {}).\n\n",
        targets::workers(),
        options.concurrency
    );
    report.publish(&summary, &options.out)?;
    Ok(())
}

/// `--watch-only`: the change feed alone, and its report.
async fn watch_only(options: &Options, dir: &std::path::Path) -> Result<(), BoxError> {
    let watch = watch(options, dir).await?;
    let mut report = Report::default();
    watch.checks(&mut report);
    let summary = format!("{}; the change feed only.\n\n", targets::setup(options));
    report.publish(&summary, &options.out)?;
    watch.verify()
}
