//! The `latchkey` binary as an operator uses it: the first operator key is
//! made against the database before any server runs.

use std::process::Command;

use latchkey::domain::callers::key::KEY_PREFIX;
use latchkey::grpc::pb::account_service_client::AccountServiceClient;
use latchkey::grpc::pb::ListAccountsRequest;
use tonic::Code;

use crate::common::bearer::Bearer;
use crate::common::processes::Group;
use crate::common::support::sqlite_url;

pub fn latchkey(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .args(["--database-url", database_url])
        .env("LATCHKEY_LOG__FILTER", "warn")
        .output()
        .expect("the latchkey binary runs")
}

#[tokio::test]
async fn caller_commands_work_before_and_beside_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());

    let migrated = latchkey(&url, &["migrate"]);
    assert!(migrated.status.success(), "{migrated:?}");
    let added = latchkey(&url, &["caller", "add", "admin", "--role", "operator"]);
    assert!(added.status.success(), "{added:?}");
    let key = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    assert!(
        key.starts_with(KEY_PREFIX),
        "stdout is the key alone: {key:?}"
    );
    assert!(!String::from_utf8_lossy(&added.stderr).contains(&key));

    let duplicate = latchkey(&url, &["caller", "add", "admin", "--role", "issuer"]);
    assert!(!duplicate.status.success());
    let bad_role = latchkey(&url, &["caller", "add", "x", "--role", "root"]);
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role"));

    let listed = latchkey(&url, &["caller", "list"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("admin") && listed.contains("operator") && listed.contains("active"));
    assert!(!listed.contains(&key));

    // A server on that database accepts the key...
    let mut config = crate::common::harness::test_config();
    config.database_url = latchkey::config::DatabaseUrl::new(url.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clock =
        latchkey::domain::shared::time::ManualClock::starting_at(crate::common::harness::START);
    let app = latchkey::app::App::build(&config, std::sync::Arc::new(clock.clone()))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(latchkey::app::Listeners::grpc(listener), async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AccountServiceClient::with_interceptor(channel, Bearer::new(&key).unwrap());
    client
        .list_accounts(ListAccountsRequest::default())
        .await
        .unwrap();

    // ...until the CLI revokes it. The server read the caller's row less
    // than the caller cache's TTL ago, so it may go on trusting it until
    // then, and not a millisecond longer.
    let revoked = latchkey(&url, &["caller", "revoke", "admin"]);
    assert!(revoked.status.success(), "{revoked:?}");
    let ttl = std::time::Duration::from_millis(config.caller_cache.ttl_ms);
    clock.advance(ttl - std::time::Duration::from_millis(1));
    client
        .list_accounts(ListAccountsRequest::default())
        .await
        .unwrap();
    clock.advance(std::time::Duration::from_millis(1));
    let status = client
        .list_accounts(ListAccountsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Database passwords never reach the terminal: not in `--print-config`,
/// not in the error of a connection that fails, not in the refusal of a
/// parameter the driver would ignore, in any letter case and wherever in
/// the URL they are.
#[test]
fn database_passwords_are_redacted_everywhere() {
    let secrets = ["Us3rPw", "QueryPw1", "UpperPw2", "SslPw3"];
    let url = format!(
        "postgres://latchkey:{}@127.0.0.1:1/latchkey?password={}",
        secrets[0], secrets[1]
    );
    let printed = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--print-config", "--database-url", &url])
        .output()
        .unwrap();
    let printed_text = String::from_utf8_lossy(&printed.stdout);
    assert!(printed_text.contains("password=*****"), "{printed_text}");
    let failed = latchkey(&url, &["migrate"]);
    assert!(!failed.status.success());
    let error = String::from_utf8_lossy(&failed.stderr);
    assert!(error.contains("cannot open the database"), "{error}");
    // `PASSWORD` and `sslpassword` are not parameters the driver reads.
    let unread = format!(
        "postgres://latchkey:{}@127.0.0.1:1/latchkey?PASSWORD={}&sslpassword={}",
        secrets[0], secrets[2], secrets[3]
    );
    let refused = latchkey(&unread, &["migrate"]);
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("parameter `PASSWORD` is not one"), "{error}");
    for output in [
        &printed.stdout,
        &printed.stderr,
        &failed.stdout,
        &failed.stderr,
        &refused.stdout,
        &refused.stderr,
    ] {
        let text = String::from_utf8_lossy(output);
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

/// Starts `latchkey serve ARGS` (logging warnings and worse to this test's
/// stderr) and returns it with the first `lines` lines of its stdout, where
/// it says what it bound; fails if they do not come within 30 s.
pub async fn serve(args: &[impl AsRef<std::ffi::OsStr>], lines: usize) -> (Group, Vec<String>) {
    serve_with(args, &[], lines).await
}

/// [`serve`], with settings of its own as environment variables.
pub async fn serve_with(
    args: &[impl AsRef<std::ffi::OsStr>],
    env: &[(&str, &str)],
    lines: usize,
) -> (Group, Vec<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut server = Group::start(
        "latchkey serve",
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .arg("serve")
            .args(args)
            .env("LATCHKEY_LOG__FILTER", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let stdout = server.leader().stdout.take().unwrap();
    let printed = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(lines)
            .collect::<Result<Vec<_>, _>>()
    });
    let printed = tokio::time::timeout(std::time::Duration::from_secs(30), printed)
        .await
        .expect("serve printed what it bound")
        .unwrap()
        .unwrap();
    assert_eq!(printed.len(), lines, "serve stopped early: {printed:?}");
    (server, printed)
}

/// `serve` says on stdout where it listens, with the port a port of 0 got:
/// how a script or the load benchmark finds a server it started.
#[tokio::test]
async fn serve_prints_the_addresses_it_bound() {
    use std::net::SocketAddr;

    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let (_server, lines) = serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
        ],
        2,
    )
    .await;
    let address = |line: &str, prefix: &str| -> SocketAddr {
        let address: SocketAddr = line.strip_prefix(prefix).unwrap().parse().unwrap();
        assert_ne!(address.port(), 0, "{line}");
        address
    };
    let grpc = address(&lines[0], "latchkey: listening on ");
    let metrics = address(&lines[1], "latchkey: metrics listening on ");
    assert_ne!(grpc, metrics);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
}

/// A fresh caller key from `latchkey caller new-key`.
pub fn new_key() -> String {
    let made = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["caller", "new-key"])
        .output()
        .unwrap();
    assert!(made.status.success());
    let key = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with(KEY_PREFIX));
    key
}

/// A deployment's operator comes from a key file on start, once: a
/// restart changes nothing, the key is never logged, and a file that does
/// not hold a key refuses the start without repeating what it holds.
#[tokio::test]
async fn a_bootstrap_operator_is_made_once_from_its_key_file() {
    use latchkey::domain::callers::model::Role;
    let key = new_key();

    let window = crate::common::logs::window();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("operator.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let mut config = crate::common::harness::test_config();
    config.database_url =
        latchkey::config::DatabaseUrl::new(crate::common::support::sqlite_url(dir.path()));
    config.callers.bootstrap_operator_key_file = Some(key_file.clone());
    let clock = std::sync::Arc::new(latchkey::domain::shared::time::ManualClock::starting_at(
        crate::common::harness::START,
    ));
    for _ in 0..2 {
        let app = latchkey::app::App::build(&config, clock.clone())
            .await
            .unwrap();
        app.bootstrap(&config).await.unwrap();
    }
    let app = latchkey::app::App::build(&config, clock.clone())
        .await
        .unwrap();
    let callers = &app.services().callers;
    let caller = callers
        .caller_by_key(&key, None)
        .await
        .unwrap()
        .unwrap()
        .caller;
    assert_eq!(
        (caller.name.as_str(), caller.role),
        ("bootstrap", Role::Operator)
    );
    let listed = callers.list_callers(None, 100).await.unwrap();
    assert_eq!(listed.items.len(), 1, "made once");

    std::fs::write(&key_file, "not-a-key-but-secret-looking\n").unwrap();
    let error = app.bootstrap(&config).await.unwrap_err().to_string();
    assert!(
        error.contains("does not hold a latchkey caller key"),
        "{error}"
    );
    assert!(!error.contains("secret-looking"), "{error}");
    let logs = String::from_utf8_lossy(&window.read()).into_owned();
    assert!(
        !logs.contains(&key[KEY_PREFIX.len() + 13..]),
        "the key was logged"
    );
}

/// Completions and the manual page come from the command-line definitions
/// themselves, so they cannot drift from them.
#[test]
fn completions_and_the_manual_page_cover_every_command() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        for command in [
            "serve",
            "migrate",
            "backup",
            "caller",
            "new-key",
            "adapters-listen",
            "watch",
            "token-file",
        ] {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let man = run(&["man"]);
    assert!(man.contains(".TH latchkey"), "{man}");
    for command in ["serve", "migrate", "backup", "caller", "watch"] {
        assert!(man.contains(command), "the manual page lacks {command}");
    }
    // A command's own page, with its whole help: for `watch`, the contract.
    let watch = run(&["man", "watch"]);
    assert!(watch.contains(".TH latchkey-watch"), "{watch}");
    for text in [
        "at least once",
        "resume_token",
        "Exit status",
        "WATCH_TOKEN_EXPIRED",
    ] {
        assert!(watch.contains(text), "latchkey-watch(1) lacks {text:?}");
    }
    let missing = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["man", "no-such-command"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
}

/// A database that cannot be opened is named (redacted), with what went
/// wrong and what to do, never its password.
#[test]
fn database_misconfiguration_says_what_is_wrong_and_what_to_do() {
    let mut cases = vec![
        ("foo://x".to_owned(), "must start with sqlite://"),
        (
            "sqlite:///nonexistent/dir/latchkey.db?mode=rwc".to_owned(),
            "directory must exist",
        ),
    ];
    if let Ok(admin) = std::env::var("LATCHKEY_TEST_POSTGRES_URL") {
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base)
            .to_owned();
        cases.push((
            format!("{base}/no_such_database"),
            "create the database first",
        ));
        let host = base
            .rsplit_once('@')
            .map_or(base.as_str(), |(_, host)| host);
        cases.push((
            format!("postgres://no_such_role:Secr3tPw@{host}/postgres"),
            "check the user and password",
        ));
    }
    if let Ok(admin) = std::env::var("LATCHKEY_TEST_MYSQL_URL") {
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base)
            .to_owned();
        cases.push((
            format!("{base}/no_such_database"),
            "create the database first",
        ));
    }
    for (url, hint) in cases {
        let failed = latchkey(&url, &["migrate"]);
        assert!(!failed.status.success(), "{url}");
        let error = String::from_utf8_lossy(&failed.stderr);
        assert!(error.contains("cannot open the database"), "{url}: {error}");
        assert!(error.contains(hint), "{url}: {error}");
        assert!(!error.contains("Secr3tPw"), "{error}");
        assert!(
            !error.contains("storage unavailable"),
            "said nothing: {error}"
        );
    }
}

/// `latchkey` in `dir` with no database named: the default configuration's
/// `latchkey.db` there, as an operator running it from the wrong directory
/// gets.
fn latchkey_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .current_dir(dir)
        .env_remove("LATCHKEY_DATABASE_URL")
        .env_remove("LATCHKEY_CONFIG")
        .env("LATCHKEY_LOG__FILTER", "warn")
        .output()
        .expect("the latchkey binary runs")
}

#[tokio::test]
async fn caller_and_backup_commands_refuse_a_missing_database_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let expected = std::path::absolute(dir.path().join("latchkey.db")).unwrap();
    let backup = dir.path().join("copy.db");
    for args in [
        &["caller", "add", "admin", "--role", "operator"][..],
        &["caller", "list"],
        &["caller", "revoke", "admin"],
        &["backup", backup.to_str().unwrap()],
    ] {
        let refused = latchkey_in(dir.path(), args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{args:?}: {stderr}");
        assert!(refused.stdout.is_empty(), "{args:?}: no key, no listing");
        assert!(
            stderr.contains(&format!("no SQLite database at {}:", expected.display()))
                && stderr.contains("hint:"),
            "{args:?} names the absolute path it looked for, with a hint: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{args:?} created {left:?}");
    }

    // Once `migrate` made it, each says which database it used.
    let migrated = latchkey_in(dir.path(), &["migrate"]);
    assert!(migrated.status.success(), "{migrated:?}");
    let listed = latchkey_in(dir.path(), &["caller", "list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stderr).contains(&format!(
        "latchkey: database SQLite file {}",
        expected.display()
    )));
    let copied = latchkey_in(dir.path(), &["backup", backup.to_str().unwrap()]);
    assert!(copied.status.success(), "{copied:?}");
    assert!(String::from_utf8_lossy(&copied.stderr)
        .contains(&format!("backed up SQLite file {}", expected.display())));
}

crate::backend_tests!(commands_refuse_a_database_without_latchkeys_schema);

async fn commands_refuse_a_database_without_latchkeys_schema(
    backend: crate::common::harness::Backend,
) {
    use sea_orm::ConnectionTrait;
    let database = crate::common::harness::TestDatabase::create(backend).await;
    if let Some(file) = latchkey::store::sqlite_file(&database.url) {
        // An empty file: SQLite's database with nothing in it.
        std::fs::File::create(&file).unwrap();
    }
    for args in [
        &["caller", "add", "admin", "--role", "operator"][..],
        &["caller", "list"],
    ] {
        let refused = latchkey(&database.url, args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no latchkey schema") && stderr.contains("latchkey migrate"),
            "{args:?}: {stderr}"
        );
    }
    // Nothing was written: not even sea-orm's migration table.
    let db = database.connect().await;
    let tables = db
        .query_all(sea_orm::Statement::from_string(
            db.get_database_backend(),
            match db.get_database_backend() {
                sea_orm::DbBackend::Sqlite => "SELECT name FROM sqlite_master",
                sea_orm::DbBackend::Postgres => {
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                }
                sea_orm::DbBackend::MySql => {
                    "SELECT table_name FROM information_schema.tables \
                     WHERE table_schema = DATABASE()"
                }
            },
        ))
        .await
        .unwrap();
    assert!(tables.is_empty(), "{} tables made", tables.len());
}

#[tokio::test]
async fn a_key_file_is_new_and_its_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    assert!(latchkey(&url, &["migrate"]).status.success());
    let file = dir.path().join("admin.key");
    let path = file.to_str().unwrap();

    let added = latchkey(
        &url,
        &[
            "caller",
            "add",
            "admin",
            "--role",
            "operator",
            "--key-file",
            path,
        ],
    );
    assert!(added.status.success(), "{added:?}");
    assert!(added.stdout.is_empty(), "the key goes to the file alone");
    let key = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(key.starts_with(KEY_PREFIX));
    assert!(!String::from_utf8_lossy(&added.stderr).contains(&key));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Never over an existing file: refused, the file as it was.
    let again = latchkey_in(dir.path(), &["caller", "new-key", "--key-file", path]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("cannot create the key file"));
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    let fresh = dir.path().join("fresh.key");
    let made = latchkey_in(
        dir.path(),
        &["caller", "new-key", "--key-file", fresh.to_str().unwrap()],
    );
    assert!(made.status.success(), "{made:?}");
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Every listener in plain text on a non-loopback address is warned about
/// at start: gRPC without TLS, the proxy adapters (which carry app
/// passwords) and the metrics (which anyone reaching them reads).
#[tokio::test]
async fn plain_listeners_on_non_loopback_addresses_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let log = dir.path().join("serve.log");
    let _server = Group::start(
        "latchkey serve",
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["serve", "--database-url", &url])
            .args(["--listen", "0.0.0.0:0", "--adapters-listen", "0.0.0.0:0"])
            .args(["--metrics-listen", "0.0.0.0:0"])
            .env("LATCHKEY_LOG__FILTER", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let warned = [
        "SERVING WITHOUT TLS ON A NON-LOOPBACK ADDRESS",
        "THE PROXY ADAPTERS LISTEN ON A NON-LOOPBACK ADDRESS, IN PLAIN HTTP",
        "the metrics listen on a non-loopback address",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        if warned.iter().all(|words| said.contains(words)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every warning came: {said}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `latchkey serve` in `dir` with no configuration: its group, its
/// gRPC address once it says it, and where its log goes.
async fn serve_in(dir: &std::path::Path, run: &str) -> (Group, String, std::path::PathBuf) {
    let (out, log) = (
        dir.join(format!("{run}.out")),
        dir.join(format!("{run}.log")),
    );
    let server = Group::start(
        "latchkey serve",
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .env_remove("LATCHKEY_DATABASE_URL")
            .env_remove("LATCHKEY_CONFIG")
            .env("LATCHKEY_LOG__FILTER", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let printed = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(addr) = printed
            .lines()
            .find_map(|line| line.strip_prefix("latchkey: listening on "))
        {
            return (server, addr.to_owned(), log);
        }
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_first_start_in_an_empty_directory_writes_an_operator_key_once() {
    use latchkey::grpc::pb::caller_service_client::CallerServiceClient;
    use latchkey::grpc::pb::ListCallersRequest;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("latchkey-first-operator.key");

    let (mut server, addr, log) = serve_in(dir.path(), "first").await;
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(key.starts_with(KEY_PREFIX));
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let said = std::fs::read_to_string(&log).unwrap();
    let absolute = std::path::absolute(&key_file).unwrap();
    assert!(said.contains(&absolute.display().to_string()), "{said}");
    assert!(!said.contains(&key), "the key itself is never logged");
    // The key works: an operator's call.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let listed = CallerServiceClient::with_interceptor(channel, Bearer::new(&key).unwrap())
        .list_callers(ListCallersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed.callers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["callers/first-operator"]);
    server.stop();

    // Never again: not with the file gone, since a caller exists.
    std::fs::remove_file(&key_file).unwrap();
    let (mut again, _, _) = serve_in(dir.path(), "again").await;
    again.stop();
    assert!(!key_file.exists(), "a second start made no key");

    // Nor on a database whose first caller was made by hand.
    let other = tempfile::tempdir().unwrap();
    assert!(latchkey_in(other.path(), &["migrate"]).status.success());
    let added = latchkey_in(
        other.path(),
        &["caller", "add", "admin", "--role", "operator"],
    );
    assert!(added.status.success(), "{added:?}");
    let (mut third, _, _) = serve_in(other.path(), "third").await;
    third.stop();
    assert!(!other.path().join("latchkey-first-operator.key").exists());
}

/// `caller add` with a tenant, an expiry and networks, and `caller rotate`,
/// as an operator scripts them.
#[tokio::test]
async fn caller_keys_get_a_tenant_an_expiry_networks_and_rotate() {
    use latchkey::domain::audit::event::Actor;
    use latchkey::domain::shared::time::{Clock, SystemClock};
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    assert!(latchkey(&url, &["migrate"]).status.success());
    let mut config = crate::common::harness::test_config();
    config.database_url = latchkey::config::DatabaseUrl::new(url.clone());
    let app = latchkey::app::App::build(&config, std::sync::Arc::new(SystemClock))
        .await
        .unwrap();
    app.services()
        .tenants
        .create(
            "acme".into(),
            String::new(),
            vec!["acme.test".into()],
            Default::default(),
            &Actor::system("test"),
        )
        .await
        .unwrap();

    let key_file = dir.path().join("portal.key");
    let added = latchkey(
        &url,
        &[
            "caller",
            "add",
            "portal",
            "--role",
            "issuer",
            "--tenant",
            "tenants/acme",
            "--expires",
            "30d",
            "--allow-network",
            "10.0.0.0/8",
            "--allow-network",
            "192.0.2.7",
            "--key-file",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(added.status.success(), "{added:?}");
    assert!(String::from_utf8_lossy(&added.stderr).contains("in tenants/acme"));
    let operator = latchkey(
        &url,
        &[
            "caller", "add", "boss", "--role", "operator", "--tenant", "acme",
        ],
    );
    assert!(!operator.status.success());
    assert!(String::from_utf8_lossy(&operator.stderr).contains("deployment-wide"));
    let nowhere = latchkey(
        &url,
        &[
            "caller", "add", "lost", "--role", "issuer", "--tenant", "nowhere",
        ],
    );
    assert!(!nowhere.status.success());
    let bad = latchkey(
        &url,
        &[
            "caller",
            "add",
            "x",
            "--role",
            "issuer",
            "--expires",
            "soon",
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--expires"));

    let listed = String::from_utf8(latchkey(&url, &["caller", "list"]).stdout).unwrap();
    let row = listed.lines().find(|l| l.starts_with("portal")).unwrap();
    assert!(row.contains("acme"), "{listed}");

    let stored = app
        .services()
        .callers
        .list_callers(None, 10)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|c| c.name == "portal")
        .unwrap();
    assert_eq!(stored.tenant.as_deref(), Some("acme"));
    assert_eq!(
        stored.allowed_networks.entries(),
        ["10.0.0.0/8", "192.0.2.7/32"]
    );
    let in_30_days = SystemClock.now().as_millis() + 30 * 86_400_000;
    let expires = stored.expires_at.unwrap().as_millis();
    assert!((in_30_days - 60_000..=in_30_days).contains(&expires));

    let old = std::fs::read_to_string(&key_file).unwrap();
    let new_file = dir.path().join("portal-2.key");
    let rotated = latchkey(
        &url,
        &[
            "caller",
            "rotate",
            "portal",
            "--overlap",
            "2h",
            "--key-file",
            new_file.to_str().unwrap(),
        ],
    );
    assert!(rotated.status.success(), "{rotated:?}");
    let new = std::fs::read_to_string(&new_file).unwrap();
    assert_ne!(old.trim(), new.trim());
    let too_long = latchkey(&url, &["caller", "rotate", "portal", "--overlap", "25h"]);
    assert!(!too_long.status.success());
    let callers = &app.services().callers;
    let peer = Some("10.1.2.3".parse().unwrap());
    for key in [&old, &new] {
        let found = callers.caller_by_key(key.trim(), peer).await.unwrap();
        assert_eq!(found.map(|r| r.caller.name).as_deref(), Some("portal"));
    }
    let elsewhere = Some("198.51.100.1".parse().unwrap());
    assert!(callers
        .caller_by_key(new.trim(), elsewhere)
        .await
        .unwrap()
        .is_none());
}
