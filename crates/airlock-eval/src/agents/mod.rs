//! Agent adapters: what `--agent SPEC` names and how each kind becomes an
//! [`Agent`] for one scenario.
//!
//! - `openai:URL#MODEL`: an OpenAI-compatible Chat Completions endpoint
//!   with tool calling (OpenAI, vLLM, llama.cpp server, Ollama).
//! - `cmd:PATH`: a local program speaking the JSON-lines protocol of
//!   `docs/eval-agents.md` on its stdin and stdout.
//! - `ground-truth`, `attacker`, `refuser`: scripted agents that need no
//!   model, so the harness is testable end to end.
//!
//! An [`AgentSpec`] is plain data (parsed once, shared by every worker);
//! [`AgentSpec::instantiate`] makes a fresh agent for each scenario.

mod cmd;
mod openai;
mod scripted;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::protocol::{Agent, AgentError, Script};

use cmd::CmdAgent;
use openai::OpenAiAgent;
use scripted::{AttackerAgent, GroundTruthAgent, RefuserAgent};

pub use scripted::REFUSAL;

/// Which agent to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentKind {
    /// An OpenAI-compatible Chat Completions endpoint.
    OpenAi {
        /// The API base, e.g. `https://api.openai.com/v1` (no trailing
        /// slash; `/chat/completions` is appended).
        base_url: String,
        /// The model name sent in every request.
        model: String,
    },
    /// A local program speaking the JSON-lines protocol.
    Cmd {
        /// The program (a path, or a name looked up in `PATH`).
        program: PathBuf,
    },
    /// Replays each scenario's reference solution.
    GroundTruth,
    /// Replays the reference but obeys every injection it sees.
    Attacker,
    /// Refuses at once and calls no tools.
    Refuser,
}

/// Settings of the model and command adapters (the scripted agents ignore
/// them).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentOptions {
    /// The environment variable holding the API key (`openai:`), read when
    /// an agent is made. Unset or empty: no `Authorization` header is sent
    /// (fine for local endpoints).
    pub api_key_env: String,
    /// How long one request (`openai:`) or one turn (`cmd:`) may take.
    pub timeout: Duration,
    /// Retries after the first attempt (`openai:`), on connect errors,
    /// timeouts, 429 and 5xx.
    pub retries: u32,
    /// The first backoff delay; it doubles each retry.
    pub backoff_base: Duration,
    /// The longest backoff delay.
    pub backoff_cap: Duration,
    /// The longest wait a `Retry-After` header can ask for.
    pub retry_after_cap: Duration,
    /// `max_tokens` sent to the endpoint, if any.
    pub max_tokens: Option<u32>,
    /// `temperature` sent to the endpoint (`None`: not sent, for models
    /// that accept only their default).
    pub temperature: Option<f64>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            api_key_env: "OPENAI_API_KEY".to_owned(),
            timeout: Duration::from_secs(120),
            retries: 3,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(8),
            retry_after_cap: Duration::from_secs(60),
            max_tokens: None,
            temperature: Some(0.0),
        }
    }
}

/// An agent specification: the kind (from `--agent`) and its options.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    /// Which agent.
    pub kind: AgentKind,
    /// Its settings.
    pub options: AgentOptions,
}

/// An `--agent` value that names no agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The value is empty.
    #[error("agent spec is empty; expected openai:URL#MODEL, cmd:PATH, ground-truth, attacker or refuser")]
    Empty,
    /// `openai:` without `#MODEL`.
    #[error("agent spec `{0}` has no model; expected openai:URL#MODEL")]
    MissingModel(String),
    /// `openai:` with a URL that is not http(s).
    #[error("agent spec `{0}` has no http:// or https:// URL; expected openai:URL#MODEL")]
    BadUrl(String),
    /// `cmd:` without a path.
    #[error("agent spec `{0}` has no program; expected cmd:PATH")]
    MissingProgram(String),
    /// Anything else.
    #[error("unknown agent `{0}`; expected openai:URL#MODEL, cmd:PATH, ground-truth, attacker or refuser")]
    Unknown(String),
}

impl FromStr for AgentSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        Ok(AgentSpec {
            kind: s.parse()?,
            options: AgentOptions::default(),
        })
    }
}

impl FromStr for AgentKind {
    type Err = SpecError;

    fn from_str(raw: &str) -> Result<Self, SpecError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(SpecError::Empty);
        }
        if let Some(rest) = s.strip_prefix("openai:") {
            let (url, model) = rest
                .rsplit_once('#')
                .ok_or_else(|| SpecError::MissingModel(s.to_owned()))?;
            let model = model.trim();
            if model.is_empty() {
                return Err(SpecError::MissingModel(s.to_owned()));
            }
            let url = url.trim().trim_end_matches('/');
            let host = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
                return Err(SpecError::BadUrl(s.to_owned()));
            }
            return Ok(AgentKind::OpenAi {
                base_url: url.to_owned(),
                model: model.to_owned(),
            });
        }
        if let Some(path) = s.strip_prefix("cmd:") {
            if path.trim().is_empty() {
                return Err(SpecError::MissingProgram(s.to_owned()));
            }
            return Ok(AgentKind::Cmd {
                program: PathBuf::from(path),
            });
        }
        match s {
            "ground-truth" => Ok(AgentKind::GroundTruth),
            "attacker" => Ok(AgentKind::Attacker),
            "refuser" => Ok(AgentKind::Refuser),
            _ => Err(SpecError::Unknown(s.to_owned())),
        }
    }
}

impl fmt::Display for AgentKind {
    /// The spec as it would be written on the command line, with any
    /// `user:password@` of the URL left out (for reports and logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentKind::OpenAi { base_url, model } => {
                write!(f, "openai:{}#{model}", redact_userinfo(base_url))
            }
            AgentKind::Cmd { program } => write!(f, "cmd:{}", program.display()),
            AgentKind::GroundTruth => f.write_str("ground-truth"),
            AgentKind::Attacker => f.write_str("attacker"),
            AgentKind::Refuser => f.write_str("refuser"),
        }
    }
}

impl fmt::Display for AgentSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl AgentSpec {
    /// A spec of this kind with default options.
    pub fn new(kind: AgentKind) -> Self {
        AgentSpec {
            kind,
            options: AgentOptions::default(),
        }
    }

    /// The same spec with these options.
    pub fn with_options(mut self, options: AgentOptions) -> Self {
        self.options = options;
        self
    }

    /// True for the built-in scripted agents (deterministic, no tokens).
    pub fn is_scripted(&self) -> bool {
        matches!(
            self.kind,
            AgentKind::GroundTruth | AgentKind::Attacker | AgentKind::Refuser
        )
    }

    /// A fresh agent for one scenario. `cmd:` starts its program here (it
    /// is killed when the agent is dropped); `openai:` reads its API key
    /// here.
    pub fn instantiate(&self, script: &Script) -> Result<Box<dyn Agent>, AgentError> {
        Ok(match &self.kind {
            AgentKind::OpenAi { base_url, model } => {
                Box::new(OpenAiAgent::new(base_url, model, &self.options))
            }
            AgentKind::Cmd { program } => Box::new(CmdAgent::spawn(program, &self.options)?),
            AgentKind::GroundTruth => Box::new(GroundTruthAgent::new(script)),
            AgentKind::Attacker => Box::new(AttackerAgent::new(script)),
            AgentKind::Refuser => Box::new(RefuserAgent),
        })
    }
}

/// `scheme://user:pass@host/...` → `scheme://host/...`.
fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Result<AgentKind, SpecError> {
        s.parse()
    }

    #[test]
    fn parses_openai_specs() {
        assert_eq!(
            kind("openai:http://127.0.0.1:8000/v1#llama3").unwrap(),
            AgentKind::OpenAi {
                base_url: "http://127.0.0.1:8000/v1".into(),
                model: "llama3".into()
            }
        );
        assert_eq!(
            kind("openai:https://api.openai.com/v1/#gpt-4o-mini").unwrap(),
            AgentKind::OpenAi {
                base_url: "https://api.openai.com/v1".into(),
                model: "gpt-4o-mini".into()
            }
        );
        // A model name may hold ':' and '/' (Ollama, vLLM).
        assert_eq!(
            kind("openai:http://localhost:11434/v1#qwen2.5:7b").unwrap(),
            AgentKind::OpenAi {
                base_url: "http://localhost:11434/v1".into(),
                model: "qwen2.5:7b".into()
            }
        );
    }

    #[test]
    fn parses_other_specs() {
        assert_eq!(
            kind("cmd:./my-agent.py").unwrap(),
            AgentKind::Cmd {
                program: "./my-agent.py".into()
            }
        );
        assert_eq!(kind("ground-truth").unwrap(), AgentKind::GroundTruth);
        assert_eq!(kind(" attacker ").unwrap(), AgentKind::Attacker);
        assert_eq!(kind("refuser").unwrap(), AgentKind::Refuser);
        let spec: AgentSpec = "refuser".parse().unwrap();
        assert_eq!(spec.options, AgentOptions::default());
        assert!(spec.is_scripted());
    }

    #[test]
    fn rejects_bad_specs() {
        assert_eq!(kind(""), Err(SpecError::Empty));
        assert!(matches!(
            kind("openai:http://x/v1"),
            Err(SpecError::MissingModel(_))
        ));
        assert!(matches!(
            kind("openai:http://x/v1#"),
            Err(SpecError::MissingModel(_))
        ));
        assert!(matches!(
            kind("openai:ftp://x#m"),
            Err(SpecError::BadUrl(_))
        ));
        assert!(matches!(
            kind("openai:http://#m"),
            Err(SpecError::BadUrl(_))
        ));
        assert!(matches!(kind("cmd:"), Err(SpecError::MissingProgram(_))));
        let err = kind("gpt-4").unwrap_err();
        assert!(matches!(err, SpecError::Unknown(_)));
        assert_eq!(
            err.to_string(),
            "unknown agent `gpt-4`; expected openai:URL#MODEL, cmd:PATH, ground-truth, attacker or refuser"
        );
    }

    #[test]
    fn display_round_trips_and_hides_userinfo() {
        for s in [
            "openai:http://127.0.0.1:8000/v1#llama3",
            "cmd:/usr/local/bin/agent",
            "ground-truth",
            "attacker",
            "refuser",
        ] {
            assert_eq!(kind(s).unwrap().to_string(), s);
        }
        assert_eq!(
            kind("openai:https://me:secret@host.example/v1#m")
                .unwrap()
                .to_string(),
            "openai:https://host.example/v1#m"
        );
    }

    #[test]
    fn scripted_specs_instantiate() {
        let script = Script::default();
        for s in ["ground-truth", "attacker", "refuser"] {
            let spec: AgentSpec = s.parse().unwrap();
            assert!(spec.instantiate(&script).is_ok());
        }
    }
}
