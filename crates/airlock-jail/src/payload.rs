//! The contain pipeline for the payload: one ordered list of steps, run in
//! the forked child of init, after which it execs the command.
//!
//! Order matters and each step says why it sits where it does.

use std::ffi::CString;
use std::path::Path;

use crate::init::{c_strings, Stdio};
use crate::proto::{ExecPlan, InitConfig, Report};
use crate::sys;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// The exec this process is (for its failure report).
static EXEC_ID: AtomicU64 = AtomicU64::new(0);

fn fail(message: String) -> ! {
    let bytes = serde_json::to_vec(&Report::SetupError {
        id: Some(EXEC_ID.load(Ordering::Relaxed)),
        message,
    })
    .expect("serializes");
    sys::write_all_raw(3, &bytes);
    sys::exit_now(125);
}

/// Contain the calling process and exec the plan's command. Never returns.
pub(crate) fn run(
    cfg: &InitConfig,
    plan: &ExecPlan,
    exe: Option<&Path>,
    watch_sock: OwnedFd,
    stdio: Stdio,
    t0: std::time::Instant,
) -> ! {
    EXEC_ID.store(plan.id, Ordering::Relaxed);
    let spec = &cfg.spec;
    let Stdio { passed, tty } = stdio;
    let mut phases = cfg.phases.clone();
    let mut mark = |name: &str| phases.push((name.to_string(), t0.elapsed().as_micros() as u64));
    mark("forked");

    // 1. Unblock the signals init handles synchronously: the mask survives exec.
    // SAFETY: an empty set with SIG_SETMASK only rewrites this thread's mask.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }

    // 1b. The exec's own stdin, stdout and stderr, when the supervisor
    //     passed them (a live sandbox's exec); else init's.
    if let [i, o, e] = passed.as_slice() {
        let stdio = rustix::stdio::dup2_stdin(i)
            .and_then(|()| rustix::stdio::dup2_stdout(o))
            .and_then(|()| rustix::stdio::dup2_stderr(e));
        if let Err(e) = stdio {
            fail(format!("dup2 of the exec's stdio: {e}"));
        }
    }
    drop(passed);

    // 2. A new session: no controlling terminal, so TIOCSTI has no target
    //    even before seccomp denies it (CVE-2017-5226).
    if let Err(e) = rustix::process::setsid() {
        fail(format!("setsid: {e}"));
    }

    // 2b. With `-t`: the new pty's slave (from the sandbox's own devpts
    //     instance, never a host terminal) becomes stdin, stdout and stderr
    //     and, as this fresh session has none, its controlling terminal,
    //     with this process group in the foreground. Right after setsid,
    //     which TIOCSCTTY needs; TIOCSTI and TIOCLINUX on it stay denied
    //     by seccomp (step 9).
    if let Some(slave) = tty {
        let stdio = rustix::stdio::dup2_stdin(&slave)
            .and_then(|()| rustix::stdio::dup2_stdout(&slave))
            .and_then(|()| rustix::stdio::dup2_stderr(&slave));
        if let Err(e) = stdio {
            fail(format!("dup2 of the terminal: {e}"));
        }
        drop(slave);
        if let Err(e) = rustix::process::ioctl_tiocsctty(rustix::stdio::stdin()) {
            fail(format!("TIOCSCTTY: {e}"));
        }
    }

    // 3. rlimits, while we still may set hard limits freely.
    if let Err(e) = crate::rlimit::apply(&spec.rlimits, &cfg.fallback) {
        fail(e);
    }

    // 4. Start in the plan's directory (the workspace by default).
    if let Err(e) = std::env::set_current_dir(&plan.cwd) {
        fail(format!("chdir {}: {e}", plan.cwd.display()));
    }

    // 5. no_new_privs: required by Landlock and seccomp without
    //    CAP_SYS_ADMIN, and it makes setuid binaries inert.
    if let Err(e) = sys::set_no_new_privs() {
        fail(e.to_string());
    }

    // 6. Landlock mirrors the mounts (needs paths, so after pivot_root).
    let landlock = match crate::landlock::restrict(spec, spec.landlock) {
        Ok(r) => r,
        Err(e) => fail(e.to_string()),
    };

    mark("landlock");

    // 7. Capabilities: bounding set while CAP_SETPCAP is still held, then the rest.
    if let Err(e) = crate::caps::drop_all() {
        fail(e);
    }

    // 8. Strings for execve.
    let Some(exe) = exe else {
        let bytes = serde_json::to_vec(&Report::ExecError {
            id: plan.id,
            errno: libc::ENOENT,
            path: plan.argv[0].clone(),
        })
        .expect("serializes");
        sys::write_all_raw(3, &bytes);
        sys::exit_now(127);
    };
    let path = CString::new(exe.as_os_str().as_encoded_bytes()).expect("validated: no NUL");
    let argv = c_strings(plan.argv.iter().cloned());
    let envp = c_strings(plan.env.iter().map(|(k, v)| format!("{k}={v}")));
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    mark("exec prepared");
    let ready = serde_json::to_vec(&Report::Started {
        id: plan.id,
        pid: rustix::process::getpid().as_raw_nonzero().get(),
        landlock,
        phases,
    })
    .expect("serializes");

    // 9. seccomp last: from here on the syscall surface is the sandbox's.
    if let Err(e) = cfg.seccomp.install() {
        fail(format!("installing seccomp filter: {e}"));
    }

    // 10. The exit watch (a user-notification filter on exit_group) goes on
    //     last; its listener is handed to init and closed here at once, so
    //     no exit of ours can wait on a listener only we hold.
    match crate::exitwatch::install(spec.exec_watch) {
        Ok(listener) => {
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
            let fds = [listener.as_fd()];
            anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
            let _ = rustix::net::sendmsg(
                &watch_sock,
                &[std::io::IoSlice::new(b"L")],
                &mut anc,
                rustix::net::SendFlags::NOSIGNAL,
            );
            drop(listener);
        }
        Err(e) => tracing::debug!(errno = e, "exit watch unavailable"),
    }
    drop(watch_sock);

    // 11. Tell the supervisor we are about to exec (fd 3 is close-on-exec).
    // SAFETY: integer-only fcntl on our own control fd.
    unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) };
    sys::write_all_raw(3, &ready);
    let errno = sys::execve_raw(&path, &argv_p, &envp_p);
    let msg = serde_json::to_vec(&Report::ExecError {
        id: plan.id,
        errno,
        path: exe.display().to_string(),
    })
    .expect("serializes");
    sys::write_all_raw(3, &msg);
    sys::exit_now(if errno == libc::ENOENT { 127 } else { 126 });
}
