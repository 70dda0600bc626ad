//! Tool results: structured content plus the same facts as readable text.

use std::fmt::Write as _;

use airlock_policy::NetworkMode;
use airlock_runtime::{ExecResult, ExitReason, FileInfo, LimitHit, NetworkEvent, Verdict};
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{json, Map, Value};

use crate::session::{NetSince, ToolFailure};

/// A tool-level error: `isError: true`, the message as text and
/// `{"error": {kind, code, message}}` as structured content.
pub(crate) fn failure(f: &ToolFailure, net: Option<&NetSince>) -> CallToolResult {
    let mut text = format!("airlock: {}", f.message);
    let mut structured = Map::new();
    structured.insert(
        "error".into(),
        json!({"kind": f.kind, "code": f.code, "message": f.message}),
    );
    if let Some(n) = net {
        add_network(&mut structured, &mut text, n, false, "");
    }
    let mut r = CallToolResult::error(vec![ContentBlock::text(text)]);
    r.structured_content = Some(Value::Object(structured));
    r
}

/// A successful tool call.
fn success(text: String, structured: Map<String, Value>) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(Value::Object(structured));
    r
}

/// Bytes as text: the text (U+FFFD for bad sequences) and, when the bytes
/// are not UTF-8, their base64.
fn text_of(b: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(b).into_owned(),
            Some(data_encoding::BASE64.encode(b)),
        ),
    }
}

fn reason_text(r: &ExitReason, code: i32) -> String {
    match r {
        ExitReason::Exit { code } => format!("exited with code {code}"),
        ExitReason::Signal { signal } => format!("killed by signal {signal}"),
        ExitReason::Timeout => "killed at its timeout".into(),
        ExitReason::Memory => "killed at the memory limit".into(),
        ExitReason::Killed => "killed by airlock".into(),
        ExitReason::Interrupted => "interrupted".into(),
        ExitReason::ExecFailed { errno } if *errno == 2 => "command not found".into(),
        ExitReason::ExecFailed { .. } if code == 126 => "not executable".into(),
        ExitReason::ExecFailed { errno } => format!("could not be executed (errno {errno})"),
    }
}

fn limit_text(l: LimitHit) -> &'static str {
    match l {
        LimitHit::Memory => "memory (the profile's limits.memory)",
        LimitHit::Pids => "pids (a fork failed at limits.pids)",
        LimitHit::Cpu => "cpu (throttled at limits.cpu)",
        LimitHit::Timeout => "timeout (killed at its wall-clock limit)",
        LimitHit::Output => "output (earlier output dropped past limits.output)",
        LimitHit::Disk => "disk (a size-capped tmpfs filled up)",
        LimitHit::Fsize => "fsize (a file grew past limits.fsize)",
        LimitHit::Nofile => "nofile (every file descriptor allowed by limits.nofile in use)",
    }
}

/// What a program prints when a connection or a name lookup fails for want
/// of a network (glibc, Python, curl, wget, pip, Node).
const NO_NETWORK_MARKS: &[&str] = &[
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "No address associated with hostname",
    "Could not resolve host",
    "unable to resolve host address",
    "getaddrinfo",
    "ENETUNREACH",
    "EAI_AGAIN",
];

/// Whether the output looks like a network failure.
fn looks_offline(output: &[&str]) -> bool {
    output
        .iter()
        .any(|o| NO_NETWORK_MARKS.iter().any(|m| o.contains(m)))
}

/// Adds `network` to the structured content and its lines to the text.
/// `offline_hint`: the command's output shows a failed connection or
/// lookup (worth saying why, when the profile gives no network).
fn add_network(
    structured: &mut Map<String, Value>,
    text: &mut String,
    n: &NetSince,
    offline_hint: bool,
    profile: &str,
) {
    let mut decisions = Vec::new();
    let mut limits = Vec::new();
    let mut denied = 0usize;
    for ev in &n.events {
        match ev {
            NetworkEvent::Decision(f) => {
                if f.verdict == Verdict::Deny {
                    denied += 1;
                    let target = match (&f.name, f.port) {
                        (Some(n), Some(p)) => format!("{n}:{p}"),
                        (Some(n), None) => n.clone(),
                        (None, _) => f.addr.map_or_else(|| "?".into(), |a| a.to_string()),
                    };
                    let mut how = serde_json::to_value(f.proto)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    // The query type, method or SNI: tells an A from an AAAA.
                    if let Some(d) = &f.detail {
                        how.push(' ');
                        how.push_str(d);
                    }
                    let _ = writeln!(
                        text,
                        "airlock: egress denied ({how}) {target}: {}",
                        f.reason
                    );
                }
                decisions.push(serde_json::to_value(f).unwrap_or_default());
            }
            NetworkEvent::Limit { limit } => {
                let _ = writeln!(text, "airlock: egress cap reached: {limit:?}");
                limits.push(serde_json::to_value(limit).unwrap_or_default());
            }
        }
    }
    let mode = n.mode.map(|m| match m {
        NetworkMode::None => "none",
        NetworkMode::Allowlist => "allowlist",
    });
    let mut note = None;
    if mode == Some("none") && offline_hint {
        let n = format!(
            "this sandbox has no network (profile {profile:?}: network mode none); \
             connections and name lookups fail inside it, and nothing leaves"
        );
        let _ = writeln!(text, "airlock: {n}");
        note = Some(n);
    }
    if n.dropped > 0 {
        let _ = writeln!(
            text,
            "airlock: {} egress events were not kept (see the audit log)",
            n.dropped
        );
    }
    structured.insert(
        "network".into(),
        json!({"mode": mode, "decisions": decisions, "denied": denied,
               "limits_hit": limits, "events_dropped": n.dropped, "note": note}),
    );
}

/// A command's result (`exec`, `run_code`).
pub(crate) fn exec(sandbox: &str, r: &ExecResult, net: &NetSince, profile: &str) -> CallToolResult {
    let (out, out64) = text_of(&r.stdout);
    let (err, err64) = text_of(&r.stderr);
    let mut structured = Map::new();
    structured.insert("exit_code".into(), json!(r.exit_code));
    structured.insert("reason".into(), json!(r.reason));
    structured.insert("limits_hit".into(), json!(r.limits_hit));
    structured.insert(
        "timed_out".into(),
        json!(matches!(r.reason, ExitReason::Timeout) || r.limits_hit.contains(&LimitHit::Timeout)),
    );
    structured.insert("wall_ms".into(), json!(r.wall_ms));
    structured.insert("stdout".into(), json!(out));
    structured.insert("stderr".into(), json!(err));
    if let Some(b) = &out64 {
        structured.insert("stdout_base64".into(), json!(b));
    }
    if let Some(b) = &err64 {
        structured.insert("stderr_base64".into(), json!(b));
    }
    structured.insert("stdout_dropped".into(), json!(r.stdout_dropped));
    structured.insert("stderr_dropped".into(), json!(r.stderr_dropped));
    structured.insert("sandbox".into(), json!(sandbox));

    let mut text = format!(
        "exit code {} ({})\n",
        r.exit_code,
        reason_text(&r.reason, r.exit_code)
    );
    for (name, body, dropped) in [
        ("stdout", &out, r.stdout_dropped),
        ("stderr", &err, r.stderr_dropped),
    ] {
        if body.is_empty() && dropped == 0 {
            let _ = writeln!(text, "{name}: (empty)");
            continue;
        }
        let _ = writeln!(text, "{name}:");
        if dropped > 0 {
            let _ = writeln!(text, "[{dropped} earlier bytes dropped]");
        }
        text.push_str(body);
        if !body.ends_with('\n') {
            text.push('\n');
        }
    }
    for l in &r.limits_hit {
        let _ = writeln!(text, "airlock: limit hit: {}", limit_text(*l));
    }
    let offline = r.exit_code != 0 && looks_offline(&[&out, &err]);
    add_network(&mut structured, &mut text, net, offline, profile);
    success(text, structured)
}

/// `read_file`.
pub(crate) fn file_content(path: &str, data: &[u8]) -> CallToolResult {
    let (t, b64) = text_of(data);
    let mut structured = Map::new();
    structured.insert("path".into(), json!(path));
    structured.insert("size".into(), json!(data.len()));
    structured.insert("content".into(), json!(t));
    if let Some(b) = b64 {
        structured.insert("content_base64".into(), json!(b));
    }
    success(t, structured)
}

/// `write_file`.
pub(crate) fn written(info: &FileInfo) -> CallToolResult {
    let text = format!("wrote {} bytes to {}", info.size, info.path);
    let Value::Object(m) =
        json!({"path": info.path, "size": info.size, "mode": format!("{:o}", info.mode)})
    else {
        unreachable!("an object literal")
    };
    success(text, m)
}

/// `list_files`.
pub(crate) fn listing(path: &str, entries: &[FileInfo], truncated: bool) -> CallToolResult {
    let mut text = String::new();
    if entries.is_empty() {
        let _ = writeln!(text, "{path}: empty directory");
    }
    for e in entries {
        let kind = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let slash = if kind == "dir" { "/" } else { "" };
        let _ = writeln!(text, "{kind:<7} {:>10}  {}{slash}", e.size, e.name);
    }
    if truncated {
        let _ = writeln!(text, "(more entries were left out)");
    }
    let Value::Object(m) = json!({"path": path, "entries": entries, "truncated": truncated}) else {
        unreachable!("an object literal")
    };
    success(text, m)
}

/// `reset`.
pub(crate) fn reset(sandbox: Option<&str>, ms: f64) -> CallToolResult {
    let text = match sandbox {
        Some(id) => format!(
            "sandbox {id} reset in {ms:.1} ms: every process killed, /tmp, the home directory \
             and an ephemeral workspace back to their state at create"
        ),
        None => "no sandbox yet: nothing to reset (the next call makes a fresh one)".into(),
    };
    let Value::Object(m) = json!({"reset": sandbox.is_some(), "sandbox": sandbox, "ms": ms}) else {
        unreachable!("an object literal")
    };
    success(text, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_output_is_recognized() {
        assert!(looks_offline(&[
            "",
            "OSError: [Errno 101] Network is unreachable\n"
        ]));
        assert!(looks_offline(&[
            "curl: (6) Could not resolve host: example.com",
            ""
        ]));
        assert!(!looks_offline(&[
            "",
            "ls: cannot access '/x': No such file or directory"
        ]));
    }

    #[test]
    fn undecodable_output_keeps_its_bytes() {
        let (t, b) = text_of(b"ok\xff");
        assert_eq!(t, "ok\u{fffd}");
        assert_eq!(b.as_deref(), Some("b2v/"));
        assert_eq!(text_of(b"fine"), ("fine".to_string(), None));
    }
}
