//! Packet captures read by Debian's tshark: the file `tcplab lab run --pcap`
//! writes, and the one REST (`GET .../pcap`) and gRPC (`GetPcap`) return.
//!
//! For each capture tshark must read every packet, mark none malformed, find
//! every IPv4 and TCP checksum good (checking switched on), show the same
//! addresses, ports, absolute seq/ack numbers, flags, lengths and virtual
//! timestamps as the event log's `segment_sent` events, and flag the
//! retransmission that follows the segment the lab lost.
//!
//! tshark comes from `.ci/tools.sh` (which `.ci/test.sh` runs first). Without
//! it these tests fail under CI (`CI` set); on a developer's machine they
//! skip with a loud message.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use common::server::{TestServer, grpc_channel};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tcplab::api::grpc::pb;
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;

/// Whether tshark can run; panics under CI when it cannot.
fn tshark_available() -> bool {
    let ok = Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "tshark is not installed: CI must run .ci/tools.sh first (apt-get install tshark)");
        // Straight to stderr, past the test harness's output capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!! SKIPPING the tshark checks: tshark is not installed (run `bash .ci/tools.sh`) !!!!!\n"
        );
    }
    ok
}

/// Runs tshark on `file` with IP and TCP checksum checking on and absolute
/// sequence numbers; returns stdout.
fn tshark(file: &Path, extra: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"])
        .args(["-o", "tcp.relative_sequence_numbers:FALSE", "-o", "tcp.analyze_sequence_numbers:TRUE"])
        .args(extra)
        .output()
        .expect("run tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {stderr}");
    // tshark reports a file it cannot read to the end ("cut short", "appears
    // to be damaged") on stderr while still exiting 0 for what it read.
    for bad in ["cut short", "damaged", "appears to be"] {
        assert!(!stderr.contains(bad), "tshark complains about the file: {stderr}");
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One packet as tshark dissects it.
#[derive(Debug, PartialEq, Eq)]
struct Dissected {
    t_ns: u64,
    src: String,
    dst: String,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    len: usize,
}

const FIELDS: [&str; 14] = [
    "frame.number",
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.flags",
    "tcp.len",
    "ip.checksum.status",
    "tcp.checksum.status",
    "_ws.malformed",
    "_ws.expert.severity",
];

/// `1.010000000` (tshark's epoch time) in nanoseconds.
fn epoch_ns(text: &str) -> u64 {
    let (secs, frac) = text.split_once('.').unwrap_or((text, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<u64>().expect("seconds") * 1_000_000_000 + frac[..9].parse::<u64>().expect("nanoseconds")
}

/// Dissects every packet, asserting the file-level properties: frames
/// numbered 1..n, both checksums good (status 1), nothing malformed and no
/// expert item of severity error.
fn dissect(file: &Path) -> Vec<Dissected> {
    let mut args = vec!["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"];
    for f in FIELDS {
        args.extend(["-e", f]);
    }
    let out = tshark(file, &args);
    let mut packets = Vec::new();
    for (i, line) in out.lines().enumerate() {
        let c: Vec<&str> = line.split('|').collect();
        assert_eq!(c.len(), FIELDS.len(), "line {line:?}");
        assert_eq!(c[0], (i + 1).to_string(), "frame numbers in order");
        assert_eq!(c[10], "1", "frame {}: IPv4 header checksum status is good (1): {line}", i + 1);
        assert_eq!(c[11], "1", "frame {}: TCP checksum status is good (1): {line}", i + 1);
        assert_eq!(c[12], "", "frame {}: malformed: {line}", i + 1);
        // Expert severities: 0x00200000 chat, 0x00400000 note, 0x00600000
        // warn, 0x00800000 error; none may be an error.
        for sev in c[13].split(',').filter(|s| !s.is_empty()) {
            let value = if let Some(hex) = sev.strip_prefix("0x") {
                u32::from_str_radix(hex, 16).expect("severity")
            } else {
                sev.parse::<u32>().expect("severity")
            };
            assert!(value < 0x0080_0000, "frame {}: an expert error: {line}", i + 1);
        }
        let flags = u8::from_str_radix(c[8].trim_start_matches("0x").trim_start_matches("0"), 16).unwrap_or(0);
        packets.push(Dissected {
            t_ns: epoch_ns(c[1]),
            src: c[2].to_string(),
            dst: c[3].to_string(),
            sport: c[4].parse().expect("sport"),
            dport: c[5].parse().expect("dport"),
            seq: c[6].parse().expect("seq"),
            ack: c[7].parse().expect("ack"),
            flags,
            len: c[9].parse().expect("len"),
        });
    }
    packets
}

/// Frame numbers tshark's TCP analysis marks as retransmissions.
fn retransmissions(file: &Path) -> Vec<usize> {
    let out = tshark(file, &["-Y", "tcp.analysis.retransmission", "-T", "fields", "-e", "frame.number"]);
    out.lines().map(|l| l.trim().parse().expect("frame number")).collect()
}

/// Frames with any malformed or bad-checksum mark, by display filter (a
/// second route to the same property as [`dissect`]'s per-field checks).
fn flagged(file: &Path) -> String {
    tshark(
        file,
        &[
            "-Y",
            "_ws.malformed || ip.checksum.status == 0 || tcp.checksum.status == 0 || _ws.expert.severity == error",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    )
}

/// The bit value of a JSON flag list (`["ACK","SYN"]`).
fn flag_bits(flags: &Value) -> u8 {
    let names = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    let mut bits = 0u8;
    for f in flags.as_array().expect("flags") {
        let i = names.iter().position(|n| Some(*n) == f.as_str()).expect("known flag");
        bits |= 1 << i;
    }
    bits
}

/// The packets the event log says were sent: every `segment_sent`, with
/// host names mapped to addresses.
fn expected(events: &[Value], address: impl Fn(&str) -> String) -> Vec<Dissected> {
    events
        .iter()
        .filter(|e| e["kind"] == "segment_sent")
        .map(|e| {
            let s = &e["segment"];
            Dissected {
                t_ns: e["t_ns"].as_u64().expect("t_ns"),
                src: address(s["from"].as_str().expect("from")),
                dst: address(s["to"].as_str().expect("to")),
                sport: s["src_port"].as_u64().expect("src_port") as u16,
                dport: s["dst_port"].as_u64().expect("dst_port") as u16,
                seq: s["seq"].as_u64().expect("seq") as u32,
                ack: s["ack"].as_u64().expect("ack") as u32,
                flags: flag_bits(&s["flags"]),
                len: s["len"].as_u64().expect("len") as usize,
            }
        })
        .collect()
}

fn ab(name: &str) -> String {
    match name {
        "A" => "10.0.0.1".into(),
        "B" => "10.0.0.2".into(),
        other => panic!("unexpected host {other}"),
    }
}

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;

/// The handshake as tshark saw it: the first SYN, SYN+ACK and bare ACK, as
/// (seq, ack) pairs.
fn handshake(packets: &[Dissected]) -> [(u32, u32); 3] {
    let find = |flags: u8| {
        let p = packets.iter().find(|p| p.flags == flags && p.len == 0).expect("the handshake segment");
        (p.seq, p.ack)
    };
    [find(SYN), find(SYN_ACK), find(ACK)]
}

#[test]
fn lab_run_pcap_reads_cleanly_in_tshark_and_matches_the_event_log() {
    if !tshark_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("syn.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_tcplab"))
        .args(["lab", "run", "syn-retransmission", "--json", "--pcap"])
        .arg(&file)
        .output()
        .expect("run tcplab lab run");
    assert!(out.status.success(), "lab run failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the JSON report");
    let events = report["variants"][0]["events"].as_array().expect("events").clone();

    let packets = dissect(&file);
    let want = expected(&events, ab);
    assert_eq!(want.len(), 4, "SYN (lost), SYN again, SYN+ACK, ACK");
    assert_eq!(packets, want, "tshark sees exactly the segments of the event log");
    assert_eq!(handshake(&packets), [(300, 0), (500, 301), (301, 501)]);
    // The SYN the fault rule dropped is in the capture (at 0 s), and its
    // retransmission at 1 s is what tshark's TCP analysis flags.
    let dropped: Vec<&Value> = events.iter().filter(|e| e["kind"] == "segment_dropped").collect();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0]["reason"], "fault");
    assert_eq!(packets[1].t_ns, 1_000_000_000);
    assert_eq!(retransmissions(&file), vec![2]);
    assert_eq!(flagged(&file), "", "no malformed or bad-checksum frame");
}

#[test]
fn a_multi_variant_lab_writes_one_capture_per_variant() {
    if !tshark_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_tcplab"))
        .args(["lab", "run", "time-wait-lost-ack", "--json", "--pcap"])
        .arg(dir.path().join("tw.pcap"))
        .output()
        .expect("run tcplab lab run");
    assert!(out.status.success(), "lab run failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the JSON report");
    for variant in report["variants"].as_array().expect("variants") {
        let name = variant["name"].as_str().expect("name");
        let file = dir.path().join(format!("tw-{name}.pcap"));
        let packets = dissect(&file);
        let events = variant["events"].as_array().expect("events");
        assert_eq!(packets, expected(events, ab), "variant {name}");
        assert_eq!(handshake(&packets), [(300, 0), (500, 301), (301, 501)], "variant {name}");
        // A's last ACK (seq 302 ack 502) is lost, so B's FIN+ACK goes again.
        let rtx = retransmissions(&file);
        assert_eq!(rtx.len(), 1, "variant {name}: {rtx:?}");
        let p = &packets[rtx[0] - 1];
        assert_eq!((p.src.as_str(), p.flags, p.seq, p.ack), ("10.0.0.2", 0x11, 501, 302), "variant {name}");
        assert_eq!(flagged(&file), "", "variant {name}");
    }
}

#[test]
fn tshark_catches_a_bad_checksum() {
    // The negative control: the same checks on a capture with one TCP
    // checksum byte flipped must see it, or they prove nothing.
    if !tshark_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("syn.pcap");
    let status = Command::new(env!("CARGO_BIN_EXE_tcplab"))
        .args(["lab", "run", "syn-retransmission", "--pcap"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run tcplab lab run");
    assert!(status.success());
    let mut bytes = std::fs::read(&file).expect("read the capture");
    // Global header 24, record header 16, Ethernet 14, IPv4 20, then TCP;
    // its checksum is at offset 16.
    bytes[24 + 16 + 14 + 20 + 16] ^= 0x5a;
    let bad = dir.path().join("bad.pcap");
    std::fs::write(&bad, &bytes).expect("write");
    assert_eq!(flagged(&bad).trim(), "1", "tshark marks frame 1's checksum bad");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_grpc_pcaps_match_the_session_and_survive_its_end() {
    if !tshark_available() {
        return;
    }
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("pcap", json!({"isn": 300})).await;
    rest.two_hosts_and_listener(sid).await;
    // Lose A's first SYN, as the syn-retransmission lab does.
    rest.post_expect(
        &format!("/api/v1/sessions/{sid}/faults"),
        json!({"from": "A", "to": "B", "match": {"flags": ["SYN"]}, "count": 1, "action": "drop"}),
        StatusCode::CREATED,
    )
    .await;
    let conn = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/connections"),
            json!({"client": "A", "server": "B", "port": 80, "client_port": 40000}),
            StatusCode::CREATED,
        )
        .await;
    let cid = conn["id"].as_u64().expect("id");
    rest.run_until_idle(sid).await;
    rest.post_ok(&format!("/api/v1/sessions/{sid}/connections/{cid}/send"), json!({"side": "client", "data": "hello"}))
        .await;
    rest.run_until_idle(sid).await;

    let url = rest.url(&format!("/api/v1/sessions/{sid}/pcap"));
    let response = rest.client.get(&url).send().await.expect("GET pcap");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/vnd.tcpdump.pcap");
    let from_rest = response.bytes().await.expect("body").to_vec();

    let mut lab = LabServiceClient::new(grpc_channel(&server.grpc).await);
    let from_grpc = lab.get_pcap(pb::SessionRef { session_id: sid }).await.expect("GetPcap").into_inner().pcap;
    assert_eq!(from_grpc, from_rest, "gRPC and REST return the same capture");

    let events = rest.get_ok(&format!("/api/v1/sessions/{sid}/events?kind=segment_sent,segment_dropped")).await;
    let events = events["events"].as_array().expect("events").clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rest.pcap");
    std::fs::write(&file, &from_rest).expect("write");
    let packets = dissect(&file);
    let want = expected(&events, ab);
    assert_eq!(want.len(), 6, "SYN (lost), SYN, SYN+ACK, ACK, data, its ACK");
    assert_eq!(packets, want);
    assert_eq!(handshake(&packets), [(300, 0), (500, 301), (301, 501)]);
    assert_eq!((packets[4].seq, packets[4].len), (301, 5), "the 5 data octets");
    assert_eq!(retransmissions(&file), vec![2], "the SYN after the lost one");
    assert_eq!(flagged(&file), "");

    // After the session ends, the capture comes from the store alone.
    let (status, _) = rest.delete(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(status, StatusCode::OK);
    let after = rest.client.get(&url).send().await.expect("GET pcap").bytes().await.expect("body").to_vec();
    assert_eq!(after, from_rest, "an ended session's capture is the same");

    let (status, body) = rest.get("/api/v1/sessions/999/pcap").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let missing = lab.get_pcap(pb::SessionRef { session_id: 999 }).await.expect_err("unknown session");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    server.stop().await;
}
