//! A host workspace directory: opened and checked by the supervisor, never
//! looked up as the sandbox's uid, and handed to init as a mount.
//!
//! The supervisor opens the path with `openat2(RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)`: a component that is (or was swapped for) a
//! symbolic link fails the open instead of redirecting the bind. From then
//! on only the directory fd is used:
//! - run by root, the supervisor clones it into a detached mount
//!   (`open_tree(OPEN_TREE_CLONE)`) and idmaps that mount
//!   (`mount_setattr(MOUNT_ATTR_IDMAP)`) with a helper user namespace that
//!   maps the directory's owner to the sandbox's own host uid. init moves
//!   the mount into place (`move_mount`), so a root-owned directory under a
//!   0700 parent works, the sandbox sees its files as its own, and what it
//!   creates is owned on the host by the directory's owner, while no
//!   sandbox process ever runs as that owner;
//! - rootless, the sandbox's host uid is the caller's, so init opens the
//!   same real path beneath the old root, again without following
//!   symlinks, checks that it is still the directory the supervisor opened
//!   (device and inode), and binds that fd.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags, CWD};
use rustix::mount::{MoveMountFlags, OpenTreeFlags};
use serde::{Deserialize, Serialize};

use crate::error::SpecError;
use crate::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID};

/// The fd number at which init receives a detached workspace mount.
pub(crate) const TREE_FD: i32 = 4;

/// The workspace directory, open on the host side.
#[derive(Debug)]
pub(crate) struct HostWorkspace {
    /// Its real path (the same as given, made absolute, with no symlink).
    pub(crate) path: PathBuf,
    pub(crate) dir: OwnedFd,
    /// Its owner.
    pub(crate) uid: u32,
    /// Its group.
    pub(crate) gid: u32,
    dev: u64,
    ino: u64,
}

/// How init attaches the workspace (part of init's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Attach {
    /// A detached mount made by the supervisor waits at [`TREE_FD`]: move
    /// it into place.
    Tree,
    /// Open `path` beneath the host root without following symlinks, check
    /// it is still the directory the supervisor opened, and bind it.
    Lookup {
        /// The real host path.
        path: PathBuf,
        /// `st_dev` the supervisor saw.
        dev: u64,
        /// `st_ino` the supervisor saw.
        ino: u64,
    },
}

fn ws_err(path: &Path, reason: impl Into<String>) -> SpecError {
    SpecError::Workspace {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The first component of `path` that is a symbolic link, and its target.
fn first_symlink(path: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut at = PathBuf::new();
    for c in path.components() {
        at.push(c);
        if matches!(c, Component::Normal(_)) {
            if let Ok(target) = std::fs::read_link(&at) {
                return Some((at, target));
            }
        }
    }
    None
}

/// Why `openat2` refused `path`, in words that name the user's path.
fn open_failure(path: &Path, errno: rustix::io::Errno) -> SpecError {
    match errno {
        rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => {
            let real = std::fs::canonicalize(path)
                .map(|p| format!(": pass its real path, {}", p.display()))
                .unwrap_or_default();
            match first_symlink(path) {
                Some((link, target)) => ws_err(
                    path,
                    format!(
                        "{} is a symbolic link (to {}); airlock does not follow symbolic links \
                         in a workspace path, so that none can redirect the bind{real}",
                        link.display(),
                        target.display()
                    ),
                ),
                None => ws_err(
                    path,
                    format!(
                        "a component is a symbolic link; airlock does not follow symbolic \
                         links in a workspace path{real}"
                    ),
                ),
            }
        }
        rustix::io::Errno::NOENT => ws_err(path, "does not exist"),
        rustix::io::Errno::NOTDIR => ws_err(path, "is not a directory"),
        e => ws_err(path, std::io::Error::from(e).to_string()),
    }
}

/// Open `path` (absolute) for binding: no symlink may appear in it.
pub(crate) fn open(path: &Path) -> Result<HostWorkspace, SpecError> {
    let dir = rustix::fs::openat2(
        CWD,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| open_failure(path, e))?;
    let st = rustix::fs::fstat(&dir).map_err(|e| ws_err(path, format!("fstat: {e}")))?;
    // The path as the kernel names the directory it opened: absolute,
    // without "." or "..", and (since none was followed) without symlinks.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .map_err(|e| ws_err(path, format!("reading its real path: {e}")))?;
    if !real.is_absolute() {
        return Err(ws_err(
            path,
            format!("is not reachable from this process's root ({real:?})"),
        ));
    }
    Ok(HostWorkspace {
        path: real,
        dir,
        uid: st.st_uid,
        gid: st.st_gid,
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

impl HostWorkspace {
    /// How init finds this directory rootless (see [`Attach::Lookup`]).
    pub(crate) fn lookup(&self) -> Attach {
        Attach::Lookup {
            path: self.path.clone(),
            dev: self.dev,
            ino: self.ino,
        }
    }

    /// A detached copy of the directory's mount tree, nosuid and nodev,
    /// with the owner's uid and gid mapped to `host_uid`/`host_gid` when
    /// `idmap` is set. Needs CAP_SYS_ADMIN over the host's mount namespace
    /// (root). The fd is at least [`TREE_FD`] + 1, so that the cloned child
    /// can move it to [`TREE_FD`] without clobbering its other sources.
    pub(crate) fn detached_tree(
        &self,
        idmap: Option<(u32, u32)>,
    ) -> Result<OwnedFd, sys::SysError> {
        let tree = rustix::mount::open_tree(
            &self.dir,
            "",
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_EMPTY_PATH
                | OpenTreeFlags::AT_RECURSIVE,
        )
        .map_err(|e| sys::SysError::from_errno("open_tree", e.raw_os_error()))?;
        let userns = match idmap {
            Some((uid, gid)) => Some(sys::mapping_userns(self.uid, uid, self.gid, gid)?),
            None => None,
        };
        let empty = CString::default();
        sys::mount_setattr(
            tree.as_raw_fd(),
            &empty,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            userns.as_ref().map(|u| u.as_fd()),
        )?;
        rustix::io::fcntl_dupfd_cloexec(&tree, TREE_FD + 1)
            .map_err(|e| sys::SysError::from_errno("fcntl(F_DUPFD_CLOEXEC)", e.raw_os_error()))
    }
}

/// Why a workspace could not be attached inside the sandbox.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttachError {
    /// A syscall failed.
    #[error("workspace {path:?}: {call}: {source}")]
    Sys {
        /// The user's path.
        path: PathBuf,
        /// The call.
        call: &'static str,
        /// Its error.
        #[source]
        source: std::io::Error,
    },
    /// The directory changed between the supervisor's check and the bind.
    #[error(
        "workspace {path:?} was replaced while the sandbox was being built (it is no longer \
         the directory airlock opened); nothing was bound"
    )]
    Replaced {
        /// The user's path.
        path: PathBuf,
    },
}

/// init: attach the workspace at `target` (a directory of the new root),
/// nosuid and nodev. `old_root` is where the host root is reachable.
pub(crate) fn attach(
    how: &Attach,
    user_path: &Path,
    old_root: &Path,
    target: &Path,
) -> Result<(), AttachError> {
    let fail = |call: &'static str| {
        move |e: rustix::io::Errno| AttachError::Sys {
            path: user_path.to_path_buf(),
            call,
            source: e.into(),
        }
    };
    let tree: OwnedFd = match how {
        Attach::Tree => {
            // SAFETY: the cloned child placed the supervisor's detached
            // mount at TREE_FD and init has not opened or closed it since;
            // init owns it from here, and it is closed below (before any
            // payload is forked).
            unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(TREE_FD) }
        }
        Attach::Lookup { path, dev, ino } => {
            let root = rustix::fs::open(
                old_root,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(fail("open old root"))?;
            let rel = path.strip_prefix("/").unwrap_or(path);
            let rel = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            };
            let dir = rustix::fs::openat2(
                &root,
                rel,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::BENEATH,
            )
            .map_err(|e| match e {
                rustix::io::Errno::LOOP | rustix::io::Errno::NOENT | rustix::io::Errno::XDEV => {
                    AttachError::Replaced {
                        path: user_path.to_path_buf(),
                    }
                }
                e => fail("openat2")(e),
            })?;
            let st = rustix::fs::fstat(&dir).map_err(fail("fstat"))?;
            if st.st_dev != *dev || st.st_ino != *ino {
                return Err(AttachError::Replaced {
                    path: user_path.to_path_buf(),
                });
            }
            rustix::mount::open_tree(
                &dir,
                "",
                OpenTreeFlags::OPEN_TREE_CLONE
                    | OpenTreeFlags::OPEN_TREE_CLOEXEC
                    | OpenTreeFlags::AT_EMPTY_PATH
                    | OpenTreeFlags::AT_RECURSIVE,
            )
            .map_err(fail("open_tree"))?
        }
    };
    rustix::mount::move_mount(
        &tree,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(fail("move_mount"))?;
    drop(tree);
    let t = CString::new(target.as_os_str().as_bytes()).expect("paths hold no NUL");
    sys::mount_setattr(
        libc::AT_FDCWD,
        &t,
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        None,
    )
    .map_err(|e| AttachError::Sys {
        path: user_path.to_path_buf(),
        call: "mount_setattr",
        source: e.source,
    })
}
