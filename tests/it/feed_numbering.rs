//! Feed writes past one row lock (issue 23, PostgreSQL): a change's
//! transaction writes its feed events pending and holds no lock; a short
//! numbering transaction after the commit gives them their places
//! (`store/feed_numbering.rs`). What must hold, counted in the database
//! and in what watchers receive:
//!
//! - a writer whose transaction stays open holds up no other writer, and
//!   its events come after every event committed before its own commit;
//! - events a writer committed and never numbered (it stopped between the
//!   two; the test's own transaction plays that writer, leaving exactly the
//!   rows a killed replica leaves) are numbered by the replicas' sweep,
//!   each once, with no gap, in the order they were written, even with two
//!   replicas sweeping at once;
//! - the general ordering test (1,008 events from two replicas) is in
//!   `watch.rs` and runs here on PostgreSQL too.

use std::time::Duration;

use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::{AuditEventType, WatchEventsRequest};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;
use crate::watch::{all_types, toggle, Watcher};

/// A liveness bound, never what is asserted.
const PATIENCE: Duration = Duration::from_secs(20);

async fn count(db: &impl ConnectionTrait, sql: &str) -> i64 {
    db.query_one(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

/// Every feed event numbered, each place once, none missing from 1 to the
/// head: asserted on the database.
async fn assert_feed_whole(db: &DatabaseConnection) {
    assert_eq!(
        count(db, "SELECT count(*) FROM audit_event WHERE feed_pending").await,
        0,
        "nothing left pending"
    );
    let numbered = count(db, "SELECT count(*) FROM audit_event WHERE seq IS NOT NULL").await;
    let distinct = count(db, "SELECT count(DISTINCT seq) FROM audit_event").await;
    let head = count(db, "SELECT last_seq FROM event_feed WHERE id = 1").await;
    let highest = count(db, "SELECT COALESCE(max(seq), 0) FROM audit_event").await;
    assert_eq!(
        (numbered, distinct, highest),
        (head, head, head),
        "1..=head, each once"
    );
}

/// Writes `count` pending account-disabled events, for accounts
/// `{prefix}0`, `{prefix}1`, … in that order, as a change's transaction
/// does, in `txn`.
async fn write_pending(txn: &impl ConnectionTrait, prefix: &str, count: usize) {
    let rows: Vec<String> = (0..count)
        .map(|n| {
            format!("(0, 'account_disabled', 'stopped-replica', '{prefix}{n}', 'pending', TRUE)")
        })
        .collect();
    txn.execute_unprepared(&format!(
        "INSERT INTO audit_event (occurred_at, event_type, actor, username, detail, feed_pending) \
         VALUES {}",
        rows.join(", ")
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_test_postgres), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn an_open_writer_holds_up_no_one_and_a_stopped_one_is_numbered_by_the_sweep() {
    let server = TestServer::start(Backend::Postgres).await;
    let (name, _) = issue_simple(&server, "open").await;
    let mut watcher = Watcher::open(&server, Role::Operator, all_types()).await;
    let db = server.database.connect().await;

    // A writer of another replica, its event written and not committed.
    let open = db.begin().await.unwrap();
    write_pending(&open, "slow", 1).await;

    // Another change meanwhile is answered, and streamed, while that
    // transaction is still open: no lock of the feed is held by a writer.
    tokio::time::timeout(PATIENCE, revoke(&server, name))
        .await
        .expect("the revocation is not held up by the open transaction");
    let first = watcher.next().await;
    assert_eq!(first.r#type(), AuditEventType::AppPasswordRevoked);
    assert_eq!(
        count(&db, "SELECT count(*) FROM audit_event WHERE feed_pending").await,
        0,
        "an answered change's events are numbered when it is answered"
    );

    // The writer commits and stops before numbering: only its rows are
    // left. The replica's sweep numbers them, after the revocation.
    open.commit().await.unwrap();
    let second = watcher.next().await;
    assert_eq!(second.r#type(), AuditEventType::AccountDisabled);
    assert_eq!(second.actor, "stopped-replica");
    assert!(watcher.quiet_for(Duration::from_millis(300)).await);
    assert_feed_whole(&db).await;
    let revoke_seq = count(
        &db,
        "SELECT seq FROM audit_event WHERE event_type = 'app_password_revoked'",
    )
    .await;
    let stopped_seq = count(
        &db,
        "SELECT seq FROM audit_event WHERE actor = 'stopped-replica'",
    )
    .await;
    assert_eq!(
        stopped_seq,
        revoke_seq + 1,
        "the later commit, the later place"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_test_postgres), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn two_replicas_sweeping_at_once_number_a_stopped_writers_events_once_in_order() {
    const LEFT: usize = 500;
    let server = TestServer::start(Backend::Postgres).await;
    let replica = server.replica_with(|_| {}).await;
    let accounts = || WatchEventsRequest {
        types: vec![AuditEventType::AccountDisabled as i32],
        ..all_types()
    };
    let mut on_server = Watcher::open(&server, Role::Operator, accounts()).await;
    let mut on_replica = Watcher::open(&replica, Role::Notifier, accounts()).await;
    let db = server.database.connect().await;

    // A stopped writer's commit, and beside it live writers on both
    // replicas, whose own numbering runs meet the sweeps.
    let stopped = db.begin().await.unwrap();
    write_pending(&stopped, "stopped", LEFT).await;
    stopped.commit().await.unwrap();
    for n in 0..10 {
        let target = if n % 2 == 0 { &server } else { &replica };
        let username = format!("live{n}");
        issue_simple(target, &username).await;
        toggle(target, &username, 1).await;
    }

    let total = LEFT + 10;
    let (from_server, from_replica) = tokio::join!(on_server.take(total), on_replica.take(total));
    let stopped = |events: &[latchkey::grpc::pb::AuditEvent]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.actor == "stopped-replica")
            .map(|e| e.account.clone())
            .collect()
    };
    let expected: Vec<String> = (0..LEFT).map(|n| format!("accounts/stopped{n}")).collect();
    assert_eq!(
        stopped(&from_server),
        expected,
        "once each, in written order"
    );
    assert_eq!(stopped(&from_replica), expected);
    let live = from_server.iter().filter(|e| e.actor != "stopped-replica");
    assert_eq!(live.count(), 10, "and every live writer's event once");
    assert!(on_server.quiet_for(Duration::from_millis(300)).await);
    assert!(on_replica.quiet_for(Duration::from_millis(300)).await);
    assert_feed_whole(&db).await;
}
