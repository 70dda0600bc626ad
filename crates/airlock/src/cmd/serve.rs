//! `airlock serve`: the HTTP API of live sandboxes (see docs/serve.md).

use std::path::PathBuf;
use std::process::ExitCode;

use airlock_server::{ListenOptions, ServerConfig};

/// Serve live sandboxes over an HTTP API on a unix socket (and optionally
/// loopback TCP).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The unix socket (mode 0600) needs no token: only its owner (and root) \
can connect. --listen adds TCP, where every request needs `Authorization: Bearer TOKEN` with the \
first line of --token-file (which must not be readable by other users).

SIGTERM or SIGINT closes every sandbox, removes the socket and exits 0. \
If the server is killed, its sandboxes die with it.

Routes, errors and examples: docs/serve.md, or GET /openapi.json."
)]
pub(crate) struct Args {
    /// The unix socket (default $XDG_RUNTIME_DIR/airlock/serve.sock, else
    /// /run/airlock/serve.sock). A live socket there is never replaced; a
    /// stale one is.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also listen on TCP at IP:PORT (loopback, e.g. 127.0.0.1:8787);
    /// requires --token-file.
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    listen: Option<String>,
    /// The bearer token for --listen: the file's first line (at least 16
    /// characters; the file must not be world-readable).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Let --listen take a non-loopback address (anyone who reaches it
    /// with the token runs code as this user).
    #[arg(long, requires = "listen")]
    allow_non_loopback: bool,
    /// Most live sandboxes at once; more creates get 429.
    #[arg(long, value_name = "N", default_value_t = airlock_server::DEFAULT_MAX_SANDBOXES)]
    max_sandboxes: usize,
    /// Most bytes the live sandboxes' memory limits may add up to (a
    /// profile without one counts 1 GiB), with a unit (8G) or in bytes;
    /// default: the host's memory. More creates get 429.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    memory_budget: Option<u64>,
    /// Named profiles are looked for here first (NAME.toml), then among the
    /// built-in ones.
    #[arg(long, value_name = "DIR")]
    profiles_dir: Option<PathBuf>,
    /// Write each sandbox's audit log to DIR/ID.jsonl (GET .../audit reads
    /// it). Without it, the profile's `[audit] dir` decides.
    #[arg(long, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
    /// Use this cgroup hierarchy instead of the detected one.
    #[arg(long, value_name = "DIR")]
    cgroup_root: Option<PathBuf>,
    /// Most bytes of one file upload, download or stdin write (413 past
    /// it), with a unit or in bytes.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "64M")]
    file_limit: u64,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|e| format!("{e}"));
    }
    s.parse::<airlock_policy::ByteSize>()
        .map(|b| b.bytes())
        .map_err(|e| e.to_string())
}

/// The host's memory (MemTotal), or 16 GiB when /proc/meminfo says nothing.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(16 << 30)
}

pub(crate) fn main(a: Args) -> anyhow::Result<ExitCode> {
    let tcp = match &a.listen {
        Some(addr) => {
            let addr = airlock_server::check_listen_addr(addr, a.allow_non_loopback)?;
            let file = a
                .token_file
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("--listen requires --token-file"))?;
            Some((addr, airlock_server::read_token_file(file)?))
        }
        None => None,
    };
    if a.max_sandboxes == 0 {
        anyhow::bail!("--max-sandboxes: must be at least 1");
    }
    if let Some(d) = &a.audit_dir {
        std::fs::create_dir_all(d)
            .map_err(|e| anyhow::anyhow!("--audit-dir {}: {e}", d.display()))?;
    }
    let config = ServerConfig {
        profiles_dir: a.profiles_dir,
        max_sandboxes: a.max_sandboxes,
        memory_budget: a.memory_budget.unwrap_or_else(host_memory),
        audit_dir: a.audit_dir,
        cgroup_root: a.cgroup_root,
        file_limit: usize::try_from(a.file_limit).unwrap_or(usize::MAX),
        ..ServerConfig::default()
    };
    let socket = a.socket.unwrap_or_else(airlock_server::default_socket_path);
    let listen = ListenOptions {
        socket: socket.clone(),
        tcp: tcp.clone(),
    };
    eprintln!(
        "airlock: serving on {}{} (at most {} sandboxes, memory budget {} bytes)",
        socket.display(),
        tcp.map(|(a, _)| format!(" and http://{a}"))
            .unwrap_or_default(),
        config.max_sandboxes,
        config.memory_budget
    );
    let closed = airlock_server::run(config, listen)?;
    eprintln!("airlock: stopped; closed {closed} sandbox(es)");
    Ok(ExitCode::SUCCESS)
}
