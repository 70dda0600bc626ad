//! `ByteSize`: a byte count written like `"512M"` or `"1.5G"`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes.
///
/// Written as a number with a binary unit: `"100B"`, `"64k"`, `"512M"`,
/// `"1.5G"`, `"512MiB"`, `"2T"`. Units are case-insensitive and always
/// powers of 1024 (`K`, `KB` and `KiB` all mean 1024 bytes); after K, M, G
/// or T a trailing `B` is optional, and `B` alone means bytes. The unit is
/// required: a bare number such as `512` (a string, or a TOML/YAML integer)
/// is refused, because `memory = 512` almost always meant 512M, not 512
/// bytes. A fraction is allowed with a unit above bytes and is rounded down
/// to whole bytes.
///
/// Displays in the largest unit that divides it exactly (`1G`, `512M`,
/// `1536M`, `100B`), which parses back to the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const KIB: u64 = 1024;
const UNITS: [(&str, u64); 4] = [
    ("T", KIB * KIB * KIB * KIB),
    ("G", KIB * KIB * KIB),
    ("M", KIB * KIB),
    ("K", KIB),
];

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSizeError {
    /// Not a number with a known unit.
    #[error("invalid size {0:?}: expected a number with a unit B, K, M, G or T (e.g. \"512M\", \"1.5G\", \"64K\", \"100B\")")]
    Invalid(String),
    /// A number without a unit.
    #[error("invalid size {0:?}: a unit is required: B, K, M, G or T (e.g. \"{0}M\" or \"{0}B\")")]
    NoUnit(String),
    /// A minus sign.
    #[error("invalid size {0:?}: must not be negative")]
    Negative(String),
    /// More than `u64::MAX` bytes.
    #[error("invalid size {0:?}: too large (at most {max} bytes)", max = u64::MAX)]
    TooLarge(String),
}

impl ByteSize {
    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// `n` kibibytes.
    pub const fn kib(n: u64) -> Self {
        Self(n * KIB)
    }

    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        Self(n * KIB * KIB)
    }

    /// `n` gibibytes.
    pub const fn gib(n: u64) -> Self {
        Self(n * KIB * KIB * KIB)
    }
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_uppercase();
    let unit = unit.as_str();
    let base = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(unit);
    match base {
        "" if unit.is_empty() => None,
        "" => Some(1),
        "K" => Some(KIB),
        "M" => Some(KIB * KIB),
        "G" => Some(KIB * KIB * KIB),
        "T" => Some(KIB * KIB * KIB * KIB),
        _ => None,
    }
}

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseSizeError::Invalid(input.to_owned());
        let s = input.trim();
        if s.starts_with('-') {
            return Err(ParseSizeError::Negative(input.to_owned()));
        }
        let number_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(number_end);
        let unit = unit.trim_start();
        if unit.is_empty() && !number.is_empty() {
            return Err(ParseSizeError::NoUnit(s.to_owned()));
        }
        let multiplier = unit_multiplier(unit).ok_or_else(invalid)?;
        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (number, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let too_large = || ParseSizeError::TooLarge(input.to_owned());
        let whole: u128 = whole.parse().map_err(|_| too_large())?;
        let mut total = whole
            .checked_mul(u128::from(multiplier))
            .ok_or_else(too_large)?;
        if let Some(fraction) = fraction {
            // A fraction only makes sense with a unit, and at most 9 digits.
            if fraction.is_empty()
                || fraction.len() > 9
                || multiplier == 1
                || !fraction.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(invalid());
            }
            let digits: u128 = fraction.parse().map_err(|_| invalid())?;
            let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| invalid())?);
            total += digits * u128::from(multiplier) / scale;
        }
        u64::try_from(total).map(ByteSize).map_err(|_| too_large())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 {
            for (name, unit) in UNITS {
                if self.0 % unit == 0 {
                    return write!(f, "{}{name}", self.0 / unit);
                }
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size with a unit such as \"512M\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Err(E::custom(ParseSizeError::NoUnit(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        if v < 0 {
            return Err(E::custom(ParseSizeError::Negative(v.to_string())));
        }
        Err(E::custom(ParseSizeError::NoUnit(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
        Err(E::custom(ParseSizeError::NoUnit(v.to_string())))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

/// Regular expression for the string form, used in the JSON Schema.
pub(crate) const BYTE_SIZE_PATTERN: &str =
    r"^\s*([0-9]+(\.[0-9]{1,9})?\s*[kKmMgGtT]([iI]?[bB])?|[0-9]+\s*[bB])\s*$";

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size in bytes: a number with a binary unit B, K, M, G or T (\"512M\", \"1.5G\", \"64KiB\", \"100B\"). A bare number is refused.",
            "type": "string",
            "pattern": BYTE_SIZE_PATTERN
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let cases = [
            ("1024B", 1024),
            ("0B", 0),
            ("0M", 0),
            ("64k", 64 * 1024),
            ("64K", 64 * 1024),
            ("512M", 512 << 20),
            ("512MiB", 512 << 20),
            ("512mb", 512 << 20),
            ("1G", 1 << 30),
            ("1.5G", 3 << 29),
            ("1.5 G", 3 << 29),
            ("2T", 2 << 40),
            ("100B", 100),
            (" 7M ", 7 << 20),
        ];
        for (input, bytes) in cases {
            assert_eq!(input.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{input}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for input in [
            "", "12Q", "G", "1..5G", "1.G", ".5G", "1e3", "0x10", "1 G B", "1Gi", "1.5B", "B",
        ] {
            assert!(
                matches!(input.parse::<ByteSize>(), Err(ParseSizeError::Invalid(_))),
                "{input:?} should be invalid"
            );
        }
        assert!(matches!(
            "-1G".parse::<ByteSize>(),
            Err(ParseSizeError::Negative(_))
        ));
        assert!(matches!(
            "16777216T".parse::<ByteSize>(),
            Err(ParseSizeError::TooLarge(_))
        ));
        assert!(matches!(
            "99999999999999999999999999999999999999999K".parse::<ByteSize>(),
            Err(ParseSizeError::TooLarge(_))
        ));
        assert_eq!(
            "12Q".parse::<ByteSize>().unwrap_err().to_string(),
            "invalid size \"12Q\": expected a number with a unit B, K, M, G or T (e.g. \"512M\", \"1.5G\", \"64K\", \"100B\")"
        );
    }

    #[test]
    fn refuses_a_bare_number() {
        for input in ["512", "0", " 7 ", "1.5", "1024"] {
            assert!(
                matches!(input.parse::<ByteSize>(), Err(ParseSizeError::NoUnit(_))),
                "{input:?} should need a unit"
            );
        }
        assert_eq!(
            "512".parse::<ByteSize>().unwrap_err().to_string(),
            "invalid size \"512\": a unit is required: B, K, M, G or T (e.g. \"512M\" or \"512B\")"
        );
        // A TOML integer is refused the same way.
        #[derive(Debug, serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            m: ByteSize,
        }
        let e = toml::from_str::<T>("m = 512").unwrap_err().to_string();
        assert!(e.contains("a unit is required"), "{e}");
        assert!(toml::from_str::<T>("m = \"512M\"").is_ok());
    }

    #[test]
    fn display_round_trips() {
        for bytes in [
            0,
            1,
            1023,
            1024,
            1536,
            3 << 29,
            512 << 20,
            1 << 30,
            5 << 40,
            u64::MAX,
            u64::MAX - 1023,
        ] {
            let size = ByteSize(bytes);
            let shown = size.to_string();
            assert_eq!(shown.parse::<ByteSize>(), Ok(size), "{shown}");
        }
        assert_eq!(ByteSize::gib(1).to_string(), "1G");
        assert_eq!(ByteSize::mib(512).to_string(), "512M");
        assert_eq!(ByteSize(3 << 29).to_string(), "1536M");
        assert_eq!(ByteSize(100).to_string(), "100B");
        assert_eq!(ByteSize(0).to_string(), "0B");
    }
}
