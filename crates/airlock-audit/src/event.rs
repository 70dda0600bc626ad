//! The event and head records, and their exact line forms.

use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::canon::{self, RawStr, Reject, Scanner};
use crate::{hex, time};

/// The `prev` of the first event, and the `last_hash` of an empty log.
pub(crate) const ZERO_HASH: [u8; 32] = [0; 32];

/// Longest line the writer produces and the reader accepts (16 MiB).
pub const MAX_LINE: usize = 16 << 20;

/// Bytes of `,"hash":"<64 hex>"}` that end every event line.
pub(crate) const HASH_SUFFIX_LEN: usize = 75;

/// What every head line starts with; event lines start with `{"seq":`.
pub(crate) const HEAD_PREFIX: &[u8] = b"{\"head\":";

/// One event, as read back from a log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Position in the log: 1 for the first event, then +1 each.
    pub seq: u64,
    /// When the writer accepted it: RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The sandbox the log belongs to (the same on every line).
    pub sandbox: String,
    /// What happened, such as `process.exec` (see [`kinds`](crate::kinds)).
    pub kind: String,
    /// Details, a JSON object.
    pub data: serde_json::Value,
    /// Hex SHA-256 of the previous event (64 zeros for the first).
    pub prev: String,
    /// Hex SHA-256 of this event's canonical bytes.
    pub hash: String,
}

/// The head object: what the writer signed at close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSummary {
    /// The sandbox of every event.
    pub sandbox: String,
    /// Seq of the last event (0 for a log without events).
    pub last_seq: u64,
    /// Hash of the last event (64 zeros for a log without events).
    pub last_hash: String,
    /// Number of events (equal to `last_seq`).
    pub events: u64,
    /// When the log was closed.
    pub closed: String,
    /// Hex Ed25519 public key that signed the head.
    pub public_key: String,
}

/// The last line of a closed log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHead {
    /// What was signed.
    pub head: HeadSummary,
    /// Hex Ed25519 signature over the head object's canonical bytes.
    pub signature: String,
}

/// Is `kind` a valid event kind: 1 to 64 bytes of `a-z 0-9 . _ -`?
pub(crate) fn valid_kind(kind: &[u8]) -> bool {
    (1..=64).contains(&kind.len())
        && kind
            .iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

/// Is `id` a valid sandbox id: 1 to 128 bytes of `A-Z a-z 0-9 . _ : -`?
pub(crate) fn valid_sandbox(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// What the hot path of verify needs from an event line.
#[derive(Debug)]
pub(crate) struct ScannedEvent<'a> {
    pub(crate) seq: u64,
    pub(crate) sandbox: &'a [u8],
    pub(crate) prev: [u8; 32],
    pub(crate) hash: [u8; 32],
}

/// Checks that `line` (without its newline) is an event line in canonical
/// form and returns its chain fields. The hash is not checked here.
pub(crate) fn scan_event(line: &[u8]) -> Result<ScannedEvent<'_>, Reject> {
    let mut s = Scanner::new(line);
    s.lit(b"{\"seq\":", "'{\"seq\":'")?;
    let seq = s.u64()?;
    s.lit(b",\"time\":", "',\"time\":'")?;
    timestamp(&mut s)?;
    s.lit(b",\"sandbox\":", "',\"sandbox\":'")?;
    let sandbox = sandbox_id(&mut s)?;
    s.lit(b",\"kind\":", "',\"kind\":'")?;
    let at = s.pos;
    let kind = s.string()?;
    if !valid_kind(kind.raw) {
        return Err(Reject {
            pos: at,
            expected: "a kind of 1 to 64 characters from a-z 0-9 . _ -",
        });
    }
    s.lit(b",\"data\":", "',\"data\":'")?;
    s.object()?;
    s.lit(b",\"prev\":", "',\"prev\":'")?;
    let prev = s.hex_str::<32>()?;
    s.lit(b",\"hash\":", "',\"hash\":'")?;
    let hash = s.hex_str::<32>()?;
    s.lit(b"}", "'}'")?;
    if !s.at_end() {
        return s.reject("the end of the line");
    }
    // So the canonical bytes are the line less its last HASH_SUFFIX_LEN
    // bytes, plus '}'.
    debug_assert!(line.ends_with(b"\"}") && line[line.len() - HASH_SUFFIX_LEN] == b',');
    Ok(ScannedEvent {
        seq,
        sandbox: sandbox.raw,
        prev,
        hash,
    })
}

fn timestamp(s: &mut Scanner<'_>) -> Result<(), Reject> {
    let at = s.pos;
    let t = s.string()?;
    if t.escaped || !time::is_valid(t.raw) {
        return Err(Reject {
            pos: at,
            expected: "a UTC timestamp like \"2026-12-01T21:30:00.123Z\"",
        });
    }
    Ok(())
}

fn sandbox_id<'a>(s: &mut Scanner<'a>) -> Result<RawStr<'a>, Reject> {
    let at = s.pos;
    let id = s.string()?;
    if !valid_sandbox(id.raw) {
        return Err(Reject {
            pos: at,
            expected: "a sandbox id of 1 to 128 characters from A-Z a-z 0-9 . _ : -",
        });
    }
    Ok(id)
}

/// The fields of a head line.
#[derive(Debug)]
pub(crate) struct ScannedHead<'a> {
    pub(crate) sandbox: &'a [u8],
    pub(crate) last_seq: u64,
    pub(crate) last_hash: [u8; 32],
    pub(crate) events: u64,
    pub(crate) closed: &'a [u8],
    pub(crate) public_key: [u8; 32],
    pub(crate) signature: [u8; 64],
    /// The head object's bytes: what the signature covers.
    pub(crate) signed: &'a [u8],
}

/// Checks that `line` (without its newline) is a head line in canonical
/// form. The signature is not checked here.
pub(crate) fn scan_head(line: &[u8]) -> Result<ScannedHead<'_>, Reject> {
    let mut s = Scanner::new(line);
    s.lit(HEAD_PREFIX, "'{\"head\":'")?;
    let start = s.pos;
    s.lit(b"{\"sandbox\":", "'{\"sandbox\":'")?;
    let sandbox = sandbox_id(&mut s)?;
    s.lit(b",\"last_seq\":", "',\"last_seq\":'")?;
    let last_seq = s.u64()?;
    s.lit(b",\"last_hash\":", "',\"last_hash\":'")?;
    let last_hash = s.hex_str::<32>()?;
    s.lit(b",\"events\":", "',\"events\":'")?;
    let events = s.u64()?;
    s.lit(b",\"closed\":", "',\"closed\":'")?;
    let closed_at = s.pos + 1;
    timestamp(&mut s)?;
    let closed = &line[closed_at..s.pos - 1];
    s.lit(b",\"public_key\":", "',\"public_key\":'")?;
    let public_key = s.hex_str::<32>()?;
    s.lit(b"}", "'}'")?;
    let signed = &line[start..s.pos];
    s.lit(b",\"signature\":", "',\"signature\":'")?;
    let signature = s.hex_str::<64>()?;
    s.lit(b"}", "'}'")?;
    if !s.at_end() {
        return s.reject("the end of the line");
    }
    Ok(ScannedHead {
        sandbox: sandbox.raw,
        last_seq,
        last_hash,
        events,
        closed,
        public_key,
        signature,
        signed,
    })
}

/// The canonical bytes of a head object: what the signature covers.
pub(crate) fn head_object(h: &HeadSummary) -> Vec<u8> {
    let mut obj = Vec::with_capacity(256);
    obj.extend_from_slice(b"{\"sandbox\":");
    canon::write_str(&h.sandbox, &mut obj);
    obj.extend_from_slice(b",\"last_seq\":");
    obj.extend_from_slice(h.last_seq.to_string().as_bytes());
    obj.extend_from_slice(b",\"last_hash\":");
    canon::write_str(&h.last_hash, &mut obj);
    obj.extend_from_slice(b",\"events\":");
    obj.extend_from_slice(h.events.to_string().as_bytes());
    obj.extend_from_slice(b",\"closed\":");
    canon::write_str(&h.closed, &mut obj);
    obj.extend_from_slice(b",\"public_key\":");
    canon::write_str(&h.public_key, &mut obj);
    obj.push(b'}');
    obj
}

fn head_line_with(obj: &[u8], signature: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(obj.len() + 160);
    line.extend_from_slice(HEAD_PREFIX);
    line.extend_from_slice(obj);
    line.extend_from_slice(b",\"signature\":");
    canon::write_str(signature, &mut line);
    line.extend_from_slice(b"}\n");
    line
}

/// Signs `h` with `key` and returns the head line (with its newline).
/// `h.public_key` must be the hex of `key`'s public key.
pub(crate) fn head_line(h: &HeadSummary, key: &SigningKey) -> Vec<u8> {
    let obj = head_object(h);
    let sig: Signature = key.sign(&obj);
    head_line_with(&obj, &hex::encode(&sig.to_bytes()))
}

/// The line (without newline) that `head` would be written as.
pub(crate) fn canonical_head_line(head: &SignedHead) -> Vec<u8> {
    let mut line = head_line_with(&head_object(&head.head), &head.signature);
    line.pop();
    line
}

/// The line (without newline) that `ev` would be written as, or `None`
/// if its data has no canonical form.
pub(crate) fn canonical_event_line(ev: &Event) -> Option<Vec<u8>> {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(b"{\"seq\":");
    line.extend_from_slice(ev.seq.to_string().as_bytes());
    line.extend_from_slice(b",\"time\":");
    canon::write_str(&ev.time, &mut line);
    line.extend_from_slice(b",\"sandbox\":");
    canon::write_str(&ev.sandbox, &mut line);
    line.extend_from_slice(b",\"kind\":");
    canon::write_str(&ev.kind, &mut line);
    line.extend_from_slice(b",\"data\":");
    canon::write_object(ev.data.as_object()?, &mut line).ok()?;
    line.extend_from_slice(b",\"prev\":");
    canon::write_str(&ev.prev, &mut line);
    line.extend_from_slice(b",\"hash\":");
    canon::write_str(&ev.hash, &mut line);
    line.push(b'}');
    Some(line)
}
