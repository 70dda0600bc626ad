//! The scenario's sandbox: one live sandbox ([`airlock_runtime::Sandbox`])
//! for all of a scenario's tool calls, closed when the scenario ends.
//!
//! Each call is an exec from the supervisor: the sandbox's init forks it
//! through the same contain pipeline as any command (`/bin/sh -c` with the
//! call's script, stdin the call's bulky data or `/dev/null`, stderr
//! merged into stdout, the
//! workspace as its directory). Its exit status, output and timeout come
//! from the supervisor, never from anything inside the sandbox, so code
//! the agent runs cannot forge a later call's answer, kill the harness's
//! side of the session or read its requests. Files, /tmp and background
//! processes persist between calls. A call that runs past its timeout has
//! its own process tree killed, and the sandbox goes on; what the call
//! started in the background before is killed with it only if it is in
//! that tree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use airlock_runtime::{
    CloseReport, ExecRequest, ExitReason, RuntimeError, Sandbox, SandboxRequest,
};

/// Most output bytes kept per call (its end; the rest is counted).
pub const KEEP: usize = 64 * 1024;

/// Why a call has no ordinary answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The evaluation is being interrupted; the call's processes were
    /// killed.
    Interrupted,
    /// The sandbox ended during the call (its time ran out, a limit
    /// stopped it).
    Ended,
    /// The sandbox had ended before the call: it did not run at all.
    NotSent,
    /// airlock failed to run the call (not the agent's doing); the message
    /// says why.
    Harness(String),
}

/// A call's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutput {
    /// stdout and stderr as they came (merged), at most [`KEEP`] bytes: the
    /// end of the output.
    pub text: Vec<u8>,
    /// Bytes before `text` that were dropped.
    pub dropped: u64,
    /// The exit status, with `airlock run`'s meanings (`None` when the call
    /// had no answer).
    pub status: Option<i32>,
    /// The call ran past its timeout (this long) and its tree was killed.
    pub timed_out: Option<Duration>,
    /// Limits the call hit (`memory`, `pids`, a full tmpfs, ...).
    pub limits_hit: Vec<String>,
}

impl CallOutput {
    fn empty() -> CallOutput {
        CallOutput {
            text: Vec::new(),
            dropped: 0,
            status: None,
            timed_out: None,
            limits_hit: Vec::new(),
        }
    }
}

/// A running scenario sandbox.
#[derive(Debug)]
pub struct Session {
    /// Its sandbox id (as in its audit log).
    pub id: String,
    sandbox: Sandbox,
}

/// `arg` quoted for a POSIX shell (single quotes; a newline stays inside
/// them).
pub fn quote(arg: &str) -> String {
    let mut s = String::with_capacity(arg.len() + 2);
    s.push('\'');
    for ch in arg.chars() {
        match ch {
            '\'' => s.push_str("'\\''"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// An argv as a shell command line whose words are exactly `argv`.
pub fn argv_script<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn limit_name(l: &airlock_runtime::LimitHit) -> String {
    serde_json::to_value(l)
        .ok()
        .map(|v| v.to_string().trim_matches('"').to_owned())
        .unwrap_or_else(|| format!("{l:?}"))
}

impl Session {
    /// Creates the live sandbox for `req` (its id is chosen here).
    pub fn start(mut req: SandboxRequest) -> Result<Session, String> {
        let id = airlock_runtime::new_sandbox_id();
        req.sandbox_id = Some(id.clone());
        let sandbox = Sandbox::create(req).map_err(|e| e.to_string())?;
        Ok(Session { id, sandbox })
    }

    /// Runs `script` (shell; see [`argv_script`]) in the sandbox, with
    /// `stdin` (else `/dev/null`), and waits for its end, at most `timeout`, after which its process tree is
    /// killed and the answer says so. `stop` set (an interrupted
    /// evaluation) kills it at once. The output seen so far comes with an
    /// error.
    pub fn call(
        &mut self,
        script: &str,
        stdin: Option<Vec<u8>>,
        workspace: &str,
        timeout: Duration,
        stop: &AtomicBool,
    ) -> Result<CallOutput, (CallError, CallOutput)> {
        let mut out = CallOutput::empty();
        if self.sandbox.is_closed() {
            return Err((CallError::NotSent, out));
        }
        let req = ExecRequest {
            // dash runs the script's last command in its own process, so
            // the exec telemetry shows `/bin/sh` and then the call's own
            // commands.
            cmd: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("exec 2>&1\n{script}"),
            ],
            cwd: Some(workspace.to_owned()),
            stdin,
            timeout: Some(timeout),
            output_cap: Some(KEEP as u64),
            ..ExecRequest::default()
        };
        let r = match self.sandbox.exec_until(&req, &mut |_, _| {}, stop) {
            Ok(r) => r,
            Err(RuntimeError::Closed { .. }) => return Err((CallError::Ended, out)),
            Err(e) => return Err((CallError::Harness(e.to_string()), out)),
        };
        out.text = r.stdout;
        out.text.extend_from_slice(&r.stderr);
        out.dropped = r.stdout_dropped + r.stderr_dropped;
        out.limits_hit = r.limits_hit.iter().map(limit_name).collect();
        if stop.load(Ordering::SeqCst) && r.reason == ExitReason::Killed {
            return Err((CallError::Interrupted, out));
        }
        if r.reason == ExitReason::Killed && self.sandbox.is_closed() {
            return Err((CallError::Ended, out));
        }
        if r.reason == ExitReason::Timeout {
            out.timed_out = Some(timeout);
        }
        out.status = Some(r.exit_code);
        Ok(out)
    }

    /// Whether the sandbox has ended on its own (its ttl).
    pub fn has_ended(&self) -> bool {
        self.sandbox.is_closed()
    }

    /// Closes the sandbox (everything still running in it is killed) and
    /// returns its report; an error is airlock's own failure.
    pub fn finish(self) -> Result<CloseReport, String> {
        let rep = self.sandbox.close().map_err(|e| e.to_string())?;
        match &rep.error {
            Some(e) => Err(format!("closing the sandbox failed: {e}")),
            None => Ok(rep),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.sandbox.close();
    }
}

/// How a scenario's sandbox ended, for a note in a tool result.
pub fn describe_end(rep: &CloseReport) -> String {
    match rep.reason.as_str() {
        "ttl" => "the sandbox's time ran out".to_owned(),
        "idle" => "the sandbox was idle too long".to_owned(),
        "closed" => "closed by the harness".to_owned(),
        "ended" => "the sandbox's init ended (a limit stopped it)".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_newlines() {
        assert_eq!(argv_script(&["cat", "--", "a b"]), "'cat' '--' 'a b'");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("x\ny"), "'x\ny'");
        assert_eq!(quote(""), "''");
    }
}
