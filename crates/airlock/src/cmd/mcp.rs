//! `airlock mcp`: an MCP server on stdio, one live sandbox per session
//! (see docs/mcp.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Serve the Model Context Protocol on stdin and stdout: tools that run
/// code in one live sandbox for the session.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Stdout carries the protocol; diagnostics go to stderr. The sandbox is made on \
the first tool call that needs it and closed when stdin ends or SIGTERM or SIGINT comes.

Tools: run_code, exec, read_file, write_file, list_files, reset. Client set-up: docs/mcp.md."
)]
pub(crate) struct Args {
    /// A built-in profile name or a path to a profile TOML file (its
    /// network section decides egress; the default profile has none).
    #[arg(long, short = 'p', default_value = "default")]
    profile: String,
    /// A host directory bound read-write as the workspace (default: an
    /// empty tmpfs).
    #[arg(long, short = 'w', value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Write the sandbox's hash-chained audit log to DIR/ID.jsonl. Without
    /// it, the profile's `[audit] dir` decides.
    #[arg(long, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
    /// Use this cgroup hierarchy instead of the detected one.
    #[arg(long, value_name = "DIR")]
    cgroup_root: Option<PathBuf>,
}

pub(crate) fn main(a: Args) -> anyhow::Result<ExitCode> {
    let profile = super::profile::load(&a.profile)?;
    airlock_runtime::check_profile(&profile).map_err(|e| anyhow::anyhow!("{}: {e}", a.profile))?;
    if let Some(d) = &a.audit_dir {
        std::fs::create_dir_all(d).with_context(|| format!("--audit-dir {}", d.display()))?;
    }
    if let Some(w) = &a.workspace {
        if !w.is_dir() {
            anyhow::bail!("--workspace {}: not a directory", w.display());
        }
    }
    tracing::info!(profile = %profile.name, "serving MCP on stdio");
    let end = airlock_mcp::serve_stdio(airlock_mcp::McpConfig {
        profile,
        workspace: a.workspace,
        audit_dir: a.audit_dir,
        cgroup_root: a.cgroup_root,
    })?;
    match &end.closed {
        Some(r) => {
            tracing::info!(why = end.why, sandbox = %r.sandbox, "session over; sandbox closed")
        }
        None => tracing::info!(why = end.why, "session over; no sandbox was made"),
    }
    Ok(ExitCode::SUCCESS)
}
