//! One MCP session's sandbox: made on first use, closed at the end.

use std::sync::Mutex;

use airlock_policy::NetworkMode;
use airlock_runtime::{CloseReport, NetworkEvent, RuntimeError, Sandbox, SandboxRequest};

use crate::server::McpConfig;

/// Why a tool call failed, as the client sees it (`isError: true`).
#[derive(Debug)]
pub(crate) struct ToolFailure {
    /// `request`: the call asked for something airlock refuses (fix the
    /// call); `airlock`: airlock itself failed.
    pub(crate) kind: &'static str,
    /// A short code: `bad_request`, `file`, `cannot_start`,
    /// `sandbox_closed`, `internal`, ...
    pub(crate) code: &'static str,
    /// The message, naming the field or path.
    pub(crate) message: String,
}

impl ToolFailure {
    pub(crate) fn request(code: &'static str, message: impl Into<String>) -> Self {
        ToolFailure {
            kind: "request",
            code,
            message: message.into(),
        }
    }

    pub(crate) fn airlock(message: impl Into<String>) -> Self {
        ToolFailure {
            kind: "airlock",
            code: "internal",
            message: message.into(),
        }
    }
}

impl From<RuntimeError> for ToolFailure {
    fn from(e: RuntimeError) -> Self {
        let message = e.to_string();
        match e {
            RuntimeError::Request { .. } | RuntimeError::SandboxId(_) => {
                ToolFailure::request("bad_request", message)
            }
            RuntimeError::File(_) => ToolFailure::request("file", message),
            RuntimeError::Exec(_) => ToolFailure::request("cannot_start", message),
            RuntimeError::Closed { .. } => ToolFailure {
                kind: "airlock",
                code: "sandbox_closed",
                message: format!("{message}; the next call starts a fresh sandbox"),
            },
            _ => {
                tracing::error!(error = %message, "sandbox operation failed");
                ToolFailure::airlock(message)
            }
        }
    }
}

struct State {
    sandbox: Option<Sandbox>,
    /// Set once the session is over: no sandbox is made after it.
    ended: bool,
    /// Sandboxes made in this session (more than one when one closed).
    made: u32,
}

/// The session's one sandbox and the cursor into its egress events.
pub(crate) struct Session {
    config: McpConfig,
    state: tokio::sync::Mutex<State>,
    /// Egress events already reported.
    net_cursor: Mutex<usize>,
}

/// The egress events since the previous call, split for the result.
#[derive(Debug, Default)]
pub(crate) struct NetSince {
    pub(crate) mode: Option<NetworkMode>,
    pub(crate) events: Vec<NetworkEvent>,
    pub(crate) dropped: u64,
}

impl Session {
    pub(crate) fn new(config: McpConfig) -> Self {
        Session {
            config,
            state: tokio::sync::Mutex::new(State {
                sandbox: None,
                ended: false,
                made: 0,
            }),
            net_cursor: Mutex::new(0),
        }
    }

    pub(crate) fn profile_name(&self) -> &str {
        &self.config.profile.name
    }

    pub(crate) fn network_mode(&self) -> NetworkMode {
        self.config.profile.network.mode
    }

    /// The live sandbox, made now if there is none (or the last one closed).
    pub(crate) async fn sandbox(&self) -> Result<Sandbox, ToolFailure> {
        let mut st = self.state.lock().await;
        if st.ended {
            return Err(ToolFailure::airlock("the session is ending"));
        }
        if let Some(sb) = &st.sandbox {
            if !sb.is_closed() {
                return Ok(sb.clone());
            }
            tracing::warn!(sandbox = sb.id(), "the sandbox closed; making a fresh one");
        }
        let req = self.request();
        let sb = tokio::task::spawn_blocking(move || Sandbox::create(req))
            .await
            .map_err(|e| ToolFailure::airlock(format!("creating the sandbox: {e}")))?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot create the sandbox");
                ToolFailure::airlock(format!("creating the sandbox: {e}"))
            })?;
        tracing::info!(sandbox = sb.id(), profile = %self.config.profile.name, "sandbox created");
        *self.net_cursor.lock().unwrap_or_else(|p| p.into_inner()) = 0;
        st.made += 1;
        st.sandbox = Some(sb.clone());
        Ok(sb)
    }

    /// The sandbox if one is live, without making one.
    pub(crate) async fn existing(&self) -> Option<Sandbox> {
        let st = self.state.lock().await;
        st.sandbox.clone().filter(|s| !s.is_closed())
    }

    fn request(&self) -> SandboxRequest {
        let id = airlock_runtime::new_sandbox_id();
        let mut req = SandboxRequest::new(self.config.profile.clone());
        req.workspace = self.config.workspace.clone();
        req.cgroup_root = self.config.cgroup_root.clone();
        req.audit = self
            .config
            .audit_dir
            .as_ref()
            .map(|d| d.join(format!("{id}.jsonl")));
        req.sandbox_id = Some(id);
        req
    }

    /// The egress events since the previous call's.
    pub(crate) fn network_since(&self, sb: &Sandbox) -> NetSince {
        let mut cursor = self.net_cursor.lock().unwrap_or_else(|p| p.into_inner());
        let n = sb.network_events(*cursor);
        *cursor = n.next;
        NetSince {
            mode: Some(self.network_mode()),
            events: n.events,
            dropped: n.dropped,
        }
    }

    /// Ends the session: no sandbox is made after this, and the live one
    /// (if any) is closed. Blocking.
    pub(crate) fn close_blocking(&self) -> Result<Option<CloseReport>, crate::McpError> {
        let sb = {
            let mut st = self.state.blocking_lock();
            st.ended = true;
            st.sandbox.take()
        };
        let Some(sb) = sb else { return Ok(None) };
        let id = sb.id().to_string();
        sb.close().map(Some).map_err(|e| crate::McpError::Close {
            id,
            source: Box::new(e),
        })
    }
}
