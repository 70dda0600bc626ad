//! `airlock bench spawn`: start-to-exit latency of `/bin/true` under a
//! profile, side by side in one run with bubblewrap and a plain fork+exec.
//! `airlock bench egress` lives in `bench_egress`, `airlock bench serve` in
//! `bench_serve`; `airlock bench audit`
//! (audit log append and verify throughput) is at the end of this file.

use std::process::{Command as Proc, ExitCode, Stdio};
use std::time::{Duration, Instant};

use airlock_runtime::{Collect, ExitReason, RunRequest};
use anyhow::{bail, Context};

/// Benchmark commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Start-to-exit latency of a sandboxed /bin/true (p50, p99).
    Spawn(SpawnArgs),
    /// Throughput and per-request latency through the egress gateway,
    /// against the same clients talking to the upstream directly.
    Egress(super::bench_egress::EgressArgs),
    /// Audit log: events appended per second (hashing included, fsync at
    /// close) and events verified per second, with per-1000-event batch
    /// times.
    Audit(AuditArgs),
    /// Harness overhead of `airlock eval` with the ground-truth agent: per
    /// scenario (concurrency 1) and the whole built-in catalog
    /// (concurrency 2).
    Eval(EvalBenchArgs),
    /// Live sandboxes through `airlock serve`: create -> first exec result,
    /// exec, reset, checkpoint restore and server RSS per sandbox, with
    /// `airlock run` and bwrap in the same run.
    Serve(super::bench_serve::ServeArgs),
}

/// Options of `bench eval`.
#[derive(Debug, clap::Args)]
pub(crate) struct EvalBenchArgs {
    /// Suites (built-in names or files).
    #[arg(default_value = "all")]
    suites: Vec<String>,
    /// Concurrency of the whole-catalog pass.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `bench spawn`.
#[derive(Debug, clap::Args)]
pub(crate) struct SpawnArgs {
    /// Runs per variant.
    #[arg(long, short = 'n', default_value_t = 300)]
    runs: usize,
    /// Profile for the airlock variants.
    #[arg(long, default_value = "default")]
    profile: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct Stats {
    name: String,
    runs: usize,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    max_ms: f64,
}

pub(crate) fn stats(name: &str, mut v: Vec<Duration>) -> Stats {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pct = |p: f64| ms(v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]);
    Stats {
        name: name.to_string(),
        runs: v.len(),
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        mean_ms: v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64,
        max_ms: ms(*v.last().expect("runs > 0")),
    }
}

pub(crate) fn time_command(
    runs: usize,
    mut make: impl FnMut() -> Proc,
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut c = make();
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let t = Instant::now();
        let st = c.status()?;
        out.push(t.elapsed());
        if !st.success() {
            bail!("{c:?} failed: {st}");
        }
    }
    Ok(out)
}

pub(crate) fn bwrap_command() -> Proc {
    let mut c = Proc::new("bwrap");
    c.args([
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind-try",
        "/etc/ld.so.cache",
        "/etc/ld.so.cache",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "/bin/true",
    ]);
    c
}

/// Whether bubblewrap, the peer, is installed.
pub(crate) fn have_bwrap() -> bool {
    Proc::new("bwrap")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The latency table of a benchmark.
pub(crate) fn print_table(results: &[Stats]) {
    println!(
        "{:<62} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "variant", "p50 ms", "p90 ms", "p99 ms", "mean ms", "max ms"
    );
    for s in results {
        println!(
            "{:<62} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            s.name, s.p50_ms, s.p90_ms, s.p99_ms, s.mean_ms, s.max_ms
        );
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn spawn(args: SpawnArgs) -> anyhow::Result<ExitCode> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let profile = super::profile::load(&args.profile)?;
    let req = RunRequest::new(profile, vec!["/bin/true".into()]);
    let mut results = Vec::new();

    // Warm-up: page cache, lazily created cgroup parents.
    for _ in 0..5 {
        airlock_runtime::run(&req, &mut Collect::default())?;
    }
    let mut lib = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let t = Instant::now();
        let r = airlock_runtime::run(&req, &mut Collect::default())?;
        lib.push(t.elapsed());
        if r.run.reason != (ExitReason::Exit { code: 0 }) {
            bail!("sandboxed /bin/true ended with {:?}", r.run.reason);
        }
    }
    results.push(stats("airlock (library, in-process supervisor)", lib));
    let rss = peak_rss_kib();

    let exe = std::env::current_exe().context("locating the airlock binary")?;
    let cli = time_command(args.runs, || {
        let mut c = Proc::new(&exe);
        c.args(["run", "--profile", &args.profile, "--", "/bin/true"]);
        c
    })?;
    results.push(stats("airlock run (CLI, includes exec of airlock)", cli));

    let have_bwrap = have_bwrap();
    if have_bwrap {
        let bw = time_command(args.runs, bwrap_command)?;
        results.push(stats(
            "bwrap --unshare-all --die-with-parent --new-session",
            bw,
        ));
    }
    let plain = time_command(args.runs, || Proc::new("/bin/true"))?;
    results.push(stats("plain fork+exec", plain));

    if args.json {
        let doc = serde_json::json!({
            "benchmark": "spawn",
            "command": "/bin/true",
            "profile": args.profile,
            "supervisor_peak_rss_kib": rss,
            "bwrap": have_bwrap,
            "results": results,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "spawn: start-to-exit of /bin/true, {} runs each, profile {:?}",
            args.runs, args.profile
        );
        print_table(&results);
        if !have_bwrap {
            println!("(bwrap not installed: apt-get install bubblewrap to compare)");
        }
        println!("supervisor peak RSS: {rss} KiB");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Spawn(a) => spawn(a),
        Command::Egress(a) => super::bench_egress::egress(a),
        Command::Audit(a) => audit(a),
        Command::Eval(a) => eval_bench(a),
        Command::Serve(a) => super::bench_serve::serve(a),
    }
}

/// Options of `bench audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// Events to append, then verify.
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    events: u64,
    /// Directory for the temporary log (removed afterwards). Default: $TMPDIR or /tmp.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Targets of the audit log (docs/audit.md).
const AUDIT_APPEND_TARGET: f64 = 200_000.0;
const AUDIT_VERIFY_TARGET: f64 = 1_000_000.0;

fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(std::env::temp_dir);
    // The library's messages carry their cause: no chain to print twice.
    let r = airlock_audit::bench::run(args.events, &dir)
        .map_err(|e| anyhow::anyhow!("audit benchmark in {}: {e}", dir.display()))?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if args.json {
        let phase = |p: &airlock_audit::bench::Phase, target: f64| {
            serde_json::json!({
                "events_per_sec": p.events_per_sec.round(),
                "total_s": p.total.as_secs_f64(),
                "batch_events": airlock_audit::bench::BATCH,
                "batch_p50_ms": ms(p.batch_p50),
                "batch_p99_ms": ms(p.batch_p99),
                "batch_max_ms": ms(p.batch_max),
                "target_events_per_sec": target,
            })
        };
        let doc = serde_json::json!({
            "benchmark": "audit",
            "events": r.events,
            "file_bytes": r.file_bytes,
            "bytes_per_event": r.file_bytes / r.events.max(1),
            "verify_threads": r.verify_threads,
            "append": phase(&r.append, AUDIT_APPEND_TARGET),
            "verify": phase(&r.verify, AUDIT_VERIFY_TARGET),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "audit: {} events of {} bytes on average ({:.1} MB) in {}",
            r.events,
            r.file_bytes / r.events.max(1),
            r.file_bytes as f64 / 1e6,
            dir.display()
        );
        println!(
            "{:<28} {:>12} {:>9} {:>13} {:>13} {:>13} {:>12}",
            "phase", "events/s", "total s", "p50 ms/1000", "p99 ms/1000", "max ms/1000", "target/s"
        );
        let verify_name = format!("verify ({} threads)", r.verify_threads);
        for (name, p, target) in [
            (
                "append (hash, write, fsync)",
                &r.append,
                AUDIT_APPEND_TARGET,
            ),
            (verify_name.as_str(), &r.verify, AUDIT_VERIFY_TARGET),
        ] {
            println!(
                "{:<28} {:>12.0} {:>9.3} {:>13.3} {:>13.3} {:>13.3} {:>12.0}{}",
                name,
                p.events_per_sec,
                p.total.as_secs_f64(),
                ms(p.batch_p50),
                ms(p.batch_p99),
                ms(p.batch_max),
                target,
                if p.events_per_sec >= target {
                    ""
                } else {
                    "  (below target)"
                }
            );
        }
        if cfg!(debug_assertions) {
            println!("note: a debug build of airlock; build with --release for real figures");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_bench(args: EvalBenchArgs) -> anyhow::Result<ExitCode> {
    use airlock_eval::runner::{self, EvalOptions, NoProgress};
    let mut scenarios = Vec::new();
    for s in &args.suites {
        let names: Vec<String> = if s == "all" {
            airlock_eval::suite::builtin_names()
                .iter()
                .filter(|n| **n != "example")
                .map(|n| n.to_string())
                .collect()
        } else {
            vec![s.clone()]
        };
        for n in names {
            scenarios.extend(
                if airlock_eval::suite::builtin_names().contains(&n.as_str()) {
                    airlock_eval::suite::builtin(&n, 0)?
                } else {
                    airlock_eval::suite::load_file(std::path::Path::new(&n), 0)?
                },
            );
        }
    }
    if scenarios.is_empty() {
        anyhow::bail!("no scenarios");
    }
    let tmp = tempfile::Builder::new()
        .prefix("airlock-bench-eval-")
        .tempdir()?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let pass =
        |name: &str, concurrency: usize| -> anyhow::Result<(Duration, Vec<ScenarioTiming>)> {
            let opts = EvalOptions {
                agent: "ground-truth".parse()?,
                concurrency,
                repeat: 1,
                out: tmp.path().join(name),
                profile: airlock_policy::Profile::builtin("default")?,
                cgroup_root: None,
                // The first error fails the benchmark.
                max_errors: Default::default(),
            };
            let t0 = Instant::now();
            let results = runner::run(&scenarios, &opts, &[], &stop, &NoProgress)?;
            let wall = t0.elapsed();
            if let Some((bad, e)) = results.iter().find_map(|r| r.error().map(|(_, e)| (r, e))) {
                anyhow::bail!("{}: {e}", bad.id);
            }
            if let Some(bad) = results.iter().find(|r| !r.utility) {
                anyhow::bail!(
                    "ground truth failed {} (the benchmark needs a working catalog)",
                    bad.id
                );
            }
            Ok((
                wall,
                results
                    .iter()
                    .map(|r| ScenarioTiming {
                        wall: Duration::from_millis(r.wall_ms),
                        calls: r.tool_calls,
                    })
                    .collect(),
            ))
        };
    let (_, serial) = pass("serial", 1)?;
    let (total, _) = pass("parallel", args.concurrency)?;
    let per_scenario = stats(
        "per scenario (concurrency 1)",
        serial.iter().map(|t| t.wall).collect(),
    );
    // One sandbox per scenario: what a further call costs shows in the
    // scenarios grouped by their number of calls.
    let by_calls: Vec<Stats> = [
        (1, "1 tool call"),
        (2, "2 tool calls"),
        (3, "3+ tool calls"),
    ]
    .iter()
    .filter_map(|&(n, name)| {
        let walls: Vec<Duration> = serial
            .iter()
            .filter(|t| if n == 3 { t.calls >= 3 } else { t.calls == n })
            .map(|t| t.wall)
            .collect();
        (!walls.is_empty()).then(|| stats(&format!("  {} with {name}", walls.len()), walls))
    })
    .collect();
    let doc = serde_json::json!({
        "scenarios": scenarios.len(),
        "tool_calls": serial.iter().map(|t| u64::from(t.calls)).sum::<u64>(),
        "per_scenario": per_scenario,
        "per_scenario_by_calls": by_calls,
        "whole_catalog_secs": total.as_secs_f64(),
        "concurrency": args.concurrency,
        "debug_build": cfg!(debug_assertions),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "airlock eval harness, ground-truth agent, {} scenarios (one sandbox each), {} tool calls{}",
            scenarios.len(),
            doc["tool_calls"],
            if cfg!(debug_assertions) { " [debug build: use --release for figures]" } else { "" }
        );
        for s in std::iter::once(&per_scenario).chain(by_calls.iter()) {
            println!(
                "  {:<32} p50 {:>8.2} ms  p99 {:>8.2} ms  mean {:>8.2} ms  max {:>8.2} ms",
                s.name, s.p50_ms, s.p99_ms, s.mean_ms, s.max_ms
            );
        }
        println!(
            "  whole catalog at concurrency {}: {:.1} s",
            args.concurrency,
            total.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct ScenarioTiming {
    wall: Duration,
    calls: u32,
}
