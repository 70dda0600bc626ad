//! The escalation hook: asked about every name that no rule allows (names
//! an explicit deny rule refuses are never offered to it).

use serde::{Deserialize, Serialize};

use crate::flow::FlowProto;

/// A request for more network authority than the profile grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationRequest {
    /// The sandbox asking.
    pub sandbox: String,
    /// How it asked (a DNS query has no port).
    pub proto: FlowProto,
    /// The name (normalized).
    pub name: String,
    /// The port, for a connection.
    pub port: Option<u16>,
}

/// The hook's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookAnswer {
    /// Let this one through (the address checks still apply).
    Allow,
    /// Refuse it.
    Deny,
    /// A person must decide. Until escalation grants exist, the gateway
    /// refuses and says that approval was needed.
    Ask,
}

/// Decides on names no rule allows. Called on the gateway's runtime
/// threads, so it must answer quickly and never block.
pub trait EscalationHook: Send + Sync + std::fmt::Debug {
    /// The answer for `req`.
    fn on_denied(&self, req: &EscalationRequest) -> HookAnswer;
}

/// The default hook: deny everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl EscalationHook for DenyAll {
    fn on_denied(&self, _req: &EscalationRequest) -> HookAnswer {
        HookAnswer::Deny
    }
}
