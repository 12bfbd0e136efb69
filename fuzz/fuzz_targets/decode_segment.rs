//! Feeds arbitrary bytes to the segment decoder: see
//! `tcplab::fuzz_targets::decode_segment` for what it checks (the same body
//! runs, bounded, in `cargo test --test fuzz_targets`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tcplab::fuzz_targets::decode_segment(data));
