//! The hashing pool refuses at once when its queue is full, instead of
//! letting work (and argon2 memory) pile up, and nothing is counted then.

use latchkey::domain::secrets::hashing::HashParams;
use latchkey::domain::secrets::pool::HashPoolConfig;
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
                .map(|_| ())
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
    assert_eq!(server.services.logins.stats().hash_pool_queued, 0);

    // Once the burst is over, logins work again.
    assert!(login(&server, "busy", &secret).await.authenticated);
    server.stop().await;
}
