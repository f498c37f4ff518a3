//! The server under test: the real `latchkey` binary in its own process, so
//! its peak memory is its own and its threads are not the load's.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use crate::BoxError;

const BINARY: &str = env!("CARGO_BIN_EXE_latchkey");
/// What `latchkey serve` prints before the address it bound, for gRPC and
/// for the proxy adapters.
const LISTENING: &str = "latchkey: listening on ";
const ADAPTERS_LISTENING: &str = "latchkey: proxy adapters listening on ";
const METRICS_LISTENING: &str = "latchkey: metrics listening on ";

pub struct Server {
    database_url: String,
    log: PathBuf,
    child: Option<Child>,
    pub addr: String,
    /// Where the proxy adapters answer (nginx's mail protocol among them).
    pub adapters_addr: String,
    pub issuer_key: String,
    pub authenticator_key: String,
    /// Where `/metrics` answers.
    pub metrics_addr: String,
    /// Settings given to every process of this deployment, as
    /// environment variables.
    env: Vec<(String, String)>,
}

impl Server {
    /// Migrates `database_url`, makes an issuer and an authenticator key,
    /// and starts serving with the default configuration (default argon2
    /// parameters included), but for a per-account cap and a per-caller
    /// issue bound out of the way.
    pub async fn start(database_url: &str, dir: &Path) -> Result<Self, BoxError> {
        Self::start_with(database_url, dir, Vec::new()).await
    }

    /// [`Server::start`], with settings of its own as environment
    /// variables (`LATCHKEY_…`), which its replicas get too.
    pub async fn start_with(
        database_url: &str,
        dir: &Path,
        env: Vec<(String, String)>,
    ) -> Result<Self, BoxError> {
        run(&["migrate", "--database-url", database_url])?;
        let mut server = Self {
            database_url: database_url.to_owned(),
            log: dir.join(format!("server-{}.log", std::process::id())),
            child: None,
            addr: String::new(),
            adapters_addr: String::new(),
            issuer_key: String::new(),
            authenticator_key: String::new(),
            metrics_addr: String::new(),
            env,
        };
        server.issuer_key = server.add_caller("bench-issuer", "issuer")?;
        server.authenticator_key = server.add_caller("bench-authenticator", "authenticator")?;
        server.spawn().await?;
        Ok(server)
    }

    /// Another replica: a second process serving the same database (already
    /// migrated, its callers made), logging to a file of its own, `name`d.
    pub async fn replica(&self, name: &str) -> Result<Self, BoxError> {
        let mut replica = Self {
            database_url: self.database_url.clone(),
            log: self
                .log
                .with_file_name(format!("server-{}-{name}.log", std::process::id())),
            child: None,
            addr: String::new(),
            adapters_addr: String::new(),
            issuer_key: self.issuer_key.clone(),
            authenticator_key: self.authenticator_key.clone(),
            metrics_addr: String::new(),
            env: self.env.clone(),
        };
        replica.spawn().await?;
        Ok(replica)
    }

    /// Starts the process on a port the system picks, and waits until it
    /// says which and answers there.
    async fn spawn(&mut self) -> Result<(), BoxError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(BINARY)
            .args(["serve", "--no-migrate", "--listen", "127.0.0.1:0"])
            .args(["--adapters-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--database-url", &self.database_url])
            .env(
                "LATCHKEY_PROXY_ADAPTERS__MAIL_UPSTREAMS__IMAP",
                "127.0.0.1:143",
            )
            .env("LATCHKEY_MAX_ACTIVE_APP_PASSWORDS", "1000")
            // The IssueAppPassword scenario is one caller issuing as fast as
            // it can: the bound on a caller's issues would be its subject.
            .env(
                "LATCHKEY_APP_PASSWORDS__CALLER_ISSUES_PER_MINUTE",
                "100000000",
            )
            // Last, so a deployment's own settings win over the defaults above.
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("the server has no stdout")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let not_started = || format!("server did not start; see {}", self.log.display());
        let bound = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            bound_address(stdout),
        );
        let (addr, metrics, adapters) = bound.await.ok().flatten().ok_or_else(not_started)?;
        self.addr = addr;
        self.metrics_addr = metrics;
        self.adapters_addr = adapters;
        while !self.answers().await {
            if Instant::now() > deadline {
                return Err(not_started().into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Whether the server answers a health check yet.
    async fn answers(&self) -> bool {
        let Ok(channel) = self.channel().await else {
            return false;
        };
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok()
    }

    /// A fresh process on the same database: its verified-secret cache is
    /// empty (its key is new), so every secret is cold again.
    pub async fn restart(&mut self) -> Result<(), BoxError> {
        self.stop()?;
        self.spawn().await
    }

    /// SIGTERM, then wait: a graceful stop, as an operator's would be.
    pub fn stop(&mut self) -> Result<(), BoxError> {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").arg(child.id().to_string()).status()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Adds a caller with `role` (on the database, as an operator would);
    /// returns its key. The running process finds it at its first call.
    pub fn add_caller(&self, name: &str, role: &str) -> Result<String, BoxError> {
        let url = &self.database_url;
        run(&["caller", "add", name, "--role", role, "--database-url", url])
    }

    /// The running process's id.
    pub fn pid(&self) -> Result<u32, BoxError> {
        Ok(self.child.as_ref().ok_or("server not running")?.id())
    }

    /// A field of the process's `/proc/<pid>/status`, in KiB.
    fn status_kib(&self, field: &str) -> Result<u64, BoxError> {
        status_kib(self.pid()?, field)
    }

    /// The process's resident memory now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Result<u64, BoxError> {
        self.status_kib("VmRSS")
    }

    /// The process's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Result<u64, BoxError> {
        self.status_kib("VmHWM")
    }

    /// Resident memory now, in KiB: anonymous (the heap, argon2's buffers)
    /// and file-backed (the binary, and database pages read through
    /// SQLite's memory map, which are the kernel's page cache).
    pub fn rss_anon_and_file_kib(&self) -> Result<(u64, u64), BoxError> {
        Ok((self.status_kib("RssAnon")?, self.status_kib("RssFile")?))
    }

    /// A new HTTP/2 connection (one connection serializes its frames, so
    /// the load spreads over several).
    pub async fn channel(&self) -> Result<Channel, BoxError> {
        Ok(Endpoint::from_shared(format!("http://{}", self.addr))?
            .tcp_nodelay(true)
            .connect()
            .await?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The address `latchkey serve` says it listens on, in the line it prints
/// on stdout once bound (`latchkey: listening on 127.0.0.1:41234`); `None`
/// if it exits first. Its stdout is read on a thread of its own, which
/// drains it to the end, so the server never waits on a full pipe.
async fn bound_address(stdout: ChildStdout) -> Option<(String, String, String)> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        let (mut grpc, mut metrics) = (None, None);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else {
                break;
            };
            if let Some(address) = line.strip_prefix(LISTENING) {
                grpc = Some(address.to_owned());
            }
            if let Some(address) = line.strip_prefix(METRICS_LISTENING) {
                metrics = Some(address.to_owned());
            }
            if let Some(address) = line.strip_prefix(ADAPTERS_LISTENING) {
                if let (Some(sender), Some(grpc), Some(metrics)) =
                    (sender.take(), grpc.clone(), metrics.clone())
                {
                    let _ = sender.send((grpc, metrics, address.to_owned()));
                }
            }
        }
    });
    receiver.await.ok()
}

/// A process's whole `/metrics` answer (a plain HTTP/1.0 GET).
pub async fn scrape(metrics_addr: &str) -> Result<String, BoxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(metrics_addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

/// One counter's value from a process's `/metrics`.
pub async fn metric(metrics_addr: &str, name: &str) -> Result<f64, BoxError> {
    scrape(metrics_addr)
        .await?
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| format!("no {name} in /metrics").into())
}

/// A field of `/proc/<pid>/status`, in KiB.
pub fn status_kib(pid: u32, field: &str) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/<pid>/status").into())
}

/// The CPU time a process has used so far, user and system, in seconds
/// (`/proc/<pid>/stat`, in the kernel's clock ticks).
pub fn cpu_seconds(pid: u32) -> Result<f64, BoxError> {
    let fields = stat_fields(pid)?;
    // utime is the 12th field after the name, stime the 13th.
    let ticks = |index: usize| -> Result<f64, BoxError> {
        Ok(fields.get(index).ok_or("short /proc/<pid>/stat")?.parse()?)
    };
    Ok((ticks(11)? + ticks(12)?) / clock_ticks()?)
}

/// The fields of `/proc/<pid>/stat` after the command's name (which is in
/// parentheses and may hold spaces): the state first, then the parent's
/// pid, the process group, ….
pub fn stat_fields(pid: u32) -> Result<Vec<String>, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (_, fields) = stat.rsplit_once(')').ok_or("no ) in /proc/<pid>/stat")?;
    Ok(fields.split_whitespace().map(str::to_owned).collect())
}

/// The kernel's clock ticks a second (`getconf CLK_TCK`).
pub fn clock_ticks() -> Result<f64, BoxError> {
    let output = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(output.stdout)?.trim().parse()?)
}

/// Runs a one-shot CLI command; returns its stdout, trimmed.
fn run(args: &[&str]) -> Result<String, BoxError> {
    let output = Command::new(BINARY)
        .args(args)
        .env("LATCHKEY_LOG__FILTER", "warn")
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "latchkey {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}
