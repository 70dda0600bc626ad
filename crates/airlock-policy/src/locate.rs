//! Mapping between byte offsets in a TOML source and dotted field paths.
//!
//! toml reports where an error is (a byte span) but not which field it is
//! in; validation after deserialization knows the field but not where it is.
//! Both directions use toml's spanned document tree (`DeTable`), parsed with
//! recovery so that even a syntax error gets the best path available.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted field path such as `limits.memory` or `filesystem.ro[2]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FieldPath(Vec<Seg>);

impl FieldPath {
    pub(crate) fn root() -> Self {
        Self::default()
    }

    pub(crate) fn key(mut self, key: &str) -> Self {
        self.0.push(Seg::Key(key.to_owned()));
        self
    }

    pub(crate) fn index(mut self, index: usize) -> Self {
        self.0.push(Seg::Index(index));
        self
    }

    /// Whether this is the root (the whole profile).
    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub(crate) fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The steps of the path.
    pub(crate) fn segs(&self) -> &[Seg] {
        &self.0
    }

    /// This path followed by `rest`.
    pub(crate) fn join(mut self, rest: &[Seg]) -> Self {
        self.0.extend_from_slice(rest);
        self
    }

    /// Parses a dotted path as displayed (`limits.memory`,
    /// `filesystem.ro[2]`, `env."A B"`); `None` when it is malformed.
    pub(crate) fn parse(text: &str) -> Option<FieldPath> {
        let mut segs = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']')?;
                segs.push(Seg::Index(r[..end].parse().ok()?));
                rest = &r[end + 1..];
            } else {
                let r = if segs.is_empty() {
                    rest
                } else {
                    rest.strip_prefix('.')?
                };
                if let Some(q) = r.strip_prefix('"') {
                    let end = q.find('"')?;
                    segs.push(Seg::Key(q[..end].to_owned()));
                    rest = &q[end + 1..];
                } else {
                    let end = r.find(['.', '[']).unwrap_or(r.len());
                    if end == 0 {
                        return None;
                    }
                    segs.push(Seg::Key(r[..end].to_owned()));
                    rest = &r[end..];
                }
            }
        }
        Some(FieldPath(segs))
    }

    /// `prefix` followed by `self`.
    pub(crate) fn within(mut self, prefix: &str) -> Self {
        self.0.insert(0, Seg::Key(prefix.to_owned()));
        self
    }
}

fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare_key(key) {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

struct Finder {
    offset: usize,
    path: Vec<Seg>,
    best: Option<(usize, Vec<Seg>)>,
}

impl Finder {
    fn consider(&mut self, span: Range<usize>) {
        if !contains(&span, self.offset) {
            return;
        }
        let len = span.len();
        // Smallest span wins; on a tie the deeper path (visited later) wins.
        if self.best.as_ref().is_none_or(|(best, _)| len <= *best) {
            self.best = Some((len, self.path.clone()));
        }
    }

    fn table(&mut self, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            self.path.push(Seg::Key(key.get_ref().to_string()));
            self.consider(key.span());
            self.value(value);
            self.path.pop();
        }
    }

    fn value(&mut self, value: &Spanned<DeValue<'_>>) {
        self.consider(value.span());
        match value.get_ref() {
            DeValue::Table(table) => self.table(table),
            DeValue::Array(array) => {
                for (i, item) in array.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.value(item);
                    self.path.pop();
                }
            }
            _ => {}
        }
    }
}

/// The field whose key or value is at `offset`, or the empty path.
pub(crate) fn path_at(src: &str, offset: usize) -> FieldPath {
    let (root, _errors) = DeTable::parse_recoverable(src);
    let mut finder = Finder {
        offset,
        path: Vec::new(),
        best: None,
    };
    finder.table(root.get_ref());
    FieldPath(finder.best.map(|(_, path)| path).unwrap_or_default())
}

/// Where `path` is written in `src`: the value's span if the field is
/// present, else the span of the nearest ancestor that is (for a table
/// defined by a header, the header).
pub(crate) fn span_of(src: &str, path: &FieldPath) -> Option<Range<usize>> {
    let (root, _errors) = DeTable::parse_recoverable(src);
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut current: Option<&Spanned<DeValue<'_>>> = None;
    let mut found: Option<Range<usize>> = None;
    for seg in &path.0 {
        let next = match (seg, table, current.map(Spanned::get_ref)) {
            (Seg::Key(key), Some(t), _) => t
                .iter()
                .find(|(k, _)| k.get_ref() == key)
                .map(|(k, v)| (Some(k.span()), v)),
            (Seg::Index(i), _, Some(DeValue::Array(array))) => array.get(*i).map(|v| (None, v)),
            _ => None,
        };
        let Some((key_span, value)) = next else {
            break;
        };
        let value_span = value.span();
        found = if value_span.is_empty() {
            key_span.or(found)
        } else {
            Some(value_span)
        };
        current = Some(value);
        table = match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "name = \"x\"\n\n[limits]\nmemory = \"12Q\"\n\n[filesystem]\nro = [\"/usr\", \"/proc\"]\n\n[[deny]]\nsyscall = \"a\"\n\n[[deny]]\nsyscall = \"b\"\n";

    fn at(needle: &str) -> String {
        path_at(SRC, SRC.find(needle).unwrap()).to_string()
    }

    #[test]
    fn paths_from_offsets() {
        assert_eq!(at("\"12Q\""), "limits.memory");
        assert_eq!(at("memory"), "limits.memory");
        assert_eq!(at("\"/proc\""), "filesystem.ro[1]");
        assert_eq!(at("\"b\""), "deny[1].syscall");
        assert_eq!(at("[limits]"), "limits");
        assert_eq!(at("\"x\""), "name");
    }

    #[test]
    fn offsets_from_paths() {
        let path = FieldPath::root().key("filesystem").key("ro").index(1);
        let span = span_of(SRC, &path).unwrap();
        assert_eq!(&SRC[span], "\"/proc\"");
        let path = FieldPath::root().key("limits").key("pids");
        let span = span_of(SRC, &path).unwrap();
        assert_eq!(&SRC[span], "[limits]");
        assert_eq!(span_of(SRC, &FieldPath::root().key("env")), None);
    }

    #[test]
    fn lines_and_columns() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nxé", 4), (2, 2));
        assert_eq!(line_col("é\nxé", 6), (2, 3));
        assert_eq!(line_col("é\nxé", 5), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn display_quotes_odd_keys() {
        let path = FieldPath::root().key("env").key("A B").index(0);
        assert_eq!(path.to_string(), "env.\"A B\"[0]");
    }
}
