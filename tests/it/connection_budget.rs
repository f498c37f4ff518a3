//! PostgreSQL's connection budget, said to the operator (issue 23): a
//! server that refuses connections for their number (SQLSTATE 53300) is
//! named as such at start instead of "pool timed out", and a replica whose
//! pool may outgrow the server's free connections warns at start. Both run
//! the real binary against the shared PostgreSQL, as an operator would.
//! The role the first test makes signs in without a password: the shared
//! server trusts local connections (the machine's setup, and CI's).

use std::process::Output;

use sea_orm::{ConnectionTrait, Database};

use crate::common::harness::{Backend, TestDatabase};

fn migrate(database_url: &str, max_connections: u32) -> Output {
    let max_connections = max_connections.to_string();
    crate::config::latchkey(
        &["migrate", "--database-url", database_url],
        &[
            ("LATCHKEY_DATABASE__MAX_CONNECTIONS", &max_connections),
            ("LATCHKEY_DATABASE__ACQUIRE_TIMEOUT", "1000"),
        ],
    )
}

/// `url` with its user replaced by `user` (no password: trust auth).
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let after = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    format!("{scheme}://{user}@{after}")
}

#[tokio::test]
#[cfg_attr(not(latchkey_test_postgres), ignore = "needs LATCHKEY_TEST_POSTGRES_URL")]
async fn a_refusal_for_the_number_of_connections_is_named_at_start() {
    let database = TestDatabase::create(Backend::Postgres).await;
    // A role's CONNECTION LIMIT is the same refusal as the server's
    // max_connections (53300), without filling the shared server.
    let role = format!("latchkey_budget_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(&database.url).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 0"))
        .await
        .unwrap();
    // Run where a panic cannot skip the role's removal.
    let url = as_user(&database.url, &role);
    let refused = tokio::task::spawn_blocking(move || migrate(&url, 4)).await;
    admin
        .execute_unprepared(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
    admin.close().await.unwrap();
    let refused = refused.unwrap();

    assert!(!refused.status.success(), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    for words in [
        "PostgreSQL refuses connections for their number (SQLSTATE 53300: too many \
         connections for role",
        "database.max_connections (4)",
        "replicas × 5",
        "docs/deploy.md, \"Connection budget\"",
    ] {
        assert!(said.contains(words), "{words:?} in {said}");
    }
    assert!(!said.contains("pool timed out"), "{said}");
}

#[tokio::test]
#[cfg_attr(not(latchkey_test_postgres), ignore = "needs LATCHKEY_TEST_POSTGRES_URL")]
async fn a_pool_larger_than_the_servers_room_is_warned_of_at_start() {
    let database = TestDatabase::create(Backend::Postgres).await;
    // No server has room for 100,000 more connections; 2 fit any.
    let large = migrate(&database.url, 100_000);
    let small = migrate(&database.url, 2);
    assert!(large.status.success(), "{large:?}");
    assert!(small.status.success(), "{small:?}");
    let warned = String::from_utf8_lossy(&large.stderr);
    for words in [
        "PostgreSQL has room for",
        "this replica may open 99999 more (database.max_connections = 100000)",
        "replicas × (database.max_connections + 1)",
    ] {
        assert!(warned.contains(words), "{words:?} in {warned}");
    }
    let quiet = String::from_utf8_lossy(&small.stderr);
    assert!(!quiet.contains("PostgreSQL has room for"), "{quiet}");
}

/// A database server that is down at start is named by what the network
/// said (issue 24), not by the pool's "pool timed out", which hid it.
#[tokio::test]
async fn a_database_down_at_start_is_named_by_what_refused_it() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for url in [
        format!("postgres://latchkey@127.0.0.1:{port}/latchkey"),
        format!("mysql://latchkey@127.0.0.1:{port}/latchkey"),
    ] {
        let refused = tokio::task::spawn_blocking(move || migrate(&url, 4))
            .await
            .unwrap();
        assert!(!refused.status.success(), "{refused:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("Connection refused"), "{said}");
        assert!(said.contains("hint:"), "{said}");
        assert!(!said.contains("pool timed out"), "{said}");
    }
}
