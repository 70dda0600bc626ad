//! Escalation: with `on_deny = "ask"`, a connection to a name no rule
//! allows is paused while the supervisor asks an approver. A grant covers
//! one name and port for a limited time and expires by itself; a denial,
//! or no answer within `ask_timeout`, refuses the connection.
//!
//! The gateway sends a [`GatewayEvent::EscalationRequest`]; the supervisor
//! answers with a [`SupervisorMessage::Answer`] line on the control
//! socket. Concurrent connections to the same name and port share one
//! request. The gateway reports each expiry
//! ([`GatewayEvent::GrantExpired`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::flow::{now_ms, FlowProto, GatewayEvent};
use crate::gateway::Gateway;

/// An approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Allow this name and port for `ttl_ms` milliseconds (cut to the
    /// profile's `max_grant_ttl`).
    Grant {
        /// Lifetime of the grant.
        ttl_ms: u64,
        /// Who approved.
        approver: String,
        /// Their stated reason.
        reason: String,
    },
    /// Refuse.
    Deny {
        /// Who refused.
        approver: String,
        /// Their stated reason.
        reason: String,
    },
}

/// What the supervisor sends the gateway process after the set-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum SupervisorMessage {
    /// The answer to escalation request `id`.
    Answer {
        /// The request's id.
        id: u64,
        /// The decision.
        decision: Decision,
    },
}

/// A request for more network authority, as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationAsk {
    /// Unique within the run.
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The sandbox asking.
    pub sandbox: String,
    /// How it tried to connect.
    pub proto: FlowProto,
    /// The name (normalized).
    pub name: String,
    /// The port.
    pub port: u16,
    /// Why it was denied without approval.
    pub why: String,
}

#[derive(Debug)]
struct Grant {
    id: u64,
    name: String,
    port: u16,
    until: Instant,
    approver: String,
}

/// Connections waiting on a request, by name and port: the request id and
/// every waiter.
type Waiting = HashMap<(String, u16), (u64, Vec<oneshot::Sender<Decision>>)>;

/// Outstanding requests and live grants of one gateway.
#[derive(Debug, Default)]
pub(crate) struct Escalations {
    next: AtomicU64,
    waiting: Mutex<Waiting>,
    by_id: Mutex<HashMap<u64, (String, u16)>>,
    grants: Mutex<Vec<Grant>>,
}

impl Escalations {
    /// Delivers the supervisor's answer to every connection waiting on it.
    pub(crate) fn answer(&self, id: u64, decision: Decision) {
        let Some(key) = self.by_id.lock().ok().and_then(|mut m| m.remove(&id)) else {
            return;
        };
        let waiters = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&key))
            .map(|(_, v)| v)
            .unwrap_or_default();
        for w in waiters {
            let _ = w.send(decision.clone());
        }
    }

    fn live_grant(&self, name: &str, port: u16) -> Option<(u64, String, Duration)> {
        let now = Instant::now();
        let g = self.grants.lock().ok()?;
        g.iter()
            .find(|g| g.name == name && g.port == port && g.until > now)
            .map(|g| (g.id, g.approver.clone(), g.until - now))
    }
}

impl Gateway {
    /// Asks about `name:port`. `Ok` carries the allowing reason, `Err` the
    /// refusal.
    pub(crate) async fn ask(
        self: &std::sync::Arc<Self>,
        proto: FlowProto,
        name: &str,
        port: u16,
    ) -> Result<String, String> {
        let esc = &self.escalations;
        if let Some((id, approver, left)) = esc.live_grant(name, port) {
            return Ok(format!(
                "granted by {approver} (escalation {id}, {}s left)",
                left.as_secs()
            ));
        }
        let why = format!("no allow rule matches {name}:{port}");
        let (tx, rx) = oneshot::channel();
        let key = (name.to_owned(), port);
        let new_id = {
            let Ok(mut w) = esc.waiting.lock() else {
                return Err(why);
            };
            match w.get_mut(&key) {
                Some((_, list)) => {
                    list.push(tx);
                    None
                }
                None => {
                    let id = esc.next.fetch_add(1, Ordering::Relaxed) + 1;
                    w.insert(key.clone(), (id, vec![tx]));
                    if let Ok(mut b) = esc.by_id.lock() {
                        b.insert(id, key.clone());
                    }
                    Some(id)
                }
            }
        };
        if let Some(id) = new_id {
            let _ = self
                .events
                .send(GatewayEvent::EscalationRequest(EscalationAsk {
                    id,
                    time_ms: now_ms(),
                    sandbox: self.cfg.sandbox.clone(),
                    proto,
                    name: name.to_owned(),
                    port,
                    why: why.clone(),
                }));
        }
        let limit = self.cfg.policy.ask_timeout;
        let decision = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(d)) => d,
            _ => {
                // No answer in time: forget the request (a late answer finds
                // nothing) and deny.
                if let Some(id) = new_id {
                    if let Ok(mut b) = esc.by_id.lock() {
                        b.remove(&id);
                    }
                    if let Ok(mut w) = esc.waiting.lock() {
                        w.remove(&key);
                    }
                }
                return Err(format!(
                    "{why}; no approver answered within {}s",
                    limit.as_secs()
                ));
            }
        };
        match decision {
            Decision::Deny { approver, reason } => {
                Err(format!("{why}; denied by {approver}: {reason}"))
            }
            Decision::Grant {
                ttl_ms, approver, ..
            } => {
                let ttl = Duration::from_millis(ttl_ms).min(self.cfg.policy.max_grant_ttl);
                if let Some(id) = new_id {
                    self.record_grant(id, name, port, ttl, &approver);
                }
                Ok(format!("granted by {approver} for {}s", ttl.as_secs_f64()))
            }
        }
    }

    fn record_grant(
        self: &std::sync::Arc<Self>,
        id: u64,
        name: &str,
        port: u16,
        ttl: Duration,
        approver: &str,
    ) {
        if let Ok(mut g) = self.escalations.grants.lock() {
            g.push(Grant {
                id,
                name: name.to_owned(),
                port,
                until: Instant::now() + ttl,
                approver: approver.to_owned(),
            });
        }
        let gw = std::sync::Arc::clone(self);
        let (name, port) = (name.to_owned(), port);
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            if let Ok(mut g) = gw.escalations.grants.lock() {
                g.retain(|x| x.id != id);
            }
            let _ = gw.events.send(GatewayEvent::GrantExpired {
                id,
                name,
                port,
                time_ms: now_ms(),
            });
        });
    }
}
