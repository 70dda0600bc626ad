//! The supervisor side: validate, create the cgroup, clone into new
//! namespaces, map ids, hand over the config, then stream output, enforce
//! the timeout and output cap, forward signals, and collect the result.
//!
//! The cloned child runs only async-signal-safe code (raw syscalls on data
//! prepared before the clone) and re-executes the airlock binary as the
//! sandbox's init, so spawning is safe from a multi-threaded supervisor.

use std::ffi::CStr;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use crate::cgroup::{self, Cgroup};
use crate::error::{JailError, SpawnError, SpecError};
use crate::hostids::HostIdLease;
use crate::landlock::LandlockReport;
use crate::proto::TtySize;
use crate::proto::{step, InitConfig, Report, GO, PLACED, PRE_EXEC_TAG};
use crate::report::{
    CgroupReport, ExitReason, JailEvent, LimitHit, Notice, RunReport, StreamStats, INTERRUPT_WINDOW,
};
use crate::spec::{JailSpec, WorkspaceSource};
use crate::sys;
use crate::workspace::{self, Attach, TREE_FD};

/// Where the payload's output goes while it runs.
pub trait OutputSink {
    /// A chunk of the payload's stdout (within the cap).
    fn stdout(&mut self, data: &[u8]);
    /// A chunk of the payload's stderr (within the cap).
    fn stderr(&mut self, data: &[u8]);
    /// The sockets of `spec.net.listeners`, in order, created inside the
    /// sandbox's network namespace before the payload starts. The caller
    /// serves them (an egress gateway) and owns them from here on. An error
    /// aborts the start. The default refuses, so that a spec with listeners
    /// never runs without something serving them.
    fn network_listeners(&mut self, fds: Vec<OwnedFd>) -> Result<(), String> {
        drop(fds);
        Err("this caller does not serve network listeners".into())
    }
    /// Something the sandbox did (exec telemetry, a watched file opened),
    /// as it happens. The default ignores it.
    fn event(&mut self, event: JailEvent) {
        let _ = event;
    }
    /// A copy-out file (`path` relative to the workspace), open for
    /// reading; its size was `size` bytes when it was opened, and nothing in
    /// the sandbox runs any more. The default ignores it.
    fn copy_out(&mut self, path: &str, size: u64, file: fs::File) {
        let _ = (path, size, file);
    }
    /// A copy-out path the sandbox did not hand out, and why.
    fn copy_out_refused(&mut self, path: &str, reason: &str) {
        let _ = (path, reason);
    }
    /// The payload is about to exec: how it is contained.
    fn started(&mut self, landlock: &LandlockReport, cgroup: &CgroupReport, host_uid: u32) {
        let _ = (landlock, cgroup, host_uid);
    }
    /// The write end of the payload's stdin, for [`StdinMode::Pipe`]: what
    /// is written to it the payload reads; dropping it is end of file. The
    /// default drops it.
    fn stdin_pipe(&mut self, writer: OwnedFd) {
        drop(writer);
    }
    /// Asked at least every 250 ms while the sandbox runs: `true` stops it
    /// (the run ends as `killed`), e.g. when the audit log can no longer be
    /// written.
    fn should_abort(&mut self) -> bool {
        false
    }
    /// Something the supervisor did that the person at the terminal should
    /// hear about (an interrupt forwarded, the sandbox killed by a second
    /// one). The default ignores it.
    fn notice(&mut self, notice: Notice) {
        let _ = notice;
    }
}

/// Collects output in memory (up to the spec's cap), for tests and callers
/// that want the bytes.
#[derive(Debug, Default)]
pub struct Collect {
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
}

impl OutputSink for Collect {
    fn stdout(&mut self, data: &[u8]) {
        self.stdout.extend_from_slice(data);
    }
    fn stderr(&mut self, data: &[u8]) {
        self.stderr.extend_from_slice(data);
    }
}

/// What the payload's stdin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// The supervisor's stdin, unless it is a terminal (then /dev/null: a
    /// sandbox never gets the caller's terminal).
    InheritUnlessTty,
    /// The supervisor's stdin, a terminal included (`-i`): a pipe is passed
    /// as it is; anything else, a terminal too, is copied into a fresh
    /// pipe. The sandbox never gets the caller's terminal fd.
    Inherit,
    /// A NEW pseudo-terminal (`-t`), made inside the sandbox (a private
    /// devpts instance): its slave is the payload's stdin, stdout, stderr
    /// and controlling terminal; the supervisor holds the master and relays
    /// between it and its own stdin (put in raw mode while the run lasts,
    /// when it is a terminal) and the sink's stdout. The window size is
    /// copied at start and on SIGWINCH. A pty merges the payload's streams:
    /// everything arrives as stdout, within the output cap.
    Tty,
    /// /dev/null.
    Null,
    /// A fresh pipe whose write end is handed to the sink
    /// ([`OutputSink::stdin_pipe`]) once the sandbox is set up: a caller
    /// that talks to a long-lived payload (the eval harness's tool server).
    Pipe,
}

/// Supervisor options that are not part of the sandbox's policy.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// stdin handling.
    pub stdin: StdinMode,
    /// Forward SIGINT/SIGTERM/SIGHUP received by the supervisor to the
    /// payload (blocks them in the calling thread while the run lasts).
    /// SIGQUIT kills the sandbox, and so does a second SIGINT within
    /// [`INTERRUPT_WINDOW`] of the first ([`ExitReason::Interrupted`]);
    /// both interrupts are announced to the sink ([`OutputSink::notice`]).
    pub forward_signals: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            stdin: StdinMode::Null,
            forward_signals: false,
        }
    }
}

/// The cloned child's fixed six-byte failure record (`PRE_EXEC_TAG`, step,
/// errno LE), as "step: error"; `None` for any other message.
fn pre_exec_failure(msg: &[u8]) -> Option<String> {
    let &[PRE_EXEC_TAG, st, a, b, c, d] = msg else {
        return None;
    };
    let errno = i32::from_le_bytes([a, b, c, d]);
    Some(format!(
        "{}: {}",
        step::name(st),
        std::io::Error::from_raw_os_error(errno)
    ))
}

/// Receives init's `Listeners` report with its sockets. Anything else (a
/// setup error, a closed socket) is an error naming what init said.
fn receive_listeners(ctl: &OwnedFd, want: usize) -> Result<Vec<OwnedFd>, JailError> {
    let mut space = vec![
        std::mem::MaybeUninit::uninit();
        rustix::cmsg_space!(ScmRights(crate::spec::MAX_LISTENERS))
    ];
    let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut buf = vec![0u8; 64 * 1024];
    let msg = rustix::net::recvmsg(
        ctl,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut anc,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| sys::SysError::from_errno("recvmsg", e.raw_os_error()))?;
    let fds: Vec<OwnedFd> = anc
        .drain()
        .flat_map(|m| match m {
            rustix::net::RecvAncillaryMessage::ScmRights(fds) => fds.collect(),
            _ => Vec::new(),
        })
        .collect();
    let body = &buf[..msg.bytes];
    let reason = if body.is_empty() {
        "the sandbox exited before creating its network listeners".to_owned()
    } else if let Some(failure) = pre_exec_failure(body) {
        failure
    } else {
        match serde_json::from_slice::<Report>(body) {
            Ok(Report::Listeners { count }) if count == want && fds.len() == want => {
                return Ok(fds)
            }
            Ok(Report::SetupError { message, .. }) => return Err(SpawnError::Setup(message).into()),
            Ok(other) => {
                format!("unexpected report while waiting for network listeners: {other:?}")
            }
            Err(e) => format!("malformed report from sandbox: {e}"),
        }
    };
    Err(SpawnError::Network { reason }.into())
}

/// The set-up failure init reported before it exited, if one is queued
/// on the control socket (read without waiting).
fn pending_setup_error(ctl: &OwnedFd) -> Option<String> {
    let mut buf = vec![0u8; 64 * 1024];
    // At most one ECONNRESET comes before the queued messages.
    for _ in 0..8 {
        match rustix::net::recv(ctl, &mut buf, rustix::net::RecvFlags::DONTWAIT) {
            Ok((_, 0)) => return None,
            Ok((n, _)) => {
                let msg = &buf[..n.min(buf.len())];
                if let Some(failure) = pre_exec_failure(msg) {
                    return Some(failure);
                }
                if let Ok(Report::SetupError { message, .. }) = serde_json::from_slice(msg) {
                    return Some(message);
                }
            }
            Err(rustix::io::Errno::CONNRESET) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    None
}

pub(crate) struct IdMap {
    pub(crate) host_uid: u32,
    pub(crate) host_gid: u32,
    pub(crate) privileged: bool,
    /// Held while the sandbox lives: its host uid is its own (root mode).
    _lease: Option<HostIdLease>,
}

/// A host workspace, opened by the supervisor, and how init attaches it.
struct HostWs {
    attach: Attach,
    /// The detached mount init moves into place ([`Attach::Tree`]).
    tree: Option<OwnedFd>,
    /// The directory as the supervisor opened it.
    opened: Option<workspace::HostWorkspace>,
}

/// The sandbox's host ids and its host workspace.
///
/// Rootless, the sandbox runs as the caller, and init opens the workspace
/// itself (as the caller, who could open it anyway), checking it is the
/// directory opened here. As root, the sandbox runs as a host uid of its
/// own from [`crate::ROOT_MODE_UID_BASE`], leased for its lifetime, and the
/// workspace is a detached mount made here, idmapped so that its owner's
/// files are the sandbox's. Where idmapping is impossible (a filesystem or
/// kernel without support), the sandbox runs as the directory's owner, as
/// long as that is not root.
fn prepare_ids(spec: &mut JailSpec) -> Result<(IdMap, Option<HostWs>), JailError> {
    let ws = match &spec.workspace {
        WorkspaceSource::HostDir(dir) => Some(workspace::open(dir)?),
        WorkspaceSource::Tmpfs(_) => None,
    };
    if let Some(w) = &ws {
        spec.workspace = WorkspaceSource::HostDir(w.path.clone());
    }
    let euid = rustix::process::geteuid().as_raw();
    if euid != 0 {
        let ids = IdMap {
            host_uid: euid,
            host_gid: rustix::process::getegid().as_raw(),
            privileged: false,
            _lease: None,
        };
        let ws = ws.map(|w| HostWs {
            attach: w.lookup(),
            tree: None,
            opened: Some(w),
        });
        return Ok((ids, ws));
    }
    let lease = HostIdLease::acquire()?;
    let own = lease.uid();
    let Some(w) = ws else {
        return Ok((
            IdMap {
                host_uid: own,
                host_gid: own,
                privileged: true,
                _lease: Some(lease),
            },
            None,
        ));
    };
    match w.detached_tree(Some((own, own))) {
        Ok(tree) => Ok((
            IdMap {
                host_uid: own,
                host_gid: own,
                privileged: true,
                _lease: Some(lease),
            },
            Some(HostWs {
                attach: Attach::Tree,
                tree: Some(tree),
                opened: Some(w),
            }),
        )),
        Err(e) if w.uid == 0 => Err(SpecError::Workspace {
            path: w.path.clone(),
            reason: format!(
                "cannot be idmapped here ({e}), and airlock never runs a sandbox as host \
                 root, so this root-owned directory would not be writable: put the workspace \
                 on a filesystem that supports idmapped mounts (ext4, xfs, btrfs, tmpfs), or \
                 chown it to an unprivileged user"
            ),
        }
        .into()),
        Err(e) => {
            tracing::warn!(
                workspace = %w.path.display(),
                error = %e,
                owner = w.uid,
                "idmapped mounts are unavailable for this workspace; the sandbox runs as its owner"
            );
            let tree = w.detached_tree(None).map_err(|e| SpecError::Workspace {
                path: w.path.clone(),
                reason: e.to_string(),
            })?;
            Ok((
                IdMap {
                    host_uid: w.uid,
                    host_gid: w.gid,
                    privileged: true,
                    _lease: None,
                },
                Some(HostWs {
                    attach: Attach::Tree,
                    tree: Some(tree),
                    opened: Some(w),
                }),
            ))
        }
    }
}

fn check_host_paths(spec: &JailSpec) -> Result<(), SpecError> {
    for b in &spec.ro_binds {
        if !b.optional && fs::symlink_metadata(&b.path).is_err() {
            return Err(SpecError::MissingBind {
                path: b.path.clone(),
            });
        }
    }
    Ok(())
}

fn id_map_err(file: &'static str) -> impl FnOnce(std::io::Error) -> SpawnError {
    move |source| SpawnError::IdMap { file, source }
}

fn write_maps(pid: i32, spec: &JailSpec, ids: &IdMap) -> Result<(), SpawnError> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    if !ids.privileged {
        fs::write(base.join("setgroups"), "deny").map_err(id_map_err("setgroups"))?;
    }
    fs::write(
        base.join("gid_map"),
        format!("{} {} 1\n", spec.gid, ids.host_gid),
    )
    .map_err(id_map_err("gid_map"))?;
    fs::write(
        base.join("uid_map"),
        format!("{} {} 1\n", spec.uid, ids.host_uid),
    )
    .map_err(id_map_err("uid_map"))?;
    Ok(())
}

/// Everything the cloned child touches, prepared before the clone.
pub(crate) struct PreExec<'a> {
    pub(crate) ctl: RawFd,
    pub(crate) stdin: RawFd,
    pub(crate) stdout: RawFd,
    pub(crate) stderr: RawFd,
    pub(crate) privileged: bool,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) last_cap: u32,
    pub(crate) cgroup_tasks: &'a [RawFd],
    /// A detached workspace mount for init at [`TREE_FD`], or -1. It is
    /// above [`TREE_FD`], so moving the other sources first never clobbers it.
    pub(crate) ws_tree: RawFd,
    pub(crate) exe: &'a CStr,
    pub(crate) argv: &'a [*const libc::c_char],
    pub(crate) envp: &'a [*const libc::c_char],
}

fn pre_exec_fail(ctl: RawFd, st: u8, errno: i32) -> ! {
    let e = errno.to_le_bytes();
    sys::write_all_raw(ctl, &[PRE_EXEC_TAG, st, e[0], e[1], e[2], e[3]]);
    sys::exit_now(125);
}

/// The cloned child, up to the exec of the airlock init. Async-signal-safe:
/// raw syscalls on prepared data, no allocation, no locks.
pub(crate) fn child_after_clone(p: &PreExec<'_>) -> ! {
    // Move into the sandbox's v1 cgroups ("0" is the writer itself) while
    // the parent writes our id maps.
    for &fd in p.cgroup_tasks {
        if !sys::write_all_raw(fd, b"0") {
            pre_exec_fail(p.ctl, step::CGROUP, sys::errno());
        }
    }
    // Wait until the parent has written our id maps.
    let mut b = [0u8; 1];
    match sys::read_raw(p.ctl, &mut b) {
        Ok(1) if b[0] == GO => {}
        _ => sys::exit_now(125),
    }
    if p.privileged {
        if let Err(e) = sys::clear_groups_raw() {
            pre_exec_fail(p.ctl, step::SETGROUPS, e);
        }
    }
    if let Err((_, e)) = sys::set_ids_raw(p.uid, p.gid) {
        pre_exec_fail(p.ctl, step::SETID, e);
    }
    // Keep every capability of our new user namespace across the exec, as
    // ambient capabilities (our uid is not 0 inside).
    let all: u64 = if p.last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (p.last_cap + 1)) - 1
    };
    if !sys::capset_raw(all, all, all) {
        pre_exec_fail(p.ctl, step::CAPS, sys::errno());
    }
    for cap in 0..=p.last_cap {
        if !sys::ambient_raise_raw(cap) {
            pre_exec_fail(p.ctl, step::CAPS, sys::errno());
        }
    }
    // Credential changes reset the parent-death signal: arm it last.
    if sys::set_parent_death_signal(libc::SIGKILL).is_err() {
        pre_exec_fail(p.ctl, step::PDEATHSIG, sys::errno());
    }
    // SAFETY: an empty set with SIG_SETMASK only rewrites this thread's mask.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            pre_exec_fail(p.ctl, step::SIGMASK, sys::errno());
        }
    }
    // fds: 0-2 the payload's stdio, 3 the control socket, 4 a detached
    // workspace mount (if any), nothing else. Sources are all >= 3 (the
    // supervisor keeps 0-2 open) and the mount's is > 4, so no dup2
    // clobbers a source still needed.
    if !(sys::dup2_raw(p.stdin, 0)
        && sys::dup2_raw(p.stdout, 1)
        && sys::dup2_raw(p.stderr, 2)
        && sys::dup2_raw(p.ctl, 3))
    {
        pre_exec_fail(p.ctl, step::FDS, sys::errno());
    }
    if p.ws_tree >= 0 {
        if !sys::dup2_raw(p.ws_tree, TREE_FD) {
            pre_exec_fail(3, step::FDS, sys::errno());
        }
        sys::close_from_raw(TREE_FD as u32 + 1);
    } else {
        sys::close_from_raw(TREE_FD as u32);
    }
    let errno = sys::execve_raw(p.exe, p.argv, p.envp);
    pre_exec_fail(3, step::EXEC, errno);
}

struct Stream {
    fd: Option<OwnedFd>,
    stats: StreamStats,
}

impl Stream {
    /// Read what is there; forward within the cap, count the rest.
    fn pump(&mut self, cap: u64, buf: &mut [u8], out: &mut dyn FnMut(&[u8])) {
        let Some(fd) = &self.fd else { return };
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => self.fd = None,
            Ok(n) => forward_capped(&mut self.stats, cap, &buf[..n], out),
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
            Err(_) => self.fd = None,
        }
    }
}

/// The window size of the caller's terminal (stdin, else stdout), or 24x80
/// when neither is one.
fn caller_tty_size() -> TtySize {
    [rustix::stdio::stdin(), rustix::stdio::stdout()]
        .into_iter()
        .find_map(|fd| rustix::termios::tcgetwinsize(fd).ok())
        .filter(|w| w.ws_row > 0 && w.ws_col > 0)
        .map_or(TtySize { rows: 24, cols: 80 }, |w| TtySize {
            rows: w.ws_row,
            cols: w.ws_col,
        })
}

/// The supervisor's side of the payload's terminal ([`StdinMode::Tty`]):
/// the master of the pty made inside the sandbox, the caller's stdin
/// relayed to it, and the caller's terminal mode, restored on drop (every
/// way out of [`run`], an error or a forwarded signal included).
struct Pty {
    master: Option<OwnedFd>,
    /// The supervisor's stdin.
    input: std::os::fd::BorrowedFd<'static>,
    input_open: bool,
    /// Input read but not yet taken by the master.
    pending: Vec<u8>,
    /// The caller's terminal mode before it was made raw.
    saved: Option<rustix::termios::Termios>,
}

impl Default for Pty {
    fn default() -> Self {
        Pty {
            master: None,
            input: rustix::stdio::stdin(),
            input_open: true,
            pending: Vec::new(),
            saved: None,
        }
    }
}

impl Pty {
    /// Takes the master from init and puts the caller's terminal (when
    /// stdin is one) in raw mode, so that every key, Ctrl-C included,
    /// reaches the sandbox's line discipline instead of ours.
    fn attach(&mut self, master: OwnedFd) {
        use rustix::termios::{tcgetattr, tcsetattr, OptionalActions};
        if let Err(e) = rustix::fs::fcntl_setfl(&master, rustix::fs::OFlags::NONBLOCK) {
            tracing::warn!(error = %e, "cannot make the terminal master non-blocking");
        }
        self.master = Some(master);
        self.resize();
        if let Ok(saved) = tcgetattr(self.input) {
            let mut raw = saved.clone();
            raw.make_raw();
            // Now, not flush: input typed before the run started stays.
            match tcsetattr(self.input, OptionalActions::Now, &raw) {
                Ok(()) => self.saved = Some(saved),
                Err(e) => tracing::warn!(error = %e, "cannot put the terminal in raw mode"),
            }
        }
    }

    /// Copies the caller's window size to the pty (the kernel then sends
    /// SIGWINCH to the payload's foreground process group).
    fn resize(&self) {
        let Some(m) = &self.master else { return };
        if let Ok(w) = rustix::termios::tcgetwinsize(self.input)
            .or_else(|_| rustix::termios::tcgetwinsize(rustix::stdio::stdout()))
        {
            let _ = rustix::termios::tcsetwinsize(m, w);
        }
    }

    /// The master is ready: write pending input, forward output within
    /// the cap (counted as stdout). EIO means every slave is closed.
    fn pump(
        &mut self,
        rev: PollFlags,
        cap: u64,
        stats: &mut StreamStats,
        buf: &mut [u8],
        sink: &mut dyn OutputSink,
    ) {
        if rev.contains(PollFlags::OUT) {
            self.write_pending();
        }
        if !rev.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
            return;
        }
        let Some(m) = &self.master else { return };
        match rustix::io::read(m, &mut *buf) {
            Ok(0) => self.master = None,
            Ok(n) => forward_capped(stats, cap, &buf[..n], &mut |d| sink.stdout(d)),
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
            Err(_) => self.master = None,
        }
    }

    /// The caller's stdin is readable: read a chunk for the master. At end
    /// of input that is not a terminal's, the line discipline gets its
    /// end-of-file character (Ctrl-D).
    fn read_input(&mut self) {
        let mut chunk = [0u8; 4096];
        match rustix::io::read(self.input, &mut chunk) {
            Ok(0) => {
                self.input_open = false;
                if self.saved.is_none() {
                    self.pending.push(0x04);
                }
            }
            Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
            Err(_) => self.input_open = false,
        }
        self.write_pending();
    }

    fn write_pending(&mut self) {
        let Some(m) = &self.master else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match rustix::io::write(m, &self.pending) {
                Ok(n) => drop(self.pending.drain(..n)),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => {
                    self.pending.clear();
                    return;
                }
            }
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            use rustix::termios::{tcsetattr, OptionalActions};
            if let Err(e) = tcsetattr(self.input, OptionalActions::Now, &saved) {
                tracing::warn!(error = %e, "cannot restore the terminal mode");
            }
        }
    }
}

/// Forward `data` within the cap, count the rest.
fn forward_capped(stats: &mut StreamStats, cap: u64, data: &[u8], out: &mut dyn FnMut(&[u8])) {
    let room = cap.saturating_sub(stats.bytes) as usize;
    let keep = data.len().min(room);
    if keep > 0 {
        out(&data[..keep]);
    }
    stats.bytes += keep as u64;
    stats.dropped += (data.len() - keep) as u64;
}

/// Most opens reported per watched file; later ones are counted.
const MAX_OPENS_REPORTED: u64 = 32;

/// The sandbox's canary watch (an inotify fd made by init), read here.
pub(crate) struct Touches {
    pub(crate) fd: OwnedFd,
    pub(crate) paths: Vec<(i32, String, u64)>,
}

impl Touches {
    /// Reports every open queued so far.
    pub(crate) fn drain(&mut self, sink: &mut dyn OutputSink) {
        use rustix::fs::inotify;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        let mut opened = Vec::new();
        while let Ok(ev) = reader.next() {
            if ev.events().contains(inotify::ReadFlags::OPEN) {
                opened.push(ev.wd());
            }
            if ev.events().contains(inotify::ReadFlags::QUEUE_OVERFLOW) {
                // Lost events: count one open on every file, so a touch is
                // never missed silently.
                opened.extend(self.paths.iter().map(|p| p.0));
            }
        }
        for wd in opened {
            if let Some(entry) = self.paths.iter_mut().find(|p| p.0 == wd) {
                entry.2 += 1;
                if entry.2 <= MAX_OPENS_REPORTED {
                    sink.event(JailEvent::FileOpened {
                        path: entry.1.clone(),
                    });
                }
            }
        }
    }

    /// Reports what is left and the opens past the per-file cap.
    fn settle_paths(&mut self, sink: &mut dyn OutputSink) {
        self.drain(sink);
        for (_, path, n) in &self.paths {
            if *n > MAX_OPENS_REPORTED {
                sink.event(JailEvent::FileOpensDropped {
                    path: path.clone(),
                    count: n - MAX_OPENS_REPORTED,
                });
            }
        }
    }

    /// The same instance watches new files (after a reset re-planted
    /// them): what the old watches queued is reported first, under the old
    /// names. Init removed those watches before it sent the new ones, so
    /// nothing more comes for them.
    pub(crate) fn rewatched(&mut self, paths: Vec<(i32, String)>, sink: &mut dyn OutputSink) {
        self.settle_paths(sink);
        self.paths = paths.into_iter().map(|(wd, p)| (wd, p, 0)).collect();
    }

    /// Reports what is left and the opens past the per-file cap, and
    /// hands the fd to the closer thread ([`settle`]).
    pub(crate) fn finish(mut self, sink: &mut dyn OutputSink) {
        self.settle_paths(sink);
        close_later(self.fd);
    }
}

/// Closing an inotify instance waits for an SRCU grace period (the kernel
/// flushes its mark reaper), up to ~15 ms on a busy machine and in about a
/// third of runs: a close on the run's own path doubled the spawn time at
/// p90. The watch is dead by then (init removed its watches when the
/// payload exited, and the sandbox's files are gone), so its fd is closed
/// on one process-wide thread instead; [`settle`] waits for that.
struct Closer {
    tx: std::sync::mpsc::Sender<OwnedFd>,
    pending: std::sync::Arc<(std::sync::Mutex<usize>, std::sync::Condvar)>,
}

fn closer() -> Option<&'static Closer> {
    static CLOSER: std::sync::OnceLock<Option<Closer>> = std::sync::OnceLock::new();
    CLOSER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<OwnedFd>();
            let pending =
                std::sync::Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
            let p = std::sync::Arc::clone(&pending);
            std::thread::Builder::new()
                .name("airlock-closer".into())
                .spawn(move || {
                    sys::block_all_signals();
                    for fd in rx {
                        drop(fd);
                        let (n, cv) = &*p;
                        let mut n = n.lock().unwrap_or_else(|e| e.into_inner());
                        *n = n.saturating_sub(1);
                        cv.notify_all();
                    }
                })
                .ok()
                .map(|_| Closer { tx, pending })
        })
        .as_ref()
}

/// Most fds waiting for the closer thread. Each is an inotify instance,
/// and a user may have only `fs.inotify.max_user_instances` (128 by
/// default): past this, a run closes its own fd (and waits), so sandboxes
/// ending faster than grace periods pass slow down instead of running out.
const MAX_PENDING_CLOSES: usize = 16;

/// Closes `fd` on the closer thread (here, if there is none or it is
/// [`MAX_PENDING_CLOSES`] behind).
fn close_later(fd: OwnedFd) {
    let Some(c) = closer() else {
        drop(fd);
        return;
    };
    {
        let mut n = c.pending.0.lock().unwrap_or_else(|e| e.into_inner());
        if *n >= MAX_PENDING_CLOSES {
            drop(n);
            drop(fd);
            return;
        }
        *n += 1;
    }
    if let Err(back) = c.tx.send(fd) {
        drop(back.0);
        let mut n = c.pending.0.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
    }
}

/// Waits until every fd a finished run left to the closer thread is
/// closed (at most one SRCU grace period each). A run returns without
/// waiting for them; call this where "nothing of a run is left open" must
/// hold at once, such as before counting the process's fds.
pub fn settle() {
    if let Some(c) = closer() {
        let (n, cv) = &*c.pending;
        let mut n = n.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct SignalFd {
    fd: OwnedFd,
    old: libc::sigset_t,
}

const SUPERVISOR_FORWARDED: &[i32] = &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

impl SignalFd {
    fn new(signals: &[i32]) -> Result<SignalFd, sys::SysError> {
        // SAFETY: sigset_t is plain data initialised by sigemptyset below.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: sigset_t is plain data; sigprocmask fills it.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is live; the signal numbers are valid.
        unsafe {
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
        }
        // SAFETY: both sets are live; this changes only the calling thread's mask.
        if unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) } != 0 {
            return Err(sys::SysError::last("pthread_sigmask"));
        }
        // SAFETY: `set` is initialised; -1 asks for a new fd.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(sys::SysError::last("signalfd"));
        }
        // SAFETY: signalfd returned a fresh fd that we now own.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(SignalFd { fd, old })
    }

    fn next(&self) -> Option<i32> {
        let mut info = [0u8; 128]; // sizeof(struct signalfd_siginfo)
        match rustix::io::read(&self.fd, &mut info) {
            Ok(128) => Some(i32::from_ne_bytes([info[0], info[1], info[2], info[3]])),
            _ => None,
        }
    }
}

impl Drop for SignalFd {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in new(); `old` is initialised.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// Copy the supervisor's stdin into the sandbox's stdin pipe on a thread
/// (reading stdin may block indefinitely; the run must not wait for it).
/// The thread ends at EOF, on a read error (a directory gives EISDIR, so the
/// payload just sees EOF), or when the sandbox closes its end.
fn copy_stdin_in_background(w: OwnedFd) {
    let spawned = std::thread::Builder::new()
        .name("airlock-stdin".into())
        .spawn(move || {
            sys::block_all_signals();
            let mut src = std::io::stdin().lock();
            let mut dst = fs::File::from(w);
            let _ = std::io::copy(&mut src, &mut dst);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot copy stdin into the sandbox; it sees EOF");
    }
}

pub(crate) fn decode_status(status: i32) -> ExitReason {
    if libc::WIFEXITED(status) {
        ExitReason::Exit {
            code: libc::WEXITSTATUS(status),
        }
    } else {
        ExitReason::Signal {
            signal: libc::WTERMSIG(status),
        }
    }
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// Check a spec without running it: the same validation and seccomp
/// compilation `run` does first (for `airlock profile check`).
pub fn check(spec: &JailSpec) -> Result<(), JailError> {
    spec.validate()?;
    crate::seccomp::compile(&spec.seccomp)?;
    Ok(())
}

/// A sandbox that is set up: init has built the root, and waits for
/// requests on the control socket.
pub(crate) struct Booted {
    /// The spec as run (the workspace path made real).
    pub(crate) spec: JailSpec,
    pub(crate) child: sys::Cloned,
    pub(crate) ctl: OwnedFd,
    pub(crate) cg: Option<Cgroup>,
    pub(crate) support: cgroup::CgroupSupport,
    pub(crate) ids: IdMap,
    /// A live sandbox's writable places (path inside, `O_PATH` directory).
    pub(crate) places: Vec<(PathBuf, OwnedFd)>,
    /// A live sandbox's canary watch, when it has one.
    pub(crate) touches: Option<Touches>,
    /// The host workspace, open on the host side (a live sandbox's files
    /// API writes there as the directory's owner).
    pub(crate) host_ws: Option<workspace::HostWorkspace>,
    /// When the boot started.
    pub(crate) started: Instant,
}

/// What the sandbox's cgroup is, for reports.
pub(crate) fn cgroup_report(cg: &Option<Cgroup>, support: &cgroup::CgroupSupport) -> CgroupReport {
    CgroupReport {
        version: cg.as_ref().map(|c| c.version()),
        controllers: cg
            .as_ref()
            .map(|c| c.controllers.clone())
            .unwrap_or_default(),
        note: support.note.clone(),
    }
}

/// Builds a sandbox: validate, compile seccomp, lease ids, open the host
/// workspace, create the cgroup, clone, map ids, hand init its config,
/// serve the network listeners, and place it in its cgroup. Init's stdio
/// is `stdio` (stdin, stdout, stderr: a one-shot run's); `live` makes
/// init send its writable places and serve requests for a live sandbox.
pub(crate) fn boot(
    spec: &JailSpec,
    live: bool,
    tty: Option<TtySize>,
    stdio: [RawFd; 3],
    listeners: &mut dyn FnMut(Vec<OwnedFd>) -> Result<(), String>,
) -> Result<Booted, JailError> {
    let started = Instant::now();
    // One validation pass before any side effect.
    if live {
        spec.validate_sandbox()?;
    } else {
        spec.validate()?;
    }
    let mut spec = spec.clone();
    check_host_paths(&spec)?;
    let seccomp = crate::seccomp::compile(&spec.seccomp)?;
    let (ids, host_ws) = prepare_ids(&mut spec)?;

    tracing::debug!(at = ?started.elapsed(), "spec validated");
    let support = cgroup::detect(spec.cgroup.root.as_deref());
    let cg = Cgroup::create(&spec.cgroup, &support)?;
    // Limits whose controller is unusable (and not required) fall back to
    // rlimits; `Cgroup::create` already refused the required ones.
    let enforced = |c: &str| {
        cg.as_ref()
            .is_some_and(|g| g.controllers.iter().any(|x| x == c))
    };
    let fallback = crate::rlimit::Fallback {
        memory: spec.cgroup.memory.filter(|_| !enforced("memory")),
        nproc: spec.cgroup.pids.filter(|_| !enforced("pids")),
    };
    let config = serde_json::to_vec(&InitConfig {
        spec: spec.clone(),
        seccomp,
        fallback,
        workspace: host_ws.as_ref().map(|w| w.attach.clone()),
        phases: Vec::new(),
        tty,
        live,
    })
    .expect("init config serializes");

    tracing::debug!(at = ?started.elapsed(), "cgroup created");
    let (ctl, ctl_child) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| sys::SysError::from_errno("socketpair", e.raw_os_error()))?;
    let cgroup_tasks: Vec<OwnedFd> = match &cg {
        Some(c) => c.self_move_fds()?,
        None => Vec::new(),
    };
    let pre = crate::spawner::PreExecOwned {
        ctl: ctl_child.as_raw_fd(),
        stdin: stdio[0],
        stdout: stdio[1],
        stderr: stdio[2],
        privileged: ids.privileged,
        uid: spec.uid,
        gid: spec.gid,
        last_cap: sys::cap_last_cap(),
        cgroup_tasks: cgroup_tasks.iter().map(|f| f.as_raw_fd()).collect(),
        ws_tree: host_ws
            .as_ref()
            .and_then(|w| w.tree.as_ref())
            .map_or(-1, |t| t.as_raw_fd()),
        flags: (libc::CLONE_NEWUSER
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS) as u64,
        cgroup: cg.as_ref().and_then(|c| c.clone_into_fd()),
    };
    let child = crate::spawner::clone_init(pre).map_err(SpawnError::from)?;
    // The child has its copy of the workspace mount; ours goes.
    drop((ctl_child, cgroup_tasks));
    let host_dir = host_ws.and_then(|w| w.opened);
    tracing::debug!(at = ?started.elapsed(), "cloned");

    let kill = |cg: &Option<Cgroup>| {
        let _ = sys::pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL);
        if let Some(c) = cg {
            c.kill_all();
        }
    };
    let mut places = Vec::new();
    let mut touches = None;
    let setup = (|| -> Result<(), JailError> {
        write_maps(child.pid, &spec, &ids)?;
        rustix::net::send(&ctl, &[GO], rustix::net::SendFlags::NOSIGNAL)
            .map_err(|e| sys::SysError::from_errno("send", e.raw_os_error()))?;
        rustix::net::send(&ctl, &config, rustix::net::SendFlags::NOSIGNAL)
            .map_err(|e| sys::SysError::from_errno("send", e.raw_os_error()))?;
        tracing::debug!(at = ?started.elapsed(), "config sent");
        if !spec.net.listeners.is_empty() {
            let fds = receive_listeners(&ctl, spec.net.listeners.len())?;
            listeners(fds).map_err(|reason| SpawnError::Network { reason })?;
            tracing::debug!(at = ?started.elapsed(), "network listeners handed over");
        }
        if live {
            let (p, t) = receive_places(&ctl)?;
            places = p;
            touches = t;
        }
        // The child moved itself into its v1 cgroups before reading "go"
        // (v2: clone3 placed it); init may start payloads.
        tracing::debug!(at = ?started.elapsed(), "init may start the payload");
        rustix::net::send(&ctl, &[PLACED], rustix::net::SendFlags::NOSIGNAL)
            .map_err(|e| sys::SysError::from_errno("send", e.raw_os_error()))?;
        Ok(())
    })();
    if let Err(e) = setup {
        // A send that failed because init already gave up: what init said
        // is waiting on the socket, and is the real reason.
        let e = pending_setup_error(&ctl).map_or(e, |m| SpawnError::Setup(m).into());
        kill(&cg);
        let _ = sys::wait4(child.pid, libc::__WALL);
        let mut cg = cg;
        if let Some(c) = cg.as_mut() {
            c.remove();
        }
        return Err(e);
    }
    Ok(Booted {
        spec,
        child,
        ctl,
        cg,
        support,
        ids,
        places,
        touches,
        host_ws: host_dir,
        started,
    })
}

/// A live sandbox's writable places (path, directory fd) and its canary
/// watch.
type Places = (Vec<(PathBuf, OwnedFd)>, Option<Touches>);

/// Receives a live sandbox's canary watch (if any) and its writable places.
fn receive_places(ctl: &OwnedFd) -> Result<Places, JailError> {
    let mut touches = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let msg = rustix::net::recvmsg(
            ctl,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut anc,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| sys::SysError::from_errno("recvmsg", e.raw_os_error()))?;
        let mut fds: Vec<OwnedFd> = anc
            .drain()
            .flat_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmRights(fds) => fds.collect(),
                _ => Vec::new(),
            })
            .collect();
        let body = &buf[..msg.bytes];
        if body.is_empty() {
            return Err(SpawnError::Setup("the sandbox exited during set-up".into()).into());
        }
        if let Some(failure) = pre_exec_failure(body) {
            return Err(SpawnError::Setup(failure).into());
        }
        match serde_json::from_slice::<Report>(body) {
            Ok(Report::Watches { paths }) if fds.len() == 1 => {
                touches = Some(Touches {
                    fd: fds.remove(0),
                    paths: paths.into_iter().map(|(wd, p)| (wd, p, 0)).collect(),
                });
            }
            Ok(Report::Places { paths }) if fds.len() == paths.len() => {
                let places = paths.into_iter().map(PathBuf::from).zip(fds).collect();
                return Ok((places, touches));
            }
            Ok(Report::SetupError { message, .. }) => return Err(SpawnError::Setup(message).into()),
            Ok(other) => {
                return Err(SpawnError::Setup(format!(
                    "unexpected report during set-up: {other:?}"
                ))
                .into())
            }
            Err(e) => {
                return Err(SpawnError::Setup(format!("malformed report from sandbox: {e}")).into())
            }
        }
    }
}

/// Run `spec` to completion in a fresh sandbox: boot it, start the
/// command as its one exec, relay its output (and terminal), and close it.
pub fn run(
    spec: &JailSpec,
    opts: &RunOptions,
    sink: &mut dyn OutputSink,
) -> Result<RunReport, JailError> {
    // With a terminal, its window size as it is now (init sets it on the
    // new pty before the payload starts; SIGWINCH copies later changes).
    let tty = (opts.stdin == StdinMode::Tty).then(caller_tty_size);
    // Pipes for the payload's stdio; all close-on-exec in the supervisor.
    let (out_r, out_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| sys::SysError::from_errno("pipe", e.raw_os_error()))?;
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| sys::SysError::from_errno("pipe", e.raw_os_error()))?;
    let devnull: OwnedFd = fs::File::open("/dev/null")
        .map_err(|e| sys::SysError {
            call: "open(/dev/null)",
            source: e,
        })?
        .into();
    // stdin: a pipe (or FIFO) is passed as it is; any other non-terminal
    // (a file, a directory, a socket, a device) is never handed over, since
    // an fd to a host object reaches outside the mount namespace (fstatat,
    // getdents, reopening through /proc/self/fd). The supervisor copies its
    // bytes into a fresh pipe instead. A terminal becomes /dev/null.
    let mut stdin_copy: Option<(OwnedFd, OwnedFd)> = None;
    let stdin_fd: RawFd = match opts.stdin {
        StdinMode::Inherit | StdinMode::InheritUnlessTty
            if opts.stdin == StdinMode::Inherit || !rustix::termios::isatty(std::io::stdin()) =>
        {
            let is_fifo = rustix::fs::fstat(std::io::stdin())
                .map(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo
                })
                .unwrap_or(false);
            if is_fifo {
                0
            } else {
                let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(|e| sys::SysError::from_errno("pipe", e.raw_os_error()))?;
                let fd = r.as_raw_fd();
                stdin_copy = Some((r, w));
                fd
            }
        }
        StdinMode::Pipe => {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| sys::SysError::from_errno("pipe", e.raw_os_error()))?;
            let fd = r.as_raw_fd();
            stdin_copy = Some((r, w));
            fd
        }
        _ => devnull.as_raw_fd(),
    };
    let booted = boot(
        spec,
        false,
        tty,
        [stdin_fd, out_w.as_raw_fd(), err_w.as_raw_fd()],
        &mut |fds| sink.network_listeners(fds),
    )?;
    drop((out_w, err_w, devnull));
    let stdin_writer = stdin_copy.map(|(r, w)| {
        drop(r);
        w
    });
    let Booted {
        spec,
        child,
        ctl,
        mut cg,
        support,
        ids,
        started,
        ..
    } = booted;
    let kill_sandbox = |cg: &Option<Cgroup>| {
        let _ = sys::pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL);
        if let Some(c) = cg {
            c.kill_all();
        }
    };
    // The one exec, with init's stdio (the pipes above) or the terminal.
    let plan = crate::proto::Request::Exec(crate::proto::ExecPlan {
        id: 0,
        argv: spec.argv.clone(),
        env: spec.env.clone(),
        cwd: spec.workspace_path.clone(),
        passed_stdio: false,
        tty: tty.is_some(),
    });
    let sent = rustix::net::send(
        &ctl,
        &serde_json::to_vec(&plan).expect("request serializes"),
        rustix::net::SendFlags::NOSIGNAL,
    );
    if let Err(e) = sent {
        let e: JailError = pending_setup_error(&ctl).map_or_else(
            || sys::SysError::from_errno("send", e.raw_os_error()).into(),
            |m| SpawnError::Setup(m).into(),
        );
        kill_sandbox(&cg);
        let _ = sys::wait4(child.pid, libc::__WALL);
        if let Some(c) = cg.as_mut() {
            c.remove();
        }
        return Err(e);
    }

    let mut forwarded: Vec<i32> = Vec::new();
    if opts.forward_signals {
        forwarded.extend_from_slice(SUPERVISOR_FORWARDED);
    }
    if tty.is_some() {
        forwarded.push(libc::SIGWINCH);
    }
    let signals = if forwarded.is_empty() {
        None
    } else {
        Some(SignalFd::new(&forwarded)?)
    };
    // The terminal relay (`StdinMode::Tty`): the master arrives from init.
    let mut pty = Pty::default();
    let mut last_interrupt: Option<Instant> = None;
    let mut interrupted = false;
    // Started after the signal mask is set, so the copier inherits it.
    if let Some(w) = stdin_writer {
        if opts.stdin == StdinMode::Pipe {
            sink.stdin_pipe(w);
        } else {
            copy_stdin_in_background(w);
        }
    }
    let deadline = started + spec.timeout;
    let mut stdout = Stream {
        fd: Some(out_r),
        stats: StreamStats::default(),
    };
    let mut stderr = Stream {
        fd: Some(err_r),
        stats: StreamStats::default(),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut ctl_open = true;
    let mut landlock: Option<LandlockReport> = None;
    let mut setup_error: Option<String> = None;
    let mut exec_error: Option<i32> = None;
    let mut payload_exit: Option<(i32, Vec<String>, bool, bool)> = None;
    let mut timed_out = false;
    let mut killed = false;
    let mut init_done: Option<(i32, libc::rusage)> = None;
    let mut touches: Option<Touches> = None;
    // What the sandbox's cgroup is: fixed for the run.
    let cgroup_report = cgroup_report(&cg, &support);

    loop {
        if init_done.is_none() {
            if let Some((_, st, ru)) = sys::wait4(child.pid, libc::WNOHANG | libc::__WALL)? {
                init_done = Some((st, ru));
            }
        }
        if init_done.is_some()
            && stdout.fd.is_none()
            && stderr.fd.is_none()
            && !ctl_open
            && pty.master.is_none()
        {
            break;
        }
        if init_done.is_some() && Instant::now() > deadline + Duration::from_secs(5) {
            break; // nothing can hold the pipes once init is gone; be safe anyway
        }
        let now = Instant::now();
        if now >= deadline && !timed_out && init_done.is_none() {
            timed_out = true;
            kill_sandbox(&cg);
        }
        if init_done.is_none() && !killed && !timed_out && sink.should_abort() {
            killed = true;
            kill_sandbox(&cg);
        }
        let wait = if init_done.is_none() && !timed_out {
            deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(250))
        } else {
            Duration::from_millis(100)
        };
        let ts = rustix::time::Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(6);
        let mut slots: Vec<u8> = Vec::with_capacity(6);
        if let Some(fd) = &stdout.fd {
            fds.push(PollFd::new(fd, PollFlags::IN));
            slots.push(0);
        }
        if let Some(fd) = &stderr.fd {
            fds.push(PollFd::new(fd, PollFlags::IN));
            slots.push(1);
        }
        if ctl_open {
            fds.push(PollFd::new(&ctl, PollFlags::IN));
            slots.push(2);
        }
        if init_done.is_none() {
            fds.push(PollFd::new(&child.pidfd, PollFlags::IN));
            slots.push(3);
        }
        if let Some(s) = &signals {
            fds.push(PollFd::new(&s.fd, PollFlags::IN));
            slots.push(4);
        }
        if let Some(t) = &touches {
            fds.push(PollFd::new(&t.fd, PollFlags::IN));
            slots.push(5);
        }
        if let Some(m) = &pty.master {
            let mut want = PollFlags::IN;
            if !pty.pending.is_empty() {
                want |= PollFlags::OUT;
            }
            fds.push(PollFd::new(m, want));
            slots.push(6);
            // Read more of the caller's input only once the last is written.
            if pty.input_open && pty.pending.is_empty() {
                fds.push(PollFd::new(&pty.input, PollFlags::IN));
                slots.push(7);
            }
        }
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(sys::SysError::from_errno("poll", e.raw_os_error()).into()),
        }
        let ready: Vec<(u8, PollFlags)> = fds
            .iter()
            .zip(&slots)
            .map(|(f, s)| (*s, f.revents()))
            .collect();
        drop(fds);
        for (slot, rev) in ready {
            if rev.is_empty() {
                continue;
            }
            match slot {
                0 => stdout.pump(spec.output_cap, &mut buf, &mut |d| sink.stdout(d)),
                1 => stderr.pump(spec.output_cap, &mut buf, &mut |d| sink.stderr(d)),
                2 => {
                    let mut space =
                        [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                    let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
                    let got = rustix::net::recvmsg(
                        &ctl,
                        &mut [std::io::IoSliceMut::new(&mut buf[..])],
                        &mut anc,
                        rustix::net::RecvFlags::DONTWAIT | rustix::net::RecvFlags::CMSG_CLOEXEC,
                    );
                    let mut passed: Option<OwnedFd> = anc.drain().find_map(|m| match m {
                        rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                        _ => None,
                    });
                    match got.map(|m| m.bytes) {
                        Ok(0) => ctl_open = false,
                        Ok(n) => {
                            let msg = &buf[..n];
                            if let Some(failure) = pre_exec_failure(msg) {
                                setup_error = Some(failure);
                            } else {
                                match serde_json::from_slice::<Report>(msg) {
                                    Ok(Report::Started {
                                        landlock: l,
                                        phases,
                                        ..
                                    }) => {
                                        tracing::debug!(at = ?started.elapsed(), ?phases, "payload ready");
                                        sink.started(&l, &cgroup_report, ids.host_uid);
                                        landlock = Some(l)
                                    }
                                    Ok(Report::SetupError { message, .. }) => {
                                        setup_error = Some(message)
                                    }
                                    Ok(Report::ExecError { errno, path, .. }) => {
                                        exec_error = Some(errno);
                                        setup_error.get_or_insert(format!(
                                            "{path}: {}",
                                            std::io::Error::from_raw_os_error(errno)
                                        ));
                                    }
                                    Ok(Report::Event { event }) => sink.event(event),
                                    Ok(Report::Pty) => match passed.take() {
                                        Some(fd) if tty.is_some() => pty.attach(fd),
                                        _ => {
                                            setup_error = Some(
                                                "unexpected terminal report from sandbox".into(),
                                            )
                                        }
                                    },
                                    Ok(Report::Watches { paths }) => {
                                        if let Some(fd) = passed.take() {
                                            touches = Some(Touches {
                                                fd,
                                                paths: paths
                                                    .into_iter()
                                                    .map(|(wd, p)| (wd, p, 0))
                                                    .collect(),
                                            });
                                        }
                                    }
                                    Ok(Report::CopyOut { path, size }) => match passed.take() {
                                        Some(fd) => sink.copy_out(&path, size, fs::File::from(fd)),
                                        None => sink.copy_out_refused(
                                            &path,
                                            "the sandbox sent no file descriptor",
                                        ),
                                    },
                                    Ok(Report::CopyOutRefused { path, reason }) => {
                                        sink.copy_out_refused(&path, &reason)
                                    }
                                    Ok(Report::Exited {
                                        status,
                                        full,
                                        nofile,
                                        memory,
                                        ..
                                    }) => {
                                        payload_exit = Some((status, full, nofile, memory));
                                        // The run is over: init kills what
                                        // is left, copies out, and exits.
                                        let close =
                                            serde_json::to_vec(&crate::proto::Request::Close)
                                                .expect("request serializes");
                                        let _ = rustix::net::send(
                                            &ctl,
                                            &close,
                                            rustix::net::SendFlags::NOSIGNAL,
                                        );
                                    }
                                    Ok(Report::Closed) => {}
                                    Ok(
                                        Report::Places { .. }
                                        | Report::ResetDone { .. }
                                        | Report::CheckpointDone { .. },
                                    ) => {
                                        setup_error = Some("unexpected live-sandbox report".into())
                                    }
                                    Ok(Report::Listeners { .. }) => {
                                        setup_error =
                                            Some("unexpected second listener report".into())
                                    }
                                    Err(e) => {
                                        setup_error =
                                            Some(format!("malformed report from sandbox: {e}"))
                                    }
                                }
                            }
                        }
                        // ECONNRESET: init exited with a message of ours
                        // unread (say "placed", after a set-up failure).
                        // The kernel reports it once, before the messages
                        // init sent, which the next reads return.
                        Err(rustix::io::Errno::AGAIN)
                        | Err(rustix::io::Errno::INTR)
                        | Err(rustix::io::Errno::CONNRESET) => {}
                        Err(_) => ctl_open = false,
                    }
                    drop(passed);
                }
                3 => {} // init exited; reaped at the top of the loop
                6 => pty.pump(rev, spec.output_cap, &mut stdout.stats, &mut buf, sink),
                7 => pty.read_input(),
                5 => {
                    if let Some(t) = touches.as_mut() {
                        t.drain(sink);
                    }
                }
                4 => {
                    while let Some(sig) = signals.as_ref().and_then(SignalFd::next) {
                        if sig == libc::SIGWINCH {
                            pty.resize();
                        } else if init_done.is_none() && !killed {
                            if sig == libc::SIGQUIT {
                                killed = true;
                                kill_sandbox(&cg);
                            } else if sig == libc::SIGINT
                                && last_interrupt.is_some_and(|t| t.elapsed() < INTERRUPT_WINDOW)
                            {
                                // A second Ctrl-C in time: the payload may
                                // ignore SIGINT; the sandbox goes.
                                interrupted = true;
                                killed = true;
                                kill_sandbox(&cg);
                                sink.notice(Notice::InterruptKilled);
                            } else {
                                let _ = sys::pidfd_send_signal(child.pidfd.as_fd(), sig);
                                if sig == libc::SIGINT {
                                    last_interrupt = Some(Instant::now());
                                    sink.notice(Notice::InterruptForwarded {
                                        window: INTERRUPT_WINDOW,
                                    });
                                }
                            }
                        }
                    }
                }
                _ => unreachable!(),
            }
        }
    }
    drop(signals);
    // The caller's terminal mode comes back before anything is printed.
    drop(pty);
    if let Some(t) = touches.take() {
        t.finish(sink);
    }
    let (init_status, ru) = match init_done {
        Some(d) => d,
        None => {
            kill_sandbox(&cg);
            let (_, st, ru) =
                sys::wait4(child.pid, libc::__WALL)?.expect("blocking wait returns a child");
            (st, ru)
        }
    };
    let wall = started.elapsed();
    tracing::debug!(at = ?wall, "init reaped");

    let stats = cg.as_ref().map(|c| c.stats()).unwrap_or_default();
    if let Some(c) = cg.as_mut() {
        c.remove();
    }

    let mut limits = Vec::new();
    let mut full_mounts = Vec::new();
    let reason = if timed_out {
        ExitReason::Timeout
    } else if interrupted {
        ExitReason::Interrupted
    } else if let Some(errno) = exec_error {
        ExitReason::ExecFailed { errno }
    } else if let Some((status, full, nofile, memory)) = payload_exit {
        full_mounts = full;
        if nofile {
            limits.push(LimitHit::Nofile);
        }
        if memory {
            // RLIMIT_AS fallback: allocations failed (ENOMEM), no kill.
            limits.push(LimitHit::Memory);
        }
        match decode_status(status) {
            ExitReason::Signal { signal } if signal == libc::SIGKILL && stats.oom_killed => {
                ExitReason::Memory
            }
            r => r,
        }
    } else if stats.oom_killed {
        ExitReason::Memory
    } else if killed {
        ExitReason::Killed
    } else if let Some(msg) = setup_error {
        return Err(SpawnError::Setup(msg).into());
    } else {
        return Err(SpawnError::InitDied(init_status).into());
    };
    if timed_out {
        limits.push(LimitHit::Timeout);
    }
    if stats.oom_killed {
        limits.push(LimitHit::Memory);
    }
    if stats.pids_max_hit {
        limits.push(LimitHit::Pids);
    }
    if stats.cpu_throttled {
        limits.push(LimitHit::Cpu);
    }
    if stdout.stats.dropped > 0 || stderr.stats.dropped > 0 {
        limits.push(LimitHit::Output);
    }
    if !full_mounts.is_empty() {
        limits.push(LimitHit::Disk);
    }
    if reason
        == (ExitReason::Signal {
            signal: libc::SIGXFSZ,
        })
    {
        limits.push(LimitHit::Fsize);
    }
    limits.sort();
    limits.dedup();
    tracing::debug!(at = ?started.elapsed(), "cgroup removed");
    Ok(RunReport {
        exit_code: reason.exit_code(),
        reason,
        wall,
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
        peak_memory: stats.peak_memory.or(Some(ru.ru_maxrss as u64 * 1024)),
        limits_hit: limits,
        full_mounts,
        stdout: stdout.stats,
        stderr: stderr.stats,
        landlock,
        cgroup: cgroup_report,
        host_uid: ids.host_uid,
    })
}
