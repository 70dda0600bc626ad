//! Who the payload is: an unprivileged uid inside and outside, no
//! capabilities in any set, no_new_privs, a seccomp filter, its own session
//! and no terminal.

use std::fs;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::*;

/// (mode, `--json` report, probe identity) for every mode.
fn identities() -> Vec<(Mode, Value, Value)> {
    modes()
        .into_iter()
        .map(|mode| {
            let (report, id) = Sandbox::new(mode).probe_with_report(&["identity"]);
            (mode, report, id)
        })
        .collect()
}

/// The `inside outside count` triple of a one-line id map.
fn map_line(mode: Mode, id: &Value, key: &str) -> (u64, u64, u64) {
    let text = id[key]
        .as_str()
        .unwrap_or_else(|| panic!("[{mode}] no {key} in\n{}", pretty(id)));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "[{mode}] {key} must map exactly one id:\n{}",
        pretty(id)
    );
    let f: Vec<u64> = lines[0]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (f[0], f[1], f[2])
}

#[test]
fn payload_and_host_ids_are_never_root() {
    for (mode, report, id) in identities() {
        let ctx = || {
            format!(
                "[{mode}]\nreport: {}\nprobe: {}",
                pretty(&report),
                pretty(&id)
            )
        };
        for k in ["uid", "euid", "gid", "egid"] {
            let v = id[k]
                .as_u64()
                .unwrap_or_else(|| panic!("no {k}: {}", ctx()));
            assert_ne!(v, 0, "{k} is 0 inside the sandbox: {}", ctx());
        }
        let groups = id["groups"].as_array().expect("groups");
        assert!(
            !groups.iter().any(|g| g.as_u64() == Some(0)),
            "group 0 among the supplementary groups: {}",
            ctx()
        );
        let host_uid = report["host_uid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no numeric host_uid: {}", ctx()));
        assert_ne!(host_uid, 0, "the sandbox runs as host root: {}", ctx());
        assert!(
            is_expected_host_uid(mode, host_uid),
            "host_uid {host_uid} is not the expected unprivileged uid: {}",
            ctx()
        );
        // The kernel's view agrees with the report: uid inside -> host_uid.
        let (inside, outside, count) = map_line(mode, &id, "uid_map");
        assert_eq!(
            (inside, outside, count),
            (id["uid"].as_u64().unwrap(), host_uid, 1),
            "uid_map does not map the payload's uid to host_uid alone: {}",
            ctx()
        );
        let (_, gid_outside, gid_count) = map_line(mode, &id, "gid_map");
        assert_ne!(gid_outside, 0, "gid_map maps to host gid 0: {}", ctx());
        assert_eq!(gid_count, 1, "gid_map maps more than one gid: {}", ctx());
    }
}

#[test]
fn every_capability_set_is_empty() {
    for (mode, _, id) in identities() {
        for set in ["cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb"] {
            let v = id[set].as_str().unwrap_or_else(|| {
                panic!("[{mode}] {set} missing from the probe:\n{}", pretty(&id))
            });
            assert!(
                u64::from_str_radix(v, 16) == Ok(0),
                "[{mode}] {set} is {v}, not empty:\n{}",
                pretty(&id)
            );
        }
    }
}

#[test]
fn no_new_privs_and_a_seccomp_filter_are_set() {
    for (mode, _, id) in identities() {
        assert_eq!(
            id["no_new_privs"].as_i64(),
            Some(1),
            "[{mode}] NoNewPrivs is not 1:\n{}",
            pretty(&id)
        );
        assert_eq!(
            id["seccomp"].as_i64(),
            Some(2),
            "[{mode}] Seccomp is not 2 (filter mode):\n{}",
            pretty(&id)
        );
    }
}

#[test]
fn payload_leads_its_own_session_without_a_terminal() {
    for (mode, _, id) in identities() {
        assert_eq!(
            id["session_leader"],
            Value::Bool(true),
            "[{mode}] the payload is not a session leader (setsid missing):\n{}",
            pretty(&id)
        );
        assert_eq!(
            id["tty_openable"],
            Value::Bool(false),
            "[{mode}] /dev/tty opens inside the sandbox:\n{}",
            pretty(&id)
        );
    }
}

/// Run airlock inside `script`, so that its stdin, stdout and stderr are a
/// real pseudo-terminal; the sandbox must still get no terminal at all, and
/// TIOCSTI must be refused.
#[test]
fn a_caller_terminal_never_reaches_the_sandbox() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let mut words: Vec<String> = Vec::new();
        let cmd = sb.command();
        words.push(cmd.get_program().to_string_lossy().into_owned());
        words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
        words.extend(
            [
                "run",
                "--workspace",
                sb.workspace().to_str().unwrap(),
                "--timeout",
                RUN_TIMEOUT,
                "--",
                "/workspace/probe",
            ]
            .map(String::from),
        );
        for probe_args in [&["identity"][..], &["attack", "tiocsti"][..]] {
            let mut line = words.clone();
            line.extend(probe_args.iter().map(|s| s.to_string()));
            assert!(
                line.iter().all(|w| !w.contains(['\'', ' ', '"', '\\'])),
                "unquotable command line {line:?}"
            );
            let out = Command::new("script")
                .args(["-qec", &line.join(" "), "/dev/null"])
                .current_dir("/")
                .stdin(Stdio::null())
                .output()
                .expect("run `script` (util-linux)");
            let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
            let v: Value = text
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str(l).ok())
                .unwrap_or_else(|| {
                    panic!(
                        "[{mode}] no probe JSON through script {line:?}: {text}\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            if probe_args[0] == "identity" {
                assert_eq!(
                    v["fd_is_tty"],
                    serde_json::json!([false, false, false]),
                    "[{mode}] the caller's terminal reached the sandbox's stdio:\n{}",
                    pretty(&v)
                );
                assert_eq!(
                    v["tty_openable"],
                    Value::Bool(false),
                    "[{mode}] /dev/tty opens:\n{}",
                    pretty(&v)
                );
            } else {
                assert_eq!(
                    v["succeeded"],
                    Value::Bool(false),
                    "[{mode}] TIOCSTI worked with a terminal attached:\n{}",
                    pretty(&v)
                );
                assert_eq!(
                    v["errno"].as_i64(),
                    Some(EPERM),
                    "[{mode}] TIOCSTI not refused by seccomp:\n{}",
                    pretty(&v)
                );
            }
        }
    }
}

/// Two root-run sandboxes alive at once each have a host uid of their own,
/// from airlock's reserved range, that no account in /etc/passwd owns; and
/// their clocks start near zero (time namespace), so the host's uptime
/// stays hidden.
#[test]
fn concurrent_root_sandboxes_have_their_own_host_uids_and_clocks_from_zero() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let sb = Sandbox::new(Mode::Root);
    let start = || {
        let mut c = sb.command();
        c.args([
            "run",
            "--json",
            "--timeout",
            RUN_TIMEOUT,
            "--",
            "sh",
            "-c",
            "cat /proc/uptime; sleep 2",
        ]);
        c.spawn().expect("start airlock")
    };
    let (a, b) = (start(), start());
    let mut uids = Vec::new();
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        uids.push(report["host_uid"].as_u64().unwrap());
        let uptime: f64 = String::from_utf8_lossy(&out.stderr)
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no uptime: {out:?}"));
        assert!(uptime < 10.0, "/proc/uptime inside reads {uptime} s");
    }
    assert_ne!(uids[0], uids[1], "two live sandboxes share a host uid");
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let accounts: Vec<u64> = passwd
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    for u in &uids {
        assert!(is_expected_host_uid(Mode::Root, *u), "host uid {u}");
        assert!(!accounts.contains(u), "host uid {u} belongs to an account");
    }
    let host_uptime: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        host_uptime > 10.0,
        "the host's own uptime ({host_uptime} s) is too short to tell the clocks apart"
    );
}
