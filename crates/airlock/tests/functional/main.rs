//! Functional black-box tests of the `airlock` binary.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod eval;
mod evidence;
mod lifecycle;
mod limits;
mod readme;
mod run;
mod terminal;
mod usage;
