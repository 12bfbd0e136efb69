//! Event streams: stored events after a given `seq`, then live ones, with no
//! gap and no duplicate, filtered by kind and connection. A subscriber that
//! falls too far behind is told it lagged (with the last `seq` it got, so it
//! can resume) instead of ever slowing the session down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{broadcast, mpsc};

use super::LiveEvent;
use crate::sim::EventKind;
use crate::store::{EventFilter, EventRow, Store, StoreWriter};

/// What a stream yields.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// The next event.
    Event(Arc<LiveEvent>),
    /// The subscriber fell behind the live broadcast; the stream ends here.
    /// Resume with `after_seq = last_seq`.
    Lagged {
        /// The last `seq` delivered (or skipped by the filter).
        last_seq: u64,
    },
}

/// An open stream: receive until `None` (session ended, or lagged).
pub struct Subscription {
    /// The items, in `seq` order.
    pub items: mpsc::Receiver<StreamItem>,
}

/// Counts a stream among the session's subscribers while it lives.
struct SubscriberGuard(Arc<AtomicUsize>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type LiveParts = ((broadcast::Receiver<Arc<LiveEvent>>, Vec<Arc<LiveEvent>>, u64), Arc<AtomicUsize>);

fn from_row(row: EventRow) -> LiveEvent {
    LiveEvent {
        seq: row.seq as u64,
        t_ns: row.t_ns as u64,
        kind: EventKind::NAMES.iter().find(|k| **k == row.kind).copied().unwrap_or("unknown"),
        connection: row.connection.map(|c| c as u64),
        body: row.body.into(),
    }
}

pub(super) fn open(
    store: Store,
    writer: StoreWriter,
    sid: u64,
    after_seq: u64,
    kinds: Vec<String>,
    connection: Option<u64>,
    live: Option<LiveParts>,
) -> Subscription {
    let (tx, items) = mpsc::channel(1024);
    let guard = live.as_ref().map(|(_, subscribers)| {
        subscribers.fetch_add(1, Ordering::Relaxed);
        SubscriberGuard(subscribers.clone())
    });
    let wanted = move |e: &LiveEvent| {
        (kinds.is_empty() || kinds.iter().any(|k| k == e.kind)) && connection.is_none_or(|c| e.connection == Some(c))
    };
    let store_kinds = Vec::new(); // filter in one place (`wanted`), so `last` tracks every seq
    tokio::spawn(async move {
        let _guard = guard;
        let mut last = after_seq;
        let (receiver, kept, stored_until) = match live {
            Some(((receiver, kept, first_kept), _)) => (Some(receiver), kept, first_kept.saturating_sub(1)),
            None => (None, Vec::new(), u64::MAX),
        };
        // 1. What only SQLite still has.
        if last < stored_until {
            if receiver.is_some() && writer.flush().await.is_err() {
                return;
            }
            loop {
                let filter = EventFilter {
                    after_seq: last.min(i64::MAX as u64) as i64,
                    limit: 1000,
                    kinds: store_kinds.clone(),
                    connection: None,
                };
                let Ok(rows) = store.events(sid as i64, &filter).await else { return };
                if rows.is_empty() {
                    break;
                }
                for row in rows {
                    let event = from_row(row);
                    if event.seq > stored_until {
                        break;
                    }
                    last = event.seq;
                    if wanted(&event) && tx.send(StreamItem::Event(Arc::new(event))).await.is_err() {
                        return;
                    }
                }
                if last >= stored_until {
                    break;
                }
            }
        }
        // 2. What the session still keeps in memory.
        for event in kept {
            if event.seq > last {
                last = event.seq;
                if wanted(&event) && tx.send(StreamItem::Event(event)).await.is_err() {
                    return;
                }
            }
        }
        // 3. Live.
        let Some(mut receiver) = receiver else { return };
        loop {
            match receiver.recv().await {
                Ok(event) => {
                    if event.seq > last {
                        last = event.seq;
                        if wanted(&event) && tx.send(StreamItem::Event(event)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = tx.send(StreamItem::Lagged { last_seq: last }).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Subscription { items }
}
