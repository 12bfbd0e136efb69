//! Conversion and error-mapping tests, and one smoke test of the whole gRPC
//! port (lab service, reflection, health) on `127.0.0.1:0`. The lead's
//! end-to-end tests cover every RPC against the real server.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use base64::Engine as _;
use tonic::Code;

use super::convert::{kinds_filter, parse_side, renamed};
use super::*;
use crate::engine::tcb::Timers;
use crate::engine::{ConnError, Flags, Handshake, Isn, Profile, State, Switch, TcbStatus, TcpOption};
use crate::service::model::*;
use crate::service::{Error, LiveEvent, StreamItem};
use crate::sim::Side;

fn invalid_field(e: &Error) -> &str {
    match e {
        Error::InvalidArgument { field, .. } => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

// ----- profile -----

#[test]
fn empty_profile_is_the_default() {
    assert_eq!(Profile::try_from(pb::Profile::default()).unwrap(), Profile::default());
}

#[test]
fn profile_strings_parse_with_the_engine_spellings() {
    let p = Profile::try_from(pb::Profile {
        handshake: Some("two_way".into()),
        time_wait: Some("off".into()),
        isn: Some("300".into()),
        rfc5961: Some("off".into()),
        mss: Some(536),
        msl_ms: Some(1000),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(p.handshake, Handshake::TwoWay);
    assert_eq!(p.time_wait, Switch::Off);
    assert_eq!(p.isn, Isn::Fixed(300));
    assert_eq!(p.rfc5961, Switch::Off);
    assert_eq!(p.mss, 536);
    assert_eq!(p.msl_ms, 1000);
    assert_eq!(p.window, Profile::default().window);
    let p = Profile::try_from(pb::Profile { isn: Some("random".into()), ..Default::default() }).unwrap();
    assert_eq!(p.isn, Isn::Random);
}

/// One profile-with-overrides for both doors: the proto's `Profile` has a
/// field for every setting REST's `profile` object takes, and the same
/// values given either way (each one differing from the default) make the
/// same profile.
#[test]
fn grpc_takes_every_profile_setting_rest_takes() {
    let every = Profile { rfc5961_rst: Some(Switch::On), rfc5961_syn: Some(Switch::On), ..Profile::default() };
    let settings: Vec<String> = serde_json::to_value(&every).unwrap().as_object().unwrap().keys().cloned().collect();
    assert!(settings.len() >= 21, "{settings:?}");
    let proto = include_str!("../../../proto/tcplab/v1/lab.proto");
    let start = proto.find("message Profile {").expect("the Profile message");
    let block = &proto[start..start + proto[start..].find("\n}").expect("its end")];
    let fields: Vec<&str> = block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("optional "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    for setting in &settings {
        assert!(fields.contains(&setting.as_str()), "proto Profile lacks {setting}: {fields:?}");
    }
    let json = serde_json::json!({
        "handshake": "two_way", "time_wait": "off", "msl_ms": 1234, "isn": 77, "mss": 536, "window": 4096,
        "send_buffer": 8192, "rto_initial_ms": 333, "rto_min_ms": 111, "rto_max_ms": 99000, "max_retries": 3,
        "rfc5961": "off", "rfc5961_rst": "on", "rfc5961_syn": "off", "drop_synfin": "on", "syn_reset_acks": "off",
        "ack_repeats_fin": "on", "rcv_window_from_buffer": "on", "challenge_ack_limit": 7,
        "listen_drops_syn_ack": "on", "time_wait_acks_all": "on",
    });
    assert_eq!(json.as_object().unwrap().len(), settings.len(), "the test names every setting");
    let rest = crate::service::model::resolve_profile(json.clone()).expect("REST takes it");
    let grpc = Profile::try_from(pb::Profile {
        name: None,
        handshake: Some("two_way".into()),
        time_wait: Some("off".into()),
        msl_ms: Some(1234),
        isn: Some("77".into()),
        mss: Some(536),
        window: Some(4096),
        send_buffer: Some(8192),
        rto_initial_ms: Some(333),
        rto_min_ms: Some(111),
        rto_max_ms: Some(99000),
        max_retries: Some(3),
        rfc5961: Some("off".into()),
        rfc5961_rst: Some("on".into()),
        rfc5961_syn: Some("off".into()),
        drop_synfin: Some("on".into()),
        syn_reset_acks: Some("off".into()),
        ack_repeats_fin: Some("on".into()),
        rcv_window_from_buffer: Some("on".into()),
        challenge_ack_limit: Some(7),
        listen_drops_syn_ack: Some("on".into()),
        time_wait_acks_all: Some("on".into()),
    })
    .expect("gRPC takes it");
    assert_eq!(grpc, rest);
    let (given, default) = (serde_json::to_value(&rest).unwrap(), serde_json::to_value(Profile::default()).unwrap());
    for setting in &settings {
        assert_ne!(given.get(setting), default.get(setting), "{setting} must differ from its default to be tested");
    }
    // And over a named base, both keep what they do not set.
    let named = Profile::try_from(pb::Profile { name: Some("freebsd".into()), msl_ms: Some(5), ..Default::default() });
    let rest_named = crate::service::model::resolve_profile(serde_json::json!({"name": "freebsd", "msl_ms": 5}));
    assert_eq!(named.expect("named"), rest_named.expect("named"));
}

#[test]
fn bad_profile_values_name_their_field() {
    let cases = [
        (pb::Profile { handshake: Some("four_way".into()), ..Default::default() }, "profile.handshake"),
        (pb::Profile { time_wait: Some("maybe".into()), ..Default::default() }, "profile.time_wait"),
        (pb::Profile { rfc5961: Some("ON".into()), ..Default::default() }, "profile.rfc5961"),
        (pb::Profile { isn: Some("soon".into()), ..Default::default() }, "profile.isn"),
        (pb::Profile { isn: Some("4294967296".into()), ..Default::default() }, "profile.isn"),
        (pb::Profile { mss: Some(70_000), ..Default::default() }, "profile.mss"),
        (pb::Profile { drop_synfin: Some("maybe".into()), ..Default::default() }, "profile.drop_synfin"),
        (pb::Profile { time_wait_acks_all: Some("".into()), ..Default::default() }, "profile.time_wait_acks_all"),
        (pb::Profile { name: Some("fredbsd".into()), ..Default::default() }, "profile.name"),
    ];
    for (profile, field) in cases {
        let err = Profile::try_from(profile).unwrap_err();
        assert_eq!(invalid_field(&err), field);
        let status = Status::from(err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(&format!("{field}: ")), "{}", status.message());
    }
}

#[test]
fn create_session_parses_clock_and_profile() {
    let req = CreateSession::try_from(pb::CreateSessionRequest {
        name: Some("lab".into()),
        seed: Some(7),
        clock: Some("realtime".into()),
        speed: Some(2.0),
        profile: Some(pb::Profile { handshake: Some("two_way".into()), ..Default::default() }),
    })
    .unwrap();
    assert_eq!(req.clock, Some(ClockMode::Realtime));
    assert_eq!(req.profile.map(|p| p.handshake), Some(Handshake::TwoWay));
    let req = CreateSession::try_from(pb::CreateSessionRequest::default()).unwrap();
    assert!(req.clock.is_none() && req.profile.is_none());
    let err = CreateSession::try_from(pb::CreateSessionRequest { clock: Some("wall".into()), ..Default::default() })
        .unwrap_err();
    assert_eq!(invalid_field(&err), "clock");
    let err = CreateSession::try_from(pb::CreateSessionRequest {
        profile: Some(pb::Profile { time_wait: Some("x".into()), ..Default::default() }),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(invalid_field(&err), "profile.time_wait");
}

// ----- errors -----

#[test]
fn every_service_error_has_its_grpc_code_and_display_message() {
    let cases = [
        (Error::invalid("profile.mss", "too small"), Code::InvalidArgument),
        (Error::not_found("session", 9), Code::NotFound),
        (Error::FailedPrecondition("session 1 has ended".into()), Code::FailedPrecondition),
        (Error::LimitExceeded { limit: "max_sessions", max: 3 }, Code::ResourceExhausted),
        (Error::Unauthenticated("missing token".into()), Code::Unauthenticated),
        (Error::Unavailable, Code::Unavailable),
    ];
    for (err, code) in cases {
        let message = err.to_string();
        let status = Status::from(err);
        assert_eq!(status.code(), code);
        assert_eq!(status.message(), message);
    }
}

#[test]
fn internal_errors_hide_their_detail() {
    let status = Status::from(Error::Internal("store: disk I/O error at /var/secret".into()));
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), "internal error");
}

#[test]
fn renamed_changes_only_the_named_invalid_field() {
    assert_eq!(invalid_field(&renamed(Error::invalid("kind", "bad"), "kind", "kinds")), "kinds");
    assert_eq!(invalid_field(&renamed(Error::invalid("limit", "bad"), "kind", "kinds")), "limit");
    assert!(matches!(renamed(Error::Unavailable, "kind", "kinds"), Error::Unavailable));
}

// ----- requests -----

#[test]
fn side_names_parse_and_bad_ones_name_the_field() {
    assert_eq!(parse_side("client").unwrap(), Side::Client);
    assert_eq!(parse_side("server").unwrap(), Side::Server);
    assert_eq!(invalid_field(&parse_side("Client").unwrap_err()), "side");
    assert_eq!(invalid_field(&parse_side("").unwrap_err()), "side");
}

#[test]
fn send_carries_the_exact_bytes() {
    let data = vec![0u8, 0xff, b'h', b'i', 0x80];
    let req = SendData::try_from(pb::SendRequest {
        session_id: 1,
        connection_id: 2,
        side: "server".into(),
        data: data.clone(),
    })
    .unwrap();
    assert_eq!(req.side, Side::Server);
    assert_eq!(req.into_bytes().unwrap(), data);
    let err = SendData::try_from(pb::SendRequest { side: "both".into(), ..Default::default() }).unwrap_err();
    assert_eq!(invalid_field(&err), "side");
}

#[test]
fn fault_match_flags_follow_match_flags() {
    let exact_none = FaultMatch::try_from(pb::FaultMatch { match_flags: true, ..Default::default() }).unwrap();
    assert_eq!(exact_none.flags, Some(Flags::NONE));
    let any = FaultMatch::try_from(pb::FaultMatch::default()).unwrap();
    assert_eq!(any.flags, None);
    let ack = FaultMatch::try_from(pb::FaultMatch { flags: vec!["ACK".into()], ..Default::default() }).unwrap();
    assert_eq!(ack.flags, Some(Flags::ACK));
}

#[test]
fn fault_match_ranges_and_ports() {
    let m = FaultMatch::try_from(pb::FaultMatch {
        seq_from: Some(100),
        seq_to: Some(200),
        src_port: Some(80),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m.seq_range, Some([100, 200]));
    assert_eq!(m.src_port, Some(80));
    let err = FaultMatch::try_from(pb::FaultMatch { seq_from: Some(1), ..Default::default() }).unwrap_err();
    assert_eq!(invalid_field(&err), "match.seq_to");
    let err = FaultMatch::try_from(pb::FaultMatch { seq_to: Some(1), ..Default::default() }).unwrap_err();
    assert_eq!(invalid_field(&err), "match.seq_from");
    let err = FaultMatch::try_from(pb::FaultMatch { dst_port: Some(65_536), ..Default::default() }).unwrap_err();
    assert_eq!(invalid_field(&err), "match.dst_port");
}

#[test]
fn fault_match_survives_a_round_trip() {
    for m in [
        pb::FaultMatch { match_flags: true, ..Default::default() },
        pb::FaultMatch {
            flags: vec!["SYN".into()],
            match_flags: true,
            seq_from: Some(5),
            seq_to: Some(9),
            ..Default::default()
        },
        pb::FaultMatch {
            len: Some(0),
            seq: Some(1),
            ack: Some(2),
            src_port: Some(3),
            dst_port: Some(4),
            ..Default::default()
        },
    ] {
        let back = pb::FaultMatch::from(FaultMatch::try_from(m.clone()).unwrap());
        assert_eq!(back, m);
    }
}

#[test]
fn add_fault_converts_its_match() {
    let req = AddFault::try_from(pb::AddFaultRequest {
        session_id: 1,
        from: Some("A".into()),
        r#match: Some(pb::FaultMatch { flags: vec!["SYN".into()], ..Default::default() }),
        action: "drop".into(),
        count: Some(1),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(req.from.as_deref(), Some("A"));
    assert_eq!(req.matcher.and_then(|m| m.flags), Some(Flags::SYN));
    assert_eq!(req.count, Some(1));
    assert_eq!(req.action, crate::sim::FaultAction::Drop);
}

#[test]
fn inject_converts_endpoints_payload_and_options() {
    let req = Inject::try_from(pb::InjectRequest {
        session_id: 1,
        from: "A".into(),
        src_port: 4000,
        to: "B".into(),
        dst_port: 80,
        flags: vec!["SYN".into()],
        seq: 10,
        payload: vec![1, 2, 3],
        options_json: r#"[{"kind":"mss","value":1000},{"kind":"nop"}]"#.into(),
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(&req.from, InjectEndpoint::Host(h) if h == "A"));
    assert!(matches!(&req.to, InjectEndpoint::Host(h) if h == "B"));
    assert_eq!((req.src_port, req.dst_port), (Some(4000), Some(80)));
    assert_eq!(req.payload_base64.as_deref(), Some("AQID"));
    assert_eq!(req.options, vec![TcpOption::Mss { value: 1000 }, TcpOption::Nop]);
    let empty = Inject::try_from(pb::InjectRequest::default()).unwrap();
    assert!(empty.payload.is_none() && empty.payload_base64.is_none() && empty.options.is_empty());
    let err =
        Inject::try_from(pb::InjectRequest { options_json: "[{\"kind\":\"bogus\"}]".into(), ..Default::default() })
            .unwrap_err();
    assert_eq!(invalid_field(&err), "options_json");
}

#[test]
fn event_filters_join_kinds() {
    let q = EventQuery::from(pb::ListEventsRequest {
        session_id: 1,
        after_seq: Some(3),
        limit: None,
        kinds: vec!["state_changed".into(), "segment_sent".into()],
        connection: Some(2),
    });
    assert_eq!(q.kind.as_deref(), Some("state_changed,segment_sent"));
    assert_eq!((q.after_seq, q.connection), (Some(3), Some(2)));
    assert_eq!(kinds_filter(&[]), None);
}

// ----- replies -----

fn tcb() -> TcbStatus {
    TcbStatus {
        state: State::Established,
        local_port: 4000,
        remote_ip: Ipv4Addr::new(10, 0, 0, 2),
        remote_port: 80,
        iss: 100,
        irs: 300,
        snd_una: 101,
        snd_nxt: 106,
        snd_wnd: 65_535,
        rcv_nxt: 301,
        rcv_wnd: 65_000,
        snd_mss: 1460,
        send_buffered: 5,
        recv_buffered: 2,
        out_of_order: 0,
        timers: Timers { retransmit: Some(1_000_000), time_wait: None, persist: None },
        rto_ns: 1_000_000_000,
        srtt_ns: None,
        retries: 1,
        error: Some(ConnError::Reset),
    }
}

#[test]
fn connection_ends_carry_the_tcb() {
    let conn = pb::Connection::from(ConnectionInfo {
        id: 3,
        client: Some(EndInfo { host: "A".into(), side: Side::Client, tcb: tcb(), received_bytes: 7 }),
        server: None,
    });
    assert_eq!(conn.id, 3);
    assert!(conn.server.is_none());
    let end = conn.client.unwrap();
    assert_eq!((end.host.as_str(), end.side.as_str(), end.state.as_str()), ("A", "client", "ESTABLISHED"));
    assert_eq!((end.iss, end.irs, end.snd_una, end.snd_nxt, end.rcv_nxt), (100, 300, 101, 106, 301));
    assert_eq!((end.snd_wnd, end.rcv_wnd, end.send_buffered, end.recv_buffered), (65_535, 65_000, 5, 2));
    assert_eq!((end.local_port, end.remote_ip.as_str(), end.remote_port), (4000, "10.0.0.2", 80));
    assert_eq!(end.error.as_deref(), Some("ECONNRESET"));
    assert_eq!(end.timers.unwrap().retransmit, Some(1_000_000));
    assert_eq!((end.received_bytes, end.rto_ns, end.retries), (7, 1_000_000_000, 1));
}

#[test]
fn sessions_carry_clock_names_and_profile_json() {
    let s = pb::Session::from(SessionInfo {
        id: 1,
        name: "lab".into(),
        seed: 7,
        clock: ClockMode::Realtime,
        speed: 1.5,
        paused: false,
        status: "live".into(),
        now_ns: 10,
        created_at: "2026-01-01T00:00:00Z".into(),
        ended_at: None,
        profile: Profile { handshake: Handshake::TwoWay, ..Profile::default() },
        hosts: 2,
        connections: 1,
        states: BTreeMap::from([("ESTABLISHED".to_string(), 2)]),
        events: 12,
    });
    assert_eq!(s.clock, "realtime");
    assert_eq!(s.states.get("ESTABLISHED"), Some(&2));
    let profile: Profile = serde_json::from_str(&s.profile_json).unwrap();
    assert_eq!(profile.handshake, Handshake::TwoWay);
}

#[test]
fn received_data_is_the_exact_octets() {
    let data = [0u8, 159, 146, 150];
    let r = pb::ReceivedResponse::try_from(Received {
        side: Side::Server,
        bytes: 4,
        data: String::from_utf8_lossy(&data).into_owned(),
        data_base64: base64::engine::general_purpose::STANDARD.encode(data),
    })
    .unwrap();
    assert_eq!((r.side.as_str(), r.bytes, r.data.as_slice()), ("server", 4, &data[..]));
}

#[test]
fn faults_and_listeners_convert() {
    // (`pb::Fault::from` is prost's getter for `optional string from`.)
    let f: pb::Fault = FaultInfo {
        id: 2,
        from: None,
        to: Some("B".into()),
        matcher: FaultMatch { flags: Some(Flags::NONE), seq_range: Some([1, 2]), ..Default::default() },
        skip: 1,
        count: None,
        action: crate::sim::FaultAction::Hold,
        delay_ms: 0.0,
        matched: 3,
        acted: 2,
        held: 2,
    }
    .into();
    let m = f.r#match.unwrap();
    assert!(m.match_flags && m.flags.is_empty());
    assert_eq!((m.seq_from, m.seq_to), (Some(1), Some(2)));
    assert_eq!((f.id, f.to.as_deref(), f.action.as_str(), f.held), (2, Some("B"), "hold", 2));
    let l = pb::Listener::from(ListenerInfo {
        id: 1,
        host: "B".into(),
        port: 80,
        state: State::Listen,
        backlog: Some(2),
        pending: 1,
    });
    assert_eq!((l.port, l.state.as_str(), l.backlog, l.pending), (80, "LISTEN", Some(2), 1));
}

#[test]
fn events_keep_their_json() {
    let body = r#"{"seq":4,"t_ns":99,"kind":"state_changed","connection":1,"host":"A","side":"client","from":"SYN_SENT","to":"ESTABLISHED","cause":{"kind":"segment","flags":["ACK","SYN"],"seq":300,"ack":101,"len":0},"rfc":"3.10.7.3"}"#;
    let live = LiveEvent::stored(body.to_owned()).expect("an event");
    let e = pb::Event::from(&live);
    assert_eq!(
        (e.seq, e.t_ns, e.kind.as_str(), e.connection, e.json.as_str()),
        (4, 99, "state_changed", Some(1), body)
    );
    let change = e.state_changed.expect("typed state change");
    assert_eq!(
        (change.host.as_str(), change.side.as_deref(), change.from_state.as_str(), change.to_state.as_str()),
        ("A", Some("client"), "SYN_SENT", "ESTABLISHED")
    );
    assert_eq!(change.rfc, "3.10.7.3");
    let page = EventPage { events: vec![live.event.clone()], next_after_seq: 4 };
    let e = pb::ListEventsResponse::from(page).events.remove(0);
    assert_eq!((e.seq, e.t_ns, e.kind.as_str(), e.connection, e.durable), (4, 99, "state_changed", Some(1), true));
    assert_eq!(e.state_changed.map(|c| c.to_state), Some("ESTABLISHED".to_owned()));
    assert_eq!(e.json, body, "a page's event is the stored JSON, byte for byte");
}

#[test]
fn segments_have_typed_fields_and_the_rest_json() {
    let segment = serde_json::json!({
        "id": 8, "from": "A", "to": "B", "src_port": 4000, "dst_port": 80, "seq": 100, "ack": 0,
        "flags": ["SYN"], "window": 65535, "checksum": 0, "urgent": 0, "options": [], "len": 0,
        "retransmission": false, "injected": false,
    });
    let info = SegmentInfo {
        segment: serde_json::from_value(segment).expect("a wire segment"),
        sent_ns: 5,
        fate: crate::sim::Fate::Lost,
        fates: vec![crate::sim::Fate::Lost],
        reason: Some(crate::sim::DropReason::Loss),
    };
    let s = pb::Segment::from(info);
    assert_eq!((s.id, s.from.as_str(), s.to.as_str(), s.src_port, s.dst_port), (8, "A", "B", 4000, 80));
    assert_eq!((s.seq, s.ack, s.window, s.len, s.flags.clone()), (100, 0, 65535, 0, vec!["SYN".to_string()]));
    assert_eq!((s.fate.as_str(), s.reason.as_deref(), s.sent_ns), ("lost", Some("loss"), 5));
    let json: serde_json::Value = serde_json::from_str(&s.json).unwrap();
    assert_eq!(json["seq"], 100);
    assert_eq!(json["fate"], "lost");
    assert_eq!(json["sent_ns"], 5);
}

#[test]
fn the_descriptor_set_describes_the_lab_service() {
    // Building reflection decodes the set; the names show it is ours.
    assert!(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .with_service_name(SERVICE_NAME)
            .build_v1()
            .is_ok()
    );
    let text = String::from_utf8_lossy(FILE_DESCRIPTOR_SET);
    assert!(text.contains("tcplab.v1") && text.contains("LabService") && text.contains("WatchEvents"));
    assert_eq!(SERVICE_NAME, "tcplab.v1.LabService");
}

#[test]
fn a_lagged_subscription_ends_with_aborted_and_the_resume_point() {
    let status = stream_item(StreamItem::Lagged { last_seq: 41 }).expect("an item").unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.message(), "subscriber lagged; resume with after_seq=41");
    let live = LiveEvent::stored(r#"{"seq":42,"t_ns":0,"kind":"timer_fired","host":"A","timer":"retransmit"}"#.into())
        .expect("an event");
    assert_eq!(
        stream_item(StreamItem::Event { event: Arc::new(live), durable: true }).expect("an item").unwrap().seq,
        42
    );
    assert!(stream_item(StreamItem::End { last_seq: 42 }).is_none(), "the end is the stream's OK close");
}

// ----- the whole port -----

mod server {
    use std::time::Duration;

    use tonic::transport::Channel;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    use super::*;
    use crate::service::Limits;
    use crate::store::Store;
    use pb::lab_service_client::LabServiceClient;

    /// A server on `127.0.0.1:0`: the service, its URL, the shutdown
    /// trigger, the serving task, and the store's directory (kept alive).
    type Running =
        (LabService, String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>, tempfile::TempDir);

    async fn start(limits: Limits) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("lab.db")).await.expect("open store");
        let service = LabService::new(store, limits).await.expect("service");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(service.clone(), listener, async move {
            let _ = stopped.await;
        }));
        let task = tokio::spawn(async move { server.await.expect("join").expect("serve") });
        (service, url, stop, task, dir)
    }

    async fn channel(url: &str) -> Channel {
        Channel::from_shared(url.to_string()).expect("url").connect().await.expect("connect")
    }

    #[tokio::test]
    async fn lab_reflection_and_health_on_one_port() {
        let (service, url, stop, task, _dir) = start(Limits::default()).await;
        let ch = channel(&url).await;
        let mut lab = LabServiceClient::new(ch.clone());

        let session = lab
            .create_session(pb::CreateSessionRequest {
                seed: Some(1),
                profile: Some(pb::Profile { isn: Some("1000".into()), ..Default::default() }),
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner();
        let sid = session.id;
        assert_eq!((session.clock.as_str(), session.status.as_str()), ("manual", "live"));
        for (name, ip) in [("A", "10.0.0.1"), ("B", "10.0.0.2")] {
            lab.add_host(pb::AddHostRequest { session_id: sid, name: name.into(), ip: ip.into(), kind: None })
                .await
                .expect("add host");
        }
        lab.add_listener(pb::AddListenerRequest {
            session_id: sid,
            host: "B".into(),
            port: 80,
            isn: Some(5000),
            backlog: None,
        })
        .await
        .expect("listen");
        let conn = lab
            .open_connection(pb::OpenConnectionRequest {
                session_id: sid,
                client: "A".into(),
                server: "B".into(),
                port: 80,
                ..Default::default()
            })
            .await
            .expect("connect")
            .into_inner();
        let idle = pb::ClockRequest { session_id: sid, action: "run_until_idle".into(), ..Default::default() };
        lab.clock(idle.clone()).await.expect("run");
        let data = vec![0u8, 1, 2, 255];
        let sent = lab
            .send(pb::SendRequest {
                session_id: sid,
                connection_id: conn.id,
                side: "client".into(),
                data: data.clone(),
            })
            .await
            .expect("send")
            .into_inner();
        assert_eq!(sent.accepted, 4);
        lab.clock(idle).await.expect("run");
        let got = lab
            .get_received(pb::SideRequest { session_id: sid, connection_id: conn.id, side: "server".into() })
            .await
            .expect("received")
            .into_inner();
        assert_eq!(got.data, data);
        let c = lab
            .get_connection(pb::ConnectionRef { session_id: sid, connection_id: conn.id })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(c.client.map(|e| e.state), Some("ESTABLISHED".to_string()));

        // Errors keep their codes and name the field as the proto spells it.
        let err = lab
            .close(pb::SideRequest { session_id: sid, connection_id: conn.id, side: "nobody".into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with("side: "), "{}", err.message());
        let err = lab.get_session(pb::SessionRef { session_id: 999 }).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = lab
            .list_events(pb::ListEventsRequest { session_id: sid, kinds: vec!["nope".into()], ..Default::default() })
            .await
            .unwrap_err();
        assert!(err.message().starts_with("kinds: "), "{}", err.message());

        // Stored events replay, in order, from after_seq.
        let mut watch = lab
            .watch_events(pb::WatchEventsRequest { session_id: sid, after_seq: 0, ..Default::default() })
            .await
            .expect("watch")
            .into_inner();
        let mut seqs = Vec::new();
        while seqs.len() < 3 {
            let event = tokio::time::timeout(Duration::from_secs(10), watch.message())
                .await
                .expect("an event in time")
                .expect("stream ok")
                .expect("not ended");
            seqs.push(event.seq);
        }
        assert_eq!(seqs, vec![1, 2, 3]);
        let listed = lab
            .list_events(pb::ListEventsRequest { session_id: sid, limit: Some(3), ..Default::default() })
            .await
            .expect("events")
            .into_inner();
        assert_eq!(listed.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        let segments = lab.list_segments(pb::SessionRef { session_id: sid }).await.expect("segments").into_inner();
        assert_eq!(segments.segments.first().map(|s| s.flags.clone()), Some(vec!["SYN".to_string()]));

        // Ending the session ends the stream.
        lab.end_session(pb::SessionRef { session_id: sid }).await.expect("end");
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match watch.message().await {
                    Ok(Some(_)) => continue,
                    other => return other,
                }
            }
        })
        .await
        .expect("stream ends");
        assert!(matches!(ended, Ok(None)), "{ended:?}");

        // Health.
        let mut health = HealthClient::new(ch.clone());
        for name in ["", SERVICE_NAME] {
            let status =
                health.check(HealthCheckRequest { service: name.into() }).await.expect("health").into_inner().status;
            assert_eq!(status, health_check_response::ServingStatus::Serving as i32);
        }

        // Reflection v1 lists the lab service.
        let mut reflection = ServerReflectionClient::new(ch.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies =
            reflection.server_reflection_info(tokio_stream::iter([request])).await.expect("reflection").into_inner();
        let reply = replies.message().await.expect("reply ok").expect("a reply");
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("unexpected reflection reply {reply:?}");
        };
        assert!(list.service.iter().any(|s| s.name == SERVICE_NAME), "{list:?}");

        // Graceful shutdown: sessions first, then the port. A health watcher
        // sees NOT_SERVING, then its stream ends instead of holding the drain.
        let mut watch_health =
            health.watch(HealthCheckRequest { service: SERVICE_NAME.into() }).await.expect("health watch").into_inner();
        let serving = health_check_response::ServingStatus::Serving as i32;
        assert_eq!(watch_health.message().await.expect("ok").map(|r| r.status), Some(serving));
        service.shutdown().await.expect("service shutdown");
        drop((lab, reflection));
        let _ = stop.send(());
        let not_serving = health_check_response::ServingStatus::NotServing as i32;
        let next = tokio::time::timeout(Duration::from_secs(10), watch_health.message()).await.expect("in time");
        assert_eq!(next.expect("ok").map(|r| r.status), Some(not_serving));
        let last = tokio::time::timeout(Duration::from_secs(10), watch_health.message()).await.expect("in time");
        assert!(matches!(last, Ok(None)), "{last:?}");
        drop((health, watch_health, ch));
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("server stops").expect("join");
    }

    /// A client that stops reading while the session keeps producing gets
    /// ABORTED with the seq to resume from, and resuming there continues
    /// without a gap.
    #[tokio::test]
    async fn a_slow_watcher_is_aborted_with_its_resume_point() {
        let limits = Limits { broadcast_capacity: 8, ..Limits::default() };
        let (service, url, stop, task, _dir) = start(limits).await;
        let mut lab = LabServiceClient::new(channel(&url).await);
        let sid = lab.create_session(pb::CreateSessionRequest::default()).await.expect("create").into_inner().id;
        for (name, ip) in [("A", "10.0.0.1"), ("B", "10.0.0.2")] {
            let host = pb::AddHostRequest { session_id: sid, name: name.into(), ip: ip.into(), kind: None };
            lab.add_host(host).await.expect("add host");
        }
        let listen = pb::AddListenerRequest { session_id: sid, host: "B".into(), port: 80, isn: None, backlog: None };
        lab.add_listener(listen).await.expect("listen");
        let open = pb::OpenConnectionRequest {
            session_id: sid,
            client: "A".into(),
            server: "B".into(),
            port: 80,
            ..Default::default()
        };
        let cid = lab.open_connection(open).await.expect("connect").into_inner().id;
        let idle = pb::ClockRequest { session_id: sid, action: "run_until_idle".into(), ..Default::default() };
        lab.clock(idle.clone()).await.expect("run");
        let start_seq = lab.get_session(pb::SessionRef { session_id: sid }).await.expect("get").into_inner().events;

        // A second connection, so the watcher's HTTP/2 flow control is its own.
        let mut watcher = LabServiceClient::new(channel(&url).await);
        let watch = pb::WatchEventsRequest { session_id: sid, after_seq: start_seq, ..Default::default() };
        let mut stream = watcher.watch_events(watch).await.expect("watch").into_inner();
        for _ in 0..1500 {
            let send =
                pb::SendRequest { session_id: sid, connection_id: cid, side: "client".into(), data: vec![b'x'; 100] };
            lab.send(send).await.expect("send");
            lab.clock(idle.clone()).await.expect("run");
        }
        let mut last = start_seq;
        let status = loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("in time") {
                Ok(Some(event)) => {
                    assert!(event.seq > last);
                    last = event.seq;
                }
                Ok(None) => panic!("the stream ended without ABORTED after seq {last}"),
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(status.message(), format!("subscriber lagged; resume with after_seq={last}"));

        // Resuming there replays from the store with no gap.
        let resume = pb::WatchEventsRequest { session_id: sid, after_seq: last, ..Default::default() };
        let mut stream = watcher.watch_events(resume).await.expect("resume").into_inner();
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("in time");
        assert_eq!(next.expect("ok").expect("an event").seq, last + 1);

        service.shutdown().await.expect("service shutdown");
        drop((lab, watcher, stream));
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("server stops").expect("join");
    }
}
