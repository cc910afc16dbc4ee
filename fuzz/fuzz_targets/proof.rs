//! `cargo fuzz run proof`: see `audit_log::fuzzing::proof`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| audit_log::fuzzing::proof(data));
