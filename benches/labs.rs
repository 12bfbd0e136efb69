//! Lab file parsing: a lab of 100,000 steps, as a server accepts at most by
//! default (`max_lab_steps`), parsed with the server's bound. Parsing is
//! linear in the text (each step's line comes from one line index of the
//! file, not a rescan from its start, which made 16,000 steps take 4 s);
//! the goal is well under a second on the 2-core CI machine.
//!
//! Variants: `parse/notes` (100,000 one-line steps), `parse/mixed` (100,000
//! steps of the kinds a lab uses: open, send, run_until_idle, expectations),
//! and `parse/variants` (50,000 shared steps run by two variants). The
//! server answers a file one step over the limit with a 422 before running
//! anything (tests/server_budget.rs).
//!
//! Run with `cargo bench --bench labs`.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use tcplab::lab::Lab;

const STEPS: usize = 100_000;
const HEAD: &str =
    "title = \"many steps\"\nexplanation = \"a bench\"\n\n[[step]]\nlisten = { host = \"B\", port = 80 }\n";

fn notes(n: usize) -> String {
    let mut text = HEAD.to_string();
    for i in 1..n {
        text.push_str(&format!("[[step]]\nnote = \"step {i}\"\n"));
    }
    text
}

fn mixed(n: usize) -> String {
    let kinds = [
        "open = { name = \"c\", client = \"A\", server = \"B\", port = 80 }",
        "send = { conn = \"c\", side = \"client\", data = \"hello\" }",
        "run_until_idle = {}",
        "expect_state = { conn = \"c\", side = \"client\", state = \"ESTABLISHED\" }",
        "expect_segments = [ { from = \"A\", flags = \"ACK\", len = 5 }, { from = \"B\", flags = \"ACK\", len = 0 } ]",
    ];
    let mut text = HEAD.to_string();
    for i in 1..n {
        text.push_str("[[step]]\n");
        text.push_str(kinds[(i - 1) % kinds.len()]);
        text.push('\n');
    }
    text
}

fn variants() -> String {
    format!("{}[[variant]]\nname = \"one\"\n[[variant]]\nname = \"two\"\n", notes(STEPS / 2))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.sample_size(10);
    group.throughput(Throughput::Elements(STEPS as u64));
    for (name, text) in [("notes", notes(STEPS)), ("mixed", mixed(STEPS)), ("variants", variants())] {
        let lab = Lab::parse_bounded("bench.toml", &text, STEPS).expect("within the limit");
        let steps: usize = lab.variants.iter().map(|v| v.steps.len()).sum();
        assert_eq!(steps, STEPS, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| Lab::parse_bounded("bench.toml", black_box(&text), STEPS).expect("parses"));
        });
    }
    group.finish();
    // One step over: refused at the limit, before anything runs.
    let over = notes(STEPS + 1);
    let started = std::time::Instant::now();
    let refused = Lab::parse_bounded("bench.toml", &over, STEPS).expect_err("over max_lab_steps");
    println!("{} steps refused in {:?}: {refused}", STEPS + 1, started.elapsed());
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
