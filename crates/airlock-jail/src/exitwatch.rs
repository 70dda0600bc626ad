//! Exit watch: a seccomp user-notification filter on `exit_group` so init
//! sees every sandbox process just before it exits, while its fds are still
//! open. A process that exits holding as many fds as RLIMIT_NOFILE allows
//! has hit the fd limit; init reports that as the `nofile` limit.
//!
//! The kernel records no EMFILE event, and once a process is a zombie its
//! fd table is gone, so this is the one place where the fact is visible.
//! The notification is answered with SECCOMP_USER_NOTIF_FLAG_CONTINUE: the
//! call proceeds unchanged. (The same hook is where exec telemetry will
//! attach.)
//!
//! seccompiler has no user-notification action, so this six-instruction
//! filter is built by hand.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Install the filter in the calling thread (no_new_privs must be set) and
/// return the listener fd.
pub(crate) fn install() -> Result<OwnedFd, i32> {
    #[cfg(target_arch = "x86_64")]
    {
        const BPF_LD_W_ABS: u16 = 0x20;
        const BPF_JMP_JEQ_K: u16 = 0x15;
        const BPF_RET_K: u16 = 0x06;
        const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
        const SECCOMP_RET_USER_NOTIF: u32 = 0x7FC0_0000;
        let mut prog = [
            libc::sock_filter {
                code: BPF_LD_W_ABS,
                jt: 0,
                jf: 0,
                k: 4,
            }, // seccomp_data.arch
            libc::sock_filter {
                code: BPF_JMP_JEQ_K,
                jt: 0,
                jf: 3,
                k: AUDIT_ARCH_X86_64,
            },
            libc::sock_filter {
                code: BPF_LD_W_ABS,
                jt: 0,
                jf: 0,
                k: 0,
            }, // seccomp_data.nr
            libc::sock_filter {
                code: BPF_JMP_JEQ_K,
                jt: 0,
                jf: 1,
                k: libc::SYS_exit_group as u32,
            },
            libc::sock_filter {
                code: BPF_RET_K,
                jt: 0,
                jf: 0,
                k: SECCOMP_RET_USER_NOTIF,
            },
            libc::sock_filter {
                code: BPF_RET_K,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            },
        ];
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

/// Answer one pending notification. Returns the notifying pid's open fd
/// count, when it could be read.
pub(crate) fn serve_one(listener: &OwnedFd) -> Option<usize> {
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
        return None; // ENOENT: the process died meanwhile; EINTR: try later
    }
    // The process is stopped in exit_group: its fd table is intact.
    let count = std::fs::read_dir(format!("/proc/{}/fd", notif.pid))
        .ok()
        .map(|rd| rd.count());
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
    count
}
