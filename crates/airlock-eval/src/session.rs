//! The scenario's sandbox: one sandbox for all of a scenario's tool calls,
//! destroyed when the scenario ends.
//!
//! Its payload is a small POSIX shell loop, the tool server ([`SERVER`]),
//! that reads one request per line on its stdin (a pipe from the harness):
//! a nonce, then the call's argv quoted for the shell. It runs the call in
//! a subshell (stdin `/dev/null`, stderr merged into stdout, the workspace
//! as its directory) and then prints a line with the nonce and the exit
//! status. The harness reads the server's stdout up to that line. The
//! server starts no helper program of its own, so the exec telemetry of the
//! audit log shows the server once and then exactly the calls' commands.
//!
//! Everything in the sandbox is untrusted, the server included: a call can
//! kill it, flood its output or fake an answer for its own call. None of
//! that reaches outside the sandbox. The harness bounds what it keeps,
//! waits at most the call's timeout, and then stops the sandbox; the next
//! call starts a fresh one on the same workspace.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use airlock_runtime::{RunRequest, RuntimeError, SessionReport};

/// The tool server (`sh -c SERVER airlock-tools WORKSPACE`). `$nl` is a
/// newline, which requests use inside quoted arguments (a request is one
/// line).
pub const SERVER: &str = "nl='
'
cd -- \"$1\" || exit 125
while IFS= read -r line; do
  n=${line%% *}
  c=${line#* }
  (eval \"$c\") </dev/null 2>&1
  printf '\\n%s %s\\n' \"$n\" \"$?\"
done
";

/// Most output bytes kept per call (the rest is counted).
pub const KEEP: usize = 64 * 1024;
/// Most bytes of background output shown at the start of a call.
const STALE_KEEP: usize = 2048;
/// Longest exit status text in an answer line.
const MAX_STATUS: usize = 12;
/// How long the sandbox may take to start its server.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a finished session may take to wind down before it is killed.
const END_TIMEOUT: Duration = Duration::from_secs(5);

enum Msg {
    Stdin(OwnedFd),
    Out(Vec<u8>),
    /// Output bytes dropped in an overflow.
    Skipped(u64),
}

/// Most output bytes queued for the harness. Past it (a flood faster than
/// the harness reads, or while no call waits) the output in between is
/// counted and only its last [`OVERFLOW_TAIL`] bytes are kept, so that the
/// answer line that ends a call still arrives.
const MAX_QUEUED: usize = 4 << 20;
/// What is kept of output that overflowed the queue: its end.
const OVERFLOW_TAIL: usize = 64 * 1024;

struct ChannelSink {
    tx: mpsc::Sender<Msg>,
    abort: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    /// Overflowed bytes not sent (beyond `tail`).
    skipped: u64,
    tail: Vec<u8>,
}

impl ChannelSink {
    fn send(&mut self, d: Vec<u8>) {
        self.queued.fetch_add(d.len(), Ordering::SeqCst);
        let _ = self.tx.send(Msg::Out(d));
    }

    fn out(&mut self, d: &[u8]) {
        let room = |q: &AtomicUsize, n: usize| q.load(Ordering::SeqCst) + n <= MAX_QUEUED;
        if self.tail.is_empty() && room(&self.queued, d.len()) {
            self.send(d.to_vec());
            return;
        }
        self.tail.extend_from_slice(d);
        if self.tail.len() > OVERFLOW_TAIL {
            let cut = self.tail.len() - OVERFLOW_TAIL;
            self.tail.drain(..cut);
            self.skipped += cut as u64;
        }
        self.flush();
    }

    /// Sends the overflow's count and tail, room or not (the run is over,
    /// nothing more comes).
    fn flush_at_end(&mut self) {
        if self.skipped > 0 {
            let _ = self.tx.send(Msg::Skipped(self.skipped));
            self.skipped = 0;
        }
        if !self.tail.is_empty() {
            let t = std::mem::take(&mut self.tail);
            self.send(t);
        }
    }

    /// Sends the overflow's count and tail once there is room again.
    fn flush(&mut self) {
        if self.tail.is_empty() || self.queued.load(Ordering::SeqCst) + self.tail.len() > MAX_QUEUED
        {
            return;
        }
        if self.skipped > 0 {
            let _ = self.tx.send(Msg::Skipped(self.skipped));
            self.skipped = 0;
        }
        let t = std::mem::take(&mut self.tail);
        self.send(t);
    }
}

impl airlock_runtime::OutputSink for ChannelSink {
    fn stdout(&mut self, d: &[u8]) {
        self.out(d)
    }
    fn stderr(&mut self, d: &[u8]) {
        // Only the server's own complaints ("can't fork"): the call's
        // stderr is merged into stdout.
        self.out(d)
    }
    fn stdin_pipe(&mut self, writer: OwnedFd) {
        let _ = self.tx.send(Msg::Stdin(writer));
    }
    fn should_abort(&mut self) -> bool {
        // Asked every 250 ms at least: the overflow's tail is sent even
        // when no more output comes.
        self.flush();
        self.abort.load(Ordering::SeqCst)
    }
}

/// Why a call has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No answer within the call's timeout; the sandbox was stopped.
    Timeout(Duration),
    /// The evaluation is being interrupted; the sandbox was stopped.
    Interrupted,
    /// The sandbox ended (its server died or a limit stopped it).
    Ended,
    /// The sandbox had ended before the request could be sent: the call
    /// did not run at all.
    NotSent,
    /// The script holds a NUL byte (no shell can carry it) or a raw
    /// newline (a request is one line: quote it with [`quote`]). Nothing
    /// was sent; the sandbox is fine.
    Unsendable,
}

/// A call's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutput {
    /// stdout and stderr as they came, at most [`KEEP`] bytes.
    pub text: Vec<u8>,
    /// Bytes beyond [`KEEP`] that were dropped.
    pub dropped: u64,
    /// The exit status (`None` when the call had no answer).
    pub status: Option<i32>,
}

/// A running scenario sandbox.
#[derive(Debug)]
pub struct Session {
    /// Its sandbox id (as in its audit log).
    pub id: String,
    writer: Option<OwnedFd>,
    rx: mpsc::Receiver<Msg>,
    abort: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Result<SessionReport, RuntimeError>>>,
    /// Output read but not yet given to a call.
    scan: Vec<u8>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Stdin(_) => f.write_str("Stdin"),
            Msg::Out(d) => write!(f, "Out({} bytes)", d.len()),
            Msg::Skipped(n) => write!(f, "Skipped({n})"),
        }
    }
}

/// `arg` quoted for the server's `eval`: single quotes, a quote as `'\''`,
/// a newline as `'"$nl"'` (a request is one line).
pub fn quote(arg: &str) -> String {
    let mut s = String::with_capacity(arg.len() + 2);
    s.push('\'');
    for ch in arg.chars() {
        match ch {
            '\'' => s.push_str("'\\''"),
            '\n' => s.push_str("'\"$nl\"'"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// A script that runs `argv` as one command (each word quoted).
pub fn argv_script<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// 128 random bits as hex: from the kernel's pool, or (should /dev/urandom
/// be unreadable) from std's randomly keyed SipHash over a counter and the
/// time, never from the time alone.
fn nonce() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        use std::hash::{BuildHasher, Hasher};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        for (i, half) in b.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(n);
            h.write_usize(i);
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Session {
    /// Starts a sandbox for `req` (its argv is replaced by the server) and
    /// waits until the server can take requests.
    pub fn start(mut req: RunRequest, stop: &AtomicBool) -> Result<Session, String> {
        let id = airlock_runtime::new_sandbox_id();
        let workspace = req.profile.filesystem.workspace.as_path().to_path_buf();
        req.argv = vec![
            "sh".into(),
            "-c".into(),
            SERVER.into(),
            "airlock-tools".into(),
            workspace.to_string_lossy().into_owned(),
        ];
        req.pipe_stdin = true;
        req.sandbox_id = Some(id.clone());
        let (tx, rx) = mpsc::channel();
        let abort = Arc::new(AtomicBool::new(false));
        let sink_abort = Arc::clone(&abort);
        let queued = Arc::new(AtomicUsize::new(0));
        let sink_queued = Arc::clone(&queued);
        let thread = std::thread::Builder::new()
            .name(format!("eval-{id}"))
            .spawn(move || {
                let mut sink = ChannelSink {
                    tx,
                    abort: sink_abort,
                    queued: sink_queued,
                    skipped: 0,
                    tail: Vec::new(),
                };
                let rep = airlock_runtime::run(&req, &mut sink);
                // The sandbox is gone: what overflowed goes out now.
                sink.flush_at_end();
                rep
            })
            .map_err(|e| format!("starting the sandbox thread: {e}"))?;
        let mut s = Session {
            id,
            writer: None,
            rx,
            abort,
            queued,
            thread: Some(thread),
            scan: Vec::new(),
        };
        let until = Instant::now() + START_TIMEOUT;
        while s.writer.is_none() {
            if stop.load(Ordering::SeqCst) {
                return Err("interrupted".into());
            }
            if Instant::now() >= until {
                return Err(format!(
                    "the sandbox did not start within {} s",
                    START_TIMEOUT.as_secs()
                ));
            }
            match s.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Msg::Stdin(w)) => {
                    let _ = rustix::fs::fcntl_setfl(&w, rustix::fs::OFlags::NONBLOCK);
                    s.writer = Some(w);
                }
                Ok(Msg::Out(d)) => s.received(&d),
                Ok(Msg::Skipped(_)) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(match s.join() {
                        Some(Ok(rep)) => format!(
                            "the sandbox ended before its tool server started ({})",
                            describe_end(&rep)
                        ),
                        Some(Err(e)) => e.to_string(),
                        None => "the sandbox thread panicked".into(),
                    });
                }
            }
        }
        Ok(s)
    }

    /// Runs `script` (one line of shell, evaluated by the server in a
    /// subshell; see [`argv_script`]) in the sandbox and waits for its
    /// answer, at most `timeout`. The request goes down a pipe: like every
    /// Rust program by default (the runtime sets it so), the process must
    /// ignore SIGPIPE, or writing to a sandbox whose server died kills it.
    /// On [`CallError::Timeout`] and [`CallError::Interrupted`] the sandbox
    /// is stopped; after any error but [`CallError::Unsendable`] the
    /// session is done (call [`Session::finish`]). The output seen so far
    /// comes with the error.
    pub fn call(
        &mut self,
        script: &str,
        timeout: Duration,
        stop: &AtomicBool,
    ) -> Result<CallOutput, (CallError, CallOutput)> {
        let mut out = CallOutput {
            text: Vec::new(),
            dropped: 0,
            status: None,
        };
        if script.contains(['\0', '\n']) {
            return Err((CallError::Unsendable, out));
        }
        let nonce = nonce();
        let mut line = nonce.clone();
        line.push(' ');
        line.push_str(script);
        line.push('\n');
        let until = Instant::now() + timeout;
        // Output of background processes since the last call: its end is
        // kept, marked as such, so that it cannot crowd out this call's.
        self.take_stale(&mut out);
        if let Err(e) = self.send(line.as_bytes(), until, stop) {
            let e = match e {
                CallError::Timeout(_) => CallError::Timeout(timeout),
                e => e,
            };
            return Err((e, out));
        }
        let marker = format!("\n{nonce} ");
        loop {
            if let Some(status) = self.take_answer(&marker, &mut out) {
                out.status = Some(status);
                return Ok(out);
            }
            if stop.load(Ordering::SeqCst) {
                self.abort.store(true, Ordering::SeqCst);
                self.keep_rest(&mut out);
                return Err((CallError::Interrupted, out));
            }
            let now = Instant::now();
            if now >= until {
                self.abort.store(true, Ordering::SeqCst);
                self.keep_rest(&mut out);
                return Err((CallError::Timeout(timeout), out));
            }
            match self
                .rx
                .recv_timeout((until - now).min(Duration::from_millis(100)))
            {
                Ok(Msg::Out(d)) => self.received(&d),
                Ok(Msg::Skipped(n)) => out.dropped += n,
                Ok(Msg::Stdin(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.keep_rest(&mut out);
                    return Err((CallError::Ended, out));
                }
            }
        }
    }

    /// Moves output that came while no call ran into `out`: a note with
    /// its size and its last [`STALE_KEEP`] bytes.
    fn take_stale(&mut self, out: &mut CallOutput) {
        let mut dropped = 0u64;
        while let Ok(m) = self.rx.try_recv() {
            match m {
                Msg::Out(d) => self.received(&d),
                Msg::Skipped(n) => dropped += n,
                Msg::Stdin(_) => {}
            }
        }
        if self.scan.is_empty() && dropped == 0 {
            return;
        }
        let total = dropped + self.scan.len() as u64;
        let cut = self.scan.len().saturating_sub(STALE_KEEP);
        let tail: Vec<u8> = self.scan.drain(..).skip(cut).collect();
        out.dropped += dropped + cut as u64;
        let note = format!(
            "[background output since the last call: {total} bytes{}]\n",
            if total > tail.len() as u64 {
                format!(", the last {} shown", tail.len())
            } else {
                String::new()
            }
        );
        keep(out, note.as_bytes());
        keep(out, &tail);
        if !tail.ends_with(b"\n") {
            keep(out, b"\n");
        }
        keep(out, b"[this call's output]\n");
    }

    /// Gives a call that has no answer what it printed, including the
    /// tail held back in case it began an answer line.
    fn keep_rest(&mut self, out: &mut CallOutput) {
        let rest = std::mem::take(&mut self.scan);
        keep(out, &rest);
    }

    fn received(&mut self, d: &[u8]) {
        self.queued.fetch_sub(d.len(), Ordering::SeqCst);
        self.scan.extend_from_slice(d);
    }

    /// Moves what precedes the answer line (or, without one yet, all but
    /// a tail that could hold its start) from `scan` into `out`; the exit
    /// status once the whole answer line is there. A marker that is not
    /// followed by a status and a newline is output like any other.
    fn take_answer(&mut self, marker: &str, out: &mut CallOutput) -> Option<i32> {
        let m = marker.as_bytes();
        loop {
            let Some(pos) = find(&self.scan, m) else {
                let tail = m.len().saturating_sub(1);
                if self.scan.len() > tail {
                    let cut = self.scan.len() - tail;
                    let head: Vec<u8> = self.scan.drain(..cut).collect();
                    keep(out, &head);
                }
                return None;
            };
            let after = pos + m.len();
            let status = match self.scan[after..].iter().position(|&b| b == b'\n') {
                Some(nl) if nl <= MAX_STATUS => std::str::from_utf8(&self.scan[after..after + nl])
                    .ok()
                    .and_then(|s| s.parse::<i32>().ok())
                    .map(|st| (st, after + nl + 1)),
                Some(_) => None,
                None if self.scan.len() - after > MAX_STATUS => None,
                None => {
                    // The line's end has not come yet.
                    let head: Vec<u8> = self.scan.drain(..pos).collect();
                    keep(out, &head);
                    return None;
                }
            };
            match status {
                Some((st, end)) => {
                    let head: Vec<u8> = self.scan[..pos].to_vec();
                    keep(out, &head);
                    self.scan.drain(..end);
                    return Some(st);
                }
                None => {
                    // Not an answer line: output, up to and including the
                    // marker's first byte.
                    let head: Vec<u8> = self.scan.drain(..=pos).collect();
                    keep(out, &head);
                }
            }
        }
    }

    /// Writes a request, waiting for room in the pipe until `until`.
    fn send(
        &mut self,
        mut data: &[u8],
        until: Instant,
        stop: &AtomicBool,
    ) -> Result<(), CallError> {
        let Some(w) = self.writer.as_ref() else {
            return Err(CallError::NotSent);
        };
        let mut sent_any = false;
        while !data.is_empty() {
            match rustix::io::write(w, data) {
                Ok(n) => {
                    sent_any = true;
                    data = &data[n..];
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    if stop.load(Ordering::SeqCst) {
                        self.abort.store(true, Ordering::SeqCst);
                        return Err(CallError::Interrupted);
                    }
                    let now = Instant::now();
                    if now >= until {
                        self.abort.store(true, Ordering::SeqCst);
                        return Err(CallError::Timeout(until.saturating_duration_since(now)));
                    }
                    let wait = (until - now).min(Duration::from_millis(100));
                    let ts = rustix::time::Timespec {
                        tv_sec: 0,
                        tv_nsec: i64::from(wait.subsec_nanos()),
                    };
                    let mut fds = [rustix::event::PollFd::new(w, rustix::event::PollFlags::OUT)];
                    let _ = rustix::event::poll(&mut fds, Some(&ts));
                }
                // EPIPE: the server is gone. Nothing sent means nothing
                // ran (a partial line is never run: it has no newline).
                Err(_) if !sent_any => return Err(CallError::NotSent),
                Err(_) => return Err(CallError::Ended),
            }
        }
        Ok(())
    }

    /// Whether the sandbox has ended (by itself: its server died, its time
    /// ran out).
    pub fn has_ended(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn join(&mut self) -> Option<Result<SessionReport, RuntimeError>> {
        self.thread.take().and_then(|t| t.join().ok())
    }

    /// Ends the session: the server reads end of file and exits, which
    /// ends the sandbox (everything left in it is killed). Stops it after
    /// a short grace period, or at once when `stop` is set; a sandbox that
    /// keeps its server alive or keeps printing changes neither. Returns
    /// the run's report.
    pub fn finish(mut self, stop: &AtomicBool) -> Result<SessionReport, String> {
        self.writer = None;
        let until = Instant::now() + END_TIMEOUT;
        loop {
            if Instant::now() >= until || stop.load(Ordering::SeqCst) {
                self.abort.store(true, Ordering::SeqCst);
            }
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        match self.join() {
            Some(Ok(rep)) => Ok(rep),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("the sandbox thread panicked".into()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.abort.store(true, Ordering::SeqCst);
            self.writer = None;
            let _ = self.join();
        }
    }
}

/// How a sandbox ended, in a few words.
pub fn describe_end(rep: &SessionReport) -> String {
    use airlock_runtime::ExitReason;
    let mut s = match rep.run.reason {
        ExitReason::Exit { code } => format!("its server exited with code {code}"),
        ExitReason::Signal { signal } => format!("its server was killed by signal {signal}"),
        ExitReason::Timeout => "the sandbox's time ran out".to_owned(),
        ExitReason::Memory => "the memory limit was hit".to_owned(),
        ExitReason::Killed => "stopped by the harness".to_owned(),
        ExitReason::Interrupted => "interrupted twice (Ctrl-C)".to_owned(),
        ExitReason::ExecFailed { errno } => format!("its server could not start (errno {errno})"),
    };
    if !rep.run.limits_hit.is_empty() {
        let hits: Vec<String> = rep
            .run
            .limits_hit
            .iter()
            .map(|l| {
                serde_json::to_value(l)
                    .ok()
                    .map(|v| v.to_string().trim_matches('"').to_owned())
                    .unwrap_or_else(|| format!("{l:?}"))
            })
            .collect();
        s.push_str(&format!("; limits hit: {}", hits.join(", ")));
    }
    s
}

fn keep(out: &mut CallOutput, data: &[u8]) {
    let room = KEEP.saturating_sub(out.text.len());
    let n = data.len().min(room);
    out.text.extend_from_slice(&data[..n]);
    out.dropped += (data.len() - n) as u64;
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_newlines() {
        assert_eq!(argv_script(&["cat", "--", "a b"]), "'cat' '--' 'a b'");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("x\ny"), "'x'\"$nl\"'y'");
        assert_eq!(quote(""), "''");
    }

    fn session_with(scan: &[u8]) -> Session {
        let (_tx, rx) = mpsc::channel();
        Session {
            id: "t".into(),
            writer: None,
            rx,
            abort: Arc::new(AtomicBool::new(false)),
            queued: Arc::new(AtomicUsize::new(0)),
            thread: None,
            scan: scan.to_vec(),
        }
    }

    fn answer(scan: &[u8]) -> (Option<i32>, String, Vec<u8>) {
        let mut s = session_with(scan);
        let mut out = CallOutput {
            text: Vec::new(),
            dropped: 0,
            status: None,
        };
        let st = s.take_answer("\nNONCE ", &mut out);
        (
            st,
            String::from_utf8_lossy(&out.text).into_owned(),
            s.scan.clone(),
        )
    }

    #[test]
    fn answers_are_cut_at_their_line() {
        assert_eq!(
            answer(b"hi\n\nNONCE 0\nrest"),
            (Some(0), "hi\n".into(), b"rest".to_vec())
        );
        assert_eq!(answer(b"hi\nNONCE 7\n"), (Some(7), "hi".into(), vec![]));
        // Not yet whole: output so far, the marker kept.
        assert_eq!(
            answer(b"hi\nNONCE 1"),
            (None, "hi".into(), b"\nNONCE 1".to_vec())
        );
        // A partial marker at the end is kept back.
        assert_eq!(
            answer(b"hello\nNON"),
            (None, "hel".into(), b"lo\nNON".to_vec())
        );
        // Not an answer line (no number): output, and the real one after.
        assert_eq!(
            answer(b"\nNONCE x\nz\nNONCE 2\n"),
            (Some(2), "\nNONCE x\nz".into(), vec![])
        );
    }

    #[test]
    fn background_output_between_calls_is_marked_and_bounded() {
        let mut out = CallOutput {
            text: Vec::new(),
            dropped: 0,
            status: None,
        };
        session_with(b"bg1\n").take_stale(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out.text),
            "[background output since the last call: 4 bytes]\nbg1\n[this call's output]\n"
        );
        let mut out = CallOutput {
            text: Vec::new(),
            dropped: 0,
            status: None,
        };
        session_with(&[b'y'; 5000]).take_stale(&mut out);
        let text = String::from_utf8_lossy(&out.text);
        assert!(
            text.starts_with(
                "[background output since the last call: 5000 bytes, the last 2048 shown]\n"
            ),
            "{text}"
        );
        assert_eq!(out.dropped, 5000 - 2048);
        // Nothing came: nothing is said.
        let mut out = CallOutput {
            text: Vec::new(),
            dropped: 0,
            status: None,
        };
        session_with(b"").take_stale(&mut out);
        assert!(out.text.is_empty());
    }

    #[test]
    fn nonces_are_long_and_fresh() {
        let (a, b) = (nonce(), nonce());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
