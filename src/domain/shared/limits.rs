//! Upper bounds on every input, in one place. Each is checked at the edge,
//! before any hashing or database work, so an oversized request costs the
//! server nothing but its parsing.

/// A normalized username, in bytes (an email address is at most 254).
pub const USERNAME_MAX_BYTES: usize = 256;
/// A username as sent, in bytes, before normalization; bounds the work
/// normalization can be made to do.
pub const USERNAME_INPUT_MAX_BYTES: usize = 1024;
/// A display name, in characters.
pub const DISPLAY_NAME_MAX_CHARS: usize = 100;
/// A password as sent to Authenticate, in bytes. A real app password with
/// separators is 34; anything near this bound is not one.
pub const PASSWORD_INPUT_MAX_BYTES: usize = 256;
/// Entries in a request's protocol list.
pub const PROTOCOLS_MAX: usize = 16;
/// Entries in a request's allowed network list.
pub const ALLOWED_NETWORKS_MAX: usize = 16;
/// One network entry, in bytes (the longest IPv6 CIDR is 43).
pub const NETWORK_MAX_BYTES: usize = 64;
/// A revocation or disable reason, in characters.
pub const REASON_MAX_CHARS: usize = 500;
/// A client address as sent, in bytes.
pub const CLIENT_IP_MAX_BYTES: usize = 64;
/// A resource name as sent, in bytes.
pub const RESOURCE_NAME_MAX_BYTES: usize = 1024;
/// Secrets in one leak report (ReportLeakedSecrets).
pub const REPORT_SECRETS_MAX: usize = 1_000;
/// One reported or looked-up secret as sent, in bytes: a version 2 secret
/// with separators is 44.
pub const REPORTED_SECRET_MAX_BYTES: usize = 100;
/// Where a leak report's secrets were found, in characters; with "LEAKED: "
/// it fits an audit event's detail.
pub const REPORT_SOURCE_MAX_CHARS: usize = 400;
/// The largest ReportLeakedSecrets message, in bytes: a full report
/// (1,000 secrets of 100 bytes, and a source) fits. Only LeakService takes
/// messages this large, and only from an authenticated reporter or
/// operator: the auth layer refuses anyone else before the body is read.
pub const LEAK_REPORT_MESSAGE_MAX_BYTES: usize = 128 * 1024;
/// A page token as sent, in bytes.
pub const PAGE_TOKEN_MAX_BYTES: usize = 2048;
/// Page size when the caller gives none.
pub const PAGE_SIZE_DEFAULT: u32 = 50;
/// The largest page a caller may ask for.
pub const PAGE_SIZE_MAX: u32 = 1000;

/// Checks a free-text field (display name, reason): a character bound and no
/// control characters, which would let one entry forge lines in a review
/// page or a log.
pub fn check_text(value: &str, max_chars: usize) -> Result<(), String> {
    if value.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}
