//! The evidence of `airlock run`, in root and rootless mode: exec
//! telemetry in the audit log, canary touches and leaks (and no false
//! positive on a benign build), the `[canaries]` profile section,
//! copy-out, tampering seen by `airlock audit verify`, and audit files
//! that cannot be created.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;

const HOME: &str = "/home/sandbox";

/// A 0755 directory under the sandbox's scratch directory, owned by the
/// run's user (so that a rootless airlock may write into it).
fn owned_dir(sb: &Sandbox, name: &str) -> PathBuf {
    let d = sb.outside().join(name);
    if !d.is_dir() {
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        sb.chown(&d);
    }
    d
}

/// Writes a profile file next to the workspace and returns its path.
fn write_profile(sb: &Sandbox, name: &str, body: &str) -> PathBuf {
    let p = sb.outside().join(format!("{name}.toml"));
    fs::write(&p, body).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// `--audit LOG` for a fresh log, and what the run needs to sign it.
///
/// Root mode uses the per-host default key (/var/lib/airlock/audit.key).
/// A rootless airlock started by the tests through setpriv runs as uid
/// 65534 with the tests' HOME (/root), where it can neither read nor
/// create the default key ("reading audit key /root/.local/state/...:
/// Permission denied", exit 125); it gets a profile whose `[audit] key` is
/// a key of its own, made by `airlock audit keygen` as that user.
fn audited(sb: &Sandbox, name: &str) -> (PathBuf, Vec<String>) {
    let log = owned_dir(sb, "audit").join(format!("{name}.jsonl"));
    let mut args = vec!["--audit".to_string(), log.display().to_string()];
    if sb.mode == Mode::Rootless {
        let key = owned_dir(sb, "keys").join("audit.key");
        if !key.exists() {
            let k = sb.airlock(&["audit", "keygen", "--out", key.to_str().unwrap()]);
            assert_eq!(k.code(), Some(0), "{}", k.describe());
            assert!(key.is_file(), "keygen wrote no key\n{}", k.describe());
        }
        let profile = write_profile(
            sb,
            "audit-key",
            &format!(
                "name = \"audit-key\"\n[audit]\nkey = \"{}\"\n",
                key.display()
            ),
        );
        args.extend(["--profile".to_string(), profile.display().to_string()]);
    }
    (log, args)
}

/// `airlock run --timeout T OPTS -- CMD`.
fn run(sb: &Sandbox, opts: &[String], cmd: &[&str]) -> Run {
    let mut args: Vec<&str> = vec!["run", "--timeout", RUN_TIMEOUT];
    args.extend(opts.iter().map(String::as_str));
    args.push("--");
    args.extend_from_slice(cmd);
    sb.airlock(&args)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The events of an audit log (every line but the signed head, which is
/// checked to be there).
fn audit_events(log: &Path) -> Vec<Value> {
    let text =
        fs::read_to_string(log).unwrap_or_else(|e| panic!("read audit log {}: {e}", log.display()));
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}\n{text}"))
        })
        .collect();
    let head = lines.pop().expect("an empty audit log");
    assert!(
        head["head"].is_object() && head["signature"].is_string(),
        "the last line is not the signed head:\n{text}"
    );
    lines
}

/// The `data` of every event of `kind`.
fn data_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| &e["data"])
        .collect()
}

fn shown(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("{} {}", e["kind"], e["data"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The one exec whose argv is `argv`.
fn exec_with<'a>(execs: &[&'a Value], argv: &[&str], events: &[Value]) -> &'a Value {
    let found: Vec<&&Value> = execs.iter().filter(|d| d["argv"] == json!(argv)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one process.exec with argv {argv:?}:\n{}",
        shown(events)
    );
    found[0]
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    c.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn canaries(report: &Value, field: &str) -> Vec<Value> {
    report["canaries"][field]
        .as_array()
        .unwrap_or_else(|| {
            panic!(
                "no canaries.{field} array in the report:\n{}",
                pretty(report)
            )
        })
        .clone()
}

fn leak(canary: &str, encoding: &str, place: &str) -> Value {
    json!({ "canary": canary, "encoding": encoding, "place": place })
}

#[test]
fn exec_telemetry_records_pipelines_orphans_and_fd_execs() {
    for mode in modes() {
        let sb = Sandbox::new(mode);

        // A pipeline: sh forks tr and cat (echo is a builtin).
        let (log, mut opts) = audited(&sb, "pipeline");
        opts.push("--json".into());
        let script = "echo a | tr a b | cat";
        let r = run(&sb, &opts, &["/bin/sh", "-c", script]);
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        assert!(r.stderr().contains('b'), "{}", r.describe());
        let events = audit_events(&log);
        let execs = data_of(&events, "process.exec");
        assert_eq!(execs.len(), 3, "[{mode}] sh, tr, cat:\n{}", shown(&events));
        assert_eq!(
            r.json()["execs"].as_u64(),
            Some(3),
            "the report counts the execs\n{}",
            r.describe()
        );
        let sh = exec_with(&execs, &["/bin/sh", "-c", script], &events);
        assert_eq!(sh["path"], "/bin/sh", "{}", shown(&events));
        // The command is the child of its exec's monitor, which init forks
        // for each exec and which is the subreaper of that exec's tree.
        let monitor = sh["ppid"].as_i64().expect("ppid");
        assert!(
            monitor > 1,
            "the command is its monitor's child, not init's: {}",
            shown(&events)
        );
        let sh_pid = sh["pid"].as_i64().expect("pid");
        let tr = exec_with(&execs, &["tr", "a", "b"], &events);
        let cat = exec_with(&execs, &["cat"], &events);
        for (d, name) in [(tr, "tr"), (cat, "cat")] {
            assert!(
                d["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with('/') && p.ends_with(&format!("/{name}"))),
                "[{mode}] {name} resolved on PATH: {}",
                shown(&events)
            );
            assert_eq!(
                d["ppid"],
                sh_pid,
                "[{mode}] {name}'s parent is sh: {}",
                shown(&events)
            );
            assert_ne!(d["pid"], sh_pid, "{}", shown(&events));
            assert_eq!(d["truncated"], false, "{}", shown(&events));
        }
        assert_ne!(tr["pid"], cat["pid"], "{}", shown(&events));

        // A shell double fork: the inner sh outlives its parent subshell.
        let (log, opts) = audited(&sb, "shell-double-fork");
        let r = run(
            &sb,
            &opts,
            &[
                "/bin/sh",
                "-c",
                "(sh -c \"sleep 0.2; /bin/echo orphan\" &) ; sleep 0.5",
            ],
        );
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        assert_eq!(r.stdout(), "orphan\n", "{}", r.describe());
        let events = audit_events(&log);
        let execs = data_of(&events, "process.exec");
        let echo = exec_with(&execs, &["/bin/echo", "orphan"], &events);
        assert_eq!(echo["path"], "/bin/echo", "{}", shown(&events));

        // A true orphan: the grandchild execs after its parent has exited,
        // so it has been reparented to its exec's monitor (the subreaper,
        // python's parent), not to init. It holds an inheritable pipe end
        // until it exits, which the top process waits for.
        let (log, opts) = audited(&sb, "python-double-fork");
        let py = "import os, time\n\
                  r, w = os.pipe()\n\
                  os.set_inheritable(w, True)\n\
                  if os.fork() == 0:\n\
                  \x20   mid = os.getpid()\n\
                  \x20   if os.fork() == 0:\n\
                  \x20       os.close(r)\n\
                  \x20       while os.getppid() == mid: time.sleep(0.01)\n\
                  \x20       os.execv('/bin/echo', ['/bin/echo', 'orphan-grandchild'])\n\
                  \x20   os._exit(0)\n\
                  os.close(w)\n\
                  os.wait()\n\
                  os.read(r, 1)\n";
        let r = run(&sb, &opts, &["python3", "-c", py]);
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        assert_eq!(r.stdout(), "orphan-grandchild\n", "{}", r.describe());
        let events = audit_events(&log);
        let execs = data_of(&events, "process.exec");
        let python = exec_with(&execs, &["python3", "-c", py], &events);
        let orphan = exec_with(&execs, &["/bin/echo", "orphan-grandchild"], &events);
        assert_eq!(orphan["path"], "/bin/echo", "{}", shown(&events));
        assert_eq!(
            orphan["ppid"],
            python["ppid"],
            "[{mode}] the orphan's parent at exec time is the exec's monitor, \
             python's parent: {}",
            shown(&events)
        );
        assert_ne!(orphan["ppid"], 1, "[{mode}] not init: {}", shown(&events));
        assert_ne!(orphan["pid"], python["pid"], "{}", shown(&events));
        assert_eq!(
            execs.len(),
            2,
            "[{mode}] python3 and echo: {}",
            shown(&events)
        );

        // fexecve of a deleted file, and of a memfd: execveat(fd, "",
        // AT_EMPTY_PATH), with no path to read from the caller.
        let fexec = "import os, shutil, sys\n\
                     src = open('/bin/echo', 'rb').read()\n\
                     if sys.argv[1] == 'deleted':\n\
                     \x20   p = '/workspace/ghost-echo'\n\
                     \x20   with open(p, 'wb') as f: f.write(src)\n\
                     \x20   os.chmod(p, 0o755)\n\
                     \x20   fd = os.open(p, os.O_RDONLY)\n\
                     \x20   os.unlink(p)\n\
                     \x20   argv = ['ghost-echo', 'from-deleted']\n\
                     else:\n\
                     \x20   fd = os.memfd_create('airlock-mem', 0)\n\
                     \x20   os.write(fd, src)\n\
                     \x20   argv = ['mem-echo', 'from-memfd']\n\
                     sys.stdout.flush()\n\
                     os.execve(fd, argv, {})\n";
        let ws = sb.workspace().to_str().unwrap();
        for (which, argv, path_has) in [
            (
                "deleted",
                ["ghost-echo", "from-deleted"],
                "/workspace/ghost-echo",
            ),
            ("memfd", ["mem-echo", "from-memfd"], "memfd:airlock-mem"),
        ] {
            let (log, mut opts) = audited(&sb, &format!("fexecve-{which}"));
            opts.extend(strings(&["--workspace", ws]));
            let r = run(&sb, &opts, &["python3", "-c", fexec, which]);
            assert_eq!(r.code(), Some(0), "{}", r.describe());
            assert_eq!(r.stdout(), format!("{}\n", argv[1]), "{}", r.describe());
            let events = audit_events(&log);
            let execs = data_of(&events, "process.exec");
            let ex = exec_with(&execs, &argv, &events);
            let path = ex["path"].as_str().unwrap_or_default();
            assert!(
                path.contains(path_has) && path.ends_with("(deleted)"),
                "[{mode}] {which}: the exec's path should name the fd's file and say \
                 (deleted), got {path:?}:\n{}",
                shown(&events)
            );
        }
    }
}

#[test]
fn opening_a_canary_file_is_a_touch_and_looking_at_it_is_not() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let key = format!("{HOME}/.ssh/id_ed25519");

        let (log, mut opts) = audited(&sb, "touch");
        opts.push("--json".into());
        let r = run(
            &sb,
            &opts,
            &["/bin/sh", "-c", "cat ~/.ssh/id_ed25519 >/dev/null"],
        );
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        let report = r.json();
        let touched = canaries(&report, "touched");
        assert_eq!(touched.len(), 1, "{}", r.describe());
        assert_eq!(touched[0]["path"], key.as_str(), "{}", r.describe());
        assert_eq!(
            touched[0]["canaries"],
            json!(["ssh-key"]),
            "{}",
            r.describe()
        );
        assert!(touched[0]["opens"].as_u64() >= Some(1), "{}", r.describe());
        assert!(canaries(&report, "leaked").is_empty(), "{}", r.describe());
        let events = audit_events(&log);
        let ev = data_of(&events, "canary.touched");
        assert!(
            !ev.is_empty()
                && ev
                    .iter()
                    .all(|d| d["path"] == key.as_str() && d["canaries"] == json!(["ssh-key"])),
            "[{mode}] a canary.touched event for {key}:\n{}",
            shown(&events)
        );

        // Without --json the touch is summarized on stderr, and the exit
        // is the command's unless --fail-on canary.
        let plain = run(
            &sb,
            &[],
            &["/bin/sh", "-c", "cat ~/.ssh/id_ed25519 >/dev/null"],
        );
        assert_eq!(plain.code(), Some(0), "{}", plain.describe());
        assert!(
            plain.stderr().contains("canary touched") && plain.stderr().contains(&key),
            "{}",
            plain.describe()
        );
        let fail = run(
            &sb,
            &strings(&["--fail-on", "canary"]),
            &["/bin/sh", "-c", "cat ~/.ssh/id_ed25519 >/dev/null"],
        );
        assert_eq!(fail.code(), Some(122), "{}", fail.describe());

        // Every open counts, past the per-file cap of reported events too.
        let (log, mut opts) = audited(&sb, "touch-40");
        opts.push("--json".into());
        let r = run(
            &sb,
            &opts,
            &[
                "/bin/sh",
                "-c",
                "for i in $(seq 40); do cat ~/.ssh/id_ed25519 >/dev/null; done",
            ],
        );
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        let touched = canaries(&r.json(), "touched");
        assert_eq!(touched.len(), 1, "{}", r.describe());
        assert_eq!(touched[0]["opens"], 40, "[{mode}] {}", r.describe());
        let events = audit_events(&log);
        let logged: u64 = data_of(&events, "canary.touched")
            .iter()
            .map(|d| d["more_opens"].as_u64().unwrap_or(1))
            .sum();
        assert_eq!(logged, 40, "[{mode}] opens in the log: {}", shown(&events));

        // Listing, stat, access(2) and a walk of $HOME open no canary file.
        let (log, mut opts) = audited(&sb, "look");
        opts.extend(strings(&["--json", "--fail-on", "canary"]));
        let r = run(
            &sb,
            &opts,
            &[
                "/bin/sh",
                "-c",
                "ls -la ~ ~/.aws ~/.ssh ~/.config/gh ~/.kube && stat ~/.aws/credentials && \
                 test -r ~/.ssh/id_ed25519 && find ~ -type f && du -a ~",
            ],
        );
        assert_eq!(
            r.code(),
            Some(0),
            "[{mode}] looking is not touching\n{}",
            r.describe()
        );
        let report = r.json();
        assert!(r.stderr().contains("credentials"), "{}", r.describe());
        for field in ["touched", "leaked", "exfiltration"] {
            assert!(
                canaries(&report, field).is_empty(),
                "[{mode}] canaries.{field}\n{}",
                r.describe()
            );
        }
        let events = audit_events(&log);
        assert!(
            !events
                .iter()
                .any(|e| e["kind"].as_str().unwrap_or("").starts_with("canary.")),
            "[{mode}] {}",
            shown(&events)
        );
    }
}

#[test]
fn printed_canaries_are_leaks_raw_encoded_or_split() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let cases: [(&str, &str, Vec<Value>); 4] = [
            (
                "raw on stdout",
                "cat ~/.config/gh/hosts.yml",
                vec![leak("github-token", "raw", "stdout")],
            ),
            (
                "base64 on stdout",
                "base64 -w0 ~/.config/gh/hosts.yml",
                vec![leak("github-token", "base64", "stdout")],
            ),
            (
                "an environment canary on stderr",
                "printenv AWS_SECRET_ACCESS_KEY >&2",
                vec![leak("aws-secret", "raw", "stderr")],
            ),
            (
                "split across two writes 300 ms apart",
                "t=$(grep -o 'ghp_[A-Za-z0-9]*' ~/.config/gh/hosts.yml); h=${t%??????????}; \
                 printf %s \"$h\"; sleep 0.3; printf %s \"${t#\"$h\"}\"",
                vec![leak("github-token", "raw", "stdout")],
            ),
        ];
        for (what, script, want) in cases {
            let r = run(&sb, &strings(&["--json"]), &["/bin/sh", "-c", script]);
            assert_eq!(r.code(), Some(0), "[{mode}] {what}\n{}", r.describe());
            assert_eq!(
                canaries(&r.json(), "leaked"),
                want,
                "[{mode}] {what}\n{}",
                r.describe()
            );
        }

        // With --audit, a canary.leaked event; with --fail-on canary, 122.
        let (log, opts) = audited(&sb, "leak");
        let script = "cat ~/.config/gh/hosts.yml";
        let r = run(&sb, &opts, &["/bin/sh", "-c", script]);
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        assert!(r.stdout().contains("oauth_token"), "{}", r.describe());
        assert!(
            r.stderr().contains("canary leaked: github-token"),
            "{}",
            r.describe()
        );
        let events = audit_events(&log);
        assert_eq!(
            data_of(&events, "canary.leaked"),
            vec![&leak("github-token", "raw", "stdout")],
            "{}",
            shown(&events)
        );
        let fail = run(
            &sb,
            &strings(&["--fail-on", "canary"]),
            &["/bin/sh", "-c", script],
        );
        assert_eq!(fail.code(), Some(122), "{}", fail.describe());
        assert!(
            fail.stderr().contains("--fail-on canary"),
            "{}",
            fail.describe()
        );
        // The command's own failure still wins without --fail-on.
        let own = run(
            &sb,
            &[],
            &["/bin/sh", "-c", "cat ~/.config/gh/hosts.yml; exit 3"],
        );
        assert_eq!(own.code(), Some(3), "{}", own.describe());
    }
}

#[test]
fn a_benign_build_fires_no_canary() {
    let hello = b"#include <stdio.h>\nint main(void) { puts(\"hello from c\"); return 0; }\n";
    let script = "mkdir -p ~/bin && cc -o ~/bin/hello hello.c && ~/bin/hello && \
                  python3 -c 'import json,hashlib; print(hashlib.sha256(b\"x\").hexdigest())' && \
                  tar czf /tmp/x.tgz -C /usr/include stdio.h stdlib.h && tar tzf /tmp/x.tgz && \
                  find /usr/lib -name '*.py' | head -n 5 && ls -la ~ && find ~ -type f | wc -l";
    for mode in modes() {
        let sb = Sandbox::new(mode);
        sb.put("hello.c", hello, 0o644);
        let (log, mut opts) = audited(&sb, "benign");
        let ws = sb.workspace().to_str().unwrap();
        opts.extend(strings(&[
            "--workspace",
            ws,
            "--json",
            "--fail-on",
            "canary",
        ]));
        let r = run(&sb, &opts, &["/bin/sh", "-c", script]);
        assert_eq!(r.code(), Some(0), "[{mode}] {}", r.describe());
        let out = r.stderr();
        for expected in [
            "hello from c",
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
            "stdio.h",
            ".py",
        ] {
            assert!(
                out.contains(expected),
                "[{mode}] {expected}\n{}",
                r.describe()
            );
        }
        let report = r.json();
        for field in ["touched", "exfiltration", "leaked"] {
            assert!(
                canaries(&report, field).is_empty(),
                "[{mode}] canaries.{field}\n{}",
                r.describe()
            );
        }
        // The workspace is a host directory: its .env canary is skipped.
        assert!(
            canaries(&report, "skipped")
                .iter()
                .any(|s| s.as_str().is_some_and(|s| s.starts_with("/workspace/.env"))),
            "{}",
            r.describe()
        );
        let events = audit_events(&log);
        assert!(
            !events
                .iter()
                .any(|e| e["kind"].as_str().unwrap_or("").starts_with("canary.")),
            "[{mode}] {}",
            shown(&events)
        );
        let execs = data_of(&events, "process.exec");
        assert!(
            execs
                .iter()
                .any(|d| d["path"] == format!("{HOME}/bin/hello")),
            "[{mode}] the installed program's exec: {}",
            shown(&events)
        );
        assert_eq!(
            report["execs"].as_u64(),
            Some(execs.len() as u64),
            "{}",
            r.describe()
        );
    }
}

#[test]
fn profile_canaries_can_be_disabled_or_extended() {
    for mode in modes() {
        let sb = Sandbox::new(mode);

        let off = write_profile(&sb, "no-canaries", "[canaries]\nenabled = false\n");
        let opts = strings(&["--profile", off.to_str().unwrap(), "--json"]);
        let r = run(
            &sb,
            &opts,
            &[
                "/bin/sh",
                "-c",
                "echo home:; ls -A ~; echo workspace:; ls -A /workspace; echo env:; env",
            ],
        );
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        let out = r.stderr();
        assert!(
            out.contains("home:\nworkspace:\nenv:\n"),
            "[{mode}] $HOME and the workspace are empty\n{}",
            r.describe()
        );
        assert!(!out.contains("AWS_"), "[{mode}] {}", r.describe());
        let report = r.json();
        for field in ["planted", "touched", "leaked"] {
            assert!(canaries(&report, field).is_empty(), "{}", r.describe());
        }
        assert!(
            report.get("execs").is_none() && report.get("audit").is_none(),
            "exec telemetry is on only with an audit log\n{}",
            r.describe()
        );

        let stripe = "name = \"stripe\"\n\
                      [[canaries.extra]]\n\
                      name = \"stripe\"\n\
                      env = \"STRIPE_KEY\"\n\
                      file = \"~/.stripe/key\"\n\
                      prefix = \"sk_live_\"\n\
                      length = 24\n";
        let p = write_profile(&sb, "stripe", stripe);
        let opts = strings(&["--profile", p.to_str().unwrap(), "--json"]);
        // Look without printing the value.
        let r = run(
            &sb,
            &opts,
            &[
                "/bin/sh",
                "-c",
                "case \"$STRIPE_KEY\" in sk_live_????????????????????????) echo env-ok;; esac; \
                 test \"$(cat ~/.stripe/key)\" = \"$STRIPE_KEY\" && echo file-ok; \
                 test -f ~/.aws/credentials && echo builtins-ok",
            ],
        );
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        assert!(
            r.stderr().contains("env-ok\nfile-ok\nbuiltins-ok\n"),
            "[{mode}] STRIPE_KEY is sk_live_ and 24 characters, the file holds it, the \
             built-in canaries are still planted\n{}",
            r.describe()
        );
        let report = r.json();
        let planted = canaries(&report, "planted");
        let s = planted
            .iter()
            .find(|c| c["id"] == "stripe")
            .unwrap_or_else(|| panic!("stripe not planted\n{}", r.describe()));
        assert_eq!(
            s["places"],
            json!([format!("{HOME}/.stripe/key"), "env:STRIPE_KEY"]),
            "{}",
            r.describe()
        );
        assert!(
            planted.iter().any(|c| c["id"] == "aws-secret"),
            "{}",
            r.describe()
        );
        assert_eq!(
            canaries(&report, "touched"),
            vec![
                json!({"path": format!("{HOME}/.stripe/key"), "canaries": ["stripe"], "opens": 1})
            ],
            "{}",
            r.describe()
        );
        assert!(canaries(&report, "leaked").is_empty(), "{}", r.describe());

        // Printing it is a leak of "stripe", and the printed value is the
        // one whose digest the report gives.
        let r = run(&sb, &opts, &["/bin/sh", "-c", "cat ~/.stripe/key"]);
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        let report = r.json();
        assert_eq!(
            canaries(&report, "leaked"),
            vec![leak("stripe", "raw", "stdout")],
            "{}",
            r.describe()
        );
        let value = r
            .stderr()
            .lines()
            .find(|l| l.starts_with("sk_live_"))
            .unwrap_or_else(|| panic!("no value printed\n{}", r.describe()))
            .to_string();
        assert_eq!(value.len(), "sk_live_".len() + 24, "{value}");
        let planted = canaries(&report, "planted");
        let s = planted.iter().find(|c| c["id"] == "stripe").unwrap();
        assert_eq!(
            s["value_sha256"].as_str(),
            Some(sha256_hex(value.as_bytes()).as_str()),
            "{}",
            r.describe()
        );
    }
}

#[test]
fn copy_out_hands_out_regular_files_only_and_never_overwrites() {
    let mut expected = b"bin\x01\xff\x00x\n".to_vec();
    for i in 1..=20000 {
        expected.extend_from_slice(format!("{i}\n").as_bytes());
    }
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let out = owned_dir(&sb, "out");
        let (log, mut opts) = audited(&sb, "copy-out");
        opts.extend(strings(&[
            "--json",
            "--out-dir",
            out.to_str().unwrap(),
            "--copy-out",
            "report.txt",
            "--copy-out",
            "link",
            "--copy-out",
            "fifo",
            "--copy-out",
            "creds.txt",
        ]));
        // No --workspace: the workspace is the sandbox's own tmpfs.
        let r = run(
            &sb,
            &opts,
            &[
                "/bin/sh",
                "-c",
                "printf 'bin\\001\\377\\000x\\n' > report.txt && seq 1 20000 >> report.txt && \
                 ln -s /etc/passwd link && mkfifo fifo && cp ~/.aws/credentials creds.txt",
            ],
        );
        // Two of the files asked for were not copied: not success, and
        // each is named.
        assert_eq!(r.code(), Some(123), "{}", r.describe());
        for refused in ["link", "fifo"] {
            assert!(
                r.stderr()
                    .contains(&format!("airlock: copy-out {refused}: ")),
                "[{mode}] {refused} is named\n{}",
                r.describe()
            );
        }
        assert!(
            r.stderr()
                .contains("2 of 4 --copy-out files not copied: exit 123"),
            "{}",
            r.describe()
        );
        let report = r.json();
        let records = report["copy_out"]
            .as_array()
            .unwrap_or_else(|| panic!("no copy_out in the report\n{}", r.describe()))
            .clone();
        let record = |p: &str| {
            records
                .iter()
                .find(|c| c["path"] == p)
                .unwrap_or_else(|| panic!("no copy_out record for {p}\n{}", r.describe()))
                .clone()
        };

        let dest = out.join("report.txt");
        let bytes = fs::read(&dest)
            .unwrap_or_else(|e| panic!("[{mode}] {}: {e}\n{}", dest.display(), r.describe()));
        assert!(bytes == expected, "[{mode}] the copy differs from the file");
        let sha = sha256_hex(&bytes);
        let rec = record("report.txt");
        assert_eq!(
            rec["sha256"].as_str(),
            Some(sha.as_str()),
            "{}",
            r.describe()
        );
        assert_eq!(
            rec["size"].as_u64(),
            Some(expected.len() as u64),
            "{}",
            r.describe()
        );
        assert_eq!(rec["dest"].as_str(), dest.to_str(), "{}", r.describe());
        assert!(rec.get("refused").is_none(), "{}", r.describe());

        let link = record("link");
        assert!(
            link["refused"]
                .as_str()
                .is_some_and(|w| w.contains("symlink")),
            "{}",
            r.describe()
        );
        let fifo = record("fifo");
        assert!(
            fifo["refused"]
                .as_str()
                .is_some_and(|w| w.contains("not a regular file")),
            "{}",
            r.describe()
        );
        for refused in ["link", "fifo"] {
            assert!(
                fs::symlink_metadata(out.join(refused)).is_err(),
                "[{mode}] {refused} was written"
            );
        }

        // A copied-out file holding a canary is a leak in that file.
        assert!(out.join("creds.txt").is_file(), "{}", r.describe());
        assert!(
            canaries(&report, "leaked")
                .iter()
                .any(|l| l["place"] == "copy_out:creds.txt" && l["encoding"] == "raw"),
            "{}",
            r.describe()
        );

        let events = audit_events(&log);
        let copies = data_of(&events, "copy_out");
        let ev = copies
            .iter()
            .find(|d| d["path"] == "report.txt")
            .unwrap_or_else(|| panic!("no copy_out event for report.txt:\n{}", shown(&events)));
        assert_eq!(
            ev["size"].as_u64(),
            Some(expected.len() as u64),
            "{}",
            shown(&events)
        );
        assert_eq!(
            ev["sha256"].as_str(),
            Some(sha.as_str()),
            "{}",
            shown(&events)
        );
        assert_eq!(ev["dest"].as_str(), dest.to_str(), "{}", shown(&events));
        let refused: Vec<&str> = data_of(&events, "copy_out.refused")
            .iter()
            .filter_map(|d| d["path"].as_str())
            .collect();
        assert_eq!(refused, ["link", "fifo"], "{}", shown(&events));

        // The same destination again: refused, the first copy intact.
        let opts = strings(&[
            "--json",
            "--out-dir",
            out.to_str().unwrap(),
            "--copy-out",
            "report.txt",
        ]);
        let again = run(
            &sb,
            &opts,
            &["/bin/sh", "-c", "echo overwritten > report.txt"],
        );
        assert_eq!(again.code(), Some(123), "{}", again.describe());
        assert!(
            again.stderr().contains("airlock: copy-out report.txt: ")
                && again.stderr().contains("exists"),
            "{}",
            again.describe()
        );
        let rec = &again.json()["copy_out"][0];
        assert!(
            rec["refused"]
                .as_str()
                .is_some_and(|w| w.contains("exists")),
            "{}",
            again.describe()
        );
        assert!(rec.get("sha256").is_none(), "{}", again.describe());
        assert!(
            fs::read(&dest).unwrap() == expected,
            "[{mode}] an existing file was overwritten"
        );

        // A path out of the workspace is refused before anything runs.
        let ws = sb.workspace().to_str().unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../x"] {
            let opts = strings(&[
                "--workspace",
                ws,
                "--out-dir",
                out.to_str().unwrap(),
                "--copy-out",
                bad,
            ]);
            let r = run(&sb, &opts, &["/bin/sh", "-c", "touch /workspace/ran"]);
            assert_eq!(r.code(), Some(125), "[{mode}] {bad}\n{}", r.describe());
            assert!(
                r.stderr().contains(&format!("{bad:?}")) && r.stderr().contains("relative"),
                "[{mode}] the message names the path and the rule\n{}",
                r.describe()
            );
            assert!(
                !sb.workspace().join("ran").exists(),
                "[{mode}] the command ran with --copy-out {bad}"
            );
        }
    }
}

/// PRODUCT BUG, left in place and ignored until fixed: the supervisor scans
/// only the first 16 MiB of a copied-out file for canaries
/// (`SessionSink::write_copy` in crates/airlock-runtime/src/evidence.rs
/// stops filling its scan buffer there, while the copy-out cap is 64 MiB).
/// A canary appended after 16 MiB of padding reaches the host unreported,
/// and `--fail-on canary` exits 0. An environment canary is used so that
/// no canary file is opened (which would fire on its own).
#[test]
fn a_canary_deep_in_a_copied_out_file_is_a_leak() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let out = owned_dir(&sb, "out");
        let opts = strings(&[
            "--json",
            "--fail-on",
            "canary",
            "--out-dir",
            out.to_str().unwrap(),
            "--copy-out",
            "big",
        ]);
        let r = run(
            &sb,
            &opts,
            &[
                "/bin/sh",
                "-c",
                "head -c 17000000 /dev/zero > big && printf %s \"$AWS_SECRET_ACCESS_KEY\" >> big",
            ],
        );
        let copied = fs::read(out.join("big")).unwrap_or_default();
        assert_eq!(copied.len(), 17_000_040, "{}", r.describe());
        assert_eq!(
            r.code(),
            Some(122),
            "[{mode}] a canary left in a copied-out file\n{}",
            r.describe()
        );
        assert!(
            canaries(&r.json(), "leaked").contains(&leak("aws-secret", "raw", "copy_out:big")),
            "{}",
            r.describe()
        );
    }
}

/// `airlock audit verify FILE`, anchored to the key that signed the run's
/// logs: the per-host default key in root mode (found by verify itself),
/// the profile's key in rootless mode (given with --key).
fn verify(sb: &Sandbox, file: &Path) -> Run {
    let file = file.to_str().unwrap();
    match sb.mode {
        Mode::Root => sb.airlock(&["audit", "verify", file]),
        Mode::Rootless => {
            let key = sb.outside().join("keys").join("audit.key.pub");
            sb.airlock(&["audit", "verify", file, "--key", key.to_str().unwrap()])
        }
    }
}

/// A copy of `log` with `edit` applied to its lines.
fn tampered(log: &Path, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> PathBuf {
    let mut lines: Vec<String> = fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    let p = log.with_file_name(name);
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p
}

#[test]
fn audit_verify_catches_tampering_and_show_filters_by_kind() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let (log, opts) = audited(&sb, "tamper");
        let r = run(&sb, &opts, &["/bin/sh", "-c", "echo a | tr a b | cat"]);
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        let ok = verify(&sb, &log);
        assert_eq!(
            ok.code(),
            Some(0),
            "[{mode}] an intact log\n{}",
            ok.describe()
        );

        let lines: Vec<String> = fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        // seq 1 created, 2 started, 3..=5 execs, 6 ended, then the head.
        assert!(lines.len() >= 7, "{}", lines.join("\n"));
        let exec_line = lines
            .iter()
            .position(|l| l.contains("\"kind\":\"process.exec\"") && l.contains("\"argv\":[\"tr\""))
            .expect("tr's exec line")
            + 1;

        assert!(
            ok.stdout().contains(": ok:") && !ok.stdout().contains("not anchored"),
            "[{mode}] verified against the signing key\n{}",
            ok.describe()
        );

        // Signed, but not by the key the verifier trusts.
        let other = owned_dir(&sb, "keys").join("other.key");
        let k = sb.airlock(&["audit", "keygen", "--out", other.to_str().unwrap()]);
        assert_eq!(k.code(), Some(0), "{}", k.describe());
        let v = sb.airlock(&[
            "audit",
            "verify",
            log.to_str().unwrap(),
            "--key",
            &format!("{}.pub", other.display()),
        ]);
        assert_eq!(v.code(), Some(1), "[{mode}] another key\n{}", v.describe());
        assert!(
            v.stderr()
                .contains(&format!("{}:{}:", log.display(), lines.len()))
                && v.stderr().contains("expected key"),
            "[{mode}] the head line and the key mismatch\n{}",
            v.describe()
        );

        // One digit of a pid.
        let edited = tampered(&log, "edited.jsonl", |lines| {
            let l = &mut lines[exec_line - 1];
            let at = l.find("\"pid\":").unwrap() + "\"pid\":".len();
            let d = l.as_bytes()[at];
            assert!(d.is_ascii_digit(), "{l}");
            let nd = if d == b'9' { '1' } else { char::from(d + 1) };
            l.replace_range(at..=at, &nd.to_string());
        });
        // A line in the middle.
        let deleted = tampered(&log, "deleted.jsonl", |lines| {
            lines.remove(3);
        });
        // The head.
        let headless = tampered(&log, "headless.jsonl", |lines| {
            lines.pop();
        });
        // The head cut mid-line (no newline at the end).
        let cut = log.with_file_name("cut.jsonl");
        let bytes = fs::read(&log).unwrap();
        fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
        let head_line = lines.len();
        for (file, line, says, what) in [
            (&edited, exec_line, "hash", "an edited pid"),
            (&deleted, 4, "seq", "a deleted line"),
            (&headless, head_line, "head", "a missing head"),
            (&cut, head_line, "truncated", "a truncated head"),
        ] {
            let v = verify(&sb, file);
            assert_eq!(v.code(), Some(1), "[{mode}] {what}\n{}", v.describe());
            assert!(
                v.stderr().contains(&format!("{}:{line}:", file.display()))
                    && v.stderr().contains(says),
                "[{mode}] {what}: the message should name {}:{line} and say {says:?}\n{}",
                file.display(),
                v.describe()
            );
        }

        // show --kind process: the three execs and nothing else.
        let s = sb.airlock(&[
            "audit",
            "show",
            log.to_str().unwrap(),
            "--json",
            "--kind",
            "process",
        ]);
        assert_eq!(s.code(), Some(0), "{}", s.describe());
        let shown: Vec<Value> = s
            .stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", s.describe()))
            })
            .collect();
        assert_eq!(shown.len(), 3, "{}", s.describe());
        assert!(
            shown.iter().all(|e| e["kind"] == "process.exec"),
            "{}",
            s.describe()
        );
        let plain = sb.airlock(&["audit", "show", log.to_str().unwrap(), "--kind", "process"]);
        assert_eq!(plain.code(), Some(0), "{}", plain.describe());
        let text = plain.stdout();
        assert!(
            text.contains("process.exec")
                && !text.contains("sandbox.created")
                && !text.contains("sandbox.ended"),
            "{}",
            plain.describe()
        );
    }
}

#[test]
fn an_audit_file_that_cannot_be_created_stops_the_run() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let dir = owned_dir(&sb, "audit");
        let existing = dir.join("existing.jsonl");
        fs::write(&existing, "old\n").unwrap();
        let dangling = dir.join("dangling.jsonl");
        let target = dir.join("symlink-target");
        std::os::unix::fs::symlink(&target, &dangling).unwrap();
        let missing_dir = sb.outside().join("no-such-dir").join("audit.jsonl");
        let ws = sb.workspace().to_str().unwrap();
        for (path, what) in [
            (&missing_dir, "in a directory that does not exist"),
            (&existing, "an existing file"),
            (&dangling, "a dangling symlink"),
        ] {
            let (_, mut opts) = audited(&sb, "unused");
            let i = opts.iter().position(|a| a == "--audit").unwrap();
            opts[i + 1] = path.display().to_string();
            opts.extend(strings(&["--workspace", ws]));
            let r = run(&sb, &opts, &["/bin/sh", "-c", "touch /workspace/ran"]);
            assert_eq!(r.code(), Some(125), "[{mode}] {what}\n{}", r.describe());
            assert!(
                r.stderr().contains(&path.display().to_string()),
                "[{mode}] {what}: the message names the path\n{}",
                r.describe()
            );
            assert!(
                !sb.workspace().join("ran").exists(),
                "[{mode}] {what}: the sandbox ran"
            );
        }
        assert_eq!(fs::read_to_string(&existing).unwrap(), "old\n");
        assert!(!target.exists(), "[{mode}] created through a symlink");
        assert!(!missing_dir.parent().unwrap().exists());
    }
}
