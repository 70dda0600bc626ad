//! The airlock command line: one module per subcommand, tracing set-up,
//! and the mapping of errors to exit codes (125 for airlock's own failures
//! and for every usage error, as `env`, `timeout` and `docker run` do).

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod cmd;
mod diag;

/// Run untrusted code in a sandbox that gives away nothing it has not been told to.
#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    about,
    propagate_version = true,
    after_help = "Exit status: 0 on success; 125 for a usage error or when airlock itself fails; \
`airlock run` passes on the command's own (see `airlock run --help`). \
Set NO_COLOR to turn colours off (they are off whenever stderr is not a terminal)."
)]
pub(crate) struct Cli {
    /// Diagnostics on stderr (tracing filter, e.g. `debug` or `airlock_jail=trace`;
    /// default `warn`, `error` under `airlock eval --quiet`). Also read from AIRLOCK_LOG.
    #[arg(long, global = true, env = "AIRLOCK_LOG")]
    log: Option<String>,
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
    /// Serve live sandboxes over an HTTP API (unix socket, optionally loopback TCP).
    Serve(cmd::serve::Args),
    /// Talk to `airlock serve`: create, exec, cp, ls, rm, list.
    Sandbox(cmd::sandbox::Args),
    /// Serve the Model Context Protocol on stdio: one live sandbox per session.
    Mcp(cmd::mcp::Args),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(cmd::bench::Command),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions(cmd::install::CompletionsArgs),
    /// Print the manual page (roff) on stdout, e.g. `airlock man | man -l -`.
    Man(cmd::install::ManArgs),
}

/// airlock's own failure, and every usage error.
pub(crate) const EXIT_FAILURE: u8 = 125;

fn main() -> ExitCode {
    // The sandbox's init is a re-execution of this binary: take that path
    // before parsing arguments or starting anything.
    airlock_runtime::helper_main_if_requested();

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    diag::init(cli.log.as_deref(), default_log(&cli.command));

    let result = match cli.command {
        Command::Run(a) => cmd::run::main(a),
        Command::Profile(c) => cmd::profile::main(c),
        Command::Doctor(a) => cmd::doctor::main(a),
        Command::Audit(c) => cmd::audit::main(c),
        Command::Eval(a) => cmd::eval::main(*a),
        Command::Bench(c) => cmd::bench::main(c),
        Command::Serve(a) => cmd::serve::main(a),
        Command::Sandbox(a) => cmd::sandbox::main(a),
        Command::Mcp(a) => cmd::mcp::main(a),
        Command::Completions(a) => cmd::install::completions(a, &mut Cli::command()),
        Command::Man(a) => cmd::install::man(a, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if e.downcast_ref::<diag::Reported>().is_none() {
                eprintln!("airlock: {}", describe(&e));
            }
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The tracing filter when neither --log nor AIRLOCK_LOG is given.
fn default_log(command: &Command) -> &'static str {
    match command {
        Command::Eval(a) if a.quiet() => "error",
        _ => "warn",
    }
}

/// clap's own errors exit 125 like every other usage error; `--help` and
/// `--version` print on stdout and exit 0.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_FAILURE),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_are_not_help() {
        let e = Cli::try_parse_from(["airlock", "run", "--mem", "12Q", "--", "true"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        let e = Cli::try_parse_from(["airlock", "--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
    }
}
