//! The built-in seccomp deny list: `profiles/seccomp.toml`, parsed and
//! expanded into [`SeccompRule`]s.
//!
//! The file is data, not code: each `[[deny]]` entry names a syscall, says
//! why, and optionally filters on one argument. Symbolic values (`TIOCSTI`,
//! `CLONE_NEWUSER`, ...) come from the small table below; anything else must
//! be a number.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::error::{FieldError, ProfileError};
use crate::locate::FieldPath;
use crate::seccomp::{ArgCondition, ArgOp, ArgWidth, DenyAction, SeccompPolicy, SeccompRule};

/// Name of the data file, as shown in errors.
const ORIGIN: &str = "builtin:seccomp";
const SOURCE: &str = include_str!("../../../profiles/seccomp.toml");

/// errno values by name.
pub(crate) const EPERM: i32 = 1;
const ERRNOS: &[(&str, i32)] = &[("EPERM", EPERM), ("EACCES", 13), ("ENOSYS", 38)];

/// Symbolic argument values (x86_64 Linux).
const CONSTANTS: &[(&str, u64)] = &[
    // <linux/sched.h> namespace flags
    ("CLONE_NEWTIME", 0x0000_0080),
    ("CLONE_NEWNS", 0x0002_0000),
    ("CLONE_NEWCGROUP", 0x0200_0000),
    ("CLONE_NEWUTS", 0x0400_0000),
    ("CLONE_NEWIPC", 0x0800_0000),
    ("CLONE_NEWUSER", 0x1000_0000),
    ("CLONE_NEWPID", 0x2000_0000),
    ("CLONE_NEWNET", 0x4000_0000),
    // <asm-generic/ioctls.h>
    ("TIOCSTI", 0x5412),
    ("TIOCLINUX", 0x541C),
    // <linux/socket.h>, <linux/net.h>
    ("AF_PACKET", 17),
    ("SOCK_RAW", 3),
    ("SOCK_PACKET", 10),
];

/// A number or a symbolic name, as written in the data file.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Value {
    Int(u64),
    Text(String),
}

fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(&hex.replace('_', ""), 16).ok()
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

impl Value {
    fn resolve(&self, width: ArgWidth) -> Result<u64, String> {
        let number = match self {
            Value::Int(n) => *n,
            Value::Text(text) => match CONSTANTS.iter().find(|(name, _)| name == text) {
                Some((_, n)) => *n,
                None => parse_number(text).ok_or_else(|| {
                    format!(
                        "unknown constant {text:?}: expected a number (\"0x5412\", \"17\") or one of {}",
                        CONSTANTS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?,
            },
        };
        if width == ArgWidth::Dword && number > u64::from(u32::MAX) {
            return Err(format!(
                "value {number:#x} does not fit in a dword comparison"
            ));
        }
        Ok(number)
    }
}

fn default_width() -> ArgWidth {
    ArgWidth::Qword
}

/// `flags_any = { arg, bits, width? }`: deny if any bit is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagsAny {
    arg: u8,
    bits: Vec<Value>,
    #[serde(default = "default_width")]
    width: ArgWidth,
}

/// `arg_eq = { arg, value, width }`: deny if the argument equals the value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgEq {
    arg: u8,
    value: Value,
    width: ArgWidth,
}

/// `arg_masked_eq = { arg, mask, value, width }`: deny if `(arg & mask) == value`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgMaskedEq {
    arg: u8,
    mask: Value,
    value: Value,
    width: ArgWidth,
}

/// `arg_ne_all = { arg, values, width }`: deny if the argument is none of the values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgNeAll {
    arg: u8,
    values: Vec<Value>,
    width: ArgWidth,
}

/// One `[[deny]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    syscall: String,
    why: String,
    errno: Option<Value>,
    flags_any: Option<FlagsAny>,
    arg_eq: Option<ArgEq>,
    arg_masked_eq: Option<ArgMaskedEq>,
    arg_ne_all: Option<ArgNeAll>,
}

/// The whole data file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyFile {
    deny: Vec<Entry>,
}

/// Checks the shape of a syscall name (whether it exists is the jail's
/// business: it resolves names against the running architecture's table).
pub(crate) fn check_syscall_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid syscall name {name:?}: expected a name from the kernel's table, e.g. \"ptrace\""
        ))
    }
}

fn full_mask(width: ArgWidth) -> u64 {
    match width {
        ArgWidth::Dword => u64::from(u32::MAX),
        ArgWidth::Qword => u64::MAX,
    }
}

fn check_arg(arg: u8) -> Result<u8, String> {
    if arg <= 5 {
        Ok(arg)
    } else {
        Err(format!("argument index {arg} is out of range 0..=5"))
    }
}

fn errno_of(value: &Value) -> Result<i32, String> {
    let number = match value {
        Value::Int(n) => i32::try_from(*n).ok(),
        Value::Text(text) => ERRNOS
            .iter()
            .find(|(name, _)| name == text)
            .map(|(_, n)| *n)
            .or_else(|| parse_number(text).and_then(|n| i32::try_from(n).ok())),
    };
    match number {
        Some(n) if (1..=4095).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid errno {value:?}: expected EPERM, EACCES, ENOSYS or a number 1..=4095"
        )),
    }
}

impl Entry {
    /// Expands the entry into rules. `path` is the entry's own path.
    fn expand(self, path: &FieldPath) -> Result<Vec<SeccompRule>, FieldError> {
        let at = |key: &str, message: String| {
            FieldError::new(
                path.clone().key(key),
                format!("entry for {:?}: {message}", self.syscall),
            )
        };
        check_syscall_name(&self.syscall).map_err(|m| at("syscall", m))?;
        if self.why.trim().is_empty() {
            return Err(at("why", "must say why the syscall is denied".into()));
        }
        let action = match &self.errno {
            None => DenyAction::Errno(EPERM),
            Some(value) => DenyAction::Errno(errno_of(value).map_err(|m| at("errno", m))?),
        };
        let filters = [
            self.flags_any.is_some(),
            self.arg_eq.is_some(),
            self.arg_masked_eq.is_some(),
            self.arg_ne_all.is_some(),
        ];
        if filters.iter().filter(|set| **set).count() > 1 {
            return Err(FieldError::new(
                path.clone(),
                format!(
                    "entry for {:?}: at most one of flags_any, arg_eq, arg_masked_eq and arg_ne_all",
                    self.syscall
                ),
            ));
        }
        let rule = |conditions: Vec<ArgCondition>| SeccompRule {
            syscall: self.syscall.clone(),
            conditions,
            action,
            why: self.why.clone(),
        };
        if let Some(f) = &self.flags_any {
            let index = check_arg(f.arg).map_err(|m| at("flags_any", m))?;
            if f.bits.is_empty() {
                return Err(at("flags_any", "bits must not be empty".into()));
            }
            let mut rules = Vec::with_capacity(f.bits.len());
            for bit in &f.bits {
                let bit = bit.resolve(f.width).map_err(|m| at("flags_any", m))?;
                if bit == 0 {
                    return Err(at("flags_any", "a bit of 0 would match every call".into()));
                }
                rules.push(rule(vec![ArgCondition {
                    index,
                    width: f.width,
                    op: ArgOp::MaskedEq,
                    mask: bit,
                    value: bit,
                }]));
            }
            return Ok(rules);
        }
        if let Some(f) = &self.arg_eq {
            let index = check_arg(f.arg).map_err(|m| at("arg_eq", m))?;
            let value = f.value.resolve(f.width).map_err(|m| at("arg_eq", m))?;
            return Ok(vec![rule(vec![ArgCondition {
                index,
                width: f.width,
                op: ArgOp::MaskedEq,
                mask: full_mask(f.width),
                value,
            }])]);
        }
        if let Some(f) = &self.arg_masked_eq {
            let index = check_arg(f.arg).map_err(|m| at("arg_masked_eq", m))?;
            let mask = f
                .mask
                .resolve(f.width)
                .map_err(|m| at("arg_masked_eq", m))?;
            let value = f
                .value
                .resolve(f.width)
                .map_err(|m| at("arg_masked_eq", m))?;
            if value & !mask != 0 {
                return Err(at(
                    "arg_masked_eq",
                    format!(
                        "value {value:#x} has bits outside mask {mask:#x}, so it never matches"
                    ),
                ));
            }
            return Ok(vec![rule(vec![ArgCondition {
                index,
                width: f.width,
                op: ArgOp::MaskedEq,
                mask,
                value,
            }])]);
        }
        if let Some(f) = &self.arg_ne_all {
            let index = check_arg(f.arg).map_err(|m| at("arg_ne_all", m))?;
            if f.values.is_empty() {
                return Err(at("arg_ne_all", "values must not be empty".into()));
            }
            let conditions = f
                .values
                .iter()
                .map(|v| {
                    Ok(ArgCondition {
                        index,
                        width: f.width,
                        op: ArgOp::Ne,
                        mask: full_mask(f.width),
                        value: v.resolve(f.width)?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()
                .map_err(|m| at("arg_ne_all", m))?;
            return Ok(vec![rule(conditions)]);
        }
        Ok(vec![rule(Vec::new())])
    }
}

/// Parses a deny-list file (the built-in one, or another in tests).
pub(crate) fn parse_deny_list(origin: &str, src: &str) -> Result<SeccompPolicy, ProfileError> {
    let file: DenyFile =
        toml::from_str(src).map_err(|e| ProfileError::from_toml(origin, src, &e))?;
    let mut rules = Vec::new();
    for (i, entry) in file.deny.into_iter().enumerate() {
        let path = FieldPath::root().key("deny").index(i);
        rules.extend(
            entry
                .expand(&path)
                .map_err(|e| ProfileError::from_field(origin, src, e))?,
        );
    }
    Ok(SeccompPolicy {
        rules,
        kill_foreign_arch: true,
    })
}

/// The built-in deny list from `profiles/seccomp.toml`, parsed once.
///
/// Every profile's [`SeccompPolicy`] starts from this list. An error here
/// means the embedded data file is broken (a test guards against that).
pub fn builtin_seccomp() -> Result<SeccompPolicy, ProfileError> {
    static CACHE: OnceLock<Result<SeccompPolicy, ProfileError>> = OnceLock::new();
    CACHE
        .get_or_init(|| parse_deny_list(ORIGIN, SOURCE))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses() {
        let policy = builtin_seccomp().unwrap();
        assert!(policy.kill_foreign_arch);
        let names: Vec<&str> = policy.rules.iter().map(|r| r.syscall.as_str()).collect();
        for required in [
            "unshare",
            "setns",
            "clone",
            "clone3",
            "mount",
            "umount2",
            "pivot_root",
            "move_mount",
            "open_tree",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "mount_setattr",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "bpf",
            "perf_event_open",
            "add_key",
            "request_key",
            "keyctl",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "userfaultfd",
            "open_by_handle_at",
            "name_to_handle_at",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "reboot",
            "swapon",
            "swapoff",
            "settimeofday",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
            "acct",
            "quotactl",
            "quotactl_fd",
            "personality",
            "lookup_dcookie",
            "vhangup",
            "socket",
            "ioctl",
            "iopl",
            "ioperm",
            "syslog",
            "pidfd_getfd",
            "fanotify_init",
            "uselib",
        ] {
            assert!(names.contains(&required), "{required} missing");
        }
        for rule in &policy.rules {
            assert!(!rule.why.is_empty(), "{}", rule.syscall);
        }
    }

    #[test]
    fn expansions() {
        let policy = builtin_seccomp().unwrap();
        let rules = |name: &str| -> Vec<&SeccompRule> {
            policy.rules.iter().filter(|r| r.syscall == name).collect()
        };
        // clone: one rule per namespace flag, each a single masked bit.
        let clone = rules("clone");
        assert_eq!(clone.len(), 8);
        for rule in &clone {
            let [c] = rule.conditions.as_slice() else {
                panic!("one condition")
            };
            assert_eq!((c.index, c.op, c.mask), (0, ArgOp::MaskedEq, c.value));
            assert_eq!(c.value.count_ones(), 1);
        }
        assert!(clone.iter().any(|r| r.conditions[0].value == 0x1000_0000));
        // clone3 answers ENOSYS so that libc falls back.
        assert_eq!(rules("clone3")[0].action, DenyAction::Errno(38));
        assert_eq!(rules("ptrace")[0].action, DenyAction::Errno(EPERM));
        assert!(rules("ptrace")[0].conditions.is_empty());
        // ioctl TIOCSTI is a dword equality.
        let ioctl = rules("ioctl");
        assert!(ioctl.iter().any(|r| r.conditions
            == [ArgCondition {
                index: 1,
                width: ArgWidth::Dword,
                op: ArgOp::MaskedEq,
                mask: 0xffff_ffff,
                value: 0x5412,
            }]));
        // socket type SOCK_RAW under mask 0xf.
        assert!(rules("socket").iter().any(|r| r.conditions
            == [ArgCondition {
                index: 1,
                width: ArgWidth::Dword,
                op: ArgOp::MaskedEq,
                mask: 0xf,
                value: 3,
            }]));
        // personality: one rule, all Ne.
        let personality = rules("personality");
        assert_eq!(personality.len(), 1);
        assert!(personality[0].conditions.len() >= 2);
        assert!(personality[0].conditions.iter().all(|c| c.op == ArgOp::Ne));
        assert!(personality[0]
            .conditions
            .iter()
            .any(|c| c.value == 0xffff_ffff));
    }

    #[cfg(test)]
    fn bad(src: &str) -> String {
        parse_deny_list("test.toml", src).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_entry() {
        let err = bad("[[deny]]\nsyscall = \"ptrace\"\nwhy = \"x\"\n\n[[deny]]\nsyscall = \"ioctl\"\narg_eq = { arg = 1, value = \"TIOCSTX\", width = \"dword\" }\nwhy = \"y\"\n");
        assert!(err.starts_with("test.toml:7:"), "{err}");
        assert!(err.contains("deny[1].arg_eq"), "{err}");
        assert!(err.contains("\"ioctl\""), "{err}");
        assert!(err.contains("unknown constant \"TIOCSTX\""), "{err}");

        let err = bad("[[deny]]\nsyscall = \"ptrace\"\nwhy = \"\"\n");
        assert!(
            err.contains("test.toml:3:") && err.contains("deny[0].why"),
            "{err}"
        );

        let err = bad("[[deny]]\nsyscall = \"ptrace\"\nwhy = \"x\"\nflavour = 1\n");
        assert!(
            err.contains("test.toml:4:1: deny[0].flavour: unknown field"),
            "{err}"
        );

        let err = bad("[[deny]]\nsyscall = \"x\"\nwhy = \"x\"\narg_eq = { arg = 0, value = \"0x100000000\", width = \"dword\" }\n");
        assert!(err.contains("does not fit in a dword"), "{err}");

        let err = bad("[[deny]]\nsyscall = \"x\"\nwhy = \"x\"\narg_eq = { arg = 6, value = 1, width = \"qword\" }\n");
        assert!(err.contains("out of range"), "{err}");

        let err = bad("[[deny]]\nsyscall = \"x\"\nwhy = \"x\"\nerrno = \"EFOO\"\n");
        assert!(
            err.contains("deny[0].errno") && err.contains("EFOO"),
            "{err}"
        );

        let err = bad("[[deny]]\nsyscall = \"x\"\nwhy = \"x\"\narg_masked_eq = { arg = 0, mask = 1, value = 2, width = \"qword\" }\n");
        assert!(err.contains("never matches"), "{err}");

        let err = bad("[[deny]]\nsyscall = \"x\"\nwhy = \"x\"\narg_eq = { arg = 0, value = 1, width = \"qword\" }\narg_ne_all = { arg = 0, values = [1], width = \"qword\" }\n");
        assert!(err.contains("at most one"), "{err}");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0x5412"), Some(0x5412));
        assert_eq!(parse_number("17"), Some(17));
        assert_eq!(parse_number("0xffff_ffff"), Some(0xffff_ffff));
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("x"), None);
    }
}
