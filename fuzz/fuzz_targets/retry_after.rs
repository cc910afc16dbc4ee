//! `cargo fuzz run retry_after`: see `entra_client::fuzzing::retry_after`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| entra_client::fuzzing::retry_after(data));
