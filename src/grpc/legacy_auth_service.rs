//! LegacyAuthService: the hot path legacy protocol proxies call on every
//! login.

use tonic::{Request, Response, Status};

use crate::domain::authenticate::{FailureReason, LoginAttempt, LoginOutcome};
use crate::domain::error::Violations;
use crate::domain::limits::PASSWORD_INPUT_MAX_BYTES;
use crate::domain::secret::Secret;
use crate::domain::store::Store;
use crate::domain::username::Username;
use crate::domain::Latchkey;

use super::app_password_service::unchecked;
use super::convert::parse_login_protocol;
use super::pb::legacy_auth_service_server::LegacyAuthService;
use super::pb::{self, AuthenticateRequest, AuthenticateResponse};
use super::request_log::Outcome;
use super::{caller, names, validate};

pub struct LegacyAuthHandler<S> {
    core: Latchkey<S>,
}

impl<S> LegacyAuthHandler<S> {
    pub fn new(core: Latchkey<S>) -> Self {
        Self { core }
    }
}

/// Bounds the password before anything else looks at it. What is not
/// shaped like an app password becomes `None`: a failed login, not an
/// error, at the cost of any other failure.
fn password(raw: &str) -> Result<Option<Secret>, String> {
    if raw.is_empty() {
        return Err("is required".to_owned());
    }
    if raw.len() > PASSWORD_INPUT_MAX_BYTES {
        return Err(format!("must be at most {PASSWORD_INPUT_MAX_BYTES} bytes"));
    }
    Ok(Secret::parse(raw))
}

fn reason_to_pb(reason: FailureReason) -> pb::FailureReason {
    match reason {
        FailureReason::InvalidCredentials => pb::FailureReason::InvalidCredentials,
        FailureReason::AccountDisabled => pb::FailureReason::AccountDisabled,
        FailureReason::Revoked => pb::FailureReason::Revoked,
        FailureReason::Expired => pb::FailureReason::Expired,
        FailureReason::ProtocolNotAllowed => pb::FailureReason::ProtocolNotAllowed,
        FailureReason::NetworkNotAllowed => pb::FailureReason::NetworkNotAllowed,
    }
}

#[tonic::async_trait]
impl<S: Store> LegacyAuthService for LegacyAuthHandler<S> {
    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let actor = caller::name_of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let username = v.check("username", Username::parse(&request.username));
        let secret = v.check("password", password(&request.password));
        let protocol = v.check("protocol", parse_login_protocol(request.protocol));
        let client_ip = v.check("client_ip", validate::client_ip(&request.client_ip));
        v.finish()?;
        let (Some(username), Some(secret), Some(protocol), Some(client_ip)) =
            (username, secret, protocol, client_ip)
        else {
            return Err(unchecked());
        };

        let outcome = self
            .core
            .authenticate(LoginAttempt {
                username,
                secret,
                protocol,
                client_ip,
                actor,
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
                };
                let body = AuthenticateResponse {
                    authenticated: true,
                    failure_reason: pb::FailureReason::Unspecified as i32,
                    app_password: names::app_password(&username, app_password_id),
                    username: username.to_string(),
                };
                (body, logged)
            }
            LoginOutcome::Failure(reason) => {
                let result = reason.as_str();
                let body = AuthenticateResponse {
                    authenticated: false,
                    failure_reason: reason_to_pb(reason) as i32,
                    username: String::new(),
                    app_password: String::new(),
                };
                (
                    body,
                    Outcome {
                        result,
                        account: None,
                    },
                )
            }
        };
        let mut response = Response::new(body);
        response.extensions_mut().insert(logged);
        Ok(response)
    }
}
