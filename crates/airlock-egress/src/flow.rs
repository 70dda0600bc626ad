//! Flow decision records: one typed value per DNS query and per connection
//! attempt, which the runtime reports (and the audit log will chain).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

/// How the sandbox tried to reach out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowProto {
    /// A query to the sandbox's DNS server.
    #[default]
    Dns,
    /// An absolute-form HTTP request to the proxy.
    Http,
    /// A CONNECT tunnel through the proxy.
    Connect,
    /// A direct TCP connection caught by a capture listener.
    Capture,
}

/// The gateway's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Forwarded to the real destination.
    Allow,
    /// Refused.
    #[default]
    Deny,
    /// Answered by a built-in mock; nothing left the host.
    Mock,
}

/// One decision, with its traffic once the flow has closed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Milliseconds since the Unix epoch when the attempt started.
    pub time_ms: u64,
    /// The sandbox's id.
    pub sandbox: String,
    /// Sequence number within the sandbox (the order attempts started in).
    pub seq: u64,
    /// How the attempt was made.
    pub proto: FlowProto,
    /// The name asked for (a DNS name, a CONNECT or request host, or the
    /// name behind a captured fake address); `None` for a direct connection
    /// to an address that no name maps to.
    pub name: Option<String>,
    /// Destination port (DNS: the query type instead, in `detail`).
    pub port: Option<u16>,
    /// The address the gateway connected to (or would have).
    pub addr: Option<SocketAddr>,
    /// The verdict.
    pub verdict: Verdict,
    /// The rule that allowed it, or why it was refused.
    pub reason: String,
    /// Extra facts: the DNS query type, the HTTP method and path, the SNI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Bytes from the sandbox towards the destination.
    pub bytes_out: u64,
    /// Bytes from the destination to the sandbox.
    pub bytes_in: u64,
    /// Milliseconds from the attempt to the close.
    pub duration_ms: f64,
}

/// A cap the sandbox hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EgressLimit {
    /// `max_bytes_out`.
    BytesOut,
    /// `max_bytes_in`.
    BytesIn,
    /// `max_connections`.
    Connections,
    /// `max_connections_per_sec`.
    ConnectionRate,
    /// The fake address pool of the sandbox's DNS ran out.
    AddressPool,
}

/// What a sink mock recorded: one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkRecord {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The mock's host pattern.
    pub mock: String,
    /// The Host the request named.
    pub host: String,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, in order (values lossily decoded as UTF-8).
    pub headers: Vec<(String, String)>,
    /// Body, lossily decoded as UTF-8 (up to the recording cap).
    pub body: String,
    /// Body length in bytes as received.
    pub body_len: u64,
    /// Whether the body was longer than what was kept.
    pub truncated: bool,
}

/// Everything the gateway reports, in the order it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GatewayEvent {
    /// A decision (and its traffic).
    Flow(FlowRecord),
    /// A request a sink mock recorded.
    Sink(SinkRecord),
    /// A cap was hit (reported once per kind).
    Limit {
        /// Which one.
        limit: EgressLimit,
    },
    /// A canary value was seen leaving.
    Canary(crate::inspect::CanaryFlow),
    /// A connection waits for an approver.
    EscalationRequest(crate::ask::EscalationAsk),
    /// A grant ran out: new connections to this name and port ask again.
    GrantExpired {
        /// The escalation's id.
        id: u64,
        /// The name.
        name: String,
        /// The port.
        port: u16,
        /// Milliseconds since the Unix epoch.
        time_ms: u64,
    },
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Byte counters shared between a flow and its streams.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) out: AtomicU64,
    pub(crate) inn: AtomicU64,
}

/// A flow in progress. Its record is sent when it is dropped, so a flow cut
/// short (the sandbox ended, the task was aborted) is still reported.
#[derive(Debug)]
pub(crate) struct Flow {
    pub(crate) record: FlowRecord,
    pub(crate) counters: Arc<Counters>,
    started: Instant,
    events: UnboundedSender<GatewayEvent>,
    pub(crate) permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Flow {
    pub(crate) fn new(
        events: UnboundedSender<GatewayEvent>,
        sandbox: &str,
        seq: u64,
        proto: FlowProto,
        name: Option<String>,
        port: Option<u16>,
    ) -> Self {
        Self {
            record: FlowRecord {
                time_ms: now_ms(),
                sandbox: sandbox.to_owned(),
                seq,
                proto,
                name,
                port,
                addr: None,
                verdict: Verdict::Deny,
                reason: "closed before a decision".into(),
                detail: None,
                bytes_out: 0,
                bytes_in: 0,
                duration_ms: 0.0,
            },
            counters: Arc::default(),
            started: Instant::now(),
            events,
            permit: None,
        }
    }

    pub(crate) fn decide(&mut self, verdict: Verdict, reason: impl Into<String>) {
        self.record.verdict = verdict;
        self.record.reason = reason.into();
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        let mut record = std::mem::take(&mut self.record);
        record.bytes_out = self.counters.out.load(Ordering::Relaxed);
        record.bytes_in = self.counters.inn.load(Ordering::Relaxed);
        record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let _ = self.events.send(GatewayEvent::Flow(record));
    }
}
