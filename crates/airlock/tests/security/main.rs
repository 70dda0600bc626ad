//! Security black-box tests: attacks from inside the sandbox, run through
//! the real `airlock` binary with `airlock-probe` as the payload, each in
//! root and rootless mode. Every test asserts that an attack FAILS (and,
//! where the sandbox promises one, with which errno); the `control_*`
//! checks and the host baselines show that the same probe code succeeds
//! where nothing stops it, so a broken probe cannot pass for containment.

#[path = "../common/mod.rs"]
mod common;

mod attacks;
mod filesystem;
mod identity;
mod namespaces;
mod workspace;
