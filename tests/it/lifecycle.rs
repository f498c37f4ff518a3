//! The whole life of one app password (issue 12): update, suspend and
//! resume, idle expiry, the primary-credential-change policy, bulk
//! revocation, the helpdesk's ExplainLogin, the "begins with" hint and
//! pruning. Each effect is checked on a second replica as well, and on
//! every backend.

use std::time::Duration;

use latchkey::domain::callers::model::Role;
use latchkey::domain::shared::time::Clock;
use latchkey::grpc::pb::app_password::State;
use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use latchkey::grpc::pb::{
    AppPassword, AppPasswordFilter, AuditEvent, AuditEventType, BulkRevokeAppPasswordsRequest,
    ExplainLoginRequest, FailureReason, GetAppPasswordRequest, ListAuditEventsRequest,
    PrimaryChangePolicy, PrimaryCredentialChange, Protocol, ReportPrimaryCredentialChangeRequest,
    ResumeAppPasswordRequest, SuspendAppPasswordRequest, UpdateAppPasswordRequest,
};
use tonic::Code;

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    update_changes_settings_on_every_replica_and_is_audited,
    update_refuses_bad_input_field_by_field_and_changes_nothing,
    suspend_and_resume_hold_on_every_replica,
    idle_passwords_are_refused_at_once_then_marked_once,
    primary_credential_changes_follow_the_policy,
    bulk_revocation_by_filter,
    explain_login_says_why,
    ended_passwords_are_pruned_after_retention,
    an_update_racing_logins_never_mixes_old_and_new,
    suspends_racing_resumes_end_in_the_last_audited_state,
);

const A: &str = "192.0.2.10";
const B: &str = "198.51.100.10";

fn duration(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

async fn update(
    server: &TestServer,
    password: AppPassword,
    paths: &[&str],
) -> Result<AppPassword, tonic::Status> {
    server
        .app_passwords()
        .update_app_password(UpdateAppPasswordRequest {
            app_password: Some(password),
            update_mask: mask(paths),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn suspend(server: &TestServer, name: &str) -> Result<AppPassword, tonic::Status> {
    server
        .app_passwords()
        .suspend_app_password(SuspendAppPasswordRequest {
            name: name.into(),
            reason: "phone lost".into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn resume(server: &TestServer, name: &str) -> Result<AppPassword, tonic::Status> {
    server
        .app_passwords()
        .resume_app_password(ResumeAppPasswordRequest { name: name.into() })
        .await
        .map(tonic::Response::into_inner)
}

/// Audit events of an account, newest first, optionally of one type.
async fn events(
    server: &TestServer,
    account: &str,
    kind: Option<AuditEventType>,
) -> Vec<AuditEvent> {
    audit_events(
        server,
        ListAuditEventsRequest {
            account: format!("accounts/{account}"),
            types: kind.into_iter().map(|k| k as i32).collect(),
            page_size: 1000,
            ..Default::default()
        },
    )
    .await
}

async fn login_as(
    server: &TestServer,
    user: &str,
    secret: &str,
    protocol: Protocol,
    ip: &str,
) -> bool {
    login_with(server, user, secret, protocol, ip)
        .await
        .authenticated
}

async fn update_changes_settings_on_every_replica_and_is_audited(backend: Backend) {
    let server = TestServer::start(backend).await;
    let replica = server.replica_with(|_| {}).await;
    let issued = issue(
        &server,
        issue_request("uma", "Old phone", &[Protocol::Imap]),
    )
    .await;
    let (password, secret) = (issued.app_password.unwrap(), issued.secret);
    assert_eq!(
        password.secret_prefix,
        secret.split(' ').take(2).collect::<Vec<_>>().join(" "),
        "the hint is the secret's first two groups: the marker and selector"
    );
    assert!(login_as(&replica, "uma", &secret, Protocol::Imap, A).await);
    let password = get_password(&server, &password.name).await;

    let mut changed = password.clone();
    changed.display_name = "New phone".into();
    changed.protocols = vec![Protocol::Smtp as i32];
    changed.allowed_networks = vec!["198.51.100.0/24".into()];
    changed.idle_timeout = Some(duration(30 * 86_400));
    // Fields not in the mask are ignored, whatever they hold.
    changed.use_count = 99;
    let updated = update(
        &server,
        changed,
        &[
            "display_name",
            "protocols",
            "allowed_networks",
            "idle_timeout",
        ],
    )
    .await
    .unwrap();
    assert_eq!(updated.display_name, "New phone");
    assert_eq!(updated.protocols, [Protocol::Smtp as i32]);
    assert_eq!(updated.use_count, password.use_count);
    assert_eq!(updated.idle_timeout, Some(duration(30 * 86_400)));
    assert!(updated.update_time.is_some());

    // The next login on the other replica is decided on the new settings.
    assert_refused(
        &login_with(&replica, "uma", &secret, Protocol::Imap, B).await,
        FailureReason::ProtocolNotAllowed,
    );
    assert_refused(
        &login_with(&replica, "uma", &secret, Protocol::Smtp, A).await,
        FailureReason::NetworkNotAllowed,
    );
    assert!(login_as(&replica, "uma", &secret, Protocol::Smtp, B).await);

    // Without a mask, the fields set are updated; the secret never changes.
    let mut renamed = AppPassword {
        name: password.name.clone(),
        display_name: "Newer phone".into(),
        ..Default::default()
    };
    let updated = update(&server, renamed.clone(), &[]).await.unwrap();
    assert_eq!(updated.display_name, "Newer phone");
    assert_eq!(updated.protocols, [Protocol::Smtp as i32], "untouched");
    assert!(login_as(&replica, "uma", &secret, Protocol::Smtp, B).await);

    // "*" replaces all five: unset expiry and idle timeout are removed.
    renamed.protocols = vec![Protocol::Any as i32];
    let updated = update(&server, renamed.clone(), &["*"]).await.unwrap();
    assert_eq!(updated.idle_timeout, None);
    assert!(updated.allowed_networks.is_empty());
    assert!(login_as(&replica, "uma", &secret, Protocol::Imap, A).await);

    // The longest settings there are: 16 IPv6 networks replaced by 16
    // others. Its audit detail is cut to fit, never refused.
    let networks = |base: u32| -> Vec<String> {
        (0..16)
            .map(|n| format!("2001:db8:{:x}:{n:x}::/64", base))
            .collect()
    };
    for base in [0xaaaa, 0xbbbb] {
        let mut wide = renamed.clone();
        wide.allowed_networks = networks(base);
        update(&server, wide, &["allowed_networks"]).await.unwrap();
    }
    let wide = events(&server, "uma", Some(AuditEventType::AppPasswordUpdated)).await;
    assert!(wide[0].detail.chars().count() <= 500);
    assert!(wide[0].detail.ends_with('…'), "{}", wide[0].detail);
    renamed.allowed_networks.clear();
    update(&server, renamed.clone(), &["allowed_networks"])
        .await
        .unwrap();

    // An update that changes nothing writes nothing.
    let audited = events(&server, "uma", Some(AuditEventType::AppPasswordUpdated)).await;
    assert_eq!(audited.len(), 6, "{audited:?}");
    update(&server, renamed, &["*"]).await.unwrap();
    assert_eq!(
        events(&server, "uma", Some(AuditEventType::AppPasswordUpdated))
            .await
            .len(),
        6
    );
    // What changed, old and new, and never the secret.
    let first = &audited[5];
    assert!(
        first.detail.contains("protocols: imap -> smtp"),
        "{}",
        first.detail
    );
    assert!(
        first.detail.contains("\"Old phone\" -> \"New phone\""),
        "{}",
        first.detail
    );
    for event in &audited {
        for form in secret_forms(&secret) {
            assert!(!event.detail.contains(&form));
        }
    }
    replica.stop().await;
    server.stop().await;
}

async fn update_refuses_bad_input_field_by_field_and_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (name, _) = issue_simple(&server, "vic").await;
    let before = get_password(&server, &name).await;
    let base = || AppPassword {
        name: name.clone(),
        ..Default::default()
    };

    let cases: Vec<(AppPassword, Vec<&str>, &str)> = vec![
        (base(), vec!["secret"], "update_mask"),
        (base(), vec!["name"], "update_mask"),
        (base(), vec!["use_count"], "update_mask"),
        (base(), vec!["state", "display_name"], "update_mask"),
        (base(), vec![], "update_mask"),
        (base(), vec!["display_name"; 33], "update_mask"),
        (base(), vec!["display_name"], "app_password.display_name"),
        (base(), vec!["protocols"], "app_password.protocols"),
        (
            AppPassword {
                allowed_networks: vec!["not a network".into()],
                ..base()
            },
            vec!["allowed_networks"],
            "app_password.allowed_networks",
        ),
        (
            AppPassword {
                expire_time: Some(prost_types::Timestamp {
                    seconds: 1_000,
                    nanos: 0,
                }),
                ..base()
            },
            vec!["expire_time"],
            "app_password.expire_time",
        ),
        (
            AppPassword {
                idle_timeout: Some(duration(60)),
                ..base()
            },
            vec!["idle_timeout"],
            "app_password.idle_timeout",
        ),
        (
            AppPassword {
                name: "accounts/vic/appPasswords/nope".into(),
                display_name: "x".into(),
                ..Default::default()
            },
            vec!["display_name"],
            "app_password.name",
        ),
    ];
    for (password, paths, field) in cases {
        let status = update(&server, password, &paths).await.unwrap_err();
        assert_eq!(violated_fields(&status), [field], "{paths:?}: {status:?}");
    }
    let status = server
        .app_passwords()
        .update_app_password(UpdateAppPasswordRequest {
            app_password: None,
            update_mask: mask(&["display_name"]),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["app_password"]);
    assert_eq!(
        get_password(&server, &name).await,
        before,
        "nothing changed"
    );

    // A password that is over stays over.
    revoke(&server, name.clone()).await;
    let status = update(
        &server,
        AppPassword {
            display_name: "Back again".into(),
            ..base()
        },
        &["display_name"],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&status), "APP_PASSWORD_REVOKED");
    assert!(
        events(&server, "vic", Some(AuditEventType::AppPasswordUpdated))
            .await
            .is_empty()
    );
    server.stop().await;
}

async fn suspend_and_resume_hold_on_every_replica(backend: Backend) {
    let server =
        TestServer::start_with(backend, |config| config.max_active_app_passwords = 2).await;
    let replica = server.replica_with(|_| {}).await;
    let (name, secret) = issue_simple(&server, "wes").await;
    assert!(login_as(&replica, "wes", &secret, Protocol::Imap, A).await);

    let suspended = suspend(&server, &name).await.unwrap();
    assert_eq!(suspended.state(), State::Suspended);
    assert_eq!(suspended.suspend_reason, "phone lost");
    assert_refused(
        &login_with(&replica, "wes", &secret, Protocol::Imap, A).await,
        FailureReason::Suspended,
    );
    // Counted like any failure, and audited with its reason.
    let failures = events(&server, "wes", Some(AuditEventType::AuthenticationFailed)).await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].detail, "suspended");

    // Suspended ones count toward the cap: they can come back at any time.
    issue_simple(&server, "wes").await;
    let status = server
        .app_passwords()
        .issue_app_password(issue_request("wes", "Third", &[Protocol::Imap]))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), "APP_PASSWORD_CAP_REACHED");

    // Idempotent: a second suspend keeps the first, and writes nothing.
    let again = suspend(&server, &name).await.unwrap();
    assert_eq!(again.suspend_time, suspended.suspend_time);
    let resumed = resume(&replica, &name).await.unwrap();
    assert_eq!(resumed.state(), State::Active);
    assert!(resumed.suspend_time.is_none());
    assert!(login_as(&server, "wes", &secret, Protocol::Imap, A).await);
    resume(&server, &name).await.unwrap();
    assert_eq!(
        events(&server, "wes", Some(AuditEventType::AppPasswordSuspended))
            .await
            .len(),
        1
    );
    assert_eq!(
        events(&server, "wes", Some(AuditEventType::AppPasswordResumed))
            .await
            .len(),
        1
    );

    // A revoked password cannot be suspended or resumed; bad names are
    // INVALID_ARGUMENT, unknown ones NOT_FOUND.
    revoke(&server, name.clone()).await;
    for status in [
        suspend(&server, &name).await.unwrap_err(),
        resume(&server, &name).await.unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(reason_of(&status), "APP_PASSWORD_REVOKED");
    }
    assert_eq!(
        violated_fields(&suspend(&server, "nope").await.unwrap_err()),
        ["name"]
    );
    assert_eq!(
        violated_fields(&resume(&server, "nope").await.unwrap_err()),
        ["name"]
    );
    let missing = "accounts/wes/appPasswords/01890000-0000-7000-8000-000000000000";
    assert_eq!(
        suspend(&server, missing).await.unwrap_err().code(),
        Code::NotFound
    );
    let long = SuspendAppPasswordRequest {
        name: name.clone(),
        reason: "x".repeat(501),
    };
    let status = server
        .app_passwords()
        .suspend_app_password(long)
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["reason"]);

    // An authenticator may not suspend.
    let status = AppPasswordServiceClient::new(server.as_role(Role::Authenticator))
        .suspend_app_password(SuspendAppPasswordRequest {
            name,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    replica.stop().await;
    server.stop().await;
}

async fn idle_passwords_are_refused_at_once_then_marked_once(backend: Backend) {
    let adjust = |config: &mut latchkey::config::Config| {
        config.app_passwords.default_idle_timeout =
            latchkey::domain::shared::time::Span::parse("2d");
        config.audit.prune_interval_secs = 3600;
    };
    let server = TestServer::start_with(backend, adjust).await;
    let replica = server.replica_with(adjust).await;
    // The server's default applies to a password that asks for none.
    let defaulted = issue(&server, issue_request("xia", "Default", &[Protocol::Imap])).await;
    assert_eq!(
        defaulted.app_password.unwrap().idle_timeout,
        Some(duration(2 * 86_400))
    );
    let mut request = issue_request("xia", "Tablet", &[Protocol::Imap]);
    request.idle_timeout = Some(duration(86_400));
    let issued = issue(&server, request).await;
    let (name, secret) = (issued.app_password.unwrap().name, issued.secret);

    // Used just before its timeout: it stays usable from that use.
    let tick = |seconds: u64| {
        server.clock.advance(Duration::from_secs(seconds));
        replica.clock.advance(Duration::from_secs(seconds));
    };
    tick(86_000);
    assert!(login_as(&server, "xia", &secret, Protocol::Imap, A).await);
    tick(86_000);
    assert!(login_as(&replica, "xia", &secret, Protocol::Imap, A).await);
    // Unused for a whole day: refused at once, on both, before any
    // housekeeping ran.
    tick(86_400);
    for node in [&server, &replica] {
        assert_refused(
            &login_with(node, "xia", &secret, Protocol::Imap, A).await,
            FailureReason::IdleExpired,
        );
    }
    assert_eq!(
        get_password(&server, &name).await.state(),
        State::IdleExpired
    );
    // Idle ones no longer count toward the cap, marked or not.
    let account = server
        .accounts()
        .get_account(latchkey::grpc::pb::GetAccountRequest {
            name: "accounts/xia".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(account.active_app_password_count, 0);

    // Both replicas' housekeeping runs (the clocks moved past its
    // interval); the password is marked, and audited, exactly once.
    tick(3_600);
    let mut marked = Vec::new();
    for attempt in 1..=200 {
        marked = events(&server, "xia", Some(AuditEventType::AppPasswordIdleExpired)).await;
        if marked.len() >= 2 {
            break;
        }
        // Housekeeping sleeps on the test's clocks: a run that was still
        // going when they moved sleeps from after the move (its steps are
        // many; under load it can be slow), so keep them moving.
        if attempt % 10 == 0 {
            tick(3_600);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two passwords went idle (the defaulted one after two days): one
    // event each, however many replicas ran.
    // Both replicas' housekeeping runs again at the moved clocks (each
    // has seen the move and, waking, run and gone back to sleep): nothing
    // is marked twice.
    let hour = Duration::from_secs(3_600);
    let patience = Duration::from_secs(20);
    assert!(server.clock.advance_and_settle(hour, patience).await);
    assert!(replica.clock.advance_and_settle(hour, patience).await);
    let marked_again = events(&server, "xia", Some(AuditEventType::AppPasswordIdleExpired)).await;
    assert_eq!(marked.len(), 2, "{marked:?}");
    assert_eq!(marked_again.len(), 2, "{marked_again:?}");
    assert_eq!(marked_again[0].actor, "housekeeping");
    let password = get_password(&server, &name).await;
    assert_eq!(password.state(), State::IdleExpired);
    assert!(password.idle_expire_time.is_some());
    // Over is over: an update cannot bring it back.
    let status = update(
        &server,
        AppPassword {
            name: name.clone(),
            idle_timeout: Some(duration(3_650 * 86_400)),
            ..Default::default()
        },
        &["idle_timeout"],
    )
    .await
    .unwrap_err();
    assert_eq!(reason_of(&status), "APP_PASSWORD_EXPIRED");
    replica.stop().await;
    server.stop().await;
}

async fn report(
    server: &TestServer,
    change: PrimaryCredentialChange,
    change_time: Option<prost_types::Timestamp>,
) -> Result<(PrimaryChangePolicy, i64), tonic::Status> {
    server
        .app_passwords()
        .report_primary_credential_change(ReportPrimaryCredentialChangeRequest {
            parent: "accounts/yan".into(),
            change: change as i32,
            change_time,
        })
        .await
        .map(|r| {
            let r = r.into_inner();
            (r.policy(), r.revoked_count)
        })
}

async fn primary_credential_changes_follow_the_policy(backend: Backend) {
    let server = TestServer::start(backend).await;
    let replica = server.replica_with(|_| {}).await;
    let (_, old_one) = issue_simple(&server, "yan").await;
    let (_, old_two) = issue_simple(&server, "yan").await;
    let now = |server: &TestServer| prost_types::Timestamp {
        seconds: server.clock.now().as_millis() / 1000,
        nanos: 0,
    };

    // A self-service change keeps them (and is audited all the same).
    assert_eq!(
        report(&server, PrimaryCredentialChange::SelfServiceChange, None)
            .await
            .unwrap(),
        (PrimaryChangePolicy::Keep, 0)
    );
    assert!(login_as(&replica, "yan", &old_one, Protocol::Imap, A).await);

    // An admin reset revokes those issued before the change, not after.
    server.clock.advance(Duration::from_secs(10));
    let reset_at = now(&server);
    server.clock.advance(Duration::from_secs(10));
    let (_, newer) = issue_simple(&server, "yan").await;
    assert_eq!(
        report(&server, PrimaryCredentialChange::AdminReset, Some(reset_at))
            .await
            .unwrap(),
        (PrimaryChangePolicy::RevokeIssuedBefore, 2)
    );
    for old in [&old_one, &old_two] {
        assert_refused(
            &login_with(&replica, "yan", old, Protocol::Imap, A).await,
            FailureReason::Revoked,
        );
    }
    assert!(login_as(&replica, "yan", &newer, Protocol::Imap, A).await);

    // A recovery revokes every one.
    assert_eq!(
        report(&server, PrimaryCredentialChange::AccountRecovery, None)
            .await
            .unwrap(),
        (PrimaryChangePolicy::RevokeAll, 1)
    );
    assert_refused(
        &login_with(&replica, "yan", &newer, Protocol::Imap, A).await,
        FailureReason::Revoked,
    );
    let reports = events(
        &server,
        "yan",
        Some(AuditEventType::PrimaryCredentialChanged),
    )
    .await;
    let details: Vec<(&str, Option<i64>)> = reports
        .iter()
        .map(|e| {
            let (kind_and_policy, when) = e.detail.split_once(" (changed at ").unwrap();
            assert!(when.ends_with(')'), "{}", e.detail);
            (kind_and_policy, Some(e.item_count))
        })
        .collect();
    assert_eq!(
        details,
        [
            ("account_recovery: revoke_all", Some(1)),
            ("admin_reset: revoke_issued_before", Some(2)),
            ("self_service_change: keep", Some(0)),
        ]
    );

    // Bad input: the kind is required, the time may not be in the future.
    let status = report(&server, PrimaryCredentialChange::Unspecified, None)
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["change"]);
    let mut future = now(&server);
    future.seconds += 3_600;
    let status = report(&server, PrimaryCredentialChange::AdminReset, Some(future))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["change_time"]);
    let mut ancient = now(&server);
    ancient.seconds -= 31 * 86_400;
    let status = report(&server, PrimaryCredentialChange::AdminReset, Some(ancient))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["change_time"]);
    let status = server
        .app_passwords()
        .report_primary_credential_change(ReportPrimaryCredentialChangeRequest {
            parent: "users/yan".into(),
            change: 42,
            change_time: None,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["parent", "change"]);
    assert_eq!(
        events(
            &server,
            "yan",
            Some(AuditEventType::PrimaryCredentialChanged)
        )
        .await
        .len(),
        3,
        "refused reports change nothing"
    );
    replica.stop().await;
    server.stop().await;
}

async fn bulk(
    server: &TestServer,
    filter: Option<AppPasswordFilter>,
    reason: &str,
    validate_only: bool,
) -> Result<latchkey::grpc::pb::BulkRevokeAppPasswordsResponse, tonic::Status> {
    AppPasswordServiceClient::new(server.as_role(Role::Operator))
        .bulk_revoke_app_passwords(BulkRevokeAppPasswordsRequest {
            filter,
            reason: reason.into(),
            validate_only,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn bulk_revocation_by_filter(backend: Backend) {
    let server = TestServer::start(backend).await;
    let replica = server.replica_with(|_| {}).await;
    // Old POP3 passwords of three accounts, one of them used recently; and
    // newer IMAP ones.
    let mut old = Vec::new();
    for user in ["ada", "bea", "cy"] {
        let issued = issue(&server, issue_request(user, "Old POP", &[Protocol::Pop3])).await;
        old.push((user, issued.secret));
    }
    server.clock.advance(Duration::from_secs(30 * 86_400));
    let cutoff = prost_types::Timestamp {
        seconds: server.clock.now().as_millis() / 1000,
        nanos: 0,
    };
    server.clock.advance(Duration::from_secs(86_400));
    replica.clock.set(server.clock.now());
    assert!(login_as(&server, "cy", &old[2].1, Protocol::Pop3, A).await);
    let mut newer = Vec::new();
    for user in ["ada", "bea"] {
        let issued = issue(&server, issue_request(user, "New IMAP", &[Protocol::Imap])).await;
        newer.push((user, issued.secret));
    }
    let filter = AppPasswordFilter {
        unused_since: Some(cutoff),
        protocol: Protocol::Pop3 as i32,
        ..Default::default()
    };

    // Validate only: the count and a sample, nothing changed.
    let preview = bulk(&server, Some(filter.clone()), "POP3 retired", true)
        .await
        .unwrap();
    assert_eq!(preview.matching_count, 2);
    assert_eq!(preview.sample.len(), 2);
    assert_eq!(preview.revoked_count, 0);
    assert!(preview.sample.iter().all(|p| p.display_name == "Old POP"));
    for sampled in &preview.sample {
        assert_eq!(
            get_password(&server, &sampled.name).await.state(),
            State::Active
        );
    }

    // A filter that matches nothing is a success that changes nothing.
    let nothing = AppPasswordFilter {
        issued_by: "nobody".into(),
        ..Default::default()
    };
    let none = bulk(&server, Some(nothing), "none", false).await.unwrap();
    assert_eq!((none.revoked_count, none.complete), (0, true));

    // ada's and bea's old ones (bea's was never used; cy's was, recently).
    let done = bulk(&server, Some(filter), "POP3 retired", false)
        .await
        .unwrap();
    assert_eq!(
        (done.revoked_count, done.account_count, done.complete),
        (2, 2, true)
    );
    for (user, secret) in &old[..2] {
        assert_refused(
            &login_with(&replica, user, secret, Protocol::Pop3, A).await,
            FailureReason::Revoked,
        );
    }
    assert!(login_as(&replica, "cy", &old[2].1, Protocol::Pop3, A).await);
    for (user, secret) in &newer {
        assert!(login_as(&replica, user, secret, Protocol::Imap, A).await);
    }
    for user in ["ada", "bea"] {
        let audited = events(&server, user, Some(AuditEventType::AppPasswordsBulkRevoked)).await;
        assert_eq!(audited.len(), 1);
        assert_eq!(
            (audited[0].item_count, audited[0].detail.as_str()),
            (1, "POP3 retired")
        );
    }

    // By issuer and creation time: everything the test's issuer issued
    // before now.
    let everything = AppPasswordFilter {
        issued_by: "test-issuer".into(),
        created_before: Some(prost_types::Timestamp {
            seconds: server.clock.now().as_millis() / 1000 + 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let preview = bulk(&server, Some(everything), "x", true).await.unwrap();
    assert_eq!(
        preview.matching_count, 3,
        "the revoked ones no longer match"
    );

    // Bad input, field by field; nothing changes.
    let cases: Vec<(Option<AppPasswordFilter>, &str, Vec<&str>)> = vec![
        (None, "x", vec!["filter"]),
        (Some(AppPasswordFilter::default()), "x", vec!["filter"]),
        (
            Some(AppPasswordFilter {
                protocol: Protocol::Any as i32,
                ..Default::default()
            }),
            "x",
            vec!["filter.protocol"],
        ),
        (
            Some(AppPasswordFilter {
                unused_since: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                issued_by: "bad\nname".into(),
                ..Default::default()
            }),
            "",
            vec!["filter.unused_since", "filter.issued_by", "reason"],
        ),
    ];
    for (filter, reason, fields) in cases {
        let status = bulk(&server, filter, reason, false).await.unwrap_err();
        assert_eq!(violated_fields(&status), fields);
    }
    for (user, secret) in &newer {
        assert!(login_as(&replica, user, secret, Protocol::Imap, A).await);
    }
    // Operators only.
    let status = AppPasswordServiceClient::new(server.as_role(Role::Issuer))
        .bulk_revoke_app_passwords(BulkRevokeAppPasswordsRequest {
            filter: Some(AppPasswordFilter {
                issued_by: "x".into(),
                ..Default::default()
            }),
            reason: "x".into(),
            validate_only: true,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    replica.stop().await;
    server.stop().await;
}

async fn explain_login_says_why(backend: Backend) {
    let server = TestServer::start(backend).await;
    let replica = server.replica_with(|_| {}).await;
    // Issued by an operator, so the test's issuer has none of them.
    let mut operator = AppPasswordServiceClient::new(server.as_role(Role::Operator));
    let mut issue_as_operator = async |name: &str, protocols: &[Protocol]| {
        let issued = operator
            .issue_app_password(issue_request("zed", name, protocols))
            .await
            .unwrap()
            .into_inner();
        (issued.app_password.unwrap().name, issued.secret)
    };
    let (imap_only, imap_secret) = issue_as_operator("Laptop", &[Protocol::Imap]).await;
    let (suspended, suspended_secret) =
        issue_as_operator("Phone", &[Protocol::Imap, Protocol::Smtp]).await;
    suspend(&server, &suspended).await.unwrap();
    let (revoked, _) = issue_as_operator("Old", &[Protocol::Imap, Protocol::Smtp]).await;
    revoke(&server, revoked.clone()).await;
    // Failures from B: a suspended password tried, and wrong guesses.
    login_with(&server, "zed", &suspended_secret, Protocol::Smtp, B).await;
    for n in 0..3 {
        login_with(&server, "zed", &wrong_secret(n), Protocol::Smtp, B).await;
    }

    let mut helpdesk = LegacyAuthServiceClient::new(server.as_role(Role::Operator));
    let answer = explain(&mut helpdesk, "Zed", B, Protocol::Smtp)
        .await
        .unwrap();
    assert!(answer.account_exists && !answer.account_disabled);
    assert_eq!(answer.username, "zed");
    let verdicts: Vec<(String, FailureReason)> = answer
        .app_passwords
        .iter()
        .map(|v| (v.app_password.clone().unwrap().name, v.refused_by()))
        .collect();
    assert_eq!(
        verdicts,
        // Those not revoked first (they decide a login), newest first.
        [
            (suspended.clone(), FailureReason::Suspended),
            (imap_only.clone(), FailureReason::ProtocolNotAllowed),
            (revoked.clone(), FailureReason::Revoked),
        ]
    );
    let source = answer.source.unwrap();
    let pair = answer.pair.unwrap();
    assert_eq!((source.failures, pair.failures), (4, 4));
    assert!(!pair.known_source);
    assert_eq!(answer.account.unwrap().failures, 4);
    let reasons: Vec<&str> = answer
        .recent_failures
        .iter()
        .map(|f| f.reason.as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "invalid_credentials",
            "invalid_credentials",
            "invalid_credentials",
            "suspended"
        ]
    );
    assert_eq!(answer.recent_failures[3].app_password, suspended);
    assert_eq!(answer.recent_failures[0].client_ip, B);
    assert!(
        answer.summary.contains("no app password is usable"),
        "{}",
        answer.summary
    );
    // Nothing secret in it: no secret, no guess.
    let printed = format!("{answer:?}");
    for secret in [&imap_secret, &suspended_secret] {
        for form in secret_forms(secret) {
            assert!(!printed.contains(&form));
        }
    }
    for n in 0..3 {
        assert!(!printed.contains(&wrong_secret(n)));
    }

    // IMAP from A: the laptop's would pass; the same on the other replica.
    let mut on_replica = LegacyAuthServiceClient::new(replica.as_role(Role::Operator));
    let answer = explain(&mut on_replica, "zed", A, Protocol::Imap)
        .await
        .unwrap();
    assert_eq!(
        answer.app_passwords[1].refused_by(),
        FailureReason::Unspecified
    );
    assert!(answer.summary.starts_with("usable"), "{}", answer.summary);
    // Without an address or protocol: only the lifecycle is checked, and
    // only the account scope is shown.
    let answer = explain(&mut helpdesk, "zed", "", Protocol::Unspecified)
        .await
        .unwrap();
    assert!(answer.source.is_none() && answer.pair.is_none());
    assert_eq!(
        answer.app_passwords[1].refused_by(),
        FailureReason::Unspecified
    );

    // Explaining changes nothing: the counters are as they were.
    let answer = explain(&mut helpdesk, "zed", B, Protocol::Smtp)
        .await
        .unwrap();
    assert_eq!(answer.source.unwrap().failures, 4);

    // Issuers: their own users only; others look like no account at all.
    let mut issuer = LegacyAuthServiceClient::new(server.as_role(Role::Issuer));
    let status = explain(&mut issuer, "zed", "", Protocol::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(reason_of(&status), "ACCOUNT_NOT_FOUND");
    AppPasswordServiceClient::new(server.as_role(Role::Issuer))
        .issue_app_password(issue_request("zed", "Portal's", &[Protocol::Imap]))
        .await
        .unwrap();
    let answer = explain(&mut issuer, "zed", "", Protocol::Unspecified)
        .await
        .unwrap();
    // Its own password only (tests/it/issuers.rs has the rest).
    assert_eq!(answer.app_passwords.len(), 1);
    let status = explain(
        &mut LegacyAuthServiceClient::new(server.as_role(Role::Authenticator)),
        "zed",
        "",
        Protocol::Unspecified,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Unknown accounts and bad input.
    let answer = explain(&mut helpdesk, "nobody", A, Protocol::Imap)
        .await
        .unwrap();
    assert!(!answer.account_exists && answer.app_passwords.is_empty());
    let status = helpdesk
        .explain_login(ExplainLoginRequest {
            username: " ".into(),
            client_ip: "300.1.1.1".into(),
            protocol: Protocol::Any as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["username", "client_ip", "protocol"]
    );
    replica.stop().await;
    server.stop().await;
}

async fn ended_passwords_are_pruned_after_retention(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.app_passwords.prune_ended_after = latchkey::domain::shared::time::Span::days(7);
        config.audit.prune_interval_secs = 3600;
    })
    .await;
    let (ended, _) = issue_simple(&server, "ivy").await;
    let (kept, _) = issue_simple(&server, "ivy").await;
    revoke(&server, ended.clone()).await;
    // Housekeeping has run at six days (seen the move, run, and gone back
    // to sleep): the password is still there.
    assert!(
        server
            .clock
            .advance_and_settle(Duration::from_secs(6 * 86_400), Duration::from_secs(20))
            .await
    );
    get_password(&server, &ended).await;
    // And again at eight days, when it has gone.
    assert!(
        server
            .clock
            .advance_and_settle(Duration::from_secs(2 * 86_400), Duration::from_secs(20))
            .await
    );
    let found = server
        .app_passwords()
        .get_app_password(GetAppPasswordRequest {
            name: ended.clone(),
        })
        .await;
    let gone = found.is_err_and(|status| status.code() == Code::NotFound);
    assert!(gone, "a password revoked 8 days ago is pruned after 7");
    assert_eq!(get_password(&server, &kept).await.state(), State::Active);
    // Its history stays.
    let revoked = events(&server, "ivy", Some(AuditEventType::AppPasswordRevoked)).await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].app_password, ended);
    server.stop().await;
}

/// An update toggles a password between (IMAP, from A's network) and
/// (SMTP, from B's) while logins keep trying IMAP from B and SMTP from A,
/// which neither state allows: none may pass.
async fn an_update_racing_logins_never_mixes_old_and_new(backend: Backend) {
    let server = TestServer::start(backend).await;
    let replica = server.replica_with(|_| {}).await;
    let mut request = issue_request("kim", "Racer", &[Protocol::Imap]);
    request.allowed_networks = vec!["192.0.2.0/24".into()];
    let issued = issue(&server, request).await;
    let (name, secret) = (issued.app_password.unwrap().name, issued.secret);
    let states = [
        (Protocol::Imap, "192.0.2.0/24"),
        (Protocol::Smtp, "198.51.100.0/24"),
    ];
    let updates = {
        let server_channel = server.app_passwords();
        let name = name.clone();
        tokio::spawn(async move {
            let mut client = server_channel;
            for round in 0..40 {
                let (protocol, network) = states[(round + 1) % 2];
                client
                    .update_app_password(UpdateAppPasswordRequest {
                        app_password: Some(AppPassword {
                            name: name.clone(),
                            protocols: vec![protocol as i32],
                            allowed_networks: vec![network.into()],
                            ..Default::default()
                        }),
                        update_mask: mask(&["protocols", "allowed_networks"]),
                    })
                    .await
                    .expect("update");
            }
        })
    };
    let mut mixed = 0;
    let mut allowed = 0;
    while !updates.is_finished() {
        for node in [&server, &replica] {
            for (protocol, ip) in [(Protocol::Imap, B), (Protocol::Smtp, A)] {
                mixed += u32::from(login_as(node, "kim", &secret, protocol, ip).await);
            }
            for (protocol, ip) in [(Protocol::Imap, A), (Protocol::Smtp, B)] {
                allowed += u32::from(login_as(node, "kim", &secret, protocol, ip).await);
            }
        }
    }
    updates.await.unwrap();
    assert_eq!(mixed, 0, "a login passed under rules neither state allowed");
    assert!(allowed > 0, "the allowed combinations did pass");
    assert_eq!(
        events(&server, "kim", Some(AuditEventType::AppPasswordUpdated))
            .await
            .len(),
        40
    );
    let _ = get_password(&server, &name).await;
    replica.stop().await;
    server.stop().await;
}

/// Suspends and resumes sent at once through two replicas end in one of
/// the two states, and the audit trail, read in order, alternates and ends
/// in the state the password is in.
async fn suspends_racing_resumes_end_in_the_last_audited_state(backend: Backend) {
    let server = TestServer::start(backend).await;
    let replica = server.replica_with(|_| {}).await;
    let (name, _) = issue_simple(&server, "lou").await;
    let mut tasks = Vec::new();
    for n in 0..30 {
        let mut client = if n % 2 == 0 {
            server.app_passwords()
        } else {
            replica.app_passwords()
        };
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            if n % 3 == 0 {
                client
                    .resume_app_password(ResumeAppPasswordRequest { name })
                    .await
                    .map(|_| ())
            } else {
                client
                    .suspend_app_password(SuspendAppPasswordRequest {
                        name,
                        reason: format!("round {n}"),
                    })
                    .await
                    .map(|_| ())
            }
        }));
    }
    for task in tasks {
        task.await
            .unwrap()
            .expect("every suspend and resume succeeds");
    }
    let state = get_password(&server, &name).await.state();
    assert!(matches!(state, State::Active | State::Suspended));
    let mut changes: Vec<AuditEventType> = events(&server, "lou", None)
        .await
        .into_iter()
        .map(|e| e.r#type())
        .filter(|t| {
            matches!(
                t,
                AuditEventType::AppPasswordSuspended | AuditEventType::AppPasswordResumed
            )
        })
        .collect();
    changes.reverse();
    assert!(!changes.is_empty());
    assert_eq!(changes[0], AuditEventType::AppPasswordSuspended);
    for pair in changes.windows(2) {
        assert_ne!(pair[0], pair[1], "changes alternate: {changes:?}");
    }
    let last = *changes.last().unwrap();
    assert_eq!(
        state == State::Suspended,
        last == AuditEventType::AppPasswordSuspended,
        "{changes:?} ends in {state:?}"
    );
    replica.stop().await;
    server.stop().await;
}
