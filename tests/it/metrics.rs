//! Prometheus metrics on their own listener: requests by method and code,
//! latency, logins by protocol and result, the hashing pool and the cache.

use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

const AUTHENTICATE: &str = "/latchkey.v1.LegacyAuthService/Authenticate";

/// `GET /metrics`, as a scraper sends it; returns the head and the body.
pub async fn scrape(server: &TestServer) -> (String, String) {
    scrape_at(server.metrics_addr.expect("test servers serve metrics")).await
}

/// [`scrape`] of the metrics listener at `addr` (a server of any kind).
pub async fn scrape_at(addr: std::net::SocketAddr) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: latchkey\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// The value of the sample named exactly `series` (name and labels).
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_logins_and_the_work_behind_them() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, secret) = issue_simple(&server, "mia").await;
    for _ in 0..3 {
        assert!(login(&server, "mia", &secret).await.authenticated);
    }
    assert!(!login(&server, "mia", &wrong_secret(1)).await.authenticated);
    let anonymous = LegacyAuthServiceClient::new(server.as_caller(None))
        .authenticate(login_request(
            "mia",
            &secret,
            latchkey::grpc::pb::Protocol::Imap,
            "192.0.2.1",
        ))
        .await;
    assert_eq!(anonymous.unwrap_err().code(), tonic::Code::Unauthenticated);

    let (head, body) = scrape(&server).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/openmetrics-text"));
    let value =
        |series: &str| sample(&body, series).unwrap_or_else(|| panic!("{series} in\n{body}"));

    let requests = |code: &str| {
        value(&format!(
            "latchkey_grpc_requests_total{{method=\"{AUTHENTICATE}\",code=\"{code}\"}}"
        ))
    };
    assert_eq!(requests("OK"), 4.0);
    assert_eq!(requests("UNAUTHENTICATED"), 1.0);
    assert_eq!(
        value(&format!(
            "latchkey_grpc_request_duration_seconds_count{{method=\"{AUTHENTICATE}\"}}"
        )),
        5.0
    );
    let logins = |result: &str| {
        value(&format!(
            "latchkey_authentications_total{{adapter=\"grpc\",protocol=\"imap\",result=\"{result}\"}}"
        ))
    };
    assert_eq!(logins("success"), 3.0);
    assert_eq!(logins("invalid_credentials"), 1.0);

    // The first success ran argon2, the next two came from the cache; the
    // wrong password ran argon2 without consulting it: two runs, no more.
    assert_eq!(value("latchkey_verified_cache_misses_total"), 1.0);
    assert_eq!(value("latchkey_verified_cache_hits_total"), 2.0);
    assert_eq!(value("latchkey_argon2_verifications_total"), 2.0);
    assert!(value("latchkey_hash_pool_workers") >= 1.0);
    assert_eq!(value("latchkey_hash_pool_queue_depth"), 0.0);
    assert_eq!(value("latchkey_hash_pool_busy_workers"), 0.0);
    assert!(body.contains("latchkey_usage_pending "));

    // Nothing about the account or its secret.
    assert!(!body.contains("mia"));
    for form in secret_forms(&secret) {
        assert!(!body.contains(&form));
    }
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_path_is_counted_under_one_label() {
    let server = TestServer::start(Backend::Sqlite).await;
    let channel = server.channel();
    let mut grpc = tonic::client::Grpc::new(channel);
    for path in ["/made.up.Service/One", "/made.up.Service/Two"] {
        grpc.ready().await.unwrap();
        let status = grpc
            .unary::<(), (), _>(
                tonic::Request::new(()),
                http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_ne!(status.code(), tonic::Code::Ok);
    }
    let (_, body) = scrape(&server).await;
    assert!(!body.contains("made.up"), "{body}");
    assert!(body.contains("method=\"unknown\""), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_watchers_and_what_they_were_sent() {
    use latchkey::domain::callers::model::Role;

    let server = TestServer::start(Backend::Sqlite).await;
    let mut watcher =
        crate::watch::Watcher::open(&server, Role::Notifier, crate::watch::all_types()).await;
    issue_simple(&server, "mia").await;
    watcher.next().await;
    let (_, body) = scrape(&server).await;
    let value =
        |series: &str| sample(&body, series).unwrap_or_else(|| panic!("{series} in\n{body}"));
    assert_eq!(value("latchkey_watchers"), 1.0);
    assert_eq!(value("latchkey_watch_events_read_total"), 1.0);
    assert_eq!(value("latchkey_watch_events_sent_total"), 1.0);
}
