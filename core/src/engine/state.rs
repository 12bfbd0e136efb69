//! The eleven connection states of RFC 9293 section 3.3.2.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A connection's state, spelled in JSON, events and diagrams exactly as the
/// RFC's state diagram spells it (with `_` for `-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// No connection (a fictional state: the TCB does not exist).
    Closed,
    /// Waiting for a connection request from any remote TCP peer.
    Listen,
    /// Waiting for a matching connection request after having sent one.
    SynSent,
    /// Waiting for an acknowledgment of our SYN after having received one and sent ours.
    #[serde(rename = "SYN_RECEIVED")]
    SynReceived,
    /// An open connection: data flows both ways.
    Established,
    /// We sent FIN; waiting for its ACK or the peer's FIN.
    #[serde(rename = "FIN_WAIT_1")]
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's FIN.
    #[serde(rename = "FIN_WAIT_2")]
    FinWait2,
    /// The peer sent FIN; waiting for our user to CLOSE (we may still send).
    CloseWait,
    /// Both sides sent FIN; waiting for the ACK of ours.
    Closing,
    /// The peer closed first and we sent our FIN; waiting for its ACK.
    LastAck,
    /// Waiting 2*MSL so that the last ACK can be repeated and old segments die out.
    TimeWait,
}

impl State {
    /// All states in the order of RFC 9293's list.
    pub const ALL: [State; 11] = [
        State::Closed,
        State::Listen,
        State::SynSent,
        State::SynReceived,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::CloseWait,
        State::Closing,
        State::LastAck,
        State::TimeWait,
    ];

    /// The name used in JSON and diagrams.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN_SENT",
            State::SynReceived => "SYN_RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN_WAIT_1",
            State::FinWait2 => "FIN_WAIT_2",
            State::CloseWait => "CLOSE_WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST_ACK",
            State::TimeWait => "TIME_WAIT",
        }
    }

    /// Parses a state name as [`State::name`] prints it.
    pub fn from_name(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Synchronized states: both ISNs are known (RFC 9293 section 3.5).
    pub fn is_synchronized(self) -> bool {
        !matches!(self, State::Closed | State::Listen | State::SynSent | State::SynReceived)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_match_display_names() {
        for state in State::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.name()));
            assert_eq!(State::from_name(state.name()), Some(state));
        }
    }
}
