//! Replicas and deadlines: a revoke that returned holds on every replica at
//! once; a client's deadline is honoured and a cancelled request leaks
//! nothing.

use latchkey::domain::audit::event::Actor;
use std::time::{Duration, Instant};

use latchkey::domain::callers::model::Role;
use latchkey::domain::login::throttle::Scopes;
use latchkey::domain::secrets::hashing::HashParams;
use latchkey::domain::shared::username::Username;
use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use latchkey::grpc::pb::{DisableAccountRequest, FailureReason, ListAccountsRequest, Protocol};
use tonic::Code;

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(a_returned_revoke_holds_on_every_replica_at_once);

async fn a_returned_revoke_holds_on_every_replica_at_once(backend: Backend) {
    let first = TestServer::start(backend).await;
    let second = first.replica_with(|_| {}).await;
    for round in 0..10 {
        let (name, secret) = issue_simple(&first, &format!("replica{round}")).await;
        assert!(
            login(&second, &format!("replica{round}"), &secret)
                .await
                .authenticated
        );
        revoke(&first, name).await;
        // The very next login, on the other replica, is refused.
        let refused = login(&second, &format!("replica{round}"), &secret).await;
        assert_eq!(
            refused.failure_reason(),
            FailureReason::Revoked,
            "round {round}"
        );
    }
    // Disabling an account, likewise.
    let (_, secret) = issue_simple(&second, "disabled-everywhere").await;
    first
        .accounts()
        .disable_account(DisableAccountRequest {
            name: "accounts/disabled-everywhere".into(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let refused = login(&second, "disabled-everywhere", &secret).await;
    assert_eq!(refused.failure_reason(), FailureReason::AccountDisabled);
    second.stop().await;
    first.stop().await;
}

backend_tests!(concurrent_logins_of_many_accounts_each_get_their_own_answer);

/// Logins that arrive together are read together, in one statement; each
/// must still get the answer for its own account, password and protocol.
async fn concurrent_logins_of_many_accounts_each_get_their_own_answer(backend: Backend) {
    let server = TestServer::start(backend).await;
    const ACCOUNTS: usize = 24;
    let mut issued = Vec::new();
    for n in 0..ACCOUNTS {
        let username = format!("batch{n}");
        let (name, secret) = issue_simple(&server, &username).await;
        issued.push((username, name, secret));
    }
    let mut attempts = Vec::new();
    for (n, (username, name, secret)) in issued.iter().enumerate() {
        let neighbour = &issued[(n + 1) % ACCOUNTS].2;
        let ip = format!("198.51.100.{n}");
        for (password, protocol, expected) in [
            (secret.as_str(), Protocol::Imap, None),
            (
                secret.as_str(),
                Protocol::Pop3,
                Some(FailureReason::ProtocolNotAllowed),
            ),
            (
                neighbour.as_str(),
                Protocol::Imap,
                Some(FailureReason::InvalidCredentials),
            ),
            (
                &wrong_secret(n as u32),
                Protocol::Imap,
                Some(FailureReason::InvalidCredentials),
            ),
        ] {
            let mut client = server.auth();
            let request = login_request(username, password, protocol, &ip);
            attempts.push(async move {
                let answer = client.authenticate(request).await.unwrap().into_inner();
                (username, name, expected, answer)
            });
        }
    }
    for (username, name, expected, answer) in futures::future::join_all(attempts).await {
        match expected {
            None => {
                assert!(answer.authenticated, "{username}");
                assert_eq!(&answer.username, username);
                assert_eq!(&answer.app_password, name);
            }
            Some(reason) => {
                assert!(!answer.authenticated, "{username}");
                assert_eq!(answer.failure_reason(), reason, "{username}");
            }
        }
    }
    // The failures were written together too, and each counted once for
    // its own account (a success clears only its pair).
    for (n, (username, _, _)) in issued.iter().enumerate() {
        let ip = format!("198.51.100.{n}").parse().unwrap();
        let scopes = Scopes::of(&Username::parse(username).unwrap(), ip, None);
        assert_eq!(
            stored_failures(&server, &scopes.account.key).await,
            3,
            "{username}"
        );
    }
    server.stop().await;
}

backend_tests!(a_caller_revoked_elsewhere_is_refused_once_the_caller_cache_expires);

/// Callers, unlike app passwords, are cached for a short TTL: a replica
/// that did not revoke the caller refuses it once its copy is that old.
async fn a_caller_revoked_elsewhere_is_refused_once_the_caller_cache_expires(backend: Backend) {
    let first = TestServer::start(backend).await;
    let second = first.replica_with(|_| {}).await;
    let list = |server: &TestServer| {
        let mut accounts = server.accounts();
        async move {
            accounts
                .list_accounts(ListAccountsRequest::default())
                .await
                .map(|_| ())
                .map_err(|status| status.code())
        }
    };
    assert_eq!(list(&second).await, Ok(()));
    first
        .services
        .callers
        .revoke_caller("test-operator", &Actor::system("test"))
        .await
        .unwrap();
    assert_eq!(list(&first).await, Err(Code::Unauthenticated));
    let ttl = Duration::from_millis(crate::common::harness::test_config().caller_cache.ttl_ms);
    second.clock.advance(ttl - Duration::from_millis(1));
    assert_eq!(list(&second).await, Ok(()), "within the TTL");
    second.clock.advance(Duration::from_millis(1));
    assert_eq!(list(&second).await, Err(Code::Unauthenticated));
    second.stop().await;
    first.stop().await;
}

/// argon2 slow enough that a few milliseconds of deadline run out first.
const SLOW_ARGON2: HashParams = HashParams {
    memory_kib: 32 * 1024,
    iterations: 3,
    parallelism: 1,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_are_honoured_and_cancelled_requests_leak_nothing() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.argon2 = SLOW_ARGON2;
        config.database.max_connections = 2;
    })
    .await;
    let (_, secret) = issue_simple(&server, "hasty").await;

    // The burst goes over a connection of its own: many streams ended early
    // can make the HTTP/2 server close that connection (its reset-flood
    // protection), which is not what is tested here.
    let burst = server.new_connection_as(Role::Authenticator).await;
    let attempts = (0..40).map(|_| {
        let mut client = LegacyAuthServiceClient::new(burst.clone());
        let secret = secret.clone();
        async move {
            let mut request =
                tonic::Request::new(login_request("hasty", &secret, Protocol::Imap, "192.0.2.1"));
            // The header alone, as any gRPC client sends it: the server must
            // enforce it itself.
            request
                .metadata_mut()
                .insert("grpc-timeout", "3m".parse().unwrap());
            let started = Instant::now();
            let result = client.authenticate(request).await;
            (
                result.map(|_| ()).map_err(|status| status.code()),
                started.elapsed(),
            )
        }
    });
    let results = futures::future::join_all(attempts).await;
    for (result, elapsed) in &results {
        assert!(
            matches!(result, Err(Code::DeadlineExceeded | Code::Cancelled)),
            "a 3 ms deadline was not enforced: {result:?}"
        );
        assert!(*elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }

    // Nothing leaked: with two database connections in all, everything
    // still works, promptly.
    for _ in 0..20 {
        server
            .accounts()
            .list_accounts(ListAccountsRequest::default())
            .await
            .unwrap();
    }
    assert!(login(&server, "hasty", &secret).await.authenticated);
    server.stop().await;
}
