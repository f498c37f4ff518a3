//! Feed writes from a fleet: four `latchkey serve` replicas on one
//! PostgreSQL database, each revoking app passwords as fast as it is asked,
//! every revoke one change-feed event (issue 23: "Feed writes that scale").
//!
//! The passwords are seeded with set-based inserts (no argon2: revoking
//! reads no secret), `PER_ACCOUNT` + 1 on each of 100,000 / `PER_ACCOUNT`
//! accounts (120,000 in all), so that revokes of one account rarely meet;
//! a run that revokes them all fails rather than report a short rate. `concurrency` closed-loop tasks spread over the
//! replicas (one HTTP/2 connection each) revoke distinct passwords for
//! `duration`. Counted afterwards in the database: the feed's events (each
//! sequence number once, none missing between the first and the last) and
//! their rate, against the target of 5,000 events/s from 4 replicas.
//!
//! Run twice, in one run of the bench, each on a fresh database: first
//! with `database.feed_numbering = "row_lock"` (every writer holds the
//! feed's one row until it commits: the design before), then with the
//! default `"after_commit"` (written pending, numbered by one short
//! transaction per batch: `store/feed_numbering.rs`).

use std::sync::Arc;

use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::RevokeAppPasswordRequest;
use sea_orm::{ConnectionTrait, Database, Statement};
use tonic::service::interceptor::InterceptedService;

use crate::bearer::Bearer;
use crate::drive::{drive, Run, Until};
use crate::options::Options;
use crate::report::Report;
use crate::scenarios::in_fresh_database;
use crate::seed::{counts, seed_bulk};
use crate::server::Server;
use crate::BoxError;

/// Replicas writing at once.
pub const REPLICAS: usize = 4;
/// The seed's POP3 passwords on each account (`seed_bulk`); each account
/// has one more, for IMAP, and every one of them is revoked here.
const PER_ACCOUNT: i64 = 5;
/// The target, events/s committed from [`REPLICAS`] replicas.
pub const TARGET_PER_SECOND: f64 = 5_000.0;

/// The two designs, measured one after the other.
pub struct FeedWritesCompared {
    pub row_lock: FeedWrites,
    pub after_commit: FeedWrites,
}

/// Both designs' runs: the row lock first, then numbering after commit.
pub async fn feed_writes_compared(
    options: &Options,
    dir: &std::path::Path,
) -> Result<FeedWritesCompared, BoxError> {
    eprintln!("feed writes: numbered under the row lock (before)");
    let row_lock = feed_writes(options, dir, "row_lock").await?;
    eprintln!("feed writes: numbered after commit (after)");
    let after_commit = feed_writes(options, dir, "after_commit").await?;
    Ok(FeedWritesCompared {
        row_lock,
        after_commit,
    })
}

impl FeedWritesCompared {
    pub fn rows(&self, report: &mut Report) {
        self.row_lock.rows(report);
        self.after_commit.rows(report);
    }

    pub fn checks(&self, report: &mut Report) {
        self.row_lock.whole(report);
        self.after_commit.whole(report);
        self.after_commit.rate(report);
        report.check(
            "feed writes: numbered after commit against the row lock",
            format!(
                "{:.0}/s against {:.0}/s ({:.1}×)",
                self.after_commit.per_second(),
                self.row_lock.per_second(),
                self.after_commit.per_second() / self.row_lock.per_second().max(1.0)
            ),
            self.after_commit.per_second() > self.row_lock.per_second(),
        );
    }
}

/// What the run measured.
pub struct FeedWrites {
    /// `database.feed_numbering` of every replica.
    pub numbering: &'static str,
    pub run: Run,
    /// Events in the feed after the run, and the distinct sequence numbers
    /// among them, and the span from the first to the last.
    pub events: i64,
    pub distinct: i64,
    pub span: i64,
}

pub async fn feed_writes(
    options: &Options,
    dir: &std::path::Path,
    numbering: &'static str,
) -> Result<FeedWrites, BoxError> {
    let admin = options
        .postgres_url
        .as_deref()
        .ok_or("the feed writes need --postgres-url")?;
    in_fresh_database(admin, "feedwrites", |url| async move {
        // Created before the cutoff, as the seed wants; never expiring.
        let cutoff_ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis(),
        )?;
        let env = vec![(
            "LATCHKEY_DATABASE__FEED_NUMBERING".to_owned(),
            numbering.to_owned(),
        )];
        let mut first = Server::start_with(&url, dir, env).await?;
        seed_bulk(&url, cutoff_ms, PER_ACCOUNT).await?;
        let names = Arc::new(revocable(&url).await?);
        let seeded = u64::try_from(names.len())?;
        eprintln!("feed writes: {seeded} passwords seeded");
        let mut replicas = vec![];
        for n in 1..REPLICAS {
            replicas.push(first.replica(&format!("feed-{n}")).await?);
        }
        let mut channels = vec![first.channel().await?];
        for replica in &replicas {
            channels.push(replica.channel().await?);
        }
        let issuer = first.issuer_key.clone();
        let before = counts(&url, &["SELECT COALESCE(MAX(seq), 0) FROM audit_event"]).await?[0];
        let run = drive(
            &channels,
            options.concurrency,
            Until::Elapsed(options.duration),
            move |n, channel| {
                let (names, issuer) = (Arc::clone(&names), issuer.clone());
                async move {
                    let name = names.get(usize::try_from(n).ok()?)?.clone();
                    let bearer = Bearer::new(&issuer).ok()?;
                    let mut client =
                        AppPasswordServiceClient::new(InterceptedService::new(channel, bearer));
                    let request = RevokeAppPasswordRequest {
                        name,
                        ..Default::default()
                    };
                    Some(match client.revoke_app_password(request).await {
                        Ok(_) => "success".to_owned(),
                        Err(status) => format!("{:?}", status.code()),
                    })
                }
            },
        )
        .await;
        for replica in &mut replicas {
            replica.stop()?;
        }
        first.stop()?;
        let revoked = run.outcomes.get("success").copied().unwrap_or(0);
        if revoked >= seeded {
            return Err(format!(
                "every seeded password was revoked ({revoked}) before the run's end: the rate \
                 would be short; seed more or run shorter"
            )
            .into());
        }
        let after = feed_events(&url, before).await?;
        Ok(FeedWrites {
            numbering,
            run,
            events: after[0],
            distinct: after[1],
            span: after[2],
        })
    })
    .await
}

/// The names of the seeded passwords a revoke takes, accounts interleaved
/// so that neighbouring revokes are of different accounts.
async fn revocable(url: &str) -> Result<Vec<String>, BoxError> {
    let db = Database::connect(url).await?;
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT a.username, p.id::text AS id FROM app_password p \
             JOIN account a ON a.id = p.account_id \
             WHERE a.username LIKE 'bulk-%' \
             ORDER BY p.selector, a.id"
                .to_owned(),
        ))
        .await?;
    db.close().await?;
    rows.iter()
        .map(|row| {
            let username: String = row.try_get("", "username")?;
            let id: String = row.try_get("", "id")?;
            Ok(format!("accounts/{username}/appPasswords/{id}"))
        })
        .collect()
}

/// The feed's events after sequence number `after`: their rows, their
/// distinct numbers, and the span from `after` to the last.
async fn feed_events(url: &str, after: i64) -> Result<Vec<i64>, BoxError> {
    let queries = [
        format!("SELECT COUNT(seq) FROM audit_event WHERE seq > {after}"),
        format!("SELECT COUNT(DISTINCT seq) FROM audit_event WHERE seq > {after}"),
        format!("SELECT COALESCE(MAX(seq), {after}) - {after} FROM audit_event"),
    ];
    counts(url, &queries.each_ref().map(String::as_str)).await
}

impl FeedWrites {
    pub fn rows(&self, report: &mut Report) {
        report.row(
            &format!(
                "feed writes: revokes through {REPLICAS} replicas, {}",
                self.numbering
            ),
            "PostgreSQL",
            &self.run,
            &["success"],
        );
    }

    fn per_second(&self) -> f64 {
        self.events as f64 / self.run.elapsed.as_secs_f64()
    }

    fn whole(&self, report: &mut Report) {
        let revoked = self.run.outcomes.get("success").copied().unwrap_or(0);
        report.check(
            &format!(
                "feed writes, {}: every revoke one event, each sequence number once, none missing",
                self.numbering
            ),
            format!(
                "{revoked} revoked, {} events, {} distinct numbers over a span of {}",
                self.events, self.distinct, self.span
            ),
            i64::try_from(revoked).is_ok_and(|revoked| revoked == self.events)
                && self.events == self.distinct
                && self.distinct == self.span,
        );
    }

    fn rate(&self, report: &mut Report) {
        let rate = self.per_second();
        report.check(
            &format!(
                "feed writes, {}: ≥ {TARGET_PER_SECOND:.0} events/s from {REPLICAS} replicas",
                self.numbering
            ),
            format!("{rate:.0}/s"),
            rate >= TARGET_PER_SECOND,
        );
    }
}
