//! What failed logins leave behind in a replica's memory is bounded
//! (README, "What failed logins leave behind"): a spray of distinct
//! failures from many networks, sent past every bound of a memory made
//! small (`throttle.remembered_guesses` 16: 16 guesses, 8 of them for
//! unknown accounts, and 16 blocks), keeps each part at its bound, read
//! from `/metrics`; and at the bound the server falls back to the path
//! with no memory, which is still correct: a forgotten guess is verified
//! and counted again, a block not remembered is read, a right password
//! signs in and a wrong one is counted. Asserted by counting gauges,
//! argon2 runs, reads and stored failures. RSS is the load bench's to
//! measure (`--spray-only`): this server shares its process with the rest
//! of the suite.

use latchkey::domain::login::throttle::Scopes;
use latchkey::domain::shared::username::Username;
use latchkey::grpc::pb::{FailureReason, Protocol};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;
use crate::metrics::{sample, scrape};

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
    let scopes = Scopes::of(&Username::parse(username).unwrap(), ip.parse().unwrap());
    scopes.source.key.as_str().to_owned()
}

fn pair_key(username: &str, ip: &str) -> String {
    let scopes = Scopes::of(&Username::parse(username).unwrap(), ip.parse().unwrap());
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
