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
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use rustix::event::{poll, PollFd, PollFlags};
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

/// Send `report` with one fd (SCM_RIGHTS) on the control socket.
fn send_with_fd(report: &Report, fd: std::os::fd::BorrowedFd<'_>) -> rustix::io::Result<usize> {
    let bytes = serde_json::to_vec(report).expect("report serializes");
    let fds = [fd];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
    anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
    // SAFETY: CTL (fd 3) is the control socket, open for the life of init;
    // the borrow ends with this function.
    let ctl = unsafe { std::os::fd::BorrowedFd::borrow_raw(CTL) };
    rustix::net::sendmsg(
        ctl,
        &[std::io::IoSlice::new(&bytes)],
        &mut anc,
        rustix::net::SendFlags::NOSIGNAL,
    )
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
    if !spec.net.listeners.is_empty() {
        hand_over_listeners(spec);
    }
    // A time namespace for everything forked from here on (the payload),
    // with clocks that start near zero: uptime and the host's boot time
    // stay hidden. Init itself stays in the host's.
    if let Err(e) = sys::unshare_time_from_zero() {
        fail(e.to_string());
    }
    if let Err(e) = crate::mounts::build_root(spec, cfg.workspace.as_ref(), cfg.tty.is_some()) {
        fail(format!("building the sandbox filesystem: {e}"));
    }
    // The payload's terminal, made in the sandbox's own devpts instance.
    let tty_slave = cfg.tty.map(|size| match open_pty(size) {
        Ok(slave) => slave,
        Err(e) => fail(e),
    });
    if let Err(e) = plant(spec) {
        fail(e);
    }
    let touch = match TouchWatch::new(spec) {
        Ok(t) => t,
        Err(e) => fail(e),
    };
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
    // The payload hands init its exit-watch listener over this pair.
    let (watch_init, watch_payload) = match rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    ) {
        Ok(p) => p,
        Err(e) => fail(format!("socketpair: {e}")),
    };
    let at_fork = t0.elapsed();
    let payload = match unsafe_fork() {
        Forked::Child => {
            drop(watch_init);
            // The child is in the sandbox's time namespace, whose monotonic
            // clock differs from init's: re-base init's start on it.
            let now = std::time::Instant::now();
            let t0 = now.checked_sub(at_fork).unwrap_or(now);
            crate::payload::run(&cfg, exe.as_deref(), watch_payload, tty_slave, t0)
        }
        Forked::Parent(pid) => pid,
    };
    drop(watch_payload);
    // Only the payload holds the terminal: when it and its children are
    // gone, the supervisor's master reads EIO.
    drop(tty_slave);
    let listener = receive_listener(&watch_init);
    drop(watch_init);

    // Init keeps no privilege while the payload runs.
    let _ = sys::set_non_dumpable();
    let _ = crate::caps::drop_all();

    let (status, nofile, memory) = reap_until(
        payload,
        &set,
        listener.as_ref(),
        spec.rlimits.nofile,
        cfg.fallback.memory,
    );
    if !spec.copy_out.is_empty() {
        // Nothing of the sandbox may run while its files are handed out.
        kill_the_rest();
    }
    // Every open by the sandbox is queued by now; init's own opens for the
    // copy-out must not count as touches: remove the watches first.
    touch.unwatch();
    if !spec.copy_out.is_empty() {
        copy_out(spec);
    }
    let full = crate::mounts::capped_mounts(spec)
        .into_iter()
        .filter(|p| is_full(p))
        .map(|p| p.display().to_string())
        .collect();
    send(&Report::Exit {
        status,
        full,
        nofile,
        memory,
    });
    sys::exit_now(0);
}

/// Opens a pty pair in the sandbox's devpts instance (`/dev/ptmx` is its
/// `pts/ptmx`), sets its window size, and hands the master to the
/// supervisor, keeping none; returns the slave for the payload. The slave
/// is opened from the master (`TIOCGPTPEER`), never looked up by name.
fn open_pty(size: crate::proto::TtySize) -> Result<OwnedFd, String> {
    use rustix::pty::{ioctl_tiocgptpeer, openpt, unlockpt, OpenptFlags};
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = openpt(flags).map_err(|e| format!("opening /dev/ptmx: {e}"))?;
    unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    let ws = rustix::termios::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, ws).map_err(|e| format!("TIOCSWINSZ: {e}"))?;
    let slave = ioctl_tiocgptpeer(&master, flags).map_err(|e| format!("TIOCGPTPEER: {e}"))?;
    send_with_fd(&Report::Pty, master.as_fd())
        .map_err(|e| format!("handing the terminal to the supervisor: {e}"))?;
    Ok(slave)
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

/// Creates the gateway's sockets in this (the sandbox's) network namespace
/// and sends them to the supervisor. Init keeps no copy: once the gateway
/// closes them, nothing listens and connections are refused.
fn hand_over_listeners(spec: &JailSpec) {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let mut socks: Vec<OwnedFd> = Vec::with_capacity(spec.net.listeners.len());
    for l in &spec.net.listeners {
        let family = if l.addr.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let kind = if l.udp {
            SocketType::DGRAM
        } else {
            SocketType::STREAM
        };
        let made =
            rustix::net::socket_with(family, kind, SocketFlags::CLOEXEC, None).and_then(|s| {
                if !l.udp {
                    rustix::net::sockopt::set_socket_reuseaddr(&s, true)?;
                }
                rustix::net::bind(&s, &l.addr)?;
                if !l.udp {
                    rustix::net::listen(&s, 1024)?;
                }
                Ok(s)
            });
        match made {
            Ok(s) => socks.push(s),
            Err(e) => fail(format!(
                "network listener {} ({}): {e}",
                l.addr,
                if l.udp { "udp" } else { "tcp" }
            )),
        }
    }
    let report =
        serde_json::to_vec(&Report::Listeners { count: socks.len() }).expect("report serializes");
    let fds: Vec<_> = socks.iter().map(|s| s.as_fd()).collect();
    let mut space = vec![
        std::mem::MaybeUninit::uninit();
        rustix::cmsg_space!(ScmRights(crate::spec::MAX_LISTENERS))
    ];
    let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)) {
        fail("too many network listeners for one control message".into());
    }
    // SAFETY: CTL (fd 3) is the control socket, open for the life of init;
    // the borrow ends before this function returns.
    let ctl = unsafe { std::os::fd::BorrowedFd::borrow_raw(CTL) };
    if let Err(e) = rustix::net::sendmsg(
        ctl,
        &[std::io::IoSlice::new(&report)],
        &mut anc,
        rustix::net::SendFlags::NOSIGNAL,
    ) {
        fail(format!("handing network listeners to the supervisor: {e}"));
    }
}

fn receive_listener(sock: &OwnedFd) -> Option<OwnedFd> {
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        sock,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut anc,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .ok()?;
    anc.drain().find_map(|m| match m {
        rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    })
}

/// Reap every child, forward signals to the payload, and answer exit-watch
/// notifications. Returns the payload's raw wait status, whether any
/// process exited holding RLIMIT_NOFILE fds, and whether any exited with
/// its peak address space near the RLIMIT_AS memory fallback `as_limit`.
fn reap_until(
    payload: libc::pid_t,
    set: &libc::sigset_t,
    listener: Option<&OwnedFd>,
    nofile: u64,
    as_limit: Option<u64>,
) -> (i32, bool, bool) {
    // SAFETY: `set` is initialised and blocked in this thread; -1 asks for a new fd.
    let sfd = unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if sfd < 0 {
        fail(format!("signalfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: signalfd returned a fresh fd that we now own.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    let mut nofile_hit = false;
    let mut memory_hit = false;
    loop {
        let mut fds = vec![PollFd::new(&sfd, PollFlags::IN)];
        if let Some(l) = listener {
            fds.push(PollFd::new(l, PollFlags::IN));
        }
        if poll(&mut fds, None).is_err() {
            continue; // EINTR
        }
        let listener_ready = listener.is_some() && !fds[fds.len() - 1].revents().is_empty();
        drop(fds);
        if listener_ready {
            if let Some(l) = listener {
                match crate::exitwatch::serve_one(l, as_limit.is_some()) {
                    crate::exitwatch::Notice::Exit { fds, vm_peak } => {
                        nofile_hit |= fds.is_some_and(|n| n as u64 >= nofile);
                        if let (Some(peak), Some(limit)) = (vm_peak, as_limit) {
                            memory_hit |= crate::exitwatch::near_limit(peak, limit);
                        }
                    }
                    crate::exitwatch::Notice::Exec(event) => send(&Report::Event { event }),
                    _ => {}
                }
            }
        }
        let mut info = [0u8; 128]; // struct signalfd_siginfo
        while let Ok(128) = rustix::io::read(&sfd, &mut info) {
            let sig = i32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
            if sig != libc::SIGCHLD {
                sys::kill(payload, sig);
                continue;
            }
            loop {
                match sys::wait4(-1, libc::WNOHANG) {
                    Ok(Some((pid, status, _))) if pid == payload => {
                        return (status, nofile_hit, memory_hit)
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
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

/// Writes the spec's planted files (validated: under the home directory or
/// an ephemeral workspace). Missing parents are created 0700. Init runs as
/// the payload's uid, so the files are the payload's own.
fn plant(spec: &JailSpec) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    for f in &spec.plant {
        if let Some(parent) = f.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| format!("planting {}: {e}", parent.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(f.mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&f.path)
            .map_err(|e| format!("planting {}: {e}", f.path.display()))?;
        file.write_all(&f.contents)
            .map_err(|e| format!("planting {}: {e}", f.path.display()))?;
    }
    Ok(())
}

/// inotify watches on the planted files marked `watch` (canaries). The
/// inotify fd goes to the supervisor, which reads the opens while the
/// sandbox runs ([`crate::JailEvent::FileOpened`]); init keeps its copy
/// to remove the watches when the payload exits, before its own copy-out
/// opens (the supervisor closes its copy off the run's path: see
/// `spawn::close_later`). inotify does not say who opened a file; it needs
/// no privilege and sees opens from every process of the sandbox.
struct TouchWatch {
    fd: Option<OwnedFd>,
    wds: Vec<i32>,
}

impl TouchWatch {
    fn new(spec: &JailSpec) -> Result<TouchWatch, String> {
        use rustix::fs::inotify;
        let watched: Vec<_> = spec.plant.iter().filter(|f| f.watch).collect();
        if watched.is_empty() {
            return Ok(TouchWatch {
                fd: None,
                wds: Vec::new(),
            });
        }
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(|e| format!("inotify_init1: {e}"))?;
        let mut paths = Vec::new();
        for f in watched {
            // Closes too: inotify merges identical consecutive unread
            // events, and an OPEN between two CLOSEs is never merged, so
            // every open is counted even when the reader lags.
            let wd = inotify::add_watch(
                &fd,
                &f.path,
                inotify::WatchFlags::OPEN | inotify::WatchFlags::CLOSE,
            )
            .map_err(|e| format!("inotify_add_watch {}: {e}", f.path.display()))?;
            paths.push((wd, f.path.display().to_string()));
        }
        let wds = paths.iter().map(|p| p.0).collect();
        send_with_fd(&Report::Watches { paths }, fd.as_fd())
            .map_err(|e| format!("handing the canary watch to the supervisor: {e}"))?;
        Ok(TouchWatch { fd: Some(fd), wds })
    }

    /// Removes the watches (the supervisor's copy sees IN_IGNORED) and
    /// drops init's copy of the fd.
    fn unwatch(mut self) {
        if let Some(fd) = self.fd.take() {
            for wd in &self.wds {
                let _ = rustix::fs::inotify::remove_watch(&fd, *wd);
            }
        }
    }
}

/// Kills every other process of the sandbox (init is pid 1 of its pid
/// namespace, so kill(-1) reaches exactly the sandbox) and reaps them.
fn kill_the_rest() {
    sys::kill(-1, libc::SIGKILL);
    while let Ok(Some(_)) = sys::wait4(-1, 0) {}
}

/// Hands each copy-out file to the supervisor as an open fd. Paths are
/// resolved beneath the workspace with openat2: no symlink (at any
/// component), no magic link, no other mount, no `..`; only a regular file
/// within the size cap is sent. The payload is dead, so nothing can swap a
/// file meanwhile.
fn copy_out(spec: &JailSpec) {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let refuse = |path: &Path, reason: String| {
        send(&Report::CopyOutRefused {
            path: path.display().to_string(),
            reason,
        })
    };
    let ws = match rustix::fs::open(
        &spec.workspace_path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => {
            for p in &spec.copy_out {
                refuse(p, format!("opening the workspace: {e}"));
            }
            return;
        }
    };
    for rel in &spec.copy_out {
        let opened = rustix::fs::openat2(
            &ws,
            rel,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::BENEATH
                | ResolveFlags::NO_SYMLINKS
                | ResolveFlags::NO_MAGICLINKS
                | ResolveFlags::NO_XDEV,
        );
        let fd = match opened {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::XDEV) => {
                refuse(rel, "a symlink or another mount is on the path".into());
                continue;
            }
            Err(e) => {
                refuse(rel, e.to_string());
                continue;
            }
        };
        let st = match rustix::fs::fstat(&fd) {
            Ok(st) => st,
            Err(e) => {
                refuse(rel, format!("fstat: {e}"));
                continue;
            }
        };
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            refuse(rel, "not a regular file".into());
            continue;
        }
        let size = st.st_size as u64;
        if size > spec.copy_out_max {
            refuse(
                rel,
                format!("{size} bytes; the copy-out cap is {}", spec.copy_out_max),
            );
            continue;
        }
        let report = serde_json::to_vec(&Report::CopyOut {
            path: rel.display().to_string(),
            size,
        })
        .expect("report serializes");
        let fds = [fd.as_fd()];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
        anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
        // SAFETY: CTL (fd 3) is the control socket, open for the life of
        // init; the borrow ends with this statement.
        let ctl = unsafe { std::os::fd::BorrowedFd::borrow_raw(CTL) };
        let _ = rustix::net::sendmsg(
            ctl,
            &[std::io::IoSlice::new(&report)],
            &mut anc,
            rustix::net::SendFlags::NOSIGNAL,
        );
    }
}
