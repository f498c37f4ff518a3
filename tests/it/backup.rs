//! `latchkey backup` copies the SQLite database while the server serves
//! under load; the copy restores every password acknowledged before the
//! backup began, and serves logins with them.

use latchkey::domain::audit::event::Actor;
use latchkey::domain::tenants::Reach;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use latchkey::domain::login::{LoginAttempt, LoginOutcome, TypedPassword};
use latchkey::domain::shared::protocol::Protocol as DomainProtocol;
use latchkey::domain::shared::username::Username;
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::common::harness::{test_config, Backend, TestServer, START};
use crate::common::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_while_serving_under_load_restores_everything_acknowledged() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let username = format!("before{n}");
        let (_, secret) = issue_simple(&server, &username).await;
        acknowledged.push((username, secret));
    }

    // Issues and logins go on while the backup runs.
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let running = Arc::clone(&running);
        let mut issuer = server.app_passwords();
        let mut auth = server.auth();
        let (user, secret) = acknowledged[0].clone();
        tokio::spawn(async move {
            let mut n = 0;
            while running.load(Ordering::SeqCst) {
                let _ = issuer
                    .issue_app_password(issue_request(
                        &format!("during{n}"),
                        "Phone",
                        &[latchkey::grpc::pb::Protocol::Imap],
                    ))
                    .await;
                let _ = auth
                    .authenticate(login_request(
                        &user,
                        &secret,
                        latchkey::grpc::pb::Protocol::Imap,
                        "192.0.2.1",
                    ))
                    .await;
                n += 1;
            }
            n
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("latchkey.db");
    let url = server.database.url.clone();
    let copy_arg = copy.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .arg("backup")
            .arg(&copy_arg)
            .args(["--database-url", &url])
            .env("LATCHKEY_LOG__FILTER", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    running.store(false, Ordering::SeqCst);
    let issued_meanwhile = load.await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        issued_meanwhile > 0,
        "the server was under load during the backup"
    );
    // A backup never overwrites.
    let again = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("backup")
        .arg(&copy)
        .args(["--database-url", &server.database.url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    server.stop().await;

    // The copy is a whole SQLite database.
    let copy_url = sqlite_url(dir.path());
    let db = Database::connect(&copy_url).await.unwrap();
    let check = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "PRAGMA integrity_check".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(check.try_get_by_index::<String>(0).unwrap(), "ok");
    db.close().await.unwrap();

    // Restored: a server on the copy knows every acknowledged password and
    // signs in with it.
    let mut config = test_config();
    config.database_url = latchkey::config::DatabaseUrl::new(copy_url);
    let clock = Arc::new(latchkey::domain::shared::time::ManualClock::starting_at(
        START,
    ));
    let app = latchkey::app::App::build(&config, clock).await.unwrap();
    for (username, secret) in &acknowledged {
        let outcome = app
            .services()
            .logins
            .authenticate(LoginAttempt {
                username: Username::parse(username).unwrap(),
                password: TypedPassword::new(secret),
                protocol: DomainProtocol::Imap,
                client_ip: "192.0.2.2".parse().unwrap(),
                actor: Actor::system("test"),
                reach: Reach::Deployment,
                wait: None,
                client: None,
            })
            .await
            .unwrap();
        assert!(
            matches!(outcome, LoginOutcome::Success { .. }),
            "{username}: {outcome:?}"
        );
    }
}
