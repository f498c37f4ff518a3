//! The fleet (issue 20): three replicas on one PostgreSQL database, a
//! client spreading logins round-robin over them as a balancer would, and
//! `--fleet-devices` devices (20,000) each signing in again and again, with
//! a rolling restart of the three, one by one, in the middle. Run twice,
//! side by side: with warm verifiers (every replica given one key file)
//! and without (each process's own cache, as before). Then the restart
//! burst: 1,000 known devices signing in at once right after all three
//! restarted.
//!
//! The devices are seeded in the database directly (one secret, hashed
//! once with the default argon2 parameters, on every device's account:
//! the work per login is the same as with a secret each). A balancer takes
//! a replica out of its rotation before it is stopped and puts the new
//! process back once it answers; that is what the client does, so a
//! refusal counted here is a refusal a real client would see.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use latchkey::domain::secrets::format::Secret;
use latchkey::domain::secrets::hashing::{HashParams, Hasher};
use latchkey::domain::secrets::pool::HashPoolConfig;
use sea_orm::{ConnectionTrait, Database};
use tonic::transport::Channel;

use crate::bearer::Bearer;
use crate::bench::authenticate;
use crate::drive::{drive, Run, Until};
use crate::options::Options;
use crate::report::{ms, Report};
use crate::scenarios::in_fresh_database;
use crate::server::{metric, Server};
use crate::BoxError;

const REPLICAS: usize = 3;
const BURST: usize = 1_000;
const ARGON2: &str = "latchkey_argon2_verifications_total";
/// The protocol bits stored for IMAP (`1 << code`).
const IMAP_BITS: i64 = 1 << 1;

/// One variant's figures.
pub struct FleetRun {
    pub label: &'static str,
    /// Every device once, from cold (with warm verifiers only).
    pub first_pass: Option<Run>,
    /// The steady run, with the rolling restart in its middle.
    pub steady: Run,
    /// argon2 runs of every process of the variant, over all its phases.
    pub argon2: f64,
    /// argon2 runs during the steady run alone.
    pub steady_argon2: f64,
    /// The restart burst (with warm verifiers only): answers and argon2.
    pub burst: Option<(Run, f64)>,
}

pub struct Fleet {
    pub devices: usize,
    pub with: FleetRun,
    pub without: FleetRun,
}

pub async fn fleet(options: &Options, dir: &std::path::Path) -> Result<Fleet, BoxError> {
    let admin = options
        .postgres_url
        .as_deref()
        .ok_or("the fleet needs --postgres-url")?;
    let devices = options.fleet_devices;
    let key = dir.join("warm.key");
    std::fs::write(&key, rand::random::<[u8; 32]>())?;
    let keyed = vec![(
        "LATCHKEY_VERIFIED_CACHE__KEY_FILE".to_owned(),
        key.display().to_string(),
    )];
    eprintln!("fleet: with warm verifiers, {devices} devices");
    let with = in_fresh_database(admin, "fleet", |url| {
        variant("with warm verifiers", url, keyed, options, dir, true)
    })
    .await?;
    eprintln!("fleet: without (each process's own cache)");
    let without = in_fresh_database(admin, "fleet", |url| {
        variant(
            "without (per-process cache)",
            url,
            Vec::new(),
            options,
            dir,
            false,
        )
    })
    .await?;
    Ok(Fleet {
        devices,
        with,
        without,
    })
}

/// The replicas a balancer sends logins to now, and every login's place.
struct Rotation {
    channels: RwLock<Vec<Channel>>,
}

impl Rotation {
    fn pick(&self, n: u64) -> Option<Channel> {
        let channels = self.channels.read().ok()?;
        let at = usize::try_from(n).ok()? % channels.len().max(1);
        channels.get(at).cloned()
    }

    fn set(&self, channels: Vec<Channel>) {
        if let Ok(mut current) = self.channels.write() {
            *current = channels;
        }
    }
}

async fn variant(
    label: &'static str,
    url: String,
    env: Vec<(String, String)>,
    options: &Options,
    dir: &std::path::Path,
    warm: bool,
) -> Result<FleetRun, BoxError> {
    let devices = options.fleet_devices;
    let mut env = env;
    env.push((
        "LATCHKEY_USAGE__FLUSH_INTERVAL".to_owned(),
        format!("{FLUSH_SECS}s"),
    ));
    // The first process migrates the database; the devices go in then.
    let first = Server::start_with(&url, dir, env).await?;
    let secret = seed_devices(&url, devices).await?;
    let mut replicas = vec![first];
    for name in ["b", "c"] {
        let replica = replicas[0].replica(name).await?;
        replicas.push(replica);
    }
    let key = Bearer::new(&replicas[0].authenticator_key)?;
    let rotation = Arc::new(Rotation {
        channels: RwLock::new(channels(&replicas).await?),
    });
    let login = {
        let (rotation, key, secret) = (Arc::clone(&rotation), key.clone(), secret.clone());
        move |n: u64, _: Channel| {
            let (rotation, key, secret) = (Arc::clone(&rotation), key.clone(), secret.clone());
            async move {
                let device = usize::try_from(n).unwrap_or(0) % devices;
                let channel = rotation.pick(n)?;
                let ip = format!("10.{}.{}.1", device / 256 % 256, device % 256);
                Some(authenticate(channel, &key, format!("fleet-{device}"), secret, ip).await)
            }
        }
    };
    let placeholder = replicas[0].channel().await?;
    // argon2 runs of processes already stopped, and of each running one
    // when the steady run began.
    let mut spent = 0.0;

    let first_pass = if warm {
        eprintln!("fleet: every device once, from cold");
        // drive numbers the logins from 0: device n, once each.
        let limited = {
            let login = login.clone();
            move |n: u64, channel: Channel| {
                let login = login.clone();
                async move {
                    if usize::try_from(n).ok()? >= devices {
                        return None;
                    }
                    login(n, channel).await
                }
            }
        };
        // Each task stops when the devices are all done.
        let never = Arc::new(AtomicBool::new(false));
        let run = drive(
            std::slice::from_ref(&placeholder),
            options.concurrency,
            Until::Stopped(never),
            limited,
        )
        .await;
        flushed().await;
        Some(run)
    } else {
        None
    };

    let mut at_start = Vec::new();
    for replica in &replicas {
        at_start.push(metric(&replica.metrics_addr, ARGON2).await?);
    }
    eprintln!("fleet: {label}: steady run, rolling restart in the middle");
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (placeholder, stop) = (placeholder.clone(), Arc::clone(&stop));
        let (login, concurrency) = (login.clone(), options.concurrency);
        tokio::spawn(async move {
            drive(
                std::slice::from_ref(&placeholder),
                concurrency,
                Until::Stopped(stop),
                login,
            )
            .await
        })
    };
    let half = options.fleet_duration / 2;
    tokio::time::sleep(half / 2).await;
    let mut steady_argon2 = 0.0;
    for index in 0..REPLICAS {
        // Out of the rotation, stopped, started anew, and back in.
        let others: Vec<Channel> = channels(&replicas)
            .await?
            .into_iter()
            .enumerate()
            .filter(|(at, _)| *at != index)
            .map(|(_, channel)| channel)
            .collect();
        rotation.set(others);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ran = metric(&replicas[index].metrics_addr, ARGON2).await?;
        steady_argon2 += ran - at_start[index];
        spent += ran;
        at_start[index] = 0.0;
        replicas[index].restart().await?;
        rotation.set(channels(&replicas).await?);
        tokio::time::sleep(half / (2 * REPLICAS as u32)).await;
    }
    tokio::time::sleep(half).await;
    stop.store(true, Ordering::Relaxed);
    let steady = load.await?;
    for (index, replica) in replicas.iter().enumerate() {
        let ran = metric(&replica.metrics_addr, ARGON2).await?;
        steady_argon2 += ran - at_start[index];
    }

    let burst = if warm {
        eprintln!("fleet: restart burst, {BURST} devices at once");
        flushed().await;
        for replica in &mut replicas {
            spent += metric(&replica.metrics_addr, ARGON2).await?;
            replica.restart().await?;
        }
        rotation.set(channels(&replicas).await?);
        let once = {
            let login = login.clone();
            move |n: u64, channel: Channel| {
                let login = login.clone();
                async move {
                    if usize::try_from(n).ok()? >= BURST {
                        return None;
                    }
                    // Devices spread over the fleet, each known.
                    login(n * (devices / BURST).max(1) as u64, channel).await
                }
            }
        };
        let run = drive(
            std::slice::from_ref(&placeholder),
            BURST,
            Until::Elapsed(Duration::from_secs(60)),
            once,
        )
        .await;
        let mut burst_argon2 = 0.0;
        for replica in &replicas {
            burst_argon2 += metric(&replica.metrics_addr, ARGON2).await?;
        }
        Some((run, burst_argon2))
    } else {
        None
    };
    for replica in &replicas {
        spent += metric(&replica.metrics_addr, ARGON2).await?;
    }
    for replica in &mut replicas {
        replica.stop()?;
    }
    Ok(FleetRun {
        label,
        first_pass,
        steady,
        argon2: spent,
        steady_argon2,
        burst,
    })
}

async fn channels(replicas: &[Server]) -> Result<Vec<Channel>, BoxError> {
    let mut channels = Vec::new();
    for replica in replicas {
        channels.push(replica.channel().await?);
    }
    Ok(channels)
}

/// How often each replica writes its pending usage, and with it the warm
/// verifiers it made: the default minute, shortened so the run need not
/// wait a minute after the first pass (a device's first success from a new
/// network is written at once anyway).
const FLUSH_SECS: u64 = 2;

/// Waits until every replica's flush has written what the logins so far
/// left pending.
async fn flushed() {
    tokio::time::sleep(Duration::from_secs(FLUSH_SECS + 1)).await;
}

/// `devices` accounts `fleet-N`, each with one app password for IMAP whose
/// secret is the one returned (typed as a person would).
async fn seed_devices(url: &str, devices: usize) -> Result<String, BoxError> {
    let hasher = Hasher::new(HashParams::default(), HashPoolConfig::default()).await?;
    let secret = Secret::generate()?;
    let hash = hasher
        .hash(secret.clone(), hasher.default_admission())
        .await?;
    let selector = secret.selector().to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let db = Database::connect(url).await?;
    db.execute_unprepared(&format!(
        "INSERT INTO account (username, created_at, issue_count) \
         SELECT 'fleet-' || i, {now}, 1 FROM generate_series(0, {}) AS i",
        devices - 1
    ))
    .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO app_password (id, account_id, selector, secret_hash, display_name, protocols, \
           allowed_networks, issued_by, created_at, use_count, seen_networks) \
         SELECT gen_random_uuid(), id, '{selector}', '{hash}', 'Phone', {IMAP_BITS}, '', 'bench', \
           {now}, 1, '' FROM account WHERE username LIKE 'fleet-%'"
    ))
    .await?;
    db.execute_unprepared("ANALYZE").await?;
    db.close().await?;
    Ok(secret.display().to_string())
}

impl Fleet {
    pub fn rows(&self, report: &mut Report) {
        let mut section = format!(
            "\n### The fleet: {REPLICAS} replicas on PostgreSQL, {} devices, a rolling restart\n\n\
             | run | logins | logins/s | p50 | p99 | refused | argon2 runs | argon2 per 1,000 logins |\n\
             |---|---|---|---|---|---|---|---|\n",
            self.devices
        );
        for run in [&self.with, &self.without] {
            if let Some(first) = &run.first_pass {
                section.push_str(&line(
                    &format!("{}: every device once, cold", run.label),
                    first,
                    None,
                ));
            }
            section.push_str(&line(
                &format!("{}: steady, rolling restart", run.label),
                &run.steady,
                Some(run.steady_argon2),
            ));
            if let Some((burst, argon2)) = &run.burst {
                section.push_str(&line(
                    &format!("{}: {BURST} at once right after a restart", run.label),
                    burst,
                    Some(*argon2),
                ));
            }
        }
        report.sections.push_str(&section);
    }

    pub fn checks(&self, report: &mut Report) {
        let (with, without) = (&self.with, &self.without);
        report.check(
            "argon2 runs over the whole fleet run ≤ devices (warm verifiers)",
            format!("{:.0} vs {}", with.argon2, self.devices),
            with.argon2 <= self.devices as f64,
        );
        let refused = with.steady.unexpected(&["success"]);
        report.check(
            "no refusal during the rolling restart (warm verifiers)",
            format!("{refused} refused of {}", with.steady.latencies.len()),
            refused == 0,
        );
        let ratio = with.steady.rate() / without.steady.rate().max(f64::MIN_POSITIVE);
        report.check(
            "fleet logins/s ≥ 25 × without warm verifiers",
            format!(
                "{:.0}/s vs {:.0}/s = {ratio:.1}×",
                with.steady.rate(),
                without.steady.rate()
            ),
            ratio >= 25.0,
        );
        if let Some((burst, argon2)) = &with.burst {
            let served = burst.outcomes.get("success").copied().unwrap_or(0);
            report.check(
                "restart burst: all served, no argon2",
                format!("{served} of {BURST} served, {argon2:.0} argon2 runs"),
                served == BURST as u64 && *argon2 == 0.0,
            );
        }
    }
}

fn line(label: &str, run: &Run, argon2: Option<f64>) -> String {
    let logins = run.latencies.len();
    let refused = run.unexpected(&["success"]);
    let (argon2, per_1000) = match argon2 {
        Some(runs) => (
            format!("{runs:.0}"),
            format!("{:.1}", runs * 1000.0 / (logins.max(1) as f64)),
        ),
        None => ("-".to_owned(), "-".to_owned()),
    };
    format!(
        "| {label} | {logins} | {:.0} | {} | {} | {refused} | {argon2} | {per_1000} |\n",
        run.rate(),
        ms(run.quantile(0.5)),
        ms(run.quantile(0.99)),
    )
}
