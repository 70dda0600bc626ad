//! The airlock command line: one module per subcommand, tracing set-up,
//! and the mapping of errors to exit codes (125 for airlock's own failures,
//! as `env`, `timeout` and `docker run` do).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Run untrusted code in a sandbox that gives away nothing it has not been told to.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about, propagate_version = true)]
struct Cli {
    /// Diagnostics on stderr (tracing filter, e.g. `debug` or `airlock_jail=trace`).
    /// Also read from AIRLOCK_LOG.
    #[arg(long, global = true, env = "AIRLOCK_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command in a fresh sandbox.
    Run(cmd::run::Args),
    /// Show, check or describe profiles.
    #[command(subcommand)]
    Profile(cmd::profile::Command),
    /// Report what this host supports.
    Doctor(cmd::doctor::Args),
    /// Run an agent against evaluation suites inside sandboxes.
    Eval(Box<cmd::eval::Args>),
    /// Audit logs: make the signing key, verify a log, show a log.
    #[command(subcommand)]
    Audit(cmd::audit::Command),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(cmd::bench::Command),
}

/// airlock's own failure.
pub(crate) const EXIT_FAILURE: u8 = 125;

fn main() -> ExitCode {
    // The sandbox's init is a re-execution of this binary: take that path
    // before parsing arguments or starting anything.
    airlock_runtime::helper_main_if_requested();

    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();

    let result = match cli.command {
        Command::Run(a) => cmd::run::main(a),
        Command::Profile(c) => cmd::profile::main(c),
        Command::Doctor(a) => cmd::doctor::main(a),
        Command::Audit(c) => cmd::audit::main(c),
        Command::Eval(a) => cmd::eval::main(*a),
        Command::Bench(c) => cmd::bench::main(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("airlock: {}", describe(&e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The error and its causes, "a: b: c", leaving out a cause whose text the
/// message already holds (many errors name their source in their message).
fn describe(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
