//! `airlock doctor`: what this host supports.

use std::process::ExitCode;

use airlock_runtime::CheckStatus;

/// Report user namespaces, Landlock, seccomp, cgroups and overlayfs support.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn main(args: Args) -> anyhow::Result<ExitCode> {
    let checks = airlock_runtime::doctor();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            let tag = match c.status {
                CheckStatus::Ok => "ok",
                CheckStatus::Degraded => "degraded",
                CheckStatus::Missing => "missing",
            };
            println!("{:<16} {:<9} {}", c.name, tag, c.detail);
            if let Some(h) = &c.hint {
                println!("{:<16} {:<9} hint: {h}", "", "");
            }
        }
    }
    let fatal = checks.iter().any(|c| {
        c.status == CheckStatus::Missing
            && matches!(c.name, "user namespaces" | "seccomp" | "kernel")
    });
    Ok(if fatal {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
