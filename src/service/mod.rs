//! The service layer: every operation of the lab server, once. REST and gRPC
//! are thin adapters that parse their input into [`model`] types, call one
//! [`LabService`] method, and convert the reply or [`Error`] back.
//!
//! Each session is an actor ([`session`]) owning its world; this layer finds
//! the actor, validates the request, sends the job and waits for the answer.
//! History (ended sessions, events, segments) comes from the [`crate::store`].
//!
//! # Layout
//! This file holds the service itself (the session registry, the ways to
//! reach a session's actor, shutdown); each group of operations has a file:
//! - `sessions`: create, get, list, end; the profiles.
//! - `topology`: hosts and links.
//! - `connections`: listeners, OPEN, SEND, RECEIVE, CLOSE, ABORT, accept.
//! - `faults`: fault rules and injected segments.
//! - `clock`: the virtual clock and the run budget.
//! - `history`: events, segments, pcap, live streams.
//! - [`labs`] and [`packetdrill`]: lab runs and scripts in a session.
//!
//! Beside them: [`model`] (requests and replies), [`command`] (the command
//! log), [`session`] (the actor), `ring` (its event ring), `stream` (event
//! streams), [`error`], [`limits`], and the small `parse` and `calendar`.

mod calendar;
mod clock;
pub mod command;
mod connections;
pub mod error;
mod faults;
mod history;
#[cfg(test)]
mod idle_tests;
pub mod labs;
pub mod limits;
pub mod model;
pub mod packetdrill;
mod parse;
mod ring;
pub mod session;
mod sessions;
mod stats;
mod stream;
mod topology;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustc_hash::FxHashMap;

use calendar::now_rfc3339;
use command::Command;
pub use error::Error;
pub use limits::{LimitHit, Limits};
use model::*;
pub use session::LiveEvent;
use session::{SessionHandle, SessionState};
pub use stream::{StreamItem, Subscription};

use crate::store::{Store, StoreWriter};

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

    /// Stops a session's actor (its last job done, its streams ended) and
    /// marks it ended in the store.
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
