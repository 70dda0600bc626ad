//! Functional black-box tests of the `airlock` binary.

mod lifecycle;
mod limits;
