//! The `cmd:PATH` adapter: a local program speaking JSON lines on its
//! stdin and stdout (the protocol is in `docs/eval-agents.md`).
//!
//! The program is started once per scenario, in its own process group.
//! Each turn the harness writes one line (`start` on the first turn,
//! `tool_results` after) and reads one reply line (`tool_calls` or
//! `final`) within the turn's timeout. Its stderr is kept in a bounded
//! buffer (the tail goes into errors) and logged at debug level. On a
//! timeout, and when the agent is dropped, the whole process group is
//! killed and the program reaped, so nothing outlives the scenario.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use serde::Deserialize;
use serde_json::{json, Value};

use super::AgentOptions;
use crate::protocol::{Action, Agent, AgentError, Message, ToolCall, ToolSpec, Turn, Usage};

/// The longest reply line read.
const MAX_LINE: u64 = 16 << 20;
/// How much of the program's stderr is kept (its tail).
const STDERR_TAIL: usize = 4096;
/// How long a program that closed its stdout gets to exit before it is
/// killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// What the stdout reader thread sends.
enum Read1 {
    /// A line (1-based number, text without the newline).
    Line(u64, String),
    /// A line longer than [`MAX_LINE`].
    TooLong(u64),
    /// Stdout closed.
    Eof,
    /// Reading failed.
    Failed(String),
}

/// A reply line.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Reply {
    ToolCalls {
        calls: Vec<WireCall>,
        #[serde(default)]
        content: Option<String>,
        #[serde(default)]
        usage: WireUsage,
    },
    Final {
        answer: String,
        #[serde(default)]
        usage: WireUsage,
    },
}

#[derive(Deserialize)]
struct WireCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// An agent that is a local program.
#[derive(Debug)]
pub(super) struct CmdAgent {
    program: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Read1>,
    stderr: Arc<Mutex<Vec<u8>>>,
    timeout: Duration,
    /// The `start` line was written.
    started: bool,
    /// Messages of the conversation already passed on.
    seen: usize,
    /// Calls whose id the program left out (numbers generated ids).
    unnamed_calls: u32,
    /// Set once the program was reaped: why it is gone.
    gone: Option<String>,
}

impl CmdAgent {
    /// Starts the program.
    pub(super) fn spawn(program: &Path, options: &AgentOptions) -> Result<Self, AgentError> {
        use std::os::unix::process::CommandExt;

        let mut child = Command::new(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                AgentError::Transport(format!(
                    "cannot start agent program `{}`: {e}",
                    program.display()
                ))
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("agent-stdout".into())
            .spawn(move || read_lines(stdout, &tx))
            .map_err(|e| AgentError::Transport(format!("cannot start a reader thread: {e}")))?;
        let tail = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&tail);
        std::thread::Builder::new()
            .name("agent-stderr".into())
            .spawn(move || keep_stderr(stderr, &sink))
            .map_err(|e| AgentError::Transport(format!("cannot start a reader thread: {e}")))?;
        tracing::debug!(program = %program.display(), pid = child.id(), "agent program started");
        Ok(CmdAgent {
            program: program.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: tail,
            timeout: options.timeout,
            started: false,
            seen: 0,
            unnamed_calls: 0,
            gone: None,
        })
    }

    /// The lines to write this turn.
    fn outgoing(&mut self, conversation: &[Message], tools: &[ToolSpec]) -> Value {
        let new = conversation.get(self.seen..).unwrap_or_default();
        self.seen = conversation.len();
        if !self.started {
            self.started = true;
            let join = |pick: fn(&Message) -> Option<&str>| {
                new.iter().filter_map(pick).collect::<Vec<_>>().join("\n\n")
            };
            return json!({
                "type": "start",
                "system": join(|m| match m {
                    Message::System { content } => Some(content),
                    _ => None,
                }),
                "task": join(|m| match m {
                    Message::User { content } => Some(content),
                    _ => None,
                }),
                "tools": tools,
            });
        }
        let mut results = Vec::new();
        let mut observations = Vec::new();
        for m in new {
            match m {
                Message::Tool {
                    call_id,
                    name,
                    content,
                    is_error,
                } => results.push(json!({
                    "call_id": call_id,
                    "name": name,
                    "content": content,
                    "is_error": is_error,
                })),
                Message::User { content } | Message::System { content } => {
                    observations.push(content.clone());
                }
                Message::Assistant { .. } => {}
            }
        }
        let mut line = json!({"type": "tool_results", "results": results});
        if !observations.is_empty() {
            line["observations"] = json!(observations);
        }
        line
    }

    /// Waits for the next non-blank reply line.
    fn read_reply(&mut self) -> Result<(u64, String), AgentError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Read1::Line(_, text)) if text.trim().is_empty() => continue,
                Ok(Read1::Line(n, text)) => return Ok((n, text)),
                Ok(Read1::TooLong(n)) => {
                    self.terminate("it answered a line that was too long");
                    return Err(AgentError::Malformed(format!(
                        "agent program `{}` line {n}: longer than {MAX_LINE} bytes",
                        self.program.display()
                    )));
                }
                Ok(Read1::Failed(e)) => {
                    self.terminate("its output could not be read");
                    return Err(AgentError::Transport(format!(
                        "cannot read the output of agent program `{}`: {e}",
                        self.program.display()
                    )));
                }
                Ok(Read1::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.exited_early())
                }
                Err(RecvTimeoutError::Timeout) => {
                    let why = format!("it did not answer within {:?}", self.timeout);
                    self.terminate(&why);
                    tracing::warn!(program = %self.program.display(), "agent program killed: {why}");
                    return Err(AgentError::Timeout(self.timeout));
                }
            }
        }
    }

    /// The program closed its output (or broke the pipe) before answering:
    /// give it a moment to exit, reap it, and name its exit status.
    fn exited_early(&mut self) -> AgentError {
        if self.gone.is_none() {
            let deadline = Instant::now() + EXIT_GRACE;
            let pid = Pid::from_child(&self.child);
            let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
            while Instant::now() < deadline {
                match rustix::process::waitid(WaitId::Pid(pid), opts) {
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    _ => break,
                }
            }
        }
        let status = self.terminate("it exited before answering");
        let status = status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string());
        AgentError::Transport(format!(
            "agent program `{}` exited before answering ({status}){}",
            self.program.display(),
            self.stderr_note()
        ))
    }

    /// Kills the program's process group (while the program is not yet
    /// reaped, so its pid names our group) and reaps it; idempotent.
    fn terminate(&mut self, why: &str) -> Option<ExitStatus> {
        if self.gone.is_some() {
            return self.child.try_wait().ok().flatten();
        }
        drop(self.stdin.take());
        let _ = rustix::process::kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        let status = self.child.wait().ok();
        self.gone = Some(why.to_owned());
        status
    }

    /// `; stderr: ...` with the tail of its stderr, if any.
    fn stderr_note(&self) -> String {
        // Give the stderr thread a moment to drain what the program wrote
        // last.
        std::thread::sleep(Duration::from_millis(20));
        let tail = self.stderr.lock().map(|t| t.clone()).unwrap_or_default();
        let tail = String::from_utf8_lossy(&tail);
        let tail = tail.trim();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; stderr: {tail}")
        }
    }

    /// A reply line → the turn.
    fn parse(&mut self, n: u64, line: &str) -> Result<Turn, AgentError> {
        let bad = |why: String| {
            AgentError::Malformed(format!(
                "agent program `{}` line {n}: {why}",
                self.program.display()
            ))
        };
        let reply: Reply = serde_json::from_str(line)
            .map_err(|e| bad(format!("not a valid reply ({e}): {}", snippet(line))))?;
        Ok(match reply {
            Reply::Final { answer, usage } => Turn {
                action: Action::Final { answer },
                usage: usage.into(),
            },
            Reply::ToolCalls {
                calls,
                content,
                usage,
            } => {
                if calls.is_empty() {
                    return Err(bad("tool_calls with no calls".into()));
                }
                let mut out = Vec::with_capacity(calls.len());
                for c in calls {
                    let arguments = match c.arguments {
                        Value::Null => Value::Object(Default::default()),
                        v @ Value::Object(_) => v,
                        _ => {
                            return Err(bad(format!(
                                "tool call `{}` has arguments that are not a json object",
                                c.name
                            )))
                        }
                    };
                    let id = match c.id.filter(|id| !id.is_empty()) {
                        Some(id) => id,
                        None => {
                            self.unnamed_calls += 1;
                            format!("call-{}", self.unnamed_calls)
                        }
                    };
                    out.push(ToolCall {
                        id,
                        name: c.name,
                        arguments,
                    });
                }
                Turn {
                    action: Action::ToolCalls {
                        calls: out,
                        content: content.filter(|c| !c.trim().is_empty()),
                    },
                    usage: usage.into(),
                }
            }
        })
    }
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Usage {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

impl Agent for CmdAgent {
    fn next(&mut self, conversation: &[Message], tools: &[ToolSpec]) -> Result<Turn, AgentError> {
        if let Some(why) = &self.gone {
            return Err(AgentError::Transport(format!(
                "agent program `{}` is gone: {why}",
                self.program.display()
            )));
        }
        let mut line = self.outgoing(conversation, tools).to_string();
        line.push('\n');
        let written = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.flush()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        if let Err(e) = written {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Err(self.exited_early());
            }
            self.terminate("its input could not be written");
            return Err(AgentError::Transport(format!(
                "cannot write to agent program `{}`: {e}",
                self.program.display()
            )));
        }
        let (n, reply) = self.read_reply()?;
        self.parse(n, &reply)
    }
}

impl Drop for CmdAgent {
    fn drop(&mut self) {
        self.terminate("the agent was dropped");
    }
}

/// The stdout reader: sends each line (bounded) until EOF.
fn read_lines(stdout: impl Read, tx: &mpsc::Sender<Read1>) {
    let mut reader = BufReader::new(stdout);
    let mut n = 0;
    loop {
        n += 1;
        let mut buf = Vec::new();
        let got = (&mut reader).take(MAX_LINE + 1).read_until(b'\n', &mut buf);
        let msg = match got {
            Ok(0) => Read1::Eof,
            Ok(_) if buf.len() as u64 > MAX_LINE => Read1::TooLong(n),
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                Read1::Line(n, String::from_utf8_lossy(&buf).into_owned())
            }
            Err(e) => Read1::Failed(e.to_string()),
        };
        let last = !matches!(msg, Read1::Line(..));
        if tx.send(msg).is_err() || last {
            return;
        }
    }
}

/// The stderr reader: keeps the tail, logs each line at debug level.
fn keep_stderr(stderr: impl Read, tail: &Mutex<Vec<u8>>) {
    let mut reader = BufReader::new(stderr);
    loop {
        let mut buf = Vec::new();
        match (&mut reader).take(64 << 10).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                tracing::debug!(
                    target: "airlock_eval::agent_stderr",
                    "{}",
                    String::from_utf8_lossy(&buf).trim_end()
                );
                if let Ok(mut t) = tail.lock() {
                    t.extend_from_slice(&buf);
                    if t.len() > STDERR_TAIL {
                        let cut = t.len() - STDERR_TAIL;
                        t.drain(..cut);
                    }
                }
            }
        }
    }
}

/// The start of a line, for error messages.
fn snippet(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}
