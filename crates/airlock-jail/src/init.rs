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

use crate::proto::{ExecPlan, InitConfig, Report, Request};
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
    send(&Report::SetupError { id: None, message });
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
    // A live sandbox gets the private devpts too: programs inside open
    // ptys of their own (Inspect's bash_session, `script`, expect, pty).
    let ptys = cfg.tty.is_some() || cfg.live;
    if let Err(e) = crate::mounts::build_root(spec, cfg.workspace.as_ref(), ptys) {
        fail(format!("building the sandbox filesystem: {e}"));
    }
    if let Err(e) = plant(spec) {
        fail(e);
    }
    let touch = match TouchWatch::new(spec) {
        Ok(t) => t,
        Err(e) => fail(e),
    };
    if cfg.live {
        hand_over_places(spec);
    }
    mark(&mut cfg, "root built");

    // Limits must hold before any payload runs: wait until the supervisor
    // has placed us in the sandbox's cgroup.
    let mut placed = [0u8; 1];
    match sys::read_raw(CTL, &mut placed) {
        Ok(1) if placed[0] == crate::proto::PLACED => {}
        _ => fail("the supervisor went away before placing the sandbox in its cgroup".into()),
    }
    mark(&mut cfg, "placed");

    // A live sandbox's checkpoint store, while init may still mount.
    let store = if cfg.live {
        match checkpoint_store(&cfg.spec) {
            Ok(fd) => Some(fd),
            Err(e) => fail(e),
        }
    } else {
        None
    };
    // Init keeps no privilege while payloads run but CAP_SYS_PTRACE in its
    // own user namespace (see `caps::keep_only_ptrace`), and nothing in the
    // sandbox may ptrace it or read its fds through /proc. Its children
    // (monitors, then processes) inherit "non-dumpable" until their exec.
    let _ = sys::set_non_dumpable();
    if let Err(e) = crate::caps::keep_only_ptrace() {
        fail(e);
    }
    Server {
        cfg: &cfg,
        touch,
        running: Vec::new(),
        t0,
        store,
    }
    .serve(&set)
}

/// One exec that init started and has not finished with.
struct Running {
    id: u64,
    /// The exec's monitor (a child of init, the subreaper of its tree).
    leader: libc::pid_t,
    leader_reaped: bool,
    /// Init → monitor: `K` kills the tree, `S` and a signal number signals
    /// the process. Closed: the monitor kills the tree and exits.
    to_leader: Option<OwnedFd>,
    /// Monitor → init: the process's raw wait status (4 bytes), then end of
    /// file once the tree is gone.
    status: Option<OwnedFd>,
    /// The exit watch of the exec's process (exec telemetry, fd and memory
    /// limits).
    listener: Option<OwnedFd>,
    nofile: bool,
    memory: bool,
    reported: bool,
}

impl Running {
    fn tell(&self, msg: &[u8]) {
        if let Some(fd) = &self.to_leader {
            let _ = rustix::io::write(fd, msg);
        }
    }

    fn done(&self) -> bool {
        self.reported && self.status.is_none() && self.leader_reaped
    }
}

/// Init's serve loop: starts execs, relays signals, reports exits, resets
/// and closes the sandbox.
struct Server<'a> {
    cfg: &'a InitConfig,
    touch: TouchWatch,
    running: Vec<Running>,
    /// When init started (on init's clock).
    t0: std::time::Instant,
    /// A live sandbox's checkpoint store: a detached tmpfs (a mount fd
    /// attached nowhere), made while init still had its capabilities.
    store: Option<OwnedFd>,
}

impl Server<'_> {
    fn serve(mut self, set: &libc::sigset_t) -> ! {
        // SAFETY: `set` is initialised and blocked in this thread; -1 asks for a new fd.
        let sfd = unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if sfd < 0 {
            fail(format!("signalfd: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: signalfd returned a fresh fd that we now own.
        let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
        // SAFETY: CTL (fd 3) is the control socket, open for the life of init.
        let ctl = unsafe { std::os::fd::BorrowedFd::borrow_raw(CTL) };
        let mut buf = vec![0u8; 1 << 20];
        loop {
            // Slots: 0 ctl, 1 signals, then (kind, index) per exec.
            let mut fds = vec![
                PollFd::new(&ctl, PollFlags::IN),
                PollFd::new(&sfd, PollFlags::IN),
            ];
            let mut slots: Vec<(u8, usize)> = vec![(0, 0), (1, 0)];
            for (i, r) in self.running.iter().enumerate() {
                if let Some(s) = &r.status {
                    fds.push(PollFd::new(s, PollFlags::IN));
                    slots.push((2, i));
                }
                if let Some(l) = &r.listener {
                    fds.push(PollFd::new(l, PollFlags::IN));
                    slots.push((3, i));
                }
            }
            if poll(&mut fds, None).is_err() {
                continue; // EINTR
            }
            let ready: Vec<(u8, usize, PollFlags)> = fds
                .iter()
                .zip(&slots)
                .filter(|(f, _)| !f.revents().is_empty())
                .map(|(f, s)| (s.0, s.1, f.revents()))
                .collect();
            drop(fds);
            // The request last: a reset or a close changes `running`, which
            // the other slots index.
            let mut ready = ready;
            ready.sort_by_key(|r| r.0 == 0);
            for (kind, i, rev) in ready {
                match kind {
                    0 => self.request(&mut buf),
                    1 => self.signals(&sfd),
                    2 => self.status(i),
                    _ if rev.contains(PollFlags::IN) => self.watch(i),
                    // No process uses the filter any more.
                    _ => self.running[i].listener = None,
                }
            }
            self.running.retain(|r| !r.done());
        }
    }

    /// One request from the supervisor. End of file: the supervisor is
    /// gone, and so is the sandbox (init's exit kills every process).
    fn request(&mut self, buf: &mut [u8]) {
        // Room for an exec's three stdio fds and its plan's memfd.
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
        // SAFETY: CTL (fd 3) is the control socket, open for the life of init.
        let ctl = unsafe { std::os::fd::BorrowedFd::borrow_raw(CTL) };
        let got = rustix::net::recvmsg(
            ctl,
            &mut [std::io::IoSliceMut::new(buf)],
            &mut anc,
            rustix::net::RecvFlags::CMSG_CLOEXEC | rustix::net::RecvFlags::DONTWAIT,
        );
        let fds: Vec<OwnedFd> = anc
            .drain()
            .flat_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmRights(fds) => fds.collect(),
                _ => Vec::new(),
            })
            .collect();
        let n = match got {
            Ok(m) if m.bytes == 0 => sys::exit_now(0),
            Ok(m) => m.bytes,
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => return,
            Err(_) => sys::exit_now(0),
        };
        let req: Request = match serde_json::from_slice(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                send(&Report::SetupError {
                    id: None,
                    message: format!("malformed request: {e}"),
                });
                return;
            }
        };
        match req {
            Request::Exec(plan) => {
                let id = plan.id;
                match self.start(plan, fds) {
                    Ok(r) => self.running.push(r),
                    Err(message) => send(&Report::SetupError {
                        id: Some(id),
                        message,
                    }),
                }
            }
            Request::ExecLarge { id, len } => {
                // The memfd is closed here, before anything is forked: it
                // never reaches a monitor's or a payload's fd table.
                let mut fds = fds;
                let plan = large_plan(id, len, fds.pop());
                match plan.and_then(|plan| self.start(plan, fds)) {
                    Ok(r) => self.running.push(r),
                    Err(message) => send(&Report::SetupError {
                        id: Some(id),
                        message,
                    }),
                }
            }
            Request::Signal { id, signal } => {
                if let Some(r) = self.running.iter().find(|r| r.id == id) {
                    r.tell(&[b'S', signal.clamp(1, 64) as u8]);
                }
            }
            Request::KillTree { id } => {
                if let Some(r) = self.running.iter().find(|r| r.id == id) {
                    r.tell(b"K");
                }
            }
            Request::Reset { checkpoint } => self.reset(checkpoint.as_deref()),
            Request::Checkpoint { name } => {
                let error = self.checkpoint(&name).err();
                send(&Report::CheckpointDone { name, error });
            }
            Request::Close => self.close(),
        }
    }

    /// Signals for init: SIGCHLD reaps; the others (a one-shot run's
    /// forwarded interrupts) go to every exec's process.
    fn signals(&mut self, sfd: &OwnedFd) {
        let mut info = [0u8; 128]; // struct signalfd_siginfo
        while let Ok(128) = rustix::io::read(sfd, &mut info) {
            let sig = i32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
            if sig != libc::SIGCHLD {
                for r in self.running.iter().filter(|r| !r.reported) {
                    r.tell(&[b'S', sig as u8]);
                }
                continue;
            }
            while let Ok(Some((pid, _, _))) = sys::wait4(-1, libc::WNOHANG) {
                if let Some(r) = self.running.iter_mut().find(|r| r.leader == pid) {
                    r.leader_reaped = true;
                    r.to_leader = None;
                }
            }
        }
    }

    /// The monitor of exec `i` wrote its process's status, or ended.
    fn status(&mut self, i: usize) {
        let r = &mut self.running[i];
        let Some(fd) = &r.status else { return };
        let mut st = [0u8; 4];
        match rustix::io::read(fd, &mut st) {
            Ok(4) if !r.reported => {
                r.reported = true;
                let full = crate::mounts::capped_mounts(&self.cfg.spec)
                    .into_iter()
                    .filter(|p| is_full(p))
                    .map(|p| p.display().to_string())
                    .collect();
                send(&Report::Exited {
                    id: r.id,
                    status: i32::from_ne_bytes(st),
                    lost: false,
                    full,
                    nofile: r.nofile,
                    memory: r.memory,
                });
            }
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
            _ => {
                // End of file: the monitor is gone.
                r.status = None;
                r.listener = None;
                if !r.reported {
                    r.reported = true;
                    send(&Report::Exited {
                        id: r.id,
                        status: libc::SIGKILL,
                        lost: true,
                        full: Vec::new(),
                        nofile: r.nofile,
                        memory: r.memory,
                    });
                }
            }
        }
    }

    /// The exit watch of exec `i` has a notification.
    fn watch(&mut self, i: usize) {
        let as_limit = self.cfg.fallback.memory;
        let nofile = self.cfg.spec.rlimits.nofile;
        let r = &mut self.running[i];
        let Some(l) = &r.listener else { return };
        match crate::exitwatch::serve_one(l, as_limit.is_some()) {
            crate::exitwatch::Notice::Exit { fds, vm_peak } => {
                r.nofile |= fds.is_some_and(|n| n as u64 >= nofile);
                if let (Some(peak), Some(limit)) = (vm_peak, as_limit) {
                    r.memory |= crate::exitwatch::near_limit(peak, limit);
                }
            }
            crate::exitwatch::Notice::Exec(event) => send(&Report::Event { event }),
            _ => {}
        }
    }

    /// Starts an exec: a monitor forked from init, which forks the
    /// process, waits for it, and reaps its tree.
    fn start(&mut self, plan: ExecPlan, stdio: Vec<OwnedFd>) -> Result<Running, String> {
        if plan.passed_stdio != (stdio.len() == 3) {
            return Err(format!(
                "exec {}: {} stdio descriptors attached, {} expected",
                plan.id,
                stdio.len(),
                if plan.passed_stdio { 3 } else { 0 }
            ));
        }
        if plan.argv.is_empty() {
            return Err(format!("exec {}: empty command", plan.id));
        }
        let exe = resolve(&plan.argv[0], &plan.env);
        let tty = match (plan.tty, self.cfg.tty) {
            (false, _) => None,
            (true, Some(size)) => Some(open_pty(size)?),
            (true, None) => return Err("a terminal was asked for, but none was set up".into()),
        };
        let pair = || {
            rustix::net::socketpair(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::SEQPACKET,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .map_err(|e| format!("socketpair: {e}"))
        };
        let pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| format!("pipe: {e}"))
        };
        // The process hands init its exit-watch listener over this pair.
        let (watch_init, watch_payload) = pair()?;
        let (cmd_r, cmd_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        let at_fork = self.t0.elapsed();
        // A failed fork (the pids limit reached by the sandbox's own
        // processes) fails this exec, never init.
        // SAFETY: init is single-threaded (a fresh exec that started no threads).
        let forked = unsafe { sys::fork() }
            .map_err(|e| format!("fork of the exec's monitor: {e} (the pids limit?)"))?;
        let leader = match forked {
            Forked::Child => {
                // The monitor keeps nothing of init's but the control
                // socket (close-on-exec, and its process closes nothing
                // it needs before exec).
                drop(watch_init);
                drop(cmd_w);
                drop(status_r);
                for r in std::mem::take(&mut self.running) {
                    drop(r);
                }
                self.touch.forget();
                self.store = None;
                let t0 = rebase(at_fork);
                monitor(
                    self.cfg,
                    &plan,
                    exe.as_deref(),
                    Stdio { passed: stdio, tty },
                    watch_payload,
                    cmd_r,
                    status_w,
                    t0,
                )
            }
            Forked::Parent(pid) => pid,
        };
        drop((watch_payload, cmd_r, status_w, stdio, tty));
        let listener = receive_listener(&watch_init);
        Ok(Running {
            id: plan.id,
            leader,
            leader_reaped: false,
            to_leader: Some(cmd_w),
            status: Some(status_r),
            listener,
            nofile: false,
            memory: false,
            reported: false,
        })
    }

    /// Copies the writable places into the store as checkpoint `name`
    /// (replacing one of that name). The store is a detached tmpfs that only
    /// init holds: nothing in the sandbox can reach or change it.
    fn checkpoint(&mut self, name: &str) -> Result<(), String> {
        use rustix::fs::{Mode, OFlags};
        let store = self
            .store
            .as_ref()
            .ok_or("this sandbox has no checkpoint store")?;
        if !crate::live::checkpoint_name_ok(name) {
            return Err(format!("bad checkpoint name {name:?}"));
        }
        let dflags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // A checkpoint of that name is replaced.
        if let Ok(old) = rustix::fs::openat(store, name, dflags, Mode::empty()) {
            crate::wipe::empty_open(&old).map_err(|e| format!("replacing {name}: {e}"))?;
            drop(old);
            rustix::fs::unlinkat(store, name, rustix::fs::AtFlags::REMOVEDIR)
                .map_err(|e| format!("replacing {name}: {e}"))?;
        }
        let result = (|| {
            rustix::fs::mkdirat(store, name, Mode::from_raw_mode(0o700))
                .map_err(|e| format!("storing {name}: {e}"))?;
            let at = rustix::fs::openat(store, name, dflags, Mode::empty())
                .map_err(|e| format!("storing {name}: {e}"))?;
            // The watched canary files are not copied: reading them would
            // be a touch, and a restore plants them anew.
            let skip = watched_inodes(&self.cfg.spec);
            for (i, place) in crate::mounts::reset_places(&self.cfg.spec)
                .iter()
                .enumerate()
            {
                let key = i.to_string();
                rustix::fs::mkdirat(&at, key.as_str(), Mode::from_raw_mode(0o700))
                    .map_err(|e| format!("storing {name}: {e}"))?;
                let dst = rustix::fs::openat(&at, key.as_str(), dflags, Mode::empty())
                    .map_err(|e| format!("storing {name}: {e}"))?;
                let src = rustix::fs::open(place, dflags, Mode::empty())
                    .map_err(|e| format!("opening {}: {e}", place.display()))?;
                crate::wipe::copy_tree(&src, &dst, &skip)
                    .map_err(|e| format!("copying {}: {e}", place.display()))?;
            }
            Ok(())
        })();
        if result.is_err() {
            // No half checkpoint stays behind.
            if let Ok(half) = rustix::fs::openat(store, name, dflags, Mode::empty()) {
                let _ = crate::wipe::empty_open(&half);
            }
            let _ = rustix::fs::unlinkat(store, name, rustix::fs::AtFlags::REMOVEDIR);
        }
        result
    }

    /// Copies checkpoint `name` back into the (emptied) writable places.
    fn restore(&self, name: &str) -> Result<(), String> {
        use rustix::fs::{Mode, OFlags};
        let store = self
            .store
            .as_ref()
            .ok_or("this sandbox has no checkpoint store")?;
        let dflags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let at = rustix::fs::openat(store, name, dflags, Mode::empty())
            .map_err(|_| format!("no checkpoint named {name:?}"))?;
        for (i, place) in crate::mounts::reset_places(&self.cfg.spec)
            .iter()
            .enumerate()
        {
            let key = i.to_string();
            let src = rustix::fs::openat(&at, key.as_str(), dflags, Mode::empty())
                .map_err(|e| format!("checkpoint {name}: {e}"))?;
            let dst = rustix::fs::open(place, dflags, Mode::empty())
                .map_err(|e| format!("opening {}: {e}", place.display()))?;
            crate::wipe::copy_tree(&src, &dst, &[])
                .map_err(|e| format!("restoring {}: {e}", place.display()))?;
        }
        Ok(())
    }

    /// Kills every process, empties the writable places and plants the
    /// files of create again, or copies checkpoint `checkpoint` back.
    fn reset(&mut self, checkpoint: Option<&str>) {
        kill_the_rest();
        for r in self.running.drain(..) {
            if !r.reported {
                send(&Report::Exited {
                    id: r.id,
                    status: libc::SIGKILL,
                    lost: false,
                    full: Vec::new(),
                    nofile: r.nofile,
                    memory: r.memory,
                });
            }
        }
        let spec = &self.cfg.spec;
        // Init's own wipe and plant must not count as touches.
        self.touch.remove_watches();
        let mut error = None;
        for place in crate::mounts::reset_places(spec) {
            if let Err(e) = crate::wipe::empty_dir(&place) {
                error.get_or_insert(format!("emptying {}: {e}", place.display()));
            }
        }
        if error.is_none() {
            // The canaries as planted at create, then (a checkpoint) what
            // the checkpoint holds besides them.
            let restored = plant(spec).and_then(|()| match checkpoint {
                Some(name) => self.restore(name),
                None => Ok(()),
            });
            if let Err(e) = restored {
                error = Some(e);
            }
        }
        if let Err(e) = self.touch.watch_again(spec) {
            error.get_or_insert(e);
        }
        send(&Report::ResetDone { error });
    }

    /// Kills every process, hands out the copy-out files, and exits (which
    /// tears down the namespaces).
    fn close(&mut self) -> ! {
        kill_the_rest();
        // Every open by the sandbox is queued by now; init's own opens for
        // the copy-out must not count as touches: remove the watches first.
        std::mem::replace(&mut self.touch, TouchWatch::none()).unwatch();
        if !self.cfg.spec.copy_out.is_empty() {
            copy_out(&self.cfg.spec);
        }
        send(&Report::Closed);
        sys::exit_now(0);
    }
}

/// A forked child's start instant on its own monotonic clock (its time
/// namespace's differs from init's), from init's age at the fork.
fn rebase(at_fork: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_sub(at_fork).unwrap_or(now)
}

/// An exec's stdio: three passed fds (stdin, stdout, stderr), or init's own;
/// a terminal's slave wins.
pub(crate) struct Stdio {
    pub(crate) passed: Vec<OwnedFd>,
    pub(crate) tty: Option<OwnedFd>,
}

/// The exec's monitor: the subreaper of its tree. It forks the process,
/// reports its status to init, and reaps every descendant orphaned in the
/// tree, so a process that daemonizes (double fork, setsid) stays in it.
/// It exits once the tree is empty. `K` from init (or init's end) kills
/// the whole tree: each round SIGKILLs every child (grandchildren become
/// children as their parents die) until none is left. Never returns.
#[allow(clippy::too_many_arguments)]
fn monitor(
    cfg: &InitConfig,
    plan: &ExecPlan,
    exe: Option<&Path>,
    stdio: Stdio,
    watch_payload: OwnedFd,
    cmd: OwnedFd,
    status: OwnedFd,
    t0: std::time::Instant,
) -> ! {
    if let Err(e) = sys::set_child_subreaper() {
        monitor_fail(plan.id, format!("prctl(PR_SET_CHILD_SUBREAPER): {e}"));
    }
    // The monitor needs no capability (its process drops its own).
    let _ = crate::caps::drop_all();
    let set = signal_set(&[libc::SIGCHLD]);
    // SAFETY: `set` is initialised and blocked (inherited from init).
    let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if sfd < 0 {
        monitor_fail(
            plan.id,
            format!("signalfd: {}", std::io::Error::last_os_error()),
        );
    }
    // SAFETY: signalfd returned a fresh fd that we now own.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    let payload = match unsafe_fork() {
        Forked::Child => {
            drop((sfd, cmd, status));
            crate::payload::run(cfg, plan, exe, watch_payload, stdio, t0)
        }
        Forked::Parent(pid) => pid,
    };
    drop((watch_payload, stdio));
    let mut waiting = true;
    let report = |st: i32| {
        let _ = rustix::io::write(&status, &st.to_ne_bytes());
    };
    loop {
        let mut fds = [
            PollFd::new(&sfd, PollFlags::IN),
            PollFd::new(&cmd, PollFlags::IN),
        ];
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let cmd_ready = !fds[1].revents().is_empty();
        if cmd_ready {
            let mut b = [0u8; 2];
            match rustix::io::read(&cmd, &mut b) {
                Ok(n) if n >= 1 && b[0] == b'K' => kill_tree(payload, &mut waiting, &report),
                Ok(2) if b[0] == b'S' => {
                    if waiting {
                        sys::kill(payload, i32::from(b[1]));
                    }
                }
                Ok(1) if b[0] == b'S' => {
                    let mut sig = [0u8; 1];
                    if rustix::io::read(&cmd, &mut sig).is_ok() && waiting {
                        sys::kill(payload, i32::from(sig[0]));
                    }
                }
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                Ok(0) | Err(_) => kill_tree(payload, &mut waiting, &report),
                Ok(_) => {}
            }
        }
        let mut info = [0u8; 128];
        while let Ok(128) = rustix::io::read(&sfd, &mut info) {}
        loop {
            match sys::wait4(-1, libc::WNOHANG) {
                Ok(Some((pid, st, _))) => {
                    if pid == payload && waiting {
                        waiting = false;
                        report(st);
                    }
                }
                Ok(None) => break,
                Err(_) => sys::exit_now(0), // ECHILD: the tree is empty
            }
        }
    }
}

fn monitor_fail(id: u64, message: String) -> ! {
    send(&Report::SetupError {
        id: Some(id),
        message,
    });
    sys::exit_now(125);
}

/// Kills the monitor's whole tree and exits. Orphans re-parent to the
/// monitor (the subreaper) as their parents die, so repeating "kill every
/// child, reap" until there is no child left reaches every descendant.
fn kill_tree(payload: libc::pid_t, waiting: &mut bool, report: &dyn Fn(i32)) -> ! {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    loop {
        for kid in children_of(me) {
            sys::kill(kid, libc::SIGKILL);
        }
        loop {
            match sys::wait4(-1, libc::WNOHANG) {
                Ok(Some((pid, st, _))) => {
                    if pid == payload && *waiting {
                        *waiting = false;
                        report(st);
                    }
                }
                Ok(None) => break,
                Err(_) => sys::exit_now(0),
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The pids whose parent is `parent` (from the sandbox's /proc).
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let mut kids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return kids;
    };
    for e in dir.flatten() {
        let Some(pid) = e
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        if ppid == Some(parent) {
            kids.push(pid);
        }
    }
    kids
}

/// A detached tmpfs for checkpoints, as large as the places a checkpoint
/// copies (one full copy of them fits; more fail with "no space").
fn checkpoint_store(spec: &JailSpec) -> Result<OwnedFd, String> {
    use rustix::mount::{
        fsconfig_create, fsconfig_set_string, fsmount, fsopen, FsMountFlags, FsOpenFlags,
        MountAttrFlags,
    };
    let size = spec
        .tmp_size
        .saturating_mul(2)
        .saturating_add(spec.home_size)
        .saturating_add(match spec.workspace {
            crate::spec::WorkspaceSource::Tmpfs(n) => n,
            crate::spec::WorkspaceSource::HostDir(_) => 0,
        })
        .saturating_add(64 << 20);
    let e = |what: &str, err: rustix::io::Errno| format!("checkpoint store: {what}: {err}");
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|x| e("fsopen", x))?;
    fsconfig_set_string(&fs, "size", size.to_string()).map_err(|x| e("size", x))?;
    fsconfig_set_string(&fs, "mode", "0700").map_err(|x| e("mode", x))?;
    fsconfig_create(&fs).map_err(|x| e("create", x))?;
    fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(|x| e("fsmount", x))
}

/// Sends the writable places' directories to the supervisor ([`Report::Places`]).
fn hand_over_places(spec: &JailSpec) {
    use rustix::fs::{Mode, OFlags};
    let mut paths = Vec::new();
    let mut fds = Vec::new();
    for p in crate::mounts::file_places(spec) {
        match rustix::fs::open(
            &p,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                paths.push(p.display().to_string());
                fds.push(fd);
            }
            Err(e) => fail(format!("opening {}: {e}", p.display())),
        }
    }
    let report = serde_json::to_vec(&Report::Places { paths }).expect("report serializes");
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !anc.push(rustix::net::SendAncillaryMessage::ScmRights(&borrowed)) {
        fail("too many writable places for one control message".into());
    }
    // SAFETY: CTL (fd 3) is the control socket, open for the life of init.
    let ctl = unsafe { std::os::fd::BorrowedFd::borrow_raw(CTL) };
    if let Err(e) = rustix::net::sendmsg(
        ctl,
        &[std::io::IoSlice::new(&report)],
        &mut anc,
        rustix::net::SendFlags::NOSIGNAL,
    ) {
        fail(format!(
            "handing the writable places to the supervisor: {e}"
        ));
    }
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

/// The plan of an [`Request::ExecLarge`] from its memfd (`memfd`, the last
/// fd attached), which is closed on return.
fn large_plan(id: u64, len: u64, memfd: Option<OwnedFd>) -> Result<ExecPlan, String> {
    let memfd = memfd.ok_or_else(|| format!("exec {id}: no memfd attached to the large plan"))?;
    let bytes = crate::proto::read_sealed(&memfd, len, crate::live::MAX_EXEC_REQUEST)
        .map_err(|e| format!("exec {id}: {e}"))?;
    drop(memfd);
    let plan: ExecPlan =
        serde_json::from_slice(&bytes).map_err(|e| format!("exec {id}: malformed plan: {e}"))?;
    if plan.id != id {
        return Err(format!(
            "exec {id}: the memfd holds the plan of exec {}",
            plan.id
        ));
    }
    Ok(plan)
}

fn is_full(p: &Path) -> bool {
    rustix::fs::statfs(p)
        .map(|s| s.f_blocks > 0 && s.f_bavail == 0)
        .unwrap_or(false)
}

/// Find `cmd` on the environment's PATH when it has no slash.
fn resolve(cmd: &str, env: &[(String, String)]) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    let path = env
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

/// The (device, inode) of each watched planted file, found without
/// opening it (an open would be a touch).
fn watched_inodes(spec: &JailSpec) -> Vec<(u64, u64)> {
    spec.plant
        .iter()
        .filter(|f| f.watch)
        .filter_map(|f| {
            rustix::fs::statat(
                rustix::fs::CWD,
                &f.path,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .ok()
        })
        .map(|st| (st.st_dev, st.st_ino))
        .collect()
}

/// Watches every planted file marked for it; the (wd, path) pairs.
fn add_watches(fd: &OwnedFd, spec: &JailSpec) -> Result<Vec<(i32, String)>, String> {
    use rustix::fs::inotify;
    let mut paths = Vec::new();
    for f in spec.plant.iter().filter(|f| f.watch) {
        // Closes too: inotify merges identical consecutive unread
        // events, and an OPEN between two CLOSEs is never merged, so
        // every open is counted even when the reader lags.
        let wd = inotify::add_watch(
            fd,
            &f.path,
            inotify::WatchFlags::OPEN | inotify::WatchFlags::CLOSE,
        )
        .map_err(|e| format!("inotify_add_watch {}: {e}", f.path.display()))?;
        paths.push((wd, f.path.display().to_string()));
    }
    Ok(paths)
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
        let paths = add_watches(&fd, spec)?;
        let wds = paths.iter().map(|p| p.0).collect();
        send_with_fd(&Report::Watches { paths }, fd.as_fd())
            .map_err(|e| format!("handing the canary watch to the supervisor: {e}"))?;
        Ok(TouchWatch { fd: Some(fd), wds })
    }

    /// Removes the watches and keeps the instance (a reset is under way).
    fn remove_watches(&mut self) {
        if let Some(fd) = &self.fd {
            for wd in self.wds.drain(..) {
                let _ = rustix::fs::inotify::remove_watch(fd, wd);
            }
        }
    }

    /// Watches the planted files again (a reset planted them anew) on the
    /// same instance, whose fd the supervisor already holds: closing an
    /// inotify instance waits for an SRCU grace period (see
    /// `spawn::close_later`), which a new instance per reset would put on
    /// every reset's path.
    fn watch_again(&mut self, spec: &JailSpec) -> Result<(), String> {
        let Some(fd) = &self.fd else {
            *self = TouchWatch::new(spec)?;
            return Ok(());
        };
        let paths = add_watches(fd, spec)?;
        self.wds = paths.iter().map(|p| p.0).collect();
        send(&Report::Watches { paths });
        Ok(())
    }

    fn none() -> TouchWatch {
        TouchWatch {
            fd: None,
            wds: Vec::new(),
        }
    }

    /// Drops this process's copy of the fd, keeping the watches (in a
    /// forked child).
    fn forget(&mut self) {
        self.fd = None;
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
