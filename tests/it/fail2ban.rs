//! The fail2ban filter in contrib/ against log lines the server really
//! wrote: failed logins (through Authenticate and through a proxy adapter)
//! match with their client address; successes do not. Needs fail2ban-regex
//! (Debian: fail2ban), which `.ci/run` installs; outside CI a machine
//! without it skips this test, saying so.

use std::path::Path;
use std::process::Command;

use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::Protocol;

use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

const FAIL2BAN_REGEX: &str = "/usr/bin/fail2ban-regex";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fail2ban_filter_matches_failed_logins_by_address() {
    if !Path::new(FAIL2BAN_REGEX).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "fail2ban-regex is missing under CI; .ci/run installs fail2ban"
        );
        eprintln!("skipping: fail2ban-regex is not installed");
        return;
    }
    let window = crate::common::logs::window();
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, secret) = issue_simple(&server, "felix").await;
    let key = server.keys[&Role::Authenticator].clone();
    for n in 0..3 {
        let wrong = login_with(
            &server,
            "felix",
            &wrong_secret(n),
            Protocol::Imap,
            "203.0.113.201",
        )
        .await;
        assert!(!wrong.authenticated);
    }
    assert!(
        login_with(&server, "felix", &secret, Protocol::Imap, "203.0.113.203")
            .await
            .authenticated
    );
    let adapter = |password: String, ip: &'static str| {
        let key = key.clone();
        let addr = server.adapters_addr;
        async move {
            crate::adapters::get(
                addr,
                "/auth/nginx-mail",
                &[
                    ("X-Latchkey-Key", key.as_str()),
                    ("Auth-Method", "plain"),
                    ("Auth-User", "felix"),
                    ("Auth-Pass", &password.replace(' ', "%20")),
                    ("Auth-Protocol", "imap"),
                    ("Client-IP", ip),
                ],
            )
            .await
        }
    };
    adapter(wrong_secret(10), "203.0.113.202").await;
    adapter(wrong_secret(11), "203.0.113.202").await;
    adapter(secret.clone(), "203.0.113.204").await;
    server.stop().await;

    // This test's lines only: other tests log logins in parallel.
    let ours: String = String::from_utf8_lossy(&window.read())
        .lines()
        .filter(|line| line.contains("client_ip=203.0.113.20"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(ours.lines().count(), 7, "{ours}");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("latchkey.log");
    std::fs::write(&log, &ours).unwrap();
    let filter =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/fail2ban/filter.d/latchkey.conf");
    let output = Command::new(FAIL2BAN_REGEX)
        .arg("--print-all-matched")
        .arg(&log)
        .arg(&filter)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(
        report.contains("Lines: 7 lines, 0 ignored, 5 matched, 2 missed"),
        "{report}\n{ours}"
    );
    // The matched addresses are the failing ones, never the successful ones.
    let matched = report
        .split("|- Matched line(s):")
        .nth(1)
        .unwrap_or_default();
    assert!(
        matched.contains("203.0.113.201") && matched.contains("203.0.113.202"),
        "{report}"
    );
    let matched_block = matched.split("`-").next().unwrap_or_default();
    assert!(
        !matched_block.contains("203.0.113.203") && !matched_block.contains("203.0.113.204"),
        "{report}"
    );
}
