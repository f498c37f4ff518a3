//! The hashing pool refuses at once when its queue is full, instead of
//! letting work (and argon2 memory) pile up, and nothing is counted then:
//! no failure stored or audited, no argon2 run.

use latchkey::domain::login::throttle::Scopes;
use latchkey::domain::secrets::hashing::HashParams;
use latchkey::domain::secrets::pool::HashPoolConfig;
use latchkey::domain::shared::username::Username;
use latchkey::grpc::pb::Protocol;
use tonic::Code;

use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_refused_at_once_and_recovers() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.argon2 = HashParams {
            memory_kib: 16 * 1024,
            iterations: 3,
            parallelism: 1,
        };
        config.hash_pool = HashPoolConfig {
            workers: 1,
            queue: 2,
            ..HashPoolConfig::default()
        };
    })
    .await;
    let (_, secret) = issue_simple(&server, "busy").await;
    let before = server.services.logins.stats();
    let rows_before = failed_login_rows(&server, "invalid_credentials").await.0;
    // Even attempts carry the right password, odd ones a wrong one.
    let attempts = (0..30u32).map(|n| {
        let mut client = server.auth();
        let password = if n % 2 == 0 {
            secret.clone()
        } else {
            wrong_secret(n)
        };
        async move {
            let ip = format!("198.51.100.{n}");
            client
                .authenticate(login_request("busy", &password, Protocol::Imap, &ip))
                .await
                .map(|response| response.into_inner().authenticated)
                .map_err(|status| status.code())
        }
    });
    let results = futures::future::join_all(attempts).await;
    let refused = results
        .iter()
        .filter(|r| **r == Err(Code::ResourceExhausted))
        .count();
    let answered = results.iter().filter(|r| r.is_ok()).count();
    assert!(refused > 0, "a queue of 2 took 30 at once: {results:?}");
    assert!(answered > 0, "{results:?}");
    assert_eq!(
        refused + answered,
        30,
        "only answers or RESOURCE_EXHAUSTED: {results:?}"
    );
    let right = |n: &usize| n % 2 == 0;
    for (n, result) in results.iter().enumerate() {
        if let Ok(authenticated) = result {
            assert_eq!(*authenticated, right(&n), "attempt {n}: {results:?}");
        }
    }
    let wrong_answered = results
        .iter()
        .enumerate()
        .filter(|(n, r)| !right(n) && r.is_ok())
        .count();

    // Nothing is counted for a refused attempt: the failures stored and
    // audited are the wrong passwords answered, and every answer was one
    // argon2 run or one verified-secret cache hit, no refusal either.
    let after = server.services.logins.stats();
    let runs = after.argon2_verifications - before.argon2_verifications;
    let hits = after.cache_hits - before.cache_hits;
    assert_eq!(runs + hits, answered as u64, "{results:?}");
    assert_eq!(
        failed_login_rows(&server, "invalid_credentials").await.0 - rows_before,
        wrong_answered as i64
    );
    let account = Scopes::of(
        &Username::parse("busy").unwrap(),
        "198.51.100.1".parse().unwrap(),
        None,
    )
    .account;
    assert_eq!(
        stored_failures(&server, &account.key).await,
        wrong_answered as i64
    );
    assert_eq!(server.services.logins.stats().hash_pool_queued, 0);

    // Once the burst is over, logins work again.
    assert!(login(&server, "busy", &secret).await.authenticated);
    server.stop().await;
}
