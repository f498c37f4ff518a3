//! The change feed across replicas: two `latchkey serve` processes on one
//! database, A and B.
//!
//! Latency: app passwords issued on A are revoked there (one at a time, 8
//! in flight, and one at a time each after the previous event arrived),
//! while an authenticator watches B's WatchEvents, filtered to
//! app_password_revoked. Each event, matched by its app password's name, is
//! timed from the moment RevokeAppPassword's answer reached this process;
//! every revoke must arrive exactly once, in token order. On SQLite (two
//! processes on one file), PostgreSQL (woken by NOTIFY) and MariaDB if
//! given (both others woken by the 100 ms poll).
//!
//! Drain (PostgreSQL): a resume token is taken on B, then 100,000 feed
//! events are written on A by BulkRevokeAppPasswords (100,000 seeded
//! passwords, one on each account: one event per account), and an operator
//! reads them all from B with that token: events/s, every sequence number
//! once and in order, and B's memory meanwhile.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey::domain::audit::watch::PAGE;
use latchkey::domain::audit::ResumeToken;
use latchkey::domain::callers::model::Role;
use latchkey::domain::shared::sync::lock;
use latchkey::grpc::access::watchable;
use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::audit_service_client::AuditServiceClient;
use latchkey::grpc::pb::{
    AuditEventType, RevokeAppPasswordRequest, WatchEventsRequest, WatchEventsResponse,
};
use sea_orm::{ConnectionTrait, Database, Statement};
use tokio::sync::watch as signal;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::bearer::Bearer;
use crate::bench::Bench;
use crate::bulk::{bucket_of, bulk_request, cutoff_ms, mib, revoke_all, watch_rss, RSS_EVERY};
use crate::drive::{drive, Run, Until};
use crate::options::Options;
use crate::report::{ms, Report};
use crate::scenarios::in_fresh_database;
use crate::seed::{counts, seed_bulk, BULK_MATCHING};
use crate::server::{cpu_seconds, Server};
use crate::BoxError;

/// How long a watcher may take to deliver every event after the last
/// revoke returned (PostgreSQL's fallback poll is 1 s), or to send its
/// first message.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long a watcher listens on once everything arrived, for repeats.
const LINGER: Duration = Duration::from_millis(1500);
/// The concurrent row's revokes in flight.
const IN_FLIGHT: usize = 8;
/// A drain with no message for this long has stalled.
const STALL: Duration = Duration::from_secs(30);
/// Watchers draining at once in the second drain: as many as one caller
/// may open on a replica (`watch.max_watchers_per_caller`).
const TOGETHER: usize = 4;

/// How the revokes of one row are sent.
#[derive(Clone, Copy)]
pub enum Pace {
    /// This many in flight, each sent as soon as one returns.
    InFlight(usize),
    /// One at a time, each once the previous one's event has arrived.
    AfterArrival,
}

impl Pace {
    fn describe(self) -> String {
        match self {
            Self::InFlight(1) => "one at a time".to_owned(),
            Self::InFlight(n) => format!("{n} in flight"),
            Self::AfterArrival => "one at a time, after the last one's event".to_owned(),
        }
    }
}

/// One latency row.
pub struct Latency {
    pub backend: &'static str,
    pub pace: Pace,
    /// Revokes sent.
    pub sent: usize,
    /// RevokeAppPassword: its answers, and (as latencies) how long each
    /// successful one took.
    pub rpc: Run,
    /// From each successful revoke's answer to its event's first arrival.
    pub delivered: Run,
    /// Events that reached the watcher before their revoke's answer
    /// reached this process (counted at 0 in `delivered`).
    pub early: usize,
    pub missed: usize,
    /// Arrivals after an app password's first.
    pub repeated: usize,
    /// Events for app passwords not revoked in this row.
    pub unexpected: usize,
    /// Messages whose token did not move past the one before.
    pub disordered: u64,
    /// Why the watcher's stream ended early, if it did.
    pub ended: Option<String>,
}

impl Latency {
    fn exact(&self) -> bool {
        self.rpc.unexpected(&["success"]) == 0
            && self.delivered.latencies.len() == self.sent
            && self.missed == 0
            && self.repeated == 0
            && self.unexpected == 0
            && self.disordered == 0
            && self.ended.is_none()
    }
}

/// The drain of a backlog (PostgreSQL).
pub struct Drain {
    /// The place the token taken before the backlog names.
    pub start: u64,
    /// Counted in the database after the backlog: feed events after
    /// `start`, their distinct sequence numbers, and the newest.
    pub backlog: i64,
    pub distinct: i64,
    pub head: u64,
    /// BulkRevokeAppPasswords calls that wrote it, their time, and the
    /// events they said they wrote.
    pub calls: usize,
    pub write: Duration,
    pub written: i64,
    /// One watcher, then [`TOGETHER`] at once, each from the token.
    pub alone: DrainRun,
    pub together: DrainRun,
    /// The stream's page query alone, sent from this process the way B
    /// sends it, through the backlog: pages, and their time.
    pub pages: usize,
    pub page_queries: Duration,
}

/// Watchers draining the backlog at once, on connections of their own.
pub struct DrainRun {
    pub streams: Vec<Drained>,
    /// From opening them to the last one's last event.
    pub wall: Duration,
    /// CPU time used meanwhile by B, and by this process (the watchers'
    /// side: HTTP/2, decoding), in seconds.
    pub cpu_b: f64,
    pub cpu_bench: f64,
    /// B's resident memory: before, each reading during (every 100 ms),
    /// after (KiB).
    pub rss_before: u64,
    pub rss_during: Vec<u64>,
    pub rss_after: u64,
}

impl DrainRun {
    fn events(&self) -> u64 {
        self.streams.iter().map(|read| read.events).sum()
    }

    fn rate(&self) -> f64 {
        self.events() as f64 / self.wall.as_secs_f64()
    }
}

/// What the draining watcher received.
#[derive(Default)]
pub struct Drained {
    /// The place of its first message (a checkpoint).
    pub first: u64,
    pub events: u64,
    /// Sequence numbers skipped, and messages that did not move forward.
    pub gaps: u64,
    pub repeats: u64,
    /// The newest place received.
    pub last: u64,
    pub first_event: Option<Duration>,
    /// From opening the stream to its last event.
    pub wall: Duration,
    /// Events received in each [`RSS_EVERY`] (100 ms) of it.
    pub each_tenth: Vec<u64>,
    pub ended: Option<String>,
}

impl Drain {
    /// Whether `run`'s watchers each received every place after the token
    /// once, in order, and the database holds each once.
    fn exact(&self, run: &DrainRun) -> bool {
        let whole = |r: &Drained| {
            r.first == self.start
                && i64::try_from(r.events).ok() == Some(self.backlog)
                && self.head - self.start == r.events
                && r.gaps == 0
                && r.repeats == 0
                && r.last == self.head
                && r.ended.is_none()
        };
        self.distinct == self.backlog && !run.streams.is_empty() && run.streams.iter().all(whole)
    }

    fn all_exact(&self) -> bool {
        self.exact(&self.alone) && self.exact(&self.together)
    }
}

pub struct Watch {
    pub latency: Vec<Latency>,
    pub drain: Option<Drain>,
    /// `/proc/loadavg` before and after.
    pub load_before: String,
    pub load_after: String,
}

/// The change feed's rows on SQLite, and on PostgreSQL (with the drain)
/// and MariaDB when their admin URLs are given.
pub async fn watch(options: &Options, dir: &Path) -> Result<Watch, BoxError> {
    let load_before = load_average();
    let revokes = options.watch_revokes;
    let sqlite_url = format!("sqlite://{}?mode=rwc", dir.join("watch.db").display());
    let mut pair = Pair::start(&sqlite_url, dir, options).await?;
    let mut latency = pair.latency_rows("SQLite", revokes).await?;
    pair.stop()?;
    let mut drain = None;
    if let Some(admin) = &options.postgres_url {
        let (rows, drained) = in_fresh_database(admin, "watch", |url| async move {
            let mut pair = Pair::start(&url, dir, options).await?;
            let rows = pair.latency_rows("PostgreSQL", revokes).await?;
            let drained = pair.drain(&url).await?;
            pair.stop()?;
            Ok((rows, drained))
        })
        .await?;
        latency.extend(rows);
        drain = Some(drained);
        // The same with feed events numbered under the row lock (the
        // design before `store/feed_numbering.rs`), to compare.
        let rows = in_fresh_database(admin, "watchlock", |url| async move {
            let env = vec![(
                "LATCHKEY_DATABASE__FEED_NUMBERING".to_owned(),
                "row_lock".to_owned(),
            )];
            let mut pair = Pair::start_with(&url, dir, options, env).await?;
            let rows = pair.latency_rows("PostgreSQL, row_lock", revokes).await?;
            pair.stop()?;
            Ok(rows)
        })
        .await?;
        latency.extend(rows);
    }
    if let Some(admin) = &options.mysql_url {
        let rows = in_fresh_database(admin, "bench", |url| async move {
            let mut pair = Pair::start(&url, dir, options).await?;
            let rows = pair.latency_rows("MariaDB", revokes).await?;
            pair.stop()?;
            Ok(rows)
        })
        .await?;
        latency.extend(rows);
    }
    Ok(Watch {
        latency,
        drain,
        load_before,
        load_after: load_average(),
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Two replicas on one database: A (with the load's connections and
/// callers) and B.
struct Pair {
    bench: Bench,
    b: Server,
}

impl Pair {
    async fn start(url: &str, dir: &Path, options: &Options) -> Result<Self, BoxError> {
        Self::start_with(url, dir, options, Vec::new()).await
    }

    /// [`Pair::start`] with settings of its own (`LATCHKEY_…`) for both.
    async fn start_with(
        url: &str,
        dir: &Path,
        options: &Options,
        env: Vec<(String, String)>,
    ) -> Result<Self, BoxError> {
        let a = Server::start_with(url, dir, env).await?;
        let b = a.replica("b").await?;
        let bench = Bench::new(options.clone(), a).await?;
        Ok(Self { bench, b })
    }

    fn stop(mut self) -> Result<(), BoxError> {
        self.b.stop()?;
        self.bench.server.stop()
    }

    /// Issues on A what the rows revoke, then runs them: `revokes` one at
    /// a time, as many 8 in flight, a fifth as many each after the last
    /// one's event.
    async fn latency_rows(
        &mut self,
        backend: &'static str,
        revokes: usize,
    ) -> Result<Vec<Latency>, BoxError> {
        let paces = [
            (Pace::InFlight(1), revokes),
            (Pace::InFlight(IN_FLIGHT), revokes),
            (Pace::AfterArrival, revokes / 5),
        ];
        let total: usize = paces.iter().map(|(_, n)| n).sum();
        eprintln!("watch ({backend}): issuing {total} app passwords on replica A");
        let before = self.bench.logins.len();
        self.bench.top_up(before + total).await;
        let mut names = self
            .bench
            .logins
            .iter()
            .skip(before)
            .map(|login| login.name.clone());
        let mut rows = Vec::new();
        for (pace, count) in paces {
            let batch: Vec<String> = names.by_ref().take(count).collect();
            eprintln!(
                "watch ({backend}): revoking {count} on A, {}, watched on B",
                pace.describe()
            );
            rows.push(self.latency_row(backend, pace, batch).await?);
        }
        Ok(rows)
    }

    /// Revokes `names` on A at `pace` while an authenticator watches B.
    async fn latency_row(
        &self,
        backend: &'static str,
        pace: Pace,
        names: Vec<String>,
    ) -> Result<Latency, BoxError> {
        let request = WatchEventsRequest {
            types: vec![AuditEventType::AppPasswordRevoked as i32],
            ..Default::default()
        };
        let watcher = Watcher::open(&self.b, &self.bench.authenticator, request).await?;
        let sent = names.len();
        // Each successful revoke: when it was sent, and when it returned.
        let times: Arc<Mutex<HashMap<String, (Instant, Instant)>>> = Arc::default();
        let (in_flight, after_arrival) = match pace {
            Pace::InFlight(n) => (n, false),
            Pace::AfterArrival => (1, true),
        };
        let (key, names, sink) = (
            self.bench.issuer.clone(),
            Arc::new(names),
            Arc::clone(&times),
        );
        let arrivals = watcher.arrivals.clone();
        let forever = Until::Elapsed(Duration::from_secs(24 * 3600));
        let mut rpc = drive(
            &self.bench.channels,
            in_flight,
            forever,
            move |n, channel| {
                let (key, names, sink) = (key.clone(), Arc::clone(&names), Arc::clone(&sink));
                let arrivals = arrivals.clone();
                async move {
                    let name = names.get(usize::try_from(n).ok()?)?.clone();
                    let sent = Instant::now();
                    let outcome = revoke(channel, key, name.clone()).await;
                    let returned = Instant::now();
                    if outcome == "success" {
                        lock(&sink).insert(name.clone(), (sent, returned));
                        if after_arrival {
                            let here = |seen: &Seen| seen.arrivals.contains_key(&name);
                            arrivals.wait(here, returned + PATIENCE).await;
                        }
                    }
                    Some(outcome)
                }
            },
        )
        .await;
        let times = std::mem::take(&mut *lock(&times));
        let all_here = |seen: &Seen| times.keys().all(|name| seen.arrivals.contains_key(name));
        watcher
            .arrivals
            .wait(all_here, Instant::now() + PATIENCE)
            .await;
        tokio::time::sleep(LINGER).await;
        let seen = lock(&watcher.arrivals.seen);
        rpc.latencies = times.values().map(|(sent, back)| *back - *sent).collect();
        let mut row = Latency {
            backend,
            pace,
            sent,
            rpc,
            delivered: Run::default(),
            early: 0,
            missed: 0,
            repeated: 0,
            unexpected: seen
                .arrivals
                .keys()
                .filter(|name| !times.contains_key(*name))
                .count(),
            disordered: seen.disordered,
            ended: seen.ended.clone(),
        };
        for (name, (_, returned)) in &times {
            let Some(arrived) = seen.arrivals.get(name) else {
                row.missed += 1;
                continue;
            };
            row.repeated += arrived.len().saturating_sub(1);
            let Some(first) = arrived.first() else {
                continue;
            };
            let latency = first.checked_duration_since(*returned).unwrap_or_else(|| {
                row.early += 1;
                Duration::ZERO
            });
            row.delivered.latencies.push(latency);
        }
        Ok(row)
    }

    /// Takes a token on B, writes the backlog on A, and reads it from B
    /// with that token.
    async fn drain(&self, url: &str) -> Result<Drain, BoxError> {
        let a = &self.bench.server;
        let operator = Bearer::new(&a.add_caller("bench-watch-operator", "operator")?)?;
        let request = WatchEventsRequest::default();
        let (_, token) = open_stream(self.b.channel().await?, &operator, request).await?;
        let start = seq_of(&token)?;
        let cutoff_ms = cutoff_ms()?;
        eprintln!("watch (PostgreSQL): seeding {BULK_MATCHING} app passwords on as many accounts");
        seed_bulk(url, cutoff_ms, 1).await?;
        eprintln!("watch (PostgreSQL): the backlog: BulkRevokeAppPasswords on A");
        let mut client =
            AppPasswordServiceClient::with_interceptor(a.channel().await?, operator.clone());
        let writing = Instant::now();
        let calls = revoke_all(a, &mut client, bulk_request(cutoff_ms)?).await?;
        let write = writing.elapsed();
        let after = format!("FROM audit_event WHERE seq > {start}");
        let counted = counts(
            url,
            &[
                &format!("SELECT COUNT(*) {after}"),
                &format!("SELECT COUNT(DISTINCT seq) {after}"),
                "SELECT COALESCE(MAX(seq), 0) FROM audit_event",
            ],
        )
        .await?;
        let head = u64::try_from(counted[2])?;
        eprintln!("watch (PostgreSQL): draining {} events from B", counted[0]);
        let alone = self.drain_run(&operator, &token, head, 1).await?;
        eprintln!("watch (PostgreSQL): again, {TOGETHER} watchers at once");
        let together = self.drain_run(&operator, &token, head, TOGETHER).await?;
        let (pages, page_queries) = page_queries(url, start, head).await?;
        Ok(Drain {
            start,
            backlog: counted[0],
            distinct: counted[1],
            head,
            calls: calls.len(),
            write,
            written: calls.iter().map(|call| call.accounts).sum(),
            alone,
            together,
            pages,
            page_queries,
        })
    }

    /// `streams` watchers read B's feed from `token` to `head` at once.
    async fn drain_run(
        &self,
        key: &Bearer,
        token: &str,
        head: u64,
        streams: usize,
    ) -> Result<DrainRun, BoxError> {
        let mut channels = Vec::with_capacity(streams);
        for _ in 0..streams {
            channels.push(self.b.channel().await?);
        }
        let rss_before = self.b.rss_kib()?;
        let (b, bench) = (self.b.pid()?, std::process::id());
        let (cpu_b, cpu_bench) = (cpu_seconds(b)?, cpu_seconds(bench)?);
        let stop = Arc::new(AtomicBool::new(false));
        let rss = watch_rss(b, Arc::clone(&stop), RSS_EVERY);
        let started = Instant::now();
        let tasks: Vec<_> = channels
            .into_iter()
            .map(|channel| {
                let (key, token) = (key.clone(), token.to_owned());
                tokio::spawn(read_backlog(channel, key, token, head))
            })
            .collect();
        let mut read = Vec::with_capacity(streams);
        for task in tasks {
            read.push(task.await);
        }
        let wall = started.elapsed();
        let (cpu_b, cpu_bench) = (cpu_seconds(b)? - cpu_b, cpu_seconds(bench)? - cpu_bench);
        stop.store(true, Ordering::Relaxed);
        let rss_during = rss.await?;
        Ok(DrainRun {
            streams: read.into_iter().collect::<Result<Result<_, _>, _>>()??,
            wall,
            cpu_b,
            cpu_bench,
            rss_before,
            rss_during,
            rss_after: self.b.rss_kib()?,
        })
    }
}

/// Reads the feed from `start` to `head` in pages with the query a stream
/// sends (an operator's: every type), from this process; returns the
/// pages and their time.
async fn page_queries(url: &str, start: u64, head: u64) -> Result<(usize, Duration), BoxError> {
    let types = watchable(Role::Operator)
        .iter()
        .map(|t| format!("'{}'", t.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let query = format!(
        "SELECT * FROM audit_event WHERE seq > $1 AND seq <= $2 AND event_type IN ({types}) \
         ORDER BY seq LIMIT {PAGE}"
    );
    let db = Database::connect(url).await?;
    let head = i64::try_from(head)?;
    let (mut after, mut pages) = (i64::try_from(start)?, 0);
    let started = Instant::now();
    while after < head {
        let values = [after.into(), head.into()];
        let statement = Statement::from_sql_and_values(db.get_database_backend(), &query, values);
        let rows = db.query_all(statement).await?;
        pages += 1;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.try_get("", "seq")?;
    }
    let elapsed = started.elapsed();
    db.close().await?;
    Ok((pages, elapsed))
}

/// Sends one RevokeAppPassword; names its answer.
async fn revoke(channel: Channel, key: Bearer, name: String) -> String {
    let request = RevokeAppPasswordRequest {
        name,
        reason: "load benchmark: the change feed".into(),
    };
    match AppPasswordServiceClient::with_interceptor(channel, key)
        .revoke_app_password(request)
        .await
    {
        Ok(_) => "success".to_owned(),
        Err(status) => format!("{:?}", status.code()),
    }
}

/// A resume token's place.
fn seq_of(token: &str) -> Result<u64, BoxError> {
    Ok(ResumeToken::decode(token)?.seq)
}

/// Opens a WatchEvents stream over `channel`; returns it and the token of its
/// first message, which must be a checkpoint.
async fn open_stream(
    channel: Channel,
    key: &Bearer,
    request: WatchEventsRequest,
) -> Result<(Streaming<WatchEventsResponse>, String), BoxError> {
    let mut stream = AuditServiceClient::with_interceptor(channel, key.clone())
        .watch_events(request)
        .await?
        .into_inner();
    let first = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .map_err(|_| "WatchEvents sent no first message")??
        .ok_or("WatchEvents ended before its first message")?;
    if first.audit_event.is_some() {
        return Err("WatchEvents' first message is an event, not a checkpoint".into());
    }
    Ok((stream, first.resume_token))
}

/// What a latency watcher has received.
#[derive(Default)]
struct Seen {
    /// Each app password's events, by when they arrived.
    arrivals: HashMap<String, Vec<Instant>>,
    /// The newest place received.
    last: u64,
    disordered: u64,
    ended: Option<String>,
}

impl Seen {
    fn record(&mut self, message: WatchEventsResponse, at: Instant) {
        match seq_of(&message.resume_token) {
            Ok(seq) if seq > self.last => self.last = seq,
            _ => self.disordered += 1,
        }
        if let Some(event) = message.audit_event {
            self.arrivals
                .entry(event.app_password)
                .or_default()
                .push(at);
        }
    }
}

/// A watcher's record, and a signal that moves on every message.
#[derive(Clone)]
struct Arrivals {
    seen: Arc<Mutex<Seen>>,
    signal: signal::Receiver<u64>,
}

impl Arrivals {
    /// Waits until `done` holds of what was seen, the stream ends, or
    /// `deadline`; says whether `done` held.
    async fn wait(&self, done: impl Fn(&Seen) -> bool, deadline: Instant) -> bool {
        let mut signal = self.signal.clone();
        loop {
            signal.borrow_and_update();
            {
                let seen = lock(&self.seen);
                if done(&seen) {
                    return true;
                }
                if seen.ended.is_some() {
                    return false;
                }
            }
            let deadline = tokio::time::Instant::from_std(deadline);
            match tokio::time::timeout_at(deadline, signal.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return done(&lock(&self.seen)),
                Err(_) => return false,
            }
        }
    }
}

/// A stream read by a task of its own, each message stamped as it
/// arrives; the stream is dropped with it.
struct Watcher {
    arrivals: Arrivals,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    async fn open(
        server: &Server,
        key: &Bearer,
        request: WatchEventsRequest,
    ) -> Result<Self, BoxError> {
        let (stream, token) = open_stream(server.channel().await?, key, request).await?;
        let seen = Arc::new(Mutex::new(Seen {
            last: seq_of(&token)?,
            ..Seen::default()
        }));
        let (sender, receiver) = signal::channel(0);
        let task = tokio::spawn(read(stream, Arc::clone(&seen), sender));
        Ok(Self {
            arrivals: Arrivals {
                seen,
                signal: receiver,
            },
            task,
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read(
    mut stream: Streaming<WatchEventsResponse>,
    seen: Arc<Mutex<Seen>>,
    signal: signal::Sender<u64>,
) {
    loop {
        let message = stream.message().await;
        let at = Instant::now();
        let ended = {
            let mut seen = lock(&seen);
            match message {
                Ok(Some(message)) => seen.record(message, at),
                Ok(None) => seen.ended = Some("the stream ended".to_owned()),
                Err(status) => {
                    seen.ended = Some(format!("{:?}: {}", status.code(), status.message()));
                }
            }
            seen.ended.is_some()
        };
        signal.send_modify(|n| *n += 1);
        if ended {
            return;
        }
    }
}

/// Reads the feed from `token` over `channel` until the place `head`,
/// counting what arrives each second and checking that every place comes
/// once, in order.
async fn read_backlog(
    channel: Channel,
    key: Bearer,
    token: String,
    head: u64,
) -> Result<Drained, BoxError> {
    let opened = Instant::now();
    let request = WatchEventsRequest {
        resume_token: token,
        ..Default::default()
    };
    let (mut stream, first) = open_stream(channel, &key, request).await?;
    let mut read = Drained {
        first: seq_of(&first)?,
        ..Drained::default()
    };
    read.last = read.first;
    while read.last < head {
        let message = match tokio::time::timeout(STALL, stream.message()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => {
                read.ended = Some(format!("the stream ended at {}", read.last));
                break;
            }
            Ok(Err(status)) => {
                read.ended = Some(format!("{:?}: {}", status.code(), status.message()));
                break;
            }
            Err(_) => {
                let stalled = format!("no message for {} s after {}", STALL.as_secs(), read.last);
                read.ended = Some(stalled);
                break;
            }
        };
        let seq = seq_of(&message.resume_token)?;
        if message.audit_event.is_some() {
            read.events += 1;
            read.first_event.get_or_insert_with(|| opened.elapsed());
            let tenth = bucket_of(opened.elapsed(), RSS_EVERY);
            if read.each_tenth.len() <= tenth {
                read.each_tenth.resize(tenth + 1, 0);
            }
            read.each_tenth[tenth] += 1;
        }
        if seq <= read.last {
            read.repeats += 1;
        } else {
            read.gaps += seq - read.last - 1;
            read.last = seq;
        }
    }
    read.wall = opened.elapsed();
    Ok(read)
}

impl Watch {
    /// Whether every revoke arrived once and in order, and the drain
    /// delivered every place once and in order.
    fn exact(&self) -> bool {
        self.latency.iter().all(Latency::exact) && self.drain.as_ref().is_none_or(Drain::all_exact)
    }

    /// An error unless every check held.
    pub fn verify(&self) -> Result<(), BoxError> {
        if self.exact() {
            Ok(())
        } else {
            Err("the change feed: an event was missed, repeated or out of order, or a stream ended (see the report's targets)".into())
        }
    }

    /// Its targets, and its section.
    pub fn checks(&self, report: &mut Report) {
        for row in &self.latency {
            report.check(
                &format!(
                    "feed: every revoke on A arrives once, in order, on B ({}, {})",
                    row.backend,
                    row.pace.describe()
                ),
                format!(
                    "{} of {} arrived; {} missed, {} twice, {} unexpected, {} out of order; \
                     {} revokes not success{}",
                    row.delivered.latencies.len(),
                    row.sent,
                    row.missed,
                    row.repeated,
                    row.unexpected,
                    row.disordered,
                    row.rpc.unexpected(&["success"]),
                    row.ended
                        .as_ref()
                        .map(|why| format!("; stream ended: {why}"))
                        .unwrap_or_default()
                ),
                row.exact(),
            );
        }
        if let Some(drain) = &self.drain {
            for run in [&drain.alone, &drain.together] {
                report.check(
                    &format!(
                        "feed: a backlog drained from a token, every place once, in order \
                         (PostgreSQL, {} at once)",
                        run.streams.len()
                    ),
                    run.streams
                        .iter()
                        .map(|r| {
                            format!(
                                "{} events of {} (places {}..={}); {} skipped, {} repeated{}",
                                r.events,
                                drain.backlog,
                                drain.start + 1,
                                drain.head,
                                r.gaps,
                                r.repeats,
                                r.ended
                                    .as_ref()
                                    .map(|why| format!("; stream ended: {why}"))
                                    .unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" / "),
                    drain.exact(run),
                );
            }
        }
        self.section(report);
    }

    fn section(&self, report: &mut Report) {
        let text = &mut report.sections;
        let _ = write!(
            text,
            "\n### The change feed across two replicas\n\n\
             Two `latchkey serve` processes on one database, A and B. On A an issuer revokes \
             app passwords issued beforehand; an authenticator watches WatchEvents on B, \
             filtered to app_password_revoked. Each event, matched by the app password's name, \
             is timed from RevokeAppPassword's answer on A reaching the benchmark to the \
             event reaching it from B. PostgreSQL wakes B's follower by LISTEN/NOTIFY; SQLite \
             and MariaDB by its poll (`watch.poll_interval_ms`, 100 ms). Load average \
             (1, 5, 15 min) before: {}; after: {}.\n\n\
             | backend | pace | revokes | revokes/s | revoke RPC p50 | event after answer: p50 | \
             p90 | p99 | max | arrived | before the answer | missed | twice | unexpected | \
             out of order |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
            self.load_before, self.load_after
        );
        for row in &self.latency {
            let d = &row.delivered;
            let _ = writeln!(
                text,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.backend,
                row.pace.describe(),
                row.sent,
                row.rpc.rate(),
                ms(row.rpc.quantile(0.5)),
                ms(d.quantile(0.5)),
                ms(d.quantile(0.9)),
                ms(d.quantile(0.99)),
                ms(d.max()),
                d.latencies.len(),
                row.early,
                row.missed,
                row.repeated,
                row.unexpected,
                row.disordered
            );
        }
        let Some(drain) = &self.drain else {
            return;
        };
        let join = |values: &mut dyn Iterator<Item = String>| values.collect::<Vec<_>>().join(", ");
        let in_mib = |kibs: &[u64]| {
            join(
                &mut kibs
                    .iter()
                    .map(|kib| format!("{:.1}", *kib as f64 / 1024.0)),
            )
        };
        let _ = write!(
            text,
            "\n### Draining a backlog of the change feed (PostgreSQL)\n\n\
             A token taken on B; then, on A, BulkRevokeAppPasswords of {BULK_MATCHING} seeded \
             app passwords, one on each account (one `app_passwords_bulk_revoked` event per \
             account): {} events written by {} call(s) in {:.1} s; in the database after the \
             token's place {}: {} feed events, {} distinct places, the newest {}. Then \
             operators watch B from the token, every type, until each has the newest place: \
             one alone, then {TOGETHER} at once, each on a connection of its own. Every \
             watcher got every place once, in order: {}.\n\n\
             | watchers | events, all told | wall | events/s, all told | first event after | \
             B's CPU | B's CPU an event | this process's CPU | B's RSS before / largest / after |\n\
             |---|---|---|---|---|---|---|---|---|\n",
            drain.written,
            drain.calls,
            drain.write.as_secs_f64(),
            drain.start,
            drain.backlog,
            drain.distinct,
            drain.head,
            if drain.all_exact() {
                "yes"
            } else {
                "**NO** (see the targets)"
            },
        );
        for run in [&drain.alone, &drain.together] {
            let first = run
                .streams
                .iter()
                .filter_map(|r| r.first_event)
                .max()
                .map_or_else(|| "-".to_owned(), ms);
            let _ = writeln!(
                text,
                "| {} | {} | {:.2} s | {:.0} | {first} | {:.2} s | {:.1} µs | {:.2} s | {} / {} / {} |",
                run.streams.len(),
                run.events(),
                run.wall.as_secs_f64(),
                run.rate(),
                run.cpu_b,
                run.cpu_b * 1e6 / run.events().max(1) as f64,
                run.cpu_bench,
                mib(run.rss_before),
                mib(run.rss_during.iter().copied().max().unwrap_or_default()),
                mib(run.rss_after),
            );
        }
        let alone = drain.alone.streams.first();
        let each_tenth = alone.map_or_else(String::new, |r| {
            join(&mut r.each_tenth.iter().map(u64::to_string))
        });
        let _ = write!(
            text,
            "\n| measure | value |\n|---|---|\n\
             | one watcher: events received in each 100 ms | {each_tenth} |\n\
             | B's RSS, read every 100 ms: one watcher (MiB) | {} |\n\
             | B's RSS, read every 100 ms: {TOGETHER} at once (MiB) | {} |\n\
             | the page query alone, from this process ({PAGE} a page, every type) | {} pages \
             in {:.2} s: {:.2} ms a page, {:.0} events/s |\n",
            in_mib(&drain.alone.rss_during),
            in_mib(&drain.together.rss_during),
            drain.pages,
            drain.page_queries.as_secs_f64(),
            drain.page_queries.as_secs_f64() * 1000.0 / drain.pages.max(1) as f64,
            drain.backlog as f64 / drain.page_queries.as_secs_f64(),
        );
    }
}
