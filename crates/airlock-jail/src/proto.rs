//! Messages on the control socket between the supervisor and the sandbox.
//!
//! fd 3 of the sandbox's init is one end of a `SOCK_SEQPACKET` socketpair,
//! so every message arrives whole. The supervisor first sends a one-byte
//! "go" (after writing the id maps), then the `InitConfig` as JSON, then a
//! one-byte "placed" once the sandbox is in its cgroup. The sandbox answers with `Report`s as JSON. Before
//! the re-exec, the cloned child can only report failures as a fixed
//! six-byte record (`PRE_EXEC_TAG`, step, errno LE), since it must not
//! allocate.

use serde::{Deserialize, Serialize};

use crate::landlock::LandlockReport;
use crate::seccomp::Compiled;
use crate::spec::JailSpec;

/// First byte of a pre-exec failure record.
pub(crate) const PRE_EXEC_TAG: u8 = 0xFF;
/// The "go" byte: id maps are written.
pub(crate) const GO: u8 = b'G';
/// The "placed" byte: the sandbox is in its cgroup; init may start the
/// payload. Sent after the config so that the (v1) cgroup migration, which
/// can wait for an RCU grace period, overlaps init's set-up.
pub(crate) const PLACED: u8 = b'P';
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
    pub(crate) const CGROUP: u8 = 8;

    pub(crate) fn name(s: u8) -> &'static str {
        match s {
            PDEATHSIG => "prctl(PR_SET_PDEATHSIG)",
            SETGROUPS => "setgroups",
            SETID => "setresuid/setresgid",
            CAPS => "capset/ambient capabilities",
            FDS => "dup2",
            EXEC => "execve of the airlock init",
            SIGMASK => "sigprocmask",
            CGROUP => "moving into the sandbox cgroup",
            _ => "unknown step",
        }
    }
}

/// What init needs: the spec and the compiled seccomp filters.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitConfig {
    pub(crate) spec: JailSpec,
    pub(crate) seccomp: Compiled,
    /// rlimits replacing cgroup limits the host cannot enforce.
    pub(crate) fallback: crate::rlimit::Fallback,
    /// How to attach a host workspace (`None` for an ephemeral one).
    #[serde(default)]
    pub(crate) workspace: Option<crate::workspace::Attach>,
    /// Set-up phases measured by init so far (name, microseconds since init started).
    #[serde(default)]
    pub(crate) phases: Vec<(String, u64)>,
    /// Give the payload a new pseudo-terminal of this size (`-t`): init
    /// mounts a private devpts instance, opens a pty pair in it, sends the
    /// master up ([`Report::Pty`]) and makes the slave the payload's stdio
    /// and controlling terminal.
    #[serde(default)]
    pub(crate) tty: Option<TtySize>,
    /// A live sandbox: after set-up init sends the directory fds of the
    /// writable places ([`Report::Places`]) and then serves [`Request`]s.
    #[serde(default)]
    pub(crate) live: bool,
}

/// What the supervisor asks of init once the sandbox is set up (JSON on
/// the control socket; an `Exec` of passed stdio carries three fds, an
/// `ExecLarge` a fourth).
/// Only the supervisor holds the other end of the socket, and init keeps
/// it out of every payload's fd table (close-on-exec, closed before exec),
/// so nothing inside the sandbox can send one.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Request {
    /// Start a process in the sandbox.
    Exec(ExecPlan),
    /// Start a process whose plan is too big for one message: the plan's
    /// JSON (`len` bytes) is in a sealed memfd (`F_SEAL_SHRINK`,
    /// `F_SEAL_GROW`, `F_SEAL_WRITE`, `F_SEAL_SEAL`) attached after the
    /// stdio fds. Init checks the seals and the size, reads it, and closes
    /// it before it forks anything.
    ExecLarge { id: u64, len: u64 },
    /// Send a signal to an exec's process.
    Signal { id: u64, signal: i32 },
    /// Kill an exec's whole tree (its process and every descendant,
    /// daemonized ones included).
    KillTree { id: u64 },
    /// Kill every process and put the writable places back to their state
    /// at create, or at the named checkpoint (answered by
    /// [`Report::ResetDone`]).
    Reset {
        #[serde(default)]
        checkpoint: Option<String>,
    },
    /// Copy the writable places into init's checkpoint store under `name`
    /// (answered by [`Report::CheckpointDone`]).
    Checkpoint { name: String },
    /// Kill every process, hand out the copy-out files, and exit.
    Close,
}

/// One process to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecPlan {
    /// The supervisor's id for it (in every report about it).
    pub(crate) id: u64,
    /// The command; `argv[0]` is looked up on the plan's PATH.
    pub(crate) argv: Vec<String>,
    /// The whole environment.
    pub(crate) env: Vec<(String, String)>,
    /// Where it starts (absolute, inside the sandbox).
    pub(crate) cwd: std::path::PathBuf,
    /// `true`: stdin, stdout and stderr are attached to the request, in
    /// that order; `false`: init's own (those of a one-shot run).
    pub(crate) passed_stdio: bool,
    /// Give it a new pseudo-terminal (init's config has its size).
    pub(crate) tty: bool,
}

/// A terminal's window size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TtySize {
    pub(crate) rows: u16,
    pub(crate) cols: u16,
}

/// What the sandbox reports to the supervisor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Report {
    /// An exec's process is about to exec; its pid and Landlock's outcome.
    Started {
        id: u64,
        pid: i32,
        landlock: LandlockReport,
        /// Set-up phases inside the sandbox, microseconds since init started.
        phases: Vec<(String, u64)>,
    },
    /// Set-up failed: the sandbox's (`id` none) or an exec's.
    SetupError {
        #[serde(default)]
        id: Option<u64>,
        message: String,
    },
    /// An exec's command could not be executed.
    ExecError { id: u64, errno: i32, path: String },
    /// Sent with the listening sockets attached (SCM_RIGHTS), in spec order.
    Listeners { count: usize },
    /// The canary watch: an inotify fd attached (SCM_RIGHTS), and what
    /// each watch descriptor is.
    Watches { paths: Vec<(i32, String)> },
    /// The master of the payload's pseudo-terminal, attached (SCM_RIGHTS).
    Pty,
    /// Something the sandbox did while running.
    Event { event: crate::report::JailEvent },
    /// A copy-out file, sent with its open fd attached (SCM_RIGHTS).
    CopyOut { path: String, size: u64 },
    /// A copy-out path that was not handed out, and why.
    CopyOutRefused { path: String, reason: String },
    /// The directories of the writable places, in the order of `paths`,
    /// attached (SCM_RIGHTS, `O_PATH`): files are read and written from the
    /// supervisor beneath them.
    Places { paths: Vec<String> },
    /// The writable places are back to their state at create; every
    /// process was killed. `error` says what could not be restored.
    ResetDone { error: Option<String> },
    /// A checkpoint was taken (or not: `error`).
    CheckpointDone { name: String, error: Option<String> },
    /// Init handed out the copy-out files and is exiting.
    Closed,
    /// An exec's process ended; `status` is the raw wait status. With
    /// `lost`, the monitor that waits for it was killed from inside the
    /// sandbox, and the status is unknown.
    Exited {
        id: u64,
        status: i32,
        #[serde(default)]
        lost: bool,
        full: Vec<String>,
        /// A process exited holding as many fds as RLIMIT_NOFILE allows.
        nofile: bool,
        /// With the RLIMIT_AS memory fallback: a process exited with its
        /// peak address space near the limit.
        memory: bool,
    },
}

/// Most bytes of an exec request sent as one message on the control
/// socket: one `SOCK_SEQPACKET` message must fit the socket's default send
/// buffer (`net.core.wmem_default`, 208 KiB), which an unprivileged
/// supervisor cannot raise past `wmem_max`. A larger plan goes in a sealed
/// memfd ([`Request::ExecLarge`]).
pub(crate) const INLINE_EXEC_REQUEST: usize = 160 * 1024;

/// The seals a memfd carrying an exec plan must have: nobody (the
/// supervisor included) can change its contents or size once init checks
/// it, and no seal can be taken away.
fn plan_seals() -> rustix::fs::SealFlags {
    use rustix::fs::SealFlags;
    SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL
}

/// `bytes` in a new sealed memfd (close-on-exec), for
/// [`Request::ExecLarge`].
pub(crate) fn sealed_memfd(bytes: &[u8]) -> Result<std::os::fd::OwnedFd, crate::SysError> {
    use rustix::fs::{memfd_create, MemfdFlags};
    let sys = |call, e: rustix::io::Errno| crate::SysError::from_errno(call, e.raw_os_error());
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // Never executable (MFD_NOEXEC_SEAL, which `vm.memfd_noexec = 2`
    // requires); kernels before 6.3 do not know the flag.
    let fd = match memfd_create("airlock-exec-plan", flags | MemfdFlags::NOEXEC_SEAL) {
        Err(rustix::io::Errno::INVAL) => memfd_create("airlock-exec-plan", flags),
        r => r,
    }
    .map_err(|e| sys("memfd_create", e))?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, bytes).map_err(|e| crate::SysError {
        call: "write (an exec plan's memfd)",
        source: e,
    })?;
    rustix::fs::fcntl_add_seals(&file, plan_seals()).map_err(|e| sys("fcntl(F_ADD_SEALS)", e))?;
    Ok(file.into())
}

/// The contents of a memfd from [`sealed_memfd`], `len` bytes and at most
/// `max`, after checking its seals and size (init's side of
/// [`Request::ExecLarge`]).
pub(crate) fn read_sealed(
    fd: &std::os::fd::OwnedFd,
    len: u64,
    max: usize,
) -> Result<Vec<u8>, String> {
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(|e| format!("fcntl(F_GET_SEALS): {e}"))?;
    if !seals.contains(plan_seals()) {
        return Err(format!("the exec plan's memfd is not sealed ({seals:?})"));
    }
    let size = rustix::fs::fstat(fd)
        .map_err(|e| format!("fstat of the exec plan's memfd: {e}"))?
        .st_size;
    if u64::try_from(size).ok() != Some(len) {
        return Err(format!(
            "the exec plan's memfd holds {size} bytes, {len} announced"
        ));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= max)
        .ok_or_else(|| format!("the exec plan is {len} bytes, more than {max}"))?;
    let mut buf = vec![0u8; len];
    let mut at = 0;
    while at < len {
        match rustix::io::pread(fd, &mut buf[at..], at as u64) {
            Ok(0) => {
                return Err(format!(
                    "the exec plan's memfd ended at {at} of {len} bytes"
                ))
            }
            Ok(n) => at += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("pread of the exec plan's memfd: {e}")),
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_memfd_reads_back_and_an_unsealed_or_resized_one_is_refused() {
        let fd = sealed_memfd(b"{\"plan\":1}").unwrap();
        assert_eq!(read_sealed(&fd, 10, 1 << 20).unwrap(), b"{\"plan\":1}");
        // The size must be the announced one, and under the cap.
        assert!(read_sealed(&fd, 9, 1 << 20)
            .unwrap_err()
            .contains("announced"));
        assert!(read_sealed(&fd, 10, 9).unwrap_err().contains("more than 9"));
        // Nobody can write to it any more, the supervisor included.
        assert!(rustix::io::pwrite(&fd, b"x", 0).is_err());
        // An unsealed memfd is refused.
        let open = rustix::fs::memfd_create(
            "unsealed",
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
        )
        .unwrap();
        rustix::io::write(&open, b"{}").unwrap();
        assert!(read_sealed(&open, 2, 1 << 20)
            .unwrap_err()
            .contains("not sealed"));
    }
}
