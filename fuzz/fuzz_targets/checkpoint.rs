//! `cargo fuzz run checkpoint`: see `audit_log::fuzzing::checkpoint`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| audit_log::fuzzing::checkpoint(data));
