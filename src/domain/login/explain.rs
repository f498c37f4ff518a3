//! "Why can't my phone sign in?": what Authenticate would decide now for
//! one account, without a password and without changing anything, for a
//! helpdesk. It reads what a login reads (the account, its passwords, the
//! three throttle scopes) and applies the same rules (`Rules::refusal`,
//! `decision::known_source`), so the answer cannot drift from the login
//! path; and it never holds a secret or tells which guess was tried.

use std::net::IpAddr;

use super::decision::known_source;
use super::model::FailureReason;
use super::store::LoginStore;
use super::throttle::{Counter, ScopeKind, Scopes, ThrottleConfig};
use crate::domain::accounts::model::account_not_found;
use crate::domain::accounts::store::AccountStore;
use crate::domain::app_passwords::model::AppPassword;
use crate::domain::app_passwords::store::AppPasswordStore;
use crate::domain::audit::event::{AuditEvent, AuditFilter, EventType};
use crate::domain::audit::store::AuditStore;
use crate::domain::shared::error::Result;
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// The newest app passwords shown.
pub const PASSWORDS_SHOWN: u32 = 100;
/// The newest failed logins shown.
pub const FAILURES_SHOWN: u32 = 20;

/// Who asks: operators see any account; an issuer only the accounts it
/// issued an app password to (its own users).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    Operator,
    Issuer(String),
}

#[derive(Debug, Clone)]
pub struct ExplainRequest {
    pub username: Username,
    pub client_ip: Option<IpAddr>,
    pub protocol: Option<Protocol>,
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub username: Username,
    pub account_exists: bool,
    /// The reason, when the account is disabled.
    pub disabled: Option<String>,
    /// Newest first, each with the first rule that refuses it.
    pub app_passwords: Vec<(AppPassword, Option<FailureReason>)>,
    /// With a client address only.
    pub source: Option<ScopeState>,
    pub pair: Option<ScopeState>,
    pub account: ScopeState,
    /// Newest first.
    pub recent_failures: Vec<AuditEvent>,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeState {
    pub failures: u32,
    pub limit: u32,
    pub blocked_until: Option<Timestamp>,
    pub known_source: bool,
}

/// An address used for the scopes when the request names none; only the
/// account scope, which does not depend on it, is shown then.
const NO_ADDRESS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

pub async fn explain<S>(
    store: &S,
    throttle: &ThrottleConfig,
    now: Timestamp,
    request: ExplainRequest,
    viewer: &Viewer,
) -> Result<Explanation>
where
    S: LoginStore + AppPasswordStore + AccountStore + AuditStore,
{
    let username = request.username;
    if let Viewer::Issuer(issuer) = viewer {
        // Only the helpdesk's data of its own users: throttle state and the
        // client addresses of failures. (Whether an account exists is no
        // secret from an issuer: ListAppPasswords tells it.)
        if !store.issued_any(&username, issuer).await? {
            return Err(account_not_found(&username));
        }
    }
    let account = store.get_account(&username, now).await?;
    // Those that are not revoked first (they decide a login), newest
    // first; then revoked ones, up to the total shown.
    let mut passwords = Vec::new();
    if account.is_some() {
        for show_revoked in [false, true] {
            let page = store
                .list_app_passwords(&username, show_revoked, None, PASSWORDS_SHOWN)
                .await?
                .map(|page| page.items)
                .unwrap_or_default();
            for password in page {
                let room = passwords.len() < PASSWORDS_SHOWN as usize;
                let seen = passwords.iter().any(|p: &AppPassword| p.id == password.id);
                if room && !seen {
                    passwords.push(password);
                }
            }
        }
    }

    let scopes = Scopes::of(&username, request.client_ip.unwrap_or(NO_ADDRESS));
    // The same read a login makes, with a selector that matches nothing:
    // the counters of the three scopes.
    let state = store.login_state(&scopes, &username, "").await?;
    let counters = &state.counters;
    let scope = |kind: ScopeKind| {
        let counter: Counter = counters.get(kind);
        let rule = throttle.rule(kind);
        ScopeState {
            failures: rule.current_failures(&counter, now),
            limit: rule.limit,
            blocked_until: counter.blocked_until.filter(|until| *until > now),
            known_source: kind == ScopeKind::Pair && known_source(&counter, now, throttle),
        }
    };
    let (source, pair) = match request.client_ip {
        Some(_) => (Some(scope(ScopeKind::Source)), Some(scope(ScopeKind::Pair))),
        None => (None, None),
    };
    let account_scope = scope(ScopeKind::Account);

    let disabled = account
        .as_ref()
        .and_then(|a| a.disabled.as_ref().map(|d| d.reason.clone()));
    let app_passwords: Vec<_> = passwords
        .into_iter()
        .map(|password| {
            let refused = if disabled.is_some() {
                Some(FailureReason::AccountDisabled)
            } else {
                password
                    .rules()
                    .refusal(now, request.protocol, request.client_ip)
                    .map(FailureReason::from)
            };
            (password, refused)
        })
        .collect();

    let filter = AuditFilter {
        username: Some(username.clone()),
        event_types: vec![EventType::AuthenticationFailed],
        ..AuditFilter::default()
    };
    let recent_failures = store
        .list_events(&filter, None, FAILURES_SHOWN)
        .await?
        .items;

    let summary = summary(
        account.is_some(),
        disabled.as_deref(),
        &app_passwords,
        [&source, &pair, &Some(account_scope.clone())],
        now,
    );
    Ok(Explanation {
        username,
        account_exists: account.is_some(),
        disabled,
        app_passwords,
        source,
        pair,
        account: account_scope,
        recent_failures,
        summary,
    })
}

/// The first thing that refuses a login now, in Authenticate's order
/// (throttling, then the account, then the passwords), in words.
fn summary(
    exists: bool,
    disabled: Option<&str>,
    passwords: &[(AppPassword, Option<FailureReason>)],
    scopes: [&Option<ScopeState>; 3],
    now: Timestamp,
) -> String {
    let [source, pair, account] = scopes;
    let exempt = pair.as_ref().is_some_and(|p| p.known_source);
    let blocked = |scope: &Option<ScopeState>| scope.as_ref().and_then(|s| s.blocked_until);
    for (name, until) in [
        ("the client's network", blocked(source)),
        ("the account from this network", blocked(pair)),
        ("the account", blocked(account).filter(|_| !exempt)),
    ] {
        if let Some(until) = until {
            return format!(
                "throttled: {name} is blocked for another {} s after too many failed logins",
                until.since(now).as_secs().max(1)
            );
        }
    }
    if !exists {
        return "no such account: every login fails as invalid credentials".to_owned();
    }
    if let Some(reason) = disabled {
        return format!("the account is disabled ({reason})");
    }
    let usable = passwords.iter().filter(|(_, r)| r.is_none()).count();
    match usable {
        0 if passwords.is_empty() => "the account has no app passwords".to_owned(),
        0 => "no app password is usable: see each one's refused_by".to_owned(),
        n => format!("usable: {n} app password(s) would sign in with the right secret"),
    }
}
