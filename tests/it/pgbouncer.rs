//! pgbouncer (Debian's package) in front of PostgreSQL, started by each test
//! on a free port with its configuration in a temporary directory, in a
//! process group of its own (docs/deploy.md, "pgbouncer"):
//! - session mode, with a pool of exactly replicas ×
//!   (database.max_connections + 1): two replicas issue, sign in, revoke and
//!   watch through it, and many issues and logins at once each get the
//!   answer meant for them;
//! - transaction mode: latchkey refuses to start, naming pgbouncer's
//!   transaction pooling, and writes nothing, also while other clients keep
//!   the pool busy; statement mode is refused too.
//!
//! `.ci/run` installs pgbouncer; outside CI a machine without it skips
//! these tests, under CI they fail.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use latchkey::config::DatabaseUrl;
use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::{AuditEventType, FailureReason, Protocol};
use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::{self, Connection};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::common::harness::{test_config, Backend, TestDatabase, TestServer};
use crate::common::link;
use crate::common::processes::{free_port, Group};
use crate::common::support::*;
use crate::watch::{all_types, Watcher};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// Whether pgbouncer is here; under CI its absence fails the test.
fn pgbouncer_present() -> bool {
    let present = crate::common::programs::installed(&[PGBOUNCER], "pgbouncer");
    if !present {
        eprintln!("skipping the pgbouncer tests");
    }
    present
}

/// A pgbouncer in front of the test's PostgreSQL server, stopped (its whole
/// process group) when dropped.
struct Bouncer {
    _group: Group,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Bouncer {
    /// Starts pgbouncer with `pool_mode` and a pool of `pool_size` server
    /// connections per database and user, trusting the admin URL's user as
    /// PostgreSQL does here.
    async fn start(pool_mode: &str, pool_size: u32) -> Self {
        let admin = std::env::var("LATCHKEY_TEST_POSTGRES_URL")
            .expect("LATCHKEY_TEST_POSTGRES_URL names the PostgreSQL server");
        let server = link::target_of(&admin);
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let ini = dir.path().join("pgbouncer.ini");
        let users = dir.path().join("userlist.txt");
        std::fs::write(&users, format!("\"{}\" \"\"\n", user_of(&admin))).unwrap();
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 * = host={host} port={server_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {users}\n\
                 pool_mode = {pool_mode}\n\
                 default_pool_size = {pool_size}\n\
                 max_client_conn = 1000\n\
                 ignore_startup_parameters = extra_float_digits\n",
                host = server.ip(),
                server_port = server.port(),
                users = users.display(),
            ),
        )
        .unwrap();
        let mut command = Command::new(PGBOUNCER);
        // pgbouncer will not run as root: it drops to nobody, who must
        // read its configuration.
        if running_as_root() {
            readable_by_all(dir.path(), &[&ini, &users]);
            command.args(["-u", "nobody"]);
        }
        command.arg(&ini);
        let mut group = Group::spawn("pgbouncer", &mut command, dir.path());
        group.listening(port).await;
        Self {
            _group: group,
            port,
            _dir: dir,
        }
    }

    /// `url` (the test database's, straight to PostgreSQL) through this
    /// pgbouncer.
    fn url(&self, url: &str) -> String {
        link::through(url, SocketAddr::from(([127, 0, 0, 1], self.port)))
    }
}

/// The user of a `postgres://user@host/…` URL.
fn user_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let user = authority
        .rsplit_once('@')
        .map_or("postgres", |(user, _)| user);
    user.split(':').next().unwrap().to_owned()
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

fn readable_by_all(dir: &Path, files: &[&Path]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// Each replica's `database.max_connections` in these tests: small, so
/// that the session pool below is tight.
const MAX_CONNECTIONS: u32 = 4;
const REPLICAS: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(latchkey_test_pgbouncer, latchkey_test_postgres)),
    ignore = "needs pgbouncer and LATCHKEY_TEST_POSTGRES_URL"
)]
async fn session_mode_serves_two_replicas_through_a_pool_of_the_documented_size() {
    if !pgbouncer_present() {
        return;
    }
    // docs/deploy.md: pool_size ≥ replicas × (database.max_connections + 1).
    let bouncer = Bouncer::start("session", REPLICAS * (MAX_CONNECTIONS + 1)).await;
    let through = |config: &mut latchkey::config::Config| {
        config.database_url = DatabaseUrl::new(bouncer.url(config.database_url.expose()));
        config.database.max_connections = MAX_CONNECTIONS;
    };
    let server = TestServer::start_with(Backend::Postgres, through).await;
    let replica = server.replica_with(through).await;
    let mut watcher = Watcher::open(&replica, Role::Operator, all_types()).await;

    // The walk: issue on one replica, sign in on the other, revoke, refused.
    let (name, secret) = issue_simple(&server, "alice@example.com").await;
    let signed_in = login(&replica, "alice@example.com", &secret).await;
    assert!(signed_in.authenticated, "{signed_in:?}");
    assert_eq!(signed_in.app_password, name);
    revoke(&server, name.clone()).await;
    assert_refused(
        &login(&replica, "alice@example.com", &secret).await,
        FailureReason::Revoked,
    );
    let seen: Vec<AuditEventType> = watcher
        .take(3)
        .await
        .iter()
        .map(|event| event.r#type())
        .collect();
    assert_eq!(
        seen,
        [
            AuditEventType::AppPasswordIssued,
            AuditEventType::AppPasswordFirstUse,
            AuditEventType::AppPasswordRevoked,
        ],
        "the feed's LISTEN works through session pooling"
    );

    // Many at once, through both replicas: every answer the intended one.
    let issued = issue_and_sign_in_at_once(&server, &replica, 48).await;
    assert_eq!(issued, 48);
}

/// Issues `count` passwords for as many users at once, half through each
/// replica, then signs in with each (through the other replica) and with a
/// wrong secret at once; asserts that every answer is the one meant for
/// that request. Returns how many passwords were issued.
async fn issue_and_sign_in_at_once(a: &TestServer, b: &TestServer, count: usize) -> usize {
    let issues = (0..count).map(|i| {
        let server = if i % 2 == 0 { a } else { b };
        async move {
            let user = format!("user{i}@example.com");
            let (name, secret) = issue_simple(server, &user).await;
            assert!(
                name.starts_with(&format!("accounts/{user}/appPasswords/")),
                "{name} was issued for {user}"
            );
            (user, name, secret)
        }
    });
    let issued = futures::future::join_all(issues).await;
    let issued = &issued;
    let logins = issued.iter().enumerate().map(|(i, (user, name, secret))| {
        let server = if i % 2 == 0 { b } else { a };
        async move {
            let right = login_with(server, user, secret, Protocol::Imap, "198.51.100.1").await;
            assert!(right.authenticated, "{user}: {right:?}");
            assert_eq!(&right.app_password, name, "{user} signed in as itself");
            assert_eq!(&right.username, user);
            // Another user's secret is wrong for this one.
            let other = &issued[(i + 1) % issued.len()].2;
            // From a network of its own: many wrong guesses from one would
            // (rightly) throttle it.
            let network = format!("10.{i}.0.1");
            let wrong = login_with(server, user, other, Protocol::Imap, &network).await;
            assert_refused(&wrong, FailureReason::InvalidCredentials);
        }
    });
    futures::future::join_all(logins).await;
    issued.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(latchkey_test_pgbouncer, latchkey_test_postgres)),
    ignore = "needs pgbouncer and LATCHKEY_TEST_POSTGRES_URL"
)]
async fn transaction_mode_is_refused_at_start_by_name_even_while_the_pool_is_busy() {
    if !pgbouncer_present() {
        return;
    }
    let bouncer = Bouncer::start("transaction", 4).await;
    let database = TestDatabase::create(Backend::Postgres).await;
    let url = bouncer.url(&database.url);

    // Other clients keep the pool's server connections changing hands
    // while latchkey starts, again and again.
    const STARTS: usize = 20;
    let stop = AtomicBool::new(false);
    let queries = AtomicU64::new(0);
    let busy = futures::future::join_all((0..6).map(|_| async {
        let mut connection = PgConnection::connect(&url).await.unwrap();
        while !stop.load(Ordering::Relaxed) {
            sqlx::raw_sql("SELECT pg_backend_pid()")
                .execute(&mut connection)
                .await
                .unwrap();
            queries.fetch_add(1, Ordering::Relaxed);
        }
    }));
    let starts = async {
        until(
            "the other clients query",
            std::time::Duration::from_secs(10),
            || queries.load(Ordering::Relaxed) > 100,
        )
        .await;
        let mut refused = 0;
        for _ in 0..STARTS {
            let mut config = test_config();
            config.database_url = DatabaseUrl::new(url.clone());
            let error = latchkey::app::open_store(&config)
                .await
                .expect_err("latchkey refuses transaction pooling")
                .to_string();
            assert!(
                error.contains("pgbouncer's pool_mode = transaction")
                    && error.contains("pool_mode = session"),
                "the refusal names pgbouncer's transaction pooling and what to do: {error}"
            );
            refused += 1;
        }
        stop.store(true, Ordering::Relaxed);
        refused
    };
    let (_, refused) = tokio::join!(busy, starts);
    assert_eq!(refused, STARTS);
    assert_eq!(
        tables(&database).await,
        0,
        "nothing was migrated or written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(latchkey_test_pgbouncer, latchkey_test_postgres)),
    ignore = "needs pgbouncer and LATCHKEY_TEST_POSTGRES_URL"
)]
async fn statement_mode_is_refused_at_start() {
    if !pgbouncer_present() {
        return;
    }
    let bouncer = Bouncer::start("statement", 4).await;
    let database = TestDatabase::create(Backend::Postgres).await;
    let mut config = test_config();
    config.database_url = DatabaseUrl::new(bouncer.url(&database.url));
    let error = latchkey::app::open_store(&config)
        .await
        .expect_err("latchkey refuses statement pooling")
        .to_string();
    assert!(error.contains("statement pooling"), "{error}");
    assert_eq!(
        tables(&database).await,
        0,
        "nothing was migrated or written"
    );
}

/// How many tables the database's public schema holds.
async fn tables(database: &TestDatabase) -> i64 {
    let db = database.connect().await;
    let row = db
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}
