//! AppPasswordService: translation only; the rules live in `domain`.

use tonic::{Request, Response, Status};

use std::time::Duration;

use uuid::Uuid;

use crate::domain::accounts::store::AccountStore;
use crate::domain::app_passwords::model::{
    check_idle_timeout, BulkFilter, Expiry, IssueRequest, SettingsUpdate,
};
use crate::domain::app_passwords::service::AppPasswords;
use crate::domain::app_passwords::store::AppPasswordStore;
use crate::domain::audit::store::AuditStore;
use crate::domain::shared::error::{Error, Violations};
use crate::domain::shared::patch::Patch;
use crate::domain::shared::username::Username;

use super::convert::{
    app_password_to_pb, parse_change, parse_login_protocol, parse_positive_duration,
    parse_protocol_set, parse_timestamp, policy_to_pb,
};
use super::pb::app_password_service_server::AppPasswordService;
use super::pb::issue_app_password_request::Expiration;
use super::pb::{
    self, AppPassword, BulkRevokeAppPasswordsRequest, BulkRevokeAppPasswordsResponse,
    GetAppPasswordRequest, IssueAppPasswordRequest, IssueAppPasswordResponse,
    ListAppPasswordsRequest, ListAppPasswordsResponse, ReportPrimaryCredentialChangeRequest,
    ReportPrimaryCredentialChangeResponse, ResumeAppPasswordRequest,
    RevokeAccountAppPasswordsRequest, RevokeAccountAppPasswordsResponse, RevokeAppPasswordRequest,
    SuspendAppPasswordRequest, UpdateAppPasswordRequest,
};
use super::{caller, deadline, names, paging, validate};

/// The longest one BulkRevokeAppPasswords call works before it returns
/// with `complete: false` (half the caller's deadline, if shorter).
const BULK_BUDGET: Duration = Duration::from_secs(20);

/// The most paths an update mask may name (there are five fields to
/// update; the bound keeps the error about a bad mask small).
const MAX_MASK_PATHS: usize = 32;

/// The fields UpdateAppPassword may change, by their API names.
const UPDATABLE: [&str; 5] = [
    "display_name",
    "protocols",
    "allowed_networks",
    "expire_time",
    "idle_timeout",
];

/// The fields of AppPassword an update may not name: identity, history and
/// state, which only their own methods change.
const NOT_UPDATABLE: [&str; 17] = [
    "name",
    "username",
    "secret_prefix",
    "create_time",
    "issued_by",
    "state",
    "last_use_time",
    "last_use_client_ip",
    "last_use_protocol",
    "last_use_client",
    "use_count",
    "revoke_time",
    "revoke_reason",
    "suspend_time",
    "suspend_reason",
    "idle_expire_time",
    "update_time",
];

/// The fields an update changes: those `mask` names, or without one the
/// updatable fields set in `password` (AIP-134).
fn fields_to_update(
    mask: Option<&prost_types::FieldMask>,
    password: &AppPassword,
) -> Result<Vec<&'static str>, String> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        let set = [
            !password.display_name.is_empty(),
            !password.protocols.is_empty(),
            !password.allowed_networks.is_empty(),
            password.expire_time.is_some(),
            password.idle_timeout.is_some(),
        ];
        let fields: Vec<_> = UPDATABLE
            .iter()
            .zip(set)
            .filter_map(|(field, set)| set.then_some(*field))
            .collect();
        if fields.is_empty() {
            return Err("names no field to update, and app_password sets none".to_owned());
        }
        return Ok(fields);
    }
    if paths.len() > MAX_MASK_PATHS {
        return Err(format!("must name at most {MAX_MASK_PATHS} paths"));
    }
    let mut fields = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if path == "*" {
            fields.extend(UPDATABLE);
        } else if let Some(field) = UPDATABLE.iter().find(|f| **f == path) {
            fields.push(*field);
        } else if NOT_UPDATABLE.contains(&path.as_str()) {
            problems.push(format!("`{path}` cannot be updated"));
        } else {
            // The path is the caller's text: echoed only if it is short
            // and printable.
            let shown = if path.len() <= 64 && path.chars().all(|c| c.is_ascii_graphic()) {
                path.as_str()
            } else {
                "a path"
            };
            problems.push(format!("`{shown}` is not a field of AppPassword"));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    fields.sort_unstable();
    fields.dedup();
    Ok(fields)
}

/// The new settings of the fields to update, each checked as on issue;
/// violations are recorded under `app_password.<field>`.
fn settings_update(fields: &[&str], password: &AppPassword, v: &mut Violations) -> SettingsUpdate {
    let mut update = SettingsUpdate::default();
    for field in fields {
        let path = format!("app_password.{field}");
        match *field {
            "display_name" => {
                update.display_name =
                    v.check(&path, validate::display_name(&password.display_name));
            }
            "protocols" => {
                update.protocols = v.check(&path, parse_protocol_set(&password.protocols));
            }
            "allowed_networks" => {
                update.allowed_networks = v.check(
                    &path,
                    validate::allowed_networks(&password.allowed_networks),
                );
            }
            "expire_time" => {
                update.expires_at = match &password.expire_time {
                    None => Patch::Clear,
                    Some(at) => v
                        .check(&path, parse_timestamp(at))
                        .map_or(Patch::Keep, Patch::Set),
                };
            }
            "idle_timeout" => {
                update.idle_timeout = match &password.idle_timeout {
                    None => Patch::Clear,
                    Some(timeout) => v
                        .check(
                            &path,
                            parse_positive_duration(timeout).and_then(check_idle_timeout),
                        )
                        .map_or(Patch::Keep, Patch::Set),
                };
            }
            _ => {}
        }
    }
    update
}

/// An app password's name and a free-text reason, both checked.
fn name_and_reason(name: &str, reason: &str) -> Result<(Username, Uuid, String), Status> {
    let mut v = Violations::default();
    let name = v.check("name", names::parse_app_password(name));
    let reason = v.check("reason", validate::reason(reason));
    v.finish()?;
    match (name, reason) {
        (Some((username, id)), Some(reason)) => Ok((username, id, reason)),
        _ => Err(unchecked()),
    }
}

/// The request's `name`, an app password's.
fn app_password_name(name: &str) -> Result<(Username, Uuid), Error> {
    names::parse_app_password(name).map_err(|why| Error::invalid("name", why))
}

/// A bulk filter, every condition checked; violations under `filter.*`.
fn bulk_filter(filter: Option<&pb::AppPasswordFilter>, v: &mut Violations) -> BulkFilter {
    let Some(filter) = filter else {
        v.add("filter", "is required");
        return BulkFilter::default();
    };
    let time = |at: &Option<prost_types::Timestamp>, field: &str, v: &mut Violations| {
        at.as_ref()
            .and_then(|at| v.check(field, parse_timestamp(at)))
    };
    let unused_since = time(&filter.unused_since, "filter.unused_since", v);
    let created_before = time(&filter.created_before, "filter.created_before", v);
    let protocol = if filter.protocol == pb::Protocol::Unspecified as i32 {
        None
    } else {
        v.check("filter.protocol", parse_login_protocol(filter.protocol))
    };
    let issued_by = if filter.issued_by.is_empty() {
        None
    } else {
        v.check(
            "filter.issued_by",
            crate::domain::callers::model::parse_name(&filter.issued_by),
        )
    };
    BulkFilter {
        unused_since,
        created_before,
        protocol,
        issued_by,
    }
}

pub struct AppPasswordHandler<S> {
    app_passwords: AppPasswords<S>,
}

impl<S> AppPasswordHandler<S> {
    pub fn new(app_passwords: AppPasswords<S>) -> Self {
        Self { app_passwords }
    }
}

impl<S: AppPasswordStore + AccountStore + AuditStore> AppPasswordHandler<S> {
    /// One app password as a response, in its state as of now.
    fn answer(
        &self,
        password: crate::domain::app_passwords::model::AppPassword,
    ) -> Response<AppPassword> {
        Response::new(app_password_to_pb(password, self.app_passwords.now()))
    }
}

/// Reached only if a check let a bad field through without recording it.
pub(super) fn unchecked() -> Status {
    Error::internal("a field failed validation without a recorded violation").into()
}

#[tonic::async_trait]
impl<S: AppPasswordStore + AccountStore + AuditStore> AppPasswordService for AppPasswordHandler<S> {
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
        let idle_timeout = match &request.idle_timeout {
            None => Some(None),
            Some(timeout) => v
                .check(
                    "idle_timeout",
                    parse_positive_duration(timeout).and_then(check_idle_timeout),
                )
                .map(Some),
        };
        v.finish()?;
        let Some(idle_timeout) = idle_timeout else {
            return Err(unchecked());
        };
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
                idle_timeout,
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
        let (username, id) = app_password_name(&request.get_ref().name)?;
        let password = self.app_passwords.get_app_password(&username, id).await?;
        Ok(self.answer(password))
    }

    async fn revoke_app_password(
        &self,
        request: Request<RevokeAppPasswordRequest>,
    ) -> Result<Response<AppPassword>, Status> {
        let actor = caller::name_of(&request);
        let request = request.into_inner();
        let (username, id, reason) = name_and_reason(&request.name, &request.reason)?;

        let password = self
            .app_passwords
            .revoke_app_password(&username, id, &reason, &actor)
            .await?;
        Ok(self.answer(password))
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

    async fn update_app_password(
        &self,
        request: Request<UpdateAppPasswordRequest>,
    ) -> Result<Response<AppPassword>, Status> {
        let actor = caller::name_of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let Some(password) = request.app_password else {
            return Err(Error::invalid("app_password", "is required").into());
        };
        let name = v.check(
            "app_password.name",
            names::parse_app_password(&password.name),
        );
        let fields = v.check(
            "update_mask",
            fields_to_update(request.update_mask.as_ref(), &password),
        );
        let update = fields.map(|fields| settings_update(&fields, &password, &mut v));
        v.finish()?;
        let (Some((username, id)), Some(update)) = (name, update) else {
            return Err(unchecked());
        };

        let updated = self
            .app_passwords
            .update(&username, id, update, &actor)
            .await?;
        Ok(self.answer(updated))
    }

    async fn suspend_app_password(
        &self,
        request: Request<SuspendAppPasswordRequest>,
    ) -> Result<Response<AppPassword>, Status> {
        let actor = caller::name_of(&request);
        let request = request.into_inner();
        let (username, id, reason) = name_and_reason(&request.name, &request.reason)?;

        let password = self
            .app_passwords
            .suspend(&username, id, &reason, &actor)
            .await?;
        Ok(self.answer(password))
    }

    async fn resume_app_password(
        &self,
        request: Request<ResumeAppPasswordRequest>,
    ) -> Result<Response<AppPassword>, Status> {
        let actor = caller::name_of(&request);
        let (username, id) = app_password_name(&request.get_ref().name)?;
        let password = self.app_passwords.resume(&username, id, &actor).await?;
        Ok(self.answer(password))
    }

    async fn report_primary_credential_change(
        &self,
        request: Request<ReportPrimaryCredentialChangeRequest>,
    ) -> Result<Response<ReportPrimaryCredentialChangeResponse>, Status> {
        let actor = caller::name_of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let username = v.check("parent", names::parse_account(&request.parent));
        let change = v.check("change", parse_change(request.change));
        let changed_at = match &request.change_time {
            None => Some(None),
            Some(at) => v.check("change_time", parse_timestamp(at)).map(Some),
        };
        v.finish()?;
        let (Some(username), Some(change), Some(changed_at)) = (username, change, changed_at)
        else {
            return Err(unchecked());
        };

        let outcome = self
            .app_passwords
            .primary_credential_changed(&username, change, changed_at, &actor)
            .await?;
        Ok(Response::new(ReportPrimaryCredentialChangeResponse {
            policy: policy_to_pb(outcome.policy) as i32,
            revoked_count: i64::try_from(outcome.revoked).unwrap_or(i64::MAX),
        }))
    }

    async fn bulk_revoke_app_passwords(
        &self,
        request: Request<BulkRevokeAppPasswordsRequest>,
    ) -> Result<Response<BulkRevokeAppPasswordsResponse>, Status> {
        let actor = caller::name_of(&request);
        let budget = deadline::of(&request).map_or(BULK_BUDGET, |d| (d / 2).min(BULK_BUDGET));
        let request = request.into_inner();
        let mut v = Violations::default();
        let filter = bulk_filter(request.filter.as_ref(), &mut v);
        let reason = v.check(
            "reason",
            validate::reason(&request.reason).and_then(|reason| {
                if reason.is_empty() {
                    Err("is required".to_owned())
                } else {
                    Ok(reason)
                }
            }),
        );
        v.finish()?;
        let Some(reason) = reason else {
            return Err(unchecked());
        };

        let outcome = self
            .app_passwords
            .bulk_revoke(&filter, &reason, request.validate_only, budget, &actor)
            .await?;
        let now = self.app_passwords.now();
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
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
