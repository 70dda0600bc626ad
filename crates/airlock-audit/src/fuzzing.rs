//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) and for the
//! smoke test that runs them in CI (`tests/fuzz_smoke.rs`). Each one
//! panics when verification breaks its promise:
//!
//! - [`verify_bytes`]: any bytes as a log. Verification never panics, and
//!   it accepts (with the fuzz key) only a log whose events are exactly the
//!   seed log's.
//! - [`tamper`]: the bytes are edits (flip, insert or delete a byte, drop,
//!   swap, duplicate or truncate lines) applied to a real signed log.
//!   Whatever the edits, a log that verifies has exactly the original
//!   events, and a rejection names a line that exists (or the one after
//!   the last, for a missing head).

use std::io::BufReader;
use std::sync::OnceLock;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::json;

use crate::read::{Entry, EventReader};
use crate::verify::{verify_inner, Tuning};
use crate::writer::AuditWriter;
use crate::Event;

/// The seed log: a few events of every shape, signed with the fuzz key.
struct Seed {
    bytes: Vec<u8>,
    events: Vec<Event>,
    key: VerifyingKey,
}

fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let public = key.verifying_key();
        let dir = std::env::temp_dir().join(format!(
            "airlock-audit-fuzz-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("seed.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = AuditWriter::create(&path, "sbx-fuzz", key).expect("the seed log");
        let data = [
            json!({"argv": ["/bin/sh", "-c", "echo hi"], "pid": 2, "ppid": 1}),
            json!({"verdict": "deny", "reason": "no allow rule matches evil.test:443", "port": 443}),
            json!({"path": "/home/sandbox/.aws/credentials", "canaries": ["aws-secret"], "n": -1.5e-7}),
            json!({"unicode": "h\u{e9}llo \u{1f600} \"q\" \\ \n\t", "empty": {}, "list": [], "null": null}),
            json!({"big": u64::MAX, "neg": i64::MIN, "f": 0.1}),
        ];
        for (i, d) in data.into_iter().enumerate() {
            let kind = ["process.exec", "net.decision", "canary.touched", "x.y", "sandbox.ended"][i];
            log.append(kind, d).expect("an event");
        }
        log.close().expect("close");
        let bytes = std::fs::read(&path).expect("the seed log's bytes");
        let _ = std::fs::remove_dir_all(&dir);
        let events = events_of(&bytes).expect("the seed log parses");
        Seed {
            bytes,
            events,
            key: public,
        }
    })
}

/// The events of a log, if every line parses.
fn events_of(bytes: &[u8]) -> Option<Vec<Event>> {
    let mut out = Vec::new();
    for entry in EventReader::new(BufReader::new(bytes)) {
        if let Entry::Event(e) = entry.ok()? {
            out.push(e);
        }
    }
    Some(out)
}

/// The seed log's bytes (a starting point for corpora).
pub fn seed_log() -> Vec<u8> {
    seed().bytes.clone()
}

/// Checks one candidate log against the seed: accepted only with the
/// seed's exact events; a rejection names a line within the input. Two
/// ways of reading must agree: one buffer on one thread, and 1 KiB chunks
/// split over two threads (which exercises the stitching of segments).
fn check(bytes: &[u8]) {
    let s = seed();
    let whole = Tuning {
        chunk: 1 << 20,
        threads: 1,
        split_min: usize::MAX,
    };
    let pieces = Tuning {
        chunk: 1024,
        threads: 2,
        split_min: 0,
    };
    let a = verify_inner(bytes, None, Some(&s.key), &whole, None);
    let b = verify_inner(bytes, None, Some(&s.key), &pieces, None);
    match (&a, &b) {
        (Ok(x), Ok(y)) => assert_eq!(x.last_hash, y.last_hash),
        (Err(x), Err(y)) => assert_eq!(
            (x.line(), x.problem()),
            (y.line(), y.problem()),
            "the two readings disagree"
        ),
        _ => panic!("one reading accepted, the other refused: {a:?} / {b:?}"),
    }
    match a {
        Ok(report) => {
            assert!(report.anchored, "accepted without the expected key");
            let events = events_of(bytes).expect("a verified log parses");
            assert_eq!(
                events,
                s.events,
                "a log with other events verified:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
        Err(e) => {
            if let Some(line) = e.line() {
                let lines = bytes.split(|b| *b == b'\n').count() as u64;
                assert!(
                    line >= 1 && line <= lines + 1,
                    "line {line} named for a log of {lines} lines: {e}"
                );
            }
        }
    }
}

/// Any bytes as a log.
pub fn verify_bytes(data: &[u8]) {
    check(data);
}

/// The largest log [`tamper`] keeps editing.
const MAX_TAMPERED: usize = 64 << 10;

/// `data` as edits to the seed log, then verified.
pub fn tamper(data: &[u8]) {
    let mut log = seed().bytes.clone();
    for op in data.chunks(4) {
        // Duplicating the only (unterminated) line doubles the log: keep
        // it small, the edits are what matters.
        if log.len() > MAX_TAMPERED {
            break;
        }
        let [kind, a, b, v] = [0, 1, 2, 3].map(|i| op.get(i).copied().unwrap_or(0));
        let at = usize::from(u16::from_le_bytes([a, b]));
        let lines: Vec<Vec<u8>> = log
            .split_inclusive(|c| *c == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        let n = lines.len().max(1);
        match kind % 8 {
            0 if !log.is_empty() => {
                let i = at % log.len();
                log[i] ^= v.max(1);
            }
            1 => {
                let i = at % (log.len() + 1);
                log.insert(i, v);
            }
            2 if !log.is_empty() => {
                let i = at % log.len();
                log.remove(i);
            }
            3 => {
                let mut l = lines;
                if !l.is_empty() {
                    l.remove(at % n);
                }
                log = l.concat();
            }
            4 => {
                let mut l = lines;
                if l.len() > 1 {
                    let (i, j) = (at % n, usize::from(v) % n);
                    l.swap(i, j);
                }
                log = l.concat();
            }
            5 => {
                let mut l = lines;
                if !l.is_empty() {
                    let i = at % n;
                    let dup = l[i].clone();
                    l.insert(usize::from(v) % (n + 1), dup);
                }
                log = l.concat();
            }
            6 => log.truncate(at % (log.len() + 1)),
            7 => log.extend_from_slice(&op[..op.len().min(4)]),
            _ => {}
        }
    }
    check(&log);
}
