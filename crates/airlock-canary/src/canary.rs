//! Minted canaries and what to plant: the [`CanarySet`] of one run.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

use crate::builtin;
use crate::config::{render, CanaryConfig, ConfigError, Location};
use crate::rng::{Rng, ALNUM};
use crate::scan::Scanner;

/// What a canary imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanaryKind {
    /// `AKIA…` access key id (`~/.aws/credentials`, `AWS_ACCESS_KEY_ID`).
    AwsAccessKeyId,
    /// 40-character secret access key (`~/.aws/credentials`,
    /// `AWS_SECRET_ACCESS_KEY`).
    AwsSecretAccessKey,
    /// OpenSSH ed25519 private key (`~/.ssh/id_ed25519`).
    SshPrivateKey,
    /// `ghp_…` personal access token (`~/.config/gh/hosts.yml`).
    GithubToken,
    /// The password in `DATABASE_URL` (workspace `.env`).
    DatabasePassword,
    /// Service account token (JWT) in `~/.kube/config`.
    KubernetesToken,
    /// An extra canary from the configuration.
    Extra,
}

impl CanaryKind {
    /// The kebab-case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwsAccessKeyId => "aws-access-key-id",
            Self::AwsSecretAccessKey => "aws-secret-access-key",
            Self::SshPrivateKey => "ssh-private-key",
            Self::GithubToken => "github-token",
            Self::DatabasePassword => "database-password",
            Self::KubernetesToken => "kubernetes-token",
            Self::Extra => "extra",
        }
    }
}

impl fmt::Display for CanaryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One minted fake credential.
///
/// Only [`mint`] and [`mint_with_seed`] make canaries, so every needle is
/// long and random enough (at least 16 characters, at least 12 of them
/// random) that benign data does not contain it by chance.
///
/// It serializes (value and needles included) so that the supervisor can
/// hand the run's canaries to the egress gateway process; treat serialized
/// canaries as secrets of the run. Deserializing checks that there is a
/// needle and that every needle is part of the value and at least
/// [`MIN_NEEDLE_LEN`] bytes long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CanaryWire")]
pub struct Canary {
    id: String,
    kind: CanaryKind,
    label: String,
    value: String,
    needles: Vec<String>,
}

impl Canary {
    pub(crate) fn new(
        id: impl Into<String>,
        kind: CanaryKind,
        label: impl Into<String>,
        value: impl Into<String>,
        needles: Vec<String>,
    ) -> Self {
        let canary = Self {
            id: id.into(),
            kind,
            label: label.into(),
            value: value.into(),
            needles,
        };
        debug_assert!(!canary.needles.is_empty());
        debug_assert!(canary.needles.iter().all(|n| n.len() >= MIN_NEEDLE_LEN));
        canary
    }

    /// Short and unique within the set: `aws-key-id`, `aws-secret`,
    /// `ssh-key`, `github-token`, `db-password`, `kube-token`, or an extra's
    /// name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What it imitates.
    pub fn kind(&self) -> CanaryKind {
        self.kind
    }

    /// A human description, e.g. "AWS secret access key".
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The whole secret as planted (for the SSH key, the PEM text).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The substrings the [`Scanner`] looks for. Each is a part of the value
    /// made of random characters (the whole value for short tokens).
    pub fn needles(&self) -> &[String] {
        &self.needles
    }
}

/// A canary as read, before the needle checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryWire {
    id: String,
    kind: CanaryKind,
    label: String,
    value: String,
    needles: Vec<String>,
}

impl TryFrom<CanaryWire> for Canary {
    type Error = String;

    fn try_from(w: CanaryWire) -> Result<Self, String> {
        if w.id.is_empty() {
            return Err("canary id: empty".to_owned());
        }
        if w.needles.is_empty() {
            return Err(format!("canary {}: no needles", w.id));
        }
        if let Some(n) = w
            .needles
            .iter()
            .find(|n| n.len() < MIN_NEEDLE_LEN || !w.value.contains(n.as_str()))
        {
            return Err(format!(
                "canary {}: needle of {} bytes: every needle must be at least \
                 {MIN_NEEDLE_LEN} bytes and part of the value",
                w.id,
                n.len()
            ));
        }
        Ok(Self {
            id: w.id,
            kind: w.kind,
            label: w.label,
            value: w.value,
            needles: w.needles,
        })
    }
}

/// Shortest needle any canary has.
pub const MIN_NEEDLE_LEN: usize = 16;

/// A file to write into the sandbox before the task starts.
///
/// The planter creates missing parent directories (0700), never follows
/// symlinks and never overwrites an existing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantedFile {
    /// Where, relative to the sandbox home or the workspace.
    pub location: Location,
    /// The bytes to write.
    pub contents: Vec<u8>,
    /// Permission bits (0600 for secrets).
    pub mode: u32,
    /// The canaries in it; empty for files planted only for realism (such
    /// as `~/.ssh/id_ed25519.pub`), which need no watching.
    pub canary_ids: Vec<String>,
}

/// Everything minted for one run: the canaries, the files that hold them and
/// the environment variables to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanarySet {
    /// Every canary, built-ins first, then extras in configuration order.
    pub canaries: Vec<Canary>,
    /// Files to plant.
    pub files: Vec<PlantedFile>,
    /// Environment variables for the task, `(name, value)`.
    pub env: Vec<(String, String)>,
}

impl CanarySet {
    /// The canary with this id.
    pub fn get(&self, id: &str) -> Option<&Canary> {
        self.canaries.iter().find(|c| c.id == id)
    }

    /// A scanner for these canaries.
    pub fn scanner(&self) -> Scanner {
        Scanner::new(&self.canaries)
    }

    pub(crate) fn add(&mut self, canary: Canary) {
        debug_assert!(self.get(&canary.id).is_none());
        self.canaries.push(canary);
    }

    pub(crate) fn plant(
        &mut self,
        location: Location,
        contents: impl Into<Vec<u8>>,
        mode: u32,
        canary_ids: &[&str],
    ) {
        self.files.push(PlantedFile {
            location,
            contents: contents.into(),
            mode,
            canary_ids: canary_ids.iter().map(|&s| s.to_owned()).collect(),
        });
    }

    pub(crate) fn set_env(&mut self, name: &str, value: &str) {
        self.env.push((name.to_owned(), value.to_owned()));
    }
}

/// Minting failed.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// The configuration does not validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// getrandom(2) failed.
    #[error("getrandom: cannot read randomness to mint canaries: {0}")]
    Random(#[source] io::Error),
}

/// Mints fresh canaries for one run, keyed from getrandom(2): every call
/// gives values never seen before.
pub fn mint(config: &CanaryConfig) -> Result<CanarySet, CanaryError> {
    let extras = config.check()?;
    let mut rng = Rng::from_os().map_err(CanaryError::Random)?;
    Ok(build(config.builtin, &extras, &mut rng))
}

/// Mints canaries deterministically from `seed`: the same seed and
/// configuration always give the same set.
///
/// **For tests and reproducible evaluations only.** Anyone who knows the seed
/// knows every value, and two runs with one seed share their canaries, so a
/// hit could not be told apart between them. Real runs use [`mint`].
pub fn mint_with_seed(config: &CanaryConfig, seed: u64) -> Result<CanarySet, ConfigError> {
    let extras = config.check()?;
    Ok(build(config.builtin, &extras, &mut Rng::from_seed(seed)))
}

fn build(builtin: bool, extras: &[crate::config::CheckedExtra], rng: &mut Rng) -> CanarySet {
    let mut set = CanarySet {
        canaries: Vec::new(),
        files: Vec::new(),
        env: Vec::new(),
    };
    if builtin {
        builtin::mint_all(rng, &mut set);
    }
    for extra in extras {
        let value = format!("{}{}", extra.prefix, rng.string(ALNUM, extra.length));
        set.add(Canary::new(
            extra.name.as_str(),
            CanaryKind::Extra,
            format!("extra canary {}", extra.name),
            value.as_str(),
            vec![value.clone()],
        ));
        if let Some(env) = &extra.env {
            set.set_env(env, &value);
        }
        if let Some(location) = &extra.file {
            let contents = render(extra.template.as_deref(), &value);
            set.plant(location.clone(), contents, 0o600, &[extra.name.as_str()]);
        }
    }
    set
}
