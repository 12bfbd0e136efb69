//! packetdrill scripts run inside a session: the script's host and the tested
//! host are added to the session's world, and the script runs one event per
//! actor job (as a lab does, see [`super::labs`]), so each event's segments
//! and state changes are published, stored and streamed before the next one,
//! like any other command's.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::command::Command;
use super::model::ClockMode;
use super::session::SessionState;
use super::{Error, LabService};
use crate::engine::Profile;
use crate::ladder::ladder;
use crate::packetdrill::parser::{ParseLimits, parse_script_with};
use crate::packetdrill::runner::{PEER, PEER_IP, ScriptRun, TESTED, TESTED_IP};
use crate::packetdrill::{RunOptions, ScriptBudget, ScriptProfilePolicy, Verdict, default_defines};
use crate::sim::{Event, HostKind, LinkParams, World, WorldConfig};

/// `POST /api/v1/sessions/{sid}/packetdrill`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunPacketdrill {
    /// The script's text (packetdrill syntax).
    pub script: String,
    /// The tested stack's profile: settings, or `{"name": "freebsd", ...overrides}`
    /// as in `POST /api/v1/sessions` (the session's profile when absent).
    #[serde(default, deserialize_with = "super::model::named_or_plain_profile")]
    #[schema(value_type = Option<Object>, example = json!({"name": "freebsd"}))]
    pub profile: Option<Profile>,
    /// Names `#ifdef` sees as defined, besides `STANDARD`.
    #[serde(default)]
    pub defines: Vec<String>,
}

/// A script's verdict, spelled `PASS`, `FAIL`, `SKIP` in JSON: a type, so
/// gRPC converts it with a `match` rather than by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ScriptVerdict {
    /// tcplab behaved as the script expects.
    Pass,
    /// A line differs (the result's `mismatch` says which).
    Fail,
    /// The script needs a feature tcplab does not model (`skipped` says which).
    Skip,
}

/// The first line where tcplab differs from the script.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PacketdrillMismatch {
    /// The script's line number (from 1; 0 before the first line).
    pub line: u64,
    /// The line as written.
    pub expected: String,
    /// What tcplab did instead, in the script's syntax (absent: nothing).
    pub got: Option<String>,
    /// Why it does not match.
    pub reason: String,
    /// Virtual time of the mismatch, in nanoseconds.
    pub t_ns: u64,
}

/// A script's verdict.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PacketdrillResult {
    /// The session it ran in.
    pub session_id: u64,
    /// `PASS`, `FAIL` or `SKIP`.
    #[schema(value_type = String)]
    pub verdict: ScriptVerdict,
    /// For `FAIL`: the first mismatch.
    pub mismatch: Option<PacketdrillMismatch>,
    /// For `SKIP`: the feature tcplab does not model, and its line.
    pub skipped: Option<String>,
    /// The ASCII ladder of the run.
    pub ladder: String,
    /// Virtual time at the end, in nanoseconds.
    pub now_ns: u64,
    /// The session's last event seq after the run.
    pub events: u64,
}

impl LabService {
    /// Runs a packetdrill script in a live manual-clock session (see the module docs).
    ///
    /// # Errors
    /// Unknown or ended session, a realtime session, a script that does not
    /// parse (naming its line), a bad profile, hosts named like the script's
    /// of the wrong kind.
    pub async fn run_packetdrill(&self, sid: u64, req: RunPacketdrill) -> Result<PacketdrillResult, Error> {
        let limits = self.inner.limits.clone();
        if req.script.len() > limits.max_script_bytes {
            return Err(Error::over_budget(
                "max_script_bytes",
                limits.max_script_bytes as u64,
                format!("script: {} octets", req.script.len()),
            ));
        }
        if req.defines.len() > MAX_DEFINES || req.defines.iter().any(|d| d.len() > MAX_DEFINE_LEN) {
            return Err(Error::invalid(
                "defines",
                format!("at most {MAX_DEFINES} names of at most {MAX_DEFINE_LEN} characters"),
            ));
        }
        let mut defines = default_defines();
        defines.extend(req.defines.iter().cloned());
        let defines: BTreeSet<String> = defines;
        let parse_limits =
            ParseLimits { max_lines: limits.max_script_lines, max_nesting_depth: limits.max_nesting_depth };
        let script =
            parse_script_with("script.pkt", &req.script, &defines, &parse_limits).map_err(|e| match e.limit {
                Some((limit, max)) => Error::over_budget(limit, max, format!("script: line {}: {}", e.line, e.message)),
                None => Error::invalid("script", e.to_string()),
            })?;
        check_script_span(&script, limits.run_max_ms)?;
        let profile = req.profile.clone();
        if let (None, Some(name)) = (&profile, script.option("profile")) {
            // The script names a profile for itself: a bad name is a bad request, like a bad line.
            crate::profiles::named_profile(name)
                .map_err(|e| Error::invalid("script", format!("--profile={name}: {e}")))?;
        }
        if let Some(p) = &profile {
            p.validate().map_err(|e| Error::invalid(format!("profile.{}", e.field), e.message))?;
        }
        let record = Command::Packetdrill {
            profile: req.profile.clone(),
            defines: req.defines.clone(),
            lines: req.script.lines().count(),
        };
        let handle = self.live_for_command(sid).await?;
        let started = handle
            .command(move |s: &mut SessionState| {
                s.record_command(record);
                if s.clock != ClockMode::Manual {
                    return Err(Error::FailedPrecondition(
                        "packetdrill runs in manual-clock sessions (script times are virtual)".into(),
                    ));
                }
                prepare_hosts(&mut s.world)?;
                s.publish();
                // A profile in the request wins; else the script's own
                // `--profile=NAME` line; else the session's profile.
                let script_profile =
                    if profile.is_some() { ScriptProfilePolicy::Ignore } else { ScriptProfilePolicy::Header };
                let opts = RunOptions {
                    profile: profile.unwrap_or_else(|| s.profile.clone()),
                    script_profile,
                    budget: ScriptBudget {
                        max_items: s.limits.run_max_events,
                        items_per_turn: super::session::STEPS_PER_TURN,
                        max_write_bytes: s.limits.max_write_bytes,
                    },
                    ..RunOptions::default()
                };
                let placeholder = World::new(WorldConfig::default()).map_err(|e| Error::Internal(e.to_string()))?;
                let mut run = match ScriptRun::in_world(&script, &opts, placeholder) {
                    Ok(run) => run,
                    Err(outcome) => return Ok(Err(outcome)),
                };
                // The script's time 0 is the session's now.
                std::mem::swap(run.world_mut(), &mut s.world);
                run.start_at_now();
                std::mem::swap(run.world_mut(), &mut s.world);
                Ok(Ok(run))
            })
            .await?;
        let (verdict, mut taken) = match started {
            Err(outcome) => (outcome.verdict, Vec::new()),
            Ok(mut run) => {
                let mut taken: Vec<Event> = Vec::new();
                loop {
                    // One turn per job (see `ScriptBudget`): other commands and sessions run in between.
                    self.room_in_the_store("script").await?;
                    let (back, more, events) = handle
                        .command(move |s: &mut SessionState| {
                            std::mem::swap(run.world_mut(), &mut s.world);
                            let more = run.step();
                            std::mem::swap(run.world_mut(), &mut s.world);
                            let events = s.world.take_events();
                            s.publish_taken(events.iter().cloned());
                            Ok((run, more, events))
                        })
                        .await?;
                    run = back;
                    taken.extend(events);
                    if taken.len() > limits.max_report_events {
                        let t_ns = handle.call(|s| Ok(s.world.now().as_nanos())).await?;
                        return Err(Error::over_budget(
                            "max_report_events",
                            limits.max_report_events as u64,
                            format!(
                                "script: stopped at t={:.6} s with {} events kept (session {sid} keeps what ran)",
                                t_ns as f64 / 1e9,
                                taken.len()
                            ),
                        ));
                    }
                    if !more {
                        break;
                    }
                }
                let outcome = run.finish();
                if let Some(limit) = outcome.limit {
                    let line = match &outcome.verdict {
                        Verdict::Fail(f) => f.line,
                        _ => 0,
                    };
                    return Err(Error::over_budget(
                        limit.name,
                        limit.max,
                        format!(
                            "script: line {line}: stopped there at t={:.6} s (session {sid} keeps what ran)",
                            outcome.virtual_ns as f64 / 1e9
                        ),
                    ));
                }
                (outcome.verdict, taken)
            }
        };
        let (events, now_ns) = handle.call(|s| Ok((s.world.next_event_seq() - 1, s.world.now().as_nanos()))).await?;
        taken.retain(|e| e.kind.segment().is_none_or(|w| &*w.from == TESTED || &*w.from == PEER));
        let ladder = ladder(&taken, TESTED, PEER, &Default::default(), &[]);
        let (verdict, mismatch, skipped) = match verdict {
            Verdict::Pass => (ScriptVerdict::Pass, None, None),
            Verdict::Skip { line, feature } => (ScriptVerdict::Skip, None, Some(format!("line {line}: {feature}"))),
            // The service parses the script before it runs it, so a broken
            // script is an INVALID_ARGUMENT above and never reaches here.
            Verdict::Error { line, message, .. } => {
                return Err(Error::invalid("script", format!("line {line}: {message}")));
            }
            Verdict::Fail(f) => (
                ScriptVerdict::Fail,
                Some(PacketdrillMismatch {
                    line: f.line as u64,
                    expected: f.expected,
                    got: f.actual,
                    reason: f.reason,
                    t_ns: f.t_ns,
                }),
                None,
            ),
        };
        Ok(PacketdrillResult { session_id: sid, verdict, mismatch, skipped, ladder, now_ns, events })
    }
}

/// `defines` a request may name, and how long each may be.
const MAX_DEFINES: usize = 64;
const MAX_DEFINE_LEN: usize = 64;

/// Refuses a script whose timeline spans more than `run_max_ms` of virtual
/// time (`+100000 ...`): what the world would have to run through.
fn check_script_span(script: &crate::packetdrill::ast::Script, run_max_ms: u64) -> Result<(), Error> {
    use crate::packetdrill::ast::{Time, TimePoint};
    let cap_us = i64::try_from(run_max_ms.saturating_mul(1_000)).unwrap_or(i64::MAX);
    let mut last: i64 = 0;
    for event in &script.events {
        let point = |p: TimePoint| match p {
            TimePoint::Absolute(t) => t,
            TimePoint::Relative(d) => last.saturating_add(d),
        };
        let (end, base) = match event.time {
            Time::Absolute(t) => (t, t),
            Time::Relative(d) => (last.saturating_add(d), last.saturating_add(d)),
            Time::Range(a, b) => (point(b).max(point(a)), point(b)),
            Time::Any => (last, last),
        };
        if end > cap_us {
            return Err(Error::over_budget(
                "run_max_ms",
                run_max_ms,
                format!("script: line {}: at {:.3} s of virtual time", event.line, end as f64 / 1e6),
            ));
        }
        last = base;
    }
    Ok(())
}

/// Adds the tested host (TCP) and the script's host (raw) with a link of no
/// delay, unless a previous run added them.
fn prepare_hosts(world: &mut World) -> Result<(), Error> {
    for (name, ip, kind) in [(TESTED, TESTED_IP, HostKind::Tcp), (PEER, PEER_IP, HostKind::Raw)] {
        let existing = world.hosts().find(|(n, _, _)| *n == name).map(|(_, i, k)| (i, k));
        match existing {
            None => {
                world.add_host(name, ip, kind)?;
            }
            Some((i, k)) if i == ip && k == kind => {}
            Some(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "host {name} exists with another address or kind; packetdrill needs {name} at {ip}"
                )));
            }
        }
    }
    world.set_link(TESTED, PEER, LinkParams { latency_ms: 0.0, ..LinkParams::default() })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Limits;
    use crate::service::model::{AddHost, CreateSession, EventQuery};
    use crate::sim::EventKind;
    use crate::store::Store;

    const SCRIPT: &str = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n\
                          +0.010 < S 0:0(0) win 65535 <mss 1460>\n+0 > S. 0:0(0) ack 1 win 65535 <mss 1460>\n";

    async fn service() -> (LabService, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("lab.db")).await.expect("open store");
        (LabService::new(store, Limits::default()).await.expect("service"), dir)
    }

    #[tokio::test]
    async fn a_script_runs_step_by_step_in_the_session_and_its_events_are_stored() {
        let (svc, _dir) = service().await;
        let sid = svc.create_session(CreateSession::default()).await.expect("session").id;
        let req = RunPacketdrill {
            script: SCRIPT.into(),
            profile: Some(crate::profiles::named_profile("rfc9293").expect("a shipped profile")),
            ..Default::default()
        };
        let r = svc.run_packetdrill(sid, req.clone()).await.expect("run");
        assert_eq!((r.verdict, r.now_ns), (ScriptVerdict::Pass, 10_000_000), "{r:?}");
        let page = svc.events(sid, EventQuery { limit: Some(1000), ..EventQuery::default() }).await.expect("events");
        assert_eq!(page.events.len() as u64, r.events);
        let kinds: Vec<&str> = page.events.iter().map(|e| e.kind.name()).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "segment_sent").count(), 2, "{kinds:?}");
        // A second run in the same session binds a port the first did not
        // use, so the first run's listener and connection do not meet it.
        let again = svc.run_packetdrill(sid, req).await.expect("run");
        assert_eq!(again.verdict, ScriptVerdict::Pass, "{again:?}");
        let page = svc.events(sid, EventQuery { limit: Some(1000), ..EventQuery::default() }).await.expect("events");
        let ports: BTreeSet<u16> = page
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::SegmentSent { segment, .. } if &*segment.from == TESTED => Some(segment.segment.src_port),
                _ => None,
            })
            .collect();
        assert_eq!(ports, BTreeSet::from([8080, 8081]), "{:?}", page.events);
    }

    #[tokio::test]
    async fn a_script_names_its_profile_and_a_bad_name_is_invalid() {
        let (svc, _dir) = service().await;
        let sid = svc.create_session(CreateSession::default()).await.expect("session").id;
        let named = RunPacketdrill { script: format!("--profile=freebsd\n{SCRIPT}"), ..Default::default() };
        let r = svc.run_packetdrill(sid, named).await.expect("run");
        assert_eq!(r.verdict, ScriptVerdict::Pass, "{r:?}");
        let bad = RunPacketdrill { script: format!("--profile=bsd\n{SCRIPT}"), ..Default::default() };
        let err = svc.run_packetdrill(sid, bad).await.expect_err("refused");
        assert!(
            matches!(&err, Error::InvalidArgument { field, message } if field == "script" && message.contains("unknown profile \"bsd\"")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_host_of_the_wrong_kind_under_the_scripts_name_is_refused() {
        let (svc, _dir) = service().await;
        let sid = svc.create_session(CreateSession::default()).await.expect("session").id;
        let host = AddHost { name: PEER.into(), ip: PEER_IP.to_string(), kind: None };
        svc.add_host(sid, host).await.expect("host");
        let req = RunPacketdrill { script: SCRIPT.into(), ..Default::default() };
        let err = svc.run_packetdrill(sid, req).await.expect_err("refused");
        assert!(matches!(&err, Error::FailedPrecondition(m) if m.contains(PEER)), "{err:?}");
    }
}
