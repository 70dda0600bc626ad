//! Edits (byte flips, inserts, deletes; line drops, swaps, duplicates;
//! truncation; appended bytes) to a real signed audit log, then verified.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    airlock_audit::fuzzing::tamper(data);
});
