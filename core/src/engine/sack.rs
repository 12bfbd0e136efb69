//! The receiver's side of selective acknowledgement: the SACK blocks an
//! endpoint reports (RFC 2018 section 4) and RFC 2883's D-SACK, kept as
//! FreeBSD's `tcp_sack.c` keeps them (`tcp_update_sack_list()`,
//! `tcp_update_dsack_list()`, `tcp_clean_dsack_blocks()`), so that a
//! packetdrill script written against FreeBSD sees the same blocks in the
//! same order.
//!
//! RFC 2018's rules, which those functions implement: the first block
//! reports the segment that triggered the ACK, the others follow in the
//! order they were last reported, and a block of data that was already
//! acknowledged or already held (a duplicate) is reported once, first
//! (RFC 2883 section 4), followed by the block that contains it if that is
//! still held.

use super::seq::SeqNumber;

/// Blocks remembered (FreeBSD's `MAX_SACK_BLKS`); at most four fit in one
/// segment's options, three beside timestamps.
pub const MAX_SACK_BLOCKS: usize = 6;

/// A range of sequence space `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SackBlock {
    /// First octet.
    pub start: SeqNumber,
    /// One past the last octet.
    pub end: SeqNumber,
}

impl SackBlock {
    fn new(start: SeqNumber, end: SeqNumber) -> SackBlock {
        SackBlock { start, end }
    }

    fn is_empty(self) -> bool {
        self.start >= self.end
    }
}

fn seq_max(a: SeqNumber, b: SeqNumber) -> SeqNumber {
    if a > b { a } else { b }
}

fn seq_min(a: SeqNumber, b: SeqNumber) -> SeqNumber {
    if a < b { a } else { b }
}

/// The blocks an endpoint reports, most recent first (`tp->sackblks`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SackReport {
    blocks: [SackBlock; MAX_SACK_BLOCKS],
    len: u8,
}

impl SackReport {
    /// The blocks, in the order they are reported.
    pub fn blocks(&self) -> &[SackBlock] {
        &self.blocks[..usize::from(self.len)]
    }

    /// Nothing to report.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn set(&mut self, blocks: &[SackBlock]) {
        let n = blocks.len().min(MAX_SACK_BLOCKS);
        self.blocks[..n].copy_from_slice(&blocks[..n]);
        self.len = n as u8;
    }

    /// Records newly received data `[start, end)` (`tcp_update_sack_list()`):
    /// it merges with the blocks it overlaps or touches and goes first if it
    /// lies beyond RCV.NXT; a range below RCV.NXT (a duplicate) goes first
    /// as a D-SACK block; blocks now below RCV.NXT are dropped.
    pub fn update(&mut self, rcv_nxt: SeqNumber, start: SeqNumber, end: SeqNumber) {
        let mut head = if start == end && self.len >= 1 && end == self.blocks[0].end {
            // Keeps a D-SACK block below RCV.NXT (the "todrop" case).
            self.blocks[0]
        } else {
            SackBlock::new(start, end)
        };
        let mut saved: Vec<SackBlock> = Vec::with_capacity(MAX_SACK_BLOCKS);
        for &block in self.blocks() {
            let (mut s, mut e) = (block.start, block.end);
            if s >= e || s <= rcv_nxt {
                continue; // acknowledged now, or empty: discard
            }
            if head.start <= e && head.end >= s {
                // Overlaps or touches the new range: merge, unless the new
                // range is a D-SACK inside it (then the larger block stays
                // as it was, after the smaller one).
                if head.start == e {
                    head.start = s;
                } else if head.end == s {
                    head.end = e;
                } else {
                    if head.start < s {
                        std::mem::swap(&mut s, &mut head.start);
                    }
                    if head.end > e {
                        std::mem::swap(&mut e, &mut head.end);
                    }
                    if head.start != s || head.end != e {
                        if saved.last().is_some_and(|last| last.start >= s && last.end <= e) {
                            saved.pop();
                        }
                        saved.push(SackBlock::new(s, e));
                    }
                }
            } else {
                // This block supersedes a previous one it contains.
                if saved.last().is_some_and(|last| last.start >= s && last.end <= e) {
                    saved.pop();
                }
                saved.push(SackBlock::new(s, e));
            }
        }
        let mut next: Vec<SackBlock> = Vec::with_capacity(MAX_SACK_BLOCKS);
        if start < end {
            next.push(head);
            saved.truncate(MAX_SACK_BLOCKS - 1);
        } else if start == end && self.len >= 1 && start == self.blocks[0].end {
            next.push(self.blocks[0]);
        }
        next.extend(saved);
        self.set(&next);
    }

    /// Records a segment `[start, end)` that overlaps data already held or
    /// acknowledged (`tcp_update_dsack_list()`): the overlap goes first as a
    /// D-SACK block, then the block that now holds the segment (unless that
    /// is the D-SACK block itself, or acknowledged), then the blocks it does
    /// not touch, in their order.
    pub fn update_dsack(&mut self, rcv_nxt: SeqNumber, start: SeqNumber, end: SeqNumber) {
        let mut first = if end < rcv_nxt || (end == rcv_nxt && self.len > 0 && self.blocks[0].end == rcv_nxt) {
            SackBlock::new(start, end)
        } else {
            SackBlock::default()
        };
        let mut head = SackBlock::default();
        let mut mid = SackBlock::new(start, end);
        let mut identical = false;
        for &block in self.blocks() {
            let (s, e) = (block.start, block.end);
            if end < s || start > e {
                continue; // left or right of the segment
            }
            if rcv_nxt > e {
                // An acknowledged block: the part the segment repeats.
                let (lo, hi) = (seq_max(start, s), seq_min(end, e));
                if lo != hi && (head.start > lo || head.start == head.end) {
                    head = SackBlock::new(lo, hi);
                }
                continue;
            }
            if (head.start == head.end || s < head.start) && e > start && s <= end {
                head = block;
            }
            mid.start = seq_min(mid.start, s);
            mid.end = seq_max(mid.end, e);
            if mid.start == s && mid.end == e {
                identical = true;
            }
        }
        if head.start < head.end {
            first = SackBlock::new(seq_max(start, head.start), seq_min(end, head.end));
        }
        let mut next: Vec<SackBlock> = Vec::with_capacity(MAX_SACK_BLOCKS);
        next.push(first);
        if (rcv_nxt < mid.end && mid != first) || identical {
            next.push(mid);
        }
        for &block in self.blocks() {
            if next.len() >= MAX_SACK_BLOCKS {
                break;
            }
            if (block.end < mid.start || block.start > mid.end) && block.start > rcv_nxt {
                next.push(block);
            }
        }
        next.retain(|b| !b.is_empty());
        self.set(&next);
    }

    /// Drops the blocks at or below RCV.NXT once they were sent: a D-SACK
    /// block is reported once (RFC 2883 section 4; `tcp_clean_dsack_blocks()`).
    pub fn clean_dsack(&mut self, rcv_nxt: SeqNumber) {
        let kept: Vec<SackBlock> =
            self.blocks().iter().copied().filter(|b| !b.is_empty() && b.start > rcv_nxt).collect();
        self.set(&kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(r: &SackReport) -> Vec<(u32, u32)> {
        r.blocks().iter().map(|b| (b.start.0, b.end.0)).collect()
    }

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    /// 1:100 received in order, then 200:300, 400:500 and 600:700 out of
    /// order: the FreeBSD suite's "overlapping" preparation.
    fn prepared() -> SackReport {
        let mut r = SackReport::default();
        for (a, b) in [(200, 300), (400, 500), (600, 700)] {
            r.update_dsack(s(100), s(a), s(b));
        }
        assert_eq!(blocks(&r), [(600, 700), (400, 500), (200, 300)]);
        r
    }

    #[test]
    fn the_newest_block_comes_first_and_the_others_keep_their_order() {
        let mut r = prepared();
        // 150:200 extends the oldest block, which moves to the front.
        r.update_dsack(s(100), s(150), s(200));
        assert_eq!(blocks(&r), [(150, 300), (600, 700), (400, 500)]);
    }

    #[test]
    fn a_duplicate_below_rcv_nxt_is_reported_once_as_d_sack() {
        let mut r = prepared();
        r.update(s(100), s(50), s(75));
        assert_eq!(blocks(&r), [(50, 75), (600, 700), (400, 500), (200, 300)]);
        r.clean_dsack(s(100));
        assert_eq!(blocks(&r), [(600, 700), (400, 500), (200, 300)]);
    }

    #[test]
    fn a_duplicate_of_held_data_comes_first_then_the_block_that_holds_it() {
        let mut r = prepared();
        r.update_dsack(s(100), s(200), s(300));
        assert_eq!(blocks(&r), [(200, 300), (200, 300), (600, 700), (400, 500)]);
        let mut r = prepared();
        r.update_dsack(s(100), s(250), s(475));
        assert_eq!(blocks(&r), [(250, 300), (200, 500), (600, 700)]);
        let mut r = prepared();
        r.update_dsack(s(100), s(150), s(700));
        assert_eq!(blocks(&r), [(200, 300), (150, 700)]);
    }

    #[test]
    fn filling_the_hole_at_rcv_nxt_reports_only_what_is_still_held() {
        // 1:2 in order; 4:8 and 16:32 held; 2:4 fills up to 8 (the queue's
        // merged entry is 2:8): nothing but 16:32 is left to report.
        let mut r = SackReport::default();
        r.update_dsack(s(2), s(4), s(8));
        r.update_dsack(s(2), s(16), s(32));
        assert_eq!(blocks(&r), [(16, 32), (4, 8)]);
        r.update_dsack(s(8), s(2), s(4));
        assert_eq!(blocks(&r), [(16, 32)]);
        r.update_dsack(s(32), s(8), s(16));
        assert!(r.is_empty());
    }

    #[test]
    fn a_partial_duplicate_reports_the_old_part_and_drops_what_is_now_acknowledged() {
        let mut r = prepared();
        // 50:275 arrives: 50:100 is old (recorded when it is trimmed); the
        // rest fills 100:200 and RCV.NXT moves to 300.
        r.update(s(100), s(50), s(100));
        r.update(s(300), s(50), s(100));
        assert_eq!(blocks(&r), [(50, 100), (600, 700), (400, 500)]);
    }

    #[test]
    fn new_blocks_keep_one_slot_free_for_a_d_sack_block() {
        // tcp_update_dsack_list() counts the D-SACK slot even when it is
        // empty: five blocks are remembered, the newest first.
        let mut r = SackReport::default();
        for i in 0..10u32 {
            r.update_dsack(s(0), s(100 + i * 20), s(110 + i * 20));
        }
        assert_eq!(r.blocks().len(), MAX_SACK_BLOCKS - 1);
        assert_eq!(r.blocks()[0], SackBlock::new(s(280), s(290)));
        assert_eq!(r.blocks()[4], SackBlock::new(s(200), s(210)));
    }
}
