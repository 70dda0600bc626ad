//! `airlock doctor`: what this host supports, each item ok, degraded or
//! missing, with a hint.

use serde::Serialize;

use crate::cgroup::{detect, CgroupVersion};

/// Status of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Fully supported.
    Ok,
    /// Usable with reduced guarantees.
    Degraded,
    /// Not available.
    Missing,
}

/// One host capability check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The outcome.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// What to do about it, when not ok.
    pub hint: Option<String>,
}

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn userns_check() -> Check {
    let max = read("/proc/sys/user/max_user_namespaces").and_then(|s| s.parse::<u64>().ok());
    let unpriv = read("/proc/sys/kernel/unprivileged_userns_clone");
    let apparmor = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let (status, detail, hint) = match (max, unpriv.as_deref(), apparmor.as_deref()) {
        (Some(0), _, _) => (
            CheckStatus::Missing,
            "user.max_user_namespaces is 0".to_string(),
            Some("sysctl -w user.max_user_namespaces=15000".to_string()),
        ),
        (_, Some("0"), _) => (
            CheckStatus::Missing,
            "kernel.unprivileged_userns_clone is 0 (rootless use is blocked)".to_string(),
            Some(
                "sysctl -w kernel.unprivileged_userns_clone=1, or run airlock as root".to_string(),
            ),
        ),
        (_, _, Some("1")) => (
            CheckStatus::Degraded,
            "AppArmor restricts unprivileged user namespaces".to_string(),
            Some("run as root, or add an AppArmor profile allowing userns for airlock".to_string()),
        ),
        (m, _, _) => (
            CheckStatus::Ok,
            format!(
                "user namespaces available (max {})",
                m.map_or("unknown".into(), |m| m.to_string())
            ),
            None,
        ),
    };
    Check {
        name: "user namespaces",
        status,
        detail,
        hint,
    }
}

/// Check everything airlock uses.
pub fn doctor() -> Vec<Check> {
    let mut out = vec![userns_check()];

    let abi = crate::landlock::kernel_abi();
    out.push(Check {
        name: "landlock",
        status: match abi {
            0 => CheckStatus::Missing,
            1..=5 => CheckStatus::Degraded,
            _ => CheckStatus::Ok,
        },
        detail: if abi == 0 {
            "not available".into()
        } else {
            format!("ABI {abi}")
        },
        hint: match abi {
            0 => Some(
                "boot with lsm=...,landlock (Linux >= 5.13); airlock runs best-effort without it"
                    .into(),
            ),
            1..=5 => Some("a kernel >= 6.12 adds signal and socket scoping (ABI 6)".into()),
            _ => None,
        },
    });

    let seccomp_mode = read("/proc/self/status").and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Seccomp:"))
            .map(str::to_string)
    });
    let has_filter = std::path::Path::new("/proc/sys/kernel/seccomp/actions_avail").exists();
    out.push(Check {
        name: "seccomp",
        status: if has_filter {
            CheckStatus::Ok
        } else {
            CheckStatus::Missing
        },
        detail: read("/proc/sys/kernel/seccomp/actions_avail")
            .map(|a| format!("filter actions: {a}"))
            .unwrap_or_else(|| seccomp_mode.unwrap_or_else(|| "unknown".into())),
        hint: (!has_filter).then(|| "a kernel with CONFIG_SECCOMP_FILTER is required".into()),
    });

    let cg = detect(None);
    out.push(Check {
        name: "cgroups",
        status: match (cg.version, cg.controllers.len()) {
            (None, _) => CheckStatus::Missing,
            (Some(_), 3) => CheckStatus::Ok,
            _ => CheckStatus::Degraded,
        },
        detail: match cg.version {
            Some(v) => format!(
                "{} at {}, writable controllers: [{}]",
                match v {
                    CgroupVersion::V2 => "v2",
                    CgroupVersion::V1 => "v1",
                },
                cg.parent
                    .as_ref()
                    .map_or("?".into(), |p| p.display().to_string()),
                cg.controllers.join(", ")
            ),
            None => "no usable hierarchy".into(),
        },
        hint: cg
            .note
            .clone()
            .map(|n| format!("{n}; without cgroups airlock falls back to rlimits")),
    });

    let overlay =
        read("/proc/filesystems").is_some_and(|f| f.lines().any(|l| l.ends_with("overlay")));
    out.push(Check {
        name: "overlayfs",
        status: if overlay {
            CheckStatus::Ok
        } else {
            CheckStatus::Degraded
        },
        detail: if overlay {
            "available".into()
        } else {
            "not listed in /proc/filesystems".into()
        },
        hint: (!overlay).then(|| "modprobe overlay (needed only for rootfs images)".into()),
    });

    out.push(idmap_check());

    let time_ns = std::path::Path::new("/proc/self/ns/time").exists();
    out.push(Check {
        name: "time namespace",
        status: if time_ns {
            CheckStatus::Ok
        } else {
            CheckStatus::Degraded
        },
        detail: if time_ns {
            "available: sandbox clocks start at zero, host uptime hidden".into()
        } else {
            "not available: the sandbox sees the host's uptime".into()
        },
        hint: (!time_ns).then(|| "a kernel >= 5.6 built with CONFIG_TIME_NS".into()),
    });

    let kernel = rustix::system::uname();
    let release = kernel.release().to_string_lossy().to_string();
    let (maj, min) = {
        let mut it = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse::<u32>().ok());
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let new_enough = (maj, min) >= (5, 14);
    out.push(Check {
        name: "kernel",
        status: if new_enough { CheckStatus::Ok } else { CheckStatus::Missing },
        detail: format!("Linux {release}"),
        hint: (!new_enough).then(|| "airlock needs Linux >= 5.14 (clone3 with CLONE_INTO_CGROUP, mount_setattr, cgroup.kill)".into()),
    });
    out
}

/// Idmapped workspace mounts: tried for real on the temporary directory
/// (a detached mount that is never attached) when airlock runs as root.
fn idmap_check() -> Check {
    let name = "idmapped mounts";
    if !rustix::process::geteuid().is_root() {
        return Check {
            name,
            status: CheckStatus::Ok,
            detail: "not needed rootless: the sandbox runs as your uid".into(),
            hint: None,
        };
    }
    let dir = std::env::temp_dir();
    let tried = crate::workspace::open(&dir)
        .map_err(|e| e.to_string())
        .and_then(|w| {
            let id = crate::hostids::ROOT_MODE_UID_BASE;
            w.detached_tree(Some((id, id)))
                .map(drop)
                .map_err(|e| e.to_string())
        });
    match tried {
        Ok(()) => Check {
            name,
            status: CheckStatus::Ok,
            detail: format!(
                "work on {} (root-run sandboxes get a host uid of their own; a workspace \
                 keeps its owner)",
                dir.display()
            ),
            hint: None,
        },
        Err(e) => Check {
            name,
            status: CheckStatus::Degraded,
            detail: format!("do not work on {}: {e}", dir.display()),
            hint: Some(
                "a root-run sandbox with a --workspace then runs as the directory's owner, \
                 and a root-owned workspace is refused; use ext4, xfs, btrfs or tmpfs on \
                 Linux >= 6.3"
                    .into(),
            ),
        },
    }
}
