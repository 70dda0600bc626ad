//! Emptying a directory tree without following a link out of it: what a
//! reset does to the sandbox's writable places, run by init (as the
//! sandbox's uid, with no capability) once every process is dead.

use std::ffi::CStr;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Most directory levels followed; deeper trees fail the reset loudly.
const MAX_DEPTH: usize = 256;

/// Removes everything beneath `path`, keeping `path` itself.
pub(crate) fn empty_dir(path: &Path) -> Result<(), Errno> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    empty_fd(&fd, 0)
}

/// Removes everything beneath an open directory.
pub(crate) fn empty_open(dir: &OwnedFd) -> Result<(), Errno> {
    empty_fd(dir, 0)
}

fn empty_fd(dir: &OwnedFd, depth: usize) -> Result<(), Errno> {
    if depth > MAX_DEPTH {
        return Err(Errno::LOOP);
    }
    // The directory may have been made unreadable or unwritable by the
    // sandbox, which owns it: give it back its owner's rights.
    let _ = rustix::fs::fchmod(dir, Mode::from_raw_mode(0o700));
    let mut names: Vec<(std::ffi::CString, Option<FileType>)> = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let ft = entry.file_type();
        names.push((name.to_owned(), (ft != FileType::Unknown).then_some(ft)));
    }
    for (name, ft) in names {
        remove_entry(dir, &name, ft, depth)?;
    }
    Ok(())
}

fn remove_entry(
    dir: &OwnedFd,
    name: &CStr,
    ft: Option<FileType>,
    depth: usize,
) -> Result<(), Errno> {
    let is_dir = match ft {
        Some(ft) => ft == FileType::Directory,
        None => {
            let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            FileType::from_raw_mode(st.st_mode) == FileType::Directory
        }
    };
    if !is_dir {
        return match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
        };
    }
    let sub = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ACCESS) => {
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
            rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?
        }
        Err(e) => return Err(e),
    };
    empty_fd(&sub, depth + 1)?;
    drop(sub);
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn empties_a_tree_with_locked_directories_and_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let d = t.path().join("a/b/c");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("f"), b"1").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("a/out")).unwrap();
        std::fs::set_permissions(t.path().join("a/b"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        std::fs::write(t.path().join("top"), b"2").unwrap();
        empty_dir(t.path()).unwrap();
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
        assert!(
            outside.path().join("keep").exists(),
            "a symlink was followed"
        );
    }
}
