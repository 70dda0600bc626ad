//! Round trips and tamper tests over whole logs. Every verify-failure
//! test runs under several verifier tunings (one thread; two threads with
//! tiny chunks) and checks the reported line number.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::event::{head_line, HeadSummary};
use crate::verify::{verify_inner, Tuning};
use crate::*;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

const SBX: &str = "sbx-test-1";

fn sample(i: u64) -> (&'static str, serde_json::Value) {
    match i % 4 {
        0 => (
            kinds::PROCESS_EXEC,
            json!({"argv": ["/bin/sh", "-c", format!("echo {i} \"quoted\" \\ \n")], "pid": 1000 + i, "cwd": "/workspace"}),
        ),
        1 => (
            kinds::NET_DECISION,
            json!({"host": "example.com", "port": 443, "allow": i % 3 == 0, "reason": "allowlist: *.example.com"}),
        ),
        2 => (
            kinds::CANARY_TOUCHED,
            json!({"canary": {"type": "aws", "path": "/home/user/.aws/credentials"}, "ratio": 0.5, "neg": -7, "ctl": "\u{1}\u{1f}é✓"}),
        ),
        _ => (kinds::LIMIT_HIT, json!({})),
    }
}

/// Writes a closed log of `n` events; returns its path.
fn write_log(dir: &Path, n: u64) -> PathBuf {
    let path = dir.join("log.jsonl");
    let w = AuditWriter::create(&path, SBX, key()).unwrap();
    for i in 0..n {
        let (k, d) = sample(i);
        assert_eq!(w.append(k, d).unwrap(), i + 1);
    }
    let head = w.close().unwrap();
    assert_eq!(head.events, n);
    path
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

/// Seals canonical event bytes (ending in `"prev":"..."}`) with their hash.
fn seal(body: &str) -> String {
    let h = crate::hex::encode(&Sha256::digest(body.as_bytes()));
    format!("{},\"hash\":\"{h}\"}}", &body[..body.len() - 1])
}

/// Re-hashes an edited event line, as a forger would.
fn rehash(line: &str) -> String {
    seal(&format!("{}}}", &line[..line.len() - 75]))
}

fn hash_of(line: &str) -> String {
    line[line.len() - 66..line.len() - 2].to_owned()
}

fn tunings() -> Vec<Tuning> {
    vec![
        Tuning {
            chunk: 1 << 20,
            threads: 1,
            split_min: usize::MAX,
        },
        Tuning {
            chunk: 1024,
            threads: 2,
            split_min: 0,
        },
        Tuning {
            chunk: 1500,
            threads: 1,
            split_min: 0,
        },
    ]
}

fn verify_all(path: &Path, expected: Option<&VerifyingKey>) -> Result<VerifyReport, VerifyError> {
    let mut first = None;
    for t in tunings() {
        let r = verify_inner(File::open(path).unwrap(), Some(path), expected, &t, None);
        let shown = r.as_ref().map(|r| r.events).map_err(|e| e.to_string());
        match &first {
            None => first = Some(shown),
            Some(f) => assert_eq!(*f, shown, "tunings disagree"),
        }
        if t.threads == 2 {
            return r;
        }
    }
    unreachable!()
}

#[track_caller]
fn expect_bad(
    path: &Path,
    expected: Option<&VerifyingKey>,
    line: u64,
    is: impl Fn(&Problem) -> bool,
) -> Problem {
    let err = verify_all(path, expected).expect_err("verify must fail");
    let problem = err.problem().cloned().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(err.line(), Some(line), "{err}");
    assert!(is(&problem), "unexpected problem: {err}");
    problem
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 50);
    let report = verify(&path, Some(&key().verifying_key())).unwrap();
    assert_eq!(report.events, 50);
    assert_eq!(report.sandbox, SBX);
    assert!(report.anchored);
    assert_eq!(verify_all(&path, None).unwrap().events, 50);
    assert!(!verify(&path, None).unwrap().anchored);

    let ls = lines(&path);
    assert_eq!(ls.len(), 51);
    assert!(ls[0].starts_with("{\"seq\":1,\"time\":\""), "{}", ls[0]);
    assert!(ls[0].contains(&format!(",\"prev\":\"{}\",\"hash\":\"", "0".repeat(64))));
    assert_eq!(report.last_hash, hash_of(&ls[49]));
    // The line minus its hash field is what is hashed.
    assert_eq!(rehash(&ls[10]), ls[10]);

    let events = read_events(&path).unwrap();
    assert_eq!(events.len(), 50);
    for (i, e) in events.iter().enumerate() {
        let (k, d) = sample(i as u64);
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.kind, k);
        assert_eq!(e.data, d);
        assert_eq!(e.sandbox, SBX);
        assert_eq!(e.hash, hash_of(&ls[i]));
        // Our own serialization of the event is the line.
        assert_eq!(
            crate::event::canonical_event_line(e).unwrap(),
            ls[i].as_bytes()
        );
    }
    let all: Vec<Entry> = EventReader::open(&path)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let Some(Entry::Head(h)) = all.last() else {
        panic!("no head")
    };
    assert_eq!(h.head.last_seq, 50);
    assert_eq!(h.head.public_key, public_key_hex(&key().verifying_key()));
}

#[test]
fn empty_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 0);
    let r = verify_all(&path, Some(&key().verifying_key())).unwrap();
    assert_eq!((r.events, r.last_hash.as_str()), (0, &*"0".repeat(64)));
}

#[test]
fn edited_field_is_a_hash_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 20);
    let mut ls = lines(&path);
    assert!(ls[4].contains("\"pid\":1004"));
    ls[4] = ls[4].replace("\"pid\":1004", "\"pid\":1005");
    write_lines(&path, &ls);
    expect_bad(&path, None, 5, |p| {
        matches!(p, Problem::HashMismatch { .. })
    });
}

#[test]
fn edited_and_rehashed_line_breaks_the_chain_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 20);
    let orig = lines(&path);
    let mut ls = orig.clone();
    ls[4] = rehash(&ls[4].replace("\"pid\":1004", "\"pid\":1005"));
    write_lines(&path, &ls);
    expect_bad(&path, None, 6, |p| matches!(p, Problem::BrokenChain { .. }));

    // The last event: the head no longer matches.
    let mut ls = orig.clone();
    let i = ls[19].find("\"time\":\"").unwrap() + 8 + 22;
    let d = if &ls[19][i..i + 1] == "0" { "1" } else { "0" };
    ls[19].replace_range(i..i + 1, d);
    ls[19] = rehash(&ls[19]);
    assert_ne!(ls[19], orig[19]);
    write_lines(&path, &ls);
    expect_bad(&path, None, 21, |p| {
        matches!(
            p,
            Problem::HeadMismatch {
                field: "last_hash",
                ..
            }
        )
    });
}

#[test]
fn deleted_line_is_a_seq_gap() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 20);
    let mut ls = lines(&path);
    ls.remove(4);
    write_lines(&path, &ls);
    let p = expect_bad(&path, None, 5, |p| matches!(p, Problem::SeqGap { .. }));
    assert_eq!(
        p,
        Problem::SeqGap {
            expected: 5,
            found: 6
        }
    );

    // Deleting the first line.
    let path = dir.path().join("b.jsonl");
    let w = AuditWriter::create(&path, SBX, key()).unwrap();
    w.append("a", json!({})).unwrap();
    w.append("b", json!({})).unwrap();
    w.close().unwrap();
    let mut ls = lines(&path);
    ls.remove(0);
    write_lines(&path, &ls);
    expect_bad(&path, None, 1, |p| {
        *p == Problem::SeqGap {
            expected: 1,
            found: 2,
        }
    });
}

#[test]
fn swapped_lines_are_a_seq_gap() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 20);
    let mut ls = lines(&path);
    ls.swap(9, 10);
    write_lines(&path, &ls);
    expect_bad(&path, None, 10, |p| {
        *p == Problem::SeqGap {
            expected: 10,
            found: 11,
        }
    });
}

#[test]
fn line_after_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 5);
    let orig = lines(&path);
    // A well-formed next event, chained correctly.
    let forged = seal(&format!(
        "{{\"seq\":6,\"time\":\"2026-01-01T00:00:00.000Z\",\"sandbox\":\"{SBX}\",\"kind\":\"copy_out\",\"data\":{{}},\"prev\":\"{}\"}}",
        hash_of(&orig[4])
    ));
    for extra in [forged.as_str(), "", "garbage"] {
        let mut ls = orig.clone();
        ls.push(extra.to_owned());
        write_lines(&path, &ls);
        expect_bad(&path, None, 7, |p| {
            *p == Problem::AfterHead { head_line: 6 }
        });
    }
    // Without a newline at the end, too.
    let mut s = std::fs::read_to_string(&path).unwrap();
    s.truncate(s.len() - "garbage\n".len());
    s.push('x');
    std::fs::write(&path, s).unwrap();
    expect_bad(&path, None, 7, |p| {
        *p == Problem::AfterHead { head_line: 6 }
    });
}

#[test]
fn forged_event_before_a_forged_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 5);
    let mut ls = lines(&path);
    ls.pop(); // the real head
    let forged = seal(&format!(
        "{{\"seq\":6,\"time\":\"2026-01-01T00:00:00.000Z\",\"sandbox\":\"{SBX}\",\"kind\":\"copy_out\",\"data\":{{\"path\":\"/etc/shadow\"}},\"prev\":\"{}\"}}",
        hash_of(&ls[4])
    ));
    let summary = |public_key: String| HeadSummary {
        sandbox: SBX.into(),
        last_seq: 6,
        last_hash: hash_of(&forged),
        events: 6,
        closed: "2026-01-01T00:00:01.000Z".into(),
        public_key,
    };
    ls.push(forged.clone());

    // Signed with the forger's own key: only an expected key catches it.
    let mut with_own = ls.clone();
    let own = summary(public_key_hex(&other_key().verifying_key()));
    with_own.push(
        String::from_utf8(head_line(&own, &other_key()))
            .unwrap()
            .trim_end()
            .to_owned(),
    );
    write_lines(&path, &with_own);
    let r = verify_all(&path, None).unwrap();
    assert!(!r.anchored);
    assert_eq!(r.public_key, other_key().verifying_key());
    expect_bad(&path, Some(&key().verifying_key()), 7, |p| {
        matches!(p, Problem::KeyMismatch { .. })
    });

    // Claiming the real key: the signature fails.
    let mut claiming = ls.clone();
    let claimed = summary(public_key_hex(&key().verifying_key()));
    claiming.push(
        String::from_utf8(head_line(&claimed, &other_key()))
            .unwrap()
            .trim_end()
            .to_owned(),
    );
    write_lines(&path, &claiming);
    expect_bad(&path, None, 7, |p| {
        matches!(p, Problem::BadSignature { .. })
    });
}

#[test]
fn truncation_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 10);
    let orig = std::fs::read(&path).unwrap();
    let ls = lines(&path);

    // The head dropped.
    write_lines(&path, &ls[..10]);
    expect_bad(&path, None, 11, |p| {
        *p == Problem::MissingHead { events: 10 }
    });
    // Events and head dropped at a line boundary.
    write_lines(&path, &ls[..4]);
    expect_bad(&path, None, 5, |p| *p == Problem::MissingHead { events: 4 });
    // Nothing left.
    std::fs::write(&path, "").unwrap();
    expect_bad(&path, None, 1, |p| *p == Problem::MissingHead { events: 0 });

    // Mid-line: in event 7, and in the head.
    let upto: usize = ls[..6].iter().map(|l| l.len() + 1).sum();
    std::fs::write(&path, &orig[..upto + 40]).unwrap();
    expect_bad(&path, None, 7, |p| *p == Problem::PartialLine);
    std::fs::write(&path, &orig[..orig.len() - 1]).unwrap();
    expect_bad(&path, None, 11, |p| *p == Problem::PartialLine);
}

#[test]
fn edited_head_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 10);
    let orig = lines(&path);

    let mut ls = orig.clone();
    ls[10] = ls[10].replace("\"last_seq\":10", "\"last_seq\":9");
    write_lines(&path, &ls);
    expect_bad(&path, None, 11, |p| {
        matches!(
            p,
            Problem::HeadMismatch {
                field: "last_seq",
                ..
            }
        )
    });

    // One signature digit changed.
    let mut ls = orig.clone();
    let n = ls[10].len();
    let c = if &ls[10][n - 3..n - 2] == "0" {
        "1"
    } else {
        "0"
    };
    ls[10].replace_range(n - 3..n - 2, c);
    write_lines(&path, &ls);
    expect_bad(&path, None, 11, |p| {
        matches!(p, Problem::BadSignature { .. })
    });

    // The last event deleted, head kept.
    let mut ls = orig.clone();
    ls.remove(9);
    write_lines(&path, &ls);
    expect_bad(&path, None, 10, |p| {
        matches!(
            p,
            Problem::HeadMismatch {
                field: "last_seq",
                ..
            }
        )
    });

    // The head's closing time changed: the signature covers it.
    let mut ls = orig.clone();
    let i = ls[10].find("\"closed\":\"").unwrap() + 10;
    let y = if &ls[10][i..i + 4] == "2099" {
        "2098"
    } else {
        "2099"
    };
    ls[10].replace_range(i..i + 4, y);
    write_lines(&path, &ls);
    expect_bad(&path, None, 11, |p| {
        matches!(p, Problem::BadSignature { .. })
    });
}

#[test]
fn wrong_expected_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 3);
    expect_bad(&path, Some(&other_key().verifying_key()), 4, |p| {
        matches!(p, Problem::KeyMismatch { .. })
    });
}

#[test]
fn non_canonical_and_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 8);
    let orig = lines(&path);
    // Line 5 is a process.exec event.
    let l = &orig[4];
    assert!(l.contains("\"cwd\":\"/workspace\""));
    let v: serde_json::Value = serde_json::from_str(l).unwrap();
    for variant in [
        // Top-level fields reordered (seq after time). Built by hand:
        // whether serde_json reorders keys depends on its preserve_order
        // feature, which another crate of a workspace may turn on.
        {
            let seq = format!("\"seq\":{},", v["seq"]);
            let time = format!("\"time\":{},", v["time"]);
            l.replacen(&format!("{{{seq}{time}"), &format!("{{{time}{seq}"), 1)
        },
        // Whitespace.
        l.replacen("\"seq\":", "\"seq\": ", 1),
        l.replacen("}", "} ", 1),
        // Other escapes of the same characters.
        l.replacen("/workspace", "\\/workspace", 1),
        l.replacen("\"cwd\"", "\"\\u0063wd\"", 1),
        l.replacen("\\n", "\\u000a", 1),
        // Keys out of order inside data.
        l.replacen("{\"argv\":", "{\"zz\":1,\"argv\":", 1),
        // A number in another notation.
        l.replacen("\"pid\":1004", "\"pid\":1004.0e0", 1),
    ] {
        assert_ne!(&variant, l);
        let mut ls = orig.clone();
        ls[4] = variant.clone();
        write_lines(&path, &ls);
        expect_bad(&path, None, 5, |p| {
            matches!(p, Problem::NotCanonical { .. })
        });
    }
    for (bad, what) in [
        ("hello", "not JSON"),
        ("{\"seq\":3}", "missing fields"),
        ("{\"seq\":3,\"time\":\"yesterday\"", "cut"),
    ] {
        let mut ls = orig.clone();
        ls[2] = bad.to_owned();
        write_lines(&path, &ls);
        expect_bad(&path, None, 3, |p| matches!(p, Problem::Malformed { .. }));
        let _ = what;
    }
    // A valid-looking time that is not a date, re-hashed: content rule.
    let mut ls = orig.clone();
    let i = ls[3].find("\"time\":\"").unwrap() + 8;
    ls[3].replace_range(i + 5..i + 7, "13");
    ls[3] = rehash(&ls[3]);
    write_lines(&path, &ls);
    expect_bad(&path, None, 4, |p| matches!(p, Problem::Malformed { .. }));
    // Invalid UTF-8.
    let mut bytes = Vec::new();
    for (i, l) in orig.iter().enumerate() {
        if i == 5 {
            bytes.extend_from_slice(&l.as_bytes()[..30]);
            bytes.push(0xff);
            bytes.extend_from_slice(&l.as_bytes()[31..]);
        } else {
            bytes.extend_from_slice(l.as_bytes());
        }
        bytes.push(b'\n');
    }
    std::fs::write(&path, bytes).unwrap();
    expect_bad(&path, None, 6, |p| matches!(p, Problem::Malformed { .. }));
}

#[test]
fn other_sandbox_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 8);
    let mut ls = lines(&path);
    ls[3] = rehash(&ls[3].replace(SBX, "sbx-other"));
    write_lines(&path, &ls);
    expect_bad(&path, None, 4, |p| {
        matches!(p, Problem::SandboxMismatch { .. })
    });
}

#[test]
fn long_log_over_many_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 3000);
    assert_eq!(
        verify_all(&path, Some(&key().verifying_key()))
            .unwrap()
            .events,
        3000
    );
    let mut ls = lines(&path);
    ls[2497] = ls[2497].replace("\"port\":443", "\"port\":444");
    write_lines(&path, &ls);
    expect_bad(&path, None, 2498, |p| {
        matches!(p, Problem::HashMismatch { .. })
    });
}

#[test]
fn overlong_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 3);
    let mut ls = lines(&path);
    ls.insert(1, "x".repeat(MAX_LINE + 10));
    write_lines(&path, &ls);
    let err = verify(&path, None).unwrap_err();
    assert_eq!(
        (err.line(), err.problem()),
        (Some(2), Some(&Problem::TooLong))
    );
}

#[test]
fn concurrent_appends_make_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let w = Arc::new(AuditWriter::create(&path, SBX, key()).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let w = Arc::clone(&w);
            std::thread::spawn(move || {
                (0..2500)
                    .map(|i| {
                        w.append("process.exec", json!({"thread": t, "i": i}))
                            .unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=10_000).collect::<Vec<_>>());
    let w = Arc::into_inner(w).unwrap();
    assert_eq!(w.close().unwrap().last_seq, 10_000);
    assert_eq!(
        verify_all(&path, Some(&key().verifying_key()))
            .unwrap()
            .events,
        10_000
    );
    // Each thread's own events stay in its order.
    let events = read_events(&path).unwrap();
    for t in 0..4 {
        let is: Vec<u64> = events
            .iter()
            .filter(|e| e.data["thread"] == t)
            .map(|e| e.data["i"].as_u64().unwrap())
            .collect();
        assert_eq!(is, (0..2500).collect::<Vec<_>>());
    }
}

#[test]
fn writer_refuses_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    std::fs::write(&path, "precious\n").unwrap();
    let err = AuditWriter::create(&path, SBX, key()).unwrap_err();
    assert!(matches!(err, AuditError::Exists { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious\n");
}

#[test]
fn write_failure_is_sticky() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let w = AuditWriter::from_file(
        full,
        Path::new("/dev/full"),
        SBX,
        key(),
        WriterOptions::default(),
    )
    .unwrap();
    // The first appends may be accepted before the thread's write fails.
    let t = Instant::now();
    let first_err = loop {
        match w.append("process.exec", json!({"n": 1})) {
            Ok(_) => assert!(t.elapsed() < Duration::from_secs(10), "no failure seen"),
            Err(e) => break e,
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(matches!(first_err, AuditError::Write { .. }), "{first_err}");
    assert!(first_err.to_string().contains("/dev/full"), "{first_err}");
    for _ in 0..10 {
        let e = w.append("process.exec", json!({})).unwrap_err();
        assert!(
            matches!(&e, AuditError::Write { source, .. } if source.raw_os_error() == Some(28)),
            "{e}"
        );
    }
    assert!(matches!(w.close(), Err(AuditError::Write { .. })));
}

#[test]
fn a_stuck_disk_fails_the_append_within_the_deadline() {
    // A pipe nobody reads stands for a disk that never completes a write.
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    let opts = WriterOptions {
        queue_bytes: 4096,
        stall_deadline: Duration::from_millis(200),
    };
    let w = AuditWriter::from_file(File::from(wr), Path::new("pipe"), SBX, key(), opts).unwrap();
    let t = Instant::now();
    let err = loop {
        match w.append("net.decision", json!({"pad": "x".repeat(200)})) {
            Ok(_) => assert!(t.elapsed() < Duration::from_secs(10)),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, AuditError::Stalled { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // Sticky, and immediate.
    let t = Instant::now();
    assert!(matches!(
        w.append("x", json!({})),
        Err(AuditError::Stalled { .. })
    ));
    assert!(t.elapsed() < Duration::from_millis(100));
    // Dropping does not hang on the stuck thread.
    let t = Instant::now();
    drop(w);
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(rd);
}

#[test]
fn drop_without_close_leaves_no_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let w = AuditWriter::create(&path, SBX, key()).unwrap();
    for i in 0..3 {
        w.append("process.exec", json!({"i": i})).unwrap();
    }
    drop(w);
    expect_bad(&path, None, 4, |p| *p == Problem::MissingHead { events: 3 });
    assert_eq!(read_events(&path).unwrap().len(), 3);
}

#[test]
fn bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    assert!(matches!(
        AuditWriter::create(&path, "bad id", key()),
        Err(AuditError::InvalidSandboxId { .. })
    ));
    assert!(matches!(
        AuditWriter::create(&path, "", key()),
        Err(AuditError::InvalidSandboxId { .. })
    ));
    let w = AuditWriter::create(&path, SBX, key()).unwrap();
    for k in ["", "Process.Exec", "a b", "x\"y", &"k".repeat(65)] {
        assert!(
            matches!(w.append(k, json!({})), Err(AuditError::InvalidKind { .. })),
            "{k}"
        );
    }
    for d in [json!(null), json!([1]), json!("s"), json!(1)] {
        assert!(matches!(
            w.append("k", d),
            Err(AuditError::DataNotObject { .. })
        ));
    }
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!({ "d": deep });
    }
    assert!(matches!(
        w.append("k", deep),
        Err(AuditError::DataTooDeep { .. })
    ));
    // Refusals are not failures: the log goes on.
    assert_eq!(w.append("k", json!({"ok": true})).unwrap(), 1);
    w.close().unwrap();
    assert_eq!(verify_all(&path, None).unwrap().events, 1);
}

#[test]
fn bench_runs() {
    let dir = tempfile::tempdir().unwrap();
    let r = bench::run(2000, dir.path()).unwrap();
    assert_eq!(r.events, 2000);
    assert!(r.append.events_per_sec > 0.0 && r.verify.events_per_sec > 0.0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `AUDIT_BENCH_N=1000000 cargo test --release -p airlock-audit -- --ignored --nocapture bench_print`
#[test]
#[ignore = "benchmark; run by hand in release mode"]
fn bench_print() {
    let n = std::env::var("AUDIT_BENCH_N").map_or(200_000, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let r = bench::run(n, dir.path()).unwrap();
    println!("{r:#?}");
    println!(
        "append {:.0}/s verify {:.0}/s ({} threads), {} bytes/event",
        r.append.events_per_sec,
        r.verify.events_per_sec,
        r.verify_threads,
        r.file_bytes / r.events
    );
}

/// `AUDIT_BENCH_N=1000000 cargo test --release -p airlock-audit -- --ignored --nocapture bench_verify_only`
#[test]
#[ignore = "benchmark; run by hand in release mode"]
fn bench_verify_only() {
    let n: u64 = std::env::var("AUDIT_BENCH_N").map_or(200_000, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let w = AuditWriter::create(&path, "bench-0123456789abcdef", key()).unwrap();
    for i in 0..n {
        w.append("process.exec", json!({"argv": ["/usr/bin/python3", "-c", "print(42)"], "cwd": "/workspace", "pid": 1000 + i % 30000, "uid": 1000})).unwrap();
    }
    w.close().unwrap();
    for threads in [1, 2, 1, 2] {
        let t = Tuning {
            threads,
            ..Tuning::default()
        };
        let start = Instant::now();
        verify_inner(File::open(&path).unwrap(), None, None, &t, None).unwrap();
        let e = start.elapsed();
        println!(
            "threads {threads}: {:.0} events/s",
            n as f64 / e.as_secs_f64()
        );
    }
}

#[test]
fn flush_puts_every_appended_event_in_the_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let w = Arc::new(AuditWriter::create(&path, SBX, key()).unwrap());
    // Nothing to write: returns at once.
    w.flush().unwrap();
    assert_eq!(lines(&path).len(), 0);
    for round in 1..=50_u64 {
        let (k, d) = sample(round);
        w.append(k, d).unwrap();
        // Without flush the line would wait for the writer's batch timer.
        w.flush().unwrap();
        let got = lines(&path);
        assert_eq!(got.len() as u64, round, "after flush {round}");
        assert!(got
            .last()
            .unwrap()
            .starts_with(&format!("{{\"seq\":{round},")));
    }
    // Many threads appending and flushing: each sees its own event.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let w = Arc::clone(&w);
            let path = path.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let seq = w.append(kinds::LIMIT_HIT, json!({"t": t, "i": i})).unwrap();
                    w.flush().unwrap();
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert!(text.contains(&format!("{{\"seq\":{seq},")), "seq {seq}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let w = Arc::into_inner(w).unwrap();
    assert_eq!(w.close().unwrap().events, 250);
    verify(&path, Some(&key().verifying_key())).unwrap();
}
