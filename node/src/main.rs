//! The `byzgossip` command: key and genesis tools, the node itself, and a small client for a
//! running node's HTTP API.

use anyhow::{Context, bail};
use byzgossip_crypto::{Genesis, GossipPolicy, Keypair};
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
        /// The value (UTF-8 text).
        value: String,
    },
    /// Ask a running node to gossip MESSAGE on TOPIC.
    Publish {
        /// The node's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        api: SocketAddr,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// The message (UTF-8 text).
        message: String,
    },
    /// Print a running node's status and peers.
    Status {
        /// The node's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:8100")]
        api: SocketAddr,
    },
}

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
    /// HTTP API address, e.g. 127.0.0.1:8100.
    #[arg(long)]
    api: Option<SocketAddr>,
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
    #[serde(default)]
    bootstrap: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    observer: bool,
    log_format: Option<LogFormat>,
    sync_interval_ms: Option<u64>,
    tick_interval_ms: Option<u64>,
}

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
        Command::Broadcast { api, value } => client(api, "broadcast", Some(value.into_bytes()))?,
        Command::Publish { api, topic, message } => client(api, &format!("publish/{topic}"), Some(message.into_bytes()))?,
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,libp2p=warn".into());
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
    let bootstrap = if args.bootstrap.is_empty() { file.bootstrap } else { args.bootstrap };
    config.bootstrap = bootstrap.iter().map(|a| a.parse().with_context(|| format!("bootstrap address {a}"))).collect::<Result<_, _>>()?;
    config.topics = if args.topic.is_empty() { file.topics } else { args.topic };
    if let Some(ms) = args.sync_interval_ms.or(file.sync_interval_ms) {
        config.sync_interval = Duration::from_millis(ms);
    }
    if let Some(ms) = args.tick_interval_ms.or(file.tick_interval_ms) {
        config.tick_interval = Duration::from_millis(ms);
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

fn client(api: SocketAddr, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let url = format!("http://{api}/{path}");
        let request = match body {
            Some(body) => client.post(&url).body(body),
            None => client.get(&url),
        };
        let response = request.send().await.with_context(|| format!("cannot reach the node at {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{url}: {status}: {text}");
        }
        let pretty = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(text);
        println!("{pretty}");
        Ok(())
    })
}
