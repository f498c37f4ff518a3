//! Random and malformed values in every field of every request: the server
//! answers each with a response or a deliberate status, never an internal
//! error or a panic, and the database stays consistent.

use latchkey::grpc::pb::issue_app_password_request::Expiration;
use latchkey::grpc::pb::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::backend_tests;
use crate::common::harness::{Backend, TestServer};

backend_tests!(random_requests_get_answers_not_crashes);

/// Strings that probe bounds, encodings, separators and look-alikes, and
/// now and then something well-formed, so that checks past the first one
/// are reached too.
fn text(rng: &mut StdRng) -> String {
    const PIECES: &[&str] = &[
        "",
        " ",
        "a",
        "alice",
        "Alice@Example.com",
        "accounts/",
        "accounts/alice",
        "/appPasswords/",
        "0190b3a0-0000-7000-8000-000000000000",
        "\0",
        "\u{200B}",
        "\u{202E}",
        "é",
        "e\u{301}",
        "ｆｕｌｌ",
        "\n",
        "\t",
        "%",
        "..",
        "/",
        "'; DROP TABLE account; --",
        "🦀",
        "\u{FFFD}",
        "192.0.2.1",
        "2001:db8::/32",
        "10.0.0.0/33",
        "abcd efgh ijkl mnop qrst uvwx yzab",
        "callers/",
        "ops",
        "latchkey_aaaaaaaaaaaa_",
        "-",
        "999999999999999999999",
    ];
    let parts = rng.random_range(0..6);
    let mut out = String::new();
    for _ in 0..parts {
        if rng.random_bool(0.1) {
            let len = rng.random_range(0..3000);
            out.extend((0..len).map(|_| char::from(rng.random_range(0x20u8..0x7f))));
        } else {
            out.push_str(PIECES[rng.random_range(0..PIECES.len())]);
        }
    }
    out
}

fn number(rng: &mut StdRng) -> i32 {
    match rng.random_range(0..4) {
        0 => rng.random_range(-3..12),
        1 => i32::MIN,
        2 => i32::MAX,
        _ => rng.random(),
    }
}

fn list<T>(rng: &mut StdRng, item: impl Fn(&mut StdRng) -> T) -> Vec<T> {
    let len = if rng.random_bool(0.05) {
        rng.random_range(0..40)
    } else {
        rng.random_range(0..4)
    };
    (0..len).map(|_| item(rng)).collect()
}

fn timestamp(rng: &mut StdRng) -> Option<prost_types::Timestamp> {
    rng.random_bool(0.5).then(|| prost_types::Timestamp {
        seconds: match rng.random_range(0..3) {
            0 => rng.random(),
            1 => 1_767_225_600 + rng.random_range(-100_000..100_000),
            _ => i64::MAX,
        },
        nanos: number(rng),
    })
}

/// Which codes a request may be answered with: anything the API documents
/// for bad or impossible input. Never INTERNAL, UNKNOWN or UNAVAILABLE.
fn acceptable(code: Code) -> bool {
    matches!(
        code,
        Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::OutOfRange
    )
}

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => {
            assert!(acceptable(status.code()), "{status:?}");
            status.code()
        }
    }
}

/// A well-formed value three times in four, junk otherwise: each field is
/// corrupted on its own, so checks deep in a request are reached too.
fn or_junk<T>(rng: &mut StdRng, valid: T, junk: impl FnOnce(&mut StdRng) -> T) -> T {
    if rng.random_bool(0.75) {
        valid
    } else {
        junk(rng)
    }
}

fn or_junk_text(rng: &mut StdRng, valid: String) -> String {
    or_junk(rng, valid, text)
}

fn or_junk_number(rng: &mut StdRng, valid: i32) -> i32 {
    or_junk(rng, valid, number)
}

async fn random_requests_get_answers_not_crashes(backend: Backend) {
    let server =
        TestServer::start_with(backend, |config| config.max_active_app_passwords = 3).await;
    let mut rng = StdRng::seed_from_u64(0x01a7_c4e1);
    let mut answered = std::collections::HashMap::<Code, u32>::new();
    let mut issued: Vec<(String, String)> = vec![(
        "accounts/user0/appPasswords/0190b3a0-0000-7000-8000-000000000000".into(),
        "x".into(),
    )];
    for round in 0..150 {
        let user = format!("user{}", rng.random_range(0..4));
        let account = format!("accounts/{user}");
        let (known_name, known_secret) = issued[rng.random_range(0..issued.len())].clone();
        let client_ip = format!("192.0.2.{}", rng.random_range(0..255));
        let role = rng.random_range(1..4);
        let caller = format!("callers/fz{}", rng.random_range(0..=round));
        let issue = IssueAppPasswordRequest {
            parent: or_junk_text(&mut rng, account.clone()),
            display_name: or_junk_text(&mut rng, "Device".into()),
            protocols: or_junk(&mut rng, vec![Protocol::Imap as i32], |rng| {
                list(rng, number)
            }),
            expiration: or_junk(&mut rng, None, |rng| match rng.random_range(0..2) {
                0 => timestamp(rng).map(Expiration::ExpireTime),
                _ => Some(Expiration::Ttl(prost_types::Duration {
                    seconds: rng.random(),
                    nanos: number(rng),
                })),
            }),
            allowed_networks: or_junk(&mut rng, Vec::new(), |rng| list(rng, text)),
            idle_timeout: or_junk(&mut rng, None, |rng| {
                Some(prost_types::Duration {
                    seconds: rng.random(),
                    nanos: number(rng),
                })
            }),
        };
        let issue_result = server.app_passwords().issue_app_password(issue).await;
        if let Ok(response) = &issue_result {
            let response = response.get_ref();
            issued.push((
                response.app_password.clone().unwrap().name,
                response.secret.clone(),
            ));
        }
        let codes = [
            code(issue_result),
            code(
                server
                    .app_passwords()
                    .list_app_passwords(ListAppPasswordsRequest {
                        parent: or_junk_text(&mut rng, account.clone()),
                        page_size: or_junk_number(&mut rng, 2),
                        page_token: or_junk_text(&mut rng, String::new()),
                        show_revoked: rng.random(),
                    })
                    .await,
            ),
            code(
                server
                    .app_passwords()
                    .get_app_password(GetAppPasswordRequest {
                        name: or_junk_text(&mut rng, known_name.clone()),
                    })
                    .await,
            ),
            code(
                server
                    .app_passwords()
                    .revoke_app_password(RevokeAppPasswordRequest {
                        name: or_junk_text(&mut rng, known_name.clone()),
                        reason: or_junk_text(&mut rng, "fuzz".into()),
                    })
                    .await,
            ),
            code(
                server
                    .app_passwords()
                    .revoke_account_app_passwords(RevokeAccountAppPasswordsRequest {
                        parent: or_junk_text(&mut rng, account.clone()),
                        reason: or_junk_text(&mut rng, String::new()),
                    })
                    .await,
            ),
            code(
                server
                    .auth()
                    .authenticate(AuthenticateRequest {
                        username: or_junk_text(&mut rng, user.clone()),
                        password: or_junk_text(&mut rng, known_secret.clone()),
                        protocol: or_junk_number(&mut rng, Protocol::Imap as i32),
                        client_ip: or_junk_text(&mut rng, client_ip),
                        client_id: or_junk_text(&mut rng, "Thunderbird 115".to_owned()),
                    })
                    .await,
            ),
            code(
                server
                    .accounts()
                    .get_account(GetAccountRequest {
                        name: or_junk_text(&mut rng, account.clone()),
                    })
                    .await,
            ),
            code(
                server
                    .accounts()
                    .list_accounts(ListAccountsRequest {
                        page_size: or_junk_number(&mut rng, 2),
                        page_token: or_junk_text(&mut rng, String::new()),
                    })
                    .await,
            ),
            code(
                server
                    .accounts()
                    .disable_account(DisableAccountRequest {
                        name: or_junk_text(&mut rng, account.clone()),
                        reason: or_junk_text(&mut rng, String::new()),
                    })
                    .await,
            ),
            code(
                server
                    .accounts()
                    .enable_account(EnableAccountRequest {
                        name: or_junk_text(&mut rng, account.clone()),
                    })
                    .await,
            ),
            code(
                server
                    .accounts()
                    .delete_account(DeleteAccountRequest {
                        name: if round % 10 == 9 {
                            account.clone()
                        } else {
                            text(&mut rng)
                        },
                    })
                    .await,
            ),
            code(
                server
                    .callers()
                    .create_caller(CreateCallerRequest {
                        name: or_junk_text(&mut rng, format!("fz{round}")),
                        role: or_junk_number(&mut rng, role),
                        tls_identity: or_junk_text(&mut rng, String::new()),
                        tenant: String::new(),
                        ..Default::default()
                    })
                    .await,
            ),
            code(
                server
                    .callers()
                    .list_callers(ListCallersRequest {
                        page_size: or_junk_number(&mut rng, 2),
                        page_token: or_junk_text(&mut rng, String::new()),
                    })
                    .await,
            ),
            code(
                server
                    .callers()
                    .revoke_caller(RevokeCallerRequest {
                        name: or_junk_text(&mut rng, caller),
                    })
                    .await,
            ),
            code(
                server
                    .audit()
                    .list_audit_events(ListAuditEventsRequest {
                        account: or_junk_text(&mut rng, account.clone()),
                        app_password: or_junk_text(&mut rng, String::new()),
                        types: or_junk(&mut rng, Vec::new(), |rng| list(rng, number)),
                        start_time: or_junk(&mut rng, None, timestamp),
                        end_time: or_junk(&mut rng, None, timestamp),
                        page_size: or_junk_number(&mut rng, 5),
                        page_token: or_junk_text(&mut rng, String::new()),
                    })
                    .await,
            ),
        ];
        for code in codes {
            *answered.entry(code).or_default() += 1;
        }
    }
    // The inputs reached past validation often enough to mean something.
    assert!(
        answered.get(&Code::Ok).copied().unwrap_or(0) > 100,
        "{answered:?}"
    );
    assert!(
        answered.get(&Code::InvalidArgument).copied().unwrap_or(0) > 100,
        "{answered:?}"
    );

    // Still serving, and consistent: no password without its account, no
    // account over its cap.
    let (_, secret) = crate::common::support::issue_simple(&server, "after-the-storm").await;
    assert!(
        crate::common::support::login(&server, "after-the-storm", &secret)
            .await
            .authenticated
    );
    let db = server.database.connect().await;
    let backend = db.get_database_backend();
    let orphans = db
        .query_one(Statement::from_string(
            backend,
            "SELECT COUNT(*) FROM app_password WHERE account_id NOT IN (SELECT id FROM account)",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(orphans, 0);
    let over_cap = db
        .query_one(Statement::from_string(
            backend,
            "SELECT COUNT(*) FROM (SELECT account_id FROM app_password WHERE revoked_at IS NULL \
             GROUP BY account_id HAVING COUNT(*) > 3) AS over_cap",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(over_cap, 0);
    db.close().await.unwrap();
    server.stop().await;
}
