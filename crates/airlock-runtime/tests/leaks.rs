//! Runs many sandboxes in ONE supervisor process and checks the host for
//! leaks: processes, cgroup directories, mounts, the supervisor's own fds,
//! and /tmp entries. Also checks that a daemonized, setsid'd grandchild dies
//! with its sandbox.
//!
//! `AIRLOCK_LEAK_RUNS` sets the count (default 1000).

#[path = "plain_main/mod.rs"]
mod plain_main;

use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};

use airlock_policy::Profile;
use airlock_runtime::{Collect, ExitReason, RunRequest};

fn fds() -> BTreeSet<String> {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let target = fs::read_link(e.path()).ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        // read_dir's own fd
        .filter(|s| !s.contains("/proc/") || !s.ends_with("/fd"))
        .collect()
}

fn mounts() -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count()
}

fn tmp_entries() -> BTreeSet<String> {
    fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Sandbox cgroups under every hierarchy we might use.
fn airlock_cgroups() -> Vec<String> {
    let mut out = Vec::new();
    for base in [
        "/sys/fs/cgroup/airlock",
        "/sys/fs/cgroup/memory/airlock",
        "/sys/fs/cgroup/pids/airlock",
        "/sys/fs/cgroup/cpu/airlock",
        "/sys/fs/cgroup/freezer/airlock",
    ] {
        if let Ok(rd) = fs::read_dir(base) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&format!("airlock-{}-", std::process::id())) {
                    out.push(format!("{base}/{n}"));
                }
            }
        }
    }
    out
}

/// Processes whose cmdline contains `needle`.
fn procs_with(needle: &str) -> Vec<u32> {
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

/// Children of this process (sandbox inits that were not reaped).
fn children() -> usize {
    let me = std::process::id().to_string();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.split_whitespace().nth(1) == Some(&me))
                })
                .unwrap_or(false)
        })
        .count()
}

fn request(argv: &[&str]) -> RunRequest {
    RunRequest::new(
        Profile::builtin("default").unwrap(),
        argv.iter().map(|s| s.to_string()).collect(),
    )
}

fn many_sandboxes_leave_nothing_behind() {
    let runs: usize = std::env::var("AIRLOCK_LEAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    // Warm up once so lazily opened fds (e.g. tracing, std) exist before the baseline.
    let mut sink = Collect::default();
    airlock_runtime::run(&request(&["/bin/true"]), &mut sink).unwrap();
    // A run's canary watch fd is closed on the closer thread (its close
    // waits for an SRCU grace period); settle() waits for those closes.
    airlock_runtime::settle();
    let (fds0, mounts0, tmp0) = (fds(), mounts(), tmp_entries());
    let t = Instant::now();
    for i in 0..runs {
        let mut sink = Collect::default();
        // Alternate a plain exit with one that leaves a background child.
        let argv: &[&str] = if i % 2 == 0 {
            &["/bin/true"]
        } else {
            &["/bin/sh", "-c", "sleep 30 & echo $!"]
        };
        let r = airlock_runtime::run(&request(argv), &mut sink).unwrap();
        assert_eq!(r.run.reason, ExitReason::Exit { code: 0 }, "run {i}: {r:?}");
    }
    let elapsed = t.elapsed();
    let settling = Instant::now();
    airlock_runtime::settle();
    let settled = settling.elapsed();
    assert!(
        settled < Duration::from_secs(5),
        "closing the runs' last fds took {settled:?}"
    );
    let fds1 = fds();
    assert_eq!(fds0, fds1, "supervisor fds leaked after {runs} runs");
    assert_eq!(
        mounts0,
        mounts(),
        "host mount table changed after {runs} runs"
    );
    assert_eq!(
        tmp0,
        tmp_entries(),
        "/tmp entries changed after {runs} runs"
    );
    assert_eq!(
        airlock_cgroups(),
        Vec::<String>::new(),
        "sandbox cgroups left behind"
    );
    assert_eq!(children(), 0, "unreaped sandbox processes");
    assert_eq!(
        procs_with("sleep 30"),
        Vec::<u32>::new(),
        "background children outlived their sandboxes"
    );
    println!("{runs} sandboxes in {elapsed:?}: no leaked fds, mounts, cgroups, processes or /tmp entries");
}

fn daemonized_grandchild_dies_with_the_sandbox() {
    let marker = format!("sleep 977.{}", std::process::id());
    // Double fork + setsid: the grandchild is re-parented to the sandbox's
    // init and has its own session; the command itself exits at once.
    let script = format!("(setsid sh -c '{marker} & exit 0' &) ; sleep 0.2; exit 0");
    let mut sink = Collect::default();
    let r = airlock_runtime::run(&request(&["/bin/sh", "-c", &script]), &mut sink).unwrap();
    assert_eq!(r.run.reason, ExitReason::Exit { code: 0 });
    // Nothing may survive: no wait needed, init's exit tears the namespace down
    // synchronously before the supervisor reaps it.
    let left = procs_with(&marker);
    assert!(
        left.is_empty(),
        "daemonized grandchild survived: pids {left:?}"
    );
}

fn timeout_kills_everything() {
    let marker = format!("sleep 978.{}", std::process::id());
    let mut req = request(&[
        "/bin/sh",
        "-c",
        &format!("(setsid sh -c '{marker}' &); {marker}"),
    ]);
    req.profile.limits.timeout = Duration::from_millis(500);
    let mut sink = Collect::default();
    let t = Instant::now();
    let r = airlock_runtime::run(&req, &mut sink).unwrap();
    assert_eq!(r.run.reason, ExitReason::Timeout);
    assert_eq!(r.run.exit_code, 124);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "timeout took {:?}",
        t.elapsed()
    );
    assert!(
        procs_with(&marker).is_empty(),
        "processes survived the timeout"
    );
}

fn main() {
    plain_main::run(&[
        (
            "daemonized_grandchild_dies_with_the_sandbox",
            daemonized_grandchild_dies_with_the_sandbox,
        ),
        ("timeout_kills_everything", timeout_kills_everything),
        (
            "many_sandboxes_leave_nothing_behind",
            many_sandboxes_leave_nothing_behind,
        ),
    ]);
}
