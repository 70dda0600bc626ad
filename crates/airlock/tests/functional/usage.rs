//! What a new user meets first: usage errors and their exit status, sizes
//! and durations that need a unit, diagnostics fit for a pipe, the memory
//! limit rootless, shell completions and the manual page.

use std::process::{Command, Output, Stdio};

use crate::common::*;

fn airlock(args: &[&str]) -> Output {
    airlock_env(args, &[])
}

fn airlock_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(airlock_bin())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("AIRLOCK_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run airlock")
}

fn show(args: &[&str], o: &Output) -> String {
    format!(
        "airlock {args:?}: status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn sizes_and_durations_without_a_unit_are_refused() {
    let dir = public_tempdir();
    for (text, field, want) in [
        (
            "[limits]\nmemory = 512\n",
            "limits.memory",
            "a unit is required: B, K, M, G or T",
        ),
        (
            "[limits]\nmemory = \"512\"\n",
            "limits.memory",
            "a unit is required",
        ),
        (
            "[limits]\ntimeout = 5\n",
            "limits.timeout",
            "a unit is required: ms, s, m, h or d",
        ),
        (
            "[filesystem]\ntmp_size = 65536\n",
            "filesystem.tmp_size",
            "a unit is required",
        ),
        (
            "[limits]\nmemory = \"512K\"\n",
            "limits.memory",
            "below the minimum of 1M",
        ),
    ] {
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        let args = ["profile", "check", path.to_str().unwrap()];
        let o = airlock(&args);
        assert_eq!(o.status.code(), Some(125), "{}", show(&args, &o));
        let err = stderr(&o);
        assert!(
            err.contains("p.toml:2:") && err.contains(field) && err.contains(want),
            "{text:?}: expected {field} and {want:?}\n{}",
            show(&args, &o)
        );
        // Printed once (no diagnostic and then the same error again).
        assert_eq!(err.matches(want).count(), 1, "{}", show(&args, &o));
    }
    for (flag, value, want) in [
        ("--mem", "512", "a unit is required: B, K, M, G or T"),
        ("--mem", "64K", "below the minimum of 1M"),
        ("--mem", "12Q", "expected a number with a unit"),
        ("--timeout", "5", "a unit is required: ms, s, m, h or d"),
    ] {
        let args = ["run", flag, value, "--", "true"];
        let o = airlock(&args);
        assert_eq!(o.status.code(), Some(125), "{}", show(&args, &o));
        assert!(
            stderr(&o).contains(flag) && stderr(&o).contains(want),
            "{}",
            show(&args, &o)
        );
    }
}

#[test]
fn every_usage_error_exits_125_and_help_exits_0() {
    for args in [
        &["run", "--mem", "12Q", "--", "true"][..],
        &["run", "--pids", "0", "--", "true"],
        &["run", "--bogus", "--", "true"],
        &["run"],
        &["bogus"],
        &[],
        &["completions", "tcsh"],
        &["audit", "show", "--kind", "bogus", "/dev/null"],
    ] {
        let o = airlock(args);
        assert_eq!(o.status.code(), Some(125), "{}", show(args, &o));
        assert!(!stderr(&o).is_empty(), "{}", show(args, &o));
    }
    // The kind error lists the valid kinds.
    let args = ["audit", "show", "--kind", "bogus", "/dev/null"];
    let err = stderr(&airlock(&args));
    for kind in ["canary", "canary.touched", "net.decision", "copy_out"] {
        assert!(err.contains(kind), "{kind} is listed\n{err}");
    }
    for args in [
        &["--help"][..],
        &["--version"],
        &["run", "--help"],
        &["help", "run"],
    ] {
        let o = airlock(args);
        assert_eq!(o.status.code(), Some(0), "{}", show(args, &o));
        assert!(!stdout(&o).is_empty(), "{}", show(args, &o));
    }
    let help = stdout(&airlock(&["run", "--help"]));
    for want in ["122", "--fail-on canary", "123", "--copy-out", "125"] {
        assert!(help.contains(want), "run --help mentions {want}\n{help}");
    }
}

/// The diagnostics of a run, debug included, on a pipe: one `airlock:` line
/// per event and no escape codes; on a terminal (through script(1)) there
/// are colours unless NO_COLOR is set.
#[test]
fn diagnostics_in_a_pipe_have_no_colours() {
    let args = [
        "--log",
        "debug",
        "run",
        "--timeout",
        "1s",
        "--",
        "sleep",
        "5",
    ];
    let o = airlock(&args);
    assert_eq!(o.status.code(), Some(124), "{}", show(&args, &o));
    let err = stderr(&o);
    assert!(!err.contains('\x1b'), "escape codes in a pipe\n{err}");
    assert!(err.contains("airlock: debug: "), "{err}");
    for line in err.lines() {
        assert!(
            line.starts_with("airlock: "),
            "not one airlock line: {line:?}\n{err}"
        );
    }
    assert_eq!(
        err.matches("airlock: killed at the timeout (1s)").count(),
        1,
        "the limit is named once, with its value\n{err}"
    );

    let script = |no_color: bool| {
        let cmd = format!(
            "{} --log debug run -- true >/dev/null",
            airlock_bin().display()
        );
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"])
            .env_remove("AIRLOCK_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        if no_color {
            c.env("NO_COLOR", "1");
        }
        c.output().expect("script(1) from util-linux")
    };
    let tty = stdout(&script(false));
    assert!(tty.contains("airlock: "), "{tty:?}");
    assert!(tty.contains('\x1b'), "colours on a terminal\n{tty:?}");
    let plain = stdout(&script(true));
    assert!(plain.contains("airlock: debug: "), "{plain:?}");
    assert!(!plain.contains('\x1b'), "NO_COLOR is honoured\n{plain:?}");
}

/// `airlock run --mem 64M [--json] -- python3 -c CODE`, rootless.
fn python_at_64m(sb: &Sandbox, json: bool, code: &str) -> Run {
    let mut args = vec!["run", "--timeout", RUN_TIMEOUT, "--mem", "64M"];
    if json {
        args.push("--json");
    }
    args.extend(["--", "python3", "-c", code]);
    sb.airlock(&args)
}

/// Rootless without a memory cgroup the limit is RLIMIT_AS: a Python
/// memory bomb gets MemoryError (exit 1), and the run says that the memory
/// limit was reached. With a delegated memory cgroup it is an OOM kill.
#[test]
fn rootless_memory_limit_is_reported() {
    let sb = Sandbox::new(Mode::Rootless);
    let bomb = "a = []\nwhile True:\n    a.append(' ' * 2**20)\n";
    let r = python_at_64m(&sb, true, bomb);
    let report = r.json();
    let limits = report["limits_hit"].as_array().cloned().unwrap_or_default();
    assert!(
        limits.iter().any(|l| l == "memory"),
        "memory is in limits_hit\n{}",
        r.describe()
    );
    let cgroup_memory = report["cgroup"]["controllers"]
        .as_array()
        .is_some_and(|c| c.iter().any(|x| x == "memory"));
    if cgroup_memory {
        assert_eq!(r.code(), Some(137), "{}", r.describe());
    } else {
        assert_eq!(r.code(), Some(1), "{}", r.describe());
        assert!(r.stderr().contains("MemoryError"), "{}", r.describe());
        // Without --json: one plain line naming the limit and its value.
        let r = python_at_64m(&sb, false, bomb);
        assert_eq!(r.code(), Some(1), "{}", r.describe());
        assert_eq!(
            r.stderr()
                .matches("airlock: the memory limit (64 MiB) was reached: allocations failed")
                .count(),
            1,
            "{}",
            r.describe()
        );
    }
    // A program that stays well below the limit reports nothing.
    let r = python_at_64m(&sb, true, "x = ' ' * 2**20; print(len(x))");
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    assert_eq!(
        r.json()["limits_hit"],
        serde_json::json!([]),
        "{}",
        r.describe()
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let args = ["completions", shell];
        let o = airlock(&args);
        assert_eq!(o.status.code(), Some(0), "{}", show(&args, &o));
        let script = stdout(&o);
        for sub in ["run", "profile", "eval", "audit", "doctor", "completions"] {
            assert!(script.contains(sub), "{shell}: mentions {sub}\n{script}");
        }
    }
    let dir = public_tempdir();
    let file = dir.path().join("airlock.bash");
    std::fs::write(&file, stdout(&airlock(&["completions", "bash"]))).unwrap();
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            ". {} && declare -F _airlock && complete -p airlock",
            file.display()
        ))
        .output()
        .expect("bash");
    assert!(o.status.success(), "{}", show(&["(bash source)"], &o));
    assert!(stdout(&o).contains("_airlock"), "{}", show(&["(bash)"], &o));
}

#[test]
fn manual_pages() {
    let o = airlock(&["man"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&["man"], &o));
    let page = stdout(&o);
    assert!(page.contains(".TH airlock 1"), "{page}");
    assert!(page.contains("airlock\\-run(1)"), "{page}");
    let run = stdout(&airlock(&["man", "run"]));
    assert!(
        run.contains(".TH airlock-run 1") && run.contains("\\-\\-mem"),
        "{run}"
    );
    let dir = public_tempdir();
    let out = dir.path().join("man1");
    let args = ["man", "--out-dir", out.to_str().unwrap()];
    let o = airlock(&args);
    assert_eq!(o.status.code(), Some(0), "{}", show(&args, &o));
    for f in ["airlock.1", "airlock-run.1", "airlock-profile-check.1"] {
        assert!(out.join(f).is_file(), "{f} written\n{}", show(&args, &o));
    }
}
