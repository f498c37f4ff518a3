//! PostgreSQL only: BulkRevokeAppPasswords takes 100,000 app passwords,
//! seeded over 20,000 accounts, while warm logins go on; the server's
//! memory is watched, and the database is counted after.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::{AppPasswordFilter, BulkRevokeAppPasswordsRequest, Protocol};
use tonic::transport::Channel;

use crate::bearer::Bearer;
use crate::bench::Bench;
use crate::drive::{Run, Until};
use crate::options::Options;
use crate::report::{ms, Report};
use crate::scenarios::{in_fresh_database, WARM_SECRETS};
use crate::seed::{count_passwords, counts, seed_bulk, BULK_MATCHING, POP3_OR_ANY_BITS};
use crate::server::{status_kib, Server};
use crate::BoxError;

/// The filter's cutoff: a day before the run (the warm passwords, issued
/// in the run, are after it).
const CUTOFF_BEFORE_NOW_MS: i64 = 24 * 3600 * 1000;
/// Past this, the revocation is declared stuck.
const GIVE_UP: Duration = Duration::from_secs(15 * 60);
/// How often the server's resident memory is read during the revocation.
pub const RSS_EVERY: Duration = Duration::from_millis(100);
const SECOND: Duration = Duration::from_secs(1);
const EVENT_TYPE: &str = "app_passwords_bulk_revoked";

/// One BulkRevokeAppPasswords call, as answered.
pub struct Call {
    pub elapsed: Duration,
    pub revoked: i64,
    pub accounts: i64,
    /// The server's resident memory right after it answered, in KiB.
    pub rss_kib: u64,
}

/// The server's memory around the revocation, in KiB.
pub struct BulkMemory {
    pub rss_before: u64,
    /// VmHWM before: the peak of the process so far (its warm-up, the
    /// baseline's logins).
    pub peak_before: u64,
    /// The largest VmRSS read during the revocation.
    pub sampled_max: u64,
    /// The largest VmRSS read in each second of the revocation.
    pub each_second: Vec<u64>,
    pub peak_after: u64,
    pub rss_after: u64,
}

/// What the database holds after.
pub struct Counted {
    pub revoked: i64,
    /// Revoked, though the filter does not take them.
    pub revoked_outside: i64,
    /// Still active and taken by the filter.
    pub left_matching: i64,
    /// The warm passwords (issued through the RPC) still active.
    pub warm_active: i64,
    pub events: i64,
    pub event_items: i64,
    pub event_accounts: i64,
    /// Accounts whose events do not add up to what each had matching.
    pub accounts_off: i64,
}

pub struct Bulk {
    /// Passwords to revoke on each account, and the accounts.
    pub per_account: i64,
    pub accounts: i64,
    pub stored: i64,
    /// Warm passwords issued through the RPC.
    pub warm: usize,
    /// validate_only's count and time.
    pub matching: i64,
    pub validate: Duration,
    /// Warm logins before, and during the revocation.
    pub baseline: Run,
    pub during: Run,
    pub calls: Vec<Call>,
    pub wall: Duration,
    pub memory: BulkMemory,
    pub counted: Counted,
}

fn now_ms() -> Result<i64, BoxError> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis(),
    )?)
}

/// The filter's cutoff, in milliseconds since the epoch: a day ago.
pub fn cutoff_ms() -> Result<i64, BoxError> {
    Ok(now_ms()? - CUTOFF_BEFORE_NOW_MS)
}

/// The revocation of what [`seed_bulk`] seeded to revoke: POP3, created
/// before `cutoff_ms`.
pub fn bulk_request(cutoff_ms: i64) -> Result<BulkRevokeAppPasswordsRequest, BoxError> {
    Ok(BulkRevokeAppPasswordsRequest {
        filter: Some(AppPasswordFilter {
            created_before: Some(prost_types::Timestamp {
                seconds: cutoff_ms.div_euclid(1000),
                nanos: i32::try_from(cutoff_ms.rem_euclid(1000) * 1_000_000)?,
            }),
            protocol: Protocol::Pop3 as i32,
            ..Default::default()
        }),
        reason: "load benchmark: POP3 retired".into(),
        validate_only: false,
    })
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Seeds a fresh PostgreSQL database, issues the warm passwords, and
/// revokes every POP3 password issued before the cutoff while the warm
/// ones log in at the configured concurrency.
pub async fn bulk(admin_url: &str, options: &Options, dir: &Path) -> Result<Bulk, BoxError> {
    in_fresh_database(admin_url, "bulk", |url| async move {
        let server = Server::start(&url, dir).await?;
        let operator = Bearer::new(&server.add_caller("bench-operator", "operator")?)?;
        let mut bench = Bench::new(options.clone(), server).await?;
        // IMAP, issued now: outside the filter on both counts.
        bench.top_up(WARM_SECRETS).await;
        let cutoff_ms = cutoff_ms()?;
        eprintln!("bulk: seeding {BULK_MATCHING} app passwords to revoke, and others");
        let per_account = options.bulk_per_account;
        seed_bulk(&url, cutoff_ms, per_account).await?;
        let stored = count_passwords(&url).await?;
        bench.restart().await?;

        let mut client =
            AppPasswordServiceClient::with_interceptor(bench.server.channel().await?, operator);
        let request = bulk_request(cutoff_ms)?;
        let sent = Instant::now();
        let validated = client
            .bulk_revoke_app_passwords(BulkRevokeAppPasswordsRequest {
                validate_only: true,
                ..request.clone()
            })
            .await?
            .into_inner();
        let validate = sent.elapsed();

        eprintln!("bulk: warm logins before");
        let baseline = bench.warm().await;
        let rss_before = bench.server.rss_kib()?;
        let peak_before = bench.server.peak_rss_kib()?;
        eprintln!("bulk: BulkRevokeAppPasswords until complete, warm logins meanwhile");
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = watch_rss(bench.server.pid()?, Arc::clone(&stop), SECOND);
        let started = Instant::now();
        let revoke = async {
            let calls = revoke_all(&bench.server, &mut client, request).await;
            stop.store(true, Ordering::Relaxed);
            (calls, started.elapsed())
        };
        let load = bench.warm_until(Until::Stopped(Arc::clone(&stop)));
        let (during, (calls, wall)) = tokio::join!(load, revoke);
        let each_second = watcher.await?;
        let memory = BulkMemory {
            rss_before,
            peak_before,
            sampled_max: each_second.iter().copied().max().unwrap_or_default(),
            each_second,
            peak_after: bench.server.peak_rss_kib()?,
            rss_after: bench.server.rss_kib()?,
        };
        bench.server.stop()?;
        let calls = calls?;
        let counted = count(&url, cutoff_ms, per_account).await?;
        Ok(Bulk {
            per_account,
            accounts: BULK_MATCHING / per_account,
            stored,
            warm: bench.logins.len(),
            matching: validated.matching_count,
            validate,
            baseline,
            during,
            calls,
            wall,
            memory,
            counted,
        })
    })
    .await
}

/// Reads the process's VmRSS every [`RSS_EVERY`] until `stop`; returns the
/// largest of each `bucket` of time (a second, or [`RSS_EVERY`] for every
/// reading), in KiB.
pub fn watch_rss(
    pid: u32,
    stop: Arc<AtomicBool>,
    bucket: Duration,
) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut largest: Vec<u64> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(kib) = status_kib(pid, "VmRSS") {
                let index = bucket_of(started.elapsed(), bucket);
                if largest.len() <= index {
                    largest.resize(index + 1, 0);
                }
                largest[index] = largest[index].max(kib);
            }
            tokio::time::sleep(RSS_EVERY).await;
        }
        largest
    })
}

/// Which `bucket` of time `elapsed` falls in, counting from 0.
pub fn bucket_of(elapsed: Duration, bucket: Duration) -> usize {
    (elapsed.as_millis() / bucket.as_millis().max(1)) as usize
}

/// Sends `request` again until the server says it is complete.
pub async fn revoke_all(
    server: &Server,
    client: &mut AppPasswordServiceClient<
        tonic::service::interceptor::InterceptedService<Channel, Bearer>,
    >,
    request: BulkRevokeAppPasswordsRequest,
) -> Result<Vec<Call>, BoxError> {
    let started = Instant::now();
    let mut calls = Vec::new();
    loop {
        let sent = Instant::now();
        let response = client
            .bulk_revoke_app_passwords(request.clone())
            .await?
            .into_inner();
        calls.push(Call {
            elapsed: sent.elapsed(),
            revoked: response.revoked_count,
            accounts: response.account_count,
            rss_kib: server.rss_kib()?,
        });
        eprintln!(
            "bulk: call {}: {} revoked in {}",
            calls.len(),
            response.revoked_count,
            ms(sent.elapsed())
        );
        if response.complete {
            return Ok(calls);
        }
        if started.elapsed() > GIVE_UP {
            let revoked: i64 = calls.iter().map(|call| call.revoked).sum();
            return Err(format!(
                "bulk revocation not complete after {} calls in {:?}: {revoked} revoked",
                calls.len(),
                started.elapsed()
            )
            .into());
        }
    }
}

/// Counts, in the database, what was revoked and audited.
async fn count(url: &str, cutoff_ms: i64, per_account: i64) -> Result<Counted, BoxError> {
    let taken = format!("(protocols & {POP3_OR_ANY_BITS}) <> 0 AND created_at < {cutoff_ms}");
    let events = format!("FROM audit_event WHERE event_type = '{EVENT_TYPE}'");
    let queries = [
        "SELECT COUNT(*) FROM app_password WHERE revoked_at IS NOT NULL".to_owned(),
        format!("SELECT COUNT(*) FROM app_password WHERE revoked_at IS NOT NULL AND NOT ({taken})"),
        format!("SELECT COUNT(*) FROM app_password WHERE revoked_at IS NULL AND {taken}"),
        "SELECT COUNT(*) FROM app_password WHERE issued_by <> 'bench' AND revoked_at IS NULL"
            .to_owned(),
        format!("SELECT COUNT(*) {events}"),
        format!("SELECT COALESCE(SUM(item_count), 0)::bigint {events}"),
        format!("SELECT COUNT(DISTINCT username) {events}"),
        format!(
            "SELECT COUNT(*) FROM (SELECT username {events} GROUP BY username \
             HAVING SUM(item_count) <> {per_account}) AS off"
        ),
    ];
    let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
    let n = counts(url, &queries).await?;
    Ok(Counted {
        revoked: n[0],
        revoked_outside: n[1],
        left_matching: n[2],
        warm_active: n[3],
        events: n[4],
        event_items: n[5],
        event_accounts: n[6],
        accounts_off: n[7],
    })
}

impl Bulk {
    fn revoked(&self) -> i64 {
        self.calls.iter().map(|call| call.revoked).sum()
    }

    fn audit_events(&self) -> i64 {
        self.calls.iter().map(|call| call.accounts).sum()
    }

    /// Whether the answers say all 100,000 were revoked, and validate_only
    /// counted them first.
    fn answers_right(&self) -> bool {
        self.matching == BULK_MATCHING && self.revoked() == BULK_MATCHING
    }

    /// Whether the database holds exactly that: all taken revoked, nothing
    /// else, the warm ones active.
    fn database_right(&self) -> bool {
        let c = &self.counted;
        c.revoked == BULK_MATCHING
            && c.revoked_outside == 0
            && c.left_matching == 0
            && c.warm_active == self.warm as i64
    }

    /// Whether the audit trail adds up: per account, and in all.
    fn audit_right(&self) -> bool {
        let c = &self.counted;
        c.event_items == BULK_MATCHING
            && c.events == self.audit_events()
            && c.event_accounts == self.accounts
            && c.accounts_off == 0
    }

    /// An error unless the revocation did exactly what it should have.
    pub fn verify(&self) -> Result<(), BoxError> {
        if self.answers_right() && self.database_right() && self.audit_right() {
            Ok(())
        } else {
            Err("bulk revocation: the counts are wrong (see the report's targets)".into())
        }
    }

    /// The warm logins' rows in the main table.
    pub fn rows(&self, report: &mut Report) {
        report.row(
            &format!("warm, before bulk revocation ({} stored)", self.stored),
            "PostgreSQL",
            &self.baseline,
            &["success"],
        );
        report.row(
            &format!("warm, during BulkRevokeAppPasswords of {BULK_MATCHING}"),
            "PostgreSQL",
            &self.during,
            &["success"],
        );
    }

    /// Its targets, and its section.
    pub fn checks(&self, report: &mut Report, memory_limit_mib: f64) {
        report.check(
            &format!("bulk revocation of {BULK_MATCHING} (PostgreSQL): complete, all revoked"),
            format!(
                "validate_only {}; revoked {} in {} calls, {:.1} s",
                self.matching,
                self.revoked(),
                self.calls.len(),
                self.wall.as_secs_f64()
            ),
            self.answers_right(),
        );
        let c = &self.counted;
        report.check(
            "bulk: the database after (revoked; outside the filter; left; warm active)",
            format!(
                "{}; {}; {}; {} of {}",
                c.revoked, c.revoked_outside, c.left_matching, c.warm_active, self.warm
            ),
            self.database_right(),
        );
        report.check(
            &format!(
                "bulk: {EVENT_TYPE} item_count sum = {BULK_MATCHING}, {} per account",
                self.per_account
            ),
            format!(
                "{} events (answers: {}), sum {}, {} accounts, {} off",
                c.events,
                self.audit_events(),
                c.event_items,
                c.event_accounts,
                c.accounts_off
            ),
            self.audit_right(),
        );
        let (before, during) = (&self.baseline, &self.during);
        report.check(
            "bulk: every warm Authenticate during it answered success",
            format!(
                "{} answers, {} not success; {:.0}/s vs {:.0}/s before = {:.2}×; p99 {} vs {}",
                during.latencies.len(),
                during.unexpected(&["success"]),
                during.rate(),
                before.rate(),
                during.rate() / before.rate(),
                ms(during.quantile(0.99)),
                ms(before.quantile(0.99))
            ),
            during.unexpected(&["success"]) == 0 && !during.latencies.is_empty(),
        );
        let m = &self.memory;
        let peak_mib = m.peak_after as f64 / 1024.0;
        report.check(
            "bulk: peak RSS < 64 MiB + 1.5 × workers × argon2 memory",
            format!(
                "{peak_mib:.1} MiB vs {memory_limit_mib:.1} MiB (before it {}); RSS {} → {}",
                mib(m.peak_before),
                mib(m.rss_before),
                mib(m.rss_after)
            ),
            peak_mib < memory_limit_mib,
        );
        self.section(report);
    }

    fn section(&self, report: &mut Report) {
        let calls = self
            .calls
            .iter()
            .map(|call| {
                format!(
                    "{:.1} s / {} / {}",
                    call.elapsed.as_secs_f64(),
                    call.revoked,
                    call.accounts
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let in_mib = |kibs: &mut dyn Iterator<Item = u64>| {
            kibs.map(|kib| format!("{:.1}", kib as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rss = in_mib(&mut self.calls.iter().map(|call| call.rss_kib));
        let each_second = in_mib(&mut self.memory.each_second.iter().copied());
        let m = &self.memory;
        let (before, during) = (&self.baseline, &self.during);
        let warm_line = |run: &Run| {
            format!(
                "{:.0}/s, p50 {}, p99 {}, max {}",
                run.rate(),
                ms(run.quantile(0.5)),
                ms(run.quantile(0.99)),
                ms(run.max())
            )
        };
        let other = self.stored - BULK_MATCHING - self.warm as i64;
        let _ = write!(
            report.sections,
            "\n### Bulk revocation (PostgreSQL)\n\n\
             {} app passwords stored: {BULK_MATCHING} to revoke ({} per account on {} \
             accounts, POP3, issued over the year before the \
             cutoff, UUIDv7 ids), {other} the filter does not take (one per account, IMAP only, \
             as old) and {} warm ones issued through the RPC (IMAP, now). Filter: protocol POP3 \
             and created_before the cutoff (a day ago); an operator caller; calls without a \
             deadline (20 s each at most).\n\n\
             | measure | value |\n|---|---|\n\
             | validate_only | {} matching, {} |\n\
             | revoked | {} in {} calls, {:.1} s wall, {:.0}/s |\n\
             | each call (time / revoked / audit events) | {calls} |\n\
             | audit events | {} `{EVENT_TYPE}` over {} accounts, item_count sum {} |\n\
             | warm Authenticate before | {} |\n\
             | warm Authenticate during | {}, {} not success |\n\
             | server RSS | before {} (peak so far {}); during, read every {} ms: at most {}; \
             peak after {}; after {} |\n\
             | server RSS, the largest of each second of it (MiB) | {each_second} |\n\
             | server RSS after each call (MiB) | {rss} |\n",
            self.stored,
            self.per_account,
            self.accounts,
            self.warm,
            self.matching,
            ms(self.validate),
            self.revoked(),
            self.calls.len(),
            self.wall.as_secs_f64(),
            self.revoked() as f64 / self.wall.as_secs_f64(),
            self.counted.events,
            self.counted.event_accounts,
            self.counted.event_items,
            warm_line(before),
            warm_line(during),
            during.unexpected(&["success"]),
            mib(m.rss_before),
            mib(m.peak_before),
            RSS_EVERY.as_millis(),
            mib(m.sampled_max),
            mib(m.peak_after),
            mib(m.rss_after),
        );
    }
}
