//! Every request's input, read before a handler acts on it: one
//! `parse_<request>` per RPC that has input, each giving a domain value (or
//! a small struct of parsed fields), or INVALID_ARGUMENT with a
//! `BadRequest` naming every bad field at once, in the order the fields are
//! checked.
//!
//! A field's check gives a [`Checked`]: its value, or the violations found
//! on the way to it. Checks are combined with [`all`], which keeps every
//! violation in order, and [`Checked::and_then`] or [`Checked::passed`],
//! for a check that needs another's value. The only way to a value is
//! [`Checked::finish`], which gives it only when nothing was found: no
//! handler can act on a field that failed its check, and there is no
//! "failed without a violation" case left to answer.

mod accounts;
mod app_passwords;
mod audit;
mod callers;
mod leaks;
mod logins;
mod tenants;
mod update;

use tonic::Status;

use crate::domain::shared::error::{Error, FieldViolation};

pub use accounts::{
    parse_delete_account, parse_disable_account, parse_enable_account, parse_get_account,
    parse_list_accounts,
};
pub use app_passwords::{
    parse_bulk_revoke_app_passwords, parse_get_app_password, parse_issue_app_password,
    parse_list_app_passwords, parse_report_primary_credential_change, parse_resume_app_password,
    parse_revoke_account_app_passwords, parse_revoke_app_password, parse_suspend_app_password,
    AppPasswordName, ReasonedChange,
};
pub use audit::{parse_list_audit_events, parse_watch_events, WatchEvents};
pub use callers::{
    parse_create_caller, parse_list_callers, parse_revoke_caller, parse_rotate_caller_key,
};
pub use leaks::{parse_lookup_app_password, parse_report_leaked_secrets, LeakReport};
pub use logins::{parse_authenticate, parse_explain_login};
pub use tenants::{
    parse_create_tenant, parse_list_tenants, parse_move_tenant_domain, parse_tenant_name,
    parse_update_tenant, NewTenant, TenantUpdate,
};
pub use update::{parse_update_app_password, Update};

/// An account (`name` or `parent`) and a free-text reason.
#[derive(Debug)]
pub struct AccountReason {
    pub username: crate::domain::shared::username::Username,
    pub reason: String,
}

/// An account named by `field` and a reason, both checked.
fn account_and_reason(field: &str, name: &str, reason: &str) -> Result<AccountReason, Status> {
    let (username, reason) = all((
        check(field, super::names::parse_account(name)),
        check("reason", super::validate::reason(reason)),
    ))
    .finish()?;
    Ok(AccountReason { username, reason })
}

/// A page of a listing: how many, and after which item (`None`: the
/// first page).
#[derive(Debug)]
pub struct PageRequest<C> {
    pub page_size: u32,
    pub after: Option<C>,
}

/// A page of a listing whose token names only the item it follows.
fn page<C>(page_size: i32, after: Result<Option<C>, String>) -> Result<PageRequest<C>, Status> {
    let (page_size, after) = all((
        check("page_size", super::paging::page_size(page_size)),
        check("page_token", after),
    ))
    .finish()?;
    Ok(PageRequest { page_size, after })
}

/// A value that passed its checks, or every violation found on the way to
/// it (never none).
#[must_use]
#[derive(Debug)]
pub struct Checked<T>(Result<T, Vec<FieldViolation>>);

/// The value of `field`, or why it is wrong.
pub fn check<T>(field: &str, result: Result<T, String>) -> Checked<T> {
    Checked(result.map_err(|why| vec![FieldViolation::new(field, why)]))
}

/// An optional field: `None` when the request left it out, else its value
/// checked.
pub fn optional<T>(field: &str, result: Option<Result<T, String>>) -> Checked<Option<T>> {
    match result {
        None => Checked::valid(None),
        Some(result) => check(field, result).map(Some),
    }
}

impl<T> Checked<T> {
    /// A value that needs no check.
    pub fn valid(value: T) -> Self {
        Self(Ok(value))
    }

    pub fn invalid(field: &str, description: &str) -> Self {
        Self(Err(vec![FieldViolation::new(field, description)]))
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Checked<U> {
        Checked(self.0.map(f))
    }

    /// A check that needs this one's value; skipped when this one failed.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Checked<U>) -> Checked<U> {
        match self.0 {
            Ok(value) => f(value),
            Err(violations) => Checked(Err(violations)),
        }
    }

    /// The value if this check passed, for a later check bound to it that
    /// reports in its own place among the others (a page token bound to
    /// its listing's account or filter): `optional(field,
    /// this.passed().map(..))` runs it only if this one passed. The
    /// request's value still comes only from [`Checked::finish`].
    pub fn passed(&self) -> Option<&T> {
        self.0.as_ref().ok()
    }

    /// This value and `other`'s, `set` into this one.
    pub fn with<U>(self, other: Checked<U>, set: impl FnOnce(&mut T, U)) -> Self {
        all((self, other)).map(|(mut value, part)| {
            set(&mut value, part);
            value
        })
    }

    /// The value, or INVALID_ARGUMENT with every violation found.
    pub fn finish(self) -> Result<T, Status> {
        self.0
            .map_err(|violations| Error::InvalidArgument(violations).into())
    }
}

/// Several checks as one: every value, or every violation in order.
pub fn all<C: AllChecked>(checks: C) -> Checked<C::Value> {
    checks.all()
}

/// A tuple of [`Checked`] values, for [`all`].
pub trait AllChecked {
    type Value;
    fn all(self) -> Checked<Self::Value>;
}

macro_rules! all_checked {
    ($($value:ident: $t:ident),+) => {
        impl<$($t),+> AllChecked for ($(Checked<$t>,)+) {
            type Value = ($($t,)+);

            fn all(self) -> Checked<Self::Value> {
                let ($($value,)+) = self;
                let mut violations = Vec::new();
                $(
                    let $value = match $value.0 {
                        Ok(value) => Some(value),
                        Err(found) => {
                            violations.extend(found);
                            None
                        }
                    };
                )+
                // Every `None` above came with its violations.
                match ($($value,)+) {
                    ($(Some($value),)+) => Checked(Ok(($($value,)+))),
                    _ => Checked(Err(violations)),
                }
            }
        }
    };
}

all_checked!(a: A, b: B);
all_checked!(a: A, b: B, c: C);
all_checked!(a: A, b: B, c: C, d: D);
all_checked!(a: A, b: B, c: C, d: D, e: E);
all_checked!(a: A, b: B, c: C, d: D, e: E, f: F);
all_checked!(a: A, b: B, c: C, d: D, e: E, f: F, g: G);

#[cfg(test)]
pub(crate) mod testing {
    use tonic::{Code, Status};
    use tonic_types::StatusExt;

    /// The `(field, description)` of every violation a status names, in
    /// order; panics if it is not INVALID_ARGUMENT.
    pub fn violations(status: Status) -> Vec<(String, String)> {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let bad = status
            .get_details_bad_request()
            .expect("INVALID_ARGUMENT carries a BadRequest");
        bad.field_violations
            .into_iter()
            .map(|v| (v.field, v.description))
            .collect()
    }

    /// Only the fields, in order.
    pub fn fields(status: Status) -> Vec<String> {
        violations(status).into_iter().map(|(f, _)| f).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{fields, violations};
    use super::*;

    fn number(raw: &str) -> Result<u32, String> {
        raw.parse().map_err(|_| "must be a number".to_owned())
    }

    #[test]
    fn every_violation_is_kept_in_order() {
        let status = all((
            check("a", number("x")),
            check("b", number("1")),
            check("c", number("y")),
        ))
        .finish()
        .unwrap_err();
        assert_eq!(
            violations(status),
            [
                ("a".to_owned(), "must be a number".to_owned()),
                ("c".to_owned(), "must be a number".to_owned()),
            ]
        );
        let (a, b) = all((check("a", number("1")), check("b", number("2"))))
            .finish()
            .unwrap();
        assert_eq!((a, b), (1, 2));
    }

    #[test]
    fn a_dependent_check_runs_only_after_its_dependency_passed() {
        let checked = |raw: &str, limit: &str| {
            let first = check("first", number(raw));
            let second = optional(
                "second",
                first.passed().map(|first| {
                    number(limit).and_then(|limit| {
                        if limit > *first {
                            Ok(limit)
                        } else {
                            Err("must be more than first".to_owned())
                        }
                    })
                }),
            );
            all((first, check("between", number("x")), second)).finish()
        };
        assert_eq!(
            fields(checked("5", "1").unwrap_err()),
            ["between", "second"]
        );
        assert_eq!(
            fields(checked("no", "1").unwrap_err()),
            ["first", "between"]
        );
    }

    #[test]
    fn optional_fields_pass_when_left_out() {
        assert_eq!(
            optional("a", None::<Result<u32, _>>).finish().unwrap(),
            None
        );
        assert_eq!(optional("a", Some(number("3"))).finish().unwrap(), Some(3));
        assert!(optional("a", Some(number("z"))).finish().is_err());
    }
}
