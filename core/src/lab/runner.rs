//! Running a lab on a world: each step is applied or checked in order, and
//! every expectation becomes a [`Check`] saying what was expected, what
//! happened and at which virtual time.
//!
//! [`LabRun`] is step-wise and owns everything it needs (no borrow of the
//! [`Lab`]), so a session actor can drive it one step at a time on the world it
//! owns and forward the events as they come; [`run`] and [`run_variant`] are
//! the one-shot forms the CLI and the tests use.

use std::collections::BTreeMap;
use std::collections::HashMap;

use serde::Serialize;

use super::format::{
    ExpectConnections, ExpectFairness, ExpectSawtooth, ExpectState, ExpectStates, ExpectTcb, Lab, LabStep, LabVariant,
    PlotDef, SegmentExpect, StateName, Step, parse_conn_number,
};
use crate::engine::{CcPhase, State};
use crate::ladder::{Note, ladder};
use crate::sim::{
    CloseHow, ConnId, ConnectSpec, Event, EventKind, FaultSpec, InjectSpec, ListenSpec, RunCap, SegmentMatch,
    SegmentOutcome, Side, World, WorldConfig, WorldError,
};
use crate::time::{Duration, Instant};

const MS: u64 = 1_000_000;

/// A `run_until_idle` step's `max_steps` when it gives none.
pub const DEFAULT_MAX_STEPS: u64 = 100_000;

/// One expectation's verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// 1-based index of the step in its run.
    pub step: usize,
    /// Line of the step in the lab file.
    pub line: usize,
    /// The step's key (`expect_segments`...).
    pub kind: &'static str,
    /// What was checked, briefly (`client state`, `segment 2`).
    pub what: String,
    /// Whether it held.
    pub passed: bool,
    /// What the lab expected.
    pub expected: String,
    /// What the world showed.
    pub got: String,
    /// Virtual time of the observation, ms.
    pub t_ms: f64,
}

impl Check {
    /// `line 12 (expect_state) client state: expected X, got Y at t=20.000ms`.
    pub fn message(&self) -> String {
        if self.passed {
            format!("line {} ({}) {}: {}", self.line, self.kind, self.what, self.expected)
        } else {
            format!(
                "line {} ({}) {}: expected {}, got {} at t={:.3}ms",
                self.line, self.kind, self.what, self.expected, self.got, self.t_ms
            )
        }
    }
}

/// The result of one variant's run.
#[derive(Clone, Debug, Serialize)]
pub struct VariantReport {
    /// The variant's name (`default` for a lab without variants).
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Every check passed and no step failed.
    pub passed: bool,
    /// The checks in order.
    pub checks: Vec<Check>,
    /// A step the world refused (the run stopped there), as a message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The budget limit that stopped the run, when one did (then `error`
    /// says at which step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<BudgetLimit>,
    /// The ladder diagram of the run.
    pub ladder: String,
    /// The lab's `[[plot]]`s of this run, as text (empty when it asks for none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub plots: String,
    /// Every event of the run.
    pub events: Vec<Event>,
}

/// What a lab run may do: its steps that run the world (`advance`,
/// `run_until_idle`, `step`) process at most `max_items` scheduled items in
/// all (which also bounds the events the run collects), and
/// [`LabRun::step`] returns to its caller after at most `items_per_turn` of
/// them (calling it again continues the same step), so a caller sharing a
/// thread can run other work in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunBudget {
    /// Items the whole run may process (the server's `run_max_events`).
    pub max_items: u64,
    /// Items per call of [`LabRun::step`].
    pub items_per_turn: u64,
    /// Events the run may collect (the server's `max_report_events`).
    pub max_events: usize,
}

impl Default for RunBudget {
    /// The server's default `run_max_events`, in one turn (the CLI, tests).
    fn default() -> Self {
        RunBudget { max_items: crate::sim::DEFAULT_RUN_MAX_ITEMS, items_per_turn: u64::MAX, max_events: usize::MAX }
    }
}

/// A budget limit that stopped a run: its configuration name and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BudgetLimit {
    /// `run_max_events`.
    pub name: &'static str,
    /// Its value.
    pub max: u64,
}

/// A step that runs the world, part-way through.
#[derive(Clone, Copy, Debug)]
struct Running {
    /// Virtual time it runs to (`advance`) or may not pass (`run_until_idle`).
    until: Instant,
    /// Items it may still process by its own count (`max_steps`, `step = N`).
    left: u64,
    /// Items processed so far by this step.
    items: u64,
}

/// Whether a step is over.
enum Progress {
    Done,
    More,
}

/// The result of a whole lab: one report per variant.
#[derive(Clone, Debug, Serialize)]
pub struct LabReport {
    /// The lab's name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// Its explanation.
    pub explanation: String,
    /// Every variant passed.
    pub passed: bool,
    /// One per variant.
    pub variants: Vec<VariantReport>,
}

impl Lab {
    /// The world configuration of one variant (its seed and profile).
    pub fn world_config(&self, variant: &LabVariant) -> WorldConfig {
        WorldConfig { seed: self.seed, profile: variant.profile.clone(), ..WorldConfig::default() }
    }

    /// Adds the lab's hosts and links to a fresh world.
    ///
    /// # Errors
    /// What the world refuses (duplicate names or addresses, bad links).
    pub fn setup(&self, world: &mut World) -> Result<(), WorldError> {
        for host in &self.hosts {
            world.add_host(&host.name, host.ip, host.kind)?;
        }
        for link in &self.links {
            world.set_link_through(&link.a, &link.b, link.params(), link.bottleneck.as_deref())?;
        }
        Ok(())
    }

    /// A fresh world for one variant, with hosts and links.
    ///
    /// # Errors
    /// What the world refuses.
    pub fn new_world(&self, variant: &LabVariant) -> Result<World, WorldError> {
        let mut world = World::new(self.world_config(variant))?;
        self.setup(&mut world)?;
        Ok(world)
    }

    /// The two hosts the ladder diagram draws (the first two).
    pub fn ladder_hosts(&self) -> (String, String) {
        let a = self.hosts.first().map_or("A".to_string(), |h| h.name.clone());
        let b = self.hosts.get(1).map_or("B".to_string(), |h| h.name.clone());
        (a, b)
    }
}

/// Runs every variant of a lab, each on a fresh world.
pub fn run(lab: &Lab) -> LabReport {
    let variants: Vec<VariantReport> = lab
        .variants
        .iter()
        .map(|variant| match lab.new_world(variant) {
            Ok(mut world) => run_variant(lab, variant, &mut world),
            Err(e) => VariantReport {
                name: variant.name.clone(),
                description: variant.description.clone(),
                passed: false,
                checks: Vec::new(),
                error: Some(format!("building the world: {e}")),
                limit: None,
                ladder: String::new(),
                plots: String::new(),
                events: Vec::new(),
            },
        })
        .collect();
    LabReport {
        name: lab.name.clone(),
        title: lab.title.clone(),
        explanation: lab.explanation.clone(),
        passed: variants.iter().all(|v| v.passed),
        variants,
    }
}

/// Runs one variant on a world that already has the lab's hosts and links
/// (see [`Lab::new_world`]).
pub fn run_variant(lab: &Lab, variant: &LabVariant, world: &mut World) -> VariantReport {
    let mut run = LabRun::new(lab, variant);
    while run.step(world) {}
    run.finish()
}

/// A lab run in progress, driven one step at a time.
#[derive(Debug)]
pub struct LabRun {
    name: String,
    description: String,
    steps: Vec<LabStep>,
    next: usize,
    ladder_hosts: (String, String),
    plot_defs: Vec<PlotDef>,
    conns: HashMap<String, ConnId>,
    faults: HashMap<String, u64>,
    events: Vec<Event>,
    /// Index in `events` after the last segment expectation.
    segment_cursor: usize,
    checks: Vec<Check>,
    notes: Vec<Note>,
    error: Option<String>,
    budget: RunBudget,
    /// The step being run, when it runs the world over several turns.
    running: Option<Running>,
    /// Items processed by the whole run, against [`RunBudget::max_items`].
    items: u64,
    limit: Option<BudgetLimit>,
}

impl LabRun {
    /// A run of one variant, not started.
    pub fn new(lab: &Lab, variant: &LabVariant) -> LabRun {
        LabRun {
            name: variant.name.clone(),
            description: variant.description.clone(),
            steps: variant.steps.clone(),
            next: 0,
            ladder_hosts: lab.ladder_hosts(),
            plot_defs: lab.plots.clone(),
            conns: HashMap::new(),
            faults: HashMap::new(),
            events: Vec::new(),
            segment_cursor: 0,
            checks: Vec::new(),
            notes: Vec::new(),
            error: None,
            budget: RunBudget::default(),
            running: None,
            items: 0,
            limit: None,
        }
    }

    /// The run with `budget` instead of [`RunBudget::default`].
    pub fn with_budget(mut self, budget: RunBudget) -> LabRun {
        self.budget = budget;
        self
    }

    /// Every event collected so far (the run takes them from the world after each step).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Scheduled items the run has processed so far (against [`RunBudget::max_items`]).
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The checks so far.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// Whether every step has run (or one failed).
    pub fn is_done(&self) -> bool {
        self.next >= self.steps.len() || self.error.is_some()
    }

    /// Runs the next step, or one turn of it (see [`RunBudget`]); `false`
    /// once there is none left (or a step failed).
    pub fn step(&mut self, world: &mut World) -> bool {
        if self.is_done() {
            return false;
        }
        let index = self.next;
        let LabStep { line, step } = self.steps[index].clone();
        let result = match &step {
            Step::Advance(_) | Step::RunUntilIdle(_) | Step::Step(_) => self.run_world(world, &step),
            _ => self.apply(world, index + 1, line, &step).map(|()| Progress::Done),
        };
        self.events.extend(world.take_events());
        let result = match result {
            Ok(_) if self.events.len() > self.budget.max_events => {
                let limit = BudgetLimit { name: "max_report_events", max: self.budget.max_events as u64 };
                self.limit = Some(limit);
                self.running = None;
                Err(format!(
                    "stopped at the limit {} = {} events kept for the report, at t={:.3}ms",
                    limit.name,
                    limit.max,
                    world.now().as_millis_f64()
                ))
            }
            other => other,
        };
        match result {
            Ok(Progress::More) => return true,
            Ok(Progress::Done) => self.next += 1,
            Err(e) => {
                self.next += 1;
                self.running = None;
                self.error = Some(format!("line {line} ({}): {e}", step.kind()));
                return false;
            }
        }
        !self.is_done()
    }

    /// One turn of a step that runs the world: at most the turn's items,
    /// and never more than the step's budget in all.
    fn run_world(&mut self, world: &mut World, step: &Step) -> Result<Progress, String> {
        let now = world.now();
        let running = self.running.get_or_insert_with(|| match step {
            Step::Advance(ms) => {
                Running { until: now.saturating_add(Duration::from_millis(*ms)), left: u64::MAX, items: 0 }
            }
            Step::RunUntilIdle(r) => Running {
                until: r.max_ms.map_or(Instant::MAX, |ms| now.saturating_add(Duration::from_millis(ms))),
                left: r.max_steps.unwrap_or(DEFAULT_MAX_STEPS),
                items: 0,
            },
            Step::Step(n) => Running { until: Instant::MAX, left: *n, items: 0 },
            _ => Running { until: now, left: 0, items: 0 },
        });
        let budget = self.budget.max_items.saturating_sub(self.items);
        let turn = self.budget.items_per_turn.min(budget).min(running.left);
        let (items, done) = match step {
            Step::Advance(_) => world.run_until_bounded(running.until, turn),
            Step::RunUntilIdle(_) => {
                let outcome = world.run_until_idle(turn, running.until.saturating_duration_since(now));
                (outcome.steps, outcome.stopped_by != Some(RunCap::Steps))
            }
            _ => {
                let mut items = 0;
                while items < turn && world.step() {
                    items += 1;
                }
                (items, items < turn || items == running.left)
            }
        };
        running.items += items;
        running.left = running.left.saturating_sub(items);
        self.items += items;
        let running = *running;
        if done {
            self.running = None;
            return Ok(Progress::Done);
        }
        if running.left == 0 {
            self.running = None;
            return Err(format!("still busy after {} scheduled items (raise max_steps)", running.items));
        }
        if self.items >= self.budget.max_items {
            self.running = None;
            let limit = BudgetLimit { name: "run_max_events", max: self.budget.max_items };
            self.limit = Some(limit);
            return Err(format!(
                "stopped at the limit {} = {} scheduled items in one run, at t={:.3}ms",
                limit.name,
                limit.max,
                world.now().as_millis_f64()
            ));
        }
        Ok(Progress::More)
    }

    /// The report: checks, the ladder and the events.
    pub fn finish(self) -> VariantReport {
        let mut labels = BTreeMap::new();
        for (name, id) in &self.conns {
            labels.insert(*id, name.clone());
        }
        let (a, b) = &self.ladder_hosts;
        let ladder = ladder(&self.events, a, b, &labels, &self.notes);
        let plots = self
            .plot_defs
            .iter()
            .map(|p| match self.conn(&p.conn) {
                Ok(id) => cwnd_plot(&self.events, id, p),
                Err(e) => format!("plot of {}: {e}\n", p.conn),
            })
            .collect();
        let not_run = self.steps.len().saturating_sub(self.next);
        let error = self.error.map(|e| if not_run > 0 { format!("{e}; {not_run} later step(s) not run") } else { e });
        VariantReport {
            passed: error.is_none() && self.checks.iter().all(|c| c.passed),
            name: self.name,
            description: self.description,
            checks: self.checks,
            error,
            limit: self.limit,
            ladder,
            plots,
            events: self.events,
        }
    }

    fn conn(&self, name: &str) -> Result<ConnId, String> {
        parse_conn_number(name)
            .or_else(|| self.conns.get(name).copied())
            .ok_or_else(|| format!("unknown connection `{name}`"))
    }

    fn apply(&mut self, world: &mut World, index: usize, line: usize, step: &Step) -> Result<(), String> {
        let w = |e: WorldError| e.to_string();
        match step {
            Step::Listen(l) => {
                world
                    .listen(ListenSpec {
                        host: l.host.clone(),
                        port: l.port,
                        isn: l.isn,
                        profile: None,
                        backlog: None,
                        nodelay: l.nodelay,
                        keepalive: l.keepalive,
                    })
                    .map_err(w)?;
            }
            Step::Open(o) => {
                let result = world.connect(ConnectSpec {
                    client: o.client.clone(),
                    server: o.server.clone(),
                    port: o.port,
                    client_port: o.client_port,
                    isn: o.isn,
                    profile: None,
                    nodelay: o.nodelay,
                    keepalive: o.keepalive,
                });
                if let Some(id) = self.expect_outcome(world, index, line, "open", &o.expect_error, result)? {
                    self.conns.insert(o.name.clone(), id);
                }
            }
            Step::Send(s) => {
                let data = s.bytes();
                let result = world.send(self.conn(&s.conn)?, s.side, &data);
                if let Some(n) = self.expect_outcome(world, index, line, "send", &s.expect_error, result)? {
                    if n < data.len() {
                        return Err(format!("only {n} of {} octets fit in the send buffer", data.len()));
                    }
                }
            }
            Step::Close(c) => {
                let result = match c.how {
                    CloseHow::ShutdownWrite => world.close(self.conn(&c.conn)?, c.side),
                    CloseHow::Close => world.close_socket(self.conn(&c.conn)?, c.side),
                };
                self.expect_outcome(world, index, line, "close", &c.expect_error, result)?;
            }
            Step::Abort(e) => world.abort(self.conn(&e.conn)?, e.side).map_err(w)?,
            Step::AutoRead(a) => world.set_auto_read(self.conn(&a.conn)?, a.side, a.on).map_err(w)?,
            Step::Fault(f) => {
                let spec = FaultSpec {
                    from: f.from.clone(),
                    to: f.to.clone(),
                    matcher: SegmentMatch {
                        flags: f.flags.map(|f| f.0),
                        len: f.len,
                        seq: f.seq,
                        seq_range: None,
                        ack: f.ack,
                        src_port: f.src_port,
                        dst_port: f.dst_port,
                    },
                    skip: f.skip,
                    count: f.count,
                    action: f.action,
                    delay_ns: ms_to_ns(f.delay_ms.unwrap_or(0.0)),
                };
                let id = world.add_fault(spec).map_err(w)?;
                if let Some(name) = &f.name {
                    self.faults.insert(name.clone(), id);
                }
            }
            Step::Release(name) => {
                let id = *self.faults.get(name).ok_or_else(|| format!("unknown fault rule `{name}`"))?;
                world.release_fault(id).map_err(w)?;
            }
            Step::Inject(i) => {
                world
                    .inject(InjectSpec {
                        from: i.from.clone(),
                        to: i.to.clone(),
                        src_port: i.src_port,
                        dst_port: i.dst_port,
                        seq: i.seq,
                        ack: i.ack,
                        flags: i.flags.0,
                        window: i.window.unwrap_or(65535),
                        payload: i.data.clone().unwrap_or_default().into_bytes().into(),
                        delay: Duration::from_nanos(ms_to_ns(i.delay_ms.unwrap_or(0.0))),
                        ..InjectSpec::default()
                    })
                    .map_err(w)?;
            }
            Step::Advance(_) | Step::RunUntilIdle(_) | Step::Step(_) => {
                return Err("internal: a step that runs the world reached apply".to_string());
            }
            Step::Note(text) => {
                let at = self.events.len() + world.events().len();
                self.notes.push(Note { before_event: at, t_ns: world.now().as_nanos(), text: text.clone() });
            }
            expectation => {
                // Checks see every event up to now.
                self.events.extend(world.take_events());
                let mut ctx = Ctx { run: self, world: &*world, index, line, kind: expectation.kind() };
                ctx.check(expectation);
            }
        }
        Ok(())
    }
}

impl LabRun {
    /// A user call's result: with `expect_error`, a check that it failed with
    /// that text (`Ok(None)`); without, its value or the run's error.
    fn expect_outcome<T>(
        &mut self,
        world: &World,
        index: usize,
        line: usize,
        kind: &'static str,
        expect_error: &Option<String>,
        result: Result<T, WorldError>,
    ) -> Result<Option<T>, String> {
        let Some(want) = expect_error else {
            return result.map(Some).map_err(|e| e.to_string());
        };
        let (got, passed, value) = match result {
            Ok(v) => ("success".to_string(), false, Some(v)),
            Err(e) => {
                let text = e.to_string();
                let passed = text.to_lowercase().contains(&want.to_lowercase());
                (format!("error \"{text}\""), passed, None)
            }
        };
        self.checks.push(Check {
            step: index,
            line,
            kind,
            what: format!("{kind} refused"),
            passed,
            expected: format!("error containing \"{want}\""),
            got,
            t_ms: world.now().as_millis_f64(),
        });
        Ok(value)
    }
}

fn ms_to_ns(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 { (ms * 1e6) as u64 } else { 0 }
}

/// One expectation being checked.
struct Ctx<'a> {
    run: &'a mut LabRun,
    world: &'a World,
    index: usize,
    line: usize,
    kind: &'static str,
}

impl Ctx<'_> {
    fn push(&mut self, what: String, expected: String, got: String, passed: bool, t_ns: u64) {
        self.run.checks.push(Check {
            step: self.index,
            line: self.line,
            kind: self.kind,
            what,
            passed,
            expected,
            got,
            t_ms: t_ns as f64 / 1e6,
        });
    }

    fn compare(&mut self, what: String, expected: String, got: String) {
        let passed = expected == got;
        let now = self.world.now().as_nanos();
        self.push(what, expected, got, passed, now);
    }

    fn check(&mut self, step: &Step) {
        match step {
            Step::ExpectState(e) => self.state(e),
            Step::ExpectStates(e) => self.states(e),
            Step::ExpectTcb(e) => self.tcb(e),
            Step::ExpectSegments(list) => self.segments(list, true),
            Step::ExpectNextSegments(list) => self.segments(list, false),
            Step::ExpectFate(f) => {
                let got = SegmentOutcome::of_segment(&self.run.events, f.segment);
                let now = self.world.now().as_nanos();
                self.push(
                    format!("fate of segment #{}", f.segment),
                    f.fate.name().to_string(),
                    got.to_string(),
                    f.fate.accepts(&got),
                    now,
                );
            }
            Step::ExpectReceived(r) => {
                let what = format!("{} {} received", r.conn, r.side.name());
                let got = self
                    .run
                    .conn(&r.conn)
                    .and_then(|c| self.world.received(c, r.side).map(<[u8]>::to_vec).map_err(|e| e.to_string()));
                match got {
                    Err(e) => {
                        let expected = r
                            .data
                            .as_ref()
                            .map_or_else(|| format!("{} octets", r.len.unwrap_or(0)), |d| show(d.as_bytes()));
                        self.compare(what, expected, e);
                    }
                    Ok(bytes) => {
                        if let Some(data) = &r.data {
                            self.compare(what.clone(), show(data.as_bytes()), show(&bytes));
                        }
                        if let Some(len) = r.len {
                            self.compare(format!("{what} (octets)"), len.to_string(), bytes.len().to_string());
                        }
                    }
                }
            }
            Step::ExpectConnections(c) => self.connections(c),
            Step::ExpectFairness(f) => self.fairness(f),
            Step::ExpectSawtooth(e) => self.sawtooth(e),
            _ => {}
        }
    }

    fn end_state(&self, conn: &str, side: Side) -> String {
        let id = match self.run.conn(conn) {
            Ok(id) => id,
            Err(e) => return e,
        };
        match self.world.connection(id) {
            None => format!("no connection {conn}"),
            Some(c) => match c.end(side) {
                None => StateName::Absent.to_string(),
                Some(end) => end.state.name().to_string(),
            },
        }
    }

    fn state(&mut self, e: &ExpectState) {
        match (&e.conn, e.side, &e.host, e.port) {
            (Some(conn), Some(side), _, _) => {
                let got = self.end_state(conn, side);
                self.compare(format!("{conn} {} state", side.name()), e.state.to_string(), got);
            }
            (_, _, Some(host), Some(port)) => {
                let host_id = self.world.host_id(host).ok();
                let open = self.world.listeners().iter().any(|l| Some(l.host) == host_id && l.port == port && l.open);
                let got = if open { State::Listen } else { State::Closed };
                self.compare(format!("{host}:{port} listener state"), e.state.to_string(), got.name().to_string());
            }
            _ => {}
        }
    }

    fn states(&mut self, e: &ExpectStates) {
        let what = format!("{} {} states", e.conn, e.side.name());
        let expected = e.states.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> ");
        let got = match self.run.conn(&e.conn) {
            Err(err) => err,
            Ok(id) => {
                let mut states: Vec<&str> = Vec::new();
                for ev in &self.run.events {
                    if let EventKind::StateChanged { connection: Some(c), side: Some(s), from, to, .. } = &ev.kind {
                        if *c == id && *s == e.side {
                            if states.is_empty() {
                                states.push(from.name());
                            }
                            states.push(to.name());
                        }
                    }
                }
                states.join(" -> ")
            }
        };
        self.compare(what, expected, got);
    }

    fn tcb(&mut self, e: &ExpectTcb) {
        let Some(side) = e.side else { return };
        let prefix = format!("{} {}", e.conn, side.name());
        let status = self.run.conn(&e.conn).and_then(|c| self.world.status(c, side).map_err(|e| e.to_string()));
        let status = match status {
            Ok(s) => s,
            Err(err) => {
                self.compare(format!("{prefix} TCB"), "a TCB".into(), err);
                return;
            }
        };
        let now = self.world.now().as_nanos();
        let numbers: [(&str, Option<u64>, u64); 14] = [
            ("ISS", e.iss.map(u64::from), u64::from(status.iss)),
            ("IRS", e.irs.map(u64::from), u64::from(status.irs)),
            ("SND.UNA", e.snd_una.map(u64::from), u64::from(status.snd_una)),
            ("SND.NXT", e.snd_nxt.map(u64::from), u64::from(status.snd_nxt)),
            ("SND.WND", e.snd_wnd.map(u64::from), u64::from(status.snd_wnd)),
            ("RCV.NXT", e.rcv_nxt.map(u64::from), u64::from(status.rcv_nxt)),
            ("RCV.WND", e.rcv_wnd.map(u64::from), u64::from(status.rcv_wnd)),
            ("SND.MSS", e.snd_mss.map(u64::from), u64::from(status.snd_mss)),
            ("send buffered", e.send_buffered.map(|v| v as u64), status.send_buffered as u64),
            ("receive buffered", e.recv_buffered.map(|v| v as u64), status.recv_buffered as u64),
            ("retries", e.retries.map(u64::from), u64::from(status.retries)),
            ("cwnd", e.cwnd.map(u64::from), u64::from(status.cwnd)),
            ("FlightSize", e.flight_size.map(u64::from), u64::from(status.flight_size)),
            ("duplicate ACKs", e.dup_acks.map(u64::from), u64::from(status.dup_acks)),
        ];
        for (name, expected, got) in numbers {
            if let Some(expected) = expected {
                self.compare(format!("{prefix} {name}"), expected.to_string(), got.to_string());
            }
        }
        if let Some(expected) = &e.error {
            let got = status.error.map_or("none", |err| err.errno());
            self.compare(format!("{prefix} error"), expected.to_ascii_uppercase().replace("NONE", "none"), got.into());
        }
        if let Some(expected) = e.ssthresh {
            let got = status.ssthresh.map_or(-1, i64::from);
            self.compare(format!("{prefix} ssthresh"), expected.to_string(), got.to_string());
        }
        if let Some(expected) = e.cc_phase {
            let name =
                |p: crate::engine::CcPhase| serde_json::to_value(p).ok().and_then(|v| v.as_str().map(String::from));
            self.compare(
                format!("{prefix} phase"),
                name(expected).unwrap_or_default(),
                name(status.cc_phase).unwrap_or_default(),
            );
        }
        if let Some(expected) = e.time_wait_left_ms {
            let got = status.timers.time_wait.map_or(-1, |deadline| (deadline.saturating_sub(now) / MS) as i64);
            self.compare(format!("{prefix} TIME_WAIT ms left"), expected.to_string(), got.to_string());
        }
    }

    fn segments(&mut self, expected: &[SegmentExpect], exact: bool) {
        let start = self.run.segment_cursor;
        let sent: Vec<(usize, &Event)> = self.run.events[start..]
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.kind, EventKind::SegmentSent { .. }))
            .map(|(i, e)| (start + i, e))
            .collect();
        let mut results = Vec::new();
        for (i, exp) in expected.iter().enumerate() {
            let what = format!("segment {} of {}", i + 1, expected.len());
            let want = describe_expect(exp);
            match sent.get(i) {
                None => results.push((what, want, "no segment".to_string(), false, self.world.now().as_nanos())),
                Some((_, ev)) => {
                    let (got, ok) = self.match_segment(exp, ev);
                    results.push((what, want, got, ok, ev.t_ns));
                }
            }
        }
        if exact && sent.len() > expected.len() {
            let extra: Vec<String> =
                sent[expected.len()..].iter().map(|(_, ev)| self.describe_sent(ev, false)).collect();
            let t = sent[expected.len()].1.t_ns;
            results.push((
                "no further segment".into(),
                format!("{} segment(s)", expected.len()),
                format!("{} more: {}", extra.len(), extra.join("; ")),
                false,
                t,
            ));
        }
        let consumed = if exact { sent.len() } else { expected.len().min(sent.len()) };
        // Just after the last segment matched: later ones stay for the next expectation.
        let cursor = sent.get(consumed).map_or(self.run.events.len(), |(i, _)| *i);
        for (what, want, got, ok, t) in results {
            self.push(what, want, got, ok, t);
        }
        self.run.segment_cursor = cursor;
    }

    fn describe_sent(&self, ev: &Event, with_fate: bool) -> String {
        let Some(w) = ev.kind.segment() else { return String::new() };
        let s = &w.segment;
        let mut text = format!(
            "#{} {}->{} {} seq={} ack={} len={} win={}",
            w.id,
            w.from,
            w.to,
            s.flags,
            s.seq.0,
            s.ack.0,
            s.payload.len(),
            s.window
        );
        if w.retransmission {
            text.push_str(" (retransmission)");
        }
        text.push_str(&format!(" at {:.3}ms", ev.t_ns as f64 / 1e6));
        if with_fate {
            text.push_str(&format!(" [{}]", SegmentOutcome::of_segment(&self.run.events, w.id)));
        }
        text
    }

    fn match_segment(&self, exp: &SegmentExpect, ev: &Event) -> (String, bool) {
        let Some(w) = ev.kind.segment() else { return ("not a segment".into(), false) };
        let s = &w.segment;
        let fate = SegmentOutcome::of_segment(&self.run.events, w.id);
        let ok = exp.from.as_deref().is_none_or(|f| f == &*w.from)
            && exp.to.as_deref().is_none_or(|t| t == &*w.to)
            && exp.flags.is_none_or(|f| f.0 == s.flags)
            && exp.seq.is_none_or(|v| v == s.seq.0)
            && exp.ack.is_none_or(|v| v == s.ack.0)
            && exp.len.is_none_or(|v| v as usize == s.payload.len())
            && exp.win.is_none_or(|v| v == s.window)
            && exp.retransmission.is_none_or(|r| r == w.retransmission)
            && exp.at_ms.is_none_or(|t| ms_to_ns(t) == ev.t_ns)
            && exp.fate.is_none_or(|f| f.accepts(&fate));
        (self.describe_sent(ev, exp.fate.is_some()), ok)
    }

    fn connections(&mut self, c: &ExpectConnections) {
        let host_id = c.host.as_deref().and_then(|h| self.world.host_id(h).ok());
        let mut count = 0;
        for conn in self.world.connections() {
            for end in [&conn.client, &conn.server].into_iter().flatten() {
                let on_host = host_id.is_none_or(|h| h == end.host);
                let in_state = match c.state {
                    None => true,
                    Some(StateName::State(s)) => end.state == s,
                    Some(StateName::Absent) => false,
                };
                if on_host && in_state {
                    count += 1;
                }
            }
        }
        let mut what = format!("connections on {}", c.host.as_deref().unwrap_or("all hosts"));
        if let Some(s) = c.state {
            what.push_str(&format!(" in {s}"));
        }
        self.compare(what, c.count.to_string(), count.to_string());
    }
}

impl Ctx<'_> {
    /// Jain's index of the connections' throughputs over the window: the
    /// payload octets delivered to either end of each, per second.
    fn fairness(&mut self, f: &ExpectFairness) {
        let what = format!("Jain's fairness index of {} over the last {} ms", f.conns.join(", "), f.last_ms);
        let expected = format!(">= {}", f.at_least);
        let now = self.world.now().as_nanos();
        let since = now.saturating_sub(f.last_ms.saturating_mul(1_000_000));
        let mut ids = Vec::new();
        for name in &f.conns {
            match self.run.conn(name) {
                Ok(id) => ids.push(id),
                Err(e) => return self.push(what, expected, e, false, now),
            }
        }
        let mut octets = vec![0u64; ids.len()];
        for ev in self.run.events.iter().rev().take_while(|ev| ev.t_ns > since) {
            if let EventKind::SegmentDelivered { connection: Some(c), segment } = &ev.kind {
                if let Some(i) = ids.iter().position(|id| id == c) {
                    octets[i] += segment.segment.payload.len() as u64;
                }
            }
        }
        let seconds = (now - since) as f64 / 1e9;
        let rates: Vec<f64> = octets.iter().map(|&o| o as f64 * 8.0 / seconds.max(1e-9)).collect();
        let index = jain_index(&rates);
        let shares =
            f.conns.iter().zip(&rates).map(|(n, r)| format!("{n} {:.3} Mb/s", r / 1e6)).collect::<Vec<_>>().join(", ");
        let got = format!("{index:.3} ({shares})");
        self.push(what, expected, got, index >= f.at_least, now);
    }

    /// Counts halve-then-grow cycles in one sender's `congestion_changed` events.
    fn sawtooth(&mut self, e: &ExpectSawtooth) {
        let what = format!("{} {} sawtooth (halve on loss, then +1 SMSS per step)", e.conn, e.side.name());
        let expected = format!(">= {} cycles", e.cycles);
        let now = self.world.now().as_nanos();
        let (id, smss) = match self.run.conn(&e.conn).and_then(|c| {
            let status = self.world.status(c, e.side).map_err(|err| err.to_string())?;
            Ok((c, u32::from(status.snd_mss)))
        }) {
            Ok(found) => found,
            Err(err) => return self.push(what, expected, err, false, now),
        };
        let windows = self.run.events.iter().filter_map(|ev| match &ev.kind {
            EventKind::CongestionChanged { connection: Some(c), side: Some(s), cwnd, ssthresh, phase, .. }
                if *c == id && *s == e.side =>
            {
                Some((*cwnd, *ssthresh, *phase))
            }
            _ => None,
        });
        let (cycles, peaks, timeouts) = count_sawtooth(windows, smss);
        let peaks = peaks.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let got = format!("{cycles} cycles (cwnd before each halving: {peaks}); {timeouts} timeouts");
        self.push(what, expected, got, cycles >= e.cycles && timeouts == 0, now);
    }
}

/// The most rows a cwnd plot has; a longer run samples a multiple of `every_ms`.
const PLOT_MAX_ROWS: u64 = 60;
/// The widest bar, in columns (the row fits the ladder's width).
const PLOT_BAR: u64 = 60;

/// One sender's cwnd from its `congestion_changed` events, sampled every
/// `every_ms` from its first value to the run's last event: a row per
/// sample with the time, cwnd, the phase (S slow start, A congestion
/// avoidance, R fast recovery) and a bar; `|` marks ssthresh once set.
fn cwnd_plot(events: &[Event], id: ConnId, plot: &PlotDef) -> String {
    use std::fmt::Write as _;
    let changes: Vec<(u64, u32, Option<u32>, CcPhase)> = events
        .iter()
        .filter_map(|ev| match &ev.kind {
            EventKind::CongestionChanged { connection: Some(c), side: Some(s), cwnd, ssthresh, phase, .. }
                if *c == id && *s == plot.side =>
            {
                Some((ev.t_ns, *cwnd, *ssthresh, *phase))
            }
            _ => None,
        })
        .collect();
    let mut out = format!("cwnd of {} {} (octets)", plot.conn, plot.side.name());
    let (Some(first), Some(last)) = (changes.first(), events.last()) else {
        out.push_str(": no congestion window yet\n");
        return out;
    };
    let mut step = ((plot.every_ms * 1e6) as u64).max(1);
    let span = last.t_ns.saturating_sub(first.0);
    if span / step >= PLOT_MAX_ROWS {
        step *= span / step / PLOT_MAX_ROWS + 1;
    }
    let _ = writeln!(out, ", one row per {} ms:", step as f64 / 1e6);
    let peak = changes.iter().map(|c| c.1.max(c.2.unwrap_or(0))).max().unwrap_or(1).max(1);
    let mut next = 0;
    let mut t = first.0;
    while t <= last.t_ns {
        while next + 1 < changes.len() && changes[next + 1].0 <= t {
            next += 1;
        }
        let (_, cwnd, ssthresh, phase) = changes[next];
        let columns = |v: u32| (u64::from(v) * PLOT_BAR / u64::from(peak)) as usize;
        let mut bar: Vec<char> = std::iter::repeat_n('#', columns(cwnd).max(1)).collect();
        if let Some(mark) = ssthresh.map(columns).filter(|&m| m <= PLOT_BAR as usize) {
            bar.resize(bar.len().max(mark + 1), ' ');
            bar[mark] = '|';
        }
        let letter = match phase {
            CcPhase::SlowStart => 'S',
            CcPhase::CongestionAvoidance => 'A',
            CcPhase::FastRecovery => 'R',
        };
        let bar: String = bar.into_iter().collect();
        let _ = writeln!(out, "{:>10.1} ms {cwnd:>8} {letter} {}", (t - first.0) as f64 / 1e6, bar.trim_end());
        t += step;
    }
    out
}

/// Jain's fairness index, `(sum x)^2 / (n * sum x^2)`; 0 when nothing moved.
fn jain_index(rates: &[f64]) -> f64 {
    let sum: f64 = rates.iter().sum();
    let squares: f64 = rates.iter().map(|r| r * r).sum();
    if squares == 0.0 { 0.0 } else { sum * sum / (rates.len() as f64 * squares) }
}

/// Over a sender's successive (cwnd, ssthresh, phase) values: how many
/// times a loss halved the window (fast recovery entered with ssthresh at
/// most half the cwnd before it, plus one SMSS of rounding) and congestion
/// avoidance then grew it at least twice by at most one SMSS each; the cwnd
/// before each such halving; and how many retransmission timeouts (cwnd
/// back to one SMSS in slow start, after the first loss) there were.
fn count_sawtooth(windows: impl Iterator<Item = (u32, Option<u32>, CcPhase)>, smss: u32) -> (usize, Vec<u32>, usize) {
    let (mut cycles, mut peaks, mut timeouts) = (0, Vec::new(), 0);
    let mut last: Option<(u32, Option<u32>, CcPhase)> = None;
    // Set when a halving was seen: the linear steps counted since.
    let mut growing: Option<(u32, usize)> = None;
    for (cwnd, ssthresh, phase) in windows {
        if let Some((before, _, before_phase)) = last {
            let halved = phase == CcPhase::FastRecovery
                && before_phase != CcPhase::FastRecovery
                && ssthresh.is_some_and(|s| s <= before / 2 + smss);
            if halved {
                growing = Some((before, 0));
            } else if phase == CcPhase::SlowStart && cwnd <= smss && ssthresh.is_some() {
                timeouts += 1;
                growing = None;
            } else if let Some((peak, steps)) = growing.as_mut() {
                let linear = phase == CcPhase::CongestionAvoidance
                    && before_phase == CcPhase::CongestionAvoidance
                    && cwnd > before
                    && cwnd - before <= smss;
                if linear {
                    *steps += 1;
                    if *steps == 2 {
                        cycles += 1;
                        peaks.push(*peak);
                    }
                }
            }
        }
        last = Some((cwnd, ssthresh, phase));
    }
    (cycles, peaks, timeouts)
}

/// `#3 A->B SYN seq=300 ...` for an expectation, naming only what it checks.
fn describe_expect(e: &SegmentExpect) -> String {
    let mut parts = Vec::new();
    match (&e.from, &e.to) {
        (Some(f), Some(t)) => parts.push(format!("{f}->{t}")),
        (Some(f), None) => parts.push(format!("{f}->*")),
        (None, Some(t)) => parts.push(format!("*->{t}")),
        (None, None) => {}
    }
    if let Some(f) = e.flags {
        parts.push(f.0.to_string());
    }
    for (name, v) in [("seq", e.seq), ("ack", e.ack), ("len", e.len), ("win", e.win.map(u32::from))] {
        if let Some(v) = v {
            parts.push(format!("{name}={v}"));
        }
    }
    if e.retransmission == Some(true) {
        parts.push("(retransmission)".into());
    }
    if let Some(t) = e.at_ms {
        parts.push(format!("at {t:.3}ms"));
    }
    if let Some(f) = e.fate {
        parts.push(format!("[{}]", f.name()));
    }
    parts.join(" ")
}

/// Data as a quoted, escaped string, shortened when long.
fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(60).collect::<String>().escape_debug().to_string();
    if text.chars().count() > 60 {
        out.push_str(&format!("... ({} octets)", bytes.len()));
    }
    format!("\"{out}\"")
}

#[cfg(test)]
mod sawtooth_and_fairness {
    use super::{count_sawtooth, jain_index};
    use crate::engine::CcPhase::{CongestionAvoidance as Ca, FastRecovery as Fr, SlowStart as Ss};

    #[test]
    fn jain_index_is_one_for_equal_shares_and_one_over_n_for_a_hog() {
        assert!((jain_index(&[2.0, 2.0]) - 1.0).abs() < 1e-12);
        assert!((jain_index(&[4.0, 0.0]) - 0.5).abs() < 1e-12);
        assert!((jain_index(&[3.0, 1.0]) - 0.8).abs() < 1e-12);
        assert_eq!(jain_index(&[0.0, 0.0]), 0.0);
    }

    #[test]
    fn a_cycle_is_a_halving_then_two_linear_steps_and_a_timeout_is_counted_apart() {
        let smss = 1000;
        let none = None;
        let teeth = [
            (10_000, none, Ss),
            (20_000, none, Ss),
            // The queue overflows: halve, recover, grow by one SMSS twice.
            (13_000, Some(10_000), Fr),
            (10_000, Some(10_000), Ca),
            (11_000, Some(10_000), Ca),
            (12_000, Some(10_000), Ca),
            // Again, from 12 000.
            (9_000, Some(6_000), Fr),
            (6_000, Some(6_000), Ca),
            (7_000, Some(6_000), Ca),
        ];
        let (cycles, peaks, timeouts) = count_sawtooth(teeth.into_iter(), smss);
        assert_eq!((cycles, peaks, timeouts), (1, vec![20_000], 0), "the second tooth grew only once");
        // Growth faster than one SMSS per step is slow start, not a tooth.
        let fast = [
            (20_000, none, Ss),
            (13_000, Some(10_000), Fr),
            (10_000, Some(10_000), Ca),
            (13_000, Some(10_000), Ca),
            (16_000, Some(10_000), Ca),
        ];
        assert_eq!(count_sawtooth(fast.into_iter(), smss).0, 0);
        // A loss that only trims the window is not a halving.
        let trim = [
            (20_000, none, Ss),
            (19_000, Some(16_000), Fr),
            (16_000, Some(16_000), Ca),
            (17_000, Some(16_000), Ca),
            (18_000, Some(16_000), Ca),
        ];
        assert_eq!(count_sawtooth(trim.into_iter(), smss).0, 0);
        let timeout = [(20_000, none, Ss), (1_000, Some(10_000), Ss)];
        assert_eq!(count_sawtooth(timeout.into_iter(), smss).2, 1);
    }
}
