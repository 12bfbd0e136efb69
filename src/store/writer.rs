//! The write side of the event log: one task, batched transactions.
//!
//! Why one task: SQLite has one writer at a time anyway, and sqlx charges a
//! fixed cost per statement (~55 µs), so the only way to persist events as
//! fast as simulations produce them is to gather what is queued and write it
//! as a few multi-row `INSERT`s in one transaction. Session actors hand rows
//! over through an unbounded channel and never wait for the database.
//!
//! # Batching
//! The task waits for a message, then takes whatever else is already queued
//! (up to [`MAX_BATCH_ROWS`] rows), and commits it in one transaction of
//! `INSERT`s of [`ROWS_PER_STATEMENT`] rows each, on a connection of its own.
//! Session ends received in the batch are applied in the same transaction,
//! after its rows, so a session is never seen ended with events still
//! missing. Flush barriers received in the batch are answered once it is
//! committed.
//!
//! # Failures
//! A failed transaction is rolled back as a whole, so writing the same rows
//! again cannot duplicate any; it is retried a few times with backoff. If it
//! keeps failing, the rows stay in memory, flushes report the error, and the
//! task tries again when more arrives or after [`WriterConfig::idle_retry`].
//!
//! Rows are inserted with `INSERT OR ROLLBACK`: still a plain insert (a
//! duplicate key is an error, never ignored or replaced), but SQLite can skip
//! the statement journal, which it needs only to undo half a statement. A row
//! the database refuses for good (a duplicate key: a bug in the sender) rolls
//! the batch back; the batch is then written again with plain `INSERT`s, row
//! by row where a statement fails, so that only the culprits are dropped,
//! counted and reported, and they cannot block the rest of the log.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::error::ErrorKind;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::queries::END_SESSION_SQL;
use super::{Store, StoreError};

/// Rows the task takes into one batch before writing (more wait for the next).
/// Large enough to amortise the per-transaction cost, small enough that a
/// flush is answered within tens of milliseconds under load.
const MAX_BATCH_ROWS: usize = 20_000;

/// Rows per `INSERT` statement. An event binds 6 variables, so this stays far
/// below SQLite's limit of 32,766 bound variables per statement.
const ROWS_PER_STATEMENT: usize = 250;

/// The writer connection's page cache, in KiB: a batch's pages (table and
/// indexes) stay in memory until commit instead of being spilled early.
const WRITER_CACHE_KIB: u32 = 64 * 1024;

/// Checkpoints (copying the WAL into the database file, then syncing it) run
/// on another connection, in [`checkpointer`], so that the writer's commits
/// never wait for them. Should that one fall behind, a commit of the writer
/// checkpoints once the WAL holds this many pages (256 MiB of 16 KiB pages).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16 * 1024;

/// After a WAL restart, the writer truncates the WAL file to this size, so
/// that a burst does not leave a huge file behind.
const WAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// Rows committed since the last checkpoint that make the checkpointer run
/// at once (~8 MB of WAL); fewer wait [`CHECKPOINT_DELAY`], so that a light
/// load does not sync the database file after every small commit.
const CHECKPOINT_ROWS: u64 = 20_000;

/// See [`CHECKPOINT_ROWS`].
const CHECKPOINT_DELAY: Duration = Duration::from_secs(1);

/// After a burst of at least [`RELEASE_AFTER_ROWS`] rows, once nothing has
/// arrived for this long, the writer gives memory back: its queues shrink to
/// their usual size, its connection drops its page cache (`PRAGMA
/// shrink_memory`, refilled from the file on the next writes), and the free
/// pages go back to the system ([`crate::memory`]). So a burst does not
/// leave the server at its peak RSS.
const RELEASE_WHEN_IDLE: Duration = Duration::from_millis(500);

/// See [`RELEASE_WHEN_IDLE`].
const RELEASE_AFTER_ROWS: u64 = 50_000;

/// Retry and batching knobs; tests shorten the delays.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriterConfig {
    /// See [`MAX_BATCH_ROWS`].
    pub(crate) max_batch_rows: usize,
    /// Attempts at one transaction before giving up for now.
    pub(crate) attempts: u32,
    /// Delay after the first failed attempt; doubles after each.
    pub(crate) first_backoff: Duration,
    /// While rows are held after a failure and nothing new arrives, how long
    /// to wait before trying again.
    pub(crate) idle_retry: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch_rows: MAX_BATCH_ROWS,
            attempts: 5,
            first_backoff: Duration::from_millis(20),
            idle_retry: Duration::from_secs(1),
        }
    }
}

/// One event of a session's log, as the session actor hands it to the store.
///
/// Why `Arc<str>` for the body: the same serialised JSON goes to live
/// subscribers; the store keeps a reference instead of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// The session's id (from [`Store::create_session`]).
    pub session_id: i64,
    /// Position in the session's log, from 1 without gaps.
    pub seq: i64,
    /// Virtual time in nanoseconds.
    pub t_ns: i64,
    /// The event's `kind` tag (one of a fixed set, hence `'static`).
    pub kind: &'static str,
    /// The connection it belongs to, if any.
    pub connection: Option<i64>,
    /// The whole event as JSON.
    pub body: Arc<str>,
}

/// One user command, persisted so that a session's inputs outlive it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRecord {
    /// The session's id.
    pub session_id: i64,
    /// Position in the session's command list, from 1 without gaps.
    pub seq: i64,
    /// Virtual time in nanoseconds when it was applied.
    pub t_ns: i64,
    /// The command as JSON.
    pub body: String,
}

/// A snapshot of the writer's counters, for metrics and for judging whether
/// the store keeps up (`pending` growing means it does not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Events committed.
    pub events_persisted: u64,
    /// Commands committed.
    pub commands_persisted: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Rows (events and commands) sent but neither committed nor rejected yet.
    pub pending: u64,
    /// Transaction attempts that failed and were rolled back (then retried).
    pub write_errors: u64,
    /// Rows the database refused for good (duplicate key, ...) and that were dropped.
    pub rejected: u64,
    /// Rows sent after the writer shut down, hence never persisted.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    events_persisted: AtomicU64,
    commands_persisted: AtomicU64,
    batches: AtomicU64,
    pending: AtomicU64,
    write_errors: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    /// Whether a send after shutdown was logged (once is enough).
    drop_logged: std::sync::atomic::AtomicBool,
    /// Woken after each commit, for senders waiting for `pending` to fall
    /// ([`StoreWriter::wait_for_room`]).
    room: tokio::sync::Notify,
}

impl Counters {
    fn snapshot(&self) -> WriterStats {
        WriterStats {
            events_persisted: self.events_persisted.load(Ordering::Relaxed),
            commands_persisted: self.commands_persisted.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Told by the writer how far a sender's tracked batches are committed
/// (see [`StoreWriter::events_tracked`]). Called on the writer's task: keep
/// it short and never block on the writer.
pub trait Persisted: Send + Sync {
    /// Every tracked event up to `seq` is committed (or was refused and dropped).
    fn persisted_through(&self, seq: u64);
}

enum Msg {
    Event(EventRecord),
    Events(Vec<EventRecord>, Option<Arc<dyn Persisted>>),
    Command(CommandRecord),
    End { id: i64, ended_at: String },
    Flush(oneshot::Sender<Result<(), StoreError>>),
    Shutdown(oneshot::Sender<Result<WriterStats, StoreError>>),
}

/// The sending side of the store's single writer task; clone it freely (one
/// per session actor). Sending never blocks and never waits for SQLite.
#[derive(Clone, Debug)]
pub struct StoreWriter {
    tx: mpsc::UnboundedSender<Msg>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Msg::Event(_) => "Event",
            Msg::Events(..) => "Events",
            Msg::Command(_) => "Command",
            Msg::End { .. } => "End",
            Msg::Flush(_) => "Flush",
            Msg::Shutdown(_) => "Shutdown",
        };
        f.write_str(name)
    }
}

impl Store {
    /// Starts the task that owns the write side of the event log and returns
    /// the handle to feed it. Start one per store: a second would only
    /// compete for SQLite's single write lock.
    ///
    /// # Panics
    /// Outside a Tokio runtime (it spawns a task).
    pub fn spawn_writer(&self) -> StoreWriter {
        self.spawn_writer_with(WriterConfig::default())
    }

    pub(crate) fn spawn_writer_with(&self, config: WriterConfig) -> StoreWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let options = (*self.pool.connect_options())
            .clone()
            .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
            .pragma("temp_store", "MEMORY")
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string());
        let checkpoints = Arc::new(CheckpointSignal::default());
        let checkpointer = tokio::spawn(checkpointer(self.pool.clone(), counters.clone(), checkpoints.clone()));
        let task = Task {
            checkpoints,
            checkpointer: Some(checkpointer),
            options,
            conn: None,
            rx,
            counters: counters.clone(),
            config,
            events: VecDeque::new(),
            received_events: 0,
            done_events: 0,
            progress: VecDeque::new(),
            commands: VecDeque::new(),
            ends: Vec::new(),
            barriers: Vec::new(),
            shutdowns: Vec::new(),
            closed: false,
            failure: None,
            rows_since_release: 0,
            rejection: None,
        };
        tokio::spawn(task.run());
        StoreWriter { tx, counters }
    }
}

impl StoreWriter {
    /// Queues one event. Prefer [`StoreWriter::events`] for several: one
    /// message per batch is cheaper.
    pub fn event(&self, rec: EventRecord) {
        self.send(Msg::Event(rec), 1);
    }

    /// Queues a batch of events (normally one session's, in seq order) as
    /// one message, which is how a session actor hands over what one step
    /// produced.
    pub fn events(&self, recs: Vec<EventRecord>) {
        if recs.is_empty() {
            return;
        }
        let rows = recs.len() as u64;
        self.send(Msg::Events(recs, None), rows);
    }

    /// As [`StoreWriter::events`], and once the batch is committed (or its
    /// refused rows dropped) `persisted` hears the batch's last `seq`: how a
    /// session knows which of its events SQLite now holds, so that it can
    /// let them go from memory.
    pub fn events_tracked(&self, recs: Vec<EventRecord>, persisted: Arc<dyn Persisted>) {
        if recs.is_empty() {
            return;
        }
        let rows = recs.len() as u64;
        self.send(Msg::Events(recs, Some(persisted)), rows);
    }

    /// Queues one user command.
    pub fn command(&self, rec: CommandRecord) {
        self.send(Msg::Command(rec), 1);
    }

    /// Queues the end of a session, ordered after everything sent before it,
    /// so that an ended session's log is complete once it reads as ended.
    /// Ending an already ended session keeps its first `ended_at`.
    pub fn end_session(&self, id: i64, ended_at: String) {
        self.send(Msg::End { id, ended_at }, 0);
    }

    /// Resolves once everything sent (by any clone) before this call is
    /// committed, so that a read right after it sees those rows.
    ///
    /// # Errors
    /// [`StoreError::WriteFailed`] if some rows could not be committed (the
    /// writer keeps them and retries), [`StoreError::Rejected`] if rows were
    /// refused since the previous report, [`StoreError::WriterClosed`] after
    /// shutdown.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(tx)).map_err(|_| StoreError::WriterClosed)?;
        rx.await.map_err(|_| StoreError::WriterClosed)?
    }

    /// Stops accepting rows (from every clone; later ones are counted as
    /// `dropped`), commits everything already queued, ends the task and
    /// returns the final counters: the last step of a clean shutdown.
    ///
    /// # Errors
    /// As [`StoreWriter::flush`]; with [`StoreError::WriteFailed`] the
    /// unpersisted rows are lost. [`StoreError::WriterClosed`] if another
    /// clone already shut the writer down.
    pub async fn shutdown(self) -> Result<WriterStats, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Shutdown(tx)).map_err(|_| StoreError::WriterClosed)?;
        rx.await.map_err(|_| StoreError::WriterClosed)?
    }

    /// Rows sent (by every clone) and not yet committed or refused.
    pub fn pending(&self) -> u64 {
        self.counters.pending.load(Ordering::Relaxed)
    }

    /// Waits until at most `max` rows are pending (see [`Self::pending`]),
    /// or `timeout` has passed; `true` when there is room. How a sender
    /// that produces faster than SQLite commits keeps the queue, and the
    /// memory it holds, bounded.
    pub async fn wait_for_room(&self, max: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.counters.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a commit in between is not missed.
            notified.as_mut().enable();
            if self.pending() <= max {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending() <= max;
            }
        }
    }

    /// The counters now, for metrics (cheap: a few relaxed atomic loads).
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    fn send(&self, msg: Msg, rows: u64) {
        // Counted before sending, so that the task never decrements first.
        self.counters.pending.fetch_add(rows, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(msg)) = self.tx.send(msg) {
            self.counters.pending.fetch_sub(rows, Ordering::Relaxed);
            self.counters.room.notify_waiters();
            self.counters.dropped.fetch_add(rows, Ordering::Relaxed);
            if !self.counters.drop_logged.swap(true, Ordering::Relaxed) {
                tracing::error!(rows, message = ?msg, "store writer has shut down: dropped (counted from now on, not logged)");
            }
        }
    }
}

/// What one committed transaction refused.
#[derive(Default)]
struct Rejections {
    rows: u64,
    first: Option<sqlx::Error>,
}

impl Rejections {
    fn add(&mut self, error: sqlx::Error, what: &str, session_id: i64, seq: i64) {
        tracing::error!(what, session_id, seq, %error, "store writer: row refused by the database; dropping it");
        self.rows += 1;
        self.first.get_or_insert(error);
    }
}

/// Errors that will recur however often the same row is written: the row is
/// at fault, not the database.
fn is_permanent(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(
            db.kind(),
            ErrorKind::UniqueViolation
                | ErrorKind::ForeignKeyViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation
        ),
        _ => false,
    }
}

struct Task {
    /// Wakes (and finally stops) the checkpointer.
    checkpoints: Arc<CheckpointSignal>,
    checkpointer: Option<tokio::task::JoinHandle<()>>,
    /// How to open the writer's own connection.
    options: SqliteConnectOptions,
    /// The writer's own connection, not one of the pool's: it keeps a large
    /// page cache warm between batches, and its transactions are plain
    /// `BEGIN`/`COMMIT` statements, which stay correct when SQLite itself
    /// ends a transaction (`INSERT OR ROLLBACK`, some I/O errors). `None`
    /// after a failure left its state in doubt: reopened on the next attempt.
    conn: Option<SqliteConnection>,
    rx: mpsc::UnboundedReceiver<Msg>,
    counters: Arc<Counters>,
    config: WriterConfig,
    /// Received, not yet committed; committed from the front.
    events: VecDeque<EventRecord>,
    /// Events ever received, and ever committed (or refused and dropped).
    received_events: u64,
    done_events: u64,
    /// Batches whose sender tracks them: (`received_events` after the batch,
    /// its last seq, the sender's counter), in arrival order.
    progress: VecDeque<(u64, u64, Arc<dyn Persisted>)>,
    commands: VecDeque<CommandRecord>,
    ends: Vec<(i64, String)>,
    barriers: Vec<oneshot::Sender<Result<(), StoreError>>>,
    shutdowns: Vec<oneshot::Sender<Result<WriterStats, StoreError>>>,
    /// The channel is closed and empty: write what is held, then stop.
    closed: bool,
    /// Set while rows are held because their transaction kept failing.
    failure: Option<Arc<sqlx::Error>>,
    /// Events committed since memory was last given back.
    rows_since_release: u64,
    /// Rows refused since the last report to a flush or shutdown.
    rejection: Option<(u64, Arc<sqlx::Error>)>,
}

/// How a batch's rows are inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `INSERT OR ROLLBACK`: a refused row rolls the whole transaction back,
    /// so SQLite needs no statement journal (about a third faster). The
    /// normal case: nothing is ever refused unless a sender has a bug.
    Fast,
    /// Plain `INSERT` (a refused row undoes only its statement), and a
    /// statement with a refused row is redone row by row, so that only the
    /// culprits are dropped. Used for a batch after `Fast` hit a refusal.
    Careful,
}

/// The counts of a committed batch: refused events, refused commands, and
/// the refusals themselves.
type Written = (usize, usize, Rejections);

impl Task {
    async fn run(mut self) {
        while !self.closed {
            if self.has_work() {
                // Rows held after a failure: retry when more arrives or after a while.
                tokio::select! {
                    msg = self.rx.recv() => self.accept(msg),
                    () = tokio::time::sleep(self.config.idle_retry) => {}
                }
            } else if self.rows_since_release >= RELEASE_AFTER_ROWS {
                tokio::select! {
                    msg = self.rx.recv() => self.accept(msg),
                    () = tokio::time::sleep(RELEASE_WHEN_IDLE) => {
                        self.release_memory().await;
                        continue;
                    }
                }
            } else {
                let msg = self.rx.recv().await;
                self.accept(msg);
            }
            self.drain_queued();
            let before = self.done_events;
            self.write_all().await;
            self.rows_since_release += self.done_events - before;
        }
        self.finish().await;
    }

    /// Gives back what a burst left allocated (see [`RELEASE_WHEN_IDLE`]).
    async fn release_memory(&mut self) {
        self.rows_since_release = 0;
        let keep = self.config.max_batch_rows;
        self.events.shrink_to(keep);
        self.commands.shrink_to(keep);
        self.progress.shrink_to(1024);
        if let Some(conn) = self.conn.as_mut() {
            if let Err(e) = sqlx::query("PRAGMA shrink_memory").execute(&mut *conn).await {
                tracing::warn!(error = %e, "store writer: PRAGMA shrink_memory failed");
            }
        }
        crate::memory::give_back_free_memory_in_background();
    }

    fn rows(&self) -> usize {
        self.events.len() + self.commands.len()
    }

    fn has_work(&self) -> bool {
        self.rows() > 0 || !self.ends.is_empty()
    }

    fn accept(&mut self, msg: Option<Msg>) {
        match msg {
            Some(Msg::Event(rec)) => {
                self.events.push_back(rec);
                self.received_events += 1;
            }
            Some(Msg::Events(recs, progress)) => {
                let last_seq = recs.last().map_or(0, |r| r.seq.max(0) as u64);
                self.received_events += recs.len() as u64;
                self.events.extend(recs);
                if let Some(progress) = progress {
                    self.progress.push_back((self.received_events, last_seq, progress));
                }
            }
            Some(Msg::Command(rec)) => self.commands.push_back(rec),
            Some(Msg::End { id, ended_at }) => self.ends.push((id, ended_at)),
            Some(Msg::Flush(reply)) => self.barriers.push(reply),
            Some(Msg::Shutdown(reply)) => {
                self.shutdowns.push(reply);
                // Later sends fail (and count as dropped); what is queued is still received.
                self.rx.close();
            }
            None => self.closed = true,
        }
    }

    /// Takes what is already queued, without waiting. While a failure holds
    /// rows, takes everything, so that flushes are answered (with the error)
    /// instead of waiting behind the held rows.
    fn drain_queued(&mut self) {
        while self.failure.is_some() || self.rows() < self.config.max_batch_rows {
            match self.rx.try_recv() {
                Ok(msg) => self.accept(Some(msg)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
    }

    /// Commits everything held, in transactions of at most `max_batch_rows`
    /// rows, then answers the flush barriers.
    async fn write_all(&mut self) {
        while self.has_work() {
            let max = self.config.max_batch_rows.max(1);
            let n_events = self.events.len().min(max);
            let n_commands = self.commands.len().min(max - n_events);
            // Ends go with the last rows, never before rows received ahead of them.
            let last = n_events == self.events.len() && n_commands == self.commands.len();
            let n_ends = if last { self.ends.len() } else { 0 };
            match self.write_with_retries(n_events, n_commands, n_ends).await {
                Ok((rejected_events, rejected_commands, rejections)) => {
                    self.events.drain(..n_events);
                    self.done_events += n_events as u64;
                    while self.progress.front().is_some_and(|(end, _, _)| *end <= self.done_events) {
                        if let Some((_, seq, progress)) = self.progress.pop_front() {
                            progress.persisted_through(seq);
                        }
                    }
                    self.commands.drain(..n_commands);
                    self.ends.drain(..n_ends);
                    let c = &self.counters;
                    c.events_persisted.fetch_add((n_events - rejected_events) as u64, Ordering::Relaxed);
                    c.commands_persisted.fetch_add((n_commands - rejected_commands) as u64, Ordering::Relaxed);
                    c.batches.fetch_add(1, Ordering::Relaxed);
                    self.checkpoints.wake.notify_one();
                    c.pending.fetch_sub((n_events + n_commands) as u64, Ordering::Relaxed);
                    c.room.notify_waiters();
                    if let Some(first) = rejections.first {
                        c.rejected.fetch_add(rejections.rows, Ordering::Relaxed);
                        let (rows, _) = self.rejection.get_or_insert_with(|| (0, Arc::new(first)));
                        *rows += rejections.rows;
                    }
                    if self.failure.take().is_some() {
                        tracing::info!("store writer: writing again after a failure");
                    }
                }
                Err(e) => {
                    tracing::error!(
                        held_rows = self.rows(),
                        error = %e,
                        "store writer: giving up for now; rows held in memory, will retry"
                    );
                    self.failure = Some(e);
                    break;
                }
            }
        }
        if !self.barriers.is_empty() {
            for reply in std::mem::take(&mut self.barriers) {
                let _ = reply.send(self.outcome().map(|_| ())); // the flusher may have gone
            }
            self.rejection = None;
        }
    }

    /// The state to report to a flush or shutdown.
    fn outcome(&self) -> Result<WriterStats, StoreError> {
        if let Some(e) = &self.failure {
            return Err(StoreError::WriteFailed { unpersisted: self.rows() as u64, source: e.clone() });
        }
        if let Some((rows, first)) = &self.rejection {
            return Err(StoreError::Rejected { rows: *rows, source: first.clone() });
        }
        Ok(self.counters.snapshot())
    }

    async fn finish(mut self) {
        if self.has_work() {
            tracing::error!(
                lost_rows = self.rows(),
                lost_session_ends = self.ends.len(),
                "store writer stopped with rows it could not persist"
            );
        }
        self.checkpoints.stop.store(true, Ordering::Relaxed);
        self.checkpoints.wake.notify_one();
        if let Some(checkpointer) = self.checkpointer.take()
            && let Err(error) = checkpointer.await
        {
            tracing::warn!(%error, "store checkpointer ended abnormally");
        }
        if let Some(conn) = self.conn.take()
            && let Err(error) = conn.close().await
        {
            tracing::warn!(%error, "store writer: closing its connection failed");
        }
        for reply in std::mem::take(&mut self.shutdowns) {
            let _ = reply.send(self.outcome());
        }
        tracing::debug!("store writer stopped");
    }

    /// One batch, in one transaction, attempted until it commits or the
    /// attempts run out.
    async fn write_with_retries(
        &mut self,
        n_events: usize,
        n_commands: usize,
        n_ends: usize,
    ) -> Result<Written, Arc<sqlx::Error>> {
        let mut mode = Mode::Fast;
        let mut delay = self.config.first_backoff;
        let mut attempt = 1;
        loop {
            match self.write_once(n_events, n_commands, n_ends, mode).await {
                Ok(done) => {
                    tracing::trace!(n_events, n_commands, n_ends, ?mode, "store writer: batch committed");
                    return Ok(done);
                }
                Err(e) if mode == Mode::Fast && is_permanent(&e) => {
                    // Not a failure of the database: find the culprits, now.
                    tracing::warn!(error = %e, "store writer: a row was refused; writing the batch again carefully");
                    mode = Mode::Careful;
                }
                Err(e) => {
                    self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        attempt,
                        n_events,
                        n_commands,
                        error = %e,
                        "store writer: batch failed and was rolled back"
                    );
                    if attempt >= self.config.attempts {
                        return Err(Arc::new(e));
                    }
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }

    /// One attempt at one transaction. Whatever fails, nothing of the
    /// attempt remains afterwards, so trying again cannot duplicate rows.
    async fn write_once(
        &mut self,
        n_events: usize,
        n_commands: usize,
        n_ends: usize,
        mode: Mode,
    ) -> Result<Written, sqlx::Error> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.options.connect().await?,
        };
        let rows =
            Rows { events: &self.events, n_events, commands: &self.commands, n_commands, ends: &self.ends[..n_ends] };
        let result = write_transaction(&mut conn, rows, mode).await;
        if result.is_err() {
            // Either this undoes the attempt, or SQLite already had (and says
            // there is no transaction), or the connection is broken. In the
            // last two cases, start again on a fresh connection: closing this
            // one rolls back whatever might still be open.
            if let Err(error) = sqlx::query("ROLLBACK").execute(&mut conn).await {
                tracing::debug!(%error, "store writer: reopening its connection after a failed rollback");
                if let Err(error) = conn.close().await {
                    tracing::debug!(%error, "store writer: closing the connection failed");
                }
                return result;
            }
        }
        self.conn = Some(conn);
        result
    }
}

/// How the writer task drives the checkpointer.
#[derive(Debug, Default)]
struct CheckpointSignal {
    /// Notified after each commit.
    wake: tokio::sync::Notify,
    /// Set (then `wake` notified) when the writer stops.
    stop: std::sync::atomic::AtomicBool,
}

/// Copies committed WAL pages into the database file (`PASSIVE`: never
/// blocks the writer or readers), on a pool connection, after commits. Why a
/// task of its own: a checkpoint ends with a sync of the database file, which
/// would otherwise stall the writer's commit that triggered it.
async fn checkpointer(pool: sqlx::SqlitePool, counters: Arc<Counters>, signal: Arc<CheckpointSignal>) {
    let committed =
        || counters.events_persisted.load(Ordering::Relaxed) + counters.commands_persisted.load(Ordering::Relaxed);
    let mut at_last = committed();
    loop {
        signal.wake.notified().await;
        if signal.stop.load(Ordering::Relaxed) {
            return;
        }
        if committed().saturating_sub(at_last) < CHECKPOINT_ROWS {
            tokio::select! {
                () = tokio::time::sleep(CHECKPOINT_DELAY) => {}
                () = async {
                    // Also woken by commits; go on once enough has piled up.
                    while committed().saturating_sub(at_last) < CHECKPOINT_ROWS {
                        signal.wake.notified().await;
                        if signal.stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                } => {}
            }
            if signal.stop.load(Ordering::Relaxed) {
                return;
            }
        }
        at_last = committed();
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await {
            Ok((busy, wal_pages, checkpointed)) => {
                tracing::trace!(busy, wal_pages, checkpointed, "store: checkpoint");
            }
            Err(error) => tracing::warn!(%error, "store: checkpoint failed (the next one retries)"),
        }
    }
}

/// The part of the held rows one transaction writes.
#[derive(Clone, Copy)]
struct Rows<'a> {
    events: &'a VecDeque<EventRecord>,
    n_events: usize,
    commands: &'a VecDeque<CommandRecord>,
    n_commands: usize,
    ends: &'a [(i64, String)],
}

async fn write_transaction(conn: &mut SqliteConnection, rows: Rows<'_>, mode: Mode) -> Result<Written, sqlx::Error> {
    // IMMEDIATE: take the write lock now (waiting up to the busy timeout)
    // rather than fail on upgrading a read lock half-way through.
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let mut rejections = Rejections::default();
    let mut start = 0;
    while start < rows.n_events {
        let end = (start + ROWS_PER_STATEMENT).min(rows.n_events);
        insert_events(conn, rows.events, start..end, mode, &mut rejections).await?;
        start = end;
    }
    let rejected_events = rejections.rows as usize;
    let mut start = 0;
    while start < rows.n_commands {
        let end = (start + ROWS_PER_STATEMENT).min(rows.n_commands);
        insert_commands(conn, rows.commands, start..end, mode, &mut rejections).await?;
        start = end;
    }
    let rejected_commands = rejections.rows as usize - rejected_events;
    for (id, ended_at) in rows.ends {
        sqlx::query(END_SESSION_SQL).bind(ended_at.as_str()).bind(*id).execute(&mut *conn).await?;
    }
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok((rejected_events, rejected_commands, rejections))
}

const EVENT_COLUMNS: &str = "events (session_id, seq, t_ns, kind, connection, body)";
const COMMAND_COLUMNS: &str = "commands (session_id, seq, t_ns, body)";

fn insert_into(mode: Mode, table_and_columns: &str) -> String {
    match mode {
        Mode::Fast => format!("INSERT OR ROLLBACK INTO {table_and_columns} "),
        Mode::Careful => format!("INSERT INTO {table_and_columns} "),
    }
}

/// Inserts `rows` of `events` in one statement. In careful mode, if the
/// database refuses one of them for good, SQLite undoes just that statement
/// (the transaction goes on), and the rows are inserted one by one to drop
/// only the culprits.
async fn insert_events(
    conn: &mut SqliteConnection,
    events: &VecDeque<EventRecord>,
    rows: std::ops::Range<usize>,
    mode: Mode,
    rejections: &mut Rejections,
) -> Result<(), sqlx::Error> {
    // Full-size statements are prepared once and cached; a shorter tail is
    // not, since its text varies and would churn the statement cache.
    let persistent = rows.len() == ROWS_PER_STATEMENT;
    let mut qb = QueryBuilder::<Sqlite>::new(insert_into(mode, EVENT_COLUMNS));
    qb.push_values(events.range(rows.clone()), |mut b, r| {
        b.push_bind(r.session_id)
            .push_bind(r.seq)
            .push_bind(r.t_ns)
            .push_bind(r.kind)
            .push_bind(r.connection)
            .push_bind(&*r.body);
    });
    match qb.build().persistent(persistent).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(e) if mode == Mode::Careful && is_permanent(&e) => {
            for r in events.range(rows) {
                let one = sqlx::query(
                    "INSERT INTO events (session_id, seq, t_ns, kind, connection, body) VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(r.session_id)
                .bind(r.seq)
                .bind(r.t_ns)
                .bind(r.kind)
                .bind(r.connection)
                .bind(&*r.body)
                .execute(&mut *conn)
                .await;
                match one {
                    Ok(_) => {}
                    Err(e) if is_permanent(&e) => rejections.add(e, "event", r.session_id, r.seq),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// As [`insert_events`], for commands.
async fn insert_commands(
    conn: &mut SqliteConnection,
    commands: &VecDeque<CommandRecord>,
    rows: std::ops::Range<usize>,
    mode: Mode,
    rejections: &mut Rejections,
) -> Result<(), sqlx::Error> {
    let persistent = rows.len() == ROWS_PER_STATEMENT;
    let mut qb = QueryBuilder::<Sqlite>::new(insert_into(mode, COMMAND_COLUMNS));
    qb.push_values(commands.range(rows.clone()), |mut b, r| {
        b.push_bind(r.session_id).push_bind(r.seq).push_bind(r.t_ns).push_bind(r.body.as_str());
    });
    match qb.build().persistent(persistent).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(e) if mode == Mode::Careful && is_permanent(&e) => {
            for r in commands.range(rows) {
                let one = sqlx::query("INSERT INTO commands (session_id, seq, t_ns, body) VALUES (?, ?, ?, ?)")
                    .bind(r.session_id)
                    .bind(r.seq)
                    .bind(r.t_ns)
                    .bind(r.body.as_str())
                    .execute(&mut *conn)
                    .await;
                match one {
                    Ok(_) => {}
                    Err(e) if is_permanent(&e) => rejections.add(e, "command", r.session_id, r.seq),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::temp_store;
    use super::super::{EventFilter, EventRow};
    use super::*;

    const KINDS: [&str; 4] = ["segment_sent", "segment_delivered", "state_changed", "timer_fired"];

    /// A deterministic event: its kind, connection and body follow from (session, seq).
    fn event(session_id: i64, seq: i64) -> EventRecord {
        let kind = KINDS[(seq % 4) as usize];
        let connection = if seq % 5 == 0 { None } else { Some(seq % 7) };
        let body = format!(r#"{{"seq":{seq},"session":{session_id},"kind":"{kind}","connection":{connection:?}}}"#);
        EventRecord { session_id, seq, t_ns: seq * 1_000, kind, connection, body: body.into() }
    }

    fn row(rec: &EventRecord) -> EventRow {
        EventRow {
            seq: rec.seq,
            t_ns: rec.t_ns,
            kind: rec.kind.to_owned(),
            connection: rec.connection,
            body: rec.body.to_string(),
        }
    }

    /// Every row `filter` selects, paging with `page` rows per query.
    async fn read_all(store: &Store, session_id: i64, filter: &EventFilter, page: i64) -> Vec<EventRow> {
        let mut all = Vec::new();
        let mut filter = EventFilter { limit: page, ..filter.clone() };
        loop {
            let rows = store.events(session_id, &filter).await.expect("events");
            let Some(last) = rows.last() else { return all };
            assert!(rows.len() as i64 <= page);
            filter.after_seq = last.seq;
            all.extend(rows);
        }
    }

    #[tokio::test]
    async fn writes_100_000_events_across_3_sessions_and_reads_them_back_filtered() {
        let (_dir, store) = temp_store().await;
        let mut ids = Vec::new();
        for name in ["a", "b", "c"] {
            ids.push(store.create_session(name, "{}", "2026-11-25T10:00:00Z").await.expect("create"));
        }
        let counts = [50_000_i64, 30_000, 20_000];
        let writer = store.spawn_writer();
        // Interleave the sessions as concurrent actors would: batches of
        // varying size, and now and then a single event.
        let mut next = [1_i64; 3];
        let mut round = 0_i64;
        while (0..3).any(|s| next[s] <= counts[s]) {
            for s in 0..3 {
                let size = [1, 37, 250, 1_000][((round + s as i64) % 4) as usize];
                let end = (next[s] + size - 1).min(counts[s]);
                if next[s] > end {
                    continue;
                }
                if size == 1 {
                    writer.event(event(ids[s], next[s]));
                } else {
                    writer.events((next[s]..=end).map(|seq| event(ids[s], seq)).collect());
                }
                next[s] = end + 1;
            }
            round += 1;
        }
        writer.flush().await.expect("flush");
        let stats = writer.stats();
        assert_eq!((stats.events_persisted, stats.pending, stats.rejected, stats.write_errors), (100_000, 0, 0, 0));
        assert!(stats.batches >= 5, "at most 20,000 rows per transaction: {stats:?}");

        for (s, &id) in ids.iter().enumerate() {
            let n = counts[s];
            let expected: Vec<EventRow> = (1..=n).map(|seq| row(&event(id, seq))).collect();
            // Everything, gap-free, bodies intact.
            let all = read_all(&store, id, &EventFilter::default(), 1_000).await;
            assert_eq!(all.len() as i64, n);
            assert!(all.iter().zip(1..).all(|(r, seq)| r.seq == seq));
            assert!(all == expected, "session {id}: rows differ from what was sent");
            assert_eq!(store.max_event_seq(id).await.expect("max"), n);
            assert_eq!(store.get_session(id).await.expect("get").expect("exists").event_count, n);

            // after_seq and limit.
            let page = store.events(id, &EventFilter { after_seq: 100, limit: 7, ..Default::default() }).await;
            assert_eq!(page.expect("events"), expected[100..107]);
            let tail = store.events(id, &EventFilter { after_seq: n - 3, limit: 10, ..Default::default() }).await;
            assert_eq!(tail.expect("events"), expected[(n - 3) as usize..]);
            let none = store.events(id, &EventFilter { after_seq: 5, limit: 0, ..Default::default() }).await;
            assert_eq!(none.expect("events"), Vec::new());

            // Kinds.
            let kinds = vec!["segment_sent".to_owned(), "timer_fired".to_owned()];
            let got = read_all(&store, id, &EventFilter { kinds: kinds.clone(), ..Default::default() }, 777).await;
            let want: Vec<_> = expected.iter().filter(|r| kinds.contains(&r.kind)).cloned().collect();
            assert_eq!(got.len(), want.len());
            assert!(got == want);

            // Connection.
            let got = read_all(&store, id, &EventFilter { connection: Some(3), ..Default::default() }, 500).await;
            let want: Vec<_> = expected.iter().filter(|r| r.connection == Some(3)).cloned().collect();
            assert!(!want.is_empty() && got == want);

            // Both, starting part-way.
            let filter = EventFilter {
                after_seq: 1_234,
                limit: 0,
                kinds: vec!["state_changed".to_owned()],
                connection: Some(6),
            };
            let got = read_all(&store, id, &filter, 100).await;
            let want: Vec<_> = expected
                .iter()
                .filter(|r| r.seq > 1_234 && r.kind == "state_changed" && r.connection == Some(6))
                .cloned()
                .collect();
            assert!(!want.is_empty() && got == want);
        }
        let stats = writer.shutdown().await.expect("shutdown");
        assert_eq!(stats.events_persisted, 100_000);
    }

    #[tokio::test]
    async fn events_sent_before_a_flush_are_visible_right_after_it() {
        let (_dir, store) = temp_store().await;
        let id = store.create_session("s", "{}", "t0").await.expect("create");
        let writer = store.spawn_writer();
        let other = writer.clone();
        for seq in 1..=200 {
            writer.event(event(id, seq));
            if seq % 3 == 0 {
                other.command(CommandRecord {
                    session_id: id,
                    seq: seq / 3,
                    t_ns: seq,
                    body: format!("{{\"n\":{seq}}}"),
                });
            }
            // Through another clone: the barrier still comes after the event.
            other.flush().await.expect("flush");
            assert_eq!(store.max_event_seq(id).await.expect("max"), seq);
        }
        let commands = store.commands(id, 60, 100).await.expect("commands");
        assert_eq!(commands.iter().map(|c| c.seq).collect::<Vec<_>>(), (61..=66).collect::<Vec<_>>());
        assert_eq!(commands[0].body, r#"{"n":183}"#);
        assert_eq!(writer.stats().commands_persisted, 66);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_each_see_their_own_events_after_flushing() {
        let (_dir, store) = temp_store().await;
        let writer = store.spawn_writer();
        let mut tasks = Vec::new();
        for s in 0..3 {
            let id = store.create_session(&format!("s{s}"), "{}", "t0").await.expect("create");
            let (store, writer) = (store.clone(), writer.clone());
            tasks.push(tokio::spawn(async move {
                for round in 0..20_i64 {
                    writer.events((1..=500).map(|i| event(id, round * 500 + i)).collect());
                    if round % 5 == 4 {
                        writer.flush().await.expect("flush");
                        assert_eq!(store.max_event_seq(id).await.expect("max"), (round + 1) * 500);
                    }
                    tokio::task::yield_now().await;
                }
                id
            }));
        }
        for task in tasks {
            let id = task.await.expect("sender");
            let all = read_all(&store, id, &EventFilter::default(), 5_000).await;
            assert!(all.len() == 10_000 && all.iter().zip(1..).all(|(r, seq)| r == &row(&event(id, seq))));
        }
        assert_eq!(writer.stats().events_persisted, 30_000);
    }

    #[tokio::test]
    async fn committed_pages_are_checkpointed_into_the_database_file() {
        let (dir, store) = temp_store().await;
        let id = store.create_session("s", "{}", "t0").await.expect("create");
        let file = dir.path().join("lab.db");
        let before = std::fs::metadata(&file).expect("db file").len();
        let writer = store.spawn_writer();
        // More than CHECKPOINT_ROWS, so the checkpointer runs at once.
        writer.events((1..=30_000).map(|seq| event(id, seq)).collect());
        writer.flush().await.expect("flush");
        for _ in 0..300 {
            // Until checkpointed, new pages live only in the WAL.
            if std::fs::metadata(&file).expect("db file").len() > before + 4_000_000 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the database file did not grow: no checkpoint");
    }

    #[tokio::test]
    async fn ending_through_the_writer_comes_after_the_sessions_events() {
        let (_dir, store) = temp_store().await;
        let a = store.create_session("a", "{}", "t0").await.expect("create");
        let b = store.create_session("b", "{}", "t0").await.expect("create");
        let writer = store.spawn_writer();
        writer.events((1..=30_000).map(|seq| event(a, seq)).collect());
        writer.end_session(a, "t1".into());
        writer.events((1..=10).map(|seq| event(b, seq)).collect());
        writer.end_session(a, "t2".into()); // twice: the first end stays
        writer.flush().await.expect("flush");
        let row = store.get_session(a).await.expect("get").expect("exists");
        assert_eq!((row.status.as_str(), row.ended_at.as_deref(), row.event_count), ("ended", Some("t1"), 30_000));
        let row = store.get_session(b).await.expect("get").expect("exists");
        assert_eq!((row.status.as_str(), row.event_count), ("live", 10));
    }

    #[tokio::test]
    async fn shutdown_commits_everything_queued_then_refuses_more() {
        let (_dir, store) = temp_store().await;
        let id = store.create_session("s", "{}", "t0").await.expect("create");
        let writer = store.spawn_writer();
        let late = writer.clone();
        for chunk in 0..50 {
            writer.events((1..=1_000).map(|i| event(id, chunk * 1_000 + i)).collect());
        }
        writer.end_session(id, "t1".into());
        let stats = writer.shutdown().await.expect("shutdown");
        assert_eq!((stats.events_persisted, stats.pending), (50_000, 0));
        assert_eq!(store.max_event_seq(id).await.expect("max"), 50_000);
        assert_eq!(store.get_session(id).await.expect("get").expect("exists").status, "ended");

        late.event(event(id, 50_001));
        assert_eq!(late.stats().dropped, 1);
        assert_eq!(late.stats().pending, 0);
        assert!(matches!(late.flush().await, Err(StoreError::WriterClosed)));
        assert!(matches!(late.shutdown().await, Err(StoreError::WriterClosed)));
        assert_eq!(store.max_event_seq(id).await.expect("max"), 50_000);
    }

    #[tokio::test]
    async fn dropping_every_handle_still_commits_what_was_sent() {
        let (_dir, store) = temp_store().await;
        let id = store.create_session("s", "{}", "t0").await.expect("create");
        let writer = store.spawn_writer();
        writer.events((1..=5_000).map(|seq| event(id, seq)).collect());
        drop(writer);
        for _ in 0..200 {
            if store.max_event_seq(id).await.expect("max") == 5_000 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the writer did not drain after its handles were dropped");
    }

    #[tokio::test]
    async fn a_duplicate_row_is_rejected_alone_and_reported_once() {
        let (_dir, store) = temp_store().await;
        let id = store.create_session("s", "{}", "t0").await.expect("create");
        let writer = store.spawn_writer();
        writer.events((1..=10).map(|seq| event(id, seq)).collect());
        writer.flush().await.expect("flush");
        // seq 5 again (already stored), and 600 twice within one batch.
        let mut batch: Vec<_> = (11..=1_000).map(|seq| event(id, seq)).collect();
        batch.insert(300, event(id, 5));
        batch.push(event(id, 600));
        writer.events(batch);
        writer.command(CommandRecord { session_id: id, seq: 1, t_ns: 0, body: "{}".into() });
        writer.command(CommandRecord { session_id: id, seq: 1, t_ns: 0, body: "{}".into() });
        match writer.flush().await {
            Err(StoreError::Rejected { rows: 3, .. }) => {}
            other => panic!("expected 3 rejected rows, got {other:?}"),
        }
        writer.flush().await.expect("reported once; nothing new since");
        let all = read_all(&store, id, &EventFilter::default(), 10_000).await;
        assert!(all.iter().zip(1..).all(|(r, seq)| r.seq == seq) && all.len() == 1_000);
        assert_eq!(store.commands(id, 0, 10).await.expect("commands").len(), 1);
        let stats = writer.stats();
        assert_eq!((stats.events_persisted, stats.commands_persisted, stats.rejected, stats.pending), (1_000, 1, 3, 0));
        // The writer goes on.
        writer.event(event(id, 1_001));
        writer.flush().await.expect("flush");
        assert_eq!(store.max_event_seq(id).await.expect("max"), 1_001);
    }

    #[tokio::test]
    async fn a_failing_batch_is_held_reported_and_written_once_the_database_recovers() {
        let (_dir, store) = temp_store().await;
        let id = store.create_session("s", "{}", "t0").await.expect("create");
        // Fault injection: inserting event 900 fails while the switch is on,
        // after the statements for events 1..=750 of the same transaction
        // succeeded (so the rollback must undo them).
        for sql in [
            "CREATE TABLE fault_switch (on_ INTEGER NOT NULL)",
            "INSERT INTO fault_switch VALUES (1)",
            "CREATE TRIGGER inject_fault BEFORE INSERT ON events \
             WHEN NEW.seq = 900 AND (SELECT on_ FROM fault_switch) = 1 \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
        ] {
            sqlx::query(sql).execute(&store.pool).await.expect("set up fault");
        }
        let config = WriterConfig {
            attempts: 3,
            first_backoff: Duration::from_millis(1),
            idle_retry: Duration::from_millis(30),
            ..WriterConfig::default()
        };
        let writer = store.spawn_writer_with(config);
        writer.events((1..=2_000).map(|seq| event(id, seq)).collect());
        writer.command(CommandRecord { session_id: id, seq: 1, t_ns: 0, body: "{}".into() });
        writer.end_session(id, "t1".into());
        match writer.flush().await {
            Err(StoreError::WriteFailed { unpersisted: 2_001, .. }) => {}
            other => panic!("expected a write failure holding 2001 rows, got {other:?}"),
        }
        let stats = writer.stats();
        assert_eq!((stats.pending, stats.events_persisted), (2_001, 0));
        assert!(stats.write_errors >= 3);
        assert_eq!(store.max_event_seq(id).await.expect("max"), 0, "nothing of the failed batch remains");
        assert_eq!(store.get_session(id).await.expect("get").expect("exists").status, "live");

        // More rows while failing are held too, in order.
        writer.events((2_001..=2_500).map(|seq| event(id, seq)).collect());
        assert!(matches!(writer.flush().await, Err(StoreError::WriteFailed { unpersisted: 2_501, .. })));

        sqlx::query("UPDATE fault_switch SET on_ = 0").execute(&store.pool).await.expect("clear fault");
        // The idle retry writes them without any new message.
        for _ in 0..300 {
            if writer.stats().pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        writer.flush().await.expect("recovered");
        let stats = writer.stats();
        assert_eq!((stats.events_persisted, stats.commands_persisted, stats.pending, stats.rejected), (2_500, 1, 0, 0));
        let all = read_all(&store, id, &EventFilter::default(), 10_000).await;
        assert!(all.len() == 2_500 && all.iter().zip(1..).all(|(r, seq)| r.seq == seq && r == &row(&event(id, seq))));
        assert_eq!(store.get_session(id).await.expect("get").expect("exists").status, "ended");
    }

    #[tokio::test]
    async fn shutdown_reports_rows_it_could_not_write() {
        let (_dir, store) = temp_store().await;
        let id = store.create_session("s", "{}", "t0").await.expect("create");
        sqlx::query("CREATE TRIGGER always_fail BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'down'); END")
            .execute(&store.pool)
            .await
            .expect("set up fault");
        let config = WriterConfig { attempts: 2, first_backoff: Duration::from_millis(1), ..WriterConfig::default() };
        let writer = store.spawn_writer_with(config);
        writer.events((1..=10).map(|seq| event(id, seq)).collect());
        assert!(matches!(writer.shutdown().await, Err(StoreError::WriteFailed { unpersisted: 10, .. })));
    }

    /// CPU seconds each thread of this process has used so far (Linux;
    /// empty elsewhere), to tell the writer's own cost from the machine's
    /// noise.
    fn thread_cpu() -> std::collections::HashMap<String, f64> {
        let mut out = std::collections::HashMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
            let name = format!("{}#{}", &stat[open + 1..close], task.file_name().to_string_lossy());
            out.insert(name, (ticks(11) + ticks(12)) as f64 / 100.0);
        }
        out
    }

    /// Sends `per_session` events for each of 4 sessions (~330-byte bodies,
    /// batches of 256, interleaved) and times send + flush.
    async fn measure(per_session: i64) {
        let (_dir, store) = temp_store().await;
        let mut ids = Vec::new();
        for s in 0..4 {
            ids.push(store.create_session(&format!("s{s}"), "{}", "t0").await.expect("create"));
        }
        let body = |seq: i64, kind: &str, c: i64| -> Arc<str> {
            format!(
                r#"{{"seq":{seq},"t_ns":{t},"kind":"{kind}","connection":{c},"side":"client","segment":{{"src":"10.0.0.1:{p}","dst":"10.0.0.2:80","seq":{sn},"ack":{an},"flags":"PSH|ACK","window":65535,"len":1448,"options":{{"mss":null,"wscale":null,"sack_permitted":false,"timestamps":[{t},{seq}]}}}},"link":"client-server"}}"#,
                t = seq * 10_000,
                p = 49_152 + c,
                sn = (seq * 1448) & 0xffff_ffff,
                an = seq * 7,
            )
            .into()
        };
        let mut batches = Vec::new();
        for start in (1..=per_session).step_by(256) {
            for &id in &ids {
                batches.push(
                    (start..(start + 256).min(per_session + 1))
                        .map(|seq| {
                            let kind = KINDS[(seq % 4) as usize];
                            EventRecord {
                                session_id: id,
                                seq,
                                t_ns: seq * 10_000,
                                kind,
                                connection: Some(seq % 16),
                                body: body(seq, kind, seq % 16),
                            }
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
        let total = 4 * per_session;
        let writer = store.spawn_writer();
        let cpu_before = thread_cpu();
        let start = std::time::Instant::now();
        for batch in batches {
            writer.events(batch);
        }
        writer.flush().await.expect("flush");
        let elapsed = start.elapsed();
        let mut cpu: Vec<(String, f64)> = thread_cpu()
            .into_iter()
            .map(|(name, secs)| {
                let before = cpu_before.get(&name).copied().unwrap_or(0.0);
                (name, secs - before)
            })
            .filter(|(_, secs)| *secs >= 0.01)
            .collect();
        cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
        let stats = writer.shutdown().await.expect("shutdown");
        assert_eq!(stats.events_persisted, total as u64);
        let writer_cpu = cpu.first().map_or(0.0, |c| c.1);
        println!(
            "store writer: {total} events (~{} B bodies) in {:.3} s: {:.0} events/s; {} transactions; \
             busiest thread {:.2} CPU-s ({:.0} events per CPU-s); threads {cpu:?}",
            body(100_000, "segment_sent", 7).len(),
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64(),
            stats.batches,
            writer_cpu,
            total as f64 / writer_cpu.max(0.01),
        );
    }

    /// Throughput of a burst, for when `benches/store.rs` cannot be run:
    /// `cargo test --release --lib store -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "a measurement; run in release"]
    async fn throughput_200k() {
        measure(50_000).await;
    }

    /// Sustained throughput: long enough for checkpoints to run alongside.
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "a measurement; run in release"]
    async fn throughput_sustained_2m() {
        measure(500_000).await;
    }
}
