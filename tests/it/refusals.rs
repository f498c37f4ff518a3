//! Every way a right password is still refused, and that failures without
//! the right password all look alike.

use std::time::Duration;

use latchkey::grpc::pb::app_password::State;
use latchkey::grpc::pb::{
    account, DisableAccountRequest, EnableAccountRequest, FailureReason, GetAppPasswordRequest,
    IssueAppPasswordRequest, Protocol,
};
use tonic::Code;

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    expired_passwords_are_refused,
    disabled_accounts_are_refused_and_restored,
    protocols_and_networks_are_enforced,
    unknown_user_and_wrong_password_look_alike,
    accounts_with_the_same_display_names_stay_apart,
);

async fn expired_passwords_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let request = with_ttl(issue_request("erin", "Printer", &[Protocol::Smtp]), 3600);
    let issued = issue(&server, request).await;
    let name = issued.app_password.unwrap().name;
    let ok = login_with(&server, "erin", &issued.secret, Protocol::Smtp, "192.0.2.1").await;
    assert!(ok.authenticated);

    server.clock.advance(Duration::from_secs(3600));
    let refused = login_with(&server, "erin", &issued.secret, Protocol::Smtp, "192.0.2.1").await;
    assert_refused(&refused, FailureReason::Expired);
    let fetched = server
        .app_passwords()
        .get_app_password(GetAppPasswordRequest { name })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.state(), State::Expired);

    // An absolute expiry in the past is refused up front.
    let mut past = issue_request("erin", "Old", &[Protocol::Smtp]);
    past.expiration = Some(
        latchkey::grpc::pb::issue_app_password_request::Expiration::ExpireTime(
            prost_types::Timestamp {
                seconds: 1_000,
                nanos: 0,
            },
        ),
    );
    let status = server
        .app_passwords()
        .issue_app_password(past)
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["expire_time"]);
    server.stop().await;
}

async fn disabled_accounts_are_refused_and_restored(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, secret) = issue_simple(&server, "frank").await;

    let disabled = server
        .accounts()
        .disable_account(DisableAccountRequest {
            name: "accounts/frank".into(),
            reason: "compromised".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(disabled.state(), account::State::Disabled);
    assert_eq!(disabled.disable_reason, "compromised");
    assert_refused(
        &login(&server, "frank", &secret).await,
        FailureReason::AccountDisabled,
    );

    let status = server
        .app_passwords()
        .issue_app_password(issue_request("frank", "Another", &[Protocol::Imap]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    let enabled = server
        .accounts()
        .enable_account(EnableAccountRequest {
            name: "accounts/frank".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(enabled.state(), account::State::Active);
    assert!(enabled.disable_time.is_none() && enabled.disable_reason.is_empty());
    assert!(login(&server, "frank", &secret).await.authenticated);

    let missing = server
        .accounts()
        .disable_account(DisableAccountRequest {
            name: "accounts/nobody".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

async fn protocols_and_networks_are_enforced(backend: Backend) {
    let server = TestServer::start(backend).await;
    let request = IssueAppPasswordRequest {
        allowed_networks: vec!["192.0.2.0/24".into(), "2001:db8:1::/48".into()],
        ..issue_request("grace", "Office scanner", &[Protocol::Smtp])
    };
    let issued = issue(&server, request).await;
    assert_eq!(
        issued.app_password.unwrap().allowed_networks,
        ["192.0.2.0/24", "2001:db8:1::/48"]
    );
    let secret = issued.secret;

    for ip in ["192.0.2.99", "::ffff:192.0.2.5", "2001:db8:1:ffff::1"] {
        let ok = login_with(&server, "grace", &secret, Protocol::Smtp, ip).await;
        assert!(ok.authenticated, "{ip} was refused");
    }
    for ip in ["198.51.100.1", "2001:db8:2::1"] {
        let refused = login_with(&server, "grace", &secret, Protocol::Smtp, ip).await;
        assert_refused(&refused, FailureReason::NetworkNotAllowed);
    }
    let refused = login_with(&server, "grace", &secret, Protocol::Imap, "192.0.2.99").await;
    assert_refused(&refused, FailureReason::ProtocolNotAllowed);

    // ANY covers every concrete protocol.
    let any = issue(
        &server,
        issue_request("grace", "Everything", &[Protocol::Any]),
    )
    .await;
    for protocol in [
        Protocol::Imap,
        Protocol::Pop3,
        Protocol::Mapi,
        Protocol::ExchangeActivesync,
    ] {
        let ok = login_with(&server, "grace", &any.secret, protocol, "203.0.113.9").await;
        assert!(ok.authenticated, "{protocol:?} was refused");
    }
    server.stop().await;
}

async fn unknown_user_and_wrong_password_look_alike(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, secret) = issue_simple(&server, "heidi").await;
    let (_, other_secret) = issue_simple(&server, "ivan").await;

    let unknown_user = login(&server, "nobody-here", &secret).await;
    let wrong_password = login(&server, "heidi", &other_secret).await;
    let malformed_password = login(&server, "heidi", "not an app password").await;
    let unknown_and_malformed = login(&server, "nobody-here", "hunter2").await;
    assert_refused(&unknown_user, FailureReason::InvalidCredentials);
    assert_eq!(unknown_user, wrong_password);
    assert_eq!(unknown_user, malformed_password);
    assert_eq!(unknown_user, unknown_and_malformed);
    server.stop().await;
}

async fn accounts_with_the_same_display_names_stay_apart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = issue(&server, issue_request("alice", "Phone", &[Protocol::Any])).await;
    let bob = issue(&server, issue_request("bob", "Phone", &[Protocol::Any])).await;
    let alice_name = alice.app_password.unwrap().name;

    assert!(login(&server, "alice", &alice.secret).await.authenticated);
    assert!(login(&server, "bob", &bob.secret).await.authenticated);
    assert_refused(
        &login(&server, "bob", &alice.secret).await,
        FailureReason::InvalidCredentials,
    );
    assert_refused(
        &login(&server, "alice", &bob.secret).await,
        FailureReason::InvalidCredentials,
    );

    // Alice's password is not reachable under Bob's name.
    let under_bob = alice_name.replace("accounts/alice/", "accounts/bob/");
    let status = server
        .app_passwords()
        .revoke_app_password(latchkey::grpc::pb::RevokeAppPasswordRequest {
            name: under_bob,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(login(&server, "alice", &alice.secret).await.authenticated);

    server
        .app_passwords()
        .revoke_app_password(latchkey::grpc::pb::RevokeAppPasswordRequest {
            name: alice_name,
            reason: String::new(),
        })
        .await
        .unwrap();
    assert!(login(&server, "bob", &bob.secret).await.authenticated);
    server.stop().await;
}

/// Every error carries a google.rpc.ErrorInfo with a stable reason in the
/// `latchkey` domain, so callers can branch without reading messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_a_stable_reason() {
    use tonic_types::StatusExt;
    let server = TestServer::start_with(Backend::Sqlite, |c| c.max_active_app_passwords = 1).await;
    let reason = |status: &tonic::Status| {
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.domain, "latchkey");
        info.reason
    };
    issue_simple(&server, "rex").await;
    let capped = server
        .app_passwords()
        .issue_app_password(issue_request("rex", "Second", &[Protocol::Imap]))
        .await
        .unwrap_err();
    assert_eq!(reason(&capped), "APP_PASSWORD_CAP_REACHED");
    let missing = server
        .accounts()
        .get_account(latchkey::grpc::pb::GetAccountRequest {
            name: "accounts/nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&missing), "ACCOUNT_NOT_FOUND");
    server
        .accounts()
        .disable_account(DisableAccountRequest {
            name: "accounts/rex".into(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let disabled = server
        .app_passwords()
        .issue_app_password(issue_request("rex", "Third", &[Protocol::Imap]))
        .await
        .unwrap_err();
    assert_eq!(reason(&disabled), "ACCOUNT_DISABLED");
    let invalid = server
        .app_passwords()
        .issue_app_password(issue_request("rex", "", &[Protocol::Imap]))
        .await
        .unwrap_err();
    assert_eq!(reason(&invalid), "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&invalid), ["display_name"]);
    let stranger = latchkey::grpc::pb::account_service_client::AccountServiceClient::new(
        server.as_caller(None),
    )
    .list_accounts(latchkey::grpc::pb::ListAccountsRequest::default())
    .await
    .unwrap_err();
    assert_eq!(reason(&stranger), "CALLER_UNAUTHENTICATED");
    let proxy = latchkey::grpc::pb::account_service_client::AccountServiceClient::new(
        server.as_role(latchkey::domain::callers::model::Role::Authenticator),
    )
    .list_accounts(latchkey::grpc::pb::ListAccountsRequest::default())
    .await
    .unwrap_err();
    assert_eq!(reason(&proxy), "ROLE_NOT_ALLOWED");
    server.stop().await;
}
