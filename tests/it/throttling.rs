//! Throttling through the real server, with the clock moved by hand.

use std::time::Duration;

use latchkey::config::Config;
use latchkey::domain::login::throttle::Scopes;
use latchkey::domain::shared::username::Username;
use latchkey::grpc::pb::{AuthenticateResponse, FailureReason, Protocol};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    a_pair_is_blocked_then_released_with_growing_delays,
    a_stale_device_repeating_one_wrong_password_does_not_escalate,
    unknown_and_real_accounts_are_throttled_alike,
    spraying_one_account_does_not_lock_out_its_known_source,
    a_source_spraying_many_accounts_is_blocked,
    success_clears_the_pair_only,
    blocks_hold_across_replicas_and_restarts,
    concurrent_failures_are_all_counted,
    a_block_this_replica_has_seen_is_answered_without_a_read,
    a_throttled_answer_runs_no_argon2,
);

/// Throttling with small limits, so tests reach them quickly.
fn limits(pair: u32, source: u32, account: u32) -> impl FnOnce(&mut Config) {
    move |config| {
        config.throttle.pair_limit = pair;
        config.throttle.source_limit = source;
        config.throttle.account_limit = account;
        config.throttle.base_delay_secs = 60;
        config.throttle.max_delay_secs = 3600;
    }
}

fn wrong(n: u32) -> String {
    wrong_secret(n)
}

fn assert_throttled(response: &AuthenticateResponse, seconds: u64) {
    assert!(!response.authenticated);
    assert_eq!(
        response.failure_reason(),
        FailureReason::Throttled,
        "{response:?}"
    );
    let retry = response.retry_after.expect("a retry-after hint");
    assert_eq!(retry.seconds as u64, seconds, "{response:?}");
}

/// Sends `count` wrong guesses for `username` from the default address,
/// each answered INVALID_CREDENTIALS.
async fn fail_times(server: &TestServer, username: &str, count: u32) {
    for n in 0..count {
        let response = login(server, username, &wrong(n)).await;
        assert_eq!(response.failure_reason(), FailureReason::InvalidCredentials);
    }
}

async fn a_pair_is_blocked_then_released_with_growing_delays(backend: Backend) {
    let server = TestServer::start_with(backend, limits(3, 1000, 1000)).await;
    let (_, secret) = issue_simple(&server, "wendy").await;
    fail_times(&server, "wendy", 3).await;
    // Blocked now, even with the right password, which is not even checked.
    assert_throttled(&login(&server, "wendy", &secret).await, 60);
    server.clock.advance(Duration::from_secs(30));
    assert_throttled(&login(&server, "wendy", &wrong(9)).await, 30);
    // Another network is not affected by this pair's block.
    let elsewhere = login_with(&server, "wendy", &secret, Protocol::Imap, "198.51.100.1").await;
    assert!(elsewhere.authenticated);

    server.clock.advance(Duration::from_secs(31));
    // The block is over; one more failure doubles it.
    let response = login(&server, "wendy", &wrong(3)).await;
    assert_eq!(response.failure_reason(), FailureReason::InvalidCredentials);
    assert_throttled(&login(&server, "wendy", &secret).await, 120);
    server.clock.advance(Duration::from_secs(121));
    assert!(login(&server, "wendy", &secret).await.authenticated);
    server.stop().await;
}

async fn a_stale_device_repeating_one_wrong_password_does_not_escalate(backend: Backend) {
    let server = TestServer::start_with(backend, limits(3, 1000, 1000)).await;
    let (_, secret) = issue_simple(&server, "xavier").await;
    let old = wrong(42);
    for _ in 0..20 {
        let response = login(&server, "xavier", &old).await;
        assert_eq!(response.failure_reason(), FailureReason::InvalidCredentials);
        server.clock.advance(Duration::from_secs(5));
    }
    // The owner fixes the device and signs in at once.
    assert!(login(&server, "xavier", &secret).await.authenticated);
    server.stop().await;
}

async fn unknown_and_real_accounts_are_throttled_alike(backend: Backend) {
    let server = TestServer::start_with(backend, limits(3, 1000, 1000)).await;
    issue_simple(&server, "yara").await;
    let mut real = Vec::new();
    let mut ghost = Vec::new();
    for n in 0..5 {
        real.push(login(&server, "yara", &wrong(n)).await);
        ghost.push(login(&server, "ghost", &wrong(n)).await);
    }
    assert_eq!(real, ghost);
    assert_eq!(real[4].failure_reason(), FailureReason::Throttled);
    server.stop().await;
}

async fn spraying_one_account_does_not_lock_out_its_known_source(backend: Backend) {
    let server = TestServer::start_with(backend, limits(1000, 1000, 10)).await;
    let (_, secret) = issue_simple(&server, "zach").await;
    let home = "192.0.2.10";
    assert!(
        login_with(&server, "zach", &secret, Protocol::Imap, home)
            .await
            .authenticated
    );

    for n in 0..30u32 {
        let attacker = format!("203.0.113.{n}");
        login_with(&server, "zach", &wrong(n), Protocol::Imap, &attacker).await;
    }
    // The account is blocked for networks it has never signed in from...
    let stranger = login_with(&server, "zach", &secret, Protocol::Imap, "198.51.100.99").await;
    assert_eq!(stranger.failure_reason(), FailureReason::Throttled);
    // ...but its owner's known network carries on.
    for _ in 0..3 {
        assert!(
            login_with(&server, "zach", &secret, Protocol::Imap, home)
                .await
                .authenticated
        );
    }
    server.stop().await;
}

async fn a_source_spraying_many_accounts_is_blocked(backend: Backend) {
    let server = TestServer::start_with(backend, limits(1000, 4, 1000)).await;
    let (_, secret) = issue_simple(&server, "abby").await;
    for n in 0..4 {
        login_with(
            &server,
            &format!("user{n}"),
            &wrong(n),
            Protocol::Imap,
            "2001:db8:5:6::1",
        )
        .await;
    }
    // The whole /64 is blocked, for every account, until the delay passes.
    let blocked = login_with(
        &server,
        "abby",
        &secret,
        Protocol::Imap,
        "2001:db8:5:6:ffff::2",
    )
    .await;
    assert_throttled(&blocked, 60);
    let other_network =
        login_with(&server, "abby", &secret, Protocol::Imap, "2001:db8:5:7::1").await;
    assert!(other_network.authenticated);
    server.clock.advance(Duration::from_secs(60));
    assert!(
        login_with(&server, "abby", &secret, Protocol::Imap, "2001:db8:5:6::3")
            .await
            .authenticated
    );
    server.stop().await;
}

async fn success_clears_the_pair_only(backend: Backend) {
    let server = TestServer::start_with(backend, limits(3, 1000, 1000)).await;
    let (_, secret) = issue_simple(&server, "bruno").await;
    for round in 0..3 {
        for n in 0..2 {
            let response = login(&server, "bruno", &wrong(round * 10 + n)).await;
            assert_eq!(response.failure_reason(), FailureReason::InvalidCredentials);
        }
        assert!(
            login(&server, "bruno", &secret).await.authenticated,
            "round {round}"
        );
    }
    // Six failures in all, but never three in a row without a success.
    let scopes = Scopes::of(
        &Username::parse("bruno").unwrap(),
        "192.0.2.10".parse().unwrap(),
        None,
    );
    assert_eq!(stored_failures(&server, &scopes.pair.key).await, 0);
    assert_eq!(stored_failures(&server, &scopes.account.key).await, 6);
    assert_eq!(stored_failures(&server, &scopes.source.key).await, 6);
    server.stop().await;
}

async fn blocks_hold_across_replicas_and_restarts(backend: Backend) {
    let first = TestServer::start_with(backend, limits(3, 1000, 1000)).await;
    let (_, secret) = issue_simple(&first, "carla").await;
    for n in 0..3 {
        login(&first, "carla", &wrong(n)).await;
    }
    let second = first.replica_with(limits(3, 1000, 1000)).await;
    assert_throttled(&login(&second, "carla", &secret).await, 60);
    let database = first.stop().await;
    // The second replica alone, after the first is gone, still holds it.
    assert_throttled(&login(&second, "carla", &secret).await, 60);
    second.clock.advance(Duration::from_secs(60));
    assert!(login(&second, "carla", &secret).await.authenticated);
    second.stop().await;
    drop(database);
}

async fn concurrent_failures_are_all_counted(backend: Backend) {
    let server = TestServer::start_with(backend, limits(1000, 1000, 1000)).await;
    issue_simple(&server, "dora").await;
    let attempts = (0..40u32).map(|n| {
        let mut client = server.auth();
        async move {
            let ip = format!("203.0.113.{n}");
            client
                .authenticate(login_request("dora", &wrong(n), Protocol::Imap, &ip))
                .await
                .unwrap()
                .into_inner()
        }
    });
    let responses = futures::future::join_all(attempts).await;
    assert!(responses
        .iter()
        .all(|r| r.failure_reason() == FailureReason::InvalidCredentials));
    let scopes = Scopes::of(
        &Username::parse("dora").unwrap(),
        "203.0.113.1".parse().unwrap(),
        None,
    );
    assert_eq!(stored_failures(&server, &scopes.account.key).await, 40);
    server.stop().await;
}

/// Tries `attempts` logins of `username` from `client_ip(n)`, the right
/// password and wrong ones in turn, each answered THROTTLED with `seconds`
/// to wait.
async fn all_throttled(
    server: &TestServer,
    username: &str,
    secret: &str,
    attempts: u32,
    client_ip: impl Fn(u32) -> String,
    seconds: u64,
) {
    for n in 0..attempts {
        let password = if n % 2 == 0 {
            secret.to_owned()
        } else {
            wrong(100 + n)
        };
        let response = login_with(server, username, &password, Protocol::Imap, &client_ip(n)).await;
        assert_throttled(&response, seconds);
    }
}

/// "For a block this replica has already seen, not even a database read":
/// once a pair is blocked, its attempts, with the right password or a
/// wrong one, are answered THROTTLED from memory: no read, no argon2. A
/// replica that has not seen the block reads it once, and then holds it in
/// memory too.
async fn a_block_this_replica_has_seen_is_answered_without_a_read(backend: Backend) {
    let server = TestServer::start_with(backend, limits(3, 1000, 1000)).await;
    let (_, secret) = issue_simple(&server, "ivan").await;
    fail_times(&server, "ivan", 3).await;
    let home = |_| "192.0.2.10".to_owned();
    let before = server.services.logins.stats();
    all_throttled(&server, "ivan", &secret, 20, home, 60).await;
    let after = server.services.logins.stats();
    assert_eq!(after.login_reads, before.login_reads, "no read");
    assert_eq!(after.argon2_verifications, before.argon2_verifications);

    let replica = server.replica_with(limits(3, 1000, 1000)).await;
    let before = replica.services.logins.stats();
    all_throttled(&replica, "ivan", &secret, 20, home, 60).await;
    let after = replica.services.logins.stats();
    assert_eq!(after.login_reads - before.login_reads, 1, "read once");
    assert_eq!(after.argon2_verifications, before.argon2_verifications);
    replica.stop().await;
    server.stop().await;
}

/// "A blocked login is refused ... before any password is checked: no
/// argon2", also when the block is read rather than remembered: an
/// account's block (which no replica keeps in memory, since a known source
/// is exempt from it, which only a read can tell) refuses each attempt
/// from a stranger's network after one read each, and no verification,
/// the right password included.
async fn a_throttled_answer_runs_no_argon2(backend: Backend) {
    let server = TestServer::start_with(backend, limits(1000, 1000, 3)).await;
    let (_, secret) = issue_simple(&server, "jonas").await;
    for n in 0..3u32 {
        let attacker = format!("203.0.113.{}", n + 1);
        let response = login_with(&server, "jonas", &wrong(n), Protocol::Imap, &attacker).await;
        assert_eq!(response.failure_reason(), FailureReason::InvalidCredentials);
    }
    let before = server.services.logins.stats();
    let stranger = |n| format!("198.51.100.{}", n + 1);
    all_throttled(&server, "jonas", &secret, 20, stranger, 60).await;
    let after = server.services.logins.stats();
    assert_eq!(
        after.argon2_verifications, before.argon2_verifications,
        "a throttled answer runs no argon2"
    );
    assert_eq!(after.login_reads - before.login_reads, 20, "one read each");
    server.stop().await;
}

/// "A throttled attempt writes nothing of its own ...; it appears in the
/// request log as `result=throttled`, and is audited coalesced": each
/// throttled attempt is one log line saying so, and none is a row of the
/// audit trail until the flush writes one row for them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_attempts_are_logged_as_such_and_audited_only_coalesced() {
    const ADDRESS: &str = "203.0.113.177";
    let logs = crate::common::logs::window();
    let server = TestServer::start_with(Backend::Sqlite, limits(3, 1000, 1000)).await;
    let (_, secret) = issue_simple(&server, "kira").await;
    for n in 0..3 {
        let response = login_with(&server, "kira", &wrong(n), Protocol::Imap, ADDRESS).await;
        assert_eq!(response.failure_reason(), FailureReason::InvalidCredentials);
    }
    let rows = failed_login_rows(&server, "%").await;
    assert_eq!(rows, (3, 0));
    all_throttled(&server, "kira", &secret, 10, |_| ADDRESS.to_owned(), 60).await;
    assert_eq!(
        failed_login_rows(&server, "%").await,
        rows,
        "no row of their own"
    );

    // This test's lines only: other tests log logins in parallel.
    let lines: Vec<String> = String::from_utf8_lossy(&logs.read())
        .lines()
        .filter(|line| line.contains(&format!(" client_ip={ADDRESS} ")))
        .map(str::to_owned)
        .collect();
    let with = |result: &str| {
        let field = format!(" result=\"{result}\" ");
        lines.iter().filter(|line| line.contains(&field)).count()
    };
    assert_eq!(lines.len(), 13, "{lines:#?}");
    assert_eq!(with("throttled"), 10, "{lines:#?}");
    assert_eq!(with("invalid_credentials"), 3, "{lines:#?}");

    server.services.logins.flush_repeats().await.unwrap();
    assert_eq!(failed_login_rows(&server, "throttled%").await, (1, 10));
    server.stop().await;
}
