//! Request builders and assertions shared by the tests.

use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use latchkey::grpc::pb::{
    issue_app_password_request::Expiration, AppPassword, AuditEvent, AuthenticateRequest,
    AuthenticateResponse, ExplainLoginRequest, FailureReason, GetAppPasswordRequest,
    IssueAppPasswordRequest, IssueAppPasswordResponse, ListAuditEventsRequest, LoginExplanation,
    Protocol, RevokeAppPasswordRequest,
};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::harness::TestServer;

/// The URL of an SQLite database file in `dir`, created on first use.
pub fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("latchkey.db").display())
}

/// How many argon2 verifications the server's logins have run.
pub fn argon2_runs(server: &TestServer) -> u64 {
    server.services.logins.stats().argon2_verifications
}

/// The one value `sql` selects from the server's database (a count, a
/// column of the one row), read in a connection of its own.
pub async fn query_value<T: sea_orm::TryGetable>(server: &TestServer, sql: &str) -> T {
    use sea_orm::{ConnectionTrait, Statement};
    let db = server.database.connect().await;
    let value = db
        .query_one(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no row: {sql}"))
        .try_get_by_index::<T>(0)
        .unwrap();
    db.close().await.unwrap();
    value
}

/// GetAppPassword by name, as the issuer.
pub async fn get_password(server: &TestServer, name: &str) -> AppPassword {
    server
        .app_passwords()
        .get_app_password(GetAppPasswordRequest { name: name.into() })
        .await
        .expect("get")
        .into_inner()
}

pub fn issue_request(
    username: &str,
    display_name: &str,
    protocols: &[Protocol],
) -> IssueAppPasswordRequest {
    IssueAppPasswordRequest {
        parent: format!("accounts/{username}"),
        display_name: display_name.to_owned(),
        protocols: protocols.iter().map(|&p| p as i32).collect(),
        expiration: None,
        allowed_networks: Vec::new(),
        idle_timeout: None,
    }
}

pub fn with_ttl(mut request: IssueAppPasswordRequest, seconds: i64) -> IssueAppPasswordRequest {
    request.expiration = Some(Expiration::Ttl(prost_types::Duration { seconds, nanos: 0 }));
    request
}

pub async fn issue(
    server: &TestServer,
    request: IssueAppPasswordRequest,
) -> IssueAppPasswordResponse {
    server
        .app_passwords()
        .issue_app_password(request)
        .await
        .expect("issue should succeed")
        .into_inner()
}

/// Issues an IMAP+SMTP password for `username` and returns (name, secret).
pub async fn issue_simple(server: &TestServer, username: &str) -> (String, String) {
    let issued = issue(
        server,
        issue_request(username, "Thunderbird", &[Protocol::Imap, Protocol::Smtp]),
    )
    .await;
    (issued.app_password.unwrap().name, issued.secret)
}

/// Revokes an app password, giving no reason; returns it, revoked.
pub async fn revoke(server: &TestServer, name: String) -> AppPassword {
    server
        .app_passwords()
        .revoke_app_password(RevokeAppPasswordRequest {
            name,
            reason: String::new(),
        })
        .await
        .expect("revoke should succeed")
        .into_inner()
}

/// One page of ListAuditEvents (as an operator), newest first.
pub async fn audit_events(server: &TestServer, request: ListAuditEventsRequest) -> Vec<AuditEvent> {
    server
        .audit()
        .list_audit_events(request)
        .await
        .expect("list audit events")
        .into_inner()
        .audit_events
}

pub fn login_request(
    username: &str,
    password: &str,
    protocol: Protocol,
    client_ip: &str,
) -> AuthenticateRequest {
    AuthenticateRequest {
        username: username.to_owned(),
        password: password.to_owned(),
        protocol: protocol as i32,
        client_ip: client_ip.to_owned(),
        ..Default::default()
    }
}

pub async fn login(server: &TestServer, username: &str, password: &str) -> AuthenticateResponse {
    login_with(server, username, password, Protocol::Imap, "192.0.2.10").await
}

pub async fn login_with(
    server: &TestServer,
    username: &str,
    password: &str,
    protocol: Protocol,
    client_ip: &str,
) -> AuthenticateResponse {
    server
        .auth()
        .authenticate(login_request(username, password, protocol, client_ip))
        .await
        .expect("authenticate should answer, not fail")
        .into_inner()
}

pub fn assert_refused(response: &AuthenticateResponse, reason: FailureReason) {
    assert!(
        !response.authenticated,
        "login unexpectedly succeeded: {response:?}"
    );
    assert_eq!(response.failure_reason(), reason, "{response:?}");
    assert!(response.username.is_empty() && response.app_password.is_empty());
}

/// The fields named in an INVALID_ARGUMENT status's BadRequest details.
pub fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries BadRequest");
    details
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// A secret in every form a leak could take: as shown, and canonical.
pub fn secret_forms(secret: &str) -> [String; 2] {
    [secret.to_owned(), secret.replace(' ', "")]
}

/// The random part of a caller key (`latchkey_{id}_{random}`; the id has no
/// `_`, the random part may).
pub fn key_secret_half(key: &str) -> &str {
    let rest = key
        .strip_prefix(latchkey::domain::callers::key::KEY_PREFIX)
        .unwrap();
    rest.split_once('_').unwrap().1
}

/// A well-formed app password that belongs to nobody, distinct for each `n`.
pub fn wrong_secret(n: u32) -> String {
    format!("{n:0>28}")
        .bytes()
        .map(|digit| char::from(b'a' + (digit - b'0')))
        .collect()
}

/// The failures stored for a throttle scope, read straight from the database.
pub async fn stored_failures(server: &TestServer, key: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = server.database.connect().await;
    let backend = db.get_database_backend();
    let row = db
        .query_one(Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DatabaseBackend::Postgres => {
                    "SELECT failures FROM auth_throttle WHERE scope_key = $1"
                }
                _ => "SELECT failures FROM auth_throttle WHERE scope_key = ?",
            },
            [key.into()],
        ))
        .await
        .unwrap();
    let failures = row.map_or(0, |row| row.try_get_by_index::<i64>(0).unwrap());
    db.close().await.unwrap();
    failures
}

/// Waits (on real time, polling) until `check` holds; fails, saying
/// `what`, if it does not within `within`.
pub async fn until(what: &str, within: std::time::Duration, mut check: impl FnMut() -> bool) {
    eventually(what, within, async || check().then_some(())).await
}

/// Polls `check` on real time, every 20 ms, until it gives a value, and
/// returns it; fails, saying `what`, if it gives none within `within`. A
/// check that waits on a background task of the test's clock nudges the
/// clock itself before it answers `None`.
pub async fn eventually<T>(
    what: &str,
    within: std::time::Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A gRPC request to `path` on `addr`, with `key` as its bearer if given,
/// for a raw HTTP/2 client.
pub fn grpc_request(
    addr: std::net::SocketAddr,
    path: &str,
    key: Option<&str>,
) -> http::Request<()> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    request.body(()).unwrap()
}

/// The grpc-status of an answer: in its headers (trailers-only), or in the
/// trailers after its body. `None` if it has none or its stream broke.
pub async fn grpc_status(response: http::Response<h2::RecvStream>) -> Option<i32> {
    let parse = |map: &http::HeaderMap| {
        map.get("grpc-status")
            .and_then(|value| value.to_str().ok()?.parse().ok())
    };
    if let Some(code) = parse(response.headers()) {
        return Some(code);
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    parse(&body.trailers().await.ok()??)
}

/// One keyless unary call to `path` with an empty message on `client`;
/// the grpc-status it was answered with within 10 s.
pub async fn raw_unary(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
    path: &str,
) -> Option<i32> {
    let ready = client.clone().ready().await.ok()?;
    *client = ready;
    let (response, mut body) = client
        .send_request(grpc_request(addr, path, None), false)
        .ok()?;
    // The server may refuse the call from its headers alone and end the
    // stream before this empty message is sent: the answer is what counts.
    let _ = body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true);
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response)
        .await
        .ok()?
        .ok()?;
    grpc_status(response).await
}

/// A raw HTTP/2 connection to `addr`, its driver spawned, ready to send.
pub async fn raw_h2(addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client.ready().await.unwrap()
}

/// Rows of failed logins in the audit trail whose detail is `LIKE
/// detail_like`, and the sum of their item counts.
pub async fn failed_login_rows(server: &TestServer, detail_like: &str) -> (i64, i64) {
    use sea_orm::{ConnectionTrait, Statement, Value};
    let db = server.database.connect().await;
    let backend = db.get_database_backend();
    let rows = db
        .query_all(Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DatabaseBackend::Postgres => {
                    "SELECT item_count FROM audit_event \
                     WHERE event_type = 'authentication_failed' AND detail LIKE $1"
                }
                _ => {
                    "SELECT item_count FROM audit_event \
                     WHERE event_type = 'authentication_failed' AND detail LIKE ?"
                }
            },
            [Value::from(detail_like)],
        ))
        .await
        .unwrap();
    let counted = rows
        .iter()
        .map(|row| row.try_get_by_index::<Option<i64>>(0).unwrap().unwrap_or(0))
        .sum();
    db.close().await.unwrap();
    (i64::try_from(rows.len()).unwrap(), counted)
}

/// The reason of a status's ErrorInfo ("" without one).
pub fn reason_of(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// ExplainLogin through `client`.
pub async fn explain(
    client: &mut LegacyAuthServiceClient<super::harness::Authed>,
    username: &str,
    client_ip: &str,
    protocol: Protocol,
) -> Result<LoginExplanation, tonic::Status> {
    client
        .explain_login(ExplainLoginRequest {
            username: username.into(),
            client_ip: client_ip.into(),
            protocol: protocol as i32,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Opens WatchEvents with `key`: the stream after its first checkpoint,
/// and that checkpoint's token.
pub async fn watch_from_checkpoint(
    server: &TestServer,
    key: &str,
    request: latchkey::grpc::pb::WatchEventsRequest,
) -> Result<
    (
        tonic::Streaming<latchkey::grpc::pb::WatchEventsResponse>,
        String,
    ),
    Status,
> {
    let mut stream = latchkey::grpc::pb::audit_service_client::AuditServiceClient::new(
        server.as_caller(Some(key)),
    )
    .watch_events(request)
    .await?
    .into_inner();
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
        .await
        .unwrap()?
        .unwrap();
    assert!(first.audit_event.is_none());
    Ok((stream, first.resume_token))
}

/// An HTTP answer: its status, its headers (names lowercase) and its body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as JSON (fails the test if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One HTTP/1.1 POST of `body` with `headers`, on a connection of its own.
pub async fn http_post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpAnswer {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    HttpAnswer::read(&response)
}

impl HttpAnswer {
    /// An HTTP/1 response as read off its connection.
    pub fn read(response: &[u8]) -> Self {
        let text = String::from_utf8_lossy(response);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Self {
            status,
            headers,
            body: body.to_owned(),
        }
    }
}
