//! The wire types of the API: requests (`deny_unknown_fields`, checked
//! once into runtime values) and answers. The OpenAPI document is
//! generated from these.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use airlock_policy::HumanDuration;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::text::text;

/// A duration: seconds as a number (`30`, `0.5`) or a string with a unit
/// (`"30s"`, `"500ms"`, `"1m30s"`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(
    untagged,
    expecting = "a number of seconds or a duration string such as \"30s\""
)]
pub enum DurationValue {
    /// Seconds.
    Seconds(f64),
    /// With a unit.
    Text(String),
}

impl DurationValue {
    /// The duration, or a 400 naming `field`.
    pub fn to_duration(&self, field: &str) -> Result<Duration, ApiError> {
        match self {
            DurationValue::Seconds(s) => {
                if !s.is_finite() || *s <= 0.0 || *s > 1e9 {
                    return Err(ApiError::field(
                        field,
                        format!("{s} is not a number of seconds above zero"),
                    ));
                }
                Ok(Duration::from_secs_f64(*s))
            }
            DurationValue::Text(t) => {
                let d: HumanDuration = t.parse().map_err(|e| ApiError::field(field, e))?;
                let d = Duration::from(d);
                if d.is_zero() {
                    return Err(ApiError::field(field, "must be more than zero"));
                }
                Ok(d)
            }
        }
    }
}

/// A profile: a name (a `NAME.toml` of the server's profiles directory,
/// else a built-in profile), or an inline profile object with the fields
/// of a profile file (`{"limits": {"memory": "256M"}, "extends": "default"}`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged, expecting = "a profile name or an inline profile object")]
pub enum ProfileValue {
    /// A profile name.
    Name(String),
    /// An inline profile.
    #[schema(value_type = Object)]
    Inline(serde_json::Map<String, serde_json::Value>),
}

/// `POST /v1/sandboxes`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandbox {
    /// The profile (default: `default`).
    pub profile: Option<ProfileValue>,
    /// The sandbox's id (1 to 64 letters, digits, `-`, `_`); default a
    /// fresh one.
    pub id: Option<String>,
    /// A host directory bound read-write as the workspace (default: an
    /// ephemeral tmpfs).
    #[schema(value_type = Option<String>)]
    pub workspace: Option<PathBuf>,
    /// Close the sandbox this long after create.
    pub ttl: Option<DurationValue>,
    /// Close the sandbox after this long without a request.
    pub idle_timeout: Option<DurationValue>,
    /// Variables added to the profile's environment.
    pub env: Option<BTreeMap<String, String>>,
}

/// A command: an argument vector, or a string run by `/bin/sh -c`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(
    untagged,
    expecting = "a list of strings (argv) or a string (run by /bin/sh -c)"
)]
pub enum Command {
    /// argv.
    Argv(Vec<String>),
    /// A shell command line.
    Shell(String),
}

impl Command {
    /// The argument vector.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Argv(v) => v.clone(),
            Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        }
    }
}

/// `POST /v1/sandboxes/{id}/exec`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    /// The command: `["ls", "-l"]`, or `"ls -l | wc -l"` (run by
    /// `/bin/sh -c`).
    pub cmd: Command,
    /// Variables set on top of the sandbox's environment.
    pub env: Option<BTreeMap<String, String>>,
    /// Where it starts: absolute, or relative to the workspace.
    pub cwd: Option<String>,
    /// Its stdin as text (then end of file). For a background process
    /// without `stdin`, stdin stays open for `POST .../stdin`.
    pub stdin: Option<String>,
    /// Its stdin as base64 (instead of `stdin`).
    pub stdin_base64: Option<String>,
    /// Its wall-clock limit (default: the profile's `limits.timeout`).
    pub timeout: Option<DurationValue>,
    /// Bytes kept of each of stdout and stderr (default: the profile's
    /// `limits.output`).
    pub output_cap: Option<u64>,
    /// Start it and answer `{"pid": ...}` at once.
    #[serde(default)]
    pub background: bool,
    /// Answer an NDJSON stream of output chunks, then the result.
    #[serde(default)]
    pub stream: bool,
}

/// How a command ended. Output is the tail kept within the cap; the
/// `*_dropped` counts say how many bytes went before it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExecResponse {
    /// The process id in the sandbox (for `.../processes/{pid}`).
    pub pid: u64,
    /// Its pid inside the sandbox's pid namespace.
    pub os_pid: Option<i32>,
    /// `airlock run`'s exit code meanings: the command's own, 128+N for
    /// signal N, 124 timeout, 126 not executable, 127 not found.
    pub exit_code: i32,
    /// Why it ended: `{"kind": "exit", "code": 0}`, `{"kind": "signal",
    /// "signal": 9}`, `{"kind": "timeout"}`, ...
    #[schema(value_type = Object)]
    pub reason: serde_json::Value,
    /// Limits it hit (`timeout`, `memory`, `pids`, `output`, ...).
    #[schema(value_type = Vec<String>)]
    pub limits_hit: serde_json::Value,
    /// Wall-clock time in milliseconds.
    pub wall_ms: u64,
    /// Its stdout as UTF-8 text (invalid sequences replaced by U+FFFD;
    /// then `stdout_base64` holds the exact bytes).
    pub stdout: String,
    /// The exact bytes, only when `stdout` is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout_base64: Option<String>,
    /// Its stderr, as `stdout`.
    pub stderr: String,
    /// The exact bytes, only when `stderr` is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr_base64: Option<String>,
    /// Bytes of stdout dropped from the front past the cap.
    pub stdout_dropped: u64,
    /// Bytes of stderr dropped from the front past the cap.
    pub stderr_dropped: u64,
}

impl ExecResponse {
    /// From the runtime's result.
    pub fn from_result(r: &airlock_runtime::ExecResult) -> Self {
        let (stdout, stdout_base64) = text(&r.stdout);
        let (stderr, stderr_base64) = text(&r.stderr);
        ExecResponse {
            pid: r.id,
            os_pid: r.pid,
            exit_code: r.exit_code,
            reason: serde_json::to_value(r.reason).unwrap_or_default(),
            limits_hit: serde_json::to_value(&r.limits_hit).unwrap_or_default(),
            wall_ms: r.wall_ms,
            stdout,
            stdout_base64,
            stderr,
            stderr_base64,
            stdout_dropped: r.stdout_dropped,
            stderr_dropped: r.stderr_dropped,
        }
    }
}

/// A background process started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Started {
    /// The process id in the sandbox.
    pub pid: u64,
    /// Its pid inside the sandbox's pid namespace, once known.
    pub os_pid: Option<i32>,
}

/// A process's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProcessStatus {
    /// The process id in the sandbox.
    pub pid: u64,
    /// Its pid inside the sandbox's pid namespace.
    pub os_pid: Option<i32>,
    /// `running` or `exited`.
    pub state: &'static str,
    /// Bytes of stdout and stderr produced so far (offsets for `output`).
    pub stdout_bytes: u64,
    /// Bytes of stderr produced so far.
    pub stderr_bytes: u64,
    /// Its result, once it ended.
    pub result: Option<ExecResponse>,
}

/// `GET .../processes/{pid}/output`: the bytes of one stream from an
/// offset.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutputResponse {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The offset asked for.
    pub asked_from: u64,
    /// Where `data` starts: later than `asked_from` when those bytes were
    /// dropped past the cap.
    pub from: u64,
    /// Bytes between `asked_from` and `from` that are no longer kept.
    pub dropped: u64,
    /// The offset after `data`: the next `from`.
    pub next: u64,
    /// The data as UTF-8 text (invalid sequences replaced by U+FFFD; then
    /// `data_base64` holds the exact bytes).
    pub data: String,
    /// The exact bytes, only when `data` is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// Whether the process has ended (no more output will come).
    pub exited: bool,
}

/// `POST .../processes/{pid}/signal`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    /// A name (`"TERM"`, `"SIGKILL"`) or a number (`15`).
    pub signal: SignalValue,
}

/// A signal by name or number.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged, expecting = "a signal name (\"TERM\") or number (15)")]
pub enum SignalValue {
    /// A number, 1 to 64.
    Number(i64),
    /// A name, with or without `SIG`.
    Name(String),
}

impl SignalValue {
    /// The signal number, or a 400 naming `signal`.
    pub fn number(&self) -> Result<i32, ApiError> {
        const NAMES: &[(&str, i32)] = &[
            ("HUP", 1),
            ("INT", 2),
            ("QUIT", 3),
            ("ILL", 4),
            ("TRAP", 5),
            ("ABRT", 6),
            ("BUS", 7),
            ("FPE", 8),
            ("KILL", 9),
            ("USR1", 10),
            ("SEGV", 11),
            ("USR2", 12),
            ("PIPE", 13),
            ("ALRM", 14),
            ("TERM", 15),
            ("CHLD", 17),
            ("CONT", 18),
            ("STOP", 19),
            ("TSTP", 20),
            ("TTIN", 21),
            ("TTOU", 22),
            ("URG", 23),
            ("XCPU", 24),
            ("XFSZ", 25),
            ("VTALRM", 26),
            ("PROF", 27),
            ("WINCH", 28),
            ("IO", 29),
            ("PWR", 30),
            ("SYS", 31),
        ];
        match self {
            SignalValue::Number(n) if (1..=64).contains(n) => Ok(*n as i32),
            SignalValue::Number(n) => Err(ApiError::field(
                "signal",
                format!("{n} is not a signal number (1 to 64)"),
            )),
            SignalValue::Name(s) => {
                let up = s.trim().to_ascii_uppercase();
                let bare = up.strip_prefix("SIG").unwrap_or(&up);
                NAMES
                    .iter()
                    .find(|(n, _)| *n == bare)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| ApiError::field("signal", format!("unknown signal {s:?}")))
            }
        }
    }
}

/// `POST /v1/sandboxes/{id}/reset`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// Go back to this checkpoint instead of the state at create.
    pub checkpoint: Option<String>,
}

/// `POST /v1/sandboxes/{id}/checkpoint`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointBody {
    /// Its name: 1 to 64 letters, digits, `-`, `_` or `.`.
    pub name: String,
}

/// How long a reset or checkpoint took.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Took {
    /// Milliseconds.
    pub ms: f64,
}

/// A sandbox's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SandboxView {
    /// Its id.
    pub id: String,
    /// `running` or `closed`.
    pub state: String,
    /// Why it closed (`closed`, `ttl`, `idle`, `ended`).
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
    #[schema(value_type = Object)]
    pub limits: serde_json::Value,
    /// Bytes of the server's memory budget it takes.
    pub memory_budgeted: u64,
    /// `none` or `allowlist`.
    pub network: String,
    /// The host workspace, if any.
    #[schema(value_type = Option<String>)]
    pub workspace: Option<PathBuf>,
    /// The writable places the files API reaches.
    #[schema(value_type = Vec<String>)]
    pub writable: Vec<PathBuf>,
    /// Processes still running.
    pub processes: Vec<u64>,
    /// The audit log, when there is one.
    #[schema(value_type = Option<String>)]
    pub audit: Option<PathBuf>,
}

impl SandboxView {
    /// From the runtime's info.
    pub fn new(i: airlock_runtime::SandboxInfo, memory_budgeted: u64) -> Self {
        SandboxView {
            id: i.id,
            state: i.state.into(),
            closed_reason: i.closed_reason,
            profile: i.profile,
            created_at: i.created_at,
            age_secs: i.age_secs,
            ttl_secs: i.ttl_secs,
            idle_timeout_secs: i.idle_timeout_secs,
            expires_in_secs: i.expires_in_secs,
            limits: i.limits,
            memory_budgeted,
            network: serde_json::to_value(i.network)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            workspace: i.workspace,
            writable: i.writable,
            processes: i.processes,
            audit: i.audit,
        }
    }
}

/// `GET /v1/sandboxes`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SandboxList {
    /// Every sandbox the server holds (closed ones for a while after they
    /// closed on their own).
    pub sandboxes: Vec<SandboxView>,
    /// Live sandboxes and the most.
    pub live: usize,
    /// `--max-sandboxes`.
    pub max_sandboxes: usize,
    /// Memory budgeted to live sandboxes.
    pub memory_used: u64,
    /// `--memory-budget`.
    pub memory_budget: u64,
}

/// `GET /v1/sandboxes/{id}/processes`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProcessList {
    /// Processes still running.
    pub running: Vec<u64>,
}

/// A file's facts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileView {
    /// Its path inside the sandbox.
    pub path: String,
    /// Its name.
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits, octal text (`"644"`).
    pub mode: String,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

impl From<airlock_runtime::FileInfo> for FileView {
    fn from(f: airlock_runtime::FileInfo) -> Self {
        FileView {
            path: f.path,
            name: f.name,
            kind: serde_json::to_value(f.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            size: f.size,
            mode: format!("{:o}", f.mode),
            mtime: f.mtime,
        }
    }
}

/// A directory listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileList {
    /// The directory.
    pub path: String,
    /// Its entries, sorted by name.
    pub entries: Vec<FileView>,
    /// Whether entries were left out past the listing cap.
    pub truncated: bool,
}

/// `GET /v1/sandboxes/{id}/audit`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditResponse {
    /// The log's path, when the sandbox has one (`--audit-dir` or the
    /// profile's `[audit] dir`).
    #[schema(value_type = Option<String>)]
    pub path: Option<PathBuf>,
    /// The events so far, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// Live sandboxes.
    pub live: usize,
    /// The server's version.
    pub version: &'static str,
}

/// An acknowledgement.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Done {
    /// Always true.
    pub ok: bool,
}
