//! `cargo fuzz run bundle`: see `audit_log::fuzzing::bundle`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| audit_log::fuzzing::bundle(data));
