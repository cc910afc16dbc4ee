//! `cargo fuzz run graph_json`: see `entra_client::fuzzing::graph_json`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| entra_client::fuzzing::graph_json(data));
