//! The app password format (docs/secret-format-v2.md): issues are version
//! 2 and carry their check; version 1 passwords issued before keep signing
//! in; a version 2 secret whose check fails is refused as a wrong password
//! without an argon2 run, and counted; a public id is unique across the
//! deployment.

use argon2::password_hash::{PasswordHasher as _, SaltString};
use latchkey::domain::app_passwords::model::{IssueLimits, IssueOutcome, NewAppPassword};
use latchkey::domain::app_passwords::store::AppPasswordStore as _;
use latchkey::domain::audit::event::{Actor, AuditEvent, EventType};
use latchkey::domain::secrets::format::{Reading, Secret, Version};
use latchkey::domain::shared::network::AllowedNetworks;
use latchkey::domain::shared::protocol::ProtocolSet;
use latchkey::domain::shared::time::Clock as _;
use latchkey::domain::shared::username::Username;
use latchkey::grpc::pb::{FailureReason, Protocol};
use latchkey::store::{PoolConfig, SqlStore};
use sea_orm::{ConnectionTrait, Statement};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer, TEST_ARGON2};
use crate::common::support::*;

backend_tests!(
    issued_secrets_are_version_2_and_self_checking,
    version_1_passwords_keep_signing_in,
    a_failed_check_is_refused_without_argon2_and_counted,
    a_public_id_is_unique_across_the_deployment,
);

async fn issued_secrets_are_version_2_and_self_checking(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut public_ids = std::collections::HashSet::new();
    for user in ["ana", "ben", "cyd"] {
        let issued = issue(&server, issue_request(user, "Phone", &[Protocol::Any])).await;
        let shown = &issued.secret;
        let groups: Vec<&str> = shown.split(' ').collect();
        assert_eq!(groups.len(), 9, "{}", groups.len());
        assert!(groups.iter().all(|g| g.len() == 4));
        assert!(shown.starts_with("lk"));
        let Reading::Secret(secret) = Secret::read(shown) else {
            panic!("an issued secret fails its own check");
        };
        assert_eq!(secret.version(), Version::Two);
        let password = issued.app_password.unwrap();
        assert_eq!(
            password.secret_prefix,
            format!("{} {}", groups[0], groups[1])
        );
        assert!(public_ids.insert(secret.public_id().unwrap().to_owned()));
        // As typed on a phone: dashes, capitals, no spaces.
        for typed in [
            shown.replace(' ', "-").to_uppercase(),
            shown.replace(' ', ""),
        ] {
            assert!(login(&server, user, &typed).await.authenticated);
        }
    }
    server.stop().await;
}

/// Rewrites the row of a freshly issued password as a version 1 password
/// issued before version 2 was: a four-letter selector, no public id, and
/// the argon2id hash of a version 1 secret. Returns that secret as shown.
async fn plant_version_1(server: &TestServer, name: &str) -> String {
    let secret = Secret::generate_version_1().unwrap();
    let shown = secret.display().to_string();
    let letters = shown.replace(' ', "");
    let params = argon2::Params::new(
        TEST_ARGON2.memory_kib,
        TEST_ARGON2.iterations,
        TEST_ARGON2.parallelism,
        None,
    )
    .unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let hash = hasher
        .hash_password(letters.as_bytes(), &salt)
        .unwrap()
        .to_string();
    let id = name.rsplit('/').next().unwrap();
    let db = server.database.connect().await;
    let backend = db.get_database_backend();
    let changed = db
        .execute(Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DatabaseBackend::Postgres => {
                    "UPDATE app_password SET selector = $1, public_id = NULL, secret_hash = $2 \
                     WHERE id = $3::uuid"
                }
                _ => {
                    "UPDATE app_password SET selector = ?, public_id = NULL, secret_hash = ? \
                     WHERE id = ?"
                }
            },
            [
                letters[..4].into(),
                hash.into(),
                uuid::Uuid::parse_str(id).unwrap().into(),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    db.close().await.unwrap();
    shown
}

async fn version_1_passwords_keep_signing_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (name, _) = issue_simple(&server, "vera").await;
    let old = plant_version_1(&server, &name).await;
    let (_, new) = issue_simple(&server, "vera").await;
    assert_eq!(old.split(' ').count(), 7);

    // Both versions sign in, side by side on one account, each typed as a
    // person would.
    let signed_in = login(&server, "vera", &old.replace(' ', "-").to_uppercase()).await;
    assert!(signed_in.authenticated);
    assert_eq!(signed_in.app_password, name);
    assert!(login(&server, "vera", &new).await.authenticated);

    // A wrong version 1 guess is checked as before: one argon2 run.
    let before = argon2_runs(&server);
    let wrong = Secret::generate_version_1().unwrap().display().to_string();
    let mut guess = old[..5].to_owned();
    guess.push_str(&wrong[5..]);
    assert_refused(
        &login_with(&server, "vera", &guess, Protocol::Imap, "198.51.100.7").await,
        FailureReason::InvalidCredentials,
    );
    assert_eq!(argon2_runs(&server) - before, 1);

    // Its hint stays its first group.
    assert_eq!(get_password(&server, &name).await.secret_prefix, &old[..4]);
    server.stop().await;
}

async fn a_failed_check_is_refused_without_argon2_and_counted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, secret) = issue_simple(&server, "tess").await;
    // The last letter is a check letter: changing it always fails the
    // check, whatever the secret.
    let mut mistyped = secret.clone();
    let last = mistyped.pop().unwrap();
    mistyped.push(if last == 'z' { 'a' } else { 'z' });
    assert_eq!(Secret::read(&mistyped), Reading::CheckFailed);
    let wrong = issue_simple(&server, "uwe").await.1;

    // The same answer as a wrong password, and as an unknown user's.
    let ip = "203.0.113.60";
    let before = argon2_runs(&server);
    let typo = login_with(&server, "tess", &mistyped, Protocol::Imap, ip).await;
    assert_eq!(argon2_runs(&server), before, "a failed check ran argon2");
    let unknown = login_with(&server, "nobody", &mistyped, Protocol::Imap, ip).await;
    assert_eq!(argon2_runs(&server), before, "a failed check ran argon2");
    let wrong_password = login_with(&server, "tess", &wrong, Protocol::Imap, "203.0.113.61").await;
    assert_eq!(argon2_runs(&server) - before, 1);
    assert_refused(&typo, FailureReason::InvalidCredentials);
    assert_eq!(typo, unknown);
    assert_eq!(typo, wrong_password);

    // Audited as a failed login of the account, as a wrong password is.
    let rows: i64 = query_value(
        &server,
        "SELECT COUNT(*) FROM audit_event \
         WHERE event_type = 'authentication_failed' AND username = 'tess'",
    )
    .await;
    assert_eq!(rows, 2, "the typo and the wrong password");

    // Counted toward the pair's limit (5 failures per account and
    // network): after four more, the right password from that network is
    // refused as throttled, with still no argon2 run for the typos.
    // (Four other typos: a repeat of the same one is counted once.)
    let mut typos = 0;
    for other in 'a'..='z' {
        let mut another = secret.clone();
        another.pop();
        another.push(other);
        if other == last || other == mistyped.chars().last().unwrap() || typos == 4 {
            continue;
        }
        let typo = login_with(&server, "tess", &another, Protocol::Imap, ip).await;
        assert_refused(&typo, FailureReason::InvalidCredentials);
        typos += 1;
    }
    assert_eq!(argon2_runs(&server) - before, 1);
    let blocked = login_with(&server, "tess", &secret, Protocol::Imap, ip).await;
    assert_refused(&blocked, FailureReason::Throttled);
    assert!(
        login_with(&server, "tess", &secret, Protocol::Imap, "198.51.100.9")
            .await
            .authenticated
    );
    server.stop().await;
}

/// Two accounts' issues drawing the same version 2 selector: the second is
/// refused as a taken selector (and issuance draws again), both by the
/// check under the account lock and, for issues racing past it, by the
/// unique index.
async fn a_public_id_is_unique_across_the_deployment(backend: Backend) {
    let server = TestServer::start(backend).await;
    issue_simple(&server, "wes").await;
    issue_simple(&server, "xia").await;
    let store = SqlStore::connect(&server.database.url, PoolConfig::default())
        .await
        .unwrap();
    let now = server.clock.now();
    let actor = Actor::system("issuer");
    let new = |user: &str, selector: &str| NewAppPassword {
        id: uuid::Uuid::now_v7(),
        username: Username::parse(user).unwrap(),
        selector: selector.to_owned(),
        public_id: Some(selector.to_owned()),
        secret_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
        display_name: "Planted".to_owned(),
        protocols: ProtocolSet::any(),
        allowed_networks: AllowedNetworks::default(),
        issued_by: "issuer".to_owned(),
        created_at: now,
        expires_at: None,
        idle_timeout: None,
    };
    let limits = IssueLimits {
        cap: 25,
        per_hour: 100,
    };
    let event = || AuditEvent::new(EventType::AppPasswordIssued, now, &actor);
    let first = store
        .issue(new("wes", "lkzzzzzz"), limits, event())
        .await
        .unwrap();
    assert!(matches!(first, IssueOutcome::Issued(_)), "{first:?}");
    let second = store
        .issue(new("xia", "lkzzzzzz"), limits, event())
        .await
        .unwrap();
    assert!(matches!(second, IssueOutcome::SelectorTaken), "{second:?}");

    // Past the check (as a concurrent issue would be), the unique index
    // refuses it: a planted row with the same public id under another
    // selector stands in for the race.
    let mut racing = new("xia", "lkyyyyyy");
    racing.public_id = Some("lkzzzzzz".to_owned());
    let raced = store.issue(racing, limits, event()).await.unwrap();
    assert!(matches!(raced, IssueOutcome::SelectorTaken), "{raced:?}");
    let rows: i64 = query_value(
        &server,
        "SELECT COUNT(*) FROM app_password WHERE public_id = 'lkzzzzzz'",
    )
    .await;
    assert_eq!(rows, 1);
    server.stop().await;
}
