//! The send buffer: octets from SND.UNA on, kept as shared chunks so that a
//! segment's payload is a slice of them (a reference count, not a copy).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Capacity kept when the buffer empties; a larger one is given back.
const KEEP_EMPTY: usize = 64 * 1024;

/// Queued octets: frozen chunks (oldest first), then writes not yet cut into
/// a chunk. A chunk is cut when a segment first needs octets of the tail, so
/// there are about as many chunks as sends in flight, not one per octet.
#[derive(Debug, Clone, Default)]
pub struct SendBuffer {
    chunks: VecDeque<Bytes>,
    /// Octets in `chunks`.
    frozen: usize,
    tail: BytesMut,
}

impl SendBuffer {
    /// Octets queued.
    pub fn len(&self) -> usize {
        self.frozen + self.tail.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends octets.
    pub fn push(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
    }

    /// Appends a buffer as a chunk of its own, without copying it (what was
    /// written before it is cut into a chunk first, to keep the order).
    pub fn push_bytes(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if !self.tail.is_empty() {
            let chunk = self.tail.split().freeze();
            self.frozen += chunk.len();
            self.chunks.push_back(chunk);
        }
        self.frozen += data.len();
        self.chunks.push_back(data);
    }

    /// Drops the first `n` octets (acknowledged).
    pub fn consume(&mut self, n: usize) {
        let mut n = n.min(self.len());
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                let _ = self.tail.split_to(n);
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.frozen -= front.len();
                self.chunks.pop_front();
            } else {
                *front = front.slice(n..);
                self.frozen -= n;
                n = 0;
            }
        }
        if self.is_empty() {
            self.chunks.clear();
            if self.tail.capacity() > KEEP_EMPTY {
                self.tail = BytesMut::new();
            } else {
                self.tail.clear();
            }
        }
    }

    /// `len` octets from `offset`: a slice of one chunk, or a copy when they
    /// span chunks. The caller keeps `offset + len <= self.len()`.
    pub fn slice(&mut self, offset: usize, len: usize) -> Bytes {
        if len == 0 {
            return Bytes::new();
        }
        if offset + len > self.frozen && !self.tail.is_empty() {
            let chunk = self.tail.split().freeze();
            self.frozen += chunk.len();
            self.chunks.push_back(chunk);
        }
        let mut at = offset;
        for (i, chunk) in self.chunks.iter().enumerate() {
            if at >= chunk.len() {
                at -= chunk.len();
                continue;
            }
            if at + len <= chunk.len() {
                return chunk.slice(at..at + len);
            }
            let mut out = Vec::with_capacity(len);
            for chunk in self.chunks.range(i..) {
                let take = (chunk.len() - at).min(len - out.len());
                out.extend_from_slice(&chunk[at..at + take]);
                at = 0;
                if out.len() == len {
                    break;
                }
            }
            return Bytes::from(out);
        }
        Bytes::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_consume_and_span_chunks() {
        let mut b = SendBuffer::default();
        b.push(b"hello ");
        assert_eq!(&b.slice(0, 3)[..], b"hel");
        b.push(b"world");
        assert_eq!(b.len(), 11);
        assert_eq!(&b.slice(4, 4)[..], b"o wo", "spans the first chunk and the tail");
        b.consume(2);
        assert_eq!(&b.slice(0, 9)[..], b"llo world");
        b.consume(5);
        assert_eq!(&b.slice(1, 3)[..], b"rld");
        b.push(b"!");
        b.consume(4);
        assert_eq!(b.len(), 1);
        assert_eq!(&b.slice(0, 1)[..], b"!");
        b.consume(10);
        assert!(b.is_empty());
        b.push(b"again");
        assert_eq!(&b.slice(0, 5)[..], b"again");
    }

    #[test]
    fn pushed_buffers_keep_their_order_with_copied_writes_and_are_sliced_not_copied() {
        let mut b = SendBuffer::default();
        b.push(b"ab");
        let shared = Bytes::from_static(b"cdefgh");
        b.push_bytes(shared.clone());
        b.push(b"ij");
        b.push_bytes(Bytes::new());
        assert_eq!(b.len(), 10);
        assert_eq!(&b.slice(0, 10)[..], b"abcdefghij");
        let inside = b.slice(3, 4);
        assert_eq!(&inside[..], b"defg");
        assert_eq!(inside.as_ptr(), shared[1..].as_ptr(), "a slice of the pushed buffer itself");
        b.consume(5);
        assert_eq!(&b.slice(0, 5)[..], b"fghij");
        b.consume(5);
        assert!(b.is_empty());
    }
}
