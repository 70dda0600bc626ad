//! The server's sandboxes and its capacity: a count and a memory budget,
//! reserved before a sandbox is built so two creates cannot both take the
//! last slot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use airlock_runtime::Sandbox;
use axum::http::StatusCode;

use crate::error::ApiError;

/// How long a sandbox that closed on its own (ttl, idle, its init died)
/// stays listed before the server forgets it.
pub const CLOSED_KEPT: Duration = Duration::from_secs(600);

/// What the server is told at start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where named profiles are looked for first (`NAME.toml`).
    pub profiles_dir: Option<PathBuf>,
    /// Most live sandboxes at once.
    pub max_sandboxes: usize,
    /// Most bytes the live sandboxes' memory limits may add up to.
    pub memory_budget: u64,
    /// Each sandbox writes its audit log to `DIR/ID.jsonl`.
    pub audit_dir: Option<PathBuf>,
    /// Use this cgroup hierarchy instead of detecting one.
    pub cgroup_root: Option<PathBuf>,
    /// Most bytes of a request body other than a file upload.
    pub json_limit: usize,
    /// Most bytes of a file upload or download.
    pub file_limit: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            profiles_dir: None,
            max_sandboxes: crate::DEFAULT_MAX_SANDBOXES,
            memory_budget: 16 << 30,
            audit_dir: None,
            cgroup_root: None,
            json_limit: crate::JSON_LIMIT,
            file_limit: crate::FILE_LIMIT,
        }
    }
}

pub(crate) struct Entry {
    pub(crate) sandbox: Sandbox,
    pub(crate) memory: u64,
    /// When the server first saw it closed on its own.
    closed_seen: Option<Instant>,
}

#[derive(Default)]
struct Registry {
    sandboxes: BTreeMap<String, Entry>,
    /// Creates in flight: slots and memory already reserved.
    pending: usize,
    pending_memory: u64,
    pending_ids: Vec<String>,
}

impl Registry {
    fn live(&self) -> (usize, u64) {
        let mut n = self.pending;
        let mut mem = self.pending_memory;
        for e in self.sandboxes.values() {
            if !e.sandbox.is_closed() {
                n += 1;
                mem += e.memory;
            }
        }
        (n, mem)
    }
}

/// The shared state of every request.
#[derive(Clone)]
pub struct AppState {
    pub(crate) config: Arc<ServerConfig>,
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A slot reserved for a sandbox being built; dropped unused, it is
/// given back.
pub(crate) struct Reservation {
    state: AppState,
    memory: u64,
    id: Option<String>,
    used: bool,
}

impl Reservation {
    /// Puts the built sandbox in the slot.
    pub(crate) fn fill(mut self, sandbox: Sandbox) {
        let mut r = self.state.lock();
        r.pending -= 1;
        r.pending_memory -= self.memory;
        if let Some(id) = &self.id {
            r.pending_ids.retain(|p| p != id);
        }
        r.sandboxes.insert(
            sandbox.id().to_string(),
            Entry {
                sandbox,
                memory: self.memory,
                closed_seen: None,
            },
        );
        self.used = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        let mut r = self.state.lock();
        r.pending -= 1;
        r.pending_memory -= self.memory;
        if let Some(id) = &self.id {
            r.pending_ids.retain(|p| p != id);
        }
    }
}

impl AppState {
    /// The state of a server with this configuration.
    pub fn new(config: ServerConfig) -> Self {
        AppState {
            config: Arc::new(config),
            registry: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a slot and `memory` bytes of the budget, or 429; 409 when
    /// `id` is taken.
    pub(crate) fn reserve(&self, memory: u64, id: Option<&str>) -> Result<Reservation, ApiError> {
        let mut r = self.lock();
        if let Some(id) = id {
            if r.sandboxes.contains_key(id) || r.pending_ids.iter().any(|p| p == id) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("id: a sandbox {id:?} already exists"),
                ));
            }
        }
        let (n, mem) = r.live();
        let c = &self.config;
        if n >= c.max_sandboxes {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "over_capacity",
                format!(
                    "{n} live sandboxes: the server's --max-sandboxes is {}",
                    c.max_sandboxes
                ),
            ));
        }
        if mem.saturating_add(memory) > c.memory_budget {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "over_capacity",
                format!(
                    "this sandbox's memory limit ({memory} bytes) does not fit: {mem} of the \
                     server's --memory-budget of {} bytes are taken by live sandboxes",
                    c.memory_budget
                ),
            ));
        }
        r.pending += 1;
        r.pending_memory += memory;
        if let Some(id) = id {
            r.pending_ids.push(id.to_string());
        }
        Ok(Reservation {
            state: self.clone(),
            memory,
            id: id.map(String::from),
            used: false,
        })
    }

    /// A sandbox by id, or 404.
    pub(crate) fn get(&self, id: &str) -> Result<(Sandbox, u64), ApiError> {
        self.lock()
            .sandboxes
            .get(id)
            .map(|e| (e.sandbox.clone(), e.memory))
            .ok_or_else(|| {
                ApiError::not_found(format!("no sandbox {id:?}")).with_reason("no_sandbox")
            })
    }

    /// Forgets a sandbox (after its close).
    pub(crate) fn remove(&self, id: &str) -> Option<Sandbox> {
        self.lock().sandboxes.remove(id).map(|e| e.sandbox)
    }

    /// Every sandbox, with its budgeted memory.
    pub(crate) fn all(&self) -> Vec<(Sandbox, u64)> {
        self.lock()
            .sandboxes
            .values()
            .map(|e| (e.sandbox.clone(), e.memory))
            .collect()
    }

    /// Live sandboxes (building ones included) and their memory.
    pub(crate) fn usage(&self) -> (usize, u64) {
        self.lock().live()
    }

    /// Forgets sandboxes that closed on their own more than
    /// [`CLOSED_KEPT`] ago.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        self.lock().sandboxes.retain(|_, e| {
            if !e.sandbox.is_closed() {
                return true;
            }
            let seen = *e.closed_seen.get_or_insert(now);
            now.duration_since(seen) < CLOSED_KEPT
        });
    }

    /// Closes every sandbox (shutdown), in parallel; returns how many.
    pub fn close_all(&self) -> usize {
        let all: Vec<Sandbox> = std::mem::take(&mut self.lock().sandboxes)
            .into_values()
            .map(|e| e.sandbox)
            .collect();
        let n = all.len();
        let threads: Vec<_> = all
            .into_iter()
            .map(|sb| {
                std::thread::spawn(move || {
                    if let Err(e) = sb.close() {
                        tracing::warn!(sandbox = sb.id(), "closing at shutdown: {e}");
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
        n
    }
}
