//! The audit trail of a full walk, in order, with the right fields.

use std::time::Duration;

use latchkey::grpc::pb::{
    AuditEvent, AuditEventType, DisableAccountRequest, ListAuditEventsRequest, Protocol,
    RevokeAppPasswordRequest,
};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    a_full_walk_is_recorded_in_order,
    audit_listing_pages_and_filters
);

async fn a_full_walk_is_recorded_in_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tick = || server.clock.advance(Duration::from_secs(1));

    let issued = issue(&server, issue_request("sam", "Phone", &[Protocol::Imap])).await;
    let name = issued.app_password.unwrap().name;
    tick();
    let (_, other) = issue_simple(&server, "tina").await;
    tick();
    // Failed: a wrong password for a real account, and an unknown account.
    login_with(&server, "sam", &other, Protocol::Imap, "198.51.100.7").await;
    tick();
    login_with(&server, "nobody", &other, Protocol::Pop3, "198.51.100.8").await;
    tick();
    // Succeeded: first use, again from the same /24 (no event), then from a
    // new network.
    assert!(
        login_with(&server, "sam", &issued.secret, Protocol::Imap, "192.0.2.10")
            .await
            .authenticated
    );
    tick();
    assert!(
        login_with(&server, "sam", &issued.secret, Protocol::Imap, "192.0.2.99")
            .await
            .authenticated
    );
    tick();
    assert!(
        login_with(
            &server,
            "sam",
            &issued.secret,
            Protocol::Imap,
            "2001:db8::5"
        )
        .await
        .authenticated
    );
    tick();
    server
        .app_passwords()
        .revoke_app_password(RevokeAppPasswordRequest {
            name: name.clone(),
            reason: "phone lost".into(),
        })
        .await
        .unwrap();
    tick();
    server
        .accounts()
        .disable_account(DisableAccountRequest {
            name: "accounts/sam".into(),
            reason: "compromised".into(),
        })
        .await
        .unwrap();

    let sam = audit_events(
        &server,
        ListAuditEventsRequest {
            account: "accounts/sam".into(),
            ..Default::default()
        },
    )
    .await;
    let types: Vec<AuditEventType> = sam.iter().map(|e| e.r#type()).collect();
    assert_eq!(
        types,
        [
            AuditEventType::AccountDisabled,
            AuditEventType::AppPasswordRevoked,
            AuditEventType::AppPasswordNewNetwork,
            AuditEventType::AppPasswordFirstUse,
            AuditEventType::AuthenticationFailed,
            AuditEventType::AppPasswordIssued,
        ],
        "{sam:#?}"
    );
    let [disabled, revoked, new_network, first_use, failed, issued_event] = sam.as_slice() else {
        unreachable!()
    };
    assert_eq!(
        (disabled.actor.as_str(), disabled.detail.as_str()),
        ("test-operator", "compromised")
    );
    assert_eq!(disabled.account, "accounts/sam");
    assert_eq!(
        (revoked.actor.as_str(), revoked.app_password.as_str()),
        ("test-issuer", name.as_str())
    );
    assert_eq!(revoked.detail, "phone lost");
    assert_eq!(new_network.client_ip, "2001:db8::5");
    assert_eq!(new_network.detail, "2001:db8::/64");
    assert_eq!(new_network.actor, "test-authenticator");
    assert_eq!(first_use.client_ip, "192.0.2.10");
    assert_eq!(first_use.protocol(), Protocol::Imap);
    assert_eq!(first_use.app_password, name);
    assert_eq!(failed.detail, "invalid_credentials");
    assert_eq!(failed.client_ip, "198.51.100.7");
    assert!(
        failed.app_password.is_empty(),
        "a wrong password names no password"
    );
    assert_eq!(
        (
            issued_event.actor.as_str(),
            issued_event.app_password.as_str()
        ),
        ("test-issuer", name.as_str())
    );
    for pair in sam.windows(2) {
        let seconds = |e: &AuditEvent| e.occur_time.unwrap().seconds;
        assert!(seconds(&pair[0]) > seconds(&pair[1]), "not newest first");
    }

    // The unknown account's failure is recorded without an account.
    let failures = audit_events(
        &server,
        ListAuditEventsRequest {
            types: vec![AuditEventType::AuthenticationFailed as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(failures.len(), 2);
    assert!(failures[0].account.is_empty());
    assert_eq!(failures[0].protocol(), Protocol::Pop3);
    assert_eq!(failures[0].client_ip, "198.51.100.8");

    // A refused login with the right password names the password.
    let refused = login(&server, "sam", &issued.secret).await;
    assert!(!refused.authenticated);
    let latest = audit_events(
        &server,
        ListAuditEventsRequest {
            app_password: name.clone(),
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(latest[0].r#type(), AuditEventType::AuthenticationFailed);
    assert_eq!(latest[0].detail, "account_disabled");
    server.stop().await;
}

async fn audit_listing_pages_and_filters(backend: Backend) {
    let server = TestServer::start(backend).await;
    for i in 0..5 {
        server.clock.advance(Duration::from_secs(1));
        issue_simple(&server, &format!("user{i}")).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = server
            .audit()
            .list_audit_events(ListAuditEventsRequest {
                types: vec![AuditEventType::AppPasswordIssued as i32],
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.audit_events.into_iter().map(|e| e.account));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        [
            "accounts/user4",
            "accounts/user3",
            "accounts/user2",
            "accounts/user1",
            "accounts/user0"
        ]
    );

    // A time window.
    let start = latchkey_start_plus(2);
    let windowed = audit_events(
        &server,
        ListAuditEventsRequest {
            types: vec![AuditEventType::AppPasswordIssued as i32],
            start_time: Some(start),
            end_time: Some(latchkey_start_plus(4)),
            ..Default::default()
        },
    )
    .await;
    let accounts: Vec<&str> = windowed.iter().map(|e| e.account.as_str()).collect();
    assert_eq!(accounts, ["accounts/user2", "accounts/user1"]);

    let status = server
        .audit()
        .list_audit_events(ListAuditEventsRequest {
            account: "accounts/a b".into(),
            types: vec![99],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["account", "types"]);
    server.stop().await;
}

fn latchkey_start_plus(seconds: i64) -> prost_types::Timestamp {
    let start = crate::common::harness::START.as_millis() / 1000;
    prost_types::Timestamp {
        seconds: start + seconds,
        nanos: 0,
    }
}

#[tokio::test]
async fn events_past_retention_are_pruned_in_the_background() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.audit.retention_days = 1;
        config.audit.prune_interval_secs = 1;
    })
    .await;
    issue_simple(&server, "old").await;
    server.clock.advance(Duration::from_secs(36 * 3600));
    issue_simple(&server, "new").await;

    // Housekeeping's first run may still be going when the clock jumps (it
    // sleeps from where the clock is when it ends): each poll moves the
    // clock past its interval, so that it runs again.
    let pruned = "events past retention pruned, leaving only accounts/new";
    eventually(pruned, Duration::from_secs(10), async || {
        let remaining = audit_events(&server, ListAuditEventsRequest::default()).await;
        let accounts: Vec<&str> = remaining.iter().map(|e| e.account.as_str()).collect();
        let pruned = accounts == ["accounts/new"];
        if !pruned {
            server.clock.advance(Duration::from_secs(1));
        }
        pruned.then_some(())
    })
    .await;
    server.stop().await;
}
