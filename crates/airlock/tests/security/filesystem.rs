//! The sandbox's filesystem: host files it was not granted do not exist,
//! identity files are synthetic, system mounts are read-only, sensitive
//! /proc files are masked, /dev is minimal, /tmp and $HOME are capped and
//! forgotten, the workspace persists on the host, and Landlock backs it all.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::attacks::result;
use crate::common::*;

const MIB: u64 = 1 << 20;

/// /proc files airlock masks (mounts.rs: PROC_MASKED_FILES).
const PROC_MASKED: &[&str] = &[
    "/proc/sysrq-trigger",
    "/proc/kcore",
    "/proc/kmsg",
    "/proc/keys",
    "/proc/key-users",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/kallsyms",
    "/proc/pagetypeinfo",
    "/proc/config.gz",
];

#[test]
fn shadow_is_absent() {
    for mode in modes() {
        let r = result(mode, "read_shadow");
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] /etc/shadow is readable (host has one: {}):\n{}",
            Path::new("/etc/shadow").exists(),
            pretty(r)
        );
        assert_eq!(
            r["errno"].as_i64(),
            Some(ENOENT),
            "[{mode}] /etc/shadow should not exist inside:\n{}",
            pretty(r)
        );
    }
}

fn user_names(passwd: &str) -> BTreeSet<String> {
    passwd
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn passwd_and_group_are_synthetic() {
    let host_passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let host_group = fs::read_to_string("/etc/group").unwrap_or_default();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let p = sb.probe(&["read", "/etc/passwd"]);
        let inside = p["content"]
            .as_str()
            .unwrap_or_else(|| panic!("[{mode}] /etc/passwd unreadable:\n{}", pretty(&p)));
        assert!(
            inside
                .lines()
                .any(|l| l.starts_with("sandbox:x:1000:1000:")),
            "[{mode}] /etc/passwd has no sandbox user:\n{inside}"
        );
        assert_ne!(inside, host_passwd, "[{mode}] /etc/passwd is the host's");
        // No host account leaks in, except the conventional root/nobody.
        let leaked: Vec<String> = user_names(inside)
            .intersection(&user_names(&host_passwd))
            .filter(|n| *n != "root" && *n != "nobody")
            .cloned()
            .collect();
        assert!(
            leaked.is_empty(),
            "[{mode}] host accounts visible in /etc/passwd: {leaked:?}\n{inside}"
        );
        if let Some(host_root) = host_passwd.lines().find(|l| l.starts_with("root:")) {
            if !host_root.ends_with("nologin") {
                assert!(
                    !inside.lines().any(|l| l == host_root),
                    "[{mode}] the host's root line {host_root:?} is in /etc/passwd:\n{inside}"
                );
            }
        }
        let g = sb.probe(&["read", "/etc/group"]);
        let inside = g["content"].as_str().unwrap_or_default();
        assert!(
            inside.lines().any(|l| l.starts_with("sandbox:x:1000:")),
            "[{mode}] /etc/group has no sandbox group:\n{}",
            pretty(&g)
        );
        let leaked: Vec<String> = user_names(inside)
            .intersection(&user_names(&host_group))
            .filter(|n| !["root", "nogroup"].contains(&n.as_str()))
            .cloned()
            .collect();
        assert!(
            leaked.is_empty(),
            "[{mode}] host groups visible in /etc/group: {leaked:?}\n{inside}"
        );
    }
}

#[test]
fn host_files_outside_the_grants_are_unreadable() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        // A world-readable secret right next to the workspace.
        let secret = sb.outside().join("secret.txt");
        fs::write(&secret, "airlock-test-secret-token\n").unwrap();
        let secret_s = secret.to_str().unwrap();
        let base = probe_on_host(&["attack", "read_host_file", secret_s]);
        assert_eq!(
            base["succeeded"],
            Value::Bool(true),
            "baseline: the probe cannot read {secret_s} even on the host:\n{}",
            pretty(&base)
        );
        // A symlink in the workspace pointing at it.
        std::os::unix::fs::symlink(&secret, sb.workspace().join("link")).unwrap();
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        for path in [
            secret_s,
            "/workspace/link",
            manifest,
            "/root/.bashrc",
            "/root/.profile",
        ] {
            let r = sb.probe(&["attack", "read_host_file", path]);
            assert_eq!(
                r["succeeded"],
                Value::Bool(false),
                "[{mode}] a host file outside the grants is readable: {path}\n{}",
                pretty(&r)
            );
            assert_eq!(
                r["errno"].as_i64(),
                Some(ENOENT),
                "[{mode}] {path} should not exist inside:\n{}",
                pretty(&r)
            );
        }
        // The host root is detached, not parked somewhere.
        let st = sb.probe(&["stat", "/oldroot", "/newroot", "/root", "/home/sandbox"]);
        for gone in ["/oldroot", "/newroot", "/root"] {
            assert_eq!(
                st[gone]["exists"],
                Value::Bool(false),
                "[{mode}] {gone} exists inside:\n{}",
                pretty(&st)
            );
        }
        assert_eq!(
            st["/home/sandbox"]["exists"],
            Value::Bool(true),
            "[{mode}] control: $HOME missing:\n{}",
            pretty(&st)
        );
    }
}

#[test]
fn system_mounts_are_read_only_and_scratch_is_writable() {
    let ro = ["/", "/usr", "/etc/passwd", "/proc/sys", "/dev"];
    let rw = ["/tmp", "/home/sandbox", "/workspace"];
    for mode in modes() {
        let mut args = vec!["statfs"];
        args.extend(ro);
        args.extend(rw);
        let s = Sandbox::new(mode).probe(&args);
        for p in ro {
            assert_eq!(
                s[p]["ro"],
                Value::Bool(true),
                "[{mode}] {p} is not mounted read-only:\n{}",
                pretty(&s)
            );
        }
        for p in ["/usr", "/tmp", "/home/sandbox", "/workspace", "/dev"] {
            assert_eq!(
                s[p]["nosuid"],
                Value::Bool(true),
                "[{mode}] {p} is not nosuid:\n{}",
                pretty(&s)
            );
        }
        for p in ["/usr", "/tmp", "/home/sandbox", "/workspace"] {
            assert_eq!(
                s[p]["nodev"],
                Value::Bool(true),
                "[{mode}] {p} is not nodev:\n{}",
                pretty(&s)
            );
        }
        for p in rw {
            assert_eq!(
                s[p]["ro"],
                Value::Bool(false),
                "[{mode}] control: {p} should be writable:\n{}",
                pretty(&s)
            );
        }
    }
}

#[test]
fn sensitive_proc_files_are_masked() {
    // Baseline on the host (never /proc/kmsg: reading it consumes the log).
    let host_paths: Vec<&str> = PROC_MASKED
        .iter()
        .copied()
        .filter(|p| *p != "/proc/kmsg" && *p != "/proc/sysrq-trigger")
        .collect();
    let mut host_args = vec!["readable"];
    host_args.extend(&host_paths);
    let host = probe_on_host(&host_args);
    let readable_on_host: Vec<&str> = host_paths
        .iter()
        .copied()
        .filter(|p| host[*p]["bytes"].as_u64().is_some_and(|n| n > 0))
        .collect();
    assert!(
        !readable_on_host.is_empty(),
        "baseline: none of {host_paths:?} is readable on the host:\n{}",
        pretty(&host)
    );

    for mode in modes() {
        let mut args = vec!["readable"];
        args.extend(PROC_MASKED);
        let inside = Sandbox::new(mode).probe(&args);
        for p in PROC_MASKED {
            let v = &inside[*p];
            assert!(
                v["bytes"].as_u64().is_none_or(|n| n == 0),
                "[{mode}] {p} is readable inside (host: {}):\n{}",
                pretty(&host[*p]),
                pretty(&inside)
            );
        }
        for (name, path) in [
            ("write_sysrq", "/proc/sysrq-trigger"),
            ("read_kcore", "/proc/kcore"),
        ] {
            let r = result(mode, name);
            assert_eq!(
                r["succeeded"],
                Value::Bool(false),
                "[{mode}] {name} succeeded:\n{}",
                pretty(r)
            );
            let errno = r["errno"].as_i64();
            let allowed: &[i64] = if Path::new(path).exists() {
                &[EROFS, EACCES, EPERM]
            } else {
                // The kernel has no such file; it must not appear inside either.
                &[ENOENT]
            };
            // An empty masked file opens for reading but yields nothing.
            let empty_read = name == "read_kcore"
                && errno.is_none()
                && r["detail"].as_str().is_some_and(|d| d.contains("empty"));
            assert!(
                empty_read || errno.is_some_and(|e| allowed.contains(&e)),
                "[{mode}] {name}: errno {errno:?}, expected one of {allowed:?}:\n{}",
                pretty(r)
            );
        }
        for name in ["read_kmsg", "read_proc1_environ"] {
            let r = result(mode, name);
            assert_eq!(
                r["succeeded"],
                Value::Bool(false),
                "[{mode}] {name} succeeded:\n{}",
                pretty(r)
            );
        }
    }
}

/// The payload holds stdin, stdout and stderr only, none of them a
/// directory, and starts in the workspace (a leaked fd or cwd pointing at a
/// host directory is an escape: CVE-2024-21626).
#[test]
fn no_file_descriptor_or_cwd_leads_outside() {
    for mode in modes() {
        let r = result(mode, "leaked_fds");
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] the payload holds extra or directory fds:\n{}",
            pretty(r)
        );
        let fds = r["data"]["fds"].as_object().expect("fd map");
        assert_eq!(
            fds.keys().map(String::as_str).collect::<Vec<_>>(),
            ["0", "1", "2"],
            "[{mode}] control: fds 0-2 should be listed:\n{}",
            pretty(r)
        );
        let id = Sandbox::new(mode).probe(&["identity"]);
        assert_eq!(
            id["cwd"].as_str(),
            Some("/workspace"),
            "[{mode}] the payload does not start in /workspace:\n{}",
            pretty(&id)
        );
    }
}

#[test]
fn dev_has_only_harmless_devices() {
    let allowed: BTreeSet<&str> = [
        "null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr", "shm",
    ]
    .into();
    for mode in modes() {
        let r = result(mode, "list_dev");
        assert_eq!(
            r["succeeded"],
            Value::Bool(false),
            "[{mode}] /dev exposes dangerous devices:\n{}",
            pretty(r)
        );
        let entries = r["data"]["entries"].as_array().expect("entries");
        let mut names = BTreeSet::new();
        for e in entries {
            let name = e["name"].as_str().unwrap();
            names.insert(name);
            assert_ne!(
                e["type"].as_str(),
                Some("block"),
                "[{mode}] block device /dev/{name}:\n{}",
                pretty(r)
            );
            assert!(
                allowed.contains(name),
                "[{mode}] unexpected /dev/{name}:\n{}",
                pretty(r)
            );
        }
        for dev in ["null", "zero", "urandom"] {
            assert!(
                entries
                    .iter()
                    .any(|e| e["name"] == dev && e["type"] == "char"),
                "[{mode}] control: /dev/{dev} is not a character device:\n{}",
                pretty(r)
            );
        }
    }
}

/// The default profile caps /tmp and $HOME at 64M each.
#[test]
fn tmp_and_home_are_size_capped() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let s = sb.probe(&["statfs", "/tmp", "/home/sandbox"]);
        for p in ["/tmp", "/home/sandbox"] {
            assert_eq!(
                s[p]["bytes_total"].as_u64(),
                Some(64 * MIB),
                "[{mode}] {p} is not a 64M filesystem:\n{}",
                pretty(&s)
            );
        }
        for dir in ["/tmp", "/home/sandbox"] {
            let f = sb.probe(&["fill", dir]);
            assert_eq!(
                f["errno"].as_i64(),
                Some(ENOSPC),
                "[{mode}] filling {dir} did not stop with ENOSPC:\n{}",
                pretty(&f)
            );
            let bytes = f["bytes"].as_u64().unwrap_or(0);
            assert!(
                (56 * MIB..=64 * MIB).contains(&bytes),
                "[{mode}] {dir} took {bytes} bytes, not about 64M:\n{}",
                pretty(&f)
            );
        }
    }
}

#[test]
fn only_the_workspace_survives_a_run() {
    let scratch = [
        "/tmp/airlock-persist",
        "/home/sandbox/airlock-persist",
        "/dev/shm/airlock-persist",
    ];
    let kept = "/workspace/airlock-persist";
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let mut script = String::new();
        for p in scratch.iter().chain([&kept]) {
            script.push_str(&format!("echo persisted > {p} && "));
        }
        script.push_str("exec /workspace/probe stat");
        for p in scratch.iter().chain([&kept]) {
            script.push(' ');
            script.push_str(p);
        }
        let ws = sb.workspace().to_str().unwrap();
        let first = sb.airlock(&[
            "run",
            "--workspace",
            ws,
            "--timeout",
            RUN_TIMEOUT,
            "--",
            "/bin/sh",
            "-c",
            &script,
        ]);
        assert_eq!(first.code(), Some(0), "{}", first.describe());
        let before = first.probe_json();
        for p in scratch.iter().chain([&kept]) {
            assert_eq!(
                before[*p]["exists"],
                Value::Bool(true),
                "[{mode}] control: {p} was not written in the first run:\n{}",
                pretty(&before)
            );
        }

        let mut args = vec!["stat"];
        args.extend(scratch);
        args.push(kept);
        let after = sb.probe(&args);
        for p in scratch {
            assert_eq!(
                after[p]["exists"],
                Value::Bool(false),
                "[{mode}] {p} survived into the next sandbox:\n{}",
                pretty(&after)
            );
        }
        assert_eq!(
            after[kept]["exists"],
            Value::Bool(true),
            "[{mode}] the workspace file did not survive:\n{}",
            pretty(&after)
        );

        let host = sb.workspace().join("airlock-persist");
        assert_eq!(
            fs::read_to_string(&host).ok().as_deref(),
            Some("persisted\n"),
            "[{mode}] the workspace file is not on the host at {}",
            host.display()
        );
        let owner = owner_of(&host);
        assert_ne!(
            owner, 0,
            "[{mode}] the sandbox wrote a root-owned host file"
        );
        assert_eq!(
            owner,
            workspace_owner(mode),
            "[{mode}] the workspace file's host owner is not the workspace's owner"
        );
    }
}

/// The Landlock ABI this kernel offers, from `airlock doctor`.
fn kernel_landlock_abi() -> u64 {
    let out = std::process::Command::new(airlock_bin())
        .arg("doctor")
        .output()
        .expect("run airlock doctor");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("landlock"))
        .and_then(|l| l.split("ABI ").nth(1))
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn landlock_is_fully_enforced() {
    let abi = kernel_landlock_abi();
    for mode in modes() {
        let (report, _) = Sandbox::new(mode).probe_with_report(&["identity"]);
        let ll = &report["landlock"];
        assert_eq!(
            ll["abi"].as_u64(),
            Some(abi),
            "[{mode}] the report's Landlock ABI differs from the kernel's ({abi}):\n{}",
            pretty(&report)
        );
        // The ruleset asks for ABI 6 features; from there on all of it applies.
        let expected = match abi {
            0 => "none",
            1..=5 => "partial",
            _ => "full",
        };
        assert_eq!(
            ll["enforcement"].as_str(),
            Some(expected),
            "[{mode}] Landlock enforcement on a kernel with ABI {abi}:\n{}",
            pretty(&report)
        );
    }
}

/// Run `attack stdin_escape` with airlock's stdin opened on `path`.
fn stdin_escape_with(sb: &Sandbox, path: &Path) -> (Run, Value) {
    let ws = sb.workspace().to_str().unwrap();
    let stdin = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let r = sb.airlock_with(
        &[
            "run",
            "--workspace",
            ws,
            "--timeout",
            RUN_TIMEOUT,
            "--",
            "/workspace/probe",
            "attack",
            "stdin_escape",
        ],
        |c| {
            c.stdin(stdin);
        },
    );
    let v = if r.code() == Some(0) {
        r.probe_json()
    } else {
        Value::Null
    };
    (r, v)
}

/// airlock passes its stdin to the payload unless it is a terminal. When
/// that stdin is a host DIRECTORY, the payload holds an fd outside its
/// mount namespace: getdents64 on it lists the host directory and fstatat
/// beneath it probes any host path (Landlock only checks new opens, so it
/// stops reading file contents, and nothing stops anything on a kernel
/// without Landlock). airlock must either refuse such a stdin or not pass
/// it through.
#[test]
fn stdin_from_a_host_directory_reveals_nothing() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let secret_name = "airlock-secret-file-name-4c1d";
        let dir = sb.outside().join("stdin-dir");
        fs::create_dir(&dir).unwrap();
        fs::create_dir(dir.join("etc")).unwrap();
        fs::write(dir.join("etc/passwd"), "host-only\n").unwrap();
        fs::write(dir.join(secret_name), "x").unwrap();
        let (r, v) = stdin_escape_with(&sb, &dir);
        if r.code() == Some(125) {
            continue; // refusing such a stdin is fine
        }
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        assert_eq!(
            v["succeeded"],
            Value::Bool(false),
            "[{mode}] a host directory passed as stdin is reachable from the sandbox:\n{}",
            pretty(&v)
        );
        assert!(
            !v.to_string().contains(secret_name),
            "[{mode}] a host file name leaked through stdin:\n{}",
            pretty(&v)
        );
    }
}

/// A host file given as stdin reaches the payload only as a pipe of its
/// bytes: it can never be reopened for writing through /proc/self/fd/0
/// (even when the sandbox's uid owns it).
#[test]
fn stdin_from_a_host_file_cannot_be_reopened_for_writing() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let victim = sb.outside().join("victim.txt");
        fs::write(&victim, "original\n").unwrap();
        sb.chown(&victim); // writable by the sandbox's host uid
        let (r, v) = stdin_escape_with(&sb, &victim);
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        // airlock never hands a host file over as fd 0: it copies the
        // bytes into a pipe, so there is nothing to reopen.
        assert_eq!(
            v["data"]["fd0_type"].as_str(),
            Some("fifo"),
            "[{mode}] a host file given as stdin reached the sandbox as an fd:\n{}",
            pretty(&v)
        );
        assert_eq!(
            v["succeeded"],
            Value::Bool(false),
            "[{mode}] the payload reopened its stdin file for writing:\n{}",
            pretty(&v)
        );
        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            "original\n",
            "[{mode}] the host file given as stdin was modified"
        );
    }
}

/// Open fds that the caller leaves inheritable (here a host directory, /
/// and a writable host file) must not reach the payload.
#[test]
fn fds_inherited_by_airlock_do_not_reach_the_payload() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let victim = sb.outside().join("inherited.txt");
        fs::write(&victim, "original\n").unwrap();
        let base = sb.command();
        let mut c = std::process::Command::new("/bin/sh");
        c.arg("-c")
            .arg(r#"v="$1"; shift; exec 7</ 8</tmp 9>>"$v"; exec "$@""#)
            .arg("sh")
            .arg(&victim)
            .arg(base.get_program())
            .args(base.get_args())
            .args([
                "run",
                "--workspace",
                sb.workspace().to_str().unwrap(),
                "--timeout",
                RUN_TIMEOUT,
                "--",
                "/workspace/probe",
                "attack",
                "leaked_fds",
            ])
            .current_dir("/")
            .stdin(std::process::Stdio::null());
        let out = c.output().expect("run sh");
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "[{mode}] no probe JSON ({e}): {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(
            v["succeeded"],
            Value::Bool(false),
            "[{mode}] fds inherited by airlock reached the payload:\n{}",
            pretty(&v)
        );
        assert_eq!(
            v["data"]["fds"].as_object().map(|m| m.len()),
            Some(3),
            "[{mode}] the payload should hold exactly fds 0-2:\n{}",
            pretty(&v)
        );
    }
}
