//! The `tcplab` command as a terminal user meets it: it stops quietly when
//! the reader of its output goes away, says an error once, tells a broken
//! script from a failing TCP, and points at the name that was probably meant.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

fn tcplab() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tcplab"));
    command.env_remove("NO_COLOR").env_remove("TCPLAB_DB").env_remove("TCPLAB_CONFIG");
    command
}

/// Runs `tcplab args`: exit code, stdout, stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let out = tcplab().args(args).output().expect("tcplab runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tcplab ARGS | head -1`: the reader takes one line and closes the pipe
/// while tcplab still has much more to write.
fn first_line_then_close(args: &[&str]) -> (String, std::process::ExitStatus, String) {
    let mut child = tcplab().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("a first line");
    drop(reader);
    let out = child.wait_with_output().expect("tcplab exits");
    (line, out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    // A demo of a 4 MB transfer prints far more than a pipe holds.
    let (line, status, stderr) = first_line_then_close(&["demo", "--client-bytes", "4000000"]);
    assert!(line.contains("CLOSED -> LISTEN"), "{line}");
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(stderr, "", "nothing on stderr, no panic");
    let (line, status, stderr) = first_line_then_close(&["lab", "run", "--all"]);
    assert!(line.starts_with("== three-way-handshake"), "{line}");
    assert!(status.success() && stderr.is_empty(), "{status:?}: {stderr}");
}

#[test]
fn an_error_is_said_once_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}/no-such-folder/x.db", dir.path().display());
    let (code, stdout, stderr) = run(&["--db", &db, "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert_eq!(stderr.matches("unable to open database file").count(), 1, "said once: {stderr}");
    assert!(stderr.contains("no-such-folder does not exist: create it"), "{stderr}");
    // The same URL form works where the folder exists (config print resolves it).
    let good = format!("sqlite://{}/x.db?mode=rwc", dir.path().display());
    let (code, stdout, stderr) = run(&["config", "print", "--db", &good]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("db = \"{}/x.db\"", dir.path().display())), "{stdout}");
    let (code, _, stderr) = run(&["config", "print", "--db", "sqlite:x.db?mode=ro"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("mode=ro"), "{stderr}");
}

#[test]
fn mistyped_names_get_a_suggestion() {
    let (code, _, stderr) = run(&["lab", "run", "three-way-handshak"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("did you mean \"three-way-handshake\"?"), "{stderr}");
    let (code, _, stderr) = run(&["profile", "show", "fredbsd"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("did you mean \"freebsd\"?"), "{stderr}");
    let (code, _, stderr) = run(&["lab", "run", "time-wait-lost-ack", "--variant", "time_wait_of"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("did you mean \"time_wait_off\"?") && stderr.contains("time_wait_on"), "{stderr}");
}

#[test]
fn lab_run_takes_one_variant() {
    let (code, stdout, stderr) = run(&["lab", "run", "time-wait-lost-ack", "--variant", "time_wait_off"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("-- variant `time_wait_off`"), "{stdout}");
    assert!(!stdout.contains("-- variant `time_wait_on`"), "{stdout}");
    let (_, json, _) = run(&["lab", "run", "time-wait-lost-ack", "--variant", "time_wait_on", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    let names: Vec<&str> =
        report["variants"].as_array().expect("variants").iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, ["time_wait_on"]);
}

#[test]
fn profile_show_prints_every_setting_with_its_source() {
    let (code, stdout, stderr) = run(&["profile", "show", "freebsd"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("# profiles/freebsd.toml"), "{stdout}");
    assert!(stdout.contains("msl_ms = 30000") && stdout.contains("sys/netinet/tcp_timer.h"), "{stdout}");
    let settings: toml::Table = toml::from_str(&stdout).expect("the output is the profile as TOML");
    assert!(settings.len() >= 20, "{settings:?}");
}

#[test]
fn piped_output_has_no_colour_and_every_line_fits_a_hundred_columns() {
    let (code, stdout, _) = run(&["lab", "run", "--all"]);
    assert_eq!(code, 0);
    assert!(!stdout.contains('\x1b'), "no escape codes in a pipe");
    // Ladders, explanations, variant descriptions and checks alike.
    for line in stdout.lines() {
        assert!(line.chars().count() <= 100, "{} columns: {line}", line.chars().count());
    }
    let rows = stdout.lines().filter(|l| l.contains('|')).count();
    assert!(rows > 100, "the ladders were found: {rows} rows");
}

#[test]
fn a_script_that_does_not_parse_is_an_error_not_a_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.pkt");
    std::fs::write(&bad, "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < S 0:0(0 win\n").expect("write");
    let (code, stdout, _) = run(&["packetdrill", "run", &bad.to_string_lossy()]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("ERROR ") && stdout.contains("bad.pkt:2: parse error"), "{stdout}");
    assert!(stdout.contains("0 passed, 0 failed, 0 skipped, 1 errors"), "{stdout}");
}
