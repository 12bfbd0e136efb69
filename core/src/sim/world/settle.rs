//! What the world does after a host's stack was touched (a user call, an
//! arriving segment, a timer): the engine's outputs become events, packets
//! on the wire and connection bookkeeping; applications read what they read
//! automatically; CLOSED endpoints are released; the host's timer is re-armed.
//!
//! Why a file of its own: this is the one place where the parts meet (a
//! segment the engine sends goes to the wire, a state change to the
//! connections and the log, a deadline to the agenda), so it is the
//! world's own work rather than any part's, and the public API in `mod.rs`
//! reads better without it.

use super::World;
use super::connections::{End, untag};
use super::hosts::{HostId, HostStack, RawPacket};
use super::wire::{Departure, InFlight, Origin};
use crate::engine::{Delivery, Flags, Output, SocketId, State};
use crate::sim::event::{ConnId, DropReason, EventKind, Side};
use crate::time::Duration;

impl World {
    /// A segment reaches its destination host.
    pub(super) fn arrive(&mut self, mut packet: InFlight) {
        let decoded = match packet.decode() {
            Ok(decoded) => decoded,
            Err(reason) => {
                let segment = packet.logged(&self.hosts);
                self.push_event(EventKind::SegmentDropped { reason, fault: None, segment });
                return;
            }
        };
        let host = packet.to();
        if let Some(stack) = self.hosts.tcp(host) {
            let segment = decoded.as_ref().unwrap_or(packet.segment());
            if segment.flags.contains(Flags::SYN)
                && !segment.flags.contains(Flags::ACK)
                && stack.goes_to_listener(packet.src_ip(), segment)
                && self.connections.full_listener(host, segment.dst_port).is_some()
            {
                let segment = packet.into_logged(&self.hosts);
                self.push_event(EventKind::SegmentDropped { reason: DropReason::Backlog, fault: None, segment });
                return;
            }
        }
        let now = self.now();
        let delivery = self.with_outputs(|w, out| match w.hosts.stack_mut(host) {
            HostStack::Raw(inbox) => {
                let bytes = packet.bytes().clone();
                inbox.push(RawPacket { at: now, src_ip: packet.src_ip(), bytes });
                None
            }
            HostStack::Tcp(stack) => {
                let segment = decoded.as_ref().unwrap_or(packet.segment());
                Some(stack.process(now, packet.src_ip(), segment, &mut w.rng, out))
            }
        });
        let connection = match delivery {
            Some(Delivery::Socket(socket)) => self.owner(host, socket).map(|(c, _)| c),
            _ => None,
        };
        let segment = packet.into_logged(&self.hosts);
        if delivery == Some(Delivery::NoConnection) {
            self.push_event(EventKind::SegmentDropped { reason: DropReason::NoListener, fault: None, segment });
        } else {
            self.push_event(EventKind::SegmentDelivered { connection, segment });
        }
        self.settle(host);
    }

    /// After anything touched a host's stack: turn its outputs into events and
    /// packets, let applications read, dispatch, release CLOSED endpoints and
    /// re-arm the host's timer.
    pub(super) fn settle(&mut self, host: HostId) {
        let mut closed = Vec::new();
        for round in 0..2 {
            let mut readable = std::mem::take(&mut self.readable);
            self.with_outputs(|w, out| {
                if round == 1 {
                    let now = w.now();
                    if let Some(stack) = w.hosts.tcp_mut(host) {
                        stack.dispatch(now, out);
                    }
                }
                for output in out.drain(..) {
                    w.apply_output(host, output, &mut readable, &mut closed);
                }
            });
            for &socket in &readable {
                self.read_if_auto(host, socket);
            }
            readable.clear();
            self.readable = readable;
        }
        for socket in closed {
            self.release(host, socket);
        }
        self.rearm_host_timer(host);
    }

    /// The connection and side an endpoint of `host` belongs to, if any.
    fn owner(&self, host: HostId, socket: SocketId) -> Option<(ConnId, Side)> {
        self.hosts.tcp(host).and_then(|stack| stack.user_data(socket).ok()).and_then(untag)
    }

    fn read_if_auto(&mut self, host: HostId, socket: SocketId) {
        let Some(stack) = self.hosts.tcp(host) else {
            return;
        };
        if self.connections.auto_reads(stack.user_data(socket).ok()) {
            self.read_into_end(host, socket, usize::MAX);
        }
    }

    /// RECEIVE into the end's `received` log (or just counted, when the
    /// world does not keep data): returns the octets read.
    pub(super) fn read_into_end(&mut self, host: HostId, socket: SocketId, max: usize) -> usize {
        let Some(stack) = self.hosts.tcp_mut(host) else {
            return 0;
        };
        let Ok(user_data) = stack.user_data(socket) else {
            return 0;
        };
        let (n, data) = if self.config.keep_received {
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
        self.connections.record_received(user_data, n, &data);
        n
    }

    fn apply_output(&mut self, host: HostId, output: Output, readable: &mut Vec<SocketId>, closed: &mut Vec<SocketId>) {
        match output {
            Output::Transmit { socket, dst_ip, segment, retransmission } => {
                let src_ip = self.hosts.ip(host);
                let connection = socket.and_then(|s| self.owner(host, s)).map(|(c, _)| c);
                let mut segment = segment;
                let bytes = if segment.encodes_exactly() {
                    // The bytes are made only if something needs them (see `InFlight::bytes`).
                    match segment.wire_checksum(src_ip, dst_ip) {
                        Ok(sum) => {
                            segment.checksum = sum;
                            None
                        }
                        Err(_) => {
                            debug_assert!(false, "the engine only sends encodable segments");
                            return;
                        }
                    }
                } else {
                    match segment.encode(src_ip, dst_ip) {
                        Ok(bytes) => Some(bytes),
                        Err(_) => {
                            debug_assert!(false, "the engine only sends encodable segments");
                            return;
                        }
                    }
                };
                let origin = Origin::from_tcp(retransmission);
                self.launch(Departure {
                    from: host,
                    dst_ip,
                    bytes,
                    segment,
                    origin,
                    connection,
                    delay: Duration::ZERO,
                });
            }
            Output::StateChanged { socket, from, to, cause, rfc } => {
                let who = self.owner(host, socket);
                if let Some((conn, side)) = who {
                    self.connections.set_state(conn, side, to);
                }
                if to == State::Closed {
                    closed.push(socket);
                }
                self.push_event(EventKind::StateChanged {
                    connection: who.map(|(c, _)| c),
                    listener: None,
                    host: self.hosts.name(host).clone(),
                    side: who.map(|(_, s)| s),
                    from,
                    to,
                    cause,
                    rfc: rfc.into(),
                });
            }
            Output::TimerFired { socket, timer } => {
                let who = self.owner(host, socket);
                self.push_event(EventKind::TimerFired {
                    connection: who.map(|(c, _)| c),
                    host: self.hosts.name(host).clone(),
                    side: who.map(|(_, s)| s),
                    timer,
                });
            }
            Output::Error { socket, error } => {
                let who = self.owner(host, socket);
                self.push_event(EventKind::ConnectionError {
                    connection: who.map(|(c, _)| c),
                    host: self.hosts.name(host).clone(),
                    side: who.map(|(_, s)| s),
                    error,
                });
            }
            Output::CongestionChanged { socket, cwnd, ssthresh, phase } => {
                let who = self.owner(host, socket);
                self.push_event(EventKind::CongestionChanged {
                    connection: who.map(|(c, _)| c),
                    host: self.hosts.name(host).clone(),
                    side: who.map(|(_, s)| s),
                    cwnd,
                    ssthresh,
                    phase,
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
        let Some(stack) = self.hosts.tcp(host) else {
            return;
        };
        let Ok(tcb) = stack.tcb(socket) else {
            return;
        };
        let (remote_ip, remote_port) = tcb.remote();
        let local_port = tcb.local_port();
        let tuple = (remote_ip, remote_port, self.hosts.ip(host), local_port);
        let irs = tcb.irs().0;
        let end = End::new(host, socket, State::Listen, tcb.iss().0, self.config.auto_read);
        let conn_id = self.connections.adopt(end, local_port, tuple, irs);
        if let Some(stack) = self.hosts.tcp_mut(host) {
            let _ = stack.set_user_data(socket, super::connections::tag(conn_id, Side::Server));
        }
    }

    /// A CLOSED endpoint: keep its last status, free its TCB, and forget the
    /// connection when both ends are done (unless the world keeps them).
    fn release(&mut self, host: HostId, socket: SocketId) {
        let Some(stack) = self.hosts.tcp_mut(host) else {
            return;
        };
        let Ok(status) = stack.status(socket) else {
            return;
        };
        if status.state != State::Closed {
            return;
        }
        let who = stack.user_data(socket).ok().and_then(untag);
        if who.is_some() {
            // What the application had not read yet stays readable, as BSD's
            // soreceive() returns buffered data before a connection's error.
            self.read_into_end(host, socket, usize::MAX);
        }
        let Some(stack) = self.hosts.tcp_mut(host) else {
            return;
        };
        let _ = stack.release(socket);
        let Some((conn_id, side)) = who else {
            return;
        };
        let host_ip = self.hosts.ip(host);
        self.connections.end_closed(conn_id, side, status, host_ip, self.config.keep_closed);
    }
}
