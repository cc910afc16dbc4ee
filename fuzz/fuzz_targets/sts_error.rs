//! `cargo fuzz run sts_error`: see `entra_client::fuzzing::sts_error`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| entra_client::fuzzing::sts_error(data));
