//! airlock-runtime: a sandbox session.
//!
//! It turns a validated [`Profile`] plus a request (command, workspace,
//! caller's terminal type) into an `airlock_jail::JailSpec`, runs it, and
//! returns the jail's report. The CLI (and later the server and MCP) call only this
//! API; none of them duplicate its logic.

use std::path::PathBuf;

use airlock_jail::{
    CgroupSpec, JailSpec, LandlockSpec, RlimitSpec, RoBind, RunOptions, StdinMode, WorkspaceSource,
};
use airlock_policy::{Profile, Requirement};

pub use airlock_jail::{
    doctor, init_main_if_requested, Check, CheckStatus, Collect, ExitReason, LimitHit, OutputSink,
    RunReport,
};

/// Home directory of the payload inside the sandbox.
pub const SANDBOX_HOME: &str = "/home/sandbox";
/// PATH inside the sandbox, unless the profile sets one.
pub const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors of a session.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The jail failed to build or run the sandbox.
    #[error(transparent)]
    Jail(#[from] airlock_jail::JailError),
    /// The workspace argument is unusable.
    #[error("workspace {path:?}: {reason}")]
    Workspace {
        /// The path as given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One request to run a command.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The validated profile (with command-line overrides applied).
    pub profile: Profile,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// A host directory to bind read-write as the workspace; `None` for an
    /// empty ephemeral tmpfs.
    pub workspace: Option<PathBuf>,
    /// The caller's TERM, passed through when it is a plain name.
    pub term: Option<String>,
    /// Use this cgroup hierarchy instead of detecting one.
    pub cgroup_root: Option<PathBuf>,
    /// Give the payload the caller's stdin (unless it is a terminal).
    pub inherit_stdin: bool,
    /// Forward SIGINT/SIGTERM/SIGHUP to the payload (CLI use).
    pub forward_signals: bool,
}

fn plain_term(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
}

/// The payload's whole environment: PATH, HOME, LANG, TERM, then the
/// profile's env (which includes `--env`), later entries winning.
fn environment(profile: &Profile, term: Option<&str>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), SANDBOX_PATH.into()),
        ("HOME".into(), SANDBOX_HOME.into()),
        ("LANG".into(), "C.UTF-8".into()),
        (
            "TERM".into(),
            term.filter(|t| plain_term(t)).unwrap_or("dumb").to_string(),
        ),
    ];
    for (k, v) in &profile.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Turn a request into the jail's spec. Pure.
pub fn jail_spec(req: &RunRequest) -> Result<JailSpec, RuntimeError> {
    let p = &req.profile;
    let workspace = match &req.workspace {
        Some(dir) => {
            let abs = std::path::absolute(dir).map_err(|e| RuntimeError::Workspace {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
            WorkspaceSource::HostDir(abs)
        }
        None => WorkspaceSource::Tmpfs(p.filesystem.workspace_size.bytes()),
    };
    let mut ro_binds: Vec<RoBind> = p
        .filesystem
        .ro
        .iter()
        .map(|a| RoBind {
            path: a.as_path().to_path_buf(),
            optional: false,
        })
        .collect();
    ro_binds.extend(p.filesystem.ro_optional.iter().map(|a| RoBind {
        path: a.as_path().to_path_buf(),
        optional: true,
    }));
    Ok(JailSpec {
        argv: req.argv.clone(),
        env: environment(p, req.term.as_deref()),
        uid: p.security.uid,
        gid: p.security.gid,
        hostname: p.security.hostname.clone(),
        ro_binds,
        workspace_path: p.filesystem.workspace.as_path().to_path_buf(),
        workspace,
        home_path: PathBuf::from(SANDBOX_HOME),
        home_size: p.filesystem.home_size.bytes(),
        tmp_size: p.filesystem.tmp_size.bytes(),
        seccomp: p.seccomp.clone(),
        landlock: LandlockSpec {
            required: p.security.landlock == Requirement::Required,
            min_abi: p.security.landlock_min_abi,
        },
        cgroup: CgroupSpec {
            memory: p.limits.memory.map(|m| m.bytes()),
            pids: p.limits.pids,
            cpus: p.limits.cpus,
            required: p.security.cgroups == Requirement::Required,
            root: req.cgroup_root.clone(),
        },
        rlimits: RlimitSpec {
            nofile: p.limits.nofile,
            fsize: p.limits.fsize.bytes(),
        },
        timeout: p.limits.timeout,
        output_cap: p.limits.output.bytes(),
    })
}

/// Check that a profile can be turned into a sandbox on this architecture
/// (e.g. every seccomp syscall name resolves), without running anything.
pub fn check_profile(profile: &Profile) -> Result<(), RuntimeError> {
    let req = RunRequest {
        profile: profile.clone(),
        argv: vec!["/bin/true".into()],
        workspace: None,
        term: None,
        cgroup_root: None,
        inherit_stdin: false,
        forward_signals: false,
    };
    airlock_jail::check(&jail_spec(&req)?)?;
    Ok(())
}

/// Run the request in a fresh sandbox, streaming output to `sink`.
pub fn run(req: &RunRequest, sink: &mut dyn OutputSink) -> Result<RunReport, RuntimeError> {
    let spec = jail_spec(req)?;
    tracing::debug!(profile = %req.profile.name, argv = ?req.argv, "starting sandbox");
    let opts = RunOptions {
        stdin: if req.inherit_stdin {
            StdinMode::InheritUnlessTty
        } else {
            StdinMode::Null
        },
        forward_signals: req.forward_signals,
    };
    let report = airlock_jail::run(&spec, &opts, sink)?;
    tracing::debug!(reason = ?report.reason, wall = ?report.wall, "sandbox ended");
    Ok(report)
}
