//! AppPasswordService: who calls, the request parsed (`requests`), one
//! call of the domain service, the answer converted; the rules live in
//! `domain`.

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::domain::accounts::store::AccountStore;
use crate::domain::app_passwords::service::AppPasswords;
use crate::domain::app_passwords::store::AppPasswordStore;
use crate::domain::audit::store::AuditStore;
use crate::domain::tenants::store::TenantStore;

use super::convert::{app_password_to_pb, policy_to_pb};
use super::pb::app_password_service_server::AppPasswordService;
use super::pb::{
    AppPassword, BulkRevokeAppPasswordsRequest, BulkRevokeAppPasswordsResponse,
    GetAppPasswordRequest, IssueAppPasswordRequest, IssueAppPasswordResponse,
    ListAppPasswordsRequest, ListAppPasswordsResponse, ReportPrimaryCredentialChangeRequest,
    ReportPrimaryCredentialChangeResponse, ResumeAppPasswordRequest,
    RevokeAccountAppPasswordsRequest, RevokeAccountAppPasswordsResponse, RevokeAppPasswordRequest,
    SuspendAppPasswordRequest, UpdateAppPasswordRequest,
};
use super::requests::{self, AccountReason, AppPasswordName, ReasonedChange};
use super::{caller, deadline, paging};

/// The longest one BulkRevokeAppPasswords call works before it returns
/// with `complete: false` (half the caller's deadline, if shorter).
const BULK_BUDGET: Duration = Duration::from_secs(20);

/// A count for a response.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub struct AppPasswordHandler<S> {
    app_passwords: AppPasswords<S>,
}

impl<S> AppPasswordHandler<S> {
    pub fn new(app_passwords: AppPasswords<S>) -> Self {
        Self { app_passwords }
    }
}

impl<S: AppPasswordStore + AccountStore + AuditStore + TenantStore> AppPasswordHandler<S> {
    /// One app password as a response, in its state as of now.
    fn answer(
        &self,
        password: crate::domain::app_passwords::model::AppPassword,
    ) -> Response<AppPassword> {
        Response::new(app_password_to_pb(password, self.app_passwords.now()))
    }
}

#[tonic::async_trait]
impl<S: AppPasswordStore + AccountStore + AuditStore + TenantStore> AppPasswordService
    for AppPasswordHandler<S>
{
    async fn issue_app_password(
        &self,
        request: Request<IssueAppPasswordRequest>,
    ) -> Result<Response<IssueAppPasswordResponse>, Status> {
        let issued_by = caller::actor_of(&request);
        let issue = requests::parse_issue_app_password(request.get_ref(), issued_by)?;
        caller::reach_of(&request).admit(&issue.username)?;
        let issued = self.app_passwords.issue(issue).await?;
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
        let list = requests::parse_list_app_passwords(request.get_ref())?;
        caller::reach_of(&request).admit(&list.username)?;
        let page = self
            .app_passwords
            .list_app_passwords(
                &list.username,
                list.show_revoked,
                list.after,
                list.page_size,
            )
            .await?;
        let next_page_token = paging::next_token(&page, |last| {
            paging::app_password_token(&list.username, list.show_revoked, last.cursor())
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
        let AppPasswordName { username, id } = requests::parse_get_app_password(request.get_ref())?;
        caller::reach_of(&request).admit(&username)?;
        let password = self.app_passwords.get_app_password(&username, id).await?;
        Ok(self.answer(password))
    }

    async fn revoke_app_password(
        &self,
        request: Request<RevokeAppPasswordRequest>,
    ) -> Result<Response<AppPassword>, Status> {
        let actor = caller::actor_of(&request);
        let ReasonedChange { name, reason } =
            requests::parse_revoke_app_password(request.get_ref())?;
        caller::reach_of(&request).admit(&name.username)?;
        let password = self
            .app_passwords
            .revoke_app_password(&name.username, name.id, &reason, &actor)
            .await?;
        Ok(self.answer(password))
    }

    async fn revoke_account_app_passwords(
        &self,
        request: Request<RevokeAccountAppPasswordsRequest>,
    ) -> Result<Response<RevokeAccountAppPasswordsResponse>, Status> {
        let actor = caller::actor_of(&request);
        let AccountReason { username, reason } =
            requests::parse_revoke_account_app_passwords(request.get_ref())?;
        caller::reach_of(&request).admit(&username)?;
        let revoked = self
            .app_passwords
            .revoke_account_app_passwords(&username, &reason, &actor)
            .await?;
        Ok(Response::new(RevokeAccountAppPasswordsResponse {
            revoked_count: count(revoked),
        }))
    }

    async fn update_app_password(
        &self,
        request: Request<UpdateAppPasswordRequest>,
    ) -> Result<Response<AppPassword>, Status> {
        let actor = caller::actor_of(&request);
        let requests::Update { name, update } =
            requests::parse_update_app_password(request.get_ref())?;
        caller::reach_of(&request).admit(&name.username)?;
        let updated = self
            .app_passwords
            .update(&name.username, name.id, update, &actor)
            .await?;
        Ok(self.answer(updated))
    }

    async fn suspend_app_password(
        &self,
        request: Request<SuspendAppPasswordRequest>,
    ) -> Result<Response<AppPassword>, Status> {
        let actor = caller::actor_of(&request);
        let ReasonedChange { name, reason } =
            requests::parse_suspend_app_password(request.get_ref())?;
        caller::reach_of(&request).admit(&name.username)?;
        let password = self
            .app_passwords
            .suspend(&name.username, name.id, &reason, &actor)
            .await?;
        Ok(self.answer(password))
    }

    async fn resume_app_password(
        &self,
        request: Request<ResumeAppPasswordRequest>,
    ) -> Result<Response<AppPassword>, Status> {
        let actor = caller::actor_of(&request);
        let AppPasswordName { username, id } =
            requests::parse_resume_app_password(request.get_ref())?;
        caller::reach_of(&request).admit(&username)?;
        let password = self.app_passwords.resume(&username, id, &actor).await?;
        Ok(self.answer(password))
    }

    async fn report_primary_credential_change(
        &self,
        request: Request<ReportPrimaryCredentialChangeRequest>,
    ) -> Result<Response<ReportPrimaryCredentialChangeResponse>, Status> {
        let actor = caller::actor_of(&request);
        let report = requests::parse_report_primary_credential_change(request.get_ref())?;
        caller::reach_of(&request).admit(&report.username)?;
        let outcome = self
            .app_passwords
            .primary_credential_changed(&report.username, report.change, report.changed_at, &actor)
            .await?;
        Ok(Response::new(ReportPrimaryCredentialChangeResponse {
            policy: policy_to_pb(outcome.policy) as i32,
            revoked_count: count(outcome.revoked),
        }))
    }

    async fn bulk_revoke_app_passwords(
        &self,
        request: Request<BulkRevokeAppPasswordsRequest>,
    ) -> Result<Response<BulkRevokeAppPasswordsResponse>, Status> {
        let actor = caller::actor_of(&request);
        let budget = deadline::of(&request).map_or(BULK_BUDGET, |d| (d / 2).min(BULK_BUDGET));
        let bulk = requests::parse_bulk_revoke_app_passwords(request.get_ref())?;
        let outcome = self
            .app_passwords
            .bulk_revoke(
                &bulk.filter,
                &bulk.reason,
                bulk.validate_only,
                budget,
                &actor,
            )
            .await?;
        let now = self.app_passwords.now();
        Ok(Response::new(BulkRevokeAppPasswordsResponse {
            matching_count: count(outcome.matching),
            sample: outcome
                .sample
                .into_iter()
                .map(|p| app_password_to_pb(p, now))
                .collect(),
            revoked_count: count(outcome.revoked),
            account_count: count(outcome.accounts),
            complete: outcome.complete,
        }))
    }
}
