//! The transport under attack (raw HTTP/2 and TCP, to 127.0.0.1): streams
//! that declare large messages and never finish, with and without a key;
//! silent, half-open and idle connections; more connections than the cap.
//! Asserted by counting answers, closed connections, log lines and the
//! process's resident memory (server and attacker share this process, so
//! the attacker sends little: what would grow is the server's side).

use std::time::Duration;

use bytes::Bytes;
use latchkey::config::Config;
use latchkey::domain::callers::model::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::common::harness::{Backend, TestServer};
use crate::common::support::raw_h2;

/// The process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn health_answers(server: &TestServer) -> bool {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
    else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok()
}

/// Opens `streams` requests to `path` on one raw HTTP/2 connection, each
/// declaring a `declared`-byte message and sending `sent` bytes of it, and
/// never finishing. Returns how many got an answer (headers) within 10 s.
async fn half_sent_streams(
    server: &TestServer,
    path: &str,
    key: Option<&str>,
    streams: usize,
    declared: u32,
    sent: usize,
) -> usize {
    let mut client = raw_h2(server.addr).await;
    let mut answers = Vec::new();
    for _ in 0..streams {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", server.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        client = client.ready().await.unwrap();
        let (response, mut body) = client
            .send_request(request.body(()).unwrap(), false)
            .unwrap();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&declared.to_be_bytes());
        frame.extend(std::iter::repeat_n(0u8, sent));
        let _ = body.send_data(Bytes::from(frame), false);
        answers.push(tokio::spawn(async move {
            let answered = tokio::time::timeout(Duration::from_secs(10), response).await;
            drop(body);
            matches!(answered, Ok(Ok(_)) | Ok(Err(_)))
        }));
    }
    let mut answered = 0;
    for answer in answers {
        answered += usize::from(answer.await.unwrap());
    }
    answered
}

fn tight_transport(config: &mut Config) {
    config.server.request_timeout_secs = 2;
    config.server.handshake_timeout_ms = 500;
    config.server.idle_timeout_secs = 2;
    config.server.keepalive_interval_secs = 1;
    config.server.keepalive_timeout_secs = 1;
}

/// Attack 4: without a key, 200 health-check streams per connection on two
/// connections, each declaring a 4 MB message and sending part of it; with
/// a key, the same against Authenticate with 60 KB messages; and messages
/// within the limit that are never finished. Every stream is answered (a
/// declared size over the limit is refused from its prefix, a half-sent one
/// cut by the request timeout), memory stays bounded, and health answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_never_finish_cost_bounded_memory() {
    let server = TestServer::start_with(Backend::Sqlite, tight_transport).await;
    assert!(health_answers(&server).await);
    let before = rss_kib();

    let health = "/grpc.health.v1.Health/Check";
    let (a, b) = futures::join!(
        half_sent_streams(&server, health, None, 200, 4 << 20, 16 * 1024),
        half_sent_streams(&server, health, None, 200, 4 << 20, 16 * 1024),
    );
    assert_eq!((a, b), (200, 200), "every stream answered");
    assert!(
        health_answers(&server).await,
        "health answers during and after"
    );

    let key = server.keys[&Role::Authenticator].clone();
    let authenticate = "/latchkey.v1.LegacyAuthService/Authenticate";
    let (a, b) = futures::join!(
        half_sent_streams(&server, authenticate, Some(&key), 500, 60 * 1024, 8 * 1024),
        // Within the limit, never finished: cut by the request timeout.
        half_sent_streams(&server, authenticate, Some(&key), 200, 6 * 1024, 3 * 1024),
    );
    assert_eq!((a, b), (500, 200), "every stream answered");
    assert!(health_answers(&server).await);

    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "resident memory grew by {grown_mib} MiB");
    server.stop().await;
}

/// The server tells clients its stream limit, and keeps to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_limit_is_advertised() {
    let server =
        TestServer::start_with(Backend::Sqlite, |c| c.server.max_concurrent_streams = 7).await;
    // One exchange, so the server's settings have arrived.
    let mut client = raw_h2(server.addr).await;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/grpc.health.v1.Health/Check",
            server.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    response.await.unwrap();
    client = client.ready().await.unwrap();
    assert_eq!(client.current_max_send_streams(), 7);
    server.stop().await;
}

/// Reads until the peer closes; `true` if it did within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Attack 5: silent connections, past the cap and under it; a connection
/// that speaks HTTP/2 once and then never answers a ping; one that sends a
/// byte and goes quiet. Each is closed by the server; the cap is logged
/// once; health answers again once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_idle_and_excess_connections_are_closed() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        tight_transport(config);
        config.server.max_connections = 40;
        // Long enough that no silent connection is closed before all 100
        // are open: one stretch at the cap, one log line.
        config.server.handshake_timeout_ms = 3_000;
    })
    .await;
    let window = crate::common::logs::window();
    // This server's line only: other tests log in the same process.
    let marker =
        "connection limit reached: new connections are closed at once until some close cap=40";
    let logged = || {
        String::from_utf8_lossy(&window.read())
            .matches(marker)
            .count()
    };

    // 100 silent connections: past the cap of 40 (the harness's own channel
    // holds one), the excess is closed at once; the rest within the
    // handshake timeout.
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut closed = 0;
    for stream in &mut silent {
        closed += usize::from(closed_within(stream, Duration::from_secs(10)).await);
    }
    assert_eq!(closed, 100, "every silent connection closed");
    assert_eq!(logged(), 1, "the cap is logged once");
    assert!(
        health_answers(&server).await,
        "health answers once they are gone"
    );

    // HTTP/2 preface and settings, then silence: pings go unanswered.
    let mut half_open = TcpStream::connect(server.addr).await.unwrap();
    half_open
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // One byte, then nothing: past the handshake, closed when idle.
    let mut quiet = TcpStream::connect(server.addr).await.unwrap();
    quiet.write_all(b"P").await.unwrap();
    assert!(closed_within(&mut half_open, Duration::from_secs(10)).await);
    assert!(closed_within(&mut quiet, Duration::from_secs(10)).await);
    assert!(health_answers(&server).await);
    server.stop().await;
}

/// One peer cannot take every place: past its own cap, its connections are
/// closed at once, while the first ones stay (until their handshake
/// timeout, which here is long).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_take_every_place() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.server.max_connections_per_peer = 6;
        config.server.handshake_timeout_ms = 20_000;
    })
    .await;
    // The harness's own channel is one of this peer's six.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut closed = 0;
    for stream in &mut silent {
        closed += usize::from(closed_within(stream, Duration::from_secs(2)).await);
    }
    assert_eq!(closed, 5, "five past the peer's cap of six");
    // A stop waits for open connections; these would only go at their
    // handshake timeout.
    drop(silent);
    server.stop().await;
}
