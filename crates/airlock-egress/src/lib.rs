//! airlock-egress: the egress gateway of a sandbox.
//!
//! The sandbox's network namespace has only `lo`. The jail creates sockets
//! inside it (an HTTP proxy on 127.0.0.1:3128, a DNS server on
//! 127.0.0.53:53, capture listeners on the allowed ports) and hands them
//! over; this crate serves them from the host side with tokio, so upstream
//! connections leave from the host's network and nothing runs inside the
//! sandbox on the gateway's behalf.
//!
//! Every DNS query and connection attempt is decided against a validated
//! [`airlock_policy::NetworkPolicy`]: the name (mock, deny rule, allow
//! rule, else the [`EscalationHook`]), the caps, then the host-side
//! resolution and the address check (private, loopback, link-local,
//! metadata ranges are refused unless an `allow_cidr` covers them), and on
//! port 443 the TLS SNI. Each decision becomes one [`FlowRecord`].
//!
//! It owns: the gateway ([`Gateway`]), its protocol pieces ([`dns`],
//! [`sni`], the proxy request target), mocks, flow records, and the
//! separate gateway process ([`GatewayProcess`]). It reads no files and
//! makes no policy of its own.

mod ask;
pub mod confine;
pub mod dns;
mod flow;
/// Fuzz entry points: raw bytes into the DNS server, the HTTP proxy and the
/// SNI reader of a gateway whose policy can never reach the network.
pub mod fuzzing;
mod gateway;
mod hook;
mod inspect;
mod mock;
mod process;
mod proxy;
pub mod sni;

pub use ask::{Decision, EscalationAsk, SupervisorMessage};
pub use flow::{EgressLimit, FlowProto, FlowRecord, GatewayEvent, SinkRecord, Verdict};
pub use gateway::{Gateway, GatewayConfig, ListenerRole, FAKE_BASE, FAKE_POOL};
pub use hook::{DenyAll, EscalationHook, EscalationRequest, HookAnswer};
pub use inspect::{hit_encoding, CanaryFlow, Place};
pub use process::{
    gateway_main_if_requested, AnswerHandle, EventObserver, GatewayOutcome, GatewayProcess,
    ProcessConfig, EGRESS_ARG, GATEWAY_UNPRIVILEGED_ID, PROCESS_NAME,
};
pub use proxy::{request_target, serve_io as serve_proxy_io, REASON_HEADER};

/// Errors of the gateway.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// A socket handed over could not be used.
    #[error("gateway listener: {0}")]
    Listener(#[source] std::io::Error),
    /// The gateway process could not be started or talked to.
    #[error("egress gateway process: {0}")]
    Spawn(#[source] std::io::Error),
    /// The supervisor and gateway disagree.
    #[error("egress gateway protocol: {0}")]
    Protocol(String),
}
