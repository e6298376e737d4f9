//! Prometheus metrics: messages by kind and outcome, rejections by reason, admission latency,
//! Bracha deliveries and latency, peers by status, sync pulls, queue depths, bans, faults,
//! gossipsub traffic in and out (messages and bytes, by `topic` = bracha or gossip), plus
//! libp2p's own swarm metrics. Served as text on the HTTP API's `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use byzgossip_engine::Metric;
use byzgossip_reputation::PeerStatus;
use std::sync::{Arc, Mutex};

/// Label set: one (name, value) pair per label.
pub type Labels = Vec<(&'static str, String)>;

/// All node metrics. Cheap to clone (every metric is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// Messages received, by `kind` and `outcome` (accept or the reason label).
    pub messages: Family<Labels, Counter>,
    /// Rejections with blame, by `reason`.
    pub rejections: Family<Labels, Counter>,
    /// Time from receipt to verdict.
    pub admission_seconds: Histogram,
    /// Bracha values delivered.
    pub bracha_deliveries: Counter,
    /// Time from first sight of an instance (its SEND or our broadcast) to delivery.
    pub bracha_latency_seconds: Histogram,
    /// Known peers by reputation `status`.
    pub peers: Family<Labels, Gauge>,
    /// Sync exchanges, by `kind` (digest_sent, digest_served, value_sent, value_served,
    /// certificate_applied, envelope_admitted, failed; and the recovery of a fresh store's
    /// next seq: latest_sent, latest_served, seq_recovered, seq_recovery_timed_out).
    pub sync: Family<Labels, Counter>,
    /// Gossipsub slow-peer reports and connections dropped for a wedged link, by outcome.
    pub slow_peers: Family<Labels, Counter>,
    /// Queue depths, by `queue` (validation).
    pub queue_depth: Family<Labels, Gauge>,
    /// Quorum health: members reachable and needed, stalled instances.
    pub quorum: Family<Labels, Gauge>,
    /// Status changes (graylist, ban, exclusion, recovery), by `to` and `reason`.
    pub status_changes: Family<Labels, Counter>,
    /// Bracha faults, by `kind`.
    pub faults: Family<Labels, Counter>,
    /// Messages published, by `kind`.
    pub published: Family<Labels, Counter>,
    /// Gossipsub messages received (every one gossipsub hands up, before the interceptor and
    /// admission), by `topic` (bracha or gossip). The testnet's cost-per-delivery numbers
    /// come from this family and the three below.
    pub received: Family<Labels, Counter>,
    /// Bytes of those messages, by `topic`.
    pub received_bytes: Family<Labels, Counter>,
    /// Messages handed to gossipsub to publish (own envelopes after the interceptor, every
    /// retransmission, and raw bytes gossipsub accepted), by `topic`.
    pub sent: Family<Labels, Counter>,
    /// Bytes of those messages, by `topic`.
    pub sent_bytes: Family<Labels, Counter>,
    /// Accepted messages this node processed but did not let gossipsub forward, because
    /// they came straight from their signer and this node is not one of its designated
    /// relays (`network::relays_direct`).
    pub relay_skipped: Counter,
    /// Deliveries pruned from the store after their retention.
    pub pruned_deliveries: Counter,
}

impl Metrics {
    /// Registers every metric in a new registry.
    pub fn new() -> (Metrics, Registry) {
        let mut registry = Registry::with_prefix("byzgossip");
        let m = Metrics {
            registry: Arc::new(Mutex::new(Registry::default())),
            messages: Family::default(),
            rejections: Family::default(),
            admission_seconds: Histogram::new(exponential_buckets(1e-5, 2.0, 20)),
            bracha_deliveries: Counter::default(),
            bracha_latency_seconds: Histogram::new(exponential_buckets(1e-3, 2.0, 16)),
            peers: Family::default(),
            sync: Family::default(),
            slow_peers: Family::default(),
            queue_depth: Family::default(),
            quorum: Family::default(),
            status_changes: Family::default(),
            faults: Family::default(),
            published: Family::default(),
            received: Family::default(),
            received_bytes: Family::default(),
            sent: Family::default(),
            sent_bytes: Family::default(),
            relay_skipped: Counter::default(),
            pruned_deliveries: Counter::default(),
        };
        registry.register("messages", "Messages received by kind and outcome", m.messages.clone());
        registry.register("rejections", "Rejections with blame by reason", m.rejections.clone());
        registry.register("admission_seconds", "Time from receipt to admission verdict", m.admission_seconds.clone());
        registry.register("bracha_deliveries", "Bracha values delivered", m.bracha_deliveries.clone());
        registry.register("bracha_latency_seconds", "First sight of an instance to delivery", m.bracha_latency_seconds.clone());
        registry.register("peers", "Known peers by reputation status", m.peers.clone());
        registry.register("sync", "Sync exchanges by kind", m.sync.clone());
        registry.register("slow_peers", "Gossipsub slow-peer reports and connections dropped for a wedged link, by outcome", m.slow_peers.clone());
        registry.register("queue_depth", "Queue depths", m.queue_depth.clone());
        registry.register("quorum", "Quorum health: members_reachable, members_needed, stalled_instances", m.quorum.clone());
        registry.register("status_changes", "Reputation status changes by new status and reason", m.status_changes.clone());
        registry.register("bracha_faults", "Bracha faults by kind", m.faults.clone());
        registry.register("published", "Messages published by kind", m.published.clone());
        registry.register("received_messages", "Gossipsub messages received, before admission, by topic", m.received.clone());
        registry.register("received_bytes", "Bytes of gossipsub messages received, by topic", m.received_bytes.clone());
        registry.register("sent_messages", "Messages handed to gossipsub to publish, by topic", m.sent.clone());
        registry.register("relay_skipped", "Accepted messages not forwarded: direct from the signer, not a designated relay", m.relay_skipped.clone());
        registry.register("pruned_deliveries", "Deliveries pruned from the store after their retention", m.pruned_deliveries.clone());
        registry.register("sent_bytes", "Bytes of messages handed to gossipsub to publish, by topic", m.sent_bytes.clone());
        (m, registry)
    }

    /// Installs the registry (after libp2p's metrics were added to it) for [`Metrics::encode`].
    pub fn install(&self, registry: Registry) {
        if let Ok(mut r) = self.registry.lock() {
            *r = registry;
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = encode(&mut out, &registry);
        }
        out
    }

    /// Counts one message verdict.
    pub fn message(&self, kind: &str, outcome: &str) {
        self.messages.get_or_create(&vec![("kind", kind.to_owned()), ("outcome", outcome.to_owned())]).inc();
    }

    /// Counts one received gossipsub message of `len` bytes on `topic` (bracha or gossip).
    pub fn count_received(&self, topic: &str, len: usize) {
        count(&self.received, &self.received_bytes, topic, len);
    }

    /// Counts one message of `len` bytes handed to gossipsub on `topic` (bracha or gossip).
    pub fn count_sent(&self, topic: &str, len: usize) {
        count(&self.sent, &self.sent_bytes, topic, len);
    }

    /// Counts (and, for status changes and faults that matter to an operator, logs) one
    /// engine [`Metric`]: the one place the driver turns engine outputs into metrics.
    pub fn record(&self, metric: &Metric) {
        match metric {
            Metric::Message { kind, outcome } => self.message(kind, outcome),
            Metric::Rejected { reason } => {
                Self::inc(&self.rejections, "reason", reason);
                tracing::debug!(reason, "message rejected");
            }
            Metric::AdmissionLatency { ms } => self.admission_seconds.observe(*ms as f64 / 1000.0),
            Metric::RelaySkipped => {
                self.relay_skipped.inc();
            }
            Metric::Delivered { latency_ms } => {
                self.bracha_deliveries.inc();
                if let Some(ms) = latency_ms {
                    self.bracha_latency_seconds.observe(*ms as f64 / 1000.0);
                }
            }
            Metric::Published { kind } => Self::inc(&self.published, "kind", kind),
            Metric::Sync { kind } => Self::inc(&self.sync, "kind", kind),
            Metric::Fault { kind } => Self::inc(&self.faults, "kind", kind),
            Metric::StatusChange(change) => {
                self.status_changes
                    .get_or_create(&vec![("to", change.to.label().to_owned()), ("reason", change.event.label().to_owned())])
                    .inc();
                let peer = crate::identity::peer_id(&change.peer).map(|p| p.to_string()).unwrap_or_default();
                match change.to {
                    PeerStatus::Banned { until_ms } => {
                        tracing::warn!(%peer, until_ms, reason = change.event.label(), score = change.score, bans = change.bans, "peer banned")
                    }
                    PeerStatus::Excluded { evidence } => tracing::warn!(%peer, %evidence, "peer excluded for equivocation"),
                    PeerStatus::Graylisted => {
                        tracing::info!(%peer, reason = change.event.label(), score = change.score, "peer graylisted")
                    }
                    PeerStatus::Ok => tracing::info!(%peer, from = change.from.label(), "peer back in good standing"),
                }
            }
            Metric::QueueDepth { queue, depth } => {
                self.queue_depth.get_or_create(&vec![("queue", (*queue).to_owned())]).set(*depth as i64);
            }
            Metric::PeersByStatus { ok, graylisted, banned, excluded } => {
                for (label, count) in [("ok", ok), ("graylisted", graylisted), ("banned", banned), ("excluded", excluded)] {
                    self.peers.get_or_create(&vec![("status", label.to_owned())]).set(*count as i64);
                }
            }
            Metric::SlowPeer { outcome } => Self::inc(&self.slow_peers, "outcome", outcome),
            Metric::Quorum { health, was_possible } => {
                for (what, value) in [
                    ("members_reachable", health.members_reachable),
                    ("members_needed", health.members_needed),
                    ("stalled_instances", health.stalled_instances),
                ] {
                    self.quorum.get_or_create(&vec![("what", what.to_owned())]).set(value as i64);
                }
                let (reachable, needed) = (health.members_reachable, health.members_needed);
                match (health.progress_possible(), *was_possible) {
                    (false, Some(true)) => {
                        tracing::warn!(reachable, needed, "fewer than 2f+1 members reachable: no broadcast can complete")
                    }
                    (true, Some(false)) => tracing::info!(reachable, needed, "2f+1 members reachable again: broadcasts can complete"),
                    (false, None) => tracing::info!(reachable, needed, "not yet 2f+1 members reachable"),
                    _ => {}
                }
            }
            Metric::Pruned { deliveries } => {
                self.pruned_deliveries.inc_by(*deliveries as u64);
            }
            Metric::PersistFailed { batch } => {
                Self::inc(&self.sync, "kind", "persist_failed");
                tracing::error!(batch, "a persistence batch failed: its publishes and deliveries were dropped");
            }
            Metric::FilledLostBroadcast { seq } => {
                tracing::warn!(seq, "broadcast lost in a crash before its SEND was stored; filling with an empty value")
            }
        }
    }

    /// Increments a one-label family.
    pub fn inc(family: &Family<Labels, Counter>, name: &'static str, value: &str) {
        family.get_or_create(&vec![(name, value.to_owned())]).inc();
    }
}

/// One message and its bytes in a (messages, bytes) pair of families.
fn count(messages: &Family<Labels, Counter>, bytes: &Family<Labels, Counter>, topic: &str, len: usize) {
    let labels = vec![("topic", topic.to_owned())];
    messages.get_or_create(&labels).inc();
    bytes.get_or_create(&labels).inc_by(len as u64);
}
