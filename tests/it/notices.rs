//! The notices in the change feed: housekeeping's "expiring soon",
//! "expired" and "idle expiring soon" for app passwords, each written once
//! per time it is about however many replicas run housekeeping at once,
//! and the failed login that starts an account's block.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use latchkey::app::App;
use latchkey::config::Config;
use latchkey::domain::app_passwords::model::NoticeKind;
use latchkey::domain::callers::model::Role;
use latchkey::domain::shared::time::{ManualClock, Span};
use latchkey::grpc::pb::{
    AppPassword, AuditEvent, AuditEventType, FailureReason, ListAuditEventsRequest, Protocol,
    UpdateAppPasswordRequest, WatchEventsRequest,
};

use crate::backend_tests;
use crate::common::harness::{test_config, Backend, TestServer, START};
use crate::common::support::*;
use crate::watch::Watcher;

backend_tests!(
    expiry_notices_are_written_once_by_racing_replicas,
    idle_notices_come_once_per_deadline,
    an_account_block_is_announced_once_per_block,
);

const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

/// How long a watcher listens for an event that must not come.
const QUIET: Duration = Duration::from_millis(500);

/// Housekeeping every hour of the test clock, on every replica.
fn hourly(config: &mut Config) {
    config.audit.prune_interval_secs = HOUR;
}

fn watching(types: &[AuditEventType]) -> WatchEventsRequest {
    WatchEventsRequest {
        types: types.iter().map(|&t| t as i32).collect(),
        ..WatchEventsRequest::default()
    }
}

/// Moves both replicas' clocks (each has its own), which wakes both
/// housekeeping loops.
fn tick(server: &TestServer, replica: &TestServer, seconds: u64) {
    server.clock.advance(Duration::from_secs(seconds));
    replica.clock.advance(Duration::from_secs(seconds));
}

/// Both replicas' notices of `kind` at once, beside their housekeeping
/// loops; how many the two calls wrote together.
async fn race(server: &TestServer, replica: &TestServer, kind: NoticeKind) -> u64 {
    let (one, other) = tokio::join!(
        server.services.app_passwords.send_notices(kind),
        replica.services.app_passwords.send_notices(kind),
    );
    one.unwrap() + other.unwrap()
}

/// Every event of `kind` in the audit trail, newest first.
async fn listed(server: &TestServer, kind: AuditEventType) -> Vec<AuditEvent> {
    let request = ListAuditEventsRequest {
        types: vec![kind as i32],
        page_size: 1000,
        ..Default::default()
    };
    audit_events(server, request).await
}

fn passwords_of(events: &[AuditEvent]) -> Vec<String> {
    let mut names: Vec<String> = events.iter().map(|e| e.app_password.clone()).collect();
    names.sort();
    names
}

fn rfc3339_after(seconds: u64) -> String {
    START
        .saturating_add(Duration::from_secs(seconds))
        .to_rfc3339()
}

/// A server and a replica, each running housekeeping hourly, and a
/// watcher of `types` on the server.
async fn two_replicas_watched(
    backend: Backend,
    types: &[AuditEventType],
) -> (TestServer, TestServer, Watcher) {
    let server = TestServer::start_with(backend, hourly).await;
    let replica = server.replica_with(hourly).await;
    let watcher = Watcher::open(&server, Role::Operator, watching(types)).await;
    (server, replica, watcher)
}

async fn expiry_notices_are_written_once_by_racing_replicas(backend: Backend) {
    let (server, replica, mut watcher) = two_replicas_watched(
        backend,
        &[
            AuditEventType::AppPasswordExpiringSoon,
            AuditEventType::AppPasswordExpired,
        ],
    )
    .await;
    let mut names = Vec::new();
    for display_name in ["Phone", "Laptop", "Printer"] {
        let request = issue_request("una", display_name, &[Protocol::Imap]);
        let issued = issue(&server, with_ttl(request, (10 * DAY) as i64)).await;
        names.push(issued.app_password.unwrap().name);
    }
    let printer = names[2].clone();
    names.sort();
    // Ten days left, and the notice comes seven days before (the default
    // `watch.notice_before`): nothing yet.
    assert_eq!(race(&server, &replica, NoticeKind::ExpiringSoon).await, 0);

    // Into the window: both housekeeping loops wake, and both replicas
    // race besides; one notice per password.
    tick(&server, &replica, 4 * DAY);
    race(&server, &replica, NoticeKind::ExpiringSoon).await;
    let soon = watcher.take(3).await;
    assert_eq!(passwords_of(&soon), names, "{soon:?}");
    assert!(soon.iter().all(|e| e.actor == "housekeeping"
        && e.account == "accounts/una"
        && e.detail == format!("expires {}", rfc3339_after(10 * DAY))));
    // Another run on both finds nothing left to say.
    tick(&server, &replica, HOUR);
    assert_eq!(race(&server, &replica, NoticeKind::ExpiringSoon).await, 0);
    assert!(watcher.quiet_for(QUIET).await);
    let listed_soon = listed(&server, AuditEventType::AppPasswordExpiringSoon).await;
    assert_eq!(passwords_of(&listed_soon), names);

    // An update moves the printer's expiry: the new one earns its notice,
    // once it is in the window.
    server
        .app_passwords()
        .update_app_password(UpdateAppPasswordRequest {
            app_password: Some(AppPassword {
                name: printer.clone(),
                expire_time: Some(prost_types::Timestamp {
                    seconds: START.as_millis() / 1000 + (12 * DAY) as i64,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["expire_time".into()],
            }),
        })
        .await
        .unwrap();
    assert_eq!(race(&server, &replica, NoticeKind::ExpiringSoon).await, 0);
    tick(&server, &replica, DAY);
    race(&server, &replica, NoticeKind::ExpiringSoon).await;
    let moved = watcher.next().await;
    assert_eq!(moved.r#type(), AuditEventType::AppPasswordExpiringSoon);
    assert_eq!(moved.app_password, printer);
    assert_eq!(moved.detail, format!("expires {}", rfc3339_after(12 * DAY)));
    assert!(watcher.quiet_for(QUIET).await);

    // Past the first two expiries: one "expired" each.
    tick(&server, &replica, 5 * DAY);
    race(&server, &replica, NoticeKind::Expired).await;
    let expired = watcher.take(2).await;
    let mut first_two: Vec<String> = names.iter().filter(|n| **n != printer).cloned().collect();
    first_two.sort();
    assert_eq!(passwords_of(&expired), first_two, "{expired:?}");
    assert!(expired
        .iter()
        .all(|e| e.r#type() == AuditEventType::AppPasswordExpired
            && e.detail == format!("expired {}", rfc3339_after(10 * DAY))));
    tick(&server, &replica, HOUR);
    assert_eq!(race(&server, &replica, NoticeKind::Expired).await, 0);
    // Then the printer's, on its new expiry.
    tick(&server, &replica, 2 * DAY);
    race(&server, &replica, NoticeKind::Expired).await;
    let last = watcher.next().await;
    assert_eq!(
        (last.r#type(), last.app_password.as_str()),
        (AuditEventType::AppPasswordExpired, printer.as_str())
    );
    tick(&server, &replica, HOUR);
    for kind in NoticeKind::ALL {
        assert_eq!(race(&server, &replica, kind).await, 0, "{kind:?}");
    }
    assert!(watcher.quiet_for(QUIET).await);

    let soon = listed(&server, AuditEventType::AppPasswordExpiringSoon).await;
    let expired = listed(&server, AuditEventType::AppPasswordExpired).await;
    assert_eq!(soon.len(), 4, "{soon:?}");
    assert_eq!(
        soon.iter().filter(|e| e.app_password == printer).count(),
        2,
        "the printer: one per expiry"
    );
    assert_eq!(passwords_of(&expired), names, "{expired:?}");
    replica.stop().await;
    server.stop().await;
}

async fn idle_notices_come_once_per_deadline(backend: Backend) {
    let (server, replica, mut watcher) =
        two_replicas_watched(backend, &[AuditEventType::AppPasswordIdleExpiringSoon]).await;
    let mut request = issue_request("ida", "Tablet", &[Protocol::Imap]);
    request.idle_timeout = Some(prost_types::Duration {
        seconds: (20 * DAY) as i64,
        nanos: 0,
    });
    let issued = issue(&server, request).await;
    let (name, secret) = (issued.app_password.unwrap().name, issued.secret);
    let kind = NoticeKind::IdleExpiringSoon;

    // Seven days before its deadline the window opens, but the notice
    // waits a usage flush interval and 5 minutes more, for a use that may
    // still be on its way from another replica.
    tick(&server, &replica, 13 * DAY);
    assert_eq!(race(&server, &replica, kind).await, 0);
    tick(&server, &replica, HOUR);
    race(&server, &replica, kind).await;
    let first = watcher.next().await;
    assert_eq!(first.app_password, name);
    assert_eq!(first.actor, "housekeeping");
    assert_eq!(
        first.detail,
        format!(
            "idle-expires {} unless used (unused since {})",
            rfc3339_after(20 * DAY),
            rfc3339_after(0)
        )
    );
    tick(&server, &replica, HOUR);
    assert_eq!(race(&server, &replica, kind).await, 0, "once per deadline");

    // A use (the first, written at once) moves the deadline 20 days on;
    // the new one earns a notice when it is near.
    assert!(
        login_with(&replica, "ida", &secret, Protocol::Imap, "192.0.2.10")
            .await
            .authenticated
    );
    assert_eq!(race(&server, &replica, kind).await, 0);
    tick(&server, &replica, 13 * DAY + HOUR);
    race(&server, &replica, kind).await;
    let second = watcher.next().await;
    assert_eq!(second.app_password, name);
    assert_eq!(
        second.detail,
        format!(
            "idle-expires {} unless used (unused since {})",
            rfc3339_after(33 * DAY + 2 * HOUR),
            rfc3339_after(13 * DAY + 2 * HOUR)
        )
    );

    // A later use waits in the server's usage buffer: until it is written,
    // the stored deadline stands, and it was noticed already.
    assert!(
        login_with(&server, "ida", &secret, Protocol::Imap, "192.0.2.10")
            .await
            .authenticated
    );
    assert_eq!(race(&server, &replica, kind).await, 0);
    server.services.logins.flush_usage().await.unwrap();
    tick(&server, &replica, 13 * DAY + HOUR);
    race(&server, &replica, kind).await;
    let third = watcher.next().await;
    assert!(
        third.detail.starts_with(&format!(
            "idle-expires {}",
            rfc3339_after(46 * DAY + 3 * HOUR)
        )),
        "{third:?}"
    );
    tick(&server, &replica, HOUR);
    assert_eq!(race(&server, &replica, kind).await, 0);
    assert!(watcher.quiet_for(QUIET).await);
    let all = listed(&server, AuditEventType::AppPasswordIdleExpiringSoon).await;
    assert_eq!(all.len(), 3, "one per deadline: {all:?}");
    let deadlines: BTreeSet<&str> = all.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(deadlines.len(), 3);
    replica.stop().await;
    server.stop().await;
}

async fn an_account_block_is_announced_once_per_block(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.throttle.account_limit = 3;
        config.throttle.pair_limit = 100;
        config.throttle.source_limit = 1000;
    })
    .await;
    let mut watcher = Watcher::open(
        &server,
        Role::Operator,
        watching(&[AuditEventType::AccountLoginBlocked]),
    )
    .await;
    issue_simple(&server, "ann").await;
    let mut guess = 0;
    let mut fail = |username: &'static str, address: &'static str| {
        guess += 1;
        let wrong = wrong_secret(guess);
        let server = &server;
        async move { login_with(server, username, &wrong, Protocol::Imap, address).await }
    };

    // Three failures from three networks block the account; the attempts
    // while the block lasts are refused uncounted.
    for address in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert_refused(
            &fail("ann", address).await,
            FailureReason::InvalidCredentials,
        );
    }
    for address in ["192.0.2.4", "192.0.2.5"] {
        assert_refused(&fail("ann", address).await, FailureReason::Throttled);
    }
    let blocked = watcher.next().await;
    assert_eq!(blocked.r#type(), AuditEventType::AccountLoginBlocked);
    assert_eq!(blocked.account, "accounts/ann");
    assert_eq!(
        blocked.client_ip, "192.0.2.3",
        "the failure that started it"
    );
    assert_eq!(
        blocked.detail,
        format!("blocked until {} after 3 failed logins", rfc3339_after(30))
    );

    // A name nobody holds is blocked all the same, and announced to no one.
    for address in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        assert_refused(
            &fail("nobody", address).await,
            FailureReason::InvalidCredentials,
        );
    }
    assert_refused(
        &fail("nobody", "198.51.100.4").await,
        FailureReason::Throttled,
    );

    // Once the block ran out, the next failure starts another (twice as
    // long), announced once more; the next event on the feed is that one.
    server.clock.advance(Duration::from_secs(31));
    assert_refused(
        &fail("ann", "192.0.2.6").await,
        FailureReason::InvalidCredentials,
    );
    assert_refused(&fail("ann", "192.0.2.7").await, FailureReason::Throttled);
    let again = watcher.next().await;
    assert_eq!(again.account, "accounts/ann");
    assert_eq!(
        again.detail,
        format!(
            "blocked until {} after 4 failed logins",
            rfc3339_after(31 + 60)
        )
    );
    assert!(watcher.quiet_for(QUIET).await);
    let listed = listed(&server, AuditEventType::AccountLoginBlocked).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|e| e.account == "accounts/ann"));
    server.stop().await;
}

/// A `watch.notice_before` out of bounds refuses the start, saying which
/// setting and why.
#[tokio::test]
async fn a_notice_window_out_of_bounds_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("30m", "watch.notice_before must be at least 1 hour"),
        ("366d", "watch.notice_before must be at most 365 days"),
        ("2h", "usage.flush_interval plus 5 minutes"),
    ];
    for (notice_before, why) in cases {
        let mut config = test_config();
        config.database_url = latchkey::config::DatabaseUrl::new(sqlite_url(dir.path()));
        config.watch.notice_before = Span::parse(notice_before).unwrap();
        config.usage.flush_interval_secs = 2 * HOUR;
        let clock = Arc::new(ManualClock::starting_at(START));
        let refused = match App::build(&config, clock).await {
            Ok(_) => panic!("started with watch.notice_before = {notice_before}"),
            Err(error) => error.to_string(),
        };
        assert!(refused.contains(why), "{notice_before}: {refused}");
    }
}
