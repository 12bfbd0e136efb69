//! smoltcp side of the engine benchmark: complete TCP connection lifecycles
//! between two smoltcp 0.14 interfaces, with `open` idle established
//! connections held open alongside.
//!
//! Two `Medium::Ip` interfaces (client 10.0.0.1, server 10.0.0.2) are joined
//! by an in-memory, zero-latency device pair and driven in virtual time.
//! Each lifecycle (on a fresh port pair): handshake, 1 KiB client->server,
//! 1 KiB server->client, client closes first, server closes, then virtual time
//! is advanced through the client's TIME_WAIT (smoltcp: 10 s) until both
//! sockets are Closed.
//!
//! smoltcp has no connection lookup table: every received segment is matched
//! by scanning the socket set, and every `Interface::poll` / `poll_at` visits
//! every socket. Cost per lifecycle therefore grows linearly with `open` —
//! that is the point of the comparison.
//!
//! The driver only polls an interface when it has received packets, its
//! application touched a socket, or its `poll_at` deadline was reached; time
//! is advanced to the earliest `poll_at` only when neither side has work.
//! The two lifecycle sockets are allocated once (after the idle ones, so a
//! lookup scans past all idle sockets) and reused, the usual smoltcp idiom.
//!
//! Set-up cost: `SocketSet::add` scans linearly for a free slot, so adding n
//! sockets is O(n^2) and memory-bound (~0.3 s for 10k, ~80 s for 100k idle
//! connections); there is no way around that through smoltcp's public API.
#![allow(dead_code)] // not every user of this module calls every item

use std::collections::VecDeque;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

pub const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
pub const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

/// Bytes sent in each direction per lifecycle.
pub const LIFECYCLE_BYTES: usize = 1024;
/// rx/tx buffer size of the lifecycle sockets.
const LIFECYCLE_BUF: usize = 4096;
/// rx/tx buffer size of each idle socket (kept small so 100k fit in memory).
const IDLE_BUF: usize = 256;
/// Idle connections are handshaken this many at a time in a scratch
/// `SocketSet`, then moved into the real one.
const SETUP_BATCH: usize = 1024;
/// Idle connection `i` uses client port `IDLE_CPORT0 + i % IDLE_PER_SPORT`
/// and server port `IDLE_SPORT0 + i / IDLE_PER_SPORT`.
const IDLE_CPORT0: usize = 20_000;
const IDLE_PER_SPORT: usize = 40_000;
const IDLE_SPORT0: usize = 1_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifecycleStats {
    pub lifecycles: u64,
    pub packets: u64,
}

/// In-memory `Medium::Ip` device (checksums computed/verified in software).
#[derive(Default)]
struct Wire {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct RxTok(Vec<u8>);
struct TxTok<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxTok, TxTok<'_>)> {
        let pkt = self.rx.pop_front()?;
        Some((RxTok(pkt), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxTok<'_>> {
        Some(TxTok(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

struct Host {
    iface: Interface,
    dev: Wire,
    sockets: SocketSet<'static>,
    /// Must be polled: application activity or a due timer.
    dirty: bool,
}

impl Host {
    fn new(ip: Ipv4Address, capacity: usize) -> Self {
        let mut dev = Wire::default();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = u64::from(ip.to_bits());
        let mut iface = Interface::new(config, &mut dev, Instant::ZERO);
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(ip), 24)).unwrap());
        Host { iface, dev, sockets: SocketSet::new(Vec::with_capacity(capacity)), dirty: false }
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }
}

fn new_socket(buf: usize) -> tcp::Socket<'static> {
    let mut sock = tcp::Socket::new(tcp::SocketBuffer::new(vec![0u8; buf]), tcp::SocketBuffer::new(vec![0u8; buf]));
    // The dev dependency enables smoltcp's Reno and CUBIC (for the interop
    // tests), which would make CUBIC the default: the baseline keeps none.
    sock.set_congestion_control(tcp::CongestionControl::None);
    sock
}

/// Move everything `from` transmitted to `to`'s receive queue.
fn transfer(from: &mut Wire, to: &mut Wire) -> u64 {
    let n = from.tx.len() as u64;
    to.rx.extend(from.tx.drain(..));
    n
}

pub struct SmolLifecycles {
    client: Host,
    server: Host,
    now: Instant,
    lc_client: SocketHandle,
    lc_server: SocketHandle,
    open: usize,
    next_lifecycle: u64,
    packets: u64,
    payload: Vec<u8>,
    scratch: Vec<u8>,
}

impl SmolLifecycles {
    /// Two interfaces with `open` established idle connections between them.
    pub fn new(open: usize) -> Self {
        assert!(open <= IDLE_PER_SPORT * 4000, "too many idle connections");
        let mut lab = SmolLifecycles {
            client: Host::new(CLIENT_IP, open + 1),
            server: Host::new(SERVER_IP, open + 1),
            now: Instant::ZERO,
            lc_client: SocketHandle::default(),
            lc_server: SocketHandle::default(),
            open,
            next_lifecycle: 0,
            packets: 0,
            payload: (0..LIFECYCLE_BYTES).map(|i| (i * 13 + 7) as u8).collect(),
            scratch: vec![0; LIFECYCLE_BYTES],
        };
        let mut start = 0;
        while start < open {
            let end = (start + SETUP_BATCH).min(open);
            lab.open_idle_batch(start, end);
            start = end;
        }
        lab.lc_client = lab.client.sockets.add(new_socket(LIFECYCLE_BUF));
        lab.lc_server = lab.server.sockets.add(new_socket(LIFECYCLE_BUF));
        // Idle connections must not schedule any wake-up.
        assert_eq!(lab.client.iface.poll_at(lab.now, &lab.client.sockets), None);
        assert_eq!(lab.server.iface.poll_at(lab.now, &lab.server.sockets), None);
        lab
    }

    /// Number of idle connections held open.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Handshake idle connections `start..end` in scratch socket sets (so the
    /// set-up is not quadratic in ingress scanning), then move the
    /// established sockets into the hosts' socket sets.
    fn open_idle_batch(&mut self, start: usize, end: usize) {
        let mut cset = SocketSet::new(Vec::with_capacity(end - start));
        let mut sset = SocketSet::new(Vec::with_capacity(end - start));
        let mut pairs = Vec::with_capacity(end - start);
        for i in start..end {
            let sport = (IDLE_SPORT0 + i / IDLE_PER_SPORT) as u16;
            let cport = (IDLE_CPORT0 + i % IDLE_PER_SPORT) as u16;
            let sh = sset.add(new_socket(IDLE_BUF));
            sset.get_mut::<tcp::Socket>(sh).listen(sport).unwrap();
            let ch = cset.add(new_socket(IDLE_BUF));
            cset.get_mut::<tcp::Socket>(ch)
                .connect(self.client.iface.context(), (IpAddress::Ipv4(SERVER_IP), sport), cport)
                .unwrap();
            pairs.push((ch, sh));
        }
        let (c, s) = (&mut self.client, &mut self.server);
        loop {
            c.iface.poll(self.now, &mut c.dev, &mut cset);
            let mut moved = transfer(&mut c.dev, &mut s.dev);
            s.iface.poll(self.now, &mut s.dev, &mut sset);
            moved += transfer(&mut s.dev, &mut c.dev);
            if moved == 0 && c.dev.rx.is_empty() {
                break;
            }
        }
        assert_eq!(c.iface.poll_at(self.now, &cset), None);
        assert_eq!(s.iface.poll_at(self.now, &sset), None);
        for (ch, sh) in pairs {
            let cs = cset.remove(ch);
            let ss = sset.remove(sh);
            for sock in [&cs, &ss] {
                match sock {
                    smoltcp::socket::Socket::Tcp(t) => assert_eq!(t.state(), State::Established),
                    #[allow(unreachable_patterns)]
                    _ => unreachable!(),
                }
            }
            c.sockets.add(cs);
            s.sockets.add(ss);
        }
    }

    /// Run `lifecycles` complete connection lifecycles one after another.
    pub fn run(&mut self, lifecycles: u64) -> LifecycleStats {
        let before = self.packets;
        for _ in 0..lifecycles {
            self.lifecycle();
        }
        LifecycleStats { lifecycles, packets: self.packets - before }
    }

    fn lifecycle(&mut self) {
        let k = self.next_lifecycle;
        self.next_lifecycle += 1;
        let cport = 10_000 + (k % 10_000) as u16;
        let sport = 5_000 + (k % 1_000) as u16;
        let (lc, ls) = (self.lc_client, self.lc_server);

        // Handshake.
        self.server.tcp(ls).listen(sport).unwrap();
        let sock = self.client.sockets.get_mut::<tcp::Socket>(lc);
        sock.connect(self.client.iface.context(), (IpAddress::Ipv4(SERVER_IP), sport), cport).unwrap();
        self.client.dirty = true;
        self.run_until(|l| {
            l.client.tcp(lc).state() == State::Established && l.server.tcp(ls).state() == State::Established
        });

        // 1 KiB client -> server.
        let n = self.client.tcp(lc).send_slice(&self.payload).unwrap();
        assert_eq!(n, LIFECYCLE_BYTES);
        self.client.dirty = true;
        self.run_until(|l| l.server.tcp(ls).recv_queue() == LIFECYCLE_BYTES);
        let n = self.server.tcp(ls).recv_slice(&mut self.scratch).unwrap();
        assert_eq!(self.scratch[..n], self.payload[..]);

        // 1 KiB server -> client.
        let n = self.server.tcp(ls).send_slice(&self.payload).unwrap();
        assert_eq!(n, LIFECYCLE_BYTES);
        self.server.dirty = true;
        self.run_until(|l| l.client.tcp(lc).recv_queue() == LIFECYCLE_BYTES);
        let n = self.client.tcp(lc).recv_slice(&mut self.scratch).unwrap();
        assert_eq!(self.scratch[..n], self.payload[..]);

        // Client closes first; server closes once it has seen the FIN.
        self.client.tcp(lc).close();
        self.client.dirty = true;
        self.run_until(|l| l.server.tcp(ls).state() == State::CloseWait);
        self.server.tcp(ls).close();
        self.server.dirty = true;
        // Includes the client's TIME_WAIT (10 s of virtual time).
        self.run_until(|l| l.client.tcp(lc).state() == State::Closed && l.server.tcp(ls).state() == State::Closed);
    }

    /// Poll whichever side has work until both are idle at the current time.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            if self.client.dirty || !self.client.dev.rx.is_empty() {
                let c = &mut self.client;
                c.iface.poll(self.now, &mut c.dev, &mut c.sockets);
                c.dirty = false;
                let n = transfer(&mut c.dev, &mut self.server.dev);
                self.packets += n;
                progressed = true;
            }
            if self.server.dirty || !self.server.dev.rx.is_empty() {
                let s = &mut self.server;
                s.iface.poll(self.now, &mut s.dev, &mut s.sockets);
                s.dirty = false;
                let n = transfer(&mut s.dev, &mut self.client.dev);
                self.packets += n;
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    /// Pump; while `done` is false, advance virtual time to the earliest
    /// smoltcp deadline and pump again.
    fn run_until(&mut self, mut done: impl FnMut(&mut Self) -> bool) {
        loop {
            self.pump();
            if done(self) {
                return;
            }
            let c = self.client.iface.poll_at(self.now, &self.client.sockets);
            let s = self.server.iface.poll_at(self.now, &self.server.sockets);
            let next = match (c, s) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => panic!("smoltcp lifecycle stuck at {}", self.now),
            };
            self.now = self.now.max(next);
            self.client.dirty = c.is_some_and(|t| t <= self.now);
            self.server.dirty = s.is_some_and(|t| t <= self.now);
        }
    }
}

/// rx/tx buffer of each bulk socket: tcplab's default window (65,535 octets).
const BULK_BUF: usize = 65_535;
const BULK_PORT: u16 = 80;

/// The engine bench's bulk transfer on smoltcp: one connection between the
/// two interfaces over the zero-latency device, the client sending as fast
/// as its buffer drains, the server reading everything that arrives.
pub struct SmolBulk {
    client: Host,
    server: Host,
    now: Instant,
    client_socket: SocketHandle,
    server_socket: SocketHandle,
    chunk: Vec<u8>,
    scratch: Vec<u8>,
}

impl Default for SmolBulk {
    fn default() -> Self {
        Self::new()
    }
}

impl SmolBulk {
    /// An established connection, client 10.0.0.1 to server 10.0.0.2 port 80.
    pub fn new() -> Self {
        let mut client = Host::new(CLIENT_IP, 1);
        let mut server = Host::new(SERVER_IP, 1);
        let client_socket = client.sockets.add(new_socket(BULK_BUF));
        let server_socket = server.sockets.add(new_socket(BULK_BUF));
        server.tcp(server_socket).listen(BULK_PORT).unwrap();
        let cx = client.iface.context();
        client
            .sockets
            .get_mut::<tcp::Socket>(client_socket)
            .connect(cx, (IpAddress::Ipv4(SERVER_IP), BULK_PORT), 30_000)
            .unwrap();
        client.dirty = true;
        let mut bulk = SmolBulk {
            client,
            server,
            now: Instant::ZERO,
            client_socket,
            server_socket,
            chunk: (0..BULK_BUF).map(|i| i as u8).collect(),
            scratch: vec![0; BULK_BUF],
        };
        while bulk.client.tcp(client_socket).state() != State::Established
            || bulk.server.tcp(server_socket).state() != State::Established
        {
            bulk.step();
        }
        bulk
    }

    /// Polls whichever side has work once, or moves time to the earliest
    /// deadline when neither has. Returns the packets it moved.
    fn step(&mut self) -> u64 {
        let mut moved = 0;
        if self.client.dirty || !self.client.dev.rx.is_empty() {
            let c = &mut self.client;
            c.iface.poll(self.now, &mut c.dev, &mut c.sockets);
            c.dirty = false;
            moved += transfer(&mut c.dev, &mut self.server.dev);
        } else if self.server.dirty || !self.server.dev.rx.is_empty() {
            let s = &mut self.server;
            s.iface.poll(self.now, &mut s.dev, &mut s.sockets);
            s.dirty = false;
            moved += transfer(&mut s.dev, &mut self.client.dev);
        } else {
            let c = self.client.iface.poll_at(self.now, &self.client.sockets);
            let s = self.server.iface.poll_at(self.now, &self.server.sockets);
            let next = [c, s].into_iter().flatten().min().expect("a smoltcp bulk transfer waits on a timer");
            self.now = self.now.max(next);
            self.client.dirty = c.is_some_and(|t| t <= self.now);
            self.server.dirty = s.is_some_and(|t| t <= self.now);
        }
        moved
    }

    /// Moves `bytes` from client to server; returns the packets delivered
    /// (data and ACKs, both directions), as the engine's bulk counts them.
    pub fn transfer(&mut self, bytes: usize) -> u64 {
        let (mut sent, mut received, mut packets) = (0, 0, 0);
        while received < bytes {
            let (cs, ss) = (self.client_socket, self.server_socket);
            let client = self.client.tcp(cs);
            if sent < bytes && client.send_capacity() > client.send_queue() {
                sent += client.send_slice(&self.chunk[..(bytes - sent).min(BULK_BUF)]).unwrap();
                self.client.dirty = true;
            }
            packets += self.step();
            let server = self.server.sockets.get_mut::<tcp::Socket>(ss);
            let mut read = 0;
            while server.can_recv() {
                read += server.recv_slice(&mut self.scratch).unwrap();
            }
            // Reading opens the window: the server polls to say so.
            received += read;
            self.server.dirty |= read > 0;
        }
        packets
    }
}
