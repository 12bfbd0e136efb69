//! Lab and packetdrill script files on disk: the file-system and wall-clock
//! edge of tcplab-core's runners, which take text and virtual time only.
//!
//! `tcplab lab run FILE` and `tcplab packetdrill run PATH...` come through
//! here: this module finds and reads the files, times the run on the wall
//! clock, hands text to [`crate::lab`] and [`crate::packetdrill`], and
//! writes the reports (stdout, JUnit, pcaps) they return as values.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::lab::{Lab, LabError};
use crate::packetdrill::{
    Outcome, RunOptions, ScriptBudget, ScriptProfilePolicy, Summary, default_defines, error_outcome, junit,
    profile_counts, report, run_text, runner,
};

/// A lab by built-in name or by file path (a path is anything that exists on
/// disk or ends in `.toml`), so `tcplab lab run` takes either.
///
/// # Errors
/// An unknown name (with a "did you mean"), an unreadable file, or a parse error.
pub fn load_lab(name_or_path: &str) -> Result<Lab, LabError> {
    if crate::lab::builtin().iter().any(|(n, _)| *n == name_or_path) {
        return crate::lab::builtin_lab(name_or_path);
    }
    let path = Path::new(name_or_path);
    if path.exists() || name_or_path.ends_with(".toml") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LabError::Io { path: name_or_path.to_string(), message: e.to_string() })?;
        return Lab::parse(name_or_path, &text);
    }
    Err(crate::lab::unknown_lab(name_or_path))
}

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
/// does not parse is [`crate::packetdrill::Verdict::Error`]: the script's
/// fault, not the TCP's.
pub fn run_file(path: &Path, defines: &BTreeSet<String>, opts: &RunOptions) -> Outcome {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => run_text(&name, &text, defines, opts),
        Err(e) => error_outcome(&name, 0, 0, format!("cannot read: {e}")),
    }
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
    /// Leave TCP options uncompared.
    pub ignore_options: bool,
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
        ignore_options: cmd.ignore_options,
        // A --profile on the command line wins; otherwise each script may say
        // which kernel it was written for.
        script_profile: if cmd.profile.is_some() {
            ScriptProfilePolicy::Ignore
        } else {
            ScriptProfilePolicy::HeaderOrSysctl
        },
        budget: ScriptBudget::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lab_is_found_by_name_or_path_and_a_miss_says_which_it_tried() {
        assert_eq!(load_lab("three-way-handshake").expect("built in").title, {
            crate::lab::builtin_lab("three-way-handshake").expect("built in").title
        });
        let typo = load_lab("three-way-handshak").expect_err("a typo").to_string();
        assert!(typo.contains("did you mean \"three-way-handshake\"?"), "{typo}");
        assert!(matches!(load_lab("/nonexistent/x.toml"), Err(LabError::Io { .. })));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mine.toml");
        let text = crate::lab::builtin().into_iter().find(|(n, _)| *n == "four-way-close").expect("shipped").1;
        std::fs::write(&path, text).expect("write");
        let lab = load_lab(&path.display().to_string()).expect("a lab file");
        assert!(crate::lab::run(&lab).passed);
    }

    #[test]
    fn an_unreadable_or_unparsable_script_is_the_scripts_error_not_a_tcp_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.pkt");
        std::fs::write(&bad, "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = \n").expect("write");
        let opts = RunOptions::default();
        for path in [bad, dir.path().join("missing.pkt")] {
            let outcome = run_file(&path, &default_defines(), &opts);
            assert!(matches!(outcome.verdict, crate::packetdrill::Verdict::Error { .. }), "{:?}", outcome.verdict);
        }
        let found = collect_scripts(&[dir.path().to_path_buf()]).expect("listed");
        assert_eq!(found, vec![dir.path().join("bad.pkt")]);
    }
}
