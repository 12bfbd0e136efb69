//! The receive buffer: in-order octets the application has not read yet,
//! kept as the payloads they arrived in (shared slices of the segments: a
//! reference count, not a copy per segment) while the application reads as
//! they come. Reading copies them out once.
//!
//! A payload slice keeps the buffer it is a slice of alive (a whole queued
//! write of the sender's, on the simulated wire without re-encoding). So as
//! soon as octets pile up unread (a second chunk arrives before the first
//! is read), what is held is copied into buffers of its own, and so is what
//! arrives until the buffer has been read empty: an application that does
//! not read never keeps more alive than the octets it has not read.

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
    /// The chunks are copies of their own (octets piled up unread), and
    /// what arrives is copied too until the buffer is read empty.
    owned: bool,
}

/// Chunks held unread at which they are copied out of the segments.
const OWN_AT_CHUNKS: usize = 2;

impl RecvBuffer {
    /// Octets waiting to be read.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends the next in-order octets.
    pub fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if !self.owned && self.chunks.len() + 1 >= OWN_AT_CHUNKS {
            for chunk in &mut self.chunks {
                *chunk = Bytes::copy_from_slice(chunk);
            }
            self.owned = true;
        }
        self.len += data.len();
        self.chunks.push_back(if self.owned { Bytes::copy_from_slice(&data) } else { data });
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
        if self.chunks.is_empty() {
            self.owned = false;
            if self.chunks.capacity() > KEEP_EMPTY_CHUNKS {
                self.chunks = VecDeque::new();
            }
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

    /// Read as it comes, a payload is held as it is; once octets pile up
    /// unread, nothing held points into the segments' buffers any more.
    #[test]
    fn unread_octets_are_copied_out_of_the_buffers_they_arrived_in() {
        let mut b = RecvBuffer::default();
        let big = Bytes::from(vec![7u8; 4096]);
        b.push(big.slice(0..100));
        assert!(b.chunks.iter().any(|c| c.as_ptr() == big.as_ptr()), "held as it is while read promptly");
        b.push(big.slice(100..200));
        b.push(big.slice(200..300));
        let inside = |c: &Bytes| {
            let (start, end) = (big.as_ptr() as usize, big.as_ptr() as usize + big.len());
            (start..end).contains(&(c.as_ptr() as usize))
        };
        assert!(!b.chunks.iter().any(inside), "copies once octets pile up");
        assert_eq!(b.read(1000), vec![7u8; 300]);
        // Read empty: prompt readers get slices again.
        b.push(big.slice(300..400));
        assert!(b.chunks.iter().all(inside));
    }
}
