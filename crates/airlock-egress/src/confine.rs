//! The gateway confines itself with Landlock before it reads a byte from
//! the sandbox: it parses hostile input (HTTP, TLS ClientHellos, DNS), so a
//! bug there must not become the host's files or processes.
//!
//! What it keeps: reading and mapping (for the resolver's NSS modules) under
//! /etc, /usr and /lib*, which name resolution of allowed upstreams needs;
//! no write, create, remove or truncate anywhere; no signals to processes
//! outside its own Landlock domain; no abstract unix sockets outside it.
//! Its sockets were handed to it, and its upstream connections are TCP,
//! which this ruleset does not restrict (the policy does).
//!
//! Best effort, like the sandbox's own Landlock: on a kernel without it the
//! gateway runs as before (nobody, no_new_privs) and says so in its
//! diagnostics.

use landlock::{
    path_beneath_rules, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// Directories the gateway may read beneath (name resolution: resolv.conf,
/// hosts, nsswitch.conf, gai.conf, NSS modules).
pub const READABLE: &[&str] = &["/etc", "/usr", "/lib", "/lib64", "/lib32"];

/// How much of the confinement the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// Every restriction.
    Full,
    /// Some (the kernel's ABI lacks newer ones, such as scoping).
    Partial,
    /// None: the kernel has no Landlock.
    None,
}

/// Confines the calling thread and every thread it starts later. Call it
/// before starting any thread, after no_new_privs is set.
pub fn confine_self() -> Result<Confinement, String> {
    let abi = ABI::V6;
    let err = |e: landlock::RulesetError| format!("landlock: {e}");
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .scope(Scope::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(
            READABLE.iter().filter(|p| std::path::Path::new(p).exists()),
            AccessFs::from_read(abi),
        ))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Confinement::Full,
        RulesetStatus::PartiallyEnforced => Confinement::Partial,
        RulesetStatus::NotEnforced => Confinement::None,
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// Runs `name` again in a child process with `AIRLOCK_CONFINE_CHILD`
    /// set (confining the test process itself would confine every other
    /// test).
    fn in_child(name: &str) -> std::process::Output {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env("AIRLOCK_CONFINE_CHILD", "1")
            .output()
            .unwrap()
    }

    #[test]
    fn a_confined_gateway_resolves_names_but_cannot_touch_the_host() {
        if std::env::var_os("AIRLOCK_CONFINE_CHILD").is_none() {
            let out = in_child(
                "confine::tests::a_confined_gateway_resolves_names_but_cannot_touch_the_host",
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("confined: Full"), "{text}");
            return;
        }
        // The child: what a compromised gateway would try.
        rustix::thread::set_no_new_privs(true).unwrap();
        let scratch = std::env::temp_dir().join(format!("airlock-confine-{}", std::process::id()));
        let c = super::confine_self().unwrap();
        println!("confined: {c:?}");
        // Name resolution still works (files and DNS through NSS).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addrs: Vec<_> = rt
            .block_on(tokio::net::lookup_host(("localhost", 80)))
            .expect("resolving localhost")
            .collect();
        assert!(!addrs.is_empty());
        assert!(std::fs::read_to_string("/etc/hosts").is_ok());
        // No write anywhere, no reading outside the resolver's files.
        for (what, r) in [
            ("create in /tmp", std::fs::write(&scratch, b"x").err()),
            (
                "read /proc/self/environ",
                std::fs::read("/proc/self/environ").err(),
            ),
            ("list /var", std::fs::read_dir("/var").err()),
            ("read /root", std::fs::read_dir("/root").err()),
            (
                "append to /etc/hosts",
                std::fs::OpenOptions::new()
                    .append(true)
                    .open("/etc/hosts")
                    .err(),
            ),
        ] {
            let e = r.unwrap_or_else(|| panic!("{what}: allowed"));
            assert_eq!(e.raw_os_error(), Some(libc_eacces()), "{what}: {e}");
        }
        assert!(!scratch.exists());
        // No signal to a process outside the gateway's domain (pid 1 is
        // never ours): EPERM from scoping, before any permission check.
        let r = rustix::process::test_kill_process(rustix::process::Pid::from_raw(1).unwrap());
        assert_eq!(r, Err(rustix::io::Errno::PERM), "signal to pid 1");
    }

    fn libc_eacces() -> i32 {
        rustix::io::Errno::ACCESS.raw_os_error()
    }
}
