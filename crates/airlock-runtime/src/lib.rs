//! airlock-runtime: a sandbox session.
//!
//! It turns a validated [`Profile`] plus a request (command, workspace,
//! caller's terminal type) into an `airlock_jail::JailSpec`, runs it, and
//! returns the jail's report. The CLI (and later the server and MCP) call only this
//! API; none of them duplicate its logic.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use airlock_egress::{EgressLimit, FlowRecord};
use airlock_egress::{GatewayEvent, GatewayProcess, ListenerRole, ProcessConfig, SinkRecord};
use airlock_jail::{
    CgroupSpec, JailSpec, LandlockSpec, ListenSpec, NetSpec, PlantFile, RlimitSpec, RoBind,
    RunOptions, StdinMode, WorkspaceSource,
};
use serde_json::json;

mod approve;
mod evidence;
mod live;

pub use airlock_egress::{CanaryFlow, Decision, EscalationAsk};
pub use airlock_jail::{FileInfo, JailError, Stream};
use airlock_policy::{NetworkMode, NetworkPolicy, Profile, Requirement, DNS_PORT, PROXY_PORT};
pub use approve::{ApprovalRequest, Approver, CommandApprover};
pub use evidence::{
    AuditSummary, CanaryLeak, CanaryReport, CanaryTouch, CopyOutRecord, EscalationRecord,
    EvidenceReport, NetworkEvent, PlantedCanary,
};
pub use live::{
    CloseReport, ExecRequest, ExecResult, FileError, FileKind, LiveError, NetworkSince,
    OutputChunk, Process, Sandbox, SandboxInfo, SandboxRequest, DEFAULT_FILE_MAX,
};
use serde::Serialize;

pub use airlock_egress::{FlowProto, Verdict};
pub use airlock_jail::{
    doctor, init_main_if_requested, settle, Check, CheckStatus, Collect, ExitReason, LimitHit,
    Notice, OutputSink, RunReport, INTERRUPT_WINDOW,
};

/// Every kind of audit event a sandbox session writes (for `airlock audit
/// show --kind`, which also takes a family: the part before the dot).
pub const EVENT_KINDS: &[&str] = &[
    "sandbox.created",
    "sandbox.started",
    "sandbox.failed",
    "sandbox.ended",
    "process.exec",
    "process.exec_attempt",
    "canary.touched",
    "canary.exfiltration",
    "canary.leaked",
    "net.decision",
    "net.mock_request",
    "escalation.request",
    "escalation.grant",
    "escalation.denial",
    "escalation.expired",
    "limit.hit",
    "copy_out",
    "copy_out.refused",
    "exec.started",
    "exec.ended",
    "file.read",
    "file.write",
    "file.list",
    "file.stat",
    "file.remove",
    "file.mkdir",
    "sandbox.reset",
    "sandbox.checkpoint",
];

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
    /// Canary credentials could not be minted.
    #[error("canaries: {0}")]
    Canary(#[from] airlock_canary::CanaryError),
    /// The audit log could not be created, written or closed (the run was
    /// stopped: the log never has a silent gap).
    #[error("audit log: {0}")]
    Audit(String),
    /// The audit signing key is unusable.
    #[error(transparent)]
    Key(#[from] airlock_audit::KeyError),
    /// The copy-out destination is unusable.
    #[error("copy-out destination {path:?}: {reason}")]
    CopyOut {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A caller-chosen sandbox id is not a plain name.
    #[error("sandbox id {0:?}: use 1 to 64 ASCII letters, digits, '-' or '_'")]
    SandboxId(String),
    /// A live sandbox request field is unusable.
    #[error("{field}: {reason}")]
    Request {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The live sandbox is closed.
    #[error("sandbox {id} is closed ({reason})")]
    Closed {
        /// Its id.
        id: String,
        /// Why it closed.
        reason: String,
    },
    /// The sandbox could not start the command as asked (a cwd that does
    /// not exist, say); the command never ran.
    #[error("the command could not start: {0}")]
    Exec(String),
    /// A file operation of a live sandbox failed.
    #[error(transparent)]
    File(#[from] airlock_jail::FileError),
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
    /// Give the payload the caller's stdin even when it is a terminal
    /// (`-i`), copied into a fresh pipe (wins over `inherit_stdin`).
    pub interactive: bool,
    /// Give the payload a new pseudo-terminal relayed to the caller's
    /// stdin and stdout (`-t`; wins over `interactive`).
    pub tty: bool,
    /// The sandbox's id (as in every record and audit event); `None` for a
    /// fresh [`new_sandbox_id`]. A caller that talks to a long-lived
    /// payload sets it to know the id before the run ends.
    pub sandbox_id: Option<String>,
    /// Give the payload a fresh pipe as stdin, whose write end goes to the
    /// output sink's `stdin_pipe` (wins over `inherit_stdin`).
    pub pipe_stdin: bool,
    /// Forward SIGINT/SIGTERM/SIGHUP to the payload (CLI use).
    pub forward_signals: bool,
    /// Write the audit log to this file (it must not exist). Without it,
    /// the profile's `[audit] dir` decides; without that, no audit log.
    pub audit: Option<PathBuf>,
    /// Answers escalation requests (`on_deny = "ask"`); none means deny.
    pub approver: Option<Arc<dyn Approver>>,
    /// Files to copy out of the workspace after the run (relative paths).
    pub copy_out: Vec<PathBuf>,
    /// Host directory the copy-out files are written to (created if
    /// missing; existing files are never overwritten).
    pub out_dir: Option<PathBuf>,
}

impl RunRequest {
    /// A request with the defaults: no workspace, no stdin, no audit, no
    /// approver, no copy-out.
    pub fn new(profile: Profile, argv: Vec<String>) -> Self {
        Self {
            profile,
            argv,
            workspace: None,
            term: None,
            cgroup_root: None,
            inherit_stdin: false,
            interactive: false,
            tty: false,
            pipe_stdin: false,
            sandbox_id: None,
            forward_signals: false,
            audit: None,
            approver: None,
            copy_out: Vec::new(),
            out_dir: None,
        }
    }
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
    let req = RunRequest::new(profile.clone(), vec!["/bin/true".into()]);
    airlock_jail::check(&jail_spec(&req)?)?;
    canary_config(profile)
        .validate()
        .map_err(|e| RuntimeError::Canary(e.into()))?;
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
                // Evidence: reported through the session's observer.
                GatewayEvent::Canary(_)
                | GatewayEvent::EscalationRequest(_)
                | GatewayEvent::GrantExpired { .. } => {}
            }
        }
        r
    }

    /// Flows with this verdict.
    pub fn count(&self, verdict: airlock_egress::Verdict) -> usize {
        self.flows.iter().filter(|f| f.verdict == verdict).count()
    }
}

/// The result of a run: the jail's report, the gateway's when the sandbox
/// had network, and the evidence (canaries, escalations, copy-out, audit).
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    /// The sandbox's id (as in the audit log).
    pub sandbox: String,
    /// How the sandbox ran and ended.
    #[serde(flatten)]
    pub run: RunReport,
    /// What the egress gateway decided (allowlist mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkReport>,
    /// Canaries, execs, escalations, copy-out and the audit log.
    #[serde(flatten)]
    pub evidence: EvidenceReport,
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

/// Runs the airlock helper processes when this process is one: the
/// sandbox's init, or an egress gateway. Call first thing in `main` of any
/// binary that runs sandboxes; it returns only in the normal case.
pub fn helper_main_if_requested() {
    airlock_jail::init_main_if_requested();
    airlock_egress::gateway_main_if_requested();
}

/// The canaries of a run, and where they go.
struct Minted {
    set: airlock_canary::CanarySet,
    plant: Vec<PlantFile>,
    /// Path inside the sandbox → canary ids (files holding canaries).
    watched: Vec<(String, Vec<String>)>,
    skipped: Vec<String>,
}

fn mint_canaries(req: &RunRequest) -> Result<Option<Minted>, RuntimeError> {
    let c = &req.profile.canaries;
    if !c.enabled && c.extra.is_empty() {
        return Ok(None);
    }
    let set = airlock_canary::mint(&canary_config(&req.profile))?;
    plan_canaries(req, set).map(Some)
}

/// The canary crate's config for a profile's `[canaries]`.
fn canary_config(profile: &Profile) -> airlock_canary::CanaryConfig {
    let c = &profile.canaries;
    airlock_canary::CanaryConfig {
        builtin: c.enabled,
        extras: c
            .extra
            .iter()
            .map(|e| airlock_canary::ExtraCanary {
                name: e.name.clone(),
                env: e.env.clone(),
                file: e.file.clone(),
                prefix: e.prefix.clone(),
                length: e.length as usize,
                template: e.template.clone(),
            })
            .collect(),
    }
}

/// Where each minted file goes inside the sandbox.
fn plan_canaries(req: &RunRequest, set: airlock_canary::CanarySet) -> Result<Minted, RuntimeError> {
    let home = Path::new(SANDBOX_HOME);
    let ws = req.profile.filesystem.workspace.as_path();
    let mut plant = Vec::new();
    let mut watched = Vec::new();
    let mut skipped = Vec::new();
    for f in &set.files {
        let path = match &f.location {
            airlock_canary::Location::Home(rel) => home.join(rel),
            airlock_canary::Location::Workspace(rel) => {
                if req.workspace.is_some() {
                    skipped.push(format!(
                        "{}: not planted, the workspace is a host directory (airlock never \
                         writes into it on its own)",
                        ws.join(rel).display()
                    ));
                    continue;
                }
                ws.join(rel)
            }
        };
        if !f.canary_ids.is_empty() {
            watched.push((path.display().to_string(), f.canary_ids.clone()));
        }
        plant.push(PlantFile {
            path,
            contents: f.contents.clone(),
            mode: f.mode,
            watch: !f.canary_ids.is_empty(),
        });
    }
    Ok(Minted {
        set,
        plant,
        watched,
        skipped,
    })
}

/// Opens the audit log of a run, if it has one: `--audit FILE`, else the
/// profile's `[audit] dir`.
fn open_audit(
    req: &RunRequest,
    sandbox: &str,
) -> Result<Option<airlock_audit::AuditWriter>, RuntimeError> {
    let path = match (&req.audit, &req.profile.audit.dir) {
        (Some(p), _) => p.clone(),
        (None, Some(dir)) => dir.join(format!("{sandbox}.jsonl")),
        (None, None) => return Ok(None),
    };
    let key = match &req.profile.audit.key {
        Some(k) => airlock_audit::load_signing_key(k)?,
        None => airlock_audit::load_or_create_default_key()?.0,
    };
    let w = airlock_audit::AuditWriter::create(&path, sandbox, key)
        .map_err(|e| RuntimeError::Audit(e.to_string()))?;
    Ok(Some(w))
}

/// A sandbox about to be built: its jail spec, canaries, audit log,
/// evidence sink (which starts the egress gateway) and approver thread.
/// `run` and a live [`Sandbox`] start from the same value.
pub(crate) struct Prepared {
    pub(crate) sandbox: String,
    pub(crate) spec: JailSpec,
    pub(crate) shared: Arc<evidence::Shared>,
    pub(crate) ev: evidence::EvidenceSink,
    pub(crate) gateway: Arc<Mutex<Option<GatewayProcess>>>,
    pub(crate) approver: Option<std::thread::JoinHandle<()>>,
}

/// A caller-chosen sandbox id, or a fresh one.
fn sandbox_id(id: Option<&str>) -> Result<String, RuntimeError> {
    match id {
        None => Ok(new_sandbox_id()),
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(id.to_string())
        }
        Some(id) => Err(RuntimeError::SandboxId(id.to_string())),
    }
}

/// Everything before the jail builds the sandbox: validate, mint and plan
/// the canaries, open the audit log and the copy-out directory, record
/// `sandbox.created`, and ready the gateway's configuration and approver.
/// `live` sandboxes have no command yet.
pub(crate) fn prepare(req: &RunRequest, live: bool) -> Result<Prepared, RuntimeError> {
    let sandbox = sandbox_id(req.sandbox_id.as_deref())?;
    let mut spec = jail_spec(req)?;
    let minted = mint_canaries(req)?;
    if let Some(m) = &minted {
        spec.plant = m.plant.clone();
        // The profile's env and --env win over a canary variable.
        for (k, v) in &m.set.env {
            if !req.profile.env.contains_key(k) {
                spec.env.retain(|(ek, _)| ek != k);
                spec.env.push((k.clone(), v.clone()));
            }
        }
    }
    spec.copy_out = req.copy_out.clone();
    let copy_out = if req.copy_out.is_empty() {
        None
    } else {
        let dir = req.out_dir.clone().ok_or_else(|| RuntimeError::CopyOut {
            path: PathBuf::new(),
            reason: "files to copy out, but no destination directory".into(),
        })?;
        Some(evidence::CopyOutTarget {
            dir,
            max: spec.copy_out_max,
        })
    };
    // The jail validates before its own side effects; the audit log and the
    // copy-out directory come first, so check the spec before them (only
    // then: compiling the seccomp filters twice is spawn-path work).
    let audited = req.audit.is_some() || req.profile.audit.dir.is_some();
    if audited || copy_out.is_some() || live {
        if live {
            spec.validate_sandbox()
                .map_err(airlock_jail::JailError::from)?;
        } else {
            airlock_jail::check(&spec)?;
        }
    }
    if let Some(t) = &copy_out {
        std::fs::create_dir_all(&t.dir).map_err(|e| RuntimeError::CopyOut {
            path: t.dir.clone(),
            reason: e.to_string(),
        })?;
    }
    let audit = open_audit(req, &sandbox)?;
    spec.exec_watch = audit.is_some();
    let shared = evidence::Shared::new(audit);
    let profile_toml = req
        .profile
        .to_toml_string()
        .map_err(|e| RuntimeError::Network(e.to_string()))?;
    {
        use sha2::Digest;
        let mut ev = shared.evidence.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = &minted {
            ev.canaries.planted = evidence::planted(&m.set, &m.watched);
            ev.canaries.skipped = m.skipped.clone();
        }
        let created = json!({
            "profile": req.profile.name,
            "profile_sha256": evidence::hex(&sha2::Sha256::digest(profile_toml.as_bytes())),
            "argv": if live { serde_json::Value::Null } else { json!(req.argv) },
            "live": live,
            "workspace": req.workspace,
            "limits": req.profile.limits,
            "network": req.profile.network.mode,
            "canaries": ev.canaries.planted,
            "exec_telemetry": spec.exec_watch,
        });
        drop(ev);
        shared.record("sandbox.created", created);
    }
    let net = &req.profile.network;
    let plan = network_plan(net);
    let (asks_tx, asks_rx) = std::sync::mpsc::channel();
    let answers = Arc::new(Mutex::new(None));
    let approver = plan.as_ref().map(|_| {
        evidence::approver_thread(
            Arc::clone(&shared),
            asks_rx,
            Arc::clone(&answers),
            req.approver.clone(),
            net.max_grant_ttl,
            net.ask_timeout,
        )
    });
    let gateway = Arc::new(Mutex::new(None));
    let ev = evidence::EvidenceSink {
        shared: Arc::clone(&shared),
        gateway_cfg: plan.map(|(_, roles)| ProcessConfig {
            sandbox: sandbox.clone(),
            profile_toml,
            roles,
            canaries: minted
                .as_ref()
                .map(|m| m.set.canaries.clone())
                .unwrap_or_default(),
            block_canaries: req.profile.canaries.block_exfiltration,
        }),
        gateway: Arc::clone(&gateway),
        observer: Some(evidence::gateway_observer(Arc::clone(&shared), asks_tx)),
        answers,
        canaries: minted
            .as_ref()
            .map(|m| m.set.canaries.clone())
            .unwrap_or_default(),
        scanner: None,
        out_scan: None,
        watched: minted
            .as_ref()
            .map(|m| m.watched.clone())
            .unwrap_or_default(),
        copy_out,
    };
    Ok(Prepared {
        sandbox,
        spec,
        shared,
        ev,
        gateway,
        approver,
    })
}

/// Stops the gateway (if one ran) and the approver: what the gateway saw.
pub(crate) fn stop_gateway(
    sandbox: &str,
    gateway: &Mutex<Option<GatewayProcess>>,
    approver: Option<std::thread::JoinHandle<()>>,
) -> Option<NetworkReport> {
    let outcome = gateway
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .map(GatewayProcess::finish);
    if let Some(t) = approver {
        let _ = t.join();
    }
    outcome.map(|o| NetworkReport::from_events(sandbox.to_string(), o))
}

/// Run the request in a fresh sandbox, streaming output to `sink`: a
/// sandbox prepared as a live one is, whose one process is the command
/// (the jail's one-shot path boots the same way and starts the command
/// through init's exec, relaying the caller's terminal and signals).
/// With an allowlist network, an egress gateway process serves the
/// sandbox's sockets for the length of the run. Canaries are planted and
/// watched, execs recorded (when audited), escalations asked, files copied
/// out, and every observation written to the audit log when there is one.
pub fn run(req: &RunRequest, sink: &mut dyn OutputSink) -> Result<SessionReport, RuntimeError> {
    let Prepared {
        sandbox,
        spec,
        shared,
        ev,
        gateway,
        approver,
    } = prepare(req, false)?;
    tracing::debug!(profile = %req.profile.name, argv = ?req.argv, "starting sandbox");
    let opts = RunOptions {
        stdin: if req.pipe_stdin {
            StdinMode::Pipe
        } else if req.tty {
            StdinMode::Tty
        } else if req.interactive {
            StdinMode::Inherit
        } else if req.inherit_stdin {
            StdinMode::InheritUnlessTty
        } else {
            StdinMode::Null
        },
        forward_signals: req.forward_signals,
    };
    let mut session = evidence::SessionSink { inner: sink, ev };
    let result = airlock_jail::run(&spec, &opts, &mut session);
    // The sandbox is gone (or never started): stop the gateway either way.
    session.ev.observer = None; // closes the approver's queue when no gateway ran
    drop(session);
    let network = stop_gateway(&sandbox, &gateway, approver);
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            shared.record("sandbox.failed", json!({"error": e.to_string()}));
            close_audit(&shared);
            return Err(e.into());
        }
    };
    tracing::debug!(reason = ?report.reason, wall = ?report.wall, "sandbox ended");
    for l in &report.limits_hit {
        shared.record("limit.hit", json!({"layer": "sandbox", "limit": l}));
    }
    shared.record(
        "sandbox.ended",
        json!({
            "reason": report.reason,
            "exit_code": report.exit_code,
            "wall": report.wall.as_secs_f64(),
            "user": report.user.as_secs_f64(),
            "sys": report.sys.as_secs_f64(),
            "peak_memory": report.peak_memory,
            "limits_hit": report.limits_hit,
            "stdout": report.stdout,
            "stderr": report.stderr,
            "gateway_failure": network.as_ref().and_then(|n| n.gateway_failure.clone()),
        }),
    );
    let summary = close_audit(&shared);
    if let Some(f) = shared.failure() {
        return Err(RuntimeError::Audit(format!(
            "{f}; the sandbox was stopped (the log never has a silent gap)"
        )));
    }
    let mut evidence =
        std::mem::take(&mut *shared.evidence.lock().unwrap_or_else(|p| p.into_inner()));
    evidence.audit = summary;
    if spec.exec_watch {
        evidence.execs = Some(shared.execs());
    }
    Ok(SessionReport {
        sandbox,
        run: report,
        network,
        evidence,
    })
}

/// Closes the audit log (signing its head); a failure is remembered.
pub(crate) fn close_audit(shared: &evidence::Shared) -> Option<AuditSummary> {
    let w = shared
        .audit
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()?;
    let path = w.path().to_path_buf();
    match w.close() {
        Ok(h) => Some(AuditSummary {
            path,
            events: h.events,
            last_hash: h.last_hash,
            public_key: h.public_key,
        }),
        Err(e) => {
            shared.note_failure(format!("closing the audit log: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod event_kind_tests {
    /// Every kind this crate records is in EVENT_KINDS.
    #[test]
    fn event_kinds_are_listed() {
        let sources = [include_str!("lib.rs"), include_str!("evidence.rs")];
        let mut seen = 0;
        for src in sources {
            for (i, _) in src.match_indices("record(") {
                let rest = src[i + "record(".len()..].trim_start();
                let Some(rest) = rest.strip_prefix('"') else {
                    continue;
                };
                let kind = &rest[..rest.find('"').unwrap()];
                // (This test's own `"record("` is not a kind.)
                if kind.is_empty()
                    || !kind
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b"._".contains(&b))
                {
                    continue;
                }
                seen += 1;
                assert!(
                    super::EVENT_KINDS.contains(&kind),
                    "{kind} is not in EVENT_KINDS"
                );
            }
        }
        assert!(seen > 10, "found only {seen} record calls");
    }
}
