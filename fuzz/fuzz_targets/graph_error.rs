//! `cargo fuzz run graph_error`: see `entra_client::fuzzing::graph_error`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| entra_client::fuzzing::graph_error(data));
