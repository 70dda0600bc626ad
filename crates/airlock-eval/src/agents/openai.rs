//! The `openai:URL#MODEL` adapter: one Chat Completions request per turn
//! (`POST {URL}/chat/completions`, tool calling with `tool_choice: auto`),
//! over a blocking HTTP client (ureq, rustls with ring and the webpki
//! root store), with a timeout per attempt and retries with exponential
//! backoff and jitter on connect errors, timeouts, 429 and 5xx.
//!
//! The API key is read from the configured environment variable when the
//! agent is made, and is sent only as `Authorization: Bearer ...`: it is
//! never logged, nor shown by `Debug`, nor put in an error.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::AgentOptions;
use crate::protocol::{Action, Agent, AgentError, Message, ToolCall, ToolSpec, Turn, Usage};

/// The largest response body read.
const MAX_BODY: u64 = 16 << 20;
/// How much of a bad body goes into an error message.
const SNIPPET: usize = 200;

/// An agent backed by an OpenAI-compatible Chat Completions endpoint.
pub(super) struct OpenAiAgent {
    http: ureq::Agent,
    /// `{base}/chat/completions`.
    url: String,
    /// The URL without user info, for messages.
    shown_url: String,
    model: String,
    api_key: Option<String>,
    options: AgentOptions,
    /// Turns so far (names generated call ids).
    turns: u32,
}

impl fmt::Debug for OpenAiAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiAgent")
            .field("url", &self.shown_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Why one attempt failed.
enum Failure {
    /// No answer within the timeout.
    Timeout,
    /// Worth another try (connection failed, 429, 5xx); with the server's
    /// `Retry-After`, if any.
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    /// Final.
    Fatal(AgentError),
}

impl OpenAiAgent {
    pub(super) fn new(base_url: &str, model: &str, options: &AgentOptions) -> Self {
        let api_key = std::env::var(&options.api_key_env)
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty());
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(options.timeout))
            .user_agent(concat!("airlock-eval/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        OpenAiAgent {
            http,
            shown_url: super::redact_userinfo(&url),
            url,
            model: model.to_owned(),
            api_key,
            options: options.clone(),
            turns: 0,
        }
    }

    /// The request body for this conversation.
    fn request_body(&self, conversation: &[Message], tools: &[ToolSpec]) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert(
            "messages".into(),
            conversation.iter().map(wire_message).collect(),
        );
        if !tools.is_empty() {
            body.insert(
                "tools".into(),
                tools
                    .iter()
                    .map(|t| {
                        json!({
                            "type": "function",
                            "function": {
                                "name": t.name,
                                "description": t.description,
                                "parameters": t.parameters,
                            }
                        })
                    })
                    .collect(),
            );
            body.insert("tool_choice".into(), json!("auto"));
        }
        if let Some(t) = self.options.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(m) = self.options.max_tokens {
            body.insert("max_tokens".into(), json!(m));
        }
        Value::Object(body)
    }

    /// POSTs `body`, retrying as configured; the body of the 2xx answer.
    fn post(&self, body: &[u8]) -> Result<String, AgentError> {
        let attempts = self.options.retries.saturating_add(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (why, retry_after) = match self.post_once(body) {
                Ok(text) => return Ok(text),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Timeout) if attempt >= attempts => {
                    return Err(AgentError::Timeout(self.options.timeout))
                }
                Err(Failure::Timeout) => {
                    (format!("no answer within {:?}", self.options.timeout), None)
                }
                Err(Failure::Retry { why, .. }) if attempt >= attempts => {
                    return Err(AgentError::Transport(format!(
                        "{}: {why} (after {attempts} attempts)",
                        self.shown_url
                    )))
                }
                Err(Failure::Retry { why, retry_after }) => (why, retry_after),
            };
            let delay = match retry_after {
                Some(d) => d.min(self.options.retry_after_cap),
                None => backoff(&self.options, attempt - 1),
            };
            tracing::warn!(
                url = %self.shown_url,
                attempt,
                attempts,
                delay_ms = delay.as_millis() as u64,
                "chat completion failed, retrying: {why}"
            );
            std::thread::sleep(delay);
        }
    }

    /// One attempt.
    fn post_once(&self, body: &[u8]) -> Result<String, Failure> {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        tracing::debug!(url = %self.shown_url, model = %self.model, bytes = body.len(), "chat completion request");
        let mut resp = match req.send(body) {
            Ok(r) => r,
            Err(e) => return Err(classify(e)),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(classify)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match status {
            200..=299 => Ok(text),
            429 | 500..=599 => Err(Failure::Retry {
                why: format!("http {status}: {}", snippet(&text)),
                retry_after,
            }),
            _ => Err(Failure::Fatal(AgentError::Transport(format!(
                "{} answered http {status}: {}",
                self.shown_url,
                snippet(&text)
            )))),
        }
    }
}

impl Agent for OpenAiAgent {
    fn next(&mut self, conversation: &[Message], tools: &[ToolSpec]) -> Result<Turn, AgentError> {
        self.turns += 1;
        let body = serde_json::to_vec(&self.request_body(conversation, tools))
            .map_err(|e| AgentError::Malformed(format!("request does not serialize: {e}")))?;
        let text = self.post(&body)?;
        parse_response(&text, self.turns)
    }
}

/// Sorts a client error into timeout, retryable or final.
fn classify(e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Timeout(_) => Failure::Timeout,
        ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => Failure::Timeout,
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Io(_) => {
            Failure::Retry {
                why: e.to_string(),
                retry_after: None,
            }
        }
        ureq::Error::BodyExceedsLimit(n) => Failure::Fatal(AgentError::Malformed(format!(
            "response body exceeds {n} bytes"
        ))),
        other => Failure::Fatal(AgentError::Transport(other.to_string())),
    }
}

/// The delay before retry number `n + 1`: `base * 2^n`, capped, with
/// jitter (uniform in the upper half).
fn backoff(options: &AgentOptions, n: u32) -> Duration {
    let full = options
        .backoff_base
        .saturating_mul(1u32 << n.min(16))
        .min(options.backoff_cap);
    let half = full / 2;
    half + half.mul_f64(unit_random())
}

/// A random number in [0, 1), from std's randomly keyed hasher (no RNG
/// dependency; jitter needs no quality).
fn unit_random() -> f64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Our message in OpenAI's shape.
fn wire_message(m: &Message) -> Value {
    match m {
        Message::System { content } => json!({"role": "system", "content": content}),
        Message::User { content } => json!({"role": "user", "content": content}),
        Message::Assistant {
            content,
            tool_calls,
        } => {
            let mut o = Map::new();
            o.insert("role".into(), json!("assistant"));
            if tool_calls.is_empty() {
                o.insert("content".into(), json!(content.as_deref().unwrap_or("")));
            } else {
                o.insert("content".into(), json!(content));
                o.insert(
                    "tool_calls".into(),
                    tool_calls
                        .iter()
                        .map(|c| {
                            json!({
                                "id": c.id,
                                "type": "function",
                                "function": {
                                    "name": c.name,
                                    "arguments": c.arguments.to_string(),
                                }
                            })
                        })
                        .collect(),
                );
            }
            Value::Object(o)
        }
        Message::Tool {
            call_id,
            content,
            is_error,
            ..
        } => {
            let content = if *is_error {
                format!("error: {content}")
            } else {
                content.clone()
            };
            json!({"role": "tool", "tool_call_id": call_id, "content": content})
        }
    }
}

/// A response body → the turn. `turn` numbers ids for calls the server
/// sent without one.
fn parse_response(text: &str, turn: u32) -> Result<Turn, AgentError> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        AgentError::Malformed(format!("response is not json ({e}): {}", snippet(text)))
    })?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(AgentError::Malformed(format!(
            "response is an error: {}",
            snippet(&err.to_string())
        )));
    }
    let msg = v
        .pointer("/choices/0/message")
        .filter(|m| m.is_object())
        .ok_or_else(|| {
            AgentError::Malformed(format!(
                "response has no choices[0].message: {}",
                snippet(text)
            ))
        })?;
    let usage = Usage {
        prompt_tokens: v
            .pointer("/usage/prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        completion_tokens: v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    };
    let content = match msg.get("content") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(AgentError::Malformed(format!(
                "message content is not a string: {}",
                snippet(&other.to_string())
            )))
        }
    };
    let wire_calls = match msg.get("tool_calls") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => {
            return Err(AgentError::Malformed(
                "message tool_calls is not an array".into(),
            ))
        }
    };
    if wire_calls.is_empty() {
        return Ok(Turn {
            action: Action::Final {
                answer: content.unwrap_or_default(),
            },
            usage,
        });
    }
    let calls = wire_calls
        .iter()
        .enumerate()
        .map(|(i, c)| parse_call(c, turn, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Turn {
        action: Action::ToolCalls {
            calls,
            content: content.filter(|c| !c.trim().is_empty()),
        },
        usage,
    })
}

/// One `tool_calls[i]` entry.
fn parse_call(c: &Value, turn: u32, i: usize) -> Result<ToolCall, AgentError> {
    let name = c
        .pointer("/function/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| AgentError::Malformed(format!("tool call {i} has no function name")))?
        .to_owned();
    let id = c
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or_else(|| format!("call-{turn}-{}", i + 1), str::to_owned);
    let arguments = match c.pointer("/function/arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
            AgentError::Malformed(format!(
                "tool call `{name}` has arguments that are not json ({e}): {}",
                snippet(s)
            ))
        })?,
        // Some servers send the object itself rather than its JSON text.
        Some(v) => v.clone(),
    };
    if !arguments.is_object() {
        return Err(AgentError::Malformed(format!(
            "tool call `{name}` has arguments that are not a json object: {}",
            snippet(&arguments.to_string())
        )));
    }
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

/// The start of `s`, for error messages.
fn snippet(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(SNIPPET) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_messages() {
        let call = ToolCall {
            id: "c1".into(),
            name: "shell".into(),
            arguments: json!({"command": "ls"}),
        };
        assert_eq!(
            wire_message(&Message::Assistant {
                content: None,
                tool_calls: vec![call]
            }),
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "shell", "arguments": "{\"command\":\"ls\"}"}}]})
        );
        assert_eq!(
            wire_message(&Message::Assistant {
                content: None,
                tool_calls: vec![]
            }),
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(
            wire_message(&Message::Tool {
                call_id: "c1".into(),
                name: "shell".into(),
                content: "denied by policy".into(),
                is_error: true
            }),
            json!({"role": "tool", "tool_call_id": "c1", "content": "error: denied by policy"})
        );
    }

    #[test]
    fn parses_calls_leniently() {
        let body = json!({"choices": [{"message": {"role": "assistant", "content": "",
        "tool_calls": [
            {"function": {"name": "list_dir", "arguments": ""}},
            {"id": "x", "function": {"name": "read_file", "arguments": {"path": "a"}}}
        ]}}]});
        let t = parse_response(&body.to_string(), 7).unwrap();
        assert_eq!(t.usage, Usage::default());
        let Action::ToolCalls { calls, content } = t.action else {
            panic!("not calls")
        };
        assert_eq!(content, None);
        assert_eq!(calls[0].id, "call-7-1");
        assert_eq!(calls[0].arguments, json!({}));
        assert_eq!(calls[1].id, "x");
        assert_eq!(calls[1].arguments, json!({"path": "a"}));
    }

    #[test]
    fn rejects_bad_responses() {
        for (body, needle) in [
            ("<html>", "not json"),
            ("{}", "no choices[0].message"),
            (r#"{"error": {"message": "bad"}}"#, "is an error"),
            (
                r#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"shell","arguments":"[1]"}}]}}]}"#,
                "`shell` has arguments that are not a json object",
            ),
            (
                r#"{"choices":[{"message":{"tool_calls":[{"function":{"arguments":"{}"}}]}}]}"#,
                "no function name",
            ),
        ] {
            match parse_response(body, 1) {
                Err(AgentError::Malformed(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let o = AgentOptions::default();
        for _ in 0..20 {
            let d0 = backoff(&o, 0);
            assert!(d0 >= Duration::from_millis(250) && d0 <= Duration::from_millis(500));
            let d3 = backoff(&o, 3);
            assert!(d3 >= Duration::from_secs(2) && d3 <= Duration::from_secs(4));
            let d9 = backoff(&o, 9);
            assert!(d9 >= Duration::from_secs(4) && d9 <= Duration::from_secs(8));
        }
        assert!(backoff(&o, u32::MAX) <= o.backoff_cap);
    }

    #[test]
    fn debug_hides_the_key() {
        let mut a = OpenAiAgent::new("http://x/v1", "m", &AgentOptions::default());
        a.api_key = Some("sk-secret".into());
        let d = format!("{a:?}");
        assert!(!d.contains("sk-secret"));
        assert!(d.contains("<redacted>"));
    }
}
