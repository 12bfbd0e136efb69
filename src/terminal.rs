//! What the `tcplab` command owes a terminal user: output that stops quietly
//! when the reader goes away (`tcplab lab list | head -1`), an error said
//! once, and colour only where a person is looking (never in a pipe, never
//! with `NO_COLOR` set).

use std::io::{self, IsTerminal as _, Write};

/// Whether to colour standard output: it is a terminal and `NO_COLOR` is
/// unset or empty (<https://no-color.org>).
pub fn colour_stdout() -> bool {
    io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A writer that colours the verdict word at the start of each line
/// (`PASS`, `FAIL`, `SKIP`, `ERROR`, `ok:`, `FAILED:`, after any indent) and
/// passes everything else through unchanged. With colour off it is a plain
/// pass-through, so piped output stays byte for byte what the tests read.
pub struct Verdicts<W: Write> {
    inner: W,
    colour: bool,
    line: Vec<u8>,
}

impl<W: Write> Verdicts<W> {
    /// Wraps `inner`; `colour` as [`colour_stdout`] decided.
    pub fn new(inner: W, colour: bool) -> Self {
        Verdicts { inner, colour, line: Vec::new() }
    }

    fn emit_line(&mut self) -> io::Result<()> {
        let line = std::mem::take(&mut self.line);
        let painted = paint_verdict(&String::from_utf8_lossy(&line));
        self.inner.write_all(painted.as_bytes())
    }
}

impl<W: Write> Write for Verdicts<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.colour {
            return self.inner.write(buf);
        }
        for &byte in buf {
            self.line.push(byte);
            if byte == b'\n' {
                self.emit_line()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.line.is_empty() {
            self.emit_line()?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for Verdicts<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[33m";
const MAGENTA: &str = "\x1b[1;35m";
const RESET: &str = "\x1b[0m";

/// `line` with its leading verdict word coloured, if it has one.
fn paint_verdict(line: &str) -> String {
    let indent = line.len() - line.trim_start().len();
    let rest = &line[indent..];
    let word_end = rest.find([' ', '\n']).unwrap_or(rest.len());
    let word = &rest[..word_end];
    let colour = match word {
        "PASS" | "ok:" => GREEN,
        "FAIL" | "FAILED:" => RED,
        "SKIP" => YELLOW,
        "ERROR" => MAGENTA,
        _ => return line.to_string(),
    };
    format!("{}{colour}{word}{RESET}{}", &line[..indent], &rest[word_end..])
}

/// Whether `error` comes from writing to a reader that has gone away (the
/// other end of a pipe closed): the command then stops without a word.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

/// The error and its causes on one line, each said once: libraries often
/// repeat their source inside their own message (`database x: unable to
/// open` caused by `unable to open`), so a cause already contained in what
/// was said is skipped.
pub fn said_once(error: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_words_are_coloured_and_nothing_else() {
        assert_eq!(paint_verdict("  PASS line 24 ok\n"), format!("  {GREEN}PASS{RESET} line 24 ok\n"));
        assert_eq!(paint_verdict("FAIL x.pkt:3: ack\n"), format!("{RED}FAIL{RESET} x.pkt:3: ack\n"));
        assert_eq!(paint_verdict("ERROR bad.pkt:2\n"), format!("{MAGENTA}ERROR{RESET} bad.pkt:2\n"));
        assert_eq!(paint_verdict("  PASSIVE open\n"), "  PASSIVE open\n");
        assert_eq!(paint_verdict("    t (ms)   A   B\n"), "    t (ms)   A   B\n");
    }

    #[test]
    fn without_colour_the_writer_passes_bytes_through() {
        let mut plain = Verdicts::new(Vec::new(), false);
        plain.write_all(b"PASS a\nFAIL b\n").expect("write");
        plain.flush().expect("flush");
        assert_eq!(plain.inner, b"PASS a\nFAIL b\n");
        let mut coloured = Verdicts::new(Vec::new(), true);
        coloured.write_all(b"PASS a\nFA").expect("write");
        coloured.write_all(b"IL b\n").expect("write");
        coloured.flush().expect("flush");
        assert_eq!(String::from_utf8_lossy(&coloured.inner), format!("{GREEN}PASS{RESET} a\n{RED}FAIL{RESET} b\n"));
    }

    #[test]
    fn a_cause_repeated_in_its_parent_is_said_once() {
        let error = anyhow::Error::from(io::Error::other("unable to open database file"))
            .context("database: unable to open database file")
            .context("database data/x.db: database: unable to open database file (create the folder)");
        assert_eq!(said_once(&error), "database data/x.db: database: unable to open database file (create the folder)");
        let distinct = anyhow::Error::from(io::Error::other("no such file")).context("reading lab.toml");
        assert_eq!(said_once(&distinct), "reading lab.toml: no such file");
    }

    #[test]
    fn a_broken_pipe_is_recognised_through_context() {
        let error = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing the report");
        assert!(is_broken_pipe(&error));
        assert!(!is_broken_pipe(&anyhow::anyhow!("something else")));
    }
}
