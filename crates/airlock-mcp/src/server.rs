//! The MCP server: the tools, and the session's life on stdio.

use std::path::PathBuf;
use std::sync::Arc;

use airlock_policy::Profile;
use airlock_runtime::{CloseReport, ExecRequest, Sandbox};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_handler, tool_router, ErrorData, ServerHandler, ServiceExt};

use crate::params::{self, ExecParams, ListFilesParams, ReadFileParams, RunCodeParams};
use crate::render;
use crate::session::{NetSince, Session, ToolFailure};
use crate::McpError;

/// Most bytes `read_file` returns (a tool result is one JSON message).
pub(crate) const READ_MAX: u64 = 8 << 20;

/// What the session's sandbox is built from.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// The validated profile (its network section decides egress).
    pub profile: Profile,
    /// A host directory bound read-write as the workspace; `None` for an
    /// ephemeral tmpfs.
    pub workspace: Option<PathBuf>,
    /// Write the sandbox's audit log to `DIR/ID.jsonl`; without it the
    /// profile's `[audit] dir` decides.
    pub audit_dir: Option<PathBuf>,
    /// Use this cgroup hierarchy instead of detecting one.
    pub cgroup_root: Option<PathBuf>,
}

/// How a session ended.
#[derive(Debug)]
pub struct SessionEnd {
    /// `stdin closed`, `SIGTERM` or `SIGINT`.
    pub why: &'static str,
    /// The sandbox's close report, when a sandbox was made.
    pub closed: Option<CloseReport>,
}

type ToolResult = Result<CallToolResult, ErrorData>;

/// The MCP service of one session.
#[derive(Clone)]
struct AirlockMcp {
    session: Arc<Session>,
    tool_router: ToolRouter<Self>,
}

/// Runs a blocking runtime call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ToolFailure> + Send + 'static,
) -> Result<T, ToolFailure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ToolFailure::airlock(format!("the sandbox call failed: {e}")))?
}

impl AirlockMcp {
    /// A failure as a tool error, with the egress events since the last call.
    fn fail(&self, sb: Option<&Sandbox>, f: ToolFailure) -> ToolResult {
        let net = sb.map(|s| self.session.network_since(s));
        Ok(render::failure(&f, net.as_ref()))
    }

    async fn run(&self, req: ExecRequest) -> ToolResult {
        let sb = match self.session.sandbox().await {
            Ok(sb) => sb,
            Err(f) => return self.fail(None, f),
        };
        let s = sb.clone();
        let r = blocking(move || s.exec(&req, &mut |_, _| {}).map_err(ToolFailure::from)).await;
        self.exec_result(&sb, r).await
    }

    async fn exec_result(
        &self,
        sb: &Sandbox,
        r: Result<airlock_runtime::ExecResult, ToolFailure>,
    ) -> ToolResult {
        let r = match r {
            Ok(r) => r,
            Err(f) => return self.fail(Some(sb), f),
        };
        let net = self.settled_network(sb).await;
        Ok(render::exec(sb.id(), &r, &net, self.session.profile_name()))
    }

    /// The egress events since the previous call. The gateway reports a
    /// decision a moment after it answers the sandbox, so a command that
    /// ends right after a refusal could otherwise leave it to the next
    /// call: with a gateway, wait a little for stragglers.
    async fn settled_network(&self, sb: &Sandbox) -> NetSince {
        if self.session.network_mode() == airlock_policy::NetworkMode::Allowlist {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
        self.session.network_since(sb)
    }
}

#[tool_router(router = tool_router)]
impl AirlockMcp {
    fn new(session: Arc<Session>) -> Self {
        AirlockMcp {
            session,
            tool_router: Self::tool_router(),
        }
    }

    /// Runs a program in the sandbox.
    #[tool(
        name = "run_code",
        description = "Run a Python, bash or sh program in the sandbox (the session's one live \
sandbox; files and installed state persist between calls until reset). The code is written to a \
file under /tmp and run by python3, bash or sh from the workspace directory. Returns exit_code, \
stdout, stderr, the limits hit (memory, timeout, ...) and the network decisions since the previous \
call. A program that fails is a normal result with its exit code; isError means airlock could not \
run it."
    )]
    async fn run_code(&self, Parameters(p): Parameters<RunCodeParams>) -> ToolResult {
        let timeout = match params::timeout(p.timeout) {
            Ok(t) => t,
            Err(m) => return self.fail(None, ToolFailure::request("bad_request", m)),
        };
        let sb = match self.session.sandbox().await {
            Ok(sb) => sb,
            Err(f) => return self.fail(None, f),
        };
        let (interp, ext) = p.language.interpreter();
        let path = format!("/tmp/airlock-mcp-{}.{ext}", unique());
        let s = sb.clone();
        let r = blocking(move || {
            s.write_file(&path, p.code.as_bytes(), None)
                .map_err(ToolFailure::from)?;
            let req = ExecRequest {
                cmd: vec![interp.into(), path.clone()],
                timeout,
                ..ExecRequest::default()
            };
            let r = s.exec(&req, &mut |_, _| {});
            // The program's file goes; a program that removed it already, or
            // a sandbox that closed, leaves nothing to remove.
            let _ = s.remove_file(&path, false);
            r.map_err(ToolFailure::from)
        })
        .await;
        self.exec_result(&sb, r).await
    }

    /// Runs a command in the sandbox.
    #[tool(
        name = "exec",
        description = "Run a command in the sandbox: a string run by /bin/sh -c, or an argv array. \
Optional cwd (absolute, or relative to the workspace) and timeout in seconds. Returns exit_code \
(127: not found, 124: timed out, 128+N: killed by signal N), stdout, stderr, the limits hit and \
the network decisions since the previous call. A failing command is a normal result."
    )]
    async fn exec(&self, Parameters(p): Parameters<ExecParams>) -> ToolResult {
        let timeout = match params::timeout(p.timeout) {
            Ok(t) => t,
            Err(m) => return self.fail(None, ToolFailure::request("bad_request", m)),
        };
        let req = ExecRequest {
            cmd: p.cmd.argv(),
            cwd: p.cwd,
            timeout,
            ..ExecRequest::default()
        };
        self.run(req).await
    }

    /// Reads a file.
    #[tool(
        name = "read_file",
        description = "Read a file in the sandbox (absolute, or relative to the workspace; only the \
writable places: the workspace, /tmp and the home directory). Returns its content as text \
(content_base64 too when it is not UTF-8)."
    )]
    async fn read_file(&self, Parameters(p): Parameters<ReadFileParams>) -> ToolResult {
        let sb = match self.session.sandbox().await {
            Ok(sb) => sb,
            Err(f) => return self.fail(None, f),
        };
        let s = sb.clone();
        let path = p.path.clone();
        match blocking(move || s.read_file(&path, READ_MAX).map_err(ToolFailure::from)).await {
            Ok(d) => Ok(render::file_content(&p.path, &d)),
            Err(f) => self.fail(Some(&sb), f),
        }
    }

    /// Writes a file.
    #[tool(
        name = "write_file",
        description = "Write a text file in the sandbox (absolute, or relative to the workspace; \
parent directories are made; only the writable places). Replaces an existing file."
    )]
    async fn write_file(&self, Parameters(p): Parameters<params::WriteFileParams>) -> ToolResult {
        let sb = match self.session.sandbox().await {
            Ok(sb) => sb,
            Err(f) => return self.fail(None, f),
        };
        let s = sb.clone();
        let r = blocking(move || {
            s.write_file(&p.path, p.content.as_bytes(), None)
                .map_err(ToolFailure::from)
        })
        .await;
        match r {
            Ok(info) => Ok(render::written(&info)),
            Err(f) => self.fail(Some(&sb), f),
        }
    }

    /// Lists a directory.
    #[tool(
        name = "list_files",
        description = "List a directory in the sandbox (default: the workspace). Returns its entries \
with path, name, kind (file, dir, symlink, other), size, mode and mtime."
    )]
    async fn list_files(&self, Parameters(p): Parameters<ListFilesParams>) -> ToolResult {
        let sb = match self.session.sandbox().await {
            Ok(sb) => sb,
            Err(f) => return self.fail(None, f),
        };
        let s = sb.clone();
        let path = p.path.unwrap_or_else(|| ".".into());
        let asked = path.clone();
        match blocking(move || s.list_files(&path).map_err(ToolFailure::from)).await {
            Ok((entries, truncated)) => Ok(render::listing(&asked, &entries, truncated)),
            Err(f) => self.fail(Some(&sb), f),
        }
    }

    /// Resets the sandbox.
    #[tool(
        name = "reset",
        description = "Reset the sandbox: kill every process and put /tmp, the home directory and an \
ephemeral workspace back to their state at create (a host workspace given with --workspace is \
kept). Use it to start over cleanly."
    )]
    async fn reset(&self) -> ToolResult {
        let Some(sb) = self.session.existing().await else {
            return Ok(render::reset(None, 0.0));
        };
        let s = sb.clone();
        match blocking(move || s.reset(None).map_err(ToolFailure::from)).await {
            Ok(took) => Ok(render::reset(Some(sb.id()), took.as_secs_f64() * 1000.0)),
            Err(f) => self.fail(Some(&sb), f),
        }
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "airlock",
    instructions = "Tools that run code in one airlock sandbox for this session: a Linux sandbox with \
no network unless its profile allows some, a read-only host system, a writable workspace (the \
current directory of commands), /tmp and home directory. State persists between calls until \
reset. Every result says the exit code, stdout, stderr, the limits hit and the network decisions."
)]
impl ServerHandler for AirlockMcp {}

/// A name for a program file that no other call in this process uses.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Serves one MCP session on stdin and stdout until stdin ends or SIGTERM
/// or SIGINT comes, then closes the session's sandbox (every process
/// killed, the gateway stopped, the audit log signed). Blocking: it runs
/// its own tokio runtime.
pub fn serve_stdio(config: McpConfig) -> Result<SessionEnd, McpError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("airlock-mcp")
        .enable_all()
        .build()
        .map_err(McpError::Setup)?;
    let session = Arc::new(Session::new(config));
    let server = AirlockMcp::new(Arc::clone(&session));
    let outcome: Result<&'static str, McpError> = rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(McpError::Setup)?;
        let mut int = signal(SignalKind::interrupt()).map_err(McpError::Setup)?;
        let served = async move {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .map_err(|e| McpError::Handshake(e.to_string()))?;
            tracing::debug!("MCP session initialized");
            let quit = running.waiting().await;
            tracing::debug!(?quit, "MCP session over");
            Ok::<_, McpError>("stdin closed")
        };
        tokio::select! {
            r = served => r,
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    });
    // Close whatever happened: a handshake that failed leaves no sandbox,
    // a signal may interrupt a call in flight (its process is killed).
    let closed = session.close_blocking();
    // A read of stdin in flight cannot be cancelled; do not wait for it.
    rt.shutdown_background();
    let why = outcome?;
    Ok(SessionEnd {
        why,
        closed: closed?,
    })
}
