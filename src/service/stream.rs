//! Event streams: stored events after a given `seq`, then live ones, with no
//! gap and no duplicate, filtered by kind and connection. A subscriber that
//! falls too far behind is told it lagged (with the last `seq` it got, so it
//! can resume) instead of ever slowing the session down.
//!
//! A subscription is one cursor (the last `seq` delivered or skipped) read
//! by whoever polls it (the gRPC or SSE response body), in batches: events
//! the session's ring no longer holds come from SQLite, the rest straight
//! from the ring, so the switch from replay to live is the same cursor moving
//! on and can neither skip nor repeat an event. There is no per-subscriber
//! task or queue; the session wakes subscribers once per published batch.
//!
//! A subscriber may ask ([`Subscription::with_caught_up`]) to be told where
//! the replay ends: one [`StreamItem::CaughtUp`] once the cursor has passed
//! every event the session had when the subscription was opened.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

use super::ring::{LiveFeed, Ring};

use super::LiveEvent;
use crate::store::{EventFilter, EventRow, Store, StoreWriter};

/// What a stream yields.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// The next event.
    Event {
        /// The event.
        event: Arc<LiveEvent>,
        /// Whether SQLite held it when it was handed over: a durable event
        /// survives a crash of the server; one that is not may be missing
        /// from the stored history after a SIGKILL (which stays a gap-free
        /// prefix of what was streamed).
        durable: bool,
    },
    /// Every event the session had when the subscription was opened has been
    /// handed over (or skipped by the filter): what follows is live. Sent
    /// once, and only to a subscription opened [`Subscription::with_caught_up`];
    /// for an ended session, right before [`StreamItem::End`].
    CaughtUp {
        /// The last `seq` delivered (or skipped by the filter).
        last_seq: u64,
    },
    /// The subscriber fell behind the live broadcast; the stream ends here.
    /// Resume with `after_seq = last_seq`.
    Lagged {
        /// The last `seq` delivered (or skipped by the filter).
        last_seq: u64,
    },
    /// The session has ended and everything after the start was handed
    /// over: the stream ends here, and nothing will ever follow `last_seq`.
    /// (A stream that stops for any other reason, such as a store failure,
    /// ends without it, so a client knows to reconnect.)
    End {
        /// The session's last event.
        last_seq: u64,
    },
}

/// An open stream: call [`Subscription::next_batch`] until `None` (session
/// ended, or after a [`StreamItem::Lagged`]).
pub struct Subscription {
    store: Store,
    writer: StoreWriter,
    sid: u64,
    /// The last seq delivered or skipped by the filter.
    last: u64,
    filter: StreamFilter,
    live: Option<Live>,
    /// SQLite lacked the next event once already: flush the writer before
    /// reading it again, and end the stream if it still lacks it.
    store_missed: bool,
    /// A [`StreamItem::CaughtUp`] is still to be sent.
    caught_up_pending: bool,
    done: bool,
    _guard: Option<SubscriberGuard>,
}

/// Which events a stream delivers, and when.
#[derive(Clone, Debug, Default)]
pub(super) struct StreamFilter {
    /// Only these kinds (all when empty).
    pub kinds: Vec<String>,
    /// Only this connection's events.
    pub connection: Option<u64>,
    /// Deliver an event only once SQLite holds it (`?durable=true`).
    pub durable_only: bool,
}

/// The live part of a subscription to a running session.
struct Live {
    ring: Arc<RwLock<Ring>>,
    changed: watch::Receiver<u64>,
    /// The first seq published after the subscription was opened.
    live_from: u64,
    /// How far behind the newest event the cursor may fall, once past
    /// `live_from`, before the subscriber is told it lagged.
    lag_limit: u64,
    /// `last`, shared with the ring so that it keeps what this subscriber
    /// has yet to read.
    cursor: Arc<AtomicU64>,
    /// Changes as SQLite commits the session's events.
    durable: watch::Receiver<u64>,
    /// The session has ended: what the ring holds is all there will be.
    ended: bool,
}

/// What the cursor does next.
enum Next {
    /// Events, and the newest seq SQLite held when they were taken.
    Events(Vec<Arc<LiveEvent>>, u64),
    Lagged,
    FromStore,
    Wait,
}

/// Events taken from the ring (or one SQLite page) per batch.
const BATCH: usize = 256;

impl Subscription {
    /// Asks for one [`StreamItem::CaughtUp`] after the replayed part: the
    /// events numbered below the first one published after the subscription
    /// was opened (all of them, for an ended session). Opt-in, because SSE
    /// has no message for it.
    #[must_use]
    pub fn with_caught_up(mut self) -> Subscription {
        self.caught_up_pending = true;
        self
    }

    /// The first seq that is live rather than replayed, while a
    /// [`StreamItem::CaughtUp`] is still to be sent to a live session's
    /// subscriber; `None` otherwise.
    fn replay_ends_before(&self) -> Option<u64> {
        self.live.as_ref().filter(|_| self.caught_up_pending).map(|live| live.live_from)
    }

    /// `items` after a [`StreamItem::CaughtUp`], if one is still to be sent
    /// (the stream is about to end: the whole history was the replay).
    fn caught_up_then(&mut self, items: Vec<StreamItem>) -> Vec<StreamItem> {
        if !std::mem::take(&mut self.caught_up_pending) {
            return items;
        }
        let mut all = vec![StreamItem::CaughtUp { last_seq: self.last }];
        all.extend(items);
        all
    }

    /// The next items in `seq` order (never an empty batch): events, one
    /// [`StreamItem::CaughtUp`] if asked for, or a final [`StreamItem::Lagged`]
    /// or [`StreamItem::End`]; `None` once the stream has ended.
    pub async fn next_batch(&mut self) -> Option<Vec<StreamItem>> {
        while !self.done {
            if self.replay_ends_before().is_some_and(|live_from| self.last.saturating_add(1) >= live_from) {
                self.caught_up_pending = false;
                return Some(vec![StreamItem::CaughtUp { last_seq: self.last }]);
            }
            let next = match &self.live {
                Some(live) => {
                    live.cursor.store(self.last, Ordering::Relaxed);
                    live.next(self.last, self.filter.durable_only)
                }
                None => Next::FromStore,
            };
            match next {
                Next::Events(mut events, persisted) => {
                    self.store_missed = false;
                    if let Some(live_from) = self.replay_ends_before() {
                        // The marker goes between the last replayed event and
                        // the first live one; the rest stays in the ring for
                        // the next batch (the cursor keeps it).
                        let replayed = events.iter().take_while(|e| e.seq() < live_from).count();
                        if replayed > 0 {
                            events.truncate(replayed);
                        }
                    }
                    self.last = events.last().map_or(self.last, |e| e.seq());
                    if let Some(live) = &self.live {
                        live.read_through(self.last);
                    }
                    let items: Vec<_> = events
                        .into_iter()
                        .filter(|e| self.wanted(e))
                        .map(|event| StreamItem::Event { durable: event.seq() <= persisted, event })
                        .collect();
                    if !items.is_empty() {
                        return Some(items);
                    }
                }
                Next::Lagged => {
                    self.done = true;
                    // Its cursor goes (the ring no longer keeps anything for this
                    // subscription); what is within the threshold waits a while
                    // for the resume instead.
                    if let Some(live) = self.live.take() {
                        Ring::lagged(&live.ring);
                    }
                    return Some(vec![StreamItem::Lagged { last_seq: self.last }]);
                }
                Next::FromStore => {
                    let items = self.read_store().await;
                    if let Some(live) = &self.live {
                        live.read_through(self.last);
                    }
                    if items.is_some() {
                        return items;
                    }
                }
                Next::Wait => {
                    let durable_only = self.filter.durable_only;
                    let live = self.live.as_mut()?;
                    if live.ended {
                        // The session ended and the ring has nothing more for
                        // us. A durable stream that could not be handed all of
                        // it (the writer still holds rows it could not commit)
                        // ends without `End`, so that its client comes back.
                        self.done = true;
                        let ring = live.ring.read().unwrap_or_else(PoisonError::into_inner);
                        let all_handed_over = !durable_only || ring.persisted() >= ring.newest_seq();
                        drop(ring);
                        let end = vec![StreamItem::End { last_seq: self.last }];
                        return all_handed_over.then(|| self.caught_up_then(end));
                    }
                    let ended = if durable_only {
                        tokio::select! {
                            _ = live.durable.changed() => false,
                            changed = live.changed.changed() => changed.is_err(),
                        }
                    } else {
                        live.changed.changed().await.is_err()
                    };
                    if ended {
                        // Deliver what the ring still has (once SQLite holds
                        // it, for a durable stream: what the writer could not
                        // commit is not delivered), then end.
                        live.ended = true;
                        if durable_only && self.writer.flush().await.is_err() {
                            // What SQLite lacks cannot be handed over: stop
                            // without `End` (the client reconnects later).
                            self.done = true;
                            return None;
                        }
                    }
                }
            }
        }
        None
    }

    /// The stream as items one at a time (batches flattened).
    pub fn into_stream(self) -> impl futures::Stream<Item = StreamItem> + Send + 'static {
        use futures::StreamExt as _;
        futures::stream::unfold(self, |mut sub| async move { sub.next_batch().await.map(|batch| (batch, sub)) })
            .flat_map(futures::stream::iter)
    }

    fn wanted(&self, e: &LiveEvent) -> bool {
        let f = &self.filter;
        (f.kinds.is_empty() || f.kinds.iter().any(|k| k == e.kind()))
            && f.connection.is_none_or(|c| e.connection() == Some(c))
    }

    /// One page of what only SQLite still has; `None` when the page had
    /// none the filter wants. No flush first: the ring lets an event go only
    /// once the writer has committed it, so what is older than the ring is
    /// in SQLite already (waiting for the writer to commit everything newer
    /// would cost a resuming subscriber the writer's whole backlog). If the
    /// next event is missing all the same (the writer refused it), one flush
    /// decides; the stream ends rather than skip it.
    async fn read_store(&mut self) -> Option<Vec<StreamItem>> {
        if self.store_missed && self.writer.flush().await.is_err() {
            self.done = true;
            return None;
        }
        let filter = EventFilter {
            after_seq: self.last.min(i64::MAX as u64) as i64,
            limit: BATCH as i64 * 4,
            kinds: Vec::new(), // filter in one place (`wanted`), so `last` tracks every seq
            connection: None,
        };
        // A running session's log has no gaps: a page that does not begin
        // with the next event lacks it (the writer refused it), as an empty
        // page does.
        let next = self.last.saturating_add(1);
        let complete = |rows: &[EventRow]| rows.first().is_some_and(|r| self.live.is_none() || r.seq as u64 == next);
        let rows = match self.store.events(self.sid as i64, &filter).await {
            Ok(rows) if complete(&rows) => rows,
            // An ended session's history has been read to its end. (A
            // session being ended right now is already out of the live table
            // but may not be all in SQLite, nor marked ended: then the stream
            // stops without `End`, and the client's reconnection reads the rest.)
            Ok(rows) if rows.is_empty() && self.live.is_none() => {
                self.done = true;
                let ended =
                    matches!(self.store.get_session(self.sid as i64).await, Ok(Some(row)) if row.status != "live");
                let end = vec![StreamItem::End { last_seq: self.last }];
                return ended.then(|| self.caught_up_then(end));
            }
            Ok(_) if self.live.is_some() && !self.store_missed => {
                self.store_missed = true;
                return None;
            }
            _ => {
                self.done = true;
                return None;
            }
        };
        self.store_missed = false;
        let replay_ends_before = self.replay_ends_before();
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            if replay_ends_before.is_some_and(|live_from| row.seq as u64 >= live_from) {
                // Live already: after the caught-up marker (the next batch reads it again).
                break;
            }
            let (sid, seq) = (self.sid, row.seq);
            let event = match LiveEvent::stored(row.body) {
                Ok(event) => event,
                Err(error) => {
                    // Not an event: the stream stops (without `End`) rather than skip it.
                    tracing::error!(session = sid, seq, %error, "a stored event does not read back");
                    self.done = true;
                    break;
                }
            };
            if event.seq() <= self.last {
                continue;
            }
            self.last = event.seq();
            if self.wanted(&event) {
                items.push(StreamItem::Event { event: Arc::new(event), durable: true });
            }
        }
        (!items.is_empty()).then_some(items)
    }
}

impl Live {
    /// What is handed over up to `last` counts as read as far as the ring
    /// is concerned: what nobody else needs can go now.
    fn read_through(&self, last: u64) {
        self.cursor.store(last, Ordering::Relaxed);
        Ring::trim(&self.ring);
    }

    /// What a cursor at `last` does next; a durable-only cursor sees no
    /// further than what SQLite holds, and lags only behind that.
    fn next(&self, last: u64, durable_only: bool) -> Next {
        let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
        let persisted = ring.persisted();
        let newest = if durable_only { persisted.min(ring.newest_seq()) } else { ring.newest_seq() };
        let behind = newest.saturating_sub(last.max(self.live_from.saturating_sub(1)));
        if behind > self.lag_limit {
            return Next::Lagged;
        }
        if last.saturating_add(1) < ring.first_seq() {
            // Older than the ring: SQLite has it (after a flush). A cursor
            // that is merely older than a small ring is not lagging; only
            // `lag_limit` above decides that, so whether the writer had
            // caught up when the ring moved on cannot make it lag.
            return Next::FromStore;
        }
        let mut events = Vec::new();
        ring.copy_after(last, BATCH, &mut events);
        if durable_only {
            events.retain(|e| e.seq() <= persisted);
        }
        if events.is_empty() { Next::Wait } else { Next::Events(events, persisted) }
    }
}

/// Counts a stream among the session's subscribers while it lives.
struct SubscriberGuard(Arc<AtomicUsize>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) fn open(
    store: Store,
    writer: StoreWriter,
    sid: u64,
    after_seq: u64,
    filter: StreamFilter,
    live: Option<(LiveFeed, Arc<AtomicUsize>, usize)>,
) -> Subscription {
    let mut guard = None;
    let live = live.map(|(feed, subscribers, lag_limit)| {
        subscribers.fetch_add(1, Ordering::Relaxed);
        guard = Some(SubscriberGuard(subscribers));
        let LiveFeed { ring, changed, live_from, cursor, durable } = feed;
        Live { ring, changed, live_from, lag_limit: lag_limit as u64, cursor, durable, ended: false }
    });
    Subscription {
        store,
        writer,
        sid,
        last: after_seq,
        filter,
        live,
        store_missed: false,
        caught_up_pending: false,
        done: false,
        _guard: guard,
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    use super::StreamItem;
    use crate::service::{LabService, Limits, Subscription};
    use crate::store::Store;

    fn req<T: DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).expect("a valid request")
    }

    /// A manual-clock session with an established connection from A to B:80.
    async fn session(limits: Limits) -> (LabService, u64, u64, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("lab.db")).await.expect("store");
        let svc = LabService::new(store, limits).await.expect("service");
        let sid = svc.create_session(req(json!({"clock": "manual"}))).await.expect("session").id;
        for (name, ip) in [("A", "10.0.0.1"), ("B", "10.0.0.2")] {
            svc.add_host(sid, req(json!({"name": name, "ip": ip}))).await.expect("host");
        }
        svc.add_listener(sid, req(json!({"host": "B", "port": 80}))).await.expect("listener");
        let cid =
            svc.open_connection(sid, req(json!({"client": "A", "server": "B", "port": 80}))).await.expect("open").id;
        run(&svc, sid).await;
        (svc, sid, cid, dir)
    }

    async fn run(svc: &LabService, sid: u64) {
        svc.clock(sid, req(json!({"action": "run_until_idle"}))).await.expect("run");
    }

    /// Sends `n` octets from the client and runs until idle: a few events per 536 octets.
    async fn transfer(svc: &LabService, sid: u64, cid: u64, n: usize) {
        svc.send(sid, cid, req(json!({"side": "client", "data": "x".repeat(n)}))).await.expect("send");
        run(svc, sid).await;
    }

    async fn events(svc: &LabService, sid: u64) -> u64 {
        svc.get_session(sid).await.expect("session").events
    }

    /// Reads until the event numbered `until`, checking every seq follows the
    /// previous one; returns the last seq read (`Err` with it on `Lagged`).
    async fn read(sub: &mut Subscription, mut last: u64, until: u64) -> Result<u64, u64> {
        while last < until {
            let batch = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next_batch())
                .await
                .expect("in time")
                .expect("the stream goes on");
            assert!(!batch.is_empty());
            for item in batch {
                match item {
                    StreamItem::Event { event: e, .. } => {
                        assert_eq!(e.seq(), last + 1, "gap or duplicate");
                        last = e.seq();
                    }
                    StreamItem::Lagged { last_seq } => {
                        assert_eq!(last_seq, last);
                        return Err(last);
                    }
                    StreamItem::End { last_seq } => panic!("the session ended at {last_seq}, before {until}"),
                    StreamItem::CaughtUp { .. } => panic!("a caught-up marker nobody asked for"),
                }
            }
        }
        Ok(last)
    }

    /// Some events only SQLite still has, some the ring has, then live ones
    /// published while the subscriber reads: one run of seqs.
    #[tokio::test]
    async fn store_then_ring_then_live_without_gap_or_duplicate() {
        let limits = Limits { max_events_in_memory: 40, ..Limits::default() };
        let (svc, sid, cid, _dir) = session(limits).await;
        transfer(&svc, sid, cid, 100_000).await;
        let stored = events(&svc, sid).await;
        assert!(stored > 100, "{stored}");
        let mut sub = svc.subscribe(sid, 3, None, None, false).await.expect("subscribe");
        let last = read(&mut sub, 3, stored - 10).await.expect("no lag");
        // Live while the cursor is still in the ring's (moving) past.
        for _ in 0..5 {
            transfer(&svc, sid, cid, 20_000).await;
        }
        let total = events(&svc, sid).await;
        assert!(total > stored + 40);
        let last = read(&mut sub, last, total).await.expect("no lag");
        transfer(&svc, sid, cid, 1_000).await;
        read(&mut sub, last, events(&svc, sid).await).await.expect("no lag");
        // The session ends: the stream says so after its last event, then ends.
        let last_seq = events(&svc, sid).await;
        svc.end_session(sid).await.expect("end");
        let rest = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next_batch()).await.expect("in time");
        assert!(matches!(rest.as_deref(), Some([StreamItem::End { last_seq: n }]) if *n == last_seq), "{rest:?}");
        assert!(sub.next_batch().await.is_none());
    }

    /// Filters skip events without losing the cursor.
    #[tokio::test]
    async fn a_filtered_stream_keeps_its_order() {
        let (svc, sid, cid, _dir) = session(Limits { max_events_in_memory: 30, ..Limits::default() }).await;
        transfer(&svc, sid, cid, 10_000).await;
        let mut sub = svc.subscribe(sid, 0, Some("state_changed"), None, false).await.expect("subscribe");
        svc.close(sid, cid, req(json!({"side": "client"}))).await.expect("close");
        svc.close(sid, cid, req(json!({"side": "server"}))).await.expect("close");
        run(&svc, sid).await;
        svc.end_session(sid).await.expect("end");
        let mut seqs = Vec::new();
        while let Some(batch) = sub.next_batch().await {
            for item in batch {
                let e = match item {
                    StreamItem::Event { event, .. } => event,
                    StreamItem::End { .. } => continue,
                    StreamItem::Lagged { .. } => panic!("lagged"),
                    StreamItem::CaughtUp { .. } => panic!("a caught-up marker nobody asked for"),
                };
                assert_eq!(e.kind(), "state_changed");
                seqs.push(e.seq());
            }
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        // Both ends went through the handshake and the close.
        assert!(seqs.len() >= 8, "{seqs:?}");
    }

    /// The ring keeps what a live subscriber has yet to read (within the lag
    /// threshold) and what SQLite does not hold yet; once both are past, it
    /// shrinks back to `max_events_in_memory`.
    #[tokio::test]
    async fn the_ring_keeps_what_a_subscriber_still_needs_and_then_shrinks() {
        let limits = Limits { broadcast_capacity: 10_000, max_events_in_memory: 16, ..Limits::default() };
        let (svc, sid, cid, _dir) = session(limits).await;
        let ring_len = |svc: &LabService| {
            let handle = svc.handle(sid).expect("live");
            async move { handle.call(|s| Ok(s.ring_len())).await.expect("call") }
        };
        let start = events(&svc, sid).await;
        let mut sub = svc.subscribe(sid, start, None, None, false).await.expect("subscribe");
        transfer(&svc, sid, cid, 20_000).await;
        let end = events(&svc, sid).await;
        svc.inner.writer.flush().await.expect("flush");
        // Everything is in SQLite now, but the subscriber has read nothing: all kept.
        transfer(&svc, sid, cid, 0).await;
        assert!(ring_len(&svc).await as u64 >= end - start, "{} < {}", ring_len(&svc).await, end - start);
        read(&mut sub, start, end).await.expect("all from memory, no lag");
        // Read and stored: they go at once, with the session idle.
        assert!(ring_len(&svc).await <= 16, "{}", ring_len(&svc).await);
        drop(sub);
        // With nobody subscribed, what the writer commits goes as it commits it.
        transfer(&svc, sid, cid, 20_000).await;
        svc.inner.writer.flush().await.expect("flush");
        assert!(ring_len(&svc).await <= 16, "{}", ring_len(&svc).await);
    }

    /// A long `run_until_idle` does not keep its subscribers waiting until
    /// it is over: they read what it publishes while it runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscribers_read_a_long_run_while_it_runs() {
        let limits = Limits { broadcast_capacity: 1 << 20, ..Limits::default() };
        let (svc, sid, cid, _dir) = session(limits).await;
        svc.send(sid, cid, req(json!({"side": "client", "data": "x".repeat(4 << 20)}))).await.expect("send");
        // From after what the send itself published: only the run's events.
        let start = events(&svc, sid).await;
        let mut sub = svc.subscribe(sid, start, None, None, false).await.expect("subscribe");
        let published = svc.handle(sid).expect("live").published.clone();
        let reader = {
            let published = published.clone();
            tokio::spawn(async move {
                let first = sub.next_batch().await.expect("events");
                assert!(matches!(first[0], StreamItem::Event { .. }));
                published.load(std::sync::atomic::Ordering::Relaxed)
            })
        };
        run(&svc, sid).await;
        let published_when_first_read = reader.await.expect("reader");
        let published_in_all = published.load(std::sync::atomic::Ordering::Relaxed);
        assert!(events(&svc, sid).await > start + 5_000, "a long run: {} events", events(&svc, sid).await - start);
        assert!(
            published_when_first_read < published_in_all,
            "the subscriber read nothing before the run was over ({published_when_first_read} of {published_in_all} published)"
        );
    }

    /// Every item until (and with) the first one `stop` accepts.
    async fn items_until(sub: &mut Subscription, stop: impl Fn(&StreamItem) -> bool) -> Vec<StreamItem> {
        let mut out = Vec::new();
        loop {
            let batch = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next_batch())
                .await
                .expect("in time")
                .expect("the stream goes on");
            for item in batch {
                let last = stop(&item);
                out.push(item);
                if last {
                    return out;
                }
            }
        }
    }

    /// What a list of items says: an event's seq, `C(n)` for caught up, `E(n)` for the end.
    fn said(items: &[StreamItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                StreamItem::Event { event, .. } => event.seq().to_string(),
                StreamItem::CaughtUp { last_seq } => format!("C({last_seq})"),
                StreamItem::End { last_seq } => format!("E({last_seq})"),
                StreamItem::Lagged { last_seq } => format!("L({last_seq})"),
            })
            .collect()
    }

    /// Asked for, the marker comes once, right after the last event the
    /// session had when the subscription was opened, whether the replay came
    /// from SQLite or the ring, filtered or not; live events follow it.
    #[tokio::test]
    async fn caught_up_separates_the_replay_from_live_events() {
        for max_events_in_memory in [100_000, 20] {
            let (svc, sid, cid, _dir) = session(Limits { max_events_in_memory, ..Limits::default() }).await;
            transfer(&svc, sid, cid, 20_000).await;
            let stored = events(&svc, sid).await;
            let mut sub = svc.subscribe(sid, 3, None, None, false).await.expect("subscribe").with_caught_up();
            let replay = items_until(&mut sub, |i| matches!(i, StreamItem::CaughtUp { .. })).await;
            let mut want: Vec<String> = (4..=stored).map(|n| n.to_string()).collect();
            want.push(format!("C({stored})"));
            assert_eq!(said(&replay), want, "ring of {max_events_in_memory}");
            transfer(&svc, sid, cid, 1_000).await;
            let now = events(&svc, sid).await;
            let live =
                items_until(&mut sub, |i| matches!(i, StreamItem::Event { event, .. } if event.seq() == now)).await;
            assert_eq!(said(&live), (stored + 1..=now).map(|n| n.to_string()).collect::<Vec<_>>());

            // Filtered: the marker still says where the cursor is.
            let mut states =
                svc.subscribe(sid, 0, Some("state_changed"), None, false).await.expect("subscribe").with_caught_up();
            let replay = items_until(&mut states, |i| matches!(i, StreamItem::CaughtUp { .. })).await;
            assert!(matches!(replay.last(), Some(StreamItem::CaughtUp { last_seq }) if *last_seq == now), "{replay:?}");
            assert!(replay[..replay.len() - 1].iter().all(|i| matches!(i, StreamItem::Event { .. })));

            // At the head: the marker comes first. Without asking: never.
            let mut head = svc.subscribe(sid, now, None, None, false).await.expect("subscribe").with_caught_up();
            assert_eq!(said(&items_until(&mut head, |_| true).await), [format!("C({now})")]);
            let mut plain = svc.subscribe(sid, now - 2, None, None, false).await.expect("subscribe");
            let got =
                items_until(&mut plain, |i| matches!(i, StreamItem::Event { event, .. } if event.seq() == now)).await;
            assert_eq!(said(&got), [(now - 1).to_string(), now.to_string()]);

            // An ended session's history is all replay: the marker, then the end.
            svc.end_session(sid).await.expect("end");
            let mut old = svc.subscribe(sid, now - 1, None, None, false).await.expect("subscribe").with_caught_up();
            let all = items_until(&mut old, |i| matches!(i, StreamItem::End { .. })).await;
            assert_eq!(said(&all), [now.to_string(), format!("C({now})"), format!("E({now})")]);
            assert!(old.next_batch().await.is_none());
        }
    }

    /// A subscriber that does not read while the session runs ahead is told
    /// it lagged, with the seq to resume after; resuming there (from the ring
    /// or SQLite) continues with no gap, and the session never waited.
    #[tokio::test]
    async fn a_lagging_subscriber_is_told_where_to_resume_and_resumes_without_gap() {
        for max_events_in_memory in [100_000, 50] {
            let limits = Limits { broadcast_capacity: 64, max_events_in_memory, ..Limits::default() };
            let (svc, sid, cid, _dir) = session(limits).await;
            let start = events(&svc, sid).await;
            let mut sub = svc.subscribe(sid, start, None, None, false).await.expect("subscribe");
            transfer(&svc, sid, cid, 4_000).await;
            let mid = events(&svc, sid).await;
            assert!(mid > start + 3, "{start} {mid}");
            let last = read(&mut sub, start, mid).await.expect("within the limit");
            transfer(&svc, sid, cid, 200_000).await;
            let end = events(&svc, sid).await;
            let lagged = read(&mut sub, last, end).await.expect_err("lagged");
            assert_eq!(lagged, mid);
            assert!(sub.next_batch().await.is_none(), "the stream ends after Lagged");
            // Until it resumes, the ring keeps what is within the lag threshold
            // although SQLite has it all and nobody holds it.
            svc.inner.writer.flush().await.expect("flush");
            transfer(&svc, sid, cid, 0).await;
            let handle = svc.handle(sid).expect("live");
            let held = handle.call(|s| Ok(s.ring_len())).await.expect("call");
            assert!(held >= 64, "{held}");
            let mut resumed = svc.subscribe(sid, lagged, None, None, false).await.expect("resume");
            read(&mut resumed, lagged, end).await.expect("caught up");
            // Caught up and stored: back to the small ring.
            svc.inner.writer.flush().await.expect("flush");
            let held = handle.call(|s| Ok(s.ring_len())).await.expect("call");
            assert!(held <= max_events_in_memory.max(64), "{held}");
        }
    }
}
