#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekeeper::fuzz_targets::email(data));
