//! `airlock eval`: run an agent against suites inside sandboxes; write
//! results.json, junit.xml, report.md and report.html; gate on thresholds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use airlock_eval::agents::AgentSpec;
use airlock_eval::gate::{self, Gate};
use airlock_eval::metrics::RunKind;
use airlock_eval::metrics::ScenarioResult;
use airlock_eval::report::{self, Results, RunInfo};
use airlock_eval::runner::{self, ErrorAllowance, EvalOptions, Progress};
use anyhow::{bail, Context};

/// Exit status when a gate fails.
pub(crate) const EXIT_GATE: u8 = 1;
/// Exit status when the run was interrupted (results so far are kept).
pub(crate) const EXIT_INTERRUPTED: u8 = 130;
/// Exit status when more runs ended in a harness or agent error than
/// allowed (the same as airlock's other failures).
pub(crate) const EXIT_ERRORS: u8 = crate::EXIT_FAILURE;

/// Run an agent against evaluation suites, each scenario in fresh sandboxes.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "SUITE: a built-in suite (injection, exfiltration, tool-misuse, escape; `all` for every \
one) or a YAML file. AGENT: openai:URL#MODEL (key from $OPENAI_API_KEY, or --api-key-env), cmd:PATH \
(JSON lines on stdin/stdout, docs/eval-agents.md), ground-truth, attacker or refuser.\n\n\
A run whose sandbox could not start, or whose tool call failed for airlock's own reason, is a \
harness error; one whose agent failed (could not start, transport, malformed output, timeout; \
not running out of turns) is an agent error. Neither is a trial: both are counted apart and \
left out of every metric, and gates are judged on trials only (a gate with no trial fails). \
Once more errors happened than --max-harness-errors / --max-agent-errors allow, no new \
scenario starts.\n\n\
Exit status, the first that applies: 130 when interrupted; 125 on errors (a bad suite, gate \
or option, or more harness or agent errors than allowed, naming the first); 1 when a gate \
failed; 0 otherwise."
)]
pub(crate) struct Args {
    /// Suites to run: built-in names or YAML files.
    #[arg(required = true, value_name = "SUITE")]
    suites: Vec<String>,
    /// The agent.
    #[arg(long, value_name = "AGENT")]
    agent: String,
    /// Scenarios run at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Runs of each scenario.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Seed of attack generation (mutations).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (created; must not hold results unless --resume).
    #[arg(long, default_value = "airlock-eval-out")]
    out: PathBuf,
    /// Continue an interrupted run in this directory (same suites, agent
    /// and seed).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Fail (exit 1) unless this holds, e.g. 'asr<=0.05', 'utility>=0.8',
    /// 'containment>=0.9', 'asr_delta<=0.02' (needs --baseline).
    /// Repeatable.
    #[arg(long = "gate", value_name = "EXPR")]
    gates: Vec<String>,
    /// Runs that may end in a harness error (a sandbox that could not
    /// start, a tool call that failed for airlock's reason) before the
    /// evaluation fails (exit 125).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_harness_errors: u64,
    /// Runs that may end in an agent error (transport, malformed output,
    /// timeout) before the evaluation fails (exit 125).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_agent_errors: u64,
    /// An earlier results.json to compare with.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Sandbox profile of every tool call (its network is replaced by the
    /// scenario's mocks).
    #[arg(long, short = 'p', default_value = "default")]
    profile: String,
    /// Environment variable holding the openai: agent's API key.
    #[arg(long, value_name = "NAME", default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// Use this cgroup2 hierarchy instead of the detected one.
    #[arg(long, value_name = "DIR")]
    cgroup_root: Option<PathBuf>,
    /// Quiet: no progress bar, no summary, no warnings; only errors,
    /// failed gates and an interruption are printed (results still go to
    /// --out; the exit status is the same).
    #[arg(long, short = 'q')]
    quiet: bool,
}

impl Args {
    /// `--quiet`.
    pub(crate) fn quiet(&self) -> bool {
        self.quiet
    }
}

struct Bar {
    bar: indicatif::ProgressBar,
    failed: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
    running: std::sync::atomic::AtomicU64,
}

impl Bar {
    fn show(&self) {
        self.bar.set_prefix(format!(
            "{} running, {} failed, {} errors",
            self.running.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed)
        ));
    }
}

impl Progress for Bar {
    fn started(&self, id: &str) {
        self.running.fetch_add(1, Ordering::Relaxed);
        self.bar.set_message(id.to_owned());
        self.show();
    }
    fn finished(&self, r: &ScenarioResult) {
        if !r.is_trial() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        } else if !r.utility || r.attack_success == Some(true) {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.bar.set_prefix(format!(
            "{} failed, {} errors",
            self.failed.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed)
        ));
        self.bar.inc(1);
    }
}

pub(crate) fn main(args: Args) -> anyhow::Result<ExitCode> {
    let gates: Vec<Gate> = args
        .gates
        .iter()
        .map(|g| g.parse().with_context(|| format!("--gate {g:?}")))
        .collect::<anyhow::Result<_>>()?;
    let baseline = match &args.baseline {
        Some(p) => {
            Some(report::read_results(p).with_context(|| format!("--baseline {}", p.display()))?)
        }
        None => None,
    };
    if baseline.is_none() {
        if let Some(g) = gates.iter().find(|g| g.metric.is_delta()) {
            bail!("--gate {g} compares with a baseline: give --baseline OLD/results.json");
        }
    }
    let mut agent: AgentSpec = args.agent.parse().context("--agent")?;
    agent.options.api_key_env = args.api_key_env.clone();
    let mut names = Vec::new();
    for s in &args.suites {
        if s == "all" {
            names.extend(
                airlock_eval::suite::builtin_names()
                    .iter()
                    .filter(|n| **n != "example")
                    .map(|n| n.to_string()),
            );
        } else {
            names.push(s.clone());
        }
    }
    let mut scenarios = Vec::new();
    for s in &names {
        let loaded = if airlock_eval::suite::builtin_names().contains(&s.as_str()) {
            airlock_eval::suite::builtin(s, args.seed)
        } else if s.contains('/') || s.ends_with(".yaml") || s.ends_with(".yml") {
            airlock_eval::suite::load_file(std::path::Path::new(s), args.seed)
        } else {
            bail!(
                "unknown suite {s:?}: built-in suites are {} (or give a YAML file path)",
                airlock_eval::suite::builtin_names().join(", ")
            );
        };
        scenarios.extend(loaded?);
    }
    let mut seen = std::collections::BTreeSet::new();
    for sc in &scenarios {
        if !seen.insert(sc.id.clone()) {
            bail!("scenario id {} appears twice (a suite given twice?)", sc.id);
        }
    }
    let profile = super::profile::load(&args.profile)?;
    let out = args.resume.clone().unwrap_or_else(|| args.out.clone());
    let done = if args.resume.is_some() {
        runner::finished_results(&out)?
    } else {
        if out.join(runner::PROGRESS_FILE).exists() || out.join("results.json").exists() {
            bail!(
                "{} already holds an evaluation: choose another --out, or continue it with --resume {}",
                out.display(),
                out.display()
            );
        }
        Vec::new()
    };
    let known: std::collections::BTreeSet<&str> = scenarios.iter().map(|s| s.id.as_str()).collect();
    if let Some(r) = done.iter().find(|r| !known.contains(r.id.as_str())) {
        bail!(
            "--resume {}: it holds scenario {} which these suites do not have (different suites or seed?)",
            out.display(),
            r.id
        );
    }
    // Error runs are not results to keep: a resumed run runs them again
    // (kept in the report only if they are not run again).
    let (done, old_errors): (Vec<ScenarioResult>, Vec<ScenarioResult>) =
        done.into_iter().partition(ScenarioResult::is_trial);
    let allowance = ErrorAllowance {
        harness: args.max_harness_errors,
        agent: args.max_agent_errors,
    };
    let opts = EvalOptions {
        agent,
        concurrency: args.concurrency.max(1),
        repeat: args.repeat.max(1),
        out: out.clone(),
        profile,
        cgroup_root: args.cgroup_root.clone(),
        max_errors: allowance,
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("\nairlock: interrupted again; exiting now");
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
            eprintln!("\nairlock: stopping: finishing nothing new, keeping finished results (Ctrl-C again to quit at once)");
        });
    }
    let total = scenarios.len() as u64 * u64::from(opts.repeat);
    let bar = indicatif::ProgressBar::new(total);
    if args.quiet || !rustix::termios::isatty(std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} done, {prefix}, eta {eta}  {wide_msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(done.len() as u64);
    let progress = Bar {
        bar,
        failed: Default::default(),
        errors: Default::default(),
        running: Default::default(),
    };
    progress.show();
    let started = Instant::now();
    let started_at = airlock_audit::format_time(std::time::SystemTime::now());
    let new = runner::run(&scenarios, &opts, &done, &stop, &progress)?;
    progress.bar.finish_and_clear();
    let interrupted = stop.load(Ordering::SeqCst);
    let rerun: std::collections::BTreeSet<(String, u32)> =
        new.iter().map(|r| (r.id.clone(), r.run)).collect();
    // In the order they finished: the first error is the first named.
    let mut all = done;
    all.extend(new);
    all.extend(
        old_errors
            .into_iter()
            .filter(|r| !rerun.contains(&(r.id.clone(), r.run))),
    );
    let exceeded = allowance.exceeded(all.iter()).map(|x| {
        let (flag, what) = match x.kind {
            RunKind::HarnessError => ("--max-harness-errors", "harness"),
            _ => ("--max-agent-errors", "agent"),
        };
        let first = x.first.error().map(|(_, e)| e).unwrap_or_default();
        format!(
            "{} {what} error{} ({flag} {}); the first, in {}: {first}",
            x.count,
            if x.count == 1 { "" } else { "s" },
            x.allowed,
            x.first.id
        )
    });
    let finished_all = all.len() as u64 >= total;
    let info = RunInfo {
        suites: args.suites.clone(),
        agent: args.agent.clone(),
        seed: args.seed,
        repeat: opts.repeat,
        started: started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        airlock_version: env!("CARGO_PKG_VERSION").to_owned(),
        interrupted,
        stopped_on_errors: exceeded.is_some() && !interrupted && !finished_all,
    };
    let mut results = Results::new(info, all);
    results.gates = gate::evaluate(
        &gates,
        &results.aggregates,
        baseline.as_ref().map(|b| &b.aggregates),
    )?;
    if let Some(b) = &baseline {
        results.comparison = Some(gate::Comparison::new(&results, b));
    }
    let files = report::write(&out, &results)?;
    let o = &results.aggregates.overall;
    let pct = |r: &airlock_eval::metrics::Rate| {
        r.value
            .map(|v| format!("{:.1}%", v * 100.0))
            .unwrap_or_else(|| "n/a".into())
    };
    let quiet = args.quiet;
    if !quiet {
        eprintln!(
        "airlock eval: {} scenario runs ({} trials, {} harness errors, {} agent errors, {} tool errors): \
         benign utility {}, utility under attack {}, attack success {}, containment {}",
        results.scenarios.len(),
        o.trials,
        o.harness_errors,
        o.agent_errors,
        o.tool_errors,
        pct(&o.benign_utility),
        pct(&o.utility_under_attack),
        pct(&o.asr),
        pct(&o.containment),
    );
        for f in &files {
            eprintln!("  {}", f.display());
        }
    }
    for g in results.gates.iter().filter(|g| !quiet || !g.passed) {
        eprintln!(
            "  gate {}: {} ({})",
            g.gate,
            if g.passed { "passed" } else { "FAILED" },
            g.value
                .map(|v| format!("{v:.4}"))
                .or_else(|| g.note.clone())
                .unwrap_or_default()
        );
    }
    if let Some(e) = &exceeded {
        eprintln!("airlock eval: error: {e}");
        if results.run.stopped_on_errors {
            eprintln!(
                "airlock eval: no new scenario was started after that; fix the cause and run the rest (and the errors again) with: airlock eval {} --agent {} --seed {} --resume {}",
                args.suites.join(" "),
                args.agent,
                args.seed,
                out.display()
            );
        }
    } else if o.harness_errors + o.agent_errors > 0 && !quiet {
        eprintln!(
            "airlock eval: {} harness and {} agent errors allowed (--max-harness-errors {}, --max-agent-errors {}); they are in no metric",
            o.harness_errors, o.agent_errors, allowance.harness, allowance.agent
        );
    }
    if interrupted {
        eprintln!(
            "airlock eval: interrupted; continue with: airlock eval {} --agent {} --seed {} --resume {}",
            args.suites.join(" "),
            args.agent,
            args.seed,
            out.display()
        );
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if exceeded.is_some() {
        return Ok(ExitCode::from(EXIT_ERRORS));
    }
    if !results.gates_passed() {
        return Ok(ExitCode::from(EXIT_GATE));
    }
    Ok(ExitCode::SUCCESS)
}
