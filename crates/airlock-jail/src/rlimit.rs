//! rlimits for the payload: open files, file size, no core dumps, and the
//! fallbacks used when no cgroup controller can enforce memory or pids.

use rustix::process::{setrlimit, Resource, Rlimit};

use crate::spec::RlimitSpec;

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
pub(crate) fn apply(r: &RlimitSpec) -> Result<(), String> {
    set(Resource::Nofile, "RLIMIT_NOFILE", r.nofile)?;
    set(Resource::Fsize, "RLIMIT_FSIZE", r.fsize)?;
    set(Resource::Core, "RLIMIT_CORE", 0)?;
    if let Some(m) = r.memory_fallback {
        set(Resource::As, "RLIMIT_AS", m)?;
    }
    if let Some(n) = r.nproc_fallback {
        set(Resource::Nproc, "RLIMIT_NPROC", u64::from(n))?;
    }
    Ok(())
}
