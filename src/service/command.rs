//! The command log: every user command a session ran, in order, stored
//! beside its events (table `commands`). It says what the user did where the
//! events say what the TCP did; an ended session's host addresses are read
//! back from it. Written and read as one type, so a field added to a request
//! is stored and read without a second list of names.

use serde::{Deserialize, Serialize};

use super::model::{AddFault, AddHost, AddListener, ClockRequest, Inject, OpenConnection, SetLink};
use crate::engine::Profile;
use crate::sim::{CloseHow, Side};

/// One command as the log stores it: `{"op": "add_host", "args": {...}}`,
/// the request as the service took it (after REST's or gRPC's parsing).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// `POST .../hosts`.
    AddHost {
        /// The request.
        args: AddHost,
    },
    /// `PUT .../links`.
    SetLink {
        /// The request.
        args: SetLink,
    },
    /// `POST .../listeners`.
    Listen {
        /// The request.
        args: AddListener,
    },
    /// `POST .../listeners/{lid}/accept`.
    Accept {
        /// The listener.
        listener: u64,
    },
    /// `DELETE .../listeners/{lid}`.
    CloseListener {
        /// The listener.
        listener: u64,
    },
    /// `POST .../connections`.
    Connect {
        /// The request.
        args: OpenConnection,
    },
    /// `POST .../connections/{cid}/send` (the octets are in the events, not here).
    Send {
        /// The connection.
        connection: u64,
        /// The end that sends.
        side: Side,
        /// How many octets were offered.
        bytes: usize,
    },
    /// `POST .../connections/{cid}/close`.
    Close {
        /// The connection.
        connection: u64,
        /// The end that closes.
        side: Side,
        /// A shutdown of the sending side or a close of the socket (logs
        /// from before the choice existed read as the shutdown they were).
        #[serde(default)]
        how: CloseHow,
    },
    /// `POST .../connections/{cid}/abort`.
    Abort {
        /// The connection.
        connection: u64,
        /// The end that aborts.
        side: Side,
    },
    /// `POST .../faults`.
    AddFault {
        /// The request.
        args: AddFault,
    },
    /// `DELETE .../faults/{fid}`.
    DeleteFault {
        /// The rule.
        fault: u64,
    },
    /// `POST .../faults/{fid}/release`.
    ReleaseFault {
        /// The rule.
        fault: u64,
    },
    /// `POST .../inject`.
    Inject {
        /// The request.
        args: Inject,
    },
    /// `POST .../clock`.
    Clock {
        /// The request.
        args: ClockRequest,
    },
    /// `POST .../packetdrill` (the script's size, not its text).
    Packetdrill {
        /// The profile the request gave (the script's or the session's when absent).
        profile: Option<Profile>,
        /// Names the request defined for `#ifdef`.
        defines: Vec<String>,
        /// Lines in the script.
        lines: usize,
    },
    /// `PATCH .../profile`: settings of the session's profile changed while it runs.
    PatchProfile {
        /// The settings as the request named them (`profile.<key>` overrides).
        settings: serde_json::Map<String, serde_json::Value>,
    },
    /// `POST /api/v1/labs/{name}/runs`: the session runs this lab's variant.
    RunLab {
        /// Which lab and variant.
        args: RunLabArgs,
    },
}

/// The lab and variant a lab session runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunLabArgs {
    /// The lab's name.
    pub lab: String,
    /// The variant's name.
    pub variant: String,
}
