//! ReportLeakedSecrets and LookupAppPassword (issue 26), over real gRPC:
//! a report revokes exactly the real, active or suspended passwords among
//! its secrets (reason LEAKED, audited with its source, in the change
//! feed) and answers the same whatever it held, at one argon2 per secret
//! that passes its check; a lookup names a password only where its secret
//! verifies; both are bounded per hour, counted with the clock moved.

use std::time::Duration;

use latchkey::domain::callers::model::Role;
use latchkey::domain::secrets::format::{check_of, Secret};
use latchkey::grpc::pb::app_password::State;
use latchkey::grpc::pb::leak_service_client::LeakServiceClient;
use latchkey::grpc::pb::{
    AuditEventType, FailureReason, ListAuditEventsRequest, LookupAppPasswordRequest, Protocol,
    ReportLeakedSecretsRequest, ReportLeakedSecretsResponse, RevokeAppPasswordRequest,
    SuspendAppPasswordRequest, WatchEventsRequest,
};
use prost::Message as _;
use tonic::Code;

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    a_report_revokes_exactly_the_real_active_ones_and_answers_alike,
    a_lookup_names_a_password_only_where_its_secret_verifies,
    reports_and_lookups_are_bounded_per_hour,
);

fn leaks(server: &TestServer, role: Role) -> LeakServiceClient<crate::common::harness::Authed> {
    LeakServiceClient::new(server.as_role(role))
}

async fn report(
    server: &TestServer,
    secrets: &[&str],
    source: &str,
) -> Result<ReportLeakedSecretsResponse, tonic::Status> {
    leaks(server, Role::Reporter)
        .report_leaked_secrets(ReportLeakedSecretsRequest {
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            source: source.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// A version 2 secret with `public_id`'s selector whose check holds but
/// whose random letters are not the password's.
fn same_public_id_other_rest(secret: &str) -> String {
    let letters = secret.replace(' ', "");
    let other = Secret::generate().unwrap().display().replace(' ', "");
    let body = format!("{}{}", &letters[..8], &other[8..32]);
    let check = check_of(body.as_bytes());
    format!("{body}{}", std::str::from_utf8(&check).unwrap())
}

async fn a_report_revokes_exactly_the_real_active_ones_and_answers_alike(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (active_name, active) = issue_simple(&server, "ana@example.com").await;
    let (suspended_name, suspended) = issue_simple(&server, "ben@example.com").await;
    let (revoked_name, revoked) = issue_simple(&server, "cyd@example.com").await;
    let (untouched_name, untouched) = issue_simple(&server, "dov@example.com").await;
    let mut issuer = server.app_passwords();
    issuer
        .suspend_app_password(SuspendAppPasswordRequest {
            name: suspended_name.clone(),
            reason: "lost phone".into(),
        })
        .await
        .unwrap();
    issuer
        .revoke_app_password(RevokeAppPasswordRequest {
            name: revoked_name.clone(),
            reason: "replaced".into(),
        })
        .await
        .unwrap();
    let (mut feed, _) = watch_from_checkpoint(
        &server,
        &server.keys[&Role::Notifier],
        WatchEventsRequest::default(),
    )
    .await
    .unwrap();

    let made_up = Secret::generate().unwrap().display().to_string();
    let wrong_rest = same_public_id_other_rest(&untouched);
    let version_1 = Secret::generate_version_1().unwrap().display().to_string();
    let mut check_failed = made_up.clone();
    check_failed.pop();
    check_failed.push(if made_up.ends_with('z') { 'a' } else { 'z' });
    let dashed = active.replace(' ', "-").to_uppercase();
    let secrets = [
        dashed.as_str(),
        suspended.as_str(),
        revoked.as_str(),
        made_up.as_str(),
        wrong_rest.as_str(),
        version_1.as_str(),
        check_failed.as_str(),
        "hunter2",
        // The same secret twice costs once.
        active.as_str(),
    ];
    let before = argon2_runs(&server);
    let source = "https://gist.example.com/someone/4711";
    let answer = report(&server, &secrets, source).await.unwrap();
    assert_eq!(answer.received, 9);
    // One argon2 per distinct secret that passed its check: the active,
    // suspended and revoked ones, the made-up one, the wrong rest.
    assert_eq!(argon2_runs(&server) - before, 5);

    // Exactly the active and the suspended one were revoked, as LEAKED.
    for (name, state, reason) in [
        (&active_name, State::Revoked, "LEAKED"),
        (&suspended_name, State::Revoked, "LEAKED"),
        (&revoked_name, State::Revoked, "replaced"),
        (&untouched_name, State::Active, ""),
    ] {
        let password = get_password(&server, name).await;
        assert_eq!(password.state(), state, "{name}");
        assert_eq!(password.revoke_reason, reason, "{name}");
    }
    assert_refused(
        &login(&server, "ana@example.com", &active).await,
        FailureReason::Revoked,
    );
    assert!(
        login(&server, "dov@example.com", &untouched)
            .await
            .authenticated
    );

    // The notifier's feed has both revocations, with the source, so it
    // can tell the users; nothing else.
    let mut revocations = Vec::new();
    while revocations.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(20), feed.message())
            .await
            .expect("the revocations reach the feed")
            .unwrap()
            .unwrap();
        if let Some(event) = message.audit_event {
            assert_eq!(event.r#type(), AuditEventType::AppPasswordRevoked);
            assert_eq!(event.detail, format!("LEAKED: {source}"));
            assert_eq!(event.actor, "test-reporter");
            revocations.push(event.app_password);
        }
    }
    revocations.sort();
    let mut expected = vec![active_name.clone(), suspended_name.clone()];
    expected.sort();
    assert_eq!(revocations, expected);

    // The report itself is audited, for operators, with its counts.
    let reports: Vec<_> = events_of(&server, AuditEventType::LeakReported).await;
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].detail,
        format!("9 received, 5 passed the check, 3 verified: {source}")
    );

    // Sent again: nothing more is revoked, and the answer is the same, byte
    // for byte, as one of as many secrets none of which is real.
    let again = report(&server, &secrets, source).await.unwrap();
    let garbage: Vec<String> = (0..9)
        .map(|_| Secret::generate().unwrap().display().to_string())
        .collect();
    let garbage: Vec<&str> = garbage.iter().map(String::as_str).collect();
    let none_real = report(&server, &garbage, source).await.unwrap();
    assert_eq!(again.encode_to_vec(), answer.encode_to_vec());
    assert_eq!(none_real.encode_to_vec(), answer.encode_to_vec());
    assert_eq!(
        get_password(&server, &untouched_name).await.state(),
        State::Active
    );

    // Bad reports change nothing: too many, empty, a secret in the source.
    let too_many = vec!["x"; 1_001];
    let bad = [
        report(&server, &too_many, source).await.unwrap_err(),
        report(&server, &[], source).await.unwrap_err(),
        report(&server, &[&untouched], &format!("found {untouched}"))
            .await
            .unwrap_err(),
        report(&server, &[&untouched], "").await.unwrap_err(),
    ];
    for status in bad {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    assert_eq!(
        get_password(&server, &untouched_name).await.state(),
        State::Active
    );

    // Only reporters and operators may report.
    for role in [Role::Issuer, Role::Authenticator, Role::Notifier] {
        let status = leaks(&server, role)
            .report_leaked_secrets(ReportLeakedSecretsRequest {
                secrets: vec![untouched.clone()],
                source: source.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role:?}");
    }
    assert_eq!(
        get_password(&server, &untouched_name).await.state(),
        State::Active
    );
    server.stop().await;
}

async fn lookup(
    server: &TestServer,
    role: Role,
    secret: &str,
) -> Result<latchkey::grpc::pb::AppPassword, tonic::Status> {
    leaks(server, role)
        .lookup_app_password(LookupAppPasswordRequest {
            secret: secret.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn a_lookup_names_a_password_only_where_its_secret_verifies(backend: Backend) {
    let server = TestServer::start(backend).await;
    let issued = issue(
        &server,
        issue_request("eve@example.com", "Old laptop", &[Protocol::Imap]),
    )
    .await;
    let name = issued.app_password.unwrap().name;
    assert!(
        login(&server, "eve@example.com", &issued.secret)
            .await
            .authenticated
    );

    let before = argon2_runs(&server);
    let found = lookup(&server, Role::Operator, &issued.secret)
        .await
        .unwrap();
    assert_eq!(argon2_runs(&server) - before, 1);
    assert_eq!(found.name, name);
    assert_eq!(found.display_name, "Old laptop");
    assert_eq!(found.state(), State::Active);
    assert_eq!(found.issued_by, "test-issuer");
    assert_eq!(found.use_count, 1);

    // The same NOT_FOUND for a made-up secret and for the right public id
    // with the wrong rest; one argon2 each.
    let made_up = Secret::generate().unwrap().display().to_string();
    let wrong_rest = same_public_id_other_rest(&issued.secret);
    let before = argon2_runs(&server);
    let a = lookup(&server, Role::Operator, &made_up).await.unwrap_err();
    let b = lookup(&server, Role::Operator, &wrong_rest)
        .await
        .unwrap_err();
    assert_eq!(argon2_runs(&server) - before, 2);
    assert_eq!((a.code(), b.code()), (Code::NotFound, Code::NotFound));
    assert_eq!(a.message(), b.message());
    assert_eq!(reason_of(&a), reason_of(&b));

    // Precise where it verifies, revoked or not.
    server
        .app_passwords()
        .revoke_app_password(RevokeAppPasswordRequest {
            name: name.clone(),
            reason: "done".into(),
        })
        .await
        .unwrap();
    let revoked = lookup(&server, Role::Operator, &issued.secret)
        .await
        .unwrap();
    assert_eq!(revoked.state(), State::Revoked);

    // What is not a version 2 secret is refused before any argon2.
    let before = argon2_runs(&server);
    let version_1 = Secret::generate_version_1().unwrap().display().to_string();
    let v1 = lookup(&server, Role::Operator, &version_1)
        .await
        .unwrap_err();
    assert_eq!(v1.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&v1), "SECRET_VERSION_ONE");
    let mut mistyped = issued.secret.clone();
    mistyped.pop();
    mistyped.push(if issued.secret.ends_with('z') {
        'a'
    } else {
        'z'
    });
    for typed in [mistyped.as_str(), "hunter2"] {
        let status = lookup(&server, Role::Operator, typed).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    assert_eq!(argon2_runs(&server), before);

    // Operators only.
    for role in [
        Role::Issuer,
        Role::Reporter,
        Role::Authenticator,
        Role::Notifier,
    ] {
        let status = lookup(&server, role, &issued.secret).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role:?}");
    }

    // Every lookup that reached a check is audited; it names the password
    // only where it verified (the two found, not the two not found).
    let looked_up = events_of(&server, AuditEventType::AppPasswordLookedUp).await;
    let named: Vec<&str> = looked_up.iter().map(|e| e.app_password.as_str()).collect();
    assert_eq!(named.iter().filter(|n| **n == name).count(), 2, "{named:?}");
    assert_eq!(
        named.iter().filter(|n| n.is_empty()).count(),
        2,
        "{named:?}"
    );
    server.stop().await;
}

async fn reports_and_lookups_are_bounded_per_hour(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.leaks.caller_secrets_per_hour = 1_000;
        config.leaks.replica_secrets_per_hour = 1_500;
        config.leaks.lookups_per_hour = 2;
    })
    .await;
    let (_, real) = issue_simple(&server, "fay@example.com").await;
    let made_up = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| Secret::generate().unwrap().display().to_string())
            .collect()
    };
    let source = "CI log of job 12";

    // 1,000 checked secrets fill the reporter's hour: 1,000 argon2 runs.
    let full = made_up(1_000);
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    let before = argon2_runs(&server);
    report(&server, &full, source).await.unwrap();
    assert_eq!(argon2_runs(&server) - before, 1_000);

    // One more is refused whole, with a retry delay, and costs nothing:
    // the real secret in it is not revoked.
    let before = argon2_runs(&server);
    let refused = report(&server, &[&real], source).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason_of(&refused), "LEAK_REPORT_RATE_EXCEEDED");
    assert!(refused.message().contains("leaks.caller_secrets_per_hour"));
    assert_eq!(argon2_runs(&server), before);
    assert!(login(&server, "fay@example.com", &real).await.authenticated);
    // Text that passes no check weighs nothing, and is still answered.
    assert_eq!(
        report(&server, &["hunter2"], source)
            .await
            .unwrap()
            .received,
        1
    );

    // The operator has a bound of its own, but the replica's (1,500) is
    // shared: 500 pass, one more is refused by the replica's.
    let half = made_up(500);
    let mut operator = leaks(&server, Role::Operator);
    let request = |secrets: Vec<String>| ReportLeakedSecretsRequest {
        secrets,
        source: source.into(),
    };
    operator.report_leaked_secrets(request(half)).await.unwrap();
    let status = operator
        .report_leaked_secrets(request(made_up(1)))
        .await
        .unwrap_err();
    assert!(
        status.message().contains("leaks.replica_secrets_per_hour"),
        "{status:?}"
    );

    // An hour later the reporter's report goes through, and revokes.
    server.clock.advance(Duration::from_secs(3_601));
    report(&server, &[&real], source).await.unwrap();
    assert_refused(
        &login(&server, "fay@example.com", &real).await,
        FailureReason::Revoked,
    );

    // Lookups: two an hour here.
    for _ in 0..2 {
        lookup(&server, Role::Operator, &real).await.unwrap();
    }
    let before = argon2_runs(&server);
    let status = lookup(&server, Role::Operator, &real).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason_of(&status), "LOOKUP_RATE_EXCEEDED");
    assert_eq!(argon2_runs(&server), before);
    server.clock.advance(Duration::from_secs(3_601));
    lookup(&server, Role::Operator, &real).await.unwrap();
    server.stop().await;
}

/// The audit events of one type, oldest first.
async fn events_of(
    server: &TestServer,
    kind: AuditEventType,
) -> Vec<latchkey::grpc::pb::AuditEvent> {
    audit_events(
        server,
        ListAuditEventsRequest {
            types: vec![kind as i32],
            ..Default::default()
        },
    )
    .await
}

/// A JSON POST: the status and the body answered.
async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let answer = http_post(addr, path, &all, body).await;
    (answer.status, answer.body)
}

/// A P-256 key pair, and its public key in GitHub's key file format under
/// `id`.
fn signing_key(id: &str) -> (ring::signature::EcdsaKeyPair, String) {
    use base64::Engine as _;
    use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    let file = serde_json::json!({
        "public_keys": [{"key_identifier": id, "key": pem, "is_current": true}]
    });
    (pair, file.to_string())
}

fn sign(pair: &ring::signature::EcdsaKeyPair, body: &[u8]) -> String {
    use base64::Engine as _;
    let rng = ring::rand::SystemRandom::new();
    let signature = pair.sign(&rng, body).unwrap();
    base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
}

backend_tests!(the_http_door_takes_signed_and_keyed_reports_and_nothing_else);

/// `POST /leaks/report` in the shape of GitHub's secret scanning partner
/// program: a report signed by a configured key revokes as a gRPC report
/// does and is answered `[]`; a bad signature, no credential, or a key of
/// another role is refused before anything is checked.
async fn the_http_door_takes_signed_and_keyed_reports_and_nothing_else(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (pair, keys) = signing_key("github-key-1");
    let (other_pair, _) = signing_key("github-key-1");
    let key_file = dir.path().join("secret_scanning.json");
    std::fs::write(&key_file, keys).unwrap();
    let server = TestServer::start_with(backend, |config| {
        config.proxy_adapters.leak_report_keys_file = Some(key_file.clone());
    })
    .await;
    let (name_a, secret_a) = issue_simple(&server, "gil@example.com").await;
    let (name_b, secret_b) = issue_simple(&server, "hal@example.com").await;
    let url = "https://github.com/example/repo/blob/main/.env";
    let body = |secret: &str| {
        serde_json::json!([
            {"token": secret, "type": "latchkey_app_password", "url": url, "source": "content"},
            {"token": "not one", "type": "latchkey_app_password", "url": url, "source": "content"},
        ])
        .to_string()
    };
    let addr = server.adapters_addr;

    // Refused before anything is checked: no credential, a signature by
    // another key, an unknown key id, an authenticator's key.
    let report_a = body(&secret_a);
    let before = argon2_runs(&server);
    for headers in [
        vec![],
        vec![
            ("Github-Public-Key-Identifier", "github-key-1".to_owned()),
            (
                "Github-Public-Key-Signature",
                sign(&other_pair, report_a.as_bytes()),
            ),
        ],
        vec![
            ("Github-Public-Key-Identifier", "github-key-2".to_owned()),
            (
                "Github-Public-Key-Signature",
                sign(&pair, report_a.as_bytes()),
            ),
        ],
        vec![("X-Latchkey-Key", server.keys[&Role::Authenticator].clone())],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, _) = post(addr, "/leaks/report", &headers, report_a.as_bytes()).await;
        assert!(status == 401 || status == 403, "{headers:?}: {status}");
    }
    assert_eq!(argon2_runs(&server), before);
    assert_eq!(get_password(&server, &name_a).await.state(), State::Active);

    // Signed by the configured key: revoked, answered `[]`.
    let signature = sign(&pair, report_a.as_bytes());
    let (status, answer) = post(
        addr,
        "/leaks/report",
        &[
            ("Github-Public-Key-Identifier", "github-key-1"),
            ("Github-Public-Key-Signature", &signature),
        ],
        report_a.as_bytes(),
    )
    .await;
    assert_eq!((status, answer.trim()), (200, "[]"));
    assert_eq!(argon2_runs(&server) - before, 1);
    let revoked = get_password(&server, &name_a).await;
    assert_eq!(revoked.state(), State::Revoked);
    assert_eq!(revoked.revoke_reason, "LEAKED");
    let events = events_of(&server, AuditEventType::AppPasswordRevoked).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, "github-secret-scanning");
    assert_eq!(events[0].detail, format!("LEAKED: {url}"));

    // The same answer for a report of nothing real; with a reporter's key.
    let nothing = body(&Secret::generate().unwrap().display());
    let reporter = server.keys[&Role::Reporter].clone();
    let (status, answer) = post(
        addr,
        "/leaks/report",
        &[("X-Latchkey-Key", &reporter)],
        nothing.as_bytes(),
    )
    .await;
    assert_eq!((status, answer.trim()), (200, "[]"));
    let report_b = body(&secret_b);
    let (status, _) = post(
        addr,
        "/leaks/report",
        &[("X-Latchkey-Key", &reporter)],
        report_b.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(get_password(&server, &name_b).await.state(), State::Revoked);

    // Bad bodies: not JSON, no matches, a secret in the url, too large.
    let in_url = serde_json::json!([{"token": "x", "url": format!("https://x/{secret_b}")}]);
    let huge = vec![b' '; 600 * 1024];
    for (body, expected) in [
        (b"{not json".to_vec(), 400),
        (b"[]".to_vec(), 400),
        (in_url.to_string().into_bytes(), 400),
        (huge, 413),
    ] {
        let (status, _) = post(
            addr,
            "/leaks/report",
            &[("X-Latchkey-Key", &reporter)],
            &body,
        )
        .await;
        assert_eq!(status, expected);
    }
    server.stop().await;
}

/// The HTTP door takes a place among the replica's leak requests at once,
/// the same places LeakService's gRPC requests take: while every place is
/// held, a report is neither read nor verified; once one frees, it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_door_waits_for_a_place_among_the_replicas_leak_requests() {
    use latchkey::domain::leaks::service::REQUESTS_AT_ONCE;
    let server = TestServer::start(Backend::Sqlite).await;
    let (name, secret) = issue_simple(&server, "ida@example.com").await;
    let places = server.services.leaks.requests_at_once();
    let held = std::sync::Arc::clone(&places)
        .acquire_many_owned(REQUESTS_AT_ONCE as u32)
        .await
        .unwrap();
    let key = server.keys[&Role::Reporter].clone();
    let body =
        serde_json::json!([{"token": secret, "url": "https://example.com/paste"}]).to_string();
    let addr = server.adapters_addr;
    let before = argon2_runs(&server);
    let sent = tokio::spawn(async move {
        post(
            addr,
            "/leaks/report",
            &[("X-Latchkey-Key", &key)],
            body.as_bytes(),
        )
        .await
    });
    // Given time to be read and verified, had it a place: it did neither.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!sent.is_finished(), "answered while every place was held");
    assert_eq!(
        argon2_runs(&server),
        before,
        "verified while every place was held"
    );
    assert_eq!(get_password(&server, &name).await.state(), State::Active);
    drop(held);
    let (status, answer) = sent.await.unwrap();
    assert_eq!((status, answer.trim()), (200, "[]"));
    assert_eq!(argon2_runs(&server) - before, 1);
    assert_eq!(get_password(&server, &name).await.state(), State::Revoked);
    assert_eq!(
        places.available_permits(),
        REQUESTS_AT_ONCE,
        "every place given back"
    );
    server.stop().await;
}

/// A report of more checked secrets than one revocation's part (100):
/// the real ones in each part are revoked, each checked secret costs one
/// argon2 run, and the report's audit row counts them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_report_revokes_part_by_part() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (early_name, early) = issue_simple(&server, "jo@example.com").await;
    let (late_name, late) = issue_simple(&server, "kim@example.com").await;
    let made_up: Vec<String> = (0..248)
        .map(|_| Secret::generate().unwrap().display().to_string())
        .collect();
    let mut secrets: Vec<&str> = made_up.iter().map(String::as_str).collect();
    secrets.insert(10, &early);
    secrets.insert(230, &late);
    let before = argon2_runs(&server);
    let answer = report(&server, &secrets, "https://example.com/dump")
        .await
        .unwrap();
    assert_eq!(answer.received, 250);
    assert_eq!(
        argon2_runs(&server) - before,
        250,
        "one argon2 per checked secret"
    );
    for name in [&early_name, &late_name] {
        assert_eq!(get_password(&server, name).await.state(), State::Revoked);
    }
    let reports = events_of(&server, AuditEventType::LeakReported).await;
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0]
            .detail
            .starts_with("250 received, 250 passed the check, 2 verified"),
        "{}",
        reports[0].detail
    );
    server.stop().await;
}
