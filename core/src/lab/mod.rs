//! Labs: scripted scenarios that reproduce the seed text's claims on a
//! simulated world, check them, and draw them as ladder diagrams.
//!
//! Sans-IO like the engine and the world: parsing is a function of text,
//! running is a function of a lab and a world, and nothing here reads a clock
//! or a socket, so the CLI, the tests and (later) the service's session actor
//! all run labs the same way.
//!
//! # Layout
//! - [`format`]: the TOML lab format, its parser and its located errors.
//! - [`runner`]: [`LabRun`] (step-wise), [`run`] and [`run_variant`], and the reports.
//!
//! The ladder diagram a run draws is [`crate::ladder`].

pub mod format;
pub mod runner;

pub use format::{ExpectedFate, FlagSet, Lab, LabError, LabStep, LabVariant, StateName, Step};
pub use runner::{BudgetLimit, Check, LabReport, LabRun, RunBudget, VariantReport, run, run_variant};

/// The built-in labs, embedded in the binary so `tcplab lab list` works from
/// any directory: `(name, TOML text)`, in teaching order.
pub fn builtin() -> Vec<(&'static str, &'static str)> {
    macro_rules! labs {
        ($($name:literal),* $(,)?) => {
            vec![$(($name, include_str!(concat!("../../../labs/", $name, ".toml")))),*]
        };
    }
    labs![
        "three-way-handshake",
        "sequence-numbers",
        "why-not-two-way",
        "four-way-close",
        "half-close",
        "time-wait-lost-ack",
        "time-wait-old-duplicates",
        "simultaneous-open",
        "simultaneous-close",
        "syn-retransmission",
        "rst-to-closed-port",
        "zero-window-probe",
        "delayed-ack",
        "nagle",
        "keepalive",
        "slow-start",
        "congestion-avoidance",
        "fast-retransmit",
        "newreno-partial-ack",
        "reno-vs-newreno",
        "rto-collapse",
        "bottleneck-sawtooth",
        "shared-bottleneck",
    ]
}

/// A built-in lab by name, parsed.
///
/// # Errors
/// [`LabError::UnknownLab`], or a parse error (a bug in a shipped lab, which
/// the tests rule out).
pub fn builtin_lab(name: &str) -> Result<Lab, LabError> {
    let (name, text) = builtin().into_iter().find(|(n, _)| *n == name).ok_or_else(|| unknown_lab(name))?;
    Lab::parse(&format!("labs/{name}.toml"), text)
}

/// A report as text: the ladder of each variant, then one pass/fail item per
/// check, then a verdict -- what `tcplab lab run` prints. Every line fits the
/// ladder's [`crate::ladder::LADDER_WIDTH`] columns: a long description or
/// check wraps with a hanging indent instead of running off a terminal.
pub fn render_report(report: &LabReport) -> String {
    use crate::ladder::write_wrapped;
    use std::fmt::Write as _;
    let mut out = String::new();
    write_wrapped(&mut out, &report.title, &format!("== {}: ", report.name), "   ");
    let _ = writeln!(out);
    for line in report.explanation.trim().lines() {
        let indent = format!("  {}", &line[..line.len() - line.trim_start().len()]);
        write_wrapped(&mut out, line, &indent, &indent);
    }
    for v in &report.variants {
        let _ = writeln!(out);
        if report.variants.len() > 1 || v.name != "default" {
            write_wrapped(&mut out, v.description.trim(), &format!("-- variant `{}`: ", v.name), "   ");
            let _ = writeln!(out);
        }
        out.push_str(&v.ladder);
        let _ = writeln!(out);
        if !v.plots.is_empty() {
            out.push_str(&v.plots);
            let _ = writeln!(out);
        }
        for c in &v.checks {
            let verdict = if c.passed { "  PASS " } else { "  FAIL " };
            write_wrapped(&mut out, &c.message(), verdict, "       ");
        }
        if let Some(e) = &v.error {
            write_wrapped(&mut out, &format!("step error: {e}"), "  FAIL ", "       ");
        }
        let passed = v.checks.iter().filter(|c| c.passed).count();
        let _ = writeln!(
            out,
            "  {}: {passed}/{} checks passed{}",
            if v.passed { "ok" } else { "FAILED" },
            v.checks.len(),
            if report.variants.len() > 1 { format!(" (variant `{}`)", v.name) } else { String::new() }
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{} {}", if report.passed { "PASS" } else { "FAIL" }, report.name);
    out
}

#[cfg(test)]
mod tests;

/// The error for a lab name that is neither built in nor a file, with the
/// built-in name it was probably meant to be.
/// [`LabError::UnknownLab`] for `name`, with the built-in lab it is
/// closest to as a suggestion (for callers that also look on disk).
pub fn unknown_lab(name: &str) -> LabError {
    let suggestion = crate::suggest::did_you_mean(name, builtin().into_iter().map(|(n, _)| n));
    LabError::UnknownLab { name: name.to_string(), suggestion }
}
