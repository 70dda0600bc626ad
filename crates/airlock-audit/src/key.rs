//! The signing key: generation, files, the default location.
//!
//! A secret key file holds one line, `airlock-audit-ed25519-secret <64 hex>`
//! (the 32-byte Ed25519 seed), mode 0600. Its public key sits beside it in
//! `<file>.pub`: `airlock-audit-ed25519-public <64 hex>`.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::hex;

const SECRET_TAG: &str = "airlock-audit-ed25519-secret";
const PUBLIC_TAG: &str = "airlock-audit-ed25519-public";

/// Errors of key handling.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `generate_key` found a file in the way.
    #[error("audit key {path} already exists; refusing to overwrite it")]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// Creating a key file or directory failed.
    #[error("creating {path}: {source}")]
    Create {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Reading a key file failed.
    #[error("reading audit key {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A secret key file that others may read.
    #[error(
        "audit key {path} is accessible by group or others (mode {mode:04o}); \
         run `chmod 600 {path}` or generate a new key"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file that is not in the expected format.
    #[error("audit key {path}: expected one line \"{tag} <64 lowercase hex digits>\"")]
    Format {
        /// The key file.
        path: PathBuf,
        /// The tag the line should start with.
        tag: &'static str,
    },
    /// A public key file whose bytes are not an Ed25519 point.
    #[error("audit key {path}: not a valid Ed25519 public key")]
    InvalidPublicKey {
        /// The key file.
        path: PathBuf,
    },
    /// The kernel gave no randomness.
    #[error("getrandom: {0}")]
    Random(io::Error),
    /// No place for the default key.
    #[error(
        "cannot choose a default audit key path: neither XDG_STATE_HOME nor HOME \
         is set to an absolute path"
    )]
    NoHome,
}

/// `<path>.pub`: where the public key of the secret key at `path` lives.
pub fn public_key_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Hex of a public key, as the log and the `.pub` file spell it.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

fn random_seed() -> Result<[u8; 32], KeyError> {
    let mut seed = [0u8; 32];
    let mut filled = 0;
    while filled < seed.len() {
        match rustix::rand::getrandom(&mut seed[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(KeyError::Random(e.into())),
        }
    }
    Ok(seed)
}

/// A fresh key from the kernel's random source, kept in memory only.
pub fn random_signing_key() -> Result<SigningKey, KeyError> {
    Ok(SigningKey::from_bytes(&random_seed()?))
}

/// Generates a key, writes it to `path` (mode 0600, never over an
/// existing file) and its public key to `<path>.pub` (mode 0644,
/// replaced if present), and returns the public key.
pub fn generate_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let key = random_signing_key()?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => KeyError::Exists {
                path: path.to_owned(),
            },
            _ => KeyError::Create {
                path: path.to_owned(),
                source: e,
            },
        })?;
    let line = format!("{SECRET_TAG} {}\n", hex::encode(key.as_bytes()));
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| KeyError::Create {
            path: path.to_owned(),
            source: e,
        })?;
    let public = key.verifying_key();
    write_public_key(&public_key_path(path), &public)?;
    Ok(public)
}

/// Writes `key` to `path` in the `.pub` format (replacing the file).
pub fn write_public_key(path: &Path, key: &VerifyingKey) -> Result<(), KeyError> {
    let line = format!("{PUBLIC_TAG} {}\n", public_key_hex(key));
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| KeyError::Create {
            path: path.to_owned(),
            source: e,
        })
}

fn read_small(path: &Path, f: &mut File) -> Result<String, KeyError> {
    let mut s = String::new();
    f.take(4096)
        .read_to_string(&mut s)
        .map_err(|e| KeyError::Read {
            path: path.to_owned(),
            source: e,
        })?;
    Ok(s)
}

fn parse_line<const N: usize>(
    path: &Path,
    text: &str,
    tag: &'static str,
) -> Result<[u8; N], KeyError> {
    let bad = || KeyError::Format {
        path: path.to_owned(),
        tag,
    };
    let line = text.strip_suffix('\n').unwrap_or(text);
    let digits = line
        .strip_prefix(tag)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(bad)?;
    hex::decode_array::<N>(digits.as_bytes()).ok_or_else(bad)
}

/// Loads a secret key, refusing a file that group or others may access.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let read_err = |e| KeyError::Read {
        path: path.to_owned(),
        source: e,
    };
    let mut f = File::open(path).map_err(read_err)?;
    let mode = f.metadata().map_err(read_err)?.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let text = read_small(path, &mut f)?;
    let seed = parse_line::<32>(path, &text, SECRET_TAG)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Loads a public key from a `.pub` file.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let mut f = File::open(path).map_err(|e| KeyError::Read {
        path: path.to_owned(),
        source: e,
    })?;
    let text = read_small(path, &mut f)?;
    let bytes = parse_line::<32>(path, &text, PUBLIC_TAG)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPublicKey {
        path: path.to_owned(),
    })
}

/// Where the key lives unless told otherwise: `/var/lib/airlock/audit.key`
/// for root, else `$XDG_STATE_HOME/airlock/audit.key`, else
/// `$HOME/.local/state/airlock/audit.key`.
pub fn default_key_path() -> Result<PathBuf, KeyError> {
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/airlock/audit.key"));
    }
    let abs = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(state) = abs("XDG_STATE_HOME") {
        return Ok(state.join("airlock/audit.key"));
    }
    if let Some(home) = abs("HOME") {
        return Ok(home.join(".local/state/airlock/audit.key"));
    }
    Err(KeyError::NoHome)
}

/// Loads the key at `path`, creating it first (directories 0700, file
/// 0600) if there is none. Returns the key and whether it was created.
pub fn load_or_create_key(path: &Path) -> Result<(SigningKey, bool), KeyError> {
    match load_signing_key(path) {
        Err(KeyError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => return other.map(|k| (k, false)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| KeyError::Create {
                path: dir.to_owned(),
                source: e,
            })?;
    }
    match generate_key(path) {
        Ok(_) => Ok((load_signing_key(path)?, true)),
        // Someone else created it in between.
        Err(KeyError::Exists { .. }) => Ok((load_signing_key(path)?, false)),
        Err(e) => Err(e),
    }
}

/// [`load_or_create_key`] at [`default_key_path`]; returns the key and
/// its path.
pub fn load_or_create_default_key() -> Result<(SigningKey, PathBuf), KeyError> {
    let path = default_key_path()?;
    let (key, _) = load_or_create_key(&path)?;
    Ok((key, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generate_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let public = generate_key(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let key = load_signing_key(&path).unwrap();
        assert_eq!(key.verifying_key(), public);
        assert_eq!(load_verifying_key(&public_key_path(&path)).unwrap(), public);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("airlock-audit-ed25519-secret ") && text.len() == 29 + 64 + 1);
        let text = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(
            text,
            format!("airlock-audit-ed25519-public {}\n", public_key_hex(&public))
        );
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let first = generate_key(&path).unwrap();
        let err = generate_key(&path).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(load_signing_key(&path).unwrap().verifying_key(), first);
    }

    #[test]
    fn refuses_a_key_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        generate_key(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_signing_key(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("0644"),
            "{msg}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(load_signing_key(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_signing_key(&path).is_ok());
    }

    #[test]
    fn bad_formats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        for text in [
            "",
            "airlock-audit-ed25519-secret",
            "airlock-audit-ed25519-secret 00",
            "airlock-audit-ed25519-public 0000000000000000000000000000000000000000000000000000000000000000",
            "airlock-audit-ed25519-secret 000000000000000000000000000000000000000000000000000000000000000G",
        ] {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let err = load_signing_key(&path).unwrap_err();
            assert!(matches!(err, KeyError::Format { .. }), "{text}: {err}");
        }
    }

    #[test]
    fn load_or_create_makes_private_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/audit.key");
        let (k1, created) = load_or_create_key(&path).unwrap();
        assert!(created);
        let (k2, created) = load_or_create_key(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.to_bytes(), k2.to_bytes());
        for d in ["a", "a/b"] {
            let mode = std::fs::metadata(dir.path().join(d))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{d}");
        }
    }

    #[test]
    fn default_path_shape() {
        let p = default_key_path().unwrap();
        assert!(
            p.is_absolute() && p.ends_with("airlock/audit.key"),
            "{}",
            p.display()
        );
    }
}
