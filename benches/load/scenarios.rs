//! The scenarios: IssueAppPassword, Authenticate cold, warm, unknown user,
//! wrong password and throttled, and the no-op RPC beside them; each on
//! SQLite and, if asked, on a fresh PostgreSQL database.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use rand::Rng;
use sea_orm::{ConnectionTrait, Database};

use crate::bench::{authenticate, Bench, Login};
use crate::drive::{Run, Until};
use crate::options::Options;
use crate::report::Report;
use crate::scale::MEMORY_CONCURRENCY;
use crate::server::Server;
use crate::BoxError;

pub const WARM_SECRETS: usize = 64;

/// A distinct IPv4 address per `n` in the /8 `block`: each its own source.
fn address(block: u8, n: u64) -> String {
    format!("{block}.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// A well-formed secret that matches nothing, keeping `selector` if given
/// (so the server finds that row and verifies against its real hash).
fn made_up_secret(selector: Option<&str>) -> String {
    let mut rng = rand::rng();
    let mut letters: String = (0..28).map(|_| rng.random_range('a'..='z')).collect();
    if let Some(selector) = selector {
        letters.replace_range(0..4, selector);
    }
    letters
}

impl Bench {
    /// Each login once, in order, from one known network: argon2 every
    /// time. Stops when the logins run out.
    pub async fn cold(&self) -> Run {
        let (key, logins) = (self.authenticator.clone(), Arc::new(self.logins.clone()));
        self.run(move |n, channel| {
            let (key, logins) = (key.clone(), Arc::clone(&logins));
            async move {
                let login = logins.get(usize::try_from(n).ok()?)?.clone();
                let ip = "10.1.0.1".to_owned();
                Some(authenticate(channel, &key, login.username, login.secret, ip).await)
            }
        })
        .await
    }

    /// The first 64 logins over and over (verified once first, untimed).
    pub async fn warm(&self) -> Run {
        self.warm_until(Until::Elapsed(self.options.duration)).await
    }

    /// `warm`, until `until` says stop.
    pub async fn warm_until(&self, until: Until) -> Run {
        let key = self.authenticator.clone();
        let logins: Arc<Vec<Login>> =
            Arc::new(self.logins.iter().take(WARM_SECRETS).cloned().collect());
        for login in logins.iter() {
            let channel = self.channels[0].clone();
            let (user, secret) = (login.username.clone(), login.secret.clone());
            authenticate(channel, &key, user, secret, "10.1.0.1".into()).await;
        }
        self.run_until(until, move |n, channel| {
            let (key, logins) = (key.clone(), Arc::clone(&logins));
            async move {
                let login = logins.get((n % logins.len() as u64) as usize)?.clone();
                let ip = "10.1.0.1".to_owned();
                Some(authenticate(channel, &key, login.username, login.secret, ip).await)
            }
        })
        .await
    }

    /// The same 64 secrets as `warm`, asked through one of the adapters'
    /// HTTP doors as its proxy asks, a connection of its own per request.
    pub async fn warm_through(&self, door: Door) -> Run {
        let key = self.server.authenticator_key.clone();
        let addr = self.server.adapters_addr.clone();
        let logins: Arc<Vec<Login>> =
            Arc::new(self.logins.iter().take(WARM_SECRETS).cloned().collect());
        self.run(move |n, _channel| {
            let (key, addr, logins) = (key.clone(), addr.clone(), Arc::clone(&logins));
            async move {
                let login = logins.get((n % logins.len() as u64) as usize)?.clone();
                let (user, secret) = (&login.username, &login.secret);
                Some(match door {
                    Door::NginxMail => nginx_mail(&addr, &key, user, secret).await,
                    Door::OAuth2 => oauth2_grant(&addr, &key, user, secret).await,
                })
            }
        })
        .await
    }

    /// Accounts that do not exist, each attempt from its own address.
    async fn unknown_user(&self) -> Run {
        let key = self.authenticator.clone();
        self.run(move |n, channel| {
            let key = key.clone();
            async move {
                let user = format!("nobody-{n}");
                let secret = made_up_secret(None);
                Some(authenticate(channel, &key, user, secret, address(11, n)).await)
            }
        })
        .await
    }

    /// Real accounts and real selectors with the wrong rest, each attempt
    /// from its own address, spread over every account.
    async fn wrong_password(&self) -> Run {
        let (key, logins) = (self.authenticator.clone(), Arc::new(self.logins.clone()));
        self.run(move |n, channel| {
            let (key, logins) = (key.clone(), Arc::clone(&logins));
            async move {
                let login = logins.get((n % logins.len() as u64) as usize)?.clone();
                let selector: String = login.secret.chars().filter(|c| *c != ' ').take(4).collect();
                let secret = made_up_secret(Some(&selector));
                Some(authenticate(channel, &key, login.username, secret, address(12, n)).await)
            }
        })
        .await
    }

    /// One source blocked by 40 failures first (untimed), then hammering.
    async fn throttled(&self) -> Run {
        const SOURCE: &str = "203.0.113.7";
        let key = self.authenticator.clone();
        for n in 0..40 {
            let channel = self.channels[0].clone();
            let user = format!("sprayed-{n}");
            authenticate(channel, &key, user, made_up_secret(None), SOURCE.into()).await;
        }
        self.run(move |n, channel| {
            let key = key.clone();
            async move {
                let user = format!("sprayed-{n}");
                Some(authenticate(channel, &key, user, made_up_secret(None), SOURCE.into()).await)
            }
        })
        .await
    }

    /// grpc.health.v1 Check: the stack with nothing behind it.
    pub async fn no_op(&self) -> Run {
        self.run(|_, channel| async move {
            let request = tonic_health::pb::HealthCheckRequest::default();
            let outcome = match tonic_health::pb::health_client::HealthClient::new(channel)
                .check(request)
                .await
            {
                Ok(_) => "success".to_owned(),
                Err(status) => format!("{:?}", status.code()),
            };
            Some(outcome)
        })
        .await
    }
}

/// The Authenticate and IssueAppPassword scenarios on one backend.
pub struct Scenarios {
    pub issue: Run,
    /// Each secret's first use: also writes its first-use audit event and
    /// marks its network known.
    pub first_use: Run,
    /// The same secrets again on a fresh process (its cache is empty): the
    /// usual cold login, a device back after the cache's TTL.
    pub cold: Run,
    pub warm: Run,
    /// Warm, through the nginx-mail adapter as nginx calls it.
    pub warm_nginx_mail: Run,
    /// Warm, through `/oauth2/token` as Dovecot's oauth2 passdb calls it.
    pub warm_oauth2: Run,
    pub unknown: Run,
    pub wrong: Run,
    pub throttled: Run,
}

impl Scenarios {
    pub async fn run(bench: &mut Bench, argon2_pool_rate: f64) -> Self {
        let duration = bench.options.duration;
        let issue = bench.issue(None, duration).await;
        // Enough distinct secrets for the cold run at the pool's full rate.
        let wanted = (argon2_pool_rate * duration.as_secs_f64() * 1.3) as usize;
        bench.top_up(wanted.max(MEMORY_CONCURRENCY)).await;
        let first_use = bench.cold().await;
        if let Err(error) = bench.restart().await {
            eprintln!("restart failed: {error}");
        }
        let cold = bench.cold().await;
        let warm = bench.warm().await;
        let warm_nginx_mail = bench.warm_through(Door::NginxMail).await;
        let warm_oauth2 = bench.warm_through(Door::OAuth2).await;
        let unknown = bench.unknown_user().await;
        let wrong = bench.wrong_password().await;
        let throttled = bench.throttled().await;
        Self {
            issue,
            first_use,
            cold,
            warm,
            warm_nginx_mail,
            warm_oauth2,
            unknown,
            wrong,
            throttled,
        }
    }

    pub fn report(&self, report: &mut Report, backend: &str) {
        report.row("IssueAppPassword", backend, &self.issue, &["success"]);
        report.row(
            "Authenticate cold, first use",
            backend,
            &self.first_use,
            &["success"],
        );
        report.row("Authenticate cold", backend, &self.cold, &["success"]);
        report.row("Authenticate warm", backend, &self.warm, &["success"]);
        report.row(
            "warm via nginx-mail adapter (HTTP/1.0, a connection each)",
            backend,
            &self.warm_nginx_mail,
            &["success"],
        );
        report.row(
            "warm via /oauth2/token (password grant, a connection each)",
            backend,
            &self.warm_oauth2,
            &["success"],
        );
        report.row(
            "unknown user",
            backend,
            &self.unknown,
            &["failure_reason_invalid_credentials"],
        );
        report.row(
            "wrong password",
            backend,
            &self.wrong,
            &["failure_reason_invalid_credentials"],
        );
        report.row("throttled source", backend, &self.throttled, &["throttled"]);
    }
}

/// An HTTP door of the adapters, asked as its proxy asks it.
#[derive(Debug, Clone, Copy)]
pub enum Door {
    /// nginx's mail proxy (`auth_http`): HTTP/1.0 GET.
    NginxMail,
    /// Dovecot's oauth2 passdb: the password grant to `/oauth2/token`,
    /// client credentials in the form.
    OAuth2,
}

/// One nginx `auth_http` request on a connection of its own; the outcome
/// is `success` for `Auth-Status: OK`, else the status given.
async fn nginx_mail(addr: &str, key: &str, username: &str, secret: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET /auth/nginx-mail HTTP/1.0\r\nHost: localhost\r\nX-Latchkey-Key: {key}\r\n\
         Auth-Method: plain\r\nAuth-User: {username}\r\nAuth-Pass: {}\r\n\
         Auth-Protocol: imap\r\nAuth-Login-Attempt: 1\r\nClient-IP: 10.1.0.1\r\n\r\n",
        secret.replace(' ', "%20")
    );
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return "connect failed".to_owned();
    };
    if stream.write_all(request.as_bytes()).await.is_err() {
        return "write failed".to_owned();
    }
    let mut response = Vec::with_capacity(512);
    if stream.read_to_end(&mut response).await.is_err() {
        return "read failed".to_owned();
    }
    let text = String::from_utf8_lossy(&response);
    match text.lines().find_map(|line| {
        line.strip_prefix("auth-status: ")
            .or(line.strip_prefix("Auth-Status: "))
    }) {
        Some("OK") => "success".to_owned(),
        Some(status) => status.to_owned(),
        None => "no Auth-Status".to_owned(),
    }
}

/// One password grant to `/oauth2/token` on a connection of its own, as
/// Dovecot's oauth2 passdb sends it; the outcome is `success` for a 200,
/// else the answer's `error`.
async fn oauth2_grant(addr: &str, key: &str, username: &str, secret: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = format!(
        "grant_type=password&username={username}&password={}&client_id=bench-authenticator\
         &client_secret={key}",
        secret.replace(' ', "+")
    );
    let request = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         X-Dovecot-Auth-Service: imap\r\nX-Dovecot-Auth-Remote: 10.1.0.1:40000\r\n\r\n{body}",
        body.len()
    );
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return "connect failed".to_owned();
    };
    if stream.write_all(request.as_bytes()).await.is_err() {
        return "write failed".to_owned();
    }
    let mut response = Vec::with_capacity(1024);
    if stream.read_to_end(&mut response).await.is_err() {
        return "read failed".to_owned();
    }
    let text = String::from_utf8_lossy(&response);
    if text.starts_with("HTTP/1.1 200") && text.contains("\"access_token\"") {
        return "success".to_owned();
    }
    text.split("\"error\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("no answer")
        .to_owned()
}

/// Runs `work` on a fresh PostgreSQL or MariaDB database made through
/// `admin_url` (named after `purpose`, this process and a random number),
/// and drops that database after, whatever `work` returned. `work` is given
/// the database's URL.
pub async fn in_fresh_database<T, F, Fut>(
    admin_url: &str,
    purpose: &str,
    work: F,
) -> Result<T, BoxError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<T, BoxError>>,
{
    let name = format!(
        "latchkey_{purpose}_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let admin = Database::connect(admin_url).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    // The server's part of the URL: up to the path, if there is one.
    let host_end = admin_url
        .find("://")
        .and_then(|scheme| admin_url[scheme + 3..].find('/').map(|at| scheme + 3 + at))
        .unwrap_or(admin_url.len());
    let result = work(format!("{}/{name}", &admin_url[..host_end])).await;
    let force = match admin.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => " WITH (FORCE)",
        _ => "",
    };
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}{force}"))
        .await?;
    admin.close().await?;
    result
}

/// The same scenarios on a fresh PostgreSQL database, dropped after.
pub async fn postgres_scenarios(
    admin_url: &str,
    options: &Options,
    dir: &Path,
    report: &mut Report,
    pool: f64,
) -> Result<Scenarios, BoxError> {
    let scenarios = in_fresh_database(admin_url, "load", |url| async move {
        let mut bench = Bench::new(options.clone(), Server::start(&url, dir).await?).await?;
        let scenarios = Scenarios::run(&mut bench, pool).await;
        bench.server.stop()?;
        Ok(scenarios)
    })
    .await?;
    scenarios.report(report, "PostgreSQL");
    Ok(scenarios)
}
