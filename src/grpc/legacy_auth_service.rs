//! LegacyAuthService: the hot path legacy protocol proxies call on every
//! login.

use tonic::{Request, Response, Status};

use crate::domain::accounts::store::AccountStore;
use crate::domain::app_passwords::store::AppPasswordStore;
use crate::domain::audit::store::AuditStore;
use crate::domain::callers::model::Role;
use crate::domain::login::explain::Viewer;
use crate::domain::login::service::Logins;
use crate::domain::login::store::{LoginStore, ThrottleStore, UsageStore};
use crate::domain::shared::network::canonical_ip;

use super::convert::{explanation_to_pb, login_outcome_to_pb};
use super::pb::legacy_auth_service_server::LegacyAuthService;
use super::pb::{AuthenticateRequest, AuthenticateResponse, ExplainLoginRequest, LoginExplanation};
use super::request_log::Outcome;
use super::{caller, deadline, requests};

pub struct LegacyAuthHandler<S> {
    logins: Logins<S>,
}

impl<S> LegacyAuthHandler<S> {
    pub fn new(logins: Logins<S>) -> Self {
        Self { logins }
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
        let actor = caller::actor_of(&request);
        let reach = caller::reach_of(&request);
        let wait = deadline::of(&request);
        let attempt = requests::parse_authenticate(request.get_ref(), actor, reach, wait)?;
        let protocol = attempt.protocol;
        // Logged as the rules see it: an IPv4 client seen through IPv6 as
        // its IPv4 address, so one fail2ban filter matches both.
        let logged_ip = canonical_ip(attempt.client_ip);
        let outcome = self.logins.authenticate(attempt).await?;
        let logged = Outcome::login(&outcome, protocol, logged_ip);
        let mut response = Response::new(login_outcome_to_pb(outcome));
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
        let mut explain = requests::parse_explain_login(request.get_ref())?;
        let reach = caller::reach_of(&request);
        reach.admit(&explain.username)?;
        // A tenant's portal sees the network as its own proxies count it.
        explain.door = reach.tenant().map(str::to_owned);
        let explanation = self.logins.explain(explain, &viewer).await?;
        let now = self.logins.clock().now();
        Ok(Response::new(explanation_to_pb(explanation, now)))
    }
}
