//! The profile file format as written: serde structs with defaults and
//! `deny_unknown_fields`. Values are checked one at a time here (sizes,
//! durations, paths: so that toml can point at a bad one); ranges and
//! cross-field rules are checked by the `TryFrom` conversions in `profile`.
//! The JSON Schema is generated from these types, so their doc comments are
//! the schema's descriptions.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::HumanDuration;
use crate::network::NetworkMode;
use crate::path::AbsPath;
use crate::profile::Requirement;
use crate::size::ByteSize;

/// An airlock sandbox profile. Every key is optional; a missing key takes
/// the default documented on it.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(title = "airlock profile")]
pub(crate) struct WireProfile {
    /// Start from another profile and change only what this file names: a
    /// built-in name ("default", "python") or a path to a .toml file,
    /// relative to this file's directory. Tables merge key by key, other
    /// values (lists included) replace the parent's; a key with a `+`
    /// suffix (`"ro+" = [...]`, quoted in TOML) appends to the parent's
    /// list instead. `name` is not inherited. At most 8 profiles in a
    /// chain. Default: none (start from airlock's defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub(crate) extends: Option<String>,
    /// Name shown in logs and audit events: 1 to 64 letters, digits, '.',
    /// '_' or '-', starting with a letter or digit. Default: the file name
    /// without `.toml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub(crate) name: Option<String>,
    /// One line describing the profile. Default: empty.
    pub(crate) description: String,
    /// What the sandbox sees of the filesystem.
    pub(crate) filesystem: WireFilesystem,
    /// Resource limits.
    pub(crate) limits: WireLimits,
    /// Identity and hardening inside the sandbox.
    pub(crate) security: WireSecurity,
    /// Network access.
    pub(crate) network: WireNetwork,
    /// Extra environment variables for the payload. Names match
    /// `[A-Za-z_][A-Za-z0-9_]*`; values contain no NUL. airlock sets PATH,
    /// HOME and a few others itself; naming one here overrides airlock's
    /// value. Default: none.
    pub(crate) env: BTreeMap<String, String>,
    /// Additions to the built-in seccomp deny list.
    pub(crate) seccomp: WireSeccomp,
    /// Canary credentials planted in the sandbox.
    pub(crate) canaries: crate::evidence::WireCanaries,
    /// The audit log.
    pub(crate) audit: crate::evidence::WireAudit,
}

/// Default read-only binds (must exist on the host).
pub(crate) const DEFAULT_RO: &[&str] = &["/usr", "/etc/ld.so.cache"];
/// Default optional read-only binds (skipped when missing on the host).
pub(crate) const DEFAULT_RO_OPTIONAL: &[&str] = &[
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/etc/localtime",
    "/etc/os-release",
];

/// What the sandbox sees of the filesystem. The root is an empty tmpfs;
/// /proc, /dev, /tmp, $HOME (/home/sandbox) and the workspace are made by
/// the jail.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Filesystem")]
pub(crate) struct WireFilesystem {
    /// Host paths bound read-only (nosuid, nodev) at the same path. Each must
    /// exist when the sandbox starts. /proc, /dev, /sys and paths below them
    /// are not allowed: the jail synthesizes those. Default: ["/usr",
    /// "/etc/ld.so.cache"].
    pub(crate) ro: Vec<AbsPath>,
    /// Like `ro`, but a path missing on the host is skipped silently.
    /// Default: /bin, /sbin, /lib, /lib32, /lib64, /libx32,
    /// /etc/alternatives, /etc/ssl/certs, /etc/ca-certificates,
    /// /usr/share/ca-certificates, /etc/localtime, /etc/os-release (the
    /// distribution's name, which tools such as Inspect's probe read; the
    /// file itself, /usr/lib/os-release, is under /usr already).
    pub(crate) ro_optional: Vec<AbsPath>,
    /// Size cap of the /tmp tmpfs. Default: "64M".
    pub(crate) tmp_size: ByteSize,
    /// Size cap of the $HOME (/home/sandbox) tmpfs. Default: "64M".
    pub(crate) home_size: ByteSize,
    /// Size cap of the workspace tmpfs, used when no host directory is
    /// given for the workspace. Default: "256M".
    pub(crate) workspace_size: ByteSize,
    /// Mount point of the workspace inside the sandbox. Default: "/workspace".
    pub(crate) workspace: AbsPath,
    /// Appended to `ro` (the parent's, or the default).
    #[serde(rename = "ro+")]
    pub(crate) ro_append: Vec<AbsPath>,
    /// Appended to `ro_optional` (the parent's, or the default).
    #[serde(rename = "ro_optional+")]
    pub(crate) ro_optional_append: Vec<AbsPath>,
}

impl Default for WireFilesystem {
    fn default() -> Self {
        Self {
            ro: DEFAULT_RO.iter().map(|p| AbsPath::known(p)).collect(),
            ro_optional: DEFAULT_RO_OPTIONAL
                .iter()
                .map(|p| AbsPath::known(p))
                .collect(),
            tmp_size: ByteSize::mib(64),
            home_size: ByteSize::mib(64),
            workspace_size: ByteSize::mib(256),
            workspace: AbsPath::known("/workspace"),
            ro_append: Vec::new(),
            ro_optional_append: Vec::new(),
        }
    }
}

/// Resource limits. cgroup limits fall back to rlimits when cgroups are
/// unavailable and `security.cgroups` is "best-effort".
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Limits")]
pub(crate) struct WireLimits {
    /// cgroup memory.max, or "unlimited". Default: "1G".
    pub(crate) memory: OrUnlimited<ByteSize>,
    /// cgroup pids.max (greater than 0), or "unlimited". Default: 256.
    pub(crate) pids: OrUnlimited<u32>,
    /// CPU quota in cores (e.g. 1.5), greater than 0 and at most 1024, or
    /// "unlimited". Default: "unlimited".
    pub(crate) cpus: OrUnlimited<f64>,
    /// Wall-clock limit of a run, greater than 0 and at most 30 days.
    /// Default: "5m".
    pub(crate) timeout: HumanDuration,
    /// RLIMIT_NOFILE, 16 to 1048576. Default: 1024.
    pub(crate) nofile: u64,
    /// RLIMIT_FSIZE: the largest file a process may write. Default: "1G".
    pub(crate) fsize: ByteSize,
    /// Cap on captured stdout, and separately on captured stderr.
    /// Default: "16M".
    pub(crate) output: ByteSize,
}

impl Default for WireLimits {
    fn default() -> Self {
        Self {
            memory: OrUnlimited(Some(ByteSize::gib(1))),
            pids: OrUnlimited(Some(256)),
            cpus: OrUnlimited(None),
            timeout: HumanDuration(Duration::from_secs(300)),
            nofile: 1024,
            fsize: ByteSize::gib(1),
            output: ByteSize::mib(16),
        }
    }
}

/// Identity and hardening inside the sandbox.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Security")]
pub(crate) struct WireSecurity {
    /// The payload's uid inside the sandbox; not 0. Default: 1000.
    pub(crate) uid: u32,
    /// The payload's gid inside the sandbox; not 0. Default: 1000.
    pub(crate) gid: u32,
    /// The sandbox's hostname (RFC 1123, at most 64 characters).
    /// Default: "airlock".
    pub(crate) hostname: String,
    /// Landlock rules mirroring the mounts. "best-effort" applies what the
    /// kernel supports; "required" fails the start when the kernel's Landlock
    /// ABI is below `landlock_min_abi`. Default: "best-effort".
    pub(crate) landlock: Requirement,
    /// Minimum Landlock ABI version (1 to 7) when `landlock` is "required".
    /// Default: 1.
    pub(crate) landlock_min_abi: u8,
    /// cgroup limits. "best-effort" falls back to rlimits when cgroups cannot
    /// be used; "required" fails the start. Default: "best-effort".
    pub(crate) cgroups: Requirement,
}

impl Default for WireSecurity {
    fn default() -> Self {
        Self {
            uid: 1000,
            gid: 1000,
            hostname: "airlock".to_owned(),
            landlock: Requirement::BestEffort,
            landlock_min_abi: 1,
            cgroups: Requirement::BestEffort,
        }
    }
}

/// Network access.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Network")]
pub(crate) struct WireNetwork {
    /// "none": a network namespace with only loopback, nothing leaves.
    /// "allowlist": default deny, the egress gateway applies the rules
    /// below. Default: "none".
    pub(crate) mode: NetworkMode,
    /// Host patterns that may be reached: "name", "*.suffix" (subdomains
    /// only), each with an optional ":port". Without a port a pattern covers
    /// 80 and 443. Default: none.
    pub(crate) allow: Vec<String>,
    /// Host patterns that may not be reached; deny wins over allow. Without
    /// a port a pattern covers every port. Default: none.
    pub(crate) deny: Vec<String>,
    /// Address ranges ("10.200.0.0/16") that may be reached although they
    /// are private, loopback, link-local, CGNAT, multicast or metadata
    /// addresses, which are otherwise refused. Default: none.
    pub(crate) allow_cidr: Vec<String>,
    /// Fixed host-side resolutions, name = "address", used instead of the
    /// host's resolver (the address is still checked). Default: none.
    pub(crate) hosts: BTreeMap<String, String>,
    /// Names served by built-in mock endpoints (plain HTTP) instead of the
    /// internet. Default: none.
    pub(crate) mock: Vec<WireMock>,
    /// Cap on bytes the sandbox sends out through the gateway, or
    /// "unlimited". Default: "1G".
    pub(crate) max_bytes_out: OrUnlimited<ByteSize>,
    /// Cap on bytes the sandbox receives through the gateway, or
    /// "unlimited". Default: "8G".
    pub(crate) max_bytes_in: OrUnlimited<ByteSize>,
    /// Connections open at once, 1 to 4096. Default: 64.
    pub(crate) max_connections: u32,
    /// New connections per second, 1 to 100000. Default: 100.
    pub(crate) max_connections_per_sec: u32,
    /// A name no rule allows: "deny" refuses it; "ask" pauses the
    /// connection and asks an approver (`airlock run --approver CMD`, or a
    /// prompt on the terminal), who may grant that host and port for a
    /// limited time. Default: "deny".
    pub(crate) on_deny: crate::network::OnDeny,
    /// How long a paused connection waits for the approver; no answer in
    /// time means deny. 1s to 1h. Default: "60s".
    pub(crate) ask_timeout: HumanDuration,
    /// Longest time-box of a grant, 1s to 24h. Default: "1h".
    pub(crate) max_grant_ttl: HumanDuration,
    /// Appended to `allow` (the parent's, or none).
    #[serde(rename = "allow+")]
    pub(crate) allow_append: Vec<String>,
    /// Appended to `deny` (the parent's, or none).
    #[serde(rename = "deny+")]
    pub(crate) deny_append: Vec<String>,
    /// Appended to `allow_cidr` (the parent's, or none).
    #[serde(rename = "allow_cidr+")]
    pub(crate) allow_cidr_append: Vec<String>,
    /// Appended to `mock` (the parent's, or none).
    #[serde(rename = "mock+")]
    pub(crate) mock_append: Vec<WireMock>,
}

impl Default for WireNetwork {
    fn default() -> Self {
        Self {
            mode: NetworkMode::None,
            allow: Vec::new(),
            deny: Vec::new(),
            allow_cidr: Vec::new(),
            hosts: BTreeMap::new(),
            mock: Vec::new(),
            max_bytes_out: OrUnlimited(Some(ByteSize::gib(1))),
            max_bytes_in: OrUnlimited(Some(ByteSize::gib(8))),
            max_connections: 64,
            max_connections_per_sec: 100,
            on_deny: crate::network::OnDeny::Deny,
            ask_timeout: HumanDuration(Duration::from_secs(60)),
            max_grant_ttl: HumanDuration(Duration::from_secs(3600)),
            allow_append: Vec::new(),
            deny_append: Vec::new(),
            allow_cidr_append: Vec::new(),
            mock_append: Vec::new(),
        }
    }
}

/// What kind of mock answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WireMockKind {
    /// Fixed responses per path (`routes`); 404 for other paths.
    Static,
    /// Records every request (readable after the run) and answers `status`
    /// with `body`.
    Sink,
}

/// A mock endpoint.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Mock")]
pub(crate) struct WireMock {
    /// Host pattern served by the mock ("name" or "*.suffix", optional
    /// ":port", default port 80; 443 is refused: no TLS termination).
    pub(crate) host: String,
    /// "static" or "sink".
    pub(crate) kind: WireMockKind,
    /// sink: status of every answer. Default: 200.
    #[serde(default)]
    pub(crate) status: Option<u16>,
    /// sink: body of every answer. Default: {"ok":true}.
    #[serde(default)]
    pub(crate) body: Option<String>,
    /// static: responses per path.
    #[serde(default)]
    pub(crate) routes: Vec<WireMockResponse>,
}

/// A static mock's response.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "MockResponse")]
pub(crate) struct WireMockResponse {
    /// Exact path ("/v1/search"; the query is ignored), or a prefix ending
    /// in "*".
    pub(crate) path: String,
    /// Status code, 100 to 599. Default: 200.
    #[serde(default = "default_status")]
    pub(crate) status: u16,
    /// Response headers. Default: none (Content-Type: text/plain).
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    /// Response body. Default: empty.
    #[serde(default)]
    pub(crate) body: String,
}

fn default_status() -> u16 {
    200
}

/// Additions to the built-in seccomp deny list (profiles/seccomp.toml).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Seccomp")]
pub(crate) struct WireSeccomp {
    /// More syscalls to deny outright (EPERM, or kill with on_deny = "kill").
    /// Default: none.
    pub(crate) extra_deny: Vec<WireExtraDeny>,
    /// What a denied call does: "errno" fails it (EPERM; ENOSYS where the
    /// built-in list says so), "kill" kills the process instead of EPERM.
    /// Default: "errno".
    pub(crate) on_deny: OnDeny,
    /// Appended to `extra_deny` (the parent's, or none).
    #[serde(rename = "extra_deny+")]
    pub(crate) extra_deny_append: Vec<WireExtraDeny>,
}

/// Lists that a `KEY+` key may append to, as (table, key), with the
/// default each starts from when no profile of the chain sets it.
pub(crate) const APPENDABLE: &[(&str, &str, &[&str])] = &[
    ("filesystem", "ro", DEFAULT_RO),
    ("filesystem", "ro_optional", DEFAULT_RO_OPTIONAL),
    ("network", "allow", &[]),
    ("network", "deny", &[]),
    ("network", "allow_cidr", &[]),
    ("network", "mock", &[]),
    ("seccomp", "extra_deny", &[]),
    ("canaries", "extra", &[]),
];

/// One extra denied syscall.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ExtraDeny")]
pub(crate) struct WireExtraDeny {
    /// The syscall's name in the kernel's table, e.g. "kcmp".
    pub(crate) syscall: String,
    /// Why it is denied; shown by `airlock profile show`.
    pub(crate) why: String,
}

/// What a denied syscall does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnDeny {
    /// Fail the call with EPERM (or the entry's errno).
    #[default]
    Errno,
    /// Kill the process (entries answering ENOSYS still answer ENOSYS).
    Kill,
}

/// A limit that may be "unlimited" (`None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OrUnlimited<T>(pub(crate) Option<T>);

const UNLIMITED: &str = "unlimited";

struct OrUnlimitedVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for OrUnlimitedVisitor<T> {
    type Value = OrUnlimited<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a limit or \"unlimited\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v == UNLIMITED {
            return Ok(OrUnlimited(None));
        }
        inner(v.into_deserializer())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        inner(v.into_deserializer())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        inner(v.into_deserializer())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        inner(v.into_deserializer())
    }
}

/// Deserializes the limit itself; a type mismatch mentions "unlimited".
fn inner<'de, T, D, E>(deserializer: D) -> Result<OrUnlimited<T>, E>
where
    T: Deserialize<'de>,
    D: Deserializer<'de, Error = de::value::Error>,
    E: de::Error,
{
    T::deserialize(deserializer)
        .map(|t| OrUnlimited(Some(t)))
        .map_err(|e| {
            let message = e.to_string();
            if message.starts_with("invalid type") {
                E::custom(format_args!("{message}, or \"unlimited\""))
            } else {
                E::custom(message)
            }
        })
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrUnlimited<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OrUnlimitedVisitor(PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for OrUnlimited<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("OrUnlimited_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let inner = generator.subschema_for::<T>();
        json_schema!({
            "anyOf": [inner, { "const": UNLIMITED }]
        })
    }
}

impl<T: Serialize> Serialize for OrUnlimited<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_or_unlimited(&self.0, serializer)
    }
}

/// Serializes an optional limit, `None` as "unlimited" (for validated types).
pub(crate) fn serialize_or_unlimited<T: Serialize, S: serde::Serializer>(
    value: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => v.serialize(serializer),
        None => serializer.serialize_str(UNLIMITED),
    }
}
