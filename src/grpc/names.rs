//! Resource names: `accounts/{username}` and
//! `accounts/{username}/appPasswords/{id}`. Usernames cannot contain `/`,
//! so a name splits one way only.

use uuid::Uuid;

use crate::domain::shared::limits::RESOURCE_NAME_MAX_BYTES;
use crate::domain::shared::username::Username;

const ACCOUNTS: &str = "accounts/";
const APP_PASSWORDS: &str = "/appPasswords/";
const CALLERS: &str = "callers/";
const TENANTS: &str = "tenants/";

pub fn account(username: &Username) -> String {
    format!("{ACCOUNTS}{username}")
}

pub fn app_password(username: &Username, id: Uuid) -> String {
    format!("{ACCOUNTS}{username}{APP_PASSWORDS}{id}")
}

pub fn caller(name: &str) -> String {
    format!("{CALLERS}{name}")
}

/// Reads `callers/{name}`.
pub fn parse_caller(name: &str) -> Result<String, String> {
    parse_named(name, CALLERS)
}

pub fn tenant(name: &str) -> String {
    format!("{TENANTS}{name}")
}

/// Reads `tenants/{name}`.
pub fn parse_tenant(name: &str) -> Result<String, String> {
    parse_named(name, TENANTS)
}

/// Reads `{collection}{name}` where the name is a caller's or a tenant's
/// (the same rule: `domain::callers::model::parse_name`).
fn parse_named(name: &str, collection: &str) -> Result<String, String> {
    if name.len() > RESOURCE_NAME_MAX_BYTES {
        return Err(format!("must be at most {RESOURCE_NAME_MAX_BYTES} bytes"));
    }
    let rest = name
        .strip_prefix(collection)
        .ok_or_else(|| format!("must be of the form {collection}{{name}}"))?;
    crate::domain::callers::model::parse_name(rest)
}

/// Reads `accounts/{username}`, normalizing the username.
pub fn parse_account(name: &str) -> Result<Username, String> {
    let rest = strip_accounts(name)?;
    if rest.contains('/') {
        return Err("must be of the form accounts/{username}".to_owned());
    }
    Username::parse(rest).map_err(|why| format!("username {why}"))
}

/// Reads `accounts/{username}/appPasswords/{id}`.
pub fn parse_app_password(name: &str) -> Result<(Username, Uuid), String> {
    const SHAPE: &str = "must be of the form accounts/{username}/appPasswords/{id}";
    let rest = strip_accounts(name)?;
    let (username, id) = rest.split_once(APP_PASSWORDS).ok_or(SHAPE)?;
    if username.contains('/') || id.contains('/') {
        return Err(SHAPE.to_owned());
    }
    let username = Username::parse(username).map_err(|why| format!("username {why}"))?;
    let id = Uuid::try_parse(id).map_err(|_| format!("{SHAPE}, with a UUID id"))?;
    Ok((username, id))
}

fn strip_accounts(name: &str) -> Result<&str, String> {
    if name.is_empty() {
        return Err("is required".to_owned());
    }
    if name.len() > RESOURCE_NAME_MAX_BYTES {
        return Err(format!("must be at most {RESOURCE_NAME_MAX_BYTES} bytes"));
    }
    name.strip_prefix(ACCOUNTS)
        .ok_or_else(|| "must start with accounts/".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_normalize() {
        let username = Username::parse("Alice@Example.com").unwrap();
        let id = Uuid::now_v7();
        assert_eq!(
            parse_account("accounts/ALICE@example.com").unwrap(),
            username
        );
        let name = app_password(&username, id);
        assert_eq!(parse_app_password(&name).unwrap(), (username, id));
    }

    #[test]
    fn malformed_names_are_refused() {
        for name in ["", "alice", "accounts/", "accounts/a/b", "users/alice"] {
            assert!(parse_account(name).is_err(), "{name}");
        }
        for name in [
            "accounts/alice",
            "accounts/alice/appPasswords/",
            "accounts/alice/appPasswords/not-a-uuid",
            "accounts/alice/keys/0190b3a0-0000-7000-8000-000000000000",
        ] {
            assert!(parse_app_password(name).is_err(), "{name}");
        }
    }
}
