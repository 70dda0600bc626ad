//! Landlock: the same filesystem view as the mounts, enforced a second time
//! by the kernel's LSM (defense in depth), best-effort with a floor.

use std::path::PathBuf;

use landlock::{
    path_beneath_rules, Access, AccessFs, CompatLevel, Compatible, LandlockStatus, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};

use crate::error::LandlockError;
use crate::spec::{JailSpec, LandlockSpec};

/// How much of the requested Landlock policy the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockEnforcement {
    /// Every requested restriction is enforced.
    Full,
    /// Some restrictions (newer ABI features) are not.
    Partial,
    /// Landlock is not enforced at all.
    None,
}

/// The Landlock outcome recorded for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockReport {
    /// Enforcement level reached.
    pub enforcement: LandlockEnforcement,
    /// The kernel's Landlock ABI (0 = unavailable).
    pub abi: u8,
}

/// The kernel's Landlock ABI version, 0 when unsupported or disabled.
pub fn kernel_abi() -> u8 {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: with a null attr, zero size and the VERSION flag the call only
    // returns the ABI number; no memory is read or written.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        0
    } else {
        v.min(255) as u8
    }
}

/// Restrict the calling process (the payload, before exec) to the sandbox's
/// view. `no_new_privs` must already be set.
pub(crate) fn restrict(
    spec: &JailSpec,
    req: LandlockSpec,
) -> Result<LandlockReport, LandlockError> {
    let abi = ABI::V6;
    let available = kernel_abi();
    if req.required && available < req.min_abi {
        return Err(LandlockError::BelowFloor {
            required: req.min_abi,
            available,
        });
    }
    let rerr = |e: landlock::RulesetError| LandlockError::Ruleset(e.to_string());
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut ro: Vec<PathBuf> = spec.ro_binds.iter().map(|b| b.path.clone()).collect();
    ro.push("/etc".into());
    ro.push("/proc".into());
    let rw: Vec<PathBuf> = vec![
        "/tmp".into(),
        "/var/tmp".into(),
        "/dev/shm".into(),
        spec.home_path.clone(),
        spec.workspace_path.clone(),
    ];
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(rerr)?
        .scope(Scope::from_all(abi))
        .map_err(rerr)?
        .create()
        .map_err(rerr)?
        // Listing the root directory itself (it only holds mount points).
        .add_rules(path_beneath_rules(["/"], AccessFs::ReadDir))
        .map_err(rerr)?
        .add_rules(path_beneath_rules(&ro, read))
        .map_err(rerr)?
        .add_rules(path_beneath_rules(
            ["/dev"],
            read | AccessFs::WriteFile | AccessFs::IoctlDev,
        ))
        .map_err(rerr)?
        .add_rules(path_beneath_rules(&rw, all))
        .map_err(rerr)?
        .restrict_self()
        .map_err(rerr)?;
    let enforcement = match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockEnforcement::Full,
        RulesetStatus::PartiallyEnforced => LandlockEnforcement::Partial,
        RulesetStatus::NotEnforced => LandlockEnforcement::None,
    };
    let abi_num = match status.landlock {
        LandlockStatus::Available { .. } => available,
        _ => 0,
    };
    if req.required && enforcement == LandlockEnforcement::None {
        return Err(LandlockError::BelowFloor {
            required: req.min_abi,
            available: abi_num,
        });
    }
    Ok(LandlockReport {
        enforcement,
        abi: abi_num,
    })
}
