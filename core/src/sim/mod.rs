//! The simulated network of one session: hosts, links, impairments, fault
//! rules, injection, a discrete-event scheduler on a virtual clock, and the
//! numbered event log. No tokio, no wall clock, no unseeded randomness.
//!
//! # Layout
//! - [`world`]: the world and its commands.
//! - [`link`]: per-direction link impairments.
//! - [`fault`]: fault rules.
//! - [`event`]: the event log's entries.
//! - [`fate`]: what became of a segment, in one vocabulary.

pub mod event;
pub mod fate;
pub mod fault;
pub mod link;
pub mod world;

pub use event::{ConnId, DropReason, Event, EventKind, Side, WireSegment};
pub use fate::{Fate, SegmentOutcome};
pub use fault::{FaultAction, FaultRule, FaultSpec, SegmentMatch};
pub use link::LinkParams;
pub use world::{
    CloseHow, ConnectSpec, Connection, DEFAULT_RUN_MAX_ITEMS, End, HostId, HostKind, InjectSpec, ListenSpec, RawPacket,
    RunCap, RunOutcome, Unaccepted, World, WorldConfig, WorldError,
};
