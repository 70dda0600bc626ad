//! Where the server listens and how it stops: a unix socket (mode 0600,
//! a live one never clobbered, a stale one replaced, removed at the end),
//! optionally loopback TCP behind a bearer token; SIGTERM and SIGINT close
//! every sandbox before the server exits.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::state::{AppState, ServerConfig};

/// Errors of starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The unix socket cannot be used.
    #[error("socket {}: {reason}", path.display())]
    Socket {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The token file cannot be used.
    #[error("token file {}: {reason}", path.display())]
    Token {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The TCP address cannot be used.
    #[error("--listen {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// What is wrong.
        reason: String,
    },
    /// The async runtime could not start.
    #[error("starting the server's runtime: {0}")]
    Runtime(std::io::Error),
}

/// How the server listens.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// The unix socket's path.
    pub socket: PathBuf,
    /// A TCP address too, with its token (see [`read_token_file`]).
    pub tcp: Option<(SocketAddr, String)>,
}

/// `$XDG_RUNTIME_DIR/airlock/serve.sock` when XDG_RUNTIME_DIR is set
/// (and absolute), else `/run/airlock/serve.sock`.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() => d.join("airlock/serve.sock"),
        _ => PathBuf::from("/run/airlock/serve.sock"),
    }
}

/// Reads a bearer token: the file's first line, at least 16 characters;
/// refused when the file is readable by others than its owner and group.
pub fn read_token_file(path: &Path) -> Result<String, ServeError> {
    let err = |reason: String| ServeError::Token {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(err(format!(
            "mode {mode:03o} lets every user read or change the token; chmod 600 it"
        )));
    }
    if mode & 0o070 != 0 {
        tracing::warn!(path = %path.display(), "the token file is readable by its group (mode {mode:03o})");
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 {
        return Err(err(
            "the token (its first line) must be at least 16 characters".into(),
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(
            "the token must be printable ASCII without spaces".into()
        ));
    }
    Ok(token)
}

/// Checks a `--listen` address: loopback unless `allow_remote`.
pub fn check_listen_addr(addr: &str, allow_remote: bool) -> Result<SocketAddr, ServeError> {
    let a: SocketAddr = addr.parse().map_err(|e| ServeError::Listen {
        addr: addr.into(),
        reason: format!("{e}; give IP:PORT, e.g. 127.0.0.1:8787"),
    })?;
    if !a.ip().is_loopback() {
        if !allow_remote {
            return Err(ServeError::Listen {
                addr: addr.into(),
                reason: "not a loopback address: the API runs code as this user; \
                         pass --allow-non-loopback to listen there anyway"
                    .into(),
            });
        }
        tracing::warn!(%a, "listening on a non-loopback address: anyone who can reach it and holds the token runs code as this user");
    }
    Ok(a)
}

/// A bound unix socket, removed when dropped (if it is still ours).
#[derive(Debug)]
pub struct BoundSocket {
    listener: Option<std::os::unix::net::UnixListener>,
    path: PathBuf,
    ino: (u64, u64),
}

impl BoundSocket {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds the unix socket at `path` with mode 0600. The directory is made
/// (0700) when missing. A live socket there (one that accepts a
/// connection) is refused; a stale one is removed; anything else there is
/// refused.
pub fn bind_unix(path: &Path) -> Result<BoundSocket, ServeError> {
    let err = |reason: String| ServeError::Socket {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| err(format!("making its directory: {e}")))?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(err(
                    "another server is listening there; stop it or give another --socket".into(),
                ))
            }
            Err(_) => {
                tracing::info!(path = %path.display(), "removing a stale socket");
                std::fs::remove_file(path)
                    .map_err(|e| err(format!("removing the stale socket: {e}")))?;
            }
        },
        Ok(_) => return Err(err("exists and is not a socket; not replaced".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    // The socket is made 0600 from the start: no moment when others may
    // connect.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(|e| err(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(format!("chmod 600: {e}")))?;
    let m = std::fs::symlink_metadata(path).map_err(|e| err(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| err(e.to_string()))?;
    Ok(BoundSocket {
        listener: Some(listener),
        path: path.to_path_buf(),
        ino: (m.dev(), m.ino()),
    })
}

/// How long in-flight requests get after every sandbox was closed at
/// shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Runs the server until SIGTERM or SIGINT, then closes every sandbox,
/// removes the socket and returns how many sandboxes it closed. Blocks.
pub fn run(config: ServerConfig, listen: ListenOptions) -> Result<usize, ServeError> {
    let mut socket = bind_unix(&listen.socket)?;
    let tcp = match &listen.tcp {
        Some((addr, _)) => {
            Some(
                std::net::TcpListener::bind(addr).map_err(|e| ServeError::Listen {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?,
            )
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("airlock-serve")
        .build()
        .map_err(ServeError::Runtime)?;
    let state = AppState::new(config);
    let unix_std = socket.listener.take().expect("bound above");
    let closed = rt.block_on(async {
        let unix = tokio::net::UnixListener::from_std(unix_std).map_err(|e| ServeError::Socket {
            path: listen.socket.clone(),
            reason: e.to_string(),
        })?;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let signals = {
            let state = state.clone();
            tokio::spawn(async move {
                let closed = wait_for_signal().await;
                tracing::info!("{closed}: closing every sandbox");
                let n = tokio::task::spawn_blocking(move || state.close_all())
                    .await
                    .unwrap_or(0);
                let _ = stop_tx.send(true);
                n
            })
        };
        let sweeper = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    state.sweep();
                }
            })
        };
        let app = crate::routes::router(state.clone(), None);
        let unix_server = {
            let mut stop = stop.clone();
            axum::serve(unix, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
        };
        let tcp_server = match (tcp, &listen.tcp) {
            (Some(l), Some((_, token))) => {
                l.set_nonblocking(true).map_err(|e| ServeError::Listen {
                    addr: format!("{:?}", l.local_addr()),
                    reason: e.to_string(),
                })?;
                let l = tokio::net::TcpListener::from_std(l).map_err(|e| ServeError::Listen {
                    addr: "tcp".into(),
                    reason: e.to_string(),
                })?;
                let app = crate::routes::router(state.clone(), Some(token.clone()));
                let mut stop = stop.clone();
                Some(tokio::spawn(async move {
                    axum::serve(l, app)
                        .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                        .await
                }))
            }
            _ => None,
        };
        let drained = {
            let mut stop = stop.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
                tokio::time::sleep(DRAIN).await;
            }
        };
        tokio::select! {
            r = unix_server => {
                if let Err(e) = r {
                    tracing::error!("the server stopped: {e}");
                }
            }
            _ = drained => tracing::warn!("requests still running {DRAIN:?} after shutdown; stopping"),
        }
        if let Some(t) = tcp_server {
            t.abort();
        }
        sweeper.abort();
        // A server error (not a signal) also closes the sandboxes.
        let n = if signals.is_finished() {
            signals.await.unwrap_or(0)
        } else {
            signals.abort();
            let state = state.clone();
            tokio::task::spawn_blocking(move || state.close_all())
                .await
                .unwrap_or(0)
        };
        Ok::<usize, ServeError>(n)
    })?;
    // Detached blocking work (a stuck stdin write) must not hold the exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(socket);
    Ok(closed)
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot watch SIGTERM and SIGINT; the server stops only when killed");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
