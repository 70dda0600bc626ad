//! Evidence of a run: the audit log, canary planting and detection, exec
//! telemetry, escalation prompts and copy-out. [`SessionSink`] sits between
//! the jail (and the gateway) and the caller's output sink; every
//! observation becomes an audit event (when the run is audited) and a
//! summary in the [`EvidenceReport`].

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use airlock_audit::AuditWriter;
use airlock_canary::{CanarySet, Scanner, StreamScanner};
use airlock_egress::{
    AnswerHandle, CanaryFlow, Decision, GatewayEvent, GatewayProcess, ProcessConfig,
};
use airlock_jail::{CgroupReport, JailEvent, LandlockReport, OutputSink};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::approve::{ApprovalRequest, Approver};

/// A canary file or variable as planted (never the value).
#[derive(Debug, Clone, Serialize)]
pub struct PlantedCanary {
    /// The canary's id.
    pub id: String,
    /// What it imitates.
    pub kind: String,
    /// Where: a path inside the sandbox, or `env:NAME`.
    pub places: Vec<String>,
    /// SHA-256 of the value (hex), to match it later without storing it.
    pub value_sha256: String,
}

/// A planted file opened inside the sandbox.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryTouch {
    /// The file inside the sandbox.
    pub path: String,
    /// The canaries in it.
    pub canaries: Vec<String>,
    /// Opens seen.
    pub opens: u64,
}

/// A canary value in the run's output or a copied-out file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CanaryLeak {
    /// The canary's id.
    pub canary: String,
    /// How it was encoded.
    pub encoding: String,
    /// `stdout`, `stderr`, or `copy_out:PATH`.
    pub place: String,
}

/// An escalation and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct EscalationRecord {
    /// The request id.
    pub id: u64,
    /// Host name.
    pub name: String,
    /// Port.
    pub port: u16,
    /// `granted` or `denied`.
    pub outcome: String,
    /// Who decided.
    pub approver: String,
    /// Their reason.
    pub reason: String,
    /// Grant lifetime in seconds (granted only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<f64>,
    /// Whether the grant expired during the run.
    pub expired: bool,
}

/// A file copied out of the sandbox.
#[derive(Debug, Clone, Serialize)]
pub struct CopyOutRecord {
    /// Path relative to the workspace.
    pub path: String,
    /// Where it was written on the host (absent when refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest: Option<PathBuf>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex) of the bytes written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why it was not copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// Canary outcomes of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CanaryReport {
    /// What was planted.
    pub planted: Vec<PlantedCanary>,
    /// Planted files whose planting was skipped, and why.
    pub skipped: Vec<String>,
    /// Planted files opened.
    pub touched: Vec<CanaryTouch>,
    /// Canary values seen leaving through the gateway.
    pub exfiltration: Vec<CanaryFlow>,
    /// Canary values in output or copy-outs.
    pub leaked: Vec<CanaryLeak>,
}

impl CanaryReport {
    /// Whether any canary fired (touched, exfiltrated or leaked).
    pub fn fired(&self) -> bool {
        !self.touched.is_empty() || !self.exfiltration.is_empty() || !self.leaked.is_empty()
    }
}

/// What the evidence layer saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvidenceReport {
    /// Canaries.
    pub canaries: CanaryReport,
    /// Execs seen (when exec telemetry was on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execs: Option<u64>,
    /// Escalations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<EscalationRecord>,
    /// Copy-out results.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copy_out: Vec<CopyOutRecord>,
    /// The audit log, when the run was audited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSummary>,
}

/// Where the audit log went.
#[derive(Debug, Clone, Serialize)]
pub struct AuditSummary {
    /// The file.
    pub path: PathBuf,
    /// Events written (the head not counted).
    pub events: u64,
    /// Hash of the last event.
    pub last_hash: String,
    /// Hex public key that signed the head.
    pub public_key: String,
}

/// Shared between the jail's thread, the gateway reader and the approver.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) audit: Mutex<Option<AuditWriter>>,
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
    pub(crate) evidence: Mutex<EvidenceReport>,
    execs: AtomicU64,
    net: Mutex<NetLog>,
}

/// Most egress events a live sandbox keeps for [`crate::Sandbox::network_events`];
/// later ones are counted (the audit log and the close report have them all).
pub(crate) const MAX_NET_EVENTS: usize = 10_000;

/// The gateway's decisions and caps as they arrive, for callers that ask
/// what happened since their last look.
#[derive(Debug, Default)]
struct NetLog {
    events: Vec<NetworkEvent>,
    dropped: u64,
}

/// One egress observation, as [`crate::Sandbox::network_events`] returns it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NetworkEvent {
    /// A connection or name lookup was decided.
    Decision(airlock_egress::FlowRecord),
    /// A cap of the profile's network section was reached.
    Limit {
        /// Which cap.
        limit: airlock_egress::EgressLimit,
    },
}

impl Shared {
    pub(crate) fn new(audit: Option<AuditWriter>) -> Arc<Self> {
        Arc::new(Self {
            audit: Mutex::new(audit),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            evidence: Mutex::default(),
            execs: AtomicU64::new(0),
            net: Mutex::default(),
        })
    }

    fn note_net(&self, ev: NetworkEvent) {
        let mut n = self.net.lock().unwrap_or_else(|p| p.into_inner());
        if n.events.len() < MAX_NET_EVENTS {
            n.events.push(ev);
        } else {
            n.dropped += 1;
        }
    }

    /// The egress events from index `from` on, the index to ask from
    /// next, and how many were dropped past [`MAX_NET_EVENTS`] so far.
    pub(crate) fn net_since(&self, from: usize) -> (Vec<NetworkEvent>, usize, u64) {
        let n = self.net.lock().unwrap_or_else(|p| p.into_inner());
        let from = from.min(n.events.len());
        (n.events[from..].to_vec(), n.events.len(), n.dropped)
    }

    /// Appends an event to the audit log (when there is one). A failed
    /// write is remembered and stops the run.
    pub(crate) fn record(&self, kind: &str, data: serde_json::Value) {
        let guard = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = guard.as_ref() else { return };
        if let Err(e) = w.append(kind, data) {
            self.failed.store(true, Ordering::SeqCst);
            let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert_with(|| format!("writing the audit log: {e}"));
        }
    }

    /// Waits until every event recorded so far is in the audit file, so a
    /// reader of the file sees them.
    pub(crate) fn flush_audit(&self) -> Result<(), String> {
        let guard = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(w) => w.flush().map_err(|e| format!("writing the audit log: {e}")),
            None => Ok(()),
        }
    }

    pub(crate) fn note_failure(&self, message: String) {
        self.failed.store(true, Ordering::SeqCst);
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(message);
    }

    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn evidence(&self) -> std::sync::MutexGuard<'_, EvidenceReport> {
        self.evidence.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn execs(&self) -> u64 {
        self.execs.load(Ordering::Relaxed)
    }
}

/// Lowercase hex of `bytes` (digests in events and reports).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The gateway event observer: audit events, evidence, and escalation
/// requests handed to the approver thread.
pub(crate) fn gateway_observer(
    shared: Arc<Shared>,
    asks: mpsc::Sender<airlock_egress::EscalationAsk>,
) -> airlock_egress::EventObserver {
    Box::new(move |ev: &GatewayEvent| match ev {
        GatewayEvent::Flow(f) => {
            shared.record("net.decision", to_json(f));
            shared.note_net(NetworkEvent::Decision(f.clone()));
        }
        GatewayEvent::Sink(s) => shared.record(
            "net.mock_request",
            json!({"mock": s.mock, "host": s.host, "method": s.method, "path": s.path,
                   "body_len": s.body_len}),
        ),
        GatewayEvent::Limit { limit } => {
            shared.record("limit.hit", json!({"layer": "egress", "limit": limit}));
            shared.note_net(NetworkEvent::Limit { limit: *limit });
        }
        GatewayEvent::Canary(c) => {
            shared.record("canary.exfiltration", to_json(c));
            shared.evidence().canaries.exfiltration.push(c.clone());
        }
        GatewayEvent::EscalationRequest(a) => {
            shared.record("escalation.request", to_json(a));
            let _ = asks.send(a.clone());
        }
        GatewayEvent::GrantExpired { id, name, port, .. } => {
            shared.record(
                "escalation.expired",
                json!({"id": id, "name": name, "port": port}),
            );
            if let Some(r) = shared
                .evidence()
                .escalations
                .iter_mut()
                .find(|r| r.id == *id)
            {
                r.expired = true;
            }
        }
    })
}

/// Answers escalation requests one at a time until the gateway is gone.
pub(crate) fn approver_thread(
    shared: Arc<Shared>,
    asks: mpsc::Receiver<airlock_egress::EscalationAsk>,
    answers: Arc<Mutex<Option<AnswerHandle>>>,
    approver: Option<Arc<dyn Approver>>,
    max_ttl: Duration,
    timeout: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for ask in asks {
            let req = ApprovalRequest::new(&ask, max_ttl, timeout);
            let decision = match &approver {
                Some(a) => a.decide(&req, timeout),
                None => Decision::Deny {
                    approver: "airlock".into(),
                    reason: "no approver is configured (use --approver CMD, or run on a terminal)"
                        .into(),
                },
            };
            let record = match &decision {
                Decision::Grant {
                    ttl_ms,
                    approver,
                    reason,
                } => {
                    let ttl = Duration::from_millis(*ttl_ms).min(max_ttl).as_secs_f64();
                    shared.record(
                        "escalation.grant",
                        json!({"id": ask.id, "name": ask.name, "port": ask.port,
                               "approver": approver, "reason": reason, "ttl_secs": ttl}),
                    );
                    EscalationRecord {
                        id: ask.id,
                        name: ask.name.clone(),
                        port: ask.port,
                        outcome: "granted".into(),
                        approver: approver.clone(),
                        reason: reason.clone(),
                        ttl_secs: Some(ttl),
                        expired: false,
                    }
                }
                Decision::Deny { approver, reason } => {
                    shared.record(
                        "escalation.denial",
                        json!({"id": ask.id, "name": ask.name, "port": ask.port,
                               "approver": approver, "reason": reason}),
                    );
                    EscalationRecord {
                        id: ask.id,
                        name: ask.name.clone(),
                        port: ask.port,
                        outcome: "denied".into(),
                        approver: approver.clone(),
                        reason: reason.clone(),
                        ttl_secs: None,
                        expired: false,
                    }
                }
            };
            shared.evidence().escalations.push(record);
            let handle = answers.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(h) = handle {
                if let Err(e) = h.answer(ask.id, decision) {
                    tracing::warn!(error = %e, "cannot answer the gateway");
                }
            }
        }
    })
}

/// Where copy-out files go.
#[derive(Debug, Clone)]
pub(crate) struct CopyOutTarget {
    pub(crate) dir: PathBuf,
    pub(crate) max: u64,
}

/// Between the jail and the caller's sink: the caller's output, and the
/// evidence.
pub(crate) struct SessionSink<'a> {
    pub(crate) inner: &'a mut dyn OutputSink,
    pub(crate) ev: EvidenceSink,
}

/// What a sandbox's observations become: audit events, evidence, the
/// egress gateway it starts, canary scans and copy-out.
pub(crate) struct EvidenceSink {
    pub(crate) shared: Arc<Shared>,
    pub(crate) gateway_cfg: Option<ProcessConfig>,
    pub(crate) gateway: Arc<Mutex<Option<GatewayProcess>>>,
    pub(crate) observer: Option<airlock_egress::EventObserver>,
    pub(crate) answers: Arc<Mutex<Option<AnswerHandle>>>,
    /// The run's canaries; the scanner is built on first use (building
    /// its automaton costs milliseconds a run without output never pays).
    pub(crate) canaries: Vec<airlock_canary::Canary>,
    pub(crate) scanner: Option<Scanner>,
    pub(crate) out_scan: Option<(StreamScanner, StreamScanner)>,
    /// Planted path inside the sandbox → canary ids.
    pub(crate) watched: Vec<(String, Vec<String>)>,
    pub(crate) copy_out: Option<CopyOutTarget>,
}

impl EvidenceSink {
    pub(crate) fn scanner(&mut self) -> Option<&Scanner> {
        if self.scanner.is_none() && !self.canaries.is_empty() {
            self.scanner = Some(Scanner::new(&self.canaries));
        }
        self.scanner.as_ref()
    }

    pub(crate) fn out_scan(&mut self) -> Option<&mut (StreamScanner, StreamScanner)> {
        if self.out_scan.is_none() {
            let s = self.scanner()?.clone();
            self.out_scan = Some((s.stream(), s.stream()));
        }
        self.out_scan.as_mut()
    }

    pub(crate) fn leak(&self, hits: Vec<airlock_canary::Hit>, place: &str) {
        for h in hits {
            let leak = CanaryLeak {
                canary: h.canary_id.clone(),
                encoding: airlock_egress::hit_encoding(&h),
                place: place.to_owned(),
            };
            let mut ev = self.shared.evidence();
            if ev.canaries.leaked.contains(&leak) {
                continue;
            }
            ev.canaries.leaked.push(leak.clone());
            drop(ev);
            self.shared.record("canary.leaked", to_json(&leak));
        }
    }

    /// Copies one file out, hashing it and scanning all of it for
    /// canaries on the way. Returns (destination, size, SHA-256, hits).
    fn scanner_stream(&self) -> Option<StreamScanner> {
        self.scanner.as_ref().map(|s| s.stream())
    }

    fn write_copy(
        &self,
        target: &CopyOutTarget,
        path: &str,
        mut file: std::fs::File,
    ) -> Result<(PathBuf, u64, String, Vec<airlock_canary::Hit>), String> {
        let dest = target.dir.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let mut scan = self.scanner_stream();
        let mut hits = Vec::new();
        let result = (|| -> Result<(), String> {
            loop {
                let n = file.read(&mut buf).map_err(|e| format!("reading: {e}"))?;
                if n == 0 {
                    return Ok(());
                }
                total += n as u64;
                if total > target.max {
                    return Err(format!(
                        "grew past the copy-out cap of {} bytes",
                        target.max
                    ));
                }
                hasher.update(&buf[..n]);
                if let Some(s) = scan.as_mut() {
                    hits.extend(s.push(&buf[..n]));
                }
                out.write_all(&buf[..n])
                    .map_err(|e| format!("{}: {e}", dest.display()))?;
            }
        })();
        if let Err(e) = result.and_then(|()| out.sync_all().map_err(|e| e.to_string())) {
            drop(out);
            let _ = std::fs::remove_file(&dest);
            return Err(e);
        }
        Ok((dest, total, hex(&hasher.finalize()), hits))
    }
}

impl EvidenceSink {
    pub(crate) fn network_listeners(&mut self, fds: Vec<OwnedFd>) -> Result<(), String> {
        let Some(cfg) = self.gateway_cfg.as_ref() else {
            return Err("no gateway is configured for this sandbox".into());
        };
        let exe = Path::new("/proc/self/exe");
        let gw = GatewayProcess::spawn(exe, cfg, fds, crate::MAX_EVENTS, self.observer.take())
            .map_err(|e| e.to_string())?;
        tracing::debug!(pid = gw.pid(), "egress gateway started");
        *self.answers.lock().unwrap_or_else(|p| p.into_inner()) = Some(gw.answers());
        *self.gateway.lock().unwrap_or_else(|p| p.into_inner()) = Some(gw);
        Ok(())
    }

    pub(crate) fn event(&mut self, event: JailEvent) {
        match event {
            JailEvent::Exec {
                pid,
                ppid,
                path,
                argv,
                truncated,
                exists,
            } => {
                if exists {
                    self.shared.execs.fetch_add(1, Ordering::Relaxed);
                }
                self.shared.record(
                    if exists {
                        "process.exec"
                    } else {
                        "process.exec_attempt"
                    },
                    json!({"pid": pid, "ppid": ppid, "path": path, "argv": argv,
                           "truncated": truncated}),
                );
            }
            JailEvent::FileOpened { path } => {
                let canaries = self
                    .watched
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, ids)| ids.clone())
                    .unwrap_or_default();
                self.shared.record(
                    "canary.touched",
                    json!({"path": path, "canaries": canaries, "how": "open (inotify)"}),
                );
                let mut ev = self.shared.evidence();
                match ev.canaries.touched.iter_mut().find(|t| t.path == path) {
                    Some(t) => t.opens += 1,
                    None => ev.canaries.touched.push(CanaryTouch {
                        path,
                        canaries,
                        opens: 1,
                    }),
                }
            }
            JailEvent::FileOpensDropped { path, count } => {
                self.shared
                    .record("canary.touched", json!({"path": path, "more_opens": count}));
                if let Some(t) = self
                    .shared
                    .evidence()
                    .canaries
                    .touched
                    .iter_mut()
                    .find(|t| t.path == path)
                {
                    t.opens += count;
                }
            }
        }
    }

    pub(crate) fn copy_out(&mut self, path: &str, size: u64, file: std::fs::File) {
        let Some(target) = self.copy_out.clone() else {
            return;
        };
        let _ = self.scanner();
        let record = match self.write_copy(&target, path, file) {
            Ok((dest, size, sha, hits)) => {
                self.leak(hits, &format!("copy_out:{path}"));
                self.shared.record(
                    "copy_out",
                    json!({"path": path, "dest": dest, "size": size, "sha256": sha}),
                );
                CopyOutRecord {
                    path: path.to_owned(),
                    dest: Some(dest),
                    size,
                    sha256: Some(sha),
                    refused: None,
                }
            }
            Err(reason) => {
                self.shared.record(
                    "copy_out.refused",
                    json!({"path": path, "size": size, "reason": reason}),
                );
                CopyOutRecord {
                    path: path.to_owned(),
                    dest: None,
                    size,
                    sha256: None,
                    refused: Some(reason),
                }
            }
        };
        self.shared.evidence().copy_out.push(record);
    }

    pub(crate) fn copy_out_refused(&mut self, path: &str, reason: &str) {
        self.shared
            .record("copy_out.refused", json!({"path": path, "reason": reason}));
        self.shared.evidence().copy_out.push(CopyOutRecord {
            path: path.to_owned(),
            dest: None,
            size: 0,
            sha256: None,
            refused: Some(reason.to_owned()),
        });
    }

    pub(crate) fn started(
        &mut self,
        landlock: &LandlockReport,
        cgroup: &CgroupReport,
        host_uid: u32,
    ) {
        self.shared.record(
            "sandbox.started",
            json!({"landlock": to_json(landlock), "cgroup": to_json(cgroup),
                   "host_uid": host_uid}),
        );
    }
}

impl OutputSink for SessionSink<'_> {
    fn stdout(&mut self, data: &[u8]) {
        if let Some((s, _)) = self.ev.out_scan() {
            let hits = s.push(data);
            self.ev.leak(hits, "stdout");
        }
        self.inner.stdout(data)
    }

    fn stderr(&mut self, data: &[u8]) {
        if let Some((_, s)) = self.ev.out_scan() {
            let hits = s.push(data);
            self.ev.leak(hits, "stderr");
        }
        self.inner.stderr(data)
    }

    fn stdin_pipe(&mut self, writer: OwnedFd) {
        self.inner.stdin_pipe(writer)
    }

    fn notice(&mut self, notice: airlock_jail::Notice) {
        self.inner.notice(notice)
    }

    fn network_listeners(&mut self, fds: Vec<OwnedFd>) -> Result<(), String> {
        self.ev.network_listeners(fds)
    }

    fn event(&mut self, event: JailEvent) {
        self.ev.event(event)
    }

    fn copy_out(&mut self, path: &str, size: u64, file: std::fs::File) {
        self.ev.copy_out(path, size, file)
    }

    fn copy_out_refused(&mut self, path: &str, reason: &str) {
        self.ev.copy_out_refused(path, reason)
    }

    fn started(&mut self, landlock: &LandlockReport, cgroup: &CgroupReport, host_uid: u32) {
        self.ev.started(landlock, cgroup, host_uid)
    }

    fn should_abort(&mut self) -> bool {
        self.ev.shared.failed.load(Ordering::SeqCst) || self.inner.should_abort()
    }
}

impl airlock_jail::SandboxObserver for EvidenceSink {
    fn network_listeners(&mut self, fds: Vec<OwnedFd>) -> Result<(), String> {
        EvidenceSink::network_listeners(self, fds)
    }

    fn event(&mut self, event: JailEvent) {
        EvidenceSink::event(self, event)
    }

    fn copy_out(&mut self, path: &str, size: u64, file: std::fs::File) {
        EvidenceSink::copy_out(self, path, size, file)
    }

    fn copy_out_refused(&mut self, path: &str, reason: &str) {
        EvidenceSink::copy_out_refused(self, path, reason)
    }
}

/// Describes what was planted (ids, kinds, places, value digests).
pub(crate) fn planted(set: &CanarySet, places: &[(String, Vec<String>)]) -> Vec<PlantedCanary> {
    set.canaries
        .iter()
        .map(|c| {
            let mut where_: Vec<String> = places
                .iter()
                .filter(|(_, ids)| ids.iter().any(|i| i == c.id()))
                .map(|(p, _)| p.clone())
                .collect();
            for (k, v) in &set.env {
                if v == c.value() {
                    where_.push(format!("env:{k}"));
                }
            }
            PlantedCanary {
                id: c.id().to_owned(),
                kind: c.kind().to_string(),
                places: where_,
                value_sha256: hex(&Sha256::digest(c.value().as_bytes())),
            }
        })
        .collect()
}
