//! The world's scheduler: the virtual clock and what is due on it.
//!
//! Why a part of its own: the order in which items fall due is what makes a
//! world deterministic, and it is easier to see that it is total (time, then
//! the order of scheduling) when nothing else lives beside it. The agenda
//! knows nothing of hosts or packets beyond the two kinds of [`Item`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::HostId;
use crate::time::Instant;

/// What falls due.
pub(super) enum Item {
    /// A packet in the wire's in-flight slots (by slot), so that scheduling
    /// one allocates nothing once the slots have grown to the traffic.
    Arrival(u32),
    /// A host's timers, if `generation` is still its current one.
    HostTimer {
        /// The host.
        host: HostId,
        /// Which arming of the host's timer this entry is.
        generation: u64,
    },
}

/// An item due at a virtual time; items due at the same time come in the
/// order they were scheduled (determinism).
pub(super) struct Scheduled {
    /// The time in the high 64 bits, the scheduling order in the low ones:
    /// one branch-free comparison orders the heap.
    key: u128,
    /// What is due.
    pub(super) item: Item,
}

impl Scheduled {
    /// When it is due.
    pub(super) fn at(&self) -> Instant {
        Instant::from_nanos((self.key >> 64) as u64)
    }
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// The clock and what is scheduled, soonest first: a queue for arrivals
/// scheduled in time order (most of them: a link's latency is mostly the
/// same for every packet, so they are scheduled in the order they fall due)
/// and a heap for the rest (timers, jittered or reordered packets). Popping
/// takes the sooner of the two fronts, so the order is exactly a single
/// heap's (keys are unique), and the common case costs O(1) instead of
/// O(log n).
#[derive(Default)]
pub(super) struct Agenda {
    /// Virtual time now.
    now: Instant,
    /// How many items were ever scheduled: the tie-breaker of equal times.
    next_order: u64,
    in_order: VecDeque<Scheduled>,
    others: BinaryHeap<Reverse<Scheduled>>,
}

impl Agenda {
    /// Virtual time now.
    pub(super) fn now(&self) -> Instant {
        self.now
    }

    /// Moves the clock to `t`, unless that is in the past: the clock never goes back.
    pub(super) fn move_clock_to(&mut self, t: Instant) {
        self.now = self.now.max(t);
    }

    /// Schedules `item` at `at`, after everything already scheduled at that time.
    pub(super) fn schedule(&mut self, at: Instant, item: Item) {
        let order = self.next_order;
        self.next_order += 1;
        self.push(Scheduled { key: u128::from(at.as_nanos()) << 64 | u128::from(order), item });
    }

    fn push(&mut self, item: Scheduled) {
        // Timers go to the heap: one far ahead at the queue's back would send
        // every arrival after it there.
        let arrival = matches!(item.item, Item::Arrival(_));
        if arrival && self.in_order.back().is_none_or(|last| last.key < item.key) {
            self.in_order.push_back(item);
        } else {
            self.others.push(Reverse(item));
        }
    }

    /// `true` when the soonest item is the in-order queue's front.
    fn front_is_in_order(&self) -> bool {
        match (self.in_order.front(), self.others.peek()) {
            (Some(a), Some(Reverse(b))) => a.key < b.key,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The soonest item, left where it is.
    pub(super) fn peek(&self) -> Option<&Scheduled> {
        if self.front_is_in_order() { self.in_order.front() } else { self.others.peek().map(|Reverse(s)| s) }
    }

    /// Takes the soonest item (the clock does not move: the world moves it).
    pub(super) fn pop(&mut self) -> Option<Scheduled> {
        if self.front_is_in_order() { self.in_order.pop_front() } else { self.others.pop().map(|Reverse(s)| s) }
    }
}

#[cfg(test)]
mod tests {
    use super::{Agenda, Item, Scheduled};

    /// Arrivals in time order, arrivals out of it and timers, mixed: the
    /// agenda pops them all exactly in key order, as one heap would.
    #[test]
    fn the_agenda_pops_in_key_order_whatever_queue_an_item_went_to() {
        let mut agenda = Agenda::default();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut now = 0u64;
        let mut keys = Vec::new();
        for order in 0..5_000u64 {
            let r = next();
            // Mostly arrivals a fixed latency ahead (in order), some jittered
            // (out of order), some timers far ahead; the clock moves on.
            now += r % 3;
            let (at, item) = match r % 10 {
                0 => (now + 1_000 + next() % 500, Item::HostTimer { host: 0, generation: order }),
                1 => (now + next() % 20, Item::Arrival(order as u32)),
                _ => (now + 10, Item::Arrival(order as u32)),
            };
            let key = u128::from(at) << 64 | u128::from(order);
            keys.push(key);
            agenda.push(Scheduled { key, item });
            if r % 4 == 0 {
                // Pops interleave with pushes, as in a running world.
                keys.sort_unstable();
                let popped = agenda.pop().map(|s| s.key);
                assert_eq!(popped, Some(keys.remove(0)));
            }
        }
        assert!(!agenda.in_order.is_empty() && !agenda.others.is_empty(), "both queues were used");
        keys.sort_unstable();
        for key in keys {
            assert_eq!(agenda.peek().map(|s| s.key), Some(key));
            assert_eq!(agenda.pop().map(|s| s.key), Some(key));
        }
        assert!(agenda.pop().is_none());
    }
}
