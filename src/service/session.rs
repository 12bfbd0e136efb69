//! One session as an actor: a task that owns the session's [`World`] and
//! runs jobs sent to it over a channel, one at a time, so nothing else ever
//! touches the world and one busy session never blocks another.
//!
//! After every job (and every realtime tick) the actor takes the world's new
//! events, serialises each once to JSON, appends them to a ring of the most
//! recent ones that every subscriber reads from (late or live: one cursor,
//! see [`super::stream`]), wakes the subscribers once per batch and hands the
//! events to the store's writer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::model::ClockMode;
pub use super::ring::LiveEvent;
use super::ring::{LiveFeed, Ring, RingPersisted};
use super::{Error, Limits};
use crate::engine::Profile;
use crate::sim::{Event, World};
use crate::store::{CommandRecord, EventRecord, StoreWriter};

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
            t_ns: self.world.now().as_nanos() as i64,
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
            ring.append(lives, newest);
        }
        self.live.send_replace(newest); // wakes every subscriber once; nobody listening is fine
        self.published.fetch_add(published, Ordering::Relaxed);
        self.writer.events_tracked(records, self.persisted.clone());
    }

    /// Events the ring holds now (for tests of what it keeps).
    #[cfg(test)]
    pub(crate) fn ring_len(&self) -> usize {
        self.ring.read().unwrap_or_else(std::sync::PoisonError::into_inner).len()
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
            ring.add_reader(&cursor)
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
            if target > self.world.now().as_nanos() {
                self.world.run_until_bounded(crate::time::Instant::from_nanos(target), STEPS_PER_TURN);
            }
        }
    }

    /// Re-anchors realtime at the current virtual time (after pause, resume,
    /// a speed change or a manual jump).
    pub(crate) fn reanchor(&mut self) {
        self.anchor = self.realtime_running().then(|| (Instant::now(), self.world.now().as_nanos()));
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
