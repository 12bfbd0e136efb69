//! The packetdrill script parser: `#ifdef` selection and comment stripping
//! line by line, then each line parsed with winnow combinators after
//! google/packetdrill's `parser.y` for the constructs scripts use.

use std::collections::BTreeSet;

use winnow::ascii::{digit1, hex_digit1, space0, space1};
use winnow::combinator::{alt, cut_err, delimited, eof, opt, preceded, separated, terminated};
use winnow::error::{ContextError, StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::token::{take_till, take_until, take_while};

use super::ast::{Direction, Event, EventKind, Expr, Packet, PdOption, Script, Syscall, Time, TimePoint};

/// A script that cannot be parsed: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}")]
pub struct ParseError {
    /// The file.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters of the line as written).
    pub column: usize,
    /// What went wrong.
    pub message: String,
    /// The [`ParseLimits`] limit the script passed, when that is what is
    /// wrong: its configuration name and value.
    pub limit: Option<(&'static str, u64)>,
}

/// What a script may ask of the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Lines of text (the server's `max_script_lines`).
    pub max_lines: usize,
    /// Nesting of `[ ]` and `{ }` in an expression (`max_nesting_depth`):
    /// the expression grammar recurses once per level, so without a bound a
    /// few KB of brackets overflow the stack.
    pub max_nesting_depth: usize,
}

impl Default for ParseLimits {
    /// No line limit; the server's default nesting depth, which no real
    /// script comes near (`{ linger = { l_onoff = 1 } }` is two).
    fn default() -> Self {
        ParseLimits { max_lines: usize::MAX, max_nesting_depth: 32 }
    }
}

/// The most payload an injected (`<`) segment can carry: an IPv4
/// datagram's 65,535 octets less the IP and TCP headers (RFC 791, RFC 9293).
pub const MAX_INBOUND_PAYLOAD: u32 = 65_535 - 20 - 20;

/// Parses a script's text with [`ParseLimits::default`]; `defines` are the
/// names `#ifdef` sees as defined.
///
/// # Errors
/// The first [`ParseError`], naming the file, line and column.
pub fn parse_script(path: &str, text: &str, defines: &BTreeSet<String>) -> Result<Script, ParseError> {
    parse_script_with(path, text, defines, &ParseLimits::default())
}

/// [`parse_script`] within `limits`.
///
/// # Errors
/// The first [`ParseError`]; over a limit, one with [`ParseError::limit`] set.
pub fn parse_script_with(
    path: &str,
    text: &str,
    defines: &BTreeSet<String>,
    limits: &ParseLimits,
) -> Result<Script, ParseError> {
    let err = |line: usize, column: usize, message: String| ParseError {
        path: path.to_string(),
        line,
        column,
        message,
        limit: None,
    };
    if let Some((index, _)) = text.lines().enumerate().nth(limits.max_lines) {
        return Err(ParseError {
            limit: Some(("max_script_lines", limits.max_lines as u64)),
            ..err(index + 1, 1, format!("more than {} lines", limits.max_lines))
        });
    }
    let depth = Depth(limits.max_nesting_depth);
    let mut script = Script { path: path.to_string(), ..Script::default() };
    // The #ifdef stack: (this branch is taken, some branch of this block was taken, line of #ifdef).
    let mut conditions: Vec<(bool, bool, usize)> = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let mut in_block_comment = false;
    while let Some((number, raw)) = lines.next() {
        let mut line = strip_comment(raw, &mut in_block_comment);
        let trimmed = line.trim_start();
        if let Some(directive) = trimmed.strip_prefix('#') {
            let mut words = directive.split_whitespace();
            let word = words.next().unwrap_or("");
            let column = raw.find('#').unwrap_or(0) + 1;
            match word {
                "ifdef" | "ifndef" => {
                    let Some(name) = words.next() else {
                        return Err(err(number, column, format!("#{word} needs a name")));
                    };
                    let defined = defines.contains(name);
                    let taken = if word == "ifdef" { defined } else { !defined };
                    conditions.push((taken, taken, number));
                }
                "else" => match conditions.last_mut() {
                    Some((taken, any, _)) => {
                        *taken = !*any;
                        *any = true;
                    }
                    None => return Err(err(number, column, "#else without #ifdef".to_string())),
                },
                "endif" => {
                    if conditions.pop().is_none() {
                        return Err(err(number, column, "#endif without #ifdef".to_string()));
                    }
                }
                _ => return Err(err(number, column, format!("unknown directive #{word}"))),
            }
            continue;
        }
        if !conditions.iter().all(|c| c.0) {
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        // A %{ ... }% block may span lines: gather it.
        if trimmed.contains("%{") && !trimmed.contains("}%") {
            let mut joined = line.clone();
            loop {
                let Some((_, more)) = lines.next() else {
                    let column = raw.find("%{").unwrap_or(0) + 1;
                    return Err(err(number, column, "unterminated %{ block (no }%)".to_string()));
                };
                joined.push('\n');
                joined.push_str(more);
                if more.contains("}%") {
                    break;
                }
            }
            line = joined;
        }
        let indent = line.len() - line.trim_start().len();
        let body = line.trim();
        if body.starts_with("--") {
            match header_option.parse(body) {
                Ok((name, value)) => script.options.push((name, value)),
                Err(e) => return Err(err(number, indent + e.offset() + 1, describe(e.inner()))),
            }
            continue;
        }
        match (|i: &mut &str| event_line(i, depth)).parse(body) {
            Ok((time, kind)) => script.events.push(Event { line: number, text: body.to_string(), time, kind }),
            Err(e) if is_too_deep(e.inner()) => {
                return Err(ParseError {
                    limit: Some(("max_nesting_depth", limits.max_nesting_depth as u64)),
                    ..err(
                        number,
                        indent + e.offset() + 1,
                        format!("brackets and braces nested deeper than {} levels", limits.max_nesting_depth),
                    )
                });
            }
            Err(e) => return Err(err(number, indent + e.offset() + 1, describe(e.inner()))),
        }
    }
    if let Some(&(_, _, line)) = conditions.last() {
        return Err(err(line, 1, "#ifdef without #endif".to_string()));
    }
    Ok(script)
}

/// The line without `//` and `/* */` comments (outside backticks and quotes).
fn strip_comment(raw: &str, in_block: &mut bool) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if *in_block {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                *in_block = false;
            }
            continue;
        }
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None => {
                if c == '/' && chars.peek() == Some(&'/') {
                    break;
                }
                if c == '/' && chars.peek() == Some(&'*') {
                    chars.next();
                    *in_block = true;
                    continue;
                }
                if c == '`' || c == '"' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

fn describe(e: &ContextError) -> String {
    let text = e.to_string();
    if text.is_empty() { "syntax error".to_string() } else { text }
}

fn expected(what: &'static str) -> StrContext {
    StrContext::Expected(StrContextValue::Description(what))
}

/// How many more levels of `[ ]` / `{ }` an expression may open.
#[derive(Clone, Copy)]
struct Depth(usize);

/// The context of the error an expression nested too deep stops with.
const TOO_DEEP: &str = "less nesting";

fn is_too_deep(e: &ContextError) -> bool {
    e.context().any(|c| matches!(c, StrContext::Expected(StrContextValue::Description(d)) if *d == TOO_DEEP))
}

fn header_option(i: &mut &str) -> ModalResult<(String, String)> {
    let name = preceded("--", take_while(1.., |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .context(expected("an option name after --"))
        .parse_next(i)?;
    let value = opt(preceded('=', take_till(0.., |c: char| c.is_whitespace()))).parse_next(i)?;
    (space0, eof).context(expected("end of line after the option")).parse_next(i)?;
    Ok((name.to_string(), value.unwrap_or("").to_string()))
}

/// A time in seconds with an optional fraction, as microseconds.
fn seconds(i: &mut &str) -> ModalResult<i64> {
    let whole = digit1.parse_next(i)?;
    let frac = opt(preceded('.', digit1)).parse_next(i)?;
    let whole: i64 = whole.parse().map_err(|_| winnow::error::ErrMode::Cut(ContextError::new()))?;
    let mut micros = whole.saturating_mul(1_000_000);
    if let Some(frac) = frac {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        micros += digits.parse::<i64>().unwrap_or(0);
    }
    Ok(micros)
}

fn time_point(i: &mut &str) -> ModalResult<TimePoint> {
    alt((preceded(('+', space0), seconds).map(TimePoint::Relative), seconds.map(TimePoint::Absolute)))
        .context(expected("a time"))
        .parse_next(i)
}

fn time(i: &mut &str) -> ModalResult<Time> {
    if opt('*').parse_next(i)?.is_some() {
        return Ok(Time::Any);
    }
    let start = time_point.parse_next(i)?;
    if opt("...").parse_next(i)?.is_some() {
        let end = cut_err(time_point).parse_next(i)?;
        return Ok(Time::Range(start, end));
    }
    Ok(match start {
        TimePoint::Absolute(t) => Time::Absolute(t),
        TimePoint::Relative(t) => Time::Relative(t),
    })
}

fn event_line(i: &mut &str, depth: Depth) -> ModalResult<(Time, EventKind)> {
    let t = time.parse_next(i)?;
    space0.parse_next(i)?;
    let kind = cut_err(alt((
        packet.map(EventKind::Packet),
        shell.map(EventKind::Shell),
        python.map(EventKind::Python),
        (|i: &mut &str| syscall(i, depth)).map(EventKind::Syscall),
    )))
    .context(expected("a packet (< or >), a system call, a `shell command` or a %{ }% block"))
    .parse_next(i)?;
    cut_err((space0, eof)).context(expected("end of line")).parse_next(i)?;
    Ok((t, kind))
}

fn shell(i: &mut &str) -> ModalResult<String> {
    delimited('`', take_till(0.., '`'), cut_err('`').context(expected("a closing backtick")))
        .map(|s: &str| s.trim().to_string())
        .parse_next(i)
}

fn python(i: &mut &str) -> ModalResult<String> {
    delimited("%{", take_until(0.., "}%"), cut_err("}%").context(expected("}%")))
        .map(|s: &str| s.trim().to_string())
        .parse_next(i)
}

fn uint32(i: &mut &str) -> ModalResult<u32> {
    digit1.try_map(str::parse::<u32>).context(expected("a number 0..=4294967295")).parse_next(i)
}

fn packet(i: &mut &str) -> ModalResult<Packet> {
    let direction = alt(('<'.value(Direction::Inbound), '>'.value(Direction::Outbound))).parse_next(i)?;
    space0.parse_next(i)?;
    let flags = cut_err(take_while(1.., |c: char| "SFRPUEWN.".contains(c)))
        .context(expected("TCP flags (S, F, R, P, ., ...)"))
        .parse_next(i)?;
    space1.parse_next(i)?;
    let (start, end, len) = cut_err((uint32, ':', uint32, '(', uint32, ')'))
        .map(|(s, _, e, _, l, _)| (s, e, l))
        .context(expected("start:end(length)"))
        .parse_next(i)?;
    if direction == Direction::Inbound && len > MAX_INBOUND_PAYLOAD {
        // The runner would build (allocate) that payload: refuse what no IPv4 packet can carry.
        return cut_err(winnow::combinator::fail)
            .context(expected("a payload of at most 65495 octets (an IPv4 datagram less its headers)"))
            .parse_next(i);
    }
    let ack = opt(preceded((space1, "ack", space1), cut_err(uint32))).parse_next(i)?;
    let win = opt(preceded((space1, "win", space1), cut_err(uint32))).parse_next(i)?;
    let options = opt(preceded(space0, tcp_options)).parse_next(i)?;
    Ok(Packet { direction, flags: flags.to_string(), start, end, len, ack, win, options })
}

fn tcp_options(i: &mut &str) -> ModalResult<Option<Vec<PdOption>>> {
    '<'.parse_next(i)?;
    if opt((space0, "...", space0, '>')).parse_next(i)?.is_some() {
        return Ok(None);
    }
    let first = cut_err(delimited(space0, tcp_option, space0)).parse_next(i)?;
    let rest: Vec<PdOption> =
        winnow::combinator::repeat(0.., preceded(',', cut_err(delimited(space0, tcp_option, space0)))).parse_next(i)?;
    let list: Vec<PdOption> = std::iter::once(first).chain(rest).collect();
    cut_err('>').context(expected("> closing the options")).parse_next(i)?;
    Ok(Some(list))
}

fn tcp_option(i: &mut &str) -> ModalResult<PdOption> {
    alt((
        preceded(("mss", space1), cut_err(uint32.verify_map(|n| u16::try_from(n).ok()))).map(PdOption::Mss),
        preceded(("wscale", space1), cut_err(uint32.verify_map(|n| u8::try_from(n).ok()))).map(PdOption::Wscale),
        "nop".value(PdOption::Nop),
        "eol".value(PdOption::Eol),
        "sackOK".value(PdOption::SackOk),
        preceded(("TS", space1, "val", space1), cut_err((uint32, space1, "ecr", space1, uint32)))
            .map(|(val, _, _, _, ecr)| PdOption::Timestamp { val, ecr }),
        preceded("sack", cut_err(winnow::combinator::repeat(0.., preceded(space1, (uint32, ':', uint32)))))
            .map(|blocks: Vec<(u32, char, u32)>| PdOption::Sack(blocks.into_iter().map(|(a, _, b)| (a, b)).collect())),
    ))
    .context(expected("a TCP option (mss, nop, eol, wscale, sackOK, TS val/ecr, sack)"))
    .parse_next(i)
}

fn ident<'s>(i: &mut &'s str) -> ModalResult<&'s str> {
    (
        take_while(1, |c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(0.., |c: char| c.is_ascii_alphanumeric() || c == '_'),
    )
        .take()
        .parse_next(i)
}

fn syscall(i: &mut &str, depth: Depth) -> ModalResult<Syscall> {
    let name = ident.parse_next(i)?;
    '('.parse_next(i)?;
    let args: Vec<Expr> =
        separated(0.., delimited(space0, |i: &mut &str| expr(i, depth), space0), ',').parse_next(i)?;
    cut_err(')').context(expected(") closing the arguments")).parse_next(i)?;
    cut_err((space0, '=', space0)).context(expected("= and the expected result")).parse_next(i)?;
    let result = cut_err(|i: &mut &str| expr(i, depth)).context(expected("the expected result")).parse_next(i)?;
    let errno = opt(preceded(space1, ident.verify(|s: &str| s.starts_with('E')))).parse_next(i)?;
    let note = opt(preceded(space0, delimited('(', take_till(0.., ')'), cut_err(')')))).parse_next(i)?;
    Ok(Syscall {
        name: name.to_string(),
        args,
        result,
        errno: errno.map(str::to_string),
        note: note.map(|n: &str| n.trim().to_string()),
    })
}

fn expr(i: &mut &str, depth: Depth) -> ModalResult<Expr> {
    let mut terms: Vec<Expr> = separated(1.., |i: &mut &str| term(i, depth), (space0, '|', space0)).parse_next(i)?;
    Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::Or(terms) })
}

fn integer(i: &mut &str) -> ModalResult<i64> {
    let negative = opt('-').parse_next(i)?.is_some();
    let value = alt((
        preceded(alt(("0x", "0X")), cut_err(hex_digit1.try_map(|h| i64::from_str_radix(h, 16)))),
        digit1.try_map(str::parse::<i64>),
    ))
    .parse_next(i)?;
    Ok(if negative { -value } else { value })
}

fn term(i: &mut &str, depth: Depth) -> ModalResult<Expr> {
    if i.starts_with(['[', '{']) && depth.0 == 0 {
        return cut_err(winnow::combinator::fail).context(expected(TOO_DEEP)).parse_next(i);
    }
    let inner = Depth(depth.0.saturating_sub(1));
    let nested = |i: &mut &str| expr(i, inner);
    alt((
        "...".value(Expr::Ellipsis),
        integer.map(Expr::Int),
        delimited(('[', space0), separated(0.., delimited(space0, nested, space0), ','), cut_err((space0, ']')))
            .map(Expr::List),
        delimited(
            ('{', space0),
            separated(0.., delimited(space0, (terminated(ident, (space0, '=', space0)), nested), space0), ','),
            cut_err((space0, '}')),
        )
        .map(|fields: Vec<(&str, Expr)>| Expr::Struct(fields.into_iter().map(|(n, e)| (n.to_string(), e)).collect())),
        delimited('"', take_till(0.., '"'), cut_err('"')).map(|s: &str| Expr::Str(s.to_string())),
        ident.map(|s: &str| Expr::Name(s.to_string())),
    ))
    .context(expected("a value"))
    .parse_next(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_defines() -> BTreeSet<String> {
        ["STANDARD".to_string()].into_iter().collect()
    }

    fn one(line: &str) -> Event {
        let script = parse_script("t.pkt", line, &std_defines()).unwrap();
        assert_eq!(script.events.len(), 1, "{line}");
        script.events[0].clone()
    }

    fn bad(text: &str) -> ParseError {
        parse_script("bad.pkt", text, &std_defines()).unwrap_err()
    }

    #[test]
    fn header_options() {
        let s = parse_script("t.pkt", "--ip_version=ipv4\n--tolerance_usecs=50000\n", &std_defines()).unwrap();
        assert_eq!(s.option("tolerance_usecs"), Some("50000"));
        assert_eq!(s.option("ip_version"), Some("ipv4"));
        assert!(s.events.is_empty());
    }

    #[test]
    fn times_absolute_relative_ranged_and_any() {
        assert_eq!(one("0.1 close(3) = 0").time, Time::Absolute(100_000));
        assert_eq!(one("+0.25 close(3) = 0").time, Time::Relative(250_000));
        assert_eq!(one("+ 0.1 close(3) = 0").time, Time::Relative(100_000));
        assert_eq!(one("  0.00 close(3) = 0").time, Time::Absolute(0));
        assert_eq!(
            one("1.0...6.0 > S 0:0(0) win 65535").time,
            Time::Range(TimePoint::Absolute(1_000_000), TimePoint::Absolute(6_000_000))
        );
        assert_eq!(
            one("+0...+2.5 > S 0:0(0)").time,
            Time::Range(TimePoint::Relative(0), TimePoint::Relative(2_500_000))
        );
        assert_eq!(one("* > S 0:0(0)").time, Time::Any);
    }

    #[test]
    fn packet_lines_with_flags_ack_win_and_options() {
        let e = one("+0.00 > S      0:0(0)           win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>");
        let EventKind::Packet(p) = e.kind else { panic!() };
        assert_eq!((p.direction, p.flags.as_str(), p.start, p.end, p.len), (Direction::Outbound, "S", 0, 0, 0));
        assert_eq!((p.ack, p.win), (None, Some(65535)));
        assert_eq!(
            p.options,
            Some(Some(vec![
                PdOption::Mss(1460),
                PdOption::Nop,
                PdOption::Wscale(6),
                PdOption::SackOk,
                PdOption::Timestamp { val: 100, ecr: 0 }
            ]))
        );
        let EventKind::Packet(p) = one("+0.1 <  . 17:20(3) ack 34 win 32767").kind else { panic!() };
        assert_eq!((p.direction, p.flags.as_str(), p.start, p.end, p.len), (Direction::Inbound, ".", 17, 20, 3));
        assert_eq!((p.ack, p.win, p.options), (Some(34), Some(32767), None));
        for flags in ["S.", "F.", "R", "R.", "SF", "P.", "F"] {
            let EventKind::Packet(p) = one(&format!("0 < {flags} 1:1(0) ack 1 win 10")).kind else { panic!() };
            assert_eq!(p.flags, flags);
        }
        let EventKind::Packet(p) = one("0 > . 1:1(0) ack 1 <nop,nop,sack 5:10 20:30,eol>").kind else { panic!() };
        assert_eq!(
            p.options,
            Some(Some(vec![PdOption::Nop, PdOption::Nop, PdOption::Sack(vec![(5, 10), (20, 30)]), PdOption::Eol]))
        );
        let EventKind::Packet(p) = one("0 > S. 0:0(0) ack 1 <...>").kind else { panic!() };
        assert_eq!(p.options, Some(None));
    }

    #[test]
    fn system_calls_with_results_errnos_and_notes() {
        let EventKind::Syscall(c) = one("+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3").kind else { panic!() };
        assert_eq!(c.name, "socket");
        assert_eq!(c.args, [Expr::Ellipsis, Expr::Name("SOCK_STREAM".into()), Expr::Name("IPPROTO_TCP".into())]);
        assert_eq!(c.result, Expr::Int(3));
        let EventKind::Syscall(c) = one("+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)").kind
        else {
            panic!()
        };
        assert_eq!((c.result, c.errno.as_deref()), (Expr::Int(-1), Some("EINPROGRESS")));
        assert_eq!(c.note.as_deref(), Some("Operation now in progress"));
        let EventKind::Syscall(c) = one("+0 fcntl(3, F_GETFL) = 0x02 (flags O_RDWR)").kind else { panic!() };
        assert_eq!((c.result, c.errno, c.note.as_deref()), (Expr::Int(2), None, Some("flags O_RDWR")));
        let EventKind::Syscall(c) = one("+0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0").kind else { panic!() };
        assert_eq!(c.args[2], Expr::Or(vec![Expr::Name("O_RDWR".into()), Expr::Name("O_NONBLOCK".into())]));
        let EventKind::Syscall(c) = one("+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNRESET], [4]) = 0").kind else {
            panic!()
        };
        assert_eq!(c.args[3].name(), Some("ECONNRESET"));
        assert_eq!(c.args[4].int(), Some(4));
        let EventKind::Syscall(c) = one("+0 setsockopt(3, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=0}, 8) = 0").kind
        else {
            panic!()
        };
        assert_eq!(c.args[3], Expr::Struct(vec![("l_onoff".into(), Expr::Int(1)), ("l_linger".into(), Expr::Int(0))]));
        let EventKind::Syscall(c) = one(r#"+0 write(4, "hello", 5) = 5"#).kind else { panic!() };
        assert_eq!(c.args[1], Expr::Str("hello".into()));
    }

    #[test]
    fn shell_python_and_comments() {
        assert_eq!(
            one(" 0.00 `sysctl -w net.inet.tcp.rfc1323=1` // set it").kind,
            EventKind::Shell("sysctl -w net.inet.tcp.rfc1323=1".into())
        );
        assert_eq!(
            one("+0.00 %{ assert tcpi_state == TCPI_SYN_RECEIVED }%").kind,
            EventKind::Python("assert tcpi_state == TCPI_SYN_RECEIVED".into())
        );
        let s = parse_script(
            "t",
            "// a comment\n/* block\n still */ +0 close(3) = 0\n+0 %{\nassert 1\n}%\n",
            &std_defines(),
        )
        .unwrap();
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.events[0].line, 3);
        assert_eq!(s.events[1].kind, EventKind::Python("assert 1".into()));
    }

    #[test]
    fn ifdef_else_endif_select_by_defines() {
        let text =
            "#ifdef STANDARD\n0 close(3) = 0\n#else\n0 close(4) = 0\n#endif\n#ifdef FreeBSD\n0 close(5) = 0\n#endif\n";
        let s = parse_script("t", text, &std_defines()).unwrap();
        assert_eq!(s.events.iter().map(|e| e.line).collect::<Vec<_>>(), [2]);
        let defines: BTreeSet<String> = ["FreeBSD".to_string()].into_iter().collect();
        let s = parse_script("t", text, &defines).unwrap();
        assert_eq!(s.events.iter().map(|e| e.line).collect::<Vec<_>>(), [4, 7]);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = bad("0 close(3) = 0\n+0.1 < Q 1:1(0)\n");
        assert_eq!((e.path.as_str(), e.line, e.column), ("bad.pkt", 2, 8), "{e}");
        assert!(e.to_string().starts_with("bad.pkt:2:8: "), "{e}");
        let e = bad("+0 > S 0:0 win 1\n");
        assert_eq!((e.line, e.column), (1, 11), "{e}");
        assert!(e.message.contains("start:end(length)"), "{e}");
        let e = bad("+0 > S 0:0(0) win 1 <mss 1460,bogus>\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("TCP option"), "{e}");
        let e = bad("+0 close(3 = 0\n");
        assert_eq!(e.line, 1);
        let e = bad("\n\n  +0 `sysctl -w x\n");
        assert_eq!((e.line, e.column), (3, 18), "{e}");
        assert_eq!(bad("#ifdef STANDARD\n0 close(3) = 0\n").line, 1);
        assert_eq!(bad("#endif\n").line, 1);
        assert_eq!(bad("0 close(3) = 0\n#else\n").line, 2);
        assert!(bad("hello\n").message.contains("time"), "{}", bad("hello\n"));
        assert_eq!(bad("+0 %{ assert 1\n").line, 1);
        assert_eq!(bad("+0 close(3) = 0 junk\n").column, 17);
        assert_eq!(bad("--=3\n").column, 3);
        assert!(bad("+0 > S 0:99999999999(0)\n").message.contains("4294967295"));
    }
}
