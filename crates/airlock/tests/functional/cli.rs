//! The other commands: profile check/show/schema and doctor.

use std::process::{Command, Output};

use serde_json::Value;

use crate::common::*;

fn airlock(args: &[&str]) -> Output {
    Command::new(airlock_bin())
        .args(args)
        .env_remove("AIRLOCK_LOG")
        .output()
        .expect("run airlock")
}

fn show(o: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn malformed_profiles_are_reported_with_file_line_and_field() {
    let dir = public_tempdir();
    for (file, text, line, field, what) in [
        (
            "bad-size.toml",
            "name = \"bad\"\n[filesystem]\ntmp_size = \"lots\"\n",
            3,
            "filesystem.tmp_size",
            "invalid size",
        ),
        (
            "bad-field.toml",
            "name = \"bad\"\n\n[limits]\nbogus = 1\n",
            4,
            "limits.bogus",
            "unknown field",
        ),
    ] {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        for args in [
            vec!["profile", "check", p],
            vec!["run", "--profile", p, "--", "true"],
        ] {
            let o = airlock(&args);
            assert_eq!(o.status.code(), Some(125), "{args:?}\n{}", show(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            let at = format!("{file}:{line}:");
            assert!(
                err.contains(&at) && err.contains(field) && err.contains(what),
                "{args:?}: the error should name {at}, {field} and say {what:?}\n{}",
                show(&o)
            );
        }
    }
    // Control: a valid file passes.
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "name = \"good\"\n[filesystem]\ntmp_size = \"32M\"\n").unwrap();
    let o = airlock(&["profile", "check", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

#[test]
fn profile_show_prints_the_default_profile() {
    let o = airlock(&["profile", "show", "default"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "name = \"default\"",
        "[filesystem]",
        "[limits]",
        "[security]",
        "[network]",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    let o = airlock(&["profile", "show", "default", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let j: Value = serde_json::from_slice(&o.stdout).expect("profile show --json is JSON");
    assert_eq!(j["name"], "default", "{}", show(&o));
    assert!(j["filesystem"].is_object(), "{}", show(&o));
}

#[test]
fn profile_schema_is_json_describing_filesystem() {
    let o = airlock(&["profile", "schema"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let j: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", show(&o)));
    assert!(
        j["properties"]["filesystem"].is_object(),
        "the schema has no properties.filesystem:\n{}",
        show(&o)
    );
}

#[test]
fn doctor_reports_each_mechanism() {
    let o = airlock(&["doctor"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for check in [
        "user namespaces",
        "landlock",
        "seccomp",
        "cgroups",
        "overlayfs",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(check)),
            "doctor prints no {check:?} line:\n{}",
            show(&o)
        );
    }
}

/// A syscall name the x86_64 table does not know is caught by
/// `profile check` as well as by `run`, before anything is spawned.
#[test]
fn unknown_seccomp_syscall_is_caught_by_profile_check() {
    let dir = public_tempdir();
    let path = dir.path().join("bad-seccomp.toml");
    std::fs::write(
        &path,
        "name = \"bad\"\n[seccomp]\nextra_deny = [{ syscall = \"frobnicate\", why = \"test\" }]\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    for args in [
        vec!["profile", "check", p],
        vec!["run", "--profile", p, "--", "true"],
    ] {
        let o = airlock(&args);
        assert_eq!(o.status.code(), Some(125), "{args:?}\n{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("unknown syscall \"frobnicate\""),
            "{args:?}: {err}"
        );
    }
}
