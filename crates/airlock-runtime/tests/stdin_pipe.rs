//! A payload fed through a stdin pipe (`pipe_stdin`), as the eval harness
//! drives its tool server, and caller-chosen sandbox ids. A plain main
//! (no libtest harness): the sandbox's init and gateway are re-executions
//! of this binary.

#[path = "plain_main/mod.rs"]
mod plain_main;

use std::io::Write;
use std::os::fd::OwnedFd;

use airlock_policy::Profile;
use airlock_runtime::{Collect, ExitReason, OutputSink, RunRequest, RuntimeError};

/// Writes `input` into the payload's stdin as soon as it is handed over,
/// then closes it (end of file).
struct Feeder {
    input: &'static [u8],
    out: Collect,
    handed: u32,
}

impl Feeder {
    fn new(input: &'static [u8]) -> Self {
        Feeder {
            input,
            out: Collect::default(),
            handed: 0,
        }
    }
}

impl OutputSink for Feeder {
    fn stdout(&mut self, d: &[u8]) {
        self.out.stdout(d)
    }
    fn stderr(&mut self, d: &[u8]) {
        self.out.stderr(d)
    }
    fn stdin_pipe(&mut self, writer: OwnedFd) {
        self.handed += 1;
        let mut f = std::fs::File::from(writer);
        f.write_all(self.input).unwrap();
    }
}

fn request(argv: &[&str]) -> RunRequest {
    RunRequest::new(
        Profile::builtin("default").unwrap(),
        argv.iter().map(|s| s.to_string()).collect(),
    )
}

fn the_payload_reads_what_the_caller_writes_into_its_pipe() {
    let mut req = request(&[
        "sh",
        "-c",
        "while read -r l; do echo \"got:$l\"; done; echo eof",
    ]);
    req.pipe_stdin = true;
    req.sandbox_id = Some("sbx-caller-chosen_1".into());
    let mut sink = Feeder::new(b"one\ntwo\n");
    let rep = airlock_runtime::run(&req, &mut sink).expect("run");
    assert_eq!(rep.run.reason, ExitReason::Exit { code: 0 });
    assert_eq!(sink.handed, 1);
    assert_eq!(
        String::from_utf8_lossy(&sink.out.stdout),
        "got:one\ngot:two\neof\n"
    );
    assert_eq!(rep.sandbox, "sbx-caller-chosen_1");
}

fn without_pipe_stdin_the_payload_reads_end_of_file_and_no_pipe_is_handed_over() {
    let req = request(&["sh", "-c", "cat; echo eof"]);
    let mut sink = Feeder::new(b"never\n");
    let rep = airlock_runtime::run(&req, &mut sink).expect("run");
    assert_eq!(rep.run.reason, ExitReason::Exit { code: 0 });
    assert_eq!(sink.handed, 0);
    assert_eq!(String::from_utf8_lossy(&sink.out.stdout), "eof\n");
}

fn a_hostile_sandbox_id_is_refused_before_anything_starts() {
    for id in ["", "../../etc", "a b", "x\n", &"y".repeat(65)] {
        let mut req = request(&["true"]);
        req.sandbox_id = Some(id.to_string());
        let mut sink = Collect::default();
        match airlock_runtime::run(&req, &mut sink) {
            Err(RuntimeError::SandboxId(got)) => assert_eq!(got, id),
            other => panic!("{id:?}: {other:?}"),
        }
    }
}

fn main() {
    plain_main::run(&[
        (
            "the_payload_reads_what_the_caller_writes_into_its_pipe",
            the_payload_reads_what_the_caller_writes_into_its_pipe,
        ),
        (
            "without_pipe_stdin_the_payload_reads_end_of_file_and_no_pipe_is_handed_over",
            without_pipe_stdin_the_payload_reads_end_of_file_and_no_pipe_is_handed_over,
        ),
        (
            "a_hostile_sandbox_id_is_refused_before_anything_starts",
            a_hostile_sandbox_id_is_refused_before_anything_starts,
        ),
    ]);
}
