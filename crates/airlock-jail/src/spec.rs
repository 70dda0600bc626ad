//! What a jail is asked to build: the values the runtime hands over.
//!
//! The jail never reads profiles or makes policy decisions; it receives a
//! `JailSpec` and builds exactly that. `JailSpec::validate` is the single
//! validation pass that runs before any side effect.

use std::path::PathBuf;
use std::time::Duration;

use airlock_policy::SeccompPolicy;
use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// A read-only bind of a host path at the same path inside the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoBind {
    /// Absolute host path (also the path inside).
    pub path: PathBuf,
    /// Skip it silently when the host path does not exist.
    pub optional: bool,
}

/// Where the workspace comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum WorkspaceSource {
    /// A host directory bound read-write.
    HostDir(PathBuf),
    /// An empty ephemeral tmpfs of this many bytes.
    Tmpfs(u64),
}

/// Landlock requirement.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LandlockSpec {
    /// Fail the run when Landlock cannot be enforced at `min_abi` or above.
    pub required: bool,
    /// Minimum ABI version when required.
    pub min_abi: u8,
}

/// cgroup limits. `None` means "no limit" for that controller. When the
/// controller for a requested limit is unusable and the limit is not
/// required, the jail applies an rlimit instead: RLIMIT_AS for memory and
/// RLIMIT_NPROC (counted per user namespace) for pids.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CgroupSpec {
    /// memory.max in bytes.
    pub memory: Option<u64>,
    /// pids.max.
    pub pids: Option<u32>,
    /// CPU quota in cores.
    pub cpus: Option<f64>,
    /// Fail the run when cgroups cannot be used (otherwise degrade to rlimits).
    pub required: bool,
    /// Use this cgroup hierarchy root instead of detecting one under /sys/fs/cgroup.
    pub root: Option<PathBuf>,
}

/// Resource limits applied with setrlimit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RlimitSpec {
    /// RLIMIT_NOFILE.
    pub nofile: u64,
    /// RLIMIT_FSIZE in bytes.
    pub fsize: u64,
}

/// Everything needed to build and run one sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JailSpec {
    /// The command and its arguments. `argv[0]` is resolved against the
    /// sandbox's PATH when it contains no `/`.
    pub argv: Vec<String>,
    /// The payload's whole environment.
    pub env: Vec<(String, String)>,
    /// Payload uid and gid inside the sandbox (never 0).
    pub uid: u32,
    /// Payload gid inside the sandbox (never 0).
    pub gid: u32,
    /// Hostname (uts namespace).
    pub hostname: String,
    /// Read-only binds of host paths.
    pub ro_binds: Vec<RoBind>,
    /// Workspace mount point inside, and its source.
    pub workspace_path: PathBuf,
    /// Workspace source.
    pub workspace: WorkspaceSource,
    /// The payload's home directory inside (a tmpfs).
    pub home_path: PathBuf,
    /// Size cap of the home tmpfs.
    pub home_size: u64,
    /// Size cap of /tmp.
    pub tmp_size: u64,
    /// Seccomp deny rules. Compiled by the supervisor; init receives the
    /// compiled filters, not the rules.
    #[serde(skip_deserializing, default = "no_rules")]
    pub seccomp: SeccompPolicy,
    /// Landlock requirement.
    pub landlock: LandlockSpec,
    /// cgroup limits.
    pub cgroup: CgroupSpec,
    /// rlimits.
    pub rlimits: RlimitSpec,
    /// Wall-clock timeout.
    pub timeout: Duration,
    /// Cap on captured bytes, for stdout and for stderr each.
    pub output_cap: u64,
    /// Sockets for an egress gateway, and the resolver configuration.
    #[serde(default)]
    pub net: NetSpec,
    /// Files init writes before the payload starts (canary credentials),
    /// under the home directory or an ephemeral workspace only.
    #[serde(default)]
    pub plant: Vec<PlantFile>,
    /// Report every exec inside the sandbox ([`crate::JailEvent::Exec`]).
    #[serde(default)]
    pub exec_watch: bool,
    /// Files to hand to the caller after the payload exits (copy-out),
    /// relative to the workspace.
    #[serde(default)]
    pub copy_out: Vec<PathBuf>,
    /// Largest file copied out, in bytes.
    #[serde(default = "default_copy_out_max")]
    pub copy_out_max: u64,
}

fn default_copy_out_max() -> u64 {
    64 << 20
}

/// A file written into the sandbox before the payload starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlantFile {
    /// Absolute path inside the sandbox, under `home_path` or an ephemeral
    /// `workspace_path`. Missing parent directories are created (0700).
    pub path: PathBuf,
    /// The contents.
    pub contents: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Report every open of it ([`crate::JailEvent::FileOpened`]).
    pub watch: bool,
}

/// Most planted files, and their total size.
pub const MAX_PLANT: usize = 64;
/// Largest total size of planted files.
pub const MAX_PLANT_BYTES: usize = 256 * 1024;
/// Most files copied out of one sandbox.
pub const MAX_COPY_OUT: usize = 256;

/// Network set-up inside the sandbox's (loopback-only) network namespace.
/// The jail creates the listed sockets there before the payload starts and
/// hands them to the caller ([`crate::OutputSink::network_listeners`]);
/// init keeps no copy, so when the caller closes them, connections are
/// refused instead of hanging.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    /// Sockets to create, in this order.
    pub listeners: Vec<ListenSpec>,
    /// Contents of /etc/resolv.conf; `None` for a "no network" comment.
    pub resolv_conf: Option<String>,
}

/// One socket bound inside the sandbox's network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenSpec {
    /// Address to bind (a loopback or unspecified address).
    pub addr: std::net::SocketAddr,
    /// UDP instead of a listening TCP socket.
    pub udp: bool,
}

/// Most sockets one sandbox may ask for.
pub const MAX_LISTENERS: usize = 64;

fn no_rules() -> SeccompPolicy {
    SeccompPolicy {
        rules: Vec::new(),
        kill_foreign_arch: true,
    }
}

fn check_abs(field: &'static str, p: &std::path::Path) -> Result<(), SpecError> {
    use std::path::Component;
    let ok = p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !p.as_os_str().as_encoded_bytes().contains(&0);
    if ok {
        Ok(())
    } else {
        Err(SpecError::BadPath {
            field,
            path: p.to_path_buf(),
        })
    }
}

fn check_rel(field: &'static str, p: &std::path::Path) -> Result<(), SpecError> {
    use std::path::Component;
    let ok = !p.as_os_str().is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !p.as_os_str().as_encoded_bytes().contains(&0);
    if ok {
        Ok(())
    } else {
        Err(SpecError::BadRelPath {
            field,
            path: p.to_path_buf(),
        })
    }
}

impl JailSpec {
    fn validate_plant(&self) -> Result<(), SpecError> {
        if self.plant.len() > MAX_PLANT {
            return Err(SpecError::TooMany {
                field: "plant",
                count: self.plant.len(),
                max: MAX_PLANT,
            });
        }
        let total: usize = self.plant.iter().map(|f| f.contents.len()).sum();
        if total > MAX_PLANT_BYTES {
            return Err(SpecError::TooMany {
                field: "plant (bytes)",
                count: total,
                max: MAX_PLANT_BYTES,
            });
        }
        for f in &self.plant {
            check_abs("plant", &f.path)?;
            let in_home = f.path.starts_with(&self.home_path) && f.path != self.home_path;
            let in_ws = f.path.starts_with(&self.workspace_path) && f.path != self.workspace_path;
            let host_ws = matches!(self.workspace, WorkspaceSource::HostDir(_));
            if !(in_home || in_ws && !host_ws) {
                return Err(SpecError::PlantOutside {
                    path: f.path.clone(),
                });
            }
            if f.mode & !0o777 != 0 {
                return Err(SpecError::BadMode {
                    path: f.path.clone(),
                    mode: f.mode,
                });
            }
        }
        Ok(())
    }

    /// Check every value before anything is created.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(SpecError::EmptyCommand);
        }
        self.validate_sandbox()
    }

    /// [`JailSpec::validate`] without the command: a live sandbox's spec,
    /// whose processes come later.
    pub fn validate_sandbox(&self) -> Result<(), SpecError> {
        if self.net.listeners.len() > MAX_LISTENERS {
            return Err(SpecError::TooManyListeners {
                count: self.net.listeners.len(),
                max: MAX_LISTENERS,
            });
        }
        for l in &self.net.listeners {
            let ip = l.addr.ip();
            if !(ip.is_loopback() || ip.is_unspecified()) {
                return Err(SpecError::BadListener { addr: l.addr });
            }
        }
        if self
            .net
            .resolv_conf
            .as_deref()
            .is_some_and(|r| r.contains('\0'))
        {
            return Err(SpecError::Nul {
                field: "net.resolv_conf",
            });
        }
        for a in &self.argv {
            if a.contains('\0') {
                return Err(SpecError::Nul { field: "argv" });
            }
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(SpecError::BadEnv { name: k.clone() });
            }
        }
        if self.uid == 0 || self.gid == 0 {
            return Err(SpecError::RootInside);
        }
        if self.hostname.is_empty() || self.hostname.len() > 64 {
            return Err(SpecError::BadHostname {
                name: self.hostname.clone(),
            });
        }
        for b in &self.ro_binds {
            check_abs("ro_binds", &b.path)?;
        }
        check_abs("workspace_path", &self.workspace_path)?;
        check_abs("home_path", &self.home_path)?;
        if let WorkspaceSource::HostDir(d) = &self.workspace {
            if !d.is_absolute() {
                return Err(SpecError::BadPath {
                    field: "workspace",
                    path: d.clone(),
                });
            }
        }
        for (name, p) in [
            ("workspace_path", &self.workspace_path),
            ("home_path", &self.home_path),
        ] {
            for reserved in ["/proc", "/dev", "/tmp", "/etc", "/usr"] {
                if p.starts_with(reserved) || p == std::path::Path::new("/") {
                    return Err(SpecError::Reserved {
                        field: name,
                        path: p.clone(),
                    });
                }
            }
        }
        self.validate_plant()?;
        if self.copy_out.len() > MAX_COPY_OUT {
            return Err(SpecError::TooMany {
                field: "copy_out",
                count: self.copy_out.len(),
                max: MAX_COPY_OUT,
            });
        }
        for p in &self.copy_out {
            check_rel("copy_out", p)?;
        }
        if self.timeout.is_zero() {
            return Err(SpecError::ZeroTimeout);
        }
        if let Some(c) = self.cgroup.cpus {
            if !(c.is_finite() && c > 0.0) {
                return Err(SpecError::BadCpus(c));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JailSpec {
        JailSpec {
            argv: vec!["/bin/true".into()],
            env: vec![("PATH".into(), "/usr/bin".into())],
            uid: 1000,
            gid: 1000,
            hostname: "airlock".into(),
            ro_binds: vec![RoBind {
                path: "/usr".into(),
                optional: false,
            }],
            workspace_path: "/workspace".into(),
            workspace: WorkspaceSource::Tmpfs(1 << 20),
            home_path: "/home/sandbox".into(),
            home_size: 1 << 20,
            tmp_size: 1 << 20,
            seccomp: no_rules(),
            landlock: LandlockSpec {
                required: false,
                min_abi: 1,
            },
            cgroup: CgroupSpec {
                memory: None,
                pids: None,
                cpus: None,
                required: false,
                root: None,
            },
            rlimits: RlimitSpec {
                nofile: 64,
                fsize: 1 << 20,
            },
            timeout: Duration::from_secs(1),
            output_cap: 1 << 20,
            net: NetSpec::default(),
            plant: vec![PlantFile {
                path: "/home/sandbox/.aws/credentials".into(),
                contents: b"x".to_vec(),
                mode: 0o600,
                watch: true,
            }],
            exec_watch: false,
            copy_out: vec!["out/report.txt".into()],
            copy_out_max: 1 << 20,
        }
    }

    #[test]
    fn a_valid_spec_passes() {
        spec().validate().unwrap();
    }

    type Breaker = Box<dyn Fn(&mut JailSpec)>;

    #[test]
    fn bad_values_are_refused_before_anything_runs() {
        let cases: Vec<(&str, Breaker)> = vec![
            ("no command", Box::new(|s| s.argv.clear())),
            ("NUL", Box::new(|s| s.argv.push("a\0b".into()))),
            ("uid or gid 0", Box::new(|s| s.uid = 0)),
            (
                "invalid environment",
                Box::new(|s| s.env.push(("A=B".into(), "x".into()))),
            ),
            (
                "absolute",
                Box::new(|s| s.ro_binds[0].path = "usr/../etc".into()),
            ),
            (
                "collides",
                Box::new(|s| s.workspace_path = "/proc/x".into()),
            ),
            ("timeout", Box::new(|s| s.timeout = Duration::ZERO)),
            ("cpus", Box::new(|s| s.cgroup.cpus = Some(f64::NAN))),
            (
                "outside the home directory",
                Box::new(|s| s.plant[0].path = "/etc/passwd".into()),
            ),
            (
                "outside the home directory",
                Box::new(|s| {
                    s.workspace = WorkspaceSource::HostDir("/srv/job".into());
                    s.plant[0].path = "/workspace/.env".into();
                }),
            ),
            ("relative", Box::new(|s| s.copy_out[0] = "../x".into())),
            (
                "relative",
                Box::new(|s| s.copy_out[0] = "/etc/shadow".into()),
            ),
            ("mode", Box::new(|s| s.plant[0].mode = 0o4755)),
        ];
        for (want, break_it) in cases {
            let mut s = spec();
            break_it(&mut s);
            let err = s.validate().expect_err(want).to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
