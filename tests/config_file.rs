//! The configuration file through the real binary: `tcplab config print`
//! shows flags > environment > file > defaults; `TCPLAB_CONFIG` and a
//! `tcplab.toml` in the working directory are found; a bad key is refused
//! by name; and `serve` runs with what the file says (its addresses,
//! database and limits).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{Rest, parse_listening};
use reqwest::StatusCode;
use serde_json::json;

/// The binary with no `TCPLAB_*` variable inherited from the caller.
fn tcplab(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcplab"));
    cmd.current_dir(cwd).stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("TCPLAB_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs `config print` and parses its TOML.
fn print(mut cmd: Command) -> toml::Table {
    let out = cmd.args(["config", "print"]).output().expect("run tcplab config print");
    assert!(out.status.success(), "config print failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    toml::from_str(&text).unwrap_or_else(|e| panic!("config print is TOML: {e}\n{text}"))
}

fn limit(t: &toml::Table, name: &str) -> i64 {
    t["limits"][name].as_integer().unwrap_or_else(|| panic!("limits.{name} in {t}"))
}

const FILE: &str = r#"
http = "127.0.0.1:1111"
grpc = "127.0.0.1:2222"
db = "from-file.db"

[limits]
max_sessions = 5
max_hosts = 7
max_faults = 3
"#;

#[test]
fn config_print_shows_flags_over_env_over_file_over_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lab.toml");
    std::fs::write(&file, FILE).expect("write");

    // Defaults alone (no file in the working directory).
    let t = print(tcplab(dir.path()));
    assert_eq!(t["http"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(t["grpc"].as_str(), Some("127.0.0.1:50051"));
    assert_eq!(t["db"].as_str(), Some("tcplab.db"));
    assert_eq!(limit(&t, "max_sessions"), 1000);

    // All four layers at once.
    let mut cmd = tcplab(dir.path());
    cmd.env("TCPLAB_GRPC", "127.0.0.1:3333").env("TCPLAB_MAX_HOSTS", "8").env("TCPLAB_MAX_FAULTS", "4");
    let out = cmd
        .args(["config", "print", "--config"])
        .arg(&file)
        .args(["--max-faults", "9", "--db", "flag.db"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains(&format!("config file {}", file.display())), "names the file: {text}");
    let t: toml::Table = toml::from_str(&text).expect("TOML");
    assert_eq!(t["http"].as_str(), Some("127.0.0.1:1111"), "file over default");
    assert_eq!(t["grpc"].as_str(), Some("127.0.0.1:3333"), "env over file");
    assert_eq!(t["db"].as_str(), Some("flag.db"), "flag over file");
    assert_eq!(limit(&t, "max_sessions"), 5, "file over default");
    assert_eq!(limit(&t, "max_hosts"), 8, "env over file");
    assert_eq!(limit(&t, "max_faults"), 9, "flag over env over file");
    assert_eq!(limit(&t, "run_max_ms"), 86_400_000, "default kept");
}

#[test]
fn the_file_is_found_by_variable_or_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let file = elsewhere.path().join("x.toml");
    std::fs::write(&file, FILE).expect("write");
    let mut cmd = tcplab(dir.path());
    cmd.env("TCPLAB_CONFIG", &file);
    assert_eq!(print(cmd)["http"].as_str(), Some("127.0.0.1:1111"), "TCPLAB_CONFIG");

    std::fs::write(dir.path().join("tcplab.toml"), "http = \"127.0.0.1:4444\"\n").expect("write");
    assert_eq!(print(tcplab(dir.path()))["http"].as_str(), Some("127.0.0.1:4444"), "./tcplab.toml");
    let mut cmd = tcplab(dir.path());
    cmd.env("TCPLAB_CONFIG", &file);
    assert_eq!(print(cmd)["http"].as_str(), Some("127.0.0.1:1111"), "an explicit file wins over ./tcplab.toml");
}

#[test]
fn a_bad_key_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tcplab.toml"), "[limits]\nmax_sesions = 3\n").expect("write");
    let out = tcplab(dir.path()).args(["config", "print"]).output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("limits.max_sesions"), "{stderr}");
    let out = tcplab(dir.path()).arg("serve").output().expect("run");
    assert!(!out.status.success(), "serve refuses it too");
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.max_sesions"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_uses_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("from-config.db");
    let file = dir.path().join("serve.toml");
    let text = format!(
        "http = \"127.0.0.1:0\"\ngrpc = \"127.0.0.1:0\"\ndb = {:?}\n\n[limits]\nmax_sessions = 1\n",
        db.display().to_string()
    );
    std::fs::write(&file, text).expect("write");
    let mut child = tcplab(dir.path())
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let http = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if let Some((http, _)) = parse_listening(&line) {
                    break http;
                }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("no 'tcplab listening' line: {e}");
            }
        }
    };
    assert!(db.exists(), "the database is where the file says");
    let rest = Rest::new(&format!("http://{http}"));
    rest.post_expect("/api/v1/sessions", json!({"name": "one"}), StatusCode::CREATED).await;
    let (status, body) = rest.post("/api/v1/sessions", json!({"name": "two"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "max_sessions = 1 from the file: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("max_sessions")), "{body}");
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the server did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every refusal says "raise it with --flag, TCPLAB_VAR or [limits] key"
/// (`tcplab::service::limits::raise_hint`): each limit has that flag and
/// that variable, and they set it.
#[test]
fn every_limit_can_be_raised_by_the_flag_and_the_variable_its_refusals_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let defaults = print(tcplab(dir.path()));
    let limits = defaults["limits"].as_table().expect("[limits]");
    assert!(limits.len() >= 18, "{limits:?}");
    for (key, value) in limits {
        let default = value.as_integer().expect("an integer limit");
        let wanted = default + 7;
        let hint = tcplab::service::limits::raise_hint(key);
        let flag = hint.split_whitespace().find(|w| w.starts_with("--")).expect("a flag").trim_end_matches(',');
        let variable =
            hint.split_whitespace().find(|w| w.starts_with("TCPLAB_")).expect("a variable").trim_end_matches(',');
        let out = tcplab(dir.path()).args(["config", "print", flag, &wanted.to_string()]).output().expect("run");
        assert!(out.status.success(), "{flag}: {}", String::from_utf8_lossy(&out.stderr));
        let by_flag: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).expect("TOML");
        assert_eq!(limit(&by_flag, key), wanted, "{flag}");
        let mut by_variable = tcplab(dir.path());
        by_variable.env(variable, wanted.to_string());
        assert_eq!(limit(&print(by_variable), key), wanted, "{variable}");
    }
}
