//! Entry points for the fuzz targets (`fuzz/` at the repository root) and
//! their smoke test (`tests/fuzz_smoke.rs`): raw bytes in, the gateway's
//! answer out, with the invariants checked on the way. Any panic here is a
//! bug in the gateway (or a broken invariant), never an expected outcome.
//!
//! The gateway runs with [`POLICY_TOML`], which can never reach the
//! network: names with no rule are denied by [`DenyAll`] without a lookup,
//! mocks are answered in-process, and every allow rule names a host pinned
//! (in `hosts`) to a blocked address with no `allow_cidr`, so an allowed
//! name is resolved from its pin and then refused by the address check.
//! [`policy`] asserts that shape once, and every call asserts afterwards
//! that no flow was allowed. The runtime has no I/O driver either, so an
//! attempt to open a socket would panic rather than connect.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use airlock_policy::{NetworkPolicy, Profile};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RData;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::sni::{client_hello, Hello, MAX_HELLO};
use crate::{DenyAll, Gateway, GatewayConfig, GatewayEvent, Verdict, FAKE_BASE};

/// Name of the static mock (port 80).
pub const STATIC_MOCK: &str = "static.mock.test";
/// Body the static mock answers on `/`.
pub const STATIC_BODY: &str = "static mock root";
/// Suffix of the sink mock's names (`*.sink.test`, port 80).
pub const SINK_SUFFIX: &str = "sink.test";
/// Body the sink mock answers (status 202).
pub const SINK_BODY: &str = r#"{"sunk":true}"#;
/// A name an explicit deny rule refuses (as are its subdomains).
pub const DENIED: &str = "evil.test";
/// A name an allow rule covers, pinned to 127.0.0.1 (refused: loopback).
pub const ALLOWED_LOOPBACK: &str = "loopback.allowed.test";
/// A name an allow rule covers, pinned to 169.254.169.254 (refused: cloud
/// metadata).
pub const ALLOWED_METADATA: &str = "metadata.allowed.test";

/// The fuzzing policy. Every allow rule must name an exact host that
/// `hosts` pins to a blocked address; [`policy`] checks this.
pub const POLICY_TOML: &str = r#"
[network]
mode = "allowlist"
allow = [
    "loopback.allowed.test",
    "metadata.allowed.test",
    "private.allowed.test:8080",
    "v6.allowed.test",
]
deny = ["evil.test", "*.evil.test", "*.allowed.test:22"]
hosts = { "loopback.allowed.test" = "127.0.0.1", "metadata.allowed.test" = "169.254.169.254", "private.allowed.test" = "10.1.2.3", "v6.allowed.test" = "::1" }
max_connections = 4096
max_connections_per_sec = 100000

[[network.mock]]
host = "static.mock.test"
kind = "static"
routes = [
    { path = "/", body = "static mock root" },
    { path = "/api/*", status = 201, body = '{"items":[]}', headers = { "content-type" = "application/json", "x-mock" = "static" } },
]

[[network.mock]]
host = "*.sink.test"
kind = "sink"
status = 202
body = '{"sunk":true}'
"#;

/// Longest a proxy exchange may take; a stuck connection is cut here.
const PROXY_TIMEOUT: Duration = Duration::from_secs(2);

/// The validated fuzzing policy, parsed once and checked to be unable to
/// reach the network.
///
/// # Panics
///
/// If [`POLICY_TOML`] does not parse or could let a connection out.
pub fn policy() -> &'static NetworkPolicy {
    static POLICY: OnceLock<NetworkPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let policy = match Profile::from_toml(POLICY_TOML, "fuzz.toml") {
            Ok(p) => p.network,
            Err(e) => panic!("the fuzzing policy does not parse: {e}"),
        };
        assert_offline(&policy);
        policy
    })
}

/// Checks that no name can pass every check: no `allow_cidr`, and every
/// allow rule is an exact name pinned to a blocked address (a wildcard or
/// an unpinned name would make the gateway use the host's resolver).
fn assert_offline(policy: &NetworkPolicy) {
    assert!(
        policy.allow_cidr.is_empty(),
        "the fuzzing policy must not have allow_cidr"
    );
    for rule in &policy.allow {
        let shown = rule.to_string();
        let name = match rule.port() {
            Some(p) => shown
                .strip_suffix(&format!(":{p}"))
                .unwrap_or(&shown)
                .to_owned(),
            None => shown.clone(),
        };
        assert!(
            !name.starts_with("*.") && !name.starts_with('[') && name.parse::<IpAddr>().is_err(),
            "fuzzing allow rule {shown} must be an exact host name"
        );
        let pin = policy.pinned(&name);
        assert!(
            pin.is_some_and(|ip| policy.check_addr(ip).is_err()),
            "fuzzing allow rule {shown} must be pinned to a blocked address, not {pin:?}"
        );
    }
}

/// The current-thread runtime every entry point runs on. It has timers but
/// no I/O driver: the gateway never needs sockets on these paths.
fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("building the fuzzing runtime: {e}"))
    })
}

/// Runs `f` on the fuzzing runtime.
fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// A fresh gateway per input, so that an input's outcome does not depend on
/// the ones before it (the fake address pool, the rate window), and its
/// events can be checked on their own.
fn gateway() -> (Arc<Gateway>, UnboundedReceiver<GatewayEvent>) {
    let (tx, rx) = unbounded_channel();
    let cfg = GatewayConfig::new("fuzz", policy().clone());
    (Gateway::new(cfg, Arc::new(DenyAll), tx), rx)
}

/// Drains the events of one input and checks that nothing was let out: an
/// `Allow` verdict or a destination address means the gateway resolved a
/// name to an address it would connect to.
fn drain_events(mut rx: UnboundedReceiver<GatewayEvent>) -> Vec<GatewayEvent> {
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let GatewayEvent::Flow(r) = &e {
            assert!(
                r.verdict != Verdict::Allow && r.addr.is_none(),
                "the fuzzing gateway let a flow out: {r:?}"
            );
        }
        events.push(e);
    }
    events
}

/// Answers one DNS message; returns the response (`None`: dropped) and the
/// gateway's events.
pub fn dns_exchange(data: &[u8]) -> (Option<Vec<u8>>, Vec<GatewayEvent>) {
    let (gw, rx) = gateway();
    let response = block_on(gw.answer_dns(data));
    drop(gw);
    (response, drain_events(rx))
}

/// Answers one DNS message; `None` when it is dropped.
pub fn dns_response(data: &[u8]) -> Option<Vec<u8>> {
    dns_exchange(data).0
}

/// Fuzz target: a DNS message from the sandbox. A response must parse,
/// carry the query's id, be a response, and any address in it must be one
/// of the sandbox's fake addresses.
pub fn dns_query(data: &[u8]) {
    let Some(response) = dns_response(data) else {
        return;
    };
    let m = match Message::from_vec(&response) {
        Ok(m) => m,
        Err(e) => panic!("the gateway's DNS response does not parse: {e}: {response:02x?}"),
    };
    assert!(data.len() >= 2, "answered a message without an id");
    assert_eq!(
        m.id(),
        u16::from_be_bytes([data[0], data[1]]),
        "response id"
    );
    assert_eq!(m.message_type(), MessageType::Response);
    for record in m.answers() {
        match record.data() {
            RData::A(a) => assert!(
                is_fake(a.0),
                "answered {} outside the fake address pool",
                a.0
            ),
            other => panic!("unexpected answer record {other:?}"),
        }
    }
}

/// Whether `ip` is in the fake address range (127.10.0.0/16).
fn is_fake(ip: Ipv4Addr) -> bool {
    ip.octets()[..2] == FAKE_BASE.octets()[..2]
}

/// Feeds `data` to the HTTP proxy as one client connection, and returns
/// everything the proxy answered and the gateway's events.
///
/// The client writes `data`, waits until the proxy has done all it can with
/// it (see [`Idle`]), then shuts down its sending side and reads to the
/// end. Shutting down at once would make hyper drop a request still being
/// answered (an EOF in mid-message ends the connection), so an input's
/// answer would depend on timing. Two seconds end a stuck connection.
pub fn proxy_exchange(data: &[u8]) -> (Vec<u8>, Vec<GatewayEvent>) {
    let (gw, rx) = gateway();
    let response = block_on(async move {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (mut from_proxy, mut to_proxy) = tokio::io::split(client);
        let server_idle = Arc::new(Idle::default());
        let reader_idle = Arc::new(Idle::default());
        let serve = tracked(
            Arc::clone(&server_idle),
            tokio::time::timeout(
                PROXY_TIMEOUT,
                crate::serve_proxy_io(gw, TokioIo::new(server)),
            ),
        );
        let read = tracked(Arc::clone(&reader_idle), async move {
            let mut out = Vec::new();
            // An error is the end of the stream too.
            let _ = from_proxy.read_to_end(&mut out).await;
            out
        });
        let write = async move {
            // The proxy may answer and close before reading everything.
            let _ = to_proxy.write_all(data).await;
            while !(server_idle.is_idle() && reader_idle.is_idle()) {
                tokio::task::yield_now().await;
            }
            let _ = to_proxy.shutdown().await;
        };
        let (_, out, ()) = tokio::join!(serve, read, write);
        out
    });
    (response, drain_events(rx))
}

/// Tells whether a future is waiting on something outside itself: it
/// returned `Pending` and nothing has woken it since (or it has finished).
/// When the proxy and the client's reader both are, with the input written,
/// the proxy waits for more input; nothing else can wake it (the gateway
/// uses no timers or sockets on these paths).
#[derive(Debug, Default)]
struct Idle {
    done: AtomicBool,
    pending: AtomicBool,
    woken: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Idle {
    fn is_idle(&self) -> bool {
        self.done.load(Ordering::SeqCst)
            || (self.pending.load(Ordering::SeqCst) && !self.woken.load(Ordering::SeqCst))
    }
}

impl Wake for Idle {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().ok().as_deref().and_then(Option::as_ref) {
            w.wake_by_ref();
        }
    }
}

/// Runs `fut`, keeping `idle` up to date.
async fn tracked<F: Future>(idle: Arc<Idle>, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::clone(&idle));
    std::future::poll_fn(move |cx| {
        if let Ok(mut w) = idle.waker.lock() {
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        idle.woken.store(false, Ordering::SeqCst);
        let r = fut.as_mut().poll(&mut Context::from_waker(&waker));
        idle.pending.store(r.is_pending(), Ordering::SeqCst);
        idle.done.store(r.is_ready(), Ordering::SeqCst);
        r
    })
    .await
}

/// Feeds `data` to the HTTP proxy and returns its answer.
pub fn proxy_response(data: &[u8]) -> Vec<u8> {
    proxy_exchange(data).0
}

/// Fuzz target: bytes sent to the HTTP proxy. Whatever comes back must be
/// HTTP/1 responses, and nothing may be let out.
pub fn proxy_request(data: &[u8]) {
    let response = proxy_response(data);
    assert!(
        response.is_empty() || response.starts_with(b"HTTP/1."),
        "the proxy answered something else than HTTP/1: {:?}",
        String::from_utf8_lossy(&response)
    );
}

/// Fuzz target: the first bytes of a stream, read as a TLS ClientHello.
/// Asking for more bytes is only allowed below [`MAX_HELLO`], and a server
/// name comes back lowercase.
pub fn sni(data: &[u8]) {
    match client_hello(data) {
        Hello::Incomplete => assert!(
            data.len() < MAX_HELLO,
            "asked for more than {MAX_HELLO} bytes"
        ),
        Hello::Sni(name) => assert_eq!(name, name.to_ascii_lowercase(), "SNI not lowercased"),
        Hello::NoSni | Hello::NotTls => {}
    }
}

/// A minimal TLS 1.2 ClientHello naming `name` (SNI), for tests and seeds.
pub fn hello_with_sni(name: &str) -> Vec<u8> {
    let n = name.as_bytes();
    let mut sni = Vec::new();
    let list_len = 3 + n.len();
    sni.extend_from_slice(&[0x00, 0x00]); // type server_name
    sni.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
    sni.extend_from_slice(&(list_len as u16).to_be_bytes());
    sni.push(0); // host_name
    sni.extend_from_slice(&(n.len() as u16).to_be_bytes());
    sni.extend_from_slice(n);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    body.extend_from_slice(&sni);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}
