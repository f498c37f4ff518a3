//! The mail stack (issue 20's last row): IMAP logins the way most legacy
//! clients make them, client → nginx's mail proxy → Dovecot, with nginx
//! asking latchkey (`auth_http` to `/auth/nginx-mail` on the adapters
//! listener), side by side with the same stack where nginx answers
//! `auth_http` itself, for free. Target: the latchkey stack's logins/s at
//! least 0.9× the free one's.
//!
//! The programs are the real ones (Debian: nginx with libnginx-mod-mail,
//! dovecot-imapd), started as children in process groups of their own
//! (`program.rs`) with configuration written into a temporary directory,
//! on ephemeral ports; a missing one fails the row, naming the packages.
//! Both stacks are one nginx (the same workers, the same configuration)
//! with two IMAP `server`s that differ in their `auth_http` alone, and one
//! Dovecot:
//!
//! - free auth: `auth_http` to a `location` of the same nginx's `http {}`
//!   block, which answers `Auth-Status: OK` with Dovecot's address, no
//!   backend behind it (the cheapest auth server nginx can have);
//! - latchkey: `auth_http` to the real `latchkey serve` with its defaults
//!   (one request log line each, to a file), on SQLite, with the 64 warm
//!   secrets of the warm scenario, each verified once through this stack
//!   before the measurement, so its logins are warm ones.
//!
//! Dovecot accepts whatever nginx forwards, the same way for both stacks:
//! a static passdb with `nopassword=y` (the backend trusts the proxy, as
//! docs/proxies.md deploys it). So the password is checked once, by the
//! auth server under test, and Dovecot's share of a login is the same in
//! both stacks. (Answering `Auth-Pass` from each auth server, for Dovecot
//! to check against a static password, would also be the same in both,
//! but is a second password check no deployment makes.) Dovecot is
//! pre-forked and reuses its processes (`service_count = 0` for the login
//! and the imap services, with `process_min_avail` spare processes): a
//! fork per login would be Dovecot's cost, and all users map to one uid,
//! so reuse is allowed. nginx runs Debian's default `worker_processes
//! auto`.
//!
//! The client is this process: `--mailstack-concurrency` closed-loop tasks
//! (32), each session a new connection: greeting, `a LOGIN`, the tagged
//! OK, `b LOGOUT`, read to the close. The stacks alternate in halves of
//! `--mailstack-duration` (20 s each in all): free, latchkey, free,
//! latchkey, so a drift of the shared machine falls on both. The CPU each
//! component used in each stack's halves is read from `/proc`, and
//! latchkey's own count of its nginx-mail answers from its `/metrics`;
//! any failed login, on either count, fails the run after the report.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use crate::bench::{Bench, Login};
use crate::drive::{drive, Run, Until};
use crate::options::Options;
use crate::program::{group_cpu_seconds, Program};
use crate::report::{ms, Report};
use crate::scenarios::WARM_SECRETS;
use crate::server::{cpu_seconds, scrape, Server};
use crate::BoxError;

const NGINX: &str = "/usr/sbin/nginx";
const NGINX_MAIL_MODULE: &str = "/usr/lib/nginx/modules/ngx_mail_module.so";
const DOVECOT: &str = "/usr/sbin/dovecot";
/// Dovecot's IMAP server, from dovecot-imapd: without it Dovecot starts
/// and then fails every IMAP session.
const DOVECOT_IMAP: &str = "/usr/lib/dovecot/imap";
/// A session that takes longer is counted as failed (`timed out`).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// latchkey's login counter, by adapter, protocol and result.
const AUTHENTICATIONS: &str = "latchkey_authentications_total{";

/// The CPU time, in seconds, each part of a stack used while it was
/// measured, and the whole machine's busy time: what is left of it is
/// other work on the shared machine, which the report shows, since it
/// moves the figures.
#[derive(Default, Clone, Copy)]
struct Cpu {
    client: f64,
    nginx: f64,
    latchkey: f64,
    dovecot: f64,
    machine: f64,
}

impl Cpu {
    fn all(&self) -> f64 {
        self.client + self.nginx + self.latchkey + self.dovecot
    }

    /// What `ended` used since `self`, added to `total`.
    fn add_since(self, ended: Cpu, total: &mut Cpu) {
        total.client += ended.client - self.client;
        total.nginx += ended.nginx - self.nginx;
        total.latchkey += ended.latchkey - self.latchkey;
        total.dovecot += ended.dovecot - self.dovecot;
        total.machine += ended.machine - self.machine;
    }
}

/// One stack's figures, over both its halves.
struct Stack {
    label: &'static str,
    run: Run,
    cpu: Cpu,
}

pub struct Mailstack {
    concurrency: usize,
    duration: Duration,
    free: Stack,
    latchkey: Stack,
    /// latchkey's count of its nginx-mail IMAP answers over the measured
    /// halves, from its `/metrics`: successes, and anything else.
    served: f64,
    refused: f64,
}

/// The running stack: the processes and where each listens.
struct Running {
    bench: Bench,
    nginx: Program,
    dovecot: Program,
    /// nginx's IMAP ports: with free auth, and with latchkey.
    free_port: u16,
    latchkey_port: u16,
}

/// Starts both stacks, measures them and stops them. Ctrl-C stops them
/// too (the programs are in groups of their own, which a terminal's
/// Ctrl-C does not reach); since tokio keeps its handler for the rest of
/// the process, the full run has this last.
pub async fn mailstack(options: &Options, dir: &Path) -> Result<Mailstack, BoxError> {
    tokio::select! {
        measured = start_and_measure(options, dir) => measured,
        _ = tokio::signal::ctrl_c() => Err("interrupted; the mail stack is stopped".into()),
    }
}

async fn start_and_measure(options: &Options, dir: &Path) -> Result<Mailstack, BoxError> {
    let missing: Vec<&str> = [NGINX, NGINX_MAIL_MODULE, DOVECOT, DOVECOT_IMAP]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the mail stack needs nginx, libnginx-mod-mail and dovecot-imapd \
             (missing: {}); --skip-mailstack leaves it out",
            missing.join(", ")
        )
        .into());
    }
    // The programs' own directory: Dovecot's unprivileged processes must
    // enter it, which the benchmark's directory (its database, the keys'
    // configuration) does not allow.
    let root = tempfile::tempdir()?;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))?;
    let mut running = start(options, dir, root.path()).await?;
    let measured = measure(options, &mut running).await;
    running.nginx.stop();
    running.dovecot.stop();
    running.bench.server.stop()?;
    measured
}

async fn start(options: &Options, dir: &Path, root: &Path) -> Result<Running, BoxError> {
    let (dovecot_port, free_port, latchkey_port, auth_port) =
        (free_port()?, free_port()?, free_port()?, free_port()?);
    let sqlite_url = format!("sqlite://{}?mode=rwc", dir.join("mailstack.db").display());
    let upstream = (
        "LATCHKEY_PROXY_ADAPTERS__MAIL_UPSTREAMS__IMAP".to_owned(),
        format!("127.0.0.1:{dovecot_port}"),
    );
    let server = Server::start_with(&sqlite_url, dir, vec![upstream]).await?;
    let mut bench = Bench::new(options.clone(), server).await?;
    bench.top_up(WARM_SECRETS).await;

    let dovecot_dir = root.join("dovecot");
    std::fs::create_dir_all(dovecot_dir.join("mail"))?;
    std::fs::set_permissions(&dovecot_dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(
        dovecot_dir.join("mail"),
        std::fs::Permissions::from_mode(0o1777),
    )?;
    let dovecot_conf = dovecot_dir.join("dovecot.conf");
    std::fs::write(
        &dovecot_conf,
        dovecot_config(&dovecot_dir, dovecot_port, options.mailstack_concurrency),
    )?;
    let mut dovecot = Program::spawn(
        "dovecot",
        Command::new(DOVECOT).args(["-F", "-c"]).arg(&dovecot_conf),
        &dovecot_dir.join("dovecot.out"),
    )?;

    // The authenticator's key goes in a file of its own, only root reads.
    let nginx_dir = root.join("nginx");
    std::fs::create_dir_all(&nginx_dir)?;
    std::fs::set_permissions(&nginx_dir, std::fs::Permissions::from_mode(0o700))?;
    let key_conf = nginx_dir.join("latchkey-key.conf");
    std::fs::write(
        &key_conf,
        format!(
            "auth_http_header X-Latchkey-Key \"{}\";\n",
            bench.server.authenticator_key
        ),
    )?;
    std::fs::set_permissions(&key_conf, std::fs::Permissions::from_mode(0o600))?;
    let nginx_conf = nginx_dir.join("nginx.conf");
    std::fs::write(
        &nginx_conf,
        nginx_config(&NginxPorts {
            dir: &nginx_dir,
            free: free_port,
            latchkey: latchkey_port,
            auth: auth_port,
            adapters: &bench.server.adapters_addr,
            dovecot: dovecot_port,
        }),
    )?;
    let mut nginx = Program::spawn(
        "nginx",
        Command::new(NGINX)
            .args(["-e", "stderr", "-c"])
            .arg(&nginx_conf)
            .arg("-p")
            .arg(&nginx_dir),
        &nginx_dir.join("nginx.out"),
    )?;
    dovecot.listening(dovecot_port).await?;
    for port in [free_port, latchkey_port, auth_port] {
        nginx.listening(port).await?;
    }
    Ok(Running {
        bench,
        nginx,
        dovecot,
        free_port,
        latchkey_port,
    })
}

async fn measure(options: &Options, running: &mut Running) -> Result<Mailstack, BoxError> {
    let logins: Arc<Vec<Login>> = Arc::new(
        running
            .bench
            .logins
            .iter()
            .take(WARM_SECRETS)
            .cloned()
            .collect(),
    );
    // Untimed: every secret once through each stack, one at a time. It
    // verifies each secret (argon2, once) so the measured logins are warm,
    // lets Dovecot make each user's mail directory, and stops the run
    // early, with the programs' logs, if a stack does not work.
    for port in [running.free_port, running.latchkey_port] {
        for login in logins.iter() {
            let outcome = imap_login(port, &login.username, &login.secret).await;
            if outcome != "success" {
                return Err(format!(
                    "a login through nginx on port {port} failed before the measurement: \
                     {outcome}\n{}\n{}",
                    running.nginx.log_tail(),
                    running.dovecot.log_tail()
                )
                .into());
            }
        }
    }

    let metrics_addr = running.bench.server.metrics_addr.clone();
    let before = nginx_mail_answers(&scrape(&metrics_addr).await?);
    let concurrency = options.mailstack_concurrency;
    let half = options.mailstack_duration / 2;
    let mut free = Stack {
        label: "free auth (nginx answers auth_http itself)",
        run: Run::default(),
        cpu: Cpu::default(),
    };
    let mut latchkey = Stack {
        label: "latchkey (/auth/nginx-mail)",
        run: Run::default(),
        cpu: Cpu::default(),
    };
    for round in 1..=2 {
        for (stack, port) in [
            (&mut free, running.free_port),
            (&mut latchkey, running.latchkey_port),
        ] {
            eprintln!("mail stack: {}, half {round} of 2", stack.label);
            let started = cpu(running)?;
            let logins = Arc::clone(&logins);
            let run = drive(
                &running.bench.channels,
                concurrency,
                Until::Elapsed(half),
                move |n, _| {
                    let logins = Arc::clone(&logins);
                    async move {
                        let login = logins.get((n % logins.len() as u64) as usize)?;
                        Some(imap_login(port, &login.username, &login.secret).await)
                    }
                },
            )
            .await;
            let ended = cpu(running)?;
            started.add_since(ended, &mut stack.cpu);
            stack.run.absorb(run);
        }
    }
    let after = nginx_mail_answers(&scrape(&metrics_addr).await?);
    Ok(Mailstack {
        concurrency,
        duration: options.mailstack_duration,
        free,
        latchkey,
        served: after.0 - before.0,
        refused: after.1 - before.1,
    })
}

/// The CPU time used so far by this process (the client), nginx's and
/// Dovecot's process groups, and latchkey.
fn cpu(running: &Running) -> Result<Cpu, BoxError> {
    Ok(Cpu {
        client: cpu_seconds(std::process::id())?,
        nginx: group_cpu_seconds(running.nginx.group()?)?,
        latchkey: cpu_seconds(running.bench.server.pid()?)?,
        dovecot: group_cpu_seconds(running.dovecot.group()?)?,
        machine: machine_busy_seconds()?,
    })
}

/// The time every core of the machine has been busy so far, in seconds:
/// the first line of `/proc/stat`, all but idle and iowait.
fn machine_busy_seconds() -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .ok_or("no cpu line in /proc/stat")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is in
    // user's already).
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&index| ticks.get(index))
        .sum();
    Ok(busy / crate::server::clock_ticks()?)
}

/// latchkey's nginx-mail answers so far, from its `/metrics` text:
/// successes, and every other result.
fn nginx_mail_answers(metrics: &str) -> (f64, f64) {
    let mut answers = (0.0, 0.0);
    for line in metrics.lines() {
        if !(line.starts_with(AUTHENTICATIONS) && line.contains("adapter=\"nginx-mail\"")) {
            continue;
        }
        let value: f64 = line
            .rsplit_once(' ')
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0.0);
        if line.contains("result=\"success\"") {
            answers.0 += value;
        } else {
            answers.1 += value;
        }
    }
    answers
}

/// A port on 127.0.0.1 free now, for a program that binds its own.
fn free_port() -> Result<u16, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One IMAP session on `127.0.0.1:port`, named by its outcome: `success`,
/// or what went wrong (never the secret).
async fn imap_login(port: u16, username: &str, secret: &str) -> String {
    match tokio::time::timeout(SESSION_TIMEOUT, session(port, username, secret)).await {
        Ok(Ok(())) => "success".to_owned(),
        Ok(Err(failure)) => failure,
        Err(_) => "timed out".to_owned(),
    }
}

/// Connect, the greeting, `a LOGIN`, its tagged answer, `b LOGOUT`, and
/// read until the server closes.
async fn session(port: u16, username: &str, secret: &str) -> Result<(), String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|error| format!("connect: {}", error.kind()))?;
    let _ = stream.set_nodelay(true);
    let mut stream = BufStream::new(stream);
    let mut line = String::new();
    read_line(&mut stream, &mut line).await?;
    if !line.starts_with("* OK") {
        return Err(format!("greeting: {}", brief(&line)));
    }
    let login = format!("a LOGIN {} {}\r\n", quoted(username), quoted(secret));
    send(&mut stream, &login).await?;
    loop {
        line.clear();
        read_line(&mut stream, &mut line).await?;
        if let Some(answer) = line.strip_prefix("a ") {
            if answer.starts_with("OK") {
                break;
            }
            return Err(format!("refused: {}", brief(answer)));
        }
    }
    send(&mut stream, "b LOGOUT\r\n").await?;
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .await
        .map_err(|error| format!("logout: {}", error.kind()))?;
    if !String::from_utf8_lossy(&rest).contains("\r\nb OK") {
        return Err("logout not answered".to_owned());
    }
    Ok(())
}

async fn send(stream: &mut BufStream<TcpStream>, text: &str) -> Result<(), String> {
    stream
        .write_all(text.as_bytes())
        .await
        .map_err(|e| format!("write: {}", e.kind()))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("write: {}", e.kind()))
}

async fn read_line(stream: &mut BufStream<TcpStream>, line: &mut String) -> Result<(), String> {
    match stream.read_line(line).await {
        Ok(0) => Err("closed".to_owned()),
        Ok(_) => Ok(()),
        Err(error) => Err(format!("read: {}", error.kind())),
    }
}

/// An IMAP quoted string (a secret has spaces).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A server's line, short enough for the table's answers column.
fn brief(line: &str) -> String {
    line.trim().chars().take(80).collect()
}

/// Dovecot for IMAP alone on `port`, logging to stderr (the program's log
/// file), pre-forked for `concurrency` sessions at once.
fn dovecot_config(dir: &Path, port: u16, concurrency: usize) -> String {
    let dir = dir.display();
    let cores = crate::targets::workers();
    // Spare imap processes: one per client, and some being handed back.
    let imap_spare = concurrency + 8;
    let imap_limit = (4 * concurrency).max(256);
    // Dovecot asks its auth service's client limit to cover every process
    // that may ask it: the imap processes and the login processes (100).
    let auth_clients = imap_limit + 300;
    format!(
        r#"base_dir = {dir}/run/
state_dir = {dir}/state/
log_path = /dev/stderr
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{dir}/mail/%u
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = {cores}
}}
service imap {{
  service_count = 0
  process_min_avail = {imap_spare}
  process_limit = {imap_limit}
}}
service auth {{
  client_limit = {auth_clients}
}}
protocol imap {{
  mail_max_userip_connections = {imap_limit}
}}
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={dir}/mail/%u
}}
"#
    )
}

struct NginxPorts<'a> {
    dir: &'a Path,
    free: u16,
    latchkey: u16,
    auth: u16,
    /// latchkey's adapters listener, `IP:port`.
    adapters: &'a str,
    dovecot: u16,
}

/// One nginx: two IMAP servers differing in their `auth_http` alone, and
/// the free auth server, in its `http {}` block.
fn nginx_config(ports: &NginxPorts) -> String {
    let NginxPorts {
        free,
        latchkey,
        auth,
        adapters,
        dovecot,
        ..
    } = ports;
    let dir = ports.dir.display();
    format!(
        r#"load_module {NGINX_MAIL_MODULE};
daemon off;
worker_processes auto;
pid {dir}/nginx.pid;
error_log stderr warn;

events {{
    worker_connections 4096;
}}

mail {{
    proxy_pass_error_message on;

    server {{
        listen 127.0.0.1:{free};
        protocol imap;
        auth_http 127.0.0.1:{auth}/auth;
    }}
    server {{
        listen 127.0.0.1:{latchkey};
        protocol imap;
        auth_http {adapters}/auth/nginx-mail;
        include {dir}/latchkey-key.conf;
    }}
}}

http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    server {{
        listen 127.0.0.1:{auth};
        location = /auth {{
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port {dovecot};
            return 204;
        }}
    }}
}}
"#
    )
}

impl Mailstack {
    pub fn rows(&self, report: &mut Report) {
        let half = self.duration.as_secs_f64() / 2.0;
        let mut section = format!(
            "\n### The mail stack: IMAP logins through nginx and Dovecot\n\n\
             {} IMAP clients at once, each a closed loop of sessions (connect, LOGIN, LOGOUT) \
             over the {WARM_SECRETS} warm secrets; the stacks alternate in halves of {half:.0} s \
             (free, latchkey, free, latchkey). CPU per login: what each part used over the \
             stack's halves, divided by its logins; other work: the rest of the machine's busy \
             time meanwhile (other processes on the shared machine, the kernel's own threads), in \
             cores.\n\n\
             | stack | logins | logins/s | p50 | p99 | failed | CPU µs per login: client / nginx / latchkey / Dovecot / all | other work |\n\
             |---|---|---|---|---|---|---|---|\n",
            self.concurrency
        );
        for stack in [&self.free, &self.latchkey] {
            let logins = stack.run.latencies.len();
            let per_login = |seconds: f64| format!("{:.0}", seconds * 1e6 / logins.max(1) as f64);
            let cpu = stack.cpu;
            section.push_str(&format!(
                "| {} | {logins} | {:.0} | {} | {} | {} | {} / {} / {} / {} / {} | {:.2} |\n",
                stack.label,
                stack.run.rate(),
                ms(stack.run.quantile(0.5)),
                ms(stack.run.quantile(0.99)),
                failures(&stack.run),
                per_login(cpu.client),
                per_login(cpu.nginx),
                per_login(cpu.latchkey),
                per_login(cpu.dovecot),
                per_login(cpu.all()),
                (cpu.machine - cpu.all()).max(0.0) / stack.run.elapsed.as_secs_f64(),
            ));
        }
        section.push_str(&format!(
            "\nlatchkey's `/metrics` over the measured halves: {:.0} nginx-mail successes, \
             {:.0} other answers.\n",
            self.served, self.refused
        ));
        report.sections.push_str(&section);
    }

    pub fn checks(&self, report: &mut Report) {
        let (free, latchkey) = (self.free.run.rate(), self.latchkey.run.rate());
        let ratio = latchkey / free.max(f64::MIN_POSITIVE);
        report.check(
            "mail stack: latchkey ≥ 0.9 × free auth (IMAP logins/s)",
            format!("{latchkey:.0}/s vs {free:.0}/s = {ratio:.2}×"),
            ratio >= 0.9,
        );
        let failed =
            self.free.run.unexpected(&["success"]) + self.latchkey.run.unexpected(&["success"]);
        report.check(
            "mail stack: no failed login (client, and latchkey's count)",
            format!(
                "{failed} failed; latchkey counted {:.0} successes for {} and {:.0} others",
                self.served,
                self.latchkey.run.latencies.len(),
                self.refused
            ),
            self.verify().is_ok(),
        );
    }

    /// An error if a login failed, or latchkey's count differs from the
    /// client's.
    pub fn verify(&self) -> Result<(), BoxError> {
        let failed =
            self.free.run.unexpected(&["success"]) + self.latchkey.run.unexpected(&["success"]);
        let succeeded = self
            .latchkey
            .run
            .outcomes
            .get("success")
            .copied()
            .unwrap_or(0);
        if failed > 0 || self.refused > 0.0 || self.served != succeeded as f64 {
            return Err(format!(
                "the mail stack: {failed} logins failed (free: {}; latchkey: {}); latchkey \
                 counted {:.0} successes for the client's {succeeded}, and {:.0} other answers",
                self.free.run.outcomes_text(),
                self.latchkey.run.outcomes_text(),
                self.served,
                self.refused
            )
            .into());
        }
        Ok(())
    }
}

/// Logins that did not succeed, with what they got.
fn failures(run: &Run) -> String {
    let failed = run.unexpected(&["success"]);
    if failed == 0 {
        return "0".to_owned();
    }
    let kinds: Vec<String> = run
        .outcomes
        .iter()
        .filter(|(kind, _)| kind.as_str() != "success")
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    format!("**{failed}** ({})", kinds.join(", "))
}
