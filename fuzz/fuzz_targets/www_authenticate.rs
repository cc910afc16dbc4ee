//! `cargo fuzz run www_authenticate`: see `entra_client::fuzzing::www_authenticate`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| entra_client::fuzzing::www_authenticate(data));
