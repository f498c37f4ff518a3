//! Every RPC against every kind of caller: no credential, a malformed,
//! unknown or revoked key, and each role. The expected table below is the
//! specification; it must name exactly the methods the protos define, so an
//! RPC added without a decision about who may call it fails here.

use std::collections::BTreeSet;
use std::str::FromStr;

use latchkey::domain::callers::model::Role;
use latchkey::grpc::access::{access_for, Access, POLICY};
use latchkey::grpc::pb::{CreateCallerRequest, RevokeCallerRequest};
use prost::Message;
use tonic::Code;

use crate::common::harness::{Authed, Backend, TestServer};

const ISSUER_OR_OPERATOR: &[Role] = &[Role::Issuer, Role::Operator];
const AUTHENTICATOR_OR_OPERATOR: &[Role] = &[Role::Authenticator, Role::Operator];
const OPERATOR: &[Role] = &[Role::Operator];
const WATCHERS: &[Role] = &[Role::Authenticator, Role::Notifier, Role::Operator];

/// Whether a caller scoped to a tenant may call a method at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Yes, for accounts of its tenant's domains only.
    Tenant,
    /// No: deployment-wide callers only.
    Deployment,
}
use Reach::{Deployment as DEPLOYMENT, Tenant as TENANT};

/// Who may call each latchkey RPC: the brief's roles, written out, and
/// whether a scoped caller of those roles may.
const EXPECTED: &[(&str, &[Role], Reach)] = &[
    (
        "/latchkey.v1.AppPasswordService/IssueAppPassword",
        ISSUER_OR_OPERATOR,
        TENANT,
    ),
    (
        "/latchkey.v1.AppPasswordService/ListAppPasswords",
        ISSUER_OR_OPERATOR,
        TENANT,
    ),
    (
        "/latchkey.v1.AppPasswordService/GetAppPassword",
        ISSUER_OR_OPERATOR,
        TENANT,
    ),
    (
        "/latchkey.v1.AppPasswordService/RevokeAppPassword",
        ISSUER_OR_OPERATOR,
        TENANT,
    ),
    (
        "/latchkey.v1.AppPasswordService/RevokeAccountAppPasswords",
        ISSUER_OR_OPERATOR,
        TENANT,
    ),
    (
        "/latchkey.v1.AppPasswordService/UpdateAppPassword",
        ISSUER_OR_OPERATOR,
        TENANT,
    ),
    (
        "/latchkey.v1.AppPasswordService/SuspendAppPassword",
        ISSUER_OR_OPERATOR,
        TENANT,
    ),
    (
        "/latchkey.v1.AppPasswordService/ResumeAppPassword",
        ISSUER_OR_OPERATOR,
        TENANT,
    ),
    (
        "/latchkey.v1.AppPasswordService/ReportPrimaryCredentialChange",
        ISSUER_OR_OPERATOR,
        TENANT,
    ),
    (
        "/latchkey.v1.AppPasswordService/BulkRevokeAppPasswords",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.LegacyAuthService/Authenticate",
        AUTHENTICATOR_OR_OPERATOR,
        TENANT,
    ),
    (
        "/latchkey.v1.LegacyAuthService/ExplainLogin",
        ISSUER_OR_OPERATOR,
        TENANT,
    ),
    (
        "/latchkey.v1.AccountService/GetAccount",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.AccountService/ListAccounts",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.AccountService/DisableAccount",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.AccountService/EnableAccount",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.AccountService/DeleteAccount",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.CallerService/CreateCaller",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.CallerService/ListCallers",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.CallerService/RevokeCaller",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.AuditService/ListAuditEvents",
        OPERATOR,
        DEPLOYMENT,
    ),
    ("/latchkey.v1.AuditService/WatchEvents", WATCHERS, TENANT),
    (
        "/latchkey.v1.TenantService/CreateTenant",
        OPERATOR,
        DEPLOYMENT,
    ),
    ("/latchkey.v1.TenantService/GetTenant", OPERATOR, DEPLOYMENT),
    (
        "/latchkey.v1.TenantService/ListTenants",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.TenantService/UpdateTenant",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.TenantService/DeleteTenant",
        OPERATOR,
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.TenantService/MoveTenantDomain",
        OPERATOR,
        DEPLOYMENT,
    ),
];

/// Every RPC the compiled protos define, as request paths.
fn defined_methods() -> BTreeSet<String> {
    let files =
        prost_types::FileDescriptorSet::decode(latchkey::grpc::pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = BTreeSet::new();
    for file in files.file {
        for service in &file.service {
            for method in &service.method {
                methods.insert(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    methods
}

#[test]
fn the_policy_covers_exactly_the_defined_methods() {
    let defined = defined_methods();
    let expected: BTreeSet<String> = EXPECTED.iter().map(|(m, ..)| (*m).to_owned()).collect();
    assert_eq!(defined, expected, "the protos and this table disagree");
    let in_policy: BTreeSet<String> = POLICY
        .iter()
        .map(|(m, _)| (*m).to_owned())
        .filter(|m| m.starts_with("/latchkey."))
        .collect();
    assert_eq!(
        in_policy, expected,
        "src/grpc/access.rs and this table disagree"
    );
    for (method, roles, reach) in EXPECTED {
        let access = match reach {
            TENANT => Access::Roles(roles),
            DEPLOYMENT => Access::Deployment(roles),
        };
        assert_eq!(access_for(method), Some(access), "{method}");
    }
    assert_eq!(
        access_for("/latchkey.v1.AppPasswordService/NoSuchMethod"),
        None
    );
}

/// Calls `path` with an empty request (valid protobuf for any message) and
/// returns the status code of its first answer. Called as a server stream,
/// so that a stream that stays open (WatchEvents) answers with its first
/// message; a unary method answers the same way.
async fn call(channel: Authed, path: &str) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::from_str(path).unwrap();
    match grpc
        .server_streaming(tonic::Request::new(()), path, codec)
        .await
    {
        Ok(response) => match response.into_inner().message().await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        },
        Err(status) => status.code(),
    }
}

crate::backend_tests!(every_method_checks_its_caller);

async fn every_method_checks_its_caller(backend: Backend) {
    let server = TestServer::start(backend).await;
    let revoked_key = server
        .callers()
        .create_caller(CreateCallerRequest {
            name: "retired-proxy".into(),
            role: latchkey::grpc::pb::Role::Operator as i32,
            tls_identity: String::new(),
            tenant: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .key;
    server
        .callers()
        .revoke_caller(RevokeCallerRequest {
            name: "callers/retired-proxy".into(),
        })
        .await
        .unwrap();
    let operator_key = server.keys[&Role::Operator].clone();
    // Well-formed, but no caller has it: the id is right, the secret is not.
    let secret_half = crate::common::support::key_secret_half(&operator_key);
    let forged = format!(
        "{}{}",
        &operator_key[..operator_key.len() - secret_half.len()],
        "A".repeat(43)
    );
    let unknown = "latchkey_aaaaaaaaaaaa_".to_owned() + &"B".repeat(43);

    for (method, allowed, _) in EXPECTED {
        for key in [
            None,
            Some("not-a-key"),
            Some(unknown.as_str()),
            Some(forged.as_str()),
            Some(revoked_key.as_str()),
        ] {
            let code = call(server.as_caller(key), method).await;
            assert_eq!(code, Code::Unauthenticated, "{method} with {key:?}");
        }
        for role in Role::ALL {
            let code = call(server.as_role(role), method).await;
            if allowed.contains(&role) {
                assert!(
                    !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                    "{method} refused {role}: {code:?}"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{method} let {role} through");
            }
        }
    }
    server.stop().await;
}
