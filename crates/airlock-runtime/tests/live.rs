//! Live sandboxes through the runtime API, on the real kernel: state
//! across execs, per-exec timeouts that kill only their exec's tree (a
//! daemonized descendant included), background processes, reset, ttl,
//! the files API against links the sandbox plants, and a payload that
//! hunts for init's control socket to forge a result, and argvs past what
//! one control message carries (through a sealed memfd), past the request
//! cap and past the kernel's argv limit. A plain main (no
//! libtest harness): the sandbox's init is a re-execution of this binary.

#[path = "plain_main/mod.rs"]
mod plain_main;

use std::time::{Duration, Instant};

use airlock_policy::Profile;
use airlock_runtime::{
    ExecRequest, ExitReason, FileError, RuntimeError, Sandbox, SandboxRequest, Stream,
};

fn sandbox() -> Sandbox {
    Sandbox::create(SandboxRequest::new(Profile::builtin("default").unwrap())).unwrap()
}

fn sh(script: &str) -> ExecRequest {
    ExecRequest {
        cmd: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..ExecRequest::default()
    }
}

fn run(sb: &Sandbox, script: &str) -> airlock_runtime::ExecResult {
    sb.exec(&sh(script), &mut |_, _| {}).unwrap()
}

fn out(r: &airlock_runtime::ExecResult) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}

fn state_persists_across_execs() {
    let sb = sandbox();
    let r = run(
        &sb,
        "echo one > /workspace/a; echo two > /tmp/b; echo three > ~/c; echo ok",
    );
    assert_eq!(r.exit_code, 0, "{r:?}");
    let r = run(&sb, "cat /workspace/a /tmp/b ~/c; cd /tmp && pwd");
    assert_eq!(out(&r), "one\ntwo\nthree\n/tmp\n");
    // The default cwd is the workspace, and a relative cwd is resolved
    // against it.
    let r = run(&sb, "pwd");
    assert_eq!(out(&r), "/workspace\n");
    sb.mkdir("/workspace/sub", false).unwrap();
    let mut req = sh("pwd");
    req.cwd = Some("sub".into());
    assert_eq!(
        out(&sb.exec(&req, &mut |_, _| {}).unwrap()),
        "/workspace/sub\n"
    );
    // A background server started by one exec serves the next.
    let r = run(
        &sb,
        "(while :; do echo alive > /tmp/beat; sleep 0.05; done) >/dev/null 2>&1 & echo started",
    );
    assert_eq!(out(&r), "started\n");
    std::thread::sleep(Duration::from_millis(200));
    let r = run(&sb, "rm -f /tmp/beat; sleep 0.3; cat /tmp/beat");
    assert_eq!(
        out(&r),
        "alive\n",
        "the background loop did not survive its exec"
    );
    // Exit codes, signals and a missing command keep `airlock run`'s meanings.
    assert_eq!(run(&sb, "exit 7").exit_code, 7);
    let r = run(&sb, "kill -9 $$");
    assert_eq!(r.reason, ExitReason::Signal { signal: 9 });
    assert_eq!(r.exit_code, 137);
    let r = sb
        .exec(
            &ExecRequest {
                cmd: vec!["no-such-command".into()],
                ..ExecRequest::default()
            },
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(r.exit_code, 127);
    // A cwd that does not exist is the request's error, not an exit code.
    let mut req = sh("true");
    req.cwd = Some("/nonexistent".into());
    match sb.exec(&req, &mut |_, _| {}) {
        Err(RuntimeError::Exec(m)) => assert!(m.contains("/nonexistent"), "{m}"),
        other => panic!("{other:?}"),
    }
    // stdin and env.
    let mut req = sh("read x; echo \"$x $GREETING\"");
    req.stdin = Some(b"hello\n".to_vec());
    req.env = vec![("GREETING".into(), "world".into())];
    assert_eq!(
        out(&sb.exec(&req, &mut |_, _| {}).unwrap()),
        "hello world\n"
    );
    sb.close().unwrap();
}

fn a_per_exec_timeout_kills_its_whole_tree_and_nothing_else() {
    let sb = sandbox();
    // A survivor from an earlier exec.
    run(
        &sb,
        "(sleep 60; echo late) >/dev/null 2>&1 & echo $! > /tmp/survivor",
    );
    // This exec daemonizes a grandchild in a new session, then hangs.
    let mut req = sh(
        "setsid sh -c 'echo $$ > /tmp/daemon; exec sleep 60' </dev/null >/dev/null 2>&1 & \
         sleep 0.2; echo waiting; sleep 60",
    );
    req.timeout = Some(Duration::from_millis(800));
    let t = Instant::now();
    let mut streamed = Vec::new();
    let r = sb
        .exec(&req, &mut |s, d| {
            if s == Stream::Stdout {
                streamed.extend_from_slice(d)
            }
        })
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(r.reason, ExitReason::Timeout);
    assert_eq!(r.exit_code, 124);
    assert_eq!(streamed, b"waiting\n");
    // The daemonized grandchild died with its exec; the survivor did not.
    // (A process cannot signal another exec's processes: each exec is its
    // own Landlock domain, so `kill -0` would say EPERM; /proc tells.)
    let r = run(
        &sb,
        "sleep 0.2; d=$(cat /tmp/daemon); s=$(cat /tmp/survivor); \
         [ -d /proc/$d ] && echo daemon-alive; [ -d /proc/$s ] && echo survivor-alive",
    );
    assert_eq!(
        out(&r),
        "survivor-alive\n",
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    sb.close().unwrap();
}

fn background_processes_take_stdin_and_replay_output() {
    let sb = sandbox();
    let mut req = sh("while read -r l; do echo \"got:$l\"; done; echo done >&2");
    req.stdin_pipe = true;
    let p = sb.spawn(&req).unwrap();
    p.write_stdin(b"a\nb\n").unwrap();
    p.close_stdin();
    let report = p.wait(Duration::from_secs(10)).expect("finished");
    assert_eq!(report.exit_code, 0);
    let o = p.output(Stream::Stdout, 0, usize::MAX);
    assert_eq!(o.data, b"got:a\ngot:b\n");
    let tail = p.output(Stream::Stdout, 6, usize::MAX);
    assert_eq!(tail.data, b"got:b\n");
    // A background process that prints a canary is caught as an exec is.
    let leak = sb
        .spawn(&sh("sleep 0.2; cat /home/sandbox/.aws/credentials"))
        .unwrap();
    assert_eq!(p.output(Stream::Stderr, 0, usize::MAX).data, b"done\n");
    // A signal reaches a background process.
    let p = sb
        .spawn(&sh(
            "trap 'echo term; exit 3' TERM; while :; do sleep 0.05; done",
        ))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.signal(15).unwrap();
    let r = p.wait(Duration::from_secs(10)).expect("finished");
    assert_eq!(r.exit_code, 3);
    // Output past the cap keeps the tail and says how much was dropped.
    let mut req = sh("i=0; while [ $i -lt 1000 ]; do echo line$i; i=$((i+1)); done");
    req.output_cap = Some(100);
    let r = sb.exec(&req, &mut |_, _| {}).unwrap();
    assert!(out(&r).ends_with("line999\n"), "{}", out(&r));
    assert_eq!(r.stdout.len(), 100);
    assert!(r.stdout_dropped > 5000, "{}", r.stdout_dropped);
    assert!(r.limits_hit.contains(&airlock_runtime::LimitHit::Output));
    assert!(leak.wait(Duration::from_secs(10)).is_some());
    let report = sb.close().unwrap();
    let leaked = &report.evidence.canaries.leaked;
    assert!(
        leaked
            .iter()
            .any(|l| l.canary == "aws-secret" && l.place == format!("exec:{}:stdout", leak.id())),
        "{leaked:?}"
    );
}

fn reset_restores_the_files_and_kills_the_processes() {
    let sb = sandbox();
    let before = out(&run(&sb, "ls -A /workspace /tmp /var/tmp ~"));
    // A canary read before and after each reset and checkpoint: each read
    // is one touch, and init's own wipe, plant, checkpoint and restore are
    // none.
    let creds = "/home/sandbox/.aws/credentials";
    let touch = format!("cat {creds} >/dev/null");
    run(&sb, &touch);
    run(
        &sb,
        "echo x > /workspace/f; mkdir -p /tmp/d/e; chmod 000 /tmp/d; echo y > /var/tmp/g; \
         touch ~/h; (sleep 60 &) ; echo",
    );
    let p = sb.spawn(&sh("sleep 60")).unwrap();
    let took = sb.reset(None).unwrap();
    assert!(took < Duration::from_secs(5), "{took:?}");
    let r = p.wait(Duration::from_secs(5)).expect("killed by reset");
    assert_eq!(r.reason, ExitReason::Killed);
    // Back to the state at create: the planted canaries, nothing else.
    assert_eq!(out(&run(&sb, "ls -A /workspace /tmp /var/tmp ~")), before);
    assert!(before.contains(".env"), "{before}");
    assert_eq!(out(&run(&sb, "pgrep -c sleep || true")), "0\n");
    run(&sb, &touch);
    // A named checkpoint: back to it, not to create.
    run(&sb, "mkdir -p /workspace/d; echo v1 > /workspace/d/f; ln -s d/f /workspace/l; chmod 751 /workspace/d/f");
    sb.checkpoint("v1").unwrap();
    run(
        &sb,
        "echo v2 > /workspace/d/f; rm /workspace/l; touch /tmp/later",
    );
    sb.reset(Some("v1")).unwrap();
    let r = run(
        &sb,
        "cat /workspace/l; stat -c %a /workspace/d/f; ls -A /tmp",
    );
    assert_eq!(out(&r), "v1\n751\n");
    // The canaries are back as planted, and watched again.
    assert_eq!(
        out(&run(&sb, &format!("test -s {creds} && echo planted"))),
        "planted\n"
    );
    run(&sb, &touch);
    match sb.reset(Some("nope")) {
        Err(e) => assert!(e.to_string().contains("no checkpoint named"), "{e}"),
        Ok(_) => panic!("a reset to a missing checkpoint succeeded"),
    }
    assert!(sb.checkpoint("../x").is_err());
    let report = sb.close().unwrap();
    let touched = &report.evidence.canaries.touched;
    let opens: Vec<_> = touched.iter().map(|t| (t.path.as_str(), t.opens)).collect();
    assert_eq!(opens, [(creds, 3)], "{touched:?}");
}

fn the_ttl_closes_the_sandbox() {
    let mut req = SandboxRequest::new(Profile::builtin("default").unwrap());
    req.ttl = Some(Duration::from_millis(700));
    let sb = Sandbox::create(req).unwrap();
    assert_eq!(run(&sb, "echo hi").exit_code, 0);
    let t = Instant::now();
    while !sb.is_closed() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sb.is_closed(), "the ttl did not close the sandbox");
    assert_eq!(sb.info().closed_reason.as_deref(), Some("ttl"));
    match sb.exec(&sh("true"), &mut |_, _| {}) {
        Err(RuntimeError::Closed { .. }) => {}
        other => panic!("{other:?}"),
    }
}

fn the_files_api_never_follows_what_the_sandbox_planted() {
    let sb = sandbox();
    sb.write_file("/workspace/x/y.bin", &[0, 1, 2, 255], None)
        .unwrap();
    assert_eq!(
        sb.read_file("x/y.bin", 1 << 20).unwrap(),
        vec![0, 1, 2, 255]
    );
    let r = run(
        &sb,
        "od -An -tx1 /workspace/x/y.bin; stat -c %U /workspace/x/y.bin",
    );
    assert_eq!(out(&r), " 00 01 02 ff\nsandbox\n");
    // Links planted by the sandbox.
    run(
        &sb,
        "ln -s /etc/passwd /workspace/link; ln -s / /workspace/root; \
         echo secret > /tmp/s; ln /tmp/s /tmp/hard; mkfifo /tmp/fifo",
    );
    for (path, want) in [
        ("/workspace/link", "link"),
        ("/workspace/root/etc/passwd", "link"),
        ("/tmp/hard", "hard"),
        ("/tmp/fifo", "regular"),
        ("/workspace/../etc/passwd", ".."),
        ("/etc/passwd", "outside"),
        ("/proc/self/environ", "outside"),
    ] {
        let e = sb.read_file(path, 1 << 20).unwrap_err();
        let m = e.to_string();
        let ok = match want {
            "link" => matches!(e, RuntimeError::File(FileError::Link(_))),
            "hard" => matches!(e, RuntimeError::File(FileError::HardLink(_))),
            "regular" => matches!(e, RuntimeError::File(FileError::NotRegular(_))),
            ".." => matches!(e, RuntimeError::File(FileError::BadPath { .. })),
            _ => matches!(e, RuntimeError::File(FileError::Outside { .. })),
        };
        assert!(ok, "{path}: {m}");
        assert!(m.contains(path), "{m}");
    }
    // Writing through a planted symlink does not reach its target.
    assert!(sb.write_file("/workspace/link", b"pwned", None).is_err());
    assert!(sb
        .write_file("/workspace/root/tmp/x", b"pwned", None)
        .is_err());
    assert!(sb.write_file("/tmp/hard", b"pwned", None).is_err());
    assert_eq!(out(&run(&sb, "cat /tmp/s")), "secret\n");
    // A size cap gives a clear error.
    sb.write_file("/tmp/big", &vec![b'a'; 4096], None).unwrap();
    let e = sb.read_file("/tmp/big", 100).unwrap_err();
    assert!(e.to_string().contains("4096 bytes; the cap is 100"), "{e}");
    // Listing, stat, remove.
    let (entries, more) = sb.list_files("/workspace").unwrap();
    assert!(!more);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    // (.env: the canary planted in an ephemeral workspace.)
    assert_eq!(names, [".env", "link", "root", "x"]);
    assert_eq!(
        sb.stat_file("/workspace/link").unwrap().kind,
        airlock_runtime::FileKind::Symlink
    );
    sb.remove_file("/workspace/x", true).unwrap();
    assert!(matches!(
        sb.stat_file("/workspace/x"),
        Err(RuntimeError::File(FileError::NotFound(_)))
    ));
    // An executable written by the caller can be run.
    sb.write_file("/var/tmp/tool", b"#!/bin/sh\necho tool:$1\n", Some(0o755))
        .unwrap();
    assert_eq!(out(&run(&sb, "/var/tmp/tool a")), "tool:a\n");
    sb.close().unwrap();
}

fn a_payload_cannot_reach_inits_control_socket_or_forge_a_result() {
    let sb = sandbox();
    // The payload looks through every fd it has and every process's fds it
    // can see, and writes a forged report into each socket it finds.
    let hunt = r#"
        found=""
        for f in /proc/self/fd/*; do
            t=$(readlink $f 2>/dev/null); case "$t" in socket:*) found="$found self:$f";; esac
        done
        for p in /proc/[0-9]*; do
            for f in $p/fd/*; do
                t=$(readlink $f 2>/dev/null) || continue
                case "$t" in socket:*) found="$found $f";
                    printf '{"exited":{"id":1,"status":0,"full":[],"nofile":false,"memory":false}}' > $f 2>/dev/null;;
                esac
            done
        done
        echo "sockets:[$found]"
        exit 9
    "#;
    let r = run(&sb, hunt);
    assert_eq!(r.exit_code, 9, "a forged result was taken: {r:?}");
    assert_eq!(out(&r).trim(), "sockets:[]", "{}", out(&r));
    // The sandbox still works and reports truthfully.
    assert_eq!(run(&sb, "exit 4").exit_code, 4);
    sb.close().unwrap();
}

fn a_host_workspace_is_shared_with_the_files_api() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seed"), b"from the host").unwrap();
    let mut req = SandboxRequest::new(Profile::builtin("default").unwrap());
    req.workspace = Some(dir.path().to_path_buf());
    let sb = Sandbox::create(req).unwrap();
    assert_eq!(sb.read_file("seed", 1 << 20).unwrap(), b"from the host");
    sb.write_file("/workspace/api/new", b"from the api\n", None)
        .unwrap();
    let r = run(
        &sb,
        "cat /workspace/api/new; echo made > /workspace/made; stat -c %U /workspace/api/new",
    );
    assert_eq!(out(&r), "from the api\nsandbox\n");
    // On the host, both belong to the directory's owner.
    let owner = std::fs::metadata(dir.path()).unwrap().uid();
    for f in ["api/new", "api", "made"] {
        let m = std::fs::metadata(dir.path().join(f)).unwrap();
        assert_eq!(m.uid(), owner, "{f}");
    }
    // A reset kills the processes but keeps the caller's directory.
    sb.reset(None).unwrap();
    assert!(dir.path().join("made").exists());
    sb.close().unwrap();
}

fn close_leaves_no_process() {
    let sb = sandbox();
    run(&sb, "setsid sleep 300 & sleep 300 & echo");
    let pid_marker = sb.id().to_string();
    let report = sb.close().unwrap();
    assert_eq!(report.reason, "closed");
    std::thread::sleep(Duration::from_millis(100));
    let alive = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| c.starts_with(b"sleep\x00300"))
                .unwrap_or(false)
        })
        .count();
    assert_eq!(alive, 0, "{pid_marker}: a sandbox process outlived close");
    // A second close returns the first's report.
    assert_eq!(sb.close().unwrap().reason, "closed");
}

fn printf_args(count: usize, size: usize) -> ExecRequest {
    let mut cmd = vec!["printf".to_string(), "%s".to_string()];
    cmd.extend((0..count).map(|i| char::from(b'a' + (i % 26) as u8).to_string().repeat(size)));
    ExecRequest {
        cmd,
        ..ExecRequest::default()
    }
}

fn a_large_argv_goes_through_whole() {
    let sb = sandbox();
    // 16 arguments of 64 KiB: 1 MiB, far past one control message.
    let req = printf_args(16, 64 * 1024);
    let r = sb.exec(&req, &mut |_, _| {}).unwrap();
    assert_eq!(r.exit_code, 0, "{r:?}");
    assert_eq!(r.stdout_dropped, 0);
    let want: String = req.cmd[2..].concat();
    assert_eq!(r.stdout.len(), want.len());
    assert!(
        r.stdout == want.as_bytes(),
        "the output differs from the argv"
    );
    // Over the request cap (8 MiB): the request's error, before init.
    let req = printf_args(80, 120 * 1024);
    match sb.exec(&req, &mut |_, _| {}) {
        Err(e @ RuntimeError::Jail(_)) => {
            let m = e.to_string();
            assert!(m.starts_with("cmd: ") && m.contains("8388608 bytes"), "{m}");
        }
        other => panic!("an argv over the cap: {other:?}"),
    }
    // Under the cap but over the kernel's argv limit (a quarter of the
    // stack rlimit, at most 6 MiB; about 3 MiB with the usual 8 MiB
    // stack): the exec fails with E2BIG, and the sandbox goes on.
    let stack = rustix::process::getrlimit(rustix::process::Resource::Stack)
        .current
        .unwrap_or(u64::MAX);
    let kernel_limit = (stack / 4).min(6 << 20) as usize;
    let size = 120 * 1024;
    let count = (kernel_limit + (1 << 20)) / size;
    assert!(
        count * size < 8 << 20,
        "the stack rlimit leaves no room under the cap"
    );
    let r = sb.exec(&printf_args(count, size), &mut |_, _| {}).unwrap();
    assert_eq!(r.exit_code, 126, "{} bytes of argv: {r:?}", count * size);
    assert_eq!(
        r.reason,
        ExitReason::ExecFailed {
            errno: rustix::io::Errno::TOOBIG.raw_os_error()
        },
        "{r:?}"
    );
    assert_eq!(out(&run(&sb, "echo still here")), "still here\n");
    // The plan's memfd never reaches a payload.
    let mut req = printf_args(4, 100 * 1024);
    req.cmd.splice(
        0..2,
        [
            "/bin/sh",
            "-c",
            "ls -l /proc/self/fd/ | grep -c memfd; true",
            "sh",
        ]
        .map(String::from),
    );
    let r = sb.exec(&req, &mut |_, _| {}).unwrap();
    assert_eq!(out(&r), "0\n", "{r:?}");
    sb.close().unwrap();
}

/// Run as root, the tests then run again rootless (as nobody, through
/// `setpriv`): this binary re-executes itself.
fn rootless_too() {
    if !rustix::process::geteuid().is_root() || std::env::var_os("AIRLOCK_LIVE_ROOTLESS").is_some()
    {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
        .arg(format!("HOME={}", home.path().display()))
        .arg("AIRLOCK_LIVE_ROOTLESS=1")
        .arg(std::env::current_exe().unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("rootless:\n{text}");
    assert!(
        out.status.success(),
        "the rootless run failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("11 passed, 0 failed"), "{text}");
}

fn main() {
    plain_main::run(&[
        ("state_persists_across_execs", state_persists_across_execs),
        (
            "a_per_exec_timeout_kills_its_whole_tree_and_nothing_else",
            a_per_exec_timeout_kills_its_whole_tree_and_nothing_else,
        ),
        (
            "background_processes_take_stdin_and_replay_output",
            background_processes_take_stdin_and_replay_output,
        ),
        (
            "reset_restores_the_files_and_kills_the_processes",
            reset_restores_the_files_and_kills_the_processes,
        ),
        ("the_ttl_closes_the_sandbox", the_ttl_closes_the_sandbox),
        (
            "the_files_api_never_follows_what_the_sandbox_planted",
            the_files_api_never_follows_what_the_sandbox_planted,
        ),
        (
            "a_payload_cannot_reach_inits_control_socket_or_forge_a_result",
            a_payload_cannot_reach_inits_control_socket_or_forge_a_result,
        ),
        (
            "a_host_workspace_is_shared_with_the_files_api",
            a_host_workspace_is_shared_with_the_files_api,
        ),
        ("close_leaves_no_process", close_leaves_no_process),
        (
            "a_large_argv_goes_through_whole",
            a_large_argv_goes_through_whole,
        ),
        ("rootless_too", rootless_too),
    ]);
}
