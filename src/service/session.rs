//! One session as an actor: a task that owns the session's [`World`] and
//! runs jobs sent to it over a channel, one at a time, so nothing else ever
//! touches the world and one busy session never blocks another.
//!
//! After every job (and every realtime tick) the actor takes the world's new
//! events, serialises each once to JSON, keeps the most recent in a ring for
//! late subscribers, broadcasts them live and hands them to the store's writer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot};

use super::model::ClockMode;
use super::{Error, Limits};
use crate::engine::Profile;
use crate::sim::{Event, World};
use crate::store::{CommandRecord, EventRecord, StoreWriter};

/// A live receiver, the kept events after the requested seq, and the first
/// seq the ring still holds: taken together under the actor so that replay
/// and live never overlap nor leave a gap.
pub(crate) type Subscription = (broadcast::Receiver<Arc<LiveEvent>>, Vec<Arc<LiveEvent>>, u64);

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
}

impl LiveEvent {
    fn from_event(event: &Event) -> LiveEvent {
        LiveEvent {
            seq: event.seq,
            t_ns: event.t_ns,
            kind: event.kind.name(),
            connection: event.kind.connection(),
            body: serde_json::to_string(event).unwrap_or_else(|_| "{}".to_string()).into(),
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
    ring: VecDeque<Arc<LiveEvent>>,
    live: broadcast::Sender<Arc<LiveEvent>>,
    writer: StoreWriter,
    command_seq: i64,
    /// Wall instant and virtual time at which realtime last (re)started.
    anchor: Option<(Instant, u64)>,
    /// Open event streams of this session.
    pub(crate) subscribers: Arc<AtomicUsize>,
    /// Events published so far (shared with metrics).
    pub(crate) published: Arc<AtomicU64>,
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
        let (live, _) = broadcast::channel(limits.broadcast_capacity.max(16));
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
            ring: VecDeque::new(),
            live,
            writer,
            command_seq: 0,
            anchor,
            subscribers: Arc::new(AtomicUsize::new(0)),
            published: Arc::new(AtomicU64::new(0)),
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
        if events.is_empty() {
            return;
        }
        let mut records = Vec::with_capacity(events.len());
        for event in &events {
            let live = Arc::new(LiveEvent::from_event(event));
            records.push(EventRecord {
                session_id: self.id as i64,
                seq: live.seq as i64,
                t_ns: live.t_ns as i64,
                kind: live.kind,
                connection: live.connection.map(|c| c as i64),
                body: live.body.clone(),
            });
            if self.ring.len() >= self.limits.max_events_in_memory.max(1) {
                self.ring.pop_front();
            }
            self.ring.push_back(live.clone());
            let _ = self.live.send(live); // nobody listening is fine
        }
        self.published.fetch_add(events.len() as u64, Ordering::Relaxed);
        self.writer.events(records);
    }

    /// Subscribes to live events and returns, consistently with that
    /// subscription, the kept events after `after_seq` and the first seq
    /// the ring still holds.
    pub(crate) fn subscribe(&mut self, after_seq: u64) -> Result<Subscription, Error> {
        if self.subscribers.load(Ordering::Relaxed) >= self.limits.max_subscribers {
            return Err(Error::LimitExceeded {
                limit: "max_subscribers_per_session",
                max: self.limits.max_subscribers as u64,
            });
        }
        self.publish();
        let receiver = self.live.subscribe();
        let first_kept = self.ring.front().map_or(self.world.next_event_seq(), |e| e.seq);
        let kept = self.ring.iter().filter(|e| e.seq > after_seq).cloned().collect();
        Ok((receiver, kept, first_kept))
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
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |state| {
            let _ = tx.send(f(state));
        });
        self.jobs.send(job).await.map_err(|_| Error::FailedPrecondition("the session has ended".into()))?;
        rx.await.map_err(|_| Error::Internal("the session actor stopped while answering".into()))?
    }
}
