//! Page sizes and page tokens.
//!
//! A token is opaque to callers (URL-safe base64) and records the query it
//! belongs to, so a token from one listing cannot be replayed against
//! another: that is INVALID_ARGUMENT, as AIP-158 asks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use uuid::Uuid;

use crate::domain::app_passwords::model::AppPasswordCursor;
use crate::domain::audit::AuditCursor;
use crate::domain::shared::limits::{PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, PAGE_TOKEN_MAX_BYTES};
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

const VERSION: &str = "v1";
const INVALID: &str = "is not a page token from a previous call with the same parameters";

pub fn page_size(requested: i32) -> Result<u32, String> {
    match u32::try_from(requested) {
        Ok(0) => Ok(PAGE_SIZE_DEFAULT),
        Ok(size) if size <= PAGE_SIZE_MAX => Ok(size),
        _ => Err(format!("must be between 0 and {PAGE_SIZE_MAX}")),
    }
}

/// The token for the page after `page`: empty when it is the last, else
/// `token` of its last item.
pub fn next_token<T>(page: &Page<T>, token: impl FnOnce(&T) -> String) -> String {
    match page.items.last() {
        Some(last) if page.more => token(last),
        _ => String::new(),
    }
}

/// Token for the page after `cursor` in `username`'s app passwords.
pub fn app_password_token(
    username: &Username,
    show_revoked: bool,
    cursor: AppPasswordCursor,
) -> String {
    encode(&[
        "ap",
        username.as_str(),
        if show_revoked { "1" } else { "0" },
        &cursor.created_at.as_millis().to_string(),
        &cursor.id.to_string(),
    ])
}

pub fn parse_app_password_token(
    token: &str,
    username: &Username,
    show_revoked: bool,
) -> Result<Option<AppPasswordCursor>, String> {
    if token.is_empty() {
        return Ok(None);
    }
    let parts = decode(token)?;
    let [kind, user, revoked, created_at, id] = parts.as_slice() else {
        return Err(INVALID.to_owned());
    };
    let expected_revoked = if show_revoked { "1" } else { "0" };
    if kind != "ap" || user != username.as_str() || revoked != expected_revoked {
        return Err(INVALID.to_owned());
    }
    let created_at = created_at.parse::<i64>().map_err(|_| INVALID.to_owned())?;
    let id = Uuid::try_parse(id).map_err(|_| INVALID.to_owned())?;
    Ok(Some(AppPasswordCursor {
        created_at: Timestamp::from_millis(created_at),
        id,
    }))
}

/// Token for the page of accounts after `last`.
pub fn account_token(last: &Username) -> String {
    encode(&["acct", last.as_str()])
}

pub fn parse_account_token(token: &str) -> Result<Option<Username>, String> {
    if token.is_empty() {
        return Ok(None);
    }
    let parts = decode(token)?;
    let [kind, last] = parts.as_slice() else {
        return Err(INVALID.to_owned());
    };
    if kind != "acct" {
        return Err(INVALID.to_owned());
    }
    Username::parse(last)
        .map(Some)
        .map_err(|_| INVALID.to_owned())
}

/// Token for the page of callers after `last`.
pub fn caller_token(last: &str) -> String {
    encode(&["caller", last])
}

pub fn parse_caller_token(token: &str) -> Result<Option<String>, String> {
    parse_name_token("caller", token)
}

/// Token for the page of tenants after `last`.
pub fn tenant_token(last: &str) -> String {
    encode(&["tenant", last])
}

pub fn parse_tenant_token(token: &str) -> Result<Option<String>, String> {
    parse_name_token("tenant", token)
}

/// A token of a listing by name, of `kind`, naming the last name listed.
fn parse_name_token(kind: &str, token: &str) -> Result<Option<String>, String> {
    if token.is_empty() {
        return Ok(None);
    }
    match decode(token)?.as_slice() {
        [read, last] if read == kind => Ok(Some(last.clone())),
        _ => Err(INVALID.to_owned()),
    }
}

/// Token for the page of audit events after `cursor`, bound to the filter
/// (rendered by the caller into `filter_key`).
pub fn audit_token(filter_key: &str, cursor: AuditCursor) -> String {
    encode(&[
        "audit",
        filter_key,
        &cursor.at.as_millis().to_string(),
        &cursor.id.to_string(),
    ])
}

pub fn parse_audit_token(token: &str, filter_key: &str) -> Result<Option<AuditCursor>, String> {
    if token.is_empty() {
        return Ok(None);
    }
    let parts = decode(token)?;
    let [kind, key, at, id] = parts.as_slice() else {
        return Err(INVALID.to_owned());
    };
    if kind != "audit" || key != filter_key {
        return Err(INVALID.to_owned());
    }
    let at = at.parse::<i64>().map_err(|_| INVALID.to_owned())?;
    let id = id.parse::<i64>().map_err(|_| INVALID.to_owned())?;
    Ok(Some(AuditCursor {
        at: Timestamp::from_millis(at),
        id,
    }))
}

/// Fields are joined with NUL, which no field can contain (usernames refuse
/// control characters).
fn encode(parts: &[&str]) -> String {
    let mut joined = String::from(VERSION);
    for part in parts {
        joined.push('\0');
        joined.push_str(part);
    }
    URL_SAFE_NO_PAD.encode(joined)
}

fn decode(token: &str) -> Result<Vec<String>, String> {
    if token.len() > PAGE_TOKEN_MAX_BYTES {
        return Err(format!("must be at most {PAGE_TOKEN_MAX_BYTES} bytes"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| INVALID.to_owned())?;
    let text = String::from_utf8(bytes).map_err(|_| INVALID.to_owned())?;
    let mut parts = text.split('\0').map(str::to_owned);
    if parts.next().as_deref() != Some(VERSION) {
        return Err(INVALID.to_owned());
    }
    Ok(parts.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_only_fit_the_listing_they_came_from() {
        let alice = Username::parse("alice").unwrap();
        let bob = Username::parse("bob").unwrap();
        let cursor = AppPasswordCursor {
            created_at: Timestamp::from_millis(42),
            id: Uuid::now_v7(),
        };
        let token = app_password_token(&alice, false, cursor);
        assert_eq!(
            parse_app_password_token(&token, &alice, false),
            Ok(Some(cursor))
        );
        assert!(parse_app_password_token(&token, &bob, false).is_err());
        assert!(parse_app_password_token(&token, &alice, true).is_err());
        assert!(parse_account_token(&token).is_err());
        assert!(parse_app_password_token("garbage!", &alice, false).is_err());
        assert_eq!(parse_account_token(&account_token(&bob)), Ok(Some(bob)));
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size(0), Ok(PAGE_SIZE_DEFAULT));
        assert_eq!(page_size(1000), Ok(1000));
        assert!(page_size(1001).is_err());
        assert!(page_size(-1).is_err());
    }
}
