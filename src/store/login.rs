//! The one read a login makes.
//!
//! A login needs its three throttle counters and its one candidate
//! credential. Read with separate statements, each would be a round trip
//! (on SQLite, a hand-off to the connection's thread and back), and those
//! hand-offs were most of what a warm login cost. So it is one statement:
//! a one-row table left-joined to the account by its unique username, to
//! the password with this selector through the unique (account, selector)
//! index, and to each scope's counter by its primary key. Every join is an
//! index seek, whatever the number of rows stored, and the statement always
//! returns exactly one row: no account leaves its columns NULL, and so does
//! a missing password or counter.

use std::sync::OnceLock;

use super::db::Db;
use sea_orm::sea_query::{
    Alias, DynIden, Expr, IntoIden, Query, SelectStatement, UnionType, Value, Values,
};
use sea_orm::{Condition, ConnectionTrait, DbBackend, DbErr, JoinType, QueryResult, Statement};
use uuid::Uuid;

use super::batch::BatchFuture;
use super::entities::app_password::SecretHash;
use super::entities::{account, app_password, auth_throttle};
use super::{duration_of_millis, SqlStore};
use crate::domain::app_passwords::model::Rules;
use crate::domain::login::model::{Credential, LoginState, Warm};
use crate::domain::login::store::LoginStore;
use crate::domain::login::throttle::{Counter, ScopeCounters, ScopeKey, ScopeKind, Scopes};
use crate::domain::shared::error::{Error, Result};
use crate::domain::shared::network::{AllowedNetworks, SeenNetworks};
use crate::domain::shared::protocol::ProtocolSet;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// The alias of each scope's counter table in the statement.
fn scope_table(kind: ScopeKind) -> &'static str {
    match kind {
        ScopeKind::Source => "source",
        ScopeKind::Pair => "pair",
        ScopeKind::Account => "account",
    }
}

const KINDS: [ScopeKind; 3] = [ScopeKind::Source, ScopeKind::Pair, ScopeKind::Account];
const ACCOUNT: &str = "a";
const PASSWORD: &str = "p";

/// The statement's columns, in the order `statement` selects them: a row
/// is read by position (no column looked up, or its name built, by name;
/// those were a warm login's small allocations). A unit test checks this
/// order against the built statement.
const COLUMNS: [&str; 30] = [
    TAG,
    "a_username",
    "a_disabled_at",
    "p_id",
    "p_secret_hash",
    "p_revoked_at",
    "p_expires_at",
    "p_protocols",
    "p_allowed_networks",
    "p_use_count",
    "p_seen_networks",
    "p_created_at",
    "p_last_used_at",
    "p_idle_timeout_ms",
    "p_idle_expired_at",
    "p_suspended_at",
    "p_warm_verifier",
    "p_warm_until",
    "source_failures",
    "source_last_failure_at",
    "source_blocked_until",
    "source_last_success_at",
    "pair_failures",
    "pair_last_failure_at",
    "pair_blocked_until",
    "pair_last_success_at",
    "account_failures",
    "account_last_failure_at",
    "account_blocked_until",
    "account_last_success_at",
];

/// Where `name` is in [`COLUMNS`]. Every call is in a `const` block, so a
/// name not there fails the build, never a login.
#[allow(clippy::panic)]
const fn at(name: &str) -> usize {
    let mut i = 0;
    while i < COLUMNS.len() {
        let (a, b) = (COLUMNS[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("no such column in the login statement")
}

/// One login's part of the statement, for the values in the order
/// [`LoginKey::values`] binds them. `tag` comes back as the `login` column,
/// to tell the logins of a batch apart.
fn statement(tag: &str, key: &LoginKey) -> SelectStatement {
    use account::Column as A;
    use app_password::Column as P;
    use auth_throttle::Column as T;
    let (a, p) = (Alias::new(ACCOUNT), Alias::new(PASSWORD));
    let one_row = Query::select()
        .expr_as(Expr::cust("1"), Alias::new("one"))
        .to_owned();
    let mut query = Query::select();
    query
        .expr_as(Expr::val(tag), Alias::new(TAG))
        .from_subquery(one_row, Alias::new("one_row"))
        .join_as(
            JoinType::LeftJoin,
            account::Entity,
            a.clone(),
            Expr::col((a.clone(), A::Username)).eq(key.username.as_str()),
        )
        .join_as(
            JoinType::LeftJoin,
            app_password::Entity,
            p.clone(),
            Condition::all()
                .add(Expr::col((p.clone(), P::AccountId)).equals((a.clone(), A::Id)))
                .add(Expr::col((p.clone(), P::Selector)).eq(key.selector.as_str())),
        );
    // The selected columns, in the order of `COLUMNS` (after the tag),
    // which names each: the one list a row is read by.
    let mut selected: Vec<(Alias, DynIden)> = Vec::with_capacity(COLUMNS.len());
    selected.extend([A::Username, A::DisabledAt].map(|column| (a.clone(), column.into_iden())));
    selected.extend(
        [
            P::Id,
            P::SecretHash,
            P::RevokedAt,
            P::ExpiresAt,
            P::Protocols,
            P::AllowedNetworks,
            P::UseCount,
            P::SeenNetworks,
            P::CreatedAt,
            P::LastUsedAt,
            P::IdleTimeoutMs,
            P::IdleExpiredAt,
            P::SuspendedAt,
            P::WarmVerifier,
            P::WarmUntil,
        ]
        .map(|column| (p.clone(), column.into_iden())),
    );
    for (kind, scope_key) in KINDS.into_iter().zip(&key.scope_keys) {
        let table = Alias::new(scope_table(kind));
        query.join_as(
            JoinType::LeftJoin,
            auth_throttle::Entity,
            table.clone(),
            Expr::col((table.clone(), T::ScopeKey)).eq(scope_key.as_str()),
        );
        selected.extend(
            [
                T::Failures,
                T::LastFailureAt,
                T::BlockedUntil,
                T::LastSuccessAt,
            ]
            .map(|column| (table.clone(), column.into_iden())),
        );
    }
    for ((table, column), alias) in selected.into_iter().zip(&COLUMNS[1..]) {
        query.expr_as(Expr::col((table, column)), Alias::new(*alias));
    }
    query
}

/// What one login reads by: its username, its selector and the keys of its
/// three throttle scopes.
#[derive(Clone, Default)]
pub(super) struct LoginKey {
    username: String,
    selector: String,
    scope_keys: [ScopeKey; 3],
}

/// The selector is the first letters of whatever was typed as the
/// password, so `Debug` leaves it out.
impl std::fmt::Debug for LoginKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginKey")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl LoginKey {
    pub(super) fn new(scopes: &Scopes, username: &Username, selector: &str) -> Self {
        Self {
            username: username.as_str().to_owned(),
            selector: selector.to_owned(),
            scope_keys: KINDS.map(|kind| scopes.get(kind).key),
        }
    }

    /// This login's values, tagged `tag`, in the order its part of the
    /// statement binds them.
    fn values(&self, tag: usize, values: &mut Vec<Value>) {
        values.push(Value::from(tag.to_string()));
        values.push(Value::from(self.username.as_str()));
        values.push(Value::from(self.selector.as_str()));
        values.extend(self.scope_keys.iter().map(|key| Value::from(key.as_str())));
    }
}

/// The most logins one statement reads.
pub(super) const MAX_BATCH: usize = 16;
const TAG: &str = "login";

/// The text of the statement reading `n` logins (their parts joined by
/// UNION ALL) on `backend`, built once per size: only the values change
/// from one batch to the next, and sqlx's per-connection cache of prepared
/// statements is keyed by this text.
fn sql(backend: DbBackend, n: usize) -> &'static str {
    static TEXTS: [[OnceLock<String>; MAX_BATCH]; 3] =
        [const { [const { OnceLock::new() }; MAX_BATCH] }; 3];
    let slot = match backend {
        DbBackend::Sqlite => 0,
        DbBackend::Postgres => 1,
        DbBackend::MySql => 2,
    };
    let n = n.clamp(1, MAX_BATCH);
    TEXTS[slot][n - 1].get_or_init(|| {
        let keys = vec![LoginKey::default(); n];
        backend.build(&batch_statement(&keys)).sql
    })
}

fn batch_statement(keys: &[LoginKey]) -> SelectStatement {
    let mut parts = keys
        .iter()
        .enumerate()
        .map(|(tag, key)| statement(&tag.to_string(), key));
    let mut query = parts.next().unwrap_or_default();
    for part in parts {
        query.union(UnionType::All, part);
    }
    query
}

fn batch_values(keys: &[LoginKey]) -> Values {
    let mut values = Vec::with_capacity(keys.len() * 6);
    for (tag, key) in keys.iter().enumerate() {
        key.values(tag, &mut values);
    }
    Values(values)
}

/// Reads up to [`MAX_BATCH`] logins with one statement, for the batcher.
pub(super) fn read_batch(db: Db, keys: Vec<LoginKey>) -> BatchFuture<LoginState> {
    Box::pin(async move { read_logins(&db, &keys).await })
}

/// Reads up to [`MAX_BATCH`] logins with one statement; the states come
/// back in the order of `keys`.
async fn read_logins(db: &Db, keys: &[LoginKey]) -> Result<Vec<LoginState>> {
    let backend = db.get_database_backend();
    let statement =
        Statement::from_sql_and_values(backend, sql(backend, keys.len()), batch_values(keys));
    let rows = db.query_all(statement).await?;
    let mut states: Vec<Option<LoginState>> = keys.iter().map(|_| None).collect();
    for row in &rows {
        let tag: String = row.try_get_by_index(const { at(TAG) })?;
        let slot = tag
            .parse::<usize>()
            .ok()
            .and_then(|tag| states.get_mut(tag))
            .ok_or_else(|| Error::internal("the login query returned an unknown tag"))?;
        *slot = Some(login_state(row)?);
    }
    states
        .into_iter()
        .map(|state| state.ok_or_else(|| Error::internal("the login query missed a login")))
        .collect()
}

/// A scope's counter columns: failures, last failure, block, last success.
const fn counter_columns(kind: ScopeKind) -> [usize; 4] {
    match kind {
        ScopeKind::Source => [
            at("source_failures"),
            at("source_last_failure_at"),
            at("source_blocked_until"),
            at("source_last_success_at"),
        ],
        ScopeKind::Pair => [
            at("pair_failures"),
            at("pair_last_failure_at"),
            at("pair_blocked_until"),
            at("pair_last_success_at"),
        ],
        ScopeKind::Account => [
            at("account_failures"),
            at("account_last_failure_at"),
            at("account_blocked_until"),
            at("account_last_success_at"),
        ],
    }
}

fn counter(row: &QueryResult, kind: ScopeKind) -> std::result::Result<Counter, DbErr> {
    const SOURCE: [usize; 4] = counter_columns(ScopeKind::Source);
    const PAIR: [usize; 4] = counter_columns(ScopeKind::Pair);
    const ACCOUNT_SCOPE: [usize; 4] = counter_columns(ScopeKind::Account);
    let [failures, last_failure_at, blocked_until, last_success_at] = match kind {
        ScopeKind::Source => SOURCE,
        ScopeKind::Pair => PAIR,
        ScopeKind::Account => ACCOUNT_SCOPE,
    };
    let time = |column: usize| {
        row.try_get_by_index::<Option<i64>>(column)
            .map(|millis| millis.map(Timestamp::from_millis))
    };
    let failures: Option<i64> = row.try_get_by_index(failures)?;
    Ok(Counter {
        failures: failures.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        last_failure_at: time(last_failure_at)?,
        blocked_until: time(blocked_until)?,
        last_success_at: time(last_success_at)?,
    })
}

fn credential(
    row: &QueryResult,
    username: String,
    disabled_at: Option<i64>,
) -> std::result::Result<Option<Credential>, DbErr> {
    let Some(id) = row.try_get_by_index::<Option<Uuid>>(const { at("p_id") })? else {
        return Ok(None);
    };
    let optional = |column: usize| row.try_get_by_index::<Option<i64>>(column);
    // The columns below are NOT NULL: with the password's id, they are set.
    let missing = |column: usize| DbErr::Custom(format!("{} is NULL", COLUMNS[column]));
    let required = |column: usize| optional(column)?.ok_or_else(|| missing(column));
    let text = |column: usize| {
        row.try_get_by_index::<Option<String>>(column)?
            .ok_or_else(|| missing(column))
    };
    let secret_hash = row
        .try_get_by_index::<Option<SecretHash>>(const { at("p_secret_hash") })?
        .ok_or_else(|| missing(const { at("p_secret_hash") }))?;
    let created_at = required(const { at("p_created_at") })?;
    let last_active_at =
        optional(const { at("p_last_used_at") })?.map_or(created_at, |at| at.max(created_at));
    Ok(Some(Credential {
        app_password_id: id,
        username: Username::from_stored(username),
        secret_hash: secret_hash.0,
        account_disabled: disabled_at.is_some(),
        rules: Rules {
            revoked: optional(const { at("p_revoked_at") })?.is_some(),
            expires_at: optional(const { at("p_expires_at") })?.map(Timestamp::from_millis),
            idle_timeout: optional(const { at("p_idle_timeout_ms") })?.map(duration_of_millis),
            last_active_at: Timestamp::from_millis(last_active_at),
            idle_expired: optional(const { at("p_idle_expired_at") })?.is_some(),
            suspended: optional(const { at("p_suspended_at") })?.is_some(),
            protocols: ProtocolSet::from_bits(required(const { at("p_protocols") })?),
            allowed_networks: AllowedNetworks::from_stored(&text(
                const { at("p_allowed_networks") },
            )?),
        },
        use_count: required(const { at("p_use_count") })?,
        seen_networks: SeenNetworks::from_stored(&text(const { at("p_seen_networks") })?),
        warm: match (
            row.try_get_by_index::<Option<String>>(const { at("p_warm_verifier") })?,
            optional(const { at("p_warm_until") })?,
        ) {
            (Some(verifier), Some(until)) => Some(Warm {
                verifier,
                until: Timestamp::from_millis(until),
            }),
            _ => None,
        },
    }))
}

fn login_state(row: &QueryResult) -> std::result::Result<LoginState, DbErr> {
    let counters = ScopeCounters {
        source: counter(row, ScopeKind::Source)?,
        pair: counter(row, ScopeKind::Pair)?,
        account: counter(row, ScopeKind::Account)?,
    };
    let Some(username) = row.try_get_by_index::<Option<String>>(const { at("a_username") })? else {
        return Ok(LoginState {
            counters,
            account_exists: false,
            credential: None,
        });
    };
    let disabled_at: Option<i64> = row.try_get_by_index(const { at("a_disabled_at") })?;
    Ok(LoginState {
        counters,
        account_exists: true,
        credential: credential(row, username, disabled_at)?,
    })
}

impl LoginStore for SqlStore {
    #[tracing::instrument(skip_all)]
    async fn login_state(
        &self,
        scopes: &Scopes,
        username: &Username,
        selector: &str,
    ) -> Result<LoginState> {
        self.login_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.logins
            .submit(LoginKey::new(scopes, username, selector))
            .await
    }

    fn login_reads(&self) -> u64 {
        self.login_reads.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text is built once per size with empty values; each login's
    /// values must go to the places sea-query would have put them.
    #[test]
    fn debug_leaves_out_the_selector() {
        let username = Username::from_stored("alice@example.com".to_owned());
        let scopes = Scopes::of(&username, std::net::IpAddr::from([192, 0, 2, 1]), None);
        let printed = format!("{:?}", LoginKey::new(&scopes, &username, "qzxw"));
        assert!(printed.contains("alice@example.com"), "{printed}");
        assert!(!printed.contains("qzxw"), "{printed}");
    }

    /// Rows are read by position: the statement selects its columns in
    /// the order of `COLUMNS`, on every backend.
    #[test]
    fn columns_are_selected_in_the_order_read() {
        let keys = vec![LoginKey::default(); 1];
        for backend in [DbBackend::Sqlite, DbBackend::Postgres, DbBackend::MySql] {
            let sql = backend.build(&batch_statement(&keys)).sql;
            let quote = if backend == DbBackend::MySql {
                '`'
            } else {
                '"'
            };
            let aliases: Vec<&str> = sql
                .split(" AS ")
                .skip(1)
                .filter_map(|rest| rest.strip_prefix(quote)?.split(quote).next())
                .filter(|alias| *alias != "one" && *alias != "one_row")
                .filter(|alias| *alias != ACCOUNT && *alias != PASSWORD)
                .filter(|alias| !["source", "pair", "account"].contains(alias))
                .collect();
            assert_eq!(aliases, COLUMNS, "{backend:?}: {sql}");
        }
    }

    #[test]
    fn values_are_bound_in_the_statements_order() {
        let keys: Vec<LoginKey> = ["alice@example.com", "bob@example.com", "carol"]
            .iter()
            .enumerate()
            .map(|(n, name)| {
                let username = Username::from_stored((*name).to_owned());
                let scopes = Scopes::of(
                    &username,
                    std::net::IpAddr::from([192, 0, 2, n as u8]),
                    None,
                );
                LoginKey::new(&scopes, &username, &format!("sel{n}"))
            })
            .collect();
        for backend in [DbBackend::Sqlite, DbBackend::Postgres, DbBackend::MySql] {
            for n in 1..=keys.len() {
                let built = backend.build(&batch_statement(&keys[..n]));
                assert_eq!(built.sql, sql(backend, n), "{backend:?}");
                assert_eq!(built.values, Some(batch_values(&keys[..n])), "{backend:?}");
            }
        }
    }
}
