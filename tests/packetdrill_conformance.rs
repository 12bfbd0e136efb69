//! packetdrill conformance: the FreeBSD TCP maintainers' state-event-engine
//! scripts (in ../shared, not in the repository) against the pass-count floor
//! kept in tests/packetdrill/floor.txt, which only ever rises; and our own
//! scripts for the seed text's claims (tests/packetdrill/*.pkt), all passing.
//! Both run the real `tcplab packetdrill run` command.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tcplab packetdrill run ARGS...`; returns (exit code, stdout).
fn packetdrill(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tcplab"))
        .arg("packetdrill")
        .arg("run")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run tcplab");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.code().is_some(), "tcplab was killed: {}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout)
}

/// The counts of the summary line `packetdrill: N passed, N failed, N skipped (...)`.
fn summary(stdout: &str) -> (usize, usize, usize) {
    let line = stdout.lines().rev().find(|l| l.starts_with("packetdrill: ")).expect("a summary line");
    let numbers: Vec<usize> = line
        .trim_start_matches("packetdrill: ")
        .split(',')
        .take(3)
        .map(|part| part.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a count"))
        .collect();
    (numbers[0], numbers[1], numbers[2])
}

#[test]
fn shared_freebsd_suite_passes_at_least_the_floor() {
    let suite = repo().join("../shared/conformance/freebsd-tcp-testsuite");
    if !Path::new(&suite).is_dir() {
        eprintln!();
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!!! SKIPPED: the shared packetdrill suite is not at {}", suite.display());
        eprintln!("!!! (a CI clone without ../shared): the conformance floor was NOT checked.");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        return;
    }
    let floor: usize = std::fs::read_to_string(repo().join("tests/packetdrill/floor.txt"))
        .expect("tests/packetdrill/floor.txt")
        .trim()
        .parse()
        .expect("floor.txt holds one number");
    let suite = suite.to_string_lossy().into_owned();
    // The command as written: each script picks the profile of the
    // kernel whose sysctls it writes (FreeBSD's, here).
    let (code, stdout) = packetdrill(&[&suite]);
    let (passed, failed, skipped) = summary(&stdout);
    eprintln!("{}", stdout.lines().last().unwrap_or(""));
    assert!(stdout.contains("profiles: freebsd x154 (named by the scripts"), "{stdout}");
    // --profile overrides what the scripts would choose.
    let (_, forced) = packetdrill(&[&suite, "--profile", "rfc9293"]);
    assert!(forced.contains("profiles: rfc9293 x154 (--profile)"), "{forced}");
    assert_eq!(passed + failed + skipped, 154, "the shared suite has 154 scripts");
    assert_eq!(code, if failed > 0 { 1 } else { 0 }, "exit status follows the failures");
    assert!(
        passed >= floor,
        "conformance fell below the floor: {passed} passed < {floor} (tests/packetdrill/floor.txt)\n{stdout}"
    );
    if passed > floor {
        eprintln!("conformance rose to {passed} passing scripts: raise tests/packetdrill/floor.txt from {floor}");
    }
}

/// The FreeBSD suite's data-path scripts (delayed ACKs, SACK blocks for
/// every reordering and overlap, the options of a SYN, SACK loss recovery)
/// against tests/packetdrill/floor-data-path.txt. Option lists are compared
/// (the default): a SACK block out of place is a failure, as it is with
/// `--ignore-options` absent from the state-event run above.
#[test]
fn shared_data_path_suite_passes_at_least_its_floor_with_options_compared() {
    let suite = repo().join("../shared/conformance/freebsd-data-path");
    if !Path::new(&suite).is_dir() {
        eprintln!("!!! SKIPPED: the shared data-path suite is not at {}: its floor was NOT checked", suite.display());
        return;
    }
    let floor: usize = std::fs::read_to_string(repo().join("tests/packetdrill/floor-data-path.txt"))
        .expect("tests/packetdrill/floor-data-path.txt")
        .trim()
        .parse()
        .expect("one number");
    let suite = suite.to_string_lossy().into_owned();
    let (_, stdout) = packetdrill(&[&suite]);
    // The old flag still parses (options are compared either way).
    let (_, strict) = packetdrill(&[&suite, "--strict-options"]);
    assert_eq!(summary(&strict), summary(&stdout));
    let (passed, failed, skipped) = summary(&stdout);
    eprintln!("{}", stdout.lines().last().unwrap_or(""));
    assert!(passed >= floor, "the data-path suite fell below its floor: {passed} < {floor}\n{stdout}");
    assert!(passed + failed + skipped <= 134, "{stdout}");
    // Every reordering and overlap script: SACK blocks, D-SACK, delayed ACKs, MSG_PEEK.
    for name in ["reordering-13524", "overlapping-250-475", "overlapping-050-275", "overlapping-200-300"] {
        assert!(stdout.contains(&format!("PASS {suite}/rcv-data-segments/{name}.pkt")), "{name}: {stdout}");
    }
    if passed > floor {
        eprintln!("the data-path suite rose to {passed}: raise tests/packetdrill/floor-data-path.txt from {floor}");
    }
}

#[test]
fn our_scripts_for_the_seed_claims_all_pass() {
    let (code, stdout) = packetdrill(&["tests/packetdrill"]);
    let (passed, failed, skipped) = summary(&stdout);
    assert_eq!((failed, skipped), (0, 0), "{stdout}");
    assert!(passed >= 8, "{stdout}");
    assert_eq!(code, 0);
    for claim in [
        "seed-handshake-numbers",
        "four-way-close",
        "passive-close",
        "old-duplicate-syn",
        "simultaneous-open",
        "simultaneous-close",
        "rst-to-closed-port",
        "slow-start",
        "fast-retransmit",
        "newreno-partial-ack",
    ] {
        assert!(stdout.contains(&format!("PASS tests/packetdrill/{claim}.pkt")), "{claim}: {stdout}");
    }
}

#[test]
fn a_wrong_expectation_fails_with_file_line_and_ladder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("wrong.pkt");
    let text = std::fs::read_to_string(repo().join("tests/packetdrill/seed-handshake-numbers.pkt"))
        .expect("seed script")
        .replace("> . 1:1(0) ack 401 win 65435", "> . 1:1(0) ack 402 win 65435");
    std::fs::write(&script, &text).expect("write script");
    let line = text.lines().position(|l| l.contains("ack 402")).expect("edited line") + 1;
    let path = script.to_string_lossy().into_owned();
    let (code, stdout) = packetdrill(&[&path, "--junit", &dir.path().join("report.xml").to_string_lossy()]);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(summary(&stdout), (0, 1, 0));
    assert!(stdout.contains(&format!("FAIL {path}:{line}: ack 401, expected 402")), "{stdout}");
    assert!(stdout.contains("tcplab:   0.030000 . 1:1(0) ack 401 win 65435"), "{stdout}");
    assert!(stdout.contains("ladder so far:") && stdout.contains("ESTABLISHED"), "{stdout}");
    let junit = std::fs::read_to_string(dir.path().join("report.xml")).expect("junit report");
    assert!(junit.contains("<failure message=\"line") && junit.contains("tests=\"1\" failures=\"1\""), "{junit}");
}

#[test]
fn unsupported_features_skip_naming_them_and_parse_errors_are_script_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let skip = dir.path().join("skip.pkt");
    std::fs::write(&skip, "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 `ip link set dev tun0 mtu 1280`\n")
        .expect("write");
    let bad = dir.path().join("bad.pkt");
    std::fs::write(&bad, "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0.1 < Q 1:1(0) win 10\n").expect("write");
    let (code, stdout) = packetdrill(&[&dir.path().to_string_lossy()]);
    // A broken script is no FAIL of tcplab's TCP: it is an ERROR, counted
    // apart, and the exit status (2) says the scripts need fixing.
    assert_eq!(code, 2, "{stdout}");
    assert_eq!(summary(&stdout), (0, 0, 1), "{stdout}");
    assert!(stdout.contains("1 skipped, 1 errors"), "{stdout}");
    assert!(stdout.contains("skip.pkt:2: shell command `ip link set dev tun0 mtu 1280` is not supported"), "{stdout}");
    assert!(stdout.contains("ERROR ") && stdout.contains("bad.pkt:2: parse error at column 8"), "{stdout}");
    assert!(!stdout.contains("FAIL "), "{stdout}");
}

/// `--pcap DIR` writes one capture per script: a pcap file (pcap magic,
/// Ethernet link type) made of whole records, at least one
/// packet each, and the handshake script's first packet tcplab's SYN.
#[test]
fn pcap_dir_gets_one_capture_per_script() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("captures");
    let scripts = repo().join("tests/packetdrill");
    let (code, stdout) = packetdrill(&["--pcap", out.to_str().expect("utf-8"), scripts.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{stdout}");
    let (passed, _, _) = summary(&stdout);
    let mut files: Vec<_> = std::fs::read_dir(&out).expect("the directory").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert_eq!(files.len(), passed, "{files:?}");
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        // Little-endian pcap, microsecond (a1b2c3d4) or nanosecond (a1b23c4d) timestamps.
        assert!(
            bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1] || bytes[..4] == [0x4d, 0x3c, 0xb2, 0xa1],
            "{}: pcap magic {:x?}",
            file.display(),
            &bytes[..4]
        );
        assert_eq!(u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]), 1, "Ethernet link type");
        // Walk the records: 16-byte header each, captured length at offset 8.
        let (mut at, mut packets) = (24usize, 0usize);
        while at + 16 <= bytes.len() {
            let len = u32::from_le_bytes([bytes[at + 8], bytes[at + 9], bytes[at + 10], bytes[at + 11]]) as usize;
            if packets == 0 && file.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seed-handshake")) {
                // Ethernet 14 + IPv4 20, then TCP: flags at offset 13 of the TCP header.
                assert_eq!(bytes[at + 16 + 14 + 20 + 13] & 0x12, 0x02, "the first packet is tcplab's SYN");
            }
            at += 16 + len;
            packets += 1;
        }
        assert_eq!(at, bytes.len(), "{}: whole records", file.display());
        assert!(packets >= 1, "{}", file.display());
    }
}
