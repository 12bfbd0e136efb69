//! Packet captures of a session, in the classic pcap format that Wireshark,
//! tshark and tcpdump read.
//!
//! Sans-IO: a function from a session's sent segments to the bytes of a
//! capture file. The REST route, the gRPC call and `tcplab lab run --pcap`
//! all build their capture here, from the event log (typed [`Event`]s for a
//! lab run in-process, the stored JSON events for a server session), so the
//! three can never disagree.
//!
//! One packet per `segment_sent` event: every segment *as its sender put it
//! on the wire*, including the ones the network then lost, dropped or
//! corrupted, so that the receiver's retransmissions show up in Wireshark's
//! TCP analysis exactly where the lab lost something. Each packet is
//! Ethernet II + IPv4 (no options, DF, TTL 64) + the TCP segment encoded by
//! the engine's own encoder ([`Segment::encode`]) with the IPv4
//! pseudo-header checksum; the IPv4 header checksum is computed here.
//! Timestamps are the virtual time of the send, in nanoseconds since the
//! session's start (the epoch, in Wireshark's absolute time view), with the
//! nanosecond-resolution pcap magic so no virtual nanosecond is rounded away.
//! MAC addresses are made up from the IPv4 addresses (`02:00:a:b:c:d`, a
//! locally administered unicast address), since the simulated network has no
//! link layer.

use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

use crate::engine::Segment;
use crate::sim::{Event, EventKind};

/// The media type of a pcap file (IANA registration `application/vnd.tcpdump.pcap`).
pub const CONTENT_TYPE: &str = "application/vnd.tcpdump.pcap";

/// Ethernet II header length.
const ETHERNET_LEN: usize = 14;
/// IPv4 header length without options.
const IPV4_LEN: usize = 20;
/// The largest IPv4 datagram (its total length is a 16-bit field).
const IPV4_MAX: usize = 65_535;
/// Snapshot length announced in the file header: a whole frame always fits.
const SNAPLEN: u32 = (ETHERNET_LEN + IPV4_MAX) as u32;

/// One segment as it left its sender: what a capture on the wire would see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// The segment's id in its world (as in events and `/segments`), for error messages.
    pub id: u64,
    /// Virtual time of the send, in nanoseconds.
    pub t_ns: u64,
    /// The sender's address.
    pub src: Ipv4Addr,
    /// The destination address.
    pub dst: Ipv4Addr,
    /// The segment, header and payload (its checksum is recomputed on encoding).
    pub segment: Segment,
}

/// Why a capture cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    /// A segment names a host whose address is unknown (and is no address itself).
    #[error("no IPv4 address known for host {0:?}")]
    UnknownHost(String),
    /// A segment does not fit one IPv4 datagram, or its options do not fit a header.
    #[error("segment {id} cannot be encoded: {message}")]
    Encode {
        /// The segment's id in its world.
        id: u64,
        /// What is wrong.
        message: String,
    },
    /// The pcap writer refused a record (only on nonsense like a time past 2106).
    #[error("writing the capture: {0}")]
    Write(String),
}

/// The segments sent in a typed event log, in order, with addresses from `resolve`.
///
/// `resolve` maps a host name to its address; a name it does not know is
/// tried as an address (a segment to an address no host has carries the
/// address as its `to`).
///
/// # Errors
/// [`PcapError::UnknownHost`] for a name that is neither.
pub fn from_events<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    resolve: impl Fn(&str) -> Option<Ipv4Addr>,
) -> Result<Vec<Captured>, PcapError> {
    let mut out = Vec::new();
    for event in events {
        if let EventKind::SegmentSent { segment, .. } = &event.kind {
            out.push(Captured {
                id: segment.id,
                t_ns: event.t_ns,
                src: address(&segment.from, &resolve)?,
                dst: address(&segment.to, &resolve)?,
                segment: segment.segment.clone(),
            });
        }
    }
    Ok(out)
}

fn address(name: &str, resolve: &impl Fn(&str) -> Option<Ipv4Addr>) -> Result<Ipv4Addr, PcapError> {
    resolve(name).or_else(|| name.parse().ok()).ok_or_else(|| PcapError::UnknownHost(name.to_string()))
}

/// A made-up MAC address for an IPv4 address: locally administered, unicast.
fn mac(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x00, a, b, c, d]
}

/// The Internet checksum (RFC 1071) of an IPv4 header whose checksum field is zero.
fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One Ethernet frame carrying the segment: Ethernet II, IPv4, TCP.
/// `ident` is the IPv4 identification field.
///
/// # Errors
/// [`PcapError::Encode`] when the options do not fit a TCP header or the
/// datagram exceeds 65,535 octets.
pub fn frame(captured: &Captured, ident: u16) -> Result<Vec<u8>, PcapError> {
    let encode_error = |message: String| PcapError::Encode { id: captured.id, message };
    let tcp = captured.segment.encode(captured.src, captured.dst).map_err(|e| encode_error(e.to_string()))?;
    let total = IPV4_LEN + tcp.len();
    let total_len = u16::try_from(total)
        .ok()
        .filter(|_| total <= IPV4_MAX)
        .ok_or_else(|| encode_error(format!("an IPv4 datagram of {total} octets exceeds 65535")))?;
    let mut out = Vec::with_capacity(ETHERNET_LEN + total);
    out.extend_from_slice(&mac(captured.dst));
    out.extend_from_slice(&mac(captured.src));
    out.extend_from_slice(&0x0800u16.to_be_bytes()); // EtherType IPv4
    let ip_start = out.len();
    out.push(0x45); // version 4, IHL 5 words
    out.push(0); // DSCP/ECN
    out.extend_from_slice(&total_len.to_be_bytes());
    out.extend_from_slice(&ident.to_be_bytes());
    out.extend_from_slice(&0x4000u16.to_be_bytes()); // DF, fragment offset 0
    out.push(64); // TTL
    out.push(6); // protocol TCP
    out.extend_from_slice(&[0, 0]); // checksum, filled below
    out.extend_from_slice(&captured.src.octets());
    out.extend_from_slice(&captured.dst.octets());
    let sum = ipv4_header_checksum(&out[ip_start..ip_start + IPV4_LEN]);
    out[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&tcp);
    Ok(out)
}

/// The bytes of a pcap file (nanosecond timestamps, little-endian, Ethernet
/// link type) holding one packet per captured segment, in the given order.
///
/// # Errors
/// [`PcapError::Encode`] for a segment that cannot be put in a frame.
pub fn build(captured: &[Captured]) -> Result<Vec<u8>, PcapError> {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: SNAPLEN,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        endianness: Endianness::Little,
    };
    let write_error = |e: pcap_file::PcapError| PcapError::Write(e.to_string());
    let mut writer = PcapWriter::with_header(Vec::new(), header).map_err(write_error)?;
    for (i, c) in captured.iter().enumerate() {
        // The identification only needs to differ between nearby datagrams.
        let data = frame(c, (i & 0xffff) as u16)?;
        let packet =
            PcapPacket { timestamp: Duration::from_nanos(c.t_ns), orig_len: data.len() as u32, data: Cow::Owned(data) };
        writer.write_packet(&packet).map_err(write_error)?;
    }
    Ok(writer.into_writer())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Flags, SeqNumber, TcpOption};
    use bytes::Bytes;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn syn() -> Captured {
        Captured {
            id: 1,
            t_ns: 1_500_000_123,
            src: A,
            dst: B,
            segment: Segment {
                src_port: 40000,
                dst_port: 80,
                seq: SeqNumber(300),
                flags: Flags::SYN,
                window: 65535,
                options: vec![TcpOption::Mss { value: 1460 }],
                ..Segment::default()
            },
        }
    }

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_be_bytes([b[i], b[i + 1]])
    }

    fn u32_le(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    #[test]
    fn frame_has_ethernet_ipv4_and_a_tcp_segment_that_verifies() {
        let c = syn();
        let f = frame(&c, 7).expect("frame");
        assert_eq!(&f[0..6], &[2, 0, 10, 0, 0, 2], "destination MAC from B's address");
        assert_eq!(&f[6..12], &[2, 0, 10, 0, 0, 1], "source MAC from A's address");
        assert_eq!(u16_at(&f, 12), 0x0800);
        let ip = &f[14..34];
        assert_eq!(ip[0], 0x45);
        assert_eq!(usize::from(u16_at(ip, 2)), f.len() - 14, "IPv4 total length");
        assert_eq!(u16_at(ip, 4), 7, "identification");
        assert_eq!(ip[9], 6, "protocol TCP");
        assert_eq!(&ip[12..16], &A.octets());
        assert_eq!(&ip[16..20], &B.octets());
        // A correct header sums (checksum included) to 0xffff, i.e. recomputes to 0.
        assert_eq!(ipv4_header_checksum(ip), 0, "IPv4 header checksum verifies");
        let tcp = Bytes::copy_from_slice(&f[34..]);
        let decoded = Segment::decode(&tcp, A, B).expect("TCP checksum verifies with the pseudo-header");
        assert_eq!(decoded.seq, SeqNumber(300));
        assert_eq!(decoded.flags, Flags::SYN);
        assert_eq!(decoded.mss(), Some(1460));
    }

    #[test]
    fn ipv4_checksum_matches_rfc_1071_example() {
        // The header of a well-known example datagram (checksum zeroed): 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&header), 0xb861);
    }

    #[test]
    fn file_has_nanosecond_header_and_one_record_per_segment() {
        let mut second = syn();
        second.t_ns = 2_000_000_000;
        second.segment.payload = Bytes::from_static(b"hello");
        let bytes = build(&[syn(), second.clone()]).expect("build");
        assert_eq!(u32_le(&bytes, 0), 0xa1b2_3c4d, "nanosecond pcap magic");
        assert_eq!(u32_le(&bytes, 16), SNAPLEN);
        assert_eq!(u32_le(&bytes, 20), 1, "LINKTYPE_ETHERNET");
        let rec = 24;
        assert_eq!(u32_le(&bytes, rec), 1, "seconds of 1.500000123 s");
        assert_eq!(u32_le(&bytes, rec + 4), 500_000_123, "nanoseconds of 1.500000123 s");
        let len1 = u32_le(&bytes, rec + 8) as usize;
        assert_eq!(len1, frame(&syn(), 0).expect("frame").len());
        assert_eq!(u32_le(&bytes, rec + 12) as usize, len1, "orig_len = incl_len");
        let rec2 = rec + 16 + len1;
        assert_eq!(u32_le(&bytes, rec2), 2);
        assert_eq!(u32_le(&bytes, rec2 + 4), 0);
        let len2 = u32_le(&bytes, rec2 + 8) as usize;
        assert_eq!(len2, 14 + 20 + 24 + 5);
        assert_eq!(bytes.len(), rec2 + 16 + len2, "nothing after the second record");
    }

    #[test]
    fn json_and_typed_events_give_the_same_capture() {
        use crate::sim::WireSegment;
        let c = syn();
        let mut seg = c.segment.clone();
        seg.payload = Bytes::from_static(b"xyz");
        let event = Event {
            seq: 4,
            t_ns: c.t_ns,
            kind: EventKind::SegmentSent {
                connection: Some(1),
                segment: WireSegment {
                    id: 3,
                    from: "A".into(),
                    to: "B".into(),
                    segment: seg,
                    retransmission: false,
                    injected: false,
                },
            },
        };
        let resolve = |name: &str| match name {
            "A" => Some(A),
            "B" => Some(B),
            _ => None,
        };
        let typed = from_events([&event], resolve).expect("typed");
        // The event as stored (its JSON) reads back into the same capture.
        let stored: Event = serde_json::from_value(serde_json::to_value(&event).expect("json")).expect("reads back");
        assert_eq!(typed, from_events([&stored], resolve).expect("from the stored event"));
        assert_eq!(typed[0].segment.payload, Bytes::from_static(b"xyz"));
    }

    #[test]
    fn unknown_hosts_are_an_error_and_addresses_resolve_themselves() {
        let event = serde_json::json!({
            "seq": 1, "t_ns": 0, "kind": "segment_sent",
            "segment": {"id": 1, "from": "A", "to": "192.0.2.9", "src_port": 1, "dst_port": 2, "seq": 0, "ack": 0,
                        "flags": ["RST"], "window": 0, "options": [], "len": 0, "retransmission": false, "injected": false}
        });
        let event: Event = serde_json::from_value(event).expect("a stored event");
        let c = from_events([&event], |n| (n == "A").then_some(A)).expect("ok");
        assert_eq!(c[0].dst, Ipv4Addr::new(192, 0, 2, 9));
        assert_eq!(from_events([&event], |_| None), Err(PcapError::UnknownHost("A".into())));
        let other: Event = serde_json::from_value(serde_json::json!({
            "seq": 2, "t_ns": 0, "kind": "timer_fired", "host": "A", "timer": "retransmit"
        }))
        .expect("a timer event");
        assert_eq!(from_events([&other], |_| None), Ok(Vec::new()));
    }

    #[test]
    fn oversized_datagrams_are_refused_not_truncated() {
        let mut c = syn();
        c.segment.payload = Bytes::from(vec![0u8; 70_000]);
        assert!(matches!(build(&[c]), Err(PcapError::Encode { id: 1, .. })));
    }
}
