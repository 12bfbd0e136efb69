//! A reusable smoltcp endpoint for integration tests.
//!
//! [`SmolHost`] models one IPv4 host running smoltcp 0.14 with `Medium::Ip` over
//! an in-memory device. The test drives it in virtual time:
//!
//! * [`SmolHost::receive_tcp`] takes a raw TCP segment (header + payload, with a
//!   checksum valid for the IPv4 pseudo header `src -> host.ip()`), wraps it in
//!   a minimal IPv4 header and queues it on the device's receive side;
//! * [`SmolHost::poll`] runs `Interface::poll` at a given virtual time and
//!   returns every TCP segment smoltcp transmitted, IPv4 header stripped;
//! * [`SmolHost::poll_at`] returns smoltcp's next wake-up time.
//!
//! Checksums: the device reports `ChecksumCapabilities::default()`, i.e.
//! `Checksum::Both` for IPv4 and TCP, so smoltcp computes the IPv4 header and
//! TCP checksums in software on transmit and verifies them on receive
//! (segments with a bad TCP checksum are silently dropped by smoltcp).

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

/// IP MTU of the in-memory device (smoltcp advertises MSS = MTU - 40 = 1460).
pub const MTU: usize = 1500;

const IPV4_HEADER_LEN: usize = 20;
const PROTO_TCP: u8 = 6;

/// In-memory `Medium::Ip` device: whole IPv4 packets in, whole IPv4 packets out.
#[derive(Debug, Default)]
pub struct QueueDevice {
    /// Packets waiting to be received by smoltcp (front = next).
    pub rx: VecDeque<Vec<u8>>,
    /// Packets transmitted by smoltcp since the last drain.
    pub tx: Vec<Vec<u8>>,
}

pub struct QueueRxToken(Vec<u8>);

pub struct QueueTxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for QueueRxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for QueueTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = QueueRxToken;
    type TxToken<'a> = QueueTxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let pkt = self.rx.pop_front()?;
        Some((QueueRxToken(pkt), QueueTxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        Some(QueueTxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        // `caps.checksum` stays `ChecksumCapabilities::default()` = `Checksum::Both`
        // everywhere: computed on transmit, verified on receive.
        caps
    }
}

/// One IPv4 host running smoltcp over a [`QueueDevice`].
pub struct SmolHost {
    ip: Ipv4Addr,
    pub iface: Interface,
    pub device: QueueDevice,
    pub sockets: SocketSet<'static>,
    ip_ident: u16,
}

impl SmolHost {
    /// A host with address `ip/prefix`. A default route via the host's own
    /// address is installed so peers outside the prefix are reachable too
    /// (with `Medium::Ip` there is no neighbour resolution).
    pub fn new(ip: Ipv4Addr, prefix: u8) -> Self {
        let mut device = QueueDevice::default();
        let mut config = Config::new(HardwareAddress::Ip);
        // Deterministic but host-specific ISNs / IP idents.
        config.random_seed = u64::from(u32::from(ip)) ^ 0x5eed_5eed_5eed_5eed;
        let mut iface = Interface::new(config, &mut device, Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(IpAddress::Ipv4(ip), prefix)).expect("address table full");
        });
        iface.routes_mut().add_default_ipv4_route(ip).expect("route table full");
        SmolHost { ip, iface, device, sockets: SocketSet::new(Vec::new()), ip_ident: 1 }
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Add a TCP socket (state Closed) with the given buffer sizes and no
    /// congestion control (`CongestionControl::None`: smoltcp sends whatever
    /// the peer's window allows). That is pinned here because the dev
    /// dependency enables the `socket-tcp-reno` and `socket-tcp-cubic`
    /// features, which would otherwise make CUBIC every socket's default.
    pub fn add_tcp_socket(&mut self, rx_buf: usize, tx_buf: usize) -> SocketHandle {
        self.add_tcp_socket_with(rx_buf, tx_buf, tcp::CongestionControl::None)
    }

    /// [`SmolHost::add_tcp_socket`] with the given congestion controller
    /// (`Reno` or `Cubic`, RFC 5681 / RFC 9438 as smoltcp implements them).
    pub fn add_tcp_socket_with(&mut self, rx_buf: usize, tx_buf: usize, cc: tcp::CongestionControl) -> SocketHandle {
        let mut sock =
            tcp::Socket::new(tcp::SocketBuffer::new(vec![0u8; rx_buf]), tcp::SocketBuffer::new(vec![0u8; tx_buf]));
        sock.set_congestion_control(cc);
        self.sockets.add(sock)
    }

    pub fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// `socket.listen(port)` on this host's address.
    pub fn listen(&mut self, h: SocketHandle, port: u16) {
        self.tcp(h).listen(port).expect("listen failed");
    }

    /// `socket.connect(...)` to `remote` from `local_port` (needs the
    /// interface context, hence this helper).
    pub fn connect(&mut self, h: SocketHandle, remote: (Ipv4Addr, u16), local_port: u16) {
        let sock = self.sockets.get_mut::<tcp::Socket>(h);
        sock.connect(self.iface.context(), (IpAddress::Ipv4(remote.0), remote.1), local_port).expect("connect failed");
    }

    /// Queue a TCP segment from `src` for reception by this host.
    pub fn receive_tcp(&mut self, src: Ipv4Addr, tcp_bytes: &[u8]) {
        let pkt = wrap_ipv4(src, self.ip, self.ip_ident, tcp_bytes);
        self.ip_ident = self.ip_ident.wrapping_add(1);
        self.device.rx.push_back(pkt);
    }

    /// Run `Interface::poll` at virtual time `now_ns` (smoltcp has microsecond
    /// resolution: `Instant::from_micros(now_ns / 1000)`) and return what was
    /// transmitted as `(destination, TCP bytes)`. Non-IPv4/non-TCP packets are
    /// skipped.
    pub fn poll(&mut self, now_ns: u64) -> Vec<(Ipv4Addr, Vec<u8>)> {
        self.iface.poll(to_instant(now_ns), &mut self.device, &mut self.sockets);
        self.device.tx.drain(..).filter_map(|pkt| strip_ipv4_tcp(&pkt)).collect()
    }

    /// smoltcp's next wake-up in ns, or None when nothing is scheduled (only
    /// an incoming packet can change anything). When smoltcp wants to be
    /// polled immediately (it reports `Instant` 0 for "now") this returns
    /// `now_ns`, so the result is never earlier than `now_ns`.
    pub fn poll_at(&mut self, now_ns: u64) -> Option<u64> {
        self.iface
            .poll_at(to_instant(now_ns), &self.sockets)
            .map(|t| (t.total_micros().max(0) as u64 * 1000).max(now_ns))
    }
}

fn to_instant(now_ns: u64) -> Instant {
    Instant::from_micros((now_ns / 1000) as i64)
}

/// Wrap `payload` into a minimal IPv4 header (IHL 5, DF, TTL 64, protocol 6).
pub fn wrap_ipv4(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, payload: &[u8]) -> Vec<u8> {
    let total = IPV4_HEADER_LEN + payload.len();
    let total16 = u16::try_from(total).expect("IPv4 packet too large");
    let mut pkt = Vec::with_capacity(total);
    pkt.extend_from_slice(&[0x45, 0x00]);
    pkt.extend_from_slice(&total16.to_be_bytes());
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&[0x40, 0x00]); // DF, fragment offset 0
    pkt.extend_from_slice(&[64, PROTO_TCP, 0, 0]); // TTL, protocol, checksum
    pkt.extend_from_slice(&src.octets());
    pkt.extend_from_slice(&dst.octets());
    let csum = !ones_complement_sum(0, &pkt[..IPV4_HEADER_LEN]);
    pkt[10..12].copy_from_slice(&csum.to_be_bytes());
    pkt.extend_from_slice(payload);
    pkt
}

/// If `pkt` is a well-formed, unfragmented IPv4/TCP packet, return
/// `(dst, TCP bytes)`. Panics if the IPv4 header checksum is wrong (smoltcp
/// computes it in software, so that would be a harness bug).
pub fn strip_ipv4_tcp(pkt: &[u8]) -> Option<(Ipv4Addr, Vec<u8>)> {
    if pkt.len() < IPV4_HEADER_LEN || pkt[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    if ihl < IPV4_HEADER_LEN || total < ihl || total > pkt.len() || pkt[9] != PROTO_TCP {
        return None;
    }
    let frag = u16::from_be_bytes([pkt[6], pkt[7]]);
    if frag & 0x3fff != 0 {
        return None; // MF set or non-zero offset
    }
    assert_eq!(ones_complement_sum(0, &pkt[..ihl]), 0xffff, "smoltcp emitted an IPv4 header with a bad checksum");
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    Some((dst, pkt[ihl..total].to_vec()))
}

/// True if `tcp_bytes` carries a valid TCP checksum for the IPv4 pseudo
/// header `src -> dst`.
pub fn tcp_checksum_ok(src: Ipv4Addr, dst: Ipv4Addr, tcp_bytes: &[u8]) -> bool {
    let Ok(len) = u16::try_from(tcp_bytes.len()) else {
        return false;
    };
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = PROTO_TCP;
    pseudo[10..12].copy_from_slice(&len.to_be_bytes());
    let sum = ones_complement_sum(ones_complement_sum(0, &pseudo), tcp_bytes);
    sum == 0xffff
}

/// 16-bit one's complement sum of `data` (odd length padded with a zero
/// byte), added to `initial`. Not inverted.
pub fn ones_complement_sum(initial: u16, data: &[u8]) -> u16 {
    let mut sum = u32::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Build a TCP segment `src:sport -> dst:dport` with no options and a valid
/// checksum (handy for hand-crafted segments in tests). `flags` is the raw
/// flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
#[allow(clippy::too_many_arguments)]
pub fn build_tcp_segment(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = Vec::with_capacity(20 + payload.len());
    seg.extend_from_slice(&src.1.to_be_bytes());
    seg.extend_from_slice(&dst.1.to_be_bytes());
    seg.extend_from_slice(&seq.to_be_bytes());
    seg.extend_from_slice(&ack.to_be_bytes());
    seg.extend_from_slice(&[5 << 4, flags]);
    seg.extend_from_slice(&window.to_be_bytes());
    seg.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    seg.extend_from_slice(payload);
    let len = u16::try_from(seg.len()).expect("segment too large");
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.0.octets());
    pseudo[4..8].copy_from_slice(&dst.0.octets());
    pseudo[9] = PROTO_TCP;
    pseudo[10..12].copy_from_slice(&len.to_be_bytes());
    let csum = !ones_complement_sum(ones_complement_sum(0, &pseudo), &seg);
    seg[16..18].copy_from_slice(&csum.to_be_bytes());
    seg
}
