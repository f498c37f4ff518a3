//! Failover with lag (issue 23): a real primary and a real streaming
//! standby, started by the test on free ports. The standby stops receiving
//! WAL (the primary's walsender stopped), latchkey writes on, the primary
//! dies, the standby is promoted and takes over the one address latchkey
//! knows, and latchkey writes again: the new primary hands out the lost
//! sequence numbers again. Every watcher must then either have received
//! every event of the surviving history after its place, or have been told
//! to resync (FEED_RESYNC_REQUIRED): never neither. Asserted by comparing
//! what each watcher got with what the promoted database holds.

use std::time::Duration;

use latchkey::domain::audit::ResumeToken;
use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::audit_service_client::AuditServiceClient;
use latchkey::grpc::pb::{AuditEventType, WatchEventsRequest, WatchEventsResponse};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tonic::{Code, Status, Streaming};

use crate::common::harness::{TestDatabase, TestServer};
use crate::common::link::{target_of, through, FaultyLink};
use crate::common::postgres::PgCluster;
use crate::common::processes::signal;
use crate::common::support::*;

/// How long the test waits for what it expects next (a liveness bound,
/// never what is asserted).
const PATIENCE: Duration = Duration::from_secs(30);

/// An event as both sides can name it: its type and its app password.
type Named = (i32, String);

/// The feed events (issues and revocations) after `after` that `db`
/// holds, in feed order.
async fn surviving(db: &DatabaseConnection, after: u64) -> Vec<Named> {
    let rows = db
        .query_all(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT event_type, username, app_password_id::text AS id FROM audit_event \
                 WHERE seq > {after} AND event_type IN ('app_password_issued', 'app_password_revoked') \
                 ORDER BY seq"
            ),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get("", "event_type").unwrap();
            let username: String = row.try_get("", "username").unwrap();
            let id: String = row.try_get("", "id").unwrap();
            let kind = match kind.as_str() {
                "app_password_issued" => AuditEventType::AppPasswordIssued,
                _ => AuditEventType::AppPasswordRevoked,
            };
            (
                kind as i32,
                format!("accounts/{username}/appPasswords/{id}"),
            )
        })
        .collect()
}

/// The feed's head as `db` holds it.
async fn head(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            "SELECT last_seq FROM event_feed WHERE id = 1",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "last_seq").unwrap()
}

fn watched() -> WatchEventsRequest {
    WatchEventsRequest {
        types: vec![
            AuditEventType::AppPasswordIssued as i32,
            AuditEventType::AppPasswordRevoked as i32,
        ],
        ..WatchEventsRequest::default()
    }
}

/// One WatchEvents stream: what it received, from which place.
struct Watcher {
    stream: Streaming<WatchEventsResponse>,
    /// The sequence number of the place it started from.
    from: u64,
    token: String,
    received: Vec<Named>,
}

impl Watcher {
    async fn open(server: &TestServer, resume_token: &str) -> Result<Self, Status> {
        let mut stream = AuditServiceClient::new(server.as_role(Role::Operator))
            .watch_events(WatchEventsRequest {
                resume_token: resume_token.to_owned(),
                ..watched()
            })
            .await?
            .into_inner();
        let first = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("the first message comes")?
            .expect("the stream starts with a token");
        let from = ResumeToken::decode(&first.resume_token).unwrap().seq;
        Ok(Self {
            stream,
            from,
            token: first.resume_token,
            received: Vec::new(),
        })
    }

    /// The next message: Ok(false) for a checkpoint, Ok(true) for an event,
    /// Err with the status that ended the stream.
    async fn step(&mut self) -> Result<bool, Status> {
        let message = tokio::time::timeout(PATIENCE, self.stream.message())
            .await
            .map_err(|_| Status::deadline_exceeded("nothing came within the patience"))??
            .ok_or_else(|| Status::unknown("the stream ended without a status"))?;
        self.token = message.resume_token;
        let Some(event) = message.audit_event else {
            return Ok(false);
        };
        self.received.push((event.r#type, event.app_password));
        Ok(true)
    }

    /// Reads until it has `count` more events.
    async fn take(&mut self, count: usize) {
        let goal = self.received.len() + count;
        while self.received.len() < goal {
            self.step().await.expect("the stream delivers");
        }
    }

    /// Reads on until the stream either ends (its status) or has received
    /// exactly the surviving history after its place (`None`); fails when
    /// it does neither.
    async fn outcome(&mut self, db: &DatabaseConnection) -> Option<Status> {
        loop {
            let expected = surviving(db, self.from).await;
            if self.received == expected {
                return None;
            }
            match self.step().await {
                Ok(_) => continue,
                Err(status) if status.code() == Code::DeadlineExceeded => panic!(
                    "a watcher from {} was neither told to resync nor given the surviving history: received {:?}, surviving {:?}",
                    self.from, self.received, expected
                ),
                Err(status) => return Some(status),
            }
        }
    }
}

/// Told to resync: FAILED_PRECONDITION with FEED_RESYNC_REQUIRED.
fn assert_resync(status: &Status, who: &str) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{who}: {status:?}");
    assert_eq!(
        reason_of(status),
        "FEED_RESYNC_REQUIRED",
        "{who}: {status:?}"
    );
}

/// Issues an app password for `username` and revokes it, retrying each
/// while the database is changing hands; two feed events.
async fn issue_and_revoke(server: &TestServer, username: &str) {
    use latchkey::grpc::pb::RevokeAppPasswordRequest;
    let issued = eventually("an issue", PATIENCE, async || {
        server
            .app_passwords()
            .issue_app_password(issue_request(
                username,
                "Phone",
                &[latchkey::grpc::pb::Protocol::Imap],
            ))
            .await
            .ok()
    })
    .await
    .into_inner();
    let name = issued.app_password.unwrap().name;
    eventually("a revoke", PATIENCE, async || {
        server
            .app_passwords()
            .revoke_app_password(RevokeAppPasswordRequest {
                name: name.clone(),
                reason: String::new(),
            })
            .await
            .ok()
    })
    .await;
}

/// Superuser SQL on `cluster`'s maintenance database.
async fn admin(cluster: &PgCluster) -> DatabaseConnection {
    sea_orm::Database::connect(cluster.url("postgres"))
        .await
        .unwrap()
}

async fn one_text(db: &DatabaseConnection, sql: &str) -> String {
    let row = db
        .query_one(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .unwrap();
    row.try_get_by_index::<String>(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_loses_events_tells_every_watcher_to_resync_or_loses_nothing() {
    let Some(mut primary) = PgCluster::start().await else {
        return;
    };
    primary.create_database("latchkey").await;
    let mut standby = primary.standby().await;
    // The one stable address latchkey is given, as a moving IP, Patroni's
    // proxy or pgbouncer would give it.
    let address = FaultyLink::to(target_of(&primary.url("latchkey"))).await;
    let server = TestServer::start_on(
        TestDatabase::at(through(&primary.url("latchkey"), address.addr)),
        |_| {},
    )
    .await;

    // Before: two watchers from the newest event.
    let mut open = Watcher::open(&server, "").await.unwrap();
    let mut left = Watcher::open(&server, "").await.unwrap();

    // A: replicated. Wait until the standby has replayed it all.
    for i in 0..3 {
        issue_and_revoke(&server, &format!("a{i}")).await;
    }
    open.take(6).await;
    left.take(6).await;
    let replicated_token = open.token.clone();
    let primary_admin = admin(&primary).await;
    let standby_admin = admin(&standby).await;
    let written = one_text(&primary_admin, "SELECT pg_current_wal_lsn()::text").await;
    eventually("the standby replays A", PATIENCE, async || {
        let sql = format!("SELECT (pg_last_wal_replay_lsn() >= '{written}'::pg_lsn)::text");
        (one_text(&standby_admin, &sql).await == "true").then_some(())
    })
    .await;

    // The standby falls behind: the primary's walsender stops.
    let walsender = one_text(&primary_admin, "SELECT pid::text FROM pg_stat_replication").await;
    signal("STOP", &walsender);

    // B: acknowledged, streamed to the watchers, never replicated.
    for i in 0..5 {
        issue_and_revoke(&server, &format!("b{i}")).await;
    }
    open.take(10).await;
    left.take(10).await;
    let lost_token = left.token.clone();
    drop(left);
    let latchkey_on_primary = primary.url("latchkey");
    let primary_db = sea_orm::Database::connect(&latchkey_on_primary)
        .await
        .unwrap();
    let head_before = head(&primary_db).await;
    drop(primary_db);
    drop(primary_admin);

    // The primary dies; the standby is promoted and takes the address.
    primary.kill();
    let promoted = one_text(&standby_admin, "SELECT pg_promote(true, 60)::text").await;
    assert_eq!(promoted, "true", "the standby was promoted");
    address.move_to(target_of(&standby.url("latchkey")));
    let new_primary = sea_orm::Database::connect(standby.url("latchkey"))
        .await
        .unwrap();
    let head_after = head(&new_primary).await;
    assert!(
        head_after < head_before,
        "the standby lost events: its head {head_after}, the primary's {head_before}"
    );

    // C: more than was lost, so the lost numbers are handed out again.
    for i in 0..8 {
        issue_and_revoke(&server, &format!("c{i}")).await;
    }
    assert!(head(&new_primary).await > head_before);

    // The stream open across the failover had events that are gone: it
    // must be told.
    let status = open
        .outcome(&new_primary)
        .await
        .expect("a stream that received lost events is told to resync");
    assert_resync(&status, "the stream open across the failover");

    // A token of the lost history is refused the same way (at once, or as
    // the stream's end).
    match Watcher::open(&server, &lost_token).await {
        Err(status) => assert_resync(&status, "a token of the lost history"),
        Ok(mut resumed) => {
            let status = resumed
                .outcome(&new_primary)
                .await
                .expect("a token of the lost history is told to resync");
            assert_resync(&status, "a token of the lost history");
        }
    }

    // A token from before the fork resumes, and gets exactly the
    // surviving history after it.
    let mut replicated = Watcher::open(&server, &replicated_token)
        .await
        .expect("a token of the surviving history resumes");
    let ended = replicated.outcome(&new_primary).await;
    assert!(ended.is_none(), "{ended:?}");
    assert!(replicated.received.len() >= 16, "C, whole");

    // A new watcher without a token gets what follows, whole.
    let mut fresh = Watcher::open(&server, "").await.unwrap();
    issue_and_revoke(&server, "d0").await;
    let ended = fresh.outcome(&new_primary).await;
    assert!(ended.is_none(), "{ended:?}");
    assert_eq!(fresh.received.len(), 2);

    drop(new_primary);
    drop(standby_admin);
    server.stop().await;
    standby.halt();
}
