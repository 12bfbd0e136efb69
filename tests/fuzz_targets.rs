//! The fuzz targets of `fuzz/` (cargo-fuzz, nightly only), run in `cargo
//! test` on stable: first every committed corpus file of `fuzz/corpus/<target>`,
//! then a bounded number of proptest cases per target (random bytes, mutated
//! corpus files, and for the structured inputs a generator of near-valid
//! TOML and JSON). Set `TCPLAB_FUZZ_CASES` to run more (or fewer) cases.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use tcplab::fuzz_targets::{RequestFuzzer, decode_segment, parse_lab, run_packetdrill};

/// Cases per target, scaled by `scale` (the targets differ in cost).
fn cases(scale: u32) -> u32 {
    let base = std::env::var("TCPLAB_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000u32);
    (base * scale / 1000).max(1)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("corpus file")).collect();
    assert!(seeds.len() >= 4, "{target}: a corpus of a few seeds at least");
    seeds
}

/// A corpus file with a few bytes changed, inserted or removed, or cut short.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    (0..n, proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8)).prop_map(
        move |(i, edits)| {
            let mut bytes = seeds[i].clone();
            for (at, byte, op) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let at = at.index(bytes.len());
                match op {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    2 => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            bytes
        },
    )
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

#[test]
fn decode_segment_target() {
    let seeds = corpus("decode_segment");
    for seed in &seeds {
        decode_segment(seed);
    }
    let strategy = prop_oneof![proptest::collection::vec(any::<u8>(), 0..100), mutated(seeds)];
    runner(cases(50_000))
        .run(&strategy, |bytes| {
            decode_segment(&bytes);
            Ok(())
        })
        .expect("decode_segment");
}

/// Lab text: a built-in lab with lines dropped, duplicated or given another
/// value, so that most inputs get past TOML and into the lab's own checks.
fn lab_text() -> impl Strategy<Value = Vec<u8>> {
    let labs: Vec<&'static str> = tcplab::lab::builtin().into_iter().map(|(_, text)| text).collect();
    let values = prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("4294967296".to_string()),
        Just("18446744073709551615".to_string()),
        Just("1e308".to_string()),
        Just("\"\"".to_string()),
        Just("\"#99\"".to_string()),
        Just("\"SYN+ACK+BOGUS\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        "\"[A-Za-z0-9_#+. -]{0,12}\"",
        any::<i64>().prop_map(|v| v.to_string()),
    ];
    (0..labs.len(), proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, values), 1..6)).prop_map(
        move |(i, edits)| {
            let mut lines: Vec<String> = labs[i].lines().map(str::to_string).collect();
            for (at, op, value) in edits {
                if lines.is_empty() {
                    break;
                }
                let at = at.index(lines.len());
                match op {
                    0 => {
                        lines.remove(at);
                    }
                    1 => {
                        let line = lines[at].clone();
                        lines.insert(at, line);
                    }
                    _ => {
                        if let Some((key, _)) = lines[at].split_once('=') {
                            lines[at] = format!("{key}= {value}");
                        }
                    }
                }
            }
            lines.join("\n").into_bytes()
        },
    )
}

#[test]
fn parse_lab_target() {
    let seeds = corpus("parse_lab");
    for seed in &seeds {
        parse_lab(seed);
    }
    let strategy = prop_oneof![
        3 => lab_text(),
        1 => mutated(seeds),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ];
    runner(cases(10_000))
        .run(&strategy, |bytes| {
            parse_lab(&bytes);
            Ok(())
        })
        .expect("parse_lab");
}

/// Script text: a corpus script with lines dropped, duplicated, moved in
/// time or given other numbers, and now and then a nested argument, so that
/// most inputs parse and run.
fn packetdrill_text(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let scripts: Vec<String> = seeds.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    let edit = prop_oneof![
        Just("drop".to_string()),
        Just("repeat".to_string()),
        Just("+0.5".to_string()),
        Just("+86400".to_string()),
        Just("*".to_string()),
        Just("4294967295".to_string()),
        Just("65536".to_string()),
        Just("-1".to_string()),
        Just("[[[[[[[[1]]]]]]]]".to_string()),
        "[0-9]{1,12}",
    ];
    (0..scripts.len(), proptest::collection::vec((any::<prop::sample::Index>(), edit), 1..6)).prop_map(
        move |(i, edits)| {
            let mut lines: Vec<String> = scripts[i].lines().map(str::to_string).collect();
            for (at, edit) in edits {
                if lines.is_empty() {
                    break;
                }
                let at = at.index(lines.len());
                match edit.as_str() {
                    "drop" => {
                        lines.remove(at);
                    }
                    "repeat" => {
                        let line = lines[at].clone();
                        lines.insert(at, line);
                    }
                    time if time.starts_with('+') || time == "*" => {
                        let rest = lines[at].split_once(' ').map_or("", |(_, r)| r).to_string();
                        lines[at] = format!("{time} {rest}");
                    }
                    value => {
                        // The first number after the time takes the value.
                        let line = lines[at].clone();
                        let start = line.find(' ').unwrap_or(0);
                        if let Some(pos) = line[start..].find(|c: char| c.is_ascii_digit()) {
                            let pos = start + pos;
                            let end = line[pos..].find(|c: char| !c.is_ascii_digit()).map_or(line.len(), |e| pos + e);
                            lines[at] = format!("{}{value}{}", &line[..pos], &line[end..]);
                        }
                    }
                }
            }
            lines.join("\n").into_bytes()
        },
    )
}

#[test]
fn run_packetdrill_target() {
    let seeds = corpus("run_packetdrill");
    for seed in &seeds {
        run_packetdrill(seed);
    }
    let strategy = prop_oneof![
        3 => packetdrill_text(seeds.clone()),
        1 => mutated(seeds),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ];
    runner(cases(2_000))
        .run(&strategy, |bytes| {
            run_packetdrill(&bytes);
            Ok(())
        })
        .expect("run_packetdrill");
}

/// Every field name of the request bodies in `service::model` (and of the
/// nested profile, match and option objects), so that generated objects hit
/// real fields, and a few that are none.
const KEYS: &[&str] = &[
    "name",
    "seed",
    "clock",
    "speed",
    "profile",
    "ip",
    "kind",
    "a",
    "b",
    "latency_ms",
    "jitter_ms",
    "loss",
    "duplicate",
    "reorder",
    "corrupt",
    "bandwidth_bps",
    "host",
    "port",
    "isn",
    "client",
    "server",
    "client_port",
    "side",
    "data",
    "data_base64",
    "from",
    "to",
    "match",
    "skip",
    "count",
    "action",
    "delay_ms",
    "flags",
    "len",
    "seq",
    "seq_range",
    "ack",
    "src_port",
    "dst_port",
    "window",
    "urgent",
    "payload",
    "payload_base64",
    "options",
    "ms",
    "max_events",
    "max_ms",
    "after_seq",
    "limit",
    "connection",
    "offset",
    "handshake",
    "time_wait",
    "msl_ms",
    "mss",
    "send_buffer",
    "rto_initial_ms",
    "rto_min_ms",
    "rto_max_ms",
    "max_retries",
    "value",
    "blocks",
    "tsval",
    "tsecr",
    "bytes",
    "bogus",
];

const WORDS: &[&str] = &[
    "A",
    "B",
    "C",
    "client",
    "server",
    "manual",
    "realtime",
    "tcp",
    "raw",
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "256.0.0.1",
    "",
    "SYN",
    "ACK",
    "FIN",
    "RST",
    "PSH",
    "drop",
    "delay",
    "duplicate",
    "corrupt",
    "hold",
    "step",
    "advance",
    "run_until_idle",
    "pause",
    "resume",
    "set_speed",
    "two_way",
    "three_way",
    "off",
    "on",
    "mss",
    "wscale",
    "sack_permitted",
    "nop",
    "eol",
    "timestamps",
    "state_changed",
    "segment_sent",
    "AAEC",
    "%%%",
    "\u{0}",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![Just(0u64), Just(1), Just(80), Just(65535), Just(65536), Just(u32::MAX as u64), Just(u64::MAX)]
            .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(-1.0f64), Just(0.5), Just(1e308), Just(-1e308), Just(1e-300), any::<f64>()]
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(WORDS).prop_map(|w| Value::from(w.to_string())),
        "[a-zA-Z0-9+/=_ -]{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((prop::sample::select(KEYS), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// The fields of each request body of `service::model`: CreateSession,
/// Page, AddHost, SetLink, AddListener, OpenConnection, SendData,
/// SideRequest, AddFault, Inject, ClockRequest, EventQuery.
const TEMPLATES: &[&[&str]] = &[
    &["name", "seed", "clock", "speed", "profile"],
    &["offset", "limit"],
    &["name", "ip", "kind"],
    &["a", "b", "latency_ms", "jitter_ms", "loss", "duplicate", "reorder", "corrupt", "bandwidth_bps"],
    &["host", "port", "isn"],
    &["client", "server", "port", "client_port", "isn"],
    &["side", "data", "data_base64"],
    &["side"],
    &["from", "to", "match", "skip", "count", "action", "delay_ms"],
    &[
        "from",
        "to",
        "src_port",
        "dst_port",
        "flags",
        "seq",
        "ack",
        "window",
        "urgent",
        "payload",
        "payload_base64",
        "options",
        "delay_ms",
    ],
    &["action", "ms", "speed", "max_events", "max_ms"],
    &["after_seq", "limit", "kind", "connection"],
];

fn word() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(|w| Value::from(w.to_string())),
        1 => "[a-zA-Z0-9+/=_ -]{0,16}".prop_map(Value::from),
    ]
    .boxed()
}

fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop_oneof![Just(0u64), Just(1), Just(2), Just(80), Just(301), Just(40000), Just(65535)].prop_map(Value::from),
        1 => prop_oneof![Just(65536u64), Just(u32::MAX as u64), Just(1u64 << 32), Just(u64::MAX)].prop_map(Value::from),
        1 => any::<u32>().prop_map(Value::from),
    ]
    .boxed()
}

fn float() -> BoxedStrategy<Value> {
    prop_oneof![Just(0.0f64), Just(0.5), Just(1.0), Just(10.0), Just(-1.0), Just(2.0), Just(1e300), any::<f64>()]
        .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
        .boxed()
}

fn object_of(keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    proptest::collection::vec((prop::sample::select(keys), prop_oneof![word(), number(), float()]), 0..5)
        .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
        .boxed()
}

/// A plausible value for a field, by its name (the type the model expects,
/// with edge values), or sometimes anything at all.
fn typed(key: &'static str) -> BoxedStrategy<Value> {
    let plausible = match key {
        "seed" | "port" | "isn" | "client_port" | "skip" | "count" | "src_port" | "dst_port" | "seq" | "ack"
        | "window" | "urgent" | "max_events" | "offset" | "limit" | "after_seq" | "connection" | "len" => number(),
        "speed" | "latency_ms" | "jitter_ms" | "loss" | "duplicate" | "reorder" | "corrupt" | "bandwidth_bps"
        | "delay_ms" | "ms" | "max_ms" => float(),
        "clock" => prop_oneof![Just("manual"), Just("realtime"), Just("other")].prop_map(Value::from).boxed(),
        "flags" => {
            proptest::collection::vec(prop::sample::select(&["SYN", "ACK", "FIN", "RST", "PSH", "URG", "X"][..]), 0..4)
                .prop_map(|f| Value::from(f.into_iter().map(Value::from).collect::<Vec<_>>()))
                .boxed()
        }
        "match" => object_of(&["flags", "len", "seq", "seq_range", "ack", "src_port", "dst_port"]),
        "profile" => object_of(&[
            "handshake",
            "time_wait",
            "msl_ms",
            "isn",
            "mss",
            "window",
            "send_buffer",
            "rto_initial_ms",
            "rto_min_ms",
            "rto_max_ms",
            "max_retries",
        ]),
        "options" => proptest::collection::vec(object_of(&["kind", "value", "blocks", "tsval", "tsecr"]), 0..3)
            .prop_map(Value::Array)
            .boxed(),
        "from" | "to" => prop_oneof![word(), object_of(&["host", "port"])].boxed(),
        _ => word(),
    };
    prop_oneof![4 => plausible, 1 => json_value()].boxed()
}

/// A request-shaped object: some fields of one request type (required
/// ones most of the time) with plausible values, sometimes a field that
/// belongs to no type.
fn json_body() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(TEMPLATES)
        .prop_flat_map(|template| {
            let fields: Vec<_> = template.iter().map(|k| proptest::option::weighted(0.7, typed(k))).collect();
            (Just(template), fields, proptest::option::weighted(0.05, (prop::sample::select(KEYS), json_value())))
        })
        .prop_map(|(template, values, stray)| {
            let mut object = serde_json::Map::new();
            for (key, value) in template.iter().zip(values) {
                if let Some(value) = value {
                    object.insert(key.to_string(), value);
                }
            }
            if let Some((key, value)) = stray {
                object.insert(key.to_string(), value);
            }
            serde_json::to_vec(&Value::Object(object)).expect("serialize")
        })
}

#[test]
fn request_body_target() {
    let mut fuzzer = RequestFuzzer::new().expect("service under test");
    let seeds = corpus("request_body");
    for seed in &seeds {
        fuzzer.run(seed);
    }
    let fuzzer = std::cell::RefCell::new(fuzzer);
    let strategy = prop_oneof![
        4 => json_body(),
        2 => mutated(seeds),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ];
    let n = cases(20_000);
    runner(n)
        .run(&strategy, |bytes| {
            fuzzer.borrow_mut().run(&bytes);
            Ok(())
        })
        .expect("request_body");
    use std::sync::atomic::Ordering::Relaxed;
    let fuzzer = fuzzer.into_inner();
    let stats = fuzzer.stats();
    let (parsed, accepted, refused) =
        (stats.parsed.load(Relaxed), stats.accepted.load(Relaxed), stats.refused.load(Relaxed));
    println!("request_body: {n} cases: {parsed} bodies deserialized, {accepted} accepted, {refused} refused");
    // The inputs must reach the service's validation, not only the JSON parser.
    assert!(parsed >= u64::from(n) / 10 && accepted >= u64::from(n) / 50 && refused >= u64::from(n) / 20, "{stats:?}");
}
