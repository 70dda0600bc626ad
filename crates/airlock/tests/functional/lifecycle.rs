//! Lifecycle attacks: the sandbox must not outlive airlock, and cgroups of
//! a killed supervisor are swept; the cgroup v2 code path.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::limits::{airlock, as_modes, json_run, Mode};

/// Pids of processes whose command line contains `needle`.
pub(crate) fn procs_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(c) = fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .contains(needle)
            {
                out.push(pid);
            }
        }
    }
    out
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_of_airlock_kills_every_sandbox_process() {
    for mode in as_modes() {
        let marker = format!(
            "sleep 979.{}{}",
            std::process::id(),
            u8::from(mode == Mode::Rootless)
        );
        // A daemonized, setsid'd grandchild plus a foreground sleeper.
        let script = format!("(setsid sh -c '{marker}' &); {marker}");
        let mut child = airlock(mode)
            .args(["run", "--", "/bin/sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the sandbox's sleepers", Duration::from_secs(10), || {
            procs_with(&marker).len() >= 2
        });
        // SIGKILL: airlock gets no chance to clean up.
        sigkill(child.id());
        let _ = child.wait();
        wait_until(
            "every sandbox process to die",
            Duration::from_secs(5),
            || procs_with(&marker).is_empty(),
        );
        if mode == Mode::Root {
            // Its cgroup is left behind (nobody could remove it), and the next
            // run sweeps it.
            let out = json_run(mode, &["--", "/bin/true"], None);
            assert_eq!(out["exit_code"], 0);
            let stale = format!("airlock-{}-", child.id());
            for base in [
                "/sys/fs/cgroup/memory/airlock",
                "/sys/fs/cgroup/pids/airlock",
                "/sys/fs/cgroup/airlock",
            ] {
                if let Ok(rd) = fs::read_dir(base) {
                    for e in rd.flatten() {
                        let n = e.file_name().to_string_lossy().into_owned();
                        assert!(!n.starts_with(&stale), "stale cgroup {base}/{n} not swept");
                    }
                }
            }
        }
    }
}

/// SIGKILL through kill(1), so the test needs no unsafe.
fn sigkill(pid: u32) {
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn sigterm_is_forwarded_to_the_command() {
    let mut child = airlock(Mode::Root)
        .args([
            "run",
            "--",
            "/bin/sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(7));
}

/// cgroup v2: this host is hybrid (controllers bound to v1), so the v2 path
/// is driven through the unified hierarchy, where no controller is available:
/// placement (CLONE_INTO_CGROUP), cgroup.kill and removal are exercised,
/// and the missing controllers are reported.
#[test]
fn cgroup_v2_path_places_kills_and_removes() {
    if rustix_is_root() {
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .find(|p| is_cgroup2(p))
            .expect("a cgroup2 mount (hybrid /sys/fs/cgroup/unified or unified /sys/fs/cgroup)");
        let marker = format!("sleep 981.{}", std::process::id());
        let script = format!("(setsid sh -c '{marker}' &); cat /proc/self/cgroup; {marker}");
        let child = airlock(Mode::Root)
            .args([
                "run",
                "--json",
                "--cgroup-root",
                root,
                "--timeout",
                "3s",
                "--",
                "/bin/sh",
                "-c",
                &script,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let parent = Path::new(root).join("airlock");
        let prefix = format!("airlock-{}-", child.id());
        let mut dir = None;
        wait_until(
            "the sandbox's v2 cgroup to hold both sleepers",
            Duration::from_secs(10),
            || {
                dir = fs::read_dir(&parent)
                    .ok()
                    .and_then(|rd| {
                        rd.flatten()
                            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    })
                    .map(|e| e.path());
                dir.as_ref()
                    .and_then(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
                    .is_some_and(|p| p.lines().count() >= 3)
            },
        );
        let dir = dir.unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["reason"]["kind"], "timeout", "{report}");
        assert_eq!(report["cgroup"]["version"], "v2", "{report}");
        // Inside, the cgroup namespace hides the host path.
        assert!(
            stderr.contains("0::/\n"),
            "cgroup namespace not rooted at the sandbox cgroup: {stderr}"
        );
        assert!(!dir.exists(), "v2 cgroup {dir:?} not removed");
        assert!(
            procs_with(&marker).is_empty(),
            "processes survived cgroup.kill"
        );
    }
}

fn is_cgroup2(p: &str) -> bool {
    Command::new("stat")
        .args(["-f", "-c", "%T", p])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "cgroup2fs")
        .unwrap_or(false)
}

fn rustix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
}
