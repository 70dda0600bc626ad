//! Diagnostics on stderr: one plain line per event, `airlock: LEVEL: ...`,
//! with colour only when stderr is a terminal and NO_COLOR is unset.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// An error already shown to the user (e.g. as a diagnostic with the
/// offending line): `main` exits 125 without printing it again.
#[derive(Debug)]
pub(crate) struct Reported(pub(crate) anyhow::Error);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Reported {}

/// Whether stderr gets colour: a terminal, and NO_COLOR unset or empty
/// (<https://no-color.org>).
pub(crate) fn stderr_ansi() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && rustix::termios::isatty(std::io::stderr())
}

/// Sets up tracing (filter `log`, else `default`) and miette.
pub(crate) fn init(log: Option<&str>, default: &str) {
    let ansi = stderr_ansi();
    let filter = tracing_subscriber::EnvFilter::try_new(log.unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .event_format(Line { ansi })
        .init();
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(ansi)
                .unicode(ansi)
                .build(),
        )
    }));
}

/// `airlock: warning: message field=value`, on one line.
struct Line {
    ansi: bool,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        let (label, colour) = match level {
            Level::ERROR => ("error", "31"),
            Level::WARN => ("warning", "33"),
            Level::INFO => ("info", "32"),
            Level::DEBUG => ("debug", "34"),
            Level::TRACE => ("trace", "35"),
        };
        if self.ansi {
            write!(w, "airlock: \x1b[{colour}m{label}\x1b[0m: ")?;
        } else {
            write!(w, "airlock: {label}: ")?;
        }
        if level >= Level::DEBUG {
            write!(w, "{}: ", event.metadata().target())?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}
