//! Connections as the RFC 9293 user sees them: listeners, OPEN, SEND,
//! RECEIVE, CLOSE, ABORT and accept.

use base64::Engine as _;

use super::command::Command;
use super::model::*;
use super::parse::port;
use super::session::SessionState;
use super::{Error, LabService};
use crate::engine::State;
use crate::sim::{CloseHow, ConnectSpec, ListenSpec, Side, Unaccepted};

impl LabService {
    /// Opens a listener (passive OPEN).
    ///
    /// # Errors
    /// Unknown host, bad port, port in use.
    pub async fn add_listener(&self, sid: u64, req: AddListener) -> Result<ListenerInfo, Error> {
        let p = port("port", req.port)?;
        keepalive("keepalive", req.keepalive)?;
        let record = Command::Listen { args: req.clone() };
        self.command(sid, record, move |s| {
            let spec = ListenSpec {
                host: req.host.clone(),
                port: p,
                isn: req.isn,
                profile: None,
                backlog: req.backlog,
                nodelay: req.nodelay.unwrap_or(false),
                keepalive: req.keepalive,
            };
            let id = s.world.listen(spec)?;
            Ok(ListenerInfo { id, host: req.host, port: p, state: State::Listen, backlog: req.backlog, pending: 0 })
        })
        .await
    }

    /// The listeners of a session.
    ///
    /// # Errors
    /// Unknown or ended session.
    pub async fn list_listeners(&self, sid: u64) -> Result<Vec<ListenerInfo>, Error> {
        self.live(sid)
            .await?
            .call(|s| {
                Ok(s.world
                    .listeners()
                    .iter()
                    .map(|l| ListenerInfo {
                        id: l.id,
                        host: s.world.host_name(l.host).to_string(),
                        port: l.port,
                        state: if l.open { State::Listen } else { State::Closed },
                        backlog: l.backlog,
                        pending: s.world.pending(l.id) as u64,
                    })
                    .collect())
            })
            .await
    }

    /// The user's accept() on a listener: the next connection it made that is
    /// established and not accepted yet (accepting frees a backlog place).
    ///
    /// # Errors
    /// Unknown session or listener; [`Error::NotFound`] when no connection is ready.
    pub async fn accept(&self, sid: u64, lid: u64) -> Result<ConnectionInfo, Error> {
        let record = Command::Accept { listener: lid };
        self.command(sid, record, move |s| match s.world.accept(lid)? {
            Some(cid) => connection_info(s, cid),
            None => Err(Error::not_found("established connection to accept on listener", lid)),
        })
        .await
    }

    /// The user's close() of a listening socket: it stops listening (a SYN
    /// to its port now meets a RST), the connections it made that were
    /// accepted live on, and those nobody accepted are aborted, a RST to
    /// each peer, as BSD's close of a listening socket aborts its queues.
    ///
    /// # Errors
    /// Unknown session, or a listener unknown or already closed (not found).
    pub async fn close_listener(&self, sid: u64, lid: u64) -> Result<(), Error> {
        let record = Command::CloseListener { listener: lid };
        self.command(sid, record, move |s| Ok(s.world.close_listener(lid, Unaccepted::Abort)?)).await
    }

    /// Active OPEN: the SYN leaves now.
    ///
    /// # Errors
    /// Unknown hosts, bad ports, four-tuple in use, the connection limit.
    pub async fn open_connection(&self, sid: u64, req: OpenConnection) -> Result<ConnectionInfo, Error> {
        let p = port("port", req.port)?;
        let client_port = req.client_port.map(|cp| port("client_port", cp)).transpose()?;
        keepalive("keepalive", req.keepalive)?;
        let record = Command::Connect { args: req.clone() };
        self.command(sid, record, move |s| {
            if s.world.connection_count() >= s.limits.max_connections {
                return Err(Error::LimitExceeded { limit: "max_connections", max: s.limits.max_connections as u64 });
            }
            let id = s.world.connect(ConnectSpec {
                client: req.client,
                server: req.server,
                port: p,
                client_port,
                isn: req.isn,
                profile: None,
                nodelay: req.nodelay.unwrap_or(false),
                keepalive: req.keepalive,
            })?;
            connection_info(s, id)
        })
        .await
    }

    /// Every connection of a live session.
    ///
    /// # Errors
    /// Unknown or ended session.
    pub async fn list_connections(&self, sid: u64) -> Result<Vec<ConnectionInfo>, Error> {
        self.live(sid)
            .await?
            .call(|s| {
                let ids: Vec<u64> = s.world.connections().iter().map(|c| c.id).collect();
                ids.into_iter().map(|id| connection_info(s, id)).collect()
            })
            .await
    }

    /// One connection with both ends.
    ///
    /// # Errors
    /// Unknown session or connection.
    pub async fn get_connection(&self, sid: u64, cid: u64) -> Result<ConnectionInfo, Error> {
        self.live(sid).await?.call(move |s| connection_info(s, cid)).await
    }

    /// SEND from one end.
    ///
    /// # Errors
    /// Bad data, unknown ids, a state that cannot send.
    pub async fn send(&self, sid: u64, cid: u64, req: SendData) -> Result<SendResult, Error> {
        let side = req.side;
        let data = req.into_bytes()?;
        let max_write = self.inner.limits.max_write_bytes;
        if data.len() > max_write {
            return Err(Error::over_budget(
                "max_write_bytes",
                max_write as u64,
                format!("data: {} octets", data.len()),
            ));
        }
        let record = Command::Send { connection: cid, side, bytes: data.len() };
        self.command(sid, record, move |s| {
            let accepted = s.world.send_bytes(cid, side, data)?;
            Ok(SendResult { side, accepted: accepted as u64 })
        })
        .await
    }

    /// Everything one end has received.
    ///
    /// # Errors
    /// Unknown ids.
    pub async fn received(&self, sid: u64, cid: u64, side: Side) -> Result<Received, Error> {
        self.live(sid)
            .await?
            .call(move |s| {
                let data = s.world.received(cid, side)?;
                Ok(Received {
                    side,
                    bytes: data.len() as u64,
                    data: String::from_utf8_lossy(data).into_owned(),
                    data_base64: base64::engine::general_purpose::STANDARD.encode(data),
                })
            })
            .await
    }

    /// CLOSE one end: a shutdown of its sending side (RFC 9293's CLOSE), or
    /// the close of its socket, after which arriving data meets a reset.
    ///
    /// # Errors
    /// Unknown ids or a state that refuses.
    pub async fn close(&self, sid: u64, cid: u64, req: CloseRequest) -> Result<ConnectionInfo, Error> {
        let record = Command::Close { connection: cid, side: req.side, how: req.how };
        self.command(sid, record, move |s| {
            match req.how {
                CloseHow::ShutdownWrite => s.world.close(cid, req.side)?,
                CloseHow::Close => s.world.close_socket(cid, req.side)?,
            }
            connection_info(s, cid)
        })
        .await
    }

    /// ABORT one end.
    ///
    /// # Errors
    /// Unknown ids.
    pub async fn abort(&self, sid: u64, cid: u64, req: SideRequest) -> Result<ConnectionInfo, Error> {
        let record = Command::Abort { connection: cid, side: req.side };
        self.command(sid, record, move |s| {
            s.world.abort(cid, req.side)?;
            connection_info(s, cid)
        })
        .await
    }
}

pub(super) fn connection_info(s: &SessionState, cid: u64) -> Result<ConnectionInfo, Error> {
    let conn = s.world.connection(cid).ok_or_else(|| Error::not_found("connection", cid))?;
    let end = |side: Side| -> Option<EndInfo> {
        let e = conn.end(side)?;
        let tcb = s.world.status(cid, side).ok()?;
        Some(EndInfo { host: s.world.host_name(e.host).to_string(), side, tcb, received_bytes: e.received_total })
    };
    Ok(ConnectionInfo { id: cid, client: end(Side::Client), server: end(Side::Server) })
}

/// A keepalive request within its bounds ([`crate::engine::Keepalive::validate`]).
fn keepalive(field: &str, k: Option<crate::engine::Keepalive>) -> Result<(), Error> {
    match k.map(|k| k.validate()) {
        Some(Err((key, message))) => Err(Error::invalid(format!("{field}.{key}"), message)),
        _ => Ok(()),
    }
}
