//! Host workspaces: opened by the supervisor, never looked up as the
//! sandbox's uid. As root, a root-owned directory under a 0700 parent is
//! bound through an idmapped mount: the sandbox's uid owns its owner's
//! files inside, what it creates is owned by that owner on the host, and
//! files of other owners stay out of reach. A symlink swapped into the
//! workspace path never redirects the bind.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

/// The host uid that owns a workspace in `mode` for these tests: root
/// itself as root (the case that used to be refused), the rootless user
/// otherwise.
fn owner(mode: Mode) -> u32 {
    match mode {
        Mode::Root => 0,
        Mode::Rootless if is_root() => ROOTLESS_UID,
        Mode::Rootless => euid(),
    }
}

fn mkdir(p: &Path, mode: u32, uid: u32) {
    fs::create_dir(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    }
}

fn write(p: &Path, text: &str, mode: u32, uid: u32) {
    fs::write(p, text).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    }
}

/// A workspace owned by `owner(mode)` inside a 0700 directory of the same
/// owner: `(tempdir, workspace)`.
fn private_workspace(mode: Mode) -> (tempfile::TempDir, PathBuf) {
    let root = public_tempdir();
    let private = root.path().join("private");
    mkdir(&private, 0o700, owner(mode));
    let ws = private.join("ws");
    mkdir(&ws, 0o755, owner(mode));
    (root, ws)
}

#[test]
fn a_workspace_under_a_private_directory_is_the_sandboxs_and_keeps_its_owner() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let (_keep, ws) = private_workspace(mode);
        let me = owner(mode);
        write(&ws.join("mine"), "mine\n", 0o600, me);
        // A file of another host user, readable only by that user.
        if is_root() {
            write(&ws.join("theirs"), "theirs\n", 0o600, 4243);
        }
        let script = "cat /workspace/mine; \
             if cat /workspace/theirs 2>/dev/null; then echo READ-THEIRS; else echo denied-theirs; fi; \
             echo made > /workspace/made && mkdir /workspace/dir && echo inner > /workspace/dir/f; \
             stat -c 'mine %u %a' /workspace/mine; stat -c 'ws %u' /workspace";
        let r = sb.airlock(&[
            "run",
            "--json",
            "--workspace",
            ws.to_str().unwrap(),
            "--timeout",
            RUN_TIMEOUT,
            "--",
            "sh",
            "-c",
            script,
        ]);
        assert_eq!(r.code(), Some(0), "[{mode}] {}", r.describe());
        let out = r.stderr();
        assert!(out.contains("mine\n"), "[{mode}] {}", r.describe());
        assert!(
            out.contains("mine 1000 600"),
            "[{mode}] the owner's 0600 file is not the sandbox uid's inside: {}",
            r.describe()
        );
        assert!(out.contains("ws 1000"), "[{mode}] {}", r.describe());
        if is_root() {
            assert!(
                out.contains("denied-theirs") && !out.contains("READ-THEIRS"),
                "[{mode}] another host user's 0600 file was readable: {}",
                r.describe()
            );
        }
        for f in ["made", "dir", "dir/f"] {
            assert_eq!(
                owner_of(&ws.join(f)),
                me,
                "[{mode}] {f} is not owned by the workspace's owner on the host"
            );
        }
        let host_uid = r.json()["host_uid"].as_u64().unwrap();
        assert!(
            is_expected_host_uid(mode, host_uid),
            "[{mode}] host uid {host_uid}: {}",
            r.describe()
        );
        if mode == Mode::Root {
            assert_ne!(
                host_uid, 0,
                "a root-owned workspace made the sandbox host root"
            );
        }
    }
}

#[test]
fn a_symlink_in_the_workspace_path_is_refused_naming_it() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let root = public_tempdir();
        let real = root.path().join("real");
        mkdir(&real, 0o755, owner(mode));
        let link = root.path().join("link");
        symlink(&real, &link).unwrap();
        let r = sb.airlock(&[
            "run",
            "--workspace",
            link.to_str().unwrap(),
            "--",
            "/bin/true",
        ]);
        assert_eq!(r.code(), Some(125), "[{mode}] {}", r.describe());
        let err = r.stderr();
        assert!(
            err.contains(link.to_str().unwrap())
                && err.contains("symbolic link")
                && err.contains(real.to_str().unwrap()),
            "[{mode}] the refusal should name the link and the real path: {}",
            r.describe()
        );
        assert!(!err.contains("/oldroot"), "[{mode}] {}", r.describe());
    }
}

/// An attacker swaps a component of the workspace path for a symlink to a
/// directory outside it, over and over, while sandboxes start: each run
/// binds the real workspace or fails; none ever sees the decoy.
#[test]
fn a_path_component_swapped_for_a_symlink_never_redirects_the_bind() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let root = public_tempdir();
        let base = root.path();
        let a = base.join("a");
        mkdir(&a, 0o755, owner(mode));
        mkdir(&a.join("ws"), 0o755, owner(mode));
        write(&a.join("ws/marker"), "inside\n", 0o644, owner(mode));
        let decoy = base.join("decoy");
        mkdir(&decoy, 0o755, owner(mode));
        mkdir(&decoy.join("ws"), 0o755, owner(mode));
        write(&decoy.join("ws/marker"), "SECRET\n", 0o644, owner(mode));
        let parked = base.join("a.parked");

        let stop = Arc::new(AtomicBool::new(false));
        let swaps = {
            let (stop, a, parked, decoy) = (stop.clone(), a.clone(), parked.clone(), decoy.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    fs::rename(&a, &parked).unwrap();
                    symlink(&decoy, &a).unwrap();
                    std::thread::sleep(Duration::from_micros(300));
                    fs::remove_file(&a).unwrap();
                    fs::rename(&parked, &a).unwrap();
                    std::thread::sleep(Duration::from_micros(300));
                    n += 1;
                }
                n
            })
        };
        let ws = a.join("ws");
        let (mut bound, mut refused) = (0, 0);
        for _ in 0..30 {
            let r = sb.airlock(&[
                "run",
                "--workspace",
                ws.to_str().unwrap(),
                "--timeout",
                RUN_TIMEOUT,
                "--",
                "cat",
                "/workspace/marker",
            ]);
            assert!(
                !r.stdout().contains("SECRET"),
                "[{mode}] the swapped-in symlink redirected the bind: {}",
                r.describe()
            );
            match r.code() {
                Some(0) => {
                    assert_eq!(r.stdout(), "inside\n", "[{mode}] {}", r.describe());
                    bound += 1;
                }
                Some(125) => {
                    assert!(
                        r.stderr().contains("workspace"),
                        "[{mode}] a refusal that does not say why: {}",
                        r.describe()
                    );
                    refused += 1;
                }
                _ => panic!("[{mode}] unexpected outcome: {}", r.describe()),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let n = swaps.join().unwrap();
        eprintln!("[{mode}] {n} swaps: {bound} runs bound the workspace, {refused} refused");
        assert!(n > 0, "[{mode}] the swapper never ran");
    }
}

/// Where the kernel cannot idmap (ramfs has no idmapped mounts), a root
/// run falls back to running as the directory's owner, and refuses a
/// root-owned directory with the reason and the way out. Runs in a mount
/// namespace of its own (`unshare -m`), so the host sees no ramfs.
#[test]
fn without_idmapped_mounts_a_root_run_falls_back_or_says_why() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let root = public_tempdir();
    let mnt = root.path().join("ramfs");
    fs::create_dir(&mnt).unwrap();
    let bin = airlock_bin();
    let script = format!(
        "mount -t ramfs none {m} && mkdir {m}/root-owned {m}/user-owned; \
         chown {o}:{o} {m}/user-owned; \
         {b} run --json --workspace {m}/user-owned -- sh -c 'echo hi > /workspace/f' > {m}/user.json 2>{m}/user.err || true; \
         stat -c '%u' {m}/user-owned/f > {m}/owner || true; \
         {b} run --workspace {m}/root-owned -- true 2> {m}/root.err; echo $? > {m}/root.code; \
         cp {m}/user.json {m}/user.err {m}/owner {m}/root.err {m}/root.code {out}/",
        m = mnt.display(),
        o = ROOT_MODE_OWNER,
        b = bin.display(),
        out = root.path().display(),
    );
    let st = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .status()
        .unwrap();
    assert!(st.success(), "the ramfs script failed");
    let read = |f: &str| fs::read_to_string(root.path().join(f)).unwrap_or_default();
    let user: serde_json::Value = serde_json::from_str(&read("user.json")).unwrap_or_else(|e| {
        panic!(
            "no JSON report from the fallback run ({e}): {}",
            read("user.err")
        )
    });
    assert_eq!(user["exit_code"], 0, "{user:#}\n{}", read("user.err"));
    assert_eq!(
        user["host_uid"],
        u64::from(ROOT_MODE_OWNER),
        "the fallback runs as the directory's owner"
    );
    assert_eq!(read("owner").trim(), ROOT_MODE_OWNER.to_string());
    assert_eq!(read("root.code").trim(), "125", "{}", read("root.err"));
    let err = read("root.err");
    assert!(
        err.contains("idmapped") && err.contains("chown"),
        "the refusal should give the reason and the workaround: {err}"
    );
    assert!(
        mnt.read_dir().unwrap().next().is_none(),
        "the ramfs leaked into the host's mount namespace"
    );
}
