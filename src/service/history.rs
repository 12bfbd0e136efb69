//! A session's history as SQLite holds it: event pages, segments with their
//! fates, the pcap capture, and live event streams that continue the
//! stored ones.

use std::net::Ipv4Addr;

use rustc_hash::FxHashMap;

use super::command::Command;
use super::model::*;
use super::parse::parse_kinds;
use super::sessions::session_spec;
use super::{Error, LabService, Subscription, stream};
use crate::sim::{Event, EventKind, Fate, SegmentOutcome};
use crate::store::EventFilter;

impl LabService {
    /// A page of a session's events from SQLite (live sessions are flushed first).
    ///
    /// # Errors
    /// Unknown session, bad filter values.
    pub async fn events(&self, sid: u64, q: EventQuery) -> Result<EventPage, Error> {
        let limit = q.limit.unwrap_or(1000);
        if limit == 0 || limit > 10_000 {
            return Err(Error::invalid("limit", "must be between 1 and 10000"));
        }
        let kinds = parse_kinds(q.kind.as_deref())?;
        self.stored_up_to_now(sid).await?;
        let after = q.after_seq.unwrap_or(0);
        let rows = self
            .inner
            .store
            .events(
                sid as i64,
                &EventFilter {
                    after_seq: after.min(i64::MAX as u64) as i64,
                    limit: limit as i64,
                    kinds,
                    connection: q.connection.map(|c| c as i64),
                },
            )
            .await?;
        let next_after_seq = rows.last().map_or(after, |r| r.seq as u64);
        Ok(EventPage { events: typed_events(sid, rows)?, next_after_seq })
    }

    /// Waits until SQLite holds every event the session has logged so far:
    /// what the actor published is on its way to the writer. Readers of the
    /// history call it first, so that they read what happened, not a lag.
    ///
    /// # Errors
    /// Unknown session; the writer cannot commit.
    pub(super) async fn stored_up_to_now(&self, sid: u64) -> Result<(), Error> {
        self.require_session(sid).await?;
        if let Ok(handle) = self.handle(sid) {
            handle
                .call(|s| {
                    s.publish();
                    Ok(())
                })
                .await
                .ok();
            self.inner.writer.flush().await?;
        }
        Ok(())
    }

    /// One page of a session's stored events after `after`, of the given
    /// kinds, read back into the typed events they were written from (once
    /// what the actor published is in SQLite), and the seq to continue after.
    ///
    /// # Errors
    /// Unknown session; a stored row that does not read back (a bug, named
    /// by its seq).
    pub(super) async fn stored_events(&self, sid: u64, after: u64, kinds: &[&str]) -> Result<(Vec<Event>, u64), Error> {
        self.stored_up_to_now(sid).await?;
        let filter = EventFilter {
            after_seq: after.min(i64::MAX as u64) as i64,
            limit: 10_000,
            kinds: kinds.iter().map(|k| (*k).to_string()).collect(),
            connection: None,
        };
        let rows = self.inner.store.events(sid as i64, &filter).await?;
        let next = rows.last().map_or(after, |r| r.seq as u64);
        Ok((typed_events(sid, rows)?, next))
    }

    pub(super) async fn require_session(&self, sid: u64) -> Result<(), Error> {
        if self.handle(sid).is_ok() || self.inner.store.get_session(sid as i64).await?.is_some() {
            Ok(())
        } else {
            Err(Error::not_found("session", sid))
        }
    }

    /// Every segment of a session with its fate, from the event log.
    ///
    /// # Errors
    /// Unknown session.
    pub async fn segments(&self, sid: u64) -> Result<SegmentList, Error> {
        const KINDS: [&str; 7] = [
            "segment_sent",
            "segment_delivered",
            "segment_dropped",
            "segment_duplicated",
            "segment_held",
            "segment_released",
            "segment_delayed",
        ];
        let mut after = 0;
        let mut segments: Vec<SegmentInfo> = Vec::new();
        let mut outcomes: Vec<SegmentOutcome> = Vec::new();
        let mut index: FxHashMap<u64, usize> = FxHashMap::default();
        let max = self.inner.limits.max_report_events;
        let mut truncated = false;
        'pages: loop {
            let (events, next) = self.stored_events(sid, after, &KINDS).await?;
            if events.is_empty() {
                break;
            }
            after = next;
            for event in events {
                let t_ns = event.t_ns;
                if let EventKind::SegmentSent { segment, .. } = event.kind {
                    if segments.len() >= max {
                        // Bounded: the first `max` segments, their fates as far as read.
                        truncated = true;
                        break 'pages;
                    }
                    index.insert(segment.id, segments.len());
                    segments.push(SegmentInfo {
                        segment,
                        sent_ns: t_ns,
                        fate: Fate::InFlight,
                        fates: Vec::new(),
                        reason: None,
                    });
                    outcomes.push(SegmentOutcome::default());
                    continue;
                }
                let (Some(wire), Some((fate, reason))) = (event.kind.segment(), Fate::of(&event.kind)) else {
                    continue;
                };
                let Some(&i) = index.get(&wire.id) else { continue };
                segments[i].fates.push(fate);
                outcomes[i].record(fate, reason);
                segments[i].fate = outcomes[i].fate;
                segments[i].reason = outcomes[i].reason;
            }
        }
        Ok(SegmentList { segments, truncated })
    }

    /// The session's segments as a pcap file ([`crate::pcap`]): one packet per
    /// segment as sent (lost and dropped ones included), from the event log,
    /// so it works for ended sessions and after a restart too; at most
    /// `max_report_events` packets (the first ones).
    ///
    /// # Errors
    /// Unknown session; a host whose address cannot be found any more.
    pub async fn pcap(&self, sid: u64) -> Result<Capture, Error> {
        let max = self.inner.limits.max_report_events;
        let mut truncated = false;
        self.require_session(sid).await?;
        let hosts = self.host_addresses(sid).await?;
        let resolve = |name: &str| hosts.get(name).copied();
        let mut captured = Vec::new();
        let mut after = 0;
        'pages: loop {
            let (events, next) = self.stored_events(sid, after, &["segment_sent"]).await?;
            if events.is_empty() {
                break;
            }
            after = next;
            for event in &events {
                if !matches!(event.kind, EventKind::SegmentSent { .. }) {
                    continue;
                }
                if captured.len() >= max {
                    // Bounded: the first `max` packets.
                    truncated = true;
                    break 'pages;
                }
                match crate::pcap::from_events(std::iter::once(event), resolve) {
                    Ok(one) => captured.extend(one),
                    Err(e @ crate::pcap::PcapError::UnknownHost(_)) => {
                        return Err(Error::FailedPrecondition(format!("cannot build the capture: {e}")));
                    }
                    Err(e) => return Err(Error::Internal(format!("pcap of session {sid}: {e}"))),
                }
            }
        }
        let pcap = crate::pcap::build(&captured).map_err(|e| Error::Internal(format!("pcap of session {sid}: {e}")))?;
        Ok(Capture { pcap, packets: captured.len() as u64, truncated })
    }

    /// Every host name of a session with its address: from the live world,
    /// or for an ended session from its stored `add_host` commands and (for a
    /// lab run) the built-in lab's hosts.
    pub(super) async fn host_addresses(&self, sid: u64) -> Result<FxHashMap<String, Ipv4Addr>, Error> {
        let mut hosts = FxHashMap::default();
        if let Ok(handle) = self.handle(sid) {
            let live: Result<Vec<(String, Ipv4Addr)>, Error> =
                handle.call(|s| Ok(s.world.hosts().map(|(name, ip, _)| (name.to_string(), ip)).collect())).await;
            if let Ok(live) = live {
                hosts.extend(live);
                return Ok(hosts);
            }
        }
        if let Some(row) = self.inner.store.get_session(sid as i64).await? {
            let spec = session_spec(&row)?;
            if let Some(lab) = spec.lab.as_deref().and_then(|name| crate::lab::builtin_lab(name).ok()) {
                hosts.extend(lab.hosts.iter().map(|h| (h.name.clone(), h.ip)));
            }
        }
        let mut after = 0;
        loop {
            let rows = self.inner.store.commands(sid as i64, after, 1000).await?;
            let Some(last) = rows.last() else { break };
            after = last.seq;
            for row in &rows {
                let command: Command = serde_json::from_str(&row.body).map_err(|e| {
                    Error::Internal(format!("session {sid}: stored command {} does not read back: {e}", row.seq))
                })?;
                // A refused add_host is logged too (the log is what was asked):
                // only a well-formed address can have made a host.
                if let Command::AddHost { args } = command
                    && let Ok(ip) = args.ip.parse::<Ipv4Addr>()
                {
                    hosts.insert(args.name, ip);
                }
            }
        }
        Ok(hosts)
    }

    /// Opens an event stream: stored events after `after_seq`, then live
    /// ones, with no gap and no duplicate. With `durable_only`, an event is
    /// delivered once SQLite holds it (so every delivered event survives a
    /// crash); otherwise at once, each marked with whether it is durable yet.
    ///
    /// # Errors
    /// Unknown session, bad kinds, the subscriber limit.
    pub async fn subscribe(
        &self,
        sid: u64,
        after_seq: u64,
        kinds: Option<&str>,
        connection: Option<u64>,
        durable_only: bool,
    ) -> Result<Subscription, Error> {
        let kinds = parse_kinds(kinds)?;
        self.require_session(sid).await?;
        let live = match self.handle(sid) {
            Ok(handle) => {
                let subscribers = handle.subscribers.clone();
                let feed = handle.call(move |s| s.subscribe(after_seq)).await?;
                Some((feed, subscribers, self.inner.limits.broadcast_capacity))
            }
            Err(_) => None,
        };
        let filter = stream::StreamFilter { kinds, connection, durable_only };
        Ok(stream::open(self.inner.store.clone(), self.inner.writer.clone(), sid, after_seq, filter, live))
    }
}

/// Stored events read back into the typed events they were written from.
///
/// # Errors
/// A row that does not read back (a bug, named by its seq).
pub(super) fn typed_events(sid: u64, rows: Vec<crate::store::EventRow>) -> Result<Vec<Event>, Error> {
    rows.into_iter()
        .map(|row| {
            serde_json::from_str::<Event>(&row.body)
                .map_err(|e| Error::Internal(format!("session {sid} event {}: {e}", row.seq)))
        })
        .collect()
}
