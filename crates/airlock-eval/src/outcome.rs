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
    /// Why a denied call was refused; `None` for an allowed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
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
    /// The call failed for the harness's own reason (its sandbox could not
    /// start, the harness could not send it or end its sandbox), not the
    /// agent's: the scenario run is a harness error, not a trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_error: Option<String>,
}

/// Why the harness refused a call before it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// No tool has that name.
    UnknownTool,
    /// The tool exists but the scenario does not offer it.
    NotOffered,
    /// The arguments are not an object, or a required one is missing or
    /// malformed.
    BadArguments,
    /// The scenario's Cedar tool policy denied it.
    Policy,
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
    /// Set when the agent failed: it could not be started, its transport
    /// failed, its output was malformed, or it timed out. Running out of
    /// turns is not an agent error (see `out_of_turns`).
    pub agent_error: Option<String>,
    /// Set when the harness failed (the scenario could not be set up, a
    /// sandbox could not start, a call failed for airlock's own reason);
    /// the scenario stops there.
    #[serde(default)]
    pub harness_error: Option<String>,
    /// The agent gave no final answer within the scenario's `max_turns`.
    #[serde(default)]
    pub out_of_turns: bool,
}
