//! CallerService: creating, listing and revoking callers, and its bad
//! inputs; keys with a life: expiry, allowed networks, rotation with an
//! overlap, all with the clock moved rather than waited on.

use latchkey::domain::shared::time::Clock;
use latchkey::grpc::pb::{CreateCallerRequest, ListCallersRequest, RevokeCallerRequest, Role};
use tonic::Code;

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    callers_are_created_listed_revoked_and_validated,
    caller_keys_expire_keep_to_their_networks_and_rotate_with_an_overlap,
);

fn create(name: &str, role: Role, tls_identity: &str) -> CreateCallerRequest {
    CreateCallerRequest {
        name: name.into(),
        role: role as i32,
        tls_identity: tls_identity.into(),
        tenant: String::new(),
        ..Default::default()
    }
}

async fn callers_are_created_listed_revoked_and_validated(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut callers = server.callers();

    let created = callers
        .create_caller(create("imap-proxy", Role::Authenticator, "imap.internal"))
        .await
        .unwrap()
        .into_inner();
    let caller = created.caller.unwrap();
    assert_eq!(caller.name, "callers/imap-proxy");
    assert_eq!(caller.role(), Role::Authenticator);
    assert_eq!(caller.created_by, "test-operator");
    assert!(created
        .key
        .starts_with(latchkey::domain::callers::key::KEY_PREFIX));

    for (request, fields) in [
        (create("", Role::Issuer, ""), vec!["name"]),
        (create("Upper", Role::Issuer, ""), vec!["name"]),
        (create(&"x".repeat(65), Role::Issuer, ""), vec!["name"]),
        (create("ok-name", Role::Unspecified, ""), vec!["role"]),
        (
            create("ok-name", Role::Issuer, &"x".repeat(256)),
            vec!["tls_identity"],
        ),
        (
            create("ok-name", Role::Issuer, "a\nb"),
            vec!["tls_identity"],
        ),
        (
            create("a b", Role::Unspecified, "\0"),
            vec!["name", "role", "tls_identity"],
        ),
    ] {
        let status = callers.create_caller(request).await.unwrap_err();
        assert_eq!(violated_fields(&status), fields);
    }
    let mut bad_role = create("ok-name", Role::Issuer, "");
    bad_role.role = 42;
    assert_eq!(
        violated_fields(&callers.create_caller(bad_role).await.unwrap_err()),
        ["role"]
    );
    let taken = callers
        .create_caller(create("imap-proxy", Role::Issuer, ""))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let identity_taken = callers
        .create_caller(create("other", Role::Issuer, "imap.internal"))
        .await
        .unwrap_err();
    assert_eq!(identity_taken.code(), Code::AlreadyExists);

    let listed = callers
        .list_callers(ListCallersRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.callers.len(), 2);
    let rest = callers
        .list_callers(ListCallersRequest {
            page_size: 10,
            page_token: listed.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    // imap-proxy and the harness's five, in name order, across two pages.
    let names: Vec<String> = listed
        .callers
        .iter()
        .chain(&rest.callers)
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "callers/imap-proxy",
            "callers/test-authenticator",
            "callers/test-issuer",
            "callers/test-notifier",
            "callers/test-operator",
            "callers/test-reporter"
        ]
    );
    for (page_size, page_token) in [(-1, ""), (1001, ""), (10, "bogus")] {
        let status = callers
            .list_callers(ListCallersRequest {
                page_size,
                page_token: page_token.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    // The key works, and this replica now holds the caller in its cache.
    assert_eq!(call_with_key(&server, &created.key).await, Code::Ok);
    let revoked = callers
        .revoke_caller(RevokeCallerRequest {
            name: "callers/imap-proxy".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoke_time.is_some());
    let again = callers
        .revoke_caller(RevokeCallerRequest {
            name: "callers/imap-proxy".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.revoke_time, revoked.revoke_time, "idempotent");
    for (name, code) in [
        ("imap-proxy", Code::InvalidArgument),
        ("callers/", Code::InvalidArgument),
        ("callers/Nope", Code::InvalidArgument),
        ("callers/nobody", Code::NotFound),
    ] {
        let status = callers
            .revoke_caller(RevokeCallerRequest { name: name.into() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{name}");
    }
    // The revoked key no longer works on this replica, at once: revoking
    // dropped the cached caller.
    let status = call_with_key(&server, &created.key).await;
    assert_eq!(status, Code::Unauthenticated);
    server.stop().await;
}

async fn call_with_key(server: &TestServer, key: &str) -> Code {
    let mut client = latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient::new(
        server.as_caller(Some(key)),
    );
    client
        .authenticate(login_request(
            "x",
            "y",
            latchkey::grpc::pb::Protocol::Imap,
            "192.0.2.1",
        ))
        .await
        .map_or_else(|status| status.code(), |_| Code::Ok)
}

/// Recording a caller's last use is best effort: when that write fails,
/// the caller's request still goes through (who it is was established).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_last_use_write_does_not_refuse_the_caller() {
    use sea_orm::ConnectionTrait;
    let server = TestServer::start(Backend::Sqlite).await;
    let db = server.database.connect().await;
    db.execute_unprepared(
        "CREATE TRIGGER no_touch BEFORE UPDATE ON caller BEGIN SELECT RAISE(ABORT, 'read only'); END",
    )
    .await
    .unwrap();
    let listed = server
        .accounts()
        .list_accounts(latchkey::grpc::pb::ListAccountsRequest::default())
        .await;
    assert!(listed.is_ok(), "{listed:?}");
    db.close().await.unwrap();
    server.stop().await;
}

/// Whether `key` is recognised: an issuer's harmless call.
async fn works(server: &TestServer, key: &str) -> bool {
    use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
    use latchkey::grpc::pb::ListAppPasswordsRequest;
    match AppPasswordServiceClient::new(server.as_caller(Some(key)))
        .list_app_passwords(ListAppPasswordsRequest {
            parent: "accounts/alice".into(),
            ..Default::default()
        })
        .await
    {
        Err(status) if status.code() == Code::Unauthenticated => false,
        // Recognised: the account is unknown, which is an answer.
        Err(status) if status.code() == Code::NotFound => true,
        other => panic!("{other:?}"),
    }
}

async fn caller_keys_expire_keep_to_their_networks_and_rotate_with_an_overlap(backend: Backend) {
    use latchkey::grpc::pb::{AuditEventType, ListAuditEventsRequest, RotateCallerKeyRequest};
    use std::time::Duration;
    let server = TestServer::start(backend).await;
    let mut callers = server.callers();
    let now = server.clock.now();
    let seconds = |at: latchkey::domain::shared::time::Timestamp| at.as_millis() / 1000;
    let key = |request: CreateCallerRequest| {
        let mut callers = server.callers();
        async move { callers.create_caller(request).await.map(|r| r.into_inner()) }
    };

    // An expiry: recognised until then, not after.
    let expiring = key(CreateCallerRequest {
        expire_time: Some(prost_types::Timestamp {
            seconds: seconds(now) + 3600,
            nanos: 0,
        }),
        ..create("portal-2026", Role::Issuer, "")
    })
    .await
    .unwrap();
    assert!(works(&server, &expiring.key).await);
    let past = key(CreateCallerRequest {
        expire_time: Some(prost_types::Timestamp {
            seconds: seconds(now) - 1,
            nanos: 0,
        }),
        ..create("portal-past", Role::Issuer, "")
    })
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&past), ["expire_time"]);

    // Allowed networks: the connection's own address decides. The tests
    // connect from 127.0.0.1.
    let walled = key(CreateCallerRequest {
        allowed_networks: vec!["10.0.0.0/8".into()],
        ..create("walled", Role::Issuer, "")
    })
    .await
    .unwrap();
    assert!(!works(&server, &walled.key).await, "refused from 127.0.0.1");
    let local = key(CreateCallerRequest {
        allowed_networks: vec!["127.0.0.0/8".into(), "::1".into()],
        ..create("local", Role::Issuer, "")
    })
    .await
    .unwrap();
    assert!(works(&server, &local.key).await);
    let bad = key(CreateCallerRequest {
        allowed_networks: vec!["10.0.0.0/33".into()],
        ..create("bad-net", Role::Issuer, "")
    })
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&bad), ["allowed_networks"]);
    let listed = callers
        .list_callers(ListCallersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .callers;
    let local_row = listed.iter().find(|c| c.name == "callers/local").unwrap();
    assert_eq!(local_row.last_use_ip, "127.0.0.1");
    assert_eq!(local_row.allowed_networks, ["127.0.0.0/8", "::1/128"]);
    let walled_row = listed.iter().find(|c| c.name == "callers/walled").unwrap();
    assert_eq!(walled_row.last_use_ip, "", "a refused use is not a use");

    // Rotation: both keys work through the overlap, then only the new.
    let rotate = |overlap: Option<u64>| RotateCallerKeyRequest {
        name: "callers/local".into(),
        overlap: overlap.map(|seconds| prost_types::Duration {
            seconds: seconds as i64,
            nanos: 0,
        }),
    };
    let rotated = callers
        .rotate_caller_key(rotate(Some(600)))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.key, local.key);
    assert!(
        works(&server, &local.key).await,
        "the old key, in its overlap"
    );
    assert!(works(&server, &rotated.key).await);
    server.clock.advance(Duration::from_secs(601));
    assert!(!works(&server, &local.key).await, "the old key, after it");
    assert!(works(&server, &rotated.key).await);
    // A second rotation with no overlap ends the previous key at once.
    let again = callers
        .rotate_caller_key(rotate(Some(0)))
        .await
        .unwrap()
        .into_inner();
    assert!(!works(&server, &rotated.key).await);
    assert!(works(&server, &again.key).await);
    let too_long = callers
        .rotate_caller_key(rotate(Some(24 * 3600 + 1)))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&too_long), ["overlap"]);
    let rotations = audit_events(
        &server,
        ListAuditEventsRequest {
            types: vec![AuditEventType::CallerKeyRotated as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rotations.len(), 2);
    assert!(rotations.iter().all(|e| e.caller == "callers/local"));

    // The expiry, passed (the clock moved 601 s; move it past the hour).
    server.clock.advance(Duration::from_secs(3000));
    assert!(!works(&server, &expiring.key).await, "expired");
    callers
        .revoke_caller(RevokeCallerRequest {
            name: "callers/local".into(),
        })
        .await
        .unwrap();
    let revoked = callers.rotate_caller_key(rotate(None)).await.unwrap_err();
    assert_eq!(
        (revoked.code(), reason_of(&revoked).as_str()),
        (Code::FailedPrecondition, "CALLER_REVOKED")
    );
    server.stop().await;
}
