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
    after_help = "stdin: a pipe or file is passed to CMD; a terminal is not (CMD reads end of file) \
unless -i (its input copied through a pipe) or -t (a new terminal inside, airlock relays).

Ctrl-C: the first is forwarded to CMD; a second within 3s kills the sandbox (exit 130). \
With -t, Ctrl-C is a key sent to the sandbox's terminal.

Sizes take a unit (512M, 1.5G, 64K, 100B) and durations too (500ms, 30s, 5m, 1h); \
a bare number is refused.

Exit status: the command's own; 128+N when killed by signal N; 122 when --fail-on canary fired; \
123 when the command succeeded but a --copy-out file was not copied (each is named on stderr); \
124 on timeout; 137 when killed at the memory limit; 130 when killed by a second Ctrl-C; \
125 for a usage error or when airlock itself \
fails; 126 when CMD cannot be executed; 127 when CMD is not found."
)]
pub(crate) struct Args {
    /// Keep stdin open even when it is a terminal: what is typed is copied
    /// into the sandbox through a pipe (the sandbox never gets the
    /// terminal itself).
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Give the command a NEW pseudo-terminal (made inside the sandbox; the
    /// caller's terminal is put in raw mode and relayed, window size
    /// included; stdout and stderr merge into stdout). Implies -i; stdin
    /// must be a terminal. Use as `-it`.
    #[arg(long, short = 't')]
    tty: bool,
    /// A built-in profile name or a path to a profile TOML file.
    #[arg(long, short = 'p', default_value = "default")]
    profile: String,
    /// A host directory bound read-write as the workspace (default: an empty tmpfs).
    #[arg(long, short = 'w')]
    workspace: Option<PathBuf>,
    /// Memory limit with a unit, e.g. 512M or 2G (at least 1M). Rootless
    /// without a memory cgroup it is an address-space limit (RLIMIT_AS):
    /// allocations fail instead of a kill.
    #[arg(long, alias = "memory", value_name = "SIZE")]
    mem: Option<ByteSize>,
    /// Maximum number of processes and threads.
    #[arg(long)]
    pids: Option<u32>,
    /// CPU quota in cores, e.g. 1.5.
    #[arg(long)]
    cpus: Option<f64>,
    /// Wall-clock timeout with a unit, e.g. 30s, 5m, 1m30s.
    #[arg(long, value_name = "DURATION")]
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
    /// Write every event of the run (execs, canary touches, network
    /// decisions, limit hits, copy-outs, the end) to this hash-chained audit
    /// log (JSON Lines, must not exist); the head is signed with the
    /// profile's `[audit] key` or the per-host key. Verify with `airlock
    /// audit verify FILE`.
    #[arg(long, value_name = "FILE")]
    audit: Option<PathBuf>,
    /// Escalations (`on_deny = "ask"`): run `sh -c CMD` per request, the
    /// request as JSON on stdin, `{"decision":"grant","ttl_secs":60,
    /// "approver":"alice","reason":"..."}` or `{"decision":"deny",...}` on
    /// stdout. Without it, airlock asks on the terminal when it has one,
    /// else denies.
    #[arg(long, value_name = "CMD")]
    approver: Option<String>,
    /// Exit 122 when this fires, even if the command succeeded: `canary`
    /// (a canary was opened, sent out or printed).
    #[arg(long = "fail-on", value_name = "WHAT")]
    fail_on: Vec<FailOn>,
    /// Copy this workspace file out after the run (a path relative to the
    /// workspace; symlinks are never followed). Repeatable.
    #[arg(long = "copy-out", value_name = "PATH")]
    copy_out: Vec<PathBuf>,
    /// Where --copy-out files go (created if missing; existing files are
    /// never overwritten). Default: ./airlock-out.
    #[arg(long = "out-dir", value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// What `--fail-on` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FailOn {
    /// Any canary event.
    Canary,
}

/// Exit status when `--fail-on canary` fires.
pub(crate) const EXIT_CANARY: u8 = 122;

/// Exit status when the command succeeded but a `--copy-out` file was not
/// copied (refused, failed, or never reached because the run ended first).
pub(crate) const EXIT_COPY_OUT: u8 = 123;

/// Asks on the terminal (/dev/tty), with the request's timeout.
#[derive(Debug)]
struct TerminalApprover;

impl airlock_runtime::Approver for TerminalApprover {
    fn decide(
        &self,
        req: &airlock_runtime::ApprovalRequest,
        timeout: std::time::Duration,
    ) -> airlock_runtime::Decision {
        use std::io::BufRead;
        let user = std::env::var("USER").unwrap_or_else(|_| "terminal".into());
        let approver = format!("tty:{user}");
        let deny = |reason: String| airlock_runtime::Decision::Deny {
            approver: approver.clone(),
            reason,
        };
        let Ok(mut tty) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
        else {
            return deny("no terminal to ask on".into());
        };
        let _ = write!(
            tty,
            "\nairlock: sandbox {} asks to reach {}:{} ({}).\n\
             Grant for how many seconds (max {}; empty or 0 = deny; answer within {}s)? ",
            req.sandbox, req.name, req.port, req.why, req.max_ttl_secs, req.timeout_secs
        );
        let _ = tty.flush();
        let fd = std::os::fd::AsFd::as_fd(&tty);
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::time::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: 0,
        };
        if !matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0) {
            let _ = writeln!(tty, "\nairlock: no answer, denied");
            return deny("no answer on the terminal in time".into());
        }
        let mut line = String::new();
        let _ = std::io::BufReader::new(&tty).read_line(&mut line);
        match line.trim().parse::<f64>() {
            Ok(secs) if secs > 0.0 && secs.is_finite() => airlock_runtime::Decision::Grant {
                ttl_ms: (secs * 1000.0) as u64,
                approver,
                reason: "granted on the terminal".into(),
            },
            _ => deny("denied on the terminal".into()),
        }
    }
}

fn summarize_canaries(ev: &airlock_runtime::EvidenceReport) {
    let c = &ev.canaries;
    for t in &c.touched {
        eprintln!(
            "airlock: canary touched: {} ({}) opened {} time(s)",
            t.path,
            t.canaries.join(", "),
            t.opens
        );
    }
    for x in &c.exfiltration {
        eprintln!(
            "airlock: canary exfiltration {}: {} ({}) in the {:?} to {}{}",
            if x.blocked { "blocked" } else { "seen" },
            x.canary,
            x.encoding,
            x.place,
            x.name.as_deref().unwrap_or("?"),
            x.port.map(|p| format!(":{p}")).unwrap_or_default()
        );
    }
    for l in &c.leaked {
        eprintln!(
            "airlock: canary leaked: {} ({}) in {}",
            l.canary, l.encoding, l.place
        );
    }
}

/// The requested copy-out paths that were not copied, each with why.
fn missing_copies(
    requested: &[PathBuf],
    ev: &airlock_runtime::EvidenceReport,
) -> Vec<(String, String)> {
    requested
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter_map(|p| {
            let record = ev.copy_out.iter().find(|r| {
                r.path == p || r.path.trim_start_matches("./") == p.trim_start_matches("./")
            });
            match record {
                Some(r) if r.refused.is_none() => None,
                Some(r) => Some((p, r.refused.clone().unwrap_or_default())),
                None => Some((p, "not copied: the run ended before copy-out".into())),
            }
        })
        .collect()
}

/// A size for people: `256 MiB`, `1.5 GiB` is shown as `1536 MiB`.
fn human_size(size: ByteSize) -> String {
    let b = size.bytes();
    for (unit, name) in [
        (1u64 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ] {
        if b >= unit && b % unit == 0 {
            return format!("{} {name}", b / unit);
        }
    }
    format!("{b} bytes")
}

/// One plain line per limit the run reached, naming the limit and its value.
fn summarize_limits(req: &RunRequest, report: &airlock_runtime::RunReport) {
    use airlock_runtime::{ExitReason, LimitHit};
    let limits = &req.profile.limits;
    let mem = limits.memory.map_or_else(|| "unlimited".into(), human_size);
    for l in &report.limits_hit {
        match l {
            LimitHit::Memory if report.reason == ExitReason::Memory => {
                eprintln!("airlock: killed at the memory limit ({mem})")
            }
            LimitHit::Memory if report.cgroup.controllers.iter().any(|c| c == "memory") => {
                eprintln!("airlock: a process was killed at the memory limit ({mem})")
            }
            LimitHit::Memory => eprintln!(
                "airlock: the memory limit ({mem}) was reached: allocations failed \
                 (enforced as RLIMIT_AS, an address-space limit: no memory cgroup here)"
            ),
            LimitHit::Pids => eprintln!(
                "airlock: the pids limit ({}) was reached: a fork failed",
                limits.pids.map_or_else(|| "unlimited".into(), |p| p.to_string())
            ),
            LimitHit::Cpu => eprintln!(
                "airlock: throttled at the cpu limit ({} cores)",
                limits.cpus.map_or_else(|| "unlimited".into(), |c| c.to_string())
            ),
            LimitHit::Timeout => eprintln!(
                "airlock: killed at the timeout ({})",
                HumanDuration(limits.timeout)
            ),
            LimitHit::Output => eprintln!(
                "airlock: output cap reached ({}): dropped {} bytes of stdout and {} bytes of stderr",
                human_size(limits.output),
                report.stdout.dropped,
                report.stderr.dropped
            ),
            LimitHit::Disk => eprintln!(
                "airlock: a size-capped filesystem filled up: {}",
                report.full_mounts.join(", ")
            ),
            LimitHit::Fsize => eprintln!(
                "airlock: killed at the file-size limit ({})",
                human_size(limits.fsize)
            ),
            LimitHit::Nofile => eprintln!(
                "airlock: the open-files limit ({}) was reached",
                limits.nofile
            ),
        }
    }
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
    fn notice(&mut self, notice: airlock_runtime::Notice) {
        match notice {
            airlock_runtime::Notice::InterruptForwarded { window } => eprintln!(
                "airlock: interrupt sent to the sandbox; press Ctrl-C again within {}s to kill it",
                window.as_secs()
            ),
            airlock_runtime::Notice::InterruptKilled => {
                eprintln!("airlock: interrupted again: the sandbox was killed")
            }
        }
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

/// Interpreters whose first argument that is not an option names a script.
const INTERPRETERS: &[&str] = &[
    "python", "python2", "python3", "sh", "bash", "dash", "zsh", "ksh", "node", "perl", "ruby",
    "php", "lua", "Rscript",
];

/// Interpreter options after which the code is inline (no script file).
const INLINE_CODE: &[&str] = &["-c", "-m", "-e", "-E", "-p", "-r", "--eval", "--print"];

fn is_interpreter(argv0: &str) -> bool {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    INTERPRETERS.contains(&base)
        || base
            .strip_prefix("python")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// The hint for a command that names a file of the caller's directory that
/// the sandbox does not have: no workspace was given, and either argv[0] is
/// a relative path (`./tool.sh`) that could not be executed (exit 126/127),
/// or an interpreter's script argument (`python3 big.py`) made the command
/// fail; and that file exists on the host relative to `cwd`. Only the
/// caller's own view of its directory is looked at, after the run; nothing
/// reaches the sandbox.
fn missing_file_hint(
    argv: &[String],
    reason: &airlock_runtime::ExitReason,
    workspace_given: bool,
    cwd: &std::path::Path,
) -> Option<String> {
    use airlock_runtime::ExitReason;
    if workspace_given {
        return None;
    }
    let on_host = |name: &str| {
        let path = std::path::Path::new(name);
        !name.is_empty()
            && path.is_relative()
            && !path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
            && cwd.join(path).is_file()
    };
    let argv0 = argv.first()?;
    let not_run = matches!(
        reason,
        ExitReason::ExecFailed { .. } | ExitReason::Exit { code: 126 | 127 }
    );
    let failed = matches!(reason, ExitReason::Exit { code } if *code != 0);
    let name = if argv0.contains('/') && !argv0.starts_with('/') {
        (not_run && on_host(argv0)).then_some(argv0)
    } else if failed && is_interpreter(argv0) {
        argv[1..]
            .iter()
            .take_while(|a| !INLINE_CODE.contains(&a.as_str()))
            .find(|a| !a.starts_with('-'))
            .filter(|a| on_host(a))
    } else {
        None
    }?;
    Some(format!(
        "airlock: `{name}` is not in the sandbox: pass `--workspace .` (or `-w DIR`) to bind your directory"
    ))
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
    let stdin_tty = rustix::termios::isatty(std::io::stdin());
    if args.tty && !stdin_tty {
        anyhow::bail!("-t needs a terminal on stdin (for piped input use -i, or neither)");
    }
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
    let approver: Option<std::sync::Arc<dyn airlock_runtime::Approver>> = match &args.approver {
        Some(cmd) => Some(std::sync::Arc::new(airlock_runtime::CommandApprover {
            command: cmd.clone(),
        })),
        None if rustix::termios::isatty(std::io::stderr()) => {
            Some(std::sync::Arc::new(TerminalApprover))
        }
        None => None,
    };
    let out_dir = if args.copy_out.is_empty() {
        None
    } else {
        Some(args.out_dir.unwrap_or_else(|| PathBuf::from("airlock-out")))
    };
    let mut req = RunRequest::new(profile, args.command);
    req.workspace = args.workspace;
    req.term = std::env::var("TERM").ok();
    req.cgroup_root = args.cgroup_root;
    req.inherit_stdin = true;
    req.interactive = args.interactive;
    req.tty = args.tty;
    req.forward_signals = true;
    req.audit = args.audit;
    req.approver = approver;
    req.copy_out = args.copy_out;
    req.out_dir = out_dir;
    if stdin_tty && !args.interactive && !args.tty {
        eprintln!(
            "airlock: stdin is a terminal; the sandbox gets no input (pass -i for a pipe, -it for a terminal)"
        );
    }
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
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(hint) =
            missing_file_hint(&req.argv, &report.reason, req.workspace.is_some(), &cwd)
        {
            eprintln!("{hint}");
        }
    }
    let missing = missing_copies(&req.copy_out, &session.evidence);
    if !args.json {
        summarize_limits(&req, report);
        if let Some(net) = &session.network {
            summarize_network(net);
        }
        summarize_canaries(&session.evidence);
    } else {
        let mut o = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut o, &session)?;
        writeln!(o)?;
    }
    // A copy the user asked for and did not get is named even with --json
    // (stderr), and is not success.
    for (path, why) in &missing {
        eprintln!("airlock: copy-out {path}: {why}");
    }
    if args.fail_on.contains(&FailOn::Canary) && session.evidence.canaries.fired() {
        if !args.json {
            eprintln!("airlock: a canary fired (--fail-on canary): exit {EXIT_CANARY}");
        }
        return Ok(ExitCode::from(EXIT_CANARY));
    }
    if report.exit_code == 0 && !missing.is_empty() {
        eprintln!(
            "airlock: {} of {} --copy-out files not copied: exit {EXIT_COPY_OUT}",
            missing.len(),
            req.copy_out.len()
        );
        return Ok(ExitCode::from(EXIT_COPY_OUT));
    }
    Ok(ExitCode::from(report.exit_code.clamp(0, 255) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_runtime::ExitReason;

    fn hint(
        argv: &[&str],
        reason: ExitReason,
        workspace: bool,
        cwd: &std::path::Path,
    ) -> Option<String> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        missing_file_hint(&argv, &reason, workspace, cwd)
    }

    #[test]
    fn hint_only_for_a_local_file_the_sandbox_lacks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("tool.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(dir.join("big.py"), "print(1)\n").unwrap();
        std::fs::write(dir.join("sub/x.py"), "").unwrap();
        let d = &dir;
        let enoent = ExitReason::ExecFailed { errno: 2 };
        let h = hint(&["./tool.sh"], enoent, false, d).unwrap();
        assert_eq!(h, "airlock: `./tool.sh` is not in the sandbox: pass `--workspace .` (or `-w DIR`) to bind your directory");
        assert!(hint(&["./tool.sh"], ExitReason::Exit { code: 127 }, false, d).is_some());
        assert!(hint(
            &["python3", "big.py"],
            ExitReason::Exit { code: 2 },
            false,
            d
        )
        .unwrap()
        .contains("`big.py`"));
        assert!(hint(
            &["python3.11", "-u", "sub/x.py", "a"],
            ExitReason::Exit { code: 2 },
            false,
            d
        )
        .unwrap()
        .contains("`sub/x.py`"));
        assert!(hint(
            &["/usr/bin/bash", "-x", "tool.sh"],
            ExitReason::Exit { code: 127 },
            false,
            d
        )
        .is_some());
        // Not: a workspace was given; the run succeeded; the file is not on
        // the host; the code is inline; absolute or upward paths; not an
        // interpreter; argv[0] ran but failed for its own reasons.
        assert!(hint(&["./tool.sh"], enoent, true, d).is_none());
        assert!(hint(
            &["python3", "big.py"],
            ExitReason::Exit { code: 0 },
            false,
            d
        )
        .is_none());
        assert!(hint(
            &["python3", "nope.py"],
            ExitReason::Exit { code: 2 },
            false,
            d
        )
        .is_none());
        assert!(hint(
            &["python3", "-c", "big.py"],
            ExitReason::Exit { code: 1 },
            false,
            d
        )
        .is_none());
        assert!(hint(
            &["sh", "-c", "./tool.sh"],
            ExitReason::Exit { code: 127 },
            false,
            d
        )
        .is_none());
        assert!(hint(
            &["python3", "../big.py"],
            ExitReason::Exit { code: 2 },
            false,
            &d.join("sub")
        )
        .is_none());
        let abs = d.join("big.py");
        assert!(hint(
            &["python3", abs.to_str().unwrap()],
            ExitReason::Exit { code: 2 },
            false,
            d
        )
        .is_none());
        assert!(hint(&["cat", "big.py"], ExitReason::Exit { code: 1 }, false, d).is_none());
        assert!(hint(&["./tool.sh"], ExitReason::Exit { code: 1 }, false, d).is_none());
        assert!(hint(&["./tool.sh"], ExitReason::Timeout, false, d).is_none());
        assert!(hint(&["./nope.sh"], enoent, false, d).is_none());
        assert!(hint(&["tool.sh"], enoent, false, d).is_none());
    }
}
