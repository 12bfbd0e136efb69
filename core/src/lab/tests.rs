//! Unit tests of the lab format, runner and ladder.

use super::*;
use crate::engine::Isn;

#[test]
fn every_builtin_lab_parses_and_passes() {
    let labs = builtin();
    assert_eq!(labs.len(), 23, "the seed's twelve labs, eight of congestion control, three of the data path");
    for (name, _) in labs {
        let lab = builtin_lab(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = run(&lab);
        assert!(report.passed, "{name} failed:\n{}", render_report(&report));
        assert!(report.variants.iter().all(|v| !v.checks.is_empty()), "{name} checks nothing");
    }
}

#[test]
fn every_builtin_lab_report_fits_the_ladder_width() {
    for (name, _) in builtin() {
        let text = render_report(&run(&builtin_lab(name).expect("lab")));
        for line in text.lines() {
            let columns = line.chars().count();
            assert!(columns <= crate::ladder::LADDER_WIDTH, "{name}: a line of {columns} columns:\n{line}");
        }
    }
}

#[test]
fn a_long_check_wraps_under_its_verdict_and_keeps_every_word() {
    let message = "states: CLOSED -> SYN_SENT -> ESTABLISHED -> FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT -> CLOSED \
                   and then some more words to push it past the edge";
    let lines = crate::ladder::wrap(message, "  PASS ", "       ");
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(lines[0].starts_with("  PASS states:"), "{lines:?}");
    assert!(lines[1..].iter().all(|l| l.starts_with("       ") && !l[7..].starts_with(' ')), "{lines:?}");
    assert!(lines.iter().all(|l| l.chars().count() <= crate::ladder::LADDER_WIDTH), "{lines:?}");
    let words: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).skip(1).collect();
    assert_eq!(words, message.split_whitespace().collect::<Vec<_>>());
}

#[test]
fn a_word_longer_than_a_line_is_cut_rather_than_overflowing() {
    let word = "x".repeat(250);
    let lines = crate::ladder::wrap(&word, "  ", "  ");
    assert!(lines.iter().all(|l| l.chars().count() <= crate::ladder::LADDER_WIDTH), "{lines:?}");
    assert_eq!(lines.iter().map(|l| l.trim()).collect::<String>(), word);
}

#[test]
fn a_long_note_wraps_inside_the_ladder_and_long_host_names_say_how_wide_to_look() {
    let note = "a remark long enough to run past the right edge of any ladder drawn in one hundred columns, \
                so it has to wrap";
    let text = format!("{HANDSHAKE}\n[[step]]\nnote = \"{note}\"\n");
    let ladder = &run(&Lab::parse("note.toml", &text).expect("parses")).variants[0].ladder;
    assert!(ladder.lines().all(|l| l.chars().count() <= crate::ladder::LADDER_WIDTH), "{ladder}");
    assert!(ladder.contains("# a remark") && ladder.contains("so it has to wrap"), "{ladder}");
    assert!(!ladder.contains("columns wide"), "a ladder that fits says nothing about width:\n{ladder}");

    let long = "a-server-whose-name-is-far-longer-than-the-column-it-heads";
    let hosts = format!(
        "[[host]]\nname = \"A\"\nip = \"10.0.0.1\"\n\n[[host]]\nname = \"{long}\"\nip = \"10.0.0.2\"\n\n[[step]]"
    );
    let wide = HANDSHAKE.replace("\"B\"", &format!("\"{long}\"")).replacen("[[step]]", &hosts, 1);
    let ladder = &run(&Lab::parse("wide.toml", &wide).expect("parses")).variants[0].ladder;
    let widest = ladder.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest > crate::ladder::LADDER_WIDTH, "the long name widens the ladder:\n{ladder}");
    assert!(ladder.contains(&format!("{widest} columns wide")), "and it says so:\n{ladder}");
}

#[test]
fn why_not_two_way_shows_the_ghost_only_in_the_two_way_variant() {
    let report = run(&builtin_lab("why-not-two-way").expect("lab"));
    let names: Vec<&str> = report.variants.iter().map(|v| v.name.as_str()).collect();
    assert!(names.len() >= 2, "three-way and two-way variants, got {names:?}");
    let text = render_report(&report);
    assert!(text.contains("RST"), "the three-way variant refuses with RST:\n{text}");
    assert!(text.contains("ESTABLISHED"), "the two-way variant ends ESTABLISHED:\n{text}");
}

const HANDSHAKE: &str = r#"
title = "t"
explanation = "e"
seed = 1

[profile]
isn = 300

[[step]]
listen = { host = "B", port = 80, isn = 500 }

[[step]]
open = { name = "c", client = "A", server = "B", port = 80, client_port = 40000 }

[[step]]
run_until_idle = {}
"#;

#[test]
fn a_wrong_expectation_fails_saying_what_was_expected_what_happened_and_when() {
    let text = format!(
        "{HANDSHAKE}\n[[step]]\nexpect_state = {{ conn = \"c\", side = \"client\", state = \"FIN_WAIT_2\" }}\n"
    );
    let lab = Lab::parse("wrong.toml", &text).expect("parses");
    let report = run(&lab);
    assert!(!report.passed);
    let failed: Vec<&Check> = report.variants.iter().flat_map(|v| &v.checks).filter(|c| !c.passed).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let message = failed[0].message();
    assert!(message.contains("FIN_WAIT_2"), "{message}");
    assert!(message.contains("ESTABLISHED"), "{message}");
    assert!(message.contains("t="), "{message}");
    let expected_line = text.lines().position(|l| l.starts_with("expect_state")).expect("line") + 1;
    assert_eq!(failed[0].line, expected_line, "{message}");
}

#[test]
fn a_right_expectation_on_the_same_lab_passes() {
    let text = format!(
        "{HANDSHAKE}\n[[step]]\nexpect_state = {{ conn = \"c\", side = \"client\", state = \"ESTABLISHED\" }}\n"
    );
    let report = run(&Lab::parse("right.toml", &text).expect("parses"));
    assert!(report.passed, "{}", render_report(&report));
}

#[test]
fn an_unknown_field_names_the_file_line_and_field() {
    let text = HANDSHAKE.replace("client_port = 40000", "client_prot = 40000");
    let err = Lab::parse("typo.toml", &text).expect_err("unknown field");
    let message = err.to_string();
    let line = text.lines().position(|l| l.contains("client_prot")).expect("line") + 1;
    assert!(message.starts_with(&format!("typo.toml:{line}:")), "{message}");
    assert!(message.contains("client_prot"), "{message}");
}

#[test]
fn malformed_toml_and_unknown_labs_are_errors_not_panics() {
    let err = Lab::parse("bad.toml", "title = \"x\"\n[[step]\n").expect_err("malformed");
    assert!(err.to_string().starts_with("bad.toml:2:"), "{err}");
    assert!(matches!(builtin_lab("no-such-lab"), Err(LabError::UnknownLab { .. })));
    let typo = builtin_lab("three-way-handshak").expect_err("a typo").to_string();
    assert!(typo.contains("did you mean \"three-way-handshake\"?"), "{typo}");
}

#[test]
fn the_ladder_shows_both_columns_and_the_handshake_labels() {
    let report = run(&builtin_lab("three-way-handshake").expect("lab"));
    let ladder = &report.variants[0].ladder;
    assert!(ladder.contains("SYN seq=300 ack=0"), "{ladder}");
    assert!(ladder.contains("SYN+ACK seq=500 ack=301"), "{ladder}");
    assert!(ladder.contains("ACK seq=301 ack=501"), "{ladder}");
    assert!(ladder.contains("SYN_SENT") && ladder.contains("SYN_RECEIVED"), "{ladder}");
}

#[test]
fn a_lab_and_a_variant_name_a_shipped_profile_and_override_single_settings() {
    let text = HANDSHAKE.replace("[profile]\nisn = 300", "[profile]\nname = \"freebsd\"\nisn = 300")
        + "\n[[variant]]\nname = \"rfc\"\nprofile = { name = \"rfc9293\", mss = 536 }\n\n[[variant]]\nname = \"bsd\"\n";
    let lab = Lab::parse("named.toml", &text).expect("parses");
    let freebsd = crate::profiles::named_profile("freebsd").expect("shipped");
    let rfc9293 = crate::profiles::named_profile("rfc9293").expect("shipped");
    let by_name = |n: &str| lab.variants.iter().find(|v| v.name == n).expect("variant").profile.clone();
    let bsd = by_name("bsd");
    assert_eq!((bsd.window, bsd.send_buffer, bsd.isn), (freebsd.window, freebsd.send_buffer, Isn::Fixed(300)));
    assert!(bsd.listen_drops_syn_ack.is_on());
    let rfc = by_name("rfc");
    assert_eq!((rfc.window, rfc.mss, rfc.isn), (rfc9293.window, 536, rfc9293.isn), "a name starts again");
    assert!(run(&lab).passed);

    let bad = HANDSHAKE.replace("[profile]\nisn = 300", "[profile]\nisn = 300\nname = \"bsd\"");
    let message = Lab::parse("bad.toml", &bad).expect_err("unknown profile").to_string();
    let line = bad.lines().position(|l| l.starts_with("name = \"bsd\"")).expect("line") + 1;
    assert!(message.starts_with(&format!("bad.toml:{line}:")), "{message}");
    assert!(message.contains("profile.name") && message.contains("unknown profile \"bsd\""), "{message}");
}

#[test]
fn a_lab_expects_a_fate_word_or_a_drop_reason_and_the_old_spelling_still_reads() {
    use crate::lab::ExpectedFate;
    use crate::sim::{DropReason, Fate, SegmentOutcome};
    let no_listener = SegmentOutcome { fate: Fate::Dropped, reason: Some(DropReason::NoListener) };
    let lost = SegmentOutcome { fate: Fate::Lost, reason: Some(DropReason::Loss) };
    let expect = |word: &str| ExpectedFate::parse(word).unwrap_or_else(|| panic!("{word} reads"));
    assert!(expect("dropped").accepts(&no_listener) && expect("dropped").accepts(&lost));
    assert!(expect("no_listener").accepts(&no_listener) && !expect("no_listener").accepts(&lost));
    assert!(expect("lost").accepts(&lost) && !expect("lost").accepts(&no_listener));
    assert_eq!(expect("dropped_by_fault"), expect("fault"));
    assert_eq!(expect("bad_checksum").name(), "bad_checksum");
    assert!(!expect("delivered").accepts(&lost));
    assert_eq!(ExpectedFate::parse("duplicated"), None, "a remark is no fate");
    assert_eq!(ExpectedFate::parse("vanished"), None);
}

#[test]
fn fairness_and_sawtooth_expectations_are_checked_when_parsed() {
    let lab = |step: &str| {
        let text = format!(
            "title = \"t\"\nexplanation = \"e\"\n[[step]]\nlisten = {{ host = \"B\", port = 80 }}\n[[step]]\nopen = {{ name = \"c\", client = \"A\", server = \"B\", port = 80 }}\n[[step]]\n{step}\n"
        );
        Lab::parse("t.toml", &text)
    };
    let field = |step: &str| match lab(step) {
        Err(LabError::Parse { field, .. }) => field,
        other => panic!("expected a parse error for {step}, got {other:?}"),
    };
    assert_eq!(
        field("expect_fairness = { conns = [\"c\"], last_ms = 1000, at_least = 0.9 }").as_deref(),
        Some("expect_fairness.conns")
    );
    assert_eq!(
        field("expect_fairness = { conns = [\"c\", \"c\"], last_ms = 0, at_least = 0.9 }").as_deref(),
        Some("expect_fairness.last_ms")
    );
    assert_eq!(
        field("expect_fairness = { conns = [\"c\", \"c\"], last_ms = 10, at_least = 1.5 }").as_deref(),
        Some("expect_fairness.at_least")
    );
    assert_eq!(
        field("expect_sawtooth = { conn = \"c\", side = \"client\", cycles = 0 }").as_deref(),
        Some("expect_sawtooth.cycles")
    );
    assert!(lab("expect_sawtooth = { conn = \"c\", side = \"client\", cycles = 2 }").is_ok());
}

#[test]
fn slow_start_plots_its_window_doubling_once_per_round_trip() {
    let report = run(&builtin_lab("slow-start").expect("lab"));
    let plot = &report.variants[0].plots;
    let rows: Vec<(u32, char)> = plot
        .lines()
        .skip(1)
        .map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            (cols[2].parse().expect("cwnd"), cols[3].chars().next().expect("phase"))
        })
        .collect();
    assert!(plot.starts_with("cwnd of c client (octets), one row per 20 ms:"), "{plot}");
    // One row per 20 ms round trip, from the IW the handshake fixed.
    assert_eq!(rows.first(), Some(&(4380, 'S')), "{plot}");
    assert!(rows.windows(2).any(|w| w[0].0 == 4380 && w[1].0 == 8760), "{plot}");
    assert!(rows.windows(2).any(|w| w[0].0 == 8760 && w[1].0 == 17520), "{plot}");
    let text = render_report(&report);
    assert!(text.contains(plot.as_str()), "the plot is printed under the ladder");
    assert!(text.lines().all(|l| l.chars().count() <= crate::ladder::LADDER_WIDTH));
}

#[test]
fn a_lab_closes_a_socket_or_only_its_sending_side() {
    let steps = |how: &str| {
        format!(
            "{HANDSHAKE}\n[[step]]\nclose = {{ conn = \"c\", side = \"client\"{how} }}\n\
             [[step]]\nrun_until_idle = {{ max_ms = 100 }}\n\
             [[step]]\nsend = {{ conn = \"c\", side = \"server\", data = \"late\" }}\n\
             [[step]]\nrun_until_idle = {{ max_ms = 100 }}\n"
        )
    };
    let expect =
        |state: &str| format!("[[step]]\nexpect_state = {{ conn = \"c\", side = \"client\", state = \"{state}\" }}\n");
    for (how, state) in
        [("", "FIN_WAIT_2"), (", how = \"shutdown_write\"", "FIN_WAIT_2"), (", how = \"close\"", "CLOSED")]
    {
        let text = format!("{}{}", steps(how), expect(state));
        let report = run(&Lab::parse("close.toml", &text).expect("parses"));
        assert!(report.passed, "{how}: {}", render_report(&report));
    }
    let err = Lab::parse("close.toml", &steps(", how = \"slam\"")).expect_err("unknown how").to_string();
    assert!(err.contains("slam") || err.contains("how"), "{err}");
}
