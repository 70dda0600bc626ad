//! The sandbox's namespaces: its own hostname, a network with only `lo`
//! (so the host's loopback services are out of reach), and a pid namespace
//! whose pid 1 is airlock's init and which shows no host process.

use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};

use serde_json::Value;

use crate::attacks::result;
use crate::common::*;

#[test]
fn hostname_is_the_sandboxes_own() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for mode in modes() {
        let id = Sandbox::new(mode).probe(&["identity"]);
        assert_eq!(
            id["hostname"].as_str(),
            Some("airlock"),
            "[{mode}] hostname inside (host's is {:?}):\n{}",
            host.trim(),
            pretty(&id)
        );
    }
}

#[test]
fn network_has_only_loopback() {
    for mode in modes() {
        let r = result(mode, "net_interfaces");
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] the sandbox sees network interfaces besides lo:\n{}",
            pretty(r)
        );
        assert_eq!(
            r["data"]["interfaces"],
            serde_json::json!(["lo"]),
            "[{mode}] /proc/net/dev does not list exactly lo:\n{}",
            pretty(r)
        );
    }
}

#[test]
fn pid_one_is_airlock_init_and_host_processes_are_invisible() {
    for mode in modes() {
        let id = Sandbox::new(mode).probe(&["identity"]);
        let init = id["pid1_cmdline"]
            .as_array()
            .unwrap_or_else(|| panic!("[{mode}] /proc/1/cmdline unreadable:\n{}", pretty(&id)));
        assert!(
            init.iter()
                .filter_map(Value::as_str)
                .any(|a| a == "airlock-init" || a == "__airlock-jail-init"),
            "[{mode}] pid 1 is not airlock's init:\n{}",
            pretty(&id)
        );
        assert!(
            id["pid"].as_i64().is_some_and(|p| (2..10).contains(&p)),
            "[{mode}] the payload's pid is not a small number of a fresh pid namespace:\n{}",
            pretty(&id)
        );

        let r = result(mode, "see_host_pids");
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] the sandbox sees processes that are not its own:\n{}",
            pretty(r)
        );
        let pids = r["data"]["pids"].as_array().expect("pid list");
        // attack-all: init, the probe, and the probe's child running the attack.
        assert!(
            (2..=4).contains(&pids.len()),
            "[{mode}] /proc lists {} pids:\n{}",
            pids.len(),
            pretty(r)
        );
    }
}

/// The host sees many processes with the same probe code: the check can fail.
#[test]
fn host_baseline_sees_host_pids() {
    let r = probe_on_host(&["attack", "see_host_pids"]);
    assert_eq!(
        r["succeeded"],
        Value::Bool(true),
        "the probe cannot see host processes even on the host; the sandbox check proves nothing:\n{}",
        pretty(&r)
    );
}

#[test]
fn host_loopback_tcp_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen on host loopback");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();

    // The same probe code reaches the listener from the host.
    let base = probe_on_host(&["attack", "connect_host", &addr]);
    assert_eq!(
        base["succeeded"],
        Value::Bool(true),
        "baseline: the probe cannot reach {addr} even from the host:\n{}",
        pretty(&base)
    );
    while listener.accept().is_ok() {} // drain the baseline connection

    for mode in modes() {
        let r = Sandbox::new(mode).probe(&["attack", "connect_host", &addr]);
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] the sandbox reached the host's loopback listener {addr}:\n{}",
            pretty(&r)
        );
        assert_eq!(
            r["errno"].as_i64(),
            Some(ECONNREFUSED),
            "[{mode}] connecting to {addr} should meet the sandbox's own empty loopback:\n{}",
            pretty(&r)
        );
        assert!(
            listener.accept().is_err(),
            "[{mode}] the host listener accepted a connection during the sandbox run"
        );
    }
}

/// A host SysV shared memory segment, removed on drop.
struct HostShm(String);

impl HostShm {
    fn new() -> HostShm {
        let out = std::process::Command::new("ipcmk")
            .args(["-M", "4096"])
            .output()
            .expect("run ipcmk (util-linux)");
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text
            .trim()
            .rsplit(' ')
            .next()
            .filter(|id| id.parse::<i32>().is_ok())
            .unwrap_or_else(|| panic!("unexpected ipcmk output: {text:?}"));
        HostShm(id.to_string())
    }
}

impl Drop for HostShm {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ipcrm")
            .args(["-m", &self.0])
            .status();
    }
}

/// The sandbox has its own IPC namespace: host SysV objects do not exist.
#[test]
fn host_sysv_ipc_is_invisible() {
    let shm = HostShm::new();
    let base = probe_on_host(&["attack", "sysv_shm", &shm.0]);
    assert_eq!(
        base["succeeded"],
        Value::Bool(true),
        "baseline: the probe cannot see shm {} even on the host:\n{}",
        shm.0,
        pretty(&base)
    );
    for mode in modes() {
        let r = Sandbox::new(mode).probe(&["attack", "sysv_shm", &shm.0]);
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] the sandbox sees the host's SysV shm {}:\n{}",
            shm.0,
            pretty(&r)
        );
        assert_eq!(
            r["errno"].as_i64(),
            Some(EINVAL),
            "[{mode}] shm {} should not exist in the sandbox's IPC namespace:\n{}",
            shm.0,
            pretty(&r)
        );
    }
}

/// Abstract unix sockets belong to the network namespace (X11 and D-Bus
/// listen there); the host's must be out of reach.
#[test]
fn host_abstract_unix_sockets_are_unreachable() {
    let name = format!("airlock-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = UnixListener::bind_addr(&addr).expect("bind an abstract socket");
    listener.set_nonblocking(true).unwrap();

    let base = probe_on_host(&["attack", "connect_abstract", &name]);
    assert_eq!(
        base["succeeded"],
        Value::Bool(true),
        "baseline: the probe cannot reach @{name} even from the host:\n{}",
        pretty(&base)
    );
    while listener.accept().is_ok() {}

    for mode in modes() {
        let r = Sandbox::new(mode).probe(&["attack", "connect_abstract", &name]);
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] the sandbox reached the host's abstract socket @{name}:\n{}",
            pretty(&r)
        );
        assert_eq!(
            r["errno"].as_i64(),
            Some(ECONNREFUSED),
            "[{mode}] @{name} should not exist in the sandbox's network namespace:\n{}",
            pretty(&r)
        );
        assert!(
            listener.accept().is_err(),
            "[{mode}] the host's abstract socket accepted a connection"
        );
    }
}
