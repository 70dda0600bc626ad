//! `airlock audit`: make the signing key, verify a log, show a log.
//!
//! Exit codes: 0 when a log verifies (or is shown), 1 when it does not
//! (the message names the file and the first bad line), 125 for
//! airlock's own failures such as an unreadable file or key.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_audit::{Entry, EventReader, KeyError, VerifyError, VerifyingKey};
use anyhow::Context;

/// Audit log commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Generate a new signing key (never over an existing one); prints
    /// the path of its public key.
    Keygen {
        /// Where to write the secret key (the public key goes to
        /// FILE.pub). Default: /var/lib/airlock/audit.key for root, else
        /// $XDG_STATE_HOME/airlock/audit.key or
        /// ~/.local/state/airlock/audit.key.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a log: every hash, the chain, the signed head. Names the first
    /// bad line.
    Verify {
        /// The log.
        file: PathBuf,
        /// The public key (a .pub file) the head must be signed with.
        /// Default: the default key's .pub, if there is one; otherwise only
        /// the key embedded in the log is used, with a warning.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Print a log as a timeline (without verifying it).
    Show {
        /// The log.
        file: PathBuf,
        /// Print the events as JSON lines.
        #[arg(long)]
        json: bool,
        /// Only events of kind K (repeatable): a kind such as
        /// `canary.touched`, or a family such as `canary` for every
        /// canary.* event. An unknown kind is an error listing the valid ones.
        #[arg(long = "kind", value_name = "K", value_parser = parse_kind)]
        kinds: Vec<String>,
    },
}

/// A kind or a family (the part before the dot) of [`EVENT_KINDS`].
///
/// [`EVENT_KINDS`]: airlock_runtime::EVENT_KINDS
fn parse_kind(k: &str) -> Result<String, String> {
    let kinds = airlock_runtime::EVENT_KINDS;
    let family = |kind: &str| kind.split('.').next().unwrap_or(kind).to_owned();
    if kinds.contains(&k) || kinds.iter().any(|kind| family(kind) == k) {
        return Ok(k.to_owned());
    }
    let mut families: Vec<String> = kinds.iter().map(|k| family(k)).collect();
    families.dedup();
    Err(format!(
        "unknown event kind {k:?}: expected a family ({}) or a kind ({})",
        families.join(", "),
        kinds.join(", ")
    ))
}

/// The library's errors already carry their cause in their message;
/// flattening keeps `airlock: {e:#}` from printing the cause twice.
fn flat(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub(crate) fn main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Keygen { out } => keygen(out),
        Command::Verify { file, key } => verify(&file, key.as_deref()),
        Command::Show { file, json, kinds } => show(&file, json, &kinds),
    }
}

fn keygen(out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let path = match out {
        Some(p) => p,
        None => {
            let p = airlock_audit::default_key_path().map_err(flat)?;
            if let Some(dir) = p.parent() {
                create_private_dir(dir)?;
            }
            p
        }
    };
    let public = airlock_audit::generate_key(&path).map_err(flat)?;
    eprintln!(
        "airlock: wrote the secret key to {} (keep it outside every sandbox)",
        path.display()
    );
    eprintln!(
        "airlock: public key {}",
        airlock_audit::public_key_hex(&public)
    );
    println!("{}", airlock_audit::public_key_path(&path).display());
    Ok(ExitCode::SUCCESS)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// The key the head must be signed with: `--key`, else the default key's
/// `.pub` if present, else none (with a warning).
fn expected_key(key: Option<&Path>) -> anyhow::Result<Option<(VerifyingKey, PathBuf)>> {
    if let Some(p) = key {
        return match airlock_audit::load_verifying_key(p) {
            Ok(k) => Ok(Some((k, p.to_owned()))),
            // A secret key file works too (its public half is used).
            Err(KeyError::Format { .. }) => {
                let k = airlock_audit::load_signing_key(p).map_err(|e| match e {
                    KeyError::Format { .. } => anyhow::anyhow!(
                        "{}: neither an audit public key nor a secret key",
                        p.display()
                    ),
                    e => flat(e),
                })?;
                Ok(Some((k.verifying_key(), p.to_owned())))
            }
            Err(e) => Err(flat(e)),
        };
    }
    let default = airlock_audit::default_key_path()
        .ok()
        .map(|p| airlock_audit::public_key_path(&p));
    match default {
        Some(p) if p.exists() => Ok(Some((
            airlock_audit::load_verifying_key(&p).map_err(flat)?,
            p,
        ))),
        _ => Ok(None),
    }
}

fn verify(file: &Path, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let expected = expected_key(key)?;
    if expected.is_none() {
        eprintln!(
            "airlock: warning: no public key given (--key) and no default key; the \
             signature is checked against the key embedded in the log only, which \
             anyone could have made"
        );
    }
    match airlock_audit::verify(file, expected.as_ref().map(|(k, _)| k)) {
        Ok(r) => {
            let anchor = match &expected {
                Some((_, p)) => format!("key {}", p.display()),
                None => "the key embedded in the log: not anchored".to_owned(),
            };
            println!(
                "{}: ok: {} events of sandbox {}, closed {}, signed by {} ({anchor})",
                file.display(),
                r.events,
                r.sandbox,
                r.closed,
                &airlock_audit::public_key_hex(&r.public_key)[..16],
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Line { line, problem }) => {
            eprintln!("airlock: {}:{line}: {problem}", file.display());
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(flat(e)),
    }
}

/// `s` with control characters (C0, DEL, C1) escaped, safe for a terminal.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// JSON text with DEL and C1 controls escaped too (serde_json escapes only
/// C0). They can only occur inside strings, where `\u00XX` is valid JSON.
fn json_for_terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// A one-line summary of event data: `key=value ...`, strings bare when
/// they have no spaces, everything else as compact JSON, cut at 160 chars.
fn summary(data: &serde_json::Value) -> String {
    let mut out = String::new();
    match data {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if !out.is_empty() {
                    out.push(' ');
                }
                let v = match v {
                    serde_json::Value::String(s)
                        if !s.is_empty() && !s.contains(char::is_whitespace) =>
                    {
                        s.clone()
                    }
                    other => other.to_string(),
                };
                let _ = write!(out, "{k}={v}");
            }
        }
        other => out.push_str(&other.to_string()),
    }
    let out = printable(&out);
    match out.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &out[..i]),
        None => out,
    }
}

fn show(file: &Path, json: bool, kinds: &[String]) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let wanted = |kind: &str| {
        kinds.is_empty()
            || kinds.iter().any(|k| {
                kind == k
                    || kind
                        .strip_prefix(k.as_str())
                        .is_some_and(|r| r.starts_with('.'))
            })
    };
    let mut head = None;
    for entry in EventReader::open(file).map_err(flat)? {
        match entry {
            Ok(Entry::Event(ev)) => {
                if !wanted(&ev.kind) {
                    continue;
                }
                if json {
                    writeln!(out, "{}", json_for_terminal(&serde_json::to_string(&ev)?))?;
                } else {
                    writeln!(
                        out,
                        "{}  {:>6}  {:<20} {}",
                        printable(&ev.time),
                        ev.seq,
                        printable(&ev.kind),
                        summary(&ev.data)
                    )?;
                }
            }
            Ok(Entry::Head(h)) => head = Some(h),
            Err(VerifyError::Line { line, problem }) => {
                out.flush()?;
                eprintln!("airlock: {}:{line}: {problem}", file.display());
                return Ok(ExitCode::from(1));
            }
            Err(e) => return Err(flat(e)),
        }
    }
    if !json {
        match head {
            Some(h) => writeln!(
                out,
                "-- head: {} events of sandbox {}, closed {}, key {} (not verified here: \
                 run `airlock audit verify`)",
                h.head.events,
                printable(&h.head.sandbox),
                printable(&h.head.closed),
                printable(h.head.public_key.get(..16).unwrap_or(&h.head.public_key)),
            )?,
            None => writeln!(out, "-- no head: the log was not closed, or was truncated")?,
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_one_safe_line() {
        let d: serde_json::Value = serde_json::from_str(
            r#"{"argv":["sh","-c","x"],"cwd":"/w","esc":"\u001b[2J\u009b","msg":"a b"}"#,
        )
        .unwrap();
        let s = summary(&d);
        assert_eq!(
            s,
            r#"argv=["sh","-c","x"] cwd=/w esc=\u{1b}[2J\u{9b} msg="a b""#
        );
        assert!(!s.contains('\u{1b}') && !s.contains('\u{9b}'));
        let long = serde_json::json!({"x": "y".repeat(500)});
        assert_eq!(summary(&long).chars().count(), 161);
        assert_eq!(
            json_for_terminal("\"a\u{9b}\u{7f}é\""),
            "\"a\\u009b\\u007fé\""
        );
    }
}
