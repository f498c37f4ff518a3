//! Issue 19's attacks on the throttle's own bookkeeping, each sent as an
//! outsider would (bounded, to 127.0.0.1) and asserted by counting rows,
//! argon2 runs and answers, on every backend.

use latchkey::grpc::pb::{FailureReason, Protocol};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    throttled_attempts_from_a_blocked_network_are_one_row,
    a_full_guess_memory_still_counts_a_stale_device_once,
);

/// Rows of throttled attempts in the audit trail, and the attempts they
/// count.
async fn throttled_rows(server: &TestServer) -> (i64, i64) {
    failed_login_rows(server, "throttled%").await
}

/// Finding 2: once a source /64 is blocked, 2,000 attempts for an unknown
/// user, each from a different address inside it, are all throttled with
/// no argon2, and the flush writes one row for them (it wrote one per
/// address: 20,000 rows from 20,000 attempts).
async fn throttled_attempts_from_a_blocked_network_are_one_row(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.throttle.source_limit = 5).await;
    let address = |n: u32| format!("2001:db8:77:1::{:x}", n + 1);
    for n in 0..5 {
        let response = login_with(
            &server,
            &format!("sprayed{n}"),
            &wrong_secret(n),
            Protocol::Imap,
            &address(0),
        )
        .await;
        assert_refused(&response, FailureReason::InvalidCredentials);
    }
    let argon2 = server.services.logins.stats().argon2_verifications;
    let mut throttled = 0;
    for n in 0..2_000 {
        let response = login_with(
            &server,
            "nobody-here",
            &wrong_secret(n),
            Protocol::Imap,
            &address(n),
        )
        .await;
        if response.failure_reason == FailureReason::Throttled as i32 {
            throttled += 1;
        }
    }
    assert_eq!(throttled, 2_000);
    assert_eq!(
        server.services.logins.stats().argon2_verifications,
        argon2,
        "a throttled attempt costs no argon2"
    );
    assert_eq!(
        throttled_rows(&server).await,
        (0, 0),
        "nothing before the flush"
    );
    server.services.logins.flush_repeats().await.unwrap();
    assert_eq!(throttled_rows(&server).await, (1, 2_000));
    server.services.logins.flush_repeats().await.unwrap();
    assert_eq!(throttled_rows(&server).await, (1, 2_000), "written once");
    server.stop().await;
}

/// Finding 3: wrong guesses for unknown accounts from many networks, each
/// network under every limit, fill the replica's memory of guesses (here
/// made 200 long, so the test sends 400 instead of 101,000). Then an
/// existing account's stale device starts repeating one wrong password,
/// and more of the flood follows: the device is counted once and costs one
/// argon2 (before, a full memory remembered nothing new and it was counted
/// on every attempt until it blocked its owner).
async fn a_full_guess_memory_still_counts_a_stale_device_once(backend: Backend) {
    let server =
        TestServer::start_with(backend, |config| config.throttle.remembered_guesses = 200).await;
    let (_, secret) = issue_simple(&server, "hugo").await;
    let flood = |from: u32, networks: u32| {
        let server = &server;
        async move {
            for network in from..from + networks {
                for n in 0..10 {
                    let response = login_with(
                        server,
                        &format!("ghost{network}-{n}"),
                        &wrong_secret(n),
                        Protocol::Imap,
                        &format!("2001:db8:99:{network:x}::1"),
                    )
                    .await;
                    assert_refused(&response, FailureReason::InvalidCredentials);
                }
            }
        }
    };
    flood(0, 40).await;
    let stats = server.services.logins.stats();
    assert!(stats.memory.guesses <= 100, "{stats:?}");

    let argon2 = server.services.logins.stats().argon2_verifications;
    let old_password = wrong_secret(77);
    let stale = || login_with(&server, "hugo", &old_password, Protocol::Imap, "192.0.2.90");
    for _ in 0..3 {
        assert_refused(&stale().await, FailureReason::InvalidCredentials);
    }
    flood(40, 40).await;
    let after_flood = server.services.logins.stats().argon2_verifications;
    for _ in 0..3 {
        assert_refused(&stale().await, FailureReason::InvalidCredentials);
    }
    let scopes = latchkey::domain::login::throttle::Scopes::of(
        &latchkey::domain::shared::username::Username::parse("hugo").unwrap(),
        "192.0.2.90".parse().unwrap(),
        None,
    );
    assert_eq!(
        stored_failures(&server, &scopes.pair.key).await,
        1,
        "counted once"
    );
    assert_eq!(
        server.services.logins.stats().argon2_verifications,
        after_flood,
        "its repeats after the second flood cost no argon2"
    );
    assert_eq!(
        after_flood - argon2,
        1 + 400,
        "one for the device, one per new guess"
    );
    // The owner signs in all along.
    assert!(
        login_with(&server, "hugo", &secret, Protocol::Imap, "192.0.2.90")
            .await
            .authenticated
    );
    server.stop().await;
}
