//! Last-used fields and use counts are coalesced: written at most once per
//! interval per app password, off the request path, and flushed at stop.

use std::time::Duration;

use latchkey::domain::shared::time::Clock;
use latchkey::grpc::pb::{AppPassword, GetAppPasswordRequest, Protocol};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    usage_is_deferred_then_flushed_at_stop,
    usage_is_flushed_every_interval,
    older_usage_never_overwrites_newer,
    the_client_that_last_signed_in_is_shown,
    two_replicas_flushing_the_same_passwords_at_once_never_deadlock
);

const AN_HOUR: u64 = 3600;

async fn fetch(server: &TestServer, name: &str) -> AppPassword {
    server
        .app_passwords()
        .get_app_password(GetAppPasswordRequest {
            name: name.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn usage_is_deferred_then_flushed_at_stop(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.usage.flush_interval_secs = AN_HOUR).await;
    let (name, secret) = issue_simple(&server, "uma").await;

    // The first use is audited, so it is written at once.
    assert!(login(&server, "uma", &secret).await.authenticated);
    let first = fetch(&server, &name).await;
    assert_eq!(first.use_count, 1);
    assert_eq!(first.last_use_client_ip, "192.0.2.10");

    // Later uses from a known network wait for the flush.
    for _ in 0..4 {
        server.clock.advance(Duration::from_secs(5));
        assert!(login(&server, "uma", &secret).await.authenticated);
    }
    server.clock.advance(Duration::from_secs(5));
    let last = login_with(&server, "uma", &secret, Protocol::Smtp, "192.0.2.77").await;
    assert!(last.authenticated);
    assert_eq!(fetch(&server, &name).await, first, "nothing written yet");

    // A second replica reads what the first one wrote when it stopped.
    let reader = server.replica_with(|_| {}).await;
    let database = server.stop().await;
    let flushed = fetch(&reader, &name).await;
    assert_eq!(flushed.use_count, 6);
    assert_eq!(flushed.last_use_client_ip, "192.0.2.77");
    assert_eq!(flushed.last_use_protocol(), Protocol::Smtp);
    let moved = flushed.last_use_time.unwrap().seconds - first.last_use_time.unwrap().seconds;
    assert_eq!(moved, 25);
    reader.stop().await;
    drop(database);
}

/// The flush follows the server's clock: nothing is written until the
/// clock has moved one interval, and then all of it is.
async fn usage_is_flushed_every_interval(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.usage.flush_interval_secs = 60).await;
    let (name, secret) = issue_simple(&server, "ulf").await;
    for _ in 0..3 {
        assert!(login(&server, "ulf", &secret).await.authenticated);
    }
    // The first use is audited and so written at once; the others wait.
    assert_eq!(fetch(&server, &name).await.use_count, 1);
    // Every background task has seen the move (one due now has run).
    assert!(
        server
            .clock
            .advance_and_settle(Duration::from_secs(59), Duration::from_secs(10))
            .await
    );
    assert_eq!(fetch(&server, &name).await.use_count, 1, "flushed early");
    server.clock.advance(Duration::from_secs(1));
    let flushed = "usage flushed once the clock passed the interval";
    eventually(flushed, Duration::from_secs(10), async || {
        (fetch(&server, &name).await.use_count == 3).then_some(())
    })
    .await;
    server.stop().await;
}

/// Replicas flush in any order: the count adds up, and the last-used fields
/// keep the most recent login, whichever replica wrote last.
async fn older_usage_never_overwrites_newer(backend: Backend) {
    let early = TestServer::start_with(backend, |c| c.usage.flush_interval_secs = AN_HOUR).await;
    let late = early
        .replica_with(|c| c.usage.flush_interval_secs = AN_HOUR)
        .await;
    let (name, secret) = issue_simple(&early, "ursula").await;
    assert!(login(&early, "ursula", &secret).await.authenticated);

    early.clock.advance(Duration::from_secs(10));
    late.clock.set(early.clock.now());
    late.clock.advance(Duration::from_secs(10));
    assert!(
        login_with(&early, "ursula", &secret, Protocol::Imap, "192.0.2.1")
            .await
            .authenticated
    );
    assert!(
        login_with(&late, "ursula", &secret, Protocol::Smtp, "192.0.2.2")
            .await
            .authenticated
    );
    assert_eq!(late.services.logins.flush_usage().await.unwrap(), 1);
    assert_eq!(early.services.logins.flush_usage().await.unwrap(), 1);

    let stored = fetch(&early, &name).await;
    assert_eq!(stored.use_count, 3);
    assert_eq!(stored.last_use_client_ip, "192.0.2.2");
    assert_eq!(stored.last_use_protocol(), Protocol::Smtp);
    late.stop().await;
    early.stop().await;
}

/// A client's self-description (IMAP ID, User-Agent) is shown with the last
/// use, so its owner recognises it; a bad one is refused before anything.
async fn the_client_that_last_signed_in_is_shown(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (name, secret) = issue_simple(&server, "cleo").await;
    let mut request = login_request("cleo", &secret, Protocol::Imap, "192.0.2.8");
    request.client_id = "Thunderbird 115.3".into();
    let answer = server.auth().authenticate(request.clone()).await.unwrap();
    assert!(answer.into_inner().authenticated);
    // The first use is written at once.
    assert_eq!(
        fetch(&server, &name).await.last_use_client,
        "Thunderbird 115.3"
    );

    for bad in ["Thunder\nbird", &"x".repeat(129)] {
        request.client_id = bad.to_owned();
        let status = server
            .auth()
            .authenticate(request.clone())
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["client_id"]);
    }
    server.stop().await;
}

/// Two replicas flush usage of the same passwords at the same moment, each
/// batch in another order (a replica's buffer is a hash map, whose order
/// differs from replica to replica). Each batch is written in the order of
/// the passwords' ids, so the two transactions lock rows in the same order
/// and neither waits for the other in a cycle: no deadlock, every count
/// written.
async fn two_replicas_flushing_the_same_passwords_at_once_never_deadlock(backend: Backend) {
    use latchkey::domain::login::model::Usage;
    use latchkey::domain::login::store::UsageStore;
    use latchkey::domain::login::usage::PendingUse;
    use latchkey::store::SqlStore;

    const PASSWORDS: usize = 64;
    const ROUNDS: u32 = 25;
    let server = TestServer::start(backend).await;
    let mut ids = Vec::new();
    for i in 0..PASSWORDS {
        let (name, _) = issue_simple(&server, &format!("flusher{i}")).await;
        let id = name.rsplit('/').next().unwrap();
        ids.push(uuid::Uuid::parse_str(id).unwrap());
    }
    let config = latchkey::store::PoolConfig::default();
    let (one, two) = (
        SqlStore::connect(&server.database.url, config)
            .await
            .unwrap(),
        SqlStore::connect(&server.database.url, config)
            .await
            .unwrap(),
    );
    let batch = |order: &[uuid::Uuid]| -> Vec<(uuid::Uuid, PendingUse)> {
        order
            .iter()
            .map(|id| {
                let usage = Usage {
                    at: server.clock.now(),
                    client_ip: "192.0.2.40".parse().unwrap(),
                    protocol: latchkey::domain::shared::protocol::Protocol::Imap,
                    client: None,
                };
                (*id, PendingUse::one(usage, None))
            })
            .collect()
    };
    let forward = batch(&ids);
    let mut reversed = ids.clone();
    reversed.reverse();
    let backward = batch(&reversed);
    let mut failures = Vec::new();
    for _ in 0..ROUNDS {
        let (a, b) = tokio::join!(one.record_uses(&forward), two.record_uses(&backward));
        failures.extend(a.err().into_iter().chain(b.err()).map(|e| format!("{e:?}")));
    }
    assert!(
        failures.is_empty(),
        "{} of {} flushes failed: {:?}",
        failures.len(),
        2 * ROUNDS,
        failures.first()
    );
    for name in [0, PASSWORDS - 1].map(|i| format!("accounts/flusher{i}/appPasswords/{}", ids[i])) {
        assert_eq!(fetch(&server, &name).await.use_count, i64::from(2 * ROUNDS));
    }
    one.close().await.unwrap();
    two.close().await.unwrap();
    server.stop().await;
}
