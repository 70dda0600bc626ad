//! The evidence sections of a profile: `[canaries]` (fake credentials
//! planted in every sandbox) and `[audit]` (the hash-chained audit log).
//! Wire structs here are read by serde; `TryFrom` turns them into the
//! validated [`CanaryPolicy`] and [`AuditPolicy`].

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::locate::FieldPath;

/// Canary credentials planted in the sandbox.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Canaries")]
pub(crate) struct WireCanaries {
    /// Plant the built-in canaries: an AWS key pair (~/.aws/credentials and
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), an SSH key
    /// (~/.ssh/id_ed25519), a GitHub token (~/.config/gh/hosts.yml), a
    /// database URL (.env in an ephemeral workspace) and a kubeconfig token
    /// (~/.kube/config). Default: true.
    pub(crate) enabled: bool,
    /// Refuse a connection or DNS query that carries a canary value (raw,
    /// base64, hex or URL-encoded). Default: true.
    pub(crate) block_exfiltration: bool,
    /// Canaries of your own.
    pub(crate) extra: Vec<WireExtraCanary>,
    /// Appended to `extra` (the parent's, or none).
    #[serde(rename = "extra+", skip_serializing)]
    pub(crate) extra_append: Vec<WireExtraCanary>,
}

impl Default for WireCanaries {
    fn default() -> Self {
        Self {
            enabled: true,
            block_exfiltration: true,
            extra: Vec::new(),
            extra_append: Vec::new(),
        }
    }
}

/// A canary of the profile's own.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ExtraCanary")]
pub(crate) struct WireExtraCanary {
    /// Its name in events: 1 to 32 of [a-z0-9_-].
    pub(crate) name: String,
    /// An environment variable that carries the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) env: Option<String>,
    /// A file that carries it: "~/path" (under $HOME) or a path relative to
    /// the workspace (planted only in an ephemeral workspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<String>,
    /// Fixed start of the value, e.g. "sk_live_". Default: none.
    #[serde(default)]
    pub(crate) prefix: String,
    /// Random characters after the prefix, 16 to 128. Default: 32.
    #[serde(default = "default_extra_len")]
    pub(crate) length: u32,
    /// The file's contents, with `{value}` where the value goes. Default:
    /// the value and a newline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) template: Option<String>,
}

fn default_extra_len() -> u32 {
    32
}

/// A validated extra canary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtraCanary {
    /// Name (unique, [a-z0-9_-]{1,32}).
    pub name: String,
    /// Environment variable carrying it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// File carrying it: `~/rel` or workspace-relative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Fixed prefix.
    pub prefix: String,
    /// Random characters after the prefix.
    pub length: u32,
    /// File template with `{value}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// Canary settings of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CanaryPolicy {
    /// Plant the built-in canaries.
    pub enabled: bool,
    /// Refuse flows that carry a canary value.
    pub block_exfiltration: bool,
    /// The profile's own canaries.
    pub extra: Vec<ExtraCanary>,
}

fn valid_env_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn valid_rel(p: &str) -> bool {
    let path = std::path::Path::new(p);
    !p.is_empty()
        && !p.contains('\0')
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

impl TryFrom<WireCanaries> for CanaryPolicy {
    type Error = FieldError;

    fn try_from(wire: WireCanaries) -> Result<Self, FieldError> {
        let mut extra: Vec<ExtraCanary> = Vec::new();
        for (i, e) in wire.extra.into_iter().enumerate() {
            let at = |key: &str, message: String| {
                FieldError::new(FieldPath::root().key("extra").index(i).key(key), message)
            };
            let name_ok = !e.name.is_empty()
                && e.name.len() <= 32
                && e.name.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-'
                });
            if !name_ok {
                return Err(at(
                    "name",
                    format!("{:?}: 1 to 32 of a-z, 0-9, '_' and '-'", e.name),
                ));
            }
            if extra.iter().any(|x| x.name == e.name) {
                return Err(at("name", format!("{:?} is used twice", e.name)));
            }
            if e.env.is_none() && e.file.is_none() {
                return Err(at(
                    "env",
                    "an extra canary needs `env`, `file` or both".into(),
                ));
            }
            if let Some(env) = &e.env {
                if !valid_env_name(env) {
                    return Err(at("env", format!("{env:?} is not a valid variable name")));
                }
            }
            if let Some(file) = &e.file {
                let rel = file.strip_prefix("~/").unwrap_or(file);
                if !valid_rel(rel) {
                    return Err(at(
                        "file",
                        format!(
                            "{file:?}: use \"~/path\" or a path relative to the workspace, \
                             without '.' or '..'"
                        ),
                    ));
                }
            }
            if !(16..=128).contains(&e.length) {
                return Err(at(
                    "length",
                    format!("{} is out of range 16..=128", e.length),
                ));
            }
            if e.prefix.len() > 64 || !e.prefix.bytes().all(|c| c.is_ascii_graphic()) {
                return Err(at(
                    "prefix",
                    "at most 64 printable ASCII characters, no spaces".into(),
                ));
            }
            if let Some(t) = &e.template {
                if !t.contains("{value}") {
                    return Err(at("template", "must contain {value}".into()));
                }
                if t.len() > 16 * 1024 {
                    return Err(at("template", "longer than 16 KiB".into()));
                }
            }
            extra.push(ExtraCanary {
                name: e.name,
                env: e.env,
                file: e.file,
                prefix: e.prefix,
                length: e.length,
                template: e.template,
            });
        }
        Ok(Self {
            enabled: wire.enabled,
            block_exfiltration: wire.block_exfiltration,
            extra,
        })
    }
}

impl CanaryPolicy {
    pub(crate) fn to_wire(&self) -> WireCanaries {
        WireCanaries {
            enabled: self.enabled,
            block_exfiltration: self.block_exfiltration,
            extra: self
                .extra
                .iter()
                .map(|e| WireExtraCanary {
                    name: e.name.clone(),
                    env: e.env.clone(),
                    file: e.file.clone(),
                    prefix: e.prefix.clone(),
                    length: e.length,
                    template: e.template.clone(),
                })
                .collect(),
            extra_append: Vec::new(),
        }
    }
}

/// The audit log.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Audit")]
pub(crate) struct WireAudit {
    /// Write every run's audit log into this host directory, as
    /// `<sandbox id>.jsonl` (`airlock run --audit FILE` names one file
    /// instead). Default: no audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dir: Option<String>,
    /// The Ed25519 signing key for the head record. Default: the per-host
    /// key (/var/lib/airlock/audit.key for root, else
    /// ~/.local/state/airlock/audit.key), created on first use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
}

/// Validated audit settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditPolicy {
    /// Directory for per-run logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Signing key file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl TryFrom<WireAudit> for AuditPolicy {
    type Error = FieldError;

    fn try_from(wire: WireAudit) -> Result<Self, FieldError> {
        let abs = |key: &str, v: Option<String>| -> Result<Option<PathBuf>, FieldError> {
            match v {
                None => Ok(None),
                Some(s) if s.starts_with('/') && !s.contains('\0') => Ok(Some(PathBuf::from(s))),
                Some(s) => Err(FieldError::new(
                    FieldPath::root().key(key),
                    format!("{s:?} must be an absolute host path"),
                )),
            }
        };
        Ok(Self {
            dir: abs("dir", wire.dir)?,
            key: abs("key", wire.key)?,
        })
    }
}

impl AuditPolicy {
    pub(crate) fn to_wire(&self) -> WireAudit {
        WireAudit {
            dir: self.dir.as_ref().map(|p| p.display().to_string()),
            key: self.key.as_ref().map(|p| p.display().to_string()),
        }
    }
}
