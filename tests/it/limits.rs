//! The per-account cap under concurrency, and every invalid input refused
//! with INVALID_ARGUMENT, naming its field, and changing nothing.

use latchkey::grpc::pb::issue_app_password_request::Expiration;
use latchkey::grpc::pb::{
    GetAccountRequest, GetAppPasswordRequest, IssueAppPasswordRequest, ListAccountsRequest,
    ListAppPasswordsRequest, Protocol, RevokeAccountAppPasswordsRequest, RevokeAppPasswordRequest,
};
use tonic::Code;

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    cap_holds_under_concurrent_issues,
    invalid_issue_requests_change_nothing,
    invalid_authenticate_requests_are_refused,
    invalid_names_and_pages_are_refused,
);

async fn cap_holds_under_concurrent_issues(backend: Backend) {
    let server =
        TestServer::start_with(backend, |config| config.max_active_app_passwords = 5).await;
    // The account does not exist yet: creating it races too.
    let attempts = (0..20).map(|i| {
        let mut client = server.app_passwords();
        async move {
            client
                .issue_app_password(issue_request(
                    "kim",
                    &format!("Device {i}"),
                    &[Protocol::Imap],
                ))
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let issued = results.iter().filter(|r| r.is_ok()).count();
    let exhausted = results
        .iter()
        .filter(|r| matches!(r, Err(status) if status.code() == Code::ResourceExhausted))
        .count();
    assert_eq!((issued, exhausted), (5, 15), "{results:?}");

    let account = server
        .accounts()
        .get_account(GetAccountRequest {
            name: "accounts/kim".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(account.active_app_password_count, 5);

    // Revoking one frees one place.
    let first = results.into_iter().flatten().next().unwrap().into_inner();
    revoke(&server, first.app_password.unwrap().name).await;
    issue(
        &server,
        issue_request("kim", "Replacement", &[Protocol::Imap]),
    )
    .await;
    let full = server
        .app_passwords()
        .issue_app_password(issue_request("kim", "One too many", &[Protocol::Imap]))
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted);
    server.stop().await;
}

async fn invalid_issue_requests_change_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let valid = || issue_request("leo", "Laptop", &[Protocol::Imap]);
    let cases: Vec<(IssueAppPasswordRequest, &[&str])> = vec![
        (
            IssueAppPasswordRequest {
                parent: String::new(),
                ..valid()
            },
            &["parent"],
        ),
        (
            IssueAppPasswordRequest {
                parent: "leo".into(),
                ..valid()
            },
            &["parent"],
        ),
        (
            IssueAppPasswordRequest {
                parent: "accounts/le o".into(),
                ..valid()
            },
            &["parent"],
        ),
        (
            IssueAppPasswordRequest {
                parent: "accounts/leo\u{200B}".into(),
                ..valid()
            },
            &["parent"],
        ),
        (
            IssueAppPasswordRequest {
                parent: format!("accounts/{}", "x".repeat(300)),
                ..valid()
            },
            &["parent"],
        ),
        (
            IssueAppPasswordRequest {
                display_name: " ".into(),
                ..valid()
            },
            &["display_name"],
        ),
        (
            IssueAppPasswordRequest {
                display_name: "x".repeat(101),
                ..valid()
            },
            &["display_name"],
        ),
        (
            IssueAppPasswordRequest {
                display_name: "two\nlines".into(),
                ..valid()
            },
            &["display_name"],
        ),
        (
            IssueAppPasswordRequest {
                protocols: vec![],
                ..valid()
            },
            &["protocols"],
        ),
        (
            IssueAppPasswordRequest {
                protocols: vec![0],
                ..valid()
            },
            &["protocols"],
        ),
        (
            IssueAppPasswordRequest {
                protocols: vec![42],
                ..valid()
            },
            &["protocols"],
        ),
        (
            IssueAppPasswordRequest {
                protocols: vec![1, 2],
                ..valid()
            },
            &["protocols"],
        ),
        (
            IssueAppPasswordRequest {
                protocols: vec![2; 17],
                ..valid()
            },
            &["protocols"],
        ),
        (
            IssueAppPasswordRequest {
                allowed_networks: vec!["10.0.0.0/33".into()],
                ..valid()
            },
            &["allowed_networks"],
        ),
        (
            IssueAppPasswordRequest {
                allowed_networks: vec!["x".repeat(65)],
                ..valid()
            },
            &["allowed_networks"],
        ),
        (
            IssueAppPasswordRequest {
                allowed_networks: (0..17).map(|i| format!("10.{i}.0.0/16")).collect(),
                ..valid()
            },
            &["allowed_networks"],
        ),
        (
            IssueAppPasswordRequest {
                expiration: Some(Expiration::Ttl(prost_types::Duration {
                    seconds: -5,
                    nanos: 0,
                })),
                ..valid()
            },
            &["ttl"],
        ),
        (
            IssueAppPasswordRequest {
                expiration: Some(Expiration::Ttl(prost_types::Duration {
                    seconds: 0,
                    nanos: 0,
                })),
                ..valid()
            },
            &["ttl"],
        ),
        (
            IssueAppPasswordRequest {
                expiration: Some(Expiration::Ttl(prost_types::Duration {
                    seconds: i64::MAX,
                    nanos: 0,
                })),
                ..valid()
            },
            &["ttl"],
        ),
        (
            IssueAppPasswordRequest {
                expiration: Some(Expiration::ExpireTime(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                })),
                ..valid()
            },
            &["expire_time"],
        ),
        (
            // After 9999-12-31: no protobuf Timestamp (nor JSON client) can
            // show it.
            IssueAppPasswordRequest {
                expiration: Some(Expiration::ExpireTime(prost_types::Timestamp {
                    seconds: 253_402_300_800,
                    nanos: 0,
                })),
                ..valid()
            },
            &["expire_time"],
        ),
        (
            IssueAppPasswordRequest {
                expiration: Some(Expiration::Ttl(prost_types::Duration {
                    seconds: 8_000 * 365 * 86_400,
                    nanos: 0,
                })),
                ..valid()
            },
            &["ttl"],
        ),
        (
            IssueAppPasswordRequest {
                allowed_networks: vec!["::ffff:0:0/90".into()],
                ..valid()
            },
            &["allowed_networks"],
        ),
        (
            IssueAppPasswordRequest {
                parent: String::new(),
                display_name: String::new(),
                protocols: vec![],
                ..valid()
            },
            &["parent", "display_name", "protocols"],
        ),
    ];
    for (request, fields) in cases {
        let status = server
            .app_passwords()
            .issue_app_password(request.clone())
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), fields, "{request:?}");
    }
    let accounts = server
        .accounts()
        .list_accounts(ListAccountsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        accounts.accounts.is_empty(),
        "an invalid request created {accounts:?}"
    );

    // A request over the message size cap is refused before decoding.
    let huge = IssueAppPasswordRequest {
        display_name: "x".repeat(100_000),
        ..valid()
    };
    let status = server
        .app_passwords()
        .issue_app_password(huge)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    server.stop().await;
}

async fn invalid_authenticate_requests_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (name, secret) = issue_simple(&server, "mia").await;
    let cases: Vec<(latchkey::grpc::pb::AuthenticateRequest, &[&str])> = vec![
        (
            login_request("", &secret, Protocol::Imap, "192.0.2.1"),
            &["username"],
        ),
        (
            login_request("   ", &secret, Protocol::Imap, "192.0.2.1"),
            &["username"],
        ),
        (
            login_request("mia\0", &secret, Protocol::Imap, "192.0.2.1"),
            &["username"],
        ),
        (
            login_request(&"m".repeat(2000), &secret, Protocol::Imap, "192.0.2.1"),
            &["username"],
        ),
        (
            login_request("mia", "", Protocol::Imap, "192.0.2.1"),
            &["password"],
        ),
        (
            login_request("mia", &"a".repeat(257), Protocol::Imap, "192.0.2.1"),
            &["password"],
        ),
        (
            login_request("mia", &secret, Protocol::Unspecified, "192.0.2.1"),
            &["protocol"],
        ),
        (
            login_request("mia", &secret, Protocol::Any, "192.0.2.1"),
            &["protocol"],
        ),
        (
            login_request("mia", &secret, Protocol::Imap, ""),
            &["client_ip"],
        ),
        (
            login_request("mia", &secret, Protocol::Imap, "192.0.2"),
            &["client_ip"],
        ),
        (
            login_request("mia", &secret, Protocol::Imap, "mail.example.com"),
            &["client_ip"],
        ),
        (
            login_request("", "", Protocol::Unspecified, ""),
            &["username", "password", "protocol", "client_ip"],
        ),
    ];
    for (request, fields) in cases {
        let status = server
            .auth()
            .authenticate(request.clone())
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), fields, "{request:?}");
        assert!(
            !status.message().contains(&secret),
            "the status echoes the password"
        );
    }
    let mut unknown = login_request("mia", &secret, Protocol::Imap, "192.0.2.1");
    unknown.protocol = 99;
    let status = server.auth().authenticate(unknown).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["protocol"]);

    // None of that counted as a use.
    let password = server
        .app_passwords()
        .get_app_password(GetAppPasswordRequest { name })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(password.use_count, 0);
    assert!(password.last_use_time.is_none());
    server.stop().await;
}

async fn invalid_names_and_pages_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (name, _) = issue_simple(&server, "nina").await;
    let mut passwords = server.app_passwords();
    for bad in [
        "",
        "nina",
        "accounts/nina",
        "accounts/nina/appPasswords/123",
        &format!("{name}/x"),
    ] {
        let status = passwords
            .get_app_password(GetAppPasswordRequest { name: bad.into() })
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["name"], "{bad}");
    }
    let missing = name[..name.len() - 4].to_owned() + "ffff";
    let status = passwords
        .get_app_password(GetAppPasswordRequest {
            name: missing.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = passwords
        .revoke_app_password(RevokeAppPasswordRequest {
            name: missing,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = passwords
        .revoke_app_password(RevokeAppPasswordRequest {
            name: name.clone(),
            reason: "x".repeat(501),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["reason"]);
    let status = passwords
        .revoke_account_app_passwords(RevokeAccountAppPasswordsRequest {
            parent: "accounts/".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["parent"]);

    for (page_size, page_token, fields) in [
        (-1, "", vec!["page_size"]),
        (1001, "", vec!["page_size"]),
        (10, "not-a-token", vec!["page_token"]),
        (-1, "%%%", vec!["page_size", "page_token"]),
    ] {
        let status = passwords
            .list_app_passwords(ListAppPasswordsRequest {
                parent: "accounts/nina".into(),
                page_size,
                page_token: page_token.into(),
                show_revoked: false,
            })
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), fields);
    }
    let status = passwords
        .list_app_passwords(ListAppPasswordsRequest {
            parent: "accounts/nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // Nothing above revoked anything.
    let still = passwords
        .get_app_password(GetAppPasswordRequest { name })
        .await
        .unwrap()
        .into_inner();
    assert!(still.revoke_time.is_none());
    server.stop().await;
}
