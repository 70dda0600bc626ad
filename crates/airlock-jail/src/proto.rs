//! Messages on the control socket between the supervisor and the sandbox.
//!
//! fd 3 of the sandbox's init is one end of a `SOCK_SEQPACKET` socketpair,
//! so every message arrives whole. The supervisor first sends a one-byte
//! "go" (after writing the id maps and placing the cgroup), then the
//! `InitConfig` as JSON. The sandbox answers with `Report`s as JSON. Before
//! the re-exec, the cloned child can only report failures as a fixed
//! six-byte record (`PRE_EXEC_TAG`, step, errno LE), since it must not
//! allocate.

use serde::{Deserialize, Serialize};

use crate::landlock::LandlockReport;
use crate::seccomp::Compiled;
use crate::spec::JailSpec;

/// First byte of a pre-exec failure record.
pub(crate) const PRE_EXEC_TAG: u8 = 0xFF;
/// The "go" byte.
pub(crate) const GO: u8 = b'G';
/// argv[1] that makes the airlock binary act as a sandbox init.
pub const INIT_ARG: &str = "__airlock-jail-init";

/// Pre-exec steps, for the failure record.
pub(crate) mod step {
    pub(crate) const PDEATHSIG: u8 = 1;
    pub(crate) const SETGROUPS: u8 = 2;
    pub(crate) const SETID: u8 = 3;
    pub(crate) const CAPS: u8 = 4;
    pub(crate) const FDS: u8 = 5;
    pub(crate) const EXEC: u8 = 6;
    pub(crate) const SIGMASK: u8 = 7;

    pub(crate) fn name(s: u8) -> &'static str {
        match s {
            PDEATHSIG => "prctl(PR_SET_PDEATHSIG)",
            SETGROUPS => "setgroups",
            SETID => "setresuid/setresgid",
            CAPS => "capset/ambient capabilities",
            FDS => "dup2",
            EXEC => "execve of the airlock init",
            SIGMASK => "sigprocmask",
            _ => "unknown step",
        }
    }
}

/// What init needs: the spec and the compiled seccomp filters.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitConfig {
    pub(crate) spec: JailSpec,
    pub(crate) seccomp: Compiled,
}

/// What the sandbox reports to the supervisor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Report {
    /// The payload is about to exec; Landlock's outcome.
    Ready { landlock: LandlockReport },
    /// Set-up failed before the payload could start.
    SetupError { message: String },
    /// The payload could not be executed.
    ExecError { errno: i32, path: String },
    /// The payload ended; `status` is the raw wait status.
    Exit { status: i32, full: Vec<String> },
}
