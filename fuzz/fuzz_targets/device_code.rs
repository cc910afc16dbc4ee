//! `cargo fuzz run device_code`: see `entra_client::fuzzing::device_code`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| entra_client::fuzzing::device_code(data));
