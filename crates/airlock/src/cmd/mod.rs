//! One module per subcommand.

pub(crate) mod audit;
pub(crate) mod bench;
pub(crate) mod bench_egress;
pub(crate) mod bench_serve;
pub(crate) mod doctor;
pub(crate) mod eval;
pub(crate) mod install;
pub(crate) mod mcp;
pub(crate) mod profile;
pub(crate) mod run;
pub(crate) mod sandbox;
pub(crate) mod serve;
