//! The world's event log: what happened, numbered from 1 without gaps.
//!
//! Why a part of its own: the numbering is a promise (the store, the event
//! stream and a restore by replay all rely on it having no gaps), and it is
//! kept by one method, [`EventLog::push`], that every other part goes
//! through.

use crate::sim::event::{Event, EventKind};
use crate::time::Instant;

/// Events not yet taken, and the number the next one gets.
pub(super) struct EventLog {
    events: Vec<Event>,
    next_seq: u64,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog { events: Vec::new(), next_seq: 1 }
    }
}

impl EventLog {
    /// Logs what happened at `now` under the next number.
    pub(super) fn push(&mut self, now: Instant, kind: EventKind) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push(Event { seq, t_ns: now.as_nanos(), kind });
    }

    /// Events since the last [`EventLog::take`], in order.
    pub(super) fn events(&self) -> &[Event] {
        &self.events
    }

    /// Takes the events logged so far (the numbering continues).
    pub(super) fn take(&mut self) -> Vec<Event> {
        // The next batch is likely as large as this one: give it the room now
        // rather than growing (and copying) the log from empty again.
        let room = self.events.len().min(1 << 16);
        std::mem::replace(&mut self.events, Vec::with_capacity(room))
    }

    /// The number the next event will get.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::{EventLog, Instant};
    use crate::engine::TimerKind;
    use crate::sim::event::EventKind;

    fn kind() -> EventKind {
        EventKind::TimerFired { connection: None, host: "A".into(), side: None, timer: TimerKind::Retransmit }
    }

    /// Taking the events does not restart the numbering: no gap, no repeat.
    #[test]
    fn numbers_run_on_across_takes() {
        let mut log = EventLog::default();
        log.push(Instant::from_nanos(5), kind());
        log.push(Instant::from_nanos(7), kind());
        let first = log.take();
        log.push(Instant::from_nanos(9), kind());
        assert_eq!(first.iter().map(|e| (e.seq, e.t_ns)).collect::<Vec<_>>(), [(1, 5), (2, 7)]);
        assert_eq!(log.events().iter().map(|e| (e.seq, e.t_ns)).collect::<Vec<_>>(), [(3, 9)]);
        assert_eq!(log.next_seq(), 4);
    }
}
