//! The shared harness of the black-box tests: the real `airlock` binary,
//! run as root and rootless, with the `airlock-probe` binary copied into a
//! fresh workspace so that it runs inside the sandbox.
//!
//! Root mode runs airlock as the test's own user (root in CI) with a
//! workspace owned by [`ROOT_MODE_OWNER`]; the sandbox runs as a host uid
//! of its own ([`ROOT_MODE_UIDS`]) and sees the workspace through an
//! idmapped mount, so what it creates there is owned by that owner.
//! Rootless mode runs airlock through `setpriv` as [`ROOTLESS_UID`] when the
//! tests run as root, or directly as the current user otherwise.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::fmt;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Owner of the workspace in root mode (an ordinary user's uid; root-owned
/// workspaces have tests of their own).
pub const ROOT_MODE_OWNER: u32 = 4242;
/// The uid rootless runs switch to when the tests run as root.
pub const ROOTLESS_UID: u32 = 65534;
/// Timeout given to every sandbox run, so that a hang fails instead of
/// stalling the suite.
pub const RUN_TIMEOUT: &str = "60s";

pub const EPERM: i64 = 1;
pub const ENOENT: i64 = 2;
pub const EACCES: i64 = 13;
pub const EXDEV: i64 = 18;
pub const EINVAL: i64 = 22;
pub const EROFS: i64 = 30;
pub const ENOSPC: i64 = 28;
pub const ENOSYS: i64 = 38;
pub const ECONNREFUSED: i64 = 111;
pub const SIGSYS: i64 = 31;

/// How airlock is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// airlock runs as root (only when the tests do).
    Root,
    /// airlock runs as an unprivileged user.
    Rootless,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Root => "root",
            Mode::Rootless => "rootless",
        })
    }
}

/// The effective uid of the test process.
pub fn euid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .expect("Uid line in /proc/self/status")
}

pub fn is_root() -> bool {
    euid() == 0
}

/// Both modes when the tests run as root (as CI does), else rootless only.
pub fn modes() -> Vec<Mode> {
    if is_root() {
        vec![Mode::Root, Mode::Rootless]
    } else {
        vec![Mode::Rootless]
    }
}

/// The host uids root-run sandboxes get, one of their own each: airlock's
/// reserved range (`airlock_jail::ROOT_MODE_UID_BASE`, 65,536 uids).
pub const ROOT_MODE_UIDS: std::ops::Range<u32> = 2_000_000_000..2_000_065_536;

/// Whether `uid` is a host uid a sandbox of `mode` may run as: as root, one
/// of airlock's reserved range (never an account's, never the workspace
/// owner's); rootless, the caller's.
pub fn is_expected_host_uid(mode: Mode, uid: u64) -> bool {
    match (mode, is_root()) {
        (Mode::Root, _) => u32::try_from(uid).is_ok_and(|u| ROOT_MODE_UIDS.contains(&u)),
        (Mode::Rootless, true) => uid == u64::from(ROOTLESS_UID),
        (Mode::Rootless, false) => uid == u64::from(euid()),
    }
}

/// The host owner of files the sandbox creates in its workspace: the
/// workspace's owner (root mode idmaps it; rootless it is the caller).
pub fn workspace_owner(mode: Mode) -> u32 {
    match (mode, is_root()) {
        (Mode::Root, _) => ROOT_MODE_OWNER,
        (Mode::Rootless, true) => ROOTLESS_UID,
        (Mode::Rootless, false) => euid(),
    }
}

pub fn airlock_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_airlock"))
}

/// The probe binary, built next to airlock by `cargo build --workspace`.
pub fn probe_bin() -> PathBuf {
    let p = airlock_bin()
        .parent()
        .expect("airlock binary has a directory")
        .join("airlock-probe");
    assert!(
        p.is_file(),
        "{} is missing: build the probe: cargo build -p airlock-probe",
        p.display()
    );
    p
}

/// A world-executable airlock binary inside `dir` (0755): a hard link when
/// the build directory is on the same filesystem, else the build's shared
/// copy ([`shared_public_airlock`]).
fn public_airlock(dir: &Path) -> PathBuf {
    let src = airlock_bin();
    let dst = dir.join("airlock");
    let m = fs::metadata(&src).expect("stat the airlock binary");
    if m.permissions().mode() & 0o005 == 0o005 && fs::hard_link(&src, &dst).is_ok() {
        return dst;
    }
    shared_public_airlock()
}

/// Prefix of the shared per-build copies of the airlock binary in /tmp.
const SHARED_BIN_PREFIX: &str = "airlock-test-bin-";

/// A world-executable airlock binary that outlives any one test: one per
/// build, shared by all test processes of that build, in
/// `airlock-test-bin-SIZE-MTIME/airlock` under the build's tmp directory
/// (or /tmp when a private directory hides that), a hard link where
/// possible, else a copy. Making it removes the copies of earlier builds that are
/// more than ten minutes old, so at most one build's copy is left behind
/// (a debug airlock is hundreds of MB; CI disks are not infinite).
pub fn shared_public_airlock() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let src = airlock_bin();
        let m = fs::metadata(&src).expect("stat the airlock binary");
        let name = format!(
            "{SHARED_BIN_PREFIX}{}-{}",
            m.len(),
            m.mtime_nsec() + m.mtime() * 1_000_000_000
        );
        // Under the build's own tmp directory when others can reach it,
        // so nothing is left outside the checkout; else under /tmp.
        let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let base = if traversable_by_all(target_tmp) {
            target_tmp
        } else {
            Path::new("/tmp")
        };
        let shared = base.join(&name);
        let bin = shared.join("airlock");
        if !bin.is_file() {
            fs::create_dir_all(&shared).unwrap();
            fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
            let tmp = shared.join(format!("airlock.{}", std::process::id()));
            if fs::hard_link(&src, &tmp).is_err() {
                fs::copy(&src, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
            }
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
            fs::rename(&tmp, &bin).unwrap();
        }
        sweep_stale_shared_copies(base, &name);
        bin
    })
    .clone()
}

/// Whether `dir` exists and every directory from / down to it lets
/// others through (o+x).
fn traversable_by_all(dir: &Path) -> bool {
    dir.is_dir()
        && dir
            .ancestors()
            .all(|a| fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// Removes `airlock-test-bin-*` directories in `base` other than `keep`
/// that are ours and untouched for ten minutes.
fn sweep_stale_shared_copies(base: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    let me = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(SHARED_BIN_PREFIX) || name == keep {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(600));
        if meta.is_dir() && meta.uid() == me && old {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// A fresh traversable (0755) directory under /tmp, removed on drop.
pub fn public_tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("airlock-test-")
        .tempdir_in("/tmp")
        .expect("create a temporary directory under /tmp");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// The outcome of one airlock invocation.
#[derive(Debug)]
pub struct Run {
    pub mode: Mode,
    pub args: Vec<String>,
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "[{}] airlock {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.mode,
            self.args.join(" "),
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.describe()))
    }

    /// The last line of `text` that is a JSON object or array (the probe
    /// prints one line; airlock may add its own diagnostics around it).
    fn last_json_line(text: &str) -> Option<Value> {
        text.lines()
            .rev()
            .filter(|l| l.starts_with('{') || l.starts_with('['))
            .find_map(|l| serde_json::from_str(l).ok())
    }

    /// The probe's answer: the last JSON line of stdout.
    pub fn probe_json(&self) -> Value {
        Self::last_json_line(&self.stdout())
            .unwrap_or_else(|| panic!("the probe printed no JSON\n{}", self.describe()))
    }

    /// With `--json`, the probe's stdout is sent to stderr.
    pub fn probe_json_from_stderr(&self) -> Value {
        Self::last_json_line(&self.stderr())
            .unwrap_or_else(|| panic!("the probe printed no JSON on stderr\n{}", self.describe()))
    }
}

/// A workspace with the probe in it, and the way to run airlock in `mode`.
#[derive(Debug)]
pub struct Sandbox {
    pub mode: Mode,
    /// 0755 holder of the workspace and (rootless) the airlock binary.
    root: tempfile::TempDir,
    workspace: PathBuf,
    airlock: PathBuf,
    owner: Option<u32>,
}

impl Sandbox {
    pub fn new(mode: Mode) -> Sandbox {
        let root_user = is_root();
        assert!(
            mode == Mode::Rootless || root_user,
            "root mode needs the tests to run as root"
        );
        let root = public_tempdir();
        let workspace = root.path().join("ws");
        fs::create_dir(&workspace).unwrap();
        fs::set_permissions(&workspace, fs::Permissions::from_mode(0o755)).unwrap();
        let probe = workspace.join("probe");
        fs::copy(probe_bin(), &probe).expect("copy the probe into the workspace");
        fs::set_permissions(&probe, fs::Permissions::from_mode(0o755)).unwrap();
        let (airlock, owner) = match (mode, root_user) {
            (Mode::Root, _) => (airlock_bin(), Some(ROOT_MODE_OWNER)),
            (Mode::Rootless, true) => {
                // The checkout may sit under a 0700 directory such as /root.
                (public_airlock(root.path()), Some(ROOTLESS_UID))
            }
            (Mode::Rootless, false) => (airlock_bin(), None),
        };
        let sb = Sandbox {
            mode,
            root,
            workspace,
            airlock,
            owner,
        };
        sb.chown(&sb.workspace);
        sb.chown(&probe);
        sb
    }

    /// The host directory bound as /workspace.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// A private scratch directory next to the workspace (not visible inside).
    pub fn outside(&self) -> &Path {
        self.root.path()
    }

    /// Hand a host path to the sandbox's owner.
    pub fn chown(&self, p: &Path) {
        if let Some(uid) = self.owner {
            std::os::unix::fs::lchown(p, Some(uid), Some(uid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        }
    }

    /// Write a file into the workspace, owned by the sandbox's owner.
    pub fn put(&self, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let p = self.workspace.join(name);
        fs::write(&p, contents).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        self.chown(&p);
        p
    }

    /// `airlock` started the way `mode` needs, with no arguments yet.
    pub fn command(&self) -> Command {
        let mut c = if self.mode == Mode::Rootless && is_root() {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={ROOTLESS_UID}"))
                .arg(format!("--regid={ROOTLESS_UID}"))
                .arg("--clear-groups")
                .arg(&self.airlock);
            c
        } else {
            Command::new(&self.airlock)
        };
        c.current_dir("/")
            .env_remove("AIRLOCK_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Run `airlock ARGS` to completion.
    pub fn airlock(&self, args: &[&str]) -> Run {
        self.airlock_with(args, |_| {})
    }

    /// Run `airlock ARGS` after `tweak` adjusted the command (env, stdin).
    pub fn airlock_with(&self, args: &[&str], tweak: impl FnOnce(&mut Command)) -> Run {
        let mut c = self.command();
        c.args(args);
        tweak(&mut c);
        let output = c
            .output()
            .unwrap_or_else(|e| panic!("[{}] cannot start airlock {args:?}: {e}", self.mode));
        Run {
            mode: self.mode,
            args: args.iter().map(|s| s.to_string()).collect(),
            output,
        }
    }

    /// `airlock run --workspace WS --timeout T [opts] -- /workspace/probe ARGS`.
    pub fn run_probe(&self, opts: &[&str], probe_args: &[&str]) -> Run {
        let ws = self.workspace.to_str().expect("utf-8 temp path");
        let mut args = vec!["run", "--workspace", ws, "--timeout", RUN_TIMEOUT];
        args.extend_from_slice(opts);
        args.push("--");
        args.push("/workspace/probe");
        args.extend_from_slice(probe_args);
        self.airlock(&args)
    }

    /// Run the probe, require exit 0, and return its JSON answer.
    pub fn probe(&self, probe_args: &[&str]) -> Value {
        let r = self.run_probe(&[], probe_args);
        assert_eq!(
            r.code(),
            Some(0),
            "[{}] probe {probe_args:?} did not exit 0\n{}",
            self.mode,
            r.describe()
        );
        r.probe_json()
    }

    /// Run the probe with `--json`: (airlock's report, the probe's answer).
    pub fn probe_with_report(&self, probe_args: &[&str]) -> (Value, Value) {
        let r = self.run_probe(&["--json"], probe_args);
        assert_eq!(
            r.code(),
            Some(0),
            "[{}] probe {probe_args:?} did not exit 0\n{}",
            self.mode,
            r.describe()
        );
        (r.json(), r.probe_json_from_stderr())
    }
}

/// Run the probe directly on the host (no sandbox), as the test's user.
/// Only for harmless look-ups that show what the sandbox hides.
pub fn probe_on_host(args: &[&str]) -> Value {
    let out = Command::new(probe_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the probe on the host");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "probe {args:?} on the host printed no JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Pretty JSON for assertion messages.
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// The host's owner uid of a path.
pub fn owner_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().uid()
}

/// What a shell line run on a fresh terminal printed, and how it ended.
#[derive(Debug)]
pub struct TermRun {
    pub mode: Mode,
    pub status: Option<i32>,
    /// Everything written to the terminal (carriage returns removed).
    pub output: String,
}

impl TermRun {
    pub fn describe(&self) -> String {
        format!(
            "[{}] exit {:?}, terminal output:\n{}",
            self.mode, self.status, self.output
        )
    }
}

/// Runs `shell` (a `sh -c` line in which `$AIRLOCK` starts airlock the way
/// `mode` needs) on a new terminal made by util-linux `script`, so that
/// airlock's stdin, stdout and stderr are a real terminal. `input` is typed
/// after a second, and the terminal stays open until the line ends (or 60 s
/// pass, when it is killed).
pub fn on_terminal(sb: &Sandbox, shell: &str, input: &[u8]) -> TermRun {
    use std::io::{Read, Write};
    let airlock = sb.command();
    let mut words = vec![airlock.get_program().to_string_lossy().into_owned()];
    words.extend(airlock.get_args().map(|a| a.to_string_lossy().into_owned()));
    assert!(
        words.iter().all(|w| !w.contains([' ', '\'', '"', '$'])),
        "airlock's command line needs no quoting: {words:?}"
    );
    let mut child = Command::new("script")
        .args(["-qec", shell, "/dev/null"])
        .env("AIRLOCK", words.join(" "))
        .env_remove("AIRLOCK_LOG")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start util-linux script");
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let mut stdin = child.stdin.take().expect("piped");
    std::thread::sleep(std::time::Duration::from_secs(1));
    // The line may be over already (nothing reads the input then).
    let _ = stdin.write_all(input);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for script") {
            break st.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop(stdin);
    let out = reader.join().expect("reader thread");
    TermRun {
        mode: sb.mode,
        status,
        output: String::from_utf8_lossy(&out).replace('\r', ""),
    }
}

/// `what` failed: its status, stdout and stderr, for an assertion message.
pub fn describe_output(what: &str, o: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `py -m pip install -q ARGS`; fails the test with pip's output, after
/// `what`, when pip fails.
pub fn pip_install<'a>(py: &Path, args: impl IntoIterator<Item = &'a std::ffi::OsStr>, what: &str) {
    let o = Command::new(py)
        .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
        .args(args)
        .output()
        .expect("run pip");
    assert!(o.status.success(), "{}", describe_output(what, &o));
}

/// The Python of a venv with the pinned `requirements` installed from the
/// package index: `<CARGO_TARGET_TMPDIR>/<tag>-venv-<hash of the pins>`,
/// made once (one maker at a time, across test processes) and reused while
/// the pins stay the same. A pip that cannot install them fails the test,
/// naming `what`; it never skips.
pub fn pinned_venv(tag: &str, requirements: &str, what: &str) -> PathBuf {
    // FNV-1a of the pins, so a changed pin makes a fresh venv.
    let hash = requirements
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).unwrap();
    let lock = fs::File::create(base.join(format!("{tag}-venv.lock"))).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let dir = base.join(format!("{tag}-venv-{hash:016x}"));
    let py = dir.join("bin/python");
    let stamp = dir.join(".airlock-installed");
    if stamp.is_file() && py.is_file() {
        return py;
    }
    let _ = fs::remove_dir_all(&dir);
    let o = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .output()
        .expect("run python3 -m venv (is python3 installed?)");
    assert!(
        o.status.success(),
        "{}",
        describe_output(
            "python3 -m venv failed (Debian: apt-get install python3-venv)",
            &o
        )
    );
    let req = dir.join("requirements.txt");
    fs::write(&req, requirements).unwrap();
    let t = std::time::Instant::now();
    pip_install(
        &py,
        ["-r".as_ref(), req.as_os_str()],
        &format!("pip could not install {what} from PyPI: is the package index reachable?"),
    );
    eprintln!(
        "made {} in {:.1}s",
        dir.display(),
        t.elapsed().as_secs_f64()
    );
    fs::write(&stamp, requirements).unwrap();
    py
}
