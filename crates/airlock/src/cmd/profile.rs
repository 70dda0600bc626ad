//! `airlock profile`: show, check and describe profiles.

use std::process::ExitCode;

use airlock_policy::{LoadError, Profile};

/// Profile commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Print a resolved profile (built-in name or file) as TOML, each value
    /// with a `# from FILE` comment naming the profile of the `extends`
    /// chain that set it (`default`: airlock's default).
    Show {
        /// Built-in name or path.
        name: String,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Validate a profile file; errors name the file, line and field.
    Check {
        /// Path to the profile.
        file: String,
    },
    /// Print the JSON Schema of the profile format.
    Schema,
    /// List the built-in profiles.
    List,
}

/// Load a profile, rendering a validation error once: on a terminal as a
/// diagnostic with the offending line, else as the one line `main` prints.
pub(crate) fn load(name: &str) -> anyhow::Result<Profile> {
    load_with_origins(name).map(|(p, _)| p)
}

/// [`load`], also returning where each value came from.
fn load_with_origins(name: &str) -> anyhow::Result<(Profile, airlock_policy::Origins)> {
    match Profile::load_with_origins(name) {
        Ok(p) => Ok(p),
        Err(LoadError::Invalid(e)) => {
            let span = e
                .source_span()
                .filter(|_| rustix::termios::isatty(std::io::stderr()));
            if let Some(span) = span {
                // The message is in the heading; the label only points.
                let report =
                    miette::miette!(labels = vec![miette::LabeledSpan::underline(span)], "{e}")
                        .with_source_code(miette::NamedSource::new(
                            e.origin(),
                            e.source_text().to_string(),
                        ));
                eprintln!("{report:?}");
                return Err(crate::diag::Reported(anyhow::Error::new(e)).into());
            }
            Err(anyhow::Error::new(e))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Show { name, json } => {
            let (p, origins) = load_with_origins(&name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print!("{}", p.to_toml_string_with_origins(&origins)?);
            }
        }
        Command::Check { file } => {
            let p = load(&file)?;
            airlock_runtime::check_profile(&p).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            println!("{file}: ok (profile {:?})", p.name);
        }
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&airlock_policy::profile_json_schema())?
            );
        }
        Command::List => {
            for n in airlock_policy::builtin_names() {
                let p = Profile::builtin(n)?;
                println!("{n:<10} {}", p.description);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
