//! The TCP engine: RFC 9293 as a sans-IO state machine.
//!
//! Nothing in here reads a clock, touches a socket or spawns a task. Time is an
//! argument (`now`: a [`crate::time::Instant`] at the [`Stack`]'s API, kept as
//! nanoseconds inside a [`Tcb`]), randomness is an RNG the caller owns,
//! and every effect is an [`Output`] value pushed onto a list, so a test can
//! feed segments and instants and check exactly what comes out.
//!
//! # Layout
//! - [`seq`]: sequence-number arithmetic across the 2^32 wrap.
//! - [`segment`]: the segment, its options, encoding, decoding and checksum.
//! - [`state`]: the eleven states.
//! - [`profile`]: lab variants and tunables (plain data).
//! - [`rtt`]: RFC 6298's estimator.
//! - [`cc`]: congestion control (RFC 5681, RFC 6582, RFC 9438).
//! - [`reass`]: the reassembly queue of out-of-order segments.
//! - [`sack`]: the SACK blocks a receiver reports (RFC 2018, RFC 2883).
//! - [`tcb`]: one endpoint's state machine.
//! - [`stack`]: one host's endpoints, listeners, demultiplexing and timers.
//! - [`output`]: what the engine reports.

pub mod cc;
pub mod output;
pub mod profile;
mod reass;
mod recvbuf;
pub mod rtt;
pub mod sack;
pub mod segment;
mod sendbuf;
pub mod seq;
pub mod stack;
pub mod state;
pub mod tcb;

pub use cc::{CcAlgorithm, CcPhase, InitialWindow};
pub use output::{Cause, ConnError, ListenerId, Output, SocketId, TimerKind, UserCall};
pub use profile::{Handshake, Isn, Profile, Switch, WindowScale};
pub use sack::SackBlock;
pub use segment::{Flags, Segment, TcpOption};
pub use seq::SeqNumber;
pub use stack::{Delivery, Stack, StackError};
pub use state::State;
pub use tcb::{Keepalive, Tcb, TcbStatus, UserError};
