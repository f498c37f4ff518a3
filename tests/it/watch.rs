//! The change feed (issue 13): WatchEvents streams every change in commit
//! order, from every replica, resumable by token, within each role's
//! reach, with bounded memory for stalled watchers.

use std::collections::HashSet;
use std::time::Duration;

use latchkey::domain::callers::model::Role;
use latchkey::domain::shared::time::Clock;
use latchkey::grpc::pb::audit_service_client::AuditServiceClient;
use latchkey::grpc::pb::{
    AuditEvent, AuditEventType, DeleteAccountRequest, DisableAccountRequest, EnableAccountRequest,
    ResumeAppPasswordRequest, SuspendAppPasswordRequest, UpdateAppPasswordRequest,
    WatchEventsRequest, WatchEventsResponse,
};
use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
use tonic::transport::Endpoint;
use tonic::{Code, Streaming};
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::bearer::Bearer;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    a_watcher_sees_a_walk_in_order_and_resumes_without_loss_or_repeats,
    bad_watch_requests_are_invalid_and_change_nothing,
    roles_watch_only_their_reach,
    a_proxy_is_told_which_changed_not_why,
    two_replicas_writing_at_once_stream_every_event_once_in_order,
    a_later_sequence_waits_for_an_earlier_one_to_commit,
    a_stalled_watcher_costs_bounded_memory_and_then_gets_everything,
    watchers_are_limited_per_caller_and_per_replica,
    a_token_behind_retention_is_refused_and_streams_end_when_the_server_stops,
    a_token_of_another_history_must_resync_and_old_tokens_still_resume,
);

/// How long a test waits for an event it expects.
const PATIENCE: Duration = Duration::from_secs(20);

/// One open WatchEvents stream, and the last token it received.
pub struct Watcher {
    stream: Streaming<WatchEventsResponse>,
    pub token: String,
}

impl Watcher {
    pub async fn open(server: &TestServer, role: Role, request: WatchEventsRequest) -> Self {
        Self::try_open(server, role, request)
            .await
            .expect("WatchEvents")
    }

    pub async fn try_open(
        server: &TestServer,
        role: Role,
        request: WatchEventsRequest,
    ) -> Result<Self, tonic::Status> {
        let mut stream = AuditServiceClient::new(server.as_role(role))
            .watch_events(request)
            .await?
            .into_inner();
        let first = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("the first message comes at once")?
            .expect("the stream starts with a token");
        assert!(
            first.audit_event.is_none(),
            "the first message is a checkpoint"
        );
        assert!(!first.resume_token.is_empty());
        Ok(Self {
            stream,
            token: first.resume_token,
        })
    }

    /// The next event, skipping checkpoints (whose tokens it keeps).
    pub async fn next(&mut self) -> AuditEvent {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.stream.message())
                .await
                .expect("an event within the patience")
                .expect("the stream stays up")
                .expect("the stream does not end");
            self.token = message.resume_token;
            if let Some(event) = message.audit_event {
                return event;
            }
        }
    }

    /// The next `count` events.
    pub async fn take(&mut self, count: usize) -> Vec<AuditEvent> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.next().await);
        }
        events
    }

    /// Whether an event arrives within `wait` (for "nothing more comes").
    pub async fn quiet_for(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.message()).await {
                Err(_) => return true,
                Ok(Ok(Some(message))) => {
                    self.token = message.resume_token;
                    if message.audit_event.is_some() {
                        return false;
                    }
                }
                Ok(other) => panic!("the stream ended: {other:?}"),
            }
        }
    }
}

/// Resumes from `token` until the server refuses it, moving the clock on
/// between tries (housekeeping sleeps on the test's clock: a pass that
/// began before a jump sleeps from after it); the refusal.
async fn until_pruned(server: &TestServer, token: &str) -> tonic::Status {
    eventually("the token pruned", PATIENCE, async || {
        let resumed = Watcher::try_open(
            server,
            Role::Operator,
            WatchEventsRequest {
                resume_token: token.to_owned(),
                ..all_types()
            },
        )
        .await;
        if resumed.is_ok() {
            server.clock.advance(Duration::from_secs(2));
        }
        resumed.err()
    })
    .await
}

pub fn all_types() -> WatchEventsRequest {
    WatchEventsRequest::default()
}

fn types_of(events: &[AuditEvent]) -> Vec<AuditEventType> {
    events.iter().map(|e| e.r#type()).collect()
}

/// A walk through an account's life that writes one feed event per step
/// (plus failed logins, which are not in the feed); returns the types in
/// order.
pub async fn walk(server: &TestServer, username: &str) -> Vec<AuditEventType> {
    let (name, secret) = issue_simple(server, username).await;
    login(server, username, &secret).await;
    login(server, username, &wrong_secret(1)).await;
    let mut app_passwords = server.app_passwords();
    app_passwords
        .update_app_password(UpdateAppPasswordRequest {
            app_password: Some(latchkey::grpc::pb::AppPassword {
                name: name.clone(),
                display_name: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .unwrap();
    app_passwords
        .suspend_app_password(SuspendAppPasswordRequest {
            name: name.clone(),
            reason: "lost laptop".into(),
        })
        .await
        .unwrap();
    app_passwords
        .resume_app_password(ResumeAppPasswordRequest { name: name.clone() })
        .await
        .unwrap();
    revoke(server, name).await;
    let account = format!("accounts/{username}");
    let mut accounts = server.accounts();
    accounts
        .disable_account(DisableAccountRequest {
            name: account.clone(),
            reason: "audit".into(),
        })
        .await
        .unwrap();
    accounts
        .enable_account(EnableAccountRequest {
            name: account.clone(),
        })
        .await
        .unwrap();
    accounts
        .delete_account(DeleteAccountRequest { name: account })
        .await
        .unwrap();
    vec![
        AuditEventType::AppPasswordIssued,
        AuditEventType::AppPasswordFirstUse,
        AuditEventType::AppPasswordUpdated,
        AuditEventType::AppPasswordSuspended,
        AuditEventType::AppPasswordResumed,
        AuditEventType::AppPasswordRevoked,
        AuditEventType::AccountDisabled,
        AuditEventType::AccountEnabled,
        AuditEventType::AccountDeleted,
    ]
}

async fn a_watcher_sees_a_walk_in_order_and_resumes_without_loss_or_repeats(backend: Backend) {
    let server = TestServer::start(backend).await;
    let replica = server.replica_with(|_| {}).await;
    let mut watcher = Watcher::open(&server, Role::Operator, all_types()).await;
    let mut on_replica = Watcher::open(&replica, Role::Operator, all_types()).await;
    let expected = walk(&server, "walker").await;

    let seen = watcher.take(expected.len()).await;
    assert_eq!(
        types_of(&seen),
        expected,
        "in commit order, failed logins left out"
    );
    assert!(seen.iter().all(|e| e.account == "accounts/walker"));
    let on_replica_seen = on_replica.take(expected.len()).await;
    assert_eq!(on_replica_seen, seen, "the replica streams the same events");
    assert!(watcher.quiet_for(Duration::from_millis(300)).await);

    // A watcher that leaves after three events and comes back with its
    // token (on the other replica) gets the rest, once.
    let mut leaver = Watcher::open(&server, Role::Operator, all_types()).await;
    let second = walk(&server, "second").await;
    let before = leaver.take(3).await;
    let token = leaver.token.clone();
    drop(leaver);
    let mut back = Watcher::open(
        &replica,
        Role::Operator,
        WatchEventsRequest {
            resume_token: token,
            ..all_types()
        },
    )
    .await;
    let after = back.take(second.len() - 3).await;
    let mut resumed = types_of(&before);
    resumed.extend(types_of(&after));
    assert_eq!(resumed, second, "nothing lost, nothing twice");
    let names: HashSet<_> = before
        .iter()
        .chain(&after)
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names.len(), second.len());
    assert!(
        back.quiet_for(Duration::from_millis(300)).await,
        "nothing after the walk"
    );
}

async fn bad_watch_requests_are_invalid_and_change_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let good = Watcher::open(&server, Role::Operator, all_types())
        .await
        .token;
    let other = TestServer::start(Backend::Sqlite).await;
    let foreign = Watcher::open(&other, Role::Operator, all_types())
        .await
        .token;
    let cases: Vec<(WatchEventsRequest, &str)> = vec![
        (
            WatchEventsRequest {
                types: vec![999],
                ..all_types()
            },
            "types",
        ),
        (
            WatchEventsRequest {
                types: vec![AuditEventType::AuthenticationFailed as i32],
                ..all_types()
            },
            "types",
        ),
        (
            WatchEventsRequest {
                types: vec![1; 64],
                ..all_types()
            },
            "types",
        ),
        (
            WatchEventsRequest {
                account: "users/x".into(),
                ..all_types()
            },
            "account",
        ),
        (
            WatchEventsRequest {
                resume_token: "not-a-token".into(),
                ..all_types()
            },
            "resume_token",
        ),
        (
            WatchEventsRequest {
                resume_token: format!("{good}A"),
                ..all_types()
            },
            "resume_token",
        ),
        (
            WatchEventsRequest {
                resume_token: "A".repeat(1_000),
                ..all_types()
            },
            "resume_token",
        ),
        (
            WatchEventsRequest {
                resume_token: foreign.clone(),
                ..all_types()
            },
            "resume_token",
        ),
    ];
    for (request, field) in cases {
        let status = Watcher::try_open(&server, Role::Operator, request.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{request:?} was accepted"));
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{request:?}: {status:?}"
        );
        assert_eq!(
            violated_fields(&status),
            vec![field.to_owned()],
            "{request:?}"
        );
    }
    let stats = server.services.feed.stats();
    assert_eq!(stats.events_read, 0, "no refused request read the feed");
    let _ = other.stop().await;
}

async fn roles_watch_only_their_reach(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut proxy = Watcher::open(&server, Role::Authenticator, all_types()).await;
    let mut notifier = Watcher::open(&server, Role::Notifier, all_types()).await;
    let mut operator = Watcher::open(&server, Role::Operator, all_types()).await;
    let denied = Watcher::try_open(
        &server,
        Role::Authenticator,
        WatchEventsRequest {
            types: vec![AuditEventType::AppPasswordNewNetwork as i32],
            ..all_types()
        },
    )
    .await
    .err()
    .expect("a proxy may not watch where users sign in from");
    assert_eq!(denied.code(), Code::InvalidArgument);
    let issuer = Watcher::try_open(&server, Role::Issuer, all_types())
        .await
        .err()
        .expect("issuers do not watch");
    assert_eq!(issuer.code(), Code::PermissionDenied);

    let (name, secret) = issue_simple(&server, "reach").await;
    login(&server, "reach", &secret).await;
    revoke(&server, name).await;
    server
        .callers()
        .create_caller(latchkey::grpc::pb::CreateCallerRequest {
            name: "another".into(),
            role: latchkey::grpc::pb::Role::Issuer as i32,
            tls_identity: String::new(),
            tenant: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();

    assert_eq!(
        types_of(&[proxy.next().await]),
        vec![AuditEventType::AppPasswordRevoked],
        "a proxy sees what stales its cache, not issues or first uses"
    );
    assert_eq!(
        types_of(&notifier.take(3).await),
        vec![
            AuditEventType::AppPasswordIssued,
            AuditEventType::AppPasswordFirstUse,
            AuditEventType::AppPasswordRevoked,
        ],
    );
    assert_eq!(
        types_of(&operator.take(4).await),
        vec![
            AuditEventType::AppPasswordIssued,
            AuditEventType::AppPasswordFirstUse,
            AuditEventType::AppPasswordRevoked,
            AuditEventType::CallerCreated,
        ],
    );
    assert!(
        notifier.quiet_for(Duration::from_millis(300)).await,
        "callers are not users' events"
    );
    assert!(proxy.quiet_for(Duration::from_millis(300)).await);
}

/// An issuer's free-text reasons and an update's settings (networks among
/// them) reach the notifier that tells the user and the operator, not the
/// proxies that only flush a cache: counted field by field on each stream.
async fn a_proxy_is_told_which_changed_not_why(backend: Backend) {
    const REASON: &str = "ticket 4711: the user says their laptop was stolen";
    const NETWORK: &str = "198.51.100.0/24";
    let server = TestServer::start(backend).await;
    let mut proxy = Watcher::open(&server, Role::Authenticator, all_types()).await;
    let mut notifier = Watcher::open(&server, Role::Notifier, all_types()).await;
    let mut operator = Watcher::open(&server, Role::Operator, all_types()).await;

    let (name, _) = issue_simple(&server, "told").await;
    let mut app_passwords = server.app_passwords();
    app_passwords
        .update_app_password(UpdateAppPasswordRequest {
            app_password: Some(latchkey::grpc::pb::AppPassword {
                name: name.clone(),
                allowed_networks: vec![NETWORK.into()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["allowed_networks".into()],
            }),
        })
        .await
        .unwrap();
    app_passwords
        .revoke_app_password(latchkey::grpc::pb::RevokeAppPasswordRequest {
            name: name.clone(),
            reason: REASON.into(),
        })
        .await
        .unwrap();
    issue_simple(&server, "told").await;
    let revoked_all = app_passwords
        .revoke_account_app_passwords(latchkey::grpc::pb::RevokeAccountAppPasswordsRequest {
            parent: "accounts/told".into(),
            reason: REASON.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked_all.revoked_count, 1);

    let changes = [
        AuditEventType::AppPasswordUpdated,
        AuditEventType::AppPasswordRevoked,
        AuditEventType::AccountAppPasswordsRevoked,
    ];
    let seen = proxy.take(3).await;
    assert_eq!(types_of(&seen), changes);
    for event in &seen {
        assert_eq!(event.account, "accounts/told");
        assert!(event.occur_time.is_some() && event.name.starts_with("auditEvents/"));
        // Which changed, and nothing of who, why, from where or how many.
        let unsaid = (
            event.actor.as_str(),
            event.detail.as_str(),
            event.client_ip.as_str(),
            event.caller.as_str(),
            event.item_count,
            event.protocol,
        );
        assert_eq!(unsaid, ("", "", "", "", 0, 0), "{event:?}");
    }
    assert_eq!(
        (seen[0].app_password.as_str(), seen[1].app_password.as_str()),
        (name.as_str(), name.as_str())
    );
    assert!(proxy.quiet_for(Duration::from_millis(300)).await);

    // The notifier and the operator: all of it.
    for watcher in [&mut notifier, &mut operator] {
        let seen = watcher.take(5).await;
        let said: Vec<_> = seen
            .iter()
            .map(|e| (e.r#type(), e.actor.as_str(), e.item_count))
            .collect();
        assert_eq!(
            said,
            [
                (AuditEventType::AppPasswordIssued, "test-issuer", 0),
                (AuditEventType::AppPasswordUpdated, "test-issuer", 0),
                (AuditEventType::AppPasswordRevoked, "test-issuer", 0),
                (AuditEventType::AppPasswordIssued, "test-issuer", 0),
                (AuditEventType::AccountAppPasswordsRevoked, "test-issuer", 1),
            ]
        );
        assert_eq!(seen[0].detail, "Thunderbird");
        assert!(seen[1].detail.contains(NETWORK), "{:?}", seen[1]);
        assert_eq!(
            (seen[2].detail.as_str(), seen[4].detail.as_str()),
            (REASON, REASON)
        );
    }
}

/// Toggles `username` disabled and enabled `times` times through `server`:
/// two feed events per round. The account must exist.
pub async fn toggle(server: &TestServer, username: &str, rounds: usize) {
    let mut accounts = server.accounts();
    let name = format!("accounts/{username}");
    for _ in 0..rounds {
        accounts
            .disable_account(DisableAccountRequest {
                name: name.clone(),
                reason: "toggle".into(),
            })
            .await
            .unwrap();
        accounts
            .enable_account(EnableAccountRequest { name: name.clone() })
            .await
            .unwrap();
    }
}

/// The `name`s of the events, and checks that their tokens only grow
/// (a token is the place after its event).
fn names_in_order(events: &[(AuditEvent, String)]) -> Vec<String> {
    events.iter().map(|(e, _)| e.name.clone()).collect()
}

impl Watcher {
    /// The next `count` events with the token after each.
    async fn take_with_tokens(&mut self, count: usize) -> Vec<(AuditEvent, String)> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            let event = self.next().await;
            events.push((event, self.token.clone()));
        }
        events
    }
}

async fn two_replicas_writing_at_once_stream_every_event_once_in_order(backend: Backend) {
    const WRITERS_PER_REPLICA: usize = 4;
    const ROUNDS: usize = 63; // 2 replicas × 4 writers × 63 rounds × 2 = 1,008 events
    let server = TestServer::start(backend).await;
    let replica = server.replica_with(|_| {}).await;
    let mut users = Vec::new();
    for i in 0..2 * WRITERS_PER_REPLICA {
        let username = format!("toggler{i}");
        issue_simple(&server, &username).await;
        users.push(username);
    }
    let accounts_only = || WatchEventsRequest {
        types: vec![
            AuditEventType::AccountDisabled as i32,
            AuditEventType::AccountEnabled as i32,
        ],
        ..all_types()
    };
    let mut on_server = Watcher::open(&server, Role::Operator, accounts_only()).await;
    let mut on_replica = Watcher::open(&replica, Role::Notifier, accounts_only()).await;

    let total = 2 * WRITERS_PER_REPLICA * ROUNDS * 2;
    let writers = users.iter().enumerate().map(|(i, username)| {
        let target = if i % 2 == 0 { &server } else { &replica };
        toggle(target, username, ROUNDS)
    });
    let reading = async {
        let a = on_server.take_with_tokens(total).await;
        let b = on_replica.take_with_tokens(total).await;
        (a, b)
    };
    let (_, (from_server, from_replica)) =
        tokio::join!(futures::future::join_all(writers), reading);

    let names = names_in_order(&from_server);
    let unique: HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), total, "every event once");
    assert_eq!(
        names,
        names_in_order(&from_replica),
        "both replicas stream the same order"
    );
    // The order is the commit order: each account's events alternate
    // disabled/enabled, as they were made, one after the other.
    for username in &users {
        let account = format!("accounts/{username}");
        let mine: Vec<AuditEventType> = from_server
            .iter()
            .filter(|(e, _)| e.account == account)
            .map(|(e, _)| e.r#type())
            .collect();
        assert_eq!(mine.len(), 2 * ROUNDS);
        for pair in mine.chunks(2) {
            assert_eq!(
                pair,
                [
                    AuditEventType::AccountDisabled,
                    AuditEventType::AccountEnabled
                ],
                "{username}"
            );
        }
    }
    // Resuming from any token gives exactly the rest.
    let (_, middle) = &from_server[total / 2 - 1];
    let mut resumed = Watcher::open(
        &replica,
        Role::Operator,
        WatchEventsRequest {
            resume_token: middle.clone(),
            ..accounts_only()
        },
    )
    .await;
    let rest = resumed.take_with_tokens(total - total / 2).await;
    assert_eq!(names_in_order(&rest), names[total / 2..].to_vec());
    assert!(on_server.quiet_for(Duration::from_millis(300)).await);
    assert!(resumed.quiet_for(Duration::from_millis(300)).await);
}

/// SQL on the test database, with the backend's placeholders written out.
async fn sql(connection: &impl ConnectionTrait, text: &str) {
    connection
        .execute_unprepared(text)
        .await
        .unwrap_or_else(|error| panic!("{text}: {error}"));
}

async fn a_later_sequence_waits_for_an_earlier_one_to_commit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (name, _) = issue_simple(&server, "late").await;
    let mut watcher = Watcher::open(&server, Role::Operator, all_types()).await;

    // A slow writer takes the next sequence number and holds it, as a
    // transaction of another replica would between its write and its
    // commit.
    let db = server.database.connect().await;
    let slow = db.begin().await.unwrap();
    sql(
        &slow,
        "UPDATE event_feed SET last_seq = last_seq + 1 WHERE id = 1",
    )
    .await;
    let held: i64 = slow
        .query_one(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT last_seq FROM event_feed WHERE id = 1",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "last_seq")
        .unwrap();

    // A revocation meanwhile: it would take the number after, but waits.
    let revoking = {
        let mut client = server.app_passwords();
        let name = name.clone();
        tokio::spawn(async move {
            client
                .revoke_app_password(latchkey::grpc::pb::RevokeAppPasswordRequest {
                    name,
                    reason: String::new(),
                })
                .await
        })
    };
    assert!(
        watcher.quiet_for(Duration::from_millis(500)).await,
        "nothing is streamed while the earlier number is uncommitted"
    );
    assert!(
        !revoking.is_finished(),
        "the later writer waits for the earlier one"
    );

    // The slow writer's event commits (after the later one began).
    let at = server.clock.now().as_millis();
    let quote = if db.get_database_backend() == DbBackend::MySql {
        "`"
    } else {
        "\""
    };
    sql(
        &slow,
        &format!(
            "INSERT INTO audit_event (occurred_at, event_type, actor, username, detail, seq) \
             VALUES ({at}, 'account_disabled', 'slow-replica', 'late', 'held', {held})"
        ),
    )
    .await;
    let _ = quote;
    slow.commit().await.unwrap();
    revoking
        .await
        .unwrap()
        .expect("the revocation goes through");

    let events = watcher.take(2).await;
    assert_eq!(
        types_of(&events),
        vec![
            AuditEventType::AccountDisabled,
            AuditEventType::AppPasswordRevoked
        ],
        "the earlier number first, then the later: nothing skipped"
    );
    assert_eq!(events[0].actor, "slow-replica");
    assert!(watcher.quiet_for(Duration::from_millis(300)).await);
}

/// A WatchEvents stream of every type after `resume_token`, on a
/// connection of its own with the smallest HTTP/2 windows, so that a
/// client that stops reading stops the server's sending after 64 KiB; its
/// first message (a checkpoint) is read, and returned with it.
async fn narrow_stream(
    server: &TestServer,
    resume_token: &str,
) -> (Streaming<WatchEventsResponse>, WatchEventsResponse) {
    let channel = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let authed = tonic::service::interceptor::InterceptedService::new(
        channel,
        Bearer::new(&server.keys[&Role::Operator]).unwrap(),
    );
    let mut stream = AuditServiceClient::new(authed)
        .watch_events(WatchEventsRequest {
            resume_token: resume_token.to_owned(),
            ..all_types()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(
        first.audit_event.is_none(),
        "a stream starts with a checkpoint"
    );
    (stream, first)
}

/// Waits until the feed's count of events read stops moving, and returns it.
async fn settled_reads(server: &TestServer) -> u64 {
    let mut last = server.services.feed.stats().events_read;
    let mut still = 0;
    while still < 10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = server.services.feed.stats().events_read;
        if now == last {
            still += 1;
        } else {
            still = 0;
            last = now;
        }
    }
    last
}

/// A watcher that fell behind and stops reading: the backlog is in the
/// database, and the server reads only what the stream can take.
async fn a_stalled_watcher_costs_bounded_memory_and_then_gets_everything(backend: Backend) {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 250; // 8 × 250 × 2 = 4,000 events
    let server = TestServer::start(backend).await;
    for i in 0..WRITERS {
        issue_simple(&server, &format!("busy{i}")).await;
    }
    let from = Watcher::open(&server, Role::Operator, all_types())
        .await
        .token;
    futures::future::join_all((0..WRITERS).map(|i| {
        let server = &server;
        async move { toggle(server, &format!("busy{i}"), ROUNDS).await }
    }))
    .await;
    let total = WRITERS * ROUNDS * 2;

    let before = server.services.feed.stats().events_read;
    let (mut stalled, first) = narrow_stream(&server, &from).await;
    let read = settled_reads(&server).await - before;
    // What the server holds for the stalled stream is what it read and
    // the client has not taken: at most a page (256), the stream's channel
    // and what fits in the transport's buffers and the client's 64 KiB
    // window (a few hundred messages of ~150 bytes): 1,024 (four pages)
    // when this was written, of a backlog of 4,000.
    assert!(
        read <= 1_500,
        "a stalled watcher made the server read {read} of {total} events"
    );

    // The watcher reads again and gets every event, once, in order.
    let mut names = Vec::with_capacity(total);
    let mut last_token = first.resume_token;
    while names.len() < total {
        let message = tokio::time::timeout(PATIENCE, stalled.message())
            .await
            .expect("the backlog drains")
            .unwrap_or_else(|status| panic!("after {} events: {status:?}", names.len()))
            .expect("the stream goes on");
        assert_ne!(message.resume_token, last_token);
        last_token = message.resume_token;
        if let Some(event) = message.audit_event {
            names.push(event.name);
        }
    }
    assert_eq!(names.iter().collect::<HashSet<_>>().len(), total);
    let stats = server.services.feed.stats();
    assert_eq!(
        stats.events_read - before,
        total as u64,
        "each event read once"
    );
}

/// On PostgreSQL a commit wakes every replica's streams by NOTIFY: with
/// the fallback poll at ten minutes, events still arrive (within the test's
/// patience of 20 s).
#[tokio::test]
#[cfg_attr(not(latchkey_test_postgres), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn postgres_wakes_streams_by_notify_not_by_polling() {
    let hour = |config: &mut latchkey::config::Config| config.watch.poll_interval_ms = 60_000;
    let server = TestServer::start_with(Backend::Postgres, hour).await;
    let replica = server.replica_with(hour).await;
    let mut watcher = Watcher::open(&replica, Role::Operator, all_types()).await;
    for username in ["first", "second", "third"] {
        issue_simple(&server, username).await;
        assert_eq!(watcher.next().await.account, format!("accounts/{username}"));
    }
}

/// A client that stopped reading a stream with a backlog larger than the
/// transport's buffers cannot hold the server's stop: its stream is
/// dropped after the shutdown grace (5 s in tests), and the stop finishes
/// (the harness allows 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_does_not_hold_the_stop() {
    let server = TestServer::start(Backend::Sqlite).await;
    for i in 0..4 {
        issue_simple(&server, &format!("stuck{i}")).await;
    }
    let from = Watcher::open(&server, Role::Operator, all_types())
        .await
        .token;
    futures::future::join_all((0..4).map(|i| {
        let server = &server;
        async move { toggle(server, &format!("stuck{i}"), 400).await }
    }))
    .await;
    let (_stalled, _) = narrow_stream(&server, &from).await;
    settled_reads(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_stream_outlives_the_request_timeout() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.server.request_timeout_secs = 1;
    })
    .await;
    let mut watcher = Watcher::open(&server, Role::Operator, all_types()).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    issue_simple(&server, "patient").await;
    assert_eq!(watcher.next().await.account, "accounts/patient");
}

async fn watchers_are_limited_per_caller_and_per_replica(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.watch.max_watchers_per_caller = 2;
        config.watch.max_watchers = 3;
    })
    .await;
    let first = Watcher::open(&server, Role::Notifier, all_types()).await;
    let _second = Watcher::open(&server, Role::Notifier, all_types()).await;
    let refused = Watcher::try_open(&server, Role::Notifier, all_types())
        .await
        .err()
        .expect("a third stream of one caller is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(
        refused.get_details_error_info().unwrap().reason,
        "TOO_MANY_WATCHERS"
    );
    let _other = Watcher::open(&server, Role::Authenticator, all_types()).await;
    let full = Watcher::try_open(&server, Role::Operator, all_types())
        .await
        .err()
        .expect("the replica's limit holds across callers");
    assert_eq!(full.code(), Code::ResourceExhausted);

    // Closing a stream gives its place back.
    drop(first);
    eventually(
        "the closed stream's place back",
        PATIENCE,
        async || match Watcher::try_open(&server, Role::Notifier, all_types()).await {
            Ok(watcher) => Some(watcher),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                None
            }
        },
    )
    .await;
}

async fn a_token_behind_retention_is_refused_and_streams_end_when_the_server_stops(
    backend: Backend,
) {
    let server = TestServer::start_with(backend, |config| {
        config.audit.retention_days = 1;
        config.audit.prune_interval_secs = 1;
    })
    .await;
    let old = Watcher::open(&server, Role::Operator, all_types())
        .await
        .token;
    issue_simple(&server, "old").await;
    server.clock.advance(Duration::from_secs(36 * 3600));
    let refused = until_pruned(&server, &old).await;
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.get_details_error_info().unwrap().reason,
        "WATCH_TOKEN_EXPIRED"
    );
    // A token from after the pruning works, and gets what follows.
    let mut fresh = Watcher::open(&server, Role::Operator, all_types()).await;
    let old_after_pruning = fresh.token.clone();
    issue_simple(&server, "new").await;
    assert_eq!(fresh.next().await.account, "accounts/new");

    // A stream open when the server stops ends with UNAVAILABLE, and a
    // stalled one does not hold the stop up (the harness allows 10 s).
    let (_stalled, _) = narrow_stream(&server, &old_after_pruning).await;
    toggle(&server, "new", 300).await;
    server.stop().await;
    let ended = loop {
        match tokio::time::timeout(PATIENCE, fresh.stream.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Err(status)) => break status,
            Err(_) => panic!("the stream did not end"),
        }
    };
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
}

/// A stream that has fallen behind when pruning deletes what it had not
/// read yet ends with WATCH_TOKEN_EXPIRED: it never skips the pruned
/// events silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_past_an_open_stream_ends_it_instead_of_skipping() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.audit.retention_days = 1;
        config.audit.prune_interval_secs = 1;
    })
    .await;
    issue_simple(&server, "busy").await;
    let from = Watcher::open(&server, Role::Operator, all_types())
        .await
        .token;
    toggle(&server, "busy", 1500).await;
    let (mut stalled, _) = narrow_stream(&server, &from).await;
    settled_reads(&server).await;
    server.clock.advance(Duration::from_secs(36 * 3600));
    until_pruned(&server, &from).await;
    issue_simple(&server, "late").await;
    let mut events = 0usize;
    let status = loop {
        match tokio::time::timeout(PATIENCE, stalled.message())
            .await
            .expect("the stream goes on or ends")
        {
            Ok(Some(message)) => {
                if let Some(event) = message.audit_event {
                    events += 1;
                    assert_ne!(
                        event.account, "accounts/late",
                        "after {events} of 3,001 events the stream stepped over the pruned ones"
                    );
                }
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "WATCH_TOKEN_EXPIRED"
    );
    assert!(events < 3_001);
}

/// Revoking a caller ends its open streams, on every replica, before they
/// carry anything committed after the revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_callers_streams_end() {
    let server = TestServer::start(Backend::Sqlite).await;
    let replica = server.replica_with(|_| {}).await;
    let mut here = Watcher::open(&server, Role::Notifier, all_types()).await;
    let mut there = Watcher::open(&replica, Role::Notifier, all_types()).await;
    let mut operator = Watcher::open(&replica, Role::Operator, all_types()).await;
    server
        .callers()
        .revoke_caller(latchkey::grpc::pb::RevokeCallerRequest {
            name: "callers/test-notifier".into(),
        })
        .await
        .unwrap();
    issue_simple(&server, "after-revocation").await;
    for watcher in [&mut here, &mut there] {
        let ended = loop {
            match tokio::time::timeout(PATIENCE, watcher.stream.message())
                .await
                .expect("the stream ends")
            {
                Ok(Some(message)) => assert!(
                    message.audit_event.is_none(),
                    "a revoked caller received {message:?}"
                ),
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => break status,
            }
        };
        assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    }
    assert_eq!(
        types_of(&operator.take(2).await),
        vec![
            AuditEventType::CallerRevoked,
            AuditEventType::AppPasswordIssued
        ],
        "other callers' streams go on"
    );
}

/// `token` as another history would have it: the same feed and number,
/// `mark` for the mark (`None`: a version 1 token, which has none), and
/// `ahead` added to the number.
pub fn reshaped_token(token: &str, mark: Option<u64>, ahead: u64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let bytes = URL_SAFE_NO_PAD.decode(token).unwrap();
    assert_eq!((bytes[0], bytes.len()), (2, 33), "a version 2 token");
    let seq = u64::from_be_bytes(bytes[17..25].try_into().unwrap()) + ahead;
    let mut out = vec![if mark.is_some() { 2 } else { 1 }];
    out.extend_from_slice(&bytes[1..17]);
    out.extend_from_slice(&seq.to_be_bytes());
    if let Some(mark) = mark {
        out.extend_from_slice(&mark.to_be_bytes());
    }
    URL_SAFE_NO_PAD.encode(out)
}

/// The mark a version 2 token carries.
fn mark_of(token: &str) -> u64 {
    latchkey::domain::audit::ResumeToken::decode(token)
        .unwrap()
        .mark
}

/// A token names its history: one whose mark is not the event's at its
/// number, or whose number is ahead of the feed, is FAILED_PRECONDITION,
/// FEED_RESYNC_REQUIRED (tests/it/failover.rs makes such tokens with a
/// real failover). A version 1 token (no mark) resumes where the event at
/// its number was written before marks, and must resync where the number
/// has a mark.
async fn a_token_of_another_history_must_resync_and_old_tokens_still_resume(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut watcher = Watcher::open(&server, Role::Operator, all_types()).await;
    issue_simple(&server, "history").await;
    watcher.next().await;
    let token = watcher.token.clone();
    let mark = mark_of(&token);
    assert_ne!(mark, 0, "a new event has a mark");
    let resume = |token: String| {
        Watcher::try_open(
            &server,
            Role::Operator,
            WatchEventsRequest {
                resume_token: token,
                ..all_types()
            },
        )
    };
    for (what, other) in [
        ("another mark", reshaped_token(&token, Some(mark ^ 1), 0)),
        ("ahead of the head", reshaped_token(&token, Some(mark), 5)),
        (
            "version 1 at a marked event",
            reshaped_token(&token, None, 0),
        ),
    ] {
        let status = resume(other)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{what}: {status:?}"
        );
        assert_eq!(reason_of(&status), "FEED_RESYNC_REQUIRED", "{what}");
        assert!(status.message().contains("resync"), "{what}: {status:?}");
    }
    assert!(resume(token.clone()).await.is_ok(), "its own token resumes");

    // Events from before marks (migration 12): a version 1 token there
    // resumes, and gets what follows.
    let db = server.database.connect().await;
    db.execute_unprepared("UPDATE audit_event SET feed_mark = NULL")
        .await
        .unwrap();
    // To the replica that is a change of history under its open stream,
    // which it ends.
    let ended = loop {
        match tokio::time::timeout(PATIENCE, watcher.stream.message())
            .await
            .expect("the open stream ends")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::FailedPrecondition, "{ended:?}");
    assert_eq!(reason_of(&ended), "FEED_RESYNC_REQUIRED");
    let mut old = resume(reshaped_token(&token, None, 0))
        .await
        .expect("a version 1 token at an event from before marks");
    issue_simple(&server, "after").await;
    assert_eq!(old.next().await.account, "accounts/after");
}
