//! Segments that arrived ahead of RCV.NXT, held until the hole before them
//! is filled (RFC 9293 section 3.10.7.4, seventh step), as ranges of
//! contiguous sequence space the way FreeBSD's `tcp_reass.c` queue holds
//! them: a segment that overlaps or touches held data joins its range, so
//! that "the block this segment now belongs to" (what SACK reports) is one
//! entry. A range keeps the segments' buffers as they came (no copying).

use std::collections::VecDeque;

use bytes::Bytes;

use super::seq::SeqNumber;

/// Held ranges in all, as FreeBSD's `net.inet.tcp.reass.maxqueuelen` caps
/// them (100); a segment that would start one more is dropped, unless it
/// is the one at RCV.NXT.
pub const MAX_RANGES: usize = 100;

/// One contiguous run of held octets.
#[derive(Clone, Debug)]
struct Range {
    start: SeqNumber,
    len: u32,
    chunks: VecDeque<Bytes>,
}

impl Range {
    fn end(&self) -> SeqNumber {
        self.start + self.len
    }
}

/// The reassembly queue: non-overlapping, non-touching ranges in sequence order.
#[derive(Clone, Debug, Default)]
pub struct Reassembly {
    ranges: Vec<Range>,
}

impl Reassembly {
    /// Nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Octets held.
    pub fn len(&self) -> usize {
        self.ranges.iter().map(|r| r.len as usize).sum()
    }

    /// Holds `data` at `seq` (at or beyond RCV.NXT) and returns the range it
    /// now belongs to, `(start, len)` (`tcp_reass()`'s `*seq_start` and
    /// `*tlenp`); `None` when the queue is full and the segment was dropped.
    /// `limit` is how many ranges may be held.
    pub fn insert(
        &mut self,
        seq: SeqNumber,
        data: Bytes,
        rcv_nxt: SeqNumber,
        limit: usize,
    ) -> Option<(SeqNumber, u32)> {
        let end = seq + data.len() as u32;
        // The ranges the new octets overlap or touch: [first, last).
        let first = self.ranges.partition_point(|r| r.end() < seq);
        let last = first + self.ranges[first..].partition_point(|r| r.start <= end);
        if first == last {
            if self.ranges.len() >= limit && seq != rcv_nxt {
                return None;
            }
            let len = data.len() as u32;
            self.ranges.insert(first, Range { start: seq, len, chunks: VecDeque::from([data]) });
            return Some((seq, len));
        }
        let start = if seq < self.ranges[first].start { seq } else { self.ranges[first].start };
        let mut merged = Range { start, len: 0, chunks: VecDeque::new() };
        let mut cursor = start;
        // The new octets fill the gaps between the ranges they join; held octets stay as they are.
        let fill = |merged: &mut Range, upto: SeqNumber, cursor: &mut SeqNumber| {
            if *cursor < upto {
                let from = (*cursor - seq) as usize;
                let to = (upto - seq) as usize;
                merged.chunks.push_back(data.slice(from..to));
                *cursor = upto;
            }
        };
        for range in self.ranges.drain(first..last) {
            fill(&mut merged, range.start, &mut cursor);
            cursor = range.end();
            merged.chunks.extend(range.chunks);
        }
        fill(&mut merged, end, &mut cursor);
        merged.len = cursor - start;
        let result = (merged.start, merged.len);
        self.ranges.insert(first, merged);
        Some(result)
    }

    /// Takes the range that starts at `rcv_nxt`, if there is one: its chunks, in order.
    pub fn take_at(&mut self, rcv_nxt: SeqNumber) -> Option<impl Iterator<Item = Bytes>> {
        if self.ranges.first().is_some_and(|r| r.start == rcv_nxt) {
            return Some(self.ranges.remove(0).chunks.into_iter());
        }
        None
    }

    /// The held ranges as `(start, end)`.
    #[cfg(test)]
    pub fn ranges(&self) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        self.ranges.iter().map(|r| (r.start, r.end()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn a_segment_joins_the_ranges_it_overlaps_or_touches() {
        let mut q = Reassembly::default();
        let at = SeqNumber(100);
        assert_eq!(q.insert(SeqNumber(200), bytes(100, 1), at, MAX_RANGES), Some((SeqNumber(200), 100)));
        assert_eq!(q.insert(SeqNumber(400), bytes(100, 2), at, MAX_RANGES), Some((SeqNumber(400), 100)));
        // 250:475 overlaps both and fills the gap between them.
        assert_eq!(q.insert(SeqNumber(250), bytes(225, 3), at, MAX_RANGES), Some((SeqNumber(200), 300)));
        // 500:520 touches the end.
        assert_eq!(q.insert(SeqNumber(500), bytes(20, 4), at, MAX_RANGES), Some((SeqNumber(200), 320)));
        assert_eq!(q.ranges().collect::<Vec<_>>(), [(SeqNumber(200), SeqNumber(520))]);
        assert_eq!(q.len(), 320);
        // The held octets stay; the new ones only fill the gaps.
        let data: Vec<u8> = q.take_at(SeqNumber(200)).unwrap().flat_map(|b| b.to_vec()).collect();
        assert_eq!(data.len(), 320);
        assert!(data[..100].iter().all(|b| *b == 1));
        assert!(data[100..200].iter().all(|b| *b == 3));
        assert!(data[200..300].iter().all(|b| *b == 2));
        assert!(data[300..].iter().all(|b| *b == 4));
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_queue_drops_new_ranges_but_not_the_one_at_rcv_nxt() {
        let mut q = Reassembly::default();
        let at = SeqNumber(0);
        assert!(q.insert(SeqNumber(10), bytes(5, 0), at, 1).is_some());
        assert_eq!(q.insert(SeqNumber(30), bytes(5, 0), at, 1), None);
        // Joining a held range is always possible.
        assert!(q.insert(SeqNumber(15), bytes(5, 0), at, 1).is_some());
        assert!(q.insert(SeqNumber(0), bytes(5, 0), at, 1).is_some());
        assert!(q.take_at(SeqNumber(0)).is_some());
    }
}
