//! UpdateAppPassword's request: which fields an update changes (its mask,
//! AIP-134) and their new settings, each checked as on issue.

use tonic::Status;

use crate::domain::app_passwords::model::SettingsUpdate;
use crate::domain::shared::patch::Patch;

use crate::grpc::convert::{parse_protocol_set, parse_timestamp};
use crate::grpc::pb::{AppPassword, UpdateAppPasswordRequest};
use crate::grpc::validate;

use super::app_passwords::{app_password_name, idle_timeout, AppPasswordName};
use super::{all, check, optional, Checked};

#[derive(Debug)]
pub struct Update {
    pub name: AppPasswordName,
    pub update: SettingsUpdate,
}

pub fn parse_update_app_password(request: &UpdateAppPasswordRequest) -> Result<Update, Status> {
    let Some(password) = &request.app_password else {
        return Checked::invalid("app_password", "is required").finish();
    };
    let (name, update) = all((
        app_password_name("app_password.name", &password.name),
        check(
            "update_mask",
            fields_to_update(request.update_mask.as_ref(), password),
        )
        .and_then(|fields| settings_update(&fields, password)),
    ))
    .finish()?;
    Ok(Update { name, update })
}

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
fn settings_update(fields: &[&str], password: &AppPassword) -> Checked<SettingsUpdate> {
    let mut update = Checked::valid(SettingsUpdate::default());
    for field in fields {
        let path = format!("app_password.{field}");
        update = match *field {
            "display_name" => update.with(
                check(&path, validate::display_name(&password.display_name)),
                |update, name| update.display_name = Some(name),
            ),
            "protocols" => update.with(
                check(&path, parse_protocol_set(&password.protocols)),
                |update, protocols| update.protocols = Some(protocols),
            ),
            "allowed_networks" => update.with(
                check(
                    &path,
                    validate::allowed_networks(&password.allowed_networks),
                ),
                |update, networks| update.allowed_networks = Some(networks),
            ),
            "expire_time" => update.with(
                patch(&path, password.expire_time.as_ref().map(parse_timestamp)),
                |update, at| update.expires_at = at,
            ),
            "idle_timeout" => update.with(
                patch(&path, password.idle_timeout.as_ref().map(idle_timeout)),
                |update, timeout| update.idle_timeout = timeout,
            ),
            _ => update,
        };
    }
    update
}

/// A field an update may clear: cleared when left out, else set.
fn patch<T>(field: &str, result: Option<Result<T, String>>) -> Checked<Patch<T>> {
    optional(field, result).map(|value| value.map_or(Patch::Clear, Patch::Set))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::grpc::requests::testing::fields;

    #[test]
    fn an_update_names_its_name_mask_and_settings() {
        let missing = UpdateAppPasswordRequest::default();
        assert_eq!(
            fields(parse_update_app_password(&missing).unwrap_err()),
            ["app_password"]
        );
        let mask = |paths: &[&str]| prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        };
        let request = UpdateAppPasswordRequest {
            app_password: Some(AppPassword {
                name: "accounts/alice".into(),
                ..Default::default()
            }),
            update_mask: Some(mask(&["state"])),
        };
        assert_eq!(
            fields(parse_update_app_password(&request).unwrap_err()),
            ["app_password.name", "update_mask"]
        );
        let name = format!("accounts/alice/appPasswords/{}", Uuid::now_v7());
        let request = UpdateAppPasswordRequest {
            app_password: Some(AppPassword {
                name: name.clone(),
                display_name: " ".into(),
                expire_time: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                ..Default::default()
            }),
            update_mask: Some(mask(&["expire_time", "display_name"])),
        };
        assert_eq!(
            fields(parse_update_app_password(&request).unwrap_err()),
            ["app_password.display_name", "app_password.expire_time"]
        );
        let request = UpdateAppPasswordRequest {
            app_password: Some(AppPassword {
                name,
                ..Default::default()
            }),
            update_mask: Some(mask(&["expire_time", "idle_timeout"])),
        };
        let update = parse_update_app_password(&request).unwrap().update;
        assert_eq!(update.expires_at, Patch::Clear);
        assert_eq!(update.idle_timeout, Patch::Clear);
        assert_eq!(update.display_name, None);
    }
}
