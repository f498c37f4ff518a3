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
use crate::domain::app_passwords::model::{AppPassword, Holding};
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

/// Who asks: operators see any account; an issuer only what its own
/// passwords there entitle it to ([`Sight`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    Operator,
    Issuer(String),
}

/// How much of an account a viewer sees.
///
/// An issuer may issue a password to any account, so what it issued there
/// cannot be what entitles it to the account's helpdesk data on its own: a
/// password it issued and revoked at once is made at will and grants
/// nothing but a view of that password. A live one (active or suspended)
/// is a working credential of the account, which its user is told of
/// (the feed's issue event), which counts against the cap and the issue
/// bounds, and which the issuer could sign in with anyway: that is the
/// helpdesk's standing. Even then, of other issuers' passwords it sees
/// nothing, and of its network's scope only the block: its count is of
/// every account's failures from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sight<'a> {
    /// An operator: everything.
    Everything,
    /// An issuer with a live password there: its own passwords, the
    /// account's scopes and failures (naming none of the others'
    /// passwords), and of the network's scope only its block.
    Helpdesk(&'a str),
    /// An issuer whose passwords there are all over: those passwords and
    /// whether the account is disabled; no throttle state, no failures.
    OwnPasswords(&'a str),
}

impl<'a> Sight<'a> {
    /// NOT_FOUND for an issuer that issued none of the account's
    /// passwords, as if it did not exist.
    async fn of<S: AppPasswordStore>(
        store: &S,
        viewer: &'a Viewer,
        username: &Username,
        now: Timestamp,
    ) -> Result<Self> {
        let Viewer::Issuer(issuer) = viewer else {
            return Ok(Sight::Everything);
        };
        match store.holding_of(username, issuer, now).await? {
            Holding::Nothing => Err(account_not_found(username)),
            Holding::Ended => Ok(Sight::OwnPasswords(issuer)),
            Holding::Live => Ok(Sight::Helpdesk(issuer)),
        }
    }

    /// Whose passwords are shown: `None` for everyone's.
    fn issuer(self) -> Option<&'a str> {
        match self {
            Sight::Everything => None,
            Sight::Helpdesk(issuer) | Sight::OwnPasswords(issuer) => Some(issuer),
        }
    }

    /// Whether throttle state, failures and the disable reason are shown.
    fn sees_account_state(self) -> bool {
        !matches!(self, Sight::OwnPasswords(_))
    }
}

#[derive(Debug, Clone)]
pub struct ExplainRequest {
    pub username: Username,
    pub client_ip: Option<IpAddr>,
    pub protocol: Option<Protocol>,
    /// Whose front doors' network counter is shown as the source scope:
    /// the explaining caller's tenant, whose proxies count under it
    /// (`Scopes::of`), or (`None`) the deployment-wide proxies'.
    pub door: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub username: Username,
    pub account_exists: bool,
    /// The reason, when the account is disabled (empty for an issuer
    /// without a live password there).
    pub disabled: Option<String>,
    /// Newest first, each with the first rule that refuses it.
    pub app_passwords: Vec<(AppPassword, Option<FailureReason>)>,
    /// With a client address only, and not for an issuer without a live
    /// password there (nor are the others). For an issuer, `failures` of
    /// the source is 0: that count is of every account's failures.
    pub source: Option<ScopeState>,
    pub pair: Option<ScopeState>,
    pub account: Option<ScopeState>,
    /// Newest first. For an issuer, a failure names only its own
    /// passwords.
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
    let username = request.username.clone();
    let sight = Sight::of(store, viewer, &username, now).await?;
    let account = store.get_account(&username, now).await?;
    let passwords = if account.is_some() {
        shown_passwords(store, &username, &sight).await?
    } else {
        Vec::new()
    };

    let (source, pair, account_scope, recent_failures) = if sight.sees_account_state() {
        let (source, pair, account_scope) = scopes(store, throttle, now, &request, sight).await?;
        let failures = recent_failures(store, &username, sight, &passwords).await?;
        (source, pair, Some(account_scope), failures)
    } else {
        (None, None, None, Vec::new())
    };

    let disabled = account.as_ref().and_then(|a| a.disabled.as_ref()).map(|d| {
        if sight.sees_account_state() {
            d.reason.clone()
        } else {
            String::new()
        }
    });
    let app_passwords = with_refusals(passwords, disabled.is_some(), &request, now);
    let summary = summary(
        account.is_some(),
        disabled.as_deref(),
        &app_passwords,
        [&source, &pair, &account_scope],
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

/// The account's passwords shown: those that are not revoked first (they
/// decide a login), newest first; then revoked ones, up to the total shown.
async fn shown_passwords<S: AppPasswordStore>(
    store: &S,
    username: &Username,
    sight: &Sight<'_>,
) -> Result<Vec<AppPassword>> {
    let mut passwords: Vec<AppPassword> = Vec::new();
    for show_revoked in [false, true] {
        let page = store
            .list_app_passwords(
                username,
                show_revoked,
                sight.issuer(),
                None,
                PASSWORDS_SHOWN,
            )
            .await?
            .map(|page| page.items)
            .unwrap_or_default();
        for password in page {
            let room = passwords.len() < PASSWORDS_SHOWN as usize;
            let seen = passwords.iter().any(|p| p.id == password.id);
            if room && !seen {
                passwords.push(password);
            }
        }
    }
    Ok(passwords)
}

/// Each password with the first rule that refuses the request's login.
fn with_refusals(
    passwords: Vec<AppPassword>,
    account_disabled: bool,
    request: &ExplainRequest,
    now: Timestamp,
) -> Vec<(AppPassword, Option<FailureReason>)> {
    passwords
        .into_iter()
        .map(|password| {
            let refused = if account_disabled {
                Some(FailureReason::AccountDisabled)
            } else {
                password
                    .rules()
                    .refusal(now, request.protocol, request.client_ip)
                    .map(FailureReason::from)
            };
            (password, refused)
        })
        .collect()
}

/// The three throttle scopes as a login would read them (the source and
/// the pair only with an address): the same read a login makes, with a
/// selector that matches nothing.
async fn scopes<S: LoginStore>(
    store: &S,
    throttle: &ThrottleConfig,
    now: Timestamp,
    request: &ExplainRequest,
    sight: Sight<'_>,
) -> Result<(Option<ScopeState>, Option<ScopeState>, ScopeState)> {
    let (username, client_ip) = (&request.username, request.client_ip);
    let door = request.door.as_deref();
    let scopes = Scopes::of(username, client_ip.unwrap_or(NO_ADDRESS), door);
    let state = store.login_state(&scopes, username, "").await?;
    let counters = &state.counters;
    let scope = |kind: ScopeKind| {
        let counter: Counter = counters.get(kind);
        let rule = throttle.rule(kind);
        let failures = match (kind, sight) {
            // Every account's failures from the network: not an issuer's.
            (ScopeKind::Source, Sight::Helpdesk(_)) => 0,
            _ => rule.current_failures(&counter, now),
        };
        ScopeState {
            failures,
            limit: rule.limit,
            blocked_until: counter.blocked_until.filter(|until| *until > now),
            known_source: kind == ScopeKind::Pair && known_source(&counter, now, throttle),
        }
    };
    Ok(match client_ip {
        Some(_) => (
            Some(scope(ScopeKind::Source)),
            Some(scope(ScopeKind::Pair)),
            scope(ScopeKind::Account),
        ),
        None => (None, None, scope(ScopeKind::Account)),
    })
}

/// The account's latest failed logins; for an issuer, a failure with
/// another's password names no password.
async fn recent_failures<S: AuditStore>(
    store: &S,
    username: &Username,
    sight: Sight<'_>,
    shown: &[AppPassword],
) -> Result<Vec<AuditEvent>> {
    let filter = AuditFilter {
        username: Some(username.clone()),
        event_types: vec![EventType::AuthenticationFailed],
        ..AuditFilter::default()
    };
    let mut failures = store
        .list_events(&filter, None, FAILURES_SHOWN)
        .await?
        .items;
    if sight.issuer().is_some() {
        for failure in &mut failures {
            let own = |id| shown.iter().any(|p| p.id == id);
            failure.app_password_id = failure.app_password_id.filter(|id| own(*id));
        }
    }
    Ok(failures)
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
    match disabled {
        Some("") => return "the account is disabled".to_owned(),
        Some(reason) => return format!("the account is disabled ({reason})"),
        None => {}
    }
    let usable = passwords.iter().filter(|(_, r)| r.is_none()).count();
    match usable {
        0 if passwords.is_empty() => "the account has no app passwords".to_owned(),
        0 => "no app password is usable: see each one's refused_by".to_owned(),
        n => format!("usable: {n} app password(s) would sign in with the right secret"),
    }
}
