//! Self-test of the smoltcp harness in `tests/common/smol.rs`: two smoltcp
//! hosts talk to each other only through `receive_tcp` / `poll` / `poll_at`,
//! over a virtual 10 ms one-way link.

mod common;

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use common::smol::{SmolHost, tcp_checksum_ok};
use smoltcp::socket::tcp::State;

const LATENCY_NS: u64 = 10_000_000;
const MS: u64 = 1_000_000;

/// Minimal decoded view of a TCP header, for assertions and the trace.
#[derive(Debug)]
struct Seg {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    len: usize,
    mss: Option<u16>,
    wscale: Option<u8>,
    sack_perm: bool,
    timestamps: bool,
}

fn parse(b: &[u8]) -> Seg {
    let off = usize::from(b[12] >> 4) * 4;
    let mut seg = Seg {
        sport: u16::from_be_bytes([b[0], b[1]]),
        dport: u16::from_be_bytes([b[2], b[3]]),
        seq: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ack: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        flags: b[13],
        win: u16::from_be_bytes([b[14], b[15]]),
        len: b.len() - off,
        mss: None,
        wscale: None,
        sack_perm: false,
        timestamps: false,
    };
    let mut opts = &b[20..off];
    while let [kind, rest @ ..] = opts {
        match kind {
            0 => break,
            1 => opts = rest,
            _ => {
                let l = usize::from(rest[0]);
                match kind {
                    2 => seg.mss = Some(u16::from_be_bytes([rest[1], rest[2]])),
                    3 => seg.wscale = Some(rest[1]),
                    4 => seg.sack_perm = true,
                    8 => seg.timestamps = true,
                    _ => {}
                }
                opts = &opts[l..];
            }
        }
    }
    seg
}

fn flags_str(f: u8) -> String {
    let names = [(0x02, "S"), (0x10, "A"), (0x08, "P"), (0x01, "F"), (0x04, "R")];
    names.iter().filter(|(bit, _)| f & bit != 0).map(|(_, n)| *n).collect()
}

#[test]
fn two_smoltcp_hosts_transfer_100k_and_close() {
    let a_ip = Ipv4Addr::new(10, 0, 0, 1);
    let b_ip = Ipv4Addr::new(10, 0, 0, 2);
    let mut hosts = [SmolHost::new(a_ip, 24), SmolHost::new(b_ip, 24)];
    let client = hosts[0].add_tcp_socket(64 * 1024, 64 * 1024);
    let server = hosts[1].add_tcp_socket(64 * 1024, 64 * 1024);
    hosts[1].listen(server, 80);
    hosts[0].connect(client, (b_ip, 80), 49152);

    let data: Vec<u8> = (0..100 * 1024u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut sent = 0;
    let mut client_closed = false;
    let mut received = Vec::new();
    let mut server_closed = false;

    // (deliver_at, src, dst, tcp bytes); constant latency => FIFO.
    let mut wire: VecDeque<(u64, Ipv4Addr, Ipv4Addr, Vec<u8>)> = VecDeque::new();
    let mut trace: Vec<String> = Vec::new();
    let mut syns: Vec<Seg> = Vec::new();
    let mut packets = [0usize; 2];
    let mut time_wait_at = None;
    let mut client_closed_at = None;
    let mut server_closed_at = None;
    let mut now = 0u64;

    for _iter in 0..1_000_000 {
        // Deliver everything due.
        while wire.front().is_some_and(|p| p.0 <= now) {
            let (_, src, dst, bytes) = wire.pop_front().unwrap();
            let h = hosts.iter_mut().find(|h| h.ip() == dst).expect("unknown dst");
            h.receive_tcp(src, &bytes);
        }
        // Poll both hosts and put their output on the wire.
        for (i, h) in hosts.iter_mut().enumerate() {
            let src = h.ip();
            for (dst, bytes) in h.poll(now) {
                assert!(tcp_checksum_ok(src, dst, &bytes), "bad TCP checksum from smoltcp");
                let seg = parse(&bytes);
                trace.push(format!(
                    "{:>9.3}ms {} {}:{} -> {}:{} [{}] seq={} ack={} win={} len={} mss={:?} ws={:?} sackok={} ts={}",
                    now as f64 / MS as f64,
                    if i == 0 { "C" } else { "S" },
                    src,
                    seg.sport,
                    dst,
                    seg.dport,
                    flags_str(seg.flags),
                    seg.seq,
                    seg.ack,
                    seg.win,
                    seg.len,
                    seg.mss,
                    seg.wscale,
                    seg.sack_perm,
                    seg.timestamps
                ));
                if seg.flags & 0x02 != 0 {
                    syns.push(seg);
                }
                packets[i] += 1;
                wire.push_back((now + LATENCY_NS, src, dst, bytes));
            }
        }
        // Applications.
        {
            let s = hosts[0].tcp(client);
            if s.can_send() && sent < data.len() {
                sent += s.send_slice(&data[sent..]).unwrap();
            }
            if sent == data.len() && !client_closed {
                s.close();
                client_closed = true;
            }
            if s.state() == State::TimeWait && time_wait_at.is_none() {
                time_wait_at = Some(now);
            }
            if s.state() == State::Closed && client_closed && client_closed_at.is_none() {
                client_closed_at = Some(now);
            }
        }
        {
            let s = hosts[1].tcp(server);
            while s.can_recv() {
                s.recv(|buf| {
                    received.extend_from_slice(buf);
                    (buf.len(), ())
                })
                .unwrap();
            }
            if s.state() == State::CloseWait && !s.may_recv() && !server_closed {
                s.close();
                server_closed = true;
            }
            if s.state() == State::Closed && server_closed && server_closed_at.is_none() {
                server_closed_at = Some(now);
            }
        }
        // Advance virtual time.
        let next =
            [wire.front().map(|p| p.0), hosts[0].poll_at(now), hosts[1].poll_at(now)].into_iter().flatten().min();
        match next {
            Some(t) => now = now.max(t),
            None => break,
        }
    }

    let n = trace.len();
    for line in trace.iter().take(12) {
        println!("{line}");
    }
    println!("... (server segments:)");
    for line in trace.iter().filter(|l| l.contains(" S ")) {
        println!("{line}");
    }
    println!("...");
    for line in trace.iter().skip(n.saturating_sub(10)) {
        println!("{line}");
    }
    println!(
        "packets: client {} server {}; TIME_WAIT at {:?} ns, client Closed at {:?} ns, server Closed at {:?} ns",
        packets[0], packets[1], time_wait_at, client_closed_at, server_closed_at
    );

    assert_eq!(received.len(), data.len());
    assert!(received == data, "payload corrupted");
    assert_eq!(hosts[0].tcp(client).state(), State::Closed);
    assert_eq!(hosts[1].tcp(server).state(), State::Closed);
    assert!(wire.is_empty());

    // Handshake options smoltcp uses.
    assert_eq!(syns.len(), 2, "one SYN and one SYN-ACK expected");
    for syn in &syns {
        assert_eq!(syn.mss, Some(1460));
        assert!(syn.wscale.is_some());
        assert!(syn.sack_perm);
    }

    // TIME_WAIT lasts smoltcp's CLOSE_DELAY (10 s) on the client.
    let tw = time_wait_at.expect("client never entered TIME_WAIT");
    let closed = client_closed_at.expect("client never closed");
    assert!(closed - tw >= 10_000 * MS && closed - tw < 10_100 * MS, "TIME_WAIT took {} ns", closed - tw);
    assert!(server_closed_at.expect("server never closed") < closed);
}

/// Hand-crafted segments go through `receive_tcp`: a SYN to a closed port is
/// answered with RST|ACK; a SYN to a listener gets a SYN-ACK; an in-window
/// (but not exactly-at-RCV.NXT) RST sends the SYN-RECEIVED socket back to
/// LISTEN; a segment with a corrupted checksum is silently dropped.
#[test]
fn handcrafted_segments_syn_rst_and_bad_checksum() {
    use common::smol::build_tcp_segment;
    let peer = Ipv4Addr::new(192, 168, 7, 9); // outside the host's /24
    let host_ip = Ipv4Addr::new(10, 0, 0, 2);
    let mut h = SmolHost::new(host_ip, 24);
    let lst = h.add_tcp_socket(4096, 4096);
    h.listen(lst, 80);

    // SYN to closed port 81 -> RST|ACK acking ISN+1.
    h.receive_tcp(peer, &build_tcp_segment((peer, 5555), (host_ip, 81), 1000, 0, 0x02, 8192, &[]));
    let out = h.poll(0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, peer);
    let rst = parse(&out[0].1);
    assert!(tcp_checksum_ok(host_ip, peer, &out[0].1));
    assert_eq!(rst.flags, 0x14, "RST|ACK expected, got {}", flags_str(rst.flags));
    assert_eq!((rst.seq, rst.ack), (0, 1001));

    // Corrupted checksum: dropped, no reply, listener untouched.
    let mut bad = build_tcp_segment((peer, 5555), (host_ip, 80), 1000, 0, 0x02, 8192, &[]);
    bad[16] ^= 0xff;
    h.receive_tcp(peer, &bad);
    assert!(h.poll(1_000_000).is_empty());
    assert_eq!(h.tcp(lst).state(), State::Listen);

    // SYN to port 80 -> SYN-ACK (MSS 1460, no window scale/SACK since the SYN had none).
    h.receive_tcp(peer, &build_tcp_segment((peer, 5555), (host_ip, 80), 1000, 0, 0x02, 8192, &[]));
    let out = h.poll(2_000_000);
    assert_eq!(out.len(), 1);
    let synack = parse(&out[0].1);
    assert_eq!(synack.flags, 0x12);
    assert_eq!(synack.ack, 1001);
    assert_eq!(synack.mss, Some(1460));
    assert_eq!((synack.wscale, synack.sack_perm), (None, false));
    assert_eq!(h.tcp(lst).state(), State::SynReceived);
    // SYN-ACK retransmission is scheduled (RTO 1 s initially).
    assert_eq!(h.poll_at(2_000_000), Some(1_002_000_000));

    // In-window RST with seq != RCV.NXT is accepted (no RFC 5961 challenge ACK).
    h.receive_tcp(peer, &build_tcp_segment((peer, 5555), (host_ip, 80), 1001 + 100, 0, 0x04, 0, &[]));
    assert!(h.poll(3_000_000).is_empty());
    assert_eq!(h.tcp(lst).state(), State::Listen);
    assert_eq!(h.poll_at(3_000_000), None);
}
