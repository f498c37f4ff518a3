//! The server's background tasks, each until the server stops: the
//! database health watch (and what health reports), housekeeping, the
//! flush of what logins gather in memory, and the metrics endpoint.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;

use crate::config::AuditConfig;
use crate::domain::app_passwords::model::NoticeKind;
use crate::domain::app_passwords::AppPasswords;
use crate::domain::audit::AuditTrail;
use crate::domain::login::Logins;
use crate::domain::tokens::AccessTokens;
use crate::grpc;
use crate::metrics::Metrics;
use crate::store::SqlStore;

/// Reports every service (and the server as a whole) as serving or not.
pub(super) async fn set_serving(health: &tonic_health::server::HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for service in grpc::SERVICE_NAMES.into_iter().chain([""]) {
        health.set_service_status(service, status).await;
    }
}

/// Probes the database every `interval`, and at once whenever a request
/// saw a connection fail (`store/probe.rs`, one probe at a time), and
/// reports NOT_SERVING through grpc.health.v1 while it is unreachable or
/// refuses writes, so load balancers send traffic to replicas that can
/// answer; SERVING again once it can. What changed is logged once by the
/// store.
pub(super) async fn watch_database(
    store: SqlStore,
    health: tonic_health::server::HealthReporter,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = true;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = store.probe_wanted() => {}
            _ = stop.changed() => return,
        }
        let now_serving = store.probe().await;
        if now_serving != serving {
            set_serving(&health, now_serving).await;
            serving = now_serving;
        }
    }
}

/// Marks idle app passwords expired, writes the notices of app passwords
/// that expired or are about to (`NoticeKind`), deletes app passwords that
/// ended long ago, audit events past their retention and failure counters
/// that no longer matter, now and then every interval of the domain's
/// clock, until the server stops. A failed run is logged and retried next
/// time. Every replica runs it; each step is safe to run on several at
/// once.
pub(super) async fn housekeeping(
    logins: Logins<SqlStore>,
    app_passwords: AppPasswords<SqlStore>,
    trail: AuditTrail<SqlStore>,
    tokens: AccessTokens<SqlStore>,
    audit: AuditConfig,
    mut stop: watch::Receiver<bool>,
) {
    let retention = Duration::from_secs(audit.retention_days.saturating_mul(86_400));
    let every = Duration::from_secs(audit.prune_interval_secs);
    let clock = Arc::clone(logins.clock());
    loop {
        match app_passwords.expire_idle().await {
            Ok(0) => {}
            Ok(marked) => tracing::info!(marked, "marked idle app passwords expired"),
            Err(error) => tracing::warn!(%error, "marking idle app passwords failed; will retry"),
        }
        for kind in NoticeKind::ALL {
            let notice = kind.event_type().as_str();
            match app_passwords.send_notices(kind).await {
                Ok(0) => {}
                Ok(written) => tracing::info!(written, notice, "wrote notices of app passwords"),
                Err(error) => {
                    tracing::warn!(%error, notice, "writing notices of app passwords failed; will retry")
                }
            }
        }
        match app_passwords.prune_ended().await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(deleted, "pruned app passwords that ended past retention")
            }
            Err(error) => tracing::warn!(%error, "pruning ended app passwords failed; will retry"),
        }
        match trail.prune_audit_events(retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned audit events past retention"),
            Err(error) => tracing::warn!(%error, "pruning the audit trail failed; will retry"),
        }
        match tokens.prune().await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "pruned expired access tokens"),
            Err(error) => tracing::warn!(%error, "pruning access tokens failed; will retry"),
        }
        match logins.prune_throttle_counters().await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "pruned idle failure counters"),
            Err(error) => tracing::warn!(%error, "pruning failure counters failed; will retry"),
        }
        tokio::select! {
            () = clock.sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Writes what logins gathered in memory since the last flush (usage, and
/// the coalesced audit events of repeated wrong guesses) every interval of
/// the domain's clock, and early when the usage buffer fills, until the
/// server stops (the last flush is `serve`'s, once in-flight requests have
/// finished). With usage coalescing off, repeats are still flushed every
/// minute.
pub(super) async fn flush_logins(logins: Logins<SqlStore>, mut stop: watch::Receiver<bool>) {
    let every = logins
        .usage_config()
        .flush_interval()
        .unwrap_or(Duration::from_secs(60));
    let clock = Arc::clone(logins.clock());
    loop {
        tokio::select! {
            () = clock.sleep(every) => {}
            () = logins.usage_buffer_filled() => {}
            _ = stop.changed() => return,
        }
        flush_once(&logins).await;
    }
}

/// One flush of what logins gathered in memory; failures are logged and
/// what was not written is kept for the next.
async fn flush_once(logins: &Logins<SqlStore>) {
    match logins.flush_usage().await {
        Ok(0) => {}
        Ok(written) => tracing::debug!(written, "flushed usage of app passwords"),
        Err(error) => tracing::warn!(%error, "flushing usage failed; will retry"),
    }
    match logins.flush_repeats().await {
        Ok(0) => {}
        Ok(written) => tracing::debug!(written, "audited repeated failed logins"),
        Err(error) => tracing::warn!(%error, "auditing repeated failed logins failed; will retry"),
    }
}

/// Serves `GET /metrics` until the server stops.
pub(super) async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    async fn scrape(State(metrics): State<Arc<Metrics>>) -> axum::response::Response {
        match metrics.render() {
            Ok(text) => (
                [(
                    http::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                text,
            )
                .into_response(),
            Err(_) => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving Prometheus metrics on /metrics");
    }
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    let stopped = async move {
        let _ = stop.changed().await;
    };
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::error!(%error, "the metrics listener failed");
    }
}
