//! Exit and exec watch: a seccomp user-notification filter on `exit_group`
//! (always) and on `execve`/`execveat` (when the spec asks for exec
//! telemetry), served by init.
//!
//! * exit: init sees every sandbox process just before it exits, while its
//!   fds are still open. A process that exits holding as many fds as
//!   RLIMIT_NOFILE allows has hit the fd limit; init reports that as the
//!   `nofile` limit. The kernel records no EMFILE event, and once a process
//!   is a zombie its fd table is gone, so this is the one place where the
//!   fact is visible. With the RLIMIT_AS fallback for memory (no memory
//!   cgroup), init also reads the process's peak address space (VmPeak in
//!   `/proc/PID/status`): the kernel answers an allocation past RLIMIT_AS
//!   with ENOMEM, not a signal, so a peak near the limit at exit is the
//!   evidence that the limit was reached (see [`near_limit`]).
//! * exec: the calling process is stopped at the syscall's entry; init
//!   reads the path and argv from its memory (`/proc/PID/mem`), its parent
//!   from `/proc/PID/stat`, and for `execveat(fd, "", AT_EMPTY_PATH)` (an
//!   exec from an fd, e.g. a deleted file or a memfd) the fd's link. This is
//!   telemetry, not enforcement: another thread of a multi-threaded caller
//!   could rewrite the strings between init's read and the kernel's, so the
//!   record is what the caller asked for at the time it stopped.
//!
//! Every notification is answered with SECCOMP_USER_NOTIF_FLAG_CONTINUE:
//! the call proceeds unchanged. seccompiler has no user-notification
//! action, so this small filter is built by hand.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

use crate::report::JailEvent;

/// Most argv entries and bytes per string recorded per exec.
const MAX_ARGS: usize = 64;
const MAX_STR: usize = 4096;

/// Install the filter (with `exec`, also on execve/execveat) in the calling thread (no_new_privs must be set) and
/// return the listener fd.
pub(crate) fn install(exec: bool) -> Result<OwnedFd, i32> {
    #[cfg(target_arch = "x86_64")]
    {
        const BPF_LD_W_ABS: u16 = 0x20;
        const BPF_JMP_JEQ_K: u16 = 0x15;
        const BPF_RET_K: u16 = 0x06;
        const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
        const SECCOMP_RET_USER_NOTIF: u32 = 0x7FC0_0000;
        let notif = libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_USER_NOTIF,
        };
        let allow = libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        };
        let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: BPF_JMP_JEQ_K,
            jt,
            jf,
            k,
        };
        let load = |k: u32| libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k,
        };
        let mut prog: Vec<libc::sock_filter> = if exec {
            vec![
                load(4),                      // seccomp_data.arch
                jeq(AUDIT_ARCH_X86_64, 0, 4), // foreign: the main filter kills it
                load(0),                      // seccomp_data.nr
                jeq(libc::SYS_exit_group as u32, 3, 0),
                jeq(libc::SYS_execve as u32, 2, 0),
                jeq(libc::SYS_execveat as u32, 1, 0),
                allow,
                notif,
            ]
        } else {
            vec![
                load(4),
                jeq(AUDIT_ARCH_X86_64, 0, 3),
                load(0),
                jeq(libc::SYS_exit_group as u32, 0, 1),
                notif,
                allow,
            ]
        };
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: `fprog` points at `prog`, a live array of `len`
        // instructions; the kernel copies the program during the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &fprog as *const libc::sock_fprog,
            )
        };
        if fd < 0 {
            return Err(crate::sys::errno());
        }
        // SAFETY: NEW_LISTENER returned a fresh fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Err(libc::ENOSYS)
    }
}

/// What one notification said.
#[derive(Debug)]
pub(crate) enum Notice {
    /// A process is exiting.
    Exit {
        /// Its open fds (when readable).
        fds: Option<usize>,
        /// Its peak address space in bytes (VmPeak, when readable).
        vm_peak: Option<u64>,
    },
    /// A process is executing a program.
    Exec(JailEvent),
    /// Nothing usable (the process died meanwhile, or EINTR).
    Nothing,
}

/// Answer one pending notification, after reading what it is about (the
/// peak address space of an exiting process only when `want_vm_peak`).
pub(crate) fn serve_one(listener: &OwnedFd, want_vm_peak: bool) -> Notice {
    // SAFETY: seccomp_notif is plain data; all-zero is what RECV expects.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: `notif` is a live, zeroed seccomp_notif that RECV fills.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut notif as *mut libc::seccomp_notif,
        )
    };
    if r < 0 {
        return Notice::Nothing; // ENOENT: the process died meanwhile; EINTR: try later
    }
    let pid = notif.pid as i32;
    let nr = i64::from(notif.data.nr);
    let notice = if nr == libc::SYS_exit_group {
        // The process is stopped in exit_group: its fd table and its
        // memory map are intact.
        Notice::Exit {
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
                .ok()
                .map(|rd| rd.count()),
            vm_peak: want_vm_peak
                .then(|| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
                .flatten()
                .and_then(|s| vm_peak(&s)),
        }
    } else {
        Notice::Exec(read_exec(pid, nr, &notif.data.args))
    };
    // The pid may have died and been reused while we read: only a still
    // valid notification describes the process we read.
    let mut id = notif.id;
    // SAFETY: `id` is a live u64, which ID_VALID reads.
    let valid = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &mut id as *mut u64,
        )
    } == 0;
    let resp = libc::seccomp_notif_resp {
        id: notif.id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: `resp` is a live seccomp_notif_resp for the id just received.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &resp as *const libc::seccomp_notif_resp,
        )
    };
    if valid {
        notice
    } else {
        Notice::Nothing
    }
}

/// VmPeak of a `/proc/PID/status` text, in bytes.
fn vm_peak(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmPeak:"))?;
    let kib: u64 = line["VmPeak:".len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Whether a peak address space of `peak` bytes means the process reached
/// an RLIMIT_AS of `limit` bytes: within an eighth of it (at least 1 MiB).
/// An allocation that fails leaves the peak below the limit by at most the
/// size of that allocation, so a program that grows in steps (a list of
/// strings, a growing buffer, a process that maps more and more) ends here;
/// one single allocation larger than what is left does not, and a program
/// that stays this close to the limit without failing is counted too.
pub(crate) fn near_limit(peak: u64, limit: u64) -> bool {
    let margin = (limit / 8).max(1 << 20);
    peak.saturating_add(margin) >= limit
}

/// Reads a NUL-terminated string at `addr` in the stopped process, in
/// chunks that never cross a page (a read across into an unmapped page
/// fails as a whole). `None` when unreadable; the flag says "cut at MAX_STR".
/// Another process's memory: `/proc/PID/mem`, or, when that file is not
/// ours to open (a process that is still non-dumpable at its first execve
/// has a root-owned `/proc/PID/mem`), `process_vm_readv`, which init's
/// CAP_SYS_PTRACE allows.
enum Mem {
    File(std::fs::File),
    Vm(i32),
}

impl Mem {
    fn open(pid: i32) -> std::io::Result<Mem> {
        match std::fs::File::open(format!("/proc/{pid}/mem")) {
            Ok(f) => Ok(Mem::File(f)),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                // Probe: a read of nothing tells whether we may.
                let m = Mem::Vm(pid);
                let mut b = [0u8; 0];
                m.read_at(&mut b, 0).map(|_| m)
            }
            Err(e) => Err(e),
        }
    }

    fn read_at(&self, buf: &mut [u8], addr: u64) -> std::io::Result<usize> {
        match self {
            Mem::File(f) => f.read_at(buf, addr),
            Mem::Vm(pid) => {
                let local = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                };
                let remote = libc::iovec {
                    iov_base: addr as *mut libc::c_void,
                    iov_len: buf.len(),
                };
                // SAFETY: `local` describes `buf`, which is live and writable
                // for its length; `remote` is only read by the kernel, from
                // the other process, with its own checks.
                let n = unsafe { libc::process_vm_readv(*pid, &local, 1, &remote, 1, 0) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }
        }
    }

    fn read_exact_at(&self, mut buf: &mut [u8], mut addr: u64) -> std::io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, addr)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf = &mut buf[n..];
            addr += n as u64;
        }
        Ok(())
    }
}

fn read_cstr(mem: &Mem, mut addr: u64) -> Option<(String, bool)> {
    let mut out = Vec::new();
    while out.len() < MAX_STR {
        let page_left = 4096 - (addr % 4096) as usize;
        let mut buf = vec![0u8; page_left.min(256).min(MAX_STR - out.len())];
        let n = mem.read_at(&mut buf, addr).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some((String::from_utf8_lossy(&out).into_owned(), false));
        }
        out.extend_from_slice(&buf[..n]);
        addr += n as u64;
    }
    Some((String::from_utf8_lossy(&out).into_owned(), true))
}

fn read_ptr(mem: &Mem, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    mem.read_exact_at(&mut b, addr).ok()?;
    Some(u64::from_ne_bytes(b))
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

fn link(path: String) -> Option<String> {
    std::fs::read_link(path)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// N when `path` is an fd link of the calling process: /proc/self/fd/N,
/// /proc/thread-self/fd/N, /proc/PID/fd/N or /dev/fd/N.
fn fd_link(path: &str) -> Option<u32> {
    let rest = path.strip_prefix("/dev/fd/").or_else(|| {
        let p = path.strip_prefix("/proc/")?;
        let (_who, r) = p.split_once('/')?;
        r.strip_prefix("fd/")
    })?;
    rest.parse().ok()
}

fn read_exec(pid: i32, nr: i64, args: &[u64; 6]) -> JailEvent {
    let ppid = parent_of(pid);
    let mem = Mem::open(pid);
    let (path_arg, argv_arg, dirfd) = if nr == libc::SYS_execveat {
        (args[1], args[2], Some(args[0] as i32))
    } else {
        (args[0], args[1], None)
    };
    let mut truncated = false;
    let mut argv = Vec::new();
    let mut path = String::new();
    match &mem {
        Ok(mem) => {
            if let Some((p, cut)) = read_cstr(mem, path_arg) {
                path = p;
                truncated |= cut;
            }
            if argv_arg != 0 {
                for i in 0..=MAX_ARGS as u64 {
                    let Some(ptr) = read_ptr(mem, argv_arg + 8 * i) else {
                        break;
                    };
                    if ptr == 0 {
                        break;
                    }
                    if i as usize == MAX_ARGS {
                        truncated = true;
                        break;
                    }
                    match read_cstr(mem, ptr) {
                        Some((a, cut)) => {
                            truncated |= cut;
                            argv.push(a);
                        }
                        None => break,
                    }
                }
            }
        }
        Err(e) => path = format!("<unreadable: {e}>"),
    }
    // Make the path absolute where the kernel would resolve it relative to
    // a directory: execveat's fd (or AT_FDCWD), or the cwd for execve.
    let base = match dirfd {
        Some(fd) if fd != libc::AT_FDCWD => link(format!("/proc/{pid}/fd/{fd}")),
        _ => link(format!("/proc/{pid}/cwd")),
    };
    let mut from_fd = false;
    if path.is_empty() && mem.is_ok() {
        // execveat(fd, "", AT_EMPTY_PATH): the program is the fd itself
        // (e.g. "/tmp/x (deleted)" or "/memfd:name (deleted)").
        path = base.unwrap_or_default();
        from_fd = true;
    } else if !path.starts_with('/') && !path.starts_with('<') {
        if let Some(b) = base {
            path = format!("{}/{path}", b.trim_end_matches('/'));
        }
    }
    // An exec through an fd link (/proc/self/fd/N, /dev/fd/N): name what
    // the fd is, as seen from the caller.
    if let Some(fd) = fd_link(&path) {
        if let Some(target) = link(format!("/proc/{pid}/fd/{fd}")) {
            path = target;
            from_fd = true;
        }
    }
    // Whether there is a file to run at all (a shell's PATH search tries
    // missing candidates): a missing one is an attempt, not an exec. init
    // shares the caller's root (the sandbox denies chroot and mounts).
    let exists = from_fd || std::fs::metadata(&path).is_ok();
    JailEvent::Exec {
        pid,
        ppid,
        path,
        argv,
        truncated,
        exists,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_peak() {
        let status = "Name:\tpython3\nVmPeak:\t   65400 kB\nVmSize:\t   1000 kB\n";
        assert_eq!(vm_peak(status), Some(65400 * 1024));
        assert_eq!(vm_peak("Name:\tx\n"), None);
        assert_eq!(vm_peak("VmPeak:\tlots kB\n"), None);
    }

    #[test]
    fn near_limit_is_within_an_eighth() {
        let mib = 1u64 << 20;
        assert!(near_limit(63 * mib, 64 * mib));
        assert!(near_limit(56 * mib, 64 * mib));
        assert!(!near_limit(55 * mib, 64 * mib));
        assert!(!near_limit(20 * mib, 64 * mib));
        // At least 1 MiB of margin for a small limit.
        assert!(near_limit(2 * mib + 1, 3 * mib));
        assert!(near_limit(u64::MAX, 64 * mib));
    }
}
