//! `cargo fuzz run token_claims`: see `entra_client::fuzzing::token_claims`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| entra_client::fuzzing::token_claims(data));
