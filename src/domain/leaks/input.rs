//! The bounds of a leak report's parts, one place for both doors
//! (`grpc/requests/leaks.rs`, `adapters/leak_reports.rs`). Each gives why
//! a part is refused, to be named by the door's own field.

use crate::domain::secrets::scan::candidates;
use crate::domain::shared::limits::{
    check_text, REPORTED_SECRET_MAX_BYTES, REPORT_SECRETS_MAX, REPORT_SOURCE_MAX_CHARS,
};
use crate::domain::shared::percent;

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
    // As written, and as a URL would carry it (`%20` or `+` for the
    // spaces, any letter escaped): either form in the audit trail is the
    // secret. (A version 1 secret has no marker to find it by.)
    let decoded = percent::decode(raw);
    let holds = |text: &[u8]| !candidates(text, 0, text.len()).is_empty();
    if holds(raw.as_bytes()) || holds(&decoded) {
        return Err(
            "must not hold an app password (it is written to the audit trail): give it as a secret"
                .to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::secrets::format::Secret;

    #[test]
    fn a_source_holding_a_secret_in_any_url_form_is_refused() {
        let secret = Secret::generate().unwrap();
        let shown = secret.display();
        let spaced = shown.replace(' ', "%20");
        let plussed = shown.replace(' ', "+");
        let escaped: String = shown
            .chars()
            .map(|c| {
                if c == 'l' {
                    "%6C".to_owned()
                } else {
                    c.to_string()
                }
            })
            .collect();
        for source in [
            shown.to_string(),
            format!("https://paste.example/?q={spaced}"),
            format!("https://paste.example/?q={plussed}"),
            format!("https://paste.example/?q={escaped}"),
        ] {
            assert!(check_source(&source).is_err(), "{source}");
        }
        for fine in [
            "https://github.com/o/r/blob/main/.env",
            "100%",
            "%zz",
            "a+b%2",
        ] {
            assert!(check_source(fine).is_ok(), "{fine}");
        }
    }
}
