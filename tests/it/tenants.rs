//! Tenants: one deployment serving many customers' domains. Two tenants,
//! each with its own issuer, authenticator and notifier, and nothing of
//! one reachable, listable, watchable, explainable, revocable or guessable
//! with the other's keys, through gRPC and through the proxy adapters.
//! Asserted by counting: argon2 runs, stored counters, audit rows, events.

use std::time::Duration;

use base64::Engine as _;
use latchkey::domain::callers::model::Role;
use latchkey::domain::login::throttle::Scopes;
use latchkey::domain::shared::time::Clock;
use latchkey::domain::shared::username::Username;
use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use latchkey::grpc::pb::tenant_service_client::TenantServiceClient;
use latchkey::grpc::pb::{
    AppPassword, AuditEventType, AuthenticateResponse, CreateCallerRequest, CreateTenantRequest,
    DeleteTenantRequest, ExplainLoginRequest, FailureReason, GetAppPasswordRequest,
    GetTenantRequest, ListAppPasswordsRequest, ListAuditEventsRequest, ListTenantsRequest,
    MoveTenantDomainRequest, Protocol, ReportPrimaryCredentialChangeRequest,
    ResumeAppPasswordRequest, RevokeAccountAppPasswordsRequest, RevokeAppPasswordRequest,
    RevokeCallerRequest, SuspendAppPasswordRequest, Tenant, UpdateAppPasswordRequest,
    UpdateTenantRequest, WatchEventsRequest,
};
use tonic::{Code, Status};

use crate::adapters::{get, mail, nginx_mail};
use crate::backend_tests;
use crate::common::harness::{Authed, Backend, TestServer};
use crate::common::support::*;

backend_tests!(
    tenants_are_managed_and_a_domain_moves_only_when_asked,
    nothing_of_one_tenant_is_reachable_with_anothers_keys,
    an_outsiders_login_costs_and_counts_as_an_unknown_users,
    a_tenants_watchers_see_only_its_accounts_events,
    each_tenants_policy_applies_to_its_accounts_whoever_asks,
    names_with_several_at_signs_lose_the_domain_migration_14_gave,
);

fn tenants(server: &TestServer) -> TenantServiceClient<Authed> {
    TenantServiceClient::new(server.as_role(Role::Operator))
}

async fn create_tenant(server: &TestServer, id: &str, domains: &[&str]) -> Result<Tenant, Status> {
    tenants(server)
        .create_tenant(CreateTenantRequest {
            tenant_id: id.into(),
            tenant: Some(Tenant {
                display_name: format!("{id} hosting customer"),
                domains: domains.iter().map(|d| (*d).to_owned()).collect(),
                ..Tenant::default()
            }),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn scoped_caller(
    server: &TestServer,
    name: &str,
    role: latchkey::grpc::pb::Role,
    tenant: &str,
) -> Result<String, Status> {
    server
        .callers()
        .create_caller(CreateCallerRequest {
            name: name.into(),
            role: role as i32,
            tls_identity: String::new(),
            tenant: format!("tenants/{tenant}"),
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner().key)
}

/// One tenant's keys: its portal's, its proxy's and its mailer's.
struct Keys {
    issuer: String,
    authenticator: String,
    notifier: String,
}

async fn tenant_with_keys(server: &TestServer, id: &str, domains: &[&str]) -> Keys {
    create_tenant(server, id, domains).await.unwrap();
    use latchkey::grpc::pb::Role as R;
    Keys {
        issuer: scoped_caller(server, &format!("{id}-portal"), R::Issuer, id)
            .await
            .unwrap(),
        authenticator: scoped_caller(server, &format!("{id}-proxy"), R::Authenticator, id)
            .await
            .unwrap(),
        notifier: scoped_caller(server, &format!("{id}-mailer"), R::Notifier, id)
            .await
            .unwrap(),
    }
}

fn assert_outside(result: Result<impl std::fmt::Debug, Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
    assert_eq!(reason_of(&status), "OUTSIDE_TENANT", "{what}");
}

async fn tenants_are_managed_and_a_domain_moves_only_when_asked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = create_tenant(&server, "acme", &["acme.test", "Acme.EXAMPLE"])
        .await
        .unwrap();
    assert_eq!(acme.name, "tenants/acme");
    assert_eq!(acme.domains, ["acme.example", "acme.test"]);
    create_tenant(&server, "globex", &["globex.test"])
        .await
        .unwrap();

    // A domain belongs to one tenant: taking it is refused, by name too.
    let taken = create_tenant(&server, "initech", &["ACME.test"])
        .await
        .unwrap_err();
    assert_eq!(
        (taken.code(), reason_of(&taken).as_str()),
        (Code::AlreadyExists, "DOMAIN_TAKEN")
    );
    let again = create_tenant(&server, "acme", &[]).await.unwrap_err();
    assert_eq!(reason_of(&again), "TENANT_NAME_TAKEN");
    let update = |name: &str, domains: &[&str], paths: &[&str]| UpdateTenantRequest {
        tenant: Some(Tenant {
            name: format!("tenants/{name}"),
            display_name: "Globex Corp.".into(),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            ..Tenant::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    };
    let grab = tenants(&server)
        .update_tenant(update(
            "globex",
            &["globex.test", "acme.test"],
            &["domains"],
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&grab), "DOMAIN_TAKEN");
    let renamed = tenants(&server)
        .update_tenant(update("globex", &[], &["display_name"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.display_name, "Globex Corp.");
    assert_eq!(
        renamed.domains,
        ["globex.test"],
        "domains were not in the mask"
    );
    let listed = tenants(&server)
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tenants;
    assert_eq!(
        listed
            .iter()
            .map(|t| (t.name.as_str(), t.domains.len()))
            .collect::<Vec<_>>(),
        [("tenants/acme", 2), ("tenants/globex", 1)]
    );

    // Moving is its own call, and audited with both tenants.
    server.clock.advance(std::time::Duration::from_secs(5));
    let moved = tenants(&server)
        .move_tenant_domain(MoveTenantDomainRequest {
            name: "tenants/globex".into(),
            domain: "acme.test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.domains, ["acme.test", "globex.test"]);
    assert!(
        moved.update_time.unwrap().seconds > moved.create_time.unwrap().seconds,
        "a move updates the tenant"
    );
    let acme = tenants(&server)
        .get_tenant(GetTenantRequest {
            name: "tenants/acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acme.domains, ["acme.example"]);
    let moves = audit_events(
        &server,
        ListAuditEventsRequest {
            types: vec![AuditEventType::TenantDomainMoved as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(moves.len(), 1);
    assert_eq!(
        moves[0].detail,
        "acme.test from tenants/acme to tenants/globex"
    );
    assert_eq!(moves[0].actor, "test-operator");

    // Operators are deployment-wide; a tenant must exist.
    use latchkey::grpc::pb::Role as R;
    let operator = scoped_caller(&server, "acme-admin", R::Operator, "acme")
        .await
        .unwrap_err();
    assert_eq!(operator.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&operator), ["tenant"]);
    let nowhere = scoped_caller(&server, "lost", R::Issuer, "nowhere")
        .await
        .unwrap_err();
    assert_eq!(reason_of(&nowhere), "TENANT_NOT_FOUND");

    // A tenant in use is not deleted; once its callers are revoked it is,
    // and its domains are free again.
    scoped_caller(&server, "globex-portal", R::Issuer, "globex")
        .await
        .unwrap();
    let delete = || DeleteTenantRequest {
        name: "tenants/globex".into(),
    };
    let in_use = tenants(&server).delete_tenant(delete()).await.unwrap_err();
    assert_eq!(
        (in_use.code(), reason_of(&in_use).as_str()),
        (Code::FailedPrecondition, "TENANT_IN_USE")
    );
    server
        .callers()
        .revoke_caller(RevokeCallerRequest {
            name: "callers/globex-portal".into(),
        })
        .await
        .unwrap();
    tenants(&server).delete_tenant(delete()).await.unwrap();
    let gone = tenants(&server)
        .get_tenant(GetTenantRequest {
            name: "tenants/globex".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&gone), "TENANT_NOT_FOUND");
    create_tenant(&server, "initech", &["globex.test", "acme.test"])
        .await
        .unwrap();

    // Domains whose order under a database's collation is not their
    // bytes' (PostgreSQL's locales skip punctuation): shown in byte
    // order, and every one reached by the tenant's portal.
    let punctuated = ["ab.example", "a-b.example", "a_b.example", "a.b.example"];
    let tenant = create_tenant(&server, "punct", &punctuated).await.unwrap();
    let mut sorted = punctuated.map(str::to_owned).to_vec();
    sorted.sort();
    assert_eq!(tenant.domains, sorted);
    let key = scoped_caller(&server, "punct-portal", R::Issuer, "punct")
        .await
        .unwrap();
    let mut portal = AppPasswordServiceClient::new(server.as_caller(Some(&key)));
    for domain in punctuated {
        portal
            .issue_app_password(issue_request(
                &format!("user@{domain}"),
                "Mail",
                &[Protocol::Imap],
            ))
            .await
            .unwrap_or_else(|status| panic!("{domain}: {status:?}"));
    }

    // A move never takes a tenant past its most domains; nothing moves.
    let hundred: Vec<String> = (0..100).map(|n| format!("d{n}.full.test")).collect();
    let hundred: Vec<&str> = hundred.iter().map(String::as_str).collect();
    create_tenant(&server, "full", &hundred).await.unwrap();
    let full = tenants(&server)
        .move_tenant_domain(MoveTenantDomainRequest {
            name: "tenants/full".into(),
            domain: "acme.test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (full.code(), reason_of(&full).as_str()),
        (Code::ResourceExhausted, "TENANT_DOMAINS_FULL")
    );
    let initech = tenants(&server)
        .get_tenant(GetTenantRequest {
            name: "tenants/initech".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(initech.domains, ["acme.test", "globex.test"]);
    server.stop().await;
}

async fn nothing_of_one_tenant_is_reachable_with_anothers_keys(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = tenant_with_keys(&server, "a", &["a.test"]).await;
    let b = tenant_with_keys(&server, "b", &["b.test"]).await;
    let a_portal = AppPasswordServiceClient::new(server.as_caller(Some(&a.issuer)));
    let mut b_portal = AppPasswordServiceClient::new(server.as_caller(Some(&b.issuer)));

    let issued = a_portal
        .clone()
        .issue_app_password(issue_request("alice@a.test", "Mail", &[Protocol::Imap]))
        .await
        .unwrap()
        .into_inner();
    let name = issued.app_password.unwrap().name;
    // The issue is written with the issuer's tenant.
    let trail = audit_events(
        &server,
        ListAuditEventsRequest {
            account: "accounts/alice@a.test".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(trail.len(), 1);
    assert_eq!(
        (trail[0].actor.as_str(), trail[0].actor_tenant.as_str()),
        ("a-portal", "tenants/a")
    );

    // B's portal: every call naming A's account is refused from the name
    // alone, the same for an account that exists and one that does not.
    // Nor a name with several `@` ending in B's domain: a mail server may
    // file it under a.test.
    for account in [
        "alice@a.test",
        "nobody@a.test",
        "root",
        "alice@a.test@b.test",
    ] {
        let password = format!("accounts/{account}/appPasswords/{}", uuid::Uuid::now_v7());
        let password = if account == "alice@a.test" {
            name.clone()
        } else {
            password
        };
        assert_outside(
            b_portal
                .issue_app_password(issue_request(account, "Mail", &[Protocol::Imap]))
                .await,
            "issue",
        );
        assert_outside(
            b_portal
                .list_app_passwords(ListAppPasswordsRequest {
                    parent: format!("accounts/{account}"),
                    ..Default::default()
                })
                .await,
            "list",
        );
        assert_outside(
            b_portal
                .get_app_password(GetAppPasswordRequest {
                    name: password.clone(),
                })
                .await,
            "get",
        );
        assert_outside(
            b_portal
                .revoke_app_password(RevokeAppPasswordRequest {
                    name: password.clone(),
                    reason: String::new(),
                })
                .await,
            "revoke",
        );
        assert_outside(
            b_portal
                .update_app_password(UpdateAppPasswordRequest {
                    app_password: Some(AppPassword {
                        name: password.clone(),
                        display_name: "mine now".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["display_name".into()],
                    }),
                })
                .await,
            "update",
        );
        assert_outside(
            b_portal
                .suspend_app_password(SuspendAppPasswordRequest {
                    name: password.clone(),
                    reason: String::new(),
                })
                .await,
            "suspend",
        );
        assert_outside(
            b_portal
                .resume_app_password(ResumeAppPasswordRequest {
                    name: password.clone(),
                })
                .await,
            "resume",
        );
        assert_outside(
            b_portal
                .revoke_account_app_passwords(RevokeAccountAppPasswordsRequest {
                    parent: format!("accounts/{account}"),
                    reason: String::new(),
                })
                .await,
            "revoke all",
        );
        assert_outside(
            b_portal
                .report_primary_credential_change(ReportPrimaryCredentialChangeRequest {
                    parent: format!("accounts/{account}"),
                    change: latchkey::grpc::pb::PrimaryCredentialChange::SelfServiceChange as i32,
                    change_time: None,
                })
                .await,
            "primary change",
        );
        assert_outside(
            LegacyAuthServiceClient::new(server.as_caller(Some(&b.issuer)))
                .explain_login(ExplainLoginRequest {
                    username: account.into(),
                    ..Default::default()
                })
                .await,
            "explain",
        );
    }
    // Nothing changed: alice's password is as issued, and the audit trail
    // holds only its issue.
    let password = a_portal
        .clone()
        .get_app_password(GetAppPasswordRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(password.display_name, "Mail");
    assert!(password.revoke_time.is_none());
    let trail = audit_events(
        &server,
        ListAuditEventsRequest {
            account: "accounts/alice@a.test".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(trail.len(), 1, "{trail:?}");

    // A tenant's issuer reaches its own accounts, and after an explicit
    // move, the moved domain's (once the caller cache's TTL has passed).
    a_portal
        .clone()
        .suspend_app_password(SuspendAppPasswordRequest {
            name: name.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    tenants(&server)
        .move_tenant_domain(MoveTenantDomainRequest {
            name: "tenants/b".into(),
            domain: "a.test".into(),
        })
        .await
        .unwrap();
    server.clock.advance(Duration::from_secs(2));
    b_portal
        .resume_app_password(ResumeAppPasswordRequest { name: name.clone() })
        .await
        .unwrap();
    assert_outside(
        a_portal
            .clone()
            .get_app_password(GetAppPasswordRequest { name })
            .await,
        "after the move",
    );
    server.stop().await;
}

async fn authenticate(
    server: &TestServer,
    key: &str,
    user: &str,
    pass: &str,
    ip: &str,
) -> AuthenticateResponse {
    LegacyAuthServiceClient::new(server.as_caller(Some(key)))
        .authenticate(login_request(user, pass, Protocol::Imap, ip))
        .await
        .unwrap()
        .into_inner()
}

async fn http_basic(server: &TestServer, key: &str, user: &str, pass: &str) -> u16 {
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    );
    let headers = [
        ("X-Latchkey-Key", key),
        ("X-Latchkey-Protocol", "imap"),
        ("X-Latchkey-Client-IP", "198.51.100.7"),
        ("Authorization", authorization.as_str()),
    ];
    get(server.adapters_addr, "/auth/http-basic", &headers)
        .await
        .status
}

async fn an_outsiders_login_costs_and_counts_as_an_unknown_users(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = tenant_with_keys(&server, "a", &["a.test"]).await;
    let b = tenant_with_keys(&server, "b", &["b.test"]).await;
    let issued = AppPasswordServiceClient::new(server.as_caller(Some(&a.issuer)))
        .issue_app_password(issue_request("alice@a.test", "Mail", &[Protocol::Imap]))
        .await
        .unwrap()
        .into_inner();
    let secret = issued.secret;

    // B's proxy with alice's right password: refused exactly as a name
    // nobody holds, each for one argon2 run.
    let before = argon2_runs(&server);
    let outsider = authenticate(
        &server,
        &b.authenticator,
        "alice@a.test",
        &secret,
        "192.0.2.1",
    )
    .await;
    let unknown = authenticate(
        &server,
        &b.authenticator,
        "nobody@b.test",
        &secret,
        "192.0.2.2",
    )
    .await;
    assert_refused(&outsider, FailureReason::InvalidCredentials);
    assert_eq!(outsider, unknown);
    assert_eq!(argon2_runs(&server) - before, 2);
    // Through the adapters too.
    let before = argon2_runs(&server);
    assert_eq!(
        http_basic(&server, &b.authenticator, "alice@a.test", &secret).await,
        401
    );
    assert_eq!(
        http_basic(&server, &b.authenticator, "nobody@b.test", &secret).await,
        401
    );
    assert_eq!(argon2_runs(&server) - before, 2);
    // And nginx mail's: the same answer for both.
    let before = argon2_runs(&server);
    let mut refusals = Vec::new();
    for user in ["alice@a.test", "nobody@b.test"] {
        let headers = mail(&b.authenticator, "imap", user, &secret, "192.0.2.30", 1);
        let answer = nginx_mail(&server, &headers).await;
        refusals.push(answer.header("auth-status").map(str::to_owned));
    }
    assert_eq!(refusals[0], refusals[1]);
    assert_eq!(refusals[0].as_deref(), Some("Invalid login or password"));
    assert_eq!(argon2_runs(&server) - before, 2);

    // Many guesses from B's side, from many networks: nothing counts on
    // alice's own account or pair counters, nothing names her in the
    // audit trail, and she signs in through her own tenant's proxy.
    for n in 0..12 {
        authenticate(
            &server,
            &b.authenticator,
            "alice@a.test",
            &wrong_secret(n),
            &format!("198.51.100.{}", n + 10),
        )
        .await;
    }
    let alice = Username::parse("alice@a.test").unwrap();
    let scopes = Scopes::of(&alice, "198.51.100.10".parse().unwrap(), Some("a"));
    assert_eq!(stored_failures(&server, &scopes.account.key).await, 0);
    assert_eq!(stored_failures(&server, &scopes.pair.key).await, 0);
    let outside = Scopes::outside("b", &alice, "198.51.100.10".parse().unwrap());
    assert!(stored_failures(&server, &outside.account.key).await > 0);
    let named = audit_events(
        &server,
        ListAuditEventsRequest {
            account: "accounts/alice@a.test".into(),
            types: vec![AuditEventType::AuthenticationFailed as i32],
            ..Default::default()
        },
    )
    .await;
    assert!(named.is_empty(), "{named:?}");
    let own = authenticate(
        &server,
        &a.authenticator,
        "alice@a.test",
        &secret,
        "192.0.2.9",
    )
    .await;
    assert!(own.authenticated, "{own:?}");
    assert_eq!(
        http_basic(&server, &a.authenticator, "alice@a.test", &secret).await,
        204
    );
    // The failures B's proxy caused are written with B's tenant.
    let failures = audit_events(
        &server,
        ListAuditEventsRequest {
            types: vec![AuditEventType::AuthenticationFailed as i32],
            ..Default::default()
        },
    )
    .await;
    assert!(!failures.is_empty());
    assert!(failures
        .iter()
        .all(|e| e.actor == "b-proxy" && e.actor_tenant == "tenants/b"));

    // B's proxy reports enough failures from one network to block it
    // (B's own names here, each under its pair's limit; the client address
    // is whatever B's proxy says).
    // The block is B's: A's users on that network (a carrier's NAT they
    // share) still sign in through A's proxy, and nothing counted on the
    // network for A's or the deployment-wide doors.
    let shared = "203.0.113.7";
    let limit = 30;
    for n in 0..limit {
        let refused = authenticate(
            &server,
            &b.authenticator,
            &format!("nobody{n}@b.test"),
            &wrong_secret(100 + n),
            shared,
        )
        .await;
        assert_refused(&refused, FailureReason::InvalidCredentials);
    }
    let blocked = authenticate(&server, &b.authenticator, "bob@b.test", &secret, shared).await;
    assert_refused(&blocked, FailureReason::Throttled);
    let ip = shared.parse().unwrap();
    let b_side = Scopes::of(&Username::parse("nobody@b.test").unwrap(), ip, Some("b"));
    assert_eq!(
        stored_failures(&server, &b_side.source.key).await,
        i64::from(limit)
    );
    let own = authenticate(&server, &a.authenticator, "alice@a.test", &secret, shared).await;
    assert!(own.authenticated, "{own:?}");
    for door in [Some("a"), None] {
        let source = Scopes::of(&alice, ip, door).source;
        assert_eq!(stored_failures(&server, &source.key).await, 0, "{door:?}");
    }
    // Each portal's ExplainLogin shows the network as its own proxies
    // count it: blocked for B's users, open for A's.
    AppPasswordServiceClient::new(server.as_caller(Some(&b.issuer)))
        .issue_app_password(issue_request("bob@b.test", "Mail", &[Protocol::Imap]))
        .await
        .unwrap();
    let explain = |key: String, user: &str| {
        let request = ExplainLoginRequest {
            username: user.into(),
            client_ip: shared.into(),
            protocol: Protocol::Imap as i32,
        };
        let channel = server.as_caller(Some(&key));
        async move {
            LegacyAuthServiceClient::new(channel)
                .explain_login(request)
                .await
                .unwrap()
                .into_inner()
                .source
                .unwrap()
        }
    };
    let b_view = explain(b.issuer.clone(), "bob@b.test").await;
    assert!(b_view.blocked_until.is_some(), "{b_view:?}");
    let a_view = explain(a.issuer.clone(), "alice@a.test").await;
    assert!(a_view.blocked_until.is_none(), "{a_view:?}");
    server.stop().await;
}

/// Opens WatchEvents with `key`; the stream after its first checkpoint.
async fn watch(
    server: &TestServer,
    key: &str,
    request: WatchEventsRequest,
) -> Result<tonic::Streaming<latchkey::grpc::pb::WatchEventsResponse>, Status> {
    Ok(watch_from_checkpoint(server, key, request).await?.0)
}

/// The token of the place a new stream of `key` starts at: the newest
/// event now.
async fn first_token(server: &TestServer, key: &str) -> String {
    watch_from_checkpoint(server, key, WatchEventsRequest::default())
        .await
        .unwrap()
        .1
}

/// The accounts of the events that arrive within `wait`.
async fn accounts_seen(
    stream: &mut tonic::Streaming<latchkey::grpc::pb::WatchEventsResponse>,
    wait: Duration,
) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(message) = tokio::time::timeout_at(deadline, stream.message()).await {
        if let Some(event) = message.unwrap().unwrap().audit_event {
            seen.push(event.account);
        }
    }
    seen
}

async fn a_tenants_watchers_see_only_its_accounts_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = tenant_with_keys(&server, "a", &["a.test", "a2.test"]).await;
    let b = tenant_with_keys(&server, "b", &["b.test"]).await;
    let before_everything = first_token(&server, &b.notifier).await;
    let mut a_mailer = watch(&server, &a.notifier, WatchEventsRequest::default())
        .await
        .unwrap();
    let mut a_proxy = watch(&server, &a.authenticator, WatchEventsRequest::default())
        .await
        .unwrap();
    let mut everyone = watch(
        &server,
        &server.keys[&Role::Operator],
        WatchEventsRequest::default(),
    )
    .await
    .unwrap();
    // Events of B's account, of an account with no domain, and of A's.
    for user in ["bob@b.test", "root", "alice@a.test"] {
        let (name, _) = issue_simple(&server, user).await;
        revoke(&server, name).await;
    }
    let all = accounts_seen(&mut everyone, Duration::from_secs(3)).await;
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(
        accounts_seen(&mut a_mailer, Duration::from_secs(1)).await,
        ["accounts/alice@a.test", "accounts/alice@a.test"]
    );
    // A proxy sees the revocation only (what makes a cached login stale).
    assert_eq!(
        accounts_seen(&mut a_proxy, Duration::from_secs(1)).await,
        ["accounts/alice@a.test"]
    );
    // Asking for another tenant's account is refused.
    let status = watch(
        &server,
        &a.notifier,
        WatchEventsRequest {
            account: "accounts/bob@b.test".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reason_of(&status), "OUTSIDE_TENANT");

    // A's domain moves to B. The streams stay open, and from the next
    // page on each has the domains as its tenant owns them: A's open
    // streams see none of alice's events made after the move, with no
    // reconnect and no cache expiring meanwhile (the clock stands still),
    // and B's stream, opened before the move, sees them.
    let mut b_mailer = watch(&server, &b.notifier, WatchEventsRequest::default())
        .await
        .unwrap();
    // Less than the caller cache's TTL: nothing read with the callers
    // expires. The move is later than alice's events so far.
    server.clock.advance(Duration::from_millis(100));
    tenants(&server)
        .move_tenant_domain(MoveTenantDomainRequest {
            name: "tenants/b".into(),
            domain: "a.test".into(),
        })
        .await
        .unwrap();
    let (name, _) = issue_simple(&server, "alice@a.test").await;
    revoke(&server, name).await;
    // The newest event, the revocation, is alice's: each stream reads it
    // as the end of its page (the statement's end row).
    assert_eq!(
        accounts_seen(&mut b_mailer, Duration::from_secs(3)).await,
        ["accounts/alice@a.test", "accounts/alice@a.test"]
    );
    assert!(accounts_seen(&mut a_mailer, Duration::from_secs(1))
        .await
        .is_empty());
    assert!(accounts_seen(&mut a_proxy, Duration::from_secs(1))
        .await
        .is_empty());
    // B's history of a.test starts at the move: resumed from before
    // everything, B's notifier gets its own bob's events and alice's made
    // since, not alice's from A's time.
    let mut b_resumed = watch(
        &server,
        &b.notifier,
        WatchEventsRequest {
            resume_token: before_everything,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        accounts_seen(&mut b_resumed, Duration::from_secs(3)).await,
        [
            "accounts/bob@b.test",
            "accounts/bob@b.test",
            "accounts/alice@a.test",
            "accounts/alice@a.test"
        ]
    );
    // A's events still reach A's open streams: they were not ended.
    let (name, _) = issue_simple(&server, "carol@a2.test").await;
    revoke(&server, name).await;
    assert_eq!(
        accounts_seen(&mut a_proxy, Duration::from_secs(3)).await,
        ["accounts/carol@a2.test"]
    );
    server.stop().await;
}

async fn each_tenants_policy_applies_to_its_accounts_whoever_asks(backend: Backend) {
    use latchkey::grpc::pb::{
        IssueAppPasswordRequest, PrimaryChangePolicy, PrimaryCredentialChange, TenantPolicy,
    };
    let day = 86_400;
    let duration = |seconds: i64| prost_types::Duration { seconds, nanos: 0 };
    let server = TestServer::start(backend).await;
    let policy = TenantPolicy {
        max_active_app_passwords: 2,
        max_lifetime: Some(duration(30 * day)),
        default_idle_timeout: Some(duration(7 * day)),
        allowed_protocols: vec![Protocol::Imap as i32, Protocol::Smtp as i32],
        self_service_change: PrimaryChangePolicy::RevokeAll as i32,
        ..TenantPolicy::default()
    };
    tenants(&server)
        .create_tenant(CreateTenantRequest {
            tenant_id: "a".into(),
            tenant: Some(Tenant {
                domains: vec!["a.test".into()],
                policy: Some(policy.clone()),
                ..Tenant::default()
            }),
        })
        .await
        .unwrap();
    create_tenant(&server, "b", &["b.test"]).await.unwrap();
    let shown = tenants(&server)
        .get_tenant(GetTenantRequest {
            name: "tenants/a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.policy, Some(policy));

    // The deployment-wide test issuer asks; the tenant's policy applies.
    let mut portal = server.app_passwords();
    let issue = |user: &str, protocols: &[Protocol]| issue_request(user, "Mail", protocols);
    let refused = portal
        .issue_app_password(issue("alice@a.test", &[Protocol::Pop3]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["protocols"]);
    let refused = portal
        .issue_app_password(issue("alice@a.test", &[Protocol::Any]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["protocols"]);
    let refused = portal
        .issue_app_password(with_ttl(issue("alice@a.test", &[Protocol::Imap]), 31 * day))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["ttl"]);
    let first = portal
        .issue_app_password(issue("alice@a.test", &[Protocol::Imap]))
        .await
        .unwrap()
        .into_inner();
    let first_password = first.app_password.unwrap();
    let start = server.clock.now().as_millis() / 1000;
    assert_eq!(
        first_password.expire_time.as_ref().map(|t| t.seconds),
        Some(start + 30 * day),
        "no expiry asked: the tenant's maximum"
    );
    assert_eq!(
        first_password.idle_timeout.as_ref().map(|d| d.seconds),
        Some(7 * day)
    );
    portal
        .issue_app_password(issue("alice@a.test", &[Protocol::Smtp]))
        .await
        .unwrap();
    let full = portal
        .issue_app_password(issue("alice@a.test", &[Protocol::Imap]))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&full), "APP_PASSWORD_CAP_REACHED");
    // An update may not reach past the maximum from the issue, nor add a
    // protocol the tenant does not allow.
    let update = |paths: &[&str], password: AppPassword| UpdateAppPasswordRequest {
        app_password: Some(password),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    };
    let longer = portal
        .update_app_password(update(
            &["expire_time"],
            AppPassword {
                name: first_password.name.clone(),
                expire_time: Some(prost_types::Timestamp {
                    seconds: start + 31 * day,
                    nanos: 0,
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&longer), ["app_password.expire_time"]);
    let pop = portal
        .update_app_password(update(
            &["protocols"],
            AppPassword {
                name: first_password.name.clone(),
                protocols: vec![Protocol::Imap as i32, Protocol::Pop3 as i32],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&pop), ["app_password.protocols"]);

    // Another tenant's accounts keep the deployment's policy.
    let bob = portal
        .issue_app_password(IssueAppPasswordRequest {
            ..issue("bob@b.test", &[Protocol::Pop3])
        })
        .await
        .unwrap()
        .into_inner();
    assert!(bob.app_password.unwrap().expire_time.is_none());

    // Tightened later: new issues follow it, issued passwords keep working.
    tenants(&server)
        .update_tenant(UpdateTenantRequest {
            tenant: Some(Tenant {
                name: "tenants/a".into(),
                policy: Some(TenantPolicy {
                    allowed_protocols: vec![Protocol::Smtp as i32],
                    self_service_change: PrimaryChangePolicy::RevokeAll as i32,
                    ..TenantPolicy::default()
                }),
                ..Tenant::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["policy".into()],
            }),
        })
        .await
        .unwrap();
    let imap = login(&server, "alice@a.test", &first.secret).await;
    assert!(imap.authenticated, "{imap:?}");
    let refused = portal
        .issue_app_password(issue("carol@a.test", &[Protocol::Imap]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["protocols"]);

    // The primary-change policy: the tenant's for alice, the deployment's
    // (keep, for a self-service change) for bob.
    let report = |user: &str| ReportPrimaryCredentialChangeRequest {
        parent: format!("accounts/{user}"),
        change: PrimaryCredentialChange::SelfServiceChange as i32,
        change_time: None,
    };
    let alice = portal
        .report_primary_credential_change(report("alice@a.test"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (alice.policy(), alice.revoked_count),
        (PrimaryChangePolicy::RevokeAll, 2)
    );
    let bob = portal
        .report_primary_credential_change(report("bob@b.test"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (bob.policy(), bob.revoked_count),
        (PrimaryChangePolicy::Keep, 0)
    );
    server.stop().await;
}

/// Migration 14 filled `account_domain` of existing events from the last
/// `@`; migration 16 clears it where the name holds several, so a
/// tenant's change feed, filtered by that column, never carries them.
async fn names_with_several_at_signs_lose_the_domain_migration_14_gave(backend: Backend) {
    use latchkey::store::entities::audit_event;
    use latchkey_migrations::{Migrator, MigratorTrait};
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, QueryOrder};
    let database = crate::common::harness::TestDatabase::create(backend).await;
    let db = database.connect().await;
    Migrator::up(&db, Some(15)).await.unwrap();
    for (username, domain) in [("alice@a.test@b.test", "b.test"), ("bob@b.test", "b.test")] {
        audit_event::ActiveModel {
            occurred_at: Set(0),
            event_type: Set("app_password_issued".to_owned()),
            actor: Set("portal".to_owned()),
            username: Set(Some(username.to_owned())),
            detail: Set(String::new()),
            feed_pending: Set(false),
            account_domain: Set(Some(domain.to_owned())),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();
    }
    Migrator::up(&db, None).await.unwrap();
    let domains: Vec<(Option<String>, Option<String>)> = audit_event::Entity::find()
        .order_by_asc(audit_event::Column::Id)
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.username, row.account_domain))
        .collect();
    assert_eq!(
        domains,
        [
            (Some("alice@a.test@b.test".to_owned()), None),
            (Some("bob@b.test".to_owned()), Some("b.test".to_owned())),
        ]
    );
}
