//! The verified-secret cache saves argon2 work for a secret seen before,
//! and only for logins that succeed.

use std::time::Duration;

use latchkey::grpc::pb::{FailureReason, Protocol};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(a_repeated_secret_skips_argon2_only_when_it_would_succeed);

async fn a_repeated_secret_skips_argon2_only_when_it_would_succeed(backend: Backend) {
    let server =
        TestServer::start_with(backend, |config| config.verified_cache.ttl_secs = 60).await;
    let (name, secret) = issue_simple(&server, "zoe").await;
    let runs = || server.services.logins.stats().argon2_verifications;

    let before = runs();
    assert!(login(&server, "zoe", &secret).await.authenticated);
    assert_eq!(runs(), before + 1, "the first login verifies");
    for _ in 0..5 {
        assert!(login(&server, "zoe", &secret).await.authenticated);
    }
    assert_eq!(runs(), before + 1, "repeats come from the cache");

    // A wrong password, or the right one where it would be refused, pays a
    // full verification: failures stay alike.
    assert!(!login(&server, "zoe", &wrong_secret(7)).await.authenticated);
    assert_eq!(runs(), before + 2);
    let refused = login_with(&server, "zoe", &secret, Protocol::Pop3, "192.0.2.10").await;
    assert_eq!(refused.failure_reason(), FailureReason::ProtocolNotAllowed);
    assert_eq!(runs(), before + 3);

    // Past the TTL, argon2 again.
    server.clock.advance(Duration::from_secs(61));
    assert!(login(&server, "zoe", &secret).await.authenticated);
    assert_eq!(runs(), before + 4);

    // The row is read on every login: a revoke is seen at once.
    revoke(&server, name).await;
    let refused = login(&server, "zoe", &secret).await;
    assert_eq!(refused.failure_reason(), FailureReason::Revoked);
    assert_eq!(runs(), before + 5, "a refused login is verified in full");
    server.stop().await;
}
