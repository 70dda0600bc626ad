//! rlimits for the payload: open files, file size, no core dumps, and the
//! fallbacks used when no cgroup controller can enforce memory or pids.

use rustix::process::{setrlimit, Resource, Rlimit};

use serde::{Deserialize, Serialize};

use crate::spec::RlimitSpec;

/// rlimits standing in for cgroup limits the host cannot enforce.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Fallback {
    /// RLIMIT_AS in bytes, for a memory limit without a memory controller.
    pub(crate) memory: Option<u64>,
    /// RLIMIT_NPROC, for a pids limit without a pids controller.
    pub(crate) nproc: Option<u32>,
}

fn set(res: Resource, name: &str, v: u64) -> Result<(), String> {
    setrlimit(
        res,
        Rlimit {
            current: Some(v),
            maximum: Some(v),
        },
    )
    .map_err(|e| format!("setrlimit({name}, {v}): {e}"))
}

/// Apply the limits to the calling process; they are inherited by every
/// descendant and cannot be raised again without CAP_SYS_RESOURCE.
pub(crate) fn apply(r: &RlimitSpec, fallback: &Fallback) -> Result<(), String> {
    set(Resource::Nofile, "RLIMIT_NOFILE", r.nofile)?;
    set(Resource::Fsize, "RLIMIT_FSIZE", r.fsize)?;
    set(Resource::Core, "RLIMIT_CORE", 0)?;
    if let Some(m) = fallback.memory {
        set(Resource::As, "RLIMIT_AS", m)?;
    }
    if let Some(n) = fallback.nproc {
        set(Resource::Nproc, "RLIMIT_NPROC", u64::from(n))?;
    }
    Ok(())
}
