//! Sessions: create, read, list and end them, and the shipped profiles they
//! can start from. A session's actor is started here; a stored session is
//! rebuilt from its spec.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use super::calendar::now_rfc3339;
use super::model::*;
use super::session::{self, SessionHandle, SessionState};
use super::{Error, LabService};
use crate::sim::{World, WorldConfig};
use crate::store::EventFilter;

impl LabService {
    /// Creates a session: a new world with its own clock and seed.
    ///
    /// # Errors
    /// Bad values, or the session limit.
    pub async fn create_session(&self, req: CreateSession) -> Result<SessionInfo, Error> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(Error::Unavailable);
        }
        let limits = &self.inner.limits;
        let live = self.inner.sessions.read().map(|s| s.len()).unwrap_or(0);
        if live >= limits.max_sessions {
            return Err(Error::LimitExceeded { limit: "max_sessions", max: limits.max_sessions as u64 });
        }
        let name = req.name.unwrap_or_default();
        if name.len() > 200 {
            return Err(Error::invalid("name", "at most 200 characters"));
        }
        let speed = req.speed.unwrap_or(1.0);
        if !speed.is_finite() || speed <= 0.0 || speed > 1e6 {
            return Err(Error::invalid("speed", format!("must be > 0 and at most 1000000, got {speed}")));
        }
        let clock = req.clock.unwrap_or_default();
        let seed = req.seed.unwrap_or(0);
        let profile = req.profile.unwrap_or_default();
        profile.validate().map_err(|e| Error::invalid(format!("profile.{}", e.field), e.message))?;
        if profile.send_buffer > limits.max_buffered_bytes {
            return Err(Error::LimitExceeded {
                limit: "max_buffered_bytes",
                max: u64::from(limits.max_buffered_bytes),
            });
        }
        let world = World::new(WorldConfig { seed, profile: profile.clone(), ..WorldConfig::default() })?;
        let spec = SessionSpec { seed, clock, speed, profile, lab: None, variant: None };
        let id = self.start_session(name, spec, world).await?;
        self.get_session(id).await
    }

    /// Persists a new session and starts its actor around `world`; returns
    /// its id. Shared by [`Self::create_session`] and lab runs (whose spec
    /// names their lab and variant), so a lab's session is a session like any other.
    pub(super) async fn start_session(&self, name: String, spec: SessionSpec, world: World) -> Result<u64, Error> {
        let limits = &self.inner.limits;
        let created_at = now_rfc3339();
        let spec_json = serde_json::to_string(&spec).map_err(|e| Error::Internal(format!("session spec: {e}")))?;
        let SessionSpec { seed, clock, speed, profile, .. } = spec;
        let id = self.inner.store.create_session(&name, &spec_json, &created_at).await? as u64;
        let mut state = SessionState::new(
            id,
            name,
            seed,
            clock,
            speed,
            created_at,
            profile,
            world,
            limits.clone(),
            self.inner.writer.clone(),
        );
        state.segment_fates = self.inner.metrics.segment_fates();
        let subscribers = state.subscribers.clone();
        let published = state.published.clone();
        let (commands, commands_rx) = mpsc::channel(256);
        let (reads, reads_rx) = mpsc::channel(256);
        let task = tokio::spawn(session::run(state, commands_rx, reads_rx));
        let handle = Arc::new(SessionHandle {
            commands,
            reads,
            task,
            last_used: Arc::new(Mutex::new(Instant::now())),
            subscribers,
            published,
        });
        self.inner.sessions.write().map_err(|_| Error::Internal("session table poisoned".into()))?.insert(id, handle);
        Ok(id)
    }

    /// Changes settings of a running session's profile (`PATCH .../profile`,
    /// a `sysctl` mid-script): those a connection reads where it uses them
    /// ([`crate::profiles::RUNTIME_SETTINGS`]) apply at once to every
    /// listener and connection; the others only while none is open (they
    /// are fixed when one opens). Returns the session's profile after.
    ///
    /// # Errors
    /// Unknown session; an unknown setting, a bad value, or a fixed setting
    /// while endpoints are open (invalid, naming `profile.<key>`); a send
    /// buffer over the server's limit.
    pub async fn patch_profile(
        &self,
        sid: u64,
        settings: serde_json::Map<String, serde_json::Value>,
    ) -> Result<crate::engine::Profile, Error> {
        if settings.is_empty() {
            return Err(Error::invalid("profile", "name at least one setting to change"));
        }
        let max_buffered = self.inner.limits.max_buffered_bytes;
        let record = super::command::Command::PatchProfile { settings: settings.clone() };
        self.command(sid, record, move |s| {
            let next = crate::profiles::with_overrides(&s.profile, settings.clone())
                .map_err(|e| Error::invalid(e.field, e.message))?;
            if next.send_buffer > max_buffered {
                return Err(Error::LimitExceeded { limit: "max_buffered_bytes", max: u64::from(max_buffered) });
            }
            let profile = s.world.patch_profile(settings)?;
            s.profile = profile.clone();
            Ok(profile)
        })
        .await
    }

    /// One session, live or ended.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub async fn get_session(&self, sid: u64) -> Result<SessionInfo, Error> {
        if let Ok(handle) = self.handle(sid) {
            if let Ok(info) = handle.call(|s| Ok(live_info(s))).await {
                return Ok(info);
            }
        }
        let row = self.inner.store.get_session(sid as i64).await?.ok_or_else(|| Error::not_found("session", sid))?;
        self.ended_info(row).await
    }

    pub(super) async fn ended_info(&self, row: crate::store::SessionRow) -> Result<SessionInfo, Error> {
        let spec = session_spec(&row)?;
        let last = self
            .inner
            .store
            .events(row.id, &EventFilter { after_seq: (row.event_count - 1).max(0), limit: 1, ..Default::default() })
            .await?;
        Ok(SessionInfo {
            id: row.id as u64,
            name: row.name,
            seed: spec.seed,
            clock: spec.clock,
            speed: spec.speed,
            paused: false,
            status: row.status,
            now_ns: last.first().map_or(0, |e| e.t_ns as u64),
            created_at: row.created_at,
            ended_at: row.ended_at,
            profile: spec.profile,
            hosts: 0,
            connections: 0,
            states: BTreeMap::new(),
            events: row.event_count as u64,
        })
    }

    /// A page of sessions, live and ended, by id.
    ///
    /// # Errors
    /// Bad paging values.
    pub async fn list_sessions(&self, page: Page) -> Result<SessionList, Error> {
        let offset = page.offset.unwrap_or(0);
        let limit = page.limit.unwrap_or(100);
        if limit == 0 || limit > 1000 {
            return Err(Error::invalid("limit", "must be between 1 and 1000"));
        }
        if offset > i64::MAX as u64 {
            return Err(Error::invalid("offset", format!("must be at most {}", i64::MAX)));
        }
        let (rows, total) = self.inner.store.list_sessions(limit as i64, offset as i64).await?;
        let mut sessions = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.id as u64;
            // Listing every session is no use of each one: it must not keep them from expiring.
            let live = match self.handle(id) {
                Ok(handle) => handle.call_quietly(|s| Ok(live_info(s))).await.ok(),
                Err(_) => None,
            };
            match live {
                Some(info) => sessions.push(info),
                None => sessions.push(self.ended_info(row).await?),
            }
        }
        Ok(SessionList { sessions, total: total as u64, offset, limit })
    }

    /// Ends a session: its actor stops, its events are flushed; its history stays.
    ///
    /// # Errors
    /// [`Error::NotFound`], or already ended.
    pub async fn end_session(&self, sid: u64) -> Result<SessionInfo, Error> {
        let handle = {
            let mut sessions =
                self.inner.sessions.write().map_err(|_| Error::Internal("session table poisoned".into()))?;
            sessions.remove(&sid)
        };
        let Some(handle) = handle else {
            return match self.inner.store.get_session(sid as i64).await? {
                Some(_) => Err(Error::FailedPrecondition(format!("session {sid} has already ended"))),
                None => Err(Error::not_found("session", sid)),
            };
        };
        self.stop(handle, sid).await;
        self.get_session(sid).await
    }

    /// The shipped behaviour profiles with every setting.
    ///
    /// # Errors
    /// [`Error::Internal`] if an embedded profile does not parse (the tests catch it).
    pub fn list_profiles(&self) -> Result<ProfileList, Error> {
        use crate::profiles::{DEFAULT_PROFILE, named_profile, profile_description, profile_names};
        let profiles = profile_names()
            .into_iter()
            .map(|name| {
                Ok(ProfileInfo {
                    name: name.to_string(),
                    description: profile_description(name).unwrap_or_default().to_string(),
                    default: name == DEFAULT_PROFILE,
                    settings: named_profile(name).map_err(|e| Error::Internal(e.to_string()))?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(ProfileList { profiles })
    }
}

pub(super) fn live_info(s: &SessionState) -> SessionInfo {
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let connections = s.world.connections();
    for conn in &connections {
        for end in [&conn.client, &conn.server].into_iter().flatten() {
            *states.entry(end.state.name().to_string()).or_default() += 1;
        }
    }
    SessionInfo {
        id: s.id,
        name: s.name.clone(),
        seed: s.seed,
        clock: s.clock,
        speed: s.speed,
        paused: s.paused,
        status: "live".into(),
        now_ns: s.world.now().as_nanos(),
        created_at: s.created_at.clone(),
        ended_at: None,
        profile: s.profile.clone(),
        hosts: s.world.hosts().count(),
        connections: connections.len(),
        states,
        events: s.world.next_event_seq() - 1,
    }
}

/// A stored session's spec, read back into the type it was written from.
///
/// # Errors
/// A spec that does not read back (a bug, named by the session).
pub(super) fn session_spec(row: &crate::store::SessionRow) -> Result<SessionSpec, Error> {
    serde_json::from_str(&row.spec).map_err(|e| Error::Internal(format!("session {}: stored spec: {e}", row.id)))
}
