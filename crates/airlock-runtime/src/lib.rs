//! airlock-runtime: a sandbox session.
//!
//! It turns a validated [`Profile`] plus a request (command, workspace,
//! caller's terminal type) into an `airlock_jail::JailSpec`, runs it, and
//! returns the jail's report. The CLI (and later the server and MCP) call only this
//! API; none of them duplicate its logic.

use std::path::PathBuf;

use std::os::fd::OwnedFd;

use airlock_egress::{
    EgressLimit, FlowRecord, GatewayEvent, GatewayProcess, ListenerRole, ProcessConfig, SinkRecord,
};
use airlock_jail::{
    CgroupSpec, JailSpec, LandlockSpec, ListenSpec, NetSpec, RlimitSpec, RoBind, RunOptions,
    StdinMode, WorkspaceSource,
};
use airlock_policy::{NetworkMode, NetworkPolicy, Profile, Requirement, DNS_PORT, PROXY_PORT};
use serde::Serialize;

pub use airlock_egress::{FlowProto, Verdict};
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
    /// The network set-up failed.
    #[error("network: {0}")]
    Network(String),
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

/// Address of the proxy inside the sandbox.
pub const PROXY_URL: &str = "http://127.0.0.1:3128";
/// Address of the DNS server inside the sandbox.
pub const DNS_ADDR: &str = "127.0.0.53";
/// Most gateway events kept per run (flows beyond it are counted).
pub const MAX_EVENTS: usize = 100_000;

/// The sockets the gateway needs inside the sandbox, and what each is for.
fn network_plan(net: &NetworkPolicy) -> Option<(NetSpec, Vec<ListenerRole>)> {
    if net.mode != NetworkMode::Allowlist {
        return None;
    }
    let loopback = std::net::Ipv4Addr::LOCALHOST;
    let dns: std::net::Ipv4Addr = DNS_ADDR.parse().expect("static address");
    let mut listeners = vec![
        ListenSpec {
            addr: (loopback, PROXY_PORT).into(),
            udp: false,
        },
        ListenSpec {
            addr: (dns, DNS_PORT).into(),
            udp: true,
        },
        ListenSpec {
            addr: (dns, DNS_PORT).into(),
            udp: false,
        },
    ];
    let mut roles = vec![
        ListenerRole::Proxy,
        ListenerRole::DnsUdp,
        ListenerRole::DnsTcp,
    ];
    for port in net.capture_ports() {
        listeners.push(ListenSpec {
            addr: (std::net::Ipv4Addr::UNSPECIFIED, port).into(),
            udp: false,
        });
        roles.push(ListenerRole::Capture { port });
    }
    let spec = NetSpec {
        listeners,
        resolv_conf: Some(format!(
            "# airlock: the egress gateway answers allowed names only\n\
             nameserver {DNS_ADDR}\noptions attempts:1 timeout:2\n"
        )),
    };
    Some((spec, roles))
}

/// The payload's whole environment: PATH, HOME, LANG, TERM, the proxy
/// variables when the network is an allowlist, then the profile's env
/// (which includes `--env`), later entries winning.
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
    if profile.network.mode == NetworkMode::Allowlist {
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            env.push((k.into(), PROXY_URL.into()));
            env.push((k.to_ascii_lowercase(), PROXY_URL.into()));
        }
        for k in ["NO_PROXY", "no_proxy"] {
            env.push((k.into(), "localhost,127.0.0.1,::1".into()));
        }
    }
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
        net: network_plan(&p.network)
            .map(|(spec, _)| spec)
            .unwrap_or_default(),
        plant: Vec::new(),
        exec_watch: false,
        copy_out: Vec::new(),
        copy_out_max: 64 << 20,
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

/// What the egress gateway saw during a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetworkReport {
    /// The sandbox's id (as in every record).
    pub sandbox: String,
    /// Every decision, in the order the gateway reported them.
    pub flows: Vec<FlowRecord>,
    /// What the sink mocks recorded.
    pub sink: Vec<SinkRecord>,
    /// Caps the sandbox hit.
    pub limits_hit: Vec<EgressLimit>,
    /// Events dropped past [`MAX_EVENTS`].
    pub events_dropped: u64,
    /// Set when the gateway ended before the sandbox (the sandbox lost its
    /// network, failing closed).
    pub gateway_failure: Option<String>,
}

impl NetworkReport {
    fn from_events(sandbox: String, outcome: airlock_egress::GatewayOutcome) -> Self {
        let mut r = NetworkReport {
            sandbox,
            events_dropped: outcome.dropped,
            gateway_failure: outcome.failure,
            ..Self::default()
        };
        for ev in outcome.events {
            match ev {
                GatewayEvent::Flow(f) => r.flows.push(f),
                GatewayEvent::Sink(s) => r.sink.push(s),
                GatewayEvent::Limit { limit } => r.limits_hit.push(limit),
            }
        }
        r
    }

    /// Flows with this verdict.
    pub fn count(&self, verdict: airlock_egress::Verdict) -> usize {
        self.flows.iter().filter(|f| f.verdict == verdict).count()
    }
}

/// The result of a run: the jail's report, plus the gateway's when the
/// sandbox had network.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    /// How the sandbox ran and ended.
    #[serde(flatten)]
    pub run: RunReport,
    /// What the egress gateway decided (allowlist mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkReport>,
}

/// A fresh sandbox id: "sbx-" and 16 hex digits from the kernel's random
/// pool.
pub fn new_sandbox_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 8];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = ((t as u64) ^ u64::from(std::process::id())).to_le_bytes();
    }
    format!(
        "sbx-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Passes output through and starts the gateway when the jail hands over
/// the sandbox's sockets.
struct GatewaySink<'a> {
    inner: &'a mut dyn OutputSink,
    config: ProcessConfig,
    gateway: Option<GatewayProcess>,
}

impl OutputSink for GatewaySink<'_> {
    fn stdout(&mut self, data: &[u8]) {
        self.inner.stdout(data)
    }
    fn stderr(&mut self, data: &[u8]) {
        self.inner.stderr(data)
    }
    fn network_listeners(&mut self, fds: Vec<OwnedFd>) -> Result<(), String> {
        let exe = std::path::Path::new("/proc/self/exe");
        let gw =
            GatewayProcess::spawn(exe, &self.config, fds, MAX_EVENTS).map_err(|e| e.to_string())?;
        tracing::debug!(pid = gw.pid(), "egress gateway started");
        self.gateway = Some(gw);
        Ok(())
    }
}

/// Runs the airlock helper processes when this process is one: the
/// sandbox's init, or an egress gateway. Call first thing in `main` of any
/// binary that runs sandboxes; it returns only in the normal case.
pub fn helper_main_if_requested() {
    airlock_jail::init_main_if_requested();
    airlock_egress::gateway_main_if_requested();
}

/// Run the request in a fresh sandbox, streaming output to `sink`. With an
/// allowlist network, an egress gateway process serves the sandbox's
/// sockets for the length of the run.
pub fn run(req: &RunRequest, sink: &mut dyn OutputSink) -> Result<SessionReport, RuntimeError> {
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
    let Some((_, roles)) = network_plan(&req.profile.network) else {
        let report = airlock_jail::run(&spec, &opts, sink)?;
        tracing::debug!(reason = ?report.reason, wall = ?report.wall, "sandbox ended");
        return Ok(SessionReport {
            run: report,
            network: None,
        });
    };
    let sandbox = new_sandbox_id();
    let profile_toml = req
        .profile
        .to_toml_string()
        .map_err(|e| RuntimeError::Network(e.to_string()))?;
    let mut gsink = GatewaySink {
        inner: sink,
        config: ProcessConfig {
            sandbox: sandbox.clone(),
            profile_toml,
            roles,
        },
        gateway: None,
    };
    let result = airlock_jail::run(&spec, &opts, &mut gsink);
    // The sandbox is gone (or never started): stop the gateway either way.
    let outcome = gsink.gateway.take().map(GatewayProcess::finish);
    let report = result?;
    tracing::debug!(reason = ?report.reason, wall = ?report.wall, "sandbox ended");
    let network = NetworkReport::from_events(sandbox, outcome.unwrap_or_default());
    Ok(SessionReport {
        run: report,
        network: Some(network),
    })
}
