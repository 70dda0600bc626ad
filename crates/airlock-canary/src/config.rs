//! What to mint: the built-in set on or off, plus extras from the profile,
//! and the one validation pass that runs before anything is minted.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::builtin;

/// Shortest random part of an extra canary's value.
pub const MIN_EXTRA_LENGTH: usize = 16;
/// Longest random part of an extra canary's value.
pub const MAX_EXTRA_LENGTH: usize = 256;
/// Random characters in an extra canary's value when `length` is not given.
pub const DEFAULT_EXTRA_LENGTH: usize = 32;
/// Most extra canaries one configuration may ask for.
pub const MAX_EXTRAS: usize = 32;

const MAX_NAME_LEN: usize = 32;
const MAX_PREFIX_LEN: usize = 64;
const MAX_TEMPLATE_LEN: usize = 16 * 1024;
const PLACEHOLDER: &str = "{value}";

/// Environment variables an extra canary may not set: the sandbox relies on
/// them, or a built-in canary owns them.
const RESERVED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "PWD",
    "LANG",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
];

/// What to mint for one sandbox run.
///
/// Built from the profile's `[canaries]` section by the caller (this crate
/// does not read profiles). [`mint`](crate::mint) validates it first; call
/// [`CanaryConfig::validate`] to check it earlier, before any side effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// Mint the built-in set: AWS key pair, SSH key, GitHub token, `.env`
    /// database URL and kubeconfig token. Default: true.
    #[serde(default = "default_true")]
    pub builtin: bool,
    /// Extra canaries, each with its own name, env variable and/or file.
    #[serde(default)]
    pub extras: Vec<ExtraCanary>,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            builtin: true,
            extras: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_length() -> usize {
    DEFAULT_EXTRA_LENGTH
}

/// One extra canary: `value = prefix + length random alphanumerics`,
/// planted as an environment variable, a file, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraCanary {
    /// The canary's id in hits and events: 1 to 32 of `a-z 0-9 - _`, not a
    /// built-in id.
    pub name: String,
    /// An environment variable to set to the value.
    #[serde(default)]
    pub env: Option<String>,
    /// A file to plant: `~/rel/path` under the sandbox home, or `rel/path`
    /// under the workspace. See [`Location::parse`].
    #[serde(default)]
    pub file: Option<String>,
    /// A fixed prefix, e.g. `sk_live_`: up to 64 printable ASCII
    /// characters, no spaces.
    #[serde(default)]
    pub prefix: String,
    /// Random alphanumeric characters after the prefix, 16 to 256.
    #[serde(default = "default_length")]
    pub length: usize,
    /// The file's contents, with `{value}` replaced by the value (every
    /// occurrence). Without a template the file holds the value and a newline.
    #[serde(default)]
    pub template: Option<String>,
}

/// Where a file is planted: under the sandbox's home directory or its
/// workspace, always by a relative, normalized path with no `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "root", content = "path", rename_all = "kebab-case")]
pub enum Location {
    /// Relative to `$HOME` inside the sandbox.
    Home(PathBuf),
    /// Relative to the workspace.
    Workspace(PathBuf),
}

impl Location {
    /// Reads `~/rel/path` as [`Location::Home`] and `rel/path` as
    /// [`Location::Workspace`]. Absolute paths, `..`, `~user`, a bare `~`
    /// and NUL bytes are refused; `.` components are dropped.
    pub fn parse(text: &str) -> Result<Self, LocationError> {
        if text.contains('\0') {
            return Err(LocationError::Nul);
        }
        let (home, rest) = match text.strip_prefix('~') {
            Some(rest) => match rest.strip_prefix('/') {
                Some(rest) => (true, rest),
                None if rest.is_empty() => return Err(LocationError::Empty),
                None => return Err(LocationError::OtherUser),
            },
            None => (false, text),
        };
        let mut rel = PathBuf::new();
        for component in Path::new(rest).components() {
            match component {
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                Component::ParentDir => return Err(LocationError::ParentDir),
                Component::RootDir | Component::Prefix(_) => return Err(LocationError::Absolute),
            }
        }
        if rel.as_os_str().is_empty() {
            return Err(LocationError::Empty);
        }
        Ok(if home {
            Self::Home(rel)
        } else {
            Self::Workspace(rel)
        })
    }

    /// The relative path, without its root.
    pub fn path(&self) -> &Path {
        match self {
            Self::Home(p) | Self::Workspace(p) => p,
        }
    }

    /// Whether the path is under the home directory.
    pub fn is_home(&self) -> bool {
        matches!(self, Self::Home(_))
    }

    pub(crate) fn home(rel: &str) -> Self {
        Self::Home(PathBuf::from(rel))
    }

    pub(crate) fn workspace(rel: &str) -> Self {
        Self::Workspace(PathBuf::from(rel))
    }

    /// Same root, and one path is the other or an ancestor of it: the two
    /// cannot both be planted.
    fn clashes_with(&self, other: &Self) -> bool {
        self.is_home() == other.is_home()
            && (self.path().starts_with(other.path()) || other.path().starts_with(self.path()))
    }
}

impl fmt::Display for Location {
    /// `~/.aws/credentials` or `./.env`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Home(p) => write!(f, "~/{}", p.display()),
            Self::Workspace(p) => write!(f, "./{}", p.display()),
        }
    }
}

/// A file path that [`Location::parse`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// Empty, `~` or only `.` components.
    #[error("empty path: name a file, as ~/rel/path (home) or rel/path (workspace)")]
    Empty,
    /// Starts at `/`.
    #[error("absolute paths are not allowed: use ~/rel/path (home) or rel/path (workspace)")]
    Absolute,
    /// Contains a `..` component.
    #[error("'..' is not allowed")]
    ParentDir,
    /// `~user/...`.
    #[error("only ~/ (the sandbox home) is allowed, not ~user")]
    OtherUser,
    /// Contains a NUL byte.
    #[error("the path contains a NUL byte")]
    Nul,
}

/// A [`CanaryConfig`] that does not validate. Displays as `FIELD: PROBLEM`,
/// e.g. `extra[1].env: invalid environment variable name "1X": must start
/// with a letter or underscore`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {kind}")]
pub struct ConfigError {
    field: String,
    kind: ConfigErrorKind,
}

impl ConfigError {
    fn new(field: impl Into<String>, kind: ConfigErrorKind) -> Self {
        Self {
            field: field.into(),
            kind,
        }
    }

    /// The dotted field, e.g. `extra[1].env` (the profile nests it under
    /// `canaries.`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }
}

/// What is wrong with a field of a [`CanaryConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigErrorKind {
    /// More than [`MAX_EXTRAS`] extras.
    #[error("{count} extra canaries, at most {max} are allowed")]
    TooMany {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A name with the wrong characters or length.
    #[error("invalid canary name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The same name twice, or a built-in id.
    #[error("canary name {name:?} is already used{}", if *.builtin { " by a built-in canary" } else { "" })]
    DuplicateName {
        /// The name as given.
        name: String,
        /// It is a built-in canary's id.
        builtin: bool,
    },
    /// Neither `env` nor `file`.
    #[error("nothing to plant: set env, file or both")]
    NothingToPlant,
    /// A bad environment variable name.
    #[error("invalid environment variable name {env:?}: {reason}")]
    InvalidEnv {
        /// The name as given.
        env: String,
        /// Why.
        reason: &'static str,
    },
    /// An environment variable already set by another canary.
    #[error("environment variable {env} is already set by canary {other:?}")]
    DuplicateEnv {
        /// The variable.
        env: String,
        /// The canary that sets it first.
        other: String,
    },
    /// A bad file path.
    #[error("invalid path {path:?}: {source}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why.
        source: LocationError,
    },
    /// A path equal to, inside or above another planted file.
    #[error("{path} clashes with {other} (planted for canary {canary:?})")]
    PathClash {
        /// This canary's file.
        path: Location,
        /// The other file.
        other: Location,
        /// The canary that plants the other file.
        canary: String,
    },
    /// A bad prefix.
    #[error("invalid prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
        /// Why.
        reason: &'static str,
    },
    /// `length` outside 16..=256.
    #[error("{length} is out of range: use {min} to {max} random characters")]
    Length {
        /// The length as given.
        length: usize,
        /// [`MIN_EXTRA_LENGTH`].
        min: usize,
        /// [`MAX_EXTRA_LENGTH`].
        max: usize,
    },
    /// A bad template.
    #[error("invalid template: {reason}")]
    InvalidTemplate {
        /// Why.
        reason: &'static str,
    },
}

/// An extra canary after validation.
#[derive(Debug, Clone)]
pub(crate) struct CheckedExtra {
    pub(crate) name: String,
    pub(crate) env: Option<String>,
    pub(crate) file: Option<Location>,
    pub(crate) prefix: String,
    pub(crate) length: usize,
    pub(crate) template: Option<String>,
}

impl CanaryConfig {
    /// Checks every extra: names unique and well formed, env names valid and
    /// unclaimed, paths relative without `..` and not clashing with another
    /// planted file, prefix and length in bounds, template with `{value}`.
    /// The first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map(drop)
    }

    pub(crate) fn check(&self) -> Result<Vec<CheckedExtra>, ConfigError> {
        if self.extras.len() > MAX_EXTRAS {
            return Err(ConfigError::new(
                "extra",
                ConfigErrorKind::TooMany {
                    count: self.extras.len(),
                    max: MAX_EXTRAS,
                },
            ));
        }
        let mut names = BTreeSet::new();
        // (env, owning canary) and (file, owning canary) claimed so far.
        let mut envs: Vec<(String, String)> = Vec::new();
        let mut files: Vec<(Location, String)> = Vec::new();
        if self.builtin {
            for &(env, id) in builtin::ENV_VARS {
                envs.push((env.to_owned(), id.to_owned()));
            }
            for (location, id) in builtin::files() {
                files.push((location, id.to_owned()));
            }
        }
        let mut checked = Vec::with_capacity(self.extras.len());
        for (index, extra) in self.extras.iter().enumerate() {
            let field = |name: &str| format!("extra[{index}].{name}");
            check_name(&extra.name).map_err(|e| ConfigError::new(field("name"), e))?;
            let builtin_id = builtin::IDS.contains(&extra.name.as_str());
            if builtin_id || !names.insert(extra.name.as_str()) {
                return Err(ConfigError::new(
                    field("name"),
                    ConfigErrorKind::DuplicateName {
                        name: extra.name.clone(),
                        builtin: builtin_id,
                    },
                ));
            }
            if extra.env.is_none() && extra.file.is_none() {
                return Err(ConfigError::new(
                    format!("extra[{index}]"),
                    ConfigErrorKind::NothingToPlant,
                ));
            }
            if let Some(env) = &extra.env {
                check_env(env).map_err(|e| ConfigError::new(field("env"), e))?;
                if let Some((_, other)) = envs.iter().find(|(e, _)| e == env) {
                    return Err(ConfigError::new(
                        field("env"),
                        ConfigErrorKind::DuplicateEnv {
                            env: env.clone(),
                            other: other.clone(),
                        },
                    ));
                }
                envs.push((env.clone(), extra.name.clone()));
            }
            let file = match &extra.file {
                Some(text) => {
                    let location = Location::parse(text).map_err(|source| {
                        ConfigError::new(
                            field("file"),
                            ConfigErrorKind::InvalidPath {
                                path: text.clone(),
                                source,
                            },
                        )
                    })?;
                    if let Some((other, canary)) =
                        files.iter().find(|(l, _)| l.clashes_with(&location))
                    {
                        return Err(ConfigError::new(
                            field("file"),
                            ConfigErrorKind::PathClash {
                                path: location,
                                other: other.clone(),
                                canary: canary.clone(),
                            },
                        ));
                    }
                    files.push((location.clone(), extra.name.clone()));
                    Some(location)
                }
                None => None,
            };
            check_prefix(&extra.prefix).map_err(|e| ConfigError::new(field("prefix"), e))?;
            if !(MIN_EXTRA_LENGTH..=MAX_EXTRA_LENGTH).contains(&extra.length) {
                return Err(ConfigError::new(
                    field("length"),
                    ConfigErrorKind::Length {
                        length: extra.length,
                        min: MIN_EXTRA_LENGTH,
                        max: MAX_EXTRA_LENGTH,
                    },
                ));
            }
            if let Some(template) = &extra.template {
                check_template(template, file.is_some())
                    .map_err(|e| ConfigError::new(field("template"), e))?;
            }
            checked.push(CheckedExtra {
                name: extra.name.clone(),
                env: extra.env.clone(),
                file,
                prefix: extra.prefix.clone(),
                length: extra.length,
                template: extra.template.clone(),
            });
        }
        Ok(checked)
    }
}

fn check_name(name: &str) -> Result<(), ConfigErrorKind> {
    let invalid = |reason| ConfigErrorKind::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid("must be 1 to 32 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(invalid("use only a-z, 0-9, '-' and '_'"));
    }
    Ok(())
}

fn check_env(env: &str) -> Result<(), ConfigErrorKind> {
    let invalid = |reason| ConfigErrorKind::InvalidEnv {
        env: env.to_owned(),
        reason,
    };
    let Some(&first) = env.as_bytes().first() else {
        return Err(invalid("empty"));
    };
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return Err(invalid("must start with a letter or underscore"));
    }
    if !env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(invalid("use only A-Z, a-z, 0-9 and '_'"));
    }
    if env.len() > 128 {
        return Err(invalid("longer than 128 characters"));
    }
    let upper = env.to_ascii_uppercase();
    if RESERVED_ENV.contains(&upper.as_str()) || upper.starts_with("AIRLOCK_") {
        return Err(invalid("reserved: the sandbox sets it"));
    }
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<(), ConfigErrorKind> {
    let invalid = |reason| ConfigErrorKind::InvalidPrefix {
        prefix: prefix.to_owned(),
        reason,
    };
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(invalid("longer than 64 characters"));
    }
    if !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("use printable ASCII characters, no spaces"));
    }
    Ok(())
}

fn check_template(template: &str, has_file: bool) -> Result<(), ConfigErrorKind> {
    let invalid = |reason| ConfigErrorKind::InvalidTemplate { reason };
    if !has_file {
        return Err(invalid("a template needs a file"));
    }
    if !template.contains(PLACEHOLDER) {
        return Err(invalid("it must contain {value}"));
    }
    if template.len() > MAX_TEMPLATE_LEN {
        return Err(invalid("longer than 16 KiB"));
    }
    Ok(())
}

/// The file contents of an extra: the template with every `{value}`
/// replaced, or the value and a newline.
pub(crate) fn render(template: Option<&str>, value: &str) -> String {
    match template {
        Some(t) => t.replace(PLACEHOLDER, value),
        None => format!("{value}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extra(name: &str) -> ExtraCanary {
        ExtraCanary {
            name: name.to_owned(),
            env: Some("STRIPE_KEY".to_owned()),
            file: None,
            prefix: "sk_live_".to_owned(),
            length: 32,
            template: None,
        }
    }

    fn config(extras: Vec<ExtraCanary>) -> CanaryConfig {
        CanaryConfig {
            builtin: true,
            extras,
        }
    }

    fn error(extras: Vec<ExtraCanary>) -> String {
        config(extras).validate().unwrap_err().to_string()
    }

    #[test]
    fn locations_parse() {
        assert_eq!(
            Location::parse("~/.npmrc").unwrap(),
            Location::home(".npmrc")
        );
        assert_eq!(
            Location::parse("./config/./secrets.json").unwrap(),
            Location::workspace("config/secrets.json")
        );
        assert_eq!(Location::parse("/etc/x"), Err(LocationError::Absolute));
        assert_eq!(Location::parse("~//etc/x"), Err(LocationError::Absolute));
        assert_eq!(Location::parse("a/../../x"), Err(LocationError::ParentDir));
        assert_eq!(Location::parse("~root/x"), Err(LocationError::OtherUser));
        assert_eq!(Location::parse("~"), Err(LocationError::Empty));
        assert_eq!(Location::parse("~/"), Err(LocationError::Empty));
        assert_eq!(Location::parse(""), Err(LocationError::Empty));
        assert_eq!(Location::parse("./."), Err(LocationError::Empty));
        assert_eq!(Location::parse("a\0b"), Err(LocationError::Nul));
        assert_eq!(
            Location::home(".aws/credentials").to_string(),
            "~/.aws/credentials"
        );
        assert_eq!(Location::workspace(".env").to_string(), "./.env");
    }

    #[test]
    fn a_good_config_validates() {
        let mut file_extra = extra("npm");
        file_extra.env = None;
        file_extra.file = Some("~/.npmrc".to_owned());
        file_extra.template = Some("//registry.npmjs.org/:_authToken={value}\n".to_owned());
        config(vec![extra("stripe"), file_extra])
            .validate()
            .unwrap();
        CanaryConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            error(vec![extra("Stripe")]),
            "extra[0].name: invalid canary name \"Stripe\": use only a-z, 0-9, '-' and '_'"
        );
        assert_eq!(
            error(vec![extra("")]),
            "extra[0].name: invalid canary name \"\": must be 1 to 32 characters"
        );
        let mut second = extra("stripe");
        second.env = Some("OTHER".to_owned());
        assert_eq!(
            error(vec![extra("stripe"), second]),
            "extra[1].name: canary name \"stripe\" is already used"
        );
        assert_eq!(
            error(vec![extra("aws-secret")]),
            "extra[0].name: canary name \"aws-secret\" is already used by a built-in canary"
        );
        let mut e = extra("a");
        e.env = Some("1X".to_owned());
        assert_eq!(
            error(vec![e]),
            "extra[0].env: invalid environment variable name \"1X\": must start with a letter or underscore"
        );
        let mut e = extra("a");
        e.env = Some("AWS_SECRET_ACCESS_KEY".to_owned());
        assert_eq!(
            error(vec![e]),
            "extra[0].env: environment variable AWS_SECRET_ACCESS_KEY is already set by canary \"aws-secret\""
        );
        let mut e = extra("a");
        e.env = Some("http_proxy".to_owned());
        assert!(error(vec![e]).starts_with("extra[0].env: invalid environment variable name"));
        let mut e = extra("a");
        e.env = None;
        assert_eq!(
            error(vec![e]),
            "extra[0]: nothing to plant: set env, file or both"
        );
        let mut e = extra("a");
        e.file = Some("../x".to_owned());
        assert_eq!(
            error(vec![e]),
            "extra[0].file: invalid path \"../x\": '..' is not allowed"
        );
        let mut e = extra("a");
        e.file = Some("~/.aws".to_owned());
        assert_eq!(
            error(vec![e]),
            "extra[0].file: ~/.aws clashes with ~/.aws/credentials (planted for canary \"aws-key-id\")"
        );
        let mut e = extra("a");
        e.length = 8;
        assert_eq!(
            error(vec![e]),
            "extra[0].length: 8 is out of range: use 16 to 256 random characters"
        );
        let mut e = extra("a");
        e.prefix = "sk live".to_owned();
        assert!(error(vec![e]).starts_with("extra[0].prefix: invalid prefix \"sk live\""));
        let mut e = extra("a");
        e.file = Some("token.txt".to_owned());
        e.template = Some("token: VALUE".to_owned());
        assert_eq!(
            error(vec![e]),
            "extra[0].template: invalid template: it must contain {value}"
        );
        let mut e = extra("a");
        e.template = Some("{value}".to_owned());
        assert_eq!(
            error(vec![e]),
            "extra[0].template: invalid template: a template needs a file"
        );
    }

    #[test]
    fn builtin_off_frees_builtin_env_and_files_but_not_ids() {
        let mut e = extra("a");
        e.env = Some("AWS_SECRET_ACCESS_KEY".to_owned());
        e.file = Some("~/.aws/credentials".to_owned());
        let cfg = CanaryConfig {
            builtin: false,
            extras: vec![e],
        };
        cfg.validate().unwrap();
        let cfg = CanaryConfig {
            builtin: false,
            extras: vec![extra("ssh-key")],
        };
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn too_many_extras() {
        let extras = (0..=MAX_EXTRAS)
            .map(|i| {
                let mut e = extra(&format!("x{i}"));
                e.env = Some(format!("X{i}"));
                e
            })
            .collect();
        assert_eq!(
            error(extras),
            "extra: 33 extra canaries, at most 32 are allowed"
        );
    }

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_fields() {
        let cfg: CanaryConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, CanaryConfig::default());
        let cfg: CanaryConfig =
            serde_json::from_str(r#"{"extras": [{"name": "npm", "file": "~/.npmrc"}]}"#).unwrap();
        assert_eq!(cfg.extras[0].length, DEFAULT_EXTRA_LENGTH);
        assert_eq!(cfg.extras[0].prefix, "");
        assert!(serde_json::from_str::<CanaryConfig>(r#"{"enabled": true}"#).is_err());
    }

    #[test]
    fn render_replaces_every_placeholder() {
        assert_eq!(render(Some("a={value} b={value}"), "V"), "a=V b=V");
        assert_eq!(render(None, "V"), "V\n");
    }
}
