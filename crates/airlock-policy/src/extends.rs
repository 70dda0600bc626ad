//! `extends`: a profile that starts from another and changes only what it
//! names.
//!
//! The rule (documented in docs/profiles.md):
//! - tables merge key by key, recursively (`[limits]` in a child changes
//!   only the limits it names; `[env]` adds or replaces variables);
//! - every other value replaces the parent's, lists included;
//! - `KEY+ = [...]` (quoted in TOML: `"ro+" = [...]`) appends to the
//!   parent's list instead, or to airlock's default for it when no profile
//!   of the chain sets it; only the lists in [`APPENDABLE`] take `+`, and a
//!   table may not set both `KEY` and `KEY+`;
//! - `name` is never inherited (it defaults to the file's name), and
//!   `extends` itself is not merged.
//!
//! A parent is a built-in name, or a file path relative to the directory of
//! the file that names it. A chain is at most [`MAX_CHAIN`] profiles long
//! and may not come back to a profile already in it. Each file is parsed and
//! type-checked on its own first, so syntax, type and unknown-key errors
//! name the file they are in; the merged result is then validated once,
//! and a validation error names the file (and line) that set the value.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::{Table, Value};

use crate::error::{FieldError, ProfileError};
use crate::locate::{FieldPath, Seg};
use crate::wire::{WireProfile, APPENDABLE};

/// Most profiles in one `extends` chain, the extending file included.
pub(crate) const MAX_CHAIN: usize = 8;

/// What [`crate::Origins::of`] reports for a value no profile set.
pub const DEFAULT_ORIGIN: &str = "default";

/// One profile of a chain.
#[derive(Debug, Clone)]
struct Source {
    /// As shown to the user: a file path, or `builtin:NAME`.
    origin: String,
    /// Identity for cycle detection: the canonical path, or `builtin:NAME`.
    id: String,
    text: Arc<str>,
}

/// Where each value of a resolved profile came from: which file of the
/// `extends` chain set it, or airlock's default.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// The chain, the extending profile first.
    sources: Vec<Source>,
    /// Per merged field (leaves, list elements and tables): the profiles
    /// that contributed, in order; `None` is airlock's default (the start
    /// of an appended list no profile set).
    keys: BTreeMap<FieldPath, Vec<Option<usize>>>,
    /// Per merged field: the profile that wrote it and its path there
    /// (`filesystem.ro[3]` may be `filesystem."ro+"[0]` of a child).
    at: BTreeMap<FieldPath, (usize, FieldPath)>,
}

impl Origins {
    /// The chain of profiles, the one asked for first, then its parent, and
    /// so on: file paths as resolved, or `builtin:NAME`.
    pub fn chain(&self) -> Vec<&str> {
        self.sources.iter().map(|s| s.origin.as_str()).collect()
    }

    /// Where the value of `field` (a dotted path such as `limits.memory` or
    /// `filesystem.ro`) came from: the profiles that set it or appended to
    /// it, in order, and [`DEFAULT_ORIGIN`] for airlock's default. A field
    /// that no profile names is `["default"]`.
    pub fn of(&self, field: &str) -> Vec<&str> {
        let list = FieldPath::parse(field).and_then(|path| self.keys.get(&path));
        match list {
            Some(list) => list
                .iter()
                .map(|i| i.map_or(DEFAULT_ORIGIN, |i| self.sources[i].origin.as_str()))
                .collect(),
            None => vec![DEFAULT_ORIGIN],
        }
    }

    /// Places a validation error of the merged profile in the file that set
    /// the field (the longest prefix of its path that some file wrote), or
    /// in the extending file when none did.
    pub(crate) fn error(&self, err: FieldError) -> ProfileError {
        let segs = err.path.segs().to_vec();
        for len in (1..=segs.len()).rev() {
            let prefix = FieldPath::root().join(&segs[..len]);
            if let Some((file, local)) = self.at.get(&prefix) {
                let source = &self.sources[*file];
                let path = local.clone().join(&segs[len..]);
                return ProfileError::from_field(
                    &source.origin,
                    &source.text,
                    FieldError::new(path, err.message),
                );
            }
        }
        let leaf = &self.sources[0];
        ProfileError::from_field(&leaf.origin, &leaf.text, err)
    }

    fn contribute(&mut self, path: &FieldPath, file: Option<usize>) {
        let list = self.keys.entry(path.clone()).or_default();
        if !list.contains(&file) {
            list.push(file);
        }
    }

    /// Records `value` (and everything in it) as written by `file` at
    /// `local`.
    fn record(&mut self, path: FieldPath, local: FieldPath, value: &Value, file: usize) {
        match value {
            Value::Table(t) => {
                for (k, v) in t {
                    self.record(path.clone().key(k), local.clone().key(k), v, file);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    self.record(path.clone().index(i), local.clone().index(i), v, file);
                }
            }
            _ => {}
        }
        self.keys.insert(path.clone(), vec![Some(file)]);
        self.at.insert(path, (file, local));
    }

    /// Forgets what was recorded at and below `path` (it is replaced).
    fn forget(&mut self, path: &FieldPath) {
        self.keys.retain(|k, _| !k.starts_with(path));
        self.at.retain(|k, _| !k.starts_with(path));
    }
}

/// A chain resolved into one wire profile.
pub(crate) struct Resolved {
    pub(crate) wire: WireProfile,
    pub(crate) origins: Origins,
}

/// The list `KEY+` in table `table` appends to, with its default.
fn appendable(path: &FieldPath, key: &str) -> Option<&'static [&'static str]> {
    let [Seg::Key(table)] = path.segs() else {
        return None;
    };
    APPENDABLE
        .iter()
        .find(|(t, k, _)| t == table && *k == key)
        .map(|(_, _, default)| *default)
}

fn merge_table(
    base: &mut Table,
    layer: &Table,
    path: &FieldPath,
    local: &FieldPath,
    file: usize,
    origins: &mut Origins,
    skip: &[&str],
) {
    for (k, v) in layer {
        if path.is_root() && skip.contains(&k.as_str()) {
            continue;
        }
        let here = local.clone().key(k);
        if let Some((key, default)) = k
            .strip_suffix('+')
            .and_then(|key| appendable(path, key).map(|d| (key, d)))
        {
            let Value::Array(items) = v else { continue };
            let target = path.clone().key(key);
            let list = base.entry(key).or_insert_with(|| {
                origins.contribute(&target, None);
                Value::Array(default.iter().map(|s| Value::from(*s)).collect())
            });
            if !list.is_array() {
                *list = Value::Array(Vec::new());
            }
            let Value::Array(list) = list else { continue };
            for (j, item) in items.iter().enumerate() {
                let at = target.clone().index(list.len());
                origins.record(at, here.clone().index(j), item, file);
                list.push(item.clone());
            }
            origins.contribute(&target, Some(file));
            continue;
        }
        let target = path.clone().key(k);
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(c)) => {
                origins.contribute(&target, Some(file));
                merge_table(b, c, &target, &here, file, origins, &[]);
            }
            (None, Value::Table(c)) => {
                origins.contribute(&target, Some(file));
                let mut b = Table::new();
                merge_table(&mut b, c, &target, &here, file, origins, &[]);
                base.insert(k.clone(), Value::Table(b));
            }
            _ => {
                origins.forget(&target);
                origins.record(target, here, v, file);
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Removes `.` components and folds `dir/..` (`examples/./base.toml` →
/// `examples/base.toml`), for display; the file is read by this path, and
/// cycles are detected on canonical paths.
fn tidy(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn identity(origin: &str) -> String {
    if origin.starts_with("builtin:") {
        return origin.to_owned();
    }
    std::fs::canonicalize(origin).map_or_else(|_| origin.to_owned(), |p| p.display().to_string())
}

/// Each file on its own: syntax, types and unknown keys, then `KEY` with
/// `KEY+`. Returns its table and what it extends.
fn check_one(source: &Source) -> Result<(Table, Option<String>), ProfileError> {
    let text = &source.text;
    let wire: WireProfile =
        toml::from_str(text).map_err(|e| ProfileError::from_toml(&source.origin, text, &e))?;
    let table: Table =
        toml::from_str(text).map_err(|e| ProfileError::from_toml(&source.origin, text, &e))?;
    for (t, key, _) in APPENDABLE {
        let Some(Value::Table(section)) = table.get(*t) else {
            continue;
        };
        let plus = format!("{key}+");
        if section.contains_key(*key) && section.contains_key(&plus) {
            return Err(ProfileError::from_field(
                &source.origin,
                text,
                FieldError::new(
                    FieldPath::root().key(t).key(&plus),
                    format!(
                        "sets both {key} and {plus}: {key} replaces the parent's list, {plus} appends to it; use one"
                    ),
                ),
            ));
        }
    }
    Ok((table, wire.extends))
}

/// The parent `target` named by `child`'s `extends`, read.
fn parent(
    child: &Source,
    target: &str,
    builtin: fn(&str) -> Option<&'static str>,
    read: fn(&Path) -> Result<String, crate::error::LoadError>,
) -> Result<Source, String> {
    let is_name = !(target.contains('/') || target.ends_with(".toml"));
    if is_name {
        let text = builtin(target).ok_or_else(|| {
            format!(
                "unknown built-in profile {target:?}; built-in profiles are {}, or give a path to a .toml file (relative to this file)",
                crate::builtin_names().join(", ")
            )
        })?;
        let origin = format!("builtin:{target}");
        return Ok(Source {
            id: origin.clone(),
            origin,
            text: text.into(),
        });
    }
    if child.origin.starts_with("builtin:") {
        return Err(format!(
            "a built-in profile can only extend another built-in profile, not {target:?}"
        ));
    }
    let dir = Path::new(&child.origin).parent().unwrap_or(Path::new(""));
    let path = tidy(&dir.join(target));
    let text = read(&path).map_err(|e| e.to_string())?;
    let origin = path.display().to_string();
    Ok(Source {
        id: identity(&origin),
        origin,
        text: text.into(),
    })
}

/// Follows `extends` from `text` (read from `origin`) and merges the chain.
pub(crate) fn resolve(
    text: &str,
    origin: &str,
    builtin: fn(&str) -> Option<&'static str>,
    read: fn(&Path) -> Result<String, crate::error::LoadError>,
) -> Result<Resolved, ProfileError> {
    let mut current = Source {
        origin: origin.to_owned(),
        id: identity(origin),
        text: text.into(),
    };
    let mut sources: Vec<Source> = Vec::new();
    let mut tables: Vec<Table> = Vec::new();
    loop {
        let (table, extends) = check_one(&current)?;
        sources.push(current);
        tables.push(table);
        let Some(target) = extends else { break };
        let child = sources.last().expect("just pushed");
        let at_extends = |message: String| {
            ProfileError::from_field(
                &child.origin,
                &child.text,
                FieldError::new(FieldPath::root().key("extends"), message),
            )
        };
        let next = parent(child, &target, builtin, read).map_err(at_extends)?;
        let chain = || {
            let mut names: Vec<&str> = sources.iter().map(|s| s.origin.as_str()).collect();
            names.push(&next.origin);
            names.join(" -> ")
        };
        if sources.iter().any(|s| s.id == next.id) {
            return Err(at_extends(format!("extends cycle: {}", chain())));
        }
        if sources.len() >= MAX_CHAIN {
            return Err(at_extends(format!(
                "extends chain longer than {MAX_CHAIN} profiles: {}",
                chain()
            )));
        }
        current = next;
    }
    let mut origins = Origins {
        sources,
        ..Origins::default()
    };
    let mut merged = Table::new();
    for (i, table) in tables.iter().enumerate().rev() {
        let skip: &[&str] = if i == 0 {
            &["extends"]
        } else {
            &["extends", "name"]
        };
        merge_table(
            &mut merged,
            table,
            &FieldPath::root(),
            &FieldPath::root(),
            i,
            &mut origins,
            skip,
        );
    }
    let wire = WireProfile::deserialize(Value::Table(merged)).map_err(|e| {
        let leaf = &origins.sources[0];
        ProfileError::from_field(
            &leaf.origin,
            &leaf.text,
            FieldError::new(
                FieldPath::root(),
                format!("the merged profile is invalid: {e}"),
            ),
        )
    })?;
    Ok(Resolved { wire, origins })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{ByteSize, LoadError, Profile};

    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("airlock-extends-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("sub")).unwrap();
            Dir(d)
        }
        fn put(&self, name: &str, text: &str) -> String {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        }
        fn path(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn invalid(err: LoadError) -> crate::ProfileError {
        match err {
            LoadError::Invalid(e) => e,
            other => panic!("expected a located error, got {other}"),
        }
    }

    #[test]
    fn python_extends_default() {
        let d = Profile::builtin("default").unwrap();
        let (p, origins) = Profile::load_with_origins("python").unwrap();
        assert_eq!(p.name, "python");
        assert_eq!(p.limits.memory, Some(ByteSize::gib(2)));
        assert_eq!(p.limits.pids, d.limits.pids);
        assert_eq!(p.filesystem.tmp_size, ByteSize::mib(256));
        assert_eq!(p.filesystem.ro, d.filesystem.ro);
        let mut want = d.filesystem.ro_optional.clone();
        want.push(crate::AbsPath::known("/etc/mime.types"));
        want.push(crate::AbsPath::known("/etc/python3"));
        assert_eq!(p.filesystem.ro_optional, want);
        assert_eq!(p.env["PYTHONUNBUFFERED"], "1");
        assert_eq!(origins.chain(), ["builtin:python", "builtin:default"]);
        assert_eq!(origins.of("limits.memory"), ["builtin:python"]);
        assert_eq!(origins.of("limits.pids"), ["builtin:default"]);
        assert_eq!(
            origins.of("filesystem.ro_optional"),
            ["builtin:default", "builtin:python"]
        );
        assert_eq!(origins.of("security.uid"), ["default"]);
    }

    #[test]
    fn merge_rules() {
        let dir = Dir::new("merge");
        dir.put(
            "base.toml",
            "name = \"base\"\ndescription = \"the base\"\n\n[filesystem]\n\"ro+\" = [\"/opt/a\"]\ntmp_size = \"32M\"\n\n[limits]\nmemory = \"512M\"\npids = 64\n\n[network]\nmode = \"allowlist\"\nallow = [\"a.test\", \"b.test\"]\n\n[env]\nA = \"1\"\nB = \"1\"\n",
        );
        let child = dir.put(
            "sub/child.toml",
            "extends = \"../base.toml\"\n\n[filesystem]\n\"ro+\" = [\"/opt/b\"]\n\n[limits]\npids = 32\n\n[network]\nallow = [\"c.test\"]\n\"deny+\" = [\"x.test\"]\n\n[env]\nB = \"2\"\nC = \"3\"\n",
        );
        let (p, origins) = Profile::load_with_origins(&child).unwrap();
        // name is not inherited; description is.
        assert_eq!(p.name, "child");
        assert_eq!(p.description, "the base");
        // Tables merge key by key.
        assert_eq!(p.limits.memory, Some(ByteSize::mib(512)));
        assert_eq!(p.limits.pids, Some(32));
        assert_eq!(p.filesystem.tmp_size, ByteSize::mib(32));
        let env: Vec<_> = p.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(env, ["A=1", "B=2", "C=3"]);
        // Lists replace...
        let allow: Vec<_> = p.network.allow.iter().map(|h| h.to_string()).collect();
        assert_eq!(allow, ["c.test"]);
        // ...unless appended to: the defaults, then the base's, then the child's.
        let ro: Vec<_> = p.filesystem.ro.iter().map(|a| a.as_str()).collect();
        assert_eq!(ro, ["/usr", "/etc/ld.so.cache", "/opt/a", "/opt/b"]);
        assert_eq!(p.network.deny.len(), 1);

        let base = dir.path("base.toml");
        assert_eq!(origins.chain(), [child.as_str(), base.as_str()]);
        assert_eq!(origins.of("limits.pids"), [child.as_str()]);
        assert_eq!(origins.of("limits.memory"), [base.as_str()]);
        assert_eq!(origins.of("limits.nofile"), ["default"]);
        assert_eq!(origins.of("env.A"), [base.as_str()]);
        assert_eq!(origins.of("env.B"), [child.as_str()]);
        assert_eq!(
            origins.of("filesystem.ro"),
            ["default", base.as_str(), child.as_str()]
        );
        assert_eq!(origins.of("network.allow"), [child.as_str()]);

        // The annotated rendering says so, and still reads back.
        let shown = p.to_toml_string_with_origins(&origins).unwrap();
        assert!(
            shown.contains(&format!("pids = 32  # from {child}")),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("memory = \"512M\"  # from {base}")),
            "{shown}"
        );
        assert!(shown.contains("nofile = 1024  # from default"), "{shown}");
        assert!(
            shown.contains(&format!("# from default + {base} + {child}")),
            "{shown}"
        );
        assert!(shown.contains(&format!("# Resolved from {child} -> {base}")));
        let back = Profile::from_toml(&shown, "shown.toml").unwrap();
        assert_eq!(back.filesystem, p.filesystem);
        assert_eq!(back.limits, p.limits);
        assert_eq!(back.env, p.env);
    }

    #[test]
    fn relative_parent_is_relative_to_the_extending_file() {
        let dir = Dir::new("relative");
        dir.put("sub/base.toml", "[limits]\npids = 7\n");
        let child = dir.put("sub/child.toml", "extends = \"./base.toml\"\n");
        let (p, origins) = Profile::load_with_origins(&child).unwrap();
        assert_eq!(p.limits.pids, Some(7));
        // `./` is tidied away in what is shown.
        assert_eq!(origins.chain()[1], dir.path("sub/base.toml"));
        // And a file may extend a built-in.
        let f = dir.put("py.toml", "extends = \"python\"\n[limits]\npids = 9\n");
        let p = Profile::load(&f).unwrap();
        assert_eq!(p.limits.memory, Some(ByteSize::gib(2)));
        assert_eq!(p.env["PYTHONUNBUFFERED"], "1");
        assert_eq!(p.name, "py");
    }

    #[test]
    fn append_without_a_parent_starts_from_the_default() {
        let p = Profile::from_toml(
            "[filesystem]\n\"ro_optional+\" = [\"/opt/tools\"]\n[network]\nmode = \"allowlist\"\n\"allow+\" = [\"a.test\"]\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(
            p.filesystem.ro_optional.last().unwrap().as_str(),
            "/opt/tools"
        );
        assert_eq!(p.filesystem.ro_optional.len(), 13);
        assert_eq!(p.network.allow.len(), 1);
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let dir = Dir::new("errors");
        // A validation error in the parent names the parent.
        let base = dir.put("base.toml", "# base\n[limits]\npids = 0\n");
        let child = dir.put("child.toml", "extends = \"base.toml\"\n");
        let e = invalid(Profile::load(&child).unwrap_err());
        assert_eq!(
            (e.origin(), e.line(), e.field()),
            (base.as_str(), 3, "limits.pids")
        );
        // A type error in the parent too (each file is parsed on its own).
        std::fs::write(&base, "\n[limits]\nmemory = \"12Q\"\n").unwrap();
        let e = invalid(Profile::load(&child).unwrap_err());
        assert_eq!(
            (e.origin(), e.line(), e.field()),
            (base.as_str(), 3, "limits.memory")
        );
        // An appended element that is invalid names the child's `+` key.
        std::fs::write(&base, "[limits]\npids = 3\n").unwrap();
        std::fs::write(
            &child,
            "extends = \"base.toml\"\n[filesystem]\n\"ro+\" = [\"/opt\", \"/proc/sys\"]\n",
        )
        .unwrap();
        let e = invalid(Profile::load(&child).unwrap_err());
        assert_eq!(
            (e.origin(), e.line(), e.field()),
            (child.as_str(), 3, "filesystem.\"ro+\"[1]"),
            "{e}"
        );
        assert!(e.message().contains("synthesizes /proc"), "{e}");
        // KEY and KEY+ together.
        std::fs::write(
            &child,
            "[network]\nmode = \"allowlist\"\nallow = [\"a.test\"]\n\"allow+\" = [\"b.test\"]\n",
        )
        .unwrap();
        let e = invalid(Profile::load(&child).unwrap_err());
        assert_eq!((e.line(), e.field()), (4, "network.\"allow+\""), "{e}");
        // `+` on a key that is not an appendable list.
        std::fs::write(&child, "[limits]\n\"pids+\" = [1]\n").unwrap();
        let e = invalid(Profile::load(&child).unwrap_err());
        assert!(e.message().contains("unknown field"), "{e}");
        assert_eq!(e.line(), 2);
        // `ro+` written bare: TOML refuses it; the message says to quote it.
        std::fs::write(&child, "[filesystem]\nro+ = [\"/opt\"]\n").unwrap();
        let e = invalid(Profile::load(&child).unwrap_err());
        assert!(e.message().contains("\"ro+\" = [...]"), "{e}");
        assert_eq!(e.line(), 2, "{e}");
    }

    #[test]
    fn missing_parents() {
        let dir = Dir::new("missing");
        let child = dir.put("child.toml", "name = \"c\"\nextends = \"./nope.toml\"\n");
        let e = invalid(Profile::load(&child).unwrap_err());
        assert_eq!(
            (e.origin(), e.line(), e.field()),
            (child.as_str(), 2, "extends")
        );
        assert!(
            e.message().contains(&dir.path("nope.toml")) && e.message().contains("not found"),
            "{e}"
        );
        std::fs::write(&child, "extends = \"pyhton\"\n").unwrap();
        let e = invalid(Profile::load(&child).unwrap_err());
        assert!(
            e.message().contains("unknown built-in profile \"pyhton\""),
            "{e}"
        );
        std::fs::write(&child, "extends = 3\n").unwrap();
        let e = invalid(Profile::load(&child).unwrap_err());
        assert_eq!(e.field(), "extends", "{e}");
    }

    #[test]
    fn cycles_and_depth() {
        let dir = Dir::new("cycles");
        let a = dir.put("a.toml", "extends = \"b.toml\"\n");
        let b = dir.put("b.toml", "\nextends = \"./a.toml\"\n");
        let e = invalid(Profile::load(&a).unwrap_err());
        assert_eq!(
            (e.origin(), e.line(), e.field()),
            (b.as_str(), 2, "extends")
        );
        assert!(
            e.message()
                .contains(&format!("extends cycle: {a} -> {b} -> {a}")),
            "{e}"
        );
        let own = dir.put("self.toml", "extends = \"self.toml\"\n");
        let e = invalid(Profile::load(&own).unwrap_err());
        assert!(e.message().contains("extends cycle"), "{e}");

        for i in 0..9 {
            dir.put(
                &format!("c{i}.toml"),
                &format!("extends = \"c{}.toml\"\n", i + 1),
            );
        }
        dir.put("c9.toml", "");
        let e = invalid(Profile::load(&dir.path("c1.toml")).unwrap_err());
        assert!(
            e.message().contains("longer than 8 profiles") && e.message().contains("c9.toml"),
            "{e}"
        );
        assert_eq!(e.origin(), dir.path("c8.toml"));
        // Eight is fine.
        Profile::load(&dir.path("c2.toml")).unwrap();
    }

    #[test]
    fn builtins_extend_only_builtins() {
        fn fake(name: &str) -> Option<&'static str> {
            (name == "evil").then_some("extends = \"./x.toml\"\n")
        }
        let e = super::resolve(
            "extends = \"evil\"\n",
            "builtin:mine",
            fake,
            crate::profile::read_profile_file,
        )
        .err()
        .unwrap();
        assert_eq!(e.origin(), "builtin:evil");
        assert!(e.message().contains("only extend another built-in"), "{e}");
        assert!(!Path::new("x.toml").exists());
    }
}
