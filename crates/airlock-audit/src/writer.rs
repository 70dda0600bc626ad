//! The append-only writer.
//!
//! Callers hash: `append` assigns the seq, timestamps, serializes and
//! hashes under one short lock, then leaves the line in a bounded pending
//! buffer. A single thread takes the whole buffer at a time and writes it
//! with one `write` call, once [`FLUSH_BYTES`] are pending or the oldest
//! pending line is [`FLUSH_AFTER`] old, whichever comes first (so a busy
//! log costs one wake-up per batch, not per event). A caller waits for
//! room only up to a deadline; past it, and after any failed write, the
//! log is broken for good and every later `append` fails (fail closed: no
//! silent gap). Condition variables are only signalled when someone
//! waits on them: a signal is a system call.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use crate::event::{self, HeadSummary, MAX_LINE, ZERO_HASH};
use crate::{canon, hex, time};

/// Errors of the writer.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// `create` found a file in the way.
    #[error("audit log {path} already exists; refusing to overwrite it")]
    Exists {
        /// The log file.
        path: PathBuf,
    },
    /// Creating the log file or its writer thread failed.
    #[error("creating audit log {path}: {source}")]
    Create {
        /// The log file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A write failed; this and every later append fail.
    #[error("writing audit log {path}: {source}; the log accepts no more events")]
    Write {
        /// The log file.
        path: PathBuf,
        /// The first write error.
        source: Arc<io::Error>,
    },
    /// The pending buffer stayed full past the deadline; this and every
    /// later append fail.
    #[error(
        "audit log {path}: the writer queue stayed full for {waited:?} (disk too slow or \
         stuck); the log accepts no more events"
    )]
    Stalled {
        /// The log file.
        path: PathBuf,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The writer thread died.
    #[error("audit log {path}: the writer thread panicked")]
    WriterPanicked {
        /// The log file.
        path: PathBuf,
    },
    /// Flushing to disk at close failed.
    #[error("syncing audit log {path}: {source}")]
    Sync {
        /// The log file or its directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// An event kind outside the allowed alphabet.
    #[error("invalid event kind {kind:?}: expected 1 to 64 characters from a-z 0-9 . _ -")]
    InvalidKind {
        /// The kind given.
        kind: String,
    },
    /// A sandbox id outside the allowed alphabet.
    #[error("invalid sandbox id {id:?}: expected 1 to 128 characters from A-Z a-z 0-9 . _ : -")]
    InvalidSandboxId {
        /// The id given.
        id: String,
    },
    /// Event data that is not a JSON object.
    #[error("data of event {kind} must be a JSON object")]
    DataNotObject {
        /// The event kind.
        kind: String,
    },
    /// Event data nested too deeply.
    #[error("data of event {kind} is nested deeper than {max} levels", max = canon::MAX_DEPTH)]
    DataTooDeep {
        /// The event kind.
        kind: String,
    },
    /// An event line longer than [`MAX_LINE`].
    #[error("event {kind} would be {bytes} bytes long, more than the limit of {max}", max = MAX_LINE)]
    EventTooLarge {
        /// The event kind.
        kind: String,
        /// Its serialized size.
        bytes: usize,
    },
}

/// Tuning of an [`AuditWriter`].
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Bytes of events that may wait for the disk (default 4 MiB).
    pub queue_bytes: usize,
    /// How long `append` waits for room before the log is declared broken
    /// (default 10 s). Also bounds how long dropping an unclosed writer
    /// waits for its thread.
    pub stall_deadline: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            queue_bytes: 4 << 20,
            stall_deadline: Duration::from_secs(10),
        }
    }
}

/// Pending bytes that wake the writer thread at once.
const FLUSH_BYTES: usize = 256 << 10;
/// Longest time a line waits in memory before the writer thread writes it.
const FLUSH_AFTER: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
enum Failure {
    Io(Arc<io::Error>),
    Stalled(Duration),
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    prev: [u8; 32],
    pending: Vec<u8>,
    failure: Option<Failure>,
    closing: bool,
    thread_done: bool,
    /// When `pending` last went from empty to not empty.
    pending_since: Option<Instant>,
    /// The writer thread sleeps on `work`.
    writer_idle: bool,
    /// Threads sleeping on `room`.
    room_waiters: usize,
    /// Every event with a seq below this is in the file.
    written_below: u64,
    /// Threads in `flush`: the writer does not wait for a batch to fill.
    flush_waiters: usize,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    /// `"sandbox":"<id>"`, ready to copy.
    sandbox_field: Vec<u8>,
    opts: WriterOptions,
    state: Mutex<State>,
    /// Signalled when pending has data or closing is set.
    work: Condvar,
    /// Signalled when pending was emptied, a batch was written, a failure
    /// was recorded or the thread ended.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes an idle writer thread, then sleeps on `room` (counted in
    /// `room_waiters`) for at most `timeout`.
    fn wake_writer_and_wait<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        if st.writer_idle {
            st.writer_idle = false;
            self.work.notify_one();
        }
        st.room_waiters += 1;
        let mut st = self
            .room
            .wait_timeout(st, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        st.room_waiters -= 1;
        st
    }

    fn error(&self, f: &Failure) -> AuditError {
        match f {
            Failure::Io(e) => AuditError::Write {
                path: self.path.clone(),
                source: e.clone(),
            },
            Failure::Stalled(waited) => AuditError::Stalled {
                path: self.path.clone(),
                waited: *waited,
            },
        }
    }
}

/// The writer of one sandbox's audit log. `append` may be called from
/// many threads at once; `close` writes the signed head.
#[derive(Debug)]
pub struct AuditWriter {
    shared: Arc<Shared>,
    sandbox: String,
    key: SigningKey,
    dir_to_sync: Option<PathBuf>,
    thread: Option<JoinHandle<Option<File>>>,
}

impl AuditWriter {
    /// Creates the log at `path` (never over an existing file) with the
    /// default [`WriterOptions`].
    pub fn create(
        path: impl AsRef<Path>,
        sandbox_id: &str,
        signing_key: SigningKey,
    ) -> Result<AuditWriter, AuditError> {
        Self::create_with(path, sandbox_id, signing_key, WriterOptions::default())
    }

    /// [`create`](Self::create) with explicit options.
    pub fn create_with(
        path: impl AsRef<Path>,
        sandbox_id: &str,
        signing_key: SigningKey,
        opts: WriterOptions,
    ) -> Result<AuditWriter, AuditError> {
        let path = path.as_ref();
        check_sandbox(sandbox_id)?;
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => AuditError::Exists {
                    path: path.to_owned(),
                },
                _ => AuditError::Create {
                    path: path.to_owned(),
                    source: e,
                },
            })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        Self::start(file, path, Some(dir), sandbox_id, signing_key, opts)
    }

    /// A writer over an already open file (tests use `/dev/full`).
    #[cfg(test)]
    pub(crate) fn from_file(
        file: File,
        path: &Path,
        sandbox_id: &str,
        signing_key: SigningKey,
        opts: WriterOptions,
    ) -> Result<AuditWriter, AuditError> {
        check_sandbox(sandbox_id)?;
        Self::start(file, path, None, sandbox_id, signing_key, opts)
    }

    fn start(
        file: File,
        path: &Path,
        dir_to_sync: Option<PathBuf>,
        sandbox_id: &str,
        key: SigningKey,
        opts: WriterOptions,
    ) -> Result<AuditWriter, AuditError> {
        let mut sandbox_field = b",\"sandbox\":".to_vec();
        canon::write_str(sandbox_id, &mut sandbox_field);
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            sandbox_field,
            state: Mutex::new(State {
                next_seq: 1,
                prev: ZERO_HASH,
                pending: Vec::with_capacity(opts.queue_bytes.min(64 << 10)),
                failure: None,
                closing: false,
                thread_done: false,
                pending_since: None,
                writer_idle: false,
                room_waiters: 0,
                written_below: 1,
                flush_waiters: 0,
            }),
            opts,
            work: Condvar::new(),
            room: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("airlock-audit".into())
            .spawn(move || write_loop(&for_thread, file))
            .map_err(|e| AuditError::Create {
                path: path.to_owned(),
                source: e,
            })?;
        Ok(AuditWriter {
            shared,
            sandbox: sandbox_id.to_owned(),
            key,
            dir_to_sync,
            thread: Some(thread),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The sandbox id on every line.
    pub fn sandbox_id(&self) -> &str {
        &self.sandbox
    }

    /// Appends an event and returns its seq. `data` must be a JSON object.
    ///
    /// Waits at most [`WriterOptions::stall_deadline`] for room in the
    /// queue. Once a write has failed or the deadline has passed, this and
    /// every later call return an error.
    pub fn append(&self, kind: &str, data: serde_json::Value) -> Result<u64, AuditError> {
        if !event::valid_kind(kind.as_bytes()) {
            return Err(AuditError::InvalidKind {
                kind: kind.to_owned(),
            });
        }
        let serde_json::Value::Object(map) = &data else {
            return Err(AuditError::DataNotObject {
                kind: kind.to_owned(),
            });
        };
        // Everything that does not depend on seq, time or prev is built
        // before taking the lock: `,"sandbox":..,"kind":..,"data":{..},"prev":"`.
        let mut middle = Vec::with_capacity(256);
        middle.extend_from_slice(&self.shared.sandbox_field);
        middle.extend_from_slice(b",\"kind\":\"");
        middle.extend_from_slice(kind.as_bytes());
        middle.extend_from_slice(b"\",\"data\":");
        canon::write_object(map, &mut middle).map_err(|_| AuditError::DataTooDeep {
            kind: kind.to_owned(),
        })?;
        middle.extend_from_slice(b",\"prev\":\"");
        // {"seq":<20>,"time":"<24>" + middle + <64>"} + hash suffix + \n
        let line_len = 8 + 20 + 9 + time::LEN + 1 + middle.len() + 64 + 2 + 75 + 1;
        if line_len > MAX_LINE {
            return Err(AuditError::EventTooLarge {
                kind: kind.to_owned(),
                bytes: line_len,
            });
        }

        let sh = &*self.shared;
        let started = Instant::now();
        let deadline = started + sh.opts.stall_deadline;
        let mut st = sh.lock();
        loop {
            if let Some(f) = &st.failure {
                return Err(sh.error(f));
            }
            if st.pending.is_empty() || st.pending.len() + line_len <= sh.opts.queue_bytes {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                let f = Failure::Stalled(now - started);
                let err = sh.error(&f);
                st.failure = Some(f);
                if st.room_waiters > 0 {
                    sh.room.notify_all();
                }
                return Err(err);
            }
            st = sh.wake_writer_and_wait(st, deadline - now);
        }

        let seq = st.next_seq;
        let prev = st.prev;
        let buf = &mut st.pending;
        let start = buf.len();
        buf.extend_from_slice(b"{\"seq\":");
        buf.extend_from_slice(seq.to_string().as_bytes());
        buf.extend_from_slice(b",\"time\":\"");
        time::format_into(SystemTime::now(), buf);
        buf.push(b'"');
        buf.extend_from_slice(&middle);
        hex::encode_into(&prev, buf);
        buf.extend_from_slice(b"\"}");
        let hash: [u8; 32] = Sha256::digest(&buf[start..]).into();
        buf.pop();
        buf.extend_from_slice(b",\"hash\":\"");
        hex::encode_into(&hash, buf);
        buf.extend_from_slice(b"\"}\n");
        st.prev = hash;
        st.next_seq = seq + 1;
        let first = st.pending_since.is_none();
        if first {
            st.pending_since = Some(Instant::now());
        }
        // Wake an idle writer to start its timer, or to write a full batch.
        if st.writer_idle && (first || st.pending.len() >= FLUSH_BYTES) {
            st.writer_idle = false;
            sh.work.notify_one();
        }
        Ok(seq)
    }

    /// Waits until every event appended before this call is in the file
    /// (written, not synced), so that a reader of the file sees them. At
    /// most [`WriterOptions::stall_deadline`]; fails if the log broke.
    pub fn flush(&self) -> Result<(), AuditError> {
        let sh = &*self.shared;
        let started = Instant::now();
        let deadline = started + sh.opts.stall_deadline;
        let mut st = sh.lock();
        let target = st.next_seq;
        loop {
            if let Some(f) = &st.failure {
                return Err(sh.error(f));
            }
            if st.written_below >= target {
                return Ok(());
            }
            let now = Instant::now();
            if st.thread_done || now >= deadline {
                return Err(sh.error(&Failure::Stalled(now - started)));
            }
            st.flush_waiters += 1;
            st = sh.wake_writer_and_wait(st, deadline - now);
            st.flush_waiters -= 1;
        }
    }

    /// Writes out every pending event, then the signed head; syncs the
    /// file and its directory. Fails, without a head, if the log broke.
    pub fn close(mut self) -> Result<HeadSummary, AuditError> {
        let sh = Arc::clone(&self.shared);
        sh.lock().closing = true;
        sh.work.notify_all();
        let file = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(file)) => file,
            _ => {
                return Err(AuditError::WriterPanicked {
                    path: sh.path.clone(),
                })
            }
        };
        let (last_seq, last_hash) = {
            let st = sh.lock();
            if let Some(f) = &st.failure {
                return Err(sh.error(f));
            }
            (st.next_seq - 1, st.prev)
        };
        let Some(mut file) = file else {
            return Err(AuditError::WriterPanicked {
                path: sh.path.clone(),
            });
        };
        let head = HeadSummary {
            sandbox: self.sandbox.clone(),
            last_seq,
            last_hash: hex::encode(&last_hash),
            events: last_seq,
            closed: time::format(SystemTime::now()),
            public_key: crate::key::public_key_hex(&self.key.verifying_key()),
        };
        let line = event::head_line(&head, &self.key);
        let sync_err = |path: &Path| {
            let path = path.to_owned();
            move |e| AuditError::Sync { path, source: e }
        };
        if let Err(e) = file.write_all(&line) {
            return Err(AuditError::Write {
                path: sh.path.clone(),
                source: Arc::new(e),
            });
        }
        file.sync_all().map_err(sync_err(&sh.path))?;
        if let Some(dir) = &self.dir_to_sync {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(sync_err(dir))?;
        }
        Ok(head)
    }
}

impl Drop for AuditWriter {
    /// Without `close`: write out what is pending, but no head, waiting
    /// for the thread at most the stall deadline.
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let sh = &*self.shared;
        let deadline = Instant::now() + sh.opts.stall_deadline;
        let mut st = sh.lock();
        st.closing = true;
        sh.work.notify_all();
        while !st.thread_done {
            let now = Instant::now();
            if now >= deadline {
                // Leave the thread behind rather than hang.
                return;
            }
            st.room_waiters += 1;
            st = sh
                .room
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            st.room_waiters -= 1;
        }
        drop(st);
        let _ = thread.join();
    }
}

fn check_sandbox(id: &str) -> Result<(), AuditError> {
    if event::valid_sandbox(id.as_bytes()) {
        Ok(())
    } else {
        Err(AuditError::InvalidSandboxId { id: id.to_owned() })
    }
}

/// The writer thread: wait for a batch, swap out the pending buffer,
/// write it, repeat. Returns the file when closing with nothing left,
/// `None` after a failure.
fn write_loop(sh: &Shared, mut file: File) -> Option<File> {
    let mut batch: Vec<u8> = Vec::with_capacity(sh.opts.queue_bytes.min(64 << 10));
    let result = loop {
        let mut st = sh.lock();
        loop {
            if st.closing
                || st.pending.len() >= FLUSH_BYTES.min(sh.opts.queue_bytes)
                || (st.flush_waiters > 0 && !st.pending.is_empty())
            {
                break;
            }
            let waited = st.pending_since.map(|t| t.elapsed());
            st.writer_idle = true;
            st = match waited {
                None => sh.work.wait(st).unwrap_or_else(PoisonError::into_inner),
                Some(w) if w >= FLUSH_AFTER => break,
                Some(w) => {
                    sh.work
                        .wait_timeout(st, FLUSH_AFTER - w)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        st.writer_idle = false;
        if st.pending.is_empty() {
            // Only when closing.
            break Some(file);
        }
        std::mem::swap(&mut st.pending, &mut batch);
        st.pending_since = None;
        let upto = st.next_seq;
        if st.room_waiters > 0 {
            sh.room.notify_all();
        }
        drop(st);
        if let Err(e) = file.write_all(&batch) {
            let mut st = sh.lock();
            st.failure.get_or_insert(Failure::Io(Arc::new(e)));
            break None;
        }
        batch.clear();
        let mut st = sh.lock();
        st.written_below = upto;
        if st.flush_waiters > 0 {
            sh.room.notify_all();
        }
        drop(st);
    };
    let mut st = sh.lock();
    st.thread_done = true;
    st.writer_idle = false;
    if st.room_waiters > 0 {
        sh.room.notify_all();
    }
    result
}
