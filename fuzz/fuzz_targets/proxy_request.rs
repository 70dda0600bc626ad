//! Bytes sent to the sandbox's HTTP proxy on one connection.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    airlock_egress::fuzzing::proxy_request(data);
});
