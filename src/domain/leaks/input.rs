//! The bounds of a leak report's parts, one place for both doors
//! (`grpc/requests/leaks.rs`, `adapters/leak_reports.rs`). Each gives why
//! a part is refused, to be named by the door's own field.

use crate::domain::secrets::scan::candidates;
use crate::domain::shared::limits::{
    check_text, REPORTED_SECRET_MAX_BYTES, REPORT_SECRETS_MAX, REPORT_SOURCE_MAX_CHARS,
};

/// 1 to [`REPORT_SECRETS_MAX`] secrets.
pub fn check_count(count: usize) -> Result<(), String> {
    if count == 0 || count > REPORT_SECRETS_MAX {
        return Err(format!("must hold 1 to {REPORT_SECRETS_MAX} secrets"));
    }
    Ok(())
}

/// One secret as sent: 1 to [`REPORTED_SECRET_MAX_BYTES`] bytes.
pub fn check_secret(raw: &str) -> Result<(), String> {
    if raw.is_empty() || raw.len() > REPORTED_SECRET_MAX_BYTES {
        return Err(format!(
            "each must be 1 to {REPORTED_SECRET_MAX_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Where secrets were found: bounded text holding no app password itself
/// (it is written to the audit trail and the change feed).
pub fn check_source(raw: &str) -> Result<(), String> {
    check_text(raw, REPORT_SOURCE_MAX_CHARS)?;
    if !candidates(raw.as_bytes(), 0, raw.len()).is_empty() {
        return Err(
            "must not hold an app password (it is written to the audit trail): give it as a secret"
                .to_owned(),
        );
    }
    Ok(())
}
