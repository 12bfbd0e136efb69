//! packetdrill scripts run against tcplab's own TCP, on the simulated
//! network, in virtual time.
//!
//! A packetdrill script plays the remote peer: it injects segments (`<`),
//! expects exact segments back (`>`) and drives the tested stack through
//! socket calls, all on a timeline. The real tool needs root, a kernel and
//! wall-clock time; here the tested stack is a tcplab host in a
//! [`crate::sim::World`], the script a raw host beside it, and the whole run
//! takes microseconds of wall time and is deterministic.
//!
//! # Layout
//! - [`ast`]: the parsed script.
//! - [`parser`]: winnow parser (file:line:column errors).
//! - [`runner`]: plays a script against the engine and gives a verdict.
//! - [`kernel`]: which kernel a script is written for, and its `sysctl` settings.

pub mod ast;
pub mod kernel;
pub mod parser;
pub mod runner;

use std::collections::BTreeSet;
use std::fmt::Write as _;

pub use parser::{ParseError, parse_script};
pub use runner::{
    Failure, Outcome, RunOptions, ScriptBudget, ScriptLimit, ScriptProfilePolicy, Verdict, default_defines, run_script,
};

/// Parses and runs one script's text (`name` is how errors and the report
/// name it, usually its path). A script that does not parse is
/// [`Verdict::Error`]: the script's fault, not the TCP's. Reading files is
/// the caller's business (the `tcplab` binary's `scripts` module), so this
/// runs the same on a server, in a test or in a fuzzer.
pub fn run_text(name: &str, text: &str, defines: &BTreeSet<String>, opts: &RunOptions) -> Outcome {
    match parse_script(name, text, defines) {
        Ok(script) => run_script(&script, opts),
        Err(e) => error_outcome(name, e.line, e.column, format!("parse error at column {}: {}", e.column, e.message)),
    }
}

/// The outcome of a script that never ran: [`Verdict::Error`] at `line:column`.
pub fn error_outcome(name: &str, line: usize, column: usize, message: String) -> Outcome {
    Outcome {
        path: name.to_string(),
        verdict: Verdict::Error { line, column, message },
        virtual_ns: 0,
        ladder: String::new(),
        events: Vec::new(),
        profile: None,
        limit: None,
    }
}

/// Counts of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Scripts that passed.
    pub passed: usize,
    /// Scripts that failed.
    pub failed: usize,
    /// Scripts skipped for an unsupported feature.
    pub skipped: usize,
    /// Scripts that could not be read or parsed (no verdict on the TCP).
    pub errors: usize,
}

impl Summary {
    /// Counts the verdicts.
    pub fn of(outcomes: &[Outcome]) -> Summary {
        let mut s = Summary::default();
        for o in outcomes {
            match o.verdict {
                Verdict::Pass => s.passed += 1,
                Verdict::Fail(_) => s.failed += 1,
                Verdict::Skip { .. } => s.skipped += 1,
                Verdict::Error { .. } => s.errors += 1,
            }
        }
        s
    }
}

/// The report of one script: one line, and for a failure the mismatch and the
/// ladder (as drawn, so it keeps to [`crate::ladder::LADDER_WIDTH`] columns).
pub fn report(outcome: &Outcome, verbose: bool) -> String {
    let mut out = String::new();
    match &outcome.verdict {
        Verdict::Pass => {
            let _ = writeln!(out, "PASS {}", outcome.path);
        }
        Verdict::Skip { line, feature } => {
            let _ = writeln!(out, "SKIP {}:{line}: {feature} is not supported", outcome.path);
        }
        Verdict::Error { line, message, .. } => {
            let _ = writeln!(out, "ERROR {}:{line}: {message} (the script is at fault, not the TCP)", outcome.path);
        }
        Verdict::Fail(f) => {
            let _ = writeln!(out, "FAIL {}:{}: {}", outcome.path, f.line, f.reason);
            let _ = writeln!(out, "  expected: {}", f.expected);
            let _ = writeln!(out, "  tcplab:   {}", f.actual.as_deref().unwrap_or("(none)"));
            let _ = writeln!(out, "  at virtual time {:.6} s", f.t_ns as f64 / 1e9);
            if !f.ladder.is_empty() {
                // Unindented: the ladder is drawn to the full report width.
                let _ = writeln!(out, "  ladder so far:");
                push_block(&mut out, &f.ladder);
            }
        }
    }
    if verbose && matches!(outcome.verdict, Verdict::Pass) && !outcome.ladder.is_empty() {
        push_block(&mut out, &outcome.ladder);
    }
    out
}

/// `text` on lines of its own, ended by a newline whether or not it had one.
fn push_block(out: &mut String, text: &str) {
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A JUnit XML report, one test case per script.
pub fn junit(outcomes: &[Outcome], wall_seconds: f64) -> String {
    let s = Summary::of(outcomes);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"packetdrill\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{wall_seconds:.3}\">",
        outcomes.len(),
        s.failed,
        s.errors,
        s.skipped
    );
    for o in outcomes {
        let _ = write!(out, "  <testcase name=\"{}\" time=\"{:.6}\"", xml_escape(&o.path), o.virtual_ns as f64 / 1e9);
        match &o.verdict {
            Verdict::Pass => out.push_str("/>\n"),
            Verdict::Skip { feature, .. } => {
                let _ = writeln!(out, "><skipped message=\"{}\"/></testcase>", xml_escape(feature));
            }
            Verdict::Error { line, message, .. } => {
                let _ = writeln!(
                    out,
                    "><error message=\"line {line}: {}\">{}</error></testcase>",
                    xml_escape(message),
                    xml_escape(&report(o, false))
                );
            }
            Verdict::Fail(f) => {
                let _ = writeln!(
                    out,
                    "><failure message=\"line {}: {}\">{}</failure></testcase>",
                    f.line,
                    xml_escape(&f.reason),
                    xml_escape(&report(o, false))
                );
            }
        }
    }
    out.push_str("</testsuite>\n");
    out
}

/// Which profiles the scripts ran under, e.g. `freebsd x150 (chosen by the
/// scripts), rfc9293 x4`.
pub fn profile_counts(named: Option<&str>, outcomes: &[Outcome]) -> String {
    let run_default = named.unwrap_or(crate::profiles::DEFAULT_PROFILE);
    let mut counts: std::collections::BTreeMap<(bool, &str), usize> = Default::default();
    for o in outcomes {
        let key = match &o.profile {
            Some(p) => (true, p.as_str()),
            None => (false, run_default),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|((by_script, name), n)| {
            let why = if *by_script {
                " (named by the scripts or their sysctl lines)"
            } else if named.is_some() {
                " (--profile)"
            } else {
                " (the default)"
            };
            format!("{name} x{n}{why}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}
