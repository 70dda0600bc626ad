//! airlock-jail: the isolation engine.
//!
//! It owns everything that touches the kernel to contain a process: user,
//! pid, mount, network, ipc, uts and cgroup namespaces; the root filesystem;
//! seccomp; Landlock; capabilities; cgroups (v1 and v2); rlimits; and the
//! sandbox's tiny init. It is the only crate of airlock with `unsafe`.
//!
//! It receives a validated [`JailSpec`] and never reads profiles or makes
//! policy decisions. [`run`] builds the sandbox, streams output to an
//! [`OutputSink`], and returns a [`RunReport`]. A binary that uses this
//! crate must call [`init_main_if_requested`] first thing in `main`: the
//! sandbox's init is a re-execution of that binary.
//!
//! The contain pipeline, in order (see `spawn.rs`, `init.rs`, `payload.rs`):
//! 1. supervisor: validate the spec, compile seccomp, lease a host uid
//!    (root), open the host workspace without following symlinks (as root:
//!    a detached, idmapped mount of it), create the cgroup;
//! 2. supervisor: `clone3` into new user, pid, mount, net, ipc and uts
//!    namespaces (and the cgroup, on v2); write uid/gid maps; say "go";
//! 3. child: set ids, keep capabilities as ambient, arm the parent-death
//!    signal, re-exec the binary as init with an empty environment;
//! 4. init: unshare the cgroup namespace, set the hostname, bring up `lo`,
//!    unshare the time namespace (clocks from zero) for the payload, build
//!    the root filesystem (attaching the host workspace the supervisor
//!    opened and, as root, idmapped) and pivot into it;
//! 5. payload: setsid, rlimits, chdir, no_new_privs, Landlock, drop all
//!    capabilities, seccomp, exec;
//! 6. init: reap and forward signals until the payload exits, report;
//! 7. supervisor: enforce timeout and output cap, collect, kill and remove
//!    the cgroup.

mod caps;
mod cgroup;
mod doctor;
mod error;
mod exitwatch;
mod files;
mod hostids;
mod init;
mod landlock;
mod live;
mod mounts;
mod payload;
mod proto;
mod report;
mod rlimit;
mod seccomp;
mod spawn;
mod spawner;
mod spec;
mod sys;
mod wipe;
mod workspace;

pub use cgroup::{detect as detect_cgroups, CgroupSupport, CgroupVersion};
pub use doctor::{doctor, Check, CheckStatus};
pub use error::{CgroupError, JailError, LandlockError, SpawnError, SpecError, SysError};
pub use files::{FileError, FileInfo, FileKind, Places, MAX_LIST};
pub use hostids::{ROOT_MODE_UID_BASE, ROOT_MODE_UID_COUNT};
pub use landlock::{kernel_abi as landlock_abi, LandlockEnforcement, LandlockReport};
pub use live::{
    checkpoint_name_ok, ExecReport, ExecSpec, ExecStdin, LiveError, NoObserver, OutputChunk,
    Process, Sandbox, SandboxObserver, Stream, MAX_ARG_BYTES, MAX_EXEC_REQUEST,
};
pub use proto::INIT_ARG;
pub use report::{
    CgroupReport, ExitReason, JailEvent, LimitHit, Notice, RunReport, StreamStats, INTERRUPT_WINDOW,
};
pub use spawn::{check, run, settle, Collect, OutputSink, RunOptions, StdinMode};
pub use spec::{
    CgroupSpec, JailSpec, LandlockSpec, ListenSpec, NetSpec, PlantFile, RlimitSpec, RoBind,
    WorkspaceSource, MAX_COPY_OUT, MAX_LISTENERS, MAX_PLANT, MAX_PLANT_BYTES,
};

/// If this process was started as a sandbox init (`argv[1] == INIT_ARG`),
/// run the init and never return. Call it first thing in `main`, before
/// any thread is started.
pub fn init_main_if_requested() {
    let mut args = std::env::args_os();
    let _ = args.next();
    if args.next().as_deref() == Some(std::ffi::OsStr::new(INIT_ARG)) {
        init::main();
    }
}
