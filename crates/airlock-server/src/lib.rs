//! airlock-server: `airlock serve`, live sandboxes over an HTTP/1.1 JSON
//! API (axum), with an OpenAPI document generated from its types (utoipa).
//!
//! It owns the routes and their wire types, the mapping of runtime errors
//! to HTTP statuses, capacity (a count and a memory budget), where the
//! server listens (a 0600 unix socket; optionally loopback TCP behind a
//! bearer token), shutdown, and a small blocking client for the CLI. Every
//! sandbox operation is one call of `airlock_runtime::Sandbox`, run on
//! tokio's blocking pool; the server duplicates none of the runtime's
//! logic. `docs/serve.md` describes the API.

mod api;
mod client;
mod error;
mod listen;
mod profiles;
mod routes;
mod state;
mod text;

pub use api::{
    AuditResponse, CheckpointBody, Command, CreateSandbox, Done, DurationValue, ExecBody,
    ExecResponse, FileList, FileView, Health, OutputResponse, ProcessList, ProcessStatus,
    ProfileValue, ResetBody, SandboxList, SandboxView, SignalBody, SignalValue, Started, Took,
};
pub use client::{encode_query, Client, ClientError, OnChunk, Reply};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use listen::{
    bind_unix, check_listen_addr, default_socket_path, read_token_file, run, BoundSocket,
    ListenOptions, ServeError,
};
pub use routes::{router, ApiDoc};
pub use state::{AppState, ServerConfig, CLOSED_KEPT};

/// Default `--max-sandboxes`.
pub const DEFAULT_MAX_SANDBOXES: usize = 64;

/// What a profile without a memory limit counts against the memory
/// budget: 1 GiB (the `default` profile's limit).
pub const UNLIMITED_MEMORY_COUNTS: u64 = 1 << 30;

/// Most bytes of a JSON request body: 1 MiB.
pub const JSON_LIMIT: usize = 1 << 20;

/// Most bytes of a file upload or download (and of a stdin write): 64 MiB.
pub const FILE_LIMIT: usize = 64 << 20;

/// Most bytes one `.../output` answer carries: 1 MiB.
pub const OUTPUT_PAGE: usize = 1 << 20;
