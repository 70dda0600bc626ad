//! Seccomp rule data: which syscalls a sandbox may not make, and why.
//!
//! The rules are plain data. They come from `profiles/seccomp.toml` (the
//! built-in deny list, one entry per syscall with a comment saying why) plus
//! whatever a profile adds. `airlock-jail` compiles them with seccompiler at
//! spawn time; this module never touches the kernel.

use serde::{Deserialize, Serialize};

/// What the kernel does when a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "errno")]
pub enum DenyAction {
    /// Fail the call with this errno (EPERM for most entries, ENOSYS where
    /// libc must fall back, as for clone3).
    Errno(i32),
    /// Kill the whole process (SECCOMP_RET_KILL_PROCESS).
    Kill,
}

/// Width of a syscall argument comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgWidth {
    /// Compare the low 32 bits (the argument is an `int` or `unsigned int`).
    Dword,
    /// Compare all 64 bits.
    Qword,
}

/// How an [`ArgCondition`] compares the argument with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgOp {
    /// `(arg & mask) == value`. With a full mask (`u64::MAX`, or `u32::MAX`
    /// for a dword) this is plain equality; seccompiler's `MaskedEq`.
    MaskedEq,
    /// `arg != value`; the mask is ignored (it is set to the full mask).
    /// Several `Ne` conditions in one rule express "none of these values",
    /// as for `personality`.
    Ne,
}

/// One condition on one argument: `(arg[index] & mask) == value` for
/// [`ArgOp::MaskedEq`], `arg[index] != value` for [`ArgOp::Ne`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ArgCondition {
    /// Argument index, 0..=5.
    pub index: u8,
    /// Width of the comparison.
    pub width: ArgWidth,
    /// The comparison.
    pub op: ArgOp,
    /// Mask applied before comparing; `u64::MAX` (or `u32::MAX` for dword) means plain equality.
    /// Ignored for [`ArgOp::Ne`].
    pub mask: u64,
    /// The value compared against.
    pub value: u64,
}

/// A denied syscall. All `conditions` must hold (AND) for the rule to match;
/// an empty list matches every call. Several rules for the same syscall are
/// alternatives (OR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeccompRule {
    /// The syscall's name as in the kernel's x86_64 table, e.g. `"ptrace"`.
    pub syscall: String,
    /// Conditions on the arguments, all of which must match.
    pub conditions: Vec<ArgCondition>,
    /// What happens when the rule matches.
    pub action: DenyAction,
    /// Why the syscall is denied (from the data file's entry).
    pub why: String,
}

/// The complete seccomp policy of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeccompPolicy {
    /// Rules; a syscall not named by any rule is allowed.
    pub rules: Vec<SeccompRule>,
    /// Kill the process on a call from a foreign architecture (i386, x32).
    /// Always true in built-in data; kept explicit so it is visible in `profile show`.
    pub kill_foreign_arch: bool,
}
