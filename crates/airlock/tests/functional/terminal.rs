//! Interactive use: a terminal stdin (`-i`, `-t`, the notice without
//! them) on a real terminal made by util-linux `script`, and Ctrl-C
//! (SIGINT to airlock): forwarded first, a second within 3 s kills the
//! sandbox.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::lifecycle::procs_with;
use crate::common::*;

const NOTICE: &str =
    "airlock: stdin is a terminal; the sandbox gets no input (pass -i for a pipe, -it for a terminal)";

#[test]
fn tty_gives_the_payload_a_new_terminal_of_the_callers_size_and_restores_the_mode() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let r = on_terminal(
            &sb,
            "stty rows 33 cols 77; a=$(stty -g); \
             $AIRLOCK run --timeout 60s -it -- sh -c \
               'tty; stty size; test -t 2 && echo stderr-is-a-tty; read x; echo got:$x; exit 3'; \
             echo rc=$?; b=$(stty -g); [ \"$a\" = \"$b\" ] && echo mode-restored",
            b"hello\n",
        );
        let out = &r.output;
        // The sandbox's own devpts instance: its first pty.
        assert!(out.contains("/dev/pts/0\n"), "no tty:\n{}", r.describe());
        assert!(out.contains("33 77\n"), "window size:\n{}", r.describe());
        assert!(out.contains("stderr-is-a-tty\n"), "{}", r.describe());
        assert!(out.contains("got:hello\n"), "input:\n{}", r.describe());
        assert!(out.contains("rc=3\n"), "exit status:\n{}", r.describe());
        assert!(
            out.contains("mode-restored"),
            "terminal mode:\n{}",
            r.describe()
        );
        assert!(!out.contains(NOTICE), "{}", r.describe());
    }
}

#[test]
fn tty_forwards_window_size_changes() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        // airlock runs in the background of the same (foreground) process
        // group, so the resize's SIGWINCH reaches it.
        let r = on_terminal(
            &sb,
            "stty rows 33 cols 77; \
             $AIRLOCK run --timeout 60s -it -- sh -c \
               'trap \"stty size; exit 0\" WINCH; stty size; echo ready; \
                i=0; while [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; echo no-winch' \
               </dev/tty & \
             sleep 2; stty rows 41 cols 101; wait $!; echo rc=$?",
            b"",
        );
        let out = &r.output;
        assert!(out.contains("33 77\nready\n"), "{}", r.describe());
        assert!(
            out.contains("41 101\n"),
            "no resize seen:\n{}",
            r.describe()
        );
        assert!(out.contains("rc=0\n"), "{}", r.describe());
    }
}

#[test]
fn tty_needs_a_terminal_on_stdin() {
    let sb = Sandbox::new(modes()[0]);
    let r = sb.airlock(&["run", "-t", "--", "true"]);
    assert_eq!(r.code(), Some(125), "{}", r.describe());
    assert!(
        r.stderr().contains("-t needs a terminal"),
        "{}",
        r.describe()
    );
}

#[test]
fn interactive_passes_terminal_input_through_a_pipe() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let r = on_terminal(
            &sb,
            "$AIRLOCK run --timeout 60s -i -- sh -c \
               'test -t 0 || echo stdin-is-no-tty; read x; echo got:$x'; echo rc=$?",
            b"abc\n",
        );
        let out = &r.output;
        assert!(out.contains("stdin-is-no-tty\n"), "{}", r.describe());
        assert!(out.contains("got:abc\n"), "{}", r.describe());
        assert!(out.contains("rc=0\n"), "{}", r.describe());
        assert!(!out.contains(NOTICE), "{}", r.describe());
    }
}

#[test]
fn a_terminal_stdin_without_i_or_t_gets_one_notice_and_no_input() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let r = on_terminal(
            &sb,
            "$AIRLOCK run --timeout 60s -- sh -c 'read x; echo read-rc=$?'; echo rc=$?",
            b"abc\n",
        );
        let out = &r.output;
        assert_eq!(out.matches(NOTICE).count(), 1, "{}", r.describe());
        assert!(out.contains("read-rc=1\n"), "{}", r.describe());
        assert!(out.contains("rc=0\n"), "{}", r.describe());
        // Not a terminal: no notice.
        let piped = sb.airlock(&["run", "--timeout", RUN_TIMEOUT, "--", "true"]);
        assert_eq!(piped.code(), Some(0), "{}", piped.describe());
        assert!(!piped.stderr().contains(NOTICE), "{}", piped.describe());
    }
}

fn sigint(pid: u32) {
    let st = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -INT {pid}");
}

/// Starts `airlock run -- sh -c SCRIPT` (SCRIPT runs `sleep SLEEP`; with
/// no SCRIPT, the payload is `sleep SLEEP` itself) and waits until the
/// sleep runs.
fn start_sleeper(sb: &Sandbox, script: Option<&str>, sleep: &str) -> std::process::Child {
    let mut c = sb.command();
    c.args(["run", "--timeout", RUN_TIMEOUT, "--"]);
    match script {
        Some(s) => c.args(["sh", "-c", s]),
        None => c.args(["sleep", sleep]),
    };
    c.stdout(Stdio::null());
    let child = c.spawn().expect("start airlock");
    let t = Instant::now();
    while procs_with(&format!("sleep {sleep}")).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the payload never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The trap is set before the sleep starts.
    std::thread::sleep(Duration::from_millis(100));
    child
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if t.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("airlock did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut s);
    s
}

#[test]
fn a_second_interrupt_within_3s_kills_a_payload_that_ignores_sigint() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let sleep = format!("60.{}{}", std::process::id(), mode as u8);
        let mut child = start_sleeper(&sb, Some(&format!("trap '' INT; sleep {sleep}")), &sleep);
        sigint(child.id());
        std::thread::sleep(Duration::from_millis(1000));
        assert!(
            child.try_wait().unwrap().is_none(),
            "[{mode}] one interrupt stopped a payload that ignores SIGINT"
        );
        assert!(!procs_with(&format!("sleep {sleep}")).is_empty());
        let t = Instant::now();
        sigint(child.id());
        let code = wait_exit(&mut child, Duration::from_secs(10));
        let took = t.elapsed();
        let err = stderr_of(&mut child);
        assert_eq!(code, Some(130), "[{mode}] stderr:\n{err}");
        assert!(took < Duration::from_secs(2), "[{mode}] took {took:?}");
        assert!(
            err.contains(
                "airlock: interrupt sent to the sandbox; press Ctrl-C again within 3s to kill it"
            ),
            "[{mode}] stderr:\n{err}"
        );
        assert!(
            err.contains("the sandbox was killed"),
            "[{mode}] stderr:\n{err}"
        );
        let t = Instant::now();
        while !procs_with(&format!("sleep {sleep}")).is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "[{mode}] the payload outlived the sandbox"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn interrupts_further_apart_than_3s_are_each_forwarded() {
    let mode = modes()[0];
    let sb = Sandbox::new(mode);
    let sleep = format!("61.{}{}", std::process::id(), mode as u8);
    let mut child = start_sleeper(&sb, Some(&format!("trap '' INT; sleep {sleep}")), &sleep);
    sigint(child.id());
    std::thread::sleep(Duration::from_millis(3300));
    sigint(child.id());
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "[{mode}] two interrupts 3.3s apart killed the sandbox"
    );
    // A third, within 3s of the second, ends it.
    sigint(child.id());
    let code = wait_exit(&mut child, Duration::from_secs(10));
    let err = stderr_of(&mut child);
    assert_eq!(code, Some(130), "[{mode}] stderr:\n{err}");
    assert_eq!(
        err.matches("interrupt sent to the sandbox").count(),
        2,
        "{err}"
    );
}

#[test]
fn one_interrupt_ends_a_payload_that_does_not_ignore_it() {
    for mode in modes() {
        let sb = Sandbox::new(mode);
        let sleep = format!("62.{}{}", std::process::id(), mode as u8);
        // SIGINT goes to the payload (a shell would wait for its child).
        let mut child = start_sleeper(&sb, None, &sleep);
        let t = Instant::now();
        sigint(child.id());
        let code = wait_exit(&mut child, Duration::from_secs(10));
        let err = stderr_of(&mut child);
        assert_eq!(code, Some(130), "[{mode}] stderr:\n{err}");
        assert!(t.elapsed() < Duration::from_secs(3), "[{mode}]");
        let t = Instant::now();
        while !procs_with(&format!("sleep {sleep}")).is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "[{mode}] left running"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
