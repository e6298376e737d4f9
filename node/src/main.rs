//! The `byzgossip` command: key and genesis tools, the node itself, and a small client for a
//! running node's HTTP API.

use anyhow::{Context, bail};
use byzgossip_crypto::{Genesis, GossipPolicy, Keypair};
use byzgossip_node::api::{API_TOKEN_FILE, ApiToken};
use byzgossip_node::identity::peer_id;
use byzgossip_node::testnet_keys::{TestnetSpec, write_testnet};
use byzgossip_node::{NodeBuilder, NodeConfig};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "byzgossip", version, about = "Byzantine-tolerant signed gossip node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new node key file (mode 0600) and print its public key and peer id.
    Keygen {
        /// Where to write the key (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write keys and a genesis for a local testnet.
    Genesis {
        /// Committee size.
        #[arg(long)]
        nodes: usize,
        /// Output directory (node-<i>.key and genesis.toml).
        #[arg(long)]
        out: PathBuf,
        /// Fault bound (default floor((n-1)/3)).
        #[arg(long)]
        f: Option<usize>,
        /// Network name.
        #[arg(long, default_value = "byzgossip-local")]
        name: String,
        /// Who may publish gossip.
        #[arg(long, value_enum, default_value_t = Policy::Committee)]
        policy: Policy,
        /// Member i listens on 127.0.0.1 TCP port base-port + i; listed as bootstrap peers.
        #[arg(long)]
        base_port: Option<u16>,
    },
    /// Check a genesis file and print its network id and committee.
    Inspect {
        /// The genesis file.
        #[arg(long)]
        genesis: PathBuf,
    },
    /// Run a node until Ctrl-C.
    Run(RunArgs),
    /// Ask a running node to reliably broadcast VALUE (Bracha).
    Broadcast {
        /// The node's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        api: SocketAddr,
        #[command(flatten)]
        auth: ClientAuth,
        /// The value (UTF-8 text).
        value: String,
    },
    /// Ask a running node to gossip MESSAGE on TOPIC.
    Publish {
        /// The node's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        api: SocketAddr,
        #[command(flatten)]
        auth: ClientAuth,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// The message (UTF-8 text).
        message: String,
    },
    /// Exit 0 when a running node answers `/status`, 1 otherwise: a health check for
    /// container images without curl (the image is `FROM scratch`, see deploy/Containerfile).
    Health {
        /// The node's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        api: SocketAddr,
        /// Also require `progress_possible` (2f+1 members reachable): for a readiness check.
        /// A liveness check should not ask for it, or losing a quorum restarts every node.
        #[arg(long)]
        require_quorum: bool,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Print a running node's status and peers.
    Status {
        /// The node's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        api: SocketAddr,
    },
}

/// Where a client command finds the node's API token, for calls that change something. The
/// flags win over the environment variable `BYZGOSSIP_API_TOKEN` (the token itself, kept out
/// of the command line so it does not show in `ps`).
#[derive(clap::Args)]
struct ClientAuth {
    /// File holding the node's API token (the node's `--api-token-file`).
    #[arg(long, conflicts_with = "data")]
    api_token_file: Option<PathBuf>,
    /// The node's data directory: its `api-token` file holds the token.
    #[arg(long)]
    data: Option<PathBuf>,
}

impl ClientAuth {
    /// The token, or `None` when neither flag nor `BYZGOSSIP_API_TOKEN` gives one.
    fn token(&self) -> anyhow::Result<Option<ApiToken>> {
        if let Some(path) = &self.api_token_file {
            return Ok(Some(ApiToken::load(path)?));
        }
        if let Some(dir) = &self.data {
            return Ok(Some(ApiToken::load(&dir.join(API_TOKEN_FILE))?));
        }
        match std::env::var(TOKEN_ENV) {
            Ok(text) => Ok(Some(ApiToken::parse(&text).map_err(|e| anyhow::anyhow!("{TOKEN_ENV}: {e}"))?)),
            Err(_) => Ok(None),
        }
    }
}

/// The environment variable a client reads the API token from.
const TOKEN_ENV: &str = "BYZGOSSIP_API_TOKEN";

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    Committee,
    Open,
}

#[derive(Clone, Copy, ValueEnum, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    #[default]
    Human,
    Json,
}

/// `byzgossip run`: every option may also come from `--config FILE` (TOML, same names);
/// command-line values win.
#[derive(clap::Args)]
struct RunArgs {
    /// A TOML config file with any of the options below.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The genesis file.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// This node's key file.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Data directory (redb database); omitted: in memory only.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Listen address (repeatable), e.g. /ip4/127.0.0.1/tcp/7100.
    #[arg(long)]
    listen: Vec<String>,
    /// HTTP API address, e.g. 127.0.0.1:8100 (omitted: no HTTP API). Keep it on loopback.
    #[arg(long)]
    api: Option<SocketAddr>,
    /// File holding the HTTP API's bearer token for mutating calls; created (mode 0600) if
    /// missing. Default: `api-token` in the data directory, or, without --data, a token for
    /// this run only, printed to stderr.
    #[arg(long)]
    api_token_file: Option<PathBuf>,
    /// Extra peer to dial (repeatable), a multiaddr ending in /p2p/<peer id>.
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Gossip topic to subscribe to (repeatable).
    #[arg(long)]
    topic: Vec<String>,
    /// Run even though the key is not in the committee (gossip relay and observer).
    #[arg(long)]
    observer: bool,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Milliseconds between anti-entropy sync rounds (default 1000).
    #[arg(long)]
    sync_interval_ms: Option<u64>,
    /// Milliseconds between housekeeping ticks: retransmission, redial, Bracha timers
    /// (default 250).
    #[arg(long)]
    tick_interval_ms: Option<u64>,
    /// Seen-set: ids of gossip from origins outside the committee (open policy) remembered
    /// at once (default 262144).
    #[arg(long)]
    seen_capacity: Option<usize>,
    /// Seen-set: ids of one origin outside the committee (default 32768).
    #[arg(long)]
    seen_per_origin_capacity: Option<usize>,
    /// Seen-set: ids reserved for the committee, split evenly among its members; a member's
    /// gossip takes at most half of its share (default 524288).
    #[arg(long)]
    seen_committee_capacity: Option<usize>,
    /// Seconds deliveries are kept (values, certificates, own votes of their instances);
    /// 0 keeps them forever (default 86400, one day).
    #[arg(long)]
    retention_s: Option<u64>,
    /// Milliseconds a member with a new data dir waits for its peers to tell it its own
    /// delivered broadcasts before broadcasting (default 10000; 0: don't wait).
    #[arg(long)]
    seq_recovery_timeout_ms: Option<u64>,
    /// Milliseconds of a first reputation ban; each repeat doubles it, up to 24 h
    /// (default 600000, ten minutes). Testnets use short bans to watch readmission.
    #[arg(long)]
    ban_base_ms: Option<u64>,
    /// Half-life of a peer's penalty counter in milliseconds: how fast a past offence is
    /// forgiven (default 1800000, 30 minutes).
    #[arg(long)]
    penalty_half_life_ms: Option<u64>,
    /// For supervisors: exit cleanly when stdin closes.
    ///
    /// A supervisor (the testnet's process runtime) keeps a pipe to the node's stdin open;
    /// when the supervisor dies, even by SIGKILL, the pipe closes and the node shuts down
    /// instead of running on as an orphan. Hidden: an operator at a terminal has no use for it.
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    genesis: Option<PathBuf>,
    key: Option<PathBuf>,
    data: Option<PathBuf>,
    #[serde(default)]
    listen: Vec<String>,
    api: Option<SocketAddr>,
    api_token_file: Option<PathBuf>,
    #[serde(default)]
    bootstrap: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    observer: bool,
    log_format: Option<LogFormat>,
    sync_interval_ms: Option<u64>,
    tick_interval_ms: Option<u64>,
    seen_capacity: Option<usize>,
    seen_per_origin_capacity: Option<usize>,
    seen_committee_capacity: Option<usize>,
    retention_s: Option<u64>,
    seq_recovery_timeout_ms: Option<u64>,
    ban_base_ms: Option<u64>,
    penalty_half_life_ms: Option<u64>,
}

/// The log filter without `RUST_LOG`. Gossipsub's "Send Queue full" warning comes once per
/// dropped RPC (about 50 lines/s per wedged link, 33-37 MB of log per node in 10 minutes), so
/// its behaviour module logs errors only; slow peers are counted in `byzgossip_slow_peers`
/// and a dropped connection is one warning.
const DEFAULT_LOG_FILTER: &str = "info,libp2p=warn,libp2p_gossipsub::behaviour=error";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen { out } => {
            let keypair = Keypair::generate(&mut rand::rng());
            keypair.save(&out)?;
            let public = keypair.public();
            println!("public key: {public}");
            println!("peer id:    {}", peer_id(&public).context("peer id")?);
        }
        Command::Genesis { nodes, out, f, name, policy, base_port } => {
            let policy = match policy {
                Policy::Committee => GossipPolicy::Committee,
                Policy::Open => GossipPolicy::Open,
            };
            let spec = TestnetSpec { nodes, f, name, policy, base_port };
            let files = write_testnet(&out, &spec, &mut rand::rng())?;
            let genesis = Genesis::load(&files.genesis)?;
            println!(
                "wrote {} keys and {} (network {}, n = {}, f = {})",
                files.keys.len(),
                files.genesis.display(),
                genesis.network_id(),
                genesis.members.len(),
                genesis.resolved_f()
            );
        }
        Command::Inspect { genesis } => {
            let g = Genesis::load(&genesis)?;
            println!("network {} ({}), n = {}, f = {}", g.network_id(), g.name, g.members.len(), g.resolved_f());
            for (i, m) in g.members.iter().enumerate() {
                println!("  {i}: {m}  {}", peer_id(m).map(|p| p.to_string()).unwrap_or_default());
            }
        }
        Command::Run(args) => run(args)?,
        Command::Broadcast { api, auth, value } => client(api, "broadcast", Some((auth, value.into_bytes())))?,
        Command::Publish { api, auth, topic, message } => client(api, &format!("publish/{topic}"), Some((auth, message.into_bytes())))?,
        Command::Health { api, require_quorum, timeout_ms } => {
            if let Err(e) = health(api, require_quorum, Duration::from_millis(timeout_ms)) {
                eprintln!("unhealthy: {e:#}");
                std::process::exit(1);
            }
            println!("healthy");
        }
        Command::Status { api } => {
            client(api, "status", None)?;
            client(api, "peers", None)?;
        }
    }
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("config file {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let log_format = args.log_format.or(file.log_format).unwrap_or_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_LOG_FILTER.into());
    // Logs go to stderr; stdout carries only the listen and API addresses, for scripts.
    if log_format == LogFormat::Json {
        tracing_subscriber::fmt().json().with_writer(std::io::stderr).with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).init();
    }

    let genesis_path = args.genesis.or(file.genesis).context("--genesis is required (or `genesis` in --config)")?;
    let key_path = args.key.or(file.key).context("--key is required (or `key` in --config)")?;
    let genesis = Genesis::load(&genesis_path)?;
    let keypair = Keypair::load(&key_path)?;
    let observer = args.observer || file.observer;
    if !genesis.members.contains(&keypair.public()) && !observer {
        bail!(
            "the key in {} ({}) is not a member of the committee in {}; pass --observer to run as a non-member relay",
            key_path.display(),
            keypair.public(),
            genesis_path.display()
        );
    }
    let mut config = NodeConfig::new(genesis, keypair);
    config.data_dir = args.data.or(file.data);
    let listen = if args.listen.is_empty() { file.listen } else { args.listen };
    if !listen.is_empty() {
        config.listen = listen.iter().map(|a| a.parse().with_context(|| format!("listen address {a}"))).collect::<Result<_, _>>()?;
    }
    config.api_listen = args.api.or(file.api);
    if let Some(api) = config.api_listen {
        if !api.ip().is_loopback() {
            tracing::warn!(%api, "the HTTP API listens beyond loopback: its reads are open and its token travels in clear");
        }
        config.api_token = api_token(args.api_token_file.or(file.api_token_file), config.data_dir.as_deref())?;
    }
    let bootstrap = if args.bootstrap.is_empty() { file.bootstrap } else { args.bootstrap };
    config.bootstrap = bootstrap.iter().map(|a| a.parse().with_context(|| format!("bootstrap address {a}"))).collect::<Result<_, _>>()?;
    config.topics = if args.topic.is_empty() { file.topics } else { args.topic };
    if let Some(ms) = args.sync_interval_ms.or(file.sync_interval_ms) {
        config.sync_interval = Duration::from_millis(ms);
    }
    if let Some(ms) = args.tick_interval_ms.or(file.tick_interval_ms) {
        config.tick_interval = Duration::from_millis(ms);
    }
    if let Some(s) = args.retention_s.or(file.retention_s) {
        config.retention = Duration::from_secs(s);
    }
    let replay = &mut config.admission.replay;
    for (value, field) in [
        (args.seen_capacity.or(file.seen_capacity), &mut replay.capacity),
        (args.seen_per_origin_capacity.or(file.seen_per_origin_capacity), &mut replay.per_origin_capacity),
        (args.seen_committee_capacity.or(file.seen_committee_capacity), &mut replay.committee_capacity),
    ] {
        if let Some(value) = value {
            *field = value;
        }
    }
    if let Some(ms) = args.seq_recovery_timeout_ms.or(file.seq_recovery_timeout_ms) {
        config.seq_recovery_timeout = Duration::from_millis(ms);
    }
    let reputation = &mut config.admission.reputation;
    if let Some(ms) = args.ban_base_ms.or(file.ban_base_ms) {
        reputation.ban_base_ms = ms;
    }
    if let Some(ms) = args.penalty_half_life_ms.or(file.penalty_half_life_ms) {
        reputation.penalty_half_life_ms = ms;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let node = NodeBuilder::new(config).spawn().await?;
        for addr in node.listen_addrs() {
            println!("listening on {addr}");
        }
        if let Some(api) = node.api_addr() {
            println!("HTTP API on http://{api}");
        }
        if args.exit_on_stdin_eof {
            tokio::select! {
                result = wait_for_stop_signal() => result?,
                () = stdin_closed() => tracing::info!("stdin closed; shutting down"),
            }
        } else {
            wait_for_stop_signal().await?;
        }
        node.shutdown().await;
        anyhow::Ok(())
    })
}

/// The HTTP API's token: from `file` if given, else from `<data>/api-token`, either created
/// on first use and then shown once on stderr (stdout is for scripts); without both, a token
/// for this run only, shown on stderr at every start. Shown, not logged: log lines are often
/// collected and kept where the token file's mode does not protect them.
fn api_token(file: Option<PathBuf>, data: Option<&std::path::Path>) -> anyhow::Result<ApiToken> {
    let Some(path) = file.or_else(|| data.map(|d| d.join(API_TOKEN_FILE))) else {
        let token = ApiToken::generate();
        eprintln!("API token for this run only (no --data or --api-token-file): {}", token.as_str());
        return Ok(token);
    };
    let (token, created) = ApiToken::load_or_create(&path)?;
    if created {
        eprintln!("API token written to {} (mode 0600): {}", path.display(), token.as_str());
    }
    Ok(token)
}

/// Ctrl-C (SIGINT) or, on Unix, SIGTERM: both shut the node down cleanly.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Resolves when stdin reaches end of input (or fails). Reads on a plain thread, not
/// `tokio::io::stdin`: tokio's blocking read cannot be cancelled and would hold up runtime
/// shutdown after a signal; a detached thread simply ends with the process.
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new().name("stdin-eof".into()).spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 1024];
        // Whatever a supervisor writes is ignored; only the end of input matters.
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    match spawned {
        Ok(_) => {
            let _ = rx.await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch stdin; --exit-on-stdin-eof has no effect");
            std::future::pending::<()>().await;
        }
    }
}

/// `byzgossip health`: `/status` answers 200 with a JSON object within `timeout` (and, with
/// `require_quorum`, says `progress_possible`). Any failure is an error naming what failed.
fn health(api: SocketAddr, require_quorum: bool, timeout: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let url = format!("http://{api}/status");
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let response = client.get(&url).send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "{url}: {status}");
        let body: serde_json::Value = response.json().await.with_context(|| format!("{url}: not JSON"))?;
        anyhow::ensure!(body.is_object(), "{url}: not a JSON object");
        if require_quorum {
            let progress = body.get("progress_possible").and_then(serde_json::Value::as_bool);
            anyhow::ensure!(progress == Some(true), "{url}: progress_possible is {progress:?}");
        }
        Ok(())
    })
}

/// Calls the node: a GET without a body, or a POST of the body with the API token when the
/// client has one.
fn client(api: SocketAddr, path: &str, post: Option<(ClientAuth, Vec<u8>)>) -> anyhow::Result<()> {
    let (token, body) = match post {
        Some((auth, body)) => (auth.token()?, Some(body)),
        None => (None, None),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let url = format!("http://{api}/{path}");
        let mut request = match body {
            Some(body) => client.post(&url).body(body),
            None => client.get(&url),
        };
        if let Some(token) = &token {
            request = request.bearer_auth(token.as_str());
        }
        let response = request.send().await.with_context(|| format!("cannot reach the node at {url}"))?;
        let status = response.status();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = response.text().await?;
        if !status.is_success() {
            let hint = match retry_after {
                _ if status == reqwest::StatusCode::UNAUTHORIZED && token.is_none() => {
                    format!("\nno API token given: pass --data DIR or --api-token-file PATH, or set {TOKEN_ENV}")
                }
                Some(seconds) => format!(" (retry after {seconds} s)"),
                None => String::new(),
            };
            bail!("{url}: {status}: {text}{hint}");
        }
        let pretty = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(text);
        println!("{pretty}");
        Ok(())
    })
}
