//! Smoke test of the audit fuzz targets in `fuzz/` (`audit_verify`,
//! `audit_tamper`): CI has no nightly toolchain for cargo-fuzz, so this
//! feeds the same entry points (`airlock_audit::fuzzing`) with proptest.
//! The entry points panic when a log that is not the original verifies.

use airlock_audit::fuzzing;
use proptest::prelude::*;

#[test]
fn the_untouched_seed_verifies() {
    // The baseline the properties rely on: no edits, accepted.
    let log = fuzzing::seed_log();
    let key = airlock_audit::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let r = airlock_audit::verify_reader(&log[..], Some(&key)).expect("the seed verifies");
    assert_eq!(r.events, 5);
    fuzzing::tamper(&[]);
    fuzzing::verify_bytes(&log);
}

#[test]
fn every_single_byte_flip_is_caught() {
    // Exhaustive over the seed: flipping any one byte's low bit either
    // fails verification or (whitespace the canonical form ignores) leaves
    // the events as they were; `tamper` asserts which.
    let len = fuzzing::seed_log().len();
    for i in 0..len {
        let [a, b] = (i as u16).to_le_bytes();
        fuzzing::tamper(&[0, a, b, 1]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_edits_never_verify_as_another_log(ops in proptest::collection::vec(any::<u8>(), 0..24)) {
        fuzzing::tamper(&ops);
    }

    #[test]
    fn random_bytes_never_verify(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        fuzzing::verify_bytes(&data);
    }

    #[test]
    fn the_seed_with_garbage_after_it_never_verifies(tail in proptest::collection::vec(any::<u8>(), 1..64)) {
        let mut log = fuzzing::seed_log();
        log.extend_from_slice(&tail);
        fuzzing::verify_bytes(&log);
    }
}

#[test]
fn duplicating_an_unterminated_line_stays_small() {
    // Found by the audit_tamper fuzz target: truncate to part of the first
    // line, then duplicate that line over and over (each doubles it). The
    // harness stops editing past 64 KiB; this must finish at once.
    let mut d = vec![7, 0, 1, 2, 254, 0, 10, 49, 150, 0];
    d.extend(std::iter::repeat_n(229, 99));
    fuzzing::tamper(&d);
}
