//! README.md must be true as written: every command of its "## Usage"
//! section (the fenced `sh` blocks of it and its subsections: lines that
//! start with `airlock ` or `echo ... | airlock`) runs in a scratch
//! directory holding the files a user would have (big.py, tool.sh, job.py,
//! ...), with `airlock` on PATH. Lines that need a service this machine
//! cannot offer are listed with the reason; lines that reach real internet
//! hosts run with that host denied, so nothing leaves the machine, and must
//! start, apply the profile and be refused with the reason. Also: the hint
//! for a local file that is not in the sandbox, root and rootless.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

const README: &str = include_str!("../../../../README.md");

/// Lines not run, each with why: exactly these must be in the README.
const SKIPPED: &[(&str, &str)] = &[(
    "airlock eval injection --agent openai:http://127.0.0.1:8000/v1#llama3",
    "needs an OpenAI-compatible model endpoint on 127.0.0.1:8000",
)];

/// Lines that reach a real internet host: run offline (the host denied by
/// an extra `--deny-host`, or the approver denying), and must end with the
/// gateway's refusal on stderr and not with airlock's own failure (125).
const INTERNET: &[(&str, &str)] = &[
    (
        "pip download requests",
        "--deny-host pypi.org --deny-host *.pythonhosted.org",
    ),
    ("curl http://example.org", ""),
];

/// Exit statuses other than 0 that a line is documented to end with.
const EXPECTED_EXIT: &[(&str, i32)] = &[];

/// The commands of the Usage section, in order.
fn usage_commands() -> Vec<String> {
    let start = README.find("\n## Usage").expect("README has ## Usage");
    let rest = &README[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    let section = &rest[..end];
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        let l = line.trim();
        if in_sh
            && (l.starts_with("airlock ") || (l.starts_with("echo ") && l.contains("| airlock ")))
        {
            out.push(l.to_owned());
        }
    }
    out
}

fn write(dir: &Path, name: &str, text: &str, mode: u32) {
    let p = dir.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The toy agent of docs/eval-agents.md, as a user would copy it.
fn doc_agent() -> String {
    let doc = include_str!("../../../../docs/eval-agents.md");
    let start = doc.find("```python\n").expect("the doc has a python block") + 10;
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_owned()
}

/// The files the README's commands name, as a user would have them.
fn scratch(dir: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    copy_dir(&repo.join("examples"), &dir.join("examples"));
    write(dir, "big.py", "print(sum(range(10**6)))\n", 0o644);
    write(dir, "tool.sh", "#!/bin/sh\necho tool ran\nls\n", 0o755);
    write(
        dir,
        "tool.py",
        "import urllib.request\n\
         print(urllib.request.urlopen('http://api.example.test/v1/weather?city=Paris').read().decode())\n\
         print(urllib.request.urlopen(urllib.request.Request('http://outbox.example.test/send', data=b'report')).read().decode())\n",
        0o644,
    );
    write(
        dir,
        "job.py",
        "import json, os\nos.makedirs('out', exist_ok=True)\njson.dump({'ok': True}, open('out/report.json', 'w'))\n",
        0o644,
    );
    write(dir, "job/Makefile", "test:\n\techo tests pass\n", 0o644);
    // Offline, the approver denies (a real one would grant), so nothing
    // leaves the machine; it records that it was asked.
    write(
        dir,
        "approve.sh",
        "#!/bin/sh\ncat > asked.json\necho '{\"decision\":\"deny\",\"approver\":\"readme\",\"reason\":\"offline\"}'\n",
        0o755,
    );
    write(
        dir,
        "my.toml",
        "extends = \"python\"\n\n[limits]\npids = 64\n",
        0o644,
    );
    fs::copy(repo.join("suites/example.yaml"), dir.join("my-suite.yaml")).unwrap();
    write(dir, "agent.py", &doc_agent(), 0o755);
    let bin = dir.join(".bin");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(dir.join("home")).unwrap();
    std::os::unix::fs::symlink(airlock_bin(), bin.join("airlock")).unwrap();
}

fn sh(dir: &Path, line: &str) -> std::process::Output {
    let path = format!(
        "{}:{}",
        dir.join(".bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("PATH", path)
        // Commands that write under ~ (man pages) write into the scratch
        // directory, never into the real home.
        .env("HOME", dir.join("home"))
        .env_remove("AIRLOCK_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

fn describe(line: &str, o: &std::process::Output) -> String {
    format!(
        "$ {line}\nstatus {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_usage_command_of_the_readme_works_as_written() {
    let commands = usage_commands();
    assert!(commands.len() > 20, "{commands:#?}");
    for (prefix, why) in SKIPPED {
        let n = commands.iter().filter(|c| c.starts_with(prefix)).count();
        assert_eq!(
            n, 1,
            "skipped line {prefix:?} ({why}) must be in the README once"
        );
    }
    for (needle, _) in INTERNET {
        assert_eq!(
            commands.iter().filter(|c| c.contains(needle)).count(),
            1,
            "{needle:?}"
        );
    }
    let tmp = public_tempdir();
    let dir = tmp.path();
    scratch(dir);
    // The baseline the eval example compares with: an earlier run's results.
    let o = sh(
        dir,
        "airlock eval my-suite.yaml --agent ground-truth --out old",
    );
    assert_eq!(o.status.code(), Some(0), "{}", describe("baseline", &o));
    let mut ran = 0;
    for line in &commands {
        if SKIPPED.iter().any(|(p, _)| line.starts_with(p)) {
            continue;
        }
        if let Some((_, extra)) = INTERNET.iter().find(|(n, _)| line.contains(n)) {
            let offline = line.replacen("airlock run ", &format!("airlock run {extra} "), 1);
            let o = sh(dir, &offline);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_ne!(o.status.code(), Some(125), "{}", describe(&offline, &o));
            assert!(
                err.contains("airlock: egress denied"),
                "the gateway should refuse with its reason\n{}",
                describe(&offline, &o)
            );
            ran += 1;
            continue;
        }
        let o = sh(dir, line);
        let want = EXPECTED_EXIT
            .iter()
            .find(|(p, _)| line.starts_with(p))
            .map_or(0, |(_, c)| *c);
        assert_eq!(o.status.code(), Some(want), "{}", describe(line, &o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("is not in the sandbox"),
            "{}",
            describe(line, &o)
        );
        ran += 1;
    }
    assert_eq!(ran + SKIPPED.len(), commands.len());
    // What the commands were for did happen.
    assert!(dir.join("results/out/report.json").is_file(), "copy-out");
    assert!(dir.join("run.jsonl").is_file(), "audit log");
    let asked = fs::read_to_string(dir.join("asked.json")).expect("the approver was asked");
    assert!(asked.contains("example.org"), "{asked}");
}

#[test]
fn the_example_profiles_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for e in fs::read_dir(&dir).unwrap() {
        let p: PathBuf = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let o = Command::new(airlock_bin())
                .args(["profile", "check"])
                .arg(&p)
                .output()
                .unwrap();
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}",
                describe(&p.display().to_string(), &o)
            );
            n += 1;
        }
    }
    assert!(n >= 4);
}

const HINT: &str =
    "is not in the sandbox: pass `--workspace .` (or `-w DIR`) to bind your directory";

#[test]
fn a_local_file_not_in_the_sandbox_gets_a_hint_root_and_rootless() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let dir = public_tempdir();
        write(dir.path(), "tool.sh", "#!/bin/sh\necho tool ran\n", 0o755);
        write(dir.path(), "big.py", "print('big')\n", 0o644);
        let run = |args: &[&str]| {
            sb.airlock_with(args, |c| {
                c.current_dir(dir.path());
            })
        };
        let cases: &[(&[&str], Option<i32>, Option<&str>)] = &[
            (&["run", "--", "./tool.sh"], Some(127), Some("`./tool.sh`")),
            (
                &["run", "--", "python3", "big.py"],
                Some(2),
                Some("`big.py`"),
            ),
            (
                &["run", "--json", "--", "python3", "-u", "big.py"],
                Some(2),
                Some("`big.py`"),
            ),
            // Not: with a workspace it works; a file that is not on the host
            // either; inline code; a command that is not an interpreter.
            (&["run", "-w", ".", "--", "./tool.sh"], Some(0), None),
            (
                &["run", "-w", ".", "--", "python3", "big.py"],
                Some(0),
                None,
            ),
            (&["run", "--", "./absent.sh"], Some(127), None),
            (&["run", "--", "python3", "absent.py"], Some(2), None),
            (
                &[
                    "run",
                    "--",
                    "python3",
                    "-c",
                    "import sys; sys.exit(3)",
                    "big.py",
                ],
                Some(3),
                None,
            ),
            (&["run", "--", "cat", "big.py"], Some(1), None),
        ];
        for (args, code, hint) in cases {
            let r = run(args);
            assert_eq!(r.code(), *code, "{}", r.describe());
            let err = r.stderr();
            match hint {
                Some(name) => assert!(
                    err.contains(&format!("airlock: {name} {HINT}")),
                    "{}",
                    r.describe()
                ),
                None => assert!(!err.contains(HINT), "{}", r.describe()),
            }
        }
    }
}
