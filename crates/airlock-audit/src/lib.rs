//! airlock's audit log: the event schema, a hash-chained append-only
//! writer, a reader, verification, and the Ed25519-signed head.
//!
//! A log is a JSON Lines file, one sandbox run per file. Every line is an
//! event `{"seq","time","sandbox","kind","data","prev","hash"}` whose
//! `hash` is SHA-256 over its canonical bytes (which include `prev`, the
//! hash of the event before), so each line commits to all before it. At
//! close, a head line records the last seq and hash and is signed with a
//! key kept outside every sandbox, so truncation, edits, deletions,
//! reordering and appends are all detected by [`verify`], which names the
//! first bad line. See `docs/audit.md` for the byte-exact format.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (key, _path) = airlock_audit::load_or_create_default_key()?;
//! let public = key.verifying_key();
//! let log = airlock_audit::AuditWriter::create("/tmp/run.jsonl", "sbx-1", key)?;
//! log.append(airlock_audit::kinds::PROCESS_EXEC, serde_json::json!({"argv": ["/bin/true"]}))?;
//! let head = log.close()?;
//! let report = airlock_audit::verify("/tmp/run.jsonl", Some(&public))?;
//! assert_eq!(report.events, head.events);
//! # Ok(()) }
//! ```
//!
//! This crate owns the format and the key files; it knows nothing of
//! sandboxes, policy or canaries.

pub mod bench;
mod canon;
mod event;
pub mod fuzzing;
mod hex;
mod key;
mod read;
mod time;
mod verify;
mod writer;

pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use event::{Event, HeadSummary, SignedHead, MAX_LINE};
pub use key::{
    default_key_path, generate_key, load_or_create_default_key, load_or_create_key,
    load_signing_key, load_verifying_key, public_key_hex, public_key_path, random_signing_key,
    write_public_key, KeyError,
};
pub use read::{read_events, Entry, EventReader};
pub use time::format as format_time;
pub use verify::{verify, verify_reader, Problem, VerifyError, VerifyReport};
pub use writer::{AuditError, AuditWriter, WriterOptions};

/// Event kinds used across airlock. Any string of 1 to 64 characters from
/// `a-z 0-9 . _ -` is accepted; these are the common ones.
pub mod kinds {
    /// A sandbox was set up.
    pub const SANDBOX_CREATED: &str = "sandbox.created";
    /// A process was started inside.
    pub const PROCESS_EXEC: &str = "process.exec";
    /// A planted canary was read or used.
    pub const CANARY_TOUCHED: &str = "canary.touched";
    /// The egress gateway decided a connection.
    pub const NET_DECISION: &str = "net.decision";
    /// A resource limit was reached.
    pub const LIMIT_HIT: &str = "limit.hit";
    /// A file was copied out of the sandbox.
    pub const COPY_OUT: &str = "copy_out";
    /// More authority was requested.
    pub const ESCALATION_REQUEST: &str = "escalation.request";
    /// The sandbox ended (with its reason).
    pub const SANDBOX_ENDED: &str = "sandbox.ended";
}

#[cfg(test)]
mod tests;
