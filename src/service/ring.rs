//! A session's event ring: the most recent events, shared by the session's
//! actor (the only writer, once per published batch) and its subscribers
//! (readers that copy a few hundred `Arc`s at a time), kept until SQLite
//! holds them and no subscriber still needs them. Apart from the actor so
//! that what a stream may read, and when an event may go, is one file.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::sim::Event;

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
    /// Appends a published batch (`newest` is its last seq), then lets go
    /// of what nobody needs any more.
    pub(super) fn append(&mut self, batch: Vec<Arc<LiveEvent>>, newest: u64) {
        self.events.extend(batch);
        self.next_seq = newest + 1;
        self.evict();
    }

    /// Registers a new subscriber's cursor; returns the first seq it will
    /// see live and a receiver of what SQLite holds.
    pub(super) fn add_reader(&mut self, cursor: &Arc<AtomicU64>) -> (u64, watch::Receiver<u64>) {
        self.cursors.retain(|c| c.strong_count() > 0);
        self.cursors.push(Arc::downgrade(cursor));
        // A lagged subscriber resuming now holds what it needs itself.
        self.resume_grace_until = None;
        (self.next_seq, self.durable.subscribe())
    }

    /// Events held now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    /// An empty ring whose next event is `next_seq`.
    pub(super) fn new(next_seq: u64, keep: usize, lag_limit: u64) -> Ring {
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
pub(super) struct RingPersisted(pub(super) std::sync::Weak<RwLock<Ring>>);

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
