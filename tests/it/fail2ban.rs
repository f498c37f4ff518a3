//! The fail2ban filter in contrib/ against log lines the server really
//! wrote: failed logins (through Authenticate and through a proxy adapter)
//! match with their client address; successes do not. Needs fail2ban-regex
//! (Debian: fail2ban), which `.ci/run` installs; outside CI a machine
//! without it skips this test, saying so.

use std::path::Path;
use std::process::Command;

use latchkey::domain::callers::model::Role;
use latchkey::domain::login::model::FailureReason;
use latchkey::grpc::pb::Protocol;

use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

const FAIL2BAN_REGEX: &str = "/usr/bin/fail2ban-regex";

/// Whether fail2ban-regex is here; under CI its absence fails the test.
fn fail2ban_regex_present() -> bool {
    crate::common::programs::installed(&[FAIL2BAN_REGEX], "the fail2ban package")
}

/// The shipped filter's report on `lines`: (matched, missed) and the
/// matched lines.
fn run_filter(lines: &str) -> (usize, usize, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("latchkey.log");
    std::fs::write(&log, lines).unwrap();
    let filter =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/fail2ban/filter.d/latchkey.conf");
    let output = Command::new(FAIL2BAN_REGEX)
        .arg("--print-all-matched")
        .arg(&log)
        .arg(&filter)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{report}");
    let summary = report
        .lines()
        .find(|line| line.starts_with("Lines: "))
        .unwrap_or_else(|| panic!("no summary in {report}"));
    let number_before = |word: &str| -> usize {
        let words: Vec<&str> = summary.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.trim_end_matches(',') == word)
            .unwrap_or_else(|| panic!("{word} in {summary}"));
        words[at - 1].parse().unwrap()
    };
    let matched_block = report
        .split("|- Matched line(s):")
        .nth(1)
        .unwrap_or_default()
        .split("`-")
        .next()
        .unwrap_or_default();
    let matched = matched_block
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    (number_before("matched"), number_before("missed"), matched)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_test_fail2ban), ignore = "needs fail2ban-regex")]
async fn the_fail2ban_filter_matches_failed_logins_by_address() {
    if !fail2ban_regex_present() {
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
    let (matched, missed, lines) = run_filter(&ours);
    assert_eq!((matched, missed), (5, 2), "{lines:?}\n{ours}");
    // The matched addresses are the failing ones, never the successful ones.
    let text = lines.join("\n");
    assert!(
        text.contains("203.0.113.201") && text.contains("203.0.113.202"),
        "{text}"
    );
    assert!(
        !text.contains("203.0.113.203") && !text.contains("203.0.113.204"),
        "{text}"
    );
}

/// The filter names every failure reason latchkey logs.
#[test]
fn the_filter_knows_every_failure_reason() {
    let filter = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/fail2ban/filter.d/latchkey.conf"),
    )
    .unwrap();
    let failures = filter
        .lines()
        .find_map(|line| line.strip_prefix("_failures = "))
        .unwrap();
    let listed: Vec<&str> = failures.split('|').collect();
    for reason in FailureReason::ALL {
        assert!(
            listed.contains(&reason.as_str()),
            "{reason:?} in {failures}"
        );
    }
    assert!(listed.contains(&FailureReason::THROTTLED));
}

/// The victim a hostile client would like fail2ban to ban.
const VICTIM: &str = "203.0.113.9";
/// Where this test's real failures come from.
const FAILING: &str = "203.0.113.240";

/// Issue 19, finding 1: no client, with or without a key, can put a
/// look-alike field into a log line that the filter reads. Keyless calls to
/// made-up methods whose paths spell `result=throttled client_ip=VICTIM`,
/// usernames, a client id, nginx's Auth-* headers, a User-Agent and a page
/// token that spell the same, and an account whose very name spells it,
/// signing in: the filter matches only the real failures, from FAILING, and
/// never VICTIM, however many lines carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_test_fail2ban), ignore = "needs fail2ban-regex")]
async fn no_client_chosen_value_steers_the_filter() {
    if !fail2ban_regex_present() {
        return;
    }
    let window = crate::common::logs::window();
    let server = TestServer::start(Backend::Sqlite).await;
    let spoof = format!("result=throttled client_ip={VICTIM}");
    let quoted = format!("x\"result=\"throttled\"client_ip={VICTIM}");

    // Keyless unary calls to unknown methods (12: more than the jail's 10).
    let paths = [
        format!("/x/result=throttled/client_ip={VICTIM}"),
        format!("/x/%22%20result=%22throttled%22%20client_ip={VICTIM}%20latency_ms=1"),
        format!("/latchkey.v1.LegacyAuthService/Authenticate/result=throttled/client_ip={VICTIM}"),
    ];
    let mut unauthenticated = 0;
    for n in 0..12 {
        if raw_unary(&server, &paths[n % paths.len()]).await == Some(16) {
            unauthenticated += 1;
        }
    }
    assert_eq!(unauthenticated, 12);

    // Usernames and client ids through Authenticate, with a key: each a
    // counted failure from FAILING.
    let hostile_names = [
        format!("u\"result=\"throttled\"client_ip={VICTIM}"),
        format!("u\\\"client_ip={VICTIM}"),
        format!("u,client_ip={VICTIM}"),
    ];
    let mut failures = 0;
    for (n, name) in hostile_names.iter().enumerate() {
        let mut request = login_request(name, &wrong_secret(n as u32), Protocol::Imap, FAILING);
        request.client_id = spoof.clone();
        let response = server
            .auth()
            .authenticate(request)
            .await
            .unwrap()
            .into_inner();
        assert!(!response.authenticated);
        failures += 1;
    }

    // An account whose name spells it, signing in (a success: no match).
    let (_, secret) = issue_simple(&server, &quoted).await;
    assert!(
        login_with(&server, &quoted, &secret, Protocol::Imap, "203.0.113.241")
            .await
            .authenticated
    );

    // A page token that spells it (refused: INVALID_ARGUMENT).
    let listed = server
        .app_passwords()
        .list_app_passwords(latchkey::grpc::pb::ListAppPasswordsRequest {
            parent: format!("accounts/{quoted}"),
            page_token: spoof.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(listed.unwrap_err().code(), tonic::Code::InvalidArgument);

    // The adapters: Auth-User, Auth-Protocol, Auth-Method, the User-Agent.
    let key = server.keys[&Role::Authenticator].clone();
    let hostile_header = format!("x result=throttled client_ip={VICTIM}");
    let user = format!("a\"client_ip={VICTIM}");
    // (user, protocol, method, status, a counted failure)
    for (user, protocol, method, status, counted) in [
        (user.as_str(), "imap", "plain", 200, true),
        ("felix", hostile_header.as_str(), "plain", 400, false),
        ("felix", "imap", hostile_header.as_str(), 200, false),
    ] {
        let answer = crate::adapters::get(
            server.adapters_addr,
            "/auth/nginx-mail",
            &[
                ("X-Latchkey-Key", key.as_str()),
                ("Auth-Method", method),
                ("Auth-User", user),
                ("Auth-Pass", "wrong%20password"),
                ("Auth-Protocol", protocol),
                ("Client-IP", FAILING),
                ("Auth-Login-Attempt", "1"),
            ],
        )
        .await;
        assert_eq!(answer.status, status, "{user} {protocol} {method}");
        if counted {
            assert_ne!(answer.header("auth-status"), Some("OK"));
            failures += 1;
        }
    }
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("b\"client_ip={VICTIM}:wrong password"),
        )
    );
    let answer = crate::adapters::get(
        server.adapters_addr,
        "/auth/http-basic",
        &[
            ("X-Latchkey-Key", key.as_str()),
            ("Authorization", basic.as_str()),
            ("X-Latchkey-Protocol", "caldav"),
            ("X-Latchkey-Client-IP", FAILING),
            ("User-Agent", &hostile_header),
        ],
    )
    .await;
    assert_eq!(answer.status, 401);
    failures += 1;
    server.stop().await;

    let all = String::from_utf8_lossy(&window.read()).into_owned();
    let ours: String = all
        .lines()
        .filter(|line| line.contains(VICTIM) || line.contains(FAILING))
        .map(|line| format!("{line}\n"))
        .collect();
    let carrying_victim = ours.lines().filter(|l| l.contains(VICTIM)).count();
    assert!(carrying_victim >= 13, "{ours}");
    let (matched, _, lines) = run_filter(&ours);
    assert_eq!(matched, failures, "{lines:#?}\n{ours}");
    for line in &lines {
        assert!(line.contains(&format!("client_ip={FAILING} ")), "{line}");
        assert!(!line.contains(VICTIM), "{line}");
    }
}

/// One keyless unary gRPC call to `path` on a raw HTTP/2 connection of
/// its own; the grpc-status it was answered with.
async fn raw_unary(server: &TestServer, path: &str) -> Option<i32> {
    let mut client = crate::common::support::raw_h2(server.addr).await;
    crate::common::support::raw_unary(&mut client, server.addr, path).await
}
