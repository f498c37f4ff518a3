//! The front door from the inside: what one issuer key (careless, buggy or
//! stolen) can do beyond its own users. Each test sends the abuse as such a
//! key would and counts what happened: what an answer holds, rows written,
//! answers refused.

use std::time::Duration;

use latchkey::domain::app_passwords::issue_bounds::DEFAULT_ACCOUNT_ISSUES_PER_HOUR;
use latchkey::domain::app_passwords::model::AppPasswordsConfig;
use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use latchkey::grpc::pb::{
    CreateCallerRequest, DisableAccountRequest, EnableAccountRequest, FailureReason,
    IssueAppPasswordResponse, LoginExplanation, Protocol, RevokeAppPasswordRequest,
};
use sea_orm::{ConnectionTrait, Statement};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::harness::{Authed, Backend, TestServer, START};
use crate::common::support::*;

backend_tests!(
    a_password_an_issuer_revoked_shows_it_nothing_of_others,
    an_issue_and_revoke_loop_stops_at_the_account_bound,
    a_callers_issues_are_bounded_per_minute_on_each_replica,
    a_burst_at_one_full_account_spends_nothing_of_the_callers_bound,
);

/// Where the account's owner signs in from.
const HOME: &str = "192.0.2.10";
/// Where someone guesses from.
const GUESSER: &str = "203.0.113.66";

/// A second issuer, `name`: its channel.
async fn another_issuer(server: &TestServer, name: &str) -> Authed {
    let key = server
        .callers()
        .create_caller(CreateCallerRequest {
            name: name.into(),
            role: latchkey::grpc::pb::Role::Issuer as i32,
            tls_identity: String::new(),
            tenant: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key;
    server.as_caller(Some(&key))
}

/// ExplainLogin as the caller of `channel`.
async fn explain_as(
    channel: &Authed,
    username: &str,
    client_ip: &str,
    protocol: Protocol,
) -> Result<LoginExplanation, Status> {
    explain(
        &mut LegacyAuthServiceClient::new(channel.clone()),
        username,
        client_ip,
        protocol,
    )
    .await
}

fn names(answer: &LoginExplanation) -> Vec<String> {
    answer
        .app_passwords
        .iter()
        .map(|v| v.app_password.clone().unwrap().name)
        .collect()
}

fn retry_delay(status: &Status) -> Duration {
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a rate bound's refusal says when to retry")
}

/// One number from the database.
async fn count(server: &TestServer, sql: &str) -> i64 {
    let db = server.database.connect().await;
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    db.close().await.unwrap();
    row.try_get_by_index(0).unwrap()
}

/// The app password rows and the audit rows of `username`'s account.
async fn rows_of(server: &TestServer, username: &str) -> (i64, i64) {
    let account = format!("(SELECT id FROM account WHERE username = '{username}')");
    let passwords = count(
        server,
        &format!("SELECT COUNT(*) FROM app_password WHERE account_id IN {account}"),
    )
    .await;
    let events = count(
        server,
        &format!("SELECT COUNT(*) FROM audit_event WHERE username = '{username}'"),
    )
    .await;
    (passwords, events)
}

async fn issue_as(
    channel: &Authed,
    username: &str,
    display_name: &str,
) -> Result<IssueAppPasswordResponse, Status> {
    AppPasswordServiceClient::new(channel.clone())
        .issue_app_password(issue_request(username, display_name, &[Protocol::Imap]))
        .await
        .map(tonic::Response::into_inner)
}

async fn revoke_as(channel: &Authed, name: String, reason: &str) {
    AppPasswordServiceClient::new(channel.clone())
        .revoke_app_password(RevokeAppPasswordRequest {
            name,
            reason: reason.into(),
        })
        .await
        .unwrap();
}

/// Issue 19, item 1: an issuer issues a password to another's user and
/// revokes it at once, then explains the account. It learns nothing of the
/// other issuer's password, the failures' addresses, the throttle state
/// or which addresses the user signs in from. Only a live password of its
/// own (a working credential the user is told of) opens the helpdesk's
/// view, and even then none of the other issuer's passwords and no
/// network-wide count.
async fn a_password_an_issuer_revoked_shows_it_nothing_of_others(backend: Backend) {
    let server = TestServer::start(backend).await;
    // The portal's user: an IMAP password, used from home; guesses and a
    // refused SMTP login with the right password from elsewhere.
    let portal = server.as_role(Role::Issuer);
    let issued = issue_as(&portal, "victim", "Laptop").await.unwrap();
    let (theirs, secret) = (issued.app_password.unwrap().name, issued.secret);
    let their_id = theirs.rsplit('/').next().unwrap().to_owned();
    assert!(
        login_with(&server, "victim", &secret, Protocol::Imap, HOME)
            .await
            .authenticated
    );
    for n in 0..3 {
        login_with(&server, "victim", &wrong_secret(n), Protocol::Imap, GUESSER).await;
    }
    let refused = login_with(&server, "victim", &secret, Protocol::Smtp, GUESSER).await;
    assert_refused(&refused, FailureReason::ProtocolNotAllowed);

    let intruder = another_issuer(&server, "intruder").await;
    let status = explain_as(&intruder, "victim", GUESSER, Protocol::Smtp)
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason_of(&status).as_str()),
        (Code::NotFound, "ACCOUNT_NOT_FOUND")
    );

    // The attack: issue, revoke at once, explain.
    let probe = issue_as(&intruder, "victim", "Probe").await.unwrap();
    let probe = probe.app_password.unwrap().name;
    revoke_as(&intruder, probe.clone(), "").await;
    server
        .accounts()
        .disable_account(DisableAccountRequest {
            name: "accounts/victim".into(),
            reason: "fraud team, case 88".into(),
        })
        .await
        .unwrap();
    let asked = [
        (GUESSER, Protocol::Smtp),
        (HOME, Protocol::Imap),
        ("", Protocol::Unspecified),
    ];
    for (client_ip, protocol) in asked {
        let answer = explain_as(&intruder, "victim", client_ip, protocol)
            .await
            .unwrap();
        assert_eq!(
            names(&answer),
            std::slice::from_ref(&probe),
            "its own password only"
        );
        assert!(answer.account_exists && answer.account_disabled);
        let scopes = [&answer.source, &answer.pair, &answer.account];
        assert_eq!(scopes.iter().filter(|s| s.is_some()).count(), 0);
        assert_eq!(answer.recent_failures.len(), 0);
        assert_eq!(answer.disable_reason, "");
        let printed = format!("{answer:?}");
        for unsaid in [&their_id, GUESSER, HOME, "fraud", "known_source: true"] {
            assert!(!printed.contains(unsaid), "{unsaid} in {printed}");
        }
    }
    server
        .accounts()
        .enable_account(EnableAccountRequest {
            name: "accounts/victim".into(),
        })
        .await
        .unwrap();

    // The portal holds a live password there: the helpdesk's view of its
    // user, its own password and the failures, naming that password.
    let answer = explain_as(&portal, "victim", HOME, Protocol::Imap)
        .await
        .unwrap();
    assert_eq!(names(&answer), std::slice::from_ref(&theirs));
    assert!(answer.pair.unwrap().known_source);
    assert_eq!(answer.recent_failures.len(), 4);
    assert_eq!(answer.recent_failures[0].app_password, theirs);

    // A live password of the intruder's opens the same view of the
    // account, yet none of the portal's password, and not the network's
    // count, which is of every account's failures from there.
    let live = issue_as(&intruder, "victim", "Live").await.unwrap();
    let live = live.app_password.unwrap().name;
    let answer = explain_as(&intruder, "victim", GUESSER, Protocol::Smtp)
        .await
        .unwrap();
    assert_eq!(names(&answer), [live, probe]);
    assert_eq!(answer.recent_failures.len(), 4);
    let named = answer
        .recent_failures
        .iter()
        .filter(|f| !f.app_password.is_empty())
        .count();
    assert_eq!(named, 0, "no failure names the portal's password");
    let (source, pair) = (answer.source.unwrap(), answer.pair.unwrap());
    assert_eq!((source.failures, pair.failures), (0, 4));
    assert!(!format!("{:?}", answer.app_passwords).contains(&their_id));
    // An operator sees the network's count.
    let answer = explain_as(
        &server.as_role(Role::Operator),
        "victim",
        GUESSER,
        Protocol::Smtp,
    )
    .await
    .unwrap();
    assert_eq!(answer.source.unwrap().failures, 4);
    assert_eq!(answer.app_passwords.len(), 3);
    server.stop().await;
}

/// Issue 19, item 3: one issuer loops issue and revoke on one account. It
/// is refused at the account's bound with RESOURCE_EXHAUSTED, a reason and
/// when to retry, and the refusals write nothing; another account still
/// issues; after the hour the account issues again.
async fn an_issue_and_revoke_loop_stops_at_the_account_bound(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.app_passwords = AppPasswordsConfig::default();
    })
    .await;
    let bound = i64::from(DEFAULT_ACCOUNT_ISSUES_PER_HOUR);
    let portal = server.as_role(Role::Issuer);
    let mut issued = 0;
    let mut refusals = Vec::new();
    for n in 0..bound + 10 {
        match issue_as(&portal, "looped", &format!("Device {n}")).await {
            Ok(issued_one) => {
                issued += 1;
                revoke_as(&portal, issued_one.app_password.unwrap().name, "loop").await;
            }
            Err(status) => refusals.push(status),
        }
        // A second between rounds: the first issue is at 0 s.
        server.clock.advance(Duration::from_secs(1));
    }
    assert_eq!((issued, refusals.len() as i64), (bound, 10));
    for status in &refusals {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(reason_of(status), "ACCOUNT_ISSUE_RATE_EXCEEDED");
    }
    // The first issue was at 0 s, the first refusal at `bound` s: the
    // first issue leaves the hour 3,600 s after it was made.
    let wait = retry_delay(&refusals[0]);
    assert_eq!(wait, Duration::from_secs(3_600 - bound as u64));
    // Each issue wrote its row and its event, each revoke its event; the
    // ten refusals wrote nothing.
    assert_eq!(rows_of(&server, "looped").await, (bound, 2 * bound));

    // Another account issues; this one still does not, a second short of
    // the hour.
    issue_as(&portal, "bystander", "Phone").await.unwrap();
    let hour = Duration::from_secs(3_600);
    server
        .clock
        .set(START.saturating_add(hour - Duration::from_secs(1)));
    let status = issue_as(&portal, "looped", "Again").await.unwrap_err();
    assert_eq!(reason_of(&status), "ACCOUNT_ISSUE_RATE_EXCEEDED");
    assert_eq!(retry_delay(&status), Duration::from_secs(1));
    // Once the first issue is an hour old, one place is free: one issue.
    server.clock.set(START.saturating_add(hour));
    issue_as(&portal, "looped", "Again").await.unwrap();
    let status = issue_as(&portal, "looped", "Once more").await.unwrap_err();
    assert_eq!(reason_of(&status), "ACCOUNT_ISSUE_RATE_EXCEEDED");
    assert_eq!(rows_of(&server, "looped").await, (bound + 1, 2 * bound + 1));
    server.stop().await;
}

/// Issue 19, item 3: one issuer issues across many accounts as fast as it
/// can. Each replica lets it issue its bound in any minute and refuses the
/// rest, writing nothing; other callers are not held up; a minute later it
/// issues again.
async fn a_callers_issues_are_bounded_per_minute_on_each_replica(backend: Backend) {
    const PER_MINUTE: u32 = 10;
    let limits = |config: &mut latchkey::config::Config| {
        config.app_passwords = AppPasswordsConfig {
            caller_issues_per_minute: PER_MINUTE,
            ..AppPasswordsConfig::default()
        };
    };
    let server = TestServer::start_with(backend, limits).await;
    let replica = server.replica_with(limits).await;
    let portal = server.as_role(Role::Issuer);
    let mut outcomes = Vec::new();
    for n in 0..PER_MINUTE + 5 {
        outcomes.push(issue_as(&portal, &format!("user-{n}"), "Phone").await);
    }
    let issued = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(issued, PER_MINUTE as usize);
    for status in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(reason_of(status), "CALLER_ISSUE_RATE_EXCEEDED");
        assert_eq!(retry_delay(status), Duration::from_secs(60));
    }
    let written = count(&server, "SELECT COUNT(*) FROM app_password").await;
    assert_eq!(written, i64::from(PER_MINUTE));

    // Another caller is not held up; the replica keeps its own count.
    issue_as(&server.as_role(Role::Operator), "user-0", "Laptop")
        .await
        .unwrap();
    let on_replica = replica.as_role(Role::Issuer);
    for n in 0..PER_MINUTE {
        issue_as(&on_replica, &format!("elsewhere-{n}"), "Phone")
            .await
            .unwrap();
    }
    let status = issue_as(&on_replica, "elsewhere", "Phone")
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), "CALLER_ISSUE_RATE_EXCEEDED");

    // A minute on, the first replica issues again.
    server.clock.advance(Duration::from_secs(60));
    issue_as(&portal, "user-late", "Phone").await.unwrap();
    let written = count(&server, "SELECT COUNT(*) FROM app_password").await;
    assert_eq!(written, i64::from(2 * PER_MINUTE + 2));
    replica.stop().await;
    server.stop().await;
}

/// Found by review: issues refused inside the transaction (the account's
/// cap, met by a concurrent issue) still spent the caller's bound, so 120
/// parallel issues to one account blocked the portal for a minute. 30 at
/// once to an account with room for 2: 2 are made, and the caller's other
/// 8 of its 10 a minute go to other accounts.
async fn a_burst_at_one_full_account_spends_nothing_of_the_callers_bound(backend: Backend) {
    const PER_MINUTE: u32 = 10;
    let server = TestServer::start_with(backend, |config| {
        config.max_active_app_passwords = 2;
        config.app_passwords = AppPasswordsConfig {
            caller_issues_per_minute: PER_MINUTE,
            ..AppPasswordsConfig::default()
        };
    })
    .await;
    let portal = server.as_role(Role::Issuer);
    let burst = (0..30).map(|_| issue_as(&portal, "crowded", "Phone"));
    let outcomes = futures::future::join_all(burst).await;
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 2);
    for n in 0..PER_MINUTE - 2 {
        issue_as(&portal, &format!("other-{n}"), "Phone")
            .await
            .unwrap();
    }
    let status = issue_as(&portal, "one-more", "Phone").await.unwrap_err();
    assert_eq!(reason_of(&status), "CALLER_ISSUE_RATE_EXCEEDED");
    server.stop().await;
}
