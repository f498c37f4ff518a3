//! The secret leaves the server once, in the issue response, and is never
//! stored, returned or printed again.

use latchkey::grpc::pb::{
    GetAppPasswordRequest, ListAccountsRequest, ListAppPasswordsRequest, Protocol,
};
use prost::Message;
use sea_orm::{ConnectionTrait, Statement};

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::*;

backend_tests!(secret_is_shown_once_and_stored_only_as_argon2id);

async fn secret_is_shown_once_and_stored_only_as_argon2id(backend: Backend) {
    let server = TestServer::start(backend).await;
    let issued = issue(&server, issue_request("judy", "Laptop", &[Protocol::Imap])).await;
    let name = issued.app_password.clone().unwrap().name;
    assert!(
        !format!("{issued:?}").contains(&issued.secret),
        "Debug shows the secret"
    );
    let login_ok = login(&server, "judy", &issued.secret).await;
    assert!(login_ok.authenticated);

    // Every read RPC, byte for byte.
    let mut responses: Vec<Vec<u8>> = Vec::new();
    responses.push(login_ok.encode_to_vec());
    let listed = server
        .app_passwords()
        .list_app_passwords(ListAppPasswordsRequest {
            parent: "accounts/judy".into(),
            show_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    responses.push(listed.encode_to_vec());
    let fetched = server
        .app_passwords()
        .get_app_password(GetAppPasswordRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    responses.push(fetched.encode_to_vec());
    let revoked = revoke(&server, name).await;
    responses.push(revoked.encode_to_vec());
    let accounts = server
        .accounts()
        .list_accounts(ListAccountsRequest::default())
        .await
        .unwrap()
        .into_inner();
    responses.push(accounts.encode_to_vec());
    for form in secret_forms(&issued.secret) {
        for bytes in &responses {
            assert!(
                !contains(bytes, form.as_bytes()),
                "a response carries the secret"
            );
        }
    }

    // The database: every text column of every row.
    let db = server.database.connect().await;
    let backend_kind = db.get_database_backend();
    let dump: Vec<String> = db
        .query_all(Statement::from_string(
            backend_kind,
            "SELECT selector, secret_hash, display_name, allowed_networks, issued_by FROM app_password",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            (0..5)
                .map(|i| row.try_get_by_index::<String>(i).unwrap())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    assert_eq!(dump.len(), 1);
    let row = &dump[0];
    for form in secret_forms(&issued.secret) {
        assert!(
            !row.contains(&form),
            "the database holds the plaintext secret"
        );
    }
    let hash = row.split('|').nth(1).unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{hash}");
    // Only the selector, the marker and the next six letters, is stored in
    // the clear (as the selector and as the public id).
    let selector = issued.secret.replace(' ', "")[..8].to_owned();
    assert_eq!(row.split('|').next().unwrap(), selector);
    db.close().await.unwrap();
    let public_id: String = query_value(&server, "SELECT public_id FROM app_password").await;
    assert_eq!(public_id, selector);
    server.stop().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

backend_tests!(raising_argon2_parameters_upgrades_hashes_at_the_next_login);

async fn stored_hash(server: &TestServer) -> String {
    query_value(server, "SELECT secret_hash FROM app_password").await
}

async fn raising_argon2_parameters_upgrades_hashes_at_the_next_login(backend: Backend) {
    let old = TestServer::start(backend).await;
    let (_, secret) = issue_simple(&old, "yves").await;
    assert!(stored_hash(&old)
        .await
        .starts_with("$argon2id$v=19$m=256,t=1,p=1$"));

    // The operator raises the cost; a replica (or the restarted server) runs
    // with the new parameters.
    let new = old
        .replica_with(|config| {
            config.argon2.memory_kib = 512;
            config.argon2.iterations = 2;
        })
        .await;
    // A failed login changes nothing.
    assert!(
        !login(&new, "yves", &crate::common::support::wrong_secret(1))
            .await
            .authenticated
    );
    assert!(stored_hash(&new)
        .await
        .starts_with("$argon2id$v=19$m=256,t=1,p=1$"));
    // A successful one re-hashes.
    assert!(login(&new, "yves", &secret).await.authenticated);
    assert!(stored_hash(&new)
        .await
        .starts_with("$argon2id$v=19$m=512,t=2,p=1$"));
    // The password still works on both, and the replica still on the old
    // parameters does not re-hash it back down.
    assert!(login(&new, "yves", &secret).await.authenticated);
    assert!(login(&old, "yves", &secret).await.authenticated);
    assert!(stored_hash(&old)
        .await
        .starts_with("$argon2id$v=19$m=512,t=2,p=1$"));
    new.stop().await;
    old.stop().await;
}
