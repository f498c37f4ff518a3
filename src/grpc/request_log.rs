//! One structured log line per request (method, caller, gRPC code, outcome
//! and latency) and the request metrics. Health checks and reflection log
//! at debug level, so load balancer probes do not drown the rest.
//!
//! The line is written before anyone is authenticated, so nothing in it may
//! let a client shape it: `method` is one of the API's own names or
//! `"unknown"` (the path a client sent then follows, quoted and cut to
//! [`PATH_LOGGED_MAX_BYTES`]), and every text field is written quoted with
//! its quotes, backslashes and control characters escaped (tracing's
//! `Debug` of a `&str`). Only the client address and the latency go
//! unquoted: one is a parsed `IpAddr`, the other a number. fail2ban's
//! filter (`contrib/fail2ban`) depends on this and on the fields' order.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Code;
use tower::{Layer, Service};

use super::access::known_method;
use super::caller::Caller;
use crate::domain::login::model::LoginOutcome;
use crate::domain::shared::protocol::Protocol;
use crate::metrics::{LoginResult, Metrics};

/// What a handler adds to its response for the log line, beyond the status
/// code (for example, why a login failed). Never a secret. Built once per
/// response; the line and the metrics both read it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: &'static str,
    pub account: Option<String>,
    /// For a login: what the metrics count it by and fail2ban acts on.
    pub login: Option<Login>,
}

/// A login as the log line and the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct Login {
    /// Its protocol, so the metrics count outcomes by it.
    pub protocol: &'static str,
    /// The client's address as the proxy saw it, so that fail2ban or
    /// CrowdSec can act on failed ones (`contrib/fail2ban`).
    pub client_ip: IpAddr,
}

impl Outcome {
    /// A login's outcome: `success`, the failure's reason or `throttled`.
    /// Only a known account's name is logged: an unknown "username" is
    /// sometimes a password typed in the wrong box.
    pub fn login(outcome: &LoginOutcome, protocol: Protocol, client_ip: IpAddr) -> Self {
        let (result, account) = match outcome {
            LoginOutcome::Success { username, .. } => ("success", Some(username.to_string())),
            LoginOutcome::Failure(reason) => (reason.as_str(), None),
            LoginOutcome::Throttled { .. } => ("throttled", None),
        };
        Self {
            result,
            account,
            login: Some(Login {
                protocol: protocol.as_str(),
                client_ip,
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestLogLayer {
    metrics: Arc<Metrics>,
}

impl RequestLogLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestLog<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RequestLog<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let mut entry = Entry {
            method: Method::of(request.uri().path()),
            metrics: Arc::clone(&self.metrics),
            caller: request.extensions().get::<Caller>().map(|c| c.name.clone()),
            started: Instant::now(),
            finished: false,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            match &result {
                Ok(response) => {
                    if let Some(caller) = response.extensions().get::<Caller>() {
                        entry.caller = Some(caller.name.clone());
                    }
                    let code = grpc_code(response.headers());
                    entry.log(code, response.extensions().get::<Outcome>());
                }
                Err(error) => entry.log_transport_error(error),
            }
            result
        })
    }
}

/// Logs the request once: when it completes, or when the client goes away
/// and the request's future is dropped.
struct Entry {
    method: Method,
    metrics: Arc<Metrics>,
    caller: Option<String>,
    started: Instant,
    finished: bool,
}

impl Entry {
    fn log(&mut self, code: Code, outcome: Option<&Outcome>) {
        self.finished = true;
        let latency = self.started.elapsed();
        let result = outcome.map_or("-", |o| o.result);
        let login = outcome.and_then(|o| o.login);
        self.record(
            code,
            latency,
            login.map(|login| LoginResult {
                adapter: "grpc",
                protocol: login.protocol,
                result,
            }),
        );
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let caller = self.caller.as_deref().unwrap_or("-");
        let account = outcome.and_then(|o| o.account.as_deref()).unwrap_or("-");
        let code = format!("{code:?}");
        let Method { name, path } = &self.method;
        let name = *name;
        match (path, login) {
            (Some(path), _) => {
                tracing::info!(
                    method = name,
                    path = path.as_str(),
                    caller,
                    code,
                    latency_ms,
                    "request"
                );
            }
            (None, _) if is_housekeeping(name) => {
                tracing::debug!(method = name, caller, code, latency_ms, "request");
            }
            (
                None,
                Some(Login {
                    protocol,
                    client_ip,
                }),
            ) => {
                tracing::info!(method = name, caller, code, result, account, protocol, client_ip = %client_ip, latency_ms, "request");
            }
            (None, None) => {
                tracing::info!(
                    method = name,
                    caller,
                    code,
                    result,
                    account,
                    latency_ms,
                    "request"
                );
            }
        }
    }

    fn record(&self, code: Code, latency: std::time::Duration, login: Option<LoginResult>) {
        self.metrics
            .record_request(self.method.name, code, latency, login);
    }

    fn log_transport_error(&mut self, error: &dyn std::fmt::Display) {
        self.finished = true;
        let error = error.to_string();
        tracing::warn!(
            method = self.method.name,
            path = self.method.path.as_deref(),
            error = error.as_str(),
            "request failed in transport"
        );
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if !self.finished {
            let latency = self.started.elapsed();
            self.record(Code::Cancelled, latency, None);
            let latency_ms = latency.as_secs_f64() * 1000.0;
            tracing::info!(
                method = self.method.name,
                path = self.method.path.as_deref(),
                code = "Cancelled",
                latency_ms,
                "request dropped before it completed (client cancelled or deadline passed)"
            );
        }
    }
}

/// The longest part of an unknown path that is logged.
pub const PATH_LOGGED_MAX_BYTES: usize = 128;

/// A request's method as logged: one of the API's names, or `"unknown"`
/// with the path the client sent (cut to [`PATH_LOGGED_MAX_BYTES`]).
struct Method {
    name: &'static str,
    path: Option<String>,
}

impl Method {
    fn of(path: &str) -> Self {
        match known_method(path) {
            Some(name) => Self { name, path: None },
            None => {
                let mut end = path.len().min(PATH_LOGGED_MAX_BYTES);
                while !path.is_char_boundary(end) {
                    end -= 1;
                }
                Self {
                    name: "unknown",
                    path: Some(path[..end].to_owned()),
                }
            }
        }
    }
}

fn is_housekeeping(method: &str) -> bool {
    method.starts_with("/grpc.health.") || method.starts_with("/grpc.reflection.")
}

/// A handler's error travels as a trailers-only response, so its status is
/// in the headers; a successful unary response carries OK in trailers,
/// after this layer has seen the headers.
fn grpc_code(headers: &http::HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}
