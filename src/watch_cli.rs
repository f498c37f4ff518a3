//! `latchkey watch`: a client of the change feed (AuditService.WatchEvents)
//! for scripts. It prints each event as one JSON line on stdout, keeps its
//! place in a token file, and reconnects by itself.
//!
//! The contract, which `docs/proxies.md` and the command's help repeat:
//! a line is written and flushed to stdout *before* the token after it is
//! saved (atomically: a temporary file in the same directory, renamed over
//! the old one). A watcher killed at any moment therefore resumes, from
//! its token file, at the first line it had not finished printing, or at
//! the one after: nothing is lost, and at most the last line printed
//! before the kill is printed again. Consumers that must not act twice
//! dedupe on `name`.
//!
//! This is a client: it reaches the server over gRPC like any other, with
//! a caller key (from a file or the environment, never from the command
//! line, where `ps` would show it) or a client certificate.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::Args;
use serde::Serialize;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;
use zeroize::Zeroizing;

use crate::domain::audit::EventType;
use crate::domain::callers::key::CallerKey;
use crate::domain::shared::backoff::Backoff;
use crate::domain::shared::error::Reason;
use crate::domain::shared::username::Username;
use crate::grpc::convert::{event_type_from_pb, event_type_to_pb, parse_login_protocol};
use crate::grpc::names;
use crate::grpc::pb::audit_service_client::AuditServiceClient;
use crate::grpc::pb::{AuditEvent, WatchEventsRequest, WatchEventsResponse};

/// The environment variable that may hold the caller key itself.
pub const KEY_ENV: &str = "LATCHKEY_KEY";

/// Exit status: stopped by SIGINT or SIGTERM, the token saved.
pub const EXIT_STOPPED: u8 = 0;
/// Exit status: an error (options, files, stdout, or a refusal).
pub const EXIT_ERROR: u8 = 1;
/// Exit status: the token file's place was pruned (WATCH_TOKEN_EXPIRED).
pub const EXIT_TOKEN_EXPIRED: u8 = 3;
/// Exit status: the feed's history changed under the watcher, after a
/// failover that lost events (FEED_RESYNC_REQUIRED).
pub const EXIT_RESYNC_REQUIRED: u8 = 4;

/// The first wait before reconnecting, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Print the change feed (AuditService.WatchEvents) as JSON lines, for scripts.
///
/// Connects to a running latchkey server and prints each event, as it is
/// committed, as one JSON object per line on stdout (flushed per line);
/// logs and errors go to stderr. Each line has these fields, always all of
/// them, in this order:
///
///   type          the event type's stored name, e.g. "app_password_revoked"
///                 (null for a type this build does not know)
///   time          when it happened, RFC 3339 in UTC
///   account       the username concerned, or null
///   app_password  the app password concerned,
///                 "accounts/{username}/appPasswords/{id}", or null
///   actor         the caller that made the change ("housekeeping", "cli", …)
///   caller        the caller concerned, for caller events (its name), or null
///   client_ip     the client's address, for events of a login, or null
///   protocol      the login's protocol (imap, pop3, smtp, caldav, carddav,
///                 eas, ews, mapi), or null
///   item_count    how many a bulk change affected (0 when it counts nothing)
///   detail        a reason or other detail ("" when none)
///   name          the event's own name, "auditEvents/{id}": unique
///   resume_token  the place just after this event
///   actor_tenant  the tenant the actor is scoped to (its name), or null
///
/// What a caller sees depends on its role: an authenticator the events
/// that make a cached login result stale, a notifier every event about
/// users' app passwords and accounts, an operator everything.
///
/// Delivery is at least once, with --token-file: each line is written and
/// flushed to stdout before the token after it is saved (a temporary file
/// in the same directory, mode 0600, created new under a random name and
/// never through a symbolic link, renamed over the old one). Killed at any moment
/// and started again with the same file, it goes on from where it was:
/// nothing is lost, and at most the last line printed before the kill is
/// printed again; dedupe on `name` if acting twice matters. (What a
/// consumer had read but not acted on when it was killed with it is the
/// consumer's to recover: docs/proxies.md shows how.) Without a token file
/// it starts at the newest event and keeps its place only in memory.
///
/// It reconnects by itself, from its place, when the server is unavailable
/// or the connection fails (and when it has too many watchers), waiting
/// 0.1 s, then twice as long each time up to 30 s.
///
/// Exit status: 0 when stopped by SIGINT or SIGTERM, after at most the
/// line it was printing, even in the middle of a backlog (the token of
/// every line printed is saved); 1 on an error, including a refusal by the
/// server (INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED, …, with
/// its message); 2 on a usage error; 3 when the token file's place is
/// older than the audit retention (FAILED_PRECONDITION,
/// WATCH_TOKEN_EXPIRED): events after it are gone; 4 when the feed's
/// history changed under it (FEED_RESYNC_REQUIRED: the database failed
/// over to a standby that had not received every event, so lines already
/// printed may name events that no longer exist, and others took their
/// places). On 3 and 4 the token file is left as it was (a restart with it
/// is refused the same way): resync from the source of truth, delete the
/// token file and start again.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct WatchArgs {
    /// The server's gRPC address: http://HOST:PORT, or https://HOST:PORT
    /// (trusting --ca-file, or else the system's certificate store).
    #[arg(
        long,
        env = "LATCHKEY_SERVER_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// A file holding the caller key (one line; never pass a key on the
    /// command line, where `ps` shows it). Without it, the key is read from
    /// the LATCHKEY_KEY environment variable.
    #[arg(long, env = "LATCHKEY_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// For https://: the CA certificate (PEM) to trust instead of the
    /// system's store.
    #[arg(long, env = "LATCHKEY_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// For https://: a client certificate (PEM) naming a caller's TLS
    /// identity, to authenticate with instead of a key.
    #[arg(long, value_name = "FILE", requires = "client_cert_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_cert_key: Option<PathBuf>,
    /// Only events of this type (repeatable; any letter case); without it,
    /// every type the caller's role may watch.
    #[arg(
        long = "type",
        value_name = "TYPE",
        ignore_case = true,
        value_parser = event_type_names(),
    )]
    pub types: Vec<String>,
    /// Only events of this account (a username).
    #[arg(long, value_name = "USERNAME", value_parser = parse_username)]
    pub account: Option<Username>,
    /// Resume from the token in this file, if it exists and is not empty,
    /// and save the token of every line printed into it (atomically).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// The names `--type` accepts: the stored names of the types in the feed.
fn event_type_names() -> PossibleValuesParser {
    PossibleValuesParser::new(
        EventType::ALL
            .into_iter()
            .filter(|t| t.in_feed())
            .map(EventType::as_str),
    )
}

fn parse_username(value: &str) -> Result<Username, String> {
    Username::parse(value).map_err(|why| format!("the username {why}"))
}

/// The exit status for an error `main` reports: a watch failure's own, 1
/// for anything else.
pub fn exit_status(error: &(dyn std::error::Error + 'static)) -> u8 {
    error
        .downcast_ref::<Failure>()
        .map_or(EXIT_ERROR, |failure| failure.code)
}

/// Why `latchkey watch` ends with a non-zero status, and what to do.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn error(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_ERROR,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// How one connection ended.
enum Ended {
    /// Try again from the last token, after a while.
    Retry(String),
    /// A signal came: every line printed has its token saved.
    Stopped,
    Fatal(Failure),
}

/// Runs `latchkey watch` until it is stopped (`Ok`) or fails.
pub async fn run(args: WatchArgs) -> Result<(), Failure> {
    let stop = Stop::listen().await;
    if stop.requested() {
        return Ok(());
    }
    let mut watcher = Watcher::new(args)?;
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    loop {
        let ended = tokio::select! {
            () = stop.wait() => return Ok(()),
            ended = watcher.follow(&mut backoff, &stop) => ended,
        };
        let why = match ended {
            Ended::Retry(why) => why,
            Ended::Stopped => return Ok(()),
            Ended::Fatal(failure) => return Err(failure),
        };
        let wait = backoff.next_wait();
        eprintln!(
            "latchkey watch: {why}; reconnecting in {:.1} s",
            wait.as_secs_f64()
        );
        tokio::select! {
            () = stop.wait() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Whether SIGINT or SIGTERM has come.
///
/// A task of its own listens, so the watcher sees a signal between any two
/// lines however long its backlog: a stream with thousands of events
/// waiting is always ready, and the loop that drains it (one fsync per
/// line) would never give way to a `select!` on the signal.
#[derive(Clone)]
struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// Listens for SIGINT and SIGTERM from the start: the handlers are
    /// installed before this returns, so a signal never kills the watcher
    /// half-way instead of stopping it.
    async fn listen() -> Self {
        let (sender, receiver) = tokio::sync::watch::channel(false);
        let mut signal = Box::pin(crate::app::shutdown_signal());
        let came = tokio::select! {
            biased;
            () = &mut signal => true,
            () = std::future::ready(()) => false,
        };
        if came {
            sender.send_replace(true);
        } else {
            tokio::spawn(async move {
                signal.await;
                sender.send_replace(true);
            });
        }
        Self(receiver)
    }

    fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once a signal has come (or nothing can send one any more).
    async fn wait(&self) {
        let mut receiver = self.0.clone();
        let _ = receiver.wait_for(|came| *came).await;
    }
}

/// Everything one connection needs, and the place reached so far.
struct Watcher {
    server: String,
    endpoint: Endpoint,
    authorization: Option<AsciiMetadataValue>,
    request: WatchEventsRequest,
    token: String,
    token_file: Option<TokenFile>,
}

impl Watcher {
    fn new(args: WatchArgs) -> Result<Self, Failure> {
        let endpoint = endpoint(&args)?;
        let authorization = authorization(&args)?;
        let token_file = args.token_file.map(TokenFile::new);
        let token = match &token_file {
            Some(file) => file.load()?,
            None => String::new(),
        };
        let mut types: Vec<i32> = args
            .types
            .iter()
            .filter_map(|name| EventType::parse(&name.to_ascii_lowercase()))
            .map(|t| event_type_to_pb(t) as i32)
            .collect();
        types.sort_unstable();
        types.dedup();
        Ok(Self {
            server: args.server,
            endpoint,
            authorization,
            request: WatchEventsRequest {
                types,
                account: args
                    .account
                    .as_ref()
                    .map(names::account)
                    .unwrap_or_default(),
                resume_token: String::new(),
            },
            token,
            token_file,
        })
    }

    /// One connection: streams until it ends, printing each event.
    async fn follow(&mut self, backoff: &mut Backoff, stop: &Stop) -> Ended {
        let channel = match self.endpoint.connect().await {
            Ok(channel) => channel,
            Err(error) => {
                return Ended::Retry(format!(
                    "cannot connect to {}: {}",
                    self.server,
                    Chain(&error)
                ))
            }
        };
        let authorization = self.authorization.clone();
        let mut client =
            AuditServiceClient::with_interceptor(channel, move |mut request: Request<()>| {
                if let Some(value) = &authorization {
                    request
                        .metadata_mut()
                        .insert("authorization", value.clone());
                }
                Ok(request)
            });
        let request = WatchEventsRequest {
            resume_token: self.token.clone(),
            ..self.request.clone()
        };
        let mut stream = match client.watch_events(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return self.ended(&status),
        };
        let mut first = true;
        loop {
            match stream.message().await {
                // Checked before each line, not only while the stream is
                // idle: a signal stops a drain within one line.
                Ok(Some(_)) if stop.requested() => return Ended::Stopped,
                Ok(Some(message)) => {
                    if first {
                        first = false;
                        backoff.reset();
                        let from = if self.token.is_empty() {
                            "from now"
                        } else {
                            "from its place"
                        };
                        eprintln!("latchkey watch: watching {} {from}", self.server);
                    }
                    if let Err(failure) = self.deliver(message) {
                        return Ended::Fatal(failure);
                    }
                }
                Ok(None) => return Ended::Retry("the server ended the stream".to_owned()),
                Err(status) => return self.ended(&status),
            }
        }
    }

    /// Prints the message's event, if it has one, then keeps its token.
    /// No await in here, and the stop is looked at only before it: a
    /// signal never comes between the line and its token.
    fn deliver(&mut self, message: WatchEventsResponse) -> Result<(), Failure> {
        if let Some(event) = &message.audit_event {
            let line = event_line(event, &message.resume_token)?;
            let mut stdout = io::stdout().lock();
            stdout
                .write_all(line.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|error| Failure::error(format!("cannot write to stdout: {error}")))?;
        }
        if message.resume_token.is_empty() || message.resume_token == self.token {
            return Ok(());
        }
        if let Some(file) = &self.token_file {
            file.save(&message.resume_token)?;
        }
        self.token = message.resume_token;
        Ok(())
    }

    /// What a status that ended the stream means for the watcher.
    fn ended(&self, status: &Status) -> Ended {
        let message = status.message();
        match status.code() {
            Code::FailedPrecondition => {
                let file = self
                    .token_file
                    .as_ref()
                    .map_or_else(|| "the token".to_owned(), |f| f.path.display().to_string());
                let reason = reason_of(status);
                let (code, what) = match reason.as_deref() {
                    Some(r) if r == Reason::WatchTokenExpired.as_str() => (
                        EXIT_TOKEN_EXPIRED,
                        format!("the place saved in {file} is gone"),
                    ),
                    Some(r) if r == Reason::FeedResyncRequired.as_str() => (
                        EXIT_RESYNC_REQUIRED,
                        format!(
                            "the feed's history changed (a database failover lost events): \
                             lines already printed may name events that no longer exist, \
                             and the place saved in {file} is not in the feed any more"
                        ),
                    ),
                    _ => {
                        return Ended::Fatal(Failure::error(format!(
                            "the server refused ({:?}): {message}",
                            status.code()
                        )))
                    }
                };
                Ended::Fatal(Failure {
                    code,
                    message: format!(
                        "{what}: {message}. Resync from the source of truth, delete {file}, \
                         and start again"
                    ),
                })
            }
            Code::InvalidArgument
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::NotFound
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::Unimplemented => Ended::Fatal(Failure::error(format!(
                "the server refused ({:?}): {message}",
                status.code()
            ))),
            code => Ended::Retry(format!("{code:?}: {message}{}", Source(status))),
        }
    }
}

/// The `google.rpc.ErrorInfo` reason of a status, if it has one.
fn reason_of(status: &Status) -> Option<String> {
    Some(status.get_error_details().error_info()?.reason.clone())
}

fn endpoint(args: &WatchArgs) -> Result<Endpoint, Failure> {
    let bad = |why: String| Failure::error(format!("--server {}: {why}", args.server));
    let uri: http::Uri = args
        .server
        .parse()
        .map_err(|error| bad(format!("{error}")))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad("must start with http:// or https://".to_owned())),
    };
    if !tls && (args.ca_file.is_some() || args.client_cert.is_some()) {
        return Err(bad(
            "--ca-file and --client-cert need an https:// server".to_owned()
        ));
    }
    let mut endpoint = Endpoint::from(uri)
        .connect_timeout(Duration::from_secs(10))
        .tcp_keepalive(Some(Duration::from_secs(60)))
        // A stream can be quiet for hours: pings find a dead server.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if tls {
        let mut config = ClientTlsConfig::new();
        config = match &args.ca_file {
            Some(path) => config.ca_certificate(Certificate::from_pem(read(path, "--ca-file")?)),
            None => config.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_cert_key) {
            let key = Zeroizing::new(read(key, "--client-cert-key")?);
            config = config.identity(Identity::from_pem(
                read(cert, "--client-cert")?,
                key.as_slice(),
            ));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|error| bad(Chain(&error).to_string()))?;
    }
    Ok(endpoint)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|error| Failure::error(format!("{what} {}: {error}", path.display())))
}

/// The `authorization` header: the key from --key-file, or else from
/// LATCHKEY_KEY; none if a client certificate stands in for it. The key is
/// never put in a message.
fn authorization(args: &WatchArgs) -> Result<Option<AsciiMetadataValue>, Failure> {
    let (text, source) = match &args.key_file {
        Some(path) => (
            Zeroizing::new(String::from_utf8_lossy(&read(path, "--key-file")?).into_owned()),
            path.display().to_string(),
        ),
        None => match std::env::var(KEY_ENV) {
            Ok(value) => (Zeroizing::new(value), KEY_ENV.to_owned()),
            Err(_) if args.client_cert.is_some() => return Ok(None),
            Err(_) => {
                return Err(Failure::error(format!(
                    "no caller key: give --key-file FILE, set {KEY_ENV}, or use --client-cert"
                )))
            }
        },
    };
    let key = CallerKey::parse(text.trim()).ok_or_else(|| {
        Failure::error(format!(
            "{source} does not hold a latchkey caller key (latchkey_…)"
        ))
    })?;
    let header = Zeroizing::new(format!("Bearer {}", key.expose()));
    let mut value = AsciiMetadataValue::try_from(header.as_str())
        .map_err(|_| Failure::error(format!("{source}: the key is not a valid header")))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// One event as its JSON line (with the newline).
fn event_line(event: &AuditEvent, resume_token: &str) -> Result<String, Failure> {
    let some = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    let line = EventLine {
        event_type: event_type_from_pb(event.r#type).map(EventType::as_str),
        time: event.occur_time.as_ref().map(ToString::to_string),
        account: some(&event.account).map(|account| {
            names::parse_account(&account).map_or(account, |username| username.to_string())
        }),
        app_password: some(&event.app_password),
        actor: &event.actor,
        caller: some(&event.caller).map(|caller| names::parse_caller(&caller).unwrap_or(caller)),
        client_ip: some(&event.client_ip),
        protocol: parse_login_protocol(event.protocol)
            .ok()
            .map(|protocol| protocol.as_str()),
        item_count: event.item_count,
        detail: &event.detail,
        name: &event.name,
        resume_token,
        actor_tenant: some(&event.actor_tenant)
            .map(|tenant| names::parse_tenant(&tenant).unwrap_or(tenant)),
    };
    let mut text = serde_json::to_string(&line)
        .map_err(|error| Failure::error(format!("cannot render an event: {error}")))?;
    text.push('\n');
    Ok(text)
}

/// A line of output; its fields are the documented ones, in their order.
#[derive(Serialize)]
struct EventLine<'a> {
    #[serde(rename = "type")]
    event_type: Option<&'static str>,
    time: Option<String>,
    account: Option<String>,
    app_password: Option<String>,
    actor: &'a str,
    caller: Option<String>,
    client_ip: Option<String>,
    protocol: Option<&'static str>,
    item_count: i64,
    detail: &'a str,
    name: &'a str,
    resume_token: &'a str,
    actor_tenant: Option<String>,
}

/// Where the place is kept between runs.
struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The saved token; empty if the file does not exist or is empty.
    fn load(&self) -> Result<String, Failure> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text.trim().to_owned()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(error) => Err(Failure::error(format!(
                "cannot read the token file {}: {error}",
                self.path.display()
            ))),
        }
    }

    /// Replaces the file's token: written to a temporary file in the same
    /// directory, synced, and renamed over it, so the file always holds a
    /// whole token, the old one or the new one.
    fn save(&self, token: &str) -> Result<(), Failure> {
        self.write(token).map_err(|error| {
            Failure::error(format!(
                "cannot save the token to {}: {error}",
                self.path.display()
            ))
        })
    }

    fn write(&self, token: &str) -> io::Result<()> {
        let name = self
            .path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let (temporary, mut file) = create_temporary(&self.path, name)?;
        let written = file
            .write_all(token.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all());
        drop(file);
        if let Err(error) = written.and_then(|()| std::fs::rename(&temporary, &self.path)) {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
        // The rename itself, durable too.
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::File::open(directory)?.sync_all()
    }
}

/// How many fresh names [`create_temporary`] tries before it gives up.
const TEMPORARY_ATTEMPTS: usize = 8;

/// A new file beside `path`, `.{name}.{random}.tmp`, for the token on its
/// way to `path`; readable by the owner alone (0600).
///
/// Its directory may be writable by others (a shared state directory, a
/// mistake): the name is random, so it cannot be planted in advance, and
/// the file is created only if nothing is there (`O_CREAT|O_EXCL`, which
/// never follows a symbolic link) and never through one (`O_NOFOLLOW`).
/// A name that is taken is not touched; the next attempt draws another.
/// A watcher killed between creating the file and renaming it (a few
/// system calls) leaves it behind; it holds a token and nothing secret.
fn create_temporary(path: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, std::fs::File)> {
    let mut last = None;
    for _ in 0..TEMPORARY_ATTEMPTS {
        let mut random = [0u8; 8];
        crate::domain::shared::random::fill(&mut random).map_err(io::Error::other)?;
        let mut temporary_name = std::ffi::OsString::from(".");
        temporary_name.push(name);
        temporary_name.push(format!(".{:016x}.tmp", u64::from_le_bytes(random)));
        let temporary = path.with_file_name(temporary_name);
        match create_private(&temporary) {
            Ok(file) => return Ok((temporary, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary name was free")))
}

/// Creates `path` for writing, mode 0600, only if nothing is there, and
/// never through a symbolic link: `O_CREAT|O_EXCL|O_NOFOLLOW`.
fn create_private(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// An error with its sources, as "error: source: source" (a source that
/// only repeats the one before is said once).
struct Chain<'a>(&'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        f.write_str(&said)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            let text = error.to_string();
            if text != said {
                write!(f, ": {text}")?;
                said = text;
            }
            source = error.source();
        }
        Ok(())
    }
}

/// A status's source chain, if it has one (a transport error's cause).
struct Source<'a>(&'a Status);

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::error::Error::source(self.0) {
            Some(source) => write!(f, " ({})", Chain(source)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_every_documented_field_in_order() {
        let event = AuditEvent {
            name: "auditEvents/7".into(),
            occur_time: Some(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 5_000_000,
            }),
            r#type: event_type_to_pb(EventType::AppPasswordRevoked) as i32,
            actor: "portal".into(),
            actor_tenant: String::new(),
            account: "accounts/alice@example.com".into(),
            app_password: "accounts/alice@example.com/appPasswords/x".into(),
            caller: String::new(),
            client_ip: String::new(),
            protocol: 0,
            item_count: 0,
            detail: "laptop \"sold\"".into(),
        };
        let line = event_line(&event, "tok").unwrap();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(
            line.trim_end(),
            r#"{"type":"app_password_revoked","time":"2026-01-01T00:00:00.005Z","account":"alice@example.com","app_password":"accounts/alice@example.com/appPasswords/x","actor":"portal","caller":null,"client_ip":null,"protocol":null,"item_count":0,"detail":"laptop \"sold\"","name":"auditEvents/7","resume_token":"tok","actor_tenant":null}"#
        );
        let login = AuditEvent {
            r#type: 999,
            caller: "callers/imap-proxy".into(),
            client_ip: "192.0.2.1".into(),
            protocol: crate::grpc::pb::Protocol::ExchangeActivesync as i32,
            ..event
        };
        let line: serde_json::Value =
            serde_json::from_str(&event_line(&login, "t").unwrap()).unwrap();
        assert_eq!(
            line["type"],
            serde_json::Value::Null,
            "unknown to this build"
        );
        assert_eq!(line["caller"], "imap-proxy");
        assert_eq!(line["protocol"], "eas");
        assert_eq!(line["client_ip"], "192.0.2.1");
    }

    #[test]
    fn types_are_the_stored_names_of_the_feed() {
        use clap::builder::TypedValueParser;
        let parser = event_type_names();
        let command = clap::Command::new("t");
        let names: Vec<String> = parser
            .possible_values()
            .into_iter()
            .flatten()
            .map(|v| v.get_name().to_owned())
            .collect();
        assert!(names.contains(&"app_password_revoked".to_owned()));
        assert!(!names.contains(&"authentication_failed".to_owned()));
        assert!(!names.contains(&"leak_reported".to_owned()));
        let in_feed = EventType::ALL.iter().filter(|t| t.in_feed()).count();
        assert_eq!(names.len(), in_feed);
        let refused = parser.parse_ref(&command, None, std::ffi::OsStr::new("revoked"));
        assert!(refused.is_err());
    }

    #[test]
    fn the_token_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("token"));
        assert_eq!(file.load().unwrap(), "", "a missing file is no token");
        file.save("first").unwrap();
        file.save("second").unwrap();
        assert_eq!(file.load().unwrap(), "second");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_temporary_file_is_never_opened_through_a_link_or_over_a_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "precious\n").unwrap();
        let token = dir.path().join("token");
        let (path, file) = create_temporary(&token, std::ffi::OsStr::new("token")).unwrap();
        drop(file);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(".token.") && name.ends_with(".tmp"),
            "{name}"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The same name again (as if planted): a link or a file there is
        // left as it is, and nothing is opened.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let opened = create_private(&path);
        assert_eq!(opened.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        let dangling = dir.path().join(".token.dangling.tmp");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert_eq!(
            create_private(&dangling).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(
            !dir.path().join("nowhere").exists(),
            "not created through the link"
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "theirs").unwrap();
        assert_eq!(
            create_private(&path).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "theirs");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious\n");
    }
}
