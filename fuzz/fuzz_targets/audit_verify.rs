//! Any bytes as an audit log, verified with the fuzz key.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    airlock_audit::fuzzing::verify_bytes(data);
});
