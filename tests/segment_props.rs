//! Property tests for segment encoding and decoding: every segment survives a
//! round trip, no byte string makes the decoder panic, and no single flipped
//! bit gets past it.

use std::net::Ipv4Addr;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use smoltcp::wire::{IpAddress, TcpPacket};
use tcplab::engine::segment::{DecodeError, Flags, Segment, TcpOption};
use tcplab::engine::seq::SeqNumber;

/// Room for options in a TCP header (60 - 20 octets).
const MAX_OPTIONS_LEN: usize = 40;

/// Whether `decode` would read a `Raw` option of this kind and data length
/// back as `Raw` (rather than as the known option it happens to spell).
fn stays_raw(kind: u8, len: usize) -> bool {
    match kind {
        0 | 1 => false,
        2 => len != 2,
        3 => len != 1,
        4 => len != 0,
        5 => len == 0 || len % 8 != 0,
        8 => len != 8,
        _ => true,
    }
}

/// Any option except EOL (which ends the list, see [`options`]), in the form
/// `decode` produces: a `Raw` option never spells a valid known option, and
/// a `Sack` has at least one block (an empty one decodes as `Raw`).
fn option() -> impl Strategy<Value = TcpOption> {
    prop_oneof![
        Just(TcpOption::Nop),
        any::<u16>().prop_map(|value| TcpOption::Mss { value }),
        any::<u8>().prop_map(|value| TcpOption::WindowScale { value }),
        Just(TcpOption::SackPermitted),
        prop::collection::vec(any::<(u32, u32)>(), 1..=4).prop_map(|blocks| TcpOption::Sack { blocks }),
        any::<(u32, u32)>().prop_map(|(val, ecr)| TcpOption::Timestamps { val, ecr }),
        (2..=u8::MAX, prop::collection::vec(any::<u8>(), 0..=MAX_OPTIONS_LEN - 2))
            .prop_filter("spells a known option", |(kind, data)| stays_raw(*kind, data.len()))
            .prop_map(|(kind, data)| TcpOption::Raw { kind, data }),
    ]
}

/// An option list that fits the header, in the canonical form `decode` returns.
///
/// `encode` pads the options with zero octets up to a 32-bit boundary, and a
/// zero octet is EOL, so `decode` reads that padding back as a trailing
/// `TcpOption::Eol` (and stops there). A list whose length is not a multiple of
/// 4 therefore only round-trips if it already ends with that EOL; appending it
/// adds one octet, which still fits because the padding had at least one. EOL
/// never appears anywhere else, since decode ignores whatever follows one.
fn options() -> impl Strategy<Value = Vec<TcpOption>> {
    prop::collection::vec(option(), 0..=12).prop_map(|all| {
        let mut options = Vec::new();
        let mut len = 0;
        for option in all {
            if len + option.wire_len() <= MAX_OPTIONS_LEN {
                len += option.wire_len();
                options.push(option);
            }
        }
        if len % 4 != 0 {
            options.push(TcpOption::Eol);
        }
        options
    })
}

prop_compose! {
    fn segment()(
        (src_port, dst_port) in any::<(u16, u16)>(),
        (seq, ack) in any::<(u32, u32)>(),
        reserved in 0..16u8,
        flags in any::<u8>(),
        (window, urgent) in any::<(u16, u16)>(),
        options in options(),
        payload in prop::collection::vec(any::<u8>(), 0..2000),
    ) -> Segment {
        Segment {
            src_port,
            dst_port,
            seq: SeqNumber(seq),
            ack: SeqNumber(ack),
            reserved,
            flags: Flags(flags),
            window,
            checksum: 0,
            urgent,
            options,
            payload: Bytes::from(payload),
        }
    }
}

fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

/// RFC 1071 over pseudo-header and segment, written independently of tcplab's.
fn reference_checksum(src: Ipv4Addr, dst: Ipv4Addr, tcp: &[u8]) -> u16 {
    let mut data = [&src.octets()[..], &dst.octets(), &[0, 6], &(tcp.len() as u16).to_be_bytes()].concat();
    data.extend_from_slice(tcp);
    if data.len() % 2 == 1 {
        data.push(0);
    }
    let mut sum: u32 = data.chunks(2).map(|p| u32::from(u16::from_be_bytes([p[0], p[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity(seg in segment(), src in ip(), dst in ip()) {
        let wire = seg.encode(src, dst).unwrap();
        let header_len = usize::from(seg.data_offset()) * 4;
        prop_assert_eq!(wire.len(), header_len + seg.payload.len());
        prop_assert_eq!(usize::from(wire[12] >> 4) * 4, header_len);

        let decoded = Segment::decode(&wire, src, dst).unwrap();
        // The checksum is the one field encode computes rather than copies:
        // take it from the decoded value, after checking it independently.
        let mut zeroed = wire.to_vec();
        zeroed[16..18].fill(0);
        prop_assert_eq!(decoded.checksum, reference_checksum(src, dst, &zeroed));
        prop_assert_eq!(&decoded, &Segment { checksum: decoded.checksum, ..seg.clone() });
        prop_assert_eq!(Segment::decode_unverified(&wire), Ok(decoded.clone()));
        prop_assert_eq!(decoded.encode(src, dst).unwrap(), wire.clone());

        // A second implementation reads the same header.
        let packet = TcpPacket::new_checked(&wire[..]).unwrap();
        prop_assert!(packet.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)));
        prop_assert_eq!(packet.src_port(), seg.src_port);
        prop_assert_eq!(packet.dst_port(), seg.dst_port);
        prop_assert_eq!(packet.seq_number().0 as u32, seg.seq.0);
        prop_assert_eq!(packet.ack_number().0 as u32, seg.ack.0);
        prop_assert_eq!(packet.window_len(), seg.window);
        prop_assert_eq!(packet.urgent_at(), seg.urgent);
        prop_assert_eq!(packet.syn(), seg.flags.contains(Flags::SYN));
        prop_assert_eq!(packet.fin(), seg.flags.contains(Flags::FIN));
        prop_assert_eq!(packet.payload(), &seg.payload[..]);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        raw in prop::collection::vec(any::<u8>(), 0..200),
        src in ip(),
        dst in ip(),
    ) {
        let bytes = Bytes::from(raw);
        let unverified = Segment::decode_unverified(&bytes);
        match Segment::decode(&bytes, src, dst) {
            Ok(seg) => prop_assert_eq!(Ok(seg), unverified.clone()),
            Err(DecodeError::BadChecksum { .. }) => prop_assert!(unverified.is_ok()),
            Err(e) => prop_assert_eq!(Err(e), unverified.clone()),
        }
        // Whatever decodes re-encodes (to canonical bytes) and decodes the same.
        if let Ok(seg) = unverified {
            let wire = seg.encode(src, dst).unwrap();
            let again = Segment::decode(&wire, src, dst).unwrap();
            prop_assert_eq!(again.clone(), Segment { checksum: again.checksum, ..seg });
        }
    }

    #[test]
    fn a_single_flipped_bit_never_decodes(
        seg in segment(),
        src in ip(),
        dst in ip(),
        bit in any::<Index>(),
    ) {
        let mut wire = seg.encode(src, dst).unwrap().to_vec();
        let bit = bit.index(wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
        let wire = Bytes::from(wire);
        match Segment::decode(&wire, src, dst) {
            Ok(seg) => prop_assert!(false, "bit {} flipped, still decoded: {:?}", bit, seg),
            // A flip in the data offset or an option may break the structure,
            // which decode reports before looking at the checksum.
            Err(DecodeError::BadChecksum { .. }) => {
                prop_assert!(Segment::decode_unverified(&wire).is_ok());
            }
            Err(e) => prop_assert_eq!(Segment::decode_unverified(&wire), Err(e)),
        }
    }
}
