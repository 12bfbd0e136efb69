//! The lab server over real gRPC: the real server on ephemeral ports with a
//! temporary database, driven with the tonic client generated from
//! `proto/tcplab/v1/lab.proto`.

mod common;

use std::time::Duration;

use common::server::{CLEAN_RUN, TestServer, WAIT, describe, describe_grpc, grpc_channel, grpc_flags, rest_name};
use serde_json::Value;
use tcplab::api::grpc::pb;
use tcplab::api::grpc::pb::lab_service_client::LabServiceClient;
use tcplab::api::grpc::pb::watch_events_response::Item;
use tcplab::api::grpc::pb::{ClockAction as A, EventKind as K, Side, State as S};
use tcplab::service::Limits;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

type Lab = LabServiceClient<Channel>;

async fn client(server: &TestServer) -> Lab {
    LabServiceClient::new(grpc_channel(&server.grpc).await)
}

/// Selected TCB fields of one end: state, iss, irs, snd_una, snd_nxt, rcv_nxt.
fn tcb(end: &Option<pb::End>) -> (S, u32, u32, u32, u32, u32) {
    let e = end.as_ref().expect("the end exists");
    (e.state(), e.iss, e.irs, e.snd_una, e.snd_nxt, e.rcv_nxt)
}

fn t(state: S, iss: u32, irs: u32, una: u32, nxt: u32, rcv: u32) -> (S, u32, u32, u32, u32, u32) {
    (state, iss, irs, una, nxt, rcv)
}

async fn clock(lab: &mut Lab, sid: u64, action: A, ms: Option<f64>) -> pb::ClockResponse {
    let req = pb::ClockRequest { session_id: sid, action: action.into(), ms, ..Default::default() };
    lab.clock(req).await.expect("clock").into_inner()
}

async fn get(lab: &mut Lab, sid: u64, cid: u64) -> pb::Connection {
    lab.get_connection(pb::ConnectionRef { session_id: sid, connection_id: cid }).await.expect("get").into_inner()
}

async fn side(lab: &mut Lab, sid: u64, cid: u64, call: &str, side: Side) -> pb::Connection {
    let req = pb::SideRequest { session_id: sid, connection_id: cid, side: side.into() };
    match call {
        "close" => lab.close(pb::CloseRequest { session_id: sid, connection_id: cid, side: side.into(), how: 0 }).await,
        _ => lab.abort(req).await,
    }
    .expect("side call")
    .into_inner()
}

async fn send(lab: &mut Lab, sid: u64, cid: u64, side: Side, data: Vec<u8>) -> u64 {
    let req = pb::SendRequest { session_id: sid, connection_id: cid, side: side.into(), data };
    lab.send(req).await.expect("send").into_inner().accepted
}

/// A manual session (MSL 500 ms) with hosts A and B, a 10 ms link and a listener on B:80 (ISN 500).
async fn session(lab: &mut Lab, name: &str, seed: u64) -> u64 {
    let created = lab
        .create_session(pb::CreateSessionRequest {
            name: Some(name.into()),
            seed: Some(seed),
            clock: pb::ClockMode::Manual.into(),
            profile: Some(pb::Profile { msl_ms: Some(500), ..Default::default() }),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        (created.status(), created.clock(), created.name.as_str()),
        (pb::SessionStatus::Live, pb::ClockMode::Manual, name)
    );
    let profile = created.profile.as_ref().expect("the profile");
    assert_eq!((profile.msl_ms, profile.handshake()), (Some(500), pb::Handshake::ThreeWay));
    let sid = created.id;
    for (name, ip) in [("A", "10.0.0.1"), ("B", "10.0.0.2")] {
        let host = lab
            .add_host(pb::AddHostRequest { session_id: sid, name: name.into(), ip: ip.into(), ..Default::default() })
            .await
            .expect("host")
            .into_inner();
        assert_eq!((host.name.as_str(), host.ip.as_str(), host.kind()), (name, ip, pb::HostKind::Tcp));
    }
    let link = lab
        .set_link(pb::SetLinkRequest {
            session_id: sid,
            a: "A".into(),
            b: "B".into(),
            latency_ms: Some(10.0),
            ..Default::default()
        })
        .await
        .expect("link")
        .into_inner();
    assert_eq!((link.latency_ms, link.loss), (10.0, 0.0));
    let listener = lab
        .add_listener(pb::AddListenerRequest {
            session_id: sid,
            host: "B".into(),
            port: 80,
            isn: Some(500),
            backlog: None,
            nodelay: None,
            keepalive: None,
        })
        .await
        .expect("listen")
        .into_inner();
    assert_eq!((listener.state(), listener.port), (S::Listen, 80));
    sid
}

/// Opens A:40000 -> B:80 with ISN 300 and runs the handshake; returns the connection id.
async fn handshake(lab: &mut Lab, sid: u64) -> u64 {
    let conn = lab
        .open_connection(pb::OpenConnectionRequest {
            session_id: sid,
            client: "A".into(),
            server: "B".into(),
            port: 80,
            client_port: Some(40000),
            isn: Some(300),
            nodelay: None,
            keepalive: None,
        })
        .await
        .expect("connect")
        .into_inner();
    assert_eq!(tcb(&conn.client), t(S::SynSent, 300, 0, 300, 301, 0));
    assert_eq!(conn.server, None);
    let c = clock(lab, sid, A::Step, None).await;
    assert_eq!((c.now_ns, c.steps, c.idle), (10_000_000, 1, false));
    let got = get(lab, sid, conn.id).await;
    assert_eq!(tcb(&got.server), t(S::SynReceived, 500, 300, 500, 501, 301));
    let c = clock(lab, sid, A::RunUntilIdle, None).await;
    assert_eq!((c.now_ns, c.idle), (30_000_000, true));
    let got = get(lab, sid, conn.id).await;
    assert_eq!(tcb(&got.client), t(S::Established, 300, 500, 301, 301, 501));
    assert_eq!(tcb(&got.server), t(S::Established, 500, 300, 501, 501, 301));
    let client = got.client.as_ref().unwrap();
    assert_eq!((client.local_port, client.remote_ip.as_str(), client.remote_port), (40000, "10.0.0.2", 80));
    conn.id
}

/// Data both ways and the four-way close, with the clean run's exact states.
async fn data_and_close(lab: &mut Lab, sid: u64, cid: u64) {
    assert_eq!(send(lab, sid, cid, Side::Client, vec![b'a'; 100]).await, 100);
    clock(lab, sid, A::RunUntilIdle, None).await;
    assert_eq!(send(lab, sid, cid, Side::Server, vec![b'b'; 200]).await, 200);
    clock(lab, sid, A::RunUntilIdle, None).await;
    let got = lab
        .get_received(pb::SideRequest { session_id: sid, connection_id: cid, side: Side::Server.into() })
        .await
        .expect("received")
        .into_inner();
    assert_eq!((got.side(), got.bytes, got.data), (Side::Server, 100, vec![b'a'; 100]));
    let got = lab
        .get_received(pb::SideRequest { session_id: sid, connection_id: cid, side: Side::Client.into() })
        .await
        .expect("received")
        .into_inner();
    assert_eq!((got.side(), got.bytes, got.data), (Side::Client, 200, vec![b'b'; 200]));
    let conn = get(lab, sid, cid).await;
    assert_eq!(tcb(&conn.client), t(S::Established, 300, 500, 401, 401, 701));
    assert_eq!(tcb(&conn.server), t(S::Established, 500, 300, 701, 701, 401));

    let conn = side(lab, sid, cid, "close", Side::Client).await;
    assert_eq!(tcb(&conn.client), t(S::FinWait1, 300, 500, 401, 402, 701));
    clock(lab, sid, A::RunUntilIdle, None).await;
    let conn = get(lab, sid, cid).await;
    assert_eq!(tcb(&conn.client), t(S::FinWait2, 300, 500, 402, 402, 701));
    assert_eq!(tcb(&conn.server), t(S::CloseWait, 500, 300, 701, 701, 402));
    let conn = side(lab, sid, cid, "close", Side::Server).await;
    assert_eq!(tcb(&conn.server), t(S::LastAck, 500, 300, 701, 702, 402));
    let c = clock(lab, sid, A::Advance, Some(15.0)).await;
    assert_eq!(c.now_ns, 105_000_000);
    let conn = get(lab, sid, cid).await;
    assert_eq!(tcb(&conn.client), t(S::TimeWait, 300, 500, 402, 402, 702));
    assert_eq!(conn.client.as_ref().unwrap().timers.as_ref().unwrap().time_wait, Some(1_100_000_000));
    assert_eq!(tcb(&conn.server), t(S::LastAck, 500, 300, 701, 702, 402));
    let c = clock(lab, sid, A::RunUntilIdle, None).await;
    assert_eq!((c.now_ns, c.idle), (1_100_000_000, true));
    let conn = get(lab, sid, cid).await;
    assert_eq!(conn.client.unwrap().state(), S::Closed);
    assert_eq!(conn.server.unwrap().state(), S::Closed);
}

/// Every stored event, all pages.
async fn all_events(lab: &mut Lab, sid: u64) -> Vec<pb::Event> {
    common::server::grpc_all_events(lab, sid).await
}

/// An event's JSON, checked against its typed header fields.
fn json_of(e: &pb::Event) -> Value {
    let v: Value = serde_json::from_str(&e.json).expect("event JSON");
    assert_eq!(v["seq"].as_u64(), Some(e.seq));
    assert_eq!(v["t_ns"].as_u64(), Some(e.t_ns));
    assert_eq!(v["kind"].as_str(), Some(rest_name(e.kind().as_str_name(), "EVENT_KIND_").as_str()));
    assert_eq!(v["connection"].as_u64(), e.connection);
    v
}

/// What an event says, independent of how its JSON text orders keys.
fn norm(events: &[pb::Event]) -> Vec<(u64, u64, i32, Option<u64>, Value)> {
    events.iter().map(|e| (e.seq, e.t_ns, e.kind, e.connection, json_of(e))).collect()
}

fn seqs(events: &[pb::Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_data_and_close_over_grpc() {
    let server = TestServer::start().await;
    let mut lab = client(&server).await;
    let sid = session(&mut lab, "grpc clean", 7).await;
    let cid = handshake(&mut lab, sid).await;
    data_and_close(&mut lab, sid, cid).await;

    let events = all_events(&mut lab, sid).await;
    let lines: Vec<String> = events.iter().map(|e| describe(&json_of(e))).collect();
    assert_eq!(lines, CLEAN_RUN);
    // The typed payloads say the same as the JSON.
    let typed: Vec<String> = events.iter().map(describe_grpc).collect();
    assert_eq!(typed, CLEAN_RUN);

    let page = lab
        .list_events(pb::ListEventsRequest {
            session_id: sid,
            kinds: vec![K::StateChanged.into(), K::TimerFired.into()],
            connection: Some(cid),
            after_seq: Some(24),
            ..Default::default()
        })
        .await
        .expect("filtered")
        .into_inner();
    assert_eq!(seqs(&page.events), [27, 30, 31, 34, 37, 38, 39]);
    assert_eq!(page.next_after_seq, 39);
    let page = lab
        .list_events(pb::ListEventsRequest { session_id: sid, limit: Some(3), ..Default::default() })
        .await
        .expect("page")
        .into_inner();
    assert_eq!((seqs(&page.events), page.next_after_seq), (vec![1, 2, 3], 3));

    let segs = lab.list_segments(pb::SessionRef { session_id: sid }).await.expect("segments").into_inner().segments;
    let summary: Vec<(u64, String, String, u32, u32, u32, pb::Fate)> = segs
        .iter()
        .map(|s| (s.id, format!("{}>{}", s.src, s.dst), grpc_flags(s.flags()), s.seq, s.ack, s.len, s.fate()))
        .collect();
    let d = |id: u64, dir: &str, flags: &str, seq: u32, ack: u32, len: u32| {
        (id, dir.to_string(), flags.to_string(), seq, ack, len, pb::Fate::Delivered)
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
    assert_eq!((segs[0].src_port, segs[0].dst_port, segs[0].window, segs[0].sent_ns), (40000, 80, 65535, 0));
    assert_eq!(segs[0].fates().collect::<Vec<_>>(), [pb::Fate::Delivered]);

    let info = lab.get_session(pb::SessionRef { session_id: sid }).await.expect("get").into_inner();
    assert_eq!((info.events, info.now_ns, info.connections, info.hosts), (39, 1_100_000_000, 1, 2));
    let closed = info.states.iter().find(|c| c.state() == S::Closed).map(|c| c.count);
    assert_eq!(closed, Some(2));
    let ended = lab.end_session(pb::SessionRef { session_id: sid }).await.expect("end").into_inner();
    assert_eq!((ended.status(), ended.events), (pb::SessionStatus::Ended, 39));
    assert!(ended.ended_at.is_some());
    // The history stays.
    let again = all_events(&mut lab, sid).await;
    assert_eq!(again, events);
    server.stop().await;
}

/// The next message of a `WatchEvents` stream.
async fn next_item(stream: &mut tonic::Streaming<pb::WatchEventsResponse>) -> Item {
    let next = tokio::time::timeout(WAIT, stream.message()).await.expect("a message in time");
    next.expect("stream ok").expect("the stream goes on").item.expect("an item")
}

/// Reads a `WatchEvents` stream (one that did not ask for `caught_up`)
/// until it yields `last` (inclusive).
async fn watch_until(stream: &mut tonic::Streaming<pb::WatchEventsResponse>, last: u64) -> Vec<pb::Event> {
    let mut out = Vec::new();
    loop {
        let Item::Event(e) = next_item(stream).await else { panic!("a marker nobody asked for") };
        let seq = e.seq;
        out.push(e);
        if seq >= last {
            return out;
        }
    }
}

async fn watch(
    lab: &mut Lab,
    sid: u64,
    after_seq: u64,
    kinds: &[K],
    connection: Option<u64>,
) -> tonic::Streaming<pb::WatchEventsResponse> {
    let req = pb::WatchEventsRequest {
        session_id: sid,
        after_seq,
        kinds: kinds.iter().map(|k| i32::from(*k)).collect(),
        connection,
        ..Default::default()
    };
    lab.watch_events(req).await.expect("watch").into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_replays_then_continues_live() {
    let server = TestServer::start().await;
    let mut lab = client(&server).await;
    let sid = session(&mut lab, "watch", 7).await;
    let cid = handshake(&mut lab, sid).await; // events 1..=13

    // Started mid-session: 6..=13 are replayed, the rest arrives live.
    let mut all = watch(&mut lab, sid, 5, &[], None).await;
    let mut states = watch(&mut lab, sid, 0, &[K::StateChanged], Some(cid)).await;
    let mut seen = watch_until(&mut all, 13).await;
    assert_eq!(seqs(&seen), [6, 7, 8, 9, 10, 11, 12, 13]);
    data_and_close(&mut lab, sid, cid).await; // 14..=39
    seen.extend(watch_until(&mut all, 39).await);
    let changes = watch_until(&mut states, 39).await;
    assert_eq!(seqs(&changes), [2, 5, 9, 13, 24, 27, 30, 31, 34, 37, 39]);

    let stored = all_events(&mut lab, sid).await;
    assert_eq!(seqs(&seen), (6..=39).collect::<Vec<u64>>(), "no gap, no duplicate");
    assert_eq!(norm(&seen), norm(&stored[5..]), "streamed events equal the stored ones");

    // Ending the session ends the streams.
    lab.end_session(pb::SessionRef { session_id: sid }).await.expect("end");
    let end = tokio::time::timeout(WAIT, all.message()).await.expect("in time");
    assert!(matches!(end, Ok(None)), "{end:?}");
    let end = tokio::time::timeout(WAIT, states.message()).await.expect("in time");
    assert!(matches!(end, Ok(None)), "{end:?}");

    // An ended session's history replays, then the stream ends.
    let mut old = watch(&mut lab, sid, 33, &[], None).await;
    let tail = watch_until(&mut old, 39).await;
    assert_eq!(norm(&tail), norm(&stored[33..]));
    let end = tokio::time::timeout(WAIT, old.message()).await.expect("in time");
    assert!(matches!(end, Ok(None)), "{end:?}");
    server.stop().await;
}

/// Asked for, a `CaughtUp` message separates the replayed events from the
/// live ones; an ended session's replay ends with it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_can_mark_where_the_replay_ends() {
    let server = TestServer::start().await;
    let mut lab = client(&server).await;
    let sid = session(&mut lab, "caught up", 7).await;
    let cid = handshake(&mut lab, sid).await; // events 1..=13
    let req = pb::WatchEventsRequest { session_id: sid, after_seq: 5, caught_up: true, ..Default::default() };
    let mut stream = lab.watch_events(req).await.expect("watch").into_inner();
    let mut replayed = Vec::new();
    let marker = loop {
        match next_item(&mut stream).await {
            Item::Event(e) => replayed.push(e.seq),
            Item::CaughtUp(c) => break c.last_seq,
        }
    };
    assert_eq!((replayed, marker), ((6..=13).collect::<Vec<_>>(), 13));
    data_and_close(&mut lab, sid, cid).await; // 14..=39, live
    let live = watch_until(&mut stream, 39).await;
    assert_eq!(seqs(&live), (14..=39).collect::<Vec<u64>>(), "one marker, then only events");

    // Filtered by connection and kind: the marker still comes at the cursor.
    let req = pb::WatchEventsRequest {
        session_id: sid,
        kinds: vec![K::TimerFired.into()],
        caught_up: true,
        ..Default::default()
    };
    let mut timers = lab.watch_events(req).await.expect("watch").into_inner();
    let mut items = Vec::new();
    loop {
        let item = next_item(&mut timers).await;
        let done = matches!(item, Item::CaughtUp(_));
        items.push(item);
        if done {
            break;
        }
    }
    assert!(matches!(items.last(), Some(Item::CaughtUp(pb::CaughtUp { last_seq: 39 }))), "{items:?}");
    assert!(items[..items.len() - 1].iter().all(|i| matches!(i, Item::Event(e) if e.kind() == K::TimerFired)));

    lab.end_session(pb::SessionRef { session_id: sid }).await.expect("end");
    let req = pb::WatchEventsRequest { session_id: sid, after_seq: 38, caught_up: true, ..Default::default() };
    let mut old = lab.watch_events(req).await.expect("watch").into_inner();
    assert!(matches!(next_item(&mut old).await, Item::Event(e) if e.seq == 39));
    assert!(matches!(next_item(&mut old).await, Item::CaughtUp(pb::CaughtUp { last_seq: 39 })));
    let end = tokio::time::timeout(WAIT, old.message()).await.expect("in time");
    assert!(matches!(end, Ok(None)), "{end:?}");
    server.stop().await;
}

/// Each streamed event says whether SQLite held it when it was sent, and a
/// durable watch sends an event only once SQLite holds it: everything it
/// delivered is in the stored history at that moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_say_what_is_durable_and_a_durable_watch_sends_only_that() {
    let server = TestServer::start().await;
    let mut lab = client(&server).await;
    let sid = session(&mut lab, "durable", 7).await;
    let cid = handshake(&mut lab, sid).await; // events 1..=13, replayed from SQLite or the ring
    let durable = pb::WatchEventsRequest { session_id: sid, durable: true, ..Default::default() };
    let mut committed = lab.watch_events(durable).await.expect("watch").into_inner();
    let mut any = watch(&mut lab, sid, 0, &[], None).await;
    data_and_close(&mut lab, sid, cid).await; // 14..=39
    let seen = watch_until(&mut any, 39).await;
    assert_eq!(seqs(&seen), (1..=39).collect::<Vec<u64>>());
    let delivered = watch_until(&mut committed, 39).await;
    assert_eq!(seqs(&delivered), (1..=39).collect::<Vec<u64>>(), "the durable watch has no gap either");
    assert!(delivered.iter().all(|e| e.durable), "a durable watch sends committed events only");
    // Whatever arrived marked durable is stored already; a page from SQLite is durable.
    let stored = all_events(&mut lab, sid).await;
    assert_eq!(norm(&delivered), norm(&stored[..39]));
    assert!(stored.iter().all(|e| e.durable));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_started_while_the_session_is_busy_has_no_gap_and_no_duplicate() {
    // A small in-memory ring, so that a late subscriber's replay comes
    // first from SQLite, then from the ring, then live.
    let server = TestServer::with_limits(Limits { max_events_in_memory: 500, ..Limits::default() }).await;
    let mut lab = client(&server).await;
    let sid = session(&mut lab, "busy", 11).await;
    lab.set_link(pb::SetLinkRequest {
        session_id: sid,
        a: "A".into(),
        b: "B".into(),
        latency_ms: Some(10.0),
        loss: Some(0.03),
        ..Default::default()
    })
    .await
    .expect("lossy link");
    let cid = handshake(&mut lab, sid).await;
    let data: Vec<u8> = (0..1_048_576u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert_eq!(send(&mut lab, sid, cid, Side::Client, data.clone()).await, 1_048_576);

    // A background task moves the clock in small steps until the transfer is done.
    let mut driver = lab.clone();
    let busy = tokio::spawn(async move {
        for _ in 0..100_000 {
            let c = clock(&mut driver, sid, A::Advance, Some(20.0)).await;
            let conn = get(&mut driver, sid, cid).await;
            let server_end = conn.server.expect("server end");
            if server_end.received_bytes == 1_048_576 && c.idle {
                return c.now_ns;
            }
        }
        panic!("the transfer did not finish");
    });

    // Join in the middle of it.
    let mut joined_at = 0;
    for _ in 0..1000 {
        let info = lab.get_session(pb::SessionRef { session_id: sid }).await.expect("get").into_inner();
        if info.events >= 2_000 {
            joined_at = info.events / 2;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(joined_at > 0, "the session got busy");
    let mut stream = watch(&mut lab, sid, joined_at, &[], None).await;
    let mut seen: Vec<pb::Event> = Vec::new();
    let done_at = tokio::time::timeout(Duration::from_secs(15), async {
        let mut busy = busy;
        loop {
            tokio::select! {
                done = &mut busy => return done.expect("driver"),
                e = stream.message() => match e.expect("stream ok").expect("stream goes on").item {
                    Some(Item::Event(e)) => seen.push(e),
                    other => panic!("only events: {other:?}"),
                },
            }
        }
    })
    .await
    .expect("the transfer finishes in time");
    assert!(done_at > 0);
    let total = lab.get_session(pb::SessionRef { session_id: sid }).await.expect("get").into_inner().events;
    let last_seen = seen.last().map_or(joined_at, |e| e.seq);
    if last_seen < total {
        seen.extend(watch_until(&mut stream, total).await);
    }
    assert!(total > joined_at + 1_000, "{total} events, joined after {joined_at}");
    assert_eq!(seqs(&seen), (joined_at + 1..=total).collect::<Vec<u64>>(), "no gap, no duplicate");
    let stored = all_events(&mut lab, sid).await;
    assert_eq!(stored.len() as u64, total);
    assert!(norm(&seen) == norm(&stored[joined_at as usize..]), "streamed events equal the stored ones");
    let got = lab
        .get_received(pb::SideRequest { session_id: sid, connection_id: cid, side: Side::Server.into() })
        .await
        .expect("received")
        .into_inner();
    assert!(got.data == data, "the lossy transfer arrived whole");
    // Read from the typed payloads, checked against the JSON.
    let segment = |e: &pb::Event| match &e.payload {
        Some(pb::event::Payload::Segment(s)) => Some(s.clone()),
        _ => None,
    };
    let retransmitted = seen
        .iter()
        .filter(|e| e.kind() == K::SegmentSent && segment(e).is_some_and(|s| s.retransmission))
        .inspect(|e| assert!(e.json.contains("\"retransmission\":true"), "{}", e.json))
        .count();
    let lost = seen
        .iter()
        .filter(|e| segment(e).is_some_and(|s| s.drop_reason() == pb::DropReason::Loss))
        .inspect(|e| assert!(e.kind() == K::SegmentDropped && e.json.contains("\"reason\":\"loss\""), "{}", e.json))
        .count();
    assert!(
        lost > 0 && retransmitted > 0,
        "a 3% lossy link loses and retransmits: {lost} lost, {retransmitted} retransmitted"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_invalid_argument_not_found_already_exists_and_failed_precondition() {
    let server = TestServer::start().await;
    let mut lab = client(&server).await;
    let sid = session(&mut lab, "errors", 7).await;
    let cid = handshake(&mut lab, sid).await;

    fn check(got: tonic::Status, code: Code, starts: &str) {
        assert_eq!(got.code(), code, "{got:?}");
        assert!(got.message().starts_with(starts), "{:?} starts with {starts:?}", got.message());
    }
    let host = |name: &str, ip: &str| pb::AddHostRequest { session_id: sid, name: name.into(), ip: ip.into(), kind: 0 };
    check(lab.add_host(host("C", "10.0.0.300")).await.unwrap_err(), Code::InvalidArgument, "ip: ");
    check(
        lab.add_listener(pb::AddListenerRequest {
            session_id: sid,
            host: "B".into(),
            port: 70000,
            isn: None,
            backlog: None,
            nodelay: None,
            keepalive: None,
        })
        .await
        .unwrap_err(),
        Code::InvalidArgument,
        "port: ",
    );
    check(
        lab.set_link(pb::SetLinkRequest {
            session_id: sid,
            a: "A".into(),
            b: "B".into(),
            loss: Some(1.5),
            ..Default::default()
        })
        .await
        .unwrap_err(),
        Code::InvalidArgument,
        "loss: ",
    );
    // A shared bottleneck needs a rate and a plain name, as over REST.
    let link = |bottleneck: &str, bandwidth_bps: Option<u64>| pb::SetLinkRequest {
        session_id: sid,
        a: "A".into(),
        b: "B".into(),
        bandwidth_bps,
        bottleneck: Some(bottleneck.into()),
        ..Default::default()
    };
    check(lab.set_link(link("mid", None)).await.unwrap_err(), Code::InvalidArgument, "bottleneck: needs bandwidth_bps");
    check(
        lab.set_link(link("a b", Some(1000))).await.unwrap_err(),
        Code::InvalidArgument,
        "bottleneck: must be 1 to 64",
    );
    let too_long = "x".repeat(65);
    check(lab.set_link(link(&too_long, Some(1000))).await.unwrap_err(), Code::InvalidArgument, "bottleneck: ");
    let unrated_queue = pb::SetLinkRequest { queue_bytes: Some(1000), bottleneck: None, ..link("mid", None) };
    check(lab.set_link(unrated_queue).await.unwrap_err(), Code::InvalidArgument, "queue_bytes: needs bandwidth_bps");
    check(
        lab.clock(pb::ClockRequest { session_id: sid, action: 99, ..Default::default() }).await.unwrap_err(),
        Code::InvalidArgument,
        "action: unknown enum value 99",
    );
    // A required enum left UNSPECIFIED names its field and what it takes.
    check(
        lab.clock(pb::ClockRequest { session_id: sid, ..Default::default() }).await.unwrap_err(),
        Code::InvalidArgument,
        "action: required: one of CLOCK_ACTION_STEP",
    );
    check(
        lab.add_fault(pb::AddFaultRequest { session_id: sid, ..Default::default() }).await.unwrap_err(),
        Code::InvalidArgument,
        "action: required: one of FAULT_ACTION_DROP",
    );
    check(
        lab.create_session(pb::CreateSessionRequest { clock: 7, ..Default::default() }).await.unwrap_err(),
        Code::InvalidArgument,
        "clock: ",
    );
    check(
        lab.send(pb::SendRequest { session_id: sid, connection_id: cid, side: 0, data: vec![1] }).await.unwrap_err(),
        Code::InvalidArgument,
        "side: required",
    );
    let no_kind = vec![K::Unspecified.into()];
    check(
        lab.list_events(pb::ListEventsRequest { session_id: sid, kinds: no_kind.clone(), ..Default::default() })
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "kinds: ",
    );
    let err = lab
        .watch_events(pb::WatchEventsRequest { session_id: sid, kinds: no_kind, ..Default::default() })
        .await
        .unwrap_err();
    check(err, Code::InvalidArgument, "kinds: ");
    let bad_flag = pb::InjectRequest {
        session_id: sid,
        src: "A".into(),
        src_port: 1,
        dst: "B".into(),
        dst_port: 80,
        flags: vec![pb::Flag::Unspecified.into()],
        ..Default::default()
    };
    check(lab.inject(bad_flag).await.unwrap_err(), Code::InvalidArgument, "flags: ");

    // Duplicates: ALREADY_EXISTS (REST: 409 already_exists).
    check(lab.add_host(host("A", "10.0.0.9")).await.unwrap_err(), Code::AlreadyExists, "host `A` already exists");
    check(lab.add_host(host("C", "10.0.0.1")).await.unwrap_err(), Code::AlreadyExists, "address 10.0.0.1 is already");
    let listener = pb::AddListenerRequest { session_id: sid, host: "B".into(), port: 80, ..Default::default() };
    check(lab.add_listener(listener).await.unwrap_err(), Code::AlreadyExists, "address in use");
    let same_tuple = pb::OpenConnectionRequest {
        session_id: sid,
        client: "A".into(),
        server: "B".into(),
        port: 80,
        client_port: Some(40000),
        isn: None,
        nodelay: None,
        keepalive: None,
    };
    check(lab.open_connection(same_tuple).await.unwrap_err(), Code::AlreadyExists, "address in use");
    // What RFC 9293 refuses in the connection's state: FAILED_PRECONDITION.
    side(&mut lab, sid, cid, "close", Side::Client).await;
    check(
        lab.send(pb::SendRequest { session_id: sid, connection_id: cid, side: Side::Client.into(), data: vec![1] })
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "connection closing",
    );

    check(
        lab.get_session(pb::SessionRef { session_id: 999 }).await.unwrap_err(),
        Code::NotFound,
        "session 999 not found",
    );
    check(
        lab.get_connection(pb::ConnectionRef { session_id: sid, connection_id: 77 }).await.unwrap_err(),
        Code::NotFound,
        "connection 77 not found",
    );
    check(
        lab.delete_fault(pb::FaultRef { session_id: sid, fault_id: 5 }).await.unwrap_err(),
        Code::NotFound,
        "fault 5 not found",
    );
    check(
        lab.clock(pb::ClockRequest { session_id: 999, action: A::Step.into(), ..Default::default() })
            .await
            .unwrap_err(),
        Code::NotFound,
        "session 999 not found",
    );
    let err = lab.watch_events(pb::WatchEventsRequest { session_id: 999, ..Default::default() }).await.unwrap_err();
    check(err, Code::NotFound, "session 999 not found");
    check(
        lab.open_connection(pb::OpenConnectionRequest {
            session_id: sid,
            client: "A".into(),
            server: "Z".into(),
            port: 80,
            ..Default::default()
        })
        .await
        .unwrap_err(),
        Code::NotFound,
        "host Z not found",
    );
    // PatchProfile: a setting read where it is used changes; one fixed when
    // an endpoint opens is INVALID_ARGUMENT naming it while endpoints are open.
    let patch = |profile: pb::Profile| pb::PatchProfileRequest { session_id: sid, profile: Some(profile) };
    let after = lab
        .patch_profile(patch(pb::Profile { delayed_ack: Some(true), delayed_ack_ms: Some(90), ..Default::default() }))
        .await
        .expect("a running setting changes")
        .into_inner();
    assert_eq!((after.delayed_ack, after.delayed_ack_ms), (Some(true), Some(90)));
    check(
        lab.patch_profile(patch(pb::Profile { mss: Some(536), ..Default::default() })).await.unwrap_err(),
        Code::InvalidArgument,
        "profile.mss: mss cannot change while",
    );
    check(
        lab.patch_profile(patch(pb::Profile { delayed_ack_ms: Some(600), ..Default::default() })).await.unwrap_err(),
        Code::InvalidArgument,
        "profile.delayed_ack_ms: ",
    );
    check(
        lab.patch_profile(patch(pb::Profile { name: Some("freebsd".into()), ..Default::default() })).await.unwrap_err(),
        Code::InvalidArgument,
        "profile.name: ",
    );
    check(lab.patch_profile(patch(pb::Profile::default())).await.unwrap_err(), Code::InvalidArgument, "profile: ");

    // Closing a listener twice, or one that never was: NOT_FOUND; the first close succeeds.
    let listener_ref = |listener_id| pb::ListenerRef { session_id: sid, listener_id };
    lab.close_listener(listener_ref(1)).await.expect("the first close");
    check(lab.close_listener(listener_ref(1)).await.unwrap_err(), Code::NotFound, "");
    check(lab.close_listener(listener_ref(9)).await.unwrap_err(), Code::NotFound, "");
    let listeners = lab.list_listeners(pb::SessionRef { session_id: sid }).await.expect("listeners").into_inner();
    assert_eq!(listeners.listeners[0].state(), S::Closed, "{listeners:?}");

    // An ended session refuses commands.
    lab.end_session(pb::SessionRef { session_id: sid }).await.expect("end");
    check(
        lab.clock(pb::ClockRequest { session_id: sid, action: A::Step.into(), ..Default::default() })
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        &format!("session {sid} has ended"),
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_and_reflection_lists_the_lab_service() {
    let server = TestServer::start().await;
    let channel = grpc_channel(&server.grpc).await;
    let mut health = HealthClient::new(channel.clone());
    for name in ["", "tcplab.v1.LabService"] {
        let status =
            health.check(HealthCheckRequest { service: name.into() }).await.expect("check").into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "{name:?}");
    }
    let err = health.check(HealthCheckRequest { service: "no.such.Service".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let mut reflection = ServerReflectionClient::new(channel);
    let requests = [
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("tcplab.v1.LabService".into())),
        },
    ];
    let mut replies =
        reflection.server_reflection_info(tokio_stream::iter(requests)).await.expect("reflection").into_inner();
    let reply = replies.message().await.expect("reply ok").expect("a reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert!(names.contains(&"tcplab.v1.LabService".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
    let reply = replies.message().await.expect("reply ok").expect("a reply");
    let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    // The serialized FileDescriptorProto names its file and package.
    let proto = files.file_descriptor_proto.iter().find(|f| f.windows(19).any(|w| w == b"tcplab/v1/lab.proto"));
    let proto = proto.expect("the descriptor of tcplab/v1/lab.proto");
    assert!(proto.windows(9).any(|w| w == b"tcplab.v1"));
    assert!(proto.windows(10).any(|w| w == b"LabService"));
    assert!(proto.windows(11).any(|w| w == b"WatchEvents"));
    server.stop().await;
}
