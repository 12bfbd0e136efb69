//! Feeds arbitrary text to the lab file parser: see
//! `tcplab::fuzz_targets::parse_lab` (the same body runs, bounded, in
//! `cargo test --test fuzz_targets`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tcplab::fuzz_targets::parse_lab(data));
