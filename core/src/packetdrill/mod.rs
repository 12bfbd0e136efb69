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
use std::path::{Path, PathBuf};

pub use parser::{ParseError, parse_script};
pub use runner::{
    Failure, Outcome, RunOptions, ScriptBudget, ScriptLimit, ScriptProfilePolicy, Verdict, default_defines, run_script,
};

/// A file that could not be read or listed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    /// The path.
    pub path: String,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Every `*.pkt` file under the given files and directories (recursively), sorted.
///
/// # Errors
/// A path that cannot be read.
pub fn collect_scripts(paths: &[PathBuf]) -> Result<Vec<PathBuf>, FileError> {
    let mut found = Vec::new();
    for path in paths {
        walk(path, &mut found)?;
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn walk(path: &Path, found: &mut Vec<PathBuf>) -> Result<(), FileError> {
    let err = |source| FileError { path: path.display().to_string(), source };
    let meta = std::fs::metadata(path).map_err(err)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(err)? {
            let entry = entry.map_err(err)?;
            let p = entry.path();
            if p.is_dir() || p.extension().is_some_and(|e| e == "pkt") {
                walk(&p, found)?;
            }
        }
    } else {
        found.push(path.to_path_buf());
    }
    Ok(())
}

/// Reads, parses and runs one script file. A script that cannot be read or
/// does not parse is [`Verdict::Error`]: the script's fault, not the TCP's.
pub fn run_file(path: &Path, defines: &BTreeSet<String>, opts: &RunOptions) -> Outcome {
    let name = path.display().to_string();
    let error = |line: usize, column: usize, message: String| Outcome {
        path: name.clone(),
        verdict: Verdict::Error { line, column, message },
        virtual_ns: 0,
        ladder: String::new(),
        events: Vec::new(),
        profile: None,
        limit: None,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return error(0, 0, format!("cannot read: {e}")),
    };
    match parse_script(&name, &text, defines) {
        Ok(script) => run_script(&script, opts),
        Err(e) => error(e.line, e.column, format!("parse error at column {}: {}", e.column, e.message)),
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

/// The report of one script: one line, and for a failure the mismatch and the ladder.
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
                let _ = writeln!(out, "  ladder so far:");
                for l in f.ladder.lines() {
                    let _ = writeln!(out, "    {l}");
                }
            }
        }
    }
    if verbose && matches!(outcome.verdict, Verdict::Pass) && !outcome.ladder.is_empty() {
        for l in outcome.ladder.lines() {
            let _ = writeln!(out, "    {l}");
        }
    }
    out
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

/// What `tcplab packetdrill run` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct Command {
    /// Files and directories (searched recursively for `*.pkt`).
    pub paths: Vec<PathBuf>,
    /// The profile's name (see [`crate::profiles::profile_names`]).
    pub profile: Option<String>,
    /// Names `#ifdef` sees as defined besides `STANDARD`.
    pub defines: Vec<String>,
    /// Tolerance in milliseconds, overriding each script's `--tolerance_usecs`.
    pub tolerance_ms: Option<f64>,
    /// Compare TCP options exactly.
    pub strict_options: bool,
    /// Where to write a JUnit report.
    pub junit: Option<PathBuf>,
    /// Print every script's ladder.
    pub verbose: bool,
    /// A directory to write one pcap per script into (`NAME.pcap`).
    pub pcap: Option<PathBuf>,
}

/// Why `tcplab packetdrill run` could not run.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A bad profile name.
    #[error(transparent)]
    Profile(#[from] crate::profiles::ProfileLookupError),
    /// A path that cannot be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// No script found.
    #[error("no .pkt scripts found under the given paths")]
    NoScripts,
    /// Writing the report failed.
    #[error("writing the report: {0}")]
    Write(#[from] std::io::Error),
    /// A capture could not be built.
    #[error("building a capture: {0}")]
    Pcap(#[from] crate::pcap::PcapError),
}

/// Writes `DIR/NAME.pcap` for each script that ran (NAME its file stem, with
/// `-2`, `-3`... when two scripts share one), the segments as sent between
/// the tested stack and the script's raw peer.
fn write_pcaps(dir: &Path, outcomes: &[Outcome]) -> Result<(), CommandError> {
    std::fs::create_dir_all(dir)?;
    let resolve = |name: &str| match name {
        runner::TESTED => Some(runner::TESTED_IP),
        runner::PEER => Some(runner::PEER_IP),
        _ => None,
    };
    let mut used = std::collections::HashSet::new();
    for outcome in outcomes.iter().filter(|o| !o.events.is_empty()) {
        let stem = Path::new(&outcome.path).file_stem().map_or_else(|| "script".into(), |s| s.to_string_lossy());
        let mut name = format!("{stem}.pcap");
        let mut n = 1;
        while !used.insert(name.clone()) {
            n += 1;
            name = format!("{stem}-{n}.pcap");
        }
        let captured = crate::pcap::from_events(&outcome.events, resolve)?;
        std::fs::write(dir.join(name), crate::pcap::build(&captured)?)?;
    }
    Ok(())
}

/// Which profiles the scripts ran under, e.g. `freebsd x150 (chosen by the
/// scripts), rfc9293 x4`.
fn profile_counts(named: Option<&str>, outcomes: &[Outcome]) -> String {
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

/// Runs the scripts, writes a report per script and the summary line to
/// `out`, and the JUnit file if asked; returns the counts.
///
/// # Errors
/// [`CommandError`] when the run cannot start or the report cannot be written.
pub fn run_command(cmd: &Command, out: &mut dyn std::io::Write) -> Result<Summary, CommandError> {
    let started = std::time::Instant::now();
    let profile = crate::profiles::named_profile(cmd.profile.as_deref().unwrap_or(crate::profiles::DEFAULT_PROFILE))?;
    let mut defines = default_defines();
    defines.extend(cmd.defines.iter().cloned());
    let opts = RunOptions {
        profile,
        tolerance_us: cmd.tolerance_ms.map(|ms| (ms * 1000.0).round() as i64),
        strict_options: cmd.strict_options,
        // A --profile on the command line wins; otherwise each script may say
        // which kernel it was written for.
        script_profile: if cmd.profile.is_some() {
            ScriptProfilePolicy::Ignore
        } else {
            ScriptProfilePolicy::HeaderOrSysctl
        },
        budget: runner::ScriptBudget::default(),
    };
    let files = collect_scripts(&cmd.paths)?;
    if files.is_empty() {
        return Err(CommandError::NoScripts);
    }
    let mut outcomes = Vec::with_capacity(files.len());
    for file in &files {
        let outcome = run_file(file, &defines, &opts);
        out.write_all(report(&outcome, cmd.verbose).as_bytes())?;
        outcomes.push(outcome);
    }
    let wall = started.elapsed().as_secs_f64();
    let summary = Summary::of(&outcomes);
    writeln!(out, "profiles: {}", profile_counts(cmd.profile.as_deref(), &outcomes))?;
    writeln!(
        out,
        "packetdrill: {} passed, {} failed, {} skipped, {} errors ({} scripts, {:.3} s wall time)",
        summary.passed,
        summary.failed,
        summary.skipped,
        summary.errors,
        outcomes.len(),
        wall
    )?;
    if let Some(path) = &cmd.junit {
        std::fs::write(path, junit(&outcomes, wall))?;
    }
    if let Some(dir) = &cmd.pcap {
        write_pcaps(dir, &outcomes)?;
    }
    Ok(summary)
}
