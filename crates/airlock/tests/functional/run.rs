//! `airlock run` basics, in root and rootless mode: exit codes, exec
//! failures, the `--json` report, the environment allowlist, output
//! streams and stdin.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::common::*;

#[test]
fn exit_codes_follow_the_command() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        for (args, code, reason) in [
            (
                &["exit", "0"][..],
                0,
                serde_json::json!({ "kind": "exit", "code": 0 }),
            ),
            (
                &["exit", "3"][..],
                3,
                serde_json::json!({ "kind": "exit", "code": 3 }),
            ),
            (
                &["signal", "15"][..],
                128 + 15,
                serde_json::json!({ "kind": "signal", "signal": 15 }),
            ),
            (
                &["signal", "10"][..],
                128 + 10,
                serde_json::json!({ "kind": "signal", "signal": 10 }),
            ),
        ] {
            let plain = sb.run_probe(&[], args);
            assert_eq!(plain.code(), Some(code), "{}", plain.describe());
            let json = sb.run_probe(&["--json"], args);
            assert_eq!(json.code(), Some(code), "{}", json.describe());
            let report = json.json();
            assert_eq!(report["reason"], reason, "{}", json.describe());
            assert_eq!(
                report["exit_code"].as_i64(),
                Some(i64::from(code)),
                "{}",
                json.describe()
            );
        }
    }
}

#[test]
fn a_missing_command_exits_127_with_a_clear_message() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let ws = sb.workspace().to_str().unwrap();
        for cmd in ["/workspace/no-such-program", "airlock-no-such-program"] {
            let r = sb.airlock(&["run", "--workspace", ws, "--", cmd]);
            assert_eq!(r.code(), Some(127), "{}", r.describe());
            let err = r.stderr();
            assert!(
                err.contains("cannot run") && err.contains(cmd) && err.contains("No such file"),
                "the message should name the command and the reason:\n{}",
                r.describe()
            );
            let j = sb.airlock(&["run", "--json", "--workspace", ws, "--", cmd]);
            assert_eq!(j.code(), Some(127), "{}", j.describe());
            assert_eq!(
                j.json()["reason"],
                serde_json::json!({ "kind": "exec_failed", "errno": ENOENT }),
                "{}",
                j.describe()
            );
        }
    }
}

#[test]
fn a_non_executable_file_exits_126() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        sb.put("not-executable", b"#!/bin/sh\necho ran\n", 0o644);
        let ws = sb.workspace().to_str().unwrap();
        let r = sb.airlock(&["run", "--workspace", ws, "--", "/workspace/not-executable"]);
        assert_eq!(r.code(), Some(126), "{}", r.describe());
        assert!(!r.stdout().contains("ran"), "{}", r.describe());
        assert!(
            r.stderr().contains("cannot run") && r.stderr().contains("Permission denied"),
            "{}",
            r.describe()
        );
        let j = sb.airlock(&[
            "run",
            "--json",
            "--workspace",
            ws,
            "--",
            "/workspace/not-executable",
        ]);
        assert_eq!(
            j.json()["reason"],
            serde_json::json!({ "kind": "exec_failed", "errno": EACCES }),
            "{}",
            j.describe()
        );
    }
}

#[test]
fn json_report_fields_are_present_and_typed() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let r = sb.run_probe(&["--json"], &["output", "1000"]);
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        let j = r.json();
        let ctx = || r.describe();
        assert_eq!(j["reason"]["kind"].as_str(), Some("exit"), "{}", ctx());
        assert_eq!(j["exit_code"].as_i64(), Some(0), "{}", ctx());
        for k in ["wall", "user", "sys"] {
            assert!(j[k].as_f64().is_some_and(|s| s >= 0.0), "{k}: {}", ctx());
        }
        assert!(j["wall"].as_f64().unwrap() > 0.0, "{}", ctx());
        assert!(
            j["peak_memory"].is_null() || j["peak_memory"].as_u64().is_some(),
            "{}",
            ctx()
        );
        assert!(
            j["limits_hit"].as_array().is_some_and(Vec::is_empty),
            "{}",
            ctx()
        );
        assert!(
            j["full_mounts"].as_array().is_some_and(Vec::is_empty),
            "{}",
            ctx()
        );
        assert_eq!(j["stdout"]["bytes"].as_u64(), Some(1000), "{}", ctx());
        assert_eq!(j["stdout"]["dropped"].as_u64(), Some(0), "{}", ctx());
        assert!(j["stderr"]["bytes"].as_u64().is_some(), "{}", ctx());
        assert!(j["landlock"]["enforcement"].is_string(), "{}", ctx());
        assert!(j["landlock"]["abi"].is_u64(), "{}", ctx());
        let cg = &j["cgroup"];
        assert!(
            cg["version"].is_null() || cg["version"].is_string(),
            "{}",
            ctx()
        );
        assert!(cg["controllers"].is_array(), "{}", ctx());
        assert!(cg["note"].is_null() || cg["note"].is_string(), "{}", ctx());
        assert!(
            j["host_uid"]
                .as_u64()
                .is_some_and(|u| is_expected_host_uid(mode, u)),
            "{}",
            ctx()
        );
    }
}

#[test]
fn the_environment_is_an_allowlist() {
    let secret = "airlock-test-supervisor-secret-5b1f";
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let ws = sb.workspace().to_str().unwrap();
        let r = sb.airlock_with(
            &[
                "run",
                "--workspace",
                ws,
                "--env",
                "FOO=bar baz",
                "--",
                "/workspace/probe",
                "env",
            ],
            |c| {
                c.env("AIRLOCK_TEST_SECRET", secret)
                    .env("AWS_SECRET_ACCESS_KEY", secret)
                    .env("TERM", "xterm-256color");
            },
        );
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        let env = r.probe_json();
        let keys: BTreeSet<&str> = env
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            // The AWS variables are the sandbox's own canaries (fresh
            // values), never the supervisor's.
            BTreeSet::from([
                "PATH",
                "HOME",
                "LANG",
                "TERM",
                "FOO",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_DEFAULT_REGION"
            ]),
            "[{mode}] the environment inside is not exactly the allowlist:\n{}",
            pretty(&env)
        );
        assert!(
            !env.to_string().contains(secret),
            "[{mode}] the supervisor's secret leaked:\n{}",
            pretty(&env)
        );
        assert_eq!(env["HOME"], "/home/sandbox", "[{mode}] {}", pretty(&env));
        assert_eq!(env["LANG"], "C.UTF-8", "[{mode}] {}", pretty(&env));
        assert_eq!(env["TERM"], "xterm-256color", "[{mode}] {}", pretty(&env));
        assert_eq!(env["FOO"], "bar baz", "[{mode}] {}", pretty(&env));
        assert!(
            env["PATH"]
                .as_str()
                .is_some_and(|p| p.split(':').any(|d| d == "/usr/bin")),
            "[{mode}] {}",
            pretty(&env)
        );
    }
}

#[test]
fn an_unsafe_term_becomes_dumb() {
    let sb = Sandbox::new(modes()[0]);
    let ws = sb.workspace().to_str().unwrap();
    let r = sb.airlock_with(
        &["run", "--workspace", ws, "--", "/workspace/probe", "env"],
        |c| {
            c.env("TERM", "xterm;touch /tmp/pwned");
        },
    );
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    assert_eq!(r.probe_json()["TERM"], "dumb", "{}", r.describe());
}

#[test]
fn stdout_and_stderr_are_kept_apart() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let r = sb.run_probe(&[], &["output", "100000"]);
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        assert_eq!(r.output.stdout.len(), 100_000, "[{mode}] stdout length");
        assert!(
            r.output.stdout.iter().all(|b| *b == b'x'),
            "[{mode}] stdout content"
        );
        let summary: Value = serde_json::from_str(r.stderr().trim()).unwrap_or_else(|e| {
            panic!(
                "[{mode}] stderr is not the probe's summary ({e}):\n{}",
                r.describe()
            )
        });
        assert_eq!(
            summary["written"].as_u64(),
            Some(100_000),
            "{}",
            r.describe()
        );

        // With --json, stdout is only the report; the command's stdout moves to stderr.
        let j = sb.run_probe(&["--json"], &["output", "5000"]);
        assert_eq!(j.code(), Some(0), "{}", j.describe());
        let report = j.json();
        assert_eq!(
            report["stdout"]["bytes"].as_u64(),
            Some(5000),
            "{}",
            j.describe()
        );
        assert_eq!(
            j.output.stderr.iter().filter(|b| **b == b'x').count(),
            5000,
            "{}",
            j.describe()
        );
    }
}

#[test]
fn stdin_is_passed_through_from_a_pipe() {
    let input = "line one from the host\nline two\n";
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let ws = sb.workspace().to_str().unwrap();
        let mut c = sb.command();
        c.args(["run", "--workspace", ws, "--", "/bin/cat"])
            .stdin(Stdio::piped());
        let mut child = c.spawn().expect("start airlock");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).as_ref()
            ),
            (Some(0), input),
            "[{mode}] stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
