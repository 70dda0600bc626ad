//! `HumanDuration`: a span of time written like `"30s"`, `"5m"` or `"1m30s"`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A [`Duration`] written for people.
///
/// The string form is one or more `<integer><unit>` parts, largest first or
/// in any order, summed: `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1m30s"`,
/// `"2d"`. Units: `ns`, `us`, `ms`, `s`, `m`, `h`, `d`. The unit is
/// required: a bare number (`5`, as a string or a TOML/YAML integer) is
/// refused rather than guessed to be seconds.
///
/// Displays compactly as parts from days down to nanoseconds (`"1m30s"`,
/// `"500ms"`, `"0s"`), which parse back to the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// Not a sequence of numbers with units.
    #[error("invalid duration {0:?}: expected numbers with units ms, s, m, h or d, e.g. \"30s\", \"5m\" or \"1m30s\"")]
    Invalid(String),
    /// A number without a unit.
    #[error(
        "invalid duration {0:?}: a unit is required: ms, s, m, h or d (e.g. \"{0}s\" or \"{0}m\")"
    )]
    NoUnit(String),
    /// A minus sign.
    #[error("invalid duration {0:?}: must not be negative")]
    Negative(String),
    /// Does not fit in a `Duration`.
    #[error("invalid duration {0:?}: too large")]
    TooLarge(String),
}

const UNITS: [(&str, u64); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

fn unit_nanos(unit: &str) -> Option<u64> {
    UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, nanos)| *nanos)
}

impl FromStr for HumanDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseDurationError::Invalid(input.to_owned());
        let too_large = || ParseDurationError::TooLarge(input.to_owned());
        let s = input.trim();
        if s.starts_with('-') {
            return Err(ParseDurationError::Negative(input.to_owned()));
        }
        if s.is_empty() {
            return Err(invalid());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseDurationError::NoUnit(s.to_owned()));
        }
        let mut total: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(invalid());
            }
            let (number, after) = rest.split_at(digits);
            let unit_len = after
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let nanos = unit_nanos(unit).ok_or_else(invalid)?;
            let number: u128 = number.parse().map_err(|_| too_large())?;
            total = number
                .checked_mul(u128::from(nanos))
                .and_then(|n| total.checked_add(n))
                .ok_or_else(too_large)?;
            rest = after;
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_large())?;
        let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| too_large())?;
        Ok(Self(Duration::new(secs, nanos)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_nanos();
        if rest == 0 {
            return f.write_str("0s");
        }
        for (name, nanos) in UNITS {
            let nanos = u128::from(nanos);
            if rest >= nanos {
                write!(f, "{}{name}", rest / nanos)?;
                rest %= nanos;
            }
        }
        Ok(())
    }
}

impl From<Duration> for HumanDuration {
    fn from(duration: Duration) -> Self {
        Self(duration)
    }
}

impl From<HumanDuration> for Duration {
    fn from(duration: HumanDuration) -> Self {
        duration.0
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit such as \"30s\" or \"5m\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
        Err(E::custom(ParseDurationError::NoUnit(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
        if v < 0 {
            return Err(E::custom(ParseDurationError::Negative(v.to_string())));
        }
        Err(E::custom(ParseDurationError::NoUnit(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
        Err(E::custom(ParseDurationError::NoUnit(v.to_string())))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// Serializes a plain [`Duration`] in the human form (for validated types).
pub(crate) fn serialize_duration<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&HumanDuration(*duration))
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: integers with units ns, us, ms, s, m, h, d (\"500ms\", \"30s\", \"5m\", \"1m30s\"). A bare number is refused.",
            "type": "string",
            "pattern": r"^\s*([0-9]+(ns|us|ms|s|m|h|d))+\s*$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Duration, ParseDurationError> {
        s.parse::<HumanDuration>().map(|d| d.0)
    }

    #[test]
    fn parses_units() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(2 * 86400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h2m3s4ms"), Ok(Duration::new(3723, 4_000_000)));
        assert_eq!(parse("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse(" 10s "), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "s", "5x", "1.5s", "5 m", "m5", "1h 30m", "5M", "0x10s"] {
            assert!(
                matches!(parse(s), Err(ParseDurationError::Invalid(_))),
                "{s:?}"
            );
        }
        assert!(matches!(parse("-5s"), Err(ParseDurationError::Negative(_))));
        assert!(matches!(
            parse("99999999999999999999999d"),
            Err(ParseDurationError::TooLarge(_))
        ));
    }

    #[test]
    fn refuses_a_bare_number() {
        for s in ["5", "0", " 90 ", "999999999999999999999"] {
            assert!(
                matches!(parse(s), Err(ParseDurationError::NoUnit(_))),
                "{s:?}"
            );
        }
        assert_eq!(
            parse("5").unwrap_err().to_string(),
            "invalid duration \"5\": a unit is required: ms, s, m, h or d (e.g. \"5s\" or \"5m\")"
        );
        #[derive(Debug, serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            t: HumanDuration,
        }
        let e = toml::from_str::<T>("t = 5").unwrap_err().to_string();
        assert!(e.contains("a unit is required"), "{e}");
        assert!(toml::from_str::<T>("t = \"5s\"").is_ok());
    }

    #[test]
    fn display_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(500),
            Duration::from_millis(1500),
            Duration::from_secs(90),
            Duration::from_secs(300),
            Duration::from_secs(86_400 + 1),
            Duration::new(3723, 4_000_567),
            Duration::MAX,
        ] {
            let shown = HumanDuration(d).to_string();
            assert_eq!(parse(&shown), Ok(d), "{shown}");
        }
        assert_eq!(HumanDuration(Duration::from_secs(90)).to_string(), "1m30s");
        assert_eq!(HumanDuration(Duration::from_secs(300)).to_string(), "5m");
        assert_eq!(
            HumanDuration(Duration::from_millis(500)).to_string(),
            "500ms"
        );
        assert_eq!(HumanDuration(Duration::ZERO).to_string(), "0s");
    }
}
