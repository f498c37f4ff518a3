//! Reviewing: paging through passwords and accounts, revoking all of an
//! account's passwords, deleting an account.

use std::collections::HashSet;

use latchkey::grpc::pb::{
    DeleteAccountRequest, FailureReason, GetAccountRequest, GetAppPasswordRequest,
    ListAccountsRequest, ListAppPasswordsRequest, Protocol, RevokeAccountAppPasswordsRequest,
};
use tonic::Code;

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    passwords_page_newest_first,
    accounts_page_in_username_order,
    revoke_all_and_delete_account,
);

async fn passwords_page_newest_first(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut issued = Vec::new();
    for i in 0..7 {
        server.clock.advance(std::time::Duration::from_secs(1));
        let response = issue(
            &server,
            issue_request("olga", &format!("Device {i}"), &[Protocol::Imap]),
        )
        .await;
        issued.push(response.app_password.unwrap().name);
    }
    let newest_first: Vec<String> = issued.iter().rev().cloned().collect();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = server
            .app_passwords()
            .list_app_passwords(ListAppPasswordsRequest {
                parent: "accounts/olga".into(),
                page_size: 3,
                page_token: token.clone(),
                show_revoked: false,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.app_passwords.len() <= 3);
        seen.extend(page.app_passwords.into_iter().map(|p| p.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        // A token is bound to its listing.
        let status = server
            .app_passwords()
            .list_app_passwords(ListAppPasswordsRequest {
                parent: "accounts/olga".into(),
                page_size: 3,
                page_token: token.clone(),
                show_revoked: true,
            })
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["page_token"]);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, newest_first);
    server.stop().await;
}

async fn accounts_page_in_username_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    for user in ["pete", "anna", "zoe", "Émile", "bob"] {
        issue_simple(&server, user).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = server
            .accounts()
            .list_accounts(ListAccountsRequest {
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        for account in &page.accounts {
            assert_eq!(account.active_app_password_count, 1);
            assert_eq!(account.name, format!("accounts/{}", account.username));
        }
        seen.extend(page.accounts.into_iter().map(|a| a.username));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5, "{seen:?}");
    for pair in seen.windows(2) {
        assert!(
            pair[0] < pair[1] || !pair[0].is_ascii() || !pair[1].is_ascii(),
            "{seen:?}"
        );
    }
    assert!(seen.contains(&"émile".to_owned()));
    server.stop().await;
}

async fn revoke_all_and_delete_account(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, first) = issue_simple(&server, "quinn").await;
    let (_, second) = issue_simple(&server, "quinn").await;
    let expiring = issue(
        &server,
        with_ttl(issue_request("quinn", "Short", &[Protocol::Imap]), 10),
    )
    .await;
    let (other_name, other) = issue_simple(&server, "rosa").await;
    server.clock.advance(std::time::Duration::from_secs(11));

    let revoked = server
        .app_passwords()
        .revoke_account_app_passwords(RevokeAccountAppPasswordsRequest {
            parent: "accounts/quinn".into(),
            reason: "primary password changed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked_count, 2, "the expired one is not counted");
    for secret in [&first, &second] {
        assert_refused(
            &login(&server, "quinn", secret).await,
            FailureReason::Revoked,
        );
    }
    assert_refused(
        &login(&server, "quinn", &expiring.secret).await,
        FailureReason::Expired,
    );
    assert!(login(&server, "rosa", &other).await.authenticated);

    let unknown = server
        .app_passwords()
        .revoke_account_app_passwords(RevokeAccountAppPasswordsRequest {
            parent: "accounts/never-seen".into(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unknown.revoked_count, 0);

    server
        .accounts()
        .delete_account(DeleteAccountRequest {
            name: "accounts/rosa".into(),
        })
        .await
        .unwrap();
    assert_refused(
        &login(&server, "rosa", &other).await,
        FailureReason::InvalidCredentials,
    );
    let status = server
        .accounts()
        .get_account(GetAccountRequest {
            name: "accounts/rosa".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = server
        .app_passwords()
        .get_app_password(GetAppPasswordRequest { name: other_name })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = server
        .accounts()
        .delete_account(DeleteAccountRequest {
            name: "accounts/rosa".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // A deleted account can start over.
    let (_, fresh) = issue_simple(&server, "rosa").await;
    assert!(login(&server, "rosa", &fresh).await.authenticated);
    server.stop().await;
}
