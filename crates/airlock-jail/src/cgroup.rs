//! cgroups, v2 and v1, written by hand (no cgroups crate).
//!
//! Detection follows youki: `/sys/fs/cgroup` on cgroup2 means v2; a tmpfs
//! with per-controller cgroup1 mounts means v1. Each sandbox gets its own
//! cgroup named `airlock-<supervisor pid>-<supervisor start time>-<n>` so a
//! later run can recognise and sweep one left by a supervisor that was
//! SIGKILLed. The cgroup is killed (`cgroup.kill`, or freezer plus SIGKILL
//! on v1) and removed at the end of every run.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::CgroupError;
use crate::spec::CgroupSpec;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Which cgroup hierarchy a sandbox used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// The unified hierarchy.
    V2,
    /// Per-controller hierarchies.
    V1,
}

/// What the host offers, for `airlock doctor` and for choosing at spawn.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupSupport {
    /// The detected version, if any hierarchy is usable.
    pub version: Option<CgroupVersion>,
    /// The directory new sandbox cgroups are created under (v2), or the v1 mount root.
    pub parent: Option<PathBuf>,
    /// Controllers this process can use: memory, pids, cpu.
    pub controllers: Vec<String>,
    /// Why something is missing.
    pub note: Option<String>,
}

fn is_cgroup2(p: &Path) -> bool {
    rustix::fs::statfs(p)
        .map(|s| s.f_type == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

fn writable(p: &Path) -> bool {
    rustix::fs::access(p, rustix::fs::Access::WRITE_OK).is_ok()
}

fn own_v2_cgroup() -> Option<PathBuf> {
    let s = fs::read_to_string("/proc/self/cgroup").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim_start_matches('/')))
}

/// Find where sandbox cgroups can be made.
pub fn detect(root_override: Option<&Path>) -> CgroupSupport {
    let euid = rustix::process::geteuid().as_raw();
    let v2_root = match root_override {
        Some(r) => Some(r.to_path_buf()),
        None if is_cgroup2(Path::new("/sys/fs/cgroup")) => Some(PathBuf::from("/sys/fs/cgroup")),
        None => None,
    };
    if let Some(root) = v2_root {
        if !is_cgroup2(&root) {
            return CgroupSupport {
                version: None,
                parent: None,
                controllers: vec![],
                note: Some(format!("{} is not a cgroup2 mount", root.display())),
            };
        }
        // Root: a dedicated `airlock` child of the hierarchy root. Rootless:
        // the parent of our own cgroup, when systemd delegated it to us.
        let parent = if euid == 0 {
            root.join("airlock")
        } else {
            match own_v2_cgroup() {
                Some(own) => match root.join(&own).parent() {
                    Some(p) if p.starts_with(&root) => p.to_path_buf(),
                    _ => root.clone(),
                },
                None => root.clone(),
            }
        };
        let probe = if parent.exists() {
            parent.clone()
        } else {
            root.clone()
        };
        if !writable(&probe) {
            return CgroupSupport {
                version: Some(CgroupVersion::V2),
                parent: None,
                controllers: vec![],
                note: Some(format!(
                    "{} is not writable by uid {euid} (no delegated cgroup; run as root or under systemd-run --user --scope -p Delegate=yes)",
                    probe.display()
                )),
            };
        }
        let avail = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let controllers: Vec<String> = ["memory", "pids", "cpu"]
            .into_iter()
            .filter(|c| avail.split_whitespace().any(|a| a == *c))
            .map(String::from)
            .collect();
        let note = (controllers.len() < 3).then(|| {
            format!(
                "{} offers controllers [{}]; memory, pids and cpu limits need them (on a hybrid host they are bound to cgroup v1)",
                root.display(),
                avail.trim()
            )
        });
        return CgroupSupport {
            version: Some(CgroupVersion::V2),
            parent: Some(parent),
            controllers,
            note,
        };
    }
    // v1: per-controller mounts.
    let base = Path::new("/sys/fs/cgroup");
    let mut controllers = Vec::new();
    let mut missing = Vec::new();
    for c in ["memory", "pids", "cpu", "freezer"] {
        let d = base.join(c);
        if d.join("cgroup.procs").exists() && writable(&d) {
            if c != "freezer" {
                controllers.push(c.to_string());
            }
        } else {
            missing.push(c);
        }
    }
    if controllers.is_empty() {
        return CgroupSupport {
            version: None,
            parent: None,
            controllers,
            note: Some(format!(
                "no writable cgroup v1 controllers under /sys/fs/cgroup for uid {euid}"
            )),
        };
    }
    CgroupSupport {
        version: Some(CgroupVersion::V1),
        parent: Some(base.to_path_buf()),
        controllers,
        note: (!missing.is_empty()).then(|| {
            format!(
                "missing or read-only v1 controllers: {}",
                missing.join(", ")
            )
        }),
    }
}

/// Counters read at the end of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CgroupStats {
    /// Peak memory use in bytes.
    pub peak_memory: Option<u64>,
    /// The OOM killer ran in the sandbox.
    pub oom_killed: bool,
    /// Memory reached its limit at least once.
    pub memory_max_hit: bool,
    /// A fork failed because pids.max was reached.
    pub pids_max_hit: bool,
    /// CPU time was throttled.
    pub cpu_throttled: bool,
}

/// A live sandbox cgroup.
#[derive(Debug)]
pub(crate) struct Cgroup {
    version: CgroupVersion,
    /// v2: one directory; v1: one per controller (memory, pids, cpu, freezer).
    dirs: Vec<(String, PathBuf)>,
    dirfd: Option<OwnedFd>,
    pub(crate) controllers: Vec<String>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn own_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err(path))
}

impl Cgroup {
    /// Create the sandbox cgroup and set its limits. Returns `Ok(None)` when
    /// cgroups are unusable and the spec does not require them.
    pub(crate) fn create(
        spec: &CgroupSpec,
        support: &CgroupSupport,
    ) -> Result<Option<Cgroup>, CgroupError> {
        let (Some(version), Some(parent)) = (support.version, support.parent.as_ref()) else {
            let why = support
                .note
                .clone()
                .unwrap_or_else(|| "no cgroup hierarchy".into());
            if spec.required {
                return Err(CgroupError::Unavailable(why));
            }
            return Ok(None);
        };
        let wanted: Vec<&str> = [
            spec.memory.map(|_| "memory"),
            spec.pids.map(|_| "pids"),
            spec.cpus.map(|_| "cpu"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|w| !support.controllers.iter().any(|c| c == w))
            .collect();
        if spec.required && !missing.is_empty() {
            return Err(CgroupError::Unavailable(format!(
                "controllers [{}] are not available{}",
                missing.join(", "),
                support
                    .note
                    .as_ref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            )));
        }
        let me = std::process::id();
        let name = format!(
            "airlock-{me}-{}-{}",
            own_start_time(me).unwrap_or(0),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let cg = match version {
            CgroupVersion::V2 => Self::create_v2(parent, &name, spec, support)?,
            CgroupVersion::V1 => Self::create_v1(parent, &name, spec, support)?,
        };
        Ok(Some(cg))
    }

    fn create_v2(
        parent: &Path,
        name: &str,
        spec: &CgroupSpec,
        support: &CgroupSupport,
    ) -> Result<Cgroup, CgroupError> {
        if !parent.exists() {
            match fs::create_dir(parent) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(parent)(e)),
            }
        }
        sweep_stale(parent);
        // Enable the controllers we need on the way down (best effort: a
        // delegated parent may already have them).
        if !support.controllers.is_empty() {
            let enable: String = support
                .controllers
                .iter()
                .map(|c| format!("+{c} "))
                .collect();
            if let Some(gp) = parent.parent() {
                let _ = fs::write(gp.join("cgroup.subtree_control"), enable.trim());
            }
            let _ = fs::write(parent.join("cgroup.subtree_control"), enable.trim());
        }
        let dir = parent.join(name);
        fs::create_dir(&dir).map_err(io_err(&dir))?;
        let cg = Cgroup {
            version: CgroupVersion::V2,
            dirfd: Some(
                rustix::fs::open(
                    &dir,
                    rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::CLOEXEC
                        | rustix::fs::OFlags::RDONLY,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| io_err(&dir)(e.into()))?,
            ),
            dirs: vec![("unified".into(), dir.clone())],
            controllers: support.controllers.clone(),
        };
        let has = |c: &str| cg.controllers.iter().any(|x| x == c);
        if let (Some(m), true) = (spec.memory, has("memory")) {
            write_file(&dir.join("memory.max"), &m.to_string())?;
            let _ = fs::write(dir.join("memory.swap.max"), "0");
        }
        if let (Some(p), true) = (spec.pids, has("pids")) {
            write_file(&dir.join("pids.max"), &p.to_string())?;
        }
        if let (Some(c), true) = (spec.cpus, has("cpu")) {
            let period = 100_000u64;
            let quota = ((c * period as f64) as u64).max(1000);
            write_file(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        Ok(cg)
    }

    fn create_v1(
        base: &Path,
        name: &str,
        spec: &CgroupSpec,
        support: &CgroupSupport,
    ) -> Result<Cgroup, CgroupError> {
        let mut dirs = Vec::new();
        // Only the hierarchies whose limits are asked for: each one costs a
        // mkdir, a migration and an rmdir per sandbox. No freezer: killing
        // the sandbox's init tears down its whole pid namespace.
        let wanted = [
            ("memory", spec.memory.is_some()),
            ("pids", spec.pids.is_some()),
            ("cpu", spec.cpus.is_some()),
        ];
        let ctrls: Vec<&str> = wanted
            .iter()
            .filter(|(c, w)| *w && support.controllers.iter().any(|s| s == c))
            .map(|(c, _)| *c)
            .collect();
        let mut cg = Cgroup {
            version: CgroupVersion::V1,
            dirs: Vec::new(),
            dirfd: None,
            controllers: ctrls.iter().map(|c| c.to_string()).collect(),
        };
        for c in ctrls {
            let parent = base.join(c).join("airlock");
            if !parent.exists() {
                let _ = fs::create_dir(&parent);
            }
            sweep_stale(&parent);
            let dir = parent.join(name);
            if let Err(e) = fs::create_dir(&dir) {
                cg.dirs = dirs;
                cg.remove();
                return Err(io_err(&dir)(e));
            }
            dirs.push((c.to_string(), dir));
        }
        cg.dirs = dirs;
        let set = |cg: &Cgroup| -> Result<(), CgroupError> {
            if let (Some(m), Some(d)) = (spec.memory, cg.dir("memory")) {
                write_file(&d.join("memory.limit_in_bytes"), &m.to_string())?;
                // Without this, the sandbox could swap past its limit.
                let _ = fs::write(d.join("memory.memsw.limit_in_bytes"), m.to_string());
                let _ = fs::write(d.join("memory.swappiness"), "0");
            }
            if let (Some(p), Some(d)) = (spec.pids, cg.dir("pids")) {
                write_file(&d.join("pids.max"), &p.to_string())?;
            }
            if let (Some(c), Some(d)) = (spec.cpus, cg.dir("cpu")) {
                let period = 100_000u64;
                let quota = ((c * period as f64) as u64).max(1000);
                write_file(&d.join("cpu.cfs_period_us"), &period.to_string())?;
                write_file(&d.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
            Ok(())
        };
        if let Err(e) = set(&cg) {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| c == controller || c == "unified")
            .map(|(_, d)| d.as_path())
    }

    /// The version in use.
    pub(crate) fn version(&self) -> CgroupVersion {
        self.version
    }

    /// A directory fd for `CLONE_INTO_CGROUP` (v2 only).
    pub(crate) fn clone_into_fd(&self) -> Option<RawFd> {
        self.dirfd.as_ref().map(|f| f.as_raw_fd())
    }

    /// v1: the `tasks` files of the sandbox's hierarchies, opened for
    /// writing by the supervisor. The cloned child writes "0" into each to
    /// move itself in: a thread moving itself through `tasks` skips the
    /// global threadgroup lock, whose first writer after a quiet spell waits
    /// for an RCU grace period (milliseconds), as writing a pid to
    /// `cgroup.procs` does. The open-time credentials authorise the move.
    /// v2 needs none: clone3 places the child (CLONE_INTO_CGROUP).
    pub(crate) fn self_move_fds(&self) -> Result<Vec<OwnedFd>, CgroupError> {
        if self.version == CgroupVersion::V2 {
            return Ok(Vec::new());
        }
        self.dirs
            .iter()
            .map(|(_, d)| {
                let p = d.join("tasks");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map(OwnedFd::from)
                    .map_err(io_err(&p))
            })
            .collect()
    }

    fn read_kv(path: &Path, key: &str) -> Option<u64> {
        let s = fs::read_to_string(path).ok()?;
        s.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next()? == key)
                .then(|| it.next()?.parse().ok())
                .flatten()
        })
    }

    fn read_u64(path: &Path) -> Option<u64> {
        fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// Read the counters (before kill/remove).
    pub(crate) fn stats(&self) -> CgroupStats {
        let mut st = CgroupStats::default();
        match self.version {
            CgroupVersion::V2 => {
                let Some(d) = self.dir("unified") else {
                    return st;
                };
                st.peak_memory = Self::read_u64(&d.join("memory.peak"));
                st.oom_killed =
                    Self::read_kv(&d.join("memory.events"), "oom_kill").unwrap_or(0) > 0;
                st.memory_max_hit = Self::read_kv(&d.join("memory.events"), "max").unwrap_or(0) > 0;
                st.pids_max_hit = Self::read_kv(&d.join("pids.events"), "max").unwrap_or(0) > 0;
                st.cpu_throttled =
                    Self::read_kv(&d.join("cpu.stat"), "nr_throttled").unwrap_or(0) > 0;
            }
            CgroupVersion::V1 => {
                if let Some(d) = self.dir("memory") {
                    st.peak_memory = Self::read_u64(&d.join("memory.max_usage_in_bytes"));
                    st.oom_killed =
                        Self::read_kv(&d.join("memory.oom_control"), "oom_kill").unwrap_or(0) > 0;
                    st.memory_max_hit = Self::read_u64(&d.join("memory.failcnt")).unwrap_or(0) > 0;
                }
                if let Some(d) = self.dir("pids") {
                    st.pids_max_hit = Self::read_kv(&d.join("pids.events"), "max").unwrap_or(0) > 0;
                }
                if let Some(d) = self.dir("cpu") {
                    st.cpu_throttled =
                        Self::read_kv(&d.join("cpu.stat"), "nr_throttled").unwrap_or(0) > 0;
                }
            }
        }
        st
    }

    /// Kill every process in the cgroup.
    pub(crate) fn kill_all(&self) {
        kill_dir_set(self.version, &self.dirs);
    }

    /// Kill everything left and remove the directories (retrying briefly
    /// while the kernel finishes tearing processes down).
    pub(crate) fn remove(&mut self) {
        if self.dirs.is_empty() {
            return;
        }
        // Usually empty already: the pid namespace died with its init.
        if self.dirs.iter().any(|(_, d)| !procs(d).is_empty()) {
            self.kill_all();
        }
        self.dirfd = None;
        remove_dirs(&self.dirs);
        self.dirs.clear();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn kill_dir_set(version: CgroupVersion, dirs: &[(String, PathBuf)]) {
    match version {
        CgroupVersion::V2 => {
            for (_, d) in dirs {
                if fs::write(d.join("cgroup.kill"), "1").is_err() {
                    for p in procs(d) {
                        crate::sys::kill(p, libc::SIGKILL);
                    }
                }
            }
        }
        CgroupVersion::V1 => {
            // Repeat until empty, so a process forked during a pass is
            // caught by the next one (the pids limit bounds the passes).
            for _ in 0..100 {
                let mut any = false;
                for (_, d) in dirs {
                    for p in procs(d) {
                        any = true;
                        crate::sys::kill(p, libc::SIGKILL);
                    }
                }
                if !any {
                    break;
                }
            }
        }
    }
}

fn remove_dirs(dirs: &[(String, PathBuf)]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for (_, d) in dirs {
        loop {
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => {
                    if Instant::now() > deadline {
                        tracing::warn!(path = %d.display(), error = %e, "could not remove sandbox cgroup");
                        break;
                    }
                    for p in procs(d) {
                        crate::sys::kill(p, libc::SIGKILL);
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }
}

/// Remove cgroups left by supervisors that no longer exist (SIGKILLed),
/// once per parent directory and process.
fn sweep_stale(parent: &Path) {
    static SWEPT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
        if swept.iter().any(|p| p == parent) {
            return;
        }
        swept.push(parent.to_path_buf());
    }
    let Ok(rd) = fs::read_dir(parent) else { return };
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("airlock-") else {
            continue;
        };
        let mut it = rest.split('-');
        let (Some(pid), Some(start)) = (
            it.next().and_then(|p| p.parse::<u32>().ok()),
            it.next().and_then(|s| s.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if own_start_time(pid) == Some(start) {
            continue; // its supervisor is alive
        }
        tracing::info!(cgroup = %ent.path().display(), "removing cgroup left by a dead supervisor");
        let dirs = vec![("stale".to_string(), ent.path())];
        let version = if is_cgroup2(parent) {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        };
        kill_dir_set(version, &dirs);
        remove_dirs(&dirs);
    }
}
