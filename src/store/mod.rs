//! Persistence of sessions, commands and event logs in SQLite.
//!
//! Why a module of its own: every line of SQL in tcplab lives here, so the
//! schema (in `migrations/`) and the statements that rely on it change
//! together, and the rest of the server sees plain Rust types.
//!
//! # Reads and writes
//! - [`Store`] is a cheap handle on a connection pool. Reads ([`Store::events`],
//!   [`Store::list_sessions`], ...) and rare writes ([`Store::create_session`],
//!   [`Store::mark_live_sessions_ended`]) go straight to SQLite.
//! - The hot path, a session's event log, goes through one [`StoreWriter`]
//!   ([`Store::spawn_writer`]): a single task, on a connection of its own,
//!   that batches whatever is queued into one transaction of multi-row
//!   `INSERT`s. Per-row statements cost ~55 µs each in sqlx (a hop to its
//!   worker thread), which caps them near 17k rows/s; batched, an event costs
//!   the writer ~5-6 µs of CPU, nearly all of it SQLite updating the table
//!   and its two indexes (see `benches/store.rs`).
//!
//! # Durability
//! The database runs in WAL mode with `synchronous=NORMAL`: a committed
//! transaction survives a crash of the process; a power loss may lose the
//! last few transactions but never corrupts the file.

mod queries;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use queries::{CommandRow, EventFilter, EventRow, SessionRow};
pub use writer::{CommandRecord, EventRecord, Persisted, StoreWriter, WriterStats};

/// How long a statement waits for another connection's write lock before
/// failing with `SQLITE_BUSY`. Only the writer task and the rare direct
/// writes contend, and they hold the lock for milliseconds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page size of a new database file (an existing file keeps its own). An
/// event row is ~400 bytes; on 16 KiB pages the B-trees split and rebalance
/// far less often than on the default 4 KiB, which made inserts ~15% cheaper.
const PAGE_SIZE: u32 = 16 * 1024;

/// Connections in the pool, for reads (WAL lets them run beside the
/// writer), the rare direct writes and checkpoints. The writer task has a
/// connection of its own besides these.
const MAX_CONNECTIONS: u32 = 6;

/// Everything that can go wrong in the store, so that callers handle one type
/// and can tell bad input from a database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A statement or the connection failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date (for instance the file was
    /// created by a newer tcplab, or a landed migration was edited).
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A caller-supplied value is out of range (for instance a negative limit,
    /// which SQLite would read as "no limit").
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The writer could not commit some rows even after retrying; they are
    /// still held by the writer, which keeps retrying (or, at shutdown, they
    /// are lost and this is the final word).
    #[error("store writer: {unpersisted} rows not persisted yet: {source}")]
    WriteFailed {
        /// Rows (events and commands) sent but not committed when this was reported.
        unpersisted: u64,
        /// The last error from SQLite.
        source: Arc<sqlx::Error>,
    },
    /// Rows the database refused for good (a duplicate `(session_id, seq)`, a
    /// value breaking a `CHECK`): a bug in the sender. They were dropped so
    /// that the rest of the log could still be written; counted in
    /// [`WriterStats::rejected`].
    #[error("store writer: {rows} rows rejected by the database: {source}")]
    Rejected {
        /// Rows dropped since the previous report.
        rows: u64,
        /// The first refusal.
        source: Arc<sqlx::Error>,
    },
    /// The writer task has shut down (or its runtime has), so nothing sent
    /// now can be persisted.
    #[error("store writer has shut down")]
    WriterClosed,
}

/// The handle on tcplab's database; cloning is cheap (it shares the pool).
///
/// Why a wrapper instead of a bare pool: it guarantees the pragmas and the
/// schema (migrations run in [`Store::open`]) and keeps SQL out of callers.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating it if missing) and migrates the database at `path`, so
    /// that the server starts on an up-to-date schema or not at all.
    ///
    /// Every connection uses WAL (readers never block the writer),
    /// `synchronous=NORMAL` (no fsync per commit; crash-safe) and a busy
    /// timeout. A new file gets 16 KiB pages.
    ///
    /// # Errors
    /// The file cannot be opened or created, or a migration fails.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .page_size(PAGE_SIZE);
        let pool = SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Store { pool })
    }

    /// Closes the pool's connections, for a clean shutdown or before reopening
    /// the same file; queries after this fail. (A writer's own connection
    /// closes when it shuts down: shut it down first.)
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A fresh store in a temporary directory, for tests here and elsewhere.

    use super::Store;

    /// Opens a new store in a new temporary directory (kept alive by the
    /// returned guard).
    pub(crate) async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("lab.db")).await.expect("open store");
        (dir, store)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::test_support::temp_store;
    use super::*;

    #[tokio::test]
    async fn open_creates_a_wal_database_and_reopening_keeps_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested-name.db");
        let store = Store::open(&path).await.expect("open");
        assert!(path.exists());
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&store.pool).await.expect("pragma");
        assert_eq!(mode, "wal");
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&store.pool).await.expect("pragma");
        assert_eq!(page_size, i64::from(PAGE_SIZE));

        let id = store.create_session("keep", r#"{"seed":7}"#, "2026-11-25T10:00:00Z").await.expect("create");
        let writer = store.spawn_writer();
        let body: Arc<str> = Arc::from(r#"{"kind":"tick"}"#);
        writer.events(
            (1..=500)
                .map(|seq| EventRecord {
                    session_id: id,
                    seq,
                    t_ns: seq * 10,
                    kind: "tick",
                    connection: None,
                    body: body.clone(),
                })
                .collect(),
        );
        writer.command(CommandRecord { session_id: id, seq: 1, t_ns: 0, body: r#"{"cmd":"run"}"#.into() });
        writer.end_session(id, "2026-11-25T10:05:00Z".into());
        let stats = writer.shutdown().await.expect("shutdown");
        assert_eq!((stats.events_persisted, stats.commands_persisted, stats.pending), (500, 1, 0));
        store.close().await;
        drop(store);

        let store = Store::open(&path).await.expect("reopen (migrations already applied)");
        let row = store.get_session(id).await.expect("get").expect("session kept");
        assert_eq!(row.name, "keep");
        assert_eq!(row.spec, r#"{"seed":7}"#);
        assert_eq!(row.status, "ended");
        assert_eq!(row.ended_at.as_deref(), Some("2026-11-25T10:05:00Z"));
        assert_eq!(row.event_count, 500);
        assert_eq!(store.max_event_seq(id).await.expect("max"), 500);
        let events = store.events(id, &EventFilter { limit: 1000, ..Default::default() }).await.expect("events");
        assert_eq!(events.len(), 500);
        assert!(events.iter().zip(1..).all(|(e, seq)| e.seq == seq && e.t_ns == seq * 10 && *e.body == *body));
        let commands = store.commands(id, 0, 10).await.expect("commands");
        assert_eq!(commands, vec![CommandRow { seq: 1, t_ns: 0, body: r#"{"cmd":"run"}"#.into() }]);
        // A new session after reopening gets a new id.
        let next = store.create_session("next", "{}", "2026-11-25T11:00:00Z").await.expect("create");
        assert!(next > id);
    }

    #[tokio::test]
    async fn a_store_is_shared_by_clones() {
        let (_dir, store) = temp_store().await;
        let other = store.clone();
        let id = store.create_session("s", "{}", "t").await.expect("create");
        assert!(other.get_session(id).await.expect("get").is_some());
    }
}
