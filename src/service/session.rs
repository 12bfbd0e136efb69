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
use crate::sim::{Event, World};
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
    /// `persisted`, for subscribers that deliver committed events only.
    durable: watch::Sender<u64>,
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
            durable: watch::channel(0).0,
        }
    }

    /// The newest seq SQLite holds (see [`Ring::persisted`]).
    pub(crate) fn persisted(&self) -> u64 {
        self.persisted
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
        if self.evict_and_shrink() {
            crate::memory::give_back_free_memory_soon();
        }
    }

    /// [`Ring::evict`]; `true` when it shrank back after holding many events.
    fn evict_and_shrink(&mut self) -> bool {
        let needed_from = self.needed_from();
        let over = self.events.len().saturating_sub(self.keep);
        let persisted = self.persisted;
        let free = self.events.partition_point(|e| e.seq() <= persisted && e.seq() < needed_from);
        self.events.drain(..over.min(free));
        // Back to its usual size after a burst held many events for a while
        // (a subscriber behind, the writer behind), and the memory back to the system.
        if self.events.capacity() > 4 * self.keep.max(self.events.len()).max(16_384) {
            self.events.shrink_to(2 * self.keep.max(self.events.len()));
            return true;
        }
        false
    }

    /// Evicts when there may be something to drop: cheap under a read lock otherwise.
    pub(crate) fn trim(ring: &RwLock<Ring>) {
        if ring.read().unwrap_or_else(std::sync::PoisonError::into_inner).over() {
            ring.write().unwrap_or_else(std::sync::PoisonError::into_inner).evict();
        }
    }
    /// The oldest seq still held (`next_seq` when empty).
    pub(crate) fn first_seq(&self) -> u64 {
        self.events.front().map_or(self.next_seq, |e| e.seq())
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
        let from = self.events.partition_point(|e| e.seq() <= after);
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
                let persisted = r.persisted;
                r.durable.send_if_modified(|d| std::mem::replace(d, persisted) != persisted);
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
    /// Changes when SQLite holds more of the session's events.
    pub durable: watch::Receiver<u64>,
}

/// An event as it leaves the actor: the typed event, and its JSON made once
/// (the stored row, the SSE `data`, gRPC's `json`). A replayed event is read
/// back from that JSON into the same type.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// The event.
    pub event: Event,
    /// The event as JSON, as stored and as REST returns it.
    pub body: Arc<str>,
}

impl LiveEvent {
    /// A new event of the world, serialised once.
    pub fn new(event: Event) -> LiveEvent {
        // An event always serialises (no maps with non-string keys, no floats that are not finite).
        let body = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_string()).into();
        LiveEvent { event, body }
    }

    /// An event read back from its stored JSON.
    ///
    /// # Errors
    /// The JSON is not an event (a row no version of tcplab wrote).
    pub fn stored(body: String) -> Result<LiveEvent, serde_json::Error> {
        let event = serde_json::from_str(&body)?;
        Ok(LiveEvent { event, body: body.into() })
    }

    /// Its position in the session's log (from 1, no gaps).
    pub fn seq(&self) -> u64 {
        self.event.seq
    }

    /// Its `kind` tag (`state_changed`, `segment_sent`, ...).
    pub fn kind(&self) -> &'static str {
        self.event.kind.name()
    }

    /// The connection it concerns, if any.
    pub fn connection(&self) -> Option<u64> {
        self.event.kind.connection()
    }
}

/// What a job tells the actor after one turn.
pub(crate) enum Turn {
    /// Finished (it has answered its caller).
    Done,
    /// More to do: the actor publishes what the turn produced, waits for room
    /// in the store's queue, lets other tasks and this session's reads run,
    /// then calls the job again. No other command runs in between.
    Again,
}

/// A job for the actor: called until it returns [`Turn::Done`].
pub(crate) type Job = Box<dyn FnMut(&mut SessionState) -> Turn + Send>;

/// World steps a job should take per turn: about a millisecond of work, so
/// that a long run never keeps a runtime worker from its other tasks (other
/// sessions, `/healthz`) for longer than that.
pub(crate) const STEPS_PER_TURN: u64 = 4096;

/// How long a long run waits for room in the store's queue before it stops
/// at the limit `max_pending_events` (the store is failing or far behind).
pub(crate) const ROOM_WAIT: Duration = Duration::from_secs(30);

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
    /// Set when a long run waited [`ROOM_WAIT`] for room in the store's
    /// queue in vain: the run stops at `max_pending_events` on its next turn
    /// (and clears it).
    pub(crate) backlogged: bool,
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
            backlogged: false,
        }
    }

    /// Records a user command (persisted in order with the session's events).
    pub fn record_command(&mut self, command: super::command::Command) {
        self.command_seq += 1;
        self.writer.command(CommandRecord {
            session_id: self.id as i64,
            seq: self.command_seq,
            t_ns: self.world.now() as i64,
            body: serde_json::to_string(&command).unwrap_or_else(|_| "{}".to_string()),
        });
    }

    /// Takes the world's new events: serialise, keep, broadcast, persist.
    pub(crate) fn publish(&mut self) {
        let events = self.world.take_events();
        self.publish_taken(events);
    }

    /// Publishes events that someone else already took from the world, in
    /// order and with no gap after the last published one: a lab run takes
    /// each step's events to check them (see [`crate::lab::LabRun::step`]),
    /// and hands them here so subscribers and the store see them all the same.
    pub(crate) fn publish_taken(&mut self, events: impl IntoIterator<Item = Event>) {
        let events = events.into_iter();
        let mut records = Vec::with_capacity(events.size_hint().0);
        let mut lives = Vec::with_capacity(events.size_hint().0);
        for event in events {
            self.segment_fates.count(&event.kind);
            let live = Arc::new(LiveEvent::new(event));
            records.push(EventRecord {
                session_id: self.id as i64,
                seq: live.seq() as i64,
                t_ns: live.event.t_ns as i64,
                kind: live.kind(),
                connection: live.connection().map(|c| c as i64),
                body: live.body.clone(),
            });
            lives.push(live);
        }
        let Some(newest) = lives.last().map(|e| e.seq()) else { return };
        let published;
        {
            // One short write per batch; readers only ever hold it to copy `Arc`s.
            let mut ring = self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            published = lives.len() as u64;
            ring.events.extend(lives);
            ring.next_seq = newest + 1;
            ring.evict();
        }
        self.live.send_replace(newest); // wakes every subscriber once; nobody listening is fine
        self.published.fetch_add(published, Ordering::Relaxed);
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
            return Err(Error::LimitExceeded { limit: "max_subscribers", max: self.limits.max_subscribers as u64 });
        }
        self.publish();
        let cursor = Arc::new(AtomicU64::new(after_seq));
        let live_from = {
            let mut ring = self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            ring.cursors.retain(|c| c.strong_count() > 0);
            ring.cursors.push(Arc::downgrade(&cursor));
            // A lagged subscriber resuming now holds what it needs itself.
            ring.resume_grace_until = None;
            (ring.next_seq, ring.durable.subscribe())
        };
        let (live_from, durable) = live_from;
        Ok(LiveFeed { ring: self.ring.clone(), changed: self.live.subscribe(), live_from, cursor, durable })
    }

    /// `true` when realtime is running (not paused).
    pub(crate) fn realtime_running(&self) -> bool {
        self.clock == ClockMode::Realtime && !self.paused
    }

    /// Moves virtual time towards where wall time says it should be, by at
    /// most [`STEPS_PER_TURN`] items per tick: a world busier than that falls
    /// behind wall time rather than keep the thread, and catches up on
    /// later ticks. Nothing moves while the store's queue is full.
    pub(crate) fn advance_realtime(&mut self) {
        if self.writer.pending() > self.limits.max_pending_events as u64 {
            return;
        }
        if let Some((wall, virt)) = self.anchor {
            let elapsed = wall.elapsed().as_nanos() as f64 * self.speed;
            let target = virt.saturating_add(elapsed.min(u64::MAX as f64 / 2.0) as u64);
            if target > self.world.now() {
                self.world.run_until_bounded(target, STEPS_PER_TURN);
            }
        }
    }

    /// Re-anchors realtime at the current virtual time (after pause, resume,
    /// a speed change or a manual jump).
    pub(crate) fn reanchor(&mut self) {
        self.anchor = self.realtime_running().then(|| (Instant::now(), self.world.now()));
    }
}

/// The actor's loop: reads first (between turns of a long command too),
/// commands in order, realtime ticks in between, publish after each.
pub(crate) async fn run(
    mut state: SessionState,
    mut commands: mpsc::Receiver<Job>,
    mut reads: mpsc::Receiver<Job>,
) -> SessionState {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut reads_open = true;
    loop {
        // Not biased: a steady stream of reads must not keep commands and
        // the realtime clock waiting.
        tokio::select! {
            read = reads.recv(), if reads_open => match read {
                Some(job) => finish(&mut state, job),
                None => reads_open = false,
            },
            job = commands.recv() => match job {
                Some(job) => drive(&mut state, job, &mut reads).await,
                None => break,
            },
            _ = tick.tick(), if state.realtime_running() => state.advance_realtime(),
        }
        state.publish();
    }
    state.publish();
    state
}

/// Runs a job to its end without yielding (reads: one turn).
fn finish(state: &mut SessionState, mut job: Job) {
    while let Turn::Again = job(state) {
        state.publish();
    }
}

/// Runs a command turn by turn: between two turns its events are published,
/// the store's queue is given time to make room (`max_pending_events`), the
/// runtime runs other tasks, and this session's reads are answered.
async fn drive(state: &mut SessionState, mut job: Job, reads: &mut mpsc::Receiver<Job>) {
    while let Turn::Again = job(state) {
        state.publish();
        wait_for_room(state, reads).await;
        tokio::task::yield_now().await;
        // Reads queued meanwhile, but only those: a flood of reads cannot stall the command.
        for _ in 0..reads.len() {
            match reads.try_recv() {
                Ok(read) => finish(state, read),
                Err(_) => break,
            }
        }
        state.publish();
    }
}

/// Waits while the store's queue holds more than `max_pending_events` rows,
/// answering reads meanwhile; after [`ROOM_WAIT`] in vain, marks the session
/// [`SessionState::backlogged`].
async fn wait_for_room(state: &mut SessionState, reads: &mut mpsc::Receiver<Job>) {
    let max = state.limits.max_pending_events as u64;
    let writer = state.writer.clone();
    if writer.pending() <= max {
        return;
    }
    let deadline = tokio::time::Instant::now() + ROOM_WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::select! {
            biased;
            room = writer.wait_for_room(max, left) => {
                if !room {
                    state.backlogged = true;
                }
                return;
            }
            Some(read) = reads.recv() => {
                finish(state, read);
                state.publish();
            }
        }
    }
}

/// A handle to a running session actor.
pub(crate) struct SessionHandle {
    /// Commands, run one after another (each to its end).
    pub commands: mpsc::Sender<Job>,
    /// Reads, answered before queued commands and between the turns of a long one.
    pub reads: mpsc::Sender<Job>,
    pub task: tokio::task::JoinHandle<SessionState>,
    /// Wall time of the last command, for idle expiry.
    pub last_used: Arc<std::sync::Mutex<Instant>>,
    pub subscribers: Arc<AtomicUsize>,
    pub published: Arc<AtomicU64>,
}

impl SessionHandle {
    fn touch(&self) {
        if let Ok(mut last) = self.last_used.lock() {
            *last = Instant::now();
        }
    }

    /// Runs `f` on the actor as a read and waits for its answer: it runs
    /// before queued commands and between the turns of a long one, so it
    /// may see a run part-way (at the virtual time it has reached).
    pub(crate) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SessionState) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        self.touch();
        self.call_quietly(f).await
    }

    /// [`Self::call`] that does not count as use of the session: the idle
    /// reaper looks at a session without keeping it alive.
    pub(crate) async fn call_quietly<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SessionState) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        Self::send(&self.reads, once(f)).await
    }

    /// Runs `f` on the actor as a command, after the commands sent before it.
    pub(crate) async fn command<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SessionState) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        self.touch();
        Self::send(&self.commands, once(f)).await
    }

    /// Runs a command in turns: `f` is called again after each
    /// `Poll::Pending` (see [`Turn::Again`]) until it is `Poll::Ready`. It
    /// must bound the work of one turn ([`STEPS_PER_TURN`]) and of all of
    /// them (the request's budget).
    pub(crate) async fn command_in_turns<R: Send + 'static>(
        &self,
        f: impl FnMut(&mut SessionState) -> std::task::Poll<Result<R, Error>> + Send + 'static,
    ) -> Result<R, Error> {
        self.touch();
        Self::send(&self.commands, in_turns(f)).await
    }

    async fn send<R>(
        queue: &mpsc::Sender<Job>,
        (job, rx): (Job, oneshot::Receiver<Result<R, Error>>),
    ) -> Result<R, Error> {
        queue.send(job).await.map_err(|_| Error::FailedPrecondition("the session has ended".into()))?;
        rx.await.map_err(|_| Error::Internal("the session actor stopped while answering".into()))?
    }
}

/// A one-turn job answering on the returned channel.
fn once<R: Send + 'static>(
    f: impl FnOnce(&mut SessionState) -> Result<R, Error> + Send + 'static,
) -> (Job, oneshot::Receiver<Result<R, Error>>) {
    let mut f = Some(f);
    in_turns(move |state| match f.take() {
        Some(f) => std::task::Poll::Ready(f(state)),
        None => std::task::Poll::Ready(Err(Error::Internal("a job ran twice".into()))),
    })
}

/// A job of several turns answering on the returned channel once done.
fn in_turns<R: Send + 'static>(
    mut f: impl FnMut(&mut SessionState) -> std::task::Poll<Result<R, Error>> + Send + 'static,
) -> (Job, oneshot::Receiver<Result<R, Error>>) {
    let (tx, rx) = oneshot::channel();
    let mut tx = Some(tx);
    let mut turns = 0u64;
    let job: Job = Box::new(move |state| {
        turns += 1;
        // A run whose caller has gone (the client left) stops at a turn's
        // end instead of spending the rest of its budget for nobody.
        if turns > 1 && tx.as_ref().is_none_or(oneshot::Sender::is_closed) {
            return Turn::Done;
        }
        match f(state) {
            std::task::Poll::Pending => Turn::Again,
            std::task::Poll::Ready(result) => {
                // What the job did is published before its caller hears it is done.
                state.publish();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(result); // the caller may have gone
                }
                Turn::Done
            }
        }
    });
    (job, rx)
}
