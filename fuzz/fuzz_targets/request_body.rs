//! Feeds arbitrary bytes as the JSON body of every request type to a live
//! service: see `tcplab::fuzz_targets::RequestFuzzer` (the same body runs,
//! bounded, in `cargo test --test fuzz_targets`).

#![no_main]

use std::sync::Mutex;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tcplab::fuzz_targets::RequestFuzzer;

fn fuzzer() -> &'static Mutex<RequestFuzzer> {
    static FUZZER: OnceLock<Mutex<RequestFuzzer>> = OnceLock::new();
    FUZZER.get_or_init(|| Mutex::new(RequestFuzzer::new().expect("start the service under test")))
}

fuzz_target!(|data: &[u8]| {
    let mut fuzzer = fuzzer().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    fuzzer.run(data);
});
