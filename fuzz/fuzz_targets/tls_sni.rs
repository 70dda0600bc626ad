//! The first bytes of a stream on port 443, read as a TLS ClientHello.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    airlock_egress::fuzzing::sni(data);
});
