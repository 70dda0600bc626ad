//! The syscall surface: every attack of `airlock-probe attack-all`, run once
//! per mode in one sandbox (each attack in its own forked child), then
//! asserted one test per attack.
//!
//! The seccomp deny list (profiles/seccomp.toml) promises EPERM for the
//! calls it names and ENOSYS for clone3; foreign system call ABIs kill the
//! process. Calls that no rule names must still fail, through the missing
//! capabilities, the user namespace's id map or the read-only mounts.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::common::*;

/// One mode's `attack-all` answers, by attack name.
#[derive(Debug)]
pub(crate) struct AttackResults {
    by_name: HashMap<String, Value>,
    names: Vec<String>,
}

fn run_all(mode: Mode) -> AttackResults {
    let sb = Sandbox::new(mode);
    let v = sb.probe(&["attack-all"]);
    let list = v.as_array().unwrap_or_else(|| {
        panic!(
            "[{mode}] attack-all did not print an array:\n{}",
            pretty(&v)
        )
    });
    let mut by_name = HashMap::new();
    let mut names = Vec::new();
    for r in list {
        let name = r["attack"]
            .as_str()
            .unwrap_or_else(|| panic!("[{mode}] attack without a name: {r}"))
            .to_string();
        names.push(name.clone());
        by_name.insert(name, r.clone());
    }
    AttackResults { by_name, names }
}

/// The answer of attack `name` in `mode` (attack-all runs once per mode
/// and test process).
pub(crate) fn result(mode: Mode, name: &str) -> &'static Value {
    static ROOT: OnceLock<AttackResults> = OnceLock::new();
    static ROOTLESS: OnceLock<AttackResults> = OnceLock::new();
    let cell = match mode {
        Mode::Root => &ROOT,
        Mode::Rootless => &ROOTLESS,
    };
    let all = cell.get_or_init(|| run_all(mode));
    all.by_name.get(name).unwrap_or_else(|| {
        panic!(
            "[{mode}] attack-all reported nothing for {name:?}; it reported {:?}",
            all.names
        )
    })
}

/// The attack must have failed, with one of `errnos`.
fn assert_denied(name: &str, errnos: &[i64]) {
    for mode in modes() {
        let r = result(mode, name);
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] attack {name} was NOT stopped:\n{}",
            pretty(r)
        );
        let errno = r["errno"].as_i64();
        assert!(
            errno.is_some_and(|e| errnos.contains(&e)),
            "[{mode}] attack {name} failed, but with errno {errno:?} instead of one of {errnos:?}:\n{}",
            pretty(r)
        );
    }
}

/// One #[test] per attack that must fail with one of the listed errnos,
/// plus `DENIED`, the list of their names.
macro_rules! denied {
    ($($name:ident => [$($errno:ident),+],)+) => {
        $(
            #[test]
            fn $name() {
                assert_denied(stringify!($name), &[$($errno),+]);
            }
        )+
        /// The attacks asserted by the `denied!` tests above.
        const DENIED: &[&str] = &[$(stringify!($name)),+];
    };
}

denied! {
    // Namespaces: seccomp, EPERM.
    unshare_user => [EPERM],
    unshare_net => [EPERM],
    unshare_mount => [EPERM],
    unshare_pid => [EPERM],
    setns => [EPERM],
    setns_pidfd => [EPERM],
    clone_newuser => [EPERM],
    clone_newns => [EPERM],
    clone_newnet => [EPERM],
    clone_newpid => [EPERM],
    // clone3's flags are out of seccomp's reach: the whole call is ENOSYS.
    clone3 => [ENOSYS],
    // The mount family, old and new API.
    mount_tmpfs => [EPERM],
    umount_proc => [EPERM],
    pivot_root => [EPERM],
    move_mount => [EPERM],
    open_tree => [EPERM],
    open_tree_attr => [EPERM],
    fsopen => [EPERM],
    fsconfig => [EPERM],
    fsmount => [EPERM],
    fspick => [EPERM],
    mount_setattr => [EPERM],
    // Other processes.
    ptrace_init => [EPERM],
    ptrace_traceme => [EPERM],
    process_vm_readv => [EPERM],
    process_vm_writev => [EPERM],
    pidfd_getfd => [EPERM],
    // Kernel attack surface.
    bpf => [EPERM],
    perf_event_open => [EPERM],
    add_key => [EPERM],
    request_key => [EPERM],
    keyctl => [EPERM],
    io_uring_setup => [EPERM],
    io_uring_enter => [EPERM],
    io_uring_register => [EPERM],
    userfaultfd => [EPERM],
    open_by_handle_at => [EPERM],
    name_to_handle_at => [EPERM],
    fanotify_init => [EPERM],
    // Host administration.
    kexec_load => [EPERM],
    kexec_file_load => [EPERM],
    init_module => [EPERM],
    finit_module => [EPERM],
    delete_module => [EPERM],
    reboot => [EPERM],
    swapon => [EPERM],
    swapoff => [EPERM],
    settimeofday => [EPERM],
    clock_settime => [EPERM],
    clock_adjtime => [EPERM],
    adjtimex => [EPERM],
    acct => [EPERM],
    quotactl => [EPERM],
    quotactl_fd => [EPERM],
    syslog => [EPERM],
    vhangup => [EPERM],
    iopl => [EPERM],
    ioperm => [EPERM],
    uselib => [EPERM],
    lookup_dcookie => [EPERM],
    personality_no_aslr => [EPERM],
    // Terminal injection (CVE-2017-5226), including a request number with
    // high bits set that the kernel truncates away.
    tiocsti => [EPERM],
    tiocsti_high_bits => [EPERM],
    tioclinux => [EPERM],
    // Packet and raw sockets, including flag and high-bit variants.
    socket_packet => [EPERM],
    socket_packet_dgram => [EPERM],
    socket_packet_high_bits => [EPERM],
    socket_sock_packet => [EPERM],
    socket_raw => [EPERM],
    socket_raw_flags => [EPERM],
    // No seccomp rule: refused by the kernel (no capabilities; uid 0 is not
    // mapped in the sandbox's user namespace, hence EINVAL).
    setuid_root => [EINVAL, EPERM],
    setgroups_root => [EPERM],
    capset_all => [EPERM],
    chroot => [EPERM],
    mknod_block => [EPERM],
    mknod_char => [EPERM],
    sethostname => [EPERM],
    chown_workspace_to_root => [EINVAL, EPERM],
    // Read-only mounts.
    write_usr => [EROFS, EACCES],
    write_root => [EROFS, EACCES],
    write_etc_passwd => [EROFS, EACCES],
    write_proc_sys => [EROFS, EACCES],
    // Hard links never cross from a read-only bind into the workspace.
    hardlink_usr => [EXDEV, EPERM],
    hardlink_etc => [EXDEV, EPERM],
    // The workspace is the only writable host place; ".." leaves it.
    write_outside_workspace => [EROFS, EACCES],
    // No device nodes in the host-visible workspace (no CAP_MKNOD, nodev).
    mknod_workspace => [EPERM],
    // No setuid/setgid bit on anything the sandbox makes (seccomp: the
    // workspace's files are owned on the host by its owner, root included).
    setuid_chmod => [EPERM],
    setuid_fchmod => [EPERM],
    setuid_fchmodat => [EPERM],
    setuid_fchmodat2 => [EPERM],
    setuid_create => [EPERM],
    setuid_mknod => [EPERM],
    setgid_mkdir => [EPERM],
    // Init is not dumpable: no ptrace-style access through /proc.
    read_proc1_mem => [EACCES, EPERM],
    write_init_exe => [EACCES, EPERM],
}

/// Attacks that `attack-all` runs and other tests assert with their own
/// logic (here, in `filesystem` and in `namespaces`).
const ASSERTED_ELSEWHERE: &[&str] = &[
    "i386_syscall",
    "x32_syscall",
    "kill_init",
    "read_shadow",
    "read_proc1_environ",
    "write_sysrq",
    "read_kcore",
    "read_kmsg",
    "list_dev",
    "leaked_fds",
    "see_host_pids",
    "net_interfaces",
];

#[test]
fn every_probe_attack_is_asserted() {
    let listed = probe_on_host(&["attacks"]);
    let listed: Vec<&str> = listed
        .as_array()
        .expect("`attacks` prints an array")
        .iter()
        .map(|v| v.as_str().expect("attack names are strings"))
        .collect();
    let unasserted: Vec<&&str> = listed
        .iter()
        .filter(|n| {
            !n.starts_with("control_") && !DENIED.contains(n) && !ASSERTED_ELSEWHERE.contains(n)
        })
        .collect();
    assert!(
        unasserted.is_empty(),
        "the probe has attacks no test asserts: {unasserted:?}"
    );
    let stale: Vec<&&str> = DENIED
        .iter()
        .chain(ASSERTED_ELSEWHERE)
        .filter(|n| !listed.contains(n))
        .collect();
    assert!(
        stale.is_empty(),
        "tests name attacks the probe does not run: {stale:?}"
    );
    assert!(
        listed.iter().any(|n| n.starts_with("control_")),
        "the probe lists no control operations"
    );
}

/// The controls are ordinary operations the sandbox must allow. They show
/// that the probe's attack code reports success when a call works, so the
/// failures above are the sandbox's doing.
#[test]
fn controls_succeed_inside_the_sandbox() {
    let listed = probe_on_host(&["attacks"]);
    let controls: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|n| n.starts_with("control_"))
        .collect();
    assert!(controls.len() >= 5, "too few controls: {controls:?}");
    for mode in modes() {
        for name in &controls {
            let r = result(mode, name);
            assert_eq!(
                r["succeeded"],
                Value::Bool(true),
                "[{mode}] control {name} failed: the sandbox refuses something ordinary, \
                 or the probe is broken:\n{}",
                pretty(r)
            );
        }
    }
}

/// `int 0x80` (the i386 ABI) must kill the process (SIGSYS), not return.
#[test]
#[cfg(target_arch = "x86_64")]
fn i386_syscall_kills_the_process() {
    for mode in modes() {
        let r = result(mode, "i386_syscall");
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] an i386 system call ran:\n{}",
            pretty(r)
        );
        assert_eq!(
            r["data"]["signal"].as_i64(),
            Some(SIGSYS),
            "[{mode}] an i386 system call did not end in SIGSYS:\n{}",
            pretty(r)
        );
    }
}

/// x32 system call numbers must never run: this kernel lacks x32, so the
/// kernel's ENOSYS or seccomp's kill are both acceptable.
#[test]
#[cfg(target_arch = "x86_64")]
fn x32_syscall_does_not_run() {
    for mode in modes() {
        let r = result(mode, "x32_syscall");
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] an x32 system call ran:\n{}",
            pretty(r)
        );
        let killed = r["data"]["signal"].as_i64() == Some(SIGSYS);
        let enosys = r["errno"].as_i64() == Some(ENOSYS);
        assert!(
            killed || enosys,
            "[{mode}] an x32 system call failed in an unexpected way:\n{}",
            pretty(r)
        );
    }
}

/// SIGKILL to the sandbox's init is refused or ignored; init survives.
#[test]
fn init_cannot_be_killed_from_inside() {
    for mode in modes() {
        let r = result(mode, "kill_init");
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] the payload killed the sandbox's init:\n{}",
            pretty(r)
        );
        assert!(
            r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("still alive")),
            "[{mode}] unexpected kill_init report:\n{}",
            pretty(r)
        );
    }
}

/// With `-it` the payload has a terminal of its own (its controlling
/// terminal, from the sandbox's devpts instance), and injecting keystrokes
/// into it, or through it into anything else, still fails: TIOCSTI and
/// TIOCLINUX stay denied by seccomp on fds 0-2 and /dev/tty.
#[test]
fn tiocsti_on_the_sandboxs_own_terminal() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let ws = sb.workspace().to_str().expect("utf-8 temp path").to_owned();
        for attack in ["tiocsti", "tiocsti_high_bits", "tioclinux"] {
            let r = on_terminal(
                &sb,
                &format!(
                    "$AIRLOCK run --timeout 60s -it --workspace {ws} -- sh -c \
                     'test -t 0 && test -t 1 && tty && /workspace/probe attack {attack}'; \
                     echo rc=$?"
                ),
                b"",
            );
            assert!(
                r.output.contains("/dev/pts/0\n"),
                "the payload had no terminal of its own:\n{}",
                r.describe()
            );
            let line = r
                .output
                .lines()
                .find(|l| l.starts_with('{'))
                .unwrap_or_else(|| panic!("no probe answer:\n{}", r.describe()));
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad probe answer ({e}):\n{}", r.describe()));
            assert_eq!(
                v["succeeded"],
                Value::Bool(false),
                "[{mode}] {attack} on the sandbox's terminal was NOT stopped:\n{}",
                pretty(&v)
            );
            assert_eq!(v["errno"].as_i64(), Some(EPERM), "[{mode}] {}", pretty(&v));
            if attack.starts_with("tiocsti") {
                // Every target was tried, /dev/tty (the new pty) included.
                let tried = v["data"].as_array().map_or(0, Vec::len);
                assert_eq!(tried, 4, "[{mode}] {}", pretty(&v));
                for a in v["data"].as_array().unwrap() {
                    assert_eq!(a["errno"].as_i64(), Some(EPERM), "[{mode}] {}", pretty(&v));
                }
            }
        }
    }
}
