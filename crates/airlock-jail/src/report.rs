//! The outcome of one sandboxed run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cgroup::CgroupVersion;
use crate::landlock::LandlockReport;

/// Why the run ended. Every run ends with exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ExitReason {
    /// The command exited with this code.
    Exit {
        /// Exit code.
        code: i32,
    },
    /// The command was killed by this signal.
    Signal {
        /// Signal number.
        signal: i32,
    },
    /// The wall-clock timeout fired and the sandbox was killed.
    Timeout,
    /// The kernel's OOM killer ended the command at the memory limit.
    Memory,
    /// The supervisor killed the sandbox (asked to stop, or SIGQUIT).
    Killed,
    /// A second interrupt (SIGINT, Ctrl-C) came within
    /// [`INTERRUPT_WINDOW`] of the first, which was forwarded to the
    /// payload, and the supervisor killed the sandbox.
    Interrupted,
    /// The command could not be executed.
    ExecFailed {
        /// errno from execve (ENOENT: not found; EACCES/ENOEXEC: not executable).
        errno: i32,
    },
}

impl ExitReason {
    /// The exit code airlock itself returns, following `env`, `timeout` and
    /// `docker run`: the command's code, 128+N for signal N, 124 for a
    /// timeout, 137 for an OOM kill, 126/127 when the command cannot be run.
    pub fn exit_code(&self) -> i32 {
        match *self {
            ExitReason::Exit { code } => code,
            ExitReason::Signal { signal } => 128 + signal,
            ExitReason::Timeout => 124,
            ExitReason::Memory => 128 + libc::SIGKILL,
            ExitReason::Killed => 128 + libc::SIGKILL,
            ExitReason::Interrupted => 128 + libc::SIGINT,
            ExitReason::ExecFailed { errno } if errno == libc::ENOENT => 127,
            ExitReason::ExecFailed { .. } => 126,
        }
    }
}

/// How soon a second interrupt must follow the first to kill the sandbox.
pub const INTERRUPT_WINDOW: Duration = Duration::from_secs(3);

/// Something the supervisor did on the caller's behalf that the person at
/// the terminal should hear about (the CLI prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// An interrupt was forwarded to the payload; another within `window`
    /// kills the sandbox.
    InterruptForwarded {
        /// [`INTERRUPT_WINDOW`].
        window: Duration,
    },
    /// A second interrupt came in time: the sandbox is being killed.
    InterruptKilled,
}

/// A limit that was reached during the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitHit {
    /// The memory limit: a cgroup OOM kill; or, with the RLIMIT_AS
    /// fallback (no memory cgroup), a process that exited with its peak
    /// address space within an eighth of the limit (allocations failed).
    Memory,
    /// cgroup pids limit: a fork failed.
    Pids,
    /// CPU quota throttled the sandbox.
    Cpu,
    /// The wall-clock timeout.
    Timeout,
    /// Captured output beyond the cap was dropped.
    Output,
    /// A size-capped tmpfs (/tmp, $HOME, /dev/shm, the ephemeral workspace) filled up.
    Disk,
    /// RLIMIT_FSIZE: a file grew past the limit (SIGXFSZ).
    Fsize,
    /// RLIMIT_NOFILE: a process exited with every fd it may open in use.
    Nofile,
}

/// Byte counts of one output stream.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StreamStats {
    /// Bytes forwarded to the caller.
    pub bytes: u64,
    /// Bytes dropped past the cap.
    pub dropped: u64,
}

/// cgroup facts of the run.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupReport {
    /// The version used, or None when no cgroup could be used.
    pub version: Option<CgroupVersion>,
    /// Controllers that enforced limits.
    pub controllers: Vec<String>,
    /// Why limits were degraded, if they were.
    pub note: Option<String>,
}

/// Everything known about a finished run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Why it ended.
    pub reason: ExitReason,
    /// The exit code airlock returns for it.
    pub exit_code: i32,
    /// Wall-clock time from spawn to the sandbox's end.
    #[serde(serialize_with = "secs")]
    pub wall: Duration,
    /// User CPU time of the sandbox's processes.
    #[serde(serialize_with = "secs")]
    pub user: Duration,
    /// System CPU time of the sandbox's processes.
    #[serde(serialize_with = "secs")]
    pub sys: Duration,
    /// Peak memory in bytes (cgroup peak, or max RSS without a cgroup).
    pub peak_memory: Option<u64>,
    /// Limits that were reached.
    pub limits_hit: Vec<LimitHit>,
    /// Size-capped mounts that filled up.
    pub full_mounts: Vec<String>,
    /// stdout counts.
    pub stdout: StreamStats,
    /// stderr counts.
    pub stderr: StreamStats,
    /// Landlock outcome (None when the payload never started).
    pub landlock: Option<LandlockReport>,
    /// cgroup facts.
    pub cgroup: CgroupReport,
    /// Host-side uid the payload ran as.
    pub host_uid: u32,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_env_timeout_and_docker() {
        assert_eq!(ExitReason::Exit { code: 3 }.exit_code(), 3);
        assert_eq!(ExitReason::Signal { signal: 15 }.exit_code(), 143);
        assert_eq!(ExitReason::Timeout.exit_code(), 124);
        assert_eq!(ExitReason::Memory.exit_code(), 137);
        assert_eq!(
            ExitReason::ExecFailed {
                errno: libc::ENOENT
            }
            .exit_code(),
            127
        );
        assert_eq!(
            ExitReason::ExecFailed {
                errno: libc::EACCES
            }
            .exit_code(),
            126
        );
    }
}

/// Something the sandbox did, reported while it runs (when the spec asks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JailEvent {
    /// A process called execve/execveat (recorded at the call, before the
    /// kernel runs it: a failed exec is recorded too).
    Exec {
        /// Its pid inside the sandbox.
        pid: i32,
        /// Its parent's pid inside the sandbox (0 when unknown).
        ppid: i32,
        /// The program as asked for, made absolute; for an exec from an fd,
        /// the fd's target (e.g. "/tmp/x (deleted)").
        path: String,
        /// The arguments (at most 64, each at most 4 KiB).
        argv: Vec<String>,
        /// Set when argv or a string was cut at those caps.
        truncated: bool,
        /// Whether the program existed when the call was made (a shell's
        /// PATH search tries candidates that do not: those are attempts).
        exists: bool,
    },
    /// A watched planted file was opened (inotify: the opener's pid is not
    /// known).
    FileOpened {
        /// The path inside the sandbox.
        path: String,
    },
    /// Opens of watched files beyond the per-file cap, counted, not reported.
    FileOpensDropped {
        /// The path inside the sandbox.
        path: String,
        /// How many.
        count: u64,
    },
}
