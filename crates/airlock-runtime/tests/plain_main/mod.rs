//! The main of a test binary without the libtest harness: the sandbox's
//! init and gateway are re-executions of the test binary itself, which
//! must divert to them before anything else.

/// Serves a re-execution as init or gateway; otherwise runs `tests` in
/// order, prints a line per test and a summary, and exits non-zero when one
/// failed.
pub(crate) fn run(tests: &[(&str, fn())]) -> ! {
    airlock_runtime::helper_main_if_requested();
    let mut failed = 0;
    for (name, f) in tests {
        let ok = std::panic::catch_unwind(f).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    println!("{} passed, {failed} failed", tests.len() - failed);
    std::process::exit(i32::from(failed > 0));
}
