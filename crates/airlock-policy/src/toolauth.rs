//! Tool-call authorization with Cedar.
//!
//! An agent's tool call becomes a Cedar request: principal `Agent::"agent"`,
//! action `Action::"<tool>"`, resource `Tool::"<tool>"`, and a context
//! built from the call's arguments:
//!
//! * `context.args`: the arguments, each value as Cedar can hold it
//!   (strings, booleans, integers; other numbers become strings; nested
//!   objects and arrays are kept);
//! * `context.url_host`: the host of `args.url`, lowercased (empty when
//!   there is none);
//! * `context.email_domain`: the domain of `args.to`, lowercased (empty
//!   when there is none);
//! * `context.path`: `args.path` with `./` and duplicate slashes removed
//!   (empty when there is none; a path with `..` is refused before Cedar).
//!
//! Cedar denies unless a `permit` matches and no `forbid` does. Examples:
//!
//! ```cedar
//! permit(principal, action, resource);
//! forbid(principal, action == Action::"send_email", resource)
//!     unless { context.email_domain == "example.com" };
//! forbid(principal, action == Action::"write_file", resource)
//!     unless { context.path like "notes/*" };
//! ```

use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};

/// A policy text that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("tool policy: {message}")]
pub struct ToolPolicyError {
    /// What Cedar said.
    pub message: String,
}

/// A parsed tool policy.
#[derive(Debug, Clone)]
pub struct ToolPolicy {
    set: PolicySet,
}

/// The answer for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolDecision {
    /// Whether the call may run.
    pub allowed: bool,
    /// Which policies decided, or why it was refused.
    pub reason: String,
}

fn cedar_value(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_i64() => v.clone(),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Null => Value::String(String::new()),
        Value::Array(a) => Value::Array(a.iter().map(cedar_value).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                // Cedar reserves `__entity`/`__extn` escapes in JSON.
                .filter(|(k, _)| !k.starts_with("__"))
                .map(|(k, v)| (k.clone(), cedar_value(v)))
                .collect(),
        ),
        _ => v.clone(),
    }
}

fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn normal_path(p: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(format!("path {p:?} contains '..'")),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

impl ToolPolicy {
    /// Parses Cedar policy text.
    pub fn parse(text: &str) -> Result<Self, ToolPolicyError> {
        let set = PolicySet::from_str(text).map_err(|e| ToolPolicyError {
            message: format!("{e}"),
        })?;
        Ok(Self { set })
    }

    /// A policy that permits every call.
    pub fn permit_all() -> Self {
        Self::parse("permit(principal, action, resource);").expect("static policy parses")
    }

    /// Decides one call of `tool` with `args` (a JSON object).
    pub fn authorize(&self, tool: &str, args: &serde_json::Value) -> ToolDecision {
        let deny = |reason: String| ToolDecision {
            allowed: false,
            reason,
        };
        let s = |k: &str| args.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let path = match normal_path(s("path")) {
            Ok(p) => p,
            Err(e) => return deny(e),
        };
        let email_domain = s("to")
            .rsplit_once('@')
            .map(|(_, d)| d.trim().trim_end_matches('>').to_ascii_lowercase())
            .unwrap_or_default();
        let context = serde_json::json!({
            "args": cedar_value(&if args.is_object() { args.clone() } else { serde_json::json!({}) }),
            "url_host": url_host(s("url")),
            "email_domain": email_domain,
            "path": path,
        });
        let uid = |t: &str, id: &str| {
            EntityUid::from_str(&format!(
                "{t}::{}",
                serde_json::Value::String(id.to_owned())
            ))
            .ok()
        };
        let (Some(principal), Some(action), Some(resource)) = (
            uid("Agent", "agent"),
            uid("Action", tool),
            uid("Tool", tool),
        ) else {
            return deny(format!("tool name {tool:?} cannot be expressed in Cedar"));
        };
        let context = match Context::from_json_value(context, None) {
            Ok(c) => c,
            Err(e) => return deny(format!("arguments cannot be expressed in Cedar: {e}")),
        };
        let request = match Request::new(principal, action, resource, context, None) {
            Ok(r) => r,
            Err(e) => return deny(format!("bad request: {e}")),
        };
        let resp = Authorizer::new().is_authorized(&request, &self.set, &Entities::empty());
        let ids: Vec<String> = resp
            .diagnostics()
            .reason()
            .map(|id| {
                // A policy's `@id("...")` annotation names it in reasons.
                self.set
                    .policy(id)
                    .and_then(|p| p.annotation("id").map(str::to_owned))
                    .unwrap_or_else(|| id.to_string())
            })
            .collect();
        let errors: Vec<String> = resp.diagnostics().errors().map(|e| e.to_string()).collect();
        match resp.decision() {
            Decision::Allow => ToolDecision {
                allowed: true,
                reason: format!("permitted by {}", ids.join(", ")),
            },
            Decision::Deny if ids.is_empty() && errors.is_empty() => {
                deny(format!("no policy permits {tool}"))
            }
            Decision::Deny if ids.is_empty() => {
                deny(format!("denied: policy errors: {}", errors.join("; ")))
            }
            Decision::Deny => deny(format!("forbidden by {}", ids.join(", "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POLICY: &str = r#"
        permit(principal, action, resource);
        @id("mail-domain")
        forbid(principal, action == Action::"send_email", resource)
            unless { context.email_domain == "example.com" };
        @id("notes-only")
        forbid(principal, action == Action::"write_file", resource)
            unless { context.path like "notes/*" };
        @id("hosts")
        forbid(principal, action == Action::"http_request", resource)
            unless { context.url_host == "web.mock" };
    "#;

    #[test]
    fn argument_constraints_decide() {
        let p = ToolPolicy::parse(POLICY).unwrap();
        assert!(
            p.authorize("send_email", &json!({"to": "bob@example.com"}))
                .allowed
        );
        let d = p.authorize("send_email", &json!({"to": "Eve <eve@evil.test>"}));
        assert!(!d.allowed);
        assert!(d.reason.contains("mail-domain"), "{d:?}");
        assert!(
            p.authorize(
                "write_file",
                &json!({"path": "./notes//a.md", "content": "x"})
            )
            .allowed
        );
        assert!(!p.authorize("write_file", &json!({"path": "etc/x"})).allowed);
        let up = p.authorize("write_file", &json!({"path": "notes/../../x"}));
        assert!(!up.allowed && up.reason.contains(".."), "{up:?}");
        assert!(
            p.authorize("http_request", &json!({"url": "http://WEB.mock:80/a"}))
                .allowed
        );
        assert!(
            !p.authorize("http_request", &json!({"url": "http://user@evil.test/"}))
                .allowed
        );
        assert!(
            p.authorize("shell", &json!({"command": "ls", "n": 1.5}))
                .allowed
        );
    }

    #[test]
    fn default_deny_and_bad_text() {
        let p = ToolPolicy::parse(r#"permit(principal, action == Action::"read_file", resource);"#)
            .unwrap();
        assert!(p.authorize("read_file", &json!({"path": "a"})).allowed);
        let d = p.authorize("shell", &json!({"command": "rm -rf /"}));
        assert!(
            !d.allowed && d.reason.contains("no policy permits shell"),
            "{d:?}"
        );
        let e = ToolPolicy::parse("permit(principal, action").unwrap_err();
        assert!(e.to_string().starts_with("tool policy:"), "{e}");
        assert!(ToolPolicy::permit_all().authorize("x", &json!({})).allowed);
    }
}
