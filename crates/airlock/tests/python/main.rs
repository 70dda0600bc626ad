//! The Python package (`python/`) tested with the real clients: pytest runs
//! `python/tests` (the client suite, Inspect AI's own sandbox self-check
//! suite against the `airlock` provider, and `inspect eval` of the example
//! task with `mockllm/model`) against a real `airlock serve` that the
//! suite's conftest starts, once with the server as root and once rootless
//! (through `setpriv` as nobody when the tests run as root).
//!
//! The venv is made under the build's tmp directory from the pinned
//! `python/requirements-test.txt` (PyPI); the package itself is installed
//! with `pip install ./python` on every run, so the tests use what pip
//! installs, entry point included. A pip that cannot install fails the
//! test; it never skips.

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use common::*;

const REQUIREMENTS: &str = include_str!("../../../../python/requirements-test.txt");

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python")
}

/// The venv's Python, with the pins and this checkout's package installed.
fn venv_python() -> PathBuf {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let py = pinned_venv(
            "python",
            REQUIREMENTS,
            "the Python tests' pinned requirements (python/requirements-test.txt)",
        );
        // The venv's own setuptools builds it (no download): the package
        // has no compiled parts.
        pip_install(
            &py,
            [
                "--no-deps".as_ref(),
                "--no-build-isolation".as_ref(),
                "--force-reinstall".as_ref(),
                python_dir().as_os_str(),
            ],
            "pip install ./python failed",
        );
        py
    })
    .clone()
}

/// One pytest run at a time: both start a server with sandboxes of its own
/// and share the two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn pytest(mode: Mode) {
    let python = venv_python();
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = python_dir();
    // Inspect and pip keep state under HOME: a fresh one, removed after.
    let home = public_tempdir();
    let mut cmd = Command::new("timeout");
    cmd.arg("900")
        .arg(&python)
        .args([
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            "tests",
        ])
        .current_dir(&dir)
        .env_remove("AIRLOCK_URL")
        .env_remove("AIRLOCK_TOKEN")
        .env("HOME", home.path());
    match (mode, is_root()) {
        (Mode::Rootless, true) => {
            cmd.env("AIRLOCK_BIN", shared_public_airlock())
                .env("AIRLOCK_TEST_SERVER_UID", ROOTLESS_UID.to_string());
        }
        _ => {
            cmd.env("AIRLOCK_BIN", airlock_bin())
                .env_remove("AIRLOCK_TEST_SERVER_UID");
        }
    }
    let t = Instant::now();
    let o = cmd.output().expect("run pytest");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "[{mode}] {}",
        describe_output("pytest python/tests failed", &o)
    );
    // pytest's summary ("86 passed, 1 skipped, 2 xfailed in 40.5s"):
    // something passed, and nothing failed or errored.
    let summary = out.lines().last().unwrap_or_default().to_string();
    let counts: Vec<(&str, &str)> = summary
        .split(" in ")
        .next()
        .unwrap_or_default()
        .split(", ")
        .filter_map(|c| c.trim_matches('=').trim().split_once(' '))
        .collect();
    let count = |what: &str| {
        counts
            .iter()
            .filter(|(_, w)| *w == what)
            .map(|(n, _)| n.parse::<u32>().unwrap_or(0))
            .sum::<u32>()
    };
    assert!(
        count("passed") > 0 && count("failed") == 0 && count("error") + count("errors") == 0,
        "[{mode}] unexpected pytest summary {summary:?}\n{out}"
    );
    eprintln!("{out}[{mode}] pytest: {:.1}s", t.elapsed().as_secs_f64());
}

#[test]
fn python_tests_root() {
    if !is_root() {
        eprintln!("skipped: airlock runs as root only when the tests do");
        return;
    }
    pytest(Mode::Root);
}

#[test]
fn python_tests_rootless() {
    pytest(Mode::Rootless);
}
