//! The validated `Profile` and its parts; conversion from the wire format;
//! built-in profiles, loading, command-line overrides and `profile show`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::denylist::{self, builtin_seccomp, EPERM};
use crate::duration::serialize_duration;
use crate::error::{FieldError, LoadError, OverrideError, ProfileError, RenderError};
use crate::extends::Origins;
use crate::locate::FieldPath;
use crate::network::{HostPattern, MockKind, MockResponse, MockRoute, NetworkMode, NetworkPolicy};
use crate::path::AbsPath;
use crate::seccomp::{DenyAction, SeccompPolicy, SeccompRule};
use crate::size::ByteSize;
use crate::wire::{
    serialize_or_unlimited, OnDeny, WireExtraDeny, WireFilesystem, WireLimits, WireMockKind,
    WireNetwork, WireProfile, WireSeccomp, WireSecurity,
};

/// A validated sandbox profile: everything the runtime needs to build a
/// sandbox, with every default filled in.
///
/// Serializes (TOML via [`Profile::to_toml_string`], or JSON) in the same
/// shape as the profile file, plus the resolved `seccomp` rules.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Name for logs and audit events.
    pub name: String,
    /// One line describing the profile.
    pub description: String,
    /// What the sandbox sees of the filesystem.
    pub filesystem: FilesystemPolicy,
    /// Resource limits.
    pub limits: Limits,
    /// Identity and hardening inside the sandbox.
    pub security: SecurityPolicy,
    /// Network access.
    pub network: NetworkPolicy,
    /// Extra environment variables for the payload. Names are valid
    /// (`[A-Za-z_][A-Za-z0-9_]*`) and values have no NUL. airlock's own
    /// variables (PATH, HOME, ...) may be named here, and then this value
    /// wins.
    pub env: BTreeMap<String, String>,
    /// Resolved seccomp policy: the built-in deny list plus the profile's
    /// additions, with the profile's `on_deny` applied.
    pub seccomp: SeccompPolicy,
    /// Canary credentials planted in the sandbox.
    pub canaries: crate::evidence::CanaryPolicy,
    /// The audit log.
    pub audit: crate::evidence::AuditPolicy,
}

/// What the sandbox sees of the filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilesystemPolicy {
    /// Host paths bound read-only at the same path; each must exist at
    /// spawn (an error otherwise). Never /proc, /dev, /sys or below.
    pub ro: Vec<AbsPath>,
    /// Same as `ro`, silently skipped when missing on the host.
    pub ro_optional: Vec<AbsPath>,
    /// /tmp tmpfs cap (default 64M); greater than 0.
    pub tmp_size: ByteSize,
    /// $HOME (/home/sandbox) tmpfs cap (default 64M); greater than 0.
    pub home_size: ByteSize,
    /// Ephemeral workspace tmpfs cap when no host dir is given (default
    /// 256M); greater than 0.
    pub workspace_size: ByteSize,
    /// Workspace mount point inside the sandbox (default /workspace). Not
    /// `/`, not in /proc, /dev or /sys, not /tmp or /home/sandbox or one of
    /// their ancestors, and not inside a read-only bind (other than a bind
    /// of `/` itself).
    pub workspace: AbsPath,
}

/// Resource limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// cgroup memory.max (default 1G); `None` = unlimited; never 0.
    #[serde(serialize_with = "serialize_or_unlimited")]
    pub memory: Option<ByteSize>,
    /// cgroup pids.max (default 256); `None` = unlimited; never 0.
    #[serde(serialize_with = "serialize_or_unlimited")]
    pub pids: Option<u32>,
    /// CPU quota in cores, e.g. 1.5; `None` = unlimited (the default).
    /// Finite, greater than 0, at most 1024.
    #[serde(serialize_with = "serialize_or_unlimited")]
    pub cpus: Option<f64>,
    /// Wall-clock limit (default 5m); greater than 0, at most 30 days.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// RLIMIT_NOFILE (default 1024); 16..=1048576.
    pub nofile: u64,
    /// RLIMIT_FSIZE (default 1G); greater than 0.
    pub fsize: ByteSize,
    /// Cap on captured stdout, and separately on stderr (default 16M);
    /// greater than 0.
    pub output: ByteSize,
}

/// Whether a protection must be in force, or is applied as far as the host
/// allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    /// Use it when available; carry on without it (logged) otherwise.
    #[default]
    BestEffort,
    /// Fail the sandbox start when it is not available.
    Required,
}

/// Identity and hardening inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityPolicy {
    /// The payload's uid inside (default 1000); never 0.
    pub uid: u32,
    /// The payload's gid inside (default 1000); never 0.
    pub gid: u32,
    /// The sandbox's hostname (default "airlock"); a valid RFC 1123 name.
    pub hostname: String,
    /// Landlock (default best-effort).
    pub landlock: Requirement,
    /// Minimum Landlock ABI when `landlock` is required (default 1; 1..=7).
    pub landlock_min_abi: u8,
    /// cgroups (default best-effort): when cgroups can't be used, limits
    /// fall back to rlimits.
    pub cgroups: Requirement,
}

/// Values given on the command line that replace the profile's. Each is
/// checked as the profile's own value would be; an error names the option.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--memory`.
    pub memory: Option<ByteSize>,
    /// `--pids`.
    pub pids: Option<u32>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--env NAME=VALUE`, applied in order after the profile's env.
    pub env: Vec<(String, String)>,
    /// `--net none|allowlist`.
    pub net: Option<NetworkMode>,
    /// `--allow-host PATTERN`, added to the profile's allow rules; implies
    /// `--net allowlist` unless `--net` is given.
    pub allow_hosts: Vec<String>,
    /// `--deny-host PATTERN`, added to the profile's deny rules.
    pub deny_hosts: Vec<String>,
}

/// Names of the built-in profiles.
const BUILTINS: &[&str] = &["default", "python"];

/// Names of the built-in profiles, for `airlock profile list` and errors.
pub fn builtin_names() -> &'static [&'static str] {
    BUILTINS
}

pub(crate) fn builtin_source(name: &str) -> Option<&'static str> {
    match name {
        "default" => Some(include_str!("../../../profiles/default.toml")),
        "python" => Some(include_str!("../../../profiles/python.toml")),
        _ => None,
    }
}

/// Largest profile file [`Profile::load`] reads.
const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// Longest accepted timeout.
const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 86_400);
/// Largest CPU quota, in cores.
const MAX_CPUS: f64 = 1024.0;
/// RLIMIT_NOFILE range (the upper bound is Linux's default fs.nr_open).
const NOFILE_RANGE: std::ops::RangeInclusive<u64> = 16..=1_048_576;
/// Landlock ABI versions airlock knows.
const LANDLOCK_ABI_RANGE: std::ops::RangeInclusive<u8> = 1..=7;
/// Paths the jail synthesizes, which can be neither bound nor the workspace.
const SYNTHESIZED: &[&str] = &["/proc", "/dev", "/sys"];
/// Mount points the jail uses itself.
const RESERVED_MOUNTS: &[&str] = &["/tmp", "/home/sandbox"];

// ---------------------------------------------------------------------------
// Single-value checks, shared by the profile and the command-line overrides.
// Each returns the message to attach to the field or option.

fn check_nonzero_size(size: ByteSize) -> Result<ByteSize, String> {
    if size.0 == 0 {
        Err("must be greater than 0".into())
    } else {
        Ok(size)
    }
}

/// Smallest memory limit: below it nothing starts (the payload's own
/// program text alone is larger), so a smaller value is a typo for a unit.
pub(crate) const MIN_MEMORY: ByteSize = ByteSize::mib(1);

fn check_memory(memory: Option<ByteSize>) -> Result<Option<ByteSize>, String> {
    match memory {
        Some(ByteSize(0)) => Err("must be greater than 0 (use \"unlimited\" for no limit)".into()),
        Some(m) if m < MIN_MEMORY => Err(format!(
            "{m} is below the minimum of {MIN_MEMORY} (sizes take a unit, e.g. \"512M\")"
        )),
        other => Ok(other),
    }
}

fn check_pids(pids: Option<u32>) -> Result<Option<u32>, String> {
    match pids {
        Some(0) => Err("must be greater than 0 (use \"unlimited\" for no limit)".into()),
        other => Ok(other),
    }
}

fn check_cpus(cpus: Option<f64>) -> Result<Option<f64>, String> {
    match cpus {
        Some(c) if !c.is_finite() => Err(format!("{c} is not a finite number of cores")),
        Some(c) if c <= 0.0 => Err(format!(
            "{c} cores: must be greater than 0 (use \"unlimited\" for no limit)"
        )),
        Some(c) if c > MAX_CPUS => Err(format!("{c} cores: at most {MAX_CPUS} are allowed")),
        other => Ok(other),
    }
}

fn check_timeout(timeout: Duration) -> Result<Duration, String> {
    if timeout.is_zero() {
        Err("must be greater than 0".into())
    } else if timeout > MAX_TIMEOUT {
        Err("must be at most 30 days (\"30d\")".into())
    } else {
        Ok(timeout)
    }
}

fn check_id(kind: &str, id: u32) -> Result<u32, String> {
    match id {
        0 => Err(format!(
            "{kind} 0 (root) is not allowed: the payload never runs as root inside the sandbox"
        )),
        u32::MAX => Err(format!("{kind} {id} is reserved (it means \"no {kind}\")")),
        id => Ok(id),
    }
}

fn check_hostname(name: &str) -> Result<(), String> {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if (1..=64).contains(&name.len()) && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "invalid hostname {name:?}: expected at most 64 characters of dot-separated labels of letters, digits and '-' (not at either end of a label)"
        ))
    }
}

fn check_profile_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid profile name {name:?}: expected 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

fn check_env_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid environment variable name {name:?}: expected [A-Za-z_][A-Za-z0-9_]*"
        ))
    }
}

fn check_env_value(name: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        Err(format!("the value of {name} contains a NUL byte"))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Wire → validated. Paths in errors are relative to the converted part and
// prefixed by the caller.

fn field(key: &str, message: String) -> FieldError {
    FieldError::new(FieldPath::root().key(key), message)
}

impl TryFrom<WireFilesystem> for FilesystemPolicy {
    type Error = FieldError;

    fn try_from(wire: WireFilesystem) -> Result<Self, FieldError> {
        let synthesized: Vec<AbsPath> = SYNTHESIZED.iter().map(|p| AbsPath::known(p)).collect();
        for (key, list) in [("ro", &wire.ro), ("ro_optional", &wire.ro_optional)] {
            for (i, path) in list.iter().enumerate() {
                if let Some(top) = synthesized.iter().find(|top| path.is_under(top)) {
                    return Err(FieldError::new(
                        FieldPath::root().key(key).index(i),
                        format!(
                            "{path} cannot be bound from the host: the jail synthesizes {top} itself"
                        ),
                    ));
                }
            }
        }
        let size = |key: &str, size: ByteSize| {
            check_nonzero_size(size).map_err(|m| field(key, format!("{size}: {m}")))
        };
        let workspace = wire.workspace;
        let bad_workspace = |message: String| field("workspace", format!("{workspace}: {message}"));
        if workspace.as_str() == "/" {
            return Err(bad_workspace("the workspace cannot be the root".into()));
        }
        if let Some(top) = synthesized.iter().find(|top| workspace.is_under(top)) {
            return Err(bad_workspace(format!(
                "the workspace cannot be in {top}, which the jail synthesizes"
            )));
        }
        for reserved in RESERVED_MOUNTS {
            if AbsPath::known(reserved).is_under(&workspace) {
                return Err(bad_workspace(format!(
                    "the workspace would hide {reserved}, which the jail mounts itself"
                )));
            }
        }
        // A bind of the whole host root is a deliberate choice; the jail then
        // needs the mount point to exist on the host, which it checks.
        for (key, list) in [("ro", &wire.ro), ("ro_optional", &wire.ro_optional)] {
            let inside = |bind: &&AbsPath| bind.as_str() != "/" && workspace.is_under(bind);
            if let Some(bind) = list.iter().find(inside) {
                return Err(bad_workspace(format!(
                    "the workspace mount point cannot be inside the read-only bind {bind} (filesystem.{key})"
                )));
            }
        }
        Ok(Self {
            tmp_size: size("tmp_size", wire.tmp_size)?,
            home_size: size("home_size", wire.home_size)?,
            workspace_size: size("workspace_size", wire.workspace_size)?,
            ro: wire.ro,
            ro_optional: wire.ro_optional,
            workspace,
        })
    }
}

impl TryFrom<WireLimits> for Limits {
    type Error = FieldError;

    fn try_from(wire: WireLimits) -> Result<Self, FieldError> {
        let size = |key: &str, size: ByteSize| {
            check_nonzero_size(size).map_err(|m| field(key, format!("{size}: {m}")))
        };
        if !NOFILE_RANGE.contains(&wire.nofile) {
            return Err(field(
                "nofile",
                format!(
                    "{} is out of range {}..={}",
                    wire.nofile,
                    NOFILE_RANGE.start(),
                    NOFILE_RANGE.end()
                ),
            ));
        }
        Ok(Self {
            memory: check_memory(wire.memory.0).map_err(|m| field("memory", m))?,
            pids: check_pids(wire.pids.0).map_err(|m| field("pids", m))?,
            cpus: check_cpus(wire.cpus.0).map_err(|m| field("cpus", m))?,
            timeout: check_timeout(wire.timeout.0)
                .map_err(|m| field("timeout", format!("{}: {m}", wire.timeout)))?,
            nofile: wire.nofile,
            fsize: size("fsize", wire.fsize)?,
            output: size("output", wire.output)?,
        })
    }
}

impl TryFrom<WireSecurity> for SecurityPolicy {
    type Error = FieldError;

    fn try_from(wire: WireSecurity) -> Result<Self, FieldError> {
        check_hostname(&wire.hostname).map_err(|m| field("hostname", m))?;
        if !LANDLOCK_ABI_RANGE.contains(&wire.landlock_min_abi) {
            return Err(field(
                "landlock_min_abi",
                format!(
                    "{} is out of range {}..={}",
                    wire.landlock_min_abi,
                    LANDLOCK_ABI_RANGE.start(),
                    LANDLOCK_ABI_RANGE.end()
                ),
            ));
        }
        Ok(Self {
            uid: check_id("uid", wire.uid).map_err(|m| field("uid", m))?,
            gid: check_id("gid", wire.gid).map_err(|m| field("gid", m))?,
            hostname: wire.hostname,
            landlock: wire.landlock,
            landlock_min_abi: wire.landlock_min_abi,
            cgroups: wire.cgroups,
        })
    }
}

impl TryFrom<WireNetwork> for NetworkPolicy {
    type Error = FieldError;

    fn try_from(wire: WireNetwork) -> Result<Self, FieldError> {
        let at = |key: &str, i: usize, message: String| {
            FieldError::new(FieldPath::root().key(key).index(i), message)
        };
        let patterns = |key: &str, list: &[String]| -> Result<Vec<HostPattern>, FieldError> {
            list.iter()
                .enumerate()
                .map(|(i, s)| s.parse().map_err(|m| at(key, i, m)))
                .collect()
        };
        let allow = patterns("allow", &wire.allow)?;
        let deny = patterns("deny", &wire.deny)?;
        let allow_cidr = wire
            .allow_cidr
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        at(
                            "allow_cidr",
                            i,
                            format!("{s:?} is not a CIDR such as \"10.200.0.0/16\""),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut hosts = BTreeMap::new();
        for (name, addr) in &wire.hosts {
            let key = crate::network::normalize_name(name).map_err(|m| field("hosts", m))?;
            let ip = addr.parse::<std::net::IpAddr>().map_err(|_| {
                FieldError::new(
                    FieldPath::root().key("hosts").key(name),
                    format!("{addr:?} is not an IP address"),
                )
            })?;
            hosts.insert(key, ip);
        }
        let mut mocks = Vec::new();
        for (i, m) in wire.mock.into_iter().enumerate() {
            let at = |key: &str, message: String| {
                FieldError::new(FieldPath::root().key("mock").index(i).key(key), message)
            };
            let host: HostPattern = m.host.parse().map_err(|e| at("host", e))?;
            let kind = match m.kind {
                WireMockKind::Sink => {
                    if !m.routes.is_empty() {
                        return Err(at(
                            "routes",
                            "a sink has no routes (that is a static mock)".into(),
                        ));
                    }
                    let status = m.status.unwrap_or(200);
                    check_status(status).map_err(|e| at("status", e))?;
                    MockKind::Sink {
                        status,
                        body: m.body.unwrap_or_else(|| "{\"ok\":true}".into()),
                    }
                }
                WireMockKind::Static => {
                    if m.status.is_some() || m.body.is_some() {
                        return Err(at(
                            "status",
                            "a static mock sets status and body per route, in [[network.mock.routes]]".into(),
                        ));
                    }
                    if m.routes.is_empty() {
                        return Err(at(
                            "routes",
                            "a static mock needs at least one route".into(),
                        ));
                    }
                    let mut routes = Vec::new();
                    for (j, r) in m.routes.into_iter().enumerate() {
                        let at = |key: &str, message: String| {
                            FieldError::new(
                                FieldPath::root()
                                    .key("mock")
                                    .index(i)
                                    .key("routes")
                                    .index(j)
                                    .key(key),
                                message,
                            )
                        };
                        if !r.path.starts_with('/') && r.path != "*" {
                            return Err(at("path", format!("{:?} must start with '/'", r.path)));
                        }
                        check_status(r.status).map_err(|e| at("status", e))?;
                        for (name, value) in &r.headers {
                            check_header(name, value).map_err(|e| at("headers", e))?;
                        }
                        routes.push(MockResponse {
                            path: r.path,
                            status: r.status,
                            headers: r.headers,
                            body: r.body,
                        });
                    }
                    MockKind::Static { routes }
                }
            };
            mocks.push(MockRoute { host, kind });
        }
        if !(1..=4096).contains(&wire.max_connections) {
            return Err(field(
                "max_connections",
                format!("{} is not 1..=4096", wire.max_connections),
            ));
        }
        if !(1..=100_000).contains(&wire.max_connections_per_sec) {
            return Err(field(
                "max_connections_per_sec",
                format!("{} is not 1..=100000", wire.max_connections_per_sec),
            ));
        }
        for (key, cap) in [
            ("max_bytes_out", wire.max_bytes_out.0),
            ("max_bytes_in", wire.max_bytes_in.0),
        ] {
            if cap.is_some_and(|c| c.bytes() == 0) {
                return Err(field(
                    key,
                    "must be greater than 0 (use mode = \"none\" for no network)".into(),
                ));
            }
        }
        let policy = NetworkPolicy {
            mode: wire.mode,
            allow,
            deny,
            allow_cidr,
            hosts,
            mocks,
            max_bytes_out: wire.max_bytes_out.0,
            max_bytes_in: wire.max_bytes_in.0,
            max_connections: wire.max_connections,
            max_connections_per_sec: wire.max_connections_per_sec,
            on_deny: wire.on_deny,
            ask_timeout: wire.ask_timeout.0,
            max_grant_ttl: wire.max_grant_ttl.0,
        };
        let secs = std::time::Duration::from_secs;
        if !(secs(1)..=secs(3600)).contains(&policy.ask_timeout) {
            return Err(field(
                "ask_timeout",
                format!("{}: must be 1s to 1h", wire.ask_timeout),
            ));
        }
        if !(secs(1)..=secs(86_400)).contains(&policy.max_grant_ttl) {
            return Err(field(
                "max_grant_ttl",
                format!("{}: must be 1s to 24h", wire.max_grant_ttl),
            ));
        }
        policy.check_ports().map_err(|m| field("allow", m))?;
        if policy.mode == NetworkMode::None
            && (!policy.allow.is_empty() || !policy.mocks.is_empty())
        {
            return Err(field(
                if policy.allow.is_empty() {
                    "mock"
                } else {
                    "allow"
                },
                "allow rules and mocks need mode = \"allowlist\" (mode \"none\" lets nothing out)"
                    .into(),
            ));
        }
        Ok(policy)
    }
}

fn check_status(status: u16) -> Result<(), String> {
    if (100..=599).contains(&status) {
        Ok(())
    } else {
        Err(format!("{status} is not an HTTP status (100..=599)"))
    }
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!("{name:?} is not a header name"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("header {name}: value contains CR, LF or NUL"));
    }
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
    {
        return Err(format!("header {name} is set by the mock itself"));
    }
    Ok(())
}

fn check_env(env: &BTreeMap<String, String>) -> Result<(), FieldError> {
    for (name, value) in env {
        check_env_name(name)
            .and_then(|()| check_env_value(name, value))
            .map_err(|m| field(name, m))?;
    }
    Ok(())
}

/// The built-in deny list with the profile's additions and `on_deny`.
fn resolve_seccomp(builtin: SeccompPolicy, wire: WireSeccomp) -> Result<SeccompPolicy, FieldError> {
    let deny_action = match wire.on_deny {
        OnDeny::Errno => DenyAction::Errno(EPERM),
        OnDeny::Kill => DenyAction::Kill,
    };
    let mut rules = builtin.rules;
    for rule in &mut rules {
        if rule.action == DenyAction::Errno(EPERM) {
            rule.action = deny_action;
        }
    }
    for (i, extra) in wire.extra_deny.into_iter().enumerate() {
        let at = |key: &str, message: String| {
            FieldError::new(
                FieldPath::root().key("extra_deny").index(i).key(key),
                message,
            )
        };
        denylist::check_syscall_name(&extra.syscall).map_err(|m| at("syscall", m))?;
        if extra.why.trim().is_empty() {
            return Err(at("why", "must say why the syscall is denied".into()));
        }
        rules.push(SeccompRule {
            syscall: extra.syscall,
            conditions: Vec::new(),
            action: deny_action,
            why: extra.why,
        });
    }
    Ok(SeccompPolicy {
        rules,
        kill_foreign_arch: builtin.kill_foreign_arch,
    })
}

/// The profile name to use when the file does not set one: the file name
/// without `.toml` (made into a valid name), or `builtin:NAME`'s NAME.
fn default_name(origin: &str) -> String {
    let base = origin.strip_prefix("builtin:").unwrap_or(origin);
    let stem = Path::new(base)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("");
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert(0, 'p');
        name.truncate(64);
    }
    name
}

/// Reads a profile file: at most 1 MiB of UTF-8.
pub(crate) fn read_profile_file(path: &Path) -> Result<String, LoadError> {
    let read_error = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            LoadError::NotFound {
                path: path.to_owned(),
            }
        } else {
            LoadError::Read {
                path: path.to_owned(),
                source,
            }
        }
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            limit: MAX_FILE_SIZE,
        });
    }
    let src = String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 {
        path: path.to_owned(),
    })?;
    Ok(src)
}

impl Profile {
    /// Parses and validates a profile from TOML source. `origin` names the
    /// source in errors and in the default name: a file path, or
    /// `builtin:NAME`.
    ///
    /// `extends` is followed (a built-in name, or a file relative to
    /// `origin`'s directory); see [`Origins`] for where each value came from.
    pub fn from_toml(src: &str, origin: &str) -> Result<Profile, ProfileError> {
        Self::from_toml_with_origins(src, origin).map(|(p, _)| p)
    }

    /// [`Profile::from_toml`], also returning where each value came from.
    pub fn from_toml_with_origins(
        src: &str,
        origin: &str,
    ) -> Result<(Profile, Origins), ProfileError> {
        let resolved = crate::extends::resolve(src, origin, builtin_source, read_profile_file)?;
        let builtin = builtin_seccomp()?;
        let profile = Self::validate(resolved.wire, origin, builtin)
            .map_err(|e| resolved.origins.error(e))?;
        Ok((profile, resolved.origins))
    }

    /// The one validation pass: wire values to a `Profile`, or the first
    /// problem with the path of its field.
    fn validate(
        wire: WireProfile,
        origin: &str,
        builtin: SeccompPolicy,
    ) -> Result<Profile, FieldError> {
        let name = match wire.name {
            Some(name) => {
                check_profile_name(&name).map_err(|m| field("name", m))?;
                name
            }
            None => default_name(origin),
        };
        check_env(&wire.env).map_err(|e| e.within("env"))?;
        Ok(Profile {
            name,
            description: wire.description,
            filesystem: wire
                .filesystem
                .try_into()
                .map_err(|e: FieldError| e.within("filesystem"))?,
            limits: wire
                .limits
                .try_into()
                .map_err(|e: FieldError| e.within("limits"))?,
            security: wire
                .security
                .try_into()
                .map_err(|e: FieldError| e.within("security"))?,
            network: wire
                .network
                .try_into()
                .map_err(|e: FieldError| e.within("network"))?,
            env: wire.env,
            seccomp: resolve_seccomp(builtin, wire.seccomp).map_err(|e| e.within("seccomp"))?,
            canaries: wire
                .canaries
                .try_into()
                .map_err(|e: FieldError| e.within("canaries"))?,
            audit: wire
                .audit
                .try_into()
                .map_err(|e: FieldError| e.within("audit"))?,
        })
    }

    /// A built-in profile by name (see [`builtin_names`]).
    pub fn builtin(name: &str) -> Result<Profile, LoadError> {
        Self::builtin_with_origins(name).map(|(p, _)| p)
    }

    fn builtin_with_origins(name: &str) -> Result<(Profile, Origins), LoadError> {
        let src = builtin_source(name).ok_or_else(|| LoadError::UnknownBuiltin {
            name: name.to_owned(),
            known: BUILTINS,
        })?;
        Ok(Self::from_toml_with_origins(
            src,
            &format!("builtin:{name}"),
        )?)
    }

    /// A built-in profile name, or a path to a profile file: a value that
    /// contains `/` or ends in `.toml` is a path. Files over 1 MiB are
    /// refused.
    pub fn load(name_or_path: &str) -> Result<Profile, LoadError> {
        Self::load_with_origins(name_or_path).map(|(p, _)| p)
    }

    /// [`Profile::load`], also returning where each value came from (for
    /// `airlock profile show`).
    pub fn load_with_origins(name_or_path: &str) -> Result<(Profile, Origins), LoadError> {
        if !(name_or_path.contains('/') || name_or_path.ends_with(".toml")) {
            return Self::builtin_with_origins(name_or_path);
        }
        let src = read_profile_file(Path::new(name_or_path))?;
        Ok(Self::from_toml_with_origins(&src, name_or_path)?)
    }

    /// This profile with command-line values applied, each checked as in a
    /// profile file; an error names the option (`--pids`, `--env NAME`).
    pub fn with_overrides(mut self, overrides: &Overrides) -> Result<Profile, OverrideError> {
        let err = |option: &str, message: String| OverrideError {
            option: option.to_owned(),
            message,
        };
        if let Some(memory) = overrides.memory {
            self.limits.memory = check_memory(Some(memory)).map_err(|m| err("--memory", m))?;
        }
        if let Some(pids) = overrides.pids {
            self.limits.pids = check_pids(Some(pids)).map_err(|m| err("--pids", m))?;
        }
        if let Some(cpus) = overrides.cpus {
            self.limits.cpus = check_cpus(Some(cpus)).map_err(|m| err("--cpus", m))?;
        }
        if let Some(timeout) = overrides.timeout {
            self.limits.timeout = check_timeout(timeout).map_err(|m| err("--timeout", m))?;
        }
        for (name, value) in &overrides.env {
            check_env_name(name)
                .and_then(|()| check_env_value(name, value))
                .map_err(|m| err(&format!("--env {}", name.escape_debug()), m))?;
            self.env.insert(name.clone(), value.clone());
        }
        for (option, list, target) in [
            (
                "--allow-host",
                &overrides.allow_hosts,
                &mut self.network.allow,
            ),
            ("--deny-host", &overrides.deny_hosts, &mut self.network.deny),
        ] {
            for s in list {
                let pattern: HostPattern = s.parse().map_err(|m| err(option, m))?;
                target.push(pattern);
            }
        }
        match overrides.net {
            Some(NetworkMode::None) if !overrides.allow_hosts.is_empty() => {
                return Err(err(
                    "--allow-host",
                    "conflicts with --net none (nothing leaves a sandbox without network)".into(),
                ));
            }
            Some(mode) => self.network.mode = mode,
            None if !overrides.allow_hosts.is_empty() => self.network.mode = NetworkMode::Allowlist,
            None => {}
        }
        self.network
            .check_ports()
            .map_err(|m| err("--allow-host", m))?;
        Ok(self)
    }

    /// The profile as TOML for `airlock profile show`: every value resolved,
    /// then the seccomp section (`on_deny` and `extra_deny`, which read back
    /// through [`Profile::from_toml`]) preceded by a comment listing every
    /// resolved deny rule with its reason.
    pub fn to_toml_string(&self) -> Result<String, RenderError> {
        let render_error = |source| RenderError {
            name: self.name.clone(),
            source,
        };
        let view = ProfileView {
            name: &self.name,
            description: &self.description,
            filesystem: &self.filesystem,
            limits: &self.limits,
            security: &self.security,
            network: &self.network,
            env: &self.env,
            canaries: self.canaries.to_wire(),
            audit: self.audit.to_wire(),
        };
        let mut out = toml::to_string(&view).map_err(render_error)?;
        let (on_deny, extra_deny) = self.seccomp_settings();
        out.push_str("\n# Resolved seccomp deny list (profiles/seccomp.toml plus extra_deny):\n");
        if self.seccomp.kill_foreign_arch {
            out.push_str("#   any syscall from a foreign architecture (i386, x32): kill\n");
        }
        for rule in &self.seccomp.rules {
            out.push_str(&format!("#   {}\n", describe_rule(rule)));
        }
        let seccomp = SeccompSection {
            seccomp: SeccompView {
                on_deny,
                extra_deny,
            },
        };
        out.push_str(&toml::to_string(&seccomp).map_err(render_error)?);
        Ok(out)
    }

    /// [`Profile::to_toml_string`] with where each value came from: a
    /// header naming the `extends` chain, and a `# from ORIGIN` comment at
    /// the end of every `key = value` line (ORIGIN: the file or
    /// `builtin:NAME` that set it, several joined by `+` for a list that was
    /// appended to, or `default` for airlock's default). The result still
    /// reads back through [`Profile::from_toml`].
    pub fn to_toml_string_with_origins(&self, origins: &Origins) -> Result<String, RenderError> {
        let plain = self.to_toml_string()?;
        let mut out = format!(
            "# Resolved from {} (each profile extends the next).\n# `# from X`: the profile that set the value; `default`: airlock's default.\n\n",
            origins.chain().join(" -> ")
        );
        let mut table = FieldPath::root();
        let mut arrays: BTreeMap<String, usize> = BTreeMap::new();
        let mut in_multiline = false;
        for line in plain.lines() {
            out.push_str(line);
            let quotes = line.matches("\"\"\"").count() + line.matches("'''").count();
            let was_multiline = in_multiline;
            if quotes % 2 == 1 {
                in_multiline = !in_multiline;
            }
            if was_multiline || in_multiline {
                out.push('\n');
                continue;
            }
            if let Some(header) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
                let n = arrays.entry(header.to_owned()).or_insert(0);
                table = FieldPath::parse(header).map_or_else(FieldPath::root, |p| p.index(*n));
                *n += 1;
            } else if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                table = FieldPath::parse(header).unwrap_or_default();
            } else if let Some((key, _)) = line.split_once(" = ").filter(|_| !line.starts_with('#'))
            {
                if let Some(key) = FieldPath::parse(key) {
                    let path = table.clone().join(key.segs());
                    out.push_str("  # from ");
                    out.push_str(&origins.of(&path.to_string()).join(" + "));
                }
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// Recovers `on_deny` and `extra_deny` from the resolved rules: rules that
    /// are not in the built-in list are the profile's additions.
    fn seccomp_settings(&self) -> (OnDeny, Vec<WireExtraDeny>) {
        let builtin = builtin_seccomp().map(|p| p.rules).unwrap_or_default();
        let on_deny = if self
            .seccomp
            .rules
            .iter()
            .any(|r| r.action == DenyAction::Kill)
        {
            OnDeny::Kill
        } else {
            OnDeny::Errno
        };
        let extra = self
            .seccomp
            .rules
            .iter()
            .filter(|rule| {
                rule.conditions.is_empty()
                    && !builtin.iter().any(|b| {
                        b.syscall == rule.syscall
                            && b.conditions == rule.conditions
                            && b.why == rule.why
                    })
            })
            .map(|rule| WireExtraDeny {
                syscall: rule.syscall.clone(),
                why: rule.why.clone(),
            })
            .collect();
        (on_deny, extra)
    }
}

/// One line describing a rule, for `profile show`.
fn describe_rule(rule: &SeccompRule) -> String {
    use crate::seccomp::ArgOp;
    let mut text = rule.syscall.clone();
    if !rule.conditions.is_empty() {
        let conditions: Vec<String> = rule
            .conditions
            .iter()
            .map(|c| match c.op {
                ArgOp::MaskedEq if c.mask == u64::MAX || c.mask == u64::from(u32::MAX) => {
                    format!("arg{} == {:#x}", c.index, c.value)
                }
                ArgOp::MaskedEq => format!("arg{} & {:#x} == {:#x}", c.index, c.mask, c.value),
                ArgOp::Ne => format!("arg{} != {:#x}", c.index, c.value),
            })
            .collect();
        text.push_str(&format!(" if {}", conditions.join(" && ")));
    }
    let action = match rule.action {
        DenyAction::Errno(1) => "EPERM".to_owned(),
        DenyAction::Errno(13) => "EACCES".to_owned(),
        DenyAction::Errno(38) => "ENOSYS".to_owned(),
        DenyAction::Errno(n) => format!("errno {n}"),
        DenyAction::Kill => "kill".to_owned(),
    };
    format!("{text}: {action}: {}", rule.why)
}

/// `Profile` without the resolved seccomp rules, for `to_toml_string`.
#[derive(Serialize)]
struct ProfileView<'a> {
    name: &'a str,
    description: &'a str,
    filesystem: &'a FilesystemPolicy,
    limits: &'a Limits,
    security: &'a SecurityPolicy,
    network: &'a NetworkPolicy,
    env: &'a BTreeMap<String, String>,
    canaries: crate::evidence::WireCanaries,
    audit: crate::evidence::WireAudit,
}

#[derive(Serialize)]
struct SeccompSection {
    seccomp: SeccompView,
}

#[derive(Serialize)]
struct SeccompView {
    on_deny: OnDeny,
    extra_deny: Vec<WireExtraDeny>,
}

/// The JSON Schema of the profile file format (draft 2020-12), for editors
/// and `airlock profile schema`.
pub fn profile_json_schema() -> serde_json::Value {
    schemars::schema_for!(WireProfile).to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(src: &str) -> String {
        Profile::from_toml(src, "bad.toml").unwrap_err().to_string()
    }

    /// Asserts that `src` fails with an error at `line` naming `field` and
    /// containing `needle`.
    fn assert_bad(src: &str, line: usize, field: &str, needle: &str) {
        let err = Profile::from_toml(src, "bad.toml").unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.line(), line, "{shown}");
        assert_eq!(err.field(), field, "{shown}");
        assert!(shown.starts_with(&format!("bad.toml:{line}:")), "{shown}");
        assert!(shown.contains(&format!(": {field}: ")), "{shown}");
        assert!(shown.contains(needle), "{shown}: missing {needle:?}");
        let span = err.source_span().expect("a span");
        assert!(span.start <= src.len(), "{shown}");
    }

    #[test]
    fn builtins_load() {
        for name in builtin_names() {
            let profile = Profile::builtin(name).unwrap();
            assert_eq!(profile.name, *name);
            assert!(!profile.description.is_empty());
            assert!(profile.seccomp.rules.len() > 50);
            assert!(profile.seccomp.kill_foreign_arch);
            assert_eq!(profile.network.mode, NetworkMode::None);
        }
        let default = Profile::builtin("default").unwrap();
        assert_eq!(default.limits.memory, Some(ByteSize::gib(1)));
        assert_eq!(default.limits.pids, Some(256));
        assert_eq!(default.limits.cpus, None);
        assert_eq!(default.limits.timeout, Duration::from_secs(300));
        assert_eq!(default.filesystem.workspace.as_str(), "/workspace");
        assert_eq!(default.security.uid, 1000);
        assert_eq!(default.security.hostname, "airlock");
        assert!(default.env.is_empty());

        let python = Profile::builtin("python").unwrap();
        assert_eq!(python.limits.memory, Some(ByteSize::gib(2)));
        assert_eq!(python.filesystem.tmp_size, ByteSize::mib(256));
        assert_eq!(python.env.len(), 2);
        assert_eq!(python.env["PYTHONUNBUFFERED"], "1");
        assert!(python
            .filesystem
            .ro_optional
            .iter()
            .any(|p| p.as_str() == "/etc/python3"));
    }

    #[test]
    fn unknown_builtin_lists_names() {
        let err = Profile::builtin("pyhton").unwrap_err().to_string();
        assert!(
            err.contains("\"pyhton\"") && err.contains("default, python"),
            "{err}"
        );
        let err = Profile::load("nope").unwrap_err().to_string();
        assert!(err.contains("unknown built-in profile"), "{err}");
    }

    #[test]
    fn minimal_file_takes_defaults() {
        let empty = Profile::from_toml("", "dir/my profile.toml").unwrap();
        let default = Profile::builtin("default").unwrap();
        assert_eq!(empty.name, "my-profile");
        assert_eq!(empty.filesystem, default.filesystem);
        assert_eq!(empty.limits, default.limits);
        assert_eq!(empty.security, default.security);
        assert_eq!(empty.network, default.network);
        assert_eq!(empty.env, default.env);
        assert_eq!(empty.seccomp, default.seccomp);
        assert_eq!(empty.seccomp, builtin_seccomp().unwrap());
    }

    #[test]
    fn unknown_field_names_field_and_line() {
        assert_bad(
            "name = \"x\"\n\n[limits]\nmemory = \"1G\"\nmemroy = \"2G\"\n",
            5,
            "limits.memroy",
            "unknown field `memroy`",
        );
        assert_bad("[limitz]\n", 1, "limitz", "unknown field `limitz`");
    }

    #[test]
    fn syntax_error_has_position() {
        let err = Profile::from_toml("name = \"x\"\n[limits\n", "bad.toml").unwrap_err();
        assert_eq!(err.line(), 2, "{err}");
        assert!(err.to_string().starts_with("bad.toml:2:"), "{err}");
    }

    #[test]
    fn bad_values() {
        let err = bad("name = \"x\"\n\n[limits]\n\n\n\nmemory =  \"12Q\"\n");
        assert_eq!(
            err,
            "bad.toml:7:11: limits.memory: invalid size \"12Q\": expected a number with a unit B, K, M, G or T (e.g. \"512M\", \"1.5G\", \"64K\", \"100B\")"
        );
        // A bare number is refused, naming the forms that work.
        let err = bad("[limits]\nmemory = 512\n");
        assert_eq!(
            err,
            "bad.toml:2:10: limits.memory: invalid size \"512\": a unit is required: B, K, M, G or T (e.g. \"512M\" or \"512B\")"
        );
        assert_bad(
            "[limits]\nmemory = \"512\"\n",
            2,
            "limits.memory",
            "a unit is required",
        );
        assert_bad(
            "[limits]\ntimeout = 5\n",
            2,
            "limits.timeout",
            "a unit is required: ms, s, m, h or d",
        );
        assert_bad(
            "[limits]\ntimeout = \"5\"\n",
            2,
            "limits.timeout",
            "a unit is required",
        );
        assert_bad(
            "[filesystem]\ntmp_size = 64\n",
            2,
            "filesystem.tmp_size",
            "a unit is required",
        );
        assert_bad(
            "[network]\nmax_bytes_out = 1000\n",
            2,
            "network.max_bytes_out",
            "a unit is required",
        );
        assert_bad(
            "[network]\nask_timeout = 60\n",
            2,
            "network.ask_timeout",
            "a unit is required",
        );
        // Memory below 1 MiB cannot run anything.
        assert_bad(
            "[limits]\nmemory = \"512K\"\n",
            2,
            "limits.memory",
            "512K is below the minimum of 1M",
        );
        assert_bad(
            "[limits]\nmemory = \"512B\"\n",
            2,
            "limits.memory",
            "below the minimum",
        );
        assert!(Profile::from_toml("[limits]\nmemory = \"1M\"\n", "ok.toml").is_ok());
        assert_bad(
            "[limits]\nfsize = \"-1G\"\n",
            2,
            "limits.fsize",
            "must not be negative",
        );
        assert_bad(
            "[limits]\noutput = \"0B\"\n",
            2,
            "limits.output",
            "greater than 0",
        );
        assert_bad(
            "[limits]\nmemory = \"0M\"\n",
            2,
            "limits.memory",
            "unlimited",
        );
        assert_bad(
            "[limits]\ntimeout = \"5x\"\n",
            2,
            "limits.timeout",
            "invalid duration \"5x\"",
        );
        assert_bad(
            "[limits]\ntimeout = \"0s\"\n",
            2,
            "limits.timeout",
            "greater than 0",
        );
        assert_bad(
            "[limits]\ntimeout = \"31d\"\n",
            2,
            "limits.timeout",
            "at most 30 days",
        );
        assert_bad("[limits]\npids = 0\n", 2, "limits.pids", "greater than 0");
        assert_bad("[limits]\npids = -3\n", 2, "limits.pids", "-3");
        assert_bad("[limits]\npids = \"many\"\n", 2, "limits.pids", "unlimited");
        assert_bad("[limits]\ncpus = 0\n", 2, "limits.cpus", "greater than 0");
        assert_bad(
            "[limits]\ncpus = -1.0\n",
            2,
            "limits.cpus",
            "greater than 0",
        );
        assert_bad(
            "[limits]\ncpus = nan\n",
            2,
            "limits.cpus",
            "not a finite number",
        );
        assert_bad(
            "[limits]\ncpus = inf\n",
            2,
            "limits.cpus",
            "not a finite number",
        );
        assert_bad("[limits]\ncpus = 2000\n", 2, "limits.cpus", "at most 1024");
        assert_bad("[limits]\nnofile = 8\n", 2, "limits.nofile", "out of range");
        assert_bad("\n[security]\nuid = 0\n", 3, "security.uid", "root");
        assert_bad("[security]\ngid = 0\n", 2, "security.gid", "root");
        assert_bad(
            "[security]\nhostname = \"-x\"\n",
            2,
            "security.hostname",
            "invalid hostname",
        );
        assert_bad(
            "[security]\nlandlock_min_abi = 9\n",
            2,
            "security.landlock_min_abi",
            "out of range",
        );
        assert_bad(
            "[security]\nlandlock = \"maybe\"\n",
            2,
            "security.landlock",
            "best-effort",
        );
        assert_bad("[network]\nmode = \"open\"\n", 2, "network.mode", "none");
        assert_bad("name = \"a b\"\n", 1, "name", "invalid profile name");
    }

    #[test]
    fn bad_paths() {
        assert_bad(
            "[filesystem]\nro = [\"/usr\", \"usr/lib\"]\n",
            2,
            "filesystem.ro[1]",
            "must be absolute",
        );
        assert_bad(
            "[filesystem]\nro = [\"/usr/../etc\"]\n",
            2,
            "filesystem.ro[0]",
            "\"..\"",
        );
        assert_bad(
            "[filesystem]\nro = [\"/usr\"]\nro_optional = [\n  \"/bin\",\n  \"/proc/sys\",\n]\n",
            5,
            "filesystem.ro_optional[1]",
            "the jail synthesizes /proc",
        );
        assert_bad(
            "[filesystem]\nro = [\"/dev\"]\n",
            2,
            "filesystem.ro[0]",
            "the jail synthesizes /dev",
        );
        assert_bad(
            "[filesystem]\nworkspace = \"/\"\n",
            2,
            "filesystem.workspace",
            "root",
        );
        assert_bad(
            "[filesystem]\nworkspace = \"/home\"\n",
            2,
            "filesystem.workspace",
            "/home/sandbox",
        );
        assert_bad(
            "[filesystem]\nworkspace = \"/usr/src\"\n",
            2,
            "filesystem.workspace",
            "read-only bind /usr",
        );
        // Allowed: any other absolute path, including / itself.
        let p = Profile::from_toml("[filesystem]\nro = [\"/\"]\nro_optional = []\n", "x").unwrap();
        assert_eq!(p.filesystem.ro[0].as_str(), "/");
        let p = Profile::from_toml("[filesystem]\nro = [\"/opt/x\"]\n", "x").unwrap();
        assert_eq!(p.filesystem.ro[0].as_str(), "/opt/x");
    }

    #[test]
    fn bad_env() {
        assert_bad(
            "[env]\nOK = \"1\"\n\"1BAD\" = \"x\"\n",
            3,
            "env.1BAD",
            "invalid environment variable name",
        );
        assert_bad(
            "[env]\n\"A-B\" = \"x\"\n",
            2,
            "env.A-B",
            "[A-Za-z_][A-Za-z0-9_]*",
        );
        assert_bad(
            "[env]\n\"A B\" = \"x\"\n",
            2,
            "env.\"A B\"",
            "invalid environment",
        );
        assert_bad("[env]\nA = \"x\\u0000y\"\n", 2, "env.A", "NUL");
        assert_bad("[env]\nA = 1\n", 2, "env.A", "invalid type");
        let p = Profile::from_toml(
            "[env]\nPATH = \"/opt/bin:/usr/bin\"\nHOME = \"/work\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(p.env["PATH"], "/opt/bin:/usr/bin");
    }

    #[test]
    fn seccomp_section() {
        let p = Profile::from_toml(
            "[seccomp]\non_deny = \"kill\"\nextra_deny = [{ syscall = \"kcmp\", why = \"compares kernel objects\" }]\n",
            "x",
        )
        .unwrap();
        let last = p.seccomp.rules.last().unwrap();
        assert_eq!(
            (last.syscall.as_str(), last.action),
            ("kcmp", DenyAction::Kill)
        );
        let ptrace = p
            .seccomp
            .rules
            .iter()
            .find(|r| r.syscall == "ptrace")
            .unwrap();
        assert_eq!(ptrace.action, DenyAction::Kill);
        let clone3 = p
            .seccomp
            .rules
            .iter()
            .find(|r| r.syscall == "clone3")
            .unwrap();
        assert_eq!(clone3.action, DenyAction::Errno(38));

        assert_bad(
            "[seccomp]\nextra_deny = [\n  { syscall = \"Bad Name\", why = \"x\" },\n]\n",
            3,
            "seccomp.extra_deny[0].syscall",
            "invalid syscall name",
        );
        assert_bad(
            "[seccomp]\n\n[[seccomp.extra_deny]]\nsyscall = \"kcmp\"\nwhy = \"\"\n",
            5,
            "seccomp.extra_deny[0].why",
            "must say why",
        );
        assert_bad(
            "[seccomp]\non_deny = \"trap\"\n",
            2,
            "seccomp.on_deny",
            "errno",
        );
    }

    #[test]
    fn overrides() {
        let p = Profile::builtin("default").unwrap();
        let o = Overrides {
            memory: Some(ByteSize::mib(512)),
            pids: Some(32),
            cpus: Some(1.5),
            timeout: Some(Duration::from_secs(30)),
            env: vec![("FOO".into(), "bar".into()), ("FOO".into(), "baz".into())],
            ..Overrides::default()
        };
        let q = p.clone().with_overrides(&o).unwrap();
        assert_eq!(q.limits.memory, Some(ByteSize::mib(512)));
        assert_eq!(q.limits.pids, Some(32));
        assert_eq!(q.limits.cpus, Some(1.5));
        assert_eq!(q.limits.timeout, Duration::from_secs(30));
        assert_eq!(q.env["FOO"], "baz");

        let fail = |o: Overrides| p.clone().with_overrides(&o).unwrap_err().to_string();
        let err = fail(Overrides {
            pids: Some(0),
            ..Overrides::default()
        });
        assert!(
            err.starts_with("--pids: ") && err.contains("greater than 0"),
            "{err}"
        );
        let err = fail(Overrides {
            cpus: Some(f64::NAN),
            ..Overrides::default()
        });
        assert!(err.starts_with("--cpus: "), "{err}");
        let err = fail(Overrides {
            cpus: Some(-1.0),
            ..Overrides::default()
        });
        assert!(err.starts_with("--cpus: "), "{err}");
        let err = fail(Overrides {
            memory: Some(ByteSize(0)),
            ..Overrides::default()
        });
        assert!(err.starts_with("--memory: "), "{err}");
        let err = fail(Overrides {
            memory: Some(ByteSize::kib(64)),
            ..Overrides::default()
        });
        assert_eq!(
            err,
            "--memory: 64K is below the minimum of 1M (sizes take a unit, e.g. \"512M\")"
        );
        let err = fail(Overrides {
            timeout: Some(Duration::ZERO),
            ..Overrides::default()
        });
        assert!(err.starts_with("--timeout: "), "{err}");
        let err = fail(Overrides {
            env: vec![("A=B".into(), "x".into())],
            ..Overrides::default()
        });
        assert!(
            err.starts_with("--env A=B: invalid environment variable name"),
            "{err}"
        );
    }

    #[test]
    fn toml_round_trip() {
        for name in builtin_names() {
            let p = Profile::builtin(name).unwrap();
            let shown = p.to_toml_string().unwrap();
            assert!(shown.contains("# Resolved seccomp deny list"), "{shown}");
            assert!(shown.contains("ptrace: EPERM: reads and writes"), "{shown}");
            let q =
                Profile::from_toml(&shown, "shown.toml").unwrap_or_else(|e| panic!("{e}\n{shown}"));
            assert_eq!(p.name, q.name);
            assert_eq!(p.description, q.description);
            assert_eq!(p.filesystem, q.filesystem);
            assert_eq!(p.limits, q.limits);
            assert_eq!(p.security, q.security);
            assert_eq!(p.network, q.network);
            assert_eq!(p.env, q.env);
            assert_eq!(p.seccomp, q.seccomp);
        }
        let custom = Profile::from_toml(
            "[limits]\nmemory = \"unlimited\"\npids = \"unlimited\"\ncpus = 1.5\ntimeout = \"1m30s\"\n\n[security]\nuid = 1234\nlandlock = \"required\"\nlandlock_min_abi = 3\n\n[env]\n\"WEIRD_1\" = \"a \\\"quoted\\\" value\"\n\n[seccomp]\non_deny = \"kill\"\nextra_deny = [{ syscall = \"kcmp\", why = \"compares kernel objects\" }]\n",
            "custom.toml",
        )
        .unwrap();
        let shown = custom.to_toml_string().unwrap();
        let back =
            Profile::from_toml(&shown, "shown.toml").unwrap_or_else(|e| panic!("{e}\n{shown}"));
        assert_eq!(back.limits, custom.limits);
        assert_eq!(back.limits.memory, None);
        assert_eq!(back.security, custom.security);
        assert_eq!(back.env, custom.env);
        assert_eq!(back.seccomp, custom.seccomp);
        assert_eq!(back.name, "custom");
    }

    #[test]
    fn json_output() {
        let p = Profile::builtin("default").unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["limits"]["memory"], "1G");
        assert_eq!(json["limits"]["cpus"], "unlimited");
        assert_eq!(json["limits"]["timeout"], "5m");
        assert_eq!(json["security"]["landlock"], "best-effort");
        assert!(json["seccomp"]["rules"].as_array().unwrap().len() > 50);
    }

    #[test]
    fn schema() {
        let schema = profile_json_schema();
        let props = &schema["properties"];
        assert!(props.get("filesystem").is_some(), "{schema:#}");
        assert!(props.get("limits").is_some(), "{schema:#}");
        let text = schema.to_string();
        assert!(text.contains("unlimited"));
        assert!(text.contains("best-effort"));
        assert!(text.contains("extra_deny"));
    }

    #[test]
    fn load_from_files() {
        let dir = std::env::temp_dir().join(format!("airlock-policy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("mine.toml");
        std::fs::write(&good, "[limits]\npids = 9\n").unwrap();
        let p = Profile::load(good.to_str().unwrap()).unwrap();
        assert_eq!((p.name.as_str(), p.limits.pids), ("mine", Some(9)));

        let broken = dir.join("broken.toml");
        std::fs::write(&broken, "[limits]\npids = 0\n").unwrap();
        let err = Profile::load(broken.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("{}:2:", broken.display())),
            "{err}"
        );

        let missing = dir.join("missing.toml");
        let err = Profile::load(missing.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, LoadError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("missing.toml"), "{err}");

        let big = dir.join("big.toml");
        std::fs::write(&big, "#".repeat(1024 * 1024 + 1)).unwrap();
        let err = Profile::load(big.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");

        let binary = dir.join("binary.toml");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        let err = Profile::load(binary.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, LoadError::NotUtf8 { .. }), "{err}");

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn seccomp_names_exist_on_x86_64() {
        use std::str::FromStr;
        let policy = builtin_seccomp().unwrap();
        for rule in &policy.rules {
            assert!(
                syscalls::x86_64::Sysno::from_str(&rule.syscall).is_ok(),
                "{} is not an x86_64 syscall",
                rule.syscall
            );
        }
    }

    #[test]
    fn network_section_validates_and_round_trips() {
        let src = r#"
[network]
mode = "allowlist"
allow = ["pypi.org", "*.pythonhosted.org:443", "api.test:8080"]
deny = ["evil.pypi.org"]
allow_cidr = ["10.200.0.0/16", "fd12::1"]
hosts = { "api.test" = "10.200.1.2" }
max_bytes_out = "10M"
max_bytes_in = "unlimited"

[[network.mock]]
host = "mail.test"
kind = "sink"

[[network.mock]]
host = "search.test:8081"
kind = "static"
routes = [{ path = "/q*", body = "[]", headers = { "content-type" = "application/json" } }]
"#;
        let p = Profile::from_toml(src, "t.toml").unwrap();
        assert_eq!(p.network.mode, NetworkMode::Allowlist);
        assert_eq!(p.network.allow.len(), 3);
        assert_eq!(p.network.max_bytes_in, None);
        assert_eq!(p.network.mocks.len(), 2);
        assert_eq!(
            p.network.pinned("api.test"),
            Some("10.200.1.2".parse().unwrap())
        );
        let shown = p.to_toml_string().unwrap();
        let q = Profile::from_toml(&shown, "shown.toml").unwrap();
        assert_eq!(p.network, q.network);

        assert_bad(
            "[network]\nallow = [\"x.org\"]\n",
            2,
            "network.allow",
            "allowlist",
        );
        assert_bad(
            "[network]\nmode = \"allowlist\"\nallow = [\"ok.org\", \"*.com\"]\n",
            3,
            "network.allow[1]",
            "too broad",
        );
        assert_bad(
            "[network]\nmode = \"allowlist\"\nallow_cidr = [\"10.0.0.0/33\"]\n",
            3,
            "network.allow_cidr[0]",
            "CIDR",
        );
        assert_bad(
            "[network]\nmode = \"allowlist\"\nallow = [\"x.org:53\"]\n",
            3,
            "network.allow",
            "DNS server",
        );
    }

    #[test]
    fn network_overrides() {
        let p = Profile::builtin("default").unwrap();
        let q = p
            .clone()
            .with_overrides(&Overrides {
                allow_hosts: vec!["pypi.org".into()],
                ..Overrides::default()
            })
            .unwrap();
        assert_eq!(q.network.mode, NetworkMode::Allowlist);
        let err = p
            .clone()
            .with_overrides(&Overrides {
                net: Some(NetworkMode::None),
                allow_hosts: vec!["pypi.org".into()],
                ..Overrides::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("--allow-host"), "{err}");
        let err = p
            .with_overrides(&Overrides {
                allow_hosts: vec!["http://pypi.org/".into()],
                ..Overrides::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("URL"), "{err}");
    }
}
