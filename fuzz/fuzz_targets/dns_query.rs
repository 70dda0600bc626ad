//! A DNS message sent to the sandbox's DNS server.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    airlock_egress::fuzzing::dns_query(data);
});
