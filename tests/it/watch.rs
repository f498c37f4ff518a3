//! The change feed (issue 13): WatchEvents streams every change in commit
//! order, from every replica, resumable by token, within each role's
//! reach, with bounded memory for stalled watchers.

use std::collections::HashSet;
use std::time::Duration;

use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::audit_service_client::AuditServiceClient;
use latchkey::grpc::pb::{
    AuditEvent, AuditEventType, DeleteAccountRequest, DisableAccountRequest, EnableAccountRequest,
    ResumeAppPasswordRequest, SuspendAppPasswordRequest, UpdateAppPasswordRequest,
    WatchEventsRequest, WatchEventsResponse,
};
use tonic::{Code, Streaming};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    a_watcher_sees_a_walk_in_order_and_resumes_without_loss_or_repeats,
    bad_watch_requests_are_invalid_and_change_nothing,
    roles_watch_only_their_reach,
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
