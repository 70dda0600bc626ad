//! The attacks. Each one tries, for real, to do something the sandbox
//! promises to prevent, and reports what happened. Attacks whose success
//! would change host state are chosen to be harmless if they did succeed
//! (setting the clock to its current value, disabling Ctrl-Alt-Del, a
//! read-only `adjtimex`, a `sysrq` help request, files that are removed
//! again).
//!
//! Names starting with `control_` are the opposite: ordinary operations the
//! sandbox must keep allowing. They prove that the probe can tell success
//! from failure, so a blanket failure cannot pass for containment.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{cstr, errno, read_text};

/// The result of one attack.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Whether the attack did what it wanted; None when that is unknown
    /// (the attacking process died in an unexpected way).
    succeeded: Option<bool>,
    errno: Option<i32>,
    detail: String,
    data: Option<Value>,
}

impl Outcome {
    fn ok(detail: impl Into<String>) -> Outcome {
        Outcome {
            succeeded: Some(true),
            errno: None,
            detail: detail.into(),
            data: None,
        }
    }

    fn failed(errno: Option<i32>, detail: impl Into<String>) -> Outcome {
        Outcome {
            succeeded: Some(false),
            errno,
            detail: detail.into(),
            data: None,
        }
    }

    fn with_data(mut self, data: Value) -> Outcome {
        self.data = Some(data);
        self
    }

    pub(crate) fn to_json(&self, name: &str) -> Value {
        let mut v = json!({
            "attack": name,
            "succeeded": self.succeeded,
            "errno": self.errno,
            "detail": self.detail,
        });
        if let Some(d) = &self.data {
            v["data"] = d.clone();
        }
        v
    }
}

/// A syscall's return value: negative means failed with errno.
fn ret(r: i64, what: &str) -> Outcome {
    if r < 0 {
        let e = errno();
        Outcome::failed(Some(e), format!("{what}: {}", strerror(e)))
    } else {
        Outcome::ok(format!("{what} returned {r}"))
    }
}

/// Like [`ret`], closing the fd a successful call returned.
fn ret_fd(r: i64, what: &str) -> Outcome {
    let o = ret(r, what);
    if r >= 0 {
        unsafe { libc::close(r as i32) };
    }
    o
}

/// An ioctl request as the u64 the raw syscall takes (its libc type varies).
#[allow(clippy::unnecessary_cast)]
fn ioctl_nr(r: libc::Ioctl) -> u64 {
    r as u64
}

fn strerror(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

/// Every attack (and control) that needs no argument, in `attack-all` order.
pub(crate) const ALL: &[&str] = &[
    // namespaces
    "unshare_user",
    "unshare_net",
    "unshare_mount",
    "unshare_pid",
    "setns",
    "setns_pidfd",
    "clone_newuser",
    "clone_newns",
    "clone_newnet",
    "clone_newpid",
    "clone3",
    // mounts
    "mount_tmpfs",
    "umount_proc",
    "pivot_root",
    "move_mount",
    "open_tree",
    "open_tree_attr",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    // other processes
    "ptrace_init",
    "ptrace_traceme",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kill_init",
    // kernel attack surface
    "bpf",
    "perf_event_open",
    "add_key",
    "request_key",
    "keyctl",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "fanotify_init",
    // host administration
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    "uselib",
    "lookup_dcookie",
    "personality_no_aslr",
    // terminals
    "tiocsti",
    "tiocsti_high_bits",
    "tioclinux",
    // sockets
    "socket_packet",
    "socket_packet_dgram",
    "socket_packet_high_bits",
    "socket_sock_packet",
    "socket_raw",
    "socket_raw_flags",
    // foreign system call ABIs
    "i386_syscall",
    "x32_syscall",
    // privilege
    "setuid_root",
    "setgroups_root",
    "capset_all",
    "chroot",
    "mknod_block",
    "mknod_char",
    "sethostname",
    "chown_workspace_to_root",
    // filesystem
    "read_shadow",
    "read_proc1_environ",
    "write_usr",
    "write_root",
    "write_etc_passwd",
    "write_proc_sys",
    "write_sysrq",
    "hardlink_usr",
    "hardlink_etc",
    "write_outside_workspace",
    "mknod_workspace",
    "setuid_chmod",
    "setuid_fchmod",
    "setuid_fchmodat",
    "setuid_fchmodat2",
    "setuid_create",
    "setuid_mknod",
    "setgid_mkdir",
    "read_kcore",
    "read_kmsg",
    "read_proc1_mem",
    "write_init_exe",
    "leaked_fds",
    "list_dev",
    // visibility
    "see_host_pids",
    "net_interfaces",
    // controls: must succeed
    "control_fork",
    "control_clone3_fallback",
    "control_socket_tcp",
    "control_ioctl_fionread",
    "control_personality_query",
    "control_chmod_workspace",
    "control_pidfd_open",
    "control_read_passwd",
    "control_write_tmp",
    "control_write_workspace",
];

/// Run one attack in this process. None for an unknown name.
pub(crate) fn run(name: &str, arg: Option<&str>) -> Option<Outcome> {
    let o = match name {
        "unshare_user" => unshare(libc::CLONE_NEWUSER, "CLONE_NEWUSER"),
        "unshare_net" => unshare(libc::CLONE_NEWNET, "CLONE_NEWNET"),
        "unshare_mount" => unshare(libc::CLONE_NEWNS, "CLONE_NEWNS"),
        "unshare_pid" => unshare(libc::CLONE_NEWPID, "CLONE_NEWPID"),
        "setns" => setns(),
        "setns_pidfd" => setns_pidfd(),
        "clone_newuser" => raw_clone(libc::CLONE_NEWUSER, "CLONE_NEWUSER"),
        "clone_newns" => raw_clone(libc::CLONE_NEWNS, "CLONE_NEWNS"),
        "clone_newnet" => raw_clone(libc::CLONE_NEWNET, "CLONE_NEWNET"),
        "clone_newpid" => raw_clone(libc::CLONE_NEWPID, "CLONE_NEWPID"),
        "clone3" => clone3(libc::CLONE_NEWUSER as u64, "clone3(CLONE_NEWUSER)"),
        "mount_tmpfs" => ret(
            unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            } as i64,
            "mount(tmpfs, /tmp)",
        ),
        "umount_proc" => ret(
            unsafe { libc::umount2(c"/proc".as_ptr(), libc::MNT_DETACH) } as i64,
            "umount2(/proc, MNT_DETACH)",
        ),
        "pivot_root" => ret(
            unsafe { libc::syscall(libc::SYS_pivot_root, c"/tmp".as_ptr(), c"/tmp".as_ptr()) },
            "pivot_root(/tmp, /tmp)",
        ),
        "move_mount" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    libc::AT_FDCWD,
                    c"/tmp".as_ptr(),
                    libc::AT_FDCWD,
                    c"/workspace".as_ptr(),
                    0,
                )
            },
            "move_mount(/tmp, /workspace)",
        ),
        // Flags 0 would hand out an O_PATH fd even without privilege, so a
        // success here means the seccomp rule is missing.
        "open_tree" => ret_fd(
            unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    c"/usr".as_ptr(),
                    libc::O_CLOEXEC,
                )
            },
            "open_tree(/usr)",
        ),
        "open_tree_attr" => ret_fd(
            unsafe {
                libc::syscall(
                    SYS_OPEN_TREE_ATTR,
                    libc::AT_FDCWD,
                    c"/usr".as_ptr(),
                    libc::O_CLOEXEC,
                    std::ptr::null::<u8>(),
                    0usize,
                )
            },
            "open_tree_attr(/usr)",
        ),
        "fsopen" => ret_fd(
            unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 0) },
            "fsopen(tmpfs)",
        ),
        "fsconfig" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    -1,
                    0,
                    std::ptr::null::<u8>(),
                    std::ptr::null::<u8>(),
                    0,
                )
            },
            "fsconfig(-1)",
        ),
        "fsmount" => ret_fd(
            unsafe { libc::syscall(libc::SYS_fsmount, -1, 0, 0) },
            "fsmount(-1)",
        ),
        "fspick" => ret_fd(
            unsafe { libc::syscall(libc::SYS_fspick, libc::AT_FDCWD, c"/tmp".as_ptr(), 0) },
            "fspick(/tmp)",
        ),
        "mount_setattr" => mount_setattr(),
        "ptrace_init" => ptrace_init(),
        "ptrace_traceme" => ret(
            unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0) },
            "ptrace(PTRACE_TRACEME)",
        ),
        "process_vm_readv" => process_vm(false),
        "process_vm_writev" => process_vm(true),
        "pidfd_getfd" => pidfd_getfd(),
        "kill_init" => kill_init(),
        "bpf" => bpf(),
        "perf_event_open" => perf_event_open(),
        "add_key" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_add_key,
                    c"user".as_ptr(),
                    c"airlock-probe".as_ptr(),
                    c"x".as_ptr(),
                    1usize,
                    KEY_SPEC_PROCESS_KEYRING,
                )
            },
            "add_key(user, process keyring)",
        ),
        "request_key" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_request_key,
                    c"user".as_ptr(),
                    c"airlock-probe-absent".as_ptr(),
                    std::ptr::null::<u8>(),
                    0,
                )
            },
            "request_key(user)",
        ),
        "keyctl" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_GET_KEYRING_ID,
                    KEY_SPEC_SESSION_KEYRING,
                    0,
                )
            },
            "keyctl(KEYCTL_GET_KEYRING_ID, session keyring)",
        ),
        "io_uring_setup" => {
            let mut params = [0u8; 120];
            ret_fd(
                unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) },
                "io_uring_setup(1)",
            )
        }
        "io_uring_enter" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_io_uring_enter,
                    -1,
                    0,
                    0,
                    0,
                    std::ptr::null::<u8>(),
                    0,
                )
            },
            "io_uring_enter(-1)",
        ),
        "io_uring_register" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_io_uring_register,
                    -1,
                    0,
                    std::ptr::null::<u8>(),
                    0,
                )
            },
            "io_uring_register(-1)",
        ),
        "userfaultfd" => ret_fd(
            unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | UFFD_USER_MODE_ONLY) },
            "userfaultfd(UFFD_USER_MODE_ONLY)",
        ),
        "open_by_handle_at" => open_by_handle_at(),
        "name_to_handle_at" => name_to_handle_at(),
        "fanotify_init" => ret_fd(
            unsafe { libc::syscall(libc::SYS_fanotify_init, 0, libc::O_RDONLY) },
            "fanotify_init(FAN_CLASS_NOTIF)",
        ),
        "kexec_load" => ret(
            unsafe { libc::syscall(libc::SYS_kexec_load, 0, 0, std::ptr::null::<u8>(), 0) },
            "kexec_load(no segments)",
        ),
        "kexec_file_load" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_kexec_file_load,
                    -1,
                    -1,
                    1usize,
                    c"".as_ptr(),
                    KEXEC_FILE_NO_INITRAMFS,
                )
            },
            "kexec_file_load(-1)",
        ),
        "init_module" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_init_module,
                    std::ptr::null::<u8>(),
                    0usize,
                    c"".as_ptr(),
                )
            },
            "init_module(empty image)",
        ),
        "finit_module" => finit_module(),
        "delete_module" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_delete_module,
                    c"airlock_probe_absent".as_ptr(),
                    libc::O_NONBLOCK,
                )
            },
            "delete_module(airlock_probe_absent)",
        ),
        // LINUX_REBOOT_CMD_CAD_OFF: the harmless command.
        "reboot" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_reboot,
                    LINUX_REBOOT_MAGIC1,
                    LINUX_REBOOT_MAGIC2,
                    LINUX_REBOOT_CMD_CAD_OFF,
                    std::ptr::null::<u8>(),
                )
            },
            "reboot(LINUX_REBOOT_CMD_CAD_OFF)",
        ),
        "swapon" => ret(
            unsafe { libc::syscall(libc::SYS_swapon, c"/tmp/airlock-probe-swap".as_ptr(), 0) },
            "swapon(/tmp/airlock-probe-swap)",
        ),
        "swapoff" => ret(
            unsafe { libc::syscall(libc::SYS_swapoff, c"/tmp/airlock-probe-swap".as_ptr()) },
            "swapoff(/tmp/airlock-probe-swap)",
        ),
        "settimeofday" => settimeofday(),
        "clock_settime" => clock_settime(),
        "clock_adjtime" => {
            let mut tx: libc::timex = unsafe { std::mem::zeroed() };
            ret(
                unsafe { libc::syscall(libc::SYS_clock_adjtime, libc::CLOCK_REALTIME, &mut tx) },
                "clock_adjtime(CLOCK_REALTIME, modes=0)",
            )
        }
        // modes = 0 only reads; unprivileged, it would succeed without seccomp.
        "adjtimex" => {
            let mut tx: libc::timex = unsafe { std::mem::zeroed() };
            ret(
                unsafe { libc::syscall(libc::SYS_adjtimex, &mut tx) },
                "adjtimex(modes=0)",
            )
        }
        "acct" => ret(unsafe { libc::acct(std::ptr::null()) } as i64, "acct(NULL)"),
        "quotactl" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_quotactl,
                    Q_SYNC_USRQUOTA,
                    std::ptr::null::<u8>(),
                    0,
                    std::ptr::null::<u8>(),
                )
            },
            "quotactl(Q_SYNC)",
        ),
        "quotactl_fd" => quotactl_fd(),
        "syslog" => ret(
            unsafe {
                libc::syscall(
                    libc::SYS_syslog,
                    SYSLOG_ACTION_SIZE_BUFFER,
                    std::ptr::null::<u8>(),
                    0,
                )
            },
            "syslog(SYSLOG_ACTION_SIZE_BUFFER)",
        ),
        "vhangup" => ret(unsafe { libc::syscall(libc::SYS_vhangup) }, "vhangup()"),
        "iopl" => ret(unsafe { libc::syscall(libc::SYS_iopl, 3) }, "iopl(3)"),
        "ioperm" => ret(
            unsafe { libc::syscall(libc::SYS_ioperm, 0x80, 1, 1) },
            "ioperm(0x80, 1, on)",
        ),
        "uselib" => ret(
            unsafe { libc::syscall(libc::SYS_uselib, c"/nonexistent".as_ptr()) },
            "uselib(/nonexistent)",
        ),
        "lookup_dcookie" => {
            let mut buf = [0u8; 64];
            ret(
                unsafe { libc::syscall(libc::SYS_lookup_dcookie, 0u64, buf.as_mut_ptr(), 64) },
                "lookup_dcookie(0)",
            )
        }
        "personality_no_aslr" => {
            let r = unsafe { libc::personality(ADDR_NO_RANDOMIZE) };
            let o = ret(r as i64, "personality(ADDR_NO_RANDOMIZE)");
            if r >= 0 {
                unsafe { libc::personality(0) };
            }
            o
        }
        "tiocsti" => tiocsti(ioctl_nr(libc::TIOCSTI), "TIOCSTI"),
        // The kernel truncates the request to 32 bits; the filter must too.
        "tiocsti_high_bits" => tiocsti((1u64 << 32) | ioctl_nr(libc::TIOCSTI), "(1<<32)|TIOCSTI"),
        "tioclinux" => tioclinux(),
        "socket_packet" => socket(
            libc::AF_PACKET as u64,
            libc::SOCK_RAW as u64,
            ETH_P_ALL_BE,
            "socket(AF_PACKET, SOCK_RAW)",
        ),
        "socket_packet_dgram" => socket(
            libc::AF_PACKET as u64,
            libc::SOCK_DGRAM as u64,
            ETH_P_ALL_BE,
            "socket(AF_PACKET, SOCK_DGRAM)",
        ),
        "socket_packet_high_bits" => socket(
            (1u64 << 32) | libc::AF_PACKET as u64,
            libc::SOCK_RAW as u64,
            ETH_P_ALL_BE,
            "socket((1<<32)|AF_PACKET, SOCK_RAW)",
        ),
        "socket_sock_packet" => socket(
            libc::AF_INET as u64,
            SOCK_PACKET,
            ETH_P_ALL_BE,
            "socket(AF_INET, SOCK_PACKET)",
        ),
        "socket_raw" => socket(
            libc::AF_INET as u64,
            libc::SOCK_RAW as u64,
            libc::IPPROTO_ICMP as u64,
            "socket(AF_INET, SOCK_RAW, ICMP)",
        ),
        "socket_raw_flags" => socket(
            libc::AF_INET6 as u64,
            (libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64,
            libc::IPPROTO_ICMPV6 as u64,
            "socket(AF_INET6, SOCK_RAW|SOCK_NONBLOCK|SOCK_CLOEXEC, ICMPV6)",
        ),
        "i386_syscall" => i386_syscall(),
        "x32_syscall" => x32_syscall(),
        "setuid_root" => ret(
            unsafe { libc::setresuid(0, 0, 0) } as i64,
            "setresuid(0, 0, 0)",
        ),
        "setgroups_root" => {
            let g: [libc::gid_t; 1] = [0];
            ret(
                unsafe { libc::setgroups(1, g.as_ptr()) } as i64,
                "setgroups([0])",
            )
        }
        "capset_all" => capset_all(),
        "chroot" => ret(
            unsafe { libc::chroot(c"/tmp".as_ptr()) } as i64,
            "chroot(/tmp)",
        ),
        "mknod_block" => mknod(c"/tmp/sda", libc::S_IFBLK, 8, 0),
        "mknod_char" => mknod(c"/tmp/mem", libc::S_IFCHR, 1, 1),
        "sethostname" => ret(
            unsafe { libc::sethostname(c"pwned".as_ptr(), 5) } as i64,
            "sethostname(pwned)",
        ),
        "chown_workspace_to_root" => ret(
            unsafe { libc::chown(c"/workspace".as_ptr(), 0, 0) } as i64,
            "chown(/workspace, 0, 0)",
        ),
        "read_shadow" => read_file("/etc/shadow"),
        "read_proc1_environ" => read_file("/proc/1/environ"),
        "read_host_file" => read_file(arg?),
        "write_usr" => create_file("/usr/airlock-probe-test"),
        "write_root" => create_file("/airlock-x"),
        "write_etc_passwd" => write_existing("/etc/passwd", b"pwned::0:0::/:/bin/sh\n"),
        "write_proc_sys" => write_existing("/proc/sys/kernel/hostname", b"pwned"),
        "write_sysrq" => write_existing("/proc/sysrq-trigger", b"h"),
        "read_kcore" => read_file("/proc/kcore"),
        // A hard link in the host-visible workspace to a root-owned host
        // file (setuid binaries included) would outlive the sandbox.
        "hardlink_usr" => hardlink_usr(),
        // The same with the sandbox's own (synthetic) /etc/passwd.
        "hardlink_etc" => link_into_workspace("/etc/passwd"),
        // ".." out of the workspace lands on the read-only root.
        "write_outside_workspace" => create_file("/workspace/../airlock-outside"),
        // A device node in the host-visible workspace would open host
        // devices for whoever finds it there.
        "mknod_workspace" => mknod(c"/workspace/.airlock-probe-mem", libc::S_IFCHR, 1, 1),
        // A setuid or setgid bit on a file the sandbox wrote into the
        // workspace would make a host program that runs as the
        // workspace's owner (root, for a root-owned workspace). Each
        // succeeds only if the bit is really set afterwards.
        "setuid_chmod" => {
            setuid_bit(|p, m| unsafe { libc::syscall(libc::SYS_chmod, p.as_ptr(), m) })
        }
        "setuid_fchmod" => setuid_bit(|p, m| unsafe {
            let fd = libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            let r = libc::syscall(libc::SYS_fchmod, fd, m);
            libc::close(fd);
            r
        }),
        "setuid_fchmodat" => setuid_bit(|p, m| unsafe {
            libc::syscall(libc::SYS_fchmodat, libc::AT_FDCWD, p.as_ptr(), m)
        }),
        "setuid_fchmodat2" => {
            setuid_bit(|p, m| unsafe { libc::syscall(452, libc::AT_FDCWD, p.as_ptr(), m, 0) })
        }
        "setuid_create" => setuid_made(|p| unsafe {
            let fd = libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                p.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o4755,
            );
            if fd >= 0 {
                libc::close(fd as i32);
            }
            fd
        }),
        "setuid_mknod" => setuid_made(|p| unsafe {
            libc::syscall(
                libc::SYS_mknodat,
                libc::AT_FDCWD,
                p.as_ptr(),
                libc::S_IFREG | 0o4755,
                0,
            )
        }),
        "setgid_mkdir" => setuid_made(|p| unsafe {
            libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, p.as_ptr(), 0o2755)
        }),
        // Init is not dumpable: its memory and executable are off limits
        // (CVE-2019-5736 overwrote the runtime through /proc/PID/exe).
        "read_proc1_mem" => read_proc1_mem(),
        "write_init_exe" => write_existing("/proc/1/exe", b"\x7fELF"),
        "leaked_fds" => leaked_fds(),
        "sysv_shm" => sysv_shm(arg?),
        // Not in ALL: only meaningful when the test hands airlock a host
        // directory or file as stdin.
        "stdin_escape" => stdin_escape(),
        "read_kmsg" => read_kmsg(),
        "list_dev" => list_dev(),
        "see_host_pids" => see_host_pids(),
        "net_interfaces" => net_interfaces(),
        "connect_host" => connect_host(arg?),
        "connect_abstract" => connect_abstract(arg?),
        "control_fork" => raw_clone(0, "no namespace flags"),
        "control_clone3_fallback" => control_clone3_fallback(),
        "control_socket_tcp" => socket(
            libc::AF_INET as u64,
            libc::SOCK_STREAM as u64,
            0,
            "socket(AF_INET, SOCK_STREAM)",
        ),
        "control_ioctl_fionread" => control_fionread(),
        "control_personality_query" => ret(
            unsafe { libc::personality(0xffff_ffff) } as i64,
            "personality(0xffffffff)",
        ),
        "control_pidfd_open" => ret_fd(
            unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) },
            "pidfd_open(self)",
        ),
        "control_read_passwd" => read_file("/etc/passwd"),
        // Ordinary permission bits in the workspace stay settable.
        "control_chmod_workspace" => {
            let o = setuid_bit(|p, _| unsafe {
                libc::syscall(libc::SYS_fchmodat, libc::AT_FDCWD, p.as_ptr(), 0o700)
            });
            match o.succeeded {
                // No bit set is what a plain chmod should leave: report
                // the call's own result.
                Some(false) if o.errno.is_none() => Outcome::ok("chmod(0700) in the workspace"),
                _ => Outcome::failed(o.errno, o.detail),
            }
        }
        "control_write_tmp" => create_file("/tmp/airlock-probe-control"),
        "control_write_workspace" => create_file("/workspace/.airlock-probe-control"),
        _ => return None,
    };
    Some(o)
}

/// Every attack of [`ALL`], each in its own forked child (so that one that
/// succeeded, e.g. in changing credentials, cannot affect the next, and a
/// crash is reported instead of ending the run). A JSON array.
pub(crate) fn run_all() -> Value {
    Value::Array(ALL.iter().map(|name| run_in_child(name)).collect())
}

/// The fd an `attack-all` child writes its result to (not a leak).
static RESULT_FD: AtomicI32 = AtomicI32::new(-1);

fn run_in_child(name: &str) -> Value {
    let mut fds = [0i32; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Outcome {
            succeeded: None,
            errno: Some(errno()),
            detail: "probe: pipe2 failed".into(),
            data: None,
        }
        .to_json(name);
    }
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe { libc::close(fds[0]) };
        RESULT_FD.store(fds[1], Ordering::Relaxed);
        // A hung attack must not hang the suite.
        unsafe { libc::alarm(10) };
        let v = run(name, None)
            .expect("ALL lists only known attacks")
            .to_json(name);
        let bytes = v.to_string().into_bytes();
        let mut off = 0;
        while off < bytes.len() {
            let n = unsafe { libc::write(fds[1], bytes[off..].as_ptr().cast(), bytes.len() - off) };
            if n <= 0 {
                break;
            }
            off += n as usize;
        }
        unsafe { libc::_exit(0) };
    }
    unsafe { libc::close(fds[1]) };
    // fds[0] is a fresh pipe end that nothing else owns.
    let mut f = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let mut out = String::new();
    let _ = f.read_to_string(&mut out);
    let status = if pid > 0 { wait(pid) } else { None };
    match serde_json::from_str::<Value>(&out) {
        Ok(v) => v,
        Err(_) => Outcome {
            succeeded: None,
            errno: None,
            detail: format!(
                "probe child gave no result ({})",
                status.map_or("not forked".to_string(), describe_status)
            ),
            data: None,
        }
        .to_json(name),
    }
}

fn wait(pid: libc::pid_t) -> Option<i32> {
    let mut st = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        if r == pid {
            return Some(st);
        }
        if r < 0 && errno() != libc::EINTR {
            return None;
        }
    }
}

fn describe_status(st: i32) -> String {
    if libc::WIFSIGNALED(st) {
        format!("killed by signal {}", libc::WTERMSIG(st))
    } else {
        format!("exited with {}", libc::WEXITSTATUS(st))
    }
}

// ---------------------------------------------------------------------------
// Constants the libc crate does not carry.

const SYS_OPEN_TREE_ATTR: i64 = 467;
const KEY_SPEC_PROCESS_KEYRING: i32 = -2;
const KEY_SPEC_SESSION_KEYRING: i32 = -3;
const KEYCTL_GET_KEYRING_ID: i32 = 0;
const UFFD_USER_MODE_ONLY: i32 = 1;
const KEXEC_FILE_NO_INITRAMFS: u64 = 4;
const LINUX_REBOOT_MAGIC1: u64 = 0xfee1_dead;
const LINUX_REBOOT_MAGIC2: u64 = 672_274_793;
const LINUX_REBOOT_CMD_CAD_OFF: u64 = 0;
/// QCMD(Q_SYNC, USRQUOTA).
const Q_SYNC_USRQUOTA: u64 = 0x8000_0100;
const SYSLOG_ACTION_SIZE_BUFFER: i32 = 10;
const ADDR_NO_RANDOMIZE: u64 = 0x0040000;
const TIOCL_PASTESEL: u8 = 3;
const SOCK_PACKET: u64 = 10;
const ETH_P_ALL_BE: u64 = (libc::ETH_P_ALL as u16).to_be() as u64;
const MOUNT_ATTR_RDONLY: u64 = 1;
const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_ATTR_SIZE_VER8: u32 = 136;

// ---------------------------------------------------------------------------
// Namespaces.

fn unshare(flag: i32, what: &str) -> Outcome {
    ret(
        unsafe { libc::unshare(flag) } as i64,
        &format!("unshare({what})"),
    )
}

fn open_ro(path: &CStr) -> Result<i32, i32> {
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// setns into pid 1's network namespace; init is not dumpable, so when its
/// ns file cannot be opened, our own is used: the point is whether the
/// setns call itself reaches the kernel.
fn setns() -> Outcome {
    let (fd, which, note) = match open_ro(c"/proc/1/ns/net") {
        Ok(fd) => (fd, "/proc/1/ns/net", String::new()),
        Err(e) => match open_ro(c"/proc/self/ns/net") {
            Ok(fd) => (
                fd,
                "/proc/self/ns/net",
                format!(" (/proc/1/ns/net: {})", strerror(e)),
            ),
            Err(e2) => {
                return Outcome::failed(
                    Some(e2),
                    format!(
                        "cannot open a netns file: /proc/1/ns/net: {}, /proc/self/ns/net: {}",
                        strerror(e),
                        strerror(e2)
                    ),
                )
            }
        },
    };
    let r = unsafe { libc::syscall(libc::SYS_setns, fd, libc::CLONE_NEWNET) };
    let mut o = ret(r, &format!("setns({which}, CLONE_NEWNET){note}"));
    if r < 0 {
        o.errno = Some(errno());
    }
    unsafe { libc::close(fd) };
    o
}

fn setns_pidfd() -> Outcome {
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, 1, 0) };
    if pidfd < 0 {
        let e = errno();
        return Outcome::failed(Some(e), format!("pidfd_open(1): {}", strerror(e)));
    }
    let o = ret(
        unsafe { libc::syscall(libc::SYS_setns, pidfd, libc::CLONE_NEWNET) },
        "setns(pidfd of 1, CLONE_NEWNET)",
    );
    unsafe { libc::close(pidfd as i32) };
    o
}

/// A raw clone(2) with fork semantics (no new stack); the child exits at once.
fn raw_clone(flags: i32, what: &str) -> Outcome {
    let all = (flags | libc::SIGCHLD) as u64;
    let r = unsafe { libc::syscall(libc::SYS_clone, all, 0usize, 0usize, 0usize, 0usize) };
    if r == 0 {
        unsafe { libc::_exit(0) };
    }
    if r > 0 {
        wait(r as i32);
    }
    ret(r, &format!("clone({what}|SIGCHLD)"))
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
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

fn clone3(flags: u64, what: &str) -> Outcome {
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        unsafe { libc::_exit(0) };
    }
    if r > 0 {
        wait(r as i32);
    }
    ret(r, what)
}

/// libc's fork must still work when clone3 answers ENOSYS (it falls back
/// to clone); std's Command uses it.
fn control_clone3_fallback() -> Outcome {
    match std::process::Command::new("/workspace/probe")
        .arg("exit")
        .arg("0")
        .status()
        .or_else(|_| {
            std::process::Command::new("/proc/self/exe")
                .arg("exit")
                .arg("0")
                .status()
        }) {
        Ok(st) if st.success() => Outcome::ok("spawned a child process through libc"),
        Ok(st) => Outcome::failed(None, format!("child ended with {st}")),
        Err(e) => Outcome::failed(e.raw_os_error(), format!("spawn: {e}")),
    }
}

// ---------------------------------------------------------------------------
// Mounts.

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn mount_setattr() -> Outcome {
    let attr = MountAttr {
        attr_set: 0,
        attr_clr: MOUNT_ATTR_RDONLY,
        propagation: 0,
        userns_fd: 0,
    };
    ret(
        unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                c"/usr".as_ptr(),
                0,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        },
        "mount_setattr(/usr, clear MOUNT_ATTR_RDONLY)",
    )
}

// ---------------------------------------------------------------------------
// Other processes.

fn ptrace_init() -> Outcome {
    let r = unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_ATTACH, 1, 0, 0) };
    let o = ret(r, "ptrace(PTRACE_ATTACH, 1)");
    if r == 0 {
        unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_DETACH, 1, 0, 0) };
    }
    o
}

/// One byte at address 0 of pid 1: never mapped, so even an allowed call
/// cannot corrupt init; the errno tells whether the call got through.
fn process_vm(write: bool) -> Outcome {
    let mut buf = [0u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 1,
    };
    let (nr, what) = if write {
        (libc::SYS_process_vm_writev, "process_vm_writev(1)")
    } else {
        (libc::SYS_process_vm_readv, "process_vm_readv(1)")
    };
    ret(
        unsafe {
            libc::syscall(
                nr,
                1,
                &local as *const libc::iovec,
                1,
                &remote as *const libc::iovec,
                1,
                0,
            )
        },
        what,
    )
}

fn pidfd_getfd() -> Outcome {
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, 1, 0) };
    if pidfd < 0 {
        let e = errno();
        return Outcome::failed(Some(e), format!("pidfd_open(1): {}", strerror(e)));
    }
    let o = ret_fd(
        unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, 0, 0) },
        "pidfd_getfd(pidfd of 1, fd 0)",
    );
    unsafe { libc::close(pidfd as i32) };
    o
}

fn pid1_alive() -> bool {
    let signalable = unsafe { libc::kill(1, 0) } == 0;
    signalable || std::path::Path::new("/proc/1/stat").exists()
}

fn kill_init() -> Outcome {
    let r = unsafe { libc::kill(1, libc::SIGKILL) };
    let e = if r < 0 { Some(errno()) } else { None };
    std::thread::sleep(Duration::from_millis(100));
    if pid1_alive() {
        Outcome::failed(
            e,
            format!(
                "kill(1, SIGKILL) returned {r}{}; pid 1 is still alive",
                e.map(|e| format!(" ({})", strerror(e))).unwrap_or_default()
            ),
        )
    } else {
        Outcome::ok("pid 1 is gone after kill(1, SIGKILL)")
    }
}

// ---------------------------------------------------------------------------
// Kernel attack surface.

fn bpf() -> Outcome {
    let mut attr = [0u32; 32];
    attr[0] = BPF_MAP_TYPE_ARRAY;
    attr[1] = 4; // key_size
    attr[2] = 4; // value_size
    attr[3] = 1; // max_entries
    ret_fd(
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_CREATE,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr),
            )
        },
        "bpf(BPF_MAP_CREATE, array)",
    )
}

/// A user-space-only software counter on ourselves: allowed to anybody at
/// perf_event_paranoid <= 2, so only seccomp can refuse it.
fn perf_event_open() -> Outcome {
    let mut attr = [0u8; PERF_ATTR_SIZE_VER8 as usize];
    attr[0..4].copy_from_slice(&PERF_TYPE_SOFTWARE.to_ne_bytes());
    attr[4..8].copy_from_slice(&PERF_ATTR_SIZE_VER8.to_ne_bytes());
    // config (offset 8) = PERF_COUNT_SW_CPU_CLOCK = 0
    // flags (offset 40): disabled | exclude_kernel | exclude_hv
    let flags: u64 = 1 | (1 << 5) | (1 << 6);
    attr[40..48].copy_from_slice(&flags.to_ne_bytes());
    ret_fd(
        unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_mut_ptr(), 0, -1, -1, 0) },
        "perf_event_open(software cpu clock, self, user only)",
    )
}

#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; 128],
}

/// The "shocker" escape: a forged handle for inode 2 (the root directory of
/// an ext4 filesystem) opened relative to a bind-mounted host directory.
fn open_by_handle_at() -> Outcome {
    let mount_fd = match open_ro(c"/usr") {
        Ok(fd) => fd,
        Err(e) => return Outcome::failed(Some(e), format!("open(/usr): {}", strerror(e))),
    };
    let mut fh = FileHandle {
        handle_bytes: 8,
        handle_type: 1, // FILEID_INO32_GEN
        f_handle: [0; 128],
    };
    fh.f_handle[0] = 2;
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd,
            &mut fh as *mut FileHandle,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    let o = ret_fd(r, "open_by_handle_at(/usr, inode 2)");
    unsafe { libc::close(mount_fd) };
    o
}

/// Unprivileged users may normally call this, so only seccomp refuses it.
fn name_to_handle_at() -> Outcome {
    let mut fh = FileHandle {
        handle_bytes: 128,
        handle_type: 0,
        f_handle: [0; 128],
    };
    let mut mount_id: i32 = 0;
    ret(
        unsafe {
            libc::syscall(
                libc::SYS_name_to_handle_at,
                libc::AT_FDCWD,
                c"/usr".as_ptr(),
                &mut fh as *mut FileHandle,
                &mut mount_id as *mut i32,
                0,
            )
        },
        "name_to_handle_at(/usr)",
    )
}

// ---------------------------------------------------------------------------
// Host administration.

fn finit_module() -> Outcome {
    let fd = match open_ro(c"/proc/self/exe") {
        Ok(fd) => fd,
        Err(e) => {
            return Outcome::failed(Some(e), format!("open(/proc/self/exe): {}", strerror(e)))
        }
    };
    let o = ret(
        unsafe { libc::syscall(libc::SYS_finit_module, fd, c"".as_ptr(), 0) },
        "finit_module(/proc/self/exe)",
    );
    unsafe { libc::close(fd) };
    o
}

/// Sets the wall clock to what it already is.
fn settimeofday() -> Outcome {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    unsafe { libc::gettimeofday(&mut tv, std::ptr::null_mut()) };
    ret(
        unsafe { libc::syscall(libc::SYS_settimeofday, &tv, std::ptr::null::<u8>()) },
        "settimeofday(now)",
    )
}

/// Sets CLOCK_REALTIME to what it already is.
fn clock_settime() -> Outcome {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ret(
        unsafe { libc::syscall(libc::SYS_clock_settime, libc::CLOCK_REALTIME, &ts) },
        "clock_settime(CLOCK_REALTIME, now)",
    )
}

fn quotactl_fd() -> Outcome {
    let fd = match open_ro(c"/tmp") {
        Ok(fd) => fd,
        Err(e) => return Outcome::failed(Some(e), format!("open(/tmp): {}", strerror(e))),
    };
    let o = ret(
        unsafe {
            libc::syscall(
                libc::SYS_quotactl_fd,
                fd,
                Q_SYNC_USRQUOTA,
                0,
                std::ptr::null::<u8>(),
            )
        },
        "quotactl_fd(/tmp, Q_SYNC)",
    );
    unsafe { libc::close(fd) };
    o
}

// ---------------------------------------------------------------------------
// Terminals.

/// TIOCSTI on fds 0-2 and on /dev/tty when it opens. The errno reported is
/// the first refusal's; `data` has every attempt.
fn tiocsti(request: u64, what: &str) -> Outcome {
    let mut attempts = Vec::new();
    let mut fds: Vec<(String, i32, bool)> =
        (0..3).map(|fd| (format!("fd {fd}"), fd, false)).collect();
    let tty = unsafe {
        libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if tty >= 0 {
        fds.push(("/dev/tty".into(), tty, true));
    } else {
        attempts.push(json!({ "target": "/dev/tty", "opened": false, "errno": errno() }));
    }
    let mut any_ok = false;
    let mut first_errno = None;
    let ch: u8 = b' ';
    for (label, fd, close) in &fds {
        let r = unsafe { libc::syscall(libc::SYS_ioctl, *fd, request, &ch as *const u8) };
        if r == 0 {
            any_ok = true;
            attempts.push(json!({ "target": label, "ok": true }));
        } else {
            let e = errno();
            first_errno.get_or_insert(e);
            attempts.push(json!({ "target": label, "ok": false, "errno": e }));
        }
        if *close {
            unsafe { libc::close(*fd) };
        }
    }
    let detail = format!(
        "ioctl({what}) on fds 0-2 and /dev/tty: {}",
        Value::Array(attempts.clone())
    );
    let o = if any_ok {
        Outcome::ok(detail)
    } else {
        Outcome::failed(first_errno, detail)
    };
    o.with_data(Value::Array(attempts))
}

fn tioclinux() -> Outcome {
    let sub: [u8; 1] = [TIOCL_PASTESEL];
    ret(
        unsafe { libc::syscall(libc::SYS_ioctl, 0, ioctl_nr(libc::TIOCLINUX), sub.as_ptr()) },
        "ioctl(0, TIOCLINUX, TIOCL_PASTESEL)",
    )
}

fn control_fionread() -> Outcome {
    let mut fds = [0i32; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        let e = errno();
        return Outcome::failed(Some(e), format!("pipe2: {}", strerror(e)));
    }
    let mut n: i32 = 0;
    let o = ret(
        unsafe { libc::syscall(libc::SYS_ioctl, fds[0], ioctl_nr(libc::FIONREAD), &mut n) },
        "ioctl(pipe, FIONREAD)",
    );
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    o
}

// ---------------------------------------------------------------------------
// Sockets.

fn socket(domain: u64, ty: u64, proto: u64, what: &str) -> Outcome {
    ret_fd(
        unsafe { libc::syscall(libc::SYS_socket, domain, ty, proto) },
        what,
    )
}

// ---------------------------------------------------------------------------
// Foreign system call ABIs: run in a child, because the promised outcome is
// that the process is killed.

fn in_child(body: fn() -> i32) -> Result<i32, i32> {
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = body();
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        return Err(-errno());
    }
    match wait(pid) {
        Some(st) if libc::WIFSIGNALED(st) => Err(libc::WTERMSIG(st)),
        Some(st) => Ok(libc::WEXITSTATUS(st)),
        None => Err(0),
    }
}

#[cfg(target_arch = "x86_64")]
fn i386_getpid() -> i32 {
    let mut eax: i32 = 20; // __NR_getpid on i386
    unsafe {
        std::arch::asm!("int 0x80", inout("eax") eax => eax, options(nostack));
    }
    if eax > 0 {
        0
    } else {
        1
    }
}

#[cfg(target_arch = "x86_64")]
fn i386_syscall() -> Outcome {
    match in_child(i386_getpid) {
        Err(sig) if sig == libc::SIGSYS => {
            Outcome::failed(None, "killed by SIGSYS (seccomp)").with_data(json!({ "signal": sig }))
        }
        Err(sig) if sig > 0 => Outcome::failed(None, format!("killed by signal {sig}"))
            .with_data(json!({ "signal": sig })),
        Err(e) => Outcome {
            succeeded: None,
            errno: Some(-e),
            detail: "fork failed".into(),
            data: None,
        },
        Ok(0) => Outcome::ok("int 0x80 getpid returned a pid").with_data(json!({ "signal": null })),
        Ok(c) => Outcome::failed(
            None,
            format!("int 0x80 getpid returned an error (child exit {c})"),
        )
        .with_data(json!({ "signal": null })),
    }
}

#[cfg(target_arch = "x86_64")]
fn x32_getpid() -> i32 {
    const X32_SYSCALL_BIT: i64 = 0x4000_0000;
    let r = unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) };
    if r >= 0 {
        200
    } else {
        errno().min(199)
    }
}

#[cfg(target_arch = "x86_64")]
fn x32_syscall() -> Outcome {
    match in_child(x32_getpid) {
        Err(sig) if sig > 0 => Outcome::failed(None, format!("killed by signal {sig}"))
            .with_data(json!({ "signal": sig })),
        Err(e) => Outcome {
            succeeded: None,
            errno: Some(-e),
            detail: "fork failed".into(),
            data: None,
        },
        Ok(200) => Outcome::ok("x32 getpid returned a pid").with_data(json!({ "signal": null })),
        Ok(e) => Outcome::failed(Some(e), format!("x32 getpid: {}", strerror(e)))
            .with_data(json!({ "signal": null })),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn i386_syscall() -> Outcome {
    Outcome::failed(None, "not applicable: not x86_64").with_data(json!({ "signal": null }))
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_syscall() -> Outcome {
    Outcome::failed(None, "not applicable: not x86_64").with_data(json!({ "signal": null }))
}

// ---------------------------------------------------------------------------
// Privilege.

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

fn capset_all() -> Outcome {
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let all = CapData {
        effective: u32::MAX,
        permitted: u32::MAX,
        inheritable: u32::MAX,
    };
    let data = [all, all];
    ret(
        unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) },
        "capset(all)",
    )
}

fn mknod(path: &CStr, kind: libc::mode_t, major: u32, minor: u32) -> Outcome {
    let r = unsafe { libc::mknod(path.as_ptr(), kind | 0o600, libc::makedev(major, minor)) };
    let o = ret(
        r as i64,
        &format!("mknod({}, {major}:{minor})", path.to_string_lossy()),
    );
    if r == 0 {
        unsafe { libc::unlink(path.as_ptr()) };
    }
    o
}

// ---------------------------------------------------------------------------
// Filesystem.

/// Succeeds when at least one byte could be read (O_NONBLOCK: /dev/kmsg and
/// friends would otherwise block).
fn read_file(path: &str) -> Outcome {
    let c = cstr(path);
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = errno();
        return Outcome::failed(Some(e), format!("open({path}): {}", strerror(e)));
    }
    let mut buf = [0u8; 4096];
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    let e = errno();
    unsafe { libc::close(fd) };
    if n < 0 {
        return Outcome::failed(Some(e), format!("read({path}): {}", strerror(e)));
    }
    if n == 0 {
        return Outcome::failed(None, format!("{path} opened but is empty"));
    }
    let head = String::from_utf8_lossy(&buf[..(n as usize).min(64)]).into_owned();
    Outcome::ok(format!("read {n} bytes from {path}")).with_data(json!({ "head": head }))
}

/// Create a new file (O_EXCL) and remove it again if that worked.
fn create_file(path: &str) -> Outcome {
    let c = cstr(path);
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        let e = errno();
        return Outcome::failed(Some(e), format!("create({path}): {}", strerror(e)));
    }
    unsafe {
        libc::write(fd, b"x".as_ptr().cast(), 1);
        libc::close(fd);
        libc::unlink(c.as_ptr());
    }
    Outcome::ok(format!("created {path}"))
}

/// Open an existing file for writing and write `data` to it.
fn write_existing(path: &str, data: &[u8]) -> Outcome {
    let c = cstr(path);
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = errno();
        return Outcome::failed(Some(e), format!("open({path}, O_WRONLY): {}", strerror(e)));
    }
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let e = errno();
    unsafe { libc::close(fd) };
    if n < 0 {
        Outcome::failed(Some(e), format!("write({path}): {}", strerror(e)))
    } else {
        Outcome::ok(format!("wrote {n} bytes to {path}"))
    }
}

fn read_kmsg() -> Outcome {
    let dev = read_file("/dev/kmsg");
    let proc_ = read_file("/proc/kmsg");
    let data = json!({ "/dev/kmsg": dev.detail, "/proc/kmsg": proc_.detail });
    if dev.succeeded == Some(true) || proc_.succeeded == Some(true) {
        Outcome::ok("the kernel log is readable").with_data(data)
    } else {
        Outcome::failed(
            dev.errno,
            format!("/dev/kmsg: {}; /proc/kmsg: {}", dev.detail, proc_.detail),
        )
        .with_data(data)
    }
}

/// Fails unless /dev holds a block device or one of the dangerous character
/// devices. `data.entries` lists everything with its type.
fn list_dev() -> Outcome {
    use std::os::unix::fs::FileTypeExt;
    const DANGEROUS: &[&str] = &[
        "kvm",
        "mem",
        "kmem",
        "port",
        "kmsg",
        "console",
        "tty",
        "ptmx",
        "fuse",
        "net",
        "vhost-net",
        "vhost-vsock",
        "loop-control",
        "mapper",
        "disk",
        "cpu",
        "nvram",
        "hpet",
        "rtc0",
    ];
    let rd = match std::fs::read_dir("/dev") {
        Ok(r) => r,
        Err(e) => return Outcome::failed(e.raw_os_error(), format!("read_dir(/dev): {e}")),
    };
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        // d_type would describe the tmpfs placeholder under a bind mount;
        // lstat sees the mounted node itself.
        let kind = match std::fs::symlink_metadata(ent.path()).map(|m| m.file_type()) {
            Ok(t) if t.is_block_device() => "block",
            Ok(t) if t.is_char_device() => "char",
            Ok(t) if t.is_symlink() => "symlink",
            Ok(t) if t.is_dir() => "dir",
            Ok(t) if t.is_file() => "file",
            Ok(t) if t.is_socket() => "socket",
            Ok(t) if t.is_fifo() => "fifo",
            _ => "unknown",
        };
        if kind == "block" || DANGEROUS.contains(&name.as_str()) {
            bad.push(name.clone());
        }
        entries.push(json!({ "name": name, "type": kind }));
    }
    let data = json!({ "entries": entries, "dangerous": bad });
    if bad.is_empty() {
        Outcome::failed(
            None,
            format!(
                "/dev has no block or dangerous devices ({} entries)",
                entries.len()
            ),
        )
        .with_data(data)
    } else {
        Outcome::ok(format!("/dev exposes {bad:?}")).with_data(data)
    }
}

// ---------------------------------------------------------------------------
// Visibility.

/// Fails when /proc shows only a handful of pids, all of them airlock's or
/// the probe's. `data.pids` lists what was seen.
fn see_host_pids() -> Outcome {
    let mut pids = Vec::new();
    let mut foreign = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let Ok(pid) = name.parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            let ours =
                cmdline.is_empty() || cmdline.contains("airlock") || cmdline.contains("probe");
            if !ours {
                foreign.push(pid);
            }
            pids.push(json!({ "pid": pid, "cmdline": cmdline }));
        }
    }
    let data = json!({ "pids": pids, "foreign": foreign });
    if pids.len() > 8 || !foreign.is_empty() {
        Outcome::ok(format!(
            "/proc shows {} pids, {} not ours",
            pids.len(),
            foreign.len()
        ))
        .with_data(data)
    } else {
        Outcome::failed(
            None,
            format!("/proc shows only {} pids, all ours", pids.len()),
        )
        .with_data(data)
    }
}

fn net_interfaces() -> Outcome {
    let Some(text) = read_text("/proc/net/dev") else {
        let e = errno();
        return Outcome::failed(Some(e), format!("read /proc/net/dev: {}", strerror(e)));
    };
    let names: Vec<String> = text
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    let others: Vec<&String> = names.iter().filter(|n| *n != "lo").collect();
    let data = json!({ "interfaces": names });
    if others.is_empty() {
        Outcome::failed(None, format!("only {names:?}")).with_data(data)
    } else {
        Outcome::ok(format!("interfaces besides lo: {others:?}")).with_data(data)
    }
}

fn io_errno(e: &std::io::Error) -> Option<i32> {
    e.raw_os_error().or(match e.kind() {
        std::io::ErrorKind::TimedOut => Some(libc::ETIMEDOUT),
        _ => None,
    })
}

fn connect_host(addr: &str) -> Outcome {
    let sa: std::net::SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => return Outcome::failed(Some(libc::EINVAL), format!("bad address {addr:?}: {e}")),
    };
    match std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(3)) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap_or(0);
            Outcome::ok(format!("connected to {addr}"))
                .with_data(json!({ "banner": String::from_utf8_lossy(&buf[..n]) }))
        }
        Err(e) => Outcome::failed(io_errno(&e), format!("connect({addr}): {e}")),
    }
}

fn connect_abstract(name: &str) -> Outcome {
    use std::os::linux::net::SocketAddrExt;
    let sa = match std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()) {
        Ok(a) => a,
        Err(e) => return Outcome::failed(io_errno(&e), format!("bad abstract name: {e}")),
    };
    match std::os::unix::net::UnixStream::connect_addr(&sa) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap_or(0);
            Outcome::ok(format!("connected to abstract socket @{name}"))
                .with_data(json!({ "banner": String::from_utf8_lossy(&buf[..n]) }))
        }
        Err(e) => Outcome::failed(io_errno(&e), format!("connect(@{name}): {e}")),
    }
}

/// Reads pid 1's memory through /proc (needs ptrace access to init).
fn read_proc1_mem() -> Outcome {
    let fd = match open_ro(c"/proc/1/mem") {
        Ok(fd) => fd,
        Err(e) => return Outcome::failed(Some(e), format!("open(/proc/1/mem): {}", strerror(e))),
    };
    // Somewhere in init's address space that is commonly mapped.
    let mut buf = [0u8; 16];
    let r = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0x40_0000) };
    let e = errno();
    unsafe { libc::close(fd) };
    if r < 0 {
        // Opened, but the memory could not be read: still a broken barrier.
        Outcome::ok(format!("/proc/1/mem opened (pread: {})", strerror(e)))
    } else {
        Outcome::ok(format!("read {r} bytes of init's memory"))
    }
}

/// File descriptors the payload holds beyond stdin, stdout and stderr (a
/// leaked fd to a host directory is an escape, as in CVE-2024-21626), and
/// whether any of 0-2 is a directory.
fn leaked_fds() -> Outcome {
    let ignore = RESULT_FD.load(Ordering::Relaxed);
    let names: Vec<String> = match std::fs::read_dir("/proc/self/fd") {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => {
            return Outcome::failed(e.raw_os_error(), format!("read_dir(/proc/self/fd): {e}"))
        }
    };
    let mut fds = serde_json::Map::new();
    let mut leaked = Vec::new();
    for n in names {
        let Ok(fd) = n.parse::<i32>() else { continue };
        // The directory listing's own fd is closed by now: it fails here.
        let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
            continue;
        };
        if fd == ignore {
            continue;
        }
        let target = target.display().to_string();
        let is_dir = std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok_and(|m| m.is_dir());
        if fd > 2 || is_dir {
            leaked.push(fd);
        }
        fds.insert(fd.to_string(), json!({ "target": target, "dir": is_dir }));
    }
    let data = json!({ "fds": fds, "leaked": leaked });
    if leaked.is_empty() {
        Outcome::failed(None, "only fds 0-2 are open, none a directory").with_data(data)
    } else {
        Outcome::ok(format!("extra or directory fds: {leaked:?}")).with_data(data)
    }
}

/// IPC_STAT on a SysV shared memory id: visible only in the same IPC namespace.
fn sysv_shm(id: &str) -> Outcome {
    let Ok(id) = id.parse::<i32>() else {
        return Outcome::failed(Some(libc::EINVAL), format!("bad shm id {id:?}"));
    };
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
    if r < 0 {
        let e = errno();
        Outcome::failed(Some(e), format!("shmctl({id}, IPC_STAT): {}", strerror(e)))
    } else {
        Outcome::ok(format!("shm {id} is visible: {} bytes", ds.shm_segsz))
    }
}

/// What an inherited stdin gives away. For a directory: its entries read
/// straight from the already-open fd (getdents64, no new open), a stat and
/// an open of `etc/passwd` beneath it, and a reopen through /proc. For a
/// regular file: a reopen for writing through /proc/self/fd/0. Succeeds if
/// any of these reached a host object.
fn stdin_escape() -> Outcome {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(0, &mut st) } != 0 {
        let e = errno();
        return Outcome::failed(Some(e), format!("fstat(0): {}", strerror(e)));
    }
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => "dir",
        libc::S_IFREG => "file",
        libc::S_IFIFO => "fifo",
        libc::S_IFCHR => "char",
        libc::S_IFSOCK => "socket",
        _ => "other",
    };
    let mut found = Vec::new();
    let mut data = serde_json::Map::new();
    data.insert("fd0_type".into(), json!(kind));
    if kind == "dir" {
        // getdents64 on fd 0 itself.
        let mut buf = vec![0u8; 32 * 1024];
        let n = unsafe { libc::syscall(libc::SYS_getdents64, 0, buf.as_mut_ptr(), buf.len()) };
        let mut names = Vec::new();
        if n > 0 {
            let mut off = 0usize;
            while off < n as usize {
                let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                let name = &buf[off + 19..off + reclen];
                let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
                let name = String::from_utf8_lossy(&name[..end]).into_owned();
                if name != "." && name != ".." {
                    names.push(name);
                }
                off += reclen;
            }
            found.push(format!("listed {} entries through fd 0", names.len()));
        }
        data.insert(
            "getdents".into(),
            json!({ "entries": names, "errno": if n < 0 { Some(errno()) } else { None } }),
        );
        let mut sb: libc::stat = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::fstatat(0, c"etc/passwd".as_ptr(), &mut sb, 0) };
        data.insert(
            "fstatat_etc_passwd".into(),
            json!({ "ok": r == 0, "errno": if r != 0 { Some(errno()) } else { None } }),
        );
        if r == 0 {
            found.push("stat etc/passwd beneath fd 0".into());
        }
        let fd =
            unsafe { libc::openat(0, c"etc/passwd".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        let e = errno();
        data.insert(
            "openat_etc_passwd".into(),
            json!({ "ok": fd >= 0, "errno": if fd < 0 { Some(e) } else { None } }),
        );
        if fd >= 0 {
            unsafe { libc::close(fd) };
            found.push("opened etc/passwd beneath fd 0".into());
        }
        match std::fs::read_dir("/proc/self/fd/0") {
            Ok(rd) => {
                found.push(format!("reopened fd 0 and listed {} entries", rd.count()));
                data.insert("reopen".into(), json!({ "ok": true }));
            }
            Err(e) => {
                data.insert(
                    "reopen".into(),
                    json!({ "ok": false, "errno": e.raw_os_error() }),
                );
            }
        }
    }
    if kind == "file" {
        let fd = unsafe {
            libc::open(
                c"/proc/self/fd/0".as_ptr(),
                libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC,
            )
        };
        let e = errno();
        data.insert(
            "reopen_for_write".into(),
            json!({ "ok": fd >= 0, "errno": if fd < 0 { Some(e) } else { None } }),
        );
        if fd >= 0 {
            let w = unsafe { libc::write(fd, b"airlock-probe was here\n".as_ptr().cast(), 23) };
            unsafe { libc::close(fd) };
            found.push(format!("reopened stdin for writing (write returned {w})"));
        }
    }
    let data = Value::Object(data);
    if found.is_empty() {
        Outcome::failed(
            None,
            format!("stdin is a {kind}; nothing reached through it"),
        )
        .with_data(data)
    } else {
        Outcome::ok(found.join("; ")).with_data(data)
    }
}

/// A hard link to `src` inside the workspace.
fn link_into_workspace(src: &str) -> Outcome {
    let dst = c"/workspace/.airlock-probe-hardlink";
    let c = cstr(src);
    let r = unsafe { libc::link(c.as_ptr(), dst.as_ptr()) };
    let o = ret(
        r as i64,
        &format!("link({src}, /workspace/.airlock-probe-hardlink)"),
    );
    if r == 0 {
        unsafe { libc::unlink(dst.as_ptr()) };
    }
    o
}

const SUID_PROBE: &CStr = c"/workspace/.airlock-probe-suid";

/// Whether `SUID_PROBE` exists with a setuid or setgid bit; then removes it.
fn suid_outcome(r: i64, what: &str) -> Outcome {
    let e = errno();
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let exists = unsafe { libc::lstat(SUID_PROBE.as_ptr(), &mut st) } == 0;
    let bits = if exists { st.st_mode & 0o6000 } else { 0 };
    unsafe {
        libc::unlink(SUID_PROBE.as_ptr());
        libc::rmdir(SUID_PROBE.as_ptr());
    }
    if bits != 0 {
        Outcome::ok(format!(
            "{what}: the file has mode {:o}",
            st.st_mode & 0o7777
        ))
    } else if r < 0 {
        Outcome::failed(Some(e), format!("{what}: {}", strerror(e)))
    } else {
        // The call "worked" but no bit was set: the attack still failed.
        Outcome::failed(
            None,
            format!("{what} returned {r}, but no setuid/setgid bit is set"),
        )
    }
}

/// Make an ordinary file in the workspace, then try `chmod(path, 04755)`.
fn setuid_bit(chmod: impl Fn(&CStr, libc::mode_t) -> libc::c_long) -> Outcome {
    let fd = unsafe {
        libc::open(
            SUID_PROBE.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o755,
        )
    };
    if fd < 0 {
        let e = errno();
        return Outcome::failed(Some(e), format!("creating the test file: {}", strerror(e)));
    }
    unsafe { libc::close(fd) };
    let r = chmod(SUID_PROBE, 0o4755);
    suid_outcome(r, "chmod(/workspace/.airlock-probe-suid, 04755)")
}

/// Try to create the test path with a setuid/setgid mode directly.
fn setuid_made(create: impl Fn(&CStr) -> libc::c_long) -> Outcome {
    let r = create(SUID_PROBE);
    suid_outcome(
        r,
        "creating /workspace/.airlock-probe-suid with mode 04755/02755",
    )
}

fn hardlink_usr() -> Outcome {
    let src = [
        "/usr/bin/passwd",
        "/usr/bin/su",
        "/usr/bin/env",
        "/usr/bin/sh",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or("/usr/bin/env");
    link_into_workspace(src)
}
