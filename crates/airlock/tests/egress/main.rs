//! Egress gateway tests: real traffic from inside sandboxes, root and
//! rootless, to upstream servers that each test starts in a network
//! namespace of its own, reached over a veth pair. Nothing leaves the
//! machine. Every refused attempt is also checked at the upstream: it must
//! never have arrived.
//!
//! Creating the upstream namespace needs root, which CI has.

#[path = "../common/mod.rs"]
mod common;

mod attacks;
mod behaviour;
mod canary;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use common::{is_root, Run, Sandbox};
use serde_json::Value;

/// Upstream HTTP/HTTPS/UDP servers in a fresh network namespace, reached
/// from the host over a veth pair; removed on drop.
#[derive(Debug)]
pub struct Upstream {
    ns: String,
    /// The upstream's address (in the namespace).
    pub ip: String,
    /// The /30 the veth pair uses.
    pub net: String,
    server: Child,
    dir: tempfile::TempDir,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn sh(cmd: &[&str]) {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Upstream {
    pub fn start() -> Upstream {
        assert!(
            is_root(),
            "the egress tests create a network namespace for their upstream servers: run them as root"
        );
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // A /30 per upstream: 10.231.<n / 64>.<(n % 64) * 4>.
        let third = 64 + (pid % 64) * 2 + n / 64;
        let fourth = (n % 64) * 4;
        let host_ip = format!("10.231.{third}.{}", fourth + 1);
        let ip = format!("10.231.{third}.{}", fourth + 2);
        let net = format!("10.231.{third}.{fourth}/30");
        let ns = format!("airlock-t{pid}-{n}");
        let (vh, vu) = (format!("alh{pid}x{n}"), format!("alu{pid}x{n}"));
        let (vh, vu) = (&vh[..vh.len().min(15)], &vu[..vu.len().min(15)]);
        sh(&["ip", "netns", "add", &ns]);
        sh(&["ip", "link", "add", vh, "type", "veth", "peer", "name", vu]);
        sh(&["ip", "link", "set", vu, "netns", &ns]);
        sh(&["ip", "addr", "add", &format!("{host_ip}/30"), "dev", vh]);
        sh(&["ip", "link", "set", vh, "up"]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/30"),
            "dev",
            vu,
        ]);
        sh(&["ip", "-n", &ns, "link", "set", vu, "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);

        let dir = common::public_tempdir();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        sh(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=api.test",
            "-addext",
            "subjectAltName=DNS:api.test",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        let script = dir.path().join("upstream.py");
        fs::write(&script, include_str!("upstream.py")).unwrap();
        let log = dir.path().join("upstream.log");
        fs::write(&log, "").unwrap();
        let mut server = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-u"])
            .arg(&script)
            .arg(&ip)
            .arg(&cert)
            .arg(&key)
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the upstream servers");
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "upstream servers did not start");
        Upstream {
            ns,
            ip,
            net,
            server,
            dir,
        }
    }

    /// The upstream's certificate (for `--cacert`).
    pub fn cert_pem(&self) -> Vec<u8> {
        fs::read(self.dir.path().join("cert.pem")).unwrap()
    }

    /// Every request and datagram the upstream received so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("upstream.log")).unwrap()
    }

    /// A profile file (readable by the rootless user) with `network` as its
    /// [network] section; `{ip}` and `{net}` are replaced.
    pub fn profile(&self, sb: &Sandbox, network: &str) -> PathBuf {
        let text = format!(
            "[limits]\ntimeout = \"60s\"\n# Rootless without cgroups, pids and memory fall back to RLIMIT_NPROC\n# (counted over every process of the user on the host) and RLIMIT_AS\n# (which many threads exhaust); these tests use many threads.\npids = \"unlimited\"\nmemory = \"unlimited\"\n\n[network]\n{}",
            network.replace("{ip}", &self.ip).replace("{net}", &self.net)
        );
        let p = sb.outside().join(format!(
            "egress-{}.toml",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// `airlock run --json --profile P --workspace WS -- sh -c SCRIPT`.
pub fn run_sh(sb: &Sandbox, profile: &std::path::Path, script: &str) -> Run {
    let ws = sb.workspace().to_str().unwrap().to_owned();
    sb.airlock(&[
        "run",
        "--json",
        "--profile",
        profile.to_str().unwrap(),
        "--workspace",
        &ws,
        "--",
        "sh",
        "-c",
        script,
    ])
}

/// The flow records of a `--json` run.
pub fn flows(run: &Run) -> Vec<Value> {
    run.json()["network"]["flows"]
        .as_array()
        .unwrap_or_else(|| panic!("no network.flows\n{}", run.describe()))
        .clone()
}

/// Flows matching `proto`, `name` (or `None` for any) and `verdict`.
pub fn find<'a>(
    flows: &'a [Value],
    proto: &str,
    name: Option<&str>,
    verdict: &str,
) -> Vec<&'a Value> {
    flows
        .iter()
        .filter(|f| f["proto"] == proto && f["verdict"] == verdict)
        .filter(|f| name.is_none_or(|n| f["name"] == n))
        .collect()
}

/// The payload's stdout (sent to stderr under `--json`), as lines.
pub fn out_lines(run: &Run) -> Vec<String> {
    run.stderr().lines().map(str::to_owned).collect()
}

/// The value of the payload's `key=` line. Under `--json` the payload's
/// stdout and stderr share airlock's stderr, chunk by chunk, so another
/// tool's unbuffered stderr may land in front of the line (`c` + `rc=18`
/// from curl's "curl: ..."): a line that starts with `key=`, else a line
/// where `key=` follows such a stray fragment (no `=` before it).
pub fn value_of(run: &Run, key: &str) -> String {
    let tag = format!("{key}=");
    let lines = out_lines(run);
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&tag).map(str::to_owned))
        .or_else(|| {
            lines.iter().find_map(|l| {
                let i = l.rfind(&tag)?;
                // Only a stray fragment may precede it: no '=' before.
                (!l[..i].contains('=')).then(|| l[i + tag.len()..].to_owned())
            })
        })
        .unwrap_or_else(|| panic!("no {key}= line\n{}", run.describe()))
}
