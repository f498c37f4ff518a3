//! Client address rules: the networks an app password may be used from.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// The networks one app password allows; empty means any address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedNetworks(Vec<IpNet>);

impl AllowedNetworks {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    /// Reads one entry: CIDR notation, or a bare address meaning just that
    /// address. Host bits are cleared ("192.0.2.7/24" is "192.0.2.0/24"), so
    /// what is stored and shown is what is enforced.
    pub fn parse_entry(entry: &str) -> Result<IpNet, String> {
        let entry = entry.trim();
        let net = match entry.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match entry.parse::<IpAddr>() {
                Ok(addr) => IpNet::from(canonical_ip(addr)),
                Err(_) => return Err(format!("{entry:?} is not an IP network in CIDR notation")),
            },
        };
        Ok(net.trunc())
    }

    pub fn permits(&self, client: IpAddr) -> bool {
        let client = canonical_ip(client);
        self.0.is_empty() || self.0.iter().any(|net| net.contains(&client))
    }

    pub fn iter(&self) -> impl Iterator<Item = &IpNet> {
        self.0.iter()
    }

    /// Storage form: comma-separated CIDRs, empty for any.
    pub fn to_stored(&self) -> String {
        self.to_string()
    }

    pub(crate) fn from_stored(stored: &str) -> Self {
        Self(
            stored
                .split(',')
                .filter(|entry| !entry.is_empty())
                .filter_map(|entry| entry.parse().ok())
                .collect(),
        )
    }
}

impl fmt::Display for AllowedNetworks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// An IPv4 client seen through an IPv6 socket arrives as `::ffff:a.b.c.d`;
/// rules and records treat it as the IPv4 address it is.
pub fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_permit_their_members_only() {
        let nets = AllowedNetworks::new(vec![
            AllowedNetworks::parse_entry("192.0.2.7/24").unwrap(),
            AllowedNetworks::parse_entry("2001:db8::1").unwrap(),
        ]);
        assert_eq!(nets.to_stored(), "192.0.2.0/24,2001:db8::1/128");
        assert!(nets.permits(ip("192.0.2.200")));
        assert!(nets.permits(ip("::ffff:192.0.2.1")));
        assert!(nets.permits(ip("2001:db8::1")));
        assert!(!nets.permits(ip("2001:db8::2")));
        assert!(!nets.permits(ip("198.51.100.1")));
        assert!(AllowedNetworks::default().permits(ip("198.51.100.1")));
        assert_eq!(AllowedNetworks::from_stored(&nets.to_stored()), nets);
    }

    #[test]
    fn garbage_is_not_a_network() {
        for entry in ["", "10.0.0.0/33", "host.example", "10.0.0.0/8/8"] {
            assert!(AllowedNetworks::parse_entry(entry).is_err(), "{entry}");
        }
    }
}
