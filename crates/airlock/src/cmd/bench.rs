//! `airlock bench`: benchmarks (placeholder replaced below).

use std::process::ExitCode;

/// Benchmark commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {}

pub(crate) fn main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {}
}
