//! `cargo fuzz run note`: see `audit_log::fuzzing::note`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| audit_log::fuzzing::note(data));
