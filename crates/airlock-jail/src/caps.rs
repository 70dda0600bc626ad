//! Capabilities: the payload ends with every set empty (effective,
//! permitted, inheritable, ambient and the bounding set).

use caps::CapSet;

/// Drop every capability of the calling thread, the bounding set first
/// (which needs CAP_SETPCAP, so it goes while we still hold it).
pub(crate) fn drop_all() -> Result<(), String> {
    // A process forked from an init that already dropped everything has
    // an empty bounding set and no CAP_SETPCAP to touch it.
    let bounding =
        caps::read(None, CapSet::Bounding).map_err(|e| format!("reading the bounding set: {e}"))?;
    if !bounding.is_empty() {
        caps::clear(None, CapSet::Bounding)
            .map_err(|e| format!("clearing the bounding set: {e}"))?;
    }
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| format!("clearing ambient capabilities: {e}"))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| format!("clearing inheritable capabilities: {e}"))?;
    caps::clear(None, CapSet::Effective)
        .map_err(|e| format!("clearing effective capabilities: {e}"))?;
    caps::clear(None, CapSet::Permitted)
        .map_err(|e| format!("clearing permitted capabilities: {e}"))?;
    Ok(())
}

/// What init keeps while payloads run: nothing but CAP_SYS_PTRACE in its
/// own user namespace (the bounding set, inheritable and ambient sets
/// emptied), which lets it read an exec's `/proc` entries at its first
/// execve, while the process is still non-dumpable (it stays so until its
/// exec, so that no other process of the sandbox can reach it through
/// `/proc` or `pidfd_getfd` while it holds init's control socket).
pub(crate) fn keep_only_ptrace() -> Result<(), String> {
    let mut keep = caps::CapsHashSet::new();
    keep.insert(caps::Capability::CAP_SYS_PTRACE);
    caps::clear(None, CapSet::Bounding).map_err(|e| format!("clearing the bounding set: {e}"))?;
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| format!("clearing ambient capabilities: {e}"))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| format!("clearing inheritable capabilities: {e}"))?;
    caps::set(None, CapSet::Effective, &keep)
        .map_err(|e| format!("setting effective capabilities: {e}"))?;
    caps::set(None, CapSet::Permitted, &keep)
        .map_err(|e| format!("setting permitted capabilities: {e}"))?;
    Ok(())
}
