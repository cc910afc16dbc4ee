//! `cargo fuzz run token_response`: see `entra_client::fuzzing::token_response`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| entra_client::fuzzing::token_response(data));
