//! The world's connection bookkeeping: which two TCP endpoints (on which
//! hosts) make one connection, the listeners, and what each end received.
//!
//! Why a part of its own: the engine knows endpoints, not connections. A
//! connection is the world's idea (an id the user names, a client end and a
//! server end that may live on different hosts), and pairing the ends is a
//! small protocol of its own: a client end waits in `pending_clients` until
//! a listener's endpoint with the same four-tuple answers its SYN. Each
//! endpoint carries its connection and side in the stack's user data, as a
//! tag made and read only here.

use std::net::Ipv4Addr;

use rustc_hash::FxHashMap;

use super::{HostId, WorldError};
use crate::engine::{ListenerId, SocketId, State, TcbStatus};
use crate::sim::event::{ConnId, Side};

/// (client ip, client port, server ip, server port).
pub(super) type FourTuple = (Ipv4Addr, u16, Ipv4Addr, u16);

/// One end of a connection, as the world tracks it.
#[derive(Clone, Debug)]
pub struct End {
    /// The host it lives on.
    pub host: HostId,
    socket: Option<SocketId>,
    /// Its state (kept after the TCB is deleted).
    pub state: State,
    /// The TCB as it was when it reached CLOSED. Boxed because every open
    /// end carries the slot and only closed ones fill it: inline it would
    /// cost each idle connection two full statuses.
    final_status: Option<Box<TcbStatus>>,
    /// Everything received, in order (when the world keeps data).
    pub received: Vec<u8>,
    /// Count of octets received.
    pub received_total: u64,
    /// Whether the application reads everything as soon as it arrives.
    pub auto_read: bool,
    /// ISS, to pair a listener's endpoint with the client that sent the SYN.
    iss: u32,
}

impl End {
    /// A new end on `host`'s endpoint `socket`, in `state`, that sent `iss`.
    pub(super) fn new(host: HostId, socket: SocketId, state: State, iss: u32, auto_read: bool) -> End {
        End {
            host,
            socket: Some(socket),
            state,
            final_status: None,
            received: Vec::new(),
            received_total: 0,
            auto_read,
            iss,
        }
    }

    /// Its endpoint in the host's stack, until it is CLOSED and released.
    pub(super) fn socket(&self) -> Option<SocketId> {
        self.socket
    }

    /// Its last status, once CLOSED.
    pub(super) fn final_status(&self) -> Option<&TcbStatus> {
        self.final_status.as_deref()
    }
}

/// A connection: up to two ends that talk to each other.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Its id.
    pub id: ConnId,
    /// The active opener.
    pub client: Option<End>,
    /// The listener's endpoint (or the second opener of a simultaneous open).
    pub server: Option<End>,
    /// The listener whose SYN made the server end, if one did.
    pub listener: Option<u64>,
    /// Whether the user took it with [`World::accept`](super::World::accept).
    pub accepted: bool,
}

impl Connection {
    /// One end.
    pub fn end(&self, side: Side) -> Option<&End> {
        match side {
            Side::Client => self.client.as_ref(),
            Side::Server => self.server.as_ref(),
        }
    }

    fn end_mut(&mut self, side: Side) -> Option<&mut End> {
        match side {
            Side::Client => self.client.as_mut(),
            Side::Server => self.server.as_mut(),
        }
    }
}

/// A listening port.
#[derive(Clone, Debug)]
pub struct ListenerRecord {
    /// Its id (from 1).
    pub id: u64,
    /// The host.
    pub host: HostId,
    /// The port.
    pub port: u16,
    /// `false` once closed.
    pub open: bool,
    /// At most this many connections made and not yet accepted (unlimited when absent).
    pub backlog: Option<u32>,
    stack_id: ListenerId,
}

const SIDE_CLIENT: u64 = 1;
const SIDE_SERVER: u64 = 2;

/// The user data an endpoint carries in its stack: its connection and side.
pub(super) fn tag(conn: ConnId, side: Side) -> u64 {
    conn << 2 | if side == Side::Client { SIDE_CLIENT } else { SIDE_SERVER }
}

/// The connection and side a [`tag`] names (`None` for an untagged endpoint).
pub(super) fn untag(user_data: u64) -> Option<(ConnId, Side)> {
    match user_data & 3 {
        SIDE_CLIENT => Some((user_data >> 2, Side::Client)),
        SIDE_SERVER => Some((user_data >> 2, Side::Server)),
        _ => None,
    }
}

/// Every connection kept and every listener ever opened.
pub(super) struct Connections {
    connections: FxHashMap<ConnId, Connection>,
    next_conn: ConnId,
    /// Client ends whose server end is not known yet, by four-tuple.
    pending_clients: FxHashMap<FourTuple, ConnId>,
    listeners: Vec<ListenerRecord>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            connections: FxHashMap::default(),
            next_conn: 1,
            pending_clients: FxHashMap::default(),
            listeners: Vec::new(),
        }
    }
}

impl Connections {
    // ----- listeners -----

    /// The id the next listener will get (the stack is told it before the record exists).
    pub(super) fn next_listener_id(&self) -> u64 {
        self.listeners.len() as u64 + 1
    }

    /// Records an open listener under [`Connections::next_listener_id`].
    pub(super) fn add_listener(&mut self, host: HostId, port: u16, backlog: Option<u32>, stack_id: ListenerId) -> u64 {
        let id = self.next_listener_id();
        self.listeners.push(ListenerRecord { id, host, port, open: true, backlog, stack_id });
        id
    }

    /// An open listener's host and its id in that host's stack.
    pub(super) fn open_listener(&self, id: u64) -> Result<(HostId, ListenerId), WorldError> {
        self.listeners
            .get(id.wrapping_sub(1) as usize)
            .filter(|l| l.open)
            .map(|l| (l.host, l.stack_id))
            .ok_or(WorldError::UnknownListener(id))
    }

    /// Marks a listener closed (its record stays).
    pub(super) fn mark_listener_closed(&mut self, id: u64) {
        if let Some(l) = self.listeners.get_mut(id.wrapping_sub(1) as usize) {
            l.open = false;
        }
    }

    /// Every listener ever opened.
    pub(super) fn listeners(&self) -> &[ListenerRecord] {
        &self.listeners
    }

    /// The open listener on a host's port, if any.
    fn listener_on(&self, host: HostId, port: u16) -> Option<&ListenerRecord> {
        self.listeners.iter().find(|l| l.open && l.host == host && l.port == port)
    }

    /// Connections a listener made that are not accepted yet and not CLOSED:
    /// what its backlog counts.
    pub(super) fn pending(&self, listener: u64) -> usize {
        self.connections
            .values()
            .filter(|c| c.listener == Some(listener) && !c.accepted)
            .filter(|c| c.server.as_ref().is_some_and(|e| e.state != State::Closed))
            .count()
    }

    /// Connections a listener made that nobody accepted and that are not
    /// CLOSED: what closing the listener aborts.
    pub(super) fn unaccepted(&self, listener: u64) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self
            .connections
            .values()
            .filter(|c| c.listener == Some(listener) && !c.accepted)
            .filter(|c| c.server.as_ref().is_some_and(|e| e.state != State::Closed))
            .map(|c| c.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The open listener on a host's port with a full backlog, if any.
    pub(super) fn full_listener(&self, host: HostId, port: u16) -> Option<u64> {
        let l = self.listener_on(host, port)?;
        let backlog = l.backlog?;
        (self.pending(l.id) >= backlog as usize).then_some(l.id)
    }

    /// The user's accept(): see [`World::accept`](super::World::accept).
    pub(super) fn accept(&mut self, listener: u64) -> Result<Option<ConnId>, WorldError> {
        if listener == 0 || listener as usize > self.listeners.len() {
            return Err(WorldError::UnknownListener(listener));
        }
        let ready = self
            .connections
            .values()
            .filter(|c| c.listener == Some(listener) && !c.accepted)
            .filter(|c| {
                c.server
                    .as_ref()
                    .is_some_and(|e| !matches!(e.state, State::Listen | State::SynReceived | State::Closed))
            })
            .map(|c| c.id)
            .min();
        if let Some(id) = ready
            && let Some(c) = self.connections.get_mut(&id)
        {
            c.accepted = true;
        }
        Ok(ready)
    }

    // ----- connections -----

    /// A connection by id.
    pub(super) fn get(&self, id: ConnId) -> Option<&Connection> {
        self.connections.get(&id)
    }

    /// Every connection kept, in id order.
    pub(super) fn all(&self) -> Vec<&Connection> {
        let mut all: Vec<&Connection> = self.connections.values().collect();
        all.sort_unstable_by_key(|c| c.id);
        all
    }

    /// Number of connections kept.
    pub(super) fn len(&self) -> usize {
        self.connections.len()
    }

    /// One end, or the error naming what is missing.
    pub(super) fn end(&self, conn: ConnId, side: Side) -> Result<&End, WorldError> {
        self.connections
            .get(&conn)
            .ok_or(WorldError::UnknownConnection(conn))?
            .end(side)
            .ok_or(WorldError::NoSuchEnd(conn, side.name()))
    }

    fn end_mut(&mut self, conn: ConnId, side: Side) -> Option<&mut End> {
        self.connections.get_mut(&conn).and_then(|c| c.end_mut(side))
    }

    /// The id the next connection opened will get.
    pub(super) fn next_id(&self) -> ConnId {
        self.next_conn
    }

    /// The connection `tuple`'s reverse opened and that no server end has
    /// joined yet: an active OPEN along `tuple` is then the second opener of
    /// a simultaneous open.
    pub(super) fn awaiting_second_opener(&self, reverse: FourTuple) -> Option<ConnId> {
        self.pending_clients
            .get(&reverse)
            .copied()
            .filter(|c| self.connections.get(c).is_some_and(|c| c.server.is_none()))
    }

    /// A new connection under [`Connections::next_id`] whose client end
    /// opened along `tuple` and waits for its server end.
    pub(super) fn open_client(&mut self, end: End, tuple: FourTuple) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.connections
            .insert(id, Connection { id, client: Some(end), server: None, listener: None, accepted: false });
        self.pending_clients.insert(tuple, id);
        id
    }

    /// The second opener of a simultaneous open joins `conn` as its server
    /// end; the client end, which opened along `reverse`, waits no more.
    pub(super) fn join_second_opener(&mut self, conn: ConnId, end: End, reverse: FourTuple) {
        if let Some(c) = self.connections.get_mut(&conn) {
            c.server = Some(end);
        }
        self.pending_clients.remove(&reverse);
    }

    /// A listener on `end`'s host and `local_port` made `end`: it is the
    /// server end of the client whose SYN it answered (the client opened
    /// along `tuple` and its ISS is `irs`), or else a connection of its own
    /// (a ghost from an old or injected SYN). Returns the connection.
    pub(super) fn adopt(&mut self, end: End, local_port: u16, tuple: FourTuple, irs: u32) -> ConnId {
        let listener = self.listener_on(end.host, local_port).map(|l| l.id);
        let existing = self.pending_clients.get(&tuple).copied().filter(|c| {
            self.connections
                .get(c)
                .is_some_and(|conn| conn.server.is_none() && conn.client.as_ref().is_some_and(|e| e.iss == irs))
        });
        match existing {
            Some(conn_id) => {
                self.pending_clients.remove(&tuple);
                if let Some(conn) = self.connections.get_mut(&conn_id) {
                    conn.server = Some(end);
                    conn.listener = listener;
                }
                conn_id
            }
            None => {
                let conn_id = self.next_conn;
                self.next_conn += 1;
                self.connections.insert(
                    conn_id,
                    Connection { id: conn_id, client: None, server: Some(end), listener, accepted: false },
                );
                conn_id
            }
        }
    }

    /// One end changed state.
    pub(super) fn set_state(&mut self, conn: ConnId, side: Side, to: State) {
        if let Some(end) = self.end_mut(conn, side) {
            end.state = to;
        }
    }

    /// Whether one end's application reads as soon as data arrives.
    pub(super) fn set_auto_read(&mut self, conn: ConnId, side: Side, on: bool) {
        if let Some(end) = self.end_mut(conn, side) {
            end.auto_read = on;
        }
    }

    /// Whether the endpoint tagged `user_data` reads as soon as data arrives
    /// (an endpoint of no known end does).
    pub(super) fn auto_reads(&self, user_data: Option<u64>) -> bool {
        user_data
            .and_then(untag)
            .and_then(|(c, s)| self.connections.get(&c).and_then(|c| c.end(s)))
            .is_none_or(|end| end.auto_read)
    }

    /// The endpoint tagged `user_data` read `n` octets, `data` (empty when
    /// the world does not keep them).
    pub(super) fn record_received(&mut self, user_data: u64, n: usize, data: &[u8]) {
        if let Some((conn, side)) = untag(user_data)
            && let Some(end) = self.end_mut(conn, side)
        {
            end.received_total += n as u64;
            end.received.extend_from_slice(data);
        }
    }

    /// One end's endpoint reached CLOSED and was released, last seen as
    /// `status` on the host at `host_ip`: keep the status, and forget the
    /// connection when both ends are done, unless `keep_closed`.
    pub(super) fn end_closed(
        &mut self,
        conn_id: ConnId,
        side: Side,
        status: TcbStatus,
        host_ip: Ipv4Addr,
        keep_closed: bool,
    ) {
        let Some(conn) = self.connections.get_mut(&conn_id) else {
            return;
        };
        let tuple = (host_ip, status.local_port, status.remote_ip, status.remote_port);
        if let Some(end) = conn.end_mut(side) {
            end.socket = None;
            end.state = State::Closed;
            end.final_status = Some(Box::new(status));
        }
        if side == Side::Client && conn.server.is_none() {
            self.pending_clients.remove(&tuple);
        }
        let done = [&conn.client, &conn.server].into_iter().flatten().all(|e| e.socket.is_none());
        if done && !keep_closed {
            if side == Side::Client {
                self.pending_clients.remove(&tuple);
            }
            self.connections.remove(&conn_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Side, tag, untag};

    /// A tag names its connection and side; an untagged endpoint (user data 0) names none.
    #[test]
    fn tags_round_trip_and_zero_is_no_one() {
        for conn in [1, 2, 1 << 40] {
            for side in [Side::Client, Side::Server] {
                assert_eq!(untag(tag(conn, side)), Some((conn, side)));
            }
        }
        assert_eq!(untag(0), None);
    }
}
