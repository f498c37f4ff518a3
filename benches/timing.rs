//! Do failed logins differ in latency? Unknown user, wrong password (in
//! both secret formats), revoked, expired, idle-expired, suspended,
//! disabled and out-of-tenant logins are sent interleaved, 500 rounds of
//! each, to the real server over gRPC with the real default argon2
//! parameters, and their medians compared: each must be within 5% of the
//! others. A version 2 secret whose check fails is sent in the same rounds
//! and shown, not compared: it is refused from its text alone, before any
//! argon2 run. Run with `cargo bench --bench timing` (a release build); the
//! table is printed and written to `target/timing.md`.
//!
//! Throttling is set out of reach here: it would (rightly) stop 500 failures
//! in a row, and it is not what is measured.

#[path = "../tests/it/common/bearer.rs"]
mod bearer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey::app::App;
use latchkey::config::{Config, DatabaseUrl};
use latchkey::domain::audit::event::Actor;
use latchkey::domain::callers::model::{NewCaller, Role};
use latchkey::domain::login::throttle::ThrottleConfig;
use latchkey::domain::secrets::format::Secret;
use latchkey::domain::shared::time::{Clock, ManualClock, SystemClock};
use latchkey::grpc::pb::account_service_client::AccountServiceClient;
use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use latchkey::grpc::pb::{
    issue_app_password_request::Expiration, AuthenticateRequest, DisableAccountRequest,
    FailureReason, IssueAppPasswordRequest, Protocol, RevokeAppPasswordRequest,
    SuspendAppPasswordRequest,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use bearer::Bearer;

const ROUNDS: usize = 500;
const TOLERANCE: f64 = 0.05;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn issue(username: &str, ttl: Option<i64>) -> IssueAppPasswordRequest {
    IssueAppPasswordRequest {
        parent: format!("accounts/{username}"),
        display_name: "Benchmark".into(),
        protocols: vec![Protocol::Imap as i32],
        expiration: ttl.map(|seconds| Expiration::Ttl(prost_types::Duration { seconds, nanos: 0 })),
        allowed_networks: Vec::new(),
        idle_timeout: None,
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        database_url: DatabaseUrl::new(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("timing.db").display()
        )),
        throttle: ThrottleConfig {
            pair_limit: u32::MAX,
            source_limit: u32::MAX,
            account_limit: u32::MAX,
            ..ThrottleConfig::default()
        },
        ..Config::default()
    };
    let clock = ManualClock::starting_at(SystemClock.now());
    let app = App::build(&config, Arc::new(clock.clone())).await?;
    let bench = Actor::system("bench");
    let (_, key) = app
        .services()
        .callers
        .create_caller(NewCaller::plain("bench".into(), Role::Operator), &bench)
        .await?;
    // A tenant's proxy, for the login of an account outside its tenant:
    // decided as an unknown user's, and timed beside the others.
    app.services()
        .tenants
        .create(
            "acme".into(),
            String::new(),
            vec!["acme.test".into()],
            Default::default(),
            &bench,
        )
        .await?;
    let (_, acme_key) = app
        .services()
        .callers
        .create_caller(
            NewCaller {
                tenant: Some("acme".into()),
                ..NewCaller::plain("acme-proxy".into(), Role::Authenticator)
            },
            &bench,
        )
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(latchkey::app::Listeners::grpc(listener), async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let authed = InterceptedService::new(channel.clone(), Bearer::new(key.expose())?);
    let mut acme = LegacyAuthServiceClient::new(InterceptedService::new(
        channel,
        Bearer::new(acme_key.expose())?,
    ));
    let mut issuer = AppPasswordServiceClient::new(authed.clone());
    let mut accounts = AccountServiceClient::new(authed.clone());
    let mut auth = LegacyAuthServiceClient::new(authed);

    let real = issuer
        .issue_app_password(issue("real", None))
        .await?
        .into_inner();
    let outsider = issuer
        .issue_app_password(issue("outsider@globex.test", None))
        .await?
        .into_inner();
    let other = issuer
        .issue_app_password(issue("other", None))
        .await?
        .into_inner();
    let revoked = issuer
        .issue_app_password(issue("revoked", None))
        .await?
        .into_inner();
    issuer
        .revoke_app_password(RevokeAppPasswordRequest {
            name: revoked.app_password.clone().unwrap_or_default().name,
            reason: String::new(),
        })
        .await?;
    let expired = issuer
        .issue_app_password(issue("expired", Some(60)))
        .await?
        .into_inner();
    let mut idle_request = issue("idle", None);
    idle_request.idle_timeout = Some(prost_types::Duration {
        seconds: 3_600,
        nanos: 0,
    });
    let idle = issuer.issue_app_password(idle_request).await?.into_inner();
    let suspended = issuer
        .issue_app_password(issue("suspended", None))
        .await?
        .into_inner();
    issuer
        .suspend_app_password(SuspendAppPasswordRequest {
            name: suspended.app_password.clone().unwrap_or_default().name,
            reason: String::new(),
        })
        .await?;
    let disabled = issuer
        .issue_app_password(issue("disabled", None))
        .await?
        .into_inner();
    accounts
        .disable_account(DisableAccountRequest {
            name: "accounts/disabled".into(),
            reason: String::new(),
        })
        .await?;
    // Past the expiry (60 s) and the idle timeout (an hour, never used).
    clock.advance(Duration::from_secs(3_700));
    drop(real);

    // A version 1 secret (28 letters, no check), as devices issued before
    // version 2 still send; and a version 2 secret whose check fails,
    // which is refused from its text alone, without argon2 (measured and
    // shown, not compared: it is meant to be faster, and tells nothing of
    // the account).
    let version_1 = Secret::generate_version_1()?.display().to_string();
    let mut check_failed = other.secret.clone();
    let last = check_failed.pop().unwrap_or('a');
    check_failed.push(if last == 'z' { 'a' } else { 'z' });
    // The last compared case is asked by acme's proxy, with the account's
    // right password: outside its tenant, it is an unknown user to that
    // proxy.
    let cases: [(&str, &str, &str, FailureReason); 10] = [
        (
            "unknown user",
            "nobody",
            &other.secret,
            FailureReason::InvalidCredentials,
        ),
        (
            "wrong password",
            "real",
            &other.secret,
            FailureReason::InvalidCredentials,
        ),
        (
            "revoked",
            "revoked",
            &revoked.secret,
            FailureReason::Revoked,
        ),
        (
            "expired",
            "expired",
            &expired.secret,
            FailureReason::Expired,
        ),
        (
            "idle-expired",
            "idle",
            &idle.secret,
            FailureReason::IdleExpired,
        ),
        (
            "suspended",
            "suspended",
            &suspended.secret,
            FailureReason::Suspended,
        ),
        (
            "disabled",
            "disabled",
            &disabled.secret,
            FailureReason::AccountDisabled,
        ),
        (
            "wrong password (version 1)",
            "real",
            &version_1,
            FailureReason::InvalidCredentials,
        ),
        (
            "out of tenant",
            "outsider@globex.test",
            &outsider.secret,
            FailureReason::InvalidCredentials,
        ),
        (
            "check failed (not compared)",
            "real",
            &check_failed,
            FailureReason::InvalidCredentials,
        ),
    ];
    let out_of_tenant = cases.len() - 2;
    let compared = cases.len() - 1;
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); cases.len()];
    // Warm up connections, caches and the allocator before measuring.
    for (index, (_, username, password, _)) in cases.iter().enumerate() {
        let client = if index == out_of_tenant {
            &mut acme
        } else {
            &mut auth
        };
        for _ in 0..5 {
            client.authenticate(login(username, password, 0)).await?;
        }
    }
    for round in 0..ROUNDS {
        // Rotate the order each round, so no case always follows another.
        for i in 0..cases.len() {
            let index = (round + i) % cases.len();
            let (name, username, password, expected) = cases[index];
            let client = if index == out_of_tenant {
                &mut acme
            } else {
                &mut auth
            };
            let started = Instant::now();
            let response = client
                .authenticate(login(username, password, round))
                .await?
                .into_inner();
            samples[index].push(started.elapsed());
            if response.failure_reason() != expected {
                return Err(format!("{name}: expected {expected:?}, got {response:?}").into());
            }
        }
    }

    let medians: Vec<Duration> = samples.iter_mut().map(|s| median(s)).collect();
    let fastest = medians[..compared]
        .iter()
        .min()
        .copied()
        .unwrap_or_default();
    let slowest = medians[..compared]
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    let spread = (slowest.as_secs_f64() - fastest.as_secs_f64()) / fastest.as_secs_f64();
    let mut table = String::from("| case | median | p90 |\n|---|---|---|\n");
    for ((name, ..), (median, samples)) in cases.iter().zip(medians.iter().zip(&samples)) {
        let p90 = samples[samples.len() * 9 / 10];
        table.push_str(&format!(
            "| {name} | {:.2} ms | {:.2} ms |\n",
            median.as_secs_f64() * 1000.0,
            p90.as_secs_f64() * 1000.0
        ));
    }
    table.push_str(&format!(
        "\nslowest median / fastest median - 1 = {:.2}% (limit {:.0}%), {ROUNDS} interleaved rounds, argon2id m={} KiB t={} p={}\n",
        spread * 100.0,
        TOLERANCE * 100.0,
        config.argon2.memory_kib,
        config.argon2.iterations,
        config.argon2.parallelism,
    ));
    println!("{table}");
    std::fs::write("target/timing.md", &table)?;

    let _ = stop.send(());
    server.await??;
    if spread > TOLERANCE {
        return Err(format!("failure latencies differ by {:.2}%", spread * 100.0).into());
    }
    Ok(())
}

/// Each round from another address, as a spray would come.
fn login(username: &str, password: &str, round: usize) -> AuthenticateRequest {
    AuthenticateRequest {
        username: username.to_owned(),
        password: password.to_owned(),
        protocol: Protocol::Imap as i32,
        client_ip: format!(
            "10.{}.{}.{}",
            round / 65536 % 256,
            round / 256 % 256,
            round % 256
        ),
        ..Default::default()
    }
}
