//! One node's bad days: a disk that fills and empties again, a database
//! that goes away and comes back. Each phase is asserted by counting the
//! answers it got, never by timing one.

use std::collections::BTreeMap;

use sea_orm::ConnectionTrait;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey::grpc::pb::{FailureReason, Protocol};

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::common::harness::{TestDatabase, TestServer};
use crate::common::postgres::PgCluster;
use crate::common::support::*;

/// A tmpfs of `size_kib` mounted on a directory of its own, unmounted when
/// dropped. Mounting needs root, which CI has; elsewhere the test fails
/// saying so rather than skip.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_kib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("mount(8) runs");
        assert!(
            status.success(),
            "mounting a {size_kib} KiB tmpfs failed ({status}): this test needs root, as CI has"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the file system has no byte left; returns it.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [64 * 1024, 4096, 1] {
            let bytes = vec![0u8; chunk];
            while file.write_all(&bytes).is_ok() {}
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// What one phase of load got back: answers by code and reason, and what
/// the server acknowledged.
#[derive(Default, Debug)]
struct Phase {
    answers: BTreeMap<String, u32>,
    issued: Vec<(String, String)>,
}

impl Phase {
    fn saw(&mut self, what: &str, result: Result<(), tonic::Status>) {
        let key = match result {
            Ok(()) => format!("{what} OK"),
            Err(status) => format!("{what} {:?} {}", status.code(), reason_of(&status)),
        };
        *self.answers.entry(key).or_default() += 1;
    }

    fn count(&self, code: &str) -> u32 {
        self.answers
            .iter()
            .filter(|(key, _)| key.split(' ').nth(1) == Some(code))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every request of the phase succeeded, and there were some.
    fn assert_all_answered(&self, when: &str) {
        assert!(
            self.refusals().is_empty() && self.count("OK") > 0,
            "{when}: {:?}",
            self.answers
        );
    }

    /// Every answer that was not OK, by kind.
    fn refusals(&self) -> Vec<(&String, &u32)> {
        self.answers
            .iter()
            .filter(|(key, _)| !key.ends_with(" OK"))
            .collect()
    }
}

/// Issues, signs in for the first time (a first-use write) and guesses
/// wrong (a failure write), in a loop, for `duration`.
async fn mixed_load(server: &TestServer, workers: u32, duration: Duration) -> Phase {
    let phase = Arc::new(Mutex::new(Phase::default()));
    let until = Instant::now() + duration;
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let phase = Arc::clone(&phase);
        let (mut app_passwords, mut auth) = (server.app_passwords(), server.auth());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u32;
            while Instant::now() < until {
                n += 1;
                let username = format!("disk{worker}x{n}");
                let request = issue_request(&username, "Phone", &[Protocol::Imap]);
                let issued = match app_passwords.issue_app_password(request).await {
                    Ok(response) => {
                        let response = response.into_inner();
                        phase.lock().unwrap().saw("issue", Ok(()));
                        Some((username.clone(), response.secret))
                    }
                    Err(status) => {
                        phase.lock().unwrap().saw("issue", Err(status));
                        None
                    }
                };
                if let Some((username, secret)) = issued {
                    let ip = format!("10.{}.{}.{}", worker, n / 250, n % 250 + 1);
                    let first_use = login_request(&username, &secret, Protocol::Imap, &ip);
                    let result = auth.authenticate(first_use).await.map(|answer| {
                        assert!(
                            answer.into_inner().authenticated,
                            "a password just issued is refused"
                        );
                    });
                    let mut phase = phase.lock().unwrap();
                    phase.saw("first-use", result);
                    phase.issued.push((username, secret));
                }
                let guess = wrong_secret(worker * 1_000_000 + n);
                let ip = format!("192.0.2.{}", n % 250 + 1);
                let wrong = login_request(&format!("disk{worker}x1"), &guess, Protocol::Imap, &ip);
                match auth.authenticate(wrong).await {
                    Ok(answer) => {
                        let reason = answer.into_inner().failure_reason();
                        assert!(
                            matches!(
                                reason,
                                FailureReason::InvalidCredentials | FailureReason::Throttled
                            ),
                            "a wrong password answered {reason:?}"
                        );
                        phase.lock().unwrap().saw("wrong", Ok(()));
                    }
                    Err(status) => phase.lock().unwrap().saw("wrong", Err(status)),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(phase).unwrap().into_inner().unwrap()
}

async fn health(server: &TestServer) -> ServingStatus {
    HealthClient::new(server.channel())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

async fn wait_for_health(server: &TestServer, wanted: ServingStatus, what: &str) {
    health_within(server, wanted, what, Duration::from_secs(10)).await;
}

async fn health_within(server: &TestServer, wanted: ServingStatus, what: &str, within: Duration) {
    eventually(what, within, async || {
        (health(server).await == wanted).then_some(())
    })
    .await;
}

/// The disk under SQLite fills: writes are refused UNAVAILABLE with their
/// own reason (never INTERNAL), health says NOT_SERVING while they fail, and
/// once space is back writes resume by themselves, with nothing
/// acknowledged lost and no lock left behind for another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_clearly_and_recovers() {
    let disk = Tmpfs::mount(16 * 1024);
    let log = crate::common::logs::window();
    let server = TestServer::start_on(TestDatabase::sqlite_in(disk.path()), |config| {
        config.database.health_check_interval_ms = 100;
        config.throttle.pair_limit = 1_000_000;
        config.throttle.source_limit = 1_000_000;
        config.throttle.account_limit = 1_000_000;
    })
    .await;

    let before = mixed_load(&server, 4, Duration::from_secs(2)).await;
    before.assert_all_answered("before the fill");

    let filler = disk.fill();
    let full = mixed_load(&server, 4, Duration::from_secs(3)).await;
    eprintln!("full: {:?}", full.answers);
    wait_for_health(
        &server,
        ServingStatus::NotServing,
        "health NOT_SERVING while writes fail",
    )
    .await;
    assert!(
        !full.refusals().is_empty(),
        "the disk filled, yet every write succeeded: {:?}",
        full.answers
    );

    // Said once for the episode, naming the file (and so its file system).
    let said = format!(
        "the file system holding the SQLite database {} is full",
        disk.path().join("latchkey.db").display()
    );
    let lines = String::from_utf8_lossy(&log.read()).matches(&said).count();
    assert_eq!(lines, 1, "{said:?} logged once for the episode");

    std::fs::remove_file(&filler).unwrap();
    eventually(
        "an issue succeeds once space is back",
        Duration::from_secs(10),
        async || {
            let request = issue_request("after", "Phone", &[Protocol::Imap]);
            server
                .app_passwords()
                .issue_app_password(request)
                .await
                .ok()
        },
    )
    .await;
    wait_for_health(
        &server,
        ServingStatus::Serving,
        "health SERVING once writes succeed",
    )
    .await;
    let after = mixed_load(&server, 4, Duration::from_secs(2)).await;
    after.assert_all_answered("after space is back");

    // No lock is left behind: another process's write transaction starts.
    let other = sea_orm::Database::connect(&server.database.url)
        .await
        .unwrap();
    other
        .execute_unprepared("BEGIN IMMEDIATE; ROLLBACK")
        .await
        .expect("another connection takes the write lock");
    other.close().await.unwrap();

    // Nothing acknowledged was lost, in any phase.
    for phase in [&before, &full, &after] {
        for (username, secret) in &phase.issued {
            let answer = login(&server, username, secret).await;
            assert!(
                answer.authenticated,
                "an acknowledged issue does not sign in: {username}"
            );
        }
    }
    server.stop().await;
}

/// How a burst of sign-ins with a deadline of `deadline` each was answered:
/// by code and reason.
async fn sign_ins_within(server: &TestServer, count: u32, deadline: Duration) -> Phase {
    let mut phase = Phase::default();
    for n in 0..count {
        let mut request = tonic::Request::new(login_request(
            "outage",
            &wrong_secret(n),
            Protocol::Imap,
            "192.0.2.77",
        ));
        request.set_timeout(deadline);
        let result = server.auth().authenticate(request).await.map(|_| ());
        phase.saw("sign-in", result);
    }
    phase
}

/// The database goes away: the replica learns it within about a second
/// (health NOT_SERVING), answers UNAVAILABLE at once from then on instead of
/// waiting out the pool's acquire timeout (3 s, the default kept here) for
/// a connection that cannot be made, and recovers by itself when the
/// database is back. Answer times are counted as answers within a deadline
/// shorter than the acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_and_health_follows() {
    let Some(mut cluster) = PgCluster::start().await else {
        return;
    };
    cluster.create_database("latchkey").await;
    let server = TestServer::start_on(TestDatabase::at(cluster.url("latchkey")), |config| {
        config.throttle.pair_limit = 1_000_000;
        config.throttle.source_limit = 1_000_000;
        config.throttle.account_limit = 1_000_000;
    })
    .await;
    let (_, secret) = issue_simple(&server, "outage").await;
    assert!(login(&server, "outage", &secret).await.authenticated);
    wait_for_health(&server, ServingStatus::Serving, "health SERVING at start").await;

    cluster.halt();
    // Within about a second: the probe's interval (500 ms) and its own
    // bound of as much. Polled for up to 2 s, less than the pool's acquire
    // timeout, so a replica that learned it only from a timed-out request
    // fails here.
    health_within(
        &server,
        ServingStatus::NotServing,
        "health NOT_SERVING with the database stopped",
        Duration::from_secs(2),
    )
    .await;
    let during = sign_ins_within(&server, 50, Duration::from_millis(500)).await;
    assert_eq!(
        during
            .answers
            .get("sign-in Unavailable STORAGE_UNAVAILABLE"),
        Some(&50),
        "every sign-in is answered UNAVAILABLE within 500 ms while the database is down: {:?}",
        during.answers
    );

    cluster.resume().await;
    wait_for_health(
        &server,
        ServingStatus::Serving,
        "health SERVING once it is back",
    )
    .await;
    let back = sign_ins_within(&server, 10, Duration::from_secs(5)).await;
    back.assert_all_answered("once the database is back");
    assert!(login(&server, "outage", &secret).await.authenticated);
    server.stop().await;
}

/// Runs `statements`, one by one, as the cluster's superuser.
async fn as_superuser(cluster: &PgCluster, statements: &[&str]) {
    let admin = sea_orm::Database::connect(cluster.url("postgres"))
        .await
        .unwrap();
    for sql in statements {
        admin
            .execute_unprepared(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }
    admin.close().await.unwrap();
}

/// A server that accepts no writes (here every session made read-only by
/// `default_transaction_read_only`, as a standby would be): health says
/// NOT_SERVING from the probe alone, writes are refused UNAVAILABLE with
/// STORAGE_READ_ONLY (never INTERNAL), known devices still sign in, and it
/// all comes back when the server takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_refuses_writes_clearly() {
    let Some(cluster) = PgCluster::start().await else {
        return;
    };
    cluster.create_database("latchkey").await;
    let server = TestServer::start_on(TestDatabase::at(cluster.url("latchkey")), |_| {}).await;
    let (_, secret) = issue_simple(&server, "reader").await;
    assert!(login(&server, "reader", &secret).await.authenticated);

    as_superuser(
        &cluster,
        &[
            "ALTER SYSTEM SET default_transaction_read_only = on",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    wait_for_health(
        &server,
        ServingStatus::NotServing,
        "health NOT_SERVING on a read-only server, before any write",
    )
    .await;
    let request = issue_request("reader", "Laptop", &[Protocol::Imap]);
    let refused = server
        .app_passwords()
        .issue_app_password(request)
        .await
        .expect_err("an issue on a read-only server");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert_eq!(reason_of(&refused), "STORAGE_READ_ONLY");
    assert!(
        login(&server, "reader", &secret).await.authenticated,
        "a known device signs in from a read-only server"
    );

    as_superuser(
        &cluster,
        &[
            "SET default_transaction_read_only = off",
            "ALTER SYSTEM RESET default_transaction_read_only",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    wait_for_health(
        &server,
        ServingStatus::Serving,
        "health SERVING once it takes writes",
    )
    .await;
    issue_simple(&server, "reader").await;
    server.stop().await;
}
