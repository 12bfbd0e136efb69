//! One session's world: hosts with their TCP stacks, links, fault rules, a
//! discrete-event scheduler on a virtual clock, and the event log.
//!
//! The world owns the only RNG (seeded) and the only clock (a number it
//! advances), so the same seed and the same commands give the same events,
//! byte for byte. Segments cross links as encoded bytes: a corrupted bit is
//! found by the receiver's checksum, and a raw host (or smoltcp in the tests)
//! sees exactly what a wire would carry.
//!
//! # Layout
//! [`World`] is a façade over parts that each do one job, as turmoil's world
//! is composed of its topology and its envelopes:
//! - `agenda`: the virtual clock and what is scheduled on it.
//! - `hosts`: the hosts, by id, name and address, and their stacks.
//! - `connections`: which endpoints make a connection, the listeners, what
//!   each end received.
//! - `wire`: links, fault rules and the segments on their way.
//! - `log`: the numbered event log.
//! - `settle`: what the world does after a host's stack was touched (the
//!   engine's outputs turned into events, packets and bookkeeping).
//! - `spec`: the configuration and the commands' specs (plain data).
//!
//! The RNG stays in the façade: the wire and the stacks draw from the same
//! one, in an order that is part of what a seed means.

mod agenda;
mod connections;
mod hosts;
mod log;
mod settle;
mod spec;
mod wire;

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use self::agenda::{Agenda, Item};
use self::connections::{Connections, tag};
use self::hosts::{HostStack, Hosts};
use self::log::EventLog;
use self::wire::{Departure, Origin, Wire};
use super::event::{ConnId, Event, EventKind, Side};
use super::fault::{FaultRule, FaultSpec};
use super::link::{LinkError, LinkParams};
use crate::engine::profile::ProfileError;
use crate::engine::segment::DecodeError;
use crate::engine::{Cause, Output, Profile, Segment, SeqNumber, SocketId, StackError, State, TcbStatus, UserCall};
use crate::time::{Duration, Instant};

pub use self::connections::{Connection, End, ListenerRecord};
pub use self::hosts::{HostId, HostKind, RawPacket};
pub use self::spec::{
    CloseHow, ConnectSpec, DEFAULT_RUN_MAX_ITEMS, InjectSpec, ListenSpec, RunCap, RunOutcome, Unaccepted, WorldConfig,
};
pub(crate) use self::wire::InFlight;

/// Everything a world command can get wrong, each naming what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorldError {
    /// No host by that name.
    #[error("unknown host `{0}`")]
    UnknownHost(String),
    /// The host name is taken.
    #[error("host `{0}` already exists")]
    DuplicateHost(String),
    /// The address is taken.
    #[error("address {0} is already used by another host")]
    DuplicateAddress(Ipv4Addr),
    /// The host name is empty or too long.
    #[error("host name must be 1 to 64 characters")]
    BadHostName,
    /// The host does not run TCP (it is raw).
    #[error("host `{0}` is a raw host and has no TCP")]
    NotTcpHost(String),
    /// The host is not raw.
    #[error("host `{0}` is not a raw host")]
    NotRawHost(String),
    /// No connection by that id.
    #[error("unknown connection {0}")]
    UnknownConnection(ConnId),
    /// The connection has no such end (e.g. a ghost connection's client).
    #[error("connection {0} has no {1} end")]
    NoSuchEnd(ConnId, &'static str),
    /// No fault rule by that id.
    #[error("unknown fault rule {0}")]
    UnknownFault(u64),
    /// No listener by that id.
    #[error("unknown listener {0}")]
    UnknownListener(u64),
    /// A link setting is out of range.
    #[error("link {0}")]
    Link(#[from] LinkError),
    /// A profile setting is out of range.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The TCP stack refused the call.
    #[error("{0}")]
    Stack(#[from] StackError),
    /// A crafted segment cannot be encoded.
    #[error("segment: {0}")]
    Encode(#[from] DecodeError),
    /// A port of 0 was given.
    #[error("{0}: port must be between 1 and 65535")]
    BadPort(&'static str),
    /// A profile change the world cannot take: a setting that is not one,
    /// a bad value, or one fixed while endpoints are open.
    #[error("{0}")]
    ProfileChange(#[from] crate::profiles::OverrideError),
}

/// A simulated network of hosts running TCP: the parts, and the one RNG.
pub struct World {
    /// The virtual clock and what is due on it.
    agenda: Agenda,
    /// The only source of randomness, seeded from [`WorldConfig::seed`].
    rng: ChaCha8Rng,
    /// The world's profile, shared by every stack that was not told otherwise.
    profile: Arc<Profile>,
    config: WorldConfig,
    hosts: Hosts,
    wire: Wire,
    connections: Connections,
    log: EventLog,
    /// Outputs the engine produced that [`World::settle`] has not handled
    /// yet (lent out by [`World::with_outputs`]; kept for its allocation).
    outputs: Vec<Output>,
    /// Endpoints that became readable while settling a host (kept for its allocation).
    readable: Vec<SocketId>,
}

impl World {
    /// An empty world at time 0.
    ///
    /// # Errors
    /// [`WorldError::Profile`] for an unusable profile.
    pub fn new(config: WorldConfig) -> Result<World, WorldError> {
        config.profile.validate()?;
        Ok(World {
            agenda: Agenda::default(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            profile: Arc::new(config.profile.clone()),
            config,
            hosts: Hosts::default(),
            wire: Wire::default(),
            connections: Connections::default(),
            log: EventLog::default(),
            outputs: Vec::new(),
            readable: Vec::new(),
        })
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.agenda.now()
    }

    /// The world's profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Changes settings of the world's profile while it runs (a `sysctl`
    /// mid-script): `settings` as in [`crate::profiles::with_overrides`],
    /// without `name`. The settings in [`crate::profiles::RUNTIME_SETTINGS`]
    /// apply at once to every host, listener and connection, their own
    /// overrides included; the others are fixed when an endpoint opens, so
    /// they may change only while no listener or endpoint is open (they
    /// apply to those opened later). Returns the world's profile after.
    ///
    /// # Errors
    /// [`WorldError::ProfileChange`] naming the first offending setting
    /// (with every fixed one in the message); nothing changes then.
    pub fn patch_profile(
        &mut self,
        settings: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Profile, WorldError> {
        use crate::profiles::{OverrideError, RUNTIME_SETTINGS, with_overrides};
        if settings.contains_key("name") {
            return Err(OverrideError {
                field: "profile.name".into(),
                message: "a running session's profile changes setting by setting; its base stays".into(),
            }
            .into());
        }
        let next = with_overrides(&self.profile, settings.clone())?;
        next.validate().map_err(|e| OverrideError { field: format!("profile.{}", e.field), message: e.message })?;
        let (before, after) = (serde_json::to_value(&*self.profile), serde_json::to_value(&next));
        let (Ok(serde_json::Value::Object(before)), Ok(serde_json::Value::Object(after))) = (before, after) else {
            return Err(OverrideError { field: "profile".into(), message: "does not serialize".into() }.into());
        };
        let mut fixed: Vec<&str> = settings
            .keys()
            .map(String::as_str)
            .filter(|k| !RUNTIME_SETTINGS.contains(k) && before.get(*k) != after.get(*k))
            .collect();
        fixed.sort_unstable();
        if !fixed.is_empty() && self.hosts.tcp_stacks().any(|s| s.has_endpoints()) {
            return Err(OverrideError {
                field: format!("profile.{}", fixed[0]),
                message: format!(
                    "{} cannot change while listeners or connections are open: each endpoint fixes it when it \
                     opens (may change at any time: {})",
                    fixed.join(", "),
                    RUNTIME_SETTINGS.join(", ")
                ),
            }
            .into());
        }
        // Every distinct profile in use, changed once; endpoints that shared one share its successor.
        let mut replace: Vec<(Arc<Profile>, Arc<Profile>)> = vec![(self.profile.clone(), Arc::new(next.clone()))];
        for stack in self.hosts.tcp_stacks() {
            for old in stack.profiles() {
                if replace.iter().any(|(p, _)| Arc::ptr_eq(p, &old)) {
                    continue;
                }
                let new = with_overrides(&old, settings.clone())?;
                new.validate()
                    .map_err(|e| OverrideError { field: format!("profile.{}", e.field), message: e.message })?;
                replace.push((old, Arc::new(new)));
            }
        }
        for stack in self.hosts.tcp_stacks_mut() {
            stack.replace_profiles(&replace);
        }
        self.profile = replace[0].1.clone();
        self.config.profile = next.clone();
        Ok(next)
    }

    // ----- topology -----

    /// Adds a host.
    ///
    /// # Errors
    /// A duplicate name or address, or a bad name.
    pub fn add_host(&mut self, name: &str, ip: Ipv4Addr, kind: HostKind) -> Result<HostId, WorldError> {
        self.hosts.add(name, ip, kind, &self.profile)
    }

    /// A host's id by name.
    ///
    /// # Errors
    /// [`WorldError::UnknownHost`].
    pub fn host_id(&self, name: &str) -> Result<HostId, WorldError> {
        self.hosts.id(name)
    }

    /// A host's name.
    pub fn host_name(&self, id: HostId) -> &str {
        self.hosts.get_name(id).map_or("?", |name| name)
    }

    /// A host's address.
    pub fn host_ip(&self, id: HostId) -> Option<Ipv4Addr> {
        self.hosts.get_ip(id)
    }

    /// Every host: name, address and kind.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, Ipv4Addr, HostKind)> {
        self.hosts.iter()
    }

    /// Sets the link between two hosts, the same in both directions.
    ///
    /// # Errors
    /// Unknown hosts or out-of-range settings.
    pub fn set_link(&mut self, a: &str, b: &str, params: LinkParams) -> Result<(), WorldError> {
        self.set_link_through(a, b, params, None)
    }

    /// Sets both directions of a link that crosses the named bottleneck
    /// (or none): `a` -> `b` crosses it forward, `b` -> `a` back. Every link
    /// naming the same bottleneck shares its two transmitters and queues,
    /// whose rate and capacity are this link's `bandwidth_bps`,
    /// `queue_bytes` and `queue_packets` from now on (for all of them); the
    /// other settings (latency, loss, ...) stay each link's own, as an
    /// access link's are. A dumbbell: A1 and A2 on the `a` side, B1 and B2
    /// on the `b` side, each link naming the bottleneck.
    ///
    /// # Errors
    /// Unknown hosts, out-of-range settings, a bad bottleneck name, a
    /// bottleneck without a rate, or more than [`MAX_BOTTLENECKS`](super::link::MAX_BOTTLENECKS).
    pub fn set_link_through(
        &mut self,
        a: &str,
        b: &str,
        params: LinkParams,
        bottleneck: Option<&str>,
    ) -> Result<(), WorldError> {
        params.validate()?;
        let from = self.hosts.id(a)?;
        let to = self.hosts.id(b)?;
        self.wire.set_link(from, to, params.clone(), bottleneck.map(|n| (n, true)))?;
        self.wire.set_link(to, from, params, bottleneck.map(|n| (n, false)))?;
        Ok(())
    }

    /// Sets one direction of a link (crossing no bottleneck).
    ///
    /// # Errors
    /// Unknown hosts or out-of-range settings.
    pub fn set_link_dir(&mut self, from: &str, to: &str, params: LinkParams) -> Result<(), WorldError> {
        params.validate()?;
        let from = self.hosts.id(from)?;
        let to = self.hosts.id(to)?;
        self.wire.set_link(from, to, params, None)?;
        Ok(())
    }

    /// The bottleneck the link `from` -> `to` crosses, if any, and whether forward.
    pub fn link_bottleneck(&self, from: HostId, to: HostId) -> Option<(&str, bool)> {
        self.wire.bottleneck(from, to)
    }

    /// The link settings from one host to another (the default link when none was set).
    pub fn link(&self, from: HostId, to: HostId) -> &LinkParams {
        self.wire.link(from, to)
    }

    /// Every explicitly set link direction.
    pub fn links(&self) -> impl Iterator<Item = (HostId, HostId, &LinkParams)> {
        self.wire.links()
    }

    /// What waits in the transmit queue from one host to another now:
    /// octets (IP headers included) and segments.
    pub fn link_queue(&self, from: HostId, to: HostId) -> (u64, u32) {
        self.wire.queue(from, to, self.now())
    }

    // ----- connections -----

    /// Passive OPEN: a listener on a host's port.
    ///
    /// # Errors
    /// Unknown or raw host, port 0 or in use, bad profile.
    pub fn listen(&mut self, spec: ListenSpec) -> Result<u64, WorldError> {
        if spec.port == 0 {
            return Err(WorldError::BadPort("port"));
        }
        let host = self.hosts.id(&spec.host)?;
        let profile = self.profile_for(spec.profile)?;
        let id = self.connections.next_listener_id();
        let stack = self.hosts.tcp_stack(host)?;
        let stack_id = stack.listen(spec.port, profile, spec.isn, id)?;
        stack.set_listener_nodelay(stack_id, spec.nodelay)?;
        stack.set_listener_keepalive(stack_id, spec.keepalive)?;
        self.connections.add_listener(host, spec.port, spec.backlog, stack_id);
        self.push_event(EventKind::StateChanged {
            connection: None,
            listener: Some(id),
            host: self.hosts.name(host).clone(),
            side: None,
            from: State::Closed,
            to: State::Listen,
            cause: Cause::User { call: UserCall::Open },
            rfc: "3.10.1".into(),
        });
        Ok(id)
    }

    /// Closes a listener. Connections it made that were accepted live on;
    /// with [`Unaccepted::Abort`], those nobody accepted yet (established in
    /// its queue, or still in SYN_RECEIVED) are aborted, a RST to each peer,
    /// as closing a listening socket does in BSD (`soclose()` aborts its
    /// completed and incomplete queues) and as RFC 9293 section 3.10.5's
    /// ABORT does for each. [`Unaccepted::LiveOn`] leaves them to a caller
    /// that keeps its own accept queue (the packetdrill runner).
    ///
    /// # Errors
    /// [`WorldError::UnknownListener`].
    pub fn close_listener(&mut self, id: u64, unaccepted: Unaccepted) -> Result<(), WorldError> {
        let (host, stack_id) = self.connections.open_listener(id)?;
        self.hosts.tcp_stack(host)?.unlisten(stack_id)?;
        self.connections.mark_listener_closed(id);
        self.push_event(EventKind::StateChanged {
            connection: None,
            listener: Some(id),
            host: self.hosts.name(host).clone(),
            side: None,
            from: State::Listen,
            to: State::Closed,
            cause: Cause::User { call: UserCall::Close },
            rfc: "3.10.4".into(),
        });
        if unaccepted == Unaccepted::Abort {
            for conn in self.connections.unaccepted(id) {
                // Each end was found open just now, so the abort cannot fail.
                let _ = self.abort(conn, Side::Server);
            }
        }
        Ok(())
    }

    /// TCP_NODELAY on a listening socket: the connections it makes from now
    /// on start with Nagle's algorithm off.
    ///
    /// # Errors
    /// [`WorldError::UnknownListener`] for one unknown or closed.
    pub fn set_listener_nodelay(&mut self, id: u64, on: bool) -> Result<(), WorldError> {
        let (host, stack_id) = self.connections.open_listener(id)?;
        self.hosts.tcp_stack(host)?.set_listener_nodelay(stack_id, on)?;
        Ok(())
    }

    /// Every listener ever opened.
    pub fn listeners(&self) -> &[ListenerRecord] {
        self.connections.listeners()
    }

    /// Connections a listener made that are not accepted yet and not CLOSED:
    /// what its backlog counts.
    pub fn pending(&self, listener: u64) -> usize {
        self.connections.pending(listener)
    }

    /// The user's accept(): the oldest connection the listener made that is
    /// synchronized (ESTABLISHED or later, not CLOSED) and not accepted yet,
    /// now marked accepted; `None` when there is none.
    ///
    /// # Errors
    /// [`WorldError::UnknownListener`].
    pub fn accept(&mut self, listener: u64) -> Result<Option<ConnId>, WorldError> {
        self.connections.accept(listener)
    }

    fn profile_for(&self, profile: Option<Profile>) -> Result<Arc<Profile>, WorldError> {
        match profile {
            None => Ok(self.profile.clone()),
            Some(p) => {
                p.validate()?;
                Ok(Arc::new(p))
            }
        }
    }

    /// Active OPEN from `client` to `server:port`; the SYN leaves now.
    ///
    /// # Errors
    /// Unknown hosts, a raw client, ports, or a four-tuple in use.
    pub fn connect(&mut self, spec: ConnectSpec) -> Result<ConnId, WorldError> {
        if spec.port == 0 {
            return Err(WorldError::BadPort("port"));
        }
        if spec.client_port == Some(0) {
            return Err(WorldError::BadPort("client_port"));
        }
        let client = self.hosts.id(&spec.client)?;
        let server = self.hosts.id(&spec.server)?;
        let server_ip = self.hosts.ip(server);
        let client_ip = self.hosts.ip(client);
        let profile = self.profile_for(spec.profile)?;
        // A simultaneous open: the peer already opened towards us.
        let reverse = spec
            .client_port
            .and_then(|cp| self.connections.awaiting_second_opener((server_ip, spec.port, client_ip, cp)));
        let (conn_id, side) = match reverse {
            Some(existing) => (existing, Side::Server),
            None => (self.connections.next_id(), Side::Client),
        };
        let now = self.now();
        self.with_outputs(|w, out| {
            let Some(stack) = w.hosts.tcp_mut(client) else {
                return Err(WorldError::NotTcpHost(spec.client));
            };
            let tag = tag(conn_id, side);
            let opened = stack
                .connect(spec.client_port, server_ip, spec.port, profile, spec.isn, &mut w.rng, tag, out)
                .and_then(|socket| {
                    stack.set_nodelay(socket, spec.nodelay)?;
                    stack.set_keepalive(socket, spec.keepalive, now)?;
                    Ok((socket, stack.status(socket)?))
                });
            let (socket, status) = match opened {
                Ok(opened) => opened,
                Err(e) => {
                    // Refused: nothing of it is to be settled.
                    out.clear();
                    return Err(e.into());
                }
            };
            let end = End::new(client, socket, State::SynSent, status.iss, w.config.auto_read);
            match side {
                Side::Client => {
                    w.connections.open_client(end, (client_ip, status.local_port, server_ip, spec.port));
                }
                Side::Server => {
                    w.connections.join_second_opener(
                        conn_id,
                        end,
                        (server_ip, spec.port, client_ip, status.local_port),
                    );
                }
            }
            Ok(())
        })?;
        self.settle(client);
        Ok(conn_id)
    }

    /// A connection by id.
    pub fn connection(&self, id: ConnId) -> Option<&Connection> {
        self.connections.get(id)
    }

    /// Every connection kept, in id order.
    pub fn connections(&self) -> Vec<&Connection> {
        self.connections.all()
    }

    /// Number of connections kept.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// STATUS of one end (its last status once CLOSED).
    ///
    /// # Errors
    /// Unknown connection or end.
    pub fn status(&self, conn: ConnId, side: Side) -> Result<TcbStatus, WorldError> {
        let end = self.connections.end(conn, side)?;
        if let Some(status) = end.final_status() {
            return Ok(status.clone());
        }
        match (self.hosts.tcp(end.host), end.socket()) {
            (Some(stack), Some(socket)) => Ok(stack.status(socket)?),
            _ => Err(WorldError::NoSuchEnd(conn, side.name())),
        }
    }

    /// Everything one end has received so far, in order.
    ///
    /// # Errors
    /// Unknown connection or end.
    pub fn received(&self, conn: ConnId, side: Side) -> Result<&[u8], WorldError> {
        Ok(&self.connections.end(conn, side)?.received)
    }

    fn live_socket(&self, conn: ConnId, side: Side) -> Result<(HostId, SocketId), WorldError> {
        let end = self.connections.end(conn, side)?;
        match end.socket() {
            Some(socket) => Ok((end.host, socket)),
            None => Err(WorldError::Stack(StackError::User(crate::engine::UserError::NotConnected))),
        }
    }

    /// SEND from one end: returns the octets queued (the rest did not fit).
    ///
    /// # Errors
    /// Unknown connection or end, or the state refuses.
    pub fn send(&mut self, conn: ConnId, side: Side, data: &[u8]) -> Result<usize, WorldError> {
        let (host, socket) = self.live_socket(conn, side)?;
        let n = self.hosts.tcp_stack(host)?.send(socket, data)?;
        self.settle(host);
        Ok(n)
    }

    /// [`World::send`] of a buffer the send queue keeps as it is (segments
    /// are slices of it): no copy of the application's octets.
    ///
    /// # Errors
    /// As [`World::send`].
    pub fn send_bytes(&mut self, conn: ConnId, side: Side, data: Bytes) -> Result<usize, WorldError> {
        let (host, socket) = self.live_socket(conn, side)?;
        let n = self.hosts.tcp_stack(host)?.send_bytes(socket, data)?;
        self.settle(host);
        Ok(n)
    }

    /// CLOSE one end.
    ///
    /// # Errors
    /// Unknown connection or end, or the state refuses.
    pub fn close(&mut self, conn: ConnId, side: Side) -> Result<(), WorldError> {
        let (host, socket) = self.live_socket(conn, side)?;
        self.with_outputs(|w, out| w.hosts.tcp_stack(host)?.close(socket, out).map_err(WorldError::from))?;
        self.settle(host);
        Ok(())
    }

    /// The user's close() of one end's socket, where [`World::close`] is
    /// shutdown(SHUT_WR): the FIN follows the queued data, and data that
    /// arrives from now on is answered with a reset.
    ///
    /// # Errors
    /// Unknown connection or end, or an end already CLOSED.
    pub fn close_socket(&mut self, conn: ConnId, side: Side) -> Result<(), WorldError> {
        let (host, socket) = self.live_socket(conn, side)?;
        self.with_outputs(|w, out| w.hosts.tcp_stack(host)?.close_socket(socket, out).map_err(WorldError::from))?;
        self.settle(host);
        Ok(())
    }

    /// ABORT one end.
    ///
    /// # Errors
    /// Unknown connection or end.
    pub fn abort(&mut self, conn: ConnId, side: Side) -> Result<(), WorldError> {
        let (host, socket) = self.live_socket(conn, side)?;
        let now = self.now();
        self.with_outputs(|w, out| w.hosts.tcp_stack(host)?.abort(now, socket, out).map_err(WorldError::from))?;
        self.settle(host);
        Ok(())
    }

    /// TCP_NODELAY on one end: with `true`, Nagle's algorithm no longer holds
    /// a short segment that empties its send queue.
    ///
    /// # Errors
    /// Unknown connection or end, or an end already CLOSED.
    pub fn set_nodelay(&mut self, conn: ConnId, side: Side, on: bool) -> Result<(), WorldError> {
        let (host, socket) = self.live_socket(conn, side)?;
        self.hosts.tcp_stack(host)?.set_nodelay(socket, on)?;
        self.settle(host);
        Ok(())
    }

    /// SO_KEEPALIVE on one end (`None`: off), its idle time counted from now.
    ///
    /// # Errors
    /// Unknown connection or end, or an end already CLOSED.
    pub fn set_keepalive(
        &mut self,
        conn: ConnId,
        side: Side,
        keepalive: Option<crate::engine::Keepalive>,
    ) -> Result<(), WorldError> {
        let (host, socket) = self.live_socket(conn, side)?;
        let now = self.now();
        self.hosts.tcp_stack(host)?.set_keepalive(socket, keepalive, now)?;
        self.settle(host);
        Ok(())
    }

    /// Keepalive for the connections a listener makes from now on.
    ///
    /// # Errors
    /// [`WorldError::UnknownListener`] for one unknown or closed.
    pub fn set_listener_keepalive(
        &mut self,
        id: u64,
        keepalive: Option<crate::engine::Keepalive>,
    ) -> Result<(), WorldError> {
        let (host, stack_id) = self.connections.open_listener(id)?;
        self.hosts.tcp_stack(host)?.set_listener_keepalive(stack_id, keepalive)?;
        Ok(())
    }

    /// Whether the applications of ends opened from now on read what arrives
    /// at once ([`WorldConfig::auto_read`]); returns the previous setting.
    pub fn set_auto_read_default(&mut self, on: bool) -> bool {
        std::mem::replace(&mut self.config.auto_read, on)
    }

    /// Whether one end's application reads data as soon as it arrives (the
    /// default). Turn it off to let a receive buffer fill and the window close.
    ///
    /// # Errors
    /// Unknown connection or end.
    pub fn set_auto_read(&mut self, conn: ConnId, side: Side, on: bool) -> Result<(), WorldError> {
        self.connections.end(conn, side)?;
        self.connections.set_auto_read(conn, side, on);
        if on {
            // Read what waits now.
            if let Ok((host, socket)) = self.live_socket(conn, side) {
                self.read_into_end(host, socket, usize::MAX);
                self.settle(host);
            }
        }
        Ok(())
    }

    /// RECEIVE on one end: reads up to `max` octets into its `received` log.
    ///
    /// # Errors
    /// Unknown connection or end.
    pub fn read(&mut self, conn: ConnId, side: Side, max: usize) -> Result<usize, WorldError> {
        let (host, socket) = self.live_socket(conn, side)?;
        let n = self.read_into_end(host, socket, max);
        self.settle(host);
        Ok(n)
    }

    // ----- faults and injection -----

    /// Installs a fault rule; returns its id.
    ///
    /// # Errors
    /// Unknown host names.
    pub fn add_fault(&mut self, spec: FaultSpec) -> Result<u64, WorldError> {
        let from = spec.from.as_deref().map(|n| self.hosts.id(n)).transpose()?;
        let to = spec.to.as_deref().map(|n| self.hosts.id(n)).transpose()?;
        Ok(self.wire.add_fault(spec, from, to))
    }

    /// The installed fault rules.
    pub fn faults(&self) -> &[FaultRule] {
        self.wire.faults()
    }

    /// Removes a fault rule; segments it holds are released first.
    ///
    /// # Errors
    /// [`WorldError::UnknownFault`].
    pub fn remove_fault(&mut self, id: u64) -> Result<(), WorldError> {
        self.release_fault(id)?;
        self.wire.remove_fault(id);
        Ok(())
    }

    /// Sends the segments a rule holds on their way; returns how many.
    ///
    /// # Errors
    /// [`WorldError::UnknownFault`].
    pub fn release_fault(&mut self, id: u64) -> Result<usize, WorldError> {
        self.wire.release_fault(id, &self.hosts, &mut self.agenda, &mut self.log)
    }

    /// Sends a crafted segment as if `from` had sent it (through the link and
    /// the fault rules like any other).
    ///
    /// # Errors
    /// Unknown hosts or options that do not fit.
    pub fn inject(&mut self, spec: InjectSpec) -> Result<u64, WorldError> {
        let from = self.hosts.id(&spec.from)?;
        let to = self.hosts.id(&spec.to)?;
        let segment = Segment {
            src_port: spec.src_port,
            dst_port: spec.dst_port,
            seq: SeqNumber(spec.seq),
            ack: SeqNumber(spec.ack),
            reserved: 0,
            flags: spec.flags,
            window: spec.window,
            checksum: 0,
            urgent: spec.urgent,
            options: spec.options,
            payload: spec.payload,
        };
        let dst_ip = self.hosts.ip(to);
        let bytes = segment.encode(self.hosts.ip(from), dst_ip)?;
        Ok(self.launch(Departure {
            from,
            dst_ip,
            bytes: Some(bytes),
            segment,
            origin: Origin::Injected,
            connection: None,
            delay: spec.delay,
        }))
    }

    /// Puts bytes a raw host's peer implementation produced on the wire from
    /// that host (for interoperability tests and scripted peers).
    ///
    /// # Errors
    /// Unknown or non-raw host.
    pub fn raw_send(&mut self, from: &str, dst_ip: Ipv4Addr, bytes: Bytes) -> Result<u64, WorldError> {
        let host = self.hosts.id(from)?;
        if !matches!(self.hosts.stack(host), HostStack::Raw(_)) {
            return Err(WorldError::NotRawHost(from.to_string()));
        }
        let segment = Segment::decode_unverified(&bytes).unwrap_or_default();
        Ok(self.launch(Departure {
            from: host,
            dst_ip,
            bytes: Some(bytes),
            segment,
            origin: Origin::Peer,
            connection: None,
            delay: Duration::ZERO,
        }))
    }

    /// Takes the packets that reached a raw host since the last call.
    ///
    /// # Errors
    /// Unknown or non-raw host.
    pub fn take_raw_inbox(&mut self, host: &str) -> Result<Vec<RawPacket>, WorldError> {
        let id = self.hosts.id(host)?;
        match self.hosts.stack_mut(id) {
            HostStack::Raw(inbox) => Ok(std::mem::take(inbox)),
            HostStack::Tcp(_) => Err(WorldError::NotRawHost(host.to_string())),
        }
    }

    // ----- the clock -----

    /// When the next scheduled item is due, if any.
    pub fn next_event_at(&mut self) -> Option<Instant> {
        self.drop_stale_timers();
        self.agenda.peek().map(|s| s.at())
    }

    /// Drops timer entries that no longer match their host's earliest
    /// deadline (moving them where they belong), so that the clock never
    /// jumps to a timer that was cancelled.
    fn drop_stale_timers(&mut self) {
        while let Some(s) = self.agenda.peek() {
            let Item::HostTimer { host, generation } = s.item else {
                break;
            };
            match self.hosts.timer_entry_is_current(host, generation, s.at()) {
                Some(true) => break,
                None => {
                    self.agenda.pop();
                }
                Some(false) => {
                    self.agenda.pop();
                    self.hosts.timer_gone(host);
                    self.rearm_host_timer(host);
                }
            }
        }
    }

    /// Processes the next scheduled item (one arrival or one host's timers),
    /// moving the clock to it. Returns `false` when nothing is scheduled.
    pub fn step(&mut self) -> bool {
        self.drop_stale_timers();
        let Some(scheduled) = self.agenda.pop() else {
            return false;
        };
        self.agenda.move_clock_to(scheduled.at());
        match scheduled.item {
            Item::Arrival(slot) => {
                if let Some(packet) = self.wire.unpark(slot) {
                    self.arrive(packet);
                }
            }
            Item::HostTimer { host, .. } => {
                self.hosts.timer_gone(host);
                let now = self.now();
                self.with_outputs(|w, out| {
                    if let Some(stack) = w.hosts.tcp_mut(host) {
                        stack.on_timer(now, out);
                    }
                });
                self.settle(host);
            }
        }
        true
    }

    /// Runs everything due up to `now + duration`, then sets the clock there
    /// (and returns it).
    pub fn advance(&mut self, duration: Duration) -> Instant {
        let until = self.now().saturating_add(duration);
        self.run_until(until);
        self.now()
    }

    /// Runs everything due at or before `t`, then sets the clock to `t`
    /// (if it is not in the past).
    pub fn run_until(&mut self, t: Instant) {
        while self.next_event_at().is_some_and(|at| at <= t) {
            self.step();
        }
        self.agenda.move_clock_to(t);
    }

    /// [`World::run_until`] processing at most `max_steps` items: how a
    /// caller with a budget runs towards `t` in bounded turns. Returns the
    /// items processed and whether `t` was reached (the clock is then at
    /// `t`; otherwise at the last item processed).
    pub fn run_until_bounded(&mut self, t: Instant, max_steps: u64) -> (u64, bool) {
        let mut steps = 0;
        while self.next_event_at().is_some_and(|at| at <= t) {
            if steps >= max_steps {
                return (steps, false);
            }
            self.step();
            steps += 1;
        }
        self.agenda.move_clock_to(t);
        (steps, true)
    }

    /// Runs until nothing is scheduled, or a cap is reached: `max_steps`
    /// items processed, or virtual time passing `max_time` from now
    /// ([`Duration::MAX`] for no limit).
    pub fn run_until_idle(&mut self, max_steps: u64, max_time: Duration) -> RunOutcome {
        let deadline = self.now().saturating_add(max_time);
        let mut steps = 0;
        loop {
            let Some(at) = self.next_event_at() else {
                return RunOutcome { idle: true, steps, stopped_by: None };
            };
            if steps >= max_steps {
                return RunOutcome { idle: false, steps, stopped_by: Some(RunCap::Steps) };
            }
            if at > deadline {
                self.agenda.move_clock_to(deadline);
                return RunOutcome { idle: false, steps, stopped_by: Some(RunCap::Time) };
            }
            self.step();
            steps += 1;
        }
    }

    // ----- the event log -----

    /// Events since the last [`World::take_events`], in order.
    pub fn events(&self) -> &[Event] {
        self.log.events()
    }

    /// Takes the events produced since the last call (the log's numbering continues).
    pub fn take_events(&mut self) -> Vec<Event> {
        self.log.take()
    }

    /// The number the next event will get.
    pub fn next_event_seq(&self) -> u64 {
        self.log.next_seq()
    }

    // ----- internals shared by the parts' callers -----

    /// Logs what just happened, at the clock's time.
    fn push_event(&mut self, kind: EventKind) {
        self.log.push(self.agenda.now(), kind);
    }

    /// Lends the outputs buffer (the engine's outputs not yet settled) to
    /// `f`, which may use the rest of the world while it fills the buffer,
    /// and takes it back: the one place the buffer leaves the world.
    fn with_outputs<R>(&mut self, f: impl FnOnce(&mut World, &mut Vec<Output>) -> R) -> R {
        let mut out = std::mem::take(&mut self.outputs);
        let result = f(self, &mut out);
        self.outputs = out;
        result
    }

    /// A segment leaves a host: see [`Wire::launch`].
    fn launch(&mut self, departure: Departure) -> u64 {
        self.wire.launch(departure, &self.hosts, &mut self.rng, &mut self.agenda, &mut self.log)
    }

    /// Arms a host's timer in the agenda when its stack's earliest deadline
    /// is sooner than the entry it has.
    fn rearm_host_timer(&mut self, host: HostId) {
        if let Some((deadline, generation)) = self.hosts.rearm_timer(host) {
            self.agenda.schedule(deadline, Item::HostTimer { host, generation });
        }
    }
}
