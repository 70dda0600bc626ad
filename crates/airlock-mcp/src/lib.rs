//! airlock-mcp: `airlock mcp`, a Model Context Protocol server on the
//! stdio transport (rmcp).
//!
//! It owns the translation between MCP tool calls and the runtime's live
//! sandbox API, and nothing else: one MCP session holds one
//! [`airlock_runtime::Sandbox`], made on the first tool call that needs it
//! and closed when the session ends (stdin at end of file, SIGTERM or
//! SIGINT). The tools are `run_code`, `exec`, `read_file`, `write_file`,
//! `list_files` and `reset`; their input schemas come from the typed
//! parameters. A result carries the exit code, stdout and stderr, the
//! limits hit and the egress decisions recorded since the previous call,
//! both as structured content and as readable text. A command that fails
//! is a normal result; a request airlock refuses or an airlock failure is
//! a tool error (`isError`), with the message. Stdout is the protocol:
//! diagnostics go to `tracing` (stderr).

mod error;
mod params;
mod render;
mod server;
mod session;

pub use error::McpError;
pub use server::{serve_stdio, McpConfig, SessionEnd};
