//! A live sandbox's files API: read, write, list, stat, remove and mkdir
//! beneath its writable places, done by the supervisor.
//!
//! Every path is resolved against a directory fd taken at create (the
//! places' tmpfs mounts, opened by init; a host workspace, opened by the
//! supervisor), with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`: nothing is looked up by host
//! path, and no symlink, `..` or mount that the sandbox planted leads out.
//! A regular file with more than one link is refused too: the sandbox may
//! have linked it to something it wants the caller to overwrite or read.
//! The supervisor works under the sandbox's own filesystem ids (its host
//! uid, or a host workspace's owner: `setfsuid`, per thread), so what it
//! creates belongs to whoever the sandbox's own creations belong to, and
//! it reads and writes with the sandbox's permissions, never root's.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::spawn::IdMap;
use crate::spec::JailSpec;
use crate::workspace::HostWorkspace;

/// Most entries a listing returns.
pub const MAX_LIST: usize = 10_000;

/// Errors of the files API. Each names the path as the caller gave it.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Nothing there.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// A directory where a file was needed.
    #[error("{0}: is a directory")]
    IsADirectory(String),
    /// A file where a directory was needed.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// Not beneath a writable place.
    #[error("{path}: outside the sandbox's writable places ({places})")]
    Outside {
        /// The path.
        path: String,
        /// The places, comma-separated.
        places: String,
    },
    /// A malformed path.
    #[error("{path}: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A symbolic link, or another mount, on the way.
    #[error("{0}: a symbolic link or another mount is on the path; it is not followed")]
    Link(String),
    /// A regular file with several hard links.
    #[error("{0}: has more than one hard link; it is not read or written through")]
    HardLink(String),
    /// Not a regular file (a FIFO, socket or device).
    #[error("{0}: not a regular file")]
    NotRegular(String),
    /// Over the size cap.
    #[error("{path}: {size} bytes; the cap is {max}")]
    TooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// Already there.
    #[error("{0}: already exists")]
    Exists(String),
    /// A non-empty directory without `recursive`.
    #[error("{0}: directory not empty")]
    NotEmpty(String),
    /// The place's filesystem is full.
    #[error("{0}: no space left in the sandbox's filesystem")]
    NoSpace(String),
    /// The sandbox made it unreadable or unwritable.
    #[error("{0}: permission denied")]
    Permission(String),
    /// Any other failure.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

fn map(path: &str, e: Errno) -> FileError {
    let p = path.to_string();
    match e {
        Errno::NOENT => FileError::NotFound(p),
        Errno::ISDIR => FileError::IsADirectory(p),
        Errno::NOTDIR => FileError::NotADirectory(p),
        Errno::LOOP | Errno::XDEV => FileError::Link(p),
        Errno::EXIST => FileError::Exists(p),
        Errno::NOTEMPTY => FileError::NotEmpty(p),
        Errno::NOSPC | Errno::DQUOT => FileError::NoSpace(p),
        Errno::ACCESS | Errno::PERM => FileError::Permission(p),
        e => FileError::Io {
            path: p,
            source: e.into(),
        },
    }
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// One file's facts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileInfo {
    /// Its path inside the sandbox.
    pub path: String,
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

fn info(path: &Path, st: &rustix::fs::Stat) -> FileInfo {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => FileKind::File,
        FileType::Directory => FileKind::Dir,
        FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    };
    FileInfo {
        path: path.display().to_string(),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into()),
        kind,
        size: st.st_size as u64,
        mode: st.st_mode & 0o7777,
        mtime: st.st_mtime,
    }
}

struct Place {
    path: PathBuf,
    dir: OwnedFd,
    /// The supervisor (root) works here as this uid and gid: what it
    /// creates is theirs, and it has their permissions only.
    fs_ids: Option<(u32, u32)>,
}

impl Place {
    fn enter(&self) -> Option<crate::sys::FsIds> {
        self.fs_ids
            .map(|(uid, gid)| crate::sys::as_fs_ids(uid, gid))
    }
}

/// The writable places of a live sandbox.
pub struct Places {
    places: Vec<Place>,
    workspace: PathBuf,
}

impl std::fmt::Debug for Places {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.places.iter().map(|p| &p.path))
            .finish()
    }
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

impl Places {
    pub(crate) fn new(
        from_init: Vec<(PathBuf, OwnedFd)>,
        host_ws: Option<HostWorkspace>,
        ids: &IdMap,
        spec: &JailSpec,
    ) -> Places {
        let root = rustix::process::geteuid().is_root();
        let sandbox_owner = root.then_some((ids.host_uid, ids.host_gid));
        let mut places = Vec::new();
        for (path, dir) in from_init {
            if path == spec.workspace_path {
                if let Some(w) = &host_ws {
                    // The host directory as the supervisor opened it: the
                    // sandbox's files there belong to its owner.
                    if let Ok(dir) = w.dir.try_clone() {
                        places.push(Place {
                            path,
                            dir,
                            fs_ids: (root && w.uid != 0).then_some((w.uid, w.gid)),
                        });
                    }
                    continue;
                }
            }
            places.push(Place {
                path,
                dir,
                fs_ids: sandbox_owner,
            });
        }
        Places {
            places,
            workspace: spec.workspace_path.clone(),
        }
    }

    /// The places, as paths inside the sandbox.
    pub fn roots(&self) -> Vec<PathBuf> {
        self.places.iter().map(|p| p.path.clone()).collect()
    }

    /// The place `path` is beneath and the path relative to it (empty for
    /// the place itself), and the normalized absolute path.
    fn locate(&self, path: &str) -> Result<(&Place, PathBuf, PathBuf), FileError> {
        if path.is_empty() {
            return Err(FileError::BadPath {
                path: path.into(),
                reason: "empty path",
            });
        }
        if path.contains('\0') {
            return Err(FileError::BadPath {
                path: path.into(),
                reason: "contains a NUL byte",
            });
        }
        if path.len() > 4096 {
            return Err(FileError::BadPath {
                path: path.chars().take(64).collect(),
                reason: "longer than 4096 bytes",
            });
        }
        let given = Path::new(path);
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            self.workspace.join(given)
        };
        let mut abs = PathBuf::from("/");
        for c in joined.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(n) => abs.push(n),
                Component::ParentDir => {
                    return Err(FileError::BadPath {
                        path: path.into(),
                        reason: "'..' is not allowed",
                    })
                }
                Component::Prefix(_) => unreachable!("not on unix"),
            }
        }
        let best = self
            .places
            .iter()
            .filter(|p| abs.starts_with(&p.path))
            .max_by_key(|p| p.path.components().count());
        match best {
            Some(p) => {
                let rel = abs
                    .strip_prefix(&p.path)
                    .expect("starts_with checked")
                    .to_path_buf();
                Ok((p, rel, abs))
            }
            None => Err(FileError::Outside {
                path: path.into(),
                places: self
                    .places
                    .iter()
                    .map(|p| p.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn open(place: &Place, rel: &Path, flags: OFlags, mode: u32) -> Result<OwnedFd, Errno> {
        let rel: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        // openat2 refuses O_PATH with any flag but these.
        let extra = if flags.contains(OFlags::PATH) {
            OFlags::CLOEXEC | OFlags::NOFOLLOW
        } else {
            OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY
        };
        rustix::fs::openat2(
            &place.dir,
            rel,
            flags | extra,
            Mode::from_raw_mode(mode),
            RESOLVE,
        )
    }

    /// The directory `rel`'s parent, and `rel`'s last component; with
    /// `create`, missing parents are made (0755, the sandbox's).
    fn parent(
        place: &Place,
        rel: &Path,
        create: bool,
        shown: &str,
    ) -> Result<(OwnedFd, CString), FileError> {
        let name = rel.file_name().ok_or_else(|| FileError::BadPath {
            path: shown.into(),
            reason: "names a writable place itself",
        })?;
        let name = CString::new(name.as_encoded_bytes()).expect("checked: no NUL");
        let mut dir = Self::open(place, Path::new(""), OFlags::PATH | OFlags::DIRECTORY, 0)
            .map_err(|e| map(shown, e))?;
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                let Component::Normal(c) = c else { continue };
                let next = rustix::fs::openat2(
                    &dir,
                    c,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    Mode::empty(),
                    RESOLVE,
                );
                dir = match next {
                    Ok(d) => d,
                    Err(Errno::NOENT) if create => {
                        match rustix::fs::mkdirat(&dir, c, Mode::from_raw_mode(0o755)) {
                            Ok(()) | Err(Errno::EXIST) => {}
                            Err(e) => return Err(map(shown, e)),
                        }
                        rustix::fs::openat2(
                            &dir,
                            c,
                            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                            Mode::empty(),
                            RESOLVE,
                        )
                        .map_err(|e| map(shown, e))?
                    }
                    Err(e) => return Err(map(shown, e)),
                };
            }
        }
        Ok((dir, name))
    }

    /// Reads a regular file of at most `max` bytes.
    pub fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, FileError> {
        let (place, rel, _) = self.locate(path)?;
        let _ids = place.enter();
        let fd = Self::open(place, &rel, OFlags::RDONLY | OFlags::NONBLOCK, 0)
            .map_err(|e| map(path, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| map(path, e))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Directory => return Err(FileError::IsADirectory(path.into())),
            _ => return Err(FileError::NotRegular(path.into())),
        }
        if st.st_nlink > 1 {
            return Err(FileError::HardLink(path.into()));
        }
        let size = st.st_size as u64;
        if size > max {
            return Err(FileError::TooLarge {
                path: path.into(),
                size,
                max,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        let f = std::fs::File::from(fd);
        use std::io::Read;
        f.take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| FileError::Io {
                path: path.into(),
                source: e,
            })?;
        if out.len() as u64 > max {
            return Err(FileError::TooLarge {
                path: path.into(),
                size: out.len() as u64,
                max,
            });
        }
        Ok(out)
    }

    /// Writes `data` to a regular file (created with `mode`, or truncated),
    /// making missing parent directories.
    pub fn write(&self, path: &str, data: &[u8], mode: Option<u32>) -> Result<FileInfo, FileError> {
        let (place, rel, abs) = self.locate(path)?;
        let _ids = place.enter();
        let (dir, name) = Self::parent(place, &rel, true, path)?;
        let perm = mode.unwrap_or(0o644) & 0o777;
        let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let (fd, created) = match rustix::fs::openat(
            &dir,
            &name,
            flags | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(perm),
        ) {
            Ok(fd) => (fd, true),
            Err(Errno::EXIST) => (
                rustix::fs::openat(&dir, &name, flags, Mode::empty()).map_err(|e| map(path, e))?,
                false,
            ),
            Err(e) => return Err(map(path, e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| map(path, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(FileError::NotRegular(path.into()));
        }
        if st.st_nlink > 1 {
            return Err(FileError::HardLink(path.into()));
        }
        if created || mode.is_some() {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(perm)).map_err(|e| map(path, e))?;
        }
        rustix::fs::ftruncate(&fd, 0).map_err(|e| map(path, e))?;
        let mut f = std::fs::File::from(fd);
        std::io::Write::write_all(&mut f, data).map_err(|e| match e.raw_os_error() {
            Some(n) => map(path, Errno::from_raw_os_error(n)),
            None => FileError::Io {
                path: path.into(),
                source: e,
            },
        })?;
        let st = rustix::fs::fstat(f.as_fd()).map_err(|e| map(path, e))?;
        Ok(info(&abs, &st))
    }

    /// A file's facts (a symlink is described, not followed).
    pub fn stat(&self, path: &str) -> Result<FileInfo, FileError> {
        let (place, rel, abs) = self.locate(path)?;
        let _ids = place.enter();
        if rel.as_os_str().is_empty() {
            let st = rustix::fs::fstat(&place.dir).map_err(|e| map(path, e))?;
            return Ok(info(&abs, &st));
        }
        let (dir, name) = Self::parent(place, &rel, false, path)?;
        let st =
            rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| map(path, e))?;
        Ok(info(&abs, &st))
    }

    /// A directory's entries (at most [`MAX_LIST`]; `true` when more were
    /// left out), sorted by name.
    pub fn list(&self, path: &str) -> Result<(Vec<FileInfo>, bool), FileError> {
        let (place, rel, abs) = self.locate(path)?;
        let _ids = place.enter();
        let fd = Self::open(place, &rel, OFlags::RDONLY | OFlags::DIRECTORY, 0)
            .map_err(|e| map(path, e))?;
        let mut out = Vec::new();
        let mut more = false;
        for entry in rustix::fs::Dir::read_from(&fd).map_err(|e| map(path, e))? {
            let entry = entry.map_err(|e| map(path, e))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            if out.len() >= MAX_LIST {
                more = true;
                break;
            }
            let Ok(st) = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue; // removed meanwhile
            };
            let n = std::ffi::OsStr::from_encoded_bytes_unchecked_safe(name.to_bytes());
            out.push(info(&abs.join(n), &st));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((out, more))
    }

    /// Makes a directory (and its parents with `parents`).
    pub fn mkdir(&self, path: &str, parents: bool) -> Result<FileInfo, FileError> {
        let (place, rel, abs) = self.locate(path)?;
        let _ids = place.enter();
        let (dir, name) = Self::parent(place, &rel, parents, path)?;
        match rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(0o755)) {
            Ok(()) => {}
            Err(Errno::EXIST) if parents => {}
            Err(e) => return Err(map(path, e)),
        }
        let st =
            rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| map(path, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(FileError::Exists(path.into()));
        }
        Ok(info(&abs, &st))
    }

    /// Removes a file, a symlink (not its target) or an empty directory;
    /// with `recursive`, a directory and everything beneath it.
    pub fn remove(&self, path: &str, recursive: bool) -> Result<(), FileError> {
        let (place, rel, _) = self.locate(path)?;
        let _ids = place.enter();
        let (dir, name) = Self::parent(place, &rel, false, path)?;
        let st =
            rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| map(path, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return rustix::fs::unlinkat(&dir, &name, AtFlags::empty()).map_err(|e| map(path, e));
        }
        if recursive {
            let sub = rustix::fs::openat2(
                &dir,
                &name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
                RESOLVE,
            )
            .map_err(|e| map(path, e))?;
            crate::wipe::empty_open(&sub).map_err(|e| map(path, e))?;
        }
        rustix::fs::unlinkat(&dir, &name, AtFlags::REMOVEDIR).map_err(|e| map(path, e))
    }
}

/// `OsStr` from bytes (unix: any bytes are an `OsStr`).
trait FromBytes {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(b)
    }
}
