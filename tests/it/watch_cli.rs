//! `latchkey watch` as a script runs it: the built binary as a child
//! process against a real server, its stdout read line by line, killed and
//! started again; and the Dovecot cache flusher of docs/proxies.md, run as
//! it is written, against a real Dovecot (that test is ignored where
//! Dovecot is not installed, and fails under CI).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::account_service_client::AccountServiceClient;
use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::{
    AuditEventType, CreateCallerRequest, DisableAccountRequest, Protocol, ResumeAppPasswordRequest,
    SuspendAppPasswordRequest,
};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::common::bearer::Bearer;
use crate::common::harness::{Backend, TestServer};
use crate::common::link::FaultyLink;
use crate::common::support::*;
use crate::watch::{all_types, toggle, walk, Watcher};

/// How long a test waits for what it expects.
const PATIENCE: Duration = Duration::from_secs(20);

/// The fields of every line, in their documented order.
const FIELDS: [&str; 13] = [
    "type",
    "time",
    "account",
    "app_password",
    "actor",
    "caller",
    "client_ip",
    "protocol",
    "item_count",
    "detail",
    "name",
    "resume_token",
    "actor_tenant",
];

/// A running `latchkey watch`, its stdout lines as they come.
struct Watch {
    child: Option<Child>,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
}

/// How a `latchkey watch` ended.
struct Ended {
    status: ExitStatus,
    /// Lines it printed that were not read before it ended.
    rest: Vec<String>,
    stderr: String,
}

impl Watch {
    /// `latchkey watch --server URL --key-file KEY ARGS`.
    fn start(url: &str, key_file: &Path, args: &[&OsStr]) -> Self {
        Self::spawn(
            watch_command(url)
                .arg("--key-file")
                .arg(key_file)
                .args(args),
        )
    }

    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the latchkey binary runs");
        let (sender, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let collected = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 1024];
            while let Ok(read @ 1..) = pipe.read(&mut buffer) {
                collected
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        });
        Self {
            child: Some(child),
            lines,
            stderr,
        }
    }

    /// The next line, checked for the documented fields.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(PATIENCE, self.lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no line within the patience; stderr: {}", self.stderr()))
            .unwrap_or_else(|| panic!("stdout closed; stderr: {}", self.stderr()));
        parse(&line)
    }

    async fn take(&mut self, count: usize) -> Vec<Value> {
        let mut lines = Vec::with_capacity(count);
        for _ in 0..count {
            lines.push(self.next().await);
        }
        lines
    }

    /// Whether no line comes within `wait`.
    async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.lines.recv()).await.is_err()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until its stderr contains `text`.
    async fn said(&self, text: &str) {
        let stderr = self.stderr.clone();
        until(&format!("stderr says {text:?}"), PATIENCE, || {
            stderr.lock().unwrap().contains(text)
        })
        .await;
    }

    /// Sends it a signal (TERM, INT, KILL).
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id();
        send_signal(signal, &pid.to_string());
    }

    /// Waits for it to exit (it must, within the patience), and takes what
    /// it printed that was not read.
    async fn end(mut self) -> Ended {
        let mut child = self.child.take().unwrap();
        let status = tokio::time::timeout(
            PATIENCE,
            tokio::task::spawn_blocking(move || child.wait().unwrap()),
        )
        .await
        .unwrap_or_else(|_| panic!("it did not exit; stderr: {}", self.stderr()))
        .unwrap();
        // The reader sees the end of the pipe and closes the channel.
        let mut rest = Vec::new();
        while let Some(line) = self.lines.recv().await {
            rest.push(line);
        }
        // And the stderr reader its end.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ended {
            status,
            rest,
            stderr: self.stderr(),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn send_signal(signal: &str, target: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(target)
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {target}");
}

fn watch_command(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command.args(["watch", "--server", url]);
    command
}

fn url(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

/// The key of the server's caller with `role`, in a file of `dir`.
fn key_file(server: &TestServer, role: Role, dir: &Path) -> PathBuf {
    let path = dir.join(format!("{role}.key"));
    std::fs::write(&path, format!("{}\n", server.keys[&role])).unwrap();
    path
}

fn os(text: &str) -> &OsStr {
    OsStr::new(text)
}

/// A line as JSON, with exactly the documented fields in their order.
fn parse(line: &str) -> Value {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
    let object = value.as_object().unwrap();
    assert_eq!(object.len(), FIELDS.len(), "{line}");
    let mut at = 0;
    for field in FIELDS {
        let position = line[at..]
            .find(&format!("\"{field}\":"))
            .unwrap_or_else(|| panic!("{field} missing or out of order: {line}"));
        at += position;
    }
    value
}

/// The stored names of the event types, as the lines name them.
fn stored_names(types: &[AuditEventType]) -> Vec<String> {
    types
        .iter()
        .map(|t| {
            t.as_str_name()
                .strip_prefix("AUDIT_EVENT_TYPE_")
                .unwrap()
                .to_ascii_lowercase()
        })
        .collect()
}

fn types_of(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["type"].as_str().unwrap().to_owned())
        .collect()
}

fn names_of(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["name"].as_str().unwrap().to_owned())
        .collect()
}

fn read_token(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Every output of a run, for the secrets that must not be in it.
fn assert_no_key(ended: &Ended, key: &str) {
    let printed = format!("{}\n{}", ended.rest.join("\n"), ended.stderr);
    assert!(!printed.contains(key_secret_half(key)), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_prints_each_event_as_a_json_line_and_saves_its_place() {
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(&server, Role::Operator, dir.path());
    let token = dir.path().join("token");
    let mut all = Watch::start(
        &url(&server),
        &key,
        &[os("--token-file"), token.as_os_str()],
    );
    // Filters: types in any letter case, an account by a username that
    // normalizes; its place only in memory.
    let mut filtered = Watch::start(
        &url(&server),
        &key,
        &[
            os("--type"),
            os("APP_PASSWORD_REVOKED"),
            os("--type"),
            os("Account_Disabled"),
            os("--account"),
            os("Filtered"),
        ],
    );
    until("the first place is saved", PATIENCE, || token.exists()).await;
    filtered.said("watching").await;

    let mut expected = stored_names(&walk(&server, "walker").await);
    expected.extend(stored_names(&walk(&server, "filtered").await));
    let lines = all.take(expected.len()).await;
    assert_eq!(types_of(&lines), expected, "every event, in commit order");
    let names: HashSet<String> = names_of(&lines).into_iter().collect();
    assert_eq!(names.len(), lines.len(), "each event once");
    for line in &lines {
        let account = line["account"].as_str().unwrap();
        assert!(account == "walker" || account == "filtered", "{line}");
        assert_eq!(line["time"], "2026-01-01T00:00:00Z", "RFC 3339: {line}");
        assert!(line["name"].as_str().unwrap().starts_with("auditEvents/"));
        assert!(!line["resume_token"].as_str().unwrap().is_empty());
        assert!(!line["actor"].as_str().unwrap().is_empty());
        assert_eq!(line["caller"], Value::Null);
    }
    let issued = &lines[0];
    let revoked = &lines[5];
    assert_eq!(revoked["type"], "app_password_revoked");
    let app_password = revoked["app_password"].as_str().unwrap();
    assert!(app_password.starts_with("accounts/walker/appPasswords/"));
    assert_eq!(issued["app_password"], app_password);
    let first_use = &lines[1];
    assert_eq!(first_use["type"], "app_password_first_use");
    assert_eq!(first_use["protocol"], "imap");
    assert_eq!(first_use["client_ip"], "192.0.2.10");
    let disabled = &lines[6];
    assert_eq!(disabled["type"], "account_disabled");
    assert_eq!(disabled["app_password"], Value::Null);
    assert_eq!(disabled["detail"], "audit");
    let last = lines.last().unwrap()["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    until("the last line's token is saved", PATIENCE, || {
        read_token(&token) == last
    })
    .await;

    let only = filtered.take(2).await;
    assert_eq!(
        types_of(&only),
        ["app_password_revoked", "account_disabled"],
        "the types asked for, of the account asked for"
    );
    assert!(only.iter().all(|line| line["account"] == "filtered"));
    assert!(filtered.quiet_for(Duration::from_millis(300)).await);

    // SIGTERM and SIGINT: status 0, the token of every line saved.
    all.signal("TERM");
    filtered.signal("INT");
    let key_text = &server.keys[&Role::Operator];
    for watch in [all, filtered] {
        let ended = watch.end().await;
        assert_eq!(ended.status.code(), Some(0), "{}", ended.stderr);
        assert!(ended.rest.is_empty());
        assert_no_key(&ended, key_text);
    }
    assert_eq!(read_token(&token), last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_line_it_resumes_from_its_token_file_losing_nothing() {
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(&server, Role::Operator, dir.path());
    let token = dir.path().join("token");
    let args = [os("--token-file"), token.as_os_str()];

    let mut first = Watch::start(&url(&server), &key, &args);
    until("the first place is saved", PATIENCE, || token.exists()).await;
    let start = read_token(&token);
    // Killed after four lines, while the changes are still being made.
    let (walked, (mut run, ended)) = tokio::join!(walk(&server, "first"), async move {
        let run = first.take(4).await;
        first.signal("KILL");
        (run, first.end().await)
    });
    let mut expected = stored_names(&walked);
    assert_eq!(ended.status.code(), None, "killed");
    run.extend(ended.rest.iter().map(|line| parse(line)));

    // The file holds the token of the last line printed, or, killed between
    // printing a line and saving its token, of the line before it.
    let saved = read_token(&token);
    let tokens: Vec<String> = std::iter::once(start)
        .chain(
            run.iter()
                .map(|l| l["resume_token"].as_str().unwrap().to_owned()),
        )
        .collect();
    assert!(
        saved == tokens[tokens.len() - 1] || saved == tokens[tokens.len() - 2],
        "the file holds a token of neither of the last two lines"
    );

    // More changes while nothing watches; then the same command again.
    expected.extend(stored_names(&walk(&server, "second").await));
    let mut second = Watch::start(&url(&server), &key, &args);
    let mut seen: HashSet<String> = names_of(&run).into_iter().collect();
    let mut again = Vec::new();
    while seen.len() < expected.len() {
        let line = second.next().await;
        seen.insert(line["name"].as_str().unwrap().to_owned());
        again.push(line);
    }
    assert!(second.quiet_for(Duration::from_millis(300)).await);

    // Exactly what the contract promises, counted: every event, in order;
    // once each, but for at most the last line of the killed run, which
    // then opens the second.
    let repeated = run.len() + again.len() - expected.len();
    assert!(repeated <= 1, "{repeated} lines printed twice");
    if repeated == 1 {
        assert_eq!(
            again[0],
            *run.last().unwrap(),
            "only the last line comes again"
        );
        again.remove(0);
    }
    run.extend(again);
    assert_eq!(types_of(&run), expected);
    let distinct: HashSet<String> = names_of(&run).into_iter().collect();
    assert_eq!(distinct.len(), expected.len());
    second.signal("TERM");
    assert_eq!(second.end().await.status.code(), Some(0));
}

/// A signal stops it within a line, however long its backlog. The backlog
/// is 4,000 events, and each line's token is synced to a real disk (the
/// target directory, not a tmpfs: about 2 ms a line when this was written,
/// 8 s for the whole backlog). Signalled a few lines in, it stops with
/// status 0 having printed a small part of the backlog, its token file at
/// its last line; the next run starts at the line after it, nothing lost
/// and nothing repeated. Once with SIGTERM, once with SIGINT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stops_it_mid_backlog_at_its_last_line() {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 250; // 8 × 250 × 2 = 4,000 events
    const BEFORE_SIGNAL: usize = 20;
    let server = TestServer::start(Backend::Sqlite).await;
    for i in 0..WRITERS {
        issue_simple(&server, &format!("backlog{i}")).await;
    }
    let mut feed = Watcher::open(&server, Role::Operator, all_types()).await;
    let from = feed.token.clone();
    futures::future::join_all((0..WRITERS).map(|i| {
        let server = &server;
        async move { toggle(server, &format!("backlog{i}"), ROUNDS).await }
    }))
    .await;
    let total = WRITERS * ROUNDS * 2;
    let backlog: Vec<String> = feed.take(total).await.into_iter().map(|e| e.name).collect();

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let key = key_file(&server, Role::Operator, dir.path());
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{from}\n")).unwrap();
    let args = [os("--token-file"), token.as_os_str()];
    let mut printed = 0;
    for signal in ["TERM", "INT"] {
        let mut watch = Watch::start(&url(&server), &key, &args);
        let mut run = watch.take(BEFORE_SIGNAL).await;
        watch.signal(signal);
        let ended = watch.end().await;
        assert_eq!(
            ended.status.code(),
            Some(0),
            "SIG{signal}: {}",
            ended.stderr
        );
        run.extend(ended.rest.iter().map(|line| parse(line)));
        assert!(
            run.len() < total / 10,
            "SIG{signal} came after line {BEFORE_SIGNAL}, and it printed {} of {total}",
            run.len()
        );
        assert_eq!(
            read_token(&token),
            run.last().unwrap()["resume_token"].as_str().unwrap(),
            "SIG{signal}: the token file is at the last line printed"
        );
        assert_eq!(
            names_of(&run),
            backlog[printed..printed + run.len()],
            "SIG{signal}: the backlog's next lines, in order, none repeated"
        );
        printed += run.len();
    }
    let mut watch = Watch::start(&url(&server), &key, &args);
    assert_eq!(
        watch.next().await["name"],
        backlog[printed].as_str(),
        "the next run starts at the line after the last one printed"
    );
    watch.signal("TERM");
    assert_eq!(watch.end().await.status.code(), Some(0));
}

/// Links planted where a careless watcher would write its temporary file
/// (`.token.tmp`, `token.tmp`) redirect nothing: the file outside stays as
/// it was, the token file holds the token, readable by its owner alone,
/// and no temporary file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_planted_beside_the_token_file_redirect_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let key = key_file(&server, Role::Operator, elsewhere.path());
    let outside = elsewhere.path().join("outside");
    std::fs::write(&outside, "precious\n").unwrap();
    let planted = [dir.path().join(".token.tmp"), dir.path().join("token.tmp")];
    for link in &planted {
        std::os::unix::fs::symlink(&outside, link).unwrap();
    }
    let token = dir.path().join("token");
    let mut watch = Watch::start(
        &url(&server),
        &key,
        &[os("--token-file"), token.as_os_str()],
    );
    until("the first place is saved", PATIENCE, || token.exists()).await;
    let (_, secret) = issue_simple(&server, "planted").await;
    assert!(login(&server, "planted", &secret).await.authenticated);
    let lines = watch.take(2).await;
    assert_eq!(
        types_of(&lines),
        ["app_password_issued", "app_password_first_use"]
    );
    let last = lines[1]["resume_token"].as_str().unwrap().to_owned();
    until("the last line's token is saved", PATIENCE, || {
        read_token(&token) == last
    })
    .await;
    watch.signal("TERM");
    let ended = watch.end().await;
    assert_eq!(ended.status.code(), Some(0), "{}", ended.stderr);

    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious\n");
    let saved = std::fs::symlink_metadata(&token).unwrap();
    assert!(saved.file_type().is_file(), "a file of its own");
    assert_eq!(saved.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&token).unwrap(),
        format!("{last}\n")
    );
    for link in &planted {
        assert_eq!(std::fs::read_link(link).unwrap(), outside, "left as it was");
    }
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, [".token.tmp", "token", "token.tmp"], "nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_end_it_with_the_servers_message_and_never_show_the_key() {
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let operator = key_file(&server, Role::Operator, dir.path());
    let run = |key: &Path, args: Vec<&OsStr>| {
        let url = url(&server);
        let key = key.to_owned();
        let args: Vec<_> = args.into_iter().map(ToOwned::to_owned).collect();
        async move {
            let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            Watch::start(&url, &key, &args).end().await
        }
    };
    let mut runs = Vec::new();

    // A token file that holds no token: INVALID_ARGUMENT, and the file is
    // left as it was.
    let token = dir.path().join("token");
    std::fs::write(&token, "not-a-token\n").unwrap();
    let ended = run(&operator, vec![os("--token-file"), token.as_os_str()]).await;
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    assert!(ended.stderr.contains("InvalidArgument"), "{}", ended.stderr);
    assert!(
        ended.stderr.contains("resume_token: is not a resume token"),
        "{}",
        ended.stderr
    );
    assert_eq!(std::fs::read_to_string(&token).unwrap(), "not-a-token\n");
    runs.push((ended, Role::Operator));

    // A role that may not watch at all, and one asking for a type beyond
    // its reach.
    let issuer = key_file(&server, Role::Issuer, dir.path());
    let ended = run(&issuer, vec![]).await;
    assert_eq!(ended.status.code(), Some(1));
    assert!(
        ended.stderr.contains("PermissionDenied"),
        "{}",
        ended.stderr
    );
    runs.push((ended, Role::Issuer));
    let authenticator = key_file(&server, Role::Authenticator, dir.path());
    let ended = run(
        &authenticator,
        vec![os("--type"), os("app_password_issued")],
    )
    .await;
    assert_eq!(ended.status.code(), Some(1));
    assert!(
        ended
            .stderr
            .contains("app_password_issued is not a type this caller's role may watch"),
        "{}",
        ended.stderr
    );
    runs.push((ended, Role::Authenticator));

    // A key no caller has.
    let stranger_key = crate::cli::new_key();
    let stranger = dir.path().join("stranger.key");
    std::fs::write(&stranger, &stranger_key).unwrap();
    let ended = run(&stranger, vec![]).await;
    assert_eq!(ended.status.code(), Some(1));
    assert!(ended.stderr.contains("Unauthenticated"), "{}", ended.stderr);
    assert_no_key(&ended, &stranger_key);

    // A key file that holds no key: refused before connecting, its text
    // not repeated.
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, "not-a-key-but-secret-looking\n").unwrap();
    let ended = run(&wrong, vec![]).await;
    assert_eq!(ended.status.code(), Some(1));
    assert!(ended.stderr.contains("does not hold a latchkey caller key"));
    assert!(!ended.stderr.contains("secret-looking"), "{}", ended.stderr);

    // A place older than the retention: status 3, saying what to do.
    let old = crate::watch::Watcher::open(&server, Role::Operator, crate::watch::all_types())
        .await
        .token
        .clone();
    let (name, _) = issue_simple(&server, "pruned").await;
    revoke(&server, name).await;
    server.clock.advance(Duration::from_secs(2 * 86_400));
    server
        .services
        .audit
        .prune_audit_events(Duration::from_secs(86_400))
        .await
        .unwrap();
    // Refused from the place `saved`: its own status, saying `says`, what
    // to do, and the token file left as it was.
    let refused_from = async |saved: &str, code: i32, says: &str| {
        std::fs::write(&token, format!("{saved}\n")).unwrap();
        let ended = run(&operator, vec![os("--token-file"), token.as_os_str()]).await;
        assert_eq!(ended.status.code(), Some(code), "{}", ended.stderr);
        for said in [says, &format!("delete {}", token.display())] {
            assert!(ended.stderr.contains(said), "{said}: {}", ended.stderr);
        }
        let kept = std::fs::read_to_string(&token).unwrap();
        assert_eq!(
            kept,
            format!("{saved}\n"),
            "the token file is left as it was"
        );
        ended
    };
    runs.push((refused_from(&old, 3, "pruned").await, Role::Operator));

    // A place of a history the feed no longer has (a failover that lost
    // events): status 4, saying what happened; the token file is kept.
    let mut watcher =
        crate::watch::Watcher::open(&server, Role::Operator, crate::watch::all_types()).await;
    issue_simple(&server, "lost").await;
    watcher.next().await;
    let lost = crate::watch::reshaped_token(&watcher.token, Some(7), 0);
    runs.push((
        refused_from(&lost, 4, "history changed").await,
        Role::Operator,
    ));

    for (ended, role) in &runs {
        assert!(ended.rest.is_empty());
        assert_no_key(ended, &server.keys[role]);
    }
}

/// A cut connection: it says so, waits, reconnects from its place and
/// prints what happened meanwhile, once. The key comes from the
/// environment here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_is_resumed_from_the_last_token() {
    let server = TestServer::start(Backend::Sqlite).await;
    let link = FaultyLink::to(server.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let mut watch = Watch::spawn(
        watch_command(&format!("http://{}", link.addr))
            .arg("--token-file")
            .arg(&token)
            .env("LATCHKEY_KEY", &server.keys[&Role::Operator]),
    );
    until("the first place is saved", PATIENCE, || token.exists()).await;
    let (name, _) = issue_simple(&server, "cut").await;
    assert_eq!(watch.next().await["type"], "app_password_issued");

    link.down();
    revoke(&server, name).await;
    watch.said("reconnecting in").await;
    link.restore();
    let revoked = watch.next().await;
    assert_eq!(revoked["type"], "app_password_revoked");
    assert_eq!(revoked["account"], "cut");
    issue_simple(&server, "after").await;
    assert_eq!(watch.next().await["account"], "after");
    assert!(
        watch.quiet_for(Duration::from_millis(300)).await,
        "nothing twice"
    );
    watch.signal("INT");
    let ended = watch.end().await;
    assert_eq!(ended.status.code(), Some(0), "{}", ended.stderr);
    assert!(
        ended.stderr.matches("watching").count() >= 2,
        "{}",
        ended.stderr
    );
    assert_no_key(&ended, &server.keys[&Role::Operator]);
}

/// Over TLS, trusting a CA file, as a caller named by its client
/// certificate, with no key at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_client_certificate_stands_in_for_the_key() {
    let pki = crate::tls::Pki::new();
    let tls = pki.server_config();
    let ca_file = tls.client_ca_file.clone().unwrap();
    let server = TestServer::start_with(Backend::Sqlite, |config| config.tls = Some(tls)).await;
    let operator = pki.channel_to(server.addr, None).await;
    let bearer = Bearer::new(&server.keys[&Role::Operator]).unwrap();
    latchkey::grpc::pb::caller_service_client::CallerServiceClient::with_interceptor(
        operator.clone(),
        bearer.clone(),
    )
    .create_caller(CreateCallerRequest {
        name: "cache-flusher".into(),
        role: latchkey::grpc::pb::Role::Authenticator as i32,
        tls_identity: "flusher.internal".into(),
        tenant: String::new(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki.issue("flusher", &["flusher.internal"]);
    let cert_file = dir.path().join("flusher.pem");
    let key_file = dir.path().join("flusher.key");
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();

    let mut watch = Watch::spawn(
        watch_command(&format!("https://127.0.0.1:{}", server.addr.port()))
            .arg("--ca-file")
            .arg(&ca_file)
            .arg("--client-cert")
            .arg(&cert_file)
            .arg("--client-cert-key")
            .arg(&key_file)
            .env_remove("LATCHKEY_KEY"),
    );
    watch.said("watching").await;
    let mut app_passwords = AppPasswordServiceClient::with_interceptor(operator, bearer);
    let issued = app_passwords
        .issue_app_password(issue_request("tls", "Phone", &[Protocol::Imap]))
        .await
        .unwrap()
        .into_inner();
    let name = issued.app_password.unwrap().name;
    app_passwords
        .revoke_app_password(latchkey::grpc::pb::RevokeAppPasswordRequest {
            name: name.clone(),
            reason: "lost".into(),
        })
        .await
        .unwrap();
    let line = watch.next().await;
    assert_eq!(
        line["type"], "app_password_revoked",
        "an authenticator's reach"
    );
    assert_eq!(line["app_password"], name.as_str());
    assert_eq!(
        line["detail"], "",
        "a proxy is not told the issuer's reason"
    );
    watch.signal("TERM");
    assert_eq!(watch.end().await.status.code(), Some(0));
}

const DOVEADM: &str = "/usr/bin/doveadm";

/// The flusher of docs/proxies.md, as the docs show it and the unit runs
/// it. With Dovecot installed (always under CI): a real Dovecot with the
/// docs' cache settings and Lua passdb, where a revoked password signs in
/// from the cache until the flusher flushes its user, and a spelling of a
/// username that latchkey folds and Dovecot does not (fullwidth) is never
/// cached, so nothing survives the flush. Ignored where Dovecot or jq is
/// missing (see build.rs), failed under CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(latchkey_test_dovecot),
    ignore = "needs Dovecot, doveadm, its Lua passdb, lua-socket, jq and systemd-analyze"
)]
async fn the_dovecot_cache_flusher_flushes_each_user_latchkey_changes() {
    use crate::proxies::{self, IMAP};
    use std::os::unix::fs::PermissionsExt;

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = repo.join("contrib/dovecot/latchkey-flush-auth-cache");
    let script_text = std::fs::read_to_string(&script).unwrap();
    let docs = std::fs::read_to_string(repo.join("docs/proxies.md")).unwrap();
    assert!(
        docs.contains(&format!("```bash\n{script_text}```")),
        "docs/proxies.md shows the script as it is"
    );
    let unit =
        std::fs::read_to_string(repo.join("contrib/systemd/latchkey-flush-auth-cache.service"))
            .unwrap();
    assert!(
        docs.contains(&format!("```ini\n{unit}```")),
        "docs/proxies.md shows the unit as it is"
    );
    assert!(unit.contains("ExecStart=/usr/local/bin/latchkey-flush-auth-cache\n"));
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "{syntax:?}");
    crate::systemd::verify_unit(
        "latchkey-flush-auth-cache.service",
        &[(
            "/usr/local/bin/latchkey-flush-auth-cache",
            script.to_str().unwrap(),
        )],
    );
    // Ignored where these are missing (build.rs), failed under CI.
    assert!(
        crate::common::programs::find("jq", "apt-get install jq").is_some()
            && crate::common::programs::installed(
                &[
                    proxies::DOVECOT,
                    DOVEADM,
                    proxies::DOVECOT_LUA,
                    proxies::LUA_SOCKET,
                ],
                "dovecot-imapd, dovecot-auth-lua and lua-socket",
            ),
        "the flusher's test needs jq and Dovecot"
    );

    let server = TestServer::start(Backend::Sqlite).await;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dovecot_dir = proxies::program_dir(root.path(), "dovecot");
    let key_file = dovecot_dir.join("latchkey.key");
    std::fs::write(
        &key_file,
        format!("{}\n", server.keys[&Role::Authenticator]),
    )
    .unwrap();
    let conf = dovecot_dir.join("dovecot.conf");

    // `doveadm` on PATH: records its arguments, then asks the real one
    // (about this test's Dovecot).
    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let flushes = root.path().join("flushes");
    let then = format!("exec {DOVEADM} -c {} \"$@\"", conf.display());
    let doveadm = bin.join("doveadm");
    std::fs::write(
        &doveadm,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\n{then}\n",
            flushes.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&doveadm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let recorded = || -> Vec<String> {
        std::fs::read_to_string(&flushes)
            .unwrap_or_default()
            .lines()
            .map(ToOwned::to_owned)
            .collect()
    };

    let imap = crate::common::processes::free_port();
    // The docs' cache settings and passdb, with this test's paths.
    let cached = docs
        .split("```\n")
        .find(|block| block.starts_with("auth_cache_size"))
        .expect("docs/proxies.md shows the cache settings")
        .replace(
            "/etc/dovecot/latchkey.lua",
            &dovecot_dir.join("latchkey.lua").display().to_string(),
        );
    std::fs::write(
        dovecot_dir.join("latchkey.lua"),
        proxies::lua_passdb(server.adapters_addr, &key_file),
    )
    .unwrap();
    // IMAP alone: dovecot-pop3d need not be installed for this test.
    std::fs::write(
        &conf,
        proxies::dovecot_config(
            &dovecot_dir,
            imap,
            crate::common::processes::free_port(),
            &cached,
        )
        .replace("protocols = imap pop3", "protocols = imap"),
    )
    .unwrap();
    let mut dovecot = crate::common::processes::Group::spawn(
        "dovecot",
        Command::new(proxies::DOVECOT).args(["-F", "-c"]).arg(&conf),
        &dovecot_dir,
    );
    dovecot.listening(imap).await;
    let sign_in = |user: &'static str, password: String| async move {
        proxies::python(IMAP, vec![imap.to_string(), user.to_owned(), password]).await
    };

    // Alice's password is revoked before the flusher runs: Dovecot's cache
    // goes on letting her in (the problem this solves).
    let (alice, alice_secret) = issue_simple(&server, "alice").await;
    assert_eq!(sign_in("alice", alice_secret.clone()).await, "ok");
    revoke(&server, alice).await;
    assert_eq!(
        sign_in("alice", alice_secret.clone()).await,
        "ok",
        "served from Dovecot's cache: is the cache on?"
    );

    // The flusher, started as systemd would, in a process group of its own.
    let token = root.path().join("token");
    let latchkey_dir = Path::new(env!("CARGO_BIN_EXE_latchkey")).parent().unwrap();
    let path = std::env::join_paths(
        [bin.clone(), latchkey_dir.to_owned()]
            .into_iter()
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let log = std::fs::File::create(root.path().join("flusher.log")).unwrap();
    let mut flusher = Command::new(&script);
    flusher
        .env("PATH", path)
        .env("LATCHKEY_SERVER_URL", url(&server))
        .env("LATCHKEY_KEY_FILE", &key_file)
        .env("TOKEN_FILE", &token)
        .env_remove("LATCHKEY_KEY")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut flusher = crate::common::processes::Group::start("flusher", &mut flusher);
    let group = format!("-{}", flusher.leader().id());
    let flusher_log = || std::fs::read_to_string(root.path().join("flusher.log")).unwrap();
    until("the flusher watches", PATIENCE, || token.exists()).await;
    assert_eq!(recorded(), ["auth cache flush"], "the whole cache, first");
    let refused = sign_in("alice", alice_secret.clone()).await;
    assert!(refused.starts_with("refused:"), "{refused}");

    // Bob's password is suspended, then resumed; Carol's account disabled.
    let (bob, bob_secret) = issue_simple(&server, "bob").await;
    assert_eq!(sign_in("bob", bob_secret.clone()).await, "ok");
    let mut app_passwords = server.app_passwords();
    app_passwords
        .suspend_app_password(SuspendAppPasswordRequest {
            name: bob.clone(),
            reason: "lost phone?".into(),
        })
        .await
        .unwrap();
    until("bob is flushed", PATIENCE, || recorded().len() == 2).await;
    let refused = sign_in("bob", bob_secret.clone()).await;
    assert!(refused.starts_with("refused:"), "{refused}");
    app_passwords
        .resume_app_password(ResumeAppPasswordRequest { name: bob })
        .await
        .unwrap();
    until("bob is flushed again", PATIENCE, || recorded().len() == 3).await;
    assert_eq!(sign_in("bob", bob_secret).await, "ok");
    let (_, carol_secret) = issue_simple(&server, "carol").await;
    assert_eq!(sign_in("carol", carol_secret.clone()).await, "ok");
    AccountServiceClient::new(server.as_role(Role::Operator))
        .disable_account(DisableAccountRequest {
            name: "accounts/carol".into(),
            reason: "left".into(),
        })
        .await
        .unwrap();
    until("carol is flushed", PATIENCE, || recorded().len() == 4).await;
    let refused = sign_in("carol", carol_secret).await;
    assert!(refused.starts_with("refused:"), "{refused}");

    // Dave signs in with a spelling latchkey folds and Dovecot does not
    // (fullwidth letters; the docs' auth_username_chars lets them in, and
    // auth_username_format lowercases ASCII alone): Dovecot would cache it
    // under a name the flusher never flushes. It is refused before latchkey
    // decides anything, so no cache entry exists under it.
    let (dave, dave_secret) = issue_simple(&server, "dave@example.com").await;
    let fullwidth = "\u{ff44}\u{ff41}\u{ff56}\u{ff45}@example.com";
    // latchkey's answers to the Dovecot adapter, by result, from its
    // metrics: every login it decided, from argon2, its caches or memory.
    let decided = || async {
        let (_, body) = crate::metrics::scrape(&server).await;
        let mut answers = std::collections::BTreeMap::new();
        for line in body.lines() {
            let Some(labels) =
                line.strip_prefix("latchkey_authentications_total{adapter=\"dovecot\",")
            else {
                continue;
            };
            let result = labels.split("result=\"").nth(1).unwrap();
            let result = result.split('"').next().unwrap().to_owned();
            let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            *answers.entry(result).or_insert(0.0) += count;
        }
        answers
    };
    let more = |before: &std::collections::BTreeMap<String, f64>,
                after: &std::collections::BTreeMap<String, f64>| {
        after
            .iter()
            .filter_map(|(result, count)| {
                let grew = count - before.get(result).copied().unwrap_or(0.0);
                (grew > 0.0).then(|| format!("{result} {grew}"))
            })
            .collect::<Vec<_>>()
    };
    let dovecot_log =
        || std::fs::read_to_string(dovecot_dir.join("dovecot.log")).unwrap_or_default();
    let spelling_refusals = || {
        dovecot_log()
            .matches("the username is not in latchkey's spelling")
            .count()
    };
    let before = decided().await;
    let mut answers = Vec::new();
    for user in [
        fullwidth,
        "dave@example.com",
        "dave@example.com",
        "Dave@Example.COM",
        fullwidth,
    ] {
        let answer = sign_in(user, dave_secret.clone()).await;
        answers.push(if answer == "ok" { "ok" } else { "refused" });
    }
    assert_eq!(answers, ["refused", "ok", "ok", "ok", "refused"]);
    assert_eq!(
        more(&before, &decided().await),
        ["success 1"],
        "latchkey decided one login: the rest were Dovecot's cache \
         (the canonical spelling, and ASCII capitals lowercased by \
         auth_username_format) or refused before deciding (fullwidth)"
    );
    until(
        "Dovecot logged why, once per fullwidth try",
        PATIENCE,
        || spelling_refusals() == 2,
    )
    .await;
    revoke(&server, dave).await;
    until("dave is flushed", PATIENCE, || recorded().len() == 5).await;
    // Every spelling refused right after the flush.
    let before = decided().await;
    for user in [fullwidth, "dave@example.com", "Dave@Example.COM"] {
        let answer = sign_in(user, dave_secret.clone()).await;
        assert!(answer.starts_with("refused:"), "{user}: {answer}");
    }
    assert_eq!(
        more(&before, &decided().await),
        ["revoked 2"],
        "latchkey refused both ASCII spellings (no cache entry left), \
         and never saw the fullwidth one"
    );
    until("Dovecot logged the third fullwidth try", PATIENCE, || {
        spelling_refusals() == 3
    })
    .await;
    assert!(
        !dovecot_log().contains(&dave_secret),
        "no secret in Dovecot's log"
    );

    assert_eq!(
        recorded(),
        [
            "auth cache flush",
            "auth cache flush -- bob",
            "auth cache flush -- bob",
            "auth cache flush -- carol",
            "auth cache flush -- dave@example.com",
        ],
        "one flush per event, of its user; {}",
        flusher_log()
    );

    // Stopped as systemd stops it: every process of the group signalled.
    send_signal("TERM", &group);
    let status = flusher.exited(PATIENCE).await.expect("the flusher stops");
    let said = flusher_log();
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(!read_token(&token).is_empty());
    assert!(!said.contains(key_secret_half(&server.keys[&Role::Authenticator])));
    drop(dovecot);
}
