//! What failed logins leave behind in a replica's memory is bounded
//! (README, "What failed logins leave behind"): a spray of distinct
//! failures from many networks, sent past every bound of a memory made
//! small (`throttle.remembered_guesses` 16: 16 guesses, 8 of them for
//! unknown accounts, and 16 blocks), keeps each part at its bound, read
//! from `/metrics`; and at the bound the server falls back to the path
//! with no memory, which is still correct: a forgotten guess is verified
//! and counted again, a block not remembered is read, a right password
//! signs in and a wrong one is counted. Asserted by counting gauges,
//! argon2 runs, reads and stored failures. The in-process server shares
//! its RSS with the rest of the suite, so the process's own bound is held
//! on the real binary (the last test here), and measured further by the
//! load bench (`--spray-only`).

use latchkey::domain::login::throttle::Scopes;
use latchkey::domain::shared::username::Username;
use latchkey::grpc::pb::{FailureReason, Protocol};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;
use crate::metrics::{sample, scrape, scrape_at};

backend_tests!(a_spray_past_every_bound_stays_at_it_and_still_verifies_and_counts);

const CAPACITY: usize = 16;

/// The gauge `latchkey_{name}`, scraped as Prometheus would.
async fn gauge(server: &TestServer, name: &str) -> usize {
    let (_, body) = scrape(server).await;
    let value = sample(&body, &format!("latchkey_{name}"))
        .unwrap_or_else(|| panic!("no latchkey_{name} in\n{body}"));
    value as usize
}

/// The address of attacker network `n`: an IPv6 /64 or an IPv4 address
/// (each its own source), in turn; `group` keeps the phases apart.
fn network(group: u32, n: u32) -> String {
    if n % 2 == 0 {
        format!("2001:db8:{group:x}:{n:x}::1")
    } else {
        format!("198.{}.{group}.{n}", 18 + group / 256)
    }
}

fn source_key(username: &str, ip: &str) -> String {
    let scopes = Scopes::of(
        &Username::parse(username).unwrap(),
        ip.parse().unwrap(),
        None,
    );
    scopes.source.key.as_str().to_owned()
}

fn pair_key(username: &str, ip: &str) -> String {
    let scopes = Scopes::of(
        &Username::parse(username).unwrap(),
        ip.parse().unwrap(),
        None,
    );
    scopes.pair.key.as_str().to_owned()
}

async fn wrong(server: &TestServer, username: &str, n: u32, ip: &str) -> FailureReason {
    let response = login_with(server, username, &wrong_secret(n), Protocol::Imap, ip).await;
    assert!(!response.authenticated, "{response:?}");
    response.failure_reason()
}

async fn a_spray_past_every_bound_stays_at_it_and_still_verifies_and_counts(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.throttle.remembered_guesses = CAPACITY;
        config.throttle.source_limit = 3;
    })
    .await;
    let (_, secret) = issue_simple(&server, "hugo").await;
    assert_eq!(
        gauge(&server, "remembered_guesses_capacity").await,
        CAPACITY
    );
    assert_eq!(gauge(&server, "remembered_blocks_capacity").await, CAPACITY);

    // Guesses: 80 for unknown accounts from 40 networks (two each, under
    // the source limit), then 20 for an existing account from 20 more.
    for n in 0..40 {
        for i in 0..2 {
            let reason = wrong(&server, &format!("ghost{n}-{i}"), i, &network(1, n)).await;
            assert_eq!(reason, FailureReason::InvalidCredentials);
        }
    }
    assert_eq!(
        gauge(&server, "remembered_guesses").await,
        CAPACITY / 2,
        "guesses for unknown accounts hold half the memory"
    );
    for n in 0..20 {
        let reason = wrong(&server, "hugo", n, &network(2, n)).await;
        assert_eq!(reason, FailureReason::InvalidCredentials);
    }
    assert_eq!(gauge(&server, "remembered_guesses").await, CAPACITY);

    // The first guess of the spray was pushed out: sent again, it is
    // verified and counted again (its network's third failure).
    let first = network(1, 0);
    let argon2 = server.services.logins.stats().argon2_verifications;
    assert_eq!(
        wrong(&server, "ghost0-0", 0, &first).await,
        FailureReason::InvalidCredentials
    );
    assert_eq!(
        server.services.logins.stats().argon2_verifications,
        argon2 + 1,
        "verified again"
    );
    assert_eq!(
        stored_failures(&server, &source_key("ghost0-0", &first)).await,
        3,
        "counted again"
    );

    // Blocks: 24 more networks, three failures each, each then blocked.
    for n in 0..24 {
        for i in 0..3 {
            let reason = wrong(&server, &format!("wraith{n}-{i}"), i, &network(3, n)).await;
            assert_eq!(reason, FailureReason::InvalidCredentials);
        }
    }
    assert_eq!(gauge(&server, "remembered_blocks").await, CAPACITY);
    // A block remembered refuses with no read; one past the bound is read,
    // and refuses all the same, with no argon2 either way.
    let stats = server.services.logins.stats();
    assert_eq!(
        wrong(&server, "wraith0-9", 9, &network(3, 0)).await,
        FailureReason::Throttled
    );
    assert_eq!(
        server.services.logins.stats().login_reads,
        stats.login_reads
    );
    assert_eq!(
        wrong(&server, "wraith23-9", 9, &network(3, 23)).await,
        FailureReason::Throttled
    );
    let after = server.services.logins.stats();
    assert_eq!(after.login_reads, stats.login_reads + 1, "read once");
    assert_eq!(after.argon2_verifications, stats.argon2_verifications);

    // At the bound, the owner signs in, and a new wrong guess is counted.
    assert!(
        login_with(&server, "hugo", &secret, Protocol::Imap, "203.0.113.5")
            .await
            .authenticated
    );
    assert_eq!(
        wrong(&server, "hugo", 99, "203.0.113.6").await,
        FailureReason::InvalidCredentials
    );
    assert_eq!(
        stored_failures(&server, &pair_key("hugo", "203.0.113.6")).await,
        1
    );

    // Every part is still at or under its bound.
    assert_eq!(gauge(&server, "remembered_guesses").await, CAPACITY);
    assert_eq!(gauge(&server, "remembered_blocks").await, CAPACITY);
    assert!(gauge(&server, "throttled_kinds_pending").await <= 1_000);
    assert!(gauge(&server, "coalesced_events_pending").await <= CAPACITY);
    server.stop().await;
}

/// The stated bound on the process, not only on its parts (README, "What
/// failed logins leave behind": RSS grows by at most 100 MiB): the real
/// binary with its default memory settings, on SQLite, sprayed with
/// distinct wrong passwords, half for 1,000 accounts and half for unknown
/// ones, each from a network of its own, until the remembered guesses are
/// at their bound (50,000) and well past it. Its RSS is read from /proc
/// before and at the end (the peak, VmHWM). Argon2 is at its cheapest and
/// `throttle.source_limit` 1 makes each failure leave a block as well (the
/// worst case), as in the load bench's spray, which measures the same to
/// 300,000 failures (BENCHMARKS.md, "The spray").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_rss_stays_within_the_stated_bound_past_every_part() {
    use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
    use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
    use tonic::service::interceptor::InterceptedService;
    use tonic::transport::Channel;

    use crate::common::bearer::Bearer;

    /// README's figure, in KiB.
    const BOUND_KIB: u64 = 100 * 1024;
    const ACCOUNTS: usize = 1_000;
    const FAILURES: u64 = 70_000;
    const TASKS: u64 = 32;

    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let migrated = crate::cli::latchkey(&url, &["migrate"]);
    assert!(migrated.status.success(), "{migrated:?}");
    let key_of = |role: &str| {
        let added = crate::cli::latchkey(&url, &["caller", "add", role, "--role", role]);
        assert!(added.status.success(), "{added:?}");
        String::from_utf8(added.stdout).unwrap().trim().to_owned()
    };
    let (issuer, authenticator) = (key_of("issuer"), key_of("authenticator"));
    let (mut server, lines) = crate::cli::serve_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--database-url",
            url.as_str(),
        ],
        &[
            ("LATCHKEY_ARGON2__MEMORY_KIB", "8"),
            ("LATCHKEY_ARGON2__ITERATIONS", "1"),
            ("LATCHKEY_THROTTLE__SOURCE_LIMIT", "1"),
            // The accounts are issued at once, by one caller.
            ("LATCHKEY_APP_PASSWORDS__CALLER_ISSUES_PER_MINUTE", "100000"),
        ],
        2,
    )
    .await;
    let pid = server.leader().id();
    let address = |prefix: &str| -> std::net::SocketAddr {
        lines
            .iter()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {lines:?}"))
            .parse()
            .unwrap()
    };
    let (grpc, metrics) = (
        address("latchkey: listening on "),
        address("latchkey: metrics listening on "),
    );
    let status_kib = |field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    };
    let gauge = |name: &'static str| async move {
        let (_, body) = scrape_at(metrics).await;
        sample(&body, &format!("latchkey_{name}")).unwrap_or_else(|| panic!("no {name}")) as u64
    };
    let channels = futures::future::join_all((0..4).map(|_| async {
        tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }))
    .await;
    let with = |channel: &Channel, key: &str| {
        InterceptedService::new(channel.clone(), Bearer::new(key).unwrap())
    };

    // 1,000 accounts, each with an app password.
    let mut issuers = AppPasswordServiceClient::new(with(&channels[0], &issuer));
    for n in 0..ACCOUNTS {
        issuers
            .issue_app_password(issue_request(
                &format!("user{n}"),
                "Mail",
                &[Protocol::Imap],
            ))
            .await
            .unwrap();
    }
    let before = status_kib("VmRSS");

    let sent = std::sync::atomic::AtomicU64::new(0);
    let refused = std::sync::atomic::AtomicU64::new(0);
    let busy = std::sync::atomic::AtomicU64::new(0);
    futures::future::join_all((0..TASKS).map(|task| {
        let mut auth =
            LegacyAuthServiceClient::new(with(&channels[task as usize % 4], &authenticator));
        let (sent, refused, busy) = (&sent, &refused, &busy);
        async move {
            loop {
                let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= FAILURES {
                    break;
                }
                let user = if n % 4 < 2 {
                    format!("nobody{n}")
                } else {
                    format!("user{}", (n / 4) % ACCOUNTS as u64)
                };
                let ip = if n % 2 == 0 {
                    let v4 = 0x0b00_0000 + n;
                    std::net::Ipv4Addr::from(u32::try_from(v4).unwrap()).to_string()
                } else {
                    format!("2001:db8:{:x}:{:x}::1", n >> 16, n & 0xffff)
                };
                let secret = wrong_secret(u32::try_from(n).unwrap());
                // A busy answer (a scope's guess in flight, a full hashing
                // queue) on a slow machine is counted, not fatal.
                match auth
                    .authenticate(login_request(&user, &secret, Protocol::Imap, &ip))
                    .await
                {
                    Ok(answer) if !answer.get_ref().authenticated => {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) => panic!("a wrong password signed in"),
                    Err(status) => {
                        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                        busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }
    }))
    .await;

    let capacity = gauge("remembered_guesses_capacity").await;
    assert_eq!(capacity, 50_000, "the default bound");
    assert_eq!(
        gauge("remembered_guesses").await,
        capacity,
        "the spray reached the bound"
    );
    assert!(gauge("remembered_blocks").await <= gauge("remembered_blocks_capacity").await);
    let (refused, busy) = (refused.into_inner(), busy.into_inner());
    assert_eq!(refused + busy, FAILURES, "every guess was refused");
    assert!(busy * 100 <= FAILURES, "{busy} busy answers: more than 1%");
    let (peak, now) = (status_kib("VmHWM"), status_kib("VmRSS"));
    assert!(
        peak.saturating_sub(before) <= BOUND_KIB,
        "RSS {before} KiB before the spray, {now} after, {peak} at the peak: more than \
         {BOUND_KIB} KiB of growth"
    );
    eprintln!(
        "RSS {before} KiB before, {now} after, peak {peak} (+{} KiB)",
        peak - before
    );
}
