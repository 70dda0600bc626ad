//! What an allowlist grants: allowed names through the proxy and through
//! capture (HTTP and HTTPS), mocks, caps, many connections at once, and a
//! gateway that dies mid-run.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{modes, Sandbox};
use crate::{find, flows, run_sh, value_of, Upstream};

const ALLOW_API: &str = r#"mode = "allowlist"
allow = ["api.test:8080", "api.test:443", "*.svc.test:8080"]
allow_cidr = ["{net}"]
hosts = { "api.test" = "{ip}", "a.svc.test" = "{ip}", "svc.test" = "{ip}" }
"#;

const PY_GET: &str = r#"import socket,sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"GET /hello HTTP/1.0\r\nHost: " + sys.argv[1].encode() + b"\r\n\r\n")
data = b""
while True:
    c = s.recv(65536)
    if not c: break
    data += c
print("py=" + data.decode().splitlines()[-1])
"#;

#[test]
fn allowed_name_via_proxy_and_via_capture() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        sb.put("cert.pem", &up.cert_pem(), 0o644);
        sb.put("get.py", PY_GET.as_bytes(), 0o644);
        let profile = up.profile(&sb, ALLOW_API);
        let run = run_sh(
            &sb,
            &profile,
            "echo proxy=$(curl -sS -m 10 http://api.test:8080/hello); \
             echo capture=$(curl -sS -m 10 --noproxy '*' http://api.test:8080/hello); \
             python3 /workspace/get.py api.test 8080; \
             echo tlsproxy=$(curl -sS -m 10 --cacert /workspace/cert.pem https://api.test/hello); \
             echo tlscapture=$(curl -sS -m 10 --noproxy '*' --cacert /workspace/cert.pem https://api.test/hello); \
             echo wild=$(curl -sS -m 10 --noproxy '*' http://a.svc.test:8080/hello)",
        );
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        for key in ["proxy", "capture", "py", "tlsproxy", "tlscapture", "wild"] {
            assert_eq!(
                value_of(&run, key),
                "hello from upstream",
                "{key}\n{}",
                run.describe()
            );
        }
        let f = flows(&run);
        let http = find(&f, "http", Some("api.test"), "allow");
        assert_eq!(http.len(), 1, "{}", run.describe());
        assert_eq!(http[0]["port"], 8080);
        assert_eq!(http[0]["addr"], format!("{}:8080", up.ip));
        assert!(http[0]["bytes_in"].as_u64().unwrap() > 20, "{:?}", http[0]);
        assert!(http[0]["bytes_out"].as_u64().unwrap() > 20, "{:?}", http[0]);
        assert!(
            http[0]["reason"]
                .as_str()
                .unwrap()
                .contains("api.test:8080"),
            "{:?}",
            http[0]
        );
        let connect = find(&f, "connect", Some("api.test"), "allow");
        assert_eq!(connect.len(), 1, "{}", run.describe());
        assert_eq!(connect[0]["detail"], "sni api.test");
        // curl --noproxy, python, curl https --noproxy, the wildcard.
        assert_eq!(find(&f, "capture", None, "allow").len(), 4, "{f:#?}");
        assert!(!find(&f, "dns", Some("api.test"), "allow").is_empty());
        let wild = find(&f, "capture", Some("a.svc.test"), "allow");
        assert!(
            wild[0]["reason"]
                .as_str()
                .unwrap()
                .contains("*.svc.test:8080"),
            "{wild:?}"
        );
        assert_eq!(run.json()["network"]["limits_hit"], serde_json::json!([]));
    }
    let log = up.log();
    assert!(log.matches("GET /hello").count() >= 6, "{log}");
    assert!(log.contains("host=api.test:8080"), "{log}");
}

#[test]
fn mocks_answer_and_sinks_record() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let profile = up.profile(
            &sb,
            r#"mode = "allowlist"

[[network.mock]]
host = "search.test"
kind = "static"
routes = [
  { path = "/v1/search*", body = "{\"results\":[\"mocked\"]}", headers = { "content-type" = "application/json" } },
]

[[network.mock]]
host = "mail.test"
kind = "sink"
"#,
        );
        let run = run_sh(
            &sb,
            &profile,
            "echo search=$(curl -sS -m 10 'http://search.test/v1/search?q=x'); \
             echo search2=$(curl -sS -m 10 --noproxy '*' 'http://search.test/v1/search?q=y'); \
             echo missing=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' http://search.test/other); \
             echo mail=$(curl -sS -m 10 -X POST --data 'to=boss&body=secret-report' http://mail.test/send); \
             echo mail2=$(curl -sS -m 10 --noproxy '*' -X POST --data 'second' http://mail.test/send); \
             curl -sS -m 10 https://mail.test/ >/dev/null 2>&1; echo tls=$?",
        );
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_eq!(value_of(&run, "search"), r#"{"results":["mocked"]}"#);
        assert_eq!(value_of(&run, "search2"), r#"{"results":["mocked"]}"#);
        assert_eq!(value_of(&run, "missing"), "404");
        assert_eq!(value_of(&run, "mail"), r#"{"ok":true}"#);
        assert_eq!(value_of(&run, "mail2"), r#"{"ok":true}"#);
        assert_ne!(value_of(&run, "tls"), "0", "HTTPS to a mock must fail");
        let doc = run.json();
        let sink = doc["network"]["sink"].as_array().unwrap();
        assert_eq!(sink.len(), 2, "{doc:#}");
        assert_eq!(sink[0]["method"], "POST");
        assert_eq!(sink[0]["path"], "/send");
        assert_eq!(sink[0]["body"], "to=boss&body=secret-report");
        assert_eq!(sink[1]["body"], "second");
        let f = flows(&run);
        assert!(
            find(&f, "http", Some("search.test"), "mock").len() == 2,
            "{f:#?}"
        );
        assert!(
            find(&f, "capture", Some("search.test"), "mock").len() == 1,
            "{f:#?}"
        );
        let tls = find(&f, "connect", Some("mail.test"), "deny");
        assert_eq!(tls.len(), 1, "{f:#?}");
        assert!(tls[0]["reason"]
            .as_str()
            .unwrap()
            .contains("TLS termination"));
    }
    assert_eq!(up.log(), "", "mock traffic reached the upstream");
}

#[test]
fn byte_caps_cut_a_download_and_an_upload() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let profile = up.profile(&sb, &format!("{ALLOW_API}max_bytes_in = \"1M\"\n"));
        let run = run_sh(
            &sb,
            &profile,
            "curl -sS -m 20 --noproxy '*' -o /workspace/big 'http://api.test:8080/big?bytes=20000000'; \
             echo rc=$?; echo size=$(stat -c %s /workspace/big)",
        );
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_ne!(value_of(&run, "rc"), "0", "{}", run.describe());
        let size: u64 = value_of(&run, "size").parse().unwrap();
        assert!(size < 2 << 20, "{size} bytes got through a 1 MiB cap");
        let doc = run.json();
        assert!(
            doc["network"]["limits_hit"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("bytes_in")),
            "{doc:#}"
        );
        let total_in: u64 = flows(&run)
            .iter()
            .map(|f| f["bytes_in"].as_u64().unwrap())
            .sum();
        assert!(total_in <= (1 << 20) + (128 << 10), "{total_in}");

        // Out: an upload of 4 MB against a 1 MiB cap never reaches the
        // upstream whole (its log would show the body).
        let profile = up.profile(&sb, &format!("{ALLOW_API}max_bytes_out = \"1M\"\n"));
        let run = run_sh(
            &sb,
            &profile,
            "head -c 4000000 /dev/zero | tr '\\0' x > /tmp/up; \
             curl -sS -m 20 --noproxy '*' -o /dev/null --data-binary @/tmp/up http://api.test:8080/echo; \
             echo rc=$?",
        );
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_ne!(value_of(&run, "rc"), "0", "{}", run.describe());
        let doc = run.json();
        assert!(
            doc["network"]["limits_hit"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("bytes_out")),
            "{doc:#}"
        );
        let total_out: u64 = flows(&run)
            .iter()
            .map(|f| f["bytes_out"].as_u64().unwrap())
            .sum();
        assert!(
            total_out <= 1 << 20,
            "{total_out} bytes out past a 1 MiB cap"
        );
    }
    // The upstream logs what it got of the body when the connection ends.
    let log = up.log();
    assert!(log.contains("POST /echo"), "{log}");
    assert!(
        !log.contains("len=4000000"),
        "the capped upload arrived whole: {log}"
    );
}

const PY_MANY: &str = r#"import socket,sys,threading
n, ms, via_proxy = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "proxy"
ok, refused = [], []
def one(i):
    try:
        if via_proxy:
            s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
            s.sendall(("GET http://api.test:8080/slow?ms=%s HTTP/1.0\r\n\r\n" % ms).encode())
        else:
            s = socket.create_connection(("api.test", 8080), timeout=20)
            s.sendall(("GET /slow?ms=%s HTTP/1.0\r\nHost: api.test\r\n\r\n" % ms).encode())
        data = b""
        while True:
            c = s.recv(65536)
            if not c: break
            data += c
        (ok if data.endswith(b"slow\n") else refused).append(data[:12])
    except OSError as e:
        refused.append(str(e))
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
[t.start() for t in ts]
[t.join() for t in ts]
print("ok=%d" % len(ok))
print("refused=%d" % len(refused))
"#;

#[test]
fn many_concurrent_connections_and_the_connection_cap() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        sb.put("many.py", PY_MANY.as_bytes(), 0o644);
        // 48 at once, each held 500 ms, under the default cap of 64.
        let profile = up.profile(&sb, ALLOW_API);
        let run = run_sh(&sb, &profile, "python3 /workspace/many.py 48 500 capture");
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_eq!(value_of(&run, "ok"), "48", "{}", run.describe());
        assert_eq!(
            find(&flows(&run), "capture", Some("api.test"), "allow").len(),
            48
        );

        // A cap of 8: 24 at once through the proxy, so some are refused.
        let profile = up.profile(&sb, &format!("{ALLOW_API}max_connections = 8\n"));
        let run = run_sh(&sb, &profile, "python3 /workspace/many.py 24 1500 proxy");
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        let ok: usize = value_of(&run, "ok").parse().unwrap();
        assert!((1..=8).contains(&ok), "{ok} served under a cap of 8");
        assert_eq!(value_of(&run, "refused"), (24 - ok).to_string());
        let f = flows(&run);
        let capped = find(&f, "http", Some("api.test"), "deny");
        assert_eq!(capped.len(), 24 - ok, "{f:#?}");
        assert!(capped[0]["reason"].as_str().unwrap().contains("cap"));
        assert!(run.json()["network"]["limits_hit"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("connections")));
    }
}

const PY_KILLED: &str = r#"import socket,sys,time
ip = socket.gethostbyname("api.test")
def get():
    s = socket.create_connection((ip, 8080), timeout=5)
    s.sendall(b"GET /hello HTTP/1.0\r\nHost: api.test\r\n\r\n")
    data = b""
    while True:
        c = s.recv(4096)
        if not c: return data
        data += c
assert b"hello from upstream" in get()
print("READY", flush=True)
deadline = time.time() + 20
while time.time() < deadline:
    try:
        get()
    except OSError as e:
        print("FAILED_CLOSED %s" % e.errno, flush=True)
        break
    time.sleep(0.05)
else:
    print("STILL_OPEN", flush=True)
# The kernel releases a killed process's sockets one by one as it exits
# (in no fixed order); give the teardown a moment before probing each.
time.sleep(0.3)
try:
    socket.create_connection((ip, 8080), timeout=5)
    print("capture=open")
except OSError as e:
    print("capture=%s" % e.errno)
try:
    socket.create_connection(("127.0.0.1", 3128), timeout=5)
    print("proxy=open")
except OSError as e:
    print("proxy=%s" % e.errno)
try:
    socket.getaddrinfo("api.test", 80)
    print("dns=resolved")
except socket.gaierror as e:
    print("dns=%s" % e.errno)
"#;

/// The gateway process dies mid-run: the sandbox loses its network at once
/// (connections refused, not hung), the run still ends normally, and
/// nothing is left behind.
#[test]
fn gateway_killed_mid_run_fails_closed() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        sb.put("killed.py", PY_KILLED.as_bytes(), 0o644);
        // The name is resolved before the kill; the capture path needs the
        // gateway for every connection.
        let profile = up.profile(&sb, ALLOW_API);
        let ws = sb.workspace().to_str().unwrap().to_owned();
        let mut cmd = sb.command();
        cmd.args([
            "run",
            "--profile",
            profile.to_str().unwrap(),
            "--workspace",
            &ws,
        ])
        .args(["--", "python3", "/workspace/killed.py"])
        .stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        if line.trim() != "READY" {
            let output = child.wait_with_output().unwrap();
            panic!(
                "[{mode}] the first request failed: {line}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // The airlock supervisor (setpriv execs it, keeping the pid).
        let supervisor = child.id();
        let kids = children_of(supervisor);
        let gateway: Vec<u32> = kids
            .iter()
            .copied()
            .filter(|p| comm(*p).as_deref() == Some("airlock-egress"))
            .collect();
        assert_eq!(gateway.len(), 1, "[{mode}] children {kids:?}");
        // The gateway parses hostile input: it holds no privilege (a
        // root-started one runs as nobody) and cannot regain any.
        let status = std::fs::read_to_string(format!("/proc/{}/status", gateway[0])).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap()
        };
        assert_eq!(
            field("Uid:"),
            "65534 65534 65534 65534",
            "[{mode}] {status}"
        );
        assert_eq!(
            field("Gid:"),
            "65534 65534 65534 65534",
            "[{mode}] {status}"
        );
        assert_eq!(field("NoNewPrivs:"), "1", "[{mode}]");
        assert_eq!(field("CapEff:"), "0000000000000000", "[{mode}]");
        let killed_at = Instant::now();
        assert!(std::process::Command::new("kill")
            .args(["-9", &gateway[0].to_string()])
            .status()
            .unwrap()
            .success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "[{mode}] {rest}\n{stderr}");
        // The request in flight at the kill may be reset (104); every
        // later one is refused (111).
        assert!(
            rest.contains("FAILED_CLOSED 111") || rest.contains("FAILED_CLOSED 104"),
            "[{mode}] expected ECONNREFUSED or ECONNRESET after the kill: {rest}"
        );
        assert!(rest.contains("capture=111"), "[{mode}] {rest}");
        assert!(rest.contains("proxy=111"), "[{mode}] {rest}");
        // The DNS server is gone too: an immediate failure, not a hang.
        assert!(rest.contains("dns=-3"), "[{mode}] {rest}"); // EAI_AGAIN
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "[{mode}] the sandbox hung after the gateway died"
        );
        assert!(stderr.contains("lost its network"), "[{mode}] {stderr}");
        // Nothing survives: not the sandbox's init, not the gateway.
        for p in kids {
            assert!(
                !std::path::Path::new(&format!("/proc/{p}")).exists(),
                "[{mode}] process {p} ({:?}) outlived the run",
                comm(p)
            );
        }
    }
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}
