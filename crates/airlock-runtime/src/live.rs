//! Live sandboxes: create once, exec many times, files, reset, close.
//!
//! A [`Sandbox`] is prepared exactly as `run` prepares its sandbox
//! (canaries, audit log, egress gateway, approver), then built by the
//! jail as a live sandbox whose init waits for processes. Every create,
//! exec (argv, cwd, result), file operation, reset and close is an event
//! in the sandbox's hash-chained audit log. A ttl and an idle timeout
//! close it on their own.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use airlock_jail::{ExecSpec, ExecStdin, FileInfo, LimitHit, Stream};
use airlock_policy::Profile;
use serde::Serialize;
use serde_json::json;

use crate::{
    close_audit, evidence, prepare, stop_gateway, AuditSummary, EvidenceReport, NetworkReport,
    Prepared, RunRequest, RuntimeError,
};

use airlock_jail::ExitReason;
pub use airlock_jail::{FileError, FileKind, LiveError, OutputChunk, Process};

/// Most bytes the files API reads or writes at once unless the caller
/// says otherwise.
pub const DEFAULT_FILE_MAX: u64 = 100 << 20;

/// What to build.
#[derive(Debug, Clone)]
pub struct SandboxRequest {
    /// The validated profile.
    pub profile: Profile,
    /// A host directory bound read-write as the workspace; `None` for an
    /// ephemeral tmpfs.
    pub workspace: Option<PathBuf>,
    /// The sandbox's id; `None` for a fresh one.
    pub sandbox_id: Option<String>,
    /// Write the audit log to this file; without it the profile's
    /// `[audit] dir` decides; without that, no log.
    pub audit: Option<PathBuf>,
    /// Use this cgroup hierarchy instead of detecting one.
    pub cgroup_root: Option<PathBuf>,
    /// Close the sandbox this long after create.
    pub ttl: Option<Duration>,
    /// Close the sandbox after this long without a request.
    pub idle_timeout: Option<Duration>,
    /// Answers escalation requests; none means deny.
    pub approver: Option<Arc<dyn crate::Approver>>,
}

impl SandboxRequest {
    /// A request with no workspace, audit, ttl or idle timeout.
    pub fn new(profile: Profile) -> Self {
        SandboxRequest {
            profile,
            workspace: None,
            sandbox_id: None,
            audit: None,
            cgroup_root: None,
            ttl: None,
            idle_timeout: None,
            approver: None,
        }
    }
}

/// One command.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Variables set on top of the sandbox's environment.
    pub env: Vec<(String, String)>,
    /// Where it starts: absolute, or relative to the workspace.
    pub cwd: Option<String>,
    /// Its stdin (none: end of file at once).
    pub stdin: Option<Vec<u8>>,
    /// Keep stdin open for later writes (background processes).
    pub stdin_pipe: bool,
    /// Its wall-clock limit; `None` for the profile's `limits.timeout`.
    pub timeout: Option<Duration>,
    /// Bytes kept of each stream; `None` for the profile's `limits.output`.
    pub output_cap: Option<u64>,
}

/// How a command ended, with its output (the tail, past the cap).
#[derive(Debug, Clone, Serialize)]
pub struct ExecResult {
    /// The process's id in the sandbox.
    pub id: u64,
    /// Its pid inside the sandbox.
    pub pid: Option<i32>,
    /// `airlock run`'s exit code meanings.
    pub exit_code: i32,
    /// Why it ended.
    pub reason: ExitReason,
    /// Limits it hit.
    pub limits_hit: Vec<LimitHit>,
    /// Wall-clock time in milliseconds.
    pub wall_ms: u64,
    /// The last bytes of its stdout.
    #[serde(skip)]
    pub stdout: Vec<u8>,
    /// The last bytes of its stderr.
    #[serde(skip)]
    pub stderr: Vec<u8>,
    /// Bytes of stdout dropped from the front past the cap.
    pub stdout_dropped: u64,
    /// Bytes of stderr dropped from the front past the cap.
    pub stderr_dropped: u64,
}

/// A sandbox's state for listings.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    /// Its id.
    pub id: String,
    /// `running` or `closed`.
    pub state: &'static str,
    /// Why it closed, once closed (`closed`, `ttl`, `idle`, `ended`).
    pub closed_reason: Option<String>,
    /// The profile's name.
    pub profile: String,
    /// Seconds since the epoch at create.
    pub created_at: u64,
    /// Seconds since create.
    pub age_secs: f64,
    /// Its ttl in seconds.
    pub ttl_secs: Option<f64>,
    /// Its idle timeout in seconds.
    pub idle_timeout_secs: Option<f64>,
    /// Seconds until the ttl or idle timeout closes it.
    pub expires_in_secs: Option<f64>,
    /// The profile's limits.
    pub limits: serde_json::Value,
    /// `none` or `allowlist`.
    pub network: airlock_policy::NetworkMode,
    /// The host workspace, if any.
    pub workspace: Option<PathBuf>,
    /// The writable places the files API reaches.
    pub writable: Vec<PathBuf>,
    /// Processes still running.
    pub processes: Vec<u64>,
    /// The audit log, when there is one.
    pub audit: Option<PathBuf>,
}

/// What a closed sandbox leaves: the gateway's report and the evidence.
#[derive(Debug, Clone, Serialize)]
pub struct CloseReport {
    /// The sandbox's id.
    pub sandbox: String,
    /// Why it closed.
    pub reason: String,
    /// airlock's own failure while closing it (the jail's close), if any:
    /// never the sandbox's doing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the egress gateway decided.
    pub network: Option<NetworkReport>,
    /// Canaries, escalations, copy-out and the audit log's summary.
    #[serde(flatten)]
    pub evidence: EvidenceReport,
}

/// Egress events since a caller's last look ([`Sandbox::network_events`]).
#[derive(Debug, Clone, Serialize)]
pub struct NetworkSince {
    /// The decisions and caps, in the order the gateway reported them.
    pub events: Vec<crate::NetworkEvent>,
    /// The cursor to pass next time.
    pub next: usize,
    /// Events not kept since create (past the in-memory cap; the audit log
    /// and the close report still have them).
    pub dropped: u64,
}

struct Life {
    last_used: Instant,
    closed: Option<CloseReport>,
}

struct Inner {
    id: String,
    jail: airlock_jail::Sandbox,
    shared: Arc<evidence::Shared>,
    gateway: Arc<Mutex<Option<airlock_egress::GatewayProcess>>>,
    approver: Mutex<Option<std::thread::JoinHandle<()>>>,
    profile: Profile,
    workspace: Option<PathBuf>,
    audit_path: Option<PathBuf>,
    created: SystemTime,
    created_at: Instant,
    ttl: Option<Duration>,
    idle: Option<Duration>,
    life: Mutex<Life>,
    life_cond: Condvar,
    canaries: Vec<airlock_canary::Canary>,
    scanner: std::sync::OnceLock<airlock_canary::Scanner>,
    /// Background processes whose end is not recorded yet (close waits
    /// for them, so their output's canary scan is in the report).
    bg_pending: (Mutex<usize>, Condvar),
}

/// A live sandbox. Clones share it; [`Sandbox::close`] ends it for all.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

fn live_err(e: LiveError) -> RuntimeError {
    RuntimeError::Jail(e.into())
}

impl Sandbox {
    /// Builds a live sandbox.
    pub fn create(req: SandboxRequest) -> Result<Sandbox, RuntimeError> {
        let mut run = RunRequest::new(req.profile.clone(), Vec::new());
        run.workspace = req.workspace.clone();
        run.sandbox_id = req.sandbox_id.clone();
        run.audit = req.audit.clone();
        run.cgroup_root = req.cgroup_root.clone();
        run.approver = req.approver.clone();
        for (what, d) in [("ttl", req.ttl), ("idle_timeout", req.idle_timeout)] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(RuntimeError::Request {
                    field: what,
                    reason: "must be more than zero".into(),
                });
            }
        }
        let Prepared {
            sandbox,
            spec,
            shared,
            ev,
            gateway,
            approver,
        } = prepare(&run, true)?;
        let canaries = ev.canaries.clone();
        let audit_path = shared
            .audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|w| w.path().to_path_buf());
        let jail = match airlock_jail::Sandbox::create(&spec, Box::new(ev)) {
            Ok(j) => j,
            Err(e) => {
                let _ = stop_gateway(&sandbox, &gateway, approver);
                shared.record("sandbox.failed", json!({"error": e.to_string()}));
                close_audit(&shared);
                return Err(e.into());
            }
        };
        shared.record(
            "sandbox.started",
            json!({"cgroup": jail.cgroup(), "host_uid": jail.host_uid(),
                   "writable": jail.files().roots(), "ttl": req.ttl.map(|d| d.as_secs_f64()),
                   "idle_timeout": req.idle_timeout.map(|d| d.as_secs_f64())}),
        );
        let inner = Arc::new(Inner {
            id: sandbox,
            jail,
            shared,
            gateway,
            approver: Mutex::new(approver),
            profile: req.profile,
            workspace: req.workspace,
            audit_path,
            created: SystemTime::now(),
            created_at: Instant::now(),
            ttl: req.ttl,
            idle: req.idle_timeout,
            life: Mutex::new(Life {
                last_used: Instant::now(),
                closed: None,
            }),
            life_cond: Condvar::new(),
            canaries,
            scanner: std::sync::OnceLock::new(),
            bg_pending: (Mutex::new(0), Condvar::new()),
        });
        if inner.ttl.is_some() || inner.idle.is_some() {
            let weak = Arc::downgrade(&inner);
            let _ = std::thread::Builder::new()
                .name("airlock-lifetime".into())
                .spawn(move || watch_lifetime(weak));
        }
        Ok(Sandbox { inner })
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    fn life(&self) -> MutexGuard<'_, Life> {
        self.inner.life.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a request (for the idle timeout); refuses a closed sandbox.
    fn touch(&self) -> Result<(), RuntimeError> {
        let mut l = self.life();
        if let Some(c) = &l.closed {
            return Err(RuntimeError::Closed {
                id: self.inner.id.clone(),
                reason: c.reason.clone(),
            });
        }
        l.last_used = Instant::now();
        Ok(())
    }

    /// Whether it is closed.
    pub fn is_closed(&self) -> bool {
        self.life().closed.is_some()
    }

    /// Its state.
    pub fn info(&self) -> SandboxInfo {
        let l = self.life();
        let now = Instant::now();
        let age = now.saturating_duration_since(self.inner.created_at);
        let left = [
            self.inner.ttl.map(|t| t.saturating_sub(age)),
            self.inner
                .idle
                .map(|i| i.saturating_sub(now.saturating_duration_since(l.last_used))),
        ]
        .into_iter()
        .flatten()
        .min();
        let closed = l.closed.as_ref().map(|c| c.reason.clone());
        drop(l);
        SandboxInfo {
            id: self.inner.id.clone(),
            state: if closed.is_some() {
                "closed"
            } else {
                "running"
            },
            closed_reason: closed.clone(),
            profile: self.inner.profile.name.clone(),
            created_at: self
                .inner
                .created
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            age_secs: age.as_secs_f64(),
            ttl_secs: self.inner.ttl.map(|d| d.as_secs_f64()),
            idle_timeout_secs: self.inner.idle.map(|d| d.as_secs_f64()),
            expires_in_secs: if closed.is_some() {
                None
            } else {
                left.map(|d| d.as_secs_f64())
            },
            limits: serde_json::to_value(&self.inner.profile.limits).unwrap_or_default(),
            network: self.inner.profile.network.mode,
            workspace: self.inner.workspace.clone(),
            writable: self.inner.jail.files().roots(),
            processes: if closed.is_some() {
                Vec::new()
            } else {
                self.inner.jail.running()
            },
            audit: self.inner.audit_path.clone(),
        }
    }

    fn exec_spec(&self, req: &ExecRequest) -> Result<ExecSpec, RuntimeError> {
        if req.cmd.is_empty() || req.cmd[0].is_empty() {
            return Err(RuntimeError::Request {
                field: "cmd",
                reason: "empty command".into(),
            });
        }
        let mut env = self.inner.jail.spec().env.clone();
        for (k, v) in &req.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        let limits = &self.inner.profile.limits;
        Ok(ExecSpec {
            argv: req.cmd.clone(),
            env,
            cwd: req.cwd.as_ref().map(PathBuf::from),
            stdin: match (&req.stdin, req.stdin_pipe) {
                (_, true) => ExecStdin::Pipe,
                (Some(b), false) => ExecStdin::Bytes(b.clone()),
                (None, false) => ExecStdin::Null,
            },
            timeout: Some(req.timeout.unwrap_or(limits.timeout)),
            output_cap: req.output_cap.unwrap_or(limits.output.bytes()),
        })
    }

    fn record_start(&self, p: &Process, req: &ExecRequest, background: bool) {
        self.inner.shared.record(
            "exec.started",
            json!({"id": p.id(), "argv": req.cmd, "cwd": req.cwd,
                   "env": req.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                   "stdin_bytes": req.stdin.as_ref().map(Vec::len),
                   "background": background}),
        );
    }

    fn result_of(&self, p: &Process, report: &airlock_jail::ExecReport) -> ExecResult {
        let out = p.output(Stream::Stdout, 0, usize::MAX);
        let err = p.output(Stream::Stderr, 0, usize::MAX);
        ExecResult {
            id: report.id,
            pid: report.pid,
            exit_code: report.exit_code,
            reason: report.reason,
            limits_hit: report.limits_hit.clone(),
            wall_ms: report.wall.as_millis() as u64,
            stdout: out.data,
            stderr: err.data,
            stdout_dropped: report.stdout.dropped,
            stderr_dropped: report.stderr.dropped,
        }
    }

    fn record_end(&self, report: &airlock_jail::ExecReport) {
        for l in &report.limits_hit {
            self.inner.shared.record(
                "limit.hit",
                json!({"layer": "exec", "id": report.id, "limit": l}),
            );
        }
        self.inner.shared.record(
            "exec.ended",
            json!({"id": report.id, "pid": report.pid, "exit_code": report.exit_code,
                   "reason": report.reason, "limits_hit": report.limits_hit,
                   "wall": report.wall.as_secs_f64(), "stdout": report.stdout,
                   "stderr": report.stderr, "setup_error": report.setup_error}),
        );
    }

    /// Scans output for the sandbox's canaries (a leak is evidence).
    fn scan(&self, id: u64, stream: &str, data: &[u8]) {
        if self.inner.canaries.is_empty() || data.is_empty() {
            return;
        }
        let scanner = self
            .inner
            .scanner
            .get_or_init(|| airlock_canary::Scanner::new(&self.inner.canaries));
        for h in scanner.scan(data) {
            let leak = crate::CanaryLeak {
                canary: h.canary_id.clone(),
                encoding: airlock_egress::hit_encoding(&h),
                place: format!("exec:{id}:{stream}"),
            };
            let mut ev = self
                .inner
                .shared
                .evidence
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if ev.canaries.leaked.contains(&leak) {
                continue;
            }
            ev.canaries.leaked.push(leak.clone());
            drop(ev);
            self.inner.shared.record(
                "canary.leaked",
                serde_json::to_value(&leak).unwrap_or_default(),
            );
        }
    }

    /// Runs a command to its end, passing its output to `on_output` as it
    /// arrives (within the cap). A command that could not start because of
    /// the request (a missing cwd) is [`RuntimeError::Exec`].
    pub fn exec(
        &self,
        req: &ExecRequest,
        on_output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecResult, RuntimeError> {
        self.exec_until(req, on_output, &std::sync::atomic::AtomicBool::new(false))
    }

    /// [`Sandbox::exec`] that kills the command's tree as soon as `cancel`
    /// is set (it is looked at every 100 ms); the result then says
    /// `killed`.
    pub fn exec_until(
        &self,
        req: &ExecRequest,
        on_output: &mut dyn FnMut(Stream, &[u8]),
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<ExecResult, RuntimeError> {
        self.touch()?;
        let spec = self.exec_spec(req)?;
        let (p, report) = {
            let p = self.inner.jail.start(spec).map_err(live_err)?;
            self.record_start(&p, req, false);
            let (mut o, mut e) = (0u64, 0u64);
            let mut cancelled = false;
            loop {
                if !cancelled && cancel.load(std::sync::atomic::Ordering::SeqCst) {
                    cancelled = true;
                    let _ = p.kill();
                }
                let done = p.wait_output(o, e, Duration::from_millis(100));
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
                .ok_or_else(|| RuntimeError::Exec("the process left no report".into()))?;
            (p, report)
        };
        self.record_end(&report);
        let _ = self.touch();
        let result = self.result_of(&p, &report);
        self.scan(report.id, "stdout", &result.stdout);
        self.scan(report.id, "stderr", &result.stderr);
        if let Some(msg) = report.setup_error {
            if self.inner.jail.is_alive() {
                return Err(RuntimeError::Exec(msg));
            }
            return Err(RuntimeError::Closed {
                id: self.inner.id.clone(),
                reason: msg,
            });
        }
        Ok(result)
    }

    /// Starts a command in the background; its output, stdin, signals and
    /// end are reached through [`Sandbox::process`].
    pub fn spawn(&self, req: &ExecRequest) -> Result<Process, RuntimeError> {
        self.touch()?;
        let spec = self.exec_spec(req)?;
        let p = self.inner.jail.start(spec).map_err(live_err)?;
        self.record_start(&p, req, true);
        // Its end is recorded when it comes (at the latest when the
        // sandbox closes, which waits for it).
        let me = self.clone();
        let watched = p.clone();
        let pending = |d: isize| {
            let (n, cv) = &self.inner.bg_pending;
            let mut n = n.lock().unwrap_or_else(|p| p.into_inner());
            *n = n.saturating_add_signed(d);
            cv.notify_all();
        };
        pending(1);
        let spawned = std::thread::Builder::new()
            .name("airlock-bg".into())
            .spawn(move || {
                loop {
                    if let Some(r) = watched.wait(Duration::from_secs(3600)) {
                        me.record_end(&r);
                        // Its output (what the cap kept) is scanned for the
                        // canaries, as an exec's is.
                        let res = me.result_of(&watched, &r);
                        me.scan(r.id, "stdout", &res.stdout);
                        me.scan(r.id, "stderr", &res.stderr);
                        break;
                    }
                }
                let (n, cv) = &me.inner.bg_pending;
                let mut n = n.lock().unwrap_or_else(|p| p.into_inner());
                *n = n.saturating_sub(1);
                cv.notify_all();
            });
        if spawned.is_err() {
            pending(-1);
        }
        Ok(p)
    }

    /// A process started in this sandbox.
    pub fn process(&self, id: u64) -> Result<Process, RuntimeError> {
        self.touch()?;
        self.inner.jail.process(id).map_err(live_err)
    }

    /// The result of a finished process (background or not).
    pub fn process_result(&self, p: &Process) -> Option<ExecResult> {
        p.report().map(|r| self.result_of(p, &r))
    }

    fn file_event(&self, op: &str, path: &str, extra: serde_json::Value, r: &Result<(), String>) {
        let mut data = json!({"op": op, "path": path});
        if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        if let (Some(d), Err(e)) = (data.as_object_mut(), r) {
            d.insert("error".into(), json!(e));
        }
        self.inner.shared.record(&format!("file.{op}"), data);
    }

    /// Reads a file of at most `max` bytes.
    pub fn read_file(&self, path: &str, max: u64) -> Result<Vec<u8>, RuntimeError> {
        self.touch()?;
        let r = self.inner.jail.files().read(path, max);
        let extra = match &r {
            Ok(d) => json!({"size": d.len(), "sha256": sha(d)}),
            Err(_) => json!({}),
        };
        self.file_event(
            "read",
            path,
            extra,
            &r.as_ref().map(drop).map_err(|e| e.to_string()),
        );
        if let Ok(d) = &r {
            self.scan(0, &format!("file:{path}"), d);
        }
        r.map_err(RuntimeError::from)
    }

    /// Writes a file (parents made), with `mode` or 0644.
    pub fn write_file(
        &self,
        path: &str,
        data: &[u8],
        mode: Option<u32>,
    ) -> Result<FileInfo, RuntimeError> {
        self.touch()?;
        let r = self.inner.jail.files().write(path, data, mode);
        self.file_event(
            "write",
            path,
            json!({"size": data.len(), "sha256": sha(data), "mode": mode}),
            &r.as_ref().map(drop).map_err(|e| e.to_string()),
        );
        r.map_err(RuntimeError::from)
    }

    /// A directory's entries, and whether more were left out.
    pub fn list_files(&self, path: &str) -> Result<(Vec<FileInfo>, bool), RuntimeError> {
        self.touch()?;
        let r = self.inner.jail.files().list(path);
        self.file_event(
            "list",
            path,
            json!({}),
            &r.as_ref().map(drop).map_err(|e| e.to_string()),
        );
        r.map_err(RuntimeError::from)
    }

    /// A file's facts.
    pub fn stat_file(&self, path: &str) -> Result<FileInfo, RuntimeError> {
        self.touch()?;
        let r = self.inner.jail.files().stat(path);
        self.file_event(
            "stat",
            path,
            json!({}),
            &r.as_ref().map(drop).map_err(|e| e.to_string()),
        );
        r.map_err(RuntimeError::from)
    }

    /// Removes a file, or a directory (`recursive` for a non-empty one).
    pub fn remove_file(&self, path: &str, recursive: bool) -> Result<(), RuntimeError> {
        self.touch()?;
        let r = self.inner.jail.files().remove(path, recursive);
        self.file_event(
            "remove",
            path,
            json!({"recursive": recursive}),
            &r.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        );
        r.map_err(RuntimeError::from)
    }

    /// Makes a directory (`parents`: and the missing ones above it).
    pub fn mkdir(&self, path: &str, parents: bool) -> Result<FileInfo, RuntimeError> {
        self.touch()?;
        let r = self.inner.jail.files().mkdir(path, parents);
        self.file_event(
            "mkdir",
            path,
            json!({"parents": parents}),
            &r.as_ref().map(drop).map_err(|e| e.to_string()),
        );
        r.map_err(RuntimeError::from)
    }

    /// Kills every process and puts the writable places back to their
    /// state at create, or at checkpoint `checkpoint`. Returns how long it
    /// took.
    pub fn reset(&self, checkpoint: Option<&str>) -> Result<Duration, RuntimeError> {
        self.touch()?;
        let t = Instant::now();
        let r = self.inner.jail.reset(checkpoint);
        let took = t.elapsed();
        self.inner.shared.record(
            "sandbox.reset",
            json!({"ms": took.as_secs_f64() * 1000.0, "checkpoint": checkpoint,
                   "error": r.as_ref().err().map(|e| e.to_string()),
                   "host_workspace_kept": self.inner.workspace.is_some()}),
        );
        r.map_err(live_err)?;
        Ok(took)
    }

    /// Copies the writable tmpfs places into checkpoint `name` (replacing
    /// one of that name), for [`Sandbox::reset`]. Returns how long it took.
    pub fn checkpoint(&self, name: &str) -> Result<Duration, RuntimeError> {
        self.touch()?;
        let t = Instant::now();
        let r = self.inner.jail.checkpoint(name);
        let took = t.elapsed();
        self.inner.shared.record(
            "sandbox.checkpoint",
            json!({"name": name, "ms": took.as_secs_f64() * 1000.0,
                   "error": r.as_ref().err().map(|e| e.to_string())}),
        );
        r.map_err(live_err)?;
        Ok(took)
    }

    /// The egress gateway's decisions and caps from cursor `from` on (0:
    /// since create), with or without an audit log. Empty for a profile
    /// without a gateway (network mode `none`: nothing can leave, so
    /// nothing is decided). Events reach the supervisor a moment after the
    /// gateway decides; one that races a command's end shows up in the
    /// next call.
    pub fn network_events(&self, from: usize) -> NetworkSince {
        let (events, next, dropped) = self.inner.shared.net_since(from);
        NetworkSince {
            events,
            next,
            dropped,
        }
    }

    /// The audit log so far, one JSON value an event (empty without one).
    pub fn audit_events(&self) -> Result<Vec<serde_json::Value>, RuntimeError> {
        let Some(path) = &self.inner.audit_path else {
            return Ok(Vec::new());
        };
        // What the calls that have returned recorded, the writer may still
        // hold in memory: wait for it (at once, not at its batch timer).
        self.inner
            .shared
            .flush_audit()
            .map_err(RuntimeError::Audit)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| RuntimeError::Audit(format!("reading {}: {e}", path.display())))?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// The audit log's path, when there is one.
    pub fn audit_path(&self) -> Option<&std::path::Path> {
        self.inner.audit_path.as_deref()
    }

    /// Closes the sandbox: every process killed, the gateway stopped, the
    /// audit log signed. Idempotent: a second close returns the first's
    /// report.
    pub fn close(&self) -> Result<CloseReport, RuntimeError> {
        self.close_because("closed")
    }

    fn close_because(&self, reason: &str) -> Result<CloseReport, RuntimeError> {
        let mut l = self.life();
        if let Some(c) = &l.closed {
            return Ok(c.clone());
        }
        let inner = &self.inner;
        let reason = if inner.jail.is_alive() {
            reason.to_string()
        } else {
            "ended".to_string()
        };
        let jail_result = inner.jail.close();
        // Every process is dead now: the background watchers record their
        // ends and scans (bounded, should one be stuck).
        {
            let (n, cv) = &inner.bg_pending;
            let n = n.lock().unwrap_or_else(|p| p.into_inner());
            let _ = cv
                .wait_timeout_while(n, Duration::from_secs(5), |n| *n > 0)
                .unwrap_or_else(|p| p.into_inner());
        }
        let approver = inner
            .approver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let network = stop_gateway(&inner.id, &inner.gateway, approver);
        inner.shared.record(
            "sandbox.ended",
            json!({"reason": reason,
                   "wall": inner.created_at.elapsed().as_secs_f64(),
                   "error": jail_result.as_ref().err().map(|e| e.to_string()),
                   "gateway_failure": network.as_ref().and_then(|n| n.gateway_failure.clone())}),
        );
        let summary: Option<AuditSummary> = close_audit(&inner.shared);
        let mut evidence = std::mem::take(
            &mut *inner
                .shared
                .evidence
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        evidence.audit = summary;
        if inner.jail.spec().exec_watch {
            evidence.execs = Some(inner.shared.execs());
        }
        let report = CloseReport {
            sandbox: inner.id.clone(),
            reason,
            error: jail_result.err().map(|e| e.to_string()),
            network,
            evidence,
        };
        l.closed = Some(report.clone());
        drop(l);
        inner.life_cond.notify_all();
        if let Some(f) = inner.shared.failure() {
            return Err(RuntimeError::Audit(format!(
                "{f}; the sandbox was stopped (the log never has a silent gap)"
            )));
        }
        Ok(report)
    }
}

fn sha(d: &[u8]) -> String {
    use sha2::Digest;
    evidence::hex(&sha2::Sha256::digest(d))
}

/// Closes the sandbox at its ttl or idle timeout; ends with it.
fn watch_lifetime(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let sb = Sandbox { inner };
        let l = sb.life();
        if l.closed.is_some() {
            return;
        }
        let now = Instant::now();
        let ttl_at = sb.inner.ttl.map(|t| sb.inner.created_at + t);
        let idle_at = sb.inner.idle.map(|i| l.last_used + i);
        let due = [ttl_at.map(|t| (t, "ttl")), idle_at.map(|t| (t, "idle"))]
            .into_iter()
            .flatten()
            .min_by_key(|(t, _)| *t);
        let Some((at, why)) = due else { return };
        if at <= now {
            drop(l);
            let _ = sb.close_because(why);
            return;
        }
        let wait = (at - now).min(Duration::from_secs(1));
        let _ = sb
            .inner
            .life_cond
            .wait_timeout(l, wait)
            .unwrap_or_else(|p| p.into_inner());
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let closed = self
            .life
            .get_mut()
            .map(|l| l.closed.is_some())
            .unwrap_or(true);
        if !closed {
            let _ = self.jail.close();
            let approver = self.approver.get_mut().map(|a| a.take()).unwrap_or(None);
            let _ = stop_gateway(&self.id, &self.gateway, approver);
            self.shared
                .record("sandbox.ended", json!({"reason": "dropped"}));
            close_audit(&self.shared);
        }
    }
}
