//! The service layer: every operation of the lab server, once. REST and gRPC
//! are thin adapters that parse their input into [`model`] types, call one
//! [`LabService`] method, and convert the reply or [`Error`] back.
//!
//! Each session is an actor ([`session`]) owning its world; this layer finds
//! the actor, validates the request, sends the job and waits for the answer.
//! History (ended sessions, events, segments) comes from the [`crate::store`].

pub mod command;
pub mod error;
#[cfg(test)]
mod idle_tests;
pub mod labs;
pub mod limits;
pub mod model;
pub mod packetdrill;
pub mod session;
mod stats;
mod stream;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use command::Command;
pub use error::Error;
pub use limits::{LimitHit, Limits};
use model::*;
pub use session::LiveEvent;
use session::{SessionHandle, SessionState};
pub use stream::{StreamItem, Subscription};

use crate::engine::State;
use crate::sim::{
    ConnectSpec, Event, EventKind, Fate, FaultAction, FaultSpec, InjectSpec, LinkParams, ListenSpec, SegmentMatch,
    SegmentOutcome, Side, World, WorldConfig,
};
use crate::store::{EventFilter, Store, StoreWriter};

struct Inner {
    store: Store,
    writer: StoreWriter,
    limits: Limits,
    sessions: RwLock<FxHashMap<u64, Arc<SessionHandle>>>,
    shutting_down: AtomicBool,
    events_published: AtomicU64,
    /// Latency histograms and segment fates for `/metrics`.
    metrics: Arc<crate::metrics::Metrics>,
}

/// The lab server's operations. Cheap to clone: REST, gRPC and background
/// tasks share one.
#[derive(Clone)]
pub struct LabService {
    inner: Arc<Inner>,
}

fn now_rfc3339() -> String {
    // Seconds since the epoch in UTC, formatted without a date crate.
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn port(field: &'static str, value: u32) -> Result<u16, Error> {
    match u16::try_from(value) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::invalid(field, format!("must be between 1 and 65535, got {value}"))),
    }
}

fn millis_ns(field: &'static str, ms: f64) -> Result<u64, Error> {
    if !ms.is_finite() || !(0.0..=86_400_000.0 * 365.0).contains(&ms) {
        return Err(Error::invalid(field, format!("must be a number of milliseconds >= 0, got {ms}")));
    }
    Ok((ms * 1e6) as u64)
}

impl LabService {
    /// Waits, between two steps of a lab or a script, while the store's
    /// queue holds `max_pending_events` rows (as a clock run does between
    /// turns), so a run cannot outpace SQLite by more than that.
    ///
    /// # Errors
    /// The limit, when the queue stays full for [`session::ROOM_WAIT`].
    async fn room_in_the_store(&self, what: &str) -> Result<(), Error> {
        let max = self.inner.limits.max_pending_events as u64;
        if self.inner.writer.wait_for_room(max, session::ROOM_WAIT).await {
            return Ok(());
        }
        Err(Error::over_budget(
            "max_pending_events",
            max,
            format!("{what}: the store stayed {max} events behind for {:?}", session::ROOM_WAIT),
        ))
    }
}

/// The clock as a clock call leaves it.
fn clock_state(
    s: &mut SessionState,
    steps: u64,
    stopped_by: Option<StopReason>,
    limit: Option<LimitHit>,
) -> ClockState {
    ClockState {
        now_ns: s.world.now(),
        clock: s.clock,
        paused: s.paused,
        speed: s.speed,
        steps,
        idle: s.world.next_event_at().is_none(),
        stopped_by,
        limit,
    }
}

/// An `advance` or a `run_until_idle` in progress: its budget and how far it got.
struct ClockRun {
    /// `advance`: run to `now + span_ns` (all of it is run, then the clock
    /// is set there); `run_until_idle`: stop when idle or at `now + span_ns`.
    until_idle: bool,
    span_ns: u64,
    /// Where the run ends in virtual time (set by [`ClockRun::start`]).
    until: u64,
    max_steps: u64,
    steps: u64,
    /// Whether the caps are the server's limits (else the request's own, smaller ones).
    steps_cap_is_limit: bool,
    time_cap_is_limit: bool,
    limits: Limits,
}

impl ClockRun {
    fn advance(span_ns: u64, limits: &Limits) -> ClockRun {
        ClockRun {
            until_idle: false,
            span_ns,
            until: 0,
            max_steps: limits.run_max_events,
            steps: 0,
            steps_cap_is_limit: true,
            time_cap_is_limit: false,
            limits: limits.clone(),
        }
    }

    fn until_idle(max_events: Option<u64>, max_ns: Option<u64>, limits: &Limits) -> ClockRun {
        let cap_ns = limits.run_max_ms.saturating_mul(1_000_000);
        ClockRun {
            until_idle: true,
            span_ns: max_ns.map_or(cap_ns, |ns| ns.min(cap_ns)),
            until: 0,
            max_steps: max_events.map_or(limits.run_max_events, |n| n.min(limits.run_max_events)),
            steps: 0,
            steps_cap_is_limit: max_events.is_none_or(|n| n >= limits.run_max_events),
            time_cap_is_limit: max_ns.is_none_or(|ns| ns >= cap_ns),
            limits: limits.clone(),
        }
    }

    /// Fixes the end of the run from the clock when the command starts.
    fn start(&mut self, now: u64) {
        self.until = now.saturating_add(self.span_ns);
    }

    /// One turn: at most [`session::STEPS_PER_TURN`] items.
    fn turn(&mut self, s: &mut SessionState) -> std::task::Poll<Result<ClockState, Error>> {
        use std::task::Poll;
        let chunk = (self.max_steps - self.steps).min(session::STEPS_PER_TURN);
        let stopped = if self.until_idle {
            let outcome = s.world.run_until_idle(chunk, self.until.saturating_sub(s.world.now()));
            self.steps += outcome.steps;
            match outcome.stopped_by {
                None => Some(None),
                Some(crate::sim::RunCap::Time) => Some(Some(if self.time_cap_is_limit {
                    (StopReason::Limit, Some(LimitHit::new("run_max_ms", self.limits.run_max_ms)))
                } else {
                    (StopReason::Time, None)
                })),
                Some(crate::sim::RunCap::Steps) => None,
            }
        } else {
            let (n, reached) = s.world.run_until_bounded(self.until, chunk);
            self.steps += n;
            reached.then_some(None)
        };
        if let Some(stop) = stopped {
            let (by, limit) = stop.unzip();
            return Poll::Ready(Ok(clock_state(s, self.steps, by, limit.flatten())));
        }
        if self.steps >= self.max_steps {
            let (by, limit) = if self.steps_cap_is_limit {
                (StopReason::Limit, Some(LimitHit::new("run_max_events", self.limits.run_max_events)))
            } else {
                (StopReason::Events, None)
            };
            return Poll::Ready(Ok(clock_state(s, self.steps, Some(by), limit)));
        }
        if std::mem::take(&mut s.backlogged) {
            let limit = LimitHit::new("max_pending_events", self.limits.max_pending_events as u64);
            return Poll::Ready(Ok(clock_state(s, self.steps, Some(StopReason::Limit), Some(limit))));
        }
        Poll::Pending
    }
}

impl LabService {
    /// A service over an opened store; starts the store's writer. Sessions a
    /// previous run left live are marked ended.
    ///
    /// # Errors
    /// A store failure.
    pub async fn new(store: Store, limits: Limits) -> Result<LabService, Error> {
        store.mark_live_sessions_ended(&now_rfc3339()).await?;
        let writer = store.spawn_writer();
        let service = LabService {
            inner: Arc::new(Inner {
                store,
                writer,
                limits,
                sessions: RwLock::new(FxHashMap::default()),
                shutting_down: AtomicBool::new(false),
                events_published: AtomicU64::new(0),
                metrics: Arc::new(crate::metrics::Metrics::new()),
            }),
        };
        if service.inner.limits.idle_timeout_s > 0 {
            let weak = Arc::downgrade(&service.inner);
            tokio::spawn(async move { expire_idle_sessions(weak).await });
        }
        Ok(service)
    }

    /// The configured limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The store, for history queries.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn handle(&self, sid: u64) -> Result<Arc<SessionHandle>, Error> {
        let sessions = self.inner.sessions.read().map_err(|_| Error::Internal("session table poisoned".into()))?;
        sessions.get(&sid).cloned().ok_or_else(|| Error::not_found("session", sid))
    }

    /// A live session's actor, or the reason there is none (ended, or never existed).
    async fn live(&self, sid: u64) -> Result<Arc<SessionHandle>, Error> {
        match self.handle(sid) {
            Ok(h) => Ok(h),
            Err(e) => match self.inner.store.get_session(sid as i64).await? {
                Some(_) => Err(Error::FailedPrecondition(format!("session {sid} has ended"))),
                None => Err(e),
            },
        }
    }

    /// A live session's actor, to send a command to (refused while shutting down).
    async fn live_for_command(&self, sid: u64) -> Result<Arc<SessionHandle>, Error> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(Error::Unavailable);
        }
        self.live(sid).await
    }

    /// Runs a command on a live session: records it, runs it on the actor.
    async fn command<R: Send + 'static>(
        &self,
        sid: u64,
        record: Command,
        f: impl FnOnce(&mut SessionState) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        self.live_for_command(sid)
            .await?
            .command(move |s| {
                s.record_command(record);
                f(s)
            })
            .await
    }

    // ----- sessions -----

    /// Creates a session: a new world with its own clock and seed.
    ///
    /// # Errors
    /// Bad values, or the session limit.
    pub async fn create_session(&self, req: CreateSession) -> Result<SessionInfo, Error> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(Error::Unavailable);
        }
        let limits = &self.inner.limits;
        let live = self.inner.sessions.read().map(|s| s.len()).unwrap_or(0);
        if live >= limits.max_sessions {
            return Err(Error::LimitExceeded { limit: "max_sessions", max: limits.max_sessions as u64 });
        }
        let name = req.name.unwrap_or_default();
        if name.len() > 200 {
            return Err(Error::invalid("name", "at most 200 characters"));
        }
        let speed = req.speed.unwrap_or(1.0);
        if !speed.is_finite() || speed <= 0.0 || speed > 1e6 {
            return Err(Error::invalid("speed", format!("must be > 0 and at most 1000000, got {speed}")));
        }
        let clock = req.clock.unwrap_or_default();
        let seed = req.seed.unwrap_or(0);
        let profile = req.profile.unwrap_or_default();
        profile.validate().map_err(|e| Error::invalid(format!("profile.{}", e.field), e.message))?;
        if profile.send_buffer > limits.max_buffered_bytes {
            return Err(Error::LimitExceeded {
                limit: "max_buffered_bytes",
                max: u64::from(limits.max_buffered_bytes),
            });
        }
        let world = World::new(WorldConfig { seed, profile: profile.clone(), ..WorldConfig::default() })?;
        let spec = SessionSpec { seed, clock, speed, profile, lab: None, variant: None };
        let id = self.start_session(name, spec, world).await?;
        self.get_session(id).await
    }

    /// Persists a new session and starts its actor around `world`; returns
    /// its id. Shared by [`Self::create_session`] and lab runs (whose spec
    /// names their lab and variant), so a lab's session is a session like any other.
    async fn start_session(&self, name: String, spec: SessionSpec, world: World) -> Result<u64, Error> {
        let limits = &self.inner.limits;
        let created_at = now_rfc3339();
        let spec_json = serde_json::to_string(&spec).map_err(|e| Error::Internal(format!("session spec: {e}")))?;
        let SessionSpec { seed, clock, speed, profile, .. } = spec;
        let id = self.inner.store.create_session(&name, &spec_json, &created_at).await? as u64;
        let mut state = SessionState::new(
            id,
            name,
            seed,
            clock,
            speed,
            created_at,
            profile,
            world,
            limits.clone(),
            self.inner.writer.clone(),
        );
        state.segment_fates = self.inner.metrics.segment_fates();
        let subscribers = state.subscribers.clone();
        let published = state.published.clone();
        let (commands, commands_rx) = mpsc::channel(256);
        let (reads, reads_rx) = mpsc::channel(256);
        let task = tokio::spawn(session::run(state, commands_rx, reads_rx));
        let handle = Arc::new(SessionHandle {
            commands,
            reads,
            task,
            last_used: Arc::new(Mutex::new(Instant::now())),
            subscribers,
            published,
        });
        self.inner.sessions.write().map_err(|_| Error::Internal("session table poisoned".into()))?.insert(id, handle);
        Ok(id)
    }

    /// One session, live or ended.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub async fn get_session(&self, sid: u64) -> Result<SessionInfo, Error> {
        if let Ok(handle) = self.handle(sid) {
            if let Ok(info) = handle.call(|s| Ok(live_info(s))).await {
                return Ok(info);
            }
        }
        let row = self.inner.store.get_session(sid as i64).await?.ok_or_else(|| Error::not_found("session", sid))?;
        self.ended_info(row).await
    }

    async fn ended_info(&self, row: crate::store::SessionRow) -> Result<SessionInfo, Error> {
        let spec = session_spec(&row)?;
        let last = self
            .inner
            .store
            .events(row.id, &EventFilter { after_seq: (row.event_count - 1).max(0), limit: 1, ..Default::default() })
            .await?;
        Ok(SessionInfo {
            id: row.id as u64,
            name: row.name,
            seed: spec.seed,
            clock: spec.clock,
            speed: spec.speed,
            paused: false,
            status: row.status,
            now_ns: last.first().map_or(0, |e| e.t_ns as u64),
            created_at: row.created_at,
            ended_at: row.ended_at,
            profile: spec.profile,
            hosts: 0,
            connections: 0,
            states: BTreeMap::new(),
            events: row.event_count as u64,
        })
    }

    /// A page of sessions, live and ended, by id.
    ///
    /// # Errors
    /// Bad paging values.
    pub async fn list_sessions(&self, page: Page) -> Result<SessionList, Error> {
        let offset = page.offset.unwrap_or(0);
        let limit = page.limit.unwrap_or(100);
        if limit == 0 || limit > 1000 {
            return Err(Error::invalid("limit", "must be between 1 and 1000"));
        }
        if offset > i64::MAX as u64 {
            return Err(Error::invalid("offset", format!("must be at most {}", i64::MAX)));
        }
        let (rows, total) = self.inner.store.list_sessions(limit as i64, offset as i64).await?;
        let mut sessions = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.id as u64;
            // Listing every session is no use of each one: it must not keep them from expiring.
            let live = match self.handle(id) {
                Ok(handle) => handle.call_quietly(|s| Ok(live_info(s))).await.ok(),
                Err(_) => None,
            };
            match live {
                Some(info) => sessions.push(info),
                None => sessions.push(self.ended_info(row).await?),
            }
        }
        Ok(SessionList { sessions, total: total as u64, offset, limit })
    }

    /// Ends a session: its actor stops, its events are flushed; its history stays.
    ///
    /// # Errors
    /// [`Error::NotFound`], or already ended.
    pub async fn end_session(&self, sid: u64) -> Result<SessionInfo, Error> {
        let handle = {
            let mut sessions =
                self.inner.sessions.write().map_err(|_| Error::Internal("session table poisoned".into()))?;
            sessions.remove(&sid)
        };
        let Some(handle) = handle else {
            return match self.inner.store.get_session(sid as i64).await? {
                Some(_) => Err(Error::FailedPrecondition(format!("session {sid} has already ended"))),
                None => Err(Error::not_found("session", sid)),
            };
        };
        self.stop(handle, sid).await;
        self.get_session(sid).await
    }

    async fn stop(&self, handle: Arc<SessionHandle>, sid: u64) {
        let Ok(handle) = Arc::try_unwrap(handle) else {
            // Another request holds the handle for a moment; its job still
            // runs, and the actor stops when the last sender is dropped.
            self.inner.writer.end_session(sid as i64, now_rfc3339());
            return;
        };
        drop(handle.commands);
        drop(handle.reads);
        let _ = handle.task.await;
        self.inner.writer.end_session(sid as i64, now_rfc3339());
        let _ = self.inner.writer.flush().await;
    }

    /// Graceful shutdown: refuse new work, stop every session (ending their
    /// streams), and flush every pending event to SQLite.
    ///
    /// # Errors
    /// A store failure while flushing.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let all: Vec<(u64, Arc<SessionHandle>)> = match self.inner.sessions.write() {
            Ok(mut sessions) => sessions.drain().collect(),
            Err(_) => Vec::new(),
        };
        for (sid, handle) in all {
            self.stop(handle, sid).await;
        }
        // Shutting the writer down commits every row already queued and
        // stops the task; a second shutdown finds it closed, which is fine.
        match self.inner.writer.clone().shutdown().await {
            Ok(_) | Err(crate::store::StoreError::WriterClosed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Counters for metrics: live sessions, subscribers, events published, events persisted.
    pub fn counters(&self) -> (usize, usize, u64, u64) {
        let sessions = self.inner.sessions.read().map(|s| s.values().cloned().collect::<Vec<_>>()).unwrap_or_default();
        let subscribers = sessions.iter().map(|h| h.subscribers.load(Ordering::Relaxed)).sum();
        let published: u64 = sessions.iter().map(|h| h.published.load(Ordering::Relaxed)).sum::<u64>()
            + self.inner.events_published.load(Ordering::Relaxed);
        (sessions.len(), subscribers, published, self.inner.writer.stats().events_persisted)
    }

    // ----- topology -----

    /// Adds a host to a session.
    ///
    /// # Errors
    /// Bad name or address, duplicates, the host limit.
    pub async fn add_host(&self, sid: u64, req: AddHost) -> Result<HostInfo, Error> {
        let ip: Ipv4Addr =
            req.ip.parse().map_err(|_| Error::invalid("ip", format!("not an IPv4 address: {:?}", req.ip)))?;
        let kind = req.kind.unwrap_or_default();
        if req.name.is_empty() || req.name.len() > 64 {
            return Err(Error::invalid("name", "must be 1 to 64 characters"));
        }
        let record = Command::AddHost { args: req.clone() };
        self.command(sid, record, move |s| {
            if s.world.hosts().count() >= s.limits.max_hosts {
                return Err(Error::LimitExceeded { limit: "max_hosts", max: s.limits.max_hosts as u64 });
            }
            s.world.add_host(&req.name, ip, kind)?;
            Ok(HostInfo { name: req.name, ip: ip.to_string(), kind })
        })
        .await
    }

    /// The hosts of a session.
    ///
    /// # Errors
    /// Unknown or ended session.
    pub async fn list_hosts(&self, sid: u64) -> Result<Vec<HostInfo>, Error> {
        self.live(sid)
            .await?
            .call(|s| {
                Ok(s.world
                    .hosts()
                    .map(|(name, ip, kind)| HostInfo { name: name.to_string(), ip: ip.to_string(), kind })
                    .collect())
            })
            .await
    }

    /// Sets the link between two hosts (both directions).
    ///
    /// # Errors
    /// Unknown hosts or out-of-range settings.
    pub async fn set_link(&self, sid: u64, req: SetLink) -> Result<LinkInfo, Error> {
        let defaults = LinkParams::default();
        let params = LinkParams {
            latency_ms: req.latency_ms.unwrap_or(defaults.latency_ms),
            jitter_ms: req.jitter_ms.unwrap_or(0.0),
            loss: req.loss.unwrap_or(0.0),
            duplicate: req.duplicate.unwrap_or(0.0),
            reorder: req.reorder.unwrap_or(0.0),
            corrupt: req.corrupt.unwrap_or(0.0),
            bandwidth_bps: req.bandwidth_bps.unwrap_or(0),
        };
        params.validate().map_err(|e| Error::invalid(e.field, e.message))?;
        if req.a == req.b {
            return Err(Error::invalid("b", "a link joins two different hosts"));
        }
        let record = Command::SetLink { args: req.clone() };
        self.command(sid, record, move |s| {
            s.world.set_link(&req.a, &req.b, params.clone())?;
            Ok(link_info(&req.a, &req.b, &params))
        })
        .await
    }

    /// Every link direction set explicitly (others use the default 10 ms link).
    ///
    /// # Errors
    /// Unknown or ended session.
    pub async fn list_links(&self, sid: u64) -> Result<Vec<LinkInfo>, Error> {
        self.live(sid)
            .await?
            .call(|s| {
                Ok(s.world.links().map(|(a, b, p)| link_info(s.world.host_name(a), s.world.host_name(b), p)).collect())
            })
            .await
    }

    // ----- connections -----

    /// The shipped behaviour profiles with every setting.
    ///
    /// # Errors
    /// [`Error::Internal`] if an embedded profile does not parse (the tests catch it).
    pub fn list_profiles(&self) -> Result<ProfileList, Error> {
        use crate::profiles::{DEFAULT_PROFILE, named_profile, profile_description, profile_names};
        let profiles = profile_names()
            .into_iter()
            .map(|name| {
                Ok(ProfileInfo {
                    name: name.to_string(),
                    description: profile_description(name).unwrap_or_default().to_string(),
                    default: name == DEFAULT_PROFILE,
                    settings: named_profile(name).map_err(|e| Error::Internal(e.to_string()))?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(ProfileList { profiles })
    }

    /// Opens a listener (passive OPEN).
    ///
    /// # Errors
    /// Unknown host, bad port, port in use.
    pub async fn add_listener(&self, sid: u64, req: AddListener) -> Result<ListenerInfo, Error> {
        let p = port("port", req.port)?;
        let record = Command::Listen { args: req.clone() };
        self.command(sid, record, move |s| {
            let spec =
                ListenSpec { host: req.host.clone(), port: p, isn: req.isn, profile: None, backlog: req.backlog };
            let id = s.world.listen(spec)?;
            Ok(ListenerInfo { id, host: req.host, port: p, state: State::Listen, backlog: req.backlog, pending: 0 })
        })
        .await
    }

    /// The listeners of a session.
    ///
    /// # Errors
    /// Unknown or ended session.
    pub async fn list_listeners(&self, sid: u64) -> Result<Vec<ListenerInfo>, Error> {
        self.live(sid)
            .await?
            .call(|s| {
                Ok(s.world
                    .listeners()
                    .iter()
                    .map(|l| ListenerInfo {
                        id: l.id,
                        host: s.world.host_name(l.host).to_string(),
                        port: l.port,
                        state: if l.open { State::Listen } else { State::Closed },
                        backlog: l.backlog,
                        pending: s.world.pending(l.id) as u64,
                    })
                    .collect())
            })
            .await
    }

    /// The user's accept() on a listener: the next connection it made that is
    /// established and not accepted yet (accepting frees a backlog place).
    ///
    /// # Errors
    /// Unknown session or listener; [`Error::NotFound`] when no connection is ready.
    pub async fn accept(&self, sid: u64, lid: u64) -> Result<ConnectionInfo, Error> {
        let record = Command::Accept { listener: lid };
        self.command(sid, record, move |s| match s.world.accept(lid)? {
            Some(cid) => connection_info(s, cid),
            None => Err(Error::not_found("established connection to accept on listener", lid)),
        })
        .await
    }

    /// Active OPEN: the SYN leaves now.
    ///
    /// # Errors
    /// Unknown hosts, bad ports, four-tuple in use, the connection limit.
    pub async fn open_connection(&self, sid: u64, req: OpenConnection) -> Result<ConnectionInfo, Error> {
        let p = port("port", req.port)?;
        let client_port = req.client_port.map(|cp| port("client_port", cp)).transpose()?;
        let record = Command::Connect { args: req.clone() };
        self.command(sid, record, move |s| {
            if s.world.connection_count() >= s.limits.max_connections {
                return Err(Error::LimitExceeded { limit: "max_connections", max: s.limits.max_connections as u64 });
            }
            let id = s.world.connect(ConnectSpec {
                client: req.client,
                server: req.server,
                port: p,
                client_port,
                isn: req.isn,
                profile: None,
            })?;
            connection_info(s, id)
        })
        .await
    }

    /// Every connection of a live session.
    ///
    /// # Errors
    /// Unknown or ended session.
    pub async fn list_connections(&self, sid: u64) -> Result<Vec<ConnectionInfo>, Error> {
        self.live(sid)
            .await?
            .call(|s| {
                let ids: Vec<u64> = s.world.connections().iter().map(|c| c.id).collect();
                ids.into_iter().map(|id| connection_info(s, id)).collect()
            })
            .await
    }

    /// One connection with both ends.
    ///
    /// # Errors
    /// Unknown session or connection.
    pub async fn get_connection(&self, sid: u64, cid: u64) -> Result<ConnectionInfo, Error> {
        self.live(sid).await?.call(move |s| connection_info(s, cid)).await
    }

    /// SEND from one end.
    ///
    /// # Errors
    /// Bad data, unknown ids, a state that cannot send.
    pub async fn send(&self, sid: u64, cid: u64, req: SendData) -> Result<SendResult, Error> {
        let side = req.side;
        let data = req.into_bytes()?;
        let max_write = self.inner.limits.max_write_bytes;
        if data.len() > max_write {
            return Err(Error::over_budget(
                "max_write_bytes",
                max_write as u64,
                format!("data: {} octets", data.len()),
            ));
        }
        let record = Command::Send { connection: cid, side, bytes: data.len() };
        self.command(sid, record, move |s| {
            let accepted = s.world.send_bytes(cid, side, data)?;
            Ok(SendResult { side, accepted: accepted as u64 })
        })
        .await
    }

    /// Everything one end has received.
    ///
    /// # Errors
    /// Unknown ids.
    pub async fn received(&self, sid: u64, cid: u64, side: Side) -> Result<Received, Error> {
        self.live(sid)
            .await?
            .call(move |s| {
                let data = s.world.received(cid, side)?;
                Ok(Received {
                    side,
                    bytes: data.len() as u64,
                    data: String::from_utf8_lossy(data).into_owned(),
                    data_base64: base64::engine::general_purpose::STANDARD.encode(data),
                })
            })
            .await
    }

    /// CLOSE one end.
    ///
    /// # Errors
    /// Unknown ids or a state that refuses.
    pub async fn close(&self, sid: u64, cid: u64, req: SideRequest) -> Result<ConnectionInfo, Error> {
        let record = Command::Close { connection: cid, side: req.side };
        self.command(sid, record, move |s| {
            s.world.close(cid, req.side)?;
            connection_info(s, cid)
        })
        .await
    }

    /// ABORT one end.
    ///
    /// # Errors
    /// Unknown ids.
    pub async fn abort(&self, sid: u64, cid: u64, req: SideRequest) -> Result<ConnectionInfo, Error> {
        let record = Command::Abort { connection: cid, side: req.side };
        self.command(sid, record, move |s| {
            s.world.abort(cid, req.side)?;
            connection_info(s, cid)
        })
        .await
    }

    // ----- faults and injection -----

    /// Installs a fault rule.
    ///
    /// # Errors
    /// Bad values, unknown hosts, the fault limit.
    pub async fn add_fault(&self, sid: u64, req: AddFault) -> Result<FaultInfo, Error> {
        let action = req.action;
        let delay_ns = millis_ns("delay_ms", req.delay_ms.unwrap_or(0.0))?;
        if action == FaultAction::Delay && delay_ns == 0 {
            return Err(Error::invalid("delay_ms", "a delay rule needs delay_ms > 0"));
        }
        let m = req.matcher.clone().unwrap_or_default();
        let flags = m.flags;
        let spec = FaultSpec {
            from: req.from.clone(),
            to: req.to.clone(),
            matcher: SegmentMatch {
                flags,
                len: m.len,
                seq: m.seq,
                seq_range: m.seq_range.map(|[a, b]| (a, b)),
                ack: m.ack,
                src_port: m.src_port,
                dst_port: m.dst_port,
            },
            skip: req.skip.unwrap_or(0),
            count: req.count,
            action,
            delay_ns,
        };
        let record = Command::AddFault { args: req.clone() };
        self.command(sid, record, move |s| {
            if s.world.faults().len() >= s.limits.max_faults {
                return Err(Error::LimitExceeded { limit: "max_faults", max: s.limits.max_faults as u64 });
            }
            let id = s.world.add_fault(spec)?;
            fault_info(s, id)
        })
        .await
    }

    /// The installed fault rules with their counters.
    ///
    /// # Errors
    /// Unknown or ended session.
    pub async fn list_faults(&self, sid: u64) -> Result<Vec<FaultInfo>, Error> {
        self.live(sid)
            .await?
            .call(|s| {
                let ids: Vec<u64> = s.world.faults().iter().map(|f| f.id).collect();
                ids.into_iter().map(|id| fault_info(s, id)).collect()
            })
            .await
    }

    /// Removes a fault rule (releasing what it holds).
    ///
    /// # Errors
    /// Unknown ids.
    pub async fn delete_fault(&self, sid: u64, fid: u64) -> Result<(), Error> {
        let record = Command::DeleteFault { fault: fid };
        self.command(sid, record, move |s| Ok(s.world.remove_fault(fid)?)).await
    }

    /// Sends the segments a rule holds on their way; returns how many.
    ///
    /// # Errors
    /// Unknown ids.
    pub async fn release_fault(&self, sid: u64, fid: u64) -> Result<u64, Error> {
        let record = Command::ReleaseFault { fault: fid };
        self.command(sid, record, move |s| Ok(s.world.release_fault(fid)? as u64)).await
    }

    /// Injects a crafted segment.
    ///
    /// # Errors
    /// Bad values or unknown hosts.
    pub async fn inject(&self, sid: u64, req: Inject) -> Result<InjectResult, Error> {
        let (from, src_port) = endpoint("from", "src_port", &req.from, req.src_port)?;
        let (to, dst_port) = endpoint("to", "dst_port", &req.to, req.dst_port)?;
        let flags = req.flags;
        let window = req.window.unwrap_or(65_535);
        let window = u16::try_from(window)
            .map_err(|_| Error::invalid("window", format!("must be at most 65535, got {window}")))?;
        let urgent = req.urgent.unwrap_or(0);
        let urgent = u16::try_from(urgent)
            .map_err(|_| Error::invalid("urgent", format!("must be at most 65535, got {urgent}")))?;
        let payload = match (&req.payload, &req.payload_base64) {
            (Some(text), None) => Bytes::copy_from_slice(text.as_bytes()),
            (None, Some(b64)) => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| Error::invalid("payload_base64", e.to_string()))?,
            ),
            (None, None) => Bytes::new(),
            (Some(_), Some(_)) => {
                return Err(Error::invalid("payload", "give at most one of payload and payload_base64"));
            }
        };
        if payload.len() > 65_000 {
            return Err(Error::invalid("payload", "at most 65000 octets"));
        }
        let delay_ns = millis_ns("delay_ms", req.delay_ms.unwrap_or(0.0))?;
        let spec = InjectSpec {
            from,
            to,
            src_port,
            dst_port,
            seq: req.seq,
            ack: req.ack,
            flags,
            window,
            urgent,
            options: req.options.clone(),
            payload,
            delay_ns,
        };
        let record = Command::Inject { args: req.clone() };
        self.command(sid, record, move |s| Ok(InjectResult { segment_id: s.world.inject(spec)? })).await
    }

    // ----- the clock -----

    /// Steps, advances, runs until idle, pauses or resumes a session's clock.
    ///
    /// `advance` and `run_until_idle` run in turns of [`session::STEPS_PER_TURN`]
    /// items on the session's actor (publishing after each, so subscribers
    /// watch the run as it goes), within the budget `run_max_events` items
    /// and `run_max_ms` of virtual time: a run that reaches it stops there
    /// with `"stopped_by": "limit"` and the limit named; an `advance` asking
    /// for more than `run_max_ms` is refused before it starts.
    ///
    /// # Errors
    /// Bad action or values; an `advance` over `run_max_ms`.
    pub async fn clock(&self, sid: u64, req: ClockRequest) -> Result<ClockState, Error> {
        let limits = &self.inner.limits;
        let ms = req.ms.map(|ms| millis_ns("ms", ms)).transpose()?;
        if let Some(speed) = req.speed {
            if !speed.is_finite() || speed <= 0.0 || speed > 1e6 {
                return Err(Error::invalid("speed", format!("must be > 0 and at most 1000000, got {speed}")));
            }
        }
        let max_ms = req.max_ms.map(|ms| millis_ns("max_ms", ms)).transpose()?;
        if req.action == ClockAction::SetSpeed && req.speed.is_none() {
            return Err(Error::invalid("speed", "set_speed needs speed"));
        }
        let cap_ns = limits.run_max_ms.saturating_mul(1_000_000);
        let run = match req.action {
            ClockAction::Advance => {
                let ms = ms.ok_or_else(|| Error::invalid("ms", "advance needs ms"))?;
                if ms > cap_ns {
                    return Err(Error::over_budget(
                        "run_max_ms",
                        limits.run_max_ms,
                        format!("ms: {} ms of virtual time in one call", ms / 1_000_000),
                    ));
                }
                Some(ClockRun::advance(ms, limits))
            }
            ClockAction::RunUntilIdle => Some(ClockRun::until_idle(req.max_events, max_ms, limits)),
            ClockAction::Step | ClockAction::Pause | ClockAction::Resume | ClockAction::SetSpeed => None,
        };
        let record = Command::Clock { args: req.clone() };
        let handle = self.live_for_command(sid).await?;
        let Some(mut run) = run else {
            return handle
                .command(move |s| {
                    s.record_command(record);
                    let mut steps = 0;
                    match req.action {
                        ClockAction::Step => {
                            if s.world.step() {
                                steps = 1;
                            }
                        }
                        ClockAction::Pause => s.paused = true,
                        ClockAction::Resume | ClockAction::SetSpeed => {
                            if req.action == ClockAction::Resume {
                                s.paused = false;
                            }
                            if let Some(speed) = req.speed {
                                s.speed = speed;
                            }
                        }
                        // Run in turns below.
                        ClockAction::Advance | ClockAction::RunUntilIdle => {}
                    }
                    s.reanchor();
                    Ok(clock_state(s, steps, None, None))
                })
                .await;
        };
        let mut record = Some(record);
        handle
            .command_in_turns(move |s| {
                if let Some(record) = record.take() {
                    s.record_command(record);
                    run.start(s.world.now());
                }
                let poll = run.turn(s);
                if poll.is_ready() {
                    s.reanchor();
                }
                poll
            })
            .await
    }

    // ----- history -----

    /// A page of a session's events from SQLite (live sessions are flushed first).
    ///
    /// # Errors
    /// Unknown session, bad filter values.
    pub async fn events(&self, sid: u64, q: EventQuery) -> Result<EventPage, Error> {
        let limit = q.limit.unwrap_or(1000);
        if limit == 0 || limit > 10_000 {
            return Err(Error::invalid("limit", "must be between 1 and 10000"));
        }
        let kinds = parse_kinds(q.kind.as_deref())?;
        self.stored_up_to_now(sid).await?;
        let after = q.after_seq.unwrap_or(0);
        let rows = self
            .inner
            .store
            .events(
                sid as i64,
                &EventFilter {
                    after_seq: after.min(i64::MAX as u64) as i64,
                    limit: limit as i64,
                    kinds,
                    connection: q.connection.map(|c| c as i64),
                },
            )
            .await?;
        let next_after_seq = rows.last().map_or(after, |r| r.seq as u64);
        Ok(EventPage { events: typed_events(sid, rows)?, next_after_seq })
    }

    /// Waits until SQLite holds every event the session has logged so far:
    /// what the actor published is on its way to the writer. Readers of the
    /// history call it first, so that they read what happened, not a lag.
    ///
    /// # Errors
    /// Unknown session; the writer cannot commit.
    async fn stored_up_to_now(&self, sid: u64) -> Result<(), Error> {
        self.require_session(sid).await?;
        if let Ok(handle) = self.handle(sid) {
            handle
                .call(|s| {
                    s.publish();
                    Ok(())
                })
                .await
                .ok();
            self.inner.writer.flush().await?;
        }
        Ok(())
    }

    /// One page of a session's stored events after `after`, of the given
    /// kinds, read back into the typed events they were written from (once
    /// what the actor published is in SQLite), and the seq to continue after.
    ///
    /// # Errors
    /// Unknown session; a stored row that does not read back (a bug, named
    /// by its seq).
    async fn stored_events(&self, sid: u64, after: u64, kinds: &[&str]) -> Result<(Vec<Event>, u64), Error> {
        self.stored_up_to_now(sid).await?;
        let filter = EventFilter {
            after_seq: after.min(i64::MAX as u64) as i64,
            limit: 10_000,
            kinds: kinds.iter().map(|k| (*k).to_string()).collect(),
            connection: None,
        };
        let rows = self.inner.store.events(sid as i64, &filter).await?;
        let next = rows.last().map_or(after, |r| r.seq as u64);
        Ok((typed_events(sid, rows)?, next))
    }

    async fn require_session(&self, sid: u64) -> Result<(), Error> {
        if self.handle(sid).is_ok() || self.inner.store.get_session(sid as i64).await?.is_some() {
            Ok(())
        } else {
            Err(Error::not_found("session", sid))
        }
    }

    /// Every segment of a session with its fate, from the event log.
    ///
    /// # Errors
    /// Unknown session.
    pub async fn segments(&self, sid: u64) -> Result<SegmentList, Error> {
        const KINDS: [&str; 7] = [
            "segment_sent",
            "segment_delivered",
            "segment_dropped",
            "segment_duplicated",
            "segment_held",
            "segment_released",
            "segment_delayed",
        ];
        let mut after = 0;
        let mut segments: Vec<SegmentInfo> = Vec::new();
        let mut outcomes: Vec<SegmentOutcome> = Vec::new();
        let mut index: FxHashMap<u64, usize> = FxHashMap::default();
        let max = self.inner.limits.max_report_events;
        let mut truncated = false;
        'pages: loop {
            let (events, next) = self.stored_events(sid, after, &KINDS).await?;
            if events.is_empty() {
                break;
            }
            after = next;
            for event in events {
                let t_ns = event.t_ns;
                if let EventKind::SegmentSent { segment, .. } = event.kind {
                    if segments.len() >= max {
                        // Bounded: the first `max` segments, their fates as far as read.
                        truncated = true;
                        break 'pages;
                    }
                    index.insert(segment.id, segments.len());
                    segments.push(SegmentInfo {
                        segment,
                        sent_ns: t_ns,
                        fate: Fate::InFlight,
                        fates: Vec::new(),
                        reason: None,
                    });
                    outcomes.push(SegmentOutcome::default());
                    continue;
                }
                let (Some(wire), Some((fate, reason))) = (event.kind.segment(), Fate::of(&event.kind)) else {
                    continue;
                };
                let Some(&i) = index.get(&wire.id) else { continue };
                segments[i].fates.push(fate);
                outcomes[i].record(fate, reason);
                segments[i].fate = outcomes[i].fate;
                segments[i].reason = outcomes[i].reason;
            }
        }
        Ok(SegmentList { segments, truncated })
    }

    /// The session's segments as a pcap file ([`crate::pcap`]): one packet per
    /// segment as sent (lost and dropped ones included), from the event log,
    /// so it works for ended sessions and after a restart too; at most
    /// `max_report_events` packets (the first ones).
    ///
    /// # Errors
    /// Unknown session; a host whose address cannot be found any more.
    pub async fn pcap(&self, sid: u64) -> Result<Capture, Error> {
        let max = self.inner.limits.max_report_events;
        let mut truncated = false;
        self.require_session(sid).await?;
        let hosts = self.host_addresses(sid).await?;
        let resolve = |name: &str| hosts.get(name).copied();
        let mut captured = Vec::new();
        let mut after = 0;
        'pages: loop {
            let (events, next) = self.stored_events(sid, after, &["segment_sent"]).await?;
            if events.is_empty() {
                break;
            }
            after = next;
            for event in &events {
                if !matches!(event.kind, EventKind::SegmentSent { .. }) {
                    continue;
                }
                if captured.len() >= max {
                    // Bounded: the first `max` packets.
                    truncated = true;
                    break 'pages;
                }
                match crate::pcap::from_events(std::iter::once(event), resolve) {
                    Ok(one) => captured.extend(one),
                    Err(e @ crate::pcap::PcapError::UnknownHost(_)) => {
                        return Err(Error::FailedPrecondition(format!("cannot build the capture: {e}")));
                    }
                    Err(e) => return Err(Error::Internal(format!("pcap of session {sid}: {e}"))),
                }
            }
        }
        let pcap = crate::pcap::build(&captured).map_err(|e| Error::Internal(format!("pcap of session {sid}: {e}")))?;
        Ok(Capture { pcap, packets: captured.len() as u64, truncated })
    }

    /// Every host name of a session with its address: from the live world,
    /// or for an ended session from its stored `add_host` commands and (for a
    /// lab run) the built-in lab's hosts.
    async fn host_addresses(&self, sid: u64) -> Result<FxHashMap<String, Ipv4Addr>, Error> {
        let mut hosts = FxHashMap::default();
        if let Ok(handle) = self.handle(sid) {
            let live: Result<Vec<(String, Ipv4Addr)>, Error> =
                handle.call(|s| Ok(s.world.hosts().map(|(name, ip, _)| (name.to_string(), ip)).collect())).await;
            if let Ok(live) = live {
                hosts.extend(live);
                return Ok(hosts);
            }
        }
        if let Some(row) = self.inner.store.get_session(sid as i64).await? {
            let spec = session_spec(&row)?;
            if let Some(lab) = spec.lab.as_deref().and_then(|name| crate::lab::builtin_lab(name).ok()) {
                hosts.extend(lab.hosts.iter().map(|h| (h.name.clone(), h.ip)));
            }
        }
        let mut after = 0;
        loop {
            let rows = self.inner.store.commands(sid as i64, after, 1000).await?;
            let Some(last) = rows.last() else { break };
            after = last.seq;
            for row in &rows {
                let command: Command = serde_json::from_str(&row.body).map_err(|e| {
                    Error::Internal(format!("session {sid}: stored command {} does not read back: {e}", row.seq))
                })?;
                // A refused add_host is logged too (the log is what was asked):
                // only a well-formed address can have made a host.
                if let Command::AddHost { args } = command
                    && let Ok(ip) = args.ip.parse::<Ipv4Addr>()
                {
                    hosts.insert(args.name, ip);
                }
            }
        }
        Ok(hosts)
    }

    /// Opens an event stream: stored events after `after_seq`, then live
    /// ones, with no gap and no duplicate. With `durable_only`, an event is
    /// delivered once SQLite holds it (so every delivered event survives a
    /// crash); otherwise at once, each marked with whether it is durable yet.
    ///
    /// # Errors
    /// Unknown session, bad kinds, the subscriber limit.
    pub async fn subscribe(
        &self,
        sid: u64,
        after_seq: u64,
        kinds: Option<&str>,
        connection: Option<u64>,
        durable_only: bool,
    ) -> Result<Subscription, Error> {
        let kinds = parse_kinds(kinds)?;
        self.require_session(sid).await?;
        let live = match self.handle(sid) {
            Ok(handle) => {
                let subscribers = handle.subscribers.clone();
                let feed = handle.call(move |s| s.subscribe(after_seq)).await?;
                Some((feed, subscribers, self.inner.limits.broadcast_capacity))
            }
            Err(_) => None,
        };
        let filter = stream::StreamFilter { kinds, connection, durable_only };
        Ok(stream::open(self.inner.store.clone(), self.inner.writer.clone(), sid, after_seq, filter, live))
    }
}

/// A stored session's spec, read back into the type it was written from.
///
/// # Errors
/// A spec that does not read back (a bug, named by the session).
/// Stored events read back into the typed events they were written from.
///
/// # Errors
/// A row that does not read back (a bug, named by its seq).
fn typed_events(sid: u64, rows: Vec<crate::store::EventRow>) -> Result<Vec<Event>, Error> {
    rows.into_iter()
        .map(|row| {
            serde_json::from_str::<Event>(&row.body)
                .map_err(|e| Error::Internal(format!("session {sid} event {}: {e}", row.seq)))
        })
        .collect()
}

fn session_spec(row: &crate::store::SessionRow) -> Result<SessionSpec, Error> {
    serde_json::from_str(&row.spec).map_err(|e| Error::Internal(format!("session {}: stored spec: {e}", row.id)))
}

fn parse_kinds(kinds: Option<&str>) -> Result<Vec<String>, Error> {
    let Some(kinds) = kinds else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for kind in kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        if !EventKind::NAMES.contains(&kind) {
            return Err(Error::invalid(
                "kind",
                format!("unknown event kind {kind:?} (expected one of {})", EventKind::NAMES.join(", ")),
            ));
        }
        out.push(kind.to_string());
    }
    Ok(out)
}

fn endpoint(
    field: &'static str,
    port_field: &'static str,
    ep: &InjectEndpoint,
    port_value: Option<u32>,
) -> Result<(String, u16), Error> {
    match ep {
        InjectEndpoint::Host(host) => {
            let p =
                port_value.ok_or_else(|| Error::invalid(port_field, format!("needed when {field} is a host name")))?;
            Ok((host.clone(), port(port_field, p)?))
        }
        InjectEndpoint::HostPort { host, port: p } => Ok((host.clone(), port(field, *p)?)),
    }
}

fn link_info(a: &str, b: &str, p: &LinkParams) -> LinkInfo {
    LinkInfo {
        a: a.to_string(),
        b: b.to_string(),
        latency_ms: p.latency_ms,
        jitter_ms: p.jitter_ms,
        loss: p.loss,
        duplicate: p.duplicate,
        reorder: p.reorder,
        corrupt: p.corrupt,
        bandwidth_bps: p.bandwidth_bps,
    }
}

fn live_info(s: &SessionState) -> SessionInfo {
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let connections = s.world.connections();
    for conn in &connections {
        for end in [&conn.client, &conn.server].into_iter().flatten() {
            *states.entry(end.state.name().to_string()).or_default() += 1;
        }
    }
    SessionInfo {
        id: s.id,
        name: s.name.clone(),
        seed: s.seed,
        clock: s.clock,
        speed: s.speed,
        paused: s.paused,
        status: "live".into(),
        now_ns: s.world.now(),
        created_at: s.created_at.clone(),
        ended_at: None,
        profile: s.profile.clone(),
        hosts: s.world.hosts().count(),
        connections: connections.len(),
        states,
        events: s.world.next_event_seq() - 1,
    }
}

fn connection_info(s: &SessionState, cid: u64) -> Result<ConnectionInfo, Error> {
    let conn = s.world.connection(cid).ok_or_else(|| Error::not_found("connection", cid))?;
    let end = |side: Side| -> Option<EndInfo> {
        let e = conn.end(side)?;
        let tcb = s.world.status(cid, side).ok()?;
        Some(EndInfo { host: s.world.host_name(e.host).to_string(), side, tcb, received_bytes: e.received_total })
    };
    Ok(ConnectionInfo { id: cid, client: end(Side::Client), server: end(Side::Server) })
}

fn fault_info(s: &SessionState, fid: u64) -> Result<FaultInfo, Error> {
    let rule = s.world.faults().iter().find(|f| f.id == fid).ok_or_else(|| Error::not_found("fault", fid))?;
    let spec = &rule.spec;
    let m = &spec.matcher;
    Ok(FaultInfo {
        id: rule.id,
        from: spec.from.clone(),
        to: spec.to.clone(),
        matcher: FaultMatch {
            flags: m.flags,
            len: m.len,
            seq: m.seq,
            seq_range: m.seq_range.map(|(a, b)| [a, b]),
            ack: m.ack,
            src_port: m.src_port,
            dst_port: m.dst_port,
        },
        skip: spec.skip,
        count: spec.count,
        action: spec.action,
        delay_ms: spec.delay_ns as f64 / 1e6,
        matched: rule.matched,
        acted: rule.acted,
        held: rule.held_count() as u64,
    })
}

/// Ends realtime sessions idle for `limits.idle_timeout_s`: no API call
/// naming the session (reads included: anything that reaches its actor
/// through [`SessionHandle::call`]) and no open event stream for that long.
/// Manual sessions never expire (nothing runs in them unless told). An
/// expired session ends like `DELETE`: its actor stops, its last events are
/// flushed and it is stored as ended. Checked every second.
async fn expire_idle_sessions(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let limit = Duration::from_secs(inner.limits.idle_timeout_s);
        let idle: Vec<u64> = match inner.sessions.read() {
            Ok(sessions) => sessions
                .iter()
                .filter(|(_, h)| {
                    h.subscribers.load(Ordering::Relaxed) == 0
                        && h.last_used.lock().map(|t| t.elapsed() >= limit).unwrap_or(false)
                })
                .map(|(id, _)| *id)
                .collect(),
            Err(_) => Vec::new(),
        };
        let service = LabService { inner };
        for sid in idle {
            let realtime = match service.handle(sid) {
                Ok(h) => h.call_quietly(|s| Ok(s.clock == ClockMode::Realtime)).await.unwrap_or(false),
                Err(_) => false,
            };
            if realtime {
                tracing::info!(session = sid, "ending idle realtime session");
                let _ = service.end_session(sid).await;
            }
        }
    }
}
