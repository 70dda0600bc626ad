//! `airlock bench egress`: throughput and per-request latency through the
//! egress gateway, side by side in one run with the same clients talking to
//! the same upstream directly from the host.
//!
//! The upstream is an HTTP/1.1 server in this process on 127.0.0.1 (one
//! request per connection, `Connection: close`, for every variant). The
//! sandboxes use a profile built here: allowlist mode, `bench.test` pinned
//! to 127.0.0.1, loopback allowed for that one address, no byte caps.
//! Variants are interleaved (throughput: each round is a direct download,
//! then one sandbox downloading through the proxy and then by capture;
//! latency: chunks of requests, alternating) so that a change in background
//! load hits all of them alike.
//!
//! Gateway CPU: the gateway is a child process of this one (comm and
//! argv[0] `airlock-egress`). The payload prints a marker line before and
//! after its transfers; the output sink, which the supervisor calls as soon
//! as it reads the payload's stdout, samples the gateway's utime+stime
//! (all threads) from `/proc/<pid>/stat` at each marker. The payload sleeps
//! 0.2 s before the first marker (the gateway has finished starting) and
//! 0.1 s after each (the sample is taken before the next transfer starts),
//! so each difference is the gateway's CPU for one transfer. getrusage
//! cannot tell the gateway from the sandbox (both are children), and a
//! payload cannot read the gateway's /proc entry (other pid namespace).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::process::{Command as Proc, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use airlock_policy::{ByteSize, Profile};
use airlock_runtime::{ExitReason, FlowProto, OutputSink, RunRequest, Verdict};
use anyhow::{bail, ensure, Context};

/// Options of `bench egress`.
#[derive(Debug, clap::Args)]
pub(crate) struct EgressArgs {
    /// Body size of each throughput download, e.g. 1G, 256M.
    #[arg(long, default_value = "1G")]
    bytes: ByteSize,
    /// Downloads per throughput variant, interleaved (the median is
    /// reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Sequential small requests per latency variant, each on a new
    /// connection (the variants alternate every 100).
    #[arg(long, short = 'n', default_value_t = 1000)]
    requests: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The name the sandbox asks for; pinned to 127.0.0.1 in the profile.
const HOST: &str = "bench.test";
/// The marker line at which the sink samples the gateway's CPU time.
const MARK: &[u8] = b"@@airlock-bench-mark";
/// Size of the reused buffer `/big` streams from.
const CHUNK: usize = 1 << 20;
/// Body of `/small`: 100 bytes.
const SMALL_BODY: &[u8] =
    b"airlock egress benchmark: a small response body of exactly one hundred bytes, padded to size.......\n";
const _: () = assert!(SMALL_BODY.len() == 100);
/// Unmeasured requests before each latency chunk.
const WARMUP: usize = 20;
/// The latency variants alternate every this many requests.
const LATENCY_CHUNK: usize = 100;
/// The latency client's interpreter, on the host and in the sandbox.
const PYTHON: &str = "/usr/bin/python3";
/// The gateway's process name (`/proc/<pid>/comm`).
const GATEWAY_COMM: &str = "airlock-egress";

/// The latency client: the same script on the host and in the sandbox.
/// argv: mode (direct | proxy | capture), host, port, requests, warm-up.
/// Times connect + send + receive-until-close of each request and prints
/// one line per measured request, in microseconds.
const LATENCY_PY: &str = r#"
import socket, sys, time
mode, host, port, n, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if mode == "proxy":
    addr = ("127.0.0.1", 3128)
    target = "http://%s:%d/small" % (host, port)
elif mode == "capture":
    addr = (socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0], port)
    target = "/small"
else:
    addr = (host, port)
    target = "/small"
req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (target, host, port)).encode()
out = []
for i in range(warm + n):
    t0 = time.perf_counter_ns()
    s = socket.create_connection(addr)
    s.sendall(req)
    got = []
    while True:
        b = s.recv(65536)
        if not b:
            break
        got.append(b)
    t1 = time.perf_counter_ns()
    s.close()
    resp = b"".join(got)
    if not resp.startswith(b"HTTP/1.1 200") or not resp.endswith(b"bytes, padded to size.......\n"):
        sys.exit("bad response: %r" % resp[:200])
    if i >= warm:
        out.append((t1 - t0) / 1000.0)
sys.stdout.write("".join("%.1f\n" % x for x in out))
"#;

// ---------------------------------------------------------------- upstream

/// Starts the upstream server on 127.0.0.1:<ephemeral>; it serves (one
/// thread per connection) until the process exits. Returns its port.
fn start_upstream() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the upstream server")?;
    let port = listener.local_addr()?.port();
    let chunk: Arc<[u8]> = vec![0x5a; CHUNK].into();
    std::thread::Builder::new()
        .name("bench-upstream".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let chunk = Arc::clone(&chunk);
                let _ = std::thread::Builder::new()
                    .name("bench-conn".into())
                    .spawn(move || {
                        let _ = serve(conn, &chunk);
                    });
            }
        })
        .context("starting the upstream server")?;
    Ok(port)
}

/// Serves one request: `GET /big?bytes=N` (N bytes of the reused chunk,
/// with Content-Length) or `GET /small` (a 100-byte body), then closes.
fn serve(mut conn: TcpStream, chunk: &[u8]) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 || head.len() > 64 << 10 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    // A proxy may forward the absolute form: keep the path.
    let path = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let size = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("bytes="))
        .and_then(|v| v.parse::<u64>().ok());
    match (method, route, size) {
        ("GET", "/big", Some(n)) => {
            conn.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                     Content-Length: {n}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )?;
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len() as u64) as usize;
                conn.write_all(&chunk[..k])?;
                left -= k as u64;
            }
        }
        ("GET", "/small", _) => {
            let mut resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                SMALL_BODY.len()
            )
            .into_bytes();
            resp.extend_from_slice(SMALL_BODY);
            conn.write_all(&resp)?;
        }
        _ => conn.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?,
    }
    conn.shutdown(Shutdown::Write)
}

// ------------------------------------------------------------ gateway CPU

/// Fields of `/proc/<pid>/stat` after the comm: (comm, the rest).
fn proc_stat(pid: u32) -> Option<(String, Vec<String>)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    let rest = s
        .get(close + 1..)?
        .split_whitespace()
        .map(String::from)
        .collect();
    Some((comm, rest))
}

/// The pid of our child named `airlock-egress`: by comm, or by argv[0]
/// (set at exec, before the gateway renames itself).
fn find_gateway() -> Option<u32> {
    let me = std::process::id().to_string();
    let argv0 = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|&b| b == 0).next() == Some(GATEWAY_COMM.as_bytes()))
    };
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| {
            proc_stat(pid).is_some_and(|(comm, rest)| {
                rest.get(1).is_some_and(|pp| *pp == me) && (comm == GATEWAY_COMM || argv0(pid))
            })
        })
}

/// (utime, stime) of a process (all its threads), in clock ticks: fields
/// 14 and 15 of stat; `rest` starts at field 3.
fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let (_, rest) = proc_stat(pid)?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// CPU time of a process over an interval.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    user: Duration,
    sys: Duration,
}

/// Collects the payload's output and samples the gateway's CPU time at
/// each marker line, as the supervisor reads it.
#[derive(Default)]
struct MarkSink {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    scanned: usize,
    gateway: Option<u32>,
    samples: Vec<Option<(u64, u64)>>,
}

impl OutputSink for MarkSink {
    fn stdout(&mut self, data: &[u8]) {
        self.stdout.extend_from_slice(data);
        while let Some(i) = self.stdout[self.scanned..].iter().position(|&b| b == b'\n') {
            if &self.stdout[self.scanned..self.scanned + i] == MARK {
                if self.gateway.is_none() {
                    self.gateway = find_gateway();
                }
                self.samples.push(self.gateway.and_then(cpu_ticks));
            }
            self.scanned += i + 1;
        }
    }
    fn stderr(&mut self, data: &[u8]) {
        self.stderr.extend_from_slice(data);
    }
}

// ---------------------------------------------------------------- running

/// The profile of the sandboxed variants.
fn bench_profile(port: u16) -> anyhow::Result<Profile> {
    let src = format!(
        r#"name = "bench-egress"

[limits]
timeout = "1h"

[network]
mode = "allowlist"
allow = ["{HOST}:{port}"]
allow_cidr = ["127.0.0.1/32"]
hosts = {{ "{HOST}" = "127.0.0.1" }}
max_bytes_in = "unlimited"
max_bytes_out = "unlimited"
max_connections = 4096
max_connections_per_sec = 100000
"#
    );
    Ok(Profile::from_toml(&src, "bench egress profile")?)
}

/// What a sandboxed payload printed, and the gateway's CPU time between
/// each two consecutive markers.
struct Sandboxed {
    stdout: String,
    intervals: Vec<Option<Cpu>>,
}

/// Runs `argv` in a sandbox with `profile` and checks that it succeeded,
/// that the gateway refused nothing and allowed at least `n` flows of each
/// `(kind, n)` in `expect`.
fn run_sandboxed(
    profile: &Profile,
    argv: Vec<String>,
    expect: &[(FlowProto, usize)],
) -> anyhow::Result<Sandboxed> {
    let req = RunRequest::new(profile.clone(), argv);
    let mut sink = MarkSink::default();
    let session = airlock_runtime::run(&req, &mut sink)?;
    let err = String::from_utf8_lossy(&sink.stderr);
    if session.run.reason != (ExitReason::Exit { code: 0 }) {
        bail!(
            "sandboxed {:?} ended with {:?}: {}",
            req.argv[0],
            session.run.reason,
            err.trim()
        );
    }
    let net = session.network.context("no network report")?;
    if let Some(f) = &net.gateway_failure {
        bail!("{f}");
    }
    ensure!(
        net.limits_hit.is_empty(),
        "egress caps hit: {:?}",
        net.limits_hit
    );
    ensure!(
        net.count(Verdict::Deny) == 0,
        "the gateway refused flows: {:?}",
        net.flows
            .iter()
            .filter(|f| f.verdict == Verdict::Deny)
            .map(|f| &f.reason)
            .collect::<Vec<_>>()
    );
    for &(proto, n) in expect {
        let allowed = net
            .flows
            .iter()
            .filter(|f| f.verdict == Verdict::Allow && f.proto == proto)
            .count();
        ensure!(
            allowed >= n,
            "expected {n} {proto:?} flows through the gateway, saw {allowed}"
        );
    }
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let secs = |t0: u64, t1: u64| Duration::from_secs_f64(t1.saturating_sub(t0) as f64 / hz);
    let intervals = sink
        .samples
        .windows(2)
        .map(|w| match (w[0], w[1]) {
            (Some(a), Some(b)) => Some(Cpu {
                user: secs(a.0, b.0),
                sys: secs(a.1, b.1),
            }),
            _ => None,
        })
        .collect();
    Ok(Sandboxed {
        stdout: String::from_utf8_lossy(&sink.stdout).into_owned(),
        intervals,
    })
}

/// `size time` lines printed by `curl -w` (marker lines skipped), checked
/// against the expected size and count; returns MB/s (10^6 bytes per
/// second) of each.
fn parse_curl(out: &str, bytes: u64, count: usize) -> anyhow::Result<Vec<f64>> {
    let v: Vec<f64> = out
        .lines()
        .filter(|l| l.as_bytes() != MARK)
        .map(|l| {
            let (size, time) = l
                .split_once(' ')
                .with_context(|| format!("unexpected curl output {l:?}"))?;
            let size: u64 = size
                .parse()
                .with_context(|| format!("curl size {size:?}"))?;
            let time: f64 = time
                .parse()
                .with_context(|| format!("curl time {time:?}"))?;
            ensure!(size == bytes, "downloaded {size} bytes instead of {bytes}");
            Ok(size as f64 / time / 1e6)
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        v.len() == count,
        "expected {count} downloads, curl reported {}",
        v.len()
    );
    Ok(v)
}

/// curl's `-w` format: size and total time of the transfer.
const CURL_FORMAT: &str = "%{size_download} %{time_total}\\n";

fn big_url(host: &str, port: u16, bytes: u64) -> String {
    format!("http://{host}:{port}/big?bytes={bytes}")
}

/// One direct download from the host, in MB/s.
fn throughput_direct(port: u16, bytes: u64) -> anyhow::Result<f64> {
    let o = Proc::new("curl")
        .args(["-sS", "-f", "--noproxy", "*", "-o", "/dev/null", "-w"])
        .arg(CURL_FORMAT)
        .arg(big_url("127.0.0.1", port, bytes))
        .stdin(Stdio::null())
        .output()
        .context("running curl (is it installed?)")?;
    if !o.status.success() {
        bail!(
            "curl on the host failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(parse_curl(&String::from_utf8_lossy(&o.stdout), bytes, 1)?[0])
}

/// One sandbox that downloads once through the proxy, then once by
/// capture (`--noproxy '*'`), with markers around each. Returns MB/s and
/// the gateway's CPU time of each, in that order.
fn throughput_sandboxed(
    profile: &Profile,
    port: u16,
    bytes: u64,
) -> anyhow::Result<([f64; 2], [Option<Cpu>; 2])> {
    let mark = String::from_utf8_lossy(MARK);
    let url = big_url(HOST, port, bytes);
    let script = format!(
        "set -e\n\
         sleep 0.2\necho {mark}\nsleep 0.1\n\
         curl -sS -f -o /dev/null -w '{CURL_FORMAT}' '{url}'\n\
         echo {mark}\nsleep 0.1\n\
         curl -sS -f --noproxy '*' -o /dev/null -w '{CURL_FORMAT}' '{url}'\n\
         echo {mark}\n"
    );
    let r = run_sandboxed(
        profile,
        vec!["/bin/sh".into(), "-c".into(), script],
        &[(FlowProto::Http, 1), (FlowProto::Capture, 1)],
    )?;
    let v = parse_curl(&r.stdout, bytes, 2)?;
    let cpu = |i: usize| r.intervals.get(i).copied().flatten();
    Ok(([v[0], v[1]], [cpu(0), cpu(1)]))
}

fn parse_latency(out: &str, requests: usize) -> anyhow::Result<Vec<f64>> {
    let v: Vec<f64> = out
        .lines()
        .map(|l| l.parse().with_context(|| format!("latency line {l:?}")))
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        v.len() == requests,
        "expected {requests} timings, got {}",
        v.len()
    );
    Ok(v)
}

/// `requests` timed requests from the host, in microseconds.
fn latency_direct(port: u16, requests: usize) -> anyhow::Result<Vec<f64>> {
    let o = Proc::new(PYTHON)
        .args(["-c", LATENCY_PY, "direct", "127.0.0.1"])
        .args([port.to_string(), requests.to_string(), WARMUP.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("running /usr/bin/python3")?;
    if !o.status.success() {
        bail!(
            "the latency client failed on the host ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    parse_latency(&String::from_utf8_lossy(&o.stdout), requests)
}

/// One sandbox that times `requests` requests through the proxy, then
/// `requests` by capture; microseconds.
fn latency_sandboxed(
    profile: &Profile,
    port: u16,
    requests: usize,
) -> anyhow::Result<[Vec<f64>; 2]> {
    let mark = String::from_utf8_lossy(MARK);
    // The client script is $0 of the shell.
    let script = format!(
        "set -e\n\
         {PYTHON} -c \"$0\" proxy {HOST} {port} {requests} {WARMUP}\n\
         echo {mark}\n\
         {PYTHON} -c \"$0\" capture {HOST} {port} {requests} {WARMUP}\n"
    );
    let r = run_sandboxed(
        profile,
        vec!["/bin/sh".into(), "-c".into(), script, LATENCY_PY.into()],
        &[
            (FlowProto::Http, requests + WARMUP),
            (FlowProto::Capture, requests + WARMUP),
        ],
    )?;
    let (proxy, capture) = r
        .stdout
        .split_once(&format!("{mark}\n"))
        .context("no marker between the two latency clients' output")?;
    Ok([
        parse_latency(proxy, requests)?,
        parse_latency(capture, requests)?,
    ])
}

// ---------------------------------------------------------------- figures

#[derive(Debug, serde::Serialize)]
struct Throughput {
    name: String,
    /// Median of the rounds, 10^6 bytes per second.
    mb_s: f64,
    min_mb_s: f64,
    max_mb_s: f64,
    /// Median over the direct variant's median.
    vs_direct: f64,
    /// Gateway CPU seconds (user + system) per GiB moved (sandboxed
    /// variants).
    gateway_cpu_s_per_gib: Option<f64>,
    /// The system (kernel) part of it.
    gateway_sys_s_per_gib: Option<f64>,
}

fn throughput(name: &str, mut v: Vec<f64>, direct: f64, cpu: Option<Cpu>, gib: f64) -> Throughput {
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    Throughput {
        name: name.to_string(),
        mb_s: median,
        min_mb_s: v[0],
        max_mb_s: v[v.len() - 1],
        vs_direct: if direct > 0.0 { median / direct } else { 1.0 },
        gateway_cpu_s_per_gib: cpu.map(|c| (c.user + c.sys).as_secs_f64() / gib),
        gateway_sys_s_per_gib: cpu.map(|c| c.sys.as_secs_f64() / gib),
    }
}

#[derive(Debug, serde::Serialize)]
struct Latency {
    name: String,
    requests: usize,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    mean_us: f64,
    max_us: f64,
    /// p50 minus the direct variant's p50.
    added_p50_us: f64,
}

fn latency(name: &str, mut v: Vec<f64>, direct_p50: Option<f64>) -> Latency {
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let p50 = pct(0.50);
    Latency {
        name: name.to_string(),
        requests: v.len(),
        p50_us: p50,
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        mean_us: v.iter().sum::<f64>() / v.len() as f64,
        max_us: v[v.len() - 1],
        added_p50_us: direct_p50.map_or(0.0, |d| p50 - d),
    }
}

/// Throughput at or above this fraction of direct is the target.
const THROUGHPUT_TARGET: f64 = 0.80;
/// Added p50 latency below this many microseconds is the target.
const LATENCY_TARGET_US: f64 = 500.0;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

pub(crate) fn egress(args: EgressArgs) -> anyhow::Result<ExitCode> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(args.requests > 0, "--requests must be at least 1");
    let bytes = args.bytes.bytes();
    ensure!(bytes > 0, "--bytes must be more than 0");
    let port = start_upstream()?;
    let profile = bench_profile(port)?;
    let gib = (bytes as f64 * args.rounds as f64) / f64::from(1u32 << 30);

    // Throughput, the variants interleaved round by round so that a change
    // in background load hits all three alike.
    let (mut direct, mut proxy, mut capture) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu: [Option<Cpu>; 2] = [Some(Cpu::default()); 2];
    for _ in 0..args.rounds {
        direct.push(throughput_direct(port, bytes)?);
        let ([p, c], round_cpu) = throughput_sandboxed(&profile, port, bytes)?;
        proxy.push(p);
        capture.push(c);
        for (total, r) in cpu.iter_mut().zip(round_cpu) {
            *total = total.zip(r).map(|(t, r)| Cpu {
                user: t.user + r.user,
                sys: t.sys + r.sys,
            });
        }
    }
    let [proxy_cpu, capture_cpu] = cpu;
    let mut sorted = direct.clone();
    sorted.sort_by(f64::total_cmp);
    let direct_median = sorted[sorted.len() / 2];
    let tput = vec![
        throughput("direct (host curl)", direct, direct_median, None, gib),
        throughput(
            "gateway, proxy (curl via http_proxy)",
            proxy,
            direct_median,
            proxy_cpu,
            gib,
        ),
        throughput(
            "gateway, capture (curl --noproxy '*')",
            capture,
            direct_median,
            capture_cpu,
            gib,
        ),
    ];

    // Latency, the variants alternating every LATENCY_CHUNK requests.
    let (mut direct, mut proxy, mut capture) = (Vec::new(), Vec::new(), Vec::new());
    let mut left = args.requests;
    while left > 0 {
        let k = left.min(LATENCY_CHUNK);
        direct.extend(latency_direct(port, k)?);
        let [p, c] = latency_sandboxed(&profile, port, k)?;
        proxy.extend(p);
        capture.extend(c);
        left -= k;
    }
    let direct = latency("direct (host python3)", direct, None);
    let lat = vec![
        latency(
            "gateway, proxy (127.0.0.1:3128)",
            proxy,
            Some(direct.p50_us),
        ),
        latency(
            "gateway, capture (fake address)",
            capture,
            Some(direct.p50_us),
        ),
    ];
    let lat: Vec<Latency> = std::iter::once(direct).chain(lat).collect();

    let tput_ok = |t: &Throughput| t.vs_direct >= THROUGHPUT_TARGET;
    let lat_ok = |l: &Latency| l.added_p50_us < LATENCY_TARGET_US;
    if args.json {
        let doc = serde_json::json!({
            "benchmark": "egress",
            "body_bytes": bytes,
            "rounds": args.rounds,
            "requests": args.requests,
            "warmup_requests": WARMUP,
            "throughput": tput,
            "latency": lat,
            "targets": {
                "throughput_fraction_of_direct": THROUGHPUT_TARGET,
                "throughput_met": tput[1..].iter().all(tput_ok),
                "added_p50_us": LATENCY_TARGET_US,
                "latency_met": lat[1..].iter().all(lat_ok),
            },
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "egress throughput: {} body, {} interleaved rounds of direct, proxy, capture; \
         median MB/s (MB = 10^6 bytes); upstream on 127.0.0.1:{port}",
        args.bytes, args.rounds
    );
    println!(
        "{:<45} {:>9} {:>9} {:>9} {:>9} {:>17}",
        "variant", "MB/s", "min", "max", "vs direct", "gw CPU s/GiB"
    );
    for t in &tput {
        let cpu = match (t.gateway_cpu_s_per_gib, t.gateway_sys_s_per_gib) {
            (Some(c), Some(s)) => format!("{c:.2} (sys {s:.2})"),
            _ => "-".to_string(),
        };
        println!(
            "{:<45} {:>9.0} {:>9.0} {:>9.0} {:>8.0}% {:>17}",
            t.name,
            t.mb_s,
            t.min_mb_s,
            t.max_mb_s,
            t.vs_direct * 100.0,
            cpu
        );
    }
    println!(
        "egress latency: {} sequential GET /small (100-byte body) per variant, a new \
         connection each, variants alternating every {LATENCY_CHUNK} requests, each chunk \
         after {WARMUP} warm-up requests; microseconds",
        args.requests
    );
    println!(
        "{:<45} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "variant", "p50", "p90", "p99", "mean", "max", "+p50"
    );
    for l in &lat {
        println!(
            "{:<45} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>9.0}",
            l.name, l.p50_us, l.p90_us, l.p99_us, l.mean_us, l.max_us, l.added_p50_us
        );
    }
    for t in &tput[1..] {
        println!(
            "target throughput >= {:.0}% of direct, {}: {} ({:.0}%)",
            THROUGHPUT_TARGET * 100.0,
            t.name,
            verdict(tput_ok(t)),
            t.vs_direct * 100.0
        );
    }
    for l in &lat[1..] {
        println!(
            "target added p50 < {:.1} ms, {}: {} ({:+.0} us)",
            LATENCY_TARGET_US / 1e3,
            l.name,
            verdict(lat_ok(l)),
            l.added_p50_us
        );
    }
    if tput[1..].iter().any(|t| t.gateway_cpu_s_per_gib.is_none()) {
        println!("(gateway CPU: the airlock-egress process was not found under this process)");
    }
    Ok(ExitCode::SUCCESS)
}
