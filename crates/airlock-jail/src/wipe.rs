//! Emptying and copying directory trees without following a link out of
//! them: what a reset and a checkpoint do to the sandbox's writable places,
//! run by init (as the sandbox's uid, with no capability) once every
//! process is dead (reset) or while they run (checkpoint).

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

/// Copies everything beneath `src` into the directory `dst`: directories,
/// regular files and symlinks (as links, never followed), with their
/// permission bits; FIFOs, sockets and devices are skipped, and so are the
/// files whose (device, inode) is in `skip` (without opening them). What
/// `dst` already holds is merged into: a directory of the same name is
/// reused, anything else of the same name is replaced.
pub(crate) fn copy_tree(src: &OwnedFd, dst: &OwnedFd, skip: &[(u64, u64)]) -> Result<(), String> {
    copy_level(src, dst, skip, 0)
}

/// Makes room for `name` in `dst`: a directory stays when `dir` (a
/// directory is wanted there), anything else goes.
fn clear(dst: &OwnedFd, name: &CStr, dir: bool) -> Result<(), Errno> {
    match rustix::fs::statat(dst, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
        Ok(st) => {
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft == FileType::Directory && dir {
                return Ok(());
            }
            remove_entry(dst, name, Some(ft), 0)
        }
    }
}

fn copy_level(
    src: &OwnedFd,
    dst: &OwnedFd,
    skip: &[(u64, u64)],
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("the tree is deeper than 256 levels".into());
    }
    let e = |what: &str, name: &CStr, err: Errno| format!("{what} {name:?}: {err}");
    let mut names = Vec::new();
    for entry in Dir::read_from(src).map_err(|x| format!("reading a directory: {x}"))? {
        let entry = entry.map_err(|x| format!("reading a directory: {x}"))?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    for name in names {
        let st = rustix::fs::statat(src, &name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|x| e("stat", &name, x))?;
        if skip.contains(&(st.st_dev, st.st_ino)) {
            continue;
        }
        let perm = Mode::from_raw_mode(st.st_mode & 0o777);
        let kind = FileType::from_raw_mode(st.st_mode);
        if matches!(
            kind,
            FileType::Directory | FileType::RegularFile | FileType::Symlink
        ) {
            clear(dst, &name, kind == FileType::Directory).map_err(|x| e("replace", &name, x))?;
        }
        match kind {
            FileType::Directory => {
                match rustix::fs::mkdirat(dst, &name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(x) => return Err(e("mkdir", &name, x)),
                }
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let s = rustix::fs::openat(src, &name, flags, Mode::empty())
                    .map_err(|x| e("open", &name, x))?;
                let d = rustix::fs::openat(dst, &name, flags, Mode::empty())
                    .map_err(|x| e("open", &name, x))?;
                copy_level(&s, &d, skip, depth + 1)?;
                rustix::fs::fchmod(&d, perm).map_err(|x| e("chmod", &name, x))?;
            }
            FileType::RegularFile => {
                let s = rustix::fs::openat(
                    src,
                    &name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|x| e("open", &name, x))?;
                let d = rustix::fs::openat(
                    dst,
                    &name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|x| e("create", &name, x))?;
                let mut from = std::fs::File::from(s);
                let mut to = std::fs::File::from(d);
                std::io::copy(&mut from, &mut to).map_err(|x| format!("copying {name:?}: {x}"))?;
                rustix::fs::fchmod(&to, perm).map_err(|x| e("chmod", &name, x))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, &name, Vec::new())
                    .map_err(|x| e("readlink", &name, x))?;
                rustix::fs::symlinkat(&target, dst, &name).map_err(|x| e("symlink", &name, x))?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir_fd(p: &std::path::Path) -> OwnedFd {
        rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn copies_into_what_is_there_and_skips_the_given_inodes() {
        use std::os::unix::fs::MetadataExt;
        let t = std::env::temp_dir().join(format!("airlock-wipe-copy-{}", std::process::id()));
        let (src, dst) = (t.join("src"), t.join("dst"));
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::create_dir_all(dst.join("a")).unwrap();
        std::fs::write(src.join("a/b"), "new").unwrap();
        std::fs::write(dst.join("a/b"), "old").unwrap();
        std::fs::write(src.join("secret"), "not copied").unwrap();
        std::fs::write(src.join("d"), "file").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dst.join("d")).unwrap();
        std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o751)).unwrap();
        let m = std::fs::metadata(src.join("secret")).unwrap();
        copy_tree(&dir_fd(&src), &dir_fd(&dst), &[(m.dev(), m.ino())]).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("a/b")).unwrap(), "new");
        assert!(!dst.join("secret").exists());
        // The link was replaced by the file, never written through.
        assert!(!std::fs::symlink_metadata(dst.join("d"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(dst.join("d")).unwrap(), "file");
        let mode = std::fs::metadata(dst.join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o751);
        std::fs::remove_dir_all(&t).unwrap();
    }

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
