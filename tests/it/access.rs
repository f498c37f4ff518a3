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
        "/latchkey.v1.CallerService/RotateCallerKey",
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
    (
        "/latchkey.v1.LeakService/ReportLeakedSecrets",
        &[Role::Reporter, Role::Operator],
        DEPLOYMENT,
    ),
    (
        "/latchkey.v1.LeakService/LookupAppPassword",
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
            ..Default::default()
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

/// An encoded request, sent as it is: one call path for every method.
#[derive(Debug, Default, Clone)]
struct Raw(Vec<u8>);

impl Message for Raw {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

/// A valid request of `method` naming `username`'s account (`None` for a
/// method that names none).
fn request_naming(method: &str, username: &str) -> Option<Vec<u8>> {
    use latchkey::grpc::pb;
    let account = format!("accounts/{username}");
    let password = format!("{account}/appPasswords/{}", uuid::Uuid::now_v7());
    let name = method.rsplit('/').next().unwrap();
    Some(match name {
        "IssueAppPassword" => {
            crate::common::support::issue_request(username, "Mail", &[pb::Protocol::Imap])
                .encode_to_vec()
        }
        "ListAppPasswords" => pb::ListAppPasswordsRequest {
            parent: account,
            ..Default::default()
        }
        .encode_to_vec(),
        "GetAppPassword" | "ResumeAppPassword" => {
            pb::GetAppPasswordRequest { name: password }.encode_to_vec()
        }
        "RevokeAppPassword" | "SuspendAppPassword" => pb::RevokeAppPasswordRequest {
            name: password,
            reason: String::new(),
        }
        .encode_to_vec(),
        "RevokeAccountAppPasswords" => pb::RevokeAccountAppPasswordsRequest {
            parent: account,
            reason: String::new(),
        }
        .encode_to_vec(),
        "UpdateAppPassword" => pb::UpdateAppPasswordRequest {
            app_password: Some(pb::AppPassword {
                name: password,
                display_name: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        }
        .encode_to_vec(),
        "ReportPrimaryCredentialChange" => pb::ReportPrimaryCredentialChangeRequest {
            parent: account,
            change: pb::PrimaryCredentialChange::SelfServiceChange as i32,
            change_time: None,
        }
        .encode_to_vec(),
        "Authenticate" => crate::common::support::login_request(
            username,
            "abcd efgh ijkl mnop qrst uvwx yzab",
            pb::Protocol::Imap,
            "192.0.2.50",
        )
        .encode_to_vec(),
        "ExplainLogin" => pb::ExplainLoginRequest {
            username: username.into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "WatchEvents" => pb::WatchEventsRequest {
            account,
            ..Default::default()
        }
        .encode_to_vec(),
        _ => return None,
    })
}

/// Calls `path` with `request`; the status of its first answer.
async fn call_with(channel: Authed, path: &str, request: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Raw, ()>::default();
    let path = http::uri::PathAndQuery::from_str(path).unwrap();
    match grpc
        .server_streaming(tonic::Request::new(Raw(request)), path, codec)
        .await
    {
        Ok(response) => match response.into_inner().message().await {
            Ok(_) => tonic::Status::ok(""),
            Err(status) => status,
        },
        Err(status) => status,
    }
}

crate::backend_tests!(every_method_checks_a_scoped_callers_tenant);

/// The tenant dimension: every RPC × every role a scoped caller may have
/// × an account in its tenant, out of it, and the same out-of-tenant
/// account asked for by a deployment-wide caller of that role.
async fn every_method_checks_a_scoped_callers_tenant(backend: Backend) {
    use latchkey::grpc::pb::tenant_service_client::TenantServiceClient;
    use latchkey::grpc::pb::{CreateTenantRequest, Tenant};
    let server = TestServer::start(backend).await;
    TenantServiceClient::new(server.as_role(Role::Operator))
        .create_tenant(CreateTenantRequest {
            tenant_id: "acme".into(),
            tenant: Some(Tenant {
                domains: vec!["acme.test".into()],
                ..Tenant::default()
            }),
        })
        .await
        .unwrap();
    let mut scoped = Vec::new();
    for role in [Role::Issuer, Role::Authenticator, Role::Notifier] {
        let key = server
            .callers()
            .create_caller(CreateCallerRequest {
                name: format!("acme-{role}"),
                role: match role {
                    Role::Issuer => latchkey::grpc::pb::Role::Issuer,
                    Role::Authenticator => latchkey::grpc::pb::Role::Authenticator,
                    _ => latchkey::grpc::pb::Role::Notifier,
                } as i32,
                tls_identity: String::new(),
                tenant: "tenants/acme".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .key;
        scoped.push((role, key));
    }
    let outcome = |status: &tonic::Status| {
        let reason = crate::common::support::reason_of(status);
        (status.code(), reason)
    };
    for (method, allowed, reach) in EXPECTED {
        for (role, key) in &scoped {
            let inside = request_naming(method, "alice@acme.test");
            let request = inside.clone().unwrap_or_default();
            let status = call_with(server.as_caller(Some(key)), method, request).await;
            if !allowed.contains(role) {
                assert_eq!(
                    outcome(&status),
                    (Code::PermissionDenied, "ROLE_NOT_ALLOWED".to_owned()),
                    "{method} as a scoped {role}"
                );
                continue;
            }
            assert_eq!(
                *reach, TENANT,
                "{method}: scoped callers have no deployment-wide role"
            );
            assert!(inside.is_some(), "{method} names no account");
            assert_ne!(
                status.code(),
                Code::PermissionDenied,
                "{method} refused a scoped {role} its own tenant's account: {status:?}"
            );
            for outside in ["alice@other.test", "alice@eu.acme.test", "root"] {
                let request = request_naming(method, outside).unwrap();
                let status = call_with(server.as_caller(Some(key)), method, request.clone()).await;
                if *method == "/latchkey.v1.LegacyAuthService/Authenticate" {
                    // Answered as an unknown user's login: a refusal, not an error.
                    assert_eq!(status.code(), Code::Ok, "{method} {outside}: {status:?}");
                } else {
                    assert_eq!(
                        outcome(&status),
                        (Code::PermissionDenied, "OUTSIDE_TENANT".to_owned()),
                        "{method} let a scoped {role} reach {outside}"
                    );
                }
                // The same request from a deployment-wide caller of the
                // role is never refused for its account.
                let status = call_with(server.as_role(*role), method, request).await;
                assert_ne!(
                    status.code(),
                    Code::PermissionDenied,
                    "{method} refused a deployment-wide {role} {outside}: {status:?}"
                );
            }
        }
    }
    server.stop().await;
}
