//! Client address rules: the networks an app password may be used from.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// The networks one app password allows; empty means any address.
///
/// A stored list that cannot be read back (a corrupted row, or one written
/// by a future version) permits no address at all: an unreadable
/// restriction must not turn into no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedNetworks {
    networks: Vec<IpNet>,
    /// The stored text, when it could not be read.
    unreadable: Option<String>,
}

impl AllowedNetworks {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self {
            networks,
            unreadable: None,
        }
    }

    /// Reads one entry: CIDR notation, or a bare address meaning just that
    /// address. Host bits are cleared ("192.0.2.7/24" is "192.0.2.0/24"), so
    /// what is stored and shown is what is enforced. An IPv4-mapped IPv6
    /// range (`::ffff:192.0.2.0/120`) is the IPv4 range it maps
    /// (`192.0.2.0/24`), since clients are matched by their IPv4 address; a
    /// mapped range wider than the mapped space is refused.
    pub fn parse_entry(entry: &str) -> Result<IpNet, String> {
        let entry = entry.trim();
        let net = match entry.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match entry.parse::<IpAddr>() {
                Ok(addr) => IpNet::from(canonical_ip(addr)),
                Err(_) => return Err(format!("{entry:?} is not an IP network in CIDR notation")),
            },
        };
        let net = match net {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) if v6.prefix_len() >= 96 => {
                    IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
                        .map_err(|error| format!("{entry:?}: {error}"))?
                }
                Some(_) => {
                    return Err(format!(
                        "{entry:?} is an IPv4-mapped range wider than the mapped space; write the IPv4 range"
                    ))
                }
                None => net,
            },
            IpNet::V4(_) => net,
        };
        Ok(net.trunc())
    }

    /// Any address: no networks listed, and the list was readable.
    pub fn is_unrestricted(&self) -> bool {
        self.unreadable.is_none() && self.networks.is_empty()
    }

    pub fn permits(&self, client: IpAddr) -> bool {
        if self.unreadable.is_some() {
            return false;
        }
        let client = canonical_ip(client);
        self.networks.is_empty() || self.networks.iter().any(|net| net.contains(&client))
    }

    /// The entries as shown to people: the networks, or for an unreadable
    /// list the stored text as it is (never an empty list, which would read
    /// as "any address").
    pub fn entries(&self) -> Vec<String> {
        match &self.unreadable {
            Some(stored) => vec![format!("unreadable: {stored}")],
            None => self.networks.iter().map(ToString::to_string).collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &IpNet> {
        self.networks.iter()
    }

    /// Storage form: comma-separated CIDRs, empty for any.
    pub fn to_stored(&self) -> String {
        self.to_string()
    }

    /// Reads the storage form back. Fails closed: if any entry cannot be
    /// read, the list permits nothing (and says so where it is shown).
    pub(crate) fn from_stored(stored: &str) -> Self {
        // Read the way new entries are, so a range stored before mapped
        // ranges were normalized matches what it maps.
        let parsed: Result<Vec<IpNet>, _> = stored
            .split(',')
            .filter(|entry| !entry.is_empty())
            .map(AllowedNetworks::parse_entry)
            .collect();
        match parsed {
            Ok(networks) => Self::new(networks),
            Err(_) => {
                tracing::error!(
                    stored,
                    "an app password's allowed networks cannot be read; it permits no address"
                );
                Self {
                    networks: Vec::new(),
                    unreadable: Some(stored.to_owned()),
                }
            }
        }
    }
}

impl fmt::Display for AllowedNetworks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(stored) = &self.unreadable {
            // Written back as it was read: never widened.
            return f.write_str(stored);
        }
        for (i, net) in self.networks.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// The client networks an app password has succeeded from, oldest first:
/// IPv4 /24s and IPv6 /64s, so that a new DHCP lease on the same home or
/// office network is not "new". Bounded to the most recent
/// [`SeenNetworks::MAX`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenNetworks(Vec<IpNet>);

impl SeenNetworks {
    pub const MAX: usize = 16;

    /// The network a client address belongs to, for this purpose.
    pub fn network_of(client: IpAddr) -> IpNet {
        let prefix = match canonical_ip(client) {
            IpAddr::V4(_) => 24,
            IpAddr::V6(_) => 64,
        };
        IpNet::new(canonical_ip(client), prefix)
            .map(|net| net.trunc())
            .unwrap_or_else(|_| IpNet::from(client))
    }

    pub fn contains(&self, network: &IpNet) -> bool {
        self.0.contains(network)
    }

    /// This set with `network` added as the most recent.
    pub fn with(&self, network: IpNet) -> Self {
        let mut networks: Vec<IpNet> = self.0.iter().copied().filter(|n| *n != network).collect();
        networks.push(network);
        let excess = networks.len().saturating_sub(Self::MAX);
        networks.drain(..excess);
        Self(networks)
    }

    pub fn to_stored(&self) -> String {
        AllowedNetworks::new(self.0.clone()).to_stored()
    }

    /// Seen networks only inform the new-network event; an unreadable
    /// entry is dropped (the next success from it is then "new" again).
    pub(crate) fn from_stored(stored: &str) -> Self {
        Self(
            stored
                .split(',')
                .filter_map(|entry| entry.parse().ok())
                .collect(),
        )
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
    fn seen_networks_group_addresses_and_stay_bounded() {
        let home = SeenNetworks::network_of(ip("192.0.2.77"));
        assert_eq!(home.to_string(), "192.0.2.0/24");
        assert_eq!(
            SeenNetworks::network_of(ip("2001:db8:1:2:3:4:5:6")).to_string(),
            "2001:db8:1:2::/64"
        );
        let mut seen = SeenNetworks::default().with(home);
        assert!(seen.contains(&SeenNetworks::network_of(ip("192.0.2.1"))));
        for i in 0..20 {
            seen = seen.with(SeenNetworks::network_of(ip(&format!("10.0.{i}.1"))));
        }
        assert_eq!(seen.0.len(), SeenNetworks::MAX);
        assert!(
            !seen.contains(&home),
            "the oldest network is forgotten first"
        );
        assert_eq!(SeenNetworks::from_stored(&seen.to_stored()), seen);
    }

    #[test]
    fn ipv4_mapped_ranges_are_the_ipv4_ranges_they_map() {
        let mapped = AllowedNetworks::parse_entry("::ffff:192.0.2.0/120").unwrap();
        assert_eq!(mapped.to_string(), "192.0.2.0/24");
        let nets = AllowedNetworks::new(vec![mapped]);
        assert!(nets.permits(ip("192.0.2.9")));
        assert!(nets.permits(ip("::ffff:192.0.2.9")));
        assert_eq!(
            AllowedNetworks::parse_entry("::ffff:192.0.2.9")
                .unwrap()
                .to_string(),
            "192.0.2.9/32"
        );
        assert!(AllowedNetworks::parse_entry("::ffff:0:0/90").is_err());
        assert_eq!(
            AllowedNetworks::parse_entry("::/0").unwrap().to_string(),
            "::/0",
            "a range that merely contains the mapped space is left alone"
        );
    }

    #[test]
    fn an_unreadable_stored_list_permits_nothing() {
        let broken = AllowedNetworks::from_stored("192.0.2.0/24,not-a-network");
        assert!(!broken.permits(ip("192.0.2.1")));
        assert!(!broken.permits(ip("198.51.100.1")));
        assert_eq!(broken.entries(), ["unreadable: 192.0.2.0/24,not-a-network"]);
        assert_eq!(broken.to_stored(), "192.0.2.0/24,not-a-network");
        assert!(AllowedNetworks::from_stored("").permits(ip("198.51.100.1")));
        let old = AllowedNetworks::from_stored("::ffff:192.0.2.0/120");
        assert!(
            old.permits(ip("192.0.2.5")),
            "a mapped range stored earlier"
        );
    }

    #[test]
    fn garbage_is_not_a_network() {
        for entry in ["", "10.0.0.0/33", "host.example", "10.0.0.0/8/8"] {
            assert!(AllowedNetworks::parse_entry(entry).is_err(), "{entry}");
        }
    }
}
