//! Smoke test of the fuzz targets in `fuzz/`: CI has no nightly toolchain
//! for cargo-fuzz, so this feeds the same entry points
//! (`airlock_egress::fuzzing`) random bytes and near-valid inputs (DNS
//! queries built with hickory-proto, HTTP proxy requests) with proptest,
//! and checks exact answers for a few known cases.
//!
//! The entry points panic on a broken invariant (a response that does not
//! parse, an address outside the fake pool, anything let out), so the
//! property tests only need to call them.

use std::net::Ipv4Addr;

use airlock_egress::fuzzing::{
    self, ALLOWED_LOOPBACK, ALLOWED_METADATA, DENIED, SINK_BODY, SINK_SUFFIX, STATIC_BODY,
    STATIC_MOCK,
};
use airlock_egress::sni::{client_hello, Hello};
use airlock_egress::{GatewayEvent, Verdict, FAKE_BASE, REASON_HEADER};
use airlock_policy::normalize_name;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use proptest::prelude::*;

// ---- helpers ----

fn dns_query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// Asks the gateway and parses its answer.
fn ask(query: &[u8]) -> Message {
    fuzzing::dns_query(query);
    let resp = fuzzing::dns_response(query).expect("the query was dropped");
    Message::from_vec(&resp).unwrap()
}

/// A response of the proxy: status, head, body.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// Splits the proxy's output into responses (content-length bodies only,
/// which is all the gateway sends on these paths).
fn replies(raw: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let body_start = end + 4;
        let body_end = (body_start + len).min(rest.len());
        let body = String::from_utf8_lossy(&rest[body_start..body_end]).into_owned();
        out.push(Reply { status, head, body });
        rest = &rest[body_end..];
    }
    out
}

fn proxy(request: &str) -> (Vec<Reply>, Vec<GatewayEvent>) {
    fuzzing::proxy_request(request.as_bytes());
    let (raw, events) = fuzzing::proxy_exchange(request.as_bytes());
    (replies(&raw), events)
}

fn one_reply(request: &str) -> Reply {
    let (mut r, _) = proxy(request);
    assert_eq!(r.len(), 1, "{request:?} got {r:?}");
    r.remove(0)
}

fn flows(events: &[GatewayEvent]) -> Vec<&airlock_egress::FlowRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            GatewayEvent::Flow(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn is_fake(ip: Ipv4Addr) -> bool {
    ip.octets()[..2] == FAKE_BASE.octets()[..2]
}

use airlock_egress::fuzzing::hello_with_sni;

// ---- deterministic cases ----

#[test]
fn dns_denied_and_unlisted_names_get_nxdomain() {
    for name in [
        "unlisted.test",
        DENIED,
        "a.b.evil.test",
        ALLOWED_LOOPBACK,
        ALLOWED_METADATA,
        "127.0.0.1",
    ] {
        let r = ask(&dns_query(0xbeef, name, RecordType::A));
        assert_eq!(r.id(), 0xbeef, "{name}");
        assert_eq!(r.message_type(), MessageType::Response, "{name}");
        assert_eq!(r.response_code(), ResponseCode::NXDomain, "{name}");
        assert_eq!(u16::from(r.response_code()), 3, "{name}");
        assert!(r.answers().is_empty(), "{name}");
        assert_eq!(r.queries().len(), 1, "{name}");
    }
    // The reasons say why.
    let (_, events) = fuzzing::dns_exchange(&dns_query(1, ALLOWED_METADATA, RecordType::A));
    let f = flows(&events);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].verdict, Verdict::Deny);
    assert!(f[0].reason.contains("cloud metadata"), "{}", f[0].reason);
    let (_, events) = fuzzing::dns_exchange(&dns_query(1, "x.evil.test", RecordType::A));
    assert!(
        flows(&events)[0]
            .reason
            .contains("denied by rule *.evil.test"),
        "{events:?}"
    );
}

#[test]
fn dns_mock_names_get_fake_addresses() {
    for name in [STATIC_MOCK, "Static.Mock.Test.", "collector.sink.test"] {
        let r = ask(&dns_query(7, name, RecordType::A));
        assert_eq!(r.response_code(), ResponseCode::NoError, "{name}");
        assert_eq!(r.answers().len(), 1, "{name}");
        let RData::A(a) = r.answers()[0].data() else {
            panic!("{name}: not an A record: {:?}", r.answers()[0]);
        };
        assert!(is_fake(a.0), "{name}: {}", a.0);
        assert_ne!(a.0, FAKE_BASE);
    }
    // AAAA of a mock name: the name exists, with no IPv6 address.
    let r = ask(&dns_query(8, STATIC_MOCK, RecordType::AAAA));
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(r.answers().is_empty());
    // The bare sink suffix is not covered by "*.sink.test".
    let r = ask(&dns_query(9, SINK_SUFFIX, RecordType::A));
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
}

#[test]
fn dns_malformed_messages() {
    assert_eq!(fuzzing::dns_response(b""), None);
    assert_eq!(fuzzing::dns_response(&[0u8; 11]), None);
    // A response is never answered.
    let mut resp = dns_query(1, STATIC_MOCK, RecordType::A);
    resp[2] |= 0x80;
    assert_eq!(fuzzing::dns_response(&resp), None);
    // A header with a broken question: FORMERR with the same id.
    let mut cut = dns_query(0x4242, STATIC_MOCK, RecordType::A);
    cut.truncate(15);
    let r = ask(&cut);
    assert_eq!(r.id(), 0x4242);
    assert_eq!(r.response_code(), ResponseCode::FormErr);
    // Two questions: FORMERR.
    let mut m = Message::new();
    m.set_id(5)
        .add_query(Query::query(
            Name::from_ascii(STATIC_MOCK).unwrap(),
            RecordType::A,
        ))
        .add_query(Query::query(
            Name::from_ascii("x.sink.test").unwrap(),
            RecordType::A,
        ));
    assert_eq!(
        ask(&m.to_vec().unwrap()).response_code(),
        ResponseCode::FormErr
    );
    // Not a QUERY: NOTIMP.
    let mut status = dns_query(6, STATIC_MOCK, RecordType::A);
    status[2] = (status[2] & !0x78) | (2 << 3);
    assert_eq!(ask(&status).response_code(), ResponseCode::NotImp);
}

#[test]
fn proxy_refuses_names_without_an_allow_rule() {
    let (r, events) = proxy("GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].status, 403);
    assert!(r[0].body.contains("no allow rule"), "{r:?}");
    assert!(r[0].body.contains("denied.test:80"), "{r:?}");
    assert!(
        r[0].head
            .to_ascii_lowercase()
            .contains(&format!("{REASON_HEADER}: no allow rule")),
        "{r:?}"
    );
    let f = flows(&events);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].verdict, Verdict::Deny);
    assert_eq!(f[0].name.as_deref(), Some("denied.test"));
    assert_eq!(f[0].detail.as_deref(), Some("GET /"));
}

#[test]
fn proxy_refuses_deny_rules_and_blocked_addresses() {
    let r = one_reply("GET http://www.evil.test/x HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("denied by rule *.evil.test"), "{r:?}");
    // Allowed by a rule, but pinned to a blocked address: never connected.
    let r = one_reply(&format!("GET http://{ALLOWED_LOOPBACK}/ HTTP/1.1\r\n\r\n"));
    assert_eq!(r.status, 403);
    assert!(r.body.contains("127.0.0.1 is a loopback address"), "{r:?}");
    let r = one_reply(&format!("CONNECT {ALLOWED_METADATA}:443 HTTP/1.1\r\n\r\n"));
    assert_eq!(r.status, 403);
    assert!(r.body.contains("cloud metadata"), "{r:?}");
    // Port 22 is denied on the allowed names.
    let r = one_reply(&format!("CONNECT {ALLOWED_LOOPBACK}:22 HTTP/1.1\r\n\r\n"));
    assert_eq!(r.status, 403);
    assert!(r.body.contains("denied by rule *.allowed.test:22"), "{r:?}");
    // IP literals have no rule.
    let r = one_reply("GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("no allow rule"), "{r:?}");
}

#[test]
fn proxy_serves_the_mocks() {
    let r = one_reply(&format!(
        "GET http://{STATIC_MOCK}/ HTTP/1.1\r\nHost: {STATIC_MOCK}\r\n\r\n"
    ));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, STATIC_BODY);
    let r = one_reply(&format!(
        "GET http://{STATIC_MOCK}/api/v1?q=1 HTTP/1.1\r\n\r\n"
    ));
    assert_eq!(r.status, 201);
    assert_eq!(r.body, r#"{"items":[]}"#);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{r:?}"
    );
    let r = one_reply(&format!("GET http://{STATIC_MOCK}/nope HTTP/1.1\r\n\r\n"));
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no route for /nope"), "{r:?}");

    let (r, events) =
        proxy("POST http://collector.sink.test/in?x=1 HTTP/1.1\r\nContent-Length: 6\r\n\r\nsecret");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].status, 202);
    assert_eq!(r[0].body, SINK_BODY);
    let sink: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            GatewayEvent::Sink(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(sink.len(), 1, "{events:?}");
    assert_eq!(sink[0].body, "secret");
    assert_eq!(sink[0].path, "/in?x=1");
    assert_eq!(sink[0].host, "collector.sink.test");
    assert_eq!(flows(&events)[0].verdict, Verdict::Mock);
}

#[test]
fn proxy_refuses_tls_to_mocks_and_bad_targets() {
    let r = one_reply(&format!("CONNECT {STATIC_MOCK}:443 HTTP/1.1\r\n\r\n"));
    assert_eq!(r.status, 403);
    assert!(r.body.contains("TLS"), "{r:?}");
    let r = one_reply("GET https://x.sink.test/ HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("use CONNECT"), "{r:?}");
    let r = one_reply("GET / HTTP/1.1\r\nHost: x.sink.test\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("absolute-form"), "{r:?}");
    let r = one_reply("GET http://user:pw@x.sink.test/ HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("credentials"), "{r:?}");
}

#[test]
fn proxy_answers_pipelined_requests_in_order() {
    let (r, events) = proxy(&format!(
        "GET http://{STATIC_MOCK}/ HTTP/1.1\r\n\r\n\
         GET http://{DENIED}/ HTTP/1.1\r\n\r\n\
         POST http://a.sink.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    ));
    let statuses: Vec<u16> = r.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 403, 202], "{r:?}");
    assert_eq!(flows(&events).len(), 3);
}

#[test]
fn proxy_garbage_gets_a_400_or_nothing() {
    let raw = fuzzing::proxy_response(b"\x16\x03\x01\x00\x05hello");
    assert!(
        raw.is_empty() || raw.starts_with(b"HTTP/1.1 400"),
        "{raw:?}"
    );
    assert!(fuzzing::proxy_response(b"").is_empty());
}

#[test]
fn sni_cases() {
    let h = hello_with_sni("Mock.Test");
    fuzzing::sni(&h);
    assert_eq!(client_hello(&h), Hello::Sni("mock.test".into()));
    for cut in 1..h.len() {
        fuzzing::sni(&h[..cut]);
        assert_eq!(client_hello(&h[..cut]), Hello::Incomplete, "cut at {cut}");
    }
    assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
}

// ---- property tests ----

/// A byte-level change to a well-formed input.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = data.len();
        match *m {
            Mutation::Flip(i, b) if len > 0 => data[i % len] ^= b,
            Mutation::Set(i, b) if len > 0 => data[i % len] = b,
            Mutation::Insert(i, b) => data.insert(i % (len + 1), b),
            Mutation::Remove(i) if len > 0 => {
                data.remove(i % len);
            }
            Mutation::Truncate(i) => data.truncate(i % (len + 1)),
            _ => {}
        }
    }
    data
}

/// Names the policy knows about, and others, as labels (some binary).
fn dns_name() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let known = prop::sample::select(vec![
        STATIC_MOCK,
        "x.sink.test",
        SINK_SUFFIX,
        DENIED,
        "a.evil.test",
        ALLOWED_LOOPBACK,
        ALLOWED_METADATA,
        "private.allowed.test",
        "v6.allowed.test",
        "unlisted.test",
        "localhost",
        "1.2.3.4",
    ]);
    let text = prop_oneof![
        3 => known.prop_map(str::to_owned),
        2 => "[a-z0-9_-]{1,10}\\.sink\\.test",
        2 => "[a-zA-Z0-9_-]{1,12}(\\.[a-zA-Z0-9_-]{1,12}){0,4}",
        1 => "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
    ];
    let text = (text, any::<bool>()).prop_map(|(n, upper)| {
        let n = if upper { n.to_ascii_uppercase() } else { n };
        n.split('.').map(|l| l.as_bytes().to_vec()).collect()
    });
    let binary = prop::collection::vec(prop::collection::vec(any::<u8>(), 1..16), 0..4).prop_map(
        |mut labels| {
            labels.push(b"sink".to_vec());
            labels.push(b"test".to_vec());
            labels
        },
    );
    prop_oneof![4 => text, 1 => binary]
}

/// Whether the policy's mocks cover `name`, as the gateway reads it.
fn is_mock_name(name: &Name) -> bool {
    let ascii = name.to_ascii();
    let n = ascii.strip_suffix('.').unwrap_or(&ascii);
    normalize_name(n).is_ok_and(|n| {
        n == STATIC_MOCK
            || n.strip_suffix(".sink.test")
                .is_some_and(|sub| !sub.is_empty())
    })
}

fn dns_name_of(labels: &[Vec<u8>]) -> Name {
    Name::from_labels(labels.iter().map(Vec::as_slice)).unwrap()
}

#[derive(Debug, Clone)]
struct DnsCase {
    id: u16,
    response: bool,
    op_code: u8,
    flags: (bool, bool, bool, bool),
    questions: Vec<(Vec<Vec<u8>>, u16, u16)>,
    edns: Option<u16>,
}

fn dns_case() -> impl Strategy<Value = DnsCase> {
    let qtype = prop_oneof![
        4 => Just(1u16),
        2 => Just(28u16),
        1 => prop::sample::select(vec![5u16, 15, 16, 33, 41, 64, 65, 252, 255]),
        1 => any::<u16>(),
    ];
    let qclass = prop_oneof![6 => Just(1u16), 1 => Just(255u16), 1 => any::<u16>()];
    let questions = prop_oneof![
        8 => prop::collection::vec((dns_name(), qtype.clone(), qclass.clone()), 1..=1),
        1 => prop::collection::vec((dns_name(), qtype, qclass), 0..=3),
    ];
    let op_code = prop_oneof![8 => Just(0u8), 1 => 0..16u8];
    (
        any::<u16>(),
        prop::bool::weighted(0.1),
        op_code,
        any::<(bool, bool, bool, bool)>(),
        questions,
        prop::option::weighted(0.3, any::<u16>()),
    )
        .prop_map(|(id, response, op_code, flags, questions, edns)| DnsCase {
            id,
            response,
            op_code,
            flags,
            questions,
            edns,
        })
}

fn encode(case: &DnsCase) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(case.id)
        .set_message_type(if case.response {
            MessageType::Response
        } else {
            MessageType::Query
        })
        .set_op_code(OpCode::from_u8(case.op_code))
        .set_recursion_desired(case.flags.0)
        .set_checking_disabled(case.flags.1)
        .set_authentic_data(case.flags.2)
        .set_truncated(case.flags.3);
    for (name, qtype, qclass) in &case.questions {
        let mut q = Query::query(dns_name_of(name), RecordType::from(*qtype));
        q.set_query_class(DNSClass::from(*qclass));
        m.add_query(q);
    }
    if let Some(payload) = case.edns {
        let mut e = Edns::new();
        e.set_max_payload(payload.max(512));
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// HTTP methods other than CONNECT, mostly real ones.
fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE",
        ])
        .prop_map(str::to_owned),
        1 => "[A-Za-z!#$%&'*+.^_`|~-]{1,10}",
    ]
}

/// Host names: the mocks, names with rules, names without, IP literals.
fn http_host() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![STATIC_MOCK, "c.sink.test", "Static.Mock.Test."])
            .prop_map(str::to_owned),
        4 => prop::sample::select(vec![
            SINK_SUFFIX,
            DENIED,
            "www.evil.test",
            ALLOWED_LOOPBACK,
            ALLOWED_METADATA,
            "private.allowed.test",
            "v6.allowed.test",
            "unlisted.test",
            "127.0.0.1",
            "169.254.169.254",
            "[::1]",
            "[fd00:ec2::254]",
            "localhost",
        ])
        .prop_map(str::to_owned),
        1 => "[A-Za-z0-9._-]{1,20}",
    ]
}

fn port_suffix() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(String::new()),
        3 => prop::sample::select(vec![80u16, 443, 8080, 22, 0, 65535])
            .prop_map(|p| format!(":{p}")),
        1 => "(:[0-9]{0,7})?",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["/", "/api/v1", "/api/", "/nope", "/in?x=1", "/?q=%00"])
            .prop_map(str::to_owned),
        1 => "/[A-Za-z0-9._~%!$&'()*+,;=:@/?-]{0,30}",
    ]
}

/// A request line's method and target: mostly absolute-form requests and
/// CONNECT to host:port, sometimes what a proxy must refuse.
fn method_and_target() -> impl Strategy<Value = (String, String)> {
    let absolute =
        (http_host(), port_suffix(), path()).prop_map(|(h, p, x)| format!("http://{h}{p}{x}"));
    let authority = (http_host(), port_suffix()).prop_map(|(h, p)| format!("{h}{p}"));
    let odd = prop_oneof![
        (http_host(), path()).prop_map(|(h, x)| format!("https://{h}{x}")),
        (http_host(), path()).prop_map(|(h, x)| format!("ftp://{h}{x}")),
        (http_host(), path()).prop_map(|(h, x)| format!("http://u:p@{h}{x}")),
        (http_host(), port_suffix()).prop_map(|(h, p)| format!("{h}{p}")),
        path(),
        Just("*".to_owned()),
        "[!-~]{0,40}",
    ];
    prop_oneof![
        7 => (method(), absolute),
        2 => (Just("CONNECT".to_owned()), authority),
        2 => (prop_oneof![method(), Just("CONNECT".to_owned())], odd),
    ]
}

/// Header lines; the ones that change framing are rarer.
fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => http_host().prop_map(|h| format!("Host: {h}")),
        3 => "[A-Za-z0-9-]{1,12}: [ -~]{0,24}",
        2 => prop::sample::select(vec![
            "Connection: close",
            "Connection: keep-alive",
            "Proxy-Connection: keep-alive",
            "Proxy-Authorization: Basic Zm9vOmJhcg==",
            "TE: trailers",
            "X-Airlock-Reason: forged",
            "Accept: */*",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            "Connection: upgrade",
            "Upgrade: websocket",
            "Expect: 100-continue",
            "Content-Length: -1",
            "Content-Length: 1, 2",
            "Content-Length: 3",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: gzip, chunked",
        ])
        .prop_map(str::to_owned),
    ]
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Sized(Vec<u8>),
    Chunked(Vec<Vec<u8>>, bool),
    Raw(Vec<u8>),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => Just(Body::None),
        3 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Sized),
        3 => (
            prop::collection::vec(prop::collection::vec(any::<u8>(), 1..20), 0..4),
            any::<bool>()
        )
            .prop_map(|(c, t)| Body::Chunked(c, t)),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Raw),
    ]
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let version = prop_oneof![
        10 => Just("HTTP/1.1".to_owned()),
        1 => Just("HTTP/1.0".to_owned()),
        1 => "HTTP/[0-9]\\.[0-9]",
    ];
    (
        method_and_target(),
        version,
        prop::collection::vec(header(), 0..4),
        body(),
    )
        .prop_map(|((method, target), version, headers, body)| {
            let mut out = format!("{method} {target} {version}\r\n").into_bytes();
            for h in &headers {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            match body {
                Body::None => out.extend_from_slice(b"\r\n"),
                Body::Sized(b) => {
                    out.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes(),
                    );
                    out.extend_from_slice(&b);
                }
                Body::Chunked(chunks, trailer) => {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    for c in chunks {
                        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                        out.extend_from_slice(&c);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n");
                    if trailer {
                        out.extend_from_slice(b"X-Trailer: 1\r\n");
                    }
                    out.extend_from_slice(b"\r\n");
                }
                Body::Raw(b) => {
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&b);
                }
            }
            out
        })
}

/// No change half of the time, else up to three.
fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop_oneof![Just(Vec::new()), prop::collection::vec(mutation(), 1..=3),]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn dns_random_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::dns_query(&data);
    }

    #[test]
    fn dns_mutated_queries(
        case in dns_case(),
        mutations in mutations(),
    ) {
        let bytes = encode(&case);
        fuzzing::dns_query(&mutate(bytes.clone(), &mutations));
        if !mutations.is_empty() {
            return Ok(());
        }
        // Unchanged: the exact answer is known.
        let resp = fuzzing::dns_response(&bytes);
        if case.response {
            prop_assert!(resp.is_none());
            return Ok(());
        }
        let m = Message::from_vec(&resp.expect("query dropped")).unwrap();
        prop_assert_eq!(m.id(), case.id);
        let expected = if case.op_code != 0 {
            ResponseCode::NotImp
        } else if case.questions.len() != 1 {
            ResponseCode::FormErr
        } else if is_mock_name(&dns_name_of(&case.questions[0].0)) {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        prop_assert_eq!(m.response_code(), expected, "{:?}", case);
        let want_a = expected == ResponseCode::NoError && case.questions[0].1 == 1;
        prop_assert_eq!(m.answers().len(), usize::from(want_a), "{:?}", m);
    }

    #[test]
    fn sni_random_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzzing::sni(&data);
    }

    #[test]
    fn sni_mutated_hellos(
        name in "[A-Za-z0-9.-]{0,40}",
        mutations in mutations(),
    ) {
        let hello = hello_with_sni(&name);
        fuzzing::sni(&mutate(hello.clone(), &mutations));
        if !name.is_empty() {
            let want = name.strip_suffix('.').unwrap_or(&name).to_ascii_lowercase();
            prop_assert_eq!(client_hello(&hello), Hello::Sni(want));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 500,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn proxy_random_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        fuzzing::proxy_request(&data);
    }

    #[test]
    fn proxy_near_valid_requests(
        requests in prop::collection::vec(request(), 1..=3),
        mutations in mutations(),
    ) {
        let data = mutate(requests.concat(), &mutations);
        fuzzing::proxy_request(&data);
    }

    /// Well-formed requests to known names: the status is known.
    #[test]
    fn proxy_well_formed_requests(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        host in prop::sample::select(vec![
            STATIC_MOCK, "c.sink.test", SINK_SUFFIX, DENIED, "www.evil.test",
            ALLOWED_LOOPBACK, ALLOWED_METADATA, "private.allowed.test", "unlisted.test",
            "127.0.0.1", "[::1]",
        ]),
        port in prop::option::of(prop::sample::select(vec![80u16, 443, 8080, 22])),
        path in prop::sample::select(vec!["/", "/api/v1", "/api/", "/nope", "/?q=1"]),
        body in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        chunked in any::<bool>(),
    ) {
        let port_s = port.map_or_else(String::new, |p| format!(":{p}"));
        let mut req = format!("{method} http://{host}{port_s}{path} HTTP/1.1\r\nHost: {host}\r\n")
            .into_bytes();
        let body = body.unwrap_or_default();
        if chunked {
            req.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            if !body.is_empty() {
                req.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                req.extend_from_slice(&body);
                req.extend_from_slice(b"\r\n");
            }
            req.extend_from_slice(b"0\r\n\r\n");
        } else {
            req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            req.extend_from_slice(&body);
        }
        fuzzing::proxy_request(&req);
        let (raw, events) = fuzzing::proxy_exchange(&req);
        let r = replies(&raw);
        prop_assert_eq!(r.len(), 1, "{:?}", r);
        let p = port.unwrap_or(80);
        let mock_port = p == 80 || p == 443;
        let (status, text) = if host == STATIC_MOCK && mock_port {
            match path {
                "/" | "/?q=1" => (200, STATIC_BODY),
                "/api/v1" | "/api/" => (201, r#"{"items":[]}"#),
                _ => (404, "no route"),
            }
        } else if host == "c.sink.test" && mock_port {
            (202, SINK_BODY)
        } else {
            (403, "airlock egress: ")
        };
        prop_assert_eq!(r[0].status, status, "{:?}", r);
        prop_assert!(r[0].body.contains(text), "{:?}", r);
        let f = flows(&events);
        prop_assert_eq!(f.len(), 1);
        let want = if status == 403 { Verdict::Deny } else { Verdict::Mock };
        prop_assert_eq!(f[0].verdict, want);
        if status == 202 {
            let sunk = events.iter().find_map(|e| match e {
                GatewayEvent::Sink(s) => Some(s),
                _ => None,
            });
            prop_assert_eq!(sunk.map(|s| s.body_len), Some(body.len() as u64));
        }
    }

    /// CONNECT never gets a tunnel: every name is refused one way or another.
    #[test]
    fn proxy_connect_is_always_refused(
        host in http_host(),
        port in port_suffix(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut req = format!("CONNECT {host}{port} HTTP/1.1\r\nHost: {host}{port}\r\n\r\n")
            .into_bytes();
        req.extend_from_slice(&tail);
        let raw = fuzzing::proxy_response(&req);
        fuzzing::proxy_request(&req);
        let text = String::from_utf8_lossy(&raw);
        prop_assert!(!text.starts_with("HTTP/1.1 2"), "{}", text);
    }
}
