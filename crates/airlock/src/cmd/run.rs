//! `airlock run`: run a command in a fresh sandbox.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use airlock_policy::{ByteSize, HumanDuration, Overrides, Profile};
use airlock_runtime::{OutputSink, RunRequest};
use anyhow::Context;

/// Run CMD in a fresh sandbox, stream its output, exit with its code.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: the command's own; 128+N when killed by signal N; 124 on timeout; \
137 when killed at the memory limit; 125 when airlock itself fails; 126 when CMD cannot be executed; \
127 when CMD is not found."
)]
pub(crate) struct Args {
    /// A built-in profile name or a path to a profile TOML file.
    #[arg(long, short = 'p', default_value = "default")]
    profile: String,
    /// A host directory bound read-write as the workspace (default: an empty tmpfs).
    #[arg(long, short = 'w')]
    workspace: Option<PathBuf>,
    /// Memory limit, e.g. 512M.
    #[arg(long, alias = "memory")]
    mem: Option<ByteSize>,
    /// Maximum number of processes and threads.
    #[arg(long)]
    pids: Option<u32>,
    /// CPU quota in cores, e.g. 1.5.
    #[arg(long)]
    cpus: Option<f64>,
    /// Wall-clock timeout, e.g. 30s, 5m.
    #[arg(long)]
    timeout: Option<HumanDuration>,
    /// Extra environment variable for the command (repeatable).
    #[arg(long, short = 'e', value_name = "K=V")]
    env: Vec<String>,
    /// Print a machine-readable result as JSON on stdout after the run (the
    /// command's stdout is then sent to stderr so the JSON stays parseable).
    #[arg(long)]
    json: bool,
    /// Use this cgroup2 hierarchy instead of the detected one (for hosts
    /// with a delegated or separately mounted cgroup2).
    #[arg(long, value_name = "DIR")]
    cgroup_root: Option<PathBuf>,
    /// Network mode: "none" (the default: loopback only, nothing leaves) or
    /// "allowlist" (default deny through the egress gateway).
    #[arg(long, value_name = "MODE")]
    net: Option<airlock_policy::NetworkMode>,
    /// Allow a host: NAME, *.SUFFIX, optionally :PORT (default ports 80 and
    /// 443). Repeatable; implies --net allowlist.
    #[arg(long = "allow-host", value_name = "PATTERN")]
    allow_host: Vec<String>,
    /// Deny a host (wins over --allow-host; without :PORT, every port).
    /// Repeatable.
    #[arg(long = "deny-host", value_name = "PATTERN")]
    deny_host: Vec<String>,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<String>,
}

struct Terminal {
    json: bool,
}

impl OutputSink for Terminal {
    fn stdout(&mut self, data: &[u8]) {
        // With --json, stdout carries only the result document.
        let res = if self.json {
            std::io::stderr().lock().write_all(data)
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(data).and_then(|_| o.flush())
        };
        let _ = res; // a closed stdout must not stop the sandbox's accounting
    }
    fn stderr(&mut self, data: &[u8]) {
        let _ = std::io::stderr().lock().write_all(data);
    }
}

/// One stderr line per refused flow (up to a few), so a refusal is never
/// silent; `--json` has every record.
fn summarize_network(net: &airlock_runtime::NetworkReport) {
    use airlock_runtime::Verdict;
    const SHOWN: usize = 10;
    let denied: Vec<_> = net
        .flows
        .iter()
        .filter(|f| f.verdict == Verdict::Deny)
        .collect();
    for f in denied.iter().take(SHOWN) {
        let target = match (&f.name, f.port) {
            (Some(n), Some(p)) => format!("{n}:{p}"),
            (Some(n), None) => n.clone(),
            (None, _) => f.addr.map_or_else(|| "?".into(), |a| a.to_string()),
        };
        eprintln!(
            "airlock: egress denied ({:?}) {target}: {}",
            f.proto, f.reason
        );
    }
    if denied.len() > SHOWN {
        eprintln!(
            "airlock: egress denied {} more (see --json)",
            denied.len() - SHOWN
        );
    }
    for l in &net.limits_hit {
        eprintln!("airlock: egress cap reached: {l:?}");
    }
    if let Some(f) = &net.gateway_failure {
        eprintln!("airlock: {f}; the sandbox lost its network");
    }
}

fn parse_env(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--env {kv:?}: expected NAME=VALUE"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

pub(crate) fn main(args: Args) -> anyhow::Result<ExitCode> {
    let profile = super::profile::load(&args.profile)?;
    let overrides = Overrides {
        memory: args.mem,
        pids: args.pids,
        cpus: args.cpus,
        timeout: args.timeout.map(|t| t.0),
        env: parse_env(&args.env)?,
        net: args.net,
        allow_hosts: args.allow_host,
        deny_hosts: args.deny_host,
    };
    let profile: Profile = profile.with_overrides(&overrides)?;
    let req = RunRequest {
        profile,
        argv: args.command,
        workspace: args.workspace,
        term: std::env::var("TERM").ok(),
        cgroup_root: args.cgroup_root,
        inherit_stdin: true,
        forward_signals: true,
    };
    let mut sink = Terminal { json: args.json };
    let session = match airlock_runtime::run(&req, &mut sink) {
        Ok(r) => r,
        Err(e) => {
            if args.json {
                let doc = serde_json::json!({ "error": format!("{e}") });
                println!("{doc}");
            }
            return Err(e.into());
        }
    };
    let report = &session.run;
    if let airlock_runtime::ExitReason::ExecFailed { errno } = report.reason {
        eprintln!(
            "airlock: cannot run {:?}: {}",
            req.argv[0],
            std::io::Error::from_raw_os_error(errno)
        );
    }
    if !args.json {
        for l in &report.limits_hit {
            tracing::warn!(limit = ?l, "limit reached");
        }
        if report.stdout.dropped + report.stderr.dropped > 0 {
            eprintln!(
                "airlock: output cap reached: dropped {} bytes of stdout and {} bytes of stderr",
                report.stdout.dropped, report.stderr.dropped
            );
        }
        if report.reason == airlock_runtime::ExitReason::Timeout {
            eprintln!("airlock: timed out after {:?}", req.profile.limits.timeout);
        }
        if let Some(net) = &session.network {
            summarize_network(net);
        }
    } else {
        let mut o = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut o, &session)?;
        writeln!(o)?;
    }
    Ok(ExitCode::from(report.exit_code.clamp(0, 255) as u8))
}
