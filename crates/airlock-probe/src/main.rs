//! airlock-probe: TEST-ONLY attack code. It is never shipped, installed or
//! packaged; it exists so that airlock's black-box tests can run it INSIDE a
//! sandbox (as youki's runtimetest does) and ask what it can see and do.
//!
//! Every subcommand prints one JSON object (one line) on stdout and exits 0
//! unless the probe itself is broken (bad arguments: exit 2). The answers
//! are facts, never verdicts: an attack reports `succeeded` and the errno it
//! met, and the tests decide what that means.
//!
//! ```text
//! airlock-probe identity            ids, capabilities, no_new_privs, seccomp, session, tty, uid_map
//! airlock-probe attack NAME [ARG]   one attack: {"attack","succeeded","errno","detail"[,"data"]}
//! airlock-probe attack-all          every attack without an argument, each in a forked child: [..]
//! airlock-probe attacks             the names `attack-all` runs
//! airlock-probe env                 the environment as an object
//! airlock-probe statfs PATH...      mount flags and sizes: {PATH: {"ro","nosuid","nodev","noexec",..}}
//! airlock-probe stat PATH...        {PATH: {"exists","errno","size","mode","uid","gid"}}
//! airlock-probe write PATH TEXT     create/truncate PATH with TEXT: {"path","ok","errno"}
//! airlock-probe read PATH           a whole file (lossy UTF-8): {"path","ok","errno","content"}
//! airlock-probe readable PATH...    try to read each: {PATH: {"bytes" (first read, <= 4096), "errno"}}
//! airlock-probe fdbomb              open files until refused (kept open until exit): {"opened","errno"}
//! airlock-probe forkbomb            fork sleeping children until refused: {"forked","errno"}
//! airlock-probe membomb MB          allocate and touch MB MiB: {"allocated_mb","requested_mb","errno"}
//! airlock-probe fill PATH           write PATH (PATH/fill.bin for a dir) until refused: {"bytes","errno"}
//! airlock-probe daemonize PIDFILE   double-fork + setsid; the grandchild writes its pid and sleeps forever
//! airlock-probe sleep SECS          sleep (a line on stderr says it started), then {"slept"}
//! airlock-probe spin SECS           busy loop, then {"spun","iterations"}
//! airlock-probe output BYTES        BYTES of 'x' on stdout; the JSON summary goes to stderr
//! airlock-probe exit CODE           exit with CODE
//! airlock-probe signal N            raise signal N (default disposition) on itself
//! ```

// The probe is attack code: raw syscalls with hand-built arguments are its
// whole point, and every unsafe block below is a direct syscall whose
// pointers refer to live local buffers.
#![allow(clippy::undocumented_unsafe_blocks)]

mod attacks;

use std::ffi::CString;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// The calling thread's errno.
pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A NUL-terminated copy of `s` (probe arguments never contain NUL).
pub(crate) fn cstr(s: &str) -> CString {
    CString::new(s).expect("argument without NUL")
}

fn print(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn usage(msg: &str) -> ! {
    eprintln!("airlock-probe: {msg}");
    std::process::exit(2);
}

fn arg<'a>(args: &'a [String], i: usize, what: &str) -> &'a str {
    args.get(i)
        .map(String::as_str)
        .unwrap_or_else(|| usage(&format!("missing argument: {what}")))
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("{what}: not a number: {s:?}")))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map(String::as_str).unwrap_or("");
    match cmd {
        "identity" => print(&identity()),
        "attack" => {
            let name = arg(&args, 1, "attack name");
            match attacks::run(name, args.get(2).map(String::as_str)) {
                Some(o) => print(&o.to_json(name)),
                None => usage(&format!("unknown attack {name:?}, or it needs an argument")),
            }
        }
        "attack-all" => print(&attacks::run_all()),
        "attacks" => print(&json!(attacks::ALL)),
        "env" => {
            let m: Map<String, Value> = std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        Value::String(v.to_string_lossy().into_owned()),
                    )
                })
                .collect();
            print(&Value::Object(m));
        }
        "statfs" => print(&statfs_all(&args[1..])),
        "stat" => print(&stat_all(&args[1..])),
        "write" => {
            let path = arg(&args, 1, "PATH");
            let text = arg(&args, 2, "TEXT");
            let r = std::fs::write(path, text);
            print(&json!({
                "path": path,
                "ok": r.is_ok(),
                "errno": r.err().and_then(|e| e.raw_os_error()),
            }));
        }
        "read" => {
            let path = arg(&args, 1, "PATH");
            let r = std::fs::read(path);
            print(&json!({
                "path": path,
                "ok": r.is_ok(),
                "errno": r.as_ref().err().and_then(|e| e.raw_os_error()),
                "content": r.ok().map(|b| String::from_utf8_lossy(&b).into_owned()),
            }));
        }
        "readable" => print(&readable_all(&args[1..])),
        "fdbomb" => print(&fdbomb()),
        "forkbomb" => print(&forkbomb()),
        "membomb" => print(&membomb(num(arg(&args, 1, "MB"), "MB"))),
        "fill" => print(&fill(arg(&args, 1, "PATH"))),
        "daemonize" => daemonize(arg(&args, 1, "PIDFILE")),
        "sleep" => {
            let secs: f64 = num(arg(&args, 1, "SECS"), "SECS");
            eprintln!("airlock-probe: sleeping {secs}s");
            std::thread::sleep(Duration::from_secs_f64(secs));
            print(&json!({ "slept": secs }));
        }
        "spin" => {
            let secs: f64 = num(arg(&args, 1, "SECS"), "SECS");
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut n: u64 = 0;
            while Instant::now() < end {
                n = std::hint::black_box(n.wrapping_add(1));
            }
            print(&json!({ "spun": secs, "iterations": n }));
        }
        "output" => {
            let bytes: u64 = num(arg(&args, 1, "BYTES"), "BYTES");
            let (written, err) = output(bytes);
            eprintln!(
                "{}",
                json!({ "requested": bytes, "written": written, "errno": err })
            );
        }
        "exit" => std::process::exit(num(arg(&args, 1, "CODE"), "CODE")),
        "signal" => {
            let sig: i32 = num(arg(&args, 1, "N"), "N");
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, sig);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::raise(sig);
            }
            print(&json!({ "raised": sig, "survived": true }));
        }
        "" => usage("missing subcommand (see the crate docs)"),
        other => usage(&format!("unknown subcommand {other:?}")),
    }
}

/// Read a whole file as text, or None.
pub(crate) fn read_text(path: &str) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// `Key:\tvalue` from /proc/self/status.
fn status_field(status: &str, key: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

fn identity() -> Value {
    let status = read_text("/proc/self/status").unwrap_or_default();
    let field = |k: &str| status_field(&status, k);
    let int = |k: &str| field(k).and_then(|v| v.parse::<i64>().ok());
    let mut groups = vec![0 as libc::gid_t; 256];
    let n = unsafe { libc::getgroups(groups.len() as i32, groups.as_mut_ptr()) };
    groups.truncate(n.max(0) as usize);
    let pid = unsafe { libc::getpid() };
    let sid = unsafe { libc::getsid(0) };
    let tty = unsafe { libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    let tty_errno = if tty < 0 { Some(errno()) } else { None };
    if tty >= 0 {
        unsafe { libc::close(tty) };
    }
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    unsafe { libc::uname(&mut uts) };
    let hostname = unsafe { std::ffi::CStr::from_ptr(uts.nodename.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let pid1_cmdline = std::fs::read("/proc/1/cmdline").ok().map(|b| {
        b.split(|c| *c == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
    });
    json!({
        "uid": unsafe { libc::getuid() },
        "gid": unsafe { libc::getgid() },
        "euid": unsafe { libc::geteuid() },
        "egid": unsafe { libc::getegid() },
        "groups": groups,
        "cap_inh": field("CapInh"),
        "cap_prm": field("CapPrm"),
        "cap_eff": field("CapEff"),
        "cap_bnd": field("CapBnd"),
        "cap_amb": field("CapAmb"),
        "no_new_privs": int("NoNewPrivs"),
        "seccomp": int("Seccomp"),
        "seccomp_filters": int("Seccomp_filters"),
        "pid": pid,
        "ppid": unsafe { libc::getppid() },
        "sid": sid,
        "session_leader": sid == pid,
        "tty_openable": tty >= 0,
        "tty_errno": tty_errno,
        "fd_is_tty": (0..3).map(|fd| unsafe { libc::isatty(fd) } == 1).collect::<Vec<_>>(),
        "uid_map": read_text("/proc/self/uid_map"),
        "gid_map": read_text("/proc/self/gid_map"),
        "hostname": hostname,
        "pid1_cmdline": pid1_cmdline,
        "cwd": std::env::current_dir().ok().map(|p| p.display().to_string()),
    })
}

fn statfs_all(paths: &[String]) -> Value {
    let mut m = Map::new();
    for p in paths {
        let c = cstr(p);
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        let v = if unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0 {
            let f = s.f_flag;
            json!({
                "ro": f & libc::ST_RDONLY != 0,
                "nosuid": f & libc::ST_NOSUID != 0,
                "nodev": f & libc::ST_NODEV != 0,
                "noexec": f & libc::ST_NOEXEC != 0,
                "bytes_total": s.f_blocks as u64 * s.f_frsize as u64,
                "bytes_free": s.f_bfree as u64 * s.f_frsize as u64,
                "errno": null,
            })
        } else {
            json!({ "errno": errno() })
        };
        m.insert(p.clone(), v);
    }
    Value::Object(m)
}

fn stat_all(paths: &[String]) -> Value {
    use std::os::unix::fs::MetadataExt;
    let mut m = Map::new();
    for p in paths {
        let v = match std::fs::symlink_metadata(p) {
            Ok(md) => json!({
                "exists": true,
                "errno": null,
                "size": md.size(),
                "mode": md.mode(),
                "uid": md.uid(),
                "gid": md.gid(),
            }),
            Err(e) => json!({ "exists": false, "errno": e.raw_os_error() }),
        };
        m.insert(p.clone(), v);
    }
    Value::Object(m)
}

/// One non-blocking read of each path: how many bytes came back, or errno.
fn readable_all(paths: &[String]) -> Value {
    let mut m = Map::new();
    for p in paths {
        let c = cstr(p);
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        let v = if fd < 0 {
            json!({ "bytes": null, "errno": errno(), "opened": false })
        } else {
            let mut buf = [0u8; 4096];
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            let e = errno();
            unsafe { libc::close(fd) };
            if n < 0 {
                json!({ "bytes": null, "errno": e, "opened": true })
            } else {
                json!({ "bytes": n, "errno": null, "opened": true })
            }
        };
        m.insert(p.clone(), v);
    }
    Value::Object(m)
}

fn fdbomb() -> Value {
    let mut fds = Vec::new();
    let err = loop {
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        if fd < 0 {
            break errno();
        }
        fds.push(fd);
        if fds.len() >= 10_000_000 {
            break 0;
        }
    };
    // The fds stay open until exit, where the sandbox can see the full table.
    json!({ "opened": fds.len(), "errno": err })
}

fn forkbomb() -> Value {
    let mut children = 0u64;
    let err = loop {
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            break errno();
        }
        if pid == 0 {
            loop {
                unsafe { libc::pause() };
            }
        }
        children += 1;
        if children >= 1_000_000 {
            break 0;
        }
    };
    // The children stay: the sandbox must clean them up.
    json!({ "forked": children, "errno": err })
}

fn membomb(mb: u64) -> Value {
    const MIB: usize = 1 << 20;
    let mut done = 0u64;
    let mut err = None;
    while done < mb {
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MIB,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            err = Some(errno());
            break;
        }
        // Touch every page so the memory is really charged.
        let base = p.cast::<u8>();
        for off in (0..MIB).step_by(4096) {
            unsafe { base.add(off).write_volatile(1) };
        }
        done += 1;
        if done % 64 == 0 {
            eprintln!("airlock-probe: allocated {done} MiB");
        }
    }
    json!({ "allocated_mb": done, "requested_mb": mb, "errno": err })
}

fn fill(path: &str) -> Value {
    let target = if std::path::Path::new(path).is_dir() {
        format!("{}/fill.bin", path.trim_end_matches('/'))
    } else {
        path.to_string()
    };
    let c = cstr(&target);
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return json!({ "path": target, "bytes": 0, "errno": errno(), "opened": false });
    }
    let buf = vec![0x5au8; 1 << 20];
    let mut total: u64 = 0;
    let err = loop {
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            break Some(e);
        }
        if n == 0 {
            break None;
        }
        total += n as u64;
    };
    unsafe { libc::close(fd) };
    json!({ "path": target, "bytes": total, "errno": err, "opened": true })
}

fn daemonize(pidfile: &str) -> ! {
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        usage(&format!("fork: errno {}", errno()));
    }
    if pid == 0 {
        unsafe { libc::setsid() };
        let gc = unsafe { libc::fork() };
        if gc != 0 {
            unsafe { libc::_exit(if gc < 0 { 1 } else { 0 }) };
        }
        // The grandchild: detached, no stdio, a marker, then forever.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                libc::dup2(null, 0);
                libc::dup2(null, 1);
                libc::dup2(null, 2);
            }
        }
        let me = unsafe { libc::getpid() };
        let tmp = format!("{pidfile}.tmp");
        if std::fs::write(&tmp, format!("{me}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, pidfile);
        }
        loop {
            unsafe { libc::pause() };
        }
    }
    let mut st = 0;
    unsafe { libc::waitpid(pid, &mut st, 0) };
    // Exit only once the marker exists, so a test can rely on it.
    let end = Instant::now() + Duration::from_secs(10);
    while !std::path::Path::new(pidfile).exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let daemon_pid = read_text(pidfile).and_then(|s| s.trim().parse::<i64>().ok());
    print(&json!({ "daemonized": daemon_pid.is_some(), "daemon_pid": daemon_pid }));
    std::process::exit(0);
}

fn output(bytes: u64) -> (u64, Option<i32>) {
    let buf = vec![b'x'; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        let r = unsafe { libc::write(1, buf.as_ptr().cast(), n) };
        if r < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return (bytes - left, Some(e));
        }
        left -= r as u64;
    }
    (bytes, None)
}
