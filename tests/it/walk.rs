//! The path a user walks: issue, sign in, review, revoke, be refused.

use latchkey::grpc::pb::app_password::State;
use latchkey::grpc::pb::{
    FailureReason, GetAccountRequest, GetAppPasswordRequest, ListAppPasswordsRequest,
    ListAppPasswordsResponse, Protocol, RevokeAppPasswordRequest,
};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    issue_authenticate_review_revoke,
    secret_is_typed_forgivingly,
    usernames_are_normalized_alike
);

async fn issue_authenticate_review_revoke(backend: Backend) {
    let server = TestServer::start(backend).await;

    let issued = issue(
        &server,
        issue_request(
            "alice@example.com",
            "Thunderbird on the laptop",
            &[Protocol::Imap, Protocol::Smtp],
        ),
    )
    .await;
    let password = issued.app_password.clone().unwrap();
    assert!(password
        .name
        .starts_with("accounts/alice@example.com/appPasswords/"));
    assert_eq!(password.display_name, "Thunderbird on the laptop");
    assert_eq!(
        password.protocols,
        [Protocol::Imap as i32, Protocol::Smtp as i32]
    );
    assert_eq!(password.state(), State::Active);
    assert_eq!(password.issued_by, "test-issuer");
    assert_eq!(password.use_count, 0);
    assert!(password.last_use_time.is_none() && password.revoke_time.is_none());
    let groups: Vec<&str> = issued.secret.split(' ').collect();
    assert_eq!(groups.len(), 9);
    assert!(
        groups[0].starts_with("lk"),
        "the marker of a version 2 secret"
    );
    assert!(groups
        .iter()
        .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_lowercase())));

    let ok = login_with(
        &server,
        "alice@example.com",
        &issued.secret,
        Protocol::Smtp,
        "2001:db8::7",
    )
    .await;
    assert!(ok.authenticated, "{ok:?}");
    assert_eq!(ok.failure_reason(), FailureReason::Unspecified);
    assert_eq!(ok.username, "alice@example.com");
    assert_eq!(ok.app_password, password.name);

    let listed = list_alice(&server, false).await;
    assert_eq!(listed.app_passwords.len(), 1);
    assert!(listed.next_page_token.is_empty());
    let reviewed = &listed.app_passwords[0];
    assert_eq!(reviewed.name, password.name);
    assert_eq!(reviewed.use_count, 1);
    assert_eq!(reviewed.last_use_client_ip, "2001:db8::7");
    assert_eq!(reviewed.last_use_protocol(), Protocol::Smtp);
    assert!(reviewed.last_use_time.is_some());

    server.clock.advance(std::time::Duration::from_secs(60));
    let revoked = server
        .app_passwords()
        .revoke_app_password(RevokeAppPasswordRequest {
            name: password.name.clone(),
            reason: "laptop sold".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.state(), State::Revoked);
    assert_eq!(revoked.revoke_reason, "laptop sold");
    let first_revoke_time = revoked.revoke_time;
    assert!(first_revoke_time.is_some());

    // Revoking again succeeds and keeps the first revocation.
    server.clock.advance(std::time::Duration::from_secs(60));
    let again = server
        .app_passwords()
        .revoke_app_password(RevokeAppPasswordRequest {
            name: password.name.clone(),
            reason: "second thoughts".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.revoke_time, first_revoke_time);
    assert_eq!(again.revoke_reason, "laptop sold");

    let refused = login(&server, "alice@example.com", &issued.secret).await;
    assert_refused(&refused, FailureReason::Revoked);

    let fetched = server
        .app_passwords()
        .get_app_password(GetAppPasswordRequest {
            name: password.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.state(), State::Revoked);
    assert_eq!(fetched.use_count, 1, "a refused login is not a use");

    let hidden = list_alice(&server, false).await;
    assert!(
        hidden.app_passwords.is_empty(),
        "revoked passwords are hidden by default"
    );
    let shown = list_alice(&server, true).await;
    assert_eq!(shown.app_passwords.len(), 1);

    let account = server
        .accounts()
        .get_account(GetAccountRequest {
            name: "accounts/alice@example.com".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(account.active_app_password_count, 0);

    server.stop().await;
}

async fn secret_is_typed_forgivingly(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, secret) = issue_simple(&server, "carol").await;
    let canonical = secret.replace(' ', "");
    let dashed = secret.replace(' ', "-");
    for typed in [
        secret.clone(),
        canonical.clone(),
        dashed.to_uppercase(),
        format!("  {secret}  "),
    ] {
        let response = login(&server, "carol", &typed).await;
        assert!(response.authenticated, "{typed:?} was refused");
    }
    // One letter off is a wrong password, not an error.
    let mut wrong = canonical.into_bytes();
    wrong[27] = if wrong[27] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).unwrap();
    assert_refused(
        &login(&server, "carol", &wrong).await,
        FailureReason::InvalidCredentials,
    );
    server.stop().await;
}

async fn usernames_are_normalized_alike(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (name, secret) = issue_simple(&server, "Dave@Example.COM").await;
    assert!(name.starts_with("accounts/dave@example.com/"));
    for typed in [
        "dave@example.com",
        "  DAVE@example.com ",
        "ｄａｖｅ@example.com",
    ] {
        let response = login(&server, typed, &secret).await;
        assert!(response.authenticated, "{typed:?} was refused");
        assert_eq!(response.username, "dave@example.com");
    }
    // The normalized form is one account: a second issue lands on it.
    issue_simple(&server, "DAVE@EXAMPLE.com").await;
    let account = server
        .accounts()
        .get_account(GetAccountRequest {
            name: "accounts/Dave@example.com".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(account.active_app_password_count, 2);
    server.stop().await;
}

async fn list_alice(server: &TestServer, show_revoked: bool) -> ListAppPasswordsResponse {
    server
        .app_passwords()
        .list_app_passwords(ListAppPasswordsRequest {
            parent: "accounts/alice@example.com".into(),
            show_revoked,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}
