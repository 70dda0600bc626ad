//! airlock-eval: runs an agent against suites of benign tasks and attacks,
//! each scenario in fresh sandboxes, and scores utility, utility under
//! attack, attack success and containment.
//!
//! It owns: the suite format and its validation ([`suite`]), the scenario
//! model ([`model`]), declarative checks, attack generation (templates ×
//! mutations), the agent protocol ([`protocol`]) and adapters, the tools
//! offered to agents, the harness, metrics, reports and gates.

pub mod agents;
pub mod check;
pub mod gate;
pub mod goal;
pub mod metrics;
pub mod model;
pub mod mutate;
pub mod outcome;
pub mod protocol;
pub mod report;
pub mod runner;
pub mod session;
pub mod suite;
pub mod tools;
