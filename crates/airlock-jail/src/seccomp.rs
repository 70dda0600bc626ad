//! Seccomp: compile the policy's deny rules with seccompiler, install them.
//!
//! The rules are data (`profiles/seccomp.toml` plus profile additions). Each
//! distinct action (EPERM, ENOSYS, kill) becomes one seccompiler filter whose
//! unmatched calls are allowed; the kernel runs every installed filter and
//! applies the most severe answer. seccompiler also kills any call made under
//! a foreign architecture (i386 via `int 0x80`).
//!
//! x32 (`nr | 0x40000000`) shares x86_64's audit arch, and seccompiler can
//! only match exact syscall numbers, so a four-instruction guard that kills
//! every call numbered at or above `__X32_SYSCALL_BIT` is installed too.

use std::collections::BTreeMap;
use std::str::FromStr;

use airlock_policy::{ArgOp, ArgWidth, DenyAction, SeccompPolicy};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// Compiled filters, ready to install: one BPF program per action.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(crate) struct Compiled {
    programs: Vec<Vec<(u16, u8, u8, u32)>>,
}

fn target_arch() -> Result<TargetArch, SpecError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SpecError::Seccomp(format!("unsupported architecture: {e}")))
}

fn to_action(a: DenyAction) -> SeccompAction {
    match a {
        DenyAction::Errno(e) => SeccompAction::Errno(e as u32),
        DenyAction::Kill => SeccompAction::KillProcess,
    }
}

/// Compile the policy. Fails on an unknown syscall name or a rule
/// seccompiler rejects, before anything is spawned.
pub(crate) fn compile(policy: &SeccompPolicy) -> Result<Compiled, SpecError> {
    let arch = target_arch()?;
    // action -> syscall number -> alternatives (None: the call is denied
    // whatever its arguments; seccompiler expresses that as an empty chain).
    let mut by_action: BTreeMap<DenyAction, BTreeMap<i64, Option<Vec<SeccompRule>>>> =
        BTreeMap::new();
    for rule in &policy.rules {
        let nr = syscalls::Sysno::from_str(&rule.syscall)
            .map_err(|_| SpecError::UnknownSyscall {
                name: rule.syscall.clone(),
            })?
            .id() as i64;
        let chain = by_action
            .entry(rule.action)
            .or_default()
            .entry(nr)
            .or_insert_with(|| Some(Vec::new()));
        if rule.conditions.is_empty() {
            *chain = None;
            continue;
        }
        let Some(chain) = chain else { continue };
        let mut conds = Vec::with_capacity(rule.conditions.len());
        for c in &rule.conditions {
            let len = match c.width {
                ArgWidth::Dword => SeccompCmpArgLen::Dword,
                ArgWidth::Qword => SeccompCmpArgLen::Qword,
            };
            let op = match c.op {
                ArgOp::MaskedEq => SeccompCmpOp::MaskedEq(c.mask),
                ArgOp::Ne => SeccompCmpOp::Ne,
            };
            conds.push(
                SeccompCondition::new(c.index, len, op, c.value)
                    .map_err(|e| SpecError::Seccomp(format!("{}: {e}", rule.syscall)))?,
            );
        }
        chain.push(SeccompRule::new(conds).map_err(|e| SpecError::Seccomp(e.to_string()))?);
    }

    let mut programs = Vec::new();
    for (action, rules) in by_action {
        let rules = rules
            .into_iter()
            .map(|(nr, chain)| (nr, chain.unwrap_or_default()))
            .collect();
        let filter = SeccompFilter::new(rules, SeccompAction::Allow, to_action(action), arch)
            .map_err(|e| SpecError::Seccomp(e.to_string()))?;
        let prog: BpfProgram =
            BpfProgram::try_from(filter).map_err(|e| SpecError::Seccomp(e.to_string()))?;
        programs.push(
            prog.into_iter()
                .map(|i| (i.code, i.jt, i.jf, i.k))
                .collect(),
        );
    }
    if policy.kill_foreign_arch && cfg!(target_arch = "x86_64") {
        programs.push(x32_guard());
    }
    Ok(Compiled { programs })
}

/// Kill any x32 syscall (number >= __X32_SYSCALL_BIT). seccompiler matches
/// only exact numbers, so this range check is the one piece of BPF built by
/// hand: load nr; if nr >= 0x40000000 kill the process; else allow.
fn x32_guard() -> Vec<(u16, u8, u8, u32)> {
    // BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JGE | BPF_K, BPF_RET | BPF_K.
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JGE_K: u16 = 0x35;
    const BPF_RET_K: u16 = 0x06;
    vec![
        (BPF_LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        (BPF_JMP_JGE_K, 0, 1, 0x4000_0000),
        (BPF_RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        (BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

impl Compiled {
    /// Install every filter in the calling thread. `no_new_privs` must be set.
    pub(crate) fn install(&self) -> Result<(), String> {
        for p in &self.programs {
            let prog: BpfProgram = p
                .iter()
                .map(|&(code, jt, jf, k)| seccompiler::sock_filter { code, jt, jf, k })
                .collect();
            seccompiler::apply_filter(&prog).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_policy::SeccompRule as Rule;

    fn policy(rules: Vec<Rule>) -> SeccompPolicy {
        SeccompPolicy {
            rules,
            kill_foreign_arch: true,
        }
    }

    fn deny(name: &str, action: DenyAction) -> Rule {
        Rule {
            syscall: name.into(),
            conditions: vec![],
            action,
            why: "test".into(),
        }
    }

    #[test]
    fn builtin_list_compiles_to_one_filter_per_action_plus_x32_guard() {
        let builtin = airlock_policy::builtin_seccomp().unwrap();
        let actions: std::collections::BTreeSet<_> =
            builtin.rules.iter().map(|r| r.action).collect();
        let c = compile(&builtin).unwrap();
        assert_eq!(c.programs.len(), actions.len() + 1);
        assert_eq!(c.programs.last().unwrap(), &x32_guard());
    }

    #[test]
    fn unknown_syscall_is_named() {
        let err = compile(&policy(vec![deny("no_such_call", DenyAction::Errno(1))])).unwrap_err();
        assert!(err.to_string().contains("no_such_call"), "{err}");
    }

    #[test]
    fn unconditional_rule_wins_over_conditional_ones() {
        let mut cond = deny("socket", DenyAction::Errno(1));
        cond.conditions.push(airlock_policy::ArgCondition {
            index: 0,
            width: ArgWidth::Dword,
            op: ArgOp::MaskedEq,
            mask: u64::from(u32::MAX),
            value: 17,
        });
        let both = compile(&policy(vec![
            cond.clone(),
            deny("socket", DenyAction::Errno(1)),
        ]))
        .unwrap();
        let only_cond = compile(&policy(vec![cond])).unwrap();
        // The unconditional chain has no argument checks, so it is shorter.
        assert!(both.programs[0].len() < only_cond.programs[0].len());
    }
}
