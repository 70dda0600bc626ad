//! `airlock completions SHELL` and `airlock man`: what a packaged tool
//! installs next to its binary, generated from the same clap definition.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

/// Print a completion script for SHELL on stdout.
#[derive(Debug, clap::Args)]
#[command(after_help = "Install, e.g.:\n  \
bash: airlock completions bash > ~/.local/share/bash-completion/completions/airlock\n  \
zsh:  airlock completions zsh > ~/.zfunc/_airlock   (with fpath+=~/.zfunc before compinit)\n  \
fish: airlock completions fish > ~/.config/fish/completions/airlock.fish")]
pub(crate) struct CompletionsArgs {
    /// The shell.
    shell: Shell,
}

/// The shells airlock writes completions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Print a manual page (roff) on stdout, or write them all to a directory.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Read one with `airlock man | man -l -` or `airlock man run | man -l -`; \
install them all with `airlock man --out-dir /usr/local/share/man/man1` \
(airlock.1, airlock-run.1, airlock-profile-check.1, ...)."
)]
pub(crate) struct ManArgs {
    /// The subcommand whose page to print (e.g. `run`, or `profile check`);
    /// default: airlock(1) itself.
    #[arg(value_name = "SUBCOMMAND")]
    sub: Vec<String>,
    /// Write every page, airlock.1 and one per subcommand, to DIR (created
    /// if missing) instead of printing one.
    #[arg(long, value_name = "DIR", conflicts_with = "sub")]
    out_dir: Option<std::path::PathBuf>,
}

pub(crate) fn completions(
    args: CompletionsArgs,
    cmd: &mut clap::Command,
) -> anyhow::Result<ExitCode> {
    use clap_complete::Shell as S;
    let shell = match args.shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, cmd, "airlock", &mut out);
    write_stdout(&out)
}

pub(crate) fn man(args: ManArgs, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let mut cmd = cmd.disable_help_subcommand(true);
    // Gives every subcommand its display name (airlock-run) and bin name
    // (airlock run), which the pages use.
    cmd.build();
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("--out-dir {}", dir.display()))?;
        clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("--out-dir {}", dir.display()))?;
        println!("{}: manual pages written", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut page = &cmd;
    for name in &args.sub {
        page = page.find_subcommand(name).with_context(|| {
            let known: Vec<&str> = page.get_subcommands().map(|s| s.get_name()).collect();
            format!(
                "no subcommand {name:?} of {}: expected one of {}",
                page.get_bin_name().unwrap_or("airlock"),
                known.join(", ")
            )
        })?;
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(page.clone()).render(&mut out)?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes)?;
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}
