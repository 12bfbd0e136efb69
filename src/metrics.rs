//! The server's Prometheus metrics: what a lab server's operator wants on a
//! dashboard (how many sessions and connections are live and in which
//! states, what the network did to segments, whether the store keeps up,
//! how many streams are open, how fast REST and gRPC answer).
//!
//! Two kinds of numbers, kept apart so neither costs the hot path much:
//! - counted as they happen: segment fates (one relaxed atomic add per
//!   segment event, in the session actor, [`SegmentFates`]) and request
//!   latencies (one histogram observation per request, in the transports'
//!   middleware, [`Metrics::observe_http`] and [`Metrics::observe_grpc`]);
//! - read at scrape time ([`Snapshot`]): live sessions, connection ends by
//!   state, subscribers, events published and persisted, which the service
//!   already knows.
//!
//! [`Metrics::render`] writes the OpenMetrics text exposition (Prometheus'
//! text format, as the `prometheus-client` crate encodes it), served as
//! `GET /metrics` by the REST router.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::sim::{DropReason, EventKind, Fate};

/// The media type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Segment fates in the order [`SegmentFates`] counts them, named as
/// `GET .../segments` names them ([`Fate`]; `sent` is every segment put on
/// a link, and `in_flight` is no event, so it is not counted).
pub const FATES: [&str; 9] = {
    let mut names = ["sent"; 9];
    let mut i = 1;
    while i < Fate::ALL.len() {
        names[i] = Fate::ALL[i].name();
        i += 1;
    }
    names
};

/// What happened to segments, across every session of this server, counted
/// by the session actors as they publish events.
#[derive(Debug, Default)]
pub struct SegmentFates {
    counts: [AtomicU64; FATES.len()],
    /// Drops by reason, in [`DropReason::ALL`] order (a `queue_full` is a
    /// loss by fate but its own reason here: congestion, not the link's `loss`).
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl SegmentFates {
    /// Counts one event if it is a segment event (others are ignored), by
    /// the one rule of [`Fate::of`].
    pub fn count(&self, kind: &EventKind) {
        if let EventKind::SegmentDropped { reason, .. } = kind {
            if let Some(i) = DropReason::ALL.iter().position(|r| r == reason) {
                self.drops[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        let slot = match (kind, Fate::of(kind)) {
            (EventKind::SegmentSent { .. }, _) => 0,
            // `Fate::ALL[0]` is `in_flight`, whose slot is `sent`'s.
            (_, Some((fate, _))) => Fate::ALL.iter().position(|f| *f == fate).unwrap_or(0),
            (_, None) => return,
        };
        if slot == 0 && !matches!(kind, EventKind::SegmentSent { .. }) {
            return;
        }
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Each drop reason's count so far, in [`DropReason::ALL`] order.
    pub fn drops(&self) -> [(&'static str, u64); DropReason::ALL.len()] {
        std::array::from_fn(|i| (DropReason::ALL[i].name(), self.drops[i].load(Ordering::Relaxed)))
    }

    /// Each fate's count so far, in [`FATES`] order.
    pub fn get(&self) -> [(&'static str, u64); FATES.len()] {
        std::array::from_fn(|i| (FATES[i], self.counts[i].load(Ordering::Relaxed)))
    }
}

/// The numbers read from the service at scrape time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Live sessions.
    pub sessions: u64,
    /// Connection ends of live sessions by RFC 9293 state name.
    pub connection_states: BTreeMap<String, u64>,
    /// Open event streams (SSE and WatchEvents).
    pub subscribers: u64,
    /// Events the sessions have published since the server started.
    pub events_published: u64,
    /// Events the store's writer has committed to SQLite since the server started.
    pub events_persisted: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FateLabels {
    fate: String,
}

/// `reason="queue_full"`, ...
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// Latency buckets: 50 µs to about 1.6 s, doubling (a manual-clock request
/// takes tens of microseconds; a long `run_until_idle` may take seconds).
#[derive(Clone)]
struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
    }
}

/// The server's metrics: request latency histograms and segment fates, plus
/// whatever [`Snapshot`] says at each scrape. One per server (shared by REST,
/// gRPC and the service), so tests running several servers in one process
/// see only their own.
pub struct Metrics {
    registry: Registry,
    http: Family<HttpLabels, Histogram, Buckets>,
    grpc: Family<GrpcLabels, Histogram, Buckets>,
    segments: std::sync::Arc<SegmentFates>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty metrics with the latency histograms registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tcplab");
        let http = Family::new_with_constructor(Buckets);
        let grpc = Family::new_with_constructor(Buckets);
        registry.register(
            "http_request_duration_seconds",
            "REST and dashboard request latency, by method, route template and status",
            http.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC call latency to the response headers (a stream's set-up), by method and status code",
            grpc.clone(),
        );
        Metrics { registry, http, grpc, segments: std::sync::Arc::default() }
    }

    /// The segment fate counters, for the session actors to count into.
    pub fn segment_fates(&self) -> std::sync::Arc<SegmentFates> {
        self.segments.clone()
    }

    /// Records one REST request. `route` is the route template
    /// (`/api/v1/sessions/{sid}`), never the raw path, so ids do not
    /// multiply the series.
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels = HttpLabels { method: method.to_string(), route: route.to_string(), status: status.to_string() };
        self.http.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Records one gRPC call: `method` as `/package.Service/Method`, `code`
    /// as the gRPC status code name (`OK`, `NOT_FOUND`, ...).
    pub fn observe_grpc(&self, method: &str, code: &str, elapsed: Duration) {
        let labels = GrpcLabels { method: method.to_string(), code: code.to_string() };
        self.grpc.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// The whole exposition: the snapshot's numbers, segment fates and the
    /// latency histograms, ending with `# EOF`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut now = Registry::with_prefix("tcplab");
        let sessions: Gauge = Gauge::default();
        sessions.set(snapshot.sessions as i64);
        now.register("sessions_live", "Live sessions (each one simulated world)", sessions);
        let states: Family<StateLabels, Gauge> = Family::default();
        for state in crate::engine::State::ALL {
            // Every state appears, 0 included, so a dashboard's series exist from the start.
            let n = snapshot.connection_states.get(state.name()).copied().unwrap_or(0);
            states.get_or_create(&StateLabels { state: state.name().to_string() }).set(n as i64);
        }
        now.register("connections", "Connection ends of live sessions, by RFC 9293 state", states);
        let fates: Family<FateLabels, Counter> = Family::default();
        for (fate, n) in self.segments.get() {
            fates.get_or_create(&FateLabels { fate: fate.to_string() }).inc_by(n);
        }
        now.register("segments", "Segments since start, by fate (sent, delivered, lost, dropped, ...)", fates);
        let drops: Family<ReasonLabels, Counter> = Family::default();
        for (reason, n) in self.segments.drops() {
            drops.get_or_create(&ReasonLabels { reason: reason.to_string() }).inc_by(n);
        }
        now.register(
            "segments_dropped",
            "Segments that never reached TCP since start, by reason (loss, queue_full, ...)",
            drops,
        );
        let published: Counter = Counter::default();
        published.inc_by(snapshot.events_published);
        now.register("events_published", "Events the sessions published since start", published);
        let persisted: Counter = Counter::default();
        persisted.inc_by(snapshot.events_persisted);
        now.register("events_persisted", "Events committed to SQLite since start", persisted);
        let subscribers: Gauge = Gauge::default();
        subscribers.set(snapshot.subscribers as i64);
        now.register("stream_subscribers", "Open event streams (SSE and gRPC WatchEvents)", subscribers);

        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &now);
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_eof(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::DropReason;

    /// The value of the sample line `name` (with its labels, as written).
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn snapshot_values_and_every_state_are_rendered() {
        let m = Metrics::new();
        let mut snapshot =
            Snapshot { sessions: 2, subscribers: 3, events_published: 40, events_persisted: 39, ..Default::default() };
        snapshot.connection_states.insert("ESTABLISHED".into(), 2);
        let text = m.render(&snapshot);
        assert_eq!(sample(&text, "tcplab_sessions_live"), Some(2.0));
        assert_eq!(sample(&text, "tcplab_stream_subscribers"), Some(3.0));
        assert_eq!(sample(&text, "tcplab_events_published_total"), Some(40.0));
        assert_eq!(sample(&text, "tcplab_events_persisted_total"), Some(39.0));
        assert_eq!(sample(&text, "tcplab_connections{state=\"ESTABLISHED\"}"), Some(2.0));
        assert_eq!(sample(&text, "tcplab_connections{state=\"TIME_WAIT\"}"), Some(0.0));
        assert_eq!(text.matches("tcplab_connections{").count(), 11, "all eleven states");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn segment_fates_count_by_kind_and_reason() {
        use crate::sim::WireSegment;
        let m = Metrics::new();
        let seg = WireSegment {
            id: 1,
            from: "A".into(),
            to: "B".into(),
            segment: crate::engine::Segment::default(),
            retransmission: false,
            injected: false,
        };
        let fates = m.segment_fates();
        fates.count(&EventKind::SegmentSent { connection: None, segment: seg.clone() });
        fates.count(&EventKind::SegmentSent { connection: None, segment: seg.clone() });
        fates.count(&EventKind::SegmentDropped { reason: DropReason::Loss, fault: None, segment: seg.clone() });
        fates.count(&EventKind::SegmentDropped { reason: DropReason::Fault, fault: Some(1), segment: seg.clone() });
        fates.count(&EventKind::SegmentDropped { reason: DropReason::QueueFull, fault: None, segment: seg.clone() });
        fates.count(&EventKind::SegmentDelivered { connection: None, segment: seg });
        let text = m.render(&Snapshot::default());
        assert_eq!(sample(&text, "tcplab_segments_dropped_total{reason=\"queue_full\"}"), Some(1.0));
        assert_eq!(sample(&text, "tcplab_segments_dropped_total{reason=\"loss\"}"), Some(1.0));
        assert_eq!(sample(&text, "tcplab_segments_dropped_total{reason=\"backlog\"}"), Some(0.0));
        assert_eq!(sample(&text, "tcplab_segments_total{fate=\"sent\"}"), Some(2.0));
        assert_eq!(sample(&text, "tcplab_segments_total{fate=\"lost\"}"), Some(2.0), "loss and queue_full");
        assert_eq!(sample(&text, "tcplab_segments_total{fate=\"dropped\"}"), Some(1.0));
        assert_eq!(sample(&text, "tcplab_segments_total{fate=\"delivered\"}"), Some(1.0));
        assert_eq!(sample(&text, "tcplab_segments_total{fate=\"corrupted\"}"), Some(0.0));
    }

    #[test]
    fn latencies_land_in_cumulative_buckets() {
        let m = Metrics::new();
        m.observe_http("GET", "/healthz", 200, Duration::from_micros(70));
        m.observe_http("GET", "/healthz", 200, Duration::from_millis(3));
        m.observe_grpc("/tcplab.v1.LabService/GetSession", "NOT_FOUND", Duration::from_micros(10));
        let text = m.render(&Snapshot::default());
        let h = "tcplab_http_request_duration_seconds";
        let labels = "method=\"GET\",route=\"/healthz\",status=\"200\"";
        assert_eq!(sample(&text, &format!("{h}_count{{{labels}}}")), Some(2.0));
        assert_eq!(sample(&text, &format!("{h}_bucket{{le=\"0.00005\",{labels}}}")), Some(0.0));
        assert_eq!(sample(&text, &format!("{h}_bucket{{le=\"0.0001\",{labels}}}")), Some(1.0));
        assert_eq!(sample(&text, &format!("{h}_bucket{{le=\"+Inf\",{labels}}}")), Some(2.0));
        let g = "tcplab_grpc_request_duration_seconds_count";
        assert_eq!(
            sample(&text, &format!("{g}{{method=\"/tcplab.v1.LabService/GetSession\",code=\"NOT_FOUND\"}}")),
            Some(1.0)
        );
    }
}
