//! Resource-limit attacks from inside: fork bomb, memory bomb, /tmp fill,
//! fd bomb, output flood, file-size bomb. Each must end bounded, reported
//! with the right reason, with the host unaffected.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) use crate::common::{is_root, modes as as_modes, Mode};

pub(crate) fn airlock(mode: Mode) -> Command {
    match (mode, is_root()) {
        (Mode::Rootless, true) => {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                crate::common::shared_public_airlock().to_str().unwrap(),
            ]);
            c.current_dir("/");
            c
        }
        _ => Command::new(env!("CARGO_BIN_EXE_airlock")),
    }
}

/// `airlock run --json ARGS`, returning the parsed report.
pub(crate) fn json_run(mode: Mode, args: &[&str], stdin: Option<&str>) -> Value {
    let mut cmd = airlock(mode);
    cmd.arg("run").arg("--json").args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{mode:?}: no JSON report ({e}); status {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn limits(r: &Value) -> Vec<String> {
    r["limits_hit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn has_cgroups(r: &Value) -> bool {
    !r["cgroup"]["version"].is_null()
}

#[test]
fn fork_bomb_is_bounded_by_pids() {
    for mode in as_modes() {
        let t = Instant::now();
        // A real fork bomb; it can only end by the timeout. The shell
        // starts its sleep first and then forks just once more, for a
        // subshell that starts the bomb, so it never needs a fork once the
        // pids are used up (a failed fork would end the shell with status
        // 2 instead; dash forks each side of a pipeline from the shell
        // itself, so the bomb's own first forks race the pids).
        let r = json_run(
            mode,
            &[
                "--pids",
                "64",
                "--timeout",
                "3s",
                "--",
                "/bin/sh",
                "-c",
                "sleep 60 & (b() { b | b & }; b); wait",
            ],
            None,
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{mode:?}: fork bomb not bounded in time"
        );
        assert_eq!(r["reason"]["kind"], "timeout", "{mode:?}: {r}");
        if has_cgroups(&r) {
            assert!(
                limits(&r).contains(&"pids".into()),
                "{mode:?}: pids limit not reported: {r}"
            );
        } else {
            assert!(
                r["cgroup"]["note"].as_str().is_some_and(|n| !n.is_empty()),
                "{mode:?}: missing cgroup note: {r}"
            );
        }
        // The host still forks fine.
        assert!(Command::new("/bin/true").status().unwrap().success());
    }
}

#[test]
fn memory_bomb_is_killed_at_the_limit() {
    for mode in as_modes() {
        let r = json_run(
            mode,
            &[
                "--mem",
                "96M",
                "--timeout",
                "20s",
                "--",
                "python3",
                "-c",
                "x=[]\nwhile True: x.append(bytearray(1<<20))",
            ],
            None,
        );
        if has_cgroups(&r) {
            assert_eq!(r["reason"]["kind"], "memory", "{mode:?}: {r}");
            assert_eq!(r["exit_code"], 137, "{mode:?}: {r}");
            assert!(limits(&r).contains(&"memory".into()), "{mode:?}: {r}");
            let peak = r["peak_memory"].as_u64().unwrap();
            assert!(
                peak <= 100 << 20,
                "{mode:?}: peak {peak} above the 96M limit"
            );
        } else {
            // Rootless without a delegated cgroup: RLIMIT_AS stops the bomb.
            assert_eq!(r["reason"]["kind"], "exit", "{mode:?}: {r}");
            assert_ne!(r["exit_code"], 0, "{mode:?}: {r}");
        }
    }
}

#[test]
fn tmp_fill_stops_at_the_tmpfs_cap_and_is_reported() {
    for mode in as_modes() {
        let r = json_run(
            mode,
            &[
                "--",
                "/bin/sh",
                "-c",
                "cat /dev/zero > /tmp/fill; du -sm /tmp",
            ],
            None,
        );
        assert!(limits(&r).contains(&"disk".into()), "{mode:?}: {r}");
        assert_eq!(r["full_mounts"][0], "/tmp", "{mode:?}: {r}");
        assert_eq!(r["exit_code"], 0, "{mode:?}: du must still run: {r}");
    }
}

#[test]
fn fd_bomb_is_bounded_by_nofile() {
    let bomb = "import os\nfds=[]\ntry:\n  while True: fds.append(os.open('/dev/null', os.O_RDONLY))\nexcept OSError as e:\n  print(len(fds), e.errno)\n  raise SystemExit(3)";
    for mode in as_modes() {
        let out = airlock(mode)
            .args(["run", "--", "python3", "-c", bomb])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{mode:?}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
        let (opened, errno) = (it.next().unwrap(), it.next().unwrap());
        // The default profile's RLIMIT_NOFILE is 1024: EMFILE (24) before that.
        assert_eq!(errno, 24, "{mode:?}: expected EMFILE, got {text}");
        assert!(
            opened < 1024 && opened > 900,
            "{mode:?}: opened {opened} fds"
        );
        // And the run reports the fd limit (the exit watch saw a full table).
        let r = json_run(mode, &["--", "python3", "-c", bomb], None);
        assert!(
            limits(&r).contains(&"nofile".into()),
            "{mode:?}: fd limit not reported: {r}"
        );
        // A benign run does not report it.
        let r = json_run(
            mode,
            &[
                "--",
                "python3",
                "-c",
                "import os; os.open('/dev/null', os.O_RDONLY)",
            ],
            None,
        );
        assert!(
            !limits(&r).contains(&"nofile".into()),
            "{mode:?}: false nofile report: {r}"
        );
    }
}

#[test]
fn output_flood_is_capped_and_reported() {
    let dir = crate::common::public_tempdir();
    let profile = dir.path().join("small-output.toml");
    std::fs::write(
        &profile,
        "name = \"small-output\"\n[limits]\noutput = \"1M\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    let out = cmd
        .args(["run", "--profile"])
        .arg(&profile)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "head -c 5000000 /dev/zero; echo done >&2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout.len(), 1 << 20, "stdout not capped at 1M");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("done"), "{err}");
    assert!(err.contains("output cap reached"), "{err}");
    assert!(
        err.contains(&format!(
            "dropped {} bytes of stdout",
            5_000_000 - (1 << 20)
        )),
        "{err}"
    );
}

#[test]
fn file_size_bomb_hits_rlimit_fsize() {
    let dir = crate::common::public_tempdir();
    let p = dir.path().join("fsize.toml");
    std::fs::write(&p, "name = \"fsize\"\n[limits]\nfsize = \"1M\"\n").unwrap();
    let r = json_run(
        Mode::Root,
        &[
            "--profile",
            p.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "exec head -c 5000000 /dev/zero > /tmp/big",
        ],
        None,
    );
    assert_eq!(r["reason"]["kind"], "signal", "{r}");
    assert_eq!(r["reason"]["signal"], 25, "SIGXFSZ expected: {r}");
    assert!(limits(&r).contains(&"fsize".into()), "{r}");
}

#[test]
fn cpu_quota_is_enforced() {
    if !is_root() {
        return;
    }
    // Busy-loop for 1.5 s of wall time, then report the CPU time used.
    let spin = "import os, time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.5: pass\nc = os.times()\nprint(c.user + c.system)";
    let out = airlock(Mode::Root)
        .args(["run", "--cpus", "0.2", "--", "python3", "-c", spin])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cpu: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let r = json_run(Mode::Root, &["--", "/bin/true"], None);
    let cpu_controller = r["cgroup"]["controllers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c == "cpu"));
    if cpu_controller {
        // 1.5 s of wall time at 0.2 cores: about 0.3 s of CPU, never 1.5 s.
        assert!(
            cpu < 0.8,
            "cpu quota not enforced: {cpu}s of CPU in 1.5s of wall time"
        );
    }
}
