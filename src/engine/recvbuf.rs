//! The receive buffer: in-order octets the application has not read yet,
//! kept as the payloads they arrived in (shared slices of the segments: a
//! reference count, not a copy per segment). Reading copies them out once.
//!
//! A payload that is a slice of a larger buffer (the sender's queued write,
//! on the simulated wire without re-encoding) keeps that buffer alive until
//! it is read: never more than the sender allocated for the octets in the
//! receive window, which it holds itself while they are unacknowledged.

use std::collections::VecDeque;

use bytes::Bytes;

/// Room for chunk handles kept when the buffer empties; more is given back.
const KEEP_EMPTY_CHUNKS: usize = 256;

/// Octets received in order and not read yet.
#[derive(Debug, Clone, Default)]
pub struct RecvBuffer {
    chunks: VecDeque<Bytes>,
    /// Octets in `chunks`.
    len: usize,
}

impl RecvBuffer {
    /// Octets waiting to be read.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends the next in-order octets.
    pub fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.len += data.len();
            self.chunks.push_back(data);
        }
    }

    /// Takes up to `max` octets, copied into one buffer.
    pub fn read(&mut self, max: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(max.min(self.len));
        self.take(max, |chunk| out.extend_from_slice(chunk));
        out
    }

    /// Drops up to `max` octets unread; returns how many.
    pub fn discard(&mut self, max: usize) -> usize {
        self.take(max, |_| {})
    }

    /// Removes up to `max` octets from the front, handing each piece to `f`.
    fn take(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let n = max.min(self.len);
        let mut left = n;
        while left > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                f(front);
                self.chunks.pop_front();
            } else {
                f(&front[..left]);
                *front = front.slice(left..);
                left = 0;
            }
        }
        self.len -= n - left;
        if self.chunks.is_empty() && self.chunks.capacity() > KEEP_EMPTY_CHUNKS {
            self.chunks = VecDeque::new();
        }
        n - left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_chunks_in_order_and_keeps_the_rest() {
        let mut b = RecvBuffer::default();
        let first = Bytes::from_static(b"hello ");
        b.push(first.clone());
        b.push(Bytes::new());
        b.push(Bytes::from_static(b"world"));
        assert_eq!(b.len(), 11);
        assert_eq!(b.read(3), b"hel");
        assert_eq!(b.read(5), b"lo wo");
        assert_eq!(b.len(), 3);
        assert_eq!(b.discard(2), 2);
        assert_eq!(b.read(100), b"d");
        assert_eq!(b.len(), 0);
        assert_eq!(b.read(10), b"");
        assert_eq!(b.discard(10), 0);
        b.push(first);
        assert_eq!(b.discard(100), 6);
        assert_eq!(b.len(), 0);
    }
}
