//! LegacyAuthService: the hot path legacy protocol proxies call on every
//! login.

use tonic::{Request, Response, Status};

use crate::domain::accounts::store::AccountStore;
use crate::domain::app_passwords::store::AppPasswordStore;
use crate::domain::audit::store::AuditStore;
use crate::domain::callers::model::Role;
use crate::domain::login::explain::{ExplainRequest, Viewer};
use crate::domain::login::model::{LoginAttempt, LoginOutcome, TypedPassword};
use crate::domain::login::service::Logins;
use crate::domain::login::store::{LoginStore, ThrottleStore, UsageStore};
use crate::domain::shared::client::ClientName;
use crate::domain::shared::error::Violations;
use crate::domain::shared::limits::PASSWORD_INPUT_MAX_BYTES;
use crate::domain::shared::network::canonical_ip;
use crate::domain::shared::username::Username;

use super::app_password_service::unchecked;
use super::convert::{duration, explanation_to_pb, parse_login_protocol, reason_to_pb};
use super::pb::legacy_auth_service_server::LegacyAuthService;
use super::pb::{
    self, AuthenticateRequest, AuthenticateResponse, ExplainLoginRequest, LoginExplanation,
};
use super::request_log::Outcome;
use super::{caller, deadline, names, validate};

pub struct LegacyAuthHandler<S> {
    logins: Logins<S>,
}

impl<S> LegacyAuthHandler<S> {
    pub fn new(logins: Logins<S>) -> Self {
        Self { logins }
    }
}

/// Bounds the password before anything else looks at it. What is not
/// shaped like an app password is still a login (a failed one, at the cost
/// of any other failure), not an error.
fn password(raw: &str) -> Result<TypedPassword, String> {
    if raw.is_empty() {
        return Err("is required".to_owned());
    }
    if raw.len() > PASSWORD_INPUT_MAX_BYTES {
        return Err(format!("must be at most {PASSWORD_INPUT_MAX_BYTES} bytes"));
    }
    Ok(TypedPassword::new(raw))
}

fn refused(
    reason: pb::FailureReason,
    retry_after: Option<prost_types::Duration>,
) -> AuthenticateResponse {
    AuthenticateResponse {
        authenticated: false,
        failure_reason: reason as i32,
        username: String::new(),
        app_password: String::new(),
        retry_after,
    }
}

#[tonic::async_trait]
impl<S> LegacyAuthService for LegacyAuthHandler<S>
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + AppPasswordStore + AccountStore,
{
    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let actor = caller::name_of(&request);
        let wait = deadline::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let username = v.check("username", Username::parse(&request.username));
        let password = v.check("password", password(&request.password));
        let protocol = v.check("protocol", parse_login_protocol(request.protocol));
        let client_ip = v.check("client_ip", validate::client_ip(&request.client_ip));
        let client = v.check("client_id", ClientName::parse(&request.client_id));
        v.finish()?;
        let (Some(username), Some(password), Some(protocol), Some(client_ip), Some(client)) =
            (username, password, protocol, client_ip, client)
        else {
            return Err(unchecked());
        };

        // Logged as the rules see it: an IPv4 client seen through IPv6 as
        // its IPv4 address, so one fail2ban filter matches both.
        let logged_ip = canonical_ip(client_ip);
        let outcome = self
            .logins
            .authenticate(LoginAttempt {
                username,
                password,
                protocol,
                client_ip,
                actor,
                wait,
                client,
            })
            .await?;
        let (body, logged) = match outcome {
            LoginOutcome::Success {
                username,
                app_password_id,
            } => {
                let logged = Outcome {
                    result: "success",
                    // Only a known account's name is logged: an unknown
                    // "username" is sometimes a password typed in the wrong box.
                    account: Some(username.to_string()),
                    protocol: Some(protocol.as_str()),
                    client_ip: Some(logged_ip),
                };
                let body = AuthenticateResponse {
                    authenticated: true,
                    failure_reason: pb::FailureReason::Unspecified as i32,
                    app_password: names::app_password(&username, app_password_id),
                    username: username.to_string(),
                    retry_after: None,
                };
                (body, logged)
            }
            LoginOutcome::Failure(reason) => (
                refused(reason_to_pb(reason), None),
                Outcome {
                    result: reason.as_str(),
                    account: None,
                    protocol: Some(protocol.as_str()),
                    client_ip: Some(logged_ip),
                },
            ),
            LoginOutcome::Throttled { retry_after } => {
                let retry_after = duration(retry_after);
                let body = refused(pb::FailureReason::Throttled, Some(retry_after));
                (
                    body,
                    Outcome {
                        result: "throttled",
                        account: None,
                        protocol: Some(protocol.as_str()),
                        client_ip: Some(logged_ip),
                    },
                )
            }
        };
        let mut response = Response::new(body);
        response.extensions_mut().insert(logged);
        Ok(response)
    }

    async fn explain_login(
        &self,
        request: Request<ExplainLoginRequest>,
    ) -> Result<Response<LoginExplanation>, Status> {
        // The access table lets only issuers and operators here; what an
        // issuer sees is decided in `domain::login::explain`.
        let viewer = match caller::role_of(&request) {
            Some(Role::Operator) => Viewer::Operator,
            _ => Viewer::Issuer(caller::name_of(&request)),
        };
        let request = request.into_inner();
        let mut v = Violations::default();
        let username = v.check("username", Username::parse(&request.username));
        let client_ip = if request.client_ip.is_empty() {
            Some(None)
        } else {
            v.check("client_ip", validate::client_ip(&request.client_ip))
                .map(|ip| Some(canonical_ip(ip)))
        };
        let protocol = if request.protocol == pb::Protocol::Unspecified as i32 {
            Some(None)
        } else {
            v.check("protocol", parse_login_protocol(request.protocol))
                .map(Some)
        };
        v.finish()?;
        let (Some(username), Some(client_ip), Some(protocol)) = (username, client_ip, protocol)
        else {
            return Err(unchecked());
        };

        let explanation = self
            .logins
            .explain(
                ExplainRequest {
                    username,
                    client_ip,
                    protocol,
                },
                &viewer,
            )
            .await?;
        let now = self.logins.clock().now();
        Ok(Response::new(explanation_to_pb(explanation, now)))
    }
}
