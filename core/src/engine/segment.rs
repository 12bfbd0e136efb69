//! TCP segments as they travel on the wire (RFC 9293 section 3.1), and their
//! encoding to and decoding from bytes with the IPv4 pseudo-header checksum.
//!
//! The simulated network carries encoded bytes, not structs, so that a flipped
//! bit is caught by the receiver's checksum exactly as on a real link, and so
//! that another implementation (smoltcp in the tests, Wireshark on a capture)
//! can read what tcplab sends.

use std::fmt;
use std::net::Ipv4Addr;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::seq::SeqNumber;

/// Length of a TCP header without options, in octets.
pub const HEADER_LEN: usize = 20;
/// Largest header (data offset 15 words), in octets.
pub const MAX_HEADER_LEN: usize = 60;

/// The eight control bits of RFC 9293's header (plus nothing else): a bit set
/// with names, so that events and JSON can list them as the RFC spells them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: Flags = Flags(0x80);
    /// ECN-Echo (RFC 3168).
    pub const ECE: Flags = Flags(0x40);
    /// Urgent pointer field is significant.
    pub const URG: Flags = Flags(0x20);
    /// Acknowledgment field is significant.
    pub const ACK: Flags = Flags(0x10);
    /// Push function.
    pub const PSH: Flags = Flags(0x08);
    /// Reset the connection.
    pub const RST: Flags = Flags(0x04);
    /// Synchronize sequence numbers.
    pub const SYN: Flags = Flags(0x02);
    /// No more data from sender.
    pub const FIN: Flags = Flags(0x01);
    /// No flag at all.
    pub const NONE: Flags = Flags(0);

    /// Names in header order, as JSON and the ladder diagram print them.
    pub const NAMES: [(Flags, &'static str); 8] = [
        (Flags::CWR, "CWR"),
        (Flags::ECE, "ECE"),
        (Flags::URG, "URG"),
        (Flags::ACK, "ACK"),
        (Flags::PSH, "PSH"),
        (Flags::RST, "RST"),
        (Flags::SYN, "SYN"),
        (Flags::FIN, "FIN"),
    ];

    /// `true` when every bit of `other` is set in `self`.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The names of the set bits, in header order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES.into_iter().filter(move |(f, _)| self.contains(*f)).map(|(_, n)| n)
    }

    /// Parses one flag name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Flags> {
        Self::NAMES.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(f, _)| *f)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Flags {
    /// `SYN+ACK` style, `-` for none: the label on a ladder-diagram arrow.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The handshake reads better as SYN+ACK and FIN+ACK than in header order.
        let order = [Flags::SYN, Flags::FIN, Flags::RST, Flags::PSH, Flags::ACK, Flags::URG, Flags::ECE, Flags::CWR];
        let mut first = true;
        for flag in order {
            if self.contains(flag) {
                if !first {
                    f.write_str("+")?;
                }
                first = false;
                let name = Self::NAMES.iter().find(|(g, _)| *g == flag).map(|(_, n)| *n);
                f.write_str(name.unwrap_or("?"))?;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

impl Serialize for Flags {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        let mut flags = Flags::NONE;
        for name in names {
            flags |= Flags::from_name(&name).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown flag `{name}` (expected one of CWR ECE URG ACK PSH RST SYN FIN)"
                ))
            })?;
        }
        Ok(flags)
    }
}

/// A TCP option (RFC 9293 section 3.2, RFC 7323, RFC 2018). Options the engine
/// does not know, or known kinds with a length the RFCs do not allow, are kept
/// raw so that a crafted segment survives a round trip unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TcpOption {
    /// End of option list (kind 0); what follows is padding.
    Eol,
    /// No-operation (kind 1), used to align options.
    Nop,
    /// Maximum segment size the sender can receive (kind 2).
    Mss {
        /// The MSS in octets.
        value: u16,
    },
    /// Window scale shift count (kind 3, RFC 7323).
    #[serde(rename = "wscale")]
    WindowScale {
        /// The shift count.
        value: u8,
    },
    /// SACK permitted (kind 4, RFC 2018).
    SackPermitted,
    /// SACK blocks (kind 5, RFC 2018): left and right edges.
    Sack {
        /// The blocks, each `[left, right)`.
        blocks: Vec<(u32, u32)>,
    },
    /// Timestamps (kind 8, RFC 7323).
    Timestamps {
        /// TSval.
        val: u32,
        /// TSecr.
        ecr: u32,
    },
    /// Any other option, kept as kind and bytes (its length is `data.len() + 2`).
    Raw {
        /// The option kind.
        #[serde(rename = "type")]
        kind: u8,
        /// The option's bytes after kind and length.
        #[serde(rename = "data_base64", with = "base64_bytes")]
        data: Vec<u8>,
    },
}

impl TcpOption {
    /// Encoded length in octets.
    pub fn wire_len(&self) -> usize {
        match self {
            TcpOption::Eol | TcpOption::Nop => 1,
            TcpOption::Mss { .. } => 4,
            TcpOption::WindowScale { .. } => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack { blocks } => 2 + 8 * blocks.len(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Raw { data, .. } => 2 + data.len(),
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            TcpOption::Eol => out.push(0),
            TcpOption::Nop => out.push(1),
            TcpOption::Mss { value } => {
                out.extend_from_slice(&[2, 4]);
                out.extend_from_slice(&value.to_be_bytes());
            }
            TcpOption::WindowScale { value } => out.extend_from_slice(&[3, 3, *value]),
            TcpOption::SackPermitted => out.extend_from_slice(&[4, 2]),
            TcpOption::Sack { blocks } => {
                out.extend_from_slice(&[5, (2 + 8 * blocks.len()) as u8]);
                for (left, right) in blocks {
                    out.extend_from_slice(&left.to_be_bytes());
                    out.extend_from_slice(&right.to_be_bytes());
                }
            }
            TcpOption::Timestamps { val, ecr } => {
                out.extend_from_slice(&[8, 10]);
                out.extend_from_slice(&val.to_be_bytes());
                out.extend_from_slice(&ecr.to_be_bytes());
            }
            TcpOption::Raw { kind, data } => {
                out.push(*kind);
                out.push((2 + data.len()) as u8);
                out.extend_from_slice(data);
            }
        }
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("data_base64: {e}")))
    }
}

/// One TCP segment: every header field of RFC 9293 section 3.1 plus payload.
///
/// `data_offset` is not stored: it is always the header length implied by
/// `options` (padded to 32-bit words), so a segment cannot disagree with itself.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Segment {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// SEG.SEQ: the first sequence number of this segment (the SYN's, if set).
    pub seq: SeqNumber,
    /// SEG.ACK: the next sequence number the sender expects (valid with ACK).
    pub ack: SeqNumber,
    /// The four reserved bits between data offset and flags (should be zero).
    pub reserved: u8,
    /// Control bits.
    pub flags: Flags,
    /// SEG.WND: the receive window the sender advertises.
    pub window: u16,
    /// The checksum as found on the wire by [`Segment::decode`]; ignored (and
    /// recomputed) by [`Segment::encode`].
    pub checksum: u16,
    /// SEG.UP: the urgent pointer (meaningful with URG).
    pub urgent: u16,
    /// Options in wire order.
    pub options: Vec<TcpOption>,
    /// The data octets.
    pub payload: Bytes,
}

/// Why a byte string is not a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than 20 octets.
    #[error("segment too short: {0} octets, a TCP header needs 20")]
    TooShort(usize),
    /// The data offset points before the end of the fixed header or past the end of the bytes.
    #[error("bad data offset {offset} words for a {len}-octet segment")]
    BadDataOffset {
        /// The data offset field, in 32-bit words.
        offset: u8,
        /// The segment's length in octets.
        len: usize,
    },
    /// An option's length byte is below 2 or runs past the header.
    #[error("malformed option kind {kind} at header offset {at}")]
    BadOption {
        /// The option kind.
        kind: u8,
        /// Offset of the option within the header.
        at: usize,
    },
    /// The checksum does not match the pseudo-header and bytes.
    #[error("bad checksum: found {found:#06x}, computed {computed:#06x}")]
    BadChecksum {
        /// The checksum field on the wire.
        found: u16,
        /// The checksum the bytes should have carried.
        computed: u16,
    },
    /// Too many options to fit a 60-octet header (encode side).
    #[error("options need {0} octets, a TCP header holds at most 40")]
    OptionsTooLong(usize),
}

impl Segment {
    /// SEG.LEN: octets of data plus one for SYN and one for FIN (RFC 9293 section 3.4).
    pub fn seg_len(&self) -> u32 {
        self.payload.len() as u32
            + u32::from(self.flags.contains(Flags::SYN))
            + u32::from(self.flags.contains(Flags::FIN))
    }

    /// The header length in 32-bit words, as the data offset field carries it.
    pub fn data_offset(&self) -> u8 {
        let options: usize = self.options.iter().map(TcpOption::wire_len).sum();
        (HEADER_LEN + options).div_ceil(4).min(15) as u8
    }

    /// The MSS option's value, if the segment carries one.
    pub fn mss(&self) -> Option<u16> {
        self.options.iter().find_map(|o| match o {
            TcpOption::Mss { value } => Some(*value),
            _ => None,
        })
    }

    /// The Window Scale option's shift, if the segment carries one (RFC 7323 section 2.2).
    pub fn window_scale(&self) -> Option<u8> {
        self.options.iter().find_map(|o| match o {
            TcpOption::WindowScale { value } => Some(*value),
            _ => None,
        })
    }

    /// The Timestamps option's TSval and TSecr, if the segment carries one (RFC 7323 section 3).
    pub fn timestamps(&self) -> Option<(u32, u32)> {
        self.options.iter().find_map(|o| match o {
            TcpOption::Timestamps { val, ecr } => Some((*val, *ecr)),
            _ => None,
        })
    }

    /// Whether the segment offers SACK (RFC 2018 section 2's SACK-permitted option).
    pub fn sack_permitted(&self) -> bool {
        self.options.contains(&TcpOption::SackPermitted)
    }

    /// Encodes the segment with a correct checksum for the given IPv4 pseudo-header.
    ///
    /// # Errors
    /// [`DecodeError::OptionsTooLong`] when the options exceed 40 octets.
    pub fn encode(&self, src_ip: Ipv4Addr, dst_ip: Ipv4Addr) -> Result<Bytes, DecodeError> {
        let mut out = Vec::with_capacity(MAX_HEADER_LEN + self.payload.len());
        self.encode_header(&mut out)?;
        out.extend_from_slice(&self.payload);
        let sum = checksum(src_ip, dst_ip, &out);
        out[16..18].copy_from_slice(&sum.to_be_bytes());
        Ok(Bytes::from(out))
    }

    /// The checksum [`Segment::encode`] would put in the header, computed
    /// without building the encoded bytes (one pass over the payload, no copy).
    ///
    /// # Errors
    /// [`DecodeError::OptionsTooLong`] when the options exceed 40 octets.
    pub fn wire_checksum(&self, src_ip: Ipv4Addr, dst_ip: Ipv4Addr) -> Result<u16, DecodeError> {
        if self.options.is_empty() {
            // Most segments: the 20-octet header on the stack, no allocation.
            let mut h = [0u8; HEADER_LEN];
            h[0..2].copy_from_slice(&self.src_port.to_be_bytes());
            h[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
            h[4..8].copy_from_slice(&self.seq.0.to_be_bytes());
            h[8..12].copy_from_slice(&self.ack.0.to_be_bytes());
            h[12] = ((HEADER_LEN / 4) as u8) << 4 | (self.reserved & 0x0f);
            h[13] = self.flags.0;
            h[14..16].copy_from_slice(&self.window.to_be_bytes());
            h[18..20].copy_from_slice(&self.urgent.to_be_bytes());
            let sum = sum_words(
                sum_words(pseudo_header_sum(src_ip, dst_ip, HEADER_LEN + self.payload.len()), &h),
                &self.payload,
            );
            return Ok(!fold(sum));
        }
        let mut header = Vec::with_capacity(MAX_HEADER_LEN);
        self.encode_header(&mut header)?;
        // The header is a whole number of 32-bit words, so the payload's sum
        // continues it at an even offset.
        let sum = sum_words(
            sum_words(pseudo_header_sum(src_ip, dst_ip, header.len() + self.payload.len()), &header),
            &self.payload,
        );
        Ok(!fold(sum))
    }

    /// Octets on the wire: header with options and padding, plus payload.
    pub fn wire_len(&self) -> usize {
        let options_len: usize = self.options.iter().map(TcpOption::wire_len).sum();
        (HEADER_LEN + options_len).div_ceil(4) * 4 + self.payload.len()
    }

    /// `true` when decoding this segment's encoding gives it back unchanged
    /// (bar the checksum field): its options fill the header exactly, so no
    /// padding would come back as extra EOL options.
    pub fn encodes_exactly(&self) -> bool {
        let options_len: usize = self.options.iter().map(TcpOption::wire_len).sum();
        // Decoding stops at an EOL: nothing may follow one.
        let eol_last =
            self.options.iter().position(|o| *o == TcpOption::Eol).is_none_or(|at| at + 1 == self.options.len());
        options_len % 4 == 0 && options_len <= MAX_HEADER_LEN - HEADER_LEN && eol_last
    }

    /// Writes the header and options (padded, checksum zero) to `out`.
    fn encode_header(&self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let options_len: usize = self.options.iter().map(TcpOption::wire_len).sum();
        if options_len > MAX_HEADER_LEN - HEADER_LEN {
            return Err(DecodeError::OptionsTooLong(options_len));
        }
        let header_len = (HEADER_LEN + options_len).div_ceil(4) * 4;
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&self.seq.0.to_be_bytes());
        out.extend_from_slice(&self.ack.0.to_be_bytes());
        out.push(((header_len / 4) as u8) << 4 | (self.reserved & 0x0f));
        out.push(self.flags.0);
        out.extend_from_slice(&self.window.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.urgent.to_be_bytes());
        for option in &self.options {
            option.encode_into(out);
        }
        out.resize(header_len, 0);
        Ok(())
    }

    /// Decodes and verifies a segment. The payload shares `bytes`' buffer.
    ///
    /// # Errors
    /// A [`DecodeError`] naming what is wrong; never panics, whatever the input.
    pub fn decode(bytes: &Bytes, src_ip: Ipv4Addr, dst_ip: Ipv4Addr) -> Result<Segment, DecodeError> {
        let segment = Self::decode_unverified(bytes)?;
        let computed = checksum(src_ip, dst_ip, bytes);
        if computed != 0 {
            // Summing a correct segment including its checksum field gives 0;
            // report the value the field should have had.
            let mut zeroed = bytes.to_vec();
            zeroed[16] = 0;
            zeroed[17] = 0;
            return Err(DecodeError::BadChecksum {
                found: segment.checksum,
                computed: checksum(src_ip, dst_ip, &zeroed),
            });
        }
        Ok(segment)
    }

    /// Decodes without checking the checksum (for captures and fuzzing).
    ///
    /// # Errors
    /// A [`DecodeError`] for a short header, bad data offset or malformed option.
    pub fn decode_unverified(bytes: &Bytes) -> Result<Segment, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::TooShort(bytes.len()));
        }
        let b = &bytes[..];
        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let offset = b[12] >> 4;
        let header_len = usize::from(offset) * 4;
        if header_len < HEADER_LEN || header_len > b.len() {
            return Err(DecodeError::BadDataOffset { offset, len: b.len() });
        }
        let options = decode_options(&b[HEADER_LEN..header_len])?;
        Ok(Segment {
            src_port: be16(0),
            dst_port: be16(2),
            seq: SeqNumber(be32(4)),
            ack: SeqNumber(be32(8)),
            reserved: b[12] & 0x0f,
            flags: Flags(b[13]),
            window: be16(14),
            checksum: be16(16),
            urgent: be16(18),
            options,
            payload: bytes.slice(header_len..),
        })
    }
}

fn decode_options(mut rest: &[u8]) -> Result<Vec<TcpOption>, DecodeError> {
    let mut options = Vec::new();
    let mut at = HEADER_LEN;
    while let Some(&kind) = rest.first() {
        match kind {
            0 => {
                options.push(TcpOption::Eol);
                break;
            }
            1 => {
                options.push(TcpOption::Nop);
                rest = &rest[1..];
                at += 1;
                continue;
            }
            _ => {}
        }
        let len = match rest.get(1) {
            Some(&len) if len >= 2 && usize::from(len) <= rest.len() => usize::from(len),
            _ => return Err(DecodeError::BadOption { kind, at }),
        };
        let data = &rest[2..len];
        let be32 = |d: &[u8], i: usize| u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
        let option = match (kind, data.len()) {
            (2, 2) => TcpOption::Mss { value: u16::from_be_bytes([data[0], data[1]]) },
            (3, 1) => TcpOption::WindowScale { value: data[0] },
            (4, 0) => TcpOption::SackPermitted,
            (5, n) if n > 0 && n % 8 == 0 => {
                TcpOption::Sack { blocks: data.chunks_exact(8).map(|c| (be32(c, 0), be32(c, 4))).collect() }
            }
            (8, 8) => TcpOption::Timestamps { val: be32(data, 0), ecr: be32(data, 4) },
            _ => TcpOption::Raw { kind, data: data.to_vec() },
        };
        options.push(option);
        rest = &rest[len..];
        at += len;
    }
    Ok(options)
}

/// The Internet checksum of a TCP segment with its IPv4 pseudo-header (RFC 9293 section 3.1).
///
/// Over a segment whose checksum field is zero it returns the value to put
/// there; over a segment carrying a correct checksum it returns 0.
pub fn checksum(src_ip: Ipv4Addr, dst_ip: Ipv4Addr, tcp: &[u8]) -> u16 {
    !fold(sum_words(pseudo_header_sum(src_ip, dst_ip, tcp.len()), tcp))
}

/// The IPv4 pseudo-header's share of the sum (RFC 9293 section 3.1).
fn pseudo_header_sum(src_ip: Ipv4Addr, dst_ip: Ipv4Addr, tcp_len: usize) -> u128 {
    let words = (u64::from(u32::from(src_ip)) << 32) | u64::from(u32::from(dst_ip));
    u128::from(words) + 6 + tcp_len as u128
}

/// Adds `data` to a running one's complement sum as big-endian 64-bit words
/// (RFC 1071: the sum may be taken in any word size and folded at the end).
/// A `u128` cannot overflow here: it would take 2^64 words.
fn sum_words(sum: u128, data: &[u8]) -> u128 {
    // RFC 1071: the ones' complement sum is independent of byte order, so
    // sum native-endian 32-bit words into 64-bit lanes (which the compiler
    // vectorises; no carry is lost before 2^32 words), fold to 16 bits and
    // swap back to network order once at the end. A 16-bit value adds into
    // the wide big-endian sum as its words would, because 2^16 = 1 in
    // ones' complement arithmetic.
    const LANES: usize = 8;
    let mut lanes = [0u64; LANES];
    let mut blocks = data.chunks_exact(4 * LANES);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
        }
    }
    let mut acc: u64 = lanes.iter().sum();
    let mut words = blocks.remainder().chunks_exact(4);
    for word in &mut words {
        acc += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
    }
    // The tail, zero-padded on the right to a whole word.
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut last = [0u8; 4];
        last[..tail.len()].copy_from_slice(tail);
        acc += u64::from(u32::from_ne_bytes(last));
    }
    let native = fold(u128::from(acc));
    let network = if cfg!(target_endian = "little") { native.swap_bytes() } else { native };
    sum + u128::from(network)
}

/// Folds a wide sum to 16 bits with end-around carries.
fn fold(sum: u128) -> u16 {
    let mut s = (sum as u64 as u128) + (sum >> 64);
    s = (s & 0xffff_ffff_ffff_ffff) + (s >> 64);
    let mut s = s as u64;
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}->{} {} seq={} ack={} len={} win={}",
            self.src_port,
            self.dst_port,
            self.flags,
            self.seq,
            self.ack,
            self.payload.len(),
            self.window
        )?;
        if !self.options.is_empty() {
            write!(f, " opts={:?}", self.options)?;
        }
        Ok(())
    }
}

/// The JSON shape of a segment: header fields by their RFC names, payload length
/// as `len`, and the payload itself in base64 (empty payloads omit it).
impl Serialize for Segment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Segment", 12)?;
        s.serialize_field("src_port", &self.src_port)?;
        s.serialize_field("dst_port", &self.dst_port)?;
        s.serialize_field("seq", &self.seq.0)?;
        s.serialize_field("ack", &self.ack.0)?;
        s.serialize_field("data_offset", &self.data_offset())?;
        s.serialize_field("flags", &self.flags)?;
        s.serialize_field("window", &self.window)?;
        s.serialize_field("checksum", &self.checksum)?;
        s.serialize_field("urgent", &self.urgent)?;
        s.serialize_field("options", &self.options)?;
        s.serialize_field("len", &self.payload.len())?;
        if !self.payload.is_empty() {
            s.serialize_field("payload_base64", &base64::engine::general_purpose::STANDARD.encode(&self.payload))?;
        }
        // Only a crafted segment sets them; said only then, so that a log
        // read back is the log that was written.
        if self.reserved != 0 {
            s.serialize_field("reserved", &self.reserved)?;
        }
        s.end()
    }
}

/// The JSON shape [`Segment`] serializes to, read back: the same fields, the
/// payload from `payload_base64` (absent when empty), `len` checked against
/// it, `data_offset` checked against the options (it is derived, not stored).
impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Json {
            src_port: u16,
            dst_port: u16,
            seq: u32,
            ack: u32,
            #[serde(default)]
            data_offset: Option<u8>,
            flags: Flags,
            window: u16,
            #[serde(default)]
            checksum: u16,
            #[serde(default)]
            urgent: u16,
            #[serde(default)]
            options: Vec<TcpOption>,
            #[serde(default)]
            len: Option<usize>,
            #[serde(default)]
            payload_base64: Option<String>,
            #[serde(default)]
            reserved: u8,
        }
        use serde::de::Error as _;
        let json = Json::deserialize(d)?;
        let payload = match &json.payload_base64 {
            Some(text) => base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| D::Error::custom(format!("payload_base64: {e}")))?,
            None => Vec::new(),
        };
        if let Some(len) = json.len.filter(|len| *len != payload.len()) {
            return Err(D::Error::custom(format!("len is {len} but payload_base64 holds {} octets", payload.len())));
        }
        let segment = Segment {
            src_port: json.src_port,
            dst_port: json.dst_port,
            seq: SeqNumber(json.seq),
            ack: SeqNumber(json.ack),
            reserved: json.reserved,
            flags: json.flags,
            window: json.window,
            checksum: json.checksum,
            urgent: json.urgent,
            options: json.options,
            payload: Bytes::from(payload),
        };
        if let Some(offset) = json.data_offset.filter(|o| *o != segment.data_offset()) {
            return Err(D::Error::custom(format!(
                "data_offset is {offset} but the options make it {}",
                segment.data_offset()
            )));
        }
        Ok(segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// RFC 1071 done the slow, obvious way (pseudo-header and segment
    /// concatenated, summed 16 bits at a time), to check [`checksum`]'s
    /// 64-bit fast path against.
    fn reference_checksum(src: Ipv4Addr, dst: Ipv4Addr, tcp: &[u8]) -> u16 {
        let mut data = Vec::new();
        data.extend_from_slice(&src.octets());
        data.extend_from_slice(&dst.octets());
        data.extend_from_slice(&[0, 6]);
        data.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        data.extend_from_slice(tcp);
        if data.len() % 2 == 1 {
            data.push(0);
        }
        let mut sum: u32 = 0;
        for pair in data.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// Writes the correct checksum into hand-built segment bytes.
    fn with_checksum(mut raw: Vec<u8>) -> Bytes {
        raw[16] = 0;
        raw[17] = 0;
        let sum = reference_checksum(A, B, &raw);
        raw[16..18].copy_from_slice(&sum.to_be_bytes());
        Bytes::from(raw)
    }

    /// A 20-octet header with the given data offset (in words) and nothing set
    /// but the ports, followed by `rest` (options and payload).
    fn raw_segment(offset: u8, rest: &[u8]) -> Vec<u8> {
        let mut raw = vec![0u8; HEADER_LEN];
        raw[0..2].copy_from_slice(&1234u16.to_be_bytes());
        raw[2..4].copy_from_slice(&80u16.to_be_bytes());
        raw[12] = offset << 4;
        raw.extend_from_slice(rest);
        raw
    }

    fn syn_with_mss() -> Segment {
        Segment {
            src_port: 49152,
            dst_port: 80,
            seq: SeqNumber(1000),
            ack: SeqNumber(0),
            flags: Flags::SYN,
            window: 65535,
            options: vec![TcpOption::Mss { value: 1460 }],
            ..Segment::default()
        }
    }

    /// The SYN of [`syn_with_mss`] from 10.0.0.1 to 10.0.0.2, worked out by hand:
    /// pseudo-header words 0a00+0001+0a00+0002+0006+0018 = 0x1421; header words
    /// c000+0050+0000+03e8+0000+0000+6002+ffff+0000+0000+0204+05b4 = 0x22bf1;
    /// total 0x24012, folded 0x4014, complemented 0xbfeb.
    const SYN_WITH_MSS: [u8; 24] = [
        0xc0, 0x00, 0x00, 0x50, // ports 49152 -> 80
        0x00, 0x00, 0x03, 0xe8, // seq 1000
        0x00, 0x00, 0x00, 0x00, // ack 0
        0x60, 0x02, 0xff, 0xff, // offset 6 words, SYN, window 65535
        0xbf, 0xeb, 0x00, 0x00, // checksum, urgent pointer
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
    ];

    #[test]
    fn syn_with_mss_encodes_to_hand_computed_bytes() {
        let syn = syn_with_mss();
        let wire = syn.encode(A, B).unwrap();
        assert_eq!(&wire[..], &SYN_WITH_MSS[..]);
        assert_eq!(syn.data_offset(), 6);

        let mut zeroed = SYN_WITH_MSS;
        zeroed[16] = 0;
        zeroed[17] = 0;
        assert_eq!(reference_checksum(A, B, &zeroed), 0xbfeb);
        assert_eq!(checksum(A, B, &zeroed), 0xbfeb);
        assert_eq!(checksum(A, B, &SYN_WITH_MSS), 0, "a correct segment sums to zero");

        let decoded = Segment::decode(&wire, A, B).unwrap();
        assert_eq!(decoded, Segment { checksum: 0xbfeb, ..syn });
        assert_eq!(decoded.mss(), Some(1460));
        assert_eq!(decoded.seg_len(), 1);
    }

    #[test]
    fn checksum_depends_on_the_pseudo_header() {
        let wire = syn_with_mss().encode(A, B).unwrap();
        // The same bytes claimed to come from elsewhere, or going the other way
        // (which sums the same, so it must still verify), or to another host.
        assert!(Segment::decode(&wire, B, A).is_ok());
        let c = Ipv4Addr::new(10, 0, 0, 3);
        assert!(matches!(Segment::decode(&wire, A, c), Err(DecodeError::BadChecksum { found: 0xbfeb, .. })));
    }

    #[test]
    fn odd_length_payload_checksum() {
        // PSH+ACK carrying "hi!" from 10.0.0.2 to 10.0.0.1; 0x369c computed
        // independently (Python, RFC 1071 over pseudo-header + segment).
        let seg = Segment {
            src_port: 80,
            dst_port: 49152,
            seq: SeqNumber(5000),
            ack: SeqNumber(1001),
            flags: Flags::PSH | Flags::ACK,
            window: 1024,
            payload: Bytes::from_static(b"hi!"),
            ..Segment::default()
        };
        let wire = seg.encode(B, A).unwrap();
        assert_eq!(wire.len(), 23);
        assert_eq!(&wire[16..18], &[0x36, 0x9c]);
        assert_eq!(&wire[20..], b"hi!");
        let decoded = Segment::decode(&wire, B, A).unwrap();
        assert_eq!(decoded, Segment { checksum: 0x369c, ..seg });
    }

    #[test]
    fn wire_checksum_and_len_match_the_encoding() {
        for len in [0usize, 1, 2, 3, 7, 8, 9, 31, 32, 33, 536, 1459, 1460] {
            for options in [vec![], vec![TcpOption::Mss { value: 1460 }], vec![TcpOption::WindowScale { value: 7 }]] {
                let seg = Segment {
                    src_port: 80,
                    dst_port: 49152,
                    seq: SeqNumber(0xffff_fff0),
                    ack: SeqNumber(77),
                    flags: Flags::PSH | Flags::ACK,
                    window: 0xffff,
                    options: options.clone(),
                    payload: (0..len).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>().into(),
                    ..Segment::default()
                };
                let wire = seg.encode(A, B).unwrap();
                assert_eq!(seg.wire_len(), wire.len());
                assert_eq!(seg.wire_checksum(A, B).unwrap().to_be_bytes(), wire[16..18], "len {len} {options:?}");
                let exact = Segment::decode(&wire, A, B).unwrap()
                    == Segment { checksum: seg.wire_checksum(A, B).unwrap(), ..seg.clone() };
                assert_eq!(seg.encodes_exactly(), exact);
            }
        }
    }

    #[test]
    fn checksum_agrees_with_reference_for_every_length() {
        // Lengths 0..=100 cover every remainder of the 8-octet fast path and odd tails.
        let mut state: u32 = 0x1234_5678;
        for len in 0..=100 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 24) as u8
                })
                .collect();
            assert_eq!(checksum(A, B, &data), reference_checksum(A, B, &data), "len {len}");
        }
        // All-ones data exercises the carry folding.
        let ones = vec![0xff; 1500];
        assert_eq!(checksum(A, B, &ones), reference_checksum(A, B, &ones));
    }

    #[test]
    fn decode_rejects_too_short() {
        for len in 0..HEADER_LEN {
            let bytes = Bytes::from(vec![0x50; len]);
            assert_eq!(Segment::decode_unverified(&bytes), Err(DecodeError::TooShort(len)));
            assert_eq!(Segment::decode(&bytes, A, B), Err(DecodeError::TooShort(len)));
        }
    }

    #[test]
    fn decode_rejects_bad_data_offset() {
        for offset in 0..5 {
            let bytes = with_checksum(raw_segment(offset, &[0; 40]));
            assert_eq!(Segment::decode(&bytes, A, B), Err(DecodeError::BadDataOffset { offset, len: 60 }));
        }
        // The offset points past the end of the bytes.
        let bytes = with_checksum(raw_segment(6, &[]));
        assert_eq!(Segment::decode(&bytes, A, B), Err(DecodeError::BadDataOffset { offset: 6, len: 20 }));
        let bytes = with_checksum(raw_segment(15, &[0; 39]));
        assert_eq!(Segment::decode_unverified(&bytes), Err(DecodeError::BadDataOffset { offset: 15, len: 59 }));
        // Exactly long enough is fine: 40 octets of option space, all EOL.
        let bytes = with_checksum(raw_segment(15, &[0; 40]));
        let seg = Segment::decode(&bytes, A, B).unwrap();
        assert_eq!(seg.options, vec![TcpOption::Eol]);
        assert!(seg.payload.is_empty());
    }

    #[test]
    fn decode_rejects_malformed_options() {
        let cases: [(&[u8], u8, usize); 6] = [
            // MSS kind as the last option octet: no room for its length.
            (&[1, 1, 1, 2], 2, 23),
            // Zero and one are not valid lengths (they would loop or overlap).
            (&[2, 0, 0, 0], 2, 20),
            (&[30, 1, 0, 0], 30, 20),
            (&[1, 8, 1, 0], 8, 21),
            // A length running past the header (even though payload follows).
            (&[2, 5, 5, 0xb4], 2, 20),
            (&[3, 3, 7, 8, 0, 0, 0, 0], 8, 23),
        ];
        for (options, kind, at) in cases {
            let offset = (5 + options.len() / 4) as u8;
            let mut rest = options.to_vec();
            rest.extend_from_slice(b"payload");
            let bytes = with_checksum(raw_segment(offset, &rest));
            let want = Err(DecodeError::BadOption { kind, at });
            assert_eq!(Segment::decode_unverified(&bytes), want, "{options:?}");
            assert_eq!(Segment::decode(&bytes, A, B), want, "{options:?}");
        }
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let seg = Segment {
            src_port: 443,
            dst_port: 50000,
            seq: SeqNumber(0xdead_beef),
            ack: SeqNumber(0x0102_0304),
            flags: Flags::PSH | Flags::ACK,
            window: 501,
            urgent: 7,
            options: vec![TcpOption::Nop, TcpOption::Nop, TcpOption::Timestamps { val: 123_456, ecr: 654_321 }],
            payload: Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n!"),
            ..Segment::default()
        };
        let wire = seg.encode(A, B).unwrap();
        assert!(Segment::decode(&wire, A, B).is_ok());
        let options = HEADER_LEN..usize::from(seg.data_offset()) * 4;
        for bit in 0..wire.len() * 8 {
            let byte = bit / 8;
            let mut flipped = wire.to_vec();
            flipped[byte] ^= 1 << (bit % 8);
            let flipped = Bytes::from(flipped);
            let result = Segment::decode(&flipped, A, B);
            match Segment::decode_unverified(&flipped) {
                // Still well-formed: only the checksum can tell.
                Ok(_) => assert!(matches!(result, Err(DecodeError::BadChecksum { .. })), "bit {bit}: {result:?}"),
                // Only the data offset and the options carry structure; a flip
                // there may make the segment malformed, and decode says so first.
                Err(e) => {
                    assert!(byte == 12 || options.contains(&byte), "bit {bit}: {e:?}");
                    assert_eq!(result, Err(e), "bit {bit}");
                }
            }
        }
    }

    #[test]
    fn every_header_field_round_trips() {
        let seg = Segment {
            src_port: 0xfedc,
            dst_port: 0x0102,
            seq: SeqNumber(u32::MAX),
            ack: SeqNumber(0x8000_0001),
            reserved: 0b1010,
            flags: Flags(0xff),
            window: 0xa5a5,
            urgent: 0x5a5a,
            options: vec![TcpOption::SackPermitted, TcpOption::Nop, TcpOption::Eol],
            payload: Bytes::from_static(&[0; 7]),
            ..Segment::default()
        };
        let wire = seg.encode(A, B).unwrap();
        assert_eq!(
            &wire[..20],
            &[
                0xfe, 0xdc, 0x01, 0x02, 0xff, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x01, 0x6a, 0xff, 0xa5, 0xa5,
                wire[16], wire[17], 0x5a, 0x5a
            ]
        );
        let decoded = Segment::decode(&wire, A, B).unwrap();
        assert_eq!(decoded, Segment { checksum: decoded.checksum, ..seg });
        assert_eq!(decoded.seg_len(), 9);
    }

    #[test]
    fn bad_checksum_reports_found_and_computed() {
        let mut raw = SYN_WITH_MSS.to_vec();
        raw[16..18].copy_from_slice(&[0x12, 0x34]);
        assert_eq!(
            Segment::decode(&Bytes::from(raw), A, B),
            Err(DecodeError::BadChecksum { found: 0x1234, computed: 0xbfeb })
        );
    }

    #[test]
    fn unknown_and_misfit_options_round_trip_raw() {
        let cases: [(&[u8], TcpOption); 9] = [
            (&[30, 6, 1, 2, 3, 4], TcpOption::Raw { kind: 30, data: vec![1, 2, 3, 4] }),
            (&[254, 2], TcpOption::Raw { kind: 254, data: vec![] }),
            // Known kinds with lengths the RFCs do not allow.
            (&[2, 3, 5], TcpOption::Raw { kind: 2, data: vec![5] }),
            (&[2, 5, 5, 0xb4, 0], TcpOption::Raw { kind: 2, data: vec![5, 0xb4, 0] }),
            (&[3, 2], TcpOption::Raw { kind: 3, data: vec![] }),
            (&[4, 3, 9], TcpOption::Raw { kind: 4, data: vec![9] }),
            (&[5, 2], TcpOption::Raw { kind: 5, data: vec![] }),
            (&[5, 9, 1, 2, 3, 4, 5, 6, 7], TcpOption::Raw { kind: 5, data: (1..=7).collect() }),
            (&[8, 6, 0, 0, 0, 1], TcpOption::Raw { kind: 8, data: vec![0, 0, 0, 1] }),
        ];
        for (option, want) in cases {
            let mut rest = option.to_vec();
            let padded = rest.len().div_ceil(4) * 4;
            rest.resize(padded, 0);
            rest.extend_from_slice(b"data");
            let wire = with_checksum(raw_segment((5 + padded / 4) as u8, &rest));
            let seg = Segment::decode(&wire, A, B).unwrap();
            assert_eq!(seg.options[0], want, "{option:?}");
            let mut expected = vec![want.clone()];
            if option.len() % 4 != 0 {
                expected.push(TcpOption::Eol);
            }
            assert_eq!(seg.options, expected, "{option:?}");
            assert_eq!(&seg.payload[..], b"data");
            assert_eq!(seg.encode(A, B).unwrap(), wire, "{option:?} re-encodes identically");
        }
    }

    #[test]
    fn known_options_decode() {
        let options = [
            2, 4, 0x05, 0xb4, // MSS 1460
            1, 3, 3, 7, // NOP, window scale 7
            4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, // SACK permitted, timestamps 1 2
            5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 30, 0, 0, 0, 40, // SACK 2 blocks
            0, 0, // EOL, padding
        ];
        let wire = with_checksum(raw_segment(5 + 40 / 4, &options));
        let seg = Segment::decode(&wire, A, B).unwrap();
        assert_eq!(
            seg.options,
            vec![
                TcpOption::Mss { value: 1460 },
                TcpOption::Nop,
                TcpOption::WindowScale { value: 7 },
                TcpOption::SackPermitted,
                TcpOption::Timestamps { val: 1, ecr: 2 },
                TcpOption::Sack { blocks: vec![(10, 20), (30, 40)] },
                TcpOption::Eol,
            ]
        );
        assert_eq!(seg.data_offset(), 15);
        assert_eq!(seg.encode(A, B).unwrap(), wire);
    }

    #[test]
    fn encode_rejects_options_over_40_octets() {
        let seg = Segment { options: vec![TcpOption::Raw { kind: 99, data: vec![0; 39] }], ..Segment::default() };
        assert_eq!(seg.encode(A, B), Err(DecodeError::OptionsTooLong(41)));
        let seg = Segment { options: vec![TcpOption::Raw { kind: 99, data: vec![0; 38] }], ..Segment::default() };
        assert_eq!(seg.encode(A, B).unwrap().len(), MAX_HEADER_LEN);
    }

    #[test]
    fn flags_display() {
        assert_eq!(Flags::NONE.to_string(), "-");
        assert_eq!(Flags::SYN.to_string(), "SYN");
        assert_eq!((Flags::SYN | Flags::ACK).to_string(), "SYN+ACK");
        assert_eq!((Flags::ACK | Flags::FIN).to_string(), "FIN+ACK");
        assert_eq!((Flags::RST | Flags::ACK).to_string(), "RST+ACK");
        assert_eq!((Flags::ACK | Flags::PSH | Flags::FIN).to_string(), "FIN+PSH+ACK");
        assert_eq!(Flags(0xff).to_string(), "SYN+FIN+RST+PSH+ACK+URG+ECE+CWR");
        assert_eq!(format!("{:?}", Flags::SYN | Flags::ACK), "SYN+ACK");
    }

    #[test]
    fn flags_serde_as_array_of_names() {
        let json = |f: Flags| serde_json::to_string(&f).unwrap();
        assert_eq!(json(Flags::NONE), "[]");
        assert_eq!(json(Flags::SYN | Flags::ACK), r#"["ACK","SYN"]"#);
        assert_eq!(json(Flags(0xff)), r#"["CWR","ECE","URG","ACK","PSH","RST","SYN","FIN"]"#);
        for bits in 0..=255u8 {
            let back: Flags = serde_json::from_str(&json(Flags(bits))).unwrap();
            assert_eq!(back, Flags(bits));
        }
        let parsed: Flags = serde_json::from_str(r#"["syn","Ack","SYN"]"#).unwrap();
        assert_eq!(parsed, Flags::SYN | Flags::ACK);
        let err = serde_json::from_str::<Flags>(r#"["SYN","NS"]"#).unwrap_err();
        assert!(err.to_string().contains("unknown flag `NS`"), "{err}");
        assert!(serde_json::from_str::<Flags>(r#""SYN""#).is_err());
    }

    #[test]
    fn option_json_shape() {
        let cases = [
            (TcpOption::Mss { value: 1460 }, r#"{"kind":"mss","value":1460}"#),
            (TcpOption::WindowScale { value: 6 }, r#"{"kind":"wscale","value":6}"#),
            (TcpOption::SackPermitted, r#"{"kind":"sack_permitted"}"#),
            (TcpOption::Timestamps { val: 1, ecr: 0 }, r#"{"kind":"timestamps","val":1,"ecr":0}"#),
            (TcpOption::Raw { kind: 30, data: vec![1, 2, 3] }, r#"{"kind":"raw","type":30,"data_base64":"AQID"}"#),
            (TcpOption::Raw { kind: 77, data: vec![] }, r#"{"kind":"raw","type":77,"data_base64":""}"#),
            (TcpOption::Eol, r#"{"kind":"eol"}"#),
            (TcpOption::Nop, r#"{"kind":"nop"}"#),
            (TcpOption::Sack { blocks: vec![(1, 2), (3, 4)] }, r#"{"kind":"sack","blocks":[[1,2],[3,4]]}"#),
        ];
        for (option, json) in cases {
            assert_eq!(serde_json::to_string(&option).unwrap(), json);
            assert_eq!(serde_json::from_str::<TcpOption>(json).unwrap(), option, "{json}");
        }
        // Field order does not matter on the way in; bad base64 is an error.
        let raw: TcpOption = serde_json::from_str(r#"{"data_base64":"AQID","type":30,"kind":"raw"}"#).unwrap();
        assert_eq!(raw, TcpOption::Raw { kind: 30, data: vec![1, 2, 3] });
        let err = serde_json::from_str::<TcpOption>(r#"{"kind":"raw","type":30,"data_base64":"!!"}"#).unwrap_err();
        assert!(err.to_string().contains("data_base64"), "{err}");
        assert!(serde_json::from_str::<TcpOption>(r#"{"kind":"mss","value":70000}"#).is_err());
    }

    #[test]
    fn payload_is_zero_copy() {
        let seg = Segment {
            flags: Flags::ACK,
            options: vec![TcpOption::WindowScale { value: 2 }],
            payload: Bytes::from(vec![0xab; 100]),
            ..Segment::default()
        };
        let wire = seg.encode(A, B).unwrap();
        let header_len = usize::from(seg.data_offset()) * 4;
        assert_eq!(header_len, 24);
        let buffer = wire.as_ptr_range();
        for decoded in [Segment::decode(&wire, A, B).unwrap(), Segment::decode_unverified(&wire).unwrap()] {
            let payload = decoded.payload.as_ptr_range();
            assert!(buffer.start <= payload.start && payload.end <= buffer.end);
            assert_eq!(payload.start, wire[header_len..].as_ptr());
            assert_eq!(payload.end, buffer.end);
            assert_eq!(decoded.payload, seg.payload);
        }
    }
}
