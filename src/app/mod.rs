//! Wiring: builds the store, the domain and the gRPC services from a
//! configuration, and serves them on the listeners it is given
//! ([`Listeners`], bound by whoever starts it: tests and callers bind the
//! port, never race for one).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;

use crate::adapters::{self, AdaptersConfig};
use crate::config::{AuditConfig, Config, DatabaseUrl, TlsConfig};
use crate::domain::accounts::Accounts;
use crate::domain::app_passwords::AppPasswords;
use crate::domain::audit::event::Actor;
use crate::domain::audit::{AuditTrail, EventFeed};
use crate::domain::callers::{CallerKey, Callers};
use crate::domain::leaks::Leaks;
use crate::domain::login::{LoginConfig, Logins};
use crate::domain::secrets::Hasher;
use crate::domain::shared::time::Clock;
use crate::domain::tenants::Tenants;
use crate::domain::tokens::AccessTokens;
use crate::domain::webhooks::{Deliverer, Webhooks};
use crate::domain::Services;
use crate::grpc::access::ReflectionAccess;
use crate::grpc::auth::CallerAuthLayer;
use crate::grpc::request_log::RequestLogLayer;
use crate::grpc::{self, MessageLimits};
use crate::metrics::Metrics;
use crate::store::{self, SqlStore};
use crate::transport::{BoundedListener, ProofDeadline, ServerConfig};

mod background;
mod webhook_client;
use background::{flush_logins, housekeeping, serve_metrics, set_serving, watch_database};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The name of the operator `callers.bootstrap_operator_key_file` creates.
pub const BOOTSTRAP_OPERATOR: &str = "bootstrap";

pub struct App {
    services: Services<SqlStore>,
    metrics: Arc<Metrics>,
    adapters: AdaptersConfig,
    /// The keys signed leak reports are checked with, read at build.
    leak_keys: Arc<adapters::LeakReportKeys>,
    store: SqlStore,
    reflection: ReflectionAccess,
    tls: Option<ServerTlsConfig>,
    server: ServerConfig,
    audit: AuditConfig,
    health_interval: Duration,
    /// One per `[[webhooks]]` target, started by `serve`.
    deliverers: Vec<Deliverer<SqlStore, webhook_client::HttpPost>>,
}

/// The listeners `serve` serves on, bound together before it starts:
/// gRPC's, and those of metrics and the proxy adapters when they are on.
/// Bound apart from `App::build`, so the CLI's one-shot commands never take
/// a port, and by whoever starts the server, who learns the ports a port of
/// 0 picked before anything is served.
pub struct Listeners {
    pub grpc: TcpListener,
    pub metrics: Option<TcpListener>,
    pub adapters: Option<TcpListener>,
}

impl Listeners {
    /// Binds `listen`, and `metrics.listen` and `proxy_adapters.listen`
    /// where they are set.
    pub async fn bind(config: &Config) -> Result<Self, BoxError> {
        Ok(Self {
            grpc: bind(config.listen, "").await?,
            metrics: match config.metrics.listen {
                Some(address) => Some(bind(address, " for metrics").await?),
                None => None,
            },
            adapters: match config.proxy_adapters.listen {
                Some(address) => Some(bind(address, " for the proxy adapters").await?),
                None => None,
            },
        })
    }

    /// Only gRPC, on a listener already bound.
    pub fn grpc(listener: TcpListener) -> Self {
        Self {
            grpc: listener,
            metrics: None,
            adapters: None,
        }
    }

    /// The bound addresses: gRPC's, metrics', the proxy adapters'.
    pub fn addresses(&self) -> std::io::Result<BoundAddresses> {
        let local = |listener: &Option<TcpListener>| {
            listener.as_ref().map(TcpListener::local_addr).transpose()
        };
        Ok(BoundAddresses {
            grpc: self.grpc.local_addr()?,
            metrics: local(&self.metrics)?,
            adapters: local(&self.adapters)?,
        })
    }
}

/// Where [`Listeners`] are bound.
#[derive(Debug, Clone, Copy)]
pub struct BoundAddresses {
    pub grpc: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub adapters: Option<SocketAddr>,
}

async fn bind(address: SocketAddr, what: &str) -> Result<TcpListener, BoxError> {
    TcpListener::bind(address)
        .await
        .map_err(|error| format!("cannot listen{what} on {address}: {error}").into())
}

/// The background tasks `serve` runs beside the gRPC server, to be awaited
/// once it stops.
struct Background {
    tasks: Vec<JoinHandle<()>>,
    /// Ends with the database health watch; awaited before NOT_SERVING is
    /// reported at stop, so that the watch cannot report SERVING after it.
    watching: JoinHandle<()>,
}

impl App {
    /// Checks the configuration (`Config::validate`; one made in code
    /// rather than loaded is checked here too), connects to the database,
    /// applies migrations if configured to, prepares the hasher (which
    /// computes its dummy hash up front) and reads the TLS and key files, so
    /// that a bad setting fails here, at start.
    pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, BoxError> {
        config.validate()?;
        let tls = config.tls.as_ref().map(tls_config).transpose()?;
        let leak_keys = Arc::new(adapters::LeakReportKeys::load(
            config.proxy_adapters.leak_report_keys_file.as_deref(),
        )?);
        let targets = config.webhook_targets()?;
        let store = open_store(config).await?;
        let hasher = Hasher::new(config.argon2, config.hash_pool).await?;
        let webhooks = webhooks(config, targets, &store, &clock)?;
        let services = services(config, store.clone(), hasher, clock)?;
        let metrics = {
            let logins = services.logins.clone();
            let feed = services.feed.clone();
            Arc::new(
                Metrics::new(move || (logins.stats(), feed.stats()))
                    .with_webhooks(webhooks.stats()),
            )
        };
        Ok(Self {
            services,
            metrics,
            adapters: config.proxy_adapters.clone(),
            leak_keys,
            store,
            reflection: config.reflection,
            tls,
            server: config.server,
            audit: config.audit,
            health_interval: Duration::from_millis(config.database.health_check_interval_ms),
            deliverers: webhooks.into_deliverers(),
        })
    }

    /// The domain's services, for commands that act directly on the
    /// database.
    pub fn services(&self) -> &Services<SqlStore> {
        &self.services
    }

    /// Creates the bootstrap operator from `callers.bootstrap_operator_key_file`
    /// if it is configured and does not exist yet; for `serve`, before it
    /// listens. A missing or malformed file refuses the start; the key
    /// itself is never logged, nor put in an error.
    pub async fn bootstrap(&self, config: &Config) -> Result<(), BoxError> {
        let Some(path) = &config.callers.bootstrap_operator_key_file else {
            return self.first_operator(config).await;
        };
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
            format!(
                "cannot read callers.bootstrap_operator_key_file {}: {error}",
                path.display()
            )
        })?);
        let key = CallerKey::parse(text.trim()).ok_or_else(|| {
            format!(
                "{} does not hold a latchkey caller key (make one with `latchkey caller new-key`)",
                path.display()
            )
        })?;
        let created = self
            .services
            .callers
            .bootstrap_operator(BOOTSTRAP_OPERATOR, &key, &Actor::system("bootstrap"))
            .await?;
        if created {
            tracing::info!(
                caller = BOOTSTRAP_OPERATOR,
                "created the bootstrap operator from its key file"
            );
        }
        Ok(())
    }

    /// The first start of a server on an SQLite database with no caller
    /// at all (revoked ones count) and no bootstrap key configured: an
    /// operator `first-operator` is made, its key written to a new file
    /// beside the database, 0600, and the file's path (never the key) is
    /// logged. So `latchkey serve` in an empty directory is a server one
    /// can use. Never again once any caller exists, and never over an
    /// existing file (the file is made first: of two processes starting
    /// at once, one makes it). On PostgreSQL and MariaDB, where replicas
    /// start together and "beside the database" is another machine, no
    /// key is made: the log says how to make the first caller.
    async fn first_operator(&self, config: &Config) -> Result<(), BoxError> {
        let callers = &self.services.callers;
        if !callers.list_callers(None, 1).await?.items.is_empty() {
            return Ok(());
        }
        let Some(database) = store::sqlite_file(config.database_url.expose()) else {
            tracing::warn!(
                "no callers yet, and every call but health needs a caller's key: make the first \
                 with `latchkey caller add NAME --role operator --key-file FILE`, or set \
                 callers.bootstrap_operator_key_file"
            );
            return Ok(());
        };
        let database = std::path::absolute(&database).unwrap_or(database);
        let file = database.with_file_name(FIRST_OPERATOR_KEY_FILE);
        let key = CallerKey::generate()?;
        if let Err(error) = write_key_file(&file, key.expose()) {
            tracing::warn!(
                "no callers yet, and no first operator key was made: {error}; make the first \
                 caller with `latchkey caller add NAME --role operator --key-file FILE`"
            );
            return Ok(());
        }
        match callers
            .bootstrap_operator(FIRST_OPERATOR, &key, &Actor::system("first-start"))
            .await
        {
            Ok(_) => {
                tracing::warn!(
                    caller = FIRST_OPERATOR,
                    key_file = %file.display(),
                    "first start with no callers: made an operator; its key is in key_file (0600, \
                     this user's alone). Use it to make named callers, then revoke \
                     callers/first-operator and delete the file"
                );
                Ok(())
            }
            Err(error) => {
                let _ = std::fs::remove_file(&file);
                Err(error.into())
            }
        }
    }

    /// Serves on `listeners` until `shutdown` resolves, then stops
    /// accepting, lets in-flight requests finish, writes what logins
    /// gathered in memory, and closes the database pool.
    pub async fn serve(
        mut self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), BoxError> {
        let limits = MessageLimits {
            own: self.server.max_message_bytes,
            probe: self.server.probe_message_bytes,
        };
        let (routes, health) = grpc::routes(self.services.clone(), self.reflection, limits).await?;
        let address = listeners.grpc.local_addr()?;
        if self.tls.is_none() && !address.ip().is_loopback() {
            tracing::warn!(
                %address,
                "SERVING WITHOUT TLS ON A NON-LOOPBACK ADDRESS: caller keys and app passwords cross the network in clear; configure [tls]"
            );
        }
        tracing::info!(%address, tls = self.tls.is_some(), "serving gRPC");
        // The other listeners are plain HTTP whatever [tls] says.
        if let Some(adapters) = &listeners.adapters {
            let address = adapters.local_addr()?;
            if !address.ip().is_loopback() {
                tracing::warn!(
                    %address,
                    "THE PROXY ADAPTERS LISTEN ON A NON-LOOPBACK ADDRESS, IN PLAIN HTTP: app \
                     passwords and caller keys cross the network in clear; keep them on \
                     loopback, or on a network only your proxies reach (docs/proxies.md)"
                );
            }
        }
        if let Some(metrics) = &listeners.metrics {
            let address = metrics.local_addr()?;
            if !address.ip().is_loopback() {
                tracing::warn!(
                    %address,
                    "the metrics listen on a non-loopback address, in plain HTTP and with no \
                     key: anyone who reaches it reads latchkey's counters; keep it on a network \
                     only your monitoring reaches"
                );
            }
        }

        let Listeners {
            grpc,
            metrics,
            adapters,
        } = listeners;
        let (stopping, stop) = watch::channel(false);
        let Background {
            mut tasks,
            watching,
        } = self.spawn_background(metrics, adapters, &health, &stop);
        // Each webhook target in a task of its own: a slow or dead one
        // holds up nothing but itself.
        for deliverer in std::mem::take(&mut self.deliverers) {
            tasks.push(tokio::spawn(deliverer.run(stop.clone())));
        }
        let feed = self.services.feed.clone();
        let (began, stop_began) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = began.send(());
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stopping.send(true);
            // Open WatchEvents streams would keep their connections (and
            // this shutdown) waiting forever: end them now.
            feed.close();
            let _ = watching.await;
            set_serving(&health, false).await;
        };
        self.serve_grpc(grpc, routes, shutdown, stop_began).await?;
        for task in tasks {
            let _ = task.await;
        }
        self.finish().await
    }

    /// Starts the background tasks: housekeeping, the login flush, the
    /// change feed's follower, the database health watch, and the metrics
    /// and proxy adapters' listeners when they are bound.
    fn spawn_background(
        &self,
        metrics: Option<TcpListener>,
        adapters: Option<TcpListener>,
        health: &HealthReporter,
        stop: &watch::Receiver<bool>,
    ) -> Background {
        let services = &self.services;
        let mut tasks = vec![
            tokio::spawn(housekeeping(
                services.logins.clone(),
                services.app_passwords.clone(),
                services.audit.clone(),
                services.tokens.clone(),
                self.audit,
                stop.clone(),
            )),
            tokio::spawn(flush_logins(services.logins.clone(), stop.clone())),
        ];
        let feed = services.feed.clone();
        let following = stop.clone();
        tasks.push(tokio::spawn(async move { feed.follow(following).await }));
        // Change-feed events a stopped writer left pending: numbered within
        // two health checks (`store/feed_numbering.rs`).
        let (store, sweeping, every) = (self.store.clone(), stop.clone(), self.health_interval);
        tasks.push(tokio::spawn(async move {
            store.sweep_feed(every, sweeping).await
        }));
        if let Some(listener) = metrics {
            tasks.push(tokio::spawn(serve_metrics(
                listener,
                Arc::clone(&self.metrics),
                stop.clone(),
            )));
        }
        if let Some(listener) = adapters {
            tasks.push(tokio::spawn(self.serve_adapters(listener, stop.clone())));
        }
        let watching = tokio::spawn(watch_database(
            self.store.clone(),
            health.clone(),
            self.health_interval,
            stop.clone(),
        ));
        Background { tasks, watching }
    }

    /// The proxy adapters on their listener, until the server stops.
    fn serve_adapters(
        &self,
        listener: TcpListener,
        mut stop: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let router = adapters::router(
            adapters::AdapterServices {
                logins: self.services.logins.clone(),
                callers: self.services.callers.clone(),
                leaks: self.services.leaks.clone(),
                tokens: self.services.tokens.clone(),
            },
            Arc::clone(&self.leak_keys),
            self.adapters.clone(),
            Arc::clone(&self.metrics),
        );
        // The adapters' callers are your proxies, and nginx opens a
        // connection per login: one peer may take every place here.
        let bounds = ServerConfig {
            max_connections_per_peer: usize::MAX,
            ..self.server
        };
        async move {
            let stopped = async move {
                let _ = stop.changed().await;
            };
            if let Err(error) = adapters::serve(listener, router, &bounds, stopped).await {
                tracing::error!(%error, "the proxy adapters' listener failed");
            }
        }
    }

    /// Serves gRPC on `listener` until `shutdown` has run; connections get
    /// `shutdown_grace` to finish once the stop begins (`stop_began`), then
    /// the stop goes on without them, so that what was counted in memory is
    /// still written after.
    async fn serve_grpc(
        &self,
        listener: TcpListener,
        routes: Routes,
        shutdown: impl Future<Output = ()> + Send,
        stop_began: oneshot::Receiver<()>,
    ) -> Result<(), BoxError> {
        let bounds = self.server;
        let secs = Duration::from_secs;
        let mut server = Server::builder()
            .max_concurrent_streams(bounds.max_concurrent_streams)
            .http2_max_header_list_size(bounds.max_header_list_bytes)
            .http2_keepalive_interval(Some(secs(bounds.keepalive_interval_secs)))
            .http2_keepalive_timeout(Some(secs(bounds.keepalive_timeout_secs)))
            .timeout(secs(bounds.request_timeout_secs));
        if let Some(tls) = self.tls.clone() {
            let handshake = Duration::from_millis(bounds.handshake_timeout_ms);
            server = server.tls_config(tls.timeout(handshake))?;
        }
        tracing::info!(
            connections = bounds.connection_cap(),
            streams_per_connection = bounds.max_concurrent_streams,
            "transport limits"
        );
        let serving = server
            .layer(RequestLogLayer::new(Arc::clone(&self.metrics)))
            .layer(CallerAuthLayer::new(
                self.services.callers.clone(),
                self.reflection,
            ))
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                BoundedListener::new(listener, &bounds, ProofDeadline::None).incoming(),
                shutdown,
            );
        let grace = secs(bounds.shutdown_grace_secs);
        tokio::select! {
            served = serving => served?,
            () = async {
                if stop_began.await.is_ok() {
                    tokio::time::sleep(grace).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(grace_secs = grace.as_secs(), "connections still open after the shutdown grace; stopping without them");
            }
        }
        Ok(())
    }

    /// Once the server and its tasks have stopped: lets decisions whose
    /// callers left end, writes what logins gathered in memory, and closes
    /// the database pool.
    async fn finish(self) -> Result<(), BoxError> {
        // Decisions whose callers left may still be running: let them end,
        // so what they counted is written with the rest.
        if tokio::time::timeout(Duration::from_secs(10), self.services.logins.settle())
            .await
            .is_err()
        {
            tracing::warn!("logins still being decided after 10 s; stopping without them");
        }
        // In-flight requests have finished: what they used is written now.
        match self.services.logins.flush_usage().await {
            Ok(written) => tracing::info!(written, "flushed usage of app passwords"),
            Err(error) => {
                tracing::error!(%error, "flushing usage at shutdown failed: last-used fields and use counts since the last flush are lost")
            }
        }
        match self.services.logins.flush_repeats().await {
            Ok(written) => tracing::info!(written, "audited repeated failed logins"),
            Err(error) => {
                tracing::error!(%error, "auditing repeated failed logins at shutdown failed: their counts since the last flush are lost")
            }
        }
        self.store.close().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// A webhook deliverer per target, each with an HTTP client of its own.
fn webhooks(
    config: &Config,
    targets: Vec<crate::domain::webhooks::Target>,
    store: &SqlStore,
    clock: &Arc<dyn Clock>,
) -> Result<Webhooks<SqlStore, webhook_client::HttpPost>, BoxError> {
    let roots = if targets.iter().any(|target| target.url.scheme() == "https") {
        webhook_client::system_roots()
    } else {
        Arc::new(rustls::RootCertStore::empty())
    };
    let targets = targets
        .into_iter()
        .map(|target| {
            let client = webhook_client::HttpPost::new(&target, &roots)?;
            tracing::info!(target = %target.name, types = target.event_types.len(), "webhook target");
            Ok((target, client))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let poll = Duration::from_millis(config.watch.poll_interval_ms);
    Ok(Webhooks::new(targets, store, clock, poll))
}

/// One service per capability, over `store`, as `config` sets them up.
fn services(
    config: &Config,
    store: SqlStore,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
) -> Result<Services<SqlStore>, BoxError> {
    let usage_flush = config.usage.flush_interval().unwrap_or_default();
    let login = LoginConfig {
        throttle: config.throttle,
        verified_cache: config.verified_cache.cache(),
        usage: config.usage,
        default_wait: Duration::from_millis(config.hash_pool.default_wait_ms),
        max_wait: Duration::from_secs(config.server.request_timeout_secs),
    };
    let token_key = config.token_key()?;
    match &config.oauth2.key_file {
        Some(_) => tracing::info!(
            key_id = token_key.id(),
            "OAuth access tokens sealed with oauth2.key_file: every replica with it reads them"
        ),
        // Not a warning: one replica, or none using the OAuth door, needs
        // no key file, and a default start stays quiet.
        None => tracing::info!(
            "oauth2.key_file unset: OAuth access tokens are read only by the replica that issued them, until it restarts; give every replica the same key file"
        ),
    }
    let warm = config.verified_cache.warm_key()?;
    match &warm {
        Some(key) => tracing::info!(
            key_id = key.id(),
            window_secs = config.verified_cache.warm_window_secs,
            "warm verifiers on: one argon2 per device for every replica sharing this key"
        ),
        None => tracing::info!(
            "verified_cache.key_file unset: no warm verifiers; only this process's cache spares argon2"
        ),
    }
    Ok(Services {
        logins: Logins::new(
            store.clone(),
            hasher.clone(),
            Arc::clone(&clock),
            login,
            warm,
        )?,
        tokens: AccessTokens::new(
            store.clone(),
            Arc::clone(&clock),
            config.oauth2.lifetime(),
            token_key,
        ),
        leaks: Leaks::new(
            store.clone(),
            hasher.clone(),
            Arc::clone(&clock),
            config.leaks,
        ),
        app_passwords: AppPasswords::new(
            store.clone(),
            hasher,
            Arc::clone(&clock),
            config.max_active_app_passwords,
            config.app_passwords,
            usage_flush,
            config.watch.notice_before.duration(),
        ),
        accounts: Accounts::new(store.clone(), Arc::clone(&clock)),
        callers: Callers::new(store.clone(), Arc::clone(&clock), config.caller_cache),
        audit: AuditTrail::new(store.clone(), Arc::clone(&clock)),
        feed: EventFeed::new(store.clone(), config.watch),
        tenants: Tenants::new(store, clock),
    })
}

/// Connects and, if configured to, migrates. An error names the database
/// (redacted), says what went wrong (every distinct cause, with the URL's
/// secrets scrubbed from them) and, where it can tell, what to do.
pub async fn open_store(config: &Config) -> Result<SqlStore, BoxError> {
    let url = &config.database_url;
    let failed = |doing: &str, error: &dyn std::error::Error| {
        let causes = url.scrub(&causes(error));
        let mut message = format!("cannot {doing} the database {}: {causes}", url.redacted());
        if let Some(hint) = hint(&causes) {
            message.push_str("\n  hint: ");
            message.push_str(hint);
        }
        message
    };
    // Without migrations the database must be there already, and be
    // latchkey's: a command run from the wrong directory, or with the
    // wrong URL, must not make an empty database and succeed on it.
    let existing_only = !config.migrate_on_start;
    if existing_only {
        if let Some(file) = store::sqlite_file(url.expose()) {
            if !file.exists() {
                let absolute = std::path::absolute(&file).unwrap_or(file);
                return Err(format!(
                    "no SQLite database at {}: only `latchkey serve` and `latchkey migrate` \
                     create one\n  hint: name the server's database with --database-url or \
                     --config (or LATCHKEY_DATABASE_URL), or run `latchkey migrate` to create it \
                     there",
                    absolute.display()
                )
                .into());
            }
        }
    }
    let store = SqlStore::connect(url.expose(), config.database)
        .await
        .map_err(|error| failed("open", &error))?;
    if config.migrate_on_start {
        store
            .migrate()
            .await
            .map_err(|error| failed("migrate", &error))?;
    } else if let Err(why) = store.check_schema().await {
        store.close().await.ok();
        return Err(format!(
            "refusing the database {}: {why}\n  hint: is it the server's database? `latchkey \
             migrate` (or `latchkey serve`, which migrates) brings it to this version",
            describe_database(url)
        )
        .into());
    }
    Ok(store)
}

/// The operator a first start makes (`App::first_operator`), and its key
/// file's name, beside the SQLite database.
const FIRST_OPERATOR: &str = "first-operator";
const FIRST_OPERATOR_KEY_FILE: &str = "latchkey-first-operator.key";

/// Writes `key` to a new file at `path`, its owner's alone (0600 from its
/// creation, whatever the umask); never over an existing file.
pub fn write_key_file(path: &std::path::Path, key: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| format!("cannot create the key file {}: {error}", path.display()))?;
    writeln!(out, "{key}")
        .and_then(|()| out.sync_all())
        .map_err(|error| format!("cannot write the key file {}: {error}", path.display()))
}

/// The database as a command tells which one it used: an SQLite file by
/// its absolute path (a relative one depends on where the command ran),
/// a server by its URL with the password hidden.
pub fn describe_database(url: &DatabaseUrl) -> String {
    match store::sqlite_file(url.expose()) {
        Some(file) => {
            let absolute = std::path::absolute(&file).unwrap_or(file);
            format!("SQLite file {}", absolute.display())
        }
        None => url.redacted(),
    }
}

/// An error and its sources, outermost first, each said once (sqlx repeats
/// its cause at every level), without the wrappers that say nothing.
fn causes(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = next {
        let text = cause.to_string();
        let text = text
            .trim_start_matches("storage unavailable")
            .trim_start_matches("internal error")
            .trim_start_matches("Connection Error: ")
            .trim_start_matches("error returned from database: ")
            .trim()
            .to_owned();
        if !text.is_empty()
            && !parts
                .iter()
                .any(|seen| seen.contains(&text) || text.contains(seen.as_str()))
        {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// What to do about a database that cannot be opened, when its error says;
/// the first that fits (a missing role is also "does not exist").
fn hint(causes: &str) -> Option<&'static str> {
    let lower = causes.to_ascii_lowercase();
    let hints: [(&[&str], &'static str); 6] = [
        (
            &["no supporting driver"],
            "database_url must start with sqlite://, postgres:// or mysql://",
        ),
        (
            &["unable to open database file"],
            "the SQLite file's directory must exist and be writable by latchkey; ?mode=rwc creates the file itself",
        ),
        (
            &["role \"", "access denied", "password authentication failed"],
            "check the user and password in database_url (or the file database_url_file names)",
        ),
        (
            &["does not exist", "unknown database"],
            "create the database first (PostgreSQL: createdb NAME; MariaDB: CREATE DATABASE NAME), or fix its name in the URL",
        ),
        (
            &["pool timed out", "connection refused"],
            "nothing answered at the URL's host and port: is the database server running, and reachable from here?",
        ),
        (
            &["database is locked"],
            "another process holds the SQLite file; wait, or raise database.sqlite_busy_timeout_ms",
        ),
    ];
    hints
        .into_iter()
        .find(|(needles, _)| needles.iter().any(|needle| lower.contains(needle)))
        .map(|(_, hint)| hint)
}

fn tls_config(tls: &TlsConfig) -> Result<ServerTlsConfig, BoxError> {
    let read = |setting: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|error| format!("{setting} {}: cannot read it: {error}", path.display()))
    };
    let cert = read("tls.cert_file", &tls.cert_file)?;
    let key = read("tls.key_file", &tls.key_file)?;
    check_key_pair(tls, &cert, &key)?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.client_ca_file {
        let pem = read("tls.client_ca_file", ca)?;
        if pem_certificates(&pem).is_empty() {
            return Err(format!(
                "tls.client_ca_file {}: holds no PEM certificate",
                ca.display()
            )
            .into());
        }
        config = config
            .client_ca_root(Certificate::from_pem(pem))
            .client_auth_optional(true);
    }
    Ok(config)
}

fn pem_certificates(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(std::result::Result::ok)
        .collect()
}

/// The key pair as rustls will take it, checked before anything is
/// announced: each file holds what its setting says (a swap is named as
/// such), and the key is the certificate's. Without this, a bad pair was
/// found only when the first connection came: after "listening on",
/// as "transport error".
fn check_key_pair(tls: &TlsConfig, cert: &[u8], key: &[u8]) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let (cert_file, key_file) = (tls.cert_file.display(), tls.key_file.display());
    let certs = pem_certificates(cert);
    let parsed_key = PrivateKeyDer::from_pem_slice(key);
    if certs.is_empty() {
        let swapped =
            PrivateKeyDer::from_pem_slice(cert).is_ok() && !pem_certificates(key).is_empty();
        return Err(if swapped {
            format!(
                "tls.cert_file {cert_file} holds a private key and tls.key_file {key_file} a \
                 certificate: the two are swapped"
            )
        } else {
            format!("tls.cert_file {cert_file}: holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")")
        });
    }
    let key = parsed_key.map_err(|_| {
        if pem_certificates(key).is_empty() {
            format!("tls.key_file {key_file}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")
        } else {
            format!(
                "tls.key_file {key_file}: holds a certificate, not a private key (is it the \
                 certificate again?)"
            )
        }
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| {
            format!("tls.key_file {key_file}: a private key rustls cannot use: {error}")
        })?;
    rustls::sign::CertifiedKey::new(certs, signing)
        .keys_match()
        .map_err(|_| {
            format!(
                "tls.key_file {key_file} is not the private key of the certificate in \
                 tls.cert_file {cert_file} (the first certificate must be the server's own)"
            )
        })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
