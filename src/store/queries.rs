//! Reads, and the writes too rare to need batching (sessions' lifecycle).

use sqlx::{QueryBuilder, Sqlite};

use super::{Store, StoreError};

/// Most kinds one [`EventFilter`] may name. Each costs an index range read
/// (and 4 bound variables); the set of event kinds is far smaller, so more
/// means a confused caller.
const MAX_FILTER_KINDS: usize = 64;

/// A session as stored, for listing sessions and for showing ended ones
/// (whose actor, and in-memory state, is gone).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    /// The session's id, assigned by [`Store::create_session`].
    pub id: i64,
    /// The user-given name.
    pub name: String,
    /// The session's specification as JSON (seed, clock, speed, profile, ...).
    pub spec: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// End time, RFC 3339; `None` while live.
    pub ended_at: Option<String>,
    /// `"live"` or `"ended"`.
    pub status: String,
    /// The highest persisted event seq (0 when none). Seqs start at 1 without
    /// gaps, so this is also the number of persisted events.
    pub event_count: i64,
}

/// One persisted event, in the shape the API needs to page through a log.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    /// Position in the session's log, from 1 without gaps.
    pub seq: i64,
    /// Virtual time in nanoseconds.
    pub t_ns: i64,
    /// The event's `kind` tag.
    pub kind: String,
    /// The connection it belongs to, if any.
    pub connection: Option<i64>,
    /// The whole event as JSON, as it was published live.
    pub body: String,
}

/// One persisted user command, so that a session's inputs can be replayed or
/// audited after it ended.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CommandRow {
    /// Position in the session's command list, from 1 without gaps.
    pub seq: i64,
    /// Virtual time in nanoseconds when it was applied.
    pub t_ns: i64,
    /// The command as JSON.
    pub body: String,
}

/// Which events [`Store::events`] returns: one page of a session's log,
/// narrowed the ways the API allows, using the matching index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events with `seq > after_seq` (0: from the start). The next page
    /// starts after the last seq of this one.
    pub after_seq: i64,
    /// At most this many rows; must be ≥ 0. Callers apply their own maximum.
    pub limit: i64,
    /// Only these kinds; empty means every kind. At most 64 (duplicates count once).
    pub kinds: Vec<String>,
    /// Only events of this connection.
    pub connection: Option<i64>,
}

impl Default for EventFilter {
    /// Every event from the start, 1000 at a time.
    fn default() -> Self {
        EventFilter { after_seq: 0, limit: 1000, kinds: Vec::new(), connection: None }
    }
}

/// Negative limits mean "unlimited" to SQLite: refuse them rather than
/// return a whole log to a caller that made an arithmetic mistake.
fn check_non_negative(what: &str, value: i64) -> Result<(), StoreError> {
    if value < 0 {
        return Err(StoreError::InvalidArgument(format!("{what} must be >= 0, got {value}")));
    }
    Ok(())
}

const SESSION_COLUMNS: &str = "s.id, s.name, s.spec, s.created_at, s.ended_at, s.status, \
     (SELECT COALESCE(MAX(e.seq), 0) FROM events e WHERE e.session_id = s.id) AS event_count";

impl Store {
    /// Records a new, live session and returns its id, which names the
    /// session everywhere (API, events, commands) from then on.
    ///
    /// # Errors
    /// A database failure, or `spec_json` is not valid JSON (a `CHECK`).
    pub async fn create_session(&self, name: &str, spec_json: &str, created_at: &str) -> Result<i64, StoreError> {
        let done = sqlx::query("INSERT INTO sessions (name, spec, created_at, status) VALUES (?, ?, ?, 'live')")
            .bind(name)
            .bind(spec_json)
            .bind(created_at)
            .execute(&self.pool)
            .await?;
        Ok(done.last_insert_rowid())
    }

    /// Marks a live session ended, directly. Returns whether it was live (an
    /// ended session keeps its first `ended_at`).
    ///
    /// Why both this and [`StoreWriter::end_session`](super::StoreWriter::end_session):
    /// this one is not ordered after events still queued in a writer; use it
    /// only for a session that has no writer traffic (or after a flush).
    ///
    /// # Errors
    /// A database failure.
    pub async fn end_session(&self, id: i64, ended_at: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(END_SESSION_SQL).bind(ended_at).bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// At start-up, ends the sessions a previous run left live (it crashed or
    /// was killed): their actors are gone, so they can never continue.
    /// Returns how many were ended.
    ///
    /// # Errors
    /// A database failure.
    pub async fn mark_live_sessions_ended(&self, ended_at: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE sessions SET status = 'ended', ended_at = ? WHERE status = 'live'")
            .bind(ended_at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// One page of sessions by ascending id, and the total number of
    /// sessions, for the API's session listing.
    ///
    /// # Errors
    /// A negative `limit` or `offset`, or a database failure.
    pub async fn list_sessions(&self, limit: i64, offset: i64) -> Result<(Vec<SessionRow>, i64), StoreError> {
        check_non_negative("limit", limit)?;
        check_non_negative("offset", offset)?;
        // One read transaction: the page and the total come from one snapshot.
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query_as::<_, SessionRow>(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s ORDER BY s.id LIMIT ? OFFSET ?"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok((rows, total))
    }

    /// One session, live or ended, or `None` if there is no such id.
    ///
    /// # Errors
    /// A database failure.
    pub async fn get_session(&self, id: i64) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query_as::<_, SessionRow>(&format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row)
    }

    /// One page of a session's persisted events, by ascending seq, so that a
    /// client can read a log (or catch up before following it live).
    ///
    /// Only what the writer has committed is visible: call
    /// [`StoreWriter::flush`](super::StoreWriter::flush) first to include
    /// everything already sent.
    ///
    /// # Errors
    /// A negative limit, more than 64 kinds, or a database failure.
    pub async fn events(&self, session_id: i64, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        check_non_negative("limit", filter.limit)?;
        let mut kinds: Vec<&str> = filter.kinds.iter().map(String::as_str).collect();
        kinds.sort_unstable();
        kinds.dedup();
        if kinds.len() > MAX_FILTER_KINDS {
            return Err(StoreError::InvalidArgument(format!("at most {MAX_FILTER_KINDS} kinds, got {}", kinds.len())));
        }
        let mut qb = QueryBuilder::new("");
        push_events_query(&mut qb, session_id, filter, &kinds);
        // Cached unless its text varies with the number of kinds.
        let rows = qb.build_query_as::<EventRow>().persistent(kinds.len() <= 1).fetch_all(&self.pool).await?;
        Ok(rows)
    }

    /// The highest persisted event seq of a session (0 when none): where a
    /// reader's catch-up ends, and a session's event count.
    ///
    /// # Errors
    /// A database failure.
    pub async fn max_event_seq(&self, session_id: i64) -> Result<i64, StoreError> {
        let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events WHERE session_id = ?")
            .bind(session_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(max)
    }

    /// One page of a session's commands by ascending seq (after `after_seq`,
    /// at most `limit`), so that what a user did can be reviewed or replayed.
    ///
    /// # Errors
    /// A negative limit, or a database failure.
    pub async fn commands(&self, session_id: i64, after_seq: i64, limit: i64) -> Result<Vec<CommandRow>, StoreError> {
        check_non_negative("limit", limit)?;
        let rows = sqlx::query_as::<_, CommandRow>(
            "SELECT seq, t_ns, body FROM commands WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(session_id)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

/// Appends the query behind [`Store::events`] to `qb`, its plan pinned with `INDEXED BY`
/// (without statistics SQLite's planner prefers the primary key for every
/// filter, which reads the whole log to find a rare kind):
/// - no filter: the primary key range `(session_id, seq > after)`;
/// - a connection (and maybe kinds): that connection's index range, the
///   kinds checked on each row (a connection's events are usually few);
/// - one kind: that kind's index range;
/// - several kinds: one index range per kind, each cut at `limit` rows, merged
///   by seq, so a page costs at most `kinds × limit` rows however long the log.
///
/// `kinds` is sorted and without duplicates (a duplicate arm would repeat rows).
fn push_events_query<'a>(qb: &mut QueryBuilder<'a, Sqlite>, session_id: i64, filter: &EventFilter, kinds: &[&'a str]) {
    const COLUMNS: &str = "seq, t_ns, kind, connection, body";
    match (filter.connection, kinds) {
        (None, []) => {
            qb.push(format!("SELECT {COLUMNS} FROM events WHERE session_id = "));
            qb.push_bind(session_id).push(" AND seq > ").push_bind(filter.after_seq);
        }
        (Some(connection), _) => {
            qb.push(format!(
                "SELECT {COLUMNS} FROM events INDEXED BY events_session_connection_seq WHERE session_id = "
            ));
            qb.push_bind(session_id).push(" AND connection = ").push_bind(connection);
            qb.push(" AND seq > ").push_bind(filter.after_seq);
            if !kinds.is_empty() {
                qb.push(" AND kind IN (");
                let mut list = qb.separated(", ");
                for kind in kinds {
                    list.push_bind(*kind);
                }
                qb.push(")");
            }
        }
        (None, [kind]) => {
            qb.push(format!("SELECT {COLUMNS} FROM events INDEXED BY events_session_kind_seq WHERE session_id = "));
            qb.push_bind(session_id).push(" AND kind = ").push_bind(*kind);
            qb.push(" AND seq > ").push_bind(filter.after_seq);
        }
        (None, kinds) => {
            qb.push(format!("SELECT {COLUMNS} FROM ("));
            for (i, kind) in kinds.iter().enumerate() {
                if i > 0 {
                    qb.push(" UNION ALL ");
                }
                qb.push(format!(
                    "SELECT * FROM (SELECT {COLUMNS} FROM events INDEXED BY events_session_kind_seq WHERE session_id = "
                ));
                qb.push_bind(session_id).push(" AND kind = ").push_bind(*kind);
                qb.push(" AND seq > ").push_bind(filter.after_seq);
                qb.push(" ORDER BY seq LIMIT ").push_bind(filter.limit).push(")");
            }
            qb.push(")");
        }
    }
    qb.push(" ORDER BY seq LIMIT ").push_bind(filter.limit);
}

/// Ends a live session; an ended one keeps its first `ended_at`. Shared with
/// the writer, which runs it inside its batch transaction.
pub(super) const END_SESSION_SQL: &str =
    "UPDATE sessions SET status = 'ended', ended_at = ? WHERE id = ? AND status = 'live'";

#[cfg(test)]
mod tests {
    use super::super::EventRecord;
    use super::super::test_support::temp_store;
    use super::*;

    #[tokio::test]
    async fn sessions_are_created_listed_and_fetched() {
        let (_dir, store) = temp_store().await;
        assert_eq!(store.list_sessions(10, 0).await.expect("list"), (Vec::new(), 0));
        assert_eq!(store.get_session(1).await.expect("get"), None);
        let mut ids = Vec::new();
        for i in 0..5 {
            let spec = format!(r#"{{"seed":{i},"clock":"virtual"}}"#);
            ids.push(
                store
                    .create_session(&format!("s{i}"), &spec, &format!("2026-11-25T10:0{i}:00Z"))
                    .await
                    .expect("create"),
            );
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));

        let row = store.get_session(ids[2]).await.expect("get").expect("exists");
        assert_eq!(
            row,
            SessionRow {
                id: ids[2],
                name: "s2".into(),
                spec: r#"{"seed":2,"clock":"virtual"}"#.into(),
                created_at: "2026-11-25T10:02:00Z".into(),
                ended_at: None,
                status: "live".into(),
                event_count: 0,
            }
        );

        let (page, total) = store.list_sessions(2, 1).await.expect("list");
        assert_eq!(total, 5);
        assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), ids[1..3]);
        let (page, total) = store.list_sessions(10, 4).await.expect("list");
        assert_eq!((page.len(), total), (1, 5));
        let (page, _) = store.list_sessions(10, 50).await.expect("list past the end");
        assert!(page.is_empty());
        let (page, _) = store.list_sessions(0, 0).await.expect("list nothing");
        assert!(page.is_empty());
    }

    #[tokio::test]
    async fn ending_sessions_directly_and_at_start_up() {
        let (_dir, store) = temp_store().await;
        let a = store.create_session("a", "{}", "2026-11-25T10:00:00Z").await.expect("create");
        let b = store.create_session("b", "{}", "2026-11-25T10:00:01Z").await.expect("create");
        let c = store.create_session("c", "{}", "2026-11-25T10:00:02Z").await.expect("create");

        assert!(store.end_session(a, "2026-11-25T11:00:00Z").await.expect("end"));
        assert!(!store.end_session(a, "2026-11-25T12:00:00Z").await.expect("end again"), "already ended");
        assert!(!store.end_session(999, "2026-11-25T12:00:00Z").await.expect("end missing"));
        let row = store.get_session(a).await.expect("get").expect("exists");
        assert_eq!((row.status.as_str(), row.ended_at.as_deref()), ("ended", Some("2026-11-25T11:00:00Z")));

        // A restart: b and c were left live by the previous run.
        assert_eq!(store.mark_live_sessions_ended("2026-11-25T13:00:00Z").await.expect("mark"), 2);
        for id in [b, c] {
            let row = store.get_session(id).await.expect("get").expect("exists");
            assert_eq!((row.status.as_str(), row.ended_at.as_deref()), ("ended", Some("2026-11-25T13:00:00Z")));
        }
        let row = store.get_session(a).await.expect("get").expect("exists");
        assert_eq!(row.ended_at.as_deref(), Some("2026-11-25T11:00:00Z"), "an ended session keeps its end");
        assert_eq!(store.mark_live_sessions_ended("2026-11-25T14:00:00Z").await.expect("mark"), 0);
    }

    #[tokio::test]
    async fn bad_input_is_refused() {
        let (_dir, store) = temp_store().await;
        let id = store.create_session("s", "{}", "t").await.expect("create");
        assert!(matches!(store.create_session("s", "not json", "t").await, Err(StoreError::Database(_))));
        assert!(matches!(store.list_sessions(-1, 0).await, Err(StoreError::InvalidArgument(_))));
        assert!(matches!(store.list_sessions(1, -1).await, Err(StoreError::InvalidArgument(_))));
        let negative = EventFilter { limit: -1, ..Default::default() };
        assert!(matches!(store.events(id, &negative).await, Err(StoreError::InvalidArgument(_))));
        let many =
            EventFilter { kinds: (0..=MAX_FILTER_KINDS).map(|k| format!("k{k}")).collect(), ..Default::default() };
        assert!(matches!(store.events(id, &many).await, Err(StoreError::InvalidArgument(_))));
        assert!(matches!(store.commands(id, 0, -5).await, Err(StoreError::InvalidArgument(_))));
        // Odd but harmless values just match nothing.
        let odd =
            EventFilter { after_seq: i64::MAX, kinds: vec!["'; DROP TABLE events; --".into()], ..Default::default() };
        assert_eq!(store.events(id, &odd).await.expect("events"), Vec::new());
        assert_eq!(store.events(-7, &EventFilter::default()).await.expect("events"), Vec::new());
        assert_eq!(store.max_event_seq(-7).await.expect("max"), 0);
        assert_eq!(store.commands(id, 0, 10).await.expect("commands"), Vec::new());
    }

    #[tokio::test]
    async fn every_event_filter_reads_through_its_index() {
        let (_dir, store) = temp_store().await;
        let by_kind = "USING INDEX events_session_kind_seq (session_id=? AND kind=? AND seq>?)";
        let by_connection = "USING INDEX events_session_connection_seq (session_id=? AND connection=? AND seq>?)";
        let cases: [(Option<i64>, &[&str], &str); 5] = [
            (None, &[], "USING PRIMARY KEY (session_id=? AND seq>?)"),
            (Some(3), &[], by_connection),
            (Some(3), &["a", "b"], by_connection),
            (None, &["a"], by_kind),
            (None, &["a", "b", "c"], by_kind),
        ];
        for (connection, kinds, expected) in cases {
            let filter = EventFilter { connection, ..Default::default() };
            let mut qb = QueryBuilder::new("EXPLAIN QUERY PLAN ");
            push_events_query(&mut qb, 1, &filter, kinds);
            let plan = qb.build_query_as::<(i64, i64, i64, String)>().fetch_all(&store.pool).await.expect("plan");
            let steps: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
            assert!(steps.iter().any(|step| step.contains(expected)), "{connection:?} {kinds:?}: {steps:?}");
            assert!(!steps.iter().any(|step| step.starts_with("SCAN events")), "{connection:?} {kinds:?}: {steps:?}");
        }
    }

    #[tokio::test]
    async fn kind_filters_match_each_row_once() {
        let (_dir, store) = temp_store().await;
        let id = store.create_session("s", "{}", "t").await.expect("create");
        let writer = store.spawn_writer();
        let kinds = ["open", "data", "close"];
        writer.events(
            (1..=90)
                .map(|seq| EventRecord {
                    session_id: id,
                    seq,
                    t_ns: seq,
                    kind: kinds[(seq % 3) as usize],
                    connection: (seq % 2 == 0).then_some(seq % 4),
                    body: format!("{{\"seq\":{seq}}}").into(),
                })
                .collect(),
        );
        writer.flush().await.expect("flush");
        let seqs = |rows: Vec<EventRow>| rows.into_iter().map(|r| r.seq).collect::<Vec<_>>();
        let filter = |kinds: &[&str], connection, after_seq, limit| EventFilter {
            after_seq,
            limit,
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
            connection,
        };
        // One kind; the same kind twice.
        let want: Vec<i64> = (1..=90).filter(|s| s % 3 == 1).collect();
        assert_eq!(seqs(store.events(id, &filter(&["data"], None, 0, 100)).await.expect("events")), want);
        assert_eq!(seqs(store.events(id, &filter(&["data", "data"], None, 0, 100)).await.expect("events")), want);
        // Two kinds, paged: each page is the smallest seqs of either kind.
        let want: Vec<i64> = (1..=90).filter(|s| s % 3 != 0).collect();
        let mut got = Vec::new();
        let mut after = 0;
        loop {
            let page =
                seqs(store.events(id, &filter(&["close", "data", "close"], None, after, 7)).await.expect("events"));
            let Some(&last) = page.last() else { break };
            assert!(page.len() <= 7);
            after = last;
            got.extend(page);
        }
        assert_eq!(got, want);
        // A connection, with and without kinds; events without one never match.
        let want: Vec<i64> = (1..=90).filter(|s| s % 2 == 0 && s % 4 == 2).collect();
        assert_eq!(seqs(store.events(id, &filter(&[], Some(2), 0, 100)).await.expect("events")), want);
        let want: Vec<i64> = want.into_iter().filter(|s| s % 3 != 1).collect();
        assert_eq!(seqs(store.events(id, &filter(&["close", "open"], Some(2), 0, 100)).await.expect("events")), want);
        assert_eq!(store.events(id, &filter(&["nope"], None, 0, 100)).await.expect("events"), Vec::new());
        let _ = writer.shutdown().await;
    }
}
