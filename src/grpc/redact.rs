//! `Debug` for the messages that carry a secret. build.rs tells prost not to
//! derive it for them; these print every field but the secret, so a stray
//! `{:?}` in a log line cannot leak one.

use std::fmt;

use super::pb::{
    AuthenticateRequest, CreateCallerResponse, IssueAppPasswordResponse, LookupAppPasswordRequest,
    ReportLeakedSecretsRequest,
};

impl fmt::Debug for IssueAppPasswordResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssueAppPasswordResponse")
            .field("app_password", &self.app_password)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for AuthenticateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("protocol", &self.protocol)
            .field("client_ip", &self.client_ip)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl fmt::Debug for CreateCallerResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateCallerResponse")
            .field("caller", &self.caller)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for ReportLeakedSecretsRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportLeakedSecretsRequest")
            .field(
                "secrets",
                &format_args!("<{} redacted>", self.secrets.len()),
            )
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Debug for LookupAppPasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupAppPasswordRequest")
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug() {
        let request = AuthenticateRequest {
            username: "alice".into(),
            password: "hunter2hunter2".into(),
            protocol: 2,
            client_ip: "192.0.2.1".into(),
            client_id: String::new(),
        };
        let printed = format!("{request:?}");
        assert!(printed.contains("alice") && !printed.contains("hunter2"));
        let response = IssueAppPasswordResponse {
            app_password: None,
            secret: "abcd efgh".into(),
        };
        assert!(!format!("{response:?}").contains("abcd"));
        let report = ReportLeakedSecretsRequest {
            secrets: vec!["lkab cdef ghij".into()],
            source: "https://example.com/gist".into(),
        };
        let printed = format!("{report:?}");
        assert!(printed.contains("gist") && !printed.contains("lkab"));
        let lookup = LookupAppPasswordRequest {
            secret: "lkab cdef ghij".into(),
        };
        assert!(!format!("{lookup:?}").contains("lkab"));
    }
}
