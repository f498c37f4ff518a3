//! The front door under attack: each test sends an attack on Authenticate
//! as an outsider would (bounded, to 127.0.0.1) and asserts by counting
//! what happened: argon2 runs (the server's own counter, as /metrics shows
//! it), rows in the audit trail and the throttle table, and answers.

use std::time::Duration;

use latchkey::config::Config;
use latchkey::domain::callers::model::Role;
use latchkey::domain::login::throttle::Scopes;
use latchkey::domain::secrets::hashing::HashParams;
use latchkey::domain::shared::username::Username;
use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use latchkey::grpc::pb::{FailureReason, Protocol};
use tonic::Code;

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    repeated_wrong_guesses_cost_one_argon2_and_one_row,
    a_stale_device_beside_its_owner_is_counted_once,
    repeats_of_many_accounts_from_one_address_cost_one_argon2_each,
    a_burst_of_one_guess_runs_argon2_once,
    concurrent_guesses_for_one_pair_stop_at_its_limit,
    concurrent_guesses_from_many_addresses_stop_at_the_account_limit,
    concurrent_guesses_for_many_accounts_stop_at_the_source_limit,
    two_replicas_let_at_most_twice_the_limit_through,
    guesses_whose_caller_leaves_are_counted_or_never_run,
);

/// Rows of failed logins in the audit trail, and the repeats they count.
async fn failure_rows(server: &TestServer) -> (i64, i64) {
    failed_login_rows(server, "%").await
}

fn pair_of(username: &str, ip: &str) -> Scopes {
    Scopes::of(
        &Username::parse(username).unwrap(),
        ip.parse().unwrap(),
        None,
    )
}

/// Waits until no guess is in flight or queued for argon2 (the server
/// finishes what it started after its callers left).
async fn settled(server: &TestServer) {
    for _ in 0..500 {
        let stats = server.services.logins.stats();
        if stats.memory.in_flight == 0 && stats.hash_pool_queued == 0 && stats.hash_pool_busy == 0 {
            // Effects are applied before a place is given back.
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("guesses still in flight after 10 s");
}

/// Attack 1: the same wrong password for one account from one address, 200
/// times in a row.
async fn repeated_wrong_guesses_cost_one_argon2_and_one_row(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, secret) = issue_simple(&server, "rita").await;
    let before = argon2_runs(&server);
    for _ in 0..200 {
        let response = login_with(
            &server,
            "rita",
            &wrong_secret(7),
            Protocol::Imap,
            "192.0.2.66",
        )
        .await;
        assert_refused(&response, FailureReason::InvalidCredentials);
    }
    assert_eq!(
        argon2_runs(&server) - before,
        1,
        "one verification for 200 repeats"
    );
    assert_eq!(
        failure_rows(&server).await,
        (1, 0),
        "one row before the flush"
    );
    let scopes = pair_of("rita", "192.0.2.66");
    assert_eq!(
        stored_failures(&server, &scopes.pair.key).await,
        1,
        "counted once"
    );
    assert_eq!(stored_failures(&server, &scopes.account.key).await, 1);

    // The flush audits the repeats coalesced: one more row, counting 199.
    assert_eq!(server.services.logins.flush_repeats().await.unwrap(), 1);
    assert_eq!(failure_rows(&server).await, (2, 199));
    assert_eq!(server.services.logins.flush_repeats().await.unwrap(), 0);

    // The owner is not locked out, and a revoked password repeated is
    // refused as revoked, from memory after its first verification.
    let owner = login_with(&server, "rita", &secret, Protocol::Imap, "192.0.2.1").await;
    assert!(owner.authenticated);
    server.stop().await;
}

/// Attack 1, at home: an old laptop repeats an old password while the
/// owner's phone signs in fine from the same address. The phone's successes
/// do not make the laptop's repeats count again (found by review: they
/// used to, until the whole address was blocked).
async fn a_stale_device_beside_its_owner_is_counted_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, secret) = issue_simple(&server, "hugo").await;
    let before = argon2_runs(&server);
    for _ in 0..40 {
        let laptop = login_with(
            &server,
            "hugo",
            &wrong_secret(5),
            Protocol::Imap,
            "192.0.2.90",
        )
        .await;
        assert_refused(&laptop, FailureReason::InvalidCredentials);
        let phone = login_with(&server, "hugo", &secret, Protocol::Imap, "192.0.2.90").await;
        assert!(phone.authenticated, "{phone:?}");
    }
    // One verification of the old password, one of the right one (then the
    // verified-secret cache).
    assert_eq!(argon2_runs(&server) - before, 2);
    let scopes = pair_of("hugo", "192.0.2.90");
    assert_eq!(stored_failures(&server, &scopes.source.key).await, 1);
    assert_eq!(stored_failures(&server, &scopes.account.key).await, 1);
    server.stop().await;
}

/// Attack 1, spread: 20 accounts × 50 repeats from one address.
async fn repeats_of_many_accounts_from_one_address_cost_one_argon2_each(backend: Backend) {
    let server = TestServer::start(backend).await;
    let before = argon2_runs(&server);
    let accounts = (0..20u32).map(|n| {
        let server = &server;
        async move {
            let username = format!("user{n}");
            for _ in 0..50 {
                let response = login_with(
                    server,
                    &username,
                    &wrong_secret(n),
                    Protocol::Imap,
                    "192.0.2.77",
                )
                .await;
                assert_refused(&response, FailureReason::InvalidCredentials);
            }
        }
    });
    futures::future::join_all(accounts).await;
    assert_eq!(argon2_runs(&server) - before, 20);
    assert_eq!(failure_rows(&server).await, (20, 0));
    let source = pair_of("user0", "192.0.2.77").source;
    assert_eq!(stored_failures(&server, &source.key).await, 20);
    server.services.logins.flush_repeats().await.unwrap();
    assert_eq!(failure_rows(&server).await, (40, 20 * 49));
    server.stop().await;
}

/// Attack 1, at once: 200 copies of one wrong guess released together.
async fn a_burst_of_one_guess_runs_argon2_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    issue_simple(&server, "sid").await;
    let before = argon2_runs(&server);
    let burst = (0..200).map(|_| {
        let mut client = server.auth();
        async move {
            client
                .authenticate(login_request(
                    "sid",
                    &wrong_secret(3),
                    Protocol::Imap,
                    "192.0.2.5",
                ))
                .await
                .unwrap()
                .into_inner()
        }
    });
    for response in futures::future::join_all(burst).await {
        assert_refused(&response, FailureReason::InvalidCredentials);
    }
    assert_eq!(argon2_runs(&server) - before, 1);
    assert_eq!(failure_rows(&server).await.0, 1);
    server.stop().await;
}

/// Sends `count` different wrong guesses at once; `target(n)` names the
/// account and address of guess `n`. Returns the answers.
async fn burst(
    server: &TestServer,
    count: u32,
    target: impl Fn(u32) -> (String, String),
) -> Vec<latchkey::grpc::pb::AuthenticateResponse> {
    let attempts = (0..count).map(|n| {
        let mut client = server.auth();
        let (username, ip) = target(n);
        async move {
            client
                .authenticate(login_request(
                    &username,
                    &wrong_secret(n),
                    Protocol::Imap,
                    &ip,
                ))
                .await
                .unwrap()
                .into_inner()
        }
    });
    futures::future::join_all(attempts).await
}

fn refused_or_throttled(responses: &[latchkey::grpc::pb::AuthenticateResponse]) -> usize {
    responses
        .iter()
        .inspect(|r| {
            assert!(
                matches!(
                    r.failure_reason(),
                    FailureReason::InvalidCredentials | FailureReason::Throttled
                ),
                "{r:?}"
            );
        })
        .filter(|r| r.failure_reason() == FailureReason::Throttled)
        .count()
}

/// Asserts that one more wrong guess for `username` from `ip` is throttled.
async fn next_guess_is_throttled(server: &TestServer, username: &str, ip: &str) {
    let next = login_with(server, username, &wrong_secret(999), Protocol::Imap, ip).await;
    assert_eq!(next.failure_reason(), FailureReason::Throttled, "{next:?}");
}

/// Attack 2: 250 different guesses for one account from one address, at
/// once (pair limit 5): exactly the limit reach argon2, the rest are
/// throttled, and so is the next.
async fn concurrent_guesses_for_one_pair_stop_at_its_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    issue_simple(&server, "petra").await;
    let before = argon2_runs(&server);
    let responses = burst(&server, 250, |_| ("petra".into(), "192.0.2.9".into())).await;
    let runs = argon2_runs(&server) - before;
    assert_eq!(runs, 5, "guesses that reached argon2, pair limit 5");
    assert_eq!(refused_or_throttled(&responses), 250 - 5);
    let pair = pair_of("petra", "192.0.2.9").pair;
    assert_eq!(stored_failures(&server, &pair.key).await, runs as i64);
    next_guess_is_throttled(&server, "petra", "192.0.2.9").await;
    server.stop().await;
}

/// Attack 2: 250 addresses against one account, at once (account limit
/// 100; each address, and each pair, is under its own limit): exactly the
/// limit reach argon2, the rest are throttled, and so is the next guess,
/// from an address never seen.
async fn concurrent_guesses_from_many_addresses_stop_at_the_account_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    issue_simple(&server, "amos").await;
    let before = argon2_runs(&server);
    let responses = burst(&server, 250, |n| {
        ("amos".into(), format!("198.51.{}.{}", n / 200, n % 200 + 1))
    })
    .await;
    let runs = argon2_runs(&server) - before;
    assert_eq!(runs, 100, "guesses that reached argon2, account limit 100");
    assert_eq!(refused_or_throttled(&responses), 250 - 100);
    let account = pair_of("amos", "198.51.0.1").account;
    assert_eq!(stored_failures(&server, &account.key).await, 100);
    next_guess_is_throttled(&server, "amos", "198.51.2.1").await;
    assert_eq!(argon2_runs(&server) - before, 100);
    server.stop().await;
}

/// Attack 2: 120 usernames from one address, at once (source limit 30;
/// each account under its own): exactly the limit reach argon2, the rest
/// are throttled, and so is the next guess, for an account never tried.
async fn concurrent_guesses_for_many_accounts_stop_at_the_source_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let before = argon2_runs(&server);
    let responses = burst(&server, 120, |n| {
        (format!("victim{n}"), "203.0.113.50".into())
    })
    .await;
    let runs = argon2_runs(&server) - before;
    assert_eq!(runs, 30, "guesses that reached argon2, source limit 30");
    assert_eq!(refused_or_throttled(&responses), 120 - 30);
    let source = pair_of("victim0", "203.0.113.50").source;
    assert_eq!(stored_failures(&server, &source.key).await, 30);
    next_guess_is_throttled(&server, "victim999", "203.0.113.50").await;
    assert_eq!(argon2_runs(&server) - before, 30);
    server.stop().await;
}

/// Attack 2 across replicas sharing a database: each replica holds the
/// limit on its own, so two let at most twice the pair limit through
/// before the stored block holds on both.
async fn two_replicas_let_at_most_twice_the_limit_through(backend: Backend) {
    let first = TestServer::start(backend).await;
    let second = first.replica_with(|_| {}).await;
    issue_simple(&first, "rhea").await;
    let before = argon2_runs(&first) + argon2_runs(&second);
    let (a, b) = futures::join!(
        burst(&first, 125, |_| ("rhea".into(), "192.0.2.44".into())),
        burst(&second, 125, |_| ("rhea".into(), "192.0.2.44".into())),
    );
    let runs = argon2_runs(&first) + argon2_runs(&second) - before;
    assert!(
        runs <= 10,
        "{runs} guesses reached argon2 on two replicas, pair limit 5"
    );
    assert_eq!(
        refused_or_throttled(&a) + refused_or_throttled(&b),
        250 - runs as usize
    );
    let pair = pair_of("rhea", "192.0.2.44").pair;
    assert_eq!(stored_failures(&first, &pair.key).await, runs as i64);
    for server in [&first, &second] {
        next_guess_is_throttled(server, "rhea", "192.0.2.44").await;
    }
    second.stop().await;
    first.stop().await;
}

/// "The rest wait for a place (until their deadline, then
/// `RESOURCE_EXHAUSTED`: the scope is busy, which says nothing about
/// failures)". A pair with room for one guess: while that guess is being
/// decided, and held there (its failure's write waits on SQLite's write
/// lock, which another connection of the test holds), further guesses of
/// the pair wait for its place until their deadline and are refused
/// SCOPE_BUSY, with no argon2, no stored failure and no row. Once the lock
/// goes, the guess held is answered and counted, once, and its block
/// refuses the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_waiting_on_a_busy_scope_are_refused_and_count_nothing() {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    const ADDRESS: &str = "192.0.2.70";
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.throttle.pair_limit = 1;
        // What a caller that sets no deadline waits, for a place too.
        config.hash_pool.default_wait_ms = 1_000;
        // The held guess's write waits for the lock instead of failing.
        config.database.sqlite_busy_timeout_ms = 60_000;
    })
    .await;
    issue_simple(&server, "lena").await;
    // A first login as the authenticator writes its last use now, not
    // while the lock is held (the clock does not move, so none after).
    let warm = login_with(&server, "warm", "x", Protocol::Imap, "192.0.2.1").await;
    assert_refused(&warm, FailureReason::InvalidCredentials);
    let before = argon2_runs(&server);
    let rows = failure_rows(&server).await;
    let locker = sea_orm::Database::connect(&server.database.url)
        .await
        .unwrap();
    let lock = locker.begin().await.unwrap();
    lock.execute_unprepared("DELETE FROM auth_throttle WHERE scope_key = 'none'")
        .await
        .unwrap();

    let mut client = server.auth();
    let held = tokio::spawn(async move {
        client
            .authenticate(login_request(
                "lena",
                &wrong_secret(1),
                Protocol::Imap,
                ADDRESS,
            ))
            .await
            .unwrap()
            .into_inner()
    });
    // Its password is being checked: it holds the pair's one place until
    // its failure is written, which the lock holds up.
    for _ in 0..500 {
        if argon2_runs(&server) > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        argon2_runs(&server) - before,
        1,
        "the held guess is checked"
    );

    let waiting = (2..6u32).map(|n| {
        let mut client = server.auth();
        async move {
            client
                .authenticate(login_request(
                    "lena",
                    &wrong_secret(n),
                    Protocol::Imap,
                    ADDRESS,
                ))
                .await
                .unwrap_err()
        }
    });
    for status in futures::future::join_all(waiting).await {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(reason_of(&status), "SCOPE_BUSY", "{status:?}");
    }
    assert_eq!(
        argon2_runs(&server) - before,
        1,
        "the refused ran no argon2"
    );

    lock.rollback().await.unwrap();
    locker.close().await.unwrap();
    assert_refused(&held.await.unwrap(), FailureReason::InvalidCredentials);
    let pair = pair_of("lena", ADDRESS).pair;
    assert_eq!(stored_failures(&server, &pair.key).await, 1, "counted once");
    assert_eq!(failure_rows(&server).await, (rows.0 + 1, 0));
    next_guess_is_throttled(&server, "lena", ADDRESS).await;
    assert_eq!(argon2_runs(&server) - before, 1);
    server.stop().await;
}

/// argon2 slow enough that guesses queue for it, and limits high enough
/// that they all reach the queue.
fn slow_argon2_high_limits(config: &mut Config) {
    config.argon2 = HashParams {
        memory_kib: 16 * 1024,
        iterations: 2,
        parallelism: 1,
    };
    config.hash_pool.workers = 1;
    config.throttle.pair_limit = 10_000;
    config.throttle.source_limit = 10_000;
    config.throttle.account_limit = 10_000;
}

/// Attack 3: 300 different guesses whose callers leave early, half by a
/// deadline, half by resetting the stream. Whatever reached argon2 is
/// counted; a job whose caller had gone before it started did not run.
/// (The report's 3 ms and 4 ms were against a release build; this debug
/// build needs longer for the guesses to reach the hashing queue at all.)
async fn guesses_whose_caller_leaves_are_counted_or_never_run(backend: Backend) {
    let server = TestServer::start_with(backend, slow_argon2_high_limits).await;
    issue_simple(&server, "cleo").await;
    let before = argon2_runs(&server);
    let deadline = (0..150u32).map(|n| {
        let mut client = server.auth();
        async move {
            let mut request = tonic::Request::new(login_request(
                "cleo",
                &wrong_secret(n),
                Protocol::Imap,
                "192.0.2.30",
            ));
            request.set_timeout(Duration::from_millis(100));
            client
                .authenticate(request)
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }
    });
    let results = futures::future::join_all(deadline).await;
    assert!(
        results.iter().all(|r| matches!(
            r,
            Ok(()) | Err(Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted)
        )),
        "{results:?}"
    );
    let reset = (150..300u32).map(|n| {
        let mut client = server.auth();
        async move {
            let request = login_request("cleo", &wrong_secret(n), Protocol::Imap, "192.0.2.30");
            // Dropping the call resets its stream.
            // Long enough to reach the hashing queue even on a loaded
            // machine; far shorter than the queue takes to drain.
            let _ = tokio::time::timeout(Duration::from_millis(1000), client.authenticate(request))
                .await;
        }
    });
    futures::future::join_all(reset).await;
    settled(&server).await;

    let runs = argon2_runs(&server) - before;
    let pair = pair_of("cleo", "192.0.2.30").pair;
    // Where a leaving caller's guess stops depends on scheduling: refused
    // at admission (its deadline could not be met), skipped in the hashing
    // queue, or never given its scope's place for a guess in flight. Each
    // way it does not run; what must hold is that not all ran, and that
    // every one that ran is counted.
    let stats = server.services.logins.stats();
    assert!(
        runs < 300,
        "every guess ran: nothing was skipped: {stats:?}"
    );
    assert!(
        stats.hash_pool_skipped + stats.hash_pool_refused + runs <= 300,
        "{stats:?}"
    );
    assert_eq!(
        stored_failures(&server, &pair.key).await,
        runs as i64,
        "every guess that reached argon2 is counted, and no other"
    );
    assert_eq!(failure_rows(&server).await.0, runs as i64);
    server.stop().await;
}

/// Authenticate requests the server has finished with, by any code:
/// answered, or dropped when their caller left.
async fn authenticate_requests(server: &TestServer) -> f64 {
    let (_, body) = crate::metrics::scrape(server).await;
    let series =
        "latchkey_grpc_requests_total{method=\"/latchkey.v1.LegacyAuthService/Authenticate\",code=";
    body.lines()
        .filter_map(|line| line.strip_prefix(series)?.split_once(' '))
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

/// Overload: a burst of cold logins, callers with generous deadlines and
/// callers with tight ones mixed, is served as far as each caller's
/// deadline allows, and nothing is lost or counted twice on the way. Every
/// generous caller is served, though the burst is larger than the old
/// fixed queue of 256; each tight one is served, refused (HASHING_QUEUE_FULL)
/// or gone by its deadline; every verification that ran was answered or
/// had lost its caller, and is counted and audited once. These hold under
/// any scheduling: which tight callers are served depends on how fast the
/// queue drains, so no count of them is asserted. That a job which would
/// not start in time is refused at once, and one whose caller left is
/// skipped, the hashing pool's own tests hold by ordering
/// (src/domain/secrets/pool.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_admitted_by_its_deadline() {
    const GENEROUS: Duration = Duration::from_secs(3_600);
    const TIGHT: Duration = Duration::from_secs(3);
    const BURST: u32 = 600;
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        slow_argon2_high_limits(config);
        // A generous deadline is waited for, not cut at the default 30 s.
        config.server.request_timeout_secs = 2 * GENEROUS.as_secs();
    })
    .await;
    // Five connections of 120 streams each, opened (and their settings
    // learnt) beforehand, so every attempt reaches the server at once.
    let mut connections = Vec::new();
    for _ in 0..5 {
        let channel = server.new_connection_as(Role::Authenticator).await;
        let mut client = LegacyAuthServiceClient::new(channel.clone());
        let _ = client
            .authenticate(login_request("warm", "x", Protocol::Imap, "192.0.2.1"))
            .await;
        connections.push(channel);
    }
    let before = server.services.logins.stats();
    let rows_before = failed_login_rows(&server, "invalid_credentials").await.0;
    let requests_before = authenticate_requests(&server).await;

    // Every other caller generous; each attempt its own account, address
    // and guess, so none waits on another's scope or is a repeat.
    let attempts = (0..BURST).map(|n| {
        let channel = connections[n as usize % connections.len()].clone();
        let generous = n % 2 == 0;
        async move {
            let mut request = tonic::Request::new(login_request(
                &format!("burst{n}"),
                &wrong_secret(n),
                Protocol::Imap,
                &format!("2001:db8:{n:x}::1"),
            ));
            request.set_timeout(if generous { GENEROUS } else { TIGHT });
            let answer = LegacyAuthServiceClient::new(channel)
                .authenticate(request)
                .await
                .map(|response| response.into_inner().failure_reason())
                .map_err(|status| (status.code(), reason_of(&status)));
            (generous, answer)
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let (mut served, mut refused_answers, mut gone) = (0u64, 0u64, 0u64);
    for (generous, answer) in &answers {
        match answer {
            Ok(FailureReason::InvalidCredentials) if !generous => served += 1,
            Ok(FailureReason::InvalidCredentials) => {}
            Err((Code::ResourceExhausted, reason))
                if !generous && reason == "HASHING_QUEUE_FULL" =>
            {
                refused_answers += 1
            }
            Err((Code::DeadlineExceeded | Code::Cancelled, _)) if !generous => gone += 1,
            other => panic!("generous {generous}: {other:?}"),
        }
    }

    // Count once the server is done with every request (a caller that left
    // may be dropped there a moment after it gave up) and with every
    // decision they started.
    for _ in 0..500 {
        if authenticate_requests(&server).await >= requests_before + f64::from(BURST) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        authenticate_requests(&server).await,
        requests_before + f64::from(BURST)
    );
    server.services.logins.settle().await;
    let after = server.services.logins.stats();
    let runs = after.argon2_verifications - before.argon2_verifications;
    let refused = after.hash_pool_refused - before.hash_pool_refused;
    let skipped = after.hash_pool_skipped - before.hash_pool_skipped;
    let counts = format!(
        "runs {runs}, refused {refused}, skipped {skipped}; tight answers: served {served}, \
         refused {refused_answers}, gone {gone}"
    );
    let generous = u64::from(BURST / 2);
    // Each answer was a verification or a refusal of its own...
    assert!(
        runs >= generous + served && refused >= refused_answers,
        "{counts}"
    );
    // ...and each one not answered had lost its caller: none is counted
    // twice, and no job was skipped whose caller stayed.
    assert!(
        (runs - generous - served) + (refused - refused_answers) + skipped <= gone,
        "{counts}"
    );
    assert_eq!(
        failed_login_rows(&server, "invalid_credentials").await.0 - rows_before,
        i64::try_from(runs).unwrap(),
        "every guess that reached argon2 is counted and audited, and no other: {counts}"
    );
    server.stop().await;
}
