//! One session's world: hosts with their TCP stacks, links, fault rules, a
//! discrete-event scheduler on a virtual clock, and the event log.
//!
//! The world owns the only RNG (seeded) and the only clock (a number it
//! advances), so the same seed and the same commands give the same events,
//! byte for byte. Segments cross links as encoded bytes: a corrupted bit is
//! found by the receiver's checksum, and a raw host (or smoltcp in the tests)
//! sees exactly what a wire would carry.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rustc_hash::FxHashMap;
use serde::Serialize;

use super::event::{ConnId, DropReason, Event, EventKind, Side, WireSegment};
use super::fault::{FaultAction, FaultRule, FaultSpec};
use super::link::{LinkDir, LinkError, LinkParams};
use crate::engine::profile::ProfileError;
use crate::engine::segment::DecodeError;
use crate::engine::{
    Cause, Delivery, Flags, Output, Profile, Segment, SeqNumber, SocketId, Stack, StackError, State, TcbStatus,
    TcpOption, UserCall,
};

/// A host's index in its world.
pub type HostId = u32;

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
}

/// What kind of host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HostKind {
    /// Runs tcplab's TCP.
    #[default]
    Tcp,
    /// No TCP: records what reaches it and never answers (a script or another
    /// implementation plays it).
    Raw,
}

/// A packet that reached a raw host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawPacket {
    /// When it arrived.
    pub t_ns: u64,
    /// The sender's address.
    pub src_ip: Ipv4Addr,
    /// The TCP bytes (header and payload).
    pub bytes: Bytes,
}

enum HostStack {
    Tcp(Box<Stack>),
    Raw(Vec<RawPacket>),
}

struct Host {
    name: Arc<str>,
    ip: Ipv4Addr,
    stack: HostStack,
    /// Generation of the valid timer entry in the world's queue.
    timer_gen: u64,
    /// Deadline of that entry.
    timer_at: Option<u64>,
}

/// A segment on its way across a link.
#[derive(Clone, Debug)]
pub(crate) struct InFlight {
    id: u64,
    from: HostId,
    to: HostId,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    /// The encoded segment. `None` while nothing has touched the segment
    /// since a TCP here encoded it: then `segment` (its checksum field set)
    /// is exactly what the bytes would decode to, so they are made only if
    /// needed (a bit to flip, a raw host to hand them to) and the receiver
    /// takes `segment` as it is, sparing an encoding and a decoding.
    /// (Boxed: rarely there, and a packet on its way is moved in and out of
    /// its slot, so it is kept small.)
    bytes: Option<Box<Bytes>>,
    /// The segment as sent (for the log; the receiver decodes `bytes` when there are any).
    segment: Segment,
    retransmission: bool,
    injected: bool,
}

enum Item {
    /// A packet in [`World::in_flight`] (by slot), so that scheduling one
    /// allocates nothing once the slots have grown to the traffic.
    Arrival(u32),
    HostTimer {
        host: HostId,
        generation: u64,
    },
}

/// An item due at a virtual time; items due at the same time come in the
/// order they were scheduled (determinism).
struct Scheduled {
    /// The time in the high 64 bits, the scheduling order in the low ones:
    /// one branch-free comparison orders the heap.
    key: u128,
    item: Item,
}

impl Scheduled {
    fn at(&self) -> u64 {
        (self.key >> 64) as u64
    }
}

/// What is scheduled, soonest first: a queue for arrivals scheduled in time
/// order (most of them: a link's latency is mostly the same for every
/// packet, so they are scheduled in the order they fall due) and a heap for
/// the rest (timers, jittered or reordered packets). Popping takes the
/// sooner of the two fronts, so the order is exactly a single heap's (keys
/// are unique), and the common case costs O(1) instead of O(log n).
#[derive(Default)]
struct Agenda {
    in_order: VecDeque<Scheduled>,
    others: BinaryHeap<Reverse<Scheduled>>,
}

impl Agenda {
    fn push(&mut self, item: Scheduled) {
        // Timers go to the heap: one far ahead at the queue's back would send
        // every arrival after it there.
        let arrival = matches!(item.item, Item::Arrival(_));
        if arrival && self.in_order.back().is_none_or(|last| last.key < item.key) {
            self.in_order.push_back(item);
        } else {
            self.others.push(Reverse(item));
        }
    }

    /// `true` when the soonest item is the in-order queue's front.
    fn front_is_in_order(&self) -> bool {
        match (self.in_order.front(), self.others.peek()) {
            (Some(a), Some(Reverse(b))) => a.key < b.key,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    fn peek(&self) -> Option<&Scheduled> {
        if self.front_is_in_order() { self.in_order.front() } else { self.others.peek().map(|Reverse(s)| s) }
    }

    fn pop(&mut self) -> Option<Scheduled> {
        if self.front_is_in_order() { self.in_order.pop_front() } else { self.others.pop().map(|Reverse(s)| s) }
    }
}

impl InFlight {
    /// The encoded bytes, made now if they were not yet.
    fn bytes(&mut self) -> &Bytes {
        let (segment, src_ip, dst_ip) = (&self.segment, self.src_ip, self.dst_ip);
        self.bytes.get_or_insert_with(|| Box::new(segment.encode(src_ip, dst_ip).unwrap_or_default()))
    }

    /// Octets on the wire.
    fn wire_len(&self) -> usize {
        self.bytes.as_ref().map_or_else(|| self.segment.wire_len(), |b| b.len())
    }
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// One end of a connection, as the world tracks it.
#[derive(Clone, Debug)]
pub struct End {
    /// The host it lives on.
    pub host: HostId,
    socket: Option<SocketId>,
    /// Its state (kept after the TCB is deleted).
    pub state: State,
    /// The TCB as it was when it reached CLOSED.
    final_status: Option<TcbStatus>,
    /// Everything received, in order (when the world keeps data).
    pub received: Vec<u8>,
    /// Count of octets received.
    pub received_total: u64,
    /// Whether the application reads everything as soon as it arrives.
    pub auto_read: bool,
    /// ISS, to pair a listener's endpoint with the client that sent the SYN.
    iss: u32,
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
    /// Whether the user took it with [`World::accept`].
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
    stack_id: crate::engine::ListenerId,
}

/// How a world is made.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// The RNG seed: the same seed and commands give the same events.
    pub seed: u64,
    /// The profile hosts and connections use unless told otherwise.
    pub profile: Profile,
    /// Keep every octet received (for the API's `received`); off for benchmarks.
    pub keep_received: bool,
    /// Keep connections whose ends are all CLOSED; off for benchmarks.
    pub keep_closed: bool,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig { seed: 0, profile: Profile::default(), keep_received: true, keep_closed: true }
    }
}

/// An active OPEN as the user asks for it.
#[derive(Clone, Debug, Default)]
pub struct ConnectSpec {
    /// Client host name.
    pub client: String,
    /// Server host name.
    pub server: String,
    /// Server port.
    pub port: u16,
    /// Client port (ephemeral when absent).
    pub client_port: Option<u16>,
    /// Client ISN (from the profile when absent).
    pub isn: Option<u32>,
    /// Per-connection profile (the world's when absent).
    pub profile: Option<Profile>,
}

/// A passive OPEN as the user asks for it.
#[derive(Clone, Debug, Default)]
pub struct ListenSpec {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// ISN of accepted connections (from the profile when absent).
    pub isn: Option<u32>,
    /// Profile of accepted connections (the world's when absent).
    pub profile: Option<Profile>,
    /// At most this many connections made and not yet accepted: a further SYN
    /// is dropped unanswered, as BSD and Linux do (unlimited when absent).
    pub backlog: Option<u32>,
}

/// A crafted segment: any header values, sent as if by `from`.
#[derive(Clone, Debug, Default)]
pub struct InjectSpec {
    /// The host it appears to come from.
    pub from: String,
    /// The destination host.
    pub to: String,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// SEG.SEQ.
    pub seq: u32,
    /// SEG.ACK.
    pub ack: u32,
    /// Control bits.
    pub flags: Flags,
    /// SEG.WND.
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options.
    pub options: Vec<TcpOption>,
    /// Data.
    pub payload: Bytes,
    /// Extra delay before it enters the link, in nanoseconds.
    pub delay_ns: u64,
}

/// Scheduled items one call may process unless its caller says otherwise:
/// the default of the server's `run_max_events`, and of the CLI's lab and
/// packetdrill runs. About a third of a second of work; a busy world emits
/// two or three events per item.
pub const DEFAULT_RUN_MAX_ITEMS: u64 = 1_000_000;

/// How a `run_until_idle` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RunOutcome {
    /// Nothing is scheduled any more.
    pub idle: bool,
    /// Scheduled items processed.
    pub steps: u64,
    /// The cap that stopped the run, if one did.
    pub stopped_by: Option<RunCap>,
}

/// The cap that stopped a bounded run before the world was idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunCap {
    /// As many items as allowed were processed.
    Steps,
    /// The next item is due after the time allowed.
    Time,
}

/// A simulated network of hosts running TCP.
pub struct World {
    now: u64,
    rng: ChaCha8Rng,
    profile: Arc<Profile>,
    config: WorldConfig,
    hosts: Vec<Host>,
    host_by_name: FxHashMap<Arc<str>, HostId>,
    host_by_ip: FxHashMap<Ipv4Addr, HostId>,
    links: FxHashMap<(HostId, HostId), LinkDir>,
    queue: Agenda,
    /// Packets on their way, by the slot their arrival names; `free_slots`
    /// are the empty ones.
    in_flight: Vec<Option<InFlight>>,
    free_slots: Vec<u32>,
    next_order: u64,
    faults: Vec<FaultRule>,
    next_fault: u64,
    connections: FxHashMap<ConnId, Connection>,
    next_conn: ConnId,
    /// Client ends whose server end is not known yet, by
    /// (client ip, client port, server ip, server port).
    pending_clients: FxHashMap<(Ipv4Addr, u16, Ipv4Addr, u16), ConnId>,
    listeners: Vec<ListenerRecord>,
    events: Vec<Event>,
    next_event_seq: u64,
    next_segment_id: u64,
    scratch: Vec<Output>,
    /// Endpoints that became readable while settling a host (kept for its allocation).
    scratch_readable: Vec<SocketId>,
    default_link: LinkParams,
}

const SIDE_CLIENT: u64 = 1;
const SIDE_SERVER: u64 = 2;

fn tag(conn: ConnId, side: Side) -> u64 {
    conn << 2 | if side == Side::Client { SIDE_CLIENT } else { SIDE_SERVER }
}

fn untag(user_data: u64) -> Option<(ConnId, Side)> {
    match user_data & 3 {
        SIDE_CLIENT => Some((user_data >> 2, Side::Client)),
        SIDE_SERVER => Some((user_data >> 2, Side::Server)),
        _ => None,
    }
}

impl World {
    /// An empty world at time 0.
    ///
    /// # Errors
    /// [`WorldError::Profile`] for an unusable profile.
    pub fn new(config: WorldConfig) -> Result<World, WorldError> {
        config.profile.validate()?;
        Ok(World {
            now: 0,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            profile: Arc::new(config.profile.clone()),
            config,
            hosts: Vec::new(),
            host_by_name: FxHashMap::default(),
            host_by_ip: FxHashMap::default(),
            links: FxHashMap::default(),
            queue: Agenda::default(),
            in_flight: Vec::new(),
            free_slots: Vec::new(),
            next_order: 0,
            faults: Vec::new(),
            next_fault: 1,
            connections: FxHashMap::default(),
            next_conn: 1,
            pending_clients: FxHashMap::default(),
            listeners: Vec::new(),
            events: Vec::new(),
            next_event_seq: 1,
            next_segment_id: 1,
            scratch: Vec::new(),
            scratch_readable: Vec::new(),
            default_link: LinkParams::default(),
        })
    }

    /// Virtual time now, in nanoseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The world's profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    // ----- topology -----

    /// Adds a host.
    ///
    /// # Errors
    /// A duplicate name or address, or a bad name.
    pub fn add_host(&mut self, name: &str, ip: Ipv4Addr, kind: HostKind) -> Result<HostId, WorldError> {
        if name.is_empty() || name.len() > 64 {
            return Err(WorldError::BadHostName);
        }
        if self.host_by_name.contains_key(name) {
            return Err(WorldError::DuplicateHost(name.to_string()));
        }
        if self.host_by_ip.contains_key(&ip) {
            return Err(WorldError::DuplicateAddress(ip));
        }
        let id = self.hosts.len() as HostId;
        let name: Arc<str> = Arc::from(name);
        let stack = match kind {
            HostKind::Tcp => HostStack::Tcp(Box::new(Stack::new(ip, self.profile.clone()))),
            HostKind::Raw => HostStack::Raw(Vec::new()),
        };
        self.hosts.push(Host { name: name.clone(), ip, stack, timer_gen: 0, timer_at: None });
        self.host_by_name.insert(name, id);
        self.host_by_ip.insert(ip, id);
        Ok(id)
    }

    /// A host's id by name.
    ///
    /// # Errors
    /// [`WorldError::UnknownHost`].
    pub fn host_id(&self, name: &str) -> Result<HostId, WorldError> {
        self.host_by_name.get(name).copied().ok_or_else(|| WorldError::UnknownHost(name.to_string()))
    }

    /// A host's name.
    pub fn host_name(&self, id: HostId) -> &str {
        self.hosts.get(id as usize).map_or("?", |h| &h.name)
    }

    /// A host's address.
    pub fn host_ip(&self, id: HostId) -> Option<Ipv4Addr> {
        self.hosts.get(id as usize).map(|h| h.ip)
    }

    /// Every host: name, address and kind.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, Ipv4Addr, HostKind)> {
        self.hosts.iter().map(|h| {
            let kind = match h.stack {
                HostStack::Tcp(_) => HostKind::Tcp,
                HostStack::Raw(_) => HostKind::Raw,
            };
            (&*h.name, h.ip, kind)
        })
    }

    /// Sets the link between two hosts, the same in both directions.
    ///
    /// # Errors
    /// Unknown hosts or out-of-range settings.
    pub fn set_link(&mut self, a: &str, b: &str, params: LinkParams) -> Result<(), WorldError> {
        self.set_link_dir(a, b, params.clone())?;
        self.set_link_dir(b, a, params)
    }

    /// Sets one direction of a link.
    ///
    /// # Errors
    /// Unknown hosts or out-of-range settings.
    pub fn set_link_dir(&mut self, from: &str, to: &str, params: LinkParams) -> Result<(), WorldError> {
        params.validate()?;
        let from = self.host_id(from)?;
        let to = self.host_id(to)?;
        let dir = self.links.entry((from, to)).or_default();
        dir.params = params;
        Ok(())
    }

    /// The link settings from one host to another (the default link when none was set).
    pub fn link(&self, from: HostId, to: HostId) -> &LinkParams {
        self.links.get(&(from, to)).map_or(&self.default_link, |d| &d.params)
    }

    /// Every explicitly set link direction.
    pub fn links(&self) -> impl Iterator<Item = (HostId, HostId, &LinkParams)> {
        let mut keys: Vec<_> = self.links.keys().copied().collect();
        keys.sort_unstable();
        keys.into_iter().map(|k| (k.0, k.1, &self.links[&k].params))
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
        let host = self.host_id(&spec.host)?;
        let profile = self.profile_for(spec.profile)?;
        let id = self.listeners.len() as u64 + 1;
        let stack = self.tcp_stack(host)?;
        let stack_id = stack.listen(spec.port, profile, spec.isn, id)?;
        self.listeners.push(ListenerRecord { id, host, port: spec.port, open: true, backlog: spec.backlog, stack_id });
        let name = self.hosts[host as usize].name.clone();
        self.push_event(EventKind::StateChanged {
            connection: None,
            listener: Some(id),
            host: name,
            side: None,
            from: State::Closed,
            to: State::Listen,
            cause: Cause::User { call: UserCall::Open },
            rfc: "3.10.1".into(),
        });
        Ok(id)
    }

    /// Closes a listener (connections it accepted live on).
    ///
    /// # Errors
    /// [`WorldError::UnknownListener`].
    pub fn close_listener(&mut self, id: u64) -> Result<(), WorldError> {
        let record = self
            .listeners
            .get(id.wrapping_sub(1) as usize)
            .filter(|l| l.open)
            .cloned()
            .ok_or(WorldError::UnknownListener(id))?;
        self.tcp_stack(record.host)?.unlisten(record.stack_id)?;
        self.listeners[id as usize - 1].open = false;
        let name = self.hosts[record.host as usize].name.clone();
        self.push_event(EventKind::StateChanged {
            connection: None,
            listener: Some(id),
            host: name,
            side: None,
            from: State::Listen,
            to: State::Closed,
            cause: Cause::User { call: UserCall::Close },
            rfc: "3.10.4".into(),
        });
        Ok(())
    }

    /// Every listener ever opened.
    pub fn listeners(&self) -> &[ListenerRecord] {
        &self.listeners
    }

    /// Connections a listener made that are not accepted yet and not CLOSED:
    /// what its backlog counts.
    pub fn pending(&self, listener: u64) -> usize {
        self.connections
            .values()
            .filter(|c| c.listener == Some(listener) && !c.accepted)
            .filter(|c| c.server.as_ref().is_some_and(|e| e.state != State::Closed))
            .count()
    }

    /// The user's accept(): the oldest connection the listener made that is
    /// synchronized (ESTABLISHED or later, not CLOSED) and not accepted yet,
    /// now marked accepted; `None` when there is none.
    ///
    /// # Errors
    /// [`WorldError::UnknownListener`].
    pub fn accept(&mut self, listener: u64) -> Result<Option<ConnId>, WorldError> {
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

    /// The open listener on a host's port with a full backlog, if any.
    fn full_listener(&self, host: HostId, port: u16) -> Option<u64> {
        let l = self.listeners.iter().find(|l| l.open && l.host == host && l.port == port)?;
        let backlog = l.backlog?;
        (self.pending(l.id) >= backlog as usize).then_some(l.id)
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

    fn tcp_stack(&mut self, host: HostId) -> Result<&mut Stack, WorldError> {
        let h = &mut self.hosts[host as usize];
        match &mut h.stack {
            HostStack::Tcp(stack) => Ok(stack),
            HostStack::Raw(_) => Err(WorldError::NotTcpHost(h.name.to_string())),
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
        let client = self.host_id(&spec.client)?;
        let server = self.host_id(&spec.server)?;
        let server_ip = self.hosts[server as usize].ip;
        let client_ip = self.hosts[client as usize].ip;
        let profile = self.profile_for(spec.profile)?;
        let conn_id = self.next_conn;
        // A simultaneous open: the peer already opened towards us.
        let reverse = spec
            .client_port
            .and_then(|cp| self.pending_clients.get(&(server_ip, spec.port, client_ip, cp)).copied())
            .filter(|c| self.connections.get(c).is_some_and(|c| c.server.is_none()));
        let (conn_id, side) = match reverse {
            Some(existing) => (existing, Side::Server),
            None => (conn_id, Side::Client),
        };
        let mut out = std::mem::take(&mut self.scratch);
        let World { hosts, rng, .. } = self;
        let stack = match &mut hosts[client as usize].stack {
            HostStack::Tcp(stack) => stack,
            HostStack::Raw(_) => {
                self.scratch = out;
                return Err(WorldError::NotTcpHost(spec.client));
            }
        };
        let result =
            stack.connect(spec.client_port, server_ip, spec.port, profile, spec.isn, rng, tag(conn_id, side), &mut out);
        let socket = match result {
            Ok(socket) => socket,
            Err(e) => {
                out.clear();
                self.scratch = out;
                return Err(e.into());
            }
        };
        let status = stack.status(socket)?;
        let end = End {
            host: client,
            socket: Some(socket),
            state: State::SynSent,
            final_status: None,
            received: Vec::new(),
            received_total: 0,
            auto_read: true,
            iss: status.iss,
        };
        match side {
            Side::Client => {
                self.next_conn += 1;
                self.connections.insert(
                    conn_id,
                    Connection { id: conn_id, client: Some(end), server: None, listener: None, accepted: false },
                );
                self.pending_clients.insert((client_ip, status.local_port, server_ip, spec.port), conn_id);
            }
            Side::Server => {
                if let Some(conn) = self.connections.get_mut(&conn_id) {
                    conn.server = Some(end);
                }
                self.pending_clients.remove(&(server_ip, spec.port, client_ip, status.local_port));
            }
        }
        self.scratch = out;
        self.settle(client);
        Ok(conn_id)
    }

    /// A connection by id.
    pub fn connection(&self, id: ConnId) -> Option<&Connection> {
        self.connections.get(&id)
    }

    /// Every connection kept, in id order.
    pub fn connections(&self) -> Vec<&Connection> {
        let mut all: Vec<&Connection> = self.connections.values().collect();
        all.sort_unstable_by_key(|c| c.id);
        all
    }

    /// Number of connections kept.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    fn end(&self, conn: ConnId, side: Side) -> Result<&End, WorldError> {
        self.connections
            .get(&conn)
            .ok_or(WorldError::UnknownConnection(conn))?
            .end(side)
            .ok_or(WorldError::NoSuchEnd(conn, side.name()))
    }

    /// STATUS of one end (its last status once CLOSED).
    ///
    /// # Errors
    /// Unknown connection or end.
    pub fn status(&self, conn: ConnId, side: Side) -> Result<TcbStatus, WorldError> {
        let end = self.end(conn, side)?;
        if let Some(status) = &end.final_status {
            return Ok(status.clone());
        }
        match (&self.hosts[end.host as usize].stack, end.socket) {
            (HostStack::Tcp(stack), Some(socket)) => Ok(stack.status(socket)?),
            _ => Err(WorldError::NoSuchEnd(conn, side.name())),
        }
    }

    /// Everything one end has received so far, in order.
    ///
    /// # Errors
    /// Unknown connection or end.
    pub fn received(&self, conn: ConnId, side: Side) -> Result<&[u8], WorldError> {
        Ok(&self.end(conn, side)?.received)
    }

    fn live_socket(&self, conn: ConnId, side: Side) -> Result<(HostId, SocketId), WorldError> {
        let end = self.end(conn, side)?;
        match end.socket {
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
        let n = self.tcp_stack(host)?.send(socket, data)?;
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
        let n = self.tcp_stack(host)?.send_bytes(socket, data)?;
        self.settle(host);
        Ok(n)
    }

    /// CLOSE one end.
    ///
    /// # Errors
    /// Unknown connection or end, or the state refuses.
    pub fn close(&mut self, conn: ConnId, side: Side) -> Result<(), WorldError> {
        let (host, socket) = self.live_socket(conn, side)?;
        let mut out = std::mem::take(&mut self.scratch);
        let result = self.tcp_stack(host)?.close(socket, &mut out);
        self.scratch = out;
        result?;
        self.settle(host);
        Ok(())
    }

    /// ABORT one end.
    ///
    /// # Errors
    /// Unknown connection or end.
    pub fn abort(&mut self, conn: ConnId, side: Side) -> Result<(), WorldError> {
        let (host, socket) = self.live_socket(conn, side)?;
        let now = self.now;
        let mut out = std::mem::take(&mut self.scratch);
        let result = self.tcp_stack(host)?.abort(now, socket, &mut out);
        self.scratch = out;
        result?;
        self.settle(host);
        Ok(())
    }

    /// Whether one end's application reads data as soon as it arrives (the
    /// default). Turn it off to let a receive buffer fill and the window close.
    ///
    /// # Errors
    /// Unknown connection or end.
    pub fn set_auto_read(&mut self, conn: ConnId, side: Side, on: bool) -> Result<(), WorldError> {
        self.end(conn, side)?;
        if let Some(end) = self.connections.get_mut(&conn).and_then(|c| c.end_mut(side)) {
            end.auto_read = on;
        }
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

    fn read_into_end(&mut self, host: HostId, socket: SocketId, max: usize) -> usize {
        let HostStack::Tcp(stack) = &mut self.hosts[host as usize].stack else {
            return 0;
        };
        let Ok(user_data) = stack.user_data(socket) else {
            return 0;
        };
        let keep = self.config.keep_received;
        let (n, data) = if keep {
            let Ok(data) = stack.recv(socket, max) else {
                return 0;
            };
            (data.len(), data)
        } else {
            // Nobody will look at the octets: count them and let them go.
            let Ok(n) = stack.recv_discard(socket, max) else {
                return 0;
            };
            (n, Vec::new())
        };
        if let Some((conn, side)) = untag(user_data) {
            if let Some(end) = self.connections.get_mut(&conn).and_then(|c| c.end_mut(side)) {
                end.received_total += n as u64;
                if keep {
                    end.received.extend_from_slice(&data);
                }
            }
        }
        n
    }

    // ----- faults and injection -----

    /// Installs a fault rule; returns its id.
    ///
    /// # Errors
    /// Unknown host names.
    pub fn add_fault(&mut self, spec: FaultSpec) -> Result<u64, WorldError> {
        let from = spec.from.as_deref().map(|n| self.host_id(n)).transpose()?;
        let to = spec.to.as_deref().map(|n| self.host_id(n)).transpose()?;
        let id = self.next_fault;
        self.next_fault += 1;
        self.faults.push(FaultRule { id, spec, from, to, matched: 0, acted: 0, held: Vec::new() });
        Ok(id)
    }

    /// The installed fault rules.
    pub fn faults(&self) -> &[FaultRule] {
        &self.faults
    }

    /// Removes a fault rule; segments it holds are released first.
    ///
    /// # Errors
    /// [`WorldError::UnknownFault`].
    pub fn remove_fault(&mut self, id: u64) -> Result<(), WorldError> {
        self.release_fault(id)?;
        self.faults.retain(|f| f.id != id);
        Ok(())
    }

    /// Sends the segments a rule holds on their way; returns how many.
    ///
    /// # Errors
    /// [`WorldError::UnknownFault`].
    pub fn release_fault(&mut self, id: u64) -> Result<usize, WorldError> {
        let rule = self.faults.iter_mut().find(|f| f.id == id).ok_or(WorldError::UnknownFault(id))?;
        let held = std::mem::take(&mut rule.held);
        let n = held.len();
        for packet in held {
            let segment = self.wire(&packet);
            self.push_event(EventKind::SegmentReleased { fault: id, segment });
            let latency = self.link(packet.from, packet.to).latency_ns();
            let slot = self.park_packet(packet);
            self.schedule(self.now + latency, Item::Arrival(slot));
        }
        Ok(n)
    }

    /// Sends a crafted segment as if `from` had sent it (through the link and
    /// the fault rules like any other).
    ///
    /// # Errors
    /// Unknown hosts or options that do not fit.
    pub fn inject(&mut self, spec: InjectSpec) -> Result<u64, WorldError> {
        let from = self.host_id(&spec.from)?;
        let to = self.host_id(&spec.to)?;
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
        let src_ip = self.hosts[from as usize].ip;
        let dst_ip = self.hosts[to as usize].ip;
        let bytes = segment.encode(src_ip, dst_ip)?;
        Ok(self.launch(from, dst_ip, Some(bytes), segment, false, true, None, spec.delay_ns))
    }

    /// Puts bytes a raw host's peer implementation produced on the wire from
    /// that host (for interoperability tests and scripted peers).
    ///
    /// # Errors
    /// Unknown or non-raw host.
    pub fn raw_send(&mut self, from: &str, dst_ip: Ipv4Addr, bytes: Bytes) -> Result<u64, WorldError> {
        let host = self.host_id(from)?;
        if !matches!(self.hosts[host as usize].stack, HostStack::Raw(_)) {
            return Err(WorldError::NotRawHost(from.to_string()));
        }
        let segment = Segment::decode_unverified(&bytes).unwrap_or_default();
        Ok(self.launch(host, dst_ip, Some(bytes), segment, false, false, None, 0))
    }

    /// Takes the packets that reached a raw host since the last call.
    ///
    /// # Errors
    /// Unknown or non-raw host.
    pub fn take_raw_inbox(&mut self, host: &str) -> Result<Vec<RawPacket>, WorldError> {
        let id = self.host_id(host)?;
        match &mut self.hosts[id as usize].stack {
            HostStack::Raw(inbox) => Ok(std::mem::take(inbox)),
            HostStack::Tcp(_) => Err(WorldError::NotRawHost(host.to_string())),
        }
    }

    // ----- the clock -----

    /// When the next scheduled item is due, if any.
    pub fn next_event_at(&mut self) -> Option<u64> {
        self.drop_stale_timers();
        self.queue.peek().map(Scheduled::at)
    }

    /// Drops timer entries that no longer match their host's earliest
    /// deadline (moving them where they belong), so that the clock never
    /// jumps to a timer that was cancelled.
    fn drop_stale_timers(&mut self) {
        while let Some(s) = self.queue.peek() {
            let Item::HostTimer { host, generation } = s.item else {
                break;
            };
            let at = s.at();
            let h = &mut self.hosts[host as usize];
            if h.timer_gen != generation {
                self.queue.pop();
                continue;
            }
            let deadline = match &mut h.stack {
                HostStack::Tcp(stack) => stack.poll_at(),
                HostStack::Raw(_) => None,
            };
            if deadline == Some(at) {
                break;
            }
            self.queue.pop();
            h.timer_at = None;
            self.rearm_host_timer(host);
        }
    }

    /// Processes the next scheduled item (one arrival or one host's timers),
    /// moving the clock to it. Returns `false` when nothing is scheduled.
    pub fn step(&mut self) -> bool {
        self.drop_stale_timers();
        let Some(scheduled) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(scheduled.at());
        match scheduled.item {
            Item::Arrival(slot) => {
                if let Some(packet) = self.unpark_packet(slot) {
                    self.arrive(packet);
                }
            }
            Item::HostTimer { host, .. } => {
                self.hosts[host as usize].timer_at = None;
                let now = self.now;
                let mut out = std::mem::take(&mut self.scratch);
                if let HostStack::Tcp(stack) = &mut self.hosts[host as usize].stack {
                    stack.on_timer(now, &mut out);
                }
                self.scratch = out;
                self.settle(host);
            }
        }
        true
    }

    /// Runs everything due up to `now + duration`, then sets the clock there.
    pub fn advance(&mut self, duration_ns: u64) -> u64 {
        let until = self.now.saturating_add(duration_ns);
        self.run_until(until);
        self.now
    }

    /// Runs everything due at or before `t`, then sets the clock to `t`
    /// (if it is not in the past).
    pub fn run_until(&mut self, t: u64) {
        while self.next_event_at().is_some_and(|at| at <= t) {
            self.step();
        }
        self.now = self.now.max(t);
    }

    /// [`World::run_until`] processing at most `max_steps` items: how a
    /// caller with a budget runs towards `t` in bounded turns. Returns the
    /// items processed and whether `t` was reached (the clock is then at
    /// `t`; otherwise at the last item processed).
    pub fn run_until_bounded(&mut self, t: u64, max_steps: u64) -> (u64, bool) {
        let mut steps = 0;
        while self.next_event_at().is_some_and(|at| at <= t) {
            if steps >= max_steps {
                return (steps, false);
            }
            self.step();
            steps += 1;
        }
        self.now = self.now.max(t);
        (steps, true)
    }

    /// Runs until nothing is scheduled, or a cap is reached: `max_steps`
    /// items processed, or virtual time passing `max_time_ns` from now.
    pub fn run_until_idle(&mut self, max_steps: u64, max_time_ns: u64) -> RunOutcome {
        let deadline = self.now.saturating_add(max_time_ns);
        let mut steps = 0;
        loop {
            let Some(at) = self.next_event_at() else {
                return RunOutcome { idle: true, steps, stopped_by: None };
            };
            if steps >= max_steps {
                return RunOutcome { idle: false, steps, stopped_by: Some(RunCap::Steps) };
            }
            if at > deadline {
                self.now = self.now.max(deadline);
                return RunOutcome { idle: false, steps, stopped_by: Some(RunCap::Time) };
            }
            self.step();
            steps += 1;
        }
    }

    // ----- the event log -----

    /// Events since the last [`World::take_events`], in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Takes the events produced since the last call (the log's numbering continues).
    pub fn take_events(&mut self) -> Vec<Event> {
        // The next batch is likely as large as this one: give it the room now
        // rather than growing (and copying) the log from empty again.
        let room = self.events.len().min(1 << 16);
        std::mem::replace(&mut self.events, Vec::with_capacity(room))
    }

    /// The number the next event will get.
    pub fn next_event_seq(&self) -> u64 {
        self.next_event_seq
    }

    fn push_event(&mut self, kind: EventKind) {
        let seq = self.next_event_seq;
        self.next_event_seq += 1;
        self.events.push(Event { seq, t_ns: self.now, kind });
    }

    // ----- internals: moving segments -----

    fn schedule(&mut self, at: u64, item: Item) {
        let order = self.next_order;
        self.next_order += 1;
        self.queue.push(Scheduled { key: u128::from(at) << 64 | u128::from(order), item });
    }

    /// The name of the host a packet goes to (its address when no host has it).
    fn to_name(&self, p: &InFlight) -> Arc<str> {
        // `to` is that host whenever one has the address (no lookup needed).
        let to = &self.hosts[p.to as usize];
        if to.ip == p.dst_ip {
            return to.name.clone();
        }
        match self.host_by_ip.get(&p.dst_ip) {
            Some(&h) => self.hosts[h as usize].name.clone(),
            None => Arc::from(p.dst_ip.to_string()),
        }
    }

    fn wire(&self, p: &InFlight) -> WireSegment {
        WireSegment {
            id: p.id,
            from: self.hosts[p.from as usize].name.clone(),
            to: self.to_name(p),
            segment: p.segment.clone(),
            retransmission: p.retransmission,
            injected: p.injected,
        }
    }

    /// [`World::wire`], taking the segment instead of copying it.
    fn wire_owned(&self, p: InFlight) -> WireSegment {
        WireSegment {
            id: p.id,
            from: self.hosts[p.from as usize].name.clone(),
            to: self.to_name(&p),
            segment: p.segment,
            retransmission: p.retransmission,
            injected: p.injected,
        }
    }

    /// A segment leaves `from`: log it, apply fault rules and the link, schedule its arrival.
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &mut self,
        from: HostId,
        dst_ip: Ipv4Addr,
        bytes: Option<Bytes>,
        mut segment: Segment,
        retransmission: bool,
        injected: bool,
        connection: Option<ConnId>,
        extra_delay: u64,
    ) -> u64 {
        let id = self.next_segment_id;
        self.next_segment_id += 1;
        if let Some(bytes) = bytes.as_ref().filter(|b| b.len() >= 18) {
            segment.checksum = u16::from_be_bytes([bytes[16], bytes[17]]);
        }
        let src_ip = self.hosts[from as usize].ip;
        let to = self.host_by_ip.get(&dst_ip).copied();
        let bytes = bytes.map(Box::new);
        let mut packet =
            InFlight { id, from, to: to.unwrap_or(from), src_ip, dst_ip, bytes, segment, retransmission, injected };
        let wire = self.wire(&packet);
        self.push_event(EventKind::SegmentSent { connection, segment: wire });
        let Some(to) = to else {
            let segment = self.wire(&packet);
            self.push_event(EventKind::SegmentDropped { reason: DropReason::NoRoute, fault: None, segment });
            return id;
        };

        // Fault rules, in the order they were added: every rule counts, the first in turn acts.
        let mut action = None;
        for rule in &mut self.faults {
            if rule.consider(from, Some(to), &packet.segment) && action.is_none() {
                action = Some((rule.id, rule.spec.action, rule.spec.delay_ns));
            }
        }
        let mut delay = extra_delay;
        let mut copies = 1;
        let mut dup_fault = None;
        let mut corrupted = false;
        match action {
            Some((fault, FaultAction::Drop, _)) => {
                let segment = self.wire(&packet);
                self.push_event(EventKind::SegmentDropped { reason: DropReason::Fault, fault: Some(fault), segment });
                return id;
            }
            Some((fault, FaultAction::Hold, _)) => {
                let segment = self.wire(&packet);
                self.push_event(EventKind::SegmentHeld { fault, segment });
                if let Some(rule) = self.faults.iter_mut().find(|f| f.id == fault) {
                    rule.held.push(packet);
                }
                return id;
            }
            Some((fault, FaultAction::Delay, delay_ns)) => {
                let segment = self.wire(&packet);
                self.push_event(EventKind::SegmentDelayed { fault, delay_ns, segment });
                delay += delay_ns;
            }
            Some((fault, FaultAction::Duplicate, _)) => {
                copies = 2;
                dup_fault = Some(fault);
            }
            Some((_, FaultAction::Corrupt, _)) => {
                let flipped = self.flip_bit(packet.bytes());
                packet.bytes = Some(Box::new(flipped));
                corrupted = true;
            }
            None => {}
        }

        // The link's impairments, drawn from the seeded RNG in a fixed order.
        let params = self.links.get(&(from, to)).map_or(&self.default_link, |d| &d.params).clone();
        if params.loss > 0.0 && self.chance(params.loss) {
            let segment = self.wire(&packet);
            self.push_event(EventKind::SegmentDropped { reason: DropReason::Loss, fault: None, segment });
            return id;
        }
        // Drawn whether or not a fault already corrupted the segment (the RNG
        // sequence stays the same), but one flipped bit is enough: a second
        // flip could cancel the first in the ones' complement sum (the same
        // bit position, opposite directions) and let damaged octets through
        // a checksum that is meant to catch them here.
        if params.corrupt > 0.0 && self.chance(params.corrupt) && !corrupted {
            let flipped = self.flip_bit(packet.bytes());
            packet.bytes = Some(Box::new(flipped));
        }
        if params.duplicate > 0.0 && self.chance(params.duplicate) {
            copies = 2;
        }
        let start = self.now + delay;
        // (The link is looked up again only when it has a bandwidth to keep busy.)
        let departure = match (params.bandwidth_bps > 0).then(|| self.links.get_mut(&(from, to))).flatten() {
            Some(dir) => {
                let begin = start.max(dir.busy_until);
                dir.busy_until = begin + params.serialisation_ns(packet.wire_len());
                dir.busy_until
            }
            None => start,
        };
        if copies == 2 {
            let segment = self.wire(&packet);
            self.push_event(EventKind::SegmentDuplicated { fault: dup_fault, segment });
        }
        for copy in 0..copies {
            let mut at = departure + params.latency_ns();
            if params.jitter_ns() > 0 {
                at += self.rng.next_u64() % (params.jitter_ns() + 1);
            }
            if params.reorder > 0.0 && self.chance(params.reorder) {
                at += params.latency_ns() + 1_000_000;
            }
            let packet = if copy + 1 == copies {
                std::mem::replace(
                    &mut packet,
                    InFlight {
                        id: 0,
                        from: 0,
                        to: 0,
                        src_ip: Ipv4Addr::UNSPECIFIED,
                        dst_ip: Ipv4Addr::UNSPECIFIED,
                        bytes: None,
                        segment: Segment::default(),
                        retransmission: false,
                        injected: false,
                    },
                )
            } else {
                packet.clone()
            };
            let item = Item::Arrival(self.park_packet(packet));
            self.schedule(at, item);
        }
        id
    }

    /// Keeps a packet on its way in a free slot of [`World::in_flight`].
    fn park_packet(&mut self, packet: InFlight) -> u32 {
        match self.free_slots.pop() {
            Some(slot) => {
                self.in_flight[slot as usize] = Some(packet);
                slot
            }
            None => {
                self.in_flight.push(Some(packet));
                (self.in_flight.len() - 1) as u32
            }
        }
    }

    /// Takes the packet out of its slot (each slot is scheduled exactly once).
    fn unpark_packet(&mut self, slot: u32) -> Option<InFlight> {
        let packet = self.in_flight.get_mut(slot as usize)?.take()?;
        self.free_slots.push(slot);
        Some(packet)
    }

    fn chance(&mut self, p: f64) -> bool {
        // 53 random bits, as a float in [0, 1).
        ((self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn flip_bit(&mut self, bytes: &Bytes) -> Bytes {
        let mut v = bytes.to_vec();
        if !v.is_empty() {
            let bit = self.rng.next_u64() % (v.len() as u64 * 8);
            v[(bit / 8) as usize] ^= 1 << (bit % 8);
        }
        Bytes::from(v)
    }

    /// A segment reaches its destination host.
    fn arrive(&mut self, mut packet: InFlight) {
        let decoded = match &packet.bytes {
            None => None, // untouched since it was encoded: `packet.segment` is what arrives
            Some(bytes) => Some(Segment::decode(bytes, packet.src_ip, packet.dst_ip)),
        };
        let decoded = match decoded {
            None => None,
            Some(Ok(segment)) => Some(segment),
            Some(Err(error)) => {
                let reason = match error {
                    DecodeError::BadChecksum { .. } => DropReason::BadChecksum,
                    _ => DropReason::Malformed,
                };
                let wire = self.wire(&packet);
                self.push_event(EventKind::SegmentDropped { reason, fault: None, segment: wire });
                return;
            }
        };
        let host = packet.to;
        if let HostStack::Tcp(stack) = &self.hosts[host as usize].stack {
            let segment = decoded.as_ref().unwrap_or(&packet.segment);
            if segment.flags.contains(Flags::SYN)
                && !segment.flags.contains(Flags::ACK)
                && stack.goes_to_listener(packet.src_ip, segment)
                && self.full_listener(host, segment.dst_port).is_some()
            {
                let wire = self.wire_owned(packet);
                self.push_event(EventKind::SegmentDropped { reason: DropReason::Backlog, fault: None, segment: wire });
                return;
            }
        }
        let now = self.now;
        let mut out = std::mem::take(&mut self.scratch);
        let World { hosts, rng, .. } = self;
        let delivery = match &mut hosts[host as usize].stack {
            HostStack::Raw(inbox) => {
                let bytes = packet.bytes().clone();
                inbox.push(RawPacket { t_ns: now, src_ip: packet.src_ip, bytes });
                None
            }
            HostStack::Tcp(stack) => {
                let segment = decoded.as_ref().unwrap_or(&packet.segment);
                Some(stack.process(now, packet.src_ip, segment, rng, &mut out))
            }
        };
        let connection = match delivery {
            Some(Delivery::Socket(socket)) => match &self.hosts[host as usize].stack {
                HostStack::Tcp(stack) => stack.user_data(socket).ok().and_then(untag).map(|(c, _)| c),
                HostStack::Raw(_) => None,
            },
            _ => None,
        };
        let wire = self.wire_owned(packet);
        if delivery == Some(Delivery::NoConnection) {
            self.push_event(EventKind::SegmentDropped { reason: DropReason::NoListener, fault: None, segment: wire });
        } else {
            self.push_event(EventKind::SegmentDelivered { connection, segment: wire });
        }
        self.scratch = out;
        self.settle(host);
    }

    /// After anything touched a host's stack: turn its outputs into events and
    /// packets, let applications read, dispatch, release CLOSED endpoints and
    /// re-arm the host's timer.
    fn settle(&mut self, host: HostId) {
        let mut closed = Vec::new();
        for round in 0..2 {
            let mut out = std::mem::take(&mut self.scratch);
            if round == 1 {
                let now = self.now;
                if let HostStack::Tcp(stack) = &mut self.hosts[host as usize].stack {
                    stack.dispatch(now, &mut out);
                }
            }
            let mut readable = std::mem::take(&mut self.scratch_readable);
            for output in out.drain(..) {
                self.apply_output(host, output, &mut readable, &mut closed);
            }
            self.scratch = out;
            for &socket in &readable {
                self.read_if_auto(host, socket);
            }
            readable.clear();
            self.scratch_readable = readable;
        }
        for socket in closed {
            self.release(host, socket);
        }
        self.rearm_host_timer(host);
    }

    fn read_if_auto(&mut self, host: HostId, socket: SocketId) {
        let HostStack::Tcp(stack) = &self.hosts[host as usize].stack else {
            return;
        };
        let auto = stack
            .user_data(socket)
            .ok()
            .and_then(untag)
            .and_then(|(c, s)| self.connections.get(&c).and_then(|c| c.end(s)))
            .is_none_or(|end| end.auto_read);
        if auto {
            self.read_into_end(host, socket, usize::MAX);
        }
    }

    fn apply_output(&mut self, host: HostId, output: Output, readable: &mut Vec<SocketId>, closed: &mut Vec<SocketId>) {
        let owner = |world: &World, socket: SocketId| -> Option<(ConnId, Side)> {
            match &world.hosts[host as usize].stack {
                HostStack::Tcp(stack) => stack.user_data(socket).ok().and_then(untag),
                HostStack::Raw(_) => None,
            }
        };
        match output {
            Output::Transmit { socket, dst_ip, segment, retransmission } => {
                let src_ip = self.hosts[host as usize].ip;
                let connection = socket.and_then(|s| owner(self, s)).map(|(c, _)| c);
                let mut segment = segment;
                if segment.encodes_exactly() {
                    // The bytes are made only if something needs them (see `InFlight::bytes`).
                    match segment.wire_checksum(src_ip, dst_ip) {
                        Ok(sum) => {
                            segment.checksum = sum;
                            self.launch(host, dst_ip, None, segment, retransmission, false, connection, 0);
                        }
                        Err(_) => debug_assert!(false, "the engine only sends encodable segments"),
                    }
                } else {
                    match segment.encode(src_ip, dst_ip) {
                        Ok(bytes) => {
                            self.launch(host, dst_ip, Some(bytes), segment, retransmission, false, connection, 0);
                        }
                        Err(_) => debug_assert!(false, "the engine only sends encodable segments"),
                    }
                }
            }
            Output::StateChanged { socket, from, to, cause, rfc } => {
                let who = owner(self, socket);
                if let Some((conn, side)) = who {
                    if let Some(end) = self.connections.get_mut(&conn).and_then(|c| c.end_mut(side)) {
                        end.state = to;
                    }
                }
                if to == State::Closed {
                    closed.push(socket);
                }
                let name = self.hosts[host as usize].name.clone();
                self.push_event(EventKind::StateChanged {
                    connection: who.map(|(c, _)| c),
                    listener: None,
                    host: name,
                    side: who.map(|(_, s)| s),
                    from,
                    to,
                    cause,
                    rfc: rfc.into(),
                });
            }
            Output::TimerFired { socket, timer } => {
                let who = owner(self, socket);
                let name = self.hosts[host as usize].name.clone();
                self.push_event(EventKind::TimerFired {
                    connection: who.map(|(c, _)| c),
                    host: name,
                    side: who.map(|(_, s)| s),
                    timer,
                });
            }
            Output::Error { socket, error } => {
                let who = owner(self, socket);
                let name = self.hosts[host as usize].name.clone();
                self.push_event(EventKind::ConnectionError {
                    connection: who.map(|(c, _)| c),
                    host: name,
                    side: who.map(|(_, s)| s),
                    error,
                });
            }
            Output::Accepted { socket, .. } => self.adopt(host, socket),
            Output::Readable { socket } => {
                if !readable.contains(&socket) {
                    readable.push(socket);
                }
            }
        }
    }

    /// A listener made an endpoint: it is the server end of the client whose
    /// SYN it answered (same four-tuple, ISN matching), or else a connection
    /// of its own (a ghost from an old or injected SYN).
    fn adopt(&mut self, host: HostId, socket: SocketId) {
        let HostStack::Tcp(stack) = &self.hosts[host as usize].stack else {
            return;
        };
        let Ok(tcb) = stack.tcb(socket) else {
            return;
        };
        let (remote_ip, remote_port) = tcb.remote();
        let local_port = tcb.local_port();
        let listener = self.listeners.iter().find(|l| l.open && l.host == host && l.port == local_port).map(|l| l.id);
        let key = (remote_ip, remote_port, self.hosts[host as usize].ip, local_port);
        let irs = tcb.irs().0;
        let end = End {
            host,
            socket: Some(socket),
            state: State::Listen,
            final_status: None,
            received: Vec::new(),
            received_total: 0,
            auto_read: true,
            iss: tcb.iss().0,
        };
        let existing = self.pending_clients.get(&key).copied().filter(|c| {
            self.connections
                .get(c)
                .is_some_and(|conn| conn.server.is_none() && conn.client.as_ref().is_some_and(|e| e.iss == irs))
        });
        let conn_id = match existing {
            Some(conn_id) => {
                self.pending_clients.remove(&key);
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
        };
        if let HostStack::Tcp(stack) = &mut self.hosts[host as usize].stack {
            let _ = stack.set_user_data(socket, tag(conn_id, Side::Server));
        }
    }

    /// A CLOSED endpoint: keep its last status, free its TCB, and forget the
    /// connection when both ends are done (unless the world keeps them).
    fn release(&mut self, host: HostId, socket: SocketId) {
        let HostStack::Tcp(stack) = &mut self.hosts[host as usize].stack else {
            return;
        };
        let Ok(status) = stack.status(socket) else {
            return;
        };
        if status.state != State::Closed {
            return;
        }
        let who = stack.user_data(socket).ok().and_then(untag);
        let _ = stack.release(socket);
        let Some((conn_id, side)) = who else {
            return;
        };
        let host_ip = self.hosts[host as usize].ip;
        let keep_closed = self.config.keep_closed;
        let Some(conn) = self.connections.get_mut(&conn_id) else {
            return;
        };
        if let Some(end) = conn.end_mut(side) {
            end.socket = None;
            end.state = State::Closed;
            end.final_status = Some(status.clone());
        }
        if side == Side::Client && conn.server.is_none() {
            self.pending_clients.remove(&(host_ip, status.local_port, status.remote_ip, status.remote_port));
        }
        let done = [&conn.client, &conn.server].into_iter().flatten().all(|e| e.socket.is_none());
        if done && !keep_closed {
            if side == Side::Client {
                self.pending_clients.remove(&(host_ip, status.local_port, status.remote_ip, status.remote_port));
            }
            self.connections.remove(&conn_id);
        }
    }

    fn rearm_host_timer(&mut self, host: HostId) {
        let h = &mut self.hosts[host as usize];
        let HostStack::Tcp(stack) = &mut h.stack else {
            return;
        };
        if let Some(deadline) = stack.poll_at() {
            if h.timer_at.is_none_or(|at| deadline < at) {
                h.timer_gen += 1;
                h.timer_at = Some(deadline);
                let generation = h.timer_gen;
                self.schedule(deadline, Item::HostTimer { host, generation });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Agenda, Item, Scheduled};

    /// Arrivals in time order, arrivals out of it and timers, mixed: the
    /// agenda pops them all exactly in key order, as one heap would.
    #[test]
    fn the_agenda_pops_in_key_order_whatever_queue_an_item_went_to() {
        let mut agenda = Agenda::default();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut now = 0u64;
        let mut keys = Vec::new();
        for order in 0..5_000u64 {
            let r = next();
            // Mostly arrivals a fixed latency ahead (in order), some jittered
            // (out of order), some timers far ahead; the clock moves on.
            now += r % 3;
            let (at, item) = match r % 10 {
                0 => (now + 1_000 + next() % 500, Item::HostTimer { host: 0, generation: order }),
                1 => (now + next() % 20, Item::Arrival(order as u32)),
                _ => (now + 10, Item::Arrival(order as u32)),
            };
            let key = u128::from(at) << 64 | u128::from(order);
            keys.push(key);
            agenda.push(Scheduled { key, item });
            if r % 4 == 0 {
                // Pops interleave with pushes, as in a running world.
                keys.sort_unstable();
                let popped = agenda.pop().map(|s| s.key);
                assert_eq!(popped, Some(keys.remove(0)));
            }
        }
        assert!(!agenda.in_order.is_empty() && !agenda.others.is_empty(), "both queues were used");
        keys.sort_unstable();
        for key in keys {
            assert_eq!(agenda.peek().map(|s| s.key), Some(key));
            assert_eq!(agenda.pop().map(|s| s.key), Some(key));
        }
        assert!(agenda.pop().is_none());
    }
}
