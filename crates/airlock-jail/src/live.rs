//! A live sandbox: built once, then many processes started in it, files
//! read and written beneath its writable places, reset, and closed.
//!
//! The supervisor holds the authority as values: the control socket to
//! init (the only way to start a process inside), the directory fds of the
//! writable places taken at create, and the cgroup. A reader thread per
//! sandbox takes init's reports (process started, exited, exec telemetry,
//! canary opens) and routes them to the process they concern; a pump
//! thread per process reads its stdout and stderr into tail-keeping
//! buffers and enforces its timeout.
//!
//! Every process is started by init through the same contain pipeline as
//! a one-shot run's payload (`payload.rs`), under a monitor that is the
//! subreaper of its tree (`init.rs`), so a per-exec timeout kills the whole
//! tree, daemonized descendants included, and nothing else.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use crate::cgroup::Cgroup;
use crate::error::{JailError, SysError};
use crate::landlock::LandlockReport;
use crate::proto::{ExecPlan, Report, Request};
use crate::report::{CgroupReport, ExitReason, JailEvent, LimitHit, StreamStats};
use crate::spawn::{boot, Booted, IdMap, OutputSink, Touches};
use crate::spec::JailSpec;
use crate::sys;

/// Whether `name` may name a checkpoint: 1 to 64 ASCII letters, digits,
/// '-', '_' or '.', not starting with '.'.
pub fn checkpoint_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Most bytes of one exec request (argv, env, cwd, as JSON). Up to 160 KiB
/// it goes to init as one message on the control socket; a larger one goes
/// in a sealed memfd attached to a small message. The kernel still caps
/// argv and envp together at a quarter of the stack rlimit (at most 6 MiB):
/// an exec over that fails like any exec (`E2BIG`, exit code 126).
pub const MAX_EXEC_REQUEST: usize = 8 * 1024 * 1024;

/// Most bytes of one argument or environment string: the kernel's
/// `MAX_ARG_STRLEN` (32 pages), past which execve fails with E2BIG.
pub const MAX_ARG_BYTES: usize = 128 * 1024;

/// Errors of a live sandbox.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The sandbox was closed.
    #[error("the sandbox is closed")]
    Closed,
    /// The sandbox ended on its own (its init died), or never finished
    /// starting a process.
    #[error("the sandbox is gone: {0}")]
    Gone(String),
    /// A request field is unusable.
    #[error("{field}: {reason}")]
    BadRequest {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No such process in this sandbox.
    #[error("no process {0} in this sandbox")]
    NoProcess(u64),
    /// The process takes no more input (its stdin was not a pipe, or was
    /// closed).
    #[error("process {0}: stdin is closed")]
    StdinClosed(u64),
    /// Init did not answer in time.
    #[error("the sandbox did not answer {what} within {secs} s")]
    NoAnswer {
        /// The request.
        what: &'static str,
        /// How long we waited.
        secs: u64,
    },
    /// A reset could not restore the writable places.
    #[error("reset: {0}")]
    Reset(String),
    /// A checkpoint could not be taken.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A supervisor-side system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// Sandbox-wide observations of a live sandbox, called from its reader
/// thread.
pub trait SandboxObserver: Send {
    /// The sockets of `spec.net.listeners`, created inside the sandbox's
    /// network namespace during create (see
    /// [`OutputSink::network_listeners`]). The default refuses.
    fn network_listeners(&mut self, fds: Vec<OwnedFd>) -> Result<(), String> {
        drop(fds);
        Err("this caller does not serve network listeners".into())
    }
    /// Something the sandbox did (exec telemetry, a watched file opened).
    fn event(&mut self, event: JailEvent) {
        let _ = event;
    }
    /// A copy-out file at close (see [`OutputSink::copy_out`]).
    fn copy_out(&mut self, path: &str, size: u64, file: fs::File) {
        let _ = (path, size, file);
    }
    /// A copy-out path that was not handed out, and why.
    fn copy_out_refused(&mut self, path: &str, reason: &str) {
        let _ = (path, reason);
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl SandboxObserver for NoObserver {}

/// What an exec's stdin is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ExecStdin {
    /// /dev/null.
    #[default]
    Null,
    /// These bytes, then end of file.
    Bytes(Vec<u8>),
    /// A pipe that stays open for [`Process::write_stdin`] until
    /// [`Process::close_stdin`].
    Pipe,
}

/// One process to start in a live sandbox.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// The command; `argv[0]` without a slash is looked up on PATH.
    pub argv: Vec<String>,
    /// The whole environment of the process.
    pub env: Vec<(String, String)>,
    /// Where it starts: absolute inside the sandbox, or relative to the
    /// workspace; `None` for the workspace.
    pub cwd: Option<PathBuf>,
    /// Its stdin.
    pub stdin: ExecStdin,
    /// Its wall-clock limit: at the deadline its whole tree is killed.
    pub timeout: Option<Duration>,
    /// Bytes kept of each of stdout and stderr: past it, the oldest go and
    /// the tail stays.
    pub output_cap: u64,
}

/// How a process ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecReport {
    /// The process's id in this sandbox.
    pub id: u64,
    /// Its pid inside the sandbox (once it started).
    pub pid: Option<i32>,
    /// The exit code with `airlock run`'s meanings (128+N for signal N,
    /// 124 timeout, 125 could not start, 126/127 not executable/found).
    pub exit_code: i32,
    /// Why it ended.
    pub reason: ExitReason,
    /// Limits it hit.
    pub limits_hit: Vec<LimitHit>,
    /// From start to exit.
    pub wall: Duration,
    /// Its stdout: bytes written, and bytes dropped from the front (the
    /// tail is kept).
    pub stdout: StreamStats,
    /// Its stderr, likewise.
    pub stderr: StreamStats,
    /// Size-capped mounts that were full when it ended.
    pub full_mounts: Vec<String>,
    /// How Landlock was applied to it.
    pub landlock: Option<LandlockReport>,
    /// Set when it never ran: what went wrong in the sandbox's set-up of it.
    pub setup_error: Option<String>,
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Output read from a process's buffer.
#[derive(Debug, Clone, Default)]
pub struct OutputChunk {
    /// The bytes from `from` on.
    pub data: Vec<u8>,
    /// Where `data` starts (later than asked when the bytes asked for were
    /// dropped past the cap).
    pub from: u64,
    /// The offset after `data`.
    pub next: u64,
}

/// Bytes kept of a stream: the last `cap` of them, with absolute offsets.
#[derive(Debug)]
struct TailBuf {
    data: VecDeque<u8>,
    /// Absolute offset of `data[0]`.
    start: u64,
    cap: usize,
}

impl TailBuf {
    fn new(cap: u64) -> TailBuf {
        TailBuf {
            data: VecDeque::new(),
            start: 0,
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.data.extend(bytes);
        if self.data.len() > self.cap {
            let over = self.data.len() - self.cap;
            self.data.drain(..over);
            self.start += over as u64;
        }
    }

    fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }

    fn read_from(&self, from: u64, max: usize) -> OutputChunk {
        let from = from.clamp(self.start, self.end());
        let skip = (from - self.start) as usize;
        let data: Vec<u8> = self.data.iter().skip(skip).take(max).copied().collect();
        OutputChunk {
            from,
            next: from + data.len() as u64,
            data,
        }
    }

    fn stats(&self) -> StreamStats {
        StreamStats {
            bytes: self.end(),
            dropped: self.start,
        }
    }
}

#[derive(Debug, Default)]
struct Exit {
    status: i32,
    lost: bool,
    full: Vec<String>,
    nofile: bool,
    memory: bool,
}

#[derive(Debug)]
struct ProcState {
    pid: Option<i32>,
    landlock: Option<LandlockReport>,
    stdout: TailBuf,
    stderr: TailBuf,
    exit: Option<Exit>,
    exec_errno: Option<i32>,
    setup_error: Option<String>,
    timed_out: bool,
    killed: bool,
    /// The pump read everything written before the exit.
    drained: bool,
    ended_at: Option<Instant>,
    stdin: Option<OwnedFd>,
    /// The sandbox's cgroup counters when it started (OOM kills, pids.max).
    oom_before: bool,
    pids_before: bool,
}

#[derive(Debug)]
struct ProcShared {
    id: u64,
    started_at: Instant,
    state: Mutex<ProcState>,
    cond: Condvar,
    /// Wakes the pump (an exit arrived, or a kill was asked for).
    wake: OwnedFd,
}

impl ProcShared {
    fn lock(&self) -> MutexGuard<'_, ProcState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn poke(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        self.cond.notify_all();
    }

    fn finished(st: &ProcState) -> bool {
        (st.exit.is_some() && st.drained) || st.setup_error.is_some()
    }
}

#[derive(Debug, Default)]
struct State {
    procs: HashMap<u64, Arc<ProcShared>>,
    /// Finished processes, oldest first (pruned past [`MAX_FINISHED`]).
    finished: VecDeque<u64>,
    gone: Option<String>,
    closed: bool,
    resets_done: u64,
    reset_error: Option<String>,
    checkpoints_done: u64,
    checkpoint_error: Option<String>,
    init_closed: bool,
}

/// Finished processes whose output stays readable.
const MAX_FINISHED: usize = 256;

struct Shared {
    ctl: OwnedFd,
    child: sys::Cloned,
    cg: Mutex<Option<Cgroup>>,
    cgroup_report: CgroupReport,
    ids: IdMap,
    spec: JailSpec,
    state: Mutex<State>,
    cond: Condvar,
    next_id: AtomicU64,
    /// Serialises resets and close.
    admin: Mutex<()>,
    pub(crate) files: crate::files::Places,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("pid", &self.child.pid)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, req: &Request, fds: &[std::os::fd::BorrowedFd<'_>]) -> Result<(), LiveError> {
        let bytes = serde_json::to_vec(req).expect("request serializes");
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() {
            anc.push(rustix::net::SendAncillaryMessage::ScmRights(fds));
        }
        rustix::net::sendmsg(
            &self.ctl,
            &[std::io::IoSlice::new(&bytes)],
            &mut anc,
            rustix::net::SendFlags::NOSIGNAL,
        )
        .map(drop)
        .map_err(|e| match self.lock().gone.clone() {
            Some(why) => LiveError::Gone(why),
            None => SysError::from_errno("sendmsg", e.raw_os_error()).into(),
        })
    }

    fn usable(&self) -> Result<(), LiveError> {
        let st = self.lock();
        if st.closed {
            return Err(LiveError::Closed);
        }
        if let Some(why) = &st.gone {
            return Err(LiveError::Gone(why.clone()));
        }
        Ok(())
    }

    fn cg_flags(&self) -> (bool, bool) {
        let cg = self.cg.lock().unwrap_or_else(|p| p.into_inner());
        cg.as_ref()
            .map(|c| {
                let s = c.stats();
                (s.oom_killed, s.pids_max_hit)
            })
            .unwrap_or_default()
    }
}

/// A live sandbox. Its methods take `&self` and may be called from many
/// threads at once; [`Sandbox::close`] (or drop) ends it.
#[derive(Debug)]
pub struct Sandbox {
    shared: Arc<Shared>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

/// Adapts a [`SandboxObserver`] to the run path's [`OutputSink`] (for the
/// canary watch's reports).
struct ObserverSink<'a>(&'a mut dyn SandboxObserver);

impl OutputSink for ObserverSink<'_> {
    fn stdout(&mut self, _: &[u8]) {}
    fn stderr(&mut self, _: &[u8]) {}
    fn event(&mut self, event: JailEvent) {
        self.0.event(event);
    }
}

impl Sandbox {
    /// Builds a sandbox from `spec` (its `argv` is not run) and leaves its
    /// init waiting for processes. `observer` receives the sockets of
    /// `spec.net.listeners` (an egress gateway serves them), then, on the
    /// sandbox's reader thread, what the sandbox does.
    pub fn create(
        spec: &JailSpec,
        mut observer: Box<dyn SandboxObserver>,
    ) -> Result<Sandbox, JailError> {
        let devnull: OwnedFd = fs::File::open("/dev/null")
            .map_err(|e| SysError {
                call: "open(/dev/null)",
                source: e,
            })?
            .into();
        let n = devnull.as_raw_fd();
        let Booted {
            spec,
            child,
            ctl,
            cg,
            support,
            ids,
            places,
            touches,
            host_ws,
            ..
        } = boot(spec, true, None, [n, n, n], &mut |fds| {
            observer.network_listeners(fds)
        })?;
        drop(devnull);
        let cgroup_report = crate::spawn::cgroup_report(&cg, &support);
        let files = crate::files::Places::new(places, host_ws, &ids, &spec);
        let shared = Arc::new(Shared {
            ctl,
            child,
            cg: Mutex::new(cg),
            cgroup_report,
            ids,
            spec,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            next_id: AtomicU64::new(1),
            admin: Mutex::new(()),
            files,
        });
        let s = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name("airlock-sandbox".into())
            .spawn(move || {
                sys::block_all_signals();
                read_reports(&s, touches, observer)
            })
            .map_err(|e| SysError {
                call: "spawning a sandbox's reader thread",
                source: e,
            })?;
        Ok(Sandbox {
            shared,
            reader: Mutex::new(Some(reader)),
        })
    }

    /// The sandbox's host uid (its processes' uid outside).
    pub fn host_uid(&self) -> u32 {
        self.shared.ids.host_uid
    }

    /// What the sandbox's cgroup is.
    pub fn cgroup(&self) -> &CgroupReport {
        &self.shared.cgroup_report
    }

    /// The spec it was built from (the workspace path made real).
    pub fn spec(&self) -> &JailSpec {
        &self.shared.spec
    }

    /// Whether the sandbox is still usable (not closed, init alive).
    pub fn is_alive(&self) -> bool {
        self.shared.usable().is_ok()
    }

    /// Starts a process. It runs until it exits, its timeout, or a kill;
    /// see [`Process`].
    pub fn start(&self, exec: ExecSpec) -> Result<Process, LiveError> {
        self.shared.usable()?;
        let cwd = self.resolve_cwd(exec.cwd.as_deref())?;
        validate_exec(&exec)?;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let plan = ExecPlan {
            id,
            argv: exec.argv.clone(),
            env: exec.env.clone(),
            cwd,
            passed_stdio: true,
            tty: false,
        };
        let plan_json = serde_json::to_vec(&plan).expect("an exec plan serializes");
        if plan_json.len() > MAX_EXEC_REQUEST {
            return Err(LiveError::BadRequest {
                field: "cmd",
                reason: format!(
                    "the command, environment and cwd exceed {MAX_EXEC_REQUEST} bytes \
                     (pass bulky data on stdin or as a file)"
                ),
            });
        }
        // Too big for one message on the control socket: the plan goes in
        // a sealed memfd, attached after the stdio fds.
        let (req, plan_fd) = if plan_json.len() > crate::proto::INLINE_EXEC_REQUEST {
            let fd = crate::proto::sealed_memfd(&plan_json)?;
            let len = plan_json.len() as u64;
            (Request::ExecLarge { id, len }, Some(fd))
        } else {
            (Request::Exec(plan), None)
        };
        drop(plan_json);
        let pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| LiveError::from(SysError::from_errno("pipe", e.raw_os_error())))
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (in_r, in_w): (OwnedFd, Option<OwnedFd>) = match &exec.stdin {
            ExecStdin::Null => (
                fs::File::open("/dev/null")
                    .map_err(|e| SysError {
                        call: "open(/dev/null)",
                        source: e,
                    })?
                    .into(),
                None,
            ),
            ExecStdin::Bytes(_) | ExecStdin::Pipe => {
                let (r, w) = pipe()?;
                (r, Some(w))
            }
        };
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(|e| SysError::from_errno("eventfd", e.raw_os_error()))?;
        let (oom_before, pids_before) = self.shared.cg_flags();
        let proc_ = Arc::new(ProcShared {
            id,
            started_at: Instant::now(),
            state: Mutex::new(ProcState {
                pid: None,
                landlock: None,
                stdout: TailBuf::new(exec.output_cap),
                stderr: TailBuf::new(exec.output_cap),
                exit: None,
                exec_errno: None,
                setup_error: None,
                timed_out: false,
                killed: false,
                drained: false,
                ended_at: None,
                stdin: None,
                oom_before,
                pids_before,
            }),
            cond: Condvar::new(),
            wake,
        });
        self.shared.lock().procs.insert(id, Arc::clone(&proc_));
        let mut fds = vec![in_r.as_fd(), out_w.as_fd(), err_w.as_fd()];
        fds.extend(plan_fd.as_ref().map(|f| f.as_fd()));
        if let Err(e) = self.shared.send(&req, &fds) {
            self.shared.lock().procs.remove(&id);
            return Err(e);
        }
        drop(fds);
        drop((in_r, out_w, err_w, plan_fd));
        match (exec.stdin, in_w) {
            (ExecStdin::Bytes(bytes), Some(w)) => write_in_background(w, bytes),
            (ExecStdin::Pipe, Some(w)) => proc_.lock().stdin = Some(w),
            _ => {}
        }
        let deadline = exec.timeout.map(|t| Instant::now() + t);
        let p = Arc::clone(&proc_);
        let sb = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name("airlock-exec".into())
            .spawn(move || {
                sys::block_all_signals();
                pump(&sb, &p, out_r, err_r, deadline)
            })
            .map_err(|e| SysError {
                call: "spawning an exec's output thread",
                source: e,
            })?;
        Ok(Process {
            shared: proc_,
            sandbox: Arc::clone(&self.shared),
        })
    }

    /// Starts a process and waits for it, passing its output to `on_output`
    /// as it arrives.
    pub fn exec(
        &self,
        exec: ExecSpec,
        on_output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<(Process, ExecReport), LiveError> {
        let p = self.start(exec)?;
        let (mut o, mut e) = (0u64, 0u64);
        loop {
            let done = p.wait_output(o, e, Duration::from_secs(3600));
            let out = p.output(Stream::Stdout, o, usize::MAX);
            if !out.data.is_empty() {
                on_output(Stream::Stdout, &out.data);
            }
            o = out.next;
            let err = p.output(Stream::Stderr, e, usize::MAX);
            if !err.data.is_empty() {
                on_output(Stream::Stderr, &err.data);
            }
            e = err.next;
            if done {
                break;
            }
        }
        let report = p
            .report()
            .ok_or_else(|| LiveError::Gone("no report".into()))?;
        Ok((p, report))
    }

    /// A process started in this sandbox (running, or among the last
    /// finished ones).
    pub fn process(&self, id: u64) -> Result<Process, LiveError> {
        let st = self.shared.lock();
        let p = st.procs.get(&id).ok_or(LiveError::NoProcess(id))?;
        Ok(Process {
            shared: Arc::clone(p),
            sandbox: Arc::clone(&self.shared),
        })
    }

    /// The ids of the processes that are still running.
    pub fn running(&self) -> Vec<u64> {
        let st = self.shared.lock();
        let mut ids: Vec<u64> = st
            .procs
            .values()
            .filter(|p| !ProcShared::finished(&p.lock()))
            .map(|p| p.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    fn resolve_cwd(&self, cwd: Option<&std::path::Path>) -> Result<PathBuf, LiveError> {
        let ws = &self.shared.spec.workspace_path;
        let Some(c) = cwd else {
            return Ok(ws.clone());
        };
        let bad = |reason: &str| LiveError::BadRequest {
            field: "cwd",
            reason: format!("{}: {reason}", c.display()),
        };
        if c.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(bad("contains a NUL byte"));
        }
        if c.as_os_str().len() > 4096 {
            return Err(bad("longer than 4096 bytes"));
        }
        Ok(if c.is_absolute() {
            c.to_path_buf()
        } else {
            ws.join(c)
        })
    }

    /// The sandbox's files API (beneath its writable places).
    pub fn files(&self) -> &crate::files::Places {
        &self.shared.files
    }

    /// Kills every process and puts the writable tmpfs places (/tmp,
    /// /var/tmp, $HOME, /dev/shm and an ephemeral workspace) back to their
    /// state at create, planted files included, or at checkpoint
    /// `checkpoint`. A host workspace is the caller's directory and is left
    /// as it is.
    pub fn reset(&self, checkpoint: Option<&str>) -> Result<(), LiveError> {
        let _admin = self.shared.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.usable()?;
        if let Some(name) = checkpoint {
            if !checkpoint_name_ok(name) {
                return Err(LiveError::BadRequest {
                    field: "checkpoint",
                    reason: format!("{name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
                });
            }
        }
        let before = self.shared.lock().resets_done;
        let procs: Vec<Arc<ProcShared>> = self.shared.lock().procs.values().cloned().collect();
        for p in procs {
            let mut st = p.lock();
            if st.exit.is_none() {
                st.killed = true;
            }
        }
        self.shared.send(
            &Request::Reset {
                checkpoint: checkpoint.map(str::to_string),
            },
            &[],
        )?;
        let limit = Duration::from_secs(60);
        let st = self.shared.lock();
        let (st, timeout) = self
            .shared
            .cond
            .wait_timeout_while(st, limit, |s| s.resets_done == before && s.gone.is_none())
            .unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &st.gone {
            return Err(LiveError::Gone(why.clone()));
        }
        if timeout.timed_out() {
            return Err(LiveError::NoAnswer {
                what: "a reset",
                secs: limit.as_secs(),
            });
        }
        match &st.reset_error {
            Some(e) => Err(LiveError::Reset(e.clone())),
            None => Ok(()),
        }
    }

    /// Copies the writable tmpfs places into a checkpoint named `name`
    /// (replacing one of that name), for [`Sandbox::reset`] to go back to.
    /// The processes keep running; a file they change during the copy is
    /// copied as it is then.
    pub fn checkpoint(&self, name: &str) -> Result<(), LiveError> {
        let _admin = self.shared.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.usable()?;
        if !checkpoint_name_ok(name) {
            return Err(LiveError::BadRequest {
                field: "name",
                reason: format!("{name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
            });
        }
        let before = self.shared.lock().checkpoints_done;
        self.shared
            .send(&Request::Checkpoint { name: name.into() }, &[])?;
        let limit = Duration::from_secs(120);
        let st = self.shared.lock();
        let (st, timeout) = self
            .shared
            .cond
            .wait_timeout_while(st, limit, |s| {
                s.checkpoints_done == before && s.gone.is_none()
            })
            .unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &st.gone {
            return Err(LiveError::Gone(why.clone()));
        }
        if timeout.timed_out() {
            return Err(LiveError::NoAnswer {
                what: "a checkpoint",
                secs: limit.as_secs(),
            });
        }
        match &st.checkpoint_error {
            Some(e) => Err(LiveError::Checkpoint(e.clone())),
            None => Ok(()),
        }
    }

    /// Ends the sandbox: every process is killed, the copy-out files (in
    /// the spec) are handed to the observer, init exits, the cgroup is
    /// removed. Idempotent.
    pub fn close(&self) -> Result<(), LiveError> {
        let _admin = self.shared.admin.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut st = self.shared.lock();
            if st.closed {
                return Ok(());
            }
            st.closed = true;
        }
        let asked = self.shared.send(&Request::Close, &[]).is_ok();
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        if asked {
            // Init answers with its copy-out and `Closed`, then exits (the
            // reader sees end of file). Wait a bounded time.
            let st = self.shared.lock();
            let _ = self
                .shared
                .cond
                .wait_timeout_while(st, Duration::from_secs(30), |s| {
                    !s.init_closed && s.gone.is_none()
                });
        }
        self.finish(reader);
        Ok(())
    }

    /// Kills init (if still there), reaps it, joins the reader, removes the
    /// cgroup.
    fn finish(&self, reader: Option<JoinHandle<()>>) {
        let sh = &self.shared;
        let _ = sys::pidfd_send_signal(sh.child.pidfd.as_fd(), libc::SIGKILL);
        if let Some(c) = sh.cg.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            c.kill_all();
        }
        let _ = sys::wait4(sh.child.pid, libc::__WALL);
        if let Some(r) = reader {
            let _ = r.join();
        }
        if let Some(c) = sh.cg.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            c.remove();
        }
        let procs: Vec<Arc<ProcShared>> = sh.lock().procs.values().cloned().collect();
        for p in procs {
            let mut st = p.lock();
            if !ProcShared::finished(&st) {
                st.setup_error
                    .get_or_insert_with(|| "the sandbox was closed".into());
                st.killed = true;
                st.ended_at.get_or_insert_with(Instant::now);
            }
            drop(st);
            p.poke();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        if reader.is_some() {
            self.shared.lock().closed = true;
            self.finish(reader);
        }
    }
}

/// A process in a live sandbox.
#[derive(Debug, Clone)]
pub struct Process {
    shared: Arc<ProcShared>,
    sandbox: Arc<Shared>,
}

impl Process {
    /// Its id in the sandbox.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Its pid inside the sandbox, once it started.
    pub fn pid(&self) -> Option<i32> {
        self.shared.lock().pid
    }

    /// Whether it has finished (exited and its output read, or never
    /// started).
    pub fn finished(&self) -> bool {
        ProcShared::finished(&self.shared.lock())
    }

    /// Waits up to `timeout` for it to finish; its report if it did.
    pub fn wait(&self, timeout: Duration) -> Option<ExecReport> {
        let st = self.shared.lock();
        let (st, _) = self
            .shared
            .cond
            .wait_timeout_while(st, timeout, |s| !ProcShared::finished(s))
            .unwrap_or_else(|p| p.into_inner());
        drop(st);
        self.report()
    }

    /// Waits up to `timeout` until there is output past `stdout_from` or
    /// `stderr_from`, or it finished; returns whether it finished.
    pub fn wait_output(&self, stdout_from: u64, stderr_from: u64, timeout: Duration) -> bool {
        let st = self.shared.lock();
        let (st, _) = self
            .shared
            .cond
            .wait_timeout_while(st, timeout, |s| {
                !ProcShared::finished(s)
                    && s.stdout.end() <= stdout_from
                    && s.stderr.end() <= stderr_from
            })
            .unwrap_or_else(|p| p.into_inner());
        ProcShared::finished(&st)
    }

    /// Up to `max` bytes of a stream from offset `from` (what is still
    /// kept of it).
    pub fn output(&self, stream: Stream, from: u64, max: usize) -> OutputChunk {
        let st = self.shared.lock();
        match stream {
            Stream::Stdout => st.stdout.read_from(from, max),
            Stream::Stderr => st.stderr.read_from(from, max),
        }
    }

    /// Writes to its stdin (started with [`ExecStdin::Pipe`]).
    pub fn write_stdin(&self, data: &[u8]) -> Result<(), LiveError> {
        let fd = {
            let st = self.shared.lock();
            let Some(fd) = &st.stdin else {
                return Err(LiveError::StdinClosed(self.shared.id));
            };
            fd.try_clone().map_err(|e| SysError {
                call: "dup",
                source: e,
            })?
        };
        let mut f = fs::File::from(fd);
        std::io::Write::write_all(&mut f, data).map_err(|_| LiveError::StdinClosed(self.shared.id))
    }

    /// Closes its stdin (end of file).
    pub fn close_stdin(&self) {
        self.shared.lock().stdin = None;
    }

    /// Sends a signal to the process (not its tree).
    pub fn signal(&self, signal: i32) -> Result<(), LiveError> {
        if !(1..=64).contains(&signal) {
            return Err(LiveError::BadRequest {
                field: "signal",
                reason: format!("{signal} is not a signal number (1 to 64)"),
            });
        }
        if self.finished() {
            return Ok(());
        }
        self.sandbox.send(
            &Request::Signal {
                id: self.shared.id,
                signal,
            },
            &[],
        )
    }

    /// Kills the process's whole tree.
    pub fn kill(&self) -> Result<(), LiveError> {
        {
            let mut st = self.shared.lock();
            if st.exit.is_some() {
                return Ok(());
            }
            st.killed = true;
        }
        self.sandbox
            .send(&Request::KillTree { id: self.shared.id }, &[])
    }

    /// Its report, once it finished.
    pub fn report(&self) -> Option<ExecReport> {
        let st = self.shared.lock();
        if !ProcShared::finished(&st) {
            return None;
        }
        let mut limits = Vec::new();
        let (oom_after, pids_after) = self.sandbox.cg_flags();
        let full = st.exit.as_ref().map(|e| e.full.clone()).unwrap_or_default();
        let reason = if st.timed_out {
            limits.push(LimitHit::Timeout);
            ExitReason::Timeout
        } else if let Some(errno) = st.exec_errno {
            ExitReason::ExecFailed { errno }
        } else if let Some(e) = &st.exit {
            if e.nofile {
                limits.push(LimitHit::Nofile);
            }
            if e.memory {
                limits.push(LimitHit::Memory);
            }
            match crate::spawn::decode_status(e.status) {
                _ if e.lost => ExitReason::Killed,
                ExitReason::Signal { signal }
                    if signal == libc::SIGKILL && oom_after && !st.oom_before =>
                {
                    limits.push(LimitHit::Memory);
                    ExitReason::Memory
                }
                ExitReason::Signal { signal } if signal == libc::SIGKILL && st.killed => {
                    ExitReason::Killed
                }
                r => r,
            }
        } else {
            ExitReason::Killed
        };
        if pids_after && !st.pids_before {
            limits.push(LimitHit::Pids);
        }
        if st.stdout.start > 0 || st.stderr.start > 0 {
            limits.push(LimitHit::Output);
        }
        if !full.is_empty() {
            limits.push(LimitHit::Disk);
        }
        if reason
            == (ExitReason::Signal {
                signal: libc::SIGXFSZ,
            })
        {
            limits.push(LimitHit::Fsize);
        }
        limits.sort();
        limits.dedup();
        let exit_code = if st.setup_error.is_some() && st.exit.is_none() {
            125
        } else {
            reason.exit_code()
        };
        Some(ExecReport {
            id: self.shared.id,
            pid: st.pid,
            exit_code,
            reason,
            limits_hit: limits,
            wall: st
                .ended_at
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(self.shared.started_at),
            stdout: st.stdout.stats(),
            stderr: st.stderr.stats(),
            full_mounts: full,
            landlock: st.landlock,
            setup_error: st.setup_error.clone(),
        })
    }
}

fn validate_exec(exec: &ExecSpec) -> Result<(), LiveError> {
    let bad = |field: &'static str, reason: String| LiveError::BadRequest { field, reason };
    if exec.argv.is_empty() || exec.argv[0].is_empty() {
        return Err(bad("cmd", "empty command".into()));
    }
    if exec.argv.iter().any(|a| a.contains('\0')) {
        return Err(bad("cmd", "an argument contains a NUL byte".into()));
    }
    if let Some((i, a)) = exec
        .argv
        .iter()
        .enumerate()
        .find(|(_, a)| a.len() >= MAX_ARG_BYTES)
    {
        return Err(bad(
            "cmd",
            format!(
                "argument {i} is {} bytes; the kernel takes less than {MAX_ARG_BYTES} per \
                 argument (pass bulky data on stdin or as a file)",
                a.len()
            ),
        ));
    }
    for (k, v) in &exec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(bad("env", format!("{k:?} is not a variable name")));
        }
        if v.contains('\0') {
            return Err(bad("env", format!("{k}: the value contains a NUL byte")));
        }
        if k.len() + v.len() + 1 >= MAX_ARG_BYTES {
            return Err(bad(
                "env",
                format!(
                    "{k}: the variable is longer than the kernel takes ({MAX_ARG_BYTES} bytes)"
                ),
            ));
        }
    }
    if exec.output_cap == 0 {
        return Err(bad("output_cap", "must be at least 1 byte".into()));
    }
    Ok(())
}

fn write_in_background(w: OwnedFd, bytes: Vec<u8>) {
    let spawned = std::thread::Builder::new()
        .name("airlock-exec-stdin".into())
        .spawn(move || {
            let mut f = fs::File::from(w);
            let _ = std::io::Write::write_all(&mut f, &bytes);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot feed an exec's stdin; it sees EOF");
    }
}

/// Reads a process's stdout and stderr into its buffers, and kills its
/// tree at its deadline. After the exit it drains what was written before
/// it, marks the process drained, and goes on reading what background
/// descendants write until they close the pipes.
fn pump(sandbox: &Shared, p: &ProcShared, out: OwnedFd, err: OwnedFd, deadline: Option<Instant>) {
    for fd in [&out, &err] {
        let _ = rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK);
    }
    let mut fds: [Option<OwnedFd>; 2] = [Some(out), Some(err)];
    let mut buf = vec![0u8; 64 * 1024];
    let mut killed_at_deadline = false;
    loop {
        let (exited, drained) = {
            let st = p.lock();
            (st.exit.is_some() || st.setup_error.is_some(), st.drained)
        };
        if exited && !drained {
            // Everything written before the exit is in the pipes now.
            for (i, slot) in fds.iter_mut().enumerate() {
                drain(p, i, slot, &mut buf);
            }
            let mut st = p.lock();
            st.drained = true;
            st.ended_at.get_or_insert_with(Instant::now);
            drop(st);
            p.cond.notify_all();
            let mut all = sandbox.lock();
            all.finished.push_back(p.id);
            while all.finished.len() > MAX_FINISHED {
                if let Some(old) = all.finished.pop_front() {
                    all.procs.remove(&old);
                }
            }
        }
        if fds.iter().all(Option::is_none) && exited {
            return;
        }
        if fds.iter().all(Option::is_none) && sandbox.lock().gone.is_some() {
            return;
        }
        let now = Instant::now();
        if let Some(d) = deadline {
            if now >= d && !exited && !killed_at_deadline {
                killed_at_deadline = true;
                p.lock().timed_out = true;
                let _ = sandbox.send(&Request::KillTree { id: p.id }, &[]);
            }
        }
        let wait = match deadline {
            Some(d) if !killed_at_deadline && !exited => {
                d.saturating_duration_since(now).min(Duration::from_secs(1))
            }
            _ => Duration::from_secs(1),
        };
        let ts = rustix::time::Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        let mut pfds = Vec::with_capacity(3);
        let mut slots = Vec::with_capacity(3);
        for (i, f) in fds.iter().enumerate() {
            if let Some(f) = f {
                pfds.push(PollFd::new(f, PollFlags::IN));
                slots.push(i);
            }
        }
        pfds.push(PollFd::new(&p.wake, PollFlags::IN));
        slots.push(2);
        let _ = poll(&mut pfds, Some(&ts));
        let ready: Vec<usize> = pfds
            .iter()
            .zip(&slots)
            .filter(|(f, _)| !f.revents().is_empty())
            .map(|(_, s)| *s)
            .collect();
        drop(pfds);
        for i in ready {
            if i == 2 {
                let mut b = [0u8; 8];
                let _ = rustix::io::read(&p.wake, &mut b);
            } else {
                read_once(p, i, &mut fds[i], &mut buf);
            }
        }
    }
}

fn read_once(p: &ProcShared, i: usize, slot: &mut Option<OwnedFd>, buf: &mut [u8]) -> bool {
    let Some(fd) = slot else { return false };
    match rustix::io::read(&*fd, &mut *buf) {
        Ok(0) => {
            *slot = None;
            false
        }
        Ok(n) => {
            let mut st = p.lock();
            if i == 0 {
                st.stdout.push(&buf[..n]);
            } else {
                st.stderr.push(&buf[..n]);
            }
            drop(st);
            p.cond.notify_all();
            true
        }
        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => false,
        Err(_) => {
            *slot = None;
            false
        }
    }
}

fn drain(p: &ProcShared, i: usize, slot: &mut Option<OwnedFd>, buf: &mut [u8]) {
    while read_once(p, i, slot, buf) {}
}

/// The sandbox's reader thread: init's reports, and the canary watch.
fn read_reports(sh: &Shared, mut touches: Option<Touches>, mut observer: Box<dyn SandboxObserver>) {
    let mut buf = vec![0u8; 1 << 20];
    let why = loop {
        let mut pfds = vec![PollFd::new(&sh.ctl, PollFlags::IN)];
        if let Some(t) = &touches {
            pfds.push(PollFd::new(&t.fd, PollFlags::IN));
        }
        match poll(&mut pfds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => break format!("poll: {e}"),
        }
        let ctl_ready = !pfds[0].revents().is_empty();
        let touch_ready = pfds.len() > 1 && !pfds[1].revents().is_empty();
        drop(pfds);
        if touch_ready {
            if let Some(t) = touches.as_mut() {
                t.drain(&mut ObserverSink(observer.as_mut()));
            }
        }
        if !ctl_ready {
            continue;
        }
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &sh.ctl,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut anc,
            rustix::net::RecvFlags::CMSG_CLOEXEC | rustix::net::RecvFlags::DONTWAIT,
        );
        let mut passed: Option<OwnedFd> = anc.drain().find_map(|m| match m {
            rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        });
        let n = match got {
            Ok(m) if m.bytes == 0 => break "its init exited".to_string(),
            Ok(m) => m.bytes,
            Err(rustix::io::Errno::AGAIN)
            | Err(rustix::io::Errno::INTR)
            | Err(rustix::io::Errno::CONNRESET) => continue,
            Err(e) => break format!("reading its control socket: {e}"),
        };
        let report: Report = match serde_json::from_slice(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "malformed report from a sandbox");
                continue;
            }
        };
        let proc_of = |id: u64| sh.lock().procs.get(&id).cloned();
        match report {
            Report::Started {
                id, pid, landlock, ..
            } => {
                if let Some(p) = proc_of(id) {
                    let mut st = p.lock();
                    st.pid = Some(pid);
                    st.landlock = Some(landlock);
                }
            }
            Report::SetupError {
                id: Some(id),
                message,
            } => {
                if let Some(p) = proc_of(id) {
                    let mut st = p.lock();
                    st.setup_error.get_or_insert(message);
                    st.ended_at.get_or_insert_with(Instant::now);
                    drop(st);
                    p.poke();
                }
            }
            Report::SetupError { id: None, message } => {
                tracing::warn!(%message, "a sandbox reported an error");
            }
            Report::ExecError { id, errno, .. } => {
                if let Some(p) = proc_of(id) {
                    p.lock().exec_errno = Some(errno);
                }
            }
            Report::Exited {
                id,
                status,
                lost,
                full,
                nofile,
                memory,
            } => {
                if let Some(p) = proc_of(id) {
                    let mut st = p.lock();
                    st.exit = Some(Exit {
                        status,
                        lost,
                        full,
                        nofile,
                        memory,
                    });
                    st.ended_at.get_or_insert_with(Instant::now);
                    st.stdin = None;
                    drop(st);
                    p.poke();
                }
            }
            Report::Event { event } => observer.event(event),
            Report::Watches { paths } => match (passed.take(), touches.as_mut()) {
                // The same instance, watching the files a reset planted.
                (None, Some(t)) => t.rewatched(paths, &mut ObserverSink(observer.as_mut())),
                (None, None) => {}
                (Some(fd), _) => {
                    if let Some(old) = touches.take() {
                        old.finish(&mut ObserverSink(observer.as_mut()));
                    }
                    touches = Some(Touches {
                        fd,
                        paths: paths.into_iter().map(|(wd, p)| (wd, p, 0)).collect(),
                    });
                }
            },
            Report::ResetDone { error } => {
                let mut st = sh.lock();
                st.resets_done += 1;
                st.reset_error = error;
                drop(st);
                sh.cond.notify_all();
            }
            Report::CheckpointDone { error, .. } => {
                let mut st = sh.lock();
                st.checkpoints_done += 1;
                st.checkpoint_error = error;
                drop(st);
                sh.cond.notify_all();
            }
            Report::CopyOut { path, size } => match passed.take() {
                Some(fd) => observer.copy_out(&path, size, fs::File::from(fd)),
                None => observer.copy_out_refused(&path, "the sandbox sent no file descriptor"),
            },
            Report::CopyOutRefused { path, reason } => observer.copy_out_refused(&path, &reason),
            Report::Closed => {
                sh.lock().init_closed = true;
                sh.cond.notify_all();
            }
            other => tracing::warn!(report = ?other, "unexpected report from a live sandbox"),
        }
    };
    if let Some(t) = touches.take() {
        t.finish(&mut ObserverSink(observer.as_mut()));
    }
    let procs: Vec<Arc<ProcShared>> = {
        let mut st = sh.lock();
        st.gone.get_or_insert(why);
        st.procs.values().cloned().collect()
    };
    sh.cond.notify_all();
    for p in procs {
        let mut st = p.lock();
        if st.exit.is_none() && st.setup_error.is_none() {
            st.setup_error = Some("the sandbox ended before the process did".into());
            st.ended_at.get_or_insert_with(Instant::now);
        }
        drop(st);
        p.poke();
    }
}
