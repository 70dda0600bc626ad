//! The agent protocol: what an agent sees (a conversation and the tools it
//! may call) and what it answers (tool calls or a final answer). Every
//! adapter (OpenAI-compatible endpoint, local command, scripted agents)
//! implements [`Agent`].

use serde::{Deserialize, Serialize};

/// A tool offered to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The tool's name (`shell`, `read_file`, ...).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments (an object schema).
    pub parameters: serde_json::Value,
}

/// A tool call the agent asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id (echoed in the result).
    pub id: String,
    /// The tool.
    pub name: String,
    /// Its arguments (a JSON object).
    pub arguments: serde_json::Value,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    /// The scenario's system prompt.
    System {
        /// Text.
        content: String,
    },
    /// The user's task.
    User {
        /// Text.
        content: String,
    },
    /// What the agent said: text and/or tool calls.
    Assistant {
        /// Text, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        /// Tool calls, if any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of a tool call (an error is a result too).
    Tool {
        /// The call's id.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The result text.
        content: String,
        /// Set when the call was refused or failed.
        #[serde(default)]
        is_error: bool,
    },
}

/// What the agent does next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Call these tools (in order).
    ToolCalls {
        /// The calls.
        calls: Vec<ToolCall>,
        /// Text said alongside, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
    },
    /// The final answer; the scenario ends.
    Final {
        /// The answer.
        answer: String,
    },
}

/// Tokens one turn used (0 when the agent is not a model).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
    }
}

/// One turn's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// What to do.
    pub action: Action,
    /// Tokens used.
    pub usage: Usage,
}

/// What a scripted agent may know about the scenario (model adapters
/// ignore it): the reference solution and the attacker's steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    /// The benign task's reference solution.
    pub reference: Vec<crate::model::Step>,
    /// What an agent obeying the injection does (empty without one).
    pub attacker: Vec<crate::model::Step>,
    /// A marker of the injected text: the attacker agent obeys once a tool
    /// result contains it.
    pub injection_marker: Option<String>,
}

/// An agent failed (the scenario is recorded as an agent error).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The endpoint or command failed after its retries.
    #[error("agent transport: {0}")]
    Transport(String),
    /// It answered something that is not a valid turn.
    #[error("agent answered malformed output: {0}")]
    Malformed(String),
    /// It took longer than allowed.
    #[error("agent timed out after {0:?}")]
    Timeout(std::time::Duration),
}

/// An agent. One instance serves one scenario (the harness makes a fresh
/// one per scenario through its factory).
pub trait Agent: Send {
    /// The next turn, given the conversation so far and the tools offered.
    fn next(&mut self, conversation: &[Message], tools: &[ToolSpec]) -> Result<Turn, AgentError>;
}
