//! airlock profiles: what a sandbox may see and do.
//!
//! This crate owns the profile file format (TOML, with a generated JSON
//! Schema), its validation into a [`Profile`], the built-in profiles
//! (`profiles/default.toml`, `profiles/python.toml`) and the built-in
//! seccomp deny list (`profiles/seccomp.toml`), all embedded in the binary.
//! It is pure: no syscalls, no async, no files except [`Profile::load`]
//! reading the one it is asked for.
//!
//! A profile is read in two steps. Private wire structs mirror the file
//! (`deny_unknown_fields`, documented defaults, values such as `"512M"` or
//! `"5m"` checked as they are read); one validation pass then converts them
//! into the public types, checking ranges and cross-field rules. Every error
//! is a [`ProfileError`] naming the file, line, column and dotted field:
//!
//! ```text
//! profiles/bad.toml:7:10: limits.memory: invalid size "12Q": expected a number with an optional unit K, M, G or T
//! ```
//!
//! ```
//! use airlock_policy::{ByteSize, Overrides, Profile};
//!
//! let profile = Profile::load("default")?;
//! assert_eq!(profile.limits.memory, Some(ByteSize::gib(1)));
//! let profile = profile.with_overrides(&Overrides { pids: Some(64), ..Overrides::default() })?;
//! assert_eq!(profile.limits.pids, Some(64));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod denylist;
mod duration;
mod error;
mod evidence;
mod extends;
mod locate;
mod network;
mod path;
mod profile;
mod seccomp;
mod size;
mod toolauth;
mod wire;

pub use denylist::builtin_seccomp;
pub use duration::{HumanDuration, ParseDurationError};
pub use error::{LoadError, OverrideError, ProfileError, RenderError};
pub use evidence::{AuditPolicy, CanaryPolicy, ExtraCanary};
pub use extends::{Origins, DEFAULT_ORIGIN};
pub use network::{
    blocked_range, normalize_name, BlockedAddr, HostPattern, MockKind, MockResponse, MockRoute,
    NameVerdict, NetworkMode, NetworkPolicy, OnDeny, DEFAULT_PORTS, DNS_PORT, PROXY_PORT,
};
pub use path::{AbsPath, ParsePathError};
pub use profile::{
    builtin_names, profile_json_schema, FilesystemPolicy, Limits, Overrides, Profile, Requirement,
    SecurityPolicy,
};
pub use seccomp::{ArgCondition, ArgOp, ArgWidth, DenyAction, SeccompPolicy, SeccompRule};
pub use size::{ByteSize, ParseSizeError};
pub use toolauth::{ToolDecision, ToolPolicy, ToolPolicyError};
