-- tcplab's initial schema.
--
-- Never edit this file once it has landed: sqlx records its checksum, and a
-- changed migration makes every existing database refuse to start. Add a new
-- `<version>_<name>.sql` file instead.
--
-- Tables are STRICT (SQLite >= 3.37, bundled by sqlx) so that a wrongly typed
-- value is an error instead of being silently stored with another type.

-- One row per simulated network (lab session), live or ended.
CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: an id is never reused, even after deletion
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL CHECK (json_valid(spec)),  -- JSON: seed, clock, speed, profile, ...
    created_at TEXT NOT NULL,                           -- RFC 3339 wall time
    ended_at   TEXT NULL,                               -- RFC 3339 wall time; set exactly when status is 'ended'
    status     TEXT NOT NULL CHECK (status IN ('live', 'ended')),
    CHECK ((status = 'live') = (ended_at IS NULL))
) STRICT;

-- Every command a user sent to a session, in order (seq from 1, no gaps).
CREATE TABLE commands (
    session_id INTEGER NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    t_ns       INTEGER NOT NULL,  -- the session's virtual time when the command was applied
    body       TEXT NOT NULL,     -- the command as JSON
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID, STRICT;

-- Every event of a session's numbered log (seq from 1, no gaps).
CREATE TABLE events (
    session_id INTEGER NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    t_ns       INTEGER NOT NULL,  -- virtual time in nanoseconds
    kind       TEXT NOT NULL,     -- the event's `kind` tag, for filtering
    connection INTEGER NULL,      -- the connection the event belongs to, if any, for filtering
    body       TEXT NOT NULL,     -- the whole event as JSON
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID, STRICT;

-- "events of these kinds after seq N, in order".
CREATE INDEX events_session_kind_seq ON events (session_id, kind, seq);

-- "events of connection C after seq N, in order". Partial: events without a
-- connection never match `connection = ?`, so they need no entry.
CREATE INDEX events_session_connection_seq ON events (session_id, connection, seq) WHERE connection IS NOT NULL;
