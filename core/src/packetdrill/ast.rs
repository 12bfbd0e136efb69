//! The parsed form of a packetdrill script: what the parser produces and the
//! runner consumes. Plain data, so that tests can build and compare it.

/// A whole script after `#ifdef` selection.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Script {
    /// The file it came from (for messages).
    pub path: String,
    /// `--name=value` header lines, in order.
    pub options: Vec<(String, String)>,
    /// The timeline.
    pub events: Vec<Event>,
}

impl Script {
    /// The value of a `--name=value` header option, if given.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// When an event happens, in microseconds, as the script writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Time {
    /// From the start of the script (`0.1`).
    Absolute(i64),
    /// From the previous event (`+0.1`).
    Relative(i64),
    /// Any time between two instants (`1.0...6.0`, `+0...+2`); each end absolute or relative.
    Range(TimePoint, TimePoint),
    /// Any time at all (`*`).
    Any,
}

/// One end of a ranged time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimePoint {
    /// From the start of the script.
    Absolute(i64),
    /// From the previous event.
    Relative(i64),
}

/// One line of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// 1-based line number in the file.
    pub line: usize,
    /// The line as written (trimmed, comments removed), for messages.
    pub text: String,
    /// When.
    pub time: Time,
    /// What.
    pub kind: EventKind,
}

/// What an event does.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// A segment to inject (`<`) or to expect (`>`).
    Packet(Packet),
    /// A socket call and its expected result.
    Syscall(Syscall),
    /// A backtick shell command.
    Shell(String),
    /// A `%{ ... }%` block of Python-like asserts.
    Python(String),
}

/// Which way a packet line goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `<`: from the script to the tested stack.
    Inbound,
    /// `>`: from the tested stack, expected by the script.
    Outbound,
}

/// A TCP packet line.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// `<` or `>`.
    pub direction: Direction,
    /// The flag letters as written (`S`, `S.`, `F.`, `P.`, `R`, ...).
    pub flags: String,
    /// First sequence number (relative).
    pub start: u32,
    /// Sequence number after the data (relative).
    pub end: u32,
    /// Payload length in octets.
    pub len: u32,
    /// `ack N` (relative), when written.
    pub ack: Option<u32>,
    /// `win N`, when written.
    pub win: Option<u32>,
    /// `<...>` TCP options: `None` when absent, `Some(None)` for `<...>` (any options).
    pub options: Option<Option<Vec<PdOption>>>,
}

/// A TCP option as packetdrill spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PdOption {
    /// `mss N`.
    Mss(u16),
    /// `nop`.
    Nop,
    /// `eol`.
    Eol,
    /// `wscale N`.
    Wscale(u8),
    /// `sackOK`.
    SackOk,
    /// `TS val N ecr N`.
    Timestamp {
        /// TSval.
        val: u32,
        /// TSecr.
        ecr: u32,
    },
    /// `sack a:b c:d`.
    Sack(Vec<(u32, u32)>),
}

/// A value in a system call's argument list or result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// A number (decimal or `0x` hexadecimal).
    Int(i64),
    /// `...`: anything.
    Ellipsis,
    /// A symbol such as `SOCK_STREAM` or `EINPROGRESS`.
    Name(String),
    /// `A | B`.
    Or(Vec<Expr>),
    /// `[x]`.
    List(Vec<Expr>),
    /// `{name=value, ...}`.
    Struct(Vec<(String, Expr)>),
    /// A quoted string.
    Str(String),
}

impl Expr {
    /// The integer value of a number or of a one-element list holding one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Expr::Int(n) => Some(*n),
            Expr::List(items) if items.len() == 1 => items[0].int(),
            _ => None,
        }
    }

    /// The symbol of a name or of a one-element list holding one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Expr::Name(n) => Some(n),
            Expr::List(items) if items.len() == 1 => items[0].name(),
            _ => None,
        }
    }
}

/// A system call line: `name(args) = result [ERRNO] [(note)]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syscall {
    /// The call.
    pub name: String,
    /// Its arguments.
    pub args: Vec<Expr>,
    /// The expected return value.
    pub result: Expr,
    /// The expected errno, when the result is -1.
    pub errno: Option<String>,
    /// The parenthesised note after the result, if any.
    pub note: Option<String>,
}
