//! Macro benchmarks (`byzgossip-testnet bench [--json FILE] [--quick]`): whole testnets in this
//! process, each result next to a baseline measured in the same run, printed as JSON lines
//! (one object per line on stdout, and the same lines in `FILE`).
//!
//! Every line has the shape
//! `{"bench", "n", "malicious", "metric", "value", "unit", "baseline": {...} | null, "runs",
//! "min", "max", "note"}`: with `--runs N` every testnet measurement is repeated N times and
//! `value` is the median, `min` and `max` the extremes (baselines are medians too).
//!
//! - `bracha`: reliable-broadcast throughput and latency at n = 4, 7, 16, with no attacker and
//!   with f silent members ([`crate::scenario::Role::Silent`], armed for the whole run).
//!   First a light-load phase (10 broadcasts/s in total) for the `*_light` latencies, then a
//!   saturation phase: every honest member broadcasts as fast as its node accepts (a node
//!   refuses while its own window of open instances is full) for a fixed duration. `deliveries_per_s` counts
//!   each instance once, when the last honest node delivered it; latency is from the
//!   `broadcast` call to that last delivery. Baselines: the all-honest run at the same n
//!   (for the runs with attackers) and a CPU bound from `verify_strict` timed in this run
//!   (`cores / (verifications per delivery x verify time)`).
//! - `gossip`: 1 KiB signed messages published by every node as fast as the nodes accept
//!   them (each origin is capped near 90 msgs/s by design), received with full admission
//!   and verification; baseline: the same message rate through bare gossipsub swarms
//!   ([`byzgossip_node::network::build_swarm`], our gossipsub settings, every message
//!   answered `Accept` without any check). Metrics: received messages/s per node, and CPU
//!   time per message received, with the overhead ratio ours / bare.
//! - `rss`: process RSS (VmRSS from `/proc/self/status`) divided by n while a Bracha testnet
//!   of n nodes runs in this process (not a per-process figure); baseline: the RSS before
//!   the testnet started. When the `byzgossip` binary sits next to this executable, also
//!   `rss_per_process`: the mean VmRSS of n real `byzgossip` processes
//!   ([`crate::process::measure_rss`]) after the baseline workload.
//!
//! `--quick` runs n = 4 only with short windows (the output-shape test uses it).
//!
//! # Bounds
//! Every run lasts its fixed window plus startup ([`crate::harness::CONNECT_DEADLINE`] at
//! most) and shutdown; every node call has a timeout; everything runs on 127.0.0.1 with
//! OS-chosen ports and is stopped before the next run.

use crate::harness::CALL_TIMEOUT;
use crate::scenario::{Role, preset};
use crate::{RunOptions, Testnet};
use byzgossip_crypto::{Keypair, PublicKey};
use byzgossip_node::{DeliveryEvent, NodeError, now_ms};
use futures::StreamExt;
use libp2p::{Multiaddr, gossipsub, swarm::SwarmEvent};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Options of `bench`.
#[derive(Clone, Debug, Default)]
pub struct BenchOptions {
    /// Short windows, n = 4 only.
    pub quick: bool,
    /// Run only this benchmark (`bracha` or `gossip`; RSS comes with `bracha`).
    pub only: Option<String>,
    /// Committee sizes of the Bracha benchmark; empty means the default (4, 7, 16).
    pub nodes: Vec<usize>,
    /// Repetitions of every testnet measurement (0 counts as 1); lines report the median,
    /// minimum and maximum.
    pub runs: usize,
}

impl BenchOptions {
    fn sizes(&self) -> Vec<usize> {
        if !self.nodes.is_empty() {
            self.nodes.iter().copied().filter(|n| *n > 0).collect()
        } else if self.quick {
            vec![4]
        } else {
            vec![4, 7, 16]
        }
    }
    fn window(&self) -> Duration {
        if self.quick { Duration::from_millis(2500) } else { Duration::from_secs(10) }
    }
    fn warmup(&self) -> Duration {
        if self.quick { Duration::from_millis(700) } else { Duration::from_millis(1500) }
    }
    fn gossip_nodes(&self) -> usize {
        if self.quick { 4 } else { 7 }
    }
}

/// Size of a gossip benchmark message.
pub const GOSSIP_SIZE: usize = 1024;
/// Size of a Bracha benchmark value.
pub const VALUE_SIZE: usize = 64;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One output line.
#[allow(clippy::too_many_arguments)]
fn line(bench: &str, n: usize, malicious: usize, metric: &str, value: f64, unit: &str, baseline: Value, runs: usize, note: &str) -> Value {
    json!({
        "bench": bench, "n": n, "malicious": malicious, "metric": metric, "value": round(value), "unit": unit,
        "baseline": baseline, "runs": runs, "note": note,
    })
}

fn round(v: f64) -> f64 {
    if v.is_finite() { (v * 1000.0).round() / 1000.0 } else { 0.0 }
}

/// VmRSS of this process in bytes (0 if unavailable).
pub fn process_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// User + system CPU time of this process in seconds, from `/proc/self/stat` (assumes the
/// usual 100 clock ticks per second; 10 ms resolution).
pub fn process_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let tick = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(14) + tick(15)) / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Mean time of one `verify_strict` of a 1 KiB message, in seconds.
pub fn verify_strict_s(iterations: usize) -> f64 {
    let key = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(1));
    let message = vec![7u8; GOSSIP_SIZE];
    let signature = key.sign(&message);
    let public = key.public();
    let Ok(vk) = public.to_verifying_key() else { return 0.0 };
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        let _ = std::hint::black_box(byzgossip_crypto::verify_strict_with(&vk, &message, &signature));
    }
    start.elapsed().as_secs_f64() / iterations.max(1) as f64
}

/// What one Bracha run measured.
#[derive(Clone, Debug, Default)]
pub struct BrachaResult {
    /// Instances delivered by every honest node per second.
    pub deliveries_per_s: f64,
    /// Latency percentiles (ms).
    pub p50_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// Instances completed in the window.
    pub completed: usize,
    /// Broadcasts accepted in the window.
    pub broadcasts: usize,
    /// Process RSS while the testnet ran (bytes).
    pub rss: u64,
}

/// Total broadcast rate of the light-load latency phase.
pub const LIGHT_RATE_PER_S: f64 = 10.0;

/// One Bracha testnet: n members, `malicious` of them silent. First a light-load phase
/// ([`LIGHT_RATE_PER_S`] broadcasts/s in total), then the saturation phase (as fast as the
/// nodes accept). Returns (light, saturated).
pub async fn bracha_run(n: usize, malicious: usize, window: Duration, warmup: Duration) -> anyhow::Result<(BrachaResult, BrachaResult)> {
    let mut scenario = if malicious == 0 {
        preset("baseline", n).ok_or_else(|| anyhow::anyhow!("no baseline preset"))?
    } else {
        preset("silent", n).ok_or_else(|| anyhow::anyhow!("no silent preset"))?.with_overrides(None, Some(malicious), None, None)
    };
    scenario.name = format!("bench-bracha-{n}-{malicious}");
    scenario.seed = 0xbe7c ^ n as u64;
    let testnet = Testnet::start(&scenario, RunOptions::default()).await?;
    let drivers = testnet.arm_attackers();
    let result = async {
        let light = bracha_measure(&testnet, window, warmup, Some(LIGHT_RATE_PER_S)).await?;
        let saturated = bracha_measure(&testnet, window, Duration::from_millis(500), None).await?;
        anyhow::Ok((light, saturated))
    }
    .await;
    for d in drivers {
        d.abort();
    }
    testnet.stop().await;
    settle().await;
    result
}

/// Waits (at most 15 s) until this process uses under 15% of a core, so leftovers of one run
/// (verification backlogs of stopped nodes) do not skew the next.
pub async fn settle() {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        let c0 = process_cpu_s();
        tokio::time::sleep(Duration::from_millis(300)).await;
        if process_cpu_s() - c0 < 0.045 {
            return;
        }
    }
}

async fn bracha_measure(testnet: &Testnet, window: Duration, warmup: Duration, rate_per_s: Option<f64>) -> anyhow::Result<BrachaResult> {
    let nodes = testnet.nodes();
    let honest: Vec<_> = nodes.iter().filter(|(r, _)| *r == Role::Honest).filter_map(|(_, h)| h.clone()).collect();
    anyhow::ensure!(!honest.is_empty(), "no honest node is running");
    let per_origin = rate_per_s.map(|r| r / honest.len() as f64);
    type Key = (PublicKey, u64);
    let counts: Arc<Mutex<HashMap<Key, usize>>> = Arc::default();
    let completions: Arc<Mutex<Vec<(Key, Instant)>>> = Arc::default();
    let sent: Arc<Mutex<HashMap<Key, Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    let want = honest.len();
    for h in &honest {
        let cursor = tokio::time::timeout(CALL_TIMEOUT, h.status()).await.ok().and_then(Result::ok).map_or(1, |s| s.last_cursor + 1);
        let (counts, completions, h) = (counts.clone(), completions.clone(), h.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = Box::pin(h.deliveries(cursor));
            while let Some(event) = stream.next().await {
                if let DeliveryEvent::Bracha(d) = event {
                    let key = (d.instance.origin, d.instance.seq);
                    let mut c = lock(&counts);
                    let count = c.entry(key).or_default();
                    *count += 1;
                    if *count == want {
                        lock(&completions).push((key, Instant::now()));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    let start = Instant::now();
    let end = start + window;
    let mut broadcasters = Vec::new();
    for (k, h) in honest.iter().enumerate() {
        let (h, sent) = (h.clone(), sent.clone());
        broadcasters.push(tokio::spawn(async move {
            let mut rng = ChaCha20Rng::seed_from_u64(k as u64);
            let mut accepted = 0usize;
            let t0 = Instant::now();
            while Instant::now() < end {
                if let Some(rate) = per_origin {
                    // Spread the origins' phases so the light load is even.
                    let due = t0 + Duration::from_secs_f64((accepted as f64 + k as f64 / 8.0) / rate);
                    tokio::time::sleep_until(due.min(end)).await;
                    if Instant::now() >= end {
                        break;
                    }
                }
                let mut value = vec![0u8; VALUE_SIZE];
                rng.fill_bytes(&mut value);
                let t = Instant::now();
                match tokio::time::timeout(CALL_TIMEOUT, h.broadcast(value)).await {
                    Ok(Ok(instance)) => {
                        lock(&sent).insert((instance.origin, instance.seq), t);
                        accepted += 1;
                    }
                    // Window full (or the node is busy): retry shortly.
                    Ok(Err(NodeError::Busy(_))) => tokio::time::sleep(Duration::from_millis(2)).await,
                    Ok(Err(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            accepted
        }));
    }
    let mut broadcasts = 0;
    for b in broadcasters {
        broadcasts += b.await.unwrap_or(0);
    }
    tokio::time::sleep_until(end).await;
    let rss = process_rss();
    for t in &tasks {
        t.abort();
    }
    let sent = lock(&sent).clone();
    let done: Vec<(Key, Instant)> = lock(&completions).iter().filter(|(_, at)| *at >= start && *at <= end).cloned().collect();
    let mut latencies: Vec<f64> =
        done.iter().filter_map(|(k, at)| sent.get(k).map(|s| at.saturating_duration_since(*s).as_secs_f64() * 1000.0)).collect();
    latencies.sort_by(f64::total_cmp);
    let completed = done.iter().filter(|(k, _)| sent.contains_key(k)).count();
    Ok(BrachaResult {
        deliveries_per_s: completed as f64 / window.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        completed,
        broadcasts,
        rss,
    })
}

/// What one gossip run measured.
#[derive(Clone, Debug, Default)]
pub struct GossipResult {
    /// Messages published (accepted by the publishing node or gossipsub).
    pub published: u64,
    /// Messages received per node per second (received by all other nodes / (n - 1) / window).
    pub received_per_s: f64,
    /// CPU seconds of the process per received message, in microseconds.
    pub cpu_us_per_msg: f64,
    /// Median one-way latency (ms, from the publisher's timestamp).
    pub p50_ms: f64,
}

/// Our gossip: every node publishes 1 KiB messages on the load topic as fast as it accepts
/// them (or at `rate_per_node` per second when given), for `window`.
pub async fn gossip_ours(n: usize, window: Duration, warmup: Duration, rate_per_node: Option<f64>) -> anyhow::Result<GossipResult> {
    let mut scenario = preset("baseline", n).ok_or_else(|| anyhow::anyhow!("no baseline preset"))?;
    scenario.name = format!("bench-gossip-{n}");
    let testnet = Testnet::start(&scenario, RunOptions::default()).await?;
    let handles: Vec<_> = testnet.nodes().into_iter().filter_map(|(_, h)| h).collect();
    let received = Arc::new(AtomicU64::new(0));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let counting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for h in &handles {
        let (h, received, latencies, counting) = (h.clone(), received.clone(), latencies.clone(), counting.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = Box::pin(h.deliveries(u64::MAX));
            while let Some(event) = stream.next().await {
                if let DeliveryEvent::Gossip(g) = event
                    && counting.load(Ordering::Relaxed)
                {
                    received.fetch_add(1, Ordering::Relaxed);
                    lock(&latencies).push(now_ms().saturating_sub(g.timestamp_ms) as f64);
                }
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    counting.store(true, Ordering::Relaxed);
    let cpu0 = process_cpu_s();
    let start = Instant::now();
    let end = start + window;
    let mut publishers = Vec::new();
    for (k, h) in handles.iter().enumerate() {
        let h = h.clone();
        publishers.push(tokio::spawn(async move {
            let mut rng = ChaCha20Rng::seed_from_u64(100 + k as u64);
            let mut published = 0u64;
            let t0 = Instant::now();
            while Instant::now() < end {
                if let Some(rate) = rate_per_node {
                    let due = t0 + Duration::from_secs_f64(published as f64 / rate);
                    tokio::time::sleep_until(due.min(end)).await;
                }
                let mut payload = vec![0u8; GOSSIP_SIZE];
                rng.fill_bytes(&mut payload);
                match tokio::time::timeout(CALL_TIMEOUT, h.publish(crate::adversary::LOAD_TOPIC, payload)).await {
                    Ok(Ok(_)) => published += 1,
                    Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(2)).await,
                    Err(_) => {}
                }
            }
            published
        }));
    }
    let mut published = 0;
    for p in publishers {
        published += p.await.unwrap_or(0);
    }
    tokio::time::sleep_until(end).await;
    // Let messages in flight arrive (bounded), then stop counting.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle && received.load(Ordering::Relaxed) < published * (n as u64 - 1) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    counting.store(false, Ordering::Relaxed);
    let cpu = process_cpu_s() - cpu0;
    for t in &tasks {
        t.abort();
    }
    testnet.stop().await;
    let got = received.load(Ordering::Relaxed);
    let mut lat = lock(&latencies).clone();
    lat.sort_by(f64::total_cmp);
    Ok(GossipResult {
        published,
        received_per_s: got as f64 / (n as f64 - 1.0).max(1.0) / window.as_secs_f64(),
        cpu_us_per_msg: if got > 0 { cpu * 1e6 / got as f64 } else { 0.0 },
        p50_ms: percentile(&lat, 0.5),
    })
}

enum SwarmCmd {
    Publish(Vec<u8>),
}

/// The baseline: `n` bare gossipsub swarms (our `build_swarm`, no admission: every message is
/// answered `Accept`), each publishing 1 KiB messages at `rate_per_node` per second.
pub async fn gossip_bare(n: usize, window: Duration, warmup: Duration, rate_per_node: f64) -> anyhow::Result<GossipResult> {
    use tokio::sync::mpsc;
    let topic = gossipsub::IdentTopic::new("bench/bare");
    let received = Arc::new(AtomicU64::new(0));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let counting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let subscribed: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for i in 0..n {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let mut swarm = byzgossip_node::network::build_swarm(key, n, 1 << 20, 256, 2).map_err(anyhow::Error::msg)?;
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
        swarm.behaviour_mut().gossipsub.subscribe(&topic)?;
        // Wait for the listen address.
        let addr = tokio::time::timeout(CALL_TIMEOUT, async {
            loop {
                if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                    return address;
                }
            }
        })
        .await?;
        for a in &addrs {
            swarm.dial(a.clone())?;
        }
        addrs.push(addr);
        let (tx, mut rx) = mpsc::channel::<SwarmCmd>(1024);
        senders.push(tx);
        let (topic, received, latencies, counting, published, subscribed, dropped) = (
            topic.clone(),
            received.clone(),
            latencies.clone(),
            counting.clone(),
            published.clone(),
            subscribed.clone(),
            dropped.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(SwarmCmd::Publish(data)) => {
                            if swarm.behaviour_mut().gossipsub.publish(topic.clone(), data).is_ok() {
                                published.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        None => return,
                    },
                    event = swarm.select_next_some() => if let SwarmEvent::Behaviour(byzgossip_node::network::BehaviourEvent::Gossipsub(e)) = event {
                        match e {
                            gossipsub::Event::Message { propagation_source, message_id, message } => {
                                let _ = swarm.behaviour_mut().gossipsub.report_message_validation_result(
                                    &message_id,
                                    &propagation_source,
                                    gossipsub::MessageAcceptance::Accept,
                                );
                                if counting.load(Ordering::Relaxed) {
                                    received.fetch_add(1, Ordering::Relaxed);
                                    let sent = message.data.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
                                    lock(&latencies).push(now_ms().saturating_sub(sent) as f64);
                                }
                            }
                            gossipsub::Event::SlowPeer { failed_messages, .. } => {
                                dropped.fetch_add((failed_messages.priority + failed_messages.non_priority) as u64, Ordering::Relaxed);
                            }
                            gossipsub::Event::Subscribed { .. } => {
                                subscribed[i].fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                    },
                }
            }
        }));
    }
    // Wait until every swarm saw every other subscribe (bounded).
    let deadline = Instant::now() + crate::harness::CONNECT_DEADLINE;
    while Instant::now() < deadline && subscribed.iter().any(|s| s.load(Ordering::Relaxed) < n as u64 - 1) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(warmup).await;
    counting.store(true, Ordering::Relaxed);
    let cpu0 = process_cpu_s();
    let start = Instant::now();
    let end = start + window;
    let mut publishers = Vec::new();
    for (k, tx) in senders.iter().enumerate() {
        let tx = tx.clone();
        publishers.push(tokio::spawn(async move {
            let mut rng = ChaCha20Rng::seed_from_u64(200 + k as u64);
            let mut count = 0u64;
            while Instant::now() < end {
                let due = start + Duration::from_secs_f64(count as f64 / rate_per_node);
                tokio::time::sleep_until(due.min(end)).await;
                let mut data = vec![0u8; GOSSIP_SIZE];
                rng.fill_bytes(&mut data);
                data[..8].copy_from_slice(&now_ms().to_be_bytes());
                if tx.send(SwarmCmd::Publish(data)).await.is_err() {
                    break;
                }
                count += 1;
            }
        }));
    }
    for p in publishers {
        let _ = p.await;
    }
    tokio::time::sleep_until(end).await;
    let total = || published.load(Ordering::Relaxed) * (n as u64 - 1);
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle && received.load(Ordering::Relaxed) < total() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    counting.store(false, Ordering::Relaxed);
    let cpu = process_cpu_s() - cpu0;
    drop(senders);
    for t in tasks {
        t.abort();
        let _ = t.await;
    }
    let got = received.load(Ordering::Relaxed);
    let mut lat = lock(&latencies).clone();
    lat.sort_by(f64::total_cmp);
    if dropped.load(Ordering::Relaxed) > 0 {
        eprintln!("bare gossipsub: {} messages dropped on full send queues (SlowPeer)", dropped.load(Ordering::Relaxed));
    }
    Ok(GossipResult {
        published: published.load(Ordering::Relaxed),
        received_per_s: got as f64 / (n as f64 - 1.0).max(1.0) / window.as_secs_f64(),
        cpu_us_per_msg: if got > 0 { cpu * 1e6 / got as f64 } else { 0.0 },
        p50_ms: percentile(&lat, 0.5),
    })
}

/// The median of `values` (the lower middle for an even count; 0 when empty).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() { 0.0 } else { sorted[(sorted.len() - 1) / 2] }
}

/// One output line for a metric measured once per run: `value` is the median over the runs,
/// `min` and `max` the extremes, `runs` their count.
#[allow(clippy::too_many_arguments)]
fn line_of_runs(bench: &str, n: usize, malicious: usize, metric: &str, values: &[f64], unit: &str, baseline: Value, note: &str) -> Value {
    let mut l = line(bench, n, malicious, metric, median(values), unit, baseline, values.len(), note);
    l["min"] = json!(round(values.iter().copied().fold(f64::INFINITY, f64::min)));
    l["max"] = json!(round(values.iter().copied().fold(f64::NEG_INFINITY, f64::max)));
    l
}

/// Runs every benchmark, handing each JSON line to `emit` as soon as it is measured. Each
/// testnet measurement is repeated `options.runs` times; lines give the median with the
/// minimum and maximum.
pub async fn run_all(options: &BenchOptions, mut emit: impl FnMut(&Value)) -> anyhow::Result<()> {
    let window = options.window();
    let warmup = options.warmup();
    let runs = options.runs.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    let verify_s = verify_strict_s(if options.quick { 300 } else { 3000 });
    let verify_us = verify_s * 1e6;
    // Real per-process RSS needs the `byzgossip` binary next to this executable.
    let byzgossip = std::env::current_exe().ok().map(|p| p.with_file_name("byzgossip")).filter(|p| p.exists());
    if byzgossip.is_none() {
        eprintln!("no byzgossip binary next to this executable: per-process RSS skipped (cargo build -p byzgossip-node)");
    }
    let wants = |name: &str| options.only.as_deref().is_none_or(|o| o == name);
    for n in options.sizes().into_iter().filter(|_| wants("bracha")) {
        let f = (n - 1) / 3;
        let rss_before = process_rss();
        // (malicious, [(light, saturated) per run]); the runs of one size alternate between
        // the all-honest and the attacked testnet, so slow drift hits both alike.
        let mut results: Vec<(usize, Vec<(BrachaResult, BrachaResult)>)> =
            if f > 0 { vec![(0, vec![]), (f, vec![])] } else { vec![(0, vec![])] };
        for _ in 0..runs {
            for (m, per_run) in results.iter_mut() {
                per_run.push(bracha_run(n, *m, window, warmup).await?);
            }
        }
        let of = |per_run: &[(BrachaResult, BrachaResult)], pick: fn(&(BrachaResult, BrachaResult)) -> f64| -> Vec<f64> {
            per_run.iter().map(pick).collect()
        };
        let honest = results[0].1.clone();
        let honest_rate = median(&of(&honest, |(_, s)| s.deliveries_per_s));
        for (m, per_run) in &results {
            let (h, voters) = ((n - m) as f64, (n - m) as f64);
            // Each honest node verifies the SEND and the other voters' ECHO and READY.
            let verifications = h * (1.0 + 2.0 * (voters - 1.0));
            let bound = cores / (verifications * verify_s);
            let broadcasts: usize = per_run.iter().map(|(_, s)| s.broadcasts).sum();
            let completed: usize = per_run.iter().map(|(_, s)| s.completed).sum();
            let note = format!(
                "saturation: {broadcasts} broadcasts accepted, {completed} delivered by all honest nodes in {runs} x {:.1} s; malicious members are silent",
                window.as_secs_f64()
            );
            let mut base = json!({ "verify_bound_per_s": round(bound), "verify_strict_us": round(verify_us), "cores": cores });
            if *m > 0 {
                base["honest_same_n"] = json!(round(honest_rate));
            }
            emit(&line_of_runs("bracha", n, *m, "deliveries_per_s", &of(per_run, |(_, s)| s.deliveries_per_s), "1/s", base, &note));
            let light_completed: usize = per_run.iter().map(|(l, _)| l.completed).sum();
            let light_note = format!(
                "light load ({LIGHT_RATE_PER_S} broadcasts/s in total, {light_completed} delivered in {runs} runs): broadcast call to delivery by the last honest node"
            );
            let sat_note = "saturation: broadcast call to delivery by the last honest node (queueing included)";
            type Pick = fn(&(BrachaResult, BrachaResult)) -> f64;
            let metrics: [(&str, Pick, &str); 4] = [
                ("latency_p50_light", |(l, _)| l.p50_ms, light_note.as_str()),
                ("latency_p99_light", |(l, _)| l.p99_ms, light_note.as_str()),
                ("latency_p50", |(_, s)| s.p50_ms, sat_note),
                ("latency_p99", |(_, s)| s.p99_ms, sat_note),
            ];
            for (metric, pick, note) in metrics {
                let base = if *m > 0 {
                    json!({ "honest_same_n_ms": round(median(&of(&honest, pick))) })
                } else {
                    json!({ "three_verifications_ms": round(3.0 * verify_s * 1000.0) })
                };
                emit(&line_of_runs("bracha", n, *m, metric, &of(per_run, pick), "ms", base, note));
            }
        }
        let honest_rss: Vec<f64> = honest.iter().map(|(_, s)| s.rss as f64 / n as f64 / 1048576.0).collect();
        if let Some(binary) = byzgossip.as_ref() {
            let mut means = Vec::new();
            let mut max = 0.0f64;
            for _ in 0..runs {
                let dir = std::env::temp_dir().join(format!("byzgossip-bench-rss-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                let options = crate::process::ProcessOptions::new(Some(binary.clone()), dir.clone(), false)?;
                let rss = crate::process::measure_rss(n, options, window).await;
                let _ = std::fs::remove_dir_all(&dir);
                match rss {
                    Ok(rss) if !rss.is_empty() => {
                        let mib: Vec<f64> = rss.iter().map(|r| *r as f64 / 1048576.0).collect();
                        means.push(mib.iter().sum::<f64>() / mib.len() as f64);
                        max = mib.iter().copied().fold(max, f64::max);
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("rss per process at n = {n} skipped: {e:#}"),
                }
            }
            if !means.is_empty() {
                emit(&line_of_runs(
                    "rss",
                    n,
                    0,
                    "rss_per_process",
                    &means,
                    "MiB",
                    json!({ "in_process_per_node_mib": round(median(&honest_rss)), "max_process_mib": round(max) }),
                    "process runtime: mean VmRSS of the n byzgossip processes after the baseline workload",
                ));
            }
        }
        emit(&line_of_runs(
            "rss",
            n,
            0,
            "rss_per_node",
            &honest_rss,
            "MiB",
            json!({ "process_rss_before_mib": round(rss_before as f64 / 1048576.0) }),
            "in-process: whole-process VmRSS / n while the n-node testnet ran (not per-process RSS)",
        ));
    }
    if !wants("gossip") {
        return Ok(());
    }
    // Gossip: ours as fast as the nodes accept, then bare gossipsub at the same per-node rate,
    // once per run.
    let n = options.gossip_nodes();
    let (mut ours_runs, mut bare_runs, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        settle().await;
        let ours = gossip_ours(n, window, warmup, None).await?;
        settle().await;
        let rate = (ours.published as f64 / n as f64 / window.as_secs_f64()).max(1.0);
        bare_runs.push(gossip_bare(n, window, warmup, rate).await?);
        ours_runs.push(ours);
        rates.push(rate);
    }
    let rate = median(&rates);
    let note = format!("1 KiB messages, {n} publishers at {rate:.0} msgs/s each (median over runs; ours: as fast as accepted; bare: same rate)");
    let ours_of = |pick: fn(&GossipResult) -> f64| -> Vec<f64> { ours_runs.iter().map(pick).collect() };
    let bare_of = |pick: fn(&GossipResult) -> f64| -> f64 { median(&bare_runs.iter().map(pick).collect::<Vec<_>>()) };
    emit(&line_of_runs(
        "gossip",
        n,
        0,
        "received_per_node_per_s",
        &ours_of(|r| r.received_per_s),
        "msgs/s",
        json!({
            "bare_gossipsub": round(bare_of(|r| r.received_per_s)),
            "published": median(&ours_of(|r| r.published as f64)),
            "bare_published": bare_of(|r| r.published as f64),
        }),
        &note,
    ));
    // The overhead ratio is taken within each run (ours and bare back to back), then the median.
    let ratios: Vec<f64> = ours_runs
        .iter()
        .zip(&bare_runs)
        .map(|(o, b)| if b.cpu_us_per_msg > 0.0 { o.cpu_us_per_msg / b.cpu_us_per_msg } else { 0.0 })
        .collect();
    emit(&line_of_runs(
        "gossip",
        n,
        0,
        "cpu_per_received_msg",
        &ours_of(|r| r.cpu_us_per_msg),
        "us",
        json!({
            "bare_gossipsub": round(bare_of(|r| r.cpu_us_per_msg)),
            "overhead_ratio": round(median(&ratios)),
            "overhead_ratio_min": round(ratios.iter().copied().fold(f64::INFINITY, f64::min)),
            "overhead_ratio_max": round(ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        }),
        "whole-process CPU time (10 ms ticks) over the window / messages received by all nodes",
    ));
    emit(&line_of_runs(
        "gossip",
        n,
        0,
        "latency_p50",
        &ours_of(|r| r.p50_ms),
        "ms",
        json!({ "bare_gossipsub_ms": round(bare_of(|r| r.p50_ms)) }),
        "publisher timestamp to receipt (ms clock)",
    ));
    Ok(())
}
