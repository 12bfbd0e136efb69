//! The ASCII ladder diagram: two hosts as two vertical lines, time flowing
//! down, one arrow per segment labelled with its flags, seq, ack, len and
//! window, drops marked with `X`, and each side's state printed where it
//! changes -- the figures of the seed text, drawn from a run's events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use crate::engine::TimerKind;
use crate::sim::{ConnId, DropReason, Event, EventKind, Side, WireSegment};

/// A remark a lab placed between events (`note = "..."`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Index of the first event after the note.
    pub before_event: usize,
    /// Virtual time of the note.
    pub t_ns: u64,
    /// The remark.
    pub text: String,
}

/// Rows a ladder draws at most: a diagram is for reading, and a run of a
/// million events would otherwise be a diagram of a hundred megabytes. The
/// events past it are counted in a last line (the session has them all).
pub const MAX_LADDER_ROWS: usize = 5_000;

/// Columns a ladder is drawn in: a terminal's width with room to spare, and
/// what a code review or a course handout shows without wrapping.
pub const LADDER_WIDTH: usize = 100;

/// `text` as lines of at most [`LADDER_WIDTH`] columns for the reports printed
/// beside a ladder: the first line starts with `first`, the rest with
/// `hanging` (so a wrapped check or description still reads as one item).
/// Breaks between words; a word longer than a line is cut, so no line is
/// ever wider than the ladder above it.
pub fn wrap(text: &str, first: &str, hanging: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = first.to_string();
    let mut width = first.chars().count();
    let mut empty = true;
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while !word.is_empty() {
            let gap = usize::from(!empty);
            if width + gap + word.len() <= LADDER_WIDTH {
                if !empty {
                    line.push(' ');
                }
                line.extend(word.drain(..));
            } else if empty {
                // Longer than a whole line: cut what fits and carry the rest.
                let cut = LADDER_WIDTH.saturating_sub(width).clamp(1, word.len());
                line.extend(word.drain(..cut));
            }
            width = line.chars().count();
            empty = false;
            if !word.is_empty() {
                lines.push(std::mem::replace(&mut line, hanging.to_string()));
                width = hanging.chars().count();
                empty = true;
            }
        }
    }
    lines.push(line);
    lines
}

const TIME_W: usize = 10;
/// The left side's column: a state with the endpoint it belongs to where a
/// host has several (`LISTEN (listener)`, `SYN_RECEIVED [c]`).
const SIDE_W: usize = 17;
/// The right side's column after its line, as wide as the left one.
const RIGHT_W: usize = 17;
/// Between the two vertical lines: what is left of [`LADDER_WIDTH`].
const MID_W: usize = LADDER_WIDTH - TIME_W - 2 - SIDE_W - 2 - 2 - RIGHT_W;

/// What became of one segment, gathered before drawing its arrow.
#[derive(Default)]
struct SegInfo {
    drop: Option<DropReason>,
    delayed_ns: Option<u64>,
    held: bool,
    duplicated: bool,
}

/// One end seen at a host: its connection (none for a listener) and side.
type Endpoint = (Option<ConnId>, Option<Side>);

/// Draws the events between hosts `a` (left) and `b` (right). Connection
/// ids found in `labels` are printed by name when a host has more than one
/// endpoint; `notes` are printed where they were made.
pub fn ladder(events: &[Event], a: &str, b: &str, labels: &BTreeMap<ConnId, String>, notes: &[Note]) -> String {
    let mut info: HashMap<u64, SegInfo> = HashMap::new();
    let mut endpoints: HashMap<&str, HashSet<Endpoint>> = HashMap::new();
    for e in events {
        match &e.kind {
            EventKind::SegmentDropped { reason, segment, .. } => {
                info.entry(segment.id).or_default().drop = Some(*reason)
            }
            EventKind::SegmentDelayed { delay_ns, segment, .. } => {
                info.entry(segment.id).or_default().delayed_ns = Some(*delay_ns);
            }
            EventKind::SegmentHeld { segment, .. } => info.entry(segment.id).or_default().held = true,
            EventKind::SegmentDuplicated { segment, .. } => info.entry(segment.id).or_default().duplicated = true,
            EventKind::StateChanged { host, connection, side, .. } => {
                endpoints.entry(host).or_default().insert((*connection, *side));
            }
            _ => {}
        }
    }
    // Name the endpoint only where a host has more than one connection end.
    let crowded =
        |host: &str| endpoints.get(host).is_some_and(|set| set.iter().filter(|(c, _)| c.is_some()).count() > 1);
    let who = |connection: &Option<ConnId>, side: &Option<Side>| match (connection, side) {
        (Some(c), Some(s)) => {
            let name = labels.get(c).cloned().unwrap_or_else(|| format!("#{c}"));
            let _ = s;
            format!(" [{name}]")
        }
        _ => " (listener)".to_string(),
    };

    let mut out = String::new();
    let _ = writeln!(out, "{:>TIME_W$}  {:<SIDE_W$}{a:<w$}{b}", "t (ms)", "", w = MID_W + 1);
    let mut last_t = None;
    let rows = std::cell::Cell::new(0usize);
    let mut row = |out: &mut String, t: u64, left: &str, mid: &str, right: &str| {
        rows.set(rows.get() + 1);
        let time = if last_t == Some(t) { String::new() } else { format!("{:.3}", t as f64 / 1e6) };
        last_t = Some(t);
        let line = format!("{time:>TIME_W$}  {left:<SIDE_W$}|{mid:<MID_W$}|  {right}");
        let _ = writeln!(out, "{}", line.trim_end());
    };
    let mut notes = notes.iter().peekable();
    for (index, e) in events.iter().enumerate() {
        if rows.get() >= MAX_LADDER_ROWS {
            let _ = writeln!(out, "{:>TIME_W$}  ... {} more events not drawn", "", events.len() - index);
            break;
        }
        while let Some(note) = notes.next_if(|n| n.before_event <= index) {
            write_wrapped(&mut out, &note.text, &format!("{:>TIME_W$}  # ", ""), &format!("{:>TIME_W$}    ", ""));
        }
        match &e.kind {
            EventKind::StateChanged { host, connection, side, to, .. } => {
                let mut text = to.name().to_string();
                if crowded(host) {
                    text.push_str(&who(connection, side));
                }
                if &**host == a {
                    row(&mut out, e.t_ns, &text, "", "");
                } else if &**host == b {
                    row(&mut out, e.t_ns, "", "", &text);
                }
            }
            EventKind::SegmentSent { segment, .. } => {
                let seg_info = info.get(&segment.id);
                if is_between(segment, a, b) {
                    let full = label(segment, seg_info);
                    // A label too long for its arrow (ten-digit random ISNs,
                    // several remarks) goes on a line of its own just above
                    // it, and the arrow carries only the segment's number.
                    let text = if fits(&full) {
                        full
                    } else {
                        let margin = format!("{:>TIME_W$}  {:<SIDE_W$}|  ", "", "");
                        write_wrapped(&mut out, &full, &margin, &format!("{margin}  "));
                        format!("#{}", segment.id)
                    };
                    let mid = arrow(segment, a, &text, seg_info);
                    let (left, right) = drop_note(segment, a, seg_info);
                    row(&mut out, e.t_ns, &left, &mid, &right);
                }
            }
            EventKind::SegmentDelivered { segment, .. } => {
                let late = info.get(&segment.id).is_some_and(|i| i.delayed_ns.is_some() || i.held);
                if late && is_between(segment, a, b) {
                    let text = format!(" #{} arrives now ", segment.id);
                    let mid = if &*segment.from == a {
                        format!("{text:~>w$}>", w = MID_W - 1)
                    } else {
                        format!("<{text:~<w$}", w = MID_W - 1)
                    };
                    row(&mut out, e.t_ns, "", &mid, "");
                }
            }
            EventKind::SegmentReleased { segment, .. } if is_between(segment, a, b) => {
                let text = format!("  #{} released", segment.id);
                row(&mut out, e.t_ns, "", &text, "");
            }
            EventKind::TimerFired { host, timer, connection, side } => {
                let mut text = match timer {
                    TimerKind::Retransmit => "(RTO expires)".to_string(),
                    TimerKind::TimeWait => "(2MSL expires)".to_string(),
                    TimerKind::Persist => "(persist timer)".to_string(),
                    TimerKind::DelayedAck => "(delayed ACK)".to_string(),
                    TimerKind::Keepalive => "(keepalive)".to_string(),
                };
                if crowded(host) {
                    text.push_str(&who(connection, side));
                }
                if &**host == a {
                    row(&mut out, e.t_ns, &text, "", "");
                } else if &**host == b {
                    row(&mut out, e.t_ns, "", "", &text);
                }
            }
            EventKind::ConnectionError { host, error, .. } => {
                let text = error.errno().to_string();
                if &**host == a {
                    row(&mut out, e.t_ns, &text, "", "");
                } else if &**host == b {
                    row(&mut out, e.t_ns, "", "", &text);
                }
            }
            _ => {}
        }
    }
    for note in notes {
        let text = format!("{} (t={:.3})", note.text, note.t_ns as f64 / 1e6);
        write_wrapped(&mut out, &text, &format!("{:>TIME_W$}  # ", ""), &format!("{:>TIME_W$}    ", ""));
    }
    // Host and connection names are the user's: a long one can push a row
    // past the width, and then the reader is told what width shows it whole.
    let widest = out.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    if widest > LADDER_WIDTH {
        let hint = format!(
            "(long host or connection names make this ladder {widest} columns wide: \
             widen the terminal to {widest} columns or page it with `less -S`)"
        );
        write_wrapped(&mut out, &hint, &format!("{:>TIME_W$}  ", ""), &format!("{:>TIME_W$}   ", ""));
    }
    out
}

/// `text` wrapped to the ladder's width (see [`wrap`]) and written as lines.
pub(crate) fn write_wrapped(out: &mut String, text: &str, first: &str, hanging: &str) {
    for line in wrap(text, first, hanging) {
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn is_between(w: &WireSegment, a: &str, b: &str) -> bool {
    (&*w.from == a && &*w.to == b) || (&*w.from == b && &*w.to == a)
}

/// The label of an arrow: `#3 ACK seq=301 ack=501 len=0 win=65535`.
fn label(w: &WireSegment, info: Option<&SegInfo>) -> String {
    let s = &w.segment;
    let mut text =
        format!("#{} {} seq={} ack={} len={} win={}", w.id, s.flags, s.seq.0, s.ack.0, s.payload.len(), s.window);
    if w.retransmission {
        text.push_str(" rtx");
    }
    if w.injected {
        text.push_str(" injected");
    }
    if let Some(i) = info {
        if let Some(d) = i.delayed_ns {
            text.push_str(&format!(" delayed {:.0}ms", d as f64 / 1e6));
        }
        if i.duplicated {
            text.push_str(" dup");
        }
    }
    text
}

/// Where the segment dies: in the network (`--X`), or at the receiver (`X|`).
fn in_network(reason: DropReason) -> bool {
    matches!(reason, DropReason::Loss | DropReason::Fault | DropReason::NoRoute | DropReason::QueueFull)
}

/// Whether a label fits in an arrow between the lines (with its head, tail
/// and the spaces around it).
fn fits(text: &str) -> bool {
    // `-- {text} --X` and `X-- {text} --` are the widest forms: 7 around the text.
    text.len() + 7 <= MID_W
}

/// The arrow of a segment between `a` and the other host, labelled `text`.
fn arrow(w: &WireSegment, a: &str, text: &str, info: Option<&SegInfo>) -> String {
    let rightwards = &*w.from == a;
    let drop = info.and_then(|i| i.drop);
    let held = info.is_some_and(|i| i.held);
    match (rightwards, drop, held) {
        (true, _, true) => format!("-- {text} --H"),
        (false, _, true) => format!("{:>w$}", format!("H-- {text} --"), w = MID_W),
        (true, Some(r), _) if in_network(r) => format!("-- {text} --X"),
        (false, Some(r), _) if in_network(r) => format!("{:>w$}", format!("X-- {text} --"), w = MID_W),
        (true, drop, _) => {
            let head = if drop.is_some() { 'X' } else { '>' };
            format!("{:-<w$}{head}", format!("-- {text} "), w = MID_W - 1)
        }
        (false, drop, _) => {
            let head = if drop.is_some() { 'X' } else { '<' };
            format!("{head}{:->w$}", format!(" {text} --"), w = MID_W - 1)
        }
    }
}

/// The text beside a dropped or held segment, on the side where it died.
fn drop_note(w: &WireSegment, a: &str, info: Option<&SegInfo>) -> (String, String) {
    let Some(info) = info else { return (String::new(), String::new()) };
    let text = match (info.drop, info.held) {
        (_, true) => "H held (fault)".to_string(),
        (Some(DropReason::Loss), _) => "X lost".to_string(),
        (Some(DropReason::Fault), _) => "X fault rule".to_string(),
        (Some(DropReason::NoRoute), _) => "X no route".to_string(),
        (Some(DropReason::NoListener), _) => "X no listener".to_string(),
        (Some(DropReason::BadChecksum), _) => "X bad checksum".to_string(),
        (Some(DropReason::Malformed), _) => "X malformed".to_string(),
        (Some(DropReason::Backlog), _) => "X backlog full".to_string(),
        (Some(DropReason::QueueFull), _) => "X queue full".to_string(),
        (None, false) => return (String::new(), String::new()),
    };
    if &*w.from == a { (String::new(), text) } else { (text, String::new()) }
}
