//! Labs on the server: list the built-in labs, and run one as real sessions.
//!
//! A lab run is not a side channel: each variant gets a session like one
//! `POST /api/v1/sessions` creates (persisted in SQLite, its actor owning the
//! world), whose world is the lab's ([`Lab::new_world`]: the variant's seed,
//! profile, hosts and links). The service then drives the lab's
//! [`LabRun`] on that actor **one step per job**: the run takes each step's
//! events to check them, and the job hands the same events to
//! `SessionState::publish_taken`, so every segment and state change of the
//! run is published live (SSE, `WatchEvents`, the dashboard) and stored
//! exactly like any other session's. Between two steps the actor is free, so
//! a watcher can subscribe while the lab runs.
//!
//! Which variants run: every variant of the lab by default, one session per
//! variant (so `why-not-two-way` shows both the three-way refusal and the
//! two-way ghost connection side by side); `variant` picks one. The reply's
//! top-level `session_id`, `variant`, `checks`, `ladder` and `error` are the
//! first run variant's (the only one when `variant` is given), `passed` is
//! true only if every run variant passed, and `variants` lists them all.
//!
//! The sessions stay live after the run (manual clock) so that one can keep
//! changing things and watch them break; `end: true` ends them instead.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::command::{Command, RunLabArgs};
use super::session::SessionState;
use super::{Error, LabService, LimitHit, Limits};
use crate::lab::{self, Check, Lab, LabError, LabRun, LabVariant, RunBudget, Step};

/// Built-in labs and lab files can only ever be this long a name.
const MAX_NAME: usize = 200;

/// One way a lab can be run.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LabVariantInfo {
    /// `default` for a lab without variants.
    pub name: String,
    /// What it changes and what it shows.
    pub description: String,
    /// Steps of the run (actions and expectations).
    pub steps: usize,
    /// Of which expectations.
    pub expectations: usize,
    /// The world's profile for this variant (handshake, time_wait, ISN...).
    #[schema(value_type = Object)]
    pub profile: crate::engine::Profile,
}

/// A lab as `GET /api/v1/labs` lists it (and `GET /api/v1/labs/{name}` with its source).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LabInfo {
    /// The name to run it by (`three-way-handshake`).
    pub name: String,
    /// One-line title.
    pub title: String,
    /// What it shows and which claim of the seed text it tests.
    pub explanation: String,
    /// Its variants, in the order they run.
    pub variants: Vec<LabVariantInfo>,
    /// The lab's TOML source (only for a single lab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toml: Option<String>,
}

/// `GET /api/v1/labs`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LabList {
    /// The built-in labs, in teaching order.
    pub labs: Vec<LabInfo>,
}

/// `POST /api/v1/labs/{name}/runs`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunLab {
    /// Run only this variant (default: every variant, one session each).
    #[serde(default)]
    pub variant: Option<String>,
    /// The session's name (default `lab <name>`); with several variants,
    /// each session's name ends in ` (<variant>)`.
    #[serde(default)]
    pub name: Option<String>,
    /// End the sessions once the lab has run (default false: they stay live,
    /// manual clock, to keep exploring).
    #[serde(default)]
    pub end: Option<bool>,
}

/// `POST /api/v1/labs/runs`: a lab given as TOML text, in the format of `labs/*.toml`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunLabToml {
    /// The lab file's text.
    pub toml: String,
    /// Run only this variant (default: every variant).
    #[serde(default)]
    pub variant: Option<String>,
    /// The session's name (default `lab custom`).
    #[serde(default)]
    pub name: Option<String>,
    /// End the sessions once the lab has run.
    #[serde(default)]
    pub end: Option<bool>,
}

/// One expectation's verdict.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LabCheck {
    /// 1-based index of the step in the variant's run.
    pub step: usize,
    /// Line of the step in the lab file.
    pub line: usize,
    /// The step's key (`expect_segments`, `expect_state`...).
    pub kind: String,
    /// What was checked (`server state`, `segment 2`).
    pub what: String,
    /// Whether it held.
    pub passed: bool,
    /// What the lab expected.
    pub expected: String,
    /// What the world showed.
    pub got: String,
    /// Virtual time of the observation, in ms.
    pub t_ms: f64,
    /// The whole verdict as one line, as `tcplab lab run` prints it.
    pub message: String,
}

impl From<Check> for LabCheck {
    fn from(c: Check) -> LabCheck {
        LabCheck {
            message: c.message(),
            step: c.step,
            line: c.line,
            kind: c.kind.to_string(),
            what: c.what,
            passed: c.passed,
            expected: c.expected,
            got: c.got,
            t_ms: c.t_ms,
        }
    }
}

/// One variant's run: its session and its verdict.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LabVariantRun {
    /// The variant's name.
    pub variant: String,
    /// What it shows.
    pub description: String,
    /// The session the run happened in (its events and segments are there).
    pub session_id: u64,
    /// Every check passed and no step failed.
    pub passed: bool,
    /// The checks, in order.
    pub checks: Vec<LabCheck>,
    /// A step the world refused (the run stopped there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `limit` when a budget limit stopped the run part-way (`error` says at
    /// which step; what ran is in the session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub stopped_by: Option<super::model::StopReason>,
    /// The limit that stopped it, and how to raise it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitHit>,
    /// The ASCII ladder diagram of the run.
    pub ladder: String,
    /// Events the run produced.
    pub events: u64,
    /// Virtual time at the end of the run, in nanoseconds.
    pub now_ns: u64,
}

/// The reply to a lab run.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LabRunResult {
    /// The lab's name.
    pub lab: String,
    /// Its title.
    pub title: String,
    /// Every run variant passed.
    pub passed: bool,
    /// The first run variant's session.
    pub session_id: u64,
    /// The first run variant's name.
    pub variant: String,
    /// The first run variant's checks.
    pub checks: Vec<LabCheck>,
    /// The first run variant's step error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `limit` when a budget limit stopped the first run variant part-way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub stopped_by: Option<super::model::StopReason>,
    /// The limit that stopped it, and how to raise it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitHit>,
    /// The first run variant's ladder diagram.
    pub ladder: String,
    /// Every run variant, each in its own session.
    pub variants: Vec<LabVariantRun>,
}

fn lab_info(lab: &Lab, toml: Option<String>) -> LabInfo {
    LabInfo {
        name: lab.name.clone(),
        title: lab.title.clone(),
        explanation: lab.explanation.clone(),
        variants: lab
            .variants
            .iter()
            .map(|v| LabVariantInfo {
                name: v.name.clone(),
                description: v.description.clone(),
                steps: v.steps.len(),
                expectations: v.steps.iter().filter(|s| s.step.is_expectation()).count(),
                profile: v.profile.clone(),
            })
            .collect(),
        toml,
    }
}

/// A built-in lab by name; an unknown one is NOT_FOUND naming it.
fn builtin(name: &str) -> Result<(Lab, &'static str), Error> {
    let text = lab::builtin().into_iter().find(|(n, _)| *n == name).map(|(_, text)| text);
    let Some(text) = text else { return Err(Error::not_found("lab", name)) };
    let lab = lab::builtin_lab(name).map_err(|e| Error::Internal(format!("built-in lab {name}: {e}")))?;
    Ok((lab, text))
}

/// A parse error of a lab given as text: INVALID_ARGUMENT on `toml`, the
/// message naming line, column and field.
fn toml_error(e: LabError) -> Error {
    match e {
        LabError::Parse { line, column, field, message, .. } => {
            let field = field.map_or(String::new(), |f| format!("field `{f}`: "));
            Error::invalid("toml", format!("line {line}, column {column}: {field}{message}"))
        }
        LabError::OverLimit { line, limit, max, message, .. } => {
            Error::over_budget(limit, max, format!("toml: line {line}: {message}"))
        }
        other => Error::invalid("toml", other.to_string()),
    }
}

/// Refuses a lab whose steps would exceed the server's limits (a lab given
/// as text is user input: `run_until_idle` with a billion steps, `send` of a
/// terabyte): 422 naming the step's line and the limit. Every built-in lab
/// is well within them.
fn check_limits(lab: &Lab, limits: &Limits) -> Result<(), Error> {
    let over = |line: usize, kind: &str, limit: &'static str, max: u64, what: String| {
        Error::over_budget(limit, max, format!("toml: line {line}: `{kind}` {what}"))
    };
    if lab.hosts.len() > limits.max_hosts {
        return Err(Error::over_budget(
            "max_hosts",
            limits.max_hosts as u64,
            format!("toml: {} hosts", lab.hosts.len()),
        ));
    }
    for variant in &lab.variants {
        if variant.profile.send_buffer > limits.max_buffered_bytes {
            return Err(Error::over_budget(
                "max_buffered_bytes",
                u64::from(limits.max_buffered_bytes),
                format!("toml: profile.send_buffer = {}", variant.profile.send_buffer),
            ));
        }
        let (mut opens, mut faults) = (0, 0);
        for s in &variant.steps {
            let kind = s.step.kind();
            let events = limits.run_max_events;
            match &s.step {
                Step::RunUntilIdle(r) if r.max_steps.unwrap_or(0) > events => {
                    let n = r.max_steps.unwrap_or(0);
                    return Err(over(s.line, kind, "run_max_events", events, format!("max_steps = {n}")));
                }
                Step::RunUntilIdle(r) if r.max_ms.unwrap_or(0) > limits.run_max_ms => {
                    let ms = r.max_ms.unwrap_or(0);
                    return Err(over(s.line, kind, "run_max_ms", limits.run_max_ms, format!("max_ms = {ms}")));
                }
                Step::Step(n) if *n > events => {
                    return Err(over(s.line, kind, "run_max_events", events, format!("count = {n}")));
                }
                Step::Advance(ms) if *ms > limits.run_max_ms => {
                    return Err(over(s.line, kind, "run_max_ms", limits.run_max_ms, format!("ms = {ms}")));
                }
                Step::Send(send) if send.len.unwrap_or(0) > limits.max_write_bytes => {
                    let (n, max) = (send.len.unwrap_or(0), limits.max_write_bytes as u64);
                    return Err(over(s.line, kind, "max_write_bytes", max, format!("len = {n}")));
                }
                Step::Open(_) => opens += 1,
                Step::Fault(_) => faults += 1,
                _ => {}
            }
            if opens > limits.max_connections {
                let max = limits.max_connections as u64;
                return Err(over(s.line, kind, "max_connections", max, format!("the connection number {opens}")));
            }
            if faults > limits.max_faults {
                let max = limits.max_faults as u64;
                return Err(over(s.line, kind, "max_faults", max, format!("the fault rule number {faults}")));
            }
        }
    }
    Ok(())
}

impl LabService {
    /// The built-in labs with their variants, in teaching order.
    ///
    /// # Errors
    /// Only [`Error::Internal`] if a shipped lab does not parse (the lab
    /// tests rule that out).
    pub fn list_labs(&self) -> Result<LabList, Error> {
        let labs = lab::builtin()
            .into_iter()
            .map(|(name, _)| builtin(name).map(|(lab, _)| lab_info(&lab, None)))
            .collect::<Result<_, _>>()?;
        Ok(LabList { labs })
    }

    /// One built-in lab, with its TOML source.
    ///
    /// # Errors
    /// [`Error::NotFound`] naming the lab.
    pub fn get_lab(&self, name: &str) -> Result<LabInfo, Error> {
        let (lab, text) = builtin(name)?;
        Ok(lab_info(&lab, Some(text.to_string())))
    }

    /// Runs a built-in lab, each variant in a new session (see the module docs).
    ///
    /// # Errors
    /// [`Error::NotFound`] naming the lab, INVALID_ARGUMENT on `variant` or
    /// `name`, the session limit.
    pub async fn run_lab(&self, name: &str, req: RunLab) -> Result<LabRunResult, Error> {
        let (lab, _) = builtin(name)?;
        self.run_parsed(lab, req.variant, req.name, req.end.unwrap_or(false)).await
    }

    /// Runs a lab given as TOML text, like [`Self::run_lab`].
    ///
    /// # Errors
    /// INVALID_ARGUMENT on `toml` naming the line and field of a parse error,
    /// or a step over the server's limits; as [`Self::run_lab`] otherwise.
    pub async fn run_lab_toml(&self, req: RunLabToml) -> Result<LabRunResult, Error> {
        let limits = &self.inner.limits;
        if req.toml.len() > limits.max_script_bytes {
            return Err(Error::over_budget(
                "max_script_bytes",
                limits.max_script_bytes as u64,
                format!("toml: {} octets", req.toml.len()),
            ));
        }
        let lab = Lab::parse_bounded("custom.toml", &req.toml, limits.max_lab_steps).map_err(toml_error)?;
        self.run_parsed(lab, req.variant, req.name, req.end.unwrap_or(false)).await
    }

    async fn run_parsed(
        &self,
        lab: Lab,
        variant: Option<String>,
        name: Option<String>,
        end: bool,
    ) -> Result<LabRunResult, Error> {
        if self.inner.shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Unavailable);
        }
        let variants: Vec<&LabVariant> = match &variant {
            None => lab.variants.iter().collect(),
            Some(wanted) => {
                let found = lab.variants.iter().find(|v| &v.name == wanted).ok_or_else(|| {
                    let names: Vec<&str> = lab.variants.iter().map(|v| v.name.as_str()).collect();
                    Error::invalid(
                        "variant",
                        format!("lab `{}` has no variant {wanted:?} (expected one of {})", lab.name, names.join(", ")),
                    )
                })?;
                vec![found]
            }
        };
        let base = name.unwrap_or_else(|| format!("lab {}", lab.name));
        if base.len() > MAX_NAME {
            return Err(Error::invalid("name", format!("at most {MAX_NAME} characters")));
        }
        check_limits(&lab, &self.inner.limits)?;
        let max = self.inner.limits.max_sessions;
        let live = self.inner.sessions.read().map(|s| s.len()).unwrap_or(0);
        if live + variants.len() > max {
            return Err(Error::LimitExceeded { limit: "max_sessions", max: max as u64 });
        }
        let mut runs = Vec::with_capacity(variants.len());
        // run_max_events is the whole request's: the variants share it.
        let mut items_left = self.inner.limits.run_max_events;
        for v in variants {
            let session_name = if lab.variants.len() > 1 { format!("{base} ({})", v.name) } else { base.clone() };
            let (run, items) = self.run_variant(&lab, v, session_name, end, items_left).await?;
            items_left = items_left.saturating_sub(items);
            runs.push(run);
        }
        let Some(first) = runs.first().cloned() else {
            return Err(Error::invalid("toml", "the lab has no variant to run"));
        };
        Ok(LabRunResult {
            lab: lab.name.clone(),
            title: lab.title.clone(),
            passed: runs.iter().all(|r| r.passed),
            session_id: first.session_id,
            variant: first.variant,
            checks: first.checks,
            error: first.error,
            stopped_by: first.stopped_by,
            limit: first.limit,
            ladder: first.ladder,
            variants: runs,
        })
    }

    /// One variant in a new session: the lab's world handed to a new actor,
    /// then one job per step (see the module docs), within `max_items`
    /// scheduled items; returns its result and the items it used.
    async fn run_variant(
        &self,
        lab: &Lab,
        variant: &LabVariant,
        session_name: String,
        end: bool,
        max_items: u64,
    ) -> Result<(LabVariantRun, u64), Error> {
        let world = lab.new_world(variant)?;
        let spec = super::model::SessionSpec {
            seed: lab.seed,
            clock: super::model::ClockMode::Manual,
            speed: 1.0,
            profile: variant.profile.clone(),
            lab: Some(lab.name.clone()),
            variant: Some(variant.name.clone()),
        };
        let sid = self.start_session(session_name, spec, world).await?;
        let handle = self.handle(sid)?;
        let record = Command::RunLab { args: RunLabArgs { lab: lab.name.clone(), variant: variant.name.clone() } };
        handle
            .command(move |s: &mut SessionState| {
                s.record_command(record);
                // The hosts and links the lab set up, before the first step.
                s.publish();
                Ok(())
            })
            .await?;
        // One turn per job: a step that runs the world long comes back after
        // a turn's items, so other commands and sessions get their turn too.
        let budget = RunBudget {
            max_items,
            items_per_turn: super::session::STEPS_PER_TURN,
            max_events: self.inner.limits.max_report_events,
        };
        let mut run = LabRun::new(lab, variant).with_budget(budget);
        loop {
            self.room_in_the_store("lab run").await?;
            let (back, more) = handle
                .command(move |s: &mut SessionState| {
                    let before = run.events().len();
                    let more = run.step(&mut s.world);
                    s.publish_taken(run.events()[before..].iter().cloned());
                    Ok((run, more))
                })
                .await?;
            run = back;
            if !more {
                break;
            }
        }
        let (events, now_ns) = handle.call(|s| Ok((s.world.next_event_seq() - 1, s.world.now().as_nanos()))).await?;
        drop(handle);
        let items = run.items();
        let report = run.finish();
        if end {
            self.end_session(sid).await?;
        }
        // The limit as configured (the run's own budget is what the earlier variants left of it).
        let limit = report.limit.map(|l| match l.name {
            "run_max_events" => LimitHit::new(l.name, self.inner.limits.run_max_events),
            _ => LimitHit::new(l.name, l.max),
        });
        let error = match (&limit, report.error) {
            (Some(limit), Some(e)) => Some(format!("{e} ({}; session {sid} keeps what ran)", limit.hint)),
            (_, e) => e,
        };
        let run = LabVariantRun {
            variant: report.name,
            description: report.description,
            session_id: sid,
            passed: report.passed,
            checks: report.checks.into_iter().map(LabCheck::from).collect(),
            error,
            stopped_by: limit.as_ref().map(|_| super::model::StopReason::Limit),
            limit,
            ladder: report.ladder,
            events,
            now_ns,
        };
        Ok((run, items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::model::{EventQuery, Page, StopReason};
    use crate::store::Store;

    async fn service_with(limits: Limits) -> (LabService, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("lab.db")).await.expect("open store");
        (LabService::new(store, limits).await.expect("service"), dir)
    }

    async fn service() -> (LabService, tempfile::TempDir) {
        service_with(Limits::default()).await
    }

    /// A world that is never idle (a persist timer every millisecond).
    const ENDLESS: &str = "title = \"endless\"\nexplanation = \"x\"\n[profile]\nwindow = 1000\nrto_initial_ms = 1\n\
        rto_min_ms = 1\nrto_max_ms = 1\n[[link]]\na = \"A\"\nb = \"B\"\nlatency_ms = 0.1\n[[step]]\n\
        listen = { host = \"B\", port = 80 }\n[[step]]\nopen = { name = \"c\", client = \"A\", server = \"B\", port = 80 }\n\
        [[step]]\nrun_until_idle = {}\n[[step]]\nauto_read = { conn = \"c\", side = \"server\", on = false }\n\
        [[step]]\nsend = { conn = \"c\", side = \"client\", len = 3000 }\n[[step]]\nadvance = 20\n";

    /// A run whose caller has gone stops at the end of a turn instead of
    /// spending the rest of its budget: the clock is far short of where the
    /// whole budget takes it, and the next command is answered.
    #[tokio::test]
    async fn an_abandoned_run_stops_at_the_next_turn() {
        let (svc, _dir) = service_with(Limits { run_max_events: 200_000, ..Limits::default() }).await;
        let run = svc.run_lab_toml(RunLabToml { toml: ENDLESS.into(), ..Default::default() }).await.expect("lab");
        let sid = run.session_id;
        let advance = || -> crate::service::model::ClockRequest {
            serde_json::from_value(serde_json::json!({"action": "advance", "ms": 86_400_000.0})).expect("request")
        };
        let gone = tokio::time::timeout(std::time::Duration::from_millis(20), svc.clock(sid, advance())).await;
        assert!(gone.is_err(), "the run outlasted its caller: {gone:?}");
        let after = svc.get_session(sid).await.expect("session");
        // The whole budget (200,000 items, three per millisecond) reaches 66 s of virtual time.
        assert!(after.now_ns < 60_000_000_000, "now {} ns", after.now_ns);
        let whole = svc.clock(sid, advance()).await.expect("clock");
        assert_eq!((whole.stopped_by, whole.steps), (Some(StopReason::Limit), 200_000));
    }

    #[tokio::test]
    async fn lists_every_builtin_lab_with_its_variants() {
        let (svc, _dir) = service().await;
        let list = svc.list_labs().expect("labs");
        let names: Vec<&str> = list.labs.iter().map(|l| l.name.as_str()).collect();
        let builtin: Vec<&str> = lab::builtin().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, builtin);
        let two = list.labs.iter().find(|l| l.name == "why-not-two-way").expect("why-not-two-way");
        let variants: Vec<&str> = two.variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(variants, ["three_way", "two_way"]);
        assert!(two.variants.iter().all(|v| v.expectations > 0 && !v.description.is_empty()));
        assert!(list.labs.iter().all(|l| l.toml.is_none()));
        let one = svc.get_lab("three-way-handshake").expect("lab");
        assert!(one.toml.as_deref().is_some_and(|t| t.contains("[[step]]")), "{:?}", one.toml);
    }

    #[tokio::test]
    async fn unknown_lab_and_variant_name_what_is_wrong() {
        let (svc, _dir) = service().await;
        let err = svc.get_lab("no-such-lab").unwrap_err();
        assert!(matches!(&err, Error::NotFound { what: "lab", id } if id == "no-such-lab"), "{err:?}");
        let err = svc.run_lab("no-such-lab", RunLab::default()).await.unwrap_err();
        assert_eq!(err.to_string(), "lab no-such-lab not found");
        let req = RunLab { variant: Some("four_way".into()), ..RunLab::default() };
        let err = svc.run_lab("why-not-two-way", req).await.unwrap_err();
        match err {
            Error::InvalidArgument { field, message } => {
                assert_eq!(field, "variant");
                assert!(message.contains("three_way, two_way"), "{message}");
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
        // Nothing was created for a refused run.
        assert_eq!(svc.list_sessions(Page::default()).await.expect("list").total, 0);
    }

    #[tokio::test]
    async fn a_run_is_a_live_session_whose_events_are_stored() {
        let (svc, _dir) = service().await;
        let result = svc.run_lab("three-way-handshake", RunLab::default()).await.expect("run");
        assert!(result.passed, "{result:#?}");
        assert_eq!(result.variants.len(), 1);
        assert!(result.checks.len() >= 3 && result.checks.iter().all(|c| c.passed));
        assert!(result.ladder.contains("SYN"), "{}", result.ladder);
        let sid = result.session_id;
        let info = svc.get_session(sid).await.expect("session");
        assert_eq!(info.status, "live");
        assert_eq!(info.name, "lab three-way-handshake");
        assert_eq!(info.events, result.variants[0].events);
        // Every event the run saw is in SQLite, numbered from 1 with no gap.
        let page = svc.events(sid, EventQuery { limit: Some(10_000), ..EventQuery::default() }).await.expect("events");
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=result.variants[0].events).collect::<Vec<_>>());
        let segments = svc.segments(sid).await.expect("segments").segments;
        let wire: Vec<(String, u64, u64)> = segments
            .iter()
            .map(|s| {
                let flags = serde_json::to_value(s.segment.segment.flags).expect("flags");
                let flags: Vec<&str> = flags.as_array().into_iter().flatten().filter_map(|f| f.as_str()).collect();
                (flags.join(","), u64::from(s.segment.segment.seq.0), u64::from(s.segment.segment.ack.0))
            })
            .collect();
        let want = [("SYN", 300, 0), ("ACK,SYN", 500, 301), ("ACK", 301, 501)].map(|(f, s, a)| (f.to_string(), s, a));
        assert_eq!(wire, want);
        // They went out through the session's publication (ring, subscribers, store), not around it.
        assert_eq!(svc.counters().2, result.variants[0].events);
        // The session goes on: its connection is there to inspect.
        let conns = svc.list_connections(sid).await.expect("connections");
        assert_eq!(conns.len(), 1);
    }

    #[tokio::test]
    async fn every_variant_gets_its_own_session_and_end_ends_them() {
        let (svc, _dir) = service().await;
        let req = RunLab { end: Some(true), name: Some("class".into()), ..RunLab::default() };
        let result = svc.run_lab("why-not-two-way", req).await.expect("run");
        assert!(result.passed, "{result:#?}");
        let names: Vec<&str> = result.variants.iter().map(|v| v.variant.as_str()).collect();
        assert_eq!(names, ["three_way", "two_way"]);
        assert_ne!(result.variants[0].session_id, result.variants[1].session_id);
        assert_eq!(result.session_id, result.variants[0].session_id);
        for v in &result.variants {
            let info = svc.get_session(v.session_id).await.expect("session");
            assert_eq!(info.status, "ended");
            assert_eq!(info.name, format!("class ({})", v.variant));
            assert_eq!(info.profile.handshake == crate::engine::Handshake::TwoWay, v.variant == "two_way");
        }
        let one = svc
            .run_lab("why-not-two-way", RunLab { variant: Some("two_way".into()), ..RunLab::default() })
            .await
            .expect("run");
        assert_eq!((one.variants.len(), one.variant.as_str()), (1, "two_way"));
    }

    #[tokio::test]
    async fn a_failing_expectation_is_reported_not_an_error() {
        let (svc, _dir) = service().await;
        let (_, text) = builtin("three-way-handshake").expect("lab");
        let broken = text.replacen("seq = 500", "seq = 501", 1);
        assert_ne!(broken, text);
        let result = svc.run_lab_toml(RunLabToml { toml: broken, ..RunLabToml::default() }).await.expect("run");
        assert!(!result.passed);
        assert_eq!(result.lab, "custom");
        let failed: Vec<&LabCheck> = result.checks.iter().filter(|c| !c.passed).collect();
        assert!(!failed.is_empty());
        assert!(failed.iter().any(|c| c.expected.contains("501") && c.got.contains("500")), "{failed:#?}");
    }

    #[tokio::test]
    async fn toml_errors_name_line_and_field() {
        let (svc, _dir) = service().await;
        let toml = "title = \"t\"\nexplanation = \"e\"\n\n[[step]]\nlisten = { host = \"B\", port = 80, colour = 1 }\n";
        let err = svc.run_lab_toml(RunLabToml { toml: toml.into(), ..RunLabToml::default() }).await.unwrap_err();
        match err {
            Error::InvalidArgument { field, message } => {
                assert_eq!(field, "toml");
                assert!(message.starts_with("line 5,"), "{message}");
                assert!(message.contains("colour"), "{message}");
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
        let err = svc
            .run_lab_toml(RunLabToml { toml: "explanation = \"e\"\n".into(), ..RunLabToml::default() })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("title"), "{err}");
    }

    #[tokio::test]
    async fn a_lab_over_the_limits_is_refused_before_it_runs() {
        let limits = Limits { run_max_events: 1000, ..Limits::default() };
        let (svc, _dir) = service_with(limits).await;
        let toml = "title = \"t\"\nexplanation = \"e\"\n\n[[step]]\nrun_until_idle = { max_steps = 5000 }\n";
        let err = svc.run_lab_toml(RunLabToml { toml: toml.into(), ..RunLabToml::default() }).await.unwrap_err();
        assert!(err.to_string().starts_with("toml: line 5: `run_until_idle`"), "{err}");
        let limits = Limits { max_sessions: 1, ..Limits::default() };
        let (svc, _dir) = service_with(limits).await;
        let err = svc.run_lab("why-not-two-way", RunLab::default()).await.unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { limit: "max_sessions", .. }), "{err:?}");
    }
}
