//! Prometheus metrics, served on their own HTTP listener (`/metrics`), apart
//! from the gRPC port: scraping needs no caller key, and the gRPC port's
//! exposure is not widened.
//!
//! Label values come only from fixed sets (known method names, gRPC codes,
//! protocols, failure reasons), so nobody can grow the series by sending
//! odd requests; nothing about an account or a secret is ever a label.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tonic::Code;

use crate::domain::audit::WatchStats;
use crate::domain::login::Stats;
use crate::domain::webhooks::{TargetCounts, WebhookStats};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LoginLabels {
    adapter: &'static str,
    protocol: &'static str,
    result: &'static str,
}

/// A login's answer, as Authenticate's handler or a proxy adapter reports
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginResult {
    /// `grpc`, or the proxy adapter: `nginx-mail`, `http-basic`, `dovecot`,
    /// `oauth2`.
    pub adapter: &'static str,
    pub protocol: &'static str,
    /// `success`, a failure reason, or `throttled`.
    pub result: &'static str,
}

type LatencyFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    logins: Family<LoginLabels, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// 100 µs to about 3.3 s: a warm login is well under a millisecond, a cold
/// one some tens of milliseconds, a queued one more.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

impl Metrics {
    /// `stats` is read at each scrape, for the gauges and counters the
    /// domain keeps itself.
    pub fn new(stats: impl Fn() -> (Stats, WatchStats) + Send + Sync + 'static) -> Self {
        let mut registry = Registry::with_prefix("latchkey");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC requests answered, by method and status code",
            requests.clone(),
        );
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "grpc_request_duration",
            "Time to answer a gRPC request, by method",
            Unit::Seconds,
            latency.clone(),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "authentications",
            "Login answers by adapter (grpc, nginx-mail, http-basic, dovecot, oauth2), protocol and result (success, a failure reason, throttled, or unavailable)",
            logins.clone(),
        );
        registry.register_collector(Box::new(DomainCollector {
            stats: Arc::new(stats),
        }));
        Self {
            registry,
            requests,
            latency,
            logins,
        }
    }

    /// Adds the webhook targets' counters, labelled by target name (names
    /// come from the configuration, checked at load: a fixed set).
    pub fn with_webhooks(mut self, webhooks: WebhookStats) -> Self {
        if !webhooks.counts().is_empty() {
            self.registry
                .register_collector(Box::new(WebhookCollector { webhooks }));
        }
        self
    }

    /// Counts one answered request. `method` is a known method's full path
    /// or `unknown`.
    pub fn record_request(
        &self,
        method: &'static str,
        code: Code,
        latency: Duration,
        login: Option<LoginResult>,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                code: code_name(code),
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabels { method })
            .observe(latency.as_secs_f64());
        if let Some(login) = login {
            self.record_login(login);
        }
    }

    /// Counts one login's answer.
    pub fn record_login(&self, login: LoginResult) {
        self.logins
            .get_or_create(&LoginLabels {
                adapter: login.adapter,
                protocol: login.protocol,
                result: login.result,
            })
            .inc();
    }

    /// The OpenMetrics text exposition of everything.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Reads the domain's own counters at scrape time, so the hot path keeps
/// nothing twice.
struct DomainCollector {
    stats: Arc<dyn Fn() -> (Stats, WatchStats) + Send + Sync>,
}

impl fmt::Debug for DomainCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainCollector").finish_non_exhaustive()
    }
}

impl Collector for DomainCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let (stats, watch) = (self.stats)();
        let counters = domain_counters(&stats, &watch);
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = domain_gauges(&stats, &watch);
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

/// Reads the webhook deliverers' counters at scrape time.
#[derive(Debug)]
struct WebhookCollector {
    webhooks: WebhookStats,
}

/// The webhook metrics: name, help, whether a counter (else a gauge), and
/// the value of one target's counts.
type WebhookMetric = (&'static str, &'static str, bool, fn(&TargetCounts) -> u64);

const WEBHOOK_METRICS: [WebhookMetric; 4] = [
    (
        "webhook_deliveries",
        "Change-feed events a webhook target answered with a 2xx, by target",
        true,
        |counts| counts.delivered,
    ),
    (
        "webhook_failed_attempts",
        "Webhook attempts that failed (a non-2xx answer, a timeout, no connection), by target",
        true,
        |counts| counts.failed,
    ),
    (
        "webhook_skipped_by_retention",
        "Change-feed places pruned (audit.retention_days) before a webhook target got them, by target",
        true,
        |counts| counts.skipped,
    ),
    (
        "webhook_lag_events",
        "Change-feed places between a webhook target's cursor and the feed's head, on the replica delivering to it (0 on the others)",
        false,
        |counts| counts.lag,
    ),
];

impl Collector for WebhookCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let counts = self.webhooks.counts();
        for (name, help, counter, value) in WEBHOOK_METRICS {
            let kind = if counter {
                ConstCounter::new(0u64).metric_type()
            } else {
                ConstGauge::new(0i64).metric_type()
            };
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for target in &counts {
                let labels = TargetLabels {
                    target: target.target.clone(),
                };
                let encoder = family.encode_family(&labels)?;
                if counter {
                    ConstCounter::new(value(target)).encode(encoder)?;
                } else {
                    ConstGauge::new(i64::try_from(value(target)).unwrap_or(i64::MAX))
                        .encode(encoder)?;
                }
            }
        }
        Ok(())
    }
}

/// The domain's counters: name, help, value.
fn domain_counters(stats: &Stats, watch: &WatchStats) -> [(&'static str, &'static str, u64); 8] {
    [
        (
            "argon2_verifications",
            "argon2 verifications run, dummy ones included",
            stats.argon2_verifications,
        ),
        (
            "verified_cache_hits",
            "Logins whose secret matched the verified-secret cache (argon2 skipped)",
            stats.cache_hits,
        ),
        (
            "verified_cache_misses",
            "Logins that would succeed but were not in the verified-secret cache",
            stats.cache_misses,
        ),
        (
            "warm_verifier_hits",
            "Logins not in this process's cache whose stored warm verifier matched (argon2 skipped)",
            stats.warm_hits,
        ),
        (
            "hash_pool_skipped",
            "argon2 jobs not run because their caller had gone before they started",
            stats.hash_pool_skipped,
        ),
        (
            "hash_pool_refused",
            "argon2 jobs refused at once because they would not start within the caller's deadline",
            stats.hash_pool_refused,
        ),
        (
            "watch_events_read",
            "Change-feed events read from the database for WatchEvents streams",
            watch.events_read,
        ),
        (
            "watch_events_sent",
            "Change-feed events handed to WatchEvents streams' transports",
            watch.events_sent,
        ),
    ]
}

/// The domain's gauges: name, help, value. The throttle memory's parts
/// each have a gauge and, where it is a figure of its own, one for its
/// bound (`_capacity`): counts only, never a key or an address.
fn domain_gauges(stats: &Stats, watch: &WatchStats) -> [(&'static str, &'static str, usize); 12] {
    let memory = &stats.memory;
    [
        (
            "hash_pool_workers",
            "Threads that run argon2",
            stats.hash_pool_workers,
        ),
        (
            "hash_pool_queue_depth",
            "argon2 jobs waiting for a thread",
            stats.hash_pool_queued,
        ),
        (
            "hash_pool_busy_workers",
            "Threads running argon2 now",
            stats.hash_pool_busy,
        ),
        (
            "usage_pending",
            "App passwords whose usage waits for the next flush",
            stats.usage_pending,
        ),
        (
            "remembered_guesses",
            "Wrong guesses this replica remembers, to decide their repeats without argon2",
            memory.guesses,
        ),
        (
            "remembered_guesses_capacity",
            "Wrong guesses this replica remembers at most (throttle.remembered_guesses)",
            memory.guesses_capacity,
        ),
        (
            "remembered_blocks",
            "Throttle blocks this replica remembers, to refuse without a read",
            memory.blocks,
        ),
        (
            "remembered_blocks_capacity",
            "Throttle blocks this replica remembers at most",
            memory.blocks_capacity,
        ),
        (
            "throttled_kinds_pending",
            "Kinds of throttled attempt waiting for the audit flush (at most 1000)",
            memory.throttled_kinds,
        ),
        (
            "coalesced_events_pending",
            "Coalesced repeat events of forgotten guesses waiting for the audit flush",
            memory.orphaned_events,
        ),
        (
            "guesses_in_flight",
            "Throttle scopes with a guess being verified now",
            memory.in_flight,
        ),
        (
            "watchers",
            "WatchEvents streams open on this replica",
            usize::try_from(watch.watchers).unwrap_or(usize::MAX),
        ),
    ]
}

/// The canonical name of a gRPC code, as grpc-status documents it.
pub const fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
