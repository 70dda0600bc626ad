//! Approvers: who answers an escalation request (a connection to a name no
//! rule allows, under `on_deny = "ask"`).
//!
//! An [`Approver`] receives the request and returns a decision with the
//! approver's identity and stated reason. airlock ships
//! [`CommandApprover`] (a program that reads the request as JSON on stdin
//! and answers JSON on stdout); the CLI adds a terminal prompt. A missing,
//! failing or slow approver means deny.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock_egress::{Decision, EscalationAsk};
use serde::{Deserialize, Serialize};

/// What an approver is shown.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalRequest {
    /// The request id (unique within the run).
    pub id: u64,
    /// The sandbox asking.
    pub sandbox: String,
    /// The host name asked for.
    pub name: String,
    /// The port.
    pub port: u16,
    /// How it connected (`http`, `connect`, `capture`).
    pub proto: airlock_egress::FlowProto,
    /// Why it was denied without approval.
    pub why: String,
    /// Longest grant the profile allows, in seconds.
    pub max_ttl_secs: u64,
    /// Seconds until the connection gives up waiting (deny).
    pub timeout_secs: u64,
}

impl ApprovalRequest {
    pub(crate) fn new(ask: &EscalationAsk, max_ttl: Duration, timeout: Duration) -> Self {
        Self {
            id: ask.id,
            sandbox: ask.sandbox.clone(),
            name: ask.name.clone(),
            port: ask.port,
            proto: ask.proto,
            why: ask.why.clone(),
            max_ttl_secs: max_ttl.as_secs(),
            timeout_secs: timeout.as_secs(),
        }
    }
}

/// Answers escalation requests. Called on a dedicated thread, one request
/// at a time; it may block up to `timeout`.
pub trait Approver: Send + Sync + std::fmt::Debug {
    /// The decision for `req`; the connection is refused if this takes
    /// longer than `timeout`.
    fn decide(&self, req: &ApprovalRequest, timeout: Duration) -> Decision;
}

/// The answer a command approver prints (one JSON document).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandAnswer {
    /// "grant" or "deny".
    decision: String,
    /// Grant lifetime in seconds.
    #[serde(default)]
    ttl_secs: Option<f64>,
    /// Who decided.
    #[serde(default)]
    approver: Option<String>,
    /// Why.
    #[serde(default)]
    reason: Option<String>,
}

/// Runs `sh -c CMD` for every request: the request as one JSON document on
/// stdin; on stdout `{"decision":"grant","ttl_secs":60,"approver":"alice",
/// "reason":"..."}` or `{"decision":"deny","reason":"..."}`. A non-zero
/// exit, malformed output or no answer within the timeout is a denial.
#[derive(Debug, Clone)]
pub struct CommandApprover {
    /// The shell command.
    pub command: String,
}

/// Largest answer read from an approver command.
const MAX_ANSWER: u64 = 64 * 1024;

impl CommandApprover {
    fn deny(&self, reason: String) -> Decision {
        Decision::Deny {
            approver: format!("cmd:{}", self.command),
            reason,
        }
    }
}

impl Approver for CommandApprover {
    fn decide(&self, req: &ApprovalRequest, timeout: Duration) -> Decision {
        let mut child = match Command::new("/bin/sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return self.deny(format!("approver command could not start: {e}")),
        };
        let doc = serde_json::to_vec(req).unwrap_or_default();
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&doc);
            let _ = stdin.write_all(b"\n");
        }
        let mut stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = (&mut stdout).take(MAX_ANSWER).read_to_end(&mut out);
            out
        });
        let until = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let out = reader.join().unwrap_or_default();
        let Some(status) = status else {
            return self.deny(format!(
                "approver command gave no answer within {}s",
                timeout.as_secs()
            ));
        };
        if !status.success() {
            return self.deny(format!("approver command failed ({status})"));
        }
        let answer: CommandAnswer = match serde_json::from_slice(&out) {
            Ok(a) => a,
            Err(e) => return self.deny(format!("approver command answered malformed JSON: {e}")),
        };
        let approver = answer
            .approver
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| format!("cmd:{}", self.command));
        let reason = answer.reason.unwrap_or_default();
        match answer.decision.as_str() {
            "grant" => {
                let ttl = answer.ttl_secs.unwrap_or(60.0);
                if !(ttl.is_finite() && ttl > 0.0) {
                    return self.deny(format!("approver command gave a bad ttl_secs {ttl}"));
                }
                Decision::Grant {
                    ttl_ms: (ttl * 1000.0) as u64,
                    approver,
                    reason,
                }
            }
            "deny" => Decision::Deny { approver, reason },
            other => self.deny(format!(
                "approver command answered decision {other:?} (expected \"grant\" or \"deny\")"
            )),
        }
    }
}
