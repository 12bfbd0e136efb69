//! The service's share of the server's metrics ([`crate::metrics`]): the
//! numbers only the service knows, read when `/metrics` is scraped.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Error, LabService};
use crate::metrics::{Metrics, Snapshot};

impl LabService {
    /// The server's metrics (latency histograms, segment fates), shared with
    /// the REST and gRPC middleware that record into them.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// What `/metrics` reports about sessions right now: live sessions,
    /// connection ends by state (one short job on each live session's
    /// actor), subscribers, events published and persisted.
    pub async fn metrics_snapshot(&self) -> Snapshot {
        let (sessions, subscribers, published, persisted) = self.counters();
        let handles: Vec<_> = match self.inner.sessions.read() {
            Ok(sessions) => sessions.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let mut states: BTreeMap<String, u64> = BTreeMap::new();
        for handle in handles {
            let counted: Result<Vec<&'static str>, Error> = handle
                .call(|s| {
                    Ok(s.world
                        .connections()
                        .iter()
                        .flat_map(|c| [c.client.as_ref(), c.server.as_ref()])
                        .flatten()
                        .map(|end| end.state.name())
                        .collect())
                })
                .await;
            // A session that ended meanwhile has nothing to count.
            for name in counted.unwrap_or_default() {
                *states.entry(name.to_string()).or_default() += 1;
            }
        }
        Snapshot {
            sessions: sessions as u64,
            connection_states: states,
            subscribers: subscribers as u64,
            events_published: published,
            events_persisted: persisted,
        }
    }
}
