//! The change feed pushed as signed webhooks (issue 27): a receiver
//! written as a user would write one (Python, with the `standardwebhooks`
//! and `cloudevents` packages, `tests/webhooks/receiver.py`) checks every
//! delivery's signature and CloudEvent and records it; the tests count
//! what it got against what the feed holds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use latchkey::config::Config;
use latchkey::domain::shared::time::Timestamp;
use latchkey::domain::webhooks::WebhookTarget;
use sea_orm::{ConnectionTrait, Statement};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::processes::{free_port, Group};
use crate::common::programs;
use crate::common::support::*;
use crate::metrics::{sample, scrape};

backend_tests!(
    every_event_arrives_once_in_order_across_an_outage_and_a_restart,
    a_target_down_past_the_retention_skips_what_was_pruned_and_counts_it,
    of_two_replicas_on_one_database_one_delivers,
    a_dead_target_does_not_hold_up_another,
);

/// How long a test waits for deliveries it expects.
const PATIENCE: Duration = Duration::from_secs(60);

/// Whether the receiver's Python packages are there; under CI they must be.
fn python_packages() -> bool {
    programs::python_modules(
        "standardwebhooks, cloudevents.core.bindings.http",
        "tests/webhooks/requirements.txt",
    )
}

/// The Python receiver, its secret and its record.
struct Receiver {
    _group: Group,
    port: u16,
    secret_file: PathBuf,
    record: PathBuf,
}

impl Receiver {
    async fn start(dir: &Path, name: &str) -> Self {
        let secret_file = dir.join(format!("{name}.secret"));
        let key: [u8; 32] = rand::random();
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
        let record = dir.join(format!("{name}.jsonl"));
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks/receiver.py");
        let mut group = Group::spawn(
            name,
            Command::new("python3")
                .arg(script)
                .arg(port.to_string())
                .arg(&secret_file)
                .arg(&record),
            dir,
        );
        group.listening(port).await;
        Self {
            _group: group,
            port,
            secret_file,
            record,
        }
    }

    /// A target of every feed type at this receiver.
    fn target(&self, name: &str) -> WebhookTarget {
        WebhookTarget {
            name: name.to_owned(),
            url: format!("http://127.0.0.1:{}/hooks/latchkey?from=test", self.port),
            event_types: Vec::new(),
            secret_file: self.secret_file.clone(),
            timeout: 2,
            max_backoff: 1,
        }
    }

    /// Makes every later delivery answer `status`.
    async fn answer(&self, status: u16) {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        stream
            .write_all(format!("GET /_status/{status} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    }

    /// Every line recorded so far; none may be a refusal of a bad delivery.
    fn lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        for line in &lines {
            assert!(line.get("invalid").is_none(), "a bad delivery: {line}");
        }
        lines
    }

    /// How many deliveries were refused while it was down.
    fn refused(&self) -> usize {
        self.lines()
            .iter()
            .filter(|line| line.get("down").is_some())
            .count()
    }

    /// The feed places of the deliveries answered with `status`, in the
    /// order they came.
    fn seqs(&self, status: u16) -> Vec<i64> {
        self.lines()
            .iter()
            .filter(|line| line["status"] == status)
            .map(|line| line["seq"].as_i64().unwrap())
            .collect()
    }

    /// Waits until the deliveries answered 2xx cover `expected`.
    async fn received(&self, expected: &[i64]) {
        let last = *expected.last().unwrap();
        until(
            &format!("the receiver got every event through {last}"),
            PATIENCE,
            || self.seqs(204).contains(&last),
        )
        .await;
    }
}

/// The test configuration with `targets`, and a fast poll.
fn with_targets(config: &mut Config, targets: Vec<WebhookTarget>) {
    config.webhooks = targets;
    config.watch.poll_interval_ms = 20;
}

/// Standard Webhooks receivers refuse timestamps more than 5 minutes from
/// their own clock: the server's clock is set to the real time, which the
/// signatures then carry.
fn real_time(server: &TestServer) {
    server.clock.set(real_now());
}

fn real_now() -> Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    Timestamp::from_millis(now.as_millis() as i64)
}

/// The feed place the target's cursor starts from, once a replica holds
/// its lease.
async fn cursor_start(server: &TestServer, target: &str) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM webhook_cursor WHERE target = '{target}' AND holder IS NOT NULL"
    );
    let mut held = 0i64;
    for _ in 0..500 {
        held = query_value(server, &sql).await;
        if held == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(held, 1, "a replica takes the lease of {target}");
    query_value(
        server,
        &format!("SELECT seq FROM webhook_cursor WHERE target = '{target}'"),
    )
    .await
}

/// The feed's places after `after`, of `types` (all when empty), in order.
async fn feed_seqs(server: &TestServer, after: i64, types: &[&str]) -> Vec<i64> {
    let db = server.database.connect().await;
    let mut sql = format!("SELECT seq FROM audit_event WHERE seq > {after}");
    if !types.is_empty() {
        let names: Vec<String> = types.iter().map(|t| format!("'{t}'")).collect();
        sql.push_str(&format!(" AND event_type IN ({})", names.join(", ")));
    }
    sql.push_str(" ORDER BY seq");
    let rows = db
        .query_all(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
    db.close().await.unwrap();
    rows.iter()
        .map(|row| row.try_get_by_index::<i64>(0).unwrap())
        .collect()
}

/// Issues two passwords of `username` and revokes the first: three feed
/// events.
async fn changes(server: &TestServer, username: &str) {
    let (first, _) = issue_simple(server, username).await;
    issue_simple(server, username).await;
    revoke(server, first).await;
}

/// `got` with repeats of the delivery just before taken out, and how many
/// there were: the duplicates the contract allows (README, "Webhooks").
fn without_repeats(got: &[i64]) -> (Vec<i64>, usize) {
    let mut once: Vec<i64> = Vec::new();
    let mut repeats = 0;
    for seq in got {
        if once.last() == Some(seq) {
            repeats += 1;
        } else {
            once.push(*seq);
        }
    }
    (once, repeats)
}

/// A counter of the metrics, by target.
fn target_sample(body: &str, metric: &str, target: &str) -> f64 {
    sample(body, &format!("latchkey_{metric}{{target=\"{target}\"}}")).unwrap_or_else(|| {
        panic!("no {metric} of {target} in the metrics:\n{body}");
    })
}

async fn every_event_arrives_once_in_order_across_an_outage_and_a_restart(backend: Backend) {
    if !python_packages() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), "portal").await;
    let targets = vec![receiver.target("portal")];
    let first =
        TestServer::start_with(backend, |config| with_targets(config, targets.clone())).await;
    real_time(&first);
    let start = cursor_start(&first, "portal").await;

    changes(&first, "alice@example.com").await;
    let before_outage = feed_seqs(&first, start, &[]).await;
    receiver.received(&before_outage).await;

    // Down: every attempt is answered 503, and retried.
    receiver.answer(503).await;
    changes(&first, "bob@example.com").await;
    until("the receiver refused a delivery", PATIENCE, || {
        receiver.refused() > 0
    })
    .await;
    let (_, metrics) = scrape(&first).await;
    assert!(target_sample(&metrics, "webhook_failed_attempts_total", "portal") >= 1.0);
    assert!(target_sample(&metrics, "webhook_deliveries_total", "portal") >= 3.0);

    // A rolling restart: the new server starts beside the old one, which
    // stops and gives the lease up; the new one carries on.
    let second = first
        .replica_with(|config| with_targets(config, targets.clone()))
        .await;
    // Kept: its drop removes the database the new server uses.
    let _database = first.stop().await;
    eventually(
        "the new server retries the refused event",
        PATIENCE,
        async || {
            let (_, metrics) = scrape(&second).await;
            (target_sample(&metrics, "webhook_failed_attempts_total", "portal") >= 1.0)
                .then_some(())
        },
    )
    .await;
    receiver.answer(204).await;
    changes(&second, "carol@example.com").await;
    let expected = feed_seqs(&second, start, &[]).await;
    receiver.received(&expected).await;

    let (once, repeats) = without_repeats(&receiver.seqs(204));
    assert_eq!(once, expected, "every event once, in feed order");
    assert!(
        repeats <= 1,
        "a repeat only where a 2xx was not recorded (here: the stop): {repeats}"
    );
    let ids: Vec<String> = receiver
        .lines()
        .iter()
        .filter(|line| line["status"] == 204)
        .map(|line| line["id"].as_str().unwrap().to_owned())
        .collect();
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), expected.len(), "one webhook-id per event");

    let (_, metrics) = scrape(&second).await;
    assert!(target_sample(&metrics, "webhook_deliveries_total", "portal") >= 3.0);
    assert_eq!(
        target_sample(&metrics, "webhook_skipped_by_retention_total", "portal"),
        0.0
    );
    assert!(metrics.contains("latchkey_webhook_lag_events{target=\"portal\"}"));
    second.stop().await;
}

async fn of_two_replicas_on_one_database_one_delivers(backend: Backend) {
    if !python_packages() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), "notifier").await;
    let targets = vec![receiver.target("notifier")];
    let one = TestServer::start_with(backend, |config| with_targets(config, targets.clone())).await;
    real_time(&one);
    let two = one
        .replica_with(|config| with_targets(config, targets.clone()))
        .await;
    let start = cursor_start(&one, "notifier").await;
    changes(&one, "dana@example.com").await;
    changes(&two, "erin@example.com").await;
    let expected = feed_seqs(&one, start, &[]).await;
    receiver.received(&expected).await;
    assert_eq!(receiver.seqs(204), expected, "each event once, in order");

    let delivered = |body: &str| target_sample(body, "webhook_deliveries_total", "notifier");
    let (_, of_one) = scrape(&one).await;
    let (_, of_two) = scrape(&two).await;
    let counts = [delivered(&of_one), delivered(&of_two)];
    assert_eq!(counts[0] + counts[1], expected.len() as f64, "{counts:?}");
    assert!(
        counts.contains(&0.0),
        "one replica delivered it all: {counts:?}"
    );
    two.stop().await;
    one.stop().await;
}

async fn a_dead_target_does_not_hold_up_another(backend: Backend) {
    if !python_packages() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), "live").await;
    // Accepts connections and never answers them.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = dead.accept().await {
            held.push(stream);
        }
    });
    let types = ["app_password_issued", "app_password_revoked"];
    let mut live = receiver.target("live");
    live.event_types = types.iter().map(|t| (*t).to_owned()).collect();
    let targets = vec![
        WebhookTarget {
            name: "dead".to_owned(),
            url: format!("http://127.0.0.1:{dead_port}/"),
            timeout: 1,
            ..receiver.target("dead")
        },
        live,
    ];
    let server = TestServer::start_with(backend, |config| with_targets(config, targets)).await;
    real_time(&server);
    let start = cursor_start(&server, "live").await;
    cursor_start(&server, "dead").await;
    for username in ["fay@example.com", "gus@example.com", "hal@example.com"] {
        changes(&server, username).await;
    }
    let expected = feed_seqs(&server, start, &types).await;
    assert_eq!(expected.len(), 9);
    receiver.received(&expected).await;
    assert_eq!(
        receiver.seqs(204),
        expected,
        "only its types, each once, in order"
    );
    let (_, metrics) = scrape(&server).await;
    assert_eq!(
        target_sample(&metrics, "webhook_deliveries_total", "dead"),
        0.0
    );
    assert_eq!(
        target_sample(&metrics, "webhook_deliveries_total", "live"),
        9.0
    );
    eventually(
        "the dead target's attempts fail, and it lags",
        PATIENCE,
        async || {
            let (_, metrics) = scrape(&server).await;
            let failed = target_sample(&metrics, "webhook_failed_attempts_total", "dead");
            let lag = target_sample(&metrics, "webhook_lag_events", "dead");
            (failed >= 1.0 && lag >= expected.len() as f64).then_some(())
        },
    )
    .await;
    server.stop().await;
    holding.abort();
}

async fn a_target_down_past_the_retention_skips_what_was_pruned_and_counts_it(backend: Backend) {
    if !python_packages() {
        return;
    }
    let log = crate::common::logs::window();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), "archive").await;
    let targets = vec![receiver.target("archive")];
    let server = TestServer::start_with(backend, |config| {
        with_targets(config, targets);
        config.audit.retention_days = 1;
    })
    .await;
    // Events two days old, while the receiver is down.
    let two_days = Duration::from_secs(2 * 86_400);
    server.clock.set(real_now().saturating_sub(two_days));
    let start = cursor_start(&server, "archive").await;
    receiver.answer(503).await;
    changes(&server, "ida@example.com").await;
    let old = feed_seqs(&server, start, &[]).await;
    assert_eq!(old.len(), 3);
    until("the receiver refused a delivery", PATIENCE, || {
        receiver.refused() > 0
    })
    .await;

    // Now: housekeeping prunes them (a day's retention) before they were
    // delivered; the deliverer says so, counts them and carries on.
    server.clock.set(real_now());
    let skipped = eventually(
        "the deliverer skips the pruned events",
        PATIENCE,
        async || {
            let (_, metrics) = scrape(&server).await;
            let skipped = target_sample(&metrics, "webhook_skipped_by_retention_total", "archive");
            (skipped > 0.0).then_some(skipped)
        },
    )
    .await;
    assert!(skipped >= old.len() as f64, "{skipped}");
    receiver.answer(204).await;
    changes(&server, "jon@example.com").await;
    let new = feed_seqs(&server, *old.last().unwrap(), &[]).await;
    receiver.received(&new).await;
    assert_eq!(
        receiver.seqs(204),
        new,
        "the pruned events are never delivered"
    );
    server.stop().await;
    let log = String::from_utf8_lossy(&log.read()).into_owned();
    assert!(
        log.lines().any(|line| line.contains("ERROR")
            && line.contains("fell behind the audit retention")
            && line.contains("target=\"archive\"")),
        "the skip is logged as an error"
    );
    let secret = std::fs::read_to_string(&receiver.secret_file).unwrap();
    let key = secret.trim().trim_start_matches("whsec_");
    assert!(!log.contains(key), "the signing secret is in the log");
}
