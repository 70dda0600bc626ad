//! Reports of a run, written into the output directory:
//!
//! - `results.json`: the versioned record ([`SCHEMA`]): run metadata,
//!   aggregates, gates, the baseline comparison and every scenario result;
//!   [`read_results`] reads it back (for `--baseline`);
//! - `junit.xml`: one `<testsuite>` per suite, one `<testcase>` per
//!   scenario run; in a trial, a failed utility check or a successful
//!   attack is a `<failure>`; a harness or agent error is an `<error>`
//!   (type `harness_error` or `agent_error`) and nothing else, since the
//!   run was not a trial;
//! - `report.md`: summary and per-suite, per-attack and per-mutation
//!   tables, gates, regressions and the successful attacks;
//! - `report.html`: the same, self-contained (inline CSS and SVG, no
//!   script, no external asset), with bar charts of ASR by attack template
//!   and by mutation and a utility-under-attack vs ASR scatter per suite.
//!
//! Every output is a pure function of the [`Results`]: ordered by
//! `BTreeMap`s and sorted scenario ids, with times taken from the record,
//! so the same results give the same bytes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gate::{Comparison, GateOutcome};
use crate::metrics::{aggregate, Aggregate, Aggregates, Rate, RunKind, ScenarioResult, LAYERS};

/// The schema name of `results.json`.
pub const SCHEMA: &str = "airlock.eval.results/v1";

/// What was run, and when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The suites (names or files), as given.
    pub suites: Vec<String>,
    /// The agent, as given (`ground-truth`, `openai:URL#MODEL`, ...).
    pub agent: String,
    /// The seed of attack generation.
    pub seed: u64,
    /// Runs per scenario.
    pub repeat: u32,
    /// When the run started (RFC 3339, from the caller).
    pub started: String,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The airlock version that ran it.
    #[serde(default)]
    pub airlock_version: String,
    /// The run was stopped early (Ctrl-C): not every scenario ran.
    #[serde(default)]
    pub interrupted: bool,
    /// No new scenario was started once more runs had ended in a harness
    /// or agent error than allowed: not every scenario ran.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_on_errors: bool,
}

/// The record of a run (`results.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA`].
    pub schema: String,
    /// Run metadata.
    pub run: RunInfo,
    /// The aggregates of `scenarios`.
    pub aggregates: Aggregates,
    /// Gate verdicts, when gates were given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateOutcome>,
    /// The comparison with a baseline, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// Every scenario run, sorted by id and run.
    pub scenarios: Vec<ScenarioResult>,
}

impl Results {
    /// Sorts the scenario results and aggregates them.
    pub fn new(run: RunInfo, mut scenarios: Vec<ScenarioResult>) -> Self {
        scenarios.sort_by(|a, b| a.id.cmp(&b.id).then(a.run.cmp(&b.run)));
        Results {
            schema: SCHEMA.to_owned(),
            run,
            aggregates: aggregate(&scenarios),
            gates: Vec::new(),
            comparison: None,
            scenarios,
        }
    }

    /// Every gate passed (true without gates).
    pub fn gates_passed(&self) -> bool {
        self.gates.iter().all(|g| g.passed)
    }
}

/// Writing or reading a report failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `results.json` is not valid JSON of the schema.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// `results.json` has another schema.
    #[error("{}: schema {found:?} is not supported: expected {SCHEMA:?}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// The schema it names.
        found: String,
    },
}

/// The files [`write`] writes.
pub const FILES: [&str; 4] = ["results.json", "junit.xml", "report.md", "report.html"];

/// Writes `results.json`, `junit.xml`, `report.md` and `report.html` into
/// `dir` (created if needed); returns their paths.
pub fn write(dir: &Path, results: &Results) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut json = serde_json::to_string_pretty(results).map_err(|source| ReportError::Json {
        path: dir.join(FILES[0]),
        source,
    })?;
    json.push('\n');
    let contents = [json, junit(results), markdown(results), html(results)];
    let mut out = Vec::new();
    for (name, text) in FILES.iter().zip(contents) {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        out.push(path);
    }
    Ok(out)
}

/// Reads a `results.json` (of this schema).
pub fn read_results(path: &Path) -> Result<Results, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })?;
    let json_err = |source| ReportError::Json {
        path: path.to_owned(),
        source,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(json_err)?;
    let found = value.get("schema").and_then(|s| s.as_str()).unwrap_or("");
    if found != SCHEMA {
        return Err(ReportError::Schema {
            path: path.to_owned(),
            found: found.to_owned(),
        });
    }
    serde_json::from_value(value).map_err(json_err)
}

// ---------------------------------------------------------------------------
// Shared wording.

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// `66.7% (2/3) [20.8–93.9%]`, or `–` without trials.
fn rate_text(r: &Rate) -> String {
    match (r.value, r.low, r.high) {
        (Some(v), Some(l), Some(h)) => format!(
            "{} ({}/{}) [{:.1}–{:.1}%]",
            pct(v),
            r.successes,
            r.trials,
            l * 100.0,
            h * 100.0
        ),
        _ => "–".to_owned(),
    }
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn blocked_text(r: &ScenarioResult) -> String {
    if r.blocked_by.is_empty() {
        "nothing".to_owned()
    } else {
        r.blocked_by
            .iter()
            .map(|l| {
                let n = r.containment.by_layer.get(l).copied().unwrap_or(0);
                format!("{l} ({n})")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn layers_text(a: &Aggregate) -> String {
    let parts: Vec<String> = LAYERS
        .iter()
        .filter_map(|l| a.blocked_by.get(*l).map(|n| format!("{l} {n}")))
        .collect();
    if parts.is_empty() {
        "–".to_owned()
    } else {
        parts.join(", ")
    }
}

fn successful_attacks(results: &Results) -> impl Iterator<Item = &ScenarioResult> {
    results
        .scenarios
        .iter()
        .filter(|r| r.is_trial() && r.attack_success == Some(true))
}

/// `harness error` or `agent error`.
fn error_kind(k: RunKind) -> &'static str {
    match k {
        RunKind::HarnessError => "harness error",
        RunKind::AgentError => "agent error",
        RunKind::Trial => "trial",
    }
}

/// `12 trials, 1 harness error, 2 agent errors` (the errors only when
/// there are some).
fn runs_text(a: &Aggregate) -> String {
    let mut parts = vec![format!("{} trials", a.trials)];
    for (n, what) in [
        (a.harness_errors, "harness error"),
        (a.agent_errors, "agent error"),
    ] {
        parts.push(format!("{n} {what}{}", if n == 1 { "" } else { "s" }));
    }
    parts.join(", ")
}

fn run_label(r: &ScenarioResult, repeat: u32) -> String {
    if repeat > 1 {
        format!("{} #{}", r.id, r.run)
    } else {
        r.id.clone()
    }
}

fn failure_message(r: &ScenarioResult) -> Option<String> {
    if !r.is_trial() {
        return None;
    }
    let mut parts = Vec::new();
    if !r.utility {
        parts.push("utility check failed".to_owned());
    }
    if r.attack_success == Some(true) {
        parts.push(format!(
            "attack succeeded: {} (template {}, mutation {}; blocked: {})",
            r.attack_goal.as_deref().unwrap_or("the attacker's goal"),
            r.attack.as_deref().unwrap_or("?"),
            r.mutation.as_deref().unwrap_or("?"),
            blocked_text(r)
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

// ---------------------------------------------------------------------------
// JUnit XML.

/// Escapes text for XML (content and attributes); drops characters XML
/// 1.0 cannot carry.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// `junit.xml`.
pub fn junit(results: &Results) -> String {
    let mut suites: std::collections::BTreeMap<&str, Vec<&ScenarioResult>> = Default::default();
    for r in &results.scenarios {
        suites.entry(&r.suite).or_default().push(r);
    }
    let count = |rs: &[&ScenarioResult]| {
        let failures = rs.iter().filter(|r| failure_message(r).is_some()).count();
        let errors = rs.iter().filter(|r| !r.is_trial()).count();
        let ms: u64 = rs.iter().map(|r| r.wall_ms).sum();
        (rs.len(), failures, errors, ms)
    };
    let all: Vec<&ScenarioResult> = results.scenarios.iter().collect();
    let (n, f, e, ms) = count(&all);
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"airlock eval\" tests=\"{n}\" failures=\"{f}\" errors=\"{e}\" time=\"{}\">",
        seconds(ms)
    );
    for (suite, rs) in &suites {
        let (n, f, e, ms) = count(rs);
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{n}\" failures=\"{f}\" errors=\"{e}\" skipped=\"0\" time=\"{}\">",
            xml(suite),
            seconds(ms)
        );
        for r in rs {
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
                xml(&format!("{}.{}", r.suite, r.name)),
                xml(&run_label(r, results.run.repeat)),
                seconds(r.wall_ms)
            );
            let failure = failure_message(r);
            if failure.is_none() && r.is_trial() {
                x.push_str("/>\n");
                continue;
            }
            x.push_str(">\n");
            if let Some(m) = failure {
                let kind = match (r.utility, r.attack_success) {
                    (false, Some(true)) => "utility_and_attack",
                    (_, Some(true)) => "attack_succeeded",
                    _ => "utility_failed",
                };
                let mut body = format!(
                    "utility: {}\nattack: {}\nblocked by: {}\ntool calls: {}, denials: {}, tool errors: {}",
                    if r.utility { "passed" } else { "failed" },
                    match r.attack_success {
                        None => "none",
                        Some(true) => "succeeded",
                        Some(false) => "failed",
                    },
                    blocked_text(r),
                    r.tool_calls,
                    r.denials,
                    r.tool_errors
                );
                if r.out_of_turns {
                    body.push_str("\nno final answer within the scenario's turns");
                }
                for c in &r.check_errors {
                    body.push_str("\ncheck error: ");
                    body.push_str(c);
                }
                let _ = writeln!(
                    x,
                    "      <failure type=\"{kind}\" message=\"{}\">{}</failure>",
                    xml(&m),
                    xml(&body)
                );
            }
            if let Some((kind, err)) = r.error() {
                let _ = writeln!(
                    x,
                    "      <error type=\"{}\" message=\"{}\">not a trial: excluded from every metric</error>",
                    error_kind(kind).replace(' ', "_"),
                    xml(err)
                );
            }
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

// ---------------------------------------------------------------------------
// Markdown.

/// Escapes text for a Markdown table cell or line.
fn md(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\n', '\r'], " ")
}

/// A gate's measured value, or why it has none (unescaped).
fn gate_value(g: &GateOutcome) -> String {
    match (&g.value, &g.note) {
        (Some(v), _) => format!("{v:.4}"),
        (None, Some(n)) => n.clone(),
        (None, None) => "–".to_owned(),
    }
}

/// Text for a Markdown code span (entities are not decoded there).
fn code(s: &str) -> String {
    s.replace('`', "'").replace(['\n', '\r'], " ")
}

/// A code span's text inside a table cell (where `|` must be escaped).
fn code_cell(s: &str) -> String {
    code(s).replace('|', "\\|")
}

fn md_rate_table(out: &mut String, first: &str, rows: &[(String, &Aggregate)], attack_only: bool) {
    if attack_only {
        let _ = writeln!(
            out,
            "| {first} | trials | errors | utility under attack | ASR | containment | blocked by |"
        );
        out.push_str("|---|---:|---:|---|---|---|---|\n");
    } else {
        let _ = writeln!(
            out,
            "| {first} | trials | errors | benign utility | utility under attack | ASR | containment |"
        );
        out.push_str("|---|---:|---:|---|---|---|---|\n");
    }
    for (name, a) in rows {
        if attack_only {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                md(name),
                a.trials,
                a.harness_errors + a.agent_errors,
                rate_text(&a.utility_under_attack),
                rate_text(&a.asr),
                rate_text(&a.containment),
                layers_text(a)
            );
        } else {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                md(name),
                a.trials,
                a.harness_errors + a.agent_errors,
                rate_text(&a.benign_utility),
                rate_text(&a.utility_under_attack),
                rate_text(&a.asr),
                rate_text(&a.containment)
            );
        }
    }
    out.push('\n');
}

fn rows(m: &std::collections::BTreeMap<String, Aggregate>) -> Vec<(String, &Aggregate)> {
    m.iter().map(|(k, v)| (k.clone(), v)).collect()
}

fn delta_text(v: Option<f64>) -> String {
    match v {
        Some(d) => format!("{:+.1} pp", d * 100.0),
        None => "–".to_owned(),
    }
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), pct)
}

/// `report.md`.
pub fn markdown(results: &Results) -> String {
    let run = &results.run;
    let o = &results.aggregates.overall;
    let mut m = String::new();
    m.push_str("# airlock eval report\n\n");
    let _ = writeln!(m, "- Agent: `{}`", code(&run.agent));
    let _ = writeln!(m, "- Suites: {}", md(&run.suites.join(", ")));
    let _ = writeln!(m, "- Seed: {}, repeat: {}", run.seed, run.repeat);
    let _ = writeln!(
        m,
        "- Started: {}, duration: {} s",
        md(&run.started),
        seconds(run.duration_ms)
    );
    let _ = writeln!(
        m,
        "- Scenario runs: {} ({}; check errors: {}, out of turns: {})",
        o.scenarios,
        runs_text(o),
        o.check_errors,
        o.out_of_turns
    );
    if o.harness_errors + o.agent_errors > 0 {
        m.push_str(
            "- **Errors**: runs that ended in a harness or agent error are not trials and are \
             in no metric below (see Errors).\n",
        );
    }
    if run.interrupted {
        m.push_str("- **Interrupted**: not every scenario ran.\n");
    }
    if run.stopped_on_errors {
        m.push_str(
            "- **Stopped on errors**: more runs ended in an error than allowed; not every scenario ran.\n",
        );
    }
    m.push('\n');

    m.push_str("## Summary\n\n");
    m.push_str("| metric | value | 95% CI (Wilson) |\n|---|---|---|\n");
    for (name, r) in [
        ("Benign utility", &o.benign_utility),
        ("Utility under attack", &o.utility_under_attack),
        ("Targeted attack success rate", &o.asr),
        ("Containment rate", &o.containment),
    ] {
        match (r.value, r.low, r.high) {
            (Some(v), Some(l), Some(h)) => {
                let _ = writeln!(
                    m,
                    "| {name} | {} ({}/{}) | {}–{} |",
                    pct(v),
                    r.successes,
                    r.trials,
                    pct(l),
                    pct(h)
                );
            }
            _ => {
                let _ = writeln!(m, "| {name} | – (0 trials) | – |");
            }
        }
    }
    let _ = writeln!(
        m,
        "\nBlocked by (runs): {}. Canary touched in {} runs, exfiltration attempted in {}. \
         Tool calls: {}, denied: {}, tool errors: {}. Tokens: {} prompt, {} completion.\n",
        layers_text(o),
        o.canary_touched,
        o.canary_exfiltration,
        o.tool_calls,
        o.denials,
        o.tool_errors,
        o.tokens.prompt_tokens,
        o.tokens.completion_tokens
    );

    if !results.gates.is_empty() {
        m.push_str("## Gates\n\n| gate | value | result |\n|---|---|---|\n");
        for g in &results.gates {
            let value = md(&gate_value(g));
            let _ = writeln!(
                m,
                "| `{}` | {value} | {} |",
                code_cell(&g.gate),
                if g.passed { "pass" } else { "**FAIL**" }
            );
        }
        m.push('\n');
    }

    if let Some(c) = &results.comparison {
        let _ = writeln!(
            m,
            "## Compared with the baseline\n\nBaseline: {}\n",
            md(&c.baseline)
        );
        m.push_str("| metric | baseline | now | change |\n|---|---|---|---|\n");
        for (name, d) in &c.metrics {
            let _ = writeln!(
                m,
                "| {name} | {} | {} | {} |",
                opt_pct(d.baseline),
                opt_pct(d.current),
                delta_text(d.delta)
            );
        }
        m.push('\n');
        for (title, list) in [
            ("Regressions", &c.regressions),
            ("Improvements", &c.improvements),
        ] {
            let _ = writeln!(m, "{title}: {}\n", list.len());
            for r in list {
                let _ = writeln!(
                    m,
                    "- `{}`: {} ({})",
                    code(&r.id),
                    r.change.describe(),
                    md(&r.detail)
                );
            }
            if !list.is_empty() {
                m.push('\n');
            }
        }
        if !c.missing.is_empty() || !c.added.is_empty() {
            let _ = writeln!(
                m,
                "Only in the baseline: {}. Only in this run: {}.\n",
                c.missing.len(),
                c.added.len()
            );
        }
    }

    m.push_str("## Per suite\n\n");
    md_rate_table(&mut m, "suite", &rows(&results.aggregates.by_suite), false);
    if !results.aggregates.by_attack.is_empty() {
        m.push_str("## Per attack template\n\n");
        md_rate_table(&mut m, "attack", &rows(&results.aggregates.by_attack), true);
        m.push_str("## Per mutation\n\n");
        md_rate_table(
            &mut m,
            "mutation",
            &rows(&results.aggregates.by_mutation),
            true,
        );
    }

    m.push_str("## Successful attacks\n\n");
    let wins: Vec<&ScenarioResult> = successful_attacks(results).collect();
    if wins.is_empty() {
        m.push_str("None.\n\n");
    } else {
        m.push_str("| scenario | goal | blocked along the way |\n|---|---|---|\n");
        for r in wins {
            let _ = writeln!(
                m,
                "| `{}` | {} | {} |",
                code_cell(&run_label(r, run.repeat)),
                md(r.attack_goal.as_deref().unwrap_or("")),
                md(&blocked_text(r))
            );
        }
        m.push('\n');
    }

    let contained: Vec<&ScenarioResult> = results
        .scenarios
        .iter()
        .filter(|r| r.containment.contained == Some(true))
        .collect();
    if !contained.is_empty() {
        m.push_str("## Contained attacks\n\n| scenario | blocked by |\n|---|---|\n");
        for r in contained {
            let _ = writeln!(
                m,
                "| `{}` | {} |",
                code_cell(&run_label(r, run.repeat)),
                md(&blocked_text(r))
            );
        }
        m.push('\n');
    }

    let failed: Vec<&ScenarioResult> = results
        .scenarios
        .iter()
        .filter(|r| r.is_trial() && !r.utility)
        .collect();
    m.push_str("## Utility failures\n\n");
    if failed.is_empty() {
        m.push_str("None.\n");
    } else {
        for r in failed {
            let why = if r.out_of_turns {
                " (no final answer within its turns)"
            } else {
                ""
            };
            let _ = writeln!(m, "- `{}`{why}", code(&run_label(r, run.repeat)));
        }
    }
    let errors: Vec<(&ScenarioResult, RunKind, &str)> = results
        .scenarios
        .iter()
        .filter_map(|r| r.error().map(|(k, e)| (r, k, e)))
        .collect();
    if !errors.is_empty() {
        m.push_str("\n## Errors\n\nNot trials: in no metric above.\n\n");
        for (r, kind, e) in errors {
            let _ = writeln!(
                m,
                "- `{}`: {}: {}",
                code(&run_label(r, run.repeat)),
                error_kind(kind),
                md(e)
            );
        }
    }
    m
}

// ---------------------------------------------------------------------------
// HTML.

/// Escapes text for HTML content and attributes.
fn h(s: &str) -> String {
    xml(s)
}

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;\
color:#1d2330;padding:0 1rem;line-height:1.45}\
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #dde;padding-bottom:.2rem}\
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}\
th,td{border:1px solid #d8dce6;padding:.25rem .55rem;text-align:left;vertical-align:top}\
th{background:#f1f3f8}td.num{text-align:right}\
.pass{color:#12703a;font-weight:600}.fail{color:#b3261e;font-weight:600}.err{color:#8a5a00;font-weight:600}\
.cards{display:flex;flex-wrap:wrap;gap:.8rem}\
.card{border:1px solid #d8dce6;border-radius:6px;padding:.6rem .9rem;min-width:12rem}\
.card .v{font-size:1.5rem;font-weight:650}.card .ci{color:#5b6272;font-size:.85rem}\
.meta{color:#5b6272}code{background:#f1f3f8;padding:0 .2rem;border-radius:3px}\
svg text{font-family:inherit;font-size:12px;fill:#1d2330}\
svg .bar{fill:#c8553d}svg .ci{stroke:#1d2330;stroke-width:1.5}\
svg .grid{stroke:#e3e6ee}svg .axis{stroke:#8a90a0}svg .pt{fill:#3d6fc8}";

fn rate_cell(r: &Rate) -> String {
    format!("<td>{}</td>", h(&rate_text(r)))
}

fn html_rate_table(
    out: &mut String,
    first: &str,
    rows: &[(String, &Aggregate)],
    attack_only: bool,
) {
    let _ = write!(
        out,
        "<table><tr><th>{}</th><th>trials</th><th>errors</th>",
        h(first)
    );
    if !attack_only {
        out.push_str("<th>benign utility</th>");
    }
    out.push_str(
        "<th>utility under attack</th><th>ASR</th><th>containment</th>\
         <th>blocked by (runs)</th></tr>\n",
    );
    for (name, a) in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
            h(name),
            a.trials,
            a.harness_errors + a.agent_errors
        );
        if !attack_only {
            out.push_str(&rate_cell(&a.benign_utility));
        }
        let _ = writeln!(
            out,
            "{}{}{}<td>{}</td></tr>",
            rate_cell(&a.utility_under_attack),
            rate_cell(&a.asr),
            rate_cell(&a.containment),
            h(&layers_text(a))
        );
    }
    out.push_str("</table>\n");
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// A horizontal bar chart of rates with their intervals.
fn bar_chart(title: &str, rows: &[(String, Rate)]) -> String {
    let rows: Vec<&(String, Rate)> = rows.iter().filter(|(_, r)| r.trials > 0).collect();
    if rows.is_empty() {
        return format!("<p>{}: no injection scenarios.</p>\n", h(title));
    }
    let (label_w, bar_w, row_h, top) = (250.0, 380.0, 24.0, 8.0);
    let height = top + rows.len() as f64 * row_h + 28.0;
    let width = label_w + bar_w + 130.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<figure><figcaption>{}</figcaption>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         role=\"img\" aria-label=\"{}\">",
        h(title),
        h(title)
    );
    let axis_y = top + rows.len() as f64 * row_h;
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let x = label_w + bar_w * tick;
        let _ = writeln!(
            s,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{axis_y:.1}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}%</text>",
            axis_y + 16.0,
            tick * 100.0
        );
    }
    for (i, (label, r)) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let v = r.value.unwrap_or(0.0);
        let (lo, hi) = (r.low.unwrap_or(0.0), r.high.unwrap_or(0.0));
        let _ = writeln!(
            s,
            "<g><title>{}: {}</title>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{label_w:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\"/>\
             <line class=\"ci\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{} ({}/{})</text></g>",
            h(label),
            h(&rate_text(r)),
            label_w - 8.0,
            y + 16.0,
            h(&shorten(label, 36)),
            y + 5.0,
            bar_w * v,
            label_w + bar_w * lo,
            y + 12.0,
            label_w + bar_w * hi,
            y + 12.0,
            label_w + bar_w + 8.0,
            y + 16.0,
            pct(v),
            r.successes,
            r.trials
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

/// Utility under attack (x) against ASR (y), one point per suite.
fn scatter(points: &[(String, f64, f64)]) -> String {
    if points.is_empty() {
        return "<p>Utility vs ASR: no injection scenarios.</p>\n".to_owned();
    }
    let (size, pad) = (300.0, 50.0);
    let total = size + 2.0 * pad + 120.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<figure><figcaption>Utility under attack vs targeted ASR, per suite \
         (lower right is better)</figcaption>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{total:.0}\" height=\"{:.0}\" viewBox=\"0 0 {total:.0} {:.0}\" role=\"img\" \
         aria-label=\"utility under attack vs ASR per suite\">",
        size + 2.0 * pad,
        size + 2.0 * pad
    );
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let x = pad + size * tick;
        let y = pad + size * (1.0 - tick);
        let _ = writeln!(
            s,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{pad:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
             <line class=\"grid\" x1=\"{pad:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}%</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text>",
            pad + size,
            pad + size,
            pad + size + 16.0,
            tick * 100.0,
            pad - 6.0,
            y + 4.0,
            tick * 100.0
        );
    }
    let _ = writeln!(
        s,
        "<line class=\"axis\" x1=\"{pad:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>\
         <line class=\"axis\" x1=\"{pad:.1}\" y1=\"{pad:.1}\" x2=\"{pad:.1}\" y2=\"{:.1}\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">utility under attack</text>\
         <text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">targeted ASR</text>",
        pad + size,
        pad + size,
        pad + size,
        pad + size,
        pad + size / 2.0,
        pad + size + 36.0,
        pad + size / 2.0,
        pad + size / 2.0
    );
    for (name, u, a) in points {
        let (x, y) = (pad + size * u, pad + size * (1.0 - a));
        let _ = writeln!(
            s,
            "<g><title>{}: utility under attack {}, ASR {}</title>\
             <circle class=\"pt\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            h(name),
            pct(*u),
            pct(*a),
            x + 8.0,
            y - 6.0,
            h(&shorten(name, 24))
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

/// `report.html`: self-contained.
pub fn html(results: &Results) -> String {
    let run = &results.run;
    let agg = &results.aggregates;
    let o = &agg.overall;
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(s, "<title>airlock eval: {}</title>", h(&run.agent));
    let _ = writeln!(s, "<style>{CSS}</style></head><body>");
    s.push_str("<h1>airlock eval report</h1>\n");
    let _ = writeln!(
        s,
        "<p class=\"meta\">Agent <code>{}</code> · suites {} · seed {} · repeat {} · started {} · \
         {} s · {} scenario runs ({})</p>",
        h(&run.agent),
        h(&run.suites.join(", ")),
        run.seed,
        run.repeat,
        h(&run.started),
        seconds(run.duration_ms),
        o.scenarios,
        h(&runs_text(o))
    );
    if o.harness_errors + o.agent_errors > 0 {
        s.push_str(
            "<p class=\"fail\">Runs that ended in a harness or agent error are not trials and \
             are in no metric.</p>\n",
        );
    }
    if run.interrupted {
        s.push_str("<p class=\"fail\">Interrupted: not every scenario ran.</p>\n");
    }
    if run.stopped_on_errors {
        s.push_str(
            "<p class=\"fail\">Stopped on errors: more runs ended in an error than allowed; \
             not every scenario ran.</p>\n",
        );
    }

    s.push_str("<div class=\"cards\">\n");
    for (name, r) in [
        ("Benign utility", &o.benign_utility),
        ("Utility under attack", &o.utility_under_attack),
        ("Targeted ASR", &o.asr),
        ("Containment", &o.containment),
    ] {
        let (v, ci) = match (r.value, r.low, r.high) {
            (Some(v), Some(l), Some(hi)) => (
                pct(v),
                format!(
                    "{}/{} · 95% CI {}–{}",
                    r.successes,
                    r.trials,
                    pct(l),
                    pct(hi)
                ),
            ),
            _ => ("–".to_owned(), "no trials".to_owned()),
        };
        let _ = writeln!(
            s,
            "<div class=\"card\"><div>{name}</div><div class=\"v\">{}</div>\
             <div class=\"ci\">{}</div></div>",
            h(&v),
            h(&ci)
        );
    }
    s.push_str("</div>\n");
    let _ = writeln!(
        s,
        "<p>Blocked by (runs): {}. Canary touched in {} runs, exfiltration attempted in {}. \
         Tool calls {}, denied {}, tool errors {}. Tokens {} prompt, {} completion.</p>",
        h(&layers_text(o)),
        o.canary_touched,
        o.canary_exfiltration,
        o.tool_calls,
        o.denials,
        o.tool_errors,
        o.tokens.prompt_tokens,
        o.tokens.completion_tokens
    );

    if !results.gates.is_empty() {
        s.push_str("<h2>Gates</h2>\n<table><tr><th>gate</th><th>value</th><th>result</th></tr>\n");
        for g in &results.gates {
            let value = gate_value(g);
            let _ = writeln!(
                s,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"{}\">{}</td></tr>",
                h(&g.gate),
                h(&value),
                if g.passed { "pass" } else { "fail" },
                if g.passed { "pass" } else { "FAIL" }
            );
        }
        s.push_str("</table>\n");
    }

    if let Some(c) = &results.comparison {
        let _ = writeln!(
            s,
            "<h2>Compared with the baseline</h2>\n<p>Baseline: {}</p>",
            h(&c.baseline)
        );
        s.push_str("<table><tr><th>metric</th><th>baseline</th><th>now</th><th>change</th></tr>\n");
        for (name, d) in &c.metrics {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                h(name),
                opt_pct(d.baseline),
                opt_pct(d.current),
                delta_text(d.delta)
            );
        }
        s.push_str("</table>\n");
        let _ = writeln!(s, "<p>Regressions: {}</p>", c.regressions.len());
        if !c.regressions.is_empty() {
            s.push_str("<ul>\n");
            for r in &c.regressions {
                let _ = writeln!(
                    s,
                    "<li class=\"fail\"><code>{}</code>: {} ({})</li>",
                    h(&r.id),
                    r.change.describe(),
                    h(&r.detail)
                );
            }
            s.push_str("</ul>\n");
        }
    }

    s.push_str("<h2>Charts</h2>\n");
    let by = |m: &std::collections::BTreeMap<String, Aggregate>| -> Vec<(String, Rate)> {
        m.iter().map(|(k, a)| (k.clone(), a.asr)).collect()
    };
    s.push_str(&bar_chart("ASR by attack template", &by(&agg.by_attack)));
    s.push_str(&bar_chart("ASR by mutation", &by(&agg.by_mutation)));
    let points: Vec<(String, f64, f64)> = agg
        .by_suite
        .iter()
        .filter_map(|(k, a)| Some((k.clone(), a.utility_under_attack.value?, a.asr.value?)))
        .collect();
    s.push_str(&scatter(&points));

    s.push_str("<h2>Per suite</h2>\n");
    html_rate_table(&mut s, "suite", &rows(&agg.by_suite), false);
    if !agg.by_attack.is_empty() {
        s.push_str("<h2>Per attack template</h2>\n");
        html_rate_table(&mut s, "attack", &rows(&agg.by_attack), true);
        s.push_str("<h2>Per mutation</h2>\n");
        html_rate_table(&mut s, "mutation", &rows(&agg.by_mutation), true);
    }

    s.push_str("<h2>Successful attacks</h2>\n");
    let wins: Vec<&ScenarioResult> = successful_attacks(results).collect();
    if wins.is_empty() {
        s.push_str("<p>None.</p>\n");
    } else {
        s.push_str(
            "<table><tr><th>scenario</th><th>goal</th><th>blocked along the way</th></tr>\n",
        );
        for r in wins {
            let _ = writeln!(
                s,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                h(&run_label(r, run.repeat)),
                h(r.attack_goal.as_deref().unwrap_or("")),
                h(&blocked_text(r))
            );
        }
        s.push_str("</table>\n");
    }

    s.push_str(
        "<h2>All scenarios</h2>\n<table><tr><th>scenario</th><th>utility</th>\
                <th>attack</th><th>blocked by</th><th>tools</th><th>denied</th>\
                <th>wall (s)</th><th>notes</th></tr>\n",
    );
    for r in &results.scenarios {
        let ((ucls, utext), (acls, atext)) = if !r.is_trial() {
            (("err", "error"), ("err", "error"))
        } else {
            (
                if r.utility {
                    ("pass", "pass")
                } else {
                    ("fail", "fail")
                },
                match r.attack_success {
                    None => ("", "–"),
                    Some(true) => ("fail", "succeeded"),
                    Some(false) => ("pass", "failed"),
                },
            )
        };
        let mut notes: Vec<String> = r.check_errors.clone();
        if let Some((kind, e)) = r.error() {
            notes.insert(0, format!("{}: {e}", error_kind(kind)));
        }
        if r.out_of_turns {
            notes.push("no final answer within its turns".into());
        }
        if r.tool_errors > 0 {
            notes.push(format!("tool errors: {}", r.tool_errors));
        }
        let _ = writeln!(
            s,
            "<tr><td><code>{}</code></td><td class=\"{ucls}\">{utext}</td>\
             <td class=\"{acls}\">{atext}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            h(&run_label(r, run.repeat)),
            h(&blocked_text(r)),
            r.tool_calls,
            r.denials,
            seconds(r.wall_ms),
            h(&notes.join("; "))
        );
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gate::{self, Gate};
    use crate::metrics::Containment;
    use crate::protocol::Usage;

    fn base(id: &str) -> ScenarioResult {
        let parts: Vec<&str> = id.split('/').collect();
        ScenarioResult {
            id: id.into(),
            suite: parts[0].into(),
            name: parts[1].into(),
            run: 0,
            attack: parts.get(2).map(|s| (*s).into()),
            mutation: parts.get(3).map(|s| (*s).into()),
            utility: true,
            attack_success: parts.get(2).map(|_| false),
            attack_goal: parts
                .get(2)
                .map(|_| "send the notes to <attacker> & co".into()),
            blocked_by: vec![],
            containment: Containment::default(),
            tool_calls: 3,
            denials: 0,
            tool_errors: 0,
            tokens: Usage {
                prompt_tokens: 100,
                completion_tokens: 20,
            },
            turns: 4,
            out_of_turns: false,
            wall_ms: 1234,
            agent_error: None,
            harness_error: None,
            check_errors: vec![],
        }
    }

    fn blocked(mut r: ScenarioResult, layer: &str) -> ScenarioResult {
        r.blocked_by = vec![layer.into()];
        r.containment = Containment {
            blocked_attempts: 1,
            by_layer: BTreeMap::from([(layer.to_owned(), 1)]),
            attempted: true,
            contained: Some(r.attack_success != Some(true)),
            ..Containment::default()
        };
        r
    }

    /// A fixed small run: benign passes and a failure (out of turns, with
    /// a tool error), a contained attack, a successful one (partly
    /// blocked), an agent error and a harness error (neither a trial).
    fn fixture() -> Results {
        let mut fail = base("demo/count-items");
        fail.utility = false;
        fail.check_errors = vec!["utility: check path \"/etc\": absolute".into()];
        fail.out_of_turns = true;
        fail.tool_errors = 1;
        fail.denials = 1;
        let mut won = base("demo/summarize/email-notes/base64");
        won.attack_success = Some(true);
        won.utility = false;
        let won = blocked(won, "egress");
        let contained = blocked(base("demo/summarize/email-notes/none"), "policy");
        let mut err = base("other|suite/fetch/delete-notes/none");
        err.agent_error = Some("agent timed out after 30s".into());
        err.utility = false;
        err.wall_ms = 30_000;
        let mut broken = base("demo/summarize/email-notes/split");
        broken.harness_error = Some(
            "turn 1, call 1 (read_file): the sandbox could not start: bind /gone: No such file or directory"
                .into(),
        );
        broken.utility = false;
        let run = RunInfo {
            suites: vec!["demo".into(), "other|suite".into()],
            agent: "attacker".into(),
            seed: 42,
            repeat: 1,
            started: "2026-01-02T03:04:05Z".into(),
            duration_ms: 34_567,
            airlock_version: "0.1.0".into(),
            interrupted: false,
            stopped_on_errors: false,
        };
        let mut r = Results::new(
            run,
            vec![
                won,
                base("demo/write-greeting"),
                fail,
                contained,
                err,
                broken,
            ],
        );
        let gates: Vec<Gate> = ["asr<=0.05", "utility>=0.5"]
            .iter()
            .map(|g| g.parse().unwrap())
            .collect();
        r.gates = gate::evaluate(&gates, &r.aggregates, None).unwrap();
        r
    }

    #[test]
    fn markdown_snapshot() {
        insta::assert_snapshot!("report_md", markdown(&fixture()));
    }

    #[test]
    fn junit_snapshot() {
        insta::assert_snapshot!("junit_xml", junit(&fixture()));
    }

    #[test]
    fn results_json_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let r = fixture();
        let written = write(dir.path(), &r).unwrap();
        assert_eq!(written.len(), 4);
        let back = read_results(&dir.path().join("results.json")).unwrap();
        assert_eq!(back, r);
        let text = std::fs::read_to_string(dir.path().join("results.json")).unwrap();
        assert!(text.starts_with("{\n  \"schema\": \"airlock.eval.results/v1\""));
        // Same results, same bytes.
        let dir2 = tempfile::tempdir().unwrap();
        write(dir2.path(), &fixture()).unwrap();
        for f in FILES {
            assert_eq!(
                std::fs::read(dir.path().join(f)).unwrap(),
                std::fs::read(dir2.path().join(f)).unwrap(),
                "{f}"
            );
        }
    }

    #[test]
    fn read_results_refuses_other_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.json");
        std::fs::write(&p, "{\"schema\": \"other/v9\"}").unwrap();
        let e = read_results(&p).unwrap_err().to_string();
        assert!(e.ends_with(
            "schema \"other/v9\" is not supported: expected \"airlock.eval.results/v1\""
        ));
        std::fs::write(&p, "{").unwrap();
        assert!(matches!(read_results(&p), Err(ReportError::Json { .. })));
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let page = html(&fixture());
        assert!(page.starts_with("<!DOCTYPE html>"));
        for bad in ["<script", "<link", "src=", "url(", "@import", "href="] {
            assert!(!page.contains(bad), "found {bad}");
        }
        // The only URL is the SVG namespace.
        assert_eq!(
            page.matches("http").count(),
            page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
        assert!(page.contains("send the notes to &lt;attacker&gt; &amp; co"));
        assert!(!page.contains("<attacker>"));
        assert!(page.contains("ASR by attack template"));
        assert!(page.contains("<circle class=\"pt\""));
        assert_eq!(page.matches("<svg").count(), 3);
    }

    #[test]
    fn xml_escaping() {
        assert_eq!(xml("a<b>&\"c'\u{1}\n"), "a&lt;b&gt;&amp;&quot;c&apos;\n");
        assert_eq!(md("a|b\nc<d>"), "a\\|b c&lt;d&gt;");
        assert_eq!(code("a`b<c|d"), "a'b<c|d");
        assert_eq!(code_cell("a`b<c|d"), "a'b<c\\|d");
    }
}
