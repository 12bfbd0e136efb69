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
use crate::engine::tcb::{SeqRange, Timers};
use crate::engine::{CcPhase, ConnError, Flags, Handshake, Isn, Profile, State, Switch, TcbStatus, TcpOption};
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
fn profile_enums_booleans_and_the_isn_oneof_map_to_the_engine_settings() {
    let p = Profile::try_from(pb::Profile {
        handshake: pb::Handshake::TwoWay.into(),
        time_wait: Some(false),
        isn: Some(pb::profile::Isn::FixedIsn(300)),
        rfc5961: Some(false),
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
    let fixed = Profile { isn: Isn::Fixed(1), ..Profile::default() };
    let p = Profile::try_from(pb::Profile {
        isn: Some(pb::profile::Isn::RandomIsn(true)),
        ..pb::Profile::from(fixed.clone())
    });
    assert_eq!(p.unwrap().isn, Isn::Random);
    // A profile in a reply has every setting, and reads back as itself.
    let every = Profile { rfc5961_rst: Some(Switch::Off), time_wait: Switch::Off, ..fixed };
    let message = pb::Profile::from(every.clone());
    assert_eq!(
        (message.handshake(), message.time_wait, message.rfc5961_syn),
        (pb::Handshake::ThreeWay, Some(false), None)
    );
    assert_eq!(message.isn, Some(pb::profile::Isn::FixedIsn(1)));
    assert_eq!(Profile::try_from(message).unwrap(), every);
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
    // Field names (`[optional] TYPE NAME = N;`) and oneof names (`oneof NAME {`).
    let fields: Vec<&str> = block
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.starts_with("//"))
        .filter_map(|l| match l.strip_prefix("oneof ") {
            Some(oneof) => oneof.split_whitespace().next(),
            None if l.contains(" = ") => l.trim_start_matches("optional ").split_whitespace().nth(1),
            None => None,
        })
        .collect();
    for setting in &settings {
        assert!(fields.contains(&setting.as_str()), "proto Profile lacks {setting}: {fields:?}");
    }
    let json = serde_json::json!({
        "handshake": "two_way", "time_wait": "off", "msl_ms": 1234, "isn": 77, "mss": 536, "window": 4096,
        "send_buffer": 8192, "rto_initial_ms": 333, "rto_min_ms": 111, "rto_max_ms": 99000, "max_retries": 3,
        "rfc5961": "off", "rfc5961_rst": "on", "rfc5961_syn": "off", "drop_synfin": "on", "syn_reset_acks": "off",
        "ack_repeats_fin": "on", "rcv_window_from_buffer": "on", "challenge_ack_limit": 7,
        "listen_drops_syn_ack": "on", "time_wait_acks_all": "on", "cc": "cubic", "initial_window": 7,
        "limited_transmit": "off", "sack": "on", "delayed_ack": "on", "delayed_ack_ms": 90,
        "window_scale": 9, "timestamps": "on", "rto_slop_ms": 200, "keepinit_ms": 75000,
        "syn_rexmit_drop_options": "on", "old_segment_acks": "on",
    });
    assert_eq!(json.as_object().unwrap().len(), settings.len(), "the test names every setting");
    let rest = crate::service::model::resolve_profile(json.clone()).expect("REST takes it");
    let grpc = Profile::try_from(pb::Profile {
        name: None,
        handshake: pb::Handshake::TwoWay.into(),
        time_wait: Some(false),
        msl_ms: Some(1234),
        isn: Some(pb::profile::Isn::FixedIsn(77)),
        mss: Some(536),
        window: Some(4096),
        send_buffer: Some(8192),
        rto_initial_ms: Some(333),
        rto_min_ms: Some(111),
        rto_max_ms: Some(99000),
        max_retries: Some(3),
        rfc5961: Some(false),
        rfc5961_rst: Some(true),
        rfc5961_syn: Some(false),
        drop_synfin: Some(true),
        syn_reset_acks: Some(false),
        ack_repeats_fin: Some(true),
        rcv_window_from_buffer: Some(true),
        challenge_ack_limit: Some(7),
        listen_drops_syn_ack: Some(true),
        time_wait_acks_all: Some(true),
        cc: pb::CcAlgorithm::Cubic.into(),
        initial_window: Some(pb::profile::InitialWindow::InitialWindowSegments(7)),
        limited_transmit: Some(false),
        sack: Some(true),
        delayed_ack: Some(true),
        delayed_ack_ms: Some(90),
        window_scale: Some(pb::profile::WindowScale::WindowScaleShift(9)),
        timestamps: Some(true),
        rto_slop_ms: Some(200),
        keepinit_ms: Some(75000),
        syn_rexmit_drop_options: Some(true),
        old_segment_acks: Some(true),
    })
    .expect("gRPC takes it");
    assert_eq!(grpc, rest);
    let refused = Profile::try_from(pb::Profile {
        initial_window: Some(pb::profile::InitialWindow::Rfc5681InitialWindow(false)),
        ..pb::Profile::default()
    });
    assert_eq!(invalid_field(&refused.expect_err("false is refused")), "profile.rfc5681_initial_window");
    let too_big = Profile::try_from(pb::Profile {
        initial_window: Some(pb::profile::InitialWindow::InitialWindowSegments(1001)),
        ..pb::Profile::default()
    });
    assert_eq!(invalid_field(&too_big.expect_err("out of range")), "profile.initial_window");
    let unknown = Profile::try_from(pb::Profile { cc: 99, ..pb::Profile::default() });
    assert_eq!(invalid_field(&unknown.expect_err("no such algorithm")), "profile.cc");
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
        (pb::Profile { handshake: 3, ..Default::default() }, "profile.handshake"),
        (pb::Profile { isn: Some(pb::profile::Isn::RandomIsn(false)), ..Default::default() }, "profile.random_isn"),
        (pb::Profile { mss: Some(70_000), ..Default::default() }, "profile.mss"),
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
        clock: pb::ClockMode::Realtime.into(),
        speed: Some(2.0),
        profile: Some(pb::Profile { handshake: pb::Handshake::TwoWay.into(), ..Default::default() }),
    })
    .unwrap();
    assert_eq!(req.clock, Some(ClockMode::Realtime));
    assert_eq!(req.profile.map(|p| p.handshake), Some(Handshake::TwoWay));
    let req = CreateSession::try_from(pb::CreateSessionRequest::default()).unwrap();
    assert!(req.clock.is_none() && req.profile.is_none());
    let err = CreateSession::try_from(pb::CreateSessionRequest { clock: 3, ..Default::default() }).unwrap_err();
    assert_eq!(invalid_field(&err), "clock");
    let err = CreateSession::try_from(pb::CreateSessionRequest {
        profile: Some(pb::Profile { handshake: -1, ..Default::default() }),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(invalid_field(&err), "profile.handshake");
}

// ----- errors -----

#[test]
fn every_service_error_has_its_grpc_code_and_display_message() {
    let cases = [
        (Error::invalid("profile.mss", "too small"), Code::InvalidArgument),
        (Error::not_found("session", 9), Code::NotFound),
        (Error::AlreadyExists("host `A` already exists".into()), Code::AlreadyExists),
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
fn a_required_side_refuses_unspecified_and_unknown_numbers() {
    assert_eq!(parse_side(pb::Side::Client.into()).unwrap(), Side::Client);
    assert_eq!(parse_side(pb::Side::Server.into()).unwrap(), Side::Server);
    let unspecified = parse_side(pb::Side::Unspecified.into()).unwrap_err();
    assert_eq!(invalid_field(&unspecified), "side");
    assert!(unspecified.to_string().contains("SIDE_CLIENT"), "{unspecified}");
    assert_eq!(invalid_field(&parse_side(7).unwrap_err()), "side");
}

#[test]
fn send_carries_the_exact_bytes() {
    let data = vec![0u8, 0xff, b'h', b'i', 0x80];
    let req = SendData::try_from(pb::SendRequest {
        session_id: 1,
        connection_id: 2,
        side: pb::Side::Server.into(),
        data: data.clone(),
    })
    .unwrap();
    assert_eq!(req.side, Side::Server);
    assert_eq!(req.into_bytes().unwrap(), data);
    let err = SendData::try_from(pb::SendRequest::default()).unwrap_err();
    assert_eq!(invalid_field(&err), "side");
}

#[test]
fn fault_match_flags_follow_match_flags() {
    let exact_none = FaultMatch::try_from(pb::FaultMatch { match_flags: true, ..Default::default() }).unwrap();
    assert_eq!(exact_none.flags, Some(Flags::NONE));
    let any = FaultMatch::try_from(pb::FaultMatch::default()).unwrap();
    assert_eq!(any.flags, None);
    let ack = FaultMatch::try_from(pb::FaultMatch { flags: vec![pb::Flag::Ack.into()], ..Default::default() }).unwrap();
    assert_eq!(ack.flags, Some(Flags::ACK));
    let any_order = vec![pb::Flag::Syn.into(), pb::Flag::Fin.into(), pb::Flag::Ack.into()];
    let m = FaultMatch::try_from(pb::FaultMatch { flags: any_order, ..Default::default() }).unwrap();
    assert_eq!(m.flags, Some(Flags::ACK | Flags::SYN | Flags::FIN));
    assert_eq!(
        pb::FaultMatch::from(m).flags().collect::<Vec<_>>(),
        [pb::Flag::Ack, pb::Flag::Syn, pb::Flag::Fin].into_iter().collect::<Vec<_>>(),
        "header order"
    );
    for bad in [pb::Flag::Unspecified.into(), 42] {
        let err = FaultMatch::try_from(pb::FaultMatch { flags: vec![bad], ..Default::default() }).unwrap_err();
        assert_eq!(invalid_field(&err), "match.flags");
    }
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
            flags: vec![pb::Flag::Syn.into()],
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
fn add_fault_converts_its_hosts_match_and_action() {
    let req = AddFault::try_from(pb::AddFaultRequest {
        session_id: 1,
        src: Some("A".into()),
        dst: Some("B".into()),
        r#match: Some(pb::FaultMatch { flags: vec![pb::Flag::Syn.into()], ..Default::default() }),
        action: pb::FaultAction::Drop.into(),
        count: Some(1),
        ..Default::default()
    })
    .unwrap();
    assert_eq!((req.from.as_deref(), req.to.as_deref()), (Some("A"), Some("B")));
    assert_eq!(req.matcher.and_then(|m| m.flags), Some(Flags::SYN));
    assert_eq!(req.count, Some(1));
    assert_eq!(req.action, crate::sim::FaultAction::Drop);
    for action in [pb::FaultAction::Unspecified.into(), 99] {
        let err = AddFault::try_from(pb::AddFaultRequest { action, ..Default::default() }).unwrap_err();
        assert_eq!(invalid_field(&err), "action");
    }
}

#[test]
fn a_clock_call_needs_an_action() {
    let req = ClockRequest::try_from(pb::ClockRequest {
        action: pb::ClockAction::RunUntilIdle.into(),
        max_events: Some(5),
        ..Default::default()
    })
    .unwrap();
    assert_eq!((req.action, req.max_events), (ClockAction::RunUntilIdle, Some(5)));
    let err = ClockRequest::try_from(pb::ClockRequest::default()).unwrap_err();
    assert_eq!(invalid_field(&err), "action");
    assert!(err.to_string().contains("CLOCK_ACTION_RUN_UNTIL_IDLE"), "{err}");
}

#[test]
fn inject_converts_endpoints_payload_and_options() {
    let req = Inject::try_from(pb::InjectRequest {
        session_id: 1,
        src: "A".into(),
        src_port: 4000,
        dst: "B".into(),
        dst_port: 80,
        flags: vec![pb::Flag::Syn.into()],
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
    let q = EventQuery::try_from(pb::ListEventsRequest {
        session_id: 1,
        after_seq: Some(3),
        limit: None,
        kinds: vec![pb::EventKind::StateChanged.into(), pb::EventKind::SegmentSent.into()],
        connection: Some(2),
    })
    .unwrap();
    assert_eq!(q.kind.as_deref(), Some("state_changed,segment_sent"));
    assert_eq!((q.after_seq, q.connection), (Some(3), Some(2)));
    assert_eq!(kinds_filter(&[]).unwrap(), None);
    assert_eq!(invalid_field(&kinds_filter(&[pb::EventKind::Unspecified.into()]).unwrap_err()), "kinds");
    let known = crate::sim::EventKind::NAMES.len() as i32;
    assert_eq!(invalid_field(&kinds_filter(&[known + 1]).unwrap_err()), "kinds");
    // Every kind the proto names is one the service knows, and the other way round.
    let every: Vec<i32> = (1..=known).collect();
    let names = kinds_filter(&every).unwrap().unwrap();
    assert_eq!(names.split(',').collect::<Vec<_>>(), crate::sim::EventKind::NAMES);
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
        timers: Timers {
            retransmit: Some(1_000_000),
            time_wait: None,
            persist: None,
            delayed_ack: Some(40_000_000),
            keepalive: None,
        },
        rto_ns: 1_000_000_000,
        srtt_ns: None,
        retries: 1,
        error: Some(ConnError::Reset),
        cwnd: 4380,
        ssthresh: Some(2920),
        flight_size: 5,
        cc_phase: CcPhase::FastRecovery,
        dup_acks: 3,
        recovery_point: Some(106),
        recv_buffer_size: 65_700,
        send_buffer_size: 4_194_304,
        sack_permitted: true,
        nodelay: true,
        snd_wscale: Some(7),
        rcv_wscale: Some(6),
        timestamps: true,
        ts_recent: Some(12345),
        sack_blocks: vec![SeqRange { start: 400, end: 500 }, SeqRange { start: 200, end: 300 }],
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
    assert_eq!((end.host.as_str(), end.side(), end.state()), ("A", pb::Side::Client, pb::State::Established));
    assert_eq!((end.iss, end.irs, end.snd_una, end.snd_nxt, end.rcv_nxt), (100, 300, 101, 106, 301));
    assert_eq!((end.snd_wnd, end.rcv_wnd, end.send_buffered, end.recv_buffered), (65_535, 65_000, 5, 2));
    assert_eq!((end.local_port, end.remote_ip.as_str(), end.remote_port), (4000, "10.0.0.2", 80));
    assert_eq!(end.error(), pb::ConnError::Econnreset);
    assert_eq!(end.timers.unwrap().retransmit, Some(1_000_000));
    assert_eq!((end.received_bytes, end.rto_ns, end.retries), (7, 1_000_000_000, 1));
    assert_eq!(
        (end.cwnd, end.ssthresh, end.flight_size, end.cc_phase()),
        (4380, Some(2920), 5, pb::CcPhase::FastRecovery)
    );
    assert_eq!((end.dup_acks, end.recovery_point), (3, Some(106)));
    assert_eq!((end.recv_buffer_size, end.send_buffer_size), (65_700, 4_194_304));
    assert_eq!(end.timers.unwrap().delayed_ack, Some(40_000_000));
    assert!(end.sack_permitted && end.nodelay && end.timestamps);
    assert_eq!((end.snd_wscale, end.rcv_wscale, end.ts_recent), (Some(7), Some(6), Some(12345)));
    let blocks: Vec<(u32, u32)> = end.sack_blocks.iter().map(|r| (r.start, r.end)).collect();
    assert_eq!(blocks, [(400, 500), (200, 300)]);
}

#[test]
fn sessions_carry_their_clock_status_profile_and_states() {
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
        states: BTreeMap::from([("ESTABLISHED".to_string(), 2), ("CLOSED".to_string(), 1)]),
        events: 12,
    });
    assert_eq!((s.clock(), s.status()), (pb::ClockMode::Realtime, pb::SessionStatus::Live));
    let states: Vec<(pb::State, u64)> = s.states.iter().map(|c| (c.state(), c.count)).collect();
    assert_eq!(states, [(pb::State::Closed, 1), (pb::State::Established, 2)], "in RFC 9293's order");
    let profile = Profile::try_from(s.profile.expect("the profile")).unwrap();
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
    assert_eq!((r.side(), r.bytes, r.data.as_slice()), (pb::Side::Server, 4, &data[..]));
}

#[test]
fn faults_and_listeners_convert() {
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
    let m = f.r#match.clone().unwrap();
    assert!(m.match_flags && m.flags.is_empty());
    assert_eq!((m.seq_from, m.seq_to), (Some(1), Some(2)));
    assert_eq!(
        (f.id, f.src.as_deref(), f.dst.as_deref(), f.action(), f.held),
        (2, None, Some("B"), pb::FaultAction::Hold, 2)
    );
    let l = pb::Listener::from(ListenerInfo {
        id: 1,
        host: "B".into(),
        port: 80,
        state: State::Listen,
        backlog: Some(2),
        pending: 1,
    });
    assert_eq!((l.port, l.state(), l.backlog, l.pending), (80, pb::State::Listen, Some(2), 1));
}

#[test]
fn events_keep_their_json() {
    let body = r#"{"seq":4,"t_ns":99,"kind":"state_changed","connection":1,"host":"A","side":"client","from":"SYN_SENT","to":"ESTABLISHED","cause":{"kind":"segment","flags":["ACK","SYN"],"seq":300,"ack":101,"len":0},"rfc":"3.10.7.3"}"#;
    let live = LiveEvent::stored(body.to_owned()).expect("an event");
    let e = pb::Event::from(&live);
    assert_eq!(
        (e.seq, e.t_ns, e.kind(), e.connection, e.json.as_str()),
        (4, 99, pb::EventKind::StateChanged, Some(1), body)
    );
    let Some(pb::event::Payload::StateChange(change)) = e.payload else { panic!("a state change: {e:?}") };
    assert_eq!(
        (change.host.as_str(), change.side(), change.from_state(), change.to_state()),
        ("A", pb::Side::Client, pb::State::SynSent, pb::State::Established)
    );
    assert_eq!((change.rfc.as_str(), change.listener), ("3.10.7.3", None));
    let cause = pb::cause::Cause::Segment(pb::SegmentSummary {
        flags: vec![pb::Flag::Ack.into(), pb::Flag::Syn.into()],
        seq: 300,
        ack: 101,
        len: 0,
    });
    assert_eq!(change.cause.and_then(|c| c.cause), Some(cause));
    let page = EventPage { events: vec![live.event.clone()], next_after_seq: 4 };
    let e = pb::ListEventsResponse::from(page).events.remove(0);
    assert_eq!((e.seq, e.t_ns, e.kind(), e.connection, e.durable), (4, 99, pb::EventKind::StateChanged, Some(1), true));
    assert_eq!(e.json, body, "a page's event is the stored JSON, byte for byte");
}

/// Each kind's payload is read from the event's own fields.
#[test]
fn every_event_kind_has_its_typed_payload() {
    use pb::event::Payload;
    let segment = r#""segment":{"id":3,"from":"B","to":"A","src_port":80,"dst_port":4000,"seq":500,"ack":301,"flags":["ACK","SYN"],"window":65535,"checksum":0,"urgent":0,"options":[],"len":2,"payload_base64":"AAE=","retransmission":true,"injected":false}"#;
    let event = |rest: &str| {
        let live = LiveEvent::stored(format!(r#"{{"seq":9,"t_ns":5,{rest}}}"#)).expect("an event");
        pb::Event::from(&live)
    };
    let seg = |e: pb::Event| match e.payload {
        Some(Payload::Segment(s)) => s,
        other => panic!("a segment payload: {other:?}"),
    };
    let sent = event(&format!(r#""kind":"segment_sent","connection":1,{segment}"#));
    assert_eq!((sent.kind(), sent.connection), (pb::EventKind::SegmentSent, Some(1)));
    let s = seg(sent);
    assert_eq!((s.id, s.src.as_str(), s.dst.as_str(), s.src_port, s.dst_port), (3, "B", "A", 80, 4000));
    assert_eq!((s.seq, s.ack, s.window, s.len, s.retransmission, s.injected), (500, 301, 65535, 2, true, false));
    assert_eq!(s.flags().collect::<Vec<_>>(), [pb::Flag::Ack, pb::Flag::Syn].into_iter().collect::<Vec<_>>());
    assert_eq!((s.drop_reason(), s.fault_id, s.delay_ns), (pb::DropReason::Unspecified, None, None));
    let dropped = seg(event(&format!(r#""kind":"segment_dropped","reason":"fault","fault":2,{segment}"#)));
    assert_eq!((dropped.drop_reason(), dropped.fault_id), (pb::DropReason::Fault, Some(2)));
    let delayed = seg(event(&format!(r#""kind":"segment_delayed","fault":4,"delay_ns":7000,{segment}"#)));
    assert_eq!((delayed.fault_id, delayed.delay_ns), (Some(4), Some(7000)));
    let held = event(&format!(r#""kind":"segment_held","fault":5,{segment}"#));
    assert_eq!((held.kind(), seg(held).fault_id), (pb::EventKind::SegmentHeld, Some(5)));
    let timer = event(r#""kind":"timer_fired","connection":1,"host":"A","side":"client","timer":"retransmit""#);
    let Some(Payload::Timer(t)) = timer.payload else { panic!("a timer payload") };
    assert_eq!((t.host.as_str(), t.side(), t.timer()), ("A", pb::Side::Client, pb::TimerKind::Retransmit));
    let error = event(r#""kind":"connection_error","connection":1,"host":"B","side":"server","error":"ECONNREFUSED""#);
    let Some(Payload::Error(err)) = error.payload else { panic!("an error payload") };
    assert_eq!((err.host.as_str(), err.side(), err.error()), ("B", pb::Side::Server, pb::ConnError::Econnrefused));
    let listener = event(
        r#""kind":"state_changed","listener":1,"host":"B","from":"CLOSED","to":"LISTEN","cause":{"kind":"user","call":"OPEN"},"rfc":"3.10.1""#,
    );
    let Some(Payload::StateChange(change)) = listener.payload else { panic!("a state change") };
    assert_eq!(
        (change.side(), change.listener, change.to_state()),
        (pb::Side::Unspecified, Some(1), pb::State::Listen)
    );
    assert_eq!(change.cause.and_then(|c| c.cause), Some(pb::cause::Cause::UserCall(pb::UserCall::Open.into())));
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
    assert_eq!((s.id, s.src.as_str(), s.dst.as_str(), s.src_port, s.dst_port), (8, "A", "B", 4000, 80));
    assert_eq!((s.seq, s.ack, s.window, s.len, s.flags.clone()), (100, 0, 65535, 0, vec![pb::Flag::Syn.into()]));
    assert_eq!((s.fate(), s.reason(), s.sent_ns), (pb::Fate::Lost, pb::DropReason::Loss, 5));
    assert_eq!((s.fates().collect::<Vec<_>>(), s.retransmission, s.injected), (vec![pb::Fate::Lost], false, false));
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
    let item = stream_item(StreamItem::Event { event: Arc::new(live), durable: true }).expect("an item").unwrap();
    let Some(pb::watch_events_response::Item::Event(e)) = item.item else { panic!("an event: {item:?}") };
    assert_eq!((e.seq, e.durable, e.kind()), (42, true, pb::EventKind::TimerFired));
    let item = stream_item(StreamItem::CaughtUp { last_seq: 42 }).expect("an item").unwrap();
    assert_eq!(item.item, Some(pb::watch_events_response::Item::CaughtUp(pb::CaughtUp { last_seq: 42 })));
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
                profile: Some(pb::Profile { isn: Some(pb::profile::Isn::FixedIsn(1000)), ..Default::default() }),
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner();
        let sid = session.id;
        assert_eq!((session.clock(), session.status()), (pb::ClockMode::Manual, pb::SessionStatus::Live));
        for (name, ip) in [("A", "10.0.0.1"), ("B", "10.0.0.2")] {
            lab.add_host(pb::AddHostRequest {
                session_id: sid,
                name: name.into(),
                ip: ip.into(),
                ..Default::default()
            })
            .await
            .expect("add host");
        }
        lab.add_listener(pb::AddListenerRequest {
            session_id: sid,
            host: "B".into(),
            port: 80,
            isn: Some(5000),
            backlog: None,
            nodelay: None,
            keepalive: None,
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
        let idle =
            pb::ClockRequest { session_id: sid, action: pb::ClockAction::RunUntilIdle.into(), ..Default::default() };
        lab.clock(idle).await.expect("run");
        let data = vec![0u8, 1, 2, 255];
        let sent = lab
            .send(pb::SendRequest {
                session_id: sid,
                connection_id: conn.id,
                side: pb::Side::Client.into(),
                data: data.clone(),
            })
            .await
            .expect("send")
            .into_inner();
        assert_eq!(sent.accepted, 4);
        lab.clock(idle).await.expect("run");
        let got = lab
            .get_received(pb::SideRequest { session_id: sid, connection_id: conn.id, side: pb::Side::Server.into() })
            .await
            .expect("received")
            .into_inner();
        assert_eq!(got.data, data);
        let c = lab
            .get_connection(pb::ConnectionRef { session_id: sid, connection_id: conn.id })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(c.client.map(|e| e.state()), Some(pb::State::Established));

        // Errors keep their codes and name the field as the proto spells it.
        let err =
            lab.close(pb::CloseRequest { session_id: sid, connection_id: conn.id, side: 5, how: 0 }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with("side: "), "{}", err.message());
        let err = lab
            .close(pb::CloseRequest { session_id: sid, connection_id: conn.id, side: pb::Side::Client.into(), how: 9 })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with("how: "), "{}", err.message());
        let err = lab.get_session(pb::SessionRef { session_id: 999 }).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = lab
            .list_events(pb::ListEventsRequest { session_id: sid, kinds: vec![0], ..Default::default() })
            .await
            .unwrap_err();
        assert!(err.message().starts_with("kinds: "), "{}", err.message());

        // Stored events replay, in order, from after_seq; then the marker.
        let stored = lab.get_session(pb::SessionRef { session_id: sid }).await.expect("get").into_inner().events;
        let mut watch = lab
            .watch_events(pb::WatchEventsRequest {
                session_id: sid,
                after_seq: 0,
                caught_up: true,
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        let mut seqs = Vec::new();
        let caught_up = loop {
            let item = tokio::time::timeout(Duration::from_secs(10), watch.message())
                .await
                .expect("an event in time")
                .expect("stream ok")
                .expect("not ended");
            match item.item.expect("an item") {
                pb::watch_events_response::Item::Event(e) => seqs.push(e.seq),
                pb::watch_events_response::Item::CaughtUp(c) => break c.last_seq,
            }
        };
        assert_eq!(seqs, (1..=stored).collect::<Vec<_>>());
        assert_eq!(caught_up, stored);
        let listed = lab
            .list_events(pb::ListEventsRequest { session_id: sid, limit: Some(3), ..Default::default() })
            .await
            .expect("events")
            .into_inner();
        assert_eq!(listed.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        let segments = lab.list_segments(pb::SessionRef { session_id: sid }).await.expect("segments").into_inner();
        assert_eq!(segments.segments.first().map(|s| s.flags().collect::<Vec<_>>()), Some(vec![pb::Flag::Syn]));

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
            let host = pb::AddHostRequest { session_id: sid, name: name.into(), ip: ip.into(), ..Default::default() };
            lab.add_host(host).await.expect("add host");
        }
        let listen = pb::AddListenerRequest {
            session_id: sid,
            host: "B".into(),
            port: 80,
            isn: None,
            backlog: None,
            nodelay: None,
            keepalive: None,
        };
        lab.add_listener(listen).await.expect("listen");
        let open = pb::OpenConnectionRequest {
            session_id: sid,
            client: "A".into(),
            server: "B".into(),
            port: 80,
            ..Default::default()
        };
        let cid = lab.open_connection(open).await.expect("connect").into_inner().id;
        let idle =
            pb::ClockRequest { session_id: sid, action: pb::ClockAction::RunUntilIdle.into(), ..Default::default() };
        lab.clock(idle).await.expect("run");
        let start_seq = lab.get_session(pb::SessionRef { session_id: sid }).await.expect("get").into_inner().events;

        // A second connection, so the watcher's HTTP/2 flow control is its own.
        let mut watcher = LabServiceClient::new(channel(&url).await);
        let watch = pb::WatchEventsRequest { session_id: sid, after_seq: start_seq, ..Default::default() };
        let mut stream = watcher.watch_events(watch).await.expect("watch").into_inner();
        for _ in 0..1500 {
            let send = pb::SendRequest {
                session_id: sid,
                connection_id: cid,
                side: pb::Side::Client.into(),
                data: vec![b'x'; 100],
            };
            lab.send(send).await.expect("send");
            lab.clock(idle).await.expect("run");
        }
        let mut last = start_seq;
        let status = loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("in time") {
                Ok(Some(pb::WatchEventsResponse { item: Some(pb::watch_events_response::Item::Event(event)) })) => {
                    assert!(event.seq > last);
                    last = event.seq;
                }
                Ok(Some(other)) => panic!("only events without caught_up: {other:?}"),
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
        let next = next.expect("ok").and_then(|m| m.item);
        assert!(matches!(next, Some(pb::watch_events_response::Item::Event(ref e)) if e.seq == last + 1), "{next:?}");

        service.shutdown().await.expect("service shutdown");
        drop((lab, watcher, stream));
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("server stops").expect("join");
    }
}
