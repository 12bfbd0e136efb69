//! The bodies of the fuzz targets, as plain functions of the library.
//!
//! cargo-fuzz (`fuzz/`) needs a nightly toolchain; these functions are what
//! its targets call, and `tests/fuzz_targets.rs` drives the same functions
//! with bounded proptest runs in `cargo test`, so every CI run fuzzes a
//! little even where nightly is not available. Each function panics when,
//! and only when, it finds a bug: a panic inside the code under test, or a
//! broken invariant it states.
//!
//! - [`decode_segment`]: the segment decoder on arbitrary bytes.
//! - [`parse_lab`]: the lab file parser on arbitrary text.
//! - [`run_packetdrill`]: the packetdrill parser on arbitrary text, and what
//!   parses run against tcplab's TCP in a world of its own, within the
//!   server's budget: it must end with a verdict, never hang, panic or
//!   allocate what the script asks for beyond the limits.
//! - [`RequestFuzzer`]: every JSON request body of [`crate::service::model`]
//!   deserialized as REST deserializes it and handed to the real
//!   [`LabService`] (which is where requests are validated) against a live
//!   session; no request may panic or end in an internal error (a 500).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::engine::segment::{DecodeError, Segment};
use crate::service::model::*;
use crate::service::{Error, LabService, Limits};
use crate::sim::Side;

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// Decoding must never panic; whatever decodes must re-encode (with a fresh
/// checksum) and decode again to the same segment, checksum aside, and
/// encode canonically; a verified decode must agree with an unverified one.
///
/// # Panics
/// On a broken invariant (that is the point).
pub fn decode_segment(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let unverified = Segment::decode_unverified(&bytes);
    match Segment::decode(&bytes, SRC, DST) {
        Ok(seg) => assert_eq!(Ok(seg), unverified),
        Err(DecodeError::BadChecksum { .. }) => assert!(unverified.is_ok()),
        Err(e) => assert_eq!(Err(e), unverified),
    }
    let Ok(seg) = unverified else { return };
    let wire = seg.encode(SRC, DST).expect("a decoded segment's options fit its header");
    let again = Segment::decode(&wire, SRC, DST).expect("an encoded segment decodes");
    assert_eq!(again, Segment { checksum: again.checksum, ..seg.clone() });
    assert_eq!(again.encode(SRC, DST).expect("encodes again"), wire, "encoding is canonical");
    assert_eq!(again.payload, seg.payload);
}

/// The lab file parser on arbitrary bytes (as UTF-8 text when they are):
/// it must answer `Ok` or an error that points inside the text, never panic.
///
/// # Panics
/// On a broken invariant.
pub fn parse_lab(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match crate::lab::Lab::parse("fuzz.toml", text) {
        Ok(lab) => {
            // A lab that parses has a title and is described without panicking.
            let _ = format!("{lab:?}");
        }
        Err(crate::lab::LabError::Parse { line, column, .. }) => {
            let lines = text.split('\n').count().max(1);
            assert!(line >= 1 && line <= lines + 1, "line {line} of {lines}");
            assert!(column >= 1, "column {column}");
        }
        Err(other) => {
            let _ = other.to_string();
        }
    }
}

/// The budget [`run_packetdrill`] runs scripts within: the server's parse
/// limits, and a run small enough for thousands of inputs per second.
pub const PACKETDRILL_FUZZ_BUDGET: crate::packetdrill::ScriptBudget =
    crate::packetdrill::ScriptBudget { max_items: 20_000, items_per_turn: 1_000, max_write_bytes: 1 << 20 };

/// A packetdrill script on arbitrary bytes (as UTF-8 text when they are):
/// parsed with the server's limits, then run to its verdict within
/// [`PACKETDRILL_FUZZ_BUDGET`] (in turns, as a session runs it). A parse
/// error points inside the text; a run ends (the number of turns is bounded
/// by the budget) with a verdict whose line is one of the script's.
///
/// # Panics
/// On a broken invariant, or a panic in the parser or the runner.
pub fn run_packetdrill(data: &[u8]) {
    use crate::packetdrill::parser::{ParseLimits, parse_script_with};
    use crate::packetdrill::{RunOptions, ScriptProfilePolicy, Verdict, default_defines};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let limits = Limits::default();
    let parse_limits = ParseLimits { max_lines: limits.max_script_lines, max_nesting_depth: limits.max_nesting_depth };
    let script = match parse_script_with("fuzz.pkt", text, &default_defines(), &parse_limits) {
        Ok(script) => script,
        Err(e) => {
            let lines = text.split('\n').count().max(1);
            assert!(e.line >= 1 && e.line <= lines + 1, "line {} of {lines}: {e}", e.line);
            assert!(e.column >= 1, "{e}");
            return;
        }
    };
    let opts = RunOptions {
        budget: PACKETDRILL_FUZZ_BUDGET,
        script_profile: ScriptProfilePolicy::HeaderOrSysctl,
        ..RunOptions::default()
    };
    let mut run = match crate::packetdrill::runner::ScriptRun::new(&script, &opts) {
        Ok(run) => run,
        Err(_) => return,
    };
    // Each turn processes at least one item or finishes a line, so the run
    // ends within (items + lines + a little) turns.
    let max_turns = PACKETDRILL_FUZZ_BUDGET.max_items + script.events.len() as u64 + 16;
    let mut turns = 0;
    while run.step() {
        turns += 1;
        assert!(turns <= max_turns, "no verdict after {turns} turns");
    }
    let outcome = run.finish();
    let line = match &outcome.verdict {
        Verdict::Pass => return,
        Verdict::Fail(f) => f.line,
        Verdict::Skip { line, .. } | Verdict::Error { line, .. } => *line,
    };
    assert!(line == 0 || script.events.iter().any(|e| e.line == line), "verdict at line {line}, not a script line");
    if let Some(limit) = outcome.limit {
        assert!(matches!(limit.name, "run_max_events" | "max_write_bytes"), "{limit:?}");
    }
}

/// The request-body target: a live service with small limits (so that no
/// request can run for long), a fixture session refreshed every
/// [`RequestFuzzer::REFRESH`] inputs, and a runtime to call it from
/// synchronous fuzz loops. Dropping it shuts the service down and removes
/// its temporary database.
pub struct RequestFuzzer {
    runtime: tokio::runtime::Runtime,
    service: LabService,
    dir: PathBuf,
    session: u64,
    inputs: u64,
    stats: std::sync::Arc<Stats>,
}

/// What the inputs reached, so that a bounded run can show it tested the
/// service and not only the JSON parser.
#[derive(Debug, Default)]
pub struct Stats {
    /// Request bodies that deserialized (one input may count for several types).
    pub parsed: std::sync::atomic::AtomicU64,
    /// Of those, calls the service accepted.
    pub accepted: std::sync::atomic::AtomicU64,
    /// Of those, calls the service refused with a 4xx-class error.
    pub refused: std::sync::atomic::AtomicU64,
}

/// How the fixture is built, named in the panic message if it fails.
fn fixture_step<T>(what: &str, result: Result<T, Error>) -> Result<T, String> {
    result.map_err(|e| format!("fuzz fixture: {what}: {e}"))
}

impl RequestFuzzer {
    /// Inputs between two fresh fixture sessions.
    pub const REFRESH: u64 = 64;

    /// Starts a service on a database in a fresh temporary directory.
    ///
    /// # Errors
    /// The runtime, the database or the fixture session could not be made.
    pub fn new() -> Result<RequestFuzzer, String> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let dir = std::env::temp_dir().join(format!(
            "tcplab-fuzz-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let limits = Limits {
            max_sessions: 8,
            max_hosts: 8,
            max_connections: 32,
            max_faults: 16,
            max_events_in_memory: 10_000,
            run_max_events: 5_000,
            run_max_ms: 60_000,
            max_body_bytes: 1024 * 1024,
            idle_timeout_s: 0,
            ..Limits::default()
        };
        let db = dir.join("fuzz.db");
        let service = runtime.block_on(async {
            let store = crate::store::Store::open(&db).await.map_err(|e| format!("store: {e}"))?;
            LabService::new(store, limits).await.map_err(|e| format!("service: {e}"))
        })?;
        let mut fuzzer = RequestFuzzer { runtime, service, dir, session: 0, inputs: 0, stats: Default::default() };
        fuzzer.session = fuzzer.fixture()?;
        Ok(fuzzer)
    }

    /// A manual session with hosts A and B, a link, a listener on B:80 and
    /// connection 1 from A, established, with a little data in flight.
    fn fixture(&self) -> Result<u64, String> {
        let service = self.service.clone();
        self.runtime.block_on(async move {
            let req = CreateSession { name: Some("fuzz".into()), seed: Some(1), ..CreateSession::default() };
            let sid = fixture_step("session", service.create_session(req).await)?.id;
            for (name, ip) in [("A", "10.0.0.1"), ("B", "10.0.0.2")] {
                let host = AddHost { name: name.into(), ip: ip.into(), kind: None };
                fixture_step("host", service.add_host(sid, host).await)?;
            }
            let link: SetLink = serde_json::from_value(serde_json::json!({"a": "A", "b": "B", "latency_ms": 5.0}))
                .map_err(|e| e.to_string())?;
            fixture_step("link", service.set_link(sid, link).await)?;
            let listen: AddListener =
                serde_json::from_value(serde_json::json!({"host": "B", "port": 80})).map_err(|e| e.to_string())?;
            fixture_step("listener", service.add_listener(sid, listen).await)?;
            let open: OpenConnection =
                serde_json::from_value(serde_json::json!({"client": "A", "server": "B", "port": 80}))
                    .map_err(|e| e.to_string())?;
            fixture_step("open", service.open_connection(sid, open).await)?;
            let run = ClockRequest {
                action: ClockAction::RunUntilIdle,
                ms: None,
                speed: None,
                max_events: None,
                max_ms: None,
            };
            fixture_step("run", service.clock(sid, run).await)?;
            let send = SendData { side: Side::Client, data: Some("hello".into()), data_base64: None };
            fixture_step("send", service.send(sid, 1, send).await)?;
            Ok(sid)
        })
    }

    /// Counts of what the inputs so far reached.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// One input: deserialized as every request type (as REST does, see
    /// [`crate::api::rest::json`]), and each that deserializes is handed to the
    /// service for the fixture session (path ids: session, connection 1,
    /// fault 1).
    ///
    /// # Panics
    /// When a request ends in a panic or in an internal error.
    pub fn run(&mut self, data: &[u8]) {
        self.inputs += 1;
        if self.inputs % Self::REFRESH == 0 {
            let old = self.session;
            let service = self.service.clone();
            let _ = self.runtime.block_on(async move { service.end_session(old).await });
            match self.fixture() {
                Ok(sid) => self.session = sid,
                Err(e) => panic!("{e}"),
            }
        }
        let (sid, service) = (self.session, self.service.clone());
        let input = String::from_utf8_lossy(data).into_owned();
        let stats = self.stats.clone();
        self.runtime.block_on(async move {
            let s = &service;
            let st = &*stats;
            check(st, "CreateSession", &input, parse(data).map(|r| async move { s.create_session(r).await.map(drop) }))
                .await;
            check(st, "Page", &input, parse(data).map(|r| async move { s.list_sessions(r).await.map(drop) })).await;
            check(st, "AddHost", &input, parse(data).map(|r| async move { s.add_host(sid, r).await.map(drop) })).await;
            check(st, "SetLink", &input, parse(data).map(|r| async move { s.set_link(sid, r).await.map(drop) })).await;
            check(
                st,
                "AddListener",
                &input,
                parse(data).map(|r| async move { s.add_listener(sid, r).await.map(drop) }),
            )
            .await;
            check(
                st,
                "OpenConnection",
                &input,
                parse(data).map(|r| async move { s.open_connection(sid, r).await.map(drop) }),
            )
            .await;
            check(st, "SendData", &input, parse(data).map(|r| async move { s.send(sid, 1, r).await.map(drop) })).await;
            check(st, "CloseRequest", &input, parse(data).map(|r| async move { s.close(sid, 1, r).await.map(drop) }))
                .await;
            check(
                st,
                "SideRequest/abort",
                &input,
                parse(data).map(|r| async move { s.abort(sid, 1, r).await.map(drop) }),
            )
            .await;
            check(st, "AddFault", &input, parse(data).map(|r| async move { s.add_fault(sid, r).await.map(drop) }))
                .await;
            check(st, "Inject", &input, parse(data).map(|r| async move { s.inject(sid, r).await.map(drop) })).await;
            check(st, "ClockRequest", &input, parse(data).map(|r| async move { s.clock(sid, r).await.map(drop) }))
                .await;
            check(st, "EventQuery", &input, parse(data).map(|r| async move { s.events(sid, r).await.map(drop) })).await;
            // Faults added by earlier inputs: release and delete the first one.
            let _ = s.release_fault(sid, 1).await;
        });
        // The session must still answer after whatever was asked of it.
        let service = self.service.clone();
        let alive = self.runtime.block_on(async move { service.get_session(sid).await });
        if let Err(e @ Error::Internal(_)) = alive {
            panic!("session {sid} broken after input {:?}: {e:?}", String::from_utf8_lossy(data));
        }
    }
}

/// `data` as a `T` the way REST reads a JSON body.
fn parse<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    crate::api::rest::json::from_slice(data).ok()
}

/// Runs one call if the body deserialized; an internal error is a bug.
async fn check<F: std::future::Future<Output = Result<(), Error>>>(
    stats: &Stats,
    what: &str,
    input: &str,
    call: Option<F>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(call) = call else { return };
    stats.parsed.fetch_add(1, Relaxed);
    match call.await {
        Ok(()) => stats.accepted.fetch_add(1, Relaxed),
        Err(Error::Internal(detail)) => panic!("{what}: internal error {detail:?} for the body {input:?}"),
        Err(_) => stats.refused.fetch_add(1, Relaxed),
    };
}

impl Drop for RequestFuzzer {
    fn drop(&mut self) {
        let service = self.service.clone();
        let _ = self.runtime.block_on(async move { service.shutdown().await });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
