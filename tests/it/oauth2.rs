//! The OAuth 2.0 door on the adapters' listener (`src/adapters/oauth2.rs`),
//! over real HTTP: the password grant through the login decision, tokens
//! that live only while their login would still pass, read by every
//! replica with the key file, written nowhere when issued, revocable (a
//! revocation kept as a digest until the token would have expired); and
//! bad input refused with nothing verified, counted or written. Stock Dovecot using it:
//! `tests/it/dovecot_oauth2.rs`.

use std::net::SocketAddr;

use latchkey::domain::callers::model::Role;
use latchkey::domain::shared::hex::lower_hex;
use latchkey::grpc::pb::{
    CreateCallerRequest, DisableAccountRequest, EnableAccountRequest, Protocol,
    ResumeAppPasswordRequest, SuspendAppPasswordRequest,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    a_token_lives_only_while_its_login_would_pass,
    revocations_are_kept_until_the_token_expires
);

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const CLIENT: &str = "test-authenticator";

/// A form body, each value encoded.
fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// A POST of `params` as a form, from Dovecot at `remote`, if any.
async fn post_form(
    addr: SocketAddr,
    path: &str,
    params: &[(&str, &str)],
    remote: Option<&str>,
) -> HttpAnswer {
    let mut headers = vec![FORM];
    if let Some(remote) = remote {
        headers.push(("X-Dovecot-Auth-Remote", remote));
    }
    http_post(addr, path, &headers, form(params).as_bytes()).await
}

/// The password grant as Dovecot sends it.
async fn grant(
    server: &TestServer,
    username: &str,
    password: &str,
    scope: &str,
    remote: &str,
) -> HttpAnswer {
    let key = &server.keys[&Role::Authenticator];
    post_form(
        server.adapters_addr,
        "/oauth2/token",
        &[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
            ("client_id", CLIENT),
            ("client_secret", key),
            ("scope", scope),
        ],
        Some(remote),
    )
    .await
}

/// A token of a grant that succeeded.
fn token_of(answer: &HttpAnswer) -> String {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.json()["access_token"].as_str().unwrap().to_owned()
}

/// Introspection on `addr`, authenticated with HTTP Basic as the test's
/// authenticator.
async fn introspect_on(addr: SocketAddr, key: &str, token: &str, client_ip: Option<&str>) -> Value {
    let answer = introspect_as(addr, CLIENT, key, token, client_ip).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    answer.json()
}

/// Introspection on `addr` as the client `id` with `key`.
async fn introspect_as(
    addr: SocketAddr,
    id: &str,
    key: &str,
    token: &str,
    client_ip: Option<&str>,
) -> HttpAnswer {
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{key}"))
    );
    let mut headers = vec![FORM, ("Authorization", basic.as_str())];
    if let Some(ip) = client_ip {
        headers.push(("X-Latchkey-Client-IP", ip));
    }
    http_post(
        addr,
        "/oauth2/introspect",
        &headers,
        form(&[("token", token)]).as_bytes(),
    )
    .await
}

async fn introspect(server: &TestServer, token: &str) -> Value {
    introspect_on(
        server.adapters_addr,
        &server.keys[&Role::Authenticator],
        token,
        None,
    )
    .await
}

async fn active(server: &TestServer, token: &str) -> bool {
    introspect(server, token).await["active"] == Value::Bool(true)
}

async fn revoked_rows(server: &TestServer) -> i64 {
    query_value(server, "SELECT COUNT(*) FROM oauth_revoked_token").await
}

/// A key file every replica of a test shares.
fn key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("oauth2.key");
    std::fs::write(&path, [42u8; 32]).unwrap();
    path
}

async fn a_token_lives_only_while_its_login_would_pass(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key_file = key_file(dir.path());
    let server = TestServer::start_with(backend, |config| {
        config.oauth2.key_file = Some(key_file.clone());
    })
    .await;
    let issued = issue(
        &server,
        issue_request("alice@example.com", "Mail", &[Protocol::Imap]),
    )
    .await;
    let secret = issued.secret;
    let name = issued.app_password.unwrap().name;
    let runs = argon2_runs(&server);

    // The grant: a token bound to the login, with what Dovecot reads.
    let answer = grant(
        &server,
        "Alice@Example.com",
        &secret,
        "imap",
        "192.0.2.7:40112",
    )
    .await;
    let token = token_of(&answer);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let body = answer.json();
    assert!(token.starts_with("lkat_") && token.len() <= 256, "{token}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "imap");
    assert_eq!(body["username"], "alice@example.com");
    assert_eq!(body["active"], true);
    assert_eq!(argon2_runs(&server), runs + 1, "one verification");
    assert_eq!(
        revoked_rows(&server).await,
        0,
        "nothing written for a token"
    );

    // Introspection, here and on another replica.
    let seen = introspect(&server, &token).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["username"], "alice@example.com");
    assert_eq!(seen["scope"], "imap");
    assert_eq!(seen["client_id"], CLIENT);
    assert_eq!(
        seen["exp"].as_i64().unwrap() - seen["iat"].as_i64().unwrap(),
        300
    );
    let replica = server
        .replica_with(|config| config.oauth2.key_file = Some(key_file.clone()))
        .await;
    assert_eq!(introspect(&replica, &token).await["active"], true);
    // A replica without the key file reads nothing of it.
    let keyless = server.replica_with(|_| {}).await;
    assert_eq!(
        introspect(&keyless, &token).await,
        serde_json::json!({"active": false})
    );
    keyless.stop().await;
    // Bound to its client address: asked for another, inactive.
    let key = &server.keys[&Role::Authenticator];
    let elsewhere = introspect_on(server.adapters_addr, key, &token, Some("203.0.113.9")).await;
    assert_eq!(elsewhere, serde_json::json!({"active": false}));
    let here = introspect_on(server.adapters_addr, key, &token, Some("192.0.2.7")).await;
    assert_eq!(here["active"], true);

    // A suspension, a disablement and a revocation end it at once, on
    // every replica; resuming and enabling bring it back while it lives.
    server
        .app_passwords()
        .suspend_app_password(SuspendAppPasswordRequest {
            name: name.clone(),
            reason: "travel".into(),
        })
        .await
        .unwrap();
    assert!(!active(&replica, &token).await, "suspended");
    server
        .app_passwords()
        .resume_app_password(ResumeAppPasswordRequest { name: name.clone() })
        .await
        .unwrap();
    assert!(active(&replica, &token).await, "resumed");
    let account = "accounts/alice@example.com".to_owned();
    server
        .accounts()
        .disable_account(DisableAccountRequest {
            name: account.clone(),
            reason: "offboarding".into(),
        })
        .await
        .unwrap();
    assert!(!active(&server, &token).await, "account disabled");
    server
        .accounts()
        .enable_account(EnableAccountRequest { name: account })
        .await
        .unwrap();
    assert!(active(&server, &token).await, "account enabled");

    // Expiry, on the injected clock.
    server.clock.advance(std::time::Duration::from_secs(299));
    replica.clock.advance(std::time::Duration::from_secs(299));
    assert!(active(&replica, &token).await, "within its life");
    server.clock.advance(std::time::Duration::from_secs(1));
    assert!(!active(&server, &token).await, "expired");

    // RFC 7009: only the client it was issued to revokes it; the answer
    // is 200 either way.
    let fresh =
        token_of(&grant(&server, "alice@example.com", &secret, "imap", "192.0.2.7:1").await);
    let other_key = server
        .callers()
        .create_caller(CreateCallerRequest {
            name: "other-proxy".into(),
            role: latchkey::grpc::pb::Role::Authenticator as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key;
    let revoke = |id: &'static str, key: String, token: String| {
        let addr = server.adapters_addr;
        async move {
            post_form(
                addr,
                "/oauth2/revoke",
                &[
                    ("token", &token),
                    ("client_id", id),
                    ("client_secret", &key),
                ],
                None,
            )
            .await
        }
    };
    let by_other = revoke("other-proxy", other_key.clone(), fresh.clone()).await;
    assert_eq!(by_other.status, 200, "{by_other:?}");
    assert!(
        active(&server, &fresh).await,
        "another client's revoke changes nothing"
    );
    // Another authenticator of the deployment introspects it, under its
    // own name only.
    let other = introspect_as(
        server.adapters_addr,
        "other-proxy",
        &other_key,
        &fresh,
        None,
    )
    .await;
    assert_eq!(other.json()["active"], true, "{other:?}");
    let mismatched = introspect_as(server.adapters_addr, CLIENT, &other_key, &fresh, None).await;
    assert_eq!(mismatched.status, 401, "a key goes with its own client_id");
    assert_eq!(mismatched.json()["error"], "invalid_client");
    assert_eq!(revoked_rows(&server).await, 0);
    let by_owner = revoke(CLIENT, key.clone(), fresh.clone()).await;
    assert_eq!(by_owner.status, 200);
    assert!(!active(&server, &fresh).await, "revoked");
    assert!(!active(&replica, &fresh).await, "revoked on every replica");
    let digest: String = query_value(&server, "SELECT digest FROM oauth_revoked_token").await;
    assert_eq!(
        digest,
        lower_hex(&Sha256::digest(fresh.as_bytes())),
        "kept as a digest"
    );
    assert_eq!(
        revoke(CLIENT, key.clone(), fresh.clone()).await.status,
        200,
        "again"
    );

    // Revoking the password ends every token of it.
    let last = token_of(&grant(&server, "alice@example.com", &secret, "imap", "192.0.2.7:2").await);
    assert!(active(&replica, &last).await);
    revoke_password(&server, name).await;
    assert!(!active(&replica, &last).await, "password revoked");
    let refused = grant(&server, "alice@example.com", &secret, "imap", "192.0.2.7:3").await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "invalid_grant");

    // The logins are the door's, in the metrics.
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains(r#"adapter="oauth2",protocol="imap",result="success""#),
        "{metrics}"
    );
    replica.stop().await;
    server.stop().await;
}

async fn revocations_are_kept_until_the_token_expires(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.oauth2.token_lifetime_secs = 60;
    })
    .await;
    let (_, secret) = issue_simple(&server, "bob").await;
    let key = server.keys[&Role::Authenticator].clone();
    let mut tokens = Vec::new();
    for n in 0..3 {
        let remote = format!("192.0.2.{n}:993");
        tokens.push(token_of(
            &grant(&server, "bob", &secret, "imap", &remote).await,
        ));
    }
    assert_eq!(revoked_rows(&server).await, 0, "issuing writes nothing");
    for token in &tokens[..2] {
        let answer = post_form(
            server.adapters_addr,
            "/oauth2/revoke",
            &[
                ("token", token),
                ("client_id", CLIENT),
                ("client_secret", &key),
            ],
            None,
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    assert_eq!(revoked_rows(&server).await, 2);
    assert!(!active(&server, &tokens[0]).await && !active(&server, &tokens[1]).await);
    assert!(active(&server, &tokens[2]).await, "the others live on");

    // Expired: housekeeping forgets the revocations.
    server.clock.advance(std::time::Duration::from_secs(61));
    until_rows(&server, 0).await;
    assert!(!active(&server, &tokens[2]).await, "expired");
    server.stop().await;
}

/// Waits for housekeeping (on the moved clock) to leave `rows` revocations.
async fn until_rows(server: &TestServer, rows: i64) {
    server.clock.advance(std::time::Duration::from_secs(3_600));
    for _ in 0..100 {
        if revoked_rows(server).await == rows {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        revoked_rows(server).await,
        rows,
        "housekeeping pruned expired revocations"
    );
}

async fn revoke_password(server: &TestServer, name: String) {
    revoke(server, name).await;
}

async fn metrics_text(server: &TestServer) -> String {
    crate::metrics::scrape(server).await.1
}

/// Bad input, each refused before any login with the answer RFC 6749 gives
/// it: nothing verified, counted or stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_nothing_verified_or_counted() {
    use base64::Engine as _;
    let server = TestServer::start(Backend::Sqlite).await;
    let (name, secret) = issue_simple(&server, "dave").await;
    let key = server.keys[&Role::Authenticator].clone();
    let issuer_key = server.keys[&Role::Issuer].clone();
    let addr = server.adapters_addr;
    let good = |password: &str| {
        vec![
            ("grant_type".to_owned(), "password".to_owned()),
            ("username".to_owned(), "dave".to_owned()),
            ("password".to_owned(), password.to_owned()),
            ("client_id".to_owned(), CLIENT.to_owned()),
            ("client_secret".to_owned(), key.clone()),
            ("scope".to_owned(), "imap".to_owned()),
        ]
    };
    let with = |changes: &[(&str, Option<&str>)]| {
        let mut params = good(&secret);
        for (name, value) in changes {
            params.retain(|(n, _)| n != name);
            if let Some(value) = value {
                params.push(((*name).to_owned(), (*value).to_owned()));
            }
        }
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
    };
    let remote = ("X-Dovecot-Auth-Remote", "192.0.2.44:143");
    let basic = |id: &str, secret: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    };
    let both = basic(CLIENT, &key);
    let runs = argon2_runs(&server);
    let failures = stored_failures_total(&server).await;
    let cases: Vec<Case> = vec![
        (
            "JSON, not a form",
            vec![("Content-Type", "application/json"), remote],
            "{}".into(),
            400,
            "invalid_request",
        ),
        (
            "no content type",
            vec![remote],
            with(&[]),
            400,
            "invalid_request",
        ),
        (
            "no grant type",
            vec![FORM, remote],
            with(&[("grant_type", None)]),
            400,
            "invalid_request",
        ),
        (
            "authorization code",
            vec![FORM, remote],
            with(&[("grant_type", Some("authorization_code"))]),
            400,
            "unsupported_grant_type",
        ),
        (
            "client credentials",
            vec![FORM, remote],
            with(&[("grant_type", Some("client_credentials"))]),
            400,
            "unsupported_grant_type",
        ),
        (
            "no username",
            vec![FORM, remote],
            with(&[("username", None)]),
            400,
            "invalid_request",
        ),
        (
            "no password",
            vec![FORM, remote],
            with(&[("password", None)]),
            400,
            "invalid_request",
        ),
        (
            "a repeated password",
            vec![FORM, remote],
            format!("{}&password=x", with(&[])),
            400,
            "invalid_request",
        ),
        (
            "too many parameters",
            vec![FORM, remote],
            format!(
                "{}{}",
                with(&[]),
                (0..20).map(|i| format!("&x{i}=1")).collect::<String>()
            ),
            400,
            "invalid_request",
        ),
        (
            "no client address",
            vec![FORM],
            with(&[]),
            400,
            "invalid_request",
        ),
        (
            "a client address that is not one",
            vec![FORM, ("X-Dovecot-Auth-Remote", "mail.example:1")],
            with(&[]),
            400,
            "invalid_request",
        ),
        (
            "an unknown protocol",
            vec![FORM, remote],
            with(&[("scope", Some("openid"))]),
            400,
            "invalid_scope",
        ),
        (
            "a scope against this login's service",
            vec![FORM, remote, ("X-Dovecot-Auth-Service", "pop3")],
            with(&[]),
            400,
            "invalid_scope",
        ),
        (
            "two client addresses that differ",
            vec![FORM, remote, ("X-Latchkey-Client-IP", "198.51.100.9")],
            with(&[]),
            400,
            "invalid_request",
        ),
        (
            "two protocols",
            vec![FORM, remote],
            with(&[("scope", Some("imap pop3"))]),
            400,
            "invalid_scope",
        ),
        (
            "no client",
            vec![FORM, remote],
            with(&[("client_id", None), ("client_secret", None)]),
            401,
            "invalid_client",
        ),
        (
            "a wrong client secret",
            vec![FORM, remote],
            with(&[("client_secret", Some("lk_wrong"))]),
            401,
            "invalid_client",
        ),
        (
            "another caller's name",
            vec![FORM, remote],
            with(&[("client_id", Some("test-issuer"))]),
            401,
            "invalid_client",
        ),
        (
            "an issuer's key",
            vec![FORM, remote],
            with(&[
                ("client_id", Some("test-issuer")),
                ("client_secret", Some(&issuer_key)),
            ]),
            401,
            "invalid_client",
        ),
        (
            "Basic and a form secret",
            vec![FORM, remote, ("Authorization", &both)],
            with(&[]),
            400,
            "invalid_request",
        ),
        (
            "a password no account has",
            vec![FORM, remote],
            with(&[("password", Some("a\u{1}b"))]),
            400,
            "invalid_grant",
        ),
    ];
    for (what, headers, body, status, error) in cases {
        let answer = http_post(addr, "/oauth2/token", &headers, body.as_bytes()).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert_eq!(answer.json()["error"], error, "{what}");
        assert!(
            !answer.body.contains(&secret) && !answer.body.contains(&key),
            "{what}: nothing echoed"
        );
        if status == 401 {
            assert!(answer.header("www-authenticate").is_some(), "{what}");
        }
    }
    // Too large: refused unread.
    let huge = format!("{}&pad={}", with(&[]), "a".repeat(9 * 1024));
    let answer = http_post(addr, "/oauth2/token", &[FORM, remote], huge.as_bytes()).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    // Introspection and revocation need a client and a token.
    for path in ["/oauth2/introspect", "/oauth2/revoke"] {
        let no_client = post_form(addr, path, &[("token", "lkat_x")], None).await;
        assert_eq!(no_client.status, 401, "{path}");
        let wrong = post_form(
            addr,
            path,
            &[
                ("token", "lkat_x"),
                ("client_id", CLIENT),
                ("client_secret", "lk_nope"),
            ],
            None,
        )
        .await;
        assert_eq!(wrong.status, 401, "{path}");
        let no_token = post_form(
            addr,
            path,
            &[("client_id", CLIENT), ("client_secret", &key)],
            None,
        )
        .await;
        assert_eq!(no_token.status, 400, "{path}");
        assert_eq!(no_token.json()["error"], "invalid_request");
    }
    // Anything that is not one of ours is inactive, unread.
    for text in [
        "x",
        "lkat_",
        &secret,
        &"a".repeat(48),
        &format!("lkat_{}", "A".repeat(120)),
    ] {
        assert_eq!(
            introspect(&server, text).await,
            serde_json::json!({"active": false}),
            "{text:?}"
        );
    }
    assert_eq!(argon2_runs(&server), runs, "nothing was verified");
    assert_eq!(
        stored_failures_total(&server).await,
        failures,
        "nothing was counted"
    );
    assert_eq!(revoked_rows(&server).await, 0, "nothing was stored");

    // A token reused after its revocation: inactive, and the grant after
    // the password's revocation is refused.
    let token = token_of(&grant(&server, "dave", &secret, "imap", "192.0.2.44:143").await);
    let revoked = post_form(
        addr,
        "/oauth2/revoke",
        &[
            ("token", &token),
            ("client_id", CLIENT),
            ("client_secret", &key),
        ],
        None,
    )
    .await;
    assert_eq!(revoked.status, 200);
    assert!(!active(&server, &token).await);
    revoke_password(&server, name).await;
    assert_eq!(
        grant(&server, "dave", &secret, "imap", "192.0.2.44:143")
            .await
            .json()["error"],
        "invalid_grant"
    );

    // A token whose password is gone with its account: revoking it is
    // answered 200 (it ended already), not a temporary failure.
    let (_, eves) = issue_simple(&server, "eve").await;
    let orphan = token_of(&grant(&server, "eve", &eves, "imap", "192.0.2.45:143").await);
    server
        .accounts()
        .delete_account(latchkey::grpc::pb::DeleteAccountRequest {
            name: "accounts/eve".into(),
        })
        .await
        .unwrap();
    assert!(!active(&server, &orphan).await);
    let gone = post_form(
        addr,
        "/oauth2/revoke",
        &[
            ("token", &orphan),
            ("client_id", CLIENT),
            ("client_secret", &key),
        ],
        None,
    )
    .await;
    assert_eq!(gone.status, 200, "{gone:?}");
    server.stop().await;
}

/// Wrong passwords are `invalid_grant`; past the throttle's limit the
/// right one is answered `429 temporarily_unavailable` with Retry-After
/// (what Dovecot turns into a wait and a temporary failure), with no
/// argon2. (With the database gone, `503 temporarily_unavailable`:
/// `adapters::a_database_outage_is_a_temporary_failure`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_throttling_are_told_apart() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, secret) = issue_simple(&server, "erin").await;
    for n in 0..5 {
        let wrong = grant(&server, "erin", &wrong_secret(n), "imap", "198.51.100.4:1").await;
        assert_eq!(wrong.status, 400, "{wrong:?}");
        assert_eq!(wrong.json()["error"], "invalid_grant");
    }
    let runs = argon2_runs(&server);
    let throttled = grant(&server, "erin", &secret, "imap", "198.51.100.4:2").await;
    assert_eq!(throttled.status, 429, "{throttled:?}");
    assert_eq!(throttled.json()["error"], "temporarily_unavailable");
    assert!(
        throttled
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(
        argon2_runs(&server),
        runs,
        "a throttled grant runs no argon2"
    );
    // Another network is not blocked.
    token_of(&grant(&server, "erin", &secret, "imap", "203.0.113.5:2").await);
    server.stop().await;
}

/// What is sent, as what, with which body, and the status and error
/// expected.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16, &'a str);

async fn stored_failures_total(server: &TestServer) -> i64 {
    query_value(
        server,
        "SELECT COALESCE(SUM(failures), 0) FROM auth_throttle",
    )
    .await
}
