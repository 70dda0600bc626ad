//! The sandbox's filesystem: a fresh tmpfs root with read-only binds of the
//! host system, synthetic /etc files, a fresh /proc with sensitive files
//! masked, a minimal /dev, size-capped tmpfs /tmp and $HOME, and the
//! workspace.
//!
//! Runs in the sandbox's init, inside the new user and mount namespaces,
//! following bubblewrap's layout: a scratch tmpfs becomes the root, the host
//! root is reachable under /oldroot while binds are made into /newroot, and
//! finally /newroot is pivoted into place and the host root detached.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::spec::{JailSpec, WorkspaceSource};

/// A mount step that failed, naming the operation and the path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MountError {
    /// A mount step on a path (always the path as the user knows it, never
    /// the supervisor's view under /oldroot).
    #[error("{op} {path:?}: {source}")]
    Step {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The host workspace could not be attached.
    #[error(transparent)]
    Workspace(#[from] crate::workspace::AttachError),
}

type Result<T> = std::result::Result<T, MountError>;

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> MountError + 'a {
    move |source| MountError::Step {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths were validated to contain no NUL")
}

fn mount(
    src: Option<&str>,
    dst: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let src_c = src.map(|s| CString::new(s).expect("static source"));
    let fs_c = fstype.map(|s| CString::new(s).expect("static fstype"));
    let data_c = data.map(|s| CString::new(s).expect("mount data has no NUL"));
    let dst_c = cstr(dst);
    // SAFETY: every pointer is either null or a NUL-terminated string that
    // lives until the call returns.
    let ret = unsafe {
        libc::mount(
            src_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            dst_c.as_ptr(),
            fs_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            data_c
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    };
    if ret != 0 {
        return Err(err("mount", dst)(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn bind(src: &Path, dst: &Path) -> Result<()> {
    let src_c = cstr(src);
    let dst_c = cstr(dst);
    // SAFETY: both paths are NUL-terminated strings alive for the call.
    let ret = unsafe {
        libc::mount(
            src_c.as_ptr(),
            dst_c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        // Name the host path as the user knows it, not under /oldroot.
        let shown = src
            .strip_prefix("/oldroot")
            .map_or_else(|_| src.to_path_buf(), |p| Path::new("/").join(p));
        return Err(err("bind", &shown)(std::io::Error::last_os_error()));
    }
    Ok(())
}

use crate::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

/// Set attributes on a mount and everything below it (`mount_setattr` with
/// AT_RECURSIVE), so submounts of a bound /usr become read-only too.
fn set_attrs_recursive(path: &Path, attrs: u64) -> Result<()> {
    crate::sys::mount_setattr(libc::AT_FDCWD, &cstr(path), attrs, None).map_err(|e| {
        MountError::Step {
            op: "mount_setattr",
            path: path.to_path_buf(),
            source: e.source,
        }
    })
}

fn mkdir_p(p: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(p)
        .map_err(err("mkdir", p))
}

fn touch(p: &Path) -> Result<()> {
    if let Some(parent) = p.parent() {
        mkdir_p(parent, 0o755)?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(p)
        .map(drop)
        .map_err(err("create", p))
}

fn write_file(p: &Path, content: &str, mode: u32) -> Result<()> {
    if let Some(parent) = p.parent() {
        mkdir_p(parent, 0o755)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(p)
        .map_err(err("create", p))?;
    std::io::Write::write_all(&mut f, content.as_bytes()).map_err(err("write", p))
}

/// Prefix an absolute sandbox path with a directory.
fn under(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// Files in /proc that reveal or change host state; each is covered by an
/// empty read-only file (or directory) so it cannot be read or written.
const PROC_MASKED_FILES: &[&str] = &[
    "sysrq-trigger",
    "kcore",
    "kmsg",
    "keys",
    "key-users",
    "latency_stats",
    "timer_list",
    "sched_debug",
    "kallsyms",
    "pagetypeinfo",
    "config.gz",
];
const PROC_MASKED_DIRS: &[&str] = &[
    "acpi", "scsi", "irq", "bus", "fs", "driver", "tty", "sysvipc",
];
/// Made read-only rather than hidden: programs read these.
const PROC_READONLY: &[&str] = &["sys"];

/// Device nodes bound from the host: no block devices, no kvm, mem or kmsg.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// Most pseudo-terminals the sandbox's private devpts instance holds (the
/// payload's own and a few a program inside may open, as `script` does);
/// the host's `kernel.pty.max` is shared by everyone.
const DEVPTS_MAX: u32 = 16;

/// Build the whole root. On return the process's root is the sandbox root,
/// the host root is detached, and the cwd is `/`. With `tty` (the payload's
/// terminal, or a live sandbox), /dev also holds a private devpts instance
/// (`/dev/pts`, `/dev/ptmx`) and `/dev/tty`.
pub(crate) fn build_root(
    spec: &JailSpec,
    attach: Option<&crate::workspace::Attach>,
    tty: bool,
) -> Result<()> {
    // Nothing we mount may propagate back to the host.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;

    // Scratch root: /tmp of the copied namespace is shadowed only inside it.
    let base = Path::new("/tmp");
    mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("size=64k,mode=0755"),
    )?;
    mkdir_p(&base.join("newroot"), 0o755)?;
    mkdir_p(&base.join("oldroot"), 0o755)?;
    crate::sys::pivot_root(&cstr(base), &cstr(&base.join("oldroot"))).map_err(|e| {
        MountError::Step {
            op: "pivot_root",
            path: base.into(),
            source: e.source,
        }
    })?;
    std::env::set_current_dir("/").map_err(err("chdir", Path::new("/")))?;

    let old = Path::new("/oldroot");
    let new = Path::new("/newroot");
    // The sandbox root: a fresh tmpfs, later remounted read-only.
    mount(
        Some("tmpfs"),
        new,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("size=1m,mode=0755"),
    )?;

    // Host system paths, read-only. Symlinks (merged /usr: /bin -> usr/bin)
    // are recreated as symlinks rather than followed.
    for b in &spec.ro_binds {
        let src = under(old, &b.path);
        let dst = under(new, &b.path);
        let meta = match fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && b.optional => continue,
            Err(e) => return Err(err("stat", &b.path)(e)),
        };
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&src).map_err(err("readlink", &b.path))?;
            if let Some(parent) = dst.parent() {
                mkdir_p(parent, 0o755)?;
            }
            if fs::symlink_metadata(&dst).is_err() {
                symlink(&target, &dst).map_err(err("symlink", &dst))?;
            }
            continue;
        }
        if meta.is_dir() {
            mkdir_p(&dst, 0o755)?;
        } else {
            touch(&dst)?;
        }
        bind(&src, &dst)?;
        set_attrs_recursive(
            &dst,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )?;
    }

    // Synthetic identity files.
    let etc = new.join("etc");
    mkdir_p(&etc, 0o755)?;
    let home = spec.home_path.display();
    write_file(
        &etc.join("passwd"),
        &format!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{uid}:{gid}:airlock sandbox:{home}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            uid = spec.uid,
            gid = spec.gid
        ),
        0o644,
    )?;
    write_file(
        &etc.join("group"),
        &format!(
            "root:x:0:\nsandbox:x:{gid}:\nnogroup:x:65534:\n",
            gid = spec.gid
        ),
        0o644,
    )?;
    write_file(
        &etc.join("hosts"),
        &format!(
            "127.0.0.1\tlocalhost {h}\n::1\tlocalhost ip6-localhost ip6-loopback {h}\n",
            h = spec.hostname
        ),
        0o644,
    )?;
    write_file(
        &etc.join("hostname"),
        &format!("{}\n", spec.hostname),
        0o644,
    )?;
    write_file(
        &etc.join("resolv.conf"),
        spec.net
            .resolv_conf
            .as_deref()
            .unwrap_or("# airlock: no network in this sandbox\n"),
        0o644,
    )?;
    write_file(
        &etc.join("nsswitch.conf"),
        "passwd: files\ngroup: files\nhosts: files dns\n",
        0o644,
    )?;

    // /proc: fresh, for this pid namespace, with host-revealing files masked.
    let proc_ = new.join("proc");
    mkdir_p(&proc_, 0o555)?;
    mount(
        Some("proc"),
        &proc_,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    for ro in PROC_READONLY {
        let p = proc_.join(ro);
        if p.exists() {
            bind(&p, &p)?;
            set_attrs_recursive(
                &p,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            )?;
        }
    }
    let empty_file = Path::new("/empty-file");
    write_file(empty_file, "", 0o444)?;
    for f in PROC_MASKED_FILES {
        let p = proc_.join(f);
        if p.exists() {
            bind(empty_file, &p)?;
            set_attrs_recursive(
                &p,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            )?;
        }
    }
    for d in PROC_MASKED_DIRS {
        let p = proc_.join(d);
        if p.is_dir() {
            mount(
                Some("tmpfs"),
                &p,
                Some("tmpfs"),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some("size=4k,mode=0555"),
            )?;
        }
    }

    // /dev: a small tmpfs with the harmless character devices bound in.
    let dev = new.join("dev");
    mkdir_p(&dev, 0o755)?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("size=64k,mode=0755"),
    )?;
    for d in DEVICES {
        let dst = dev.join(d);
        touch(&dst)?;
        bind(&old.join("dev").join(d), &dst)?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(err("symlink", &dev.join(name)))?;
    }
    if tty {
        // The payload's terminal (`-t`): a NEW devpts instance, private to
        // this mount namespace, so no host terminal is reachable through it
        // (a user namespace may mount one; a devpts is never the host's).
        // Its ptys are owned by the sandbox's uid and gid (unmapped ids
        // cannot be named here), and it holds at most DEVPTS_MAX of them.
        // /dev/tty opens the caller's controlling terminal, which inside is
        // only ever this instance's pty.
        let pts = dev.join("pts");
        mkdir_p(&pts, 0o755)?;
        mount(
            Some("devpts"),
            &pts,
            Some("devpts"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(&format!(
                "newinstance,ptmxmode=0666,mode=0620,max={DEVPTS_MAX}"
            )),
        )?;
        symlink("pts/ptmx", dev.join("ptmx")).map_err(err("symlink", &dev.join("ptmx")))?;
        let dst = dev.join("tty");
        touch(&dst)?;
        bind(&old.join("dev/tty"), &dst)?;
    }
    let shm = dev.join("shm");
    mkdir_p(&shm, 0o1777)?;
    mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(&format!("size={},mode=1777", spec.tmp_size)),
    )?;
    set_attrs_recursive(&dev, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)?;
    mount(
        None,
        &dev,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
        None,
    )?;

    // /tmp and $HOME: size-capped tmpfs.
    let tmp = new.join("tmp");
    mkdir_p(&tmp, 0o1777)?;
    mount(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&format!("size={},mode=1777", spec.tmp_size)),
    )?;
    // /var/tmp: its own size-capped tmpfs (tools put files there that must
    // outlive a reboot elsewhere; here nothing outlives the sandbox).
    let var_tmp = new.join("var/tmp");
    mkdir_p(&var_tmp, 0o1777)?;
    mount(
        Some("tmpfs"),
        &var_tmp,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&format!("size={},mode=1777", spec.tmp_size)),
    )?;
    let home_dir = under(new, &spec.home_path);
    mkdir_p(&home_dir, 0o755)?;
    mount(
        Some("tmpfs"),
        &home_dir,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&format!(
            "size={},mode=0700,uid={},gid={}",
            spec.home_size, spec.uid, spec.gid
        )),
    )?;

    // The workspace: a host directory read-write, or an empty tmpfs.
    let ws = under(new, &spec.workspace_path);
    mkdir_p(&ws, 0o755)?;
    match &spec.workspace {
        WorkspaceSource::HostDir(dir) => {
            let how = attach.ok_or_else(|| MountError::Step {
                op: "attach workspace (no directory was handed over)",
                path: dir.clone(),
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            })?;
            crate::workspace::attach(how, dir, old, &ws)?;
        }
        WorkspaceSource::Tmpfs(size) => {
            mount(
                Some("tmpfs"),
                &ws,
                Some("tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(&format!(
                    "size={size},mode=0755,uid={},gid={}",
                    spec.uid, spec.gid
                )),
            )?;
        }
    }

    // Seal the root tmpfs read-only, then swap it in and drop the host root.
    mount(
        None,
        new,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )?;
    std::env::set_current_dir(new).map_err(err("chdir", new))?;
    let dot = CString::new(".").expect("static");
    crate::sys::pivot_root(&dot, &dot).map_err(|e| MountError::Step {
        op: "pivot_root",
        path: new.into(),
        source: e.source,
    })?;
    // SAFETY: "." is a NUL-terminated string; MNT_DETACH lazily unmounts the
    // stacked old root (scratch tmpfs plus the host root under it).
    if unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(err("umount", Path::new("/oldroot"))(
            std::io::Error::last_os_error(),
        ));
    }
    std::env::set_current_dir("/").map_err(err("chdir", Path::new("/")))?;
    Ok(())
}

/// The writable places that the supervisor reads and writes files beneath
/// (a live sandbox's files API), as paths inside the sandbox: the
/// workspace first.
pub(crate) fn file_places(spec: &JailSpec) -> Vec<PathBuf> {
    vec![
        spec.workspace_path.clone(),
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
        spec.home_path.clone(),
    ]
}

/// The places a reset empties: every size-capped tmpfs (a host workspace
/// is the caller's directory, and is left as it is).
pub(crate) fn reset_places(spec: &JailSpec) -> Vec<PathBuf> {
    capped_mounts(spec)
}

/// Size-capped tmpfs mounts whose fullness is reported as a "disk" limit hit.
pub(crate) fn capped_mounts(spec: &JailSpec) -> Vec<PathBuf> {
    let mut v = vec![
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
        spec.home_path.clone(),
        PathBuf::from("/dev/shm"),
    ];
    if matches!(spec.workspace, WorkspaceSource::Tmpfs(_)) {
        v.push(spec.workspace_path.clone());
    }
    v
}
