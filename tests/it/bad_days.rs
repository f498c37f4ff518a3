//! One node's bad days: a disk that fills and empties again, a database
//! that goes away and comes back. Each phase is asserted by counting the
//! answers it got, never by timing one.

use std::collections::BTreeMap;

use sea_orm::ConnectionTrait;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey::grpc::pb::{FailureReason, Protocol};

use crate::common::harness::{TestDatabase, TestServer};
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

/// The disk under SQLite fills: writes are refused UNAVAILABLE with their
/// own reason (never INTERNAL), health says NOT_SERVING while they fail, and
/// once space is back writes resume by themselves, with nothing
/// acknowledged lost and no lock left behind for another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_clearly_and_recovers() {
    let disk = Tmpfs::mount(16 * 1024);
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
    assert!(
        !full.refusals().is_empty(),
        "the disk filled, yet every write succeeded: {:?}",
        full.answers
    );

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
