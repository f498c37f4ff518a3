//! Warm verifiers (issue 20): one argon2 per device for the whole fleet,
//! across replicas and restarts, and never at the cost of a rule. Each
//! test counts argon2 runs (the server's own counter) per process, on
//! every backend; "a restart" is a fresh server process on the same
//! database, which starts with an empty cache, as a restarted one does.

use latchkey::config::Config;
use latchkey::grpc::pb::{
    DisableAccountRequest, FailureReason, Protocol, RevokeAppPasswordRequest,
    SuspendAppPasswordRequest,
};
use sea_orm::{ConnectionTrait, Statement};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer, TEST_ARGON2};
use crate::common::support::*;

backend_tests!(
    one_argon2_per_device_across_replicas_and_restarts,
    a_verifier_under_another_key_never_matches_and_is_replaced,
    revoke_suspend_and_disable_hold_at_once_on_a_warm_replica,
    a_wrong_password_never_writes_a_verifier,
    a_rehash_drops_the_verifier,
    a_burst_right_after_a_restart_costs_no_argon2,
);

/// A key file of 32 bytes in `dir`, the same for every replica given it.
fn key_file(dir: &std::path::Path, byte: u8) -> std::path::PathBuf {
    let path = dir.join(format!("warm-{byte}.key"));
    std::fs::write(&path, [byte; 32]).unwrap();
    path
}

fn with_key(path: &std::path::Path) -> impl FnOnce(&mut Config) + '_ {
    move |config: &mut Config| config.verified_cache.key_file = Some(path.to_owned())
}

/// Signs in once with each device's secret through `server`; every one
/// must succeed. Returns the argon2 runs it cost there.
async fn sign_in_all(server: &TestServer, devices: &[(String, String)]) -> u64 {
    let before = argon2_runs(server);
    for (username, secret) in devices {
        let response = login_with(server, username, secret, Protocol::Imap, "192.0.2.10").await;
        assert!(response.authenticated, "{username}: {response:?}");
    }
    server.services.logins.flush_usage().await.unwrap();
    argon2_runs(server) - before
}

async fn devices(server: &TestServer, count: usize) -> Vec<(String, String)> {
    let mut devices = Vec::new();
    for n in 0..count {
        let username = format!("device{n}");
        let (_, secret) = issue_simple(server, &username).await;
        devices.push((username, secret));
    }
    devices
}

/// The issue's measurement: 40 devices (here 10) sign in through A, then
/// B, then both "restart" and each signs in through A and B again. Before:
/// one argon2 per login (160 for 40 devices); now one per device.
async fn one_argon2_per_device_across_replicas_and_restarts(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), 1);
    let a = TestServer::start_with(backend, with_key(&key)).await;
    let b = a.replica_with(with_key(&key)).await;
    let devices = devices(&a, 10).await;
    let mut runs = sign_in_all(&a, &devices).await;
    assert_eq!(runs, 10, "each device's first login");
    runs += sign_in_all(&b, &devices).await;
    assert_eq!(
        b.services.logins.stats().warm_hits,
        10,
        "each from its verifier"
    );
    b.stop().await;
    let a_again = a.replica_with(with_key(&key)).await;
    let b_again = a.replica_with(with_key(&key)).await;
    runs += sign_in_all(&a_again, &devices).await;
    runs += sign_in_all(&b_again, &devices).await;
    assert_eq!(runs, 10, "40 logins of 10 devices over 4 processes");
    // Without the key, a fresh process pays argon2 for every device.
    let cold = a.replica_with(|_| {}).await;
    assert_eq!(sign_in_all(&cold, &devices).await, 10);
    for server in [a_again, b_again, cold] {
        server.stop().await;
    }
    a.stop().await;
}

/// A verifier made under one key never matches under another (a dump of
/// the database with a verifier checks nothing without the key): the
/// device pays one argon2 on the replica with the other key, which then
/// replaces the verifier (a rotation: the new key's replicas are warm
/// again after one argon2 per device).
async fn a_verifier_under_another_key_never_matches_and_is_replaced(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (key_file(dir.path(), 1), key_file(dir.path(), 2));
    let a = TestServer::start_with(backend, with_key(&old)).await;
    let devices = devices(&a, 3).await;
    assert_eq!(sign_in_all(&a, &devices).await, 3);
    let rotated = a.replica_with(with_key(&new)).await;
    assert_eq!(
        sign_in_all(&rotated, &devices).await,
        3,
        "old verifiers ignored"
    );
    rotated.stop().await;
    let after = a.replica_with(with_key(&new)).await;
    assert_eq!(
        sign_in_all(&after, &devices).await,
        0,
        "replaced under the new key"
    );
    after.stop().await;
    a.stop().await;
}

/// Revoking, suspending and disabling through one replica are exact at
/// once on another whose verifier for the device is fresh: the row is
/// read on every login and a verifier only replaces argon2 for a login
/// that would succeed, so each refusal costs its one argon2 like any
/// failure.
async fn revoke_suspend_and_disable_hold_at_once_on_a_warm_replica(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), 1);
    let a = TestServer::start_with(backend, with_key(&key)).await;
    let mut issued = Vec::new();
    for username in ["revoked", "suspended", "disabled"] {
        let (name, secret) = issue_simple(&a, username).await;
        issued.push((username.to_owned(), name, secret));
    }
    let devices: Vec<_> = issued
        .iter()
        .map(|(u, _, s)| (u.clone(), s.clone()))
        .collect();
    sign_in_all(&a, &devices).await;
    let b = a.replica_with(with_key(&key)).await;
    assert_eq!(sign_in_all(&b, &devices).await, 0, "warm on B");

    let mut issuer = a.app_passwords();
    issuer
        .revoke_app_password(RevokeAppPasswordRequest {
            name: issued[0].1.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    issuer
        .suspend_app_password(SuspendAppPasswordRequest {
            name: issued[1].1.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    a.accounts()
        .disable_account(DisableAccountRequest {
            name: "accounts/disabled".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = argon2_runs(&b);
    let refused = [
        FailureReason::Revoked,
        FailureReason::Suspended,
        FailureReason::AccountDisabled,
    ];
    for ((username, secret), reason) in devices.iter().zip(refused) {
        let response = login_with(&b, username, secret, Protocol::Imap, "192.0.2.11").await;
        assert_refused(&response, reason);
    }
    assert_eq!(argon2_runs(&b) - before, 3, "each refusal pays its argon2");
    b.stop().await;
    a.stop().await;
}

/// The warm verifier column of `username`'s one password.
async fn stored_verifier(server: &TestServer, username: &str) -> Option<String> {
    let db = server.database.connect().await;
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT p.warm_verifier FROM app_password p JOIN account a ON a.id = p.account_id \
                 WHERE a.username = '{username}'"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    let verifier = row.try_get_by_index::<Option<String>>(0).unwrap();
    db.close().await.unwrap();
    verifier
}

/// Wrong passwords, many and repeated, never write or refresh a verifier.
async fn a_wrong_password_never_writes_a_verifier(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), 1);
    let a = TestServer::start_with(backend, with_key(&key)).await;
    let (_, secret) = issue_simple(&a, "wendy").await;
    for n in 0..4 {
        let response =
            login_with(&a, "wendy", &wrong_secret(n), Protocol::Imap, "192.0.2.12").await;
        assert_refused(&response, FailureReason::InvalidCredentials);
    }
    a.services.logins.flush_usage().await.unwrap();
    assert_eq!(stored_verifier(&a, "wendy").await, None);
    sign_in_all(&a, &[("wendy".to_owned(), secret)]).await;
    let verifier = stored_verifier(&a, "wendy").await.unwrap();
    assert!(
        verifier.starts_with("v1:"),
        "a key id and an HMAC, no secret"
    );
    a.stop().await;
}

/// A re-hash (raised argon2 parameters) drops the verifier: it covers the
/// stored hash. The device pays one argon2 after the re-hash, then is warm
/// again.
async fn a_rehash_drops_the_verifier(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), 1);
    let a = TestServer::start_with(backend, with_key(&key)).await;
    let devices = devices(&a, 2).await;
    assert_eq!(sign_in_all(&a, &devices).await, 2);
    let raised = |config: &mut Config| {
        config.verified_cache.key_file = Some(key.clone());
        config.argon2.memory_kib = TEST_ARGON2.memory_kib * 2;
    };
    // Warm, and re-hashed with the raised parameters.
    let b = a.replica_with(raised).await;
    assert_eq!(sign_in_all(&b, &devices).await, 0);
    b.stop().await;
    let c = a.replica_with(raised).await;
    assert_eq!(
        sign_in_all(&c, &devices).await,
        2,
        "the old verifier covers the old hash"
    );
    c.stop().await;
    let d = a.replica_with(raised).await;
    assert_eq!(sign_in_all(&d, &devices).await, 0, "warm again");
    d.stop().await;
    a.stop().await;
}

/// The restart burst: 200 known devices sign in at once on a process that
/// has just started. All are served, with no argon2 (before: every one
/// paid argon2, and a fifth of a 1,000-login burst was refused).
async fn a_burst_right_after_a_restart_costs_no_argon2(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), 1);
    let a = TestServer::start_with(backend, with_key(&key)).await;
    let devices = devices(&a, 200).await;
    assert_eq!(sign_in_all(&a, &devices).await, 200);
    let restarted = a.replica_with(with_key(&key)).await;
    let burst = devices.iter().map(|(username, secret)| {
        let mut client = restarted.auth();
        let request = login_request(username, secret, Protocol::Imap, "192.0.2.13");
        async move { client.authenticate(request).await }
    });
    let answers = futures::future::join_all(burst).await;
    let served = answers
        .iter()
        .filter(|answer| answer.as_ref().is_ok_and(|a| a.get_ref().authenticated))
        .count();
    assert_eq!(served, 200);
    assert_eq!(argon2_runs(&restarted), 0);
    restarted.stop().await;
    a.stop().await;
}
