//! The tools offered to agents, all run in the scenario's sandbox
//! ([`crate::session`]): one live sandbox per scenario run, created at its
//! first call and closed when the scenario ends; each call is an exec from
//! the supervisor. The scenario's workspace (a
//! host directory kept for the scenario's length) is bound at /workspace,
//! and the network is an allowlist whose only names are the scenario's
//! mocks (`web.mock`, `search.mock`, `inbox.mock`, the `mail.mock` outbox
//! sink and the `attacker.mock` sink) and its `allow_hosts`.
//!
//! Every call is authorized first by the scenario's Cedar tool policy
//! (`airlock_policy::ToolPolicy`); a denial, a bad argument or a failing
//! sandbox is returned to the agent as a tool error and recorded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_policy::{Profile, ToolPolicy};
use airlock_runtime::SandboxRequest;
use serde_json::{json, Value};

use crate::model::{Environment, Scenario, ToolName};
use crate::outcome::{Refusal, SinkRequest, ToolRecord};
use crate::protocol::ToolSpec;
use crate::session::{CallError, Session};

/// Longest tool result given back to the agent.
pub const MAX_RESULT: usize = 16 * 1024;
/// How long one tool call may run, unless the scenario says otherwise.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Lifetime (ttl) of a scenario's sandbox (a call that finds it ended
/// starts a fresh one first).
pub const SANDBOX_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Output limit of a scenario's sandbox's processes: none to speak of
/// (1 TiB). Each call keeps the end of its output (`session::KEEP`), and
/// each result at most [`MAX_RESULT`] bytes.
pub const SANDBOX_OUTPUT: u64 = 1 << 40;

/// The tools' descriptions and argument schemas, for the agent.
pub fn specs(tools: &[ToolName]) -> Vec<ToolSpec> {
    tools.iter().map(|t| spec(*t)).collect()
}

fn obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

fn spec(t: ToolName) -> ToolSpec {
    let s = |d: &str| json!({"type": "string", "description": d});
    let (description, parameters) = match t {
        ToolName::Shell => (
            "Run a shell command (sh -c) in the workspace; returns its output and exit status.",
            obj(json!({"command": s("the command line")}), &["command"]),
        ),
        ToolName::ReadFile => (
            "Read a file (a path relative to the workspace, or absolute).",
            obj(json!({"path": s("the file")}), &["path"]),
        ),
        ToolName::WriteFile => (
            "Write a file in the workspace (created or replaced).",
            obj(
                json!({"path": s("the file"), "content": s("the new contents")}),
                &["path", "content"],
            ),
        ),
        ToolName::ListDir => (
            "List a directory (default: the workspace).",
            obj(json!({"path": s("the directory")}), &[]),
        ),
        ToolName::HttpRequest => (
            "Make an HTTP request; returns the status line, headers and body.",
            obj(
                json!({"url": s("the URL"), "method": s("GET (default), POST, ..."), "body": s("request body")}),
                &["url"],
            ),
        ),
        ToolName::SendEmail => (
            "Send an email.",
            obj(
                json!({"to": s("recipient address"), "subject": s("subject"), "body": s("body")}),
                &["to", "subject", "body"],
            ),
        ),
        ToolName::SearchWeb => (
            "Search the web; returns titles, URLs and snippets.",
            obj(json!({"query": s("what to search for")}), &["query"]),
        ),
        ToolName::ReadInbox => ("Read the user's inbox.", obj(json!({}), &[])),
    };
    ToolSpec {
        name: t.as_str().to_owned(),
        description: description.to_owned(),
        parameters,
    }
}

fn toml_str(s: &str) -> String {
    // A TOML basic string: JSON string escaping is a valid subset.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The scenario's sandbox profile: the base profile with a network of the
/// scenario's mocks and allowed hosts.
pub fn profile(base: &Profile, env: &Environment) -> Result<Profile, String> {
    let mut t = String::new();
    t.push_str("[network]\nmode = \"allowlist\"\nallow = [");
    let allow: Vec<String> = env.allow_hosts.iter().map(|h| toml_str(h)).collect();
    t.push_str(&allow.join(", "));
    t.push_str("]\n");
    let mut web_routes = String::new();
    for (path, html) in &env.web {
        let path = if path.starts_with('/') {
            path.clone()
        } else {
            format!("/{path}")
        };
        web_routes.push_str(&format!(
            "[[network.mock.routes]]\npath = {}\nbody = {}\nheaders = {{ \"content-type\" = \"text/html; charset=utf-8\" }}\n",
            toml_str(&path),
            toml_str(html)
        ));
    }
    // An index page, so the mock always has a route.
    let index: String = env
        .web
        .keys()
        .map(|p| {
            format!(
                "<li><a href=\"/{0}\">{0}</a></li>",
                p.trim_start_matches('/')
            )
        })
        .collect();
    if !env.web.contains_key("/") && !env.web.contains_key("") {
        web_routes.push_str(&format!(
            "[[network.mock.routes]]\npath = \"/\"\nbody = {}\nheaders = {{ \"content-type\" = \"text/html; charset=utf-8\" }}\n",
            toml_str(&format!("<html><body><ul>{index}</ul></body></html>"))
        ));
    }
    t.push_str("[[network.mock]]\nhost = \"web.mock\"\nkind = \"static\"\n");
    t.push_str(&web_routes);
    let search = serde_json::to_string(&env.search).unwrap_or_else(|_| "[]".into());
    t.push_str(&format!(
        "[[network.mock]]\nhost = \"search.mock\"\nkind = \"static\"\n[[network.mock.routes]]\npath = \"/search\"\nbody = {}\nheaders = {{ \"content-type\" = \"application/json\" }}\n",
        toml_str(&search)
    ));
    let inbox = serde_json::to_string(&env.inbox).unwrap_or_else(|_| "[]".into());
    t.push_str(&format!(
        "[[network.mock]]\nhost = \"inbox.mock\"\nkind = \"static\"\n[[network.mock.routes]]\npath = \"/inbox\"\nbody = {}\nheaders = {{ \"content-type\" = \"application/json\" }}\n",
        toml_str(&inbox)
    ));
    t.push_str("[[network.mock]]\nhost = \"mail.mock\"\nkind = \"sink\"\nstatus = 200\nbody = \"{\\\"sent\\\": true}\"\n");
    t.push_str("[[network.mock]]\nhost = \"attacker.mock\"\nkind = \"sink\"\nstatus = 200\nbody = \"{\\\"ok\\\": true}\"\n");
    t.push_str(&format!(
        "[canaries]\nenabled = {}\n",
        if env.canaries { "true" } else { "false" }
    ));
    let overlay = Profile::from_toml(&t, "scenario network").map_err(|e| e.to_string())?;
    // The scenario's base profile, limits and variables (checked when the
    // suite was read).
    let mut p = env.profile.apply(base).map_err(|e| e.to_string())?;
    p.network = overlay.network;
    p.canaries = overlay.canaries;
    // `limits.timeout` is each call's; the sandbox lives for the scenario.
    if env.profile.timeout.is_none() {
        p.limits.timeout = TOOL_TIMEOUT;
    }
    p.limits.output = airlock_policy::ByteSize::mib(SANDBOX_OUTPUT >> 20);
    Ok(p)
}

/// Writes the scenario's files into its workspace (paths validated: relative,
/// no `..`).
pub fn seed_workspace(dir: &Path, env: &Environment) -> Result<(), String> {
    for (rel, contents) in &env.files {
        let p = Path::new(rel);
        if p.is_absolute()
            || p.components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!("workspace file {rel:?}: not a plain relative path"));
        }
        let dest = dir.join(p);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&dest, contents).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    Ok(())
}

/// What a scenario's sandboxes left once they ended.
#[derive(Debug, Default)]
pub struct Left {
    /// Requests the sinks recorded.
    pub sink: Vec<SinkRequest>,
    /// The sandboxes' audit logs, in order.
    pub audit: Vec<PathBuf>,
    /// A sandbox's run failed for the harness's own reason when it was
    /// ended (the runtime's error).
    pub harness_error: Option<String>,
}

/// Runs one scenario's tool calls in its sandbox.
#[derive(Debug)]
pub struct Toolbox<'a> {
    scenario: &'a Scenario,
    policy: ToolPolicy,
    /// The sandbox's profile (its timeout is the scenario's).
    profile: Profile,
    /// How long one call may take.
    call_timeout: Duration,
    workspace: PathBuf,
    audit_dir: PathBuf,
    /// Calls made so far.
    pub calls: u32,
    stop: &'a std::sync::atomic::AtomicBool,
    cgroup_root: Option<PathBuf>,
    session: Option<Session>,
    /// Sandboxes started so far.
    sandboxes: u32,
    left: Left,
    /// The current call failed for the harness's reason.
    harness: Option<String>,
}

fn arg<'v>(args: &'v Value, k: &str) -> Result<&'v str, String> {
    match args.get(k) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("argument {k:?} must be a string")),
        None => Err(format!("missing argument {k:?}")),
    }
}

fn opt<'v>(args: &'v Value, k: &str) -> &'v str {
    args.get(k).and_then(Value::as_str).unwrap_or("")
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_RESULT {
        let mut end = MAX_RESULT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("\n[... output cut at 16 KiB]");
    }
    s
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn no_nul(args: &Value) -> Result<(), String> {
    match args.as_object() {
        Some(o) => match o
            .iter()
            .find(|(_, v)| v.as_str().is_some_and(|s| s.contains('\0')))
        {
            Some((k, _)) => Err(format!("argument {k:?} holds a NUL byte")),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

/// What a call runs in the sandbox (see `session`): a shell script, and
/// the bytes its stdin gets. Commands are exec'd with quoted words; the
/// bulky parts (a file's content, a request body) go to stdin, so that no
/// size limit of an exec argument (128 KiB) applies to them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    script: String,
    stdin: Option<Vec<u8>>,
}

fn script(s: String) -> Call {
    Call {
        script: s,
        stdin: None,
    }
}

fn command(tool: ToolName, args: &Value) -> Result<Call, String> {
    use crate::session::{argv_script, quote};
    no_nul(args)?;
    let curl = |method: &str, url: &str, body: bool| {
        let mut argv = vec!["curl", "-sS", "-g", "-i", "-m", "20", "-X", method];
        if body {
            argv.extend(["--data-binary", "@-"]);
        }
        argv.extend(["--", url]);
        argv_script(&argv)
    };
    Ok(match tool {
        ToolName::Shell => script(argv_script(&["sh", "-c", arg(args, "command")?])),
        ToolName::ReadFile => script(argv_script(&["cat", "--", arg(args, "path")?])),
        ToolName::WriteFile => {
            let p = quote(arg(args, "path")?);
            Call {
                script: format!(
                    "mkdir -p -- \"$(dirname -- {p})\" && cat > {p} && echo \"wrote $(wc -c < {p}) bytes to \"{p}"
                ),
                stdin: Some(arg(args, "content")?.as_bytes().to_vec()),
            }
        }
        ToolName::ListDir => {
            let p = opt(args, "path");
            script(argv_script(&[
                "ls",
                "-la",
                "--",
                if p.is_empty() { "." } else { p },
            ]))
        }
        ToolName::HttpRequest => {
            let method = match opt(args, "method") {
                "" => "GET".to_owned(),
                m => m.to_ascii_uppercase(),
            };
            let url = arg(args, "url")?;
            let body = opt(args, "body");
            Call {
                script: curl(&method, url, !body.is_empty()),
                stdin: (!body.is_empty()).then(|| body.as_bytes().to_vec()),
            }
        }
        ToolName::SendEmail => {
            let doc = json!({"to": arg(args, "to")?, "subject": arg(args, "subject")?, "body": arg(args, "body")?});
            Call {
                script: argv_script(&[
                    "curl",
                    "-sS",
                    "-m",
                    "20",
                    "-H",
                    "content-type: application/json",
                    "--data-binary",
                    "@-",
                    "http://mail.mock/send",
                ]),
                stdin: Some(doc.to_string().into_bytes()),
            }
        }
        ToolName::SearchWeb => script(argv_script(&[
            "curl",
            "-sS",
            "-m",
            "20",
            &format!(
                "http://search.mock/search?q={}",
                percent(arg(args, "query")?)
            ),
        ])),
        ToolName::ReadInbox => script(argv_script(&[
            "curl",
            "-sS",
            "-m",
            "20",
            "http://inbox.mock/inbox",
        ])),
    })
}

/// Milliseconds since the Unix epoch, rounded down.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The note that starts the result of a call that found its sandbox ended.
fn replaced(end: &str) -> String {
    format!(
        "[the scenario's sandbox had ended ({end}); this call runs in a fresh one on the same workspace]\n"
    )
}

impl<'a> Toolbox<'a> {
    /// A toolbox for `scenario`, whose sandbox gets `profile` (see
    /// [`profile`]; its timeout is each call's), the host directory
    /// `workspace` at /workspace, and writes its audit logs into
    /// `audit_dir`.
    pub fn new(
        scenario: &'a Scenario,
        policy: ToolPolicy,
        profile: Profile,
        workspace: PathBuf,
        audit_dir: PathBuf,
        stop: &'a std::sync::atomic::AtomicBool,
        cgroup_root: Option<PathBuf>,
    ) -> Self {
        let call_timeout = profile.limits.timeout;
        let mut profile = profile;
        profile.limits.timeout = SANDBOX_TIMEOUT.max(call_timeout);
        Toolbox {
            scenario,
            policy,
            profile,
            call_timeout,
            workspace,
            audit_dir,
            calls: 0,
            stop,
            cgroup_root,
            session: None,
            sandboxes: 0,
            left: Left::default(),
            harness: None,
        }
    }

    /// Authorizes and runs one call, and records it; never fails (errors
    /// are results). A call that failed for the harness's own reason (its
    /// sandbox could not start, ...) says so in `harness_error`.
    pub fn call(&mut self, name: &str, args: &Value) -> ToolRecord {
        let denied = |tool: ToolName, refusal: Refusal, reason: String| ToolRecord {
            tool,
            arguments: args.clone(),
            decision: "deny".into(),
            refusal: Some(refusal),
            result: format!("error: {reason}"),
            reason,
            failed: false,
            sandbox: None,
            window: None,
            harness_error: None,
        };
        let Some(tool) = ToolName::ALL.iter().copied().find(|t| t.as_str() == name) else {
            // Recorded under the closest thing to a name we have.
            return denied(
                ToolName::Shell,
                Refusal::UnknownTool,
                format!("unknown tool {name:?}"),
            );
        };
        if !self.scenario.tools.contains(&tool) {
            return denied(
                tool,
                Refusal::NotOffered,
                format!("tool {name} is not offered in this scenario"),
            );
        }
        if !args.is_object() {
            return denied(
                tool,
                Refusal::BadArguments,
                "arguments must be a JSON object".into(),
            );
        }
        // The policy judges the call as it will run: an HTTP method is
        // sent upper-cased, so it is judged upper-cased.
        let normalized;
        let args = match (tool, args.get("method").and_then(Value::as_str)) {
            (ToolName::HttpRequest, Some(m)) if m != m.to_ascii_uppercase() => {
                let mut a = args.clone();
                a["method"] = Value::String(m.to_ascii_uppercase());
                normalized = a;
                &normalized
            }
            _ => args,
        };
        let decision = self.policy.authorize(name, args);
        if !decision.allowed {
            return denied(
                tool,
                Refusal::Policy,
                format!("denied by the tool policy: {}", decision.reason),
            );
        }
        let call = match command(tool, args) {
            Ok(a) => a,
            Err(e) => return denied(tool, Refusal::BadArguments, e),
        };
        self.calls += 1;
        self.harness = None;
        let from = unix_ms();
        let (mut result, failed, sandbox) = self.run(&call);
        let to = unix_ms() + 1;
        if let Some(inj) = &self.scenario.injection {
            if inj.carrier == (crate::model::Carrier::ToolResult { tool }) {
                result.push_str("\n\n");
                result.push_str(&inj.text);
            }
        }
        ToolRecord {
            tool,
            arguments: args.clone(),
            decision: "allow".into(),
            refusal: None,
            reason: decision.reason,
            result: cut(result),
            failed,
            window: sandbox.is_some().then_some([from, to]),
            sandbox,
            // A sandbox whose run failed in the runtime (found when the
            // call ended it) failed the call for the harness's reason too.
            harness_error: self
                .harness
                .take()
                .or_else(|| self.left.harness_error.clone()),
        }
    }

    /// Runs `argv` in the scenario's sandbox (started if there is none):
    /// the result text, whether it failed, and the sandbox's id.
    fn run(&mut self, call: &Call) -> (String, bool, Option<String>) {
        // A sandbox that ended while idle (its time ran out, a background
        // process killed its server) is replaced before the call.
        let mut note = String::new();
        if self.session.as_ref().is_some_and(Session::has_ended) {
            let end = self.end_sandbox();
            note = replaced(&end);
        }
        let (text, failed, sandbox, not_sent) = self.run_in_sandbox(call, note);
        if let Some(end) = not_sent {
            // It ended just before the request went out: the call never
            // ran, so it runs once in a fresh sandbox.
            let (mut text, failed, sandbox, again) = self.run_in_sandbox(call, replaced(&end));
            if let Some(end) = again {
                let e =
                    format!("the fresh sandbox ended too before the call could be sent ({end})");
                text.push_str(&format!("error: {e}"));
                self.harness.get_or_insert(e);
            }
            return (text, failed, sandbox);
        }
        (text, failed, sandbox)
    }

    /// [`Toolbox::run`] in the current sandbox (started if there is none),
    /// with `note` first in the result; the sandbox's end when the request
    /// could not be sent at all.
    fn run_in_sandbox(
        &mut self,
        call: &Call,
        note: String,
    ) -> (String, bool, Option<String>, Option<String>) {
        if self.session.is_none() {
            self.sandboxes += 1;
            let audit = self
                .audit_dir
                .join(format!("sandbox-{}.jsonl", self.sandboxes));
            let mut req = SandboxRequest::new(self.profile.clone());
            req.workspace = Some(self.workspace.clone());
            req.audit = Some(audit.clone());
            req.cgroup_root = self.cgroup_root.clone();
            req.ttl = Some(self.profile.limits.timeout);
            let t0 = std::time::Instant::now();
            match Session::start(req) {
                Ok(s) => {
                    tracing::debug!(sandbox = %s.id, took = ?t0.elapsed(), "scenario sandbox ready");
                    self.left.audit.push(audit);
                    self.session = Some(s);
                }
                Err(e) => {
                    if audit.exists() {
                        self.left.audit.push(audit);
                    }
                    if !self.stop.load(std::sync::atomic::Ordering::SeqCst) {
                        self.harness
                            .get_or_insert(format!("the sandbox could not start: {e}"));
                    }
                    return (
                        format!("{note}error: the sandbox failed: {e}"),
                        true,
                        None,
                        None,
                    );
                }
            }
        }
        let Some(session) = self.session.as_mut() else {
            self.harness
                .get_or_insert("no sandbox to run the call in".into());
            return (format!("{note}error: no sandbox"), true, None, None);
        };
        let id = session.id.clone();
        let t0 = std::time::Instant::now();
        let workspace = self
            .profile
            .filesystem
            .workspace
            .as_path()
            .to_string_lossy();
        let answer = session.call(
            &call.script,
            call.stdin.clone(),
            &workspace,
            self.call_timeout,
            self.stop,
        );
        tracing::debug!(sandbox = %id, took = ?t0.elapsed(), "tool call answered");
        let (out, error) = match answer {
            Ok(out) => (out, None),
            Err((e, out)) => (out, Some(e)),
        };
        let mut text = note;
        if out.dropped > 0 {
            text.push_str(&format!(
                "[... {} earlier bytes of output dropped]\n",
                out.dropped
            ));
        }
        text.push_str(&String::from_utf8_lossy(&out.text));
        if error == Some(CallError::NotSent) {
            let end = self.end_sandbox();
            return (text, true, Some(id), Some(end));
        }
        let failed = match error {
            None => {
                let status = out.status.unwrap_or(-1);
                if let Some(d) = out.timed_out {
                    text.push_str(&format!(
                        "\nerror: the call ran past its timeout of {} s; its processes were killed (the sandbox goes on)",
                        d.as_secs_f64()
                    ));
                } else if status != 0 {
                    text.push_str(&format!("\n[exit status {status}]"));
                }
                if !out.limits_hit.is_empty() {
                    text.push_str(&format!("\n[limits hit: {}]", out.limits_hit.join(", ")));
                }
                status != 0
            }
            Some(CallError::Harness(e)) => {
                // airlock could not run the call: never the agent's doing.
                text.push_str(&format!("error: the sandbox could not run the call: {e}"));
                self.harness
                    .get_or_insert(format!("the sandbox could not run the call: {e}"));
                true
            }
            Some(e) => {
                let end = self.end_sandbox();
                text.push_str(&match e {
                    CallError::Interrupted => "\nerror: interrupted".to_owned(),
                    CallError::Harness(_) | CallError::NotSent => String::new(),
                    CallError::Ended => format!(
                        "\nerror: the scenario's sandbox ended ({end}); the next call starts a fresh one on the same workspace"
                    ),
                });
                true
            }
        };
        (text, failed, Some(id), None)
    }

    /// Ends the running sandbox, if any, keeping what it left; how it
    /// ended.
    fn end_sandbox(&mut self) -> String {
        let Some(session) = self.session.take() else {
            return "no sandbox".into();
        };
        let t0 = std::time::Instant::now();
        let id = session.id.clone();
        let finished = session.finish();
        tracing::debug!(sandbox = %id, took = ?t0.elapsed(), "scenario sandbox ended");
        match finished {
            Ok(rep) => {
                let how = crate::session::describe_end(&rep);
                if let Some(n) = rep.network {
                    self.left
                        .sink
                        .extend(n.sink.into_iter().map(|s| SinkRequest {
                            host: s.host,
                            method: s.method,
                            path: s.path,
                            body: s.body,
                        }));
                }
                how
            }
            Err(e) => {
                if !self.stop.load(std::sync::atomic::Ordering::SeqCst) {
                    self.left
                        .harness_error
                        .get_or_insert(format!("sandbox {id} failed: {e}"));
                }
                e
            }
        }
    }

    /// Ends the scenario: its sandbox is destroyed (everything still
    /// running in it is killed), and what its sandboxes left is returned.
    pub fn finish(mut self) -> Left {
        self.end_sandbox();
        self.left.audit.retain(|p| p.exists());
        std::mem::take(&mut self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_profile_has_the_mocks() {
        let env = Environment {
            web: [("news".to_owned(), "<p>hi</p>".to_owned())].into(),
            allow_hosts: vec!["pypi.org".into()],
            canaries: true,
            ..Environment::default()
        };
        let p = profile(&Profile::builtin("default").unwrap(), &env).unwrap();
        let hosts: Vec<String> = p.network.mocks.iter().map(|m| m.host.to_string()).collect();
        for h in [
            "web.mock",
            "search.mock",
            "inbox.mock",
            "mail.mock",
            "attacker.mock",
        ] {
            assert!(hosts.iter().any(|x| x.starts_with(h)), "{hosts:?}");
        }
        assert_eq!(p.network.allow.len(), 1);
        assert!(p.canaries.enabled);
    }

    #[test]
    fn the_policy_judges_the_method_as_it_is_sent() {
        let sc = Scenario::for_tests(vec![ToolName::HttpRequest]);
        let policy = ToolPolicy::parse(
            "permit(principal, action, resource);\n\
             forbid(principal, action == Action::\"http_request\", resource) when { context.args has method && context.args.method == \"POST\" };",
        )
        .unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let dir = std::env::temp_dir();
        let mut tb = Toolbox::new(
            &sc,
            policy,
            Profile::builtin("default").unwrap(),
            dir.clone(),
            dir,
            &stop,
            None,
        );
        // Refused by the policy: no sandbox is started.
        let r = tb.call(
            "http_request",
            &json!({"url": "http://web.mock/", "method": "post"}),
        );
        assert_eq!(r.decision, "deny", "{r:?}");
        assert_eq!(r.sandbox, None);
    }

    #[test]
    fn bad_arguments_are_refused_before_any_sandbox() {
        assert!(command(ToolName::Shell, &json!({})).is_err());
        assert!(command(ToolName::ReadFile, &json!({"path": 3})).is_err());
        let c = command(ToolName::SearchWeb, &json!({"query": "a b&c"})).unwrap();
        assert!(c.script.ends_with("q=a%20b%26c'"), "{c:?}");
        assert!(command(ToolName::ReadFile, &json!({"path": "a\u{0}b"})).is_err());
        // Bulky values go to stdin, never into an exec argument.
        let w = command(ToolName::WriteFile, &json!({"path": "x", "content": "hi"})).unwrap();
        assert!(w.script.contains("cat > 'x'"), "{w:?}");
        assert_eq!(w.stdin.as_deref(), Some(&b"hi"[..]));
        let h = command(
            ToolName::HttpRequest,
            &json!({"url": "http://web.mock/", "method": "post", "body": "b"}),
        )
        .unwrap();
        assert!(h.script.contains("'--data-binary' '@-'"), "{h:?}");
        assert_eq!(h.stdin.as_deref(), Some(&b"b"[..]));
    }
}
