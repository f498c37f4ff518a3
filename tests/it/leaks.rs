//! No secret reaches the database, the audit trail or the logs: a whole
//! walk runs with debug logging captured, then the database files and the
//! log are searched for every app password and caller key it handled.

use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::{
    CreateCallerRequest, DisableAccountRequest, ListAuditEventsRequest, Protocol,
};

use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_database_files_audit_trail_or_logs() {
    // Its own lines, which the bound on the captured logs cannot drop.
    let logs = crate::common::logs::window();
    let server = TestServer::start(Backend::Sqlite).await;
    let mut secrets: Vec<String> = server.keys.values().cloned().collect();

    let created = server
        .callers()
        .create_caller(CreateCallerRequest {
            name: "portal".into(),
            role: latchkey::grpc::pb::Role::Issuer as i32,
            tls_identity: String::new(),
            tenant: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    secrets.push(created.key.clone());
    assert!(
        !format!("{created:?}").contains(&created.key),
        "Debug shows the caller key"
    );

    let issued = issue(&server, issue_request("uma", "Laptop", &[Protocol::Imap])).await;
    secrets.extend(secret_forms(&issued.secret));
    let (_, other) = issue_simple(&server, "victor").await;
    secrets.extend(secret_forms(&other));
    assert!(login(&server, "uma", &issued.secret).await.authenticated);
    assert!(!login(&server, "uma", &other).await.authenticated);
    // A password typed into the username box must not be logged either.
    assert!(
        !login(&server, &issued.secret.replace(' ', ""), &other)
            .await
            .authenticated
    );
    revoke(&server, issued.app_password.unwrap().name).await;
    server
        .accounts()
        .disable_account(DisableAccountRequest {
            name: "accounts/victor".into(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let trail = server
        .audit()
        .list_audit_events(ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(trail.audit_events.len() >= 6);
    let trail_text = format!("{trail:?}");
    let database_path = server
        .database
        .url
        .trim_start_matches("sqlite://")
        .trim_end_matches("?mode=rwc")
        .to_owned();
    let key = server.keys[&Role::Operator].clone();
    let _database = server.stop().await;

    let mut stored = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(bytes) = std::fs::read(format!("{database_path}{suffix}")) {
            stored.extend(bytes);
        }
    }
    assert!(
        contains(&stored, "$argon2id$"),
        "the database file was not read"
    );
    let logs = logs.read();
    assert!(
        contains(&logs, "IssueAppPassword"),
        "the logs were not captured"
    );
    for secret in &secrets {
        assert!(!contains(&stored, secret), "the database holds a secret");
        assert!(!contains(&logs, secret), "the logs hold a secret");
        assert!(
            !trail_text.contains(secret.as_str()),
            "the audit trail holds a secret"
        );
    }
    // Caller keys are stored as SHA-256 only: not even their secret half.
    let secret_half = crate::common::support::key_secret_half(&key);
    assert!(!contains(&stored, secret_half));
    assert!(!contains(&logs, secret_half));
}
