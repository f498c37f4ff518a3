//! The load benchmark: how fast latchkey answers, against the floors it is
//! judged by. Run with `cargo bench --bench load` (release build); options
//! after `--`: `--duration SECS` (10), `--concurrency N` (64),
//! `--postgres-url URL` (an admin URL: the PostgreSQL scenarios run in a
//! fresh database made there and dropped after), `--skip-scale`, and
//! `--out FILE` (`target/load.md`). The table is printed and written there.
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
//! cold logins.

mod drive;
mod floors;
mod report;
mod seed;
mod server;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey::domain::secrets::hashing::HashParams;
use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use latchkey::grpc::pb::{AuthenticateRequest, FailureReason, IssueAppPasswordRequest, Protocol};
use rand::Rng;
use sea_orm::{ConnectionTrait, Database};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use drive::{drive, Run};
use floors::{argon2_one_thread, argon2_pool};
use report::{ms, Report};
use seed::{count_passwords, seed_million};
use server::Server;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CHANNELS: usize = 4;
const WARM_SECRETS: usize = 64;
const MEMORY_CONCURRENCY: usize = 1_000;

struct Options {
    duration: Duration,
    concurrency: usize,
    postgres_url: Option<String>,
    skip_scale: bool,
    out: String,
}

fn options() -> Result<Options, BoxError> {
    let mut options = Options {
        duration: Duration::from_secs(10),
        concurrency: 64,
        postgres_url: None,
        skip_scale: false,
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
            "--bench" => {} // cargo bench passes it
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(options)
}

/// A login the benchmark can make: an issued secret and its account.
#[derive(Clone)]
struct Login {
    username: String,
    secret: String,
}

/// Who is asking: the request with the caller's bearer key.
fn authed<T>(message: T, key: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", key.clone());
    request
}

fn bearer(key: &str) -> Result<MetadataValue<Ascii>, BoxError> {
    Ok(format!("Bearer {key}").parse()?)
}

/// A distinct IPv4 address per `n` in the /8 `block`: each its own source.
fn address(block: u8, n: u64) -> String {
    format!("{block}.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// A well-formed secret that matches nothing, keeping `selector` if given
/// (so the server finds that row and verifies against its real hash).
fn made_up_secret(selector: Option<&str>) -> String {
    let mut rng = rand::rng();
    let mut letters: String = (0..28).map(|_| rng.random_range('a'..='z')).collect();
    if let Some(selector) = selector {
        letters.replace_range(0..4, selector);
    }
    letters
}

/// Sends one Authenticate; names its answer.
async fn authenticate(
    channel: Channel,
    key: &MetadataValue<Ascii>,
    username: String,
    password: String,
    client_ip: String,
) -> String {
    let request = AuthenticateRequest {
        username,
        password,
        protocol: Protocol::Imap as i32,
        client_ip,
        ..Default::default()
    };
    match LegacyAuthServiceClient::new(channel)
        .authenticate(authed(request, key))
        .await
    {
        Ok(response) => {
            let response = response.into_inner();
            if response.authenticated {
                "success".to_owned()
            } else {
                match response.failure_reason() {
                    FailureReason::Throttled => "throttled".to_owned(),
                    reason => reason.as_str_name().to_ascii_lowercase(),
                }
            }
        }
        Err(status) => format!("{:?}", status.code()),
    }
}

struct Bench {
    options: Options,
    server: Server,
    channels: Vec<Channel>,
    issuer: MetadataValue<Ascii>,
    authenticator: MetadataValue<Ascii>,
    logins: Vec<Login>,
    batches: u64,
}

impl Bench {
    async fn new(options: Options, server: Server) -> Result<Self, BoxError> {
        let mut bench = Self {
            issuer: bearer(&server.issuer_key)?,
            authenticator: bearer(&server.authenticator_key)?,
            options,
            server,
            channels: Vec::new(),
            logins: Vec::new(),
            batches: 0,
        };
        bench.connect().await?;
        Ok(bench)
    }

    async fn connect(&mut self) -> Result<(), BoxError> {
        self.channels.clear();
        for _ in 0..CHANNELS {
            self.channels.push(self.server.channel().await?);
        }
        Ok(())
    }

    async fn restart(&mut self) -> Result<(), BoxError> {
        self.server.restart().await?;
        self.connect().await
    }

    async fn run<F, Fut>(&self, request: F) -> Run
    where
        F: Fn(u64, Channel) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = Option<String>> + Send,
    {
        drive(
            &self.channels,
            self.options.concurrency,
            self.options.duration,
            request,
        )
        .await
    }

    /// IssueAppPassword for `duration`, or until `limit` are issued; every
    /// secret is kept for the logins.
    async fn issue(&mut self, limit: Option<u64>, duration: Duration) -> Run {
        self.batches += 1;
        let batch = self.batches;
        let issued = Arc::new(Mutex::new(Vec::new()));
        let (key, sink) = (self.issuer.clone(), Arc::clone(&issued));
        let run = drive(
            &self.channels,
            self.options.concurrency,
            duration,
            move |n, channel| {
                let (key, sink) = (key.clone(), Arc::clone(&sink));
                async move {
                    if limit.is_some_and(|limit| n >= limit) {
                        return None;
                    }
                    let username = format!("user-{batch}-{n}");
                    let request = IssueAppPasswordRequest {
                        parent: format!("accounts/{username}"),
                        display_name: "Load benchmark".into(),
                        protocols: vec![Protocol::Imap as i32],
                        expiration: None,
                        allowed_networks: Vec::new(),
                    };
                    let outcome = match AppPasswordServiceClient::new(channel)
                        .issue_app_password(authed(request, &key))
                        .await
                    {
                        Ok(response) => {
                            let secret = response.into_inner().secret;
                            if let Ok(mut sink) = sink.lock() {
                                sink.push(Login { username, secret });
                            }
                            "success".to_owned()
                        }
                        Err(status) => format!("{:?}", status.code()),
                    };
                    Some(outcome)
                }
            },
        )
        .await;
        if let Ok(mut issued) = issued.lock() {
            self.logins.append(&mut issued);
        }
        run
    }

    /// Issues, untimed, until at least `wanted` logins exist.
    async fn top_up(&mut self, wanted: usize) {
        while self.logins.len() < wanted {
            let missing = (wanted - self.logins.len()) as u64;
            self.issue(Some(missing), Duration::from_secs(3600)).await;
        }
    }

    /// Each login once, in order, from one known network: argon2 every
    /// time. Stops when the logins run out.
    async fn cold(&self) -> Run {
        let (key, logins) = (self.authenticator.clone(), Arc::new(self.logins.clone()));
        self.run(move |n, channel| {
            let (key, logins) = (key.clone(), Arc::clone(&logins));
            async move {
                let login = logins.get(usize::try_from(n).ok()?)?.clone();
                let ip = "10.1.0.1".to_owned();
                Some(authenticate(channel, &key, login.username, login.secret, ip).await)
            }
        })
        .await
    }

    /// The first 64 logins over and over (verified once first, untimed).
    async fn warm(&self) -> Run {
        let key = self.authenticator.clone();
        let logins: Arc<Vec<Login>> =
            Arc::new(self.logins.iter().take(WARM_SECRETS).cloned().collect());
        for login in logins.iter() {
            let channel = self.channels[0].clone();
            let (user, secret) = (login.username.clone(), login.secret.clone());
            authenticate(channel, &key, user, secret, "10.1.0.1".into()).await;
        }
        self.run(move |n, channel| {
            let (key, logins) = (key.clone(), Arc::clone(&logins));
            async move {
                let login = logins.get((n % logins.len() as u64) as usize)?.clone();
                let ip = "10.1.0.1".to_owned();
                Some(authenticate(channel, &key, login.username, login.secret, ip).await)
            }
        })
        .await
    }

    /// Accounts that do not exist, each attempt from its own address.
    async fn unknown_user(&self) -> Run {
        let key = self.authenticator.clone();
        self.run(move |n, channel| {
            let key = key.clone();
            async move {
                let user = format!("nobody-{n}");
                let secret = made_up_secret(None);
                Some(authenticate(channel, &key, user, secret, address(11, n)).await)
            }
        })
        .await
    }

    /// Real accounts and real selectors with the wrong rest, each attempt
    /// from its own address, spread over every account.
    async fn wrong_password(&self) -> Run {
        let (key, logins) = (self.authenticator.clone(), Arc::new(self.logins.clone()));
        self.run(move |n, channel| {
            let (key, logins) = (key.clone(), Arc::clone(&logins));
            async move {
                let login = logins.get((n % logins.len() as u64) as usize)?.clone();
                let selector: String = login.secret.chars().filter(|c| *c != ' ').take(4).collect();
                let secret = made_up_secret(Some(&selector));
                Some(authenticate(channel, &key, login.username, secret, address(12, n)).await)
            }
        })
        .await
    }

    /// One source blocked by 40 failures first (untimed), then hammering.
    async fn throttled(&self) -> Run {
        const SOURCE: &str = "203.0.113.7";
        let key = self.authenticator.clone();
        for n in 0..40 {
            let channel = self.channels[0].clone();
            let user = format!("sprayed-{n}");
            authenticate(channel, &key, user, made_up_secret(None), SOURCE.into()).await;
        }
        self.run(move |n, channel| {
            let key = key.clone();
            async move {
                let user = format!("sprayed-{n}");
                Some(authenticate(channel, &key, user, made_up_secret(None), SOURCE.into()).await)
            }
        })
        .await
    }

    /// grpc.health.v1 Check: the stack with nothing behind it.
    async fn no_op(&self) -> Run {
        self.run(|_, channel| async move {
            let request = tonic_health::pb::HealthCheckRequest::default();
            let outcome = match tonic_health::pb::health_client::HealthClient::new(channel)
                .check(request)
                .await
            {
                Ok(_) => "success".to_owned(),
                Err(status) => format!("{:?}", status.code()),
            };
            Some(outcome)
        })
        .await
    }

    /// 1,000 cold logins sent at once to a fresh process; returns the
    /// answers, the process's peak RSS, and its anonymous and file-backed
    /// RSS after, in KiB.
    async fn memory(&mut self) -> Result<(Run, u64, (u64, u64)), BoxError> {
        self.restart().await?;
        let started = Instant::now();
        let tasks: Vec<_> = self
            .logins
            .iter()
            .take(MEMORY_CONCURRENCY)
            .enumerate()
            .map(|(i, login)| {
                let channel = self.channels[i % CHANNELS].clone();
                let (key, login) = (self.authenticator.clone(), login.clone());
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let ip = "10.1.0.1".to_owned();
                    let outcome =
                        authenticate(channel, &key, login.username, login.secret, ip).await;
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
        let peak = self.server.peak_rss_kib()?;
        Ok((run, peak, self.server.rss_anon_and_file_kib()?))
    }
}

/// The Authenticate and IssueAppPassword scenarios on one backend.
struct Scenarios {
    issue: Run,
    /// Each secret's first use: also writes its first-use audit event and
    /// marks its network known.
    first_use: Run,
    /// The same secrets again on a fresh process (its cache is empty): the
    /// usual cold login, a device back after the cache's TTL.
    cold: Run,
    warm: Run,
    unknown: Run,
    wrong: Run,
    throttled: Run,
}

async fn scenarios(bench: &mut Bench, argon2_pool_rate: f64) -> Scenarios {
    let duration = bench.options.duration;
    let issue = bench.issue(None, duration).await;
    // Enough distinct secrets for the cold run at the pool's full rate.
    let wanted = (argon2_pool_rate * duration.as_secs_f64() * 1.3) as usize;
    bench.top_up(wanted.max(MEMORY_CONCURRENCY)).await;
    let first_use = bench.cold().await;
    if let Err(error) = bench.restart().await {
        eprintln!("restart failed: {error}");
    }
    let cold = bench.cold().await;
    let warm = bench.warm().await;
    let unknown = bench.unknown_user().await;
    let wrong = bench.wrong_password().await;
    let throttled = bench.throttled().await;
    Scenarios {
        issue,
        first_use,
        cold,
        warm,
        unknown,
        wrong,
        throttled,
    }
}

fn report_scenarios(report: &mut Report, backend: &str, s: &Scenarios) {
    report.row("IssueAppPassword", backend, &s.issue, &["success"]);
    report.row(
        "Authenticate cold, first use",
        backend,
        &s.first_use,
        &["success"],
    );
    report.row("Authenticate cold", backend, &s.cold, &["success"]);
    report.row("Authenticate warm", backend, &s.warm, &["success"]);
    report.row(
        "unknown user",
        backend,
        &s.unknown,
        &["failure_reason_invalid_credentials"],
    );
    report.row(
        "wrong password",
        backend,
        &s.wrong,
        &["failure_reason_invalid_credentials"],
    );
    report.row("throttled source", backend, &s.throttled, &["throttled"]);
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = options()?;
    let (duration, concurrency) = (options.duration, options.concurrency);
    let postgres_url = options.postgres_url.clone();
    let (skip_scale, out) = (options.skip_scale, options.out.clone());
    let dir = tempfile::tempdir()?;
    let sqlite_url = format!("sqlite://{}?mode=rwc", dir.path().join("load.db").display());
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let mut report = Report {
        rows: String::new(),
        checks: String::new(),
    };

    eprintln!("floors: argon2 on one thread, then on the pool");
    let one_thread = argon2_one_thread(Duration::from_secs(3))?;
    let pool = argon2_pool(concurrency, duration / 2).await?;

    let mut bench = Bench::new(options, Server::start(&sqlite_url, dir.path()).await?).await?;
    eprintln!("no-op RPC");
    let no_op = bench.no_op().await;
    report.row("no-op RPC (health Check)", "-", &no_op, &["success"]);
    eprintln!("SQLite scenarios");
    let sqlite = scenarios(&mut bench, pool).await;
    report_scenarios(&mut report, "SQLite", &sqlite);
    let stored_small = count_passwords(&sqlite_url).await?;

    eprintln!("memory: {MEMORY_CONCURRENCY} concurrent cold logins on a fresh process");
    let (memory, peak_kib, (anon_kib, file_kib)) = bench.memory().await?;
    // Past the hashing queue's bound, RESOURCE_EXHAUSTED at once, by design.
    report.row(
        "1,000 concurrent cold (memory)",
        "SQLite",
        &memory,
        &["success", "ResourceExhausted"],
    );

    let scale = if skip_scale {
        None
    } else {
        eprintln!("scale: seeding 1,000,000 app passwords");
        bench.server.stop()?;
        seed_million(&sqlite_url).await?;
        let stored_large = count_passwords(&sqlite_url).await?;
        bench.restart().await?;
        let cold = bench.cold().await;
        let warm = bench.warm().await;
        report.row(
            &format!("cold, {stored_large} stored"),
            "SQLite",
            &cold,
            &["success"],
        );
        report.row(
            &format!("warm, {stored_large} stored"),
            "SQLite",
            &warm,
            &["success"],
        );
        Some((stored_large, cold, warm))
    };
    bench.server.stop()?;

    let postgres = match &postgres_url {
        Some(admin) => {
            eprintln!("PostgreSQL scenarios");
            Some(postgres_scenarios(admin, dir.path(), &mut report, pool).await?)
        }
        None => None,
    };

    // Targets.
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
        &format!("warm p99 < 5 ms at concurrency {concurrency} (SQLite)"),
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
    if let Some((stored_large, cold, warm_large)) = &scale {
        for (name, small, large) in [
            ("cold", &sqlite.cold, cold),
            ("warm", &sqlite.warm, warm_large),
        ] {
            let ratio = large.quantile(0.5).as_secs_f64() / small.quantile(0.5).as_secs_f64();
            report.check(
                &format!("{name} median, {stored_large} vs {stored_small} stored ≤ 1.2×"),
                format!(
                    "{} vs {} = {ratio:.2}×",
                    ms(large.quantile(0.5)),
                    ms(small.quantile(0.5))
                ),
                ratio <= 1.2,
            );
        }
    }
    let memory_cost_mib = f64::from(HashParams::default().memory_kib) / 1024.0;
    let limit_mib = 64.0 + 1.5 * workers as f64 * memory_cost_mib;
    let peak_mib = peak_kib as f64 / 1024.0;
    report.check(
        "peak RSS, 1,000 concurrent cold < 64 MiB + 1.5 × workers × argon2 memory",
        format!(
            "{peak_mib:.1} MiB vs {limit_mib:.1} MiB ({workers} workers); after: {:.1} MiB \
             anonymous, {:.1} MiB file-backed",
            anon_kib as f64 / 1024.0,
            file_kib as f64 / 1024.0
        ),
        peak_mib < limit_mib,
    );
    if let Some(postgres) = &postgres {
        let ratio = postgres.cold.rate() / pool;
        report.check(
            "cold ≥ 0.85 × pool argon2 rate (PostgreSQL)",
            format!("{ratio:.2}×"),
            ratio >= 0.85,
        );
    }

    let defaults = HashParams::default();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{workers} cores; argon2id m={} KiB t={} p={}; concurrency {concurrency} over {CHANNELS} \
         HTTP/2 connections; {} s per scenario; {stored_small} app passwords stored for the \
         SQLite scenarios.\n",
        defaults.memory_kib,
        defaults.iterations,
        defaults.parallelism,
        duration.as_secs()
    );
    let _ = writeln!(text, "Floors: argon2id verifications/s on one thread {one_thread:.1}, on the hashing pool ({workers} workers, no gRPC) {pool:.1}; no-op unary RPC {:.0}/s.\n", no_op.rate());
    let _ = writeln!(
        text,
        "| scenario | backend | rps | p50 | p99 | max | answers |"
    );
    let _ = writeln!(text, "|---|---|---|---|---|---|---|");
    text.push_str(&report.rows);
    let _ = writeln!(text, "\n| target | measured | |\n|---|---|---|");
    text.push_str(&report.checks);
    println!("{text}");
    if let Some(parent) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, &text)?;
    eprintln!("written to {out}");
    Ok(())
}

/// The same scenarios on a fresh PostgreSQL database, dropped after.
async fn postgres_scenarios(
    admin_url: &str,
    dir: &std::path::Path,
    report: &mut Report,
    pool: f64,
) -> Result<Scenarios, BoxError> {
    let name = format!("latchkey_load_{}", std::process::id());
    let admin = Database::connect(admin_url).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .ok_or("the URL has no database path")?;
    let url = format!("{base}/{name}");
    let result = async {
        let options = options()?;
        let mut bench = Bench::new(options, Server::start(&url, dir).await?).await?;
        let scenarios = scenarios(&mut bench, pool).await;
        bench.server.stop()?;
        Ok::<_, BoxError>(scenarios)
    }
    .await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin.close().await?;
    let scenarios = result?;
    report_scenarios(report, "PostgreSQL", &scenarios);
    Ok(scenarios)
}
