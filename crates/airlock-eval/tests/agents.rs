//! Black-box tests of the agent adapters: `openai:` against a small local
//! OpenAI-compatible server written here (scripted answers, in order), and
//! `cmd:` against small python3 agents.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use airlock_eval::agents::{AgentOptions, AgentSpec};
use airlock_eval::protocol::{
    Action, Agent, AgentError, Message, Script, ToolCall, ToolSpec, Turn, Usage,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------
// The test server.

/// One scripted answer.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Wait this long before answering.
    delay: Duration,
}

fn ok(body: Value) -> Reply {
    Reply {
        status: 200,
        headers: vec![],
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

fn status(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    /// Lowercased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is json")
    }
}

struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `replies` in order, one connection each, then stops.
    fn start(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let thread = std::thread::spawn(move || {
            for reply in replies {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                if let Some(req) = read_request(&stream) {
                    log.lock().unwrap().push(req);
                }
                std::thread::sleep(reply.delay);
                let _ = write_reply(stream, &reply);
            }
        });
        Server {
            url,
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn spec(&self, options: AgentOptions) -> AgentSpec {
        format!("openai:{}#test-model", self.url)
            .parse::<AgentSpec>()
            .unwrap()
            .with_options(options)
    }

    /// Waits until the server thread has served every reply.
    fn finish(mut self) -> Vec<Seen> {
        self.thread.take().unwrap().join().unwrap();
        self.seen()
    }
}

fn read_request(mut stream: &TcpStream) -> Option<Seen> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        request_line,
        headers,
        body,
    })
}

fn write_reply(mut stream: TcpStream, reply: &Reply) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(reply.body.as_bytes())?;
    stream.flush()
}

// ---------------------------------------------------------------------
// Helpers.

/// Options for tests: no key, short backoff.
fn options() -> AgentOptions {
    AgentOptions {
        api_key_env: "AIRLOCK_TEST_UNSET_KEY_VARIABLE".into(),
        timeout: Duration::from_secs(10),
        retries: 3,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(50),
        ..AgentOptions::default()
    }
}

fn make(spec: &AgentSpec) -> Box<dyn Agent> {
    spec.instantiate(&Script::default()).unwrap()
}

fn conversation() -> Vec<Message> {
    vec![
        Message::System {
            content: "You are a helpful agent.".into(),
        },
        Message::User {
            content: "Summarize notes.txt.".into(),
        },
    ]
}

fn tools() -> Vec<ToolSpec> {
    vec![ToolSpec {
        name: "read_file".into(),
        description: "Read a workspace file.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"]
        }),
    }]
}

fn completion(message: Value, prompt: u64, completion: u64) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion}
    })
}

fn tool_call_reply(arguments: &str) -> Reply {
    ok(completion(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_abc", "type": "function",
             "function": {"name": "read_file", "arguments": arguments}}]}),
        10,
        5,
    ))
}

fn final_reply(answer: &str) -> Reply {
    ok(completion(
        json!({"role": "assistant", "content": answer}),
        20,
        7,
    ))
}

fn expect_malformed(r: Result<Turn, AgentError>, needle: &str) {
    match r {
        Err(AgentError::Malformed(m)) => assert!(m.contains(needle), "{m}"),
        other => panic!("expected malformed ({needle}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------
// openai:

#[test]
fn openai_sends_request_and_parses_tool_call_then_final() {
    let server = Server::start(vec![
        tool_call_reply(r#"{"path": "notes.txt"}"#),
        final_reply("The notes say hi."),
    ]);
    let mut agent = make(&server.spec(options()));
    let mut conv = conversation();
    let tools = tools();

    let t1 = agent.next(&conv, &tools).unwrap();
    let call = ToolCall {
        id: "call_abc".into(),
        name: "read_file".into(),
        arguments: json!({"path": "notes.txt"}),
    };
    assert_eq!(
        t1.action,
        Action::ToolCalls {
            calls: vec![call.clone()],
            content: None
        }
    );
    conv.push(Message::Assistant {
        content: None,
        tool_calls: vec![call],
    });
    conv.push(Message::Tool {
        call_id: "call_abc".into(),
        name: "read_file".into(),
        content: "hi".into(),
        is_error: false,
    });
    let t2 = agent.next(&conv, &tools).unwrap();
    assert_eq!(
        t2.action,
        Action::Final {
            answer: "The notes say hi.".into()
        }
    );
    let mut usage = t1.usage;
    usage += t2.usage;
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 30,
            completion_tokens: 12
        }
    );

    let seen = server.finish();
    assert_eq!(seen.len(), 2);
    let first = &seen[0];
    assert_eq!(first.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("authorization"), None, "no key, no header");
    let body = first.json();
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["temperature"], 0.0);
    assert!(body.get("max_tokens").is_none());
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are a helpful agent."},
            {"role": "user", "content": "Summarize notes.txt."}
        ])
    );
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "function": {
            "name": "read_file",
            "description": "Read a workspace file.",
            "parameters": {"type": "object",
                           "properties": {"path": {"type": "string"}},
                           "required": ["path"]}}}])
    );
    let second = seen[1].json();
    assert_eq!(
        second["messages"][2],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_abc", "type": "function",
             "function": {"name": "read_file", "arguments": "{\"path\":\"notes.txt\"}"}}]})
    );
    assert_eq!(
        second["messages"][3],
        json!({"role": "tool", "tool_call_id": "call_abc", "content": "hi"})
    );
}

#[test]
fn openai_sends_max_tokens_and_omits_tools_when_none() {
    let server = Server::start(vec![final_reply("ok")]);
    let mut agent = make(&server.spec(AgentOptions {
        max_tokens: Some(256),
        temperature: None,
        ..options()
    }));
    agent.next(&conversation(), &[]).unwrap();
    let body = server.finish()[0].json();
    assert_eq!(body["max_tokens"], 256);
    assert!(body.get("temperature").is_none());
    assert!(body.get("tools").is_none());
    assert!(body.get("tool_choice").is_none());
}

#[test]
fn openai_sends_key_from_custom_env_var() {
    std::env::set_var("AIRLOCK_TEST_AGENTS_KEY", "sk-test-123");
    let server = Server::start(vec![final_reply("ok")]);
    let mut agent = make(&server.spec(AgentOptions {
        api_key_env: "AIRLOCK_TEST_AGENTS_KEY".into(),
        ..options()
    }));
    agent.next(&conversation(), &tools()).unwrap();
    let seen = server.finish();
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test-123"));
}

#[test]
fn openai_retries_5xx_then_succeeds() {
    let server = Server::start(vec![
        status(503, "overloaded"),
        status(503, "overloaded"),
        final_reply("ok"),
    ]);
    let mut agent = make(&server.spec(options()));
    let t = agent.next(&conversation(), &tools()).unwrap();
    assert_eq!(
        t.action,
        Action::Final {
            answer: "ok".into()
        }
    );
    let seen = server.finish();
    assert_eq!(seen.len(), 3);
    // Every attempt sends the same request.
    assert_eq!(seen[0].body, seen[2].body);
}

#[test]
fn openai_gives_up_after_retries() {
    let server = Server::start(vec![
        status(500, "boom"),
        status(502, "boom"),
        status(503, "still down"),
    ]);
    let mut agent = make(&server.spec(AgentOptions {
        retries: 2,
        ..options()
    }));
    match agent.next(&conversation(), &tools()) {
        Err(AgentError::Transport(m)) => {
            assert!(m.contains("http 503") && m.contains("still down"), "{m}");
            assert!(m.contains("after 3 attempts"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.finish().len(), 3);
}

#[test]
fn openai_honours_retry_after() {
    let mut limited = status(429, r#"{"error": {"message": "rate limited"}}"#);
    limited.headers.push(("retry-after", "1".into()));
    let server = Server::start(vec![limited, final_reply("ok")]);
    let mut agent = make(&server.spec(options()));
    let start = Instant::now();
    agent.next(&conversation(), &tools()).unwrap();
    let took = start.elapsed();
    // The backoff alone would be at most 50 ms.
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(server.finish().len(), 2);
}

#[test]
fn openai_does_not_retry_client_errors() {
    let server = Server::start(vec![status(401, r#"{"error": "bad key"}"#)]);
    let mut agent = make(&server.spec(options()));
    match agent.next(&conversation(), &tools()) {
        Err(AgentError::Transport(m)) => assert!(m.contains("http 401"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.finish().len(), 1);
}

#[test]
fn openai_malformed_body() {
    let server = Server::start(vec![Reply {
        status: 200,
        headers: vec![],
        body: "<html>gateway</html>".into(),
        delay: Duration::ZERO,
    }]);
    let mut agent = make(&server.spec(options()));
    expect_malformed(agent.next(&conversation(), &tools()), "not json");
    assert_eq!(
        server.finish().len(),
        1,
        "a malformed answer is not retried"
    );

    let server = Server::start(vec![ok(json!({"object": "chat.completion"}))]);
    let mut agent = make(&server.spec(options()));
    expect_malformed(agent.next(&conversation(), &tools()), "choices[0].message");
}

#[test]
fn openai_malformed_tool_arguments_name_the_tool() {
    let server = Server::start(vec![tool_call_reply(r#"{"path": "notes.txt""#)]);
    let mut agent = make(&server.spec(options()));
    expect_malformed(
        agent.next(&conversation(), &tools()),
        "tool call `read_file` has arguments that are not json",
    );
}

#[test]
fn openai_times_out_within_bounds() {
    let slow = || Reply {
        delay: Duration::from_millis(1500),
        ..final_reply("too late")
    };
    let server = Server::start(vec![slow(), slow()]);
    let mut agent = make(&server.spec(AgentOptions {
        timeout: Duration::from_millis(300),
        retries: 1,
        ..options()
    }));
    let start = Instant::now();
    let r = agent.next(&conversation(), &tools());
    let took = start.elapsed();
    assert!(
        matches!(r, Err(AgentError::Timeout(d)) if d == Duration::from_millis(300)),
        "{r:?}"
    );
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn openai_connection_refused_is_transport_after_retries() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = format!("openai:http://127.0.0.1:{port}/v1#m")
        .parse::<AgentSpec>()
        .unwrap()
        .with_options(AgentOptions {
            retries: 2,
            ..options()
        });
    let start = Instant::now();
    match make(&spec).next(&conversation(), &tools()) {
        Err(AgentError::Transport(m)) => assert!(m.contains("after 3 attempts"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn openai_https_uses_tls() {
    // A plain-TCP server that answers the TLS client hello with HTTP: the
    // handshake fails cleanly, which shows https:// goes through rustls.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
        hello
    });
    let spec = format!("openai:https://{addr}/v1#m")
        .parse::<AgentSpec>()
        .unwrap()
        .with_options(AgentOptions {
            retries: 0,
            ..options()
        });
    let r = make(&spec).next(&conversation(), &tools());
    assert!(matches!(r, Err(AgentError::Transport(_))), "{r:?}");
    let hello = server.join().unwrap();
    assert_eq!(hello[0], 0x16, "a TLS handshake record");
}

// ---------------------------------------------------------------------
// cmd:

/// The python agents, written once before any is started (so no other
/// thread can hold one open for writing while it is executed).
fn scripts() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        // Under the target dir; directories of earlier runs whose process
        // is gone are removed.
        let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        for old in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = old.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("agents-test-") {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(old.path());
                }
            }
        }
        let dir = root.join(format!("agents-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let head = "#!/usr/bin/env python3\nimport json, os, subprocess, sys, time\n\
                    def say(o):\n    print(json.dumps(o), flush=True)\n\
                    def hear():\n    return json.loads(sys.stdin.readline())\n";
        let agents = [
            (
                "happy.py",
                r#"start = hear()
say({"type": "tool_calls", "content": "reading",
     "calls": [{"id": "c1", "name": "read_file", "arguments": {"path": "notes.txt"}},
               {"name": "list_dir"}],
     "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
results = hear()
print("thinking hard", file=sys.stderr, flush=True)
print("", flush=True)  # blank lines are skipped
say({"type": "final", "answer": json.dumps({"start": start, "results": results}),
     "usage": {"prompt_tokens": 4}})
"#,
            ),
            (
                "malformed.py",
                r#"hear()
say({"type": "tool_calls", "calls": [{"id": "c1", "name": "list_dir", "arguments": {}}]})
hear()
print("this is not json", flush=True)
time.sleep(30)
"#,
            ),
            (
                "exits.py",
                r#"hear()
print("no model configured", file=sys.stderr, flush=True)
sys.exit(3)
"#,
            ),
            (
                "slow.py",
                r#"me = os.path.join(os.path.dirname(__file__), "slow")
kid = subprocess.Popen(["sleep", "60"])
with open(me + ".pids", "w") as f:
    f.write(f"{os.getpid()} {kid.pid}")
hear()
time.sleep(60)
"#,
            ),
            (
                "idle.py",
                r#"me = os.path.join(os.path.dirname(__file__), "idle")
kid = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
with open(me + ".pids", "w") as f:
    f.write(f"{os.getpid()} {kid.pid}")
hear()
say({"type": "final", "answer": "bye"})
sys.stdin.close()
time.sleep(60)
"#,
            ),
        ];
        let mut files: Vec<(&str, String)> = agents
            .iter()
            .map(|(name, body)| (*name, format!("{head}{body}")))
            .collect();
        files.push(("doc_example.py", doc_example()));
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    })
}

/// The Python example of docs/eval-agents.md.
fn doc_example() -> String {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/eval-agents.md"),
    )
    .unwrap();
    let start = doc.find("```python\n").expect("a python block") + "```python\n".len();
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_owned()
}

fn cmd_agent(name: &str, timeout: Duration) -> Box<dyn Agent> {
    let spec = format!("cmd:{}", scripts().join(name).display())
        .parse::<AgentSpec>()
        .unwrap()
        .with_options(AgentOptions {
            timeout,
            ..AgentOptions::default()
        });
    spec.instantiate(&Script::default()).unwrap()
}

/// True when the process is gone (or a zombie waiting for its reaper).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn wait_dead(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids.iter().all(|&p| dead(p)) {
        assert!(
            Instant::now() < deadline,
            "processes {pids:?} outlived the agent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pids(name: &str) -> Vec<u32> {
    let path = scripts().join(format!("{name}.pids"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(&path) {
            let pids: Vec<u32> = s
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            if pids.len() == 2 {
                return pids;
            }
        }
        assert!(Instant::now() < deadline, "{name} wrote no pids");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cmd_happy_path() {
    let mut agent = cmd_agent("happy.py", Duration::from_secs(30));
    let mut conv = conversation();
    let tools = tools();
    let t1 = agent.next(&conv, &tools).unwrap();
    let Action::ToolCalls { calls, content } = t1.action else {
        panic!("{t1:?}")
    };
    assert_eq!(content.as_deref(), Some("reading"));
    assert_eq!(
        calls,
        vec![
            ToolCall {
                id: "c1".into(),
                name: "read_file".into(),
                arguments: json!({"path": "notes.txt"})
            },
            ToolCall {
                id: "call-1".into(),
                name: "list_dir".into(),
                arguments: json!({})
            }
        ]
    );
    assert_eq!(
        t1.usage,
        Usage {
            prompt_tokens: 3,
            completion_tokens: 2
        }
    );
    conv.push(Message::Assistant {
        content: Some("reading".into()),
        tool_calls: calls,
    });
    conv.push(Message::Tool {
        call_id: "c1".into(),
        name: "read_file".into(),
        content: "hi".into(),
        is_error: false,
    });
    conv.push(Message::Tool {
        call_id: "call-1".into(),
        name: "list_dir".into(),
        content: "denied by policy".into(),
        is_error: true,
    });
    let t2 = agent.next(&conv, &tools).unwrap();
    assert_eq!(
        t2.usage,
        Usage {
            prompt_tokens: 4,
            completion_tokens: 0
        }
    );
    let Action::Final { answer } = t2.action else {
        panic!("{t2:?}")
    };
    let echoed: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        echoed["start"],
        json!({
            "type": "start",
            "system": "You are a helpful agent.",
            "task": "Summarize notes.txt.",
            "tools": serde_json::to_value(&tools).unwrap(),
        })
    );
    assert_eq!(
        echoed["results"],
        json!({"type": "tool_results", "results": [
            {"call_id": "c1", "name": "read_file", "content": "hi", "is_error": false},
            {"call_id": "call-1", "name": "list_dir", "content": "denied by policy", "is_error": true}
        ]})
    );
}

#[test]
fn cmd_malformed_line_names_its_number() {
    let mut agent = cmd_agent("malformed.py", Duration::from_secs(30));
    let mut conv = conversation();
    let t1 = agent.next(&conv, &[]).unwrap();
    assert!(matches!(t1.action, Action::ToolCalls { .. }));
    conv.push(Message::Tool {
        call_id: "c1".into(),
        name: "list_dir".into(),
        content: "a.txt".into(),
        is_error: false,
    });
    expect_malformed(agent.next(&conv, &[]), "line 2: not a valid reply");
}

#[test]
fn cmd_early_exit_is_transport_with_status_and_stderr() {
    let mut agent = cmd_agent("exits.py", Duration::from_secs(30));
    match agent.next(&conversation(), &[]) {
        Err(AgentError::Transport(m)) => {
            assert!(m.contains("exited before answering"), "{m}");
            assert!(m.contains("exit status: 3"), "{m}");
            assert!(m.contains("no model configured"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // Later turns fail fast.
    assert!(matches!(
        agent.next(&conversation(), &[]),
        Err(AgentError::Transport(_))
    ));
}

#[test]
fn cmd_timeout_kills_the_program_and_its_children() {
    let mut agent = cmd_agent("slow.py", Duration::from_millis(300));
    // The clock starts with the turn, once the program is up.
    let pids = pids("slow");
    let start = Instant::now();
    let r = agent.next(&conversation(), &[]);
    assert!(
        matches!(r, Err(AgentError::Timeout(d)) if d == Duration::from_millis(300)),
        "{r:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    wait_dead(&pids);
    assert!(matches!(
        agent.next(&conversation(), &[]),
        Err(AgentError::Transport(m)) if m.contains("did not answer")
    ));
}

#[test]
fn cmd_drop_kills_the_program_and_its_children() {
    let mut agent = cmd_agent("idle.py", Duration::from_secs(30));
    let t = agent.next(&conversation(), &[]).unwrap();
    assert_eq!(
        t.action,
        Action::Final {
            answer: "bye".into()
        }
    );
    let pids = pids("idle");
    assert!(!dead(pids[0]) && !dead(pids[1]));
    drop(agent);
    wait_dead(&pids);
}

#[test]
fn cmd_missing_program_fails_to_instantiate() {
    let spec: AgentSpec = "cmd:/nonexistent/airlock-agent".parse().unwrap();
    match spec.instantiate(&Script::default()) {
        Err(AgentError::Transport(m)) => assert!(m.contains("cannot start agent program"), "{m}"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("started a missing program"),
    }
}

#[test]
fn cmd_doc_example_agent_works() {
    let mut agent = cmd_agent("doc_example.py", Duration::from_secs(30));
    let list_dir = ToolSpec {
        name: "list_dir".into(),
        description: "List a workspace directory.".into(),
        parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
    };
    let mut conv = conversation();
    let t1 = agent.next(&conv, std::slice::from_ref(&list_dir)).unwrap();
    let call = ToolCall {
        id: "1".into(),
        name: "list_dir".into(),
        arguments: json!({"path": "."}),
    };
    assert_eq!(
        t1.action,
        Action::ToolCalls {
            calls: vec![call.clone()],
            content: None
        }
    );
    conv.push(Message::Assistant {
        content: None,
        tool_calls: vec![call],
    });
    conv.push(Message::Tool {
        call_id: "1".into(),
        name: "list_dir".into(),
        content: "notes.txt todo.md".into(),
        is_error: false,
    });
    let t2 = agent.next(&conv, &[list_dir]).unwrap();
    assert_eq!(
        t2.action,
        Action::Final {
            answer: "The workspace holds: notes.txt todo.md".into()
        }
    );
}
