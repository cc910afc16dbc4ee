//! `cargo fuzz run export`: see `audit_log::fuzzing::export`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| audit_log::fuzzing::export(data));
