//! Verification of a whole log, stopping at the first bad line.
//!
//! The file is read in chunks of complete lines; a large chunk is split
//! in two segments at a line boundary, scanned on two threads. Scanning a
//! segment checks each line on its own (UTF-8, canonical form with a
//! strict scanner and no value tree, the hash against the bytes) and its
//! links to the line before it in the segment (one sandbox id, seq + 1,
//! `prev` equal to the hash before). Stitching, in order, checks the
//! first line of each segment against the end of the chain so far, then
//! the head: agreeing with the chain, a good signature, the expected key,
//! nothing after it. Errors come out in line order either way.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::canon::Reject;
use crate::event::{
    self, Event, ScannedEvent, SignedHead, HASH_SUFFIX_LEN, HEAD_PREFIX, MAX_LINE, ZERO_HASH,
};
use crate::hex;

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The sandbox of every event and of the head.
    pub sandbox: String,
    /// Number of events (the last seq).
    pub events: u64,
    /// Hash of the last event, hex (64 zeros for an empty log).
    pub last_hash: String,
    /// When the log was closed, from the head.
    pub closed: String,
    /// The key whose signature on the head checked out.
    pub public_key: VerifyingKey,
    /// True when that key was the expected one; false when only the key
    /// embedded in the head was used (anyone could have made such a log).
    pub anchored: bool,
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not an event or head line at all.
    #[error("malformed line at column {column}: expected {expected}")]
    Malformed {
        /// 1-based byte column.
        column: usize,
        /// What should have been there.
        expected: &'static str,
    },
    /// Valid JSON, but not byte for byte the form the writer produces.
    #[error(
        "line not in canonical form at column {column} (valid JSON, but re-serialized \
         or edited: the writer would have written other bytes)"
    )]
    NotCanonical {
        /// 1-based byte column of the first difference the scanner saw.
        column: usize,
    },
    /// Longer than [`MAX_LINE`].
    #[error("line longer than {max} bytes", max = MAX_LINE)]
    TooLong,
    /// The hash field does not match the line's content.
    #[error(
        "hash mismatch: the line says {stored} but its content hashes to {computed} (line edited)"
    )]
    HashMismatch {
        /// The `hash` field.
        stored: String,
        /// SHA-256 of the line's canonical bytes.
        computed: String,
    },
    /// The seq is not the next one.
    #[error("sequence gap: expected seq {expected}, found {found} (a line was deleted, inserted or moved)")]
    SeqGap {
        /// The seq that should come next.
        expected: u64,
        /// The seq on the line.
        found: u64,
    },
    /// `prev` is not the hash of the event before.
    #[error(
        "broken chain: prev is {found} but the previous event's hash is {expected} \
         (an earlier line was replaced or re-hashed)"
    )]
    BrokenChain {
        /// Hash of the previous event.
        expected: String,
        /// The `prev` field.
        found: String,
    },
    /// A line of another sandbox.
    #[error("sandbox id {found:?} differs from {expected:?} of the first event")]
    SandboxMismatch {
        /// The log's sandbox.
        expected: String,
        /// The line's sandbox.
        found: String,
    },
    /// Anything after the head.
    #[error("line after the head record of line {head_line} (appended after close)")]
    AfterHead {
        /// Where the head is.
        head_line: u64,
    },
    /// The log ends without a head.
    #[error(
        "missing head record after {events} events (file truncated, or the writer was not closed)"
    )]
    MissingHead {
        /// Events read.
        events: u64,
    },
    /// The file ends in the middle of a line.
    #[error("partial last line without a newline (file truncated mid-line)")]
    PartialLine,
    /// The head disagrees with the events.
    #[error("head {field} is {head} but the log has {actual}")]
    HeadMismatch {
        /// Which field: `last_seq`, `last_hash` or `events`.
        field: &'static str,
        /// What the head says.
        head: String,
        /// What the events say.
        actual: String,
    },
    /// The head's public key is not an Ed25519 point.
    #[error("head public_key is not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// The signature does not verify under the head's public key.
    #[error("head signature does not verify under the head's public key {key}")]
    BadSignature {
        /// The head's public key, hex.
        key: String,
    },
    /// Signed, but by another key than the expected one.
    #[error("head is signed by key {found}, not by the expected key {expected}")]
    KeyMismatch {
        /// The expected key, hex.
        expected: String,
        /// The head's key, hex.
        found: String,
    },
}

/// Why a log did not verify (or could not be read).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Reading failed.
    #[error("reading audit log {}: {source}", shown(path))]
    Io {
        /// The log, if read from a file.
        path: Option<PathBuf>,
        /// The cause.
        source: io::Error,
    },
    /// The first bad line.
    #[error("line {line}: {problem}")]
    Line {
        /// 1-based line number.
        line: u64,
        /// What is wrong there.
        problem: Problem,
    },
}

fn shown(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map_or_else(|| "<input>".to_owned(), |p| p.display().to_string())
}

impl VerifyError {
    /// The 1-based number of the first bad line, if the error is about one.
    pub fn line(&self) -> Option<u64> {
        match self {
            VerifyError::Line { line, .. } => Some(*line),
            VerifyError::Io { .. } => None,
        }
    }

    /// What is wrong with that line.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            VerifyError::Line { problem, .. } => Some(problem),
            VerifyError::Io { .. } => None,
        }
    }
}

/// Verifies the log at `path`. With `expected`, the head must be signed
/// by that key (the report is then `anchored`); without, the key embedded
/// in the head is used.
pub fn verify(
    path: impl AsRef<Path>,
    expected: Option<&VerifyingKey>,
) -> Result<VerifyReport, VerifyError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| VerifyError::Io {
        path: Some(path.to_owned()),
        source: e,
    })?;
    verify_inner(file, Some(path), expected, &Tuning::default(), None)
}

/// [`verify`] over any reader.
pub fn verify_reader(
    reader: impl Read,
    expected: Option<&VerifyingKey>,
) -> Result<VerifyReport, VerifyError> {
    verify_inner(reader, None, expected, &Tuning::default(), None)
}

#[derive(Debug, Clone)]
pub(crate) struct Tuning {
    /// Bytes read at a time.
    pub(crate) chunk: usize,
    /// Threads for the per-line stage (1 or 2).
    pub(crate) threads: usize,
    /// Smallest chunk worth splitting over two threads.
    pub(crate) split_min: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
        Tuning {
            chunk: 4 << 20,
            threads,
            split_min: 256 << 10,
        }
    }
}

/// How a segment's scan ended early.
#[derive(Debug)]
enum Stop<'a> {
    /// A bad line (its own fault, or a link to the line before it in the
    /// same segment).
    Bad(Problem),
    /// A head line, to be checked against the chain.
    Head(&'a [u8]),
}

/// The first stage's result for a run of complete lines.
#[derive(Debug)]
struct Segment<'a> {
    /// Good event lines before `stop`.
    good: u64,
    /// seq, prev and sandbox of the first event: only its own content is
    /// checked here, its links are checked when stitching.
    first: Option<(u64, [u8; 32], &'a [u8])>,
    /// seq and hash of the last good event.
    last: (u64, [u8; 32]),
    stop: Option<Stop<'a>>,
    /// Whether any byte follows the stop line in this segment.
    more_after_stop: bool,
}

fn column(r: Reject) -> usize {
    r.pos + 1
}

/// Scanner rejections are either "not an event" or "JSON in another form";
/// serde_json decides which (this runs once, on the bad line).
fn classify_event(line: &[u8], r: Reject) -> Problem {
    let canonical = serde_json::from_slice::<Event>(line)
        .ok()
        .and_then(|ev| event::canonical_event_line(&ev));
    match canonical {
        Some(c) if c != line => Problem::NotCanonical { column: column(r) },
        _ => Problem::Malformed {
            column: column(r),
            expected: r.expected,
        },
    }
}

fn classify_head(line: &[u8], r: Reject) -> Problem {
    match serde_json::from_slice::<SignedHead>(line) {
        Ok(h) if event::canonical_head_line(&h) != line => {
            Problem::NotCanonical { column: column(r) }
        }
        _ => Problem::Malformed {
            column: column(r),
            expected: r.expected,
        },
    }
}

/// Checks one line on its own: UTF-8, canonical form, hash.
fn scan_line(line: &[u8]) -> Result<ScannedEvent<'_>, Problem> {
    if line.len() > MAX_LINE {
        return Err(Problem::TooLong);
    }
    if let Err(e) = std::str::from_utf8(line) {
        return Err(Problem::Malformed {
            column: e.valid_up_to() + 1,
            expected: "UTF-8",
        });
    }
    let ev = event::scan_event(line).map_err(|r| classify_event(line, r))?;
    let body = &line[..line.len() - HASH_SUFFIX_LEN];
    let computed: [u8; 32] = Sha256::new()
        .chain_update(body)
        .chain_update(b"}")
        .finalize()
        .into();
    if computed != ev.hash {
        return Err(Problem::HashMismatch {
            stored: hex::encode(&ev.hash),
            computed: hex::encode(&computed),
        });
    }
    Ok(ev)
}

/// The first stage over `region` (complete lines, ending in '\n'): each
/// line on its own, and each event's links to the event before it in the
/// region. Stops at the first line that is not a good event.
fn scan_segment(region: &[u8]) -> Segment<'_> {
    let mut seg = Segment {
        good: 0,
        first: None,
        last: (0, ZERO_HASH),
        stop: None,
        more_after_stop: false,
    };
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', region) {
        let line = &region[start..nl];
        start = nl + 1;
        let stop = if line.starts_with(HEAD_PREFIX) {
            Stop::Head(line)
        } else {
            match scan_line(line) {
                Err(p) => Stop::Bad(p),
                Ok(ev) => match seg.first {
                    None => {
                        seg.first = Some((ev.seq, ev.prev, ev.sandbox));
                        seg.good = 1;
                        seg.last = (ev.seq, ev.hash);
                        continue;
                    }
                    Some((_, _, sandbox)) => match link(sandbox, seg.last, &ev) {
                        Ok(()) => {
                            seg.good += 1;
                            seg.last = (ev.seq, ev.hash);
                            continue;
                        }
                        Err(p) => Stop::Bad(p),
                    },
                },
            }
        };
        seg.stop = Some(stop);
        seg.more_after_stop = start < region.len();
        break;
    }
    seg
}

/// Checks that `ev` follows the event with `(seq, hash)` of `sandbox`:
/// same sandbox, next seq, prev equal to its hash (in that order).
fn link(
    sandbox: &[u8],
    (seq, hash): (u64, [u8; 32]),
    ev: &ScannedEvent<'_>,
) -> Result<(), Problem> {
    if sandbox != ev.sandbox {
        return Err(Problem::SandboxMismatch {
            expected: decode_id(sandbox),
            found: decode_id(ev.sandbox),
        });
    }
    if ev.seq != seq.wrapping_add(1) {
        return Err(Problem::SeqGap {
            expected: seq.wrapping_add(1),
            found: ev.seq,
        });
    }
    if ev.prev != hash {
        return Err(Problem::BrokenChain {
            expected: hex::encode(&hash),
            found: hex::encode(&ev.prev),
        });
    }
    Ok(())
}

/// What links the segments: the state after the last checked line.
#[derive(Debug)]
struct Chain<'k> {
    expected: Option<&'k VerifyingKey>,
    /// Number of the line being checked (1-based).
    line: u64,
    sandbox: Option<Vec<u8>>,
    next_seq: u64,
    prev: [u8; 32],
    head: Option<(u64, VerifyReport)>,
}

fn decode_id(raw: &[u8]) -> String {
    // Sandbox ids are plain ASCII by construction (checked by the scanner).
    String::from_utf8_lossy(raw).into_owned()
}

impl Chain<'_> {
    fn fail<T>(&self, problem: Problem) -> Result<T, VerifyError> {
        Err(VerifyError::Line {
            line: self.line,
            problem,
        })
    }

    /// Continues the chain with a segment. (Bytes after a head in later
    /// segments or chunks are caught there, or as the partial last line.)
    fn stitch(&mut self, seg: Segment<'_>) -> Result<(), VerifyError> {
        if let Some((head_line, _)) = &self.head {
            if seg.good > 0 || seg.stop.is_some() {
                return self.fail(Problem::AfterHead {
                    head_line: *head_line,
                });
            }
        }
        if let Some((seq, prev, sandbox)) = seg.first {
            match &self.sandbox {
                None => self.sandbox = Some(sandbox.to_vec()),
                Some(s) if s.as_slice() != sandbox => {
                    return self.fail(Problem::SandboxMismatch {
                        expected: decode_id(s),
                        found: decode_id(sandbox),
                    })
                }
                Some(_) => {}
            }
            if seq != self.next_seq {
                return self.fail(Problem::SeqGap {
                    expected: self.next_seq,
                    found: seq,
                });
            }
            if prev != self.prev {
                return self.fail(Problem::BrokenChain {
                    expected: hex::encode(&self.prev),
                    found: hex::encode(&prev),
                });
            }
            self.line += seg.good;
            self.next_seq = seg.last.0 + 1;
            self.prev = seg.last.1;
        }
        match seg.stop {
            None => Ok(()),
            Some(Stop::Bad(p)) => self.fail(p),
            Some(Stop::Head(raw)) => {
                self.check_head(raw)?;
                self.line += 1;
                if seg.more_after_stop {
                    let head_line = self.line - 1;
                    return self.fail(Problem::AfterHead { head_line });
                }
                Ok(())
            }
        }
    }

    fn check_head(&mut self, raw: &[u8]) -> Result<(), VerifyError> {
        if let Err(e) = std::str::from_utf8(raw) {
            return self.fail(Problem::Malformed {
                column: e.valid_up_to() + 1,
                expected: "UTF-8",
            });
        }
        let h = match event::scan_head(raw) {
            Ok(h) => h,
            Err(r) => return self.fail(classify_head(raw, r)),
        };
        if let Some(s) = &self.sandbox {
            if s.as_slice() != h.sandbox {
                return self.fail(Problem::SandboxMismatch {
                    expected: decode_id(s),
                    found: decode_id(h.sandbox),
                });
            }
        }
        let last_seq = self.next_seq - 1;
        if h.last_seq != last_seq {
            return self.fail(Problem::HeadMismatch {
                field: "last_seq",
                head: h.last_seq.to_string(),
                actual: last_seq.to_string(),
            });
        }
        if h.last_hash != self.prev {
            return self.fail(Problem::HeadMismatch {
                field: "last_hash",
                head: hex::encode(&h.last_hash),
                actual: hex::encode(&self.prev),
            });
        }
        if h.events != last_seq {
            return self.fail(Problem::HeadMismatch {
                field: "events",
                head: h.events.to_string(),
                actual: last_seq.to_string(),
            });
        }
        let Ok(key) = VerifyingKey::from_bytes(&h.public_key) else {
            return self.fail(Problem::InvalidPublicKey);
        };
        let sig = Signature::from_bytes(&h.signature);
        if key.verify_strict(h.signed, &sig).is_err() {
            return self.fail(Problem::BadSignature {
                key: hex::encode(&h.public_key),
            });
        }
        if let Some(exp) = self.expected {
            if *exp != key {
                return self.fail(Problem::KeyMismatch {
                    expected: hex::encode(exp.as_bytes()),
                    found: hex::encode(&h.public_key),
                });
            }
        }
        let report = VerifyReport {
            sandbox: decode_id(h.sandbox),
            events: last_seq,
            last_hash: hex::encode(&self.prev),
            closed: String::from_utf8_lossy(h.closed).into_owned(),
            public_key: key,
            anchored: self.expected.is_some(),
        };
        self.head = Some((self.line, report));
        Ok(())
    }
}

pub(crate) fn verify_inner(
    mut r: impl Read,
    path: Option<&Path>,
    expected: Option<&VerifyingKey>,
    tuning: &Tuning,
    mut on_chunk: Option<&mut dyn FnMut(u64)>,
) -> Result<VerifyReport, VerifyError> {
    let io_err = |e| VerifyError::Io {
        path: path.map(Path::to_owned),
        source: e,
    };
    let mut chain = Chain {
        expected,
        line: 1,
        sandbox: None,
        next_seq: 1,
        prev: ZERO_HASH,
        head: None,
    };
    let mut buf = vec![0u8; tuning.chunk.max(1024)];
    let mut filled = 0;
    let mut eof = false;
    loop {
        while filled < buf.len() && !eof {
            match r.read(&mut buf[filled..]) {
                Ok(0) => eof = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let Some(last_nl) = memchr::memrchr(b'\n', &buf[..filled]) else {
            if eof {
                break;
            }
            // One line fills the buffer: grow it, up to the line limit.
            if buf.len() > MAX_LINE {
                return chain.fail(Problem::TooLong);
            }
            let new_len = (buf.len() * 2).min(MAX_LINE + 1);
            buf.resize(new_len, 0);
            continue;
        };
        let region = &buf[..=last_nl];
        let line_before = chain.line;
        // Split in two at a line boundary near the middle.
        let split = if tuning.threads > 1 && region.len() >= tuning.split_min {
            memchr::memchr(b'\n', &region[region.len() / 2..])
                .map_or(region.len(), |i| region.len() / 2 + i + 1)
        } else {
            region.len()
        };
        let (a, b) = region.split_at(split);
        if b.is_empty() {
            chain.stitch(scan_segment(a))?;
        } else {
            let (sa, sb) = std::thread::scope(|s| {
                let hb = s.spawn(|| scan_segment(b));
                let sa = scan_segment(a);
                // A panic in the scan is a bug; surface it as one.
                (
                    sa,
                    hb.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                )
            });
            chain.stitch(sa)?;
            chain.stitch(sb)?;
        }
        if let Some(cb) = on_chunk.as_mut() {
            cb(chain.line - line_before);
        }
        let rest = filled - (last_nl + 1);
        buf.copy_within(last_nl + 1..filled, 0);
        filled = rest;
    }
    if filled > 0 {
        // Bytes after the last newline.
        if let Some((head_line, _)) = &chain.head {
            return chain.fail(Problem::AfterHead {
                head_line: *head_line,
            });
        }
        return chain.fail(Problem::PartialLine);
    }
    match chain.head.take() {
        Some((_, report)) => Ok(report),
        None => chain.fail(Problem::MissingHead {
            events: chain.next_seq - 1,
        }),
    }
}
