//! The one thread that clones every sandbox's init.
//!
//! The cloned child arms `PR_SET_PDEATHSIG`, which fires when the *thread*
//! that created it exits, not the process. A server creates sandboxes on
//! short-lived worker threads; a sandbox must die with the supervisor
//! process, never with the thread that happened to create it. So every
//! `clone3` runs on this thread, which lives as long as the process.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use crate::proto::INIT_ARG;
use crate::spawn::{child_after_clone, PreExec};
use crate::sys::{self, CloneArgs, Cloned, Forked, SysError};

/// What the cloned child needs, owned (raw fds stay open in the caller,
/// which waits for the clone).
#[derive(Debug)]
pub(crate) struct PreExecOwned {
    pub(crate) ctl: RawFd,
    pub(crate) stdin: RawFd,
    pub(crate) stdout: RawFd,
    pub(crate) stderr: RawFd,
    pub(crate) privileged: bool,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) last_cap: u32,
    pub(crate) cgroup_tasks: Vec<RawFd>,
    pub(crate) ws_tree: RawFd,
    /// Namespace flags for clone3.
    pub(crate) flags: u64,
    /// A cgroup directory fd for `CLONE_INTO_CGROUP`.
    pub(crate) cgroup: Option<RawFd>,
}

type Job = (PreExecOwned, mpsc::Sender<Result<Cloned, SysError>>);

fn spawner() -> Result<&'static Mutex<mpsc::Sender<Job>>, SysError> {
    static SPAWNER: OnceLock<Result<Mutex<mpsc::Sender<Job>>, String>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("airlock-spawner".into())
                .spawn(move || {
                    sys::block_all_signals();
                    for (pre, reply) in rx {
                        let _ = reply.send(clone_here(&pre));
                    }
                })
                .map(|_| Mutex::new(tx))
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| SysError {
            call: "spawning the airlock-spawner thread",
            source: std::io::Error::other(e.clone()),
        })
}

/// Clones a sandbox's init on the spawner thread and returns it.
pub(crate) fn clone_init(pre: PreExecOwned) -> Result<Cloned, SysError> {
    let (tx, rx) = mpsc::channel();
    let gone = || SysError {
        call: "clone3 (the spawner thread is gone)",
        source: std::io::Error::from_raw_os_error(libc::EAGAIN),
    };
    spawner()?
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((pre, tx))
        .map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

fn clone_here(p: &PreExecOwned) -> Result<Cloned, SysError> {
    // Strings for the child, built before the clone.
    let exe = CString::new("/proc/self/exe").expect("static");
    let argv_c = [
        CString::new("airlock-init").expect("static"),
        CString::new(INIT_ARG).expect("static"),
    ];
    let argv: Vec<*const libc::c_char> = argv_c
        .iter()
        .map(|c| c.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    // init starts with an empty environment: the caller's never enters.
    let envp: Vec<*const libc::c_char> = vec![std::ptr::null()];
    let pre = PreExec {
        ctl: p.ctl,
        stdin: p.stdin,
        stdout: p.stdout,
        stderr: p.stderr,
        privileged: p.privileged,
        uid: p.uid,
        gid: p.gid,
        last_cap: p.last_cap,
        cgroup_tasks: &p.cgroup_tasks,
        ws_tree: p.ws_tree,
        exe: &exe,
        argv: &argv,
        envp: &envp,
    };
    let args = CloneArgs {
        flags: p.flags,
        cgroup: p.cgroup,
    };
    // SAFETY: the child runs only `child_after_clone`, which is
    // async-signal-safe (raw syscalls on data prepared above) and ends in
    // execve or _exit.
    match unsafe { sys::clone3(&args) }? {
        Forked::Child => child_after_clone(&pre),
        Forked::Parent(c) => Ok(c),
    }
}
