//! The jail's errors: one enum per concern, aggregated into `JailError`.

use std::path::PathBuf;

pub use crate::sys::SysError;

/// A `JailSpec` value that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// More network listeners than the control message carries.
    #[error("{count} network listeners requested; at most {max}")]
    TooManyListeners {
        /// Requested.
        count: usize,
        /// Allowed.
        max: usize,
    },
    /// A listener outside loopback.
    #[error("network listener {addr} must bind a loopback or unspecified address")]
    BadListener {
        /// The address.
        addr: std::net::SocketAddr,
    },
    /// Too many entries in a list.
    #[error("{field}: {count} given; at most {max}")]
    TooMany {
        /// Which list.
        field: &'static str,
        /// Given.
        count: usize,
        /// Allowed.
        max: usize,
    },
    /// A planted file outside the places the jail may write.
    #[error(
        "plant: {path:?} is outside the home directory and the ephemeral workspace \
         (the jail never writes into a host directory)"
    )]
    PlantOutside {
        /// The path.
        path: std::path::PathBuf,
    },
    /// Permission bits beyond 0777.
    #[error("plant: {path:?} has mode {mode:o}; only permission bits (0777) are allowed")]
    BadMode {
        /// The path.
        path: std::path::PathBuf,
        /// The mode.
        mode: u32,
    },
    /// A path that must be relative and normal.
    #[error(
        "{field}: path {path:?} must be relative to the workspace, without '.' or '..' components"
    )]
    BadRelPath {
        /// Which field.
        field: &'static str,
        /// The path.
        path: std::path::PathBuf,
    },
    /// No command.
    #[error("no command given")]
    EmptyCommand,
    /// A NUL byte in a string passed to the kernel.
    #[error("{field} contains a NUL byte")]
    Nul {
        /// Which field.
        field: &'static str,
    },
    /// An environment variable that cannot be passed.
    #[error("invalid environment variable name {name:?}")]
    BadEnv {
        /// The name.
        name: String,
    },
    /// uid or gid 0 inside the sandbox.
    #[error("the payload may not run as uid or gid 0 inside the sandbox")]
    RootInside,
    /// A bad hostname.
    #[error("invalid hostname {name:?}")]
    BadHostname {
        /// The name.
        name: String,
    },
    /// A path that is not absolute and normal.
    #[error("{field}: path {path:?} must be absolute, without '.' or '..' components")]
    BadPath {
        /// Which field.
        field: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A path that would shadow a mount airlock makes itself.
    #[error("{field}: {path:?} collides with a directory airlock builds itself")]
    Reserved {
        /// Which field.
        field: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// Zero timeout.
    #[error("timeout must be greater than zero")]
    ZeroTimeout,
    /// CPU quota out of range.
    #[error("cpus must be a positive number, got {0}")]
    BadCpus(f64),
    /// A seccomp rule naming an unknown syscall.
    #[error("seccomp: unknown syscall {name:?} on this architecture")]
    UnknownSyscall {
        /// The name.
        name: String,
    },
    /// seccompiler rejected the filter.
    #[error("seccomp: cannot compile filter: {0}")]
    Seccomp(String),
    /// The workspace directory is unusable.
    #[error("workspace {path:?}: {reason}")]
    Workspace {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A required read-only path is missing on the host.
    #[error("read-only bind {path:?} does not exist on this host")]
    MissingBind {
        /// The path.
        path: PathBuf,
    },
}

/// cgroup set-up and accounting errors.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No usable hierarchy, while the profile requires one.
    #[error("cgroups are required by the profile but unusable here: {0}")]
    Unavailable(String),
    /// A cgroup file could not be read or written.
    #[error("cgroup {path:?}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Landlock errors.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// Landlock is below what the profile requires.
    #[error("landlock is required at ABI {required} but this kernel offers {available}")]
    BelowFloor {
        /// Required ABI.
        required: u8,
        /// Available ABI (0 = none).
        available: u8,
    },
    /// The ruleset could not be built or applied.
    #[error("landlock: {0}")]
    Ruleset(String),
}

/// Why spawning failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A syscall in the supervisor failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// Writing the user namespace maps failed.
    #[error("cannot write {file} for the sandbox: {source}")]
    IdMap {
        /// uid_map, gid_map or setgroups.
        file: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The sandbox's init reported a set-up failure.
    #[error("sandbox set-up failed: {0}")]
    Setup(String),
    /// The network listeners could not be created or handed over.
    #[error("sandbox network set-up failed: {reason}")]
    Network {
        /// What went wrong.
        reason: String,
    },
    /// The sandbox's init died before reporting.
    #[error("sandbox init exited before the command started (status {0})")]
    InitDied(i32),
    /// The host uid lease file could not be used.
    #[error("cannot lease a host uid for the sandbox ({path:?}): {source}")]
    HostIds {
        /// The lock file or its directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Every host uid of the reserved range is in use.
    #[error(
        "all {count} host uids reserved for root-run sandboxes are in use; end some sandboxes"
    )]
    HostIdsExhausted {
        /// Size of the range.
        count: u32,
    },
    /// Could not find the airlock executable to re-exec as the sandbox init.
    #[error("cannot open the airlock executable for re-exec: {0}")]
    SelfExe(std::io::Error),
}

/// Any jail error.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// Bad spec.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// cgroup failure.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// Landlock failure.
    #[error(transparent)]
    Landlock(#[from] LandlockError),
    /// Spawn failure.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// Supervisor I/O failure.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// A live sandbox's request failed.
    #[error(transparent)]
    Live(#[from] crate::live::LiveError),
    /// A live sandbox's file operation failed.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
}
