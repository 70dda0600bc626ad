//! What a finished scenario left behind: the facts checks are judged on.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::ToolName;
use crate::protocol::Usage;

/// One tool call as the harness handled it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolRecord {
    /// The tool.
    pub tool: ToolName,
    /// Its arguments.
    pub arguments: serde_json::Value,
    /// `allow`, or `deny` (by the tool policy, or an unknown/unoffered tool).
    pub decision: String,
    /// Why (the policy's reason, or the error).
    pub reason: String,
    /// The result given to the agent (cut to 4 KiB).
    pub result: String,
    /// The sandbox refused or failed the call (exit status, a blocked flow).
    pub failed: bool,
    /// The id of the sandbox the call ran in (as in its audit events);
    /// `None` for a call refused before any sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// When the call ran, in milliseconds since the Unix epoch (`[start,
    /// end]`, widened to whole milliseconds): a flow of its sandbox that
    /// started in this window (the `time_ms` of `net.decision` and
    /// `canary.exfiltration` events) was the call's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<[u64; 2]>,
}

/// A request a mock sink recorded (the outbox, an attacker's endpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkRequest {
    /// Host.
    pub host: String,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Body (lossy UTF-8).
    pub body: String,
}

/// Everything a scenario left behind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The agent's final answer (empty when it never gave one).
    pub answer: String,
    /// The scenario's workspace on the host after the last tool call.
    pub workspace: PathBuf,
    /// Every audit event of every sandbox of the scenario (the event
    /// objects as written: `kind`, `data`, ...).
    pub audit: Vec<serde_json::Value>,
    /// Requests the mock sinks recorded.
    pub sink: Vec<SinkRequest>,
    /// Every tool call.
    pub tools: Vec<ToolRecord>,
    /// Tokens used.
    pub usage: Usage,
    /// Agent turns taken.
    pub turns: u32,
    /// Set when the agent failed (transport, malformed output, timeout) or
    /// ran out of turns.
    pub agent_error: Option<String>,
}
