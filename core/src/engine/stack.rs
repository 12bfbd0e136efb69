//! One host's TCP: its endpoints, its listening ports, the demultiplexing of
//! arriving segments (RFC 9293 section 3.10.7's "if the state is CLOSED" and
//! "LISTEN" cases), and the timers of all its endpoints.
//!
//! Cost does not grow with the number of endpoints: a segment finds its TCB by
//! a hash of its four-tuple, timers sit in a heap, and only endpoints touched
//! since the last [`Stack::dispatch`] are visited by it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use rand_chacha::rand_core::RngCore;
use rustc_hash::FxHashMap;

use super::output::{ListenerId, Output, SocketId};
use super::profile::{Handshake, Isn, Profile};
use super::segment::{Flags, Segment};
use super::seq::SeqNumber;
use super::state::State;
use super::tcb::{Tcb, TcbStatus, UserError};
use crate::time::Instant;

/// Why a stack-level call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    /// No endpoint with that id (never existed, or released).
    #[error("no such socket")]
    UnknownSocket,
    /// No listener with that id.
    #[error("no such listener")]
    UnknownListener,
    /// The port (or four-tuple) is taken.
    #[error("address in use")]
    AddressInUse,
    /// No ephemeral port is free for that destination.
    #[error("no ephemeral port left")]
    NoFreePort,
    /// The endpoint refused the user call.
    #[error(transparent)]
    User(#[from] UserError),
}

/// Where an arriving segment went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// To an existing endpoint.
    Socket(SocketId),
    /// To a listening port (which may have created an endpoint: see [`Output::Accepted`]).
    Listener(ListenerId),
    /// Nobody: the stack answered as CLOSED does (a RST, unless the segment was one).
    NoConnection,
}

/// A port in LISTEN (a passive OPEN).
#[derive(Debug, Clone)]
pub struct Listener {
    /// The port.
    pub port: u16,
    /// The profile its connections run with.
    pub profile: Arc<Profile>,
    /// Its connections start with Nagle's algorithm off (TCP_NODELAY set on
    /// the listening socket, which BSD's syncache_socket() copies).
    pub nodelay: bool,
    /// Its connections start with this keepalive (SO_KEEPALIVE on the
    /// listening socket, which accepted sockets inherit).
    pub keepalive: Option<super::tcb::Keepalive>,
    /// The ISN of the connections it accepts (overrides the profile).
    pub isn: Option<u32>,
    /// Owner's tag.
    pub user_data: u64,
}

#[derive(Debug)]
struct Slot {
    tcb: Tcb,
    /// Owner's tag (the world stores its connection id and side here).
    user_data: u64,
    /// Generation of the valid heap entry; older entries are stale.
    timer_gen: u32,
    /// Deadline of the valid heap entry ([`NO_TIMER`] when there is none).
    timer_at: u64,
    /// Listed in `dirty` already.
    dirty: bool,
    /// Present in `by_tuple`.
    in_table: bool,
}

/// Local port, remote address, remote port (the local address is the stack's).
type Tuple = (u16, Ipv4Addr, u16);

/// A host's TCP.
#[derive(Debug)]
pub struct Stack {
    ip: Ipv4Addr,
    profile: Arc<Profile>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_tuple: FxHashMap<Tuple, SocketId>,
    listeners: Vec<Option<Listener>>,
    listener_by_port: FxHashMap<u16, ListenerId>,
    timers: BinaryHeap<Reverse<(u64, u32, u32)>>,
    dirty: Vec<SocketId>,
    next_ephemeral: u16,
}

const EPHEMERAL_FIRST: u16 = 49_152;

/// `Slot::timer_at` when the endpoint has no entry in the heap.
const NO_TIMER: u64 = u64::MAX;

impl Stack {
    /// A stack for a host with address `ip`; `profile` answers segments for no connection.
    pub fn new(ip: Ipv4Addr, profile: Arc<Profile>) -> Stack {
        Stack {
            ip,
            profile,
            slots: Vec::new(),
            free: Vec::new(),
            by_tuple: FxHashMap::default(),
            listeners: Vec::new(),
            listener_by_port: FxHashMap::default(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            next_ephemeral: EPHEMERAL_FIRST,
        }
    }

    /// The host's address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Endpoints currently held (any state, until released).
    pub fn socket_count(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether any endpoint is held or any port listens.
    pub fn has_endpoints(&self) -> bool {
        self.socket_count() > 0 || self.listeners.iter().any(Option::is_some)
    }

    /// Every profile the stack holds: its own, its listeners', its endpoints'
    /// (one per distinct profile, however many share it).
    pub fn profiles(&self) -> Vec<Arc<Profile>> {
        let mut seen: Vec<Arc<Profile>> = vec![self.profile.clone()];
        let held = self.listeners.iter().flatten().map(|l| &l.profile);
        for p in held.chain(self.slots.iter().flatten().map(|s| s.tcb.profile())) {
            if !seen.iter().any(|q| Arc::ptr_eq(p, q)) {
                seen.push(p.clone());
            }
        }
        seen
    }

    /// Replaces each profile the stack holds by its counterpart in
    /// `replace` (pairs of old and new, compared by identity), so that a
    /// change of settings reaches every listener and endpoint at once.
    pub fn replace_profiles(&mut self, replace: &[(Arc<Profile>, Arc<Profile>)]) {
        let find = |p: &Arc<Profile>| replace.iter().find(|(old, _)| Arc::ptr_eq(old, p)).map(|(_, new)| new.clone());
        if let Some(new) = find(&self.profile) {
            self.profile = new;
        }
        for listener in self.listeners.iter_mut().flatten() {
            if let Some(new) = find(&listener.profile) {
                listener.profile = new;
            }
        }
        for slot in self.slots.iter_mut().flatten() {
            if let Some(new) = find(slot.tcb.profile()) {
                slot.tcb.set_profile(new);
            }
        }
    }

    /// Passive OPEN on `port`.
    ///
    /// # Errors
    /// [`StackError::AddressInUse`] when the port already listens.
    pub fn listen(
        &mut self,
        port: u16,
        profile: Arc<Profile>,
        isn: Option<u32>,
        user_data: u64,
    ) -> Result<ListenerId, StackError> {
        if self.listener_by_port.contains_key(&port) {
            return Err(StackError::AddressInUse);
        }
        let id = ListenerId(self.listeners.len() as u32);
        self.listeners.push(Some(Listener { port, profile, isn, user_data, nodelay: false, keepalive: None }));
        self.listener_by_port.insert(port, id);
        Ok(id)
    }

    /// Stops listening; endpoints it created live on.
    ///
    /// # Errors
    /// [`StackError::UnknownListener`].
    pub fn unlisten(&mut self, id: ListenerId) -> Result<Listener, StackError> {
        let listener =
            self.listeners.get_mut(id.0 as usize).and_then(Option::take).ok_or(StackError::UnknownListener)?;
        self.listener_by_port.remove(&listener.port);
        Ok(listener)
    }

    /// A listener by id.
    pub fn listener(&self, id: ListenerId) -> Option<&Listener> {
        self.listeners.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// TCP_NODELAY on a listening socket: the connections it makes from now
    /// on start with Nagle's algorithm off.
    ///
    /// # Errors
    /// [`StackError::UnknownListener`].
    pub fn set_listener_nodelay(&mut self, id: ListenerId, on: bool) -> Result<(), StackError> {
        let listener =
            self.listeners.get_mut(id.0 as usize).and_then(Option::as_mut).ok_or(StackError::UnknownListener)?;
        listener.nodelay = on;
        Ok(())
    }

    /// Active OPEN from `local_port` (an ephemeral port when `None`) to the remote address.
    ///
    /// # Errors
    /// [`StackError::AddressInUse`] when the four-tuple is taken (e.g. in TIME_WAIT).
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        &mut self,
        local_port: Option<u16>,
        remote_ip: Ipv4Addr,
        remote_port: u16,
        profile: Arc<Profile>,
        isn: Option<u32>,
        rng: &mut dyn RngCore,
        user_data: u64,
        out: &mut Vec<Output>,
    ) -> Result<SocketId, StackError> {
        let local_port = match local_port {
            Some(port) => port,
            None => self.ephemeral_port(remote_ip, remote_port)?,
        };
        let tuple = (local_port, remote_ip, remote_port);
        if self.by_tuple.contains_key(&tuple) {
            return Err(StackError::AddressInUse);
        }
        let iss = choose_isn(isn, &profile, rng);
        let id = self.allocate();
        let tcb = Tcb::open_active(id, local_port, remote_ip, remote_port, profile, iss, out);
        self.install(id, tcb, user_data, tuple);
        Ok(id)
    }

    fn ephemeral_port(&mut self, remote_ip: Ipv4Addr, remote_port: u16) -> Result<u16, StackError> {
        for _ in 0..=(u16::MAX - EPHEMERAL_FIRST) {
            let port = self.next_ephemeral;
            self.next_ephemeral = if port == u16::MAX { EPHEMERAL_FIRST } else { port + 1 };
            if !self.by_tuple.contains_key(&(port, remote_ip, remote_port))
                && !self.listener_by_port.contains_key(&port)
            {
                return Ok(port);
            }
        }
        Err(StackError::NoFreePort)
    }

    fn allocate(&mut self) -> SocketId {
        match self.free.pop() {
            Some(index) => SocketId(index),
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // Grow by a quarter rather than double: still amortised
                    // O(1), but at most a quarter of the table lies unused.
                    self.slots.reserve_exact((self.slots.len() / 4).max(16));
                }
                self.slots.push(None);
                SocketId((self.slots.len() - 1) as u32)
            }
        }
    }

    fn install(&mut self, id: SocketId, tcb: Tcb, user_data: u64, tuple: Tuple) {
        self.by_tuple.insert(tuple, id);
        self.slots[id.0 as usize] =
            Some(Slot { tcb, user_data, timer_gen: 0, timer_at: NO_TIMER, dirty: false, in_table: true });
        self.mark_dirty(id);
    }

    fn slot(&self, id: SocketId) -> Result<&Slot, StackError> {
        self.slots.get(id.0 as usize).and_then(Option::as_ref).ok_or(StackError::UnknownSocket)
    }

    fn slot_mut(&mut self, id: SocketId) -> Result<&mut Slot, StackError> {
        self.slots.get_mut(id.0 as usize).and_then(Option::as_mut).ok_or(StackError::UnknownSocket)
    }

    fn mark_dirty(&mut self, id: SocketId) {
        if let Some(Some(slot)) = self.slots.get_mut(id.0 as usize) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// An endpoint's TCB, for inspection.
    ///
    /// # Errors
    /// [`StackError::UnknownSocket`].
    pub fn tcb(&self, id: SocketId) -> Result<&Tcb, StackError> {
        Ok(&self.slot(id)?.tcb)
    }

    /// STATUS of an endpoint.
    ///
    /// # Errors
    /// [`StackError::UnknownSocket`].
    pub fn status(&self, id: SocketId) -> Result<TcbStatus, StackError> {
        Ok(self.slot(id)?.tcb.status())
    }

    /// The owner's tag of an endpoint.
    ///
    /// # Errors
    /// [`StackError::UnknownSocket`].
    pub fn user_data(&self, id: SocketId) -> Result<u64, StackError> {
        Ok(self.slot(id)?.user_data)
    }

    /// Sets the owner's tag of an endpoint.
    ///
    /// # Errors
    /// [`StackError::UnknownSocket`].
    pub fn set_user_data(&mut self, id: SocketId, user_data: u64) -> Result<(), StackError> {
        self.slot_mut(id)?.user_data = user_data;
        Ok(())
    }

    /// Keepalive on a listening socket: the connections it makes from now on start with it.
    ///
    /// # Errors
    /// [`StackError::UnknownListener`].
    pub fn set_listener_keepalive(
        &mut self,
        id: ListenerId,
        keepalive: Option<super::tcb::Keepalive>,
    ) -> Result<(), StackError> {
        let listener =
            self.listeners.get_mut(id.0 as usize).and_then(Option::as_mut).ok_or(StackError::UnknownListener)?;
        listener.keepalive = keepalive;
        Ok(())
    }

    /// Keepalive on an endpoint (see [`Tcb::set_keepalive`]), its idle time counted from `now`.
    ///
    /// # Errors
    /// [`StackError::UnknownSocket`].
    pub fn set_keepalive(
        &mut self,
        id: SocketId,
        keepalive: Option<super::tcb::Keepalive>,
        now: Instant,
    ) -> Result<(), StackError> {
        self.slot_mut(id)?.tcb.set_keepalive(keepalive, now.as_nanos());
        self.mark_dirty(id);
        Ok(())
    }

    /// TCP_NODELAY on an endpoint (see [`Tcb::set_nodelay`]); what waited
    /// for Nagle's algorithm leaves at the next dispatch.
    ///
    /// # Errors
    /// [`StackError::UnknownSocket`].
    pub fn set_nodelay(&mut self, id: SocketId, on: bool) -> Result<(), StackError> {
        self.slot_mut(id)?.tcb.set_nodelay(on);
        self.mark_dirty(id);
        Ok(())
    }

    /// SEND on an endpoint: returns how many octets were queued.
    ///
    /// # Errors
    /// [`StackError`] for an unknown socket or a refused call.
    pub fn send(&mut self, id: SocketId, data: &[u8]) -> Result<usize, StackError> {
        let n = self.slot_mut(id)?.tcb.send(data)?;
        self.mark_dirty(id);
        Ok(n)
    }

    /// SEND of a buffer kept as it is (see [`Tcb::send_bytes`]).
    ///
    /// # Errors
    /// As [`Stack::send`].
    pub fn send_bytes(&mut self, id: SocketId, data: bytes::Bytes) -> Result<usize, StackError> {
        let n = self.slot_mut(id)?.tcb.send_bytes(data)?;
        self.mark_dirty(id);
        Ok(n)
    }

    /// RECEIVE on an endpoint: up to `max` octets.
    ///
    /// # Errors
    /// [`StackError::UnknownSocket`].
    pub fn recv(&mut self, id: SocketId, max: usize) -> Result<Vec<u8>, StackError> {
        let data = self.slot_mut(id)?.tcb.recv(max);
        self.mark_dirty(id); // the window may have opened
        Ok(data)
    }

    /// RECEIVE for an application that only counts: drops up to `max`
    /// octets without copying them; returns how many.
    ///
    /// # Errors
    /// [`StackError::UnknownSocket`].
    pub fn recv_discard(&mut self, id: SocketId, max: usize) -> Result<usize, StackError> {
        let n = self.slot_mut(id)?.tcb.recv_discard(max);
        self.mark_dirty(id);
        Ok(n)
    }

    /// CLOSE on an endpoint.
    ///
    /// # Errors
    /// [`StackError`] for an unknown socket or a refused call.
    pub fn close(&mut self, id: SocketId, out: &mut Vec<Output>) -> Result<(), StackError> {
        self.slot_mut(id)?.tcb.close(out)?;
        self.mark_dirty(id);
        Ok(())
    }

    /// The user's close() of an endpoint's socket (where [`Stack::close`] is
    /// shutdown(SHUT_WR)): see [`Tcb::close_socket`].
    ///
    /// # Errors
    /// [`StackError`] for an unknown socket or a closed endpoint.
    pub fn close_socket(&mut self, id: SocketId, out: &mut Vec<Output>) -> Result<(), StackError> {
        self.slot_mut(id)?.tcb.close_socket(out)?;
        self.mark_dirty(id);
        Ok(())
    }

    /// ABORT on an endpoint.
    ///
    /// # Errors
    /// [`StackError::UnknownSocket`].
    pub fn abort(&mut self, now: Instant, id: SocketId, out: &mut Vec<Output>) -> Result<(), StackError> {
        self.slot_mut(id)?.tcb.abort(now.as_nanos(), out);
        self.mark_dirty(id);
        Ok(())
    }

    /// Frees a CLOSED endpoint's slot; its id may be reused afterwards.
    ///
    /// # Errors
    /// [`StackError::UnknownSocket`], or [`StackError::User`] when it is not CLOSED.
    pub fn release(&mut self, id: SocketId) -> Result<(), StackError> {
        let slot = self.slot(id)?;
        if slot.tcb.state() != State::Closed {
            return Err(StackError::User(UserError::Closing));
        }
        self.untable(id);
        self.slots[id.0 as usize] = None;
        self.free.push(id.0);
        Ok(())
    }

    fn untable(&mut self, id: SocketId) {
        if let Some(Some(slot)) = self.slots.get_mut(id.0 as usize) {
            if slot.in_table {
                slot.in_table = false;
                let (remote_ip, remote_port) = slot.tcb.remote();
                let tuple = (slot.tcb.local_port(), remote_ip, remote_port);
                if self.by_tuple.get(&tuple) == Some(&id) {
                    self.by_tuple.remove(&tuple);
                }
            }
        }
    }

    /// Whether a segment from `src_ip` would go to a listener (no TCB has its
    /// four-tuple and a listener has its port): the world asks before a SYN
    /// arrives, to drop it when that listener's backlog is full.
    pub fn goes_to_listener(&self, src_ip: Ipv4Addr, seg: &Segment) -> bool {
        !self.by_tuple.contains_key(&(seg.dst_port, src_ip, seg.src_port))
            && self.listener_by_port.contains_key(&seg.dst_port)
    }

    /// A segment from `src_ip` arrives (RFC 9293 section 3.10.7).
    pub fn process(
        &mut self,
        now: Instant,
        src_ip: Ipv4Addr,
        seg: &Segment,
        rng: &mut dyn RngCore,
        out: &mut Vec<Output>,
    ) -> Delivery {
        let now = now.as_nanos();
        let tuple = (seg.dst_port, src_ip, seg.src_port);
        if let Some(&id) = self.by_tuple.get(&tuple) {
            if let Some(Some(slot)) = self.slots.get_mut(id.0 as usize) {
                slot.tcb.process(now, seg, out);
                self.mark_dirty(id);
                return Delivery::Socket(id);
            }
        }
        if let Some(&lid) = self.listener_by_port.get(&seg.dst_port) {
            self.process_listen(now, lid, src_ip, seg, rng, out);
            return Delivery::Listener(lid);
        }
        self.reply_closed(src_ip, seg, &self.profile.clone(), out);
        Delivery::NoConnection
    }

    /// 3.10.7.2: a segment for a listening port.
    fn process_listen(
        &mut self,
        now: u64,
        lid: ListenerId,
        src_ip: Ipv4Addr,
        seg: &Segment,
        rng: &mut dyn RngCore,
        out: &mut Vec<Output>,
    ) {
        let Some(listener) = self.listeners.get(lid.0 as usize).and_then(Option::as_ref) else {
            return;
        };
        let flags = seg.flags;
        if flags.contains(Flags::RST) {
            return;
        }
        if flags.contains(Flags::ACK) {
            if flags.contains(Flags::SYN) && listener.profile.listen_drops_syn_ack.is_on() {
                return;
            }
            let rst = rst_for(seg, SeqNumber(seg.ack.0), None);
            out.push(Output::Transmit { socket: None, dst_ip: src_ip, segment: rst, retransmission: false });
            return;
        }
        if !flags.contains(Flags::SYN) {
            return;
        }
        if flags.contains(Flags::FIN) && listener.profile.drop_synfin.is_on() {
            // FreeBSD's net.inet.tcp.drop_synfin: a SYN+FIN is dropped unanswered.
            return;
        }
        let profile = listener.profile.clone();
        let iss = choose_isn(listener.isn, &profile, rng);
        let (user_data, nodelay, keepalive) = (listener.user_data, listener.nodelay, listener.keepalive);
        let id = self.allocate();
        out.push(Output::Accepted { listener: lid, socket: id });
        let mut tcb = Tcb::open_passive(id, seg.dst_port, src_ip, seg, profile, iss, now, out);
        tcb.set_nodelay(nodelay);
        tcb.set_keepalive(keepalive, now);
        self.install(id, tcb, user_data, (seg.dst_port, src_ip, seg.src_port));
    }

    /// 3.10.7.1: CLOSED answers everything but a RST with a RST.
    fn reply_closed(&self, src_ip: Ipv4Addr, seg: &Segment, profile: &Profile, out: &mut Vec<Output>) {
        if seg.flags.contains(Flags::RST) {
            return;
        }
        if profile.handshake == Handshake::TwoWay && seg.flags.contains(Flags::SYN) && seg.flags.contains(Flags::ACK) {
            // Two-way variant: the SYN+ACK is the handshake's last message, so
            // an initiator has no step at which to refuse one it never asked for.
            return;
        }
        let rst = if seg.flags.contains(Flags::ACK) {
            rst_for(seg, seg.ack, None)
        } else {
            rst_for(seg, SeqNumber(0), Some(seg.seq + seg.seg_len()))
        };
        out.push(Output::Transmit { socket: None, dst_ip: src_ip, segment: rst, retransmission: false });
    }

    /// Lets every endpoint touched since the last call send what is due, and
    /// re-arms their timers. Call after each batch of inputs.
    pub fn dispatch(&mut self, now: Instant, out: &mut Vec<Output>) {
        let now = now.as_nanos();
        let mut dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            let Some(Some(slot)) = self.slots.get_mut(id.0 as usize) else {
                continue;
            };
            slot.dirty = false;
            slot.tcb.dispatch(now, out);
            self.after_change(id);
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty; // keep the allocation
        }
    }

    fn after_change(&mut self, id: SocketId) {
        let Some(Some(slot)) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        if slot.tcb.state() == State::Closed {
            slot.timer_at = NO_TIMER;
            self.untable(id);
            return;
        }
        if let Some(deadline) = slot.tcb.poll_at() {
            if deadline < slot.timer_at {
                slot.timer_gen = slot.timer_gen.wrapping_add(1);
                slot.timer_at = deadline;
                self.timers.push(Reverse((deadline, id.0, slot.timer_gen)));
            }
        }
    }

    fn entry_is_live(&self, index: u32, generation: u32) -> bool {
        matches!(self.slots.get(index as usize), Some(Some(slot)) if slot.timer_gen == generation && slot.timer_at != NO_TIMER)
    }

    /// The earliest timer deadline of any endpoint. Entries whose endpoint
    /// has since moved its deadline (an ACK stopped the retransmission timer,
    /// say) are dropped or moved here, so the answer is exact.
    pub fn poll_at(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, index, generation))) = self.timers.peek() {
            if !self.entry_is_live(index, generation) {
                self.timers.pop();
                continue;
            }
            let Some(Some(slot)) = self.slots.get_mut(index as usize) else {
                self.timers.pop();
                continue;
            };
            let deadline = slot.tcb.poll_at();
            if deadline == Some(at) {
                return Some(Instant::from_nanos(at));
            }
            self.timers.pop();
            slot.timer_at = NO_TIMER;
            if let Some(deadline) = deadline {
                slot.timer_gen = slot.timer_gen.wrapping_add(1);
                slot.timer_at = deadline;
                self.timers.push(Reverse((deadline, index, slot.timer_gen)));
            }
        }
        None
    }

    /// Fires the timers due at `now` and dispatches the endpoints concerned.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Output>) {
        while let Some(&Reverse((at, index, generation))) = self.timers.peek() {
            if at > now.as_nanos() {
                break;
            }
            self.timers.pop();
            if !self.entry_is_live(index, generation) {
                continue;
            }
            let id = SocketId(index);
            if let Some(Some(slot)) = self.slots.get_mut(index as usize) {
                slot.timer_at = NO_TIMER;
                slot.tcb.on_timer(now.as_nanos(), out);
            }
            self.mark_dirty(id);
        }
        self.dispatch(now, out);
    }
}

/// The ISN for a new endpoint: an explicit one, the profile's fixed one, or a draw from the RNG.
fn choose_isn(explicit: Option<u32>, profile: &Profile, rng: &mut dyn RngCore) -> u32 {
    match (explicit, profile.isn) {
        (Some(isn), _) => isn,
        (None, Isn::Fixed(isn)) => isn,
        (None, Isn::Random) => rng.next_u32(),
    }
}

/// A reset answering `seg`: `<SEQ=seq><CTL=RST>`, or with `ack` `<SEQ=seq><ACK=ack><CTL=RST,ACK>`.
fn rst_for(seg: &Segment, seq: SeqNumber, ack: Option<SeqNumber>) -> Segment {
    Segment {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        seq,
        ack: ack.unwrap_or_default(),
        flags: if ack.is_some() { Flags::RST | Flags::ACK } else { Flags::RST },
        payload: Bytes::new(),
        ..Segment::default()
    }
}

#[cfg(test)]
mod tests {
    //! Transition tests at the engine's own depth: one stack, segments fed in
    //! by hand at given instants, outputs checked exactly (like packetdrill).
    use super::*;
    use crate::engine::output::Cause;
    use crate::engine::profile::Switch;
    use crate::engine::{CcAlgorithm, CcPhase, ConnError, InitialWindow, TcpOption, TimerKind};
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng;

    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const MS: u64 = 1_000_000;

    /// The instant `ns` nanoseconds after the start.
    fn at(ns: u64) -> Instant {
        Instant::from_nanos(ns)
    }

    struct Fixture {
        stack: Stack,
        rng: ChaCha8Rng,
        out: Vec<Output>,
    }

    fn profile() -> Profile {
        Profile { isn: Isn::Fixed(500), ..Profile::default() }
    }

    impl Fixture {
        fn listening(profile: Profile) -> Fixture {
            let profile = Arc::new(profile);
            let mut stack = Stack::new(Ipv4Addr::new(10, 0, 0, 2), profile.clone());
            stack.listen(80, profile, None, 0).unwrap();
            Fixture { stack, rng: ChaCha8Rng::seed_from_u64(0), out: Vec::new() }
        }

        /// Feeds a segment from the peer at `now` and returns what the stack sent.
        fn recv(&mut self, now: u64, flags: Flags, seq: u32, ack: u32, payload: &[u8]) -> Vec<Segment> {
            let seg = Segment {
                src_port: 40000,
                dst_port: 80,
                seq: SeqNumber(seq),
                ack: SeqNumber(ack),
                flags,
                window: 65535,
                payload: Bytes::copy_from_slice(payload),
                ..Segment::default()
            };
            self.stack.process(at(now), PEER, &seg, &mut self.rng, &mut self.out);
            self.stack.dispatch(at(now), &mut self.out);
            self.sent()
        }

        fn tick(&mut self, now: u64) -> Vec<Segment> {
            self.stack.on_timer(at(now), &mut self.out);
            self.sent()
        }

        fn sent(&mut self) -> Vec<Segment> {
            let mut segs = Vec::new();
            for o in std::mem::take(&mut self.out) {
                if let Output::Transmit { segment, .. } = o {
                    segs.push(segment);
                }
            }
            segs
        }

        fn state(&self) -> State {
            self.stack.status(SocketId(0)).unwrap().state
        }

        /// A listener's endpoint in ESTABLISHED: peer ISN 100, ours 500.
        fn established(profile: Profile) -> Fixture {
            let mut f = Fixture::listening(profile);
            f.recv(0, Flags::SYN, 100, 0, b"");
            f.recv(MS, Flags::ACK, 101, 501, b"");
            assert_eq!(f.state(), State::Established);
            f
        }
    }

    fn summary(segs: &[Segment]) -> Vec<(String, u32, u32, usize)> {
        segs.iter().map(|s| (s.flags.to_string(), s.seq.0, s.ack.0, s.payload.len())).collect()
    }

    fn s(flags: &str, seq: u32, ack: u32, len: usize) -> (String, u32, u32, usize) {
        (flags.to_string(), seq, ack, len)
    }

    #[test]
    fn listen_answers_syn_with_syn_ack_and_ack_with_rst() {
        let mut f = Fixture::listening(profile());
        assert_eq!(summary(&f.recv(0, Flags::ACK, 7, 999, b"")), [s("RST", 999, 0, 0)]);
        assert_eq!(summary(&f.recv(0, Flags::RST, 7, 0, b"")), []);
        assert_eq!(summary(&f.recv(0, Flags::SYN, 100, 0, b"")), [s("SYN+ACK", 500, 101, 0)]);
        assert_eq!(f.state(), State::SynReceived);
    }

    #[test]
    fn syn_received_rejects_a_bad_ack_with_rst_and_returns_to_listen_on_rst() {
        let mut f = Fixture::listening(profile());
        f.recv(0, Flags::SYN, 100, 0, b"");
        assert_eq!(summary(&f.recv(MS, Flags::ACK, 101, 777, b"")), [s("RST", 777, 0, 0)]);
        assert_eq!(f.state(), State::SynReceived);
        f.recv(MS, Flags::RST, 101, 0, b"");
        assert_eq!(f.state(), State::Closed);
        // The listener still answers a new SYN on the same four-tuple.
        f.stack.release(SocketId(0)).unwrap();
        assert_eq!(summary(&f.recv(2 * MS, Flags::SYN, 300, 0, b"")), [s("SYN+ACK", 500, 301, 0)]);
    }

    #[test]
    fn syn_ack_is_retransmitted_with_backoff_then_the_endpoint_times_out() {
        let mut f = Fixture::listening(Profile { max_retries: 2, ..profile() });
        f.recv(0, Flags::SYN, 100, 0, b"");
        assert_eq!(f.stack.poll_at(), Some(at(1000 * MS)));
        assert_eq!(summary(&f.tick(1000 * MS)), [s("SYN+ACK", 500, 101, 0)]);
        assert_eq!(f.stack.poll_at(), Some(at(3000 * MS)));
        assert_eq!(summary(&f.tick(3000 * MS)), [s("SYN+ACK", 500, 101, 0)]);
        assert_eq!(summary(&f.tick(7000 * MS)), []);
        assert_eq!(f.state(), State::Closed);
        assert_eq!(f.stack.status(SocketId(0)).unwrap().error, Some(ConnError::TimedOut));
        assert_eq!(f.stack.poll_at(), None);
    }

    #[test]
    fn out_of_window_segments_are_acknowledged_and_dropped() {
        let mut f = Fixture::established(profile());
        assert_eq!(summary(&f.recv(2 * MS, Flags::ACK, 90_000, 501, b"x")), [s("ACK", 501, 101, 0)]);
        assert_eq!(summary(&f.recv(2 * MS, Flags::ACK, 50, 501, b"old")), [s("ACK", 501, 101, 0)]);
        // An out-of-window RST is dropped silently.
        assert_eq!(summary(&f.recv(2 * MS, Flags::RST, 90_000, 0, b"")), []);
        assert_eq!(f.state(), State::Established);
    }

    #[test]
    fn an_ack_for_data_never_sent_gets_an_ack_and_is_dropped() {
        let mut f = Fixture::established(profile());
        assert_eq!(summary(&f.recv(2 * MS, Flags::ACK, 101, 9000, b"")), [s("ACK", 501, 101, 0)]);
    }

    #[test]
    fn overlapping_retransmissions_deliver_each_octet_once() {
        let mut f = Fixture::established(profile());
        f.recv(2 * MS, Flags::ACK, 104, 501, b"defg"); // early
        f.recv(2 * MS, Flags::ACK, 101, 501, b"abcde"); // overlaps the held segment
        f.recv(2 * MS, Flags::ACK, 101, 501, b"abc"); // old duplicate
        let data = f.stack.recv(SocketId(0), 100).unwrap();
        assert_eq!(data, b"abcdefg");
        assert_eq!(f.stack.status(SocketId(0)).unwrap().rcv_nxt, 108);
    }

    #[test]
    fn passive_close_and_last_ack() {
        let mut f = Fixture::established(profile());
        assert_eq!(summary(&f.recv(2 * MS, Flags::FIN | Flags::ACK, 101, 501, b"")), [s("ACK", 501, 102, 0)]);
        assert_eq!(f.state(), State::CloseWait);
        f.stack.close(SocketId(0), &mut f.out).unwrap();
        f.stack.dispatch(at(3 * MS), &mut f.out);
        assert_eq!(summary(&f.sent()), [s("FIN+ACK", 501, 102, 0)]);
        assert_eq!(f.state(), State::LastAck);
        f.recv(4 * MS, Flags::ACK, 102, 502, b"");
        assert_eq!(f.state(), State::Closed);
        assert_eq!(f.stack.status(SocketId(0)).unwrap().error, None);
    }

    #[test]
    fn time_wait_restarts_on_a_retransmitted_fin_and_expires() {
        let mut f = Fixture::established(Profile { msl_ms: 1000, ..profile() });
        f.stack.close(SocketId(0), &mut f.out).unwrap();
        f.stack.dispatch(at(2 * MS), &mut f.out);
        f.sent();
        f.recv(3 * MS, Flags::ACK, 101, 502, b"");
        assert_eq!(f.state(), State::FinWait2);
        f.recv(4 * MS, Flags::FIN | Flags::ACK, 101, 502, b"");
        assert_eq!(f.state(), State::TimeWait);
        assert_eq!(f.stack.poll_at(), Some(at(4 * MS + 2000 * MS)));
        // The peer did not get our ACK and sends its FIN again.
        assert_eq!(summary(&f.recv(500 * MS, Flags::FIN | Flags::ACK, 101, 502, b"")), [s("ACK", 502, 102, 0)]);
        assert_eq!(f.stack.poll_at(), Some(at(500 * MS + 2000 * MS)));
        f.tick(2499 * MS);
        assert_eq!(f.state(), State::TimeWait);
        f.tick(2500 * MS);
        assert_eq!(f.state(), State::Closed);
    }

    #[test]
    fn time_wait_acks_all_answers_like_bsd_tcp_twcheck() {
        for bsd in [Switch::Off, Switch::On] {
            let mut f = Fixture::established(Profile { time_wait_acks_all: bsd, ..profile() });
            f.stack.close(SocketId(0), &mut f.out).unwrap();
            f.stack.dispatch(at(2 * MS), &mut f.out);
            f.sent();
            f.recv(3 * MS, Flags::FIN | Flags::ACK, 101, 502, b"");
            assert_eq!(f.state(), State::TimeWait);
            // An exact duplicate ACK: nothing either way.
            assert_eq!(summary(&f.recv(4 * MS, Flags::ACK, 102, 502, b"")), []);
            // An acceptable ACK beyond RCV.NXT: RFC 9293 has nothing to send, BSD acknowledges.
            let expected: &[_] = if bsd.is_on() { &[s("ACK", 502, 102, 0)] } else { &[] };
            assert_eq!(summary(&f.recv(5 * MS, Flags::ACK, 103, 502, b"")), expected);
            // A FIN without ACK below RCV.NXT: RFC 9293 answers the unacceptable
            // segment with an ACK, BSD drops it before looking at its number.
            let expected: &[_] = if bsd.is_on() { &[] } else { &[s("ACK", 502, 102, 0)] };
            assert_eq!(summary(&f.recv(6 * MS, Flags::FIN, 100, 0, b"")), expected);
            assert_eq!(f.state(), State::TimeWait);
        }
    }

    #[test]
    fn rst_exactly_at_rcv_nxt_resets_in_either_mode() {
        for rfc5961 in [Switch::On, Switch::Off] {
            let mut f = Fixture::established(Profile { rfc5961, ..profile() });
            f.recv(2 * MS, Flags::RST, 101, 0, b"");
            let status = f.stack.status(SocketId(0)).unwrap();
            assert_eq!((status.state, status.error), (State::Closed, Some(ConnError::Reset)));
        }
    }

    #[test]
    fn abort_sends_rst_from_snd_nxt() {
        let mut f = Fixture::established(profile());
        f.stack.abort(at(2 * MS), SocketId(0), &mut f.out).unwrap();
        let changes: Vec<_> = f
            .out
            .iter()
            .filter_map(|o| match o {
                Output::StateChanged { to, cause, .. } => Some((*to, cause.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(changes, [(State::Closed, Cause::User { call: crate::engine::UserCall::Abort })]);
        assert_eq!(summary(&f.sent()), [s("RST", 501, 0, 0)]);
    }

    #[test]
    fn a_pure_ack_at_the_right_edge_of_the_window_is_accepted() {
        // Regression (interop with smoltcp under loss): a peer that filled our
        // window sends its ACKs from SEG.SEQ = RCV.NXT + RCV.WND. They used to
        // fail the acceptability test, so our SND.UNA stood still (and RTT
        // samples grew) until a hole in the peer's data was filled.
        let mut f = Fixture::established(Profile { window: 1000, ..profile() });
        // 900 octets held out of order behind a hole at 101: the peer's SND.NXT is 1101, our right edge.
        assert_eq!(summary(&f.recv(2 * MS, Flags::ACK, 201, 501, &[7; 900])), [s("ACK", 501, 101, 0)]);
        f.stack.send(SocketId(0), b"0123456789").unwrap();
        f.stack.dispatch(at(3 * MS), &mut f.out);
        assert_eq!(summary(&f.sent()), [s("PSH+ACK", 501, 101, 10)]);
        assert_eq!(summary(&f.recv(4 * MS, Flags::ACK, 1101, 511, b"")), [], "accepted, nothing to answer");
        let status = f.stack.status(SocketId(0)).unwrap();
        assert_eq!(status.snd_una, 511);
        assert_eq!(status.timers.retransmit, None);
        // Text beyond the window is dropped, but its ACK still counts.
        f.stack.send(SocketId(0), b"abc").unwrap();
        f.stack.dispatch(at(5 * MS), &mut f.out);
        f.sent();
        assert_eq!(summary(&f.recv(6 * MS, Flags::ACK, 1101, 514, b"z")), [s("ACK", 514, 101, 0)]);
        assert_eq!(f.stack.status(SocketId(0)).unwrap().snd_una, 514);
    }

    #[test]
    fn a_zero_window_probe_that_acknowledges_our_fin_moves_to_fin_wait_2() {
        let mut f = Fixture::established(Profile { window: 1000, ..profile() });
        f.recv(2 * MS, Flags::ACK, 101, 501, &[1; 1000]);
        assert_eq!(f.stack.status(SocketId(0)).unwrap().rcv_wnd, 0);
        f.stack.close(SocketId(0), &mut f.out).unwrap();
        f.stack.dispatch(at(3 * MS), &mut f.out);
        assert_eq!(summary(&f.sent()), [s("FIN+ACK", 501, 1101, 0)]);
        // The peer probes our zero window; the probe's ACK covers our FIN.
        assert_eq!(summary(&f.recv(4 * MS, Flags::ACK, 1101, 502, b"p")), [s("ACK", 502, 1101, 0)]);
        assert_eq!(f.state(), State::FinWait2);
    }

    /// Established, with five segments of 536 octets (the peer announced no
    /// MSS) sent at 10 ms under an initial window of five.
    fn five_segments_in_flight() -> Fixture {
        let mut f = Fixture::established(Profile { initial_window: InitialWindow::Segments(5), ..profile() });
        f.stack.send(SocketId(0), &[9; 5 * 536]).unwrap();
        f.stack.dispatch(at(10 * MS), &mut f.out);
        let seqs: Vec<u32> = f.sent().iter().map(|s| s.seq.0).collect();
        assert_eq!(seqs, [501, 1037, 1573, 2109, 2645]);
        f
    }

    #[test]
    fn three_duplicate_acks_trigger_a_fast_retransmit_and_partial_acks_resend_the_next_hole() {
        let mut f = five_segments_in_flight();
        // Segments 501 and 1573 are lost; the peer answers the others with duplicate ACKs.
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, 501, b"")), []);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, 501, b"")), []);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, 501, b"")), [s("ACK", 501, 101, 536)]);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, 501, b"")), [], "one fast retransmit per loss");
        // RFC 6582: a partial ACK shows the next hole; it is resent at once.
        assert_eq!(summary(&f.recv(30 * MS, Flags::ACK, 101, 1573, b"")), [s("ACK", 1573, 101, 536)]);
        assert_eq!(summary(&f.recv(40 * MS, Flags::ACK, 101, 3181, b"")), []);
        let status = f.stack.status(SocketId(0)).unwrap();
        assert_eq!((status.snd_una, status.snd_nxt, status.retries), (3181, 3181, 0));
        assert!(!f.out.iter().any(|o| matches!(o, Output::TimerFired { .. })), "no timeout was needed");
    }

    #[test]
    fn duplicate_acks_need_no_data_and_an_unchanged_window() {
        let mut f = five_segments_in_flight();
        f.recv(20 * MS, Flags::ACK, 101, 501, b"a");
        f.recv(20 * MS, Flags::ACK, 102, 501, b"b");
        let sent = f.recv(20 * MS, Flags::ACK, 103, 501, b"c");
        assert_eq!(summary(&sent), [s("ACK", 3181, 104, 0)], "segments with data are not duplicate ACKs");
    }

    #[test]
    fn data_between_duplicate_acks_does_not_restart_their_count() {
        // Data flows both ways: the peer's segments that carry data (and
        // acknowledge SND.UNA) come between its duplicate ACKs. RFC 5681
        // section 3.2 counts three duplicates "without any intervening ACKs
        // which move SND.UNA": data that moves nothing restarts nothing.
        let mut f = five_segments_in_flight();
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, 501, b"")), []);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, 501, b"a")), [s("ACK", 3181, 102, 0)]);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 102, 501, b"")), []);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 102, 501, b"b")), [s("ACK", 3181, 103, 0)]);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 103, 501, b"")), [s("ACK", 501, 103, 536)], "third duplicate");
        // An old ACK (reordering) neither counts nor restarts the count
        // (FreeBSD's tcp_input.c: "Old acks should not affect dupack counting").
        let mut f = five_segments_in_flight();
        f.recv(20 * MS, Flags::ACK, 101, 1037, b"");
        f.recv(20 * MS, Flags::ACK, 101, 1037, b"");
        f.recv(20 * MS, Flags::ACK, 101, 1037, b"");
        assert_eq!(f.stack.status(SocketId(0)).unwrap().dup_acks, 2);
        f.recv(20 * MS, Flags::ACK, 101, 501, b"");
        assert_eq!(f.stack.status(SocketId(0)).unwrap().dup_acks, 2);
        // An ACK that moves SND.UNA does.
        f.recv(20 * MS, Flags::ACK, 101, 1573, b"");
        assert_eq!(f.stack.status(SocketId(0)).unwrap().dup_acks, 0);
    }

    #[test]
    fn duplicate_acks_echoing_a_timeout_retransmission_do_not_fast_retransmit() {
        let mut f = five_segments_in_flight();
        // The RTO fires: cwnd collapses to one segment, resent from SND.UNA.
        assert_eq!(summary(&f.tick(1010 * MS)), [s("ACK", 501, 101, 536)]);
        // The peer had most of it: its duplicate ACKs must not look like a new loss (RFC 6582 section 4).
        for _ in 0..4 {
            assert_eq!(summary(&f.recv(1020 * MS, Flags::ACK, 101, 501, b"")), []);
        }
    }

    #[test]
    fn rtt_samples_shape_the_rto() {
        let mut f = Fixture::established(Profile { rto_min_ms: 1, ..profile() });
        f.stack.send(SocketId(0), b"hello").unwrap();
        f.stack.dispatch(at(10 * MS), &mut f.out);
        f.sent();
        f.recv(110 * MS, Flags::ACK, 101, 506, b"");
        let status = f.stack.status(SocketId(0)).unwrap();
        // SYN+ACK at 0 acknowledged at 1 ms: first sample 1 ms; then 100 ms.
        assert!(status.srtt_ns.unwrap() > MS && status.srtt_ns.unwrap() < 100 * MS);
        assert!(status.rto_ns >= status.srtt_ns.unwrap());
        assert_eq!(status.timers.retransmit, None, "everything is acknowledged");
        let fired: Vec<_> =
            f.out.iter().filter(|o| matches!(o, Output::TimerFired { timer: TimerKind::Retransmit, .. })).collect();
        assert!(fired.is_empty());
    }

    #[test]
    fn syn_and_rst_mitigations_are_separate_settings() {
        // RST mitigation on, SYN mitigation off: an in-window SYN resets, an inexact RST is challenged.
        let p = Profile { rfc5961_rst: Some(Switch::On), rfc5961_syn: Some(Switch::Off), ..profile() };
        let mut f = Fixture::established(p.clone());
        assert_eq!(summary(&f.recv(2 * MS, Flags::RST, 105, 0, b"")), [s("ACK", 501, 101, 0)]);
        assert_eq!(f.state(), State::Established);
        assert_eq!(summary(&f.recv(2 * MS, Flags::SYN, 105, 0, b"")), [s("RST+ACK", 501, 101, 0)]);
        assert_eq!(f.state(), State::Closed);
        // The other way round.
        let p = Profile { rfc5961_rst: Some(Switch::Off), rfc5961_syn: Some(Switch::On), ..profile() };
        let mut f = Fixture::established(p);
        assert_eq!(summary(&f.recv(2 * MS, Flags::SYN, 105, 0, b"")), [s("ACK", 501, 101, 0)]);
        f.recv(2 * MS, Flags::RST, 105, 0, b"");
        assert_eq!(f.state(), State::Closed);
        // Without syn_reset_acks the RFC 793 reset is a bare RST from SND.NXT.
        let p = Profile { rfc5961: Switch::Off, syn_reset_acks: Switch::Off, ..profile() };
        let mut f = Fixture::established(p);
        assert_eq!(summary(&f.recv(2 * MS, Flags::SYN, 105, 0, b"")), [s("RST", 501, 0, 0)]);
    }

    #[test]
    fn listen_drops_syn_ack_silences_the_reset_to_a_syn_ack_at_a_listener() {
        let mut f = Fixture::listening(profile());
        assert_eq!(summary(&f.recv(MS, Flags::SYN | Flags::ACK, 17, 34, b"abc")), [s("RST", 34, 0, 0)]);
        let mut f = Fixture::listening(Profile { listen_drops_syn_ack: Switch::On, ..profile() });
        assert_eq!(summary(&f.recv(MS, Flags::SYN | Flags::ACK, 17, 34, b"abc")), []);
        // A bare ACK is still answered with a reset: only SYN+ACK is dropped.
        assert_eq!(summary(&f.recv(2 * MS, Flags::ACK, 17, 34, b"")), [s("RST", 34, 0, 0)]);
    }

    #[test]
    fn a_syn_is_challenged_irrespective_of_its_sequence_number_and_challenges_are_limited() {
        let mut f = Fixture::established(Profile { challenge_ack_limit: 2, ..profile() });
        // RFC 5961 section 4.2: out of the window too.
        assert_eq!(summary(&f.recv(2 * MS, Flags::SYN, 90_000, 0, b"")), [s("ACK", 501, 101, 0)]);
        assert_eq!(summary(&f.recv(3 * MS, Flags::SYN, 7, 0, b"")), [s("ACK", 501, 101, 0)]);
        assert_eq!(summary(&f.recv(4 * MS, Flags::SYN, 7, 0, b"")), [], "third in one second: limited");
        assert_eq!(summary(&f.recv(1100 * MS, Flags::RST, 105, 0, b"")), [s("ACK", 501, 101, 0)], "a new second");
        assert_eq!(f.state(), State::Established);
    }

    #[test]
    fn a_rst_at_the_right_edge_of_the_window_is_dropped_silently() {
        for rfc5961 in [Switch::On, Switch::Off] {
            let mut f = Fixture::established(Profile { rfc5961, ..profile() });
            assert_eq!(summary(&f.recv(2 * MS, Flags::RST, 101 + 65_535, 0, b"")), []);
            assert_eq!(f.state(), State::Established);
        }
    }

    #[test]
    fn drop_synfin_drops_a_syn_fin_at_a_listener() {
        let mut f = Fixture::listening(Profile { drop_synfin: Switch::On, ..profile() });
        assert_eq!(summary(&f.recv(0, Flags::SYN | Flags::FIN, 100, 0, b"")), []);
        assert_eq!(f.stack.socket_count(), 0);
        let mut f = Fixture::listening(profile());
        assert_eq!(summary(&f.recv(0, Flags::SYN | Flags::FIN, 100, 0, b"")), [s("SYN+ACK", 500, 101, 0)]);
    }

    #[test]
    fn bsd_repeats_an_unacknowledged_fin_on_its_acks_but_not_on_challenge_acks() {
        let mut f = Fixture::established(Profile { ack_repeats_fin: Switch::On, ..profile() });
        f.stack.close(SocketId(0), &mut f.out).unwrap();
        f.stack.dispatch(at(2 * MS), &mut f.out);
        assert_eq!(summary(&f.sent()), [s("FIN+ACK", 501, 101, 0)]);
        // The peer's FIN crosses ours: CLOSING, and the ACK goes out as the FIN again.
        assert_eq!(summary(&f.recv(3 * MS, Flags::FIN | Flags::ACK, 101, 501, b"")), [s("FIN+ACK", 501, 102, 0)]);
        assert_eq!(f.state(), State::Closing);
        // A challenge ACK stays a plain ACK from SND.NXT.
        assert_eq!(summary(&f.recv(4 * MS, Flags::SYN, 300, 0, b"")), [s("ACK", 502, 102, 0)]);
        f.recv(5 * MS, Flags::ACK, 102, 502, b"");
        assert_eq!(f.state(), State::TimeWait);
    }

    #[test]
    fn bsd_accepts_up_to_its_mss_rounded_buffer_beyond_the_advertised_window() {
        let p = Profile { window: 65_536, rcv_window_from_buffer: Switch::On, rfc5961: Switch::Off, ..profile() };
        // MSS 1460 from the peer's SYN: the buffer rounds up to 45 * 1460 = 65700.
        let mut f = Fixture::listening(p.clone());
        let syn = Segment {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(100),
            flags: Flags::SYN,
            window: 65535,
            options: vec![crate::engine::TcpOption::Mss { value: 1460 }],
            ..Segment::default()
        };
        f.stack.process(at(0), PEER, &syn, &mut f.rng, &mut f.out);
        f.stack.dispatch(at(0), &mut f.out);
        assert_eq!(summary(&f.sent()), [s("SYN+ACK", 500, 101, 0)], "advertises 65535");
        // In SYN-RECEIVED (BSD's syncache) the window is what was advertised: 101 + 65535 is outside.
        assert_eq!(summary(&f.recv(MS, Flags::RST, 101 + 65_535, 0, b"")), []);
        f.recv(MS, Flags::ACK, 101, 501, b"");
        assert_eq!(f.state(), State::Established);
        // Established: RCV.NXT + 65699 is inside, so an RFC 793 RST there resets.
        f.recv(2 * MS, Flags::RST, 101 + 65_699, 0, b"");
        assert_eq!(f.state(), State::Closed);
        // Without the setting it would be outside.
        let mut f = Fixture::established(Profile { rcv_window_from_buffer: Switch::Off, ..p });
        f.recv(2 * MS, Flags::RST, 101 + 65_699, 0, b"");
        assert_eq!(f.state(), State::Established);
    }

    #[test]
    fn a_fin_beyond_a_hole_is_acknowledged_at_once() {
        let mut f = Fixture::established(profile());
        // RCV.NXT is 101; a FIN at 105 leaves a hole: duplicate ACK (RFC 5681 section 4.2).
        assert_eq!(summary(&f.recv(2 * MS, Flags::FIN | Flags::ACK, 105, 501, b"")), [s("ACK", 501, 101, 0)]);
        assert_eq!(f.state(), State::Established);
        // The hole filled, the FIN is taken.
        assert_eq!(summary(&f.recv(3 * MS, Flags::ACK, 101, 501, b"abcd")), [s("ACK", 501, 106, 0)]);
        assert_eq!(f.state(), State::CloseWait);
    }

    // ----- congestion control (RFC 5681, RFC 6582, RFC 3042) -----

    /// Established and sending `segments` segments of 536 octets at 10 ms;
    /// returns the fixture and the sequence numbers that left.
    fn sending(profile: Profile, segments: usize) -> (Fixture, Vec<u32>) {
        let mut f = Fixture::established(profile);
        f.stack.send(SocketId(0), &vec![7; segments * 536]).unwrap();
        f.stack.dispatch(at(10 * MS), &mut f.out);
        let seqs = f.sent().iter().map(|s| s.seq.0).collect();
        (f, seqs)
    }

    fn seg(n: u32) -> u32 {
        501 + n * 536
    }

    fn cc(f: &Fixture) -> (u32, Option<u32>, CcPhase) {
        let status = f.stack.status(SocketId(0)).unwrap();
        (status.cwnd, status.ssthresh, status.cc_phase)
    }

    #[test]
    fn slow_start_doubles_the_window_every_round_trip() {
        // RFC 5681 section 3.1: IW for an SMSS of 536 is four segments.
        let (mut f, first) = sending(profile(), 64);
        assert_eq!(first, [seg(0), seg(1), seg(2), seg(3)]);
        let mut rounds = vec![first.len()];
        let mut in_flight: Vec<u32> = first.iter().map(|s| s + 536).collect();
        for round in 1..=3 {
            let mut next = Vec::new();
            for end in in_flight {
                next.extend(f.recv(round * 100 * MS, Flags::ACK, 101, end, b"").iter().map(|s| s.seq.0 + 536));
            }
            rounds.push(next.len());
            in_flight = next;
        }
        assert_eq!(rounds, [4, 8, 16, 32], "each ACK of one segment lets two out");
        assert_eq!(cc(&f), (32 * 536, None, CcPhase::SlowStart));
    }

    #[test]
    fn newreno_recovers_two_losses_in_one_window_without_a_timeout() {
        let p = Profile { initial_window: InitialWindow::Segments(10), limited_transmit: Switch::Off, ..profile() };
        let (mut f, sent) = sending(p, 12);
        assert_eq!(sent.len(), 10);
        // Segments 0 and 3 are lost; the eight others each bring a duplicate ACK.
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, seg(0), b"")), []);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, seg(0), b"")), []);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, seg(0), b"")), [s("ACK", seg(0), 101, 536)]);
        // ssthresh = FlightSize / 2 = 5 segments; cwnd = ssthresh + 3.
        assert_eq!(cc(&f), (8 * 536, Some(5 * 536), CcPhase::FastRecovery));
        let status = f.stack.status(SocketId(0)).unwrap();
        assert_eq!((status.dup_acks, status.recovery_point, status.flight_size), (3, Some(seg(10)), 10 * 536));
        // Each further duplicate inflates cwnd by one segment; past the flight, new data leaves.
        let mut new = Vec::new();
        for _ in 0..5 {
            new.extend(summary(&f.recv(20 * MS, Flags::ACK, 101, seg(0), b"")));
        }
        assert_eq!(new, [s("ACK", seg(10), 101, 536), s("PSH+ACK", seg(11), 101, 536)]);
        assert_eq!(cc(&f).0, 13 * 536);
        // The partial ACK (three segments) resends the next hole and stays in
        // recovery, cwnd deflated by three and one added back (RFC 6582 section 3.2 step 5).
        assert_eq!(summary(&f.recv(30 * MS, Flags::ACK, 101, seg(3), b"")), [s("ACK", seg(3), 101, 536)]);
        assert_eq!(cc(&f), (11 * 536, Some(5 * 536), CcPhase::FastRecovery));
        // The full ACK ends recovery: cwnd = min(ssthresh, FlightSize + SMSS).
        assert_eq!(summary(&f.recv(40 * MS, Flags::ACK, 101, seg(12), b"")), []);
        assert_eq!(cc(&f), (2 * 536, Some(5 * 536), CcPhase::SlowStart));
        assert!(!f.out.iter().any(|o| matches!(o, Output::TimerFired { .. })), "no timeout was needed");
    }

    #[test]
    fn reno_leaves_recovery_on_the_partial_ack_and_waits_for_the_second_loss() {
        let p = Profile {
            cc: CcAlgorithm::Reno,
            initial_window: InitialWindow::Segments(10),
            limited_transmit: Switch::Off,
            ..profile()
        };
        let (mut f, _) = sending(p, 10);
        for _ in 0..3 {
            f.recv(20 * MS, Flags::ACK, 101, seg(0), b"");
        }
        assert_eq!(cc(&f), (8 * 536, Some(5 * 536), CcPhase::FastRecovery));
        // RFC 5681 alone: the partial ACK deflates cwnd to ssthresh, resends nothing.
        assert_eq!(summary(&f.recv(30 * MS, Flags::ACK, 101, seg(3), b"")), []);
        assert_eq!(cc(&f), (5 * 536, Some(5 * 536), CcPhase::CongestionAvoidance));
        // Three more duplicates are a second loss: ssthresh halves again.
        for _ in 0..2 {
            assert_eq!(summary(&f.recv(40 * MS, Flags::ACK, 101, seg(3), b"")), []);
        }
        assert_eq!(summary(&f.recv(40 * MS, Flags::ACK, 101, seg(3), b"")), [s("ACK", seg(3), 101, 536)]);
        assert_eq!(cc(&f).1, Some(7 * 536 / 2));
    }

    #[test]
    fn a_timeout_collapses_cwnd_to_one_segment_and_slow_start_resends_from_snd_una() {
        let mut f = five_segments_in_flight();
        assert_eq!(summary(&f.tick(1010 * MS)), [s("ACK", seg(0), 101, 536)]);
        // ssthresh = max(FlightSize / 2, 2 * SMSS) = 1340; cwnd = LW = 1 SMSS.
        assert_eq!(cc(&f), (536, Some(1340), CcPhase::SlowStart));
        // A second timeout of the same segment holds ssthresh (RFC 5681 section 3.1).
        assert_eq!(summary(&f.tick(3010 * MS)), [s("ACK", seg(0), 101, 536)]);
        assert_eq!(cc(&f), (536, Some(1340), CcPhase::SlowStart));
        // The ACK of the resent segment opens two: the next two, not everything.
        let resent = f.recv(3020 * MS, Flags::ACK, 101, seg(1), b"");
        assert_eq!(summary(&resent), [s("ACK", seg(1), 101, 536), s("ACK", seg(2), 101, 536)]);
        assert_eq!(cc(&f), (2 * 536, Some(1340), CcPhase::SlowStart));
    }

    #[test]
    fn limited_transmit_lets_one_new_segment_out_per_early_duplicate() {
        let on = Profile { initial_window: InitialWindow::Segments(2), ..profile() };
        let (mut f, sent) = sending(on.clone(), 5);
        assert_eq!(sent.len(), 2);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, seg(0), b"")), [s("ACK", seg(2), 101, 536)]);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, seg(0), b"")), [s("ACK", seg(3), 101, 536)]);
        // The third is a fast retransmit; ssthresh leaves the two limited-transmit
        // segments out of FlightSize (RFC 5681 section 3.2 step 2): max(2/2, 2) segments,
        // so cwnd = 5 and one new segment follows.
        let third = f.recv(20 * MS, Flags::ACK, 101, seg(0), b"");
        assert_eq!(summary(&third), [s("ACK", seg(0), 101, 536), s("PSH+ACK", seg(4), 101, 536)]);
        assert_eq!(cc(&f), (5 * 536, Some(2 * 536), CcPhase::FastRecovery));
        let (mut f, _) = sending(Profile { limited_transmit: Switch::Off, ..on }, 5);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, seg(0), b"")), []);
        assert_eq!(summary(&f.recv(20 * MS, Flags::ACK, 101, seg(0), b"")), []);
    }

    #[test]
    fn after_an_idle_rto_the_window_restarts_at_the_initial_window() {
        let (mut f, sent) = sending(profile(), 4);
        assert_eq!(sent.len(), 4);
        for n in 1..=4 {
            f.recv(20 * MS, Flags::ACK, 101, seg(n), b"");
        }
        assert_eq!(cc(&f).0, 8 * 536);
        // Idle for longer than the RTO (1 s): RFC 5681 section 4.1.
        f.stack.send(SocketId(0), &[7; 8 * 536]).unwrap();
        f.stack.dispatch(at(3000 * MS), &mut f.out);
        assert_eq!(f.sent().len(), 4, "restart window min(IW, cwnd)");
        assert_eq!(cc(&f).0, 4 * 536);
    }

    #[test]
    fn the_congestion_events_replay_to_the_status() {
        let p = Profile { initial_window: InitialWindow::Segments(10), ..profile() };
        let (mut f, _) = sending(p, 12);
        let mut replayed = Vec::new();
        let mut take = |f: &mut Fixture| {
            for o in &f.out {
                if let Output::CongestionChanged { cwnd, ssthresh, phase, .. } = o {
                    replayed.push((*cwnd, *ssthresh, *phase));
                }
            }
        };
        for _ in 0..4 {
            f.stack.process(at(20 * MS), PEER, &dup_ack(seg(0)), &mut f.rng, &mut f.out);
            take(&mut f);
            f.stack.dispatch(at(20 * MS), &mut f.out);
            f.sent();
        }
        f.stack.process(at(30 * MS), PEER, &dup_ack(seg(12)), &mut f.rng, &mut f.out);
        take(&mut f);
        assert_eq!(replayed.last().copied(), Some(cc(&f)));
        assert_eq!(replayed.len(), 3, "enter recovery, inflate once, leave: {replayed:?}");
    }

    fn delaying() -> Profile {
        Profile { delayed_ack: Switch::On, delayed_ack_ms: 40, ..profile() }
    }

    #[test]
    fn a_delayed_ack_waits_for_its_timer_or_the_next_segment() {
        let mut f = Fixture::established(delaying());
        // One segment: no ACK yet, the timer runs 40 ms.
        assert_eq!(summary(&f.recv(2 * MS, Flags::ACK, 101, 501, b"a")), []);
        assert_eq!(f.stack.status(SocketId(0)).unwrap().timers.delayed_ack, Some(42 * MS));
        // The second is acknowledged at once, with the first (RFC 5681 section 4.2).
        assert_eq!(summary(&f.recv(3 * MS, Flags::ACK, 102, 501, b"b")), [s("ACK", 501, 103, 0)]);
        assert_eq!(f.stack.status(SocketId(0)).unwrap().timers.delayed_ack, None);
        // A lone third one: the timer acknowledges it.
        assert_eq!(summary(&f.recv(10 * MS, Flags::ACK, 103, 501, b"c")), []);
        assert_eq!(summary(&f.tick(49 * MS)), []);
        f.stack.on_timer(at(50 * MS), &mut f.out);
        assert!(f.out.iter().any(|o| matches!(o, Output::TimerFired { timer: TimerKind::DelayedAck, .. })));
        f.stack.dispatch(at(50 * MS), &mut f.out);
        assert_eq!(summary(&f.sent()), [s("ACK", 501, 104, 0)]);
        // A segment out of order, and the one that fills the hole: at once.
        assert_eq!(summary(&f.recv(60 * MS, Flags::ACK, 105, 501, b"e")), [s("ACK", 501, 104, 0)]);
        assert_eq!(summary(&f.recv(61 * MS, Flags::ACK, 104, 501, b"d")), [s("ACK", 501, 106, 0)]);
        // A FIN: at once.
        assert_eq!(summary(&f.recv(70 * MS, Flags::FIN | Flags::ACK, 106, 501, b"")), [s("ACK", 501, 107, 0)]);
    }

    #[test]
    fn data_sent_meanwhile_carries_the_delayed_ack() {
        let mut f = Fixture::established(delaying());
        assert_eq!(summary(&f.recv(2 * MS, Flags::ACK, 101, 501, b"a")), []);
        f.stack.send(SocketId(0), b"reply").unwrap();
        f.stack.dispatch(at(5 * MS), &mut f.out);
        assert_eq!(summary(&f.sent()), [s("PSH+ACK", 501, 102, 5)]);
        assert_eq!(f.stack.status(SocketId(0)).unwrap().timers.delayed_ack, None);
    }

    /// A listener's endpoint in ESTABLISHED after a SYN that offered SACK.
    fn established_with_sack(profile: Profile) -> Fixture {
        let mut f = Fixture::listening(profile);
        let syn = Segment {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(100),
            flags: Flags::SYN,
            window: 65535,
            options: vec![TcpOption::Mss { value: 1460 }, TcpOption::SackPermitted],
            ..Segment::default()
        };
        f.stack.process(at(0), PEER, &syn, &mut f.rng, &mut f.out);
        f.stack.dispatch(at(0), &mut f.out);
        let synack = f.sent();
        assert_eq!(
            synack[0].options,
            [TcpOption::Mss { value: 1460 }, TcpOption::SackPermitted, TcpOption::Eol, TcpOption::Eol],
            "SACK-permitted answers SACK-permitted, padded as BSD pads"
        );
        f.recv(MS, Flags::ACK, 101, 501, b"");
        assert!(f.stack.status(SocketId(0)).unwrap().sack_permitted);
        f
    }

    fn sack_of(seg: &Segment) -> Vec<(u32, u32)> {
        seg.options
            .iter()
            .find_map(|o| match o {
                TcpOption::Sack { blocks } => Some(blocks.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    #[test]
    fn sack_blocks_report_held_data_newest_first_and_a_duplicate_once() {
        let mut f = established_with_sack(Profile { sack: Switch::On, ..profile() });
        let data = [0u8; 100];
        // 101..201 in order; 301..401 and 501..601 held.
        f.recv(2 * MS, Flags::ACK, 101, 501, &data);
        let acks = f.recv(3 * MS, Flags::ACK, 301, 501, &data);
        assert_eq!(sack_of(&acks[0]), [(301, 401)]);
        assert_eq!(acks[0].options[..2], [TcpOption::Nop, TcpOption::Nop]);
        let acks = f.recv(4 * MS, Flags::ACK, 501, 501, &data);
        assert_eq!(sack_of(&acks[0]), [(501, 601), (301, 401)]);
        let status = f.stack.status(SocketId(0)).unwrap();
        let blocks: Vec<(u32, u32)> = status.sack_blocks.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(blocks, [(501, 601), (301, 401)]);
        // Old data again: a D-SACK block first, sent once.
        let acks = f.recv(5 * MS, Flags::ACK, 151, 501, &data[..20]);
        assert_eq!(sack_of(&acks[0]), [(151, 171), (501, 601), (301, 401)]);
        let acks = f.recv(6 * MS, Flags::ACK, 541, 501, &data[..10]);
        assert_eq!(sack_of(&acks[0]), [(541, 551), (501, 601), (301, 401)], "a duplicate of held data");
        // The hole filled: what is still held is reported, and the D-SACK
        // block above RCV.NXT with it until RCV.NXT passes it (FreeBSD's
        // tcp_clean_dsack_blocks() drops only blocks at or below RCV.NXT).
        let acks = f.recv(7 * MS, Flags::ACK, 201, 501, &data);
        assert_eq!(acks[0].ack.0, 401);
        assert_eq!(sack_of(&acks[0]), [(541, 551), (501, 601)]);
        let acks = f.recv(8 * MS, Flags::ACK, 401, 501, &data);
        assert_eq!((acks[0].ack.0, acks[0].options.clone()), (601, vec![]));
        assert!(f.stack.status(SocketId(0)).unwrap().sack_blocks.is_empty());
    }

    #[test]
    fn without_sack_on_both_sides_no_blocks_are_sent() {
        let mut f = established_with_sack(Profile { sack: Switch::On, ..profile() });
        f.recv(2 * MS, Flags::ACK, 301, 501, b"x");
        assert!(!f.recv(3 * MS, Flags::ACK, 401, 501, b"y")[0].options.is_empty());
        // A SYN without SACK-permitted: none.
        let mut f = Fixture::established(Profile { sack: Switch::On, ..profile() });
        assert!(!f.stack.status(SocketId(0)).unwrap().sack_permitted);
        assert_eq!(f.recv(2 * MS, Flags::ACK, 301, 501, b"x")[0].options, []);
    }

    fn ts_of(seg: &Segment) -> Option<(u32, u32)> {
        seg.timestamps()
    }

    /// A listener's endpoint after a SYN with Window Scale 7 and Timestamps
    /// (TSval 1000), answered under `profile`; returns it and the SYN+ACK.
    fn established_rfc7323(profile: Profile) -> (Fixture, Segment) {
        let mut f = Fixture::listening(profile);
        let syn = Segment {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(100),
            flags: Flags::SYN,
            window: 65535,
            options: vec![
                TcpOption::Mss { value: 1460 },
                TcpOption::WindowScale { value: 7 },
                TcpOption::Timestamps { val: 1000, ecr: 0 },
            ],
            ..Segment::default()
        };
        f.stack.process(at(0), PEER, &syn, &mut f.rng, &mut f.out);
        f.stack.dispatch(at(0), &mut f.out);
        let synack = f.sent().remove(0);
        let ack = Segment {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(101),
            ack: SeqNumber(501),
            flags: Flags::ACK,
            window: 100,
            options: vec![TcpOption::Timestamps { val: 1010, ecr: ts_of(&synack).map_or(0, |t| t.0) }],
            ..Segment::default()
        };
        f.stack.process(at(10 * MS), PEER, &ack, &mut f.rng, &mut f.out);
        f.stack.dispatch(at(10 * MS), &mut f.out);
        f.sent();
        (f, synack)
    }

    fn rfc7323() -> Profile {
        Profile { window: 1 << 20, window_scale: crate::engine::WindowScale::Auto, timestamps: Switch::On, ..profile() }
    }

    #[test]
    fn window_scaling_is_negotiated_and_scales_every_window_after_the_syns() {
        let (f, synack) = established_rfc7323(rfc7323());
        // Auto: 1 MiB needs a shift of 5 (65535 << 4 < 1 MiB <= 65535 << 5).
        assert_eq!(
            synack.options,
            [
                TcpOption::Mss { value: 1460 },
                TcpOption::Nop,
                TcpOption::WindowScale { value: 5 },
                TcpOption::Nop,
                TcpOption::Nop,
                TcpOption::Timestamps { val: 500, ecr: 1000 },
            ],
            "BSD's layout; TSecr echoes the SYN's TSval"
        );
        assert_eq!(synack.window, 65535, "a SYN's window is never scaled");
        let status = f.stack.status(SocketId(0)).unwrap();
        assert_eq!((status.snd_wscale, status.rcv_wscale), (Some(7), Some(5)));
        assert_eq!(status.snd_wnd, 100 << 7, "the peer's window, scaled by its shift");
        assert_eq!(status.rcv_wnd, 1 << 20, "more than 64 KiB is open");
        assert!(status.timestamps);
        assert_eq!(status.ts_recent, Some(1010));
    }

    #[test]
    fn without_the_peers_offer_neither_option_is_used() {
        let mut f = Fixture::listening(rfc7323());
        let synack = f.recv(0, Flags::SYN, 100, 0, b"");
        assert_eq!(synack[0].options, [TcpOption::Mss { value: 1460 }]);
        f.recv(MS, Flags::ACK, 101, 501, b"");
        let status = f.stack.status(SocketId(0)).unwrap();
        assert_eq!((status.snd_wscale, status.rcv_wscale, status.timestamps), (None, None, false));
        assert_eq!(status.snd_wnd, 65535);
        assert_eq!(f.recv(2 * MS, Flags::ACK, 101, 501, b"x")[0].window, 65535, "at most 65535 unscaled");
    }

    #[test]
    fn timestamps_echo_ts_recent_measure_the_rtt_and_paws_drops_old_duplicates() {
        let (mut f, _) = established_rfc7323(rfc7323());
        // The third ACK echoed our SYN+ACK's TSval 10 ms later: one RTT sample.
        assert_eq!(f.stack.status(SocketId(0)).unwrap().srtt_ns, Some(10 * MS));
        let data = |val: u32, seq: u32| Segment {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(seq),
            ack: SeqNumber(501),
            flags: Flags::ACK,
            window: 100,
            payload: Bytes::from_static(b"abcd"),
            options: vec![TcpOption::Timestamps { val, ecr: 0 }],
            ..Segment::default()
        };
        f.stack.process(at(20 * MS), PEER, &data(1020, 101), &mut f.rng, &mut f.out);
        f.stack.dispatch(at(20 * MS), &mut f.out);
        let ack = f.sent().remove(0);
        assert_eq!(ack.ack.0, 105);
        assert_eq!(ts_of(&ack), Some((520, 1020)), "TSval from the clock, TSecr = TS.Recent");
        assert_eq!(ack.options[..2], [TcpOption::Nop, TcpOption::Nop]);
        assert_eq!(ack.window, ((1u32 << 20) - 4).div_ceil(32) as u16, "rounded up, then scaled");
        // An old duplicate: new sequence numbers but an old TSval. PAWS drops
        // it and acknowledges what was received.
        f.stack.process(at(30 * MS), PEER, &data(900, 105), &mut f.rng, &mut f.out);
        f.stack.dispatch(at(30 * MS), &mut f.out);
        let ack = f.sent().remove(0);
        assert_eq!(ack.ack.0, 105, "the old segment's text was not taken");
        assert_eq!(f.stack.status(SocketId(0)).unwrap().recv_buffered, 4);
        assert_eq!(f.stack.status(SocketId(0)).unwrap().ts_recent, Some(1020));
        // Data we send carries timestamps too, and room for them: MSS - 12.
        f.stack.send(SocketId(0), &[7u8; 3000]).unwrap();
        f.stack.dispatch(at(40 * MS), &mut f.out);
        let sent = f.sent();
        assert_eq!(sent[0].payload.len(), 1448);
        assert!(ts_of(&sent[0]).is_some());
    }

    fn dup_ack(ack: u32) -> Segment {
        Segment {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(101),
            ack: SeqNumber(ack),
            flags: Flags::ACK,
            window: 65535,
            ..Segment::default()
        }
    }
}
