//! The lab server over real HTTP: the real server on ephemeral ports with a
//! temporary database, driven with reqwest. A manual-clock session makes
//! every exchange exact: the seed text's numbers (client ISN 300, server ISN
//! 500), a 10 ms link, the four-way close and TIME_WAIT.

mod common;

use base64::Engine as _;
use common::server::{CLEAN_RUN, Rest, SseReader, TestServer, assert_contiguous, assert_error, describe};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tcplab::service::Limits;

/// Selected TCB fields of one end: state, iss, irs, snd_una, snd_nxt, rcv_nxt.
fn tcb(end: &Value) -> (String, u64, u64, u64, u64, u64) {
    (
        end["state"].as_str().expect("state").to_string(),
        end["iss"].as_u64().expect("iss"),
        end["irs"].as_u64().expect("irs"),
        end["snd_una"].as_u64().expect("snd_una"),
        end["snd_nxt"].as_u64().expect("snd_nxt"),
        end["rcv_nxt"].as_u64().expect("rcv_nxt"),
    )
}

fn t(state: &str, iss: u64, irs: u64, una: u64, nxt: u64, rcv: u64) -> (String, u64, u64, u64, u64, u64) {
    (state.to_string(), iss, irs, una, nxt, rcv)
}

async fn connection(rest: &Rest, sid: u64, cid: u64) -> Value {
    rest.get_ok(&format!("/api/v1/sessions/{sid}/connections/{cid}")).await
}

async fn clock(rest: &Rest, sid: u64, body: Value) -> Value {
    rest.post_ok(&format!("/api/v1/sessions/{sid}/clock"), body).await
}

/// Runs the clean run up to both ends ESTABLISHED; returns the connection id.
async fn handshake(rest: &Rest, sid: u64) -> u64 {
    rest.two_hosts_and_listener(sid).await;
    let conn = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/connections"),
            json!({"client": "A", "server": "B", "port": 80, "client_port": 40000, "isn": 300}),
            StatusCode::CREATED,
        )
        .await;
    let cid = conn["id"].as_u64().expect("id");
    assert_eq!(tcb(&conn["client"]), t("SYN_SENT", 300, 0, 300, 301, 0));
    assert_eq!(conn["client"]["local_port"], 40000);
    assert_eq!(conn["client"]["remote_ip"], "10.0.0.2");
    assert_eq!(conn["client"]["remote_port"], 80);
    assert_eq!(conn["client"]["timers"]["retransmit"], 1_000_000_000u64, "RTO 1 s from t=0");
    assert_eq!(conn["server"], Value::Null, "no SYN has arrived yet");

    // One step: the SYN arrives at 10 ms.
    let c = clock(rest, sid, json!({"action": "step"})).await;
    assert_eq!(
        (c["now_ns"].as_u64(), c["steps"].as_u64(), c["idle"].as_bool()),
        (Some(10_000_000), Some(1), Some(false))
    );
    let conn = connection(rest, sid, cid).await;
    assert_eq!(tcb(&conn["client"]), t("SYN_SENT", 300, 0, 300, 301, 0));
    assert_eq!(tcb(&conn["server"]), t("SYN_RECEIVED", 500, 300, 500, 501, 301));
    assert_eq!(conn["server"]["side"], "server");
    assert_eq!(conn["server"]["host"], "B");

    let c = rest.run_until_idle(sid).await;
    assert_eq!(c["now_ns"], 30_000_000u64);
    let conn = connection(rest, sid, cid).await;
    assert_eq!(tcb(&conn["client"]), t("ESTABLISHED", 300, 500, 301, 301, 501));
    assert_eq!(tcb(&conn["server"]), t("ESTABLISHED", 500, 300, 501, 501, 301));
    assert_eq!(conn["client"]["snd_wnd"], 65535);
    assert_eq!(conn["client"]["snd_mss"], 1460);
    assert_eq!(conn["client"]["timers"]["retransmit"], Value::Null);
    cid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_data_and_four_way_close_over_rest() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("clean", json!({"msl_ms": 500})).await;
    let cid = handshake(rest, sid).await;
    let base = format!("/api/v1/sessions/{sid}/connections/{cid}");

    // Data both ways.
    let sent = rest.post_ok(&format!("{base}/send"), json!({"side": "client", "data": "a".repeat(100)})).await;
    assert_eq!(sent, json!({"side": "client", "accepted": 100}));
    rest.run_until_idle(sid).await;
    let sent = rest.post_ok(&format!("{base}/send"), json!({"side": "server", "data": "b".repeat(200)})).await;
    assert_eq!(sent, json!({"side": "server", "accepted": 200}));
    rest.run_until_idle(sid).await;
    let got = rest.get_ok(&format!("{base}/received?side=server")).await;
    let a100 = "a".repeat(100);
    let a100_b64 = base64::engine::general_purpose::STANDARD.encode(&a100);
    assert_eq!(got, json!({"side": "server", "bytes": 100, "data": a100, "data_base64": a100_b64}));
    let got = rest.get_ok(&format!("{base}/received?side=client")).await;
    assert_eq!((got["bytes"].as_u64(), got["data"].as_str()), (Some(200), Some("b".repeat(200).as_str())));
    let conn = connection(rest, sid, cid).await;
    assert_eq!(tcb(&conn["client"]), t("ESTABLISHED", 300, 500, 401, 401, 701));
    assert_eq!(tcb(&conn["server"]), t("ESTABLISHED", 500, 300, 701, 701, 401));
    assert_eq!(
        (conn["client"]["received_bytes"].as_u64(), conn["server"]["received_bytes"].as_u64()),
        (Some(200), Some(100))
    );

    // The four-way close, client first.
    let closed = rest.post_ok(&format!("{base}/close"), json!({"side": "client"})).await;
    assert_eq!(tcb(&closed["client"]), t("FIN_WAIT_1", 300, 500, 401, 402, 701));
    rest.run_until_idle(sid).await;
    let conn = connection(rest, sid, cid).await;
    assert_eq!(tcb(&conn["client"]), t("FIN_WAIT_2", 300, 500, 402, 402, 701));
    assert_eq!(tcb(&conn["server"]), t("CLOSE_WAIT", 500, 300, 701, 701, 402));
    let closed = rest.post_ok(&format!("{base}/close"), json!({"side": "server"})).await;
    assert_eq!(tcb(&closed["server"]), t("LAST_ACK", 500, 300, 701, 702, 402));
    // 15 ms: the server's FIN has arrived (10 ms), the last ACK not yet (20 ms).
    let c = clock(rest, sid, json!({"action": "advance", "ms": 15})).await;
    assert_eq!(c["now_ns"], 105_000_000u64);
    let conn = connection(rest, sid, cid).await;
    assert_eq!(tcb(&conn["client"]), t("TIME_WAIT", 300, 500, 402, 402, 702));
    assert_eq!(conn["client"]["timers"]["time_wait"], 1_100_000_000u64, "2*MSL after the FIN arrived");
    assert_eq!(tcb(&conn["server"]), t("LAST_ACK", 500, 300, 701, 702, 402));
    let c = rest.run_until_idle(sid).await;
    assert_eq!(c["now_ns"], 1_100_000_000u64);
    let conn = connection(rest, sid, cid).await;
    assert_eq!(conn["client"]["state"], "CLOSED");
    assert_eq!(conn["server"]["state"], "CLOSED");
    let list = rest.get_ok(&format!("/api/v1/sessions/{sid}/connections")).await;
    assert_eq!(list["connections"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["connections"][0]["id"], cid);

    // The log, exactly.
    let events = rest.all_events(sid).await;
    let lines: Vec<String> = events.iter().map(describe).collect();
    assert_eq!(lines, CLEAN_RUN);
    let info = rest.get_ok(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!((info["events"].as_u64(), info["now_ns"].as_u64()), (Some(39), Some(1_100_000_000)));
    assert_eq!(info["states"], json!({"CLOSED": 2}));
    let sc = &events[33];
    assert_eq!(sc["cause"], json!({"kind": "segment", "flags": ["ACK", "FIN"], "seq": 701, "ack": 402, "len": 0}));
    assert_eq!(sc["rfc"], "3.10.7.4");
    assert_eq!(events[23]["cause"], json!({"kind": "user", "call": "CLOSE"}));

    // Filters and paging.
    let page = rest.get_ok(&format!("/api/v1/sessions/{sid}/events?kind=state_changed")).await;
    let seqs: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 5, 9, 13, 24, 27, 30, 31, 34, 37, 39]);
    assert_eq!(page["next_after_seq"], 39);
    let page =
        rest.get_ok(&format!("/api/v1/sessions/{sid}/events?kind=timer_fired,segment_delivered&after_seq=29")).await;
    let seqs: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [33, 36, 38]);
    // Connection 1: everything but the listener's LISTEN and the SYN's
    // delivery to the listener (which no connection had yet).
    let page = rest.get_ok(&format!("/api/v1/sessions/{sid}/events?connection={cid}")).await;
    let seqs: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (2..=39).filter(|s| *s != 4).collect();
    assert_eq!(seqs, want);
    let page = rest.get_ok(&format!("/api/v1/sessions/{sid}/events?connection=2")).await;
    assert_eq!(page, json!({"events": [], "next_after_seq": 0}));
    let page = rest.get_ok(&format!("/api/v1/sessions/{sid}/events?after_seq=3&limit=5")).await;
    assert_contiguous(page["events"].as_array().unwrap(), 4);
    assert_eq!((page["events"].as_array().map(Vec::len), page["next_after_seq"].as_u64()), (Some(5), Some(8)));

    // Segments, each with its fate.
    let segs = rest.get_ok(&format!("/api/v1/sessions/{sid}/segments")).await;
    let segs = segs["segments"].as_array().expect("segments");
    let summary: Vec<(u64, String, String, u64, u64, u64, String)> = segs
        .iter()
        .map(|s| {
            let flags: Vec<&str> = s["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
            (
                s["id"].as_u64().unwrap(),
                format!("{}>{}", s["from"].as_str().unwrap(), s["to"].as_str().unwrap()),
                flags.join(","),
                s["seq"].as_u64().unwrap(),
                s["ack"].as_u64().unwrap(),
                s["len"].as_u64().unwrap(),
                s["fate"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let d = |id: u64, dir: &str, flags: &str, seq: u64, ack: u64, len: u64| {
        (id, dir.to_string(), flags.to_string(), seq, ack, len, "delivered".to_string())
    };
    assert_eq!(
        summary,
        [
            d(1, "A>B", "SYN", 300, 0, 0),
            d(2, "B>A", "ACK,SYN", 500, 301, 0),
            d(3, "A>B", "ACK", 301, 501, 0),
            d(4, "A>B", "ACK,PSH", 301, 501, 100),
            d(5, "B>A", "ACK", 501, 401, 0),
            d(6, "B>A", "ACK,PSH", 501, 401, 200),
            d(7, "A>B", "ACK", 401, 701, 0),
            d(8, "A>B", "ACK,FIN", 401, 701, 0),
            d(9, "B>A", "ACK", 701, 402, 0),
            d(10, "B>A", "ACK,FIN", 701, 402, 0),
            d(11, "A>B", "ACK", 402, 702, 0),
        ]
    );
    assert_eq!(segs[0]["src_port"], 40000);
    assert_eq!(segs[0]["dst_port"], 80);
    assert_eq!(segs[0]["window"], 65535);
    assert_eq!(segs[0]["options"], json!([{"kind": "mss", "value": 1460}]));
    assert_eq!(segs[0]["sent_ns"], 0);
    assert_eq!(segs[0]["fates"], json!(["delivered"]));
    assert_eq!(segs[10]["sent_ns"], 100_000_000u64);

    // Ending the session keeps its history; commands are refused.
    let (status, ended) = rest.delete(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["status"], "ended");
    assert!(ended["ended_at"].is_string(), "{ended}");
    assert_eq!(ended["events"], 39);
    assert_eq!(rest.all_events(sid).await, events);
    let got = rest.post(&format!("/api/v1/sessions/{sid}/clock"), json!({"action": "step"})).await;
    assert_error(&got, StatusCode::CONFLICT, "failed_precondition", Some("ended"));
    let got = rest.delete(&format!("/api/v1/sessions/{sid}")).await;
    assert_error(&got, StatusCode::CONFLICT, "failed_precondition", Some("already ended"));
    let list = rest.get_ok("/api/v1/sessions").await;
    assert_eq!((list["total"].as_u64(), list["sessions"][0]["status"].as_str()), (Some(1), Some("ended")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_final_ack_makes_the_server_retransmit_its_fin() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("lost final ack", json!({"msl_ms": 30000})).await;
    let cid = handshake(rest, sid).await;
    let base = format!("/api/v1/sessions/{sid}/connections/{cid}");

    // Drop the client's final ACK: its FIN has seq 301, so that ACK carries seq 302.
    let fault = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/faults"),
            json!({"from": "A", "to": "B", "match": {"flags": ["ACK"], "len": 0, "seq": 302}, "count": 1, "action": "drop"}),
            StatusCode::CREATED,
        )
        .await;
    let fid = fault["id"].as_u64().expect("fault id");
    assert_eq!(
        (fault["action"].as_str(), fault["count"].as_u64(), fault["acted"].as_u64()),
        (Some("drop"), Some(1), Some(0))
    );
    assert_eq!(fault["match"]["flags"], json!(["ACK"]));

    rest.post_ok(&format!("{base}/close"), json!({"side": "client"})).await;
    rest.run_until_idle(sid).await;
    rest.post_ok(&format!("{base}/close"), json!({"side": "server"})).await;
    // The server's FIN leaves at 50 ms and arrives at 60 ms; A's ACK is
    // dropped, the server's RTO (1 s) fires at 1050 ms; the retransmitted FIN
    // arrives at 1060 ms and A answers from TIME_WAIT (restarting 2*MSL); that
    // ACK arrives at 1070 ms.
    let c = clock(rest, sid, json!({"action": "advance", "ms": 500})).await;
    assert_eq!(c["now_ns"], 550_000_000u64);
    let conn = connection(rest, sid, cid).await;
    assert_eq!(conn["client"]["state"], "TIME_WAIT");
    assert_eq!(conn["server"]["state"], "LAST_ACK");
    assert_eq!(conn["server"]["timers"]["retransmit"], 1_050_000_000u64);
    rest.run_until_idle(sid).await;
    let conn = connection(rest, sid, cid).await;
    assert_eq!((conn["client"]["state"].as_str(), conn["server"]["state"].as_str()), (Some("CLOSED"), Some("CLOSED")));

    let events = rest.all_events(sid).await;
    assert_contiguous(&events, 1);
    // The timeout collapses B's window to one segment and halves ssthresh (RFC 5681 section 3.1).
    let tail: Vec<String> = events[13..].iter().map(describe).collect();
    assert_eq!(
        tail,
        [
            "14 30ms state_changed c1 A client ESTABLISHED>FIN_WAIT_1",
            "15 30ms segment_sent c1 A>B ACK,FIN 301/501 len0",
            "16 40ms segment_delivered c1 A>B ACK,FIN 301/501 len0",
            "17 40ms state_changed c1 B server ESTABLISHED>CLOSE_WAIT",
            "18 40ms segment_sent c1 B>A ACK 501/302 len0",
            "19 50ms segment_delivered c1 B>A ACK 501/302 len0",
            "20 50ms state_changed c1 A client FIN_WAIT_1>FIN_WAIT_2",
            "21 50ms state_changed c1 B server CLOSE_WAIT>LAST_ACK",
            "22 50ms segment_sent c1 B>A ACK,FIN 501/302 len0",
            "23 60ms segment_delivered c1 B>A ACK,FIN 501/302 len0",
            "24 60ms state_changed c1 A client FIN_WAIT_2>TIME_WAIT",
            "25 60ms segment_sent c1 A>B ACK 302/502 len0",
            "26 60ms segment_dropped c- A>B ACK 302/502 len0 reason=fault",
            "27 1050ms timer_fired c1 B server retransmit",
            "28 1050ms congestion_changed c1 B server cwnd=1460 ssthresh=2920 slow_start",
            "29 1050ms segment_sent c1 B>A ACK,FIN 501/302 len0 retx",
            "30 1060ms segment_delivered c1 B>A ACK,FIN 501/302 len0 retx",
            "31 1060ms segment_sent c1 A>B ACK 302/502 len0",
            "32 1070ms segment_delivered c1 A>B ACK 302/502 len0",
            "33 1070ms state_changed c1 B server LAST_ACK>CLOSED",
            "34 61060ms timer_fired c1 A client time_wait",
            "35 61060ms state_changed c1 A client TIME_WAIT>CLOSED",
        ]
    );
    assert_eq!(events[25]["fault"], fid);

    let segs = rest.get_ok(&format!("/api/v1/sessions/{sid}/segments")).await;
    let fates: Vec<(u64, String, Option<String>)> = segs["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (s["id"].as_u64().unwrap(), s["fate"].as_str().unwrap().to_string(), s["reason"].as_str().map(String::from))
        })
        .collect();
    let mut want: Vec<(u64, String, Option<String>)> = (1..=9).map(|i| (i, "delivered".to_string(), None)).collect();
    want[6] = (7, "dropped".to_string(), Some("fault".to_string()));
    assert_eq!(fates, want);

    let faults = rest.get_ok(&format!("/api/v1/sessions/{sid}/faults")).await;
    let f = &faults["faults"][0];
    assert_eq!((f["id"].as_u64(), f["matched"].as_u64(), f["acted"].as_u64()), (Some(fid), Some(2), Some(1)));
    let (status, _) = rest.delete(&format!("/api/v1/sessions/{sid}/faults/{fid}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let faults = rest.get_ok(&format!("/api/v1/sessions/{sid}/faults")).await;
    assert_eq!(faults, json!({"faults": []}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_syn_makes_a_connection_of_its_own() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("inject", json!({})).await;
    rest.two_hosts_and_listener(sid).await;
    let host = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/hosts"),
            json!({"name": "C", "ip": "10.0.0.3", "kind": "raw"}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(host, json!({"name": "C", "ip": "10.0.0.3", "kind": "raw"}));
    let injected = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/inject"),
            json!({"from": {"host": "C", "port": 5555}, "to": {"host": "B", "port": 80}, "flags": ["SYN"], "seq": 1000, "window": 8192}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(injected, json!({"segment_id": 1}));
    let c = clock(rest, sid, json!({"action": "advance", "ms": 25})).await;
    assert_eq!(c["now_ns"], 25_000_000u64);

    let list = rest.get_ok(&format!("/api/v1/sessions/{sid}/connections")).await;
    let conns = list["connections"].as_array().expect("connections");
    assert_eq!(conns.len(), 1, "{list}");
    let conn = &conns[0];
    let cid = conn["id"].as_u64().expect("id");
    assert_eq!(cid, 1);
    assert_eq!(conn["client"], Value::Null, "no client end: the peer is injected");
    assert_eq!(tcb(&conn["server"]), t("SYN_RECEIVED", 500, 1000, 500, 501, 1001));
    assert_eq!(
        (conn["server"]["remote_ip"].as_str(), conn["server"]["remote_port"].as_u64()),
        (Some("10.0.0.3"), Some(5555))
    );
    assert_eq!(conn["server"]["snd_wnd"], 8192);
    assert_eq!(connection(rest, sid, cid).await, *conn);

    let events = rest.all_events(sid).await;
    let lines: Vec<String> = events.iter().map(describe).collect();
    assert_eq!(
        lines,
        [
            "1 0ms state_changed c- B - CLOSED>LISTEN",
            "2 0ms segment_sent c- C>B SYN 1000/0 len0",
            "3 10ms segment_delivered c- C>B SYN 1000/0 len0",
            "4 10ms state_changed c1 B server LISTEN>SYN_RECEIVED",
            "5 10ms congestion_changed c1 B server cwnd=2144 ssthresh=- slow_start",
            "6 10ms segment_sent c1 B>C ACK,SYN 500/1001 len0",
            "7 20ms segment_delivered c- B>C ACK,SYN 500/1001 len0",
        ]
    );
    assert_eq!(events[1]["segment"]["injected"], true);
    assert_eq!(events[5]["segment"]["injected"], false);
    server.stop().await;
}

/// Reads session events from an SSE stream until `last` (inclusive).
async fn read_until(reader: &mut SseReader, last: u64) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let e = reader.next_event().await.expect("the stream goes on");
        let seq = e["seq"].as_u64().expect("seq");
        out.push(e);
        if seq >= last {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_is_live_and_resumes_after_last_event_id() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("stream", json!({"msl_ms": 500})).await;
    rest.two_hosts_and_listener(sid).await; // event 1
    let url = rest.url(&format!("/api/v1/sessions/{sid}/events/stream"));

    // Replay, then live.
    let mut first = SseReader::open(&rest.client, &url, None).await;
    let replayed = read_until(&mut first, 1).await;
    assert_eq!(describe(&replayed[0]), CLEAN_RUN[0]);
    rest.post_expect(
        &format!("/api/v1/sessions/{sid}/connections"),
        json!({"client": "A", "server": "B", "port": 80, "client_port": 40000, "isn": 300}),
        StatusCode::CREATED,
    )
    .await;
    rest.run_until_idle(sid).await; // events 2..=11
    let mut seen = replayed;
    seen.extend(read_until(&mut first, 6).await);
    drop(first); // disconnect after event 6

    let cid = 1;
    let base = format!("/api/v1/sessions/{sid}/connections/{cid}");
    rest.post_ok(&format!("{base}/send"), json!({"side": "client", "data": "a".repeat(100)})).await;
    rest.run_until_idle(sid).await; // 12..=15

    // Resume after 6: 7..=15 from history, then live.
    let mut second = SseReader::open(&rest.client, &url, Some(6)).await;
    seen.extend(read_until(&mut second, 15).await);
    rest.post_ok(&format!("{base}/send"), json!({"side": "server", "data": "b".repeat(200)})).await;
    rest.run_until_idle(sid).await;
    rest.post_ok(&format!("{base}/close"), json!({"side": "client"})).await;
    rest.run_until_idle(sid).await;
    rest.post_ok(&format!("{base}/close"), json!({"side": "server"})).await;
    rest.run_until_idle(sid).await;
    seen.extend(read_until(&mut second, 39).await);

    // A filtered stream from the middle.
    let filtered_url = format!("{url}?kind=state_changed,timer_fired&after_seq=30");
    let mut filtered = SseReader::open(&rest.client, &filtered_url, None).await;
    let mut picked = Vec::new();
    for _ in 0..5 {
        picked.push(describe(&filtered.next_event().await.expect("event")));
    }
    assert_eq!(picked, [CLEAN_RUN[30], CLEAN_RUN[33], CLEAN_RUN[36], CLEAN_RUN[37], CLEAN_RUN[38]]);

    // Ending the session ends the streams.
    let (status, _) = rest.delete(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(status, StatusCode::OK);
    // The last message says so (`end`), so a browser can stop listening.
    second.expect_end(39).await;
    filtered.expect_end(39).await;

    assert_contiguous(&seen, 1);
    assert_eq!(seen.len(), 39);
    let lines: Vec<String> = seen.iter().map(describe).collect();
    assert_eq!(lines, CLEAN_RUN);
    assert_eq!(seen, rest.all_events(sid).await, "streamed events equal the stored ones");

    // History of an ended session streams too, and a bad Last-Event-ID is refused.
    let mut old = SseReader::open(&rest.client, &url, Some(37)).await;
    let rest_of_it = [old.next_event().await.expect("38"), old.next_event().await.expect("39")];
    assert_eq!(rest_of_it.iter().map(describe).collect::<Vec<_>>(), [CLEAN_RUN[37], CLEAN_RUN[38]]);
    old.expect_end(39).await;
    // EventSource reconnects after the end with the end's id: 204 tells it to stop.
    let resp = rest.client.get(&url).header("last-event-id", "39").send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().await.expect("body").is_empty());
    // A filtered stream that has seen its last event ends the same way.
    let resp = rest.client.get(format!("{url}?kind=segment_dropped&after_seq=39")).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = rest.client.get(&url).header("last-event-id", "abc").send().await.expect("request");
    let got = common::server::reply(resp).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_argument", Some("Last-Event-ID"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route_and_healthz_answers() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let (status, health) = rest.get("/healthz").await;
    assert_eq!((status, health), (StatusCode::OK, json!({"status": "ok"})));

    let doc = rest.get_ok("/api/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    let s = "/api/v1/sessions/{sid}";
    let c = "/api/v1/sessions/{sid}/connections/{cid}";
    let routes: Vec<(String, &str)> = vec![
        ("/healthz".into(), "get"),
        ("/api/v1/openapi.json".into(), "get"),
        ("/api/v1/sessions".into(), "post"),
        ("/api/v1/sessions".into(), "get"),
        (s.into(), "get"),
        (s.into(), "delete"),
        (format!("{s}/hosts"), "post"),
        (format!("{s}/hosts"), "get"),
        (format!("{s}/links"), "put"),
        (format!("{s}/links"), "get"),
        (format!("{s}/listeners"), "post"),
        (format!("{s}/listeners"), "get"),
        (format!("{s}/connections"), "post"),
        (format!("{s}/connections"), "get"),
        (c.into(), "get"),
        (format!("{c}/send"), "post"),
        (format!("{c}/received"), "get"),
        (format!("{c}/close"), "post"),
        (format!("{c}/abort"), "post"),
        (format!("{s}/faults"), "post"),
        (format!("{s}/faults"), "get"),
        (format!("{s}/faults/{{fid}}"), "delete"),
        (format!("{s}/faults/{{fid}}/release"), "post"),
        (format!("{s}/inject"), "post"),
        (format!("{s}/clock"), "post"),
        (format!("{s}/events"), "get"),
        (format!("{s}/events/stream"), "get"),
        (format!("{s}/segments"), "get"),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in &routes {
        let op = &paths.get(path.as_str()).unwrap_or_else(|| panic!("{path} is documented"))[*method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has responses");
    }
    // And the document names nothing the server does not serve: each
    // documented operation reaches a handler (ids that do not exist answer
    // with the service's own 404 or a 4xx about the input, never "no route"
    // or 405), and each documented path refuses the methods it does not list.
    let mut documented = 0;
    for (path, item) in paths {
        let concrete = path.replace("{sid}", "999").replace("{cid}", "1").replace("{fid}", "1");
        for method in ["get", "post", "put", "delete", "patch"] {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = (method != "get" && method != "delete").then(|| json!({}));
            let req = rest.client.request(m, rest.url(&concrete));
            let req = match &body {
                Some(b) => req.json(b),
                None => req,
            };
            let (status, reply) = common::server::reply(req.send().await.expect("request")).await;
            if item.get(method).is_some() {
                documented += 1;
                assert!(status != StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {reply}");
                let no_route = reply["error"]["message"].as_str().is_some_and(|m| m.starts_with("no route"));
                assert!(!no_route, "{method} {path}: {reply}");
                assert!(status.as_u16() < 500, "{method} {path}: {status} {reply}");
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is not documented: {reply}");
                assert_eq!(reply["error"]["code"], "method_not_allowed");
            }
        }
    }
    assert!(documented >= routes.len(), "{documented} documented operations");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_naming_the_field() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("bad input", json!({})).await;
    rest.two_hosts_and_listener(sid).await;
    let cid = rest
        .post_expect(
            &format!("/api/v1/sessions/{sid}/connections"),
            json!({"client": "A", "server": "B", "port": 80}),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_u64()
        .unwrap();
    let s = format!("/api/v1/sessions/{sid}");
    let bad = StatusCode::BAD_REQUEST;
    let inv = "invalid_argument";

    // Malformed JSON.
    let resp = rest
        .client
        .post(rest.url(&format!("{s}/hosts")))
        .header("content-type", "application/json")
        .body(r#"{"name": "C", "ip": "#)
        .send()
        .await
        .unwrap();
    let got = common::server::reply(resp).await;
    assert_error(&got, bad, inv, Some("not valid JSON"));
    // A JSON body without its content type.
    let resp =
        rest.client.post(rest.url(&format!("{s}/hosts"))).body(r#"{"name":"C","ip":"10.0.0.3"}"#).send().await.unwrap();
    let got = common::server::reply(resp).await;
    assert_error(&got, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", Some("Content-Type"));
    // Unknown ids.
    assert_error(&rest.get("/api/v1/sessions/999").await, StatusCode::NOT_FOUND, "not_found", Some("session 999"));
    assert_error(
        &rest.get("/api/v1/sessions/999/events").await,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("session 999"),
    );
    assert_error(
        &rest.post("/api/v1/sessions/999/clock", json!({"action": "step"})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("session 999"),
    );
    assert_error(
        &rest.get(&format!("{s}/connections/77")).await,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("connection 77"),
    );
    assert_error(
        &rest.post(&format!("{s}/connections/77/send"), json!({"side": "client", "data": "x"})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("connection 77"),
    );
    assert_error(&rest.delete(&format!("{s}/faults/5")).await, StatusCode::NOT_FOUND, "not_found", Some("fault 5"));
    assert_error(
        &rest.post(&format!("{s}/connections"), json!({"client": "A", "server": "Z", "port": 80})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        Some("host Z"),
    );
    assert_error(&rest.get("/api/v1/sessions/abc").await, bad, inv, Some("sid"));
    assert_error(&rest.get("/api/v1/nothing").await, StatusCode::NOT_FOUND, "not_found", Some("no route"));
    // Bad IP.
    assert_error(
        &rest.post(&format!("{s}/hosts"), json!({"name": "C", "ip": "10.0.0.300"})).await,
        bad,
        inv,
        Some("ip"),
    );
    assert_error(&rest.post(&format!("{s}/hosts"), json!({"name": "C", "ip": "::1"})).await, bad, inv, Some("ip"));
    // Bad ports.
    assert_error(
        &rest.post(&format!("{s}/listeners"), json!({"host": "B", "port": 70000})).await,
        bad,
        inv,
        Some("port"),
    );
    assert_error(&rest.post(&format!("{s}/listeners"), json!({"host": "B", "port": 0})).await, bad, inv, Some("port"));
    assert_error(
        &rest
            .post(&format!("{s}/connections"), json!({"client": "A", "server": "B", "port": 80, "client_port": 65536}))
            .await,
        bad,
        inv,
        Some("client_port"),
    );
    assert_error(
        &rest.post(&format!("{s}/connections"), json!({"client": "A", "server": "B", "port": -1})).await,
        bad,
        inv,
        Some("port"),
    );
    // Out-of-range probabilities and durations.
    for field in ["loss", "duplicate", "reorder", "corrupt"] {
        let got = rest.put(&format!("{s}/links"), json!({"a": "A", "b": "B", field: 1.5})).await;
        assert_error(&got, bad, inv, Some(field));
        assert!(got.1["error"]["message"].as_str().unwrap().starts_with(field), "{}", got.1);
    }
    assert_error(
        &rest.put(&format!("{s}/links"), json!({"a": "A", "b": "B", "loss": -0.1})).await,
        bad,
        inv,
        Some("loss"),
    );
    assert_error(&rest.post(&format!("{s}/clock"), json!({"action": "advance", "ms": -5})).await, bad, inv, Some("ms"));
    // Unknown enum values.
    assert_error(&rest.post("/api/v1/sessions", json!({"clock": "sometimes"})).await, bad, inv, Some("clock"));
    assert_error(
        &rest.post("/api/v1/sessions", json!({"profile": {"handshake": "four_way"}})).await,
        bad,
        inv,
        Some("profile.handshake"),
    );
    assert_error(&rest.post("/api/v1/sessions", json!({"profile": {"isn": "soon"}})).await, bad, inv, Some("isn"));
    // Congestion control settings: the algorithm by name, the initial window in range.
    for (profile, field) in [
        (json!({"cc": "bbr"}), "profile.cc"),
        (json!({"initial_window": 0}), "profile.initial_window"),
        (json!({"initial_window": 1001}), "profile.initial_window"),
        (json!({"initial_window": "iw10"}), "profile.initial_window"),
        (json!({"limited_transmit": "sometimes"}), "profile.limited_transmit"),
    ] {
        let got = rest.post("/api/v1/sessions", json!({ "profile": profile })).await;
        assert_error(&got, bad, inv, Some(field));
    }
    assert_error(&rest.post("/api/v1/sessions", json!({"speed": 0})).await, bad, inv, Some("speed"));
    assert_error(&rest.post("/api/v1/sessions", json!({"colour": "red"})).await, bad, inv, Some("colour"));
    assert_error(
        &rest.post(&format!("{s}/connections/{cid}/send"), json!({"side": "middle", "data": "x"})).await,
        bad,
        inv,
        Some("side"),
    );
    assert_error(&rest.get(&format!("{s}/connections/{cid}/received?side=middle")).await, bad, inv, Some("side"));
    assert_error(&rest.post(&format!("{s}/clock"), json!({"action": "sometimes"})).await, bad, inv, Some("action"));
    assert_error(&rest.post(&format!("{s}/faults"), json!({"action": "explode"})).await, bad, inv, Some("action"));
    assert_error(
        &rest.post(&format!("{s}/faults"), json!({"action": "drop", "match": {"flags": ["XYZ"]}})).await,
        bad,
        inv,
        Some("match.flags"),
    );
    assert_error(&rest.get(&format!("{s}/events?kind=bogus")).await, bad, inv, Some("kind"));
    assert_error(&rest.get(&format!("{s}/events?limit=0")).await, bad, inv, Some("limit"));
    assert_error(&rest.get(&format!("{s}/events?after_seq=x")).await, bad, inv, Some("after_seq"));
    assert_error(
        &rest.post(&format!("{s}/connections/{cid}/send"), json!({"side": "client", "data_base64": "%%%"})).await,
        bad,
        inv,
        Some("data_base64"),
    );
    // An oversized body (default limit 8 MiB).
    let big = json!({"side": "client", "data": "x".repeat(9 * 1024 * 1024)});
    let got = rest.post(&format!("{s}/connections/{cid}/send"), big).await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", Some("max_body_bytes"));

    // None of it changed the session: one connection, still SYN_SENT, no data queued.
    let conn = connection(rest, sid, cid).await;
    assert_eq!(
        (conn["client"]["state"].as_str(), conn["client"]["send_buffered"].as_u64()),
        (Some("SYN_SENT"), Some(0))
    );
    let hosts = rest.get_ok(&format!("{s}/hosts")).await;
    assert_eq!(hosts["hosts"].as_array().map(Vec::len), Some(2), "{hosts}");
    let list = rest.get_ok("/api/v1/sessions").await;
    assert_eq!(list["total"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_enforced_with_a_clear_error() {
    let limits = Limits { max_sessions: 2, max_hosts: 2, max_connections: 1, ..Limits::default() };
    let server = TestServer::with_limits(limits).await;
    let rest = &server.rest;
    // A send buffer above max_buffered_bytes (16 MiB by default) is refused at creation.
    let got = rest.post("/api/v1/sessions", json!({"profile": {"send_buffer": 64 * 1024 * 1024}})).await;
    assert_error(&got, StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", Some("max_buffered_bytes"));
    let first = rest.manual_session("one", json!({})).await;
    let second = rest.manual_session("two", json!({})).await;
    assert_eq!((first, second), (1, 2));
    let got = rest.post("/api/v1/sessions", json!({"name": "three"})).await;
    assert_error(&got, StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", Some("max_sessions"));
    assert_eq!(
        got.1["error"]["message"],
        "limit max_sessions reached (at most 2); raise it with --max-sessions, TCPLAB_MAX_SESSIONS or [limits] max_sessions"
    );
    // Ending one makes room again.
    let (status, _) = rest.delete(&format!("/api/v1/sessions/{first}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rest.manual_session("three", json!({})).await, 3);

    rest.two_hosts_and_listener(second).await;
    let got = rest.post(&format!("/api/v1/sessions/{second}/hosts"), json!({"name": "C", "ip": "10.0.0.3"})).await;
    assert_error(&got, StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", Some("max_hosts"));
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("limit max_hosts reached (at most 2); raise it with --max-hosts")),
        "{}",
        got.1
    );
    let open = json!({"client": "A", "server": "B", "port": 80});
    rest.post_expect(&format!("/api/v1/sessions/{second}/connections"), open.clone(), StatusCode::CREATED).await;
    let got = rest.post(&format!("/api/v1/sessions/{second}/connections"), open).await;
    assert_error(&got, StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", Some("max_connections"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mebibyte_in_one_send_is_accepted_and_received() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("1 MiB", json!({})).await;
    let cid = handshake(rest, sid).await;
    // Every octet value, in a pattern that is not periodic in 256.
    let data: Vec<u8> = (0..1_048_576u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let base = format!("/api/v1/sessions/{sid}/connections/{cid}");
    let sent = rest.post_ok(&format!("{base}/send"), json!({"side": "client", "data_base64": b64})).await;
    assert_eq!(sent, json!({"side": "client", "accepted": 1_048_576}));
    let c = rest.run_until_idle(sid).await;
    assert_eq!(c["stopped_by"], Value::Null);
    let got = rest.get_ok(&format!("{base}/received?side=server")).await;
    assert_eq!(got["bytes"], 1_048_576);
    let received = base64::engine::general_purpose::STANDARD.decode(got["data_base64"].as_str().unwrap()).unwrap();
    assert!(received == data, "the server received exactly what the client sent");
    let conn = connection(rest, sid, cid).await;
    assert_eq!(tcb(&conn["client"]), t("ESTABLISHED", 300, 500, 301 + 1_048_576, 301 + 1_048_576, 501));
    assert_eq!(conn["server"]["rcv_nxt"], 301 + 1_048_576);
    assert_eq!(conn["client"]["send_buffered"], 0);
    server.stop().await;
}

/// A 2 Mb/s link with a 16 KiB drop-tail queue between A and B: a bulk
/// transfer fills the queue (visible on `GET .../links` and in the log), the
/// tail is dropped with its own reason, and the sender's window shows the
/// loss: ssthresh set, fast recovery entered, everything still delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bottleneck_queue_fills_drops_the_tail_and_the_sender_halves_its_window() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("bottleneck", json!({})).await;
    let cid = handshake(rest, sid).await;
    let links = format!("/api/v1/sessions/{sid}/links");
    let bottleneck = json!({"a": "A", "b": "B", "latency_ms": 10.0, "bandwidth_bps": 2_000_000, "queue_bytes": 16_384});
    let (status, link) = rest.put(&links, bottleneck).await;
    assert_eq!(status, StatusCode::OK, "{link}");
    assert_eq!((link["queue_bytes"].as_u64(), link["queued_bytes"].as_u64()), (Some(16_384), Some(0)));

    let conn = connection(rest, sid, cid).await;
    let client = &conn["client"];
    // RFC 5681 section 3.1: IW = 3 * 1460 for this SMSS; no loss yet.
    assert_eq!((client["cwnd"].as_u64(), client["ssthresh"].as_u64()), (Some(4380), None));
    assert_eq!((client["cc_phase"].as_str(), client["flight_size"].as_u64()), (Some("slow_start"), Some(0)));
    assert_eq!((client["dup_acks"].as_u64(), client["recovery_point"].as_u64()), (Some(0), None));
    // The buffers' sizes, as SO_RCVBUF and SO_SNDBUF report them: the default profile's.
    assert_eq!(
        (client["recv_buffer_size"].as_u64(), client["send_buffer_size"].as_u64()),
        (Some(65_535), Some(4 * 1024 * 1024)),
        "{client}"
    );

    let base = format!("/api/v1/sessions/{sid}/connections/{cid}");
    let data = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 400_000]);
    rest.post_ok(&format!("{base}/send"), json!({"side": "client", "data_base64": data})).await;
    // Step through virtual time: the queue holds octets at some instant.
    let mut most_queued = 0;
    for _ in 0..40 {
        clock(rest, sid, json!({"action": "advance", "ms": 25})).await;
        let list = rest.get_ok(&links).await;
        let a_to_b = list["links"].as_array().expect("links").iter().find(|l| l["a"] == "A").cloned().expect("A->B");
        let queued = a_to_b["queued_bytes"].as_u64().expect("queued_bytes");
        assert!(queued <= 16_384, "drop-tail never holds more than its capacity: {a_to_b}");
        most_queued = most_queued.max(queued);
    }
    assert!(most_queued > 8_000, "the queue filled: at most {most_queued} octets seen");
    rest.run_until_idle(sid).await;
    let got = rest.get_ok(&format!("{base}/received?side=server")).await;
    assert_eq!(got["bytes"], 400_000, "every octet arrived despite the drops");

    let events = rest.all_events(sid).await;
    let full = events.iter().filter(|e| e["kind"] == "segment_dropped" && e["reason"] == "queue_full").count();
    let queued: Vec<&Value> = events.iter().filter(|e| e["kind"] == "segment_queued").collect();
    assert!(full > 0, "the queue overflowed");
    assert!(
        queued
            .iter()
            .all(|e| e["queued_bytes"].as_u64().unwrap() <= 16_384 && e["transmit_ns"].as_u64() > e["t_ns"].as_u64())
    );
    let phases: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "congestion_changed" && e["side"] == "client")
        .map(|e| e["phase"].as_str().expect("phase"))
        .collect();
    assert!(phases.contains(&"fast_recovery"), "a loss was repaired by fast retransmit: {phases:?}");
    assert!(phases.contains(&"congestion_avoidance"), "{phases:?}");
    let client = connection(rest, sid, cid).await["client"].clone();
    assert!(client["ssthresh"].as_u64().is_some_and(|s| s >= 2 * 1460), "{client}");
    // The drops are counted by their reason.
    let metrics = rest.client.get(rest.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let line = metrics.lines().find(|l| l.starts_with("tcplab_segments_dropped_total{reason=\"queue_full\"}"));
    assert_eq!(line.and_then(|l| l.rsplit(' ').next()).and_then(|n| n.parse::<usize>().ok()), Some(full), "{metrics}");

    // A queue without a rate, or beyond the limit, is refused naming the field.
    let got = rest.put(&links, json!({"a": "A", "b": "B", "queue_bytes": 1000})).await;
    common::server::assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("queue_bytes: needs bandwidth_bps"),
    );
    let got = rest.put(&links, json!({"a": "A", "b": "B", "bandwidth_bps": 1000, "queue_packets": 2_000_000})).await;
    common::server::assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("queue_packets: must be between"),
    );
    let (status, body) = rest.put(&links, json!({"a": "A", "b": "B", "queue_bytes": -1})).await;
    assert!(status.is_client_error(), "{body}");
    // A shared bottleneck needs a rate and a plain name; a good one is shown on both directions.
    let got = rest.put(&links, json!({"a": "A", "b": "B", "bottleneck": "mid"})).await;
    common::server::assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("bottleneck: needs bandwidth_bps"),
    );
    let got = rest.put(&links, json!({"a": "A", "b": "B", "bandwidth_bps": 1000, "bottleneck": "a b"})).await;
    common::server::assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("bottleneck: must be 1 to 64"),
    );
    let (status, body) =
        rest.put(&links, json!({"a": "A", "b": "B", "bandwidth_bps": 1000, "bottleneck": "mid"})).await;
    assert!(status.is_success(), "{body}");
    let listed = rest.get_ok(&links).await;
    let through: Vec<_> = listed["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| (l["bottleneck"].as_str(), l["bottleneck_forward"].as_bool()))
        .collect();
    assert_eq!(through, [(Some("mid"), Some(true)), (Some("mid"), Some(false))], "{listed}");
    server.stop().await;
}

/// `DELETE .../listeners/{lid}` is the user's close() of a listening socket:
/// the accepted connection lives on, the one waiting in the queue is reset,
/// the listener reads CLOSED, a new SYN meets a RST, and a second close is
/// a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_listener_resets_its_unaccepted_connections_and_refuses_new_ones() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("close listener", json!({})).await;
    rest.two_hosts_and_listener(sid).await;
    let open = |port: u16| {
        let body = json!({"client": "A", "server": "B", "port": 80, "client_port": port});
        async move {
            let conn =
                rest.post_expect(&format!("/api/v1/sessions/{sid}/connections"), body, StatusCode::CREATED).await;
            rest.run_until_idle(sid).await;
            conn["id"].as_u64().expect("id")
        }
    };
    let kept = open(40000).await;
    let accepted = rest.post_ok(&format!("/api/v1/sessions/{sid}/listeners/1/accept"), json!({})).await;
    assert_eq!(accepted["id"], kept);
    let queued = open(40001).await;
    assert_eq!(connection(rest, sid, queued).await["server"]["state"], "ESTABLISHED");

    let (status, body) = rest.delete(&format!("/api/v1/sessions/{sid}/listeners/1")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    rest.run_until_idle(sid).await;
    let listeners = rest.get_ok(&format!("/api/v1/sessions/{sid}/listeners")).await;
    assert_eq!(listeners["listeners"][0]["state"], "CLOSED", "{listeners}");
    let reset = connection(rest, sid, queued).await;
    assert_eq!(
        (reset["client"]["state"].as_str(), reset["client"]["error"].as_str()),
        (Some("CLOSED"), Some("ECONNRESET"))
    );
    let live = connection(rest, sid, kept).await;
    assert_eq!(
        (live["client"]["state"].as_str(), live["server"]["state"].as_str()),
        (Some("ESTABLISHED"), Some("ESTABLISHED"))
    );
    let refused = connection(rest, sid, open(40002).await).await;
    assert_eq!(refused["client"]["error"], "ECONNREFUSED", "{refused}");

    let got = rest.delete(&format!("/api/v1/sessions/{sid}/listeners/1")).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    let got = rest.delete(&format!("/api/v1/sessions/{sid}/listeners/9")).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    server.stop().await;
}

/// `POST .../close` with `"how": "close"` closes the socket, not only its
/// sending side: the peer's later data is answered with a reset. Without
/// `how` the end still reads (a half-close); an unknown `how` is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_how_close_resets_later_data_and_a_shutdown_still_reads() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    for (how, reads) in [(None, true), (Some("shutdown_write"), true), (Some("close"), false)] {
        let sid = rest.manual_session("close how", json!({})).await;
        let cid = handshake(rest, sid).await;
        let mut body = json!({"side": "client"});
        if let Some(how) = how {
            body["how"] = json!(how);
        }
        let closed = rest.post_ok(&format!("/api/v1/sessions/{sid}/connections/{cid}/close"), body).await;
        assert_eq!(closed["client"]["state"], "FIN_WAIT_1", "{how:?}");
        rest.run_until_idle(sid).await;
        let late = base64::engine::general_purpose::STANDARD.encode(b"late");
        rest.post_ok(
            &format!("/api/v1/sessions/{sid}/connections/{cid}/send"),
            json!({"side": "server", "data_base64": late}),
        )
        .await;
        rest.run_until_idle(sid).await;
        let conn = connection(rest, sid, cid).await;
        if reads {
            assert_eq!(conn["client"]["state"], "FIN_WAIT_2", "{how:?}: {conn}");
            assert_eq!(conn["client"]["received_bytes"], 4, "{how:?}: {conn}");
        } else {
            assert_eq!(conn["client"]["state"], "CLOSED", "{conn}");
            assert_eq!(conn["server"]["error"], "ECONNRESET", "{conn}");
        }
    }
    let sid = rest.manual_session("close how", json!({})).await;
    let cid = handshake(rest, sid).await;
    let got = rest
        .post(&format!("/api/v1/sessions/{sid}/connections/{cid}/close"), json!({"side": "client", "how": "slam"}))
        .await;
    assert!(got.0.is_client_error() && got.1.to_string().contains("how"), "{got:?}");
    server.stop().await;
}

/// `PATCH .../profile` is a `sysctl` mid-session: a setting a connection
/// reads where it uses it changes at once (the session shows it, and the
/// open connection's next ACK waits for the delayed-ACK timer); a setting
/// fixed when an endpoint opens is refused with a 400 naming it while a
/// listener is open; unknown settings, bad values and `name` are 400s too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patching_the_profile_changes_running_settings_and_refuses_fixed_ones_by_name() {
    let server = TestServer::start().await;
    let rest = &server.rest;
    let sid = rest.manual_session("patch profile", json!({})).await;
    let path = format!("/api/v1/sessions/{sid}/profile");
    // Nothing open yet: a fixed setting may change.
    let (status, body) = rest.patch(&path, json!({"mss": 1000, "sack": "on"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["mss"].as_u64(), body["sack"].as_str()), (Some(1000), Some("on")), "{body}");
    rest.two_hosts_and_listener(sid).await;
    let body = json!({"client": "A", "server": "B", "port": 80, "client_port": 40000});
    let conn = rest.post_expect(&format!("/api/v1/sessions/{sid}/connections"), body, StatusCode::CREATED).await;
    let cid = conn["id"].as_u64().expect("id");
    rest.run_until_idle(sid).await;
    let c = connection(rest, sid, cid).await;
    assert_eq!((c["client"]["snd_mss"].as_u64(), c["client"]["sack_permitted"].as_bool()), (Some(1000), Some(true)));

    let (status, body) = rest.patch(&path, json!({"delayed_ack": "on", "delayed_ack_ms": 120})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = rest.get_ok(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(session["profile"]["delayed_ack_ms"], 120, "{session}");
    rest.post_expect(
        &format!("/api/v1/sessions/{sid}/connections/{cid}/send"),
        json!({"side": "client", "data": "hi"}),
        StatusCode::OK,
    )
    .await;
    rest.post_ok(&format!("/api/v1/sessions/{sid}/clock"), json!({"action": "advance", "ms": 60})).await;
    let waiting = connection(rest, sid, cid).await;
    assert!(waiting["server"]["timers"]["delayed_ack"].is_u64(), "the ACK waits: {waiting}");
    rest.run_until_idle(sid).await;
    let events = rest.get_ok(&format!("/api/v1/sessions/{sid}/events?kind=timer_fired")).await;
    assert!(events["events"].as_array().expect("events").iter().any(|e| e["timer"] == "delayed_ack"), "{events}");

    let got = rest.patch(&path, json!({"window": 4096, "delayed_ack_ms": 10})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_argument", Some("profile.window"));
    assert!(got.1["error"]["message"].as_str().is_some_and(|m| m.contains("cannot change while")), "{}", got.1);
    let session = rest.get_ok(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(session["profile"]["delayed_ack_ms"], 120, "nothing changed: {session}");
    for (body, field) in [
        (json!({"delayed_ack_ms": 501}), "profile.delayed_ack_ms"),
        (json!({"no_such_setting": 1}), "profile.no_such_setting"),
        (json!({"name": "freebsd"}), "profile.name"),
        (json!({"delayed_ack": "sometimes"}), "profile.delayed_ack"),
        (json!({}), "profile"),
    ] {
        assert_error(&rest.patch(&path, body).await, StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    }
    let got = rest.patch("/api/v1/sessions/999/profile", json!({"msl_ms": 1})).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None);
    server.stop().await;
}
