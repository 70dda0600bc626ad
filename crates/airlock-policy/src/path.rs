//! `AbsPath`: an absolute, normalized path.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted path, in bytes (`PATH_MAX` minus the NUL).
const MAX_LEN: usize = 4095;

/// An absolute, normalized path: it starts with `/`, and has no empty
/// components (`//`, a trailing `/`), no `.` or `..` components and no NUL
/// byte. `/` itself is allowed. Such a path names the same place however it
/// is joined, so it can be compared component-wise without touching the
/// filesystem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbsPath(String);

/// Why a path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParsePathError {
    /// Does not start with `/`.
    #[error("invalid path {0:?}: must be absolute (start with \"/\")")]
    Relative(String),
    /// Has a `..` component.
    #[error("invalid path {0:?}: must not contain \"..\" components")]
    DotDot(String),
    /// Has a `.` component.
    #[error("invalid path {0:?}: must not contain \".\" components")]
    Dot(String),
    /// Has `//` or a trailing `/`.
    #[error("invalid path {0:?}: must be normalized, without \"//\" or a trailing \"/\"")]
    EmptyComponent(String),
    /// Has a NUL byte.
    #[error("invalid path {0:?}: must not contain a NUL byte")]
    Nul(String),
    /// Longer than `PATH_MAX`.
    #[error("invalid path {0:?}: longer than 4095 bytes")]
    TooLong(String),
}

impl AbsPath {
    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as a [`Path`].
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }

    /// Whether `self` is `other` or lies below it, comparing whole components
    /// (`/usr/lib` is under `/usr`, `/usrx` is not).
    pub fn is_under(&self, other: &AbsPath) -> bool {
        if other.0 == "/" {
            return true;
        }
        match self.0.strip_prefix(&other.0) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// Constant paths known to be valid (defaults).
    pub(crate) fn known(path: &str) -> Self {
        debug_assert!(path.parse::<AbsPath>().is_ok(), "{path}");
        Self(path.to_owned())
    }
}

impl FromStr for AbsPath {
    type Err = ParsePathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let owned = || s.to_owned();
        if s.contains('\0') {
            return Err(ParsePathError::Nul(owned()));
        }
        if s.len() > MAX_LEN {
            return Err(ParsePathError::TooLong(owned()));
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(ParsePathError::Relative(owned()));
        };
        if !rest.is_empty() {
            for component in rest.split('/') {
                match component {
                    "" => return Err(ParsePathError::EmptyComponent(owned())),
                    "." => return Err(ParsePathError::Dot(owned())),
                    ".." => return Err(ParsePathError::DotDot(owned())),
                    _ => {}
                }
            }
        }
        Ok(Self(owned()))
    }
}

impl fmt::Display for AbsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<Path> for AbsPath {
    fn as_ref(&self) -> &Path {
        self.as_path()
    }
}

impl AsRef<str> for AbsPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for AbsPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

struct AbsPathVisitor;

impl Visitor<'_> for AbsPathVisitor {
    type Value = AbsPath;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an absolute path")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<AbsPath, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for AbsPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(AbsPathVisitor)
    }
}

impl JsonSchema for AbsPath {
    fn schema_name() -> Cow<'static, str> {
        "AbsPath".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An absolute, normalized path: starts with \"/\", no \".\" or \"..\" components, no \"//\" or trailing \"/\".",
            "type": "string",
            "pattern": r"^/$|^(/[^/\u0000]+)+$",
            "maxLength": MAX_LEN
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normalized() {
        for p in ["/", "/usr", "/etc/ld.so.cache", "/a/.hidden/..x/b"] {
            assert_eq!(p.parse::<AbsPath>().map(|p| p.to_string()), Ok(p.into()));
        }
    }

    #[test]
    fn rejects_bad() {
        let err = |s: &str| s.parse::<AbsPath>().unwrap_err();
        assert!(matches!(err("usr"), ParsePathError::Relative(_)));
        assert!(matches!(err(""), ParsePathError::Relative(_)));
        assert!(matches!(err("/usr/../etc"), ParsePathError::DotDot(_)));
        assert!(matches!(err("/.."), ParsePathError::DotDot(_)));
        assert!(matches!(err("/usr/./lib"), ParsePathError::Dot(_)));
        assert!(matches!(
            err("/usr//lib"),
            ParsePathError::EmptyComponent(_)
        ));
        assert!(matches!(err("/usr/"), ParsePathError::EmptyComponent(_)));
        assert!(matches!(err("/u\0sr"), ParsePathError::Nul(_)));
        assert!(matches!(
            err(&format!("/{}", "a".repeat(5000))),
            ParsePathError::TooLong(_)
        ));
    }

    #[test]
    fn under() {
        let p = |s: &str| s.parse::<AbsPath>().unwrap();
        assert!(p("/proc").is_under(&p("/proc")));
        assert!(p("/proc/self").is_under(&p("/proc")));
        assert!(!p("/procx").is_under(&p("/proc")));
        assert!(p("/anything").is_under(&p("/")));
        assert!(!p("/").is_under(&p("/proc")));
    }
}
