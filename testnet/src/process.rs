//! The process runtime (`run --runtime process`): honest members are real `byzgossip`
//! processes driven through their HTTP API; adversaries are `byzgossip-testnet adversary`
//! processes (a hidden subcommand) running a node with the adversary's interceptor and
//! driver, controlled through their stdin (`arm`, `disarm`, `refresh`, `block PEER`,
//! `unblock PEER`).
//!
//! Keys and the genesis come from [`byzgossip_node::testnet_keys::write_testnet`] with a base
//! port probed free on 127.0.0.1; member i listens on `base + i`. HTTP APIs use port 0 and
//! are read from each process's stdout. The timeline is the in-process one
//! (`crate::timeline`); here kill = SIGKILL, restart = respawn with the same data directory,
//! pause/resume = SIGSTOP/SIGCONT, and a cut (partition, eclipse) = each side blocking the
//! other's peer id through the node's block by hand (`POST /peers/{id}/block` for `byzgossip`
//! processes, a `block` line for adversaries). Members redial each other from the genesis
//! bootstrap list, and unblocking redials at once, so a heal needs no explicit dial.
//! `degrade`/`restore` faults are not available here ([`unsupported`]): they need an
//! interceptor, and the `byzgossip` binary carries no fault code.
//!
//! # Network namespaces
//! With [`ProcessOptions::netns`] (`run --runtime process --netns`) every node runs in its
//! own network namespace ([`netns`]): it listens (p2p and HTTP) on its namespace's address,
//! the genesis bootstrap list carries those addresses, and a cut is an nftables drop between
//! the two addresses instead of the node's block list, a `degrade` an nftables random drop
//! of the node's inbound packets (the delay is not applied, and the event log says so).
//! Cuts then live in the kernel, so a restarted node is cut without any block call; a heal
//! resets the pair's TCP connections and makes a side that lost its connection redial now
//! (see `reconnect` in the [`FaultTarget`] impl).
//!
//! # Traffic counts
//! The report's messages and bytes per delivery come from each process's `/metrics`
//! (`byzgossip_received_messages_total`, `_received_bytes_total`, `_sent_messages_total`,
//! `_sent_bytes_total`, counted where the in-process runtime's interceptor counts). Counters
//! restart from zero with each process (and each adversary refresh), so each node's total is
//! the sum over its incarnations of the last scrape of each: just before every SIGKILL, pause
//! and refresh, and at the end of the run before the processes are stopped. Messages between
//! the last scrape and a SIGKILL (milliseconds) are lost, and a node killed while paused keeps
//! the scrape taken before its pause (it processed nothing since).
//!
//! The run produces the same [`RunLog`] as the in-process harness, so the invariants and the
//! report are the same: the workload, the peer sampler, the drain check and the collection are
//! the ones in `crate::timeline`, shared with the in-process runtime.
//!
//! # Reading the API
//! Every answer is read through the typed mirrors in [`api`], which fail closed: a missing or
//! malformed field is a protocol error, counted and recorded as an event in the run log
//! (`protocol error: ...`), never read as `"ok"`, `0` or the local clock. A broadcast whose
//! answer is malformed also counts as a failed broadcast.
//!
//! # Bounds
//! Every child is held by a [`Child`] guard that kills (SIGKILL) and reaps it on drop: on
//! return, on error and on panic. Children never outlive the testnet, even when it is killed
//! by SIGKILL: each child's stdin is a pipe the testnet holds, and `byzgossip run
//! --exit-on-stdin-eof` and the adversary subcommand shut down when it closes. Every HTTP call
//! has a timeout; the phases are the scenario's; startup waits at most
//! [`crate::harness::CONNECT_DEADLINE`] (plus [`START_DEADLINE`] for each process to print
//! its API address).

use crate::adversary::{self, Agent, AgentInterceptor, DriverContext, HandleCell, LOAD_TOPIC, current};
use crate::harness::{CALL_TIMEOUT, CONNECT_DEADLINE};
use crate::record::{RunLog, TrafficRecord};
use crate::recorder::{Shared, lock, traffic_record};
use crate::scenario::{Degradation, FaultKind, Role, Scenario};
use crate::timeline::{self, Failure, FaultTarget, NodeApi};
use anyhow::Context;
use api::CallError;
use byzgossip_crypto::{Genesis, Keypair};
use byzgossip_reputation::PeerSnapshot;
use byzgossip_node::api::API_TOKEN_FILE;
use byzgossip_node::storage::MemoryStore;
use byzgossip_node::testnet_keys::{TestnetSpec, write_testnet, write_testnet_with_addresses};
use byzgossip_node::{NodeBuilder, NodeConfig, NodeError, now_ms};
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub mod api;
pub mod netns;

/// Longest wait for a started process to print its HTTP API address.
pub const START_DEADLINE: Duration = Duration::from_secs(15);

/// Options of a process-mode run.
#[derive(Clone, Debug)]
pub struct ProcessOptions {
    /// The `byzgossip` binary.
    pub byzgossip: PathBuf,
    /// The `byzgossip-testnet` binary (for adversary processes); the current executable.
    pub testnet: PathBuf,
    /// Where keys, data directories and logs go.
    pub dir: PathBuf,
    /// Print timeline events as they happen.
    pub verbose: bool,
    /// Run every node in its own network namespace, with cuts and loss as nftables rules
    /// (see [`netns`]).
    pub netns: bool,
}

impl ProcessOptions {
    /// Options with the `byzgossip` binary next to the current executable (or `byzgossip`).
    pub fn new(byzgossip: Option<PathBuf>, dir: PathBuf, verbose: bool) -> anyhow::Result<ProcessOptions> {
        let testnet = std::env::current_exe().context("current executable")?;
        let byzgossip = byzgossip.unwrap_or_else(|| testnet.with_file_name("byzgossip"));
        anyhow::ensure!(
            byzgossip.exists(),
            "no byzgossip binary at {} (build it with `cargo build -p byzgossip-node` in the same target dir, or pass --byzgossip PATH)",
            byzgossip.display()
        );
        Ok(ProcessOptions { byzgossip, testnet, dir, verbose, netns: false })
    }
}

/// The result of a process-mode run.
#[derive(Debug)]
pub enum Outcome {
    /// The run happened.
    Ran(Box<RunLog>),
    /// The scenario needs something process mode cannot do.
    Unsupported(String),
}

/// Why `scenario` cannot run as processes, if it cannot: without `netns`, `degrade` and
/// `restore` faults (inbound loss and delay) work through the in-process interceptor, and the
/// `byzgossip` binary has none (the production binary carries no fault code). With `netns`
/// the loss is an nftables rule (the delay is not applied, see [`netns`]), so everything runs.
/// Every role and every other fault runs in both runtimes.
pub fn unsupported(scenario: &Scenario, netns: bool) -> Option<String> {
    let degrades = scenario.faults.iter().any(|f| matches!(f.kind, FaultKind::Degrade | FaultKind::Restore));
    (degrades && !netns).then(|| {
        "degrade/restore faults (inbound loss and delay) need the in-process runtime or --netns: the byzgossip binary has no interceptor"
            .to_owned()
    })
}

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Child {
    child: Option<tokio::process::Child>,
    pid: u32,
    stdin: Option<tokio::process::ChildStdin>,
}

impl Child {
    fn signal(&self, sig: &str) {
        let _ = std::process::Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// SIGKILL and reap.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = tokio::time::timeout(CALL_TIMEOUT, c.wait()).await;
        }
        self.stdin = None;
    }

    /// Graceful stop: close stdin, SIGINT, wait up to [`CALL_TIMEOUT`], then SIGKILL.
    pub async fn stop(&mut self) {
        self.stdin = None;
        if self.child.is_some() {
            self.signal("-CONT");
            self.signal("-INT");
        }
        if let Some(c) = self.child.as_mut()
            && tokio::time::timeout(CALL_TIMEOUT, c.wait()).await.is_err()
        {
            let _ = c.start_kill();
        }
        self.kill().await;
    }

    /// Sends a control line to an adversary process.
    async fn control(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = tokio::time::timeout(CALL_TIMEOUT, stdin.write_all(format!("{line}\n").as_bytes())).await;
            let _ = tokio::time::timeout(CALL_TIMEOUT, stdin.flush()).await;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            // Reap synchronously (bounded: SIGKILL cannot be ignored).
            if let Some(id) = c.id() {
                let _ = std::process::Command::new("kill").args(["-KILL", &id.to_string()]).status();
            }
            let end = std::time::Instant::now() + Duration::from_secs(2);
            while std::time::Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Finds `count` consecutive free TCP ports on 127.0.0.1.
pub fn free_ports(count: usize, seed: u64) -> anyhow::Result<u16> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ now_ms());
    for _ in 0..200 {
        let base: u16 = 20_000 + (rng.next_u32() % 30_000) as u16;
        let ok = (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i as u16)).is_ok());
        if ok {
            return Ok(base);
        }
    }
    anyhow::bail!("no {count} consecutive free ports found on 127.0.0.1")
}

struct Node {
    index: usize,
    role: Role,
    key: Keypair,
    peer_id: libp2p::PeerId,
    key_path: PathBuf,
    data: PathBuf,
    port: Option<u16>,
    child: tokio::sync::Mutex<Option<Child>>,
    api: Mutex<Option<SocketAddr>>,
    incarnation: AtomicU32,
    down: AtomicBool,
    paused: AtomicBool,
    armed_at: AtomicU64,
    cursor: AtomicU64,
    tracker: Mutex<Option<JoinHandle<()>>>,
    /// Traffic of finished incarnations (see the module docs), in [`TrafficRecord`] order:
    /// messages in, bytes in, messages out, bytes out.
    traffic_done: Mutex<[u64; 4]>,
    /// The last scrape of the current incarnation.
    traffic_now: Mutex<[u64; 4]>,
}

impl Node {
    fn api(&self) -> Option<SocketAddr> {
        if self.down.load(Ordering::Relaxed) || self.paused.load(Ordering::Relaxed) {
            return None;
        }
        *lock(&self.api)
    }
}


struct Net {
    scenario: Scenario,
    options: ProcessOptions,
    genesis_path: PathBuf,
    scenario_path: PathBuf,
    nodes: Vec<Arc<Node>>,
    shared: Arc<Shared>,
    http: reqwest::Client,
    /// The run's namespaces with `--netns`. Declared last so it is dropped after `nodes`:
    /// the children are killed before their namespaces go.
    netns: Option<netns::Netns>,
}

impl Net {
    async fn spawn(&self, i: usize) -> anyhow::Result<()> {
        let node = self.nodes[i].clone();
        let incarnation = node.incarnation.load(Ordering::Relaxed);
        let log_path = self.options.dir.join(format!("node-{i}.{incarnation}.log"));
        // With --netns each node listens (p2p and HTTP) on its namespace's address.
        let (listen, api_listen) = match &self.netns {
            Some(ns) => (ns.plan().multiaddr(i), format!("{}:0", ns.plan().addr(i))),
            None => (format!("/ip4/127.0.0.1/tcp/{}", node.port.unwrap_or(0)), "127.0.0.1:0".to_owned()),
        };
        let command = |program: &Path| match &self.netns {
            Some(ns) => ns.command(i, program),
            None => tokio::process::Command::new(program),
        };
        let mut cmd = if node.role.correct() {
            let mut c = command(&self.options.byzgossip);
            c.arg("run").arg("--genesis").arg(&self.genesis_path).arg("--key").arg(&node.key_path);
            c.arg("--data").arg(&node.data).args(["--listen", &listen, "--api", &api_listen, "--topic", LOAD_TOPIC]);
            // One API token for every child, sent by `self.http` (see `setup`).
            c.arg("--api-token-file").arg(self.options.dir.join(API_TOKEN_FILE));
            // The held stdin pipe ties the child's life to ours (see the module docs).
            c.arg("--exit-on-stdin-eof");
            if node.role == Role::Observer {
                c.arg("--observer");
            }
            // The same timers as in-process nodes, so both runtimes catch up alike.
            c.arg("--sync-interval-ms").arg(crate::harness::SYNC_INTERVAL.as_millis().to_string());
            c.arg("--tick-interval-ms").arg(crate::harness::TICK_INTERVAL.as_millis().to_string());
            if let Some(s) = self.scenario.retention_s {
                c.arg("--retention-s").arg(s.to_string());
            }
            if let Some(limits) = &self.scenario.seen_set {
                c.arg("--seen-capacity").arg(limits.open_capacity.to_string());
                c.arg("--seen-per-origin-capacity").arg(limits.per_origin_capacity.to_string());
                c.arg("--seen-committee-capacity").arg(limits.committee_capacity.to_string());
            }
            if let Some(bans) = &self.scenario.bans {
                c.arg("--ban-base-ms").arg(bans.base_ms.to_string());
                c.arg("--penalty-half-life-ms").arg(bans.penalty_half_life_ms.to_string());
            }
            c
        } else {
            let mut c = command(&self.options.testnet);
            c.arg("adversary").arg("--scenario").arg(&self.scenario_path).args(["--index", &i.to_string()]);
            c.arg("--genesis").arg(&self.genesis_path).arg("--key").arg(&node.key_path).args(["--listen", &listen]);
            c.args(["--api", &api_listen]);
            c.args(["--seed", &(self.scenario.seed ^ ((i as u64) << 20) ^ ((incarnation as u64) << 40)).to_string()]);
            c
        };
        cmd.stdin(Stdio::piped());
        cmd.env("RUST_LOG", std::env::var("BYZGOSSIP_TESTNET_CHILD_LOG").unwrap_or_else(|_| "warn,libp2p_gossipsub::behaviour=error".into()));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting node {i}"))?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        let stdin = child.stdin.take();
        let mut guard = Child { child: Some(child), pid, stdin };
        // Copy output to the log file; report the API address.
        let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let log = Arc::new(Mutex::new(log));
        let log2 = log.clone();
        let reported = node.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("HTTP API on http://").and_then(|a| a.trim().parse().ok()) {
                    match tx.take() {
                        Some(tx) => {
                            let _ = tx.send(addr);
                        }
                        // A later address: an adversary's node after a refresh.
                        None => *lock(&reported.api) = Some(addr),
                    }
                }
                let _ = std::io::Write::write_all(&mut *lock(&log), format!("{line}\n").as_bytes());
            }
        });
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = std::io::Write::write_all(&mut *lock(&log2), format!("{line}\n").as_bytes());
            }
        });
        let addr = match tokio::time::timeout(START_DEADLINE, rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                guard.kill().await;
                anyhow::bail!("node {i} did not report its HTTP API within {START_DEADLINE:?} (see {})", log_path.display());
            }
        };
        *lock(&node.api) = Some(addr);
        node.down.store(false, Ordering::Relaxed);
        node.paused.store(false, Ordering::Relaxed);
        *node.child.lock().await = Some(guard);
        if node.role.correct() {
            let task = self.track(i, incarnation, addr);
            if let Some(old) = lock(&node.tracker).replace(task) {
                old.abort();
            }
        }
        Ok(())
    }

    /// Follows a correct node's delivery stream (reconnecting from the last cursor). A line
    /// that is not a well-formed event is a protocol error in the run log, and skipped.
    fn track(&self, i: usize, incarnation: u32, addr: SocketAddr) -> JoinHandle<()> {
        let (shared, node) = (self.shared.clone(), self.nodes[i].clone());
        let api = api::Client::new(self.http.clone(), addr);
        tokio::spawn(async move {
            loop {
                let cursor = node.cursor.load(Ordering::Relaxed) + 1;
                match api.deliveries(cursor).await {
                    Ok(response) => {
                        let mut stream = response.bytes_stream();
                        let mut buffer = Vec::new();
                        while let Some(Ok(chunk)) = stream.next().await {
                            buffer.extend_from_slice(&chunk);
                            while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = buffer.drain(..=pos).collect();
                                match api::parse_stream_line(&line) {
                                    None => {}
                                    Some(Ok(event)) => record_event(&shared, &node, i, incarnation, event),
                                    Some(Err(e)) => shared.protocol_error(format!("node {i} deliveries: {e}")),
                                }
                            }
                        }
                    }
                    Err(CallError::Protocol(e)) => shared.protocol_error(format!("node {i} deliveries: {e}")),
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    /// Node `i`'s API client, if it can answer now (not down, not stopped).
    fn client(&self, i: usize) -> Option<api::Client> {
        self.nodes[i].api().map(|addr| api::Client::new(self.http.clone(), addr))
    }

    /// Waits until every correct node is connected to what it dials and what dials it: here
    /// every node dials the genesis bootstrap list (the members), so a member ends up
    /// connected to every other node and an observer to the n members (process mode does not
    /// use the sparse observer topology of the other runtimes).
    async fn wait_connected(&self) {
        let end = Instant::now() + CONNECT_DEADLINE;
        loop {
            let mut ok = true;
            for node in self.nodes.iter().filter(|s| s.role.correct()) {
                let Some(api) = self.client(node.index) else { continue };
                let want = if node.role == Role::Observer { self.scenario.nodes } else { self.nodes.len().saturating_sub(1) };
                let connected = match api.status().await {
                    Ok(status) => status.connected_peers,
                    Err(CallError::Protocol(e)) => {
                        self.shared.protocol_error(format!("node {} status: {e}", node.index));
                        0
                    }
                    Err(_) => 0,
                };
                if connected < want {
                    ok = false;
                    break;
                }
            }
            if ok || Instant::now() >= end {
                if !ok {
                    self.shared.event("not every node connected to every other by the deadline; starting anyway".into());
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether node `i` has a connection to `peer` (None: down, stopped or no answer).
    async fn connected(&self, i: usize, peer: usize) -> Option<bool> {
        let api = self.client(i)?;
        let peer_id = self.nodes[peer].peer_id.to_string();
        match api.peers().await {
            Ok(peers) => Some(peers.iter().any(|p| p.peer_id == peer_id && p.connected)),
            Err(CallError::Protocol(e)) => {
                self.shared.protocol_error(format!("node {i} peers: {e}"));
                None
            }
            Err(_) => None,
        }
    }

    /// Makes node `i` redial `peer` now (see `reconnect`). Only bootstrap peers (the
    /// members) are redialled; asking a member about an observer does nothing, and the
    /// observer's side redials.
    async fn redial_now(&self, i: usize, peer: usize) {
        let peer_id = self.nodes[peer].peer_id;
        if self.nodes[i].role.correct() {
            let Some(api) = self.client(i) else { return };
            for block in [true, false] {
                if let Err(e) = api.set_blocked(&peer_id, block).await {
                    self.shared.event(format!("redial of {peer} by node {i} failed: {e}"));
                    return;
                }
            }
        } else {
            self.control(i, &format!("block {peer_id}")).await;
            self.control(i, &format!("unblock {peer_id}")).await;
        }
        self.shared.event(format!("node {i} redials node {peer} now (it lost the connection during the cut)"));
    }

    /// SIGKILL (after a last traffic scrape) and stop following the node.
    async fn kill_node(&self, i: usize) {
        let node = &self.nodes[i];
        self.scrape(i).await;
        if let Some(mut c) = node.child.lock().await.take() {
            c.kill().await;
        }
        if let Some(t) = lock(&node.tracker).take() {
            t.abort();
        }
        self.end_incarnation(i);
        node.incarnation.fetch_add(1, Ordering::Relaxed);
        node.down.store(true, Ordering::Relaxed);
    }

    async fn control(&self, i: usize, line: &str) {
        if let Some(c) = self.nodes[i].child.lock().await.as_mut() {
            c.control(line).await;
        }
        if line == "arm" {
            self.nodes[i].armed_at.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Reads node `i`'s traffic counters from its `/metrics` into its current-incarnation
    /// record; a node that is down, paused or does not answer keeps its last scrape.
    async fn scrape(&self, i: usize) {
        let Some(api) = self.client(i) else { return };
        if let Ok(text) = api.metrics().await {
            *lock(&self.nodes[i].traffic_now) = traffic_from_metrics(&text);
        }
    }

    /// Folds the current incarnation's last scrape into the finished ones (its counters are
    /// about to start again from zero).
    fn end_incarnation(&self, i: usize) {
        let now = std::mem::take(&mut *lock(&self.nodes[i].traffic_now));
        let mut done = lock(&self.nodes[i].traffic_done);
        for (d, n) in done.iter_mut().zip(now) {
            *d += n;
        }
    }

    async fn stop_all(&self) {
        for node in &self.nodes {
            if let Some(t) = lock(&node.tracker).take() {
                t.abort();
            }
        }
        let stops = self.nodes.iter().map(|node| async move {
            if let Some(mut c) = node.child.lock().await.take() {
                c.stop().await;
            }
        });
        futures::future::join_all(stops).await;
    }
}

/// A `byzgossip` process through its typed API client.
#[derive(Clone)]
struct HttpNode {
    api: api::Client,
    key: byzgossip_crypto::PublicKey,
}

/// A refusal, a timeout or an unreachable process is an ordinary failure; an answer that
/// breaks the API's contract is a protocol error.
fn failure(e: CallError) -> Failure {
    match e {
        CallError::Protocol(why) => Failure::Protocol(why),
        CallError::Transport(_) => Failure::Unknown,
        CallError::Refused { .. } => Failure::Failed,
    }
}

impl NodeApi for HttpNode {
    async fn broadcast(&self, value: Vec<u8>) -> Result<u64, Failure> {
        self.api.broadcast(&self.key, value).await.map(|b| b.seq).map_err(failure)
    }
    async fn publish(&self, topic: &'static str, payload: Vec<u8>) -> Result<String, Failure> {
        self.api.publish(topic, payload).await.map(|p| p.id.to_hex()).map_err(failure)
    }
    async fn peers(&self) -> Result<Vec<PeerSnapshot>, Failure> {
        let peers = self.api.peers().await.map_err(failure)?;
        Ok(peers.into_iter().map(|p| p.reputation).collect())
    }
}

impl timeline::Runtime for Net {
    type Node = HttpNode;
    fn scenario(&self) -> &Scenario {
        &self.scenario
    }
    fn role(&self, i: usize) -> Role {
        self.nodes[i].role
    }
    fn key(&self, i: usize) -> byzgossip_crypto::PublicKey {
        self.nodes[i].key.public()
    }
    fn peer_id(&self, i: usize) -> libp2p::PeerId {
        self.nodes[i].peer_id
    }
    /// `None` while killed or stopped (SIGSTOP): a stopped process answers nothing.
    fn node(&self, i: usize) -> Option<HttpNode> {
        self.client(i).map(|api| HttpNode { api, key: self.nodes[i].key.public() })
    }
    fn paused(&self, i: usize) -> bool {
        self.nodes[i].paused.load(Ordering::Relaxed)
    }
    fn armed_at(&self, i: usize) -> u64 {
        self.nodes[i].armed_at.load(Ordering::Relaxed)
    }
    /// The finished incarnations' counters plus the current one's last scrape.
    fn traffic(&self, i: usize) -> TrafficRecord {
        let node = &self.nodes[i];
        let (done, now) = (*lock(&node.traffic_done), *lock(&node.traffic_now));
        traffic_record(i, std::array::from_fn(|k| done[k] + now[k]))
    }
}

impl FaultTarget for Net {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn correct(&self, i: usize) -> bool {
        self.nodes[i].role.correct()
    }

    fn is_up(&self, i: usize) -> bool {
        !self.nodes[i].down.load(Ordering::Relaxed)
    }

    async fn arm(&self, i: usize) {
        self.control(i, "arm").await;
    }

    async fn disarm(&self, i: usize) {
        self.control(i, "disarm").await;
    }

    /// The adversary restarts its node inside its process (same listen port and store) and
    /// prints the new node's API address, which the stdout reader picks up.
    async fn refresh(&self, i: usize, _cut: &[usize]) {
        self.scrape(i).await;
        self.end_incarnation(i);
        self.control(i, "refresh").await;
    }

    async fn kill(&self, i: usize) {
        self.kill_node(i).await;
    }

    /// Respawns the process. Its fixed port and the genesis bootstrap list mean it dials
    /// every member, cut ones included; those refuse it (they block it), and the driver
    /// blocks them on this side right after.
    async fn start(&self, i: usize, _cut: &[usize]) -> anyhow::Result<()> {
        self.spawn(i).await
    }

    async fn pause(&self, i: usize, paused: bool) {
        if paused {
            // A stopped process answers nothing; take its counters now.
            self.scrape(i).await;
        }
        let node = &self.nodes[i];
        if let Some(c) = node.child.lock().await.as_ref() {
            c.signal(if paused { "-STOP" } else { "-CONT" });
        }
        node.paused.store(paused, Ordering::Relaxed);
    }

    /// `byzgossip` processes over HTTP; adversaries through a stdin line (a stopped
    /// adversary reads it once resumed). A stopped or killed `byzgossip` is skipped; the
    /// driver repairs its blocks when it comes back.
    ///
    /// With `--netns` the block is in the kernel instead: packets from `peer` to `i` are
    /// dropped on the bridge (the driver blocks both directions of a cut), whatever state the
    /// processes are in, and a restarted process is cut by the same rule.
    async fn block(&self, i: usize, peer: usize, block: bool) {
        if let Some(ns) = &self.netns {
            if let Err(e) = ns.cut(peer, i, block) {
                self.shared.event(format!("{} of {peer} -> {i} in nftables failed: {e}", if block { "cut" } else { "heal" }));
            }
            return;
        }
        let (node, peer_id) = (&self.nodes[i], self.nodes[peer].peer_id);
        let verb = if block { "block" } else { "unblock" };
        if !node.role.correct() {
            self.control(i, &format!("{verb} {peer_id}")).await;
            return;
        }
        let Some(api) = self.client(i) else { return };
        match api.set_blocked(&peer_id, block).await {
            Ok(_) => {}
            Err(CallError::Refused { status, code, message }) => {
                self.shared.event(format!("{verb} at node {i} refused: {status} {code}: {message}"))
            }
            Err(CallError::Protocol(e)) => self.shared.protocol_error(format!("node {i} {verb}: {e}")),
            Err(e @ CallError::Transport(_)) => self.shared.event(format!("{verb} at node {i} failed: {e}")),
        }
    }

    /// Without `--netns` nothing to do: members redial each other from the genesis bootstrap
    /// list (fixed ports), and unblocking schedules the redial at once.
    ///
    /// With `--netns` a heal removes the nftables rule, and then:
    /// - a connection that stayed open through the cut is stalled in TCP's exponential
    ///   retransmission backoff and would resume only at its next retransmission (21 s after
    ///   the heal of a 30 s cut: measured, the drain deadline was missed). The pair's TCP
    ///   connections are reset in the kernel ([`netns::Netns::reset`]), as a long real cut
    ///   leaves them dead, and the nodes redial at once (a dropped bootstrap peer is redialled
    ///   after the base backoff);
    /// - a side that had lost the connection during the cut has a redial backoff grown by
    ///   every dial the cut swallowed (up to 30 s), so it is asked to redial now, the way an
    ///   unblock does in the node: a block by hand and its unblock of the disconnected peer,
    ///   whose only effect is that redial (there is no connection to close).
    async fn reconnect(&self, i: usize, peer: usize) {
        let Some(ns) = &self.netns else { return };
        let (a, b) = futures::join!(self.connected(i, peer), self.connected(peer, i));
        if let Err(e) = ns.reset(i, peer) {
            self.shared.event(format!("reset of the TCP connections between {i} and {peer} failed: {e}"));
        }
        let kicks = [(i, peer, a), (peer, i, b)].into_iter().filter(|(_, _, c)| *c == Some(false));
        futures::future::join_all(kicks.map(|(x, y, _)| self.redial_now(x, y))).await;
    }

    /// With `--netns`: the loss as an nftables rule dropping that share of the packets the
    /// bridge forwards to node `i`; the delay is not applied (no netem in the kernel, and the
    /// `byzgossip` binary has no interceptor), which the event log says. Without `--netns`
    /// never called: [`unsupported`] turns scenarios with `degrade` faults away first, and
    /// the event makes a future caller visible instead of silently running undegraded.
    async fn degrade(&self, i: usize, degradation: Option<Degradation>) {
        let Some(ns) = &self.netns else {
            self.shared.event(format!("degrade of node {i} ignored: not supported in process mode"));
            return;
        };
        let percent = degradation.map(|d| netns::loss_percent(d.loss));
        match ns.set_loss(i, percent) {
            Ok(()) => match degradation {
                Some(d) => self.shared.event(format!(
                    "node {i}: inbound loss {}% as an nftables rule; delay {} ms not applied (--netns applies loss only)",
                    percent.unwrap_or(0),
                    d.delay_ms
                )),
                None => self.shared.event(format!("node {i}: nftables loss rule removed")),
            },
            Err(e) => self.shared.event(format!("degrade of node {i} in nftables failed: {e}")),
        }
    }
}

/// Messages in, bytes in, messages out, bytes out from a node's Prometheus text: the sums
/// over the `topic` label of the node's traffic counters.
fn traffic_from_metrics(text: &str) -> [u64; 4] {
    const NAMES: [&str; 4] = [
        "byzgossip_received_messages_total",
        "byzgossip_received_bytes_total",
        "byzgossip_sent_messages_total",
        "byzgossip_sent_bytes_total",
    ];
    let mut out = [0u64; 4];
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let name = series.split('{').next().unwrap_or(series);
        if let Some(k) = NAMES.iter().position(|n| *n == name)
            && let Ok(v) = value.trim().parse::<f64>()
        {
            out[k] += v as u64;
        }
    }
    out
}

/// Records one event of correct node `i`'s delivery stream (in its `incarnation`).
fn record_event(shared: &Shared, node: &Node, i: usize, incarnation: u32, event: api::DeliveryEvent) {
    match event {
        api::DeliveryEvent::Bracha(d) => {
            node.cursor.fetch_max(d.cursor, Ordering::Relaxed);
            shared.record_bracha(i, d.cursor, &d.instance.origin, d.instance.seq, &d.digest, d.delivered_at_ms);
        }
        api::DeliveryEvent::Gossip(g) => shared.record_gossip(i, incarnation, &g.origin, &g.id, None),
    }
}

/// Runs `scenario` as processes and returns its log (or why it cannot run).
pub async fn run(scenario: &Scenario, options: ProcessOptions) -> anyhow::Result<Outcome> {
    scenario.validate()?;
    if let Some(why) = unsupported(scenario, options.netns) {
        return Ok(Outcome::Unsupported(why));
    }
    let net = setup(scenario, options)?;
    let result = run_net(&net).await;
    net.stop_all().await;
    result.map(|log| Outcome::Ran(Box::new(log)))
}

/// Starts the all-honest `baseline` preset at `nodes` as processes, drives its workload for
/// `window`, and returns each process's VmRSS (bytes) at the end.
pub async fn measure_rss(nodes: usize, options: ProcessOptions, window: Duration) -> anyhow::Result<Vec<u64>> {
    let mut scenario = crate::scenario::preset("baseline", nodes).context("baseline preset")?;
    scenario.name = format!("bench-rss-{nodes}");
    let net = setup(&scenario, options)?;
    let result = async {
        for i in 0..net.nodes.len() {
            net.spawn(i).await?;
        }
        net.wait_connected().await;
        let workload = timeline::spawn_workload(&net, Instant::now() + window);
        let _ = workload.await;
        let mut rss = Vec::new();
        for node in &net.nodes {
            let pid = node.child.lock().await.as_ref().map_or(0, |c| c.pid);
            let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let kib = text.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
            rss.push(kib.unwrap_or(0) * 1024);
        }
        anyhow::Ok(rss)
    }
    .await;
    net.stop_all().await;
    result
}

fn setup(scenario: &Scenario, options: ProcessOptions) -> anyhow::Result<Arc<Net>> {
    std::fs::create_dir_all(&options.dir)?;
    let n = scenario.nodes;
    let roles = scenario.roles();
    // With --netns every node has its own address and the same port; without, consecutive
    // free ports on 127.0.0.1.
    let netns = if options.netns { Some(netns::Netns::create(roles.len())?) } else { None };
    let base = match &netns {
        Some(_) => netns::P2P_PORT,
        None => free_ports(roles.len(), scenario.seed)?,
    };
    let keys_dir = options.dir.join("keys");
    let spec = TestnetSpec {
        nodes: n,
        f: Some(scenario.f()),
        name: format!("testnet-{}-{}", scenario.name, scenario.seed),
        policy: scenario.policy,
        base_port: Some(base),
    };
    let mut rng = ChaCha20Rng::seed_from_u64(scenario.seed);
    let files = match &netns {
        // The genesis bootstrap list carries the namespace addresses.
        Some(ns) => write_testnet_with_addresses(&keys_dir, &spec, &mut rng, |i| Ok(Some(ns.plan().multiaddr(i))))?,
        None => write_testnet(&keys_dir, &spec, &mut rng)?,
    };
    let mut key_paths = files.keys.clone();
    for i in n..roles.len() {
        let path = keys_dir.join(format!("sybil-{i}.key"));
        if !path.exists() {
            Keypair::generate(&mut rng).save(&path)?;
        }
        key_paths.push(path);
    }
    let scenario_path = options.dir.join("scenario.toml");
    std::fs::write(&scenario_path, scenario.to_toml())?;
    // The `byzgossip` children's API token (their POSTs need it): one file they all read, and
    // one client that sends it with every call.
    let (token, _) = byzgossip_node::api::ApiToken::load_or_create(&options.dir.join(API_TOKEN_FILE))?;
    let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.as_str()))?;
    auth.set_sensitive(true);
    let headers = reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, auth)]);
    let mut nodes = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let key = Keypair::load(&key_paths[i])?;
        let peer_id = byzgossip_node::identity::peer_id(&key.public()).context("peer id of an ed25519 key")?;
        nodes.push(Arc::new(Node {
            index: i,
            role: *role,
            key,
            peer_id,
            key_path: key_paths[i].clone(),
            data: options.dir.join(format!("data-{i}")),
            port: Some(if netns.is_some() { base } else { base + i as u16 }),
            child: tokio::sync::Mutex::new(None),
            api: Mutex::new(None),
            incarnation: AtomicU32::new(0),
            down: AtomicBool::new(true),
            paused: AtomicBool::new(false),
            armed_at: AtomicU64::new(0),
            cursor: AtomicU64::new(0),
            tracker: Mutex::new(None),
            traffic_done: Mutex::new([0; 4]),
            traffic_now: Mutex::new([0; 4]),
        }));
    }
    Ok(Arc::new(Net {
        scenario: scenario.clone(),
        genesis_path: files.genesis.clone(),
        scenario_path,
        nodes,
        shared: Arc::new(Shared { verbose: options.verbose, ..Default::default() }),
        http: reqwest::Client::builder().connect_timeout(CALL_TIMEOUT).default_headers(headers).build()?,
        options,
        netns,
    }))
}

async fn run_net(net: &Arc<Net>) -> anyhow::Result<RunLog> {
    for i in 0..net.nodes.len() {
        net.spawn(i).await?;
    }
    net.wait_connected().await;
    let marks = timeline::run_scenario(net, "processes").await;
    // Last traffic scrape, while every process still runs.
    futures::future::join_all((0..net.nodes.len()).map(|i| net.scrape(i))).await;
    if let Some(ns) = &net.netns {
        net.shared.event(ns.drop_report());
    }
    Ok(timeline::collect(net.as_ref(), &marks))
}

/// Arguments of the hidden `adversary` subcommand.
#[derive(Clone, Debug)]
pub struct AdversaryArgs {
    /// The resolved scenario file.
    pub scenario: PathBuf,
    /// This node's index in the scenario.
    pub index: usize,
    /// The genesis file.
    pub genesis: PathBuf,
    /// This node's key file.
    pub key: PathBuf,
    /// Listen address.
    pub listen: String,
    /// HTTP API listen address (`127.0.0.1:0`; the namespace's address with `--netns`).
    pub api: SocketAddr,
    /// Interceptor seed.
    pub seed: u64,
}

/// The adversary process: a node with the role's interceptor, its HTTP API on 127.0.0.1:0
/// (printed as `HTTP API on http://ADDR`, again after each refresh), controlled by stdin
/// lines `arm`, `disarm`, `refresh` (restart the node with fresh gossip caches, same store),
/// `block PEER_ID` and `unblock PEER_ID` (the node's block by hand, as the HTTP API's
/// `/peers/{id}/block`); end of stdin stops it, so it never outlives the testnet.
pub async fn adversary_main(args: AdversaryArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&args.scenario)?;
    let roles = scenario.roles();
    let role = *roles.get(args.index).context("index out of range")?;
    let genesis = Genesis::load(&args.genesis)?;
    let keypair = Keypair::load(&args.key)?;
    let network = genesis.network_id();
    let victim = *genesis.members.get(scenario.attack.victim).context("victim")?;
    let censored = if role == Role::Censor { vec![victim] } else { vec![] };
    let agent = Agent::new(role, keypair.clone(), network, censored);
    let honest: Vec<byzgossip_crypto::PublicKey> = roles.iter().enumerate().filter(|(_, r)| **r == Role::Honest).filter_map(|(i, _)| genesis.members.get(i).copied()).collect();
    let store = Arc::new(MemoryStore::new());
    let cell: HandleCell = Arc::new(Mutex::new(None));
    let listen: libp2p::Multiaddr = args.listen.parse()?;
    let start = |incarnation: u64| {
        let mut config = NodeConfig::new(genesis.clone(), keypair.clone());
        config.listen = vec![listen.clone()];
        config.topics = vec![LOAD_TOPIC.to_owned()];
        config.sync_interval = crate::harness::SYNC_INTERVAL;
        config.tick_interval = crate::harness::TICK_INTERVAL;
        config.api_listen = Some(args.api);
        scenario.apply_node_settings(&mut config);
        let interceptor = AgentInterceptor::new(agent.clone(), args.seed ^ (incarnation << 40));
        NodeBuilder::new(config).with_store(store.clone()).with_interceptor(Box::new(interceptor)).spawn()
    };
    let handle = start(0).await?;
    if let Some(api) = handle.api_addr() {
        println!("HTTP API on http://{api}");
    }
    *lock(&cell) = Some(handle);
    let make_ctx = || DriverContext {
        node: cell.clone(),
        honest: honest.clone(),
        knobs: scenario.attack.clone(),
        max_message_len: byzgossip_reputation::AdmissionConfig::default().max_message_len,
        seed: scenario.seed ^ 0xd1e5 ^ ((args.index as u64) << 24),
    };
    let mut driver: Option<JoinHandle<()>> = None;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut incarnation = 0;
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            "arm" => {
                agent.armed.store(true, Ordering::Relaxed);
                if driver.is_none() {
                    driver = Some(tokio::spawn(adversary::drive(agent.clone(), make_ctx())));
                }
            }
            "disarm" => {
                agent.armed.store(false, Ordering::Relaxed);
                if let Some(d) = driver.take() {
                    d.abort();
                }
            }
            "refresh" => {
                // The listen port is fixed: stop the old node before binding again.
                let old = lock(&cell).take();
                if let Some(old) = old
                    && tokio::time::timeout(CALL_TIMEOUT, old.shutdown()).await.is_err()
                {
                    old.abort();
                }
                incarnation += 1;
                match start(incarnation).await {
                    Ok(h) => {
                        if let Some(api) = h.api_addr() {
                            println!("HTTP API on http://{api}");
                        }
                        *lock(&cell) = Some(h);
                    }
                    Err(e) => eprintln!("refresh failed: {e}"),
                }
            }
            other => {
                let (block, peer) = match other.split_once(' ') {
                    Some(("block", peer)) => (true, peer),
                    Some(("unblock", peer)) => (false, peer),
                    _ => {
                        eprintln!("unknown control line {other:?}");
                        continue;
                    }
                };
                let Ok(peer) = peer.trim().parse::<libp2p::PeerId>() else {
                    eprintln!("bad peer id in {other:?}");
                    continue;
                };
                let node = current(&cell);
                if let Some(node) = node
                    && let Err(e) = tokio::time::timeout(CALL_TIMEOUT, node.disconnect(peer, block)).await.unwrap_or(Err(NodeError::Stopped))
                {
                    eprintln!("{other}: {e}");
                }
            }
        }
    }
    if let Some(d) = driver.take() {
        d.abort();
    }
    let h = lock(&cell).take();
    if let Some(h) = h
        && tokio::time::timeout(CALL_TIMEOUT, h.shutdown()).await.is_err()
    {
        h.abort();
    }
    Ok(())
}

/// Where a process-mode run of one scenario keeps its files.
pub fn run_dir(out: &Path, name: &str) -> PathBuf {
    out.join("processes").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrade_faults_are_unsupported_in_process_mode_and_others_are_not() {
        let lossy = crate::preset("lossy", 4).expect("preset");
        assert!(unsupported(&lossy, false).is_some_and(|why| why.contains("in-process runtime")));
        assert_eq!(unsupported(&lossy, true), None, "--netns applies the loss in nftables");
        for name in ["baseline", "partition", "crash-restart", "eclipse"] {
            assert_eq!(unsupported(&crate::preset(name, 4).expect("preset"), false), None, "{name}");
        }
    }
}
