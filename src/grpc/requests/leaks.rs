//! LeakService's requests.

use tonic::Status;

use super::{all, check};
use crate::domain::secrets::scan::candidates;
use crate::domain::shared::limits::{
    check_text, REPORTED_SECRET_MAX_BYTES, REPORT_SECRETS_MAX, REPORT_SOURCE_MAX_CHARS,
};
use crate::grpc::pb::{LookupAppPasswordRequest, ReportLeakedSecretsRequest};

/// A report's secrets (as sent: read by the domain) and its source.
pub struct LeakReport<'a> {
    pub secrets: Vec<&'a str>,
    pub source: String,
}

pub fn parse_report_leaked_secrets(
    request: &ReportLeakedSecretsRequest,
) -> Result<LeakReport<'_>, Status> {
    let (secrets, source) = all((
        check("secrets", secrets(&request.secrets)),
        check("source", source(&request.source)),
    ))
    .finish()?;
    Ok(LeakReport { secrets, source })
}

pub fn parse_lookup_app_password(request: &LookupAppPasswordRequest) -> Result<&str, Status> {
    check("secret", secret(&request.secret)).finish()
}

fn secrets(raw: &[String]) -> Result<Vec<&str>, String> {
    if raw.is_empty() {
        return Err("must hold at least one secret".to_owned());
    }
    if raw.len() > REPORT_SECRETS_MAX {
        return Err(format!("must hold at most {REPORT_SECRETS_MAX} secrets"));
    }
    raw.iter().map(|s| secret(s)).collect()
}

fn secret(raw: &str) -> Result<&str, String> {
    if raw.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if raw.len() > REPORTED_SECRET_MAX_BYTES {
        return Err(format!(
            "each must be at most {REPORTED_SECRET_MAX_BYTES} bytes"
        ));
    }
    Ok(raw)
}

/// Where the secrets were found: trimmed, bounded, and holding no app
/// password itself (it is written to the audit trail).
fn source(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("must say where the secrets were found (a URL or a few words)".to_owned());
    }
    check_text(trimmed, REPORT_SOURCE_MAX_CHARS)?;
    if !candidates(trimmed.as_bytes(), 0, trimmed.len()).is_empty() {
        return Err(
            "must not hold an app password (it is written to the audit trail): give it in secrets"
                .to_owned(),
        );
    }
    Ok(trimmed.to_owned())
}
