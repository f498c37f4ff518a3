//! Issue 19's attacks on the throttle's own bookkeeping, each sent as an
//! outsider would (bounded, to 127.0.0.1) and asserted by counting rows,
//! argon2 runs and answers, on every backend.

use latchkey::grpc::pb::{FailureReason, Protocol};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(throttled_attempts_from_a_blocked_network_are_one_row);

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
