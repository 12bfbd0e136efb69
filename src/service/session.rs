//! One session as an actor: a task that owns the session's [`World`] and
//! runs jobs sent to it over a channel, one at a time, so nothing else ever
//! touches the world and one busy session never blocks another.
//!
//! After every job (and every realtime tick) the actor takes the world's new
//! events, serialises each once to JSON, appends them to a ring of the most
//! recent ones that every subscriber reads from (late or live: one cursor,
//! see [`super::stream`]), wakes the subscribers once per batch and hands the
//! events to the store's writer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::model::ClockMode;
use super::{Error, Limits};
use crate::engine::Profile;
use crate::sim::{Event, EventKind, World};
use crate::store::{CommandRecord, EventRecord, StoreWriter};

/// The session's most recent events, shared by the actor (the only writer,
/// once per published batch) and its subscribers (readers that copy a few
/// hundred `Arc`s at a time): no per-subscriber queue, nothing preallocated.
#[derive(Debug)]
pub(crate) struct Ring {
    events: VecDeque<Arc<LiveEvent>>,
    /// The seq the next published event will have.
    next_seq: u64,
    /// Each live subscriber's last delivered seq: events a subscriber has
    /// yet to read stay (up to the lag threshold), so that one that is a
    /// little behind reads them from memory, not from SQLite.
    cursors: Vec<std::sync::Weak<AtomicU64>>,
    /// How many events to keep at least, and how far a subscriber may fall
    /// behind (the session's `max_events_in_memory` and `broadcast_capacity`).
    keep: usize,
    lag_limit: u64,
    /// The newest seq SQLite holds (raised by the store writer, see
    /// [`RingPersisted`]): an event leaves the ring only once it is there, so
    /// a subscriber that fell behind the ring finds it in one place or the other.
    persisted: u64,
    /// Until when the events within the lag threshold stay although no
    /// subscriber holds them: one was just told it lagged, and its resume
    /// (a round trip away) should read them from memory, not from SQLite
    /// while the writer is busiest. The next subscription ends the grace.
    resume_grace_until: Option<Instant>,
}

/// How long the ring waits for a lagged subscriber to resume.
const RESUME_GRACE: Duration = Duration::from_secs(5);

impl Ring {
    /// An empty ring whose next event is `next_seq`.
    fn new(next_seq: u64, keep: usize, lag_limit: u64) -> Ring {
        Ring {
            events: VecDeque::new(),
            next_seq,
            cursors: Vec::new(),
            keep: keep.max(1),
            lag_limit,
            persisted: 0,
            resume_grace_until: None,
        }
    }

    /// `true` when [`Ring::evict`] may have something to drop.
    fn over(&self) -> bool {
        self.events.len() > self.keep && self.first_seq() <= self.persisted
    }

    /// Drops the oldest events while more than `keep` are held, SQLite has
    /// them and no live subscriber within the lag threshold still needs
    /// them. Those the writer has not committed yet stay (its queue holds
    /// their bodies anyway; the ring shares them), so a subscriber never
    /// waits on SQLite for an event still on its way there.
    pub(crate) fn evict(&mut self) {
        let needed_from = self.needed_from();
        let over = self.events.len().saturating_sub(self.keep);
        let persisted = self.persisted;
        let free = self.events.partition_point(|e| e.seq <= persisted && e.seq < needed_from);
        self.events.drain(..over.min(free));
    }

    /// Evicts when there may be something to drop: cheap under a read lock otherwise.
    pub(crate) fn trim(ring: &RwLock<Ring>) {
        if ring.read().unwrap_or_else(std::sync::PoisonError::into_inner).over() {
            ring.write().unwrap_or_else(std::sync::PoisonError::into_inner).evict();
        }
    }
    /// The oldest seq still held (`next_seq` when empty).
    pub(crate) fn first_seq(&self) -> u64 {
        self.events.front().map_or(self.next_seq, |e| e.seq)
    }

    /// The newest seq published (0 before any).
    pub(crate) fn newest_seq(&self) -> u64 {
        self.next_seq.saturating_sub(1)
    }

    /// A subscriber was told it lagged: keep what is within the lag
    /// threshold for [`RESUME_GRACE`], or until the next subscription. A
    /// timer trims the ring when the grace is over, in case the session has
    /// gone idle meanwhile (nothing else would).
    pub(crate) fn lagged(ring: &Arc<RwLock<Ring>>) {
        ring.write().unwrap_or_else(std::sync::PoisonError::into_inner).resume_grace_until =
            Some(Instant::now() + RESUME_GRACE);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let ring = Arc::downgrade(ring);
            runtime.spawn(async move {
                tokio::time::sleep(RESUME_GRACE + Duration::from_millis(10)).await;
                if let Some(ring) = ring.upgrade() {
                    Ring::trim(&ring);
                }
            });
        }
    }

    /// The oldest seq some live subscriber (or one expected to resume) still
    /// needs (`u64::MAX` when none does), never below `newest - lag_limit`: a
    /// subscriber further behind is told it lagged and reads the overshoot
    /// from SQLite anyway. Forgets ended subscribers and an expired grace.
    fn needed_from(&mut self) -> u64 {
        let mut min = u64::MAX;
        if let Some(until) = self.resume_grace_until {
            if Instant::now() < until {
                min = 0;
            } else {
                self.resume_grace_until = None;
            }
        }
        self.cursors.retain(|c| match c.upgrade() {
            Some(c) => {
                min = min.min(c.load(Ordering::Relaxed).saturating_add(1));
                true
            }
            None => false,
        });
        min.max(self.newest_seq().saturating_sub(self.lag_limit))
    }

    /// Appends up to `max` held events with a seq above `after` to `out`.
    pub(crate) fn copy_after(&self, after: u64, max: usize, out: &mut Vec<Arc<LiveEvent>>) {
        let from = self.events.partition_point(|e| e.seq <= after);
        out.extend(self.events.range(from..).take(max).cloned());
    }
}

/// The store writer's report of what SQLite holds, which lets the ring
/// drop what it kept for it, even while the session is idle.
struct RingPersisted(std::sync::Weak<RwLock<Ring>>);

impl crate::store::Persisted for RingPersisted {
    fn persisted_through(&self, seq: u64) {
        if let Some(ring) = self.0.upgrade() {
            {
                let mut r = ring.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                r.persisted = r.persisted.max(seq);
            }
            Ring::trim(&ring);
        }
    }
}

/// What a subscriber reads live events from, taken under the actor: the
/// ring, a channel that says "the ring has grown" (closed when the session
/// ends), and the first seq published after the subscription.
pub(crate) struct LiveFeed {
    pub ring: Arc<RwLock<Ring>>,
    pub changed: watch::Receiver<u64>,
    pub live_from: u64,
    /// The subscriber's last delivered seq, which it keeps current and the
    /// ring reads (see [`Ring::needed_from`]).
    pub cursor: Arc<AtomicU64>,
}

/// An event as it leaves the actor: numbered, timed, serialised once.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Position in the session's log (from 1, no gaps).
    pub seq: u64,
    /// Virtual time.
    pub t_ns: u64,
    /// The `kind` tag.
    pub kind: &'static str,
    /// The connection it concerns, if any.
    pub connection: Option<u64>,
    /// The whole event as JSON.
    pub body: Arc<str>,
    /// For `state_changed`, the transition, so that typed APIs need not
    /// parse `body`.
    pub state_change: Option<StateChangeSummary>,
}

/// A `state_changed` event's fields with fixed names (RFC 9293 state names).
#[derive(Debug, Clone)]
pub struct StateChangeSummary {
    /// The host whose end changed state.
    pub host: Arc<str>,
    /// `client` or `server`; `None` for a listener or an injected peer.
    pub side: Option<&'static str>,
    /// Old state.
    pub from: &'static str,
    /// New state.
    pub to: &'static str,
    /// The RFC 9293 section that prescribes the transition.
    pub rfc: Arc<str>,
}

impl StateChangeSummary {
    /// Reads the summary back from a stored event's JSON (replay from
    /// SQLite); `None` when the body is not a well-formed `state_changed`.
    pub fn from_json(body: &str) -> Option<StateChangeSummary> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let state =
            |key: &str| v[key].as_str().and_then(crate::engine::State::from_name).map(crate::engine::State::name);
        Some(StateChangeSummary {
            host: v["host"].as_str()?.into(),
            side: match v["side"].as_str() {
                Some("client") => Some("client"),
                Some("server") => Some("server"),
                _ => None,
            },
            from: state("from")?,
            to: state("to")?,
            rfc: v["rfc"].as_str().unwrap_or_default().into(),
        })
    }
}

impl LiveEvent {
    fn from_event(event: &Event) -> LiveEvent {
        LiveEvent {
            seq: event.seq,
            t_ns: event.t_ns,
            kind: event.kind.name(),
            connection: event.kind.connection(),
            body: serde_json::to_string(event).unwrap_or_else(|_| "{}".to_string()).into(),
            state_change: match &event.kind {
                EventKind::StateChanged { host, side, from, to, rfc, .. } => Some(StateChangeSummary {
                    host: host.clone(),
                    side: side.map(|s| s.name()),
                    from: from.name(),
                    to: to.name(),
                    rfc: (*rfc).into(),
                }),
                _ => None,
            },
        }
    }
}

/// A job for the actor.
pub(crate) type Job = Box<dyn FnOnce(&mut SessionState) + Send>;

/// Everything the actor owns.
pub struct SessionState {
    /// Session id.
    pub id: u64,
    /// Label.
    pub name: String,
    /// RNG seed.
    pub seed: u64,
    /// Clock mode.
    pub clock: ClockMode,
    /// Realtime speed factor.
    pub speed: f64,
    /// Realtime clock paused.
    pub paused: bool,
    /// Wall-clock creation time.
    pub created_at: String,
    /// The session's profile.
    pub profile: Profile,
    /// The simulated network.
    pub world: World,
    /// The configured limits.
    pub limits: Limits,
    ring: Arc<RwLock<Ring>>,
    /// The newest published seq, for subscribers to wait on.
    live: watch::Sender<u64>,
    writer: StoreWriter,
    /// Handed to the store writer with each batch (see [`RingPersisted`]).
    persisted: Arc<RingPersisted>,
    command_seq: i64,
    /// Wall instant and virtual time at which realtime last (re)started.
    anchor: Option<(Instant, u64)>,
    /// Open event streams of this session.
    pub(crate) subscribers: Arc<AtomicUsize>,
    /// Events published so far (shared with metrics).
    pub(crate) published: Arc<AtomicU64>,
    /// The server's segment fate counters (see [`crate::metrics`]).
    pub(crate) segment_fates: Arc<crate::metrics::SegmentFates>,
}

impl SessionState {
    /// A new session around a world.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        name: String,
        seed: u64,
        clock: ClockMode,
        speed: f64,
        created_at: String,
        profile: Profile,
        world: World,
        limits: Limits,
        writer: StoreWriter,
    ) -> SessionState {
        // Nothing counts as stored until the writer says so (a lab's set-up
        // events, numbered before the session starts, are published after).
        let ring = Ring::new(world.next_event_seq(), limits.max_events_in_memory, limits.broadcast_capacity as u64);
        let (live, _) = watch::channel(ring.newest_seq());
        let ring = Arc::new(RwLock::new(ring));
        let persisted = Arc::new(RingPersisted(Arc::downgrade(&ring)));
        let anchor = (clock == ClockMode::Realtime).then(|| (Instant::now(), 0));
        SessionState {
            id,
            name,
            seed,
            clock,
            speed,
            paused: false,
            created_at,
            profile,
            world,
            limits,
            ring,
            live,
            writer,
            persisted,
            command_seq: 0,
            anchor,
            subscribers: Arc::new(AtomicUsize::new(0)),
            published: Arc::new(AtomicU64::new(0)),
            segment_fates: Arc::default(),
        }
    }

    /// Records a user command (persisted in order with the session's events).
    pub fn record_command(&mut self, body: serde_json::Value) {
        self.command_seq += 1;
        self.writer.command(CommandRecord {
            session_id: self.id as i64,
            seq: self.command_seq,
            t_ns: self.world.now() as i64,
            body: body.to_string(),
        });
    }

    /// Takes the world's new events: serialise, keep, broadcast, persist.
    pub(crate) fn publish(&mut self) {
        let events = self.world.take_events();
        self.publish_taken(&events);
    }

    /// Publishes events that someone else already took from the world, in
    /// order and with no gap after the last published one: a lab run takes
    /// each step's events to check them (see [`crate::lab::LabRun::step`]),
    /// and hands them here so subscribers and the store see them all the same.
    pub(crate) fn publish_taken(&mut self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let mut records = Vec::with_capacity(events.len());
        let mut lives = Vec::with_capacity(events.len());
        for event in events {
            self.segment_fates.count(&event.kind);
            let live = Arc::new(LiveEvent::from_event(event));
            records.push(EventRecord {
                session_id: self.id as i64,
                seq: live.seq as i64,
                t_ns: live.t_ns as i64,
                kind: live.kind,
                connection: live.connection.map(|c| c as i64),
                body: live.body.clone(),
            });
            lives.push(live);
        }
        let newest = lives.last().map_or(0, |e| e.seq);
        {
            // One short write per batch; readers only ever hold it to copy `Arc`s.
            let mut ring = self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            ring.events.extend(lives);
            ring.next_seq = newest + 1;
            ring.evict();
        }
        self.live.send_replace(newest); // wakes every subscriber once; nobody listening is fine
        self.published.fetch_add(events.len() as u64, Ordering::Relaxed);
        self.writer.events_tracked(records, self.persisted.clone());
    }

    /// Events the ring holds now (for tests of what it keeps).
    #[cfg(test)]
    pub(crate) fn ring_len(&self) -> usize {
        self.ring.read().unwrap_or_else(std::sync::PoisonError::into_inner).events.len()
    }

    /// Subscribes to the session's events: the ring (kept and future ones)
    /// and the seq from which events count as live.
    pub(crate) fn subscribe(&mut self, after_seq: u64) -> Result<LiveFeed, Error> {
        if self.subscribers.load(Ordering::Relaxed) >= self.limits.max_subscribers {
            return Err(Error::LimitExceeded {
                limit: "max_subscribers_per_session",
                max: self.limits.max_subscribers as u64,
            });
        }
        self.publish();
        let cursor = Arc::new(AtomicU64::new(after_seq));
        let live_from = {
            let mut ring = self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            ring.cursors.retain(|c| c.strong_count() > 0);
            ring.cursors.push(Arc::downgrade(&cursor));
            // A lagged subscriber resuming now holds what it needs itself.
            ring.resume_grace_until = None;
            ring.next_seq
        };
        Ok(LiveFeed { ring: self.ring.clone(), changed: self.live.subscribe(), live_from, cursor })
    }

    /// `true` when realtime is running (not paused).
    pub(crate) fn realtime_running(&self) -> bool {
        self.clock == ClockMode::Realtime && !self.paused
    }

    /// Moves virtual time to where wall time says it should be.
    pub(crate) fn advance_realtime(&mut self) {
        if let Some((wall, virt)) = self.anchor {
            let elapsed = wall.elapsed().as_nanos() as f64 * self.speed;
            let target = virt.saturating_add(elapsed.min(u64::MAX as f64 / 2.0) as u64);
            if target > self.world.now() {
                self.world.run_until(target);
            }
        }
    }

    /// Re-anchors realtime at the current virtual time (after pause, resume,
    /// a speed change or a manual jump).
    pub(crate) fn reanchor(&mut self) {
        self.anchor = self.realtime_running().then(|| (Instant::now(), self.world.now()));
    }
}

/// Runs a job that keeps the actor's thread for long (a big
/// `run_until_idle`) with the rest of that worker's queue handed to another
/// thread meanwhile (`block_in_place`): the subscribers its publications
/// wake are queued on this very worker (tokio's LIFO slot, which no other
/// worker steals from), so they would otherwise start reading only once
/// the whole run is over, by which time a fast run has left them lagging.
/// On a current-thread runtime (tests) it just runs `f`.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread { tokio::task::block_in_place(f) } else { f() }
}

/// The actor's loop: jobs in order, realtime ticks in between, publish after each.
pub(crate) async fn run(mut state: SessionState, mut jobs: mpsc::Receiver<Job>) -> SessionState {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => job(&mut state),
                None => break,
            },
            _ = tick.tick(), if state.realtime_running() => state.advance_realtime(),
        }
        state.publish();
    }
    state.publish();
    state
}

/// A handle to a running session actor.
pub(crate) struct SessionHandle {
    pub jobs: mpsc::Sender<Job>,
    pub task: tokio::task::JoinHandle<SessionState>,
    /// Wall time of the last command, for idle expiry.
    pub last_used: Arc<std::sync::Mutex<Instant>>,
    pub subscribers: Arc<AtomicUsize>,
    pub published: Arc<AtomicU64>,
}

impl SessionHandle {
    /// Runs `f` on the actor and waits for its answer.
    pub(crate) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SessionState) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        if let Ok(mut last) = self.last_used.lock() {
            *last = Instant::now();
        }
        self.call_quietly(f).await
    }

    /// [`Self::call`] that does not count as use of the session: the idle
    /// reaper looks at a session without keeping it alive.
    pub(crate) async fn call_quietly<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SessionState) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |state| {
            let _ = tx.send(f(state));
        });
        self.jobs.send(job).await.map_err(|_| Error::FailedPrecondition("the session has ended".into()))?;
        rx.await.map_err(|_| Error::Internal("the session actor stopped while answering".into()))?
    }
}
