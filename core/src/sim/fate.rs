//! What became of a segment, in one vocabulary and by one rule, for every
//! reader of the event log: `GET .../segments`, `/metrics`, lab
//! expectations and the dashboard all say `delivered`, `lost`, `corrupted`,
//! `dropped` (with its [`DropReason`]), `held` or `in_flight` for the same
//! segment, because they all ask [`SegmentOutcome`].

use serde::{Deserialize, Serialize};

use super::event::{DropReason, EventKind};

/// One word for what happened to a segment (or to one copy of it) on its way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Still on its way (sent, not yet delivered or dropped; or released by a fault rule).
    #[default]
    InFlight,
    /// It reached its host's TCP.
    Delivered,
    /// The link lost it (its `loss` probability, [`DropReason::Loss`]).
    Lost,
    /// A flipped bit made the receiver's checksum reject it ([`DropReason::BadChecksum`]).
    Corrupted,
    /// It never reached TCP for another reason: a fault rule, no listener,
    /// no route, not a segment, a full backlog (the reason says which).
    Dropped,
    /// A fault rule holds it until released.
    Held,
    /// A copy of it was made on the way (a remark: the segment's fate is its copies').
    Duplicated,
    /// It was held back on the way (a remark: it is still on its way).
    Delayed,
    /// A fault rule let it go on (a remark: it is on its way again).
    Released,
}

impl Fate {
    /// Every fate, in the order `/metrics` counts them after `sent`.
    pub const ALL: [Fate; 9] = [
        Fate::InFlight,
        Fate::Delivered,
        Fate::Lost,
        Fate::Corrupted,
        Fate::Dropped,
        Fate::Held,
        Fate::Duplicated,
        Fate::Delayed,
        Fate::Released,
    ];

    /// The name every interface uses for it.
    pub const fn name(self) -> &'static str {
        match self {
            Fate::InFlight => "in_flight",
            Fate::Delivered => "delivered",
            Fate::Lost => "lost",
            Fate::Corrupted => "corrupted",
            Fate::Dropped => "dropped",
            Fate::Held => "held",
            Fate::Duplicated => "duplicated",
            Fate::Delayed => "delayed",
            Fate::Released => "released",
        }
    }

    /// The fate a drop of this reason is: `loss` is `lost`, `bad_checksum`
    /// is `corrupted`, every other reason is `dropped`.
    pub fn of_drop(reason: DropReason) -> Fate {
        match reason {
            // A full queue loses the segment on the wire, as the link's loss does.
            DropReason::Loss | DropReason::QueueFull => Fate::Lost,
            DropReason::BadChecksum => Fate::Corrupted,
            DropReason::Fault
            | DropReason::NoListener
            | DropReason::NoRoute
            | DropReason::Malformed
            | DropReason::Backlog => Fate::Dropped,
        }
    }

    /// What an event says about its segment: `None` for the send itself and
    /// for events that are not about a segment on its way.
    pub fn of(kind: &EventKind) -> Option<(Fate, Option<DropReason>)> {
        Some(match kind {
            EventKind::SegmentDelivered { .. } => (Fate::Delivered, None),
            EventKind::SegmentDropped { reason, .. } => (Fate::of_drop(*reason), Some(*reason)),
            EventKind::SegmentHeld { .. } => (Fate::Held, None),
            EventKind::SegmentReleased { .. } => (Fate::Released, None),
            EventKind::SegmentDuplicated { .. } => (Fate::Duplicated, None),
            EventKind::SegmentDelayed { .. } => (Fate::Delayed, None),
            EventKind::SegmentSent { .. }
            | EventKind::StateChanged { .. }
            | EventKind::TimerFired { .. }
            | EventKind::ConnectionError { .. }
            | EventKind::CongestionChanged { .. }
            | EventKind::SegmentQueued { .. } => return None,
        })
    }

    /// Whether the segment never reached TCP.
    pub fn is_drop(self) -> bool {
        matches!(self, Fate::Lost | Fate::Corrupted | Fate::Dropped)
    }
}

impl std::fmt::Display for Fate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What became of one segment so far, from its events in log order. The
/// one rule: a segment that reached TCP (any copy of it) is `delivered`;
/// otherwise its last drop decides (`lost`, `corrupted`, `dropped` with the
/// reason); a held segment is `held` until released, and then in flight
/// again; duplication and delay are remarks that leave it in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentOutcome {
    /// Where it stands.
    pub fate: Fate,
    /// Why it was dropped, when [`Fate::is_drop`].
    pub reason: Option<DropReason>,
}

impl SegmentOutcome {
    /// Takes one more of the segment's events into account.
    pub fn record(&mut self, fate: Fate, reason: Option<DropReason>) {
        if self.fate == Fate::Delivered {
            return;
        }
        match fate {
            Fate::Delivered | Fate::Lost | Fate::Corrupted | Fate::Dropped | Fate::Held => {
                self.fate = fate;
                self.reason = reason;
            }
            Fate::Released if self.fate == Fate::Held => {
                self.fate = Fate::InFlight;
                self.reason = None;
            }
            Fate::Released | Fate::Duplicated | Fate::Delayed | Fate::InFlight => {}
        }
    }

    /// The outcome of segment `id` among `events`.
    pub fn of_segment(events: &[super::Event], id: u64) -> SegmentOutcome {
        let mut outcome = SegmentOutcome::default();
        for e in events {
            if e.kind.segment().is_some_and(|w| w.id == id) {
                if let Some((fate, reason)) = Fate::of(&e.kind) {
                    outcome.record(fate, reason);
                }
            }
        }
        outcome
    }
}

impl std::fmt::Display for SegmentOutcome {
    /// `delivered`, `lost`, `corrupted`, or `dropped (no_listener)`: the
    /// reason is named where the fate does not already say it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.fate, self.reason) {
            (Fate::Dropped, Some(reason)) => write!(f, "dropped ({})", reason.name()),
            (fate, _) => f.write_str(fate.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(steps: &[(Fate, Option<DropReason>)]) -> SegmentOutcome {
        let mut o = SegmentOutcome::default();
        for (fate, reason) in steps {
            o.record(*fate, *reason);
        }
        o
    }

    #[test]
    fn a_delivered_copy_makes_the_segment_delivered() {
        let lost_then_copy_delivered =
            outcome(&[(Fate::Duplicated, None), (Fate::Lost, Some(DropReason::Loss)), (Fate::Delivered, None)]);
        assert_eq!(lost_then_copy_delivered.fate, Fate::Delivered);
        let delivered_then_copy_dropped = outcome(&[
            (Fate::Duplicated, None),
            (Fate::Delivered, None),
            (Fate::Dropped, Some(DropReason::NoListener)),
        ]);
        assert_eq!(delivered_then_copy_dropped, SegmentOutcome { fate: Fate::Delivered, reason: None });
    }

    #[test]
    fn drops_name_their_reason_and_a_release_puts_it_back_on_its_way() {
        let dropped = outcome(&[(Fate::Dropped, Some(DropReason::NoListener))]);
        assert_eq!(dropped.to_string(), "dropped (no_listener)");
        assert_eq!(outcome(&[(Fate::Corrupted, Some(DropReason::BadChecksum))]).to_string(), "corrupted");
        assert_eq!(outcome(&[(Fate::Held, None)]).fate, Fate::Held);
        assert_eq!(outcome(&[(Fate::Held, None), (Fate::Released, None)]).fate, Fate::InFlight);
        assert_eq!(outcome(&[(Fate::Delayed, None)]).fate, Fate::InFlight);
        assert_eq!(Fate::of_drop(DropReason::Loss), Fate::Lost);
        assert_eq!(Fate::of_drop(DropReason::Fault), Fate::Dropped);
    }

    #[test]
    fn names_round_trip_through_serde() {
        for fate in Fate::ALL {
            let json = serde_json::to_value(fate).expect("serializes");
            assert_eq!(json, fate.name());
            assert_eq!(serde_json::from_value::<Fate>(json).expect("deserializes"), fate);
        }
    }
}
