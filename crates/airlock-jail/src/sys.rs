//! Small safe wrappers over the raw syscalls that rustix does not cover.
//!
//! Each wrapper maps a failure to `SysError`, which names the syscall, so an
//! error message always says which call failed. Every `unsafe` block of the
//! crate that calls into libc directly lives here or in `spawn.rs`/`init.rs`,
//! with a `// SAFETY:` line naming the invariant it relies on.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A failed syscall: its name and errno.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed: {source}")]
pub struct SysError {
    /// The syscall (or libc function) that failed.
    pub call: &'static str,
    /// The errno it returned.
    #[source]
    pub source: io::Error,
}

impl SysError {
    pub(crate) fn last(call: &'static str) -> Self {
        SysError {
            call,
            source: io::Error::last_os_error(),
        }
    }

    pub(crate) fn from_errno(call: &'static str, errno: i32) -> Self {
        SysError {
            call,
            source: io::Error::from_raw_os_error(errno),
        }
    }

    /// The raw errno, when there is one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

pub(crate) type SysResult<T> = Result<T, SysError>;

fn check(call: &'static str, ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 {
        Err(SysError::last(call))
    } else {
        Ok(ret)
    }
}

/// `clone3` flags and arguments for the sandbox's first process.
#[derive(Debug)]
pub(crate) struct CloneArgs {
    pub(crate) flags: u64,
    /// A cgroup v2 directory fd for `CLONE_INTO_CGROUP`.
    pub(crate) cgroup: Option<RawFd>,
}

/// The result of `clone3` in the parent.
#[derive(Debug)]
pub(crate) struct Cloned {
    pub(crate) pid: libc::pid_t,
    pub(crate) pidfd: OwnedFd,
}

/// Which side of a fork we are on.
#[derive(Debug)]
pub(crate) enum Forked<T> {
    Parent(T),
    Child,
}

/// `clone3(2)` with `CLONE_PIDFD`, returning in both the parent and the child
/// like `fork`.
///
/// # Safety
///
/// The caller must guarantee that the child only performs
/// async-signal-safe operations until it calls `execve` or `_exit`: the
/// parent may be multi-threaded, and the child is a copy of one thread whose
/// locks (malloc's, stdio's) may be held by threads that do not exist in it.
pub(crate) unsafe fn clone3(args: &CloneArgs) -> SysResult<Forked<Cloned>> {
    let mut pidfd: libc::c_int = -1;
    let mut cl = CloneArgsRaw {
        flags: args.flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: 0,
    };
    if let Some(fd) = args.cgroup {
        cl.flags |= CLONE_INTO_CGROUP;
        cl.cgroup = fd as u64;
    }
    // SAFETY: `cl` is a fully initialised clone_args of the size we pass, it
    // outlives the call, and `pidfd` points at a live c_int; with a zero
    // stack the child continues on a copy of this stack, like fork.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut cl as *mut CloneArgsRaw,
            std::mem::size_of::<CloneArgsRaw>(),
        )
    };
    let pid = check("clone3", ret)?;
    if pid == 0 {
        return Ok(Forked::Child);
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a fresh pidfd that nothing
    // else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Forked::Parent(Cloned {
        pid: pid as libc::pid_t,
        pidfd,
    }))
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

#[repr(C)]
struct CloneArgsRaw {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `fork(2)` from a single-threaded process.
///
/// # Safety
///
/// The calling process must be single-threaded (airlock's init is), so the
/// child may allocate and take locks freely.
pub(crate) unsafe fn fork() -> SysResult<Forked<libc::pid_t>> {
    // SAFETY: see the function's contract: the caller is single-threaded.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError::last("fork"));
    }
    if pid == 0 {
        Ok(Forked::Child)
    } else {
        Ok(Forked::Parent(pid))
    }
}

/// `pidfd_send_signal(2)`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> SysResult<()> {
    // SAFETY: the fd is a live pidfd borrowed for the call; a null siginfo is allowed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check("pidfd_send_signal", ret).map(drop)
}

/// Async-signal-safe `write` of a whole buffer (used between clone and exec).
pub(crate) fn write_all_raw(fd: RawFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: `buf` is a live slice; write reads at most buf.len() bytes from it.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            // SAFETY: reading errno is async-signal-safe.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Terminate the calling process immediately, without running destructors
/// or atexit handlers (the only correct exit in a forked child).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// The errno of the last failed call, async-signal-safe.
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// `prctl(PR_SET_PDEATHSIG, sig)`.
pub(crate) fn set_parent_death_signal(sig: i32) -> SysResult<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and no pointers.
    let ret = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    check("prctl(PR_SET_PDEATHSIG)", ret as libc::c_long).map(drop)
}

/// `prctl(PR_SET_DUMPABLE, 0)`: no ptrace, no /proc/PID/mem, files in
/// /proc/PID owned by root.
pub(crate) fn set_non_dumpable() -> SysResult<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer and no pointers.
    let ret = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    check("prctl(PR_SET_DUMPABLE)", ret as libc::c_long).map(drop)
}

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`: orphaned descendants re-parent to
/// the caller instead of to pid 1.
pub(crate) fn set_child_subreaper() -> SysResult<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer and no pointers.
    let ret = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    check("prctl(PR_SET_CHILD_SUBREAPER)", ret as libc::c_long).map(drop)
}

/// The calling thread's filesystem uid and gid, set for a while (see
/// [`as_fs_ids`]); the old ones come back on drop.
#[derive(Debug)]
pub(crate) struct FsIds {
    old_uid: u32,
    old_gid: u32,
}

/// Makes the calling thread (only it: fsuid is per thread) create and
/// open files as `uid`/`gid`, with those ids' permissions, until the guard
/// drops.
pub(crate) fn as_fs_ids(uid: u32, gid: u32) -> FsIds {
    // SAFETY: setfsgid/setfsuid take an id and return the previous one;
    // they change only the calling thread's filesystem credentials. The
    // gid goes first, while the thread still has CAP_SETGID.
    let old_gid = unsafe { libc::setfsgid(gid) } as u32;
    // SAFETY: as above.
    let old_uid = unsafe { libc::setfsuid(uid) } as u32;
    FsIds { old_uid, old_gid }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        // SAFETY: as in `as_fs_ids`; the uid comes back first, which
        // restores the capabilities needed to set the gid back.
        unsafe {
            libc::setfsuid(self.old_uid);
            libc::setfsgid(self.old_gid);
        }
    }
}

/// Blocks every signal in the calling thread. airlock's helper threads
/// (the spawner, the closer, a live sandbox's readers) call it first, so
/// that a signal sent to the process reaches the thread that waits for it
/// (a run's signalfd) instead of one of them taking the default action.
pub(crate) fn block_all_signals() {
    // SAFETY: sigset_t is plain data that sigfillset initialises; the mask
    // change affects only the calling thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
pub(crate) fn set_no_new_privs() -> SysResult<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers and no pointers.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check("prctl(PR_SET_NO_NEW_PRIVS)", ret as libc::c_long).map(drop)
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)`, async-signal-safe.
pub(crate) fn ambient_raise_raw(cap: u32) -> bool {
    // SAFETY: integer-only prctl.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap as libc::c_ulong,
            0,
            0,
        ) == 0
    }
}

/// Highest capability number the kernel knows (from /proc/sys/kernel/cap_last_cap).
pub(crate) fn cap_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `capset(2)` for the calling thread with 64-bit masks, async-signal-safe.
pub(crate) fn capset_raw(effective: u64, permitted: u64, inheritable: u64) -> bool {
    let mut hdr = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: hdr and data are live, correctly laid out for capability
    // version 3 (two data elements), and outlive the call.
    unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) == 0 }
}

/// `setresuid`/`setresgid` via raw syscalls, so they affect only this thread
/// and are async-signal-safe (glibc's wrappers broadcast to all threads).
pub(crate) fn set_ids_raw(uid: u32, gid: u32) -> Result<(), (&'static str, i32)> {
    // SAFETY: integer-only syscalls.
    if unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) } != 0 {
        return Err(("setresgid", errno()));
    }
    // SAFETY: integer-only syscalls.
    if unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) } != 0 {
        return Err(("setresuid", errno()));
    }
    Ok(())
}

/// `setgroups(0, NULL)`: drop every supplementary group.
pub(crate) fn clear_groups_raw() -> Result<(), i32> {
    // SAFETY: a zero-length list with a null pointer is the documented way to clear.
    if unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// `close_range(first, ~0, 0)`.
pub(crate) fn close_from_raw(first: u32) {
    // SAFETY: integer-only syscall; closing fds we do not use is the intent.
    unsafe {
        libc::syscall(libc::SYS_close_range, first, u32::MAX, 0);
    }
}

/// `dup2`, async-signal-safe.
pub(crate) fn dup2_raw(from: RawFd, to: RawFd) -> bool {
    if from == to {
        // dup2 onto itself would keep FD_CLOEXEC; clear it instead.
        // SAFETY: integer-only fcntl.
        return unsafe { libc::fcntl(from, libc::F_SETFD, 0) } == 0;
    }
    // SAFETY: integer-only syscall.
    unsafe { libc::dup2(from, to) >= 0 }
}

/// `execve`, async-signal-safe: returns only on failure, with errno.
pub(crate) fn execve_raw(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> i32 {
    // SAFETY: `path` is NUL-terminated; `argv`/`envp` are NULL-terminated
    // arrays of pointers to NUL-terminated strings that outlive the call
    // (the caller built them before forking).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    errno()
}

/// `read` that retries on EINTR, async-signal-safe. Returns bytes read (0 = EOF).
pub(crate) fn read_raw(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    loop {
        // SAFETY: `buf` is a live, writable slice of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// `unshare(2)`.
pub(crate) fn unshare(flags: i32) -> SysResult<()> {
    // SAFETY: integer-only syscall.
    let ret = unsafe { libc::unshare(flags) };
    check("unshare", ret as libc::c_long).map(drop)
}

/// `sethostname(2)`.
pub(crate) fn sethostname(name: &str) -> SysResult<()> {
    // SAFETY: the pointer and length describe a live byte slice.
    let ret = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    check("sethostname", ret as libc::c_long).map(drop)
}

/// Bring the loopback interface up in the current network namespace.
pub(crate) fn loopback_up() -> SysResult<()> {
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .map_err(|e| SysError::from_errno("socket(AF_INET)", e.raw_os_error()))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a live ifreq with a NUL-terminated name; SIOCGIFFLAGS writes only into it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(SysError::last("ioctl(SIOCGIFFLAGS, lo)"));
    }
    // SAFETY: after SIOCGIFFLAGS the flags member of the union is the active one.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: `req` is a live ifreq; SIOCSIFFLAGS only reads it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(SysError::last("ioctl(SIOCSIFFLAGS, lo)"));
    }
    Ok(())
}

/// `pivot_root(2)`.
pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult<()> {
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check("pivot_root", ret).map(drop)
}

/// Wait for a child, returning its wait status and resource usage.
pub(crate) fn wait4(
    pid: libc::pid_t,
    flags: i32,
) -> SysResult<Option<(libc::pid_t, i32, libc::rusage)>> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and ru are live and writable for the call.
        let ret = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if ret < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(SysError::last("wait4"));
        }
        if ret == 0 {
            return Ok(None);
        }
        return Ok(Some((ret, status, ru)));
    }
}

/// `kill(2)`; ESRCH is not an error.
pub(crate) fn kill(pid: libc::pid_t, sig: i32) {
    // SAFETY: integer-only syscall.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Four random bytes from the kernel (`getrandom(2)`); 0 when it fails,
/// which only makes a search start at the beginning.
pub(crate) fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: the pointer and length describe the live 4-byte buffer `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        0
    }
}

/// Try to take an open-file-description write lock on the one byte at
/// `offset` of `fd` (`F_OFD_SETLK`): `Ok(false)` when another description
/// holds it.
pub(crate) fn ofd_try_lock_byte(fd: RawFd, offset: u64) -> io::Result<bool> {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = offset as libc::off_t;
    fl.l_len = 1;
    // l_pid must be 0 for OFD locks (zeroed above).
    // SAFETY: `fl` is a live, initialised flock that the call only reads.
    if unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &fl) } == 0 {
        return Ok(true);
    }
    match errno() {
        libc::EAGAIN | libc::EACCES => Ok(false),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub(crate) const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `mount_setattr(dirfd, path, flags | AT_RECURSIVE, {attrs, userns})`: set
/// attributes on a mount and every mount below it; with `userns`, also
/// `MOUNT_ATTR_IDMAP` with that user namespace's mapping (only on a
/// detached mount that is not idmapped yet). An empty `path` means `dirfd`
/// itself.
pub(crate) fn mount_setattr(
    dirfd: RawFd,
    path: &CStr,
    attrs: u64,
    userns: Option<BorrowedFd<'_>>,
) -> SysResult<()> {
    let mut a = MountAttr {
        attr_set: attrs | userns.map_or(0, |_| MOUNT_ATTR_IDMAP),
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_RECURSIVE | libc::AT_SYMLINK_NOFOLLOW;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH;
    }
    // SAFETY: `path` is NUL-terminated, `a` is a live mount_attr of the
    // size passed, and the borrowed userns fd stays open for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &mut a as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check("mount_setattr", ret).map(drop)
}

/// A user namespace that maps one uid and one gid (`inside` -> `host`),
/// made only to describe an idmapped mount: a child is cloned into a new
/// user namespace and waits, its maps are written, its namespace is opened,
/// and it is killed. Returns the namespace's fd.
///
/// The child holds no fd of its own to wait on: in a multi-threaded
/// supervisor, concurrent clones inherit each other's fds, so a child that
/// waited for EOF on a pipe could be kept alive by another's copy. It
/// sleeps until SIGKILL instead (also sent by the kernel if the cloning
/// thread dies first).
pub(crate) fn mapping_userns(
    uid_inside: u32,
    uid_host: u32,
    gid_inside: u32,
    gid_host: u32,
) -> SysResult<OwnedFd> {
    let args = CloneArgs {
        flags: libc::CLONE_NEWUSER as u64,
        cgroup: None,
    };
    // SAFETY: the child only calls prctl(2), pause(2) and _exit(2), all
    // async-signal-safe.
    let child = match unsafe { clone3(&args) }? {
        Forked::Child => {
            if set_parent_death_signal(libc::SIGKILL).is_err() {
                exit_now(1);
            }
            loop {
                // SAFETY: pause takes no arguments and only waits for a signal.
                unsafe { libc::pause() };
            }
        }
        Forked::Parent(c) => c,
    };
    let result = (|| {
        let base = format!("/proc/{}", child.pid);
        let write = |file: &'static str, text: String| {
            std::fs::write(format!("{base}/{file}"), text)
                .map_err(|source| SysError { call: file, source })
        };
        write("uid_map", format!("{uid_inside} {uid_host} 1\n"))?;
        write("setgroups", "deny".into())?;
        write("gid_map", format!("{gid_inside} {gid_host} 1\n"))?;
        std::fs::File::open(format!("{base}/ns/user"))
            .map(OwnedFd::from)
            .map_err(|source| SysError {
                call: "open(/proc/PID/ns/user)",
                source,
            })
    })();
    let _ = pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL);
    let _ = wait4(child.pid, libc::__WALL);
    result
}

/// Unshare the time namespace for this process's future children and set
/// its monotonic and boot-time clocks to start near zero, so that uptime
/// and the host's boot time stay hidden. `Ok(false)` when the kernel has no
/// time namespaces (built without CONFIG_TIME_NS, or older than 5.6).
pub(crate) fn unshare_time_from_zero() -> SysResult<bool> {
    // SAFETY: integer-only syscall.
    if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0 {
        return match errno() {
            libc::EINVAL => Ok(false),
            _ => Err(SysError::last("unshare(CLONE_NEWTIME)")),
        };
    }
    let secs = |clock| rustix::time::clock_gettime(clock).tv_sec.max(0);
    let mono = secs(rustix::time::ClockId::Monotonic);
    let boot = rustix::time::clock_gettime_dynamic(rustix::time::DynamicClockId::Boottime)
        .map(|t| t.tv_sec.max(0))
        .unwrap_or(mono);
    // Offsets apply to the new namespace (time_for_children) until its
    // first process enters; the clocks then read a second or less.
    std::fs::write(
        "/proc/self/timens_offsets",
        format!("monotonic -{mono} 0\nboottime -{boot} 0\n"),
    )
    .map_err(|source| SysError {
        call: "write(/proc/self/timens_offsets)",
        source,
    })?;
    Ok(true)
}
