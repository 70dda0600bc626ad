//! `airlock bench serve`: live sandboxes through `airlock serve`, side by
//! side in one run with the one-shot `airlock run` and bubblewrap.
//!
//! It starts `airlock serve` on a private unix socket and measures, over
//! the HTTP API: create → first exec result, an exec into a live sandbox,
//! reset (to create, and to a checkpoint), and the server's RSS per live
//! sandbox; then the same `/bin/true` through `airlock run` and through
//! bwrap.

use std::path::PathBuf;
use std::process::{Child, Command as Proc, ExitCode, Stdio};
use std::time::{Duration, Instant};

use airlock_server::Client;
use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::bench::{bwrap_command, have_bwrap, stats, time_command, Stats};

/// Options of `bench serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Samples per measurement.
    #[arg(long, short = 'n', default_value_t = 100)]
    runs: usize,
    /// Live sandboxes held at once for the RSS figure.
    #[arg(long, default_value_t = 20)]
    sandboxes: usize,
    /// Profile of the sandboxes.
    #[arg(long, default_value = "default")]
    profile: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A JSON call that must succeed (2xx).
fn call(c: &Client, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let r = c.json(method, path, body.as_ref())?;
    if !(200..300).contains(&r.status) {
        bail!("{method} {path}: {} {}", r.status, r.text());
    }
    Ok(r.json())
}

struct Server {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
}

impl Server {
    fn start(max: usize) -> anyhow::Result<Server> {
        let dir = std::env::temp_dir().join(format!("airlock-bench-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let sock = dir.join("serve.sock");
        let exe = std::env::current_exe().context("locating the airlock binary")?;
        let child = Proc::new(exe)
            .args(["serve", "--socket"])
            .arg(&sock)
            .args(["--max-sandboxes", &max.to_string()])
            // The sandboxes held for the RSS figure are idle: budget their
            // memory limits (1 GiB each at most) rather than the host's.
            .args(["--memory-budget", &format!("{}G", max)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting airlock serve")?;
        let mut server = Server { child, dir, sock };
        let t = Instant::now();
        loop {
            let up = Client::unix(&server.sock)
                .and_then(|c| c.json("GET", "/healthz", None))
                .is_ok_and(|r| r.status == 200);
            if up {
                return Ok(server);
            }
            if let Some(st) = server.child.try_wait()? {
                bail!("airlock serve exited at start: {st}");
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("airlock serve did not answer /healthz within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM: the server closes its sandboxes and removes its socket.
        let _ = Proc::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn create(sock: &Client, profile: &str) -> anyhow::Result<String> {
    let info = call(
        sock,
        "POST",
        "/v1/sandboxes",
        Some(json!({"profile": profile})),
    )?;
    info["id"]
        .as_str()
        .map(str::to_string)
        .context("the create answer has no id")
}

fn exec_true(sock: &Client, id: &str) -> anyhow::Result<()> {
    let r = call(
        sock,
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(json!({"cmd": ["/bin/true"]})),
    )?;
    if r["exit_code"] != 0 {
        bail!("/bin/true in a live sandbox: {r}");
    }
    Ok(())
}

fn delete(sock: &Client, id: &str) -> anyhow::Result<()> {
    call(sock, "DELETE", &format!("/v1/sandboxes/{id}"), None).map(drop)
}

fn timed(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Vec<Duration>> {
    (0..runs).map(|_| f()).collect()
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.runs == 0 || args.sandboxes == 0 {
        bail!("--runs and --sandboxes must be at least 1");
    }
    let server = Server::start(args.sandboxes + 2)?;
    let sock = Client::unix(&server.sock)?;
    let profile = args.profile.as_str();
    let mut results: Vec<Stats> = Vec::new();

    // Warm-up: page cache, cgroup parents, the server's first requests.
    for _ in 0..3 {
        let id = create(&sock, profile)?;
        exec_true(&sock, &id)?;
        delete(&sock, &id)?;
    }

    let mut deletes = Vec::with_capacity(args.runs);
    let first = timed(args.runs, || {
        let t = Instant::now();
        let id = create(&sock, profile)?;
        exec_true(&sock, &id)?;
        let d = t.elapsed();
        let t = Instant::now();
        delete(&sock, &id)?;
        deletes.push(t.elapsed());
        Ok(d)
    })?;
    results.push(stats("serve: create -> first exec result", first));
    results.push(stats("serve: delete", deletes));

    let id = create(&sock, profile)?;
    let execs = timed(args.runs, || {
        let t = Instant::now();
        exec_true(&sock, &id)?;
        Ok(t.elapsed())
    })?;
    results.push(stats("serve: exec /bin/true into a live sandbox", execs));

    // Reset with something to undo: a file written through the API.
    let file = format!("/v1/sandboxes/{id}/files?path=/tmp/bench");
    let put = |c: &Client| -> anyhow::Result<()> {
        let r = c.send(
            "PUT",
            &file,
            Some("application/octet-stream"),
            vec![b'x'; 4096],
            None,
        )?;
        if !(200..300).contains(&r.status) {
            bail!("PUT {file}: {} {}", r.status, r.text());
        }
        Ok(())
    };
    let resets = timed(args.runs, || {
        put(&sock)?;
        let t = Instant::now();
        call(
            &sock,
            "POST",
            &format!("/v1/sandboxes/{id}/reset"),
            Some(json!({})),
        )?;
        Ok(t.elapsed())
    })?;
    results.push(stats("serve: reset to create", resets));
    put(&sock)?;
    let t = Instant::now();
    call(
        &sock,
        "POST",
        &format!("/v1/sandboxes/{id}/checkpoint"),
        Some(json!({"name": "bench"})),
    )?;
    let checkpoint_ms = t.elapsed().as_secs_f64() * 1e3;
    let restores = timed(args.runs, || {
        let t = Instant::now();
        call(
            &sock,
            "POST",
            &format!("/v1/sandboxes/{id}/reset"),
            Some(json!({"checkpoint": "bench"})),
        )?;
        Ok(t.elapsed())
    })?;
    results.push(stats("serve: reset to a checkpoint", restores));
    delete(&sock, &id)?;

    // RSS: the server's resident memory per live sandbox.
    let before = server.rss_kib();
    let mut ids = Vec::with_capacity(args.sandboxes);
    for _ in 0..args.sandboxes {
        let id = create(&sock, profile)?;
        exec_true(&sock, &id)?;
        ids.push(id);
    }
    let after = server.rss_kib();
    for id in &ids {
        delete(&sock, id)?;
    }
    let per_sandbox_kib = after.saturating_sub(before) as f64 / args.sandboxes as f64;
    drop(server);

    let exe = std::env::current_exe().context("locating the airlock binary")?;
    let cli = time_command(args.runs, || {
        let mut c = Proc::new(&exe);
        c.args(["run", "--profile", profile, "--", "/bin/true"]);
        c
    })?;
    results.push(stats("airlock run /bin/true (CLI, one-shot)", cli));
    let bwrap = have_bwrap();
    if bwrap {
        results.push(stats(
            "bwrap --unshare-all --die-with-parent --new-session /bin/true",
            time_command(args.runs, bwrap_command)?,
        ));
    }

    if args.json {
        let doc = json!({
            "benchmark": "serve",
            "profile": profile,
            "runs": args.runs,
            "checkpoint_ms": checkpoint_ms,
            "server_rss_kib": {"before": before, "after": after, "sandboxes": args.sandboxes,
                               "per_sandbox": per_sandbox_kib},
            "bwrap": bwrap,
            "results": results,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "serve: live sandboxes over the HTTP API (unix socket), {} samples each, profile {profile:?}",
            args.runs
        );
        super::bench::print_table(&results);
        println!("checkpoint (one, of a 4 KiB /tmp file; restores plant the canaries anew): {checkpoint_ms:.2} ms");
        println!(
            "server RSS: {before} KiB idle, {after} KiB with {} live sandboxes: {per_sandbox_kib:.0} KiB per sandbox",
            args.sandboxes
        );
        if !bwrap {
            println!("(bwrap not installed: apt-get install bubblewrap to compare)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
