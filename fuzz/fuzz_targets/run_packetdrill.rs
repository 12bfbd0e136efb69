//! Feeds arbitrary text to the packetdrill parser and runs what parses
//! within the server's budget: see `tcplab::fuzz_targets::run_packetdrill`
//! (the same body runs, bounded, in `cargo test --test fuzz_targets`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tcplab::fuzz_targets::run_packetdrill(data));
