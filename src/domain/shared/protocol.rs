//! The legacy protocols an app password may be scoped to, and the set of
//! them a password allows (stored as a bitmask).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Imap,
    Pop3,
    Smtp,
    CalDav,
    CardDav,
    ExchangeActiveSync,
    ExchangeWebServices,
    Mapi,
}

impl Protocol {
    pub const ALL: [Protocol; 8] = [
        Protocol::Imap,
        Protocol::Pop3,
        Protocol::Smtp,
        Protocol::CalDav,
        Protocol::CardDav,
        Protocol::ExchangeActiveSync,
        Protocol::ExchangeWebServices,
        Protocol::Mapi,
    ];

    /// The stable code used in storage. Never renumber: stored rows use it.
    pub const fn code(self) -> i32 {
        match self {
            Protocol::Imap => 1,
            Protocol::Pop3 => 2,
            Protocol::Smtp => 3,
            Protocol::CalDav => 4,
            Protocol::CardDav => 5,
            Protocol::ExchangeActiveSync => 6,
            Protocol::ExchangeWebServices => 7,
            Protocol::Mapi => 8,
        }
    }

    /// A short lowercase name, for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Smtp => "smtp",
            Protocol::CalDav => "caldav",
            Protocol::CardDav => "carddav",
            Protocol::ExchangeActiveSync => "eas",
            Protocol::ExchangeWebServices => "ews",
            Protocol::Mapi => "mapi",
        }
    }

    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.code() == code)
    }

    const fn bit(self) -> i64 {
        1 << self.code()
    }
}

/// The protocols one app password allows. "Any" is its own bit rather than
/// every bit set, so a password issued for any protocol also covers
/// protocols added after it was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolSet(i64);

impl ProtocolSet {
    const ANY_BIT: i64 = 1;

    pub const fn any() -> Self {
        Self(Self::ANY_BIT)
    }

    pub fn of(protocols: impl IntoIterator<Item = Protocol>) -> Self {
        Self(protocols.into_iter().fold(0, |bits, p| bits | p.bit()))
    }

    pub fn is_any(self) -> bool {
        self.0 & Self::ANY_BIT != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn allows(self, protocol: Protocol) -> bool {
        self.is_any() || self.0 & protocol.bit() != 0
    }

    /// The concrete protocols named, in a stable order (empty for "any").
    pub fn protocols(self) -> impl Iterator<Item = Protocol> {
        Protocol::ALL
            .into_iter()
            .filter(move |p| self.0 & p.bit() != 0)
    }

    pub const fn bits(self) -> i64 {
        self.0
    }

    /// Whether every protocol this set allows, `allowed` allows too. "Any"
    /// is within only "any": it would cover protocols `allowed` leaves out.
    pub fn within(self, allowed: ProtocolSet) -> bool {
        allowed.is_any() || (!self.is_any() && self.0 & !allowed.0 == 0)
    }

    pub(crate) const fn from_bits(bits: i64) -> Self {
        Self(bits)
    }
}

/// `any`, or the protocols' names joined by commas: `imap,smtp`.
impl std::fmt::Display for ProtocolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_any() {
            return f.write_str("any");
        }
        for (n, protocol) in self.protocols().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            f.write_str(protocol.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_allows_exactly_its_protocols_and_any_allows_all() {
        let set = ProtocolSet::of([Protocol::Imap, Protocol::Smtp]);
        assert!(set.allows(Protocol::Imap) && set.allows(Protocol::Smtp));
        assert!(!set.allows(Protocol::Pop3));
        assert_eq!(
            set.protocols().collect::<Vec<_>>(),
            [Protocol::Imap, Protocol::Smtp]
        );
        assert!(Protocol::ALL.iter().all(|&p| ProtocolSet::any().allows(p)));
        assert_eq!(ProtocolSet::from_bits(set.bits()), set);
    }
}
