//! AppPasswordService: translation only; the rules live in `domain`.

use tonic::{Request, Response, Status};

use crate::domain::accounts::store::AccountStore;
use crate::domain::app_passwords::model::{Expiry, IssueRequest};
use crate::domain::app_passwords::service::AppPasswords;
use crate::domain::app_passwords::store::AppPasswordStore;
use crate::domain::shared::error::{Error, Violations};

use super::convert::{
    app_password_to_pb, parse_positive_duration, parse_protocol_set, parse_timestamp,
};
use super::pb::app_password_service_server::AppPasswordService;
use super::pb::issue_app_password_request::Expiration;
use super::pb::{
    AppPassword, GetAppPasswordRequest, IssueAppPasswordRequest, IssueAppPasswordResponse,
    ListAppPasswordsRequest, ListAppPasswordsResponse, RevokeAccountAppPasswordsRequest,
    RevokeAccountAppPasswordsResponse, RevokeAppPasswordRequest,
};
use super::{caller, names, paging, validate};

pub struct AppPasswordHandler<S> {
    app_passwords: AppPasswords<S>,
}

impl<S> AppPasswordHandler<S> {
    pub fn new(app_passwords: AppPasswords<S>) -> Self {
        Self { app_passwords }
    }
}

/// Reached only if a check let a bad field through without recording it.
pub(super) fn unchecked() -> Status {
    Error::internal("a field failed validation without a recorded violation").into()
}

#[tonic::async_trait]
impl<S: AppPasswordStore + AccountStore> AppPasswordService for AppPasswordHandler<S> {
    async fn issue_app_password(
        &self,
        request: Request<IssueAppPasswordRequest>,
    ) -> Result<Response<IssueAppPasswordResponse>, Status> {
        let issued_by = caller::name_of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let username = v.check("parent", names::parse_account(&request.parent));
        let display_name = v.check(
            "display_name",
            validate::display_name(&request.display_name),
        );
        let protocols = v.check("protocols", parse_protocol_set(&request.protocols));
        let expiry = match &request.expiration {
            None => Some(None),
            Some(Expiration::ExpireTime(at)) => v
                .check("expire_time", parse_timestamp(at))
                .map(|at| Some(Expiry::At(at))),
            Some(Expiration::Ttl(ttl)) => v
                .check("ttl", parse_positive_duration(ttl))
                .map(|ttl| Some(Expiry::After(ttl))),
        };
        let allowed_networks = v.check(
            "allowed_networks",
            validate::allowed_networks(&request.allowed_networks),
        );
        v.finish()?;
        let (
            Some(username),
            Some(display_name),
            Some(protocols),
            Some(expiry),
            Some(allowed_networks),
        ) = (username, display_name, protocols, expiry, allowed_networks)
        else {
            return Err(unchecked());
        };

        let issued = self
            .app_passwords
            .issue(IssueRequest {
                username,
                display_name,
                protocols,
                expiry,
                allowed_networks,
                issued_by,
            })
            .await?;
        let now = self.app_passwords.now();
        Ok(Response::new(IssueAppPasswordResponse {
            app_password: Some(app_password_to_pb(issued.app_password, now)),
            secret: issued.secret.display().to_string(),
        }))
    }

    async fn list_app_passwords(
        &self,
        request: Request<ListAppPasswordsRequest>,
    ) -> Result<Response<ListAppPasswordsResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::default();
        let username = v.check("parent", names::parse_account(&request.parent));
        let page_size = v.check("page_size", paging::page_size(request.page_size));
        let after = username.as_ref().and_then(|username| {
            v.check(
                "page_token",
                paging::parse_app_password_token(
                    &request.page_token,
                    username,
                    request.show_revoked,
                ),
            )
        });
        v.finish()?;
        let (Some(username), Some(page_size), Some(after)) = (username, page_size, after) else {
            return Err(unchecked());
        };

        let page = self
            .app_passwords
            .list_app_passwords(&username, request.show_revoked, after, page_size)
            .await?;
        let next_page_token = paging::next_token(&page, |last| {
            paging::app_password_token(&username, request.show_revoked, last.cursor())
        });
        let now = self.app_passwords.now();
        Ok(Response::new(ListAppPasswordsResponse {
            app_passwords: page
                .items
                .into_iter()
                .map(|p| app_password_to_pb(p, now))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_app_password(
        &self,
        request: Request<GetAppPasswordRequest>,
    ) -> Result<Response<AppPassword>, Status> {
        let (username, id) = names::parse_app_password(&request.get_ref().name)
            .map_err(|why| Error::invalid("name", why))?;
        let password = self.app_passwords.get_app_password(&username, id).await?;
        Ok(Response::new(app_password_to_pb(
            password,
            self.app_passwords.now(),
        )))
    }

    async fn revoke_app_password(
        &self,
        request: Request<RevokeAppPasswordRequest>,
    ) -> Result<Response<AppPassword>, Status> {
        let actor = caller::name_of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let name = v.check("name", names::parse_app_password(&request.name));
        let reason = v.check("reason", validate::reason(&request.reason));
        v.finish()?;
        let (Some((username, id)), Some(reason)) = (name, reason) else {
            return Err(unchecked());
        };

        let password = self
            .app_passwords
            .revoke_app_password(&username, id, &reason, &actor)
            .await?;
        Ok(Response::new(app_password_to_pb(
            password,
            self.app_passwords.now(),
        )))
    }

    async fn revoke_account_app_passwords(
        &self,
        request: Request<RevokeAccountAppPasswordsRequest>,
    ) -> Result<Response<RevokeAccountAppPasswordsResponse>, Status> {
        let actor = caller::name_of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let username = v.check("parent", names::parse_account(&request.parent));
        let reason = v.check("reason", validate::reason(&request.reason));
        v.finish()?;
        let (Some(username), Some(reason)) = (username, reason) else {
            return Err(unchecked());
        };

        let revoked = self
            .app_passwords
            .revoke_account_app_passwords(&username, &reason, &actor)
            .await?;
        Ok(Response::new(RevokeAccountAppPasswordsResponse {
            revoked_count: i64::try_from(revoked).unwrap_or(i64::MAX),
        }))
    }
}
