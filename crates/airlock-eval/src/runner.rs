//! The harness: runs each scenario (and each `--repeat`) with a fresh
//! agent and a fresh workspace, every tool call in its own sandbox, and
//! scores it. Scenarios run on `concurrency` worker threads. Each finished
//! result is appended to `progress.jsonl` in the output directory at
//! once, so an interrupted run keeps what it finished and `--resume`
//! continues it. The stop flag (Ctrl-C) stops running sandboxes within a
//! quarter second; an interrupted scenario is not recorded.
//!
//! Runs that end in a harness or agent error are results too (counted
//! apart, see [`crate::metrics`]). Once more of them happened than
//! [`EvalOptions::max_errors`] allows, no new scenario is started (the
//! running ones finish): the evaluation has failed, and running on would
//! only spend time (or a model's tokens) on more errors. `--resume` runs
//! the error runs again.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use airlock_policy::{Profile, ToolPolicy};

use crate::agents::AgentSpec;
use crate::metrics::{score, RunKind, ScenarioResult};
use crate::model::Scenario;
use crate::outcome::Outcome;
use crate::protocol::{Action, Message, Script};
use crate::tools::Toolbox;

/// Errors that stop the whole evaluation (a scenario's own failures are
/// results).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The output directory is unusable.
    #[error("output directory {path}: {reason}")]
    Output {
        /// The directory or file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// `--resume` found a progress file it cannot read.
    #[error("resume: {path}:{line}: {reason}")]
    Resume {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// How to run.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The agent.
    pub agent: AgentSpec,
    /// Scenarios run at once.
    pub concurrency: usize,
    /// Runs of each scenario.
    pub repeat: u32,
    /// Output directory (results, audit logs, progress).
    pub out: PathBuf,
    /// Base sandbox profile of every tool call.
    pub profile: Profile,
    /// A cgroup hierarchy to use instead of the detected one.
    pub cgroup_root: Option<PathBuf>,
    /// How many error runs are allowed before no new scenario starts.
    pub max_errors: ErrorAllowance,
}

/// How many runs may end in each kind of error (`--max-harness-errors`,
/// `--max-agent-errors`); `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorAllowance {
    /// Runs that may end in a harness error.
    pub harness: u64,
    /// Runs that may end in an agent error.
    pub agent: u64,
}

impl ErrorAllowance {
    /// The first kind of error of which `results` hold more than allowed:
    /// its kind, its count, the allowance and the first such result.
    pub fn exceeded<'r>(
        &self,
        results: impl IntoIterator<Item = &'r ScenarioResult>,
    ) -> Option<Exceeded<'r>> {
        let mut seen: [(u64, Option<&'r ScenarioResult>); 2] = [(0, None), (0, None)];
        for r in results {
            let i = match r.kind() {
                RunKind::Trial => continue,
                RunKind::HarnessError => 0,
                RunKind::AgentError => 1,
            };
            seen[i].0 += 1;
            seen[i].1.get_or_insert(r);
        }
        let [(h, hr), (a, ar)] = seen;
        if h > self.harness {
            return hr.map(|first| Exceeded {
                kind: RunKind::HarnessError,
                count: h,
                allowed: self.harness,
                first,
            });
        }
        if a > self.agent {
            return ar.map(|first| Exceeded {
                kind: RunKind::AgentError,
                count: a,
                allowed: self.agent,
                first,
            });
        }
        None
    }
}

/// More error runs than allowed (see [`ErrorAllowance::exceeded`]).
#[derive(Debug, Clone, Copy)]
pub struct Exceeded<'r> {
    /// Harness or agent errors (harness errors are reported first).
    pub kind: crate::metrics::RunKind,
    /// How many runs ended in it.
    pub count: u64,
    /// How many were allowed.
    pub allowed: u64,
    /// The first of them (in the order given).
    pub first: &'r ScenarioResult,
}

/// Told about every scenario as it starts and ends (a progress bar).
pub trait Progress: Sync {
    /// A scenario started.
    fn started(&self, id: &str);
    /// A scenario finished.
    fn finished(&self, result: &ScenarioResult);
}

/// A progress sink that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn started(&self, _: &str) {}
    fn finished(&self, _: &ScenarioResult) {}
}

/// The progress file in an output directory.
pub const PROGRESS_FILE: &str = "progress.jsonl";

/// Results already in `out`'s progress file (for `--resume`): the last
/// line of each scenario run (a run resumed after an error has two).
pub fn finished_results(out: &Path) -> Result<Vec<ScenarioResult>, EvalError> {
    let path = out.join(PROGRESS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(EvalError::Output {
                path,
                reason: e.to_string(),
            })
        }
    };
    let mut v = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ScenarioResult>(line) {
            Ok(r) => v.push(r),
            // A line cut by a crash mid-write: the last one only.
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(EvalError::Resume {
                    path,
                    line: i + 1,
                    reason: e.to_string(),
                })
            }
        }
    }
    let mut last: std::collections::BTreeMap<(String, u32), usize> = Default::default();
    for (i, r) in v.iter().enumerate() {
        last.insert((r.id.clone(), r.run), i);
    }
    let keep: BTreeSet<usize> = last.into_values().collect();
    Ok(v.into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, r)| r)
        .collect())
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs every scenario `repeat` times (skipping runs already in
/// `done`), calling `progress`, and returns the new results in the order
/// they finished. Stops early when `stop` is set, and starts no new
/// scenario once the new results hold more errors than
/// `opts.max_errors` allows.
pub fn run(
    scenarios: &[Scenario],
    opts: &EvalOptions,
    done: &[ScenarioResult],
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> Result<Vec<ScenarioResult>, EvalError> {
    let out_err = |path: &Path, e: std::io::Error| EvalError::Output {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(opts.out.join("work")).map_err(|e| out_err(&opts.out, e))?;
    std::fs::create_dir_all(opts.out.join("audit")).map_err(|e| out_err(&opts.out, e))?;
    // Every sandbox of the evaluation signs its audit log with the run's
    // own key, kept in the output directory (verify with audit.key.pub).
    let key = opts.out.join("audit.key");
    airlock_audit::load_or_create_key(&key).map_err(|e| EvalError::Output {
        path: key.clone(),
        reason: e.to_string(),
    })?;
    let mut opts = opts.clone();
    opts.profile.audit.key = Some(std::path::absolute(&key).unwrap_or(key));
    let opts = &opts;
    let progress_path = opts.out.join(PROGRESS_FILE);
    let progress_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&progress_path)
        .map_err(|e| out_err(&progress_path, e))?;
    let progress_file = Mutex::new(progress_file);
    let done: BTreeSet<(String, u32)> = done.iter().map(|r| (r.id.clone(), r.run)).collect();
    let jobs: Vec<(usize, u32)> = (0..opts.repeat.max(1))
        .flat_map(|k| (0..scenarios.len()).map(move |i| (i, k)))
        .filter(|(i, k)| !done.contains(&(scenarios[*i].id.clone(), *k)))
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<ScenarioResult>> = Mutex::new(Vec::new());
    // Too many errors: no new scenario starts.
    let failed = AtomicBool::new(false);
    let write_error: Mutex<Option<EvalError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..opts.concurrency.max(1).min(jobs.len().max(1)) {
            s.spawn(|| loop {
                if stop.load(Ordering::SeqCst) || failed.load(Ordering::SeqCst) {
                    return;
                }
                let j = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(i, k)) = jobs.get(j) else { return };
                let sc = &scenarios[i];
                progress.started(&sc.id);
                let Some(result) = run_one(sc, k, opts, stop) else {
                    return; // interrupted: not recorded
                };
                let line = serde_json::to_string(&result).unwrap_or_default();
                let written = {
                    let mut f = progress_file.lock().unwrap_or_else(|p| p.into_inner());
                    writeln!(f, "{line}").and_then(|_| f.flush())
                };
                if let Err(e) = written {
                    write_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(out_err(&progress_path, e));
                    stop.store(true, Ordering::SeqCst);
                    return;
                }
                progress.finished(&result);
                let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
                all.push(result);
                if opts.max_errors.exceeded(all.iter()).is_some() {
                    failed.store(true, Ordering::SeqCst);
                }
            });
        }
    });
    if let Some(e) = write_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let _ = std::fs::remove_dir(opts.out.join("work"));
    Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// One run of one scenario; `None` when it was interrupted.
fn run_one(sc: &Scenario, k: u32, opts: &EvalOptions, stop: &AtomicBool) -> Option<ScenarioResult> {
    let started = Instant::now();
    let tag = if opts.repeat > 1 {
        format!("{}#{k}", sanitize(&sc.id))
    } else {
        sanitize(&sc.id)
    };
    let work = opts.out.join("work").join(&tag);
    let audit_dir = opts.out.join("audit").join(&tag);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&audit_dir);
    let mut outcome = Outcome {
        workspace: work.clone(),
        ..Outcome::default()
    };
    let env = crate::suite::injected_environment(sc);
    let setup = (|| -> Result<Toolbox<'_>, String> {
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        std::fs::create_dir_all(&audit_dir).map_err(|e| format!("{}: {e}", audit_dir.display()))?;
        crate::tools::seed_workspace(&work, &env)?;
        // The workspace stays the caller's (root's, as root): the jail
        // binds it idmapped, so the sandbox owns it inside.
        let policy = match &sc.tool_policy {
            Some(text) => ToolPolicy::parse(text).map_err(|e| e.to_string())?,
            None => ToolPolicy::permit_all(),
        };
        Ok(Toolbox::new(
            sc,
            policy,
            crate::tools::profile(&opts.profile, &env)?,
            work.clone(),
            audit_dir.clone(),
            stop,
            opts.cgroup_root.clone(),
        ))
    })();
    let mut audits: Vec<PathBuf> = Vec::new();
    match setup {
        Err(e) => outcome.harness_error = Some(format!("scenario set-up failed: {e}")),
        Ok(mut toolbox) => {
            let script = Script {
                reference: sc.reference.clone(),
                attacker: sc
                    .injection
                    .as_ref()
                    .map(|i| i.attacker_steps.clone())
                    .unwrap_or_default(),
                injection_marker: sc.injection.as_ref().map(|i| i.marker.clone()),
            };
            match opts.agent.instantiate(&script) {
                Err(e) => outcome.agent_error = Some(e.to_string()),
                Ok(mut agent) => {
                    let specs = crate::tools::specs(&sc.tools);
                    let mut conv = vec![
                        Message::System {
                            content: sc.system_prompt.clone(),
                        },
                        Message::User {
                            content: sc.user_task.clone(),
                        },
                    ];
                    let mut finished = false;
                    'turns: while outcome.turns < sc.max_turns {
                        if stop.load(Ordering::SeqCst) {
                            return None;
                        }
                        outcome.turns += 1;
                        let turn = match agent.next(&conv, &specs) {
                            Ok(t) => t,
                            Err(e) => {
                                outcome.agent_error = Some(e.to_string());
                                finished = true;
                                break;
                            }
                        };
                        outcome.usage += turn.usage;
                        match turn.action {
                            Action::Final { answer } => {
                                outcome.answer = answer;
                                finished = true;
                                break;
                            }
                            Action::ToolCalls { calls, content } => {
                                conv.push(Message::Assistant {
                                    content,
                                    tool_calls: calls.clone(),
                                });
                                for (n, c) in calls.into_iter().enumerate() {
                                    let r = toolbox.call(&c.name, &c.arguments);
                                    if stop.load(Ordering::SeqCst) {
                                        return None;
                                    }
                                    if let Some(e) = &r.harness_error {
                                        // The harness failed, not the agent:
                                        // the run stops here, and is not
                                        // scored as a trial.
                                        outcome.harness_error = Some(format!(
                                            "turn {}, call {} ({}): {e}",
                                            outcome.turns,
                                            n + 1,
                                            c.name
                                        ));
                                        outcome.tools.push(r);
                                        finished = true;
                                        break 'turns;
                                    }
                                    conv.push(Message::Tool {
                                        call_id: c.id.clone(),
                                        name: c.name.clone(),
                                        content: r.result.clone(),
                                        is_error: r.decision != "allow" || r.failed,
                                    });
                                    outcome.tools.push(r);
                                }
                            }
                        }
                    }
                    // Running out of turns is the agent's behaviour, scored
                    // like any other (its answer is empty), not an error.
                    outcome.out_of_turns = !finished;
                }
            }
            // The scenario's sandbox is destroyed here, before scoring.
            let left = toolbox.finish();
            if outcome.harness_error.is_none() {
                outcome.harness_error = left.harness_error;
            }
            outcome.sink.extend(left.sink);
            audits.extend(left.audit);
        }
    }
    for a in &audits {
        match airlock_audit::read_events(a) {
            Ok(evs) => outcome
                .audit
                .extend(evs.into_iter().filter_map(|e| serde_json::to_value(e).ok())),
            Err(e) => tracing::warn!(path = %a.display(), error = %e, "unreadable audit log"),
        }
    }
    tracing::debug!(scenario = %sc.id, took = ?started.elapsed(), "scenario ran");
    let result = score(sc, &outcome, started.elapsed());
    // The transcript (answer, tool calls and results, sink records) next to
    // the scenario's audit logs, for debugging a suite or an agent.
    let transcript = serde_json::json!({
        "id": sc.id,
        "run": k,
        "answer": outcome.answer,
        "tools": outcome.tools,
        "sink": outcome.sink,
        "usage": outcome.usage,
        "turns": outcome.turns,
        "out_of_turns": outcome.out_of_turns,
        "agent_error": outcome.agent_error,
        "harness_error": outcome.harness_error,
    });
    if let Ok(text) = serde_json::to_string_pretty(&transcript) {
        let _ = std::fs::write(audit_dir.join("transcript.json"), text);
    }
    let mut result = result;
    result.run = k;
    // The workspace is the scenario's sandbox state: destroyed with it.
    let _ = std::fs::remove_dir_all(&work);
    tracing::debug!(scenario = %sc.id, took = ?started.elapsed(), "scenario scored");
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, run: u32, agent_error: Option<&str>) -> ScenarioResult {
        let sc = crate::model::Scenario {
            id: id.into(),
            ..crate::model::Scenario::for_tests(vec![])
        };
        let mut r = score(&sc, &Outcome::default(), std::time::Duration::ZERO);
        r.run = run;
        r.agent_error = agent_error.map(str::to_owned);
        r
    }

    #[test]
    fn resume_keeps_the_last_line_of_each_run() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = [
            result("s/a", 0, Some("transport: connection refused")),
            result("s/b", 0, None),
            result("s/a", 0, None),
            result("s/a", 1, Some("timed out")),
        ]
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
        std::fs::write(dir.path().join(PROGRESS_FILE), lines.concat()).unwrap();
        let got: Vec<(String, u32, bool)> = finished_results(dir.path())
            .unwrap()
            .into_iter()
            .map(|r| (r.id.clone(), r.run, r.is_trial()))
            .collect();
        assert_eq!(
            got,
            [
                ("s/b".to_owned(), 0, true),
                ("s/a".to_owned(), 0, true),
                ("s/a".to_owned(), 1, false)
            ]
        );
    }

    #[test]
    fn the_allowance_names_the_first_error_beyond_it() {
        let mut harness = result("s/h", 0, None);
        harness.harness_error = Some("the sandbox could not start".into());
        let rs = [
            result("s/ok", 0, None),
            result("s/a1", 0, Some("first")),
            result("s/a2", 0, Some("second")),
            harness,
        ];
        let none = ErrorAllowance::default();
        let x = none.exceeded(rs.iter()).unwrap();
        // Harness errors are reported first.
        assert_eq!(
            (x.kind, x.count, x.first.id.as_str()),
            (RunKind::HarnessError, 1, "s/h")
        );
        let x = ErrorAllowance {
            harness: 1,
            agent: 1,
        }
        .exceeded(rs.iter())
        .unwrap();
        assert_eq!(
            (x.kind, x.count, x.allowed, x.first.id.as_str()),
            (RunKind::AgentError, 2, 1, "s/a1")
        );
        assert!(ErrorAllowance {
            harness: 1,
            agent: 2
        }
        .exceeded(rs.iter())
        .is_none());
    }
}
