//! `airlock sandbox`: a thin client of `airlock serve`'s HTTP API.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use airlock_server::{encode_query, Client, Reply};
use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Where the server is.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's unix socket (default: `airlock serve`'s default).
    #[arg(long, value_name = "PATH", global = true, conflicts_with = "url")]
    socket: Option<PathBuf>,
    /// The server's TCP address, http://HOST:PORT (with --token-file).
    #[arg(long, value_name = "URL", global = true)]
    url: Option<String>,
    /// The bearer token for --url (the file's first line).
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create a sandbox; prints its id (or, with --json, its state).
    Create {
        /// A profile name (the server's profiles directory, else built-in).
        #[arg(long, short = 'p')]
        profile: Option<String>,
        /// A host directory bound read-write as the workspace.
        #[arg(long, short = 'w')]
        workspace: Option<PathBuf>,
        /// Close it this long after create (30s, 5m).
        #[arg(long)]
        ttl: Option<String>,
        /// Close it after this long without a request.
        #[arg(long)]
        idle_timeout: Option<String>,
        /// An environment variable for its commands (repeatable).
        #[arg(long, short = 'e', value_name = "K=V")]
        env: Vec<String>,
        /// Print the whole state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a sandbox; prints its output as it comes and exits
    /// with its exit code.
    Exec {
        /// The sandbox.
        id: String,
        /// Its wall-clock limit (30s, 5m).
        #[arg(long)]
        timeout: Option<String>,
        /// Where it starts (absolute, or relative to the workspace).
        #[arg(long)]
        cwd: Option<String>,
        /// An environment variable (repeatable).
        #[arg(long, short = 'e', value_name = "K=V")]
        env: Vec<String>,
        /// The command and its arguments.
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Copy a file in or out: `cp LOCAL ID:PATH` or `cp ID:PATH LOCAL`
    /// (`-` is stdin or stdout).
    Cp {
        /// The source.
        src: String,
        /// The destination.
        dst: String,
        /// Permission bits of an uploaded file, octal (755).
        #[arg(long)]
        mode: Option<String>,
    },
    /// List a directory of a sandbox.
    Ls {
        /// The sandbox.
        id: String,
        /// The directory (default: the workspace).
        #[arg(default_value = "/workspace")]
        path: String,
    },
    /// Close sandboxes and print their close reports.
    Rm {
        /// The sandboxes.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List the server's sandboxes.
    List {
        /// Print the whole answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn client(a: &Args) -> anyhow::Result<Client> {
    if let Some(url) = &a.url {
        let token = match &a.token_file {
            Some(f) => Some(airlock_server::read_token_file(f)?),
            None => None,
        };
        return Ok(Client::url(url, token)?);
    }
    let socket = a
        .socket
        .clone()
        .unwrap_or_else(airlock_server::default_socket_path);
    Ok(Client::unix(socket)?)
}

/// The JSON of a 2xx reply, else the server's error as ours.
fn ok(r: Reply) -> anyhow::Result<Value> {
    if (200..300).contains(&r.status) {
        return Ok(r.json());
    }
    let v = r.json();
    match v["error"]["message"].as_str() {
        Some(m) => bail!(
            "the server answered {} ({}): {m}",
            r.status,
            v["error"]["code"].as_str().unwrap_or("?")
        ),
        None => bail!("the server answered {}: {}", r.status, r.text().trim()),
    }
}

fn env_map(env: &[String]) -> anyhow::Result<Value> {
    let mut m = serde_json::Map::new();
    for kv in env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: give K=V"))?;
        m.insert(k.into(), v.into());
    }
    Ok(Value::Object(m))
}

/// `ID:PATH` as (id, path), or `None` for a local path.
fn remote(s: &str) -> Option<(&str, &str)> {
    let (id, path) = s.split_once(':')?;
    let plain = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then_some((id, path))
}

pub(crate) fn main(a: Args) -> anyhow::Result<ExitCode> {
    let c = client(&a)?;
    match a.command {
        Command::Create {
            profile,
            workspace,
            ttl,
            idle_timeout,
            env,
            json,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(p) = profile {
                body.insert("profile".into(), p.into());
            }
            if let Some(w) = workspace {
                let w = std::path::absolute(&w).unwrap_or(w);
                body.insert("workspace".into(), w.to_string_lossy().into_owned().into());
            }
            if let Some(t) = ttl {
                body.insert("ttl".into(), t.into());
            }
            if let Some(t) = idle_timeout {
                body.insert("idle_timeout".into(), t.into());
            }
            if !env.is_empty() {
                body.insert("env".into(), env_map(&env)?);
            }
            let v = ok(c.json("POST", "/v1/sandboxes", Some(&Value::Object(body)))?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", v["id"].as_str().unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec {
            id,
            timeout,
            cwd,
            env,
            command,
        } => exec(&c, &id, timeout, cwd, &env, command),
        Command::Cp { src, dst, mode } => {
            match (remote(&src), remote(&dst)) {
                (Some((id, path)), None) => {
                    let r = c.send(
                        "GET",
                        &format!("/v1/sandboxes/{id}/files?path={}", encode_query(path)),
                        None,
                        Vec::new(),
                        None,
                    )?;
                    if r.status != 200 {
                        ok(r)?;
                        unreachable!("ok() fails on a non-2xx reply");
                    }
                    if dst == "-" {
                        std::io::stdout().write_all(&r.body)?;
                    } else {
                        std::fs::write(&dst, &r.body).with_context(|| format!("writing {dst}"))?;
                    }
                }
                (None, Some((id, path))) => {
                    let data = if src == "-" {
                        let mut d = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::stdin(), &mut d)?;
                        d
                    } else {
                        std::fs::read(&src).with_context(|| format!("reading {src}"))?
                    };
                    let mut q = format!("/v1/sandboxes/{id}/files?path={}", encode_query(path));
                    if let Some(m) = mode {
                        q.push_str(&format!("&mode={}", encode_query(&m)));
                    }
                    ok(c.send("PUT", &q, Some("application/octet-stream"), data, None)?)?;
                }
                _ => bail!("cp: exactly one of SRC and DST must be ID:PATH"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { id, path } => {
            let v = ok(c.json(
                "GET",
                &format!(
                    "/v1/sandboxes/{id}/files?list=1&path={}",
                    encode_query(&path)
                ),
                None,
            )?)?;
            for e in v["entries"].as_array().into_iter().flatten() {
                let kind = match e["kind"].as_str() {
                    Some("dir") => "d",
                    Some("symlink") => "l",
                    Some("file") => "-",
                    _ => "?",
                };
                println!(
                    "{kind}{:>4} {:>10} {}",
                    e["mode"].as_str().unwrap_or(""),
                    e["size"],
                    e["name"].as_str().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rm { ids } => {
            let mut failed = false;
            for id in ids {
                match ok(c.json("DELETE", &format!("/v1/sandboxes/{id}"), None)?) {
                    Ok(v) => println!("{}", serde_json::to_string(&v)?),
                    Err(e) => {
                        eprintln!("airlock: {id}: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(crate::EXIT_FAILURE)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::List { json } => {
            let v = ok(c.json("GET", "/v1/sandboxes", None)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            for s in v["sandboxes"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}\t{:.0}s",
                    s["id"].as_str().unwrap_or(""),
                    s["state"].as_str().unwrap_or(""),
                    s["profile"].as_str().unwrap_or(""),
                    s["age_secs"].as_f64().unwrap_or(0.0)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exec(
    c: &Client,
    id: &str,
    timeout: Option<String>,
    cwd: Option<String>,
    env: &[String],
    command: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let mut body = json!({"cmd": command, "stream": true});
    if let Some(t) = timeout {
        body["timeout"] = t.into();
    }
    if let Some(d) = cwd {
        body["cwd"] = d.into();
    }
    if !env.is_empty() {
        body["env"] = env_map(env)?;
    }
    let mut line = Vec::new();
    let mut last: Option<Value> = None;
    let mut handle = |v: Value| -> std::io::Result<()> {
        for (key, out) in [("stdout", true), ("stderr", false)] {
            let data = match v[format!("{key}_base64")].as_str() {
                Some(b) => data_decode(b),
                None => match v[key].as_str() {
                    Some(t) => t.as_bytes().to_vec(),
                    None => continue,
                },
            };
            if out {
                let mut o = std::io::stdout().lock();
                o.write_all(&data)?;
                o.flush()?;
            } else {
                std::io::stderr().write_all(&data)?;
            }
        }
        if v.get("result").is_some() || v.get("error").is_some() {
            last = Some(v);
        }
        Ok(())
    };
    let mut io_err = None;
    let r = c.send(
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some("application/json"),
        serde_json::to_vec(&body)?,
        Some(&mut |chunk: &[u8]| {
            for &b in chunk {
                if b == b'\n' {
                    if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                        if let Err(e) = handle(v) {
                            io_err.get_or_insert(e);
                        }
                    }
                    line.clear();
                } else {
                    line.push(b);
                }
            }
        }),
    )?;
    if r.status != 200 {
        // The error body went to the chunk callback: rebuild it.
        let reply = Reply {
            status: r.status,
            content_type: r.content_type,
            body: line,
        };
        ok(reply)?;
    }
    if let Some(e) = io_err {
        return Err(e.into());
    }
    match last {
        Some(v) if v.get("result").is_some() => {
            let code = v["result"]["exit_code"].as_i64().unwrap_or(1);
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Some(v) => bail!(
            "{}",
            v["error"]["message"].as_str().unwrap_or("the exec failed")
        ),
        None => bail!("the server's answer ended before the command's result"),
    }
}

fn data_decode(b: &str) -> Vec<u8> {
    data_encoding::BASE64
        .decode(b.as_bytes())
        .unwrap_or_default()
}
