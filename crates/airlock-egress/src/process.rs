//! The gateway as a separate host-side process.
//!
//! The supervisor starts `/proc/self/exe __airlock-egress` with one end of a
//! unix stream socket as stdin and stdout. Over it the supervisor sends one
//! byte carrying the sandbox's listening sockets (SCM_RIGHTS), then the
//! config as a length-prefixed JSON document; the gateway answers with
//! events, one JSON document per line. When the supervisor shuts down its
//! side, the gateway closes every flow (reporting each), and exits.
//!
//! Running apart means a gateway crash (or a kill) takes down the network
//! of that sandbox only: the sockets close with it, and the sandbox's
//! connections are refused from then on, never hung or leaked.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::flow::GatewayEvent;
use crate::gateway::{Gateway, GatewayConfig, ListenerRole};
use crate::hook::DenyAll;
use crate::EgressError;

/// argv[1] that makes the airlock binary run as a gateway.
pub const EGRESS_ARG: &str = "__airlock-egress";
/// The gateway process's name (comm), e.g. for `pgrep -x`.
pub const PROCESS_NAME: &str = "airlock-egress";
/// Largest config document accepted.
const MAX_CONFIG: usize = 16 << 20;

/// What the supervisor tells the gateway process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessConfig {
    /// The sandbox's id.
    pub sandbox: String,
    /// The profile (as `airlock profile show` prints it); the gateway
    /// parses and validates it again on its side.
    pub profile_toml: String,
    /// What each passed socket is for, in order.
    pub roles: Vec<ListenerRole>,
    /// The run's canaries (values to look for in everything leaving).
    #[serde(default)]
    pub canaries: Vec<airlock_canary::Canary>,
    /// Refuse flows that carry a canary value.
    #[serde(default = "yes")]
    pub block_canaries: bool,
}

fn yes() -> bool {
    true
}

/// Called on the supervisor's side with every gateway event as it arrives
/// (the audit log, escalation prompts), from the gateway reader thread.
pub type EventObserver = Box<dyn FnMut(&GatewayEvent) + Send>;

/// A running gateway process.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    ctl: UnixStream,
    reader: Option<JoinHandle<()>>,
    events: Arc<Mutex<Vec<GatewayEvent>>>,
    dropped: Arc<AtomicU64>,
    answers: Arc<Mutex<UnixStream>>,
}

/// A handle that sends escalation answers to a running gateway; usable
/// from any thread.
#[derive(Debug, Clone)]
pub struct AnswerHandle(Arc<Mutex<UnixStream>>);

impl AnswerHandle {
    /// Sends the answer to escalation request `id`.
    pub fn answer(&self, id: u64, decision: crate::ask::Decision) -> Result<(), EgressError> {
        let msg = crate::ask::SupervisorMessage::Answer { id, decision };
        let mut line =
            serde_json::to_vec(&msg).map_err(|e| EgressError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.write_all(&line).map_err(EgressError::Spawn)
    }
}

/// What a gateway process reported, once it has ended.
#[derive(Debug, Default)]
pub struct GatewayOutcome {
    /// Events in the order they were reported (up to the cap).
    pub events: Vec<GatewayEvent>,
    /// Events dropped past the cap.
    pub dropped: u64,
    /// Set when the gateway ended on its own before the sandbox (it crashed
    /// or was killed), with how it ended.
    pub failure: Option<String>,
}

impl GatewayProcess {
    /// Starts `exe` as a gateway serving `fds` (one per role, in order).
    /// At most `max_events` events are kept; the rest are counted.
    pub fn spawn(
        exe: &Path,
        cfg: &ProcessConfig,
        fds: Vec<OwnedFd>,
        max_events: usize,
        mut observer: Option<EventObserver>,
    ) -> Result<Self, EgressError> {
        if fds.len() != cfg.roles.len() {
            return Err(EgressError::Protocol(format!(
                "{} sockets for {} roles",
                fds.len(),
                cfg.roles.len()
            )));
        }
        let (ours, theirs) = UnixStream::pair().map_err(EgressError::Spawn)?;
        let theirs_out = theirs.try_clone().map_err(EgressError::Spawn)?;
        let mut cmd = Command::new(exe);
        cmd.arg0(PROCESS_NAME)
            .arg(EGRESS_ARG)
            .env_clear()
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(OwnedFd::from(theirs_out)))
            .stderr(Stdio::inherit());
        if let Some(v) = std::env::var_os("RUST_LOG") {
            cmd.env("RUST_LOG", v);
        }
        let child = cmd.spawn().map_err(EgressError::Spawn)?;
        // From here on, a failure must not leave the child behind.
        let writer = ours.try_clone().map_err(EgressError::Spawn)?;
        let mut this = Self {
            child,
            ctl: ours,
            reader: None,
            events: Arc::default(),
            dropped: Arc::default(),
            answers: Arc::new(Mutex::new(writer)),
        };
        if let Err(e) = this.send_setup(cfg, &fds) {
            let _ = this.child.kill();
            let _ = this.child.wait();
            return Err(e);
        }
        drop(fds);
        let read_side = this.ctl.try_clone().map_err(EgressError::Spawn)?;
        let events = Arc::clone(&this.events);
        let dropped = Arc::clone(&this.dropped);
        this.reader = Some(std::thread::spawn(move || {
            for line in BufReader::new(read_side).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<GatewayEvent>(&line) {
                    Ok(ev) => {
                        if let Some(o) = observer.as_mut() {
                            o(&ev);
                        }
                        let mut v = events.lock().unwrap_or_else(|p| p.into_inner());
                        if v.len() < max_events {
                            v.push(ev);
                        } else {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "malformed gateway event"),
                }
            }
        }));
        Ok(this)
    }

    fn send_setup(&mut self, cfg: &ProcessConfig, fds: &[OwnedFd]) -> Result<(), EgressError> {
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let mut space =
            vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
        let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
        if !anc.push(rustix::net::SendAncillaryMessage::ScmRights(&borrowed)) {
            return Err(EgressError::Protocol("too many sockets".into()));
        }
        rustix::net::sendmsg(
            &self.ctl,
            &[std::io::IoSlice::new(b"F")],
            &mut anc,
            rustix::net::SendFlags::NOSIGNAL,
        )
        .map_err(|e| EgressError::Spawn(e.into()))?;
        let doc = serde_json::to_vec(cfg).map_err(|e| EgressError::Protocol(e.to_string()))?;
        let mut msg = (doc.len() as u32).to_le_bytes().to_vec();
        msg.extend_from_slice(&doc);
        self.ctl.write_all(&msg).map_err(EgressError::Spawn)
    }

    /// A handle for answering escalation requests.
    pub fn answers(&self) -> AnswerHandle {
        AnswerHandle(Arc::clone(&self.answers))
    }

    /// The gateway's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the gateway (every open flow is closed and reported) and
    /// returns what it reported. Waits up to five seconds before killing it.
    pub fn finish(mut self) -> GatewayOutcome {
        let early = self.child.try_wait().ok().flatten();
        let _ = self.ctl.shutdown(std::net::Shutdown::Write);
        let status = early.or_else(|| wait_timeout(&mut self.child, Duration::from_secs(5)));
        let status = match status {
            Some(s) => Some(s),
            None => {
                let _ = self.child.kill();
                self.child.wait().ok()
            }
        };
        let _ = self.ctl.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let failure = match (early, status) {
            (Some(s), _) => Some(format!("the egress gateway ended during the run ({s})")),
            (None, Some(s)) if !s.success() => Some(format!("the egress gateway failed ({s})")),
            (None, None) => Some("the egress gateway could not be reaped".into()),
            _ => None,
        };
        let events = std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()));
        let dropped = self.dropped.load(Ordering::Relaxed);
        GatewayOutcome {
            events,
            dropped,
            failure,
        }
    }
}

/// Waits for the child to exit, up to `limit`: on a pidfd when the kernel
/// has them (woken the moment it exits), else by polling every 2 ms.
fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    let pidfd = rustix::process::Pid::from_raw(child.id() as i32).and_then(|pid| {
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
    });
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        let now = Instant::now();
        if now >= until {
            return None;
        }
        match &pidfd {
            Some(fd) => {
                let left = until - now;
                let ts = rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                let _ = rustix::event::poll(&mut fds, Some(&ts));
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Runs the gateway process when argv[1] is [`EGRESS_ARG`]; returns
/// otherwise. Call first thing in `main` of any binary that starts
/// gateways (the airlock CLI, test harnesses).
pub fn gateway_main_if_requested() {
    let mut args = std::env::args_os();
    let _ = args.next();
    if args.next().as_deref() != Some(std::ffi::OsStr::new(EGRESS_ARG)) {
        return;
    }
    let code = match gateway_main() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("airlock-egress: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// The uid and gid a root-started gateway switches to (nobody/nogroup).
pub const GATEWAY_UNPRIVILEGED_ID: u32 = 65534;

/// The gateway needs no privilege: it serves sockets it was given and
/// connects out. Started by root, it becomes nobody (no groups, and so no
/// capabilities); either way it sets no_new_privs. Runs while the process
/// has one thread, since these calls change only the calling thread.
fn drop_privileges() -> Result<(), EgressError> {
    use rustix::process::{Gid, Uid};
    let err = |what: &str, e: rustix::io::Errno| {
        EgressError::Protocol(format!("dropping privileges ({what}): {e}"))
    };
    if rustix::process::geteuid().is_root() {
        let id = GATEWAY_UNPRIVILEGED_ID;
        rustix::thread::set_thread_groups(&[]).map_err(|e| err("setgroups", e))?;
        let g = Gid::from_raw(id);
        rustix::thread::set_thread_res_gid(g, g, g).map_err(|e| err("setresgid", e))?;
        let u = Uid::from_raw(id);
        rustix::thread::set_thread_res_uid(u, u, u).map_err(|e| err("setresuid", e))?;
    }
    rustix::thread::set_no_new_privs(true).map_err(|e| err("no_new_privs", e))?;
    // PR_SET_PDEATHSIG is cleared by a uid change: arm it again.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    Ok(())
}

fn gateway_main() -> Result<(), EgressError> {
    // Die with the supervisor, and name ourselves for ps/pgrep.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let _ = rustix::thread::set_name(c"airlock-egress");
    let stdin = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(EgressError::Spawn)?;
    let ctl = UnixStream::from(stdin);

    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(256))];
    let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let got = rustix::net::recvmsg(
        &ctl,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut anc,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| EgressError::Spawn(e.into()))?;
    if got.bytes != 1 || byte[0] != b'F' {
        return Err(EgressError::Protocol(
            "no sockets from the supervisor".into(),
        ));
    }
    let fds: Vec<OwnedFd> = anc
        .drain()
        .flat_map(|m| match m {
            rustix::net::RecvAncillaryMessage::ScmRights(f) => f.collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut len = [0u8; 4];
    (&ctl).read_exact(&mut len).map_err(EgressError::Spawn)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_CONFIG {
        return Err(EgressError::Protocol(format!("config of {len} bytes")));
    }
    let mut doc = vec![0u8; len];
    (&ctl).read_exact(&mut doc).map_err(EgressError::Spawn)?;
    let cfg: ProcessConfig =
        serde_json::from_slice(&doc).map_err(|e| EgressError::Protocol(e.to_string()))?;
    if cfg.roles.len() != fds.len() {
        return Err(EgressError::Protocol(format!(
            "{} sockets for {} roles",
            fds.len(),
            cfg.roles.len()
        )));
    }
    let profile = airlock_policy::Profile::from_toml(&cfg.profile_toml, "gateway config")
        .map_err(|e| EgressError::Protocol(e.to_string()))?;
    drop_privileges()?;
    // Before any thread starts, so that every thread is confined.
    match crate::confine::confine_self() {
        Ok(c) => tracing::debug!(confinement = ?c, "gateway confined by Landlock"),
        Err(e) => return Err(EgressError::Protocol(format!("confining the gateway: {e}"))),
    }

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<GatewayEvent>();
    let out = ctl.try_clone().map_err(EgressError::Spawn)?;
    let writer = std::thread::spawn(move || {
        let mut out = std::io::BufWriter::new(out);
        while let Some(ev) = rx.blocking_recv() {
            if serde_json::to_writer(&mut out, &ev).is_err() || out.write_all(b"\n").is_err() {
                break;
            }
            if rx.is_empty() && out.flush().is_err() {
                break;
            }
        }
        let _ = out.flush();
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("airlock-egress")
        .enable_all()
        .build()
        .map_err(EgressError::Spawn)?;
    let mut gcfg = GatewayConfig::new(cfg.sandbox, profile.network);
    gcfg.canaries = cfg.canaries;
    gcfg.block_canaries = cfg.block_canaries;
    let gw = Gateway::new(gcfg, Arc::new(DenyAll), tx);
    let answers = Arc::clone(&gw);
    let listeners = cfg.roles.into_iter().zip(fds).collect();
    rt.block_on(async move {
        let serve = tokio::spawn(gw.serve(listeners));
        // The supervisor sends escalation answers, one JSON line each, and
        // closes its side when the sandbox is gone.
        let eof = tokio::task::spawn_blocking(move || {
            for line in BufReader::new(&ctl).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<crate::ask::SupervisorMessage>(&line) {
                    Ok(crate::ask::SupervisorMessage::Answer { id, decision }) => {
                        answers.escalations.answer(id, decision)
                    }
                    Err(e) => tracing::warn!(error = %e, "malformed supervisor message"),
                }
            }
        });
        tokio::select! {
            _ = eof => {}
            r = serve => {
                if let Ok(Err(e)) = r {
                    tracing::error!(error = %e, "gateway failed");
                }
            }
        }
    });
    // Dropping the runtime drops every task: each open flow reports itself.
    rt.shutdown_timeout(Duration::from_millis(200));
    let _ = writer.join();
    Ok(())
}
