//! Idle expiry of realtime sessions ([`super::expire_idle_sessions`]), on
//! real time with a one-second limit: an untouched realtime session ends and
//! is stored as ended; API calls or an open event stream keep one alive;
//! manual sessions never expire.

use std::time::{Duration, Instant};

use super::model::{ClockMode, CreateSession};
use super::{LabService, Limits};
use crate::store::Store;

async fn service(idle_timeout_s: u64) -> (LabService, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("lab.db")).await.expect("open store");
    let limits = Limits { idle_timeout_s, ..Limits::default() };
    (LabService::new(store, limits).await.expect("service"), dir)
}

async fn session(svc: &LabService, clock: ClockMode) -> u64 {
    let req = CreateSession { name: Some("idle".into()), clock: Some(clock), ..CreateSession::default() };
    svc.create_session(req).await.expect("create").id
}

async fn status(svc: &LabService, sid: u64) -> String {
    svc.get_session(sid).await.expect("get").status
}

/// Polls (without touching the sessions: `list_sessions` reads the table and
/// the store) until `sid` has ended, at most `within`.
async fn ended_within(svc: &LabService, sid: u64, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        let list = svc.list_sessions(super::model::Page::default()).await.expect("list");
        if list.sessions.iter().any(|s| s.id == sid && s.status == "ended") {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn an_idle_realtime_session_is_ended_and_stored_as_ended() {
    let (svc, _dir) = service(1).await;
    let idle = session(&svc, ClockMode::Realtime).await;
    let manual = session(&svc, ClockMode::Manual).await;
    let took = ended_within(&svc, idle, Duration::from_secs(5)).await.expect("the idle session ends");
    // At least the limit, at most the limit plus the one-second check period (and slack).
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(3_500), "{took:?}");
    assert_eq!(status(&svc, idle).await, "ended");
    let stored = svc.store().get_session(idle as i64).await.expect("store").expect("stored");
    assert!(stored.ended_at.is_some(), "stored as ended");
    // A manual session does not expire: nothing runs in it unless told.
    assert_eq!(status(&svc, manual).await, "live");
    svc.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn api_calls_and_subscribers_keep_a_realtime_session_alive() {
    let (svc, _dir) = service(1).await;
    let busy = session(&svc, ClockMode::Realtime).await;
    let watched = session(&svc, ClockMode::Realtime).await;
    let subscription = svc.subscribe(watched, 0, None, None, false).await.expect("subscribe");
    // 2.5 s, several times the limit: calls every 300 ms keep `busy` alive.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2_500) {
        assert_eq!(status(&svc, busy).await, "live", "after {:?}", start.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let list = svc.list_sessions(super::model::Page::default()).await.expect("list");
    assert!(list.sessions.iter().any(|s| s.id == watched && s.status == "live"), "a watched session stays live");
    // Once the subscriber leaves, the watched session expires too.
    drop(subscription);
    ended_within(&svc, watched, Duration::from_secs(5)).await.expect("ends once nobody watches");
    svc.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn zero_means_never() {
    let (svc, _dir) = service(0).await;
    let sid = session(&svc, ClockMode::Realtime).await;
    assert!(ended_within(&svc, sid, Duration::from_millis(2_300)).await.is_none());
    svc.shutdown().await.expect("shutdown");
}
