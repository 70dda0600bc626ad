//! Throughput of the writer and of the verifier, for `airlock bench audit`.
//!
//! Append: one thread appends `n` typical events (about 300 bytes a line)
//! to a fresh file; the total includes `close` (head, fsync of file and
//! directory). Batch times are the caller's time per 1,000 appends.
//! Verify: the same file, from the page cache, with the default verifier
//! (two threads hash when two CPUs are available); batch times are per
//! chunk read, scaled to 1,000 events.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::key::{random_signing_key, KeyError};
use crate::verify::{verify_inner, Tuning, VerifyError};
use crate::writer::{AuditError, AuditWriter};

/// Events per batch in the batch-time percentiles.
pub const BATCH: u64 = 1000;

/// Timing of one phase.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Wall time of the whole phase.
    pub total: Duration,
    /// Events per second over the whole phase.
    pub events_per_sec: f64,
    /// Median time per [`BATCH`] events.
    pub batch_p50: Duration,
    /// 99th percentile time per [`BATCH`] events.
    pub batch_p99: Duration,
    /// Slowest [`BATCH`] events.
    pub batch_max: Duration,
}

/// Result of [`run`].
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Events written and verified.
    pub events: u64,
    /// Size of the log file.
    pub file_bytes: u64,
    /// Threads the verifier used for hashing.
    pub verify_threads: usize,
    /// Appending, including close.
    pub append: Phase,
    /// Verifying.
    pub verify: Phase,
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The writer failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The log did not verify (a bug) or could not be read.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// No key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Zero events asked for.
    #[error("the number of events must be at least {BATCH}")]
    TooFew,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn phase(total: Duration, events: u64, mut batches: Vec<Duration>) -> Phase {
    batches.sort();
    Phase {
        total,
        events_per_sec: events as f64 / total.as_secs_f64().max(1e-9),
        batch_p50: percentile(&batches, 0.50),
        batch_p99: percentile(&batches, 0.99),
        batch_max: batches.last().copied().unwrap_or_default(),
    }
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `events` events to a new file in `dir`, verifies it, removes it.
pub fn run(events: u64, dir: &Path) -> Result<BenchReport, BenchError> {
    if events < BATCH {
        return Err(BenchError::TooFew);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let path = dir.join(format!(
        "airlock-audit-bench-{}-{nanos}.jsonl",
        std::process::id()
    ));
    let cleanup = Cleanup(path.clone());
    let key = random_signing_key()?;
    let public = key.verifying_key();

    let w = AuditWriter::create(&path, "bench-0123456789abcdef", key)?;
    let mut batches = Vec::with_capacity((events / BATCH) as usize + 1);
    let start = Instant::now();
    let mut batch_start = start;
    for i in 0..events {
        w.append(
            "process.exec",
            json!({
                "argv": ["/usr/bin/python3", "-c", "print(42)"],
                "cwd": "/workspace",
                "pid": 1000 + i % 30000,
                "uid": 1000,
            }),
        )?;
        if (i + 1) % BATCH == 0 {
            let now = Instant::now();
            batches.push(now - batch_start);
            batch_start = now;
        }
    }
    w.close()?;
    let append = phase(start.elapsed(), events, batches);
    let file_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());

    let tuning = Tuning::default();
    let mut chunk_times = Vec::new();
    let file = std::fs::File::open(&path).map_err(|e| VerifyError::Io {
        path: Some(path.clone()),
        source: e,
    })?;
    let start = Instant::now();
    let mut last = start;
    let mut on_chunk = |lines: u64| {
        let now = Instant::now();
        if lines > 0 {
            let per = (now - last).as_secs_f64() * BATCH as f64 / lines as f64;
            chunk_times.push(Duration::from_secs_f64(per));
        }
        last = now;
    };
    let report = verify_inner(
        file,
        Some(&path),
        Some(&public),
        &tuning,
        Some(&mut on_chunk),
    )?;
    let total = start.elapsed();
    debug_assert_eq!(report.events, events);
    let verify = phase(total, events, chunk_times);
    drop(cleanup);
    Ok(BenchReport {
        events,
        file_bytes,
        verify_threads: tuning.threads,
        append,
        verify,
    })
}
