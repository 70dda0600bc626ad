//! Rootless behaviour: run unprivileged (through `setpriv` when the tests
//! run as root), airlock maps only the caller's own uid, denies setgroups,
//! and degrades cgroup limits with a note instead of failing; run as root,
//! it never hands the sandbox host uid 0.

#[path = "../common/mod.rs"]
mod common;

use common::*;

/// The `inside outside count` of a one-line id map.
fn single_mapping(text: &str) -> Vec<u64> {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected one mapping, got {text:?}");
    lines[0]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn rootless_maps_only_the_callers_uid() {
    let sb = Sandbox::new(Mode::Rootless);
    let (report, id) = sb.probe_with_report(&["identity"]);
    let me = u64::from(workspace_owner(Mode::Rootless));
    assert_eq!(
        report["host_uid"].as_u64(),
        Some(me),
        "host_uid is not the caller's uid:\n{}",
        pretty(&report)
    );
    if is_root() {
        assert_eq!(me, 65534, "rootless runs go through setpriv as nobody");
    }
    let uid = single_mapping(id["uid_map"].as_str().unwrap());
    assert_eq!(
        uid,
        vec![id["uid"].as_u64().unwrap(), me, 1],
        "{}",
        pretty(&id)
    );
    let gid = single_mapping(id["gid_map"].as_str().unwrap());
    assert_eq!(gid[2], 1, "{}", pretty(&id));
    assert_ne!(gid[1], 0, "{}", pretty(&id));
}

#[test]
fn rootless_denies_setgroups() {
    let sb = Sandbox::new(Mode::Rootless);
    let r = sb.probe(&["read", "/proc/self/setgroups"]);
    assert_eq!(
        r["content"].as_str().map(str::trim),
        Some("deny"),
        "an unprivileged user namespace must deny setgroups:\n{}",
        pretty(&r)
    );
}

/// Without cgroup delegation the default profile ("best-effort") still
/// runs, and the report says why limits are degraded.
#[test]
fn rootless_without_cgroups_runs_and_says_why() {
    let sb = Sandbox::new(Mode::Rootless);
    let (report, _) = sb.probe_with_report(&["identity"]);
    let cg = &report["cgroup"];
    if cg["version"].is_null() {
        assert!(
            cg["note"].as_str().is_some_and(|n| !n.is_empty()),
            "cgroups unused but no note says why:\n{}",
            pretty(&report)
        );
    } else {
        assert!(
            cg["controllers"].as_array().is_some_and(|c| !c.is_empty()),
            "a cgroup without controllers:\n{}",
            pretty(&report)
        );
    }
}

/// Run as root without a workspace, the sandbox gets an unused high uid.
#[test]
fn root_without_a_workspace_uses_an_unused_high_uid() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let sb = Sandbox::new(Mode::Root);
    let r = sb.airlock(&[
        "run",
        "--json",
        "--timeout",
        RUN_TIMEOUT,
        "--",
        "/bin/cat",
        "/proc/self/uid_map",
    ]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let host_uid = r.json()["host_uid"].as_u64().unwrap();
    assert!(
        host_uid >= 2_000_000_000,
        "host_uid {host_uid} is not in airlock's unused high range\n{}",
        r.describe()
    );
    let map = single_mapping(r.stderr().trim());
    assert_eq!(map[1], host_uid, "{}", r.describe());
}
