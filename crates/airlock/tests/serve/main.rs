//! `airlock serve` as a real process on the real kernel, root and rootless
//! (through `setpriv` as nobody, on a socket in a directory it owns):
//! state across execs over HTTP, per-exec timeouts, background processes
//! (stdin, output replay, signals, wait), the files API against planted
//! links, reset and checkpoints, a 50 MiB stdin and a 1 MiB argv in one
//! exec, ptys of the sandbox's own (TIOCSTI still denied), bad input, auth on TCP, capacity, 50 live
//! sandboxes, 200 create/exec/delete cycles with a host leak check, and
//! SIGTERM / SIGKILL of the server. The CLI client is tested against it.

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_server::{encode_query, Client, Reply};
use common::*;
use serde_json::{json, Value};

/// A running `airlock serve`.
struct Server {
    mode: Mode,
    child: Option<Child>,
    pid: u32,
    dir: tempfile::TempDir,
    socket: PathBuf,
    args: Vec<String>,
}

fn server_dir(mode: Mode) -> tempfile::TempDir {
    let dir = public_tempdir();
    if mode == Mode::Rootless && is_root() {
        rustix::fs::chown(
            dir.path(),
            Some(rustix::fs::Uid::from_raw(ROOTLESS_UID)),
            Some(rustix::fs::Gid::from_raw(ROOTLESS_UID)),
        )
        .unwrap();
    }
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn serve_command(mode: Mode, dir: &Path, args: &[String]) -> Command {
    let mut c = if mode == Mode::Rootless && is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
            .arg(format!("HOME={}", dir.display()))
            .arg(shared_public_airlock());
        c
    } else {
        Command::new(airlock_bin())
    };
    c.arg("serve").args(args).env_remove("XDG_RUNTIME_DIR");
    c
}

impl Server {
    fn start(mode: Mode, extra: &[&str]) -> Server {
        let dir = server_dir(mode);
        Self::start_in(mode, dir, extra)
    }

    fn start_in(mode: Mode, dir: tempfile::TempDir, extra: &[&str]) -> Server {
        let socket = dir.path().join("serve.sock");
        let mut args = vec!["--socket".to_string(), socket.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log =
            fs::File::create(dir.path().join(format!("serve.{}.log", std::process::id()))).unwrap();
        let child = serve_command(mode, dir.path(), &args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        let s = Server {
            mode,
            child: Some(child),
            pid,
            dir,
            socket,
            args,
        };
        let t = Instant::now();
        loop {
            if let Ok(r) = s.client().json("GET", "/healthz", None) {
                if r.status == 200 {
                    break;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "[{mode}] the server did not come up:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn client(&self) -> Client {
        Client::unix(&self.socket).unwrap()
    }

    fn log(&self) -> String {
        fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }

    fn signal(&self, sig: rustix::process::Signal) {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.pid as i32).unwrap(),
            sig,
        )
        .unwrap();
    }

    /// Waits for the server to exit; its status code.
    fn wait(&mut self) -> Option<i32> {
        let mut c = self.child.take().unwrap();
        let t = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code();
            }
            if t.elapsed() > Duration::from_secs(60) {
                let _ = c.kill();
                panic!("[{}] the server did not exit:\n{}", self.mode, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid))
            .unwrap()
            .count()
    }

    fn mounts(&self) -> usize {
        fs::read_to_string(format!("/proc/{}/mountinfo", self.pid))
            .unwrap()
            .lines()
            .count()
    }

    fn cgroups(&self) -> Vec<String> {
        cgroups_of(self.pid)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sandbox cgroups a server with this pid made, under every hierarchy.
fn cgroups_of(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let prefix = format!("airlock-{pid}-");
    let Ok(top) = fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    let mut bases = vec![PathBuf::from("/sys/fs/cgroup/airlock")];
    bases.extend(top.flatten().map(|e| e.path().join("airlock")));
    for base in bases {
        for e in fs::read_dir(&base).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = s.rsplit_once(')')?;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// Every process descended from `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent = std::collections::HashMap::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(p) = name.parse::<u32>() else { continue };
        if let Some(f) = stat_fields(&name) {
            if let Some(pp) = f.get(1).and_then(|v| v.parse::<u32>().ok()) {
                parent.insert(p, pp);
            }
        }
    }
    parent
        .keys()
        .copied()
        .filter(|&p| {
            let mut cur = p;
            for _ in 0..64 {
                match parent.get(&cur) {
                    Some(&pp) if pp == pid => return true,
                    Some(&pp) if pp > 1 => cur = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// Processes whose command line contains `needle`.
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

/// The network namespaces processes on the host hold.
fn host_netns() -> BTreeSet<String> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| fs::read_link(e.path().join("ns/net")).ok())
        .map(|l| l.display().to_string())
        .collect()
}

fn call(c: &Client, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let r = c.json(method, path, body.as_ref()).unwrap();
    (r.status, r.json())
}

fn ok(c: &Client, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = call(c, method, path, body.clone());
    assert_eq!(s, 200, "{method} {path} {body:?}: {v}");
    v
}

fn create(c: &Client, body: Value) -> String {
    ok(c, "POST", "/v1/sandboxes", Some(body))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn exec(c: &Client, id: &str, body: Value) -> Value {
    ok(c, "POST", &format!("/v1/sandboxes/{id}/exec"), Some(body))
}

fn sh(c: &Client, id: &str, script: &str) -> Value {
    exec(c, id, json!({"cmd": script}))
}

fn raw(c: &Client, method: &str, path: &str, body: &[u8]) -> Reply {
    c.send(
        method,
        path,
        Some("application/octet-stream"),
        body.to_vec(),
        None,
    )
    .unwrap()
}

/// Asserts an error answer: its status, code, and a message containing
/// `needle`.
fn assert_error(r: (u16, Value), status: u16, code: &str, needle: &str) {
    let (s, v) = r;
    assert_eq!(s, status, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    let m = v["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains(needle), "{needle:?} not in {m:?}");
}

/// Writes `request` on a fresh connection and reads the answer until the
/// server closes it (or 5 s pass).
fn raw_http(socket: &Path, request: &str) -> String {
    use std::io::{Read, Write};
    let mut u = std::os::unix::net::UnixStream::connect(socket).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = u.write_all(request.as_bytes());
    let mut out = Vec::new();
    let _ = u.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn reply_json(r: Reply) -> (u16, Value) {
    (r.status, r.json())
}

fn healthy(s: &Server) {
    let (st, v) = call(&s.client(), "GET", "/healthz", None);
    assert_eq!((st, v["status"].as_str()), (200, Some("ok")), "{v}");
}

/// A light profile for many sandboxes at once.
fn light() -> Value {
    json!({"extends": "default", "name": "light", "limits": {"memory": "64M", "pids": 64}})
}

#[test]
fn state_processes_and_the_cli_over_http() {
    for mode in modes() {
        let audit = server_dir(mode);
        let audit_dir = audit.path().join("audit");
        let s = Server::start(mode, &["--audit-dir", &audit_dir.display().to_string()]);
        let c = s.client();
        let id = create(
            &c,
            json!({"env": {"GREETING": "hello"}, "ttl": "10m", "idle_timeout": 600}),
        );
        let info = ok(&c, "GET", &format!("/v1/sandboxes/{id}"), None);
        assert_eq!(info["state"], "running", "{info}");
        assert_eq!(info["ttl_secs"], 600.0, "{info}");
        assert_eq!(info["limits"]["memory"], "1G", "{info}");

        // Files, /tmp and $HOME persist across execs; env from create.
        let r = sh(
            &c,
            &id,
            "echo one > /workspace/a; echo two > /tmp/b; echo three > ~/c; echo $GREETING",
        );
        assert_eq!(
            (r["exit_code"].as_i64(), r["stdout"].as_str()),
            (Some(0), Some("hello\n")),
            "{r}"
        );
        let r = exec(
            &c,
            &id,
            json!({"cmd": ["cat", "/workspace/a", "/tmp/b", "/home/sandbox/c"]}),
        );
        assert_eq!(r["stdout"], "one\ntwo\nthree\n", "{r}");
        let r = exec(
            &c,
            &id,
            json!({"cmd": "read x; echo \"$x $V\" >&2; exit 4", "stdin": "in\n", "env": {"V": "v"}}),
        );
        assert_eq!(
            (r["exit_code"].as_i64(), r["stderr"].as_str()),
            (Some(4), Some("in v\n")),
            "{r}"
        );
        // Bytes that are not UTF-8 come back exactly in base64.
        let r = sh(&c, &id, "printf 'a\\377'");
        assert_eq!(r["stdout_base64"], "Yf8=", "{r}");
        // A background loop started by one exec serves the next.
        sh(
            &c,
            &id,
            "(while :; do echo alive > /tmp/beat; sleep 0.05; done) >/dev/null 2>&1 & echo",
        );
        std::thread::sleep(Duration::from_millis(200));
        let r = sh(&c, &id, "rm -f /tmp/beat; sleep 0.3; cat /tmp/beat");
        assert_eq!(r["stdout"], "alive\n", "{r}");

        // A per-exec timeout kills that exec and nothing else.
        sh(
            &c,
            &id,
            "(sleep 60) >/dev/null 2>&1 & echo $! > /tmp/survivor",
        );
        let t = Instant::now();
        let r = exec(
            &c,
            &id,
            json!({"cmd": "echo waiting; sleep 60", "timeout": "800ms"}),
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert_eq!(
            (r["exit_code"].as_i64(), &r["reason"]["kind"]),
            (Some(124), &json!("timeout")),
            "{r}"
        );
        assert_eq!(r["stdout"], "waiting\n", "{r}");
        let r = sh(
            &c,
            &id,
            "[ -d /proc/$(cat /tmp/survivor) ] && echo survivor-alive",
        );
        assert_eq!(r["stdout"], "survivor-alive\n", "{r}");

        // Streaming: NDJSON chunks, then the result.
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        let rep = c
            .send(
                "POST",
                &format!("/v1/sandboxes/{id}/exec"),
                Some("application/json"),
                serde_json::to_vec(&json!({"cmd": "echo a; sleep 0.2; echo b >&2; printf '\\342\\202'; sleep 0.1; printf '\\254\\n'", "stream": true})).unwrap(),
                Some(&mut |d: &[u8]| buf.extend_from_slice(d)),
            )
            .unwrap();
        assert_eq!(rep.status, 200);
        assert_eq!(rep.content_type.as_deref(), Some("application/x-ndjson"));
        for l in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            lines.push(serde_json::from_slice::<Value>(l).unwrap());
        }
        let out: String = lines.iter().filter_map(|l| l["stdout"].as_str()).collect();
        assert_eq!(out, "a\n€\n", "{lines:?}");
        assert!(
            lines.iter().all(|l| l.get("stdout_base64").is_none()),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l["stderr"] == "b\n"), "{lines:?}");
        assert_eq!(lines.last().unwrap()["result"]["exit_code"], 0, "{lines:?}");

        // Background: stdin, output replay from an offset, wait.
        let bg = exec(
            &c,
            &id,
            json!({"cmd": "while read -r l; do echo \"got:$l\"; done; echo done >&2", "background": true}),
        );
        let pid = bg["pid"].as_u64().unwrap();
        let p = format!("/v1/sandboxes/{id}/processes/{pid}");
        let running = ok(&c, "GET", &format!("/v1/sandboxes/{id}/processes"), None);
        assert!(
            running["running"].as_array().unwrap().contains(&json!(pid)),
            "{running}"
        );
        assert_eq!(raw(&c, "POST", &format!("{p}/stdin"), b"a\n").status, 200);
        assert_eq!(
            raw(&c, "POST", &format!("{p}/stdin?eof=1"), b"b\n").status,
            200
        );
        let w = ok(&c, "POST", &format!("{p}/wait?timeout=10s"), None);
        assert_eq!(
            (w["state"].as_str(), w["result"]["exit_code"].as_i64()),
            (Some("exited"), Some(0)),
            "{w}"
        );
        let o = ok(&c, "GET", &format!("{p}/output?from=6"), None);
        assert_eq!(
            (
                o["data"].as_str(),
                o["next"].as_u64(),
                o["exited"].as_bool()
            ),
            (Some("got:b\n"), Some(12), Some(true)),
            "{o}"
        );
        let o = ok(&c, "GET", &format!("{p}/output?stream=stderr"), None);
        assert_eq!(o["data"], "done\n", "{o}");
        assert_error(
            reply_json(raw(&c, "POST", &format!("{p}/stdin"), b"late")),
            409,
            "conflict",
            "stdin is closed",
        );
        // Output past the cap: the replay says what was dropped.
        let bg = exec(
            &c,
            &id,
            json!({"cmd": "i=0; while [ $i -lt 500 ]; do echo line$i; i=$((i+1)); done", "background": true, "output_cap": 100}),
        );
        let p2 = format!("/v1/sandboxes/{id}/processes/{}", bg["pid"]);
        ok(&c, "POST", &format!("{p2}/wait"), None);
        let o = ok(&c, "GET", &format!("{p2}/output?from=0"), None);
        assert!(o["dropped"].as_u64().unwrap() > 3000, "{o}");
        assert_eq!(o["data"].as_str().unwrap().len(), 100, "{o}");
        assert!(o["data"].as_str().unwrap().ends_with("line499\n"), "{o}");
        // A signal by name reaches a background process.
        let bg = exec(
            &c,
            &id,
            json!({"cmd": "trap 'echo term; exit 3' TERM; while :; do sleep 0.05; done", "background": true}),
        );
        let p3 = format!("/v1/sandboxes/{id}/processes/{}", bg["pid"]);
        std::thread::sleep(Duration::from_millis(300));
        ok(
            &c,
            "POST",
            &format!("{p3}/signal"),
            Some(json!({"signal": "TERM"})),
        );
        let w = ok(&c, "POST", &format!("{p3}/wait?timeout=10"), None);
        assert_eq!(w["result"]["exit_code"], 3, "{w}");
        assert_error(
            call(
                &c,
                "POST",
                &format!("{p3}/signal"),
                Some(json!({"signal": "NOPE"})),
            ),
            400,
            "bad_request",
            "signal",
        );
        assert_error(
            call(
                &c,
                "GET",
                &format!("/v1/sandboxes/{id}/processes/999"),
                None,
            ),
            404,
            "not_found",
            "999",
        );

        // Reset and checkpoints.
        sh(&c, &id, "echo v1 > /workspace/f");
        ok(
            &c,
            "POST",
            &format!("/v1/sandboxes/{id}/checkpoint"),
            Some(json!({"name": "v1"})),
        );
        sh(&c, &id, "echo v2 > /workspace/f; touch /tmp/later");
        ok(
            &c,
            "POST",
            &format!("/v1/sandboxes/{id}/reset"),
            Some(json!({"checkpoint": "v1"})),
        );
        assert_eq!(
            sh(&c, &id, "cat /workspace/f; ls /tmp")["stdout"],
            "v1\nb\nbeat\nsurvivor\n"
        );
        ok(&c, "POST", &format!("/v1/sandboxes/{id}/reset"), None);
        assert_eq!(
            sh(&c, &id, "ls /workspace /tmp")["stdout"],
            "/tmp:\n\n/workspace:\n"
        );
        assert_error(
            call(
                &c,
                "POST",
                &format!("/v1/sandboxes/{id}/reset"),
                Some(json!({"checkpoint": "nope"})),
            ),
            404,
            "not_found",
            "no checkpoint named",
        );
        assert_error(
            call(
                &c,
                "POST",
                &format!("/v1/sandboxes/{id}/checkpoint"),
                Some(json!({"name": "../x"})),
            ),
            400,
            "bad_request",
            "name",
        );

        // The audit log so far: the events of every call that has answered
        // (the route waits for the writer), right away.
        let a = ok(&c, "GET", &format!("/v1/sandboxes/{id}/audit"), None);
        let kinds: Vec<&str> = a["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        for k in [
            "sandbox.started",
            "exec.started",
            "exec.ended",
            "sandbox.reset",
            "sandbox.checkpoint",
        ] {
            assert!(kinds.contains(&k), "{k} not in {kinds:?}");
        }

        // The CLI client.
        let cli = |args: &[&str]| {
            let out = Command::new(airlock_bin())
                .args(["sandbox", "--socket", &s.socket.display().to_string()])
                .args(args)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (code, out, err) = cli(&[
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 5",
        ]);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (Some(5), "out\n", "err\n")
        );
        let local = audit.path().join("local.txt");
        fs::write(&local, "from the host\n").unwrap();
        let (code, _, err) = cli(&[
            "cp",
            &local.display().to_string(),
            &format!("{id}:/workspace/up.txt"),
        ]);
        assert_eq!(code, Some(0), "{err}");
        let (code, out, _) = cli(&["cp", &format!("{id}:up.txt"), "-"]);
        assert_eq!((code, out.as_str()), (Some(0), "from the host\n"));
        let (code, out, _) = cli(&["ls", &id]);
        assert!(code == Some(0) && out.contains("up.txt"), "{out}");
        let (code, out, _) = cli(&["list"]);
        assert!(code == Some(0) && out.contains(&id), "{out}");
        let (code, out, err) = cli(&["create", "--profile", "light-nope"]);
        assert_eq!(code, Some(125), "{out}");
        assert!(
            err.contains("invalid_profile") && err.contains("light-nope"),
            "{err}"
        );
        let (code, made, _) = cli(&["create"]);
        assert_eq!(code, Some(0));
        let (code, out, _) = cli(&["rm", &id, made.trim()]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("\"reason\":\"closed\""), "{out}");
        assert_error(
            call(&c, "GET", &format!("/v1/sandboxes/{id}"), None),
            404,
            "not_found",
            &id,
        );
        healthy(&s);
    }
}

#[test]
fn the_files_api_over_http() {
    for mode in modes() {
        let s = Server::start(mode, &["--file-limit", "1M"]);
        let c = s.client();
        let id = create(&c, json!({"profile": "default"}));
        let f = |path: &str| format!("/v1/sandboxes/{id}/files?path={}", encode_query(path));
        let r = raw(&c, "PUT", &f("/workspace/x/y.bin"), &[0, 1, 2, 255]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["size"], 4);
        let r = raw(&c, "GET", &f("x/y.bin"), b"");
        assert_eq!((r.status, r.body.as_slice()), (200, &[0u8, 1, 2, 255][..]));
        assert_eq!(
            sh(&c, &id, "od -An -tx1 /workspace/x/y.bin")["stdout"],
            " 00 01 02 ff\n"
        );
        // An executable.
        let r = raw(
            &c,
            "PUT",
            &format!("{}&mode=755", f("/var/tmp/tool")),
            b"#!/bin/sh\necho tool:$1\n",
        );
        assert_eq!(r.json()["mode"], "755", "{}", r.text());
        assert_eq!(sh(&c, &id, "/var/tmp/tool a")["stdout"], "tool:a\n");
        assert_error(
            reply_json(raw(&c, "PUT", &format!("{}&mode=4755", f("/tmp/s")), b"")),
            400,
            "bad_request",
            "mode",
        );
        // mkdir, stat, list, remove.
        ok(
            &c,
            "POST",
            &format!("/v1/sandboxes/{id}/files/mkdir?path=/tmp/d/e&parents=1"),
            None,
        );
        let st = ok(
            &c,
            "GET",
            &format!("/v1/sandboxes/{id}/files/stat?path=/tmp/d"),
            None,
        );
        assert_eq!(st["kind"], "dir", "{st}");
        let l = ok(&c, "GET", &format!("{}&list=1", f("/workspace")), None);
        let names: Vec<&str> = l["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [".env", "x"], "{l}");
        assert_error(
            call(&c, "DELETE", &f("/tmp/d"), None),
            409,
            "conflict",
            "not empty",
        );
        ok(&c, "DELETE", &format!("{}&recursive=1", f("/tmp/d")), None);
        assert_error(
            call(&c, "GET", &format!("{}&stat=1", f("/tmp/d")), None),
            404,
            "not_found",
            "/tmp/d",
        );
        // Links the sandbox plants, and paths that leave: clear 4xx errors.
        sh(&c, &id, "ln -s /etc/passwd /workspace/link; ln -s / /workspace/root; echo secret > /tmp/s; ln /tmp/s /tmp/hard; mkfifo /tmp/fifo");
        for (path, status, code) in [
            ("/workspace/link", 403, "forbidden_path"),
            ("/workspace/root/etc/passwd", 403, "forbidden_path"),
            ("/tmp/hard", 403, "forbidden_path"),
            ("/etc/passwd", 403, "forbidden_path"),
            ("/proc/self/environ", 403, "forbidden_path"),
            ("/workspace/../etc/passwd", 400, "bad_path"),
            ("/tmp/fifo", 422, "not_regular"),
            ("/tmp/none", 404, "not_found"),
        ] {
            assert_error(
                reply_json(raw(&c, "GET", &f(path), b"")),
                status,
                code,
                path,
            );
        }
        for path in [
            "/workspace/link",
            "/workspace/root/tmp/x",
            "/tmp/hard",
            "/etc/x",
            "../x",
        ] {
            let (st, v) = reply_json(raw(&c, "PUT", &f(path), b"pwned"));
            assert!((400..500).contains(&st), "{path}: {st} {v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(path.trim_start_matches("..")),
                "{v}"
            );
        }
        assert_eq!(sh(&c, &id, "cat /tmp/s")["stdout"], "secret\n");
        assert_error(
            call(&c, "GET", &format!("/v1/sandboxes/{id}/files"), None),
            400,
            "bad_request",
            "path",
        );
        // The size caps. The server refuses from Content-Length before it
        // reads the body, so a client still writing it may see the
        // connection close: send the request raw and read the answer.
        let big = "a".repeat((1 << 20) + 1);
        let answer = raw_http(
            &s.socket,
            &format!(
                "PUT {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\n\r\n{big}",
                f("/tmp/big"),
                big.len()
            ),
        );
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.300}");
        assert!(
            answer.contains("\"too_large\"") && answer.contains("limit"),
            "{answer:.300}"
        );
        sh(&c, &id, "head -c 2000000 /dev/zero > /tmp/big");
        assert_error(
            reply_json(raw(&c, "GET", &f("/tmp/big"), b"")),
            413,
            "too_large",
            "the cap is 1048576",
        );
        ok(&c, "DELETE", &format!("/v1/sandboxes/{id}"), None);
        healthy(&s);
    }
}

/// The base64 of `n` bytes of `a`.
fn base64_of_a(n: usize) -> String {
    let mut b = "YWFh".repeat(n / 3);
    b.push_str(["", "YQ==", "YWE="][n % 3]);
    b
}

#[test]
fn a_big_stdin_and_a_big_argv_in_one_exec() {
    for mode in modes() {
        let s = Server::start(mode, &[]);
        let c = s.client();
        let id = create(&c, json!({"profile": "default"}));
        // 50 MiB of stdin, as base64 in the JSON body (67 MiB): the exec
        // route's body limit is --file-limit's base64 plus 1 MiB.
        let r = exec(
            &c,
            &id,
            json!({"cmd": ["wc", "-c"], "stdin_base64": base64_of_a(50 << 20)}),
        );
        assert_eq!(r["stdout"], "52428800\n", "[{mode}] {r}");
        // A 1 MiB argv (16 arguments of 64 KiB), past the JSON limit of
        // other routes and past one message to the sandbox's init.
        let args: Vec<String> = (0..16u8)
            .map(|i| char::from(b'a' + i).to_string().repeat(64 << 10))
            .collect();
        let mut cmd = vec!["printf".to_string(), "%s".to_string()];
        cmd.extend(args.iter().cloned());
        let r = exec(&c, &id, json!({"cmd": cmd}));
        assert_eq!(r["exit_code"], 0, "[{mode}] {:.300}", r.to_string());
        assert!(
            r["stdout"].as_str() == Some(args.concat().as_str()),
            "[{mode}] the output is not the argv"
        );
        ok(&c, "DELETE", &format!("/v1/sandboxes/{id}"), None);
        drop(s);
        // Over --file-limit: 413 naming stdin (the body itself is under
        // the route's limit), and the server goes on.
        let s = Server::start(mode, &["--file-limit", "1M"]);
        let c = s.client();
        let id = create(&c, json!({"profile": "default"}));
        let path = format!("/v1/sandboxes/{id}/exec");
        let over = json!({"cmd": ["wc", "-c"], "stdin_base64": base64_of_a((1 << 20) + 1)});
        assert_error(
            call(&c, "POST", &path, Some(over)),
            413,
            "too_large",
            "stdin",
        );
        let under = json!({"cmd": ["wc", "-c"], "stdin_base64": base64_of_a(1 << 20)});
        assert_eq!(exec(&c, &id, under)["stdout"], "1048576\n");
        // A body over the route's limit is refused from its Content-Length.
        let r = raw_http(
            &s.socket,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{{\"cmd\":",
                3 << 20
            ),
        );
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        ok(&c, "DELETE", &format!("/v1/sandboxes/{id}"), None);
        healthy(&s);
    }
}

/// Programs in a live sandbox open ptys of their own (Inspect's
/// `bash_session`, `script`, Python's `pty`) in the sandbox's private
/// devpts instance, which holds none of the host's; pushing input into one
/// with TIOCSTI stays denied.
const PTY_PROBE: &str = r#"
import errno, fcntl, json, os, select, termios
before = sorted(os.listdir('/dev/pts'))
m, s = os.openpty()
name = os.ttyname(s)
pid = os.fork()
if pid == 0:
    os.setsid()
    fcntl.ioctl(s, termios.TIOCSCTTY, 0)
    os.dup2(s, 0); os.dup2(s, 1)
    os.execv('/bin/sh', ['sh', '-c', 'read x; echo got-$x'])
os.write(m, b'hello\n')
out = b''
while b'got-hello' not in out:
    r, _, _ = select.select([m], [], [], 10)
    if not r:
        break
    try:
        out += os.read(m, 4096)
    except OSError:
        break
os.waitpid(pid, 0)
try:
    fcntl.ioctl(s, termios.TIOCSTI, b'x')
    sti = 'allowed'
except OSError as e:
    sti = errno.errorcode[e.errno]
print(json.dumps({'before': before, 'name': name, 'out': out.decode(), 'sti': sti}))
"#;

#[test]
fn a_live_sandbox_has_ptys_of_its_own_and_tiocsti_stays_denied() {
    for mode in modes() {
        let s = Server::start(mode, &[]);
        let c = s.client();
        let id = create(&c, json!({"profile": light()}));
        let r = exec(&c, &id, json!({"cmd": ["python3", "-c", PTY_PROBE]}));
        assert_eq!(r["exit_code"], 0, "[{mode}] {r}");
        let v: Value = serde_json::from_str(r["stdout"].as_str().unwrap().trim())
            .unwrap_or_else(|e| panic!("[{mode}] bad probe answer ({e}): {r}"));
        // A fresh instance: nothing in it before the probe's own pty.
        assert_eq!(v["before"], json!(["ptmx"]), "[{mode}] {v}");
        assert_eq!(v["name"], "/dev/pts/0", "[{mode}] {v}");
        assert!(
            v["out"].as_str().unwrap().contains("got-hello"),
            "[{mode}] the shell on the pty did not answer: {v}"
        );
        assert_eq!(v["sti"], "EPERM", "[{mode}] TIOCSTI was not denied: {v}");
        ok(&c, "DELETE", &format!("/v1/sandboxes/{id}"), None);
        healthy(&s);
    }
}

#[test]
fn bad_input_gets_json_errors_and_the_server_stays_up() {
    for mode in modes() {
        let s = Server::start(mode, &["--max-sandboxes", "3", "--memory-budget", "200M"]);
        let c = s.client();
        let post = |path: &str, body: &[u8]| {
            reply_json(
                c.send("POST", path, Some("application/json"), body.to_vec(), None)
                    .unwrap(),
            )
        };
        assert_error(
            post("/v1/sandboxes", b"{\"profile\": "),
            400,
            "bad_request",
            "malformed JSON",
        );
        assert_error(post("/v1/sandboxes", b"[1,2]"), 400, "bad_request", "");
        assert_error(
            post("/v1/sandboxes", b"{\"profil\": \"default\"}"),
            400,
            "bad_request",
            "unknown field `profil`",
        );
        assert_error(
            post("/v1/sandboxes", b"{\"ttl\": \"soon\"}"),
            400,
            "bad_request",
            "ttl",
        );
        assert_error(
            post("/v1/sandboxes", b"{\"ttl\": -1}"),
            400,
            "bad_request",
            "ttl",
        );
        assert_error(
            post("/v1/sandboxes", b"{\"id\": \"../x\"}"),
            400,
            "bad_request",
            "id",
        );
        assert_error(
            post("/v1/sandboxes", b"{\"profile\": \"../../etc/passwd\"}"),
            400,
            "bad_request",
            "profile",
        );
        assert_error(
            post("/v1/sandboxes", b"{\"profile\": \"nope\"}"),
            400,
            "invalid_profile",
            "no profile named \"nope\"",
        );
        assert_error(
            post(
                "/v1/sandboxes",
                br#"{"profile": {"limits": {"memory": "12Q"}}}"#,
            ),
            400,
            "invalid_profile",
            "profile.limits.memory",
        );
        assert_error(
            post(
                "/v1/sandboxes",
                br#"{"profile": {"network": {"mode": "sometimes"}}}"#,
            ),
            400,
            "invalid_profile",
            "profile.network.mode",
        );
        assert_error(
            post("/v1/sandboxes", b"{\"env\": {\"A B\": \"x\"}}"),
            400,
            "bad_request",
            "env",
        );
        // Too large a body: 413 from its Content-Length alone (a raw
        // request: a client still writing the body may see the close
        // before the answer), and the server is still there.
        let r = raw_http(
            &s.socket,
            &format!("POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"profile\":", 2 << 20),
        );
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        assert!(r.contains("\"code\":\"too_large\""), "{r}");
        // Garbage instead of HTTP.
        let r = raw_http(&s.socket, "\x00\x01 not http at all\r\n\r\n");
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
        healthy(&s);
        // Unknown routes, methods, sandboxes.
        assert_error(
            call(&c, "GET", "/v2/nothing", None),
            404,
            "not_found",
            "no such route",
        );
        assert_error(
            call(&c, "PATCH", "/v1/sandboxes", None),
            405,
            "method_not_allowed",
            "",
        );
        assert_error(
            call(&c, "GET", "/v1/sandboxes/nope", None),
            404,
            "not_found",
            "nope",
        );
        assert_error(
            call(
                &c,
                "POST",
                "/v1/sandboxes/nope/exec",
                Some(json!({"cmd": "true"})),
            ),
            404,
            "not_found",
            "nope",
        );
        assert_error(
            call(&c, "GET", "/v1/sandboxes/nope/processes/abc", None),
            404,
            "not_found",
            "",
        );

        // A sandbox, and bad execs on it.
        let id = create(&c, json!({"profile": light(), "id": "bad-input"}));
        assert_error(
            post(
                "/v1/sandboxes",
                br#"{"id": "bad-input", "profile": "default"}"#,
            ),
            409,
            "conflict",
            "already exists",
        );
        let e = format!("/v1/sandboxes/{id}/exec");
        assert_error(post(&e, b"{}"), 400, "bad_request", "missing field `cmd`");
        assert_error(
            post(&e, b"{\"cmd\": 5}"),
            400,
            "bad_request",
            "cmd: a list of strings",
        );
        assert_error(post(&e, b"{\"cmd\": []}"), 400, "bad_request", "cmd");
        assert_error(
            post(&e, b"{\"cmd\": \"true\", \"timeout\": \"fast\"}"),
            400,
            "bad_request",
            "timeout",
        );
        assert_error(
            post(&e, b"{\"cmd\": \"true\", \"stdin_base64\": \"!!\"}"),
            400,
            "bad_request",
            "stdin_base64",
        );
        assert_error(
            post(
                &e,
                b"{\"cmd\": \"true\", \"background\": true, \"stream\": true}",
            ),
            400,
            "bad_request",
            "stream",
        );
        assert_error(
            post(&e, b"{\"cmd\": \"true\", \"cwd\": \"/nonexistent\"}"),
            422,
            "cannot_start",
            "/nonexistent",
        );
        // A missing command is the command's result (127), as in a shell.
        let r = exec(&c, &id, json!({"cmd": ["no-such-command"]}));
        assert_eq!(r["exit_code"], 127, "{r}");

        // Capacity: the memory budget (200M: 64M each fits three) and the count.
        let b = create(&c, json!({"profile": light()}));
        assert_error(
            post("/v1/sandboxes", b"{}"),
            429,
            "over_capacity",
            "memory-budget",
        );
        let third = create(&c, json!({"profile": light()}));
        assert_error(
            post(
                "/v1/sandboxes",
                br#"{"profile": {"extends": "default", "limits": {"memory": "1M"}}}"#,
            ),
            429,
            "over_capacity",
            "max-sandboxes",
        );
        let list = ok(&c, "GET", "/v1/sandboxes", None);
        assert_eq!(
            (list["live"].as_u64(), list["memory_used"].as_u64()),
            (Some(3), Some(3 * (64 << 20))),
            "{list}"
        );
        ok(&c, "DELETE", &format!("/v1/sandboxes/{third}"), None);
        ok(&c, "DELETE", &format!("/v1/sandboxes/{b}"), None);

        // A closed sandbox: 409.
        let short = create(&c, json!({"profile": light(), "ttl": 0.5}));
        std::thread::sleep(Duration::from_millis(1500));
        let info = ok(&c, "GET", &format!("/v1/sandboxes/{short}"), None);
        assert_eq!(
            (info["state"].as_str(), info["closed_reason"].as_str()),
            (Some("closed"), Some("ttl")),
            "{info}"
        );
        assert_error(
            call(
                &c,
                "POST",
                &format!("/v1/sandboxes/{short}/exec"),
                Some(json!({"cmd": "true"})),
            ),
            409,
            "sandbox_closed",
            "closed",
        );
        // It no longer counts against capacity.
        let again = create(&c, json!({"profile": light()}));
        ok(&c, "DELETE", &format!("/v1/sandboxes/{again}"), None);
        ok(&c, "DELETE", &format!("/v1/sandboxes/{short}"), None);
        ok(&c, "DELETE", &format!("/v1/sandboxes/{id}"), None);
        // The document lists the routes.
        let doc = ok(&c, "GET", "/openapi.json", None);
        for p in [
            "/v1/sandboxes",
            "/v1/sandboxes/{id}/exec",
            "/v1/sandboxes/{id}/files",
            "/v1/sandboxes/{id}/processes/{pid}/output",
        ] {
            assert!(
                doc["paths"].get(p).is_some(),
                "{p} missing from the OpenAPI document"
            );
        }
        assert!(doc["components"]["schemas"].get("ExecBody").is_some());
        healthy(&s);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn sockets_tokens_and_tcp() {
    for mode in modes() {
        let s = Server::start(mode, &[]);
        let m = fs::metadata(&s.socket).unwrap();
        assert_eq!(
            m.permissions().mode() & 0o777,
            0o600,
            "[{mode}] socket mode"
        );
        if mode == Mode::Rootless && is_root() {
            assert_eq!(m.uid(), ROOTLESS_UID);
        }
        // A second server on the live socket is refused and leaves it alone.
        let out = serve_command(mode, s.dir.path(), &s.args).output().unwrap();
        assert_eq!(out.status.code(), Some(125));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("another server is listening"), "{err}");
        healthy(&s);

        // TCP needs a token file that others cannot read.
        let dir = server_dir(mode);
        let token = dir.path().join("token");
        fs::write(&token, "0123456789abcdef-token\n").unwrap();
        if mode == Mode::Rootless && is_root() {
            rustix::fs::chown(&token, Some(rustix::fs::Uid::from_raw(ROOTLESS_UID)), None).unwrap();
        }
        let sock = dir.path().join("t.sock").display().to_string();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let refuse = |args: &[&str], needle: &str| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let out = serve_command(mode, dir.path(), &args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
            assert!(err.contains(needle), "{needle:?} not in {err}");
        };
        refuse(&["--socket", &sock, "--listen", &addr], "--token-file");
        fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
        refuse(
            &[
                "--socket",
                &sock,
                "--listen",
                &addr,
                "--token-file",
                &token.display().to_string(),
            ],
            "chmod 600",
        );
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        refuse(
            &[
                "--socket",
                &sock,
                "--listen",
                &format!("0.0.0.0:{port}"),
                "--token-file",
                &token.display().to_string(),
            ],
            "not a loopback address",
        );
        assert!(
            !Path::new(&sock).exists(),
            "a refused start left its socket"
        );

        let t = Server::start_in(
            mode,
            dir,
            &[
                "--listen",
                &addr,
                "--token-file",
                &token.display().to_string(),
            ],
        );
        let url = format!("http://{addr}");
        let none = Client::url(&url, None).unwrap();
        let wrong = Client::url(&url, Some("0123456789abcdef-tokeN".into())).unwrap();
        let right = Client::url(&url, Some("0123456789abcdef-token".into())).unwrap();
        for c in [&none, &wrong] {
            assert_error(
                call(c, "GET", "/healthz", None),
                401,
                "unauthorized",
                "Bearer",
            );
            assert_error(
                call(c, "POST", "/v1/sandboxes", Some(json!({}))),
                401,
                "unauthorized",
                "",
            );
            assert_error(call(c, "GET", "/no/route", None), 401, "unauthorized", "");
        }
        assert_eq!(call(&right, "GET", "/healthz", None).0, 200);
        let id = create(&right, json!({"profile": light()}));
        assert_eq!(sh(&right, &id, "echo tcp")["stdout"], "tcp\n");
        // The unix socket of the same server needs no token.
        assert_eq!(sh(&t.client(), &id, "echo unix")["stdout"], "unix\n");
        ok(&right, "DELETE", &format!("/v1/sandboxes/{id}"), None);
    }
}

#[test]
fn two_hundred_cycles_leave_nothing_behind() {
    let cycles: usize = std::env::var("AIRLOCK_SERVE_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for mode in modes() {
        let s = Server::start(mode, &[]);
        let c = s.client();
        // Warm up: lazily opened fds and threads exist before the baseline.
        for _ in 0..3 {
            let id = create(&c, json!({"profile": light()}));
            sh(&c, &id, "true");
            ok(&c, "DELETE", &format!("/v1/sandboxes/{id}"), None);
        }
        std::thread::sleep(Duration::from_millis(300));
        let (fds0, mounts0, kids0) = (s.fds(), s.mounts(), descendants(s.pid));
        let run_dir = || -> BTreeSet<String> {
            fs::read_dir("/run/airlock")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        };
        let run0 = run_dir();
        let marker = format!("sleep 977.{}", s.pid);
        let mut seen_netns = BTreeSet::new();
        let t = Instant::now();
        for i in 0..cycles {
            let id = create(&c, json!({"profile": light()}));
            let script = if i % 2 == 0 {
                "echo $((6*7))".to_string()
            } else {
                format!("({marker} &) ; echo 42")
            };
            let r = sh(&c, &id, &script);
            assert_eq!(r["stdout"], "42\n", "cycle {i}: {r}");
            if i % 50 == 1 {
                for p in descendants(s.pid) {
                    if let Ok(l) = fs::read_link(format!("/proc/{p}/ns/net")) {
                        seen_netns.insert(l.display().to_string());
                    }
                }
            }
            let report = ok(&c, "DELETE", &format!("/v1/sandboxes/{id}"), None);
            assert_eq!(report["reason"], "closed", "{report}");
        }
        let took = t.elapsed();
        let host_ns: BTreeSet<String> = host_netns();
        let own_ns = fs::read_link(format!("/proc/{}/ns/net", s.pid))
            .unwrap()
            .display()
            .to_string();
        seen_netns.remove(&own_ns);
        assert!(
            !seen_netns.is_empty(),
            "[{mode}] no sandbox network namespace was seen"
        );
        // The supervisor's last closes settle within a few seconds.
        let settle = Instant::now();
        while s.fds() != fds0 && settle.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            s.fds(),
            fds0,
            "[{mode}] the server's fds leaked after {cycles} cycles"
        );
        assert_eq!(s.mounts(), mounts0, "[{mode}] the mount table changed");
        assert_eq!(
            descendants(s.pid),
            kids0,
            "[{mode}] processes left under the server"
        );
        assert_eq!(
            procs_with(&marker),
            Vec::<u32>::new(),
            "[{mode}] background processes outlived their sandboxes"
        );
        assert_eq!(
            s.cgroups(),
            Vec::<String>::new(),
            "[{mode}] sandbox cgroups left behind"
        );
        assert_eq!(
            seen_netns.intersection(&host_ns).count(),
            0,
            "[{mode}] a sandbox network namespace is still held"
        );
        assert_eq!(run_dir(), run0, "[{mode}] files left in /run/airlock");
        let left: Vec<String> = fs::read_dir(s.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".log"))
            .collect();
        assert_eq!(
            left,
            ["serve.sock"],
            "[{mode}] files left in the server's directory"
        );
        let list = ok(&c, "GET", "/v1/sandboxes", None);
        assert_eq!(list["sandboxes"], json!([]), "{list}");
        println!("[{mode}] {cycles} create/exec/delete cycles in {took:?}: nothing left behind");
    }
}

#[test]
fn fifty_live_sandboxes_at_once() {
    for mode in modes() {
        let s = Server::start(mode, &["--max-sandboxes", "50", "--memory-budget", "4G"]);
        let t = Instant::now();
        // Eight clients create in parallel.
        let ids: Vec<String> = std::thread::scope(|scope| {
            let hs: Vec<_> = (0..8)
                .map(|k| {
                    let s = &s;
                    scope.spawn(move || {
                        let c = s.client();
                        (0..50)
                            .filter(|i| i % 8 == k)
                            .map(|i| {
                                create(&c, json!({"profile": light(), "id": format!("many-{i}")}))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let created = t.elapsed();
        assert_eq!(ids.len(), 50);
        let c = s.client();
        let list = ok(&c, "GET", "/v1/sandboxes", None);
        assert_eq!(list["live"], 50, "{list}");
        assert_error(
            call(
                &c,
                "POST",
                "/v1/sandboxes",
                Some(json!({"profile": light()})),
            ),
            429,
            "over_capacity",
            "max-sandboxes",
        );
        // Every one is its own: a file written in each is read back from it only.
        std::thread::scope(|scope| {
            for chunk in ids.chunks(13) {
                let s = &s;
                scope.spawn(move || {
                    let c = s.client();
                    for id in chunk {
                        sh(&c, id, &format!("echo {id} > /tmp/me"));
                    }
                    for id in chunk {
                        assert_eq!(
                            sh(&c, id, "cat /tmp/me; ls /tmp | wc -l")["stdout"],
                            format!("{id}\n1\n")
                        );
                    }
                });
            }
        });
        for id in &ids {
            ok(&c, "DELETE", &format!("/v1/sandboxes/{id}"), None);
        }
        assert_eq!(ok(&c, "GET", "/v1/sandboxes", None)["live"], 0);
        println!(
            "[{mode}] 50 sandboxes created in {created:?}, all in {:?}",
            t.elapsed()
        );
        healthy(&s);
    }
}

#[test]
fn sigterm_closes_every_sandbox_and_sigkill_leaves_nothing() {
    for mode in modes() {
        // SIGTERM: every sandbox closed, the socket removed, exit 0.
        let mut s = Server::start(mode, &[]);
        let c = s.client();
        let marker = format!("sleep 988.{}", s.pid);
        for _ in 0..2 {
            let id = create(&c, json!({"profile": light()}));
            exec(
                &c,
                &id,
                json!({"cmd": format!("{marker}"), "background": true}),
            );
        }
        // A background exec answers once started; its shell may not have
        // started the sleep yet (and the shell's command line names the
        // marker too): wait for the two sleeps themselves.
        let sleeps = || {
            procs_with(&marker)
                .into_iter()
                .filter(|p| {
                    fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
                })
                .count()
        };
        let t = Instant::now();
        while sleeps() < 2 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(sleeps(), 2, "[{mode}] {:?}", procs_with(&marker));
        s.signal(rustix::process::Signal::TERM);
        assert_eq!(s.wait(), Some(0), "{}", s.log());
        assert!(s.log().contains("closed 2 sandbox(es)"), "{}", s.log());
        assert!(!s.socket.exists(), "[{mode}] the socket was left behind");
        assert_eq!(procs_with(&marker), Vec::<u32>::new());
        assert_eq!(cgroups_of(s.pid), Vec::<String>::new());

        // SIGKILL: the sandboxes die with the server.
        let mut s = Server::start(mode, &[]);
        let c = s.client();
        let marker = format!("sleep 989.{}", s.pid);
        for _ in 0..3 {
            let id = create(&c, json!({"profile": light()}));
            exec(
                &c,
                &id,
                json!({"cmd": format!("({marker} &); {marker}"), "background": true}),
            );
            sh(
                &c,
                &id,
                &format!("setsid {marker} >/dev/null 2>&1 < /dev/null & echo"),
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        // Three sleeps a sandbox (and the shells whose command lines name
        // them).
        assert!(procs_with(&marker).len() >= 9, "{:?}", procs_with(&marker));
        let pid = s.pid;
        s.signal(rustix::process::Signal::KILL);
        s.wait();
        let t = Instant::now();
        while (!procs_with(&marker).is_empty() || !cgroups_of(pid).is_empty())
            && t.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            procs_with(&marker),
            Vec::<u32>::new(),
            "[{mode}] sandbox processes outlived a SIGKILLed server"
        );
        assert_eq!(descendants(pid), Vec::<u32>::new());
        // The kernel removes nothing of the cgroup tree by itself; the
        // next server sweeps what a dead one left (see the cgroup module).
        let left = cgroups_of(pid);
        // The stale socket is replaced by the next server.
        assert!(s.socket.exists());
        let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
        let next = Server::start_in(mode, dir, &[]);
        healthy(&next);
        let id = create(&next.client(), json!({"profile": light()}));
        ok(
            &next.client(),
            "DELETE",
            &format!("/v1/sandboxes/{id}"),
            None,
        );
        let t = Instant::now();
        while !cgroups_of(pid).is_empty() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            cgroups_of(pid),
            Vec::<String>::new(),
            "[{mode}] cgroups of the killed server {left:?} were never removed"
        );
    }
}
