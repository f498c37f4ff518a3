//! Field checks shared by several requests. Each returns the parsed value
//! or a description of what is wrong, for `requests::check`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::domain::shared::limits::{
    check_text, ALLOWED_NETWORKS_MAX, CLIENT_IP_MAX_BYTES, DISPLAY_NAME_MAX_CHARS,
    NETWORK_MAX_BYTES, REASON_MAX_CHARS,
};
use crate::domain::shared::network::AllowedNetworks;

/// A display name: trimmed, 1 to 100 characters, no control characters.
pub fn display_name(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("is required".to_owned());
    }
    check_text(trimmed, DISPLAY_NAME_MAX_CHARS)?;
    Ok(trimmed.to_owned())
}

/// A free-text reason (revocation, disablement); may be empty.
pub fn reason(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    check_text(trimmed, REASON_MAX_CHARS)?;
    Ok(trimmed.to_owned())
}

/// At most 16 networks, each in CIDR notation or a bare address; duplicates
/// are merged.
pub fn allowed_networks(raw: &[String]) -> Result<AllowedNetworks, String> {
    if raw.len() > ALLOWED_NETWORKS_MAX {
        return Err(format!("must have at most {ALLOWED_NETWORKS_MAX} entries"));
    }
    let mut networks = BTreeSet::new();
    for entry in raw {
        if entry.len() > NETWORK_MAX_BYTES {
            return Err(format!("entries must be at most {NETWORK_MAX_BYTES} bytes"));
        }
        networks.insert(AllowedNetworks::parse_entry(entry)?);
    }
    Ok(AllowedNetworks::new(networks.into_iter().collect()))
}

pub fn client_ip(raw: &str) -> Result<IpAddr, String> {
    if raw.is_empty() {
        return Err("is required".to_owned());
    }
    if raw.len() > CLIENT_IP_MAX_BYTES {
        return Err(format!("must be at most {CLIENT_IP_MAX_BYTES} bytes"));
    }
    raw.parse()
        .map_err(|_| "must be an IPv4 or IPv6 address".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_are_bounded_and_printable() {
        assert_eq!(
            display_name("  Thunderbird  ").as_deref(),
            Ok("Thunderbird")
        );
        assert!(display_name("   ").is_err());
        assert!(display_name(&"x".repeat(101)).is_err());
        assert!(display_name("a\nb").is_err());
        assert_eq!(reason("").as_deref(), Ok(""));
        assert!(reason(&"x".repeat(501)).is_err());
    }

    #[test]
    fn networks_and_addresses_are_bounded() {
        let nets = allowed_networks(&["10.0.0.0/8".into(), "10.1.2.3/8".into()]).unwrap();
        assert_eq!(nets.to_stored(), "10.0.0.0/8");
        let many: Vec<String> = (0..17).map(|i| format!("10.0.{i}.0/24")).collect();
        assert!(allowed_networks(&many).is_err());
        assert!(client_ip("").is_err());
        assert!(client_ip("300.1.1.1").is_err());
        assert!(client_ip("2001:db8::1").is_ok());
    }
}
