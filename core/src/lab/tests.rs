//! Unit tests of the lab format, runner and ladder.

use super::*;
use crate::engine::Isn;

#[test]
fn every_builtin_lab_parses_and_passes() {
    let labs = builtin();
    assert_eq!(labs.len(), 12, "the issue's twelve labs");
    for (name, _) in labs {
        let lab = builtin_lab(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = run(&lab);
        assert!(report.passed, "{name} failed:\n{}", render_report(&report));
        assert!(report.variants.iter().all(|v| !v.checks.is_empty()), "{name} checks nothing");
    }
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
