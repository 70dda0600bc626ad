//! Host uids of root-run sandboxes: one from a reserved range per live
//! sandbox, never an account's and never shared.
//!
//! A lease is an open file description of one lock file with an OFD byte
//! lock (`F_OFD_SETLK`) on the byte whose offset is the uid's index in the
//! range. OFD locks conflict between open file descriptions, also within one
//! process, and the kernel drops them when the description is closed, so a
//! lease ends with its sandbox, even when airlock is SIGKILLed, and two
//! airlock processes (a server and a CLI run) never hand out the same uid.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::SpawnError;

/// First host uid (and gid) of the range root-run sandboxes run as.
pub const ROOT_MODE_UID_BASE: u32 = 2_000_000_000;
/// How many host uids the range holds: as many root-run sandboxes can be
/// live on one host at once.
pub const ROOT_MODE_UID_COUNT: u32 = 65_536;

/// Where the lock file lives: root-only, on a tmpfs cleared at boot.
const LOCK_DIR: &str = "/run/airlock";
const LOCK_FILE: &str = "host-uids.lock";

/// One leased host uid; the lease ends when this is dropped.
#[derive(Debug)]
pub(crate) struct HostIdLease {
    uid: u32,
    _lock: fs::File,
}

impl HostIdLease {
    /// The leased uid (the gid has the same number).
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// Lease a free uid of the range, starting at a random index.
    pub(crate) fn acquire() -> Result<HostIdLease, SpawnError> {
        Self::acquire_in(Path::new(LOCK_DIR), ROOT_MODE_UID_COUNT)
    }

    fn acquire_in(dir: &Path, count: u32) -> Result<HostIdLease, SpawnError> {
        let io_err = |path: PathBuf| move |source| SpawnError::HostIds { path, source };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir.to_path_buf()))?;
        let path = dir.join(LOCK_FILE);
        let start = crate::sys::random_u32() % count;
        // The lease owns this description alone and locks one byte with it:
        // a failed attempt locks nothing, so closing it frees exactly the
        // lease's uid.
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err(path.clone()))?;
        for i in 0..count {
            let index = (start + i) % count;
            match crate::sys::ofd_try_lock_byte(file.as_raw_fd(), u64::from(index)) {
                Ok(true) => {
                    return Ok(HostIdLease {
                        uid: ROOT_MODE_UID_BASE + index,
                        _lock: file,
                    })
                }
                Ok(false) => continue,
                Err(source) => return Err(SpawnError::HostIds { path, source }),
            }
        }
        Err(SpawnError::HostIdsExhausted { count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_unique_while_held_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let leases: Vec<HostIdLease> = (0..64)
            .map(|_| HostIdLease::acquire_in(dir.path(), ROOT_MODE_UID_COUNT).unwrap())
            .collect();
        let mut uids: Vec<u32> = leases.iter().map(HostIdLease::uid).collect();
        uids.sort_unstable();
        uids.dedup();
        assert_eq!(uids.len(), 64, "two live leases share a uid");
        assert!(uids
            .iter()
            .all(|u| (ROOT_MODE_UID_BASE..ROOT_MODE_UID_BASE + ROOT_MODE_UID_COUNT).contains(u)));
        drop(leases);
        // In a small range: fill it, the next lease fails, and a freed uid
        // is the one the next lease gets.
        let mut all: Vec<HostIdLease> = (0..16)
            .map(|_| HostIdLease::acquire_in(dir.path(), 16).unwrap())
            .collect();
        assert!(matches!(
            HostIdLease::acquire_in(dir.path(), 16),
            Err(SpawnError::HostIdsExhausted { count: 16 })
        ));
        let freed = all.swap_remove(7).uid();
        assert_eq!(
            HostIdLease::acquire_in(dir.path(), 16).unwrap().uid(),
            freed
        );
    }
}
