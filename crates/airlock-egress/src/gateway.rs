//! The gateway: serves the sockets created inside the sandbox's network
//! namespace, decides every DNS query and connection, and forwards what is
//! allowed from the host's network.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use airlock_policy::{normalize_name, NameVerdict, NetworkPolicy, OnDeny};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Semaphore;

use crate::dns::{self, Answer, Unanswerable};
use crate::flow::{Counters, EgressLimit, Flow, FlowProto, GatewayEvent, Verdict};
use crate::hook::{EscalationHook, EscalationRequest, HookAnswer};
use crate::sni::{client_hello, Hello, MAX_HELLO};
use crate::EgressError;

/// First fake address handed out by the sandbox's DNS (127.10.0.1).
pub const FAKE_BASE: Ipv4Addr = Ipv4Addr::new(127, 10, 0, 0);
/// Number of fake addresses per sandbox.
pub const FAKE_POOL: u32 = 65_534;

/// What a socket handed over by the jail is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ListenerRole {
    /// The HTTP proxy (absolute-form and CONNECT), TCP.
    Proxy,
    /// The DNS server, UDP.
    DnsUdp,
    /// The DNS server, TCP.
    DnsTcp,
    /// A capture listener on this port (bound to the unspecified address,
    /// so it receives connections to every fake address), TCP.
    Capture {
        /// The port.
        port: u16,
    },
}

/// How the gateway behaves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The sandbox's id, put in every record.
    pub sandbox: String,
    /// The validated network policy.
    pub policy: NetworkPolicy,
    /// Timeout of an upstream connect (per address).
    pub connect_timeout: Duration,
    /// Time a client has to send its TLS ClientHello.
    pub hello_timeout: Duration,
    /// Largest request body a sink records (the rest is counted).
    pub sink_body_cap: usize,
    /// The run's canary values, looked for in everything leaving.
    pub canaries: Vec<airlock_canary::Canary>,
    /// Refuse (or cut) a flow that carries a canary value.
    pub block_canaries: bool,
}

impl GatewayConfig {
    /// A config with the default timeouts.
    pub fn new(sandbox: impl Into<String>, policy: NetworkPolicy) -> Self {
        Self {
            sandbox: sandbox.into(),
            policy,
            connect_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            sink_body_cap: 1 << 20,
            canaries: Vec::new(),
            block_canaries: true,
        }
    }
}

#[derive(Debug, Default)]
struct FakePool {
    next: u32,
    by_name: HashMap<String, Ipv4Addr>,
    by_ip: HashMap<Ipv4Addr, String>,
}

impl FakePool {
    fn get_or_assign(&mut self, name: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_name.get(name) {
            return Some(*ip);
        }
        if self.next >= FAKE_POOL {
            return None;
        }
        self.next += 1;
        let ip = Ipv4Addr::from(u32::from(FAKE_BASE) + self.next);
        self.by_name.insert(name.to_owned(), ip);
        self.by_ip.insert(ip, name.to_owned());
        Some(ip)
    }
}

/// The outcome of checking a name and port.
#[derive(Debug)]
pub(crate) enum Authz {
    /// Go ahead, to one of these addresses.
    Allow(Vec<SocketAddr>),
    /// Serve it with the mock at this index.
    Mock(usize),
    /// Refused (the flow carries the reason).
    Deny,
}

/// The gateway of one sandbox.
#[derive(Debug)]
pub struct Gateway {
    pub(crate) cfg: GatewayConfig,
    hook: Arc<dyn EscalationHook>,
    pub(crate) events: UnboundedSender<GatewayEvent>,
    seq: AtomicU64,
    pool: Mutex<FakePool>,
    conns: Arc<Semaphore>,
    rate: Mutex<(Instant, u32)>,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    reported: Mutex<HashSet<EgressLimit>>,
    pub(crate) canaries: Option<crate::inspect::Canaries>,
    pub(crate) escalations: crate::ask::Escalations,
}

impl Gateway {
    /// A gateway sending its events to `events`.
    pub fn new(
        cfg: GatewayConfig,
        hook: Arc<dyn EscalationHook>,
        events: UnboundedSender<GatewayEvent>,
    ) -> Arc<Self> {
        let max = cfg.policy.max_connections as usize;
        let canaries = (!cfg.canaries.is_empty()).then(|| crate::inspect::Canaries {
            scanner: airlock_canary::Scanner::new(&cfg.canaries),
            block: cfg.block_canaries,
        });
        Arc::new(Self {
            canaries,
            escalations: crate::ask::Escalations::default(),
            cfg,
            hook,
            events,
            seq: AtomicU64::new(0),
            pool: Mutex::default(),
            conns: Arc::new(Semaphore::new(max)),
            rate: Mutex::new((Instant::now(), 0)),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            reported: Mutex::default(),
        })
    }

    /// Serves the sockets until the returned future is dropped. Each fd
    /// must be a socket of the kind its role says (bound, and listening for
    /// TCP).
    pub async fn serve(
        self: Arc<Self>,
        listeners: Vec<(ListenerRole, OwnedFd)>,
    ) -> Result<(), EgressError> {
        let mut tasks = tokio::task::JoinSet::new();
        for (role, fd) in listeners {
            let gw = Arc::clone(&self);
            match role {
                ListenerRole::DnsUdp => {
                    let std = std::net::UdpSocket::from(fd);
                    std.set_nonblocking(true).map_err(EgressError::Listener)?;
                    let sock = UdpSocket::from_std(std).map_err(EgressError::Listener)?;
                    tasks.spawn(gw.serve_dns_udp(sock));
                }
                _ => {
                    let std = std::net::TcpListener::from(fd);
                    std.set_nonblocking(true).map_err(EgressError::Listener)?;
                    let l = TcpListener::from_std(std).map_err(EgressError::Listener)?;
                    tasks.spawn(gw.accept_loop(role, l));
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    async fn accept_loop(self: Arc<Self>, role: ListenerRole, l: TcpListener) {
        loop {
            let (stream, _peer) = match l.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(?role, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let gw = Arc::clone(&self);
            tokio::spawn(async move {
                match role {
                    ListenerRole::Proxy => crate::proxy::serve_conn(gw, stream).await,
                    ListenerRole::DnsTcp => gw.serve_dns_tcp(stream).await,
                    ListenerRole::Capture { port } => gw.capture(stream, port).await,
                    ListenerRole::DnsUdp => {}
                }
            });
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn flow(&self, proto: FlowProto, name: Option<String>, port: Option<u16>) -> Flow {
        Flow::new(
            self.events.clone(),
            &self.cfg.sandbox,
            self.next_seq(),
            proto,
            name,
            port,
        )
    }

    pub(crate) fn limit_hit(&self, limit: EgressLimit) {
        let first = self
            .reported
            .lock()
            .map(|mut r| r.insert(limit))
            .unwrap_or(false);
        if first {
            let _ = self.events.send(GatewayEvent::Limit { limit });
        }
    }

    fn take_rate_slot(&self) -> bool {
        let Ok(mut r) = self.rate.lock() else {
            return false;
        };
        let now = Instant::now();
        if now.duration_since(r.0) >= Duration::from_secs(1) {
            *r = (now, 0);
        }
        if r.1 >= self.cfg.policy.max_connections_per_sec {
            return false;
        }
        r.1 += 1;
        true
    }

    /// The name decision, then the caps, then host-side resolution and the
    /// address check. Records the verdict and reason in `flow`.
    pub(crate) async fn authorize(
        self: &Arc<Self>,
        flow: &mut Flow,
        raw_name: &str,
        port: u16,
    ) -> Authz {
        if self.inspect_name(flow, crate::inspect::Place::TargetName, raw_name) {
            return Authz::Deny;
        }
        let name = match normalize_name(raw_name) {
            Ok(n) => n,
            Err(e) => {
                flow.decide(Verdict::Deny, format!("bad host name: {e}"));
                return Authz::Deny;
            }
        };
        flow.record.name = Some(name.clone());
        flow.record.port = Some(port);
        let rule = match self.cfg.policy.decide(&name, port) {
            NameVerdict::Mock { index } => {
                let m = &self.cfg.policy.mocks[index];
                flow.decide(Verdict::Mock, format!("mock {}", m.host));
                return Authz::Mock(index);
            }
            NameVerdict::DenyRule { rule } => {
                flow.decide(Verdict::Deny, format!("denied by rule {rule}"));
                return Authz::Deny;
            }
            NameVerdict::NoRule => {
                let answer = if self.cfg.policy.on_deny == OnDeny::Ask {
                    self.ask(flow.record.proto, &name, port).await
                } else {
                    self.escalate(flow.record.proto, &name, Some(port))
                };
                match answer {
                    Ok(reason) => reason,
                    Err(reason) => {
                        flow.decide(Verdict::Deny, reason);
                        return Authz::Deny;
                    }
                }
            }
            NameVerdict::Allow { rule } => format!("allowed by rule {rule}"),
        };
        if !self.take_rate_slot() {
            self.limit_hit(EgressLimit::ConnectionRate);
            flow.decide(
                Verdict::Deny,
                format!(
                    "cap: more than {} new connections per second",
                    self.cfg.policy.max_connections_per_sec
                ),
            );
            return Authz::Deny;
        }
        match Arc::clone(&self.conns).try_acquire_owned() {
            Ok(p) => flow.permit = Some(p),
            Err(_) => {
                self.limit_hit(EgressLimit::Connections);
                flow.decide(
                    Verdict::Deny,
                    format!(
                        "cap: {} connections already open",
                        self.cfg.policy.max_connections
                    ),
                );
                return Authz::Deny;
            }
        }
        if let Some(limit) = self.over_byte_cap() {
            self.limit_hit(limit);
            flow.decide(Verdict::Deny, format!("cap: {} reached", limit_name(limit)));
            return Authz::Deny;
        }
        match self.resolve(&name, port).await {
            Ok(addrs) => {
                flow.record.addr = addrs.first().copied();
                flow.decide(Verdict::Allow, rule);
                Authz::Allow(addrs)
            }
            Err(reason) => {
                flow.decide(Verdict::Deny, reason);
                Authz::Deny
            }
        }
    }

    /// Asks the escalation hook about a name no rule allows. `Ok` carries
    /// the allowing reason, `Err` the refusal.
    fn escalate(&self, proto: FlowProto, name: &str, port: Option<u16>) -> Result<String, String> {
        let req = EscalationRequest {
            sandbox: self.cfg.sandbox.clone(),
            proto,
            name: name.to_owned(),
            port,
        };
        let target = match port {
            Some(p) => format!("{name}:{p}"),
            None => name.to_owned(),
        };
        match self.hook.on_denied(&req) {
            HookAnswer::Allow => Ok(format!("allowed by the escalation hook ({target})")),
            HookAnswer::Deny => Err(format!("no allow rule matches {target}")),
            HookAnswer::Ask => Err(format!(
                "no allow rule matches {target}; escalation needs a person's approval, \
                 which this run cannot ask for"
            )),
        }
    }

    /// Resolves on the host side (a pinned address, an IP literal or the
    /// host's resolver) and keeps the addresses the policy allows. An error
    /// names the first blocked address, or the resolver's failure.
    pub(crate) async fn resolve(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let candidates: Vec<IpAddr> = if let Some(ip) = self.cfg.policy.pinned(name) {
            vec![ip]
        } else if let Ok(ip) = name.parse::<IpAddr>() {
            vec![ip]
        } else {
            match tokio::net::lookup_host((name, port)).await {
                Ok(it) => it.map(|a| a.ip()).collect(),
                Err(e) => return Err(format!("{name} does not resolve on the host: {e}")),
            }
        };
        let mut blocked = None;
        let mut ok = Vec::new();
        for ip in candidates {
            match self.cfg.policy.check_addr(ip) {
                Ok(()) => ok.push(SocketAddr::new(ip, port)),
                Err(b) => {
                    blocked.get_or_insert(b);
                }
            }
        }
        match (ok.is_empty(), blocked) {
            (false, _) => Ok(ok),
            (true, Some(b)) => Err(format!("{name} resolves to {b}")),
            (true, None) => Err(format!("{name} has no address on the host")),
        }
    }

    pub(crate) fn over_byte_cap(&self) -> Option<EgressLimit> {
        let p = &self.cfg.policy;
        if p.max_bytes_out
            .is_some_and(|c| self.bytes_out.load(Ordering::Relaxed) >= c.bytes())
        {
            return Some(EgressLimit::BytesOut);
        }
        if p.max_bytes_in
            .is_some_and(|c| self.bytes_in.load(Ordering::Relaxed) >= c.bytes())
        {
            return Some(EgressLimit::BytesIn);
        }
        None
    }

    /// Connects to the first address that answers.
    pub(crate) async fn connect(
        &self,
        addrs: &[SocketAddr],
    ) -> Result<(TcpStream, SocketAddr), String> {
        let mut last = String::from("no address");
        for &a in addrs {
            match tokio::time::timeout(self.cfg.connect_timeout, TcpStream::connect(a)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok((s, a));
                }
                Ok(Err(e)) => last = format!("connecting to {a}: {e}"),
                Err(_) => last = format!("connecting to {a}: timed out"),
            }
        }
        Err(last)
    }

    /// A stream to the destination that counts bytes and enforces the caps.
    pub(crate) fn meter(self: &Arc<Self>, s: TcpStream, c: Arc<Counters>) -> Metered {
        Metered {
            inner: s,
            gw: Arc::clone(self),
            counters: c,
        }
    }

    // ---- DNS ----

    async fn serve_dns_udp(self: Arc<Self>, sock: UdpSocket) {
        let sock = Arc::new(sock);
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = match sock.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(_) => continue,
            };
            let query = buf[..n].to_vec();
            let gw = Arc::clone(&self);
            let sock = Arc::clone(&sock);
            tokio::spawn(async move {
                if let Some(resp) = gw.answer_dns(&query).await {
                    let _ = sock.send_to(&resp, peer).await;
                }
            });
        }
    }

    async fn serve_dns_tcp(self: Arc<Self>, mut s: TcpStream) {
        loop {
            let mut len = [0u8; 2];
            if tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut len))
                .await
                .map_or(true, |r| r.is_err())
            {
                return;
            }
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if s.read_exact(&mut q).await.is_err() {
                return;
            }
            let Some(resp) = self.answer_dns(&q).await else {
                return;
            };
            let mut out = (resp.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&resp);
            if s.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    /// Answers one DNS message: allowed names get a fake loopback address
    /// (after checking that the name resolves on the host to an allowed
    /// address), everything else NXDOMAIN. `None`: drop the message.
    pub async fn answer_dns(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let q = match dns::parse(bytes) {
            Ok(q) => q,
            Err(Unanswerable::Garbage) => return None,
            Err(Unanswerable::Reply(r)) => return Some(r),
        };
        let mut flow = self.flow(FlowProto::Dns, Some(q.name.clone()), None);
        flow.record.detail = Some(q.qtype.to_string());
        if self.inspect_name(&mut flow, crate::inspect::Place::DnsName, &q.name) {
            return Some(dns::respond(&q, Answer::NxDomain));
        }
        let name = match normalize_name(&q.name) {
            Ok(n) if n.parse::<IpAddr>().is_err() => n,
            _ => {
                flow.decide(Verdict::Deny, "not a host name");
                return Some(dns::respond(&q, Answer::NxDomain));
            }
        };
        let verdict = match self.cfg.policy.decide_dns(&name) {
            NameVerdict::Mock { index } => {
                flow.decide(
                    Verdict::Mock,
                    format!("mock {}", self.cfg.policy.mocks[index].host),
                );
                Verdict::Mock
            }
            NameVerdict::DenyRule { rule } => {
                flow.decide(Verdict::Deny, format!("denied by rule {rule}"));
                return Some(dns::respond(&q, Answer::NxDomain));
            }
            NameVerdict::NoRule if self.cfg.policy.on_deny == OnDeny::Ask => {
                // The connection will ask; the name is not resolved on the
                // host until a grant exists.
                flow.decide(
                    Verdict::Allow,
                    "no allow rule: a fake address, and a connection to it asks an approver",
                );
                Verdict::Mock
            }
            NameVerdict::NoRule => match self.escalate(FlowProto::Dns, &name, None) {
                Ok(r) => {
                    flow.decide(Verdict::Allow, r);
                    Verdict::Allow
                }
                Err(r) => {
                    flow.decide(Verdict::Deny, r);
                    return Some(dns::respond(&q, Answer::NxDomain));
                }
            },
            NameVerdict::Allow { rule } => {
                flow.decide(Verdict::Allow, format!("allowed by rule {rule}"));
                Verdict::Allow
            }
        };
        if verdict == Verdict::Allow {
            // Refuse names that only lead to blocked addresses now, so the
            // sandbox sees NXDOMAIN rather than a connection reset later.
            match self.resolve(&name, 443).await {
                Ok(addrs) => flow.record.addr = addrs.first().copied(),
                Err(reason) => {
                    flow.decide(Verdict::Deny, reason);
                    return Some(dns::respond(&q, Answer::NxDomain));
                }
            }
        }
        let fake = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.get_or_assign(&name));
        let Some(fake) = fake else {
            self.limit_hit(EgressLimit::AddressPool);
            flow.decide(
                Verdict::Deny,
                "cap: the sandbox's fake address pool is exhausted",
            );
            return Some(dns::respond(&q, Answer::ServFail));
        };
        let answer = if q.qtype == hickory_proto::rr::RecordType::A {
            Answer::A(fake)
        } else {
            Answer::NoData
        };
        if let Some(d) = flow.record.detail.as_mut() {
            if let Answer::A(ip) = answer {
                d.push_str(&format!(" -> {ip}"));
            }
        }
        Some(dns::respond(&q, answer))
    }

    /// The name behind a fake address, if the DNS handed it out.
    pub(crate) fn name_of(&self, ip: IpAddr) -> Option<String> {
        let IpAddr::V4(v4) = ip else {
            return None;
        };
        self.pool.lock().ok()?.by_ip.get(&v4).cloned()
    }

    // ---- capture ----

    async fn capture(self: Arc<Self>, client: TcpStream, port: u16) {
        let local = client.local_addr().ok();
        let name = local.and_then(|a| self.name_of(a.ip()));
        let mut flow = self.flow(FlowProto::Capture, name.clone(), Some(port));
        let Some(name) = name else {
            flow.record.addr = local;
            flow.decide(
                Verdict::Deny,
                format!(
                    "direct connection to {}: not an address the sandbox's DNS handed out \
                     (connections to IP literals are refused)",
                    local.map_or_else(|| "?".into(), |a| a.to_string())
                ),
            );
            return;
        };
        match self.authorize(&mut flow, &name, port).await {
            Authz::Deny => {}
            Authz::Mock(index) => {
                if port == 443 {
                    refuse_tls_mock(&mut flow, &name);
                    return;
                }
                crate::mock::serve_conn(self, client, index, flow).await;
            }
            Authz::Allow(addrs) => {
                self.tunnel(flow, client, &name, port, Vec::new(), Some(addrs), None)
                    .await;
            }
        }
    }

    /// Splices `client` to the destination: checks the SNI first on port
    /// 443, connects (unless `upstream` is given), forwards `head` and
    /// copies both ways through the meter.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn tunnel<C>(
        self: Arc<Self>,
        mut flow: Flow,
        mut client: C,
        name: &str,
        port: u16,
        mut head: Vec<u8>,
        addrs: Option<Vec<SocketAddr>>,
        upstream: Option<TcpStream>,
    ) where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        if port == 443 {
            match self.read_hello(&mut client, &mut head).await {
                Ok(Some(sni)) => {
                    flow.record.detail = Some(format!("sni {sni}"));
                    if self.inspect_name(&mut flow, crate::inspect::Place::Sni, &sni) {
                        return;
                    }
                    if sni != name {
                        flow.decide(
                            Verdict::Deny,
                            format!("TLS SNI {sni} does not match the requested name {name}"),
                        );
                        return;
                    }
                }
                Ok(None) if name.parse::<IpAddr>().is_ok() => {}
                Ok(None) => {
                    flow.decide(
                        Verdict::Deny,
                        format!("TLS ClientHello without SNI for {name}"),
                    );
                    return;
                }
                Err(reason) => {
                    flow.decide(Verdict::Deny, reason);
                    return;
                }
            }
        }
        let upstream = match upstream {
            Some(u) => u,
            None => match self.connect(addrs.as_deref().unwrap_or_default()).await {
                Ok((u, a)) => {
                    flow.record.addr = Some(a);
                    u
                }
                Err(e) => {
                    flow.record.reason.push_str(&format!("; {e}"));
                    return;
                }
            },
        };
        let mut up = self.meter(upstream, Arc::clone(&flow.counters));
        // A plain stream (not TLS) is scanned for canaries on its way out.
        let guard = if port == 443 {
            None
        } else {
            self.stream_guard(&flow, crate::inspect::Place::Stream)
        };
        // `head` is the TLS ClientHello read ahead (port 443 only).
        if !head.is_empty() && up.write_all(&head).await.is_err() {
            return;
        }
        if let Some(g) = guard {
            let tripped = Arc::clone(&g.tripped);
            let mut guarded = crate::inspect::GuardedRead::new(client, g);
            let _ = tokio::io::copy_bidirectional_with_sizes(
                &mut guarded,
                &mut up,
                64 * 1024,
                64 * 1024,
            )
            .await;
            let cut = tripped.lock().ok().and_then(|t| t.clone());
            if let Some(reason) = cut.filter(|r| !r.is_empty()) {
                flow.decide(Verdict::Deny, reason);
            }
        } else {
            let _ = tokio::io::copy_bidirectional_with_sizes(
                &mut client,
                &mut up,
                64 * 1024,
                64 * 1024,
            )
            .await;
        }
        if let Some(limit) = self.over_byte_cap() {
            flow.record
                .reason
                .push_str(&format!("; cut: {} reached", limit_name(limit)));
        }
    }

    /// Reads the ClientHello into `head`. `Ok(Some(sni))`, `Ok(None)` for a
    /// hello without SNI, `Err` when it is not TLS or never arrives.
    async fn read_hello<C: AsyncRead + Unpin>(
        &self,
        client: &mut C,
        head: &mut Vec<u8>,
    ) -> Result<Option<String>, String> {
        let deadline = tokio::time::Instant::now() + self.cfg.hello_timeout;
        let mut buf = [0u8; 4096];
        loop {
            match client_hello(head) {
                Hello::Sni(s) => return Ok(Some(s)),
                Hello::NoSni => return Ok(None),
                Hello::NotTls => return Err("port 443 without a TLS ClientHello is refused".into()),
                Hello::Incomplete => {}
            }
            if head.len() >= MAX_HELLO {
                return Err("TLS ClientHello too large".into());
            }
            let n = match tokio::time::timeout_at(deadline, client.read(&mut buf)).await {
                Ok(Ok(0)) => return Err("closed before the TLS ClientHello".into()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(format!("reading the TLS ClientHello: {e}")),
                Err(_) => return Err("no TLS ClientHello within the time limit".into()),
            };
            head.extend_from_slice(&buf[..n]);
        }
    }
}

pub(crate) fn refuse_tls_mock(flow: &mut Flow, name: &str) {
    flow.decide(
        Verdict::Deny,
        format!(
            "HTTPS to mock {name} is refused: mocks speak plain HTTP \
             (TLS termination is not supported)"
        ),
    );
}

pub(crate) fn limit_name(l: EgressLimit) -> &'static str {
    match l {
        EgressLimit::BytesOut => "max_bytes_out",
        EgressLimit::BytesIn => "max_bytes_in",
        EgressLimit::Connections => "max_connections",
        EgressLimit::ConnectionRate => "max_connections_per_sec",
        EgressLimit::AddressPool => "fake address pool",
    }
}

/// The destination side of a flow: counts bytes (per flow and per
/// sandbox) and fails once a byte cap is passed.
#[derive(Debug)]
pub(crate) struct Metered {
    inner: TcpStream,
    gw: Arc<Gateway>,
    counters: Arc<Counters>,
}

impl Metered {
    fn cap_error(&self, limit: EgressLimit) -> std::io::Error {
        self.gw.limit_hit(limit);
        std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            format!("egress cap {} reached", limit_name(limit)),
        )
    }
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(cap) = self.gw.cfg.policy.max_bytes_in {
            if self.gw.bytes_in.load(Ordering::Relaxed) >= cap.bytes() {
                return Poll::Ready(Err(self.cap_error(EgressLimit::BytesIn)));
            }
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.counters.inn.fetch_add(n, Ordering::Relaxed);
            self.gw.bytes_in.fetch_add(n, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let data = match self.gw.cfg.policy.max_bytes_out {
            Some(cap) => {
                let used = self.gw.bytes_out.load(Ordering::Relaxed);
                let left = cap.bytes().saturating_sub(used);
                if left == 0 {
                    return Poll::Ready(Err(self.cap_error(EgressLimit::BytesOut)));
                }
                &data[..data.len().min(usize::try_from(left).unwrap_or(usize::MAX))]
            }
            None => data,
        };
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            self.counters.out.fetch_add(n as u64, Ordering::Relaxed);
            self.gw.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
