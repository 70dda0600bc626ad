//! The sandbox's init: pid 1 of the new pid namespace.
//!
//! The supervisor clones a child into fresh namespaces and that child
//! re-executes the airlock binary with `INIT_ARG`, so init starts as a clean
//! single-threaded process holding every capability of its own user
//! namespace (raised as ambient before the exec). It then:
//!
//! 1. reads its `InitConfig` from the control socket (fd 3);
//! 2. unshares the cgroup namespace (it was placed in its cgroup before "go");
//! 3. sets the hostname and brings up `lo`;
//! 4. builds the root filesystem and pivots into it (`mounts::build_root`);
//! 5. forks the payload, which applies the contain pipeline (`payload`) and execs;
//! 6. drops its own capabilities, becomes non-dumpable, and then reaps
//!    zombies and forwards signals until the payload exits;
//! 7. reports the payload's status and which size-capped mounts filled up,
//!    and exits, which makes the kernel kill everything left in the namespace.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use crate::proto::{InitConfig, Report};
use crate::spec::JailSpec;
use crate::sys::{self, Forked};

const CTL: RawFd = 3;

fn send(report: &Report) {
    let bytes = serde_json::to_vec(report).expect("report serializes");
    // SAFETY: `bytes` is a live buffer; send on the control socket copies it.
    unsafe {
        libc::send(CTL, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL);
    }
}

fn fail(message: String) -> ! {
    send(&Report::SetupError { message });
    sys::exit_now(125);
}

/// Signals init forwards to the payload.
const FORWARDED: &[i32] = &[
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

fn signal_set(extra: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data and sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in FORWARDED.iter().chain(extra) {
        // SAFETY: `set` is initialised; s is a valid signal number.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

/// Entry point of the re-executed binary. Never returns.
pub(crate) fn main() -> ! {
    let t0 = std::time::Instant::now();
    // Block the signals we handle synchronously before anything else.
    let set = signal_set(&[libc::SIGCHLD]);
    // SAFETY: `set` is an initialised sigset_t; the old mask is not needed.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };

    let mut buf = vec![0u8; 1 << 20];
    let n = match sys::read_raw(CTL, &mut buf) {
        Ok(0) | Err(_) => sys::exit_now(125),
        Ok(n) => n,
    };
    let mut cfg: InitConfig = match serde_json::from_slice(&buf[..n]) {
        Ok(c) => c,
        Err(e) => fail(format!("bad init config: {e}")),
    };
    drop(buf);
    let mark = |cfg: &mut InitConfig, name: &str| {
        cfg.phases
            .push((name.to_string(), t0.elapsed().as_micros() as u64))
    };
    mark(&mut cfg, "config read");

    let spec = &cfg.spec;
    if let Err(e) = sys::unshare(libc::CLONE_NEWCGROUP) {
        fail(e.to_string());
    }
    if let Err(e) = sys::sethostname(&spec.hostname) {
        fail(e.to_string());
    }
    if let Err(e) = sys::loopback_up() {
        fail(e.to_string());
    }
    if let Err(e) = crate::mounts::build_root(spec) {
        fail(format!("building the sandbox filesystem: {e}"));
    }
    mark(&mut cfg, "root built");
    let spec = &cfg.spec;

    // Resolve the command inside the new root, and prepare every string
    // the payload needs before forking.
    let exe = resolve(spec);
    // Limits must hold before the payload runs: wait until the supervisor
    // has placed us in the sandbox's cgroup.
    let mut placed = [0u8; 1];
    match sys::read_raw(CTL, &mut placed) {
        Ok(1) if placed[0] == crate::proto::PLACED => {}
        _ => fail("the supervisor went away before placing the sandbox in its cgroup".into()),
    }
    mark(&mut cfg, "placed");
    let spec = &cfg.spec;
    let payload = match unsafe_fork() {
        Forked::Child => crate::payload::run(&cfg, exe.as_deref(), t0),
        Forked::Parent(pid) => pid,
    };

    // Init keeps no privilege while the payload runs.
    let _ = sys::set_non_dumpable();
    let _ = crate::caps::drop_all();

    let status = reap_until(payload, &set);
    let full = crate::mounts::capped_mounts(spec)
        .into_iter()
        .filter(|p| is_full(p))
        .map(|p| p.display().to_string())
        .collect();
    send(&Report::Exit { status, full });
    sys::exit_now(0);
}

fn unsafe_fork() -> Forked<libc::pid_t> {
    // SAFETY: init is single-threaded (a fresh exec that started no threads).
    match unsafe { sys::fork() } {
        Ok(f) => f,
        Err(e) => fail(e.to_string()),
    }
}

fn is_full(p: &Path) -> bool {
    rustix::fs::statfs(p)
        .map(|s| s.f_blocks > 0 && s.f_bavail == 0)
        .unwrap_or(false)
}

/// Find argv[0] on the sandbox's PATH when it has no slash.
fn resolve(spec: &JailSpec) -> Option<PathBuf> {
    let cmd = &spec.argv[0];
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    let mut fallback = None;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(cmd);
        if let Ok(m) = std::fs::metadata(&cand) {
            if m.is_file() {
                use std::os::unix::fs::PermissionsExt;
                if m.permissions().mode() & 0o111 != 0 {
                    return Some(cand);
                }
                fallback.get_or_insert(cand);
            }
        }
    }
    fallback
}

/// Reap every child; forward signals to the payload. Returns the payload's
/// raw wait status.
fn reap_until(payload: libc::pid_t, set: &libc::sigset_t) -> i32 {
    loop {
        // SAFETY: siginfo_t is plain data; sigwaitinfo fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is initialised and blocked; `info` is writable.
        let sig = unsafe { libc::sigwaitinfo(set, &mut info) };
        if sig < 0 {
            continue; // EINTR
        }
        if sig == libc::SIGCHLD {
            loop {
                match sys::wait4(-1, libc::WNOHANG) {
                    Ok(Some((pid, status, _))) if pid == payload => return status,
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        } else {
            sys::kill(payload, sig);
        }
    }
}

/// Build the NULL-terminated pointer arrays for execve.
pub(crate) fn c_strings(items: impl IntoIterator<Item = String>) -> Vec<CString> {
    items
        .into_iter()
        .map(|s| CString::new(s).expect("validated: no NUL"))
        .collect()
}
