//! One structured log line per request (method, caller, gRPC code, outcome
//! and latency) and the request metrics. Health checks and reflection log
//! at debug level, so load balancer probes do not drown the rest.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Code;
use tower::{Layer, Service};

use super::access::known_method;
use super::caller::Caller;
use crate::metrics::{LoginResult, Metrics};

/// What a handler adds to its response for the log line, beyond the status
/// code (for example, why a login failed). Never a secret.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: &'static str,
    pub account: Option<String>,
    /// For a login: its protocol, so the metrics count outcomes by it.
    pub protocol: Option<&'static str>,
    /// For a login: the client's address as the proxy saw it, so that
    /// fail2ban or CrowdSec can act on failed ones (`contrib/fail2ban`).
    pub client_ip: Option<std::net::IpAddr>,
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
            method: request.uri().path().to_owned(),
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
                    let code = grpc_code(response.headers());
                    let caller = response
                        .extensions()
                        .get::<Caller>()
                        .map(|c| c.name.clone())
                        .or(entry.caller.take());
                    entry.caller = caller;
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
    method: String,
    metrics: Arc<Metrics>,
    caller: Option<String>,
    started: Instant,
    finished: bool,
}

impl Entry {
    fn log(&mut self, code: Code, outcome: Option<&Outcome>) {
        self.finished = true;
        let latency = self.started.elapsed();
        self.record(code, latency, outcome);
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let caller = self.caller.as_deref().unwrap_or("-");
        let result = outcome.map_or("-", |o| o.result);
        let account = outcome.and_then(|o| o.account.as_deref()).unwrap_or("-");
        let code = format!("{code:?}");
        if is_housekeeping(&self.method) {
            tracing::debug!(method = %self.method, caller, code, latency_ms, "request");
        } else if let Some(Outcome {
            protocol: Some(protocol),
            client_ip: Some(client_ip),
            ..
        }) = outcome
        {
            tracing::info!(method = %self.method, caller, code, result, account, protocol, client_ip = %client_ip, latency_ms, "request");
        } else {
            tracing::info!(method = %self.method, caller, code, result, account, latency_ms, "request");
        }
    }
}

impl Entry {
    fn record(&self, code: Code, latency: std::time::Duration, outcome: Option<&Outcome>) {
        let login = outcome.and_then(|o| {
            o.protocol.map(|protocol| LoginResult {
                adapter: "grpc",
                protocol,
                result: o.result,
            })
        });
        let method = known_method(&self.method).unwrap_or("unknown");
        self.metrics.record_request(method, code, latency, login);
    }

    fn log_transport_error(&mut self, error: &dyn std::fmt::Display) {
        self.finished = true;
        tracing::warn!(method = %self.method, %error, "request failed in transport");
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if !self.finished {
            let latency = self.started.elapsed();
            self.record(Code::Cancelled, latency, None);
            let latency_ms = latency.as_secs_f64() * 1000.0;
            tracing::info!(method = %self.method, code = "Cancelled", latency_ms, "request dropped before it completed (client cancelled or deadline passed)");
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
