//! Feeds arbitrary bytes to the segment decoder.
//!
//! Decoding must never panic; whatever decodes must re-encode (with a fresh
//! checksum) and decode again to the same segment, checksum aside; and a
//! verified decode must agree with an unverified one.

#![no_main]

use std::net::Ipv4Addr;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tcplab::engine::segment::{DecodeError, Segment};

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let unverified = Segment::decode_unverified(&bytes);
    match Segment::decode(&bytes, SRC, DST) {
        Ok(seg) => assert_eq!(Ok(seg), unverified),
        Err(DecodeError::BadChecksum { .. }) => assert!(unverified.is_ok()),
        Err(e) => assert_eq!(Err(e), unverified),
    }
    let Ok(seg) = unverified else { return };

    let wire = seg.encode(SRC, DST).expect("a decoded segment's options fit its header");
    let again = Segment::decode(&wire, SRC, DST).expect("an encoded segment decodes");
    assert_eq!(again, Segment { checksum: again.checksum, ..seg.clone() });
    // Encoding is canonical: the re-decoded segment encodes to the same bytes.
    assert_eq!(again.encode(SRC, DST).unwrap(), wire);
    assert_eq!(again.payload, seg.payload);
});
