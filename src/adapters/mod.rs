//! Proxy adapters: the login decision over HTTP, for the proxies that do
//! not speak gRPC. Thin handlers like `grpc`'s: each authenticates the
//! proxy by its caller key, bounds and parses what the proxy sends, asks
//! the same `Logins` service Authenticate uses (same throttling, audit and
//! metrics), and answers in the proxy's own protocol.
//!
//! - `GET /auth/nginx-mail`: nginx's mail proxy (`auth_http`), for IMAP,
//!   POP3 and SMTP (`nginx_mail`);
//! - `GET /auth/http-basic`: nginx's `auth_request`, for HTTP protocols
//!   (CalDAV, CardDAV, ActiveSync, EWS) with Basic credentials;
//! - `GET /auth/dovecot`: the same exchange, for Dovecot's Lua passdb
//!   (`http_basic` serves both);
//! - `POST /oauth2/token`, `/oauth2/introspect`, `/oauth2/revoke`: OAuth
//!   2.0's password grant, introspection and revocation, for stock
//!   Dovecot's oauth2 passdb (`oauth2`); the client authenticates with an
//!   authenticator's name and key as `client_id` and `client_secret`, its
//!   own authentication, outside the header below;
//! - `POST /leaks/report`: ReportLeakedSecrets in the shape of GitHub's
//!   secret scanning partner program (`leak_reports`), signed by a
//!   configured key or sent with a reporter's key; it has its own
//!   authentication, outside the authenticators' below.
//!
//! The listener is off unless `proxy_adapters.listen` is set, on its own
//! address, so the gRPC port is not widened; it has the same connection
//! bounds as the gRPC listener. Every request must carry the key of a caller
//! with the authenticator role in `X-Latchkey-Key`; without one nothing is
//! checked (403). The client's address is taken only from the field the
//! proxy itself sets (nginx mail's `Client-IP`; `X-Latchkey-Client-IP`,
//! which the operator's nginx sets with `proxy_set_header`, overwriting
//! anything the end user sent), never from anything else.

mod http_basic;
mod leak_reports;
mod nginx_mail;
mod oauth2;

pub use leak_reports::LeakReportKeys;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::domain::audit::AuditStore;
use crate::domain::callers::model::Recognised;
use crate::domain::callers::{CallerStore, Callers, Role};
use crate::domain::leaks::store::LeakStore;
use crate::domain::leaks::Leaks;
use crate::domain::login::{
    LoginAttempt, LoginOutcome, LoginStore, Logins, ThrottleStore, TypedPassword, UsageStore,
};
use crate::domain::shared::client::ClientName;
use crate::domain::shared::error::Error;
use crate::domain::shared::limits::{CLIENT_IP_MAX_BYTES, PASSWORD_INPUT_MAX_BYTES};
use crate::domain::shared::network::canonical_ip;
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::username::Username;
use crate::domain::tokens::store::TokenStore;
use crate::domain::tokens::AccessTokens;
use crate::metrics::{LoginResult, Metrics};
use crate::transport::{BoundedListener, Proof, ProofDeadline, ServerConfig};

/// The header every adapter request carries its caller key in.
pub const KEY_HEADER: &str = "x-latchkey-key";

/// The adapters' listener and what they answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptersConfig {
    /// Where the adapters listen; off when unset (`--adapters-listen`).
    pub listen: Option<SocketAddr>,
    /// The backend nginx's mail proxy sends each protocol's sessions to, as
    /// `IP:port` (nginx needs an address, not a host name).
    pub mail_upstreams: MailUpstreams,
    /// The public keys `POST /leaks/report` accepts signed reports from,
    /// in the JSON of `https://api.github.com/meta/public_keys/secret_scanning`;
    /// unset: only reports sent with a reporter's key.
    pub leak_report_keys_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailUpstreams {
    pub imap: Option<SocketAddr>,
    pub pop3: Option<SocketAddr>,
    pub smtp: Option<SocketAddr>,
}

impl MailUpstreams {
    fn of(&self, protocol: Protocol) -> Option<SocketAddr> {
        match protocol {
            Protocol::Imap => self.imap,
            Protocol::Pop3 => self.pop3,
            Protocol::Smtp => self.smtp,
            _ => None,
        }
    }
}

/// What the handlers share.
struct Adapters<S> {
    logins: Logins<S>,
    callers: Callers<S>,
    leaks: Leaks<S>,
    tokens: AccessTokens<S>,
    leak_keys: Arc<LeakReportKeys>,
    config: AdaptersConfig,
    metrics: Arc<Metrics>,
}

/// The services the adapters answer with.
pub struct AdapterServices<S> {
    pub logins: Logins<S>,
    pub callers: Callers<S>,
    pub leaks: Leaks<S>,
    pub tokens: AccessTokens<S>,
}

/// The adapters' router, for `serve` and for tests.
pub fn router<S>(
    services: AdapterServices<S>,
    leak_keys: Arc<LeakReportKeys>,
    config: AdaptersConfig,
    metrics: Arc<Metrics>,
) -> Router
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore + LeakStore + TokenStore,
{
    let AdapterServices {
        logins,
        callers,
        leaks,
        tokens,
    } = services;
    let state = Arc::new(Adapters {
        logins,
        callers,
        leaks,
        tokens,
        leak_keys,
        config,
        metrics,
    });
    // Routes that authenticate their caller themselves.
    let own_authentication = Router::new()
        .route("/leaks/report", post(report::<S>))
        .route(
            "/oauth2/token",
            post(oauth::<S>).layer(Extension(oauth2::Endpoint::Token)),
        )
        .route(
            "/oauth2/introspect",
            post(oauth::<S>).layer(Extension(oauth2::Endpoint::Introspect)),
        )
        .route(
            "/oauth2/revoke",
            post(oauth::<S>).layer(Extension(oauth2::Endpoint::Revoke)),
        )
        .with_state(Arc::clone(&state));
    Router::new()
        .route("/auth/nginx-mail", get(nginx_mail::handle::<S>))
        // One exchange behind two doors, told apart in metrics and the log
        // by the adapter each route sets.
        .route(
            "/auth/http-basic",
            get(basic::<S>).layer(Extension(Adapter::HttpBasic)),
        )
        .route(
            "/auth/dovecot",
            get(basic::<S>).layer(Extension(Adapter::Dovecot)),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate::<S>,
        ))
        .with_state(state)
        .merge(own_authentication)
}

/// `/oauth2/*`: the client authenticated by itself (`oauth2`).
async fn oauth<S>(
    State(adapters): State<Arc<Adapters<S>>>,
    Extension(endpoint): Extension<oauth2::Endpoint>,
    request: Request,
) -> Response
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore + TokenStore,
{
    oauth2::handle(&adapters, endpoint, request).await
}

/// `/leaks/report`: authenticated by itself (`leak_reports`).
async fn report<S>(State(adapters): State<Arc<Adapters<S>>>, request: Request) -> Response
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore + LeakStore,
{
    leak_reports::handle(&adapters, request).await
}

/// The proxy a request came from, once its key checked out, with what it
/// reaches.
#[derive(Debug, Clone)]
pub(crate) struct Proxy(pub Recognised);

/// Every adapter request's first step, before anything of it is read: its
/// key must name an authenticator (403 otherwise, nothing counted). A
/// request whose key checks out proves its connection (`transport.rs`:
/// connections without one are capped and must prove themselves within
/// `server.unproven_timeout_ms`).
async fn authenticate<S>(
    State(adapters): State<Arc<Adapters<S>>>,
    mut request: Request,
    next: Next,
) -> Response
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore,
{
    let proof = Proof::of_request(&request);
    // A whole request with a key: the deadline to prove the connection
    // waits for the check (a slow database must not cut a proxy).
    if let Some(proof) = proof
        .as_ref()
        .filter(|_| request.headers().contains_key(KEY_HEADER))
    {
        proof.checking();
    }
    let peer = proof.as_ref().map(Proof::peer_ip);
    match adapters.caller(request.headers(), peer).await {
        Ok(actor) => {
            if let Some(proof) = &proof {
                proof.prove();
            }
            request.extensions_mut().insert(Proxy(actor));
            next.run(request).await
        }
        Err(refusal) => {
            if let Some(proof) = &proof {
                proof.checked();
            }
            refusal_response(refusal).into_response()
        }
    }
}

/// Serves the adapters on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    bounds: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving the proxy adapters");
    }
    let listener = BoundedListener::new(listener, bounds, ProofDeadline::Timeout);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<Proof>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// `/auth/http-basic` and `/auth/dovecot`, as the route's adapter.
async fn basic<S>(
    State(adapters): State<Arc<Adapters<S>>>,
    Extension(adapter): Extension<Adapter>,
    Extension(actor): Extension<Proxy>,
    headers: HeaderMap,
) -> Response
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore,
{
    http_basic::handle(&adapters, adapter, actor, &headers).await
}

/// Which adapter answered, for metrics and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adapter {
    NginxMail,
    HttpBasic,
    Dovecot,
    OAuth2,
}

impl Adapter {
    const fn as_str(self) -> &'static str {
        match self {
            Adapter::NginxMail => "nginx-mail",
            Adapter::HttpBasic => "http-basic",
            Adapter::Dovecot => "dovecot",
            Adapter::OAuth2 => "oauth2",
        }
    }
}

/// What the proxy asked, once parsed and bounded.
struct Ask {
    username: Username,
    password: TypedPassword,
    protocol: Protocol,
    client_ip: IpAddr,
    client: Option<ClientName>,
}

/// What latchkey decided, in the adapters' terms.
enum Answer {
    Success {
        username: Username,
        /// The password that signed in (what an OAuth token is bound to).
        app_password_id: uuid::Uuid,
    },
    Refused,
    Throttled {
        retry_after: Duration,
    },
    /// latchkey could not decide (the database is down, the hashing queue
    /// is full): a temporary failure, never a wrong password.
    Unavailable,
}

/// Why a request was refused before any login was tried: nothing was
/// counted and nothing written.
#[derive(Debug)]
enum Refusal {
    /// No valid key of an authenticator (403).
    Caller(&'static str),
    /// A field missing or malformed (400).
    BadRequest(String),
    /// latchkey cannot check the key now (503).
    Unavailable,
}

impl<S> Adapters<S>
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore,
{
    /// The caller named by the request's key, if it may verify logins.
    async fn caller(
        &self,
        headers: &HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Recognised, Refusal> {
        let key = headers
            .get(KEY_HEADER)
            .and_then(|value| value.to_str().ok())
            .ok_or(Refusal::Caller(
                "an authenticator's key is required in X-Latchkey-Key",
            ))?;
        self.authenticator(key, peer).await
    }

    /// The caller whose key `key` is, if it is an authenticator: the one
    /// check of every door whose callers are proxies (this header, and the
    /// OAuth door's client secret).
    async fn authenticator(
        &self,
        key: &str,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Recognised, Refusal> {
        match self.callers.caller_by_key(key.trim(), peer).await {
            Ok(Some(proxy)) if proxy.caller.role == Role::Authenticator => Ok(proxy),
            Ok(Some(_)) => Err(Refusal::Caller(
                "only a caller with the authenticator role may use the adapters",
            )),
            Ok(None) => Err(Refusal::Caller(
                "the X-Latchkey-Key is not a valid caller key",
            )),
            Err(_) => Err(Refusal::Unavailable),
        }
    }

    /// Decides the login and records it in the metrics and the log.
    /// `routable`: whether a success has somewhere to go; one that has not
    /// is answered and counted as `unavailable`, what the user gets, never
    /// as a success (nginx mail without a `mail_upstreams` entry for the
    /// protocol). Failures stay what they are, and are throttled as such.
    async fn decide(&self, adapter: Adapter, proxy: Proxy, ask: Ask, routable: bool) -> Answer {
        let Proxy(Recognised { caller, reach }) = proxy;
        let started = Instant::now();
        let protocol = ask.protocol;
        let client_ip = ask.client_ip;
        let outcome = self
            .logins
            .authenticate(LoginAttempt {
                username: ask.username,
                password: ask.password,
                protocol,
                client_ip,
                actor: caller.actor(),
                reach,
                wait: None,
                client: ask.client,
            })
            .await;
        let (answer, result, account) = match outcome {
            Ok(LoginOutcome::Success {
                username,
                app_password_id,
            }) if routable => {
                let account = username.to_string();
                (
                    Answer::Success {
                        username,
                        app_password_id,
                    },
                    "success",
                    Some(account),
                )
            }
            Ok(LoginOutcome::Success { username, .. }) => {
                tracing::error!(
                    adapter = adapter.as_str(),
                    protocol = protocol.as_str(),
                    "a login succeeded with nowhere to go (no proxy_adapters.mail_upstreams \
                     entry for its protocol): answered with a temporary failure"
                );
                (
                    Answer::Unavailable,
                    "unavailable",
                    Some(username.to_string()),
                )
            }
            Ok(LoginOutcome::Failure(reason)) => (Answer::Refused, reason.as_str(), None),
            Ok(LoginOutcome::Throttled { retry_after }) => {
                (Answer::Throttled { retry_after }, "throttled", None)
            }
            Err(error) => {
                if matches!(error, Error::Internal(_)) {
                    tracing::error!(error = ?error.to_string(), adapter = adapter.as_str(), "login failed");
                }
                (Answer::Unavailable, "unavailable", None)
            }
        };
        let latency = started.elapsed();
        self.metrics.record_login(LoginResult {
            adapter: adapter.as_str(),
            protocol: protocol.as_str(),
            result,
        });
        // The same fields, in the same order, as Authenticate's request
        // line, so one fail2ban filter reads both (contrib/fail2ban).
        tracing::info!(
            adapter = adapter.as_str(),
            caller = caller.name.as_str(),
            result,
            account = account.as_deref().unwrap_or("-"),
            protocol = protocol.as_str(),
            client_ip = %client_ip,
            latency_ms = latency.as_secs_f64() * 1000.0,
            "login"
        );
        answer
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refusal> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| Refusal::BadRequest(format!("{name} is not printable ASCII"))),
    }
}

/// A header that must be present.
fn required<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Refusal> {
    header(headers, name)?.ok_or_else(|| Refusal::BadRequest(format!("{name} is required")))
}

/// The client address the proxy set.
fn client_ip(raw: &str) -> Result<IpAddr, Refusal> {
    if raw.len() > CLIENT_IP_MAX_BYTES {
        return Err(Refusal::BadRequest("the client address is too long".into()));
    }
    // In canonical form, as the gRPC edge logs it: nginx listening on a
    // dual-stack socket reports `::ffff:a.b.c.d`, which fail2ban would ban
    // in ip6tables, where it does nothing.
    raw.trim()
        .parse()
        .map(canonical_ip)
        .map_err(|_| Refusal::BadRequest("the client address is not an IP address".into()))
}

/// The username and password as a proxy passed them on: bounded, and free
/// of control characters (which no real one has, and which would forge
/// lines in logs).
fn credentials(username: &str, password: &str) -> Result<(Username, TypedPassword), Refusal> {
    let username = Username::parse(username)
        .map_err(|why| Refusal::BadRequest(format!("the username {why}")))?;
    if password.is_empty() || password.len() > PASSWORD_INPUT_MAX_BYTES {
        return Err(Refusal::BadRequest(format!(
            "the password must be 1 to {PASSWORD_INPUT_MAX_BYTES} bytes"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(Refusal::BadRequest(
            "the password must not contain control characters".into(),
        ));
    }
    Ok((username, TypedPassword::new(password)))
}

/// A protocol by the short name logs and metrics use (`imap`, `caldav`…).
fn protocol(raw: &str) -> Result<Protocol, Refusal> {
    let wanted = raw.trim().to_ascii_lowercase();
    Protocol::ALL
        .into_iter()
        .find(|p| p.as_str() == wanted)
        .ok_or_else(|| Refusal::BadRequest(format!("unknown protocol {:?}", raw.trim())))
}

/// A refusal as a plain HTTP answer.
fn refusal_response(refusal: Refusal) -> (StatusCode, String) {
    match refusal {
        Refusal::Caller(why) => (StatusCode::FORBIDDEN, why.to_owned()),
        Refusal::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
        Refusal::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "latchkey cannot check the caller key now".to_owned(),
        ),
    }
}
