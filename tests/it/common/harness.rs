//! Starts the real server on an ephemeral port against a fresh database and
//! hands out gRPC clients for it.
//!
//! Backends: SQLite always (a file in a temporary directory); PostgreSQL
//! and MariaDB/MySQL when `LATCHKEY_TEST_POSTGRES_URL` /
//! `LATCHKEY_TEST_MYSQL_URL` name an admin connection. Each test gets a
//! database of its own, created here and dropped when the test ends, so
//! runs never collide.
//!
//! A backend without a URL is reported as ignored, not passed: the crate's
//! build script (`build.rs`) sets `--cfg latchkey_test_postgres` /
//! `--cfg latchkey_test_mysql` when the variable is set and non-empty, and
//! [`backend_tests!`](crate::backend_tests) (and each test that names a
//! backend itself) is `#[ignore]`d without it. Under CI (`CI` set) both cfgs
//! are always on, so a missing URL fails the test instead of skipping it.
//! The variables are read when the tests are built; cargo rebuilds the crate
//! when one of them (or `CI`) changes. [`TestServer::start`] panics, saying
//! so, when it is asked for a backend whose URL is not set: under CI, or in
//! a run that forces ignored tests (`--ignored`, `--include-ignored`).

use latchkey::domain::audit::event::Actor;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use latchkey::app::{App, Listeners};
use latchkey::config::{Config, DatabaseUrl};
use latchkey::domain::callers::model::Role;
use latchkey::domain::secrets::hashing::HashParams;
use latchkey::domain::shared::time::{Clock, ManualClock, Timestamp};
use latchkey::grpc::pb::account_service_client::AccountServiceClient;
use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::audit_service_client::AuditServiceClient;
use latchkey::grpc::pb::caller_service_client::CallerServiceClient;
use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use std::collections::HashMap;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::bearer::Bearer;
use super::link::{self, FaultyLink};
use super::logs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    fn admin_url_var(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("LATCHKEY_TEST_POSTGRES_URL"),
            Backend::MySql => Some("LATCHKEY_TEST_MYSQL_URL"),
        }
    }
}

/// 2026-01-01T00:00:00Z: tests start from a known time and move it by hand.
pub const START: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// argon2 parameters small enough for a test suite; never a default.
pub const TEST_ARGON2: HashParams = HashParams {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};

/// The configuration every test server starts from.
pub fn test_config() -> Config {
    Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        argon2: TEST_ARGON2,
        metrics: latchkey::config::MetricsConfig {
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        },
        proxy_adapters: latchkey::adapters::AdaptersConfig {
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Default::default()
        },
        // Within `stop`'s 10 s.
        server: latchkey::transport::ServerConfig {
            shutdown_grace_secs: 5,
            ..Default::default()
        },
        // Tests issue hundreds of passwords on a clock that does not move;
        // the bounds are tested at their defaults where they are the
        // subject (tests/it/issuers.rs).
        app_passwords: latchkey::domain::app_passwords::model::AppPasswordsConfig {
            account_issues_per_hour: 1_000_000,
            caller_issues_per_minute: 1_000_000,
            ..Default::default()
        },
        ..Config::default()
    }
}

/// The server's background tasks that sleep on its clock: housekeeping
/// and the login flush (`app/background.rs`).
const CLOCK_TASKS: usize = 2;

pub struct TestServer {
    pub clock: ManualClock,
    pub database: TestDatabase,
    /// A key for each role, made before the server starts.
    pub keys: HashMap<Role, String>,
    pub addr: std::net::SocketAddr,
    /// Where `/metrics` is served (every test server serves it).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the proxy adapters are served (every test server serves them).
    pub adapters_addr: std::net::SocketAddr,
    /// The domain services of the running server, to look at its counters.
    pub services: latchkey::domain::Services<latchkey::store::SqlStore>,
    channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl TestServer {
    /// Starts a server on a fresh database of `backend`. Panics if the
    /// backend is not configured (see the module doc: its tests are ignored
    /// then, so only CI or a forced run gets here).
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// [`TestServer::start`], with the test configuration `adjust`ed.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let database = TestDatabase::create(backend).await;
        let mut config = test_config();
        config.database_url = DatabaseUrl::new(database.url.clone());
        adjust(&mut config);
        Self::serve(config, database).await
    }

    /// Starts a server on a database the test made itself (an SQLite file
    /// on a file system of its own, say), with `adjust`ed configuration.
    pub async fn start_on(database: TestDatabase, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        config.database_url = DatabaseUrl::new(database.url.clone());
        adjust(&mut config);
        Self::serve(config, database).await
    }

    /// Starts a server whose database connections go through a link the
    /// test can cut (PostgreSQL and MySQL only).
    pub async fn start_behind_link(
        backend: Backend,
        adjust: impl FnOnce(&mut Config),
    ) -> (Self, FaultyLink) {
        let database = TestDatabase::create(backend).await;
        let link = FaultyLink::to(link::target_of(&database.url)).await;
        let mut config = test_config();
        config.database_url = DatabaseUrl::new(link::through(&database.url, link.addr));
        adjust(&mut config);
        (Self::serve(config, database).await, link)
    }

    /// Starts another server on the same database, as a second replica would
    /// run (or this one after a restart), with `adjust`ed configuration.
    pub async fn replica_with(&self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = test_config();
        config.database_url = DatabaseUrl::new(self.database.url.clone());
        adjust(&mut config);
        let database = TestDatabase {
            url: self.database.url.clone(),
            cleanup: None,
            _dir: None,
        };
        let replica = Self::serve_with_keys(config, database, Some(self.keys.clone())).await;
        replica.clock.set(self.clock.now());
        replica
    }

    async fn serve(config: Config, database: TestDatabase) -> Self {
        Self::serve_with_keys(config, database, None).await
    }

    /// One caller per role, named `test-{role}`.
    async fn create_callers(app: &App) -> HashMap<Role, String> {
        let mut keys = HashMap::new();
        for role in Role::ALL {
            let name = format!("test-{role}");
            let (_, key) = app
                .services()
                .callers
                .create_caller(
                    latchkey::domain::callers::model::NewCaller::plain(name, role),
                    &Actor::system("test-harness"),
                )
                .await
                .unwrap();
            keys.insert(role, key.expose().to_owned());
        }
        keys
    }

    /// `keys`: the callers already in the database (for a replica); without
    /// them, one caller per role is created.
    async fn serve_with_keys(
        config: Config,
        database: TestDatabase,
        keys: Option<HashMap<Role, String>>,
    ) -> Self {
        logs::install();
        let clock = ManualClock::starting_at(START);
        let listeners = Listeners::bind(&config).await.unwrap();
        let bound = listeners.addresses().unwrap();
        let (addr, metrics_addr) = (bound.grpc, bound.metrics);
        let adapters_addr = bound.adapters.unwrap();
        let app = App::build(&config, Arc::new(clock.clone())).await.unwrap();
        let services = app.services().clone();
        let keys = match keys {
            Some(keys) => keys,
            None => Self::create_callers(&app).await,
        };
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.serve(listeners, async {
                let _ = stopped.await;
            })
            .await
            .map_err(|error| error.to_string())
        });
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        // The server's two tasks on the clock (housekeeping, after its
        // first pass, and the login flush) asleep: a test that moves the
        // clock then moves it for both, and `advance_and_settle` knows
        // whom to wait for.
        crate::common::support::until(
            "the server's clock tasks are asleep",
            Duration::from_secs(20),
            || clock.asleep() >= CLOCK_TASKS,
        )
        .await;
        Self {
            clock,
            database,
            keys,
            addr,
            metrics_addr,
            adapters_addr,
            services,
            channel,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Clients authenticated as an operator, who may call everything; the
    /// role tests use [`TestServer::as_caller`].
    pub fn app_passwords(&self) -> AppPasswordServiceClient<Authed> {
        AppPasswordServiceClient::new(self.as_role(Role::Issuer))
    }

    pub fn auth(&self) -> LegacyAuthServiceClient<Authed> {
        LegacyAuthServiceClient::new(self.as_role(Role::Authenticator))
    }

    pub fn accounts(&self) -> AccountServiceClient<Authed> {
        AccountServiceClient::new(self.as_role(Role::Operator))
    }

    pub fn callers(&self) -> CallerServiceClient<Authed> {
        CallerServiceClient::new(self.as_role(Role::Operator))
    }

    pub fn audit(&self) -> AuditServiceClient<Authed> {
        AuditServiceClient::new(self.as_role(Role::Operator))
    }

    /// The channel, sending the key of the test caller with `role`.
    pub fn as_role(&self, role: Role) -> Authed {
        self.as_caller(Some(&self.keys[&role]))
    }

    /// The channel, sending `key` as a bearer key (or nothing).
    pub fn as_caller(&self, key: Option<&str>) -> Authed {
        InterceptedService::new(self.channel.clone(), bearer(key))
    }

    /// A connection of its own, sending the key of the test caller with
    /// `role`: for bursts whose transport-level fate must not touch the
    /// shared channel.
    pub async fn new_connection_as(&self, role: Role) -> Authed {
        let channel = Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        InterceptedService::new(channel, bearer(Some(&self.keys[&role])))
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Graceful shutdown; fails the test if the server did not stop cleanly.
    /// Returns the database, which is dropped (and deleted) with the value.
    pub async fn stop(mut self) -> TestDatabase {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server did not stop within 10 s")
                .expect("server task panicked");
            result.expect("server returned an error");
        }
        std::mem::replace(
            &mut self.database,
            TestDatabase {
                url: String::new(),
                cleanup: None,
                _dir: None,
            },
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// Sends `key` as a bearer key, or nothing.
fn bearer(key: Option<&str>) -> Bearer {
    key.map_or_else(Bearer::default, |key| {
        Bearer::new(key).expect("a key is valid metadata")
    })
}

/// A database that exists for one test.
pub struct TestDatabase {
    pub url: String,
    cleanup: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDatabase {
    /// A fresh database of `backend`, dropped with the value.
    pub async fn create(backend: Backend) -> Self {
        let Some(var) = backend.admin_url_var() else {
            let dir = tempfile::tempdir().unwrap();
            return Self {
                url: super::support::sqlite_url(dir.path()),
                cleanup: None,
                _dir: Some(dir),
            };
        };
        let admin_url = match std::env::var(var) {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var_os("CI").is_some() => {
                panic!("{var} must be set under CI: the {backend:?} tests may not be skipped")
            }
            _ => panic!(
                "{var} is not set, and the {backend:?} tests need it: they are ignored when it \
                 is unset at build time, so this run forced them (--ignored, --include-ignored) \
                 or it was unset after the build"
            ),
        };
        let name = format!(
            "latchkey_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4().simple()
        );
        let admin = Database::connect(&admin_url).await.unwrap();
        execute(&admin, &format!("CREATE DATABASE {name}")).await;
        admin.close().await.unwrap();
        Self {
            url: with_database(&admin_url, &name),
            cleanup: Some((admin_url, name)),
            _dir: None,
        }
    }

    /// A database at `url` that the test made itself and removes itself
    /// (on a PostgreSQL cluster of its own, say).
    pub fn at(url: String) -> Self {
        Self {
            url,
            cleanup: None,
            _dir: None,
        }
    }

    /// An SQLite database file in `dir`, which the test owns and removes.
    pub fn sqlite_in(dir: &std::path::Path) -> Self {
        Self::at(super::support::sqlite_url(dir))
    }

    /// A connection straight to the test database, for looking at what the
    /// server stored.
    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.cleanup.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on async
        // work: drop the database from a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let force = if admin_url.starts_with("postgres") {
                        " WITH (FORCE)"
                    } else {
                        ""
                    };
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}{force}"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

async fn execute(db: &DatabaseConnection, sql: &str) {
    db.execute(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// The admin URL with its database path replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

/// Runs a test body once per backend: `backend_tests!(walk, …)` makes
/// `walk::sqlite`, `walk::postgres` and `walk::mysql`; the last two are
/// ignored where their backend is not configured (see the module doc).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::harness::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(latchkey_test_postgres), ignore = "LATCHKEY_TEST_POSTGRES_URL is not set")]
                async fn postgres() {
                    super::$name($crate::common::harness::Backend::Postgres).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(latchkey_test_mysql), ignore = "LATCHKEY_TEST_MYSQL_URL is not set")]
                async fn mysql() {
                    super::$name($crate::common::harness::Backend::MySql).await
                }
            }
        )+
    };
}
