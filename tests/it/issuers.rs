//! The front door from the inside: what one issuer key (careless, buggy or
//! stolen) can do beyond its own users. Each test sends the abuse as such a
//! key would and counts what happened.

use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use latchkey::grpc::pb::{
    CreateCallerRequest, DisableAccountRequest, EnableAccountRequest, FailureReason,
    IssueAppPasswordResponse, LoginExplanation, Protocol, RevokeAppPasswordRequest,
};
use tonic::{Code, Status};

use crate::backend_tests;
use crate::common::harness::{Authed, Backend, TestServer};
use crate::common::support::*;

backend_tests!(a_password_an_issuer_revoked_shows_it_nothing_of_others);

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
