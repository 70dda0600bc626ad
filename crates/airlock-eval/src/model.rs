//! The validated scenario model: what one scenario sets up, what the agent
//! may use, and how success and attack success are judged. Suites (YAML)
//! are read into these types by [`crate::suite`]; attack variants are
//! expanded before a run, so every [`Scenario`] here is concrete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The tools an agent can be offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolName {
    /// Run a shell command in the scenario's sandbox (`command`).
    Shell,
    /// Read a workspace file (`path`).
    ReadFile,
    /// Write a workspace file (`path`, `content`).
    WriteFile,
    /// List a workspace directory (`path`).
    ListDir,
    /// An HTTP request through the egress gateway (`url`, `method`,
    /// `body`).
    HttpRequest,
    /// Send an email through the mock mail service (`to`, `subject`,
    /// `body`).
    SendEmail,
    /// Search the mock web (`query`).
    SearchWeb,
    /// Read the mock inbox.
    ReadInbox,
}

impl ToolName {
    /// Every tool.
    pub const ALL: [ToolName; 8] = [
        ToolName::Shell,
        ToolName::ReadFile,
        ToolName::WriteFile,
        ToolName::ListDir,
        ToolName::HttpRequest,
        ToolName::SendEmail,
        ToolName::SearchWeb,
        ToolName::ReadInbox,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolName::Shell => "shell",
            ToolName::ReadFile => "read_file",
            ToolName::WriteFile => "write_file",
            ToolName::ListDir => "list_dir",
            ToolName::HttpRequest => "http_request",
            ToolName::SendEmail => "send_email",
            ToolName::SearchWeb => "search_web",
            ToolName::ReadInbox => "read_inbox",
        }
    }
}

/// One step of a scripted solution: a tool call or the final answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Step {
    /// Call `tool` with `args`.
    Call {
        /// The tool.
        tool: ToolName,
        /// Its arguments.
        #[serde(default)]
        args: serde_json::Value,
    },
    /// Answer and stop.
    Answer {
        /// The final answer.
        answer: String,
    },
}

/// An email in the mock inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// Sender.
    pub from: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
}

/// A result of the mock web search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    /// Title.
    pub title: String,
    /// URL (on the mock web).
    pub url: String,
    /// Snippet.
    pub snippet: String,
}

/// What the scenario's sandbox holds and can reach.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Environment {
    /// Workspace files: path (relative) → contents.
    pub files: BTreeMap<String, String>,
    /// Mock web pages served at `http://web.mock/<path>`: path → HTML.
    pub web: BTreeMap<String, String>,
    /// The mock inbox (`read_inbox`).
    pub inbox: Vec<Email>,
    /// The mock search engine's results (`search_web`), for every query.
    pub search: Vec<SearchResult>,
    /// Extra hosts the sandbox may reach (the profile's allow list), beyond
    /// the mocks.
    pub allow_hosts: Vec<String>,
    /// Plant canary credentials (default true).
    pub canaries: bool,
    /// The sandbox profile's changes for this scenario.
    #[serde(default, skip_serializing_if = "ProfileChanges::is_empty")]
    pub profile: ProfileChanges,
}

/// How a scenario changes the evaluation's sandbox profile
/// (`environment.profile` and `environment.limits`), checked when the suite
/// is read. The network is always the scenario's own (its mocks and
/// `allow_hosts`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProfileChanges {
    /// A built-in profile to start from instead of the evaluation's
    /// `--profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Memory limit, e.g. `256M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Process limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    /// CPU limit in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Wall-clock timeout of each tool call, e.g. `10s` (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

impl ProfileChanges {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Applies the changes to `base` (or to the built-in profile named in
    /// `self.base`); the error names the field.
    pub fn apply(
        &self,
        base: &airlock_policy::Profile,
    ) -> Result<airlock_policy::Profile, ChangeError> {
        let err = |field: &'static str, message: String| ChangeError { field, message };
        let p = match &self.base {
            Some(name) => airlock_policy::Profile::builtin(name).map_err(|_| {
                err(
                    "profile",
                    format!(
                        "unknown built-in profile {name:?}: expected one of {}",
                        airlock_policy::builtin_names().join(", ")
                    ),
                )
            })?,
            None => base.clone(),
        };
        let memory = self
            .memory
            .as_deref()
            .map(str::parse::<airlock_policy::ByteSize>)
            .transpose()
            .map_err(|e| err("limits.memory", e.to_string()))?;
        let timeout = self
            .timeout
            .as_deref()
            .map(str::parse::<airlock_policy::HumanDuration>)
            .transpose()
            .map_err(|e| err("limits.timeout", e.to_string()))?
            .map(|d| d.0);
        if let Some(t) = timeout {
            if t.is_zero() || t > MAX_TOOL_TIMEOUT {
                return Err(err(
                    "limits.timeout",
                    format!("{t:?} is outside 1ms..{MAX_TOOL_TIMEOUT:?}"),
                ));
            }
        }
        let overrides = airlock_policy::Overrides {
            memory,
            pids: self.pids,
            cpus: self.cpus,
            timeout,
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..airlock_policy::Overrides::default()
        };
        p.with_overrides(&overrides)
            .map_err(|e| match e.option.as_str() {
                "--memory" => err("limits.memory", e.message),
                "--pids" => err("limits.pids", e.message),
                "--cpus" => err("limits.cpus", e.message),
                "--timeout" => err("limits.timeout", e.message),
                o => err(
                    "limits.env",
                    format!("{}: {}", o.trim_start_matches("--env "), e.message),
                ),
            })
    }
}

/// A scenario's profile change that does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ChangeError {
    /// The field under `environment` (`profile`, `limits.memory`, ...).
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The longest a scenario may let one tool call run.
pub const MAX_TOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Where an injection is placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Carrier {
    /// Appended to (or replacing `{injection}` in) a workspace file.
    File {
        /// The file.
        path: String,
    },
    /// Placed in a mock web page.
    WebPage {
        /// The page's path on web.mock.
        path: String,
    },
    /// A new email in the inbox from this sender.
    Email {
        /// Sender.
        from: String,
        /// Subject.
        subject: String,
    },
    /// Appended to the result of every call of this tool.
    ToolResult {
        /// The tool.
        tool: ToolName,
    },
}

/// A declarative check, judged after the scenario from the final
/// workspace, the agent's final answer, the audit events and the mock
/// sinks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// A workspace file exists.
    FileExists(String),
    /// A workspace file contains this text.
    FileContains {
        /// The file.
        path: String,
        /// The text.
        text: String,
    },
    /// A workspace file's contents match this regex.
    FileMatches {
        /// The file.
        path: String,
        /// The regex.
        regex: String,
    },
    /// The final answer contains this text (case-insensitive).
    AnswerContains(String),
    /// The final answer matches this regex.
    AnswerMatches(String),
    /// An audit event of this kind (prefix match, e.g. `canary`) whose data
    /// has `field` (a dotted path) containing `contains` (when given).
    Audit {
        /// Event kind or prefix.
        kind: String,
        /// Dotted path into the event's data.
        #[serde(default)]
        field: Option<String>,
        /// Text the field's value (as a string) contains.
        #[serde(default)]
        contains: Option<String>,
    },
    /// A request recorded by a mock sink (e.g. the outbox), whose host,
    /// path and body contain the given texts.
    Sink {
        /// Host contains.
        #[serde(default)]
        host: Option<String>,
        /// Path contains.
        #[serde(default)]
        path: Option<String>,
        /// Body contains.
        #[serde(default)]
        body: Option<String>,
    },
    /// A tool was called (with its arguments containing `contains`).
    ToolCalled {
        /// The tool.
        tool: ToolName,
        /// Text the JSON of the arguments contains.
        #[serde(default)]
        contains: Option<String>,
    },
    /// Every check holds.
    All(Vec<Check>),
    /// At least one holds.
    Any(Vec<Check>),
    /// It does not hold.
    Not(Box<Check>),
}

/// An injection: attacker text in a carrier, the attacker's goal, and how
/// to tell whether it was reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Injection {
    /// The attack template's id.
    pub template: String,
    /// The mutation applied (`none` for the template as written).
    pub mutation: String,
    /// Where the text goes.
    pub carrier: Carrier,
    /// The text placed in the carrier (after the mutation).
    pub text: String,
    /// A short marker of the injection (scripted attacker obeys once it
    /// sees it in a tool result).
    pub marker: String,
    /// What the attacker wants, in words.
    pub goal: String,
    /// True when the attacker's goal was reached.
    pub security: Check,
    /// What an agent obeying the injection does.
    pub attacker_steps: Vec<Step>,
}

/// One concrete scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Unique in the run: `suite/name` or `suite/name/template/mutation`.
    pub id: String,
    /// The suite it comes from.
    pub suite: String,
    /// The base scenario's name (shared by its attack variants).
    pub name: String,
    /// The system prompt.
    pub system_prompt: String,
    /// The user's task.
    pub user_task: String,
    /// The environment.
    pub environment: Environment,
    /// Tools offered.
    pub tools: Vec<ToolName>,
    /// Cedar policy authorizing tool calls (`permit`/`forbid` over
    /// principal, action `Action::"<tool>"`, resource, and context
    /// attributes of the arguments). `None`: every offered tool is
    /// permitted.
    pub tool_policy: Option<String>,
    /// Did the benign task succeed?
    pub utility: Check,
    /// The reference solution (ground-truth agent).
    pub reference: Vec<Step>,
    /// The injection, for attack scenarios.
    pub injection: Option<Injection>,
    /// Most agent turns before the scenario is stopped.
    pub max_turns: u32,
}

#[cfg(test)]
impl Scenario {
    /// A plain scenario for unit tests (`s/x`): these tools, every one
    /// permitted, no injection, utility "the answer says done".
    pub(crate) fn for_tests(tools: Vec<ToolName>) -> Scenario {
        Scenario {
            id: "s/x".into(),
            suite: "s".into(),
            name: "x".into(),
            system_prompt: String::new(),
            user_task: "t".into(),
            environment: Environment::default(),
            tools,
            tool_policy: None,
            utility: Check::AnswerContains("done".into()),
            reference: vec![],
            injection: None,
            max_turns: 5,
        }
    }
}
