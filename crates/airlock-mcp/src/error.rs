//! The errors that end a session (a tool's failure is a result, not one of
//! these).

/// Why `airlock mcp` could not serve, or could not close its sandbox.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The async runtime or the signal handlers could not be set up.
    #[error("setting up the server: {0}")]
    Setup(#[source] std::io::Error),
    /// The client went away or spoke no MCP before the handshake ended.
    #[error("MCP handshake on stdio: {0}")]
    Handshake(String),
    /// The session's sandbox did not close cleanly (its processes are
    /// killed all the same; the message says what failed).
    #[error("closing sandbox {id}: {source}")]
    Close {
        /// The sandbox's id.
        id: String,
        /// What failed (boxed: the runtime's error is large).
        #[source]
        source: Box<airlock_runtime::RuntimeError>,
    },
}
