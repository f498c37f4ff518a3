//! Lengths of time as configured: a whole number and a unit, `"90d"`,
//! `"24h"`, `"30m"`, `"300s"` or `"250ms"`; and, for messages that state a
//! bound, the same lengths in words. Every duration setting is written this
//! way; [`as_unit`] reads one into a count of the unit a field keeps (and
//! still takes the bare integer its old, unit-suffixed name took).

use std::fmt;
use std::time::Duration;

/// `duration` in words, in its largest whole unit ("1 hour", "365 days",
/// "5 minutes", "90 seconds", "100 milliseconds"), for messages that state
/// a bound.
pub fn in_words(duration: Duration) -> String {
    let (count, unit) = whole_unit(duration);
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {}{plural}", unit.word)
}

/// A unit of time as configured (`"d"`) and as said (`"day"`).
struct Unit {
    millis: u64,
    suffix: &'static str,
    word: &'static str,
}

/// From the largest: a duration is said in the first that divides it, and
/// a `Span` is written with one of their suffixes.
const UNITS: [Unit; 5] = [
    Unit {
        millis: 86_400_000,
        suffix: "d",
        word: "day",
    },
    Unit {
        millis: 3_600_000,
        suffix: "h",
        word: "hour",
    },
    Unit {
        millis: 60_000,
        suffix: "m",
        word: "minute",
    },
    Unit {
        millis: 1_000,
        suffix: "s",
        word: "second",
    },
    Unit {
        millis: 1,
        suffix: "ms",
        word: "millisecond",
    },
];

/// Zero is said in seconds.
const SECONDS: &Unit = &UNITS[3];

/// `duration`'s whole milliseconds as a count of the largest unit that
/// divides them (seconds for 0): what `Span` prints and `in_words` says.
fn whole_unit(duration: Duration) -> (u128, &'static Unit) {
    let millis = duration.as_millis();
    let unit = UNITS
        .iter()
        .find(|unit| millis != 0 && millis % u128::from(unit.millis) == 0)
        .unwrap_or(SECONDS);
    (millis / u128::from(unit.millis), unit)
}

/// A length of time as configured: a whole number of days, hours, minutes,
/// seconds or milliseconds, written `"90d"`, `"12h"`, `"30m"`, `"45s"` or
/// `"250ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(Duration);

impl Span {
    pub const fn days(days: u64) -> Self {
        Self(Duration::from_secs(days * 86_400))
    }

    /// `duration`, as configured; printed in whole milliseconds.
    pub const fn from_duration(duration: Duration) -> Self {
        Self(duration)
    }

    pub const fn duration(self) -> Duration {
        self.0
    }

    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let digits = text.find(|c: char| !c.is_ascii_digit())?;
        let (number, suffix) = text.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let millis = UNITS.iter().find(|u| u.suffix == suffix)?.millis;
        number
            .checked_mul(millis)
            .map(|millis| Self(Duration::from_millis(millis)))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (count, unit) = whole_unit(self.0);
        write!(f, "{count}{}", unit.suffix)
    }
}

/// What a text that is not a `Span` is told.
fn not_a_span(text: &str) -> String {
    format!(
        "{text:?} is not a length of time: write a whole number and a unit, ms, s, m, h or d (\"90d\", \"250ms\")"
    )
}

impl serde::Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Span::parse(&text).ok_or_else(|| serde::de::Error::custom(not_a_span(&text)))
    }
}

/// Serde for a duration setting a field keeps as a count of one unit (its
/// old name said which: `window_secs`, `ttl_ms`, `retention_days`): it is
/// written as a `Span` (`"1d"`), and read from a `Span` that is a whole
/// number of that unit, or from a bare integer counted in it, as the old
/// name took it. With `#[serde(rename = "window", alias = "window_secs",
/// with = "as_unit::secs")]` both names load, and one written twice is
/// refused as a duplicate.
pub mod as_unit {
    use super::{not_a_span, Span, UNITS};
    use serde::de::{self, Visitor};
    use std::time::Duration;

    macro_rules! unit {
        ($name:ident, $index:expr) => {
            pub mod $name {
                pub fn serialize<S: serde::Serializer>(
                    count: &u64,
                    serializer: S,
                ) -> Result<S::Ok, S::Error> {
                    super::write(*count, $index, serializer)
                }

                pub fn deserialize<'de, D: serde::Deserializer<'de>>(
                    deserializer: D,
                ) -> Result<u64, D::Error> {
                    super::read(deserializer, $index)
                }
            }
        };
    }

    unit!(days, 0);
    unit!(secs, 3);
    unit!(millis, 4);

    fn write<S: serde::Serializer>(
        count: u64,
        unit: usize,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let millis = count.saturating_mul(UNITS[unit].millis);
        serializer.collect_str(&Span::from_duration(Duration::from_millis(millis)))
    }

    fn read<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
        unit: usize,
    ) -> Result<u64, D::Error> {
        deserializer.deserialize_any(Count(unit))
    }

    /// Reads a count of `UNITS[.0]`.
    struct Count(usize);

    impl<'de> Visitor<'de> for Count {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "a length of time (\"90d\", \"300s\", \"250ms\") or a whole number of {}s",
                UNITS[self.0].word
            )
        }

        fn visit_u64<E: de::Error>(self, count: u64) -> Result<u64, E> {
            Ok(count)
        }

        fn visit_i64<E: de::Error>(self, count: i64) -> Result<u64, E> {
            u64::try_from(count).map_err(|_| E::invalid_value(de::Unexpected::Signed(count), &self))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
            let span = Span::parse(text).ok_or_else(|| E::custom(not_a_span(text)))?;
            let unit = &UNITS[self.0];
            let millis = span.duration().as_millis();
            let whole = u128::from(unit.millis);
            if millis % whole != 0 {
                return Err(E::custom(format!(
                    "{text:?} is not a whole number of {}s",
                    unit.word
                )));
            }
            u64::try_from(millis / whole).map_err(|_| E::custom(not_a_span(text)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_put_in_words_in_their_largest_whole_unit() {
        let words = |seconds| in_words(Duration::from_secs(seconds));
        assert_eq!(words(3_600), "1 hour");
        assert_eq!(words(365 * 86_400), "365 days");
        assert_eq!(words(300), "5 minutes");
        assert_eq!(words(90), "90 seconds");
        assert_eq!(words(1), "1 second");
        assert_eq!(in_words(Duration::from_millis(100)), "100 milliseconds");
    }

    #[test]
    fn spans_parse_and_print_in_whole_units() {
        assert_eq!(Span::parse("90d"), Some(Span::days(90)));
        assert_eq!(
            Span::parse("36h").map(Span::duration),
            Some(Duration::from_secs(129_600))
        );
        assert_eq!(Span::parse("36h").unwrap().to_string(), "36h");
        assert_eq!(Span::days(7).to_string(), "7d");
        for bad in ["", "d", "90", "-1d", "1.5d", "1w", "99999999999999999999d"] {
            assert_eq!(Span::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_span_parses_in_each_unit() {
        let cases = [
            ("90d", Duration::from_secs(90 * 86_400)),
            ("24h", Duration::from_secs(24 * 3_600)),
            ("30m", Duration::from_secs(1_800)),
            ("300s", Duration::from_secs(300)),
            ("250ms", Duration::from_millis(250)),
            ("0s", Duration::ZERO),
        ];
        for (text, duration) in cases {
            assert_eq!(
                Span::parse(text).map(Span::duration),
                Some(duration),
                "{text}"
            );
        }
        // Printed in the largest unit that divides it.
        assert_eq!(Span::parse("1500ms").unwrap().to_string(), "1500ms");
        assert_eq!(Span::parse("2000ms").unwrap().to_string(), "2s");
        assert_eq!(Span::parse("0ms").unwrap().to_string(), "0s");
        for bad in ["5 s", "5msec", "ms", "5sm"] {
            assert_eq!(Span::parse(bad), None, "{bad}");
        }
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Settings {
        #[serde(rename = "window", alias = "window_secs", with = "as_unit::secs")]
        window_secs: u64,
    }

    #[test]
    fn a_count_of_its_unit_reads_a_span_or_the_old_integer_and_writes_a_span() {
        let read = |text: &str| toml::from_str::<Settings>(text).map(|s| s.window_secs);
        assert_eq!(read("window = \"1d\"").unwrap(), 86_400);
        assert_eq!(read("window = \"1500s\"").unwrap(), 1_500);
        assert_eq!(read("window_secs = 90").unwrap(), 90);
        let refused = read("window = \"1500ms\"").unwrap_err().to_string();
        assert!(
            refused.contains("not a whole number of seconds"),
            "{refused}"
        );
        assert!(read("window = -1").is_err());
        let both = read("window = \"1d\"\nwindow_secs = 86400")
            .unwrap_err()
            .to_string();
        assert!(both.contains("duplicate field `window`"), "{both}");
        let written = toml::to_string(&Settings { window_secs: 3_600 }).unwrap();
        assert_eq!(written.trim(), "window = \"1h\"");
    }
}
