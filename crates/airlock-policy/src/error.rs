//! Errors: a bad profile (with file, line and field), a profile that cannot
//! be loaded, a bad command-line override, a profile that cannot be shown.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use crate::locate::{self, FieldPath};

/// A profile (or the seccomp data file) that does not parse or validate.
///
/// Displays as `ORIGIN:LINE:COLUMN: FIELD: MESSAGE`, e.g.
/// `profiles/bad.toml:7:10: limits.memory: invalid size "12Q": expected a
/// number with an optional unit K, M, G or T`. The field is left out when
/// unknown (some syntax errors).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{inner}")]
pub struct ProfileError {
    // Boxed: the error travels in `Result`s and should stay small.
    inner: Box<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    origin: String,
    line: usize,
    column: usize,
    field: String,
    message: String,
    span: Option<Range<usize>>,
    source_text: Arc<str>,
}

impl fmt::Display for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl ProfileError {
    fn new(
        origin: &str,
        src: &str,
        span: Option<Range<usize>>,
        field: String,
        message: String,
    ) -> Self {
        let (line, column) = locate::line_col(src, span.as_ref().map_or(0, |s| s.start));
        Self {
            inner: Box::new(Inner {
                origin: origin.to_owned(),
                line,
                column,
                field,
                message,
                span,
                source_text: src.into(),
            }),
        }
    }

    /// From a toml parse or deserialization error: the field is found from
    /// the error's span.
    pub(crate) fn from_toml(origin: &str, src: &str, err: &toml::de::Error) -> Self {
        let span = err.span();
        let field = span
            .as_ref()
            .map(|s| locate::path_at(src, s.start).to_string())
            .unwrap_or_default();
        let mut message = err.message().trim_end().to_owned();
        if let Some(key) = span.as_ref().and_then(|s| unquoted_plus_key(src, s.start)) {
            message.push_str(&format!(
                " (a key ending in '+' must be quoted in TOML: \"{key}+\" = [...])"
            ));
        }
        Self::new(origin, src, span, field, message)
    }

    /// From a validation error: the span is found from the field path.
    pub(crate) fn from_field(origin: &str, src: &str, err: FieldError) -> Self {
        let span = locate::span_of(src, &err.path);
        Self::new(origin, src, span, err.path.to_string(), err.message)
    }

    /// Where the profile came from: a file path as given, or `builtin:NAME`.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// 1-based line of the error (1 when the position is unknown).
    pub fn line(&self) -> usize {
        self.inner.line
    }

    /// 1-based column, in characters (1 when the position is unknown).
    pub fn column(&self) -> usize {
        self.inner.column
    }

    /// Dotted path of the offending field, e.g. `limits.memory` or
    /// `filesystem.ro[2]`; empty when unknown.
    pub fn field(&self) -> &str {
        &self.inner.field
    }

    /// What is wrong, without the position.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// Byte range in the source that the error points at, for diagnostics.
    pub fn source_span(&self) -> Option<Range<usize>> {
        self.inner.span.clone()
    }

    /// The whole TOML source the error refers to, for diagnostics.
    pub fn source_text(&self) -> &str {
        &self.inner.source_text
    }
}

/// The key of a line such as `ro+ = [...]` (an append key written bare,
/// which TOML does not allow) at `offset`'s line.
fn unquoted_plus_key(src: &str, offset: usize) -> Option<&str> {
    let offset = offset.min(src.len());
    let start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = src[start..].lines().next()?.trim_start();
    let plus = line.find('+')?;
    let key = &line[..plus];
    let after = line[plus + 1..].trim_start();
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (bare && after.starts_with('=')).then_some(key)
}

/// A validation failure before it is placed in the source.
#[derive(Debug, Clone)]
pub(crate) struct FieldError {
    pub(crate) path: FieldPath,
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn new(path: FieldPath, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
        }
    }

    /// Puts the path below `prefix` (`memory` → `limits.memory`).
    pub(crate) fn within(mut self, prefix: &str) -> Self {
        self.path = self.path.within(prefix);
        self
    }
}

/// Why [`Profile::load`](crate::Profile::load) or
/// [`Profile::builtin`](crate::Profile::builtin) failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A name without `/` or `.toml` that is not a built-in profile.
    #[error("unknown built-in profile {name:?}; built-in profiles are {}, or give a path to a .toml file", .known.join(", "))]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
        /// The built-in names.
        known: &'static [&'static str],
    },
    /// The profile file does not exist.
    #[error("profile file {} not found", .path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The profile file cannot be read.
    #[error("cannot read profile file {}: {source}", .path.display())]
    Read {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The profile file is over the size limit.
    #[error("profile file {} is too large: over {limit} bytes", .path.display())]
    TooLarge {
        /// The path as given.
        path: PathBuf,
        /// The limit, 1 MiB.
        limit: u64,
    },
    /// The profile file is not UTF-8.
    #[error("profile file {} is not valid UTF-8", .path.display())]
    NotUtf8 {
        /// The path as given.
        path: PathBuf,
    },
    /// The profile does not parse or validate.
    #[error(transparent)]
    Invalid(#[from] ProfileError),
}

/// A command-line override that is out of range, e.g. `--pids 0`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct OverrideError {
    /// The option as the user wrote it, e.g. `--pids` or `--env FOO`.
    pub option: String,
    /// What is wrong with its value.
    pub message: String,
}

/// [`Profile::to_toml_string`](crate::Profile::to_toml_string) failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot render profile {name:?} as toml: {source}")]
pub struct RenderError {
    /// The profile's name.
    pub name: String,
    /// The serializer's error.
    pub source: toml::ser::Error,
}
