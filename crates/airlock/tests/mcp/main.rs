//! `airlock mcp` driven by a real MCP client: the official Python SDK's
//! stdio client (`client.py`, pinned in `requirements.txt`) starts the
//! built airlock binary, lists the tools and calls each one, checks the
//! network refusals (profile `none` and an allowlist), reset, timeouts, and
//! that nothing of the sandbox is left after stdin EOF and after SIGTERM.
//! Run as root and rootless (through `setpriv` as nobody when the tests
//! run as root).
//!
//! The Python environment: `AIRLOCK_TEST_VENV` (a venv with the pinned
//! `mcp`), else a venv made under the build's tmp directory with `pip
//! install -r requirements.txt`. A pip that cannot reach the package index
//! fails the test; it never skips.

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use common::*;

const REQUIREMENTS: &str = include_str!("requirements.txt");
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/client.py");

/// The Python of a venv that has the pinned `mcp`: `AIRLOCK_TEST_VENV`, else
/// one made under the build's tmp directory.
fn venv_python() -> PathBuf {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        if let Some(v) = std::env::var_os("AIRLOCK_TEST_VENV") {
            let py = Path::new(&v).join("bin/python");
            let o = Command::new(&py)
                .args(["-c", "import mcp"])
                .output()
                .unwrap_or_else(|e| panic!("AIRLOCK_TEST_VENV: running {}: {e}", py.display()));
            assert!(
                o.status.success(),
                "{}",
                describe_output(
                    "AIRLOCK_TEST_VENV has no `mcp` (pip install -r crates/airlock/tests/mcp/requirements.txt)",
                    &o
                )
            );
            return py;
        }
        pinned_venv(
            "mcp",
            REQUIREMENTS,
            "the pinned MCP client (mcp); or set AIRLOCK_TEST_VENV to a venv that has it",
        )
    })
    .clone()
}

/// Runs client.py against `airlock mcp` started as `mode` asks.
fn drive(mode: Mode) {
    let python = venv_python();
    let work = public_tempdir();
    let home = public_tempdir();
    let mut cmd = Command::new("timeout");
    cmd.args(["300", python.to_str().unwrap(), CLIENT])
        .arg(format!("--mode={mode}"))
        .arg(format!("--work={}", work.path().display()));
    match (mode, is_root()) {
        (Mode::Rootless, true) => {
            // nobody's own HOME (airlock keeps its state there), and a
            // copy of the binary that nobody can reach.
            rustix::fs::chown(
                home.path(),
                Some(rustix::fs::Uid::from_raw(ROOTLESS_UID)),
                Some(rustix::fs::Gid::from_raw(ROOTLESS_UID)),
            )
            .unwrap();
            fs::set_permissions(home.path(), fs::Permissions::from_mode(0o700)).unwrap();
            cmd.arg(format!("--owner={ROOTLESS_UID}"))
                .arg("--")
                .args([
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "env",
                ])
                .arg(format!("HOME={}", home.path().display()))
                .arg(shared_public_airlock());
        }
        _ => {
            cmd.arg("--").arg(airlock_bin());
        }
    }
    let t = Instant::now();
    let o = cmd.output().expect("run the MCP client");
    let took = t.elapsed();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "[{mode}] {}",
        describe_output("the MCP client's checks failed", &o)
    );
    // The script ends with this line only when every check ran.
    assert!(
        out.contains(&format!("[{mode}] all checks passed")),
        "[{mode}] {}",
        describe_output("the MCP client did not finish its checks", &o)
    );
    eprintln!("{out}[{mode}] mcp client: {:.1}s", took.as_secs_f64());
}

#[test]
fn mcp_root() {
    if !is_root() {
        eprintln!("skipped: airlock runs as root only when the tests do");
        return;
    }
    drive(Mode::Root);
}

#[test]
fn mcp_rootless() {
    drive(Mode::Rootless);
}
