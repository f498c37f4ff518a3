//! LeakService's requests.

use tonic::Status;

use super::{all, check};
use crate::domain::leaks::input::{check_count, check_secret, check_source};
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
    check_count(raw.len())?;
    raw.iter()
        .map(|s| check_secret(s).map(|()| s.as_str()))
        .collect()
}

fn secret(raw: &str) -> Result<&str, String> {
    check_secret(raw).map(|()| raw)
}

/// Where the secrets were found: trimmed, required, and within
/// `leaks::input::check_source`.
fn source(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("must say where the secrets were found (a URL or a few words)".to_owned());
    }
    check_source(trimmed)?;
    Ok(trimmed.to_owned())
}
