//! The proxy adapters over HTTP, spoken the way nginx speaks them (HTTP/1.0,
//! one connection per request): answers in each proxy's protocol, and bad
//! input refused with nothing counted and nothing written.

use std::collections::HashMap;
use std::net::SocketAddr;

use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    nginx_mail_answers_in_its_own_protocol,
    http_basic_answers_for_auth_request
);

/// An HTTP answer: status and headers (names lowercase).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One HTTP/1.0 GET on a connection of its own, as nginx's auth_http sends.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let headers: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(name, value)| (*name, value.as_bytes()))
        .collect();
    get_bytes(addr, path, &headers).await
}

/// [`get`] with header values as bytes, which need not be text.
pub async fn get_bytes(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> Answer {
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let HttpAnswer {
        status, headers, ..
    } = HttpAnswer::read(&response);
    Answer { status, headers }
}

/// nginx mail's request for one login.
pub fn mail(
    key: &str,
    protocol: &str,
    user: &str,
    pass: &str,
    ip: &str,
    attempt: u32,
) -> Vec<(String, String)> {
    vec![
        ("X-Latchkey-Key".into(), key.into()),
        ("Auth-Method".into(), "plain".into()),
        ("Auth-User".into(), user.into()),
        ("Auth-Pass".into(), pass.into()),
        ("Auth-Protocol".into(), protocol.into()),
        ("Auth-Login-Attempt".into(), attempt.to_string()),
        ("Client-IP".into(), ip.into()),
    ]
}

pub async fn nginx_mail(server: &TestServer, headers: &[(String, String)]) -> Answer {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    get(server.adapters_addr, "/auth/nginx-mail", &headers).await
}

async fn nginx_mail_answers_in_its_own_protocol(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.proxy_adapters.mail_upstreams.imap = Some("127.0.0.1:1143".parse().unwrap());
        config.proxy_adapters.mail_upstreams.smtp = Some("127.0.0.1:1025".parse().unwrap());
    })
    .await;
    let key = server.keys[&Role::Authenticator].clone();
    let (name, secret) = issue_simple(&server, "Mia@Example.com").await;
    // nginx escapes the password: its spaces arrive as %20.
    let escaped = secret.replace(' ', "%20");

    let ok = nginx_mail(
        &server,
        &mail(&key, "imap", "MIA@example.com", &escaped, "192.0.2.3", 1),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("auth-status"), Some("OK"));
    assert_eq!(ok.header("auth-server"), Some("127.0.0.1"));
    assert_eq!(ok.header("auth-port"), Some("1143"));
    assert_eq!(
        ok.header("auth-user"),
        Some("mia@example.com"),
        "normalized"
    );

    let wrong = nginx_mail(
        &server,
        &mail(
            &key,
            "imap",
            "mia@example.com",
            &wrong_secret(1),
            "192.0.2.3",
            1,
        ),
    )
    .await;
    assert_eq!(
        wrong.header("auth-status"),
        Some("Invalid login or password")
    );
    assert_eq!(wrong.header("auth-wait"), Some("3"));
    assert_eq!(wrong.header("auth-error-code"), None);
    // After many attempts in one session, no more Auth-Wait: nginx closes it.
    let late = nginx_mail(
        &server,
        &mail(
            &key,
            "imap",
            "mia@example.com",
            &wrong_secret(2),
            "192.0.2.3",
            11,
        ),
    )
    .await;
    assert_eq!(late.header("auth-wait"), None);
    // SMTP has its own error code; a POP3 login of an IMAP+SMTP password fails.
    let smtp = nginx_mail(
        &server,
        &mail(
            &key,
            "smtp",
            "mia@example.com",
            &wrong_secret(3),
            "192.0.2.4",
            1,
        ),
    )
    .await;
    assert_eq!(smtp.header("auth-error-code"), Some("535 5.7.8"));
    let pop3 = nginx_mail(
        &server,
        &mail(&key, "pop3", "mia@example.com", &escaped, "192.0.2.5", 1),
    )
    .await;
    assert_eq!(
        pop3.header("auth-status"),
        Some("Invalid login or password")
    );

    // Throttled: told to wait out a short block.
    for n in 0..5 {
        nginx_mail(
            &server,
            &mail(
                &key,
                "imap",
                "mia@example.com",
                &wrong_secret(10 + n),
                "192.0.2.6",
                1,
            ),
        )
        .await;
    }
    let throttled = nginx_mail(
        &server,
        &mail(&key, "imap", "mia@example.com", &escaped, "192.0.2.6", 2),
    )
    .await;
    assert_eq!(
        throttled.header("auth-status"),
        Some("Too many failed sign-ins; try again later")
    );
    assert_eq!(throttled.header("auth-wait"), Some("30"));

    // The login went into the audit trail and the use was recorded.
    let password = server
        .app_passwords()
        .get_app_password(latchkey::grpc::pb::GetAppPasswordRequest { name })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(password.last_use_protocol(), Protocol::Imap);
    assert_eq!(password.last_use_client_ip, "192.0.2.3");

    // Bad input: refused, nothing verified, nothing counted.
    let runs = argon2_runs(&server);
    let good = mail(&key, "imap", "mia@example.com", &escaped, "192.0.2.9", 1);
    let with = |name: &str, value: &str| {
        let mut headers = good.clone();
        headers.retain(|(n, _)| n != name);
        headers.push((name.to_owned(), value.to_owned()));
        headers
    };
    let without = |name: &str| {
        let mut headers = good.clone();
        headers.retain(|(n, _)| n != name);
        headers
    };
    let huge = "a".repeat(100_000);
    type Case<'a> = (&'a str, Vec<(String, String)>, u16);
    let cases: Vec<Case> = vec![
        ("no key", without("X-Latchkey-Key"), 403),
        (
            "a wrong key",
            with("X-Latchkey-Key", "latchkey_aaaaaaaaaaaa_bbbb"),
            403,
        ),
        (
            "an issuer's key",
            with("X-Latchkey-Key", &server.keys[&Role::Issuer]),
            403,
        ),
        ("no user", without("Auth-User"), 400),
        ("no password", without("Auth-Pass"), 400),
        ("no client address", without("Client-IP"), 400),
        ("a bad client address", with("Client-IP", "not-an-ip"), 400),
        ("an unknown protocol", with("Auth-Protocol", "gopher"), 400),
        ("an HTTP protocol", with("Auth-Protocol", "caldav"), 400),
        ("an invalid escape", with("Auth-Pass", "%zz"), 400),
        (
            "an escaped control character",
            with("Auth-Pass", "abc%0Adef"),
            400,
        ),
        (
            "an escaped newline in the user",
            with("Auth-User", "mia%0A@example.com"),
            400,
        ),
        (
            "a bad attempt number",
            with("Auth-Login-Attempt", "many"),
            400,
        ),
        ("an oversized password", with("Auth-Pass", &huge), 400),
    ];
    for (what, headers, status) in cases {
        let answer = nginx_mail(&server, &headers).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert_eq!(answer.header("auth-status"), None, "{what}");
    }
    // Methods that need a stored plaintext are refused, not tried.
    // Headers past what the HTTP layer takes at all (about 400 KB).
    let oversized = nginx_mail(&server, &with("Auth-Pass", &"a".repeat(1 << 20))).await;
    assert!(matches!(oversized.status, 431 | 0), "{oversized:?}");
    for method in ["apop", "cram-md5", "external"] {
        let answer = nginx_mail(&server, &with("Auth-Method", method)).await;
        assert_eq!(
            answer.header("auth-status"),
            Some("Authentication method not supported")
        );
    }
    assert_eq!(argon2_runs(&server), runs, "no bad request was verified");
    let scopes = latchkey::domain::login::throttle::Scopes::of(
        &latchkey::domain::shared::username::Username::parse("mia@example.com").unwrap(),
        "192.0.2.9".parse().unwrap(),
        None,
    );
    assert_eq!(stored_failures(&server, &scopes.pair.key).await, 0);
    server.stop().await;
}

async fn http_basic_answers_for_auth_request(backend: Backend) {
    use base64::Engine as _;
    let server = TestServer::start(backend).await;
    let key = server.keys[&Role::Authenticator].clone();
    let issued = issue(
        &server,
        issue_request("dave", "Calendar", &[Protocol::Caldav]),
    )
    .await;
    let secret = issued.secret;
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let ask =
        |protocol: &'static str, authorization: Option<String>, agent: Option<&'static str>| {
            let key = key.clone();
            let addr = server.adapters_addr;
            async move {
                let mut headers = vec![
                    ("X-Latchkey-Key", key),
                    ("X-Latchkey-Protocol", protocol.to_owned()),
                    ("X-Latchkey-Client-IP", "198.51.100.7".to_owned()),
                ];
                if let Some(authorization) = authorization {
                    headers.push(("Authorization", authorization));
                }
                if let Some(agent) = agent {
                    headers.push(("User-Agent", agent.to_owned()));
                }
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                get(addr, "/auth/http-basic", &headers).await
            }
        };
    let ok = ask("caldav", Some(basic("DAVE", &secret)), Some("DAVx5/4.3")).await;
    assert_eq!(ok.status, 204, "{ok:?}");
    assert_eq!(ok.header("x-latchkey-user"), Some("dave"));
    let name = issued.app_password.unwrap().name;
    let shown = server
        .app_passwords()
        .get_app_password(latchkey::grpc::pb::GetAppPasswordRequest { name })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.last_use_client, "DAVx5/4.3");

    let wrong = ask("caldav", Some(basic("dave", &wrong_secret(4))), None).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic realm="));
    let scoped = ask("carddav", Some(basic("dave", &secret)), None).await;
    assert_eq!(scoped.status, 401, "a CalDAV password is not a CardDAV one");
    let none = ask("caldav", None, None).await;
    assert_eq!(none.status, 401, "no credentials: asked for them");
    for n in 0..5 {
        ask("caldav", Some(basic("dave", &wrong_secret(20 + n))), None).await;
    }
    let throttled = ask("caldav", Some(basic("dave", &secret)), None).await;
    assert_eq!(throttled.status, 429);
    assert!(
        throttled
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );

    let runs = argon2_runs(&server);
    for (what, answer) in [
        (
            "unknown protocol",
            ask("gopher", Some(basic("dave", &secret)), None).await,
        ),
        (
            "not basic",
            ask("caldav", Some("Bearer x".into()), None).await,
        ),
        (
            "not base64",
            ask("caldav", Some("Basic !!!".into()), None).await,
        ),
        (
            "no colon",
            ask(
                "caldav",
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("dave")
                )),
                None,
            )
            .await,
        ),
        (
            "control character",
            ask("caldav", Some(basic("dave", "a\u{1}b")), None).await,
        ),
    ] {
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
    }
    assert_eq!(argon2_runs(&server), runs, "no bad request was verified");
    server.stop().await;
}

/// `X-Latchkey-Require-Canonical: yes` (what Dovecot's Lua passdb sends):
/// a username latchkey's normalization would change is refused before any
/// argon2 work and counts nothing; latchkey's own spelling signs in; without
/// the header any spelling does, as before.
#[tokio::test]
async fn dovecot_can_require_latchkeys_spelling_of_the_username() {
    use base64::Engine as _;
    let server = TestServer::start(Backend::Sqlite).await;
    let key = server.keys[&Role::Authenticator].clone();
    let (_, secret) = issue_simple(&server, "alice@example.com").await;
    let ask = |user: &str, password: &str, canonical: Option<&'static str>| {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let key = key.clone();
        let addr = server.adapters_addr;
        async move {
            let mut headers = vec![
                ("X-Latchkey-Key", key.as_str()),
                ("X-Latchkey-Protocol", "imap"),
                ("X-Latchkey-Client-IP", "192.0.2.44"),
                ("Authorization", basic.as_str()),
            ];
            if let Some(value) = canonical {
                headers.push(("X-Latchkey-Require-Canonical", value));
            }
            get(addr, "/auth/dovecot", &headers).await
        }
    };
    let runs = argon2_runs(&server);
    for spelling in [
        "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}@example.com",
        "Alice@example.com",
        " alice@example.com",
        "ALICE@EXAMPLE.COM",
    ] {
        for password in [secret.as_str(), &wrong_secret(1)] {
            let refused = ask(spelling, password, Some("yes")).await;
            assert_eq!(refused.status, 401, "{spelling:?}: {refused:?}");
            assert_eq!(
                refused.header("x-latchkey-refused"),
                Some("username-not-canonical")
            );
            assert_eq!(refused.header("x-latchkey-user"), None);
        }
    }
    assert_eq!(argon2_runs(&server), runs, "nothing was verified");
    let events = audit_events(
        &server,
        latchkey::grpc::pb::ListAuditEventsRequest {
            account: "accounts/alice@example.com".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(events.len(), 1, "the issue alone: nothing was counted");

    let ok = ask("alice@example.com", &secret, Some("YES")).await;
    assert_eq!(ok.status, 204, "{ok:?}");
    assert_eq!(ok.header("x-latchkey-user"), Some("alice@example.com"));
    let wrong = ask("alice@example.com", &wrong_secret(2), Some("yes")).await;
    assert_eq!(
        (wrong.status, wrong.header("x-latchkey-refused")),
        (401, None)
    );
    let folded = ask("\u{ff41}lice@example.com", &secret, None).await;
    assert_eq!(folded.status, 204, "without the header: {folded:?}");
    assert_eq!(folded.header("x-latchkey-user"), Some("alice@example.com"));
    let unclear = ask("alice@example.com", &secret, Some("1")).await;
    assert_eq!(unclear.status, 400, "{unclear:?}");
    server.stop().await;
}

/// A User-Agent is only a label for review pages: a long one, or one with
/// bytes that are not ASCII (UTF-8 or not), signs in like any other, and
/// what is kept as the client is cut and cleaned. nginx would turn a 400
/// into a 500, and such a client could never sign in.
#[tokio::test]
async fn any_user_agent_signs_in_and_is_kept_cut_and_cleaned() {
    use base64::Engine as _;
    let server = TestServer::start(Backend::Sqlite).await;
    let key = server.keys[&Role::Authenticator].clone();
    let long = format!("Calendar/{}", "x".repeat(291));
    assert_eq!(long.len(), 300);
    let cases: [(&str, Vec<u8>, String); 3] = [
        (
            "long",
            long.clone().into_bytes(),
            format!("{}…", &long[..127]),
        ),
        (
            "utf8",
            "Kalender/2.0 (Ünïcode; 日本)".as_bytes().to_vec(),
            "Kalender/2.0 (Ünïcode; 日本)".to_owned(),
        ),
        (
            "latin1",
            b"Agenda/1.0 (\xe9t\xe9)".to_vec(),
            "Agenda/1.0 (\u{fffd}t\u{fffd})".to_owned(),
        ),
    ];
    let runs = argon2_runs(&server);
    for (user, agent, kept) in cases {
        let issued = issue(
            &server,
            issue_request(user, "Calendar", &[Protocol::Caldav]),
        )
        .await;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", issued.secret))
        );
        let answer = get_bytes(
            server.adapters_addr,
            "/auth/http-basic",
            &[
                ("X-Latchkey-Key", key.as_bytes()),
                ("X-Latchkey-Protocol", b"caldav"),
                ("X-Latchkey-Client-IP", b"198.51.100.7"),
                ("Authorization", basic.as_bytes()),
                ("User-Agent", &agent),
            ],
        )
        .await;
        assert_eq!(answer.status, 204, "{user}: {answer:?}");
        assert_eq!(answer.header("x-latchkey-user"), Some(user));
        let shown = server
            .app_passwords()
            .get_app_password(latchkey::grpc::pb::GetAppPasswordRequest {
                name: issued.app_password.unwrap().name,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(shown.last_use_client, kept, "{user}");
        assert!(shown.last_use_client.chars().count() <= 128, "{user}");
    }
    assert_eq!(argon2_runs(&server), runs + 3, "each signed in once");
    server.stop().await;
}

/// With latchkey up but its database unreachable, the adapters answer a
/// temporary failure (SMTP 454 4.7.0, HTTP 503), never a wrong password,
/// and count nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_test_postgres), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
async fn a_database_outage_is_a_temporary_failure() {
    let (server, link) = TestServer::start_behind_link(Backend::Postgres, |config| {
        config.database.acquire_timeout_ms = 500;
        config.proxy_adapters.mail_upstreams.smtp = Some("127.0.0.1:1025".parse().unwrap());
    })
    .await;
    let key = server.keys[&Role::Authenticator].clone();
    let (_, secret) = issue_simple(&server, "olga").await;
    let escaped = secret.replace(' ', "%20");
    // The caller's row is read (and cached) while the database is up.
    let up = nginx_mail(
        &server,
        &mail(&key, "smtp", "olga", &escaped, "192.0.2.3", 1),
    )
    .await;
    assert_eq!(up.header("auth-status"), Some("OK"));

    link.down();
    let down = nginx_mail(
        &server,
        &mail(&key, "smtp", "olga", &escaped, "192.0.2.3", 1),
    )
    .await;
    assert_eq!(
        down.header("auth-status"),
        Some("Temporary server problem, try again later")
    );
    assert_eq!(down.header("auth-error-code"), Some("454 4.7.0"));
    assert_eq!(down.header("auth-wait"), None);
    let basic = get(
        server.adapters_addr,
        "/auth/dovecot",
        &[
            ("X-Latchkey-Key", &key),
            ("X-Latchkey-Protocol", "imap"),
            ("X-Latchkey-Client-IP", "192.0.2.3"),
            ("Authorization", "Basic b2xnYTp4eXo="),
        ],
    )
    .await;
    assert_eq!(basic.status, 503);
    let grant = http_post(
        server.adapters_addr,
        "/oauth2/token",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Dovecot-Auth-Remote", "192.0.2.3:143"),
        ],
        format!(
            "grant_type=password&username=olga&password={escaped}&scope=smtp\
             &client_id=test-authenticator&client_secret={key}"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(grant.status, 503, "{grant:?}");
    assert!(grant.body.contains("temporarily_unavailable"), "{grant:?}");
    assert!(!grant.body.contains("invalid_grant"));
    link.restore();
    server.stop().await;
}

/// A right password for a protocol with no `mail_upstreams` entry has
/// nowhere to go: it is answered with a temporary failure and counted as
/// what the user got (`unavailable`), never as a success. (The login is
/// still decided: a wrong password there stays a failure, throttled.)
#[tokio::test]
async fn nginx_mail_with_no_upstream_for_the_protocol_counts_no_success() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.proxy_adapters.mail_upstreams.imap = Some("127.0.0.1:1143".parse().unwrap());
        config.proxy_adapters.mail_upstreams.smtp = None;
    })
    .await;
    let key = server.keys[&Role::Authenticator].clone();
    let (_, secret) = issue_simple(&server, "mia@example.com").await;
    let escaped = secret.replace(' ', "%20");
    let smtp = nginx_mail(
        &server,
        &mail(&key, "smtp", "mia@example.com", &escaped, "192.0.2.3", 1),
    )
    .await;
    assert_eq!(
        smtp.header("auth-status"),
        Some("Temporary server problem, try again later")
    );
    assert_eq!(smtp.header("auth-error-code"), Some("454 4.7.0"));

    let (_, metrics) = crate::metrics::scrape(&server).await;
    let counted = |result: &str| {
        let series = format!(
            "latchkey_authentications_total{{adapter=\"nginx-mail\",protocol=\"smtp\",result=\"{result}\"}}"
        );
        crate::metrics::sample(&metrics, &series).unwrap_or(0.0)
    };
    assert_eq!(counted("unavailable"), 1.0, "{metrics}");
    assert_eq!(counted("success"), 0.0, "{metrics}");
}
